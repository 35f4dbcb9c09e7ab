//! The CUDA backend's shared state (backend/cuda/cuda_backend.hpp uses it): the current-device
//! guard, the NVRTC kernel module loaded once per device (kernels.hpp), the context one backend
//! object and its copies share (device, stream, cuBLAS handle, memory pool) and the device
//! buffers tensors hold. Included only when ZEROCLIP_WITH_CUDA.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>

#include "check.hpp"
#include "kernels.hpp"
#include "options.hpp"

namespace zeroclip {

namespace detail::cuda {

/// Visible CUDA devices; 0 when there is no driver or device, with the reason in `*why` if given
/// (a failed query is cleared so that it does not surface in a later call).
inline int visible_devices(std::string* why) {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        if (why) *why = runtime_status(e);
        return 0;
    }
    if (n == 0 && why) *why = "no CUDA device visible";
    return n;
}

/// Makes `device` current on this thread (which also makes its primary context current, as the
/// driver-API launches need) and restores the caller's device afterwards.
class device_guard {
public:
    explicit device_guard(int device) {
        ZEROCLIP_CUDA_CHECK(cudaGetDevice(&previous_));
        ZEROCLIP_CUDA_CHECK(cudaSetDevice(device));
        device_ = device;
    }
    /// The noexcept flavour for destructors.
    device_guard(int device, std::nothrow_t) noexcept {
        if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
        ZEROCLIP_CUDA_CHECK_PRINT(cudaSetDevice(device));
        device_ = device;
    }
    ~device_guard() {
        if (previous_ >= 0 && previous_ != device_) ZEROCLIP_CUDA_CHECK_PRINT(cudaSetDevice(previous_));
    }
    device_guard(const device_guard&) = delete;
    device_guard& operator=(const device_guard&) = delete;

private:
    int previous_ = -1;
    int device_ = -1;
};

/// The kernels of kernels.hpp loaded on one device. One per process and device, never
/// unloaded (the module lives as long as the device's primary context).
struct kernel_module {
    CUmodule module = nullptr;
    CUfunction functions[static_cast<int>(kernel_id::count)] = {};
    std::string arch;
    CUfunction operator[](kernel_id id) const { return functions[static_cast<int>(id)]; }
};

/// Compiles (NVRTC, or reads the on-disk cache) and loads the kernels for `device` on first use;
/// later calls, from any thread or backend object, get the same module. The device must be current.
inline const kernel_module& kernels_for_device(int device) {
    static std::mutex mutex;
    static std::map<int, std::unique_ptr<kernel_module>> cache;
    std::lock_guard<std::mutex> lock(mutex);
    auto& slot = cache[device];
    if (slot) return *slot;
    int major = 0, minor = 0;
    ZEROCLIP_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    ZEROCLIP_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    const std::string arch = choose_arch(major, minor);
    bool from_cache = false;
    compiled_kernels compiled = cached_kernels_for(arch, &from_cache);
    auto m = std::make_unique<kernel_module>();
    m->arch = compiled.arch;
    const driver_api& drv = driver();
    if (from_cache && drv.module_load_data(&m->module, compiled.image.data()) != CUDA_SUCCESS) {
        forget_cached_kernels(arch);  // a damaged or foreign cache file: compile afresh
        compiled = cached_kernels_for(arch);
        from_cache = false;
    }
    if (!from_cache) ZEROCLIP_CU_CHECK(drv.module_load_data(&m->module, compiled.image.data()));
    for (int i = 0; i < static_cast<int>(kernel_id::count); ++i)
        ZEROCLIP_CU_CHECK(drv.module_get_function(&m->functions[i], m->module, kernel_symbol(static_cast<kernel_id>(i))));
    slot = std::move(m);
    return *slot;
}

/// The state one backend object and its copies share: device, stream, cuBLAS handle, memory
/// pool. Every tensor keeps its context alive, so device memory is always freed on its stream.
struct context {
    int device = 0;
    cuda_options options;
    cudaStream_t stream = nullptr;
    cublasHandle_t blas = nullptr;
    cudaMemPool_t pool = nullptr;  ///< null where the device has no stream-ordered allocator
    const kernel_module* kernels = nullptr;
    std::string device_name;

    explicit context(const cuda_options& opt) : device(opt.device), options(opt) {
        int count = 0;
        const cudaError_t e = cudaGetDeviceCount(&count);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            ZEROCLIP_THROW(errc::cuda, "no usable CUDA device: cudaGetDeviceCount failed: " + runtime_status(e));
        }
        if (device < 0 || device >= count)
            ZEROCLIP_THROW(errc::cuda, "CUDA device " + std::to_string(device) + " requested, but " +
                                           std::to_string(count) + " device(s) are visible");
        if (const char* env = std::getenv("ZEROCLIP_CUDA_SYNC"); env && std::string(env) == "1")
            options.synchronous = true;
        device_guard guard(device);
        try {
            init();
        } catch (...) {
            release_all();  // a constructor that throws gets no destructor call
            throw;
        }
    }

    ~context() { release_all(); }

    void init() {
        cudaDeviceProp prop{};
        ZEROCLIP_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
        device_name = std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ")";
        kernels = &kernels_for_device(device);
        ZEROCLIP_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
        ZEROCLIP_CUBLAS_CHECK(cublasCreate(&blas));
        ZEROCLIP_CUBLAS_CHECK(cublasSetStream(blas, stream));
        ZEROCLIP_CUBLAS_CHECK(cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH));
        int pools = 0;
        ZEROCLIP_CUDA_CHECK(cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, device));
        if (pools) {
            cudaMemPoolProps props{};
            props.allocType = cudaMemAllocationTypePinned;
            props.handleTypes = cudaMemHandleTypeNone;
            props.location.type = cudaMemLocationTypeDevice;
            props.location.id = device;
            ZEROCLIP_CUDA_CHECK(cudaMemPoolCreate(&pool, &props));
            // Keep freed blocks for reuse instead of returning them at every synchronisation.
            uint64_t keep = UINT64_MAX;
            ZEROCLIP_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
        }
    }

    void release_all() noexcept {
        device_guard guard(device, std::nothrow);
        if (stream) ZEROCLIP_CUDA_CHECK_PRINT(cudaStreamSynchronize(stream));
        if (blas) {
            const cublasStatus_t s = cublasDestroy(blas);
            if (s != CUBLAS_STATUS_SUCCESS && s != CUBLAS_STATUS_NOT_INITIALIZED)
                std::fprintf(stderr, "[zeroclip.cuda] cublasDestroy failed in a destructor: %s\n",
                             cublas_status_name(s));
        }
        if (stream) ZEROCLIP_CUDA_CHECK_PRINT(cudaStreamDestroy(stream));
        if (pool) ZEROCLIP_CUDA_CHECK_PRINT(cudaMemPoolDestroy(pool));
        stream = nullptr, blas = nullptr, pool = nullptr;
    }

    context(const context&) = delete;
    context& operator=(const context&) = delete;

    void* allocate(size_t bytes) {
        if (bytes == 0) return nullptr;
        void* p = nullptr;
        if (pool)
            ZEROCLIP_CUDA_CHECK(cudaMallocFromPoolAsync(&p, bytes, pool, stream));
        else
            ZEROCLIP_CUDA_CHECK(cudaMalloc(&p, bytes));
        return p;
    }

    void release(void* p) noexcept {
        if (!p) return;
        device_guard guard(device, std::nothrow);
        if (pool)
            ZEROCLIP_CUDA_CHECK_PRINT(cudaFreeAsync(p, stream));
        else
            ZEROCLIP_CUDA_CHECK_PRINT(cudaFree(p));
    }
};

/// Device memory owned by a context; freed (stream-ordered) when the last tensor using it goes.
struct device_buffer {
    std::shared_ptr<context> ctx;
    void* ptr = nullptr;
    size_t bytes = 0;
    device_buffer(std::shared_ptr<context> c, size_t n) : ctx(std::move(c)), ptr(ctx->allocate(n)), bytes(n) {}
    ~device_buffer() { ctx->release(ptr); }
    device_buffer(const device_buffer&) = delete;
    device_buffer& operator=(const device_buffer&) = delete;
};

}  // namespace detail::cuda

}  // namespace zeroclip
