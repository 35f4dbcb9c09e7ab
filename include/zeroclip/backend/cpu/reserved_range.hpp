//! Memory for a weight the CPU backend holds in a form other than float32 (packed panels, int8,
//! 16-bit values) behind a tensor of the weight's shape: an address range as large as the float32
//! weight, so no read through the tensor can go out of bounds, of which only the first bytes (the
//! other form) are ever written. The range is reserved, not committed: the pages past those bytes
//! are never touched and never resident. Each kind of holder (`Holder`) has a registry of its
//! ranges, so an op given a tensor finds the holder whose range its data lies in.
#pragma once

#include <sys/mman.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <new>

namespace zeroclip::detail::cpu {

template <class Holder>
class reserved_range {
public:
    /// A range of `bytes` (at least one byte) for `holder`, registered at once: the holder fills
    /// it before handing out any address in it.
    reserved_range(size_t bytes, const Holder* holder) : bytes_(bytes > 0 ? bytes : 1) {
        void* m = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) throw std::bad_alloc();
        data_ = m;
        const std::lock_guard<std::mutex> lock(mutex());
        registry()[reinterpret_cast<uintptr_t>(data_)] = holder;
    }
    ~reserved_range() {
        {
            const std::lock_guard<std::mutex> lock(mutex());
            registry().erase(reinterpret_cast<uintptr_t>(data_));
        }
        ::munmap(data_, bytes_);
    }
    reserved_range(const reserved_range&) = delete;
    reserved_range& operator=(const reserved_range&) = delete;

    void* data() const { return data_; }

    /// The holder whose range contains `p`, or null (the caller keeps a tensor of it alive).
    static const Holder* containing(const void* p) {
        const auto a = reinterpret_cast<uintptr_t>(p);
        const std::lock_guard<std::mutex> lock(mutex());
        const auto& r = registry();
        auto it = r.upper_bound(a);
        if (it == r.begin()) return nullptr;
        --it;
        return a < it->first + it->second->range_bytes() ? it->second : nullptr;
    }

    size_t bytes() const { return bytes_; }

private:
    static std::map<uintptr_t, const Holder*>& registry() {
        static auto* r = new std::map<uintptr_t, const Holder*>();  // never destroyed: weights may outlive statics
        return *r;
    }
    static std::mutex& mutex() {
        static auto* m = new std::mutex();
        return *m;
    }

    size_t bytes_;
    void* data_ = nullptr;
};

}  // namespace zeroclip::detail::cpu
