//! CLIP's byte-level BPE (tokenizer.hpp uses it): the byte alphabet, the vocabulary and merge
//! ranks built from OpenAI's or Hugging Face's files, gzip inflation, the merge loop of one word
//! and the shared per-word cache.
#pragma once

#include <algorithm>
#include <array>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <zlib.h>

#include "../../error.hpp"
#include "../../io/file.hpp"
#include "utf8.hpp"

namespace zeroclip::detail {

// ---------------------------------------------------------------------------------------------
// BPE data

/// GPT-2's reversible byte -> printable code point map (`bytes_to_unicode`).
inline char32_t byte_to_char(unsigned b) noexcept {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return b;
    // The other 68 bytes get 256, 257, ... in byte order.
    unsigned n = 0;
    for (unsigned x = 0; x < b; ++x)
        if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF))) ++n;
    return 256 + n;
}

/// Bytes in the order of CLIP's vocabulary (the printable ones first, then the remapped ones).
inline std::array<unsigned char, 256> byte_vocab_order() {
    std::array<unsigned char, 256> order{};
    size_t k = 0;
    for (unsigned pass = 0; pass < 2; ++pass)
        for (unsigned b = 0; b < 256; ++b)
            if ((byte_to_char(b) == b) == (pass == 0)) order[k++] = static_cast<unsigned char>(b);
    return order;
}

/// Immutable tokenizer data shared by copies of a tokenizer.
struct bpe_model {
    std::unordered_map<std::string, int32_t> encoder;  // token -> id
    std::vector<std::string> decoder;                       // id -> token
    std::vector<char> has_id;                               // decoder[id] is meaningful
    // BPE works on symbols: a vocabulary string's symbol is its id; strings the merges make that
    // the vocabulary lacks get ids from decoder.size() on. (left << 32 | right) -> (rank, merged).
    std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;
    std::vector<std::string> extra_symbols;
    std::array<int32_t, 256> byte_symbol{};
    std::array<int32_t, 256> byte_end_symbol{};  // byte + "</w>": the last symbol of a word
    std::unordered_map<char32_t, unsigned char> char_to_byte;
    size_t merge_count = 0;
    int32_t sot = -1, eot = -1;

    int32_t rank_of(int32_t a, int32_t b) const {
        auto it = merges.find((static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b));
        return it == merges.end() ? INT32_MAX : it->second.first;
    }
    bool in_vocab(int32_t symbol) const {
        return static_cast<size_t>(symbol) < decoder.size() && has_id[static_cast<size_t>(symbol)];
    }
    std::string symbol_text(int32_t symbol) const {
        return static_cast<size_t>(symbol) < decoder.size()
                   ? decoder[static_cast<size_t>(symbol)]
                   : extra_symbols[static_cast<size_t>(symbol) - decoder.size()];
    }
};

inline std::string byte_char_utf8(unsigned b) {
    std::string s;
    append_utf8(s, byte_to_char(b));
    return s;
}

/// Splits merge lines ("a b", one per line, blank lines ignored) into pairs.
inline std::vector<std::pair<std::string, std::string>> parse_merges(const std::vector<std::string_view>& lines,
                                                                     size_t first_line_number,
                                                                     const std::string& what) {
    std::vector<std::pair<std::string, std::string>> out;
    out.reserve(lines.size());
    auto is_ws = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; };
    for (size_t li = 0; li < lines.size(); ++li) {
        std::string_view line = lines[li];
        std::string_view parts[3];
        size_t count = 0, p = 0;
        while (p < line.size() && count < 3) {
            while (p < line.size() && is_ws(line[p])) ++p;
            size_t q = p;
            while (q < line.size() && !is_ws(line[q])) ++q;
            if (q > p) parts[count++] = line.substr(p, q - p);
            p = q;
        }
        if (count == 0) continue;
        if (count != 2)
            ZEROCLIP_THROW(errc::tokenizer, what + ": line " + std::to_string(first_line_number + li) +
                                                " is not a merge 'a b': '" + std::string(line.substr(0, 80)) + "'");
        out.emplace_back(std::string(parts[0]), std::string(parts[1]));
    }
    return out;
}

inline std::vector<std::string_view> split_lines(std::string_view text) {
    std::vector<std::string_view> lines;
    size_t p = 0;
    while (p <= text.size()) {
        size_t q = text.find('\n', p);
        if (q == std::string_view::npos) q = text.size();
        lines.push_back(text.substr(p, q - p));
        p = q + 1;
    }
    return lines;
}

/// Builds the model. Without a vocabulary, CLIP's standard one is derived from the merges:
/// the 256 byte symbols, the same with "</w>", one token per merge, then the two specials.
inline std::shared_ptr<const bpe_model> build_bpe_model(
    const std::vector<std::pair<std::string, std::string>>& merges,
    std::optional<std::unordered_map<std::string, int32_t>> vocab, const std::string& what) {
    auto m = std::make_shared<bpe_model>();
    std::array<std::string, 256> byte_str;
    for (unsigned b = 0; b < 256; ++b) {
        byte_str[b] = byte_char_utf8(b);
        m->char_to_byte[byte_to_char(b)] = static_cast<unsigned char>(b);
    }
    if (vocab) {
        m->encoder = std::move(*vocab);
    } else {
        const auto order = byte_vocab_order();
        int32_t id = 0;
        m->encoder.reserve(512 + merges.size() + 2);
        // Later duplicates win, like dict(zip(vocab, range(len(vocab)))).
        for (unsigned char b : order) m->encoder[byte_str[b]] = id++;
        for (unsigned char b : order) m->encoder[byte_str[b] + "</w>"] = id++;
        for (const auto& [a, b] : merges) m->encoder[a + b] = id++;
        m->encoder["<|startoftext|>"] = id++;
        m->encoder["<|endoftext|>"] = id++;
    }
    int32_t max_id = -1;
    for (const auto& [tok, id] : m->encoder) max_id = std::max(max_id, id);
    // Ids index a table: a few entries with ids near 2^24 would allocate it 16M entries long.
    if (max_id >= 0 && static_cast<size_t>(max_id) >= m->encoder.size() + 4096)
        ZEROCLIP_THROW(errc::tokenizer, what + ": token id " + std::to_string(max_id) + " is far beyond the " +
                                            std::to_string(m->encoder.size()) + " tokens of the vocabulary");
    m->decoder.assign(static_cast<size_t>(max_id + 1), std::string());
    m->has_id.assign(static_cast<size_t>(max_id + 1), 0);
    for (const auto& [tok, id] : m->encoder) {
        m->decoder[static_cast<size_t>(id)] = tok;
        m->has_id[static_cast<size_t>(id)] = 1;
    }
    std::unordered_map<std::string, int32_t> extra_index;
    auto symbol = [&](const std::string& s) {
        if (auto it = m->encoder.find(s); it != m->encoder.end()) return it->second;
        const auto next = static_cast<int32_t>(m->decoder.size() + m->extra_symbols.size());
        auto [it, added] = extra_index.emplace(s, next);
        if (added) m->extra_symbols.push_back(s);
        return it->second;
    };
    for (unsigned b = 0; b < 256; ++b) {
        m->byte_symbol[b] = symbol(byte_str[b]);
        m->byte_end_symbol[b] = symbol(byte_str[b] + "</w>");
    }
    m->merges.reserve(merges.size());
    std::string joined;
    for (size_t r = 0; r < merges.size(); ++r) {
        joined = merges[r].first;
        joined += merges[r].second;
        const int32_t a = symbol(merges[r].first), b = symbol(merges[r].second), ab = symbol(joined);
        // A repeated pair keeps its last rank, as dict(zip(merges, range(...))) does.
        m->merges[(static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b)] = {
            static_cast<int32_t>(r), ab};
    }
    m->merge_count = merges.size();
    auto special = [&](const char* tok) {
        auto it = m->encoder.find(tok);
        if (it == m->encoder.end())
            ZEROCLIP_THROW(errc::tokenizer, what + ": the vocabulary has no " + std::string(tok) + " token");
        return it->second;
    };
    m->sot = special("<|startoftext|>");
    m->eot = special("<|endoftext|>");
    return m;
}

inline std::unordered_map<std::string, int32_t> parse_vocab_json(std::string_view text, const std::string& what) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(text.begin(), text.end());
    } catch (const nlohmann::json::exception& e) {
        ZEROCLIP_THROW(errc::tokenizer, what + ": invalid JSON: " + e.what());
    }
    if (!j.is_object()) ZEROCLIP_THROW(errc::tokenizer, what + ": expected a JSON object {token: id}");
    std::unordered_map<std::string, int32_t> vocab;
    vocab.reserve(j.size());
    for (const auto& [tok, id] : j.items()) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= (1 << 24))
            ZEROCLIP_THROW(errc::tokenizer, what + ": id of token '" + tok + "' is not an integer in [0, 2^24)");
        vocab[tok] = static_cast<int32_t>(id.get<int64_t>());
    }
    return vocab;
}

/// The largest tokenizer file read (CLIP's vocab.json is 0.8 MB; the gzip'd BPE file 1.3 MB).
constexpr uint64_t max_tokenizer_file_bytes = uint64_t{256} << 20;

/// Inflates gzip (all members, like Python's gzip module) or zlib data.
inline std::string gunzip(std::string_view data, const std::string& what) {
    if (data.size() > UINT_MAX) ZEROCLIP_THROW(errc::tokenizer, what + ": compressed data too large");
    z_stream zs{};
    if (inflateInit2(&zs, 15 + 32) != Z_OK) ZEROCLIP_THROW(errc::tokenizer, what + ": zlib init failed");
    struct end_guard {
        z_stream* z;
        ~end_guard() { inflateEnd(z); }
    } guard{&zs};
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    zs.avail_in = static_cast<uInt>(data.size());
    std::string out;
    std::vector<char> buf(1 << 16);
    for (;;) {
        zs.next_out = reinterpret_cast<Bytef*>(buf.data());
        zs.avail_out = static_cast<uInt>(buf.size());
        const int rc = inflate(&zs, Z_NO_FLUSH);
        out.append(buf.data(), buf.size() - zs.avail_out);
        // CLIP's BPE file inflates to 1.4 MB; a decompression bomb is stopped long before memory runs out.
        if (out.size() > max_tokenizer_file_bytes)
            ZEROCLIP_THROW(errc::tokenizer, what + ": inflates to more than " + std::to_string(max_tokenizer_file_bytes) +
                                                " bytes; not a BPE vocabulary");
        if (rc == Z_STREAM_END) {
            if (zs.avail_in == 0) break;
            if (inflateReset(&zs) != Z_OK) ZEROCLIP_THROW(errc::tokenizer, what + ": zlib reset failed");
            continue;
        }
        if (rc != Z_OK)
            ZEROCLIP_THROW(errc::tokenizer, what + ": corrupt or truncated gzip data" +
                                                (zs.msg ? std::string(" (") + zs.msg + ")" : std::string()));
        if (zs.avail_in == 0 && zs.avail_out != 0)
            ZEROCLIP_THROW(errc::tokenizer, what + ": truncated gzip data");
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// BPE of one word, and the per-word cache

/// Appends the vocabulary ids of one pre-split token (its UTF-8 bytes), merging like
/// SimpleTokenizer.bpe: repeatedly take the lowest-ranked adjacent pair and merge all of its
/// occurrences left to right, until no adjacent pair is a merge.
inline void bpe_word(const bpe_model& m, std::string_view bytes, std::vector<int32_t>& out) {
    const size_t n = bytes.size();
    std::vector<int32_t> sym(n);
    for (size_t k = 0; k + 1 < n; ++k) sym[k] = m.byte_symbol[static_cast<unsigned char>(bytes[k])];
    sym[n - 1] = m.byte_end_symbol[static_cast<unsigned char>(bytes[n - 1])];
    // rank[k] is the rank of the pair (sym[k], sym[k+1]); only pairs next to a merge change.
    std::vector<int32_t> rank(n, INT32_MAX);
    for (size_t k = 0; k + 1 < n; ++k) rank[k] = m.rank_of(sym[k], sym[k + 1]);
    size_t size = n;
    while (size > 1) {
        const int32_t best = *std::min_element(rank.begin(), rank.begin() + static_cast<ptrdiff_t>(size - 1));
        if (best == INT32_MAX) break;
        int32_t merged = -1;
        size_t w = 0;
        bool prev_merged = false;
        for (size_t k = 0; k < size;) {
            // Ranks are unique per pair, so rank == best identifies the pair being merged.
            if (k + 1 < size && rank[k] == best) {
                if (merged < 0) {
                    auto it = m.merges.find((static_cast<uint64_t>(sym[k]) << 32) |
                                            static_cast<uint32_t>(sym[k + 1]));
                    merged = it->second.second;
                }
                sym[w] = merged;
                if (w > 0) rank[w - 1] = m.rank_of(sym[w - 1], sym[w]);
                k += 2;
                prev_merged = true;
            } else {
                sym[w] = sym[k];
                rank[w] = rank[k];
                if (prev_merged) rank[w - 1] = m.rank_of(sym[w - 1], sym[w]);
                k += 1;
                prev_merged = false;
            }
            ++w;
        }
        size = w;
        rank[size - 1] = INT32_MAX;
    }
    for (size_t k = 0; k < size; ++k) {
        if (!m.in_vocab(sym[k]))
            ZEROCLIP_THROW(errc::tokenizer, "BPE produced '" + m.symbol_text(sym[k]) + "', which is not in the vocabulary");
        out.push_back(sym[k]);
    }
}

/// A word's UTF-8 bytes with their hash, computed once for both the shard and the table.
struct cache_key {
    std::string bytes;
    size_t hash = 0;
    bool operator==(const cache_key& o) const { return hash == o.hash && bytes == o.bytes; }
};
struct cache_key_hash {
    size_t operator()(const cache_key& k) const noexcept { return k.hash; }
};

/// Word -> ids cache shared by threads: sharded, one mutex per shard, each shard bounded (it is
/// simply emptied when full, which keeps memory flat for unbounded input streams).
class bpe_cache {
public:
    static constexpr size_t shard_count = 16;
    static constexpr size_t max_entries_per_shard = 4096;
    static constexpr size_t max_key_bytes = 256;  // longer words are rare: not worth keeping

    bool lookup(const cache_key& word, std::vector<int32_t>& out) const {
        const shard& s = shards_[word.hash % shard_count];
        std::lock_guard<std::mutex> lock(s.mutex);
        auto it = s.map.find(word);
        if (it == s.map.end()) return false;
        out.insert(out.end(), it->second.begin(), it->second.end());
        return true;
    }

    void insert(const cache_key& word, const int32_t* ids, size_t count) const {
        if (word.bytes.size() > max_key_bytes) return;
        shard& s = shards_[word.hash % shard_count];
        std::lock_guard<std::mutex> lock(s.mutex);
        if (s.map.size() >= max_entries_per_shard) s.map.clear();
        s.map.emplace(word, std::vector<int32_t>(ids, ids + count));
    }

private:
    struct shard {
        mutable std::mutex mutex;
        std::unordered_map<cache_key, std::vector<int32_t>, cache_key_hash> map;
    };
    mutable std::array<shard, shard_count> shards_;
};

}  // namespace zeroclip::detail
