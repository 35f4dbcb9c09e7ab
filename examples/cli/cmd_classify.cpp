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
#include "file_list.hpp"
#include "interrupt.hpp"
#include "partial_output.hpp"
#include "resume.hpp"
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

// How one row prints in each streamed format (table rows are padded to `path_width`).
struct row_printer {
    std::string format;
    size_t path_width = 5;
    size_t json_rows = 0;  // elements of the json array written so far

    std::string row(const std::string& path, const std::string& error, const std::vector<zeroclip::prediction>& preds) {
        std::ostringstream out;
        if (format == "table") {
            out << std::left << std::setw(static_cast<int>(path_width)) << zeroclip_cli::escape_text(path);
            if (!error.empty()) out << "  error (see above)";
            for (size_t r = 0; error.empty() && r < preds.size(); ++r)
                out << "  " << std::setw(25) << (zeroclip_cli::escape_text(preds[r].label) + " " + percent(preds[r].probability));
            out << "\n";
            return out.str();
        }
        if (format == "csv") {
            if (!error.empty()) out << zeroclip_cli::csv_field(path) << ",,,,," << zeroclip_cli::csv_field(error) << "\n";
            for (size_t r = 0; error.empty() && r < preds.size(); ++r)
                out << zeroclip_cli::csv_field(path) << "," << r + 1 << "," << zeroclip_cli::csv_field(preds[r].label) << ","
                    << preds[r].probability << "," << preds[r].cosine << ",\n";
            return out.str();
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
        if (format == "jsonl") return zeroclip_cli::dump_json(j) + "\n";
        // json: the array nlohmann would print whole, one element at a time (strings hold no newline).
        std::string element = zeroclip_cli::dump_json(j, 2), indented = json_rows++ ? ",\n  " : "[\n  ";
        for (char c : element) indented += c == '\n' ? std::string("\n  ") : std::string(1, c);
        return indented;
    }
    std::string header(int top_k, size_t labels) const {
        if (format == "csv") return std::string(zeroclip_cli::classify_csv_header()) + "\n";
        if (format != "table") return "";
        std::ostringstream out;
        out << std::left << std::setw(static_cast<int>(path_width)) << "image";
        for (int r = 1; r <= std::min<int>(top_k, static_cast<int>(labels)); ++r) out << "  top-" << std::setw(20) << r;
        out << "\n";
        return out.str();
    }
    std::string footer() const { return format != "json" ? "" : json_rows ? "\n]\n" : "[]\n"; }
};

template <class Backend>
int classify_with(const zeroclip_cli::args& a, Backend backend) {
    const auto started = std::chrono::steady_clock::now();
    const std::string started_at = zeroclip_cli::utc_now();
    const std::string format = a.get("--format").value_or("table");
    if (format != "table" && format != "json" && format != "jsonl" && format != "csv" && format != "html")
        throw usage_error("--format must be table, json, jsonl, csv or html");
    const bool resume = a.has("--resume");
    if (resume && !a.has("--output")) throw usage_error("--resume continues the run writing --output FILE: give it");
    if (resume && format != "jsonl" && format != "csv")
        throw usage_error("--resume needs --format jsonl or csv (whose records name their file)");
    const int html_limit = a.get_int("--html-limit", static_cast<int>(zeroclip_cli::html_report::default_max_cards), 1, 10000000);
    const int top_k = a.get_int("--top-k", 5, 1, 100000);
    zeroclip::file_batch_options options;
    options.batch = a.get_int("--batch", 16, 1, 4096);
    options.threads = a.get_int("--threads", 0, 0, 1024);
    options.decode = zeroclip_cli::decode_mode_from(a);
    const auto labels = zeroclip_cli::labels_from(a);
    const auto templates = zeroclip_cli::templates_from(a);
    if (a.positionals().empty() && !a.has("--files-from")) throw usage_error("give at least one image file or folder, or --files-from");
    // A --files-from list alone is read lazily (not held whole) by every format but html, whose
    // thumbnails are kept per file until the end anyway.
    zeroclip_cli::file_list inputs = zeroclip_cli::list_inputs(a, format != "html");
    auto& [files, problems, stream] = inputs;
    const size_t listed = zeroclip_cli::for_each_file(inputs, [](const std::string&) {});
    if (listed == 0 && !a.has("--shard")) zeroclip_cli::throw_no_images(problems);
#ifdef _OPENMP
    if (options.threads > 0) omp_set_num_threads(options.threads);
#endif

    const auto out = a.get("--output");
    if (out) {
        zeroclip_cli::file_plan plan;
        plan.input(a.required("--model"), "--model");
        if (auto f = a.get("--labels-file")) plan.input(*f, "--labels-file");
        if (auto f = a.get("--templates-file")) plan.input(*f, "--templates-file");
        if (auto f = a.get("--files-from"); f && *f != "-") plan.input(*f, "--files-from");
        plan.output(*out, "--output");
        if (format != "html") plan.output(zeroclip_cli::partial_path_of(*out), "--output (.partial)");
        plan.check();
        zeroclip_cli::check_outputs_are_not_images(inputs, {{"--output", *out}, {"--output", zeroclip_cli::partial_path_of(*out)}});
    }
    // The output is created (the report as a temporary, the others as FILE.partial, locked) before
    // any work, so a bad path or a second run on the same file fails first.
    std::optional<zeroclip_cli::report_destination> destination;
    std::optional<zeroclip_cli::partial_file> partial;
    std::vector<std::string> thumbnails;
    if (format == "html") {
        destination.emplace(out);
        thumbnails.resize(files.size());
        options.on_decoded = [&](size_t i, const zeroclip::decoded_image& im) { thumbnails[i] = zeroclip_cli::thumbnail_jpeg(im); };
    } else if (out) {
        partial.emplace(*out, resume, "--output");
    }
    const size_t rows_per_image = std::min<size_t>(static_cast<size_t>(top_k), labels.size());
    zeroclip_cli::resume_state before;
    if (partial && partial->resumed()) {
        const std::string content = partial->read_all();
        before = format == "csv" ? zeroclip_cli::scan_csv(content, rows_per_image, partial->path())
                                 : zeroclip_cli::scan_jsonl(content, partial->path());
        partial->truncate(before.keep_bytes);
        std::cerr << "zeroclip classify: resuming " << zeroclip_cli::escape_text(partial->path()) << ": " << before.records
                  << " files done (" << before.errors << " failed), " << content.size() - before.keep_bytes
                  << " bytes of a cut record dropped\n";
        auto recorded = [&](const std::string& p) { return before.done.count(p) != 0; };
        files.erase(std::remove_if(files.begin(), files.end(), recorded), files.end());
        problems.erase(std::remove_if(problems.begin(), problems.end(), [&](const auto& p) { return recorded(p.path); }),
                       problems.end());
        // A lazy list skips them as it is read: the set (O(files done)) is kept until the end.
        if (stream) stream->skip = recorded;
        else before.done = {};
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

    row_printer printer{format};
    for (const auto& p : problems) printer.path_width = std::max(printer.path_width, zeroclip_cli::escape_text(p.path).size());
    // The pass that counts the files also sizes the table's path column (a lazy list is read again to work).
    const zeroclip_cli::file_source source = zeroclip_cli::source_of(inputs, [&](const std::string& f) {
        if (format == "table") printer.path_width = std::max(printer.path_width, zeroclip_cli::escape_text(f).size());
    });
    // Each batch's text goes out in one write and is flushed: a reader sees whole records.
    auto emit = [&](const std::string& text) {
        if (partial) partial->append(text), partial->mark_records();
        else if (!text.empty() && (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0))
            throw zeroclip::error(zeroclip::errc::io, "cannot write to standard output");
    };
    std::optional<zeroclip_cli::html_report> report;
    if (destination) {
        report.emplace([&](const std::string& s) { destination->write(s); }, static_cast<size_t>(html_limit));
        report->begin({"classify", a.required("--model"), labels, templates, "", "", problems.size() + source.count, started_at});
    }
    size_t failed = before.errors, done = 0;
    const size_t total = before.records + problems.size() + source.count;
    auto add_row = [&](std::string& text, const std::string& path, const std::string& error,
                       const std::vector<zeroclip::prediction>& preds, std::string thumbnail) {
        if (!error.empty()) {
            ++failed;
            std::cerr << "zeroclip classify: " << zeroclip_cli::escape_text(error) << "\n";
        }
        if (!report) return void(text += printer.row(path, error, preds));
        zeroclip_cli::report_card card{path, error, {}, 0, 0, std::move(thumbnail), ""};
        for (const auto& p : preds) card.top.emplace_back(p.index, p.probability);
        report->add(card);
    };

    // Rows: the folders that could not be read, then the images in order, a batch at a time.
    std::string text = before.keep_bytes ? "" : printer.header(top_k, labels.size());
    for (const auto& p : problems) add_row(text, p.path, p.message, {}, "");
    emit(text);
    zeroclip_cli::progress_bar bar("images");
    options.progress = [&](size_t d, size_t t) { bar.update(d, t); };
    zeroclip_cli::interrupt_guard guard;
    try {
        zeroclip::embed_image_stream(model, source.next, [&](const zeroclip::image_batch<Backend>& b) {
            // Only the images that were embedded are ranked (on the backend): a failed image has no direction.
            const auto ranked = b.succeeded().empty() ? std::vector<std::vector<zeroclip::prediction>>{}
                                                      : classifier->classify_embeddings(b.embeddings, top_k);
            std::string batch_text;
            const std::vector<zeroclip::prediction> none;
            for (size_t i = 0, r = 0; i < b.paths.size(); ++i) {
                const bool ok = b.errors[i].empty();
                add_row(batch_text, b.paths[i], b.errors[i], ok ? ranked[r++] : none,
                        report ? std::move(thumbnails[b.first + i]) : std::string());
            }
            emit(batch_text);
            done = b.first + b.paths.size();
            if (zeroclip_cli::interrupt_guard::received()) throw zeroclip_cli::interrupted{zeroclip_cli::interrupt_guard::received()};
        }, options, source.count);
    } catch (const zeroclip_cli::interrupted&) {
        std::cerr << "\nzeroclip classify: interrupted after " << done << " of " << source.count << " files";
        if (partial && (format == "jsonl" || format == "csv"))
            std::cerr << "; their results are in " << zeroclip_cli::escape_text(partial->path())
                      << ". Run the same command with --resume to continue.\n";
        else if (partial)
            std::cerr << "; --format " << format << " cannot be resumed (jsonl and csv can): delete "
                      << zeroclip_cli::escape_text(partial->path()) << " and run again.\n";
        else
            std::cerr << " (their results were printed); with --output FILE a run can be resumed.\n";
        return zeroclip_cli::interrupted_exit_code;
    }
    emit(printer.footer());
    if (report) {
        report->finish({std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()});
        destination->commit();
    }
    if (partial) partial->commit();
    if (failed) std::cerr << "zeroclip classify: " << failed << " of " << total << " images failed\n";
    return failed ? 1 : 0;
}

int run_classify(const std::vector<std::string>& argv) {
    zeroclip_cli::args a(argv,
                         {"--model", "--labels", "--labels-file", "--template", "--templates", "--templates-file",
                          "--top-k", "--format", "--threads", "--batch", "--device", "--output", "--html-limit", "--decode",
                          "--files-from", "--shard", "--precision"},
                         {"--recursive", "--resume"});
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
                      "                         [--top-k K] [--format table|json|jsonl|csv|html] [--output FILE [--resume]]\n"
                      "                         [--html-limit N] [--recursive] [--files-from F] [--shard K/N]\n"
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
                      "                   Results stream: each batch's rows are written and flushed as soon as it is\n"
                      "                   done (json too, element by element; html is written at the end)\n"
                      "  --output FILE    write to FILE instead of stdout: rows go to FILE.partial as they come,\n"
                      "                   renamed to FILE when the run completes (html: written whole at the end)\n"
                      "  --resume         continue an interrupted --output run (jsonl or csv) from FILE.partial:\n"
                      "                   files recorded there are skipped, a record cut short is dropped; the\n"
                      "                   result equals an uninterrupted run's. Without it an existing FILE.partial\n"
                      "                   is an error (never overwritten); a .partial in use by another run is locked\n"
                      "                   SIGINT / SIGTERM: the batch in hand is written, then exit 130\n"
                      "  --html-limit N   images shown in the html report (default 20000; all are counted)\n"
                      "                   Names and labels that are not valid UTF-8: in JSON each bad byte shows as\n"
                      "                   U+FFFD and \"path_hex\" / \"label_hex\" hold the exact bytes in hex; in table\n"
                      "                   and csv, control characters and bad bytes are escaped (\\\\ \\n \\r \\t \\xHH)\n"
                      "  --threads N      decoding and compute threads (default: all cores)\n" +
                          std::string(zeroclip_cli::file_list_help()) +
                      "  --batch N        images per encoder call (default 16)\n"
                      "  --device         cpu (default) or cuda (needs a build with -DZEROCLIP_USE_CUDA=ON)\n" +
                          std::string(zeroclip_cli::decode_flag_help()) + zeroclip_cli::precision_flag_help() + "\n"
                      "Exit code: 0 all images classified, 1 some image failed (the rest are still printed), 2 usage,\n"
                      "130 interrupted (resume with --resume).\n\n"
                      "examples:\n"
                      "  zeroclip classify --model examples/models/zeroclip-toy-vit.safetensors \\\n"
                      "      --labels-file examples/labels.txt examples/images\n"
                      "  zeroclip classify --model clip-vit-base-patch32/ --labels \"cat,dog,car\" --templates imagenet80 \\\n"
                      "      --format jsonl --recursive photos/\n"
                      "  zeroclip classify --model M --labels-file labels.txt --format html --output report.html photos/\n"
                      "  zeroclip classify --model M --labels-file labels.txt --format jsonl --output part3.jsonl \\\n"
                      "      --files-from all.txt --shard 3/8 --resume\n",
                      run_classify});
