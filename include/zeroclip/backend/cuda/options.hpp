//! Options of the cuda_cublas backend, shared by the real backend (cuda_backend.hpp) and the
//! stub of a build without CUDA (stub.hpp), so code that sets them compiles with either.
//! No CUDA header here.
#pragma once

#include <string>

#include "../../error.hpp"

namespace zeroclip {

/// How cuda_cublas computes matrix products (element-wise ops are always FP32).
enum class cuda_math {
    fp32,  ///< cublasSgemm: IEEE float32, matches cpu_backend to ~1e-6 relative (the default)
    tf32,  ///< tensor cores with inputs rounded to TF32 (10-bit mantissa), FP32 accumulation
    fp16,  ///< tensor cores with inputs rounded to FP16 inside cuBLAS, FP32 accumulation/output
    bf16,  ///< as fp16 with bfloat16 inputs (8-bit mantissa, FP32 range)
};

inline const char* cuda_math_name(cuda_math m) {
    switch (m) {
        case cuda_math::fp32: return "fp32";
        case cuda_math::tf32: return "tf32";
        case cuda_math::fp16: return "fp16";
        case cuda_math::bf16: return "bf16";
    }
    return "?";
}

/// "fp32", "tf32", "fp16", "bf16" -> cuda_math; throws errc::invalid_argument otherwise.
inline cuda_math parse_cuda_math(const std::string& s) {
    for (cuda_math m : {cuda_math::fp32, cuda_math::tf32, cuda_math::fp16, cuda_math::bf16})
        if (s == cuda_math_name(m)) return m;
    ZEROCLIP_THROW(errc::invalid_argument, "unknown CUDA math mode '" + s + "' (fp32, tf32, fp16 or bf16)");
}

struct cuda_options {
    int device = 0;                    ///< CUDA device ordinal
    cuda_math math = cuda_math::fp32;  ///< precision of the GEMMs
    /// Synchronise and check after every kernel and GEMM, so an asynchronous error names the
    /// op that caused it (slow; also enabled by the environment variable ZEROCLIP_CUDA_SYNC=1).
    bool synchronous = false;
};

}  // namespace zeroclip
