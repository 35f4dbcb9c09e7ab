//! Prompts: class names become texts through templates ("A photo of a {}." by default, or a set
//! of templates whose embeddings are averaged per class, the official prompt ensemble).
//! The 80 ImageNet templates of the CLIP release (openai/CLIP, MIT) ship as `imagenet80`.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "error.hpp"
#include "io/file.hpp"

namespace zeroclip {

/// The template of the CLIP paper's single-prompt zero-shot results.
inline const std::string default_template = "A photo of a {}.";

/// OpenAI's 80 ImageNet prompt templates (notebooks/Prompt_Engineering_for_ImageNet.ipynb).
inline const std::vector<std::string>& imagenet_templates() {
    static const std::vector<std::string> templates = {
        "a bad photo of a {}.",
        "a photo of many {}.",
        "a sculpture of a {}.",
        "a photo of the hard to see {}.",
        "a low resolution photo of the {}.",
        "a rendering of a {}.",
        "graffiti of a {}.",
        "a bad photo of the {}.",
        "a cropped photo of the {}.",
        "a tattoo of a {}.",
        "the embroidered {}.",
        "a photo of a hard to see {}.",
        "a bright photo of a {}.",
        "a photo of a clean {}.",
        "a photo of a dirty {}.",
        "a dark photo of the {}.",
        "a drawing of a {}.",
        "a photo of my {}.",
        "the plastic {}.",
        "a photo of the cool {}.",
        "a close-up photo of a {}.",
        "a black and white photo of the {}.",
        "a painting of the {}.",
        "a painting of a {}.",
        "a pixelated photo of the {}.",
        "a sculpture of the {}.",
        "a bright photo of the {}.",
        "a cropped photo of a {}.",
        "a plastic {}.",
        "a photo of the dirty {}.",
        "a jpeg corrupted photo of a {}.",
        "a blurry photo of the {}.",
        "a photo of the {}.",
        "a good photo of the {}.",
        "a rendering of the {}.",
        "a {} in a video game.",
        "a photo of one {}.",
        "a doodle of a {}.",
        "a close-up photo of the {}.",
        "a photo of a {}.",
        "the origami {}.",
        "the {} in a video game.",
        "a sketch of a {}.",
        "a doodle of the {}.",
        "a origami {}.",
        "a low resolution photo of a {}.",
        "the toy {}.",
        "a rendition of the {}.",
        "a photo of the clean {}.",
        "a photo of a large {}.",
        "a rendition of a {}.",
        "a photo of a nice {}.",
        "a photo of a weird {}.",
        "a blurry photo of a {}.",
        "a cartoon {}.",
        "art of a {}.",
        "a sketch of the {}.",
        "a embroidered {}.",
        "a pixelated photo of a {}.",
        "itap of the {}.",
        "a jpeg corrupted photo of the {}.",
        "a good photo of a {}.",
        "a plushie {}.",
        "a photo of the nice {}.",
        "a photo of the small {}.",
        "a photo of the weird {}.",
        "the cartoon {}.",
        "art of the {}.",
        "a drawing of the {}.",
        "a photo of the large {}.",
        "a black and white photo of a {}.",
        "the plushie {}.",
        "a dark photo of a {}.",
        "itap of a {}.",
        "graffiti of the {}.",
        "a toy {}.",
        "itap of my {}.",
        "a photo of a cool {}.",
        "a photo of a small {}.",
        "a tattoo of the {}."};
    return templates;
}

/// A named template set: "imagenet80", or "default" (the single default template).
inline std::vector<std::string> named_templates(const std::string& name) {
    if (name == "imagenet80" || name == "imagenet") return imagenet_templates();
    if (name == "default") return {default_template};
    ZEROCLIP_THROW(errc::invalid_argument, "unknown template set '" + name + "' (known: imagenet80, default)");
}

/// `tmpl` with every "{}" replaced by `label` (a template may name the class more than once);
/// errc::invalid_argument if it has no "{}".
inline std::string fill_template(const std::string& tmpl, const std::string& label) {
    if (tmpl.find("{}") == std::string::npos)
        ZEROCLIP_THROW(errc::invalid_argument, "template '" + tmpl + "' has no {} for the class name");
    std::string out;
    for (size_t at = 0;;) {
        const auto slot = tmpl.find("{}", at);
        if (slot == std::string::npos) return out + tmpl.substr(at);
        out += tmpl.substr(at, slot - at) + label;
        at = slot + 2;
    }
}

namespace detail {
inline std::string trim(const std::string& s) {
    const auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return "";
    return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}
}  // namespace detail

/// Largest labels, templates or texts file read_lines_file accepts (a million captions fit).
constexpr uint64_t max_lines_file_bytes = uint64_t{256} << 20;

/// Non-empty trimmed lines of a text file (labels, templates or texts, one per line, `what` names
/// which in messages); lines starting with '#' are comments and a UTF-8 byte-order mark is
/// dropped. errc::io if it is missing, not a regular file (a folder, /dev/zero, a FIFO) or larger
/// than max_lines_file_bytes; errc::invalid_argument if it holds no entry.
inline std::vector<std::string> read_lines_file(const std::string& path, const std::string& what = "lines file") {
    std::string text = read_file(path, what, max_lines_file_bytes);
    if (text.compare(0, 3, "\xEF\xBB\xBF") == 0) text.erase(0, 3);
    std::vector<std::string> lines;
    for (size_t at = 0; at < text.size();) {
        size_t end = text.find('\n', at);
        if (end == std::string::npos) end = text.size();
        std::string line = detail::trim(text.substr(at, end - at));
        if (!line.empty() && line[0] != '#') lines.push_back(std::move(line));
        at = end + 1;
    }
    if (lines.empty())
        ZEROCLIP_THROW(errc::invalid_argument,
                       path + ": no entries in this " + what + " (only blank or '#' comment lines; one per line expected)");
    return lines;
}

/// Comma-separated labels ("cat, dog,bird") as a list, trimmed; empty items are an error.
inline std::vector<std::string> split_labels(const std::string& text) {
    if (detail::trim(text).empty()) ZEROCLIP_THROW(errc::invalid_argument, "the label list is empty");
    std::vector<std::string> labels;
    size_t start = 0;
    while (true) {
        const auto comma = text.find(',', start);
        std::string item = detail::trim(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
        if (item.empty()) ZEROCLIP_THROW(errc::invalid_argument, "empty label in '" + text + "'");
        labels.push_back(item);
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return labels;
}

/// errc::invalid_argument naming the first label given twice: a class listed twice would split
/// its probability between the copies.
inline void check_distinct_labels(const std::vector<std::string>& labels) {
    std::vector<std::string> sorted = labels;
    std::sort(sorted.begin(), sorted.end());
    const auto dup = std::adjacent_find(sorted.begin(), sorted.end());
    if (dup != sorted.end())
        ZEROCLIP_THROW(errc::invalid_argument, "label '" + *dup + "' is given twice (each class must appear once)");
}

}  // namespace zeroclip
