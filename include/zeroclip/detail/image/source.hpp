//! zeroclip::detail — the bytes of an image file, read forward through a small buffer (or straight
//! from memory), so that no decoder ever holds a whole file: a file's size says nothing about the
//! memory its pixels need, and a huge non-image must cost no more than its first bytes.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "../../error.hpp"
#include "../../io/file.hpp"

namespace zeroclip::detail {

/// Sequential reads with seeking over a memory block or an open regular file. Reads past the end
/// return fewer bytes (the decoders turn that into "truncated"). Optionally clears bit 0 of the
/// bytes at given offsets as they pass (the GIF transparency fix-up), never touching the input.
class image_source {
public:
    /// The bytes [data, data + size), named `name` in errors.
    image_source(const uint8_t* data, size_t size, std::string name)
        : name_(std::move(name)), memory_(data), size_(size) {}
    /// An opened regular file, named `name` (its path) in errors.
    image_source(opened_file file, std::string name)
        : name_(std::move(name)), file_(std::move(file)), size_(file_.size) {}

    const std::string& name() const noexcept { return name_; }
    uint64_t size() const noexcept { return size_; }
    uint64_t tell() const noexcept { return pos_; }
    bool at_end() const noexcept { return pos_ >= size_; }
    void seek(uint64_t pos) noexcept { pos_ = std::min(pos, size_); }

    /// Bit 0 of each byte at these offsets reads as 0.
    void clear_bit0_at(std::vector<size_t> offsets) { patches_ = std::move(offsets); }

    /// Up to `n` bytes from the current position; fewer only at the end of the data.
    size_t read(void* out, size_t n) {
        const size_t got = read_at(out, n, pos_);
        pos_ += got;
        return got;
    }

    /// Up to `n` bytes at `offset` (the position is unchanged).
    size_t read_at(void* out, size_t n, uint64_t offset) {
        if (offset >= size_) return 0;
        n = static_cast<size_t>(std::min<uint64_t>(n, size_ - offset));
        auto* dst = static_cast<uint8_t*>(out);
        if (memory_) {
            std::memcpy(dst, memory_ + offset, n);
        } else {
            size_t done = 0;
            while (done < n) {
                const uint64_t at = offset + done;
                if (at < buffer_at_ || at >= buffer_at_ + buffer_.size()) {
                    if (n - done >= buffer_capacity) {  // large reads bypass the buffer
                        done += zeroclip::read_at(file_, dst + done, n - done, at, name_);
                        break;
                    }
                    fill(at);
                    if (buffer_.empty()) break;
                }
                const size_t from = static_cast<size_t>(at - buffer_at_);
                const size_t take = std::min(n - done, buffer_.size() - from);
                std::memcpy(dst + done, buffer_.data() + from, take);
                done += take;
            }
            n = done;
        }
        for (size_t p : patches_)
            if (p >= offset && p < offset + n) dst[p - offset] = static_cast<uint8_t>(dst[p - offset] & ~1u);
        return n;
    }

    /// stb_image's callback interface over this source (read, skip, eof).
    static int stb_read(void* user, char* data, int size) {
        return static_cast<int>(static_cast<image_source*>(user)->read(data, static_cast<size_t>(size)));
    }
    static void stb_skip(void* user, int n) {
        auto* s = static_cast<image_source*>(user);
        if (n > 0) s->seek(s->tell() + static_cast<uint64_t>(n));
    }
    static int stb_eof(void* user) { return static_cast<image_source*>(user)->at_end() ? 1 : 0; }

private:
    static constexpr size_t buffer_capacity = size_t{1} << 16;

    void fill(uint64_t at) {
        buffer_.resize(buffer_capacity);
        buffer_.resize(zeroclip::read_at(file_, buffer_.data(), buffer_capacity, at, name_));
        buffer_at_ = at;
    }

    std::string name_;
    const uint8_t* memory_ = nullptr;
    opened_file file_;
    uint64_t size_ = 0;
    uint64_t pos_ = 0;
    std::vector<uint8_t> buffer_;
    uint64_t buffer_at_ = 0;
    std::vector<size_t> patches_;
};

/// The decoders' output before it becomes a decoded_image: interleaved 8-bit samples
/// (`channels` per pixel), or one int32 value per pixel for Pillow's mode "I".
struct raster {
    int width = 0;
    int height = 0;
    std::vector<uint8_t> pixels;
    std::vector<int32_t> values;
};

}  // namespace zeroclip::detail
