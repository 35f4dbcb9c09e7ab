//! The architecture of a CLIP model: what the loader checks every tensor's shape against.
//! Parsed from zeroclip's single-file format (docs/FORMAT.md) or a Hugging Face CLIPConfig
//! (`config.json`, absent keys taking transformers' documented CLIPConfig defaults).
#pragma once

#include <array>
#include <nlohmann/json.hpp>
#include <string>

#include "../error.hpp"

namespace zeroclip {

enum class activation { quick_gelu, gelu };

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

namespace detail {

inline activation parse_activation(const std::string& name, const std::string& where) {
    if (name == "quick_gelu") return activation::quick_gelu;
    if (name == "gelu") return activation::gelu;
    ZEROCLIP_THROW(errc::format, where + ": unsupported activation '" + name + "' (quick_gelu or gelu)");
}

template <class T>
T json_get(const nlohmann::json& j, const char* key, T fallback, const std::string& where) {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    try {
        return j[key].get<T>();
    } catch (const nlohmann::json::exception&) {
        ZEROCLIP_THROW(errc::format, where + ": config key '" + key + "' has the wrong type");
    }
}

inline void check_positive(int value, const char* name, const std::string& where) {
    if (value <= 0 || value > (1 << 20))
        ZEROCLIP_THROW(errc::format, where + ": config value " + name + " = " + std::to_string(value) +
                                         " is out of range");
}

inline void validate(const clip_config& c, const std::string& where) {
    check_positive(c.embed_dim, "embed_dim", where);
    const auto& v = c.vision;
    check_positive(v.width, "vision.width", where);
    check_positive(v.heads, "vision.heads", where);
    check_positive(v.image_size, "vision.image_size", where);
    if (v.is_resnet()) {
        for (int n : v.resnet_layers) check_positive(n, "vision.layers[i]", where);
        if (v.image_size % 32)
            ZEROCLIP_THROW(errc::format, where + ": ResNet image_size must be a multiple of 32");
        if (v.resnet_embed_width() % v.heads)
            ZEROCLIP_THROW(errc::format, where + ": ResNet width*32 must be divisible by heads");
    } else {
        if (v.type != "vit") ZEROCLIP_THROW(errc::format, where + ": unknown vision type '" + v.type + "'");
        check_positive(v.layers, "vision.layers", where);
        check_positive(v.patch_size, "vision.patch_size", where);
        check_positive(v.mlp_width, "vision.mlp_width", where);
        if (v.image_size % v.patch_size)
            ZEROCLIP_THROW(errc::format, where + ": image_size must be a multiple of patch_size");
        if (v.width % v.heads) ZEROCLIP_THROW(errc::format, where + ": vision width must be divisible by heads");
    }
    const auto& t = c.text;
    check_positive(t.width, "text.width", where);
    check_positive(t.layers, "text.layers", where);
    check_positive(t.heads, "text.heads", where);
    check_positive(t.context_length, "text.context_length", where);
    check_positive(t.vocab_size, "text.vocab_size", where);
    check_positive(t.mlp_width, "text.mlp_width", where);
    if (t.width % t.heads) ZEROCLIP_THROW(errc::format, where + ": text width must be divisible by heads");
}

}  // namespace detail

/// Parses zeroclip's config JSON (the `zeroclip.config` metadata of a converted file).
inline clip_config parse_zeroclip_config(const std::string& json_text, const std::string& where) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(json_text);
    } catch (const nlohmann::json::exception& e) {
        ZEROCLIP_THROW(errc::format, where + ": zeroclip.config is not valid JSON: " + e.what());
    }
    if (!j.is_object() || !j.contains("vision") || !j.contains("text") || !j["vision"].is_object() ||
        !j["text"].is_object())
        ZEROCLIP_THROW(errc::format, where + ": zeroclip.config needs 'vision' and 'text' objects");
    using detail::json_get;
    clip_config c;
    c.embed_dim = json_get(j, "embed_dim", 0, where);
    const auto act = detail::parse_activation(json_get<std::string>(j, "hidden_act", "quick_gelu", where), where);
    const double eps = json_get(j, "layer_norm_eps", 1e-5, where);
    const auto& v = j["vision"];
    c.vision.type = json_get<std::string>(v, "type", "vit", where);
    c.vision.width = json_get(v, "width", 0, where);
    c.vision.heads = json_get(v, "heads", 0, where);
    c.vision.image_size = json_get(v, "image_size", 0, where);
    if (c.vision.is_resnet()) {
        auto layers = json_get<std::vector<int>>(v, "layers", {}, where);
        if (layers.size() != 4) ZEROCLIP_THROW(errc::format, where + ": ResNet 'layers' must list 4 stages");
        std::copy(layers.begin(), layers.end(), c.vision.resnet_layers.begin());
        c.vision.patch_size = 32;  // the ResNet's total downsampling, for grid()
    } else {
        c.vision.layers = json_get(v, "layers", 0, where);
        c.vision.patch_size = json_get(v, "patch_size", 0, where);
        c.vision.mlp_width = json_get(v, "mlp_width", c.vision.width * 4, where);
    }
    c.vision.act = act;
    c.vision.layer_norm_eps = eps;
    const auto& t = j["text"];
    c.text.width = json_get(t, "width", 0, where);
    c.text.layers = json_get(t, "layers", 0, where);
    c.text.heads = json_get(t, "heads", 0, where);
    c.text.context_length = json_get(t, "context_length", 77, where);
    c.text.vocab_size = json_get(t, "vocab_size", 49408, where);
    c.text.mlp_width = json_get(t, "mlp_width", c.text.width * 4, where);
    c.text.act = act;
    c.text.layer_norm_eps = eps;
    auto mean = json_get<std::vector<float>>(j, "image_mean", {}, where);
    auto std_ = json_get<std::vector<float>>(j, "image_std", {}, where);
    if (mean.size() == 3) std::copy(mean.begin(), mean.end(), c.image_mean.begin());
    if (std_.size() == 3) std::copy(std_.begin(), std_.end(), c.image_std.begin());
    detail::validate(c, where);
    return c;
}

/// Parses a Hugging Face CLIPConfig (`config.json`); `preprocessor_json` (may be empty) supplies
/// image_mean / image_std from `preprocessor_config.json`.
inline clip_config parse_hf_config(const std::string& json_text, const std::string& preprocessor_json,
                                   const std::string& where) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(json_text);
    } catch (const nlohmann::json::exception& e) {
        ZEROCLIP_THROW(errc::format, where + ": not valid JSON: " + e.what());
    }
    if (!j.is_object()) ZEROCLIP_THROW(errc::format, where + ": not a JSON object");
    using detail::json_get;
    const nlohmann::json empty = nlohmann::json::object();
    const auto& v = j.contains("vision_config") && j["vision_config"].is_object() ? j["vision_config"] : empty;
    const auto& t = j.contains("text_config") && j["text_config"].is_object() ? j["text_config"] : empty;
    clip_config c;
    c.embed_dim = json_get(j, "projection_dim", 512, where);
    c.vision.type = "vit";
    c.vision.width = json_get(v, "hidden_size", 768, where);
    c.vision.layers = json_get(v, "num_hidden_layers", 12, where);
    c.vision.heads = json_get(v, "num_attention_heads", 12, where);
    c.vision.patch_size = json_get(v, "patch_size", 32, where);
    c.vision.image_size = json_get(v, "image_size", 224, where);
    c.vision.mlp_width = json_get(v, "intermediate_size", 3072, where);
    c.vision.act = detail::parse_activation(json_get<std::string>(v, "hidden_act", "quick_gelu", where), where);
    c.vision.layer_norm_eps = json_get(v, "layer_norm_eps", 1e-5, where);
    c.text.width = json_get(t, "hidden_size", 512, where);
    c.text.layers = json_get(t, "num_hidden_layers", 12, where);
    c.text.heads = json_get(t, "num_attention_heads", 8, where);
    c.text.context_length = json_get(t, "max_position_embeddings", 77, where);
    c.text.vocab_size = json_get(t, "vocab_size", 49408, where);
    c.text.mlp_width = json_get(t, "intermediate_size", 2048, where);
    c.text.act = detail::parse_activation(json_get<std::string>(t, "hidden_act", "quick_gelu", where), where);
    c.text.layer_norm_eps = json_get(t, "layer_norm_eps", 1e-5, where);
    if (!preprocessor_json.empty()) {
        try {
            auto p = nlohmann::json::parse(preprocessor_json);
            auto mean = json_get<std::vector<float>>(p, "image_mean", {}, where);
            auto std_ = json_get<std::vector<float>>(p, "image_std", {}, where);
            if (mean.size() == 3) std::copy(mean.begin(), mean.end(), c.image_mean.begin());
            if (std_.size() == 3) std::copy(std_.begin(), std_.end(), c.image_std.begin());
        } catch (const nlohmann::json::exception& e) {
            ZEROCLIP_THROW(errc::format, where + ": preprocessor_config.json is not valid JSON: " + e.what());
        }
    }
    detail::validate(c, where);
    return c;
}

/// The config as zeroclip's JSON (the inverse of parse_zeroclip_config).
inline std::string to_json(const clip_config& c) {
    nlohmann::json v = {{"type", c.vision.type}, {"width", c.vision.width}, {"heads", c.vision.heads},
                        {"image_size", c.vision.image_size}};
    if (c.vision.is_resnet()) {
        v["layers"] = c.vision.resnet_layers;
    } else {
        v["layers"] = c.vision.layers;
        v["patch_size"] = c.vision.patch_size;
        v["mlp_width"] = c.vision.mlp_width;
    }
    nlohmann::json j = {
        {"embed_dim", c.embed_dim},
        {"vision", v},
        {"text", {{"width", c.text.width}, {"layers", c.text.layers}, {"heads", c.text.heads},
                  {"context_length", c.text.context_length}, {"vocab_size", c.text.vocab_size},
                  {"mlp_width", c.text.mlp_width}}},
        {"hidden_act", c.text.act == activation::gelu ? "gelu" : "quick_gelu"},
        {"layer_norm_eps", c.text.layer_norm_eps},
        {"image_mean", c.image_mean},
        {"image_std", c.image_std}};
    return j.dump();
}

}  // namespace zeroclip
