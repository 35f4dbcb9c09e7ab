// `embed --out E.npy` while it runs: E.npy.partial, a valid .npy whose header declares every row
// the run may write (the files and texts still to do, plus those done), filled in order as batches
// finish (the rest reads as zeros), and E.names.txt.partial, one line per row written. A batch's rows
// are written before its names, so the names file says which rows are done: on --resume, its whole
// lines are the rows kept, the rows after them are overwritten. At the end the header gets the
// real row count (failed images get no row), the file is cut to it and both are renamed.
#pragma once

#include <cstdint>
#include <string>
#include <zeroclip/io/npy.hpp>

#include "partial_output.hpp"
#include "resume.hpp"

namespace zeroclip_cli {

/// A float32 [rows, d] .npy header, exactly `npy_rows_header_bytes` long: the length write_npy
/// gives such a header, fixed so that the row count can be rewritten in place.
constexpr size_t npy_rows_header_bytes = 128;
inline std::string npy_rows_header(std::uint64_t rows, std::int64_t d) {
    std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(rows) + ", " +
                         std::to_string(d) + "), }";
    header.append(npy_rows_header_bytes - 10 - 1 - header.size(), ' ');
    header += '\n';
    const char preamble[10] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<char>(header.size() & 0xff),
                               static_cast<char>(header.size() >> 8)};
    return std::string(preamble, 10) + header;
}

class npy_rows_partial {
public:
    /// Opens and locks E.npy.partial and the names .partial (usage errors as partial_file).
    npy_rows_partial(const std::string& npy, const std::string& names, bool resume)
        : npy_(npy, resume, "--out"), names_(names, resume, "--names") {}

    /// Reads what an earlier run left (when resuming) and returns the escaped names already written.
    /// errc::format when the .partial is not a float32 [*, d] .npy started by this command.
    resume_state open_rows(std::int64_t d) {
        d_ = d;
        resume_state s;
        // A names .partial without its .npy, or an .npy killed before its header: start over.
        const std::string head = npy_.resumed() ? read_head() : std::string();
        if (head.size() < npy_rows_header_bytes) {
            names_.truncate(0);
            return s;
        }
        const auto h = zeroclip::detail::parse_npy_header(reinterpret_cast<const unsigned char*>(head.data()), head.size(),
                                                          npy_.path());
        if (h.array.descr != "<f4" || h.array.shape.size() != 2 || h.array.shape[1] != d || h.data_offset != npy_rows_header_bytes)
            throw zeroclip::error(zeroclip::errc::format,
                                  npy_.path() + ": holds " + h.array.descr + " " + zeroclip::shape_to_string(h.array.shape) +
                                      ", not the float32 rows of " + std::to_string(d) +
                                      " this model writes; not resuming it (delete it to start over)");
        s = scan_names(names_.read_all());
        if (s.records > static_cast<std::uint64_t>(h.array.shape[0]))
            throw zeroclip::error(zeroclip::errc::format, names_.path() + " names " + std::to_string(s.records) +
                                                              " rows, more than the " + std::to_string(h.array.shape[0]) +
                                                              " of " + npy_.path() + "; not resuming (delete both to start over)");
        names_.truncate(s.keep_bytes);
        rows_ = s.records;
        return s;
    }

    /// Declares room for `more` rows after those kept (header and file size).
    void reserve(std::uint64_t more) {
        capacity_ = rows_ + more;
        write_header(capacity_);
        npy_.truncate(npy_rows_header_bytes + capacity_ * row_bytes());
    }

    /// Appends `count` rows (contiguous floats) and then their escaped names (one line each).
    void append(const float* rows, std::uint64_t count, const std::string& name_lines) {
        if (rows_ + count > capacity_)
            throw zeroclip::error(zeroclip::errc::invalid_argument, npy_.path() + ": more rows than reserved");
        npy_.write_at(rows, static_cast<size_t>(count * row_bytes()), npy_rows_header_bytes + rows_ * row_bytes());
        names_.append(name_lines);
        rows_ += count;
        npy_.mark_records(), names_.mark_records();  // from now on kept for --resume, even on failure
    }

    std::uint64_t rows() const { return rows_; }

    /// Cuts the .npy to the rows written, syncs both and renames them into place.
    void commit() {
        write_header(rows_);
        npy_.truncate(npy_rows_header_bytes + rows_ * row_bytes());
        names_.sync();
        npy_.commit();
        names_.commit();
    }

    /// Removes both .partial files (a run that wrote no row has nothing to resume).
    void discard() {
        ::unlink(npy_.path().c_str());
        ::unlink(names_.path().c_str());
    }

    const std::string& path() const { return npy_.path(); }
    const std::string& names_path() const { return names_.path(); }

private:
    std::uint64_t row_bytes() const { return static_cast<std::uint64_t>(d_) * sizeof(float); }
    void write_header(std::uint64_t rows) {
        const std::string h = npy_rows_header(rows, d_);
        npy_.write_at(h.data(), h.size(), 0);
    }
    std::string read_head() const {
        std::string head(npy_rows_header_bytes, '\0');
        const ssize_t got = ::pread(npy_.fd(), head.data(), head.size(), 0);
        head.resize(got > 0 ? static_cast<size_t>(got) : 0);
        return head;
    }

    partial_file npy_, names_;
    std::int64_t d_ = 0;
    std::uint64_t rows_ = 0, capacity_ = 0;
};

}  // namespace zeroclip_cli
