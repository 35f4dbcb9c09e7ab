//! zeroclip image input: decoding (stb_image: JPEG, PNG, BMP, GIF, TGA, PNM) and CLIP's
//! preprocessing, matching OpenAI's `_transform` to the pixel: Resize(short side, BICUBIC) on the
//! image in its original Pillow mode → CenterCrop → convert("RGB") → ToTensor → Normalize.
//! `preprocess_crop` gives the exact 8-bit crop the model sees; `load_image_tensor` the CHW floats.
#pragma once

#include <array>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "detail/image_formats.hpp"
#include "detail/pil_resample.hpp"
#include "detail/stb_image_impl.hpp"
#include "error.hpp"
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

/// Pillow's convert("RGB"): grey replicated, alpha dropped without compositing, "I" clipped.
inline rgb_image to_rgb(const image_ref& im) {
    rgb_image out;
    out.width = im.width;
    out.height = im.height;
    const std::size_t n = static_cast<std::size_t>(im.width) * static_cast<std::size_t>(im.height);
    out.pixels.resize(n * 3);
    std::uint8_t* dst = out.pixels.data();
    const int c = pixel_mode_channels(im.mode);
    if (im.mode == pixel_mode::i) {
        for (std::size_t k = 0; k < n; ++k) {
            const std::int32_t v = im.values[k];
            dst[3 * k] = dst[3 * k + 1] = dst[3 * k + 2] =
                static_cast<std::uint8_t>(v <= 0 ? 0 : v >= 255 ? 255 : v);
        }
    } else if (c >= 3) {  // RGB, P (already colours), RGBA
        if (c == 3) {
            std::memcpy(dst, im.pixels, n * 3);
        } else {
            for (std::size_t k = 0; k < n; ++k) std::memcpy(dst + 3 * k, im.pixels + 4 * k, 3);
        }
    } else {  // L, 1, LA: the grey sample replicated
        for (std::size_t k = 0; k < n; ++k)
            dst[3 * k] = dst[3 * k + 1] = dst[3 * k + 2] = im.pixels[static_cast<std::size_t>(c) * k];
    }
    return out;
}

template <int C>
inline void bicubic_window_u8(const std::uint8_t* src, int w, int h, int out_w, int out_h, int x0,
                              int y0, int cw, int ch, std::uint8_t* dst) {
    const std::ptrdiff_t stride = static_cast<std::ptrdiff_t>(w) * C;
    const bool need_h = out_w != w, need_v = out_h != h;
    resample_axis ax_v;
    int r0 = y0, r1 = y0 + ch;  // source rows the window needs
    if (need_v) {
        ax_v = pil_bicubic_axis(h, out_h, y0, ch);
        r0 = ax_v.min_of(y0);
        r1 = ax_v.end_of(y0 + ch - 1);
    }
    std::vector<std::uint8_t> temp;
    const std::uint8_t* mid = src + r0 * stride + static_cast<std::ptrdiff_t>(x0) * C;
    std::ptrdiff_t mid_stride = stride;
    if (need_h) {
        const resample_axis ax_h = pil_bicubic_axis(w, out_w, x0, cw);
        temp.resize(static_cast<std::size_t>(r1 - r0) * static_cast<std::size_t>(cw) * C);
        pil_horizontal_u8<C>(src + r0 * stride, stride, r1 - r0, ax_h, x0, cw, temp.data());
        mid = temp.data();
        mid_stride = static_cast<std::ptrdiff_t>(cw) * C;
    }
    if (need_v) {
        pil_vertical_u8<C>(mid, mid_stride, r0, cw, ax_v, y0, ch, dst);
    } else {
        for (int y = 0; y < ch; ++y)
            std::memcpy(dst + static_cast<std::ptrdiff_t>(y) * cw * C, mid + y * mid_stride,
                        static_cast<std::size_t>(cw) * C);
    }
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
    // Image.resize converts RGBA/LA to RGBa/La, resizes, converts back: same 8-bit roundings.
    std::vector<std::uint8_t> pre(src, src + static_cast<std::size_t>(w) * static_cast<std::size_t>(h) * C);
    pil_premultiply<C>(pre.data(), static_cast<std::size_t>(w) * static_cast<std::size_t>(h));
    bicubic_window_u8<C>(pre.data(), w, h, out_w, out_h, x0, y0, cw, ch, dst);
    pil_unpremultiply<C>(dst, static_cast<std::size_t>(cw) * static_cast<std::size_t>(ch));
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

/// Python's round() for a non-negative double: half to even.
inline double round_half_even(double x) noexcept {
    double r = std::floor(x);
    const double frac = x - r;
    if (frac > 0.5 || (frac == 0.5 && std::fmod(r, 2.0) != 0.0)) r += 1.0;
    return r;
}

/// PpmDecoder's rescaling: min(out_max, round(v / maxval * out_max)).
inline std::int32_t pnm_rescale(std::uint32_t v, int maxval, int out_max) noexcept {
    const double scaled = round_half_even(static_cast<double>(v) / maxval * out_max);
    return scaled > out_max ? out_max : static_cast<std::int32_t>(scaled);
}

inline std::string stb_reason() {
    const char* r = zc_stbi_failure_reason();
    return r ? std::string(r) : std::string("unknown error");
}

/// Reads a whole file; errc::io naming the path on any failure.
inline std::vector<std::uint8_t> read_image_file(const std::string& path) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))
        ZEROCLIP_THROW(errc::io, path + ": is a directory, not an image file");
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) {
        const int e = errno;
        ZEROCLIP_THROW(errc::io, path + ": cannot open image (" + std::strerror(e) + ")");
    }
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> guard(f, &std::fclose);
    std::vector<std::uint8_t> bytes;
    std::size_t used = 0;
    for (;;) {
        if (bytes.size() - used < (1u << 16)) bytes.resize(used + (used < (1u << 20) ? (1u << 16) : used));
        const std::size_t got = std::fread(bytes.data() + used, 1, bytes.size() - used, f);
        used += got;
        if (got == 0) break;
        if (used > static_cast<std::size_t>(INT_MAX))
            ZEROCLIP_THROW(errc::image_decode, path + ": file is larger than 2 GiB, too large to decode");
    }
    if (std::ferror(f)) {
        const int e = errno;
        ZEROCLIP_THROW(errc::io, path + ": cannot read image (" + std::strerror(e) + ")");
    }
    bytes.resize(used);
    return bytes;
}

}  // namespace detail

/// Decodes an image held in memory. `name` labels error messages (a path, a URL). Throws
/// errc::image_decode for empty, unknown, corrupt or truncated data and for images declaring more
/// than `max_pixels` pixels (checked from the header, before decoding).
inline decoded_image decode_image_memory(const std::uint8_t* data, std::size_t size,
                                         const std::string& name = "<memory>",
                                         std::size_t max_pixels = default_max_image_pixels) {
    if (size == 0) ZEROCLIP_THROW(errc::image_decode, name + ": empty file (0 bytes), not an image");
    if (!data) ZEROCLIP_THROW(errc::invalid_argument, name + ": null image buffer");
    if (size > static_cast<std::size_t>(INT_MAX))
        ZEROCLIP_THROW(errc::image_decode, name + ": " + std::to_string(size) + " bytes, too large to decode");
    const int len = static_cast<int>(size);
    const auto refuse_size = [&](std::uint64_t w, std::uint64_t h) {
        ZEROCLIP_THROW(errc::image_decode, name + ": image declares " + std::to_string(w) + "x" +
                                               std::to_string(h) + " = " + std::to_string(w * h) +
                                               " pixels, over the limit of " + std::to_string(max_pixels) +
                                               " (decompression bomb? raise max_pixels to allow it)");
    };
    // The header's own size first: stb_image may refuse a huge size with a vaguer reason.
    detail::format_probe probe = detail::probe_image_format(data, size);
    if (static_cast<std::uint64_t>(probe.width) * probe.height > max_pixels) refuse_size(probe.width, probe.height);
    if (probe.png_chunk_past_end_at)  // refused before stb_image allocates the declared length
        ZEROCLIP_THROW(errc::image_decode, name + ": PNG chunk at byte " + std::to_string(probe.png_chunk_past_end_at) +
                                               " declares " + std::to_string(probe.png_chunk_declared) +
                                               " bytes, more than the file holds (truncated or corrupt)");
    int w = 0, h = 0, comp = 0;
    if (!zc_stbi_info_from_memory(data, len, &w, &h, &comp))
        ZEROCLIP_THROW(errc::image_decode, name + ": cannot decode " +
                                               (probe.format == "TGA" ? std::string() : probe.format + " ") +
                                               "image header (stb_image: " + detail::stb_reason() + ")");
    const std::uint64_t declared = static_cast<std::uint64_t>(w) * static_cast<std::uint64_t>(h);
    if (w < 1 || h < 1 || declared > max_pixels) refuse_size(static_cast<std::uint64_t>(w), static_cast<std::uint64_t>(h));

    decoded_image out;
    out.width = w;
    out.height = h;
    out.format = probe.format;
    const std::string& m = probe.mode;
    out.mode = m == "RGBA" ? pixel_mode::rgba : m == "L" ? pixel_mode::l : m == "LA" ? pixel_mode::la
             : m == "P" ? pixel_mode::p : m == "1" ? pixel_mode::bilevel : m == "I" ? pixel_mode::i
             : pixel_mode::rgb;
    if (probe.format == "JPEG") out.mode = comp == 1 ? pixel_mode::l : pixel_mode::rgb;

    // GIF: clear the transparency flags so stb draws transparent pixels in their palette colour.
    std::vector<std::uint8_t> patched;
    const std::uint8_t* src = data;
    if (!probe.gif_transparency_flag_at.empty()) {
        patched.assign(data, data + size);
        for (std::size_t at : probe.gif_transparency_flag_at)
            if (at < patched.size()) patched[at] = static_cast<std::uint8_t>(patched[at] & ~1u);
        src = patched.data();
    }

    const int channels = out.mode == pixel_mode::i ? 1 : pixel_mode_channels(out.mode);
    int rw = 0, rh = 0, file_channels = 0;
    const std::size_t n = static_cast<std::size_t>(w) * static_cast<std::size_t>(h);
    if (probe.load_16) {
        std::unique_ptr<zc_stbi_us, void (*)(void*)> px(
            zc_stbi_load_16_from_memory(src, len, &rw, &rh, &file_channels, channels), &zc_stbi_image_free);
        if (!px) ZEROCLIP_THROW(errc::image_decode, name + ": cannot decode " + probe.format + " image (stb_image: " + detail::stb_reason() + ")");
        if (rw != w || rh != h) ZEROCLIP_THROW(errc::image_decode, name + ": decoded size differs from the header's");
        // stb (v2.27) returns 16-bit PNM samples in file byte order; PNM is big-endian, so read
        // them from the file once stb has validated it. (PNG needs no such help.)
        std::vector<std::uint16_t> samples;
        const zc_stbi_us* p = px.get();
        if (probe.format == "PNM") {
            const std::size_t need = n * static_cast<std::size_t>(channels);
            if (probe.pnm_data_at == 0 || probe.pnm_data_at + 2 * need > size)
                ZEROCLIP_THROW(errc::image_decode, name + ": cannot decode PNM image (truncated samples)");
            samples.resize(need);
            for (std::size_t k = 0; k < need; ++k)
                samples[k] = static_cast<std::uint16_t>((data[probe.pnm_data_at + 2 * k] << 8) |
                                                        data[probe.pnm_data_at + 2 * k + 1]);
            p = samples.data();
        }
        if (out.mode == pixel_mode::i) {
            out.values.resize(n);
            const bool rescale = probe.format == "PNM" && probe.pnm_maxval != 65535;
            for (std::size_t k = 0; k < n; ++k)
                out.values[k] = rescale ? detail::pnm_rescale(p[k], probe.pnm_maxval, 65535) : p[k];
        } else {  // PNM RGB deeper than 8 bits: Pillow rescales to 0..255
            out.pixels.resize(n * static_cast<std::size_t>(channels));
            for (std::size_t k = 0; k < out.pixels.size(); ++k)
                out.pixels[k] = static_cast<std::uint8_t>(detail::pnm_rescale(p[k], probe.pnm_maxval, 255));
        }
    } else {
        std::unique_ptr<zc_stbi_uc, void (*)(void*)> px(
            zc_stbi_load_from_memory(src, len, &rw, &rh, &file_channels, channels), &zc_stbi_image_free);
        if (!px) ZEROCLIP_THROW(errc::image_decode, name + ": cannot decode " + probe.format + " image (stb_image: " + detail::stb_reason() + ")");
        if (rw != w || rh != h) ZEROCLIP_THROW(errc::image_decode, name + ": decoded size differs from the header's");
        out.pixels.assign(px.get(), px.get() + n * static_cast<std::size_t>(channels));
        if (probe.format == "PNM" && probe.pnm_maxval != 255)
            for (auto& v : out.pixels) v = static_cast<std::uint8_t>(detail::pnm_rescale(v, probe.pnm_maxval, 255));
    }

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
    if (probe.flip_horizontal && out.mode != pixel_mode::i) {
        const std::size_t c = static_cast<std::size_t>(channels);
        for (int y = 0; y < h; ++y) {
            std::uint8_t* row = out.pixels.data() + static_cast<std::size_t>(y) * static_cast<std::size_t>(w) * c;
            for (int a = 0, b = w - 1; a < b; ++a, --b)
                for (std::size_t j = 0; j < c; ++j) std::swap(row[static_cast<std::size_t>(a) * c + j], row[static_cast<std::size_t>(b) * c + j]);
        }
    }
    if (probe.format == "GIF" && probe.gif_has_frame && out.mode != pixel_mode::i) {
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

/// Decodes an image file; see decode_image_memory. Missing, unreadable paths and directories
/// throw errc::io naming the path.
inline decoded_image decode_image_file(const std::string& path,
                                       std::size_t max_pixels = default_max_image_pixels) {
    const std::vector<std::uint8_t> bytes = detail::read_image_file(path);
    return decode_image_memory(bytes.data(), bytes.size(), path, max_pixels);
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
    rgb_image rgb;  // convert("RGB") first; an RGB image is used as it is
    if (im.mode != pixel_mode::rgb) rgb = detail::to_rgb(ref);
    const detail::image_ref rgb_ref{im.width, im.height, pixel_mode::rgb,
                                    im.mode == pixel_mode::rgb ? im.pixels.data() : rgb.pixels.data(), nullptr};
    decoded_image window = detail::resize_window(rgb_ref, g.resized_width, g.resized_height, g.left, g.top, g.size, g.size);
    return rgb_image{window.width, window.height, std::move(window.pixels)};
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

/// File → model input: 3 x size x size floats (CHW), as OpenAI's `preprocess(Image.open(path))`.
inline std::vector<float> load_image_tensor(const std::string& path, const preprocess_options& options = {}) {
    return normalize(preprocess_crop(decode_image_file(path, options.max_pixels), options), options.mean,
                     options.stddev);
}

/// Files → a batch tensor [N, 3, size, size].
inline tensor load_image_batch(const std::vector<std::string>& paths, const preprocess_options& options = {}) {
    const std::int64_t n = options.size;
    tensor batch(shape_t{static_cast<std::int64_t>(paths.size()), 3, n, n});
    const std::size_t row = static_cast<std::size_t>(3 * n * n);
    for (std::size_t i = 0; i < paths.size(); ++i)
        normalize_into(preprocess_crop(decode_image_file(paths[i], options.max_pixels), options), options.mean,
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
