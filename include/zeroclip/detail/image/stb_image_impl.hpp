//! zeroclip::detail — the private, statically linked copy of stb_image and stb_image_write.
//! Every identifier of the vendored copies is renamed (stbi_ → zc_stbi_, STBI → ZC_STBI, see
//! third_party/LICENSE.md) and compiled `static`, so any number of translation units may include
//! zeroclip next to a program's own stb_image, with any configuration, without a clash.
#pragma once

// stb is C written for -Wall but not -Wextra/-Wconversion; treat it as a system header so user
// warning flags never fire inside it. (GCC and Clang apply this to the rest of this file only,
// and the vendored files are included from here.)
#if defined(__GNUC__)
#pragma GCC system_header
#endif

#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wsign-conversion"
#pragma GCC diagnostic ignored "-Wcast-qual"
#pragma GCC diagnostic ignored "-Wold-style-cast"
#pragma GCC diagnostic ignored "-Wuseless-cast"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#pragma GCC diagnostic ignored "-Wpedantic"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#if defined(__clang__)
#pragma GCC diagnostic ignored "-Wunknown-warning-option"
#pragma GCC diagnostic ignored "-Wcomma"
#pragma GCC diagnostic ignored "-Wextra-semi-stmt"
#pragma GCC diagnostic ignored "-Wzero-as-null-pointer-constant"
#else
#pragma GCC diagnostic ignored "-Wpragmas"
#endif
#endif

#if defined(_MSC_VER)
#pragma warning(push)
#pragma warning(disable : 4244 4245 4456 4457 4505 4996)
#endif

// Decoder configuration. Files are read by zeroclip itself (one code path for paths and memory,
// and errors that name the path), so stb's stdio entry points are left out. PSD, HDR and PIC are
// formats Pillow-compatible preprocessing does not promise; leaving them out shrinks the attack
// surface. The dimension cap is a second line behind image.hpp's pixel limit, which is checked
// from the header before any pixel buffer exists.
#define ZC_STB_IMAGE_STATIC
#define ZC_STB_IMAGE_IMPLEMENTATION
#define ZC_STBI_NO_STDIO
#define ZC_STBI_NO_PSD
#define ZC_STBI_NO_HDR
#define ZC_STBI_NO_PIC
#define ZC_STBI_NO_PNM  // PNM is decoded by pnm_decoder.hpp (P1 and P4 too)
#define ZC_STBI_MAX_DIMENSIONS (1 << 18)
#include "third_party/stb_image.h"

#define ZC_STB_IMAGE_WRITE_STATIC
#define ZC_STB_IMAGE_WRITE_IMPLEMENTATION
#define ZC_STBI_WRITE_NO_STDIO
#include "third_party/stb_image_write.h"

#if defined(_MSC_VER)
#pragma warning(pop)
#endif

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
