//! A read-only memory mapping of a whole file (POSIX). Checkpoints are mapped, not read, so F32
//! weights are used in place and the page cache is shared between processes.
#pragma once

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../../error.hpp"
#include "../../io/file.hpp"

namespace zeroclip::detail {

class mapped_file {
public:
    /// Maps `path` read-only; throws errc::io naming the path on any failure.
    /// Maps `path` read-only; throws errc::io naming the path on any failure. Only a regular file
    /// is opened (open_regular_file): a FIFO or device is refused, never blocked on.
    static std::shared_ptr<const mapped_file> open(const std::string& path) {
        opened_file f = open_regular_file(path, "model file");
        auto file = std::shared_ptr<mapped_file>(new mapped_file());
        file->path_ = path;
        file->size_ = static_cast<size_t>(f.size);
        if (file->size_ > 0) {
            void* p = ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, f.fd.get(), 0);
            if (p == MAP_FAILED) ZEROCLIP_THROW(errc::io, path + ": cannot map: " + std::strerror(errno));
            file->data_ = static_cast<const unsigned char*>(p);
        }
        return file;
    }

    /// Holds `bytes` in memory as if they were a mapped file named `name` (parsers fed from memory).
    static std::shared_ptr<const mapped_file> from_bytes(std::vector<unsigned char> bytes, const std::string& name) {
        auto file = std::shared_ptr<mapped_file>(new mapped_file());
        file->path_ = name;
        file->owned_ = std::move(bytes);
        file->size_ = file->owned_.size();
        file->data_ = file->owned_.empty() ? nullptr : file->owned_.data();
        return file;
    }

    ~mapped_file() {
        if (!owned_.empty()) return;
        if (data_) ::munmap(const_cast<unsigned char*>(data_), size_);
    }
    mapped_file(const mapped_file&) = delete;
    mapped_file& operator=(const mapped_file&) = delete;

    const unsigned char* data() const { return data_; }
    size_t size() const { return size_; }
    const std::string& path() const { return path_; }
    /// False for bytes held in memory: their pages must not be released (madvise would zero them).
    bool is_mapped() const { return owned_.empty() && data_ != nullptr; }

private:
    mapped_file() = default;
    std::string path_;
    const unsigned char* data_ = nullptr;
    size_t size_ = 0;
    std::vector<unsigned char> owned_;  ///< from_bytes only
};

}  // namespace zeroclip::detail
