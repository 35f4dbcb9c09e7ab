//! nn::attention_pool2d — CLIP's AttentionPool2d, the ModifiedResNet's global pooling: the
//! feature map becomes tokens (spatial mean first) plus a positional embedding, and one
//! multi-head attention step with only the mean token as query gives the output (c_proj).
#pragma once

#include "linear.hpp"

namespace zeroclip::nn {

template <class Backend>
struct attention_pool2d {
    using tensor = typename Backend::tensor;
    tensor positional_embedding;  // (spacial² + 1, embed)
    linear<Backend> k_proj;       // (embed, embed)
    linear<Backend> q_proj;       // (embed, embed)
    linear<Backend> v_proj;       // (embed, embed)
    linear<Backend> c_proj;       // (output, embed): the attention's out_proj
    int64_t tokens = 1;           // spacial² + 1
    int64_t heads = 1;

    /// `spacial` is the side of the feature map (image_size / 32).
    static attention_pool2d load(const weight_source& ws, const Backend& be, int64_t spacial, int64_t embed,
                                 int64_t heads, int64_t output) {
        const int64_t tokens = spacial * spacial + 1;
        return {be.upload(ws.get("positional_embedding", {tokens, embed})),
                linear<Backend>::load(ws.scope("k_proj"), be, embed, embed),
                linear<Backend>::load(ws.scope("q_proj"), be, embed, embed),
                linear<Backend>::load(ws.scope("v_proj"), be, embed, embed),
                linear<Backend>::load(ws.scope("c_proj"), be, output, embed),
                tokens,
                heads};
    }

    /// x (N, embed, spacial, spacial) → (N, output).
    tensor forward(const Backend& be, const tensor& x) const {
        const int64_t batch = x.dim(0);
        tensor t = be.spatial_tokens(x);  // (N·tokens, embed), the mean token first
        be.add_broadcast_(t, positional_embedding);
        // Only the mean token's output is kept, so it is the only query; keys and values are all
        // tokens. attention() scales q by 1/√head_dim after the projection, as PyTorch does.
        std::vector<int64_t> first(static_cast<size_t>(batch));
        for (int64_t b = 0; b < batch; ++b) first[static_cast<size_t>(b)] = b * tokens;
        tensor q = q_proj.forward(be, be.gather_rows(t, first));  // (N, embed)
        tensor k = k_proj.forward(be, t), v = v_proj.forward(be, t);  // (N·tokens, embed)
        return c_proj.forward(be, be.attention(q, k, v, batch, heads));
    }
};

}  // namespace zeroclip::nn
