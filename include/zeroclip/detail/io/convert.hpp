//! Loading helpers: F16 / BF16 → F32 conversion that is vectorised (F16C's vcvtph2ps; AVX2 shifts
//! for BF16) and split over the CPU backend's threads, into storage that is not zero-filled first
//! (cpu_alloc.hpp). Both conversions are exact: every F16 and BF16 value is a float32 value (an
//! F16 signalling NaN comes out quiet).
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include "../../backend/cpu/alloc.hpp"
#include "../../backend/cpu/parallel.hpp"
#include "half.hpp"

#if defined(__F16C__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace zeroclip::detail::cpu {

/// Below this many values a conversion stays on the calling thread.
constexpr int64_t convert_grain = int64_t{1} << 16;

/// dst[i] = F16 src[i] as float, i < n (src unaligned, little-endian).
inline void f16_to_f32(const unsigned char* src, float* dst, int64_t n) {
    parallel_for(n, convert_grain, [&](int64_t i0, int64_t i1) {
        int64_t i = i0;
#ifdef __F16C__
        for (; i + 8 <= i1; i += 8)
            _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i))));
#endif
        for (; i < i1; ++i) {
            uint16_t v;
            std::memcpy(&v, src + 2 * i, 2);
            dst[i] = detail::f16_to_f32(v);
        }
    });
}

/// dst[i] = BF16 src[i] as float, i < n.
inline void bf16_to_f32(const unsigned char* src, float* dst, int64_t n) {
    parallel_for(n, convert_grain, [&](int64_t i0, int64_t i1) {
        int64_t i = i0;
#ifdef __AVX2__
        for (; i + 8 <= i1; i += 8) {
            const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i)));
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_slli_epi32(wide, 16));
        }
#endif
        for (; i < i1; ++i) {
            uint16_t v;
            std::memcpy(&v, src + 2 * i, 2);
            dst[i] = detail::bf16_to_f32(v);
        }
    });
}

/// Index of the first non-finite value (NaN or ±infinity) among n F32 (`width` 4), F16 or BF16
/// (`width` 2, `bf16` telling which) values at src, or −1: the exponent bits are tested, one
/// vectorisable pass split over the threads.
inline int64_t first_non_finite(const unsigned char* src, int64_t n, int width, bool bf16 = false) {
    std::atomic<bool> found{false};
    auto scan = [&](int64_t i0, int64_t i1) {
        bool bad = false;
        if (width == 4) {
            for (int64_t i = i0; i < i1; ++i) {
                uint32_t v;
                std::memcpy(&v, src + 4 * i, 4);
                bad |= (v & 0x7f800000u) == 0x7f800000u;
            }
        } else {
            const uint16_t mask = bf16 ? 0x7f80 : 0x7c00;
            for (int64_t i = i0; i < i1; ++i) {
                uint16_t v;
                std::memcpy(&v, src + 2 * i, 2);
                bad |= (v & mask) == mask;
            }
        }
        return bad;
    };
    parallel_for(n, convert_grain, [&](int64_t i0, int64_t i1) {
        if (scan(i0, i1)) found.store(true, std::memory_order_relaxed);
    });
    if (!found.load()) return -1;
    for (int64_t i = 0; i < n; ++i)  // the rare error path: find where, for the message
        if (scan(i, i + 1)) return i;
    return -1;
}

/// Tells the kernel that the pages wholly inside [p, p + bytes) of a read-only file mapping will
/// not be read again (they leave the process's resident set; a later read maps them again from
/// the page cache, so this never changes what is read).
inline void release_mapped(const void* p, size_t bytes) {
    const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    const auto begin = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
    const auto end = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(page - 1);
    if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

}  // namespace zeroclip::detail::cpu
