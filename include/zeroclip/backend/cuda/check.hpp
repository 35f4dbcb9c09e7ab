//! Error checks for the CUDA backend: every CUDA runtime, driver, cuBLAS and NVRTC call goes
//! through one of the ZEROCLIP_*_CHECK macros, which throw zeroclip::error (errc::cuda) with the
//! call's text, the library's status name and string, and file:line (dlib CHECK_CUDA, tcnn
//! CUDA_CHECK_THROW). Destructors use ZEROCLIP_CUDA_CHECK_PRINT, which only prints (tcnn
//! CUDA_CHECK_PRINT). Also: the few driver-API entry points the backend needs, fetched through
//! cudart at run time so that nothing links libcuda (a CUDA build still starts without a driver).
//! Only backend/cuda_*.hpp may include this header (it includes CUDA headers).
#pragma once

#include <cublas_v2.h>
#include <cuda.h>
#include <cuda_runtime_api.h>
#include <nvrtc.h>

#include <cstdio>
#include <mutex>
#include <string>

#include "../../error.hpp"

#if !defined(CUDART_VERSION) || CUDART_VERSION < 12000
#error "zeroclip's CUDA backend needs the CUDA toolkit 12.0 or newer"
#endif

namespace zeroclip::detail::cuda {

inline std::string where(const char* file, int line) {
    const char* base = file;
    for (const char* p = file; *p; ++p)
        if (*p == '/' || *p == '\\') base = p + 1;
    return std::string(base) + ":" + std::to_string(line);
}

[[noreturn]] inline void fail(const std::string& library, const char* call, const std::string& status,
                              const char* file, int line) {
    ZEROCLIP_THROW(errc::cuda, library + " call " + call + " failed: " + status + " at " + where(file, line));
}

inline std::string runtime_status(cudaError_t e) {
    return std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")";
}

inline void check_runtime(cudaError_t e, const char* call, const char* file, int line) {
    if (e == cudaSuccess) return;
    (void)cudaGetLastError();  // clear the sticky-free error so later calls are not blamed for it
    fail("CUDA runtime", call, runtime_status(e), file, line);
}

inline const char* cublas_status_name(cublasStatus_t s) {
    switch (s) {
        case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
        case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
        case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
        case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
        case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
        case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
        case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
        case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
        case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
        case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
        default: return "CUBLAS_STATUS_?";
    }
}

inline void check_cublas(cublasStatus_t s, const char* call, const char* file, int line) {
    if (s == CUBLAS_STATUS_SUCCESS) return;
    fail("cuBLAS", call, std::string(cublas_status_name(s)) + " (" + cublasGetStatusString(s) + ")", file, line);
}

/// `log` is the compiler's output (for nvrtcCompileProgram), appended to the message.
inline void check_nvrtc(nvrtcResult r, const char* call, const char* file, int line, const std::string& log = {}) {
    if (r == NVRTC_SUCCESS) return;
    fail("NVRTC", call, std::string(nvrtcGetErrorString(r)) + (log.empty() ? "" : "\n" + log), file, line);
}

// ---- driver API, resolved through cudart ------------------------------------------------------
// Linking CUDA::cuda_driver would make every binary of a CUDA build need libcuda.so.1 just to
// start, even for --device cpu on a machine without a GPU driver. cudart loads the driver lazily
// and reports "no driver" as an ordinary error, so the driver entry points are fetched from it.
struct driver_api {
    using load_data_t = CUresult(CUDAAPI*)(CUmodule*, const void*);
    using get_function_t = CUresult(CUDAAPI*)(CUfunction*, CUmodule, const char*);
    using launch_t = CUresult(CUDAAPI*)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                                        unsigned, CUstream, void**, void**);
    using error_string_t = CUresult(CUDAAPI*)(CUresult, const char**);

    load_data_t module_load_data = nullptr;
    get_function_t module_get_function = nullptr;
    launch_t launch_kernel = nullptr;
    error_string_t get_error_name = nullptr;
    error_string_t get_error_string = nullptr;
};

inline void* driver_symbol(const char* symbol) {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
#if CUDART_VERSION >= 12050
    // 12000: the ABI of these symbols as of CUDA 12.0 (unchanged since CUDA 4 for all of them).
    cudaError_t e = cudaGetDriverEntryPointByVersion(symbol, &fn, 12000, cudaEnableDefault, &found);
#else
    cudaError_t e = cudaGetDriverEntryPoint(symbol, &fn, cudaEnableDefault, &found);
#endif
    if (e != cudaSuccess || found != cudaDriverEntryPointSuccess || !fn) {
        (void)cudaGetLastError();
        ZEROCLIP_THROW(errc::cuda, std::string("cannot resolve the CUDA driver function ") + symbol + ": " +
                                       (e != cudaSuccess ? runtime_status(e) : "symbol not found"));
    }
    return fn;
}

/// The driver entry points (resolved once; needs an initialised runtime, i.e. a device).
inline const driver_api& driver() {
    static std::once_flag once;
    static driver_api api;
    std::call_once(once, [] {
        driver_api a;
        a.module_load_data = reinterpret_cast<driver_api::load_data_t>(driver_symbol("cuModuleLoadData"));
        a.module_get_function = reinterpret_cast<driver_api::get_function_t>(driver_symbol("cuModuleGetFunction"));
        a.launch_kernel = reinterpret_cast<driver_api::launch_t>(driver_symbol("cuLaunchKernel"));
        a.get_error_name = reinterpret_cast<driver_api::error_string_t>(driver_symbol("cuGetErrorName"));
        a.get_error_string = reinterpret_cast<driver_api::error_string_t>(driver_symbol("cuGetErrorString"));
        api = a;
    });
    return api;
}

inline void check_driver(CUresult r, const char* call, const char* file, int line) {
    if (r == CUDA_SUCCESS) return;
    const char* name = nullptr;
    const char* text = nullptr;
    const driver_api& d = driver();
    if (d.get_error_name) d.get_error_name(r, &name);
    if (d.get_error_string) d.get_error_string(r, &text);
    fail("CUDA driver", call,
         std::string(name ? name : "CUDA_ERROR_" + std::to_string(static_cast<int>(r))) + " (" +
             (text ? text : "unknown") + ")",
         file, line);
}

/// For destructors: report, never throw. Errors from a runtime that is already shutting down
/// (static objects destroyed at exit) are expected and not reported.
inline void print_runtime_error(cudaError_t e, const char* call, const char* file, int line) noexcept {
    if (e == cudaSuccess || e == cudaErrorCudartUnloading) return;
    std::fprintf(stderr, "[zeroclip.cuda] %s failed in a destructor: %s (%s) at %s\n", call, cudaGetErrorName(e),
                 cudaGetErrorString(e), where(file, line).c_str());
}

}  // namespace zeroclip::detail::cuda

/// Throws zeroclip::error(errc::cuda) naming the call, the status and file:line.
#define ZEROCLIP_CUDA_CHECK(call) ::zeroclip::detail::cuda::check_runtime((call), #call, __FILE__, __LINE__)
#define ZEROCLIP_CUBLAS_CHECK(call) ::zeroclip::detail::cuda::check_cublas((call), #call, __FILE__, __LINE__)
#define ZEROCLIP_NVRTC_CHECK(call) ::zeroclip::detail::cuda::check_nvrtc((call), #call, __FILE__, __LINE__)
#define ZEROCLIP_CU_CHECK(call) ::zeroclip::detail::cuda::check_driver((call), #call, __FILE__, __LINE__)
/// Prints instead of throwing: for destructors and other noexcept paths.
#define ZEROCLIP_CUDA_CHECK_PRINT(call) \
    ::zeroclip::detail::cuda::print_runtime_error((call), #call, __FILE__, __LINE__)
