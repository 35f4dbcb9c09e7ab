//! nn::linear — y = x·Wᵀ + b, with PyTorch's nn.Linear layout (weight: (out, in)).
#pragma once

#include "../io/weights.hpp"

namespace zeroclip::nn {

template <class Backend>
struct linear {
    using tensor = typename Backend::tensor;
    tensor weight;  // (out, in)
    tensor bias;    // (out), or empty when the layer has none

    static linear load(const weight_source& ws, const Backend& be, int64_t out, int64_t in) {
        return {be.upload(ws.get("weight", {out, in})), be.upload(ws.get("bias", {out}))};
    }
    tensor forward(const Backend& be, const tensor& x) const { return be.linear(x, weight, bias); }
};

}  // namespace zeroclip::nn
