//! libFuzzer target: the tokenizer's files. The input is split at its first NUL byte into a
//! Hugging Face vocab.json and merges.txt (from_hf); the whole input is also tried as an OpenAI
//! merges file (from_openai_bpe_data, gzip or plain) and as zeroclip's stored merges. Whatever
//! is accepted must tokenize a few fixed texts and the input itself without failing otherwise.
#include <zeroclip/tokenizer.hpp>

#include "fuzz_common.hpp"

namespace {

void exercise(const zeroclip::tokenizer& tok, std::string_view input) {
    FUZZ_CHECK(tok.vocab_size() > 0);
    for (std::string_view text : {std::string_view("a photo of a cat."), std::string_view("<|endoftext|> don't Ωmega"),
                                  input.substr(0, 64)}) {
        accept_or_refuse([&] {
            const std::vector<int32_t> ids = tok.encode(text);
            for (int32_t id : ids) FUZZ_CHECK(id >= 0 && static_cast<size_t>(id) < tok.vocab_size());
            (void)tok.tokenize_one(text, zeroclip::tokenize_options{8, true});
            (void)tok.decode(ids);
        });
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > 4096) return 0;  // the parsers are linear; long inputs only slow the search
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const size_t nul = input.find('\0');
    const std::string_view vocab = nul == std::string_view::npos ? std::string_view() : input.substr(0, nul);
    const std::string_view merges = nul == std::string_view::npos ? input : input.substr(nul + 1);
    accept_or_refuse([&] { exercise(zeroclip::tokenizer::from_hf(vocab, merges, "vocab.json + merges.txt"), input); });
    accept_or_refuse([&] { exercise(zeroclip::tokenizer::from_stored(merges, vocab, "model file"), input); });
    accept_or_refuse([&] { exercise(zeroclip::tokenizer::from_openai_bpe_data(input, "bpe.txt.gz"), input); });
    return 0;
}
