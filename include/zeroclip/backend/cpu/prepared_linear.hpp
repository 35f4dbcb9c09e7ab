//! Linear weights laid out once, at load, in the form the CPU backend's products read, in place
//! of their float32 (N, K) copy: packed float32 panels (precision::fp32, same numbers as the
//! unprepared product), bf16 panels or int8 panels with per-channel scales.
//!
//! A prepared weight is still a `tensor` of shape (N, K), so nn/ code holds and slices it as
//! before; its memory is a reserved range of N·K floats whose first bytes hold the packed form
//! (reserved_range.hpp), so an int8 weight costs a quarter of the float32 memory. cpu_backend
//! recognises a prepared weight, or a slice of rows of one (attention's q, k, v parts of
//! in_proj), by its address (find_prepared). Its values are opaque: only the backend's linear ops
//! may read it.
#pragma once

#include <algorithm>
#include <memory>
#include <vector>

#include "../../tensor.hpp"
#include "../precision.hpp"
#include "bf16_gemm.hpp"
#include "gemm.hpp"
#include "int8_gemm.hpp"
#include "reserved_range.hpp"

namespace zeroclip::detail::cpu {

/// One prepared weight (N, K) and the memory range it owns.
class prepared_linear {
public:
    prepared_linear(const float* w, int64_t n, int64_t k, precision p)
        : n_(n), k_(k), precision_(p), mem_(std::max(bytes_used(), static_cast<size_t>(n * k) * sizeof(float)), this) {
        if (p == precision::int8) int8_prepare(w, n, k, mem_.data(), int8_);
        else if (p == precision::bf16) bf16_prepare(w, n, k, mem_.data(), bf16_);
        else {
            fp32_.n = n, fp32_.k = k, fp32_.data = static_cast<float*>(mem_.data());
            prepack_bt(w, fp32_);
        }
    }
    prepared_linear(const prepared_linear&) = delete;
    prepared_linear& operator=(const prepared_linear&) = delete;

    int64_t rows() const { return n_; }
    int64_t cols() const { return k_; }
    precision prec() const { return precision_; }
    const float* base() const { return static_cast<const float*>(mem_.data()); }
    size_t range_bytes() const { return mem_.bytes(); }
    size_t bytes_used() const {
        return precision_ == precision::int8   ? int8_weights::bytes(n_, k_)
               : precision_ == precision::bf16 ? bf16_weights::bytes(n_, k_)
                                               : prepacked_bt_floats(n_, k_) * sizeof(float);
    }

    /// y (m, count) = act([y +] x·W[row0, row0 + count)ᵀ + bias) for x (m, k) rows ldx apart.
    void apply(const float* x, int64_t ldx, int64_t m, int64_t row0, int64_t count, float* y, const epilogue& ep) const {
        lowp_out o{y, count, row0, row0 + count, ep.bias, ep.accumulate, ep.activation};
        if (precision_ == precision::int8)
            return int8_linear(use_isa(isa::avx512_vnni) ? isa::avx512_vnni : use_isa(isa::avx2) ? isa::avx2 : isa::scalar,
                               x, ldx, m, int8_, o);
        if (precision_ == precision::bf16)
            return bf16_linear(use_isa(isa::avx512_bf16) ? isa::avx512_bf16 : use_isa(isa::avx2) ? isa::avx2 : isa::scalar,
                               x, ldx, m, bf16_, o);
        if (row0 % 16 == 0) return gemm_nt_prepacked(m, count, x, ldx, fp32_, row0, y, count, ep);
        // A slice not on a panel boundary (widths that are not multiples of 16): its rows unpacked.
        std::vector<float> rows(static_cast<size_t>(count * k_));
        for (int64_t r = 0; r < count; ++r) prepacked_bt_row(fp32_, row0 + r, rows.data() + r * k_);
        gemm_nt(m, count, k_, x, ldx, rows.data(), k_, y, count, ep);
    }

    const int8_weights& int8() const { return int8_; }
    const bf16_weights& bf16() const { return bf16_; }

    /// The prepared weight whose range holds `p`, or null (the caller keeps a tensor of it alive).
    static const prepared_linear* containing(const float* p) { return reserved_range<prepared_linear>::containing(p); }

private:
    int64_t n_, k_;
    precision precision_;
    reserved_range<prepared_linear> mem_;
    prepacked_bt fp32_;
    int8_weights int8_;
    bf16_weights bf16_;
};

/// Whether a weight of `p` can be prepared in this build (fp32 panels need the AVX2 kernel).
inline bool can_prepare(precision p) { return p != precision::fp32 || has_prepacked_gemm; }

/// w (N, K) prepared for precision `p`: a tensor of the same shape over the prepared memory.
inline tensor prepare_linear_weight(const tensor& w, precision p) {
    auto prepared = std::make_shared<const prepared_linear>(w.data(), w.dim(0), w.dim(1), p);
    const float* base = prepared->base();
    return tensor::view({w.dim(0), w.dim(1)}, std::move(prepared), base);
}

/// Where w (rows × k) lies in a prepared weight: the weight and the first row, or {null, 0}.
struct prepared_rows {
    const prepared_linear* weight = nullptr;
    int64_t row0 = 0;
};
inline prepared_rows find_prepared(const tensor& w) {
    if (w.ndim() != 2 || w.empty()) return {};
    const prepared_linear* pw = prepared_linear::containing(w.data());
    if (!pw || pw->cols() != w.dim(1)) return {};
    const auto offset = static_cast<int64_t>(w.data() - pw->base());
    if (offset % pw->cols() != 0 || offset / pw->cols() + w.dim(0) > pw->rows()) return {};
    return {pw, offset / pw->cols()};
}

}  // namespace zeroclip::detail::cpu
