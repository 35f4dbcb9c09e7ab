//! CLIP's text cleaning and pre-tokenisation, as code points (tokenizer.hpp uses them): Python's
//! str.lower() and str.isspace(), html.unescape (CPython's rules), clip_normalize (unescape
//! twice, strip, collapse whitespace, lower) and clip_split (the regex split of CLIP's pattern).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "unicode_tables.hpp"
#include "utf8.hpp"

namespace zeroclip::detail {

// ---------------------------------------------------------------------------------------------
// Character properties (binary search in the generated range tables)

template <class T, size_t N>
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
        out.push_back(static_cast<char32_t>(static_cast<int64_t>(c) + r->delta));
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
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] != 0x3A3) {
            append_lower(out, s[i]);
            continue;
        }
        // Final when a cased letter precedes and none follows, case-ignorables skipped (CPython's
        // handle_capital_sigma, which looks at the original string).
        size_t j = i;
        while (j > 0 && is_case_ignorable(s[j - 1])) --j;
        bool final_sigma = j > 0 && is_cased(s[j - 1]);
        if (final_sigma) {
            size_t k = i + 1;
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
inline void append_charref(std::u32string& out, uint32_t num) {
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
    const size_t n = s.size();
    auto is_dec = [](char32_t c) { return c >= '0' && c <= '9'; };
    auto hex_val = [](char32_t c) -> int {
        if (c >= '0' && c <= '9') return static_cast<int>(c - '0');
        if (c >= 'a' && c <= 'f') return static_cast<int>(c - 'a' + 10);
        if (c >= 'A' && c <= 'F') return static_cast<int>(c - 'A' + 10);
        return -1;
    };
    constexpr uint32_t too_big = 0x110000;  // saturate: only "> 0x10FFFF" matters
    size_t i = 0;
    while (i < n) {
        if (s[i] != U'&') {
            out.push_back(s[i++]);
            continue;
        }
        const size_t j = i + 1;
        if (j < n && s[j] == U'#') {
            size_t k = j + 1;
            uint32_t num = 0;
            if (k < n && is_dec(s[k])) {
                for (; k < n && is_dec(s[k]); ++k) num = std::min<uint32_t>(too_big, num * 10 + (s[k] - '0'));
            } else if (k + 1 < n && (s[k] == U'x' || s[k] == U'X') && hex_val(s[k + 1]) >= 0) {
                for (++k; k < n && hex_val(s[k]) >= 0; ++k)
                    num = std::min<uint32_t>(too_big, num * 16 + static_cast<uint32_t>(hex_val(s[k])));
            } else {
                out.push_back(s[i++]);  // "&#" not followed by a number: literal text
                continue;
            }
            if (k < n && s[k] == U';') ++k;
            append_charref(out, num);
            i = k;
            continue;
        }
        size_t k = j;
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
        for (size_t p = j; p < k && s[p] < 0x80; ++p) name.push_back(static_cast<char>(s[p]));
        const size_t len = k - j;
        const tables::html_entity* e = name.size() == len ? find_entity(name) : nullptr;
        size_t used = len;
        for (size_t x = std::min(len - 1, name.size()); !e && x >= 2; --x) {
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
    size_t b = 0, e = t.size();
    while (b < e && py_isspace(t[b])) ++b;
    while (e > b && py_isspace(t[e - 1])) --e;
    // Collapse runs of \s in place (the write position never passes the read position).
    size_t w = 0;
    bool in_space = false;
    for (size_t k = b; k < e; ++k) {
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
    const size_t n = t.size();
    // IGNORECASE literal matching: only 's' has a case partner that survives lower(): U+017F.
    auto folds_to = [](char32_t c, char p) {
        return c == static_cast<char32_t>(p) || (p == 's' && c == 0x17F) ||
               (c >= 'A' && c <= 'Z' && c + 32 == static_cast<char32_t>(p));
    };
    auto matches_at = [&](size_t at, std::string_view lit) {
        if (n - at < lit.size()) return false;
        for (size_t k = 0; k < lit.size(); ++k)
            if (!folds_to(t[at + k], lit[k])) return false;
        return true;
    };
    size_t i = 0;
    while (i < n) {
        const char32_t c = t[i];
        size_t len = 0;
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

}  // namespace zeroclip::detail
