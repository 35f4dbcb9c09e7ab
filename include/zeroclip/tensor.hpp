//! zeroclip::basic_tensor — a host tensor: a shape plus row-major storage, no math.
//! The layout convention of the whole library: row-major, the last dimension contiguous, batch
//! first ([N, tokens, width], [N, 3, H, W]). Storage is shared: a tensor may own its buffer or be
//! a read-only view into memory kept alive by someone else (a memory-mapped checkpoint).
#pragma once

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <numeric>
#include <string>
#include <vector>

#include "error.hpp"

namespace zeroclip {

using shape_t = std::vector<int64_t>;

namespace detail {

/// `n` floats of uninitialised storage (it is about to be written, so not zero-filled): 64-byte
/// aligned, and 2 MiB-aligned and advised for transparent huge pages from 4 MiB up (fewer page
/// faults and TLB misses). Free with std::free. Shared by the loader and the CPU backend.
inline float* raw_floats(size_t n) {
    const size_t bytes = std::max<size_t>(n, 1) * sizeof(float);
    constexpr size_t huge = size_t{2} << 20;
    // posix_memalign, not aligned_alloc: the latter wants the size to be a multiple of the
    // alignment, which would round a 4.1 MiB buffer up to 6 MiB.
    void* p = nullptr;
    if (bytes >= 2 * huge && ::posix_memalign(&p, huge, bytes) == 0) {
#ifdef MADV_HUGEPAGE
        ::madvise(p, bytes & ~(huge - 1), MADV_HUGEPAGE);
#endif
        return static_cast<float*>(p);
    }
    if (::posix_memalign(&p, 64, bytes) != 0) throw std::bad_alloc();
    return static_cast<float*>(p);
}

/// raw_floats(n), freed when the last owner goes.
inline std::shared_ptr<float> alloc_floats(size_t n) {
    return std::shared_ptr<float>(raw_floats(n), [](float* p) { std::free(p); });
}

}  // namespace detail

/// "[2,3,4]": for error messages.
inline std::string shape_to_string(const shape_t& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
    return s + "]";
}

/// Number of elements of a shape (1 for a 0-d shape). errc::shape for a negative dimension or a
/// product that overflows int64 (it would otherwise wrap, e.g. to 0, and pass size checks).
inline int64_t shape_numel(const shape_t& shape) {
    int64_t n = 1;
    for (int64_t d : shape)
        if (d < 0 || __builtin_mul_overflow(n, d, &n))
            ZEROCLIP_THROW(errc::shape, "shape " + shape_to_string(shape) +
                                            (d < 0 ? " has a negative dimension" : " has more elements than fit in 64 bits"));
    return n;
}

template <class T>
class basic_tensor {
public:
    basic_tensor() = default;

    /// A new zero-filled tensor that owns its storage.
    /// errc::shape when the shape is invalid or its storage cannot be allocated.
    explicit basic_tensor(shape_t shape) : shape_(std::move(shape)) {
        const auto n = static_cast<uint64_t>(shape_numel(shape_));
        uint64_t bytes = 0;
        if (__builtin_mul_overflow(n, uint64_t{sizeof(T)}, &bytes) || bytes > PTRDIFF_MAX)
            ZEROCLIP_THROW(errc::shape, "tensor of shape " + shape_to_string(shape_) + " is too large to allocate");
        try {
            data_ = std::shared_ptr<T>(new T[static_cast<size_t>(n)](), std::default_delete<T[]>());
        } catch (const std::bad_alloc&) {
            ZEROCLIP_THROW(errc::shape, "tensor of shape " + shape_to_string(shape_) + " (" + std::to_string(bytes) +
                                            " bytes) cannot be allocated: out of memory");
        }
    }

    /// A tensor owning a copy of `values` (which must hold shape_numel(shape) elements).
    basic_tensor(shape_t shape, const std::vector<T>& values) : basic_tensor(std::move(shape)) {
        if (static_cast<int64_t>(values.size()) != numel())
            ZEROCLIP_THROW(errc::shape, "tensor of shape " + shape_to_string(shape_) + " needs " +
                                            std::to_string(numel()) + " values, got " +
                                            std::to_string(values.size()));
        std::copy(values.begin(), values.end(), data());
    }

    /// A view of memory owned by `owner` (kept alive as long as the view lives).
    static basic_tensor view(shape_t shape, std::shared_ptr<const void> owner, const T* data) {
        basic_tensor t;
        t.shape_ = std::move(shape);
        t.data_ = std::shared_ptr<T>(std::move(owner), const_cast<T*>(data));
        return t;
    }

    const shape_t& shape() const { return shape_; }
    int64_t dim(size_t i) const { return shape_.at(i); }
    size_t ndim() const { return shape_.size(); }
    int64_t numel() const { return shape_numel(shape_); }
    bool empty() const { return !data_; }
    /// The owner of the memory (shared by every view of it): with data(), it identifies a weight
    /// for the backends' caches of weights laid out for their products.
    std::shared_ptr<const void> owner() const { return data_; }

    T* data() { return data_.get(); }
    const T* data() const { return data_.get(); }
    T* begin() { return data(); }
    T* end() { return data() + numel(); }
    const T* begin() const { return data(); }
    const T* end() const { return data() + numel(); }
    T& operator[](int64_t i) { return data()[i]; }
    const T& operator[](int64_t i) const { return data()[i]; }

    /// The same storage seen with another shape of equal element count.
    basic_tensor reshaped(shape_t shape) const {
        if (shape_numel(shape) != numel())
            ZEROCLIP_THROW(errc::shape, "cannot reshape " + shape_to_string(shape_) + " to " +
                                            shape_to_string(shape));
        basic_tensor t = *this;
        t.shape_ = std::move(shape);
        return t;
    }

    /// A deep copy that owns its storage.
    basic_tensor clone() const {
        basic_tensor t(shape_);
        if (numel()) std::memcpy(t.data(), data(), sizeof(T) * static_cast<size_t>(numel()));
        return t;
    }

    /// Row `i` of the first dimension, as a view sharing this storage.
    basic_tensor row(int64_t i) const {
        shape_t inner(shape_.begin() + 1, shape_.end());
        return view(inner, data_, data() + i * shape_numel(inner));
    }

    /// Rows [begin, begin + count) of the first dimension, as a view sharing this storage.
    basic_tensor slice_rows(int64_t begin, int64_t count) const {
        shape_t shape = shape_;
        shape.at(0) = count;
        return view(shape, data_, data() + begin * (shape_.empty() ? 1 : numel() / shape_[0]));
    }

private:
    shape_t shape_;
    std::shared_ptr<T> data_;
};

/// Float32 host tensor: pixels, activations, embeddings.
using tensor = basic_tensor<float>;
/// Int32 host tensor: token ids ([N, context_length]).
using token_tensor = basic_tensor<int32_t>;

}  // namespace zeroclip
