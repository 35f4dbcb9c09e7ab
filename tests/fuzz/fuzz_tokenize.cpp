//! libFuzzer target: arbitrary bytes through CLIP's tokenizer with the real vocabulary (the
//! bundled data/bpe_simple_vocab_16e6.txt.gz): normalisation, split, BPE, tokenize and decode.
#include <zeroclip/tokenizer.hpp>

#include "fuzz_common.hpp"

namespace {

const zeroclip::tokenizer& clip_tokenizer() {
    static const zeroclip::tokenizer tok =
        zeroclip::tokenizer::from_openai_bpe(ZEROCLIP_SOURCE_DIR "/data/bpe_simple_vocab_16e6.txt.gz");
    return tok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const zeroclip::tokenizer& tok = clip_tokenizer();
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    accept_or_refuse([&] {
        const std::vector<int32_t> ids = tok.encode(text);
        for (int32_t id : ids) FUZZ_CHECK(id >= 0 && static_cast<size_t>(id) < tok.vocab_size());
        (void)tok.decode(ids);  // every id the encoder gives has a vocabulary string
        const zeroclip::tokenize_options truncate{16, true};
        const std::vector<int32_t> row = tok.tokenize_one(text, truncate);
        FUZZ_CHECK(row.size() == 16 && row[0] == tok.start_of_text());
        bool ended = false;  // an <|endoftext|> after the start, whether truncated or not
        for (size_t k = 1; k < row.size(); ++k) ended = ended || row[k] == tok.end_of_text();
        FUZZ_CHECK(ended);
        if (ids.size() + 2 > 16) {
            bool refused = false;
            try {
                (void)tok.tokenize_one(text, zeroclip::tokenize_options{16, false});
            } catch (const zeroclip::error&) {
                refused = true;
            }
            FUZZ_CHECK(refused);
        }
    });
    return 0;
}
