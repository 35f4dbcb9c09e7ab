// Regression tests for the bugs the libFuzzer targets (tests/fuzz/) found: each input is the
// minimised crasher, rebuilt here so the unit suite catches a regression without clang.
#include <zeroclip/io/npy.hpp>
#include <zeroclip/io/safetensors.hpp>

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
