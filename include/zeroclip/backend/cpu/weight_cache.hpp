//! Weights laid out once for the CPU backend's products (Winograd transforms, packed operands),
//! kept per weight tensor for as long as its memory lives.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>

namespace zeroclip::detail::cpu {

/// The `Prepared` form of the weight at `w` (rows × cols as the caller reads it), made by `make()`
/// on first use and kept while the weight's memory lives. A weight is identified by its address
/// and owner (so a new tensor in freed memory, or another view of the same memory, gets its own
/// entry) and must stay unchanged once used, as a model's weights do. Thread-safe; entries whose
/// weights are gone (a model destroyed) are dropped at the next call.
/// `variant` tells apart forms of one weight that share the type `Prepared` (a convolution's for
/// each precision, stride and pad): each variant has its own entry.
template <class Prepared, class Make>
std::shared_ptr<const Prepared> prepared_weight(const float* w, const std::shared_ptr<const void>& owner, int64_t rows,
                                                int64_t cols, int64_t variant, Make&& make) {
    struct entry {
        std::weak_ptr<const void> owner;
        int64_t rows, cols;
        std::shared_ptr<const Prepared> prepared;
    };
    struct key_hash {
        size_t operator()(const std::pair<const float*, int64_t>& k) const {
            return std::hash<const float*>()(k.first) ^ (std::hash<int64_t>()(k.second) * 0x9e3779b97f4a7c15ull);
        }
    };
    static std::mutex mutex;
    static std::unordered_map<std::pair<const float*, int64_t>, entry, key_hash> cache;
    const auto drop_expired = [] {
        for (auto it = cache.begin(); it != cache.end();) it = it->second.owner.expired() ? cache.erase(it) : std::next(it);
    };
    {
        const std::lock_guard<std::mutex> lock(mutex);
        drop_expired();
        const auto it = cache.find({w, variant});
        if (it != cache.end() && !it->second.owner.owner_before(owner) && !owner.owner_before(it->second.owner) &&
            it->second.rows == rows && it->second.cols == cols)
            return it->second.prepared;
    }
    auto made = std::make_shared<const Prepared>(make());  // outside the lock: it may use the threads
    const std::lock_guard<std::mutex> lock(mutex);
    drop_expired();
    cache[{w, variant}] = {owner, rows, cols, made};
    return made;
}

/// prepared_weight with the one variant of types that have one form per weight.
template <class Prepared, class Make>
std::shared_ptr<const Prepared> prepared_weight(const float* w, const std::shared_ptr<const void>& owner, int64_t rows,
                                                int64_t cols, Make&& make) {
    return prepared_weight<Prepared>(w, owner, rows, cols, 0, std::forward<Make>(make));
}

}  // namespace zeroclip::detail::cpu
