//! Opening a CLIP checkpoint as users have it: zeroclip's single `.safetensors` file (weights,
//! config and tokenizer, docs/FORMAT.md) or a Hugging Face CLIP folder (config.json,
//! model.safetensors, vocab.json, merges.txt). Hugging Face names are mapped to OpenAI's once here.
#pragma once

#include <sys/stat.h>

#include <cstring>
#include <string>

#include "config_json.hpp"
#include "file.hpp"
#include "safetensors.hpp"
#include "weights.hpp"

namespace zeroclip {

/// Everything a model is built from.
struct checkpoint {
    std::string path;
    clip_config config;
    weight_source weights;      ///< OpenAI names, float32 (converted as the model asks for each)
    std::string bpe_merges;     ///< one merge "a b" per line, in rank order, no "#version" header
    std::string bpe_vocab_json; ///< {token: id}, or empty for CLIP's standard vocabulary
    std::string weight_dtype;   ///< "F32", "F16", "BF16" (the dtype of most weights in the file)
};

namespace detail {

inline bool is_directory(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

inline bool file_exists(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;  // whatever it is: read_file says what is wrong with it
}

/// Size limits of the text files of a checkpoint (CLIP's vocab.json is 0.8 MB, merges.txt 0.5 MB).
constexpr uint64_t max_config_file_bytes = uint64_t{16} << 20;
constexpr uint64_t max_vocabulary_file_bytes = uint64_t{256} << 20;


inline std::string majority_dtype(const safetensors_file& file) {
    std::map<std::string, size_t> bytes;
    for (const auto& [name, r] : file.tensors()) bytes[dtype_name(r.type)] += r.nbytes;
    std::string best = "F32";
    size_t most = 0;
    for (const auto& [name, n] : bytes)
        if (n > most) most = n, best = name;
    return best;
}

inline bool is_float(dtype t) { return t == dtype::f32 || t == dtype::f16 || t == dtype::bf16 || t == dtype::f64; }

/// Integer buffers that checkpoints carry and models never use (Hugging Face position_ids,
/// BatchNorm num_batches_tracked, OpenAI's scalar input_resolution/context_length/vocab_size).
inline bool is_integer_buffer(const std::string& name) {
    auto ends_with = [&](const char* tail) {
        const size_t n = std::strlen(tail);
        return name.size() >= n && name.compare(name.size() - n, n, tail) == 0;
    };
    return ends_with("position_ids") || ends_with("num_batches_tracked") || name == "input_resolution" ||
           name == "context_length" || name == "vocab_size";
}

inline bool replace_prefix(std::string& s, const std::string& from, const std::string& to) {
    if (s.compare(0, from.size(), from) != 0) return false;
    s = to + s.substr(from.size());
    return true;
}

inline void replace_all(std::string& s, const std::string& from, const std::string& to) {
    for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size()))
        s.replace(p, from.size(), to);
}

inline tensor transpose2d(const tensor& t) {
    const int64_t rows = t.dim(0), cols = t.dim(1);
    tensor out({cols, rows});
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) out[c * rows + r] = t[r * cols + c];
    return out;
}

/// The weight of `record` in float32, made when a model asks for it (weights.hpp); `then`
/// transforms it (a transpose) after the conversion.
inline stored_weight lazy_float(std::shared_ptr<const safetensors_file> file, const tensor_record& record,
                                shape_t shape, tensor (*then)(const tensor&) = nullptr) {
    return stored_weight(std::move(shape), [file = std::move(file), record, then] {
        tensor t = file->to_float(record);
        return then ? then(t) : t;
    });
}

/// Hugging Face CLIPModel names → OpenAI names (the inverse of transformers'
/// convert_clip_original_pytorch_to_hf.py). q/k/v are concatenated into in_proj, the two
/// projections transposed back to [width, embed]; both when the weight is made.
/// `not_float` receives the OpenAI names of tensors that are not of a float dtype, with that dtype
/// (for the error when a model needs one of them).
inline std::map<std::string, stored_weight> map_hf_names(const std::shared_ptr<const safetensors_file>& file,
                                                         std::map<std::string, std::string>* not_float = nullptr) {
    std::map<std::string, stored_weight> out;
    std::map<std::string, std::array<const tensor_record*, 3>> qkv;  // OpenAI in_proj name -> q, k, v
    for (const auto& [hf_name, record] : file->tensors()) {
        const bool skip = !is_float(record.type);
        if (skip && is_integer_buffer(hf_name)) continue;
        std::string name = hf_name;
        bool transpose = false;
        if (name == "visual_projection.weight") name = "visual.proj", transpose = true;
        else if (name == "text_projection.weight") name = "text_projection", transpose = true;
        else if (replace_prefix(name, "vision_model.embeddings.patch_embedding.", "visual.conv1.")) {}
        else if (name == "vision_model.embeddings.class_embedding") name = "visual.class_embedding";
        else if (name == "vision_model.embeddings.position_embedding.weight") name = "visual.positional_embedding";
        else if (name == "text_model.embeddings.token_embedding.weight") name = "token_embedding.weight";
        else if (name == "text_model.embeddings.position_embedding.weight") name = "positional_embedding";
        else if (replace_prefix(name, "vision_model.pre_layrnorm.", "visual.ln_pre.")) {}
        else if (replace_prefix(name, "vision_model.post_layernorm.", "visual.ln_post.")) {}
        else if (replace_prefix(name, "text_model.final_layer_norm.", "ln_final.")) {}
        else if (replace_prefix(name, "vision_model.encoder.layers.", "visual.transformer.resblocks.") ||
                 replace_prefix(name, "text_model.encoder.layers.", "transformer.resblocks.")) {
            replace_all(name, ".self_attn.out_proj.", ".attn.out_proj.");
            replace_all(name, ".layer_norm1.", ".ln_1.");
            replace_all(name, ".layer_norm2.", ".ln_2.");
            replace_all(name, ".mlp.fc1.", ".mlp.c_fc.");
            replace_all(name, ".mlp.fc2.", ".mlp.c_proj.");
            static const char* parts[3] = {".self_attn.q_proj.", ".self_attn.k_proj.", ".self_attn.v_proj."};
            bool is_qkv = false;
            for (int i = 0; i < 3; ++i) {
                auto p = name.find(parts[i]);
                if (p == std::string::npos) continue;
                std::string kind = name.substr(p + std::string(parts[i]).size());  // weight / bias
                const std::string joined = name.substr(0, p) + ".attn.in_proj_" + kind;
                if (skip) {
                    if (not_float) (*not_float)[joined] = dtype_name(record.type) + std::string(" (in ") + hf_name + ")";
                } else {
                    qkv[joined][static_cast<size_t>(i)] = &record;
                }
                is_qkv = true;
            }
            if (is_qkv) continue;
        }
        if (skip) {
            if (not_float) (*not_float)[name] = dtype_name(record.type);
            continue;
        }
        if (!transpose) {
            out[name] = lazy_float(file, record, record.shape);
            continue;
        }
        if (record.shape.size() != 2)
            ZEROCLIP_THROW(errc::shape, file->path() + ": tensor '" + hf_name + "' must be 2-d, has shape " +
                                            shape_to_string(record.shape));
        out[name] = lazy_float(file, record, {record.shape[1], record.shape[0]}, transpose2d);
    }
    for (auto& [name, parts] : qkv) {
        if (not_float && not_float->count(name)) continue;  // reported by weight_source when needed
        for (const tensor_record* part : parts)
            if (!part)
                ZEROCLIP_THROW(errc::format, file->path() + ": the q/k/v projections of '" + name +
                                                 "' are incomplete");
        const shape_t& q = parts[0]->shape;
        if (parts[1]->shape != q || parts[2]->shape != q || q.empty())
            ZEROCLIP_THROW(errc::shape, file->path() + ": the q/k/v projections of '" + name +
                                            "' have different shapes");
        shape_t shape = q;
        shape[0] *= 3;
        out[name] = stored_weight(shape, [file, shape, q = *parts[0], k = *parts[1], v = *parts[2]] {
            tensor joined(shape);
            float* at = joined.data();
            for (const tensor_record* part : {&q, &k, &v}) {
                const tensor t = file->to_float(*part);
                at = std::copy(t.begin(), t.end(), at);
            }
            return joined;
        });
    }
    return out;
}

inline checkpoint load_hf_folder(const std::string& dir) {
    checkpoint c;
    c.path = dir;
    const std::string config_path = dir + "/config.json";
    if (!file_exists(config_path))
        ZEROCLIP_THROW(errc::io, dir + ": no config.json (expected a Hugging Face CLIP folder or a .safetensors file)");
    std::string preprocessor;
    const std::string preprocessor_path = dir + "/preprocessor_config.json";
    if (file_exists(preprocessor_path))
        preprocessor = read_file(preprocessor_path, "preprocessor config", max_config_file_bytes);
    c.config = parse_hf_config(read_file(config_path, "model config", max_config_file_bytes), preprocessor,
                               config_path, preprocessor_path);
    const std::string weights_path = dir + "/model.safetensors";
    if (!file_exists(weights_path))
        ZEROCLIP_THROW(errc::io, dir + ": no model.safetensors (convert pytorch_model.bin with "
                                       "weights_tools/convert.py)");
    auto file = std::make_shared<const safetensors_file>(safetensors_file::open(weights_path));
    c.weight_dtype = majority_dtype(*file);
    std::map<std::string, std::string> not_float;
    auto tensors = map_hf_names(file, &not_float);
    c.weights = weight_source(std::move(tensors), weights_path, std::move(not_float));
    const std::string vocab_path = dir + "/vocab.json", merges_path = dir + "/merges.txt";
    c.bpe_vocab_json = read_file(vocab_path, "tokenizer vocabulary", max_vocabulary_file_bytes);
    if (c.bpe_vocab_json.find_first_not_of(" \t\r\n") == std::string::npos)
        ZEROCLIP_THROW(errc::format, vocab_path + ": the tokenizer vocabulary is empty");
    std::string merges = read_file(merges_path, "tokenizer merges", max_vocabulary_file_bytes);
    if (merges.compare(0, 8, "#version") == 0) merges.erase(0, merges.find('\n') == std::string::npos ? merges.size() : merges.find('\n') + 1);
    // Without merges, BPE would silently split every word into characters.
    if (merges.find_first_not_of(" \t\r\n") == std::string::npos)
        ZEROCLIP_THROW(errc::format, merges_path + ": holds no merges (only a header, or nothing); "
                                                  "the tokenizer needs CLIP's merges.txt");
    c.bpe_merges = std::move(merges);
    return c;
}

inline checkpoint load_zeroclip_file(const std::string& path) {
    checkpoint c;
    c.path = path;
    auto file = std::make_shared<const safetensors_file>(safetensors_file::open(path));
    const auto& meta = file->metadata();
    auto config = meta.find("zeroclip.config");
    if (config == meta.end())
        ZEROCLIP_THROW(errc::format, path + ": no 'zeroclip.config' metadata; convert the checkpoint with "
                                            "weights_tools/convert.py, or pass a Hugging Face CLIP folder");
    c.config = parse_zeroclip_config(config->second, path);
    c.weight_dtype = majority_dtype(*file);
    std::map<std::string, stored_weight> tensors;
    std::map<std::string, std::string> not_float;
    for (const auto& [name, record] : file->tensors()) {
        if (is_float(record.type)) tensors[name] = lazy_float(file, record, record.shape);
        else if (!is_integer_buffer(name)) not_float[name] = dtype_name(record.type);
    }
    c.weights = weight_source(std::move(tensors), path, std::move(not_float));
    if (auto m = meta.find("zeroclip.bpe_merges"); m != meta.end()) {
        if (m->second.find_first_not_of(" \t\r\n") == std::string::npos)
            ZEROCLIP_THROW(errc::format, path + ": the stored tokenizer ('zeroclip.bpe_merges') holds no merges");
        c.bpe_merges = m->second;
    }
    if (auto v = meta.find("zeroclip.bpe_vocab"); v != meta.end()) c.bpe_vocab_json = v->second;
    return c;
}

}  // namespace detail

/// Opens `path`: a Hugging Face CLIP folder or a zeroclip `.safetensors` file. Throws errc::io,
/// errc::format or errc::shape with the file (and tensor) named.
inline checkpoint load_checkpoint(const std::string& path) {
    if (detail::is_directory(path)) return detail::load_hf_folder(path);
    return detail::load_zeroclip_file(path);
}

}  // namespace zeroclip
