//! The AVX-512F fp32 micro-kernel of gemm.hpp, chosen at run time: compiled whatever -march says
//! (function-level targets) and used only where the CPU has AVX-512F/VL/DQ/BW and
//! ZEROCLIP_CPU_PATH does not cap it (=avx2 does), so one binary still runs on an AVX2-only CPU.
//!
//! It reads the packed forms of gemm_kernel.hpp unchanged — tiles of A [kc][6], panels of B
//! [kc][16] (packed per call, at load: prepacked_a, prepacked_bt, or from images: im2col,
//! Winograd) — so packed weights serve both kernels. One call covers two adjacent tiles of A
//! (10-12 rows) by one panel: 10-12 zmm accumulators, one 16-float load of B and a broadcast
//! FMA per row and k. Columns past the end of C (a last panel of < 16) are masked out. Per
//! accumulator the sums run in the same order as the AVX2 kernel's, and the fused epilogue
//! (C, bias, residual, activation) is the same arithmetic, so the two agree to the bit but for
//! an activation on a partial panel (the AVX2 kernel's scalar tail).
//!
//! block_task (the per-task loop of the drivers and Winograd) dispatches: fp32_kernel() says
//! which kernel a process uses, decided once.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cpu_features.hpp"
#include "gemm_kernel.hpp"
#include "parallel.hpp"
#include "vec.hpp"

namespace zeroclip::detail::cpu {

namespace gemm_detail {

#ifdef ZEROCLIP_CPU_AVX2
ZEROCLIP_AVX512_WARNINGS_OFF

/// The fp32 kernel of this process: isa::avx512 where the CPU has it and ZEROCLIP_CPU_PATH allows
/// it, else isa::avx2, decided on first use. (Tests assign it to run both kernels in one process:
/// the packed forms are the same, so switching between calls is safe.)
inline isa& fp32_kernel() {
    static isa k = use_isa(isa::avx512) ? isa::avx512 : isa::avx2;
    return k;
}

ZEROCLIP_TARGET_AVX512F inline __m512 activate16(__m512 v, act a) {
    switch (a) {
        case act::quick_gelu: return quick_gelu16(v);
        case act::relu: return relu16(v);
        default: return v;
    }
}

/// The tile C[(MR0 + MR1)×16·NP] (see tile_store; rows one after another, ldc apart) for ap0 a
/// packed tile [kc][6] (MR0 rows used), ap1 the next tile (MR1 rows used; MR1 = 0: none) and bp
/// NP packed panels [kc][16], one after another; columns ≥ s.cols neither read nor written.
/// Two panels a call (up to 24 accumulators) load one broadcast of A for two FMAs: at one panel
/// the loads of A and B outnumber the FMAs and, not the FMA units, set the pace.
template <int MR0, int MR1, int NP>
ZEROCLIP_TARGET_AVX512F inline void kernel512(int64_t kc, const float* ap0, const float* ap1, const float* bp,
                                              const tile_store& s) {
    constexpr int MR = MR0 + MR1;
    __mmask16 m[NP];
#pragma GCC unroll 2
    for (int q = 0; q < NP; ++q) {
        const int64_t cols = std::clamp<int64_t>(s.cols - 16 * q, 0, 16);
        m[q] = cols >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << cols) - 1);
    }
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
        __builtin_prefetch(s.c + i * s.ldc, 1, 3);
        if (s.residual) __builtin_prefetch(s.residual + i * s.ldc, 0, 3);
    }
    __m512 acc[MR][NP];
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
        for (int q = 0; q < NP; ++q) acc[i][q] = _mm512_setzero_ps();
#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; ++k) {
        __m512 b[NP];
#pragma GCC unroll 2
        for (int q = 0; q < NP; ++q) b[q] = _mm512_loadu_ps(bp + 16 * kc * q + 16 * k);
#pragma GCC unroll 12
        for (int i = 0; i < MR; ++i) {
            const __m512 a = _mm512_set1_ps(i < MR0 ? ap0[mr_stride * k + i] : ap1[mr_stride * k + (i - MR0)]);
#pragma GCC unroll 2
            for (int q = 0; q < NP; ++q) acc[i][q] = _mm512_fmadd_ps(a, b[q], acc[i][q]);
        }
    }
#pragma GCC unroll 2
    for (int q = 0; q < NP; ++q) {
        const __m512 col_bias =
            s.fused && s.bias && !s.bias_per_row ? _mm512_maskz_loadu_ps(m[q], s.bias + 16 * q) : _mm512_setzero_ps();
#pragma GCC unroll 12
        for (int i = 0; i < MR; ++i) {
            float* out = s.c + i * s.ldc + 16 * q;
            __m512 v = acc[i][q];
            if (!s.overwrite) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m[q], out));
            if (s.fused) {
                if (s.bias) v = _mm512_add_ps(v, s.bias_per_row ? _mm512_set1_ps(s.bias[i]) : col_bias);
                if (s.residual) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m[q], s.residual + i * s.ldc + 16 * q));
                v = activate16(v, s.activation);
            }
            _mm512_mask_storeu_ps(out, m[q], v);
        }
    }
}

/// kernel512 for tiles of mr0 and mr1 rows (mr1 = 0: one tile) and NP panels. Pairs are 5+5,
/// 5+6, 6+6 (M ≥ 20: the fives come first) or 6 + the last tile of an M < 20 (1-6 rows).
template <int NP>
ZEROCLIP_TARGET_AVX512F inline void run_kernel512(int mr0, int mr1, int64_t kc, const float* ap0, const float* ap1,
                                                  const float* bp, const tile_store& s) {
    switch (mr0 * 8 + mr1) {
        case 6 * 8 + 6: return kernel512<6, 6, NP>(kc, ap0, ap1, bp, s);
        case 5 * 8 + 6: return kernel512<5, 6, NP>(kc, ap0, ap1, bp, s);
        case 5 * 8 + 5: return kernel512<5, 5, NP>(kc, ap0, ap1, bp, s);
        case 6 * 8 + 5: return kernel512<6, 5, NP>(kc, ap0, ap1, bp, s);
        case 6 * 8 + 4: return kernel512<6, 4, NP>(kc, ap0, ap1, bp, s);
        case 6 * 8 + 3: return kernel512<6, 3, NP>(kc, ap0, ap1, bp, s);
        case 6 * 8 + 2: return kernel512<6, 2, NP>(kc, ap0, ap1, bp, s);
        case 6 * 8 + 1: return kernel512<6, 1, NP>(kc, ap0, ap1, bp, s);
        case 6 * 8: return kernel512<6, 0, NP>(kc, ap0, ap1, bp, s);
        case 5 * 8: return kernel512<5, 0, NP>(kc, ap0, ap1, bp, s);
        case 4 * 8: return kernel512<4, 0, NP>(kc, ap0, ap1, bp, s);
        case 3 * 8: return kernel512<3, 0, NP>(kc, ap0, ap1, bp, s);
        case 2 * 8: return kernel512<2, 0, NP>(kc, ap0, ap1, bp, s);
        case 1 * 8: return kernel512<1, 0, NP>(kc, ap0, ap1, bp, s);
        default: {  // not produced by tile_plan; one tile at a time
            run_kernel512<NP>(mr0, 0, kc, ap0, nullptr, bp, s);
            tile_store second = s;
            second.c += mr0 * s.ldc;
            if (second.residual) second.residual += mr0 * s.ldc;
            if (second.bias && second.bias_per_row) second.bias += mr0;
            return run_kernel512<NP>(mr1, 0, kc, ap1, nullptr, bp, second);
        }
    }
}

/// block_task_avx2 with the AVX-512F kernel: the same loops, tiles of A two at a time against
/// two panels of B (one where a single panel is left).
template <class PackB>
inline void block_task_avx512(const packed_a& a, int64_t t0, int64_t t1, int64_t n0, int64_t n1, PackB&& pack, float* C,
                              int64_t ldc, const epilogue& ep, bool bias_per_row, const float* residual) {
    block_loops<2, 2>(a, t0, t1, n0, n1, std::forward<PackB>(pack), C, ldc, ep, bias_per_row, residual,
                      [&](int64_t t, int64_t count, int64_t p, int64_t kb, const float* bp, const tile_store& st) {
                          const bool pair = count == 2;
                          const int mr0 = a.plan->rows(t), mr1 = pair ? a.plan->rows(t + 1) : 0;
                          const float* ap1 = pair ? a.tile(p, kb, t + 1) : nullptr;
                          if (st.cols > 16) run_kernel512<2>(mr0, mr1, kb, a.tile(p, kb, t), ap1, bp, st);
                          else run_kernel512<1>(mr0, mr1, kb, a.tile(p, kb, t), ap1, bp, st);
                      });
}

/// C[tiles t0..t1 of A, columns n0..n1) for all of K (see block_task_avx2) with this process's
/// kernel (fp32_kernel()).
template <class PackB>
inline void block_task(const packed_a& a, int64_t t0, int64_t t1, int64_t n0, int64_t n1, PackB&& pack, float* C,
                       int64_t ldc, const epilogue& ep, bool bias_per_row, const float* residual) {
    if (fp32_kernel() == isa::avx512)
        block_task_avx512(a, t0, t1, n0, n1, std::forward<PackB>(pack), C, ldc, ep, bias_per_row, residual);
    else
        block_task_avx2(a, t0, t1, n0, n1, std::forward<PackB>(pack), C, ldc, ep, bias_per_row, residual);
}

ZEROCLIP_AVX512_WARNINGS_ON
#endif  // ZEROCLIP_CPU_AVX2

}  // namespace gemm_detail

}  // namespace zeroclip::detail::cpu
