// `zeroclip score`: how well captions fit their images — CLIP's contrastive loss over the batch
// of (image, caption) pairs and each pair's cosine similarity.
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <zeroclip/zeroclip.hpp>

#include "common.hpp"

namespace {

int run_score(const std::vector<std::string>& argv) {
    zeroclip_cli::args a(argv, {"--model", "--pairs", "--temperature", "--lambda", "--format"}, {});
    const std::string pairs_path = a.required("--pairs");
    const std::string format = a.get("--format").value_or("table");
    if (format != "table" && format != "json") throw zeroclip_cli::usage_error("--format must be table or json");
    auto number = [&](const char* flag, double fallback) {
        auto v = a.get(flag);
        if (!v) return fallback;
        try {
            return std::stod(*v);
        } catch (const std::exception&) {
            throw zeroclip_cli::usage_error(std::string(flag) + " must be a number, got '" + *v + "'");
        }
    };
    std::ifstream in(pairs_path);
    if (!in) throw zeroclip::error(zeroclip::errc::io, pairs_path + ": cannot open");
    // Relative image paths are relative to the TSV's folder.
    const auto base = std::filesystem::path(pairs_path).parent_path();
    std::vector<std::string> images, captions;
    int line_no = 0;
    for (std::string line; std::getline(in, line);) {
        ++line_no;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty() || line[0] == '#') continue;
        const auto tab = line.find('\t');
        if (tab == std::string::npos || tab == 0 || tab + 1 >= line.size())
            throw zeroclip::error(zeroclip::errc::invalid_argument,
                                  pairs_path + ":" + std::to_string(line_no) + ": expected 'IMAGE<TAB>CAPTION'");
        std::filesystem::path image = line.substr(0, tab);
        images.push_back((image.is_relative() ? base / image : image).string());
        captions.push_back(line.substr(tab + 1));
    }
    if (images.empty()) throw zeroclip::error(zeroclip::errc::invalid_argument, pairs_path + ": no pairs");

    zeroclip::model m = zeroclip::load_model(a.required("--model"));
    const double temperature = number("--temperature", 1.0 / m.logit_scale());
    const double lambda = number("--lambda", 0.5);
    auto files = zeroclip::embed_image_files(m, images);
    for (const auto& e : files.errors)
        if (!e.empty()) throw zeroclip::error(zeroclip::errc::image_decode, e);
    auto text = m.encode_text(m.tokenize(captions));
    auto r = zeroclip::contrastive_loss(files.embeddings, text, temperature, lambda);
    if (format == "json") {
        nlohmann::json j = {{"loss", r.loss}, {"temperature", temperature}, {"lambda", lambda}, {"pairs", nlohmann::json::array()}};
        for (size_t i = 0; i < images.size(); ++i)
            j["pairs"].push_back({{"image", images[i]}, {"caption", captions[i]}, {"cosine", r.cosines[i]}});
        std::cout << j.dump(2) << "\n";
        return 0;
    }
    std::cout << std::fixed << std::setprecision(4);
    for (size_t i = 0; i < images.size(); ++i) std::cout << r.cosines[i] << "  " << images[i] << "  " << captions[i] << "\n";
    std::cout << "contrastive loss " << r.loss << " (" << images.size() << " pairs, temperature " << temperature
              << ", lambda " << lambda << ")\n";
    return 0;
}

}  // namespace

ZEROCLIP_CLI_COMMAND({"score", "contrastive loss and cosine of (image, caption) pairs",
                      "usage: zeroclip score --model M --pairs F.tsv [--temperature T] [--lambda L] [--format table|json]\n\n"
                      "F.tsv holds one pair per line: IMAGE<TAB>CAPTION (relative paths are relative to F.tsv's\n"
                      "folder; '#' starts a comment line). Prints each pair's cosine similarity and CLIP's\n"
                      "symmetric contrastive loss over the batch:\n"
                      "  L = 1/N sum_i (L * l_i(image->text) + (1-L) * l_i(text->image)),\n"
                      "  l_i = cross-entropy of pair i among all N pairs, similarities divided by T.\n"
                      "Defaults: T = 1/logit_scale of the model (CLIP's own), L = 0.5. Lower loss = better fit.\n\n"
                      "example:\n  zeroclip score --model examples/models/zeroclip-toy-vit.safetensors --pairs captions.tsv\n",
                      run_score});
