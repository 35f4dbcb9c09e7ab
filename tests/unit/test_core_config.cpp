// Config values are validated for type and range, never coerced: an integer key must hold a JSON
// integer within its bounds, image_mean/std exactly 3 finite numbers, layer_norm_eps a finite
// number > 0. Every error is errc::format naming the file, the key and the bad value.
#include <zeroclip/io/config_json.hpp>

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>

using namespace zeroclip;
using nlohmann::json;

namespace {

// A valid zeroclip config (the tiny ViT fixture's shapes).
json tiny_vit() {
    return json::parse(R"({"embed_dim": 32, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-05,
        "vision": {"type": "vit", "width": 128, "layers": 2, "heads": 2, "image_size": 64, "patch_size": 16,
                   "mlp_width": 512},
        "text": {"width": 64, "layers": 2, "heads": 1, "context_length": 77, "vocab_size": 49408,
                 "mlp_width": 256},
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]})");
}

json tiny_resnet() {
    json j = tiny_vit();
    j["vision"] = json::parse(R"({"type": "resnet", "width": 16, "layers": [1, 1, 1, 1], "heads": 8, "image_size": 64})");
    return j;
}

// Parsing `text` fails with errc::format naming the file, and every one of `needles`.
template <class Parse>
void expect_rejected(Parse parse, const std::string& text, std::initializer_list<std::string> needles) {
    try {
        parse(text);
        FAIL("accepted: " << text);
    } catch (const zeroclip::error& e) {
        const std::string what = e.what();
        CHECK_MESSAGE(e.code() == errc::format, what);
        CHECK_MESSAGE(what.find("model.safetensors") != std::string::npos, what);
        for (const auto& n : needles) CHECK_MESSAGE(what.find(n) != std::string::npos, "missing '" << n << "' in " << what);
    }
}

void expect_zeroclip_rejected(const json& j, std::initializer_list<std::string> needles) {
    expect_rejected([](const std::string& t) { parse_zeroclip_config(t, "model.safetensors"); }, j.dump(), needles);
}

void expect_hf_rejected(const std::string& text, std::initializer_list<std::string> needles) {
    expect_rejected([](const std::string& t) { parse_hf_config(t, "", "model.safetensors/config.json"); }, text, needles);
}

}  // namespace

TEST_CASE("config: the valid fixtures' configs still parse, unchanged") {
    const clip_config c = parse_zeroclip_config(tiny_vit().dump(), "m");
    CHECK(c.vision.layers == 2);
    CHECK(c.vision.mlp_width == 512);
    CHECK(c.text.heads == 1);
    CHECK(c.image_std[2] == doctest::Approx(0.27577711));
    CHECK(to_json(parse_zeroclip_config(to_json(c), "m")) == to_json(c));
    const clip_config r = parse_zeroclip_config(tiny_resnet().dump(), "m");
    CHECK(r.vision.resnet_layers[3] == 1);
    CHECK(r.vision.heads == 8);
    json no_mlp = tiny_vit();
    no_mlp["vision"].erase("mlp_width");
    CHECK(parse_zeroclip_config(no_mlp.dump(), "m").vision.mlp_width == 4 * 128);
}

TEST_CASE("config: the issue's coercions are errors naming the key and value") {
    json j = tiny_vit();
    j["vision"]["layers"] = 4294967299ull;  // 2^32 + 3 used to become 3
    expect_zeroclip_rejected(j, {"'vision.layers'", "4294967299", "[1, 1024]"});
    j = tiny_vit();
    j["vision"]["layers"] = 3.9;  // used to become 3
    expect_zeroclip_rejected(j, {"'vision.layers'", "3.9", "integer"});
    j = tiny_vit();
    j["text"]["heads"] = true;  // used to become 1
    expect_zeroclip_rejected(j, {"'text.heads'", "true"});
    j = tiny_vit();
    j["vision"]["heads"] = "2";
    expect_zeroclip_rejected(j, {"'vision.heads'", "\"2\""});
    j = tiny_vit();
    j["image_std"] = {0.2, 0.3};  // a 2-value std used to be ignored
    expect_zeroclip_rejected(j, {"'image_std'", "3 finite numbers"});
    expect_hf_rejected(R"({"vision_config": {"hidden_size": 1e10}})", {"'vision_config.hidden_size'", "10000000000"});
    expect_hf_rejected(R"({"vision_config": {"num_hidden_layers": 4294967299}})",
                       {"'vision_config.num_hidden_layers'", "4294967299"});
}

TEST_CASE("config: negative, zero, oversized and missing values") {
    json j = tiny_vit();
    j["vision"]["width"] = -128;
    expect_zeroclip_rejected(j, {"'vision.width'", "-128"});
    j = tiny_vit();
    j["text"]["layers"] = 0;
    expect_zeroclip_rejected(j, {"'text.layers'", "got 0"});
    j = tiny_vit();
    j["text"]["layers"] = 1025;
    expect_zeroclip_rejected(j, {"'text.layers'", "1025"});
    j = tiny_vit();
    j["embed_dim"] = 65537;
    expect_zeroclip_rejected(j, {"'embed_dim'", "65537"});
    j = tiny_vit();
    j["vision"]["width"] = 18446744073709551615ull;
    expect_zeroclip_rejected(j, {"'vision.width'", "18446744073709551615"});
    j = tiny_vit();
    j["text"]["context_length"] = 1;
    expect_zeroclip_rejected(j, {"'text.context_length'"});
    j = tiny_vit();
    j["text"]["vocab_size"] = -5;
    expect_zeroclip_rejected(j, {"'text.vocab_size'", "-5"});
    j = tiny_vit();
    j["vision"].erase("width");
    expect_zeroclip_rejected(j, {"'vision.width'", "is required"});
    j = tiny_vit();
    j.erase("embed_dim");
    expect_zeroclip_rejected(j, {"'embed_dim'", "is required"});
    j = tiny_vit();
    j["vision"]["patch_size"] = 128;  // larger than the image
    expect_zeroclip_rejected(j, {"'vision.patch_size'", "128"});
}

TEST_CASE("config: layer_norm_eps, image_mean and image_std must be finite, eps and std positive") {
    for (const char* eps : {"-1e-05", "0", "1e300", "\"1e-5\"", "true", "2"}) {
        json j = tiny_vit();
        j["layer_norm_eps"] = json::parse(eps);
        expect_zeroclip_rejected(j, {"'layer_norm_eps'"});
    }
    json j = tiny_vit();
    j["image_std"] = {0.2, 0.0, 0.3};
    expect_zeroclip_rejected(j, {"'image_std'", "> 0"});
    j["image_std"] = {0.2, -0.1, 0.3};
    expect_zeroclip_rejected(j, {"'image_std'"});
    j = tiny_vit();
    j["image_mean"] = json::parse("[0.5, 1e300, 0.5]");
    expect_zeroclip_rejected(j, {"'image_mean'"});
    j["image_mean"] = {0.5, 0.5, 0.5, 0.5};
    expect_zeroclip_rejected(j, {"'image_mean'"});
    j["image_mean"] = "0.5";
    expect_zeroclip_rejected(j, {"'image_mean'"});
    expect_hf_rejected(R"({"text_config": {"layer_norm_eps": -1e-5}})", {"'text_config.layer_norm_eps'", "-1e-05"});
    // preprocessor_config.json is named in its own errors.
    try {
        parse_hf_config("{}", R"({"image_std": [0.2, 0.3]})", "d/config.json", "d/preprocessor_config.json");
        FAIL("a 2-value image_std was accepted");
    } catch (const zeroclip::error& e) {
        CHECK(std::string(e.what()).find("d/preprocessor_config.json: config key 'image_std'") != std::string::npos);
    }
}

TEST_CASE("config: keys across each other, types and ResNet stages") {
    json j = tiny_vit();
    j["vision"]["heads"] = 3;  // does not divide 128
    expect_zeroclip_rejected(j, {"vision width 128", "heads = 3"});
    j = tiny_vit();
    j["vision"]["patch_size"] = 24;  // does not divide 64
    expect_zeroclip_rejected(j, {"image_size 64", "patch_size 24"});
    j = tiny_vit();
    j["vision"]["type"] = "transformer";
    expect_zeroclip_rejected(j, {"'vision.type'", "transformer"});
    j = tiny_vit();
    j["hidden_act"] = "swish";
    expect_zeroclip_rejected(j, {"'hidden_act'", "swish"});
    j = tiny_vit();
    j["text"] = "x";
    expect_zeroclip_rejected(j, {"'vision' and 'text' objects"});
    for (const char* layers : {"[1, 1, 1]", "[1, 2.5, 1, 1]", "[1, true, 1, 1]", "[1, 0, 1, 1]", "[1, 4294967297, 1, 1]",
                               "3"}) {
        json r = tiny_resnet();
        r["vision"]["layers"] = json::parse(layers);
        expect_zeroclip_rejected(r, {"'vision.layers'"});
    }
    json r = tiny_resnet();
    r["vision"]["image_size"] = 48;
    expect_zeroclip_rejected(r, {"multiple of 32"});
    expect_hf_rejected(R"({"vision_config": "big"})", {"'vision_config'", "object"});
    expect_hf_rejected(R"({"text_config": {"num_attention_heads": true}})", {"'text_config.num_attention_heads'"});
    expect_hf_rejected(R"({"projection_dim": 0})", {"'projection_dim'"});
    // Absent keys still take CLIPConfig's defaults.
    CHECK(parse_hf_config("{}", "", "c.json").vision.width == 768);
}

TEST_CASE("config: a value nested 100000 deep is reported, not dumped recursively") {
    const std::string deep = std::string(100000, '[') + std::string(100000, ']');
    json j = tiny_vit();
    j.erase("embed_dim");
    const std::string hostile = "{\"embed_dim\": " + deep + ", " + j.dump().substr(1);
    expect_rejected([](const std::string& t) { parse_zeroclip_config(t, "model.safetensors"); }, hostile,
                    {"'embed_dim'", "got an array"});
}
