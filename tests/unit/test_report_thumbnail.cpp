// What the HTML report builds on in the library: make_thumbnail (box-filtered preview of a decoded
// image in any mode), encode_jpeg, and embed_image_files' on_decoded hook (the decoded image of
// each file, once, without a second decode; failed files never reach it).
#include <zeroclip/zeroclip.hpp>

#include <cstdio>
#include <filesystem>
#include <mutex>

#include "../test_util.hpp"

using namespace zeroclip;

namespace {

decoded_image make(int w, int h, pixel_mode mode) {
    decoded_image im;
    im.width = w, im.height = h, im.mode = mode;
    if (mode == pixel_mode::i) im.values.assign(static_cast<size_t>(w * h), 0);
    else im.pixels.assign(static_cast<size_t>(w * h * pixel_mode_channels(mode)), 0);
    return im;
}

const uint8_t* px(const rgb_image& im, int x, int y) { return &im.pixels[static_cast<size_t>((y * im.width + x) * 3)]; }

}  // namespace

TEST_CASE("make_thumbnail: longest side capped, aspect kept, each pixel the mean of what it covers") {
    // 400x200 RGB: left half red, right half blue, except one 10x10 white block at the top left.
    decoded_image im = make(400, 200, pixel_mode::rgb);
    for (int y = 0; y < 200; ++y)
        for (int x = 0; x < 400; ++x) {
            uint8_t* p = &im.pixels[static_cast<size_t>((y * 400 + x) * 3)];
            const bool white = x < 10 && y < 10;
            p[0] = white ? 255 : x < 200 ? 200 : 0;
            p[1] = white ? 255 : 0;
            p[2] = white ? 255 : x < 200 ? 0 : 100;
        }
    const rgb_image t = make_thumbnail(im, 160);
    CHECK(t.width == 160);
    CHECK(t.height == 80);
    REQUIRE(t.pixels.size() == 160u * 80u * 3u);
    // Output pixel (0,0) covers source [0,2.5)x[0,2.5): whole pixels 0..2 of each axis (9 white).
    CHECK(px(t, 0, 0)[1] == 255);
    CHECK(px(t, 40, 40)[0] == 200);
    CHECK(px(t, 40, 40)[2] == 0);
    CHECK(px(t, 120, 40)[0] == 0);
    CHECK(px(t, 120, 40)[2] == 100);
    // Over the whole thumbnail the mean red stays the source's mean (box filter, no drift).
    double red = 0;
    for (int y = 0; y < t.height; ++y)
        for (int x = 0; x < t.width; ++x) red += px(t, x, y)[0];
    CHECK(red / (t.width * t.height) == doctest::Approx((200.0 * 200 * 200 - 100 * 200 + 100 * 255) / (400 * 200)).epsilon(0.01));
}

TEST_CASE("make_thumbnail: small images keep their size, every mode becomes RGB") {
    decoded_image grey = make(30, 20, pixel_mode::l);
    std::fill(grey.pixels.begin(), grey.pixels.end(), 77);
    rgb_image t = make_thumbnail(grey, 160);
    CHECK(t.width == 30);
    CHECK(t.height == 20);
    CHECK(px(t, 5, 5)[0] == 77);
    CHECK(px(t, 5, 5)[2] == 77);

    decoded_image tall = make(50, 1000, pixel_mode::rgba);
    for (size_t k = 0; k < tall.pixels.size(); k += 4) tall.pixels[k] = 10, tall.pixels[k + 1] = 20, tall.pixels[k + 2] = 30, tall.pixels[k + 3] = 0;
    t = make_thumbnail(tall, 160);
    CHECK(t.height == 160);
    CHECK(t.width == 8);
    CHECK(px(t, 3, 100)[0] == 10);  // alpha dropped, as convert("RGB")
    CHECK(px(t, 3, 100)[2] == 30);

    decoded_image sixteen = make(400, 4, pixel_mode::i);
    std::fill(sixteen.values.begin(), sixteen.values.end(), 40000);  // clipped to 255
    t = make_thumbnail(sixteen, 100);
    CHECK(t.width == 100);
    CHECK(t.height == 1);
    CHECK(px(t, 50, 0)[1] == 255);

    decoded_image line = make(5000, 1, pixel_mode::la);
    t = make_thumbnail(line, 160);
    CHECK(t.width == 160);
    CHECK(t.height == 1);  // never zero

    CHECK_THROWS_AS(make_thumbnail(grey, 0), zeroclip::error);
    CHECK_THROWS_AS(make_thumbnail(decoded_image{}, 160), zeroclip::error);
}

TEST_CASE("encode_jpeg: decodes back to the same size and about the same colours") {
    rgb_image img{64, 32, std::vector<uint8_t>(64 * 32 * 3)};
    for (size_t k = 0; k < img.pixels.size(); k += 3) img.pixels[k] = 30, img.pixels[k + 1] = 140, img.pixels[k + 2] = 220;
    const std::vector<uint8_t> jpeg = encode_jpeg(img, 75);
    REQUIRE(jpeg.size() > 4);
    CHECK(jpeg[0] == 0xFF);
    CHECK(jpeg[1] == 0xD8);
    const decoded_image back = decode_image_memory(jpeg.data(), jpeg.size(), "thumbnail.jpg");
    CHECK(back.format == "JPEG");
    CHECK(back.width == 64);
    CHECK(back.height == 32);
    const rgb_image rgb = to_rgb(back);
    CHECK(std::abs(int(px(rgb, 10, 10)[0]) - 30) <= 4);
    CHECK(std::abs(int(px(rgb, 10, 10)[1]) - 140) <= 4);
    CHECK(std::abs(int(px(rgb, 10, 10)[2]) - 220) <= 4);
    CHECK_THROWS_AS(encode_jpeg(rgb_image{2, 2, std::vector<uint8_t>(5)}), zeroclip::error);
}

TEST_CASE("embed_image_files: on_decoded sees each decoded file once, by index, and failures never") {
    model m = load_model(test_util::source_dir() + "/examples/models/zeroclip-toy-vit.safetensors");
    const std::string images = test_util::source_dir() + "/examples/images/";
    const std::string broken = (std::filesystem::temp_directory_path() / "zeroclip_on_decoded_broken.png").string();
    {
        std::FILE* f = std::fopen(broken.c_str(), "wb");
        REQUIRE(f);
        std::fputs("not an image", f);
        std::fclose(f);
    }
    const std::vector<std::string> files = {images + "black_cross.png", broken, images + "red_square.png",
                                            images + "blue_square.png", images + "black_heart.png"};
    std::mutex lock;
    std::vector<int> calls(files.size(), 0);
    std::vector<std::pair<int, int>> sizes(files.size());
    file_batch_options options;
    options.batch = 2;
    options.threads = 3;
    options.on_decoded = [&](size_t i, const decoded_image& im) {
        std::lock_guard<std::mutex> guard(lock);
        ++calls.at(i);
        sizes[i] = {im.width, im.height};
    };
    const file_embeddings with_hook = embed_image_files(m, files, options);
    std::remove(broken.c_str());
    CHECK(calls == std::vector<int>{1, 0, 1, 1, 1});
    for (size_t i : {0u, 2u, 3u, 4u}) {
        const decoded_image direct = decode_image_file(files[i]);
        CHECK(sizes[i] == std::make_pair(direct.width, direct.height));
    }
    CHECK(with_hook.errors[1] != "");
    // The hook changes nothing in the results.
    options.on_decoded = nullptr;
    std::vector<std::string> good = {files[0], files[2], files[3], files[4]};
    const file_embeddings plain = embed_image_files(m, good, options);
    const int64_t d = plain.embeddings.dim(1);
    float max_diff = 0;
    for (int64_t r = 0; r < 4; ++r) {
        const int64_t src = r == 0 ? 0 : r + 1;  // row 1 of with_hook is the broken file
        for (int64_t c = 0; c < d; ++c)
            max_diff = std::max(max_diff, std::abs(with_hook.embeddings[src * d + c] - plain.embeddings[r * d + c]));
    }
    CHECK(max_diff < 1e-5f);  // batches are cut differently, so not necessarily bit-identical
}
