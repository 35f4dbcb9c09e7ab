// The `--precision fp32|bf16|int8` flag of classify and embed (the CPU encoders' arithmetic).
#pragma once

#include <string>

#include "cli.hpp"
#include <zeroclip/zeroclip.hpp>

namespace zeroclip_cli {

/// Help text line for --precision.
inline const char* precision_flag_help() {
    return "  --precision P    fp32 (default), bf16 or int8: the CPU encoders' linear layers with weights\n"
           "                   in that precision (bf16: half the memory, int8: a quarter; faster, embeddings\n"
           "                   within cosine 0.999 of fp32; kernels picked for this CPU at run time)\n";
}

/// The CPU backend for --precision; usage_error for an unknown value.
inline zeroclip::cpu_backend cpu_backend_from(const args& a) {
    const std::string v = a.get("--precision").value_or("fp32");
    try {
        return zeroclip::cpu_backend(zeroclip::cpu_options{zeroclip::parse_precision(v)});
    } catch (const zeroclip::error&) {
        throw usage_error("--precision must be fp32, bf16 or int8, got '" + v + "'");
    }
}

}  // namespace zeroclip_cli
