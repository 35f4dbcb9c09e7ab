//! The AVX2+FMA micro-kernel of gemm.hpp and what feeds it: the 6(5)×16 tile kernel, packing of A
//! (tiles), B (panels, transposed or not) and im2col panels straight from NCHW images, and the
//! task that computes one block of C for all of K with the epilogue fused into the last K block.
//! Split from gemm.hpp (the drivers) to keep each file readable whole. The packed forms here are
//! also the AVX-512F kernel's (gemm_avx512.hpp), which reads two tiles of A at once.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>
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
/// The count of tiles is even where six more fives make it so: the AVX-512F kernel takes tiles
/// in pairs and a lone last tile runs at half its rate (M = 50, a ViT's 50 tokens: 10 × 5 rows,
/// not 4 × 5 + 5 × 6). The AVX2 kernel does the same FMAs either way.
struct tile_plan {
    int64_t m = 0, fives = 0, tiles = 0;
    explicit tile_plan(int64_t rows) : m(rows) {
        if (m >= 20) {
            fives = (6 - m % 6) % 6;  // 5·fives ≡ m (mod 6)
            if ((fives + (m - 5 * fives) / 6) % 2 == 1 && m >= 5 * (fives + 6)) fives += 6;
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
    int64_t cols;  // columns of C that exist (≤ 16 a panel)
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

/// The loops of a block task, whichever the kernel: K in blocks, tiles of A in groups of ≤ 24
/// (≤ 144 rows · kb: ≤ 144 KiB of L2) while ≤ Panels panels of B are in L1. `run(t, count, p, kb,
/// bp, st)` computes `count` (≤ Step) tiles of A from tile t, K rows [p, p + kb), against the
/// panels from bp (the next one 16·kb floats on; st.cols ≤ 16·Panels columns exist), into st (the
/// epilogue set in st for the last K block).
template <int Step, int Panels, class PackB, class Run>
inline void block_loops(const packed_a& a, int64_t t0, int64_t t1, int64_t n0, int64_t n1, PackB&& pack, float* C,
                        int64_t ldc, const epilogue& ep, bool bias_per_row, const float* residual, Run&& run) {
    const tile_plan& plan = *a.plan;
    const int64_t nb = n1 - n0, panels = (nb + 15) / 16;
    float* packed = scratch(static_cast<size_t>(panels * 16 * a.kc), 0);
    const bool fuse = ep.activation != act::gelu;  // erf has no vector form here: a pass at the end
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
            for (int64_t jp = 0; jp < panels; jp += Panels) {
                const float* bp = panels_at + jp * 16 * kb;
                const int64_t j = n0 + 16 * jp;
                for (int64_t t = g0; t < g1; t += Step) {
                    const int64_t row0 = plan.row0(t);
                    tile_store st{C + row0 * ldc + j, ldc, std::min<int64_t>(16 * Panels, n1 - j), overwrite};
                    if (last && fuse) {
                        st.fused = true;
                        if (ep.bias) st.bias = bias_per_row ? ep.bias + row0 : ep.bias + j;
                        st.bias_per_row = bias_per_row;
                        if (residual) st.residual = residual + row0 * ldc + j;
                        st.activation = ep.activation;
                    }
                    run(t, std::min<int64_t>(Step, g1 - t), p, kb, bp, st);
                }
            }
        }
    }
    if (!fuse) finish_block(C, ldc, plan.row0(t0), plan.row0(t1 - 1) + plan.rows(t1 - 1), n0, n1, ep, bias_per_row, residual);
}

/// C[tiles t0..t1 of A, columns n0..n1) for all of K with the AVX2 kernel (block_task in
/// gemm_avx512.hpp chooses it or the AVX-512F one): B's columns packed by this task (`pack(p,
/// kb, out)` packs K rows [p, p + kb) of the task's columns, or returns where they are packed
/// already: panels [kb][16] one after another); bias, residual and activation are
/// applied as the last K block is stored.
template <class PackB>
inline void block_task_avx2(const packed_a& a, int64_t t0, int64_t t1, int64_t n0, int64_t n1, PackB&& pack, float* C,
                            int64_t ldc, const epilogue& ep, bool bias_per_row, const float* residual) {
    block_loops<1, 1>(a, t0, t1, n0, n1, std::forward<PackB>(pack), C, ldc, ep, bias_per_row, residual,
                   [&](int64_t t, int64_t, int64_t p, int64_t kb, const float* bp, const tile_store& st) {
                       run_kernel(a.plan->rows(t), kb, a.tile(p, kb, t), bp, st);
                   });
}

#endif  // ZEROCLIP_CPU_AVX2

}  // namespace gemm_detail

}  // namespace zeroclip::detail::cpu
