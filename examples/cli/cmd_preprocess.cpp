// `zeroclip preprocess`: writes the exact 8-bit crop the model will see for an image, as PNG
// and/or as a uint8 [size, size, 3] .npy, to compare with Python's preprocessing pixel by pixel.
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <iostream>
#include <limits>
#include <optional>
#include <string>

#include "common.hpp"
#include "decode_flag.hpp"
#include "outputs.hpp"
#include <zeroclip/image.hpp>
#include <zeroclip/io/npy.hpp>

namespace {

int run_preprocess(const std::vector<std::string>& argv) {
    zeroclip_cli::args a(argv, {"--size", "--out", "--npy", "--max-pixels", "--decode"}, {"--hf-order", "--floor-crop", "--quiet"});
    if (a.positionals().size() != 1)
        throw zeroclip_cli::usage_error("expected exactly one IMAGE argument, got " +
                                        std::to_string(a.positionals().size()));
    const auto out = a.get("--out");
    const auto npy = a.get("--npy");
    if (!out && !npy) throw zeroclip_cli::usage_error("nothing to write: give --out PNG and/or --npy NPY");

    zeroclip::preprocess_options options;
    options.size = a.get_int("--size", 224, 1, 16384);
    options.hf_order = a.has("--hf-order");
    options.floor_crop = a.has("--floor-crop");
    options.max_pixels = static_cast<std::size_t>(
        a.get_int("--max-pixels", static_cast<int>(zeroclip::default_max_image_pixels), 1,
                  std::numeric_limits<int>::max()));

    options.decode = zeroclip_cli::decode_mode_from(a);
    const std::string& path = a.positionals()[0];
    zeroclip_cli::file_plan plan;
    plan.input(path, "IMAGE");
    if (out) plan.output(*out, "--out");
    if (npy) plan.output(*npy, "--npy");
    plan.check();
    struct stat st {};  // a FIFO would block the decoder: only a regular file is read
    if (::stat(path.c_str(), &st) != 0) throw zeroclip_cli::usage_error(path + ": " + zeroclip_cli::stat_failure(errno));
    if (!S_ISREG(st.st_mode)) throw zeroclip_cli::usage_error(path + ": not a regular file (a FIFO, device or socket); give an image file");
    const zeroclip::decoded_image image = zeroclip::decode_image_file(path, options);
    const zeroclip::crop_geometry g = zeroclip::compute_crop_geometry(image.width, image.height, options);
    const zeroclip::rgb_image crop = zeroclip::preprocess_crop(image, options);

    // Both outputs are written and synced before either replaces a previous file.
    std::optional<zeroclip::atomic_output> png_out, npy_out;
    if (out) {
        const std::vector<std::uint8_t> png = zeroclip::encode_png(crop);
        png_out.emplace(*out);
        png_out->write(png.data(), png.size());
    }
    if (npy) {
        const std::int64_t n = crop.width;
        npy_out.emplace(*npy);
        zeroclip::write_npy(*npy_out, zeroclip::basic_tensor<std::uint8_t>({n, n, 3}, crop.pixels));
    }
    for (auto* o : {&png_out, &npy_out})
        if (*o) (*o)->sync();
    for (auto* o : {&png_out, &npy_out})
        if (*o) (*o)->commit();
    if (!a.has("--quiet")) {
        const bool nearest = !options.hf_order && (image.mode == zeroclip::pixel_mode::p ||
                                                   image.mode == zeroclip::pixel_mode::bilevel);
        std::cout << zeroclip_cli::escape_text(path) << ": " << image.format << " " << image.width << "x" << image.height << " mode "
                  << zeroclip::pixel_mode_name(image.mode) << " -> resize " << g.resized_width << "x"
                  << g.resized_height << (nearest ? " NEAREST" : " BICUBIC")
                  << (options.hf_order ? " (after convert RGB)" : "") << ", crop " << g.size << "x" << g.size
                  << " at (" << g.left << ", " << g.top << ")\n";
    }
    return 0;
}

}  // namespace

ZEROCLIP_CLI_COMMAND({"preprocess", "write the exact 8-bit crop the model sees (PNG / .npy)",
                      "usage: zeroclip preprocess IMAGE [--size N] [--out CROP.png] [--npy CROP.npy]\n"
                      "                           [--hf-order] [--floor-crop] [--max-pixels N] [--decode exact|draft] [--quiet]\n\n"
                      "Decodes IMAGE (JPEG, PNG, BMP, GIF, TGA, PNM) and applies CLIP's preprocessing up to\n"
                      "the uint8 crop, exactly as OpenAI's Pillow pipeline: Resize(short side -> N, BICUBIC)\n"
                      "in the image's own mode (NEAREST for palettes, premultiplied alpha for RGBA), then\n"
                      "CenterCrop(N), then convert('RGB').\n\n"
                      "flags:\n"
                      "  --size N          model input size (default 224)\n"
                      "  --out CROP.png    write the crop as an RGB PNG\n"
                      "  --npy CROP.npy    write the crop as a uint8 [N, N, 3] NumPy array\n"
                      "  --hf-order        Hugging Face order: convert('RGB') before resizing\n"
                      "  --floor-crop      crop offset rounded down (Hugging Face) instead of half-to-even\n"
                      "  --max-pixels N    refuse images declaring more pixels (default 100000000)\n"
                      "  --quiet           do not print the geometry line\n" +
                          std::string(zeroclip_cli::decode_flag_help()) + "\n"
                      "example:\n"
                      "  zeroclip preprocess cat.jpg --size 224 --out crop.png --npy crop.npy\n",
                      run_preprocess});
