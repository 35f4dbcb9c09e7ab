//! What the reduced-precision products (int8_gemm.hpp, bf16_gemm.hpp) share: where a tile's
//! results go, and the driver that cuts y = x·Wᵀ into tasks of (rows, 64 output channels).
//! Weights are in panels of 16 output channels; a product may use any channel range [lo, hi) of
//! them (a row slice of a prepared weight: q, k or v of attention's packed in_proj).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "parallel.hpp"
#include "vec.hpp"

namespace zeroclip::detail::cpu {

/// Where a product y (M, hi − lo) = x·W[lo, hi)ᵀ + bias goes: channel c to column c − lo.
struct lowp_out {
    float* y = nullptr;
    int64_t ldy = 0;
    int64_t lo = 0, hi = 0;       // the weight's channels used
    const float* bias = nullptr;  // per output column, or null
    bool accumulate = false;      // y += ... rather than y = ...
    act activation = act::none;   // applied after the bias (and after the accumulation)
};

/// The tile (rows r0.., channels c0 .. c0 + width) of finished values `v[i][j]` (j < width) into y:
/// the columns inside [lo, hi) only. The vector kernels call it for tiles that straddle an edge.
inline void lowp_store_partial(const lowp_out& o, int64_t r0, int mr, int64_t c0, int width, const float* v, int ldv) {
    for (int i = 0; i < mr; ++i)
        for (int j = 0; j < width; ++j) {
            const int64_t c = c0 + j;
            if (c < o.lo || c >= o.hi) continue;
            float& dst = o.y[(r0 + i) * o.ldy + (c - o.lo)];
            dst = o.accumulate ? dst + v[i * ldv + j] : v[i * ldv + j];
        }
}

/// The float value of an output before accumulation: acc·(row scale·channel scale) + bias, in one
/// rounding (an FMA) so that every path and the scalar reference agree to the bit.
inline float lowp_value(float acc, float row_scale, float channel_scale, float bias) {
    return std::fma(acc, row_scale * channel_scale, bias);
}

/// The activation of columns [a, b) of a row of `cols` values, each value exactly as one
/// activate(row, cols) gives it: that call takes columns below 8·⌊cols/8⌋ 8 at a time (vector
/// exp) and the rest one by one (std::exp), so a task that owns a column range not starting on a
/// multiple of 8 runs the vector function on a copy of its part of a group (never reading the
/// columns of another task) to give the same bits as a call over the whole row.
inline void activate_columns(float* row, int64_t cols, int64_t a, int64_t b, act f) {
    const int64_t vec_end = cols / 8 * 8;
    int64_t j = a;
    while (j < b) {
        const int64_t g = j / 8 * 8;
        if (g >= vec_end) {  // the scalar tail of the row
            activate(row + j, b - j, f);
            return;
        }
        if (j == g && g + 8 <= b) {  // whole groups
            const int64_t end = std::min(b, vec_end) / 8 * 8;
            activate(row + g, end - g, f);
            j = end;
            continue;
        }
        const int64_t hi = std::min(b, g + 8);  // part of a group: lanes are independent
        float tmp[8] = {};
        std::copy(row + j, row + hi, tmp + (j - g));
        activate(tmp, 8, f);
        std::copy(tmp + (j - g), tmp + (hi - g), row + j);
        j = hi;
    }
}

/// f(std::integral_constant<int, mr>{}), 1 ≤ mr ≤ Max: a tile's height as the template argument
/// of its kernel.
template <int Max, class F>
inline void with_rows(int mr, F&& f) {
    if constexpr (Max > 1) {
        if (mr == Max) return f(std::integral_constant<int, Max>{});
        return with_rows<Max - 1>(mr, std::forward<F>(f));
    } else {
        f(std::integral_constant<int, 1>{});
    }
}

/// Runs `tile(r0, mr, panel, np)` over rows [0, m) in tiles of ≤ mr_max rows and the panels of
/// channels [o.lo, o.hi) in groups of ≤ np_max, as tasks of (row range, 4 panels) on the threads;
/// then each task applies the activation to its block (activate_columns: the bits of one
/// activate() over each whole row, wherever the blocks start). The tiles are as even as they can be
/// (⌈m / mr_max⌉ of them, heights differing by at most one: 50 rows in 6-row tiles are 5 × 6 + 4 × 5,
/// not 8 × 6 + 2), so no tile is a short remainder that keeps most of a kernel's registers idle.
template <class Tile>
void lowp_run(int64_t m, int64_t k, const lowp_out& o, int mr_max, int np_max, Tile&& tile, int threads = 0) {
    if (m <= 0 || o.hi <= o.lo) return;
    const int64_t p0 = o.lo / 16, p1 = (o.hi + 15) / 16, chunk = 4;
    const int64_t chunks = (p1 - p0 + chunk - 1) / chunk, tiles = (m + mr_max - 1) / mr_max;
    const int team = std::max(1, threads > 0 ? std::min(threads, max_threads()) : max_threads());
    int64_t row_parts = 1;
    while (chunks * row_parts < 4 * team && tiles / (row_parts * 2) >= 2) row_parts *= 2;
    const auto row_of = [&](int64_t ti) { return ti * m / tiles; };  // first row of tile ti
    const double work = 2.0 * static_cast<double>(m) * static_cast<double>(o.hi - o.lo) * static_cast<double>(k);
    parallel_tasks(
        chunks * row_parts,
        [&](int64_t t) {
            const int64_t c = t % chunks, part = t / chunks;
            const int64_t t0 = tiles * part / row_parts, t1 = tiles * (part + 1) / row_parts;
            const int64_t q0 = p0 + c * chunk, q1 = std::min(p1, q0 + chunk);
            for (int64_t p = q0; p < q1; p += np_max)
                for (int64_t ti = t0; ti < t1; ++ti) {
                    const int64_t r0 = row_of(ti);
                    tile(r0, static_cast<int>(row_of(ti + 1) - r0), p, static_cast<int>(std::min<int64_t>(np_max, q1 - p)));
                }
            if (o.activation == act::none) return;
            const int64_t c0 = std::max(o.lo, q0 * 16), c1 = std::min(o.hi, q1 * 16);
            for (int64_t r = row_of(t0); r < row_of(t1); ++r)
                activate_columns(o.y + r * o.ldy, o.hi - o.lo, c0 - o.lo, c1 - o.lo, o.activation);
        },
        work < 4e5 ? 1 : threads);
}

}  // namespace zeroclip::detail::cpu
