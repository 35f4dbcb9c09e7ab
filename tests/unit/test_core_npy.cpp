// Hostile .npy and .npz files: every size in a header is overflow-checked before it is used, and
// every defect is an errc::format error naming the file — never a crash, std::bad_alloc or a
// std::stoll exception.
#include <zeroclip/io/npy.hpp>

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "../test_util.hpp"

using namespace zeroclip;

namespace {

// A .npy (format 1.0) with this header dictionary text, padded like numpy, and `data_bytes` zeros.
std::string npy_bytes(const std::string& dict, size_t data_bytes, unsigned char version = 1) {
    std::string header = dict;
    const size_t preamble = version == 1 ? 10 : 12;
    header.append(64 - (preamble + header.size() + 1) % 64, ' ');
    header += '\n';
    std::string out = std::string("\x93NUMPY", 6) + static_cast<char>(version) + '\0';
    out += static_cast<char>(header.size() & 0xff);
    out += static_cast<char>((header.size() >> 8) & 0xff);
    if (version != 1) out += std::string(2, '\0');
    return out + header + std::string(data_bytes, '\0');
}

std::string shape_dict(const std::string& shape, const std::string& descr = "<f4") {
    return "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
}

std::string write(const std::string& dir, const std::string& name, const std::string& bytes) {
    const std::string path = dir + "/" + name;
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
}

// A zip with one stored member; `usize`/`csize` override the sizes written in its header.
std::string zip_stored(const std::string& member_name, const std::string& data, uint32_t csize, uint32_t usize,
                       uint16_t method = 0) {
    std::string z;
    auto u16 = [&](uint32_t v) { z += static_cast<char>(v & 0xff), z += static_cast<char>((v >> 8) & 0xff); };
    auto u32 = [&](uint32_t v) { u16(v & 0xffff), u16(v >> 16); };
    u32(0x04034b50);
    u16(20), u16(0), u16(method), u16(0), u16(0);
    u32(0), u32(csize), u32(usize);
    u16(static_cast<uint32_t>(member_name.size())), u16(0);
    return z + member_name + data;
}

void expect_format_error(const std::string& path, const std::string& needle, bool npz = false) {
    try {
        if (npz) load_npz(path);
        else load_npy(path);
        FAIL("no error for " << path << " (expected: " << needle << ")");
    } catch (const zeroclip::error& e) {
        CHECK_MESSAGE(e.code() == errc::format, std::string(e.what()));
        CHECK_MESSAGE(std::string(e.what()).find(path) != std::string::npos, std::string(e.what()));
        CHECK_MESSAGE(std::string(e.what()).find(needle) != std::string::npos, std::string(e.what()));
    }
}

}  // namespace

TEST_CASE("npy: a shape whose product overflows int64 is refused, not wrapped to 0") {
    const std::string dir = test_util::temp_dir("npy_overflow");
    // The file: 2^56 x 3 x 48 x 48 floats wrap to 0 elements; 128 bytes in all.
    const std::string crash = npy_bytes(shape_dict("(72057594037927936, 3, 48, 48)"), 0);
    REQUIRE(crash.size() == 128);
    expect_format_error(write(dir, "wrap.npy", crash), "size overflows 64 bits");
    // Near 2^58: products that wrap to 0 elements, or to a small count, or whose byte count wraps.
    expect_format_error(write(dir, "n58.npy", npy_bytes(shape_dict("(288230376151711744, 3, 48, 48)"), 0)),
                        "size overflows 64 bits");
    expect_format_error(write(dir, "n58p1.npy", npy_bytes(shape_dict("(288230376151711745, 3, 48, 48)"), 27648)),
                        "size overflows 64 bits");
    expect_format_error(write(dir, "bytes.npy", npy_bytes(shape_dict("(4611686018427387904,)"), 0)),
                        "size overflows 64 bits");
    expect_format_error(write(dir, "f8.npy", npy_bytes(shape_dict("(1152921504606846976,)", "<f8"), 0)),
                        "more than 2^63 bytes");
    // 2^58 floats without a wrap: more than the file holds, refused before allocating.
    expect_format_error(write(dir, "big.npy", npy_bytes(shape_dict("(288230376151711744,)"), 0)), "truncated");
}

TEST_CASE("npy: dimensions above 2^63 and absurd digits are refused") {
    const std::string dir = test_util::temp_dir("npy_dims");
    expect_format_error(write(dir, "a.npy", npy_bytes(shape_dict("(9223372036854775808, 3)"), 0)),
                        "larger than 2^63 - 1");
    expect_format_error(write(dir, "b.npy", npy_bytes(shape_dict("(18446744073709551615,)"), 0)),
                        "larger than 2^63 - 1");
    expect_format_error(write(dir, "c.npy", npy_bytes(shape_dict("(" + std::string(400, '9') + ",)"), 0)),
                        "size overflows 64 bits");
    expect_format_error(write(dir, "d.npy", npy_bytes(shape_dict("(-3, 4)"), 0)), "malformed shape");
    expect_format_error(write(dir, "e.npy", npy_bytes(shape_dict("(3, x)"), 0)), "malformed shape");
}

TEST_CASE("npy: malformed headers and dtypes name the file") {
    const std::string dir = test_util::temp_dir("npy_header");
    expect_format_error(write(dir, "empty.npy", ""), "magic");
    expect_format_error(write(dir, "text.npy", "hello, not an array"), "magic");
    std::string long_header = npy_bytes(shape_dict("(2,)"), 8);
    long_header[8] = '\xff', long_header[9] = '\xff';  // 65535 bytes of header in a 136-byte file
    expect_format_error(write(dir, "hl.npy", long_header), "header runs past the end");
    std::string v2 = npy_bytes(shape_dict("(2,)"), 8, 2);
    v2[11] = '\x7f';  // a format-2.0 header of 2 GiB
    expect_format_error(write(dir, "v2.npy", v2), "larger than the limit");
    std::string v9 = npy_bytes(shape_dict("(2,)"), 8);
    v9[6] = 9;
    expect_format_error(write(dir, "v9.npy", v9), "unsupported format version 9");
    expect_format_error(write(dir, "be.npy", npy_bytes(shape_dict("(2,)", ">f4"), 8)), "unsupported dtype");
    expect_format_error(write(dir, "f2.npy", npy_bytes(shape_dict("(2,)", "<f2"), 4)), "unsupported dtype");
    expect_format_error(write(dir, "u.npy", npy_bytes(shape_dict("(2,)", "<U99999999999999999999"), 8)),
                        "unsupported dtype");
    expect_format_error(write(dir, "i3.npy", npy_bytes(shape_dict("(2,)", "<i3"), 6)), "unsupported dtype");
    expect_format_error(write(dir, "trunc.npy", npy_bytes(shape_dict("(4, 3)"), 47)), "needs 48");
    expect_format_error(write(dir, "noshape.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, }", 0)),
                        "no 'shape'");
}

TEST_CASE("npy: valid arrays still read, and integers that do not fit int32 are refused") {
    const std::string dir = test_util::temp_dir("npy_valid");
    tensor t({2, 3}, {1, 2, 3, 4, 5, -6.5f});
    save_npy(dir + "/t.npy", t);
    npy_array a = load_npy(dir + "/t.npy");
    CHECK(a.descr == "<f4");
    CHECK(a.shape == shape_t{2, 3});
    tensor back = a.to_float();
    CHECK(back[5] == -6.5f);
    CHECK(back[0] == 1.0f);

    std::string ints = npy_bytes(shape_dict("(2,)", "<i8"), 0);
    const int64_t values[2] = {7, int64_t{1} << 40};
    ints.append(reinterpret_cast<const char*>(values), sizeof values);
    npy_array big = load_npy(write(dir, "i8.npy", ints));
    CHECK(big.to_float()[0] == 7.0f);
    CHECK_THROWS_WITH_AS(big.to_int32(), doctest::Contains("does not fit in int32"), zeroclip::error);
}

TEST_CASE("npy: a FIFO or a folder is refused at once, never read or blocked on") {
    const std::string dir = test_util::temp_dir("npy_fifo");
    REQUIRE(::mkfifo((dir + "/pipe.npy").c_str(), 0600) == 0);
    CHECK_THROWS_WITH_AS(load_npy(dir + "/pipe.npy"), doctest::Contains("not a regular file"), zeroclip::error);
    CHECK_THROWS_WITH_AS(load_npy(dir), doctest::Contains("is a directory"), zeroclip::error);
    CHECK_THROWS_WITH_AS(load_npz(dir + "/pipe.npy"), doctest::Contains("not a regular file"), zeroclip::error);
}

TEST_CASE("npz: member sizes are checked before use") {
    const std::string dir = test_util::temp_dir("npz");
    const std::string member = npy_bytes(shape_dict("(2,)"), 8);
    SUBCASE("a good stored member reads") {
        auto arrays = load_npz(write(dir, "ok.npz", zip_stored("x.npy", member, member.size(), member.size())));
        REQUIRE(arrays.count("x"));
        CHECK(arrays.at("x").shape == shape_t{2});
    }
    SUBCASE("the overflowing shape inside an archive") {
        const std::string wrap = npy_bytes(shape_dict("(72057594037927936, 3, 48, 48)"), 0);
        expect_format_error(write(dir, "wrap.npz", zip_stored("p.npy", wrap, wrap.size(), wrap.size())),
                            "size overflows 64 bits", true);
    }
    SUBCASE("compressed size past the end of the file") {
        expect_format_error(write(dir, "past.npz", zip_stored("x.npy", member, 0xfffffff0u, 0xfffffff0u)),
                            "past the end of the file", true);
    }
    SUBCASE("a deflated member declaring 4 GiB from a few bytes is refused before allocating") {
        expect_format_error(write(dir, "bomb.npz", zip_stored("x.npy", std::string("\x03\x00", 2), 2, 0xfffffff0u, 8)),
                            "more than deflate can produce", true);
    }
    SUBCASE("corrupt deflate data") {
        expect_format_error(write(dir, "bad.npz", zip_stored("x.npy", std::string(16, '\xff'), 16, 200, 8)),
                            "corrupt deflate data", true);
    }
    SUBCASE("zip64 sizes announced without the zip64 field") {
        expect_format_error(write(dir, "z64.npz", zip_stored("x.npy", member, 0xffffffffu, 0xffffffffu)),
                            "no zip64 field", true);
    }
    SUBCASE("not a zip") { expect_format_error(write(dir, "none.npz", "PK"), "no arrays found", true); }
}
