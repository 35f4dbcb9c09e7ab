//! Shared by the libFuzzer targets: a target returns normally when the input is accepted or
//! refused with zeroclip::error; anything else (another exception, a sanitizer report, a hang)
//! is a finding. The invariant checks abort, so a violated one is reported like a crash.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <zeroclip/error.hpp>

#ifndef ZEROCLIP_SOURCE_DIR
#define ZEROCLIP_SOURCE_DIR "."
#endif

/// Aborts with a message when an accepted input breaks a documented guarantee.
#define FUZZ_CHECK(cond)                                                                    \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            std::fprintf(stderr, "%s:%d: invariant violated: %s\n", __FILE__, __LINE__, #cond); \
            std::abort();                                                                   \
        }                                                                                   \
    } while (0)

/// Runs `body`; a zeroclip::error is the expected refusal of a malformed input and must say
/// something (a message naming the input).
template <class Body>
inline void accept_or_refuse(Body&& body) {
    try {
        body();
    } catch (const zeroclip::error& e) {
        FUZZ_CHECK(e.what() != nullptr && e.what()[0] != '\0');
    }
}
