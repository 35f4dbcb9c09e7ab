//! zeroclip — OpenAI CLIP in header-only C++17: image and text embeddings and zero-shot
//! classification, with the same numbers as the official implementation.
//!
//!     #include <zeroclip/zeroclip.hpp>
//!     auto model = zeroclip::load_model("clip-vit-base-patch32/");   // HF folder or .safetensors
//!     zeroclip::tensor img = model.encode_image(pixels);              // (N, 3, 224, 224) -> (N, 512)
//!     zeroclip::tensor txt = model.encode_text(token_ids);            // (M, 77) int32 -> (M, 512)
//!     zeroclip::tensor logits = model.logits_per_image(img, txt);     // (N, M)
//!
//!     zeroclip::zero_shot_classifier<zeroclip::cpu_backend> classifier(model, {"cat", "dog"});
//!     auto pixels = zeroclip::load_image_batch({"cat.jpg"}, model.preprocess_options());
//!     auto top = classifier.classify(pixels, /*top_k=*/1);            // top[0][0].label == "cat"
//!
//!     // A folder of any size: batches stream to the callback as they are embedded (embeddings.hpp).
//!     zeroclip::embed_image_stream(model, files, [&](const zeroclip::image_batch<zeroclip::cpu_backend>& b) {
//!         auto ranked = classifier.classify_embeddings(b.embeddings, 1);  // b.succeeded() files, in order
//!     });
//!
//! Everything throws zeroclip::error (error.hpp) on bad input. Internals live in zeroclip::detail.
#pragma once

#include "backend/backend.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "classifier.hpp"
#include "error.hpp"
#include "image.hpp"
#include "io/checkpoint.hpp"
#include "io/config_json.hpp"
#include "io/file.hpp"
#include "io/npy.hpp"
#include "io/safetensors.hpp"
#include "models/clip.hpp"
#include "models/config.hpp"
#include "embeddings.hpp"
#include "prompt.hpp"
#include "tensor.hpp"
#include "tokenizer.hpp"
#ifdef ZEROCLIP_WITH_CUDA
#include "backend/cuda/cuda_backend.hpp"
#else
#include "backend/cuda/stub.hpp"
#endif

namespace zeroclip {

/// A CLIP model on the CPU.
using model = models::clip_model<cpu_backend>;

/// Loads a model from a Hugging Face CLIP folder or a zeroclip `.safetensors` file.
template <class Backend = cpu_backend>
models::clip_model<Backend> load_model(const std::string& path, Backend backend = Backend()) {
    return models::clip_model<Backend>(load_checkpoint(path), std::move(backend));
}

}  // namespace zeroclip
