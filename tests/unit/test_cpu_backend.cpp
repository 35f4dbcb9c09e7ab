// The CPU backend's own kernels (backend/cpu/gemm.hpp, vec.hpp; detail/io/convert.hpp) against plain
// double-precision loops, over the shapes where blocked code goes wrong: edges of every tile and
// panel size, K blocks, tiny and empty dimensions, the fused epilogues, strided attention rows,
// NCHW convolutions with padding and stride, and F16 / BF16 conversion of every 16-bit pattern.
#include <zeroclip/zeroclip.hpp>

#include <cstring>
#include <random>

#include "../test_util.hpp"

using namespace zeroclip;

namespace {

tensor random_tensor(shape_t shape, std::mt19937& rng) {
    tensor t(std::move(shape));
    std::normal_distribution<float> d;
    for (auto& v : t) v = d(rng);
    return t;
}

// Largest |a − b| relative to the largest |b| (1 at least); +infinity when a value of either side is
// NaN or infinite (a kernel writing NaN must fail). Limits are 1e-5: float32 sums of up to 600
// terms against double ones.
double rel_err(const tensor& a, const std::vector<double>& b) {
    REQUIRE(static_cast<size_t>(a.numel()) == b.size());
    double worst = 0, scale = 1;
    for (size_t i = 0; i < b.size(); ++i) {
        const double x = static_cast<double>(a[static_cast<int64_t>(i)]);
        if (!std::isfinite(x) || !std::isfinite(b[i])) return HUGE_VAL;
        worst = std::max(worst, std::abs(x - b[i]));
        scale = std::max(scale, std::abs(b[i]));
    }
    return worst / scale;
}

double quick_gelu(double x) { return x / (1 + std::exp(-1.702 * x)); }

}  // namespace

TEST_CASE("cpu backend: linear and its fused forms match a double-precision reference at every edge") {
    std::mt19937 rng(11);
    const cpu_backend be;
    for (int64_t m : {1, 2, 5, 6, 7, 13, 19, 20, 23, 50, 97})
        for (int64_t k : {1, 3, 8, 9, 255, 256, 257, 600})
            for (int64_t n : {1, 15, 16, 17, 33, 64, 65, 130}) {
                CAPTURE(m);
                CAPTURE(k);
                CAPTURE(n);
                const tensor x = random_tensor({m, k}, rng), w = random_tensor({n, k}, rng);
                const tensor b = random_tensor({n}, rng), y0 = random_tensor({m, n}, rng);
                std::vector<double> ref(static_cast<size_t>(m * n));
                for (int64_t i = 0; i < m; ++i)
                    for (int64_t j = 0; j < n; ++j) {
                        double s = b[j];
                        for (int64_t t = 0; t < k; ++t) s += static_cast<double>(x[i * k + t]) * w[j * k + t];
                        ref[static_cast<size_t>(i * n + j)] = s;
                    }
                CHECK(rel_err(be.linear(x, w, b), ref) < 1e-5);
                std::vector<double> act(ref), added(ref);
                for (size_t i = 0; i < ref.size(); ++i) {
                    act[i] = quick_gelu(ref[i]);
                    added[i] = ref[i] + y0[static_cast<int64_t>(i)];
                }
                CHECK(rel_err(be.linear_activate(x, w, b, activation::quick_gelu), act) < 1e-5);
                tensor y = y0.clone();
                be.linear_add_(y, x, w, b);
                CHECK(rel_err(y, added) < 1e-5);
                if (m * k * n < 20000) {  // the exact GELU goes through the unfused tail pass
                    std::vector<double> g(ref);
                    for (auto& v : g) v = 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
                    CHECK(rel_err(be.linear_activate(x, w, b, activation::gelu), g) < 1e-5);
                }
            }
}

TEST_CASE("cpu backend: matmul, and products over K = 0") {
    const cpu_backend be;
    std::mt19937 rng(3);
    const tensor a = random_tensor({7, 5}, rng), v = random_tensor({5, 9}, rng);
    std::vector<double> ref(63);
    for (int i = 0; i < 7; ++i)
        for (int j = 0; j < 9; ++j)
            for (int t = 0; t < 5; ++t) ref[static_cast<size_t>(i * 9 + j)] += static_cast<double>(a[i * 5 + t]) * v[t * 9 + j];
    CHECK(rel_err(be.matmul(a, v), ref) < 1e-5);
    // K = 0: C = bias (the kernels never run).
    std::vector<float> c(12, 7.0f), bias = {1, 2, 3, 4};
    detail::cpu::epilogue ep;
    ep.bias = bias.data();
    detail::cpu::gemm_nt(3, 4, 0, nullptr, 0, nullptr, 0, c.data(), 4, ep);
    for (int i = 0; i < 12; ++i) CHECK(c[static_cast<size_t>(i)] == bias[static_cast<size_t>(i % 4)]);
}

namespace {

// Convolution of NCHW x by w (o, c, k, k) plus bias, in double.
std::vector<double> reference_conv(const tensor& x, const tensor& w, const tensor& b, int64_t stride, int64_t pad) {
    const int64_t n = x.dim(0), c = x.dim(1), h = x.dim(2), wd = x.dim(3), o = w.dim(0), k = w.dim(2);
    const int64_t ho = (h + 2 * pad - k) / stride + 1, wo = (wd + 2 * pad - k) / stride + 1;
    std::vector<double> ref(static_cast<size_t>(n * o * ho * wo));
    for (int64_t img = 0; img < n; ++img)
        for (int64_t oc = 0; oc < o; ++oc)
            for (int64_t oy = 0; oy < ho; ++oy)
                for (int64_t ox = 0; ox < wo; ++ox) {
                    double sum = b[oc];
                    for (int64_t ic = 0; ic < c; ++ic)
                        for (int64_t ky = 0; ky < k; ++ky)
                            for (int64_t kx = 0; kx < k; ++kx) {
                                const int64_t iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                                sum += static_cast<double>(x[((img * c + ic) * h + iy) * wd + ix]) *
                                       w[((oc * c + ic) * k + ky) * k + kx];
                            }
                    ref[static_cast<size_t>(((img * o + oc) * ho + oy) * wo + ox)] = sum;
                }
    return ref;
}

}  // namespace

TEST_CASE("cpu backend: convolutions (1x1, 3x3, strided, padded) with fused ReLU and residual") {
    std::mt19937 rng(5);
    const cpu_backend be;
    struct shape {
        int64_t n, c, h, w, o, k, stride, pad;
    };
    // The last four are 3x3 stride-1 convolutions with ≥ 64 input channels, which run by
    // Winograd's F(2x2, 3x3): odd sizes (clipped tiles), rows wide enough for the 8-tile vector
    // transforms, blocks of tiles that span images, and a single pixel.
    for (const shape s : {shape{2, 3, 17, 19, 5, 3, 2, 1}, shape{3, 8, 9, 9, 7, 3, 1, 1}, shape{2, 16, 7, 7, 33, 1, 1, 0},
                          shape{2, 5, 7, 6, 11, 2, 2, 0}, shape{1, 4, 5, 5, 3, 5, 1, 2}, shape{2, 12, 20, 3, 70, 3, 1, 1},
                          shape{3, 64, 33, 31, 37, 3, 1, 1}, shape{2, 72, 7, 7, 70, 3, 1, 1}, shape{2, 64, 18, 40, 9, 3, 1, 1},
                          shape{1, 80, 1, 1, 13, 3, 1, 1}, shape{2, 32, 12, 13, 16, 3, 1, 1}}) {
        CAPTURE(s.c);
        CAPTURE(s.h);
        CAPTURE(s.k);
        CAPTURE(s.stride);
        const tensor x = random_tensor({s.n, s.c, s.h, s.w}, rng), w = random_tensor({s.o, s.c, s.k, s.k}, rng);
        const tensor b = random_tensor({s.o}, rng);
        const int64_t ho = (s.h + 2 * s.pad - s.k) / s.stride + 1, wo = (s.w + 2 * s.pad - s.k) / s.stride + 1;
        const std::vector<double> ref = reference_conv(x, w, b, s.stride, s.pad);
        CHECK(rel_err(be.conv2d(x, w, b, s.stride, s.pad), ref) < 1e-5);
        std::vector<double> relu(ref), add_relu(ref);
        const tensor residual = random_tensor({s.n, s.o, ho, wo}, rng);
        for (size_t i = 0; i < ref.size(); ++i) {
            relu[i] = std::max(0.0, ref[i]);
            add_relu[i] = std::max(0.0, ref[i] + residual[static_cast<int64_t>(i)]);
        }
        CHECK(rel_err(be.conv2d_relu(x, w, b, s.stride, s.pad), relu) < 1e-5);
        CHECK(rel_err(be.conv2d_add_relu(x, w, b, s.stride, s.pad, residual), add_relu) < 1e-5);
    }
}

TEST_CASE("cpu backend: convolution weights laid out at first use follow the weight tensor") {
    // The CPU backend keeps each convolution weight it has seen laid out for its products (the
    // Winograd transform of a 3x3 weight, the packed operand of a 1x1 or strided one), by address
    // and owner: a new weight in freed memory, or another view of the same memory, must not reuse it.
    std::mt19937 rng(9);
    const cpu_backend be;
    const tensor x = random_tensor({1, 64, 6, 5}, rng), b = random_tensor({8}, rng);
    for (const int64_t k : {3, 1}) {
        CAPTURE(k);
        const int64_t pad = k / 2;
        for (int round = 0; round < 3; ++round) {
            const tensor w = random_tensor({8, 64, k, k}, rng);  // often at the address the last one freed
            CHECK(rel_err(be.conv2d(x, w, b, 1, pad), reference_conv(x, w, b, 1, pad)) < 1e-5);
        }
        tensor w = random_tensor({8, 64, k, k}, rng);
        const tensor prepared = be.prepare_conv2d(w, 1, pad);  // w itself stays usable, unprepared
        CHECK(rel_err(be.conv2d(x, prepared, b, 1, pad), reference_conv(x, w, b, 1, pad)) < 1e-5);
        CHECK(rel_err(be.conv2d(x, w, b, 1, pad), reference_conv(x, w, b, 1, pad)) < 1e-5);
        const tensor half = w.slice_rows(0, 4), half_b = b.slice_rows(0, 4);  // same address and owner
        CHECK(rel_err(be.conv2d(x, half, half_b, 1, pad), reference_conv(x, half, half_b, 1, pad)) < 1e-5);
    }
}

TEST_CASE("cpu backend: attention on strided q, k, v rows, causal or not") {
    std::mt19937 rng(7);
    const cpu_backend be;
    for (int64_t batch : {1, 3})
        for (int64_t t : {1, 2, 9, 50})
            for (bool causal : {false, true}) {
                CAPTURE(batch);
                CAPTURE(t);
                CAPTURE(causal);
                const int64_t w = 96, heads = 3, d = w / heads;
                const tensor qkv = random_tensor({batch * t, 3 * w}, rng);
                std::vector<double> ref(static_cast<size_t>(batch * t * w));
                for (int64_t b = 0; b < batch; ++b)
                    for (int64_t h = 0; h < heads; ++h)
                        for (int64_t i = 0; i < t; ++i) {
                            const int64_t visible = causal ? i + 1 : t;
                            std::vector<double> p(static_cast<size_t>(visible));
                            double mx = -1e300, sum = 0;
                            for (int64_t j = 0; j < visible; ++j) {
                                double s = 0;
                                for (int64_t e = 0; e < d; ++e)
                                    s += static_cast<double>(qkv[(b * t + i) * 3 * w + h * d + e]) *
                                         qkv[(b * t + j) * 3 * w + w + h * d + e];
                                p[static_cast<size_t>(j)] = s / std::sqrt(static_cast<double>(d));
                                mx = std::max(mx, p[static_cast<size_t>(j)]);
                            }
                            for (auto& v : p) sum += v = std::exp(v - mx);
                            for (int64_t e = 0; e < d; ++e) {
                                double o = 0;
                                for (int64_t j = 0; j < visible; ++j)
                                    o += p[static_cast<size_t>(j)] / sum * qkv[(b * t + j) * 3 * w + 2 * w + h * d + e];
                                ref[static_cast<size_t>((b * t + i) * w + h * d + e)] = o;
                            }
                        }
                CHECK(rel_err(be.self_attention(qkv, batch, heads, causal), ref) < 1e-5);
            }
}

TEST_CASE("cpu backend: row ops (layer norm, activations, softmax) against double precision") {
    std::mt19937 rng(9);
    const cpu_backend be;
    for (int64_t n : {1, 7, 8, 9, 768, 1000}) {
        CAPTURE(n);
        const tensor x = random_tensor({5, n}, rng), w = random_tensor({n}, rng), b = random_tensor({n}, rng);
        std::vector<double> ln(static_cast<size_t>(5 * n)), sm(ln.size()), qg(ln.size());
        for (int64_t r = 0; r < 5; ++r) {
            double mean = 0, var = 0, mx = -1e300, sum = 0;
            for (int64_t i = 0; i < n; ++i) mean += x[r * n + i], mx = std::max(mx, static_cast<double>(x[r * n + i]));
            mean /= static_cast<double>(n);
            for (int64_t i = 0; i < n; ++i) var += (x[r * n + i] - mean) * (x[r * n + i] - mean);
            var /= static_cast<double>(n);
            for (int64_t i = 0; i < n; ++i) sum += std::exp(x[r * n + i] - mx);
            for (int64_t i = 0; i < n; ++i) {
                const auto at = static_cast<size_t>(r * n + i);
                ln[at] = (x[r * n + i] - mean) / std::sqrt(var + 1e-5) * w[i] + b[i];
                sm[at] = std::exp(x[r * n + i] - mx) / sum;
                qg[at] = quick_gelu(x[r * n + i]);
            }
        }
        CHECK(rel_err(be.layer_norm(x, w, b, 1e-5), ln) < 1e-5);
        CHECK(rel_err(be.softmax_rows(x), sm) < 1e-5);
        tensor y = x.clone();
        be.activate_(y, activation::quick_gelu);
        CHECK(rel_err(y, qg) < 1e-5);
    }
}

TEST_CASE("cpu backend: 2x2 and 3x3 average pooling, odd sizes") {
    std::mt19937 rng(13);
    const cpu_backend be;
    for (int64_t k : {2, 3})
        for (int64_t size : {5, 17, 35}) {
            const tensor x = random_tensor({2, 3, size, size + 1}, rng);
            const int64_t ho = size / k, wo = (size + 1) / k;
            std::vector<double> ref(static_cast<size_t>(6 * ho * wo));
            for (int64_t p = 0; p < 6; ++p)
                for (int64_t oy = 0; oy < ho; ++oy)
                    for (int64_t ox = 0; ox < wo; ++ox) {
                        double sum = 0;
                        for (int64_t ky = 0; ky < k; ++ky)
                            for (int64_t kx = 0; kx < k; ++kx) sum += x[(p * size + oy * k + ky) * (size + 1) + ox * k + kx];
                        ref[static_cast<size_t>((p * ho + oy) * wo + ox)] = sum / static_cast<double>(k * k);
                    }
            CHECK(rel_err(be.avg_pool2d(x, k), ref) < 1e-6);
        }
}

TEST_CASE("cpu backend: F16 and BF16 conversion is exact for every 16-bit pattern") {
    std::vector<unsigned char> bytes(2 * 65536 + 6);  // + an odd offset and a short tail
    for (uint32_t v = 0; v < 65536; ++v) {
        bytes[2 * v + 1] = static_cast<unsigned char>(v & 0xff);
        bytes[2 * v + 2] = static_cast<unsigned char>(v >> 8);
    }
    std::vector<float> out(65536);
    detail::f16_to_f32(bytes.data() + 1, out.data(), 65536);
    int vector_vs_scalar = 0, scalar_vs_ieee = 0;
    for (uint32_t v = 0; v < 65536; ++v) {
        const float want = detail::f16_to_f32(static_cast<uint16_t>(v));
        if (std::isnan(want)) vector_vs_scalar += !std::isnan(out[v]);
        else vector_vs_scalar += detail::float_to_bits(out[v]) != detail::float_to_bits(want);
        // The independent reference: IEEE 754 binary16 by its definition (1 sign, 5 exponent bits
        // biased by 15, 10 fraction bits; exponent 0 subnormal, 31 infinity or NaN), exact in double.
        const int sign = v >> 15, exponent = (v >> 10) & 31, fraction = v & 1023;
        double ieee = exponent == 0    ? std::ldexp(fraction, -24)
                      : exponent == 31 ? (fraction ? NAN : HUGE_VAL)
                                       : std::ldexp(1024 + fraction, exponent - 25);
        if (sign) ieee = -ieee;
        const bool same = std::isnan(ieee) ? std::isnan(want) && std::isnan(out[v])
                                           : static_cast<double>(want) == ieee && std::signbit(want) == (sign != 0);
        scalar_vs_ieee += !same;
    }
    CHECK(vector_vs_scalar == 0);
    CHECK(scalar_vs_ieee == 0);
    // Spot checks of values everyone knows: 1, -2, 65504 (largest), 2^-14 (smallest normal),
    // 2^-24 (smallest subnormal), 0.333251953125 (0x3555).
    CHECK(detail::f16_to_f32(0x3c00) == 1.0f);
    CHECK(detail::f16_to_f32(0xc000) == -2.0f);
    CHECK(detail::f16_to_f32(0x7bff) == 65504.0f);
    CHECK(detail::f16_to_f32(0x0400) == std::ldexp(1.0f, -14));
    CHECK(detail::f16_to_f32(0x0001) == std::ldexp(1.0f, -24));
    CHECK(detail::f16_to_f32(0x3555) == 0.333251953125f);
    detail::bf16_to_f32(bytes.data() + 1, out.data(), 65536);
    int bf16_wrong = 0;
    for (uint32_t v = 0; v < 65536; ++v) {
        // bfloat16 is by definition the top half of a float32.
        const uint32_t bits = v << 16;
        float ieee;
        std::memcpy(&ieee, &bits, sizeof ieee);
        const float scalar = detail::bf16_to_f32(static_cast<uint16_t>(v));
        bf16_wrong += detail::float_to_bits(out[v]) != detail::float_to_bits(scalar) ||
                      (std::isnan(ieee) ? !std::isnan(scalar) : detail::float_to_bits(scalar) != bits);
    }
    CHECK(bf16_wrong == 0);
}

// The fp32 micro-kernels one by one: the AVX2 one and the AVX-512F one (gemm_avx512.hpp), each
// forced for the test (gemm_detail::fp32_kernel(); skipped where the CPU lacks it), against
// double-precision loops on random shapes with every edge: M, N, K off the tile / panel / K-block
// sizes, K = 1, N = 1, strided rows, every epilogue, batches, weights packed at load and slices of
// them at any row. Columns past N in strided rows must stay untouched.
#ifdef ZEROCLIP_CPU_AVX2
namespace {

namespace cpu = detail::cpu;

/// Runs the process on `path`'s fp32 kernel while in scope.
struct fp32_kernel_scope {
    cpu::isa saved;
    explicit fp32_kernel_scope(cpu::isa path) : saved(cpu::gemm_detail::fp32_kernel()) { cpu::gemm_detail::fp32_kernel() = path; }
    ~fp32_kernel_scope() { cpu::gemm_detail::fp32_kernel() = saved; }
    fp32_kernel_scope(const fp32_kernel_scope&) = delete;
    fp32_kernel_scope& operator=(const fp32_kernel_scope&) = delete;
};

bool fp32_path_available(cpu::isa path) {
    if (cpu::cpu_has(path)) return true;
    MESSAGE(ZEROCLIP_TEST_SKIP_MARK "this CPU has no " << cpu::isa_name(path) << ": its fp32 kernel is not tested here");
    return false;
}

std::vector<float> random_floats(size_t n, std::mt19937& rng) {
    std::vector<float> v(n);
    std::normal_distribution<float> d;
    for (auto& x : v) x = d(rng);
    return v;
}

double apply_act(double v, cpu::act a) {
    switch (a) {
        case cpu::act::quick_gelu: return quick_gelu(v);
        case cpu::act::relu: return v < 0 ? 0 : v;
        case cpu::act::gelu: return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
        default: return v;
    }
}

/// One product's operands and epilogue, random; `c` holds C0 (for accumulate) in rows ldc apart.
struct product_case {
    int64_t m, n, k, lda, ldb, ldc;
    std::vector<float> a, b, c, bias, residual;
    cpu::epilogue ep;
};

product_case random_case(int64_t m, int64_t n, int64_t k, bool transposed_b, bool bias_per_row, std::mt19937& rng) {
    product_case p;
    std::uniform_int_distribution<int> coin(0, 1), pad(0, 5), acts(0, 3);
    p.m = m, p.n = n, p.k = k;
    p.lda = k + (coin(rng) ? pad(rng) : 0);
    p.ldb = (transposed_b ? k : n) + (coin(rng) ? pad(rng) : 0);
    p.ldc = n + (coin(rng) ? pad(rng) : 0);
    p.a = random_floats(static_cast<size_t>(m * p.lda), rng);
    p.b = random_floats(static_cast<size_t>((transposed_b ? n : k) * p.ldb), rng);
    p.c = random_floats(static_cast<size_t>(m * p.ldc), rng);
    if (coin(rng)) p.bias = random_floats(static_cast<size_t>(bias_per_row ? m : n), rng);
    if (coin(rng)) p.residual = random_floats(static_cast<size_t>(m * p.ldc), rng);
    p.ep.bias = p.bias.empty() ? nullptr : p.bias.data();
    p.ep.residual = p.residual.empty() ? nullptr : p.residual.data();
    p.ep.activation = static_cast<cpu::act>(acts(rng));
    p.ep.accumulate = coin(rng);
    return p;
}

/// Checks `got` (rows ldc apart) against the double-precision result of p: act([C0 +] A·op(B) +
/// bias + residual) in the first n columns, C0 untouched past them. B is (n, k) or (k, n).
void check_product(const product_case& p, const std::vector<float>& got, bool transposed_b, bool bias_per_row) {
    double worst = 0, scale = 1;
    int64_t untouched_changed = 0;
    for (int64_t i = 0; i < p.m; ++i) {
        for (int64_t j = 0; j < p.n; ++j) {
            double s = 0;
            for (int64_t t = 0; t < p.k; ++t)
                s += static_cast<double>(p.a[static_cast<size_t>(i * p.lda + t)]) *
                     p.b[static_cast<size_t>(transposed_b ? j * p.ldb + t : t * p.ldb + j)];
            const auto at = static_cast<size_t>(i * p.ldc + j);
            if (p.ep.accumulate) s += p.c[at];
            if (p.ep.bias) s += p.ep.bias[bias_per_row ? i : j];
            if (p.ep.residual) s += p.ep.residual[at];
            s = apply_act(s, p.ep.activation);
            const double x = got[at];
            if (!std::isfinite(x)) worst = HUGE_VAL;
            else worst = std::max(worst, std::abs(x - s));
            scale = std::max(scale, std::abs(s));
        }
        for (int64_t j = p.n; j < p.ldc; ++j)
            untouched_changed += got[static_cast<size_t>(i * p.ldc + j)] != p.c[static_cast<size_t>(i * p.ldc + j)];
    }
    CHECK(worst / scale < 1e-5);
    CHECK(untouched_changed == 0);
}

const int64_t edge_m[] = {1, 2, 5, 6, 7, 11, 12, 13, 17, 19, 20, 23, 25, 29, 50, 97, 150};
const int64_t edge_n[] = {1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 48, 63, 64, 65, 100, 130};
const int64_t edge_k[] = {1, 2, 3, 8, 15, 16, 17, 255, 256, 257, 513, 700};

template <class T, size_t N>
T pick(const T (&values)[N], std::mt19937& rng) {
    return values[std::uniform_int_distribution<size_t>(0, N - 1)(rng)];
}

/// gemm_nt, gemm_nn (batched, with A packed per call or at load) and conv2d_nchw on `path`.
void check_fp32_kernel(cpu::isa path) {
    const fp32_kernel_scope scope(path);
    std::mt19937 rng(static_cast<unsigned>(17 + static_cast<int>(path)));
    for (int trial = 0; trial < 250; ++trial) {
        const int64_t m = pick(edge_m, rng), n = pick(edge_n, rng), k = pick(edge_k, rng);
        CAPTURE(trial);
        CAPTURE(m);
        CAPTURE(n);
        CAPTURE(k);
        product_case p = random_case(m, n, k, /*transposed_b=*/true, /*bias_per_row=*/false, rng);
        CAPTURE(static_cast<int>(p.ep.activation));
        CAPTURE(p.ep.accumulate);
        std::vector<float> got = p.c;
        cpu::gemm_nt(m, n, k, p.a.data(), p.lda, p.b.data(), p.ldb, got.data(), p.ldc, p.ep, trial % 3);
        check_product(p, got, true, false);
    }
    for (int trial = 0; trial < 120; ++trial) {
        const int64_t m = pick(edge_m, rng), n = pick(edge_n, rng), k = pick(edge_k, rng);
        const int64_t batch = 1 + trial % 3;
        const bool prepacked = trial % 2 == 1;
        CAPTURE(trial);
        CAPTURE(m);
        CAPTURE(n);
        CAPTURE(k);
        CAPTURE(batch);
        CAPTURE(prepacked);
        // The batch shares A, the strides and the epilogue's bias and activation; each item has its
        // own B, C0 and residual, one after another in one buffer each (b_stride, c_stride).
        product_case p0 = random_case(m, n, k, false, true, rng);
        if (prepacked) {  // prepack_a packs A with rows k apart
            p0.lda = k;
            p0.a = random_floats(static_cast<size_t>(m * k), rng);
        }
        const int64_t bs = k * p0.ldb, cs = m * p0.ldc;
        std::vector<product_case> items(static_cast<size_t>(batch), p0);
        std::vector<float> b_all, c_all, r_all;
        for (int64_t i = 0; i < batch; ++i) {
            product_case& it = items[static_cast<size_t>(i)];
            if (i > 0) {
                it.b = random_floats(static_cast<size_t>(bs), rng);
                it.c = random_floats(static_cast<size_t>(cs), rng);
                if (p0.ep.residual) it.residual = random_floats(static_cast<size_t>(cs), rng);
            }
            it.ep.bias = it.bias.empty() ? nullptr : it.bias.data();
            it.ep.residual = it.residual.empty() ? nullptr : it.residual.data();
            b_all.insert(b_all.end(), it.b.begin(), it.b.end());
            c_all.insert(c_all.end(), it.c.begin(), it.c.end());
            r_all.insert(r_all.end(), it.residual.begin(), it.residual.end());
        }
        cpu::epilogue ep = items[0].ep;
        ep.residual = p0.ep.residual ? r_all.data() : nullptr;
        const cpu::prepacked_a packed = prepacked ? cpu::prepack_a(p0.a.data(), m, k) : cpu::prepacked_a{};
        cpu::gemm_nn(m, n, k, p0.a.data(), p0.lda, b_all.data(), p0.ldb, c_all.data(), p0.ldc, ep, batch, bs, cs,
                     trial % 3, prepacked ? &packed : nullptr);
        for (int64_t i = 0; i < batch; ++i) {
            CAPTURE(i);
            check_product(items[static_cast<size_t>(i)],
                          std::vector<float>(c_all.begin() + i * cs, c_all.begin() + (i + 1) * cs), false, true);
        }
    }
}

/// gemm_nt_prepacked on `path`: B packed at load (prepacked_bt), whole and as slices of rows at
/// panel offsets; prepared_linear (the backend's fp32 weights packed at load) at any row offset.
void check_fp32_prepacked(cpu::isa path) {
    const fp32_kernel_scope scope(path);
    std::mt19937 rng(static_cast<unsigned>(29 + static_cast<int>(path)));
    for (int trial = 0; trial < 80; ++trial) {
        const int64_t m = pick(edge_m, rng), n = pick(edge_n, rng) + 16 * (trial % 4), k = pick(edge_k, rng);
        CAPTURE(trial);
        CAPTURE(m);
        CAPTURE(n);
        CAPTURE(k);
        product_case p = random_case(m, n, k, true, false, rng);
        // The weight as the backend keeps it: rows k apart (ldb = k).
        std::vector<float> dense(static_cast<size_t>(n * k));
        for (int64_t j = 0; j < n; ++j) std::copy_n(p.b.begin() + j * p.ldb, k, dense.begin() + j * k);
        p.b = dense, p.ldb = k;
        std::vector<float> store(cpu::prepacked_bt_floats(n, k) + 16);
        auto* aligned = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(store.data()) + 63) & ~uintptr_t{63});
        cpu::prepacked_bt packed;
        packed.n = n, packed.k = k, packed.data = aligned;
        cpu::prepack_bt(p.b.data(), packed);
        for (int64_t r = 0; r < n; r += 7) {  // the packed rows read back
            std::vector<float> row(static_cast<size_t>(k));
            cpu::prepacked_bt_row(packed, r, row.data());
            CHECK(std::equal(row.begin(), row.end(), p.b.begin() + r * k));
        }
        // Rows [row0, row0 + count) at panel offsets, as attention's q, k, v parts of in_proj.
        const int64_t row0 = 16 * std::uniform_int_distribution<int64_t>(0, (n - 1) / 16)(rng);
        const int64_t count = std::uniform_int_distribution<int64_t>(1, n - row0)(rng);
        CAPTURE(row0);
        CAPTURE(count);
        product_case part = p;
        part.n = count;
        part.b.assign(p.b.begin() + row0 * k, p.b.begin() + (row0 + count) * k);
        if (!part.bias.empty()) part.bias.assign(p.bias.begin() + row0, p.bias.begin() + row0 + count);
        part.ep.bias = part.bias.empty() ? nullptr : part.bias.data();
        std::vector<float> got = part.c;
        cpu::gemm_nt_prepacked(m, count, part.a.data(), part.lda, packed, row0, got.data(), part.ldc, part.ep, trial % 3);
        check_product(part, got, true, false);
    }
    // prepared_linear: fp32 weights packed at load, slices at any row (not on a panel: unpacked).
    for (int trial = 0; trial < 30; ++trial) {
        const int64_t m = pick(edge_m, rng), n = 20 + pick(edge_n, rng), k = pick(edge_k, rng);
        const int64_t row0 = std::uniform_int_distribution<int64_t>(0, n - 1)(rng);
        const int64_t count = std::uniform_int_distribution<int64_t>(1, n - row0)(rng);
        CAPTURE(trial);
        CAPTURE(m);
        CAPTURE(n);
        CAPTURE(k);
        CAPTURE(row0);
        CAPTURE(count);
        product_case p = random_case(m, count, k, true, false, rng);
        p.ldc = count;
        p.c.resize(static_cast<size_t>(m * count));
        p.ep.residual = nullptr, p.residual.clear();  // apply's epilogue: bias, activation, accumulate
        const std::vector<float> w = random_floats(static_cast<size_t>(n * k), rng);
        const cpu::prepared_linear prepared(w.data(), n, k, precision::fp32);
        p.b.assign(w.begin() + row0 * k, w.begin() + (row0 + count) * k), p.ldb = k;
        std::vector<float> got = p.c;
        prepared.apply(p.a.data(), p.lda, m, row0, count, got.data(), p.ep);
        check_product(p, got, true, false);
    }
}

}  // namespace

TEST_CASE("cpu backend: fp32 AVX2 kernel against double precision (products, batches, packed weights)") {
    check_fp32_kernel(cpu::isa::avx2);
    check_fp32_prepacked(cpu::isa::avx2);
}

TEST_CASE("cpu backend: fp32 AVX-512F kernel against double precision (products, batches, packed weights)") {
    if (!fp32_path_available(cpu::isa::avx512)) return;
    check_fp32_kernel(cpu::isa::avx512);
    check_fp32_prepacked(cpu::isa::avx512);
}

TEST_CASE("cpu backend: fp32 convolutions (im2col, Winograd, packed at load) on each kernel") {
    for (const cpu::isa path : {cpu::isa::avx2, cpu::isa::avx512}) {
        if (!fp32_path_available(path)) continue;
        CAPTURE(cpu::isa_name(path));
        const fp32_kernel_scope scope(path);
        std::mt19937 rng(31);
        const cpu_backend be;
        struct shape {
            int64_t n, c, h, w, o, k, stride, pad;
        };
        for (const shape s : {shape{2, 3, 17, 19, 5, 3, 2, 1}, shape{2, 16, 7, 7, 33, 1, 1, 0}, shape{1, 4, 5, 5, 3, 5, 1, 2},
                              shape{2, 12, 20, 3, 70, 3, 1, 1}, shape{2, 72, 7, 7, 70, 3, 1, 1}, shape{1, 80, 1, 1, 13, 3, 1, 1},
                              shape{3, 64, 9, 11, 29, 3, 1, 1}, shape{2, 40, 7, 7, 23, 1, 1, 0}}) {
            CAPTURE(s.c);
            CAPTURE(s.h);
            CAPTURE(s.k);
            CAPTURE(s.o);
            const tensor x = random_tensor({s.n, s.c, s.h, s.w}, rng), w = random_tensor({s.o, s.c, s.k, s.k}, rng);
            const tensor b = random_tensor({s.o}, rng);
            const int64_t ho = (s.h + 2 * s.pad - s.k) / s.stride + 1, wo = (s.w + 2 * s.pad - s.k) / s.stride + 1;
            const std::vector<double> ref = reference_conv(x, w, b, s.stride, s.pad);
            const tensor residual = random_tensor({s.n, s.o, ho, wo}, rng);
            std::vector<double> add_relu(ref);
            for (size_t i = 0; i < ref.size(); ++i) add_relu[i] = std::max(0.0, ref[i] + residual[static_cast<int64_t>(i)]);
            CHECK(rel_err(be.conv2d(x, w, b, s.stride, s.pad), ref) < 1e-5);
            CHECK(rel_err(be.conv2d_add_relu(x, w, b, s.stride, s.pad, residual), add_relu) < 1e-5);
            // conv2d_nchw directly, with the weight packed at load and not.
            const cpu::prepacked_a packed = cpu::prepack_a(w.data(), s.o, s.c * s.k * s.k);
            for (const cpu::prepacked_a* pa : {static_cast<const cpu::prepacked_a*>(nullptr), &packed}) {
                tensor y({s.n, s.o, ho, wo});
                cpu::epilogue ep;
                ep.bias = b.data(), ep.residual = residual.data(), ep.activation = cpu::act::relu;
                cpu::conv2d_nchw(x.data(), s.n, s.c, s.h, s.w, w.data(), s.o, s.k, s.k, s.stride, s.pad, y.data(), ep, pa);
                CHECK(rel_err(y, add_relu) < 1e-5);
            }
        }
    }
}

TEST_CASE("cpu backend: the fp32 kernels agree with each other, and ZEROCLIP_CPU_PATH=avx2 caps the AVX-512F one") {
    if (!fp32_path_available(cpu::isa::avx512)) return;
    // Same sums in the same order: the same floats (the epilogues here have no activation, whose
    // AVX2 scalar tail may differ in the last place).
    std::mt19937 rng(37);
    for (int trial = 0; trial < 60; ++trial) {
        const int64_t m = pick(edge_m, rng), n = pick(edge_n, rng), k = pick(edge_k, rng);
        CAPTURE(m);
        CAPTURE(n);
        CAPTURE(k);
        product_case p = random_case(m, n, k, true, false, rng);
        p.ep.activation = trial % 2 ? cpu::act::relu : cpu::act::none;
        std::vector<float> c2 = p.c, c512 = p.c;
        {
            const fp32_kernel_scope scope(cpu::isa::avx2);
            cpu::gemm_nt(m, n, k, p.a.data(), p.lda, p.b.data(), p.ldb, c2.data(), p.ldc, p.ep);
        }
        {
            const fp32_kernel_scope scope(cpu::isa::avx512);
            cpu::gemm_nt(m, n, k, p.a.data(), p.lda, p.b.data(), p.ldb, c512.data(), p.ldc, p.ep);
        }
        CHECK(c2 == c512);
    }
    const char* env = std::getenv("ZEROCLIP_CPU_PATH");
    const std::string cap = env ? env : "";
    if (cap == "avx2" || cap == "scalar") CHECK(!cpu::use_isa(cpu::isa::avx512));
    else if (cap.empty()) CHECK(cpu::use_isa(cpu::isa::avx512));
    // The kernel a process starts with follows the cap (tests reassign it only within a scope).
    CHECK((cpu::gemm_detail::fp32_kernel() == cpu::isa::avx512) == cpu::use_isa(cpu::isa::avx512));
}
#endif  // ZEROCLIP_CPU_AVX2
