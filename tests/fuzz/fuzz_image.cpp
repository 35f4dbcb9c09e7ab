//! libFuzzer target: image decoding (every format zeroclip accepts: PNG, JPEG, GIF, BMP, PNM,
//! TGA) and CLIP preprocessing to a 32x32 crop in both OpenAI and Hugging Face order, then
//! normalisation. The pixel limit is lowered so that a decoded image stays small and fast.
#include <zeroclip/image.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    constexpr size_t max_pixels = 1u << 18;
    accept_or_refuse([&] {
        const zeroclip::decoded_image im = zeroclip::decode_image_memory(data, size, "fuzz.img", max_pixels);
        FUZZ_CHECK(im.width >= 1 && im.height >= 1);
        FUZZ_CHECK(static_cast<size_t>(im.width) * static_cast<size_t>(im.height) <= max_pixels);
        const size_t n = static_cast<size_t>(im.width) * static_cast<size_t>(im.height);
        if (im.mode == zeroclip::pixel_mode::i) FUZZ_CHECK(im.values.size() == n);
        else FUZZ_CHECK(im.pixels.size() == n * static_cast<size_t>(zeroclip::pixel_mode_channels(im.mode)));
        for (bool hf : {false, true}) {
            zeroclip::preprocess_options options;
            options.size = 32;
            options.hf_order = hf;
            options.floor_crop = hf;
            const zeroclip::rgb_image crop = zeroclip::preprocess_crop(im, options);
            FUZZ_CHECK(crop.width == 32 && crop.height == 32 && crop.pixels.size() == 32 * 32 * 3);
            const std::vector<float> x = zeroclip::normalize(crop, options.mean, options.stddev);
            for (float v : x) FUZZ_CHECK(std::isfinite(v));
        }
    });
    return 0;
}
