// The rule for every file the CLI writes: checked before any work, never the same file as an input
// or as another output, never a folder or device; then written through zeroclip::atomic_output
// (temporary file, fsync, rename), so a failure leaves the previous file whole and nothing partial.
// (Messages quote paths plainly: main escapes every error message before printing it.)
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <string>
#include <vector>
#include <zeroclip/io/file.hpp>

#include "cli.hpp"

namespace zeroclip_cli {

/// The files one subcommand reads and writes. Declare them all, then call check() before loading
/// the model: every conflict is a usage error (exit 2) while nothing has been written.
class file_plan {
public:
    /// A file (or model folder: each file in it) that is read. Missing inputs are left to the reader.
    void input(const std::string& path, const std::string& role) {
        struct stat st {};
        if (::stat(path.c_str(), &st) != 0) return;
        inputs_.push_back({path, role, st.st_dev, st.st_ino});
        if (S_ISDIR(st.st_mode)) {  // a Hugging Face model folder: its config, weights, vocabulary
            std::error_code ec;
            for (const auto& e : std::filesystem::directory_iterator(path, ec)) input_file(e.path().string(), role);
        }
    }

    /// Many inputs of one role (the image files).
    void inputs(const std::vector<std::string>& paths, const std::string& role) {
        for (const auto& p : paths) input_file(p, role);
    }

    /// A file that will be written (`role` is the flag that names it, e.g. "--out").
    void output(const std::string& path, const std::string& role) { outputs_.push_back({path, role}); }

    /// usage_error when an output is a folder, a device or FIFO, in a folder that does not exist, the
    /// same file as an input, or the same file as another output.
    void check() const {
        for (size_t i = 0; i < outputs_.size(); ++i) {
            const auto& [path, role] = outputs_[i];
            const std::string shown = role + " " + path;
            if (path.empty() || path.back() == '/') throw usage_error(role + " needs a file name, got '" + path + "'");
            try {
                zeroclip::atomic_output::check_output_target(path);
            } catch (const zeroclip::error&) {
                throw usage_error(shown + ": is a folder, device, FIFO or socket, not a file that can be replaced");
            }
            const std::string folder = parent_of(path);
            struct stat st {};
            if (::stat(folder.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
                throw usage_error(shown + ": the folder " + folder + " does not exist");
            if (::access(folder.c_str(), W_OK | X_OK) != 0)
                throw usage_error(shown + ": cannot write in the folder " + folder + " (" +
                                  std::strerror(errno) + ")");
            const auto id = identity(path);
            for (const auto& in : inputs_)
                if (id.exists && id.dev == in.dev && id.ino == in.ino)
                    throw usage_error(shown + " is the same file as the input " + in.path + " (" + in.role +
                                      "): writing it would destroy the input");
            for (size_t j = 0; j < i; ++j)
                if (identity(outputs_[j].path) == id)
                    throw usage_error(shown + " and " + outputs_[j].role + " " + outputs_[j].path +
                                      " are the same file: give two different outputs");
        }
    }

private:
    struct read_file_id {
        std::string path, role;
        dev_t dev;
        ino_t ino;
    };
    // An existing file is its (device, inode); a new one is its folder's (device, inode) and name.
    struct file_id {
        bool exists = false;
        dev_t dev = 0;
        ino_t ino = 0;
        std::string name;
        bool operator==(const file_id& o) const {
            return exists == o.exists && dev == o.dev && ino == o.ino && name == o.name;
        }
    };

    static std::string parent_of(const std::string& path) {
        const auto slash = path.rfind('/');
        return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    }

    static file_id identity(const std::string& path) {
        struct stat st {};
        if (::stat(path.c_str(), &st) == 0) return {true, st.st_dev, st.st_ino, ""};
        file_id id;
        if (::stat(parent_of(path).c_str(), &st) == 0) id.dev = st.st_dev, id.ino = st.st_ino;
        id.name = path.substr(path.rfind('/') == std::string::npos ? 0 : path.rfind('/') + 1);
        return id;
    }

    void input_file(const std::string& path, const std::string& role) {
        struct stat st {};
        if (::stat(path.c_str(), &st) == 0) inputs_.push_back({path, role, st.st_dev, st.st_ino});
    }

    std::vector<read_file_id> inputs_;
    struct written_file {
        std::string path, role;
    };
    std::vector<written_file> outputs_;
};

}  // namespace zeroclip_cli
