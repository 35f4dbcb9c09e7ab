// `zeroclip embed`: embeddings as .npy (or JSON on stdout), from preprocessed pixels / token ids
// in .npy files (to compare with Python directly) or from image files and texts.
#include <cmath>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <zeroclip/zeroclip.hpp>

#include "common.hpp"
#include "outputs.hpp"
#include "decode_flag.hpp"
#include "embed_output.hpp"
#include "file_list.hpp"
#include "interrupt.hpp"
#include "precision_flag.hpp"

namespace {

nlohmann::json rows_to_json(const zeroclip::tensor& t) {
    nlohmann::json rows = nlohmann::json::array();
    const int64_t w = t.dim(1);
    for (int64_t r = 0; r < t.dim(0); ++r) rows.push_back(std::vector<float>(t.data() + r * w, t.data() + (r + 1) * w));
    return rows;
}

// Non-finite embeddings (NaN or Inf weights) are an error, never a row of an index or a JSON null.
void check_finite_embeddings(const zeroclip::tensor& t, const std::string& model_path, const std::string& what) {
    for (int64_t i = 0; i < t.numel(); ++i)
        if (!std::isfinite(t[i]))
            throw zeroclip::error(zeroclip::errc::format, model_path + ": the model gives a non-finite " + what +
                                                              " embedding (row " + std::to_string(i / t.dim(1)) +
                                                              "; NaN or Inf weights?)");
}

std::string default_names_path(const std::string& out) {
    return (out.size() > 4 && out.compare(out.size() - 4, 4, ".npy") == 0 ? out.substr(0, out.size() - 4) : out) +
           ".names.txt";
}

// Image files and texts → L2-normalised rows in one .npy, and their names one per line (escaped),
// streamed through .partial files (embed_output.hpp). A failed image gets no row: a zero row would
// have no direction and rank anywhere.
int embed_files_and_texts(const zeroclip_cli::args& a) {
    const auto out = a.get("--out");
    if (!out) throw zeroclip_cli::usage_error("embedding images or texts needs --out E.npy");
    const std::string names_path = a.get("--names").value_or(default_names_path(*out));
    std::vector<std::string> texts = a.get_all("--text");
    for (const auto& t : texts)
        if (t.find_first_not_of(" \t\r\n") == std::string::npos) throw zeroclip_cli::usage_error("--text must not be empty");
    // A --files-from list alone is read lazily: counted in one pass (the .npy declares its rows up
    // front), then read again as it is embedded, never held whole.
    zeroclip_cli::file_list inputs = zeroclip_cli::list_inputs(a, true);
    auto& [files, problems, stream] = inputs;
    zeroclip_cli::file_plan plan;
    plan.input(a.required("--model"), "--model");
    if (auto f = a.get("--texts-file")) plan.input(*f, "--texts-file");
    if (auto f = a.get("--files-from"); f && *f != "-") plan.input(*f, "--files-from");
    const std::string names_role = a.has("--names") ? "--names" : "the names file";
    plan.output(*out, "--out");
    plan.output(names_path, names_role);
    plan.output(zeroclip_cli::partial_path_of(*out), "--out (.partial)");
    plan.output(zeroclip_cli::partial_path_of(names_path), names_role + " (.partial)");
    plan.check();
    zeroclip_cli::check_outputs_are_not_images(inputs, {{"--out", *out}, {names_role, names_path},
                                                       {"--out", zeroclip_cli::partial_path_of(*out)},
                                                       {names_role, zeroclip_cli::partial_path_of(names_path)}});
    if (auto f = a.get("--texts-file")) {
        try {
            auto more = zeroclip::read_lines_file(*f, "texts file");
            texts.insert(texts.end(), more.begin(), more.end());
        } catch (const zeroclip::error& e) {  // a file of blank lines
            if (e.code() == zeroclip::errc::invalid_argument) throw zeroclip_cli::usage_error(e.what());
            throw;
        }
    }
    // An empty shard is a shard like the others: it writes a [0, D] .npy (a job array's task succeeds).
    const size_t listed = zeroclip_cli::for_each_file(inputs, [](const std::string&) {});
    if (listed == 0 && texts.empty() && !(a.has("--shard") && problems.empty())) {
        if (!problems.empty()) zeroclip_cli::throw_no_images(problems);
        throw zeroclip_cli::usage_error("no image files or texts to embed");
    }
    zeroclip_cli::npy_rows_partial partial(*out, names_path, a.has("--resume"));
    int failed = 0;
    for (const auto& p : problems) {
        std::cerr << "zeroclip embed: " << zeroclip_cli::escape_text(p.message) << "\n";
        ++failed;
    }

    zeroclip::model m = zeroclip::load_model(a.required("--model"), zeroclip_cli::cpu_backend_from(a));
    const int64_t d = m.config().embed_dim;
    const auto before = partial.open_rows(d);
    if (before.records) {
        auto recorded = [&](const std::string& name) { return before.done.count(zeroclip_cli::escape_text(name)) != 0; };
        files.erase(std::remove_if(files.begin(), files.end(), recorded), files.end());
        if (stream) stream->skip = recorded;  // the set (O(rows kept)) is kept while the list is read
        texts.erase(std::remove_if(texts.begin(), texts.end(), [&](const auto& t) { return recorded("text:" + t); }),
                    texts.end());
        std::cerr << "zeroclip embed: resuming " << zeroclip_cli::escape_text(partial.path()) << ": " << before.records
                  << " rows kept\n";
    }
    const zeroclip_cli::file_source source = zeroclip_cli::source_of(inputs, [](const std::string&) {});
    partial.reserve(source.count + texts.size());
    size_t done = 0;
    zeroclip_cli::progress_bar bar("images");
    zeroclip::file_batch_options options;
    options.batch = a.get_int("--batch", 16, 1, 4096);
    options.decode = zeroclip_cli::decode_mode_from(a);
    options.progress = [&](size_t n, size_t total) { bar.update(n, total); };
    zeroclip_cli::interrupt_guard guard;
    try {
        zeroclip::embed_image_stream(m, source.next, [&](const zeroclip::image_batch<zeroclip::cpu_backend>& b) {
            const zeroclip::tensor rows = b.succeeded().empty() ? zeroclip::tensor({0, d}) : m.backend().download(b.embeddings);
            check_finite_embeddings(rows, m.source(), "image");
            std::string names;
            for (size_t i = 0; i < b.paths.size(); ++i) {
                if (b.errors[i].empty()) names += zeroclip_cli::escape_text(b.paths[i]) + "\n";
                else std::cerr << "zeroclip embed: " << zeroclip_cli::escape_text(b.errors[i]) << " (no row written)\n", ++failed;
            }
            partial.append(rows.data(), static_cast<uint64_t>(rows.dim(0)), names);
            done = b.first + b.paths.size();
            if (zeroclip_cli::interrupt_guard::received()) throw zeroclip_cli::interrupted{zeroclip_cli::interrupt_guard::received()};
        }, options, source.count);
    } catch (const zeroclip_cli::interrupted&) {
        std::cerr << "\nzeroclip embed: interrupted after " << done << " of " << source.count << " files; "
                  << partial.rows() << " rows are in " << zeroclip_cli::escape_text(partial.path())
                  << ". Run the same command with --resume to continue.\n";
        return zeroclip_cli::interrupted_exit_code;
    }
    if (!texts.empty()) {
        for (const auto& cut : zeroclip::texts_cut_by_context(m, texts))
            std::cerr << "zeroclip embed: warning: text '" << zeroclip_cli::escape_text(cut) << "' is longer than the model's "
                      << m.config().text.context_length << "-token context: cut to fit\n";
        const zeroclip::tensor text_rows = zeroclip::embed_texts(m, texts);
        check_finite_embeddings(text_rows, m.source(), "text");
        std::string names;
        for (const auto& t : texts) names += zeroclip_cli::escape_text("text:" + t) + "\n";
        partial.append(text_rows.data(), texts.size(), names);
    }
    if (partial.rows() == 0 && failed) {
        partial.discard();
        throw zeroclip::error(zeroclip::errc::image_decode, "no image could be embedded; " + *out + " was not written");
    }
    partial.commit();
    std::cerr << "wrote " << partial.rows() << " rows of " << d << " floats to " << zeroclip_cli::escape_text(*out)
              << ", names to " << zeroclip_cli::escape_text(names_path) << "\n";
    return failed ? 1 : 0;
}

int run_embed(const std::vector<std::string>& argv) {
    zeroclip_cli::args a(argv, {"--model", "--pixels", "--tokens", "--out", "--text-out", "--text", "--texts-file",
                                "--names", "--batch", "--decode", "--files-from", "--shard", "--precision"},
                         {"--normalize", "--recursive", "--resume"});
    const std::string model_path = a.required("--model");
    const auto pixels_path = a.get("--pixels");
    const auto tokens_path = a.get("--tokens");
    if (!pixels_path && !tokens_path) {
        if (a.positionals().empty() && !a.has("--text") && !a.has("--texts-file") && !a.has("--files-from"))
            throw zeroclip_cli::usage_error("give images/folders, --text/--texts-file, or --pixels/--tokens .npy files");
        return embed_files_and_texts(a);
    }
    if (!a.positionals().empty() || a.has("--text") || a.has("--texts-file") || a.has("--files-from"))
        throw zeroclip_cli::usage_error("--pixels/--tokens cannot be combined with images or texts");
    for (const char* flag : {"--resume", "--shard"})
        if (a.has(flag)) throw zeroclip_cli::usage_error(std::string(flag) + " goes with images and texts, not --pixels/--tokens");
    if (pixels_path && tokens_path && a.get("--out") && !a.get("--text-out"))
        throw zeroclip_cli::usage_error("with both --pixels and --tokens, --out takes the image embeddings "
                                        "and --text-out the text embeddings");
    if (a.has("--names")) throw zeroclip_cli::usage_error("--names goes with images and texts, not --pixels/--tokens");
    const auto image_out = pixels_path ? a.get("--out") : std::nullopt;
    const auto text_out = pixels_path ? a.get("--text-out") : a.get("--out");
    zeroclip_cli::file_plan plan;
    plan.input(model_path, "--model");
    if (pixels_path) plan.input(*pixels_path, "--pixels");
    if (tokens_path) plan.input(*tokens_path, "--tokens");
    if (image_out) plan.output(*image_out, "--out");
    if (text_out) plan.output(*text_out, pixels_path ? "--text-out" : "--out");
    plan.check();

    if (pixels_path) zeroclip_cli::require_regular_file(*pixels_path, "pixels (.npy)");
    if (tokens_path) zeroclip_cli::require_regular_file(*tokens_path, "tokens (.npy)");
    zeroclip::model m = zeroclip::load_model(model_path, zeroclip_cli::cpu_backend_from(a));
    auto finish = [&](zeroclip::tensor e, const char* what) {
        check_finite_embeddings(e, model_path, what);
        return a.has("--normalize") ? zeroclip::nn::unit_rows(m.backend(), e) : e;
    };
    nlohmann::json j = nlohmann::json::object();
    zeroclip::tensor image_embeds, text_embeds;
    if (pixels_path) image_embeds = finish(m.encode_image(zeroclip::load_npy(*pixels_path).to_float()), "image");
    if (tokens_path) text_embeds = finish(m.encode_text(zeroclip::load_npy(*tokens_path).to_int32()), "text");
    // Written together, after all the work: a failure leaves every previous output whole.
    std::vector<std::unique_ptr<zeroclip::atomic_output>> outputs;
    if (image_out) outputs.push_back(std::make_unique<zeroclip::atomic_output>(*image_out)), zeroclip::write_npy(*outputs.back(), image_embeds);
    else if (pixels_path) j["image_embeds"] = rows_to_json(image_embeds);
    if (text_out) outputs.push_back(std::make_unique<zeroclip::atomic_output>(*text_out)), zeroclip::write_npy(*outputs.back(), text_embeds);
    else if (tokens_path) j["text_embeds"] = rows_to_json(text_embeds);
    for (auto& o : outputs) o->sync();
    for (auto& o : outputs) o->commit();
    if (!a.get("--out")) {
        if (pixels_path && tokens_path) {
            zeroclip::tensor logits = m.logits_per_image(image_embeds, text_embeds);
            check_finite_embeddings(logits, model_path, "logit");
            j["logits_per_image"] = rows_to_json(logits);
        }
        std::cout << zeroclip_cli::dump_json(j) << "\n";
    }
    return 0;
}

}  // namespace

ZEROCLIP_CLI_COMMAND({"embed", "image / text embeddings as .npy or JSON",
                      "usage: zeroclip embed --model PATH [IMAGES/FOLDERS...] [--text T]... [--texts-file F]\n"
                      "                      [--files-from F] [--shard K/N] --out E.npy [--names N.txt] [--resume]\n"
                      "                      [--recursive] [--batch N] [--decode exact|draft] [--precision fp32|bf16|int8]\n"
                      "       zeroclip embed --model PATH [--pixels X.npy] [--tokens T.npy]\n"
                      "                      [--out E.npy] [--text-out T.npy] [--normalize]\n\n"
                      "First form: image files (folders: their image files, sorted) and texts become\n"
                      "L2-normalised float32 rows of E.npy, images first, in order; N.txt (default\n"
                      "E.names.txt) names each row, one per line: the image path, or text:<the text>, escaped\n"
                      "so that any name stays on one line (\\\\ \\n \\r \\t, and \\xHH for other control bytes\n"
                      "and bytes that are not UTF-8). For numpy / FAISS. A failed image is reported and gets\n"
                      "no row (exit code 1). E.npy and its names file are written whole or not at all; an\n"
                      "output that is an input (the model, an image) or a folder is refused before any work.\n"
                      "While it runs, rows go to E.npy.partial (a valid .npy: its header declares every row\n"
                      "still possible, unwritten rows read as zeros) and names to N.txt.partial, batch by\n"
                      "batch; both are renamed when the run completes. --resume continues from them: the\n"
                      "rows named in N.txt.partial are kept and their files skipped (a failed image has no\n"
                      "row, so it is tried again). SIGINT / SIGTERM: the batch in hand is written, exit 130.\n" +
                          std::string(zeroclip_cli::file_list_help()) +
                          std::string(zeroclip_cli::decode_flag_help()) + zeroclip_cli::precision_flag_help() + "\n"
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
