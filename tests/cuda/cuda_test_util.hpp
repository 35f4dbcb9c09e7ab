// Helpers of the CUDA tests: the "skip without a GPU" guard, the printed random seed, and
// comparisons of a GPU result with cpu_backend's.
#pragma once

#include <zeroclip/backend/cuda/cuda_backend.hpp>
#include <zeroclip/zeroclip.hpp>

#include <cstdlib>
#include <string>

#include "../test_util.hpp"
#include "../random_model.hpp"

namespace cuda_test {

/// "" when a CUDA device can be used, else why not (checked once).
inline const std::string& no_gpu_reason() {
    static const std::string reason =
        zeroclip::cuda_cublas::device_count() > 0 ? std::string() : zeroclip::cuda_cublas::unavailable_reason();
    return reason;
}

/// The seed of every random input: ZEROCLIP_TEST_SEED or a fixed default; printed with failures.
inline uint64_t seed() {
    static const uint64_t s = [] {
        const char* env = std::getenv("ZEROCLIP_TEST_SEED");
        return env ? std::strtoull(env, nullptr, 10) : uint64_t{20240917};
    }();
    return s;
}

/// One backend per math mode, shared by the test cases of the process (NVRTC compiles once).
inline const zeroclip::cuda_cublas& gpu(zeroclip::cuda_math math = zeroclip::cuda_math::fp32) {
    // Never destroyed: freeing CUDA resources from static destructors races the runtime's own
    // shutdown at exit.
    static auto* backends = new std::map<zeroclip::cuda_math, zeroclip::cuda_cublas>();
    auto it = backends->find(math);
    if (it == backends->end()) {
        zeroclip::cuda_options o;
        o.math = math;
        it = backends->emplace(math, zeroclip::cuda_cublas(o)).first;
    }
    return it->second;
}

/// max |a − b| / max |b| (b the CPU reference; absolute when b is all zeros); +infinity when
/// either side holds a NaN or an infinity, so that no bound is met.
inline double relative_error(const zeroclip::tensor& a, const zeroclip::tensor& b) {
    REQUIRE(a.shape() == b.shape());
    if (!test_util::all_finite(a) || !test_util::all_finite(b)) return HUGE_VAL;
    const double scale = test_util::max_abs(b);
    return test_util::max_abs_diff(a, b) / (scale > 0 ? scale : 1.0);
}

}  // namespace cuda_test

/// At the start of every test case that needs a GPU: without one, say so and pass. The message
/// carries the skip mark, with "no CUDA device": scripts/test.sh counts these as the GPU skips,
/// the only ones allowed in CI. (Not wrapped in do/while: the INFO with the seed must live as
/// long as the test case.)
#define CUDA_TEST_REQUIRE_GPU()                                                                          \
    if (!cuda_test::no_gpu_reason().empty()) {                                                           \
        MESSAGE(ZEROCLIP_TEST_SKIP_MARK "no CUDA device (" << cuda_test::no_gpu_reason() << ")");        \
        return;                                                                                          \
    }                                                                                                    \
    INFO("random seed " << cuda_test::seed() << " (set ZEROCLIP_TEST_SEED to change it)")

/// GPU result vs CPU result within `bound` (relative to the CPU result's largest magnitude).
#define CUDA_TEST_CLOSE(gpu_result, cpu_result, bound)                                           \
    do {                                                                                         \
        const double err_ = cuda_test::relative_error((gpu_result), (cpu_result));               \
        CHECK_MESSAGE(err_ <= (bound), #gpu_result " vs " #cpu_result ": relative error " << err_ \
                                                                                        << " > " << (bound)); \
    } while (0)
