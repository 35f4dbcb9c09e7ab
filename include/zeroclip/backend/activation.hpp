//! The activations of the backend contract's activate_ and linear_activate (backend.hpp); the
//! model configs (models/config.hpp) name them too, which is why they live here, below both.
#pragma once

namespace zeroclip {

/// QuickGELU x·σ(1.702x) (OpenAI's CLIP) or exact GELU (erf; Hugging Face's "gelu").
enum class activation { quick_gelu, gelu };

}  // namespace zeroclip
