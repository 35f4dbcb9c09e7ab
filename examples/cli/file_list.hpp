// The list of files one streaming run works on: image files and folders named on the command line,
// `--files-from FILE` (one path a line, `-` for stdin) and `--shard K/N`. Every problem with the
// list itself (an unreadable list, a bad shard spec) is a usage error raised before any work.
#pragma once

#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <string>
#include <string_view>
#include <utility>
#include <memory>
#include <optional>
#include <vector>
#include <zeroclip/embeddings.hpp>
#include <zeroclip/io/file.hpp>

#include "cli.hpp"
#include "common.hpp"

namespace zeroclip_cli {

/// FNV-1a, 64 bits, of the bytes of `s`: the shard of a path depends on its own bytes only, never
/// on where it sits in the list, so adding files elsewhere moves nothing between shards.
inline std::uint64_t fnv1a64(std::string_view s) {
    std::uint64_t h = 14695981039346656037ull;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return h;
}

/// `--shard K/N`: keep the paths whose hash is K modulo N.
struct shard_spec {
    std::uint64_t k = 0, n = 1;
    bool keeps(std::string_view path) const { return n == 1 || fnv1a64(path) % n == k; }
};

/// "K/N" with 0 <= K < N, both decimal; anything else ("3/2", "a/b", "1/0", "-1/2") is a usage error.
inline shard_spec parse_shard(const std::string& spec) {
    auto number = [&](std::string_view s, std::uint64_t& out) {
        if (s.empty() || s.size() > 9) return false;
        out = 0;
        for (char c : s) {
            if (c < '0' || c > '9') return false;
            out = out * 10 + static_cast<std::uint64_t>(c - '0');
        }
        return true;
    };
    const auto slash = spec.find('/');
    shard_spec s;
    if (slash == std::string::npos || !number(std::string_view(spec).substr(0, slash), s.k) ||
        !number(std::string_view(spec).substr(slash + 1), s.n) || s.n == 0 || s.k >= s.n)
        throw usage_error("--shard must be K/N with 0 <= K < N (e.g. 0/4 ... 3/4), got '" + spec + "'");
    return s;
}

/// The paths of a list file, one a line, in order: blank lines (only spaces or tabs) are skipped and
/// a trailing '\r' is dropped (lists written on Windows); nothing else is changed. `-` reads stdin.
/// A list that cannot be read is a usage error: no work has started.
inline std::vector<std::string> read_files_from(const std::string& list) {
    std::string text;
    if (list == "-") {
        text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
        if (std::cin.bad()) throw usage_error("--files-from -: cannot read standard input");
    } else {
        try {
            text = zeroclip::read_file(list, "file list", std::uint64_t{1} << 40);
        } catch (const zeroclip::error& e) {
            throw usage_error(std::string("--files-from: ") + e.what());
        }
    }
    std::vector<std::string> paths;
    for (size_t start = 0; start < text.size();) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        size_t len = end - start;
        if (len && text[start + len - 1] == '\r') --len;
        std::string_view line(text.data() + start, len);
        if (line.find_first_not_of(" \t") != std::string_view::npos) paths.emplace_back(line);
        start = end + 1;
    }
    return paths;
}

/// The next path of a list (the lines read_files_from keeps, same rules) into `path`; false at the end.
inline bool next_listed_line(std::istream& in, std::string& path) {
    while (std::getline(in, path)) {
        if (!path.empty() && path.back() == '\r') path.pop_back();
        if (path.find_first_not_of(" \t") != std::string::npos) return true;
    }
    return false;
}

/// `--files-from FILE` read as it is used, never held whole: each pass re-reads FILE line by line
/// and yields only the paths of this --shard that `skip` (the files an interrupted run recorded)
/// does not name, so memory does not grow with the list. A regular file only (read twice: once to
/// count, once to work); stdin is read into memory as before.
class list_stream {
public:
    /// usage_error, as read_files_from, when the list cannot be opened: no work has started.
    list_stream(std::string list, shard_spec shard) : list_(std::move(list)), shard_(shard) {
        try {
            zeroclip::open_regular_file(list_, "file list");
        } catch (const zeroclip::error& e) {
            throw usage_error(std::string("--files-from: ") + e.what());
        }
    }

    std::function<bool(const std::string&)> skip;  ///< paths left out (resume); none when empty

    /// A fresh pass over the list. A list that cannot be read any more (removed between passes) is
    /// errc::io: work may have started, so it is no longer a usage error.
    zeroclip::path_source source() const {
        auto in = std::make_shared<std::ifstream>(list_, std::ios::binary);
        if (!*in) throw zeroclip::error(zeroclip::errc::io, list_ + ": cannot open file list");
        return [this, in](std::string& path) {
            while (next_listed_line(*in, path))
                if (shard_.keeps(path) && !(skip && skip(path))) return true;
            if (in->bad()) throw zeroclip::error(zeroclip::errc::io, list_ + ": cannot read file list");
            return false;
        };
    }

    /// One pass calling `each(path)` for every path a run would do; returns their count.
    template <class F>
    size_t for_each(F&& each) const {
        const zeroclip::path_source next = source();
        size_t count = 0;
        for (std::string path; next(path); ++count) each(path);
        return count;
    }

private:
    std::string list_;
    shard_spec shard_;
};

/// The work of one run: files in order, and the folders that could not be read (each a failed row);
/// or, when `stream` is set, the paths of a --files-from list read lazily (files is then empty).
struct file_list {
    std::vector<std::string> files;
    std::vector<listing_problem> problems;
    std::optional<list_stream> stream;
};

/// Positionals (files and folders, as collect_images), then --files-from entries (taken as given:
/// one that does not exist is a failed row, not a failed run), then only this --shard's part. With
/// `lazy`, a --files-from FILE that is the only input (no positionals; not stdin) is not read here
/// but left to file_list::stream.
inline file_list list_inputs(const args& a, bool lazy = false) {
    file_list out;
    shard_spec shard;
    if (auto spec = a.get("--shard")) shard = parse_shard(*spec);  // a bad spec fails before reading stdin
    const auto list = a.get("--files-from");
    if (lazy && list && *list != "-" && a.positionals().empty()) {
        out.stream.emplace(*list, shard);
        return out;
    }
    if (!a.positionals().empty()) out.files = collect_images(a.positionals(), a.has("--recursive"), out.problems);
    if (list) {
        auto more = read_files_from(*list);
        out.files.insert(out.files.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
    }
    if (shard.n > 1) {
        auto keep = [&](const std::string& p) { return shard.keeps(p); };
        out.files.erase(std::remove_if(out.files.begin(), out.files.end(), [&](const auto& p) { return !keep(p); }),
                        out.files.end());
        out.problems.erase(std::remove_if(out.problems.begin(), out.problems.end(),
                                          [&](const auto& p) { return !keep(p.path); }),
                           out.problems.end());
        out.files.shrink_to_fit();
    }
    return out;
}

/// Calls `each(path)` for every file of `in` (one pass over a lazy list); returns their count.
template <class F>
size_t for_each_file(const file_list& in, F&& each) {
    if (in.stream) return in.stream->for_each(each);
    for (const auto& f : in.files) each(f);
    return in.files.size();
}

/// The files of `in` in order, for embed_image_stream (a lazy list re-read from its start), and
/// how many there are: with a lazy list, one counting pass that also calls `each(path)`.
struct file_source {
    zeroclip::path_source next;
    size_t count = 0;
};
template <class F>
file_source source_of(const file_list& in, F&& each) {
    const size_t count = for_each_file(in, each);
    if (in.stream) return {in.stream->source(), count};
    auto next = std::make_shared<size_t>(0);
    return {[&files = in.files, next](std::string& path) {
                if (*next == files.size()) return false;
                path = files[(*next)++];
                return true;
            },
            count};
}

/// usage_error when an existing output (flag, path) is one of the image files, through any link:
/// file_plan's input rule for lists of any length, without holding an entry per file.
inline void check_outputs_are_not_images(const file_list& files,
                                         const std::vector<std::pair<std::string, std::string>>& outputs) {
    std::vector<std::pair<struct stat, const std::pair<std::string, std::string>*>> existing;
    for (const auto& o : outputs)
        if (struct stat st {}; ::stat(o.second.c_str(), &st) == 0) existing.emplace_back(st, &o);
    if (existing.empty()) return;
    for_each_file(files, [&](const std::string& file) {
        struct stat st {};
        if (::stat(file.c_str(), &st) != 0) return;
        for (const auto& [out, o] : existing)
            if (out.st_dev == st.st_dev && out.st_ino == st.st_ino)
                throw usage_error(o->first + " " + o->second + " is the same file as the input " + file +
                                  " (image): writing it would destroy the input");
    });
}

/// Help lines shared by classify and embed.
inline const char* file_list_help() {
    return "  --files-from F   more image paths, one a line (`-`: stdin); blank lines are skipped; a\n"
           "                   path that cannot be read fails alone (reported, exit 1), not the run.\n"
           "                   As the only input, F is read as it is used, never held whole (twice:\n"
           "                   a count, then the work; stdin and classify --format html: held)\n"
           "  --shard K/N      only the files whose path hashes (FNV-1a 64 of its bytes) to K mod N,\n"
           "                   0 <= K < N: N runs with K = 0..N-1 cover every file exactly once\n";
}

}  // namespace zeroclip_cli
