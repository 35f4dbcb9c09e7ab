//! Pillow's Image.resize (BICUBIC, with its mode rules) computed only over a crop window, and
//! Pillow's convert("RGB"): the internals of image.hpp's preprocess_crop and resize_image.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../../error.hpp"
#include "pil_resample.hpp"
#include "types.hpp"

namespace zeroclip::detail {

/// A read-only view of a decoded or RGB image (no copies between pipeline stages).
struct image_ref {
    int width = 0;
    int height = 0;
    pixel_mode mode = pixel_mode::rgb;
    const uint8_t* pixels = nullptr;
    const int32_t* values = nullptr;
};

inline image_ref ref_of(const decoded_image& im, const char* what) {
    if (im.width < 1 || im.height < 1)
        ZEROCLIP_THROW(errc::invalid_argument, std::string(what) + ": image has no pixels (" +
                                                   std::to_string(im.width) + "x" +
                                                   std::to_string(im.height) + ")");
    const size_t n = static_cast<size_t>(im.width) * static_cast<size_t>(im.height);
    const bool ok = im.mode == pixel_mode::i
                        ? im.values.size() == n
                        : im.pixels.size() == n * static_cast<size_t>(pixel_mode_channels(im.mode));
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
inline void bicubic_window_rows(const uint8_t* src, MakeRow&& make_row, int w, int h, int out_w, int out_h,
                                int x0, int y0, int cw, int ch, uint8_t* dst) {
    const bool need_h = out_w != w, need_v = out_h != h;
    resample_axis ax_v;
    int r0 = y0, r1 = y0 + ch;  // source rows the window needs
    if (need_v) {
        ax_v = pil_bicubic_axis(h, out_h, y0, ch);
        r0 = ax_v.min_of(y0);
        r1 = ax_v.end_of(y0 + ch - 1);
    }
    const size_t in_row = static_cast<size_t>(w) * C, mid_row = static_cast<size_t>(cw) * C;
    // Rows [r0, r1) after the horizontal pass (or the window's columns when there is none).
    std::vector<uint8_t> mid(static_cast<size_t>(r1 - r0) * mid_row);
    resample_axis ax_h;
    if (need_h) ax_h = pil_bicubic_axis(w, out_w, x0, cw);
    const int block = src ? r1 - r0 : static_cast<int>(std::max<size_t>(1, (size_t{1} << 18) / in_row));
    std::vector<uint8_t> made(src ? 0 : static_cast<size_t>(std::min(block, r1 - r0)) * in_row);
    for (int y = r0; y < r1; y += block) {
        const int n = std::min(block, r1 - y);
        const uint8_t* in = src ? src + static_cast<size_t>(y) * in_row : made.data();
        if (!src)
            for (int k = 0; k < n; ++k) make_row(y + k, made.data() + static_cast<size_t>(k) * in_row);
        uint8_t* out = mid.data() + static_cast<size_t>(y - r0) * mid_row;
        if (need_h) {
            pil_horizontal_u8<C>(in, static_cast<ptrdiff_t>(in_row), n, ax_h, x0, cw, out);
        } else {
            for (int k = 0; k < n; ++k)
                std::memcpy(out + static_cast<size_t>(k) * mid_row,
                            in + static_cast<size_t>(k) * in_row + static_cast<size_t>(x0) * C, mid_row);
        }
    }
    if (need_v) pil_vertical_u8<C>(mid.data(), static_cast<ptrdiff_t>(mid_row), r0, cw, ax_v, y0, ch, dst);
    else std::memcpy(dst, mid.data(), mid.size());
}

template <int C>
inline void bicubic_window_u8(const uint8_t* src, int w, int h, int out_w, int out_h, int x0,
                              int y0, int cw, int ch, uint8_t* dst) {
    bicubic_window_rows<C>(src, [](int, uint8_t*) {}, w, h, out_w, out_h, x0, y0, cw, ch, dst);
}

inline void bicubic_window_i32(const int32_t* src, int w, int h, int out_w, int out_h, int x0,
                               int y0, int cw, int ch, int32_t* dst) {
    const bool need_h = out_w != w, need_v = out_h != h;
    resample_axis ax_v;
    int r0 = y0, r1 = y0 + ch;
    if (need_v) {
        ax_v = pil_bicubic_axis(h, out_h, y0, ch);
        r0 = ax_v.min_of(y0);
        r1 = ax_v.end_of(y0 + ch - 1);
    }
    std::vector<int32_t> temp;
    const int32_t* mid = src + static_cast<ptrdiff_t>(r0) * w + x0;
    ptrdiff_t mid_stride = w;
    if (need_h) {
        const resample_axis ax_h = pil_bicubic_axis(w, out_w, x0, cw);
        temp.resize(static_cast<size_t>(r1 - r0) * static_cast<size_t>(cw));
        pil_horizontal_i32(src + static_cast<ptrdiff_t>(r0) * w, w, r1 - r0, ax_h, x0, cw, temp.data());
        mid = temp.data();
        mid_stride = cw;
    }
    if (need_v) {
        pil_vertical_i32(mid, mid_stride, r0, cw, ax_v, y0, ch, dst);
    } else {
        for (int y = 0; y < ch; ++y)
            std::memcpy(dst + static_cast<ptrdiff_t>(y) * cw, mid + y * mid_stride,
                        static_cast<size_t>(cw) * sizeof(int32_t));
    }
}

template <int C>
inline void bicubic_window_any(const uint8_t* src, int w, int h, int out_w, int out_h, int x0,
                               int y0, int cw, int ch, uint8_t* dst, bool premultiplied) {
    if (!premultiplied) {
        bicubic_window_u8<C>(src, w, h, out_w, out_h, x0, y0, cw, ch, dst);
        return;
    }
    // Image.resize converts RGBA/LA to RGBa/La, resizes, converts back: same 8-bit roundings,
    // premultiplied here one source row at a time.
    const size_t row_len = static_cast<size_t>(w) * C;
    bicubic_window_rows<C>(
        nullptr,
        [&](int y, uint8_t* out) {
            std::memcpy(out, src + static_cast<size_t>(y) * row_len, row_len);
            pil_premultiply<C>(out, static_cast<size_t>(w));
        },
        w, h, out_w, out_h, x0, y0, cw, ch, dst);
    pil_unpremultiply<C>(dst, static_cast<size_t>(cw) * static_cast<size_t>(ch));
}

/// Row y of Pillow's convert("RGB") of `im` into `out` (width * 3 bytes).
inline void rgb_row(const image_ref& im, int y, uint8_t* out) {
    const size_t w = static_cast<size_t>(im.width), base = static_cast<size_t>(y) * w;
    const size_t c = static_cast<size_t>(pixel_mode_channels(im.mode));
    if (im.mode == pixel_mode::i) {
        for (size_t k = 0; k < w; ++k) {
            const int32_t v = im.values[base + k];
            out[3 * k] = out[3 * k + 1] = out[3 * k + 2] = static_cast<uint8_t>(v <= 0 ? 0 : v >= 255 ? 255 : v);
        }
    } else if (c == 3) {
        std::memcpy(out, im.pixels + base * 3, w * 3);
    } else if (c == 4) {
        for (size_t k = 0; k < w; ++k) std::memcpy(out + 3 * k, im.pixels + (base + k) * 4, 3);
    } else {  // L, 1, LA: the grey sample replicated
        for (size_t k = 0; k < w; ++k) out[3 * k] = out[3 * k + 1] = out[3 * k + 2] = im.pixels[(base + k) * c];
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
    const size_t count = static_cast<size_t>(cw) * static_cast<size_t>(ch);
    if (im.mode == pixel_mode::i) out.values.resize(count);
    else out.pixels.resize(count * static_cast<size_t>(c));
    const int w = im.width, h = im.height;

    if (out_w == w && out_h == h) {  // Image.resize returns a copy: no premultiplication round trip
        for (int y = 0; y < ch; ++y) {
            const size_t from = static_cast<size_t>(y0 + y) * static_cast<size_t>(w) + static_cast<size_t>(x0);
            const size_t to = static_cast<size_t>(y) * static_cast<size_t>(cw);
            if (im.mode == pixel_mode::i)
                std::memcpy(out.values.data() + to, im.values + from, static_cast<size_t>(cw) * sizeof(int32_t));
            else
                std::memcpy(out.pixels.data() + to * static_cast<size_t>(c),
                            im.pixels + from * static_cast<size_t>(c),
                            static_cast<size_t>(cw) * static_cast<size_t>(c));
        }
        return out;
    }
    if (im.mode == pixel_mode::p || im.mode == pixel_mode::bilevel) {
        const std::vector<int> xs = pil_nearest_axis(w, out_w, x0, cw);
        const std::vector<int> ys = pil_nearest_axis(h, out_h, y0, ch);
        uint8_t* dst = out.pixels.data();
        for (int y = 0; y < ch; ++y) {
            const int sy = ys[static_cast<size_t>(y)];
            for (int x = 0; x < cw; ++x, dst += c) {
                const int sx = xs[static_cast<size_t>(x)];
                if (sx < 0 || sy < 0) {  // Pillow's fill: zeros
                    std::memset(dst, 0, static_cast<size_t>(c));
                    continue;
                }
                std::memcpy(dst, im.pixels + (static_cast<size_t>(sy) * static_cast<size_t>(w) + static_cast<size_t>(sx)) * static_cast<size_t>(c),
                            static_cast<size_t>(c));
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
    out.pixels.resize(static_cast<size_t>(im.width) * static_cast<size_t>(im.height) * 3);
    for (int y = 0; y < im.height; ++y)
        rgb_row(im, y, out.pixels.data() + static_cast<size_t>(y) * static_cast<size_t>(im.width) * 3);
    return out;
}

}  // namespace zeroclip::detail
