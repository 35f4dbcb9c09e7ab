//! nn::layer_norm — LayerNorm over the last dimension (OpenAI's LayerNorm subclass only casts to
//! float32, which is what we compute in anyway).
#pragma once

#include "../io/weights.hpp"

namespace zeroclip::nn {

template <class Backend>
struct layer_norm {
    using tensor = typename Backend::tensor;
    tensor weight;  // (width)
    tensor bias;    // (width)
    double eps = 1e-5;

    static layer_norm load(const weight_source& ws, const Backend& be, int64_t width, double eps) {
        return {be.upload(ws.get("weight", {width})), be.upload(ws.get("bias", {width})), eps};
    }
    tensor forward(const Backend& be, const tensor& x) const { return be.layer_norm(x, weight, bias, eps); }
};

}  // namespace zeroclip::nn
