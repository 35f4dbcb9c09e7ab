//! The CPU backend's matrix products: an AVX2+FMA kernel (an outer product of 6 or 5 rows by 16
//! columns, 10-12 accumulators, the classic BLIS shape; gemm_kernel.hpp) or, chosen at run time
//! where the CPU has AVX-512F, an AVX-512F one over the same packed operands (two tiles of A by
//! 16 columns; gemm_avx512.hpp), multi-threaded by tasks (parallel.hpp), with the step after the
//! product fused in (bias, activation, residual). Without AVX2+FMA the products are Eigen's.
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

#include "gemm_avx512.hpp"
#include "gemm_kernel.hpp"
#include "parallel.hpp"
#include "vec.hpp"

namespace zeroclip::detail::cpu {

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
