//! zeroclip::error — the one exception type of the library.
//! Every failure caused by input (files, shapes, strings, flags) throws `zeroclip::error` with a
//! category (`errc`) and a message that starts with a stable tag, e.g.
//! `[zeroclip.format] model.safetensors: tensor 'visual.proj' has shape [768,512], expected [768,1024]`.
#pragma once

#include <stdexcept>
#include <string>

namespace zeroclip {

/// Category of an error; the stable part of the API (messages may change).
enum class errc {
    io,                ///< a file could not be opened, read or mapped
    format,            ///< a file is malformed: header, dtype, offsets, JSON
    shape,             ///< a tensor or config does not have the shape the architecture needs
    image_decode,      ///< an image could not be decoded (wraps stb_image's reason)
    tokenizer,         ///< tokenizer data or text that cannot be tokenized
    invalid_argument,  ///< a caller passed something unusable (empty label list, bad top-k, ...)
    cuda,              ///< a CUDA runtime / cuBLAS / NVRTC call failed
    no_cuda,           ///< CUDA was asked for but zeroclip was built without it
};

/// The short tag of a category, as it appears in messages: "io", "format", ...
inline const char* errc_name(errc code) noexcept {
    switch (code) {
        case errc::io: return "io";
        case errc::format: return "format";
        case errc::shape: return "shape";
        case errc::image_decode: return "image_decode";
        case errc::tokenizer: return "tokenizer";
        case errc::invalid_argument: return "invalid_argument";
        case errc::cuda: return "cuda";
        case errc::no_cuda: return "no_cuda";
    }
    return "unknown";
}

/// The exception thrown for every user-facing failure. `what()` is "[zeroclip.<code>] <message>".
class error : public std::runtime_error {
public:
    error(errc code, const std::string& message)
        : std::runtime_error("[zeroclip." + std::string(errc_name(code)) + "] " + message),
          code_(code) {}
    errc code() const noexcept { return code_; }

private:
    errc code_;
};

/// 0.1's second spelling, kept so code written against it compiles; write `error`.
using Error [[deprecated("zeroclip::Error is zeroclip::error")]] = error;

}  // namespace zeroclip

// Every throw goes through this macro so a -fno-exceptions build can redirect it.
#ifndef ZEROCLIP_THROW
#define ZEROCLIP_THROW(code, message) throw ::zeroclip::error((code), (message))
#endif

#ifndef ZEROCLIP_ASSERT
#include <cassert>
#define ZEROCLIP_ASSERT(x) assert(x)
#endif
