//! int8 products for linear layers: y = x·Wᵀ + b with W int8, symmetric per output channel
//! (w ≈ q·s_c, |q| ≤ 127), and x quantised per row when it arrives (x ≈ q·s_r, |q| ≤ 127). The
//! integer sums Σ q_x·q_w are exact in int32, then y = sum·(s_r·s_c) + b in one FMA.
//!
//! Paths, picked at run time (cpu_features.hpp), all giving the same bits:
//!  avx512vnni  vpdpbusd (u8 × s8 → s32): x is stored as u8 = q + 128, and the extra 128·Σ q_w
//!              per channel is subtracted once, at the end (kept with the weights).
//!  avxvnni     the same vpdpbusd on 256-bit vectors (AVX-VNNI: Alder Lake and later, Zen 5):
//!              int8_linear uses it for isa::avx2 where the CPU has it and ZEROCLIP_CPU_PATH
//!              allows (=avx2 measures the plain AVX2 kernel).
//!  avx2        vpmaddubsw + vpmaddwd(·, 1): vpmaddubsw adds two u8 × s8 products into int16 with
//!              saturation, so it gets |q_w| (≤ 127) and sign(q_w)·q_x (|·| ≤ 127): a pair is at
//!              most 2·127² = 32258 < 32767, never saturated, with full 8-bit activations. Two
//!              such int16 sums may reach 64516, so each is widened (vpmaddwd) before the next.
//!  scalar      the reference loop (and the path of a CPU without AVX2).
//! Weights: panels of 16 channels, each [K/4][16][4] bytes (a 32-bit lane = 4 k of a channel).
#pragma once

#include <vector>

#include "cpu_features.hpp"
#include "lowp_common.hpp"

namespace zeroclip::detail::cpu {

/// A weight (N, K) quantised and laid out for the kernels; the memory is the caller's.
struct int8_weights {
    int64_t n = 0, k = 0, kp = 0;  // kp: K rounded up to 4 (zero padded)
    int8_t* q = nullptr;           // panels()·kp·16 bytes, 64-byte aligned
    float* scale = nullptr;        // per channel, panels()·16
    int32_t* offset = nullptr;     // per channel: 128·Σ_k q (the vpdpbusd path's zero-point term)
    int64_t panels() const { return (n + 15) / 16; }
    const int8_t* panel(int64_t p) const { return q + p * kp * 16; }
    /// Bytes of q, scale and offset for (n, k), each part 64-byte aligned.
    static size_t bytes(int64_t n, int64_t k) {
        const auto p = static_cast<size_t>((n + 15) / 16);
        return p * static_cast<size_t>((k + 3) / 4 * 4) * 16 + 2 * (p * 64 + 64);
    }
};

/// W (n, k) row-major → `out`, its pointers carved from `mem` (int8_weights::bytes(n, k), 64-aligned).
inline void int8_prepare(const float* w, int64_t n, int64_t k, void* mem, int8_weights& out) {
    out.n = n, out.k = k, out.kp = (k + 3) / 4 * 4;
    auto* base = static_cast<unsigned char*>(mem);
    const size_t qbytes = static_cast<size_t>(out.panels() * out.kp * 16);
    out.q = reinterpret_cast<int8_t*>(base);
    out.scale = reinterpret_cast<float*>(base + (qbytes + 63) / 64 * 64);
    out.offset = reinterpret_cast<int32_t*>(out.scale + out.panels() * 16 + 16);
    parallel_for(out.panels() * 16, 16, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
            int8_t* panel = out.q + (c / 16) * out.kp * 16;
            const int64_t lane = c % 16;
            float mx = 0.0f;
            if (c < n)
                for (int64_t i = 0; i < k; ++i) mx = std::max(mx, std::fabs(w[c * k + i]));
            const float s = mx / 127.0f, inv = mx > 0.0f ? 127.0f / mx : 0.0f;
            int32_t sum = 0;
            for (int64_t i = 0; i < out.kp; ++i) {
                const float v = c < n && i < k ? w[c * k + i] * inv : 0.0f;
                const auto qv = static_cast<int8_t>(std::clamp(std::nearbyint(v), -127.0f, 127.0f));
                panel[(i / 4) * 64 + lane * 4 + i % 4] = qv;
                sum += qv;
            }
            out.scale[c] = s;
            out.offset[c] = 128 * sum;
        }
    });
}

/// The value of weight (c, i) as the kernels read it (tests and the unaligned fallback).
inline int8_t int8_weight_at(const int8_weights& w, int64_t c, int64_t i) {
    return w.panel(c / 16)[(i / 4) * 64 + (c % 16) * 4 + i % 4];
}

namespace int8_detail {

/// One row → q (kp bytes) and its scale, in plain code: q = round(x·127/max|x|), ties to even.
inline void quantize_row_scalar(const float* row, int64_t k, int64_t kp, int8_t* out, float* scale, bool plus128) {
    float mx = 0.0f;
    for (int64_t i = 0; i < k; ++i) mx = std::max(mx, std::fabs(row[i]));
    const float inv = mx > 0.0f ? 127.0f / mx : 0.0f;
    *scale = mx / 127.0f;
    const int bias = plus128 ? 128 : 0;
    for (int64_t i = 0; i < kp; ++i) {
        const float v = i < k ? std::clamp(std::nearbyint(row[i] * inv), -127.0f, 127.0f) : 0.0f;
        out[i] = static_cast<int8_t>(static_cast<uint8_t>(static_cast<int>(v) + bias));
    }
}

#ifdef ZEROCLIP_CPU_X86
/// 32 values · inv → 32 bytes, rounded to nearest even (vcvtps2dq, as nearbyint) and clamped to
/// ±127, then xor `flip` (0x80 for the +128 form).
ZEROCLIP_TARGET_AVX2 inline void quantize32_avx2(const float* from, __m256 inv, __m256i flip, int8_t* to) {
    const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
    __m256i q[4];
    for (int j = 0; j < 4; ++j)
        q[j] = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(from + 8 * j), inv)), lo), hi);
    // packs work within 128-bit halves: the permute puts the 32 bytes back in order.
    const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(to), _mm256_xor_si256(_mm256_permutevar8x32_epi32(b, order), flip));
}

/// quantize_row_scalar with AVX2, the same bits. The tail (a convolution's rows are kh·kw·C
/// long: 27 for the ResNet stem's) goes through the same vector steps from a zero-padded copy.
ZEROCLIP_TARGET_AVX2 inline void quantize_row_avx2(const float* row, int64_t k, int64_t kp, int8_t* out, float* scale,
                                                   bool plus128) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 max0 = _mm256_setzero_ps(), max1 = _mm256_setzero_ps();  // two chains: vmaxps' latency
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
        max0 = _mm256_max_ps(max0, _mm256_andnot_ps(sign, _mm256_loadu_ps(row + i)));
        max1 = _mm256_max_ps(max1, _mm256_andnot_ps(sign, _mm256_loadu_ps(row + i + 8)));
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, _mm256_max_ps(max0, max1));
    float mx = 0.0f;
    for (float v : lanes) mx = std::max(mx, v);
    for (; i < k; ++i) mx = std::max(mx, std::fabs(row[i]));
    const float inv = mx > 0.0f ? 127.0f / mx : 0.0f;
    *scale = mx / 127.0f;
    const __m256 vinv = _mm256_set1_ps(inv);
    const __m256i flip = _mm256_set1_epi8(plus128 ? static_cast<char>(0x80) : 0);
    for (i = 0; i + 32 <= k; i += 32) quantize32_avx2(row + i, vinv, flip, out + i);
    if (i < kp) {  // i ≤ k < i + 32, kp ≤ i + 32: zeros past k are the padding
        float rest[32] = {};
        int8_t bytes[32];
        std::copy(row + i, row + k, rest);
        quantize32_avx2(rest, vinv, flip, bytes);
        std::copy(bytes, bytes + (kp - i), out + i);
    }
}

/// The first min(max(n, 0), 16) lanes.
inline __mmask16 first_lanes(int64_t n) {
    return static_cast<__mmask16>(n >= 16 ? 0xFFFFu : n <= 0 ? 0u : (1u << n) - 1u);
}

/// quantize_row_avx2 in 16 lanes on the VNNI path's CPUs, the tail masked rather than scalar (a
/// convolution's rows are kh·kw·C long: 27 for the ResNet stem's), the same bits. Half the
/// instructions of the AVX2 code per value: quantising is a good part of an int8 convolution.
ZEROCLIP_AVX512_WARNINGS_OFF
ZEROCLIP_TARGET_VNNI inline void quantize_row_avx512(const float* row, int64_t k, int64_t kp, int8_t* out, float* scale,
                                                     bool plus128) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    __m512 max0 = _mm512_setzero_ps(), max1 = _mm512_setzero_ps();  // two chains: vmaxps' latency
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {
        max0 = _mm512_max_ps(max0, _mm512_andnot_ps(sign, _mm512_loadu_ps(row + i)));
        max1 = _mm512_max_ps(max1, _mm512_andnot_ps(sign, _mm512_loadu_ps(row + i + 16)));
    }
    for (; i < k; i += 16)
        max0 = _mm512_max_ps(max0, _mm512_andnot_ps(sign, _mm512_maskz_loadu_ps(first_lanes(k - i), row + i)));
    const float mx = _mm512_reduce_max_ps(_mm512_max_ps(max0, max1));
    const float inv = mx > 0.0f ? 127.0f / mx : 0.0f;
    *scale = mx / 127.0f;
    const __m512 vinv = _mm512_set1_ps(inv);
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
    const __m128i flip = _mm_set1_epi8(plus128 ? static_cast<char>(0x80) : 0);
    for (i = 0; i < kp; i += 16) {  // lanes past k read as 0: the zero padding
        const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(first_lanes(k - i), row + i), vinv);
        const __m512i q = _mm512_min_epi32(_mm512_max_epi32(_mm512_cvtps_epi32(v), lo), hi);
        _mm_mask_storeu_epi8(out + i, first_lanes(kp - i), _mm_xor_si128(_mm512_cvtepi32_epi8(q), flip));
    }
}
ZEROCLIP_AVX512_WARNINGS_ON
#endif

}  // namespace int8_detail

/// Rows of x (m, k), ldx apart → q (m, kp) int8 (zero padded) and a scale per row: q = round(x·127 /
/// max|x|). With `plus128` the bytes are q + 128 (the u8 operand of vpdpbusd). `path`: scalar or
/// any vector path (the same bits; isa::avx512_vnni: 16 lanes, the caller checks the CPU has it).
inline void int8_quantize_rows(const float* x, int64_t ldx, int64_t m, int64_t k, int64_t kp, int8_t* q,
                               float* scale, bool plus128, isa path = isa::scalar) {
    parallel_for(m, std::max<int64_t>(1, 16384 / std::max<int64_t>(k, 1)), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
#ifdef ZEROCLIP_CPU_X86
            if (path == isa::avx512_vnni) {
                int8_detail::quantize_row_avx512(x + r * ldx, k, kp, q + r * kp, scale + r, plus128);
                continue;
            }
            if (path != isa::scalar) {
                int8_detail::quantize_row_avx2(x + r * ldx, k, kp, q + r * kp, scale + r, plus128);
                continue;
            }
#endif
            int8_detail::quantize_row_scalar(x + r * ldx, k, kp, q + r * kp, scale + r, plus128);
        }
    });
}

namespace int8_detail {

/// Scalar tile: the reference arithmetic (q without the +128).
inline void tile_scalar(const int8_t* xq, int64_t kp, const float* xs, const int8_weights& w, const lowp_out& o,
                        int64_t r0, int mr, int64_t p, int np) {
    float v[16 * 4];
    for (int64_t pp = p; pp < p + np; ++pp) {
        const int8_t* panel = w.panel(pp);
        for (int i = 0; i < mr; ++i)
            for (int j = 0; j < 16; ++j) {
                int32_t acc = 0;
                for (int64_t g = 0; g < kp; ++g) acc += xq[(r0 + i) * kp + g] * panel[(g / 4) * 64 + j * 4 + g % 4];
                const int64_t c = pp * 16 + j;
                const float b = o.bias && c >= o.lo && c < o.hi ? o.bias[c - o.lo] : 0.0f;
                v[i * 16 + j] = lowp_value(static_cast<float>(acc), xs[r0 + i], w.scale[c], b);
            }
        lowp_store_partial(o, r0, mr, pp * 16, 16, v, 16);
    }
}

#ifdef ZEROCLIP_CPU_X86

/// Finished values of one 8-channel group at channels c: acc·(s_r·s_c) + bias (+ y), stored.
ZEROCLIP_TARGET_AVX2 inline void store8(const lowp_out& o, int64_t r, int64_t c, __m256 acc, float row_scale,
                                        const float* scale, float* spill) {
    const __m256 s = _mm256_mul_ps(_mm256_set1_ps(row_scale), _mm256_loadu_ps(scale + c));
    const bool inside = c >= o.lo && c + 8 <= o.hi;
    const __m256 b = o.bias && inside ? _mm256_loadu_ps(o.bias + (c - o.lo)) : _mm256_setzero_ps();
    __m256 v = _mm256_fmadd_ps(acc, s, b);
    if (!inside) {  // straddles [lo, hi): the bias per column, then the columns that exist
        _mm256_storeu_ps(spill, acc);
        for (int j = 0; j < 8; ++j) {
            const int64_t col = c + j;
            const float bias = o.bias && col >= o.lo && col < o.hi ? o.bias[col - o.lo] : 0.0f;
            spill[j] = lowp_value(spill[j], row_scale, scale[col], bias);
        }
        lowp_store_partial(o, r, 1, c, 8, spill, 8);
        return;
    }
    float* dst = o.y + r * o.ldy + (c - o.lo);
    if (o.accumulate) v = _mm256_add_ps(_mm256_loadu_ps(dst), v);
    _mm256_storeu_ps(dst, v);
}

/// The 4 bytes of x at `p` in every 32-bit lane.
ZEROCLIP_TARGET_AVX2 inline __m256i broadcast4(const int8_t* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/// The finished tile: rows r0.. of 16 channels from panel p, acc[i][h] the sums of row i,
/// channels p·16 + 8h ...; `minus` (per channel, or null) subtracted first. A panel inside
/// [lo, hi) is finished here (channel scales, bias and offsets loaded once for the MR rows:
/// with k = 64, a 1×1 convolution's, the end of a tile is a good part of its work); a panel on an
/// edge goes through store8, column by column where it must.
template <int MR>
ZEROCLIP_TARGET_AVX2 inline void store_tile(const __m256i (&acc)[6][2], const float* xs, const int8_weights& w,
                                            const lowp_out& o, int64_t r0, int64_t p, const int32_t* minus) {
    const int64_t c = p * 16;
    if (c >= o.lo && c + 16 <= o.hi) {
        __m256 sc[2], b[2];
        __m256i off[2];
        for (int h = 0; h < 2; ++h) {
            sc[h] = _mm256_loadu_ps(w.scale + c + 8 * h);
            b[h] = o.bias ? _mm256_loadu_ps(o.bias + (c - o.lo) + 8 * h) : _mm256_setzero_ps();
            off[h] = minus ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(minus + c + 8 * h)) : _mm256_setzero_si256();
        }
        for (int i = 0; i < MR; ++i) {
            const __m256 rs = _mm256_set1_ps(xs[r0 + i]);
            float* dst = o.y + (r0 + i) * o.ldy + (c - o.lo);
            for (int h = 0; h < 2; ++h) {  // acc·(s_r·s_c) + b in one rounding, as lowp_value
                __m256 v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc[i][h], off[h])),
                                           _mm256_mul_ps(rs, sc[h]), b[h]);
                if (o.accumulate) v = _mm256_add_ps(_mm256_loadu_ps(dst + 8 * h), v);
                _mm256_storeu_ps(dst + 8 * h, v);
            }
        }
        return;
    }
    alignas(32) float spill[8];
    for (int h = 0; h < 2; ++h) {
        const __m256i off = minus ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(minus + c + 8 * h))
                                  : _mm256_setzero_si256();
        for (int i = 0; i < MR; ++i)
            store8(o, r0 + i, c + 8 * h, _mm256_cvtepi32_ps(_mm256_sub_epi32(acc[i][h], off)), xs[r0 + i], w.scale, spill);
    }
}

/// AVX2 tile: MR (≤ 6) rows × 16 channels (one panel). Per 4 k: the panel's two vectors (and
/// their |w|) are loaded once for all MR rows; per row one broadcast of its 4 bytes, then for each
/// half sign, vpmaddubsw, vpmaddwd(·, 1) and an add: 12 accumulators, |w|, w, x and a temporary
/// fill the 16 registers of AVX2 (the sums are named variables: arrays of vectors are spilled
/// to the stack by GCC 12 at every step).
template <int MR>
ZEROCLIP_TARGET_AVX2 void tile_avx2(const int8_t* xq, int64_t kp, const float* xs, const int8_weights& w,
                                    const lowp_out& o, int64_t r0, int64_t p) {
    static_assert(MR >= 1 && MR <= 6, "6 rows at most");
    __m256i a00 = _mm256_setzero_si256(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00,
            a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00;
    const __m256i ones = _mm256_set1_epi16(1);
    const int8_t* panel = w.panel(p);
    // Rows past MR point at row 0: never read, but no pointer leaves the buffer.
    const int8_t* x0 = xq + r0 * kp;
    const int8_t *x1 = x0 + (MR > 1 ? kp : 0), *x2 = x0 + (MR > 2 ? 2 * kp : 0), *x3 = x0 + (MR > 3 ? 3 * kp : 0);
    const int8_t *x4 = x0 + (MR > 4 ? 4 * kp : 0), *x5 = x0 + (MR > 5 ? 5 * kp : 0);
    for (int64_t g = 0; g < kp; g += 4) {
        const __m256i w0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel + 16 * g));
        const __m256i w1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel + 16 * g + 32));
        const __m256i u0 = _mm256_abs_epi8(w0), u1 = _mm256_abs_epi8(w1);
#define ZEROCLIP_I8_ROW(i)                                                                                         \
    if constexpr (MR > i) {                                                                                        \
        const __m256i a = broadcast4(x##i + g);                                                                    \
        a##i##0 = _mm256_add_epi32(a##i##0, _mm256_madd_epi16(_mm256_maddubs_epi16(u0, _mm256_sign_epi8(a, w0)), ones)); \
        a##i##1 = _mm256_add_epi32(a##i##1, _mm256_madd_epi16(_mm256_maddubs_epi16(u1, _mm256_sign_epi8(a, w1)), ones)); \
    }
        ZEROCLIP_I8_ROW(0)
        ZEROCLIP_I8_ROW(1)
        ZEROCLIP_I8_ROW(2)
        ZEROCLIP_I8_ROW(3)
        ZEROCLIP_I8_ROW(4)
        ZEROCLIP_I8_ROW(5)
#undef ZEROCLIP_I8_ROW
    }
    const __m256i acc[6][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}, {a40, a41}, {a50, a51}};
    store_tile<MR>(acc, xs, w, o, r0, p, nullptr);
}

/// AVX-VNNI tile: MR (≤ 6) rows × 16 channels, as tile_avx2 but one vpdpbusd per half and row
/// (xq holds q + 128; the 128·Σ q_w of each channel is subtracted at the end).
template <int MR>
ZEROCLIP_TARGET_AVXVNNI void tile_avxvnni(const int8_t* xq, int64_t kp, const float* xs, const int8_weights& w,
                                          const lowp_out& o, int64_t r0, int64_t p) {
    static_assert(MR >= 1 && MR <= 6, "6 rows at most");
    __m256i a00 = _mm256_setzero_si256(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00,
            a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00;
    const int8_t* panel = w.panel(p);
    const int8_t* x0 = xq + r0 * kp;
    const int8_t *x1 = x0 + (MR > 1 ? kp : 0), *x2 = x0 + (MR > 2 ? 2 * kp : 0), *x3 = x0 + (MR > 3 ? 3 * kp : 0);
    const int8_t *x4 = x0 + (MR > 4 ? 4 * kp : 0), *x5 = x0 + (MR > 5 ? 5 * kp : 0);
    for (int64_t g = 0; g < kp; g += 4) {
        const __m256i w0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel + 16 * g));
        const __m256i w1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel + 16 * g + 32));
#define ZEROCLIP_I8_ROW(i)                                 \
    if constexpr (MR > i) {                                \
        const __m256i a = broadcast4(x##i + g);            \
        a##i##0 = _mm256_dpbusd_avx_epi32(a##i##0, a, w0); \
        a##i##1 = _mm256_dpbusd_avx_epi32(a##i##1, a, w1); \
    }
        ZEROCLIP_I8_ROW(0)
        ZEROCLIP_I8_ROW(1)
        ZEROCLIP_I8_ROW(2)
        ZEROCLIP_I8_ROW(3)
        ZEROCLIP_I8_ROW(4)
        ZEROCLIP_I8_ROW(5)
#undef ZEROCLIP_I8_ROW
    }
    const __m256i acc[6][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}, {a40, a41}, {a50, a51}};
    store_tile<MR>(acc, xs, w, o, r0, p, w.offset);
}

/// AVX-512 VNNI tile: MR (≤ 8) rows × 16·NP channels; xq holds q + 128. The sums are named
/// variables, as in tile_avx2 (an array of them was copied between registers at every step).
template <int MR, int NP>
ZEROCLIP_TARGET_VNNI void tile_vnni(const int8_t* xq, int64_t kp, const float* xs, const int8_weights& w,
                                    const lowp_out& o, int64_t r0, int64_t p) {
    static_assert(MR >= 1 && MR <= 8 && NP >= 1 && NP <= 2, "8 rows, 2 panels at most");
    __m512i a00 = _mm512_setzero_si512(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00,
            a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00, a60 = a00, a61 = a00, a70 = a00, a71 = a00;
    const int8_t* panel0 = w.panel(p);
    const int8_t* panel1 = NP > 1 ? w.panel(p + 1) : panel0;
    const int8_t* x0 = xq + r0 * kp;
    const int8_t *x1 = x0 + (MR > 1 ? kp : 0), *x2 = x0 + (MR > 2 ? 2 * kp : 0), *x3 = x0 + (MR > 3 ? 3 * kp : 0);
    const int8_t *x4 = x0 + (MR > 4 ? 4 * kp : 0), *x5 = x0 + (MR > 5 ? 5 * kp : 0), *x6 = x0 + (MR > 6 ? 6 * kp : 0);
    const int8_t* x7 = x0 + (MR > 7 ? 7 * kp : 0);
    for (int64_t g = 0; g < kp; g += 4) {
        const __m512i w0 = _mm512_load_si512(panel0 + 16 * g);
        const __m512i w1 = NP > 1 ? _mm512_load_si512(panel1 + 16 * g) : w0;
#define ZEROCLIP_I8_ROW(i)                                                      \
    if constexpr (MR > i) {                                                     \
        int32_t v;                                                              \
        std::memcpy(&v, x##i + g, 4);                                           \
        const __m512i a = _mm512_set1_epi32(v);                                 \
        a##i##0 = _mm512_dpbusd_epi32(a##i##0, a, w0);                          \
        if constexpr (NP > 1) a##i##1 = _mm512_dpbusd_epi32(a##i##1, a, w1);    \
    }
        ZEROCLIP_I8_ROW(0)
        ZEROCLIP_I8_ROW(1)
        ZEROCLIP_I8_ROW(2)
        ZEROCLIP_I8_ROW(3)
        ZEROCLIP_I8_ROW(4)
        ZEROCLIP_I8_ROW(5)
        ZEROCLIP_I8_ROW(6)
        ZEROCLIP_I8_ROW(7)
#undef ZEROCLIP_I8_ROW
    }
    const __m512i acc[8][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31},
                               {a40, a41}, {a50, a51}, {a60, a61}, {a70, a71}};
    alignas(32) float spill[8];
    for (int j = 0; j < NP; ++j) {
        const int64_t c = (p + j) * 16;
        const __m512i off = _mm512_loadu_si512(w.offset + c);
        if (c >= o.lo && c + 16 <= o.hi) {  // inside: finished here, as store_tile
            const __m512 sc = _mm512_loadu_ps(w.scale + c);
            const __m512 b = o.bias ? _mm512_loadu_ps(o.bias + (c - o.lo)) : _mm512_setzero_ps();
            for (int i = 0; i < MR; ++i) {
                float* dst = o.y + (r0 + i) * o.ldy + (c - o.lo);
                __m512 v = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(0xffff, _mm512_sub_epi32(acc[i][j], off)),
                                           _mm512_mul_ps(_mm512_set1_ps(xs[r0 + i]), sc), b);
                if (o.accumulate) v = _mm512_add_ps(_mm512_loadu_ps(dst), v);
                _mm512_storeu_ps(dst, v);
            }
            continue;
        }
        for (int i = 0; i < MR; ++i) {
            const __m512 v = _mm512_maskz_cvtepi32_ps(0xffff, _mm512_sub_epi32(acc[i][j], off));
            store8(o, r0 + i, c, _mm512_maskz_extractf32x8_ps(0xff, v, 0), xs[r0 + i], w.scale, spill);
            store8(o, r0 + i, c + 8, _mm512_maskz_extractf32x8_ps(0xff, v, 1), xs[r0 + i], w.scale, spill);
        }
    }
}

template <int MR>
ZEROCLIP_TARGET_VNNI void tile_vnni_np(const int8_t* xq, int64_t kp, const float* xs, const int8_weights& w,
                                       const lowp_out& o, int64_t r0, int64_t p, int np) {
    if (np == 2) tile_vnni<MR, 2>(xq, kp, xs, w, o, r0, p);
    else tile_vnni<MR, 1>(xq, kp, xs, w, o, r0, p);
}
#endif  // ZEROCLIP_CPU_X86

}  // namespace int8_detail

/// The kernel int8_linear runs for `path`: isa::avx2 is AVX-VNNI's vpdpbusd where the CPU has it
/// and ZEROCLIP_CPU_PATH allows it; any other path is itself.
inline isa int8_kernel_for(isa path) {
    return path == isa::avx2 && use_isa(isa::avx_vnni) ? isa::avx_vnni : path;
}

/// int8_linear on exactly the kernel `kernel` (isa::avx512_vnni, avx_vnni, avx2 or scalar; the
/// caller checks the CPU has it): the tests run each kernel through it.
inline void int8_linear_kernel(isa kernel, const float* x, int64_t ldx, int64_t m, const int8_weights& w,
                               const lowp_out& o, int threads = 0) {
    using namespace int8_detail;
    const bool plus128 = kernel == isa::avx512_vnni || kernel == isa::avx_vnni;
    thread_local std::vector<int8_t> qbuf;
    thread_local std::vector<float> sbuf;
    qbuf.resize(static_cast<size_t>(m * w.kp + 64));
    sbuf.resize(static_cast<size_t>(m));
    int8_t* xq = qbuf.data();
    const float* xs = sbuf.data();
    int8_quantize_rows(x, ldx, m, w.k, w.kp, xq, sbuf.data(), plus128, kernel);
#ifdef ZEROCLIP_CPU_X86
    if (kernel == isa::avx512_vnni) {
        lowp_run(m, w.k, o, 8, 2, [&](int64_t r0, int mr, int64_t p, int np) {
            with_rows<8>(mr, [&](auto rows) { tile_vnni_np<decltype(rows)::value>(xq, w.kp, xs, w, o, r0, p, np); });
        }, threads);
        return;
    }
    if (kernel == isa::avx_vnni) {
        lowp_run(m, w.k, o, 6, 1, [&](int64_t r0, int mr, int64_t p, int) {
            with_rows<6>(mr, [&](auto rows) { tile_avxvnni<decltype(rows)::value>(xq, w.kp, xs, w, o, r0, p); });
        }, threads);
        return;
    }
    if (kernel == isa::avx2) {
        lowp_run(m, w.k, o, 6, 1, [&](int64_t r0, int mr, int64_t p, int) {
            with_rows<6>(mr, [&](auto rows) { tile_avx2<decltype(rows)::value>(xq, w.kp, xs, w, o, r0, p); });
        }, threads);
        return;
    }
#endif
    lowp_run(m, w.k, o, 4, 1, [&](int64_t r0, int mr, int64_t p, int np) {
        tile_scalar(xq, w.kp, xs, w, o, r0, mr, p, np);
    }, threads);
}

/// y = x·W[lo, hi)ᵀ (+ bias, activation as `o` says) for x (m, k) rows ldx apart, on `path`
/// (isa::avx512_vnni, isa::avx2 or isa::scalar; the caller checks the CPU has it). isa::avx2 runs
/// the AVX-VNNI kernel where the CPU has it (int8_kernel_for); every kernel gives the same bits.
inline void int8_linear(isa path, const float* x, int64_t ldx, int64_t m, const int8_weights& w, const lowp_out& o,
                        int threads = 0) {
    int8_linear_kernel(int8_kernel_for(path), x, ldx, m, w, o, threads);
}

}  // namespace zeroclip::detail::cpu
