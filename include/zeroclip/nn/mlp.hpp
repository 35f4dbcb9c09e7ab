//! nn::mlp — the transformer feed-forward: c_fc → QuickGELU (or GELU) → c_proj.
#pragma once

#include "linear.hpp"

namespace zeroclip::nn {

template <class Backend>
struct mlp {
    using tensor = typename Backend::tensor;
    linear<Backend> c_fc;    // (hidden, width)
    linear<Backend> c_proj;  // (width, hidden)
    activation act = activation::quick_gelu;

    static mlp load(const weight_source& ws, const Backend& be, int64_t width, int64_t hidden, activation act) {
        return {linear<Backend>::load(ws.scope("c_fc"), be, hidden, width),
                linear<Backend>::load(ws.scope("c_proj"), be, width, hidden), act};
    }
    tensor forward(const Backend& be, const tensor& x) const {
        return c_proj.forward(be, c_fc.forward_activate(be, x, act));
    }

    /// In place: y += forward(x) (the residual connection of the block).
    void forward_add_(const Backend& be, tensor& y, const tensor& x) const {
        c_proj.forward_add_(be, y, c_fc.forward_activate(be, x, act));
    }
};

}  // namespace zeroclip::nn
