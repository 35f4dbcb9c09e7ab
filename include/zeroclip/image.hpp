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
#include <functional>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "detail/image/decode.hpp"
#include "detail/image/resize.hpp"
#include "detail/image/source.hpp"
#include "detail/image/stb_image_impl.hpp"
#include "detail/image/types.hpp"
#include "error.hpp"
#include "io/file.hpp"
#include "tensor.hpp"

namespace zeroclip {

/// Images declaring more pixels than this are refused before anything is allocated.
constexpr size_t default_max_image_pixels = 100'000'000;

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
    size_t max_pixels = default_max_image_pixels;  ///< decompression-bomb limit
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

/// Decodes an image held in memory. `name` labels error messages (a path, a URL). Throws
/// errc::image_decode for empty, unknown, corrupt or truncated data and for images declaring more
/// than `max_pixels` pixels (checked from the header, before decoding).
inline decoded_image decode_image_memory(const uint8_t* data, size_t size,
                                         const std::string& name = "<memory>",
                                         size_t max_pixels = default_max_image_pixels) {
    if (!data && size) ZEROCLIP_THROW(errc::invalid_argument, name + ": null image buffer");
    detail::image_source src(data, size, name);
    return detail::decode_source(src, max_pixels);
}

/// Decodes an image file; see decode_image_memory. The file is read as decoding goes, never
/// whole: a non-image or an oversized image is refused from its first bytes. Missing and
/// unreadable paths, directories, FIFOs and devices throw errc::io naming the path.
inline decoded_image decode_image_file(const std::string& path,
                                       size_t max_pixels = default_max_image_pixels) {
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
inline decoded_image decode_image_memory(const uint8_t* data, size_t size, const std::string& name,
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

/// The largest preprocess_options::size.
constexpr int max_preprocess_size = 16384;

/// The geometry of CLIP's Resize(size) + CenterCrop(size) for a width x height image: the short
/// side becomes `size`, the long one int(size * long / short); the crop offset rounds half to even
/// (torchvision) or down (options.floor_crop, Hugging Face).
inline crop_geometry compute_crop_geometry(int width, int height, const preprocess_options& options) {
    const int n = options.size;
    if (n < 1 || n > max_preprocess_size)
        ZEROCLIP_THROW(errc::invalid_argument, "preprocess size must be 1.." + std::to_string(max_preprocess_size) +
                                                   ", got " + std::to_string(n));
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
    rgb_image out{g.size, g.size, std::vector<uint8_t>(static_cast<size_t>(g.size) * static_cast<size_t>(g.size) * 3)};
    detail::bicubic_window_rows<3>(
        nullptr, [&](int y, uint8_t* row) { detail::rgb_row(ref, y, row); },
        im.width, im.height, g.resized_width, g.resized_height, g.left, g.top, g.size, g.size, out.pixels.data());
    return out;
}

/// ToTensor + Normalize into `out` (3 * width * height floats, CHW): float32
/// (u8 / 255 - mean) / std, bit-identical to torchvision's.
inline void normalize_into(const rgb_image& img, const std::array<float, 3>& mean,
                           const std::array<float, 3>& stddev, float* out) {
    const size_t plane = static_cast<size_t>(img.width) * static_cast<size_t>(img.height);
    if (img.pixels.size() != plane * 3)
        ZEROCLIP_THROW(errc::invalid_argument, "normalize: pixel buffer size does not match " +
                                                   std::to_string(img.width) + "x" + std::to_string(img.height) + "x3");
    for (int c = 0; c < 3; ++c) {
        if (!(stddev[static_cast<size_t>(c)] != 0.0f))
            ZEROCLIP_THROW(errc::invalid_argument, "normalize: std of channel " + std::to_string(c) + " is zero");
        // 256 possible inputs: a table computed with the very same float operations.
        float lut[256];
        for (int v = 0; v < 256; ++v)
            lut[v] = (static_cast<float>(v) / 255.0f - mean[static_cast<size_t>(c)]) / stddev[static_cast<size_t>(c)];
        float* dst = out + static_cast<size_t>(c) * plane;
        const uint8_t* src = img.pixels.data() + c;
        for (size_t k = 0; k < plane; ++k) dst[k] = lut[src[3 * k]];
    }
}

/// ToTensor + Normalize: a new 3 x height x width float vector (CHW, row-major).
inline std::vector<float> normalize(const rgb_image& img, const std::array<float, 3>& mean,
                                    const std::array<float, 3>& stddev) {
    std::vector<float> out(static_cast<size_t>(img.width) * static_cast<size_t>(img.height) * 3);
    normalize_into(img, mean, stddev, out.data());
    return out;
}

/// The one decode → crop → normalise path: decodes the file at `path` (options.max_pixels and
/// options.decode apply), calls `on_decoded` with the full image if given (a look at it without a
/// second decode; what it throws propagates unchanged), then writes the 3 x size x size model
/// input (CHW floats, as OpenAI's `preprocess(Image.open(path))`) to `out`. Throws
/// zeroclip::error naming the file.
inline void preprocess_file_into(const std::string& path, const preprocess_options& options, float* out,
                                 const std::function<void(const decoded_image&)>& on_decoded = {}) {
    const decoded_image image = decode_image_file(path, options);  // its errors name the file
    if (on_decoded) on_decoded(image);
    try {
        normalize_into(preprocess_crop(image, options), options.mean, options.stddev, out);
    } catch (const error& e) {
        // The crop's errors (an extreme aspect ratio, bad options) do not know the file.
        std::string what = e.what();
        if (what.find(path) != std::string::npos) throw;
        const size_t tag_end = what.find("] ");
        ZEROCLIP_THROW(e.code(), path + ": " + (tag_end == std::string::npos ? what : what.substr(tag_end + 2)));
    }
}

/// File → model input: 3 x size x size floats (CHW), as OpenAI's `preprocess(Image.open(path))`.
inline std::vector<float> load_image_tensor(const std::string& path, const preprocess_options& options = {}) {
    // An invalid size allocates nothing: the crop refuses it (after the file's own errors).
    const bool valid = options.size >= 1 && options.size <= max_preprocess_size;
    const size_t side = valid ? static_cast<size_t>(options.size) : 0;
    std::vector<float> out(3 * side * side);
    preprocess_file_into(path, options, out.data());
    return out;
}

/// Files → a batch tensor [N, 3, size, size].
inline tensor load_image_batch(const std::vector<std::string>& paths, const preprocess_options& options = {}) {
    const int64_t n = options.size;
    tensor batch(shape_t{static_cast<int64_t>(paths.size()), 3, n, n});
    const size_t row = static_cast<size_t>(3 * n * n);
    for (size_t i = 0; i < paths.size(); ++i) preprocess_file_into(paths[i], options, batch.data() + i * row);
    return batch;
}

/// The image as PNG file bytes (8-bit RGB).
inline std::vector<uint8_t> encode_png(const rgb_image& img) {
    if (img.width < 1 || img.height < 1 ||
        img.pixels.size() != static_cast<size_t>(img.width) * static_cast<size_t>(img.height) * 3)
        ZEROCLIP_THROW(errc::invalid_argument, "encode_png: pixel buffer does not match " +
                                                   std::to_string(img.width) + "x" + std::to_string(img.height) + "x3");
    std::vector<uint8_t> png;
    auto sink = [](void* context, void* bytes, int n) {
        auto* v = static_cast<std::vector<uint8_t>*>(context);
        v->insert(v->end(), static_cast<uint8_t*>(bytes), static_cast<uint8_t*>(bytes) + n);
    };
    if (!zc_stbi_write_png_to_func(sink, &png, img.width, img.height, 3, img.pixels.data(), img.width * 3))
        ZEROCLIP_THROW(errc::invalid_argument, "encode_png: stb_image_write failed");
    return png;
}

/// The image as baseline JPEG file bytes (8-bit RGB), `quality` 1..100.
inline std::vector<uint8_t> encode_jpeg(const rgb_image& img, int quality = 80) {
    if (img.width < 1 || img.height < 1 ||
        img.pixels.size() != static_cast<size_t>(img.width) * static_cast<size_t>(img.height) * 3)
        ZEROCLIP_THROW(errc::invalid_argument, "encode_jpeg: pixel buffer does not match " +
                                                   std::to_string(img.width) + "x" + std::to_string(img.height) + "x3");
    std::vector<uint8_t> jpeg;
    auto sink = [](void* context, void* bytes, int n) {
        auto* v = static_cast<std::vector<uint8_t>*>(context);
        v->insert(v->end(), static_cast<uint8_t*>(bytes), static_cast<uint8_t*>(bytes) + n);
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
    std::vector<uint64_t> sums(static_cast<size_t>(out.width) * 3);
    std::vector<uint32_t> col_of(static_cast<size_t>(src.width));
    for (int x = 0; x < src.width; ++x)
        col_of[static_cast<size_t>(x)] = static_cast<uint32_t>(static_cast<int64_t>(x) * out.width / src.width);
    out.pixels.resize(static_cast<size_t>(out.width) * static_cast<size_t>(out.height) * 3);
    const int c = pixel_mode_channels(src.mode);
    auto rgb_at = [&](size_t k, uint32_t* rgb) {
        if (src.mode == pixel_mode::i) {
            const int32_t v = src.values[k];
            rgb[0] = rgb[1] = rgb[2] = static_cast<uint32_t>(v <= 0 ? 0 : v >= 255 ? 255 : v);
        } else if (c >= 3) {
            for (int ch = 0; ch < 3; ++ch) rgb[ch] = src.pixels[static_cast<size_t>(c) * k + static_cast<size_t>(ch)];
        } else {
            rgb[0] = rgb[1] = rgb[2] = src.pixels[static_cast<size_t>(c) * k];
        }
    };
    int y = 0;
    for (int oy = 0; oy < out.height; ++oy) {
        const int y_end = static_cast<int>(static_cast<int64_t>(oy + 1) * src.height / out.height);
        std::fill(sums.begin(), sums.end(), 0);
        const int rows = y_end - y;
        for (; y < y_end; ++y)
            for (int x = 0; x < src.width; ++x) {
                uint32_t rgb[3];
                rgb_at(static_cast<size_t>(y) * static_cast<size_t>(src.width) + static_cast<size_t>(x), rgb);
                uint64_t* s = &sums[3 * col_of[static_cast<size_t>(x)]];
                s[0] += rgb[0], s[1] += rgb[1], s[2] += rgb[2];
            }
        for (int ox = 0; ox < out.width; ++ox) {
            const int64_t x0 = (static_cast<int64_t>(ox) * src.width + out.width - 1) / out.width;
            const int64_t x1 = (static_cast<int64_t>(ox + 1) * src.width + out.width - 1) / out.width;
            const uint64_t n = static_cast<uint64_t>(std::max<int64_t>(1, (x1 - x0) * rows));
            for (int ch = 0; ch < 3; ++ch)
                out.pixels[(static_cast<size_t>(oy) * static_cast<size_t>(out.width) + static_cast<size_t>(ox)) * 3 +
                           static_cast<size_t>(ch)] = static_cast<uint8_t>((sums[3 * static_cast<size_t>(ox) + static_cast<size_t>(ch)] + n / 2) / n);
        }
    }
    return out;
}

/// Writes the image as an 8-bit RGB PNG file; errc::io naming the path on failure.
inline void save_png(const std::string& path, const rgb_image& img) {
    const std::vector<uint8_t> png = encode_png(img);
    std::ofstream out(path, std::ios::binary);
    if (!out) ZEROCLIP_THROW(errc::io, path + ": cannot open for writing");
    out.write(reinterpret_cast<const char*>(png.data()), static_cast<std::streamsize>(png.size()));
    out.close();
    if (!out) ZEROCLIP_THROW(errc::io, path + ": write failed");
}

}  // namespace zeroclip
