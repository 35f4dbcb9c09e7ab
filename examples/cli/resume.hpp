// What an interrupted run left in a .partial file: the paths it recorded (skipped when resuming)
// and the length of its whole records. A run killed mid-write leaves at most one incomplete record
// at the end; it is cut off and that file is done again. Anything else that is not a record of
// this command (another format, a corrupt line in the middle) stops the resume with an error, so
// that a wrong --output never gets mixed records appended.
#pragma once

#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>
#include <zeroclip/error.hpp>

#include "text.hpp"

namespace zeroclip_cli {

struct resume_state {
    std::unordered_set<std::string> done;  ///< paths recorded (raw bytes)
    size_t records = 0;                    ///< files recorded
    size_t errors = 0;                     ///< of which failed
    std::uint64_t keep_bytes = 0;          ///< length of the whole records; the rest is cut off
};

namespace detail {

[[noreturn]] inline void not_resumable(const std::string& partial, size_t line, const std::string& why) {
    throw zeroclip::error(zeroclip::errc::format, partial + " line " + std::to_string(line) + ": " + why +
                                                      "; not resuming it (check --output and --format, or delete it "
                                                      "to start over)");
}

inline std::optional<std::string> from_hex(const std::string& h) {
    if (h.size() % 2) return std::nullopt;
    std::string out;
    for (size_t i = 0; i < h.size(); i += 2) {
        auto v = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };
        const int hi = v(h[i]), lo = v(h[i + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        out += static_cast<char>(hi * 16 + lo);
    }
    return out;
}

/// The fields of one CSV line as csv_field writes them (quoted when holding ',' or '"').
inline std::optional<std::vector<std::string>> csv_fields(std::string_view line) {
    std::vector<std::string> fields(1);
    bool quoted = false, was_quoted = false;
    for (size_t i = 0; i < line.size(); ++i) {
        const char c = line[i];
        if (quoted) {
            if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') fields.back() += '"', ++i;
            else if (c == '"') quoted = false;
            else fields.back() += c;
        } else if (c == '"' && fields.back().empty() && !was_quoted) {
            quoted = was_quoted = true;
        } else if (c == ',') {
            fields.emplace_back(), was_quoted = false;
        } else {
            fields.back() += c;
        }
    }
    if (quoted) return std::nullopt;
    return fields;
}

/// Calls `record(line, line_number)` for each line ending in '\n'; returns the bytes they span.
template <class F>
std::uint64_t for_each_whole_line(const std::string& content, F&& record) {
    size_t start = 0, number = 1;
    for (size_t nl; (nl = content.find('\n', start)) != std::string::npos; start = nl + 1, ++number)
        if (!record(std::string_view(content).substr(start, nl - start), number)) break;
    return start;
}

}  // namespace detail

/// JSON Lines of classify: one {"path": ...} object a line ("path_hex" when the name is not UTF-8).
inline resume_state scan_jsonl(const std::string& content, const std::string& partial) {
    resume_state s;
    s.keep_bytes = detail::for_each_whole_line(content, [&](std::string_view line, size_t number) {
        nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
        std::optional<std::string> path;
        if (j.is_object() && j.contains("path_hex") && j["path_hex"].is_string()) path = detail::from_hex(j["path_hex"]);
        else if (j.is_object() && j.contains("path") && j["path"].is_string()) path = j["path"].get<std::string>();
        // A record cut short has no '\n' yet: a whole line that is not a record is another file.
        if (!path) detail::not_resumable(partial, number, "not a JSON line of zeroclip classify");
        s.done.insert(*path);
        ++s.records;
        s.errors += j.contains("error");
        return true;
    });
    return s;
}

/// The header line of classify --format csv.
inline const char* classify_csv_header() { return "path,rank,label,prob,cosine,error"; }

/// CSV of classify: `rows_per_image` rows (ranks 1..k) per classified image, one row with an error
/// for a failed one. A last image with fewer rows than that was cut off: it is done again.
inline resume_state scan_csv(const std::string& content, size_t rows_per_image, const std::string& partial) {
    resume_state s;
    std::string current;     // path of the group being read
    size_t rows = 0;         // its rows so far
    std::uint64_t end_of_complete = 0;
    bool header = false;
    detail::for_each_whole_line(content, [&](std::string_view line, size_t number) {
        const std::uint64_t line_start = static_cast<std::uint64_t>(line.data() - content.data());
        if (number == 1) {
            if (line != classify_csv_header()) detail::not_resumable(partial, 1, "not the header of classify --format csv");
            header = true;
            end_of_complete = line_start + line.size() + 1;
            return true;
        }
        const auto f = detail::csv_fields(line);
        std::optional<std::string> path;
        if (f && f->size() == 6) path = unescape_text((*f)[0]);
        if (!path) detail::not_resumable(partial, number, "not a CSV row of zeroclip classify");
        const bool failed = (*f)[1].empty();
        if (rows != 0 && *path != current) detail::not_resumable(partial, number, "the rows of " + escape_text(current) + " end early");
        if (rows == 0) current = *path;
        ++rows;
        if (failed || rows == rows_per_image) {
            s.done.insert(current);
            ++s.records;
            s.errors += failed;
            rows = 0;
            end_of_complete = line_start + line.size() + 1;
        }
        return true;
    });
    s.keep_bytes = header ? end_of_complete : 0;
    return s;
}

/// Lines of an embed names file written so far (each row's name, escaped): the count of whole lines
/// is the count of rows known written (rows are written before their names).
inline resume_state scan_names(const std::string& content) {
    resume_state s;
    s.keep_bytes = detail::for_each_whole_line(content, [&](std::string_view line, size_t) {
        s.done.insert(std::string(line));  // escaped, as written
        ++s.records;
        return true;
    });
    return s;
}

}  // namespace zeroclip_cli
