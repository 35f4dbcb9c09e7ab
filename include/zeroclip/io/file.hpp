//! Files in and out, safely: the one whole-file reader (regular files only, a size limit checked
//! before reading, never blocking on a FIFO), overflow-checked sizes, the same-file test, and
//! `atomic_output`, through which every file zeroclip writes goes (temporary file in the target's
//! folder, fsync, rename: the old file stays whole on any failure, nothing partial is left).
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "../error.hpp"

namespace zeroclip {

namespace detail {

/// a·b, or an errc::format error "`what`: size overflows" when it does not fit in 64 bits.
inline uint64_t checked_mul(uint64_t a, uint64_t b, const std::string& what) {
    uint64_t r = 0;
    if (__builtin_mul_overflow(a, b, &r)) ZEROCLIP_THROW(errc::format, what + ": size overflows 64 bits");
    return r;
}

/// a+b, likewise.
inline uint64_t checked_add(uint64_t a, uint64_t b, const std::string& what) {
    uint64_t r = 0;
    if (__builtin_add_overflow(a, b, &r)) ZEROCLIP_THROW(errc::format, what + ": size overflows 64 bits");
    return r;
}

/// An owned file descriptor.
class unique_fd {
public:
    explicit unique_fd(int fd = -1) noexcept : fd_(fd) {}
    unique_fd(unique_fd&& o) noexcept : fd_(o.release()) {}
    unique_fd& operator=(unique_fd&& o) noexcept {
        if (this != &o) reset(o.release());
        return *this;
    }
    ~unique_fd() { reset(); }
    int get() const noexcept { return fd_; }
    int release() noexcept { int f = fd_; fd_ = -1; return f; }
    void reset(int fd = -1) noexcept {
        if (fd_ >= 0) ::close(fd_);
        fd_ = fd;
    }

private:
    int fd_;
};

inline std::string errno_text(int e) { return std::strerror(e); }

}  // namespace detail

/// An open regular file and its size.
struct opened_file {
    detail::unique_fd fd;
    uint64_t size = 0;
};

/// Opens `path` for reading; errc::io naming the path (and `what`, e.g. "image") when it is missing,
/// unreadable, a directory, a FIFO, a device or a socket. Never blocks: FIFOs are opened
/// non-blocking and refused.
inline opened_file open_regular_file(const std::string& path, const std::string& what = "file") {
    detail::unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
    if (fd.get() < 0) {
        const int e = errno;
        if (e == ELOOP) ZEROCLIP_THROW(errc::io, path + ": cannot open " + what + ": symbolic link loop");
        ZEROCLIP_THROW(errc::io, path + ": cannot open " + what + " (" + detail::errno_text(e) + ")");
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0)
        ZEROCLIP_THROW(errc::io, path + ": cannot stat " + what + " (" + detail::errno_text(errno) + ")");
    if (S_ISDIR(st.st_mode)) ZEROCLIP_THROW(errc::io, path + ": is a directory, expected a " + what);
    if (!S_ISREG(st.st_mode))
        ZEROCLIP_THROW(errc::io, path + ": is not a regular file (a device, FIFO or socket), expected a " + what);
    // Back to blocking reads for a regular file (O_NONBLOCK has no effect on them, but be plain).
    const int flags = ::fcntl(fd.get(), F_GETFL);
    if (flags >= 0) ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
    return opened_file{std::move(fd), static_cast<uint64_t>(st.st_size)};
}

/// Reads up to `n` bytes at `offset` of an opened file; errc::io naming `path` on a read error.
inline size_t read_at(const opened_file& f, void* out, size_t n, uint64_t offset,
                           const std::string& path) {
    size_t done = 0;
    while (done < n) {
        const ssize_t got = ::pread(f.fd.get(), static_cast<char*>(out) + done, n - done,
                                    static_cast<off_t>(offset + done));
        if (got < 0) {
            if (errno == EINTR) continue;
            ZEROCLIP_THROW(errc::io, path + ": cannot read (" + detail::errno_text(errno) + ")");
        }
        if (got == 0) break;
        done += static_cast<size_t>(got);
    }
    return done;
}

/// Default limit of `read_file`: text inputs (labels, configs, vocabularies) are far smaller.
constexpr uint64_t default_read_limit = uint64_t{1} << 30;

/// The whole content of the regular file `path`. A file larger than `max_bytes` is refused with
/// errc::io before anything is read ("`path`: `what` is N bytes, more than the limit of M").
inline std::string read_file(const std::string& path, const std::string& what = "file",
                             uint64_t max_bytes = default_read_limit) {
    opened_file f = open_regular_file(path, what);
    if (f.size > max_bytes)
        ZEROCLIP_THROW(errc::io, path + ": " + what + " is " + std::to_string(f.size) +
                                     " bytes, more than the limit of " + std::to_string(max_bytes));
    std::string bytes(static_cast<size_t>(f.size), '\0');
    const size_t got = read_at(f, bytes.data(), bytes.size(), 0, path);
    bytes.resize(got);  // a file that shrank while read: what was there
    return bytes;
}

/// True when `a` and `b` name the same existing file (same device and inode, through any links).
inline bool same_file(const std::string& a, const std::string& b) {
    struct stat sa {}, sb {};
    if (::stat(a.c_str(), &sa) != 0 || ::stat(b.c_str(), &sb) != 0) return false;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/// A file written whole or not at all: the bytes go to a temporary file beside `path`, which
/// `commit()` flushes, fsyncs and renames over `path`. Destroyed without commit (an exception, a
/// full disk), the temporary file is removed and `path` is untouched. The target must not be a
/// directory or a device node (errc::invalid_argument, before anything is written).
class atomic_output {
public:
    explicit atomic_output(std::string path) : path_(std::move(path)) {
        check_output_target(path_);
        const size_t slash = path_.rfind('/');
        const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path_.substr(0, slash));
        const std::string base = slash == std::string::npos ? path_ : path_.substr(slash + 1);
        std::string tmpl = dir + "/." + base + ".tmp-XXXXXX";
        std::vector<char> name(tmpl.begin(), tmpl.end());
        name.push_back('\0');
        const int fd = ::mkstemp(name.data());
        if (fd < 0) ZEROCLIP_THROW(errc::io, path_ + ": cannot create output (" + detail::errno_text(errno) + ")");
        temp_ = name.data();
        file_ = ::fdopen(fd, "wb");
        if (!file_) {
            const int e = errno;
            ::close(fd);
            ::unlink(temp_.c_str());
            ZEROCLIP_THROW(errc::io, path_ + ": cannot create output (" + detail::errno_text(e) + ")");
        }
        // mkstemp makes 0600; give the file the permissions a plain fopen would (umask applies).
        const mode_t mask = ::umask(0);
        ::umask(mask);
        ::fchmod(fd, 0666 & ~mask);
    }
    atomic_output(const atomic_output&) = delete;
    atomic_output& operator=(const atomic_output&) = delete;
    ~atomic_output() { discard(); }

    /// Appends bytes; errc::io naming the target when the disk is full or the write fails.
    void write(const void* data, size_t n) {
        if (!file_) ZEROCLIP_THROW(errc::invalid_argument, path_ + ": output already closed");
        if (n && std::fwrite(data, 1, n, file_) != n) fail("cannot write");
    }
    void write(const std::string& s) { write(s.data(), s.size()); }

    /// Flushes and fsyncs what was written, so that a later commit() only renames: outputs that
    /// belong together are all synced first, then all committed (a full disk fails them all).
    void sync() {
        if (!file_) ZEROCLIP_THROW(errc::invalid_argument, path_ + ": output already closed");
        if (std::fflush(file_) != 0) fail("cannot write");
        if (::fsync(::fileno(file_)) != 0) fail("cannot sync");
    }

    /// Makes the file visible under its name; nothing of it is visible before.
    void commit() {
        if (!file_) ZEROCLIP_THROW(errc::invalid_argument, path_ + ": output already closed");
        if (std::fflush(file_) != 0) fail("cannot write");
        if (::fsync(::fileno(file_)) != 0) fail("cannot sync");
        std::FILE* f = file_;
        file_ = nullptr;
        if (std::fclose(f) != 0) {
            const int e = errno;
            ::unlink(temp_.c_str());
            ZEROCLIP_THROW(errc::io, path_ + ": cannot write output (" + detail::errno_text(e) + ")");
        }
        if (::rename(temp_.c_str(), path_.c_str()) != 0) {
            const int e = errno;
            ::unlink(temp_.c_str());
            ZEROCLIP_THROW(errc::io, path_ + ": cannot rename output into place (" + detail::errno_text(e) + ")");
        }
        temp_.clear();
    }

    /// Drops what was written; the target is untouched. Called by the destructor.
    void discard() noexcept {
        if (file_) std::fclose(file_), file_ = nullptr;
        if (!temp_.empty()) ::unlink(temp_.c_str()), temp_.clear();
    }

    const std::string& path() const { return path_; }

    /// errc::invalid_argument when `path` exists and is not a regular file (a directory, a device
    /// node, a FIFO): such a target is never replaced.
    static void check_output_target(const std::string& path) {
        struct stat st {};
        if (path.empty()) ZEROCLIP_THROW(errc::invalid_argument, "empty output path");
        if (::stat(path.c_str(), &st) != 0) return;  // a new file
        if (S_ISDIR(st.st_mode)) ZEROCLIP_THROW(errc::invalid_argument, path + ": output is a directory");
        if (!S_ISREG(st.st_mode))
            ZEROCLIP_THROW(errc::invalid_argument, path + ": output is a device, FIFO or socket, not a regular file");
    }

private:
    [[noreturn]] void fail(const char* doing) {
        const int e = errno;
        discard();
        ZEROCLIP_THROW(errc::io, path_ + ": " + doing + " output (" + detail::errno_text(e) +
                                     "); the previous file, if any, is unchanged");
    }

    std::string path_;
    std::string temp_;
    std::FILE* file_ = nullptr;
};

/// Writes `bytes` to `path` through atomic_output.
inline void write_file_atomically(const std::string& path, const std::string& bytes) {
    atomic_output out(path);
    out.write(bytes);
    out.commit();
}

}  // namespace zeroclip
