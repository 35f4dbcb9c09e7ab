// Reduced-precision products of the CPU backend (backend/cpu/int8_gemm.hpp, bf16_gemm.hpp,
// prepared_linear.hpp): each kernel path against a plain scalar reference of the same quantised
// arithmetic (bit-exact: int8 sums are integers), on random sizes with odd edges; each path run
// where this CPU has it and skipped (counted) where not. Then the models: int8 and bf16 encoders
// against fp32 (cosine of embeddings, the toy model's top-1), and fp32 weights prepared at load
// giving the very same numbers as unprepared ones.
#include <zeroclip/zeroclip.hpp>

#include <random>

#include "../random_model.hpp"
#include "../real_size.hpp"
#include "../test_util.hpp"

using namespace zeroclip;
namespace cpu = zeroclip::detail::cpu;

namespace {

struct problem {
    int64_t m, n, k, lo, hi;
};

/// Random sizes with odd edges: k not a multiple of 4 or 2, n not of 16, slices off panel edges.
std::vector<problem> problems() {
    std::vector<problem> out{{1, 1, 1, 0, 1}, {3, 17, 5, 0, 17}, {9, 40, 33, 16, 40}, {50, 96, 130, 32, 64},
                             {17, 70, 64, 5, 61}, {2, 16, 3, 0, 16}};
    std::mt19937 rng(7);
    for (int i = 0; i < 6; ++i) {
        const int64_t m = 1 + rng() % 37, n = 1 + rng() % 90, k = 1 + rng() % 150;
        const int64_t lo = rng() % n, hi = lo + 1 + rng() % (n - lo);
        out.push_back({m, n, k, lo, hi});
    }
    return out;
}

std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

/// Whether `path` runs here; a skip line (counted) when not.
bool path_available(cpu::isa path) {
    if (cpu::cpu_has(path)) return true;
    MESSAGE(ZEROCLIP_TEST_SKIP_MARK "this CPU has no " << cpu::isa_name(path) << ": its kernel is not tested here");
    return false;
}

/// Aligned memory for prepared weights.
struct aligned_bytes {
    std::vector<unsigned char> raw;
    void* at64(size_t n) {
        raw.assign(n + 64, 0);
        return reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(raw.data()) + 63) & ~uintptr_t{63});
    }
};

/// Runs `kernel(x, m, out)` against `reference(x, r, c) → value before accumulation` for each
/// problem, with and without accumulation, bias and an activation; every output bit-equal.
template <class Kernel, class Reference>
void check_exact(const problem& p, Kernel&& kernel, Reference&& reference, uint32_t seed) {
    const int64_t cols = p.hi - p.lo;
    const std::vector<float> x = random_floats(static_cast<size_t>(p.m * p.k), seed);
    const std::vector<float> bias = random_floats(static_cast<size_t>(cols), seed + 1);
    const std::vector<float> start = random_floats(static_cast<size_t>(p.m * cols), seed + 2);
    for (int variant = 0; variant < 3; ++variant) {
        cpu::lowp_out o;
        std::vector<float> y = start, want = start;
        o.y = y.data(), o.ldy = cols, o.lo = p.lo, o.hi = p.hi;
        o.bias = variant >= 1 ? bias.data() : nullptr;
        o.accumulate = variant == 2;
        o.activation = variant == 1 ? cpu::act::quick_gelu : cpu::act::none;
        kernel(x.data(), p.m, o);
        for (int64_t r = 0; r < p.m; ++r) {
            for (int64_t c = 0; c < cols; ++c) {
                const float v = reference(x.data(), r, p.lo + c, o.bias ? o.bias[c] : 0.0f);
                float& w = want[static_cast<size_t>(r * cols + c)];
                w = o.accumulate ? w + v : v;
            }
            cpu::activate(want.data() + r * cols, cols, o.activation);
        }
        INFO("m " << p.m << " n " << p.n << " k " << p.k << " channels [" << p.lo << ", " << p.hi << ") variant " << variant);
        int64_t mismatches = 0;
        for (size_t i = 0; i < y.size(); ++i) mismatches += !(y[i] == want[i]);
        CHECK(mismatches == 0);
    }
}

/// problems() and the edges of the int8 kernels' tiles: row counts that split into tiles of 6 and
/// 5 (50, 77) or leave one of each height, channel slices off panel edges, k past a multiple of 4
/// and 32 (the vector quantiser's step), and products large enough to run on both threads.
std::vector<problem> int8_problems() {
    std::vector<problem> out = problems();
    const std::vector<problem> more{{50, 70, 37, 3, 66},   {77, 48, 130, 16, 48}, {13, 33, 7, 1, 32},
                                    {6, 16, 4, 0, 16},     {7, 31, 68, 0, 31},    {11, 100, 97, 20, 83},
                                    {5, 24, 33, 8, 24},    {150, 130, 300, 10, 130}, {64, 200, 96, 17, 190}};
    out.insert(out.end(), more.begin(), more.end());
    return out;
}

void check_int8_path(cpu::isa path) {
    uint32_t seed = 100;
    for (const problem& p : int8_problems()) {
        const std::vector<float> w = random_floats(static_cast<size_t>(p.n * p.k), seed++, 0.05f);
        aligned_bytes mem;
        cpu::int8_weights q;
        cpu::int8_prepare(w.data(), p.n, p.k, mem.at64(cpu::int8_weights::bytes(p.n, p.k)), q);
        // The weights: |w − q·s| ≤ s/2 per channel, and |q| ≤ 127.
        for (int64_t c = 0; c < p.n; ++c)
            for (int64_t i = 0; i < p.k; ++i) {
                const int8_t v = cpu::int8_weight_at(q, c, i);
                REQUIRE(std::abs(int{v}) <= 127);
                REQUIRE(std::fabs(w[static_cast<size_t>(c * p.k + i)] - v * q.scale[c]) <= q.scale[c] * 0.5001f);
            }
        // The reference quantises x the same way (and checks it), then sums integers in int64.
        std::vector<int8_t> xq;
        std::vector<float> xs;
        const float* quantised_from = nullptr;
        auto reference = [&](const float* x, int64_t r, int64_t c, float b) {
            if (quantised_from != x) {
                xq.assign(static_cast<size_t>(p.m * q.kp), 0);
                xs.assign(static_cast<size_t>(p.m), 0.0f);
                cpu::int8_quantize_rows(x, p.k, p.m, p.k, q.kp, xq.data(), xs.data(), false);
                for (int64_t i = 0; i < p.m * p.k; ++i) {
                    const int64_t row = i / p.k, col = i % p.k;
                    REQUIRE(std::fabs(x[i] - xq[static_cast<size_t>(row * q.kp + col)] * xs[static_cast<size_t>(row)]) <=
                            xs[static_cast<size_t>(row)] * 0.5001f);
                }
                quantised_from = x;
            }
            int64_t sum = 0;
            for (int64_t i = 0; i < p.k; ++i) sum += xq[static_cast<size_t>(r * q.kp + i)] * cpu::int8_weight_at(q, c, i);
            return cpu::lowp_value(static_cast<float>(sum), xs[static_cast<size_t>(r)], q.scale[c], b);
        };
        // Every other problem reads x from rows ldx = k + 3 apart (as the 1×1 convolutions do).
        const int64_t ldx = seed % 2 ? p.k + 3 : p.k;
        check_exact(p,
                    [&](const float* x, int64_t m, const cpu::lowp_out& o) {
                        std::vector<float> rows(static_cast<size_t>(m * ldx), std::nanf(""));
                        for (int64_t r = 0; r < m; ++r) std::copy(x + r * p.k, x + (r + 1) * p.k, rows.begin() + r * ldx);
                        cpu::int8_linear_kernel(path, rows.data(), ldx, m, q, o);
                    },
                    reference, seed++);
    }
}

void check_bf16_path(cpu::isa path) {
    uint32_t seed = 300;
    for (const problem& p : problems()) {
        const std::vector<float> w = random_floats(static_cast<size_t>(p.n * p.k), seed++, 0.05f);
        aligned_bytes mem;
        cpu::bf16_weights q;
        cpu::bf16_prepare(w.data(), p.n, p.k, mem.at64(cpu::bf16_weights::bytes(p.n, p.k)), q);
        for (int64_t i = 0; i < p.n * p.k; ++i) {  // rounded to nearest: within half a unit of bf16's 8 bits
            const float v = w[static_cast<size_t>(i)];
            REQUIRE(std::fabs(cpu::bf16_weight_at(q, i / p.k, i % p.k) - v) <= std::fabs(v) * (1.0f / 256.0f));
        }
        auto reference = [&](const float* x, int64_t r, int64_t c, float b) {
            if (path == cpu::isa::avx512_bf16) {  // x rounded to bf16 too, pairs as vdpbf16ps adds them
                std::vector<uint16_t> xb(static_cast<size_t>(q.kp), 0), wb(static_cast<size_t>(q.kp), 0);
                for (int64_t i = 0; i < p.k; ++i) {
                    xb[static_cast<size_t>(i)] = cpu::to_bf16(x[r * p.k + i]);
                    wb[static_cast<size_t>(i)] = cpu::to_bf16(cpu::bf16_weight_at(q, c, i));
                }
                return cpu::bf16_dot_reference(xb.data(), wb.data(), q.kp) + b;
            }
            float acc = 0.0f;  // float32 x, widened weights, one FMA per k in order
            for (int64_t i = 0; i < p.k; ++i) acc = std::fma(x[r * p.k + i], cpu::bf16_weight_at(q, c, i), acc);
            return acc + b;
        };
        check_exact(p, [&](const float* x, int64_t m, const cpu::lowp_out& o) { cpu::bf16_linear(path, x, p.k, m, q, o); },
                    reference, seed++);
    }
}

struct conv_problem {
    int64_t n, c, o, h, w, kh, kw, stride, pad, chunk;  // chunk: output pixels per product (0: the automatic size)
    int64_t out_h() const { return (h + 2 * pad - kh) / stride + 1; }
    int64_t out_w() const { return (w + 2 * pad - kw) / stride + 1; }
};

/// Convolutions with odd sizes and channel counts (C not a multiple of 8), batches > 1, chunks
/// that cut images and output rows in two: 1×1 (stride 1, and strided), 3×3 pad 1 (a bottleneck's),
/// 3×3 stride 2 with C = 3 (the stem's first), 5×5, unpadded and rectangular kernels, images
/// smaller than 8 pixels a row and narrower than the kernel.
std::vector<conv_problem> conv_problems() {
    std::vector<conv_problem> out{
        {1, 1, 1, 1, 1, 1, 1, 1, 0, 0},    {2, 3, 5, 7, 1, 1, 1, 1, 0, 0},    {3, 17, 33, 13, 1, 1, 1, 1, 0, 0},
        {2, 64, 40, 3, 3, 1, 1, 1, 0, 0},  {1, 130, 70, 5, 10, 1, 1, 1, 0, 0}, {4, 24, 16, 1, 1, 1, 1, 1, 0, 0},
        {3, 33, 17, 4, 5, 1, 1, 1, 0, 16}, {2, 9, 48, 37, 1, 1, 1, 1, 0, 24}, {5, 40, 24, 3, 1, 1, 1, 1, 0, 8},
        {2, 16, 31, 8, 8, 1, 1, 1, 0, 0},  {2, 20, 12, 9, 7, 1, 1, 2, 0, 0},   {2, 13, 19, 7, 7, 3, 3, 1, 1, 0},
        {3, 32, 24, 11, 9, 3, 3, 1, 1, 0}, {1, 64, 33, 14, 14, 3, 3, 1, 1, 0}, {2, 21, 16, 10, 13, 3, 3, 1, 1, 24},
        {2, 3, 32, 17, 20, 3, 3, 2, 1, 0}, {1, 3, 8, 33, 31, 3, 3, 2, 1, 40},  {2, 5, 11, 9, 11, 5, 5, 1, 2, 0},
        {1, 7, 9, 8, 6, 3, 3, 1, 0, 0},    {2, 6, 10, 2, 3, 3, 3, 1, 1, 0},    {1, 4, 6, 9, 9, 3, 2, 2, 0, 8},
        {1, 5, 7, 1, 2, 3, 3, 1, 2, 0}};
    std::mt19937 rng(41);
    const auto draw = [&](int64_t lo, int64_t count) { return lo + static_cast<int64_t>(rng() % static_cast<uint32_t>(count)); };
    for (int i = 0; i < 4; ++i) {
        const int64_t k = draw(0, 2) * 2 + 1, stride = draw(1, 2), n = draw(1, 3), c = draw(1, 40), o = draw(1, 40);
        const int64_t h = draw(k, 15), w = draw(k, 15);
        out.push_back({n, c, o, h, w, k, k, stride, k / 2, 0});
    }
    return out;
}

/// lowp_conv on `path` against the linear kernels' arithmetic per output pixel, written out here:
/// the pixel's receptive field built as one row in the [ky][kx][c] order (zeros outside the
/// image), quantised (int8) or rounded (bf16, vdpbf16ps path) as one row, the product, + bias,
/// + residual, then relu; every output bit-equal, for no bias / bias + relu / bias + residual +
/// relu / bias + residual. And the prepared weight is W (O, C, kh, kw) in that order, rounded.
void check_conv_path(precision prec, cpu::isa path) {
    uint32_t seed = 500;
    for (const conv_problem& p : conv_problems()) {
        const int64_t ho = p.out_h(), wo = p.out_w(), plane = ho * wo, total = p.n * plane, k = p.kh * p.kw * p.c;
        const std::vector<float> w = random_floats(static_cast<size_t>(p.o * k), seed++, 0.05f);
        const std::vector<float> x = random_floats(static_cast<size_t>(p.n * p.c * p.h * p.w), seed++);
        const std::vector<float> bias = random_floats(static_cast<size_t>(p.o), seed++);
        const std::vector<float> res = random_floats(static_cast<size_t>(p.n * p.o * plane), seed++);
        const cpu::lowp_conv_weight cw(w.data(), p.o, p.c, p.kh, p.kw, prec);
        REQUIRE(cw.out_channels() == p.o);
        REQUIRE(cw.in_channels() == p.c);
        REQUIRE(cw.row_length() == k);
        INFO(precision_name(prec) << " " << cpu::isa_name(path) << ": n " << p.n << " c " << p.c << " o " << p.o << " "
                                  << p.h << "x" << p.w << " kernel " << p.kh << "x" << p.kw << " stride " << p.stride
                                  << " pad " << p.pad << " chunk " << p.chunk);
        // Weight (ch, (ky·kw + kx)·c + ci) is W[ch][ci][ky][kx], to the precision's rounding.
        for (int64_t ch = 0; ch < p.o; ++ch)
            for (int64_t ci = 0; ci < p.c; ++ci)
                for (int64_t t = 0; t < p.kh * p.kw; ++t) {
                    const float want = w[static_cast<size_t>((ch * p.c + ci) * p.kh * p.kw + t)];
                    const int64_t i = t * p.c + ci;
                    if (prec == precision::int8) {
                        const float s = cw.int8().scale[ch];
                        REQUIRE(std::fabs(cpu::int8_weight_at(cw.int8(), ch, i) * s - want) <= 0.5001f * s);
                    } else {
                        REQUIRE(cpu::bf16_weight_at(cw.bf16(), ch, i) == cpu::from_bf16(cpu::to_bf16(want)));
                    }
                }
        // Receptive-field rows (total, k): the layout the product reads.
        std::vector<float> rows(static_cast<size_t>(total * k), 0.0f);
        for (int64_t img = 0; img < p.n; ++img)
            for (int64_t oy = 0; oy < ho; ++oy)
                for (int64_t ox = 0; ox < wo; ++ox)
                    for (int64_t ky = 0; ky < p.kh; ++ky)
                        for (int64_t kx = 0; kx < p.kw; ++kx)
                            for (int64_t ci = 0; ci < p.c; ++ci) {
                                const int64_t iy = oy * p.stride + ky - p.pad, ix = ox * p.stride + kx - p.pad;
                                if (iy < 0 || iy >= p.h || ix < 0 || ix >= p.w) continue;
                                rows[static_cast<size_t>((img * plane + oy * wo + ox) * k + (ky * p.kw + kx) * p.c + ci)] =
                                    x[static_cast<size_t>(((img * p.c + ci) * p.h + iy) * p.w + ix)];
                            }
        std::vector<int8_t> xq;
        std::vector<float> xs;
        if (prec == precision::int8) {
            xq.assign(static_cast<size_t>(total * cw.int8().kp), 0);
            xs.assign(static_cast<size_t>(total), 0.0f);
            cpu::int8_quantize_rows(rows.data(), k, total, k, cw.int8().kp, xq.data(), xs.data(), false);
        }
        auto product = [&](int64_t r, int64_t ch) -> float {  // before the bias
            const float* row = rows.data() + r * k;
            if (prec == precision::int8) {
                int64_t sum = 0;
                for (int64_t i = 0; i < k; ++i)
                    sum += xq[static_cast<size_t>(r * cw.int8().kp + i)] * cpu::int8_weight_at(cw.int8(), ch, i);
                return static_cast<float>(sum);
            }
            const cpu::bf16_weights& q = cw.bf16();
            if (path == cpu::isa::avx512_bf16) {
                std::vector<uint16_t> xb(static_cast<size_t>(q.kp), 0), wb(static_cast<size_t>(q.kp), 0);
                for (int64_t i = 0; i < k; ++i) {
                    xb[static_cast<size_t>(i)] = cpu::to_bf16(row[i]);
                    wb[static_cast<size_t>(i)] = cpu::to_bf16(cpu::bf16_weight_at(q, ch, i));
                }
                return cpu::bf16_dot_reference(xb.data(), wb.data(), q.kp);
            }
            float acc = 0.0f;
            for (int64_t i = 0; i < k; ++i) acc = std::fma(row[i], cpu::bf16_weight_at(q, ch, i), acc);
            return acc;
        };
        for (int variant = 0; variant < 4; ++variant) {
            const float* b = variant >= 1 ? bias.data() : nullptr;
            const float* r = variant >= 2 ? res.data() : nullptr;
            const cpu::act a = variant == 1 || variant == 2 ? cpu::act::relu : cpu::act::none;
            std::vector<float> y(static_cast<size_t>(p.n * p.o * plane), -7.0f);
            cpu::lowp_conv(path, cw, x.data(), p.n, p.h, p.w, p.stride, p.pad, b, r, a, y.data(), p.chunk);
            int64_t mismatches = 0;
            for (int64_t img = 0; img < p.n; ++img)
                for (int64_t ch = 0; ch < p.o; ++ch)
                    for (int64_t s = 0; s < plane; ++s) {
                        const int64_t px = img * plane + s, at = (img * p.o + ch) * plane + s;
                        const float bv = b ? b[ch] : 0.0f;
                        float v = prec == precision::int8
                                      ? cpu::lowp_value(product(px, ch), xs[static_cast<size_t>(px)], cw.int8().scale[ch], bv)
                                      : product(px, ch) + bv;
                        if (r) v = v + r[at];
                        if (a == cpu::act::relu) v = cpu::relu1(v);
                        mismatches += !(y[static_cast<size_t>(at)] == v);
                    }
            INFO("variant " << variant);
            CHECK(mismatches == 0);
        }
    }
}

/// cos(a_i, b_i), the worst over rows.
double worst_cosine(const tensor& a, const tensor& b) {
    REQUIRE(a.shape() == b.shape());
    const int64_t rows = a.dim(0), n = a.dim(1);
    double worst = 1.0;
    for (int64_t r = 0; r < rows; ++r) {
        double ab = 0, aa = 0, bb = 0;
        for (int64_t i = 0; i < n; ++i) {
            const double x = a[r * n + i], y = b[r * n + i];
            ab += x * y, aa += x * x, bb += y * y;
        }
        worst = std::min(worst, ab / std::sqrt(aa * bb));
    }
    return worst;
}

model load_with(const std::string& path, precision p) { return load_model(path, cpu_backend(cpu_options{p})); }

}  // namespace

TEST_CASE("precision: int8 scalar kernel against the reference arithmetic") { check_int8_path(cpu::isa::scalar); }

TEST_CASE("precision: int8 AVX2 kernel (vpmaddubsw) against the reference arithmetic") {
    if (path_available(cpu::isa::avx2)) check_int8_path(cpu::isa::avx2);
}

TEST_CASE("precision: int8 AVX-512 VNNI kernel (vpdpbusd) against the reference arithmetic") {
    if (path_available(cpu::isa::avx512_vnni)) check_int8_path(cpu::isa::avx512_vnni);
}

TEST_CASE("precision: int8 AVX-VNNI kernel (256-bit vpdpbusd) against the reference arithmetic") {
    if (path_available(cpu::isa::avx_vnni)) check_int8_path(cpu::isa::avx_vnni);
}

TEST_CASE("precision: int8 row quantisation gives the scalar bytes and scales on every path") {
    // Every length from 1 to 80 (vector bodies, tails, padding to kp), with and without the +128.
    for (cpu::isa path : {cpu::isa::avx2, cpu::isa::avx512_vnni}) {
        if (!path_available(path)) continue;
        for (int64_t k = 1; k <= 80; ++k) {
            const int64_t m = 3, ld = k + 5, kp = (k + 3) / 4 * 4;
            std::vector<float> x = random_floats(static_cast<size_t>(m * ld), static_cast<uint32_t>(900 + k));
            x[0] = 0.0f;  // a zero and an all-zero row
            std::fill(x.begin() + ld, x.begin() + ld + k, 0.0f);
            for (bool plus128 : {false, true}) {
                std::vector<int8_t> want(static_cast<size_t>(m * kp), 5), got(static_cast<size_t>(m * kp), 7);
                std::vector<float> want_s(static_cast<size_t>(m)), got_s(static_cast<size_t>(m));
                cpu::int8_quantize_rows(x.data(), ld, m, k, kp, want.data(), want_s.data(), plus128);
                cpu::int8_quantize_rows(x.data(), ld, m, k, kp, got.data(), got_s.data(), plus128, path);
                INFO(cpu::isa_name(path) << " k " << k << " plus128 " << plus128);
                CHECK(want == got);
                CHECK(want_s == got_s);
            }
        }
    }
}

TEST_CASE("precision: int8_linear's AVX2 path runs AVX-VNNI where the CPU has it and the cap allows") {
    const cpu::isa want = cpu::use_isa(cpu::isa::avx_vnni) ? cpu::isa::avx_vnni : cpu::isa::avx2;
    CHECK(cpu::int8_kernel_for(cpu::isa::avx2) == want);
    CHECK(cpu::int8_kernel_for(cpu::isa::avx512_vnni) == cpu::isa::avx512_vnni);
    CHECK(cpu::int8_kernel_for(cpu::isa::scalar) == cpu::isa::scalar);
    CHECK(std::string(cpu::isa_name(cpu::isa::avx_vnni)) == "avxvnni");
}

TEST_CASE("precision: bf16 scalar kernel against the reference arithmetic") { check_bf16_path(cpu::isa::scalar); }

TEST_CASE("precision: bf16 AVX2 kernel (widened weights) against the reference arithmetic") {
    if (path_available(cpu::isa::avx2)) check_bf16_path(cpu::isa::avx2);
}

TEST_CASE("precision: bf16 AVX-512 BF16 kernel (vdpbf16ps) against the reference arithmetic") {
    if (path_available(cpu::isa::avx512_bf16)) check_bf16_path(cpu::isa::avx512_bf16);
}

TEST_CASE("precision: int8 convolution (1x1, 3x3, strided), scalar path, against the reference arithmetic") {
    check_conv_path(precision::int8, cpu::isa::scalar);
}

TEST_CASE("precision: int8 convolution (1x1, 3x3, strided), AVX2 path, against the reference arithmetic") {
    if (path_available(cpu::isa::avx2)) check_conv_path(precision::int8, cpu::isa::avx2);
}

TEST_CASE("precision: int8 convolution (1x1, 3x3, strided), AVX-512 VNNI path, against the reference arithmetic") {
    if (path_available(cpu::isa::avx512_vnni)) check_conv_path(precision::int8, cpu::isa::avx512_vnni);
}

TEST_CASE("precision: bf16 convolution (1x1, 3x3, strided), scalar path, against the reference arithmetic") {
    check_conv_path(precision::bf16, cpu::isa::scalar);
}

TEST_CASE("precision: bf16 convolution (1x1, 3x3, strided), AVX2 path, against the reference arithmetic") {
    if (path_available(cpu::isa::avx2)) check_conv_path(precision::bf16, cpu::isa::avx2);
}

TEST_CASE("precision: bf16 convolution (1x1, 3x3, strided), AVX-512 BF16 path, against the reference arithmetic") {
    if (path_available(cpu::isa::avx512_bf16)) check_conv_path(precision::bf16, cpu::isa::avx512_bf16);
}

TEST_CASE("precision: the backend's convolutions (1x1, 3x3, the stem's strided one) run on the reduced-precision kernels") {
    const cpu_backend fp32;
    test_util::rng r(11);
    struct conv_case {
        int64_t c, o, k, stride, pad;
    };
    const int64_t n = 3, h = 6, wd = 5;
    for (const conv_case& cc : {conv_case{37, 21, 1, 1, 0}, conv_case{37, 21, 3, 1, 1}, conv_case{3, 16, 3, 2, 1}}) {
        const tensor x = test_util::random_tensor(r, {n, cc.c, h, wd});
        const tensor w = test_util::random_tensor(r, {cc.o, cc.c, cc.k, cc.k}, 0.0f, 0.1f / static_cast<float>(cc.k));
        const tensor b = test_util::random_tensor(r, {cc.o});
        const int64_t ho = (h + 2 * cc.pad - cc.k) / cc.stride + 1, wo = (wd + 2 * cc.pad - cc.k) / cc.stride + 1;
        const tensor res = test_util::random_tensor(r, {n, cc.o, ho, wo});
        const tensor want = fp32.conv2d(x, w, b, cc.stride, cc.pad), want_relu = fp32.conv2d_relu(x, w, b, cc.stride, cc.pad);
        const tensor want_add = fp32.conv2d_add_relu(x, w, b, cc.stride, cc.pad, res);
        for (precision prec : {precision::int8, precision::bf16}) {  // the same weight prepared under both
            const cpu_backend be(cpu_options{prec});
            const tensor pw = be.prepare_conv2d(w, cc.stride, cc.pad);
            const tensor got = be.conv2d(x, pw, b, cc.stride, cc.pad), got_relu = be.conv2d_relu(x, pw, b, cc.stride, cc.pad);
            const tensor got_add = be.conv2d_add_relu(x, pw, b, cc.stride, cc.pad, res);
            CHECK(std::equal(got.begin(), got.end(), be.conv2d(x, w, b, cc.stride, cc.pad).begin()));  // unprepared: the same
            // The very bits of lowp_conv on the path the backend picks.
            const cpu::isa path = cpu::lowp_conv_path(prec);
            const cpu::lowp_conv_weight cw(w.data(), cc.o, cc.c, cc.k, cc.k, prec);
            tensor direct({n, cc.o, ho, wo}), direct_add({n, cc.o, ho, wo});
            cpu::lowp_conv(path, cw, x.data(), n, h, wd, cc.stride, cc.pad, b.data(), nullptr, cpu::act::none, direct.data());
            cpu::lowp_conv(path, cw, x.data(), n, h, wd, cc.stride, cc.pad, b.data(), res.data(), cpu::act::relu,
                           direct_add.data());
            INFO(precision_name(prec) << " on " << cpu::isa_name(path) << ": " << cc.k << "x" << cc.k << " stride "
                                      << cc.stride << " pad " << cc.pad << ", c " << cc.c);
            CHECK(std::equal(direct.begin(), direct.end(), got.begin()));
            CHECK(std::equal(direct_add.begin(), direct_add.end(), got_add.begin()));
            for (int64_t i = 0; i < got.numel(); ++i) REQUIRE(got_relu[i] == cpu::relu1(got[i]));
            // Not the fp32 numbers, but close to them.
            double err = 0, norm = 0, err_add = 0;
            for (int64_t i = 0; i < want.numel(); ++i) {
                err = std::max<double>(err, std::fabs(want[i] - got[i]));
                err_add = std::max<double>(err_add, std::fabs(want_add[i] - got_add[i]));
                norm = std::max<double>(norm, std::fabs(want[i]));
            }
            CHECK(err > 0.0);
            CHECK(err <= 0.02 * norm);
            CHECK(err_add <= 0.02 * norm);
            for (int64_t i = 0; i < want_relu.numel(); ++i) REQUIRE(std::fabs(want_relu[i] - got_relu[i]) <= 0.02 * norm);
        }
    }
}

TEST_CASE("precision: convolution weights prepared at load give the unprepared bits, with no float32 copy resident") {
    // Every form: fp32 Winograd (3x3 stride 1, >= 32 channels), fp32 packed (strided, 1x1, few
    // channels), and whatever int8 / bf16 make of each kind of convolution.
    struct shape {
        int64_t n, c, h, w, o, k, stride, pad;
    };
    const shape shapes[] = {{2, 64, 9, 11, 40, 3, 1, 1}, {2, 48, 12, 9, 24, 3, 2, 1}, {3, 37, 6, 5, 70, 1, 1, 0},
                            {2, 3, 17, 19, 16, 3, 2, 1}, {1, 512, 4, 4, 512, 3, 1, 1}};
    for (precision prec : {precision::fp32, precision::int8, precision::bf16}) {
        const cpu_backend be(cpu_options{prec});
        for (const shape& s : shapes) {
            INFO(std::string(precision_name(prec)) << " c " << s.c << " o " << s.o << " k " << s.k << " stride " << s.stride);
            test_util::rng r(static_cast<uint64_t>(s.c * 100 + s.o));
            const tensor x = test_util::random_tensor(r, {s.n, s.c, s.h, s.w});
            const tensor w = test_util::random_tensor(r, {s.o, s.c, s.k, s.k}, 0.0f, 0.05f), b = test_util::random_tensor(r, {s.o});
            const int64_t ho = (s.h + 2 * s.pad - s.k) / s.stride + 1, wo = (s.w + 2 * s.pad - s.k) / s.stride + 1;
            const tensor res = test_util::random_tensor(r, {s.n, s.o, ho, wo});
            const tensor prepared = be.prepare_conv2d(w, s.stride, s.pad);
            REQUIRE(prepared.shape() == w.shape());
            const tensor want = be.conv2d(x, w, b, s.stride, s.pad), got = be.conv2d(x, prepared, b, s.stride, s.pad);
            const tensor want_add = be.conv2d_add_relu(x, w, b, s.stride, s.pad, res);
            const tensor got_add = be.conv2d_add_relu(x, prepared, b, s.stride, s.pad, res);
            CHECK(std::equal(want.begin(), want.end(), got.begin()));
            CHECK(std::equal(want_add.begin(), want_add.end(), got_add.begin()));
            if (prepared.data() == w.data()) {  // no form for it in this build: w itself
                CHECK(!cpu::has_prepacked_gemm);
                continue;
            }
            // Not the float32 storage, and none of its pages resident: only the form is kept.
            CHECK(prepared.owner() != w.owner());
            CHECK(test_util::resident_bytes(prepared.data(), static_cast<size_t>(prepared.numel()) * sizeof(float)) == 0);
            CHECK(be.prepare_conv2d(prepared, s.stride, s.pad).data() == prepared.data());  // already prepared
            // Its values are gone: a part of it, or another stride, is refused rather than read as zeros.
            CHECK_THROWS_AS(be.conv2d(x, prepared.slice_rows(0, 1), b.slice_rows(0, 1), s.stride, s.pad), zeroclip::error);
            CHECK_THROWS_AS(be.conv2d(x, prepared, b, s.stride + 1, s.pad), zeroclip::error);
        }
    }
}

TEST_CASE("precision: nn::conv2d holds the backend's prepared weight in place of the folded float32 one") {
    test_util::rng r(5);
    const int64_t o = 64, c = 64;
    tensor var = test_util::random_tensor(r, {o});
    for (float& v : var) v = 0.5f + std::fabs(v);
    const weight_source ws(std::map<std::string, tensor>{{"conv.weight", test_util::random_tensor(r, {o, c, 3, 3}, 0.0f, 0.05f)},
                                                         {"bn.weight", test_util::random_tensor(r, {o}, 1.0f, 0.1f)},
                                                         {"bn.bias", test_util::random_tensor(r, {o})},
                                                         {"bn.running_mean", test_util::random_tensor(r, {o})},
                                                         {"bn.running_var", var}},
                           "<test>");
    const tensor x = test_util::random_tensor(r, {2, c, 7, 6});
    for (precision prec : {precision::fp32, precision::int8}) {
        INFO(std::string(precision_name(prec)));
        const cpu_backend be(cpu_options{prec});
        const auto conv = nn::conv2d<cpu_backend>::load_with_batch_norm(ws.scope("conv"), ws.scope("bn"), be, o, c, 3, 1, 1);
        REQUIRE(conv.weight.shape() == shape_t({o, c, 3, 3}));
        if (!cpu::has_prepacked_gemm) continue;  // a 3x3 weight may have no form (and stay as it is)
        CHECK(test_util::resident_bytes(conv.weight.data(), static_cast<size_t>(conv.weight.numel()) * sizeof(float)) == 0);
        CHECK_THROWS_AS(be.conv2d(x, conv.weight.slice_rows(0, 1), conv.bias.slice_rows(0, 1), 1, 1), zeroclip::error);
        (void)conv.forward_relu(be, x);  // runs on the prepared form
    }
}

TEST_CASE("precision: fp32 weights prepared at load give the unprepared numbers, slices included") {
    for (precision prec : {precision::fp32, precision::int8, precision::bf16}) {
        const cpu_backend plain, be(cpu_options{prec, /*pack_fp32_at_load=*/true});
        for (const problem& p : problems()) {
            test_util::rng r(static_cast<uint64_t>(p.m * 1000 + p.n));
            const tensor x = test_util::random_tensor(r, {p.m, p.k}), w = test_util::random_tensor(r, {p.n, p.k});
            const tensor b = test_util::random_tensor(r, {p.n});
            const tensor prepared = be.prepare_linear(w);
            REQUIRE(prepared.shape() == w.shape());
            // Unprepared product (the plain backend), the prepared one, and a slice of rows of it.
            const tensor want = plain.linear(x, w, b), got = be.linear(x, prepared, b);
            const int64_t count = p.hi - p.lo;
            const tensor part_want = plain.linear(x, w.slice_rows(p.lo, count), b.slice_rows(p.lo, count));
            const tensor part_got = be.linear(x, be.slice_rows(prepared, p.lo, count), b.slice_rows(p.lo, count));
            tensor acc_want = want.clone(), acc_got = want.clone();
            plain.linear_add_(acc_want, x, w, b);
            be.linear_add_(acc_got, x, prepared, b);
            INFO(std::string(precision_name(prec)) << " m " << p.m << " n " << p.n << " k " << p.k << " rows [" << p.lo << ", " << p.hi << ")");
            if (prec == precision::fp32 && cpu::has_prepacked_gemm) {
                CHECK(std::equal(want.begin(), want.end(), got.begin()));
                CHECK(std::equal(part_want.begin(), part_want.end(), part_got.begin()));
                CHECK(std::equal(acc_want.begin(), acc_want.end(), acc_got.begin()));
            } else {  // the slice's columns are the full product's, computed the same way
                for (int64_t i = 0; i < p.m; ++i)
                    for (int64_t c = 0; c < count; ++c)
                        REQUIRE(part_got[i * count + c] == got[i * p.n + p.lo + c]);
                double err = 0, norm = 0;
                for (int64_t i = 0; i < want.numel(); ++i)
                    err = std::max<double>(err, std::fabs(want[i] - got[i])), norm = std::max<double>(norm, std::fabs(want[i]));
                CHECK(err <= 0.05 * norm);
            }
        }
    }
}

TEST_CASE("precision: parse and name") {
    CHECK(parse_precision("int8") == precision::int8);
    CHECK(std::string(precision_name(parse_precision("bf16"))) == "bf16");
    CHECK_THROWS_AS(parse_precision("fp16"), zeroclip::error);
}

TEST_CASE("precision: int8 and bf16 encoders of the ViT-B/32 and RN50 shapes within cosine 0.999 of fp32") {
    for (const std::string name : {"vit-b32", "rn50"}) {
        const std::string path = test_util::real_size_weights(name);
        const auto ref = test_util::load_real_size_reference(name);
        const model fp32 = load_with(path, precision::fp32);
        const tensor img = fp32.encode_image(ref.pixels), txt = fp32.encode_text(ref.tokens);
        for (precision p : {precision::int8, precision::bf16}) {
            const model m = load_with(path, p);
            const double ci = worst_cosine(m.encode_image(ref.pixels), img);
            const double ct = worst_cosine(m.encode_text(ref.tokens), txt);
            MESSAGE(name << " " << std::string(precision_name(p)) << ": worst cosine to fp32, image " << ci << ", text " << ct);
            CHECK(ci >= 0.999);
            CHECK(ct >= 0.999);
        }
    }
}

TEST_CASE("precision: the toy model's top-1 under int8 and bf16 equals fp32's on at least 99% of images") {
    const std::string path = test_util::source_dir() + "/examples/models/zeroclip-toy-vit.safetensors";
    const std::string dir = test_util::source_dir() + "/tests/data/toy_eval";
    const auto spec = nlohmann::json::parse(std::ifstream(dir + "/eval.json"));
    const npy_array images = load_npy(dir + "/images_u8.npy");
    const int64_t n = images.shape[0], s = images.shape[1];
    const std::vector<std::string> labels = spec["labels"].get<std::vector<std::string>>();
    auto top1 = [&](const model& m) {
        const auto options = m.preprocess_options();
        tensor pixels({n, 3, s, s});
        for (int64_t i = 0; i < n; ++i) {
            rgb_image img{static_cast<int>(s), static_cast<int>(s),
                          std::vector<uint8_t>(images.bytes.begin() + i * s * s * 3, images.bytes.begin() + (i + 1) * s * s * 3)};
            normalize_into(img, options.mean, options.stddev, pixels.data() + i * 3 * s * s);
        }
        zero_shot_classifier<cpu_backend> classifier(m, labels, {spec["template"].get<std::string>()});
        std::vector<std::string> out;
        for (const auto& preds : classifier.classify_embeddings(m.encode_image(pixels), 1)) out.push_back(preds[0].label);
        return out;
    };
    const auto want = top1(load_with(path, precision::fp32));
    for (precision p : {precision::int8, precision::bf16}) {
        const auto got = top1(load_with(path, p));
        REQUIRE(got.size() == want.size());
        int64_t same = 0;
        for (size_t i = 0; i < got.size(); ++i) same += got[i] == want[i];
        MESSAGE(std::string(precision_name(p)) << ": top-1 equal to fp32 on " << same << " of " << got.size() << " images");
        CHECK(static_cast<double>(same) >= 0.99 * static_cast<double>(got.size()));
    }
}
