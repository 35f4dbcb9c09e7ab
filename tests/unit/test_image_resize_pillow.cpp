// resize_image against Pillow itself, not against zeroclip's own crop: for every lossless fixture
// (every mode: RGB, L, P, RGBA, I), the full resize to the geometry of the manifest, cropped at the
// manifest's offsets and converted to RGB, equals Pillow's crop (images/preprocessed/NAME_N.npy)
// exactly. preprocess_crop, which resizes only the crop window, is checked against the same files
// in test_image.cpp.
#include <zeroclip/image.hpp>
#include <zeroclip/io/npy.hpp>

#include <nlohmann/json.hpp>

#include <fstream>

#include "../test_util.hpp"

TEST_CASE("image: resize_image, cropped, equals Pillow's resize and crop for every lossless fixture") {
    const std::string images = test_util::fixtures() + "/images/";
    if (!test_util::have_fixture(images + "manifest.json")) return;
    const auto manifest = nlohmann::json::parse(std::ifstream(images + "manifest.json"));
    int compared = 0;
    for (const auto& entry : manifest["images"]) {
        const std::string name = entry["name"];
        if (entry["format"] == "JPEG") continue;  // stb's JPEG decoder differs from libjpeg-turbo's
        CAPTURE(name);
        const zeroclip::decoded_image im = zeroclip::decode_image_file(images + name);
        for (const int n : {224, 64}) {
            CAPTURE(n);
            const auto& geometry = entry["geometry"][std::to_string(n)];
            const int width = geometry["resized_wh"][0], height = geometry["resized_wh"][1];
            const int left = geometry["crop_left_top"][0], top = geometry["crop_left_top"][1];
            const zeroclip::rgb_image full = zeroclip::to_rgb(zeroclip::resize_image(im, width, height));
            REQUIRE(full.width == width);
            REQUIRE(full.height == height);
            const zeroclip::npy_array pillow =
                zeroclip::load_npy(images + "preprocessed/" + name.substr(0, name.rfind('.')) + "_" + std::to_string(n) + ".npy");
            REQUIRE(pillow.shape == zeroclip::shape_t{n, n, 3});
            int differing = 0;
            for (int y = 0; y < n; ++y)
                for (int x = 0; x < n; ++x)
                    for (int c = 0; c < 3; ++c)
                        differing += full.pixels[(static_cast<size_t>(y + top) * static_cast<size_t>(width) +
                                                  static_cast<size_t>(x + left)) * 3 + static_cast<size_t>(c)] !=
                                     pillow.bytes[(static_cast<size_t>(y) * static_cast<size_t>(n) + static_cast<size_t>(x)) * 3 +
                                                  static_cast<size_t>(c)];
            CHECK_MESSAGE(differing == 0, differing << " samples differ from Pillow's");
            ++compared;
        }
    }
    CHECK(compared == 18);  // 9 lossless fixtures at 224 and 64
}
