//! The end-to-end path for files: decode → preprocess (several threads) → encode in batches.
//! A file that cannot be read or decoded does not stop the others: its error is returned.
#pragma once

#include <algorithm>
#include <atomic>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "models/clip.hpp"

namespace zeroclip {

/// Options of embed_image_files.
struct file_batch_options {
    int batch = 16;    ///< images per encoder call
    int threads = 0;   ///< decoding threads; 0 = the machine's hardware threads (memory: see image.hpp)
    /// Called after each batch with (files done, files total), e.g. for a progress bar.
    std::function<void(size_t, size_t)> progress;
    decode_mode decode = decode_mode::exact;  ///< JPEG decoding: exact, or draft (DCT-scaled, faster)
    /// Called with (file index, decoded image) right after each file decodes, before
    /// preprocessing: a look at the full image without a second decode (e.g. for thumbnails).
    /// Runs on the decoding threads, concurrently for different files; if it throws, that file
    /// fails with its message.
    std::function<void(size_t, const decoded_image&)> on_decoded;
};

/// Embeddings of image files, one row per file; `errors[i]` is empty when file i succeeded,
/// otherwise its message (and row i is all zeros).
struct file_embeddings {
    tensor embeddings;                 ///< (files, embed_dim), not normalised
    std::vector<std::string> errors;   ///< per file
};

/// Decodes and preprocesses the files with `threads` threads, encodes them `batch` at a time.
template <class Backend>
file_embeddings embed_image_files(const models::clip_model<Backend>& model, const std::vector<std::string>& paths,
                                  const file_batch_options& options = {}) {
    if (options.batch < 1) ZEROCLIP_THROW(errc::invalid_argument, "embed_image_files: batch must be >= 1");
    preprocess_options pre = model.preprocess_options();
    pre.decode = options.decode;
    const int64_t s = pre.size, d = model.config().embed_dim, row = 3 * s * s;
    file_embeddings out{tensor({static_cast<int64_t>(paths.size()), d}), std::vector<std::string>(paths.size())};
    unsigned threads = options.threads > 0 ? static_cast<unsigned>(options.threads)
                                           : std::max(1u, std::thread::hardware_concurrency());
    for (size_t start = 0; start < paths.size(); start += static_cast<size_t>(options.batch)) {
        const size_t count = std::min(paths.size() - start, static_cast<size_t>(options.batch));
        tensor pixels({static_cast<int64_t>(count), 3, s, s});
        std::atomic<size_t> next{0};
        auto work = [&] {
            for (size_t i; (i = next++) < count;) {
                try {
                    const decoded_image image = decode_image_file(paths[start + i], pre);
                    if (options.on_decoded) options.on_decoded(start + i, image);
                    normalize_into(preprocess_crop(image, pre), pre.mean, pre.stddev,
                                   pixels.data() + static_cast<int64_t>(i) * row);
                } catch (const std::exception& e) {
                    out.errors[start + i] = e.what();
                }
            }
        };
        std::vector<std::thread> pool;
        for (unsigned t = 1; t < std::min<unsigned>(threads, static_cast<unsigned>(count)); ++t) pool.emplace_back(work);
        work();
        for (auto& t : pool) t.join();
        // Encode only the images that decoded, in one call.
        std::vector<size_t> ok;
        for (size_t i = 0; i < count; ++i)
            if (out.errors[start + i].empty()) ok.push_back(i);
        if (!ok.empty()) {
            tensor good({static_cast<int64_t>(ok.size()), 3, s, s});
            for (size_t j = 0; j < ok.size(); ++j)
                std::copy_n(pixels.data() + static_cast<int64_t>(ok[j]) * row, row, good.data() + static_cast<int64_t>(j) * row);
            tensor e = model.encode_image(good);
            for (size_t j = 0; j < ok.size(); ++j)
                std::copy_n(e.data() + static_cast<int64_t>(j) * d, d, out.embeddings.data() + static_cast<int64_t>(start + ok[j]) * d);
        }
        if (options.progress) options.progress(start + count, paths.size());
    }
    return out;
}

}  // namespace zeroclip
