//! zeroclip::detail — Netpbm images as Pillow 9.4's PpmImagePlugin opens them: P4 (raw) and P1
//! (plain) bitmaps as mode "1" (a set bit is black: 0, a clear one white: 255), P5 grey as "L" or,
//! deeper than 8 bits, "I", P6 as "RGB"; samples rescaled by maxval like its PpmDecoder. Rows are
//! read straight into the output: no copy of the file is held.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../../error.hpp"
#include "formats.hpp"
#include "source.hpp"

namespace zeroclip::detail {

[[noreturn]] inline void pnm_fail(const std::string& name, const std::string& why) {
    ZEROCLIP_THROW(errc::image_decode, name + ": cannot decode PNM image: " + why);
}

/// Python's round() for a non-negative double: half to even.
inline double pnm_round_half_even(double x) noexcept {
    double r = static_cast<double>(static_cast<uint64_t>(x));
    const double frac = x - r;
    if (frac > 0.5 || (frac == 0.5 && static_cast<uint64_t>(r) % 2 != 0)) r += 1.0;
    return r;
}

/// PpmDecoder's rescaling: min(out_max, round(v / maxval * out_max)).
inline int32_t pnm_rescale_value(uint32_t v, int maxval, int out_max) noexcept {
    const double scaled = pnm_round_half_even(static_cast<double>(v) / maxval * out_max);
    return scaled > out_max ? out_max : static_cast<int32_t>(scaled);
}

/// Decodes a PNM whose header `probe_pnm` has read (and validated: `probe.pnm_error` empty).
inline raster decode_pnm(image_source& src, const format_probe& probe) {
    const std::string& name = src.name();
    raster out;
    out.width = static_cast<int>(probe.width);
    out.height = static_cast<int>(probe.height);
    const size_t w = probe.width, h = probe.height, n = w * h;
    const auto truncated = [&](size_t rows) {
        pnm_fail(name, "pixel data ends after " + std::to_string(rows) + " of " + std::to_string(h) +
                           " rows (truncated file)");
    };
    src.seek(probe.pnm_data_at);
    if (probe.pnm_kind == '4') {
        out.pixels.resize(n);
        std::vector<uint8_t> row((w + 7) / 8);
        for (size_t y = 0; y < h; ++y) {
            if (src.read(row.data(), row.size()) != row.size()) truncated(y);
            for (size_t x = 0; x < w; ++x)
                out.pixels[y * w + x] = (row[x >> 3] >> (7 - (x & 7))) & 1u ? 0 : 255;
        }
        return out;
    }
    if (probe.pnm_kind == '1') {  // '0'/'1' characters; whitespace and '#' comments between them
        out.pixels.resize(n);
        size_t done = 0;
        uint8_t c = 0;
        bool comment = false;
        while (done < n) {
            if (src.read(&c, 1) != 1) truncated(done / w);
            if (comment) {
                comment = c != '\n' && c != '\r';
            } else if (c == '#') {
                comment = true;
            } else if (c == '0' || c == '1') {
                out.pixels[done++] = c == '1' ? 0 : 255;
            } else if (!(c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f')) {
                pnm_fail(name, "invalid character '" + std::string(1, static_cast<char>(c)) +
                                   "' in bitmap data (only 0 and 1 allowed)");
            }
        }
        return out;
    }
    // P5 / P6: one or two big-endian bytes per sample.
    const size_t channels = probe.pnm_kind == '6' ? 3 : 1;
    const int maxval = probe.pnm_maxval;
    const size_t bytes = maxval > 255 ? 2 : 1;
    const bool to_i = probe.mode == "I";
    if (to_i) out.values.resize(n);
    else out.pixels.resize(n * channels);
    std::vector<uint8_t> row(w * channels * bytes);
    for (size_t y = 0; y < h; ++y) {
        if (src.read(row.data(), row.size()) != row.size()) truncated(y);
        for (size_t k = 0; k < w * channels; ++k) {
            const uint32_t v = bytes == 2 ? (uint32_t{row[2 * k]} << 8) | row[2 * k + 1] : row[k];
            if (to_i) out.values[y * w + k] = maxval == 65535 ? static_cast<int32_t>(v) : pnm_rescale_value(v, maxval, 65535);
            else out.pixels[y * w * channels + k] = static_cast<uint8_t>(maxval == 255 ? v : static_cast<uint32_t>(pnm_rescale_value(v, maxval, 255)));
        }
    }
    return out;
}

}  // namespace zeroclip::detail
