// `zeroclip score`: how well captions fit their images — CLIP's contrastive loss over the batch
// of (image, caption) pairs and each pair's cosine similarity.
#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <sstream>
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
    // A finite number (the whole value, not a prefix like "0.5x"), checked before any work.
    auto number = [&](const char* flag, double fallback, const char* range) {
        auto v = a.get(flag);
        if (!v) return fallback;
        char* end = nullptr;
        errno = 0;
        const double x = std::strtod(v->c_str(), &end);
        if (v->empty() || *end != '\0' || errno == ERANGE || !std::isfinite(x))
            throw zeroclip_cli::usage_error(std::string(flag) + " must be a finite number " + range + ", got '" + *v + "'");
        return x;
    };
    const double given_temperature = number("--temperature", 1.0, "> 0");
    if (!(given_temperature > 0))
        throw zeroclip_cli::usage_error("--temperature must be a finite number > 0, got '" + *a.get("--temperature") + "'");
    const double lambda = number("--lambda", 0.5, "from 0 to 1");
    if (!(lambda >= 0 && lambda <= 1))
        throw zeroclip_cli::usage_error("--lambda must be a finite number from 0 to 1, got '" + *a.get("--lambda") + "'");
    std::string pairs_text = zeroclip::read_file(pairs_path, "pairs file", zeroclip::max_lines_file_bytes);
    if (pairs_text.compare(0, 3, "\xEF\xBB\xBF") == 0) pairs_text.erase(0, 3);  // a byte-order mark
    std::istringstream in(pairs_text);
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
        // A FIFO or device would block or never end: only regular files are read.
        struct stat st {};
        if (::stat(images.back().c_str(), &st) == 0 && !S_ISREG(st.st_mode))
            throw zeroclip::error(zeroclip::errc::io, pairs_path + ":" + std::to_string(line_no) + ": " + images.back() +
                                                          " is not a regular file");
    }
    if (images.empty()) throw zeroclip::error(zeroclip::errc::invalid_argument, pairs_path + ": no pairs");

    zeroclip::model m = zeroclip::load_model(a.required("--model"));
    const double temperature = a.has("--temperature") ? given_temperature : 1.0 / m.logit_scale();
    for (const auto& cut : zeroclip::texts_cut_by_context(m, captions))
        std::cerr << "zeroclip score: warning: caption '" << zeroclip_cli::escape_text(cut) << "' is longer than the model's "
                  << m.config().text.context_length << "-token context: cut to fit\n";
    auto files = zeroclip::embed_image_files(m, images);
    for (const auto& e : files.errors)
        if (!e.empty()) throw zeroclip::error(zeroclip::errc::image_decode, e);
    auto text = m.encode_text(m.tokenize(captions));
    zeroclip::contrastive_result r;
    try {
        r = zeroclip::contrastive_loss(files.embeddings, text, temperature, lambda);
    } catch (const zeroclip::error& e) {  // a non-finite embedding or loss: the model's weights
        throw zeroclip::error(zeroclip::errc::format, m.source() + ": " + e.what());
    }
    if (format == "json") {
        nlohmann::json j = {{"loss", r.loss}, {"temperature", temperature}, {"lambda", lambda}, {"pairs", nlohmann::json::array()}};
        for (size_t i = 0; i < images.size(); ++i) {
            nlohmann::json pair = nlohmann::json::object();
            zeroclip_cli::put_text(pair, "image", images[i]);
            zeroclip_cli::put_text(pair, "caption", captions[i]);
            pair["cosine"] = r.cosines[i];
            j["pairs"].push_back(std::move(pair));
        }
        std::cout << zeroclip_cli::dump_json(j, 2) << "\n";
        return 0;
    }
    std::cout << std::fixed << std::setprecision(4);
    for (size_t i = 0; i < images.size(); ++i)
        std::cout << r.cosines[i] << "  " << zeroclip_cli::escape_text(images[i]) << "  " << zeroclip_cli::escape_text(captions[i]) << "\n";
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
                      "Defaults: T = 1/logit_scale of the model (CLIP's own), L = 0.5 (T finite and > 0, L in [0, 1]).\n"
                      "Lower loss = better fit.\n\n"
                      "example:\n  zeroclip score --model examples/models/zeroclip-toy-vit.safetensors --pairs captions.tsv\n",
                      run_score});
