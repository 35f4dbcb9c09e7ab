//! models::vision_transformer — CLIP's ViT image encoder (OpenAI's VisionTransformer):
//! patch embedding (a bias-free conv, here patchify + linear), class token, positional
//! embedding, ln_pre, pre-LN residual blocks, ln_post on the class token, projection.
#pragma once

#include "../nn/layer_norm.hpp"
#include "../nn/residual_block.hpp"
#include "config.hpp"

namespace zeroclip::models {

template <class Backend>
struct vision_transformer {
    using tensor = typename Backend::tensor;
    vision_config cfg;
    tensor conv1_weight;          // (width, 3·patch·patch): conv1.weight (width, 3, patch, patch) flattened
    tensor class_embedding;       // (width)
    tensor positional_embedding;  // (1 + grid², width)
    nn::layer_norm<Backend> ln_pre;                       // (width)
    std::vector<nn::residual_block<Backend>> resblocks;   // transformer.resblocks.*
    nn::layer_norm<Backend> ln_post;                      // (width)
    tensor proj;                  // (width, embed_dim)

    /// `ws` is scoped at "visual".
    static vision_transformer load(const weight_source& ws, const Backend& be, const vision_config& c,
                                   int64_t embed_dim) {
        const int64_t w = c.width, p = c.patch_size, g = c.grid();
        vision_transformer m;
        m.cfg = c;
        m.conv1_weight = be.upload(ws.get("conv1.weight", {w, 3, p, p}).reshaped({w, 3 * p * p}));
        if constexpr (has_prepare_linear_v<Backend>) m.conv1_weight = be.prepare_linear(m.conv1_weight);
        m.class_embedding = be.upload(ws.get("class_embedding", {w}));
        m.positional_embedding = be.upload(ws.get("positional_embedding", {1 + g * g, w}));
        m.ln_pre = nn::layer_norm<Backend>::load(ws.scope("ln_pre"), be, w, c.layer_norm_eps);
        m.resblocks = nn::load_resblocks(ws.scope("transformer"), be, c.layers, w, c.heads, c.mlp_width, c.act,
                                         c.layer_norm_eps);
        m.ln_post = nn::layer_norm<Backend>::load(ws.scope("ln_post"), be, w, c.layer_norm_eps);
        m.proj = be.upload(ws.get("proj", {w, embed_dim}));
        return m;
    }

    /// pixels: (N, 3, image_size, image_size) → image embeddings (N, embed_dim).
    tensor forward(const Backend& be, const tensor& pixels) const {
        const int64_t batch = pixels.dim(0);
        tensor patches = be.patchify(pixels, cfg.patch_size);            // (N·grid², 3·p·p)
        tensor x = be.linear(patches, conv1_weight, tensor{});           // (N·grid², width)
        x = be.prepend_row(x, class_embedding, batch);                   // (N·(1+grid²), width)
        be.add_broadcast_(x, positional_embedding);
        x = ln_pre.forward(be, x);
        const int64_t tokens = 1 + static_cast<int64_t>(cfg.grid()) * cfg.grid();
        std::vector<int64_t> cls(static_cast<size_t>(batch));
        for (int64_t b = 0; b < batch; ++b) cls[static_cast<size_t>(b)] = b * tokens;
        // Only the class token is pooled, so the last block is computed at that row alone (exact).
        for (size_t i = 0; i + 1 < resblocks.size(); ++i) resblocks[i].forward(be, x, batch, /*causal=*/false);
        tensor last = resblocks.empty() ? be.gather_rows(x, cls) : resblocks.back().forward_rows(be, x, batch, cls);
        tensor pooled = ln_post.forward(be, last);                      // (N, width)
        return be.matmul(pooled, proj);                                  // (N, embed_dim)
    }
};

}  // namespace zeroclip::models
