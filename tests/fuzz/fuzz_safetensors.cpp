//! libFuzzer target: a safetensors file (8-byte length, JSON header, tensor table, data) parsed
//! from memory, then every small float tensor converted to float32.
#include <zeroclip/io/safetensors.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    accept_or_refuse([&] {
        auto file = zeroclip::safetensors_file::from_bytes(std::vector<unsigned char>(data, data + size), "fuzz.safetensors");
        for (const auto& [name, r] : file.tensors()) {
            FUZZ_CHECK(r.nbytes <= size);
            for (int64_t d : r.shape) FUZZ_CHECK(d >= 0);
            FUZZ_CHECK(zeroclip::shape_numel(r.shape) * static_cast<int64_t>(zeroclip::dtype_size(r.type)) ==
                       static_cast<int64_t>(r.nbytes));
            if (r.nbytes > (1u << 16)) continue;
            const bool is_float = r.type == zeroclip::dtype::f32 || r.type == zeroclip::dtype::f16 ||
                                  r.type == zeroclip::dtype::bf16 || r.type == zeroclip::dtype::f64;
            zeroclip::tensor t = file.to_float(r);  // a non-float dtype must be refused
            FUZZ_CHECK(is_float);
            FUZZ_CHECK(t.numel() == zeroclip::shape_numel(r.shape));
            volatile float sink = 0;
            for (int64_t i = 0; i < t.numel(); ++i) sink = sink + t[i];
        }
        (void)file.metadata();
    });
    return 0;
}
