//! nn::linear — y = x·Wᵀ + b, with PyTorch's nn.Linear layout (weight: (out, in)).
#pragma once

#include "../backend/backend.hpp"
#include "../io/weights.hpp"

namespace zeroclip::nn {

template <class Backend>
struct linear {
    using tensor = typename Backend::tensor;
    tensor weight;  // (out, in)
    tensor bias;    // (out), or empty when the layer has none

    /// The weight is prepared once here where the backend can (its packed, maybe int8, form).
    static linear load(const weight_source& ws, const Backend& be, int64_t out, int64_t in) {
        linear l{be.upload(ws.get("weight", {out, in})), be.upload(ws.get("bias", {out}))};
        if constexpr (has_prepare_linear_v<Backend>) l.weight = be.prepare_linear(l.weight);
        return l;
    }
    tensor forward(const Backend& be, const tensor& x) const { return be.linear(x, weight, bias); }

    /// act(forward(x)), in one step where the backend has linear_activate.
    tensor forward_activate(const Backend& be, const tensor& x, activation act) const {
        if constexpr (has_linear_activate_v<Backend>) {
            return be.linear_activate(x, weight, bias, act);
        } else {
            tensor y = forward(be, x);
            be.activate_(y, act);
            return y;
        }
    }

    /// In place: y += forward(x) (a residual connection), in one step where the backend has linear_add_.
    void forward_add_(const Backend& be, tensor& y, const tensor& x) const {
        if constexpr (has_linear_add_v<Backend>) be.linear_add_(y, x, weight, bias);
        else be.add_(y, forward(be, x));
    }
};

}  // namespace zeroclip::nn
