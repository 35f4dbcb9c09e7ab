// Checkpoint loading: the safetensors reader's validation (every malformed file gives a
// zeroclip::error naming the file and tensor) and config parsing. Models of the real ViT-B sizes are
// checked against their references in test_real_size.cpp.
#include <zeroclip/zeroclip.hpp>

#include "../random_model.hpp"
#include "../test_util.hpp"

using namespace zeroclip;

namespace {

// Writes a safetensors file from a raw header text and data bytes (header length is exact).
std::string write_raw(const std::string& dir, const std::string& header, size_t data_bytes,
                      uint64_t declared_len = 0) {
    std::string path = dir + "/raw.safetensors";
    std::ofstream out(path, std::ios::binary);
    uint64_t len = declared_len ? declared_len : header.size();
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>(len >> (8 * i)));
    out << header << std::string(data_bytes, '\0');
    return path;
}

void expect_format_error(const std::string& path, const std::string& needle) {
    try {
        safetensors_file::open(path);
        FAIL("no error for a malformed file (expected: " << needle << ")");
    } catch (const zeroclip::error& e) {
        CHECK(e.code() == errc::format);
        CHECK_MESSAGE(std::string(e.what()).find(path) != std::string::npos, e.what());
        CHECK_MESSAGE(std::string(e.what()).find(needle) != std::string::npos, e.what());
    }
}

std::string copy_tiny_vit(const std::string& tag) {
    std::string dir = test_util::temp_dir(tag);
    for (const char* f : {"config.json", "vocab.json", "merges.txt", "model.safetensors"}) {
        std::ifstream in(test_util::fixtures() + "/models/tiny-vit/hf/" + f, std::ios::binary);
        std::ofstream(dir + "/" + f, std::ios::binary) << in.rdbuf();
    }
    return dir;
}

}  // namespace

TEST_CASE("malformed safetensors files give clear errors") {
    const std::string dir = test_util::temp_dir("malformed");
    const std::string t = R"("a": {"dtype": "F32", "shape": [2, 2], "data_offsets": )";
    SUBCASE("file shorter than the length prefix") {
        std::ofstream(dir + "/short.safetensors") << "abc";
        expect_format_error(dir + "/short.safetensors", "shorter than the 8-byte header");
    }
    SUBCASE("header length larger than the file") {
        expect_format_error(write_raw(dir, "{}", 0, 1u << 30), "larger than the file");
    }
    SUBCASE("invalid JSON") { expect_format_error(write_raw(dir, "{\"a\": [1, 2", 0), "not valid JSON"); }
    SUBCASE("offset past the end (truncated data)") {
        expect_format_error(write_raw(dir, "{" + t + "[0, 16]}}", 8), "past the end");
    }
    SUBCASE("overlapping tensors") {
        std::string h = "{" + t + "[0, 16]}, " + R"("b": {"dtype": "F32", "shape": [2, 2], "data_offsets": [8, 24]}})";
        expect_format_error(write_raw(dir, h, 24), "overlap");
    }
    SUBCASE("dtype x shape does not match the byte length") {
        std::string h = R"({"a": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 16]}})";
        expect_format_error(write_raw(dir, h, 16), "8 bytes but data_offsets span 16");
    }
    SUBCASE("unknown dtype") {
        std::string h = R"({"a": {"dtype": "F8", "shape": [2], "data_offsets": [0, 2]}})";
        expect_format_error(write_raw(dir, h, 2), "unknown dtype");
    }
    SUBCASE("negative dimension") {
        std::string h = R"({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})";
        expect_format_error(write_raw(dir, h, 4), "negative");
    }
    SUBCASE("metadata that is not strings") {
        std::string h = R"({"__metadata__": {"x": 1}})";
        expect_format_error(write_raw(dir, h, 0), "not a string");
    }
    SUBCASE("huge declared shape") {
        std::string h = R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 4]}})";
        expect_format_error(write_raw(dir, h, 4), "absurdly large");
    }
}

TEST_CASE("a truncated checkpoint file is refused before use") {
    std::string dir = copy_tiny_vit("truncated");
    std::string path = dir + "/model.safetensors";
    std::string bytes = read_file(path);
    std::ofstream(path, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
    CHECK_THROWS_WITH_AS(load_model(dir), doctest::Contains("may be truncated"), zeroclip::error);
}

TEST_CASE("missing tensors, wrong shapes and wrong dtypes name the tensor") {
    std::string dir = copy_tiny_vit("edited");
    auto original = safetensors_file::open(test_util::fixtures() + "/models/tiny-vit/hf/model.safetensors");
    std::map<std::string, tensor_to_write> tensors;
    for (const auto& [name, r] : original.tensors())
        if (r.type == dtype::f16) tensors[name] = {original.to_float(r), dtype::f16};
    SUBCASE("missing") {
        tensors.erase("vision_model.post_layernorm.weight");
        save_safetensors(dir + "/model.safetensors", tensors);
        CHECK_THROWS_WITH_AS(load_model(dir), doctest::Contains("'visual.ln_post.weight' is missing"),
                             zeroclip::error);
    }
    SUBCASE("wrong shape") {
        tensors["text_model.final_layer_norm.bias"].values = tensor({65});
        save_safetensors(dir + "/model.safetensors", tensors);
        try {
            load_model(dir);
            FAIL("no error");
        } catch (const zeroclip::error& e) {
            CHECK(e.code() == errc::shape);
            CHECK(std::string(e.what()) == "[zeroclip.shape] " + dir +
                                               "/model.safetensors: tensor 'ln_final.bias' has shape [65], expected [64]");
        }
    }
    SUBCASE("a layer more than the config declares") {
        tensors["vision_model.encoder.layers.2.layer_norm1.weight"] = {tensor({128}), dtype::f16};
        save_safetensors(dir + "/model.safetensors", tensors);
        CHECK_THROWS_WITH_AS(load_model(dir), doctest::Contains("more than the 2 transformer blocks"), zeroclip::error);
    }
    SUBCASE("integer dtype where floats are needed") {
        // An integer tensor under a weight's name is reported with its dtype, not as missing.
        save_safetensors(dir + "/model.safetensors", tensors);
        std::string bytes = read_file(dir + "/model.safetensors");
        auto at = bytes.find("\"text_model.final_layer_norm.bias\":{\"data_offsets\":");
        REQUIRE(at != std::string::npos);
        auto dt = bytes.find("\"F16\"", at);
        bytes.replace(dt, 5, "\"I16\"");
        std::ofstream(dir + "/model.safetensors", std::ios::binary) << bytes;
        CHECK_THROWS_WITH_AS(load_model(dir), doctest::Contains("'ln_final.bias' has dtype I16, expected a float type"),
                             zeroclip::error);
    }
}

TEST_CASE("folders and files that are not checkpoints") {
    std::string dir = test_util::temp_dir("empty");
    CHECK_THROWS_WITH_AS(load_model(dir), doctest::Contains("no config.json"), zeroclip::error);
    CHECK_THROWS_WITH_AS(load_model(dir + "/nope.safetensors"), doctest::Contains("cannot open"), zeroclip::error);
    std::ofstream(dir + "/config.json") << "{not json";
    CHECK_THROWS_WITH_AS(load_model(dir), doctest::Contains("not valid JSON"), zeroclip::error);
    // A plain safetensors file without zeroclip's config metadata.
    save_safetensors(dir + "/plain.safetensors", {{"x", {tensor({2}), dtype::f32}}});
    CHECK_THROWS_WITH_AS(load_model(dir + "/plain.safetensors"), doctest::Contains("convert.py"), zeroclip::error);
}

TEST_CASE("Hugging Face configs: defaults for absent keys, ViT-L/14 and L/14@336px") {
    clip_config d = parse_hf_config("{}", "", "config.json");
    CHECK(d.embed_dim == 512);
    CHECK(d.vision.width == 768);
    CHECK(d.vision.patch_size == 32);
    CHECK(d.vision.mlp_width == 3072);
    CHECK(d.text.heads == 8);
    CHECK(d.text.act == activation::quick_gelu);
    const std::string l14 = R"({"projection_dim": 768,
        "text_config": {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                        "num_hidden_layers": 12, "projection_dim": 768},
        "vision_config": {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
                          "num_hidden_layers": 24, "patch_size": 14, "image_size": IMAGE, "projection_dim": 768}})";
    for (int size : {224, 336}) {
        std::string text = l14;
        text.replace(text.find("IMAGE"), 5, std::to_string(size));
        clip_config c = parse_hf_config(text, "", "config.json");
        CHECK(c.vision.width == 1024);
        CHECK(c.vision.layers == 24);
        CHECK(c.vision.heads == 16);
        CHECK(c.vision.grid() == size / 14);
        CHECK(c.text.width == 768);
        CHECK(c.embed_dim == 768);
    }
    CHECK_THROWS_WITH_AS(parse_hf_config(R"({"vision_config": {"patch_size": 0}})", "", "c.json"),
                         doctest::Contains("patch_size"), zeroclip::error);
    CHECK_THROWS_WITH_AS(parse_hf_config(R"({"text_config": {"hidden_act": "swish"}})", "", "c.json"),
                         doctest::Contains("unsupported activation"), zeroclip::error);
    // zeroclip's own config round-trips.
    clip_config b32 = test_util::vit_b32();
    clip_config back = parse_zeroclip_config(to_json(b32), "m");
    CHECK(to_json(back) == to_json(b32));
}

