// The CLI's one entry to embedding image files batch by batch: each finished batch goes to a
// callback, in input order, so results can be written as they come and memory does not grow with
// the number of files.
#pragma once

#include <cmath>
#include <string>
#include <vector>
#include <zeroclip/zeroclip.hpp>

namespace zeroclip_cli {

/// One finished batch: `embeddings` holds one L2-normalised host row per file that succeeded, in
/// input order; `errors[i]` is "" when paths[i] succeeded, else its message.
struct image_batch {
    size_t first = 0;  ///< index of paths[0] in the whole list
    std::vector<std::string> paths;
    zeroclip::tensor embeddings;
    std::vector<std::string> errors;
};

/// Calls on_batch(const image_batch&) per batch of `options.batch` files, on this thread. If it
/// throws, the stream stops there. options.on_decoded gets indices into `paths`.
template <class Backend, class OnBatch>
void for_each_image_batch(const zeroclip::models::clip_model<Backend>& model, const std::vector<std::string>& paths,
                          OnBatch&& on_batch, const zeroclip::file_batch_options& options) {
    const size_t step = static_cast<size_t>(std::max(1, options.batch));
    for (size_t first = 0; first < paths.size(); first += step) {
        image_batch b;
        b.first = first;
        b.paths.assign(paths.begin() + static_cast<std::ptrdiff_t>(first),
                       paths.begin() + static_cast<std::ptrdiff_t>(std::min(paths.size(), first + step)));
        zeroclip::file_batch_options one = options;
        one.progress = nullptr;
        if (options.on_decoded) one.on_decoded = [&](size_t i, const zeroclip::decoded_image& im) { options.on_decoded(first + i, im); };
        auto r = zeroclip::embed_image_files(model, b.paths, one);
        b.errors = std::move(r.errors);
        const int64_t d = r.embeddings.dim(1);
        size_t ok = 0;
        for (const auto& e : b.errors) ok += e.empty();
        b.embeddings = zeroclip::tensor({static_cast<int64_t>(ok), d});
        float* out = b.embeddings.data();
        for (size_t i = 0; i < b.paths.size(); ++i) {
            if (!b.errors[i].empty()) continue;
            const float* row = r.embeddings.data() + static_cast<int64_t>(i) * d;
            double n = 0;
            for (int64_t k = 0; k < d; ++k) n += double(row[k]) * row[k];
            const float inv = n > 0 ? static_cast<float>(1.0 / std::sqrt(n)) : 0.f;
            for (int64_t k = 0; k < d; ++k) *out++ = row[k] * inv;
        }
        on_batch(static_cast<const image_batch&>(b));
        if (options.progress) options.progress(first + b.paths.size(), paths.size());
    }
}

}  // namespace zeroclip_cli
