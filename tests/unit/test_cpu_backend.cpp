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
        be.prepare_conv2d(w, 1, pad);
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
