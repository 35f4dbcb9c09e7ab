// Random CLIP weights of any ViT shape (the real ViT-B/32, B/16, L/14 sizes among them), built in
// memory, for tests and benchmarks that need models the fixtures don't have.
#pragma once

#include <cmath>
#include <zeroclip/io/checkpoint.hpp>

namespace test_util {

/// The official release's ViT configs (clip/model.py build_model on the released checkpoints).
inline zeroclip::clip_config vit_config(int embed, int vision_width, int vision_layers, int patch, int image_size,
                                        int text_width, int text_layers) {
    zeroclip::clip_config c;
    c.embed_dim = embed;
    c.vision.type = "vit";
    c.vision.width = vision_width;
    c.vision.layers = vision_layers;
    c.vision.heads = vision_width / 64;
    c.vision.patch_size = patch;
    c.vision.image_size = image_size;
    c.vision.mlp_width = 4 * vision_width;
    c.text.width = text_width;
    c.text.layers = text_layers;
    c.text.heads = text_width / 64;
    c.text.mlp_width = 4 * text_width;
    return c;
}
inline zeroclip::clip_config vit_b32() { return vit_config(512, 768, 12, 32, 224, 512, 12); }
inline zeroclip::clip_config vit_b16() { return vit_config(512, 768, 12, 16, 224, 512, 12); }

/// Every tensor of a ViT CLIP under OpenAI's names, filled with scaled random values
/// (std width^-0.5 like initialize_parameters, layer norms near 1) so activations stay finite.
inline std::map<std::string, zeroclip::tensor> random_vit_weights(const zeroclip::clip_config& c, uint32_t seed) {
    // xorshift64: uniform values with the wanted mean and std, a few ns each (ViT-B has 150M).
    uint64_t state = 0x9E3779B97F4A7C15ull ^ seed;
    std::map<std::string, zeroclip::tensor> w;
    auto fill = [&](const std::string& name, zeroclip::shape_t shape, float mean, float std_) {
        zeroclip::tensor t(shape);
        const float half_width = std_ * 1.7320508f;  // uniform on [-a, a] has std a/sqrt(3)
        for (auto& v : t) {
            state ^= state << 13, state ^= state >> 7, state ^= state << 17;
            v = mean + half_width * (static_cast<float>(state >> 40) * (2.0f / 16777216.0f) - 1.0f);
        }
        w[name] = t;
    };
    auto transformer = [&](const std::string& prefix, int width, int layers, int mlp) {
        const float s = 1.0f / std::sqrt(static_cast<float>(width));
        for (int i = 0; i < layers; ++i) {
            std::string p = prefix + "transformer.resblocks." + std::to_string(i) + ".";
            fill(p + "ln_1.weight", {width}, 1, 0.02f), fill(p + "ln_1.bias", {width}, 0, 0.02f);
            fill(p + "ln_2.weight", {width}, 1, 0.02f), fill(p + "ln_2.bias", {width}, 0, 0.02f);
            fill(p + "attn.in_proj_weight", {3 * width, width}, 0, s), fill(p + "attn.in_proj_bias", {3 * width}, 0, 0.02f);
            fill(p + "attn.out_proj.weight", {width, width}, 0, s), fill(p + "attn.out_proj.bias", {width}, 0, 0.02f);
            fill(p + "mlp.c_fc.weight", {mlp, width}, 0, s), fill(p + "mlp.c_fc.bias", {mlp}, 0, 0.02f);
            fill(p + "mlp.c_proj.weight", {width, mlp}, 0, 1.0f / std::sqrt(static_cast<float>(mlp)));
            fill(p + "mlp.c_proj.bias", {width}, 0, 0.02f);
        }
    };
    const auto& v = c.vision;
    const int g = v.grid(), vw = v.width, tw = c.text.width;
    fill("visual.conv1.weight", {vw, 3, v.patch_size, v.patch_size}, 0, 0.02f);
    fill("visual.class_embedding", {vw}, 0, 1.0f / std::sqrt(static_cast<float>(vw)));
    fill("visual.positional_embedding", {1 + g * g, vw}, 0, 1.0f / std::sqrt(static_cast<float>(vw)));
    fill("visual.ln_pre.weight", {vw}, 1, 0.02f), fill("visual.ln_pre.bias", {vw}, 0, 0.02f);
    transformer("visual.", vw, v.layers, v.mlp_width);
    fill("visual.ln_post.weight", {vw}, 1, 0.02f), fill("visual.ln_post.bias", {vw}, 0, 0.02f);
    fill("visual.proj", {vw, c.embed_dim}, 0, 1.0f / std::sqrt(static_cast<float>(vw)));
    fill("token_embedding.weight", {c.text.vocab_size, tw}, 0, 0.02f);
    fill("positional_embedding", {c.text.context_length, tw}, 0, 0.01f);
    transformer("", tw, c.text.layers, c.text.mlp_width);
    fill("ln_final.weight", {tw}, 1, 0.02f), fill("ln_final.bias", {tw}, 0, 0.02f);
    fill("text_projection", {tw, c.embed_dim}, 0, 1.0f / std::sqrt(static_cast<float>(tw)));
    w["logit_scale"] = zeroclip::tensor({}, {std::log(1.0f / 0.07f)});
    return w;
}

/// A checkpoint held in memory (no file), ready for clip_model's constructor.
inline zeroclip::checkpoint random_vit_checkpoint(const zeroclip::clip_config& c, uint32_t seed) {
    zeroclip::checkpoint ck;
    ck.path = "<random>";
    ck.config = c;
    ck.weights = zeroclip::weight_source(random_vit_weights(c, seed), "<random>");
    ck.weight_dtype = "F32";
    return ck;
}

}  // namespace test_util
