//! weight_source: the float32 weights of a checkpoint under OpenAI CLIP's state-dict names, with
//! scopes so that each module loads its own names (`ws.scope("ln_1").get("weight", {width})`)
//! and every shape is checked once, at load, with a message naming the file and the tensor.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "../tensor.hpp"

namespace zeroclip {

class weight_source {
public:
    weight_source() = default;
    /// `file` is only used in messages; `not_float` names the file's tensors of another dtype
    /// (name -> dtype), so that a model needing one is told its dtype is wrong, not that it is missing.
    weight_source(std::map<std::string, tensor> tensors, std::string file,
                  std::map<std::string, std::string> not_float = {})
        : tensors_(std::make_shared<const std::map<std::string, tensor>>(std::move(tensors))),
          not_float_(std::make_shared<const std::map<std::string, std::string>>(std::move(not_float))),
          file_(std::move(file)) {}

    /// The source seen from inside `name` ("visual" then "conv1.weight" = "visual.conv1.weight").
    weight_source scope(const std::string& name) const {
        weight_source s = *this;
        s.prefix_ = full_name(name) + ".";
        return s;
    }

    bool contains(const std::string& name) const { return tensors_ && tensors_->count(full_name(name)); }

    /// The tensor `name`, which must have exactly `expected` shape.
    tensor get(const std::string& name, const shape_t& expected) const {
        const tensor& t = find(name);
        if (t.shape() != expected)
            ZEROCLIP_THROW(errc::shape, file_ + ": tensor '" + full_name(name) + "' has shape " +
                                            shape_to_string(t.shape()) + ", expected " +
                                            shape_to_string(expected));
        return t;
    }

    /// The tensor `name` whatever its shape (for shapes the caller infers, e.g. the layer count).
    const tensor& find(const std::string& name) const {
        auto it = tensors_ ? tensors_->find(full_name(name)) : decltype(tensors_->end()){};
        if (!tensors_ || it == tensors_->end()) {
            if (not_float_)
                if (auto d = not_float_->find(full_name(name)); d != not_float_->end())
                    ZEROCLIP_THROW(errc::format, file_ + ": tensor '" + full_name(name) + "' has dtype " + d->second +
                                                     ", expected a float type (F32, F16, BF16 or F64)");
            ZEROCLIP_THROW(errc::format, file_ + ": tensor '" + full_name(name) +
                                             "' is missing (is this a CLIP checkpoint of this architecture?)");
        }
        return it->second;
    }

    const std::string& file() const { return file_; }
    const std::map<std::string, tensor>& all() const { return *tensors_; }

private:
    std::string full_name(const std::string& name) const { return prefix_ + name; }

    std::shared_ptr<const std::map<std::string, tensor>> tensors_;
    std::shared_ptr<const std::map<std::string, std::string>> not_float_;
    std::string file_;
    std::string prefix_;
};

}  // namespace zeroclip
