//! Convolutions (any kernel size, stride and padding) in int8 or bf16, on the linear layers'
//! kernels (int8_gemm.hpp, bf16_gemm.hpp): a ModifiedResNet's stem, the 1×1 and 3×3 ones of its
//! bottlenecks, its downsample convolutions. Output pixel p of an image reads its receptive field,
//! kh·kw·C values; laid out as row p (im2col), in the order [ky][kx][c], the convolution is a
//! linear layer, rows · Wᵀ with W (O, kh·kw·C) reordered to match at prepare time. So
//!  1. the receptive fields of a chunk of the batch's output pixels are written as rows (a 1×1
//!     stride-1 convolution's rows are its pixels' channel vectors: one transpose; any other's are
//!     gathered from its input rows transposed to pixel rows, zeros outside the image),
//!  2. int8_linear / bf16_linear computes rows·Wᵀ + bias: int8 quantises each row with its own
//!     dynamic scale (a linear's per-row scale), W per output channel,
//!  3. the rows go back into NCHW, with the residual added and the ReLU applied on the way.
//! The weights are quantised once (lowp_conv_weight, kept by the conv weight cache). Every path
//! (scalar, avx2, avx512vnni / avx512bf16) gives the bits of the linear kernel of that path, then
//! v + residual, then relu (x < 0 ? 0 : x): the tests compare with that arithmetic bit for bit.
//! Filling the rows is plain data movement (8×8 AVX2 transposes where the CPU has AVX2, copies).
#pragma once

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <new>
#include <vector>

#include "../../error.hpp"
#include "../precision.hpp"
#include "bf16_gemm.hpp"
#include "cpu_features.hpp"
#include "int8_gemm.hpp"
#include "lowp_common.hpp"

namespace zeroclip::detail::cpu {

/// A convolution's weight (O, C, kh, kw), as PyTorch stores it, in int8 (per output channel
/// scales) or bf16 panels of (O, kh·kw·C): K in the [ky][kx][c] order of the im2col rows.
class lowp_conv_weight {
public:
    lowp_conv_weight(const float* w, int64_t out, int64_t in, int64_t kh, int64_t kw, precision p)
        : prec_(p), out_(out), in_(in), kh_(kh), kw_(kw) {
        ZEROCLIP_ASSERT(p == precision::int8 || p == precision::bf16);
        const int64_t k = kh * kw * in;
        std::vector<float> reordered;
        if (kh * kw > 1) {
            reordered.resize(static_cast<size_t>(out * k));
            for (int64_t o = 0; o < out; ++o)
                for (int64_t c = 0; c < in; ++c)
                    for (int64_t t = 0; t < kh * kw; ++t)  // t = ky·kw + kx
                        reordered[static_cast<size_t>(o * k + t * in + c)] = w[(o * in + c) * kh * kw + t];
            w = reordered.data();
        }
        bytes_ = p == precision::int8 ? int8_weights::bytes(out, k) : bf16_weights::bytes(out, k);
        void* m = std::aligned_alloc(64, (bytes_ + 63) / 64 * 64);
        if (!m) throw std::bad_alloc();
        mem_.reset(m);
        if (p == precision::int8) int8_prepare(w, out, k, m, int8_);
        else bf16_prepare(w, out, k, m, bf16_);
    }

    precision prec() const { return prec_; }
    int64_t out_channels() const { return out_; }
    int64_t in_channels() const { return in_; }
    int64_t kernel_h() const { return kh_; }
    int64_t kernel_w() const { return kw_; }
    int64_t row_length() const { return kh_ * kw_ * in_; }  // K of the product
    size_t bytes() const { return bytes_; }
    const int8_weights& int8() const { return int8_; }
    const bf16_weights& bf16() const { return bf16_; }

private:
    struct free_deleter {
        void operator()(void* p) const { std::free(p); }
    };
    precision prec_;
    int64_t out_, in_, kh_, kw_;
    size_t bytes_ = 0;
    std::unique_ptr<void, free_deleter> mem_;
    int8_weights int8_;
    bf16_weights bf16_;
};

/// The kernel path the backend uses for precision `p` (the linear layers' choice).
inline isa lowp_conv_path(precision p) {
    if (p == precision::int8) return use_isa(isa::avx512_vnni) ? isa::avx512_vnni : use_isa(isa::avx2) ? isa::avx2 : isa::scalar;
    return use_isa(isa::avx512_bf16) ? isa::avx512_bf16 : use_isa(isa::avx2) ? isa::avx2 : isa::scalar;
}

namespace lowp_conv_detail {

/// rows (len, c), ld apart ← plane (c, hw) columns [s, s + len).
inline void planes_to_rows_scalar(const float* src, int64_t hw, int64_t c, int64_t s, int64_t len, float* dst,
                                  int64_t ld) {
    for (int64_t c0 = 0; c0 < c; c0 += 16)
        for (int64_t j = 0; j < len; ++j)
            for (int64_t ch = c0; ch < std::min(c, c0 + 16); ++ch) dst[j * ld + ch] = src[ch * hw + s + j];
}

/// The output's value: v (+ residual), then relu if asked (relu1's x < 0 ? 0 : x).
inline float finish(float v, const float* res, bool relu) {
    if (res) v = v + *res;
    return relu ? (v < 0.0f ? 0.0f : v) : v;
}

/// plane (o, hw) columns [s, s + len) ← rows (len, o), ld apart, + residual (shaped like the plane), relu.
inline void rows_to_planes_scalar(const float* src, int64_t ld, int64_t o, int64_t hw, int64_t s, int64_t len,
                                  const float* res, bool relu, float* dst) {
    for (int64_t c0 = 0; c0 < o; c0 += 16)
        for (int64_t ch = c0; ch < std::min(o, c0 + 16); ++ch)
            for (int64_t j = 0; j < len; ++j) {
                const int64_t at = ch * hw + s + j;
                dst[at] = finish(src[j * ld + ch], res ? res + at : nullptr, relu);
            }
}

#ifdef ZEROCLIP_CPU_X86
ZEROCLIP_TARGET_AVX2 inline void planes_to_rows_avx2(const float* src, int64_t hw, int64_t c, int64_t s, int64_t len,
                                                     float* dst, int64_t ld) {
    int64_t j = 0;
    for (; j + 8 <= len; j += 8) {
        int64_t ch = 0;
        for (; ch + 8 <= c; ch += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + (ch + i) * hw + s + j);
            transpose8(r);
            for (int i = 0; i < 8; ++i) _mm256_storeu_ps(dst + (j + i) * ld + ch, r[i]);
        }
        for (; ch < c; ++ch)
            for (int i = 0; i < 8; ++i) dst[(j + i) * ld + ch] = src[ch * hw + s + j + i];
    }
    if (j < len) planes_to_rows_scalar(src, hw, c, s + j, len - j, dst + j * ld, ld);
}

ZEROCLIP_TARGET_AVX2 inline void rows_to_planes_avx2(const float* src, int64_t ld, int64_t o, int64_t hw, int64_t s,
                                                     int64_t len, const float* res, bool relu, float* dst) {
    const __m256 zero = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= len; j += 8) {
        int64_t ch = 0;
        for (; ch + 8 <= o; ch += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + (j + i) * ld + ch);
            transpose8(r);
            for (int i = 0; i < 8; ++i) {
                const int64_t at = (ch + i) * hw + s + j;
                __m256 v = r[i];
                if (res) v = _mm256_add_ps(v, _mm256_loadu_ps(res + at));
                if (relu) v = _mm256_andnot_ps(_mm256_cmp_ps(v, zero, _CMP_LT_OQ), v);
                _mm256_storeu_ps(dst + at, v);
            }
        }
        for (; ch < o; ++ch)
            for (int i = 0; i < 8; ++i) {
                const int64_t at = ch * hw + s + j + i;
                dst[at] = finish(src[(j + i) * ld + ch], res ? res + at : nullptr, relu);
            }
    }
    if (j < len) rows_to_planes_scalar(src + j * ld, ld, o, hw, s + j, len - j, res, relu, dst);
}

/// copy_spans for spans of ≥ 8 floats: 8 at a time, the last 8 of a span overlapping the others.
ZEROCLIP_TARGET_AVX2 inline void copy_spans_avx2(const float* from, int64_t from_step, float* to, int64_t to_step,
                                                 int64_t count, int64_t span) {
    for (int64_t i = 0; i < count; ++i, from += from_step, to += to_step) {
        int64_t n = 0;
        for (; n + 8 <= span; n += 8) _mm256_storeu_ps(to + n, _mm256_loadu_ps(from + n));
        if (n < span) _mm256_storeu_ps(to + span - 8, _mm256_loadu_ps(from + span - 8));
    }
}
#endif

/// `count` spans of `span` floats, from_step and to_step apart: a receptive field's row of kw
/// input pixels into the rows of consecutive output pixels (one call, not a memmove per pixel).
inline void copy_spans(bool avx2, const float* from, int64_t from_step, float* to, int64_t to_step, int64_t count,
                       int64_t span) {
#ifdef ZEROCLIP_CPU_X86
    if (avx2 && span >= 8) return copy_spans_avx2(from, from_step, to, to_step, count, span);
#endif
    (void)avx2;
    for (int64_t i = 0; i < count; ++i) std::copy(from + i * from_step, from + i * from_step + span, to + i * to_step);
}

/// planes_to_rows on AVX2 where `avx2`, else in plain code (the same values).
inline void planes_to_rows(bool avx2, const float* src, int64_t hw, int64_t c, int64_t s, int64_t len, float* dst,
                           int64_t ld) {
#ifdef ZEROCLIP_CPU_X86
    if (avx2) return planes_to_rows_avx2(src, hw, c, s, len, dst, ld);
#endif
    (void)avx2;
    planes_to_rows_scalar(src, hw, c, s, len, dst, ld);
}

/// The shape of a convolution of one image x (c, h, w) by a weight (o, c, kh, kw).
struct conv_geometry {
    int64_t c, h, w, kh, kw, stride, pad;
    int64_t out_h() const { return (h + 2 * pad - kh) / stride + 1; }
    int64_t out_w() const { return (w + 2 * pad - kw) / stride + 1; }
    int64_t row_length() const { return kh * kw * c; }
    bool pointwise() const { return kh == 1 && kw == 1 && stride == 1 && pad == 0; }
};

/// The im2col rows (len, kh·kw·c) of output pixels [s, s + len) of image x: per pixel, for each
/// (ky, kx), the c channels of input pixel (oy·stride + ky − pad, ox·stride + kx − pad), zeros
/// outside the image. The input rows these pixels read are transposed into pixel rows first (8×8
/// blocks over whole rows, however narrow the image), so each (pixel, ky) is a copy of kw·c
/// contiguous values (fewer at the edges) rather than kw short transposes; the pixels of an
/// output row whose receptive field lies inside the image are copied as one block per ky.
inline void im2col_rows(const conv_geometry& g, bool avx2, const float* x, int64_t s, int64_t len, float* dst) {
    const int64_t wo = g.out_w(), k = g.row_length(), span = g.kw * g.c;
    if (g.pointwise()) return planes_to_rows(avx2, x, g.h * g.w, g.c, s, len, dst, k);
    const int64_t oy0 = s / wo, oy1 = (s + len - 1) / wo;
    const int64_t iy0 = std::max<int64_t>(0, oy0 * g.stride - g.pad);
    const int64_t iy1 = std::min(g.h, oy1 * g.stride - g.pad + g.kh);
    thread_local std::vector<float> pixel_rows;  // per thread: pieces may be filled side by side
    if (iy1 > iy0) {
        if (pixel_rows.size() < static_cast<size_t>((iy1 - iy0) * g.w * g.c))
            pixel_rows.resize(static_cast<size_t>((iy1 - iy0) * g.w * g.c));
        planes_to_rows(avx2, x, g.h * g.w, g.c, iy0 * g.w, (iy1 - iy0) * g.w, pixel_rows.data(), g.c);
    }
    // Output columns whose kw input pixels all lie inside a row: [first_inside, last_inside].
    const int64_t first_inside = (g.pad + g.stride - 1) / g.stride;
    const int64_t last_inside = g.w + g.pad - g.kw < 0 ? -1 : (g.w + g.pad - g.kw) / g.stride;
    for (int64_t j = 0; j < len;) {  // one output row (or the part of it in [s, s + len)) a step
        const int64_t oy = (s + j) / wo, ox0 = (s + j) % wo, run = std::min(len - j, wo - ox0);
        const int64_t in0 = std::clamp<int64_t>(first_inside - ox0, 0, run);
        const int64_t in1 = std::clamp<int64_t>(last_inside + 1 - ox0, in0, run);
        for (int64_t ky = 0; ky < g.kh; ++ky) {
            const int64_t iy = oy * g.stride - g.pad + ky;
            float* seg = dst + j * k + ky * span;  // pixel t's part: seg + t·k, span floats
            if (iy < 0 || iy >= g.h) {
                for (int64_t t = 0; t < run; ++t) std::fill(seg + t * k, seg + t * k + span, 0.0f);
                continue;
            }
            const float* line = pixel_rows.data() + (iy - iy0) * g.w * g.c;
            if (in1 > in0)
                copy_spans(avx2, line + ((ox0 + in0) * g.stride - g.pad) * g.c, g.stride * g.c, seg + in0 * k, k,
                           in1 - in0, span);
            const auto edge_pixel = [&](int64_t t) {  // zeros for the kx outside the row
                const int64_t ix = (ox0 + t) * g.stride - g.pad;
                const int64_t kx0 = std::min(g.kw, std::max<int64_t>(0, -ix)), kx1 = std::max(kx0, std::min(g.kw, g.w - ix));
                float* out = seg + t * k;
                std::fill(out, out + kx0 * g.c, 0.0f);
                if (kx1 > kx0) std::copy(line + (ix + kx0) * g.c, line + (ix + kx1) * g.c, out + kx0 * g.c);
                std::fill(out + kx1 * g.c, out + span, 0.0f);
            };
            for (int64_t t = 0; t < in0; ++t) edge_pixel(t);
            for (int64_t t = in1; t < run; ++t) edge_pixel(t);
        }
        j += run;
    }
}

/// f(image, first pixel in it, count, offset in [p0, p1)) for the images that pixels [p0, p1) of
/// the batch (hw pixels per image) fall in.
template <class F>
void for_segments(int64_t p0, int64_t p1, int64_t hw, F&& f) {
    for (int64_t p = p0; p < p1;) {
        const int64_t img = p / hw, s = p % hw, len = std::min(p1 - p, hw - s);
        f(img, s, len, p - p0);
        p += len;
    }
}

}  // namespace lowp_conv_detail

/// y (n, O, ho, wo) = act(conv(x, W, stride, pad) + bias [+ residual]) for x (n, C, h, w), zero
/// padded, on `path` (the caller checks the CPU has it). bias (O) or null; residual shaped like y
/// or null; act::relu is applied after the residual (the end of a bottleneck). `chunk_rows`
/// (tests): output pixels per product, a multiple of 8; 0 sizes the chunks for the cache.
inline void lowp_conv(isa path, const lowp_conv_weight& w, const float* x, int64_t n, int64_t h, int64_t wd,
                      int64_t stride, int64_t pad, const float* bias, const float* residual, act activation, float* y,
                      int64_t chunk_rows = 0) {
    using namespace lowp_conv_detail;
    const conv_geometry g{w.in_channels(), h, wd, w.kernel_h(), w.kernel_w(), stride, pad};
    ZEROCLIP_ASSERT(stride >= 1 && pad >= 0);
    const int64_t c = g.c, k = g.row_length(), o = w.out_channels(), hw = g.out_h() * g.out_w(), total = n * hw;
    if (g.out_h() <= 0 || g.out_w() <= 0 || total <= 0 || o <= 0) return;
    // Chunks of pixels whose rows (in and out) take about 1 MiB (an L2 cache), so they are still
    // in cache when the product reads them and when they go back: 15% less time than 4 MiB
    // chunks at batch 16 (RN50's 1×1 convolutions, one thread), 35% less at batch 1.
    const int64_t per_chunk = std::max<int64_t>(64, (int64_t{1} << 18) / (k + o));
    const int64_t chunks = (total + per_chunk - 1) / per_chunk;
    const int64_t rows = chunk_rows > 0 ? chunk_rows : ((total + chunks - 1) / chunks + 7) / 8 * 8;
    const bool relu = activation == act::relu;
    const bool avx2 = path != isa::scalar && cpu_has(isa::avx2);
    // A piece of the fill that gathers (k×k) transposes the input rows it reads: at least about
    // four output rows a piece, so rows read by two pieces are a small part of the work.
    const int64_t fill_grain = std::max<int64_t>(std::max<int64_t>(1, 4096 / k), g.pointwise() ? 1 : g.out_w() / 2);
    // Pixels [p0, p1): their rows in, the product, back out; each step on up to `threads`.
    const auto run_chunk = [&](int64_t p0, int64_t p1, int threads) {
        const int64_t m = p1 - p0, blocks = (m + 7) / 8;
        thread_local std::vector<float> in_buf, out_buf;  // per thread: chunks may run side by side
        if (in_buf.size() < static_cast<size_t>(m * k)) in_buf.resize(static_cast<size_t>(m * k));
        if (out_buf.size() < static_cast<size_t>(m * o)) out_buf.resize(static_cast<size_t>(m * o));
        float* xt = in_buf.data();
        float* yt = out_buf.data();
        const auto blocks_for = [&](int64_t grain, auto&& body) {
            if (threads == 1) body(int64_t{0}, blocks);
            else parallel_for(blocks, grain, body);
        };
        blocks_for(fill_grain, [&](int64_t b0, int64_t b1) {
            for_segments(p0 + b0 * 8, std::min(p1, p0 + b1 * 8), hw, [&](int64_t img, int64_t s, int64_t len, int64_t) {
                im2col_rows(g, avx2, x + img * c * h * wd, s, len, xt + (img * hw + s - p0) * k);
            });
        });
        const lowp_out out{yt, o, 0, o, bias, false, act::none};
        if (w.prec() == precision::int8) int8_linear(path, xt, k, m, w.int8(), out, threads);
        else bf16_linear(path, xt, k, m, w.bf16(), out, threads);
        blocks_for(std::max<int64_t>(1, 4096 / o), [&](int64_t b0, int64_t b1) {
            for_segments(p0 + b0 * 8, std::min(p1, p0 + b1 * 8), hw, [&](int64_t img, int64_t s, int64_t len, int64_t) {
                const float* src = yt + (img * hw + s - p0) * o;
                const float* res = residual ? residual + img * o * hw : nullptr;
                float* dst = y + img * o * hw;
#ifdef ZEROCLIP_CPU_X86
                if (avx2) return rows_to_planes_avx2(src, o, o, hw, s, len, res, relu, dst);
#endif
                rows_to_planes_scalar(src, o, o, hw, s, len, res, relu, dst);
            });
        });
    };
    const int64_t count = (total + rows - 1) / rows;
    if (count >= 2 * max_threads() || (count >= 2 && max_threads() <= 1)) {
        // Enough chunks: each a task of its own on one thread (its rows stay in that core's cache,
        // one parallel step for the whole convolution rather than three per chunk).
        parallel_tasks(count, [&](int64_t t) { run_chunk(t * rows, std::min(total, (t + 1) * rows), 1); });
    } else {
        for (int64_t p0 = 0; p0 < total; p0 += rows) run_chunk(p0, std::min(total, p0 + rows), 0);
    }
    if (activation != act::none && activation != act::relu) activate(y, n * o * hw, activation);
}

}  // namespace zeroclip::detail::cpu
