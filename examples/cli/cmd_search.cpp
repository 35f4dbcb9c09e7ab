// `zeroclip search`: rank embedded images (from `zeroclip embed ... --out E.npy`) by a text query.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <numeric>
#include <optional>
#include <thread>
#include <zeroclip/zeroclip.hpp>

#include "common.hpp"
#include "report_html.hpp"

namespace {

int run_search(const std::vector<std::string>& argv) {
    const auto started = std::chrono::steady_clock::now();
    const std::string started_at = zeroclip_cli::utc_now();
    zeroclip_cli::args a(argv, {"--model", "--index", "--names", "--text", "--top-k", "--format", "--output"}, {});
    const std::string format = a.get("--format").value_or("text");
    if (format != "text" && format != "html") throw zeroclip_cli::usage_error("--format must be text or html");
    if (a.has("--output") && format != "html") throw zeroclip_cli::usage_error("--output is for --format html");
    const std::string index_path = a.required("--index");
    const std::string query = a.required("--text");
    if (query.empty()) throw zeroclip_cli::usage_error("--text must not be empty");
    const int top_k = a.get_int("--top-k", 10, 1, 1000000);
    std::string names_path = a.get("--names").value_or(
        (index_path.size() > 4 && index_path.substr(index_path.size() - 4) == ".npy" ? index_path.substr(0, index_path.size() - 4)
                                                                                    : index_path) + ".names.txt");
    zeroclip::tensor index = zeroclip::load_npy(index_path).to_float();
    std::vector<std::string> names;
    std::ifstream in(names_path);
    if (!in) throw zeroclip::error(zeroclip::errc::io, names_path + ": cannot open (give --names N.txt)");
    for (std::string line; std::getline(in, line);) names.push_back(line);
    if (index.ndim() != 2 || static_cast<int64_t>(names.size()) != index.dim(0))
        throw zeroclip::error(zeroclip::errc::shape, index_path + " has shape " + zeroclip::shape_to_string(index.shape()) +
                                                         " but " + names_path + " has " + std::to_string(names.size()) + " names");
    std::optional<zeroclip_cli::report_destination> destination;  // created before the work: a bad path fails first
    if (format == "html") destination.emplace(a.get("--output"));
    zeroclip::model m = zeroclip::load_model(a.required("--model"));
    if (index.dim(1) != m.config().embed_dim)
        throw zeroclip::error(zeroclip::errc::shape, index_path + " rows have " + std::to_string(index.dim(1)) +
                                                         " values, the model embeds in " + std::to_string(m.config().embed_dim));
    zeroclip::tensor q = zeroclip::embed_texts(m, {query});  // (1, D), normalised
    zeroclip::tensor scores = m.backend().linear(m.backend().l2_normalize_rows(index), q, zeroclip::tensor{});  // cosines
    std::vector<int64_t> order(static_cast<size_t>(index.dim(0)));
    std::iota(order.begin(), order.end(), 0);
    const size_t k = std::min(order.size(), static_cast<size_t>(top_k));
    std::partial_sort(order.begin(), order.begin() + static_cast<long>(k), order.end(),
                      [&](int64_t x, int64_t y) { return scores[x] > scores[y]; });
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
    for (size_t i = 0; i < k; ++i) std::cout << scores[order[i]] << "  " << names[static_cast<size_t>(order[i])] << "\n";
    return 0;
}

}  // namespace

ZEROCLIP_CLI_COMMAND({"search", "rank embedded images by a text query",
                      "usage: zeroclip search --model M --index E.npy [--names N.txt] --text \"query\" [--top-k K]\n"
                      "                       [--format text|html] [--output FILE]\n\n"
                      "E.npy and N.txt come from `zeroclip embed --model M IMAGES... --out E.npy` (N.txt defaults\n"
                      "to E.names.txt). Prints the top K rows (default 10) by cosine similarity to the query.\n"
                      "--format html writes one self-contained page (query, ranked thumbnails, scores; no network)\n"
                      "to --output FILE (written whole or not at all) or stdout.\n\n"
                      "example:\n"
                      "  zeroclip embed --model M photos/ --out photos.npy\n"
                      "  zeroclip search --model M --index photos.npy --text \"a red circle\"\n"
                      "  zeroclip search --model M --index photos.npy --text \"a red circle\" --top-k 100 --format html --output r.html\n",
                      run_search});
