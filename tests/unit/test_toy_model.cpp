// The bundled default model (trained by weights_tools/train_toy.py), classified by the C++ library
// on fresh generator images (a seed not used in training): zero-shot accuracy over all
// colour×shape labels on seen and held-out combinations, colour-only and shape-only accuracy,
// and agreement with PyTorch's own predictions for the same weights and images (eval.json).
#include <zeroclip/zeroclip.hpp>

#include "../test_util.hpp"

using namespace zeroclip;

namespace {

struct toy_eval {
    nlohmann::json spec;
    tensor pixels;  // (N, 3, S, S), normalised like the official pipeline
};

toy_eval load_toy_eval(const model& m) {
    const std::string dir = test_util::source_dir() + "/tests/data/toy_eval";
    toy_eval e;
    std::ifstream in(dir + "/eval.json");
    e.spec = nlohmann::json::parse(in);
    npy_array images = load_npy(dir + "/images_u8.npy");  // uint8 (N, S, S, 3)
    REQUIRE(images.descr == "|u1");
    const int64_t n = images.shape[0], s = images.shape[1];
    REQUIRE(s == m.config().vision.image_size);
    const auto options = m.preprocess_options();
    e.pixels = tensor({n, 3, s, s});
    for (int64_t i = 0; i < n; ++i) {
        rgb_image img{static_cast<int>(s), static_cast<int>(s),
                      std::vector<uint8_t>(images.bytes.begin() + i * s * s * 3, images.bytes.begin() + (i + 1) * s * s * 3)};
        normalize_into(img, options.mean, options.stddev, e.pixels.data() + i * 3 * s * s);
    }
    return e;
}

std::vector<std::string> strings(const nlohmann::json& j) { return j.get<std::vector<std::string>>(); }

}  // namespace

TEST_CASE("default model: zero-shot accuracy in C++ and agreement with PyTorch") {
    model m = load_model(test_util::source_dir() + "/examples/models/zeroclip-toy-vit.safetensors");
    toy_eval e = load_toy_eval(m);
    const auto& items = e.spec["items"];
    REQUIRE(items.size() == static_cast<size_t>(e.pixels.dim(0)));
    const tensor embeddings = m.encode_image(e.pixels);

    zero_shot_classifier<cpu_backend> full(m, strings(e.spec["labels"]), {e.spec["template"]});
    zero_shot_classifier<cpu_backend> colours(m, strings(e.spec["colours"]), {e.spec["colour_template"]});
    zero_shot_classifier<cpu_backend> shapes(m, strings(e.spec["shapes"]), {e.spec["shape_template"]});
    auto top_full = full.classify_embeddings(embeddings, 1);
    auto top_colour = colours.classify_embeddings(embeddings, 1);
    auto top_shape = shapes.classify_embeddings(embeddings, 1);

    int seen = 0, seen_right = 0, held = 0, held_right = 0, colour_right = 0, shape_right = 0;
    int agree = 0, agree_colour = 0, agree_shape = 0;
    const auto colour_names = strings(e.spec["colours"]), shape_names = strings(e.spec["shapes"]);
    double worst_prob = 0;
    for (size_t i = 0; i < items.size(); ++i) {
        const auto& it = items[i];
        const int truth = it["label"], pred = top_full[i][0].index;
        if (it["held_out"].get<bool>()) held++, held_right += pred == truth;
        else seen++, seen_right += pred == truth;
        colour_right += colour_names[static_cast<size_t>(top_colour[i][0].index)] == it["colour"].get<std::string>();
        shape_right += shape_names[static_cast<size_t>(top_shape[i][0].index)] == it["shape"].get<std::string>();
        agree += pred == it["pred"].get<int>();
        agree_colour += top_colour[i][0].index == it["colour_pred"].get<int>();
        agree_shape += top_shape[i][0].index == it["shape_pred"].get<int>();
        const double prob_diff = std::abs(double(top_full[i][0].probability) - it["probs"][static_cast<size_t>(pred)].get<double>());
        worst_prob = std::max(worst_prob, std::isfinite(prob_diff) ? prob_diff : HUGE_VAL);  // NaN must not vanish
    }
    const double n = static_cast<double>(items.size());
    MESSAGE("C++ top-1: seen " << 100.0 * seen_right / seen << "%, held-out " << 100.0 * held_right / held
                               << "%, colour-only " << 100.0 * colour_right / n << "%, shape-only "
                               << 100.0 * shape_right / n << "%; agreement with PyTorch " << 100.0 * agree / n
                               << "% (colour " << 100.0 * agree_colour / n << "%, shape " << 100.0 * agree_shape / n
                               << "%); worst top-1 probability difference " << worst_prob);
    // The C++ pipeline computes what PyTorch computes for the same weights and pixels: every
    // prediction agrees, and the top-1 probabilities within 1e-4 (3.2e-6 measured: float32 vs
    // float32 in another summation order).
    CHECK(agree == static_cast<int>(items.size()));
    CHECK(agree_colour == static_cast<int>(items.size()));
    CHECK(agree_shape == static_cast<int>(items.size()));
    CHECK(worst_prob <= 1e-4);
    // The model itself: issue 7 asks ≥ 90% on seen and ≥ 50% on held-out combinations.
    CHECK(seen_right >= 0.90 * seen);
    CHECK(held_right >= 0.50 * held);
    CHECK(colour_right >= 0.95 * n);
    // Held-out combinations: the figure PyTorch reports for the shipped weights, reproduced.
    const double torch_held = e.spec["pytorch_accuracy"]["held_out_top1"];
    CHECK(std::abs(double(held_right) / held - torch_held) <= 0.02);
}

TEST_CASE("default model: the bundled example images get their labels") {
    model m = load_model(test_util::source_dir() + "/examples/models/zeroclip-toy-vit.safetensors");
    const auto labels = read_lines_file(test_util::source_dir() + "/examples/labels.txt");
    zero_shot_classifier<cpu_backend> classifier(m, labels);
    std::vector<std::string> files;
    for (const auto& entry : std::filesystem::directory_iterator(test_util::source_dir() + "/examples/images"))
        files.push_back(entry.path().string());
    std::sort(files.begin(), files.end());
    REQUIRE(files.size() >= 12);
    auto result = embed_image_files(m, files);
    auto top = classifier.classify_embeddings(result.embeddings, 1);
    int right = 0;
    for (size_t i = 0; i < files.size(); ++i) {
        // File names are the true label: red_circle.png, held_out_green_star.png.
        std::string name = std::filesystem::path(files[i]).stem().string();
        if (name.rfind("held_out_", 0) == 0) name = name.substr(9);
        std::replace(name.begin(), name.end(), '_', ' ');
        right += top[i][0].label == name;
        MESSAGE(files[i] << " -> " << top[i][0].label << " (" << top[i][0].probability << ")");
    }
    MESSAGE(right << " of " << files.size() << " example images right");
    CHECK(right >= static_cast<int>(files.size()) * 3 / 4);
}
