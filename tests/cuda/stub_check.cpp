// The CUDA stub (backend/cuda/stub.hpp), compiled without ZEROCLIP_WITH_CUDA: zeroclip.hpp
// provides zeroclip::cuda_cublas everywhere, it satisfies the backend contract, the whole model
// compiles with it, and constructing it throws errc::no_cuda with the configure hint.
#include <zeroclip/zeroclip.hpp>

#include <doctest/doctest.h>

#ifdef ZEROCLIP_WITH_CUDA
#error "stub_check.cpp must be compiled without ZEROCLIP_WITH_CUDA"
#endif

using namespace zeroclip;

static_assert(is_backend_v<cuda_cublas>, "the stub must implement the backend contract");
// Instantiating the whole model with the stub is what `--device cuda` in a CPU build needs.
template class zeroclip::models::clip_model<zeroclip::cuda_cublas>;

TEST_CASE("without CUDA, cuda_cublas throws errc::no_cuda and reports no device") {
    CHECK(cuda_cublas::device_count() == 0);
    CHECK(!cuda_cublas::unavailable_reason().empty());
    for (int i = 0; i < 3; ++i) {
        try {
            if (i == 0) cuda_cublas be;
            if (i == 1) cuda_cublas be(cuda_options{});
            if (i == 2) load_model<cuda_cublas>("/nonexistent-is-not-even-opened");
            FAIL("no exception");
        } catch (const zeroclip::error& e) {
            if (i == 2 && e.code() == errc::io) continue;  // the checkpoint opens before the backend is built
            CHECK(e.code() == errc::no_cuda);
            CHECK(std::string(e.what()) ==
                  "[zeroclip.no_cuda] zeroclip was built without CUDA; configure with -DZEROCLIP_USE_CUDA=ON");
        }
    }
    CHECK(parse_cuda_math("bf16") == cuda_math::bf16);
}
