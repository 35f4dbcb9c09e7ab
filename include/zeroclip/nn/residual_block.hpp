//! nn::residual_block — CLIP's ResidualAttentionBlock, pre-LN:
//! x = x + attn(ln_1(x)); x = x + mlp(ln_2(x)).
#pragma once

#include "attention.hpp"
#include "layer_norm.hpp"
#include "mlp.hpp"

namespace zeroclip::nn {

template <class Backend>
struct residual_block {
    using tensor = typename Backend::tensor;
    layer_norm<Backend> ln_1;        // (width)
    self_attention<Backend> attn;    // in_proj (3·width, width)
    layer_norm<Backend> ln_2;        // (width)
    nn::mlp<Backend> mlp;            // c_fc (mlp_width, width), c_proj (width, mlp_width)

    static residual_block load(const weight_source& ws, const Backend& be, int64_t width, int64_t heads,
                               int64_t mlp_width, activation act, double eps) {
        return {layer_norm<Backend>::load(ws.scope("ln_1"), be, width, eps),
                self_attention<Backend>::load(ws.scope("attn"), be, width, heads),
                layer_norm<Backend>::load(ws.scope("ln_2"), be, width, eps),
                nn::mlp<Backend>::load(ws.scope("mlp"), be, width, mlp_width, act)};
    }

    /// x: (batch·tokens, width), updated in place (each residual sum fused into the product
    /// before it where the backend can).
    void forward(const Backend& be, tensor& x, int64_t batch, bool causal) const {
        attn.forward_add_(be, x, ln_1.forward(be, x), batch, causal);
        mlp.forward_add_(be, x, ln_2.forward(be, x));
    }

    /// The block's output at `rows` of x only, one row per sample → (batch, width). Exact: the
    /// other rows reach those only as attention's keys and values. Each row must see all of its
    /// sample (any row without a mask; the last one under a causal mask).
    tensor forward_rows(const Backend& be, const tensor& x, int64_t batch, const std::vector<int64_t>& rows) const {
        const tensor h = ln_1.forward(be, x);
        tensor y = be.gather_rows(x, rows);
        attn.forward_rows_add_(be, y, h, be.gather_rows(h, rows), batch);
        mlp.forward_add_(be, y, ln_2.forward(be, y));
        return y;
    }
};

/// The blocks of a transformer: `resblocks.0`, `resblocks.1`, ... — depth is runtime data.
template <class Backend>
std::vector<residual_block<Backend>> load_resblocks(const weight_source& ws, const Backend& be, int64_t layers,
                                                    int64_t width, int64_t heads, int64_t mlp_width,
                                                    activation act, double eps) {
    std::vector<residual_block<Backend>> blocks;
    for (int64_t i = 0; i < layers; ++i)
        blocks.push_back(residual_block<Backend>::load(ws.scope("resblocks." + std::to_string(i)), be, width,
                                                       heads, mlp_width, act, eps));
    if (ws.contains("resblocks." + std::to_string(layers) + ".ln_1.weight"))
        ZEROCLIP_THROW(errc::shape, ws.file() + ": the checkpoint has more than the " + std::to_string(layers) +
                                        " transformer blocks its config declares");
    return blocks;
}

}  // namespace zeroclip::nn
