// `zeroclip classify`: zero-shot labels for image files and folders, as a table, JSON, JSON Lines
// or CSV. A file that fails is reported and the rest go on; the exit code is 1 if any failed.
#include <chrono>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <zeroclip/zeroclip.hpp>

#include "common.hpp"
#include "outputs.hpp"
#include "report_html.hpp"
#include "decode_flag.hpp"
#include "precision_flag.hpp"

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
        auto labels = inline_labels ? zeroclip::split_labels(*inline_labels) : zeroclip::read_lines_file(*file, "labels file");
        zeroclip::check_distinct_labels(labels);
        return labels;
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
        if (auto f = a.get("--templates-file")) templates = zeroclip::read_lines_file(*f, "templates file");
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
    const auto started = std::chrono::steady_clock::now();
    const std::string started_at = zeroclip_cli::utc_now();
    const std::string format = a.get("--format").value_or("table");
    if (format != "table" && format != "json" && format != "jsonl" && format != "csv" && format != "html")
        throw usage_error("--format must be table, json, jsonl, csv or html");
    if (a.has("--output") && format != "html") throw usage_error("--output is for --format html (other formats go to stdout)");
    const int html_limit = a.get_int("--html-limit", static_cast<int>(zeroclip_cli::html_report::default_max_cards), 1, 10000000);
    const int top_k = a.get_int("--top-k", 5, 1, 100000);
    zeroclip::file_batch_options options;
    options.batch = a.get_int("--batch", 16, 1, 4096);
    options.threads = a.get_int("--threads", 0, 0, 1024);
    options.decode = zeroclip_cli::decode_mode_from(a);
    const auto labels = zeroclip_cli::labels_from(a);
    const auto templates = zeroclip_cli::templates_from(a);
    if (a.positionals().empty()) throw usage_error("give at least one image file or folder");
    std::vector<zeroclip_cli::listing_problem> problems;
    const auto files = zeroclip_cli::collect_images(a.positionals(), a.has("--recursive"), problems);
    if (files.empty()) zeroclip_cli::throw_no_images(problems);
#ifdef _OPENMP
    if (options.threads > 0) omp_set_num_threads(options.threads);
#endif

    if (auto out = a.get("--output")) {
        zeroclip_cli::file_plan plan;
        plan.input(a.required("--model"), "--model");
        plan.inputs(files, "image");
        if (auto f = a.get("--labels-file")) plan.input(*f, "--labels-file");
        if (auto f = a.get("--templates-file")) plan.input(*f, "--templates-file");
        plan.output(*out, "--output");
        plan.check();
    }
    // The report file is created (as a temporary) before any work, so a bad path fails first.
    std::optional<zeroclip_cli::report_destination> destination;
    std::vector<std::string> thumbnails;
    if (format == "html") {
        destination.emplace(a.get("--output"));
        thumbnails.resize(files.size());
        options.on_decoded = [&](size_t i, const zeroclip::decoded_image& im) { thumbnails[i] = zeroclip_cli::thumbnail_jpeg(im); };
    }
    auto model = zeroclip::load_model(a.required("--model"), std::move(backend));
    std::optional<zeroclip::zero_shot_classifier<Backend>> classifier;
    try {
        classifier.emplace(model, labels, templates);
    } catch (const zeroclip::error& e) {  // labels the model cannot tell apart
        if (e.code() == zeroclip::errc::invalid_argument) throw usage_error(e.what());
        throw;
    }
    for (const auto& cut : classifier->cut_labels())
        std::cerr << "zeroclip classify: warning: the prompt of label '" << zeroclip_cli::escape_text(cut)
                  << "' is longer than the model's " << model.config().text.context_length
                  << "-token context: cut to fit\n";
    zeroclip_cli::progress_bar bar("images");
    options.progress = [&](size_t done, size_t total) { bar.update(done, total); };
    auto result = zeroclip::embed_image_files(model, files, options);
    // Only the images that were embedded are ranked: a failed image's row has no direction.
    std::vector<size_t> ok;
    for (size_t i = 0; i < files.size(); ++i)
        if (result.errors[i].empty()) ok.push_back(i);
    std::vector<std::vector<zeroclip::prediction>> top(files.size());
    if (!ok.empty()) {
        const int64_t d = result.embeddings.dim(1);
        zeroclip::tensor embedded({static_cast<int64_t>(ok.size()), d});
        for (size_t r = 0; r < ok.size(); ++r)
            std::copy_n(result.embeddings.data() + static_cast<int64_t>(ok[r]) * d, d, embedded.data() + static_cast<int64_t>(r) * d);
        auto ranked = classifier->classify_embeddings(embedded, top_k);
        for (size_t r = 0; r < ok.size(); ++r) top[ok[r]] = std::move(ranked[r]);
    }

    // Rows: the folders that could not be read, then the images in order.
    std::vector<std::string> paths, errors;
    std::vector<size_t> image_of;
    for (const auto& p : problems) paths.push_back(p.path), errors.push_back(p.message), image_of.push_back(SIZE_MAX);
    for (size_t i = 0; i < files.size(); ++i) paths.push_back(files[i]), errors.push_back(result.errors[i]), image_of.push_back(i);

    int failed = 0;
    nlohmann::json all = nlohmann::json::array();
    if (format == "csv") std::cout << "path,rank,label,prob,cosine,error\n";
    size_t path_width = 5;
    for (const auto& f : paths) path_width = std::max(path_width, zeroclip_cli::escape_text(f).size());
    if (format == "table") {
        std::cout << std::left << std::setw(static_cast<int>(path_width)) << "image";
        for (int r = 1; r <= std::min<int>(top_k, static_cast<int>(labels.size())); ++r)
            std::cout << "  top-" << std::setw(20) << r;
        std::cout << "\n";
    }
    std::optional<zeroclip_cli::html_report> report;
    if (destination) {
        report.emplace([&](const std::string& s) { destination->write(s); }, static_cast<size_t>(html_limit));
        report->begin({"classify", a.required("--model"), labels, templates, "", "", paths.size(), started_at});
    }
    const std::vector<zeroclip::prediction> none;
    for (size_t row = 0; row < paths.size(); ++row) {
        const std::string& path = paths[row];
        const std::string& error = errors[row];
        const auto& preds = image_of[row] == SIZE_MAX ? none : top[image_of[row]];
        if (!error.empty()) {
            ++failed;
            std::cerr << "zeroclip classify: " << zeroclip_cli::escape_text(error) << "\n";
        }
        if (report) {
            std::string thumbnail = image_of[row] == SIZE_MAX ? std::string() : std::move(thumbnails[image_of[row]]);
            zeroclip_cli::report_card card{path, error, {}, 0, 0, std::move(thumbnail), ""};
            for (const auto& p : preds) card.top.emplace_back(p.index, p.probability);
            report->add(card);
            continue;
        }
        nlohmann::json j = nlohmann::json::object();
        zeroclip_cli::put_text(j, "path", path);
        if (!error.empty()) zeroclip_cli::put_text(j, "error", error);
        else {
            j["top"] = nlohmann::json::array();
            for (const auto& p : preds) {
                nlohmann::json t = nlohmann::json::object();
                zeroclip_cli::put_text(t, "label", p.label);
                t["prob"] = p.probability;
                t["cosine"] = p.cosine;
                j["top"].push_back(std::move(t));
            }
        }
        if (format == "jsonl") std::cout << zeroclip_cli::dump_json(j) << "\n";
        else if (format == "json") all.push_back(j);
        else if (format == "csv") {
            if (!error.empty()) std::cout << zeroclip_cli::csv_field(path) << ",,,,," << zeroclip_cli::csv_field(error) << "\n";
            for (size_t r = 0; error.empty() && r < preds.size(); ++r)
                std::cout << zeroclip_cli::csv_field(path) << "," << r + 1 << "," << zeroclip_cli::csv_field(preds[r].label)
                          << "," << preds[r].probability << "," << preds[r].cosine << ",\n";
        } else {
            std::cout << std::left << std::setw(static_cast<int>(path_width)) << zeroclip_cli::escape_text(path);
            if (!error.empty()) std::cout << "  error (see above)";
            for (size_t r = 0; error.empty() && r < preds.size(); ++r)
                std::cout << "  " << std::setw(25) << (zeroclip_cli::escape_text(preds[r].label) + " " + percent(preds[r].probability));
            std::cout << "\n";
        }
    }
    if (format == "json") std::cout << zeroclip_cli::dump_json(all, 2) << "\n";
    if (report) {
        report->finish({std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()});
        destination->commit();
    }
    if (failed) std::cerr << "zeroclip classify: " << failed << " of " << paths.size() << " images failed\n";
    return failed ? 1 : 0;
}

int run_classify(const std::vector<std::string>& argv) {
    zeroclip_cli::args a(argv,
                         {"--model", "--labels", "--labels-file", "--template", "--templates", "--templates-file",
                          "--top-k", "--format", "--threads", "--batch", "--device", "--output", "--html-limit", "--decode",
                          "--precision"},
                         {"--recursive"});
    a.required("--model");
    const std::string device = a.get("--device").value_or("cpu");
    if (device == "cpu") return classify_with(a, zeroclip_cli::cpu_backend_from(a));
    if (a.get("--precision").value_or("fp32") != "fp32") throw usage_error("--precision applies to --device cpu only");
    if (device == "cuda") return classify_with(a, zeroclip::cuda_cublas{});
    throw usage_error("--device must be cpu or cuda");
}

}  // namespace

ZEROCLIP_CLI_COMMAND({"classify", "zero-shot labels for image files and folders",
                      "usage: zeroclip classify --model M (--labels \"cat,dog,...\" | --labels-file F)\n"
                      "                         [--template T | --templates imagenet80 | --templates-file F]\n"
                      "                         [--top-k K] [--format table|json|jsonl|csv|html] [--output FILE]\n"
                      "                         [--html-limit N] [--recursive]\n"
                      "                         [--threads N] [--batch N] [--device cpu|cuda] [--decode exact|draft]\n"
                      "                         [--precision fp32|bf16|int8] PATH...\n\n"
                      "  PATH             image files and folders (folders: .jpg .jpeg .png .bmp .gif .tga .pnm\n"
                      "                   .ppm .pgm .pbm files, sorted; --recursive descends into subfolders, not\n"
                      "                   into links to folders). A folder that cannot be read is a failed row.\n"
                      "  --labels         comma-separated class names; --labels-file: one per line ('#' starts a\n"
                      "                   comment). Each class once: labels the model cannot tell apart\n"
                      "                   (\"Cat\", \"cat\") are a usage error; one cut at the 77-token context is a warning\n"
                      "  --template       a prompt where every {} is the class name (default \"A photo of a {}.\");\n"
                      "                   --templates imagenet80: the 80 official templates, averaged per class\n"
                      "  --top-k K        labels shown per image (default 5)\n"
                      "  --format         table (default), json, jsonl ({\"path\":..., \"top\":[{\"label\",\"prob\",\n"
                      "                   \"cosine\"}]} per line; {\"path\":..., \"error\":...} for a failed image), csv,\n"
                      "                   html (one self-contained page: thumbnails, label bars, filters; no network)\n"
                      "  --output FILE    where --format html goes (default: stdout); written whole or not at all\n"
                      "  --html-limit N   images shown in the html report (default 20000; all are counted)\n"
                      "                   Names and labels that are not valid UTF-8: in JSON each bad byte shows as\n"
                      "                   U+FFFD and \"path_hex\" / \"label_hex\" hold the exact bytes in hex; in table\n"
                      "                   and csv, control characters and bad bytes are escaped (\\\\ \\n \\r \\t \\xHH)\n"
                      "  --threads N      decoding and compute threads (default: all cores)\n"
                      "  --batch N        images per encoder call (default 16)\n"
                      "  --device         cpu (default) or cuda (needs a build with -DZEROCLIP_USE_CUDA=ON)\n" +
                          std::string(zeroclip_cli::decode_flag_help()) + zeroclip_cli::precision_flag_help() + "\n"
                      "Exit code: 0 all images classified, 1 some image failed (the rest are still printed), 2 usage.\n\n"
                      "examples:\n"
                      "  zeroclip classify --model examples/models/zeroclip-toy-vit.safetensors \\\n"
                      "      --labels-file examples/labels.txt examples/images\n"
                      "  zeroclip classify --model clip-vit-base-patch32/ --labels \"cat,dog,car\" --templates imagenet80 \\\n"
                      "      --format jsonl --recursive photos/\n"
                      "  zeroclip classify --model M --labels-file labels.txt --format html --output report.html photos/\n",
                      run_classify});
