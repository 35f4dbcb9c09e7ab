// The CLIP encoders against the official implementation's float64 outputs (shared fixtures), and
// models of the real ViT-B shapes. Tolerances are the fixtures README's (float32 arithmetic vs the
// float64 reference, ~10-30x headroom over what PyTorch's own float32 reaches).
#include <zeroclip/zeroclip.hpp>

#include <thread>

#include "../test_util.hpp"

using namespace zeroclip;
using test_util::fixtures;
using test_util::load_reference;
using test_util::reference;

namespace {

// Checks embeddings and logits of `m` against the reference; returns the worst relative error.
double check_against_reference(const model& m, const reference& ref) {
    tensor img = m.encode_image(ref.pixels);
    tensor txt = m.encode_text(ref.tokens);
    tensor img_ref = ref.f64("image_embeds_f64"), txt_ref = ref.f64("text_embeds_f64");
    // npz float64 arrays are narrowed to float32 here: that costs ≤ 6e-8 relative, far below the limits.
    const double img_err = test_util::max_abs_diff(img, img_ref) / std::max(1.0, test_util::max_abs(img_ref));
    const double txt_err = test_util::max_abs_diff(txt, txt_ref) / std::max(1.0, test_util::max_abs(txt_ref));
    CHECK(img_err <= 2e-5);
    CHECK(txt_err <= 2e-5);
    const int64_t d = img.dim(1);
    for (int64_t i = 0; i < img.dim(0); ++i) CHECK(test_util::one_minus_cos(img, img_ref, i, d) <= 1e-9);
    for (int64_t i = 0; i < txt.dim(0); ++i) CHECK(test_util::one_minus_cos(txt, txt_ref, i, d) <= 1e-9);
    tensor logits = m.logits_per_image(img, txt);
    CHECK(test_util::max_abs_diff(logits, ref.f64("logits_per_image_f64")) <= 1e-4);
    CHECK(std::abs(m.logit_scale() - ref.f64("logit_scale_exp_f64")[0]) <= 1e-5 * m.logit_scale());
    MESSAGE("relative error: image " << img_err << ", text " << txt_err);
    return std::max(img_err, txt_err);
}

}  // namespace

TEST_CASE("tiny-vit from the Hugging Face folder (F16) matches the float64 reference") {
    auto ref = load_reference("tiny-vit");
    model m = load_model(fixtures() + "/models/tiny-vit/hf");
    CHECK(m.config().vision.width == 128);
    CHECK(m.config().vision.heads == 2);
    CHECK(m.weight_dtype() == "F16");
    check_against_reference(m, ref);
}

TEST_CASE("tiny-vit from an F32 copy written by the test matches the reference, weights used in place") {
    auto ref = load_reference("tiny-vit");
    auto hf = safetensors_file::open(fixtures() + "/models/tiny-vit/hf/model.safetensors");
    std::map<std::string, tensor_to_write> out;
    for (const auto& [name, r] : hf.tensors())
        if (r.type == dtype::f16) out[name] = {hf.to_float(r), dtype::f32};
    std::string dir = test_util::temp_dir("f32");
    for (const char* f : {"config.json", "vocab.json", "merges.txt", "preprocessor_config.json"}) {
        std::ifstream in(fixtures() + "/models/tiny-vit/hf/" + f, std::ios::binary);
        std::ofstream(dir + "/" + f, std::ios::binary) << in.rdbuf();
    }
    save_safetensors(dir + "/model.safetensors", out);
    model m = load_model(dir);
    CHECK(m.weight_dtype() == "F32");
    check_against_reference(m, ref);
}

TEST_CASE("token rows shorter than the context give the same embeddings (causal mask: exact)") {
    auto ref = load_reference("tiny-vit");
    model m = load_model(fixtures() + "/models/tiny-vit/hf");
    tensor full = m.encode_text(ref.tokens);
    int64_t longest = 0;
    for (int64_t r = 0; r < ref.tokens.dim(0); ++r)
        for (int64_t c = 0; c < 77; ++c)
            if (ref.tokens[r * 77 + c] == 49407) longest = std::max(longest, c + 1);
    token_tensor cropped({ref.tokens.dim(0), longest});
    for (int64_t r = 0; r < cropped.dim(0); ++r)
        std::copy_n(ref.tokens.data() + r * 77, longest, cropped.data() + r * longest);
    CHECK(test_util::max_abs_diff(m.encode_text(cropped), full) == 0.0);
    // One prompt at a time equals the batch (batching never mixes samples).
    for (int64_t r = 0; r < ref.tokens.dim(0); ++r) {
        token_tensor one({1, 77});
        std::copy_n(ref.tokens.data() + r * 77, 77, one.data());
        tensor e = m.encode_text(one);
        for (int64_t i = 0; i < e.numel(); ++i) CHECK(e[i] == doctest::Approx(full[r * e.numel() + i]).epsilon(1e-5));
    }
}

TEST_CASE("encoders reject inputs of the wrong shape with a clear error") {
    model m = load_model(fixtures() + "/models/tiny-vit/hf");
    CHECK_THROWS_AS(m.encode_image(tensor({1, 3, 32, 32})), zeroclip::error);
    CHECK_THROWS_AS(m.encode_text(token_tensor({1, 78})), zeroclip::error);
    token_tensor bad({1, 77});
    bad[0] = 49406, bad[1] = 60000;
    CHECK_THROWS_WITH_AS(m.encode_text(bad), doctest::Contains("outside the vocabulary"), zeroclip::error);
}

TEST_CASE("one loaded model encodes from several threads at once") {
    auto ref = load_reference("tiny-vit");
    const model m = load_model(fixtures() + "/models/tiny-vit/hf");
    const tensor img = m.encode_image(ref.pixels), txt = m.encode_text(ref.tokens);
    std::vector<double> worst(4, 0.0);
    std::vector<std::thread> threads;
    for (size_t t = 0; t < worst.size(); ++t)
        threads.emplace_back([&, t] {
            for (int round = 0; round < 3; ++round) {
                worst[t] = std::max(worst[t], test_util::max_abs_diff(m.encode_image(ref.pixels), img));
                worst[t] = std::max(worst[t], test_util::max_abs_diff(m.encode_text(ref.tokens), txt));
            }
        });
    for (auto& th : threads) th.join();
    for (double w : worst) CHECK(w <= 1e-6);
}

TEST_CASE("the tokenizer is built on first use: a malformed vocabulary is reported then, with the file") {
    checkpoint ck = load_checkpoint(fixtures() + "/models/tiny-vit/hf");
    ck.bpe_vocab_json = "{\"a\": 0, ";  // cut short
    const model m(ck);                  // loading does not read the vocabulary
    auto ref = load_reference("tiny-vit");
    CHECK(m.encode_image(ref.pixels).dim(0) == ref.pixels.dim(0));
    for (int attempt = 0; attempt < 2; ++attempt)  // the same clear error each time, no half-built state
        CHECK_THROWS_WITH_AS(m.tokenize({"a photo of a cat"}), doctest::Contains("tiny-vit/hf"), zeroclip::error);
}
