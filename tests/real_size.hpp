// References at the real CLIP sizes, for the CPU and the CUDA tests: ViT-B/32, ViT-B/16 and RN50
// with random weights of a fixed seed, and the float64 outputs of the official implementation for
// two fixture photos and three prompts (tests/data/real_size, made by scripts/make_real_size_refs.py,
// which says how). The weights are too large to commit: they are regenerated from the seed on first
// use into the build folder and checked against the digests recorded with the references.
#pragma once

#include <zeroclip/zeroclip.hpp>

#include <array>
#include <cstdlib>
#include <fstream>
#include <string>
#include <sys/wait.h>

#include "test_util.hpp"

#ifndef ZEROCLIP_PYTHON
#define ZEROCLIP_PYTHON "python3"
#endif
#ifndef ZEROCLIP_TEST_CACHE_DIR
#define ZEROCLIP_TEST_CACHE_DIR "/tmp/zeroclip_test_cache"
#endif

namespace test_util {

/// Path of the weights of `model` ("vit-b32", "vit-b16" or "rn50"), made on first use (about 20 s;
/// cached in ZEROCLIP_TEST_CACHE_DIR, the build folder) and checked on every use.
inline std::string real_size_weights(const std::string& model) {
    const std::string out = std::string(ZEROCLIP_TEST_CACHE_DIR) + "/" + model + ".safetensors";
    const std::string command = std::string("'") + ZEROCLIP_PYTHON + "' '" + source_dir() +
                                "/scripts/make_real_size_refs.py' weights --model " + model + " --out '" + out + "'";
    const int status = std::system(command.c_str());
    REQUIRE_MESSAGE((WIFEXITED(status) && WEXITSTATUS(status) == 0), "could not make the weights: " << command);
    return out;
}

/// A real-size model's float64 reference outputs and the inputs they were computed from.
struct real_size_reference {
    zeroclip::tensor pixels;        // [2, 3, 224, 224]
    zeroclip::token_tensor tokens;  // [3, 77]
    std::map<std::string, zeroclip::npy_array> arrays;
    zeroclip::tensor f64(const std::string& name) const { return arrays.at(name).to_float(); }
};

/// The inputs and outputs of tests/data/real_size/<model>.npz. The pixels are the fixtures' Pillow
/// crops (images/preprocessed/*_224.npy) normalised here as torchvision does: u8 / 255 in float32,
/// then (x - mean) / std in float32, with OpenAI's mean and std.
inline real_size_reference load_real_size_reference(const std::string& model) {
    const std::string data = source_dir() + "/tests/data/real_size/";
    const auto spec = nlohmann::json::parse(std::ifstream(data + "refs.json"));
    real_size_reference r;
    r.arrays = zeroclip::load_npz(data + model + ".npz");
    r.tokens = r.arrays.at("text_tokens").to_int32();
    const auto& images = spec.at("images");
    const std::array<float, 3> mean{0.48145466f, 0.4578275f, 0.40821073f}, stddev{0.26862954f, 0.26130258f, 0.27577711f};
    const int64_t n = static_cast<int64_t>(images.size()), s = 224;
    r.pixels = zeroclip::tensor({n, 3, s, s});
    for (int64_t i = 0; i < n; ++i) {
        const zeroclip::npy_array crop = zeroclip::load_npy(fixtures() + "/" + images[static_cast<size_t>(i)].get<std::string>());
        REQUIRE(crop.descr == "|u1");
        REQUIRE(crop.shape == zeroclip::shape_t{s, s, 3});
        for (int64_t c = 0; c < 3; ++c)
            for (int64_t p = 0; p < s * s; ++p) {
                const float x = static_cast<float>(crop.bytes[static_cast<size_t>(p * 3 + c)]) / 255.0f;
                r.pixels[((i * 3 + c) * s * s) + p] = (x - mean[static_cast<size_t>(c)]) / stddev[static_cast<size_t>(c)];
            }
    }
    return r;
}

/// Checks a model's embeddings, logits and probabilities against the reference with the fixtures
/// README's limits (the same as for the tiny fixtures): raw embeddings 2e-5 relative, 1 - cos
/// 1e-9, logits 1e-4, probabilities 1e-5 and the same top-1. Works for any backend's clip_model.
template <class Model>
void check_against_real_size_reference(const Model& m, const real_size_reference& ref) {
    const zeroclip::tensor img = m.encode_image(ref.pixels), txt = m.encode_text(ref.tokens);
    const zeroclip::tensor img_ref = ref.f64("image_embeds_f64"), txt_ref = ref.f64("text_embeds_f64");
    REQUIRE(img.shape() == img_ref.shape());
    REQUIRE(txt.shape() == txt_ref.shape());
    const double img_err = relative_error(img, img_ref), txt_err = relative_error(txt, txt_ref);
    CHECK(img_err <= 2e-5);
    CHECK(txt_err <= 2e-5);
    double worst_cos = 0;
    for (int64_t i = 0; i < img.dim(0); ++i) worst_cos = std::max(worst_cos, one_minus_cos(img, img_ref, i, img.dim(1)));
    for (int64_t i = 0; i < txt.dim(0); ++i) worst_cos = std::max(worst_cos, one_minus_cos(txt, txt_ref, i, txt.dim(1)));
    CHECK(worst_cos <= 1e-9);
    const zeroclip::tensor logits = m.logits_per_image(img, txt);
    const double logit_err = max_abs_diff(logits, ref.f64("logits_per_image_f64"));
    CHECK(logit_err <= 1e-4);
    // Probabilities: softmax over the prompts, in double, of the model's logits.
    const zeroclip::tensor probs_ref = ref.f64("probs_f64");
    const int64_t rows = logits.dim(0), cols = logits.dim(1);
    zeroclip::tensor probs({rows, cols});
    for (int64_t r = 0; r < rows; ++r) {
        double top = -HUGE_VAL, sum = 0;
        for (int64_t j = 0; j < cols; ++j) top = std::max(top, static_cast<double>(logits[r * cols + j]));
        for (int64_t j = 0; j < cols; ++j) sum += std::exp(logits[r * cols + j] - top);
        for (int64_t j = 0; j < cols; ++j) probs[r * cols + j] = static_cast<float>(std::exp(logits[r * cols + j] - top) / sum);
        const auto argmax = [&](const zeroclip::tensor& t) {
            return std::max_element(t.data() + r * cols, t.data() + (r + 1) * cols) - (t.data() + r * cols);
        };
        CHECK(argmax(probs) == argmax(probs_ref));
    }
    const double prob_err = max_abs_diff(probs, probs_ref);
    CHECK(prob_err <= 1e-5);
    const double scale_ref = ref.f64("logit_scale_exp_f64")[0];
    CHECK(std::abs(m.logit_scale() - scale_ref) <= 1e-5 * scale_ref);
    MESSAGE("vs the float64 reference: relative error image " << img_err << ", text " << txt_err << "; worst 1-cos "
                                                              << worst_cos << "; logits " << logit_err << "; probabilities "
                                                              << prob_err);
}

}  // namespace test_util
