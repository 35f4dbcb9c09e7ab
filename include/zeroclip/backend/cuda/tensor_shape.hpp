//! The shape half of cuda_tensor, shared by the real one (cuda_tensor.hpp) and the stub's
//! (stub.hpp): the accessors zeroclip::tensor has, row-major with the batch first.
#pragma once

#include <cstdint>
#include <utility>

#include "../../tensor.hpp"

namespace zeroclip::detail::cuda {

class tensor_shape {
public:
    tensor_shape() = default;
    explicit tensor_shape(shape_t shape) : shape_(std::move(shape)) {}

    const shape_t& shape() const { return shape_; }
    int64_t dim(size_t i) const { return shape_.at(i); }
    size_t ndim() const { return shape_.size(); }
    int64_t numel() const { return shape_numel(shape_); }

protected:
    shape_t shape_;
};

}  // namespace zeroclip::detail::cuda
