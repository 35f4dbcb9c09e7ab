//! Row kernels of the CPU backend: exp, QuickGELU / GELU / ReLU, layer norm, softmax and adds,
//! with AVX2+FMA versions where the compiler targets them (-march=native on x86-64) and plain
//! loops otherwise. The vector exp is Cephes' single-precision one (relative error ≈ 1e-7,
//! NaN in → NaN out where the callers use it). Also what every kernel file shares: the
//! function-level target macros of the run-time paths (cpu_features.hpp) and an 8×8 transpose.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define ZEROCLIP_CPU_AVX2 1
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define ZEROCLIP_CPU_X86 1
// Function-level targets: these kernels are compiled whatever -march says and run only where
// cpu_features.hpp finds the instructions, so one binary serves every x86-64 with AVX2.
#define ZEROCLIP_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define ZEROCLIP_TARGET_F16C __attribute__((target("avx2,fma,f16c")))  // every AVX2 CPU has F16C
#define ZEROCLIP_TARGET_AVXVNNI __attribute__((target("avx2,fma,avxvnni")))
#define ZEROCLIP_TARGET_VNNI __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#define ZEROCLIP_TARGET_BF16 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
// GCC 12 warns of its own _mm512_undefined_ps() in every inlined AVX-512 intrinsic
// (-Wmaybe-uninitialized, GCC bug 105593; -Wuninitialized where -m flags lack AVX-512):
// silenced over the AVX-512 code (vec.hpp, gemm_avx512.hpp, int8_gemm.hpp), where the warning
// can only be that one.
#if defined(__GNUC__) && !defined(__clang__)
#define ZEROCLIP_AVX512_WARNINGS_OFF                                                   \
    _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"") \
        _Pragma("GCC diagnostic ignored \"-Wuninitialized\"")
#define ZEROCLIP_AVX512_WARNINGS_ON _Pragma("GCC diagnostic pop")
#else
#define ZEROCLIP_AVX512_WARNINGS_OFF
#define ZEROCLIP_AVX512_WARNINGS_ON
#endif
#endif

namespace zeroclip::detail::cpu {

#ifdef ZEROCLIP_CPU_X86
/// r[i][j] → r[j][i] for 8 vectors of 8 floats.
ZEROCLIP_TARGET_AVX2 inline void transpose8(__m256 r[8]) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20), r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20), r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31), r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31), r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}
#endif

/// What follows a product in a fused step (nn.Linear → activation, conv → ReLU).
enum class act { none, quick_gelu, gelu, relu };

#ifdef ZEROCLIP_CPU_AVX2
/// e^x for 8 floats (Cephes expf: range reduction by ln 2, degree-5 polynomial).
inline __m256 exp8(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-88.3762626647949f);
    x = _mm256_max_ps(_mm256_min_ps(x, hi), lo);
    __m256 fx = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f));
    fx = _mm256_floor_ps(fx);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
    const __m256 x2 = _mm256_mul_ps(x, x);
    y = _mm256_fmadd_ps(y, x2, _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    // 2^fx: fx in [-127, 128]; at -127 the exponent field is 0 and the factor 0 (e^-88.4 ≈ 0).
    __m256i e = _mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127));
    e = _mm256_slli_epi32(e, 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/// x·σ(1.702x) = x / (1 + e^(−1.702x)) for 8 floats.
inline __m256 quick_gelu8(__m256 x) {
    const __m256 e = exp8(_mm256_mul_ps(x, _mm256_set1_ps(-1.702f)));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

/// max(x, 0) keeping NaN (torch.relu): x < 0 ? 0 : x.
inline __m256 relu8(__m256 x) {
    const __m256 negative = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
    return _mm256_andnot_ps(negative, x);
}

/// The mask of the first r (0..8) lanes, for the tails of rows.
inline __m256i tail_mask(int64_t r) {
    alignas(32) static const int32_t bits[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bits + 8 - r));
}

// The AVX-512F forms of the above, for the fp32 kernel of gemm_avx512.hpp: compiled whatever
// -march says (a function-level target) and called only where the CPU has AVX-512F
// (use_isa(isa::avx512), cpu_features.hpp). Lane for lane the same operations as the 8-wide forms.
#define ZEROCLIP_TARGET_AVX512F __attribute__((target("avx2,fma,avx512f,avx512vl,avx512dq,avx512bw")))
ZEROCLIP_AVX512_WARNINGS_OFF

/// e^x for 16 floats: exp8's steps.
ZEROCLIP_TARGET_AVX512F inline __m512 exp16(__m512 x) {
    const __m512 hi = _mm512_set1_ps(88.3762626647949f), lo = _mm512_set1_ps(-88.3762626647949f);
    x = _mm512_max_ps(_mm512_min_ps(x, hi), lo);
    __m512 fx = _mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), _mm512_set1_ps(0.5f));
    fx = _mm512_roundscale_ps(fx, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
    x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), x);
    __m512 y = _mm512_set1_ps(1.9875691500e-4f);
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507e-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073e-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894e-2f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459e-1f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201e-1f));
    const __m512 x2 = _mm512_mul_ps(x, x);
    y = _mm512_fmadd_ps(y, x2, _mm512_add_ps(x, _mm512_set1_ps(1.0f)));
    __m512i e = _mm512_add_epi32(_mm512_cvttps_epi32(fx), _mm512_set1_epi32(127));
    e = _mm512_slli_epi32(e, 23);
    return _mm512_mul_ps(y, _mm512_castsi512_ps(e));
}

/// x·σ(1.702x) for 16 floats.
ZEROCLIP_TARGET_AVX512F inline __m512 quick_gelu16(__m512 x) {
    const __m512 e = exp16(_mm512_mul_ps(x, _mm512_set1_ps(-1.702f)));
    return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

/// max(x, 0) keeping NaN: x < 0 ? 0 : x.
ZEROCLIP_TARGET_AVX512F inline __m512 relu16(__m512 x) {
    const __mmask16 negative = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    return _mm512_mask_mov_ps(x, negative, _mm512_setzero_ps());
}
ZEROCLIP_AVX512_WARNINGS_ON
#endif

inline float quick_gelu1(float x) { return x / (1.0f + std::exp(-1.702f * x)); }
inline float gelu1(float x) { return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f)); }
inline float relu1(float x) { return x < 0.0f ? 0.0f : x; }

/// In place over n contiguous values.
inline void activate(float* p, int64_t n, act a) {
    int64_t i = 0;
    switch (a) {
        case act::none: return;
        case act::quick_gelu:
#ifdef ZEROCLIP_CPU_AVX2
            for (; i + 8 <= n; i += 8) _mm256_storeu_ps(p + i, quick_gelu8(_mm256_loadu_ps(p + i)));
#endif
            for (; i < n; ++i) p[i] = quick_gelu1(p[i]);
            return;
        case act::gelu:
            for (; i < n; ++i) p[i] = gelu1(p[i]);
            return;
        case act::relu:
#ifdef ZEROCLIP_CPU_AVX2
            for (; i + 8 <= n; i += 8) _mm256_storeu_ps(p + i, relu8(_mm256_loadu_ps(p + i)));
#endif
            for (; i < n; ++i) p[i] = relu1(p[i]);
            return;
    }
}

/// p[i] = act(p[i] + bias) (bias a scalar: one conv output channel).
inline void bias_activate(float* p, int64_t n, float bias, act a) {
    int64_t i = 0;
#ifdef ZEROCLIP_CPU_AVX2
    const __m256 b = _mm256_set1_ps(bias);
    if (a == act::relu) {
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(p + i, relu8(_mm256_add_ps(_mm256_loadu_ps(p + i), b)));
    } else if (a == act::none) {
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(p + i, _mm256_add_ps(_mm256_loadu_ps(p + i), b));
    }
#endif
    for (int64_t j = i; j < n; ++j) p[j] += bias;
    activate(p + i, n - i, a);
}

/// p[i] = act(p[i] + bias[i]) (bias may be null: activation only).
inline void bias_activate(float* p, int64_t n, const float* bias, act a) {
    if (!bias) return activate(p, n, a);
    int64_t i = 0;
#ifdef ZEROCLIP_CPU_AVX2
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_add_ps(_mm256_loadu_ps(p + i), _mm256_loadu_ps(bias + i));
        if (a == act::quick_gelu) v = quick_gelu8(v);
        else if (a == act::relu) v = relu8(v);
        _mm256_storeu_ps(p + i, v);
    }
    if (a == act::gelu) activate(p, i, a);
#endif
    for (int64_t j = i; j < n; ++j) p[j] += bias[j];
    activate(p + i, n - i, a);
}

/// x[i] += y[i].
inline void add(float* x, const float* y, int64_t n) {
    int64_t i = 0;
#ifdef ZEROCLIP_CPU_AVX2
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
#endif
    for (; i < n; ++i) x[i] += y[i];
}

/// out[i] = (a[2i] + a[2i+1] + b[2i] + b[2i+1]) · scale for i < n: one output row of a 2×2
/// average pool, summed in the same order as the generic loop ((a0 + a1) + b0) + b1.
inline void pool2_row(const float* a, const float* b, float* out, int64_t n, float scale) {
    int64_t i = 0;
#ifdef ZEROCLIP_CPU_AVX2
    const __m256 s = _mm256_set1_ps(scale);
    const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    for (; i + 8 <= n; i += 8) {
        // Deinterleave 16 inputs of each row into (even lanes, odd lanes).
        const __m256 a0 = _mm256_permutevar8x32_ps(_mm256_loadu_ps(a + 2 * i), even);
        const __m256 a1 = _mm256_permutevar8x32_ps(_mm256_loadu_ps(a + 2 * i + 8), even);
        const __m256 b0 = _mm256_permutevar8x32_ps(_mm256_loadu_ps(b + 2 * i), even);
        const __m256 b1 = _mm256_permutevar8x32_ps(_mm256_loadu_ps(b + 2 * i + 8), even);
        const __m256 ae = _mm256_permute2f128_ps(a0, a1, 0x20), ao = _mm256_permute2f128_ps(a0, a1, 0x31);
        const __m256 be = _mm256_permute2f128_ps(b0, b1, 0x20), bo = _mm256_permute2f128_ps(b0, b1, 0x31);
        const __m256 sum = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(ae, ao), be), bo);
        _mm256_storeu_ps(out + i, _mm256_mul_ps(sum, s));
    }
#endif
    for (; i < n; ++i) out[i] = (((a[2 * i] + a[2 * i + 1]) + b[2 * i]) + b[2 * i + 1]) * scale;
}

/// Layer norm of one row: mean and variance in double (two passes), then
/// out = (in − mean) · rstd · w + b in float.
inline void layer_norm_row(const float* in, float* out, int64_t n, const float* w, const float* b, double eps) {
    double mean = 0, var = 0;
    int64_t i = 0;
#ifdef ZEROCLIP_CPU_AVX2
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(in + i);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    }
    alignas(32) double lanes[4];
    _mm256_store_pd(lanes, _mm256_add_pd(s0, s1));
    mean = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
#endif
    for (; i < n; ++i) mean += in[i];
    mean /= static_cast<double>(n);
    i = 0;
#ifdef ZEROCLIP_CPU_AVX2
    const __m256d m = _mm256_set1_pd(mean);
    s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(in + i);
        const __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), m);
        const __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), m);
        s0 = _mm256_fmadd_pd(d0, d0, s0);
        s1 = _mm256_fmadd_pd(d1, d1, s1);
    }
    _mm256_store_pd(lanes, _mm256_add_pd(s0, s1));
    var = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
#endif
    for (; i < n; ++i) var += (in[i] - mean) * (in[i] - mean);
    const float inv = static_cast<float>(1.0 / std::sqrt(var / static_cast<double>(n) + eps));
    const float mu = static_cast<float>(mean);
    i = 0;
#ifdef ZEROCLIP_CPU_AVX2
    const __m256 vmu = _mm256_set1_ps(mu), vinv = _mm256_set1_ps(inv);
    for (; i + 8 <= n; i += 8) {
        const __m256 t = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(in + i), vmu), vinv);
        _mm256_storeu_ps(out + i, _mm256_fmadd_ps(t, _mm256_loadu_ps(w + i), _mm256_loadu_ps(b + i)));
    }
#endif
    for (; i < n; ++i) out[i] = (in[i] - mu) * inv * w[i] + b[i];
}

/// In place: row[0, visible) = softmax(scale · row[0, visible)), row[visible, n) = 0.
inline void softmax_row(float* row, int64_t visible, int64_t n, float scale = 1.0f) {
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < visible; ++i) mx = std::max(mx, row[i]);
    mx *= scale;
    float sum = 0;
    int64_t i = 0;
#ifdef ZEROCLIP_CPU_AVX2
    const __m256 vs = _mm256_set1_ps(scale), vm = _mm256_set1_ps(mx);
    __m256 acc = _mm256_setzero_ps();
    for (; i + 8 <= visible; i += 8) {
        const __m256 e = exp8(_mm256_fmsub_ps(_mm256_loadu_ps(row + i), vs, vm));
        _mm256_storeu_ps(row + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, acc);
    for (float l : lanes) sum += l;
#endif
    for (; i < visible; ++i) sum += row[i] = std::exp(row[i] * scale - mx);
    const float inv = 1.0f / sum;
    for (i = 0; i < visible; ++i) row[i] *= inv;
    std::fill(row + visible, row + n, 0.0f);
}

}  // namespace zeroclip::detail::cpu
