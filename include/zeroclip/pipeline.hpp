//! Where embed_image_files lived in 0.1; the file pipeline is in embeddings.hpp now, beside the
//! other embedding functions. Kept so existing includes compile.
#pragma once

#include "embeddings.hpp"
