//! zeroclip::detail — a PNG decoder that streams: chunks are read from the file as they come, the
//! zlib stream is inflated one row at a time and each row goes straight into the output in its
//! Pillow mode (16-bit samples become their high byte, or the int32 of mode "I", as Pillow's
//! unpackers do). Peak memory is the output image plus two rows, whatever the bit depth. Corrupt
//! files are refused as Pillow refuses them: a bad CRC in a chunk before the image data, a zlib
//! error, a failed Adler-32 check, missing rows, an unknown row filter.
#pragma once

#include <zlib.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "../../error.hpp"
#include "source.hpp"

namespace zeroclip::detail {

/// The IHDR fields that decide decoding.
struct png_header {
    uint32_t width = 0, height = 0;
    int depth = 0, colour = 0, interlace = 0;
    int samples() const { return colour == 0 || colour == 3 ? 1 : colour == 2 ? 3 : colour == 4 ? 2 : 4; }
    /// Output samples per pixel in the Pillow mode: "1"/"L" 1, "LA" 2, "RGB"/"P" 3, "RGBA" 4, "I" 0.
    int out_channels() const {
        switch (colour) {
            case 0: return depth == 16 ? 0 : 1;
            case 2: case 3: return 3;
            case 4: return depth == 16 ? 4 : 2;
            default: return 4;
        }
    }
};

[[noreturn]] inline void png_fail(const std::string& name, const std::string& why) {
    ZEROCLIP_THROW(errc::image_decode, name + ": cannot decode PNG image: " + why);
}

/// Why a chunk declaring more bytes than the file holds is refused (before anything reads it).
inline std::string png_chunk_past_end(uint64_t at, uint64_t length) {
    return "chunk at byte " + std::to_string(at) + " declares " + std::to_string(length) +
           " bytes, more than the file holds (truncated or corrupt)";
}

inline uint32_t png_be32(const uint8_t* p) {
    return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

/// Reads and checks IHDR (the first chunk), as Pillow and libpng validate it.
inline png_header png_read_header(image_source& src) {
    const std::string& name = src.name();
    uint8_t b[33];
    src.seek(0);
    if (src.read(b, sizeof b) != sizeof b) png_fail(name, "file ends inside the header (truncated)");
    if (png_be32(b + 8) != 13 || std::memcmp(b + 12, "IHDR", 4) != 0)
        png_fail(name, "the first chunk is not a 13-byte IHDR (file corrupt)");
    if (static_cast<uint32_t>(crc32(0L, b + 12, 17)) != png_be32(b + 29))
        png_fail(name, "bad CRC in chunk 'IHDR' (file corrupt)");
    png_header h;
    h.width = png_be32(b + 16);
    h.height = png_be32(b + 20);
    h.depth = b[24];
    h.colour = b[25];
    h.interlace = b[28];
    if (h.width == 0 || h.height == 0 || h.width > 0x7FFFFFFFu || h.height > 0x7FFFFFFFu)
        png_fail(name, "IHDR declares an invalid size " + std::to_string(h.width) + "x" + std::to_string(h.height));
    const int d = h.depth;
    bool valid = false;
    switch (h.colour) {
        case 0: valid = d == 1 || d == 2 || d == 4 || d == 8 || d == 16; break;
        case 3: valid = d == 1 || d == 2 || d == 4 || d == 8; break;
        case 2: case 4: case 6: valid = d == 8 || d == 16; break;
        default: break;
    }
    if (!valid)
        png_fail(name, "unsupported bit depth " + std::to_string(d) + " for colour type " + std::to_string(h.colour));
    if (b[26] != 0 || b[27] != 0) png_fail(name, "unknown compression or filter method in IHDR");
    if (h.interlace > 1) png_fail(name, "unknown interlace method " + std::to_string(h.interlace));
    return h;
}

/// Streams the chunk data of consecutive IDAT chunks (Pillow stops at the first other chunk).
class png_idat_reader {
public:
    png_idat_reader(image_source& src, uint64_t first_idat, uint32_t length)
        : src_(src), next_(first_idat + 8), left_(length) {}

    /// Up to `n` bytes of image data; 0 when the IDAT run (or the file) has ended.
    size_t read(uint8_t* out, size_t n) {
        while (left_ == 0) {
            if (done_) return 0;
            uint8_t h[8];  // skip the CRC (Pillow does not check IDAT's), read the next header
            if (src_.read_at(h, 8, next_ + 4) != 8 || std::memcmp(h + 4, "IDAT", 4) != 0) {
                done_ = true;
                return 0;
            }
            left_ = png_be32(h);
            if (next_ + 16 + left_ > src_.size())  // from this CRC: 4 + header 8 + data + CRC 4
                png_fail(src_.name(), png_chunk_past_end(next_ + 4, left_));
            next_ += 12;
        }
        const size_t got = src_.read_at(out, static_cast<size_t>(std::min<uint64_t>(n, left_)), next_);
        if (got == 0) done_ = true;
        left_ -= got;
        next_ += got;
        return got;
    }

private:
    image_source& src_;
    uint64_t next_;
    uint64_t left_;
    bool done_ = false;
};

/// Undoes a row filter in place (`prior` is the previous row of the same pass, zeros first).
inline bool png_unfilter(int type, uint8_t* row, const uint8_t* prior, size_t n, size_t bpp) {
    switch (type) {
        case 0: return true;
        case 1:
            for (size_t i = bpp; i < n; ++i) row[i] = static_cast<uint8_t>(row[i] + row[i - bpp]);
            return true;
        case 2:
            for (size_t i = 0; i < n; ++i) row[i] = static_cast<uint8_t>(row[i] + prior[i]);
            return true;
        case 3:
            for (size_t i = 0; i < n; ++i) {
                const unsigned left = i >= bpp ? row[i - bpp] : 0u;
                row[i] = static_cast<uint8_t>(row[i] + ((left + prior[i]) >> 1));
            }
            return true;
        case 4:
            for (size_t i = 0; i < n; ++i) {
                const int a = i >= bpp ? row[i - bpp] : 0, b = prior[i], c = i >= bpp ? prior[i - bpp] : 0;
                const int p = a + b - c, pa = p > a ? p - a : a - p, pb = p > b ? p - b : b - p, pc = p > c ? p - c : c - p;
                row[i] = static_cast<uint8_t>(row[i] + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c));
            }
            return true;
        default: return false;
    }
}

/// Decodes the PNG in `src` into its Pillow mode. `max_pixels` is checked from IHDR first.
inline raster decode_png(image_source& src, size_t max_pixels) {
    const std::string& name = src.name();
    const png_header h = png_read_header(src);
    if (static_cast<uint64_t>(h.width) * h.height > max_pixels)
        ZEROCLIP_THROW(errc::image_decode, name + ": image declares " + std::to_string(h.width) + "x" +
                                               std::to_string(h.height) + " = " +
                                               std::to_string(uint64_t{h.width} * h.height) +
                                               " pixels, over the limit of " + std::to_string(max_pixels) +
                                               " (decompression bomb? raise max_pixels to allow it)");

    // Chunks before the image data: CRC-checked as Pillow does; PLTE kept.
    std::array<uint8_t, 768> palette{};
    for (int i = 0; i < 256; ++i)  // Pillow's palettes start as a grey ramp: indices past PLTE read it
        palette[3 * i] = palette[3 * i + 1] = palette[3 * i + 2] = static_cast<uint8_t>(i);
    bool have_palette = false;
    uint64_t pos = 33;
    uint32_t idat_length = 0;
    std::vector<uint8_t> buf(1 << 16);
    for (;;) {
        uint8_t ch[8];
        if (src.read_at(ch, 8, pos) != 8) png_fail(name, "file ends before the image data (truncated)");
        const uint32_t length = png_be32(ch);
        const char type[5] = {static_cast<char>(ch[4]), static_cast<char>(ch[5]), static_cast<char>(ch[6]),
                              static_cast<char>(ch[7]), 0};
        for (int k = 4; k < 8; ++k)
            if (!((ch[k] >= 'A' && ch[k] <= 'Z') || (ch[k] >= 'a' && ch[k] <= 'z')))
                png_fail(name, "broken chunk header at byte " + std::to_string(pos) + " (file corrupt)");
        if (length > 0x7FFFFFFFu) png_fail(name, std::string("chunk '") + type + "' declares an invalid length");
        if (pos + 12 + length > src.size()) png_fail(name, png_chunk_past_end(pos, length));
        if (std::memcmp(type, "IDAT", 4) == 0) {
            idat_length = length;
            break;
        }
        if (std::memcmp(type, "IEND", 4) == 0) png_fail(name, "no image data (IEND before any IDAT)");
        // CRC over type + data, streamed: an ancillary chunk may be large.
        uLong crc = crc32(0L, ch + 4, 4);
        const bool is_palette = std::memcmp(type, "PLTE", 4) == 0;
        if (is_palette && (length % 3 != 0 || length > 768))
            png_fail(name, "PLTE chunk of " + std::to_string(length) + " bytes is not 1..256 RGB entries");
        uint64_t at = pos + 8, left = length;
        while (left > 0) {
            const size_t want = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
            if (src.read_at(buf.data(), want, at) != want)
                png_fail(name, std::string("file ends inside chunk '") + type + "' (truncated)");
            crc = crc32(crc, buf.data(), static_cast<uInt>(want));
            if (is_palette) std::memcpy(palette.data() + (at - pos - 8), buf.data(), want);
            at += want;
            left -= want;
        }
        uint8_t stored[4];
        if (src.read_at(stored, 4, at) != 4) png_fail(name, std::string("file ends inside chunk '") + type + "' (truncated)");
        if (static_cast<uint32_t>(crc) != png_be32(stored))
            png_fail(name, std::string("bad CRC in chunk '") + type + "' (file corrupt)");
        if (is_palette) have_palette = true;
        pos = at + 4;
    }
    if (h.colour == 3 && !have_palette) png_fail(name, "palette image without a PLTE chunk");
    buf.clear();
    buf.shrink_to_fit();

    raster out;
    out.width = static_cast<int>(h.width);
    out.height = static_cast<int>(h.height);
    const int oc = h.out_channels();
    const size_t npx = size_t{h.width} * h.height;
    if (oc == 0) out.values.resize(npx);
    else out.pixels.resize(npx * static_cast<size_t>(oc));

    const size_t bits_per_pixel = static_cast<size_t>(h.samples()) * static_cast<size_t>(h.depth);
    const size_t bpp = bits_per_pixel < 8 ? 1 : bits_per_pixel / 8;

    // Writes pixel i of an unfiltered row to output pixel `at`.
    const int depth = h.depth;
    const unsigned scale = depth == 1 ? 255u : depth == 2 ? 85u : depth == 4 ? 17u : 1u;
    auto sample = [depth](const uint8_t* row, size_t i) -> unsigned {  // sub-byte samples
        const size_t bit = i * static_cast<size_t>(depth);
        return (row[bit >> 3] >> (8 - depth - static_cast<int>(bit & 7))) & ((1u << depth) - 1u);
    };
    auto put = [&](const uint8_t* row, size_t i, size_t at) {
        uint8_t* o = out.pixels.data() + at * static_cast<size_t>(oc);
        switch (h.colour) {
            case 0:
                if (depth == 16) out.values[at] = (row[2 * i] << 8) | row[2 * i + 1];
                else o[0] = static_cast<uint8_t>(depth == 8 ? row[i] : sample(row, i) * scale);
                break;
            case 3: {
                const unsigned idx = depth == 8 ? row[i] : sample(row, i);
                std::memcpy(o, palette.data() + 3 * idx, 3);
                break;
            }
            case 2: {
                const size_t s = depth == 16 ? 2 : 1;  // 16-bit: the high byte, as Pillow's "RGB;16B"
                for (size_t c = 0; c < 3; ++c) o[c] = row[(3 * i + c) * s];
                break;
            }
            case 4:
                if (depth == 16) {  // Pillow 9.4 opens 16-bit grey+alpha as RGBA
                    o[0] = o[1] = o[2] = row[4 * i];
                    o[3] = row[4 * i + 2];
                } else {
                    o[0] = row[2 * i];
                    o[1] = row[2 * i + 1];
                }
                break;
            default: {
                const size_t s = depth == 16 ? 2 : 1;
                for (size_t c = 0; c < 4; ++c) o[c] = row[(4 * i + c) * s];
            }
        }
    };

    z_stream zs{};
    if (inflateInit(&zs) != Z_OK) png_fail(name, "zlib cannot start");
    struct zguard {
        z_stream* z;
        ~zguard() { inflateEnd(z); }
    } guard{&zs};
    png_idat_reader idat(src, pos, idat_length);
    std::vector<uint8_t> in(1 << 16);
    bool stream_end = false;
    // Fills `n` bytes of decompressed data; false when the data ends first.
    auto inflate_into = [&](uint8_t* dst, size_t n) -> bool {
        zs.next_out = dst;
        zs.avail_out = static_cast<uInt>(n);
        while (zs.avail_out > 0) {
            if (stream_end) return false;
            if (zs.avail_in == 0) {
                const size_t got = idat.read(in.data(), in.size());
                if (got == 0) return false;
                zs.next_in = in.data();
                zs.avail_in = static_cast<uInt>(got);
            }
            const int r = inflate(&zs, Z_NO_FLUSH);
            if (r == Z_STREAM_END) stream_end = true;
            else if (r == Z_DATA_ERROR || r == Z_NEED_DICT)
                png_fail(name, std::string("compressed image data is corrupt (zlib: ") +
                                   (zs.msg ? zs.msg : "data error") + ")");
            else if (r == Z_MEM_ERROR) png_fail(name, "zlib is out of memory");
            else if (r != Z_OK && r != Z_BUF_ERROR) png_fail(name, "zlib error " + std::to_string(r));
        }
        return true;
    };

    static constexpr int adam7[7][4] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4},
                                        {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}};
    const int passes = h.interlace ? 7 : 1;
    const size_t max_row = (size_t{h.width} * bits_per_pixel + 7) / 8;
    std::vector<uint8_t> row(max_row + 1), prior(max_row);
    uint64_t rows_done = 0, rows_total = 0;
    for (int p = 0; p < passes; ++p) {
        const int x0 = h.interlace ? adam7[p][0] : 0, y0 = h.interlace ? adam7[p][1] : 0;
        const int dy = h.interlace ? adam7[p][3] : 1;
        if (h.width > static_cast<uint32_t>(x0) && h.height > static_cast<uint32_t>(y0))
            rows_total += (h.height - static_cast<uint32_t>(y0) + static_cast<uint32_t>(dy) - 1) / static_cast<uint32_t>(dy);
    }
    for (int p = 0; p < passes; ++p) {
        const uint32_t x0 = h.interlace ? adam7[p][0] : 0, y0 = h.interlace ? adam7[p][1] : 0;
        const uint32_t dx = h.interlace ? adam7[p][2] : 1, dy = h.interlace ? adam7[p][3] : 1;
        if (h.width <= x0 || h.height <= y0) continue;  // an empty pass has no bytes at all
        const size_t pw = (h.width - x0 + dx - 1) / dx;
        const size_t row_bytes = (pw * bits_per_pixel + 7) / 8;
        std::fill(prior.begin(), prior.end(), 0);
        for (uint32_t y = y0; y < h.height; y += dy) {
            if (!inflate_into(row.data(), row_bytes + 1))
                png_fail(name, "image data ends after " + std::to_string(rows_done) + " of " +
                                   std::to_string(rows_total) + " rows (truncated or corrupt file)");
            if (!png_unfilter(row[0], row.data() + 1, prior.data(), row_bytes, bpp))
                png_fail(name, "unknown row filter type " + std::to_string(row[0]) + " in row " + std::to_string(y) +
                                   " (file corrupt)");
            const size_t base = size_t{y} * h.width;
            for (size_t i = 0; i < pw; ++i) put(row.data() + 1, i, base + x0 + i * dx);
            std::memcpy(prior.data(), row.data() + 1, row_bytes);
            ++rows_done;
        }
    }
    // Pillow's last inflate call runs on to the zlib trailer: a failed Adler-32 is refused there.
    // Check it when the trailer is present; data past the image rows, or a trailer cut off by the
    // file's end, is accepted as Pillow accepts it.
    uint8_t spare = 0;
    for (int guard_steps = 0; !stream_end && guard_steps < 4; ++guard_steps) {
        if (zs.avail_in == 0) {
            const size_t got = idat.read(in.data(), in.size());
            if (got == 0) break;
            zs.next_in = in.data();
            zs.avail_in = static_cast<uInt>(got);
        }
        zs.next_out = &spare;
        zs.avail_out = 0;
        const int r = inflate(&zs, Z_NO_FLUSH);
        if (r == Z_STREAM_END) break;
        if (r == Z_DATA_ERROR)
            png_fail(name, std::string("compressed image data is corrupt (zlib: ") + (zs.msg ? zs.msg : "data error") + ")");
        if (r != Z_OK || zs.avail_in > 0) break;  // more pixels than the image needs: ignored
    }
    return out;
}

}  // namespace zeroclip::detail
