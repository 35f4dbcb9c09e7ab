//! models::text_transformer — CLIP's text encoder: token + positional embedding, causal
//! residual blocks, ln_final, pooling at the end-of-text token, text_projection.
//! Positions after the last end-of-text token of a batch are never computed: under the causal
//! mask they cannot change the pooled output, so this is exact, not an approximation.
#pragma once

#include <algorithm>

#include "../nn/layer_norm.hpp"
#include "../nn/residual_block.hpp"
#include "config.hpp"

namespace zeroclip::models {

template <class Backend>
struct text_transformer {
    using tensor = typename Backend::tensor;
    text_config cfg;
    tensor token_embedding;       // (vocab_size, width): token_embedding.weight
    tensor positional_embedding;  // (context_length, width)
    std::vector<nn::residual_block<Backend>> resblocks;  // transformer.resblocks.*
    nn::layer_norm<Backend> ln_final;                    // (width)
    tensor text_projection;       // (width, embed_dim)

    /// `ws` is the model's root scope (the text tower's names have no prefix).
    static text_transformer load(const weight_source& ws, const Backend& be, const text_config& c,
                                 int64_t embed_dim) {
        const int64_t w = c.width;
        text_transformer m;
        m.cfg = c;
        m.token_embedding = be.upload(ws.get("token_embedding.weight", {c.vocab_size, w}));
        if constexpr (has_prepare_embedding_v<Backend>) m.token_embedding = be.prepare_embedding(m.token_embedding);
        m.positional_embedding = be.upload(ws.get("positional_embedding", {c.context_length, w}));
        m.resblocks = nn::load_resblocks(ws.scope("transformer"), be, c.layers, w, c.heads, c.mlp_width, c.act,
                                         c.layer_norm_eps);
        m.ln_final = nn::layer_norm<Backend>::load(ws.scope("ln_final"), be, w, c.layer_norm_eps);
        m.text_projection = be.upload(ws.get("text_projection", {w, embed_dim}));
        return m;
    }

    /// tokens: (N, length ≤ context_length) ids → text embeddings (N, embed_dim).
    tensor forward(const Backend& be, const token_tensor& tokens) const {
        const int64_t batch = tokens.dim(0), length = tokens.dim(1);
        // The official code pools at argmax(ids): the end-of-text token has the highest id.
        std::vector<int64_t> eot(static_cast<size_t>(batch));
        int64_t used = 1;
        for (int64_t b = 0; b < batch; ++b) {
            const int32_t* row = tokens.data() + b * length;
            eot[static_cast<size_t>(b)] = std::max_element(row, row + length) - row;
            used = std::max(used, eot[static_cast<size_t>(b)] + 1);
        }
        std::vector<int64_t> ids(static_cast<size_t>(batch * used));
        for (int64_t b = 0; b < batch; ++b)
            for (int64_t t = 0; t < used; ++t) ids[static_cast<size_t>(b * used + t)] = tokens[b * length + t];
        tensor x = be.gather_rows(token_embedding, ids);                     // (N·used, width)
        be.add_broadcast_(x, be.slice_rows(positional_embedding, 0, used));
        std::vector<int64_t> pick(static_cast<size_t>(batch));
        bool all_end_last = true;  // every prompt's end-of-text token is the last position computed
        for (int64_t b = 0; b < batch; ++b) {
            pick[static_cast<size_t>(b)] = b * used + eot[static_cast<size_t>(b)];
            all_end_last = all_end_last && eot[static_cast<size_t>(b)] == used - 1;
        }
        // Then the last block is needed at those rows only: under the causal mask they see every
        // position, so attention without a mask over all keys is exact for them.
        const size_t full = resblocks.size() - (all_end_last && !resblocks.empty() ? 1 : 0);
        for (size_t i = 0; i < full; ++i) resblocks[i].forward(be, x, batch, /*causal=*/true);
        tensor last = full < resblocks.size() ? resblocks.back().forward_rows(be, x, batch, pick) : be.gather_rows(x, pick);
        tensor pooled = ln_final.forward(be, last);                          // (N, width)
        return be.matmul(pooled, text_projection);                           // (N, embed_dim)
    }
};

}  // namespace zeroclip::models
