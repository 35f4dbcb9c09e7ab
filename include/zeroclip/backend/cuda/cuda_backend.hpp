//! cuda_cublas: the GPU backend. Tensors live in device memory (stream-ordered pool, shared
//! ownership); every matrix product is a cuBLAS GEMM (attention as strided-batched GEMMs over
//! batch × heads); the other ops are small kernels compiled at run time with NVRTC
//! (kernels.hpp), so this stays a header compiled by the host compiler: no nvcc, no .cu.
//! Same contract and semantics as cpu_backend (backend.hpp); FP32 by default, TF32/FP16/BF16
//! tensor-core GEMMs on request (cuda_options::math). Included only when ZEROCLIP_WITH_CUDA.
#pragma once

#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "../../tensor.hpp"
#include "../activation.hpp"
#include "../backend.hpp"
#include "check.hpp"
#include "context.hpp"
#include "cuda_tensor.hpp"
#include "kernels.hpp"
#include "options.hpp"

namespace zeroclip {

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
    static int device_count() noexcept { return detail::cuda::visible_devices(nullptr); }
    /// Why device_count() is 0 ("" when a device is visible): for skip messages.
    static std::string unavailable_reason() {
        std::string why;
        return detail::cuda::visible_devices(&why) ? std::string() : why;
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
    // Activation codes of the kernels (ACT_* in kernels.hpp).
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

ZEROCLIP_CHECK_BACKEND(cuda_cublas);
ZEROCLIP_CHECK_OPTIONAL_OP(cuda_cublas, linear_activate);
ZEROCLIP_CHECK_OPTIONAL_OP(cuda_cublas, linear_add_);
ZEROCLIP_CHECK_OPTIONAL_OP(cuda_cublas, conv2d_relu);
ZEROCLIP_CHECK_OPTIONAL_OP(cuda_cublas, conv2d_add_relu);

}  // namespace zeroclip
