//! Float storage for the CPU backend:
//!  alloc_floats   (tensor.hpp) not zero-filled (it is about to be written), 2 MiB-aligned and
//!                 advised for transparent huge pages from 4 MiB up (fewer page faults and TLB misses).
//!  output_floats  the same, for op outputs, recycled: a freed buffer of 256 KiB or more goes back
//!                 to a cache (≤ 1 GiB, ZEROCLIP_CACHE_MIB) that the next output of a
//!                 similar size reuses. Without it every large activation is a fresh mapping whose
//!                 pages the kernel zero-fills at first touch (and malloc zero-filled again before
//!                 that): a tenth of a ResNet forward at batch 16 on a VM.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <new>

#include "../../tensor.hpp"

namespace zeroclip::detail::cpu {

class buffer_cache {
public:
    static buffer_cache& instance() {
        static buffer_cache* cache = new buffer_cache();  // never destroyed: tensors may outlive statics
        return *cache;
    }

    std::shared_ptr<float> get(size_t n) {
        n = std::max<size_t>(n, 1);
        if (n * sizeof(float) < min_bytes) return alloc_floats(n);
        float* p = nullptr;
        size_t cap = n;
        {
            std::lock_guard<std::mutex> l(m_);
            // The smallest cached buffer that holds n floats and is not more than 25% larger.
            auto it = free_.lower_bound(n);
            if (it != free_.end() && it->first <= n + n / 4) {
                p = it->second;
                cap = it->first;
                cached_ -= cap * sizeof(float);
                free_.erase(it);
            }
        }
        if (!p) p = raw_floats(cap);
        return std::shared_ptr<float>(p, [this, cap](float* q) { put(q, cap); });
    }

private:
    buffer_cache() {
        const char* v = std::getenv("ZEROCLIP_CACHE_MIB");
        limit_ = (v && *v ? static_cast<size_t>(std::atoll(v)) : size_t{1024}) << 20;
    }

    void put(float* p, size_t cap) {
        const size_t bytes = cap * sizeof(float);
        {
            std::lock_guard<std::mutex> l(m_);
            if (cached_ + bytes <= limit_) {
                free_.emplace(cap, p);
                cached_ += bytes;
                return;
            }
        }
        std::free(p);
    }

    static constexpr size_t min_bytes = size_t{256} << 10;
    std::mutex m_;
    std::multimap<size_t, float*> free_;  // capacity (floats) → buffer
    size_t cached_ = 0, limit_ = 0;
};

/// Storage for an op's output of `n` floats (uninitialised, recycled when large).
inline std::shared_ptr<float> output_floats(size_t n) { return buffer_cache::instance().get(n); }

}  // namespace zeroclip::detail::cpu
