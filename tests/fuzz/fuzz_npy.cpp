//! libFuzzer target: a .npy file (magic, version, header dict, data) parsed from memory, then
//! its values converted as the CLI does (floats, ints or strings).
#include <zeroclip/io/npy.hpp>

#include "fuzz_common.hpp"

#ifdef ZEROCLIP_FUZZ_SKIP_KNOWN
// Campaign-only filter (never in the replay build): skips shapes whose size overflows, issue 13's
// known bug 1, so that a long run can look for other bugs until that fix is merged.
static bool known_shape_overflow(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), std::min<size_t>(size, 1 << 16));
    const size_t shape = text.find("'shape'");
    if (shape == std::string::npos) return false;
    double product = 1;
    for (size_t i = shape; i < text.size() && text[i] != ')'; ++i) {
        size_t j = i;
        while (j < text.size() && std::isdigit(static_cast<unsigned char>(text[j]))) ++j;
        if (j == i) continue;
        if (j - i > 15) return true;
        product *= std::stod(text.substr(i, j - i));
        i = j - 1;
    }
    return product > 1e12;
}
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
#ifdef ZEROCLIP_FUZZ_SKIP_KNOWN
    if (known_shape_overflow(data, size)) return 0;
#endif
    accept_or_refuse([&] {
        const zeroclip::npy_array a = zeroclip::detail::parse_npy(data, size, "fuzz.npy");
        for (int64_t d : a.shape) FUZZ_CHECK(d >= 0);
        FUZZ_CHECK(a.bytes.size() <= size);
        FUZZ_CHECK(static_cast<uint64_t>(zeroclip::shape_numel(a.shape)) * a.element_size() == a.bytes.size());
        if (a.descr[1] == 'U') {
            (void)a.to_strings();
        } else {
            zeroclip::tensor t = a.to_float();
            FUZZ_CHECK(t.numel() == zeroclip::shape_numel(a.shape));
            if (a.descr[1] != 'f') (void)a.to_int32();
        }
    });
    return 0;
}
