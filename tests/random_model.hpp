// Random CLIP checkpoints of any shape (ViT or ModifiedResNet, the real ViT-B/32, B/16 and RN50
// among them) and random model inputs, built in memory, no file: for the tests and benchmarks
// (CPU and GPU) that need models the fixtures don't have. Values follow the scale of OpenAI's
// initialize_parameters (std width^-0.5, He-initialised convolutions, batch norms near identity)
// so activations stay finite through all layers. A fast counter-based generator (splitmix64,
// uniform with the wanted std) fills ~150M weights in about a second.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <zeroclip/io/checkpoint.hpp>

namespace test_util {

/// splitmix64: fast, seedable, good enough for test data.
class rng {
public:
    explicit rng(uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull) {}
    uint64_t next() {
        uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    /// Uniform in [0, 1).
    float uniform() { return static_cast<float>(next() >> 40) * (1.0f / 16777216.0f); }
    /// Uniform with the given mean and standard deviation.
    float spread(float mean, float std_) { return mean + std_ * 1.7320508f * (2.0f * uniform() - 1.0f); }

private:
    uint64_t state_;
};

/// A host tensor of `shape` with uniform values of the given mean and std.
inline zeroclip::tensor random_tensor(rng& r, zeroclip::shape_t shape, float mean = 0.0f, float std_ = 1.0f) {
    zeroclip::tensor t(std::move(shape));
    for (auto& v : t) v = r.spread(mean, std_);
    return t;
}

/// heads = width / 64 as in OpenAI's build_model (at least one, so widths under 64 still make a model).
inline zeroclip::clip_config vit_config(int embed, int width, int layers, int patch, int image_size, int text_width,
                                        int text_layers) {
    zeroclip::clip_config c;
    c.embed_dim = embed;
    c.vision.type = "vit";
    c.vision.width = width;
    c.vision.layers = layers;
    c.vision.heads = std::max(1, width / 64);
    c.vision.patch_size = patch;
    c.vision.image_size = image_size;
    c.vision.mlp_width = 4 * width;
    c.text.width = text_width;
    c.text.layers = text_layers;
    c.text.heads = std::max(1, text_width / 64);
    c.text.mlp_width = 4 * text_width;
    return c;
}

inline zeroclip::clip_config resnet_config(int embed, std::array<int, 4> layers, int width, int image_size,
                                           int text_width, int text_layers) {
    zeroclip::clip_config c = vit_config(embed, 64, 1, 32, image_size, text_width, text_layers);
    c.vision.type = "resnet";
    c.vision.width = width;
    c.vision.resnet_layers = layers;
    c.vision.heads = width * 32 / 64;
    c.vision.patch_size = 32;  // the total downsampling, for grid()
    return c;
}

/// The official shapes (clip/model.py build_model on the released checkpoints).
inline zeroclip::clip_config vit_b32() { return vit_config(512, 768, 12, 32, 224, 512, 12); }
inline zeroclip::clip_config vit_b16() { return vit_config(512, 768, 12, 16, 224, 512, 12); }
inline zeroclip::clip_config rn50() { return resnet_config(1024, {3, 4, 6, 3}, 64, 224, 512, 12); }

/// Every tensor of a CLIP of config `c` under OpenAI's names (batch norms unfolded, as in a
/// state dict: zeroclip folds them at load).
inline std::map<std::string, zeroclip::tensor> random_weights(const zeroclip::clip_config& c, uint64_t seed) {
    rng r(seed);
    std::map<std::string, zeroclip::tensor> w;
    auto fill = [&](const std::string& name, zeroclip::shape_t shape, float mean, float std_) {
        w[name] = random_tensor(r, std::move(shape), mean, std_);
    };
    auto inv_sqrt = [](int64_t n) { return 1.0f / std::sqrt(static_cast<float>(n)); };
    auto transformer = [&](const std::string& prefix, int width, int layers, int mlp) {
        for (int i = 0; i < layers; ++i) {
            const std::string p = prefix + "transformer.resblocks." + std::to_string(i) + ".";
            fill(p + "ln_1.weight", {width}, 1, 0.02f), fill(p + "ln_1.bias", {width}, 0, 0.02f);
            fill(p + "ln_2.weight", {width}, 1, 0.02f), fill(p + "ln_2.bias", {width}, 0, 0.02f);
            fill(p + "attn.in_proj_weight", {3 * width, width}, 0, inv_sqrt(width));
            fill(p + "attn.in_proj_bias", {3 * width}, 0, 0.02f);
            fill(p + "attn.out_proj.weight", {width, width}, 0, inv_sqrt(width));
            fill(p + "attn.out_proj.bias", {width}, 0, 0.02f);
            fill(p + "mlp.c_fc.weight", {mlp, width}, 0, inv_sqrt(width)), fill(p + "mlp.c_fc.bias", {mlp}, 0, 0.02f);
            fill(p + "mlp.c_proj.weight", {width, mlp}, 0, inv_sqrt(mlp)), fill(p + "mlp.c_proj.bias", {width}, 0, 0.02f);
        }
    };
    auto conv_bn = [&](const std::string& conv, const std::string& bn, int out, int in, int k, float gamma) {
        fill(conv + ".weight", {out, in, k, k}, 0, std::sqrt(2.0f / static_cast<float>(in * k * k)));
        fill(bn + ".weight", {out}, gamma, 0.1f * gamma);
        fill(bn + ".bias", {out}, 0, 0.05f);
        fill(bn + ".running_mean", {out}, 0, 0.05f);
        fill(bn + ".running_var", {out}, 1, 0.2f);
    };
    const auto& v = c.vision;
    const int e = c.embed_dim;
    if (v.is_resnet()) {
        const int half = v.width / 2;
        conv_bn("visual.conv1", "visual.bn1", half, 3, 3, 1);
        conv_bn("visual.conv2", "visual.bn2", half, half, 3, 1);
        conv_bn("visual.conv3", "visual.bn3", v.width, half, 3, 1);
        int inplanes = v.width;
        for (int s = 0; s < 4; ++s) {
            const int planes = v.width << s;
            for (int i = 0; i < v.resnet_layers[static_cast<size_t>(s)]; ++i) {
                const std::string p = "visual.layer" + std::to_string(s + 1) + "." + std::to_string(i) + ".";
                conv_bn(p + "conv1", p + "bn1", planes, inplanes, 1, 1);
                conv_bn(p + "conv2", p + "bn2", planes, planes, 3, 1);
                // A small last batch norm (OpenAI zeroes it) keeps the residual stream bounded.
                conv_bn(p + "conv3", p + "bn3", planes * 4, planes, 1, 0.2f);
                if (i == 0 && (s > 0 || inplanes != planes * 4))
                    conv_bn(p + "downsample.0", p + "downsample.1", planes * 4, inplanes, 1, 1);
                inplanes = planes * 4;
            }
        }
        const int embed = v.resnet_embed_width(), spacial = v.image_size / 32;
        fill("visual.attnpool.positional_embedding", {spacial * spacial + 1, embed}, 0, inv_sqrt(embed));
        for (const char* proj : {"q_proj", "k_proj", "v_proj"}) {
            fill(std::string("visual.attnpool.") + proj + ".weight", {embed, embed}, 0, inv_sqrt(embed));
            fill(std::string("visual.attnpool.") + proj + ".bias", {embed}, 0, 0.02f);
        }
        fill("visual.attnpool.c_proj.weight", {e, embed}, 0, inv_sqrt(embed));
        fill("visual.attnpool.c_proj.bias", {e}, 0, 0.02f);
    } else {
        const int g = v.grid(), vw = v.width;
        fill("visual.conv1.weight", {vw, 3, v.patch_size, v.patch_size}, 0, inv_sqrt(3 * v.patch_size * v.patch_size));
        fill("visual.class_embedding", {vw}, 0, inv_sqrt(vw));
        fill("visual.positional_embedding", {1 + g * g, vw}, 0, inv_sqrt(vw));
        fill("visual.ln_pre.weight", {vw}, 1, 0.02f), fill("visual.ln_pre.bias", {vw}, 0, 0.02f);
        transformer("visual.", vw, v.layers, v.mlp_width);
        fill("visual.ln_post.weight", {vw}, 1, 0.02f), fill("visual.ln_post.bias", {vw}, 0, 0.02f);
        fill("visual.proj", {vw, e}, 0, inv_sqrt(vw));
    }
    const int tw = c.text.width;
    fill("token_embedding.weight", {c.text.vocab_size, tw}, 0, 0.02f);
    fill("positional_embedding", {c.text.context_length, tw}, 0, 0.01f);
    transformer("", tw, c.text.layers, c.text.mlp_width);
    fill("ln_final.weight", {tw}, 1, 0.02f), fill("ln_final.bias", {tw}, 0, 0.02f);
    fill("text_projection", {tw, e}, 0, inv_sqrt(tw));
    w["logit_scale"] = zeroclip::tensor({}, {std::log(1.0f / 0.07f)});
    return w;
}

/// A checkpoint held in memory, ready for clip_model's constructor.
inline zeroclip::checkpoint random_checkpoint(const zeroclip::clip_config& c, uint64_t seed) {
    zeroclip::checkpoint ck;
    ck.path = "<random>";
    ck.config = c;
    ck.weights = zeroclip::weight_source(random_weights(c, seed), "<random>");
    ck.weight_dtype = "F32";
    return ck;
}

/// Pixels (n, 3, size, size) of roughly unit variance, like normalised images.
inline zeroclip::tensor random_pixels(int64_t n, int64_t size, uint64_t seed) {
    rng r(seed);
    return random_tensor(r, {n, 3, size, size}, 0.0f, 1.0f);
}

/// Token rows (n, context) like tokenised prompts: start token, `length - 2` word ids, end token
/// (the highest id), padding zeros; lengths vary between min_len and max_len.
inline zeroclip::token_tensor random_tokens(int64_t n, int64_t context, int64_t min_len, int64_t max_len,
                                            uint64_t seed) {
    rng r(seed);
    zeroclip::token_tensor t({n, context});
    for (int64_t i = 0; i < n; ++i) {
        const int64_t len = min_len + static_cast<int64_t>(r.next() % static_cast<uint64_t>(max_len - min_len + 1));
        int32_t* row = t.data() + i * context;
        row[0] = 49406;
        for (int64_t j = 1; j < len - 1; ++j) row[j] = static_cast<int32_t>(256 + r.next() % 49000);
        row[len - 1] = 49407;
    }
    return t;
}

}  // namespace test_util
