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
        tensor h = c_fc.forward(be, x);
        be.activate_(h, act);
        return c_proj.forward(be, h);
    }
};

}  // namespace zeroclip::nn
