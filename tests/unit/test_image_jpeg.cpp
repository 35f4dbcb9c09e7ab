// JPEG through libjpeg-turbo (issue 16, items 1 and 3): with Pillow's settings the decoded pixels,
// the crops and the normalised tensors equal Pillow's bit for bit; draft mode equals Pillow's
// draft() followed by the same preprocessing (references made by scripts/make_jpeg_draft_refs.py);
// truncated and corrupt files are errors naming the file. Built without libjpeg, the cases
// say so and check that draft mode falls back to the exact decode.

#include <doctest/doctest.h>

#include <zeroclip/image.hpp>
#include <zeroclip/io/npy.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#if defined(ZEROCLIP_WITH_LIBJPEG)
#include <jpeglib.h>
#endif

namespace {

const std::string jpeg_fixtures = std::string(ZEROCLIP_FIXTURES_DIR) + "/images/";
const std::string jpeg_local = std::string(ZEROCLIP_SOURCE_DIR) + "/tests/data/";

std::vector<std::uint8_t> file_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE_MESSAGE(in.good(), "cannot read " << path);
    return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), {});
}

std::size_t samples_differing(const std::vector<std::uint8_t>& a, const std::vector<std::uint8_t>& b, int* max_diff = nullptr) {
    REQUIRE(a.size() == b.size());
    std::size_t n = 0;
    int m = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        const int d = std::abs(static_cast<int>(a[i]) - static_cast<int>(b[i]));
        n += d != 0;
        m = std::max(m, d);
    }
    if (max_diff) *max_diff = m;
    return n;
}

bool pillow_exact_jpeg() {
#if defined(ZEROCLIP_WITH_LIBJPEG) && defined(LIBJPEG_TURBO_VERSION)
    return true;
#else
    return false;
#endif
}

}  // namespace

TEST_CASE("image jpeg: rocket.jpg decodes, crops and normalises exactly as Pillow with libjpeg-turbo") {
    if (!std::filesystem::exists(jpeg_fixtures + "rocket.jpg")) {
        MESSAGE("shared fixtures not found, skipped");
        return;
    }
    if (!pillow_exact_jpeg()) {
        MESSAGE("built without libjpeg-turbo (ZEROCLIP_USE_LIBJPEG off or not found): stb_image decodes JPEG, "
                "within a few levels of Pillow (test_image.cpp checks that)");
        return;
    }
    const zeroclip::decoded_image im = zeroclip::decode_image_file(jpeg_fixtures + "rocket.jpg");
    CHECK(im.mode == zeroclip::pixel_mode::rgb);
    const auto window = zeroclip::load_npy(jpeg_fixtures + "preprocessed/rocket_decoded_y200_x150_128.npy");
    std::vector<std::uint8_t> ours;
    for (int y = 200; y < 328; ++y)
        ours.insert(ours.end(), im.pixels.begin() + (static_cast<std::ptrdiff_t>(y) * im.width + 150) * 3,
                    im.pixels.begin() + (static_cast<std::ptrdiff_t>(y) * im.width + 278) * 3);
    CHECK(samples_differing(ours, window.bytes) == 0);
    for (int n : {224, 64}) {
        CAPTURE(n);
        zeroclip::preprocess_options o;
        o.size = n;
        const auto ref = zeroclip::load_npy(jpeg_fixtures + "preprocessed/rocket_" + std::to_string(n) + ".npy");
        CHECK(samples_differing(zeroclip::preprocess_crop(im, o).pixels, ref.bytes) == 0);
    }
    // The normalised row of pixel_values_64.npz, bit for bit.
    auto npz = zeroclip::load_npz(jpeg_fixtures + "pixel_values_64.npz");
    const auto names = npz.at("names").to_strings();
    const zeroclip::tensor pixels = npz.at("pixel_values").to_float();
    zeroclip::preprocess_options o;
    o.size = 64;
    for (std::size_t i = 0; i < names.size(); ++i)
        if (names[i] == "rocket.jpg") {
            const std::vector<float> t = zeroclip::load_image_tensor(jpeg_fixtures + names[i], o);
            CHECK(std::memcmp(t.data(), pixels.data() + i * t.size(), t.size() * sizeof(float)) == 0);
        }
}

TEST_CASE("image jpeg: draft mode is Pillow's draft() then the same preprocessing") {
    const bool fixtures = std::filesystem::exists(jpeg_fixtures + "rocket.jpg");
    auto refs = zeroclip::load_npz(jpeg_local + "jpeg_draft_refs.npz");
    struct jcase {
        std::string path, key;
        std::vector<int> sizes;
    };
    std::vector<jcase> cases = {{jpeg_local + "images/seed_444.jpg", "seed_444", {16, 7}},
                                {jpeg_local + "images/seed_grey.jpg", "seed_grey", {16, 7}},
                                {jpeg_local + "images/seed_progressive.jpg", "seed_progressive", {16, 7}}};
    if (fixtures) cases.push_back({jpeg_fixtures + "rocket.jpg", "rocket", {64, 32, 7}});
    int checked = 0;
    for (const jcase& c : cases)
        for (int n : c.sizes) {
            CAPTURE(c.key);
            CAPTURE(n);
            zeroclip::preprocess_options o;
            o.size = n;
            o.decode = zeroclip::decode_mode::draft;
            const zeroclip::decoded_image draft = zeroclip::decode_image_file(c.path, o);
            o.decode = zeroclip::decode_mode::exact;
            const zeroclip::decoded_image exact = zeroclip::decode_image_file(c.path, o);
            const auto exact_ref = refs.at(c.key + "_exact_" + std::to_string(n));
            const auto draft_ref = refs.at(c.key + "_draft_" + std::to_string(n));
            const auto size = refs.at(c.key + "_draft_" + std::to_string(n) + "_size");
            std::int32_t wh[2];
            std::memcpy(wh, size.bytes.data(), sizeof wh);
            if (pillow_exact_jpeg()) {
                CHECK(draft.width == wh[0]);
                CHECK(draft.height == wh[1]);
                CHECK(samples_differing(zeroclip::preprocess_crop(draft, o).pixels, draft_ref.bytes) == 0);
                CHECK(samples_differing(zeroclip::preprocess_crop(exact, o).pixels, exact_ref.bytes) == 0);
            } else {  // stb_image: no DCT scaling, draft is the exact decode
                CHECK(draft.width == exact.width);
                CHECK(draft.pixels == exact.pixels);
            }
            ++checked;
        }
    CHECK(checked >= 6);
}

TEST_CASE("image jpeg: truncated and corrupt JPEGs are errors naming the file") {
    const auto bytes = file_bytes(jpeg_local + "images/seed_444.jpg");
    std::size_t sos = 0;  // start of scan: cut inside the entropy-coded data
    for (std::size_t i = 2; i + 1 < bytes.size(); ++i)
        if (bytes[i] == 0xFF && bytes[i + 1] == 0xDA) sos = i;
    REQUIRE(sos > 0);
    for (std::size_t keep : {sos + 20, bytes.size() / 2, std::size_t{300}}) {
        CAPTURE(keep);
        const std::vector<std::uint8_t> cut(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(std::min(keep, bytes.size() - 3)));
        try {
            zeroclip::decode_image_memory(cut.data(), cut.size(), "cut.jpg");
            FAIL("a truncated JPEG decoded");
        } catch (const zeroclip::error& e) {
            CHECK(e.code() == zeroclip::errc::image_decode);
            CHECK(std::string(e.what()).find("cut.jpg") != std::string::npos);
            if (pillow_exact_jpeg()) CHECK(std::string(e.what()).find("truncated") != std::string::npos);
        }
    }
    // Missing only its EOI marker: Pillow 9.4 says "image file is truncated" too (libjpeg reads
    // ahead past the last scan's data).
    const std::vector<std::uint8_t> no_eoi(bytes.begin(), bytes.end() - 2);
    try {
        zeroclip::decode_image_memory(no_eoi.data(), no_eoi.size(), "no_eoi.jpg");
        if (pillow_exact_jpeg()) FAIL("a JPEG without EOI decoded");
    } catch (const zeroclip::error& e) {
        CHECK(std::string(e.what()).find("no_eoi.jpg") != std::string::npos);
    }
    // Garbage where the frame header should be.
    std::vector<std::uint8_t> bad = {0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x05, 0x01, 0x02, 0xFF, 0xD9};
    try {
        zeroclip::decode_image_memory(bad.data(), bad.size(), "bad.jpg");
        FAIL("a corrupt JPEG decoded");
    } catch (const zeroclip::error& e) {
        CHECK(e.code() == zeroclip::errc::image_decode);
        CHECK(std::string(e.what()).find("bad.jpg") != std::string::npos);
    }
}
