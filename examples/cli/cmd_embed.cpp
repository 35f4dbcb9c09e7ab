// `zeroclip embed`: embeddings as .npy (or JSON on stdout), from preprocessed pixels / token ids
// in .npy files (to compare with Python directly) or from image files and texts.
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <zeroclip/zeroclip.hpp>

#include "cli.hpp"

namespace {

nlohmann::json rows_to_json(const zeroclip::tensor& t) {
    nlohmann::json rows = nlohmann::json::array();
    const int64_t w = t.dim(1);
    for (int64_t r = 0; r < t.dim(0); ++r) rows.push_back(std::vector<float>(t.data() + r * w, t.data() + (r + 1) * w));
    return rows;
}

int run_embed(const std::vector<std::string>& argv) {
    zeroclip_cli::args a(argv, {"--model", "--pixels", "--tokens", "--out", "--text-out"}, {"--normalize"});
    const std::string model_path = a.required("--model");
    const auto pixels_path = a.get("--pixels");
    const auto tokens_path = a.get("--tokens");
    if (!pixels_path && !tokens_path) throw zeroclip_cli::usage_error("give --pixels X.npy and/or --tokens T.npy");
    if (!a.positionals().empty())
        throw zeroclip_cli::usage_error("unexpected argument '" + a.positionals()[0] + "'");
    if (pixels_path && tokens_path && a.get("--out") && !a.get("--text-out"))
        throw zeroclip_cli::usage_error("with both --pixels and --tokens, --out takes the image embeddings "
                                        "and --text-out the text embeddings");

    zeroclip::model m = zeroclip::load_model(model_path);
    auto finish = [&](zeroclip::tensor e) {
        return a.has("--normalize") ? m.backend().l2_normalize_rows(e) : e;
    };
    nlohmann::json j = nlohmann::json::object();
    zeroclip::tensor image_embeds, text_embeds;
    if (pixels_path) {
        image_embeds = finish(m.encode_image(zeroclip::load_npy(*pixels_path).to_float()));
        if (auto out = a.get("--out")) zeroclip::save_npy(*out, image_embeds);
        else j["image_embeds"] = rows_to_json(image_embeds);
    }
    if (tokens_path) {
        text_embeds = finish(m.encode_text(zeroclip::load_npy(*tokens_path).to_int32()));
        auto out = pixels_path ? a.get("--text-out") : a.get("--out");
        if (out) zeroclip::save_npy(*out, text_embeds);
        else j["text_embeds"] = rows_to_json(text_embeds);
    }
    if (!a.get("--out")) {
        if (pixels_path && tokens_path) j["logits_per_image"] = rows_to_json(m.logits_per_image(image_embeds, text_embeds));
        std::cout << j.dump() << "\n";
    }
    return 0;
}

}  // namespace

ZEROCLIP_CLI_COMMAND({"embed", "image / text embeddings as .npy or JSON",
                      "usage: zeroclip embed --model PATH [--pixels X.npy] [--tokens T.npy]\n"
                      "                      [--out E.npy] [--text-out T.npy] [--normalize]\n\n"
                      "  --pixels X.npy   preprocessed images, float32 [N,3,S,S] (S = the model's input size)\n"
                      "  --tokens T.npy   token ids, int32 or int64 [N,L], L <= context length (77)\n"
                      "  --out E.npy      write the embeddings (float32 [N,D]) here instead of JSON on stdout;\n"
                      "                   with both inputs, --out gets the image and --text-out the text ones\n"
                      "  --normalize      L2-normalise each row (default: raw, as CLIP's encode_image/encode_text)\n\n"
                      "Without --out, prints {\"image_embeds\": [[...]], \"text_embeds\": [[...]],\n"
                      "\"logits_per_image\": [[...]]} (logits only when both inputs are given).\n\n"
                      "examples:\n"
                      "  zeroclip embed --model clip-vit-base-patch32/ --pixels pixels.npy --out image_embeds.npy\n"
                      "  zeroclip embed --model model.safetensors --tokens tokens.npy\n",
                      run_embed});
