//! zeroclip::detail — Pillow's resampling, reproduced to the bit: the separable BICUBIC filter of
//! libImaging/Resample.c (double coefficients, 22-bit fixed point for 8-bit images, uint8
//! rounding between the passes, double accumulation for 32-bit 'I' images) and the NEAREST scaling
//! of libImaging/Geometry.c that Image.resize forces on 'P' and '1' images.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#if !defined(ZEROCLIP_NO_SIMD) && (defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2))
#include <emmintrin.h>
#define ZEROCLIP_RESAMPLE_SSE2 1
#endif

// AVX2 forms of the 8-bit passes, compiled with a function-level target attribute whatever the
// build flags, and chosen at run time when the CPU has AVX2: one binary for every x86-64.
#if !defined(ZEROCLIP_NO_SIMD) && defined(ZEROCLIP_RESAMPLE_SSE2) && defined(__GNUC__) && \
    (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define ZEROCLIP_RESAMPLE_AVX2 1
#endif

namespace zeroclip::detail {

/// Returns `v` unchanged, but hides it from the optimiser so `a * b + c` can never be contracted
/// into a fused multiply-add (-ffp-contract=fast, -march=native): Pillow is built without FMA, and
/// one fused rounding can move a coefficient or an 'I' pixel across a rounding boundary.
inline double fp_barrier(double v) noexcept {
#if defined(__GNUC__) && (defined(__x86_64__) || (defined(__i386__) && defined(__SSE2_MATH__)))
    __asm__("" : "+x"(v));
#elif defined(__GNUC__) && defined(__aarch64__)
    __asm__("" : "+w"(v));
#else
    volatile double t = v;
    v = t;
#endif
    return v;
}

/// Pillow's bicubic_filter (Keys, a = -0.5), evaluated in the same operation order.
inline double pil_bicubic_filter(double x) noexcept {
    constexpr double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return fp_barrier((fp_barrier((a + 2.0) * x) - (a + 3.0)) * x * x) + 1;
    if (x < 2.0) return (fp_barrier((fp_barrier((x - 5) * x) + 8) * x) - 4) * a;
    return 0.0;
}

/// One axis of a resampling, for the output indices first .. first + count - 1 (a crop needs
/// no more): entry e = xx - first reads input samples bounds[2e] .. bounds[2e] + bounds[2e+1] - 1
/// weighted by weights[e * ksize + j] (doubles, for 'I') or fixed[e * ksize + j] (Pillow's
/// normalize_coeffs_8bpc, for 8-bit modes).
struct resample_axis {
    int first = 0;
    int ksize = 0;
    std::vector<int> bounds;
    std::vector<double> weights;
    std::vector<int32_t> fixed;
    /// The fixed-point weights split as fixed = hi * 2^15 + lo (lo in 0..32767), padded with
    /// zeros to kpad = ksize rounded up to 8: two 16-bit halves let SIMD multiply-add pairs
    /// (pmaddwd) reproduce the 32-bit sums exactly.
    int kpad = 0;
    std::vector<int16_t> lo, hi;

    size_t entry(int xx) const { return static_cast<size_t>(xx - first); }
    int min_of(int xx) const { return bounds[2 * entry(xx)]; }
    int count_of(int xx) const { return bounds[2 * entry(xx) + 1]; }
    int end_of(int xx) const { return min_of(xx) + count_of(xx); }
};

/// Pillow's 8-bit fixed point: 32 bits minus 8 for the value minus 2 for overshoot.
constexpr int pil_precision_bits = 32 - 8 - 2;

/// Pillow's precompute_coeffs for the BICUBIC filter over the box [0, in_size) (what
/// Image.resize passes when no box is given), followed by normalize_coeffs_8bpc, for output
/// indices [first, first + count) of out_size.
inline resample_axis pil_bicubic_axis(int in_size, int out_size, int first, int count) {
    constexpr double filter_support = 2.0;
    // Pillow keeps the box in floats; integral sizes below 2^24 are exact either way.
    const double in0 = 0.0, in1 = static_cast<double>(static_cast<float>(in_size));
    double scale = (in1 - in0) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = filter_support * filterscale;
    resample_axis ax;
    ax.first = first;
    ax.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
    const auto ksize = static_cast<size_t>(ax.ksize);
    ax.bounds.assign(2 * static_cast<size_t>(count), 0);
    ax.weights.assign(static_cast<size_t>(count) * ksize, 0.0);
    ax.fixed.assign(ax.weights.size(), 0);
    for (int xx = first; xx < first + count; ++xx) {
        const double center = in0 + fp_barrier((xx + 0.5) * scale);
        const double ss = 1.0 / filterscale;
        int xmin = static_cast<int>(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = static_cast<int>(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double* k = &ax.weights[ax.entry(xx) * ksize];
        double ww = 0.0;
        for (int x = 0; x < xmax; ++x) {
            const double w = pil_bicubic_filter(fp_barrier((x + xmin - center + 0.5) * ss));
            k[x] = w;
            ww += w;
        }
        for (int x = 0; x < xmax; ++x)
            if (ww != 0.0) k[x] /= ww;
        ax.bounds[2 * ax.entry(xx)] = xmin;
        ax.bounds[2 * ax.entry(xx) + 1] = xmax;
    }
    for (size_t i = 0; i < ax.weights.size(); ++i) {
        const double w = ax.weights[i] * (1 << pil_precision_bits);  // exact: a power of two
        ax.fixed[i] = static_cast<int32_t>(ax.weights[i] < 0 ? -0.5 + w : 0.5 + w);
    }
    ax.kpad = (ax.ksize + 7) / 8 * 8;
    const auto kpad = static_cast<size_t>(ax.kpad);
    ax.lo.assign(static_cast<size_t>(count) * kpad, 0);
    ax.hi.assign(ax.lo.size(), 0);
    for (size_t e = 0; e < static_cast<size_t>(count); ++e)
        for (size_t j = 0; j < ksize; ++j) {
            const int32_t f = ax.fixed[e * ksize + j];
            ax.lo[e * kpad + j] = static_cast<int16_t>(f & 0x7FFF);
            ax.hi[e * kpad + j] = static_cast<int16_t>((f - (f & 0x7FFF)) / 32768);  // floor(f / 2^15)
        }
    return ax;
}

/// Pillow's clip8: drop the fraction bits (arithmetic shift) and clamp to 0..255.
inline uint8_t pil_clip8(int32_t acc) noexcept {
    const int32_t v = acc >> pil_precision_bits;
    return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

/// Pillow's ROUND_UP for 'I' images: half away from zero, then truncation to int.
inline int32_t pil_round_up(double f) noexcept {
    return static_cast<int32_t>(f >= 0.0 ? f + 0.5 : f - 0.5);
}

#if defined(ZEROCLIP_RESAMPLE_SSE2) || defined(ZEROCLIP_RESAMPLE_AVX2)
/// The set-up the vector forms of pil_horizontal_u8 share: the source columns outputs
/// [out_first, out_first + out_count) read, one row at a time split into one int16 plane per
/// channel (tight strided loops), with a zero tail so that padded taps read zeros.
template <int C>
struct channel_planes {
    int col0 = 0;
    int width = 0;
    size_t span = 0;
    std::vector<int16_t> data;

    channel_planes(const resample_axis& ax, int out_first, int out_count) : col0(ax.min_of(out_first)) {
        int col1 = col0;
        for (int i = 0; i < out_count; ++i) col1 = std::max(col1, ax.end_of(out_first + i));
        width = col1 - col0;
        span = static_cast<size_t>(width) + static_cast<size_t>(ax.kpad);
        data.assign(span * C, 0);
    }
    /// Splits source row `row` (interleaved, column 0 first) into the planes.
    void load(const uint8_t* row) {
        const uint8_t* in = row + static_cast<ptrdiff_t>(col0) * C;
        for (int c = 0; c < C; ++c) {
            int16_t* plane = data.data() + static_cast<size_t>(c) * span;
            const uint8_t* q = in + c;
            for (int x = 0; x < width; ++x) plane[x] = q[x * C];
        }
    }
    /// Channel c from the first tap of output xx on.
    const int16_t* taps(int c, const resample_axis& ax, int xx) const {
        return data.data() + static_cast<size_t>(c) * span + static_cast<size_t>(ax.min_of(xx) - col0);
    }
};
#endif

#ifdef ZEROCLIP_RESAMPLE_SSE2
/// The SSE2 form of pil_horizontal_u8: each row is split into 16-bit planes, each output sample
/// is two pmaddwd dot products (low and high coefficient halves) recombined in 64 bits. The
/// integer sums are Pillow's, so the result is bit-identical to the scalar loop.
template <int C>
inline void pil_horizontal_u8_sse2(const uint8_t* src, ptrdiff_t src_stride, int rows,
                                   const resample_axis& ax, int out_first, int out_count,
                                   uint8_t* dst) {
    channel_planes<C> planes(ax, out_first, out_count);
    const auto hsum = [](__m128i v) {  // in 64 bits: the four lanes together may pass 2^31
        alignas(16) int32_t lane[4];
        _mm_store_si128(reinterpret_cast<__m128i*>(lane), v);
        return static_cast<int64_t>(lane[0]) + lane[1] + lane[2] + lane[3];
    };
    for (int y = 0; y < rows; ++y) {
        planes.load(src + y * src_stride);
        uint8_t* out = dst + static_cast<ptrdiff_t>(y) * out_count * C;
        for (int i = 0; i < out_count; ++i) {
            const int xx = out_first + i;
            const int n = ax.count_of(xx);
            const int16_t* klo = ax.lo.data() + ax.entry(xx) * static_cast<size_t>(ax.kpad);
            const int16_t* khi = ax.hi.data() + ax.entry(xx) * static_cast<size_t>(ax.kpad);
            for (int c = 0; c < C; ++c) {  // per channel, so both sums stay in registers
                const int16_t* px = planes.taps(c, ax, xx);
                __m128i acc_lo = _mm_setzero_si128(), acc_hi = _mm_setzero_si128();
                for (int t = 0; t < n; t += 8) {
                    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(px + t));
                    acc_lo = _mm_add_epi32(acc_lo, _mm_madd_epi16(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(klo + t))));
                    acc_hi = _mm_add_epi32(acc_hi, _mm_madd_epi16(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(khi + t))));
                }
                const int64_t sum = hsum(acc_hi) * 32768 + hsum(acc_lo) + (1 << (pil_precision_bits - 1));
                const int64_t v = sum >> pil_precision_bits;
                out[i * C + c] = static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    }
}
#endif

#ifdef ZEROCLIP_RESAMPLE_AVX2
/// True when the CPU running this has AVX2 (checked once).
inline bool cpu_has_avx2() noexcept {
    static const bool has = __builtin_cpu_supports("avx2") != 0;
    return has;
}

/// The AVX2 form of pil_horizontal_u8_sse2: 16 taps per step (8 more with SSE2 at the end of an
/// odd kpad), the same exact integer sums. Each 32-bit lane sums kpad / 8 products of at most
/// 255 * 32767, below 2^31 up to 1024 taps.
template <int C>
__attribute__((target("avx2"))) inline void pil_horizontal_u8_avx2(const uint8_t* src, ptrdiff_t src_stride,
                                                                   int rows, const resample_axis& ax, int out_first,
                                                                   int out_count, uint8_t* dst) {
    const size_t kpad = static_cast<size_t>(ax.kpad);
    channel_planes<C> planes(ax, out_first, out_count);
    for (int y = 0; y < rows; ++y) {
        planes.load(src + y * src_stride);
        uint8_t* out = dst + static_cast<ptrdiff_t>(y) * out_count * C;
        for (int i = 0; i < out_count; ++i) {
            const int xx = out_first + i;
            const size_t n = static_cast<size_t>(ax.count_of(xx));
            const int16_t* klo = ax.lo.data() + ax.entry(xx) * kpad;
            const int16_t* khi = ax.hi.data() + ax.entry(xx) * kpad;
            for (int c = 0; c < C; ++c) {
                const int16_t* px = planes.taps(c, ax, xx);
                __m256i acc_lo = _mm256_setzero_si256(), acc_hi = _mm256_setzero_si256();
                size_t t = 0;
                for (; t + 16 <= kpad && t < n; t += 16) {
                    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(px + t));
                    acc_lo = _mm256_add_epi32(acc_lo, _mm256_madd_epi16(v, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(klo + t))));
                    acc_hi = _mm256_add_epi32(acc_hi, _mm256_madd_epi16(v, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(khi + t))));
                }
                __m128i lo = _mm_add_epi32(_mm256_castsi256_si128(acc_lo), _mm256_extracti128_si256(acc_lo, 1));
                __m128i hi = _mm_add_epi32(_mm256_castsi256_si128(acc_hi), _mm256_extracti128_si256(acc_hi, 1));
                // The two halves may pass 2^31 together only beyond 512 taps: add them in 64 bits there.
                int64_t sum_lo = 0, sum_hi = 0;
                if (kpad > 512) {
                    alignas(16) int32_t a[8], b[8];
                    _mm256_store_si256(reinterpret_cast<__m256i*>(a), acc_lo);
                    _mm256_store_si256(reinterpret_cast<__m256i*>(b), acc_hi);
                    for (int k = 0; k < 8; ++k) sum_lo += a[k], sum_hi += b[k];
                    lo = hi = _mm_setzero_si128();
                }
                if (t < n) {  // the last 8 taps of a kpad that is not a multiple of 16
                    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(px + t));
                    lo = _mm_add_epi32(lo, _mm_madd_epi16(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(klo + t))));
                    hi = _mm_add_epi32(hi, _mm_madd_epi16(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(khi + t))));
                }
                alignas(16) int32_t la[4], ha[4];
                _mm_store_si128(reinterpret_cast<__m128i*>(la), lo);
                _mm_store_si128(reinterpret_cast<__m128i*>(ha), hi);
                sum_lo += static_cast<int64_t>(la[0]) + la[1] + la[2] + la[3];
                sum_hi += static_cast<int64_t>(ha[0]) + ha[1] + ha[2] + ha[3];
                const int64_t v = (sum_hi * 32768 + sum_lo + (1 << (pil_precision_bits - 1))) >> pil_precision_bits;
                out[i * C + c] = static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    }
}
#endif

/// Horizontal 8-bit pass (ImagingResampleHorizontal_8bpc), Pillow's loop as written, for output
/// columns [out_first, out_first + out_count) of `rows` rows. `src` rows are `src_stride` bytes
/// apart; `dst` is packed (out_count * C bytes per row).
template <int C>
inline void pil_horizontal_u8_scalar(const uint8_t* src, ptrdiff_t src_stride, int rows,
                                     const resample_axis& ax, int out_first, int out_count,
                                     uint8_t* dst) {
    const ptrdiff_t ksize = ax.ksize;
    for (int y = 0; y < rows; ++y) {
        const uint8_t* in = src + y * src_stride;
        uint8_t* out = dst + static_cast<ptrdiff_t>(y) * out_count * C;
        for (int i = 0; i < out_count; ++i) {
            const int xx = out_first + i;
            const int xmin = ax.min_of(xx);
            const int n = ax.count_of(xx);
            const int32_t* k = ax.fixed.data() + static_cast<ptrdiff_t>(ax.entry(xx)) * ksize;
            const uint8_t* p = in + static_cast<ptrdiff_t>(xmin) * C;
            int32_t acc[static_cast<size_t>(C)];
            for (int c = 0; c < C; ++c) acc[c] = 1 << (pil_precision_bits - 1);
            for (int x = 0; x < n; ++x)
                for (int c = 0; c < C; ++c) acc[c] += static_cast<int32_t>(p[x * C + c]) * k[x];
            for (int c = 0; c < C; ++c) out[i * C + c] = pil_clip8(acc[c]);
        }
    }
}

/// The horizontal 8-bit pass: SSE2 where available and exact (see above), else Pillow's loop.
template <int C>
inline void pil_horizontal_u8(const uint8_t* src, ptrdiff_t src_stride, int rows,
                              const resample_axis& ax, int out_first, int out_count,
                              uint8_t* dst) {
#ifdef ZEROCLIP_RESAMPLE_SSE2
    // Each 32-bit lane sums kpad / 4 products of at most 255 * 32767 (negative weights have a
    // large low half): at most 2^30 up to 512 taps, i.e. downscales by less than ~127x; beyond
    // that, the scalar loop. (The lanes are added in 64 bits.)
#ifdef ZEROCLIP_RESAMPLE_AVX2
    if (out_count > 0 && ax.kpad <= 1024 && cpu_has_avx2()) {
        pil_horizontal_u8_avx2<C>(src, src_stride, rows, ax, out_first, out_count, dst);
        return;
    }
#endif
    if (out_count > 0 && ax.kpad <= 512) {
        pil_horizontal_u8_sse2<C>(src, src_stride, rows, ax, out_first, out_count, dst);
        return;
    }
#endif
    pil_horizontal_u8_scalar<C>(src, src_stride, rows, ax, out_first, out_count, dst);
}

/// The loops of the vertical 8-bit pass, inlined into each instruction-set variant below.
template <int C>
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
inline void pil_vertical_u8_body(const uint8_t* src, ptrdiff_t src_stride, int src_row0,
                                 int width, const resample_axis& ax, int out_first, int out_count,
                                 uint8_t* dst) {
    const size_t row_len = static_cast<size_t>(width) * C;
    std::vector<int32_t> acc(row_len);
    for (int i = 0; i < out_count; ++i) {
        const int yy = out_first + i;
        const int ymin = ax.min_of(yy) - src_row0;
        const int n = ax.count_of(yy);
        const int32_t* k = ax.fixed.data() + static_cast<ptrdiff_t>(ax.entry(yy)) * ax.ksize;
        std::fill(acc.begin(), acc.end(), 1 << (pil_precision_bits - 1));
        // Row-at-a-time accumulation: the same integer sums as Pillow's per-pixel loop, but
        // contiguous, so the compiler can vectorise it.
        for (int y = 0; y < n; ++y) {
            const uint8_t* in = src + static_cast<ptrdiff_t>(ymin + y) * src_stride;
            const int32_t w = k[y];
            for (size_t j = 0; j < row_len; ++j) acc[j] += static_cast<int32_t>(in[j]) * w;
        }
        uint8_t* out = dst + static_cast<ptrdiff_t>(i) * static_cast<ptrdiff_t>(row_len);
        for (size_t j = 0; j < row_len; ++j) out[j] = pil_clip8(acc[j]);
    }
}

/// The vertical pass for baseline x86-64 (or whatever the build targets).
template <int C>
inline void pil_vertical_u8_scalar(const uint8_t* src, ptrdiff_t src_stride, int src_row0, int width,
                                   const resample_axis& ax, int out_first, int out_count, uint8_t* dst) {
    pil_vertical_u8_body<C>(src, src_stride, src_row0, width, ax, out_first, out_count, dst);
}

#ifdef ZEROCLIP_RESAMPLE_AVX2
/// The same loops compiled for AVX2 (the compiler vectorises them 8 lanes wide; integer sums, so
/// the result is the same to the bit).
template <int C>
__attribute__((target("avx2"))) inline void pil_vertical_u8_avx2(const uint8_t* src, ptrdiff_t src_stride,
                                                                 int src_row0, int width, const resample_axis& ax,
                                                                 int out_first, int out_count, uint8_t* dst) {
    pil_vertical_u8_body<C>(src, src_stride, src_row0, width, ax, out_first, out_count, dst);
}
#endif

/// Vertical 8-bit pass (ImagingResampleVertical_8bpc) for output rows
/// [out_first, out_first + out_count). `src` holds source rows starting at row `src_row0`,
/// `src_stride` bytes apart, `width * C` bytes used per row; `dst` is packed. AVX2 when the CPU has it.
template <int C>
inline void pil_vertical_u8(const uint8_t* src, ptrdiff_t src_stride, int src_row0,
                            int width, const resample_axis& ax, int out_first, int out_count,
                            uint8_t* dst) {
#ifdef ZEROCLIP_RESAMPLE_AVX2
    if (cpu_has_avx2()) {
        pil_vertical_u8_avx2<C>(src, src_stride, src_row0, width, ax, out_first, out_count, dst);
        return;
    }
#endif
    pil_vertical_u8_scalar<C>(src, src_stride, src_row0, width, ax, out_first, out_count, dst);
}

/// Horizontal pass for 32-bit 'I' images (ImagingResampleHorizontal_32bpc, INT32 case): double
/// sums in tap order, ROUND_UP to int32, no clamping.
inline void pil_horizontal_i32(const int32_t* src, ptrdiff_t src_stride, int rows,
                               const resample_axis& ax, int out_first, int out_count,
                               int32_t* dst) {
    for (int y = 0; y < rows; ++y) {
        const int32_t* in = src + y * src_stride;
        int32_t* out = dst + static_cast<ptrdiff_t>(y) * out_count;
        for (int i = 0; i < out_count; ++i) {
            const int xx = out_first + i;
            const int xmin = ax.min_of(xx);
            const int n = ax.count_of(xx);
            const double* k = ax.weights.data() + static_cast<ptrdiff_t>(ax.entry(xx)) * ax.ksize;
            double ss = 0.0;
            for (int x = 0; x < n; ++x) ss += fp_barrier(in[xmin + x] * k[x]);
            out[i] = pil_round_up(ss);
        }
    }
}

/// Vertical pass for 32-bit 'I' images (ImagingResampleVertical_32bpc, INT32 case).
inline void pil_vertical_i32(const int32_t* src, ptrdiff_t src_stride, int src_row0,
                             int width, const resample_axis& ax, int out_first, int out_count,
                             int32_t* dst) {
    std::vector<double> acc(static_cast<size_t>(width));
    for (int i = 0; i < out_count; ++i) {
        const int yy = out_first + i;
        const int ymin = ax.min_of(yy) - src_row0;
        const int n = ax.count_of(yy);
        const double* k = ax.weights.data() + static_cast<ptrdiff_t>(ax.entry(yy)) * ax.ksize;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int y = 0; y < n; ++y) {  // taps in order, as Pillow sums them
            const int32_t* in = src + static_cast<ptrdiff_t>(ymin + y) * src_stride;
            for (int x = 0; x < width; ++x) acc[static_cast<size_t>(x)] += fp_barrier(in[x] * k[y]);
        }
        int32_t* out = dst + static_cast<ptrdiff_t>(i) * width;
        for (int x = 0; x < width; ++x) out[x] = pil_round_up(acc[static_cast<size_t>(x)]);
    }
}

/// Source index of output indices [first, first + count) for Pillow's NEAREST resize
/// (ImagingScaleAffine with the affine map of Image.resize): a running double sum from half a
/// step, truncated — run from index 0 so every rounding matches. -1 marks an index Pillow would
/// fill with zeros (cannot happen for the box (0, 0, w, h); kept for exactness).
inline std::vector<int> pil_nearest_axis(int in_size, int out_size, int first, int count) {
    std::vector<int> map(static_cast<size_t>(count));
    const double a = static_cast<double>(static_cast<float>(in_size)) / out_size;
    double pos = 0.0 + a * 0.5;
    for (int i = 0; i < first + count; ++i) {
        if (i >= first) {
            const int v = pos < 0.0 ? -1 : static_cast<int>(pos);
            map[static_cast<size_t>(i - first)] = (v >= 0 && v < in_size) ? v : -1;
        }
        pos += a;
    }
    return map;
}

/// Pillow's MULDIV255: a * b / 255 rounded, in integers (RGBA -> RGBa premultiplication).
inline uint8_t pil_muldiv255(unsigned a, unsigned b) noexcept {
    const unsigned tmp = a * b + 128;
    return static_cast<uint8_t>(((tmp >> 8) + tmp) >> 8);
}

/// Premultiplies the colour samples of interleaved 8-bit pixels in place (rgbA2rgba / lA2la);
/// the last of the C channels is alpha.
template <int C>
inline void pil_premultiply(uint8_t* px, size_t count) noexcept {
    for (size_t i = 0; i < count; ++i, px += C) {
        const unsigned alpha = px[C - 1];
        for (int c = 0; c < C - 1; ++c) px[c] = pil_muldiv255(px[c], alpha);
    }
}

/// Undoes the premultiplication in place as Pillow does (rgba2rgbA / la2lA): alpha 0 and 255 keep
/// the samples, others get 255 * v / alpha in integers, clipped to 255.
template <int C>
inline void pil_unpremultiply(uint8_t* px, size_t count) noexcept {
    for (size_t i = 0; i < count; ++i, px += C) {
        const unsigned alpha = px[C - 1];
        if (alpha == 0 || alpha == 255) continue;
        for (int c = 0; c < C - 1; ++c) {
            const unsigned v = 255u * px[c] / alpha;
            px[c] = static_cast<uint8_t>(v > 255 ? 255 : v);
        }
    }
}

}  // namespace zeroclip::detail
