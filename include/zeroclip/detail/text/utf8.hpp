//! UTF-8 <-> code points with Python's rules, for the tokenizer.
//! `decode_utf8_replace` behaves exactly like `bytes.decode("utf-8", errors="replace")` in CPython:
//! each maximal subpart of an ill-formed sequence becomes one U+FFFD (Unicode's "best practice",
//! which CPython follows), so the result never depends on where the input was cut.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace zeroclip::detail {

inline constexpr char32_t replacement_char = 0xFFFD;

/// Decodes UTF-8, replacing every maximal ill-formed subpart (overlongs, surrogates, code points
/// past U+10FFFF, stray continuation bytes, truncated sequences) by one U+FFFD. Never throws.
inline std::u32string decode_utf8_replace(std::string_view bytes) {
    const size_t n = bytes.size();
    std::u32string out(n, U'\0');  // never more code points than bytes
    size_t i = 0, w = 0;
    while (i < n) {
        const unsigned b0 = static_cast<unsigned char>(bytes[i]);
        if (b0 < 0x80) {
            out[w++] = b0;
            ++i;
            continue;
        }
        int need;
        char32_t cp;
        // The second byte's allowed range excludes overlongs (E0, F0) and surrogates / values
        // past U+10FFFF (ED, F4) up front, so a bad second byte ends the subpart at the lead.
        unsigned lo = 0x80, hi = 0xBF;
        if (b0 >= 0xC2 && b0 <= 0xDF) {
            need = 1;
            cp = b0 & 0x1F;
        } else if (b0 >= 0xE0 && b0 <= 0xEF) {
            need = 2;
            cp = b0 & 0x0F;
            if (b0 == 0xE0) lo = 0xA0;
            if (b0 == 0xED) hi = 0x9F;
        } else if (b0 >= 0xF0 && b0 <= 0xF4) {
            need = 3;
            cp = b0 & 0x07;
            if (b0 == 0xF0) lo = 0x90;
            if (b0 == 0xF4) hi = 0x8F;
        } else {
            out[w++] = replacement_char;  // C0, C1, F5..FF, or a stray continuation byte
            ++i;
            continue;
        }
        size_t j = i + 1;
        int got = 0;
        while (got < need && j < n) {
            const unsigned b = static_cast<unsigned char>(bytes[j]);
            if (b < lo || b > hi) break;
            cp = (cp << 6) | (b & 0x3F);
            lo = 0x80;
            hi = 0xBF;
            ++j;
            ++got;
        }
        out[w++] = got == need ? cp : replacement_char;
        i = j;
    }
    out.resize(w);
    return out;
}

/// Appends the UTF-8 form of a code point (which must be a scalar value, as all ours are).
inline void append_utf8(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

/// UTF-8 form of a code point sequence.
inline std::string encode_utf8(std::u32string_view text) {
    std::string out;
    out.reserve(text.size());
    for (char32_t cp : text) append_utf8(out, cp);
    return out;
}

}  // namespace zeroclip::detail
