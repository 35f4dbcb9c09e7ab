//! weight_source: the float32 weights of a checkpoint under OpenAI CLIP's state-dict names, with
//! scopes so that each module loads its own names (`ws.scope("ln_1").get("weight", {width})`)
//! and every shape is checked once, at load, with a message naming the file and the tensor.
//!
//! A weight may be held as a tensor or as a recipe that makes it (a file's F16 tensor converted
//! to float32, Hugging Face's q, k, v joined): a recipe runs when the model asks for the weight,
//! so while a model loads only the float32 copy of the layer in hand exists beside the model's
//! own (packed, maybe int8) weights, not a float32 copy of the whole checkpoint.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "../tensor.hpp"

namespace zeroclip {

/// One weight of a weight_source: its shape, and the tensor or the recipe that makes it.
struct stored_weight {
    shape_t shape;
    tensor value;                  ///< used when `make` is empty
    std::function<tensor()> make;  ///< makes the tensor (of `shape`) each time it is asked for

    stored_weight() = default;
    stored_weight(tensor t) : shape(t.shape()), value(std::move(t)) {}  // NOLINT: a tensor is a weight
    stored_weight(shape_t s, std::function<tensor()> f) : shape(std::move(s)), make(std::move(f)) {}
    tensor get() const { return make ? make() : value; }
};

class weight_source {
public:
    weight_source() = default;
    /// `file` is only used in messages; `not_float` names the file's tensors of another dtype
    /// (name -> dtype), so that a model needing one is told its dtype is wrong, not that it is missing.
    weight_source(std::map<std::string, stored_weight> weights, std::string file,
                  std::map<std::string, std::string> not_float = {})
        : weights_(std::make_shared<const std::map<std::string, stored_weight>>(std::move(weights))),
          not_float_(std::make_shared<const std::map<std::string, std::string>>(std::move(not_float))),
          file_(std::move(file)) {}
    weight_source(std::map<std::string, tensor> tensors, std::string file,
                  std::map<std::string, std::string> not_float = {})
        : weight_source(std::map<std::string, stored_weight>(tensors.begin(), tensors.end()), std::move(file),
                        std::move(not_float)) {}

    /// The source seen from inside `name` ("visual" then "conv1.weight" = "visual.conv1.weight").
    weight_source scope(const std::string& name) const {
        weight_source s = *this;
        s.prefix_ = full_name(name) + ".";
        return s;
    }

    bool contains(const std::string& name) const { return weights_ && weights_->count(full_name(name)); }

    /// The tensor `name`, which must have exactly `expected` shape (checked before it is made).
    tensor get(const std::string& name, const shape_t& expected) const {
        const stored_weight& w = entry(name);
        if (w.shape != expected)
            ZEROCLIP_THROW(errc::shape, file_ + ": tensor '" + full_name(name) + "' has shape " +
                                            shape_to_string(w.shape) + ", expected " + shape_to_string(expected));
        return w.get();
    }

    /// The tensor `name` whatever its shape (for shapes the caller checks itself).
    tensor find(const std::string& name) const { return entry(name).get(); }

    /// The shape of `name`, without making the tensor.
    const shape_t& shape_of(const std::string& name) const { return entry(name).shape; }

    const std::string& file() const { return file_; }

private:
    std::string full_name(const std::string& name) const { return prefix_ + name; }

    const stored_weight& entry(const std::string& name) const {
        auto it = weights_ ? weights_->find(full_name(name)) : decltype(weights_->end()){};
        if (!weights_ || it == weights_->end()) {
            if (not_float_)
                if (auto d = not_float_->find(full_name(name)); d != not_float_->end())
                    ZEROCLIP_THROW(errc::format, file_ + ": tensor '" + full_name(name) + "' has dtype " + d->second +
                                                     ", expected a float type (F32, F16, BF16 or F64)");
            ZEROCLIP_THROW(errc::format, file_ + ": tensor '" + full_name(name) +
                                             "' is missing (is this a CLIP checkpoint of this architecture?)");
        }
        return it->second;
    }

    std::shared_ptr<const std::map<std::string, stored_weight>> weights_;
    std::shared_ptr<const std::map<std::string, std::string>> not_float_;
    std::string file_;
    std::string prefix_;
};

}  // namespace zeroclip
