//! The cuda_cublas of a build without CUDA (ZEROCLIP_WITH_CUDA undefined): the same API as
//! backend/cuda/cuda_backend.hpp, so `clip_model<cuda_cublas>` and a `--device cuda` flag compile
//! everywhere, but the constructor throws errc::no_cuda (candle's dummy_cuda_backend.rs).
//! device_count() is 0. No CUDA header is included.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../../models/config.hpp"
#include "../../tensor.hpp"
#include "../backend.hpp"
#include "options.hpp"

namespace zeroclip {

namespace detail::cuda {
[[noreturn]] inline void no_cuda() {
    ZEROCLIP_THROW(errc::no_cuda, "zeroclip was built without CUDA; configure with -DZEROCLIP_USE_CUDA=ON");
}
}  // namespace detail::cuda

/// Stands in for the device tensor; never holds data (no stub backend can be constructed).
class cuda_tensor {
public:
    cuda_tensor() = default;
    const shape_t& shape() const { return shape_; }
    int64_t dim(size_t i) const { return shape_.at(i); }
    size_t ndim() const { return shape_.size(); }
    int64_t numel() const { return shape_numel(shape_); }
    bool empty() const { return true; }
    float* data() { return nullptr; }
    const float* data() const { return nullptr; }
    cuda_tensor reshaped(shape_t) const { detail::cuda::no_cuda(); }
    cuda_tensor slice_rows(int64_t, int64_t) const { detail::cuda::no_cuda(); }

private:
    shape_t shape_;
};

/// The CUDA backend's API without CUDA: constructing it throws errc::no_cuda.
class cuda_cublas {
public:
    using tensor = cuda_tensor;
    static constexpr const char* name = "cuda";

    cuda_cublas() { detail::cuda::no_cuda(); }
    explicit cuda_cublas(const cuda_options&) { detail::cuda::no_cuda(); }

    static int device_count() noexcept { return 0; }
    static std::string unavailable_reason() { return "zeroclip was built without CUDA"; }

    const cuda_options& options() const { detail::cuda::no_cuda(); }
    int device() const { detail::cuda::no_cuda(); }
    const std::string& device_name() const { detail::cuda::no_cuda(); }
    const std::string& kernel_arch() const { detail::cuda::no_cuda(); }
    void synchronize() const { detail::cuda::no_cuda(); }

    tensor upload(const zeroclip::tensor&) const { detail::cuda::no_cuda(); }
    zeroclip::tensor download(const tensor&) const { detail::cuda::no_cuda(); }
    tensor linear(const tensor&, const tensor&, const tensor&) const { detail::cuda::no_cuda(); }
    tensor matmul(const tensor&, const tensor&) const { detail::cuda::no_cuda(); }
    tensor layer_norm(const tensor&, const tensor&, const tensor&, double) const { detail::cuda::no_cuda(); }
    void activate_(tensor&, activation) const { detail::cuda::no_cuda(); }
    void relu_(tensor&) const { detail::cuda::no_cuda(); }
    void add_(tensor&, const tensor&) const { detail::cuda::no_cuda(); }
    void add_broadcast_(tensor&, const tensor&) const { detail::cuda::no_cuda(); }
    void scale_(tensor&, float) const { detail::cuda::no_cuda(); }
    tensor l2_normalize_rows(const tensor&) const { detail::cuda::no_cuda(); }
    tensor softmax_rows(const tensor&) const { detail::cuda::no_cuda(); }
    tensor gather_rows(const tensor&, const std::vector<int64_t>&) const { detail::cuda::no_cuda(); }
    tensor slice_rows(const tensor&, int64_t, int64_t) const { detail::cuda::no_cuda(); }
    tensor patchify(const tensor&, int64_t) const { detail::cuda::no_cuda(); }
    tensor prepend_row(const tensor&, const tensor&, int64_t) const { detail::cuda::no_cuda(); }
    tensor self_attention(const tensor&, int64_t, int64_t, bool) const { detail::cuda::no_cuda(); }
    tensor attention(const tensor&, const tensor&, const tensor&, int64_t, int64_t) const { detail::cuda::no_cuda(); }
    tensor conv2d(const tensor&, const tensor&, const tensor&, int64_t, int64_t) const { detail::cuda::no_cuda(); }
    tensor conv2d_relu(const tensor&, const tensor&, const tensor&, int64_t, int64_t) const { detail::cuda::no_cuda(); }
    tensor conv2d_add_relu(const tensor&, const tensor&, const tensor&, int64_t, int64_t, const tensor&) const {
        detail::cuda::no_cuda();
    }
    tensor linear_activate(const tensor&, const tensor&, const tensor&, activation) const { detail::cuda::no_cuda(); }
    void linear_add_(tensor&, const tensor&, const tensor&, const tensor&) const { detail::cuda::no_cuda(); }
    tensor avg_pool2d(const tensor&, int64_t) const { detail::cuda::no_cuda(); }
    tensor spatial_tokens(const tensor&) const { detail::cuda::no_cuda(); }
};

static_assert(is_backend_v<cuda_cublas>, "cuda_cublas must implement the backend contract");
static_assert(has_linear_activate_v<cuda_cublas> && has_linear_add_v<cuda_cublas> && has_conv2d_relu_v<cuda_cublas> &&
                  has_conv2d_add_relu_v<cuda_cublas>,
              "cuda_cublas's fused ops must match backend.hpp's signatures (or nn/ silently skips them)");

}  // namespace zeroclip
