//! The device kernels of the cuda_cublas backend, as CUDA C source in a string, compiled at run
//! time with NVRTC (once per process and device) for the device's compute capability. This keeps
//! zeroclip header-only: no nvcc, no .cu file, no separately built library (tiny-cuda-nn's
//! rtc_kernel.h idea). Every kernel mirrors one cpu_backend loop, in the same float arithmetic
//! order, so results match the CPU to a few ulps (reductions accumulate in double like the CPU's
//! layer norm). `compile_kernels` needs NVRTC only, not a GPU, so tests can check the source.
//! Compiled images are cached on disk (see cached_kernels_for) so only a process's first run on a
//! machine pays the NVRTC compile.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "check.hpp"

namespace zeroclip::detail::cuda {

// Every kernel of the source, in one list: the enum, the name table and the loader use it.
#define ZEROCLIP_CUDA_KERNEL_LIST(X) \
    X(layer_norm)                    \
    X(quick_gelu)                    \
    X(gelu)                          \
    X(relu)                          \
    X(add)                           \
    X(add_broadcast)                 \
    X(bias_act)                      \
    X(channel_bias_act)              \
    X(scale)                         \
    X(l2_normalize)                  \
    X(softmax)                       \
    X(gather_rows)                   \
    X(patchify)                      \
    X(prepend_row)                   \
    X(split_heads)                   \
    X(merge_heads)                   \
    X(im2col)                        \
    X(avg_pool2d)                    \
    X(spatial_tokens)

enum class kernel_id {
#define ZEROCLIP_CUDA_KERNEL_ENUM(name) name,
    ZEROCLIP_CUDA_KERNEL_LIST(ZEROCLIP_CUDA_KERNEL_ENUM)
#undef ZEROCLIP_CUDA_KERNEL_ENUM
        count
};

inline const char* kernel_symbol(kernel_id id) {
    static const char* const names[] = {
#define ZEROCLIP_CUDA_KERNEL_NAME(name) "zc_" #name,
        ZEROCLIP_CUDA_KERNEL_LIST(ZEROCLIP_CUDA_KERNEL_NAME)
#undef ZEROCLIP_CUDA_KERNEL_NAME
    };
    return names[static_cast<int>(id)];
}

/// The CUDA C source of every kernel. Conventions: `extern "C"` names (no mangling), 64-bit
/// element indices, grid-stride loops for element-wise kernels, one block (or one warp) per row
/// for reductions. No #include: NVRTC provides the device math functions used here.
inline const char* kernel_source() {
    return R"CUDA(
typedef long long i64;

#define GRID_STRIDE(i, n) \
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)blockDim.x * gridDim.x)

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
// Sum over the block (blockDim.x a multiple of 32); every thread gets the total.
__device__ double block_sum(double v, double* shared) {
    v = warp_sum_d(v);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    __syncthreads();  // shared may still be read by a previous call
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    return warp_sum_d(lane < warps ? shared[lane] : 0.0);
}

// One block per row of n values: mean and variance in double (two passes), then
// y = (x - mean) * rstd * w + b in float, as cpu_backend::layer_norm.
extern "C" __global__ void zc_layer_norm(const float* __restrict__ x, const float* __restrict__ w,
                                         const float* __restrict__ b, float* __restrict__ y, int n,
                                         double eps) {
    __shared__ double red[32];
    const float* in = x + (i64)blockIdx.x * n;
    float* out = y + (i64)blockIdx.x * n;
    double s = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += in[i];
    const double mean = block_sum(s, red) / n;
    double v = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const double d = in[i] - mean;
        v += d * d;
    }
    const double var = block_sum(v, red) / n;
    const float inv = (float)(1.0 / sqrt(var + eps));
    const float mu = (float)mean;
    for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = (in[i] - mu) * inv * w[i] + b[i];
}

// Activations, shared by the plain and the fused kernels (act codes: ACT_*).
#define ACT_NONE 0
#define ACT_QUICK_GELU 1
#define ACT_GELU 2
#define ACT_RELU 3
__device__ __forceinline__ float activate(float v, int act) {
    if (act == ACT_QUICK_GELU) return v / (1.0f + expf(-1.702f * v));  // QuickGELU x·σ(1.702x), as OpenAI trained
    if (act == ACT_GELU) return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    if (act == ACT_RELU) return v < 0.0f ? 0.0f : v;  // NaN kept, as torch.relu
    return v;
}

extern "C" __global__ void zc_quick_gelu(float* x, i64 n) {
    GRID_STRIDE(i, n) x[i] = activate(x[i], ACT_QUICK_GELU);
}

extern "C" __global__ void zc_gelu(float* x, i64 n) {
    GRID_STRIDE(i, n) x[i] = activate(x[i], ACT_GELU);
}

extern "C" __global__ void zc_relu(float* x, i64 n) {
    GRID_STRIDE(i, n) x[i] = activate(x[i], ACT_RELU);
}

// The epilogue of a linear: y (rows, cols) = act(y + b[col]) (b may be null).
extern "C" __global__ void zc_bias_act(float* y, const float* b, i64 n, i64 cols, int act) {
    GRID_STRIDE(i, n) y[i] = activate(b ? y[i] + b[i % cols] : y[i], act);
}

extern "C" __global__ void zc_add(float* x, const float* y, i64 n) {
    GRID_STRIDE(i, n) x[i] += y[i];
}

// x[i] += r[i % block]: bias over rows, positional embedding over a batch.
extern "C" __global__ void zc_add_broadcast(float* x, const float* r, i64 n, i64 block) {
    GRID_STRIDE(i, n) x[i] += r[i % block];
}

// The epilogue of a convolution, NCHW: y (N, C, plane) = act((y + residual) + bias[c]), in
// cpu_backend's order (residual and bias may be null; bias is the folded batch norm's shift).
extern "C" __global__ void zc_channel_bias_act(float* y, const float* bias, const float* residual, i64 n,
                                               i64 channels, i64 plane, int act) {
    GRID_STRIDE(i, n) {
        float v = y[i];
        if (residual) v += residual[i];
        if (bias) v += bias[(i / plane) % channels];
        y[i] = activate(v, act);
    }
}

extern "C" __global__ void zc_scale(float* x, float s, i64 n) {
    GRID_STRIDE(i, n) x[i] *= s;
}

// One block per row: y = x / ||x|| (rows of norm 0 are copied unchanged, as Eigen's normalized()).
extern "C" __global__ void zc_l2_normalize(const float* __restrict__ x, float* __restrict__ y, int n) {
    __shared__ double red[32];
    const float* in = x + (i64)blockIdx.x * n;
    float* out = y + (i64)blockIdx.x * n;
    double s = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += (double)in[i] * in[i];
    const float z = (float)block_sum(s, red);
    if (z > 0.0f) {
        const float norm = sqrtf(z);
        for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = in[i] / norm;
    } else {
        for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = in[i];
    }
}

// One warp per row of n values (x and y may alias). With `causal`, row r is query
// i = r % rows_per_matrix of an attention matrix: only columns <= i are visible, the rest get 0.
extern "C" __global__ void zc_softmax(const float* x, float* y, i64 rows, int n, int rows_per_matrix, int causal) {
    const i64 row = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= rows) return;
    const int lane = threadIdx.x & 31;
    const float* in = x + row * n;
    float* out = y + row * n;
    int visible = n;
    if (causal) visible = min((int)(row % rows_per_matrix) + 1, n);
    float mx = __int_as_float(0xff800000);  // -inf
    for (int j = lane; j < visible; j += 32) mx = fmaxf(mx, in[j]);
    mx = warp_max(mx);
    float s = 0.0f;
    for (int j = lane; j < visible; j += 32) s += expf(in[j] - mx);
    const float inv = 1.0f / warp_sum(s);
    for (int j = lane; j < n; j += 32) out[j] = j < visible ? expf(in[j] - mx) * inv : 0.0f;
}

// y (count, w) = rows idx of table (., w).
extern "C" __global__ void zc_gather_rows(const float* __restrict__ table, const i64* __restrict__ idx,
                                          float* __restrict__ y, i64 count, i64 w) {
    GRID_STRIDE(i, count * w) {
        const i64 r = i / w, c = i - r * w;
        y[i] = table[idx[r] * w + c];
    }
}

// images (N, C, H, W) -> (N·(H/p)·(W/p), C·p·p), each row ordered (c, ky, kx).
extern "C" __global__ void zc_patchify(const float* __restrict__ img, float* __restrict__ y, i64 total, int c,
                                       int h, int w, int p) {
    const int gh = h / p, gw = w / p;
    const i64 cols = (i64)c * p * p;
    GRID_STRIDE(i, total) {
        const i64 row = i / cols;
        const int col = (int)(i - row * cols);
        const int kx = col % p, ky = (col / p) % p, ch = col / (p * p);
        const int gx = (int)(row % gw);
        const i64 t = row / gw;
        const int gy = (int)(t % gh);
        const i64 n = t / gh;
        y[i] = img[((n * c + ch) * h + (i64)gy * p + ky) * w + (i64)gx * p + kx];
    }
}

// x (B·T, W) -> y (B·(T+1), W) with `first` (W) before each sample's rows.
extern "C" __global__ void zc_prepend_row(const float* __restrict__ x, const float* __restrict__ first,
                                          float* __restrict__ y, i64 batch, i64 t, i64 w) {
    GRID_STRIDE(i, batch * (t + 1) * w) {
        const i64 c = i % w, r = i / w, b = r / (t + 1), k = r - b * (t + 1);
        y[i] = k == 0 ? first[c] : x[(b * t + k - 1) * w + c];
    }
}

// src rows (B·T) of `stride` floats, head h in columns [h·d, (h+1)·d) -> dst (B, H, T, d).
// blockIdx.y selects one of several parts: src + y·part_offset, dst + y·B·H·T·d (q, k, v).
extern "C" __global__ void zc_split_heads(const float* __restrict__ src, float* __restrict__ dst, i64 batch, i64 t,
                                          int heads, int d, i64 stride, i64 part_offset) {
    const i64 total = batch * heads * t * d;
    src += blockIdx.y * part_offset;
    dst += blockIdx.y * total;
    GRID_STRIDE(i, total) {
        const int j = (int)(i % d);
        i64 r = i / d;
        const i64 tok = r % t;
        r /= t;
        const int h = (int)(r % heads);
        const i64 b = r / heads;
        dst[i] = src[(b * t + tok) * stride + (i64)h * d + j];
    }
}

// src (B, H, T, d) -> dst (B·T, H·d).
extern "C" __global__ void zc_merge_heads(const float* __restrict__ src, float* __restrict__ dst, i64 batch, i64 t,
                                          int heads, int d) {
    const i64 w = (i64)heads * d;
    GRID_STRIDE(i, batch * t * w) {
        const i64 row = i / w;
        const int col = (int)(i - row * w);
        const int h = col / d, j = col - h * d;
        const i64 b = row / t, tok = row - b * t;
        dst[i] = src[((b * heads + h) * t + tok) * d + j];
    }
}

// Images x (N, C, H, W) -> columns (N, C·kh·kw, OH·OW): row (c, ky, kx) of image n holds the
// input pixel each output position sees there (zero padding), so conv = weight (O, C·kh·kw) · cols.
extern "C" __global__ void zc_im2col(const float* __restrict__ x, float* __restrict__ cols, i64 n, int c, int h,
                                     int w, int kh, int kw, int stride, int pad, int oh, int ow) {
    const i64 plane = (i64)oh * ow, k = (i64)c * kh * kw;
    GRID_STRIDE(i, n * k * plane) {
        const i64 r = i / plane;
        const int pos = (int)(i - r * plane);
        const i64 img = r / k;
        const int row = (int)(r - img * k);
        const int oy = pos / ow, ox = pos - oy * ow;
        const int kx = row % kw, ky = (row / kw) % kh, ch = row / (kh * kw);
        const int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
        cols[i] = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? x[((img * c + ch) * h + iy) * w + ix] : 0.0f;
    }
}

// nn.AvgPool2d(k): x (P, H, W) planes -> y (P, H/k, W/k), windows summed in (ky, kx) order then
// multiplied by 1/k², as cpu_backend::avg_pool2d.
extern "C" __global__ void zc_avg_pool2d(const float* __restrict__ x, float* __restrict__ y, i64 planes, int h,
                                         int w, int k, float inv) {
    const int oh = h / k, ow = w / k;
    GRID_STRIDE(i, planes * oh * ow) {
        const i64 p = i / ((i64)oh * ow);
        const int pos = (int)(i - p * oh * ow);
        const int oy = pos / ow, ox = pos - oy * ow;
        const float* in = x + p * h * w;
        float s = 0.0f;
        for (int ky = 0; ky < k; ++ky)
            for (int kx = 0; kx < k; ++kx) s += in[(oy * k + ky) * w + ox * k + kx];
        y[i] = s * inv;
    }
}

// Feature maps x (N, C, HW) -> tokens y (N·(1+HW), C): per image the channel means (in double),
// then each position's channel vector.
extern "C" __global__ void zc_spatial_tokens(const float* __restrict__ x, float* __restrict__ y, i64 n, i64 c,
                                             i64 hw) {
    const i64 t = 1 + hw;
    GRID_STRIDE(i, n * t * c) {
        const i64 ch = i % c, r = i / c, img = r / t, tok = r - img * t;
        const float* in = x + (img * c + ch) * hw;
        if (tok == 0) {
            double s = 0;
            for (i64 j = 0; j < hw; ++j) s += in[j];
            y[i] = (float)(s / (double)hw);
        } else {
            y[i] = in[tok - 1];
        }
    }
}
)CUDA";
}

/// The architectures this NVRTC can compile for (e.g. 75, 80, 86, 89, 90, 100, 120).
inline std::vector<int> nvrtc_supported_archs() {
    int n = 0;
    ZEROCLIP_NVRTC_CHECK(nvrtcGetNumSupportedArchs(&n));
    std::vector<int> archs(static_cast<size_t>(n));
    if (n) ZEROCLIP_NVRTC_CHECK(nvrtcGetSupportedArchs(archs.data()));
    std::sort(archs.begin(), archs.end());
    return archs;
}

/// What NVRTC produced: a cubin (SASS for exactly one architecture) or PTX for the driver to JIT.
struct compiled_kernels {
    std::string image;  ///< cubin bytes, or NUL-terminated PTX text
    bool is_cubin = false;
    std::string arch;   ///< the --gpu-architecture value used
    std::string log;    ///< compiler warnings, if any
};

/// The NVRTC options besides the architecture. --fmad=false: no fused multiply-adds, so
/// element-wise results round like the CPU's (these kernels are memory-bound; FMA does not matter).
inline const char* const* kernel_options() {
    static const char* const options[] = {"--std=c++17", "--fmad=false"};
    return options;
}

/// Compiles kernel_source() for `arch` ("sm_90" gives a cubin, "compute_90" gives PTX). Throws
/// errc::cuda with the compiler log on failure. Needs NVRTC only, no GPU.
inline compiled_kernels compile_kernels_for(const std::string& arch) {
    nvrtcProgram prog = nullptr;
    ZEROCLIP_NVRTC_CHECK(nvrtcCreateProgram(&prog, kernel_source(), "zeroclip_kernels.cu", 0, nullptr, nullptr));
    struct destroy {
        nvrtcProgram* p;
        ~destroy() { nvrtcDestroyProgram(p); }
    } guard{&prog};
    const std::string arch_option = "--gpu-architecture=" + arch;
    const char* options[] = {arch_option.c_str(), kernel_options()[0], kernel_options()[1]};
    const nvrtcResult result = nvrtcCompileProgram(prog, 3, options);
    compiled_kernels out;
    out.arch = arch;
    size_t log_size = 0;
    if (nvrtcGetProgramLogSize(prog, &log_size) == NVRTC_SUCCESS && log_size > 1) {
        out.log.resize(log_size);
        nvrtcGetProgramLog(prog, &out.log[0]);
        out.log.resize(log_size - 1);
    }
    detail::cuda::check_nvrtc(result, ("nvrtcCompileProgram(" + arch_option + ")").c_str(), __FILE__, __LINE__,
                              out.log);
    out.is_cubin = arch.compare(0, 3, "sm_") == 0;
    size_t size = 0;
    if (out.is_cubin) {
        ZEROCLIP_NVRTC_CHECK(nvrtcGetCUBINSize(prog, &size));
        out.image.resize(size);
        ZEROCLIP_NVRTC_CHECK(nvrtcGetCUBIN(prog, &out.image[0]));
    } else {
        ZEROCLIP_NVRTC_CHECK(nvrtcGetPTXSize(prog, &size));
        out.image.resize(size);  // includes the terminating NUL the driver needs
        ZEROCLIP_NVRTC_CHECK(nvrtcGetPTX(prog, &out.image[0]));
    }
    return out;
}

/// Where compiled kernels are cached: $ZEROCLIP_CUDA_CACHE_DIR ("off" or "0" disables the cache),
/// else $XDG_CACHE_HOME/zeroclip, else $HOME/.cache/zeroclip; "" for no cache.
inline std::string kernel_cache_dir() {
    if (const char* d = std::getenv("ZEROCLIP_CUDA_CACHE_DIR")) {
        const std::string dir = d;
        return dir == "off" || dir == "0" ? std::string() : dir;
    }
    if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/zeroclip";
    if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/zeroclip";
    return {};
}

/// The cache file of `arch`'s image: named by a hash (FNV-1a) of everything that determines it
/// (source, architecture, options, NVRTC version), so a changed kernel never loads a stale image.
inline std::string kernel_cache_path(const std::string& arch) {
    const std::string dir = kernel_cache_dir();
    if (dir.empty()) return {};
    int major = 0, minor = 0;
    ZEROCLIP_NVRTC_CHECK(nvrtcVersion(&major, &minor));
    std::string key = std::string(kernel_source()) + '\0' + arch + '\0' + kernel_options()[0] + kernel_options()[1] +
                      '\0' + std::to_string(major) + "." + std::to_string(minor);
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : key) h = (h ^ c) * 1099511628211ull;
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
    return dir + "/kernels-" + arch + "-" + hex + (arch.compare(0, 3, "sm_") == 0 ? ".cubin" : ".ptx");
}

/// compile_kernels_for(arch) through the on-disk cache: a cached image is read back (no NVRTC),
/// a fresh one is written for next time (atomically; any I/O failure just skips the cache).
/// `from_cache` tells which happened. Drop a bad cached image with forget_cached_kernels.
inline compiled_kernels cached_kernels_for(const std::string& arch, bool* from_cache = nullptr) {
    if (from_cache) *from_cache = false;
    const std::string path = kernel_cache_path(arch);
    if (!path.empty()) {
        std::ifstream in(path, std::ios::binary);
        std::string image((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        const bool is_cubin = arch.compare(0, 3, "sm_") == 0;
        // PTX must end with its NUL (the driver reads up to it); a cubin is checked by the driver.
        if (image.size() > 16 && (is_cubin || image.back() == '\0')) {
            compiled_kernels k;
            k.image = std::move(image);
            k.is_cubin = is_cubin;
            k.arch = arch;
            if (from_cache) *from_cache = true;
            return k;
        }
    }
    compiled_kernels k = compile_kernels_for(arch);
    if (!path.empty()) {
        namespace fs = std::filesystem;
        std::error_code ec;
        fs::create_directories(fs::path(path).parent_path(), ec);
        const std::string tmp = path + ".tmp" + std::to_string(std::random_device()());
        {
            std::ofstream out(tmp, std::ios::binary);
            out.write(k.image.data(), static_cast<std::streamsize>(k.image.size()));
        }
        fs::rename(tmp, path, ec);
        if (ec) fs::remove(tmp, ec);
    }
    return k;
}

/// Removes `arch`'s cached image (after the driver refused it).
inline void forget_cached_kernels(const std::string& arch) {
    const std::string path = kernel_cache_path(arch);
    std::error_code ec;
    if (!path.empty()) std::filesystem::remove(path, ec);
}

/// The --gpu-architecture for a device of compute capability major.minor: SASS ("sm_XY") when
/// this NVRTC knows the architecture, else PTX for the newest one it knows below it
/// ("compute_XY"), which the driver compiles for the device (forward compatibility).
inline std::string choose_arch(int major, int minor) {
    const int cc = major * 10 + minor;
    const std::vector<int> archs = nvrtc_supported_archs();
    if (std::find(archs.begin(), archs.end(), cc) != archs.end()) return "sm_" + std::to_string(cc);
    int best = 0;
    for (int a : archs)
        if (a <= cc) best = a;
    if (!best)
        ZEROCLIP_THROW(errc::cuda, "this NVRTC cannot compile for compute capability " + std::to_string(major) +
                                       "." + std::to_string(minor) + " (oldest supported: " +
                                       (archs.empty() ? std::string("none") : std::to_string(archs.front())) + ")");
    return "compute_" + std::to_string(best);
}

}  // namespace zeroclip::detail::cuda
