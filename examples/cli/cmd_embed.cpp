// `zeroclip embed`: embeddings as .npy (or JSON on stdout), from preprocessed pixels / token ids
// in .npy files (to compare with Python directly) or from image files and texts.
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <zeroclip/zeroclip.hpp>

#include "common.hpp"
#include "decode_flag.hpp"

namespace {

nlohmann::json rows_to_json(const zeroclip::tensor& t) {
    nlohmann::json rows = nlohmann::json::array();
    const int64_t w = t.dim(1);
    for (int64_t r = 0; r < t.dim(0); ++r) rows.push_back(std::vector<float>(t.data() + r * w, t.data() + (r + 1) * w));
    return rows;
}

// Image files and texts → L2-normalised rows in one .npy, and their names one per line.
int embed_files_and_texts(const zeroclip_cli::args& a) {
    const auto out = a.get("--out");
    if (!out) throw zeroclip_cli::usage_error("embedding images or texts needs --out E.npy");
    std::vector<std::string> texts = a.get_all("--text");
    if (auto f = a.get("--texts-file")) {
        auto more = zeroclip::read_lines_file(*f);
        texts.insert(texts.end(), more.begin(), more.end());
    }
    const auto files = zeroclip_cli::collect_images(a.positionals(), a.has("--recursive"));
    if (files.empty() && texts.empty()) throw zeroclip_cli::usage_error("no image files or texts to embed");
    zeroclip::model m = zeroclip::load_model(a.required("--model"));
    const int64_t d = m.config().embed_dim;
    zeroclip::tensor rows({static_cast<int64_t>(files.size() + texts.size()), d});
    std::vector<std::string> names;
    int failed = 0;
    if (!files.empty()) {
        zeroclip_cli::progress_bar bar("images");
        zeroclip::file_batch_options options;
        options.batch = a.get_int("--batch", 16, 1, 4096);
        options.decode = zeroclip_cli::decode_mode_from(a);
        options.progress = [&](size_t done, size_t total) { bar.update(done, total); };
        auto r = zeroclip::embed_image_files(m, files, options);
        zeroclip::tensor unit = m.backend().l2_normalize_rows(r.embeddings);
        for (size_t i = 0; i < files.size(); ++i) {
            if (!r.errors[i].empty()) {
                std::cerr << "zeroclip embed: " << r.errors[i] << " (its row is all zeros)\n";
                ++failed;
            } else {
                std::copy_n(unit.data() + static_cast<int64_t>(i) * d, d, rows.data() + static_cast<int64_t>(i) * d);
            }
            names.push_back(files[i]);
        }
    }
    if (!texts.empty()) {
        zeroclip::tensor t = zeroclip::embed_texts(m, texts);
        std::copy(t.begin(), t.end(), rows.data() + static_cast<int64_t>(files.size()) * d);
        for (const auto& text : texts) names.push_back("text:" + text);
    }
    zeroclip::save_npy(*out, rows);
    const std::string names_path = a.get("--names").value_or(
        (out->size() > 4 && out->substr(out->size() - 4) == ".npy" ? out->substr(0, out->size() - 4) : *out) + ".names.txt");
    std::ofstream names_out(names_path);
    for (const auto& n : names) names_out << n << "\n";
    if (!names_out) throw zeroclip::error(zeroclip::errc::io, names_path + ": cannot write");
    std::cerr << "wrote " << names.size() << " rows of " << d << " floats to " << *out << ", names to " << names_path << "\n";
    return failed ? 1 : 0;
}

int run_embed(const std::vector<std::string>& argv) {
    zeroclip_cli::args a(argv, {"--model", "--pixels", "--tokens", "--out", "--text-out", "--text", "--texts-file",
                                "--names", "--batch", "--decode"},
                         {"--normalize", "--recursive"});
    const std::string model_path = a.required("--model");
    const auto pixels_path = a.get("--pixels");
    const auto tokens_path = a.get("--tokens");
    if (!pixels_path && !tokens_path) {
        if (a.positionals().empty() && !a.has("--text") && !a.has("--texts-file"))
            throw zeroclip_cli::usage_error("give images/folders, --text/--texts-file, or --pixels/--tokens .npy files");
        return embed_files_and_texts(a);
    }
    if (!a.positionals().empty() || a.has("--text") || a.has("--texts-file"))
        throw zeroclip_cli::usage_error("--pixels/--tokens cannot be combined with images or texts");
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
                      "usage: zeroclip embed --model PATH [IMAGES/FOLDERS...] [--text T]... [--texts-file F]\n"
                      "                      --out E.npy [--names N.txt] [--recursive] [--batch N] [--decode exact|draft]\n"
                      "       zeroclip embed --model PATH [--pixels X.npy] [--tokens T.npy]\n"
                      "                      [--out E.npy] [--text-out T.npy] [--normalize]\n\n"
                      "First form: image files (folders: their image files, sorted) and texts become\n"
                      "L2-normalised float32 rows of E.npy, images first, in order; N.txt (default\n"
                      "E.names.txt) names each row: the image path, or text:<the text>. For numpy / FAISS.\n"
                      "A failed image is reported and gets a zero row (exit code 1).\n" +
                          std::string(zeroclip_cli::decode_flag_help()) + "\n"
                      "Second form, for comparisons with Python:\n"
                      "  --pixels X.npy   preprocessed images, float32 [N,3,S,S] (S = the model's input size)\n"
                      "  --tokens T.npy   token ids, int32 or int64 [N,L], L <= context length (77)\n"
                      "  --out E.npy      write the embeddings (float32 [N,D]) here instead of JSON on stdout;\n"
                      "                   with both inputs, --out gets the image and --text-out the text ones\n"
                      "  --normalize      L2-normalise each row (default: raw, as CLIP's encode_image/encode_text)\n\n"
                      "Without --out, prints {\"image_embeds\": [[...]], \"text_embeds\": [[...]],\n"
                      "\"logits_per_image\": [[...]]} (logits only when both inputs are given).\n\n"
                      "examples:\n"
                      "  zeroclip embed --model model.safetensors photos/ --out photos.npy\n"
                      "  zeroclip embed --model model.safetensors --text \"a red car\" --text \"a cat\" --out q.npy\n"
                      "  zeroclip embed --model clip-vit-base-patch32/ --pixels pixels.npy --out image_embeds.npy\n"
                      "  zeroclip embed --model model.safetensors --tokens tokens.npy\n",
                      run_embed});
