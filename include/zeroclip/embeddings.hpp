//! Embeddings for users: images (pixels or files) and texts become L2-normalised rows on the
//! model's backend, the one convention every function here and the classifier share. Files stream:
//! embed_image_stream decodes the next batches on worker threads while the current one is
//! encoded, and hands each finished batch to a callback, so memory does not grow with the number
//! of files; embed_image_files collects the stream into one matrix.
#pragma once

#include <sys/mman.h>

#include <algorithm>
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

/// A bounded queue between the decoding threads and the encoder; closing it wakes both sides.
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

/// Storage for a batch's pixels (count, 3, size, size), mapped for it and unmapped when the
/// batch is done: from malloc, the decoding threads' arenas kept up to several MiB of freed
/// batches resident, more or less from run to run.
inline tensor batch_pixels(int64_t count, int64_t size) {
    shape_t shape{count, 3, size, size};
    const size_t bytes = std::max<size_t>(1, static_cast<size_t>(shape_numel(shape)) * sizeof(float));
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        ZEROCLIP_THROW(errc::shape, "a batch of " + std::to_string(count) + " images of " + std::to_string(size) +
                                        " px (" + std::to_string(bytes) + " bytes) cannot be allocated: out of memory");
    std::shared_ptr<const void> owner(p, [bytes](const void* q) { ::munmap(const_cast<void*>(q), bytes); });
    return tensor::view(std::move(shape), std::move(owner), static_cast<const float*>(p));
}

/// Decodes the files of `next_path` in batches of `batch` on `threads` workers into `queue`, in
/// input order. A worker that finds no file left in the newest batch starts the next one, so a
/// batch's last (maybe largest) photo does not leave the other workers idle. Batches started and
/// not yet taken by the consumer (taken()) stay at most `in_flight`: memory is bounded.
class batch_decoder {
public:
    batch_decoder(const path_source& next_path, size_t batch, size_t in_flight, const preprocess_options& pre,
                  const file_batch_options& options, batch_queue& queue)
        : next_path_(next_path), batch_(batch), in_flight_(in_flight), pre_(pre), options_(options), queue_(queue) {}

    /// The work of one decoding thread; returns when no work is left or stop() was called.
    void work() {
        try {
            decode_files();
        } catch (...) {  // not a file's failure (those are its error): the stream ends with it
            const std::lock_guard<std::mutex> lock(mutex_);
            stopped_ = true;
            if (!finished_) finished_ = true, queue_.finish(std::current_exception());
            changed_.notify_all();
        }
    }

    /// The consumer took a batch: one more may start.
    void taken() {
        const std::lock_guard<std::mutex> lock(mutex_);
        --outstanding_;
        changed_.notify_all();
    }

    /// The consumer is done with a batch's pixels: a later full batch decodes into them.
    void recycle(tensor pixels) {
        if (pixels.empty() || pixels.numel() != static_cast<int64_t>(batch_) * row()) return;
        if (pixels.owner().use_count() != 2) return;  // 2: the copy owner() made, and this one
        const std::lock_guard<std::mutex> lock(mutex_);
        if (spare_.size() < in_flight_) spare_.push_back(std::move(pixels));
    }

    void stop() {
        const std::lock_guard<std::mutex> lock(mutex_);
        stopped_ = true;
        changed_.notify_all();
    }

private:
    struct slot {
        size_t first = 0;
        std::vector<std::string> paths;
        tensor pixels;  // (files, 3, S, S)
        std::vector<std::string> errors;
        size_t claimed = 0, remaining = 0;
    };

    // Decodes files until none is left or stop() was called.
    void decode_files() {
        for (;;) {
            std::shared_ptr<slot> s;
            size_t i = 0;
            {
                std::unique_lock<std::mutex> lock(mutex_);
                changed_.wait(lock, [&] { return stopped_ || claimable() || source_done_ || outstanding_ < in_flight_; });
                if (stopped_ || !claim(s, i)) return;
            }
            try {
                std::function<void(const decoded_image&)> hook;
                if (options_.on_decoded) hook = [&](const decoded_image& image) { options_.on_decoded(s->first + i, image); };
                preprocess_file_into(s->paths[i], pre_, s->pixels.data() + static_cast<int64_t>(i) * row(), hook);
            } catch (const std::exception& e) {
                s->errors[i] = e.what();
            }
            const std::lock_guard<std::mutex> lock(mutex_);
            --s->remaining;
            deliver();
        }
    }

    int64_t row() const { return 3 * pre_.size * pre_.size; }
    bool claimable() const { return !slots_.empty() && slots_.back()->claimed < slots_.back()->paths.size(); }

    // Under the lock: the next file to decode, starting a batch when the newest is all claimed.
    bool claim(std::shared_ptr<slot>& s, size_t& i) {
        if (!claimable()) {
            if (source_done_ || outstanding_ >= in_flight_) return false;
            auto fresh = std::make_shared<slot>();
            try {
                std::string path;
                while (fresh->paths.size() < batch_ && next_path_(path)) fresh->paths.push_back(std::move(path));
                if (!fresh->paths.empty()) {
                    const auto count = static_cast<int64_t>(fresh->paths.size());
                    if (!spare_.empty() && static_cast<size_t>(count) == batch_) {
                        fresh->pixels = std::move(spare_.back());
                        spare_.pop_back();
                    } else {
                        fresh->pixels = batch_pixels(count, pre_.size);
                    }
                }
            } catch (...) {
                error_ = std::current_exception();
                fresh->paths.clear();
            }
            if (fresh->paths.size() < batch_) source_done_ = true;  // the source ended (or failed)
            if (fresh->paths.empty()) {
                deliver();
                return false;
            }
            fresh->first = next_first_;
            next_first_ += fresh->paths.size();
            fresh->errors.resize(fresh->paths.size());
            fresh->remaining = fresh->paths.size();
            slots_.push_back(std::move(fresh));
            ++outstanding_;
        }
        s = slots_.back();
        i = s->claimed++;
        return true;
    }

    // Under the lock: finished batches at the front go to the queue, in order; after the last
    // one, the queue is told the input ended (with the source's error, if any).
    void deliver() {
        while (!slots_.empty() && slots_.front()->remaining == 0 && slots_.front()->claimed == slots_.front()->paths.size()) {
            slot& s = *slots_.front();
            const auto count = static_cast<int64_t>(s.paths.size());
            const int64_t ok = std::count(s.errors.begin(), s.errors.end(), std::string());
            decoded_batch out{s.first, std::move(s.paths), ok == count ? std::move(s.pixels) : batch_pixels(ok, pre_.size),
                              std::move(s.errors)};
            if (ok != count && ok > 0)
                for (int64_t i = 0, j = 0; i < count; ++i)
                    if (out.errors[static_cast<size_t>(i)].empty())
                        std::copy_n(s.pixels.data() + i * row(), row(), out.pixels.data() + j++ * row());
            slots_.pop_front();
            queue_.push(std::move(out));  // never waits: it holds at most in_flight batches, its capacity
        }
        if (source_done_ && slots_.empty() && !finished_) {
            finished_ = true;
            queue_.finish(error_);
        }
        changed_.notify_all();
    }

    const path_source& next_path_;
    const size_t batch_, in_flight_;
    const preprocess_options& pre_;
    const file_batch_options& options_;
    batch_queue& queue_;
    std::mutex mutex_;
    std::condition_variable changed_;
    std::deque<std::shared_ptr<slot>> slots_;
    std::vector<tensor> spare_;  // pixels of batches the consumer is done with
    size_t next_first_ = 0, outstanding_ = 0;
    bool source_done_ = false, stopped_ = false, finished_ = false;
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
    // Batches started and not yet taken by this thread: queue_depth decoded and waiting, and one
    // being decoded (or the tail of one and the start of the next).
    const size_t in_flight = static_cast<size_t>(options.queue_depth) + 1;
    detail::batch_queue queue(in_flight);
    detail::batch_decoder decoder(next_path, static_cast<size_t>(options.batch), in_flight, pre, options, queue);
    std::vector<std::thread> workers;
    // The workers are joined on every way out, so no thread outlives the caller's references.
    struct joiner {
        detail::batch_queue& queue;
        detail::batch_decoder& decoder;
        std::vector<std::thread>& workers;
        ~joiner() {
            queue.close();
            decoder.stop();
            for (auto& t : workers) t.join();
        }
    } join_at_exit{queue, decoder, workers};
    for (unsigned t = 0; t < threads; ++t) workers.emplace_back([&decoder] { decoder.work(); });
    size_t done = 0;
    while (std::optional<detail::decoded_batch> decoded = queue.pop()) {
        decoder.taken();
        image_batch<Backend> batch{decoded->first, std::move(decoded->paths), {}, std::move(decoded->errors)};
        if (decoded->pixels.dim(0) > 0) batch.embeddings = embed_images(model, decoded->pixels);
        decoder.recycle(std::move(decoded->pixels));  // the pixels' memory back before the consumer runs
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
