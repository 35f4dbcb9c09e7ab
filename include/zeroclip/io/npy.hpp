//! NumPy `.npy` and `.npz` reading and `.npy` writing, so embeddings and pixels can be compared
//! with Python directly. Reads little-endian C-order arrays of float32/64, int8/16/32/64, uint8
//! and bool; `.npz` members may be stored or deflated. Writes float32, int32 and uint8.
#pragma once

#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <iterator>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "../tensor.hpp"

namespace zeroclip {

/// A NumPy array as read from disk: its dtype descriptor ("<f4", "|u1", ...), shape and raw bytes.
struct npy_array {
    std::string descr;
    shape_t shape;
    std::vector<unsigned char> bytes;

    /// Bytes per element ("<U20" strings are 20 UTF-32 code units).
    size_t element_size() const {
        const size_t n = static_cast<size_t>(std::atoi(descr.c_str() + 2));
        return descr[1] == 'U' ? 4 * n : n;
    }

    /// The values of a str array ("<U..."), as UTF-8 (ASCII-safe; other code points are encoded).
    std::vector<std::string> to_strings() const {
        if (descr[1] != 'U') ZEROCLIP_THROW(errc::format, "npy array of " + descr + " is not a str array");
        std::vector<std::string> out;
        const size_t width = element_size();
        for (size_t off = 0; off + width <= bytes.size(); off += width) {
            std::string s;
            for (size_t i = 0; i < width; i += 4) {
                uint32_t c;
                std::memcpy(&c, bytes.data() + off + i, 4);
                if (c == 0) break;
                if (c < 0x80) s += static_cast<char>(c);
                else if (c < 0x800) s += {static_cast<char>(0xC0 | (c >> 6)), static_cast<char>(0x80 | (c & 0x3F))};
                else if (c < 0x10000)
                    s += {static_cast<char>(0xE0 | (c >> 12)), static_cast<char>(0x80 | ((c >> 6) & 0x3F)),
                          static_cast<char>(0x80 | (c & 0x3F))};
                else
                    s += {static_cast<char>(0xF0 | (c >> 18)), static_cast<char>(0x80 | ((c >> 12) & 0x3F)),
                          static_cast<char>(0x80 | ((c >> 6) & 0x3F)), static_cast<char>(0x80 | (c & 0x3F))};
            }
            out.push_back(s);
        }
        return out;
    }

    /// The values converted to float32 (any numeric dtype).
    tensor to_float() const { return convert<float>(); }
    /// The values converted to int32 (integer dtypes only).
    token_tensor to_int32() const {
        if (descr[1] == 'f') ZEROCLIP_THROW(errc::format, "npy array of " + descr + " is not an integer array");
        return convert<int32_t>();
    }

private:
    template <class T>
    basic_tensor<T> convert() const {
        if (descr[1] == 'U') ZEROCLIP_THROW(errc::format, "npy array of " + descr + " is not numeric");
        basic_tensor<T> out(shape);
        const char kind = descr[1];
        const size_t width = element_size();
        for (int64_t i = 0; i < out.numel(); ++i) {
            const unsigned char* p = bytes.data() + static_cast<size_t>(i) * width;
            double v = 0;
            if (kind == 'f' && width == 4) { float f; std::memcpy(&f, p, 4); v = f; }
            else if (kind == 'f' && width == 8) { std::memcpy(&v, p, 8); }
            else if (kind == 'i' || kind == 'u' || kind == 'b') {
                uint64_t raw = 0;
                std::memcpy(&raw, p, width);
                if (kind == 'i' && width < 8 && (raw >> (8 * width - 1)) & 1) raw |= ~uint64_t{0} << (8 * width);
                v = kind == 'i' ? static_cast<double>(static_cast<int64_t>(raw)) : static_cast<double>(raw);
            }
            // An integer outside T's range has no T value (and casting it would be undefined).
            if (std::is_integral_v<T> &&
                !(v >= static_cast<double>(std::numeric_limits<T>::min()) &&
                  v <= static_cast<double>(std::numeric_limits<T>::max()))) {
                std::ostringstream value;
                value << std::fixed << std::setprecision(0) << v;
                ZEROCLIP_THROW(errc::format, "npy array of " + descr + ": value " + value.str() + " at index " +
                                                 std::to_string(i) + " does not fit in a 32-bit integer");
            }
            out[i] = static_cast<T>(v);
        }
        return out;
    }
};

namespace detail {

inline npy_array parse_npy(const unsigned char* data, size_t size, const std::string& name) {
    auto fail = [&](const std::string& what) -> void {
        ZEROCLIP_THROW(errc::format, name + ": not a valid .npy array: " + what);
    };
    if (size < 10 || std::memcmp(data, "\x93NUMPY", 6) != 0) fail("missing the \\x93NUMPY magic");
    const unsigned major = data[6];
    size_t header_len, offset;
    if (major == 1) {
        header_len = data[8] | (size_t{data[9]} << 8);
        offset = 10;
    } else {
        if (size < 12) fail("truncated header");
        header_len = data[8] | (size_t{data[9]} << 8) | (size_t{data[10]} << 16) | (size_t{data[11]} << 24);
        offset = 12;
    }
    if (header_len > size - offset) fail("header runs past the end of the file");
    std::string header(reinterpret_cast<const char*>(data + offset), header_len);
    auto value_of = [&](const std::string& key) {
        auto k = header.find("'" + key + "'");
        if (k == std::string::npos) fail("header has no '" + key + "'");
        auto colon = header.find(':', k);
        if (colon == std::string::npos) fail("malformed header");
        return colon + 1;
    };
    npy_array a;
    size_t p = header.find('\'', value_of("descr"));
    size_t q = p == std::string::npos ? p : header.find('\'', p + 1);
    if (q == std::string::npos) fail("malformed descr");
    a.descr = header.substr(p + 1, q - p - 1);
    if (a.descr.size() < 3 || (a.descr[0] != '<' && a.descr[0] != '|') ||
        std::string("fiubU").find(a.descr[1]) == std::string::npos)
        fail("unsupported dtype '" + a.descr + "' (need little-endian float, int, uint, bool or str)");
    const size_t width = a.element_size();
    if (a.descr[1] == 'U' ? (width == 0 || width > 4096)
                          : (!(width == 1 || width == 2 || width == 4 || width == 8) || (a.descr[1] == 'f' && width < 4)))
        fail("unsupported dtype '" + a.descr + "'");
    size_t fortran = value_of("fortran_order");
    while (fortran < header.size() && header[fortran] == ' ') ++fortran;
    if (header.compare(fortran, 4, "True") == 0) fail("Fortran-order arrays are not supported");
    size_t open = header.find('(', value_of("shape")), close = header.find(')', open);
    if (open == std::string::npos || close == std::string::npos) fail("malformed shape");
    std::string dims = header.substr(open + 1, close - open - 1);
    for (size_t i = 0; i < dims.size();) {
        while (i < dims.size() && (dims[i] == ' ' || dims[i] == ',')) ++i;
        if (i >= dims.size()) break;
        size_t j = i;
        while (j < dims.size() && std::isdigit(static_cast<unsigned char>(dims[j]))) ++j;
        if (j == i) fail("malformed shape");
        a.shape.push_back(std::stoll(dims.substr(i, j - i)));
        i = j;
    }
    const size_t need = static_cast<size_t>(shape_numel(a.shape)) * width;
    if (need > size - offset - header_len) fail("data is shorter than its shape says (truncated?)");
    a.bytes.assign(data + offset + header_len, data + offset + header_len + need);
    return a;
}

inline std::vector<unsigned char> read_file_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) ZEROCLIP_THROW(errc::io, path + ": cannot open");
    return std::vector<unsigned char>(std::istreambuf_iterator<char>(in), {});
}

}  // namespace detail

/// Reads a .npy file.
inline npy_array load_npy(const std::string& path) {
    auto bytes = detail::read_file_bytes(path);
    return detail::parse_npy(bytes.data(), bytes.size(), path);
}

/// Reads every array of a .npz file (a zip of .npy members, stored or deflated), keyed by name
/// without the ".npy" suffix.
inline std::map<std::string, npy_array> load_npz(const std::string& path) {
    auto zip = detail::read_file_bytes(path);
    auto u16 = [&](size_t at) { return static_cast<size_t>(zip[at] | (zip[at + 1] << 8)); };
    auto u32 = [&](size_t at) { return static_cast<size_t>(u16(at) | (u16(at + 2) << 16)); };
    std::map<std::string, npy_array> out;
    size_t pos = 0;
    while (pos + 30 <= zip.size() && u32(pos) == 0x04034b50) {
        const size_t method = u16(pos + 8), flags = u16(pos + 6);
        size_t csize = u32(pos + 18), usize = u32(pos + 22);
        const size_t name_len = u16(pos + 26), extra_len = u16(pos + 28);
        if (pos + 30 + name_len + extra_len > zip.size()) break;
        std::string name(reinterpret_cast<const char*>(&zip[pos + 30]), name_len);
        const size_t data_at = pos + 30 + name_len + extra_len;
        // zip64 sizes live in the extra field (numpy writes them for large members).
        if (csize == 0xffffffffu || usize == 0xffffffffu) {
            for (size_t e = pos + 30 + name_len; e + 4 <= data_at;) {
                size_t id = u16(e), len = u16(e + 2);
                if (id == 1 && len >= 16) {
                    usize = u32(e + 4);
                    csize = u32(e + 12);
                }
                e += 4 + len;
            }
        }
        if ((flags & 8) || data_at + csize > zip.size())
            ZEROCLIP_THROW(errc::format, path + ": unsupported or truncated zip member '" + name + "'");
        std::vector<unsigned char> member;
        if (method == 0) {
            member.assign(zip.begin() + static_cast<long>(data_at), zip.begin() + static_cast<long>(data_at + csize));
        } else if (method == 8) {
            member.resize(usize);
            z_stream zs{};
            zs.next_in = zip.data() + data_at;
            zs.avail_in = static_cast<uInt>(csize);
            zs.next_out = member.data();
            zs.avail_out = static_cast<uInt>(usize);
            if (inflateInit2(&zs, -MAX_WBITS) != Z_OK ||
                (inflate(&zs, Z_FINISH) != Z_STREAM_END && (inflateEnd(&zs), true)))
                ZEROCLIP_THROW(errc::format, path + ": cannot inflate zip member '" + name + "'");
            inflateEnd(&zs);
        } else {
            ZEROCLIP_THROW(errc::format, path + ": zip member '" + name + "' uses unsupported compression");
        }
        if (name.size() > 4 && name.compare(name.size() - 4, 4, ".npy") == 0) name.resize(name.size() - 4);
        out[name] = detail::parse_npy(member.data(), member.size(), path + ":" + name);
        pos = data_at + csize;
    }
    if (out.empty()) ZEROCLIP_THROW(errc::format, path + ": not a .npz archive (no arrays found)");
    return out;
}

/// Writes a float32, int32 or uint8 tensor as .npy (`descr` "<f4", "<i4" or "|u1").
template <class T>
inline void save_npy(const std::string& path, const basic_tensor<T>& t) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, int32_t> || std::is_same_v<T, uint8_t>,
                  "save_npy writes float, int32_t or uint8_t");
    const char* descr = std::is_same_v<T, float> ? "<f4" : std::is_same_v<T, int32_t> ? "<i4" : "|u1";
    std::string shape;
    for (auto d : t.shape()) shape += std::to_string(d) + ", ";
    if (t.ndim() > 1) shape.resize(shape.size() - 1);
    if (t.ndim() > 1) shape.pop_back();
    std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (" + shape + "), }";
    header.append(64 - (10 + header.size() + 1) % 64, ' ');
    header += '\n';
    std::ofstream out(path, std::ios::binary);
    if (!out) ZEROCLIP_THROW(errc::io, path + ": cannot open for writing");
    const unsigned char preamble[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                                        static_cast<unsigned char>(header.size() & 0xff),
                                        static_cast<unsigned char>(header.size() >> 8)};
    out.write(reinterpret_cast<const char*>(preamble), 10);
    out << header;
    out.write(reinterpret_cast<const char*>(t.data()), static_cast<std::streamsize>(sizeof(T) * t.numel()));
    if (!out) ZEROCLIP_THROW(errc::io, path + ": write failed");
}

}  // namespace zeroclip
