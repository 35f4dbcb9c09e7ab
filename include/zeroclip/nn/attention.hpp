//! nn::self_attention — torch.nn.MultiheadAttention as CLIP uses it: one packed in_proj for
//! q, k and v, heads of width/heads channels, an optional causal mask (the text tower), out_proj.
#pragma once

#include "linear.hpp"

namespace zeroclip::nn {

template <class Backend>
struct self_attention {
    using tensor = typename Backend::tensor;
    tensor in_proj_weight;        // (3·width, width): q, k, v stacked
    tensor in_proj_bias;          // (3·width)
    linear<Backend> out_proj;     // (width, width)
    int64_t heads = 1;

    static self_attention load(const weight_source& ws, const Backend& be, int64_t width, int64_t heads) {
        self_attention a{be.upload(ws.get("in_proj_weight", {3 * width, width})),
                         be.upload(ws.get("in_proj_bias", {3 * width})),
                         linear<Backend>::load(ws.scope("out_proj"), be, width, width), heads};
        // Prepared like a linear's; its row slices (q, k, v in forward_rows_add_) stay usable.
        if constexpr (has_prepare_linear_v<Backend>) a.in_proj_weight = be.prepare_linear(a.in_proj_weight);
        return a;
    }

    /// x: (batch·tokens, width) → (batch·tokens, width).
    tensor forward(const Backend& be, const tensor& x, int64_t batch, bool causal) const {
        return out_proj.forward(be, heads_output(be, x, batch, causal));
    }

    /// In place: y += forward(x) (the residual connection of the block).
    void forward_add_(const Backend& be, tensor& y, const tensor& x, int64_t batch, bool causal) const {
        out_proj.forward_add_(be, y, heads_output(be, x, batch, causal));
    }

    /// In place: y += forward(x) at one row per sample only, x_rows (batch, width) being those rows
    /// of x: queries from those rows, keys and values from all. Unmasked, so with a causal mask
    /// it is exact only for rows that see all of their sample (its last token).
    void forward_rows_add_(const Backend& be, tensor& y, const tensor& x, const tensor& x_rows, int64_t batch) const {
        const int64_t w = in_proj_weight.dim(1);
        auto part = [&](const tensor& t, int64_t i) { return be.slice_rows(t, i * w, w); };  // q, k, v
        const tensor q = be.linear(x_rows, part(in_proj_weight, 0), part(in_proj_bias, 0));
        const tensor k = be.linear(x, part(in_proj_weight, 1), part(in_proj_bias, 1));
        const tensor v = be.linear(x, part(in_proj_weight, 2), part(in_proj_bias, 2));
        out_proj.forward_add_(be, y, be.attention(q, k, v, batch, heads));
    }

private:
    /// The heads' outputs side by side, before out_proj.
    tensor heads_output(const Backend& be, const tensor& x, int64_t batch, bool causal) const {
        tensor qkv = be.linear(x, in_proj_weight, in_proj_bias);  // (batch·tokens, 3·width)
        return be.self_attention(qkv, batch, heads, causal);
    }
};

}  // namespace zeroclip::nn
