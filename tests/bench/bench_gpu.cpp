// GPU throughput of zeroclip's cuda_cublas backend on the real ViT-B/32 and RN50 shapes (random
// weights built in memory, no files): images per second at batch 1, 32 and 256 and prompts per
// second, for FP32 GEMMs and the reduced-precision modes (TF32, FP16, BF16), with each mode's
// zero-shot top-1 agreement with FP32 (64 images × 100 random prompts); the fastest mode whose
// top-1 equals FP32's is named.
// Times are end to end as a user sees them: host pixels in, host embeddings out (the upload and
// download included). Usage:
//   bench_gpu [--seconds S] [--models vit-b32,rn50] [--batches 1,32,256] [--modes fp32,tf32,fp16,bf16]
//             [--text-batch N] [--agreement N] [--classes N] [--device D]
// Exit status: 0 measured, 2 no CUDA device (or a build without CUDA), 1 error.
#include <zeroclip/zeroclip.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "../random_model.hpp"

using namespace zeroclip;
using clock_type = std::chrono::steady_clock;

namespace {

struct options {
    double seconds = 0.5;
    std::vector<std::string> models = {"vit-b32", "rn50"};
    std::vector<int64_t> batches = {1, 32, 256};
    std::vector<cuda_math> modes = {cuda_math::fp32, cuda_math::tf32, cuda_math::fp16, cuda_math::bf16};
    int64_t text_batch = 256;
    int64_t agreement = 64;  // images of the top-1 comparison
    int64_t classes = 100;   // prompts of the top-1 comparison
    int device = 0;
};

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream in(s);
    for (std::string item; std::getline(in, item, ',');)
        if (!item.empty()) out.push_back(item);
    return out;
}

options parse(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) ZEROCLIP_THROW(errc::invalid_argument, a + " needs a value");
            return argv[++i];
        };
        if (a == "--seconds") o.seconds = std::stod(value());
        else if (a == "--models") o.models = split(value());
        else if (a == "--batches") {
            o.batches.clear();
            for (const auto& b : split(value())) o.batches.push_back(std::stoll(b));
        } else if (a == "--modes") {
            o.modes.clear();
            for (const auto& m : split(value())) o.modes.push_back(parse_cuda_math(m));
        } else if (a == "--text-batch") o.text_batch = std::stoll(value());
        else if (a == "--agreement") o.agreement = std::stoll(value());
        else if (a == "--classes") o.classes = std::stoll(value());
        else if (a == "--device") o.device = std::stoi(value());
        else if (a == "--help" || a == "-h") {
            std::printf("bench_gpu [--seconds S] [--models vit-b32,rn50] [--batches 1,32,256] "
                        "[--modes fp32,tf32,fp16,bf16] [--text-batch N] [--agreement N] [--classes N] [--device D]\n");
            std::exit(0);
        } else
            ZEROCLIP_THROW(errc::invalid_argument, "unknown argument " + a);
    }
    if (std::find(o.modes.begin(), o.modes.end(), cuda_math::fp32) == o.modes.end())
        o.modes.insert(o.modes.begin(), cuda_math::fp32);  // the top-1 reference
    return o;
}

double seconds_since(clock_type::time_point t0) {
    return std::chrono::duration<double>(clock_type::now() - t0).count();
}

/// Calls per second of f: two warm-up calls, then repeats for at least `budget` seconds (≥ 3 calls).
template <class F>
double rate(F&& f, double budget) {
    f(), f();
    int calls = 0;
    const auto t0 = clock_type::now();
    do {
        f();
        ++calls;
    } while (calls < 3 || seconds_since(t0) < budget);
    return calls / seconds_since(t0);
}

std::vector<int64_t> top1(const tensor& logits) {
    const int64_t m = logits.dim(1);
    std::vector<int64_t> best;
    for (int64_t r = 0; r < logits.dim(0); ++r)
        best.push_back(std::max_element(logits.data() + r * m, logits.data() + (r + 1) * m) - (logits.data() + r * m));
    return best;
}

struct row {
    std::string model, mode;
    std::vector<double> images_per_s;
    double prompts_per_s = 0;
    int agree = 0, total = 0;
    bool fp32 = false;
};

}  // namespace

int main(int argc, char** argv) {
    try {
        const options opt = parse(argc, argv);
        if (cuda_cublas::device_count() == 0) {
            std::printf("bench_gpu: no CUDA device (%s); nothing to measure\n", cuda_cublas::unavailable_reason().c_str());
            return 2;
        }
        const int64_t max_batch =
            std::max(opt.agreement, *std::max_element(opt.batches.begin(), opt.batches.end()));
        const tensor pixels = test_util::random_pixels(max_batch, 224, 1);
        const token_tensor prompts = test_util::random_tokens(opt.text_batch, 77, 6, 20, 2);  // "a photo of a {}."
        const token_tensor classes = test_util::random_tokens(opt.classes, 77, 6, 12, 3);
        const tensor agreement_pixels = pixels.slice_rows(0, opt.agreement);

        std::vector<row> rows;
        bool printed_device = false;
        for (const std::string& name : opt.models) {
            clip_config cfg;
            std::string label;
            if (name == "vit-b32") cfg = test_util::vit_b32(), label = "ViT-B/32";
            else if (name == "rn50") cfg = test_util::rn50(), label = "RN50";
            else ZEROCLIP_THROW(errc::invalid_argument, "unknown model " + name + " (vit-b32 or rn50)");
            auto t0 = clock_type::now();
            const checkpoint ck = test_util::random_checkpoint(cfg, 42);
            std::printf("%s: random weights built in %.1f s\n", label.c_str(), seconds_since(t0));
            std::vector<int64_t> reference_top1;
            for (cuda_math mode : opt.modes) {
                cuda_options o;
                o.device = opt.device;
                o.math = mode;
                t0 = clock_type::now();
                cuda_cublas be(o);
                const double start_s = seconds_since(t0);
                if (!printed_device) {
                    std::printf("device: %s, kernels %s; first backend (CUDA context + NVRTC compile) %.2f s\n",
                                be.device_name().c_str(), be.kernel_arch().c_str(), start_s);
                    printed_device = true;
                }
                t0 = clock_type::now();
                const models::clip_model<cuda_cublas> model(ck, be);
                std::printf("  %s: weights uploaded in %.2f s\n", cuda_math_name(mode), seconds_since(t0));
                row r;
                r.model = label;
                r.mode = cuda_math_name(mode);
                r.fp32 = mode == cuda_math::fp32;
                for (int64_t b : opt.batches) {
                    const tensor batch = pixels.slice_rows(0, b);
                    r.images_per_s.push_back(b * rate([&] { model.encode_image(batch); }, opt.seconds));
                }
                r.prompts_per_s = opt.text_batch * rate([&] { model.encode_text(prompts); }, opt.seconds);
                const auto pred = top1(model.logits_per_image(model.encode_image(agreement_pixels),
                                                              model.encode_text(classes)));
                if (r.fp32) reference_top1 = pred;
                r.total = static_cast<int>(pred.size());
                for (size_t i = 0; i < pred.size(); ++i) r.agree += pred[i] == reference_top1[i];
                rows.push_back(r);
            }
        }

        std::printf("\nzeroclip cuda_cublas, end to end (host pixels in, host embeddings out)\n");
        std::printf("%-9s %-5s", "model", "gemm");
        for (int64_t b : opt.batches) std::printf(" %12s", ("img/s@" + std::to_string(b)).c_str());
        std::printf(" %14s %10s\n", ("prompts/s@" + std::to_string(opt.text_batch)).c_str(), "top1=fp32");
        for (const row& r : rows) {
            std::printf("%-9s %-5s", r.model.c_str(), r.mode.c_str());
            for (double v : r.images_per_s) std::printf(" %12.1f", v);
            std::printf(" %14.1f %7d/%d\n", r.prompts_per_s, r.agree, r.total);
        }
        for (const std::string& name : {std::string("ViT-B/32"), std::string("RN50")}) {
            const row* best = nullptr;
            for (const row& r : rows)
                if (r.model == name && r.agree == r.total &&
                    (!best || r.images_per_s.back() > best->images_per_s.back()))
                    best = &r;
            if (best)
                std::printf("fastest %s mode with the FP32 top-1: %s (%.1f img/s at batch %lld)\n", name.c_str(),
                            best->mode.c_str(), best->images_per_s.back(), static_cast<long long>(opt.batches.back()));
        }
        return 0;
    } catch (const zeroclip::error& e) {
        std::fprintf(stderr, "bench_gpu: %s\n", e.what());
        return e.code() == errc::no_cuda ? 2 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_gpu: %s\n", e.what());
        return 1;
    }
}
