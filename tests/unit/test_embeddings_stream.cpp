// The embedding flow: embed_image_stream hands finished batches in input order with the same
// rows as encoding the whole folder at once (load_image_batch + encode_image, normalised
// independently here in double), failed files reported in place, and it stops cleanly.
#include <zeroclip/zeroclip.hpp>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <stdexcept>

#include "../test_util.hpp"

using namespace zeroclip;
using test_util::fixtures;

namespace {

std::vector<std::string> fixture_images() {
    auto names = load_npz(fixtures() + "/images/pixel_values_64.npz").at("names").to_strings();
    for (auto& n : names) n = fixtures() + "/images/" + n;
    return names;
}

/// Row r of x divided by its L2 norm computed in double: an independent normalisation.
std::vector<double> unit_row(const tensor& x, int64_t r) {
    const int64_t d = x.dim(1);
    double norm = 0;
    for (int64_t k = 0; k < d; ++k) norm += double(x[r * d + k]) * x[r * d + k];
    std::vector<double> out(static_cast<size_t>(d));
    for (int64_t k = 0; k < d; ++k) out[static_cast<size_t>(k)] = x[r * d + k] / std::sqrt(norm);
    return out;
}

double max_row_diff(const tensor& got, int64_t got_row, const std::vector<double>& want) {
    double worst = 0;
    for (size_t k = 0; k < want.size(); ++k)
        worst = std::max(worst, std::abs(got[got_row * static_cast<int64_t>(want.size()) + static_cast<int64_t>(k)] - want[k]));
    return worst;
}

}  // namespace

TEST_CASE("embed_image_stream: batches in input order, rows equal to one whole-folder encode") {
    model m = load_model(fixtures() + "/models/tiny-vit/hf");
    const std::string dir = test_util::temp_dir("stream");
    std::ofstream(dir + "/broken.png") << "not a png";
    std::vector<std::string> files = fixture_images();
    const std::vector<std::string> good = files;
    files.insert(files.begin() + 2, dir + "/broken.png");
    files.push_back(dir + "/missing.png");
    const tensor whole = m.encode_image(load_image_batch(good, m.preprocess_options()));

    for (int batch : {1, 2, 3, 16})
        for (int depth : {1, 3}) {
            file_batch_options options;
            options.batch = batch;
            options.threads = 2;
            options.queue_depth = depth;
            size_t expected_first = 0, good_row = 0, calls = 0;
            embed_image_stream(m, files, [&](const image_batch<cpu_backend>& b) {
                ++calls;
                CHECK(b.first == expected_first);
                CHECK(b.paths.size() == b.errors.size());
                CHECK(b.paths.size() <= static_cast<size_t>(batch));
                const std::vector<size_t> ok = b.succeeded();
                if (ok.empty()) CHECK(b.embeddings.empty());
                else CHECK(b.embeddings.dim(0) == static_cast<int64_t>(ok.size()));
                for (size_t i = 0; i < b.paths.size(); ++i) {
                    CHECK(b.paths[i] == files[b.first + i]);
                    const bool should_fail = b.paths[i].find(dir) == 0;
                    CHECK(b.errors[i].empty() == !should_fail);
                }
                for (size_t j = 0; j < ok.size(); ++j, ++good_row)
                    CHECK(max_row_diff(b.embeddings, static_cast<int64_t>(j), unit_row(whole, static_cast<int64_t>(good_row))) < 1e-6);
                expected_first += b.paths.size();
            }, options);
            CHECK(expected_first == files.size());
            CHECK(good_row == good.size());
            CHECK(calls == (files.size() + static_cast<size_t>(batch) - 1) / static_cast<size_t>(batch));
        }

    // The collector: one row per file, normalised, zeros for the failed ones.
    file_batch_options three;
    three.batch = 3;
    three.threads = 2;
    const file_embeddings collected = embed_image_files(m, files, three);
    size_t good_row = 0;
    for (size_t i = 0; i < files.size(); ++i) {
        if (!collected.errors[i].empty()) {
            CHECK(test_util::max_abs(collected.embeddings.row(static_cast<int64_t>(i))) == 0);
            continue;
        }
        CHECK(max_row_diff(collected.embeddings, static_cast<int64_t>(i), unit_row(whole, static_cast<int64_t>(good_row++))) < 1e-6);
    }
}

TEST_CASE("embed_image_stream: paths from a generator, and a consumer that throws stops the stream") {
    model m = load_model(fixtures() + "/models/tiny-vit/hf");
    const std::vector<std::string> files = fixture_images();
    size_t next = 0, requested = 0;
    const path_source source = [&](std::string& path) {
        ++requested;
        if (next == files.size()) return false;
        path = files[next++];
        return true;
    };
    size_t seen = 0;
    file_batch_options options;
    options.batch = 1;
    options.queue_depth = 1;
    CHECK_THROWS_WITH_AS(embed_image_stream(m, source, [&](const image_batch<cpu_backend>& b) {
        seen += b.paths.size();
        if (seen == 1) throw std::runtime_error("consumer gave up");
    }, options), "consumer gave up", std::runtime_error);
    CHECK(seen == 1);
    // Bounded read-ahead: the first batch, at most queue_depth waiting, one being decoded.
    CHECK(requested <= 3);

    // A generator that fails is reported after the batches before it.
    size_t given = 0;
    const path_source failing = [&](std::string& path) {
        if (given == 2) throw zeroclip::error(errc::io, "list.txt: read error");
        path = files[given++];
        return true;
    };
    seen = 0;
    CHECK_THROWS_WITH_AS(embed_image_stream(m, failing, [&](const image_batch<cpu_backend>& b) { seen += b.paths.size(); }, options),
                         doctest::Contains("list.txt"), zeroclip::error);
    CHECK(seen == 2);
    options.queue_depth = 0;
    CHECK_THROWS_AS(embed_image_stream(m, files, [](const image_batch<cpu_backend>&) {}, options), zeroclip::error);
}

TEST_CASE("embed_image_stream: a batch's slow last file does not hold back the next batch's decoding") {
    model m = load_model(fixtures() + "/models/tiny-vit/hf");
    const std::vector<std::string> files = fixture_images();
    REQUIRE(files.size() >= 2);
    // Batches of one file, two decoding threads: file 0 (batch 0) waits in its decode until file
    // 1 (batch 1) has decoded. Decoding batch by batch, file 1 would wait for file 0: the wait
    // times out and the case fails.
    std::mutex mutex;
    std::condition_variable changed;
    bool second_decoded = false, first_saw_second = false;
    file_batch_options options;
    options.batch = 1;
    options.threads = 2;
    options.queue_depth = 2;
    options.on_decoded = [&](size_t index, const decoded_image&) {
        std::unique_lock<std::mutex> lock(mutex);
        if (index == 0) {
            first_saw_second = changed.wait_for(lock, std::chrono::seconds(20), [&] { return second_decoded; });
        } else if (index == 1) {
            second_decoded = true;
            changed.notify_all();
        }
    };
    std::vector<size_t> firsts;
    embed_image_stream(m, files, [&](const image_batch<cpu_backend>& b) {
        CHECK(b.errors.at(0).empty());
        firsts.push_back(b.first);
    }, options);
    CHECK(first_saw_second);
    REQUIRE(firsts.size() == files.size());
    for (size_t i = 0; i < firsts.size(); ++i) CHECK(firsts[i] == i);  // still handed over in input order
}
