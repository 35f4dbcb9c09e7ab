// Helpers shared by the test files: fixture paths, the fixtures' reference outputs and comparisons
// with stated tolerances.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <unistd.h>
#include <zeroclip/io/npy.hpp>
#include <zeroclip/tensor.hpp>

namespace test_util {

inline std::string fixtures() {
    if (const char* env = std::getenv("ZEROCLIP_FIXTURES")) return env;
    return ZEROCLIP_FIXTURES_DIR;
}

inline std::string source_dir() { return ZEROCLIP_SOURCE_DIR; }

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

/// Largest |a - b| over all elements (shapes must match).
template <class A, class B>
double max_abs_diff(const A& a, const B& b) {
    REQUIRE(a.numel() == b.numel());
    double worst = 0;
    for (int64_t i = 0; i < a.numel(); ++i)
        worst = std::max(worst, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    return worst;
}

template <class A>
double max_abs(const A& a) {
    double worst = 0;
    for (int64_t i = 0; i < a.numel(); ++i) worst = std::max(worst, std::abs(static_cast<double>(a[i])));
    return worst;
}

/// 1 - cosine similarity of rows `row` of a and b (width w).
template <class A, class B>
double one_minus_cos(const A& a, const B& b, int64_t row, int64_t w) {
    double dot = 0, na = 0, nb = 0;
    for (int64_t i = 0; i < w; ++i) {
        double x = a[row * w + i], y = b[row * w + i];
        dot += x * y, na += x * x, nb += y * y;
    }
    return 1.0 - dot / std::sqrt(na * nb);
}

}  // namespace test_util
