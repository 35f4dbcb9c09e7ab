// The real sizes users run: ViT-B/32, ViT-B/16 and RN50 (random weights of a fixed seed, written by
// weights_tools/make_random.py as F16 zeroclip files, loaded with load_model) against the float64
// outputs of the official implementation (tests/real_size.hpp), at the tiny fixtures' limits.
#include <zeroclip/zeroclip.hpp>

#include <chrono>

#include "../random_model.hpp"
#include "../real_size.hpp"

using namespace zeroclip;

namespace {

/// Loads `name`'s weights, checks the architecture the file declares, and compares with the reference.
void check_real_size(const std::string& name, const clip_config& expected) {
    const std::string path = test_util::real_size_weights(name);
    const auto reference = test_util::load_real_size_reference(name);
    const auto t0 = std::chrono::steady_clock::now();
    const model m = load_model(path);
    const auto t1 = std::chrono::steady_clock::now();
    CHECK(m.weight_dtype() == "F16");
    const auto& v = m.config().vision;
    CHECK(v.type == expected.vision.type);
    CHECK(v.width == expected.vision.width);
    CHECK(v.heads == expected.vision.heads);
    CHECK(v.image_size == 224);
    if (v.type == "resnet") CHECK(v.resnet_layers == expected.vision.resnet_layers);
    else {
        CHECK(v.layers == expected.vision.layers);
        CHECK(v.patch_size == expected.vision.patch_size);
    }
    CHECK(m.config().embed_dim == expected.embed_dim);
    test_util::check_against_real_size_reference(m, reference);
    const auto t2 = std::chrono::steady_clock::now();
    using ms = std::chrono::duration<double, std::milli>;
    MESSAGE(name << ": load " << ms(t1 - t0).count() << " ms; 2 images and 3 prompts " << ms(t2 - t1).count() << " ms");
}

}  // namespace

TEST_CASE("real size: ViT-B/32 matches the official float64 outputs") {
    check_real_size("vit-b32", test_util::vit_b32());
}

TEST_CASE("real size: ViT-B/16 matches the official float64 outputs") {
    check_real_size("vit-b16", test_util::vit_b16());
}

TEST_CASE("real size: RN50 matches the official float64 outputs") {
    check_real_size("rn50", test_util::rn50());
}
