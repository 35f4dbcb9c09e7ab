// Tests of the fuzzing support (safetensors from memory) and regression tests for the bugs the
// libFuzzer targets (tests/fuzz/) found, each rebuilt from its minimised crasher so that the unit
// suite catches a regression without clang.
#include <zeroclip/io/npy.hpp>
#include <zeroclip/io/safetensors.hpp>
#include <zeroclip/image.hpp>

#include <cstring>

#include <doctest/doctest.h>

using namespace zeroclip;

namespace {

// A version-1 .npy file: the header dict padded with spaces to a 64-byte boundary, then `data`.
std::vector<unsigned char> npy_bytes(const std::string& dict, const std::string& data) {
    std::string header = dict;
    header.append(63 - (10 + header.size()) % 64, ' ');
    header += '\n';
    std::string file = std::string("\x93NUMPY\x01\x00", 8);
    file += static_cast<char>(header.size() & 0xff);
    file += static_cast<char>(header.size() >> 8);
    file += header + data;
    return std::vector<unsigned char>(file.begin(), file.end());
}

}  // namespace

TEST_CASE("fuzz finding: an int64 .npy value outside int32 is refused by to_int32, not wrapped") {
    int64_t big = int64_t{7740070000000};
    std::string data(8, '\0');
    std::memcpy(data.data(), &big, 8);
    const auto bytes = npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }", data);
    const npy_array a = detail::parse_npy(bytes.data(), bytes.size(), "tokens.npy");
    try {
        (void)a.to_int32();
        FAIL("an out-of-range token id was converted");
    } catch (const zeroclip::error& e) {
        CHECK(e.code() == errc::format);
        CHECK_MESSAGE(std::string(e.what()).find("7740070000000") != std::string::npos, e.what());
    }
    // In range, including the extremes, still converts exactly.
    const int64_t edge[2] = {-2147483648LL, 2147483647LL};
    data.assign(reinterpret_cast<const char*>(edge), 16);
    const auto ok = npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", data);
    const token_tensor t = detail::parse_npy(ok.data(), ok.size(), "tokens.npy").to_int32();
    CHECK(t[0] == INT32_MIN);
    CHECK(t[1] == INT32_MAX);
}

TEST_CASE("safetensors_file::from_bytes (the fuzz entry point) validates like open() and keeps its bytes") {
    // 8192 BF16 values span whole pages: converting them must not release (zero) held memory.
    const size_t n = 8192;
    std::string header = "{\"w\":{\"dtype\":\"BF16\",\"shape\":[" + std::to_string(n) + "],\"data_offsets\":[0," +
                         std::to_string(2 * n) + "]}}";
    std::vector<unsigned char> file(8);
    for (int i = 0; i < 8; ++i) file[static_cast<size_t>(i)] = static_cast<unsigned char>(header.size() >> (8 * i));
    file.insert(file.end(), header.begin(), header.end());
    for (size_t i = 0; i < n; ++i) {  // bf16 of 1 + i % 7: the upper half of the float's bits
        const float v = 1.0f + static_cast<float>(i % 7);
        uint32_t bits;
        std::memcpy(&bits, &v, 4);
        file.push_back(static_cast<unsigned char>((bits >> 16) & 0xff));
        file.push_back(static_cast<unsigned char>(bits >> 24));
    }
    const auto f = safetensors_file::from_bytes(file, "mem.safetensors");
    for (int pass = 0; pass < 2; ++pass) {
        const tensor t = f.to_float(f.record("w"));
        REQUIRE(t.numel() == static_cast<int64_t>(n));
        for (size_t i = 0; i < n; i += 997) CHECK(t[static_cast<int64_t>(i)] == 1.0f + static_cast<float>(i % 7));
    }
    file.resize(file.size() - 1);  // truncated: the same error as from a file, naming the name given
    try {
        (void)safetensors_file::from_bytes(file, "mem.safetensors");
        FAIL("a truncated safetensors buffer was accepted");
    } catch (const zeroclip::error& e) {
        CHECK(e.code() == errc::format);
        CHECK_MESSAGE(std::string(e.what()).find("mem.safetensors") != std::string::npos, e.what());
    }
}

TEST_CASE("fuzz finding: a PNG chunk longer than the file is refused before stb_image allocates it") {
    // fuzz_image: a 127-byte PNG whose IDAT declared 2046820370 bytes made stb_image reserve that
    // much before failing (10 s and 260 MB under ASan). Rebuilt here from a valid 2x2 PNG.
    const rgb_image img{2, 2, std::vector<std::uint8_t>(12, 200)};
    std::vector<std::uint8_t> png = encode_png(img);
    const std::string bytes(png.begin(), png.end());
    const size_t idat = bytes.find("IDAT");
    REQUIRE(idat != std::string::npos);
    std::vector<std::uint8_t> bad = png;
    const std::uint8_t huge[4] = {0x7a, 0x00, 0x00, 0x12};
    std::memcpy(bad.data() + idat - 4, huge, 4);
    try {
        (void)decode_image_memory(bad.data(), bad.size(), "bomb.png");
        FAIL("a PNG chunk past the end of the file was accepted");
    } catch (const zeroclip::error& e) {
        CHECK(e.code() == errc::image_decode);
        CHECK_MESSAGE(std::string(e.what()).find("bomb.png: cannot decode PNG image: chunk at byte 33 declares 2046820370 bytes") != std::string::npos, e.what());
    }
    // stb stops at IEND without reading its length: a bad IEND length is not a reason to refuse.
    std::vector<std::uint8_t> odd_end = png;
    const size_t iend = bytes.find("IEND");
    REQUIRE(iend != std::string::npos);
    odd_end[iend - 1] = 0x40;
    const decoded_image ok = decode_image_memory(odd_end.data(), odd_end.size(), "end.png");
    CHECK(ok.width == 2);
    CHECK(ok.pixels == std::vector<std::uint8_t>(12, 200));
}
