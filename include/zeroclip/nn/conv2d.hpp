//! nn::conv2d — a bias-free nn.Conv2d followed by an eval-mode nn.BatchNorm2d, as every
//! convolution of CLIP's ModifiedResNet is. Batch norm is then an affine map per output channel,
//! so it is folded into the convolution's weight and a bias once, at load.
#pragma once

#include <cmath>

#include "../backend/backend.hpp"
#include "../io/weights.hpp"

namespace zeroclip::nn {

/// nn.BatchNorm2d's default eps; OpenAI's checkpoints use it (it is not stored in them).
inline constexpr double batch_norm_eps = 1e-5;

template <class Backend>
struct conv2d {
    using tensor = typename Backend::tensor;
    tensor weight;  // (out, in, kernel, kernel): the convolution scaled by the batch norm, or the
                    // backend's prepared form of it (prepare_conv2d), which replaces it
    tensor bias;    // (out): the batch norm's shift
    int64_t stride = 1;
    int64_t pad = 0;

    /// The convolution `weight` under `conv` and the batch norm (weight, bias, running_mean,
    /// running_var) under `bn`: y = (conv(x) − mean) / √(var + eps) · γ + β, computed as one
    /// convolution with w' = w · s and b' = β − mean · s, s = γ / √(var + eps) per channel.
    static conv2d load_with_batch_norm(const weight_source& conv, const weight_source& bn, const Backend& be,
                                       int64_t out, int64_t in, int64_t kernel, int64_t stride, int64_t pad) {
        const zeroclip::tensor w = conv.get("weight", {out, in, kernel, kernel});
        const zeroclip::tensor gamma = bn.get("weight", {out}), beta = bn.get("bias", {out});
        const zeroclip::tensor mean = bn.get("running_mean", {out}), var = bn.get("running_var", {out});
        zeroclip::tensor folded(w.shape()), shift({out});  // new storage: `w` may be a read-only file view
        const int64_t per_channel = in * kernel * kernel;
        for (int64_t o = 0; o < out; ++o) {
            // In double so the folded float32 weights are the exact products, rounded once.
            const double s = gamma[o] / std::sqrt(static_cast<double>(var[o]) + batch_norm_eps);
            for (int64_t i = o * per_channel; i < (o + 1) * per_channel; ++i)
                folded[i] = static_cast<float>(w[i] * s);
            shift[o] = static_cast<float>(beta[o] - mean[o] * s);
        }
        conv2d layer{be.upload(folded), be.upload(shift), stride, pad};
        // Replaced, not kept beside: the folded float32 copy is freed when `folded` goes.
        if constexpr (has_prepare_conv2d_v<Backend>) layer.weight = be.prepare_conv2d(layer.weight, stride, pad);
        return layer;
    }

    /// x (N, in, H, W) → (N, out, H', W').
    tensor forward(const Backend& be, const tensor& x) const { return be.conv2d(x, weight, bias, stride, pad); }

    /// relu(forward(x)), in one step where the backend has conv2d_relu.
    tensor forward_relu(const Backend& be, const tensor& x) const {
        if constexpr (has_conv2d_relu_v<Backend>) {
            return be.conv2d_relu(x, weight, bias, stride, pad);
        } else {
            tensor y = forward(be, x);
            be.relu_(y);
            return y;
        }
    }

    /// relu(forward(x) + residual), in one step where the backend has conv2d_add_relu.
    tensor forward_add_relu(const Backend& be, const tensor& x, const tensor& residual) const {
        if constexpr (has_conv2d_add_relu_v<Backend>) {
            return be.conv2d_add_relu(x, weight, bias, stride, pad, residual);
        } else {
            tensor y = forward(be, x);
            be.add_(y, residual);
            be.relu_(y);
            return y;
        }
    }
};

}  // namespace zeroclip::nn
