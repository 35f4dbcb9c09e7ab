//! Loading helpers, plain functions of the file reader (no backend): F16 / BF16 → F32 conversion
//! that is vectorised (F16C's vcvtph2ps; AVX2 shifts for BF16) and, for large tensors, split over
//! a few std::threads started for the call. Both conversions are exact: every F16 and BF16 value
//! is a float32 value (an F16 signalling NaN comes out quiet).
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <system_error>
#include <thread>
#include <vector>

#include "half.hpp"

#if defined(__F16C__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace zeroclip::detail {

/// The chunk a thread converts at a time; below it a conversion stays on the calling thread.
constexpr int64_t convert_grain = int64_t{1} << 16;

/// Threads a conversion may use: ZEROCLIP_NUM_THREADS, else OMP_NUM_THREADS (its first number),
/// else the hardware's — the CPU backend's rule, so a limit set for zeroclip holds while loading.
inline int64_t convert_threads() {
    for (const char* name : {"ZEROCLIP_NUM_THREADS", "OMP_NUM_THREADS"})
        if (const char* v = std::getenv(name); v && std::atoi(v) > 0) return std::atoi(v);
    return std::max(1u, std::thread::hardware_concurrency());
}

/// fn(i0, i1) over [0, n) in chunks of `grain`, claimed from a counter by the calling thread and
/// up to convert_threads() − 1 threads started for the call: on a machine shared with other
/// jobs a thread that is off its core leaves its chunks to the others instead of being waited for.
template <class Fn>
inline void split_range(int64_t n, int64_t grain, Fn&& fn) {
    const int64_t chunks = (n + grain - 1) / grain;
    const int64_t team = std::min<int64_t>(chunks, convert_threads());
    if (team <= 1) {
        if (n > 0) fn(int64_t{0}, n);
        return;
    }
    std::atomic<int64_t> next{0};
    auto work = [&] {
        for (int64_t c; (c = next.fetch_add(1, std::memory_order_relaxed)) < chunks;)
            fn(c * grain, std::min(n, (c + 1) * grain));
    };
    std::vector<std::thread> threads;
    try {
        for (int64_t t = 1; t < team; ++t) threads.emplace_back(work);
    } catch (const std::system_error&) {  // no thread to be had: those started and this one do it all
    }
    work();
    for (auto& t : threads) t.join();
}

/// dst[i] = F16 src[i] as float, i < n (src unaligned, little-endian).
inline void f16_to_f32(const unsigned char* src, float* dst, int64_t n) {
    split_range(n, convert_grain, [&](int64_t i0, int64_t i1) {
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
    split_range(n, convert_grain, [&](int64_t i0, int64_t i1) {
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
/// vectorisable pass split over threads.
inline int64_t first_non_finite(const unsigned char* src, int64_t n, int width, bool bf16 = false) {
    std::atomic<bool> found{false};
    auto scan = [&](int64_t i0, int64_t i1) {
        bool bad = false;
#ifdef __AVX2__
        // A value is not finite when all its exponent bits are set: 16 (or 8) values a step.
        const __m256i exponent = width == 4 ? _mm256_set1_epi32(0x7f800000) : _mm256_set1_epi16(bf16 ? 0x7f80 : 0x7c00);
        const int64_t per_step = 32 / width;
        __m256i any = _mm256_setzero_si256();
        for (; i0 + per_step <= i1; i0 += per_step) {
            const __m256i v = _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + width * i0)), exponent);
            any = _mm256_or_si256(any, width == 4 ? _mm256_cmpeq_epi32(v, exponent) : _mm256_cmpeq_epi16(v, exponent));
        }
        bad = !_mm256_testz_si256(any, any);
#endif
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
    split_range(n, convert_grain, [&](int64_t i0, int64_t i1) {
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

}  // namespace zeroclip::detail
