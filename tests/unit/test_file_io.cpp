// io/file.hpp: atomic_output (commit, discard on failure, refused targets, permissions, sync then
// commit), save_npy through it, and read_file's refusals (FIFO, folder, size limit).
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <zeroclip/zeroclip.hpp>

#include "../test_util.hpp"

using namespace zeroclip;

namespace {

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

size_t entries_in(const std::string& dir) {
    size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir)) n += e.path().filename() != "";
    return n;
}

}  // namespace

TEST_CASE("atomic_output: nothing visible before commit, then the whole file") {
    const std::string dir = test_util::temp_dir("atomic");
    const std::string path = dir + "/out.bin";
    {
        atomic_output out(path);
        out.write("hello ");
        out.write(std::string("world"));
        CHECK_FALSE(std::filesystem::exists(path));
        out.commit();
    }
    CHECK(slurp(path) == "hello world");
    CHECK(entries_in(dir) == 1);  // no temporary file left
    CHECK_THROWS_AS(write_file_atomically(path + "/x", "y"), zeroclip::error);  // a file is no folder
}

TEST_CASE("atomic_output: an exception before commit leaves the old file and no temporary") {
    const std::string dir = test_util::temp_dir("atomic");
    const std::string path = dir + "/keep.txt";
    write_file_atomically(path, "old content");
    try {
        atomic_output out(path);
        out.write("new half-writ");
        throw std::runtime_error("failure while writing");
    } catch (const std::runtime_error&) {
    }
    CHECK(slurp(path) == "old content");
    CHECK(entries_in(dir) == 1);
}

TEST_CASE("atomic_output: a full disk (file size limit) fails with the old file intact") {
    const std::string dir = test_util::temp_dir("atomic");
    const std::string path = dir + "/big.npy";
    save_npy(path, tensor({4, 4}));
    const std::string before = slurp(path);
    struct rlimit old {};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
    auto old_handler = std::signal(SIGXFSZ, SIG_IGN);  // writes past the limit fail with EFBIG
    struct rlimit small = old;
    small.rlim_cur = 4096;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
    bool threw = false;
    try {
        save_npy(path, tensor({64, 64}));  // 16 KiB
    } catch (const zeroclip::error& e) {
        threw = true;
        CHECK(e.code() == errc::io);
        CHECK(std::string(e.what()).find("unchanged") != std::string::npos);
    }
    ::setrlimit(RLIMIT_FSIZE, &old);
    std::signal(SIGXFSZ, old_handler);
    CHECK(threw);
    CHECK(slurp(path) == before);
    CHECK(entries_in(dir) == 1);
}

TEST_CASE("atomic_output: a folder or device is never a target") {
    const std::string dir = test_util::temp_dir("atomic");
    CHECK_THROWS_WITH_AS(atomic_output{dir}, doctest::Contains("is a directory"), zeroclip::error);
    CHECK_THROWS_WITH_AS(atomic_output{"/dev/null"}, doctest::Contains("not a regular file"), zeroclip::error);
    CHECK_THROWS_AS(atomic_output{""}, zeroclip::error);
    CHECK_THROWS_AS(atomic_output{dir + "/no/such/folder/x"}, zeroclip::error);
    CHECK(entries_in(dir) == 0);
}

TEST_CASE("atomic_output: permissions of a plain new file (0666 less the umask)") {
    const std::string dir = test_util::temp_dir("atomic");
    const mode_t old_mask = ::umask(022);
    write_file_atomically(dir + "/a", "x");
    ::umask(077);
    write_file_atomically(dir + "/b", "x");
    ::umask(old_mask);
    struct stat a {}, b {};
    REQUIRE(::stat((dir + "/a").c_str(), &a) == 0);
    REQUIRE(::stat((dir + "/b").c_str(), &b) == 0);
    CHECK((a.st_mode & 0777) == 0644);
    CHECK((b.st_mode & 0777) == 0600);
}

TEST_CASE("atomic_output: sync all, then commit all") {
    const std::string dir = test_util::temp_dir("atomic");
    atomic_output first(dir + "/1"), second(dir + "/2");
    first.write("one");
    second.write("two");
    first.sync();
    second.sync();
    CHECK_FALSE(std::filesystem::exists(dir + "/1"));
    first.commit();
    second.commit();
    CHECK(slurp(dir + "/1") == "one");
    CHECK(slurp(dir + "/2") == "two");
    CHECK_THROWS_AS(first.write("late"), zeroclip::error);
}

TEST_CASE("save_npy writes a file numpy's reader takes back") {
    const std::string dir = test_util::temp_dir("atomic");
    tensor t({2, 3}, {1, 2, 3, 4, 5, 6});
    save_npy(dir + "/t.npy", t);
    const npy_array a = load_npy(dir + "/t.npy");
    CHECK(a.descr == "<f4");
    CHECK(a.shape == shape_t{2, 3});
    CHECK(test_util::max_abs_diff(a.to_float(), t) == 0);
    CHECK(slurp(dir + "/t.npy").size() % 64 == 24);  // 64-byte aligned header + 24 data bytes
}

TEST_CASE("read_file: FIFOs, folders and devices refused without blocking, a size limit") {
    const std::string dir = test_util::temp_dir("readfile");
    const std::string fifo = dir + "/fifo";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    CHECK_THROWS_WITH_AS(read_file(fifo, "labels file"), doctest::Contains("not a regular file"), zeroclip::error);
    CHECK_THROWS_WITH_AS(read_file(dir, "labels file"), doctest::Contains("is a directory"), zeroclip::error);
    CHECK_THROWS_WITH_AS(read_file("/dev/zero"), doctest::Contains("not a regular file"), zeroclip::error);
    CHECK_THROWS_WITH_AS(read_file(dir + "/missing"), doctest::Contains("missing"), zeroclip::error);
    write_file_atomically(dir + "/ten", "0123456789");
    CHECK(read_file(dir + "/ten", "file", 10) == "0123456789");
    CHECK_THROWS_WITH_AS(read_file(dir + "/ten", "file", 9), doctest::Contains("more than the limit of 9"),
                         zeroclip::error);
    const std::string loop = dir + "/loop";
    REQUIRE(::symlink(loop.c_str(), loop.c_str()) == 0);
    CHECK_THROWS_WITH_AS(read_file(loop), doctest::Contains("symbolic link loop"), zeroclip::error);
}
