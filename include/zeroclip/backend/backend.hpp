//! The backend contract: the only operations model code (nn/, models/) may call. A backend is a
//! class with a `tensor` type (host memory for cpu_backend, device memory for cuda_cublas) and the
//! const member functions below. Their signatures are written once, in ZEROCLIP_BACKEND_OPS;
//! from that list come `is_backend_v<B>`, the optional ops' `has_*_v<B>`, the per-op
//! static_asserts of ZEROCLIP_CHECK_BACKEND(B) (placed beside each backend), the CUDA stub's
//! members and the op table of docs/ARCHITECTURE.md (checked by scripts/check_layers.py).
//!
//!  memory      upload(host) -> tensor, download(tensor) -> host tensor
//!  products    linear(x, w, b)  y = x·wᵀ + b      matmul(x, w)  y = x·w
//!  row-wise    layer_norm(x, w, b, eps), activate_(x, act), add_(x, y), add_broadcast_(x, rows),
//!              scale_(x, s), l2_normalize_rows(x)
//!  gathers     gather_rows(table, index), slice_rows(x, begin, count), patchify(images, p),
//!              prepend_row(x, row, batch)
//!  attention   self_attention(qkv, batch, heads, causal), attention(q, k, v, batch, heads)
//!  images      conv2d(x, w, b, stride, pad), relu_(x), avg_pool2d(x, k), spatial_tokens(x)
//!              (NCHW; the ModifiedResNet image encoder)
//!  fused       (optional: nn/ calls them where a backend has them — has_*_v below — and the
//!              unfused ops otherwise, with the same result up to float rounding)
//!              linear_activate(x, w, b, act)  act(x·wᵀ + b)
//!              linear_add_(y, x, w, b)        y += x·wᵀ + b
//!              conv2d_relu(x, w, b, stride, pad)                relu(conv2d(...))
//!              conv2d_add_relu(x, w, b, stride, pad, residual)  relu(conv2d(...) + residual)
//!  preparation (optional, called once at load)
//!              prepare_conv2d(w, stride, pad) -> w'  a convolution's weight laid out for the
//!                                              backend's products (for that stride and pad), to
//!                                              hold in place of w
//!              prepare_linear(w) -> w'         a linear's weight in the form (and precision) the
//!                                              backend's products read, to hold in place of w
//!              prepare_embedding(t) -> t'      an embedding table in the form gather_rows reads
//!                                              (smaller where that loses nothing), in place of t
//!
//!  property    (optional) image_group() -> int64_t  how many images models/resnet.hpp runs
//!              through its convolutions at once (image_group_size below); the whole batch where
//!              a backend has none
//!
//! Shapes are row-major with the batch first; "rows" means all leading dimensions flattened.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "../tensor.hpp"
#include "activation.hpp"

// ZEROCLIP_BACKEND_OPS(OP, OPT, CTX): the contract, one line per op. OP(CTX, result, name,
// (parameter types)) for each op every backend has; OPT(CTX, trait, result, name, (parameter
// types)) for each optional op, which nn/ calls where `trait<B>` is true and replaces by unfused
// ops otherwise. In the signatures `tensor` is the backend's tensor type and `zeroclip::tensor`
// the host tensor; every op is a const member. Adding an op is one line here (and its
// implementation in each backend that must or may have it).
#define ZEROCLIP_BACKEND_OPS(OP, OPT, CTX)                                                                     \
    OP(CTX, tensor, upload, (const zeroclip::tensor&))                                                         \
    OP(CTX, zeroclip::tensor, download, (const tensor&))                                                       \
    OP(CTX, tensor, linear, (const tensor&, const tensor&, const tensor&))                                     \
    OP(CTX, tensor, matmul, (const tensor&, const tensor&))                                                    \
    OP(CTX, tensor, layer_norm, (const tensor&, const tensor&, const tensor&, double))                         \
    OP(CTX, void, activate_, (tensor&, activation))                                                            \
    OP(CTX, void, relu_, (tensor&))                                                                            \
    OP(CTX, void, add_, (tensor&, const tensor&))                                                              \
    OP(CTX, void, add_broadcast_, (tensor&, const tensor&))                                                    \
    OP(CTX, void, scale_, (tensor&, float))                                                                    \
    OP(CTX, tensor, l2_normalize_rows, (const tensor&))                                                        \
    OP(CTX, tensor, gather_rows, (const tensor&, const std::vector<int64_t>&))                                 \
    OP(CTX, tensor, slice_rows, (const tensor&, int64_t, int64_t))                                             \
    OP(CTX, tensor, patchify, (const tensor&, int64_t))                                                        \
    OP(CTX, tensor, prepend_row, (const tensor&, const tensor&, int64_t))                                      \
    OP(CTX, tensor, self_attention, (const tensor&, int64_t, int64_t, bool))                                   \
    OP(CTX, tensor, attention, (const tensor&, const tensor&, const tensor&, int64_t, int64_t))                \
    OP(CTX, tensor, conv2d, (const tensor&, const tensor&, const tensor&, int64_t, int64_t))                   \
    OP(CTX, tensor, avg_pool2d, (const tensor&, int64_t))                                                      \
    OP(CTX, tensor, spatial_tokens, (const tensor&))                                                           \
    OPT(CTX, has_linear_activate_v, tensor, linear_activate, (const tensor&, const tensor&, const tensor&,     \
                                                              activation))                                     \
    OPT(CTX, has_linear_add_v, void, linear_add_, (tensor&, const tensor&, const tensor&, const tensor&))      \
    OPT(CTX, has_conv2d_relu_v, tensor, conv2d_relu, (const tensor&, const tensor&, const tensor&, int64_t,    \
                                                      int64_t))                                                \
    OPT(CTX, has_conv2d_add_relu_v, tensor, conv2d_add_relu, (const tensor&, const tensor&, const tensor&,     \
                                                              int64_t, int64_t, const tensor&))                \
    OPT(CTX, has_prepare_conv2d_v, tensor, prepare_conv2d, (const tensor&, int64_t, int64_t))                 \
    OPT(CTX, has_prepare_linear_v, tensor, prepare_linear, (const tensor&))                                    \
    OPT(CTX, has_prepare_embedding_v, tensor, prepare_embedding, (const tensor&))

namespace zeroclip {

namespace detail {

/// B::tensor, or a type no op accepts when B has none (so detection fails instead of erroring).
struct no_backend_tensor {};
template <class B, class = void>
struct backend_tensor {
    using type = no_backend_tensor;
};
template <class B>
struct backend_tensor<B, std::void_t<typename B::tensor>> {
    using type = typename B::tensor;
};
template <class B>
inline constexpr bool has_tensor_type_v = !std::is_same_v<typename backend_tensor<B>::type, no_backend_tensor>;

// has_op_NAME<B>: B has `RESULT NAME(PARAMS) const`, the result type exactly as listed.
#define ZEROCLIP_DETAIL_DETECT_OP(CTX, RESULT, NAME, PARAMS)                                               \
    template <class B, class Sig, class = void>                                                            \
    struct has_op_##NAME##_impl : std::false_type {};                                                      \
    template <class B, class R, class... A>                                                                \
    struct has_op_##NAME##_impl<                                                                           \
        B, R(A...),                                                                                        \
        std::enable_if_t<std::is_same_v<decltype(std::declval<const B&>().NAME(std::declval<A>()...)), R>>> \
        : std::true_type {};                                                                               \
    template <class B, class tensor = typename backend_tensor<B>::type>                                    \
    using has_op_##NAME = has_op_##NAME##_impl<B, RESULT PARAMS>;
#define ZEROCLIP_DETAIL_DETECT_OPT(CTX, TRAIT, RESULT, NAME, PARAMS) ZEROCLIP_DETAIL_DETECT_OP(CTX, RESULT, NAME, PARAMS)
ZEROCLIP_BACKEND_OPS(ZEROCLIP_DETAIL_DETECT_OP, ZEROCLIP_DETAIL_DETECT_OPT, ~)
#undef ZEROCLIP_DETAIL_DETECT_OPT
#undef ZEROCLIP_DETAIL_DETECT_OP

#define ZEROCLIP_DETAIL_AND_OP(CTX, RESULT, NAME, PARAMS) &&has_op_##NAME<B>::value
#define ZEROCLIP_DETAIL_NO_OPT(CTX, TRAIT, RESULT, NAME, PARAMS)
template <class B>
inline constexpr bool has_all_ops_v =
    has_tensor_type_v<B> ZEROCLIP_BACKEND_OPS(ZEROCLIP_DETAIL_AND_OP, ZEROCLIP_DETAIL_NO_OPT, ~);
#undef ZEROCLIP_DETAIL_AND_OP

}  // namespace detail

/// True when B provides every required op of the contract (a compile-time check).
template <class B>
inline constexpr bool is_backend_v = detail::has_all_ops_v<B>;

/// Whether B has each optional op (has_linear_activate_v<B>, ...; see ZEROCLIP_BACKEND_OPS).
#define ZEROCLIP_DETAIL_NO_OP(CTX, RESULT, NAME, PARAMS)
#define ZEROCLIP_DETAIL_OPT_TRAIT(CTX, TRAIT, RESULT, NAME, PARAMS) \
    template <class B>                                              \
    inline constexpr bool TRAIT = detail::has_op_##NAME<B>::value;
ZEROCLIP_BACKEND_OPS(ZEROCLIP_DETAIL_NO_OP, ZEROCLIP_DETAIL_OPT_TRAIT, ~)
#undef ZEROCLIP_DETAIL_OPT_TRAIT

namespace detail {
template <class B, class = void>
struct has_image_group : std::false_type {};
template <class B>
struct has_image_group<B, std::enable_if_t<std::is_same_v<decltype(std::declval<const B&>().image_group()), int64_t>>>
    : std::true_type {};
}  // namespace detail

/// How many of `batch` images to run through a convolutional trunk at once: be.image_group() (at
/// least 1) where B has it, so that the activations held are those of a few images (a CPU loses
/// little speed on them); the whole batch otherwise (a GPU wants large batches).
template <class B>
int64_t image_group_size(const B& be, int64_t batch) {
    if constexpr (detail::has_image_group<B>::value) {
        const int64_t group = be.image_group();
        return group > 0 ? std::min(group, batch) : batch;
    } else {
        (void)be;
        return batch;
    }
}

}  // namespace zeroclip

// ZEROCLIP_CHECK_BACKEND(B), at namespace scope beside a backend's class: one static_assert per
// required op, whose message names the op and its signature, so a missing or mistyped op fails
// there. ZEROCLIP_CHECK_OPTIONAL_OP(B, NAME): B's optional op NAME has the listed signature (a
// mistyped one would otherwise be silently skipped by nn/).
#define ZEROCLIP_DETAIL_ASSERT_OP(B, RESULT, NAME, PARAMS)                            \
    static_assert(::zeroclip::detail::has_op_##NAME<B>::value,                        \
                  #B " lacks the backend op `" #RESULT " " #NAME #PARAMS " const` " \
                     "(backend/backend.hpp, ZEROCLIP_BACKEND_OPS)");
#define ZEROCLIP_CHECK_BACKEND(B)                                                                         \
    static_assert(::zeroclip::detail::has_tensor_type_v<B>, #B " lacks the member type `tensor`");        \
    ZEROCLIP_BACKEND_OPS(ZEROCLIP_DETAIL_ASSERT_OP, ZEROCLIP_DETAIL_NO_OPT, B)                            \
    static_assert(::zeroclip::is_backend_v<B>, #B " must implement the backend contract")
#define ZEROCLIP_CHECK_OPTIONAL_OP(B, NAME)                                                      \
    static_assert(::zeroclip::detail::has_op_##NAME<B>::value,                                   \
                  #B "::" #NAME " does not have the signature ZEROCLIP_BACKEND_OPS lists for it " \
                     "(nn/ would silently use the unfused ops instead)")
