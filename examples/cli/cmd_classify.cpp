// `zeroclip classify`: zero-shot labels for image files and folders, as a table, JSON, JSON Lines
// or CSV. A file that fails is reported and the rest go on; the exit code is 1 if any failed.
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <zeroclip/zeroclip.hpp>

#include "common.hpp"
#include "decode_flag.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace zeroclip_cli {

std::vector<std::string> labels_from(const args& a) {
    const auto inline_labels = a.get("--labels");
    const auto file = a.get("--labels-file");
    if (inline_labels.has_value() == file.has_value())
        throw usage_error("give exactly one of --labels \"cat,dog\" and --labels-file FILE");
    try {
        return inline_labels ? zeroclip::split_labels(*inline_labels) : zeroclip::read_lines_file(*file);
    } catch (const zeroclip::error& e) {
        if (e.code() == zeroclip::errc::invalid_argument) throw usage_error(e.what());
        throw;
    }
}

std::vector<std::string> templates_from(const args& a) {
    const int given = a.has("--template") + a.has("--templates") + a.has("--templates-file");
    if (given > 1) throw usage_error("give at most one of --template, --templates and --templates-file");
    std::vector<std::string> templates = {zeroclip::default_template};
    try {
        if (auto t = a.get("--template")) templates = {*t};
        if (auto n = a.get("--templates")) templates = zeroclip::named_templates(*n);
        if (auto f = a.get("--templates-file")) templates = zeroclip::read_lines_file(*f);
        for (const auto& t : templates) zeroclip::fill_template(t, "x");  // each needs a {}
    } catch (const zeroclip::error& e) {
        if (e.code() == zeroclip::errc::invalid_argument) throw usage_error(e.what());
        throw;
    }
    return templates;
}

}  // namespace zeroclip_cli

namespace {

using zeroclip_cli::usage_error;

std::string percent(float p) {
    std::ostringstream s;
    s << std::fixed << std::setprecision(1) << 100.0 * p << "%";
    return s.str();
}

template <class Backend>
int classify_with(const zeroclip_cli::args& a, Backend backend) {
    const std::string format = a.get("--format").value_or("table");
    if (format != "table" && format != "json" && format != "jsonl" && format != "csv")
        throw usage_error("--format must be table, json, jsonl or csv");
    const int top_k = a.get_int("--top-k", 5, 1, 100000);
    zeroclip::file_batch_options options;
    options.batch = a.get_int("--batch", 16, 1, 4096);
    options.threads = a.get_int("--threads", 0, 0, 1024);
    options.decode = zeroclip_cli::decode_mode_from(a);
    const auto labels = zeroclip_cli::labels_from(a);
    const auto templates = zeroclip_cli::templates_from(a);
    if (a.positionals().empty()) throw usage_error("give at least one image file or folder");
    const auto files = zeroclip_cli::collect_images(a.positionals(), a.has("--recursive"));
    if (files.empty()) throw usage_error("no image files found in the given folders");
#ifdef _OPENMP
    if (options.threads > 0) omp_set_num_threads(options.threads);
#endif

    auto model = zeroclip::load_model(a.required("--model"), std::move(backend));
    zeroclip::zero_shot_classifier<Backend> classifier(model, labels, templates);
    zeroclip_cli::progress_bar bar("images");
    options.progress = [&](size_t done, size_t total) { bar.update(done, total); };
    auto result = zeroclip::embed_image_files(model, files, options);
    auto top = classifier.classify_embeddings(result.embeddings, top_k);

    int failed = 0;
    nlohmann::json all = nlohmann::json::array();
    if (format == "csv") std::cout << "path,rank,label,prob,cosine,error\n";
    size_t path_width = 4;
    for (const auto& f : files) path_width = std::max(path_width, f.size());
    if (format == "table") {
        std::cout << std::left << std::setw(static_cast<int>(path_width)) << "image";
        for (int r = 1; r <= std::min<int>(top_k, static_cast<int>(labels.size())); ++r)
            std::cout << "  top-" << std::setw(20) << r;
        std::cout << "\n";
    }
    for (size_t i = 0; i < files.size(); ++i) {
        const std::string& error = result.errors[i];
        if (!error.empty()) {
            ++failed;
            std::cerr << "zeroclip classify: " << error << "\n";
        }
        nlohmann::json j = {{"path", files[i]}};
        if (!error.empty()) j["error"] = error;
        else {
            j["top"] = nlohmann::json::array();
            for (const auto& p : top[i]) j["top"].push_back({{"label", p.label}, {"prob", p.probability}, {"cosine", p.cosine}});
        }
        if (format == "jsonl") std::cout << j.dump() << "\n";
        else if (format == "json") all.push_back(j);
        else if (format == "csv") {
            if (!error.empty()) std::cout << zeroclip_cli::csv_field(files[i]) << ",,,,," << zeroclip_cli::csv_field(error) << "\n";
            for (size_t r = 0; error.empty() && r < top[i].size(); ++r)
                std::cout << zeroclip_cli::csv_field(files[i]) << "," << r + 1 << "," << zeroclip_cli::csv_field(top[i][r].label)
                          << "," << top[i][r].probability << "," << top[i][r].cosine << ",\n";
        } else {
            std::cout << std::left << std::setw(static_cast<int>(path_width)) << files[i];
            if (!error.empty()) std::cout << "  error (see above)";
            for (size_t r = 0; error.empty() && r < top[i].size(); ++r)
                std::cout << "  " << std::setw(25) << (top[i][r].label + " " + percent(top[i][r].probability));
            std::cout << "\n";
        }
    }
    if (format == "json") std::cout << all.dump(2) << "\n";
    if (failed) std::cerr << "zeroclip classify: " << failed << " of " << files.size() << " images failed\n";
    return failed ? 1 : 0;
}

int run_classify(const std::vector<std::string>& argv) {
    zeroclip_cli::args a(argv,
                         {"--model", "--labels", "--labels-file", "--template", "--templates", "--templates-file",
                          "--top-k", "--format", "--threads", "--batch", "--device", "--decode"},
                         {"--recursive"});
    a.required("--model");
    const std::string device = a.get("--device").value_or("cpu");
    if (device == "cpu") return classify_with(a, zeroclip::cpu_eigen{});
    if (device == "cuda") return classify_with(a, zeroclip::cuda_cublas{});
    throw usage_error("--device must be cpu or cuda");
}

}  // namespace

ZEROCLIP_CLI_COMMAND({"classify", "zero-shot labels for image files and folders",
                      "usage: zeroclip classify --model M (--labels \"cat,dog,...\" | --labels-file F)\n"
                      "                         [--template T | --templates imagenet80 | --templates-file F]\n"
                      "                         [--top-k K] [--format table|json|jsonl|csv] [--recursive]\n"
                      "                         [--threads N] [--batch N] [--device cpu|cuda] [--decode exact|draft] PATH...\n\n"
                      "  PATH             image files and folders (folders: .jpg .jpeg .png .bmp .gif .tga .pnm\n"
                      "                   .ppm .pgm .pbm files, sorted; --recursive descends into subfolders)\n"
                      "  --labels         comma-separated class names; --labels-file: one per line\n"
                      "  --template       a prompt with {} for the class name (default \"A photo of a {}.\");\n"
                      "                   --templates imagenet80: the 80 official templates, averaged per class\n"
                      "  --top-k K        labels shown per image (default 5)\n"
                      "  --format         table (default), json, jsonl ({\"path\":..., \"top\":[{\"label\",\"prob\",\n"
                      "                   \"cosine\"}]} per line; {\"path\":..., \"error\":...} for a failed image), csv\n"
                      "  --threads N      decoding and compute threads (default: all cores)\n"
                      "  --batch N        images per encoder call (default 16)\n"
                      "  --device         cpu (default) or cuda (needs a build with -DZEROCLIP_USE_CUDA=ON)\n" +
                          std::string(zeroclip_cli::decode_flag_help()) + "\n"
                      "Exit code: 0 all images classified, 1 some image failed (the rest are still printed), 2 usage.\n\n"
                      "examples:\n"
                      "  zeroclip classify --model examples/models/zeroclip-toy-vit.safetensors \\\n"
                      "      --labels-file examples/labels.txt examples/images\n"
                      "  zeroclip classify --model clip-vit-base-patch32/ --labels \"cat,dog,car\" --templates imagenet80 \\\n"
                      "      --format jsonl --recursive photos/\n",
                      run_classify});
