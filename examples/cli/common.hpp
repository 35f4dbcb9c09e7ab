// Helpers shared by the subcommands: finding image files, a progress bar, CSV/JSON quoting.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>
#include <zeroclip/error.hpp>

#include "cli.hpp"

namespace zeroclip_cli {

inline bool has_image_extension(const std::filesystem::path& p) {
    std::string ext = p.extension().string();
    for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (const char* e : {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tga", ".pnm", ".ppm", ".pgm", ".pbm"})
        if (ext == e) return true;
    return false;
}

/// Files named directly are kept whatever their extension; folders contribute their image files
/// (by extension), sorted, descending into subfolders when `recursive`. A missing path is a usage error.
inline std::vector<std::string> collect_images(const std::vector<std::string>& inputs, bool recursive) {
    namespace fs = std::filesystem;
    std::vector<std::string> files;
    for (const auto& input : inputs) {
        std::error_code ec;
        if (fs::is_directory(input, ec)) {
            std::vector<std::string> found;
            auto add = [&](const fs::directory_entry& e) {
                if (e.is_regular_file(ec) && has_image_extension(e.path())) found.push_back(e.path().string());
            };
            if (recursive)
                for (const auto& e : fs::recursive_directory_iterator(input, fs::directory_options::skip_permission_denied, ec)) add(e);
            else
                for (const auto& e : fs::directory_iterator(input, ec)) add(e);
            std::sort(found.begin(), found.end());
            files.insert(files.end(), found.begin(), found.end());
        } else if (fs::exists(input, ec)) {
            files.push_back(input);
        } else {
            throw usage_error("no such file or folder: " + input);
        }
    }
    return files;
}

/// "count/total, rate, time left" on stderr, redrawn in place; silent when stderr is not a terminal.
class progress_bar {
public:
    explicit progress_bar(std::string what) : what_(std::move(what)), enabled_(isatty(STDERR_FILENO) != 0) {}
    void update(size_t done, size_t total) {
        if (!enabled_ || total == 0) return;
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
        const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0;
        const int width = 30, filled = static_cast<int>(width * done / total);
        std::fprintf(stderr, "\r[%s%s] %zu/%zu %s  %.1f/s  %.0fs left ", std::string(static_cast<size_t>(filled), '=').c_str(),
                     std::string(static_cast<size_t>(width - filled), ' ').c_str(), done, total, what_.c_str(), rate,
                     rate > 0 ? static_cast<double>(total - done) / rate : 0.0);
        if (done == total) std::fputc('\n', stderr);
        std::fflush(stderr);
    }

private:
    std::string what_;
    bool enabled_;
    std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

/// A CSV field, quoted when it holds a comma, quote or newline.
inline std::string csv_field(const std::string& s) {
    if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
    std::string q = "\"";
    for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
}

/// Labels from --labels "a,b" or --labels-file F (one per line).
std::vector<std::string> labels_from(const args& a);
/// Templates from --template T, --templates NAME or --templates-file F (default: "A photo of a {}.").
std::vector<std::string> templates_from(const args& a);

}  // namespace zeroclip_cli
