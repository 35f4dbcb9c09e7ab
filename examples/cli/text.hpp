// File names, labels and texts are bytes, not necessarily UTF-8 and possibly holding newlines or
// terminal control codes. How the CLI prints them so that every output stays valid and one row
// stays one line:
// - table, CSV, stderr and the embed names file: `escape_text`, a reversible C-style escaping
//   (\\ \n \r \t, and \xHH for other control bytes and for bytes that are not valid UTF-8);
//   `unescape_text` gives back the exact bytes. Ordinary names are unchanged.
// - JSON: `put_text` stores valid UTF-8 (each invalid byte as U+FFFD) and, only when the bytes
//   are not valid UTF-8, the exact bytes as hex in a sibling field KEY_hex (e.g. "path_hex").
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace zeroclip_cli {

/// Length of the valid UTF-8 sequence at s[i] (1..4), or 0 when the byte there does not start one
/// (a stray continuation byte, an overlong form, a surrogate, past U+10FFFF, or truncated).
inline size_t utf8_sequence_length(std::string_view s, size_t i) {
    const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char c = b(i);
    if (c < 0x80) return 1;
    size_t n = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) n = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) n = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else return 0;
    if (i + n > s.size() || b(i + 1) < lo || b(i + 1) > hi) return 0;
    for (size_t k = 2; k < n; ++k)
        if (b(i + k) < 0x80 || b(i + k) > 0xBF) return 0;
    return n;
}

inline bool is_valid_utf8(std::string_view s) {
    for (size_t i = 0; i < s.size();) {
        const size_t n = utf8_sequence_length(s, i);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

/// `s` with backslashes, control characters (C0, DEL and C1) and invalid UTF-8 bytes escaped, so
/// that the result is valid UTF-8 on one line and `unescape_text` gives `s` back exactly.
inline std::string escape_text(std::string_view s) {
    static const char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(s.size());
    auto byte_escape = [&](unsigned char c) { out += {'\\', 'x', hex[c >> 4], hex[c & 15]}; };
    for (size_t i = 0; i < s.size();) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        const size_t n = utf8_sequence_length(s, i);
        if (c == '\\') out += "\\\\";
        else if (c == '\n') out += "\\n";
        else if (c == '\r') out += "\\r";
        else if (c == '\t') out += "\\t";
        else if (n == 0 || c < 0x20 || c == 0x7F) byte_escape(c);
        else if (n == 2 && c == 0xC2 && static_cast<unsigned char>(s[i + 1]) < 0xA0) {  // C1 control
            byte_escape(c), byte_escape(static_cast<unsigned char>(s[i + 1]));
            i += 2;
            continue;
        } else {
            out.append(s.substr(i, n));
            i += n;
            continue;
        }
        ++i;
    }
    return out;
}

/// The bytes `escape_text` was given, or nullopt when `s` is not a valid escaping (a lone
/// backslash, an unknown escape, a bad \xHH).
inline std::optional<std::string> unescape_text(std::string_view s) {
    std::string out;
    auto hex_value = [](char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    };
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '\\') {
            out += s[i];
            continue;
        }
        if (++i >= s.size()) return std::nullopt;
        switch (s[i]) {
            case '\\': out += '\\'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case 'x': {
                if (i + 2 >= s.size()) return std::nullopt;
                const int h = hex_value(s[i + 1]), l = hex_value(s[i + 2]);
                if (h < 0 || l < 0) return std::nullopt;
                out += static_cast<char>(h * 16 + l);
                i += 2;
                break;
            }
            default: return std::nullopt;
        }
    }
    return out;
}

/// `s` as valid UTF-8: each byte that is not part of a valid sequence becomes U+FFFD.
inline std::string utf8_with_replacements(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size();) {
        const size_t n = utf8_sequence_length(s, i);
        if (n == 0) out += "\xEF\xBF\xBD", ++i;
        else out.append(s.substr(i, n)), i += n;
    }
    return out;
}

/// Lowercase hex of the bytes of `s`.
inline std::string hex_of(std::string_view s) {
    static const char hex[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : s) out += {hex[c >> 4], hex[c & 15]};
    return out;
}

/// Sets obj[key] to `bytes` as valid UTF-8 and, when `bytes` is not valid UTF-8, obj[key + "_hex"]
/// to its exact bytes in hex (so the value still identifies a file whose name is not UTF-8).
inline void put_text(nlohmann::json& obj, const std::string& key, std::string_view bytes) {
    if (is_valid_utf8(bytes)) {
        obj[key] = std::string(bytes);
    } else {
        obj[key] = utf8_with_replacements(bytes);
        obj[key + "_hex"] = hex_of(bytes);
    }
}

/// JSON text of `j`; any string that escaped put_text is dumped with U+FFFD rather than throwing.
inline std::string dump_json(const nlohmann::json& j, int indent = -1) {
    return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace zeroclip_cli
