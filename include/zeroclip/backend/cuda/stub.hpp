//! The cuda_cublas of a build without CUDA (ZEROCLIP_WITH_CUDA undefined): the same API as
//! backend/cuda/cuda_backend.hpp, so `clip_model<cuda_cublas>` and a `--device cuda` flag compile
//! everywhere, but the constructor throws errc::no_cuda (candle's dummy_cuda_backend.rs).
//! device_count() is 0. No CUDA header is included. The ops are generated from the contract's
//! list (ZEROCLIP_BACKEND_OPS), so the stub cannot drift from it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../../tensor.hpp"
#include "../activation.hpp"
#include "../backend.hpp"
#include "options.hpp"
#include "tensor_shape.hpp"

namespace zeroclip {

namespace detail::cuda {
[[noreturn]] inline void no_cuda() {
    ZEROCLIP_THROW(errc::no_cuda, "zeroclip was built without CUDA; configure with -DZEROCLIP_USE_CUDA=ON");
}
}  // namespace detail::cuda

/// Stands in for the device tensor; never holds data (no stub backend can be constructed).
class cuda_tensor : public detail::cuda::tensor_shape {
public:
    cuda_tensor() = default;
    bool empty() const { return true; }
    float* data() { return nullptr; }
    const float* data() const { return nullptr; }
    cuda_tensor reshaped(shape_t) const { detail::cuda::no_cuda(); }
    cuda_tensor slice_rows(int64_t, int64_t) const { detail::cuda::no_cuda(); }
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

    // Every op of the contract, required and optional, with the listed signature (backend.hpp).
#define ZEROCLIP_DETAIL_STUB_OP(CTX, RESULT, NAME, PARAMS) \
    RESULT NAME PARAMS const { detail::cuda::no_cuda(); }
#define ZEROCLIP_DETAIL_STUB_OPT(CTX, TRAIT, RESULT, NAME, PARAMS) ZEROCLIP_DETAIL_STUB_OP(CTX, RESULT, NAME, PARAMS)
    ZEROCLIP_BACKEND_OPS(ZEROCLIP_DETAIL_STUB_OP, ZEROCLIP_DETAIL_STUB_OPT, ~)
#undef ZEROCLIP_DETAIL_STUB_OPT
#undef ZEROCLIP_DETAIL_STUB_OP
};

ZEROCLIP_CHECK_BACKEND(cuda_cublas);  // the optional ops are generated from the same list

}  // namespace zeroclip
