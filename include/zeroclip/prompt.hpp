//! Prompts: class names become texts through templates ("A photo of a {}." by default, or a set
//! of templates whose embeddings are averaged per class, the official prompt ensemble).
//! The 80 ImageNet templates of the CLIP release (openai/CLIP, MIT) ship as `imagenet80`.
#pragma once

#include <fstream>
#include <string>
#include <vector>

#include "error.hpp"

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

/// `tmpl` with its "{}" replaced by `label`; errc::invalid_argument if it has no "{}".
inline std::string fill_template(const std::string& tmpl, const std::string& label) {
    const auto at = tmpl.find("{}");
    if (at == std::string::npos)
        ZEROCLIP_THROW(errc::invalid_argument, "template '" + tmpl + "' has no {} for the class name");
    return tmpl.substr(0, at) + label + tmpl.substr(at + 2);
}

namespace detail {
inline std::string trim(const std::string& s) {
    const auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return "";
    return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}
}  // namespace detail

/// Non-empty trimmed lines of a text file (labels or templates, one per line); lines starting with
/// '#' are comments. errc::io if unreadable, errc::invalid_argument if it holds no line.
inline std::vector<std::string> read_lines_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) ZEROCLIP_THROW(errc::io, path + ": cannot open");
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) {
        line = detail::trim(line);
        if (!line.empty() && line[0] != '#') lines.push_back(line);
    }
    if (lines.empty()) ZEROCLIP_THROW(errc::invalid_argument, path + ": no entries (one per line expected)");
    return lines;
}

/// Comma-separated labels ("cat, dog,bird") as a list, trimmed; empty items are an error.
inline std::vector<std::string> split_labels(const std::string& text) {
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

}  // namespace zeroclip
