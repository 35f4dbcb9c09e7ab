//! 3×3 stride-1 convolutions (pad 1) by Winograd's minimal filtering F(2×2, 3×3) (Lavin & Gray,
//! "Fast Algorithms for Convolutional Neural Networks", 2015): each 2×2 block of outputs comes
//! from a 4×4 block of inputs with 16 products per (input, output) channel pair instead of 36,
//! so the matrix products shrink 2.25×. The transforms use only ±1 and ½, which keeps float32
//! results within a few units in the last place of the direct convolution.
//!
//!   U[ξ] = G·g·Gᵀ   per (out, in) channel: the 3×3 kernel g → 16 values, once per weight
//!   V[ξ] = Bᵀ·d·B   per (in channel, tile): the 4×4 input patch d → 16 values
//!   M[ξ] = U[ξ]·V[ξ]  16 matrix products (out × in) · (in × tiles), the packed GEMM kernel
//!   y    = Aᵀ·m·A   per (out channel, tile): 16 values → the 2×2 outputs, then bias, residual,
//!                   activation
//!
//! The products run on blocks of ≤ 64 tiles (consecutive in the batch, across images), each on
//! one thread, so the transformed blocks stay in L2.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "gemm.hpp"

namespace zeroclip::detail::cpu {

#ifdef ZEROCLIP_CPU_AVX2

/// U = G·g·Gᵀ for every (out, in) pair, as 16 packed product operands (out × in), one per ξ.
struct winograd_weights {
    int64_t out = 0, in = 0;
    std::array<prepacked_a, 16> u;

    const gemm_detail::tile_plan& plan() const { return u[0].plan; }  // the same for every ξ
};

/// Whether conv2d_winograd serves this convolution. Below 32 input channels the transforms cost
/// about as much as the products save, so those stay direct products.
inline bool winograd_applies(int64_t in, int64_t kh, int64_t kw, int64_t stride, int64_t pad) {
    return kh == 3 && kw == 3 && stride == 1 && pad == 1 && in >= 32;
}

/// The transformed, packed weights of w (out, in, 3, 3).
inline winograd_weights winograd_prepare(const float* w, int64_t out, int64_t in) {
    winograd_weights ww;
    ww.out = out;
    ww.in = in;
    std::vector<float> u(static_cast<size_t>(16 * out * in));  // [ξ][out][in]
    for (int64_t o = 0; o < out; ++o)
        for (int64_t c = 0; c < in; ++c) {
            const float* g = w + (o * in + c) * 9;
            double t[4][3];  // G·g, in double so that U is rounded once
            for (int j = 0; j < 3; ++j) {
                const double g0 = g[j], g1 = g[3 + j], g2 = g[6 + j];
                t[0][j] = g0;
                t[1][j] = 0.5 * (g0 + g1 + g2);
                t[2][j] = 0.5 * (g0 - g1 + g2);
                t[3][j] = g2;
            }
            for (int i = 0; i < 4; ++i) {
                const double r[4] = {t[i][0], 0.5 * (t[i][0] + t[i][1] + t[i][2]), 0.5 * (t[i][0] - t[i][1] + t[i][2]),
                                     t[i][2]};
                for (int j = 0; j < 4; ++j) u[static_cast<size_t>(((4 * i + j) * out + o) * in + c)] = static_cast<float>(r[j]);
            }
        }
    for (int xi = 0; xi < 16; ++xi) ww.u[static_cast<size_t>(xi)] = prepack_a(u.data() + xi * out * in, out, in);
    return ww;
}

/// The even and the odd elements of p[0, 16).
inline void deinterleave16(const float* p, __m256& even, __m256& odd) {
    const __m256i order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    const __m256 a = _mm256_permutevar8x32_ps(_mm256_loadu_ps(p), order);
    const __m256 b = _mm256_permutevar8x32_ps(_mm256_loadu_ps(p + 8), order);
    even = _mm256_permute2f128_ps(a, b, 0x20);
    odd = _mm256_permute2f128_ps(a, b, 0x31);
}

/// V = Bᵀ·d·B for `count` ≤ 8 tiles side by side in one tile row, their 4×4 patches starting at
/// patch, patch + 2, …, patch + 14 (rows `ld` apart; 18 readable floats per row): V[ξ] of tile k
/// goes to dst[ξ·xi_stride + k].
inline void input_transform8(const float* patch, int64_t ld, int64_t count, float* dst, int64_t xi_stride) {
    __m256 d[4][4];
    for (int r = 0; r < 4; ++r) {
        deinterleave16(patch + r * ld, d[r][0], d[r][1]);
        deinterleave16(patch + r * ld + 2, d[r][2], d[r][3]);
    }
    for (int s = 0; s < 4; ++s) {  // Bᵀ·d, in place
        const __m256 d0 = d[0][s], d1 = d[1][s], d2 = d[2][s], d3 = d[3][s];
        d[0][s] = _mm256_sub_ps(d0, d2);
        d[1][s] = _mm256_add_ps(d1, d2);
        d[2][s] = _mm256_sub_ps(d2, d1);
        d[3][s] = _mm256_sub_ps(d1, d3);
    }
    const __m256i mask = tail_mask(count);
    for (int r = 0; r < 4; ++r) {  // ·B
        const __m256 v[4] = {_mm256_sub_ps(d[r][0], d[r][2]), _mm256_add_ps(d[r][1], d[r][2]),
                             _mm256_sub_ps(d[r][2], d[r][1]), _mm256_sub_ps(d[r][1], d[r][3])};
        for (int s = 0; s < 4; ++s) {
            float* to = dst + (4 * r + s) * xi_stride;
            if (count == 8) _mm256_storeu_ps(to, v[s]);
            else _mm256_maskstore_ps(to, mask, v[s]);  // the next lanes belong to other tiles
        }
    }
}

/// Aᵀ·m·A for 8 tiles side by side (m[ξ] of tile k at src[ξ·xi_stride + k]): their 2×2 outputs,
/// as two rows of 16 (row r, tile k, column s at out[r][2k + s]).
inline void output_transform8(const float* src, int64_t xi_stride, float out[2][16]) {
    __m256 am[2][4];  // Aᵀ·m
    for (int s = 0; s < 4; ++s) {
        const __m256 m0 = _mm256_loadu_ps(src + s * xi_stride), m1 = _mm256_loadu_ps(src + (4 + s) * xi_stride);
        const __m256 m2 = _mm256_loadu_ps(src + (8 + s) * xi_stride), m3 = _mm256_loadu_ps(src + (12 + s) * xi_stride);
        am[0][s] = _mm256_add_ps(_mm256_add_ps(m0, m1), m2);
        am[1][s] = _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3);
    }
    for (int r = 0; r < 2; ++r) {
        const __m256 left = _mm256_add_ps(_mm256_add_ps(am[r][0], am[r][1]), am[r][2]);
        const __m256 right = _mm256_sub_ps(_mm256_sub_ps(am[r][1], am[r][2]), am[r][3]);
        const __m256 lo = _mm256_unpacklo_ps(left, right), hi = _mm256_unpackhi_ps(left, right);
        _mm256_storeu_ps(out[r], _mm256_permute2f128_ps(lo, hi, 0x20));
        _mm256_storeu_ps(out[r] + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
    }
}

/// y (n, out, h, w) = act(conv3×3(x, w, pad 1) + bias [+ residual]) for x (n, in, h, w).
inline void conv2d_winograd(const float* x, int64_t n, int64_t h, int64_t w, const winograd_weights& ww, float* y,
                            const epilogue& ep) {
    using namespace gemm_detail;
    const int64_t in = ww.in, out = ww.out, th = (h + 1) / 2, tw = (w + 1) / 2, per_image = th * tw;
    const int64_t tiles = n * per_image;
    if (tiles <= 0 || out <= 0) return;
    const int64_t team = max_threads();
    // Blocks of ≤ 64 tiles (multiples of 16, the product's panel width), and when there are too
    // few blocks, the output channels split into parts as well (each part redoes the input
    // transform, cheap next to its products): the split that leaves the threads the least idle
    // time, the largest blocks among equals.
    int64_t block = 64, parts = 1;
    double best = 0;
    for (int64_t b : {64, 48, 32, 16})
        for (int64_t p : {1, 2, 4}) {
            const int64_t tasks = (tiles + b - 1) / b * p;
            if (p > 1 && ww.plan().size() / p < 8) continue;
            const double busy = static_cast<double>(tasks) / static_cast<double>((tasks + team - 1) / team * team);
            if (busy > best + 0.02) best = busy, block = b, parts = p;
        }
    const int64_t blocks = (tiles + block - 1) / block;

    parallel_tasks(blocks * parts, [&](int64_t task) {
        const int64_t t0 = task / parts * block, nt = std::min(block, tiles - t0), part = task % parts;
        const gemm_detail::tile_plan& plan = ww.plan();
        const int64_t p0 = plan.size() * part / parts, p1 = plan.size() * (part + 1) / parts;
        const int64_t o0 = plan.row0(p0), o1 = plan.row0(p1 - 1) + plan.rows(p1 - 1);
        // V as [ξ][in][block] and M as [ξ][out][block]: 16 planes, each a cache line longer than
        // its rows need, so that the 16 lines a transform touches at once do not all fall into one
        // L1 set (plane sizes are multiples of 4 KiB).
        const int64_t v_xi = in * block + 16, m_xi = out * block + 16;
        float* v = scratch(static_cast<size_t>(16 * v_xi), 4);
        float* m = scratch(static_cast<size_t>(16 * m_xi + 8), 5);  // + 8: whole-vector reads

        // The block's tiles as segments of ≤ 8 side by side in one tile row: each is one vector
        // transform. A segment starts at tile j of the block, its first patch at (iy, ix).
        struct segment {
            int64_t j, count, img, iy, ix;
        } segs[64];
        int64_t nsegs = 0;
        for (int64_t j = 0; j < nt;) {
            const int64_t t = t0 + j, img = t / per_image, ty = t % per_image / tw, tx = t % tw;
            const int64_t count = std::min({int64_t{8}, tw - tx, nt - j});
            segs[nsegs++] = {j, count, img, 2 * ty - 1, 2 * tx - 1};
            j += count;
        }

        // V = Bᵀ·d·B. Patches that reach past the image (or whose 18-float rows would) are first
        // copied, zero-padded, into a 4×24 strip.
        alignas(32) float strip[4][24];
        for (int64_t c = 0; c < in; ++c)
            for (int64_t g = 0; g < nsegs; ++g) {
                const segment& sg = segs[g];
                const float* plane = x + (sg.img * in + c) * h * w;
                float* dst = v + c * block + sg.j;
                if (sg.iy >= 0 && sg.iy + 4 <= h && sg.ix >= 0 && sg.ix + 18 <= w) {
                    input_transform8(plane + sg.iy * w + sg.ix, w, sg.count, dst, v_xi);
                    continue;
                }
                const int64_t lo = std::max<int64_t>(0, -sg.ix), hi = std::min<int64_t>(24, w - sg.ix);
                for (int r = 0; r < 4; ++r) {
                    const int64_t iy = sg.iy + r;
                    if (iy < 0 || iy >= h || hi <= lo) {
                        zero_floats(strip[r], 24);
                        continue;
                    }
                    zero_floats(strip[r], lo);
                    copy_floats(strip[r] + lo, plane + iy * w + sg.ix + lo, hi - lo);
                    zero_floats(strip[r] + hi, 24 - hi);
                }
                input_transform8(strip[0], 24, sg.count, dst, v_xi);
            }

        // M[ξ] = U[ξ]·V[ξ] for this part's output channels.
        for (int xi = 0; xi < 16; ++xi) {
            const float* vx = v + xi * v_xi;
            block_task(
                ww.u[static_cast<size_t>(xi)].view(), p0, p1, 0, nt,
                [&](int64_t p, int64_t kb, float* packed) { pack_b(vx + p * block, block, kb, nt, packed); },
                m + xi * m_xi, block, epilogue{}, true, nullptr);
        }

        // y = Aᵀ·m·A, clipped at the image's right and bottom edges, then bias, residual and
        // activation on each output row.
        alignas(32) float rows[2][16];
        const bool vector_act = ep.activation != act::gelu;  // erf has no vector form here
        for (int64_t o = o0; o < o1; ++o) {
            const float bias = ep.bias ? ep.bias[o] : 0.0f;
            for (int64_t g = 0; g < nsegs; ++g) {
                const segment& sg = segs[g];
                output_transform8(m + o * block + sg.j, m_xi, rows);
                const int64_t ox = sg.ix + 1, cols = std::min(2 * sg.count, w - ox);
                for (int r = 0; r < 2 && sg.iy + 1 + r < h; ++r) {
                    const int64_t at = (sg.img * out + o) * h * w + (sg.iy + 1 + r) * w + ox;
                    if (cols == 16 && vector_act) {  // the common case in one pass
                        const __m256 b = _mm256_set1_ps(bias);
                        __m256 y0 = _mm256_add_ps(_mm256_load_ps(rows[r]), b), y1 = _mm256_add_ps(_mm256_load_ps(rows[r] + 8), b);
                        if (ep.residual) {
                            y0 = _mm256_add_ps(y0, _mm256_loadu_ps(ep.residual + at));
                            y1 = _mm256_add_ps(y1, _mm256_loadu_ps(ep.residual + at + 8));
                        }
                        _mm256_storeu_ps(y + at, activate8(y0, ep.activation));
                        _mm256_storeu_ps(y + at + 8, activate8(y1, ep.activation));
                        continue;
                    }
                    copy_floats(y + at, rows[r], cols);
                    if (ep.residual) add(y + at, ep.residual + at, cols);
                    bias_activate(y + at, cols, bias, ep.activation);
                }
            }
        }
    });
}

#endif  // ZEROCLIP_CPU_AVX2

}  // namespace zeroclip::detail::cpu
