// Hostile image input (issue 13, items 7 and 11): non-images, FIFOs and devices refused from the
// first bytes without reading them whole, decoding memory bounded by the 8-bit image size, PBM
// bitmaps decoded, PNG corruption refused as Pillow refuses it, malformed PNM headers named, the
// pixel limit enforced for every format. PNGs of every colour type, depth, filter and interlace
// are checked against stb_image's decoder (which the Pillow-made references pin down).

#include <doctest/doctest.h>

#include <zeroclip/image.hpp>

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "../test_util.hpp"

namespace {

using bytes_t = std::vector<std::uint8_t>;

std::string hostile_path(const std::string& name) {
    return (std::filesystem::temp_directory_path() / ("zeroclip_hostile_" + std::to_string(::getpid()) + "_" + name)).string();
}

void write_file(const std::string& path, const bytes_t& b) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

bytes_t to_bytes(const std::string& s) { return bytes_t(s.begin(), s.end()); }

/// The zeroclip::error a call throws (code and message); fails the test when it returns.
template <class F>
zeroclip::errc error_of(F&& f, std::string& message) {
    try {
        f();
    } catch (const zeroclip::error& e) {
        message = e.what();
        return e.code();
    }
    FAIL("expected a zeroclip::error");
    return zeroclip::errc::format;
}

void put_be32(bytes_t& b, std::uint32_t v) {
    for (int i = 3; i >= 0; --i) b.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

void add_chunk(bytes_t& png, const char* type, const bytes_t& data) {
    put_be32(png, static_cast<std::uint32_t>(data.size()));
    const std::size_t at = png.size();
    png.insert(png.end(), type, type + 4);
    png.insert(png.end(), data.begin(), data.end());
    put_be32(png, static_cast<std::uint32_t>(crc32(0L, png.data() + at, static_cast<uInt>(data.size() + 4))));
}

bytes_t ihdr(std::uint32_t w, std::uint32_t h, int depth, int colour, int interlace) {
    bytes_t d;
    put_be32(d, w);
    put_be32(d, h);
    d.insert(d.end(), {static_cast<std::uint8_t>(depth), static_cast<std::uint8_t>(colour), 0, 0,
                       static_cast<std::uint8_t>(interlace)});
    return d;
}

int png_samples(int colour) { return colour == 0 || colour == 3 ? 1 : colour == 2 ? 3 : colour == 4 ? 2 : 4; }

/// A PNG with random pixels, random row filters, the zlib stream split over random IDAT chunks.
bytes_t random_png(std::mt19937& rng, std::uint32_t w, std::uint32_t h, int depth, int colour, int interlace,
                   int level = 6) {
    static constexpr int adam7[7][4] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4},
                                        {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}};
    const std::size_t bits = static_cast<std::size_t>(png_samples(colour) * depth);
    const std::size_t bpp = bits < 8 ? 1 : bits / 8;
    bytes_t raw;  // filtered scanlines, pass after pass
    for (int p = 0; p < (interlace ? 7 : 1); ++p) {
        const std::uint32_t x0 = interlace ? adam7[p][0] : 0, y0 = interlace ? adam7[p][1] : 0;
        const std::uint32_t dx = interlace ? adam7[p][2] : 1, dy = interlace ? adam7[p][3] : 1;
        if (w <= x0 || h <= y0) continue;
        const std::size_t n = ((w - x0 + dx - 1) / dx * bits + 7) / 8;
        bytes_t prior(n, 0), row(n);
        for (std::uint32_t y = y0; y < h; y += dy) {
            for (auto& v : row) v = static_cast<std::uint8_t>(rng() % 4 == 0 ? 255 : rng());
            const int f = static_cast<int>(rng() % 5);
            raw.push_back(static_cast<std::uint8_t>(f));
            for (std::size_t i = 0; i < n; ++i) {
                const int a = i >= bpp ? row[i - bpp] : 0, b = prior[i], c = i >= bpp ? prior[i - bpp] : 0;
                const int pp = a + b - c, pa = std::abs(pp - a), pb = std::abs(pp - b), pc = std::abs(pp - c);
                const int pred = f == 0 ? 0 : f == 1 ? a : f == 2 ? b : f == 3 ? (a + b) / 2
                               : (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
                raw.push_back(static_cast<std::uint8_t>(row[i] - pred));
            }
            prior = row;
        }
    }
    uLongf zlen = compressBound(static_cast<uLong>(raw.size()));
    bytes_t z(zlen);
    REQUIRE(compress2(z.data(), &zlen, raw.data(), static_cast<uLong>(raw.size()), level) == Z_OK);
    z.resize(zlen);
    bytes_t png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    add_chunk(png, "IHDR", ihdr(w, h, depth, colour, interlace));
    if (colour == 3) {
        bytes_t pal(3u << depth);
        for (auto& v : pal) v = static_cast<std::uint8_t>(rng());
        add_chunk(png, "PLTE", pal);
    }
    add_chunk(png, "tEXt", to_bytes(std::string("Comment\0zeroclip", 16)));
    for (std::size_t at = 0; at < z.size();) {  // random IDAT sizes, so the trailer may straddle two
        const std::size_t n = std::min<std::size_t>(z.size() - at, 1 + rng() % 64);
        add_chunk(png, "IDAT", bytes_t(z.begin() + static_cast<std::ptrdiff_t>(at), z.begin() + static_cast<std::ptrdiff_t>(at + n)));
        at += n;
    }
    add_chunk(png, "IEND", {});
    return png;
}

/// Peak resident memory growth (bytes) of running `f` in a child process.
template <class F>
long child_peak_growth(F&& f) {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(fds[0]);
        struct rusage before {}, after {};
        ::getrusage(RUSAGE_SELF, &before);
        long growth = -1;
        try {
            f();
            ::getrusage(RUSAGE_SELF, &after);
            growth = (after.ru_maxrss - before.ru_maxrss) * 1024L;
        } catch (...) {
        }
        if (::write(fds[1], &growth, sizeof growth) != static_cast<ssize_t>(sizeof growth)) _exit(1);
        _exit(0);
    }
    ::close(fds[1]);
    long growth = -2;
    if (::read(fds[0], &growth, sizeof growth) != static_cast<ssize_t>(sizeof growth)) growth = -3;
    ::close(fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return growth;
}

}  // namespace

TEST_CASE("image hostile: a huge non-image is refused from its first bytes, not read whole") {
    const std::string path = hostile_path("big.bin");
    {
        std::ofstream out(path, std::ios::binary);
        out << "this is a text file, not an image\n";
    }
    REQUIRE(::truncate(path.c_str(), 1900LL * 1000 * 1000) == 0);  // sparse: costs no disk
    std::string msg;
    const long growth = child_peak_growth([&] {
        try {
            zeroclip::decode_image_file(path);
        } catch (const zeroclip::error&) {
        }
    });
    CHECK(error_of([&] { zeroclip::decode_image_file(path); }, msg) == zeroclip::errc::image_decode);
    CHECK(msg.find(path) != std::string::npos);
    CHECK(msg.find("not an image") != std::string::npos);
    CHECK(growth >= 0);
    CHECK(growth < 64L << 20);
    std::remove(path.c_str());
}

TEST_CASE("image hostile: FIFOs and devices are refused without blocking or reading") {
    std::string msg;
    CHECK(error_of([&] { zeroclip::decode_image_file("/dev/zero"); }, msg) == zeroclip::errc::io);
    CHECK(msg.find("/dev/zero") != std::string::npos);
    CHECK(msg.find("not a regular file") != std::string::npos);
    const std::string fifo = hostile_path("fifo.png");
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    CHECK(error_of([&] { zeroclip::decode_image_file(fifo); }, msg) == zeroclip::errc::io);  // hung before
    CHECK(msg.find(fifo) != std::string::npos);
    std::remove(fifo.c_str());
}

TEST_CASE("image hostile: a 16-bit RGBA PNG decodes and preprocesses within twice its 8-bit RGB size") {
    // 3000 x 3000, 16-bit RGBA: 72 MB of samples, 27 MB as 8-bit RGB. stb_image held the
    // inflated 16-bit data, a 16-bit copy and an 8-bit copy at once (over 5x), preprocessing
    // a premultiplied copy on top.
    const std::uint32_t w = 3000, h = 3000;
    const std::string path = hostile_path("rgba16.png");
    {
        z_stream zs{};
        REQUIRE(deflateInit(&zs, 1) == Z_OK);
        bytes_t row(1 + std::size_t{w} * 8), z(1 << 16), idat;
        for (std::size_t i = 1; i < row.size(); ++i) row[i] = static_cast<std::uint8_t>(i * 7 % 251);
        for (std::uint32_t y = 0; y < h; ++y) {
            zs.next_in = row.data();
            zs.avail_in = static_cast<uInt>(row.size());
            const int flush = y + 1 == h ? Z_FINISH : Z_NO_FLUSH;
            do {
                zs.next_out = z.data();
                zs.avail_out = static_cast<uInt>(z.size());
                deflate(&zs, flush);
                idat.insert(idat.end(), z.data(), z.data() + (z.size() - zs.avail_out));
            } while (zs.avail_out == 0);
        }
        deflateEnd(&zs);
        bytes_t png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
        add_chunk(png, "IHDR", ihdr(w, h, 16, 6, 0));
        add_chunk(png, "IDAT", idat);
        add_chunk(png, "IEND", {});
        write_file(path, png);
    }
    const long rgb_size = static_cast<long>(w) * h * 3;
#if defined(__SANITIZE_ADDRESS__)
    MESSAGE("AddressSanitizer build: its quarantine and redzones inflate memory, bound not checked");
    std::remove(path.c_str());
    return;
#endif
    const long growth = child_peak_growth([&] {
        const zeroclip::decoded_image im = zeroclip::decode_image_file(path);
        if (im.mode != zeroclip::pixel_mode::rgba || im.pixels[4] != 9 * 7 % 251) throw 1;
        zeroclip::preprocess_options o;
        (void)zeroclip::preprocess_crop(im, o);
        o.hf_order = true;
        (void)zeroclip::preprocess_crop(im, o);
    });
    MESSAGE("peak growth " << growth / 1048576 << " MiB for an 8-bit RGB size of " << rgb_size / 1048576 << " MiB");
    CHECK(growth > 0);
    CHECK(growth <= 2 * rgb_size);
    std::remove(path.c_str());
}

TEST_CASE("image hostile: PBM bitmaps (P4 raw, P1 plain) decode as Pillow's mode 1") {
    // Pillow: a set bit / '1' is black (0), a clear bit / '0' white (255); rows padded to bytes.
    const bytes_t raw = {'P', '4', '\n', '#', ' ', 'c', '\n', '3', ' ', '2', '\n', 0xA0, 0x40};
    const auto a = zeroclip::decode_image_memory(raw.data(), raw.size(), "a.pbm");
    CHECK(a.mode == zeroclip::pixel_mode::bilevel);
    CHECK(a.format == "PNM");
    CHECK(a.width == 3);
    CHECK(a.height == 2);
    CHECK(a.pixels == bytes_t{0, 255, 0, 255, 0, 255});
    const bytes_t plain = to_bytes("P1\n3 2\n1 0 1 # comment\n010\n");
    const auto b = zeroclip::decode_image_memory(plain.data(), plain.size(), "b.pbm");
    CHECK(b.mode == zeroclip::pixel_mode::bilevel);
    CHECK(b.pixels == a.pixels);
    CHECK(zeroclip::to_rgb(b).pixels == bytes_t{0, 0, 0, 255, 255, 255, 0, 0, 0, 255, 255, 255, 0, 0, 0, 255, 255, 255});
    std::string msg;
    const bytes_t bad = to_bytes("P1\n3 2\n1 0 2 0 1 0\n");
    CHECK(error_of([&] { zeroclip::decode_image_memory(bad.data(), bad.size(), "bad.pbm"); }, msg) ==
          zeroclip::errc::image_decode);
    CHECK(msg.find("bad.pbm") != std::string::npos);
    const bytes_t short_raw = {'P', '4', '\n', '9', ' ', '4', '\n', 0, 0, 0};
    CHECK(error_of([&] { zeroclip::decode_image_memory(short_raw.data(), short_raw.size(), "short.pbm"); }, msg) ==
          zeroclip::errc::image_decode);
    CHECK(msg.find("truncated") != std::string::npos);
}

TEST_CASE("image hostile: malformed PNM headers are refused, naming the field") {
    struct bad_case {
        const char* text;
        const char* expect;
    };
    for (const bad_case& c : {bad_case{"P6\n4 4\n0\n", "maxval"}, bad_case{"P6\n-5 3\n255\n", "width '-5'"},
                              bad_case{"P5\n3 -2\n255\n", "height '-2'"}, bad_case{"P6\n4 4\n70000\n", "maxval 70000"},
                              bad_case{"P5\n0 4\n255\n", "width 0"}, bad_case{"P6\n4 4\n", "maxval"}}) {
        CAPTURE(c.text);
        bytes_t b = to_bytes(c.text);
        b.resize(b.size() + 64, 9);
        if (std::string(c.text) == "P6\n4 4\n") b = to_bytes(c.text);  // header cut before maxval
        std::string msg;
        CHECK(error_of([&] { zeroclip::decode_image_memory(b.data(), b.size(), "x.ppm"); }, msg) ==
              zeroclip::errc::image_decode);
        CHECK(msg.find("x.ppm") != std::string::npos);
        CHECK(msg.find(c.expect) != std::string::npos);
    }
}

TEST_CASE("image hostile: PNG corruption is refused as Pillow refuses it, naming the file") {
    std::mt19937 rng(5);
    // Stored (level 0) deflate: a changed byte is still a valid stream; only Adler-32 sees it.
    const bytes_t good = random_png(rng, 40, 30, 8, 2, 0, 0);
    CHECK(zeroclip::decode_image_memory(good.data(), good.size(), "good.png").width == 40);
    bytes_t png = good;
    std::size_t idat = 0;
    for (std::size_t i = 8; i + 8 < png.size(); ++i)
        if (std::memcmp(png.data() + i + 4, "IDAT", 4) == 0) {
            idat = i;
            break;
        }
    REQUIRE(idat > 0);
    png[idat + 8 + 40] ^= 0x55;  // inside the first IDAT's stored data; its CRC left wrong, as Pillow ignores it
    std::string msg;
    CHECK(error_of([&] { zeroclip::decode_image_memory(png.data(), png.size(), "flip.png"); }, msg) ==
          zeroclip::errc::image_decode);
    CHECK(msg.find("flip.png") != std::string::npos);
    CHECK(msg.find("corrupt") != std::string::npos);

    // A damaged deflate stream (compressed, level 9): zlib reports it.
    const bytes_t deflated = random_png(rng, 64, 64, 8, 6, 0, 9);
    std::vector<std::size_t> stream;  // offsets of the zlib stream's bytes in the file
    for (std::size_t i = 8; i + 12 <= deflated.size();) {
        const std::size_t len = (std::size_t{deflated[i]} << 24) | (std::size_t{deflated[i + 1]} << 16) |
                                (std::size_t{deflated[i + 2]} << 8) | deflated[i + 3];
        if (std::memcmp(deflated.data() + i + 4, "IDAT", 4) == 0)
            for (std::size_t k = 0; k < len; ++k) stream.push_back(i + 8 + k);
        i += 12 + len;
    }
    REQUIRE(stream.size() > 100);
    int refused = 0;
    for (int trial = 0; trial < 20; ++trial) {
        bytes_t p = deflated;
        p[stream[2 + static_cast<std::size_t>(trial) * (stream.size() - 3) / 20]] ^= 0x10;
        try {
            zeroclip::decode_image_memory(p.data(), p.size(), "z.png");
        } catch (const zeroclip::error& e) {
            refused += e.code() == zeroclip::errc::image_decode;
        }
    }
    CHECK(refused == 20);

    // A bad CRC in a chunk before the image data (Pillow: "broken PNG file (bad header checksum)").
    png = good;
    const std::size_t text = idat - 12 - 16;  // the tEXt chunk just before the first IDAT
    REQUIRE(std::memcmp(png.data() + text + 4, "tEXt", 4) == 0);
    png[text + 8] ^= 1;
    CHECK(error_of([&] { zeroclip::decode_image_memory(png.data(), png.size(), "crc.png"); }, msg) ==
          zeroclip::errc::image_decode);
    CHECK(msg.find("bad CRC in chunk 'tEXt'") != std::string::npos);

    // Rows missing, and an unknown row filter.
    png = random_png(rng, 16, 16, 8, 0, 0, 0);
    bytes_t cut(png.begin(), png.begin() + static_cast<std::ptrdiff_t>(png.size() / 2));
    CHECK(error_of([&] { zeroclip::decode_image_memory(cut.data(), cut.size(), "cut.png"); }, msg) ==
          zeroclip::errc::image_decode);
    CHECK(msg.find("cut.png") != std::string::npos);
}

TEST_CASE("image hostile: palette indices past PLTE read Pillow's grey ramp (stb read uninitialised memory)") {
    bytes_t png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    add_chunk(png, "IHDR", ihdr(4, 1, 8, 3, 0));
    add_chunk(png, "PLTE", {10, 20, 30, 40, 50, 60});
    const bytes_t raw = {0, 0, 1, 200, 255};
    uLongf zlen = compressBound(static_cast<uLong>(raw.size()));
    bytes_t z(zlen);
    REQUIRE(compress2(z.data(), &zlen, raw.data(), static_cast<uLong>(raw.size()), 9) == Z_OK);
    z.resize(zlen);
    add_chunk(png, "IDAT", z);
    add_chunk(png, "IEND", {});
    const auto im = zeroclip::decode_image_memory(png.data(), png.size(), "short_palette.png");
    CHECK(im.mode == zeroclip::pixel_mode::p);
    CHECK(im.pixels == bytes_t{10, 20, 30, 40, 50, 60, 200, 200, 200, 255, 255, 255});  // Pillow 9.4's convert("RGB")
}

TEST_CASE("image hostile: a PNG wider than 262144 pixels decodes, other formats say why they cannot") {
    std::mt19937 rng(6);
    const bytes_t png = random_png(rng, 300000, 1, 8, 0, 0, 6);
    const auto im = zeroclip::decode_image_memory(png.data(), png.size(), "wide.png");
    CHECK(im.width == 300000);
    CHECK(im.mode == zeroclip::pixel_mode::l);
    // A BMP header declaring 300000 x 1: stb cannot, and says so in words.
    bytes_t bmp = test_util::bmp_header(300000, 1);
    bmp.resize(54 + 900000, 0);
    std::string msg;
    CHECK(error_of([&] { zeroclip::decode_image_memory(bmp.data(), bmp.size(), "wide.bmp"); }, msg) ==
          zeroclip::errc::image_decode);
    CHECK(msg.find("wide.bmp") != std::string::npos);
    CHECK(msg.find("too large for the decoder") != std::string::npos);
}

TEST_CASE("image hostile: the pixel limit holds for every format, from the header alone") {
    std::vector<std::pair<std::string, bytes_t>> bombs;
    {
        bytes_t png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
        add_chunk(png, "IHDR", ihdr(50000, 50000, 16, 6, 1));
        bombs.emplace_back("bomb.png", png);
    }
    bombs.emplace_back("bomb.gif", bytes_t{'G', 'I', 'F', '8', '9', 'a', 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, ';'});
    bombs.emplace_back("bomb.jpg", bytes_t{0xFF, 0xD8, 0xFF, 0xC0, 0, 17, 8, 0xFF, 0xFF, 0xFF, 0xFF, 3, 1, 0x22, 0, 2,
                                           0x11, 1, 3, 0x11, 1, 0xFF, 0xDA});
    bombs.emplace_back("bomb.ppm", to_bytes("P6\n50000 50000\n255\n"));
    bombs.emplace_back("bomb.pbm", to_bytes("P4\n50000 50000\n"));
    bombs.emplace_back("bomb.pgm", to_bytes("P5\n50000 50000\n65535\n"));
    bombs.emplace_back("bomb.tga", bytes_t{0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 24, 0});
    for (auto& [name, b] : bombs) {
        CAPTURE(name);
        b.resize(b.size() + 256, 0);
        std::string msg;
        CHECK(error_of([&] { zeroclip::decode_image_memory(b.data(), b.size(), name); }, msg) ==
              zeroclip::errc::image_decode);
        CHECK(msg.find(name) != std::string::npos);
        CHECK(msg.find("over the limit") != std::string::npos);
    }
}

TEST_CASE("image hostile: PNGs of every colour type, depth, filter and interlace decode as stb_image does") {
    std::mt19937 rng(11);
    const std::pair<int, int> kinds[] = {{0, 1}, {0, 2}, {0, 4}, {0, 8}, {0, 16}, {2, 8}, {2, 16}, {3, 1}, {3, 2},
                                         {3, 4}, {3, 8}, {4, 8}, {4, 16}, {6, 8}, {6, 16}};
    int compared = 0;
    for (int trial = 0; trial < 120; ++trial) {
        const auto [colour, depth] = kinds[trial % 15];
        const std::uint32_t w = 1 + rng() % 37, h = 1 + rng() % 29;
        const int interlace = (trial / 15) % 2;
        CAPTURE(colour);
        CAPTURE(depth);
        CAPTURE(w);
        CAPTURE(h);
        CAPTURE(interlace);
        const bytes_t png = random_png(rng, w, h, depth, colour, interlace);
        const auto ours = zeroclip::decode_image_memory(png.data(), png.size(), "r.png");
        int sw = 0, sh = 0, sc = 0;
        if (ours.mode == zeroclip::pixel_mode::i) {
            zc_stbi_us* px = zc_stbi_load_16_from_memory(png.data(), static_cast<int>(png.size()), &sw, &sh, &sc, 1);
            REQUIRE(px);
            std::vector<std::int32_t> theirs(px, px + w * h);
            zc_stbi_image_free(px);
            CHECK(ours.values == theirs);
        } else {
            const int c = zeroclip::pixel_mode_channels(ours.mode);
            zc_stbi_uc* px = zc_stbi_load_from_memory(png.data(), static_cast<int>(png.size()), &sw, &sh, &sc, c);
            REQUIRE(px);
            const bytes_t theirs(px, px + w * h * static_cast<std::uint32_t>(c));
            zc_stbi_image_free(px);
            CHECK(ours.pixels == theirs);
        }
        ++compared;
    }
    CHECK(compared == 120);
}
