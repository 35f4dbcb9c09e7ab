// The AVX2 resize passes (issue 16, item 2) against Pillow's scalar loops: bit-identical on
// random sizes, channel counts and contents, including large reductions (5120 -> 224) and
// upscales. Skipped with a message where the CPU lacks AVX2.

#include <doctest/doctest.h>

#include <zeroclip/image.hpp>

#include <random>
#include <vector>

#ifdef ZEROCLIP_RESAMPLE_AVX2
namespace {

template <int C>
int compare_passes(std::mt19937& rng, int in_w, int out_w, int rows) {
    const auto ax = zeroclip::detail::pil_bicubic_axis(in_w, out_w, 0, out_w);
    if (ax.kpad > 1024) return 0;
    std::vector<std::uint8_t> src(static_cast<std::size_t>(in_w) * C * static_cast<std::size_t>(rows));
    const std::size_t row_len = static_cast<std::size_t>(in_w) * C;
    for (std::size_t i = 0; i < src.size(); ++i)  // white (the largest sums), hard stripes, noise
        src[i] = i < row_len ? 255 : i < 2 * row_len ? ((i / C) % 7 < 3 ? 255 : 0) : static_cast<std::uint8_t>(rng());
    std::vector<std::uint8_t> a(static_cast<std::size_t>(out_w) * C * static_cast<std::size_t>(rows)), b(a.size());
    zeroclip::detail::pil_horizontal_u8_avx2<C>(src.data(), static_cast<std::ptrdiff_t>(row_len), rows, ax, 0, out_w, a.data());
    zeroclip::detail::pil_horizontal_u8_scalar<C>(src.data(), static_cast<std::ptrdiff_t>(row_len), rows, ax, 0, out_w, b.data());
    CHECK(a == b);
    // Vertical: the same source read as `in_w` rows of `rows` pixels, down (or up) to out_w rows.
    const auto av = zeroclip::detail::pil_bicubic_axis(in_w, out_w, 0, out_w);
    std::vector<std::uint8_t> col(static_cast<std::size_t>(in_w) * C * static_cast<std::size_t>(rows));
    for (std::size_t i = 0; i < col.size(); ++i) col[i] = src[i];
    std::vector<std::uint8_t> c(static_cast<std::size_t>(out_w) * C * static_cast<std::size_t>(rows)), d(c.size());
    zeroclip::detail::pil_vertical_u8_avx2<C>(col.data(), static_cast<std::ptrdiff_t>(rows) * C, 0, rows, av, 0, out_w, c.data());
    zeroclip::detail::pil_vertical_u8_scalar<C>(col.data(), static_cast<std::ptrdiff_t>(rows) * C, 0, rows, av, 0, out_w, d.data());
    CHECK(c == d);
    return 1;
}

}  // namespace

TEST_CASE("image resample: AVX2 passes equal Pillow's scalar loops bit for bit") {
    if (!zeroclip::detail::cpu_has_avx2()) {
        MESSAGE("this CPU has no AVX2: the AVX2 resize is not used here, test skipped");
        return;
    }
    std::mt19937 rng(16);
    int compared = 0;
    const int fixed[][2] = {{5120, 224}, {5120, 336}, {4000, 224}, {224, 224}, {37, 224}, {1, 7}, {3000, 5}, {2040, 16}};
    for (const auto& f : fixed) {
        CAPTURE(f[0]);
        CAPTURE(f[1]);
        compared += compare_passes<1>(rng, f[0], f[1], 3);
        compared += compare_passes<3>(rng, f[0], f[1], 3);
        compared += compare_passes<4>(rng, f[0], f[1], 2);
    }
    for (int trial = 0; trial < 60; ++trial) {
        const int in_w = 1 + static_cast<int>(rng() % 3000);
        const int out_w = trial % 4 == 0 ? in_w * 2 + 1 : std::max(1, in_w / (1 + static_cast<int>(rng() % 60)));
        CAPTURE(in_w);
        CAPTURE(out_w);
        compared += compare_passes<2>(rng, in_w, out_w, 3);
        compared += compare_passes<3>(rng, in_w, out_w, 2);
    }
    CHECK(compared >= 100);
}
#endif
