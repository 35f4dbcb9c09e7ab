// `zeroclip info`: what a checkpoint holds (architecture, sizes, dtype), after a full load, so a
// file that prints here also runs.
#include <iostream>
#include <nlohmann/json.hpp>
#include <zeroclip/zeroclip.hpp>

#include "cli.hpp"
#include "text.hpp"

namespace {

int run_info(const std::vector<std::string>& argv) {
    zeroclip_cli::args a(argv, {"--model"}, {"--json"});
    const std::string path = a.required("--model");
    zeroclip::model m = zeroclip::load_model(path);
    const auto& c = m.config();
    // The config as zeroclip writes it (docs/FORMAT.md), plus what only a loaded model knows.
    nlohmann::json j = nlohmann::json::parse(zeroclip::to_json(c));
    zeroclip_cli::put_text(j, "path", path);
    j["architecture"] = c.vision.is_resnet() ? "ModifiedResNet" : "ViT";
    j["dtype"] = m.weight_dtype();
    j["logit_scale"] = m.logit_scale();
    const nlohmann::json& vision = j["vision"];
    if (a.has("--json")) {
        std::cout << zeroclip_cli::dump_json(j, 2) << "\n";
        return 0;
    }
    std::cout << "model        " << zeroclip_cli::escape_text(path) << "\n"
              << "architecture " << j["architecture"].get<std::string>() << " image encoder + text transformer\n"
              << "dtype        " << m.weight_dtype() << "\n"
              << "embed_dim    " << c.embed_dim << "\n";
    if (c.vision.is_resnet())
        std::cout << "vision       ResNet width " << c.vision.width << ", layers " << vision["layers"].dump()
                  << ", attention-pool heads " << c.vision.heads << ", input " << c.vision.image_size << "px\n";
    else
        std::cout << "vision       ViT width " << c.vision.width << ", " << c.vision.layers << " layers, "
                  << c.vision.heads << " heads, patch " << c.vision.patch_size << ", input "
                  << c.vision.image_size << "px\n";
    std::cout << "text         width " << c.text.width << ", " << c.text.layers << " layers, " << c.text.heads
              << " heads, context " << c.text.context_length << ", vocab " << c.text.vocab_size << "\n"
              << "logit_scale  " << m.logit_scale() << "\n";
    return 0;
}

}  // namespace

ZEROCLIP_CLI_COMMAND({"info", "show a model's architecture, sizes and dtype",
                      "usage: zeroclip info --model PATH [--json]\n\n"
                      "PATH is a Hugging Face CLIP folder or a zeroclip .safetensors file.\n\n"
                      "example:\n  zeroclip info --model examples/models/zeroclip-toy-vit.safetensors\n",
                      run_info});
