//! Where the CUDA backend lived in 0.1; it is backend/cuda/ now. Kept so existing includes compile:
//! the real backend with ZEROCLIP_WITH_CUDA, the stub (same API, throws when used) without.
#pragma once

#ifdef ZEROCLIP_WITH_CUDA
#include "cuda/cuda_backend.hpp"
#else
#include "cuda/stub.hpp"
#endif
