//! Which instruction sets the reduced-precision kernels and the fp32 GEMM kernel may use, decided
//! at run time (one binary runs on any x86-64 with AVX2 and uses the best path the CPU has).
//! ZEROCLIP_CPU_PATH=avx2 (or =scalar, or =avx512: the fp32 AVX-512F kernel but not VNNI / BF16)
//! forces a lower path: how the AVX2 kernels are measured on an AVX-512 machine.
#pragma once

#include <cstdlib>
#include <string>

namespace zeroclip::detail::cpu {

/// The kernel families, lowest first. avx512: the fp32 GEMM kernel (AVX-512F/VL/DQ/BW).
enum class isa { scalar, avx2, avx512, avx512_vnni, avx512_bf16 };

/// The ISA's name as ZEROCLIP_CPU_PATH spells it.
inline const char* isa_name(isa i) {
    switch (i) {
        case isa::avx2: return "avx2";
        case isa::avx512: return "avx512";
        case isa::avx512_vnni: return "avx512vnni";
        case isa::avx512_bf16: return "avx512bf16";
        default: return "scalar";
    }
}

/// Whether this CPU (and compiler) can run `i`, whatever ZEROCLIP_CPU_PATH says.
inline bool cpu_has(isa i) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    switch (i) {
        case isa::scalar: return true;
        case isa::avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        case isa::avx512:
            return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                   __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
        case isa::avx512_vnni:
            return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
        case isa::avx512_bf16:
            return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
    }
    return false;
#else
    return i == isa::scalar;
#endif
}

/// The highest path allowed by ZEROCLIP_CPU_PATH (unset: all), read once.
inline isa path_cap() {
    static const isa cap = [] {
        const char* env = std::getenv("ZEROCLIP_CPU_PATH");
        const std::string s = env ? env : "";
        if (s == "scalar") return isa::scalar;
        if (s == "avx2") return isa::avx2;
        if (s == "avx512") return isa::avx512;
        return isa::avx512_bf16;
    }();
    return cap;
}

/// Whether the kernels of `i` are used: the CPU has it and ZEROCLIP_CPU_PATH does not cap it
/// lower (avx512 < avx512vnni < avx512bf16 only as a cap; each is checked on its own).
inline bool use_isa(isa i) { return cpu_has(i) && static_cast<int>(i) <= static_cast<int>(path_cap()); }

}  // namespace zeroclip::detail::cpu
