//! NumPy `.npy` and `.npz` reading and `.npy` writing, so embeddings and pixels can be compared
//! with Python directly. Reads little-endian C-order arrays of float32/64, int8/16/32/64, uint8
//! and bool; `.npz` members may be stored or deflated. Writes float32, int32 and uint8.
#pragma once

#include <zlib.h>

#include <cstdint>
#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <type_traits>
#include <string>
#include <vector>

#include "../tensor.hpp"
#include "file.hpp"

namespace zeroclip {

/// A NumPy array as read from disk: its dtype descriptor ("<f4", "|u1", ...), shape and raw bytes.
/// Arrays from load_npy/load_npz are validated: a supported dtype, a shape whose element and
/// byte counts fit in 64 bits, and exactly that many bytes.
struct npy_array {
    std::string descr;
    shape_t shape;
    std::vector<unsigned char> bytes;

    /// Bytes per element ("<U20" strings are 20 UTF-32 code units); 0 for a malformed descr.
    size_t element_size() const {
        if (descr.size() < 3 || descr.size() > 7) return 0;
        size_t n = 0;
        for (size_t i = 2; i < descr.size(); ++i) {
            if (descr[i] < '0' || descr[i] > '9') return 0;
            n = n * 10 + static_cast<size_t>(descr[i] - '0');
        }
        return descr[1] == 'U' ? 4 * n : n;
    }

    /// The values of a str array ("<U..."), as UTF-8 (ASCII-safe; other code points are encoded).
    std::vector<std::string> to_strings() const {
        if (kind() != 'U') ZEROCLIP_THROW(errc::format, "npy array of " + descr + " is not a str array");
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
    /// The values converted to int32 (integer dtypes only; a value outside int32 is errc::format).
    token_tensor to_int32() const {
        if (kind() == 'f') ZEROCLIP_THROW(errc::format, "npy array of " + descr + " is not an integer array");
        return convert<int32_t>();
    }

private:
    char kind() const { return descr.size() >= 2 ? descr[1] : '\0'; }

    template <class T>
    basic_tensor<T> convert() const {
        const char k = kind();
        if (k != 'f' && k != 'i' && k != 'u' && k != 'b')
            ZEROCLIP_THROW(errc::format, "npy array of " + descr + " is not numeric");
        const size_t width = element_size();
        const auto n = static_cast<size_t>(shape_numel(shape));
        if (width == 0 || width > 8 || bytes.size() / width < n)
            ZEROCLIP_THROW(errc::format, "npy array of " + descr + " and shape " + shape_to_string(shape) +
                                             " holds only " + std::to_string(bytes.size()) + " bytes");
        basic_tensor<T> out(shape);
        T* dst = out.data();
        for (size_t i = 0; i < n; ++i) {
            const unsigned char* p = bytes.data() + i * width;
            double v = 0;
            if (k == 'f' && width == 4) { float f; std::memcpy(&f, p, 4); v = f; }
            else if (k == 'f' && width == 8) { std::memcpy(&v, p, 8); }
            else {
                uint64_t raw = 0;
                std::memcpy(&raw, p, width);
                if (k == 'i' && width < 8 && (raw >> (8 * width - 1)) & 1) raw |= ~uint64_t{0} << (8 * width);
                v = k == 'i' ? static_cast<double>(static_cast<int64_t>(raw)) : static_cast<double>(raw);
            }
            if (std::is_integral_v<T> && !(v >= static_cast<double>(std::numeric_limits<T>::min()) &&
                                           v <= static_cast<double>(std::numeric_limits<T>::max())))
                ZEROCLIP_THROW(errc::format, "npy array of " + descr + ": value " + std::to_string(v) +
                                                 " at index " + std::to_string(i) + " does not fit in int32");
            dst[i] = static_cast<T>(v);
        }
        return out;
    }
};

namespace detail {

/// What a .npy header declares: the array (without its bytes) and where its data starts.
struct npy_header {
    npy_array array;          ///< descr and shape; bytes empty
    uint64_t data_offset = 0;
    uint64_t data_bytes = 0;  ///< element count × element size, overflow-checked
};

/// The largest .npy header read (numpy writes a few hundred bytes; format 2.0 allows 4 GiB).
constexpr uint64_t max_npy_header_bytes = uint64_t{1} << 20;

/// Parses the preamble and header text of a .npy held in `data` (at least the preamble and the
/// header; the array data may be absent). Every defect is errc::format naming `name`.
inline npy_header parse_npy_header(const unsigned char* data, size_t size, const std::string& name) {
    auto fail = [&](const std::string& what) {
        ZEROCLIP_THROW(errc::format, name + ": not a valid .npy array: " + what);
    };
    if (size < 10 || std::memcmp(data, "\x93NUMPY", 6) != 0) fail("missing the \\x93NUMPY magic");
    const unsigned major = data[6];
    if (major < 1 || major > 3) fail("unsupported format version " + std::to_string(major));
    uint64_t header_len = 0, offset = 0;
    if (major == 1) {
        header_len = data[8] | (uint64_t{data[9]} << 8);
        offset = 10;
    } else {
        if (size < 12) fail("truncated header");
        header_len = data[8] | (uint64_t{data[9]} << 8) | (uint64_t{data[10]} << 16) |
                     (uint64_t{data[11]} << 24);
        offset = 12;
    }
    if (header_len > max_npy_header_bytes)
        fail("header of " + std::to_string(header_len) + " bytes is larger than the limit of " +
             std::to_string(max_npy_header_bytes));
    if (header_len > size - offset) fail("header runs past the end of the file");
    const std::string header(reinterpret_cast<const char*>(data + offset), static_cast<size_t>(header_len));
    auto value_of = [&](const std::string& key) {
        auto k = header.find("'" + key + "'");
        if (k == std::string::npos) fail("header has no '" + key + "'");
        auto colon = header.find(':', k);
        if (colon == std::string::npos) fail("malformed header");
        return colon + 1;
    };
    npy_header h;
    npy_array& a = h.array;
    size_t p = header.find('\'', value_of("descr"));
    size_t q = p == std::string::npos ? p : header.find('\'', p + 1);
    if (q == std::string::npos) fail("malformed descr");
    a.descr = header.substr(p + 1, q - p - 1);
    if (a.descr.size() < 3 || (a.descr[0] != '<' && a.descr[0] != '|') ||
        std::string("fiubU").find(a.descr[1]) == std::string::npos)
        fail("unsupported dtype '" + a.descr.substr(0, 40) + "' (need little-endian float, int, uint, bool or str)");
    const size_t width = a.element_size();
    if (a.descr[1] == 'U' ? (width == 0 || width > 4096)
                          : (!(width == 1 || width == 2 || width == 4 || width == 8) || (a.descr[1] == 'f' && width < 4)))
        fail("unsupported dtype '" + a.descr.substr(0, 40) + "'");
    size_t fortran = value_of("fortran_order");
    while (fortran < header.size() && header[fortran] == ' ') ++fortran;
    if (header.compare(fortran, 4, "True") == 0) fail("Fortran-order arrays are not supported");
    const size_t open = header.find('(', value_of("shape"));
    const size_t close = open == std::string::npos ? open : header.find(')', open);
    if (close == std::string::npos) fail("malformed shape");
    const std::string dims = header.substr(open + 1, close - open - 1);
    // Every count is overflow-checked: a shape whose product wraps would pass the size check.
    constexpr auto max_dim = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    const std::string too_large = name + ": not a valid .npy array: shape (" + dims.substr(0, 200) + ")";
    uint64_t count = 1;
    for (size_t i = 0; i < dims.size();) {
        while (i < dims.size() && (dims[i] == ' ' || dims[i] == ',')) ++i;
        if (i >= dims.size()) break;
        uint64_t d = 0;
        size_t j = i;
        for (; j < dims.size() && dims[j] >= '0' && dims[j] <= '9'; ++j)
            d = checked_add(checked_mul(d, 10, too_large), static_cast<uint64_t>(dims[j] - '0'), too_large);
        if (j == i) fail("malformed shape (" + dims.substr(0, 200) + ")");
        if (d > max_dim) fail("shape (" + dims.substr(0, 200) + ") has a dimension larger than 2^63 - 1");
        if (a.shape.size() >= 32) fail("shape has more than 32 dimensions");
        a.shape.push_back(static_cast<int64_t>(d));
        count = checked_mul(count, d, too_large);
        i = j;
    }
    const uint64_t bytes = checked_mul(count, width, too_large + " of " + a.descr);
    if (bytes > max_dim) fail("shape " + shape_to_string(a.shape) + " of " + a.descr + " is more than 2^63 bytes");
    h.data_offset = offset + header_len;
    h.data_bytes = bytes;
    return h;
}

/// Parses a whole .npy held in memory (a .npz member); errc::format naming `name` when the data
/// is shorter than the header's shape says.
inline npy_array parse_npy(const unsigned char* data, size_t size, const std::string& name) {
    npy_header h = parse_npy_header(data, size, name);
    if (h.data_bytes > size - h.data_offset)
        ZEROCLIP_THROW(errc::format, name + ": not a valid .npy array: data is " +
                                         std::to_string(size - h.data_offset) + " bytes but shape " +
                                         shape_to_string(h.array.shape) + " of " + h.array.descr + " needs " +
                                         std::to_string(h.data_bytes) + " (truncated?)");
    const unsigned char* begin = data + h.data_offset;
    h.array.bytes.assign(begin, begin + h.data_bytes);
    return std::move(h.array);
}

}  // namespace detail

/// Reads a .npy file. The header is read and checked first; the data is allocated only once the
/// file is known to hold as many bytes as the header declares. errc::io (unreadable, not a
/// regular file) or errc::format (malformed), naming the file.
inline npy_array load_npy(const std::string& path) {
    opened_file f = open_regular_file(path, ".npy array");
    // The preamble says how long the header is; only then is the header read, and only once it
    // is checked is the data allocated.
    std::vector<unsigned char> head(12);
    head.resize(read_at(f, head.data(), head.size(), 0, path));
    if (head.size() >= 10 && std::memcmp(head.data(), "\x93NUMPY", 6) == 0) {
        const bool v1 = head[6] == 1;
        uint64_t header_len = head[8] | (uint64_t{head[9]} << 8);
        if (!v1 && head.size() >= 12) header_len |= (uint64_t{head[10]} << 16) | (uint64_t{head[11]} << 24);
        const uint64_t want = (v1 ? 10 : 12) + std::min(header_len, detail::max_npy_header_bytes);
        head.resize(static_cast<size_t>(std::min(want, f.size)));
        head.resize(read_at(f, head.data(), head.size(), 0, path));
    }
    detail::npy_header h = detail::parse_npy_header(head.data(), head.size(), path);
    const uint64_t have = f.size > h.data_offset ? f.size - h.data_offset : 0;
    if (h.data_bytes > have)
        ZEROCLIP_THROW(errc::format, path + ": not a valid .npy array: data is " + std::to_string(have) +
                                         " bytes but shape " + shape_to_string(h.array.shape) + " of " +
                                         h.array.descr + " needs " + std::to_string(h.data_bytes) + " (truncated?)");
    npy_array a = std::move(h.array);
    a.bytes.resize(static_cast<size_t>(h.data_bytes));
    if (read_at(f, a.bytes.data(), a.bytes.size(), h.data_offset, path) != a.bytes.size())
        ZEROCLIP_THROW(errc::io, path + ": the file shrank while it was read");
    return a;
}

/// The largest .npz archive read (it is read whole): 64 GiB.
constexpr uint64_t max_npz_bytes = uint64_t{1} << 36;

namespace detail {

/// Inflates a raw deflate stream of `csize` bytes into exactly `usize` bytes; errc::format naming
/// `what` when it is corrupt or does not inflate to that size.
inline std::vector<unsigned char> inflate_member(const unsigned char* in, uint64_t csize, uint64_t usize,
                                                 const std::string& what) {
    std::vector<unsigned char> out(static_cast<size_t>(usize));
    z_stream zs{};
    if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) ZEROCLIP_THROW(errc::format, what + ": cannot start inflating");
    // z_stream counts in 32 bits: input and output are handed over in chunks of at most 1 GiB.
    constexpr uint64_t chunk = uint64_t{1} << 30;
    uint64_t in_done = 0, out_done = 0;
    int rc = Z_OK;
    for (;;) {
        if (zs.avail_in == 0 && in_done < csize) {
            zs.next_in = const_cast<unsigned char*>(in + in_done);
            zs.avail_in = static_cast<uInt>(std::min(chunk, csize - in_done));
            in_done += zs.avail_in;
        }
        if (zs.avail_out == 0 && out_done < usize) {
            zs.next_out = out.data() + out_done;
            zs.avail_out = static_cast<uInt>(std::min(chunk, usize - out_done));
            out_done += zs.avail_out;
        }
        rc = inflate(&zs, Z_NO_FLUSH);
        // Z_BUF_ERROR: no progress, so the input ended early or the output is fuller than declared.
        if (rc != Z_OK) break;
    }
    const uint64_t produced = out_done - zs.avail_out;
    inflateEnd(&zs);
    if (rc != Z_STREAM_END || produced != usize)
        ZEROCLIP_THROW(errc::format, what + ": corrupt deflate data, or not the " + std::to_string(usize) +
                                         " bytes its zip header declares");
    return out;
}

}  // namespace detail

/// Reads every array of a .npz file (a zip of .npy members, stored or deflated), keyed by name
/// without the ".npy" suffix. Every size in the zip headers is checked before it is used.
inline std::map<std::string, npy_array> load_npz(const std::string& path) {
    const std::string zip = read_file(path, ".npz archive", max_npz_bytes);
    const auto* bytes = reinterpret_cast<const unsigned char*>(zip.data());
    const uint64_t size = zip.size();
    auto u16 = [&](uint64_t at) { return static_cast<uint64_t>(bytes[at] | (bytes[at + 1] << 8)); };
    auto u32 = [&](uint64_t at) { return u16(at) | (u16(at + 2) << 16); };
    auto u64 = [&](uint64_t at) { return u32(at) | (u32(at + 4) << 32); };
    std::map<std::string, npy_array> out;
    uint64_t pos = 0;
    while (pos + 30 <= size && u32(pos) == 0x04034b50) {
        const uint64_t method = u16(pos + 8), flags = u16(pos + 6);
        uint64_t csize = u32(pos + 18), usize = u32(pos + 22);
        const uint64_t name_len = u16(pos + 26), extra_len = u16(pos + 28);
        const uint64_t data_at = pos + 30 + name_len + extra_len;  // < 2^17 past pos: no overflow
        if (data_at > size) ZEROCLIP_THROW(errc::format, path + ": truncated zip member header");
        std::string name(reinterpret_cast<const char*>(bytes + pos + 30), static_cast<size_t>(name_len));
        const std::string what = path + ": zip member '" + name + "'";
        // zip64: the sizes that do not fit in 32 bits live in the extra field, in this order.
        if (csize == 0xffffffffu || usize == 0xffffffffu) {
            bool found = false;
            for (uint64_t e = pos + 30 + name_len; e + 4 <= data_at;) {
                const uint64_t id = u16(e), len = u16(e + 2);
                if (e + 4 + len > data_at) break;
                if (id == 1) {
                    uint64_t at = e + 4;
                    const uint64_t end = at + len;
                    if (usize == 0xffffffffu && at + 8 <= end) usize = u64(at), at += 8;
                    if (csize == 0xffffffffu && at + 8 <= end) csize = u64(at), at += 8;
                    found = true;
                    break;
                }
                e += 4 + len;
            }
            if (!found) ZEROCLIP_THROW(errc::format, what + " declares zip64 sizes but has no zip64 field");
        }
        if (flags & 8) ZEROCLIP_THROW(errc::format, what + " has its sizes after its data (unsupported)");
        if (csize > size - data_at)
            ZEROCLIP_THROW(errc::format, what + " is " + std::to_string(csize) + " bytes, past the end of the file (truncated?)");
        std::vector<unsigned char> member;
        if (method == 0) {
            if (usize != csize) ZEROCLIP_THROW(errc::format, what + " is stored but its two sizes differ");
            member.assign(bytes + data_at, bytes + data_at + csize);
        } else if (method == 8) {
            // Deflate expands at most 1032:1; a larger declared size is a lie, refused before allocating.
            if (usize / 1032 > csize + 64)
                ZEROCLIP_THROW(errc::format, what + " declares " + std::to_string(usize) + " bytes from " +
                                                 std::to_string(csize) + " compressed, more than deflate can produce");
            member = detail::inflate_member(bytes + data_at, csize, usize, what);
        } else {
            ZEROCLIP_THROW(errc::format, what + " uses unsupported compression");
        }
        if (name.size() > 4 && name.compare(name.size() - 4, 4, ".npy") == 0) name.resize(name.size() - 4);
        out[name] = detail::parse_npy(member.data(), member.size(), path + ":" + name);
        pos = data_at + csize;
    }
    if (out.empty()) ZEROCLIP_THROW(errc::format, path + ": not a .npz archive (no arrays found)");
    return out;
}

/// Writes a float32, int32 or uint8 tensor as .npy (`descr` "<f4", "<i4" or "|u1") into an open
/// atomic output; the caller commits it (so several outputs can be committed together).
template <class T>
inline void write_npy(atomic_output& out, const basic_tensor<T>& t) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, int32_t> || std::is_same_v<T, uint8_t>,
                  "write_npy writes float, int32_t or uint8_t");
    const char* descr = std::is_same_v<T, float> ? "<f4" : std::is_same_v<T, int32_t> ? "<i4" : "|u1";
    std::string shape;
    for (auto d : t.shape()) shape += std::to_string(d) + ", ";
    if (t.ndim() > 1) shape.resize(shape.size() - 1);
    if (t.ndim() > 1) shape.pop_back();
    std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (" + shape + "), }";
    header.append(64 - (10 + header.size() + 1) % 64, ' ');
    header += '\n';
    const unsigned char preamble[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                                        static_cast<unsigned char>(header.size() & 0xff),
                                        static_cast<unsigned char>(header.size() >> 8)};
    out.write(preamble, 10);
    out.write(header);
    out.write(t.data(), static_cast<size_t>(detail::checked_mul(sizeof(T), static_cast<uint64_t>(t.numel()),
                                                                out.path())));
}

/// Writes a float32, int32 or uint8 tensor as .npy, atomically: on any failure (a full disk) the
/// previous file at `path` is unchanged and nothing partial is left.
template <class T>
inline void save_npy(const std::string& path, const basic_tensor<T>& t) {
    atomic_output out(path);
    write_npy(out, t);
    out.commit();
}

}  // namespace zeroclip
