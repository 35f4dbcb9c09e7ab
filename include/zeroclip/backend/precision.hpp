//! The arithmetic precision of an encoder's products (linear layers): a load option of backends
//! that support reduced precision (cpu_backend(cpu_options{precision::int8})). Attention products,
//! layer norm and softmax stay in float32 whatever the choice.
#pragma once

#include <string>

#include "../error.hpp"

namespace zeroclip {

/// fp32: float32 weights (exact, the default). bf16: weights stored as bfloat16 (half the memory).
/// int8: weights int8 per output channel, activations int8 per row (a quarter of the memory).
enum class precision { fp32, bf16, int8 };

/// "fp32", "bf16" or "int8".
inline const char* precision_name(precision p) {
    switch (p) {
        case precision::bf16: return "bf16";
        case precision::int8: return "int8";
        default: return "fp32";
    }
}

/// The precision named `s` ("fp32", "bf16", "int8"); errc::invalid_argument naming the choices otherwise.
inline precision parse_precision(const std::string& s) {
    for (precision p : {precision::fp32, precision::bf16, precision::int8})
        if (s == precision_name(p)) return p;
    ZEROCLIP_THROW(errc::invalid_argument, "unknown precision '" + s + "': expected fp32, bf16 or int8");
}

}  // namespace zeroclip
