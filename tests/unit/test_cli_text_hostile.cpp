// Hostile text reaching the prompt builder, the classifier and the CLI's text escaping: templates
// naming the class twice, labels files that are folders or devices or start with a BOM, duplicate
// and over-long labels, rows that cannot be ranked, non-finite temperatures, names with newlines
// and bytes that are not UTF-8.
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <zeroclip/zeroclip.hpp>

#include "../../examples/cli/text.hpp"
#include "../test_util.hpp"

using namespace zeroclip;

namespace {

std::string write_text(const std::string& dir, const std::string& name, const std::string& bytes) {
    const std::string path = dir + "/" + name;
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
}

const model& toy_model() {
    static const model m = load_model(test_util::source_dir() + "/examples/models/zeroclip-toy-vit.safetensors");
    return m;
}

}  // namespace

TEST_CASE("a template names the class at every {}") {
    CHECK(fill_template("a {} next to another {}.", "cat") == "a cat next to another cat.");
    CHECK(fill_template("{}{}", "x") == "xx");
    CHECK(fill_template("{} only", "dog") == "dog only");
    CHECK_THROWS_AS(fill_template("", "dog"), zeroclip::error);
}

TEST_CASE("labels files: BOM dropped, non-regular files and blank files refused") {
    const std::string dir = test_util::temp_dir("labels");
    CHECK(read_lines_file(write_text(dir, "bom.txt", "\xEF\xBB\xBF" "cat\r\ndog\n")) ==
          std::vector<std::string>{"cat", "dog"});
    CHECK_THROWS_WITH_AS(read_lines_file(dir, "labels file"), doctest::Contains("is a directory"), zeroclip::error);
    CHECK_THROWS_WITH_AS(read_lines_file("/dev/zero", "labels file"), doctest::Contains("not a regular file"),
                         zeroclip::error);
    const std::string fifo = dir + "/fifo.txt";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    CHECK_THROWS_WITH_AS(read_lines_file(fifo, "labels file"), doctest::Contains("not a regular file"), zeroclip::error);
    try {
        read_lines_file(write_text(dir, "blank.txt", "\n  \n\t\n# only a comment\n"), "labels file");
        FAIL("a file of blank lines was accepted");
    } catch (const zeroclip::error& e) {
        CHECK(e.code() == errc::invalid_argument);
        CHECK(std::string(e.what()).find("no entries in this labels file") != std::string::npos);
    }
    CHECK_THROWS_WITH_AS(split_labels("  "), doctest::Contains("empty"), zeroclip::error);
}

TEST_CASE("a label given twice is refused, by name") {
    CHECK_NOTHROW(check_distinct_labels({"cat", "dog"}));
    CHECK_THROWS_WITH_AS(check_distinct_labels({"cat", "dog", "cat"}), doctest::Contains("'cat' is given twice"),
                         zeroclip::error);
    const model& m = toy_model();
    CHECK_THROWS_WITH_AS(zero_shot_classifier<cpu_backend>(m, {"red circle", "blue square", "red circle"}),
                         doctest::Contains("given twice"), zeroclip::error);
    // The tokenizer lowercases and collapses spaces: these are one class to the model.
    CHECK_THROWS_WITH_AS(zero_shot_classifier<cpu_backend>(m, {"Red Circle", "blue square", "red  circle"}),
                         doctest::Contains("same prompt"), zeroclip::error);
}

TEST_CASE("a label cut at the context length is reported by name") {
    const model& m = toy_model();
    std::string long_label;
    for (int i = 0; i < 100; ++i) long_label += "red ";
    long_label += "circle";
    zero_shot_classifier<cpu_backend> c(m, {"blue square", long_label});
    CHECK(c.cut_labels() == std::vector<std::string>{long_label});
    CHECK(texts_cut_by_context(m, {"a short one", long_label}) == std::vector<std::string>{long_label});
    CHECK(zero_shot_classifier<cpu_backend>(m, {"blue square", "red circle"}).cut_labels().empty());
}

TEST_CASE("rows that are all zeros or not finite are never ranked") {
    const model& m = toy_model();
    zero_shot_classifier<cpu_backend> c(m, {"red circle", "blue square", "green star"});
    const int64_t d = m.config().embed_dim;
    tensor rows({2, d});
    for (int64_t k = 0; k < d; ++k) rows[k] = static_cast<float>(k % 7) - 3.0f;  // row 0 fine, row 1 all zeros
    CHECK_THROWS_WITH_AS(c.classify_embeddings(rows, 2), doctest::Contains("row 1 is all zeros"), zeroclip::error);
    rows[d] = std::nanf("");
    CHECK_THROWS_WITH_AS(c.classify_embeddings(rows, 2), doctest::Contains("row 1 is not finite"), zeroclip::error);
    rows[d] = INFINITY;
    CHECK_THROWS_AS(c.classify_embeddings(rows, 2), zeroclip::error);
    for (int64_t k = 0; k < d; ++k) rows[d + k] = 1.0f;
    const auto top = c.classify_embeddings(rows, 3);
    for (const auto& image : top)
        for (const auto& p : image) CHECK((std::isfinite(p.probability) && std::isfinite(p.cosine)));
}

TEST_CASE("contrastive loss: non-finite temperature, zero rows and overflow are errors, never NaN") {
    tensor img({2, 2}, {1, 0, 0, 3});
    tensor txt({2, 2}, {2, 0, 0.6f, 0.8f});
    CHECK_THROWS_AS(contrastive_loss(img, txt, INFINITY), zeroclip::error);
    CHECK_THROWS_AS(contrastive_loss(img, txt, std::nan("")), zeroclip::error);
    CHECK_THROWS_AS(contrastive_loss(img, txt, -1.0), zeroclip::error);
    CHECK_THROWS_WITH_AS(contrastive_loss(img, txt, 1e-320), doctest::Contains("not finite"), zeroclip::error);
    tensor zero_row({2, 2}, {1, 0, 0, 0});
    CHECK_THROWS_WITH_AS(contrastive_loss(zero_row, txt, 0.5), doctest::Contains("all zeros"), zeroclip::error);
    CHECK(std::isfinite(contrastive_loss(img, txt, 0.5).loss));
}

TEST_CASE("CLI text escaping: one line, valid UTF-8, exactly reversible") {
    using zeroclip_cli::escape_text;
    using zeroclip_cli::unescape_text;
    CHECK(escape_text("photo.png") == "photo.png");
    CHECK(escape_text("caf\xC3\xA9 \xE2\x82\xAC.png") == "caf\xC3\xA9 \xE2\x82\xAC.png");  // UTF-8 is kept
    CHECK(escape_text("a\nb\r\tc\\d") == "a\\nb\\r\\tc\\\\d");
    CHECK(escape_text("bad\xFF\xFE.png") == "bad\\xff\\xfe.png");
    CHECK(escape_text("\x1B[31m") == "\\x1b[31m");            // a terminal escape code
    CHECK(escape_text("\xC2\x9B" "x") == "\\xc2\\x9bx");      // C1 control (CSI)
    CHECK(escape_text("\xED\xA0\x80") == "\\xed\\xa0\\x80");  // a UTF-16 surrogate is not UTF-8
    std::string every_byte;
    for (int i = 0; i < 256; ++i) every_byte += static_cast<char>(i);
    const std::string escaped = escape_text(every_byte + "\\x41\\");
    CHECK(escaped.find('\n') == std::string::npos);
    CHECK(zeroclip_cli::is_valid_utf8(escaped));
    CHECK(unescape_text(escaped) == every_byte + "\\x41\\");
    CHECK_FALSE(unescape_text("trailing\\").has_value());
    CHECK_FALSE(unescape_text("\\q").has_value());
    CHECK_FALSE(unescape_text("\\x4").has_value());
    CHECK_FALSE(unescape_text("\\xzz").has_value());
}

TEST_CASE("CLI JSON text: valid UTF-8 plus the exact bytes in hex when the name is not UTF-8") {
    nlohmann::json j = nlohmann::json::object();
    zeroclip_cli::put_text(j, "path", "ok.png");
    CHECK(j.dump() == R"({"path":"ok.png"})");
    nlohmann::json bad = nlohmann::json::object();
    zeroclip_cli::put_text(bad, "path", "bad\xFF.png");
    CHECK(bad["path"] == "bad\xEF\xBF\xBD.png");
    CHECK(bad["path_hex"] == "626164ff2e706e67");
    CHECK_NOTHROW(bad.dump());
    nlohmann::json raw = {{"label", std::string("\xFF\xFE")}};
    CHECK_THROWS(raw.dump());  // what nlohmann does without put_text / dump_json
    CHECK(zeroclip_cli::dump_json(raw) == "{\"label\":\"\xEF\xBF\xBD\xEF\xBF\xBD\"}");
}
