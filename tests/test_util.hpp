// Helpers shared by the test files: fixture paths, the fixtures' reference outputs and comparisons
// with stated tolerances.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>
#include <sys/mman.h>
#include <unistd.h>
#include <zeroclip/io/npy.hpp>
#include <zeroclip/tensor.hpp>

namespace test_util {

/// The shared fixtures folder: $ZEROCLIP_FIXTURES, else the one CMake was configured with.
inline std::string fixtures() {
    if (const char* env = std::getenv("ZEROCLIP_FIXTURES")) return env;
    return ZEROCLIP_FIXTURES_DIR;
}

/// True in CI (CI=true or CI=1): there a missing fixture or tool fails the test instead of skipping it.
inline bool in_ci() {
    const char* ci = std::getenv("CI");
    return ci && (std::string(ci) == "true" || std::string(ci) == "1");
}

/// Printed (in a doctest MESSAGE line) by a test case that skips itself: ctest marks such a case
/// skipped (SKIP_REGULAR_EXPRESSION in tests/CMakeLists.txt) and scripts/test.sh counts the lines.
#define ZEROCLIP_TEST_SKIP_MARK "zeroclip-test-skipped: "

/// Whether the file or folder `path` exists. When it does not: in CI the test case fails here;
/// elsewhere the skip is printed (and counted) and false is returned, for the caller to return.
inline bool have_fixture(const std::string& path) {
    if (::access(path.c_str(), F_OK) == 0) return true;
    if (in_ci()) FAIL("fixture " << path << " not found (ZEROCLIP_FIXTURES or -DZEROCLIP_FIXTURES_DIR names the fixtures folder)");
    MESSAGE(ZEROCLIP_TEST_SKIP_MARK "fixture " << path << " not found (set ZEROCLIP_FIXTURES to the fixtures folder)");
    return false;
}

inline std::string source_dir() { return ZEROCLIP_SOURCE_DIR; }

/// Bytes of the pages of [p, p + bytes) that are resident in memory (mincore): what a tensor's
/// values cost, unlike the process's RSS untouched by other tests.
inline size_t resident_bytes(const void* p, size_t bytes) {
    const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    const uintptr_t first = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
    const size_t pages = (reinterpret_cast<uintptr_t>(p) + bytes - first + page - 1) / page;
    std::vector<unsigned char> in_core(pages);
    if (::mincore(reinterpret_cast<void*>(first), pages * page, in_core.data()) != 0) return SIZE_MAX;
    const auto resident = std::count_if(in_core.begin(), in_core.end(), [](unsigned char c) { return c & 1; });
    return static_cast<size_t>(resident) * page;
}

/// A fixture model's official float64 outputs (models/<model>/reference.npz) and the inputs they
/// were computed from.
struct reference {
    zeroclip::tensor pixels;
    zeroclip::token_tensor tokens;
    std::map<std::string, zeroclip::npy_array> arrays;
    zeroclip::tensor f64(const std::string& name) const { return arrays.at(name).to_float(); }
};

inline reference load_reference(const std::string& model) {
    reference r;
    r.pixels = zeroclip::load_npz(fixtures() + "/images/pixel_values_64.npz").at("pixel_values").to_float();
    r.arrays = zeroclip::load_npz(fixtures() + "/models/" + model + "/reference.npz");
    r.tokens = r.arrays.at("text_tokens").to_int32();
    return r;
}

/// A fresh scratch folder for one test, removed by the OS's tmp cleaning (names are unique).
inline std::string temp_dir(const std::string& tag) {
    std::string tmpl = "/tmp/zeroclip_test_" + tag + "_XXXXXX";
    if (!mkdtemp(tmpl.data())) FAIL("cannot create a temp folder");
    return tmpl;
}

/// True when every element is finite (no NaN, no infinity).
template <class A>
bool all_finite(const A& a) {
    for (int64_t i = 0; i < a.numel(); ++i)
        if (!std::isfinite(static_cast<double>(a[i]))) return false;
    return true;
}

/// Largest |a - b| over all elements (shapes must match); +infinity as soon as either side holds a
/// NaN or an infinity, so that a kernel writing NaN fails every `<= limit` check (std::max would
/// drop the NaN and report 0).
template <class A, class B>
double max_abs_diff(const A& a, const B& b) {
    REQUIRE(a.numel() == b.numel());
    double worst = 0;
    for (int64_t i = 0; i < a.numel(); ++i) {
        const double x = static_cast<double>(a[i]), y = static_cast<double>(b[i]);
        if (!std::isfinite(x) || !std::isfinite(y)) return HUGE_VAL;
        worst = std::max(worst, std::abs(x - y));
    }
    return worst;
}

/// Largest |a| over all elements; +infinity when any is NaN or infinite.
template <class A>
double max_abs(const A& a) {
    double worst = 0;
    for (int64_t i = 0; i < a.numel(); ++i) {
        const double x = static_cast<double>(a[i]);
        if (!std::isfinite(x)) return HUGE_VAL;
        worst = std::max(worst, std::abs(x));
    }
    return worst;
}

/// max |a - ref| / max(1, max |ref|): the fixtures README's measure for raw activations and
/// embeddings; +infinity when either side is not finite.
template <class A, class B>
double relative_error(const A& a, const B& ref) {
    const double diff = max_abs_diff(a, ref);
    if (diff == HUGE_VAL) return HUGE_VAL;
    return diff / std::max(1.0, max_abs(ref));
}

/// 1 - cosine similarity of rows `row` of a and b (width w); +infinity when a value is not finite
/// or a row is all zeros.
template <class A, class B>
double one_minus_cos(const A& a, const B& b, int64_t row, int64_t w) {
    double dot = 0, na = 0, nb = 0;
    for (int64_t i = 0; i < w; ++i) {
        double x = a[row * w + i], y = b[row * w + i];
        dot += x * y, na += x * x, nb += y * y;
    }
    const double result = 1.0 - dot / std::sqrt(na * nb);
    return std::isfinite(result) ? result : HUGE_VAL;
}

/// The 54-byte header of a 24-bit BMP declaring `width` x `height` (a negative height is
/// top-down), with no pixels: what the hostile-size tests feed the decoders.
inline std::vector<uint8_t> bmp_header(int32_t width, int32_t height) {
    std::vector<uint8_t> bmp(54, 0);
    bmp[0] = 'B';
    bmp[1] = 'M';
    auto put32 = [&](size_t at, uint32_t v) {
        for (size_t i = 0; i < 4; ++i) bmp[at + i] = static_cast<uint8_t>(v >> (8 * i));
    };
    put32(10, 54);  // pixel data offset
    put32(14, 40);  // BITMAPINFOHEADER
    put32(18, static_cast<uint32_t>(width));
    put32(22, static_cast<uint32_t>(height));
    bmp[26] = 1;   // planes
    bmp[28] = 24;  // bits per pixel
    return bmp;
}

}  // namespace test_util
