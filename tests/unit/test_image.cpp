// Image decoding and CLIP preprocessing (issue 4): crops equal to Pillow's for the shared
// fixtures and for tests/data/images (every mode and format, made by scripts/make_image_refs.py),
// normalised tensors equal to pixel_values_64.npz bit for bit, clean failures, and a fixed-seed
// fuzz run over mutated files.

// A program's own stb_image, included first and implemented in this very translation unit:
// zeroclip's private copy must neither clash with it nor be affected by its settings.
#if __has_include(<stb/stb_image.h>)
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>
#define ZEROCLIP_TEST_HAS_USER_STB 1
#endif

#include <doctest/doctest.h>

#include <zeroclip/image.hpp>
#include <zeroclip/io/npy.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "../test_util.hpp"

namespace {

const std::string fixtures_images = test_util::fixtures() + "/images/";
const std::string local_images = std::string(ZEROCLIP_SOURCE_DIR) + "/tests/data/images/";

/// Whether every fixture file `names` (under images/) exists; when one is missing the test case
/// fails in CI and is reported skipped elsewhere (test_util::have_fixture).
bool have_fixtures(std::initializer_list<const char*> names) {
    for (const char* name : names)
        if (!test_util::have_fixture(fixtures_images + name)) return false;
    return true;
}

std::vector<std::uint8_t> read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE_MESSAGE(in.good(), "cannot read " << path);
    return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), {});
}

std::string temp_path(const std::string& name) {
    return (std::filesystem::temp_directory_path() / ("zeroclip_test_image_" + name)).string();
}

void write_bytes(const std::string& path, const std::vector<std::uint8_t>& bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

struct diff_stats {
    std::size_t samples = 0;  // differing uint8 samples
    std::size_t pixels = 0;   // pixels with any differing sample
    int max = 0;
};

diff_stats compare(const std::vector<std::uint8_t>& a, const std::vector<std::uint8_t>& b) {
    REQUIRE(a.size() == b.size());
    diff_stats d;
    for (std::size_t i = 0; i < a.size(); i += 3) {
        bool any = false;
        for (std::size_t c = 0; c < 3; ++c) {
            const int v = std::abs(static_cast<int>(a[i + c]) - static_cast<int>(b[i + c]));
            if (v) {
                ++d.samples;
                any = true;
                d.max = std::max(d.max, v);
            }
        }
        d.pixels += any;
    }
    return d;
}

std::vector<std::uint8_t> npy_u8(const zeroclip::npy_array& a) {
    REQUIRE(a.descr == "|u1");
    return a.bytes;
}

template <class F>
zeroclip::errc error_code_of(F&& f, std::string* message = nullptr) {
    try {
        f();
    } catch (const zeroclip::error& e) {
        if (message) *message = e.what();
        return e.code();
    }
    FAIL("expected a zeroclip::error");
    return zeroclip::errc::format;
}

}  // namespace

TEST_CASE("image: crop geometry follows torchvision (and Hugging Face with floor_crop)") {
    zeroclip::preprocess_options o;
    o.size = 64;
    auto g = zeroclip::compute_crop_geometry(80, 60, o);  // gray16.png: excess 21 -> 10 (half to even)
    CHECK(g.resized_width == 85);
    CHECK(g.resized_height == 64);
    CHECK(g.left == 10);
    CHECK(g.top == 0);
    o.size = 224;
    g = zeroclip::compute_crop_geometry(640, 427, o);  // int(224 * 640 / 427) = 335, excess 111 -> 56
    CHECK(g.resized_width == 335);
    CHECK(g.left == 56);
    o.floor_crop = true;
    CHECK(zeroclip::compute_crop_geometry(640, 427, o).left == 55);
    o.floor_crop = false;
    o.size = 10;
    CHECK(zeroclip::compute_crop_geometry(10, 33, o).top == 12);  // 11.5 -> 12
    CHECK(zeroclip::compute_crop_geometry(10, 31, o).top == 10);  // 10.5 -> 10
    CHECK(zeroclip::compute_crop_geometry(1, 1, o).resized_width == 10);
    o.size = 0;
    CHECK(error_code_of([&] { zeroclip::compute_crop_geometry(5, 5, o); }) == zeroclip::errc::invalid_argument);
}

TEST_CASE("image: fixture crops equal Pillow's (PNG exactly, JPEG within the decoder difference)") {
    if (!have_fixtures({"manifest.json"})) return;
    const auto manifest = nlohmann::json::parse(std::ifstream(fixtures_images + "manifest.json"));
    std::ostringstream summary;
    for (const auto& entry : manifest["images"]) {
        const std::string name = entry["name"];
        const std::string stem = name.substr(0, name.rfind('.'));
        CAPTURE(name);
        const zeroclip::decoded_image im = zeroclip::decode_image_file(fixtures_images + name);
        CHECK(im.width == entry["width"].get<int>());
        CHECK(im.height == entry["height"].get<int>());
        CHECK(std::string(zeroclip::pixel_mode_name(im.mode)) == entry["pil_mode"].get<std::string>());
        CHECK(im.format == entry["format"].get<std::string>());
        const bool jpeg = im.format == "JPEG";

        // Mean of the decoded image as convert('RGB'): exact for lossless formats.
        const zeroclip::rgb_image rgb = zeroclip::to_rgb(im);
        for (int c = 0; c < 3; ++c) {
            double sum = 0;
            for (std::size_t i = static_cast<std::size_t>(c); i < rgb.pixels.size(); i += 3) sum += rgb.pixels[i];
            const double mean = sum / (static_cast<double>(rgb.pixels.size()) / 3);
            CHECK(std::abs(mean - entry["decoded_rgb_mean"][static_cast<std::size_t>(c)].get<double>()) <
                  (jpeg ? 0.2 : 1e-5));
        }

        for (int n : {224, 64}) {
            CAPTURE(n);
            zeroclip::preprocess_options o;
            o.size = n;
            const auto g = zeroclip::compute_crop_geometry(im.width, im.height, o);
            const auto& geo = entry["geometry"][std::to_string(n)];
            CHECK(g.resized_width == geo["resized_wh"][0].get<int>());
            CHECK(g.resized_height == geo["resized_wh"][1].get<int>());
            CHECK(g.left == geo["crop_left_top"][0].get<int>());
            CHECK(g.top == geo["crop_left_top"][1].get<int>());

            const zeroclip::rgb_image crop = zeroclip::preprocess_crop(im, o);
            REQUIRE(crop.width == n);
            REQUIRE(crop.height == n);
            const auto ref = npy_u8(zeroclip::load_npy(fixtures_images + "preprocessed/" + stem + "_" +
                                                        std::to_string(n) + ".npy"));
            const diff_stats d = compare(crop.pixels, ref);
            summary << "\n  " << name << " @" << n << ": " << d.pixels << " pixels / " << d.samples
                    << " samples differ, max " << d.max;
            if (jpeg) {
                CHECK(d.max <= 3);
                CHECK(d.samples * 20 < crop.pixels.size());
            } else {
                CHECK(d.samples == 0);
            }
        }
    }
    MESSAGE("crops vs Pillow's:" << summary.str());
}

TEST_CASE("image: stb's JPEG decode is within a few levels of libjpeg-turbo's") {
    if (!have_fixtures({"rocket.jpg", "preprocessed/rocket_decoded_y200_x150_128.npy"})) return;
    const auto im = zeroclip::decode_image_file(fixtures_images + "rocket.jpg");
    const auto window = zeroclip::load_npy(fixtures_images + "preprocessed/rocket_decoded_y200_x150_128.npy");
    REQUIRE(window.shape == zeroclip::shape_t{128, 128, 3});
    std::vector<std::uint8_t> ours;
    for (int y = 200; y < 328; ++y)
        for (int x = 150; x < 278; ++x)
            for (int c = 0; c < 3; ++c)
                ours.push_back(im.pixels[(static_cast<std::size_t>(y) * static_cast<std::size_t>(im.width) + static_cast<std::size_t>(x)) * 3 + static_cast<std::size_t>(c)]);
    const diff_stats d = compare(ours, window.bytes);
    MESSAGE("rocket.jpg decode, 128x128 window: " << d.pixels << " pixels / " << d.samples
                                                  << " samples differ from Pillow's, max " << d.max << " levels");
    CHECK(d.max <= 4);
    CHECK(d.samples * 4 < ours.size());
}

TEST_CASE("image: normalised tensors equal pixel_values_64.npz bit for bit") {
    if (!have_fixtures({"pixel_values_64.npz"})) return;
    auto npz = zeroclip::load_npz(fixtures_images + "pixel_values_64.npz");
    const auto names = npz.at("names").to_strings();
    const zeroclip::tensor pixels = npz.at("pixel_values").to_float();
    REQUIRE(pixels.shape() == zeroclip::shape_t{static_cast<std::int64_t>(names.size()), 3, 64, 64});
    zeroclip::preprocess_options o;
    o.size = 64;
    const std::size_t row = 3 * 64 * 64;
    for (std::size_t i = 0; i < names.size(); ++i) {
        CAPTURE(names[i]);
        const float* ref = pixels.data() + i * row;
        // Pillow's own crop, normalised here: must be bit-identical (ToTensor + Normalize).
        const std::string stem = names[i].substr(0, names[i].rfind('.'));
        zeroclip::rgb_image pil_crop{64, 64, npy_u8(zeroclip::load_npy(fixtures_images + "preprocessed/" + stem + "_64.npy"))};
        const std::vector<float> from_pil = zeroclip::normalize(pil_crop, o.mean, o.stddev);
        CHECK(std::memcmp(from_pil.data(), ref, row * sizeof(float)) == 0);
        // The whole pipeline from the file.
        const std::vector<float> ours = zeroclip::load_image_tensor(fixtures_images + names[i], o);
        REQUIRE(ours.size() == row);
        float max_err = 0;
        for (std::size_t k = 0; k < row; ++k) max_err = std::max(max_err, std::abs(ours[k] - ref[k]));
        if (names[i] == "rocket.jpg") CHECK(max_err <= 3.0f / 255.0f / 0.26f + 1e-5f);
        else CHECK(std::memcmp(ours.data(), ref, row * sizeof(float)) == 0);
    }
    // The batch API lays the same rows out as [N, 3, n, n].
    std::vector<std::string> paths{fixtures_images + names[0], fixtures_images + names[1]};
    const zeroclip::tensor batch = zeroclip::load_image_batch(paths, o);
    REQUIRE(batch.shape() == zeroclip::shape_t{2, 3, 64, 64});
    CHECK(std::memcmp(batch.data(), pixels.data(), 2 * row * sizeof(float)) == 0);
}

TEST_CASE("image: every mode and format of tests/data/images equals Pillow's crops") {
    std::ifstream cases(local_images + "cases.txt");
    REQUIRE_MESSAGE(cases.good(), "missing " << local_images << "cases.txt (scripts/make_image_refs.py)");
    auto refs = zeroclip::load_npz(local_images + "refs.npz");
    std::map<std::string, int> per_mode;
    std::string line;
    int count = 0;
    while (std::getline(cases, line)) {
        if (line.empty() || line[0] == '#') continue;
        std::istringstream fields(line);
        std::string file, order, crop, key, mode;
        int n = 0;
        fields >> file >> n >> order >> crop >> key >> mode;
        CAPTURE(line);
        const zeroclip::decoded_image im = zeroclip::decode_image_file(local_images + file);
        CHECK(std::string(zeroclip::pixel_mode_name(im.mode)) == mode);
        zeroclip::preprocess_options o;
        o.size = n;
        o.hf_order = order == "hf";
        o.floor_crop = crop == "floor";
        const zeroclip::rgb_image out = zeroclip::preprocess_crop(im, o);
        const diff_stats d = compare(out.pixels, npy_u8(refs.at(key)));
        CHECK(d.samples == 0);
        ++per_mode[mode];
        ++count;
    }
    std::string summary;
    for (const auto& [m, k] : per_mode) summary += m + ":" + std::to_string(k) + " ";
    MESSAGE(count << " generated cases, by Pillow mode: " << summary);
    CHECK(count >= 100);
}

TEST_CASE("image: resize_image is Pillow's Image.resize for a whole image") {
    zeroclip::decoded_image im;
    im.width = 5;
    im.height = 3;
    im.mode = zeroclip::pixel_mode::l;
    im.pixels = {0, 255, 0, 255, 0, 10, 20, 30, 40, 50, 255, 255, 255, 0, 0};
    const auto same = zeroclip::resize_image(im, 5, 3);
    CHECK(same.pixels == im.pixels);
    const auto big = zeroclip::resize_image(im, 9, 7);
    CHECK(big.width == 9);
    CHECK(big.height == 7);
    CHECK(big.pixels.size() == 63);
    // A window of the preprocessing equals the same window of the full resize.
    zeroclip::preprocess_options o;
    o.size = 3;
    const auto g = zeroclip::compute_crop_geometry(5, 3, o);
    const auto full = zeroclip::to_rgb(zeroclip::resize_image(im, g.resized_width, g.resized_height));
    const auto crop = zeroclip::preprocess_crop(im, o);
    for (int y = 0; y < 3; ++y)
        for (int x = 0; x < 3; ++x)
            CHECK(crop.pixels[static_cast<std::size_t>(y * 3 + x) * 3] ==
                  full.pixels[static_cast<std::size_t>((y + g.top) * g.resized_width + x + g.left) * 3]);
    CHECK(error_code_of([&] { zeroclip::resize_image(im, 0, 4); }) == zeroclip::errc::invalid_argument);
    im.pixels.pop_back();
    CHECK(error_code_of([&] { zeroclip::resize_image(im, 4, 4); }) == zeroclip::errc::invalid_argument);
}

#ifdef ZEROCLIP_RESAMPLE_SSE2
TEST_CASE("image: the SSE2 horizontal pass equals Pillow's scalar loop, up to its 512-tap limit") {
    std::mt19937 rng(3);
    int compared = 0;
    for (int trial = 0; trial < 80; ++trial) {
        const int in_w = 1 + static_cast<int>(rng() % 2500);
        const int factor = trial % 4 == 0 ? 100 + static_cast<int>(rng() % 30) : 1 + static_cast<int>(rng() % 40);
        const int out_w = trial % 5 == 0 ? in_w * 2 + 1 : std::max(1, in_w / factor);
        const auto ax = zeroclip::detail::pil_bicubic_axis(in_w, out_w, 0, out_w);
        if (ax.kpad > 512) continue;
        const int rows = 3;
        std::vector<std::uint8_t> src(static_cast<std::size_t>(in_w) * 3 * rows);
        const std::size_t row_len = static_cast<std::size_t>(in_w) * 3;
        for (std::size_t i = 0; i < src.size(); ++i)  // white (the largest sums), stripes, noise
            src[i] = i < row_len ? 255 : i < 2 * row_len ? ((i / 3) % 7 < 3 ? 255 : 0) : static_cast<std::uint8_t>(rng());
        std::vector<std::uint8_t> a(static_cast<std::size_t>(out_w) * 3 * rows), b(a.size());
        zeroclip::detail::pil_horizontal_u8_sse2<3>(src.data(), in_w * 3, rows, ax, 0, out_w, a.data());
        zeroclip::detail::pil_horizontal_u8_scalar<3>(src.data(), in_w * 3, rows, ax, 0, out_w, b.data());
        CHECK(a == b);
        zeroclip::detail::pil_horizontal_u8_sse2<1>(src.data(), in_w, rows, ax, 0, out_w, a.data());
        zeroclip::detail::pil_horizontal_u8_scalar<1>(src.data(), in_w, rows, ax, 0, out_w, b.data());
        CHECK(std::equal(a.begin(), a.begin() + out_w * rows, b.begin()));
        ++compared;
    }
    // The worst case at the limit: a white row, 2040 -> 16 (511 taps).
    const auto ax = zeroclip::detail::pil_bicubic_axis(2040, 16, 0, 16);
    CHECK(ax.kpad == 512);
    std::vector<std::uint8_t> src(2040, 255), a(16), b(16);
    zeroclip::detail::pil_horizontal_u8_sse2<1>(src.data(), 2040, 1, ax, 0, 16, a.data());
    zeroclip::detail::pil_horizontal_u8_scalar<1>(src.data(), 2040, 1, ax, 0, 16, b.data());
    CHECK(a == b);
    CHECK(compared > 40);
}
#endif

TEST_CASE("image: memory and file decoding agree, PNG round trip through save_png") {
    if (!have_fixtures({"chelsea.png"})) return;
    const auto bytes = read_bytes(fixtures_images + "chelsea.png");
    const auto a = zeroclip::decode_image_memory(bytes.data(), bytes.size(), "chelsea.png");
    const auto b = zeroclip::decode_image_file(fixtures_images + "chelsea.png");
    CHECK(a.pixels == b.pixels);
    const zeroclip::rgb_image crop = zeroclip::preprocess_crop(a, {});
    const std::string path = temp_path("roundtrip.png");
    zeroclip::save_png(path, crop);
    const auto back = zeroclip::decode_image_file(path);
    CHECK(back.mode == zeroclip::pixel_mode::rgb);
    CHECK(back.width == 224);
    CHECK(back.pixels == crop.pixels);
    std::remove(path.c_str());
    CHECK(error_code_of([&] { zeroclip::save_png("/nonexistent-dir/x.png", crop); }) == zeroclip::errc::io);
}

#ifdef ZEROCLIP_TEST_HAS_USER_STB
TEST_CASE("image: zeroclip's stb copy coexists with the program's own stb_image") {
    if (!have_fixtures({"astronaut.png"})) return;
    const auto bytes = read_bytes(fixtures_images + "astronaut.png");
    int w = 0, h = 0, c = 0;
    stbi_set_flip_vertically_on_load(1);  // the program's setting must not leak into zeroclip
    stbi_uc* theirs = stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &c, 3);
    stbi_set_flip_vertically_on_load(0);
    REQUIRE(theirs);
    const auto ours = zeroclip::decode_image_memory(bytes.data(), bytes.size());
    REQUIRE(w == ours.width);
    const std::size_t row = static_cast<std::size_t>(w) * 3;
    CHECK(std::memcmp(theirs, ours.pixels.data() + (static_cast<std::size_t>(h) - 1) * row, row) == 0);
    stbi_image_free(theirs);
}
#endif

TEST_CASE("image: failures throw zeroclip::error naming the path") {
    std::string msg;
    CHECK(error_code_of([] { zeroclip::decode_image_file("/nonexistent/zeroclip/cat.png"); }, &msg) ==
          zeroclip::errc::io);
    CHECK(msg.find("/nonexistent/zeroclip/cat.png") != std::string::npos);

    const std::string dir = std::filesystem::temp_directory_path().string();
    CHECK(error_code_of([&] { zeroclip::decode_image_file(dir); }, &msg) == zeroclip::errc::io);
    CHECK(msg.find("directory") != std::string::npos);

    const std::string empty = temp_path("empty.png");
    write_bytes(empty, {});
    CHECK(error_code_of([&] { zeroclip::decode_image_file(empty); }, &msg) == zeroclip::errc::image_decode);
    CHECK(msg.find(empty) != std::string::npos);
    std::remove(empty.c_str());

    std::vector<std::uint8_t> garbage(3000);
    std::mt19937 rng(7);
    for (auto& g : garbage) g = static_cast<std::uint8_t>(rng());
    garbage[0] = 'x';  // no accidental signature
    CHECK(error_code_of([&] { zeroclip::decode_image_memory(garbage.data(), garbage.size(), "garbage.bin"); }, &msg) ==
          zeroclip::errc::image_decode);
    CHECK(msg.find("garbage.bin") != std::string::npos);
    CHECK(msg.find("not an image in a supported format") != std::string::npos);
}

TEST_CASE("image: truncated fixture files throw zeroclip::error naming the path") {
    if (!have_fixtures({"chelsea.png", "rocket.jpg", "palette_small.png"})) return;
    std::string msg;
    for (const char* name : {"chelsea.png", "rocket.jpg", "palette_small.png"}) {
        auto bytes = read_bytes(fixtures_images + name);
        for (std::size_t keep : {bytes.size() / 2, std::size_t{40}, std::size_t{8}}) {
            CAPTURE(name);
            CAPTURE(keep);
            const std::string path = temp_path(std::string("truncated_") + name);
            write_bytes(path, std::vector<std::uint8_t>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(keep)));
            CHECK(error_code_of([&] { zeroclip::decode_image_file(path); }, &msg) == zeroclip::errc::image_decode);
            CHECK(msg.find(path) != std::string::npos);
            std::remove(path.c_str());
        }
    }
}

TEST_CASE("image: an empty IDAT chunk first is harmless (stb 2.27 passed null to memcpy)") {
    if (!have_fixtures({"tiny_1x1.png"})) return;
    auto png = read_bytes(fixtures_images + "tiny_1x1.png");
    const std::vector<std::uint8_t> empty_idat = {0, 0, 0, 0, 'I', 'D', 'A', 'T', 0x35, 0xAF, 0x06, 0x1E};
    png.insert(png.begin() + 33, empty_idat.begin(), empty_idat.end());  // right after IHDR
    const auto im = zeroclip::decode_image_memory(png.data(), png.size(), "empty_idat.png");
    CHECK(im.pixels == std::vector<std::uint8_t>{200, 120, 40});
}

TEST_CASE("image: a JPEG Huffman table with too many symbols is refused (stb 2.27 overflowed it)") {
    auto bytes = read_bytes(local_images + "seed_grey.jpg");
    std::size_t dht = 0;
    for (std::size_t i = 2; i + 1 < bytes.size(); ++i)
        if (bytes[i] == 0xFF && bytes[i + 1] == 0xC4) {
            dht = i;
            break;
        }
    REQUIRE(dht > 0);
    REQUIRE(dht + 21 < bytes.size());
    for (std::size_t i = 0; i < 16; ++i) bytes[dht + 5 + i] = 255;  // 4080 symbols declared
    std::string msg;
    CHECK(error_code_of([&] { zeroclip::decode_image_memory(bytes.data(), bytes.size(), "dht.jpg"); }, &msg) ==
          zeroclip::errc::image_decode);
    CHECK(msg.find("dht.jpg") != std::string::npos);
}

TEST_CASE("image: a PNM header number too large for int is refused (stb 2.27 overflowed it)") {
    const std::string pnm = "P6\n99999999999999 2\n255\n";
    std::vector<std::uint8_t> bytes(pnm.begin(), pnm.end());
    bytes.resize(bytes.size() + 64, 7);
    CHECK(error_code_of([&] { zeroclip::decode_image_memory(bytes.data(), bytes.size(), "big.ppm"); }) ==
          zeroclip::errc::image_decode);
}

TEST_CASE("image: declared sizes over the pixel limit are refused before decoding") {
    // A PNG header declaring 100000 x 100000 followed by no image data at all.
    std::vector<std::uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                                     0, 1, 0x86, 0xA0, 0, 1, 0x86, 0xA0, 8, 2, 0, 0, 0, 0, 0, 0, 0};
    std::string msg;
    CHECK(error_code_of([&] { zeroclip::decode_image_memory(png.data(), png.size(), "bomb.png"); }, &msg) ==
          zeroclip::errc::image_decode);
    CHECK(msg.find("100000x100000") != std::string::npos);
    CHECK(msg.find("bomb.png") != std::string::npos);

    // A BMP header declaring 100000 x -100000 (top-down).
    const std::vector<std::uint8_t> bmp = test_util::bmp_header(100000, -100000);
    CHECK(error_code_of([&] { zeroclip::decode_image_memory(bmp.data(), bmp.size(), "bomb.bmp"); }, &msg) ==
          zeroclip::errc::image_decode);
    CHECK(msg.find("100000x100000") != std::string::npos);
}

TEST_CASE("image: a real image over a lowered pixel limit is refused, and passes with the limit raised") {
    if (!have_fixtures({"rocket.jpg"})) return;
    std::string msg;
    CHECK(error_code_of([&] { zeroclip::decode_image_file(fixtures_images + "rocket.jpg", 1000); }, &msg) ==
          zeroclip::errc::image_decode);
    CHECK(msg.find("640x427") != std::string::npos);
    CHECK(zeroclip::decode_image_file(fixtures_images + "rocket.jpg", 640 * 427).width == 640);
}

TEST_CASE("image: mutated files never crash the decoder or the preprocessing (fixed seed)") {
    if (!have_fixtures({"palette_small.png", "rgba_transparent.png", "gray16.png", "tiny_1x1.png", "rocket.jpg"})) return;
    std::vector<std::pair<std::string, std::vector<std::uint8_t>>> seeds;
    for (const char* name : {"palette_small.png", "rgba_transparent.png", "gray16.png", "tiny_1x1.png", "rocket.jpg"})
        seeds.emplace_back(name, read_bytes(fixtures_images + name));
    for (const auto& entry : std::filesystem::directory_iterator(local_images)) {
        const std::string name = entry.path().filename().string();
        if (name != "cases.txt" && name != "refs.npz") seeds.emplace_back(name, read_bytes(entry.path().string()));
    }
    std::sort(seeds.begin(), seeds.end());
    REQUIRE(!seeds.empty());
    std::mt19937 rng(20240604);
    int decoded = 0, refused = 0, total = 0, bad_refusals = 0;
    const int per_seed = std::max(4, 600 / static_cast<int>(seeds.size()));
    for (const auto& [name, original] : seeds) {
        const int rounds = name == "rocket.jpg" ? 12 : per_seed;
        for (int round = 0; round < rounds; ++round) {
            std::vector<std::uint8_t> bytes = original;
            switch (rng() % 4) {
                case 0:  // flip a few bytes, mostly in the header
                case 1: {
                    const int flips = 1 + static_cast<int>(rng() % 8);
                    for (int f = 0; f < flips; ++f) {
                        const std::size_t limit = (rng() % 2) ? std::min<std::size_t>(bytes.size(), 64) : bytes.size();
                        bytes[rng() % limit] = static_cast<std::uint8_t>(rng());
                    }
                    break;
                }
                case 2:  // truncate
                    bytes.resize(1 + rng() % bytes.size());
                    break;
                default: {  // insert or delete a run
                    const std::size_t at = rng() % bytes.size();
                    if (rng() % 2) bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(at), 1 + rng() % 16, static_cast<std::uint8_t>(rng()));
                    else bytes.erase(bytes.begin() + static_cast<std::ptrdiff_t>(at), bytes.begin() + static_cast<std::ptrdiff_t>(std::min(bytes.size(), at + 1 + rng() % 16)));
                    if (bytes.empty()) bytes.push_back(0);
                }
            }
            ++total;
            const std::string& seed_file = name;  // (a structured binding cannot be captured in C++17)
            CAPTURE(seed_file);
            CAPTURE(round);
            // Every mutation is either refused with an image_decode error naming the input, or
            // decodes to a consistent image within the pixel limit, which then preprocesses
            // without error. Anything else (another exception, a crash) fails the case.
            zeroclip::decoded_image im;
            try {
                im = zeroclip::decode_image_memory(bytes.data(), bytes.size(), name, 1u << 22);
            } catch (const zeroclip::error& e) {
                ++refused;
                const bool named = std::string(e.what()).find(name) != std::string::npos;
                bad_refusals += e.code() != zeroclip::errc::image_decode || !named;
                if (e.code() != zeroclip::errc::image_decode || !named) MESSAGE("bad refusal: " << e.what());
                continue;
            }
            ++decoded;
            const std::size_t n = static_cast<std::size_t>(im.width) * static_cast<std::size_t>(im.height);
            const bool consistent =
                im.width > 0 && im.height > 0 && n <= (1u << 22) &&
                (im.mode == zeroclip::pixel_mode::i
                     ? im.values.size() == n && im.pixels.empty()
                     : im.pixels.size() == n * static_cast<std::size_t>(zeroclip::pixel_mode_channels(im.mode)));
            CHECK_MESSAGE(consistent, im.width << "x" << im.height << " mode " << zeroclip::pixel_mode_name(im.mode)
                                                << ", " << im.pixels.size() << " bytes, " << im.values.size() << " values");
            if (!consistent) continue;
            zeroclip::preprocess_options o;
            o.size = 1 + static_cast<int>(rng() % 24);
            o.hf_order = rng() % 2;
            const auto crop = zeroclip::preprocess_crop(im, o);
            CHECK(crop.width == o.size);
            CHECK(crop.height == o.size);
            CHECK(crop.pixels.size() == static_cast<std::size_t>(o.size * o.size * 3));
        }
    }
    MESSAGE(total << " mutations of " << seeds.size() << " files: " << decoded << " decoded, " << refused
                  << " refused with zeroclip::error");
    CHECK(bad_refusals == 0);
    // Both outcomes are exercised (the counts are fixed by the seed; the bounds leave room for
    // decoder changes).
    CHECK(decoded >= total / 10);
    CHECK(refused >= total / 10);
}

TEST_CASE("image: preprocess_file_into is decode, crop and normalise, and its errors name the file") {
    // A 7x5 RGB gradient written to a PNG; the public steps composed by hand are the reference.
    zeroclip::rgb_image img{7, 5, std::vector<std::uint8_t>(7 * 5 * 3)};
    for (std::size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<std::uint8_t>(i * 37 % 256);
    const std::string path = test_util::temp_dir("preprocess_into") + "/g.png";
    zeroclip::save_png(path, img);
    zeroclip::preprocess_options o;
    o.size = 4;
    const std::vector<float> want =
        zeroclip::normalize(zeroclip::preprocess_crop(zeroclip::decode_image_file(path, o), o), o.mean, o.stddev);
    std::vector<float> got(3 * 4 * 4, -1.0f);
    int calls = 0;
    zeroclip::preprocess_file_into(path, o, got.data(), [&](const zeroclip::decoded_image& im) {
        ++calls;
        CHECK(im.width == 7);
        CHECK(im.height == 5);
    });
    CHECK(calls == 1);
    CHECK(got == want);
    // An error of the crop itself (here a zero std) is told with the file's name.
    o.stddev = {0.0f, 1.0f, 1.0f};
    std::string msg;
    CHECK(error_code_of([&] { zeroclip::preprocess_file_into(path, o, got.data()); }, &msg) ==
          zeroclip::errc::invalid_argument);
    CHECK(msg.find(path) != std::string::npos);
    CHECK(msg.find("std of channel 0 is zero") != std::string::npos);
    // A missing file: the decoder's own message, naming it once.
    CHECK(error_code_of([&] { zeroclip::preprocess_file_into(path + ".missing", o, got.data()); }, &msg) ==
          zeroclip::errc::io);
    CHECK(msg.find(path + ".missing") != std::string::npos);
}
