// `FILE.partial`: where a streaming run writes FILE while it runs. Records are appended as batches
// finish; only a completed run renames it to FILE, so FILE is always either the previous file or a
// whole new one. The open .partial is locked (flock) for the run's life: a second run resuming the
// same file fails at once instead of interleaving records. An existing .partial is never
// overwritten: without --resume the run refuses to start (nothing of the earlier run is lost).
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <zeroclip/io/file.hpp>

#include "cli.hpp"

namespace zeroclip_cli {

inline std::string partial_path_of(const std::string& target) { return target + ".partial"; }

class partial_file {
public:
    /// Opens (creating when needed) and locks `target`.partial. `flag` names the option that gave
    /// `target` in messages. Usage errors: the file is locked by another run; it exists and
    /// `resume` is false; it cannot be created.
    partial_file(std::string target, bool resume, const std::string& flag)
        : target_(std::move(target)), path_(partial_path_of(target_)) {
        int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        created_ = fd >= 0;
        if (fd < 0 && errno == EEXIST) fd = ::open(path_.c_str(), O_RDWR | O_CLOEXEC);
        if (fd < 0)
            throw usage_error(flag + " " + target_ + ": cannot create " + path_ + " (" + std::strerror(errno) + ")");
        fd_.reset(fd);
        try {
            check_and_lock(resume, flag);
        } catch (...) {
            if (created_) ::unlink(path_.c_str());  // ours and empty: nothing to keep
            throw;
        }
    }
    partial_file(const partial_file&) = delete;
    partial_file& operator=(const partial_file&) = delete;
    /// A .partial this run created and never wrote a record to is removed; any other is kept for --resume.
    ~partial_file() {
        if (fd_.get() >= 0 && created_ && !has_records_) ::unlink(path_.c_str());
    }

private:
    void check_and_lock(bool resume, const std::string& flag) {
        const int fd = fd_.get();
        struct stat st {};
        if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
            throw usage_error(path_ + ": not a regular file; remove it or choose another " + flag);
        if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
            const int e = errno;
            if (e == EWOULDBLOCK)
                throw usage_error(path_ + " is locked by another zeroclip run (resuming it now?): wait for that "
                                          "run to end or stop it; two runs must never write one file");
            throw usage_error(path_ + ": cannot lock (" + std::string(std::strerror(e)) + ")");
        }
        if (!created_ && !resume)
            throw usage_error(path_ + " exists: an earlier run of this output was interrupted. Add --resume to "
                                      "continue it, or delete " + path_ + " to start over");
    }

public:
    /// True when the .partial existed before this run (a resume).
    bool resumed() const { return !created_; }
    const std::string& path() const { return path_; }
    const std::string& target() const { return target_; }
    int fd() const { return fd_.get(); }
    /// Marks that the file now holds records of this run (kept even when the run then fails).
    void mark_records() { has_records_ = true; }

    /// The whole current content.
    std::string read_all() const {
        struct stat st {};
        if (::fstat(fd_.get(), &st) != 0) fail("cannot stat");
        std::string s(static_cast<size_t>(st.st_size), '\0');
        size_t done = 0;
        while (done < s.size()) {
            const ssize_t got = ::pread(fd_.get(), s.data() + done, s.size() - done, static_cast<off_t>(done));
            if (got < 0 && errno == EINTR) continue;
            if (got < 0) fail("cannot read");
            if (got == 0) break;
            done += static_cast<size_t>(got);
        }
        s.resize(done);
        return s;
    }

    void truncate(std::uint64_t size) {
        if (::ftruncate(fd_.get(), static_cast<off_t>(size)) != 0) fail("cannot truncate");
    }

    /// Appends at the end of the file, all of `s` (one write(2) when the kernel allows).
    void append(const std::string& s) {
        const off_t end = ::lseek(fd_.get(), 0, SEEK_END);
        if (end < 0) fail("cannot seek");
        write_at(s.data(), s.size(), static_cast<std::uint64_t>(end));
    }

    void write_at(const void* data, size_t n, std::uint64_t offset) {
        const char* p = static_cast<const char*>(data);
        while (n) {
            const ssize_t put = ::pwrite(fd_.get(), p, n, static_cast<off_t>(offset));
            if (put < 0 && errno == EINTR) continue;
            if (put <= 0) fail("cannot write");
            p += put, n -= static_cast<size_t>(put), offset += static_cast<std::uint64_t>(put);
        }
    }

    void sync() {
        if (::fsync(fd_.get()) != 0) fail("cannot sync");
    }

    /// Syncs and renames the .partial to the target; the lock goes with the closed descriptor.
    void commit() {
        sync();
        if (::rename(path_.c_str(), target_.c_str()) != 0) fail("cannot rename into place");
        has_records_ = true;  // never unlink: the name now belongs to the target
        fd_.reset();
    }

private:
    [[noreturn]] void fail(const char* doing) const {
        throw zeroclip::error(zeroclip::errc::io, path_ + ": " + doing + " (" + std::strerror(errno) + "); " + target_ +
                                                      " is unchanged" +
                                                      (has_records_ ? ", the records written are kept for --resume" : ""));
    }

    std::string target_, path_;
    zeroclip::detail::unique_fd fd_;
    bool created_ = false;
    bool has_records_ = false;
};

}  // namespace zeroclip_cli
