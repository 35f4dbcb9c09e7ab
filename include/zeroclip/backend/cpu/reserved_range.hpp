//! Memory for a weight the CPU backend holds in a form other than float32 (packed panels, int8,
//! 16-bit values) behind a tensor of the weight's shape: an address range as large as the float32
//! weight, so no read through the tensor can go out of bounds, of which only the first bytes (the
//! other form) are ever written. The range is reserved, not committed: the pages past those bytes
//! are never touched and never resident. Each kind of holder (`Holder`) has a registry of its
//! ranges, so an op given a tensor finds the holder whose range its data lies in. A form that is
//! not one block of bytes (a convolution's Winograd transform: sixteen packed operands) is held
//! beside a range no one writes (form_tensor).
#pragma once

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <utility>

#include "../../error.hpp"
#include "../../tensor.hpp"

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

namespace reserved_range_detail {
template <class Form>
struct form_holder {
    Form form;
    reserved_range<form_holder> range;
    form_holder(Form f, size_t bytes) : form(std::move(f)), range(bytes, this) {}
    size_t range_bytes() const { return range.bytes(); }
};
}  // namespace reserved_range_detail

/// A tensor of `shape` standing for `form`, a weight laid out for the backend's products, in place
/// of the weight: its owner keeps `form` alive and its floats are never written, so only the form
/// is resident. Its values are opaque (they read as zeros); form_of<Form> gets the form back.
template <class Form>
tensor form_tensor(shape_t shape, Form form) {
    const auto bytes = static_cast<size_t>(shape_numel(shape)) * sizeof(float);
    auto holder = std::make_shared<const reserved_range_detail::form_holder<Form>>(std::move(form), bytes);
    const auto* base = static_cast<const float*>(holder->range.data());
    return tensor::view(std::move(shape), std::move(holder), base);
}

/// The form `t` stands for when form_tensor<Form> made it, or null when t lies in no such tensor.
/// errc::invalid_argument for a part of one (a slice, a reshape to fewer values): the values it
/// would read are not kept.
template <class Form>
const Form* form_of(const tensor& t) {
    if (t.empty()) return nullptr;
    const auto* holder = reserved_range<reserved_range_detail::form_holder<Form>>::containing(t.data());
    if (!holder) return nullptr;
    if (t.data() != holder->range.data() ||
        std::max<size_t>(static_cast<size_t>(t.numel()) * sizeof(float), 1) != holder->range_bytes())
        ZEROCLIP_THROW(errc::invalid_argument, "a part (shape " + shape_to_string(t.shape()) +
                                                   ") of a prepared weight was passed to an op: a prepared weight is "
                                                   "used whole, its float values are not kept");
    return &holder->form;
}

}  // namespace zeroclip::detail::cpu
