//! An embedding table (the text tower's token_embedding: 49408 rows) held in 16 bits a value. A
//! checkpoint stored in F16 or BF16 gives float32 values that each format holds exactly, so
//! gather_rows reads the very floats of the float32 table from half its memory (97 MiB → 48 MiB
//! at width 512). In int8 and bf16 precision a table no 16-bit format holds exactly is rounded to
//! bf16, as those precisions round the linear weights. Like a prepared linear weight, the table
//! stays a tensor of its shape over a reserved range (reserved_range.hpp); only gather_rows
//! may read it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "../../error.hpp"
#include "../../tensor.hpp"
#include "cpu_features.hpp"
#include "reserved_range.hpp"
#include "vec.hpp"

namespace zeroclip::detail::cpu {

class compact_table {
public:
    enum class format { f16, bf16 };

    /// The 16-bit format that holds each of the n values exactly, if one does (F16 needs F16C,
    /// which every AVX2 CPU has; without it only BF16 is tried).
    static std::optional<format> exact_format(const float* v, int64_t n) {
#ifdef ZEROCLIP_CPU_X86
        if (cpu_has(isa::avx2) && all_f16_avx2(v, n)) return format::f16;
#endif
        for (int64_t i = 0; i < n; ++i)
            if (bits(v[i]) & 0xffffu) return std::nullopt;
        return format::bf16;
    }

    /// The table w (rows, cols) in `f`; values `f` cannot hold exactly are rounded to nearest even.
    compact_table(const float* w, int64_t rows, int64_t cols, format f)
        : rows_(rows), cols_(cols), format_(f), mem_(static_cast<size_t>(rows * cols) * sizeof(float), this) {
        auto* out = static_cast<uint16_t*>(mem_.data());
        const int64_t n = rows * cols;
#ifdef ZEROCLIP_CPU_X86
        if (f == format::f16) {
            to_f16_avx2(w, n, out);
            return;
        }
#endif
        ZEROCLIP_ASSERT(f == format::bf16);
        for (int64_t i = 0; i < n; ++i) out[i] = to_bf16(w[i]);
    }
    compact_table(const compact_table&) = delete;
    compact_table& operator=(const compact_table&) = delete;

    int64_t rows() const { return rows_; }
    int64_t cols() const { return cols_; }
    format stored_as() const { return format_; }
    const float* base() const { return static_cast<const float*>(mem_.data()); }
    size_t range_bytes() const { return mem_.bytes(); }

    /// y (index.size(), cols) = the rows at `index` (each in [0, rows)) as float32.
    void gather(const std::vector<int64_t>& index, float* y) const {
        const auto* table = static_cast<const uint16_t*>(mem_.data());
        for (size_t i = 0; i < index.size(); ++i) {
            const uint16_t* row = table + index[i] * cols_;
            float* dst = y + static_cast<int64_t>(i) * cols_;
#ifdef ZEROCLIP_CPU_X86
            if (format_ == format::f16) {
                row_from_f16_avx2(row, cols_, dst);
                continue;
            }
#endif
            for (int64_t j = 0; j < cols_; ++j) dst[j] = from_bits(static_cast<uint32_t>(row[j]) << 16);
        }
    }

    /// The table whose range holds `p`, or null.
    static const compact_table* containing(const float* p) { return reserved_range<compact_table>::containing(p); }

private:
    static uint32_t bits(float f) {
        uint32_t b;
        std::memcpy(&b, &f, sizeof b);
        return b;
    }
    static float from_bits(uint32_t b) {
        float f;
        std::memcpy(&f, &b, sizeof f);
        return f;
    }
    static uint16_t to_bf16(float f) {  // nearest even; the table is finite (checked at load)
        const uint32_t x = bits(f);
        return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
    }

#ifdef ZEROCLIP_CPU_X86
    // F16C's conversions, 8 values a step, the tail through a zero-padded block of 8.
    /// x's bits against those of x through F16 and back (a lambda would not inherit the target).
    ZEROCLIP_TARGET_F16C static __m256i f16_round_trip_differs(__m256 x) {
        const __m256 back = _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
        return _mm256_xor_si256(_mm256_castps_si256(x), _mm256_castps_si256(back));
    }
    ZEROCLIP_TARGET_F16C static bool all_f16_avx2(const float* v, int64_t n) {
        __m256i any = _mm256_setzero_si256();
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) any = _mm256_or_si256(any, f16_round_trip_differs(_mm256_loadu_ps(v + i)));
        if (i < n) {
            float block[8] = {};
            std::memcpy(block, v + i, sizeof(float) * static_cast<size_t>(n - i));
            any = _mm256_or_si256(any, f16_round_trip_differs(_mm256_loadu_ps(block)));
        }
        return _mm256_testz_si256(any, any);
    }
    ZEROCLIP_TARGET_F16C static void to_f16_avx2(const float* v, int64_t n, uint16_t* out) {
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
            _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                             _mm256_cvtps_ph(_mm256_loadu_ps(v + i), _MM_FROUND_TO_NEAREST_INT));
        if (i == n) return;
        float block[8] = {};
        std::memcpy(block, v + i, sizeof(float) * static_cast<size_t>(n - i));
        alignas(16) uint16_t h[8];
        _mm_store_si128(reinterpret_cast<__m128i*>(h), _mm256_cvtps_ph(_mm256_loadu_ps(block), _MM_FROUND_TO_NEAREST_INT));
        std::memcpy(out + i, h, sizeof(uint16_t) * static_cast<size_t>(n - i));
    }
    ZEROCLIP_TARGET_F16C static void row_from_f16_avx2(const uint16_t* row, int64_t n, float* dst) {
        int64_t j = 0;
        for (; j + 8 <= n; j += 8)
            _mm256_storeu_ps(dst + j, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + j))));
        if (j == n) return;
        alignas(16) uint16_t h[8] = {};
        std::memcpy(h, row + j, sizeof(uint16_t) * static_cast<size_t>(n - j));
        alignas(32) float f[8];
        _mm256_store_ps(f, _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(h))));
        std::memcpy(dst + j, f, sizeof(float) * static_cast<size_t>(n - j));
    }
#endif

    int64_t rows_, cols_;
    format format_;
    reserved_range<compact_table> mem_;
};

/// The embedding table w (rows, cols) in 16 bits a value where that loses nothing, or (when
/// `may_round`, the reduced precisions) rounded to bf16; otherwise w itself.
inline tensor compact_table_weight(const tensor& w, bool may_round) {
    if (w.ndim() != 2 || w.empty()) return w;
    std::optional<compact_table::format> f = compact_table::exact_format(w.data(), w.numel());
    if (!f && may_round) f = compact_table::format::bf16;
    if (!f) return w;
    auto table = std::make_shared<const compact_table>(w.data(), w.dim(0), w.dim(1), *f);
    const float* base = table->base();
    return tensor::view({w.dim(0), w.dim(1)}, std::move(table), base);
}

}  // namespace zeroclip::detail::cpu
