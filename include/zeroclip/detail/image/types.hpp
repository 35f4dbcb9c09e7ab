//! The public image types of image.hpp (which includes this): Pillow's modes, a decoded image in
//! its original mode, an 8-bit RGB image. Here, below image.hpp, so the decoders and the resize
//! (detail/image/decode.hpp, resize.hpp) can use them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

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
    std::vector<uint8_t> pixels;
    /// Mode "I" only: one value per pixel (0..65535 as decoded; resizing can over/undershoot).
    std::vector<int32_t> values;
};

/// An 8-bit RGB image, HWC, rows top to bottom: `pixels.size() == width * height * 3`.
struct rgb_image {
    int width = 0;
    int height = 0;
    std::vector<uint8_t> pixels;
};

}  // namespace zeroclip
