//! Decoding behind image.hpp's decode_image_*: the format and declared size from the first
//! bytes, the pixel limit checked before any pixel memory exists, then the decoder (libjpeg-turbo,
//! the streaming PNG and PNM decoders, or stb_image through callbacks).
#pragma once

#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "../../error.hpp"
#include "formats.hpp"
#include "jpeg_turbo.hpp"
#include "png_decoder.hpp"
#include "pnm_decoder.hpp"
#include "source.hpp"
#include "stb_image_impl.hpp"
#include "types.hpp"

namespace zeroclip::detail {

inline std::string stb_reason() {
    const char* r = zc_stbi_failure_reason();
    return r ? std::string(r) : std::string("unknown error");
}

/// The first bytes of a file read to identify its format and declared size before anything else.
constexpr size_t image_header_bytes = size_t{1} << 16;

/// stb_image's largest width or height (ZC_STBI_MAX_DIMENSIONS).
constexpr uint64_t stb_max_side = uint64_t{1} << 18;

[[noreturn]] inline void refuse_image_size(const std::string& name, uint64_t w, uint64_t h,
                                           size_t max_pixels) {
    ZEROCLIP_THROW(errc::image_decode, name + ": image declares " + std::to_string(w) + "x" + std::to_string(h) +
                                           " = " + std::to_string(w * h) + " pixels, over the limit of " +
                                           std::to_string(max_pixels) +
                                           " (decompression bomb? raise max_pixels to allow it)");
}

/// The Pillow mode a probed header names.
inline pixel_mode mode_of(const std::string& m) {
    return m == "RGBA" ? pixel_mode::rgba : m == "L" ? pixel_mode::l : m == "LA" ? pixel_mode::la
         : m == "P" ? pixel_mode::p : m == "1" ? pixel_mode::bilevel : m == "I" ? pixel_mode::i
         : pixel_mode::rgb;
}

/// JPEG, GIF, BMP and TGA through stb_image, streamed from `src` through its callbacks (stb's
/// own 128-byte buffer over ours): only stb's working buffers and the output exist at once.
inline decoded_image decode_with_stb(image_source& src, const format_probe& probe, size_t max_pixels) {
    const std::string& name = src.name();
    const zc_stbi_io_callbacks io{&image_source::stb_read, &image_source::stb_skip, &image_source::stb_eof};
    int w = 0, h = 0, comp = 0;
    src.seek(0);
    if (!zc_stbi_info_from_callbacks(&io, &src, &w, &h, &comp))
        ZEROCLIP_THROW(errc::image_decode, name + ": cannot decode " +
                                               (probe.format == "TGA" ? std::string() : probe.format + " ") +
                                               "image header (stb_image: " + stb_reason() + ")");
    if (w < 1 || h < 1) ZEROCLIP_THROW(errc::image_decode, name + ": " + probe.format + " header declares no pixels");
    const uint64_t declared = static_cast<uint64_t>(w) * static_cast<uint64_t>(h);
    if (declared > max_pixels) refuse_image_size(name, static_cast<uint64_t>(w), static_cast<uint64_t>(h), max_pixels);

    decoded_image out;
    out.width = w;
    out.height = h;
    out.format = probe.format;
    out.mode = mode_of(probe.mode);
    if (probe.format == "JPEG") out.mode = comp == 1 ? pixel_mode::l : pixel_mode::rgb;
    // GIF: clear the transparency flags so stb draws transparent pixels in their palette colour.
    src.clear_bit0_at(probe.gif_transparency_flag_at);

    const int channels = pixel_mode_channels(out.mode);
    const size_t n = static_cast<size_t>(w) * static_cast<size_t>(h);
    int rw = 0, rh = 0, file_channels = 0;
    src.seek(0);
    {
        std::unique_ptr<zc_stbi_uc, void (*)(void*)> px(
            zc_stbi_load_from_callbacks(&io, &src, &rw, &rh, &file_channels, channels), &zc_stbi_image_free);
        if (!px) ZEROCLIP_THROW(errc::image_decode, name + ": cannot decode " + probe.format + " image (stb_image: " + stb_reason() + ")");
        if (rw != w || rh != h) ZEROCLIP_THROW(errc::image_decode, name + ": decoded size differs from the header's");
        out.pixels.assign(px.get(), px.get() + n * static_cast<size_t>(channels));
    }  // stb's buffer freed here: one copy of the pixels from now on

    if (probe.bmp_16bit_green_bits && channels == 3) {
        // stb widens 5/6-bit fields by bit replication, Pillow by v * 255 / max (BGR;15, BGR;16).
        std::array<uint8_t, 256> five{}, six{};
        for (unsigned v = 0; v < 256; ++v) {
            five[v] = static_cast<uint8_t>((v >> 3) * 255 / 31);
            six[v] = static_cast<uint8_t>((v >> 2) * 255 / 63);
        }
        const auto& green = probe.bmp_16bit_green_bits == 6 ? six : five;
        for (size_t k = 0; k < n; ++k) {
            out.pixels[3 * k] = five[out.pixels[3 * k]];
            out.pixels[3 * k + 1] = green[out.pixels[3 * k + 1]];
            out.pixels[3 * k + 2] = five[out.pixels[3 * k + 2]];
        }
    }
    if (probe.flip_horizontal) {
        const size_t c = static_cast<size_t>(channels);
        for (int y = 0; y < h; ++y) {
            uint8_t* row = out.pixels.data() + static_cast<size_t>(y) * static_cast<size_t>(w) * c;
            for (int a = 0, b = w - 1; a < b; ++a, --b)
                for (size_t j = 0; j < c; ++j) std::swap(row[static_cast<size_t>(a) * c + j], row[static_cast<size_t>(b) * c + j]);
        }
    }
    if (probe.format == "GIF" && probe.gif_has_frame) {
        // Canvas outside the first frame: Pillow keeps its fill index (transparent or 0), stb
        // uses the background colour or black.
        const int fx0 = probe.gif_frame[0], fy0 = probe.gif_frame[1];
        const int fx1 = fx0 + probe.gif_frame[2], fy1 = fy0 + probe.gif_frame[3];
        const size_t c = static_cast<size_t>(channels);
        for (int y = 0; y < h; ++y)
            for (int x = 0; x < w; ++x)
                if (x < fx0 || x >= fx1 || y < fy0 || y >= fy1)
                    std::memcpy(out.pixels.data() + (static_cast<size_t>(y) * static_cast<size_t>(w) + static_cast<size_t>(x)) * c,
                                probe.gif_fill, c);
    }
    return out;
}

/// Identifies the format from the first bytes and the declared size from the header, refusing a
/// non-image or an oversized image before any pixel memory exists, then decodes.
/// `draft_size` > 0: decode a JPEG as Pillow's draft("RGB", (draft_size, draft_size)).
inline decoded_image decode_source(image_source& src, size_t max_pixels, int draft_size = 0) {
    const std::string& name = src.name();
    if (src.size() == 0) ZEROCLIP_THROW(errc::image_decode, name + ": empty file (0 bytes), not an image");
    std::vector<uint8_t> header(static_cast<size_t>(std::min<uint64_t>(src.size(), image_header_bytes)));
    header.resize(src.read_at(header.data(), header.size(), 0));
    format_probe probe = probe_image_format(header.data(), header.size());
    if (probe.format == "TGA") {
        // No signature: TGA is the last guess, and stb's TGA header test must pass on the header.
        int w = 0, h = 0, comp = 0;
        if (!zc_stbi_info_from_memory(header.data(), static_cast<int>(header.size()), &w, &h, &comp)) {
            std::string hex;
            static const char digits[] = "0123456789abcdef";
            for (size_t i = 0; i < std::min<size_t>(header.size(), 8); ++i)
                hex += std::string(i ? " " : "") + digits[header[i] >> 4] + digits[header[i] & 15];
            ZEROCLIP_THROW(errc::image_decode, name + ": not an image in a supported format (PNG, JPEG, GIF, BMP, "
                                                      "PNM, TGA): unknown signature (first bytes " + hex + ")");
        }
    }
    if (!probe.pnm_error.empty()) ZEROCLIP_THROW(errc::image_decode, name + ": cannot decode PNM image: " + probe.pnm_error);
    const uint64_t declared = static_cast<uint64_t>(probe.width) * probe.height;
    if (declared > max_pixels) refuse_image_size(name, probe.width, probe.height, max_pixels);

    if (probe.format == "PNG" || probe.format == "PNM") {
        raster r = probe.format == "PNG" ? decode_png(src, max_pixels) : decode_pnm(src, probe);
        decoded_image out;
        out.width = r.width;
        out.height = r.height;
        out.format = probe.format;
        out.mode = mode_of(probe.mode);
        out.pixels = std::move(r.pixels);
        out.values = std::move(r.values);
        return out;
    }
#if defined(ZEROCLIP_WITH_LIBJPEG)
    if (probe.format == "JPEG") {
        jpeg_turbo_result j = decode_jpeg_turbo(src, max_pixels, draft_size);
        if (j.handled) {
            decoded_image out;
            out.width = j.image.width;
            out.height = j.image.height;
            out.format = "JPEG";
            out.mode = j.grey ? pixel_mode::l : pixel_mode::rgb;
            out.pixels = std::move(j.image.pixels);
            return out;
        }
    }
#else
    (void)draft_size;
#endif
    if (probe.width > stb_max_side || probe.height > stb_max_side)
        ZEROCLIP_THROW(errc::image_decode, name + ": " + probe.format + " image " + std::to_string(probe.width) + "x" +
                                               std::to_string(probe.height) + " is too large for the decoder (sides up to " +
                                               std::to_string(stb_max_side) + " pixels)");
    return decode_with_stb(src, probe, max_pixels);
}

}  // namespace zeroclip::detail
