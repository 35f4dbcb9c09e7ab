//! bfloat16 products for linear layers: y = x·Wᵀ + b with W stored as bf16 (rounded to nearest
//! even), sums in float32. Paths, picked at run time (cpu_features.hpp):
//!  avx512bf16  vdpbf16ps: x rounded to bf16 as well, pairs of products added into float32
//!              (the instruction flushes denormals; the scalar reference does the same).
//!  avx2        the fallback where AVX-512 BF16 is absent: the bf16 weights widened to float32
//!              (exact) and FMAs with float32 x, so only the weights lose precision.
//!  scalar      the avx2 arithmetic in plain loops (also the reference for it).
//! Weights: panels of 16 channels, each [K/2][16][2] bf16 (a 32-bit lane = 2 k of a channel).
#pragma once

#include <cfloat>
#include <vector>

#include "cpu_features.hpp"
#include "lowp_common.hpp"

namespace zeroclip::detail::cpu {

/// float → bf16, rounded to nearest even (NaN stays a quiet NaN).
inline uint16_t to_bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return static_cast<uint16_t>(u >> 16);
}

/// bf16 → float (exact).
inline float from_bf16(uint16_t h) {
    const uint32_t u = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

/// A weight (N, K) as bf16 panels; the memory is the caller's.
struct bf16_weights {
    int64_t n = 0, k = 0, kp = 0;  // kp: K rounded up to 2 (zero padded)
    uint16_t* q = nullptr;         // panels()·kp·16 values, 64-byte aligned
    int64_t panels() const { return (n + 15) / 16; }
    const uint16_t* panel(int64_t p) const { return q + p * kp * 16; }
    static size_t bytes(int64_t n, int64_t k) { return static_cast<size_t>((n + 15) / 16 * ((k + 1) / 2 * 2) * 16 * 2); }
};

/// W (n, k) row-major → `out` in `mem` (bf16_weights::bytes(n, k), 64-byte aligned).
inline void bf16_prepare(const float* w, int64_t n, int64_t k, void* mem, bf16_weights& out) {
    out.n = n, out.k = k, out.kp = (k + 1) / 2 * 2;
    out.q = static_cast<uint16_t*>(mem);
    parallel_for(out.panels() * 16, 16, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
            uint16_t* panel = out.q + (c / 16) * out.kp * 16;
            for (int64_t i = 0; i < out.kp; ++i)
                panel[(i / 2) * 32 + (c % 16) * 2 + i % 2] = c < n && i < k ? to_bf16(w[c * k + i]) : 0;
        }
    });
}

/// The value of weight (c, i) as the kernels read it.
inline float bf16_weight_at(const bf16_weights& w, int64_t c, int64_t i) {
    return from_bf16(w.panel(c / 16)[(i / 2) * 32 + (c % 16) * 2 + i % 2]);
}

namespace bf16_detail {

/// Scalar tile, the avx2 arithmetic: for each k pair, acc = fma(x[2g], w[2g], acc), then 2g + 1.
inline void tile_scalar(const float* x, int64_t ldx, const bf16_weights& w, const lowp_out& o, int64_t r0, int mr,
                        int64_t p) {
    float v[16 * 4];
    const uint16_t* panel = w.panel(p);
    for (int i = 0; i < mr; ++i)
        for (int j = 0; j < 16; ++j) {
            float acc = 0.0f;
            const float* row = x + (r0 + i) * ldx;
            for (int64_t g = 0; g < w.kp; ++g) {
                const float a = g < w.k ? row[g] : 0.0f;
                acc = std::fma(a, from_bf16(panel[(g / 2) * 32 + j * 2 + g % 2]), acc);
            }
            const int64_t c = p * 16 + j;
            v[i * 16 + j] = acc + (o.bias && c >= o.lo && c < o.hi ? o.bias[c - o.lo] : 0.0f);
        }
    lowp_store_partial(o, r0, mr, p * 16, 16, v, 16);
}

#ifdef ZEROCLIP_CPU_X86

/// acc + bias (+ y) into y, 8 channels at c; tiles straddling [lo, hi) go column by column.
ZEROCLIP_TARGET_AVX2 inline void store8(const lowp_out& o, int64_t r, int64_t c, __m256 acc, float* spill) {
    if (c >= o.lo && c + 8 <= o.hi) {
        float* dst = o.y + r * o.ldy + (c - o.lo);
        if (o.bias) acc = _mm256_add_ps(acc, _mm256_loadu_ps(o.bias + (c - o.lo)));
        if (o.accumulate) acc = _mm256_add_ps(_mm256_loadu_ps(dst), acc);
        _mm256_storeu_ps(dst, acc);
        return;
    }
    _mm256_storeu_ps(spill, acc);
    for (int j = 0; j < 8; ++j)
        if (o.bias && c + j >= o.lo && c + j < o.hi) spill[j] += o.bias[c + j - o.lo];
    lowp_store_partial(o, r, 1, c, 8, spill, 8);
}

/// AVX2 tile: MR rows × 16 channels, weights widened to float32 (even k: the low half of a lane).
template <int MR>
ZEROCLIP_TARGET_AVX2 void tile_avx2(const float* x, int64_t ldx, const bf16_weights& w, const lowp_out& o, int64_t r0,
                                    int64_t p) {
    __m256 acc[MR][2];
    for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    const __m256i high = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
    const uint16_t* panel = w.panel(p);
    for (int64_t g = 0; g < w.kp; g += 2) {
        __m256 we[2], wo[2];
        for (int h = 0; h < 2; ++h) {
            const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel + 16 * g + 16 * h));
            we[h] = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
            wo[h] = _mm256_castsi256_ps(_mm256_and_si256(v, high));
        }
        const bool odd = g + 1 < w.k;
#pragma GCC unroll 4
        for (int i = 0; i < MR; ++i) {
            const float* row = x + (r0 + i) * ldx;
            const __m256 a0 = _mm256_set1_ps(row[g]), a1 = _mm256_set1_ps(odd ? row[g + 1] : 0.0f);
            for (int h = 0; h < 2; ++h) acc[i][h] = _mm256_fmadd_ps(a1, wo[h], _mm256_fmadd_ps(a0, we[h], acc[i][h]));
        }
    }
    alignas(32) float spill[8];
    for (int i = 0; i < MR; ++i)
        for (int h = 0; h < 2; ++h) store8(o, r0 + i, p * 16 + 8 * h, acc[i][h], spill);
}

/// AVX-512 BF16 tile: MR rows × 16·NP channels; xb holds x rounded to bf16 (m, kp).
template <int MR, int NP>
ZEROCLIP_TARGET_BF16 void tile_bf16(const uint16_t* xb, const bf16_weights& w, const lowp_out& o, int64_t r0,
                                    int64_t p) {
    __m512 acc[MR][NP];
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NP; ++j) acc[i][j] = _mm512_setzero_ps();
    const uint16_t* rows = xb + r0 * w.kp;
    for (int64_t g = 0; g < w.kp; g += 2) {
        __m512i wv[NP];
        for (int j = 0; j < NP; ++j) wv[j] = _mm512_load_si512(w.panel(p + j) + 16 * g);
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
            int32_t a2;
            std::memcpy(&a2, rows + i * w.kp + g, 4);
            const __m512i a = _mm512_set1_epi32(a2);
            for (int j = 0; j < NP; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], (__m512bh)a, (__m512bh)wv[j]);
        }
    }
    alignas(32) float spill[8];
    for (int j = 0; j < NP; ++j)
        for (int i = 0; i < MR; ++i) {
            store8(o, r0 + i, (p + j) * 16, _mm512_maskz_extractf32x8_ps(0xff, acc[i][j], 0), spill);
            store8(o, r0 + i, (p + j) * 16 + 8, _mm512_maskz_extractf32x8_ps(0xff, acc[i][j], 1), spill);
        }
}

/// A row of x (k) → bf16 (kp), zero padded (the vdpbf16ps operand), by vcvtne2ps2bf16: rounded to
/// nearest even as to_bf16 (denormals aside, which the products flush to zero either way).
ZEROCLIP_TARGET_BF16 inline void round_row_bf16(const float* row, int64_t k, int64_t kp, uint16_t* out) {
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {
        const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(row + i + 16), _mm512_loadu_ps(row + i));
        _mm512_storeu_si512(out + i, (__m512i)v);
    }
    for (; i < kp; ++i) out[i] = i < k ? to_bf16(row[i]) : 0;
}

template <int MR>
ZEROCLIP_TARGET_BF16 void tile_bf16_np(const uint16_t* xb, const bf16_weights& w, const lowp_out& o, int64_t r0,
                                       int64_t p, int np) {
    if (np == 2) tile_bf16<MR, 2>(xb, w, o, r0, p);
    else tile_bf16<MR, 1>(xb, w, o, r0, p);
}
#endif  // ZEROCLIP_CPU_X86

}  // namespace bf16_detail

/// The reference of the avx512bf16 path for one output before the bias: Σ over k pairs of
/// (x[2g+1]·w[2g+1] then x[2g]·w[2g]) added to a float32 sum, denormal inputs and sums flushed to
/// zero (what vdpbf16ps does); x and w are the bf16 values.
inline float bf16_dot_reference(const uint16_t* x, const uint16_t* w, int64_t kp) {
    auto daz = [](float v) { return std::fabs(v) < FLT_MIN ? 0.0f * v : v; };
    float acc = 0.0f;
    for (int64_t g = 0; g < kp; g += 2) {
        acc = daz(acc + daz(from_bf16(x[g + 1])) * daz(from_bf16(w[g + 1])));
        acc = daz(acc + daz(from_bf16(x[g])) * daz(from_bf16(w[g])));
    }
    return acc;
}

/// y = x·W[lo, hi)ᵀ (+ bias, activation as `o` says) for x (m, k) rows ldx apart, on `path`
/// (isa::avx512_bf16, isa::avx2 or isa::scalar; the caller checks the CPU has it).
inline void bf16_linear(isa path, const float* x, int64_t ldx, int64_t m, const bf16_weights& w, const lowp_out& o,
                        int threads = 0) {
    using namespace bf16_detail;
#ifdef ZEROCLIP_CPU_X86
    if (path == isa::avx512_bf16) {
        thread_local std::vector<uint16_t> buf;
        buf.resize(static_cast<size_t>(m * w.kp + 32));
        uint16_t* const xb = buf.data();  // this thread's buffer: `buf` inside a task would be the worker's
        // (A lambda does not inherit a function's target: the row function has it.)
        parallel_for(m, std::max<int64_t>(1, 16384 / std::max<int64_t>(w.k, 1)), [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r) round_row_bf16(x + r * ldx, w.k, w.kp, xb + r * w.kp);
        });
        lowp_run(m, w.k, o, 8, 2, [&](int64_t r0, int mr, int64_t p, int np) {
            with_rows<8>(mr, [&](auto rows) { tile_bf16_np<decltype(rows)::value>(xb, w, o, r0, p, np); });
        }, threads);
        return;
    }
    if (path == isa::avx2) {
        lowp_run(m, w.k, o, 4, 1, [&](int64_t r0, int mr, int64_t p, int) {
            with_rows<4>(mr, [&](auto rows) { tile_avx2<decltype(rows)::value>(x, ldx, w, o, r0, p); });
        }, threads);
        return;
    }
#endif
    lowp_run(m, w.k, o, 4, 1, [&](int64_t r0, int mr, int64_t p, int) { tile_scalar(x, ldx, w, o, r0, mr, p); },
             threads);
}

}  // namespace zeroclip::detail::cpu
