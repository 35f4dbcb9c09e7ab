// `zeroclip tokenize`: CLIP token ids of texts as JSON (one array of context-length ids per text),
// the same ids `clip.tokenize` gives. Reading texts from stdin, one per line, lets a script check
// hundreds of strings in one run.
#include <iostream>
#include <string>
#include <vector>

#include <zeroclip/io/checkpoint.hpp>
#include <zeroclip/io/file.hpp>
#include <zeroclip/tokenizer.hpp>

#include "cli.hpp"

namespace {

const char* const tokenize_help =
    "usage: zeroclip tokenize [--context-length N]\n"
    "                         [--bpe PATH.gz | --vocab vocab.json --merges merges.txt | --model M]\n"
    "                         [--no-truncate] [--stdin] TEXT...\n\n"
    "Prints a JSON array holding, per TEXT, an array of N ids (default 77): <|startoftext|>,\n"
    "the BPE ids, <|endoftext|>, zero padding. A text longer than N is truncated like\n"
    "clip.tokenize(truncate=True) unless --no-truncate, which makes it an error (exit 1).\n\n"
    "  --context-length N   ids per text (2..65536, default 77)\n"
    "  --bpe PATH.gz        OpenAI's bpe_simple_vocab_16e6.txt.gz\n"
    "  --vocab, --merges    a Hugging Face vocab.json and merges.txt\n"
    "  --model M            the vocabulary of a model (HF folder or zeroclip .safetensors)\n"
    "  --no-truncate        fail on a text that does not fit\n"
    "  --stdin              also read texts from standard input, one per line, after the\n"
    "                       TEXTs; a TEXT '-' reads them at its place instead\n"
#ifdef ZEROCLIP_DEFAULT_BPE
    "\nWithout --bpe or --vocab/--merges: " ZEROCLIP_DEFAULT_BPE "\n"
#endif
    "\nexamples:\n"
    "  zeroclip tokenize \"a photo of a cat.\"\n"
    "  printf 'a dog\\na cat\\n' | zeroclip tokenize --stdin\n";

// The vocabulary of a model: a Hugging Face folder's vocab.json + merges.txt, or the merges stored
// in a zeroclip .safetensors file (only its header is read, not the weights).
zeroclip::tokenizer model_tokenizer(const std::string& path) {
    if (zeroclip::detail::is_directory(path))
        return zeroclip::tokenizer::from_hf_files(path + "/vocab.json", path + "/merges.txt");
    const auto file = zeroclip::safetensors_file::open(path);
    const auto& meta = file.metadata();
    const auto merges = meta.find("zeroclip.bpe_merges");
    if (merges == meta.end())
        throw zeroclip::error(zeroclip::errc::tokenizer, path + ": no tokenizer vocabulary (zeroclip.bpe_merges)");
    const auto vocab = meta.find("zeroclip.bpe_vocab");
    return zeroclip::tokenizer::from_stored(merges->second, vocab == meta.end() ? "" : vocab->second, path);
}

// OpenAI's bpe_simple_vocab_16e6.txt(.gz): a line holding "#version", then one merge "a b" per line. The
// tokenizer skips the first line unread, so anything else (a labels file) is refused here.
zeroclip::tokenizer openai_bpe_tokenizer(const std::string& path) {
    std::string data = zeroclip::read_file(path, "BPE vocabulary", std::uint64_t{64} << 20);
    if (data.size() >= 2 && static_cast<unsigned char>(data[0]) == 0x1F && static_cast<unsigned char>(data[1]) == 0x8B)
        data = zeroclip::detail::gunzip(data, path);
    const size_t first_end = data.find('\n');
    const bool has_merge = first_end != std::string::npos &&
                           data.find_first_not_of(" \t\r\n", first_end) != std::string::npos;
    // OpenAI's own file starts with '"bpe_simple_vocab_16e6.txt#version: 0.2'.
    if (data.substr(0, first_end).find("#version") == std::string::npos || !has_merge)
        throw zeroclip::error(zeroclip::errc::tokenizer,
                              path + ": not a BPE merges file (expected a '#version' line, then merges 'a b', "
                                     "like OpenAI's bpe_simple_vocab_16e6.txt.gz)");
    return zeroclip::tokenizer::from_openai_bpe_data(data, path);
}

zeroclip::tokenizer load_tokenizer(const zeroclip_cli::args& a) {
    const bool hf = a.has("--vocab") || a.has("--merges");
    if (a.has("--bpe") + hf + a.has("--model") > 1)
        throw zeroclip_cli::usage_error("give one of --bpe, --vocab/--merges and --model");
    if (auto model = a.get("--model")) return model_tokenizer(*model);
    if (hf) return zeroclip::tokenizer::from_hf_files(a.required("--vocab"), a.required("--merges"));
    if (auto bpe = a.get("--bpe")) return openai_bpe_tokenizer(*bpe);
#ifdef ZEROCLIP_DEFAULT_BPE
    return zeroclip::tokenizer::from_openai_bpe(ZEROCLIP_DEFAULT_BPE);
#else
    throw zeroclip_cli::usage_error("no vocabulary: pass --bpe PATH.gz or --vocab vocab.json --merges merges.txt");
#endif
}

int run_tokenize(const std::vector<std::string>& argv) {
    zeroclip_cli::args a(argv, {"--context-length", "--bpe", "--vocab", "--merges", "--model"}, {"--no-truncate", "--stdin"});
    zeroclip::tokenize_options options;
    options.context_length = a.get_int("--context-length", 77, 2, 65536);
    options.truncate = !a.has("--no-truncate");

    std::vector<std::string> texts;
    bool stdin_read = false;
    auto read_stdin = [&] {
        if (stdin_read) return;
        stdin_read = true;
        for (std::string line; std::getline(std::cin, line);) texts.push_back(line);
    };
    for (const auto& p : a.positionals()) {
        if (p == "-")
            read_stdin();  // the lines take the place of the '-'
        else
            texts.push_back(p);
    }
    if (a.has("--stdin")) read_stdin();
    if (texts.empty() && !stdin_read) throw zeroclip_cli::usage_error("no TEXT given (or use --stdin)");

    const zeroclip::tokenizer tok = load_tokenizer(a);
    const zeroclip::token_tensor ids = tok.tokenize(texts, options);
    std::string out = "[";
    for (int64_t r = 0; r < ids.dim(0); ++r) {
        out += r ? ",\n [" : "[";
        for (int64_t c = 0; c < ids.dim(1); ++c) {
            if (c) out += ", ";
            out += std::to_string(ids[r * ids.dim(1) + c]);
        }
        out += "]";
    }
    out += "]\n";
    std::cout << out;
    return 0;
}

}  // namespace

ZEROCLIP_CLI_COMMAND({"tokenize", "print CLIP token ids of texts as JSON", tokenize_help, run_tokenize});
