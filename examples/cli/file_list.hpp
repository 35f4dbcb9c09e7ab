// The list of files one streaming run works on: image files and folders named on the command line,
// `--files-from FILE` (one path a line, `-` for stdin) and `--shard K/N`. Every problem with the
// list itself (an unreadable list, a bad shard spec) is a usage error raised before any work.
#pragma once

#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <iterator>
#include <string>
#include <string_view>
#include <utility>
#include <vector>
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

/// The work of one run: files in order, and the folders that could not be read (each a failed row).
struct file_list {
    std::vector<std::string> files;
    std::vector<listing_problem> problems;
};

/// Positionals (files and folders, as collect_images), then --files-from entries (taken as given:
/// one that does not exist is a failed row, not a failed run), then only this --shard's part.
inline file_list list_inputs(const args& a) {
    file_list out;
    shard_spec shard;
    if (auto spec = a.get("--shard")) shard = parse_shard(*spec);  // a bad spec fails before reading stdin
    if (!a.positionals().empty()) out.files = collect_images(a.positionals(), a.has("--recursive"), out.problems);
    if (auto list = a.get("--files-from")) {
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

/// usage_error when an existing output (flag, path) is one of the image files, through any link:
/// file_plan's input rule for lists of any length, without holding an entry per file.
inline void check_outputs_are_not_images(const std::vector<std::string>& files,
                                         const std::vector<std::pair<std::string, std::string>>& outputs) {
    std::vector<std::pair<struct stat, const std::pair<std::string, std::string>*>> existing;
    for (const auto& o : outputs)
        if (struct stat st {}; ::stat(o.second.c_str(), &st) == 0) existing.emplace_back(st, &o);
    for (size_t i = 0; i < files.size() && !existing.empty(); ++i) {
        struct stat st {};
        if (::stat(files[i].c_str(), &st) != 0) continue;
        for (const auto& [out, o] : existing)
            if (out.st_dev == st.st_dev && out.st_ino == st.st_ino)
                throw usage_error(o->first + " " + o->second + " is the same file as the input " + files[i] +
                                  " (image): writing it would destroy the input");
    }
}

/// Help lines shared by classify and embed.
inline const char* file_list_help() {
    return "  --files-from F   more image paths, one a line (`-`: stdin); blank lines are skipped; a\n"
           "                   path that cannot be read fails alone (reported, exit 1), not the run\n"
           "  --shard K/N      only the files whose path hashes (FNV-1a 64 of its bytes) to K mod N,\n"
           "                   0 <= K < N: N runs with K = 0..N-1 cover every file exactly once\n";
}

}  // namespace zeroclip_cli
