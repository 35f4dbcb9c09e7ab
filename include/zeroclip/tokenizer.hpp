//! zeroclip::tokenizer — OpenAI CLIP's byte-level BPE tokenizer, id for id with `clip.tokenize`
//! (clip/simple_tokenizer.py), from OpenAI's bpe_simple_vocab_16e6.txt.gz, Hugging Face
//! vocab.json + merges.txt, or the merges/vocab stored in a zeroclip model file (docs/FORMAT.md).
//! Thread-safe; the official steps and where we knowingly differ are listed on the class.
#pragma once

#include <algorithm>
#include <array>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "detail/text/bpe.hpp"
#include "detail/text/normalize.hpp"
#include "detail/text/utf8.hpp"
#include "error.hpp"
#include "io/file.hpp"
#include "tensor.hpp"

namespace zeroclip {

/// How `tokenizer::tokenize` shapes its output.
struct tokenize_options {
    int context_length = 77;  ///< ids per text, start and end tokens included (>= 2)
    /// true: keep the first context_length ids and make the last one <|endoftext|>, like
    /// `clip.tokenize(..., truncate=True)`; false: throw errc::tokenizer, like its default.
    bool truncate = true;
};

/// CLIP's tokenizer. Immutable after construction; every const member may be called from
/// several threads at once (the word cache is internally locked). Copies share data and cache.
///
/// Steps, as the official code: html.unescape twice (HTML5 named and numeric references, CPython's
/// rules), strip, runs of \s -> one space, strip, str.lower() (full mappings, final sigma); split
/// with `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
/// (regex module, IGNORECASE); bytes -> printable alphabet; BPE by merge rank with "</w>".
/// Deliberate differences:
/// - `ftfy.fix_text` is not run (identity, as in the fixtures' reference): mojibake repair is out
///   of scope, so text ftfy would change (mojibake, curly quotes, ligatures, full-width forms,
///   terminal escapes, some control characters) may tokenize differently from an ftfy install.
/// - Input is UTF-8, decoded like `bytes.decode("utf-8", errors="replace")`: each maximal
///   ill-formed subpart becomes one U+FFFD, never an error.
/// - Letters, numbers and case mappings are Unicode `detail::tables::unicode_version` (14.0.0);
///   characters assigned later are treated as unassigned ("other").
/// - A decimal character reference of more than 4300 digits, on which CPython's int() raises,
///   becomes U+FFFD like any out-of-range reference.
class tokenizer {
public:
    /// OpenAI's `bpe_simple_vocab_16e6.txt.gz` (shipped as data/bpe_simple_vocab_16e6.txt.gz):
    /// merges are lines [1, 48895) of the file, the vocabulary is derived from them (49408 ids).
    static tokenizer from_openai_bpe(const std::string& path) {
        return from_openai_bpe_data(read_file(path, "tokenizer file", detail::max_tokenizer_file_bytes), path);
    }

    /// Same from the file's bytes, gzip-compressed or already decompressed.
    static tokenizer from_openai_bpe_data(std::string_view data, const std::string& what = "bpe vocabulary") {
        std::string text;
        if (data.size() >= 2 && static_cast<unsigned char>(data[0]) == 0x1F && static_cast<unsigned char>(data[1]) == 0x8B) {
            text = detail::gunzip(data, what);
            data = text;
        }
        auto lines = detail::split_lines(data);
        // clip/simple_tokenizer.py: merges[1:49152-256-2+1] (the first line is a header).
        const size_t end = std::min<size_t>(lines.size(), 49152 - 256 - 2 + 1);
        std::vector<std::string_view> used(lines.begin() + std::min<size_t>(1, lines.size()),
                                           lines.begin() + static_cast<ptrdiff_t>(end));
        auto merges = detail::parse_merges(used, 2, what);
        if (merges.empty()) ZEROCLIP_THROW(errc::tokenizer, what + ": no BPE merges in the vocabulary file");
        return tokenizer(detail::build_bpe_model(merges, std::nullopt, what));
    }

    /// Hugging Face files: vocab.json ({token: id}) and merges.txt (optional "#version" header,
    /// then every line is a merge in rank order).
    static tokenizer from_hf_files(const std::string& vocab_json_path, const std::string& merges_txt_path) {
        return from_hf(read_file(vocab_json_path, "tokenizer file", detail::max_tokenizer_file_bytes),
                       read_file(merges_txt_path, "tokenizer file", detail::max_tokenizer_file_bytes),
                       vocab_json_path + " + " + merges_txt_path);
    }

    /// Hugging Face vocab.json and merges.txt contents.
    static tokenizer from_hf(std::string_view vocab_json, std::string_view merges_txt,
                             const std::string& what = "Hugging Face tokenizer") {
        return from_merges_and_vocab(merges_txt, vocab_json, what);
    }

    /// The form stored in zeroclip model files (docs/FORMAT.md): merges one "a b" per line in rank
    /// order, and an optional vocabulary JSON; when it is empty CLIP's standard vocabulary is
    /// derived from the merges.
    static tokenizer from_stored(std::string_view merges, std::string_view vocab_json = {},
                                 const std::string& what = "stored tokenizer") {
        return from_merges_and_vocab(merges, vocab_json, what);
    }

    /// BPE ids of a UTF-8 text without start/end tokens (SimpleTokenizer.encode).
    std::vector<int32_t> encode(std::string_view utf8) const {
        std::vector<int32_t> ids;
        encode_into(utf8, ids, SIZE_MAX);
        return ids;
    }

    /// The BPE tokens of a text as vocabulary strings ("photo</w>", ...), without start/end.
    std::vector<std::string> pieces(std::string_view utf8) const {
        std::vector<std::string> out;
        for (int32_t id : encode(utf8)) out.push_back(model_->decoder[static_cast<size_t>(id)]);
        return out;
    }

    /// One text as exactly `context_length` ids: <|startoftext|>, BPE ids, <|endoftext|>, zeros.
    /// Too long: truncated (last id <|endoftext|>) or errc::tokenizer, per `options.truncate`.
    std::vector<int32_t> tokenize_one(std::string_view utf8, const tokenize_options& options = {}) const {
        std::vector<int32_t> row(context_of(options));
        fill_row(utf8, options, row.data());
        return row;
    }

    /// A batch as a [texts.size(), context_length] token_tensor, zero padded (clip.tokenize).
    token_tensor tokenize(const std::vector<std::string>& texts, const tokenize_options& options = {}) const {
        const size_t cols = context_of(options);
        token_tensor m({static_cast<int64_t>(texts.size()), static_cast<int64_t>(cols)});  // zero-filled
        for (size_t r = 0; r < texts.size(); ++r) fill_row(texts[r], options, m.data() + r * cols);
        return m;
    }

    /// SimpleTokenizer.decode: token strings joined, bytes restored, invalid UTF-8 replaced,
    /// "</w>" -> " ". Special tokens and padding (id 0 is "!") are decoded like any id.
    std::string decode(const std::vector<int32_t>& ids) const {
        std::string bytes;
        for (int32_t id : ids) {
            for (char32_t c : detail::decode_utf8_replace(token_of(id))) {
                auto it = model_->char_to_byte.find(c);
                if (it == model_->char_to_byte.end())
                    ZEROCLIP_THROW(errc::tokenizer, "decode: token " + std::to_string(id) + " '" + token_of(id) +
                                                        "' has a character outside the byte alphabet");
                bytes.push_back(static_cast<char>(it->second));
            }
        }
        std::string text = detail::encode_utf8(detail::decode_utf8_replace(bytes));
        std::string out;
        for (size_t p = 0; p < text.size();) {
            if (text.compare(p, 4, "</w>") == 0) {
                out.push_back(' ');
                p += 4;
            } else {
                out.push_back(text[p++]);
            }
        }
        return out;
    }

    /// Id of a vocabulary string, if it has one.
    std::optional<int32_t> token_to_id(std::string_view token) const {
        auto it = model_->encoder.find(std::string(token));
        if (it == model_->encoder.end()) return std::nullopt;
        return it->second;
    }

    /// Vocabulary string of an id; errc::tokenizer for an unknown id.
    const std::string& token_of(int32_t id) const {
        if (id < 0 || static_cast<size_t>(id) >= model_->decoder.size() || !model_->has_id[static_cast<size_t>(id)])
            ZEROCLIP_THROW(errc::tokenizer, "unknown token id " + std::to_string(id));
        return model_->decoder[static_cast<size_t>(id)];
    }

    int32_t start_of_text() const noexcept { return model_->sot; }  ///< <|startoftext|> (49406)
    int32_t end_of_text() const noexcept { return model_->eot; }    ///< <|endoftext|> (49407)
    /// One past the largest id (49408 for CLIP): the text model's embedding rows.
    size_t vocab_size() const noexcept { return model_->decoder.size(); }
    size_t merge_count() const noexcept { return model_->merge_count; }

    /// The cleaned, lowercased text the split pattern sees (UTF-8), for debugging.
    static std::string normalize(std::string_view utf8) { return detail::encode_utf8(detail::clip_normalize(utf8)); }

private:
    explicit tokenizer(std::shared_ptr<const detail::bpe_model> model)
        : model_(std::move(model)), cache_(std::make_shared<detail::bpe_cache>()) {}

    static tokenizer from_merges_and_vocab(std::string_view merges_txt, std::string_view vocab_json,
                                           const std::string& what) {
        auto lines = detail::split_lines(merges_txt);
        size_t first = 0;
        if (!lines.empty() && lines[0].substr(0, 8) == "#version") first = 1;
        std::vector<std::string_view> used(lines.begin() + static_cast<ptrdiff_t>(first), lines.end());
        auto merges = detail::parse_merges(used, first + 1, what);
        // Without merges BPE would split every word into characters and look like it worked.
        if (merges.empty())
            ZEROCLIP_THROW(errc::tokenizer, what + ": no BPE merges (only a '#version' header, or nothing); "
                                                   "the tokenizer needs CLIP's merges");
        std::optional<std::unordered_map<std::string, int32_t>> vocab;
        if (vocab_json.find_first_not_of(" \t\r\n") != std::string_view::npos)
            vocab = detail::parse_vocab_json(vocab_json, what);
        return tokenizer(detail::build_bpe_model(merges, vocab, what));
    }

    static size_t context_of(const tokenize_options& options) {
        if (options.context_length < 2)
            ZEROCLIP_THROW(errc::invalid_argument,
                           "context_length must be at least 2, got " + std::to_string(options.context_length));
        return static_cast<size_t>(options.context_length);
    }

    /// Appends the BPE ids of a text; stops once `out` holds at least `limit` ids.
    void encode_into(std::string_view utf8, std::vector<int32_t>& out, size_t limit) const {
        const detail::bpe_model& m = *model_;
        const std::u32string text = detail::clip_normalize(utf8);
        detail::cache_key word;
        detail::clip_split(text, [&](size_t b, size_t e) {
            word.bytes.clear();
            for (size_t k = b; k < e; ++k) detail::append_utf8(word.bytes, text[k]);
            // SimpleTokenizer pre-seeds its cache with the two special tokens.
            if (text[b] == U'<' && word.bytes == "<|startoftext|>") {
                out.push_back(m.sot);
            } else if (text[b] == U'<' && word.bytes == "<|endoftext|>") {
                out.push_back(m.eot);
            } else {
                word.hash = std::hash<std::string>{}(word.bytes);
                if (!cache_->lookup(word, out)) {
                    const size_t before = out.size();
                    detail::bpe_word(m, word.bytes, out);
                    cache_->insert(word, out.data() + before, out.size() - before);
                }
            }
            return out.size() < limit;
        });
    }

    void fill_row(std::string_view utf8, const tokenize_options& options, int32_t* row) const {
        const size_t ctx = context_of(options);
        std::vector<int32_t> ids;
        ids.reserve(ctx + 8);
        ids.push_back(model_->sot);
        // [sot] + ids + [eot] is too long exactly when [sot] + ids already fills the context.
        encode_into(utf8, ids, ctx);
        if (ids.size() >= ctx) {
            if (!options.truncate) {
                const size_t total = encode(utf8).size() + 2;
                std::string shown(utf8.substr(0, 200));
                ZEROCLIP_THROW(errc::tokenizer, "input \"" + shown + (utf8.size() > 200 ? "..." : "") + "\" is " +
                                                    std::to_string(total) + " tokens, too long for context length " +
                                                    std::to_string(ctx));
            }
            ids.resize(ctx);
            ids.back() = model_->eot;
        } else {
            ids.push_back(model_->eot);
        }
        std::fill(std::copy(ids.begin(), ids.end(), row), row + ctx, 0);
    }

    std::shared_ptr<const detail::bpe_model> model_;
    std::shared_ptr<detail::bpe_cache> cache_;
};

}  // namespace zeroclip
