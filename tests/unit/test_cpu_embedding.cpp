// The CPU backend's compact embedding tables (backend/cpu/compact_table.hpp): a table whose values
// F16 or BF16 hold exactly gives back the very floats through gather_rows from 16 bits a value;
// any other table stays float32 in fp32 precision and is rounded to bf16 (nearest even) in the
// reduced precisions. The references are detail/io/half.hpp's conversions, tested bit for bit
// on every 16-bit pattern in test_cpu_backend.cpp. (The fixture models are F16, so their text
// embeddings, checked against the official code in test_models.cpp, come through a 16-bit table.)
#include <zeroclip/zeroclip.hpp>

#include <cstring>
#include <random>

#include "../test_util.hpp"

using namespace zeroclip;
namespace cpu = zeroclip::detail::cpu;

namespace {

uint32_t bits(float f) {
    uint32_t b;
    std::memcpy(&b, &f, sizeof b);
    return b;
}

/// A (rows, cols) table of random values that `to16` / `from16` round trips exactly, or (with
/// both null) plain float32 normals.
tensor random_table(int64_t rows, int64_t cols, std::mt19937& rng, uint16_t (*to16)(float), float (*from16)(uint16_t)) {
    tensor t({rows, cols});
    std::normal_distribution<float> d(0.0f, 0.05f);
    for (auto& v : t) v = to16 ? from16(to16(d(rng))) : d(rng);
    return t;
}

/// gather_rows through `be` on the prepared table against `expected(value)` of the original rows.
template <class Expected>
void check_gather(const cpu_backend& be, const tensor& table, const tensor& prepared, std::mt19937& rng,
                  Expected&& expected) {
    std::uniform_int_distribution<int64_t> row(0, table.dim(0) - 1);
    std::vector<int64_t> index = {0, table.dim(0) - 1};
    for (int i = 0; i < 40; ++i) index.push_back(row(rng));
    const tensor y = be.gather_rows(prepared, index);
    REQUIRE(y.dim(0) == static_cast<int64_t>(index.size()));
    REQUIRE(y.dim(1) == table.dim(1));
    int64_t mismatches = 0;
    for (size_t i = 0; i < index.size(); ++i)
        for (int64_t j = 0; j < table.dim(1); ++j)
            mismatches += bits(y[static_cast<int64_t>(i) * table.dim(1) + j]) !=
                          bits(expected(table[index[i] * table.dim(1) + j]));
    CHECK(mismatches == 0);
}

}  // namespace

TEST_CASE("cpu embedding: F16- and BF16-exact tables are gathered to the same floats from 16 bits a value") {
    std::mt19937 rng(11);
    const cpu_backend be;
    for (const int64_t cols : {64, 13, 8, 1}) {  // the vector path and its tails
        CAPTURE(cols);
        const tensor f16 = random_table(300, cols, rng, detail::f32_to_f16, detail::f16_to_f32);
        const tensor p16 = be.prepare_embedding(f16);
        const auto* table = cpu::compact_table::containing(p16.data());
        REQUIRE(table != nullptr);
        // F16 storage needs F16C (every AVX2 CPU); elsewhere F16 values that BF16 cannot hold stay float32.
        CHECK(table->stored_as() == (cpu::cpu_has(cpu::isa::avx2) ? cpu::compact_table::format::f16
                                                                   : cpu::compact_table::format::bf16));
        CHECK(p16.shape() == f16.shape());
        check_gather(be, f16, p16, rng, [](float v) { return v; });

        const tensor b16 = random_table(300, cols, rng, detail::f32_to_bf16, detail::bf16_to_f32);
        const tensor pb = be.prepare_embedding(b16);
        REQUIRE(cpu::compact_table::containing(pb.data()) != nullptr);
        check_gather(be, b16, pb, rng, [](float v) { return v; });
    }
}

TEST_CASE("cpu embedding: other tables stay float32 in fp32 precision and are rounded to bf16 in int8/bf16") {
    std::mt19937 rng(12);
    const tensor t = random_table(200, 37, rng, nullptr, nullptr);
    const cpu_backend fp32;
    const tensor kept = fp32.prepare_embedding(t);
    CHECK(kept.data() == t.data());
    CHECK(cpu::compact_table::containing(kept.data()) == nullptr);
    check_gather(fp32, t, kept, rng, [](float v) { return v; });
    for (const precision p : {precision::int8, precision::bf16}) {
        CAPTURE(precision_name(p));
        const cpu_backend be{cpu_options{p}};
        const tensor rounded = be.prepare_embedding(t);
        REQUIRE(cpu::compact_table::containing(rounded.data()) != nullptr);
        check_gather(be, t, rounded, rng, [](float v) { return detail::bf16_to_f32(detail::f32_to_bf16(v)); });
    }
}
