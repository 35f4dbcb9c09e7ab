//! Config JSON: parse_zeroclip_config (the `zeroclip.config` metadata of a converted file,
//! docs/FORMAT.md), parse_hf_config (a Hugging Face CLIPConfig `config.json`, absent keys taking
//! transformers' documented CLIPConfig defaults) and to_json, into and from models/config.hpp.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "../error.hpp"
#include "../models/config.hpp"

namespace zeroclip {

namespace detail {

// Every config value is checked for type and range and never coerced: an integer key must hold
// a JSON integer (not 3.9, true, "3" or 1e10) within its bounds; out of range is errc::format
// naming the file, the key and the value.

/// Upper bounds, far above every CLIP released (ViT-bigG: width 1664, 48 layers), low enough
/// that products of them stay far from overflowing.
constexpr int64_t max_config_layers = 1024;
constexpr int64_t max_config_width = 65536;
constexpr int64_t max_config_image_size = 4096;
constexpr int64_t max_config_context = 65536;
constexpr int64_t max_config_vocab = int64_t{1} << 24;

/// True when `v` is a JSON integer (not a float, bool or string) in [lo, hi].
inline bool in_range(const nlohmann::json& v, int64_t lo, int64_t hi) {
    if (!v.is_number_integer()) return false;
    if (v.is_number_unsigned())  // may exceed int64
        return v.get<uint64_t>() <= static_cast<uint64_t>(hi) && static_cast<int64_t>(v.get<uint64_t>()) >= lo;
    return v.get<int64_t>() >= lo && v.get<int64_t>() <= hi;
}

/// A config object and its name in messages ("vision", "vision_config", or "" at the top).
struct config_object {
    const nlohmann::json& json;
    std::string prefix;
    const std::string& where;

    std::string key_name(const char* key) const { return prefix.empty() ? key : prefix + "." + key; }
    bool has(const char* key) const { return json.contains(key) && !json[key].is_null(); }

    [[noreturn]] void fail(const char* key, const std::string& what) const {
        // Only a scalar is shown: dump() recurses, and a hostile value may be nested 10^5 deep.
        const nlohmann::json* v = json.contains(key) ? &json[key] : nullptr;
        const std::string shown = !v ? "absent" : v->is_array() ? "an array" : v->is_object() ? "an object" : v->dump();
        ZEROCLIP_THROW(errc::format, where + ": config key '" + key_name(key) + "' " + what + ", got " +
                                         (shown.size() > 80 ? shown.substr(0, 80) + "..." : shown));
    }

    /// An integer in [lo, hi]; `fallback` when absent, or an error when `fallback` is nullopt.
    int integer(const char* key, std::optional<int64_t> fallback, int64_t lo, int64_t hi) const {
        const std::string range = "[" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
        if (!has(key)) {
            if (!fallback) fail(key, "is required (an integer in " + range + ")");
            return static_cast<int>(*fallback);
        }
        const nlohmann::json& v = json[key];
        if (!in_range(v, lo, hi)) fail(key, "must be an integer in " + range);
        return static_cast<int>(v.get<int64_t>());
    }

    /// A finite number in (0, hi].
    double positive_number(const char* key, double fallback, double hi) const {
        if (!has(key)) return fallback;
        const nlohmann::json& v = json[key];
        const double x = v.is_number() ? v.get<double>() : 0.0;
        if (!v.is_number() || !std::isfinite(x) || !(x > 0) || x > hi)
            fail(key, "must be a finite number in (0, " + nlohmann::json(hi).dump() + "]");
        return x;
    }

    std::string string(const char* key, const std::string& fallback) const {
        if (!has(key)) return fallback;
        if (!json[key].is_string()) fail(key, "must be a string");
        return json[key].get<std::string>();
    }

    /// Exactly three finite numbers (each > 0 when `positive`), or `fallback` when absent.
    std::array<float, 3> triple(const char* key, const std::array<float, 3>& fallback, bool positive) const {
        if (!has(key)) return fallback;
        const nlohmann::json& v = json[key];
        const char* need = positive ? "must be a list of 3 finite numbers > 0" : "must be a list of 3 finite numbers";
        if (!v.is_array() || v.size() != 3) fail(key, need);
        std::array<float, 3> out{};
        for (size_t i = 0; i < 3; ++i) {
            if (!v[i].is_number()) fail(key, need);
            const double x = v[i].get<double>();
            out[i] = static_cast<float>(x);
            if (!std::isfinite(out[i]) || (positive && !(out[i] > 0))) fail(key, need);
        }
        return out;
    }

    /// The sub-object `key` (an empty object when absent and `required` is false).
    config_object object(const char* key, bool required) const {
        static const nlohmann::json empty = nlohmann::json::object();
        if (!has(key)) {
            if (required) fail(key, "is required (an object)");
            return {empty, key_name(key), where};
        }
        if (!json[key].is_object()) fail(key, "must be an object");
        return {json[key], key_name(key), where};
    }

    activation act(const char* key) const {
        const std::string name = string(key, "quick_gelu");
        if (name == "quick_gelu") return activation::quick_gelu;
        if (name == "gelu") return activation::gelu;
        fail(key, "is an unsupported activation (quick_gelu or gelu)");
    }
};

/// A JSON object parsed from `text`; errc::format naming `where` when it is not valid JSON or
/// not an object.
inline nlohmann::json parse_json_object(const std::string& text, const std::string& where) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        ZEROCLIP_THROW(errc::format, where + ": not valid JSON: " + e.what());
    }
    if (!j.is_object()) ZEROCLIP_THROW(errc::format, where + ": not a JSON object");
    return j;
}

/// The checks across keys (divisibility, the ResNet's constraints).
inline void validate(const clip_config& c, const std::string& where) {
    auto bad = [&](const std::string& what) { ZEROCLIP_THROW(errc::format, where + ": config: " + what); };
    const auto& v = c.vision;
    if (v.is_resnet()) {
        if (v.image_size % 32) bad("ResNet image_size " + std::to_string(v.image_size) + " is not a multiple of 32");
        if (v.width % 2) bad("ResNet width " + std::to_string(v.width) + " is odd");
        if (v.resnet_embed_width() % v.heads)
            bad("ResNet width*32 = " + std::to_string(v.resnet_embed_width()) + " is not divisible by heads = " +
                std::to_string(v.heads));
    } else {
        if (v.type != "vit") bad("unknown vision type '" + v.type + "' (vit or resnet)");
        if (v.image_size % v.patch_size)
            bad("vision image_size " + std::to_string(v.image_size) + " is not a multiple of patch_size " +
                std::to_string(v.patch_size));
        if (v.width % v.heads)
            bad("vision width " + std::to_string(v.width) + " is not divisible by heads = " + std::to_string(v.heads));
    }
    const auto& t = c.text;
    if (t.width % t.heads)
        bad("text width " + std::to_string(t.width) + " is not divisible by heads = " + std::to_string(t.heads));
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
    using detail::max_config_width;
    const detail::config_object top{j, "", where};
    clip_config c;
    c.embed_dim = top.integer("embed_dim", std::nullopt, 1, max_config_width);
    const auto act = top.act("hidden_act");
    const double eps = top.positive_number("layer_norm_eps", 1e-5, 1.0);
    const auto v = top.object("vision", true);
    c.vision.type = v.string("type", "vit");
    if (c.vision.type != "vit" && c.vision.type != "resnet") v.fail("type", "must be \"vit\" or \"resnet\"");
    c.vision.width = v.integer("width", std::nullopt, 1, max_config_width);
    c.vision.heads = v.integer("heads", std::nullopt, 1, max_config_width);
    c.vision.image_size = v.integer("image_size", std::nullopt, 1, detail::max_config_image_size);
    if (c.vision.is_resnet()) {
        const std::string need = "must list the blocks of the 4 ResNet stages, integers in [1, " +
                                 std::to_string(detail::max_config_layers) + "]";
        if (!v.has("layers") || !v.json["layers"].is_array() || v.json["layers"].size() != 4) v.fail("layers", need);
        for (size_t s = 0; s < 4; ++s) {
            const nlohmann::json& n = v.json["layers"][s];
            if (!detail::in_range(n, 1, detail::max_config_layers)) v.fail("layers", need);
            c.vision.resnet_layers[s] = n.get<int>();
        }
        c.vision.patch_size = 32;  // the ResNet's total downsampling, for grid()
    } else {
        c.vision.layers = v.integer("layers", std::nullopt, 1, detail::max_config_layers);
        c.vision.patch_size = v.integer("patch_size", std::nullopt, 1, c.vision.image_size);
        c.vision.mlp_width = v.integer("mlp_width", int64_t{c.vision.width} * 4, 1, 4 * max_config_width);
    }
    c.vision.act = act;
    c.vision.layer_norm_eps = eps;
    const auto t = top.object("text", true);
    c.text.width = t.integer("width", std::nullopt, 1, max_config_width);
    c.text.layers = t.integer("layers", std::nullopt, 1, detail::max_config_layers);
    c.text.heads = t.integer("heads", std::nullopt, 1, max_config_width);
    c.text.context_length = t.integer("context_length", 77, 2, detail::max_config_context);
    c.text.vocab_size = t.integer("vocab_size", 49408, 3, detail::max_config_vocab);
    c.text.mlp_width = t.integer("mlp_width", int64_t{c.text.width} * 4, 1, 4 * max_config_width);
    c.text.act = act;
    c.text.layer_norm_eps = eps;
    c.image_mean = top.triple("image_mean", c.image_mean, false);
    c.image_std = top.triple("image_std", c.image_std, true);
    detail::validate(c, where);
    return c;
}

/// Parses a Hugging Face CLIPConfig (`config.json`); `preprocessor_json` (may be empty) supplies
/// image_mean / image_std from `preprocessor_config.json` (named `preprocessor_where` in messages).
inline clip_config parse_hf_config(const std::string& json_text, const std::string& preprocessor_json,
                                   const std::string& where, const std::string& preprocessor_where = "") {
    const nlohmann::json j = detail::parse_json_object(json_text, where);
    using detail::max_config_width;
    using detail::max_config_layers;
    const detail::config_object top{j, "", where};
    const auto v = top.object("vision_config", false);
    const auto t = top.object("text_config", false);
    clip_config c;
    c.embed_dim = top.integer("projection_dim", 512, 1, max_config_width);
    c.vision.type = "vit";
    c.vision.width = v.integer("hidden_size", 768, 1, max_config_width);
    c.vision.layers = v.integer("num_hidden_layers", 12, 1, max_config_layers);
    c.vision.heads = v.integer("num_attention_heads", 12, 1, max_config_width);
    c.vision.image_size = v.integer("image_size", 224, 1, detail::max_config_image_size);
    c.vision.patch_size = v.integer("patch_size", 32, 1, c.vision.image_size);
    c.vision.mlp_width = v.integer("intermediate_size", 3072, 1, 4 * max_config_width);
    c.vision.act = v.act("hidden_act");
    c.vision.layer_norm_eps = v.positive_number("layer_norm_eps", 1e-5, 1.0);
    c.text.width = t.integer("hidden_size", 512, 1, max_config_width);
    c.text.layers = t.integer("num_hidden_layers", 12, 1, max_config_layers);
    c.text.heads = t.integer("num_attention_heads", 8, 1, max_config_width);
    c.text.context_length = t.integer("max_position_embeddings", 77, 2, detail::max_config_context);
    c.text.vocab_size = t.integer("vocab_size", 49408, 3, detail::max_config_vocab);
    c.text.mlp_width = t.integer("intermediate_size", 2048, 1, 4 * max_config_width);
    c.text.act = t.act("hidden_act");
    c.text.layer_norm_eps = t.positive_number("layer_norm_eps", 1e-5, 1.0);
    if (!preprocessor_json.empty()) {
        const std::string pwhere = preprocessor_where.empty() ? where + " (preprocessor_config.json)" : preprocessor_where;
        const nlohmann::json p = detail::parse_json_object(preprocessor_json, pwhere);
        const detail::config_object pre{p, "", pwhere};
        c.image_mean = pre.triple("image_mean", c.image_mean, false);
        c.image_std = pre.triple("image_std", c.image_std, true);
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
