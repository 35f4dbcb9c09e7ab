// `zeroclip info`: what a checkpoint holds (architecture, sizes, dtype), after a full load, so a
// file that prints here also runs.
#include <iostream>
#include <nlohmann/json.hpp>
#include <zeroclip/zeroclip.hpp>

#include "cli.hpp"

namespace {

int run_info(const std::vector<std::string>& argv) {
    zeroclip_cli::args a(argv, {"--model"}, {"--json"});
    const std::string path = a.required("--model");
    zeroclip::model m = zeroclip::load_model(path);
    const auto& c = m.config();
    nlohmann::json vision = {{"type", c.vision.type}, {"width", c.vision.width}, {"heads", c.vision.heads},
                             {"image_size", c.vision.image_size}};
    if (c.vision.is_resnet()) {
        vision["layers"] = c.vision.resnet_layers;
    } else {
        vision["layers"] = c.vision.layers;
        vision["patch_size"] = c.vision.patch_size;
        vision["mlp_width"] = c.vision.mlp_width;
    }
    nlohmann::json j = {
        {"path", path},
        {"architecture", c.vision.is_resnet() ? "ModifiedResNet" : "ViT"},
        {"dtype", m.weight_dtype()},
        {"embed_dim", c.embed_dim},
        {"vision", vision},
        {"text", {{"width", c.text.width}, {"layers", c.text.layers}, {"heads", c.text.heads},
                  {"context_length", c.text.context_length}, {"vocab_size", c.text.vocab_size}}},
        {"activation", c.text.act == zeroclip::activation::gelu ? "gelu" : "quick_gelu"},
        {"logit_scale", m.logit_scale()}};
    if (a.has("--json")) {
        std::cout << j.dump(2) << "\n";
        return 0;
    }
    std::cout << "model        " << path << "\n"
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
