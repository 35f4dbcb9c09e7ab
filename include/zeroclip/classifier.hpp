//! Zero-shot classification: class names → prompts → one normalised embedding per class
//! (computed once, kept on the backend), then for a batch of images one matrix product
//! cos(image, class) × logit_scale, softmax and top-k. Also CLIP's contrastive loss.
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "models/clip.hpp"
#include "prompt.hpp"

namespace zeroclip {

/// One ranked answer for one image.
struct prediction {
    std::string label;
    int index = 0;            ///< position of the label in the classifier's label list
    float probability = 0;    ///< softmax over all labels of logit_scale · cosine
    float cosine = 0;         ///< cosine similarity of the image and the class embedding
};

/// Text embeddings (N, D) of prompts, L2-normalised, computed in batches of `batch` prompts.
template <class Backend>
tensor embed_texts(const models::clip_model<Backend>& model, const std::vector<std::string>& texts,
                   size_t batch = 256) {
    const auto& be = model.backend();
    tensor out({static_cast<int64_t>(texts.size()), model.config().embed_dim});
    for (size_t start = 0; start < texts.size(); start += batch) {
        std::vector<std::string> chunk(texts.begin() + static_cast<long>(start),
                                       texts.begin() + static_cast<long>(std::min(texts.size(), start + batch)));
        tensor e = be.download(be.l2_normalize_rows(be.upload(model.encode_text(model.tokenize(chunk)))));
        std::copy(e.begin(), e.end(), out.data() + static_cast<int64_t>(start) * out.dim(1));
    }
    return out;
}

template <class Backend>
class zero_shot_classifier {
public:
    /// Embeds every label through every template: each prompt's embedding is normalised, the
    /// templates averaged per class and normalised again (the official prompt ensemble).
    /// errc::invalid_argument for an empty label or template list, or a template without "{}".
    zero_shot_classifier(const models::clip_model<Backend>& model, std::vector<std::string> labels,
                         std::vector<std::string> templates = {default_template})
        : model_(&model), labels_(std::move(labels)) {
        if (labels_.empty()) ZEROCLIP_THROW(errc::invalid_argument, "zero-shot classifier: no labels given");
        if (templates.empty()) ZEROCLIP_THROW(errc::invalid_argument, "zero-shot classifier: no templates given");
        for (const auto& label : labels_)
            if (label.empty()) ZEROCLIP_THROW(errc::invalid_argument, "zero-shot classifier: empty label");
        std::vector<std::string> prompts;
        for (const auto& label : labels_)
            for (const auto& t : templates) prompts.push_back(fill_template(t, label));
        tensor per_prompt = embed_texts(model, prompts);  // (labels·templates, D), normalised
        const int64_t d = per_prompt.dim(1), k = static_cast<int64_t>(templates.size());
        tensor mean({static_cast<int64_t>(labels_.size()), d});
        for (int64_t c = 0; c < mean.dim(0); ++c)
            for (int64_t t = 0; t < k; ++t)
                for (int64_t i = 0; i < d; ++i) mean[c * d + i] += per_prompt[(c * k + t) * d + i];
        const auto& be = model.backend();
        class_embeddings_ = be.l2_normalize_rows(be.upload(mean));
    }

    const std::vector<std::string>& labels() const { return labels_; }
    /// (labels, D): one L2-normalised embedding per class.
    tensor class_embeddings() const { return model_->backend().download(class_embeddings_); }

    /// Cosine similarities (N, labels) of image embeddings (N, D), which need not be normalised.
    tensor cosines(const tensor& image_embeddings) const {
        const auto& be = model_->backend();
        if (image_embeddings.ndim() != 2 || image_embeddings.dim(1) != model_->config().embed_dim)
            ZEROCLIP_THROW(errc::shape, "classifier: image embeddings have shape " +
                                            shape_to_string(image_embeddings.shape()));
        return be.download(be.linear(be.l2_normalize_rows(be.upload(image_embeddings)), class_embeddings_,
                                     typename Backend::tensor{}));
    }

    /// The top_k labels of each image (best first), from image embeddings (N, D).
    std::vector<std::vector<prediction>> classify_embeddings(const tensor& image_embeddings, int top_k) const {
        if (top_k < 1) ZEROCLIP_THROW(errc::invalid_argument, "classifier: top_k must be at least 1");
        tensor cos = cosines(image_embeddings);
        const int64_t n = cos.dim(0), c = cos.dim(1), d = image_embeddings.dim(1);
        // A NaN would break the sort below and print as a probability. Embeddings holding NaN or
        // infinity (from outside, e.g. a .npy file) are refused; an all-zero row (what a pipeline
        // leaves for an image that failed) has no direction: cosine 0 with every class.
        for (int64_t i = 0; i < n; ++i) {
            bool zero = true;
            for (int64_t k = 0; k < d; ++k) {
                const float v = image_embeddings[i * d + k];
                if (!std::isfinite(v))
                    ZEROCLIP_THROW(errc::invalid_argument, "classifier: the image embedding of row " + std::to_string(i) +
                                                               " holds NaN or infinite values");
                zero = zero && v == 0;
            }
            if (zero) std::fill_n(cos.data() + i * c, c, 0.0f);
        }
        for (int64_t i = 0; i < n * c; ++i)
            if (!std::isfinite(cos[i]))
                ZEROCLIP_THROW(errc::invalid_argument, "classifier: the cosines of row " + std::to_string(i / c) +
                                                           " are not finite (embedding values overflow float)");
        const int64_t k = std::min<int64_t>(top_k, c);
        // Softmax over the labels of logit_scale · cosine, on the host: (N, labels) is small.
        tensor probs({n, c});
        const double scale = model_->logit_scale();
        for (int64_t i = 0; i < n; ++i) {
            const float* row = cos.data() + i * c;
            const double mx = scale * *std::max_element(row, row + c);
            double sum = 0;
            for (int64_t j = 0; j < c; ++j) sum += std::exp(scale * row[j] - mx);
            for (int64_t j = 0; j < c; ++j) probs[i * c + j] = static_cast<float>(std::exp(scale * row[j] - mx) / sum);
        }
        std::vector<std::vector<prediction>> out(static_cast<size_t>(n));
        std::vector<int> order(static_cast<size_t>(c));
        for (int64_t i = 0; i < n; ++i) {
            std::iota(order.begin(), order.end(), 0);
            const float* p = probs.data() + i * c;
            std::partial_sort(order.begin(), order.begin() + k, order.end(),
                              [&](int a, int b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
            for (int64_t r = 0; r < k; ++r) {
                const int j = order[static_cast<size_t>(r)];
                out[static_cast<size_t>(i)].push_back({labels_[static_cast<size_t>(j)], j, p[j], cos[i * c + j]});
            }
        }
        return out;
    }

    /// The top_k labels of each preprocessed image (N, 3, S, S).
    std::vector<std::vector<prediction>> classify(const tensor& pixels, int top_k = 5) const {
        return classify_embeddings(model_->encode_image(pixels), top_k);
    }

private:
    const models::clip_model<Backend>* model_;
    std::vector<std::string> labels_;
    typename Backend::tensor class_embeddings_;  // (labels, D), normalised, on the backend
};

/// The result of contrastive_loss.
struct contrastive_result {
    double loss = 0;                ///< L = 1/N Σ_i (λ·ℓ_i(image→text) + (1−λ)·ℓ_i(text→image))
    std::vector<float> cosines;     ///< cos(image_i, text_i) of each aligned pair
};

/// CLIP's symmetric contrastive loss for N aligned pairs (image_i, text_i): with
/// s_ij = cos(image_i, text_j) / τ, ℓ_i(image→text) = −log softmax_j(s_ij)[i] and
/// ℓ_i(text→image) = −log softmax_j(s_ji)[i]. CLIP itself uses τ = 1/logit_scale, λ = 0.5.
inline contrastive_result contrastive_loss(const tensor& image_embeddings, const tensor& text_embeddings,
                                           double temperature, double lambda = 0.5) {
    if (image_embeddings.ndim() != 2 || image_embeddings.shape() != text_embeddings.shape() ||
        image_embeddings.dim(0) < 1)
        ZEROCLIP_THROW(errc::shape, "contrastive_loss: need two (N, D) embedding matrices of the same shape, got " +
                                        shape_to_string(image_embeddings.shape()) + " and " +
                                        shape_to_string(text_embeddings.shape()));
    if (!(temperature > 0) || !std::isfinite(temperature))
        ZEROCLIP_THROW(errc::invalid_argument, "contrastive_loss: temperature must be a finite number > 0");
    if (!(lambda >= 0 && lambda <= 1)) ZEROCLIP_THROW(errc::invalid_argument, "contrastive_loss: lambda must be in [0, 1]");
    const int64_t n = image_embeddings.dim(0), d = image_embeddings.dim(1);
    auto unit_rows = [&](const tensor& x) {
        std::vector<double> out(static_cast<size_t>(n * d));
        for (int64_t i = 0; i < n; ++i) {
            double norm = 0;
            for (int64_t k = 0; k < d; ++k) norm += double(x[i * d + k]) * x[i * d + k];
            norm = std::sqrt(norm);
            for (int64_t k = 0; k < d; ++k) out[static_cast<size_t>(i * d + k)] = x[i * d + k] / norm;
        }
        return out;
    };
    const auto img = unit_rows(image_embeddings), txt = unit_rows(text_embeddings);
    std::vector<double> s(static_cast<size_t>(n * n));  // s[i*n+j] = cos(image_i, text_j) / τ
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) {
            double dot = 0;
            for (int64_t k = 0; k < d; ++k) dot += img[static_cast<size_t>(i * d + k)] * txt[static_cast<size_t>(j * d + k)];
            s[static_cast<size_t>(i * n + j)] = dot / temperature;
        }
    // −log softmax of entry `target` among n values read through `at`.
    auto nll = [&](auto at, int64_t target) {
        double mx = -INFINITY;
        for (int64_t j = 0; j < n; ++j) mx = std::max(mx, at(j));
        double sum = 0;
        for (int64_t j = 0; j < n; ++j) sum += std::exp(at(j) - mx);
        return -(at(target) - mx - std::log(sum));
    };
    contrastive_result r;
    for (int64_t i = 0; i < n; ++i) {
        const double image_to_text = nll([&](int64_t j) { return s[static_cast<size_t>(i * n + j)]; }, i);
        const double text_to_image = nll([&](int64_t j) { return s[static_cast<size_t>(j * n + i)]; }, i);
        r.loss += lambda * image_to_text + (1 - lambda) * text_to_image;
        r.cosines.push_back(static_cast<float>(s[static_cast<size_t>(i * n + i)] * temperature));
    }
    r.loss /= static_cast<double>(n);
    if (!std::isfinite(r.loss))
        ZEROCLIP_THROW(errc::invalid_argument, "contrastive_loss: the loss is not finite: an embedding holds NaN or "
                                               "infinite values, or is all zeros");
    return r;
}

}  // namespace zeroclip
