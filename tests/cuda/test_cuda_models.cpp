// Whole models on the GPU: the tiny fixtures (loaded with load_model<cuda_cublas>, as a user
// would) against cpu_backend (≤ 1e-4 relative) and against the official float64 reference (the
// fixtures README's tolerances); random models of the real ViT-B/32 and RN50 shapes against
// cpu_backend, and the real-size references (tests/real_size.hpp) against the official float64
// outputs; the reduced-precision modes; concurrent use. Skips without a GPU (or, outside CI, fixtures).
#include <sys/wait.h>

#include <thread>

#include "../real_size.hpp"
#include "cuda_test_util.hpp"

#ifndef ZEROCLIP_PYTHON
#define ZEROCLIP_PYTHON "python3"
#endif

using namespace zeroclip;
using cuda_test::gpu;
using test_util::fixtures;
using test_util::load_reference;
using test_util::reference;

namespace {

using gpu_model = models::clip_model<cuda_cublas>;

/// A missing fixture skips the case (counted by scripts/test.sh), and fails it in CI.
#define CUDA_TEST_REQUIRE_FIXTURE(relative) \
    if (!test_util::have_fixture(fixtures() + "/" + (relative))) return

tensor normalized(const tensor& x) {
    tensor y = x.clone();
    const int64_t w = x.shape().back();
    for (int64_t r = 0; r < x.numel() / w; ++r) {
        double n = 0;
        for (int64_t i = 0; i < w; ++i) n += static_cast<double>(x[r * w + i]) * x[r * w + i];
        for (int64_t i = 0; i < w; ++i) y[r * w + i] = static_cast<float>(x[r * w + i] / std::sqrt(n));
    }
    return y;
}

tensor softmax_host(const tensor& logits) {
    tensor p = logits.clone();
    const int64_t m = logits.shape().back();
    for (int64_t r = 0; r < logits.dim(0); ++r) {
        double mx = -1e300, sum = 0;
        for (int64_t j = 0; j < m; ++j) mx = std::max(mx, static_cast<double>(logits[r * m + j]));
        for (int64_t j = 0; j < m; ++j) sum += std::exp(logits[r * m + j] - mx);
        for (int64_t j = 0; j < m; ++j) p[r * m + j] = static_cast<float>(std::exp(logits[r * m + j] - mx) / sum);
    }
    return p;
}

std::vector<int64_t> top1(const tensor& scores) {
    const int64_t m = scores.shape().back();
    std::vector<int64_t> best;
    for (int64_t r = 0; r < scores.numel() / m; ++r)
        best.push_back(std::max_element(scores.data() + r * m, scores.data() + (r + 1) * m) - (scores.data() + r * m));
    return best;
}

/// The GPU model against the float64 reference with the fixtures README's limits.
void check_against_reference(const gpu_model& m, const reference& ref) {
    const tensor img = m.encode_image(ref.pixels), txt = m.encode_text(ref.tokens);
    const tensor img_ref = ref.f64("image_embeds_f64"), txt_ref = ref.f64("text_embeds_f64");
    const double img_err = test_util::max_abs_diff(img, img_ref) / std::max(1.0, test_util::max_abs(img_ref));
    const double txt_err = test_util::max_abs_diff(txt, txt_ref) / std::max(1.0, test_util::max_abs(txt_ref));
    CHECK(img_err <= 2e-5);
    CHECK(txt_err <= 2e-5);
    CHECK(test_util::max_abs_diff(normalized(img), ref.f64("image_embeds_norm_f64")) <= 5e-6);
    CHECK(test_util::max_abs_diff(normalized(txt), ref.f64("text_embeds_norm_f64")) <= 5e-6);
    const int64_t d = img.dim(1);
    for (int64_t i = 0; i < img.dim(0); ++i) CHECK(test_util::one_minus_cos(img, img_ref, i, d) <= 1e-9);
    for (int64_t i = 0; i < txt.dim(0); ++i) CHECK(test_util::one_minus_cos(txt, txt_ref, i, d) <= 1e-9);
    const tensor logits = m.logits_per_image(img, txt);
    CHECK(test_util::max_abs_diff(logits, ref.f64("logits_per_image_f64")) <= 1e-4);
    const tensor probs = softmax_host(logits), probs_ref = ref.f64("probs_f64");
    CHECK(test_util::max_abs_diff(probs, probs_ref) <= 1e-5);
    CHECK(top1(probs) == top1(probs_ref));
    CHECK(std::abs(m.logit_scale() - ref.f64("logit_scale_exp_f64")[0]) <= 1e-5 * m.logit_scale());
    MESSAGE("GPU vs float64 reference: relative error image " << img_err << ", text " << txt_err);
}

/// GPU and CPU models of the same checkpoint agree within `bound` (relative) on `pixels` and `tokens`.
void check_gpu_vs_cpu(const gpu_model& g, const models::clip_model<cpu_backend>& c, const tensor& pixels,
                      const token_tensor& tokens, double bound) {
    const tensor gi = g.encode_image(pixels), ci = c.encode_image(pixels);
    const tensor gt = g.encode_text(tokens), ct = c.encode_text(tokens);
    const double img_err = cuda_test::relative_error(gi, ci), txt_err = cuda_test::relative_error(gt, ct);
    CHECK(img_err <= bound);
    CHECK(txt_err <= bound);
    CUDA_TEST_CLOSE(g.logits_per_image(gi, gt), c.logits_per_image(ci, ct), bound);
    MESSAGE("GPU vs CPU: relative error image " << img_err << ", text " << txt_err);
}

int run_weights_tool(const std::string& script, const std::string& args) {
    const std::string cmd = std::string("'") + ZEROCLIP_PYTHON + "' '" + test_util::source_dir() + "/weights_tools/" +
                            script + "' " + args;
    const int status = std::system(cmd.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/// tiny-rn converted to zeroclip's format by weights_tools/convert.py (once per process); empty
/// when the converter cannot run (no Python 3 with numpy): an environment problem, not a GPU one.
const std::string& tiny_rn_file() {
    static const std::string path = [] {
        const std::string out = test_util::temp_dir("cuda_rn") + "/tiny-rn.safetensors";
        const int rc = run_weights_tool("convert.py", "'" + fixtures() + "/models/tiny-rn/openai_state_dict.pt' '" +
                                                          out + "' >/dev/null");
        return rc == 0 ? out : std::string();
    }();
    return path;
}

/// tiny-rn needs its fixture and weights_tools/convert.py (Python 3 with numpy): a missing tool
/// fails the case, as a missing fixture does in CI.
#define CUDA_TEST_REQUIRE_TINY_RN()                                                                  \
    CUDA_TEST_REQUIRE_FIXTURE("models/tiny-rn/openai_state_dict.pt");                                \
    REQUIRE_MESSAGE(!tiny_rn_file().empty(), "weights_tools/convert.py could not convert tiny-rn (needs " \
                                             "Python 3 with numpy, ZEROCLIP_PYTHON=" ZEROCLIP_PYTHON ")")

}  // namespace

TEST_SUITE("cuda") {

TEST_CASE("tiny-vit (Hugging Face folder) on the GPU matches cpu_backend and the float64 reference") {
    CUDA_TEST_REQUIRE_GPU();
    CUDA_TEST_REQUIRE_FIXTURE("models/tiny-vit/hf");
    const auto ref = load_reference("tiny-vit");
    const std::string path = fixtures() + "/models/tiny-vit/hf";
    const gpu_model g = load_model<cuda_cublas>(path);
    const auto c = load_model(path);
    CHECK(g.config().vision.heads == 2);
    check_gpu_vs_cpu(g, c, ref.pixels, ref.tokens, 1e-4);
    check_against_reference(g, ref);
}

TEST_CASE("tiny-rn (converted OpenAI state dict) on the GPU matches cpu_backend and the float64 reference") {
    CUDA_TEST_REQUIRE_GPU();
    CUDA_TEST_REQUIRE_TINY_RN();
    const auto ref = load_reference("tiny-rn");
    const gpu_model g = load_model<cuda_cublas>(tiny_rn_file());
    const auto c = load_model(tiny_rn_file());
    CHECK(g.is_resnet());
    check_gpu_vs_cpu(g, c, ref.pixels, ref.tokens, 1e-4);
    check_against_reference(g, ref);
}

TEST_CASE("random models of the real ViT-B/32 and RN50 shapes: GPU matches cpu_backend within 1e-4") {
    CUDA_TEST_REQUIRE_GPU();
    for (const auto& cfg : {test_util::vit_b32(), test_util::rn50()}) {
        CAPTURE(cfg.vision.type);
        const checkpoint ck = test_util::random_checkpoint(cfg, cuda_test::seed());
        const gpu_model g(ck, gpu());
        const models::clip_model<cpu_backend> c(ck);
        check_gpu_vs_cpu(g, c, test_util::random_pixels(3, 224, cuda_test::seed() + 1),
                         test_util::random_tokens(4, 77, 5, 20, cuda_test::seed() + 2), 1e-4);
    }
}

TEST_CASE("ViT-B/32, ViT-B/16 and RN50 on the GPU match the official float64 outputs (tests/data/real_size)") {
    CUDA_TEST_REQUIRE_GPU();
    for (const std::string name : {"vit-b32", "vit-b16", "rn50"}) {
        CAPTURE(name);
        const gpu_model g = load_model<cuda_cublas>(test_util::real_size_weights(name));
        test_util::check_against_real_size_reference(g, test_util::load_real_size_reference(name));
    }
}

TEST_CASE("a small random ResNet with several blocks per stage: GPU matches cpu_backend within 1e-4") {
    CUDA_TEST_REQUIRE_GPU();
    const auto cfg = test_util::resnet_config(64, {2, 3, 2, 2}, 32, 96, 128, 2);
    const checkpoint ck = test_util::random_checkpoint(cfg, cuda_test::seed() + 3);
    check_gpu_vs_cpu(gpu_model(ck, gpu()), models::clip_model<cpu_backend>(ck), test_util::random_pixels(5, 96, 4),
                     test_util::random_tokens(3, 77, 2, 77, 5), 1e-4);
}

TEST_CASE("one image at a time on the GPU gives the batch's embeddings") {
    CUDA_TEST_REQUIRE_GPU();
    CUDA_TEST_REQUIRE_FIXTURE("models/tiny-vit/hf");
    const auto ref = load_reference("tiny-vit");
    const gpu_model g(load_checkpoint(fixtures() + "/models/tiny-vit/hf"), gpu());
    const tensor batch = g.encode_image(ref.pixels);
    for (int64_t i = 0; i < ref.pixels.dim(0); ++i) {
        const tensor one = g.encode_image(ref.pixels.slice_rows(i, 1).clone());
        CUDA_TEST_CLOSE(one, batch.slice_rows(i, 1).clone(), 1e-5);
    }
}

TEST_CASE("TF32, FP16 and BF16 GEMMs keep the zero-shot top-1 of tiny-vit and tiny-rn") {
    CUDA_TEST_REQUIRE_GPU();
    CUDA_TEST_REQUIRE_FIXTURE("models/tiny-vit/hf");
    CUDA_TEST_REQUIRE_TINY_RN();
    for (const std::string model : {"tiny-vit", "tiny-rn"}) {
        CAPTURE(model);
        const auto ref = load_reference(model);
        const checkpoint ck = load_checkpoint(model == "tiny-vit" ? fixtures() + "/models/tiny-vit/hf" : tiny_rn_file());
        const tensor ref_img = ref.f64("image_embeds_f64");
        const auto expected = top1(ref.f64("probs_f64"));
        for (cuda_math math : {cuda_math::tf32, cuda_math::fp16, cuda_math::bf16}) {
            const std::string mode_name = cuda_math_name(math);
            CAPTURE(mode_name);
            const gpu_model g(ck, gpu(math));
            const tensor img = g.encode_image(ref.pixels), txt = g.encode_text(ref.tokens);
            double worst = 0;
            for (int64_t i = 0; i < img.dim(0); ++i)
                worst = std::max(worst, test_util::one_minus_cos(img, ref_img, i, img.dim(1)));
            CHECK(worst <= (math == cuda_math::bf16 ? 1e-3 : 1e-4));
            CHECK(top1(g.logits_per_image(img, txt)) == expected);
            MESSAGE(model << " " << mode_name << ": worst 1-cos vs float64 " << worst);
        }
    }
}

TEST_CASE("a GPU model used from several threads at once gives the single-thread embeddings") {
    CUDA_TEST_REQUIRE_GPU();
    const auto cfg = test_util::vit_config(64, 128, 2, 16, 64, 64, 2);
    const gpu_model g(test_util::random_checkpoint(cfg, cuda_test::seed() + 6), gpu());
    const tensor pixels = test_util::random_pixels(4, 64, 7);
    const token_tensor tokens = test_util::random_tokens(6, 77, 3, 30, 8);
    const tensor img = g.encode_image(pixels), txt = g.encode_text(tokens);
    std::vector<std::thread> threads;
    std::vector<double> errors(8, 1.0);
    for (size_t t = 0; t < errors.size(); ++t)
        threads.emplace_back([&, t] {
            double worst = 0;
            for (int i = 0; i < 5; ++i) {
                worst = std::max(worst, test_util::max_abs_diff(g.encode_image(pixels), img));
                worst = std::max(worst, test_util::max_abs_diff(g.encode_text(tokens), txt));
            }
            errors[t] = worst;
        });
    for (auto& th : threads) th.join();
    for (double e : errors) CHECK(e == 0.0);
}

}  // TEST_SUITE("cuda")
