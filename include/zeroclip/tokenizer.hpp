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

#include <nlohmann/json.hpp>
#include <zlib.h>

#include "detail/text/unicode_tables.hpp"
#include "detail/text/utf8.hpp"
#include "error.hpp"
#include "io/file.hpp"

namespace zeroclip {

/// Token ids of a batch: `rows` texts x `cols` (the context length), row-major, zero padded.
struct token_matrix {
    std::size_t rows = 0;
    std::size_t cols = 0;
    std::vector<std::int32_t> data;

    std::int32_t operator()(std::size_t r, std::size_t c) const { return data[r * cols + c]; }
    const std::int32_t* row(std::size_t r) const { return data.data() + r * cols; }
};

/// How `tokenizer::tokenize` shapes its output.
struct tokenize_options {
    int context_length = 77;  ///< ids per text, start and end tokens included (>= 2)
    /// true: keep the first context_length ids and make the last one <|endoftext|>, like
    /// `clip.tokenize(..., truncate=True)`; false: throw errc::tokenizer, like its default.
    bool truncate = true;
};

namespace detail {

// ---------------------------------------------------------------------------------------------
// Character properties (binary search in the generated range tables)

template <class T, std::size_t N>
inline const T* find_run(const T (&table)[N], char32_t c) noexcept {
    const T* it = std::upper_bound(table, table + N, c, [](char32_t v, const T& r) { return v < r.lo; });
    if (it == table) return nullptr;
    --it;
    return c <= it->hi ? it : nullptr;
}

/// Class of a code point in CLIP's split pattern (tables::clip_class).
inline int clip_char_class(char32_t c) noexcept {
    if (c < 0x80) {
        const char32_t folded = c | 0x20;
        if (folded >= 'a' && folded <= 'z') return tables::letter;
        if (c >= '0' && c <= '9') return tables::number;
        if (c == ' ' || (c >= 0x9 && c <= 0xD)) return tables::space;
        return tables::other;
    }
    const auto* r = find_run(tables::clip_classes, c);
    return r ? static_cast<int>(r->cls) : static_cast<int>(tables::other);
}

/// Python's str.isspace() (what str.strip() removes); wider than the regex's \s by U+001C..1F.
inline bool py_isspace(char32_t c) noexcept {
    if (c < 0x80) return c == ' ' || (c >= 0x9 && c <= 0xD) || (c >= 0x1C && c <= 0x1F);
    return find_run(tables::py_space, c) != nullptr;
}

inline bool is_cased(char32_t c) noexcept { return find_run(tables::cased, c) != nullptr; }
inline bool is_case_ignorable(char32_t c) noexcept { return find_run(tables::case_ignorable, c) != nullptr; }

/// Appends Python's `chr(c).lower()` (full mapping); capital sigma is handled by the caller.
inline void append_lower(std::u32string& out, char32_t c) {
    if (c < 0x80) {
        out.push_back(c >= 'A' && c <= 'Z' ? c + 32 : c);
        return;
    }
    for (const auto& m : tables::lower_multis)
        if (m.cp == c) {
            for (char32_t x : m.out)
                if (x) out.push_back(x);
            return;
        }
    const auto* r = find_run(tables::lower_runs, c);
    if (r && (c - r->lo) % r->step == 0)
        out.push_back(static_cast<char32_t>(static_cast<std::int64_t>(c) + r->delta));
    else
        out.push_back(c);
}

/// Python's str.lower() of a whole string, with its Final_Sigma rule for U+03A3.
inline std::u32string py_lower(std::u32string s) {
    // ASCII fast path. Lowering an ASCII prefix before finding a non-ASCII character is harmless:
    // the general path below gives the same result for it, and case does not change Cased or
    // Case_Ignorable, which the sigma rule reads.
    bool ascii = true;
    for (char32_t& c : s) {
        if (c >= 0x80) {
            ascii = false;
            break;
        }
        if (c >= 'A' && c <= 'Z') c += 32;
    }
    if (ascii) return s;
    std::u32string out;
    out.reserve(s.size() + 8);
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != 0x3A3) {
            append_lower(out, s[i]);
            continue;
        }
        // Final when a cased letter precedes and none follows, case-ignorables skipped (CPython's
        // handle_capital_sigma, which looks at the original string).
        std::size_t j = i;
        while (j > 0 && is_case_ignorable(s[j - 1])) --j;
        bool final_sigma = j > 0 && is_cased(s[j - 1]);
        if (final_sigma) {
            std::size_t k = i + 1;
            while (k < s.size() && is_case_ignorable(s[k])) ++k;
            final_sigma = k == s.size() || !is_cased(s[k]);
        }
        out.push_back(final_sigma ? 0x3C2 : 0x3C3);
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// html.unescape (CPython's Lib/html/__init__.py rules)

/// Replacement of a numeric character reference, or nothing (`html._invalid_codepoints`).
inline void append_charref(std::u32string& out, std::uint32_t num) {
    for (const auto& f : tables::html_invalid_charrefs)
        if (f.from == num) {
            out.push_back(f.to);
            return;
        }
    if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) {
        out.push_back(replacement_char);
        return;
    }
    if (std::binary_search(std::begin(tables::html_invalid_codepoints), std::end(tables::html_invalid_codepoints),
                           static_cast<char32_t>(num)))
        return;
    out.push_back(static_cast<char32_t>(num));
}

/// The entity named by an ASCII string (with or without ';'), or nullptr.
inline const tables::html_entity* find_entity(std::string_view name) noexcept {
    const auto* first = std::begin(tables::html5_entities);
    const auto* last = std::end(tables::html5_entities);
    const auto* it = std::lower_bound(first, last, name, [](const tables::html_entity& e, std::string_view n) {
        return std::string_view(e.name) < n;
    });
    return it != last && std::string_view(it->name) == name ? it : nullptr;
}

/// One pass of Python's html.unescape over code points: the pattern
/// `&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)`, HTML5 named references (longest
/// legacy prefix when the whole name is unknown), numeric ones with the HTML5 fix-ups.
inline std::u32string html_unescape(const std::u32string& s) {
    std::u32string out;
    out.reserve(s.size());
    const std::size_t n = s.size();
    auto is_dec = [](char32_t c) { return c >= '0' && c <= '9'; };
    auto hex_val = [](char32_t c) -> int {
        if (c >= '0' && c <= '9') return static_cast<int>(c - '0');
        if (c >= 'a' && c <= 'f') return static_cast<int>(c - 'a' + 10);
        if (c >= 'A' && c <= 'F') return static_cast<int>(c - 'A' + 10);
        return -1;
    };
    constexpr std::uint32_t too_big = 0x110000;  // saturate: only "> 0x10FFFF" matters
    std::size_t i = 0;
    while (i < n) {
        if (s[i] != U'&') {
            out.push_back(s[i++]);
            continue;
        }
        const std::size_t j = i + 1;
        if (j < n && s[j] == U'#') {
            std::size_t k = j + 1;
            std::uint32_t num = 0;
            if (k < n && is_dec(s[k])) {
                for (; k < n && is_dec(s[k]); ++k) num = std::min<std::uint32_t>(too_big, num * 10 + (s[k] - '0'));
            } else if (k + 1 < n && (s[k] == U'x' || s[k] == U'X') && hex_val(s[k + 1]) >= 0) {
                for (++k; k < n && hex_val(s[k]) >= 0; ++k)
                    num = std::min<std::uint32_t>(too_big, num * 16 + static_cast<std::uint32_t>(hex_val(s[k])));
            } else {
                out.push_back(s[i++]);  // "&#" not followed by a number: literal text
                continue;
            }
            if (k < n && s[k] == U';') ++k;
            append_charref(out, num);
            i = k;
            continue;
        }
        std::size_t k = j;
        while (k < n && k - j < 32) {
            const char32_t c = s[k];
            if (c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' || c == ';')
                break;
            ++k;
        }
        if (k == j) {
            out.push_back(s[i++]);
            continue;
        }
        if (k < n && s[k] == U';') ++k;
        // Names are ASCII: only the ASCII prefix of the candidate can match.
        std::string name;
        for (std::size_t p = j; p < k && s[p] < 0x80; ++p) name.push_back(static_cast<char>(s[p]));
        const std::size_t len = k - j;
        const tables::html_entity* e = name.size() == len ? find_entity(name) : nullptr;
        std::size_t used = len;
        for (std::size_t x = std::min(len - 1, name.size()); !e && x >= 2; --x) {
            e = find_entity(std::string_view(name).substr(0, x));
            used = x;
        }
        if (e) {
            out.push_back(e->value[0]);
            if (e->value[1]) out.push_back(e->value[1]);
            out.append(s, j + used, len - used);
        } else {
            out.append(s, i, k - i);
        }
        i = k;
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// Text cleaning and splitting

/// CLIP's cleaning as code points: html.unescape twice, strip, runs of \s -> ' ', strip, lower.
inline std::u32string clip_normalize(std::string_view utf8) {
    std::u32string t = decode_utf8_replace(utf8);
    if (t.find(U'&') != std::u32string::npos) {
        t = html_unescape(t);
        if (t.find(U'&') != std::u32string::npos) t = html_unescape(t);
    }
    std::size_t b = 0, e = t.size();
    while (b < e && py_isspace(t[b])) ++b;
    while (e > b && py_isspace(t[e - 1])) --e;
    // Collapse runs of \s in place (the write position never passes the read position).
    std::size_t w = 0;
    bool in_space = false;
    for (std::size_t k = b; k < e; ++k) {
        const char32_t c = t[k];
        const bool space = c == U' ' || clip_char_class(c) == tables::space;
        if (!space || !in_space) t[w++] = space ? U' ' : c;
        in_space = space;
    }
    t.resize(w);
    // The second strip() of whitespace_clean cannot change anything after the first (the regex's
    // \s is a subset of str.isspace), so it is omitted.
    return py_lower(std::move(t));
}

/// Splits cleaned text like the `regex` module's findall of CLIP's pattern
/// `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
/// with IGNORECASE: the first alternative that matches at a position wins; characters no
/// alternative matches (\s, and U+0345, see the generator) are skipped. Calls
/// `emit(begin, end)` per token and stops early when it returns false.
template <class Emit>
inline void clip_split(const std::u32string& t, Emit&& emit) {
    const std::size_t n = t.size();
    // IGNORECASE literal matching: only 's' has a case partner that survives lower(): U+017F.
    auto folds_to = [](char32_t c, char p) {
        return c == static_cast<char32_t>(p) || (p == 's' && c == 0x17F) ||
               (c >= 'A' && c <= 'Z' && c + 32 == static_cast<char32_t>(p));
    };
    auto matches_at = [&](std::size_t at, std::string_view lit) {
        if (n - at < lit.size()) return false;
        for (std::size_t k = 0; k < lit.size(); ++k)
            if (!folds_to(t[at + k], lit[k])) return false;
        return true;
    };
    std::size_t i = 0;
    while (i < n) {
        const char32_t c = t[i];
        std::size_t len = 0;
        if (c == U'<') {
            if (matches_at(i, "<|startoftext|>"))
                len = 15;
            else if (matches_at(i, "<|endoftext|>"))
                len = 13;
        } else if (c == U'\'' && i + 1 < n) {
            const char32_t d = t[i + 1];
            if (folds_to(d, 's') || folds_to(d, 't'))
                len = 2;
            else if (matches_at(i, "'re") || matches_at(i, "'ve"))
                len = 3;
            else if (folds_to(d, 'm'))
                len = 2;
            else if (matches_at(i, "'ll"))
                len = 3;
            else if (folds_to(d, 'd'))
                len = 2;
        }
        if (len == 0) {
            const int k = clip_char_class(c);
            if (k == tables::number) {
                len = 1;
            } else if (k == tables::letter || k == tables::other) {
                len = 1;
                while (i + len < n && clip_char_class(t[i + len]) == k) ++len;
            } else {
                ++i;  // whitespace, or a character no alternative accepts
                continue;
            }
        }
        if (!emit(i, i + len)) return;
        i += len;
    }
}

// ---------------------------------------------------------------------------------------------
// BPE data

/// GPT-2's reversible byte -> printable code point map (`bytes_to_unicode`).
inline char32_t byte_to_char(unsigned b) noexcept {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return b;
    // The other 68 bytes get 256, 257, ... in byte order.
    unsigned n = 0;
    for (unsigned x = 0; x < b; ++x)
        if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF))) ++n;
    return 256 + n;
}

/// Bytes in the order of CLIP's vocabulary (the printable ones first, then the remapped ones).
inline std::array<unsigned char, 256> byte_vocab_order() {
    std::array<unsigned char, 256> order{};
    std::size_t k = 0;
    for (unsigned pass = 0; pass < 2; ++pass)
        for (unsigned b = 0; b < 256; ++b)
            if ((byte_to_char(b) == b) == (pass == 0)) order[k++] = static_cast<unsigned char>(b);
    return order;
}

/// Immutable tokenizer data shared by copies of a tokenizer.
struct bpe_model {
    std::unordered_map<std::string, std::int32_t> encoder;  // token -> id
    std::vector<std::string> decoder;                       // id -> token
    std::vector<char> has_id;                               // decoder[id] is meaningful
    // BPE works on symbols: a vocabulary string's symbol is its id; strings the merges make that
    // the vocabulary lacks get ids from decoder.size() on. (left << 32 | right) -> (rank, merged).
    std::unordered_map<std::uint64_t, std::pair<std::int32_t, std::int32_t>> merges;
    std::vector<std::string> extra_symbols;
    std::array<std::int32_t, 256> byte_symbol{};
    std::array<std::int32_t, 256> byte_end_symbol{};  // byte + "</w>": the last symbol of a word
    std::unordered_map<char32_t, unsigned char> char_to_byte;
    std::size_t merge_count = 0;
    std::int32_t sot = -1, eot = -1;

    std::int32_t rank_of(std::int32_t a, std::int32_t b) const {
        auto it = merges.find((static_cast<std::uint64_t>(a) << 32) | static_cast<std::uint32_t>(b));
        return it == merges.end() ? INT32_MAX : it->second.first;
    }
    bool in_vocab(std::int32_t symbol) const {
        return static_cast<std::size_t>(symbol) < decoder.size() && has_id[static_cast<std::size_t>(symbol)];
    }
    std::string symbol_text(std::int32_t symbol) const {
        return static_cast<std::size_t>(symbol) < decoder.size()
                   ? decoder[static_cast<std::size_t>(symbol)]
                   : extra_symbols[static_cast<std::size_t>(symbol) - decoder.size()];
    }
};

inline std::string byte_char_utf8(unsigned b) {
    std::string s;
    append_utf8(s, byte_to_char(b));
    return s;
}

/// Splits merge lines ("a b", one per line, blank lines ignored) into pairs.
inline std::vector<std::pair<std::string, std::string>> parse_merges(const std::vector<std::string_view>& lines,
                                                                     std::size_t first_line_number,
                                                                     const std::string& what) {
    std::vector<std::pair<std::string, std::string>> out;
    out.reserve(lines.size());
    auto is_ws = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; };
    for (std::size_t li = 0; li < lines.size(); ++li) {
        std::string_view line = lines[li];
        std::string_view parts[3];
        std::size_t count = 0, p = 0;
        while (p < line.size() && count < 3) {
            while (p < line.size() && is_ws(line[p])) ++p;
            std::size_t q = p;
            while (q < line.size() && !is_ws(line[q])) ++q;
            if (q > p) parts[count++] = line.substr(p, q - p);
            p = q;
        }
        if (count == 0) continue;
        if (count != 2)
            ZEROCLIP_THROW(errc::tokenizer, what + ": line " + std::to_string(first_line_number + li) +
                                                " is not a merge 'a b': '" + std::string(line.substr(0, 80)) + "'");
        out.emplace_back(std::string(parts[0]), std::string(parts[1]));
    }
    return out;
}

inline std::vector<std::string_view> split_lines(std::string_view text) {
    std::vector<std::string_view> lines;
    std::size_t p = 0;
    while (p <= text.size()) {
        std::size_t q = text.find('\n', p);
        if (q == std::string_view::npos) q = text.size();
        lines.push_back(text.substr(p, q - p));
        p = q + 1;
    }
    return lines;
}

/// Builds the model. Without a vocabulary, CLIP's standard one is derived from the merges:
/// the 256 byte symbols, the same with "</w>", one token per merge, then the two specials.
inline std::shared_ptr<const bpe_model> build_bpe_model(
    const std::vector<std::pair<std::string, std::string>>& merges,
    std::optional<std::unordered_map<std::string, std::int32_t>> vocab, const std::string& what) {
    auto m = std::make_shared<bpe_model>();
    std::array<std::string, 256> byte_str;
    for (unsigned b = 0; b < 256; ++b) {
        byte_str[b] = byte_char_utf8(b);
        m->char_to_byte[byte_to_char(b)] = static_cast<unsigned char>(b);
    }
    if (vocab) {
        m->encoder = std::move(*vocab);
    } else {
        const auto order = byte_vocab_order();
        std::int32_t id = 0;
        m->encoder.reserve(512 + merges.size() + 2);
        // Later duplicates win, like dict(zip(vocab, range(len(vocab)))).
        for (unsigned char b : order) m->encoder[byte_str[b]] = id++;
        for (unsigned char b : order) m->encoder[byte_str[b] + "</w>"] = id++;
        for (const auto& [a, b] : merges) m->encoder[a + b] = id++;
        m->encoder["<|startoftext|>"] = id++;
        m->encoder["<|endoftext|>"] = id++;
    }
    std::int32_t max_id = -1;
    for (const auto& [tok, id] : m->encoder) max_id = std::max(max_id, id);
    // Ids index a table: a few entries with ids near 2^24 would allocate it 16M entries long.
    if (max_id >= 0 && static_cast<std::size_t>(max_id) >= m->encoder.size() + 4096)
        ZEROCLIP_THROW(errc::tokenizer, what + ": token id " + std::to_string(max_id) + " is far beyond the " +
                                            std::to_string(m->encoder.size()) + " tokens of the vocabulary");
    m->decoder.assign(static_cast<std::size_t>(max_id + 1), std::string());
    m->has_id.assign(static_cast<std::size_t>(max_id + 1), 0);
    for (const auto& [tok, id] : m->encoder) {
        m->decoder[static_cast<std::size_t>(id)] = tok;
        m->has_id[static_cast<std::size_t>(id)] = 1;
    }
    std::unordered_map<std::string, std::int32_t> extra_index;
    auto symbol = [&](const std::string& s) {
        if (auto it = m->encoder.find(s); it != m->encoder.end()) return it->second;
        const auto next = static_cast<std::int32_t>(m->decoder.size() + m->extra_symbols.size());
        auto [it, added] = extra_index.emplace(s, next);
        if (added) m->extra_symbols.push_back(s);
        return it->second;
    };
    for (unsigned b = 0; b < 256; ++b) {
        m->byte_symbol[b] = symbol(byte_str[b]);
        m->byte_end_symbol[b] = symbol(byte_str[b] + "</w>");
    }
    m->merges.reserve(merges.size());
    std::string joined;
    for (std::size_t r = 0; r < merges.size(); ++r) {
        joined = merges[r].first;
        joined += merges[r].second;
        const std::int32_t a = symbol(merges[r].first), b = symbol(merges[r].second), ab = symbol(joined);
        // A repeated pair keeps its last rank, as dict(zip(merges, range(...))) does.
        m->merges[(static_cast<std::uint64_t>(a) << 32) | static_cast<std::uint32_t>(b)] = {
            static_cast<std::int32_t>(r), ab};
    }
    m->merge_count = merges.size();
    auto special = [&](const char* tok) {
        auto it = m->encoder.find(tok);
        if (it == m->encoder.end())
            ZEROCLIP_THROW(errc::tokenizer, what + ": the vocabulary has no " + std::string(tok) + " token");
        return it->second;
    };
    m->sot = special("<|startoftext|>");
    m->eot = special("<|endoftext|>");
    return m;
}

inline std::unordered_map<std::string, std::int32_t> parse_vocab_json(std::string_view text, const std::string& what) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(text.begin(), text.end());
    } catch (const nlohmann::json::exception& e) {
        ZEROCLIP_THROW(errc::tokenizer, what + ": invalid JSON: " + e.what());
    }
    if (!j.is_object()) ZEROCLIP_THROW(errc::tokenizer, what + ": expected a JSON object {token: id}");
    std::unordered_map<std::string, std::int32_t> vocab;
    vocab.reserve(j.size());
    for (const auto& [tok, id] : j.items()) {
        if (!id.is_number_integer() || id.get<std::int64_t>() < 0 || id.get<std::int64_t>() >= (1 << 24))
            ZEROCLIP_THROW(errc::tokenizer, what + ": id of token '" + tok + "' is not an integer in [0, 2^24)");
        vocab[tok] = static_cast<std::int32_t>(id.get<std::int64_t>());
    }
    return vocab;
}

/// The largest tokenizer file read (CLIP's vocab.json is 0.8 MB; the gzip'd BPE file 1.3 MB).
constexpr std::uint64_t max_tokenizer_file_bytes = std::uint64_t{256} << 20;

/// A whole tokenizer file (read_file: regular files only, size-limited); kept for existing callers.
inline std::string read_binary_file(const std::string& path) {
    return read_file(path, "tokenizer file", max_tokenizer_file_bytes);
}

/// Inflates gzip (all members, like Python's gzip module) or zlib data.
inline std::string gunzip(std::string_view data, const std::string& what) {
    if (data.size() > UINT_MAX) ZEROCLIP_THROW(errc::tokenizer, what + ": compressed data too large");
    z_stream zs{};
    if (inflateInit2(&zs, 15 + 32) != Z_OK) ZEROCLIP_THROW(errc::tokenizer, what + ": zlib init failed");
    struct end_guard {
        z_stream* z;
        ~end_guard() { inflateEnd(z); }
    } guard{&zs};
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    zs.avail_in = static_cast<uInt>(data.size());
    std::string out;
    std::vector<char> buf(1 << 16);
    for (;;) {
        zs.next_out = reinterpret_cast<Bytef*>(buf.data());
        zs.avail_out = static_cast<uInt>(buf.size());
        const int rc = inflate(&zs, Z_NO_FLUSH);
        out.append(buf.data(), buf.size() - zs.avail_out);
        // CLIP's BPE file inflates to 1.4 MB; a decompression bomb is stopped long before memory runs out.
        if (out.size() > max_tokenizer_file_bytes)
            ZEROCLIP_THROW(errc::tokenizer, what + ": inflates to more than " + std::to_string(max_tokenizer_file_bytes) +
                                                " bytes; not a BPE vocabulary");
        if (rc == Z_STREAM_END) {
            if (zs.avail_in == 0) break;
            if (inflateReset(&zs) != Z_OK) ZEROCLIP_THROW(errc::tokenizer, what + ": zlib reset failed");
            continue;
        }
        if (rc != Z_OK)
            ZEROCLIP_THROW(errc::tokenizer, what + ": corrupt or truncated gzip data" +
                                                (zs.msg ? std::string(" (") + zs.msg + ")" : std::string()));
        if (zs.avail_in == 0 && zs.avail_out != 0)
            ZEROCLIP_THROW(errc::tokenizer, what + ": truncated gzip data");
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// BPE of one word, and the per-word cache

/// Appends the vocabulary ids of one pre-split token (its UTF-8 bytes), merging like
/// SimpleTokenizer.bpe: repeatedly take the lowest-ranked adjacent pair and merge all of its
/// occurrences left to right, until no adjacent pair is a merge.
inline void bpe_word(const bpe_model& m, std::string_view bytes, std::vector<std::int32_t>& out) {
    const std::size_t n = bytes.size();
    std::vector<std::int32_t> sym(n);
    for (std::size_t k = 0; k + 1 < n; ++k) sym[k] = m.byte_symbol[static_cast<unsigned char>(bytes[k])];
    sym[n - 1] = m.byte_end_symbol[static_cast<unsigned char>(bytes[n - 1])];
    // rank[k] is the rank of the pair (sym[k], sym[k+1]); only pairs next to a merge change.
    std::vector<std::int32_t> rank(n, INT32_MAX);
    for (std::size_t k = 0; k + 1 < n; ++k) rank[k] = m.rank_of(sym[k], sym[k + 1]);
    std::size_t size = n;
    while (size > 1) {
        const std::int32_t best = *std::min_element(rank.begin(), rank.begin() + static_cast<std::ptrdiff_t>(size - 1));
        if (best == INT32_MAX) break;
        std::int32_t merged = -1;
        std::size_t w = 0;
        bool prev_merged = false;
        for (std::size_t k = 0; k < size;) {
            // Ranks are unique per pair, so rank == best identifies the pair being merged.
            if (k + 1 < size && rank[k] == best) {
                if (merged < 0) {
                    auto it = m.merges.find((static_cast<std::uint64_t>(sym[k]) << 32) |
                                            static_cast<std::uint32_t>(sym[k + 1]));
                    merged = it->second.second;
                }
                sym[w] = merged;
                if (w > 0) rank[w - 1] = m.rank_of(sym[w - 1], sym[w]);
                k += 2;
                prev_merged = true;
            } else {
                sym[w] = sym[k];
                rank[w] = rank[k];
                if (prev_merged) rank[w - 1] = m.rank_of(sym[w - 1], sym[w]);
                k += 1;
                prev_merged = false;
            }
            ++w;
        }
        size = w;
        rank[size - 1] = INT32_MAX;
    }
    for (std::size_t k = 0; k < size; ++k) {
        if (!m.in_vocab(sym[k]))
            ZEROCLIP_THROW(errc::tokenizer, "BPE produced '" + m.symbol_text(sym[k]) + "', which is not in the vocabulary");
        out.push_back(sym[k]);
    }
}

/// A word's UTF-8 bytes with their hash, computed once for both the shard and the table.
struct cache_key {
    std::string bytes;
    std::size_t hash = 0;
    bool operator==(const cache_key& o) const { return hash == o.hash && bytes == o.bytes; }
};
struct cache_key_hash {
    std::size_t operator()(const cache_key& k) const noexcept { return k.hash; }
};

/// Word -> ids cache shared by threads: sharded, one mutex per shard, each shard bounded (it is
/// simply emptied when full, which keeps memory flat for unbounded input streams).
class bpe_cache {
public:
    static constexpr std::size_t shard_count = 16;
    static constexpr std::size_t max_entries_per_shard = 4096;
    static constexpr std::size_t max_key_bytes = 256;  // longer words are rare: not worth keeping

    bool lookup(const cache_key& word, std::vector<std::int32_t>& out) const {
        const shard& s = shards_[word.hash % shard_count];
        std::lock_guard<std::mutex> lock(s.mutex);
        auto it = s.map.find(word);
        if (it == s.map.end()) return false;
        out.insert(out.end(), it->second.begin(), it->second.end());
        return true;
    }

    void insert(const cache_key& word, const std::int32_t* ids, std::size_t count) const {
        if (word.bytes.size() > max_key_bytes) return;
        shard& s = shards_[word.hash % shard_count];
        std::lock_guard<std::mutex> lock(s.mutex);
        if (s.map.size() >= max_entries_per_shard) s.map.clear();
        s.map.emplace(word, std::vector<std::int32_t>(ids, ids + count));
    }

private:
    struct shard {
        mutable std::mutex mutex;
        std::unordered_map<cache_key, std::vector<std::int32_t>, cache_key_hash> map;
    };
    mutable std::array<shard, shard_count> shards_;
};

}  // namespace detail

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
        return from_openai_bpe_data(detail::read_binary_file(path), path);
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
        const std::size_t end = std::min<std::size_t>(lines.size(), 49152 - 256 - 2 + 1);
        std::vector<std::string_view> used(lines.begin() + std::min<std::size_t>(1, lines.size()),
                                           lines.begin() + static_cast<std::ptrdiff_t>(end));
        auto merges = detail::parse_merges(used, 2, what);
        if (merges.empty()) ZEROCLIP_THROW(errc::tokenizer, what + ": no BPE merges in the vocabulary file");
        return tokenizer(detail::build_bpe_model(merges, std::nullopt, what));
    }

    /// Hugging Face files: vocab.json ({token: id}) and merges.txt (optional "#version" header,
    /// then every line is a merge in rank order).
    static tokenizer from_hf_files(const std::string& vocab_json_path, const std::string& merges_txt_path) {
        return from_hf(detail::read_binary_file(vocab_json_path), detail::read_binary_file(merges_txt_path),
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
    std::vector<std::int32_t> encode(std::string_view utf8) const {
        std::vector<std::int32_t> ids;
        encode_into(utf8, ids, SIZE_MAX);
        return ids;
    }

    /// The BPE tokens of a text as vocabulary strings ("photo</w>", ...), without start/end.
    std::vector<std::string> pieces(std::string_view utf8) const {
        std::vector<std::string> out;
        for (std::int32_t id : encode(utf8)) out.push_back(model_->decoder[static_cast<std::size_t>(id)]);
        return out;
    }

    /// One text as exactly `context_length` ids: <|startoftext|>, BPE ids, <|endoftext|>, zeros.
    /// Too long: truncated (last id <|endoftext|>) or errc::tokenizer, per `options.truncate`.
    std::vector<std::int32_t> tokenize_one(std::string_view utf8, const tokenize_options& options = {}) const {
        std::vector<std::int32_t> row(context_of(options));
        fill_row(utf8, options, row.data());
        return row;
    }

    /// A batch as a texts.size() x context_length matrix (clip.tokenize).
    token_matrix tokenize(const std::vector<std::string>& texts, const tokenize_options& options = {}) const {
        token_matrix m;
        m.rows = texts.size();
        m.cols = context_of(options);
        m.data.assign(m.rows * m.cols, 0);
        for (std::size_t r = 0; r < texts.size(); ++r) fill_row(texts[r], options, m.data.data() + r * m.cols);
        return m;
    }

    /// SimpleTokenizer.decode: token strings joined, bytes restored, invalid UTF-8 replaced,
    /// "</w>" -> " ". Special tokens and padding (id 0 is "!") are decoded like any id.
    std::string decode(const std::vector<std::int32_t>& ids) const {
        std::string bytes;
        for (std::int32_t id : ids) {
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
        for (std::size_t p = 0; p < text.size();) {
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
    std::optional<std::int32_t> token_to_id(std::string_view token) const {
        auto it = model_->encoder.find(std::string(token));
        if (it == model_->encoder.end()) return std::nullopt;
        return it->second;
    }

    /// Vocabulary string of an id; errc::tokenizer for an unknown id.
    const std::string& token_of(std::int32_t id) const {
        if (id < 0 || static_cast<std::size_t>(id) >= model_->decoder.size() || !model_->has_id[static_cast<std::size_t>(id)])
            ZEROCLIP_THROW(errc::tokenizer, "unknown token id " + std::to_string(id));
        return model_->decoder[static_cast<std::size_t>(id)];
    }

    std::int32_t start_of_text() const noexcept { return model_->sot; }  ///< <|startoftext|> (49406)
    std::int32_t end_of_text() const noexcept { return model_->eot; }    ///< <|endoftext|> (49407)
    /// One past the largest id (49408 for CLIP): the text model's embedding rows.
    std::size_t vocab_size() const noexcept { return model_->decoder.size(); }
    std::size_t merge_count() const noexcept { return model_->merge_count; }

    /// The cleaned, lowercased text the split pattern sees (UTF-8), for debugging.
    static std::string normalize(std::string_view utf8) { return detail::encode_utf8(detail::clip_normalize(utf8)); }

private:
    explicit tokenizer(std::shared_ptr<const detail::bpe_model> model)
        : model_(std::move(model)), cache_(std::make_shared<detail::bpe_cache>()) {}

    static tokenizer from_merges_and_vocab(std::string_view merges_txt, std::string_view vocab_json,
                                           const std::string& what) {
        auto lines = detail::split_lines(merges_txt);
        std::size_t first = 0;
        if (!lines.empty() && lines[0].substr(0, 8) == "#version") first = 1;
        std::vector<std::string_view> used(lines.begin() + static_cast<std::ptrdiff_t>(first), lines.end());
        auto merges = detail::parse_merges(used, first + 1, what);
        // Without merges BPE would split every word into characters and look like it worked.
        if (merges.empty())
            ZEROCLIP_THROW(errc::tokenizer, what + ": no BPE merges (only a '#version' header, or nothing); "
                                                   "the tokenizer needs CLIP's merges");
        std::optional<std::unordered_map<std::string, std::int32_t>> vocab;
        if (vocab_json.find_first_not_of(" \t\r\n") != std::string_view::npos)
            vocab = detail::parse_vocab_json(vocab_json, what);
        return tokenizer(detail::build_bpe_model(merges, vocab, what));
    }

    static std::size_t context_of(const tokenize_options& options) {
        if (options.context_length < 2)
            ZEROCLIP_THROW(errc::invalid_argument,
                           "context_length must be at least 2, got " + std::to_string(options.context_length));
        return static_cast<std::size_t>(options.context_length);
    }

    /// Appends the BPE ids of a text; stops once `out` holds at least `limit` ids.
    void encode_into(std::string_view utf8, std::vector<std::int32_t>& out, std::size_t limit) const {
        const detail::bpe_model& m = *model_;
        const std::u32string text = detail::clip_normalize(utf8);
        detail::cache_key word;
        detail::clip_split(text, [&](std::size_t b, std::size_t e) {
            word.bytes.clear();
            for (std::size_t k = b; k < e; ++k) detail::append_utf8(word.bytes, text[k]);
            // SimpleTokenizer pre-seeds its cache with the two special tokens.
            if (text[b] == U'<' && word.bytes == "<|startoftext|>") {
                out.push_back(m.sot);
            } else if (text[b] == U'<' && word.bytes == "<|endoftext|>") {
                out.push_back(m.eot);
            } else {
                word.hash = std::hash<std::string>{}(word.bytes);
                if (!cache_->lookup(word, out)) {
                    const std::size_t before = out.size();
                    detail::bpe_word(m, word.bytes, out);
                    cache_->insert(word, out.data() + before, out.size() - before);
                }
            }
            return out.size() < limit;
        });
    }

    void fill_row(std::string_view utf8, const tokenize_options& options, std::int32_t* row) const {
        const std::size_t ctx = context_of(options);
        std::vector<std::int32_t> ids;
        ids.reserve(ctx + 8);
        ids.push_back(model_->sot);
        // [sot] + ids + [eot] is too long exactly when [sot] + ids already fills the context.
        encode_into(utf8, ids, ctx);
        if (ids.size() >= ctx) {
            if (!options.truncate) {
                const std::size_t total = encode(utf8).size() + 2;
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
