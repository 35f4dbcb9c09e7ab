// Helpers shared by the subcommands: finding image files, a progress bar, CSV/JSON quoting.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>
#include <zeroclip/error.hpp>
#include <zeroclip/io/file.hpp>

#include "cli.hpp"
#include "text.hpp"

namespace zeroclip_cli {

inline bool has_image_extension(const std::filesystem::path& p) {
    std::string ext = p.extension().string();
    for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (const char* e : {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tga", ".pnm", ".ppm", ".pgm", ".pbm"})
        if (ext == e) return true;
    return false;
}

/// A folder (or folder entry) that could not be read while collecting images: reported as a failed
/// row, never skipped in silence.
struct listing_problem {
    std::string path;
    std::string message;
};

/// Why stat() of `path` failed, in words ("no such file or folder", "symbolic link loop", ...).
inline std::string stat_failure(int e) {
    if (e == ENOENT || e == ENOTDIR) return "no such file or folder";
    if (e == ELOOP) return "symbolic link loop";
    if (e == EACCES) return "permission denied";
    return std::strerror(e);
}

namespace detail {
// The image files of `folder` (and of its subfolders when `recursive`; symbolic links to folders
// are not followed, so a link loop cannot recurse forever). Unreadable folders and entries that
// look like images but cannot be opened (broken links, loops) become problems.
inline void list_folder(const std::string& folder, bool recursive, std::vector<std::string>& found,
                        std::vector<listing_problem>& problems) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::directory_iterator it(folder, ec), end;
    if (ec) {
        problems.push_back({folder, folder + ": cannot list folder (" + ec.message() + ")"});
        return;
    }
    for (; it != end; it.increment(ec)) {
        if (ec) break;
        const fs::directory_entry& e = *it;
        std::error_code sec;
        const fs::file_status st = e.status(sec);  // follows links
        const std::string path = e.path().string();
        if (sec) {
            std::error_code lec;
            if (has_image_extension(e.path()))
                problems.push_back({path, path + ": cannot open image (" + stat_failure(sec.value()) +
                                              (e.is_symlink(lec) && sec.value() == ENOENT ? ": a broken symbolic link)" : ")")});
            continue;
        }
        if (fs::is_regular_file(st) && has_image_extension(e.path())) found.push_back(path);
        else if (recursive && fs::is_directory(st) && !e.is_symlink(sec)) list_folder(path, true, found, problems);
    }
    if (ec) problems.push_back({folder, folder + ": cannot list folder (" + ec.message() + ")"});
}
}  // namespace detail

/// Files named directly are kept whatever their extension; folders contribute their image files
/// (by extension), sorted, descending into subfolders when `recursive`. A path that does not exist,
/// is a symbolic link loop or is not a regular file or folder (a FIFO would block) is a usage error;
/// folders that cannot be read are appended to `problems`.
inline std::vector<std::string> collect_images(const std::vector<std::string>& inputs, bool recursive,
                                               std::vector<listing_problem>& problems) {
    std::vector<std::string> files;
    for (const auto& input : inputs) {
        struct stat st {};
        if (::stat(input.c_str(), &st) != 0) {
            const int e = errno;
            if (e == ENOENT || e == ENOTDIR) throw usage_error("no such file or folder: " + input);
            throw usage_error(input + ": " + stat_failure(e));
        }
        if (S_ISDIR(st.st_mode)) {
            std::vector<std::string> found;
            detail::list_folder(input, recursive, found, problems);
            std::sort(found.begin(), found.end());
            files.insert(files.end(), std::make_move_iterator(found.begin()), std::make_move_iterator(found.end()));
        } else if (S_ISREG(st.st_mode)) {
            files.push_back(input);
        } else {
            throw usage_error(input + ": not a regular file or folder (a FIFO, device or socket)");
        }
    }
    return files;
}

/// The same, for callers without a failed-row output: an unreadable folder is an errc::io error.
inline std::vector<std::string> collect_images(const std::vector<std::string>& inputs, bool recursive) {
    std::vector<listing_problem> problems;
    auto files = collect_images(inputs, recursive, problems);
    if (!problems.empty()) throw zeroclip::error(zeroclip::errc::io, problems.front().message);
    return files;
}

/// errc::io naming `path` unless it is a regular file: a FIFO or device given as a .npy input
/// would block or never end.
inline void require_regular_file(const std::string& path, const std::string& what) {
    zeroclip::open_regular_file(path, what);
}

/// "no image files found", or, when folders could not be read, the first such reason.
inline void throw_no_images(const std::vector<listing_problem>& problems) {
    if (!problems.empty()) throw zeroclip::error(zeroclip::errc::io, problems.front().message);
    throw usage_error("no image files found in the given folders");
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

/// A CSV field: the text escaped (escape_text: no control character, valid UTF-8), then quoted
/// when it holds a comma or quote.
inline std::string csv_field(const std::string& raw) {
    const std::string s = escape_text(raw);
    if (s.find_first_of(",\"") == std::string::npos) return s;
    std::string q = "\"";
    for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
}

/// Labels from --labels "a,b" or --labels-file F (one per line), each given once (usage error).
std::vector<std::string> labels_from(const args& a);
/// Templates from --template T, --templates NAME or --templates-file F (default: "A photo of a {}.").
std::vector<std::string> templates_from(const args& a);

}  // namespace zeroclip_cli
