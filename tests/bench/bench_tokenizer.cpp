// Tokenizer benchmark: the ImageNet zero-shot prompt set (80 templates x 1000 class names = 80,000
// texts) tokenized on one core, median of repeated runs, with a fresh tokenizer per run (cold word
// cache, what a one-shot classifier sees) and a reused one (warm cache); also the load time.
//
//   g++ -O2 -std=c++17 -Iinclude tests/bench/bench_tokenizer.cpp -lz -o bench_tokenizer
//   ./bench_tokenizer [BPE.gz] [imagenet.json] [runs]
// Without ZEROCLIP_SOURCE_DIR / ZEROCLIP_FIXTURES_DIR (CMake defines them), the defaults assume the
// repository root as working directory and shared/ beside the checkout.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <zeroclip/tokenizer.hpp>

#ifndef ZEROCLIP_FIXTURES_DIR
#define ZEROCLIP_FIXTURES_DIR "../shared/fixtures"
#endif
#ifndef ZEROCLIP_SOURCE_DIR
#define ZEROCLIP_SOURCE_DIR "."
#endif

namespace {

// Wall-clock and process CPU time of one step; CPU time is the steadier figure on a shared machine.
struct stopwatch {
    std::chrono::steady_clock::time_point wall = std::chrono::steady_clock::now();
    std::clock_t cpu = std::clock();
    void lap(std::vector<double>& walls, std::vector<double>& cpus) {
        const auto now = std::chrono::steady_clock::now();
        const std::clock_t c = std::clock();
        walls.push_back(std::chrono::duration<double>(now - wall).count());
        cpus.push_back(static_cast<double>(c - cpu) / CLOCKS_PER_SEC);
        wall = now;
        cpu = c;
    }
};

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    const std::string bpe = argc > 1 ? argv[1] : ZEROCLIP_SOURCE_DIR "/data/bpe_simple_vocab_16e6.txt.gz";
    const std::string prompts = argc > 2 ? argv[2] : ZEROCLIP_FIXTURES_DIR "/prompts/imagenet.json";
    const int runs = argc > 3 ? std::max(1, std::atoi(argv[3])) : 7;
    try {
        const auto j = nlohmann::json::parse(zeroclip::read_file(prompts));
        std::vector<std::string> texts;
        for (const auto& cls : j.at("classes")) {
            for (const auto& tmpl : j.at("templates")) {
                std::string t = tmpl.get<std::string>();
                const std::string name = cls.get<std::string>();
                for (std::size_t p; (p = t.find("{}")) != std::string::npos;) t.replace(p, 2, name);
                texts.push_back(std::move(t));
            }
        }

        std::vector<double> load, cold, warm, load_cpu, cold_cpu, warm_cpu;
        std::int64_t checksum = 0;
        for (int r = 0; r < runs; ++r) {
            stopwatch sw;
            const auto tok = zeroclip::tokenizer::from_openai_bpe(bpe);
            sw.lap(load, load_cpu);
            const auto m = tok.tokenize(texts);
            sw.lap(cold, cold_cpu);
            const auto m2 = tok.tokenize(texts);
            sw.lap(warm, warm_cpu);
            checksum = 0;
            for (int64_t i = 0; i < m.numel(); ++i) checksum += m[i] * (i % 7 + 1);
            if (!std::equal(m.begin(), m.end(), m2.begin())) {
                std::fprintf(stderr, "cold and warm results differ\n");
                return 1;
            }
        }
        std::printf("medians over %d runs, wall (cpu) ms\n", runs);
        std::printf("load %s: %.1f (%.1f)\n", bpe.c_str(), median(load) * 1e3, median(load_cpu) * 1e3);
        std::printf("tokenize %zu ImageNet prompts x 77, cold cache: %.1f (%.1f) = %.2f us/text\n", texts.size(),
                    median(cold) * 1e3, median(cold_cpu) * 1e3, median(cold) * 1e6 / static_cast<double>(texts.size()));
        std::printf("tokenize %zu ImageNet prompts x 77, warm cache: %.1f (%.1f)\n", texts.size(), median(warm) * 1e3,
                    median(warm_cpu) * 1e3);
        std::printf("checksum %lld\n", static_cast<long long>(checksum));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_tokenizer: %s\n", e.what());
        return 1;
    }
    return 0;
}
