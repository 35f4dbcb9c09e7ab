// Benchmark of image input: decode + CLIP preprocessing of a 12-megapixel JPEG (4000x3000,
// quality 90) that the program makes itself from synthetic content, median of repeated runs.
// Reports wall and process CPU time (the CPU figure stays meaningful on a shared machine).
//
//   g++ -O2 -std=c++17 -Iinclude tests/bench/bench_image.cpp -o bench_image [-DZEROCLIP_WITH_LIBJPEG -ljpeg] -lz
//   ./bench_image [RUNS=7] [CROP=224] [WIDTH=4000] [HEIGHT=3000]
//   ./bench_image --photos DIR [CROP=224]    every .jpg/.jpeg/.png in DIR, one pass each: decode exact
//                                            and draft, resize of each; ms per photo and per megapixel;
//                                            how far draft moves the crops; last line: the same as JSON
//                                            (scripts/bench_photos.sh reads it)
#include <zeroclip/image.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
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

/// One pass over the photos of `dir`: exact and draft decoding, and the resize of each.
int bench_photos(const std::string& dir, int crop) {
    std::vector<std::string> files;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
        std::string ext = e.path().extension().string();
        for (auto& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        if (e.is_regular_file() && (ext == ".jpg" || ext == ".jpeg" || ext == ".png")) files.push_back(e.path().string());
    }
    std::sort(files.begin(), files.end());
    zeroclip::preprocess_options exact, draft;
    exact.size = draft.size = crop;
    draft.decode = zeroclip::decode_mode::draft;
#if defined(ZEROCLIP_WITH_LIBJPEG)
    const char* jpeg = "libjpeg-turbo";
    const bool has_draft = true;
#else
    const char* jpeg = "stb_image";
    const bool has_draft = false;  // stb decodes at full size: draft would time exact again
#endif
    double mp = 0;
    timing dec_exact{0, 0}, dec_draft{0, 0}, res_exact{0, 0}, res_draft{0, 0};
    const auto add = [](timing& sum, timing t) { sum.wall_ms += t.wall_ms, sum.cpu_ms += t.cpu_ms; };
    std::size_t done = 0;
    // How far draft decoding moves the crop (issue 16, item 3): |draft - exact| over every byte.
    int diff_max = 0;
    std::string diff_max_photo;
    double diff_sum = 0, diff_n = 0;
    std::vector<int> photo_maxes;  // a few edges or the whole crop: the median photo's max tells
    for (const auto& f : files) {
        try {
            zeroclip::decoded_image a, b;
            zeroclip::rgb_image ca, cb;
            add(dec_exact, median_ms(1, [&] { a = zeroclip::decode_image_file(f, exact); }));
            add(res_exact, median_ms(1, [&] { ca = zeroclip::preprocess_crop(a, exact); }));
            if (has_draft) {
                add(dec_draft, median_ms(1, [&] { b = zeroclip::decode_image_file(f, draft); }));
                add(res_draft, median_ms(1, [&] { cb = zeroclip::preprocess_crop(b, draft); }));
                int photo_max = 0;
                for (std::size_t i = 0; i < ca.pixels.size(); ++i) {
                    const int d = std::abs(static_cast<int>(ca.pixels[i]) - static_cast<int>(cb.pixels[i]));
                    photo_max = std::max(photo_max, d);
                    diff_sum += d;
                }
                if (photo_max > diff_max) diff_max = photo_max, diff_max_photo = f;
                photo_maxes.push_back(photo_max);
                diff_n += static_cast<double>(ca.pixels.size());
            }
            mp += static_cast<double>(a.width) * a.height / 1e6;
            ++done;
        } catch (const zeroclip::error& e) {
            std::fprintf(stderr, "skipped: %s\n", e.what());
        }
    }
    if (!done) return std::fprintf(stderr, "bench_image: no photo decoded in %s\n", dir.c_str()), 1;
    const double n = static_cast<double>(done);
    std::printf("bench_image: %zu photos in %s, mean %.2f MP, crop %d, JPEG by %s (wall / CPU ms)\n", done, dir.c_str(),
                mp / n, crop, jpeg);
    const auto row = [&](const char* what, timing t) {
        std::printf("  %-30s %8.1f / %8.1f per photo   %6.2f / %6.2f per MP\n", what, t.wall_ms / n, t.cpu_ms / n,
                    t.wall_ms / mp, t.cpu_ms / mp);
    };
    const timing total_exact{dec_exact.wall_ms + res_exact.wall_ms, dec_exact.cpu_ms + res_exact.cpu_ms};
    const timing total_draft{dec_draft.wall_ms + res_draft.wall_ms, dec_draft.cpu_ms + res_draft.cpu_ms};
    row("decode exact", dec_exact);
    row("resize+crop (exact image)", res_exact);
    row("total exact", total_exact);
    if (has_draft) {
        row("decode draft", dec_draft);
        row("resize+crop (draft image)", res_draft);
        row("total draft", total_draft);
        std::sort(photo_maxes.begin(), photo_maxes.end());
        std::printf("  crops draft vs exact: max |difference| %d (%s), median of the photos' maxima %d, mean %.3f levels\n",
                    diff_max, diff_max_photo.c_str(), photo_maxes[photo_maxes.size() / 2], diff_sum / diff_n);
    }
    // The same as one JSON line, ms per megapixel (wall, CPU).
    std::printf("{\"photos\": %zu, \"mean_mp\": %.4f, \"jpeg\": \"%s\"", done, mp / n, jpeg);
    const auto field = [&](const char* name, timing t) {
        std::printf(", \"%s\": [%.4f, %.4f]", name, t.wall_ms / mp, t.cpu_ms / mp);
    };
    field("decode_exact", dec_exact);
    field("resize_exact", res_exact);
    field("total_exact", total_exact);
    if (has_draft) {
        field("decode_draft", dec_draft);
        field("resize_draft", res_draft);
        field("total_draft", total_draft);
        std::printf(", \"crop_diff_max\": %d, \"crop_diff_median_photo_max\": %d, \"crop_diff_mean\": %.5f", diff_max,
                    photo_maxes[photo_maxes.size() / 2], diff_sum / diff_n);
    }
    std::printf("}\n");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc > 2 && std::string(argv[1]) == "--photos") return bench_photos(argv[2], argc > 3 ? std::max(1, std::atoi(argv[3])) : 224);
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
#if defined(ZEROCLIP_WITH_LIBJPEG)
    row("decode (libjpeg-turbo)", decode);
#else
    row("decode (stb_image)", decode);
#endif
    row("resize+crop+RGB (Pillow)", resize);
    row("normalize", norm);
    row("total per image", total);
    row("resize+crop, HF order", resize_hf);
    return 0;
}
