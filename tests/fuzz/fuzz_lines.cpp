//! libFuzzer target: labels and templates files (read_lines_file: one entry per line, '#'
//! comments), comma-separated labels (split_labels), and filling each template with each label.
//! read_lines_file takes a path, so the input is written to a private temporary file first.
#include <unistd.h>

#include <zeroclip/prompt.hpp>

#include "fuzz_common.hpp"

namespace {

std::string temp_path() {
    static const std::string path = [] {
        const char* dir = std::getenv("TMPDIR");
        std::string p = std::string(dir && *dir ? dir : "/tmp") + "/zeroclip-fuzz-lines-" + std::to_string(::getpid()) + ".txt";
        return p;
    }();
    return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = temp_path();
    {
        std::FILE* f = std::fopen(path.c_str(), "wb");
        if (!f) return 0;
        std::fwrite(data, 1, size, f);
        std::fclose(f);
    }
    const std::string text(reinterpret_cast<const char*>(data), size);
    std::vector<std::string> labels, templates;
    accept_or_refuse([&] {
        labels = zeroclip::read_lines_file(path);
        for (const auto& l : labels) FUZZ_CHECK(!l.empty() && l[0] != '#' && l.find('\n') == std::string::npos);
    });
    accept_or_refuse([&] {
        for (const auto& l : zeroclip::split_labels(text)) FUZZ_CHECK(!l.empty() && l.find(',') == std::string::npos);
    });
    // The same lines as templates, each filled with each label (bounded: 4 x 4, exceptions are slow).
    for (size_t t = 0; t < labels.size() && t < 4; ++t)
        for (size_t l = 0; l < labels.size() && l < 4; ++l)
            accept_or_refuse([&] {
                const std::string filled = zeroclip::fill_template(labels[t], labels[l]);
                // Every {} of the template becomes the label (as many slots as find() meets).
                size_t slots = 0;
                for (size_t at = 0; (at = labels[t].find("{}", at)) != std::string::npos; at += 2) ++slots;
                FUZZ_CHECK(filled.size() == labels[t].size() + slots * labels[l].size() - 2 * slots);
            });
    std::remove(path.c_str());
    return 0;
}
