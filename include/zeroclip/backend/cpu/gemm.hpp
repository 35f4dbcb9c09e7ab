//! The CPU backend's matrix products: one AVX2+FMA kernel (an outer product of 6 or 5 rows by 16
//! columns, 10-12 accumulators, the classic BLIS shape), multi-threaded by tasks
//! (parallel.hpp), with the step after the product fused in (bias, activation, residual).
//! Without AVX2+FMA the products are Eigen's.
//!
//!   gemm_nt  C = A·Bᵀ   A (M, K), B (N, K), rows contiguous in K: nn.Linear with the weight as
//!                       PyTorch stores it (so weights are used as loaded, or memory-mapped).
//!   gemm_nn  C = A·B    A (M, K), B (K, N) row-major, for a batch of B and C with A shared:
//!                       convolutions (weights (O, C·kh·kw) times an image or its im2col), NCHW.
//!
//! Blocking: K in blocks of ≤ 256 (a packed 16-column panel of B is 16 KiB, it stays in L1 while
//! the tiles of A stream past it), A packed once per call into tiles of 6 (or 5) rows, shared by
//! all threads; B packed by each task for its own columns (a 64-column chunk, 64 KiB, in L2).
//! A task owns its block of C for all of K, so the epilogue runs once, on a block still in cache:
//!   C = act((accumulate ? C : 0) + A·op(B) + bias + residual)
//! with the bias per column for gemm_nt (a linear's outputs) and per row for gemm_nn (a conv's
//! output channels).
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "parallel.hpp"
#include "vec.hpp"

namespace zeroclip::detail::cpu {

struct epilogue {
    const float* bias = nullptr;
    const float* residual = nullptr;  // added before the activation; laid out like C
    act activation = act::none;
    bool accumulate = false;
};

namespace gemm_detail {

using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using const_strided = Eigen::Map<const row_matrix, 0, Eigen::OuterStride<>>;
using strided = Eigen::Map<row_matrix, 0, Eigen::OuterStride<>>;

/// Residual, bias and activation over a finished block of C (rows r0..r1, columns c0..c1);
/// `residual` is the residual of this C (batch item), laid out like it.
inline void finish_block(float* c, int64_t ldc, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                         const epilogue& ep, bool bias_per_row, const float* residual = nullptr) {
    if (!ep.bias && !residual && ep.activation == act::none) return;
    for (int64_t r = r0; r < r1; ++r) {
        float* row = c + r * ldc + c0;
        if (residual) add(row, residual + r * ldc + c0, c1 - c0);
        if (bias_per_row) bias_activate(row, c1 - c0, ep.bias ? ep.bias[r] : 0.0f, ep.activation);
        else bias_activate(row, c1 - c0, ep.bias ? ep.bias + c0 : nullptr, ep.activation);
    }
}

/// A product over K = 0: C = act([C +] bias).
inline void empty_product(int64_t M, int64_t N, float* C, int64_t ldc, const epilogue& ep, bool bias_per_row) {
    if (!ep.accumulate)
        for (int64_t r = 0; r < M; ++r) std::fill_n(C + r * ldc, N, 0.0f);
    finish_block(C, ldc, 0, M, 0, N, ep, bias_per_row, ep.residual);
}

#ifdef ZEROCLIP_CPU_AVX2

constexpr int64_t kc_max = 256;  // K block: a packed panel of B is kc·16 floats (16 KiB)
constexpr int64_t nc = 64;           // columns of C per task (4 panels)
constexpr int64_t mr_stride = 6; // floats per k in a packed tile of A

/// How the rows of A are cut into tiles: 6 rows each, with 5-row tiles (first) taking up the
/// remainder — every M ≥ 20 is a sum of 6s and 5s — so no tile computes rows that do not exist.
struct tile_plan {
    int64_t m = 0, fives = 0, tiles = 0;
    explicit tile_plan(int64_t rows) : m(rows) {
        if (m >= 20) {
            fives = (6 - m % 6) % 6;  // 5·fives ≡ m (mod 6)
            tiles = fives + (m - 5 * fives) / 6;
        } else {
            tiles = (m + 5) / 6;
        }
    }
    int64_t size() const { return tiles; }
    int64_t row0(int64_t t) const { return t < fives ? 5 * t : 5 * fives + 6 * (t - fives); }
    int rows(int64_t t) const { return t < fives ? 5 : static_cast<int>(std::min<int64_t>(6, m - row0(t))); }
};

/// Where and how a kernel writes its tile of C: (overwrite ? 0 : C) + Ap·Bp, then — when `fused`
/// (the last K block of a product whose activation has a vector form) — + bias + residual and the
/// activation, in registers.
struct tile_store {
    float* c;
    int64_t ldc;
    int64_t cols;  // columns of C that exist (≤ 16)
    bool overwrite;
    bool fused = false;
    const float* bias = nullptr;  // at the tile: bias[i] per row i, or bias[0..16) per column
    bool bias_per_row = false;
    const float* residual = nullptr;  // at the tile, rows ldc apart
    act activation = act::none;
};

inline __m256 activate8(__m256 v, act a) {
    switch (a) {
        case act::quick_gelu: return quick_gelu8(v);
        case act::relu: return relu8(v);
        default: return v;
    }
}

inline float activate1(float v, act a) {
    switch (a) {
        case act::quick_gelu: return quick_gelu1(v);
        case act::relu: return relu1(v);
        case act::gelu: return gelu1(v);
        default: return v;
    }
}

/// The tile C[MR×8·NV] (see tile_store) for Ap a packed tile [kc][6] (MR rows used) and Bp a
/// packed panel [kc][16] (its first 8·NV columns used): MR·NV accumulators, k unrolled by 4.
/// NV = 1 serves a last panel of ≤ 8 columns at half the cost (7×7 feature maps: 49 = 3·16 + 1).
template <int MR, int NV>
inline void kernel(int64_t kc, const float* ap, const float* bp, const tile_store& s) {
    // The tile of C (to be written; read too when accumulating) and of the residual are usually
    // not in cache (large activations): ask for them now, they arrive while the k loop runs.
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
        __builtin_prefetch(s.c + i * s.ldc, 1, 3);
        if (NV == 2) __builtin_prefetch(s.c + i * s.ldc + 15, 1, 3);
        if (s.residual) {
            __builtin_prefetch(s.residual + i * s.ldc, 0, 3);
            if (NV == 2) __builtin_prefetch(s.residual + i * s.ldc + 15, 0, 3);
        }
    }
    __m256 acc[MR][NV];
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
        for (int h = 0; h < NV; ++h) acc[i][h] = _mm256_setzero_ps();
#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; ++k) {
        __m256 b[NV];
#pragma GCC unroll 2
        for (int h = 0; h < NV; ++h) b[h] = _mm256_load_ps(bp + 16 * k + 8 * h);
#pragma GCC unroll 6
        for (int i = 0; i < MR; ++i) {
            const __m256 a = _mm256_broadcast_ss(ap + mr_stride * k + i);
#pragma GCC unroll 2
            for (int h = 0; h < NV; ++h) acc[i][h] = _mm256_fmadd_ps(a, b[h], acc[i][h]);
        }
    }
    if (s.cols == 8 * NV) {
#pragma GCC unroll 6
        for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 2
            for (int h = 0; h < NV; ++h) {
                float* out = s.c + i * s.ldc + 8 * h;
                __m256 v = acc[i][h];
                if (!s.overwrite) v = _mm256_add_ps(v, _mm256_loadu_ps(out));
                if (s.fused) {
                    if (s.bias)
                        v = _mm256_add_ps(v, s.bias_per_row ? _mm256_set1_ps(s.bias[i]) : _mm256_loadu_ps(s.bias + 8 * h));
                    if (s.residual) v = _mm256_add_ps(v, _mm256_loadu_ps(s.residual + i * s.ldc + 8 * h));
                    v = activate8(v, s.activation);
                }
                _mm256_storeu_ps(out, v);
            }
        }
    } else {
        alignas(32) float tmp[MR][8 * NV];
#pragma GCC unroll 6
        for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
            for (int h = 0; h < NV; ++h) _mm256_store_ps(tmp[i] + 8 * h, acc[i][h]);
        for (int i = 0; i < MR; ++i) {
            float* out = s.c + i * s.ldc;
            for (int64_t j = 0; j < s.cols; ++j) {
                float v = (s.overwrite ? 0.0f : out[j]) + tmp[i][j];
                if (s.fused) {
                    if (s.bias) v += s.bias_per_row ? s.bias[i] : s.bias[j];
                    if (s.residual) v += s.residual[i * s.ldc + j];
                    v = activate1(v, s.activation);
                }
                out[j] = v;
            }
        }
    }
}

template <int NV>
inline void run_kernel_nv(int mr, int64_t kc, const float* ap, const float* bp, const tile_store& s) {
    switch (mr) {
        case 6: kernel<6, NV>(kc, ap, bp, s); break;
        case 5: kernel<5, NV>(kc, ap, bp, s); break;
        case 4: kernel<4, NV>(kc, ap, bp, s); break;
        case 3: kernel<3, NV>(kc, ap, bp, s); break;
        case 2: kernel<2, NV>(kc, ap, bp, s); break;
        default: kernel<1, NV>(kc, ap, bp, s); break;
    }
}

inline void run_kernel(int mr, int64_t kc, const float* ap, const float* bp, const tile_store& s) {
    if (s.cols > 8) run_kernel_nv<2>(mr, kc, ap, bp, s);
    else run_kernel_nv<1>(mr, kc, ap, bp, s);
}

/// 8×8 transpose of r[0..8) in place.
inline void transpose8(__m256 r[8]) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/// Rows [r0, r0 + mr) of A (row-major, lda), columns [p, p + kc) → a tile [kc][6]
/// (out[6k + i] = A[r0 + i][p + k]).
inline void pack_a_tile(const float* A, int64_t lda, int64_t r0, int mr, int64_t p, int64_t kc, float* out) {
    const float* src = A + r0 * lda + p;
    int64_t k = 0;
    if (mr == 6 || mr == 5) {
        for (; k + 8 <= kc; k += 8) {
            __m256 r[8];
#pragma GCC unroll 6
            for (int i = 0; i < 6; ++i) r[i] = i < mr ? _mm256_loadu_ps(src + i * lda + k) : _mm256_setzero_ps();
            r[6] = r[7] = _mm256_setzero_ps();
            transpose8(r);
            // Each store writes 8 floats of which the last 2 spill into the next k's slots, which the
            // next store overwrites (in order); the eighth writes only its 6, so that nothing
            // spills into the next tile (packed by another thread at the same time).
#pragma GCC unroll 7
            for (int j = 0; j < 7; ++j) _mm256_storeu_ps(out + 6 * (k + j), r[j]);
            _mm256_maskstore_ps(out + 6 * (k + 7), tail_mask(6), r[7]);
        }
    }
    for (; k < kc; ++k)
        for (int i = 0; i < 6; ++i) out[6 * k + i] = i < mr ? src[i * lda + k] : 0.0f;
}

/// Rows [n0, n0 + nb) of B (N, K) (ldb), columns [p, p + kc) → panels of 16 rows, each [kc][16]
/// (panel[k][r] = B[n0 + 16·panel + r][p + k]), zero-padded past nb: the transpose, 8×8 at a time.
inline void pack_bt(const float* B, int64_t ldb, int64_t kc, int64_t nb, float* out) {
    for (int64_t j = 0; j < nb; j += 16) {
        float* panel = out + j * kc;
        for (int half = 0; half < 2; ++half) {
            const int64_t r0 = j + 8 * half, rows = std::clamp<int64_t>(nb - r0, 0, 8);
            if (rows == 8) {
                int64_t k = 0;
                for (; k + 8 <= kc; k += 8) {
                    __m256 r[8];
#pragma GCC unroll 8
                    for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(B + (r0 + i) * ldb + k);
                    transpose8(r);
#pragma GCC unroll 8
                    for (int i = 0; i < 8; ++i) _mm256_store_ps(panel + 16 * (k + i) + 8 * half, r[i]);
                }
                for (; k < kc; ++k)
                    for (int i = 0; i < 8; ++i) panel[16 * k + 8 * half + i] = B[(r0 + i) * ldb + k];
            } else {
                for (int64_t k = 0; k < kc; ++k)
                    for (int64_t i = 0; i < 8; ++i)
                        panel[16 * k + 8 * half + i] = i < rows ? B[(r0 + i) * ldb + k] : 0.0f;
            }
        }
    }
}

/// Columns [n0, n0 + nb) of B (K, N) row-major (ldb), rows [0, kc) → panels [kc][16], zero-padded.
inline void pack_b(const float* B, int64_t ldb, int64_t kc, int64_t nb, float* out) {
    for (int64_t j = 0; j < nb; j += 16) {
        const int64_t w = std::min<int64_t>(16, nb - j);
        float* panel = out + j * kc;
        if (w == 16) {
            for (int64_t k = 0; k < kc; ++k) {
                const float* src = B + k * ldb + j;
                _mm256_store_ps(panel + 16 * k, _mm256_loadu_ps(src));
                _mm256_store_ps(panel + 16 * k + 8, _mm256_loadu_ps(src + 8));
            }
        } else {
            for (int64_t k = 0; k < kc; ++k) {
                const float* src = B + k * ldb + j;
                int64_t c = 0;
                for (; c < w; ++c) panel[16 * k + c] = src[c];
                for (; c < 16; ++c) panel[16 * k + c] = 0.0f;
            }
        }
    }
}

/// dst[0, n) = src[0, n), and zero_floats: short spans inline, in vectors (a scalar loop would be
/// turned into a memmove / memset call, which costs more than these copies of a few dozen floats).
inline void copy_floats(float* dst, const float* src, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_loadu_ps(src + i));
    if (i < n) {
        const __m256i m = tail_mask(n - i);
        _mm256_maskstore_ps(dst + i, m, _mm256_maskload_ps(src + i, m));
    }
}

inline void zero_floats(float* dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_setzero_ps());
    if (i < n) _mm256_maskstore_ps(dst + i, tail_mask(n - i), _mm256_setzero_ps());
}

/// The im2col matrix of one image (C, H, W) for a kh×kw convolution — row k = (c, ky, kx), column
/// q = an output position (oy, ox), wo per output row — packed straight from the image: rows
/// [p, p + kc), columns [n0, n0 + nb ≤ 64) → panels [kc][16], zero-padded (no im2col buffer).
/// The columns are cut once into runs that stay in one output row; each row k is then a few
/// contiguous copies (stride 1) into a 64-float line that goes to the panels as whole vectors.
inline void pack_im2col(const float* img, int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t stride, int64_t pad,
                        int64_t wo, int64_t n0, int64_t nb, int64_t p, int64_t kc, float* out) {
    static_assert(nc <= 64, "a task's columns must fit the 64-float line");
    struct run {
        int64_t col, oy, ox, len;
    };
    run runs[64];
    int64_t count = 0;
    for (int64_t q = n0; q < n0 + nb && count < 64;) {
        const int64_t oy = q / wo, ox = q % wo, len = std::min(n0 + nb - q, wo - ox);
        runs[count++] = {q - n0, oy, ox, len};
        q += len;
    }
    const int64_t panels = (nb + 15) / 16;
    alignas(32) float line[64];
    zero_floats(line + nb, panels * 16 - nb);
    for (int64_t kk = 0; kk < kc; ++kk) {
        const int64_t k = p + kk, ch = k / (kh * kw), ky = k / kw % kh, kx = k % kw;
        const float* plane = img + ch * h * w;
        for (int64_t r = 0; r < count; ++r) {
            const run& u = runs[r];
            float* dst = line + u.col;
            const int64_t iy = u.oy * stride - pad + ky;
            if (iy < 0 || iy >= h) {
                zero_floats(dst, u.len);
                continue;
            }
            const float* src = plane + iy * w;
            const int64_t ix0 = u.ox * stride - pad + kx;
            if (stride == 1) {  // zeros, a copy, zeros
                const int64_t lo = std::clamp<int64_t>(-ix0, 0, u.len), hi = std::clamp<int64_t>(w - ix0, lo, u.len);
                zero_floats(dst, lo);
                copy_floats(dst + lo, src + ix0 + lo, hi - lo);
                zero_floats(dst + hi, u.len - hi);
            } else {
                for (int64_t e = 0; e < u.len; ++e) {
                    const int64_t ix = ix0 + e * stride;
                    dst[e] = ix >= 0 && ix < w ? src[ix] : 0.0f;
                }
            }
        }
        for (int64_t j = 0; j < panels; ++j) {
            float* panel_row = out + j * 16 * kc + kk * 16;
            _mm256_store_ps(panel_row, _mm256_load_ps(line + 16 * j));
            _mm256_store_ps(panel_row + 8, _mm256_load_ps(line + 16 * j + 8));
        }
    }
}

/// A, packed: for each K block (offset p·tiles·6 floats), each tile [kb][6].
struct packed_a {
    const tile_plan* plan;
    const float* data;
    int64_t K, kc;
    const float* tile(int64_t p, int64_t kb, int64_t t) const { return data + p * plan->size() * mr_stride + t * mr_stride * kb; }
};

/// K in equal blocks of ≤ kc_max.
inline int64_t k_block(int64_t K) {
    const int64_t blocks = (K + kc_max - 1) / kc_max;
    return (K + blocks - 1) / blocks;
}

/// A (M, K) row-major (lda) packed as gemm_packed packs it: K blocks of k_block(K), tiles of the
/// tile_plan; tile t of block p (offset p) goes to `at.tile(p, kb, t)`. Tasks over (tile, block).
inline void pack_a(const float* A, int64_t lda, const packed_a& at, bool parallel, int threads = 0) {
    const tile_plan& plan = *at.plan;
    const int64_t tiles = plan.size(), kblocks = (at.K + at.kc - 1) / at.kc;
    auto task = [&](int64_t t) {
        const int64_t tile = t % tiles, p = t / tiles * at.kc, kb = std::min(at.kc, at.K - p);
        pack_a_tile(A, lda, plan.row0(tile), plan.rows(tile), p, kb, const_cast<float*>(at.tile(p, kb, tile)));
    };
    if (parallel) parallel_tasks(tiles * kblocks, task, threads);
    else
        for (int64_t t = 0; t < tiles * kblocks; ++t) task(t);
}

/// C[tiles t0..t1 of A, columns n0..n1) for all of K: B's columns packed by this task (`pack(p,
/// kb, out)` packs K rows [p, p + kb) of the task's columns, or returns where they are packed
/// already: panels [kb][16] one after another); bias, residual and activation are
/// applied as the last K block is stored.
template <class PackB>
inline void block_task(const packed_a& a, int64_t t0, int64_t t1, int64_t n0, int64_t n1, PackB&& pack, float* C,
                       int64_t ldc, const epilogue& ep, bool bias_per_row, const float* residual) {
    const tile_plan& plan = *a.plan;
    const int64_t nb = n1 - n0, panels = (nb + 15) / 16;
    float* packed = scratch(static_cast<size_t>(panels * 16 * a.kc), 0);
    const bool fuse = ep.activation != act::gelu;  // erf has no vector form here: a pass at the end
    // Tiles of A in groups of ≤ 24 (≤ 144 rows · kb: ≤ 144 KiB of L2) while a panel of B is in L1.
    constexpr int64_t group = 24;
    for (int64_t p = 0; p < a.K; p += a.kc) {
        const int64_t kb = std::min(a.kc, a.K - p);
        const bool overwrite = p == 0 && !ep.accumulate, last = p + kb >= a.K;
        // `pack` packs into `packed`, or (B prepared at load) returns where its panels already are.
        const float* panels_at = packed;
        if constexpr (std::is_void_v<decltype(pack(p, kb, packed))>) pack(p, kb, packed);
        else panels_at = pack(p, kb, packed);
        for (int64_t g0 = t0; g0 < t1; g0 += group) {
            const int64_t g1 = std::min(t1, g0 + group);
            for (int64_t jp = 0; jp < panels; ++jp) {
                const float* bp = panels_at + jp * 16 * kb;
                const int64_t j = n0 + 16 * jp;
                for (int64_t t = g0; t < g1; ++t) {
                    const int64_t row0 = plan.row0(t);
                    tile_store st{C + row0 * ldc + j, ldc, std::min<int64_t>(16, n1 - j), overwrite};
                    if (last && fuse) {
                        st.fused = true;
                        if (ep.bias) st.bias = bias_per_row ? ep.bias + row0 : ep.bias + j;
                        st.bias_per_row = bias_per_row;
                        if (residual) st.residual = residual + row0 * ldc + j;
                        st.activation = ep.activation;
                    }
                    run_kernel(plan.rows(t), kb, a.tile(p, kb, t), bp, st);
                }
            }
        }
    }
    if (!fuse) finish_block(C, ldc, plan.row0(t0), plan.row0(t1 - 1) + plan.rows(t1 - 1), n0, n1, ep, bias_per_row, residual);
}

#endif  // ZEROCLIP_CPU_AVX2

}  // namespace gemm_detail

/// A weight A (M, K) packed once, at load, for gemm_nn and conv2d_nchw (which otherwise pack it
/// on every call: at batch 1, a copy of every convolution weight per image).
struct prepacked_a {
#ifdef ZEROCLIP_CPU_AVX2
    gemm_detail::tile_plan plan{0};
    int64_t K = 0, kc = 0;
    std::vector<float> data;
    gemm_detail::packed_a view() const { return {&plan, data.data(), K, kc}; }
#endif
};

/// A (M, K) row-major, packed (empty without AVX2, where the products are Eigen's).
inline prepacked_a prepack_a(const float* A, int64_t M, int64_t K) {
    prepacked_a pa;
#ifdef ZEROCLIP_CPU_AVX2
    using namespace gemm_detail;
    pa.plan = tile_plan(M);
    pa.K = K;
    pa.kc = k_block(K);
    pa.data.resize(static_cast<size_t>(pa.plan.size() * mr_stride * K + 8));
    pack_a(A, K, pa.view(), M * K >= (int64_t{1} << 16));
#else
    (void)A, (void)M, (void)K;
#endif
    return pa;
}

namespace gemm_detail {

#ifdef ZEROCLIP_CPU_AVX2

/// The shared driver: A (M, K) row-major packed once (phase 1, tasks over tiles), then tasks of
/// (batch item, tile range, column chunk) (phase 2). `pack_b_for(item, n0, nb, p, kb, out)`.
template <class PackB>
inline void gemm_packed(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, float* C, int64_t ldc,
                        int64_t c_stride, int64_t batch, const epilogue& ep, bool bias_per_row, PackB&& pack_b_for,
                        int threads, const packed_a* prepacked = nullptr) {
    const tile_plan plan(M);
    const int64_t tiles = plan.size(), kc = k_block(K);
    const packed_a a = prepacked ? *prepacked
                                 : packed_a{&plan, scratch(static_cast<size_t>(tiles * mr_stride * K + 8), 1), K, kc};
    const int64_t chunks = (N + nc - 1) / nc;
    // Split the rows too when there are too few column chunks to keep every thread busy.
    const int team = std::max(1, threads > 0 ? std::min(threads, max_threads()) : max_threads());
    int64_t row_parts = 1;
    while (batch * chunks * row_parts < 4 * team && tiles / (row_parts * 2) >= 4) row_parts *= 2;
    const int64_t per_item = chunks * row_parts;
    auto phase2 = [&](int64_t t) {
        const int64_t item = t / per_item, r = t % per_item, part = r / chunks, chunk = r % chunks;
        const int64_t t0 = tiles * part / row_parts, t1 = tiles * (part + 1) / row_parts;
        const int64_t n0 = chunk * nc, n1 = std::min(N, n0 + nc);
        if (t0 >= t1) return;
        block_task(
            a, t0, t1, n0, n1, [&](int64_t p, int64_t kb, float* out) { return pack_b_for(item, n0, n1 - n0, p, kb, out); },
            C + item * c_stride, ldc, ep, bias_per_row, ep.residual ? ep.residual + item * c_stride : nullptr);
    };
    const double flops = 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K) *
                         static_cast<double>(batch);
    const int team_limit = flops < 4e5 ? 1 : threads;
    // Packing A is a copy of M·K floats: worth a parallel step of its own only when large.
    if (!prepacked) pack_a(A, lda, a, M * K >= (int64_t{1} << 16), team_limit);
    parallel_tasks(batch * per_item, phase2, team_limit);
}

#endif  // ZEROCLIP_CPU_AVX2

}  // namespace gemm_detail

/// C (M, N) = act([C +] A·Bᵀ + bias): A (M, K) rows lda apart, B (N, K) rows ldb apart, bias (N)
/// or null. `threads` caps the team (0: all).
inline void gemm_nt(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                    float* C, int64_t ldc, const epilogue& ep = {}, int threads = 0) {
    using namespace gemm_detail;
    if (M <= 0 || N <= 0) return;
#ifdef ZEROCLIP_CPU_AVX2
    if (K <= 0) return empty_product(M, N, C, ldc, ep, false);
    gemm_packed(M, N, K, A, lda, C, ldc, 0, 1, ep, /*bias_per_row=*/false,
                [&](int64_t, int64_t n0, int64_t nb, int64_t p, int64_t kb, float* out) {
                    pack_bt(B + n0 * ldb + p, ldb, kb, nb, out);
                },
                threads);
#else
    const_strided a(A, M, K, Eigen::OuterStride<>(lda));
    const_strided b(B, N, K, Eigen::OuterStride<>(ldb));
    strided out(C, M, N, Eigen::OuterStride<>(ldc));
    if (ep.accumulate) out.noalias() += a * b.transpose();
    else out.noalias() = a * b.transpose();
    finish_block(C, ldc, 0, M, 0, N, ep, false, ep.residual);
    (void)threads;
#endif
}

/// A weight B (N, K) packed once, at load, as gemm_nt packs it per call: for each K block (of
/// k_block(K), at offset p·npad floats) the panels of 16 rows [kb][16], zero-padded to npad rows.
/// The memory (prepacked_bt_floats(n, k) floats, 32-byte aligned) is the caller's.
struct prepacked_bt {
    int64_t n = 0, k = 0, npad = 0;
    float* data = nullptr;
};

/// Floats of a prepacked_bt of B (n, k).
inline size_t prepacked_bt_floats(int64_t n, int64_t k) { return static_cast<size_t>((n + 15) / 16 * 16 * k); }

/// Whether gemm_nt_prepacked exists in this build (it needs the AVX2 kernel).
#ifdef ZEROCLIP_CPU_AVX2
inline constexpr bool has_prepacked_gemm = true;
#else
inline constexpr bool has_prepacked_gemm = false;
#endif

/// B (n, k) row-major → `out` (its data set by the caller).
inline void prepack_bt(const float* B, prepacked_bt& out) {
#ifdef ZEROCLIP_CPU_AVX2
    using namespace gemm_detail;
    out.npad = (out.n + 15) / 16 * 16;
    const int64_t kc = k_block(out.k), blocks = (out.k + kc - 1) / kc;
    parallel_tasks(blocks * (out.npad / 16), [&](int64_t t) {
        const int64_t p = t / (out.npad / 16) * kc, j = t % (out.npad / 16) * 16, kb = std::min(kc, out.k - p);
        pack_bt(B + j * out.k + p, out.k, kb, std::min<int64_t>(16, out.n - j), out.data + p * out.npad + j * kb);
    });
#else
    (void)B, (void)out;
#endif
}

/// Row r (< n) of a prepacked B, unpacked into `row` (k floats).
inline void prepacked_bt_row(const prepacked_bt& b, int64_t r, float* row) {
#ifdef ZEROCLIP_CPU_AVX2
    const int64_t kc = gemm_detail::k_block(b.k), j = r / 16 * 16;
    for (int64_t p = 0; p < b.k; p += kc) {
        const int64_t kb = std::min(kc, b.k - p);
        const float* panel = b.data + p * b.npad + j * kb;
        for (int64_t i = 0; i < kb; ++i) row[p + i] = panel[16 * i + r % 16];
    }
#else
    (void)b, (void)r, (void)row;
#endif
}

/// gemm_nt with B = rows [row0, row0 + N) of a prepacked weight, row0 a multiple of 16.
inline void gemm_nt_prepacked(int64_t M, int64_t N, const float* A, int64_t lda, const prepacked_bt& B, int64_t row0,
                              float* C, int64_t ldc, const epilogue& ep = {}, int threads = 0) {
#ifdef ZEROCLIP_CPU_AVX2
    using namespace gemm_detail;
    if (M <= 0 || N <= 0) return;
    if (B.k <= 0) return empty_product(M, N, C, ldc, ep, false);
    gemm_packed(M, N, B.k, A, lda, C, ldc, 0, 1, ep, /*bias_per_row=*/false,
                [&](int64_t, int64_t n0, int64_t, int64_t p, int64_t kb, float*) -> const float* {
                    return B.data + p * B.npad + (row0 + n0) * kb;
                },
                threads);
#else
    (void)M, (void)N, (void)A, (void)lda, (void)B, (void)row0, (void)C, (void)ldc, (void)ep, (void)threads;
#endif
}

/// C (M, N) = act([C +] A·B + bias) for `batch` independent B and C (A shared): A (M, K) rows lda
/// apart, B (K, N) rows ldb apart (batch item i at B + i·b_stride, C + i·c_stride), bias (M) or null.
inline void gemm_nn(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                    float* C, int64_t ldc, const epilogue& ep = {}, int64_t batch = 1, int64_t b_stride = 0,
                    int64_t c_stride = 0, int threads = 0, const prepacked_a* a_packed = nullptr) {
    using namespace gemm_detail;
    if (M <= 0 || N <= 0 || batch <= 0) return;
#ifdef ZEROCLIP_CPU_AVX2
    if (K <= 0) {
        for (int64_t item = 0; item < batch; ++item) {
            epilogue e = ep;
            if (e.residual) e.residual += item * c_stride;
            empty_product(M, N, C + item * c_stride, ldc, e, true);
        }
        return;
    }
    const packed_a pre = a_packed ? a_packed->view() : packed_a{};
    gemm_packed(M, N, K, A, lda, C, ldc, c_stride, batch, ep, /*bias_per_row=*/true,
                [&](int64_t item, int64_t n0, int64_t nb, int64_t p, int64_t kb, float* out) {
                    pack_b(B + item * b_stride + p * ldb + n0, ldb, kb, nb, out);
                },
                threads, a_packed ? &pre : nullptr);
#else
    for (int64_t item = 0; item < batch; ++item) {
        const_strided a(A, M, K, Eigen::OuterStride<>(lda));
        const_strided b(B + item * b_stride, K, N, Eigen::OuterStride<>(ldb));
        strided out(C + item * c_stride, M, N, Eigen::OuterStride<>(ldc));
        if (ep.accumulate) out.noalias() += a * b;
        else out.noalias() = a * b;
        finish_block(C + item * c_stride, ldc, 0, M, 0, N, ep, true, ep.residual ? ep.residual + item * c_stride : nullptr);
    }
    (void)threads, (void)a_packed;
#endif
}

/// 2-d convolution of a batch of NCHW images as one product per image, the im2col columns packed
/// straight from the images (no buffer): y (n, o, ho, wo) = act(conv(x, w) + bias [+ residual]),
/// x (n, c, h, w), w (o, c·kh·kw) row-major; bias (o) or null; ep.residual laid out like y.
inline void conv2d_nchw(const float* x, int64_t n, int64_t c, int64_t h, int64_t w, const float* weights, int64_t o,
                        int64_t kh, int64_t kw, int64_t stride, int64_t pad, float* y, const epilogue& ep,
                        const prepacked_a* weights_packed = nullptr) {
    using namespace gemm_detail;
    const int64_t ho = (h + 2 * pad - kh) / stride + 1, wo = (w + 2 * pad - kw) / stride + 1;
    const int64_t k = c * kh * kw, plane = ho * wo;
    if (n <= 0 || o <= 0 || plane <= 0) return;
#ifdef ZEROCLIP_CPU_AVX2
    const packed_a pre = weights_packed ? weights_packed->view() : packed_a{};
    gemm_packed(o, plane, k, weights, k, y, plane, o * plane, n, ep, /*bias_per_row=*/true,
                [&](int64_t item, int64_t n0, int64_t nb, int64_t p, int64_t kb, float* out) {
                    pack_im2col(x + item * c * h * w, h, w, kh, kw, stride, pad, wo, n0, nb, p, kb, out);
                },
                0, weights_packed ? &pre : nullptr);
#else
    // Portable: an explicit im2col per image, then the product.
    (void)weights_packed;
    std::vector<float> cols(static_cast<size_t>(k * plane));
    for (int64_t item = 0; item < n; ++item) {
        const float* img = x + item * c * h * w;
        for (int64_t row = 0; row < k; ++row) {
            const int64_t ch = row / (kh * kw), ky = row / kw % kh, kx = row % kw;
            for (int64_t oy = 0; oy < ho; ++oy)
                for (int64_t ox = 0; ox < wo; ++ox) {
                    const int64_t iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                    cols[static_cast<size_t>(row * plane + oy * wo + ox)] =
                        iy >= 0 && iy < h && ix >= 0 && ix < w ? img[(ch * h + iy) * w + ix] : 0.0f;
                }
        }
        epilogue e = ep;
        if (e.residual) e.residual += item * o * plane;
        gemm_nn(o, plane, k, weights, k, cols.data(), plane, y + item * o * plane, plane, e);
    }
#endif
}

}  // namespace zeroclip::detail::cpu
