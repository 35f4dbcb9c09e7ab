// The `--decode exact|draft` flag of classify, embed and preprocess (JPEG decoding mode).
#pragma once

#include <string>

#include "cli.hpp"
#include <zeroclip/image.hpp>

namespace zeroclip_cli {

/// Help text line for --decode.
inline const char* decode_flag_help() {
    return "  --decode MODE    exact (default: Pillow's pixels) or draft (JPEG decoded at 1/2, 1/4 or 1/8\n"
           "                   scale, never below the model size, as Pillow's draft(): faster, crops\n"
           "                   within a few levels; needs a build with libjpeg-turbo)\n";
}

/// The --decode value; usage_error for anything but exact or draft.
inline zeroclip::decode_mode decode_mode_from(const args& a) {
    const std::string v = a.get("--decode").value_or("exact");
    if (v == "exact") return zeroclip::decode_mode::exact;
    if (v == "draft") return zeroclip::decode_mode::draft;
    throw usage_error("--decode must be exact or draft, got '" + v + "'");
}

}  // namespace zeroclip_cli
