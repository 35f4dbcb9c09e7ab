// The ModifiedResNet image encoder: tiny-rn (converted from its OpenAI state dict by
// weights_tools/convert.py, as a user would) against the official implementation's float64
// outputs, stage by stage for image 0, and checkpoints of the wrong architecture. Tolerances are the
// fixtures README's. The real RN50 size is checked against its own reference in test_real_size.cpp.
#include <zeroclip/zeroclip.hpp>

#include <cstdlib>
#include <sys/wait.h>

#include "../test_util.hpp"

#ifndef ZEROCLIP_PYTHON
#define ZEROCLIP_PYTHON "/usr/bin/python3"
#endif

using namespace zeroclip;
using test_util::fixtures;
using test_util::load_reference;
using test_util::relative_error;

namespace {

std::string shell_quoted(const std::string& s) { return "'" + s + "'"; }

/// Runs `weights_tools/<script> <args>` with the interpreter that has numpy; its exit status.
int run_weights_tool(const std::string& script, const std::string& args) {
    const std::string tool = test_util::source_dir() + "/weights_tools/" + script;
    const int status = std::system((shell_quoted(ZEROCLIP_PYTHON) + " " + shell_quoted(tool) + " " + args).c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/// tiny-rn in zeroclip's format, converted from its OpenAI state dict as a user would.
struct converted_tiny_rn {
    std::string dir = test_util::temp_dir("rn");
    std::string path = dir + "/tiny-rn.safetensors";
    int status = run_weights_tool("convert.py", shell_quoted(fixtures() + "/models/tiny-rn/openai_state_dict.pt") +
                                                    " " + shell_quoted(path));
    ~converted_tiny_rn() {
        std::remove(path.c_str());
        rmdir(dir.c_str());
    }
};

/// The converted tiny-rn file, made once per test process and removed at its exit.
const std::string& tiny_rn_file() {
    static const converted_tiny_rn file;
    REQUIRE_MESSAGE(file.status == 0, "weights_tools/convert.py failed on tiny-rn");
    return file.path;
}


/// Loading `path` throws zeroclip::error of category `code` whose message names `needle`.
void check_load_error(const std::string& path, errc code, const std::string& needle) {
    try {
        load_model(path);
        FAIL("loading " << path << " did not throw");
    } catch (const zeroclip::error& e) {
        CHECK(e.code() == code);
        const std::string message = e.what();
        CHECK_MESSAGE(message.find(needle) != std::string::npos, message);
    }
}

}  // namespace

TEST_CASE("tiny-rn converted by weights_tools/convert.py matches the float64 reference") {
    auto ref = load_reference("tiny-rn");
    model m = load_model(tiny_rn_file());
    REQUIRE(m.is_resnet());
    CHECK(m.config().vision.width == 16);
    CHECK(m.config().vision.heads == 8);
    tensor img = m.encode_image(ref.pixels);
    tensor txt = m.encode_text(ref.tokens);
    tensor img_ref = ref.f64("image_embeds_f64");
    REQUIRE(img.shape() == img_ref.shape());
    const double img_err = relative_error(img, img_ref);
    CHECK(img_err <= 2e-5);
    CHECK(relative_error(txt, ref.f64("text_embeds_f64")) <= 2e-5);
    double worst_cos = 0;
    for (int64_t i = 0; i < img.dim(0); ++i)
        worst_cos = std::max(worst_cos, test_util::one_minus_cos(img, img_ref, i, img.dim(1)));
    CHECK(worst_cos <= 1e-9);
    tensor logits = m.logits_per_image(img, txt);
    const double logit_err = test_util::max_abs_diff(logits, ref.f64("logits_per_image_f64"));
    CHECK(logit_err <= 1e-4);
    MESSAGE("tiny-rn image embeddings: relative error " << img_err << ", 1-cos " << worst_cos << ", logits "
                                                        << logit_err);
}

TEST_CASE("tiny-rn stem, stages and attention pool match the reference activations of image 0") {
    auto ref = load_reference("tiny-rn");
    const checkpoint ckpt = load_checkpoint(tiny_rn_file());
    const cpu_backend be;
    // The encoder's own parts, run one after the other as forward() does.
    auto net = models::modified_resnet<cpu_backend>::load(ckpt.weights.scope("visual"), be, ckpt.config.vision,
                                                        ckpt.config.embed_dim);
    tensor x = net.stem(be, ref.pixels.slice_rows(0, 1));
    CHECK(relative_error(x, ref.f64("debug_vision_stem")) <= 2e-5);
    const std::vector<models::bottleneck<cpu_backend>>* stages[4] = {&net.layer1, &net.layer2, &net.layer3,
                                                                    &net.layer4};
    for (int s = 0; s < 4; ++s) {
        CAPTURE(s);
        x = net.run_stage(be, *stages[s], x);
        tensor expected = ref.f64("debug_vision_layer" + std::to_string(s + 1));
        CHECK(x.shape() == shape_t{1, expected.dim(0), expected.dim(1), expected.dim(2)});
        const double err = relative_error(x, expected);
        CHECK(err <= 2e-5);
        MESSAGE("layer" << s + 1 << " relative error " << err);
    }
    tensor pooled = net.attnpool.forward(be, x);
    CHECK(relative_error(pooled, ref.f64("debug_vision_attnpool")) <= 2e-5);
}

TEST_CASE("tiny-rn: one image at a time gives the batch's embeddings") {
    auto ref = load_reference("tiny-rn");
    model m = load_model(tiny_rn_file());
    tensor all = m.encode_image(ref.pixels);
    const int64_t d = all.dim(1);
    for (int64_t i = 0; i < ref.pixels.dim(0); ++i) {
        tensor one = m.encode_image(ref.pixels.slice_rows(i, 1).clone());
        for (int64_t j = 0; j < d; ++j) CHECK(one[j] == doctest::Approx(all[i * d + j]).epsilon(1e-5));
    }
}

TEST_CASE("tiny-rn: the convolutions run on groups of images give the whole batch's bits") {
    // cpu_options::image_group splits the batch for the stem and the four stages (groups of 1, 3
    // and 4 of the 10 images: the last group short), the attention pool takes the gathered maps;
    // every kernel computes an image's values from it alone.
    auto ref = load_reference("tiny-rn");
    REQUIRE(ref.pixels.dim(0) == 10);
    for (precision p : {precision::fp32, precision::int8}) {
        INFO(std::string(precision_name(p)));
        const model whole = load_model(tiny_rn_file(), cpu_backend(cpu_options{p, true, /*image_group=*/0}));
        const tensor want = whole.encode_image(ref.pixels);
        for (int64_t group : {1, 3, 4}) {
            INFO("group " << group);
            const model grouped = load_model(tiny_rn_file(), cpu_backend(cpu_options{p, true, group}));
            const tensor got = grouped.encode_image(ref.pixels);
            REQUIRE(got.shape() == want.shape());
            CHECK(std::equal(want.begin(), want.end(), got.begin()));
        }
    }
}

TEST_CASE("ResNet checkpoints of the wrong architecture are refused with the tensor named") {
    auto file = safetensors_file::open(tiny_rn_file());
    std::map<std::string, tensor_to_write> tensors;
    for (const auto& [name, r] : file.tensors()) tensors[name] = {file.to_float(r), r.type};
    const std::string dir = test_util::temp_dir("rn_bad");

    auto wrong_shape = tensors;
    wrong_shape["visual.layer3.0.conv2.weight"].values = tensor({64, 64, 3, 1});
    save_safetensors(dir + "/shape.safetensors", wrong_shape, file.metadata());
    check_load_error(dir + "/shape.safetensors", errc::shape, "'visual.layer3.0.conv2.weight' has shape [64,64,3,1]");

    auto missing = tensors;
    missing.erase("visual.layer2.0.downsample.1.running_var");
    save_safetensors(dir + "/missing.safetensors", missing, file.metadata());
    check_load_error(dir + "/missing.safetensors", errc::format, "visual.layer2.0.downsample.1.running_var");

    auto extra = tensors;  // a second block in layer1 that the config does not declare
    extra["visual.layer1.1.conv1.weight"] = tensors["visual.layer1.0.conv3.weight"];
    save_safetensors(dir + "/extra.safetensors", extra, file.metadata());
    check_load_error(dir + "/extra.safetensors", errc::shape, "bottleneck blocks its config declares in layer1");

    for (const char* f : {"/shape.safetensors", "/missing.safetensors", "/extra.safetensors"})
        std::remove((dir + f).c_str());
    rmdir(dir.c_str());
}
