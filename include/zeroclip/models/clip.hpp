//! models::clip_model — a whole CLIP: an image encoder (ViT or ModifiedResNet, chosen from the
//! checkpoint), the text encoder and logit_scale. A loaded model is immutable: encode_* are
//! const and may be called from several threads at once.
#pragma once

#include <cmath>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <variant>

#include "../image.hpp"
#include "../io/checkpoint.hpp"
#include "../nn/similarity.hpp"
#include "../tokenizer.hpp"
#include "resnet.hpp"
#include "text.hpp"
#include "vit.hpp"

namespace zeroclip::models {

template <class Backend>
class clip_model {
public:
    using tensor = typename Backend::tensor;
    using image_encoder = std::variant<vision_transformer<Backend>, modified_resnet<Backend>>;

    /// Builds the model from an opened checkpoint; every tensor's shape is checked here.
    explicit clip_model(const checkpoint& ckpt, Backend backend = Backend())
        : backend_(std::move(backend)), config_(ckpt.config), source_(ckpt.path), dtype_(ckpt.weight_dtype) {
        const weight_source& ws = ckpt.weights;
        // The text tower first: its token table is the largest single float32 weight made at load
        // (97 MiB at width 512, before the backend shrinks it), so it is made while little else is
        // resident and does not set the load's peak memory.
        text_ = text_transformer<Backend>::load(ws, backend_, config_.text, config_.embed_dim);
        if (config_.vision.is_resnet())
            visual_ = modified_resnet<Backend>::load(ws.scope("visual"), backend_, config_.vision, config_.embed_dim);
        else
            visual_ = vision_transformer<Backend>::load(ws.scope("visual"), backend_, config_.vision,
                                                        config_.embed_dim);
        const zeroclip::tensor scale = ws.find("logit_scale");  // host tensor (not Backend::tensor)
        if (scale.numel() != 1)
            ZEROCLIP_THROW(errc::shape, ws.file() + ": tensor 'logit_scale' has shape " +
                                            shape_to_string(scale.shape()) + ", expected []");
        logit_scale_raw_ = scale[0];
        // OpenAI clamps exp(logit_scale) to 100 in training, not at inference: a value whose exp
        // is not a finite float would turn every logit into inf or NaN, so it is refused.
        if (!std::isfinite(std::exp(logit_scale_raw_)))
            ZEROCLIP_THROW(errc::format, ws.file() + ": tensor 'logit_scale' is " + std::to_string(logit_scale_raw_) +
                                             ", whose exp() is not a finite float (CLIP's is ln(100) = 4.605 at most)");
        if (!ckpt.bpe_merges.empty())
            tokenizer_ = std::make_shared<lazy_tokenizer>(ckpt.bpe_merges, ckpt.bpe_vocab_json, ckpt.path);
    }

    const clip_config& config() const { return config_; }
    const Backend& backend() const { return backend_; }
    /// The checkpoint this model was loaded from, and its weights' dtype ("F16", ...).
    const std::string& source() const { return source_; }
    const std::string& weight_dtype() const { return dtype_; }
    bool is_resnet() const { return config_.vision.is_resnet(); }

    /// The checkpoint's tokenizer, built on first use (thread-safe); errc::tokenizer if the
    /// checkpoint carries no vocabulary or a malformed one.
    const zeroclip::tokenizer& tokenizer() const {
        if (!tokenizer_) ZEROCLIP_THROW(errc::tokenizer, source_ + ": the checkpoint has no tokenizer vocabulary");
        return tokenizer_->get();
    }

    /// Texts → token ids (N, context_length), as clip.tokenize(texts, truncate=True) by default.
    token_tensor tokenize(const std::vector<std::string>& texts, bool truncate = true) const {
        tokenize_options options;
        options.context_length = config_.text.context_length;
        options.truncate = truncate;
        return tokenizer().tokenize(texts, options);
    }

    /// How images become this model's input: its resolution, mean and std, OpenAI's pipeline.
    zeroclip::preprocess_options preprocess_options() const {
        zeroclip::preprocess_options o;
        o.size = config_.vision.image_size;
        o.mean = config_.image_mean;
        o.stddev = config_.image_std;
        return o;
    }

    /// Image embeddings (N, embed_dim) on the backend, not normalised and not yet checked, from
    /// preprocessed pixels (N, 3, image_size, image_size): where the embedding flow starts
    /// (embeddings.hpp normalises them; nothing crosses to the host).
    tensor image_features(const zeroclip::tensor& pixels) const {
        const int64_t s = config_.vision.image_size;
        if (pixels.ndim() != 4 || pixels.dim(1) != 3 || pixels.dim(2) != s || pixels.dim(3) != s || pixels.dim(0) < 1 ||
            pixels.empty())
            ZEROCLIP_THROW(errc::shape, "encode_image: pixels have shape " + shape_to_string(pixels.shape()) +
                                            ", expected [N,3," + std::to_string(s) + "," + std::to_string(s) + "]");
        (void)pixels.numel();  // errc::shape if N·3·S·S overflows, before any pixel is read
        const tensor x = backend_.upload(pixels);
        return std::visit([&](const auto& enc) { return enc.forward(backend_, x); }, visual_);
    }

    /// Text embeddings (N, embed_dim) on the backend, not normalised and not yet checked, from
    /// token ids (N, L ≤ context_length), each row starting with <|startoftext|> and holding
    /// <|endoftext|> (the highest id).
    tensor text_features(const token_tensor& tokens) const {
        if (tokens.ndim() != 2 || tokens.dim(0) < 1 || tokens.dim(1) < 1 ||
            tokens.dim(1) > config_.text.context_length)
            ZEROCLIP_THROW(errc::shape, "encode_text: tokens have shape " + shape_to_string(tokens.shape()) +
                                            ", expected [N,L] with 1 <= L <= " +
                                            std::to_string(config_.text.context_length));
        for (int32_t id : tokens)
            if (id < 0 || id >= config_.text.vocab_size)
                ZEROCLIP_THROW(errc::invalid_argument, "encode_text: token id " + std::to_string(id) +
                                                           " is outside the vocabulary [0, " +
                                                           std::to_string(config_.text.vocab_size) + ")");
        return text_.forward(backend_, tokens);
    }

    /// Image embeddings (N, embed_dim) on the host, not normalised (as OpenAI's encode_image).
    zeroclip::tensor encode_image(const zeroclip::tensor& pixels) const {
        return require_finite(backend_.download(image_features(pixels)), "encode_image", "image embedding");
    }

    /// Text embeddings (N, embed_dim) on the host, not normalised (as OpenAI's encode_text).
    zeroclip::tensor encode_text(const token_tensor& tokens) const {
        return require_finite(backend_.download(text_features(tokens)), "encode_text", "text embedding");
    }

    /// exp(logit_scale): the factor CLIP multiplies cosine similarities by.
    float logit_scale() const { return std::exp(logit_scale_raw_); }

    /// logits_per_image (N, M) = logit_scale · cos(image_i, text_j), from host embeddings.
    zeroclip::tensor logits_per_image(const zeroclip::tensor& image_embeddings,
                                      const zeroclip::tensor& text_embeddings) const {
        if (image_embeddings.ndim() != 2 || text_embeddings.ndim() != 2 ||
            image_embeddings.dim(1) != text_embeddings.dim(1))
            ZEROCLIP_THROW(errc::shape, "logits_per_image: embeddings have shapes " +
                                            shape_to_string(image_embeddings.shape()) + " and " +
                                            shape_to_string(text_embeddings.shape()));
        const Backend& be = backend_;
        tensor logits = nn::cosines(be, nn::unit_rows(be, be.upload(image_embeddings)),
                                    nn::unit_rows(be, be.upload(text_embeddings)));
        be.scale_(logits, logit_scale());
        return require_finite(be.download(logits), "logits_per_image", "logit");
    }

private:
    /// `t` unchanged when every value is finite; otherwise errc::invalid_argument naming the row.
    /// A NaN must never reach a ranking or a printed result (it would come from non-finite inputs:
    /// pixels or embeddings holding NaN/inf, or a value overflowing float).
    zeroclip::tensor require_finite(zeroclip::tensor t, const char* where, const char* what) const {
        const int64_t n = t.numel(), width = t.ndim() == 2 && t.dim(1) > 0 ? t.dim(1) : 1;
        for (int64_t i = 0; i < n; ++i)
            if (!std::isfinite(t[i]))
                ZEROCLIP_THROW(errc::invalid_argument,
                               std::string(where) + ": " + what + " of row " + std::to_string(i / width) +
                                   " is not finite (NaN or infinity): the input holds NaN/infinite values or "
                                   "values so large that float overflows (model " + source_ + ")");
        return t;
    }

    Backend backend_;
    clip_config config_;
    std::string source_;
    std::string dtype_;
    image_encoder visual_;
    text_transformer<Backend> text_;
    /// The tokenizer's vocabulary, made into a tokenizer when first needed: that takes ≈ 40 ms, a
    /// tenth of loading ViT-B/32, and a program that only embeds images never needs it.
    struct lazy_tokenizer {
        std::string merges, vocab_json, source;
        std::mutex mutex;
        std::optional<zeroclip::tokenizer> built;

        lazy_tokenizer(std::string m, std::string v, std::string s)
            : merges(std::move(m)), vocab_json(std::move(v)), source(std::move(s)) {}
        const zeroclip::tokenizer& get() {
            // A malformed vocabulary throws here, at every call, naming the checkpoint.
            const std::lock_guard<std::mutex> lock(mutex);
            if (!built) built.emplace(zeroclip::tokenizer::from_stored(merges, vocab_json, source));
            return *built;
        }
    };

    float logit_scale_raw_ = 0;
    std::shared_ptr<lazy_tokenizer> tokenizer_;  // shared by copies of the model
};

}  // namespace zeroclip::models
