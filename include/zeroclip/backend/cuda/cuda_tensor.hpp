//! cuda_tensor: a float32 tensor in the CUDA backend's device memory. Included only when
//! ZEROCLIP_WITH_CUDA (stub.hpp has the stand-in of builds without CUDA).
#pragma once

#include <cstdint>
#include <memory>

#include "../../tensor.hpp"
#include "context.hpp"
#include "tensor_shape.hpp"

namespace zeroclip {

class cuda_cublas;

/// A float32 tensor in device memory: a shape (row-major, batch first, as zeroclip::tensor) and a
/// shared device buffer, so copies are cheap and views (slice_rows, reshaped) share storage.
/// `data()` is a device pointer. Belongs to the cuda_cublas backend (and its copies) that made it.
class cuda_tensor : public detail::cuda::tensor_shape {
public:
    cuda_tensor() = default;

    /// True for a default-constructed tensor (e.g. "no bias"); a tensor with 0 elements is not empty.
    bool empty() const { return !buffer_; }

    float* data() { return buffer_ ? static_cast<float*>(buffer_->ptr) + offset_ : nullptr; }
    const float* data() const { return buffer_ ? static_cast<const float*>(buffer_->ptr) + offset_ : nullptr; }

    /// The same storage seen with another shape of equal element count.
    cuda_tensor reshaped(shape_t shape) const {
        if (shape_numel(shape) != numel())
            ZEROCLIP_THROW(errc::shape, "cannot reshape " + shape_to_string(shape_) + " to " + shape_to_string(shape));
        cuda_tensor t = *this;
        t.shape_ = std::move(shape);
        return t;
    }

    /// Rows [begin, begin + count) of the first dimension, as a view sharing this storage.
    cuda_tensor slice_rows(int64_t begin, int64_t count) const {
        cuda_tensor t = *this;
        const int64_t row = shape_.empty() || shape_[0] == 0 ? 0 : numel() / shape_[0];
        t.shape_.at(0) = count;
        t.offset_ += begin * row;
        return t;
    }

private:
    friend class cuda_cublas;
    cuda_tensor(shape_t shape, std::shared_ptr<detail::cuda::device_buffer> buffer)
        : tensor_shape(std::move(shape)), buffer_(std::move(buffer)) {}

    std::shared_ptr<detail::cuda::device_buffer> buffer_;
    int64_t offset_ = 0;  // in floats
};

}  // namespace zeroclip
