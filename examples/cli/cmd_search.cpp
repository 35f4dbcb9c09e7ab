// `zeroclip search`: rank embedded images (from `zeroclip embed ... --out E.npy`) by a text query.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <numeric>
#include <optional>
#include <thread>
#include <zeroclip/zeroclip.hpp>

#include "common.hpp"
#include "outputs.hpp"
#include "report_html.hpp"

namespace {

// The names file of an index: one escaped name per line (see `zeroclip embed --help`).
std::vector<std::string> read_index_names(const std::string& path) {
    const std::string text = zeroclip::read_file(path, "names file (give --names N.txt)", zeroclip::max_lines_file_bytes);
    std::vector<std::string> names;
    size_t line_no = 0;
    for (size_t at = 0; at < text.size();) {
        size_t end = text.find('\n', at);
        if (end == std::string::npos) end = text.size();
        std::string line = text.substr(at, end - at);
        if (!line.empty() && line.back() == '\r') line.pop_back();  // a names file edited on Windows
        ++line_no;
        auto name = zeroclip_cli::unescape_text(line);
        if (!name)
            throw zeroclip::error(zeroclip::errc::format, path + ":" + std::to_string(line_no) +
                                                              ": malformed escape in a name (a backslash must start "
                                                              "\\\\, \\n, \\r, \\t or \\xHH)");
        names.push_back(std::move(*name));
        at = end + 1;
    }
    return names;
}

int run_search(const std::vector<std::string>& argv) {
    const auto started = std::chrono::steady_clock::now();
    const std::string started_at = zeroclip_cli::utc_now();
    zeroclip_cli::args a(argv, {"--model", "--index", "--names", "--text", "--top-k", "--format", "--output"}, {});
    const std::string format = a.get("--format").value_or("text");
    if (format != "text" && format != "html") throw zeroclip_cli::usage_error("--format must be text or html");
    if (a.has("--output") && format != "html") throw zeroclip_cli::usage_error("--output is for --format html");
    const std::string index_path = a.required("--index");
    const std::string query = a.required("--text");
    if (query.find_first_not_of(" \t\r\n") == std::string::npos) throw zeroclip_cli::usage_error("--text must not be empty");
    const int top_k = a.get_int("--top-k", 10, 1, 1000000);
    std::string names_path = a.get("--names").value_or(
        (index_path.size() > 4 && index_path.substr(index_path.size() - 4) == ".npy" ? index_path.substr(0, index_path.size() - 4)
                                                                                    : index_path) + ".names.txt");
    zeroclip_cli::require_regular_file(index_path, "index (.npy)");
    if (auto out = a.get("--output")) {
        zeroclip_cli::file_plan plan;
        plan.input(a.required("--model"), "--model");
        plan.input(index_path, "--index");
        plan.input(names_path, a.has("--names") ? "--names" : "the names file");
        plan.output(*out, "--output");
        plan.check();
    }
    zeroclip::tensor index = zeroclip::load_npy(index_path).to_float();
    const std::vector<std::string> names = read_index_names(names_path);
    if (index.ndim() != 2 || static_cast<int64_t>(names.size()) != index.dim(0))
        throw zeroclip::error(zeroclip::errc::shape, index_path + " has shape " + zeroclip::shape_to_string(index.shape()) +
                                                         " but " + names_path + " has " + std::to_string(names.size()) + " names");
    std::optional<zeroclip_cli::report_destination> destination;  // created before the work: a bad path fails first
    if (format == "html") destination.emplace(a.get("--output"));
    zeroclip::model m = zeroclip::load_model(a.required("--model"));
    if (index.dim(1) != m.config().embed_dim)
        throw zeroclip::error(zeroclip::errc::shape, index_path + " rows have " + std::to_string(index.dim(1)) +
                                                         " values, the model embeds in " + std::to_string(m.config().embed_dim));
    // Rows without a direction (all zeros: an image that failed in an older zeroclip) or with NaN /
    // Inf cannot be ranked: each is skipped with a warning, never sorted.
    const int64_t n = index.dim(0), d = index.dim(1);
    std::vector<int64_t> order;
    for (int64_t r = 0; r < n; ++r) {
        const float* row = index.data() + r * d;
        bool finite = true, nonzero = false;
        for (int64_t k = 0; k < d; ++k) finite = finite && std::isfinite(row[k]), nonzero = nonzero || row[k] != 0.0f;
        if (finite && nonzero) order.push_back(r);
        else
            std::cerr << "zeroclip search: warning: " << zeroclip_cli::escape_text(index_path) << " row " << r << " ("
                      << zeroclip_cli::escape_text(names[static_cast<size_t>(r)]) << ") is "
                      << (finite ? "all zeros" : "not finite") << ": skipped\n";
    }
    if (order.empty()) throw zeroclip::error(zeroclip::errc::format, index_path + ": no row can be ranked");
    for (const auto& cut : zeroclip::texts_cut_by_context(m, {query}))
        std::cerr << "zeroclip search: warning: the query '" << zeroclip_cli::escape_text(cut) << "' is longer than the model's "
                  << m.config().text.context_length << "-token context: cut to fit\n";
    zeroclip::tensor q = zeroclip::embed_texts(m, {query});  // (1, D), normalised
    zeroclip::tensor scores = zeroclip::nn::cosines(m.backend(), zeroclip::nn::unit_rows(m.backend(), index), q);
    for (int64_t r : order)
        if (!std::isfinite(scores[r]))
            throw zeroclip::error(zeroclip::errc::format, m.source() + ": the query's similarity to " +
                                                              names[static_cast<size_t>(r)] +
                                                              " is not finite (NaN or Inf weights?)");
    const size_t k = std::min(order.size(), static_cast<size_t>(top_k));
    std::partial_sort(order.begin(), order.begin() + static_cast<long>(k), order.end(),
                      [&](int64_t x, int64_t y) { return scores[x] > scores[y] || (scores[x] == scores[y] && x < y); });
    if (destination) {
        // Nothing was decoded to build the index: the previews are made from the files now.
        std::vector<std::string> paths(k), errors;
        for (size_t i = 0; i < k; ++i) paths[i] = names[static_cast<size_t>(order[i])];
        auto thumbnails = zeroclip_cli::thumbnails_of_files(paths, m.preprocess_options().max_pixels,
                                                            std::max(1u, std::thread::hardware_concurrency()), errors);
        zeroclip_cli::html_report report([&](const std::string& s) { destination->write(s); });
        report.begin({"search", a.required("--model"), {}, {}, query,
                      index_path + " (" + std::to_string(index.dim(0)) + " images)", k, started_at});
        for (size_t i = 0; i < k; ++i)
            report.add({paths[i], "", {}, scores[order[i]], i + 1, std::move(thumbnails[i]),
                        errors[i].empty() ? "" : "no preview: " + errors[i]});
        report.finish({std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()});
        destination->commit();
        return 0;
    }
    std::cout << std::fixed << std::setprecision(4);
    for (size_t i = 0; i < k; ++i)
        std::cout << scores[order[i]] << "  " << zeroclip_cli::escape_text(names[static_cast<size_t>(order[i])]) << "\n";
    return 0;
}

}  // namespace

ZEROCLIP_CLI_COMMAND({"search", "rank embedded images by a text query",
                      "usage: zeroclip search --model M --index E.npy [--names N.txt] --text \"query\" [--top-k K]\n"
                      "                       [--format text|html] [--output FILE]\n\n"
                      "E.npy and N.txt come from `zeroclip embed --model M IMAGES... --out E.npy` (N.txt defaults\n"
                      "to E.names.txt). Prints the top K rows (default 10) by cosine similarity to the query, each\n"
                      "name as the names file holds it (escaped: one line per row). Rows that are all zeros or\n"
                      "not finite are skipped with a warning, never ranked.\n"
                      "--format html writes one self-contained page (query, ranked thumbnails, scores; no network)\n"
                      "to --output FILE (written whole or not at all) or stdout.\n\n"
                      "example:\n"
                      "  zeroclip embed --model M photos/ --out photos.npy\n"
                      "  zeroclip search --model M --index photos.npy --text \"a red circle\"\n"
                      "  zeroclip search --model M --index photos.npy --text \"a red circle\" --top-k 100 --format html --output r.html\n",
                      run_search});
