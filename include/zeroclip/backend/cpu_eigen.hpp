//! cpu_eigen: the portable CPU backend. Matrix products are Eigen GEMMs over Eigen::Map views of
//! host tensors (no copies of weights); row-wise ops are plain loops parallelised with OpenMP
//! when the build enables it. Tensors are zeroclip::tensor, so upload/download are free.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../models/config.hpp"
#include "../tensor.hpp"

namespace zeroclip {

class cpu_eigen {
public:
    using tensor = zeroclip::tensor;
    static constexpr const char* name = "cpu";

    using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    using map = Eigen::Map<matrix>;
    using const_map = Eigen::Map<const matrix>;
    using strided_map = Eigen::Map<const matrix, 0, Eigen::OuterStride<>>;

    // ---- memory -------------------------------------------------------------------------
    tensor upload(const zeroclip::tensor& host) const { return host; }
    zeroclip::tensor download(const tensor& t) const { return t; }

    // ---- matrix products ----------------------------------------------------------------
    /// y = x · wᵀ + b: x (M, K), w (N, K) as PyTorch stores nn.Linear, b (N) or empty.
    tensor linear(const tensor& x, const tensor& w, const tensor& b) const {
        const int64_t m = rows(x), k = x.shape().back(), n = w.dim(0);
        ZEROCLIP_ASSERT(w.dim(1) == k);
        tensor y({m, n});
        map out(y.data(), m, n);
        out.noalias() = as_matrix(x, m, k) * as_matrix(w, n, k).transpose();
        if (!b.empty()) out.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(b.data(), n);
        return y;
    }

    /// y = x · w: x (M, K), w (K, N) (the layout of CLIP's `proj` and `text_projection`).
    tensor matmul(const tensor& x, const tensor& w) const {
        const int64_t m = rows(x), k = x.shape().back(), n = w.dim(1);
        ZEROCLIP_ASSERT(w.dim(0) == k);
        tensor y({m, n});
        map(y.data(), m, n).noalias() = as_matrix(x, m, k) * as_matrix(w, k, n);
        return y;
    }

    // ---- row-wise ops ---------------------------------------------------------------------
    /// Layer norm over the last dimension with weight and bias (both (width)).
    tensor layer_norm(const tensor& x, const tensor& weight, const tensor& bias, double eps) const {
        const int64_t m = rows(x), n = x.shape().back();
        tensor y(x.shape());
        const float* w = weight.data();
        const float* b = bias.data();
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < m; ++r) {
            const float* in = x.data() + r * n;
            float* out = y.data() + r * n;
            double mean = 0, var = 0;
            for (int64_t i = 0; i < n; ++i) mean += in[i];
            mean /= static_cast<double>(n);
            for (int64_t i = 0; i < n; ++i) var += (in[i] - mean) * (in[i] - mean);
            const float inv = static_cast<float>(1.0 / std::sqrt(var / static_cast<double>(n) + eps));
            const float mu = static_cast<float>(mean);
            for (int64_t i = 0; i < n; ++i) out[i] = (in[i] - mu) * inv * w[i] + b[i];
        }
        return y;
    }

    /// In place: QuickGELU x·σ(1.702x) (what OpenAI trained with) or the exact erf GELU.
    void activate_(tensor& x, activation act) const {
        float* p = x.data();
        const int64_t n = x.numel();
        if (act == activation::quick_gelu) {
#pragma omp parallel for schedule(static)
            for (int64_t i = 0; i < n; ++i) p[i] = p[i] / (1.0f + std::exp(-1.702f * p[i]));
        } else {
#pragma omp parallel for schedule(static)
            for (int64_t i = 0; i < n; ++i) p[i] = 0.5f * p[i] * (1.0f + std::erf(p[i] * 0.70710678118654752f));
        }
    }

    /// In place: x += y (same shape).
    void add_(tensor& x, const tensor& y) const {
        ZEROCLIP_ASSERT(x.numel() == y.numel());
        Eigen::Map<Eigen::ArrayXf>(x.data(), x.numel()) += Eigen::Map<const Eigen::ArrayXf>(y.data(), y.numel());
    }

    /// In place: every group of rows.numel() values of x gets `rows` added (positional embedding
    /// over a batch: x (B·T, W), rows (T, W)).
    void add_broadcast_(tensor& x, const tensor& rows_to_add) const {
        const int64_t block = rows_to_add.numel();
        ZEROCLIP_ASSERT(x.numel() % block == 0);
        Eigen::Map<const Eigen::ArrayXf> r(rows_to_add.data(), block);
        for (int64_t o = 0; o < x.numel(); o += block) Eigen::Map<Eigen::ArrayXf>(x.data() + o, block) += r;
    }

    /// In place: x *= s.
    void scale_(tensor& x, float s) const { Eigen::Map<Eigen::ArrayXf>(x.data(), x.numel()) *= s; }

    /// Rows of x (M, W) L2-normalised.
    tensor l2_normalize_rows(const tensor& x) const {
        const int64_t m = rows(x), n = x.shape().back();
        tensor y({m, n});
        map(y.data(), m, n) = as_matrix(x, m, n).rowwise().normalized();
        return y;
    }

    /// Softmax of each row of x (M, N).
    tensor softmax_rows(const tensor& x) const {
        const int64_t m = rows(x), n = x.shape().back();
        tensor y({m, n});
        for (int64_t r = 0; r < m; ++r) softmax_inplace(y.data() + r * n, x.data() + r * n, n);
        return y;
    }

    // ---- gathers and reshapes -------------------------------------------------------------
    /// Rows `index` of table (V, W) → (index.size(), W): token embedding lookup, CLS / EOT pick.
    tensor gather_rows(const tensor& table, const std::vector<int64_t>& index) const {
        const int64_t w = table.shape().back();
        tensor y({static_cast<int64_t>(index.size()), w});
        for (size_t i = 0; i < index.size(); ++i)
            std::copy_n(table.data() + index[i] * w, w, y.data() + static_cast<int64_t>(i) * w);
        return y;
    }

    /// Rows [begin, begin + count) of x (R, W), as a view (no copy).
    tensor slice_rows(const tensor& x, int64_t begin, int64_t count) const {
        return x.slice_rows(begin, count);
    }

    /// Non-overlapping p×p patches of images (N, C, H, W) → (N·(H/p)·(W/p), C·p·p), each row
    /// ordered (c, ky, kx) like a flattened Conv2d weight, so the patch embedding is a linear.
    tensor patchify(const tensor& images, int64_t p) const {
        const int64_t n = images.dim(0), c = images.dim(1), h = images.dim(2), w = images.dim(3);
        const int64_t gh = h / p, gw = w / p;
        tensor y({n * gh * gw, c * p * p});
#pragma omp parallel for collapse(2) schedule(static)
        for (int64_t img = 0; img < n; ++img)
            for (int64_t gy = 0; gy < gh; ++gy)
                for (int64_t gx = 0; gx < gw; ++gx) {
                    float* out = y.data() + ((img * gh + gy) * gw + gx) * c * p * p;
                    for (int64_t ch = 0; ch < c; ++ch)
                        for (int64_t ky = 0; ky < p; ++ky)
                            std::copy_n(images.data() + ((img * c + ch) * h + gy * p + ky) * w + gx * p, p,
                                        out + (ch * p + ky) * p);
                }
        return y;
    }

    /// x (B·T, W) → (B·(T+1), W) with `first` (W) before each sample's T rows (the class token).
    tensor prepend_row(const tensor& x, const tensor& first, int64_t batch) const {
        const int64_t w = x.shape().back(), t = rows(x) / batch;
        tensor y({batch * (t + 1), w});
        for (int64_t b = 0; b < batch; ++b) {
            float* out = y.data() + b * (t + 1) * w;
            std::copy_n(first.data(), w, out);
            std::copy_n(x.data() + b * t * w, t * w, out + w);
        }
        return y;
    }

    // ---- attention --------------------------------------------------------------------------
    /// Multi-head self-attention core on packed projections qkv (B·T, 3W) → (B·T, W):
    /// softmax(q kᵀ / √d [+ causal mask]) v per sample and head.
    tensor self_attention(const tensor& qkv, int64_t batch, int64_t heads, bool causal) const {
        const int64_t w = qkv.shape().back() / 3, t = rows(qkv) / batch;
        const float* base = qkv.data();
        return attention_core(base, base + w, base + 2 * w, 3 * w, 3 * w, batch, t, t, w, heads, causal);
    }

    /// Attention of separate q (B·Tq, W) over k, v (B·Tk, W) → (B·Tq, W); no mask.
    tensor attention(const tensor& q, const tensor& k, const tensor& v, int64_t batch, int64_t heads) const {
        const int64_t w = q.shape().back();
        return attention_core(q.data(), k.data(), v.data(), w, w, batch, rows(q) / batch, rows(k) / batch, w,
                              heads, false);
    }

    // ---- convolutional ops (ModifiedResNet), images NCHW ---------------------------------------
    /// 2-d convolution with zero padding: x (N, C, H, W), w (O, C, kh, kw) as PyTorch stores
    /// nn.Conv2d, b (O) or empty → (N, O, Ho, Wo), Ho = (H + 2·pad − kh) / stride + 1.
    /// A 1×1 stride-1 convolution is a GEMM on the image itself; any other is im2col + GEMM, over
    /// bands of output rows so the column buffer stays ≤ ~16 MiB even for RN50x64 at 448 px.
    tensor conv2d(const tensor& x, const tensor& w, const tensor& b, int64_t stride, int64_t pad) const {
        const int64_t n = x.dim(0), c = x.dim(1), h = x.dim(2), wd = x.dim(3);
        const int64_t o = w.dim(0), kh = w.dim(2), kw = w.dim(3);
        ZEROCLIP_ASSERT(w.dim(1) == c && stride >= 1 && pad >= 0);
        const int64_t ho = (h + 2 * pad - kh) / stride + 1, wo = (wd + 2 * pad - kw) / stride + 1;
        ZEROCLIP_ASSERT(ho > 0 && wo > 0);
        const int64_t k = c * kh * kw, plane = ho * wo;
        tensor y({n, o, ho, wo});
        const const_map weights(w.data(), o, k);
        if (kh == 1 && kw == 1 && stride == 1 && pad == 0) {
            for (int64_t img = 0; img < n; ++img)
                map(y.data() + img * o * plane, o, plane).noalias() =
                    weights * as_matrix_at(x.data() + img * c * plane, c, plane);
        } else {
            constexpr int64_t max_buffer = int64_t{1} << 22;  // floats
            const int64_t band = std::clamp<int64_t>(max_buffer / (k * wo), 1, ho);
            std::vector<float> cols(static_cast<size_t>(k * band * wo));
            for (int64_t img = 0; img < n; ++img)
                for (int64_t r0 = 0; r0 < ho; r0 += band) {
                    const int64_t r1 = std::min(ho, r0 + band), width = (r1 - r0) * wo;
                    im2col_band(x.data() + img * c * h * wd, c, h, wd, kh, kw, stride, pad, r0, r1, wo, cols.data());
                    Eigen::Map<matrix, 0, Eigen::OuterStride<>> out(y.data() + img * o * plane + r0 * wo, o, width,
                                                                    Eigen::OuterStride<>(plane));
                    out.noalias() = weights * const_map(cols.data(), k, width);
                }
        }
        if (!b.empty()) {
#pragma omp parallel for collapse(2) schedule(static)
            for (int64_t img = 0; img < n; ++img)
                for (int64_t ch = 0; ch < o; ++ch)
                    Eigen::Map<Eigen::ArrayXf>(y.data() + (img * o + ch) * plane, plane) += b.data()[ch];
        }
        return y;
    }

    /// In place: x = max(x, 0) (NaN stays NaN, as torch.relu).
    void relu_(tensor& x) const {
        float* p = x.data();
        const int64_t n = x.numel();
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; ++i) p[i] = p[i] < 0.0f ? 0.0f : p[i];
    }

    /// nn.AvgPool2d(k): mean of non-overlapping k×k windows (kernel = stride = k, no padding,
    /// trailing rows/columns that do not fill a window dropped): (N, C, H, W) → (N, C, H/k, W/k).
    tensor avg_pool2d(const tensor& x, int64_t k) const {
        const int64_t planes = x.dim(0) * x.dim(1), h = x.dim(2), w = x.dim(3), ho = h / k, wo = w / k;
        tensor y({x.dim(0), x.dim(1), ho, wo});
        const float inv = 1.0f / static_cast<float>(k * k);
#pragma omp parallel for schedule(static)
        for (int64_t pl = 0; pl < planes; ++pl) {
            const float* in = x.data() + pl * h * w;
            float* out = y.data() + pl * ho * wo;
            for (int64_t oy = 0; oy < ho; ++oy)
                for (int64_t ox = 0; ox < wo; ++ox) {
                    float sum = 0;
                    for (int64_t ky = 0; ky < k; ++ky)
                        for (int64_t kx = 0; kx < k; ++kx) sum += in[(oy * k + ky) * w + ox * k + kx];
                    out[oy * wo + ox] = sum * inv;
                }
        }
        return y;
    }

    /// Feature maps x (N, C, H, W) → tokens (N·(1+H·W), C): per image its spatial mean, then the
    /// channel vector of every position in (y, x) order (the token layout of AttentionPool2d).
    tensor spatial_tokens(const tensor& x) const {
        const int64_t n = x.dim(0), c = x.dim(1), hw = x.dim(2) * x.dim(3), t = 1 + hw;
        tensor y({n * t, c});
#pragma omp parallel for schedule(static)
        for (int64_t img = 0; img < n; ++img) {
            const float* in = x.data() + img * c * hw;
            float* out = y.data() + img * t * c;
            for (int64_t ch = 0; ch < c; ++ch) {
                double sum = 0;  // a double sum: the mean of up to 49·4 values without order effects
                for (int64_t i = 0; i < hw; ++i) sum += in[ch * hw + i];
                out[ch] = static_cast<float>(sum / static_cast<double>(hw));
            }
            map(out + c, hw, c) = as_matrix_at(in, c, hw).transpose();
        }
        return y;
    }

private:
    static int64_t rows(const tensor& x) { return x.numel() / x.shape().back(); }

    static const_map as_matrix(const tensor& x, int64_t r, int64_t c) { return const_map(x.data(), r, c); }
    static const_map as_matrix_at(const float* p, int64_t r, int64_t c) { return const_map(p, r, c); }

    /// Columns for output rows [r0, r1) of one image (C, H, W): row (ch, ky, kx) of `cols`
    /// ((C·kh·kw, (r1−r0)·wo), row-major) holds the input pixel each output position sees there.
    static void im2col_band(const float* img, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw,
                            int64_t stride, int64_t pad, int64_t r0, int64_t r1, int64_t wo, float* cols) {
        const int64_t k = c * kh * kw, band = r1 - r0;
#pragma omp parallel for collapse(2) schedule(static)
        for (int64_t row = 0; row < k; ++row)
            for (int64_t oy = r0; oy < r1; ++oy) {
                const int64_t ch = row / (kh * kw), ky = row / kw % kh, kx = row % kw;
                const int64_t iy = oy * stride - pad + ky;
                float* dst = cols + row * band * wo + (oy - r0) * wo;
                if (iy < 0 || iy >= h) {
                    std::fill_n(dst, wo, 0.0f);
                    continue;
                }
                const float* src = img + (ch * h + iy) * w;
                if (stride == 1) {  // contiguous: zeros, a copy, zeros
                    const int64_t lo = std::clamp<int64_t>(pad - kx, 0, wo);
                    const int64_t hi = std::clamp<int64_t>(w + pad - kx, lo, wo);
                    std::fill(dst, dst + lo, 0.0f);
                    std::copy(src + lo - pad + kx, src + hi - pad + kx, dst + lo);
                    std::fill(dst + hi, dst + wo, 0.0f);
                } else {
                    for (int64_t ox = 0; ox < wo; ++ox) {
                        const int64_t ix = ox * stride - pad + kx;
                        dst[ox] = ix >= 0 && ix < w ? src[ix] : 0.0f;
                    }
                }
            }
    }

    static void softmax_inplace(float* out, const float* in, int64_t n) {
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t i = 0; i < n; ++i) mx = std::max(mx, in[i]);
        float sum = 0;
        for (int64_t i = 0; i < n; ++i) sum += out[i] = std::exp(in[i] - mx);
        const float inv = 1.0f / sum;
        for (int64_t i = 0; i < n; ++i) out[i] *= inv;
    }

    tensor attention_core(const float* q, const float* k, const float* v, int64_t q_stride, int64_t kv_stride,
                          int64_t batch, int64_t tq, int64_t tk, int64_t w, int64_t heads, bool causal) const {
        const int64_t d = w / heads;
        const float scale = 1.0f / std::sqrt(static_cast<float>(d));
        tensor out({batch * tq, w});
#pragma omp parallel for collapse(2) schedule(static)
        for (int64_t b = 0; b < batch; ++b)
            for (int64_t h = 0; h < heads; ++h) {
                strided_map qm(q + b * tq * q_stride + h * d, tq, d, Eigen::OuterStride<>(q_stride));
                strided_map km(k + b * tk * kv_stride + h * d, tk, d, Eigen::OuterStride<>(kv_stride));
                strided_map vm(v + b * tk * kv_stride + h * d, tk, d, Eigen::OuterStride<>(kv_stride));
                matrix scores = (qm * scale) * km.transpose();  // (tq, tk)
                for (int64_t i = 0; i < tq; ++i) {
                    const int64_t visible = causal ? std::min(i + 1, tk) : tk;
                    float* row = scores.data() + i * tk;
                    softmax_inplace(row, row, visible);
                    std::fill(row + visible, row + tk, 0.0f);
                }
                Eigen::Map<matrix, 0, Eigen::OuterStride<>> om(out.data() + b * tq * w + h * d, tq, d,
                                                               Eigen::OuterStride<>(w));
                om.noalias() = scores * vm;
            }
        return out;
    }
};

}  // namespace zeroclip
