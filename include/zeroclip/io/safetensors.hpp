//! Safetensors reading and writing. The reader maps the file and validates the whole header
//! before any tensor is touched: offsets inside the data section, no overlaps, dtype × shape =
//! byte length, metadata of strings. Every defect is a zeroclip::error naming the file and tensor.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "../detail/io/convert.hpp"
#include "../detail/io/half.hpp"
#include "../detail/io/mmap.hpp"
#include "../tensor.hpp"
#include "file.hpp"

namespace zeroclip {

enum class dtype { f32, f16, bf16, f64, i64, i32, i16, i8, u8, boolean };

/// Bytes per element of a dtype.
inline size_t dtype_size(dtype t) {
    switch (t) {
        case dtype::f64: case dtype::i64: return 8;
        case dtype::f32: case dtype::i32: return 4;
        case dtype::f16: case dtype::bf16: case dtype::i16: return 2;
        default: return 1;
    }
}

/// The safetensors spelling of a dtype ("F32", "BF16", ...).
inline const char* dtype_name(dtype t) {
    switch (t) {
        case dtype::f32: return "F32";
        case dtype::f16: return "F16";
        case dtype::bf16: return "BF16";
        case dtype::f64: return "F64";
        case dtype::i64: return "I64";
        case dtype::i32: return "I32";
        case dtype::i16: return "I16";
        case dtype::i8: return "I8";
        case dtype::u8: return "U8";
        case dtype::boolean: return "BOOL";
    }
    return "?";
}

/// One tensor of a safetensors file: where its bytes are in the mapping.
struct tensor_record {
    std::string name;
    dtype type = dtype::f32;
    shape_t shape;
    const unsigned char* bytes = nullptr;
    size_t nbytes = 0;
};

class safetensors_file {
public:
    /// Maps and validates `path`. Throws errc::io (unreadable) or errc::format (malformed).
    static safetensors_file open(const std::string& path) {
        safetensors_file f;
        f.file_ = detail::mapped_file::open(path);
        f.parse();
        return f;
    }

    /// Validates a safetensors file held in memory; `name` labels errors. Same checks as open().
    static safetensors_file from_bytes(std::vector<unsigned char> bytes, const std::string& name) {
        safetensors_file f;
        f.file_ = detail::mapped_file::from_bytes(std::move(bytes), name);
        f.parse();
        return f;
    }

    const std::string& path() const { return file_->path(); }
    bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
    const std::map<std::string, tensor_record>& tensors() const { return tensors_; }
    const std::map<std::string, std::string>& metadata() const { return metadata_; }

    /// The record of a tensor; errc::format naming file and tensor if absent.
    const tensor_record& record(const std::string& name) const {
        auto it = tensors_.find(name);
        if (it == tensors_.end())
            ZEROCLIP_THROW(errc::format, path() + ": tensor '" + name + "' is missing");
        return it->second;
    }

    /// A float32 tensor: a view into the mapping for aligned F32 data (whose pages leave the
    /// resident set when the last view goes), otherwise converted
    /// (vectorised and multi-threaded, into storage that is not zero-filled first), after which
    /// the source pages leave the resident set (detail/io/convert.hpp).
    /// Every value is checked finite first: a NaN or infinity is errc::format naming the tensor.
    tensor to_float(const tensor_record& r) const {
        const size_t n = static_cast<size_t>(shape_numel(r.shape));
        if (r.type != dtype::f32 && r.type != dtype::f16 && r.type != dtype::bf16 && r.type != dtype::f64)
            ZEROCLIP_THROW(errc::format, path() + ": tensor '" + r.name + "' has dtype " + dtype_name(r.type) +
                                             ", expected a float type");
        if (r.type != dtype::f64)
            check_finite(r, detail::first_non_finite(r.bytes, static_cast<int64_t>(n), r.type == dtype::f32 ? 4 : 2,
                                                          r.type == dtype::bf16));
        if (r.type == dtype::f32 && reinterpret_cast<uintptr_t>(r.bytes) % alignof(float) == 0) {
            if (!file_->is_mapped()) return tensor::view(r.shape, file_, reinterpret_cast<const float*>(r.bytes));
            // When the last view goes (a weight the backend has packed into its own form), its
            // pages leave the resident set; the mapping lives as long as the view.
            std::shared_ptr<const void> pages(r.bytes, [file = file_, bytes = r.nbytes](const void* p) {
                detail::release_mapped(p, bytes);
            });
            return tensor::view(r.shape, std::move(pages), reinterpret_cast<const float*>(r.bytes));
        }
        std::shared_ptr<float> storage = detail::alloc_floats(n);
        float* dst = storage.get();
        switch (r.type) {
            case dtype::f32: std::memcpy(dst, r.bytes, 4 * n); break;
            case dtype::f16: detail::f16_to_f32(r.bytes, dst, static_cast<int64_t>(n)); break;
            case dtype::bf16: detail::bf16_to_f32(r.bytes, dst, static_cast<int64_t>(n)); break;
            case dtype::f64:
                for (size_t i = 0; i < n; ++i) {
                    double v;
                    std::memcpy(&v, r.bytes + 8 * i, 8);
                    dst[i] = static_cast<float>(v);
                }
                break;
            default: break;
        }
        if (r.type == dtype::f64)  // a finite double may still overflow float
            check_finite(r, detail::first_non_finite(reinterpret_cast<const unsigned char*>(dst),
                                                          static_cast<int64_t>(n), 4));
        if (file_->is_mapped()) detail::release_mapped(r.bytes, r.nbytes);
        return tensor::view(r.shape, std::move(storage), dst);
    }

private:
    std::shared_ptr<const detail::mapped_file> file_;
    std::map<std::string, tensor_record> tensors_;
    std::map<std::string, std::string> metadata_;

    [[noreturn]] void fail(const std::string& what) const {
        ZEROCLIP_THROW(errc::format, path() + ": not a valid safetensors file: " + what);
    }

    void check_finite(const tensor_record& r, int64_t bad_index) const {
        if (bad_index >= 0)
            ZEROCLIP_THROW(errc::format, path() + ": tensor '" + r.name + "' holds a NaN or infinite value (at index " +
                                             std::to_string(bad_index) + "); the checkpoint is corrupt");
    }

    /// What a file that is not safetensors is, from its first bytes ("" when not recognised), with
    /// what to do about it: a checkpoint of another format is converted, an image is not a model.
    static std::string recognise_other_format(const unsigned char* p, size_t n) {
        auto starts = [&](const char* sig, size_t len) { return n >= len && std::memcmp(p, sig, len) == 0; };
        const char* convert = "; convert it with weights_tools/convert.py";
        if (starts("PK\x03\x04", 4))
            return std::string("is a zip archive (a PyTorch .pt/.bin checkpoint or TorchScript model, or a .npz), "
                               "not a safetensors file") + convert;
        if (n >= 2 && p[0] == 0x80 && p[1] >= 2 && p[1] <= 5)
            return std::string("is a Python pickle (a legacy PyTorch checkpoint), not a safetensors file") + convert;
        if (starts("\x89PNG\r\n\x1a\n", 8) || starts("\xff\xd8\xff", 3) || starts("GIF8", 4) ||
            (starts("RIFF", 4) && n >= 12 && std::memcmp(p + 8, "WEBP", 4) == 0) || starts("BM", 2))
            return "is an image, not a model: pass a zeroclip .safetensors file or a Hugging Face CLIP folder";
        if (starts("\x93NUMPY", 6)) return "is a NumPy .npy array, not a model";
        if (starts("\x1f\x8b", 2)) return "is gzip-compressed; decompress it first";
        if (starts("\x7f" "ELF", 4) || starts("#!", 2)) return "is a program, not a model";
        return "";
    }

    static bool parse_dtype(const std::string& s, dtype& out) {
        static const std::pair<const char*, dtype> names[] = {
            {"F32", dtype::f32}, {"F16", dtype::f16}, {"BF16", dtype::bf16}, {"F64", dtype::f64},
            {"I64", dtype::i64}, {"I32", dtype::i32}, {"I16", dtype::i16},  {"I8", dtype::i8},
            {"U8", dtype::u8},   {"BOOL", dtype::boolean}};
        for (const auto& [name, t] : names)
            if (s == name) return out = t, true;
        return false;
    }

    void parse() {
        const size_t file_size = file_->size();
        // A safetensors header is JSON: byte 8 is '{'. Anything else that is recognised is named,
        // rather than reported as a truncated or malformed safetensors file.
        if (file_size < 9 || file_->data()[8] != '{') {
            const std::string other = recognise_other_format(file_->data(), file_size);
            if (!other.empty()) ZEROCLIP_THROW(errc::format, path() + ": " + other);
        }
        if (file_size < 8) fail("file is " + std::to_string(file_size) + " bytes, shorter than the 8-byte header length");
        uint64_t header_len = 0;
        for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | file_->data()[i];
        if (header_len > file_size - 8)
            fail("header length " + std::to_string(header_len) + " is larger than the file (" +
                 std::to_string(file_size) + " bytes); the file may be truncated");
        if (header_len > (100u << 20)) fail("header length " + std::to_string(header_len) + " exceeds 100 MiB");
        const char* header_begin = reinterpret_cast<const char*>(file_->data() + 8);
        nlohmann::json header;
        try {
            header = nlohmann::json::parse(header_begin, header_begin + header_len);
        } catch (const nlohmann::json::exception& e) {
            fail(std::string("header is not valid JSON (") + e.what() + ")");
        }
        if (!header.is_object()) fail("header is not a JSON object");

        const unsigned char* data = file_->data() + 8 + header_len;
        const uint64_t data_size = file_size - 8 - header_len;
        std::vector<std::pair<uint64_t, uint64_t>> ranges;
        std::vector<std::string> range_names;

        for (const auto& item : header.items()) {
            // Plain names, not a structured binding: C++17 lambdas cannot capture those (clang).
            const std::string& name = item.key();
            const nlohmann::json& entry = item.value();
            if (name == "__metadata__") {
                if (!entry.is_object()) fail("__metadata__ is not an object");
                for (const auto& [k, v] : entry.items()) {
                    if (!v.is_string()) fail("__metadata__ value '" + k + "' is not a string");
                    metadata_[k] = v.get<std::string>();
                }
                continue;
            }
            auto bad = [&](const std::string& what) { fail("tensor '" + name + "': " + what); };
            if (!entry.is_object()) bad("entry is not an object");
            if (!entry.contains("dtype") || !entry["dtype"].is_string()) bad("missing dtype");
            if (!entry.contains("shape") || !entry["shape"].is_array()) bad("missing shape");
            if (!entry.contains("data_offsets") || !entry["data_offsets"].is_array() ||
                entry["data_offsets"].size() != 2)
                bad("data_offsets must be [begin, end]");
            tensor_record r;
            r.name = name;
            if (!parse_dtype(entry["dtype"].get<std::string>(), r.type))
                bad("unknown dtype '" + entry["dtype"].get<std::string>() + "'");
            uint64_t count = 1;
            const std::string too_large = path() + ": not a valid safetensors file: tensor '" + name +
                                          "': shape is absurdly large";
            for (const auto& d : entry["shape"]) {
                if (!d.is_number_unsigned()) bad("shape has a negative or non-integer dimension");
                const uint64_t v = d.get<uint64_t>();
                if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) bad("shape has a dimension above 2^63 - 1");
                count = detail::checked_mul(count, v, too_large);
                r.shape.push_back(static_cast<int64_t>(v));
            }
            const uint64_t count_bytes = detail::checked_mul(count, dtype_size(r.type), too_large);
            const auto& offsets = entry["data_offsets"];
            if (!offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned())
                bad("data_offsets are not non-negative integers");
            uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
            if (begin > end) bad("data_offsets begin " + std::to_string(begin) + " > end " + std::to_string(end));
            if (end > data_size)
                bad("data_offsets end " + std::to_string(end) + " is past the end of the data (" +
                    std::to_string(data_size) + " bytes); the file may be truncated");
            if (count_bytes != end - begin)
                bad("dtype " + std::string(dtype_name(r.type)) + " x shape " + shape_to_string(r.shape) +
                    " is " + std::to_string(count_bytes) + " bytes but data_offsets span " +
                    std::to_string(end - begin));
            r.bytes = data + begin;
            r.nbytes = static_cast<size_t>(end - begin);
            ranges.emplace_back(begin, end);
            range_names.push_back(name);
            tensors_[name] = std::move(r);
        }
        std::vector<size_t> order(ranges.size());
        std::iota(order.begin(), order.end(), size_t{0});
        std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ranges[a] < ranges[b]; });
        for (size_t i = 1; i < order.size(); ++i) {
            const auto& prev = ranges[order[i - 1]];
            const auto& cur = ranges[order[i]];
            if (cur.first < prev.second && cur.first != cur.second && prev.first != prev.second)
                fail("tensors '" + range_names[order[i - 1]] + "' and '" + range_names[order[i]] +
                     "' overlap");
        }
    }
};

/// A tensor to write: float data stored as `type` (F32, F16 or BF16), or raw bytes of another type.
struct tensor_to_write {
    tensor values;
    dtype type = dtype::f32;
};

/// Writes a safetensors file (tensors sorted by name, header padded to 8 bytes), atomically.
inline void save_safetensors(const std::string& path, const std::map<std::string, tensor_to_write>& tensors,
                             const std::map<std::string, std::string>& metadata = {}) {
    nlohmann::json header = nlohmann::json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    std::vector<unsigned char> data;
    for (const auto& [name, t] : tensors) {
        const size_t n = static_cast<size_t>(t.values.numel());
        const size_t begin = data.size();
        data.resize(begin + n * dtype_size(t.type));
        unsigned char* dst = data.data() + begin;
        for (size_t i = 0; i < n; ++i) {
            float v = t.values[static_cast<int64_t>(i)];
            if (t.type == dtype::f32) {
                std::memcpy(dst + 4 * i, &v, 4);
            } else if (t.type == dtype::f16 || t.type == dtype::bf16) {
                uint16_t h = t.type == dtype::f16 ? detail::f32_to_f16(v) : detail::f32_to_bf16(v);
                std::memcpy(dst + 2 * i, &h, 2);
            } else {
                ZEROCLIP_THROW(errc::invalid_argument, "save_safetensors: dtype " + std::string(dtype_name(t.type)) +
                                                           " is not a float type");
            }
        }
        header[name] = {{"dtype", dtype_name(t.type)}, {"shape", t.values.shape()},
                        {"data_offsets", {begin, data.size()}}};
    }
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    uint64_t len = text.size();
    unsigned char len_bytes[8];
    for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>(len >> (8 * i));
    atomic_output out(path);  // whole or not at all
    out.write(len_bytes, 8);
    out.write(text);
    out.write(data.data(), data.size());
    out.commit();
}

}  // namespace zeroclip
