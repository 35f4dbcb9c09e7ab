//! The backend contract: the only operations model code (nn/, models/) may call. A backend is a
//! class with a `tensor` type (host memory for cpu_backend, device memory for cuda_cublas) and the
//! const member functions below; `is_backend_v<B>` checks a type at compile time.
//!
//!  memory      upload(host) -> tensor, download(tensor) -> host tensor
//!  products    linear(x, w, b)  y = x·wᵀ + b      matmul(x, w)  y = x·w
//!  row-wise    layer_norm(x, w, b, eps), activate_(x, act), add_(x, y), add_broadcast_(x, rows),
//!              scale_(x, s), l2_normalize_rows(x), softmax_rows(x)
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
//!              prepare_conv2d(w, stride, pad)  lay a convolution's weight out for the backend's
//!                                              products now rather than at its first use
//!              prepare_linear(w) -> w'         a linear's weight in the form (and precision) the
//!                                              backend's products read, to hold in place of w
//!
//! Shapes are row-major with the batch first; "rows" means all leading dimensions flattened.
#pragma once

#include <type_traits>
#include <utility>
#include <vector>

#include "../models/config.hpp"
#include "../tensor.hpp"

namespace zeroclip {

namespace detail {
template <class B, class = void>
struct is_backend : std::false_type {};

template <class B>
struct is_backend<
    B, std::void_t<typename B::tensor,
                   decltype(std::declval<const B&>().upload(std::declval<const tensor&>())),
                   decltype(std::declval<const B&>().download(std::declval<const typename B::tensor&>())),
                   decltype(std::declval<const B&>().linear(std::declval<const typename B::tensor&>(),
                                                            std::declval<const typename B::tensor&>(),
                                                            std::declval<const typename B::tensor&>())),
                   decltype(std::declval<const B&>().matmul(std::declval<const typename B::tensor&>(),
                                                            std::declval<const typename B::tensor&>())),
                   decltype(std::declval<const B&>().layer_norm(std::declval<const typename B::tensor&>(),
                                                                std::declval<const typename B::tensor&>(),
                                                                std::declval<const typename B::tensor&>(), 1e-5)),
                   decltype(std::declval<const B&>().activate_(std::declval<typename B::tensor&>(),
                                                               activation::gelu)),
                   decltype(std::declval<const B&>().add_(std::declval<typename B::tensor&>(),
                                                          std::declval<const typename B::tensor&>())),
                   decltype(std::declval<const B&>().self_attention(std::declval<const typename B::tensor&>(),
                                                                    int64_t{}, int64_t{}, bool{})),
                   decltype(std::declval<const B&>().gather_rows(std::declval<const typename B::tensor&>(),
                                                                 std::declval<const std::vector<int64_t>&>()))>>
    : std::true_type {};
}  // namespace detail

/// True when B provides the backend operations (a compile-time check, C++17 detection idiom).
template <class B>
inline constexpr bool is_backend_v = detail::is_backend<B>::value;

namespace detail {
template <class B>
using tensor_of = typename B::tensor;
template <class B, class = void>
struct has_linear_activate : std::false_type {};
template <class B>
struct has_linear_activate<B, std::void_t<decltype(std::declval<const B&>().linear_activate(
                                  std::declval<const tensor_of<B>&>(), std::declval<const tensor_of<B>&>(),
                                  std::declval<const tensor_of<B>&>(), activation::gelu))>> : std::true_type {};
template <class B, class = void>
struct has_linear_add : std::false_type {};
template <class B>
struct has_linear_add<B, std::void_t<decltype(std::declval<const B&>().linear_add_(
                             std::declval<tensor_of<B>&>(), std::declval<const tensor_of<B>&>(),
                             std::declval<const tensor_of<B>&>(), std::declval<const tensor_of<B>&>()))>>
    : std::true_type {};
template <class B, class = void>
struct has_conv2d_relu : std::false_type {};
template <class B>
struct has_conv2d_relu<B, std::void_t<decltype(std::declval<const B&>().conv2d_relu(
                              std::declval<const tensor_of<B>&>(), std::declval<const tensor_of<B>&>(),
                              std::declval<const tensor_of<B>&>(), int64_t{}, int64_t{}))>> : std::true_type {};
template <class B, class = void>
struct has_conv2d_add_relu : std::false_type {};
template <class B>
struct has_conv2d_add_relu<B, std::void_t<decltype(std::declval<const B&>().conv2d_add_relu(
                                  std::declval<const tensor_of<B>&>(), std::declval<const tensor_of<B>&>(),
                                  std::declval<const tensor_of<B>&>(), int64_t{}, int64_t{},
                                  std::declval<const tensor_of<B>&>()))>> : std::true_type {};
template <class B, class = void>
struct has_prepare_conv2d : std::false_type {};
template <class B>
struct has_prepare_conv2d<B, std::void_t<decltype(std::declval<const B&>().prepare_conv2d(
                                 std::declval<const tensor_of<B>&>(), int64_t{}, int64_t{}))>> : std::true_type {};
template <class B, class = void>
struct has_prepare_linear : std::false_type {};
template <class B>
struct has_prepare_linear<B, std::void_t<decltype(std::declval<const B&>().prepare_linear(
                                 std::declval<const tensor_of<B>&>()))>> : std::true_type {};
}  // namespace detail

/// Whether B has each optional fused op.
template <class B>
inline constexpr bool has_linear_activate_v = detail::has_linear_activate<B>::value;
template <class B>
inline constexpr bool has_linear_add_v = detail::has_linear_add<B>::value;
template <class B>
inline constexpr bool has_conv2d_relu_v = detail::has_conv2d_relu<B>::value;
template <class B>
inline constexpr bool has_conv2d_add_relu_v = detail::has_conv2d_add_relu<B>::value;
template <class B>
inline constexpr bool has_prepare_conv2d_v = detail::has_prepare_conv2d<B>::value;
template <class B>
inline constexpr bool has_prepare_linear_v = detail::has_prepare_linear<B>::value;

}  // namespace zeroclip
