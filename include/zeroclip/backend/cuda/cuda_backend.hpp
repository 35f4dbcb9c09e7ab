//! cuda_cublas: the GPU backend. Tensors live in device memory (stream-ordered pool, shared
//! ownership); every matrix product is a cuBLAS GEMM (attention as strided-batched GEMMs over
//! batch × heads); the other ops are small kernels compiled at run time with NVRTC
//! (cuda_kernels.hpp), so this stays a header compiled by the host compiler: no nvcc, no .cu.
//! Same contract and semantics as cpu_backend (backend.hpp); FP32 by default, TF32/FP16/BF16
//! tensor-core GEMMs on request (cuda_options::math). Included only when ZEROCLIP_WITH_CUDA.
#pragma once

#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "../../models/config.hpp"
#include "../../tensor.hpp"
#include "../backend.hpp"
#include "check.hpp"
#include "kernels.hpp"
#include "options.hpp"

namespace zeroclip {

namespace detail::cuda {

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

/// The kernels of cuda_kernels.hpp loaded on one device. One per process and device, never
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

/// A float32 tensor in device memory: a shape (row-major, batch first, as zeroclip::tensor) and a
/// shared device buffer, so copies are cheap and views (slice_rows, reshaped) share storage.
/// `data()` is a device pointer. Belongs to the cuda_cublas backend (and its copies) that made it.
class cuda_tensor {
public:
    cuda_tensor() = default;

    const shape_t& shape() const { return shape_; }
    int64_t dim(size_t i) const { return shape_.at(i); }
    size_t ndim() const { return shape_.size(); }
    int64_t numel() const { return shape_numel(shape_); }
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
        : shape_(std::move(shape)), buffer_(std::move(buffer)) {}

    shape_t shape_;
    std::shared_ptr<detail::cuda::device_buffer> buffer_;
    int64_t offset_ = 0;  // in floats
};

/// The CUDA backend. Cheap to copy (copies share device, stream, cuBLAS handle and memory pool).
/// Ops are enqueued on the backend's stream; download() waits for them. All ops are const and may
/// be called from several threads (they serialise on the one stream).
class cuda_cublas {
public:
    using tensor = cuda_tensor;
    static constexpr const char* name = "cuda";

    /// Device 0, FP32 GEMMs. Throws errc::cuda when no CUDA device or driver is usable (the
    /// message says why), or when NVRTC cannot compile the kernels for the device.
    cuda_cublas() : cuda_cublas(cuda_options{}) {}
    explicit cuda_cublas(const cuda_options& options)
        : ctx_(std::make_shared<detail::cuda::context>(options)) {}

    /// Visible CUDA devices; 0 when there is no driver or device (never throws).
    static int device_count() noexcept {
        int n = 0;
        if (cudaGetDeviceCount(&n) != cudaSuccess) {
            (void)cudaGetLastError();
            return 0;
        }
        return n;
    }
    /// Why device_count() is 0 ("" when a device is visible): for skip messages.
    static std::string unavailable_reason() {
        int n = 0;
        const cudaError_t e = cudaGetDeviceCount(&n);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            return detail::cuda::runtime_status(e);
        }
        return n ? std::string() : "no CUDA device visible";
    }

    const cuda_options& options() const { return ctx_->options; }
    int device() const { return ctx_->device; }
    /// "NVIDIA H100 80GB HBM3 (sm_90)".
    const std::string& device_name() const { return ctx_->device_name; }
    /// The architecture the kernels were compiled for ("sm_90", or "compute_90" when JIT-compiled).
    const std::string& kernel_arch() const { return ctx_->kernels->arch; }
    /// Waits for everything enqueued so far (timings).
    void synchronize() const {
        detail::cuda::device_guard g(ctx_->device);
        ZEROCLIP_CUDA_CHECK(cudaStreamSynchronize(ctx_->stream));
    }

    // ---- memory -------------------------------------------------------------------------
    /// Host → device copy (returns once the host memory may be reused).
    tensor upload(const zeroclip::tensor& host) const {
        if (host.empty()) return tensor{};
        detail::cuda::device_guard g(ctx_->device);
        tensor t = make(host.shape());
        if (host.numel())
            ZEROCLIP_CUDA_CHECK(cudaMemcpyAsync(t.data(), host.data(), bytes(host.numel()), cudaMemcpyHostToDevice,
                                                ctx_->stream));
        return t;
    }

    /// Device → host copy; waits for the work that produces `t` (asynchronous errors surface here).
    zeroclip::tensor download(const tensor& t) const {
        if (t.empty()) return zeroclip::tensor{};
        check_owner(t);
        detail::cuda::device_guard g(ctx_->device);
        zeroclip::tensor host(t.shape());
        if (t.numel())
            ZEROCLIP_CUDA_CHECK(cudaMemcpyAsync(host.data(), t.data(), bytes(t.numel()), cudaMemcpyDeviceToHost,
                                                ctx_->stream));
        ZEROCLIP_CUDA_CHECK(cudaStreamSynchronize(ctx_->stream));
        return host;
    }

    // ---- matrix products ----------------------------------------------------------------
    /// y = x · wᵀ + b: x (M, K), w (N, K), b (N) or empty → (M, N).
    tensor linear(const tensor& x, const tensor& w, const tensor& b) const {
        const int64_t m = rows(x), k = x.shape().back(), n = w.dim(0);
        ZEROCLIP_ASSERT(w.dim(1) == k);
        check_owner(x), check_owner(w);
        detail::cuda::device_guard g(ctx_->device);
        tensor y = make({m, n});
        // cuBLAS is column-major: row-major y (M×N) is column-major yᵀ (N×M) = w·xᵀ, where the
        // stored w read column-major is wᵀ (K×N, so op T) and the stored x is xᵀ (K×M, op N).
        gemm(CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, 1.0f, w.data(), k, x.data(), k, 0.0f, y.data(), n);
        if (!b.empty()) {
            check_owner(b);
            ZEROCLIP_ASSERT(b.numel() == n);
            elementwise(detail::cuda::kernel_id::add_broadcast, m * n, y.data(), b.data(), i64(m * n), i64(n));
        }
        return y;
    }

    /// y = x · w: x (M, K), w (K, N) → (M, N).
    tensor matmul(const tensor& x, const tensor& w) const {
        const int64_t m = rows(x), k = x.shape().back(), n = w.dim(1);
        ZEROCLIP_ASSERT(w.dim(0) == k);
        check_owner(x), check_owner(w);
        detail::cuda::device_guard g(ctx_->device);
        tensor y = make({m, n});
        // Column-major: yᵀ (N×M) = wᵀ (N×K, w as stored) · xᵀ (K×M, x as stored).
        gemm(CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, 1.0f, w.data(), n, x.data(), k, 0.0f, y.data(), n);
        return y;
    }

    // ---- fused steps (optional ops of backend.hpp; nn/ uses them since this backend has them) --
    /// act(x · wᵀ + b): the MLP's c_fc and its activation; the bias and activation are one pass
    /// over the output after the GEMM.
    tensor linear_activate(const tensor& x, const tensor& w, const tensor& b, activation act) const {
        const int64_t m = rows(x), k = x.shape().back(), n = w.dim(0);
        ZEROCLIP_ASSERT(w.dim(1) == k && (b.empty() || b.numel() == n));
        check_owner(x), check_owner(w), check_owner(b);
        detail::cuda::device_guard g(ctx_->device);
        tensor y = make({m, n});
        gemm(CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, 1.0f, w.data(), k, x.data(), k, 0.0f, y.data(), n);
        elementwise(detail::cuda::kernel_id::bias_act, m * n, y.data(), b.data(), i64(m * n), i64(n),
                    int32(act_code(act)));
        return y;
    }

    /// In place: y += x · wᵀ + b (a residual connection around a linear), as a GEMM accumulating
    /// into y (beta = 1) and the bias: (y + x·wᵀ) + b, cpu_backend's order.
    void linear_add_(tensor& y, const tensor& x, const tensor& w, const tensor& b) const {
        const int64_t m = rows(x), k = x.shape().back(), n = w.dim(0);
        ZEROCLIP_ASSERT(w.dim(1) == k && y.numel() == m * n && (b.empty() || b.numel() == n));
        ZEROCLIP_ASSERT(y.data() != x.data());
        check_owner(y), check_owner(x), check_owner(w), check_owner(b);
        detail::cuda::device_guard g(ctx_->device);
        gemm(CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, 1.0f, w.data(), k, x.data(), k, 1.0f, y.data(), n);
        if (!b.empty())
            elementwise(detail::cuda::kernel_id::add_broadcast, m * n, y.data(), b.data(), i64(m * n), i64(n));
    }

    // ---- row-wise ops ---------------------------------------------------------------------
    tensor layer_norm(const tensor& x, const tensor& weight, const tensor& bias, double eps) const {
        const int64_t m = rows(x), n = x.shape().back();
        check_owner(x), check_owner(weight), check_owner(bias);
        detail::cuda::device_guard g(ctx_->device);
        tensor y = make(x.shape());
        if (m && n)
            launch(detail::cuda::kernel_id::layer_norm, grid1(m), row_threads(n), x.data(), weight.data(), bias.data(),
                   y.data(), int32(n), eps);
        return y;
    }

    void activate_(tensor& x, activation act) const {
        check_owner(x);
        detail::cuda::device_guard g(ctx_->device);
        const auto k = act == activation::quick_gelu ? detail::cuda::kernel_id::quick_gelu : detail::cuda::kernel_id::gelu;
        elementwise(k, x.numel(), x.data(), i64(x.numel()));
    }

    /// In place: x = max(x, 0).
    void relu_(tensor& x) const {
        check_owner(x);
        detail::cuda::device_guard g(ctx_->device);
        elementwise(detail::cuda::kernel_id::relu, x.numel(), x.data(), i64(x.numel()));
    }

    void add_(tensor& x, const tensor& y) const {
        ZEROCLIP_ASSERT(x.numel() == y.numel());
        check_owner(x), check_owner(y);
        detail::cuda::device_guard g(ctx_->device);
        elementwise(detail::cuda::kernel_id::add, x.numel(), x.data(), y.data(), i64(x.numel()));
    }

    void add_broadcast_(tensor& x, const tensor& rows_to_add) const {
        const int64_t block = rows_to_add.numel();
        ZEROCLIP_ASSERT(block > 0 && x.numel() % block == 0);
        check_owner(x), check_owner(rows_to_add);
        detail::cuda::device_guard g(ctx_->device);
        elementwise(detail::cuda::kernel_id::add_broadcast, x.numel(), x.data(), rows_to_add.data(), i64(x.numel()),
                    i64(block));
    }

    void scale_(tensor& x, float s) const {
        check_owner(x);
        detail::cuda::device_guard g(ctx_->device);
        elementwise(detail::cuda::kernel_id::scale, x.numel(), x.data(), s, i64(x.numel()));
    }

    tensor l2_normalize_rows(const tensor& x) const {
        const int64_t m = rows(x), n = x.shape().back();
        check_owner(x);
        detail::cuda::device_guard g(ctx_->device);
        tensor y = make({m, n});
        if (m && n) launch(detail::cuda::kernel_id::l2_normalize, grid1(m), row_threads(n), x.data(), y.data(), int32(n));
        return y;
    }

    tensor softmax_rows(const tensor& x) const {
        const int64_t m = rows(x), n = x.shape().back();
        check_owner(x);
        detail::cuda::device_guard g(ctx_->device);
        tensor y = make({m, n});
        softmax(x.data(), y.data(), m, n, 1, false);
        return y;
    }

    // ---- gathers and reshapes -------------------------------------------------------------
    /// Rows `index` of table (V, W) → (index.size(), W). Throws errc::invalid_argument for an
    /// index outside [0, V) (a device fault would poison the whole context).
    tensor gather_rows(const tensor& table, const std::vector<int64_t>& index) const {
        const int64_t w = table.shape().back(), v = rows(table), count = static_cast<int64_t>(index.size());
        for (int64_t i : index)
            if (i < 0 || i >= v)
                ZEROCLIP_THROW(errc::invalid_argument, "gather_rows: row " + std::to_string(i) + " outside [0, " +
                                                           std::to_string(v) + ")");
        check_owner(table);
        detail::cuda::device_guard g(ctx_->device);
        tensor y = make({count, w});
        if (count && w) {
            auto idx = std::make_shared<detail::cuda::device_buffer>(ctx_, index.size() * sizeof(int64_t));
            ZEROCLIP_CUDA_CHECK(cudaMemcpyAsync(idx->ptr, index.data(), index.size() * sizeof(int64_t),
                                                cudaMemcpyHostToDevice, ctx_->stream));
            elementwise(detail::cuda::kernel_id::gather_rows, count * w, table.data(),
                        static_cast<const long long*>(idx->ptr), y.data(), i64(count), i64(w));
        }
        return y;
    }

    tensor slice_rows(const tensor& x, int64_t begin, int64_t count) const { return x.slice_rows(begin, count); }

    /// images (N, C, H, W) → (N·(H/p)·(W/p), C·p·p), rows ordered (c, ky, kx).
    tensor patchify(const tensor& images, int64_t p) const {
        const int64_t n = images.dim(0), c = images.dim(1), h = images.dim(2), w = images.dim(3);
        check_owner(images);
        detail::cuda::device_guard g(ctx_->device);
        tensor y = make({n * (h / p) * (w / p), c * p * p});
        elementwise(detail::cuda::kernel_id::patchify, y.numel(), images.data(), y.data(), i64(y.numel()), int32(c),
                    int32(h), int32(w), int32(p));
        return y;
    }

    /// x (B·T, W) → (B·(T+1), W) with `first` (W) before each sample's rows.
    tensor prepend_row(const tensor& x, const tensor& first, int64_t batch) const {
        const int64_t w = x.shape().back(), t = rows(x) / batch;
        check_owner(x), check_owner(first);
        detail::cuda::device_guard g(ctx_->device);
        tensor y = make({batch * (t + 1), w});
        elementwise(detail::cuda::kernel_id::prepend_row, y.numel(), x.data(), first.data(), y.data(), i64(batch),
                    i64(t), i64(w));
        return y;
    }

    // ---- attention --------------------------------------------------------------------------
    /// qkv (B·T, 3W) → (B·T, W): softmax(q kᵀ/√d [+ causal mask]) v per sample and head.
    tensor self_attention(const tensor& qkv, int64_t batch, int64_t heads, bool causal) const {
        const int64_t w = qkv.shape().back() / 3, t = rows(qkv) / batch;
        check_owner(qkv);
        detail::cuda::device_guard g(ctx_->device);
        const int64_t d = w / heads, part = batch * heads * t * d;
        tensor split = make({3, batch, heads, t, d});  // q, k, v head-major
        if (part)
            launch(detail::cuda::kernel_id::split_heads, grid_for(part, 3), dim3(256), qkv.data(), split.data(),
                   i64(batch), i64(t), int32(heads), int32(d), i64(3 * w), i64(w));
        const float* base = split.data();
        return attention_core(base, base + part, base + 2 * part, batch, t, t, heads, d, causal);
    }

    /// q (B·Tq, W) attending over k, v (B·Tk, W) → (B·Tq, W); no mask.
    tensor attention(const tensor& q, const tensor& k, const tensor& v, int64_t batch, int64_t heads) const {
        const int64_t w = q.shape().back(), tq = rows(q) / batch, tk = rows(k) / batch, d = w / heads;
        check_owner(q), check_owner(k), check_owner(v);
        detail::cuda::device_guard g(ctx_->device);
        tensor qh = make({batch, heads, tq, d}), kh = make({batch, heads, tk, d}), vh = make({batch, heads, tk, d});
        split_heads(q, qh, batch, tq, heads, d);
        split_heads(k, kh, batch, tk, heads, d);
        split_heads(v, vh, batch, tk, heads, d);
        return attention_core(qh.data(), kh.data(), vh.data(), batch, tq, tk, heads, d, false);
    }

    // ---- convolutional ops (ModifiedResNet), images NCHW ---------------------------------------
    /// Zero-padded convolution: x (N, C, H, W), w (O, C, kh, kw), b (O) or empty →
    /// (N, O, Ho, Wo), Ho = (H + 2·pad − kh) / stride + 1. A 1×1 stride-1 convolution is one
    /// strided-batched GEMM over the images; any other is im2col (a chunk of images at a time, the
    /// column buffer ≤ 128 MiB) followed by a strided-batched GEMM with the weight shared.
    tensor conv2d(const tensor& x, const tensor& w, const tensor& b, int64_t stride, int64_t pad) const {
        return conv(x, w, b, stride, pad, nullptr, act_none);
    }

    /// relu(conv2d(x, w, b, stride, pad)), the bias and ReLU in one pass.
    tensor conv2d_relu(const tensor& x, const tensor& w, const tensor& b, int64_t stride, int64_t pad) const {
        return conv(x, w, b, stride, pad, nullptr, act_relu);
    }

    /// relu(conv2d(x, w, b, stride, pad) + residual), residual shaped like the output (the end of
    /// a ResNet bottleneck), in one pass after the GEMM.
    tensor conv2d_add_relu(const tensor& x, const tensor& w, const tensor& b, int64_t stride, int64_t pad,
                           const tensor& residual) const {
        check_owner(residual);
        return conv(x, w, b, stride, pad, &residual, act_relu);
    }

    /// nn.AvgPool2d(k) (kernel = stride = k, no padding): (N, C, H, W) → (N, C, H/k, W/k).
    tensor avg_pool2d(const tensor& x, int64_t k) const {
        const int64_t planes = x.dim(0) * x.dim(1), h = x.dim(2), w = x.dim(3);
        check_owner(x);
        detail::cuda::device_guard g(ctx_->device);
        tensor y = make({x.dim(0), x.dim(1), h / k, w / k});
        elementwise(detail::cuda::kernel_id::avg_pool2d, y.numel(), x.data(), y.data(), i64(planes), int32(h), int32(w),
                    int32(k), 1.0f / static_cast<float>(k * k));
        return y;
    }

    /// Feature maps (N, C, H, W) → tokens (N·(1+H·W), C): per image the spatial mean, then every
    /// position's channel vector in (y, x) order (AttentionPool2d's token layout).
    tensor spatial_tokens(const tensor& x) const {
        const int64_t n = x.dim(0), c = x.dim(1), hw = x.dim(2) * x.dim(3);
        check_owner(x);
        detail::cuda::device_guard g(ctx_->device);
        tensor y = make({n * (1 + hw), c});
        elementwise(detail::cuda::kernel_id::spatial_tokens, y.numel(), x.data(), y.data(), i64(n), i64(c), i64(hw));
        return y;
    }

private:
    using i64 = long long;  // the kernels' 64-bit integer parameter type
    // Activation codes of the kernels (ACT_* in cuda_kernels.hpp).
    static constexpr int act_none = 0, act_quick_gelu = 1, act_gelu = 2, act_relu = 3;
    static int act_code(activation a) { return a == activation::quick_gelu ? act_quick_gelu : act_gelu; }

    /// conv2d with the epilogue act(conv + residual + bias).
    tensor conv(const tensor& x, const tensor& w, const tensor& b, int64_t stride, int64_t pad, const tensor* residual,
                int act) const {
        const int64_t n = x.dim(0), c = x.dim(1), h = x.dim(2), wd = x.dim(3);
        const int64_t o = w.dim(0), kh = w.dim(2), kw = w.dim(3);
        ZEROCLIP_ASSERT(w.dim(1) == c && stride >= 1 && pad >= 0);
        const int64_t ho = (h + 2 * pad - kh) / stride + 1, wo = (wd + 2 * pad - kw) / stride + 1;
        ZEROCLIP_ASSERT(ho > 0 && wo > 0);
        check_owner(x), check_owner(w), check_owner(b);
        detail::cuda::device_guard g(ctx_->device);
        const int64_t k = c * kh * kw, plane = ho * wo;
        tensor y = make({n, o, ho, wo});
        // Per image, row-major y (O×P) = w (O×K) · cols (K×P); column-major that is
        // yᵀ (P×O) = colsᵀ (P×K, the stored cols, op N) · wᵀ (K×O, the stored w, op N).
        if (kh == 1 && kw == 1 && stride == 1 && pad == 0) {
            gemm_batched(CUBLAS_OP_N, CUBLAS_OP_N, plane, o, c, 1.0f, x.data(), plane, c * plane, w.data(), c, 0, 0.0f,
                         y.data(), plane, o * plane, n);
        } else if (n > 0) {
            constexpr int64_t max_cols = int64_t{1} << 25;  // floats
            const int64_t per_image = k * plane;
            const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(n, max_cols / std::max<int64_t>(per_image, 1)));
            tensor cols = make({chunk, k, plane});
            for (int64_t first = 0; first < n; first += chunk) {
                const int64_t count = std::min(chunk, n - first);
                elementwise(detail::cuda::kernel_id::im2col, count * per_image, x.data() + first * c * h * wd,
                            cols.data(), i64(count), int32(c), int32(h), int32(wd), int32(kh), int32(kw), int32(stride),
                            int32(pad), int32(ho), int32(wo));
                gemm_batched(CUBLAS_OP_N, CUBLAS_OP_N, plane, o, k, 1.0f, cols.data(), plane, per_image, w.data(), k, 0,
                             0.0f, y.data() + first * o * plane, plane, o * plane, count);
            }
        }
        ZEROCLIP_ASSERT(b.empty() || b.numel() == o);
        ZEROCLIP_ASSERT(!residual || residual->numel() == y.numel());
        if (!b.empty() || residual || act != act_none)
            elementwise(detail::cuda::kernel_id::channel_bias_act, y.numel(), y.data(), b.data(),
                        residual ? residual->data() : static_cast<const float*>(nullptr), i64(y.numel()), i64(o),
                        i64(plane), int32(act));
        return y;
    }

    static int32_t int32(int64_t v) {
        if (v < INT32_MIN || v > INT32_MAX)
            ZEROCLIP_THROW(errc::invalid_argument, "cuda_cublas: size " + std::to_string(v) + " exceeds 32 bits");
        return static_cast<int32_t>(v);
    }
    static int64_t rows(const tensor& x) { return x.shape().back() ? x.numel() / x.shape().back() : 0; }
    static size_t bytes(int64_t numel) { return static_cast<size_t>(numel) * sizeof(float); }

    void check_owner(const tensor& t) const {
        if (!t.empty() && t.buffer_->ctx != ctx_)
            ZEROCLIP_THROW(errc::invalid_argument,
                           "cuda_cublas: a tensor made by another cuda_cublas backend object was passed in "
                           "(tensors belong to the backend, and its copies, that made them)");
    }

    tensor make(shape_t shape) const {
        const int64_t n = shape_numel(shape);
        return tensor(std::move(shape), std::make_shared<detail::cuda::device_buffer>(ctx_, bytes(n)));
    }

    static dim3 grid1(int64_t blocks) { return dim3(static_cast<unsigned>(blocks)); }
    static dim3 grid_for(int64_t n, unsigned y = 1) {
        const int64_t blocks = std::min<int64_t>((n + 255) / 256, int64_t{1} << 20);
        return dim3(static_cast<unsigned>(std::max<int64_t>(blocks, 1)), y);
    }
    /// Threads for one-block-per-row kernels: a multiple of 32, at most 256.
    static dim3 row_threads(int64_t n) { return dim3(static_cast<unsigned>(std::min<int64_t>(256, (n + 31) / 32 * 32))); }

    template <class... Args>
    void launch(detail::cuda::kernel_id id, dim3 grid, dim3 block, Args... args) const {
        void* params[] = {static_cast<void*>(&args)...};
        ZEROCLIP_CU_CHECK(detail::cuda::driver().launch_kernel((*ctx_->kernels)[id], grid.x, grid.y, grid.z, block.x,
                                                               block.y, block.z, 0, ctx_->stream, params, nullptr));
        after_op(detail::cuda::kernel_symbol(id));
    }

    /// A grid-stride kernel over n elements (skipped when n == 0).
    template <class... Args>
    void elementwise(detail::cuda::kernel_id id, int64_t n, Args... args) const {
        if (n > 0) launch(id, grid_for(n), dim3(256), args...);
    }

    void after_op(const char* what) const {
        if (!ctx_->options.synchronous) return;
        const cudaError_t e = cudaStreamSynchronize(ctx_->stream);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            ZEROCLIP_THROW(errc::cuda, std::string("asynchronous failure in ") + what + ": " +
                                           detail::cuda::runtime_status(e));
        }
    }

    cublasComputeType_t compute_type() const {
        switch (ctx_->options.math) {
            case cuda_math::tf32: return CUBLAS_COMPUTE_32F_FAST_TF32;
            case cuda_math::fp16: return CUBLAS_COMPUTE_32F_FAST_16F;
            case cuda_math::bf16: return CUBLAS_COMPUTE_32F_FAST_16BF;
            case cuda_math::fp32: break;
        }
        return CUBLAS_COMPUTE_32F;
    }

    /// Column-major C (m×n) = alpha·op(A)·op(B) + beta·C, as cuBLAS defines it.
    void gemm(cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
              int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) const {
        if (m == 0 || n == 0) return;
        if (ctx_->options.math == cuda_math::fp32) {
            ZEROCLIP_CUBLAS_CHECK(cublasSgemm(ctx_->blas, ta, tb, int32(m), int32(n), int32(k), &alpha, a, int32(lda),
                                              b, int32(ldb), &beta, c, int32(ldc)));
        } else {
            ZEROCLIP_CUBLAS_CHECK(cublasGemmEx(ctx_->blas, ta, tb, int32(m), int32(n), int32(k), &alpha, a, CUDA_R_32F,
                                               int32(lda), b, CUDA_R_32F, int32(ldb), &beta, c, CUDA_R_32F, int32(ldc),
                                               compute_type(), CUBLAS_GEMM_DEFAULT));
        }
        after_op("cuBLAS GEMM");
    }

    void gemm_batched(cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n, int64_t k, float alpha,
                      const float* a, int64_t lda, int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b,
                      float beta, float* c, int64_t ldc, int64_t stride_c, int64_t count) const {
        if (m == 0 || n == 0 || count == 0) return;
        if (ctx_->options.math == cuda_math::fp32) {
            ZEROCLIP_CUBLAS_CHECK(cublasSgemmStridedBatched(ctx_->blas, ta, tb, int32(m), int32(n), int32(k), &alpha, a,
                                                            int32(lda), stride_a, b, int32(ldb), stride_b, &beta, c,
                                                            int32(ldc), stride_c, int32(count)));
        } else {
            ZEROCLIP_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
                ctx_->blas, ta, tb, int32(m), int32(n), int32(k), &alpha, a, CUDA_R_32F, int32(lda), stride_a, b,
                CUDA_R_32F, int32(ldb), stride_b, &beta, c, CUDA_R_32F, int32(ldc), stride_c, int32(count),
                compute_type(), CUBLAS_GEMM_DEFAULT));
        }
        after_op("cuBLAS strided-batched GEMM");
    }

    void softmax(const float* x, float* y, int64_t m, int64_t n, int64_t rows_per_matrix, bool causal) const {
        if (m == 0 || n == 0) return;
        const int64_t warps_per_block = 8;
        launch(detail::cuda::kernel_id::softmax, grid1((m + warps_per_block - 1) / warps_per_block),
               dim3(32 * warps_per_block), x, y, i64(m), int32(n), int32(rows_per_matrix), int32(causal ? 1 : 0));
    }

    void split_heads(const tensor& x, tensor& out, int64_t batch, int64_t t, int64_t heads, int64_t d) const {
        elementwise(detail::cuda::kernel_id::split_heads, out.numel(), x.data(), out.data(), i64(batch), i64(t),
                    int32(heads), int32(d), i64(x.shape().back()), i64(0));
    }

    /// q (B, H, Tq, d), k and v (B, H, Tk, d), contiguous → (B·Tq, H·d).
    tensor attention_core(const float* q, const float* k, const float* v, int64_t batch, int64_t tq, int64_t tk,
                          int64_t heads, int64_t d, bool causal) const {
        const int64_t bh = batch * heads;
        const float scale = 1.0f / std::sqrt(static_cast<float>(d));
        tensor scores = make({bh, tq, tk});
        // Row-major S (Tq×Tk) = q·kᵀ is column-major Sᵀ (Tk×Tq) = k·qᵀ: the stored k read
        // column-major is kᵀ (d×Tk, so op T), the stored q is qᵀ (d×Tq, op N).
        gemm_batched(CUBLAS_OP_T, CUBLAS_OP_N, tk, tq, d, scale, k, d, tk * d, q, d, tq * d, 0.0f, scores.data(), tk,
                     tq * tk, bh);
        softmax(scores.data(), scores.data(), bh * tq, tk, tq, causal);
        tensor heads_out = make({bh, tq, d});
        // Row-major O (Tq×d) = S·v is column-major Oᵀ (d×Tq) = vᵀ (d×Tk) · Sᵀ (Tk×Tq).
        gemm_batched(CUBLAS_OP_N, CUBLAS_OP_N, d, tq, tk, 1.0f, v, d, tk * d, scores.data(), tk, tq * tk, 0.0f,
                     heads_out.data(), d, tq * d, bh);
        tensor out = make({batch * tq, heads * d});
        elementwise(detail::cuda::kernel_id::merge_heads, out.numel(), heads_out.data(), out.data(), i64(batch), i64(tq),
                    int32(heads), int32(d));
        return out;
    }

    std::shared_ptr<detail::cuda::context> ctx_;
};

static_assert(is_backend_v<cuda_cublas>, "cuda_cublas must implement the backend contract");
static_assert(has_linear_activate_v<cuda_cublas> && has_linear_add_v<cuda_cublas> && has_conv2d_relu_v<cuda_cublas> &&
                  has_conv2d_add_relu_v<cuda_cublas>,
              "cuda_cublas's fused ops must match backend.hpp's signatures (or nn/ silently skips them)");

}  // namespace zeroclip
