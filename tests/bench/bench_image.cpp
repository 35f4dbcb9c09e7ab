// Benchmark of image input: decode + CLIP preprocessing of a 12-megapixel JPEG (4000x3000,
// quality 90) that the program makes itself from synthetic content, median of repeated runs.
// Reports wall and process CPU time (the CPU figure stays meaningful on a shared machine).
//
//   g++ -O2 -std=c++17 -Iinclude tests/bench/bench_image.cpp -o bench_image
//   ./bench_image [RUNS=7] [CROP=224] [WIDTH=4000] [HEIGHT=3000]
#include <zeroclip/image.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace {

struct timing {
    double wall_ms;
    double cpu_ms;  // process CPU time: robust when other jobs share the cores
};

timing median_ms(int runs, const std::function<void()>& f) {
    std::vector<double> wall, cpu;
    for (int i = 0; i < runs; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        const std::clock_t c0 = std::clock();
        f();
        cpu.push_back(1000.0 * static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC);
        wall.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(wall.begin(), wall.end());
    std::sort(cpu.begin(), cpu.end());
    return {wall[wall.size() / 2], cpu[cpu.size() / 2]};
}

// Photo-like content: smooth gradients, some texture and hard edges, so the JPEG is neither
// trivially compressible nor pure noise.
std::vector<std::uint8_t> synthetic(int w, int h) {
    std::vector<std::uint8_t> px(static_cast<std::size_t>(w) * static_cast<std::size_t>(h) * 3);
    std::mt19937 rng(1);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
            const std::size_t i = (static_cast<std::size_t>(y) * static_cast<std::size_t>(w) + static_cast<std::size_t>(x)) * 3;
            const double fx = x / static_cast<double>(w), fy = y / static_cast<double>(h);
            const bool block = ((x / 400) + (y / 300)) % 3 == 0;
            const int noise = static_cast<int>(rng() % 17) - 8;
            px[i] = static_cast<std::uint8_t>(std::clamp(static_cast<int>(255 * fx) + noise, 0, 255));
            px[i + 1] = static_cast<std::uint8_t>(std::clamp(static_cast<int>(128 + 100 * std::sin(12 * fx + 7 * fy)) + noise, 0, 255));
            px[i + 2] = static_cast<std::uint8_t>(block ? 230 : std::clamp(static_cast<int>(255 * fy) + noise, 0, 255));
        }
    return px;
}

}  // namespace

int main(int argc, char** argv) {
    const int runs = argc > 1 ? std::max(1, std::atoi(argv[1])) : 7;
    zeroclip::preprocess_options options;
    options.size = argc > 2 ? std::max(1, std::atoi(argv[2])) : 224;
    const int w = argc > 3 ? std::max(1, std::atoi(argv[3])) : 4000;
    const int h = argc > 4 ? std::max(1, std::atoi(argv[4])) : 3000;

    const std::vector<std::uint8_t> pixels = synthetic(w, h);
    std::vector<std::uint8_t> jpeg;
    auto sink = [](void* ctx, void* data, int n) {
        auto* v = static_cast<std::vector<std::uint8_t>*>(ctx);
        v->insert(v->end(), static_cast<std::uint8_t*>(data), static_cast<std::uint8_t*>(data) + n);
    };
    if (!zc_stbi_write_jpg_to_func(sink, &jpeg, w, h, 3, pixels.data(), 90)) {
        std::fprintf(stderr, "bench_image: JPEG encoding failed\n");
        return 1;
    }

    zeroclip::decoded_image image;
    zeroclip::rgb_image crop;
    std::vector<float> tensor;
    const timing decode = median_ms(runs, [&] { image = zeroclip::decode_image_memory(jpeg.data(), jpeg.size(), "bench.jpg"); });
    const timing resize = median_ms(runs, [&] { crop = zeroclip::preprocess_crop(image, options); });
    const timing norm = median_ms(runs, [&] { tensor = zeroclip::normalize(crop, options.mean, options.stddev); });
    const timing total = median_ms(runs, [&] {
        tensor = zeroclip::normalize(zeroclip::preprocess_crop(zeroclip::decode_image_memory(jpeg.data(), jpeg.size(), "bench.jpg"), options),
                                     options.mean, options.stddev);
    });
    zeroclip::preprocess_options hf = options;
    hf.hf_order = true;
    const timing resize_hf = median_ms(runs, [&] { crop = zeroclip::preprocess_crop(image, hf); });

    std::printf("bench_image: %dx%d JPEG q90 (%.1f MB), crop %d, median of %d runs (wall / CPU ms)\n", w, h,
                static_cast<double>(jpeg.size()) / 1e6, options.size, runs);
    const auto row = [](const char* what, timing t) { std::printf("  %-28s %8.1f / %8.1f\n", what, t.wall_ms, t.cpu_ms); };
    row("decode (stb_image)", decode);
    row("resize+crop+RGB (Pillow)", resize);
    row("normalize", norm);
    row("total per image", total);
    row("resize+crop, HF order", resize_hf);
    return 0;
}
