//! libFuzzer target: the model configs. The same bytes are parsed as zeroclip's config (the
//! `zeroclip.config` metadata), as a Hugging Face config.json and as its preprocessor_config.json.
//! An accepted config must pass the loader's own range checks and survive a to_json round trip.
#include <zeroclip/io/config_json.hpp>

#include "fuzz_common.hpp"

namespace {

void check_accepted(const zeroclip::clip_config& c) {
    FUZZ_CHECK(c.embed_dim > 0 && c.vision.width > 0 && c.vision.heads > 0 && c.vision.image_size > 0);
    FUZZ_CHECK(c.text.width > 0 && c.text.heads > 0 && c.text.width % c.text.heads == 0);
    FUZZ_CHECK(c.text.layers > 0 && c.text.context_length > 0 && c.text.vocab_size > 0);
    if (!c.vision.is_resnet()) FUZZ_CHECK(c.vision.patch_size > 0 && c.vision.image_size % c.vision.patch_size == 0);
    // What zeroclip writes it must read back unchanged.
    const std::string json = zeroclip::to_json(c);
    const zeroclip::clip_config again = zeroclip::parse_zeroclip_config(json, "round trip");
    FUZZ_CHECK(zeroclip::to_json(again) == json);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    accept_or_refuse([&] { check_accepted(zeroclip::parse_zeroclip_config(text, "fuzz.safetensors")); });
    accept_or_refuse([&] { check_accepted(zeroclip::parse_hf_config(text, "", "config.json")); });
    accept_or_refuse([&] { check_accepted(zeroclip::parse_hf_config("{}", text, "config.json")); });
    return 0;
}
