//! cpu_backend (also spelled cpu_eigen, its first name): the portable CPU backend. Tensors are
//! zeroclip::tensor, so upload/download are free and weights are used where they were loaded
//! (memory-mapped F32 in place).
//!
//! Matrix products (linear, matmul, conv2d, the two products of attention) run on
//! gemm.hpp: an AVX2+FMA packed-panel kernel when the compiler targets it
//! (-march=native on x86-64), Eigen's GEMM otherwise; bias and activation are applied to each
//! block of the output while it is still in cache. In float32, 3×3 stride-1 convolutions with ≥ 32
//! input channels run by Winograd's F(2×2, 3×3) (winograd.hpp: 2.25× fewer products; the
//! transformed weights are made once, at load, by prepare_conv2d). In int8 and bf16 precision the
//! linear layers (prepared_linear.hpp) and all the convolutions (lowp_conv.hpp: each output
//! pixel's receptive field as a row of a linear) run on the reduced-precision kernels, their
//! weights kept in that precision only. Row-wise ops use
//! vec.hpp (vector exp, layer norm in double). Work is shared by zeroclip's own pool of persistent
//! threads that take tasks from a counter (parallel.hpp; OpenMP, when the build has it, only sets
//! the team size): a thread the OS preempts on a busy machine slows a step down by its share, not
//! by the whole step; small ops stay on the calling thread. Scratch buffers are
//! per thread and reused, so a forward pass allocates only its output tensors.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "alloc.hpp"
#include "compact_table.hpp"
#include "gemm.hpp"
#include "lowp_conv.hpp"
#include "parallel.hpp"
#include "prepared_linear.hpp"
#include "reserved_range.hpp"
#include "vec.hpp"
#include "weight_cache.hpp"
#include "winograd.hpp"
#include "../../tensor.hpp"
#include "../activation.hpp"
#include "../backend.hpp"
#include "../precision.hpp"

namespace zeroclip {

/// Options of the CPU backend. `precision`: of the products of the linear layers and of the
/// convolutions (weights stored in it at load; int8 and bf16 kernels chosen at run time from what
/// the CPU has, cpu_features.hpp).
struct cpu_options {
    zeroclip::precision precision = zeroclip::precision::fp32;
    /// fp32 only: pack the linear weights into the GEMM's panels at load, in place of their
    /// float32 copy (faster batch-1 calls), rather than on every call. The loader makes one
    /// weight at a time (io/weights.hpp), so the packed and unpacked copies of a model never
    /// coexist; false keeps the weights as loaded (memory-mapped in place for an F32 file).
    bool pack_fp32_at_load = true;
    /// Images a ResNet runs through its convolutions at a time (backend.hpp, image_group_size;
    /// models/resnet.hpp; 0: the whole batch): its maps are then a group's, not a batch's (51 MiB
    /// a layer1 map at 16 images). The results are the same; 2 was as fast as 4 and 16 (RN50,
    /// batch 16, int8 and fp32) and held the least memory but for 1, which was slower in fp32.
    int64_t image_group = 2;
};

/// E.g. `zeroclip::load_model(path, cpu_backend(cpu_options{precision::int8}))` for an int8 model.
class cpu_backend {
public:
    using tensor = zeroclip::tensor;
    static constexpr const char* name = "cpu";

    cpu_backend() = default;
    explicit cpu_backend(cpu_options options) : options_(options) {}
    const cpu_options& options() const { return options_; }
    /// options().image_group: the property image_group_size reads (backend.hpp).
    int64_t image_group() const { return options_.image_group; }

    using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    using map = Eigen::Map<matrix>;
    using const_map = Eigen::Map<const matrix>;
    using strided_map = Eigen::Map<const matrix, 0, Eigen::OuterStride<>>;

    // ---- memory -------------------------------------------------------------------------
    tensor upload(const zeroclip::tensor& host) const { return host; }
    zeroclip::tensor download(const tensor& t) const { return t; }

    // ---- matrix products ----------------------------------------------------------------
    /// y = x · wᵀ + b: x (M, K), w (N, K) as PyTorch stores nn.Linear, b (N) or empty.
    tensor linear(const tensor& x, const tensor& w, const tensor& b) const {
        ZEROCLIP_ASSERT(w.dim(1) == x.shape().back());
        tensor y = make({rows(x), w.dim(0)});
        detail::cpu::epilogue ep;
        ep.bias = b.empty() ? nullptr : b.data();
        product_nt(x, w, y, ep);
        return y;
    }

    /// w (N, K), a linear's weight, laid out once for linear() in this backend's precision, in
    /// place of w (prepared_linear.hpp): the result replaces w and is opaque to all other ops.
    tensor prepare_linear(const tensor& w) const {
        ZEROCLIP_ASSERT(w.ndim() == 2);
        const bool pack = options_.precision != precision::fp32 || options_.pack_fp32_at_load;
        if (!pack || !detail::cpu::can_prepare(options_.precision) || detail::cpu::find_prepared(w).weight) return w;
        return detail::cpu::prepare_linear_weight(w, options_.precision);
    }

    /// An embedding table (rows, width) for gather_rows, in 16 bits a value where that gives the
    /// same floats (a checkpoint stored in F16 or BF16), or in int8/bf16 precision rounded to bf16
    /// (compact_table.hpp): the result replaces the table and is opaque to all other ops.
    tensor prepare_embedding(const tensor& table) const {
        return detail::cpu::compact_table_weight(table, options_.precision != precision::fp32);
    }

    /// y = x · w: x (M, K), w (K, N) (the layout of CLIP's `proj` and `text_projection`).
    tensor matmul(const tensor& x, const tensor& w) const {
        const int64_t m = rows(x), k = x.shape().back(), n = w.dim(1);
        ZEROCLIP_ASSERT(w.dim(0) == k);
        tensor y = make({m, n});
        detail::cpu::gemm_nn(m, n, k, x.data(), k, w.data(), n, y.data(), n);
        return y;
    }

    // ---- fused steps (optional ops, backend.hpp: nn/ uses them where a backend has them) ----
    /// act(x · wᵀ + b): the MLP's c_fc and its activation in one pass over the output.
    tensor linear_activate(const tensor& x, const tensor& w, const tensor& b, activation act) const {
        ZEROCLIP_ASSERT(w.dim(1) == x.shape().back());
        tensor y = make({rows(x), w.dim(0)});
        detail::cpu::epilogue ep;
        ep.bias = b.empty() ? nullptr : b.data();
        ep.activation = act == activation::quick_gelu ? detail::cpu::act::quick_gelu : detail::cpu::act::gelu;
        product_nt(x, w, y, ep);
        return y;
    }

    /// In place: y += x · wᵀ + b (a residual connection around a linear: out_proj, c_proj).
    void linear_add_(tensor& y, const tensor& x, const tensor& w, const tensor& b) const {
        ZEROCLIP_ASSERT(w.dim(1) == x.shape().back() && y.numel() == rows(x) * w.dim(0));
        detail::cpu::epilogue ep;
        ep.bias = b.empty() ? nullptr : b.data();
        ep.accumulate = true;
        product_nt(x, w, y, ep);
    }

    /// w (O, C, kh, kw), a convolution's weight, laid out once for conv2d with this stride and pad,
    /// in place of w: a tensor of w's shape standing for the form the products read (the Winograd
    /// transform of a 3×3 stride-1 weight, the packed operand of the others, the int8 or bf16 form
    /// in those precisions), no float32 copy kept. Opaque to all other ops; w itself where this
    /// build has no such form (fp32 without AVX2).
    tensor prepare_conv2d(const tensor& w, int64_t stride, int64_t pad) const {
        ZEROCLIP_ASSERT(w.ndim() == 4);
        if (detail::cpu::form_of<conv_weight>(w)) return w;
        conv_weight form = prepared_conv_weight(w, stride, pad);
        if (form.empty()) return w;
        return detail::cpu::form_tensor(w.shape(), std::move(form));
    }

    /// relu(conv2d(x, w, b, stride, pad)).
    tensor conv2d_relu(const tensor& x, const tensor& w, const tensor& b, int64_t stride, int64_t pad) const {
        return conv(x, w, b, stride, pad, nullptr, detail::cpu::act::relu);
    }

    /// relu(conv2d(x, w, b, stride, pad) + residual), residual shaped like the output (the end of
    /// a ResNet bottleneck).
    tensor conv2d_add_relu(const tensor& x, const tensor& w, const tensor& b, int64_t stride, int64_t pad,
                           const tensor& residual) const {
        return conv(x, w, b, stride, pad, &residual, detail::cpu::act::relu);
    }

    // ---- row-wise ops ---------------------------------------------------------------------
    /// Layer norm over the last dimension with weight and bias (both (width)): mean and variance
    /// in double, the normalisation in float.
    tensor layer_norm(const tensor& x, const tensor& weight, const tensor& bias, double eps) const {
        const int64_t m = rows(x), n = x.shape().back();
        tensor y = make(x.shape());
        const float *in = x.data(), *w = weight.data(), *b = bias.data();
        float* out = y.data();
        detail::cpu::parallel_for(m, row_grain(n), [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r) detail::cpu::layer_norm_row(in + r * n, out + r * n, n, w, b, eps);
        });
        return y;
    }

    /// In place: QuickGELU x·σ(1.702x) (what OpenAI trained with) or the exact erf GELU.
    void activate_(tensor& x, activation act) const {
        float* p = x.data();
        const auto a = act == activation::quick_gelu ? detail::cpu::act::quick_gelu : detail::cpu::act::gelu;
        detail::cpu::parallel_for(x.numel(), elementwise_grain, [&](int64_t i0, int64_t i1) {
            detail::cpu::activate(p + i0, i1 - i0, a);
        });
    }

    /// In place: x += y (same shape).
    void add_(tensor& x, const tensor& y) const {
        ZEROCLIP_ASSERT(x.numel() == y.numel());
        float* px = x.data();
        const float* py = y.data();
        detail::cpu::parallel_for(x.numel(), elementwise_grain, [&](int64_t i0, int64_t i1) {
            detail::cpu::add(px + i0, py + i0, i1 - i0);
        });
    }

    /// In place: every group of rows.numel() values of x gets `rows` added (positional embedding
    /// over a batch: x (B·T, W), rows (T, W)).
    void add_broadcast_(tensor& x, const tensor& rows_to_add) const {
        const int64_t block = rows_to_add.numel();
        ZEROCLIP_ASSERT(x.numel() % block == 0);
        for (int64_t o = 0; o < x.numel(); o += block) detail::cpu::add(x.data() + o, rows_to_add.data(), block);
    }

    /// In place: x *= s.
    void scale_(tensor& x, float s) const { Eigen::Map<Eigen::ArrayXf>(x.data(), x.numel()) *= s; }

    /// Rows of x (M, W) L2-normalised.
    tensor l2_normalize_rows(const tensor& x) const {
        const int64_t m = rows(x), n = x.shape().back();
        tensor y = make({m, n});
        map(y.data(), m, n) = as_matrix(x, m, n).rowwise().normalized();
        return y;
    }

    /// Softmax of each row of x (M, N).
    tensor softmax_rows(const tensor& x) const {
        const int64_t m = rows(x), n = x.shape().back();
        tensor y = x.clone().reshaped({m, n});
        for (int64_t r = 0; r < m; ++r) detail::cpu::softmax_row(y.data() + r * n, n, n);
        return y;
    }

    // ---- gathers and reshapes -------------------------------------------------------------
    /// Rows `index` of table (V, W) → (index.size(), W): token embedding lookup, CLS / EOT pick.
    tensor gather_rows(const tensor& table, const std::vector<int64_t>& index) const {
        const int64_t w = table.shape().back();
        tensor y = make({static_cast<int64_t>(index.size()), w});
        if (const auto* compact = detail::cpu::compact_table::containing(table.data());
            compact && compact->base() == table.data() && compact->cols() == w) {
            compact->gather(index, y.data());
            return y;
        }
        for (size_t i = 0; i < index.size(); ++i)
            std::copy_n(table.data() + index[i] * w, w, y.data() + static_cast<int64_t>(i) * w);
        return y;
    }

    /// Rows [begin, begin + count) of x (R, W), as a view (no copy).
    tensor slice_rows(const tensor& x, int64_t begin, int64_t count) const {
        return x.slice_rows(begin, count);
    }

    /// Non-overlapping p×p patches of images (N, C, H, W) → (N·(H/p)·(W/p), C·p·p), each row
    /// ordered (c, ky, kx) like a flattened Conv2d weight, so the patch embedding is a linear.
    tensor patchify(const tensor& images, int64_t p) const {
        if (images.ndim() != 4 || p <= 0 || images.dim(2) % p || images.dim(3) % p)
            ZEROCLIP_THROW(errc::shape, "patchify: images of shape " + shape_to_string(images.shape()) +
                                            " are not [N,C,H,W] with H and W multiples of the patch size " +
                                            std::to_string(p));
        const int64_t n = images.dim(0), c = images.dim(1), h = images.dim(2), w = images.dim(3);
        const int64_t gh = h / p, gw = w / p;
        tensor y = make({n * gh * gw, c * p * p});
        const float* src = images.data();
        float* dst = y.data();
        detail::cpu::parallel_for(n * gh, 1, [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r) {
                const int64_t img = r / gh, gy = r % gh;
                for (int64_t gx = 0; gx < gw; ++gx) {
                    float* out = dst + ((img * gh + gy) * gw + gx) * c * p * p;
                    for (int64_t ch = 0; ch < c; ++ch)
                        for (int64_t ky = 0; ky < p; ++ky)
                            std::copy_n(src + ((img * c + ch) * h + gy * p + ky) * w + gx * p, p,
                                        out + (ch * p + ky) * p);
                }
            }
        });
        return y;
    }

    /// x (B·T, W) → (B·(T+1), W) with `first` (W) before each sample's T rows (the class token).
    tensor prepend_row(const tensor& x, const tensor& first, int64_t batch) const {
        const int64_t w = x.shape().back(), t = rows(x) / batch;
        tensor y = make({batch * (t + 1), w});
        for (int64_t b = 0; b < batch; ++b) {
            float* out = y.data() + b * (t + 1) * w;
            std::copy_n(first.data(), w, out);
            std::copy_n(x.data() + b * t * w, t * w, out + w);
        }
        return y;
    }

    // ---- attention --------------------------------------------------------------------------
    /// Multi-head self-attention core on packed projections qkv (B·T, 3W) → (B·T, W):
    /// softmax(q kᵀ / √d [+ causal mask]) v per sample and head.
    tensor self_attention(const tensor& qkv, int64_t batch, int64_t heads, bool causal) const {
        const int64_t w = qkv.shape().back() / 3, t = rows(qkv) / batch;
        const float* base = qkv.data();
        return attention_core(base, base + w, base + 2 * w, 3 * w, 3 * w, batch, t, t, w, heads, causal);
    }

    /// Attention of separate q (B·Tq, W) over k, v (B·Tk, W) → (B·Tq, W); no mask.
    tensor attention(const tensor& q, const tensor& k, const tensor& v, int64_t batch, int64_t heads) const {
        const int64_t w = q.shape().back();
        return attention_core(q.data(), k.data(), v.data(), w, w, batch, rows(q) / batch, rows(k) / batch, w,
                              heads, false);
    }

    // ---- convolutional ops (ModifiedResNet), images NCHW ---------------------------------------
    /// 2-d convolution with zero padding: x (N, C, H, W), w (O, C, kh, kw) as PyTorch stores
    /// nn.Conv2d, b (O) or empty → (N, O, Ho, Wo), Ho = (H + 2·pad − kh) / stride + 1.
    /// In fp32 a 1×1 stride-1 convolution is a product with the images themselves; any other a
    /// product with their im2col matrices, packed straight from the images (no column buffer).
    /// Either way the whole batch is one parallel step with the weights packed once. In int8 and
    /// bf16, every convolution is lowp_conv's (lowp_conv.hpp).
    tensor conv2d(const tensor& x, const tensor& w, const tensor& b, int64_t stride, int64_t pad) const {
        return conv(x, w, b, stride, pad, nullptr, detail::cpu::act::none);
    }

    /// In place: x = max(x, 0) (NaN stays NaN, as torch.relu).
    void relu_(tensor& x) const {
        float* p = x.data();
        detail::cpu::parallel_for(x.numel(), elementwise_grain, [&](int64_t i0, int64_t i1) {
            detail::cpu::activate(p + i0, i1 - i0, detail::cpu::act::relu);
        });
    }

    /// nn.AvgPool2d(k): mean of non-overlapping k×k windows (kernel = stride = k, no padding,
    /// trailing rows/columns that do not fill a window dropped): (N, C, H, W) → (N, C, H/k, W/k).
    tensor avg_pool2d(const tensor& x, int64_t k) const {
        const int64_t planes = x.dim(0) * x.dim(1), h = x.dim(2), w = x.dim(3), ho = h / k, wo = w / k;
        tensor y = make({x.dim(0), x.dim(1), ho, wo});
        const float inv = 1.0f / static_cast<float>(k * k);
        const float* src = x.data();
        float* dst = y.data();
        detail::cpu::parallel_for(planes, std::max<int64_t>(1, elementwise_grain / (h * w)), [&](int64_t p0, int64_t p1) {
            for (int64_t pl = p0; pl < p1; ++pl) {
                const float* in = src + pl * h * w;
                float* out = dst + pl * ho * wo;
                if (k == 2) {  // the ResNet's case: sum of two rows, then of neighbouring pairs
                    for (int64_t oy = 0; oy < ho; ++oy)
                        detail::cpu::pool2_row(in + 2 * oy * w, in + (2 * oy + 1) * w, out + oy * wo, wo, inv);
                    continue;
                }
                for (int64_t oy = 0; oy < ho; ++oy)
                    for (int64_t ox = 0; ox < wo; ++ox) {
                        float sum = 0;
                        for (int64_t ky = 0; ky < k; ++ky)
                            for (int64_t kx = 0; kx < k; ++kx) sum += in[(oy * k + ky) * w + ox * k + kx];
                        out[oy * wo + ox] = sum * inv;
                    }
            }
        });
        return y;
    }

    /// Feature maps x (N, C, H, W) → tokens (N·(1+H·W), C): per image its spatial mean, then the
    /// channel vector of every position in (y, x) order (the token layout of AttentionPool2d).
    tensor spatial_tokens(const tensor& x) const {
        const int64_t n = x.dim(0), c = x.dim(1), hw = x.dim(2) * x.dim(3), t = 1 + hw;
        tensor y = make({n * t, c});
        const float* src = x.data();
        float* dst = y.data();
        detail::cpu::parallel_for(n, 1, [&](int64_t i0, int64_t i1) {
            for (int64_t img = i0; img < i1; ++img) {
                const float* in = src + img * c * hw;
                float* out = dst + img * t * c;
                for (int64_t ch = 0; ch < c; ++ch) {
                    double sum = 0;  // a double sum: the mean of up to 49·4 values without order effects
                    for (int64_t i = 0; i < hw; ++i) sum += in[ch * hw + i];
                    out[ch] = static_cast<float>(sum / static_cast<double>(hw));
                }
                map(out + c, hw, c) = as_matrix_at(in, c, hw).transpose();
            }
        });
        return y;
    }

private:
    cpu_options options_;

    /// y (M, N) = ep(x · wᵀ) for x (M, K), w (N, K) as loaded or prepared (prepare_linear).
    static void product_nt(const tensor& x, const tensor& w, tensor& y, const detail::cpu::epilogue& ep) {
        const int64_t m = rows(x), k = x.shape().back(), n = w.dim(0);
        if (const auto p = detail::cpu::find_prepared(w); p.weight)
            return p.weight->apply(x.data(), k, m, p.row0, n, y.data(), ep);
        detail::cpu::gemm_nt(m, n, k, x.data(), k, w.data(), k, y.data(), n, ep);
    }

    /// Below this many elements an element-wise op stays on the calling thread (waking a second
    /// thread costs more than the work).
    static constexpr int64_t elementwise_grain = 1 << 15;
    static int64_t row_grain(int64_t width) { return std::max<int64_t>(1, elementwise_grain / std::max<int64_t>(width, 1)); }

    static int64_t rows(const tensor& x) { return x.numel() / x.shape().back(); }

    /// An op's output: uninitialised (every op writes all of it), large buffers recycled.
    static tensor make(shape_t shape) {
        std::shared_ptr<float> storage = detail::cpu::output_floats(static_cast<size_t>(shape_numel(shape)));
        float* p = storage.get();
        return tensor::view(std::move(shape), std::move(storage), p);
    }

    static const_map as_matrix(const tensor& x, int64_t r, int64_t c) { return const_map(x.data(), r, c); }
    static const_map as_matrix_at(const float* p, int64_t r, int64_t c) { return const_map(p, r, c); }

    /// conv2d with the epilogue act(conv + bias [+ residual]).
    tensor conv(const tensor& x, const tensor& w, const tensor& b, int64_t stride, int64_t pad,
                const tensor* residual, detail::cpu::act act) const {
        const int64_t n = x.dim(0), c = x.dim(1), h = x.dim(2), wd = x.dim(3);
        const int64_t o = w.dim(0), kh = w.dim(2), kw = w.dim(3);
        ZEROCLIP_ASSERT(w.dim(1) == c && stride >= 1 && pad >= 0);
        const int64_t ho = (h + 2 * pad - kh) / stride + 1, wo = (wd + 2 * pad - kw) / stride + 1;
        ZEROCLIP_ASSERT(ho > 0 && wo > 0);
        const int64_t plane = ho * wo;
        tensor y = make({n, o, ho, wo});
        ZEROCLIP_ASSERT(!residual || residual->numel() == y.numel());
        detail::cpu::epilogue ep;
        ep.bias = b.empty() ? nullptr : b.data();
        ep.residual = residual ? residual->data() : nullptr;
        ep.activation = act;
        const std::shared_ptr<const conv_weight> form = conv_form(w, stride, pad);
        const conv_weight& prepared = *form;
        if (prepared.lowp) {
            detail::cpu::lowp_conv(detail::cpu::lowp_conv_path(options_.precision), *prepared.lowp, x.data(), n, h, wd,
                                   stride, pad, ep.bias, ep.residual, act, y.data());
            return y;
        }
#ifdef ZEROCLIP_CPU_AVX2
        if (prepared.winograd) {
            detail::cpu::conv2d_winograd(x.data(), n, h, wd, *prepared.winograd, y.data(), ep);
            return y;
        }
#endif
        if (kh == 1 && kw == 1 && stride == 1 && pad == 0) {
            detail::cpu::gemm_nn(o, plane, c, w.data(), c, x.data(), plane, y.data(), plane, ep, n, c * plane,
                                 o * plane, 0, prepared.packed.get());
        } else {
            detail::cpu::conv2d_nchw(x.data(), n, c, h, wd, w.data(), o, kh, kw, stride, pad, y.data(), ep,
                                     prepared.packed.get());
        }
        return y;
    }

    /// A convolution weight as conv() reads it: each form made for it, for one stride and pad.
    /// conv() dispatches on which form is there.
    struct conv_weight {
        std::shared_ptr<const detail::cpu::lowp_conv_weight> lowp;  // int8 / bf16: every convolution
#ifdef ZEROCLIP_CPU_AVX2
        std::shared_ptr<const detail::cpu::winograd_weights> winograd;
#endif
        std::shared_ptr<const detail::cpu::prepacked_a> packed;
        int64_t stride = 1, pad = 0;

        bool empty() const {
#ifdef ZEROCLIP_CPU_AVX2
            if (winograd) return false;
#endif
            return !lowp && !packed;
        }
    };
    conv_weight prepared_conv_weight(const tensor& w, int64_t stride, int64_t pad) const {
        const int64_t o = w.dim(0), c = w.dim(1), kh = w.dim(2), kw = w.dim(3);
        conv_weight cw;
        cw.stride = stride, cw.pad = pad;
        const precision prec = options_.precision;
        if (prec != precision::fp32) {  // every convolution, whatever its kernel size, stride and pad
            cw.lowp = std::make_shared<const detail::cpu::lowp_conv_weight>(w.data(), o, c, kh, kw, prec);
            return cw;
        }
#ifdef ZEROCLIP_CPU_AVX2
        if (detail::cpu::winograd_applies(c, kh, kw, stride, pad)) {
            cw.winograd =
                std::make_shared<const detail::cpu::winograd_weights>(detail::cpu::winograd_prepare(w.data(), o, c));
            return cw;
        }
        cw.packed = std::make_shared<const detail::cpu::prepacked_a>(detail::cpu::prepack_a(w.data(), o, c * kh * kw));
#else
        (void)w, (void)stride, (void)pad, (void)o, (void)c, (void)kh, (void)kw;
#endif
        return cw;
    }

    /// The form conv() reads w in: the one w stands for if prepare_conv2d made it (for the same
    /// stride and pad: its float values are gone), else one made at w's first use and kept while
    /// w's memory lives (weight_cache.hpp: tests and callers may pass a weight as loaded).
    std::shared_ptr<const conv_weight> conv_form(const tensor& w, int64_t stride, int64_t pad) const {
        if (const conv_weight* form = detail::cpu::form_of<conv_weight>(w)) {
            if (form->stride != stride || form->pad != pad)
                ZEROCLIP_THROW(errc::invalid_argument,
                               "conv2d: a weight prepared for stride " + std::to_string(form->stride) + ", pad " +
                                   std::to_string(form->pad) + " was used with stride " + std::to_string(stride) +
                                   ", pad " + std::to_string(pad));
            return std::shared_ptr<const conv_weight>(w.owner(), form);  // kept alive by w
        }
        // One entry per precision, stride and pad: backends of different precisions may share a weight.
        const int64_t variant = (static_cast<int64_t>(options_.precision) << 40) | (stride << 20) | pad;
        return detail::cpu::prepared_weight<conv_weight>(w.data(), w.owner(), w.dim(0), w.numel() / w.dim(0), variant,
                                                         [&] { return prepared_conv_weight(w, stride, pad); });
    }

    /// Per (sample, head), on one thread each: scores = q·kᵀ (a product on the strided rows of q
    /// and k, no copies), softmax of scores/√d with the causal mask, out = scores·v written into
    /// the head's columns of the output.
    tensor attention_core(const float* q, const float* k, const float* v, int64_t q_stride, int64_t kv_stride,
                          int64_t batch, int64_t tq, int64_t tk, int64_t w, int64_t heads, bool causal) const {
        const int64_t d = w / heads;
        const float scale = 1.0f / std::sqrt(static_cast<float>(d));
        tensor out = make({batch * tq, w});
        float* o = out.data();
        detail::cpu::parallel_tasks(batch * heads, [&](int64_t task) {
            const int64_t b = task / heads, h = task % heads;
            float* scores = detail::cpu::scratch(static_cast<size_t>(tq * tk), 3);
            const float* qb = q + b * tq * q_stride + h * d;
            const float* kb = k + b * tk * kv_stride + h * d;
            const float* vb = v + b * tk * kv_stride + h * d;
            // Causal: a block of query rows [r0, r1) sees keys [0, r1) only, so its products stop
            // there (about half the work at T = 77); masked scores inside the block are zeroed.
            const int64_t block = causal ? 32 : tq;
            for (int64_t r0 = 0; r0 < tq; r0 += block) {
                const int64_t r1 = std::min(tq, r0 + block), keys = causal ? std::min(tk, r1) : tk;
                float* s = scores + r0 * keys;
                detail::cpu::gemm_nt(r1 - r0, keys, d, qb + r0 * q_stride, q_stride, kb, kv_stride, s, keys, {}, 1);
                for (int64_t i = r0; i < r1; ++i)
                    detail::cpu::softmax_row(s + (i - r0) * keys, causal ? std::min(i + 1, keys) : keys, keys, scale);
                detail::cpu::gemm_nn(r1 - r0, d, keys, s, keys, vb, kv_stride, o + (b * tq + r0) * w + h * d, w, {}, 1,
                                     0, 0, 1);
            }
        });
        return out;
    }
};

ZEROCLIP_CHECK_BACKEND(cpu_backend);
ZEROCLIP_CHECK_OPTIONAL_OP(cpu_backend, linear_activate);
ZEROCLIP_CHECK_OPTIONAL_OP(cpu_backend, linear_add_);
ZEROCLIP_CHECK_OPTIONAL_OP(cpu_backend, conv2d_relu);
ZEROCLIP_CHECK_OPTIONAL_OP(cpu_backend, prepare_conv2d);
ZEROCLIP_CHECK_OPTIONAL_OP(cpu_backend, prepare_linear);
ZEROCLIP_CHECK_OPTIONAL_OP(cpu_backend, prepare_embedding);

/// The CPU backend's first name, kept so code written against 0.1 still compiles.
using cpu_eigen = cpu_backend;

}  // namespace zeroclip
