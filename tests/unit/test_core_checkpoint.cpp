// Hostile checkpoints and non-finite numbers: NaN/inf weights are caught at load, a logit_scale
// whose exp overflows is refused, a non-finite result of an encoder or of the logits is an error
// (never a NaN printed or ranked), a file of another kind says what it is, a tensor of an integer
// dtype says so, an empty merges.txt or a malformed vocab.json is an error, a FIFO never blocks.
#include <zeroclip/zeroclip.hpp>

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "../test_util.hpp"

using namespace zeroclip;

namespace {

const std::string tiny_hf = test_util::fixtures() + "/models/tiny-vit/hf";

std::string copy_tiny_vit(const std::string& tag) {
    std::string dir = test_util::temp_dir(tag);
    for (const char* f : {"config.json", "vocab.json", "merges.txt", "model.safetensors"}) {
        std::ifstream in(tiny_hf + "/" + f, std::ios::binary);
        std::ofstream(dir + "/" + f, std::ios::binary) << in.rdbuf();
    }
    return dir;
}

// The fixture's float tensors, as float32 values to be written back with `type`.
std::map<std::string, tensor_to_write> tiny_tensors(dtype type) {
    auto original = safetensors_file::open(tiny_hf + "/model.safetensors");
    std::map<std::string, tensor_to_write> tensors;
    for (const auto& [name, r] : original.tensors())
        if (r.type == dtype::f16) tensors[name] = {original.to_float(r).clone(), type};
    return tensors;
}

// load_model(path) fails with `code`, naming `path`-ish text and every needle.
void expect_load_error(const std::string& path, errc code, std::initializer_list<std::string> needles) {
    try {
        load_model(path);
        FAIL("loaded " << path);
    } catch (const zeroclip::error& e) {
        const std::string what = e.what();
        CHECK_MESSAGE(e.code() == code, what);
        for (const auto& n : needles) CHECK_MESSAGE(what.find(n) != std::string::npos, "no '" << n << "' in " << what);
        CHECK_MESSAGE(what.find("may be truncated") == std::string::npos, what);
    }
}

}  // namespace

TEST_CASE("NaN and infinite weights are found at load, naming the file and the tensor") {
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    for (dtype type : {dtype::f16, dtype::bf16, dtype::f32}) {
        for (float bad : {nan, inf, -inf}) {
            CAPTURE(dtype_name(type));
            CAPTURE(bad);
            const std::string dir = copy_tiny_vit("nan");
            auto tensors = tiny_tensors(type);
            tensor& w = tensors.at("vision_model.encoder.layers.1.mlp.fc2.weight").values;
            w[w.numel() - 3] = bad;
            save_safetensors(dir + "/model.safetensors", tensors);
            expect_load_error(dir, errc::format,
                              {dir + "/model.safetensors", "'vision_model.encoder.layers.1.mlp.fc2.weight'",
                               "NaN or infinite", "index " + std::to_string(w.numel() - 3)});
        }
    }
    // A float16 value above 65504 becomes infinity when written: caught the same way.
    const std::string dir = copy_tiny_vit("f16inf");
    auto tensors = tiny_tensors(dtype::f16);
    tensors.at("text_projection.weight").values[0] = 1e6f;
    save_safetensors(dir + "/model.safetensors", tensors);
    expect_load_error(dir, errc::format, {"'text_projection.weight'", "NaN or infinite"});
}

TEST_CASE("the non-finite scan finds the first bad value at every position, vector steps and tails") {
    // F32, F16 and BF16 patterns of 1.0, +infinity and a NaN, each width's own bits.
    struct kind {
        int width;
        bool bf16;
        uint32_t one, inf, nan;
    };
    for (const kind& k : {kind{4, false, 0x3f800000u, 0x7f800000u, 0x7fc00001u}, kind{2, false, 0x3c00u, 0x7c00u, 0xfe01u},
                          kind{2, true, 0x3f80u, 0x7f80u, 0xffc1u}}) {
        for (int64_t n : {1, 7, 16, 33, 70}) {
            std::vector<unsigned char> bytes(static_cast<size_t>(n * k.width));
            auto put = [&](int64_t i, uint32_t v) { std::memcpy(bytes.data() + i * k.width, &v, static_cast<size_t>(k.width)); };
            for (int64_t i = 0; i < n; ++i) put(i, k.one);
            CHECK(detail::first_non_finite(bytes.data(), n, k.width, k.bf16) == -1);
            for (int64_t bad = 0; bad < n; ++bad) {
                CAPTURE(k.width);
                CAPTURE(n);
                CAPTURE(bad);
                put(bad, bad % 2 ? k.inf : k.nan);
                if (bad + 2 < n) put(bad + 2, k.inf);  // a later one does not hide the first
                CHECK(detail::first_non_finite(bytes.data(), n, k.width, k.bf16) == bad);
                for (int64_t i = 0; i < n; ++i) put(i, k.one);
            }
        }
    }
}

TEST_CASE("a logit_scale whose exp() overflows float is refused") {
    const std::string dir = copy_tiny_vit("logit_scale");
    auto tensors = tiny_tensors(dtype::f32);
    tensors.at("logit_scale").values[0] = 89.0f;  // exp(89) > FLT_MAX
    save_safetensors(dir + "/model.safetensors", tensors);
    expect_load_error(dir, errc::format, {"'logit_scale'", "89.0", "not a finite float"});
    tensors.at("logit_scale").values[0] = 88.0f;  // large but finite: accepted
    save_safetensors(dir + "/model.safetensors", tensors);
    CHECK(std::isfinite(load_model(dir).logit_scale()));
}

TEST_CASE("non-finite results raise errors instead of NaN embeddings, logits or probabilities") {
    const model m = load_model(tiny_hf);
    const int64_t s = m.config().vision.image_size;
    tensor pixels({2, 3, s, s});
    pixels[pixels.numel() - 1] = std::numeric_limits<float>::quiet_NaN();  // in row 1
    CHECK_THROWS_WITH_AS(m.encode_image(pixels), doctest::Contains("image embedding of row 1 is not finite"),
                         zeroclip::error);
    pixels[pixels.numel() - 1] = 3e38f;  // finite, but float may overflow inside the encoder
    try {
        for (float v : m.encode_image(pixels)) CHECK(std::isfinite(v));  // finite, or else an error
    } catch (const zeroclip::error& e) {
        CHECK(e.code() == errc::invalid_argument);
    }
    pixels[pixels.numel() - 1] = 0.5f;
    const tensor good = m.encode_image(pixels);
    for (float v : good) REQUIRE(std::isfinite(v));

    const tensor text = m.encode_text(m.tokenize({"a cat", "a dog"}));
    tensor bad = good.clone();
    bad[1] = std::numeric_limits<float>::infinity();
    CHECK_THROWS_WITH_AS(m.logits_per_image(bad, text), doctest::Contains("logit"), zeroclip::error);
    zero_shot_classifier<cpu_backend> classifier(m, {"cat", "dog"});
    CHECK_THROWS_WITH_AS(classifier.classify_embeddings(bad, 1), doctest::Contains("not finite"), zeroclip::error);
    CHECK(classifier.classify_embeddings(good, 1).size() == 2);
    CHECK_THROWS_AS(contrastive_loss(good, text, std::numeric_limits<double>::infinity()), zeroclip::error);
    CHECK_THROWS_WITH_AS(contrastive_loss(bad, text, 0.07), doctest::Contains("not finite"), zeroclip::error);
    tensor zero_row = good.clone();
    for (int64_t i = 0; i < zero_row.dim(1); ++i) zero_row[i] = 0;
    CHECK_THROWS_AS(contrastive_loss(zero_row, text, 0.07), zeroclip::error);
}

TEST_CASE("encode_image refuses pixel tensors whose shape overflows or does not match, before reading them") {
    const model m = load_model(tiny_hf);
    const float one = 1.0f;
    auto owner = std::make_shared<float>(one);
    // A view claiming 2^56 images over one float: the product wraps to 0 in 64 bits.
    const tensor lying = tensor::view({int64_t{1} << 56, 3, 64, 64}, owner, owner.get());
    CHECK_THROWS_WITH_AS(m.encode_image(lying), doctest::Contains("more elements than fit in 64 bits"), zeroclip::error);
    CHECK_THROWS_AS(m.encode_image(tensor({1, 3, 48, 48})), zeroclip::error);
    CHECK_THROWS_AS(m.encode_image(tensor({1, 1, 64, 64})), zeroclip::error);
    CHECK_THROWS_AS(m.encode_image(tensor()), zeroclip::error);
    CHECK_THROWS_WITH_AS(tensor({int64_t{1} << 62, 8}), doctest::Contains("more elements than fit"), zeroclip::error);
    CHECK_THROWS_WITH_AS(tensor({-1, 8}), doctest::Contains("negative"), zeroclip::error);
}

TEST_CASE("a file that is not a safetensors model says what it is") {
    const std::string dir = test_util::temp_dir("notmodel");
    const std::string pt = test_util::fixtures() + "/models/tiny-vit/openai_state_dict.pt";
    expect_load_error(pt, errc::format, {pt, "PyTorch", "weights_tools/convert.py"});
    const std::string png = test_util::fixtures() + "/images/chelsea.png";
    expect_load_error(png, errc::format, {png, "is an image, not a model"});
    std::ofstream(dir + "/x.jpg", std::ios::binary) << std::string("\xff\xd8\xff\xe0\x00\x10JFIF\x00", 11) << std::string(200, 'x');
    expect_load_error(dir + "/x.jpg", errc::format, {"is an image"});
    std::ofstream(dir + "/legacy.pt", std::ios::binary) << std::string("\x80\x02\x8a\x0alegacy", 10) << std::string(100, '\0');
    expect_load_error(dir + "/legacy.pt", errc::format, {"pickle", "weights_tools/convert.py"});
    // A Hugging Face folder whose model.safetensors is really a PyTorch zip.
    const std::string hf = copy_tiny_vit("hfpt");
    {
        std::ifstream in(pt, std::ios::binary);
        std::ofstream(hf + "/model.safetensors", std::ios::binary) << in.rdbuf();
    }
    expect_load_error(hf, errc::format, {hf + "/model.safetensors", "PyTorch"});
}

TEST_CASE("a FIFO or a device given as the model is refused at once") {
    const std::string dir = test_util::temp_dir("fifo_model");
    REQUIRE(::mkfifo((dir + "/m.safetensors").c_str(), 0600) == 0);
    expect_load_error(dir + "/m.safetensors", errc::io, {"not a regular file"});
    expect_load_error("/dev/zero", errc::io, {"/dev/zero", "not a regular file"});
    const std::string hf = copy_tiny_vit("fifo_config");
    std::remove((hf + "/config.json").c_str());
    REQUIRE(::mkfifo((hf + "/config.json").c_str(), 0600) == 0);
    expect_load_error(hf, errc::io, {hf + "/config.json", "not a regular file"});
}

TEST_CASE("a merges.txt without merges is an error, not per-character tokenization") {
    const std::string dir = copy_tiny_vit("merges");
    std::ofstream(dir + "/merges.txt", std::ios::binary) << "#version: 0.2\n";
    expect_load_error(dir, errc::format, {dir + "/merges.txt", "no merges"});
    std::ofstream(dir + "/merges.txt", std::ios::binary) << "#version: 0.2";  // no newline either
    expect_load_error(dir, errc::format, {"no merges"});
    std::ofstream(dir + "/merges.txt", std::ios::binary) << "\n\n";
    expect_load_error(dir, errc::format, {"no merges"});
    const std::string vocab = test_util::fixtures() + "/models/tiny-vit/hf/vocab.json";
    CHECK_THROWS_WITH_AS(tokenizer::from_hf(read_file(vocab), "#version: 0.2\n"),
                         doctest::Contains("no BPE merges"), zeroclip::error);
    CHECK_THROWS_WITH_AS(tokenizer::from_stored(""), doctest::Contains("no BPE merges"), zeroclip::error);
}

TEST_CASE("a vocab.json that is not a {string: int} object is an error") {
    const std::string merges = read_file(tiny_hf + "/merges.txt");
    for (const char* vocab : {"[1, 2, 3]", "\"vocab\"", "{\"a\": \"1\"}", "{\"a\": 1.5}", "{\"a\": true}",
                              "{\"a\": -1}", "{\"a\": 4294967296}", "{\"a\": {}}"}) {
        CAPTURE(vocab);
        try {
            tokenizer::from_hf(vocab, merges, "v.json");
            FAIL("accepted");
        } catch (const zeroclip::error& e) {
            CHECK(e.code() == errc::tokenizer);
            CHECK(std::string(e.what()).find("v.json") != std::string::npos);
        }
    }
    const std::string dir = copy_tiny_vit("vocab");
    std::ofstream(dir + "/vocab.json", std::ios::binary) << "";
    expect_load_error(dir, errc::format, {dir + "/vocab.json", "empty"});
    std::ofstream(dir + "/vocab.json", std::ios::binary) << "[\"a\", \"b\"]";
    const model m = load_model(dir);  // the tokenizer is built on first use
    CHECK_THROWS_WITH_AS(m.tokenize({"a cat"}), doctest::Contains("expected a JSON object"), zeroclip::error);
}

TEST_CASE("safetensors: a dimension above 2^63 is refused") {
    const std::string dir = test_util::temp_dir("st_dims");
    const std::string header = R"({"a": {"dtype": "F32", "shape": [9223372036854775808, 0], "data_offsets": [0, 0]}})";
    std::ofstream out(dir + "/d.safetensors", std::ios::binary);
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>((header.size() >> (8 * i)) & 0xff));
    out << header;
    out.close();
    CHECK_THROWS_WITH_AS(safetensors_file::open(dir + "/d.safetensors"), doctest::Contains("above 2^63 - 1"),
                         zeroclip::error);
}

TEST_CASE("a gzip'd BPE file that inflates without bound is stopped") {
    // 300 MiB of one byte, deflated to about 300 KB: more than the tokenizer ever reads.
    z_stream zs{};
    REQUIRE(deflateInit2(&zs, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    const std::string block(1 << 20, 'a');
    std::string gz;
    std::vector<unsigned char> out(1 << 16);
    for (int i = 0; i < 300; ++i) {
        zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(block.data()));
        zs.avail_in = static_cast<uInt>(block.size());
        const int flush = i == 299 ? Z_FINISH : Z_NO_FLUSH;
        do {
            zs.next_out = out.data();
            zs.avail_out = static_cast<uInt>(out.size());
            deflate(&zs, flush);
            gz.append(reinterpret_cast<const char*>(out.data()), out.size() - zs.avail_out);
        } while (zs.avail_out == 0);
    }
    deflateEnd(&zs);
    REQUIRE(gz.size() < (2u << 20));
    CHECK_THROWS_WITH_AS(tokenizer::from_openai_bpe_data(gz, "bomb.txt.gz"), doctest::Contains("inflates to more than"),
                         zeroclip::error);
}

TEST_CASE("a vocab.json with a few ids near 2^24 is refused, not allocated 16M entries long") {
    const std::string merges = read_file(tiny_hf + "/merges.txt");
    CHECK_THROWS_WITH_AS(
        tokenizer::from_hf(R"({"<|startoftext|>": 0, "<|endoftext|>": 16777215})", merges, "v.json"),
        doctest::Contains("far beyond"), zeroclip::error);
}
