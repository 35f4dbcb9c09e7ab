// cuda_cublas against cpu_backend, op by op, on random inputs (seed printed with any failure), with
// a bound per op: data movement and exact arithmetic must match bit for bit, FP32 GEMMs and
// reductions within 1e-5 relative. Sizes are deliberately odd (not multiples of 32) and cover the
// real CLIP shapes (77-token causal text, 50-token ViT-B/32, the ResNet attention pool).
// Without a GPU every case that needs one says so and passes; the NVRTC compile of the kernel
// source runs everywhere.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "cuda_test_util.hpp"

using namespace zeroclip;
using cuda_test::gpu;

namespace {

const cpu_backend cpu;

/// Random values from the printed seed; `salt` makes each input of a case different.
tensor rand_t(shape_t shape, uint64_t salt, float mean = 0.0f, float std_ = 1.0f) {
    test_util::rng r(cuda_test::seed() * 1000003u + salt);
    return test_util::random_tensor(r, std::move(shape), mean, std_);
}

tensor down(const cuda_tensor& t) { return gpu().download(t); }
cuda_tensor up(const tensor& t) { return gpu().upload(t); }

void check_equal(const tensor& a, const tensor& b) {
    REQUIRE(a.shape() == b.shape());
    int64_t mismatches = 0;
    for (int64_t i = 0; i < a.numel(); ++i) mismatches += a[i] != b[i];
    CHECK_MESSAGE(mismatches == 0, mismatches << " of " << a.numel() << " values differ");
}

}  // namespace

TEST_SUITE("cuda") {

TEST_CASE("NVRTC compiles the kernel source for every supported architecture (no GPU needed)") {
    using namespace zeroclip::detail::cuda;
    const auto archs = nvrtc_supported_archs();
    REQUIRE(!archs.empty());
    for (const std::string arch : {"compute_75", "compute_80", "compute_90", "sm_80", "sm_90"}) {
        CAPTURE(arch);
        compiled_kernels k;
        REQUIRE_NOTHROW(k = compile_kernels_for(arch));
        CHECK(k.is_cubin == (arch.compare(0, 3, "sm_") == 0));
        CHECK(k.image.size() > 1000);
        CHECK_MESSAGE(k.log.empty(), "NVRTC warnings: " << k.log);
        if (!k.is_cubin)  // every kernel of the list is defined (the PTX names its entry points)
            for (int i = 0; i < static_cast<int>(kernel_id::count); ++i) {
                const std::string entry = std::string(".entry ") + kernel_symbol(static_cast<kernel_id>(i)) + "(";
                CHECK_MESSAGE(k.image.find(entry) != std::string::npos, "no kernel " << entry);
            }
    }
    CHECK(choose_arch(9, 0) == "sm_90");
    CHECK(choose_arch(8, 0) == "sm_80");
    // A device newer than this NVRTC gets PTX of the newest architecture it knows.
    CHECK(choose_arch(99, 9) == "compute_" + std::to_string(archs.back()));
    try {
        choose_arch(1, 0);
        FAIL("compute capability 1.0 accepted");
    } catch (const zeroclip::error& e) {
        CHECK(e.code() == errc::cuda);
    }
}

TEST_CASE("compiled kernels are cached on disk, keyed by source and architecture (no GPU needed)") {
    using namespace zeroclip::detail::cuda;
    const char* saved = std::getenv("ZEROCLIP_CUDA_CACHE_DIR");
    const std::string previous = saved ? saved : "";
    const std::string dir = test_util::temp_dir("kernel_cache") + "/sub/dir";  // created on demand
    ::setenv("ZEROCLIP_CUDA_CACHE_DIR", dir.c_str(), 1);
    bool hit = true;
    const compiled_kernels first = cached_kernels_for("compute_80", &hit);
    CHECK(!hit);
    REQUIRE(std::filesystem::exists(kernel_cache_path("compute_80")));
    const compiled_kernels second = cached_kernels_for("compute_80", &hit);
    CHECK(hit);
    CHECK(second.image == first.image);
    CHECK(!second.is_cubin);
    CHECK(kernel_cache_path("compute_80") != kernel_cache_path("compute_90"));
    CHECK(kernel_cache_path("sm_90").find(dir + "/kernels-sm_90-") == 0);
    {  // a damaged PTX file (no terminating NUL) is not used: compiled and rewritten instead
        std::ofstream bad(kernel_cache_path("compute_80"), std::ios::binary);
        bad << "not PTX, and no terminating NUL either";
    }
    CHECK(cached_kernels_for("compute_80", &hit).image == first.image);
    CHECK(!hit);
    forget_cached_kernels("compute_80");
    CHECK(!std::filesystem::exists(kernel_cache_path("compute_80")));
    ::setenv("ZEROCLIP_CUDA_CACHE_DIR", "off", 1);
    CHECK(kernel_cache_path("compute_80").empty());
    if (saved)
        ::setenv("ZEROCLIP_CUDA_CACHE_DIR", previous.c_str(), 1);
    else
        ::unsetenv("ZEROCLIP_CUDA_CACHE_DIR");
}

TEST_CASE("cuda_cublas without a usable device throws errc::cuda saying why; a bad ordinal too") {
    if (!cuda_test::no_gpu_reason().empty()) {
        try {
            cuda_cublas be;
            FAIL("constructed a CUDA backend without a device");
        } catch (const zeroclip::error& e) {
            CHECK(e.code() == errc::cuda);
            CHECK(std::string(e.what()).find("no usable CUDA device") != std::string::npos);
            MESSAGE("no GPU here; the constructor says: " << std::string(e.what()));
        }
        CHECK(cuda_cublas::device_count() == 0);
        return;
    }
    cuda_options o;
    o.device = cuda_cublas::device_count() + 3;
    try {
        cuda_cublas be(o);
        FAIL("constructed a CUDA backend on a device that does not exist");
    } catch (const zeroclip::error& e) {
        CHECK(e.code() == errc::cuda);
        CHECK(std::string(e.what()).find("device(s) are visible") != std::string::npos);
    }
    CHECK(parse_cuda_math("tf32") == cuda_math::tf32);
    CHECK_THROWS_AS(parse_cuda_math("fp8"), zeroclip::error);
}

TEST_CASE("upload/download round trip, views, reshapes and cheap shared copies") {
    CUDA_TEST_REQUIRE_GPU();
    MESSAGE("device: " << gpu().device_name() << ", kernels " << gpu().kernel_arch());
    const tensor x = rand_t({5, 7, 3}, 1);
    cuda_tensor d = up(x);
    CHECK(d.shape() == x.shape());
    check_equal(down(d), x);
    check_equal(down(gpu().slice_rows(d.reshaped({35, 3}), 4, 9)), cpu.slice_rows(x.reshaped({35, 3}), 4, 9));
    cuda_tensor copy = d;  // shares the buffer: an in-place op shows through both
    gpu().scale_(copy, 2.0f);
    CHECK(down(d)[0] == 2.0f * x[0]);
    CHECK(up(tensor{}).empty());
    CHECK(down(cuda_tensor{}).empty());
    const tensor none({0, 4});
    CHECK(down(up(none)).shape() == shape_t{0, 4});
    // A tensor outlives everything else: it keeps its context (stream, pool) alive.
    cuda_tensor survivor;
    {
        cuda_cublas other;
        survivor = other.upload(x);
        CHECK_THROWS_WITH_AS(gpu().add_(d, survivor), doctest::Contains("another cuda_cublas"), zeroclip::error);
    }
    survivor = cuda_tensor{};
}

TEST_CASE("linear and matmul (cublasSgemm) match cpu_backend within 1e-5") {
    CUDA_TEST_REQUIRE_GPU();
    for (const auto& mkn : {std::array<int64_t, 3>{37, 70, 51}, {1, 768, 512}, {150, 768, 2304}, {64, 3072, 768}}) {
        const int64_t m = mkn[0], k = mkn[1], n = mkn[2];
        CAPTURE(m); CAPTURE(k); CAPTURE(n);
        const tensor x = rand_t({m, k}, 2), w = rand_t({n, k}, 3, 0, 0.05f), b = rand_t({n}, 4);
        CUDA_TEST_CLOSE(down(gpu().linear(up(x), up(w), up(b))), cpu.linear(x, w, b), 1e-5);
        CUDA_TEST_CLOSE(down(gpu().linear(up(x), up(w), cuda_tensor{})), cpu.linear(x, w, tensor{}), 1e-5);
        const tensor p = rand_t({k, n}, 5, 0, 0.05f);
        CUDA_TEST_CLOSE(down(gpu().matmul(up(x), up(p))), cpu.matmul(x, p), 1e-5);
    }
    // Leading dimensions flatten: x (2, 3, K).
    const tensor x3 = rand_t({2, 3, 16}, 6), w = rand_t({5, 16}, 7);
    CUDA_TEST_CLOSE(down(gpu().linear(up(x3), up(w), cuda_tensor{})), cpu.linear(x3, w, tensor{}), 1e-5);
}

TEST_CASE("layer_norm, activations, l2_normalize_rows and softmax_rows match cpu_backend") {
    CUDA_TEST_REQUIRE_GPU();
    for (int64_t n : {1, 50, 64, 512, 768, 1031}) {
        CAPTURE(n);
        // An offset mean checks the two-pass variance.
        const tensor x = rand_t({19, n}, 10, 3.0f, 2.0f), w = rand_t({n}, 11, 1.0f, 0.1f), b = rand_t({n}, 12);
        CUDA_TEST_CLOSE(down(gpu().layer_norm(up(x), up(w), up(b), 1e-5)), cpu.layer_norm(x, w, b, 1e-5), 1e-5);
        CUDA_TEST_CLOSE(down(gpu().l2_normalize_rows(up(x))), cpu.l2_normalize_rows(x), 1e-6);
        const tensor logits = rand_t({23, n}, 13, 0.0f, 4.0f);
        // 1e-5: over wide rows the CPU's sequential float sum and the GPU's tree sum differ by ~1e-6.
        CUDA_TEST_CLOSE(down(gpu().softmax_rows(up(logits))), cpu.softmax_rows(logits), 1e-5);
    }
    tensor zero_row({2, 8});
    zero_row[8] = 3.0f;  // row 0 all zeros: returned unchanged, as Eigen's normalized()
    CUDA_TEST_CLOSE(down(gpu().l2_normalize_rows(up(zero_row))), cpu.l2_normalize_rows(zero_row), 0.0);
    for (activation act : {activation::quick_gelu, activation::gelu}) {
        tensor h = rand_t({33, 97}, 14, 0.0f, 3.0f);
        cuda_tensor d = up(h);
        gpu().activate_(d, act);
        cpu.activate_(h, act);
        CUDA_TEST_CLOSE(down(d), h, 1e-6);
    }
}

TEST_CASE("relu_, add_, add_broadcast_ and scale_ are bit-exact") {
    CUDA_TEST_REQUIRE_GPU();
    tensor x = rand_t({6, 50, 17}, 20), y = rand_t({6, 50, 17}, 21), pos = rand_t({50, 17}, 22);
    x[0] = -0.0f;
    cuda_tensor d = up(x);
    gpu().relu_(d), cpu.relu_(x);
    check_equal(down(d), x);
    gpu().add_(d, up(y)), cpu.add_(x, y);
    check_equal(down(d), x);
    gpu().add_broadcast_(d, up(pos)), cpu.add_broadcast_(x, pos);
    check_equal(down(d), x);
    gpu().scale_(d, 0.37f), cpu.scale_(x, 0.37f);
    check_equal(down(d), x);
}

TEST_CASE("gather_rows, slice_rows, patchify and prepend_row are bit-exact") {
    CUDA_TEST_REQUIRE_GPU();
    const tensor table = rand_t({1000, 48}, 30);
    const std::vector<int64_t> idx = {0, 999, 5, 5, 17, 3, 998};
    check_equal(down(gpu().gather_rows(up(table), idx)), cpu.gather_rows(table, idx));
    check_equal(down(gpu().gather_rows(up(table), {})), cpu.gather_rows(table, {}));
    check_equal(down(gpu().slice_rows(up(table), 10, 20)), cpu.slice_rows(table, 10, 20));
    CHECK_THROWS_WITH_AS(gpu().gather_rows(up(table), {1000}), doctest::Contains("outside"), zeroclip::error);
    CHECK_THROWS_AS(gpu().gather_rows(up(table), {-1}), zeroclip::error);
    for (const auto& nsp : {std::array<int64_t, 3>{2, 64, 16}, {3, 30, 14}, {1, 224, 32}}) {
        const int64_t n = nsp[0], size = nsp[1], p = nsp[2];
        CAPTURE(size); CAPTURE(p);
        const tensor img = rand_t({n, 3, size, size}, 31);
        check_equal(down(gpu().patchify(up(img), p)), cpu.patchify(img, p));
    }
    const tensor x = rand_t({3 * 49, 40}, 32), cls = rand_t({40}, 33);
    check_equal(down(gpu().prepend_row(up(x), up(cls), 3)), cpu.prepend_row(x, cls, 3));
}

TEST_CASE("self_attention (strided-batched GEMMs, causal mask) matches cpu_backend within 1e-5") {
    CUDA_TEST_REQUIRE_GPU();
    struct shape {
        int64_t batch, tokens, width, heads;
    };
    for (auto s : {shape{3, 7, 128, 2}, shape{2, 77, 512, 8}, shape{4, 50, 768, 12}, shape{1, 1, 64, 1},
                   shape{5, 13, 96, 3}}) {
        for (bool causal : {false, true}) {
            CAPTURE(s.batch); CAPTURE(s.tokens); CAPTURE(s.width); CAPTURE(s.heads); CAPTURE(causal);
            const tensor qkv = rand_t({s.batch * s.tokens, 3 * s.width}, 40, 0.0f, 1.5f);
            CUDA_TEST_CLOSE(down(gpu().self_attention(up(qkv), s.batch, s.heads, causal)),
                            cpu.self_attention(qkv, s.batch, s.heads, causal), 1e-5);
        }
    }
}

TEST_CASE("attention with separate q, k, v (the ResNet attention pool) matches cpu_backend within 1e-5") {
    CUDA_TEST_REQUIRE_GPU();
    for (const auto& s : {std::array<int64_t, 5>{3, 1, 50, 256, 4}, {2, 5, 9, 64, 2}, {4, 1, 5, 2048, 32}}) {
        const int64_t batch = s[0], tq = s[1], tk = s[2], width = s[3], heads = s[4];
        CAPTURE(batch); CAPTURE(tq); CAPTURE(tk); CAPTURE(width); CAPTURE(heads);
        const tensor q = rand_t({batch * tq, width}, 50), k = rand_t({batch * tk, width}, 51),
                     v = rand_t({batch * tk, width}, 52);
        CUDA_TEST_CLOSE(down(gpu().attention(up(q), up(k), up(v), batch, heads)), cpu.attention(q, k, v, batch, heads),
                        1e-5);
    }
}

TEST_CASE("conv2d (im2col + GEMM, folded batch-norm bias), avg_pool2d and spatial_tokens match cpu_backend") {
    CUDA_TEST_REQUIRE_GPU();
    struct conv {
        int64_t n, c, h, w, o, kh, kw, stride, pad;
    };
    for (auto s : {conv{2, 16, 9, 9, 24, 1, 1, 1, 0},   // 1×1: one batched GEMM on the image
                   conv{3, 3, 33, 33, 16, 3, 3, 2, 1},  // the stem's first convolution
                   conv{2, 8, 14, 14, 12, 3, 3, 1, 1},
                   conv{1, 5, 11, 13, 7, 3, 5, 2, 2},   // non-square kernel, odd sizes
                   conv{2, 4, 8, 8, 6, 1, 1, 2, 0},     // strided 1×1 goes through im2col
                   conv{20, 64, 56, 56, 64, 3, 3, 1, 1}}) {  // more than one im2col chunk
        CAPTURE(s.n); CAPTURE(s.c); CAPTURE(s.h); CAPTURE(s.kh); CAPTURE(s.kw); CAPTURE(s.stride); CAPTURE(s.pad);
        const tensor x = rand_t({s.n, s.c, s.h, s.w}, 60);
        const tensor w = rand_t({s.o, s.c, s.kh, s.kw}, 61, 0.0f, 0.2f), b = rand_t({s.o}, 62);
        CUDA_TEST_CLOSE(down(gpu().conv2d(up(x), up(w), up(b), s.stride, s.pad)), cpu.conv2d(x, w, b, s.stride, s.pad),
                        1e-5);
        CUDA_TEST_CLOSE(down(gpu().conv2d(up(x), up(w), cuda_tensor{}, s.stride, s.pad)),
                        cpu.conv2d(x, w, tensor{}, s.stride, s.pad), 1e-5);
    }
    const tensor maps = rand_t({2, 6, 7, 9}, 63);  // 7 and 9: the trailing row/column is dropped
    for (int64_t k : {1, 2, 3}) check_equal(down(gpu().avg_pool2d(up(maps), k)), cpu.avg_pool2d(maps, k));
    const tensor feat = rand_t({3, 40, 7, 7}, 64);
    CUDA_TEST_CLOSE(down(gpu().spatial_tokens(up(feat))), cpu.spatial_tokens(feat), 1e-7);
}

TEST_CASE("fused ops (linear_activate, linear_add_, conv2d_relu, conv2d_add_relu) match cpu_backend within 1e-5") {
    CUDA_TEST_REQUIRE_GPU();
    const tensor x = rand_t({37, 70}, 90), w = rand_t({51, 70}, 91, 0.0f, 0.2f), b = rand_t({51}, 92);
    for (activation act : {activation::quick_gelu, activation::gelu}) {
        CUDA_TEST_CLOSE(down(gpu().linear_activate(up(x), up(w), up(b), act)), cpu.linear_activate(x, w, b, act), 1e-5);
        CUDA_TEST_CLOSE(down(gpu().linear_activate(up(x), up(w), cuda_tensor{}, act)),
                        cpu.linear_activate(x, w, tensor{}, act), 1e-5);
    }
    for (bool bias : {true, false}) {
        CAPTURE(bias);
        tensor y = rand_t({37, 51}, 93);
        cuda_tensor dy = up(y);
        gpu().linear_add_(dy, up(x), up(w), bias ? up(b) : cuda_tensor{});
        cpu.linear_add_(y, x, w, bias ? b : tensor{});
        CUDA_TEST_CLOSE(down(dy), y, 1e-5);
    }
    struct conv {
        int64_t n, c, h, o, k, stride, pad;
    };
    for (auto s : {conv{2, 16, 9, 24, 1, 1, 0}, conv{3, 8, 14, 12, 3, 1, 1}, conv{2, 3, 17, 8, 3, 2, 1}}) {
        CAPTURE(s.c); CAPTURE(s.k); CAPTURE(s.stride);
        const tensor img = rand_t({s.n, s.c, s.h, s.h}, 94), cw = rand_t({s.o, s.c, s.k, s.k}, 95, 0.0f, 0.3f);
        const tensor cb = rand_t({s.o}, 96);
        const tensor plain = cpu.conv2d(img, cw, cb, s.stride, s.pad);
        const tensor residual = rand_t(plain.shape(), 97);
        CUDA_TEST_CLOSE(down(gpu().conv2d_relu(up(img), up(cw), up(cb), s.stride, s.pad)),
                        cpu.conv2d_relu(img, cw, cb, s.stride, s.pad), 1e-5);
        CUDA_TEST_CLOSE(down(gpu().conv2d_add_relu(up(img), up(cw), up(cb), s.stride, s.pad, up(residual))),
                        cpu.conv2d_add_relu(img, cw, cb, s.stride, s.pad, residual), 1e-5);
    }
}

TEST_CASE("TF32, FP16 and BF16 GEMMs stay close to FP32 (cuda_options::math)") {
    CUDA_TEST_REQUIRE_GPU();
    const tensor x = rand_t({64, 768}, 70), w = rand_t({512, 768}, 71, 0.0f, 0.036f), b = rand_t({512}, 72);
    const tensor qkv = rand_t({2 * 50, 3 * 768}, 73);
    const tensor ref = cpu.linear(x, w, b), ref_attn = cpu.self_attention(qkv, 2, 12, false);
    for (const auto& mode : {std::pair<cuda_math, double>{cuda_math::tf32, 5e-3}, {cuda_math::fp16, 5e-3},
                             {cuda_math::bf16, 3e-2}}) {
        const cuda_math math = mode.first;
        const double bound = mode.second;
        const std::string mode_name = cuda_math_name(math);
        CAPTURE(mode_name);
        const cuda_cublas& be = gpu(math);
        CHECK(be.options().math == math);
        const tensor y = be.download(be.linear(be.upload(x), be.upload(w), be.upload(b)));
        const double err = cuda_test::relative_error(y, ref);
        CHECK(err <= bound);
        CHECK(err > 0);  // the mode really changes the arithmetic
        CUDA_TEST_CLOSE(be.download(be.self_attention(be.upload(qkv), 2, 12, false)), ref_attn, bound);
        MESSAGE(mode_name << " linear: relative error " << err);
    }
}

TEST_CASE("ops from several threads on one backend give the single-thread results") {
    CUDA_TEST_REQUIRE_GPU();
    const tensor x = rand_t({100, 256}, 80), w = rand_t({256, 256}, 81, 0.0f, 0.06f), b = rand_t({256}, 82);
    const cuda_tensor dw = up(w), db = up(b);
    const tensor expected = down(gpu().linear(up(x), dw, db));
    std::vector<tensor> results(4);
    std::vector<std::thread> threads;
    for (size_t t = 0; t < results.size(); ++t)
        threads.emplace_back([&, t] {
            cuda_tensor y = gpu().linear(gpu().upload(x), dw, db);
            for (int i = 0; i < 20; ++i) gpu().activate_(y, activation::quick_gelu), gpu().scale_(y, 1.0f);
            results[t] = gpu().download(gpu().linear(gpu().upload(x), dw, db));
        });
    for (auto& th : threads) th.join();
    for (const auto& r : results) check_equal(r, expected);
}

}  // TEST_SUITE("cuda")
