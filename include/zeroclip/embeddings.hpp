//! Embeddings for users: images (pixels or files) and texts become L2-normalised rows on the
//! model's backend, the one convention every function here and the classifier share. Files stream:
//! embed_image_stream decodes the next batches on worker threads while the current one is
//! encoded, and hands each finished batch to a callback, so memory does not grow with the number
//! of files; embed_image_files collects the stream into one matrix.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
#include "models/clip.hpp"
#include "nn/similarity.hpp"

namespace zeroclip {

/// Image embeddings (N, D), L2-normalised, on the model's backend, of preprocessed pixels (N, 3, S, S).
template <class Backend>
typename Backend::tensor embed_images(const models::clip_model<Backend>& model, const tensor& pixels) {
    return nn::unit_rows(model.backend(), model.image_features(pixels));
}

/// Text embeddings (N, D), L2-normalised, on the model's backend, encoded `batch` texts at a time.
template <class Backend>
typename Backend::tensor embed_texts(const models::clip_model<Backend>& model, const std::vector<std::string>& texts,
                                     size_t batch = 256) {
    const Backend& be = model.backend();
    auto embed_chunk = [&](size_t start) {
        const auto end = texts.begin() + static_cast<long>(std::min(texts.size(), start + batch));
        return nn::unit_rows(be, model.text_features(model.tokenize({texts.begin() + static_cast<long>(start), end})));
    };
    if (texts.size() <= batch) return embed_chunk(0);
    tensor out({static_cast<int64_t>(texts.size()), model.config().embed_dim});
    for (size_t start = 0; start < texts.size(); start += batch) {
        const tensor e = be.download(embed_chunk(start));
        std::copy(e.begin(), e.end(), out.data() + static_cast<int64_t>(start) * out.dim(1));
    }
    return be.upload(out);
}

/// Options of embed_image_stream and embed_image_files.
struct file_batch_options {
    int batch = 16;        ///< images per encoder call
    int threads = 0;       ///< decoding threads; 0 = the machine's hardware threads (memory: see image.hpp)
    /// Called after each batch with (files done, files total; 0 when the paths come from a generator).
    std::function<void(size_t, size_t)> progress;
    decode_mode decode = decode_mode::exact;  ///< JPEG decoding: exact, or draft (DCT-scaled, faster)
    /// Called with (file index, decoded image) right after each file decodes, before
    /// preprocessing: a look at the full image without a second decode (e.g. for thumbnails).
    /// Runs on the decoding threads, concurrently for different files; if it throws, that file
    /// fails with its message.
    std::function<void(size_t, const decoded_image&)> on_decoded;
    int queue_depth = 2;  ///< decoded batches waiting for the encoder at most (memory: batch · 3·S·S floats each)
};

/// One finished batch of embed_image_stream: files [first, first + paths.size()) of the input.
template <class Backend>
struct image_batch {
    size_t first = 0;                     ///< index of the batch's first file in the input
    std::vector<std::string> paths;       ///< the batch's files, in input order
    /// (files that succeeded, D), L2-normalised, on the backend, in input order; empty() if none did
    typename Backend::tensor embeddings;
    std::vector<std::string> errors;      ///< per file: empty when it succeeded, else why it failed

    /// Positions (in `paths`) of the files that have a row in `embeddings`, in order.
    std::vector<size_t> succeeded() const {
        std::vector<size_t> ok;
        for (size_t i = 0; i < errors.size(); ++i)
            if (errors[i].empty()) ok.push_back(i);
        return ok;
    }
};

/// Gives the next path and returns true, or returns false at the end of the input.
using path_source = std::function<bool(std::string& path)>;

namespace detail {

/// A batch of files decoded and preprocessed, waiting for the encoder.
struct decoded_batch {
    size_t first = 0;
    std::vector<std::string> paths;
    tensor pixels;                    // (files that succeeded, 3, S, S)
    std::vector<std::string> errors;  // per file
};

/// Decodes `paths` with up to `threads` threads into one batch (failed files get no pixels).
inline decoded_batch decode_batch(size_t first, std::vector<std::string> paths, const preprocess_options& pre,
                                  unsigned threads, const file_batch_options& options) {
    const int64_t s = pre.size, row = 3 * s * s, count = static_cast<int64_t>(paths.size());
    tensor all({count, 3, s, s});
    std::vector<std::string> errors(paths.size());
    std::atomic<size_t> next{0};
    auto work = [&] {
        for (size_t i; (i = next++) < paths.size();) {
            try {
                std::function<void(const decoded_image&)> hook;
                if (options.on_decoded) hook = [&](const decoded_image& image) { options.on_decoded(first + i, image); };
                preprocess_file_into(paths[i], pre, all.data() + static_cast<int64_t>(i) * row, hook);
            } catch (const std::exception& e) {
                errors[i] = e.what();
            }
        }
    };
    std::vector<std::thread> pool;
    for (unsigned t = 1; t < std::min<unsigned>(threads, static_cast<unsigned>(paths.size())); ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
    const int64_t ok = std::count(errors.begin(), errors.end(), std::string());
    decoded_batch out{first, std::move(paths), ok == count ? std::move(all) : tensor({ok, 3, s, s}), std::move(errors)};
    if (ok != count && ok > 0) {
        int64_t j = 0;
        for (int64_t i = 0; i < count; ++i)
            if (out.errors[static_cast<size_t>(i)].empty())
                std::copy_n(all.data() + i * row, row, out.pixels.data() + j++ * row);
    }
    return out;
}

/// A bounded queue between the decoding thread and the encoder; closing it wakes both sides.
class batch_queue {
public:
    explicit batch_queue(size_t capacity) : capacity_(std::max<size_t>(1, capacity)) {}
    /// False when the queue was closed (the consumer stopped): the batch is dropped.
    bool push(decoded_batch b) {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] { return closed_ || items_.size() < capacity_; });
        if (closed_) return false;
        items_.push_back(std::move(b));
        changed_.notify_all();
        return true;
    }
    /// The next batch, or nothing once the producer finished and the queue is empty.
    std::optional<decoded_batch> pop() {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] { return closed_ || finished_ || !items_.empty(); });
        if (items_.empty()) return std::nullopt;
        decoded_batch b = std::move(items_.front());
        items_.pop_front();
        changed_.notify_all();
        return b;
    }
    void finish(std::exception_ptr error = nullptr) {
        const std::lock_guard<std::mutex> lock(mutex_);
        finished_ = true;
        error_ = error;
        changed_.notify_all();
    }
    void close() {
        const std::lock_guard<std::mutex> lock(mutex_);
        closed_ = true;
        changed_.notify_all();
    }
    std::exception_ptr error() const {
        const std::lock_guard<std::mutex> lock(mutex_);
        return error_;
    }

private:
    const size_t capacity_;
    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::deque<decoded_batch> items_;
    bool finished_ = false, closed_ = false;
    std::exception_ptr error_;
};

}  // namespace detail

/// Embeds image files batch by batch: `on_batch(const image_batch<Backend>&)` is called on the
/// calling thread for each batch, in input order, while the next batches decode (at most
/// options.queue_depth of them wait). A file that cannot be read or decoded does not stop the
/// others: its error is in the batch. If on_batch or next_path throws, the stream stops and the
/// exception reaches the caller. `total` (0 if unknown) is only passed on to options.progress.
template <class Backend, class OnBatch>
void embed_image_stream(const models::clip_model<Backend>& model, const path_source& next_path, OnBatch&& on_batch,
                        const file_batch_options& options = {}, size_t total = 0) {
    if (options.batch < 1) ZEROCLIP_THROW(errc::invalid_argument, "embed_image_files: batch must be >= 1");
    if (options.queue_depth < 1) ZEROCLIP_THROW(errc::invalid_argument, "embed_image_files: queue_depth must be >= 1");
    preprocess_options pre = model.preprocess_options();
    pre.decode = options.decode;
    const unsigned threads = options.threads > 0 ? static_cast<unsigned>(options.threads)
                                                 : std::max(1u, std::thread::hardware_concurrency());
    detail::batch_queue queue(static_cast<size_t>(options.queue_depth));
    std::thread producer([&] {
        try {
            size_t first = 0;
            for (bool more = true; more;) {
                std::vector<std::string> paths;
                std::string path;
                while (paths.size() < static_cast<size_t>(options.batch) && (more = next_path(path)))
                    paths.push_back(std::move(path));
                if (paths.empty()) break;
                const size_t count = paths.size();
                if (!queue.push(detail::decode_batch(first, std::move(paths), pre, threads, options))) return;
                first += count;
            }
            queue.finish();
        } catch (...) {
            queue.finish(std::current_exception());
        }
    });
    // The producer is joined on every way out, so no thread outlives the caller's references.
    struct joiner {
        detail::batch_queue& queue;
        std::thread& thread;
        ~joiner() {
            queue.close();
            thread.join();
        }
    } join_at_exit{queue, producer};
    size_t done = 0;
    while (std::optional<detail::decoded_batch> decoded = queue.pop()) {
        image_batch<Backend> batch{decoded->first, std::move(decoded->paths), {}, std::move(decoded->errors)};
        if (decoded->pixels.dim(0) > 0) batch.embeddings = embed_images(model, decoded->pixels);
        decoded->pixels = tensor();  // the pixels' memory back before the consumer runs
        done += batch.paths.size();
        on_batch(static_cast<const image_batch<Backend>&>(batch));
        if (options.progress) options.progress(done, total);
    }
    if (std::exception_ptr error = queue.error()) std::rethrow_exception(error);
}

/// embed_image_stream over a list of paths (progress then knows the total).
template <class Backend, class OnBatch>
void embed_image_stream(const models::clip_model<Backend>& model, const std::vector<std::string>& paths,
                        OnBatch&& on_batch, const file_batch_options& options = {}) {
    size_t next = 0;
    const path_source source = [&](std::string& path) {
        if (next == paths.size()) return false;
        path = paths[next++];
        return true;
    };
    embed_image_stream(model, source, std::forward<OnBatch>(on_batch), options, paths.size());
}

/// Embeddings of image files, one row per file; `errors[i]` is empty when file i succeeded,
/// otherwise its message (and row i is all zeros).
template <class Backend = cpu_backend>
struct file_embeddings {
    typename Backend::tensor embeddings;  ///< (files, D), L2-normalised, on the backend
    std::vector<std::string> errors;      ///< per file
};

/// Embeds every file (embed_image_stream, collected): one matrix for all of them.
template <class Backend>
file_embeddings<Backend> embed_image_files(const models::clip_model<Backend>& model,
                                           const std::vector<std::string>& paths, const file_batch_options& options = {}) {
    const Backend& be = model.backend();
    const int64_t d = model.config().embed_dim;
    tensor rows({static_cast<int64_t>(paths.size()), d});
    std::vector<std::string> errors(paths.size());
    embed_image_stream(model, paths, [&](const image_batch<Backend>& batch) {
        const std::vector<size_t> ok = batch.succeeded();
        const tensor e = ok.empty() ? tensor() : be.download(batch.embeddings);
        for (size_t j = 0; j < ok.size(); ++j)
            std::copy_n(e.data() + static_cast<int64_t>(j) * d, d, rows.data() + static_cast<int64_t>(batch.first + ok[j]) * d);
        for (size_t i = 0; i < batch.errors.size(); ++i) errors[batch.first + i] = batch.errors[i];
    }, options);
    return {be.upload(rows), std::move(errors)};
}

}  // namespace zeroclip
