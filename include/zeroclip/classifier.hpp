//! Zero-shot classification: class names → prompts → one normalised embedding per class
//! (computed once, kept on the backend), then for a batch of images one matrix product
//! cos(image, class) × logit_scale, softmax and top-k. Also CLIP's contrastive loss.
#pragma once

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#include "embeddings.hpp"
#include "prompt.hpp"

namespace zeroclip {

/// One ranked answer for one image.
struct prediction {
    std::string label;
    int index = 0;            ///< position of the label in the classifier's label list
    float probability = 0;    ///< softmax over all labels of logit_scale · cosine
    float cosine = 0;         ///< cosine similarity of the image and the class embedding
};

namespace detail {
/// Positions of the texts longer than the model's context ([sot] + ids + [eot] > context_length).
template <class Backend>
std::vector<size_t> cut_text_positions(const models::clip_model<Backend>& model, const std::vector<std::string>& texts) {
    const size_t room = static_cast<size_t>(std::max(2, model.config().text.context_length)) - 2;
    std::vector<size_t> cut;
    for (size_t i = 0; i < texts.size(); ++i)
        if (model.tokenizer().encode(texts[i]).size() > room) cut.push_back(i);
    return cut;
}
}  // namespace detail

/// The texts that do not fit the model's context (77 tokens for CLIP) and get cut when tokenized,
/// in order: callers warn about them, since the cut part does not reach the model.
template <class Backend>
std::vector<std::string> texts_cut_by_context(const models::clip_model<Backend>& model,
                                              const std::vector<std::string>& texts) {
    std::vector<std::string> cut;
    for (size_t i : detail::cut_text_positions(model, texts)) cut.push_back(texts[i]);
    return cut;
}

namespace detail {
/// errc::invalid_argument naming row `i` of `what` when it is all zeros or not finite: such a
/// row (a failed image, a corrupt index) has no direction, so it can be neither normalised nor ranked.
inline void check_rankable_rows(const tensor& x, const std::string& what) {
    const int64_t n = x.dim(0), d = x.dim(1);
    for (int64_t i = 0; i < n; ++i) {
        bool nonzero = false;
        for (int64_t k = 0; k < d; ++k) {
            const float v = x[i * d + k];
            if (!std::isfinite(v))
                ZEROCLIP_THROW(errc::invalid_argument, what + ": row " + std::to_string(i) +
                                                           " is not finite (NaN or Inf): it cannot be ranked");
            nonzero = nonzero || v != 0.0f;
        }
        if (!nonzero)
            ZEROCLIP_THROW(errc::invalid_argument, what + ": row " + std::to_string(i) +
                                                       " is all zeros (a failed image?): it cannot be ranked");
    }
}
}  // namespace detail

template <class Backend>
class zero_shot_classifier {
public:
    using backend_tensor = typename Backend::tensor;

    /// Embeds every label through every template: each prompt's embedding is normalised, the
    /// templates averaged per class and normalised again (the official prompt ensemble).
    /// errc::invalid_argument for an empty label or template list, a template without "{}", or two
    /// labels the model cannot tell apart (the same tokens: "Cat" and "cat"); errc::format when the
    /// text encoder gives non-finite embeddings. Labels whose prompts are longer than the context
    /// are cut to fit and listed by cut_labels().
    zero_shot_classifier(const models::clip_model<Backend>& model, std::vector<std::string> labels,
                         std::vector<std::string> templates = {default_template})
        : model_(&model), labels_(std::move(labels)) {
        if (labels_.empty()) ZEROCLIP_THROW(errc::invalid_argument, "zero-shot classifier: no labels given");
        if (templates.empty()) ZEROCLIP_THROW(errc::invalid_argument, "zero-shot classifier: no templates given");
        for (const auto& label : labels_)
            if (label.empty()) ZEROCLIP_THROW(errc::invalid_argument, "zero-shot classifier: empty label");
        check_distinct_labels(labels_);
        std::vector<std::string> prompts;
        for (const auto& label : labels_)
            for (const auto& t : templates) prompts.push_back(fill_template(t, label));
        const int64_t k = static_cast<int64_t>(templates.size());
        check_distinct_tokens(prompts, k);
        for (size_t p : detail::cut_text_positions(model, prompts)) {
            const std::string& label = labels_[p / static_cast<size_t>(k)];
            if (cut_labels_.empty() || cut_labels_.back() != label) cut_labels_.push_back(label);
        }
        // Built once, on the host (the prompt ensemble's mean), then kept on the backend.
        const auto& be = model.backend();
        const tensor per_prompt = be.download(embed_texts(model, prompts));  // (labels·templates, D), normalised
        for (int64_t i = 0; i < per_prompt.numel(); ++i)
            if (!std::isfinite(per_prompt[i]))
                ZEROCLIP_THROW(errc::format, model.source() + ": the text encoder gives a non-finite embedding for '" +
                                                 prompts[static_cast<size_t>(i / per_prompt.dim(1))] +
                                                 "' (NaN or Inf weights?)");
        const int64_t d = per_prompt.dim(1);
        tensor mean({static_cast<int64_t>(labels_.size()), d});
        for (int64_t c = 0; c < mean.dim(0); ++c)
            for (int64_t t = 0; t < k; ++t)
                for (int64_t i = 0; i < d; ++i) mean[c * d + i] += per_prompt[(c * k + t) * d + i];
        class_embeddings_ = nn::unit_rows(be, be.upload(mean));
    }

    const std::vector<std::string>& labels() const { return labels_; }
    /// The labels with a prompt longer than the model's context, which was cut to fit (in order).
    const std::vector<std::string>& cut_labels() const { return cut_labels_; }
    /// (labels, D): one L2-normalised embedding per class.
    tensor class_embeddings() const { return model_->backend().download(class_embeddings_); }

    /// Cosine similarities (N, labels), on the backend, of image embeddings (N, D) on the backend,
    /// which need not be normalised.
    backend_tensor cosines_on_backend(const backend_tensor& image_embeddings) const {
        const auto& be = model_->backend();
        if (image_embeddings.ndim() != 2 || image_embeddings.dim(1) != model_->config().embed_dim)
            ZEROCLIP_THROW(errc::shape, "classifier: image embeddings have shape " +
                                            shape_to_string(image_embeddings.shape()));
        return nn::cosines(be, nn::unit_rows(be, image_embeddings), class_embeddings_);
    }

    /// Cosine similarities (N, labels) on the host. errc::invalid_argument for an image row that is
    /// all zeros or not finite (it has no direction: a failed image, a corrupt index).
    tensor cosines(const backend_tensor& image_embeddings) const {
        // On the host backend the rows are checked where they are, so the error says which kind
        // of row it is; elsewhere a zero or non-finite row shows as non-finite cosines.
        if constexpr (std::is_same_v<backend_tensor, tensor>)
            if (image_embeddings.ndim() == 2) detail::check_rankable_rows(image_embeddings, "classifier: image embeddings");
        tensor cos = model_->backend().download(cosines_on_backend(image_embeddings));
        detail::check_rankable_rows(cos, "classifier: image embeddings");
        return cos;
    }

    /// The top_k labels of each image (best first), from image embeddings (N, D) on the backend
    /// (from embed_image_stream / embed_images, or encode_image's host rows on the CPU backend).
    /// They cross to the host once, as cosines; softmax and top-k run there, in double.
    std::vector<std::vector<prediction>> classify_embeddings(const backend_tensor& image_embeddings, int top_k) const {
        if (top_k < 1) ZEROCLIP_THROW(errc::invalid_argument, "classifier: top_k must be at least 1");
        const tensor cos = cosines(image_embeddings);
        const int64_t n = cos.dim(0), c = cos.dim(1);
        const int64_t k = std::min<int64_t>(top_k, c);
        // Softmax over the labels of logit_scale · cosine, on the host in double: (N, labels) is small.
        tensor probs({n, c});
        const double scale = model_->logit_scale();
        for (int64_t i = 0; i < n; ++i) {
            const float* row = cos.data() + i * c;
            const double mx = scale * *std::max_element(row, row + c);
            double sum = 0;
            for (int64_t j = 0; j < c; ++j) sum += std::exp(scale * row[j] - mx);
            for (int64_t j = 0; j < c; ++j) {
                probs[i * c + j] = static_cast<float>(std::exp(scale * row[j] - mx) / sum);
                // Never rank a NaN: it breaks the sort's ordering and prints as null.
                if (!std::isfinite(probs[i * c + j]))
                    ZEROCLIP_THROW(errc::format, model_->source() + ": non-finite similarity for image " +
                                                     std::to_string(i) + " and label '" + labels_[static_cast<size_t>(j)] +
                                                     "' (logit_scale " + std::to_string(scale) + "; NaN or Inf weights?)");
            }
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
        return classify_embeddings(embed_images(*model_, pixels), top_k);
    }

private:
    /// errc::invalid_argument when two labels give the same tokens for every template ("Cat" and
    /// "cat": the tokenizer lowercases), so the model could only split the probability between them.
    void check_distinct_tokens(const std::vector<std::string>& prompts, int64_t k) const {
        const token_tensor tokens = model_->tokenize(prompts);
        const int64_t width = tokens.dim(1) * k;
        std::map<std::vector<int32_t>, size_t> seen;
        for (size_t c = 0; c < labels_.size(); ++c) {
            const int32_t* row = tokens.data() + static_cast<int64_t>(c) * width;
            auto [it, fresh] = seen.emplace(std::vector<int32_t>(row, row + width), c);
            if (!fresh)
                ZEROCLIP_THROW(errc::invalid_argument, "labels '" + labels_[it->second] + "' and '" + labels_[c] +
                                                           "' give the model the same prompt (it ignores case, extra "
                                                           "spaces and text past its context): give each class once");
        }
    }

    const models::clip_model<Backend>* model_;
    std::vector<std::string> labels_;
    std::vector<std::string> cut_labels_;
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
        ZEROCLIP_THROW(errc::invalid_argument, "contrastive_loss: temperature must be a finite number > 0, got " +
                                                   std::to_string(temperature));
    if (!(lambda >= 0 && lambda <= 1)) ZEROCLIP_THROW(errc::invalid_argument, "contrastive_loss: lambda must be in [0, 1]");
    detail::check_rankable_rows(image_embeddings, "contrastive_loss: image embeddings");
    detail::check_rankable_rows(text_embeddings, "contrastive_loss: text embeddings");
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
        ZEROCLIP_THROW(errc::invalid_argument, "contrastive_loss: the loss is not finite (temperature " +
                                                   std::to_string(temperature) + " is too small: similarities overflow)");
    return r;
}

}  // namespace zeroclip
