//! Which instruction sets the reduced-precision kernels and the fp32 GEMM kernel may use, decided
//! at run time (one binary runs on any x86-64 with AVX2 and uses the best path the CPU has).
//! ZEROCLIP_CPU_PATH=avx2 (or =scalar, or =avx512: the fp32 AVX-512F kernel but not VNNI / BF16)
//! forces a lower path: how the AVX2 kernels are measured on an AVX-512 machine (=avxvnni: AVX2
//! with the 256-bit vpdpbusd of AVX-VNNI, as on Alder Lake or Zen 5 desktops, no AVX-512).
#pragma once

#include <cstdlib>
#include <string>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

namespace zeroclip::detail::cpu {

/// The kernel families, lowest first. avx512: the fp32 GEMM kernel (AVX-512F/VL/DQ/BW);
/// avx_vnni: the int8 kernel with AVX-VNNI's 256-bit vpdpbusd.
enum class isa { scalar, avx2, avx_vnni, avx512, avx512_vnni, avx512_bf16 };

/// The ISA's name as ZEROCLIP_CPU_PATH spells it.
inline const char* isa_name(isa i) {
    switch (i) {
        case isa::avx2: return "avx2";
        case isa::avx_vnni: return "avxvnni";
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
        case isa::avx_vnni: {  // CPUID.(EAX=7, ECX=1):EAX bit 4
            unsigned a = 0, b = 0, c = 0, d = 0;
            return cpu_has(isa::avx2) && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a >> 4 & 1u);
        }
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
        if (s == "avxvnni") return isa::avx_vnni;
        if (s == "avx512") return isa::avx512;
        return isa::avx512_bf16;
    }();
    return cap;
}

/// Whether the kernels of `i` are used: the CPU has it and ZEROCLIP_CPU_PATH does not cap it
/// lower (avx512 < avx512vnni < avx512bf16 only as a cap; each is checked on its own). =avx512
/// stands for AVX-512F without VNNI, so it leaves AVX-VNNI off too.
inline bool use_isa(isa i) {
    if (i == isa::avx_vnni && path_cap() == isa::avx512) return false;
    return cpu_has(i) && static_cast<int>(i) <= static_cast<int>(path_cap());
}

}  // namespace zeroclip::detail::cpu
