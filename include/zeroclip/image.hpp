//! zeroclip image input: decoding (stb_image: JPEG, PNG, BMP, GIF, TGA, PNM) and CLIP's
//! preprocessing, matching OpenAI's `_transform` to the pixel: Resize(short side, BICUBIC) on the
//! image in its original Pillow mode → CenterCrop → convert("RGB") → ToTensor → Normalize.
//! `preprocess_crop` gives the exact 8-bit crop the model sees; `load_image_tensor` the CHW floats.
//!
//! Hostile files: a file is never read whole. Its first bytes decide the format (an unknown
//! signature is refused there, a FIFO or device before any read) and its header the declared
//! size (over `max_pixels`, 100 million by default, refused before any pixel memory exists).
//! Memory bound, per decoding thread, with R = width x height x 3 bytes (the 8-bit RGB size):
//! PNG and PNM at most 1.4 R (the image in its Pillow mode, at most 4 bytes a pixel, plus rows:
//! 16-bit samples never exist as a whole image); JPEG with libjpeg-turbo 1.1 R baseline, 3 R
//! progressive 4:4:4 (its coefficient buffer); GIF, BMP, TGA and JPEG through stb_image at most
//! 4 R (baseline JPEG 2 R). Preprocessing adds the rows the resize
//! window needs (rows x size x 4 bytes), never a second full image. Measured at the pixel limit
//! (10000 x 10000 16-bit RGBA PNG, R = 286 MiB): 395 MiB peak, against 1.5 GiB before. N
//! decoding threads (file_batch_options::threads, the CLI's --threads; default all cores) need up
//! to N times the bound.
#pragma once

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "detail/image/formats.hpp"
#include "detail/image/source.hpp"
#include "detail/image/jpeg_turbo.hpp"
#include "detail/image/pil_resample.hpp"
#include "detail/image/png_decoder.hpp"
#include "detail/image/pnm_decoder.hpp"
#include "detail/image/stb_image_impl.hpp"
#include "error.hpp"
#include "io/file.hpp"
#include "tensor.hpp"

namespace zeroclip {

/// The Pillow mode an image opens in; it decides how the official pipeline resizes it.
enum class pixel_mode {
    rgb,      ///< "RGB"
    rgba,     ///< "RGBA": resized on premultiplied alpha, alpha dropped (not composited) for RGB
    l,        ///< "L": 8-bit grey
    la,       ///< "LA": grey + alpha, resized premultiplied like RGBA
    p,        ///< "P": palette; resized with NEAREST (Pillow forces it); stored here as RGB colours
    bilevel,  ///< "1": black and white (0 or 255); resized with NEAREST
    i,        ///< "I": 32-bit integer grey (16-bit PNG/PNM); resized in int32, clipped to 0..255 for RGB
};

/// Pillow's name of a mode: "RGB", "RGBA", "L", "LA", "P", "1", "I".
inline const char* pixel_mode_name(pixel_mode mode) noexcept {
    switch (mode) {
        case pixel_mode::rgb: return "RGB";
        case pixel_mode::rgba: return "RGBA";
        case pixel_mode::l: return "L";
        case pixel_mode::la: return "LA";
        case pixel_mode::p: return "P";
        case pixel_mode::bilevel: return "1";
        case pixel_mode::i: return "I";
    }
    return "?";
}

/// Interleaved 8-bit samples per pixel that `decoded_image::pixels` holds for a mode (0 for "I").
inline int pixel_mode_channels(pixel_mode mode) noexcept {
    switch (mode) {
        case pixel_mode::rgb: return 3;
        case pixel_mode::rgba: return 4;
        case pixel_mode::l: return 1;
        case pixel_mode::la: return 2;
        case pixel_mode::p: return 3;
        case pixel_mode::bilevel: return 1;
        case pixel_mode::i: return 0;
    }
    return 0;
}

/// A decoded image in its original mode, rows top to bottom, pixels interleaved (HWC).
struct decoded_image {
    int width = 0;
    int height = 0;
    pixel_mode mode = pixel_mode::rgb;
    std::string format;  ///< "PNG", "JPEG", "GIF", "BMP", "PNM", "TGA" (empty if built by hand)
    /// Every mode but "I": pixel_mode_channels(mode) bytes per pixel. "P" holds the palette
    /// colours (RGB), "1" holds 0 or 255, "LA" holds grey then alpha.
    std::vector<std::uint8_t> pixels;
    /// Mode "I" only: one value per pixel (0..65535 as decoded; resizing can over/undershoot).
    std::vector<std::int32_t> values;
};

/// An 8-bit RGB image, HWC, rows top to bottom: `pixels.size() == width * height * 3`.
struct rgb_image {
    int width = 0;
    int height = 0;
    std::vector<std::uint8_t> pixels;
};

/// Images declaring more pixels than this are refused before anything is allocated.
constexpr std::size_t default_max_image_pixels = 100'000'000;

/// How JPEGs are decoded for preprocessing.
enum class decode_mode {
    exact,  ///< full size, then the resize: Pillow's pixels (bit-identical with libjpeg-turbo)
    /// JPEG decoded at the smallest DCT scale (1/2, 1/4, 1/8) that keeps both sides at least
    /// `size`, as Pillow's draft("RGB", (size, size)), then the same resize: several times faster
    /// on photos, crops within a few levels. Needs libjpeg-turbo (ZEROCLIP_WITH_LIBJPEG); with
    /// stb_image, and for other formats, the same as exact.
    draft,
};

/// How an image becomes model input. The defaults are OpenAI CLIP's.
struct preprocess_options {
    int size = 224;  ///< the model's input resolution: resize the short side to it, crop a square
    std::array<float, 3> mean{0.48145466f, 0.4578275f, 0.40821073f};
    std::array<float, 3> stddev{0.26862954f, 0.26130258f, 0.27577711f};
    /// Hugging Face CLIPImageProcessor order: convert("RGB") first, then resize (so palettes get
    /// BICUBIC and RGBA is resized unpremultiplied). Default: OpenAI's order.
    bool hf_order = false;
    /// Centre-crop offset floor((excess) / 2) as Hugging Face; default round-half-even as torchvision.
    bool floor_crop = false;
    std::size_t max_pixels = default_max_image_pixels;  ///< decompression-bomb limit
    decode_mode decode = decode_mode::exact;            ///< JPEG decoding: exact or draft
};

/// Where the crop comes from: the resized size and the crop's top-left corner in it.
struct crop_geometry {
    int resized_width = 0;
    int resized_height = 0;
    int left = 0;
    int top = 0;
    int size = 0;  ///< the crop is size x size
};

namespace detail {

/// A read-only view of a decoded or RGB image (no copies between pipeline stages).
struct image_ref {
    int width = 0;
    int height = 0;
    pixel_mode mode = pixel_mode::rgb;
    const std::uint8_t* pixels = nullptr;
    const std::int32_t* values = nullptr;
};

inline image_ref ref_of(const decoded_image& im, const char* what) {
    if (im.width < 1 || im.height < 1)
        ZEROCLIP_THROW(errc::invalid_argument, std::string(what) + ": image has no pixels (" +
                                                   std::to_string(im.width) + "x" +
                                                   std::to_string(im.height) + ")");
    const std::size_t n = static_cast<std::size_t>(im.width) * static_cast<std::size_t>(im.height);
    const bool ok = im.mode == pixel_mode::i
                        ? im.values.size() == n
                        : im.pixels.size() == n * static_cast<std::size_t>(pixel_mode_channels(im.mode));
    if (!ok)
        ZEROCLIP_THROW(errc::invalid_argument, std::string(what) + ": pixel buffer size does not match " +
                                                   std::to_string(im.width) + "x" +
                                                   std::to_string(im.height) + " mode " +
                                                   pixel_mode_name(im.mode));
    return {im.width, im.height, im.mode, im.pixels.data(), im.values.data()};
}

/// The bicubic window of an 8-bit image. Source rows are read from `src` (`w * C` bytes apart)
/// or, when `src` is null, made by `make_row(y, out)` a block of rows at a time: a transformed
/// source (premultiplied alpha, converted to RGB) never exists as a whole second image.
template <int C, class MakeRow>
inline void bicubic_window_rows(const std::uint8_t* src, MakeRow&& make_row, int w, int h, int out_w, int out_h,
                                int x0, int y0, int cw, int ch, std::uint8_t* dst) {
    const bool need_h = out_w != w, need_v = out_h != h;
    resample_axis ax_v;
    int r0 = y0, r1 = y0 + ch;  // source rows the window needs
    if (need_v) {
        ax_v = pil_bicubic_axis(h, out_h, y0, ch);
        r0 = ax_v.min_of(y0);
        r1 = ax_v.end_of(y0 + ch - 1);
    }
    const std::size_t in_row = static_cast<std::size_t>(w) * C, mid_row = static_cast<std::size_t>(cw) * C;
    // Rows [r0, r1) after the horizontal pass (or the window's columns when there is none).
    std::vector<std::uint8_t> mid(static_cast<std::size_t>(r1 - r0) * mid_row);
    resample_axis ax_h;
    if (need_h) ax_h = pil_bicubic_axis(w, out_w, x0, cw);
    const int block = src ? r1 - r0 : static_cast<int>(std::max<std::size_t>(1, (std::size_t{1} << 18) / in_row));
    std::vector<std::uint8_t> made(src ? 0 : static_cast<std::size_t>(std::min(block, r1 - r0)) * in_row);
    for (int y = r0; y < r1; y += block) {
        const int n = std::min(block, r1 - y);
        const std::uint8_t* in = src ? src + static_cast<std::size_t>(y) * in_row : made.data();
        if (!src)
            for (int k = 0; k < n; ++k) make_row(y + k, made.data() + static_cast<std::size_t>(k) * in_row);
        std::uint8_t* out = mid.data() + static_cast<std::size_t>(y - r0) * mid_row;
        if (need_h) {
            pil_horizontal_u8<C>(in, static_cast<std::ptrdiff_t>(in_row), n, ax_h, x0, cw, out);
        } else {
            for (int k = 0; k < n; ++k)
                std::memcpy(out + static_cast<std::size_t>(k) * mid_row,
                            in + static_cast<std::size_t>(k) * in_row + static_cast<std::size_t>(x0) * C, mid_row);
        }
    }
    if (need_v) pil_vertical_u8<C>(mid.data(), static_cast<std::ptrdiff_t>(mid_row), r0, cw, ax_v, y0, ch, dst);
    else std::memcpy(dst, mid.data(), mid.size());
}

template <int C>
inline void bicubic_window_u8(const std::uint8_t* src, int w, int h, int out_w, int out_h, int x0,
                              int y0, int cw, int ch, std::uint8_t* dst) {
    bicubic_window_rows<C>(src, [](int, std::uint8_t*) {}, w, h, out_w, out_h, x0, y0, cw, ch, dst);
}

inline void bicubic_window_i32(const std::int32_t* src, int w, int h, int out_w, int out_h, int x0,
                               int y0, int cw, int ch, std::int32_t* dst) {
    const bool need_h = out_w != w, need_v = out_h != h;
    resample_axis ax_v;
    int r0 = y0, r1 = y0 + ch;
    if (need_v) {
        ax_v = pil_bicubic_axis(h, out_h, y0, ch);
        r0 = ax_v.min_of(y0);
        r1 = ax_v.end_of(y0 + ch - 1);
    }
    std::vector<std::int32_t> temp;
    const std::int32_t* mid = src + static_cast<std::ptrdiff_t>(r0) * w + x0;
    std::ptrdiff_t mid_stride = w;
    if (need_h) {
        const resample_axis ax_h = pil_bicubic_axis(w, out_w, x0, cw);
        temp.resize(static_cast<std::size_t>(r1 - r0) * static_cast<std::size_t>(cw));
        pil_horizontal_i32(src + static_cast<std::ptrdiff_t>(r0) * w, w, r1 - r0, ax_h, x0, cw, temp.data());
        mid = temp.data();
        mid_stride = cw;
    }
    if (need_v) {
        pil_vertical_i32(mid, mid_stride, r0, cw, ax_v, y0, ch, dst);
    } else {
        for (int y = 0; y < ch; ++y)
            std::memcpy(dst + static_cast<std::ptrdiff_t>(y) * cw, mid + y * mid_stride,
                        static_cast<std::size_t>(cw) * sizeof(std::int32_t));
    }
}

template <int C>
inline void bicubic_window_any(const std::uint8_t* src, int w, int h, int out_w, int out_h, int x0,
                               int y0, int cw, int ch, std::uint8_t* dst, bool premultiplied) {
    if (!premultiplied) {
        bicubic_window_u8<C>(src, w, h, out_w, out_h, x0, y0, cw, ch, dst);
        return;
    }
    // Image.resize converts RGBA/LA to RGBa/La, resizes, converts back: same 8-bit roundings,
    // premultiplied here one source row at a time.
    const std::size_t row_len = static_cast<std::size_t>(w) * C;
    bicubic_window_rows<C>(
        nullptr,
        [&](int y, std::uint8_t* out) {
            std::memcpy(out, src + static_cast<std::size_t>(y) * row_len, row_len);
            pil_premultiply<C>(out, static_cast<std::size_t>(w));
        },
        w, h, out_w, out_h, x0, y0, cw, ch, dst);
    pil_unpremultiply<C>(dst, static_cast<std::size_t>(cw) * static_cast<std::size_t>(ch));
}

/// Row y of Pillow's convert("RGB") of `im` into `out` (width * 3 bytes).
inline void rgb_row(const image_ref& im, int y, std::uint8_t* out) {
    const std::size_t w = static_cast<std::size_t>(im.width), base = static_cast<std::size_t>(y) * w;
    const std::size_t c = static_cast<std::size_t>(pixel_mode_channels(im.mode));
    if (im.mode == pixel_mode::i) {
        for (std::size_t k = 0; k < w; ++k) {
            const std::int32_t v = im.values[base + k];
            out[3 * k] = out[3 * k + 1] = out[3 * k + 2] = static_cast<std::uint8_t>(v <= 0 ? 0 : v >= 255 ? 255 : v);
        }
    } else if (c == 3) {
        std::memcpy(out, im.pixels + base * 3, w * 3);
    } else if (c == 4) {
        for (std::size_t k = 0; k < w; ++k) std::memcpy(out + 3 * k, im.pixels + (base + k) * 4, 3);
    } else {  // L, 1, LA: the grey sample replicated
        for (std::size_t k = 0; k < w; ++k) out[3 * k] = out[3 * k + 1] = out[3 * k + 2] = im.pixels[(base + k) * c];
    }
}

/// The window [x0, x0+cw) x [y0, y0+ch) of Pillow's `Image.resize((out_w, out_h))` (default
/// BICUBIC, with Pillow's mode rules), computing only what the window needs; each pixel equals
/// the full resize's.
inline decoded_image resize_window(const image_ref& im, int out_w, int out_h, int x0, int y0, int cw,
                                   int ch) {
    decoded_image out;
    out.width = cw;
    out.height = ch;
    out.mode = im.mode;
    const int c = pixel_mode_channels(im.mode);
    const std::size_t count = static_cast<std::size_t>(cw) * static_cast<std::size_t>(ch);
    if (im.mode == pixel_mode::i) out.values.resize(count);
    else out.pixels.resize(count * static_cast<std::size_t>(c));
    const int w = im.width, h = im.height;

    if (out_w == w && out_h == h) {  // Image.resize returns a copy: no premultiplication round trip
        for (int y = 0; y < ch; ++y) {
            const std::size_t from = static_cast<std::size_t>(y0 + y) * static_cast<std::size_t>(w) + static_cast<std::size_t>(x0);
            const std::size_t to = static_cast<std::size_t>(y) * static_cast<std::size_t>(cw);
            if (im.mode == pixel_mode::i)
                std::memcpy(out.values.data() + to, im.values + from, static_cast<std::size_t>(cw) * sizeof(std::int32_t));
            else
                std::memcpy(out.pixels.data() + to * static_cast<std::size_t>(c),
                            im.pixels + from * static_cast<std::size_t>(c),
                            static_cast<std::size_t>(cw) * static_cast<std::size_t>(c));
        }
        return out;
    }
    if (im.mode == pixel_mode::p || im.mode == pixel_mode::bilevel) {
        const std::vector<int> xs = pil_nearest_axis(w, out_w, x0, cw);
        const std::vector<int> ys = pil_nearest_axis(h, out_h, y0, ch);
        std::uint8_t* dst = out.pixels.data();
        for (int y = 0; y < ch; ++y) {
            const int sy = ys[static_cast<std::size_t>(y)];
            for (int x = 0; x < cw; ++x, dst += c) {
                const int sx = xs[static_cast<std::size_t>(x)];
                if (sx < 0 || sy < 0) {  // Pillow's fill: zeros
                    std::memset(dst, 0, static_cast<std::size_t>(c));
                    continue;
                }
                std::memcpy(dst, im.pixels + (static_cast<std::size_t>(sy) * static_cast<std::size_t>(w) + static_cast<std::size_t>(sx)) * static_cast<std::size_t>(c),
                            static_cast<std::size_t>(c));
            }
        }
        return out;
    }
    switch (im.mode) {
        case pixel_mode::i:
            bicubic_window_i32(im.values, w, h, out_w, out_h, x0, y0, cw, ch, out.values.data());
            break;
        case pixel_mode::l:
            bicubic_window_any<1>(im.pixels, w, h, out_w, out_h, x0, y0, cw, ch, out.pixels.data(), false);
            break;
        case pixel_mode::la:
            bicubic_window_any<2>(im.pixels, w, h, out_w, out_h, x0, y0, cw, ch, out.pixels.data(), true);
            break;
        case pixel_mode::rgb:
            bicubic_window_any<3>(im.pixels, w, h, out_w, out_h, x0, y0, cw, ch, out.pixels.data(), false);
            break;
        case pixel_mode::rgba:
            bicubic_window_any<4>(im.pixels, w, h, out_w, out_h, x0, y0, cw, ch, out.pixels.data(), true);
            break;
        default: break;
    }
    return out;
}

/// Pillow's convert("RGB"): grey replicated, alpha dropped without compositing, "I" clipped.
inline rgb_image to_rgb(const image_ref& im) {
    rgb_image out;
    out.width = im.width;
    out.height = im.height;
    out.pixels.resize(static_cast<std::size_t>(im.width) * static_cast<std::size_t>(im.height) * 3);
    for (int y = 0; y < im.height; ++y)
        rgb_row(im, y, out.pixels.data() + static_cast<std::size_t>(y) * static_cast<std::size_t>(im.width) * 3);
    return out;
}

inline std::string stb_reason() {
    const char* r = zc_stbi_failure_reason();
    return r ? std::string(r) : std::string("unknown error");
}

/// The first bytes of a file read to identify its format and declared size before anything else.
constexpr std::size_t image_header_bytes = std::size_t{1} << 16;

/// stb_image's largest width or height (ZC_STBI_MAX_DIMENSIONS).
constexpr std::uint64_t stb_max_side = std::uint64_t{1} << 18;

[[noreturn]] inline void refuse_image_size(const std::string& name, std::uint64_t w, std::uint64_t h,
                                           std::size_t max_pixels) {
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
inline decoded_image decode_with_stb(image_source& src, const format_probe& probe, std::size_t max_pixels) {
    const std::string& name = src.name();
    const zc_stbi_io_callbacks io{&image_source::stb_read, &image_source::stb_skip, &image_source::stb_eof};
    int w = 0, h = 0, comp = 0;
    src.seek(0);
    if (!zc_stbi_info_from_callbacks(&io, &src, &w, &h, &comp))
        ZEROCLIP_THROW(errc::image_decode, name + ": cannot decode " +
                                               (probe.format == "TGA" ? std::string() : probe.format + " ") +
                                               "image header (stb_image: " + stb_reason() + ")");
    if (w < 1 || h < 1) ZEROCLIP_THROW(errc::image_decode, name + ": " + probe.format + " header declares no pixels");
    const std::uint64_t declared = static_cast<std::uint64_t>(w) * static_cast<std::uint64_t>(h);
    if (declared > max_pixels) refuse_image_size(name, static_cast<std::uint64_t>(w), static_cast<std::uint64_t>(h), max_pixels);

    decoded_image out;
    out.width = w;
    out.height = h;
    out.format = probe.format;
    out.mode = mode_of(probe.mode);
    if (probe.format == "JPEG") out.mode = comp == 1 ? pixel_mode::l : pixel_mode::rgb;
    // GIF: clear the transparency flags so stb draws transparent pixels in their palette colour.
    src.clear_bit0_at(probe.gif_transparency_flag_at);

    const int channels = pixel_mode_channels(out.mode);
    const std::size_t n = static_cast<std::size_t>(w) * static_cast<std::size_t>(h);
    int rw = 0, rh = 0, file_channels = 0;
    src.seek(0);
    {
        std::unique_ptr<zc_stbi_uc, void (*)(void*)> px(
            zc_stbi_load_from_callbacks(&io, &src, &rw, &rh, &file_channels, channels), &zc_stbi_image_free);
        if (!px) ZEROCLIP_THROW(errc::image_decode, name + ": cannot decode " + probe.format + " image (stb_image: " + stb_reason() + ")");
        if (rw != w || rh != h) ZEROCLIP_THROW(errc::image_decode, name + ": decoded size differs from the header's");
        out.pixels.assign(px.get(), px.get() + n * static_cast<std::size_t>(channels));
    }  // stb's buffer freed here: one copy of the pixels from now on

    if (probe.bmp_16bit_green_bits && channels == 3) {
        // stb widens 5/6-bit fields by bit replication, Pillow by v * 255 / max (BGR;15, BGR;16).
        std::array<std::uint8_t, 256> five{}, six{};
        for (unsigned v = 0; v < 256; ++v) {
            five[v] = static_cast<std::uint8_t>((v >> 3) * 255 / 31);
            six[v] = static_cast<std::uint8_t>((v >> 2) * 255 / 63);
        }
        const auto& green = probe.bmp_16bit_green_bits == 6 ? six : five;
        for (std::size_t k = 0; k < n; ++k) {
            out.pixels[3 * k] = five[out.pixels[3 * k]];
            out.pixels[3 * k + 1] = green[out.pixels[3 * k + 1]];
            out.pixels[3 * k + 2] = five[out.pixels[3 * k + 2]];
        }
    }
    if (probe.flip_horizontal) {
        const std::size_t c = static_cast<std::size_t>(channels);
        for (int y = 0; y < h; ++y) {
            std::uint8_t* row = out.pixels.data() + static_cast<std::size_t>(y) * static_cast<std::size_t>(w) * c;
            for (int a = 0, b = w - 1; a < b; ++a, --b)
                for (std::size_t j = 0; j < c; ++j) std::swap(row[static_cast<std::size_t>(a) * c + j], row[static_cast<std::size_t>(b) * c + j]);
        }
    }
    if (probe.format == "GIF" && probe.gif_has_frame) {
        // Canvas outside the first frame: Pillow keeps its fill index (transparent or 0), stb
        // uses the background colour or black.
        const int fx0 = probe.gif_frame[0], fy0 = probe.gif_frame[1];
        const int fx1 = fx0 + probe.gif_frame[2], fy1 = fy0 + probe.gif_frame[3];
        const std::size_t c = static_cast<std::size_t>(channels);
        for (int y = 0; y < h; ++y)
            for (int x = 0; x < w; ++x)
                if (x < fx0 || x >= fx1 || y < fy0 || y >= fy1)
                    std::memcpy(out.pixels.data() + (static_cast<std::size_t>(y) * static_cast<std::size_t>(w) + static_cast<std::size_t>(x)) * c,
                                probe.gif_fill, c);
    }
    return out;
}

/// Identifies the format from the first bytes and the declared size from the header, refusing a
/// non-image or an oversized image before any pixel memory exists, then decodes.
/// `draft_size` > 0: decode a JPEG as Pillow's draft("RGB", (draft_size, draft_size)).
inline decoded_image decode_source(image_source& src, std::size_t max_pixels, int draft_size = 0) {
    const std::string& name = src.name();
    if (src.size() == 0) ZEROCLIP_THROW(errc::image_decode, name + ": empty file (0 bytes), not an image");
    std::vector<std::uint8_t> header(static_cast<std::size_t>(std::min<std::uint64_t>(src.size(), image_header_bytes)));
    header.resize(src.read_at(header.data(), header.size(), 0));
    format_probe probe = probe_image_format(header.data(), header.size());
    if (probe.format == "TGA") {
        // No signature: TGA is the last guess, and stb's TGA header test must pass on the header.
        int w = 0, h = 0, comp = 0;
        if (!zc_stbi_info_from_memory(header.data(), static_cast<int>(header.size()), &w, &h, &comp)) {
            std::string hex;
            static const char digits[] = "0123456789abcdef";
            for (std::size_t i = 0; i < std::min<std::size_t>(header.size(), 8); ++i)
                hex += std::string(i ? " " : "") + digits[header[i] >> 4] + digits[header[i] & 15];
            ZEROCLIP_THROW(errc::image_decode, name + ": not an image in a supported format (PNG, JPEG, GIF, BMP, "
                                                      "PNM, TGA): unknown signature (first bytes " + hex + ")");
        }
    }
    if (!probe.pnm_error.empty()) ZEROCLIP_THROW(errc::image_decode, name + ": cannot decode PNM image: " + probe.pnm_error);
    const std::uint64_t declared = static_cast<std::uint64_t>(probe.width) * probe.height;
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

}  // namespace detail

/// Decodes an image held in memory. `name` labels error messages (a path, a URL). Throws
/// errc::image_decode for empty, unknown, corrupt or truncated data and for images declaring more
/// than `max_pixels` pixels (checked from the header, before decoding).
inline decoded_image decode_image_memory(const std::uint8_t* data, std::size_t size,
                                         const std::string& name = "<memory>",
                                         std::size_t max_pixels = default_max_image_pixels) {
    if (!data && size) ZEROCLIP_THROW(errc::invalid_argument, name + ": null image buffer");
    detail::image_source src(data, size, name);
    return detail::decode_source(src, max_pixels);
}

/// Decodes an image file; see decode_image_memory. The file is read as decoding goes, never
/// whole: a non-image or an oversized image is refused from its first bytes. Missing and
/// unreadable paths, directories, FIFOs and devices throw errc::io naming the path.
inline decoded_image decode_image_file(const std::string& path,
                                       std::size_t max_pixels = default_max_image_pixels) {
    detail::image_source src(open_regular_file(path, "image"), path);
    return detail::decode_source(src, max_pixels);
}

/// Decodes an image file for preprocessing with `options`: its pixel limit, and its decode mode
/// (decode_mode::draft decodes JPEGs at a reduced DCT scale, see there).
inline decoded_image decode_image_file(const std::string& path, const preprocess_options& options) {
    detail::image_source src(open_regular_file(path, "image"), path);
    return detail::decode_source(src, options.max_pixels, options.decode == decode_mode::draft ? options.size : 0);
}

/// decode_image_file(path, options) for bytes in memory.
inline decoded_image decode_image_memory(const std::uint8_t* data, std::size_t size, const std::string& name,
                                         const preprocess_options& options) {
    if (!data && size) ZEROCLIP_THROW(errc::invalid_argument, name + ": null image buffer");
    detail::image_source src(data, size, name);
    return detail::decode_source(src, options.max_pixels, options.decode == decode_mode::draft ? options.size : 0);
}

/// Pillow's `convert("RGB")` of a decoded image.
inline rgb_image to_rgb(const decoded_image& im) { return detail::to_rgb(detail::ref_of(im, "to_rgb")); }

/// Pillow's `Image.resize((width, height))` with its default BICUBIC filter and its mode rules
/// (NEAREST for "P" and "1", premultiplied alpha for "RGBA"/"LA", int32 for "I"), pixel-exact.
inline decoded_image resize_image(const decoded_image& im, int width, int height) {
    if (width < 1 || height < 1)
        ZEROCLIP_THROW(errc::invalid_argument, "resize_image: target size " + std::to_string(width) +
                                                   "x" + std::to_string(height) + " is empty");
    decoded_image out = detail::resize_window(detail::ref_of(im, "resize_image"), width, height, 0, 0, width, height);
    out.format = im.format;
    return out;
}

/// The geometry of CLIP's Resize(size) + CenterCrop(size) for a width x height image: the short
/// side becomes `size`, the long one int(size * long / short); the crop offset rounds half to even
/// (torchvision) or down (options.floor_crop, Hugging Face).
inline crop_geometry compute_crop_geometry(int width, int height, const preprocess_options& options) {
    const int n = options.size;
    if (n < 1 || n > 16384)
        ZEROCLIP_THROW(errc::invalid_argument, "preprocess size must be 1..16384, got " + std::to_string(n));
    if (width < 1 || height < 1)
        ZEROCLIP_THROW(errc::invalid_argument, "image size " + std::to_string(width) + "x" +
                                                   std::to_string(height) + " has no pixels");
    const int short_side = width <= height ? width : height, long_side = width <= height ? height : width;
    // Python's int(n * long / short): exact product, correctly rounded division, truncation.
    const double scaled = static_cast<double>(n) * static_cast<double>(long_side) / static_cast<double>(short_side);
    if (scaled > static_cast<double>(INT_MAX / 4))
        ZEROCLIP_THROW(errc::invalid_argument, "image aspect ratio " + std::to_string(width) + "x" +
                                                   std::to_string(height) + " is too extreme to resize");
    const int new_long = static_cast<int>(scaled);
    crop_geometry g;
    g.size = n;
    g.resized_width = width <= height ? n : new_long;
    g.resized_height = width <= height ? new_long : n;
    auto offset = [&](int excess) {
        if (options.floor_crop || excess % 2 == 0) return excess / 2;
        const int half = excess / 2;  // excess / 2.0 ends in .5: round to the even neighbour
        return half % 2 == 0 ? half : half + 1;
    };
    g.left = offset(g.resized_width - n);
    g.top = offset(g.resized_height - n);
    return g;
}

/// The exact 8-bit size x size RGB crop the model sees (before ToTensor), in OpenAI's order by
/// default: resize in the original mode, centre-crop, convert("RGB").
inline rgb_image preprocess_crop(const decoded_image& im, const preprocess_options& options = {}) {
    const detail::image_ref ref = detail::ref_of(im, "preprocess_crop");
    const crop_geometry g = compute_crop_geometry(im.width, im.height, options);
    if (!options.hf_order)
        return detail::to_rgb(detail::ref_of(
            detail::resize_window(ref, g.resized_width, g.resized_height, g.left, g.top, g.size, g.size),
            "preprocess_crop"));
    if (im.mode == pixel_mode::rgb) {
        decoded_image window = detail::resize_window(ref, g.resized_width, g.resized_height, g.left, g.top, g.size, g.size);
        return rgb_image{window.width, window.height, std::move(window.pixels)};
    }
    // convert("RGB") first, one source row at a time (no whole RGB copy), then the RGB resize.
    rgb_image out{g.size, g.size, std::vector<std::uint8_t>(static_cast<std::size_t>(g.size) * static_cast<std::size_t>(g.size) * 3)};
    detail::bicubic_window_rows<3>(
        nullptr, [&](int y, std::uint8_t* row) { detail::rgb_row(ref, y, row); },
        im.width, im.height, g.resized_width, g.resized_height, g.left, g.top, g.size, g.size, out.pixels.data());
    return out;
}

/// ToTensor + Normalize into `out` (3 * width * height floats, CHW): float32
/// (u8 / 255 - mean) / std, bit-identical to torchvision's.
inline void normalize_into(const rgb_image& img, const std::array<float, 3>& mean,
                           const std::array<float, 3>& stddev, float* out) {
    const std::size_t plane = static_cast<std::size_t>(img.width) * static_cast<std::size_t>(img.height);
    if (img.pixels.size() != plane * 3)
        ZEROCLIP_THROW(errc::invalid_argument, "normalize: pixel buffer size does not match " +
                                                   std::to_string(img.width) + "x" + std::to_string(img.height) + "x3");
    for (int c = 0; c < 3; ++c) {
        if (!(stddev[static_cast<std::size_t>(c)] != 0.0f))
            ZEROCLIP_THROW(errc::invalid_argument, "normalize: std of channel " + std::to_string(c) + " is zero");
        // 256 possible inputs: a table computed with the very same float operations.
        float lut[256];
        for (int v = 0; v < 256; ++v)
            lut[v] = (static_cast<float>(v) / 255.0f - mean[static_cast<std::size_t>(c)]) / stddev[static_cast<std::size_t>(c)];
        float* dst = out + static_cast<std::size_t>(c) * plane;
        const std::uint8_t* src = img.pixels.data() + c;
        for (std::size_t k = 0; k < plane; ++k) dst[k] = lut[src[3 * k]];
    }
}

/// ToTensor + Normalize: a new 3 x height x width float vector (CHW, row-major).
inline std::vector<float> normalize(const rgb_image& img, const std::array<float, 3>& mean,
                                    const std::array<float, 3>& stddev) {
    std::vector<float> out(static_cast<std::size_t>(img.width) * static_cast<std::size_t>(img.height) * 3);
    normalize_into(img, mean, stddev, out.data());
    return out;
}

/// File → model input, written to `out` (3 * size * size floats, CHW): decode, resize and crop,
/// normalise, as OpenAI's `preprocess(Image.open(path))`. `on_decoded` sees the decoded image first.
inline void preprocess_file_into(const std::string& path, const preprocess_options& options, float* out,
                                 const std::function<void(const decoded_image&)>& on_decoded = {}) {
    const decoded_image image = decode_image_file(path, options);
    if (on_decoded) on_decoded(image);
    normalize_into(preprocess_crop(image, options), options.mean, options.stddev, out);
}

/// File → model input: 3 x size x size floats (CHW), as OpenAI's `preprocess(Image.open(path))`.
inline std::vector<float> load_image_tensor(const std::string& path, const preprocess_options& options = {}) {
    return normalize(preprocess_crop(decode_image_file(path, options), options), options.mean,
                     options.stddev);
}

/// Files → a batch tensor [N, 3, size, size].
inline tensor load_image_batch(const std::vector<std::string>& paths, const preprocess_options& options = {}) {
    const std::int64_t n = options.size;
    tensor batch(shape_t{static_cast<std::int64_t>(paths.size()), 3, n, n});
    const std::size_t row = static_cast<std::size_t>(3 * n * n);
    for (std::size_t i = 0; i < paths.size(); ++i)
        normalize_into(preprocess_crop(decode_image_file(paths[i], options), options), options.mean,
                       options.stddev, batch.data() + i * row);
    return batch;
}

/// The image as PNG file bytes (8-bit RGB).
inline std::vector<std::uint8_t> encode_png(const rgb_image& img) {
    if (img.width < 1 || img.height < 1 ||
        img.pixels.size() != static_cast<std::size_t>(img.width) * static_cast<std::size_t>(img.height) * 3)
        ZEROCLIP_THROW(errc::invalid_argument, "encode_png: pixel buffer does not match " +
                                                   std::to_string(img.width) + "x" + std::to_string(img.height) + "x3");
    std::vector<std::uint8_t> png;
    auto sink = [](void* context, void* bytes, int n) {
        auto* v = static_cast<std::vector<std::uint8_t>*>(context);
        v->insert(v->end(), static_cast<std::uint8_t*>(bytes), static_cast<std::uint8_t*>(bytes) + n);
    };
    if (!zc_stbi_write_png_to_func(sink, &png, img.width, img.height, 3, img.pixels.data(), img.width * 3))
        ZEROCLIP_THROW(errc::invalid_argument, "encode_png: stb_image_write failed");
    return png;
}

/// The image as baseline JPEG file bytes (8-bit RGB), `quality` 1..100.
inline std::vector<std::uint8_t> encode_jpeg(const rgb_image& img, int quality = 80) {
    if (img.width < 1 || img.height < 1 ||
        img.pixels.size() != static_cast<std::size_t>(img.width) * static_cast<std::size_t>(img.height) * 3)
        ZEROCLIP_THROW(errc::invalid_argument, "encode_jpeg: pixel buffer does not match " +
                                                   std::to_string(img.width) + "x" + std::to_string(img.height) + "x3");
    std::vector<std::uint8_t> jpeg;
    auto sink = [](void* context, void* bytes, int n) {
        auto* v = static_cast<std::vector<std::uint8_t>*>(context);
        v->insert(v->end(), static_cast<std::uint8_t*>(bytes), static_cast<std::uint8_t*>(bytes) + n);
    };
    if (!zc_stbi_write_jpg_to_func(sink, &jpeg, img.width, img.height, 3, img.pixels.data(), quality))
        ZEROCLIP_THROW(errc::invalid_argument, "encode_jpeg: stb_image_write failed");
    return jpeg;
}

/// A small RGB preview whose longest side is at most `max_side` (aspect kept, never enlarged):
/// each output pixel is the mean of the source pixels it covers (a box filter, one pass over the
/// source), colours as convert("RGB"). For display only, not for model input.
inline rgb_image make_thumbnail(const decoded_image& im, int max_side) {
    const detail::image_ref src = detail::ref_of(im, "make_thumbnail");
    if (max_side < 1) ZEROCLIP_THROW(errc::invalid_argument, "make_thumbnail: max_side must be >= 1");
    const int longest = std::max(src.width, src.height);
    if (longest <= max_side) return detail::to_rgb(src);
    const double scale = static_cast<double>(max_side) / longest;
    rgb_image out;
    out.width = std::max(1, static_cast<int>(std::lround(src.width * scale)));
    out.height = std::max(1, static_cast<int>(std::lround(src.height * scale)));
    std::vector<std::uint64_t> sums(static_cast<std::size_t>(out.width) * 3);
    std::vector<std::uint32_t> col_of(static_cast<std::size_t>(src.width));
    for (int x = 0; x < src.width; ++x)
        col_of[static_cast<std::size_t>(x)] = static_cast<std::uint32_t>(static_cast<std::int64_t>(x) * out.width / src.width);
    out.pixels.resize(static_cast<std::size_t>(out.width) * static_cast<std::size_t>(out.height) * 3);
    const int c = pixel_mode_channels(src.mode);
    auto rgb_at = [&](std::size_t k, std::uint32_t* rgb) {
        if (src.mode == pixel_mode::i) {
            const std::int32_t v = src.values[k];
            rgb[0] = rgb[1] = rgb[2] = static_cast<std::uint32_t>(v <= 0 ? 0 : v >= 255 ? 255 : v);
        } else if (c >= 3) {
            for (int ch = 0; ch < 3; ++ch) rgb[ch] = src.pixels[static_cast<std::size_t>(c) * k + static_cast<std::size_t>(ch)];
        } else {
            rgb[0] = rgb[1] = rgb[2] = src.pixels[static_cast<std::size_t>(c) * k];
        }
    };
    int y = 0;
    for (int oy = 0; oy < out.height; ++oy) {
        const int y_end = static_cast<int>(static_cast<std::int64_t>(oy + 1) * src.height / out.height);
        std::fill(sums.begin(), sums.end(), 0);
        const int rows = y_end - y;
        for (; y < y_end; ++y)
            for (int x = 0; x < src.width; ++x) {
                std::uint32_t rgb[3];
                rgb_at(static_cast<std::size_t>(y) * static_cast<std::size_t>(src.width) + static_cast<std::size_t>(x), rgb);
                std::uint64_t* s = &sums[3 * col_of[static_cast<std::size_t>(x)]];
                s[0] += rgb[0], s[1] += rgb[1], s[2] += rgb[2];
            }
        for (int ox = 0; ox < out.width; ++ox) {
            const std::int64_t x0 = (static_cast<std::int64_t>(ox) * src.width + out.width - 1) / out.width;
            const std::int64_t x1 = (static_cast<std::int64_t>(ox + 1) * src.width + out.width - 1) / out.width;
            const std::uint64_t n = static_cast<std::uint64_t>(std::max<std::int64_t>(1, (x1 - x0) * rows));
            for (int ch = 0; ch < 3; ++ch)
                out.pixels[(static_cast<std::size_t>(oy) * static_cast<std::size_t>(out.width) + static_cast<std::size_t>(ox)) * 3 +
                           static_cast<std::size_t>(ch)] = static_cast<std::uint8_t>((sums[3 * static_cast<std::size_t>(ox) + static_cast<std::size_t>(ch)] + n / 2) / n);
        }
    }
    return out;
}

/// Writes the image as an 8-bit RGB PNG file; errc::io naming the path on failure.
inline void save_png(const std::string& path, const rgb_image& img) {
    const std::vector<std::uint8_t> png = encode_png(img);
    std::ofstream out(path, std::ios::binary);
    if (!out) ZEROCLIP_THROW(errc::io, path + ": cannot open for writing");
    out.write(reinterpret_cast<const char*>(png.data()), static_cast<std::streamsize>(png.size()));
    out.close();
    if (!out) ZEROCLIP_THROW(errc::io, path + ": write failed");
}

}  // namespace zeroclip
