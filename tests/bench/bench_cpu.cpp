// zeroclip's side of the CPU benchmark against ONNX Runtime and PyTorch (scripts/bench_cpu.sh runs
// all three, interleaved, and prints the table; tests/bench/run_bench.py is the driver).
//
// One process = one model: it times the load of the .safetensors file, then image encodes at the
// given batch sizes and, for a model with the text prompts asked for, text encodes of short
// ("A photo of a {}.") and full 77-token prompts. It prints one JSON object: every measured call
// in milliseconds, and the process's peak RSS (getrusage) at the end.
//
//   bench_cpu --model vit-b32-f16.safetensors [--batches 1,16] [--reps 5] [--text] [--warmup 1]
//             [--precision fp32|bf16|int8]   (the kernels' path: ZEROCLIP_CPU_PATH=avx2 forces AVX2)
//   bench_cpu --dump-tokens DIR     # the prompt token ids the peers use (DIR/short.i32, long.i32)
//   --check OUT.f32: also write the embeddings of the cross-check input (the peers write theirs).
//
// Threads: OMP_NUM_THREADS (the script sets 2).
#include <sys/resource.h>
#include <unistd.h>

#include <zeroclip/zeroclip.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#ifndef ZEROCLIP_SOURCE_DIR
#define ZEROCLIP_SOURCE_DIR "."
#endif
#ifndef ZEROCLIP_FIXTURES_DIR
#define ZEROCLIP_FIXTURES_DIR "../shared/fixtures"
#endif

namespace {

double now_ms() {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::vector<double> time_calls(int warmup, int reps, const std::function<void()>& f) {
    for (int i = 0; i < warmup; ++i) f();
    std::vector<double> ms;
    for (int i = 0; i < reps; ++i) {
        const double t0 = now_ms();
        f();
        ms.push_back(now_ms() - t0);
    }
    return ms;
}

/// The resident set now (/proc/self/statm), to tell a load's peak from what stays.
double rss_now_mib() {
    long pages = 0, resident = 0;
    if (FILE* f = std::fopen("/proc/self/statm", "r")) {
        if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        std::fclose(f);
    }
    return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}

double peak_rss_mib() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_maxrss) / 1024.0;  // ru_maxrss is KiB on Linux
}

/// The benchmark's prompts: `count` short ones, "A photo of a {}." over ImageNet class names
/// spread evenly over the 1000 classes, and `count_long` that the tokenizer truncates to 77 ids.
struct prompt_sets {
    std::vector<std::string> short_texts, long_texts;
};

prompt_sets make_prompts(const std::string& imagenet_json, int count, int count_long) {
    std::ifstream in(imagenet_json);
    if (!in) throw std::runtime_error(imagenet_json + ": cannot open");
    const nlohmann::json j = nlohmann::json::parse(in);
    const auto& classes = j.at("classes");
    const auto& templates = j.at("templates");
    prompt_sets p;
    const size_t n = classes.size();
    for (int i = 0; i < count; ++i)
        p.short_texts.push_back("A photo of a " + classes[static_cast<size_t>(i) * n / static_cast<size_t>(count)].get<std::string>() + ".");
    for (int i = 0; i < count_long; ++i) {
        const std::string c = classes[(static_cast<size_t>(i) * 97 + 13) % n].get<std::string>();
        std::string text;
        for (size_t t = 0; t < templates.size() && t < 16; ++t) {
            std::string s = templates[(t + static_cast<size_t>(i)) % templates.size()].get<std::string>();
            s.replace(s.find("{}"), 2, c);
            text += (t ? " " : "") + s;
        }
        p.long_texts.push_back(text);
    }
    return p;
}

zeroclip::token_tensor tokenize(const zeroclip::tokenizer& tok, const std::vector<std::string>& texts) {
    zeroclip::tokenize_options o;
    o.truncate = true;
    return tok.tokenize(texts, o);
}

void write_i32(const std::string& path, const zeroclip::token_tensor& t) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(t.data()), static_cast<std::streamsize>(4 * t.numel()));
    if (!out) throw std::runtime_error(path + ": write failed");
}

std::vector<int> parse_list(const std::string& s) {
    std::vector<int> v;
    std::stringstream ss(s);
    for (std::string item; std::getline(ss, item, ',');)
        if (!item.empty()) v.push_back(std::atoi(item.c_str()));
    return v;
}

int eot_length(const zeroclip::token_tensor& t, int64_t row) {
    const int32_t* r = t.data() + row * t.dim(1);
    return static_cast<int>(std::max_element(r, r + t.dim(1)) - r) + 1;
}

}  // namespace

int main(int argc, char** argv) try {
    std::string model_path, dump_dir, check;
    std::string bpe = std::string(ZEROCLIP_SOURCE_DIR) + "/data/bpe_simple_vocab_16e6.txt.gz";
    std::string imagenet = std::string(ZEROCLIP_FIXTURES_DIR) + "/prompts/imagenet.json";
    std::vector<int> batches = {1, 16};
    int reps = 5, warmup = 1, n_short = 32, n_long = 8;
    bool text = false;
    zeroclip::precision precision = zeroclip::precision::fp32;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
            return argv[++i];
        };
        if (a == "--model") model_path = next();
        else if (a == "--batches") batches = parse_list(next());
        else if (a == "--reps") reps = std::max(1, std::atoi(next().c_str()));
        else if (a == "--warmup") warmup = std::max(0, std::atoi(next().c_str()));
        else if (a == "--text") text = true;
        else if (a == "--short") n_short = std::atoi(next().c_str());
        else if (a == "--long") n_long = std::atoi(next().c_str());
        else if (a == "--bpe") bpe = next();
        else if (a == "--imagenet") imagenet = next();
        else if (a == "--dump-tokens") dump_dir = next();
        else if (a == "--check") check = next();
        else if (a == "--precision") precision = zeroclip::parse_precision(next());
        else {
            std::fprintf(stderr, "usage: bench_cpu --model FILE [--batches 1,16] [--reps N] [--warmup N] [--text]\n"
                                 "                 [--short N] [--long N] [--precision fp32|bf16|int8]  |  bench_cpu --dump-tokens DIR\n");
            return 2;
        }
    }
    const zeroclip::tokenizer tok = zeroclip::tokenizer::from_openai_bpe(bpe);
    const prompt_sets prompts = make_prompts(imagenet, n_short, n_long);
    const zeroclip::token_tensor short_ids = tokenize(tok, prompts.short_texts);
    const zeroclip::token_tensor long_ids = tokenize(tok, prompts.long_texts);
    if (!dump_dir.empty()) {
        write_i32(dump_dir + "/short.i32", short_ids);
        write_i32(dump_dir + "/long.i32", long_ids);
        std::vector<int> lengths;
        for (int64_t r = 0; r < short_ids.dim(0); ++r) lengths.push_back(eot_length(short_ids, r));
        nlohmann::json meta = {{"short", {short_ids.dim(0), short_ids.dim(1)}},
                               {"long", {long_ids.dim(0), long_ids.dim(1)}},
                               {"short_lengths", lengths},
                               {"short_texts", prompts.short_texts}};
        std::ofstream(dump_dir + "/tokens.json") << meta.dump(1) << "\n";
        return 0;
    }
    if (model_path.empty()) throw std::runtime_error("--model is required");

    nlohmann::json out;
    out["peer"] = "zeroclip";
    const char* threads = std::getenv("OMP_NUM_THREADS");
    out["threads"] = threads ? threads : "default";
    out["rss_before_load_mib"] = rss_now_mib();  // the process, tokenizer and prompts: not the model's
    const double t0 = now_ms();
    const zeroclip::model model = zeroclip::load_model(model_path, zeroclip::cpu_backend(zeroclip::cpu_options{precision}));
    out["load_ms"] = now_ms() - t0;
    out["rss_after_load_mib"] = peak_rss_mib();
    out["rss_held_after_load_mib"] = rss_now_mib();
    out["dtype"] = model.weight_dtype();
    out["precision"] = zeroclip::precision_name(precision);
    {  // the kernels this run uses (cpu_features.hpp; ZEROCLIP_CPU_PATH caps them)
        namespace cpu = zeroclip::detail::cpu;
        const cpu::isa best = precision == zeroclip::precision::int8   ? cpu::isa::avx512_vnni
                              : precision == zeroclip::precision::bf16 ? cpu::isa::avx512_bf16
                                                                       : cpu::isa::avx512;
        cpu::isa path = cpu::use_isa(best) ? best : cpu::use_isa(cpu::isa::avx2) ? cpu::isa::avx2 : cpu::isa::scalar;
        if (precision == zeroclip::precision::int8) path = cpu::int8_kernel_for(path);  // AVX-VNNI under avx2
        out["cpu_path"] = cpu::isa_name(path);
    }

    const int64_t size = model.config().vision.image_size;
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> uni(-2.0f, 2.0f);
    for (int b : batches) {
        zeroclip::tensor pixels({b, 3, size, size});
        for (auto& v : pixels) v = uni(rng);
        out["image_b" + std::to_string(b) + "_ms"] =
            time_calls(warmup, reps, [&] { (void)model.encode_image(pixels); });
    }
    if (text) {
        out["text_short_n"] = short_ids.dim(0);
        out["text_short_ms"] = time_calls(warmup, reps, [&] { (void)model.encode_text(short_ids); });
        out["text_long_n"] = long_ids.dim(0);
        out["text_long_ms"] = time_calls(warmup, reps, [&] { (void)model.encode_text(long_ids); });
    }
    if (!check.empty()) {
        // The cross-check input: pixels[i] = 2·sin(0.001·i) over a batch of 2, and the short prompts.
        zeroclip::tensor pixels({2, 3, size, size});
        for (int64_t i = 0; i < pixels.numel(); ++i) pixels[i] = static_cast<float>(2 * std::sin(0.001 * static_cast<double>(i)));
        std::vector<float> all;
        const zeroclip::tensor img = model.encode_image(pixels);
        all.insert(all.end(), img.begin(), img.end());
        if (text) {
            const zeroclip::tensor txt = model.encode_text(short_ids);
            all.insert(all.end(), txt.begin(), txt.end());
        }
        std::ofstream f(check, std::ios::binary);
        f.write(reinterpret_cast<const char*>(all.data()), static_cast<std::streamsize>(4 * all.size()));
    }
    out["peak_rss_mib"] = peak_rss_mib();
    std::printf("%s\n", out.dump().c_str());
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cpu: %s\n", e.what());
    return 1;
}
