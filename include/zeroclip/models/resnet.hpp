//! models::modified_resnet — CLIP's ModifiedResNet image encoder (RN50, RN101, RN50x4/x16/x64):
//! a 3-convolution stem with an average pool, four stages of bottleneck blocks that downsample
//! with an average pool instead of strided convolutions, and an attention pool instead of the
//! global average pool. Batch norms are folded into their convolutions at load (nn/conv2d.hpp).
#pragma once

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "../nn/attention_pool.hpp"
#include "../nn/conv2d.hpp"
#include "config.hpp"

namespace zeroclip::models {

/// Bottleneck(inplanes, planes, stride): 1×1 → 3×3 → [avgpool(stride)] → 1×1 (4·planes), plus
/// the identity, or avgpool(stride) → 1×1 conv where the shape changes; relu after the sum.
template <class Backend>
struct bottleneck {
    using tensor = typename Backend::tensor;
    static constexpr int64_t expansion = 4;
    nn::conv2d<Backend> conv1;  // (planes, inplanes, 1, 1) ∘ bn1
    nn::conv2d<Backend> conv2;  // (planes, planes, 3, 3), pad 1 ∘ bn2
    nn::conv2d<Backend> conv3;  // (4·planes, planes, 1, 1) ∘ bn3
    std::optional<nn::conv2d<Backend>> downsample;  // downsample.0 (4·planes, inplanes, 1, 1) ∘ downsample.1
    int64_t stride = 1;

    static bottleneck load(const weight_source& ws, const Backend& be, int64_t inplanes, int64_t planes,
                           int64_t stride) {
        const int64_t out = planes * expansion;
        bottleneck b;
        b.conv1 = nn::conv2d<Backend>::load_with_batch_norm(ws.scope("conv1"), ws.scope("bn1"), be, planes,
                                                            inplanes, 1, 1, 0);
        b.conv2 = nn::conv2d<Backend>::load_with_batch_norm(ws.scope("conv2"), ws.scope("bn2"), be, planes,
                                                            planes, 3, 1, 1);
        b.conv3 = nn::conv2d<Backend>::load_with_batch_norm(ws.scope("conv3"), ws.scope("bn3"), be, out, planes,
                                                            1, 1, 0);
        // In the checkpoint the avgpool of the downsample Sequential is named "-1" (it has no
        // weights), so the convolution is downsample.0 and its batch norm downsample.1.
        if (stride > 1 || inplanes != out)
            b.downsample = nn::conv2d<Backend>::load_with_batch_norm(ws.scope("downsample.0"),
                                                                     ws.scope("downsample.1"), be, out, inplanes,
                                                                     1, 1, 0);
        b.stride = stride;
        return b;
    }

    /// x (N, inplanes, H, W) → (N, 4·planes, H/stride, W/stride).
    tensor forward(const Backend& be, const tensor& x) const {
        tensor out = conv2.forward_relu(be, conv1.forward_relu(be, x));
        if (stride > 1) out = be.avg_pool2d(out, stride);
        if (!downsample) return conv3.forward_add_relu(be, out, x);
        return conv3.forward_add_relu(be, out, downsample->forward(be, stride > 1 ? be.avg_pool2d(x, stride) : x));
    }
};

template <class Backend>
struct modified_resnet {
    using tensor = typename Backend::tensor;
    vision_config cfg;
    nn::conv2d<Backend> conv1;  // (width/2, 3, 3, 3), stride 2, pad 1 ∘ bn1
    nn::conv2d<Backend> conv2;  // (width/2, width/2, 3, 3), pad 1 ∘ bn2
    nn::conv2d<Backend> conv3;  // (width, width/2, 3, 3), pad 1 ∘ bn3
    std::vector<bottleneck<Backend>> layer1;  // planes width,   stride 1
    std::vector<bottleneck<Backend>> layer2;  // planes 2·width, stride 2
    std::vector<bottleneck<Backend>> layer3;  // planes 4·width, stride 2
    std::vector<bottleneck<Backend>> layer4;  // planes 8·width, stride 2: out (32·width, image_size/32)²
    nn::attention_pool2d<Backend> attnpool;   // embed 32·width → embed_dim

    /// `ws` is scoped at "visual".
    static modified_resnet load(const weight_source& ws, const Backend& be, const vision_config& c,
                                int64_t embed_dim) {
        const int64_t w = c.width, half = c.width / 2;
        modified_resnet m;
        m.cfg = c;
        using conv = nn::conv2d<Backend>;
        m.conv1 = conv::load_with_batch_norm(ws.scope("conv1"), ws.scope("bn1"), be, half, 3, 3, /*stride=*/2, 1);
        m.conv2 = conv::load_with_batch_norm(ws.scope("conv2"), ws.scope("bn2"), be, half, half, 3, 1, 1);
        m.conv3 = conv::load_with_batch_norm(ws.scope("conv3"), ws.scope("bn3"), be, w, half, 3, 1, 1);
        int64_t inplanes = w;
        std::vector<bottleneck<Backend>>* stages[4] = {&m.layer1, &m.layer2, &m.layer3, &m.layer4};
        for (int s = 0; s < 4; ++s) {
            const std::string name = "layer" + std::to_string(s + 1);
            const int64_t planes = w << s, blocks = c.resnet_layers[static_cast<size_t>(s)];
            for (int64_t i = 0; i < blocks; ++i) {
                // Only a stage's first block changes the resolution and the channel count.
                stages[s]->push_back(bottleneck<Backend>::load(ws.scope(name).scope(std::to_string(i)), be, inplanes,
                                                               planes, i == 0 && s > 0 ? 2 : 1));
                inplanes = planes * bottleneck<Backend>::expansion;
            }
            if (ws.contains(name + "." + std::to_string(blocks) + ".conv1.weight"))
                ZEROCLIP_THROW(errc::shape, ws.file() + ": the checkpoint has more than the " +
                                                std::to_string(blocks) + " bottleneck blocks its config declares in " +
                                                name);
        }
        m.attnpool = nn::attention_pool2d<Backend>::load(ws.scope("attnpool"), be, c.image_size / 32,
                                                         c.resnet_embed_width(), c.heads, embed_dim);
        return m;
    }

    /// pixels (N, 3, S, S) → (N, width, S/4, S/4): three conv-bn-relu, then avgpool(2).
    tensor stem(const Backend& be, const tensor& pixels) const {
        tensor x = conv1.forward_relu(be, pixels);
        x = conv2.forward_relu(be, x);
        x = conv3.forward_relu(be, x);
        return be.avg_pool2d(x, 2);
    }

    /// x through the blocks of one stage.
    static tensor run_stage(const Backend& be, const std::vector<bottleneck<Backend>>& stage, tensor x) {
        for (const auto& block : stage) x = block.forward(be, x);
        return x;
    }

    /// pixels (N, 3, image_size, image_size) → image embeddings (N, embed_dim).
    tensor forward(const Backend& be, const tensor& pixels) const { return attnpool.forward(be, trunk(be, pixels)); }

    /// pixels (N, 3, S, S) → the last stage's maps (N, 32·width, S/32, S/32), on groups of
    /// image_group_size(be, N) images gathered on the host. An image's maps depend on it alone, so
    /// the result is the same, and the largest activations held at once are a group's. (Running
    /// only the first stages in groups, the later ones on the whole batch, held 45 MiB more at
    /// RN50 int8 batch 16 and was no faster: the later stages' weights are read once a group, but
    /// from cache.)
    tensor trunk(const Backend& be, const tensor& pixels) const {
        const auto all_stages = [&](const tensor& images) {
            tensor x = stem(be, images);
            for (const auto* stage : {&layer1, &layer2, &layer3, &layer4}) x = run_stage(be, *stage, std::move(x));
            return x;
        };
        const int64_t n = pixels.dim(0), group = image_group_size(be, n);
        return group < n ? in_groups(be, pixels, group, all_stages) : all_stages(pixels);
    }

private:
    /// f(images) of a batch (N, ...) computed on groups of `group` images and gathered on the host
    /// (f maps each image on its own).
    template <class F>
    static tensor in_groups(const Backend& be, const tensor& images, int64_t group, F&& f) {
        const int64_t n = images.dim(0);
        const tensor flat = images.reshaped({n, images.numel() / n});  // slice_rows takes (rows, width)
        zeroclip::tensor gathered;
        for (int64_t first = 0; first < n; first += group) {
            const int64_t count = std::min(group, n - first);
            shape_t shape = images.shape();
            shape[0] = count;
            const zeroclip::tensor part = be.download(f(be.slice_rows(flat, first, count).reshaped(shape)));
            if (gathered.empty()) {
                shape_t all = part.shape();
                all[0] = n;
                gathered = zeroclip::tensor(all);
            }
            std::copy_n(part.data(), part.numel(), gathered.data() + first * (part.numel() / count));
        }
        return be.upload(gathered);
    }
};

}  // namespace zeroclip::models
