//! The one place embeddings become unit vectors and cosines: every embedding function, the
//! classifier, logits_per_image and the CLI go through these two, on the backend.
#pragma once

#include "../backend/backend.hpp"

namespace zeroclip::nn {

/// x (N, D) with each row scaled to unit L2 norm, on the backend (a row of zeros has no direction:
/// it becomes NaN; callers that rank rows refuse it first).
template <class Backend>
typename Backend::tensor unit_rows(const Backend& be, const typename Backend::tensor& x) {
    return be.l2_normalize_rows(x);
}

/// cos(a_i, b_j) as an (N, M) matrix, on the backend, of unit rows a (N, D) and b (M, D).
template <class Backend>
typename Backend::tensor cosines(const Backend& be, const typename Backend::tensor& a_unit,
                                 const typename Backend::tensor& b_unit) {
    return be.linear(a_unit, b_unit, typename Backend::tensor{});
}

}  // namespace zeroclip::nn
