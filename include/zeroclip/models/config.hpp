//! The architecture of a CLIP model: what the loader checks every tensor's shape against.
//! Plain structs; parsed from JSON by io/config_json.hpp (zeroclip's single-file format,
//! docs/FORMAT.md, or a Hugging Face CLIPConfig).
#pragma once

#include <array>
#include <string>

#include "../backend/activation.hpp"

namespace zeroclip {

struct vision_config {
    std::string type = "vit";             ///< "vit" or "resnet"
    int width = 768;                      ///< ViT width, or the ResNet stem width (64 for RN50)
    int layers = 12;                      ///< ViT blocks
    std::array<int, 4> resnet_layers{};  ///< ResNet bottlenecks per stage
    int heads = 12;                       ///< ViT heads, or attention-pool heads for ResNet
    int patch_size = 32;
    int image_size = 224;
    int mlp_width = 3072;
    activation act = activation::quick_gelu;
    double layer_norm_eps = 1e-5;

    bool is_resnet() const { return type == "resnet"; }
    int grid() const { return image_size / patch_size; }
    /// Channels entering the attention pool of a ModifiedResNet (width * 32).
    int resnet_embed_width() const { return width * 32; }
};

struct text_config {
    int width = 512;
    int layers = 12;
    int heads = 8;
    int context_length = 77;
    int vocab_size = 49408;
    int mlp_width = 2048;
    activation act = activation::quick_gelu;
    double layer_norm_eps = 1e-5;
};

struct clip_config {
    int embed_dim = 512;
    vision_config vision;
    text_config text;
    std::array<float, 3> image_mean{0.48145466f, 0.4578275f, 0.40821073f};
    std::array<float, 3> image_std{0.26862954f, 0.26130258f, 0.27577711f};
};

}  // namespace zeroclip
