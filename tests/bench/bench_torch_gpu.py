#!/usr/bin/env python3
"""PyTorch reference timing for bench_gpu: the official CLIP architecture (a compact but faithful
re-implementation of openai/CLIP clip/model.py: ViT, ModifiedResNet with AttentionPool2d, the text
transformer) with random weights on CUDA, ViT-B/32 and RN50 shapes, encode_image at batch 1, 32 and
256 and encode_text at batch 256, in fp32 (TF32 off), tf32 and fp16 (model.half(), as clip.load
gives on CUDA).

Times are measured like zeroclip's bench_gpu: end to end, host (pageable) float32 tensors in, host
float32 embeddings out. The "on-device" column excludes the transfers (inputs already on the GPU).
Note: PyTorch's encode_text runs all 77 positions; zeroclip stops at the batch's last end-of-text
token, so prompts/s are not the same amount of work.

usage: bench_torch_gpu.py [--seconds S] [--models vit-b32,rn50] [--batches 1,32,256] [--modes fp32,tf32,fp16]
exit status: 0 measured, 2 no PyTorch with CUDA.
"""
import argparse
import collections
import sys
import time

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError:  # pragma: no cover - depends on the machine
    print("bench_torch_gpu: PyTorch is not installed; nothing to measure")
    sys.exit(2)


# ---- the architecture (openai/CLIP clip/model.py, same module structure and forward) ----------
class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu3 = nn.ReLU(inplace=True)
        self.downsample = None
        self.stride = stride
        if stride > 1 or inplanes != planes * Bottleneck.expansion:
            self.downsample = nn.Sequential(collections.OrderedDict([
                ("-1", nn.AvgPool2d(stride)),
                ("0", nn.Conv2d(inplanes, planes * self.expansion, 1, stride=1, bias=False)),
                ("1", nn.BatchNorm2d(planes * self.expansion))]))

    def forward(self, x):
        identity = x
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.avgpool(out)
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu3(out)


class AttentionPool2d(nn.Module):
    def __init__(self, spacial_dim, embed_dim, num_heads, output_dim=None):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(spacial_dim ** 2 + 1, embed_dim) / embed_dim ** 0.5)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim or embed_dim)
        self.num_heads = num_heads

    def forward(self, x):
        x = x.flatten(start_dim=2).permute(2, 0, 1)  # NCHW -> (HW)NC
        x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)  # (HW+1)NC
        x = x + self.positional_embedding[:, None, :].to(x.dtype)
        x, _ = F.multi_head_attention_forward(
            query=x[:1], key=x, value=x, embed_dim_to_check=x.shape[-1], num_heads=self.num_heads,
            q_proj_weight=self.q_proj.weight, k_proj_weight=self.k_proj.weight, v_proj_weight=self.v_proj.weight,
            in_proj_weight=None, in_proj_bias=torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]),
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0, out_proj_weight=self.c_proj.weight,
            out_proj_bias=self.c_proj.bias, use_separate_proj_weight=True, training=self.training,
            need_weights=False)
        return x.squeeze(0)


class ModifiedResNet(nn.Module):
    def __init__(self, layers, output_dim, heads, input_resolution=224, width=64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width // 2, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width // 2, width // 2, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(width // 2, width, kernel_size=3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu3 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(2)
        self._inplanes = width
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)
        embed_dim = width * 32
        self.attnpool = AttentionPool2d(input_resolution // 32, embed_dim, heads, output_dim)

    def _make_layer(self, planes, blocks, stride=1):
        layers = [Bottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = x.type(self.conv1.weight.dtype)
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.relu3(self.bn3(self.conv3(x)))
        x = self.avgpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.attnpool(x)


class LayerNorm(nn.LayerNorm):
    """fp16 support: computes in float32, as OpenAI's subclass."""

    def forward(self, x):
        orig_type = x.dtype
        return super().forward(x.type(torch.float32)).type(orig_type)


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, d_model, n_head, attn_mask=None):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_head)
        self.ln_1 = LayerNorm(d_model)
        self.mlp = nn.Sequential(collections.OrderedDict([
            ("c_fc", nn.Linear(d_model, d_model * 4)), ("gelu", QuickGELU()),
            ("c_proj", nn.Linear(d_model * 4, d_model))]))
        self.ln_2 = LayerNorm(d_model)
        self.attn_mask = attn_mask

    def attention(self, x):
        mask = self.attn_mask.to(dtype=x.dtype, device=x.device) if self.attn_mask is not None else None
        return self.attn(x, x, x, need_weights=False, attn_mask=mask)[0]

    def forward(self, x):
        x = x + self.attention(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width, layers, heads, attn_mask=None):
        super().__init__()
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads, attn_mask) for _ in range(layers)])

    def forward(self, x):
        return self.resblocks(x)


class VisionTransformer(nn.Module):
    def __init__(self, input_resolution, patch_size, width, layers, heads, output_dim):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((input_resolution // patch_size) ** 2 + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def forward(self, x):
        x = self.conv1(x)  # shape = [*, width, grid, grid]
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = self.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype,
                                                               device=x.device)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x).permute(1, 0, 2)  # NLD -> LND
        x = self.transformer(x).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :]) @ self.proj


class CLIP(nn.Module):
    def __init__(self, embed_dim, image_resolution, vision_layers, vision_width, vision_patch_size,
                 context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8, transformer_layers=12):
        super().__init__()
        self.context_length = context_length
        if isinstance(vision_layers, (tuple, list)):
            self.visual = ModifiedResNet(vision_layers, embed_dim, vision_width * 32 // 64, image_resolution,
                                         vision_width)
        else:
            self.visual = VisionTransformer(image_resolution, vision_patch_size, vision_width, vision_layers,
                                            vision_width // 64, embed_dim)
        mask = torch.empty(context_length, context_length).fill_(float("-inf")).triu_(1)
        self.transformer = Transformer(transformer_width, transformer_layers, transformer_heads, mask)
        self.token_embedding = nn.Embedding(vocab_size, transformer_width)
        self.positional_embedding = nn.Parameter(torch.randn(context_length, transformer_width) * 0.01)
        self.ln_final = LayerNorm(transformer_width)
        self.text_projection = nn.Parameter(torch.randn(transformer_width, embed_dim) * transformer_width ** -0.5)
        self.logit_scale = nn.Parameter(torch.ones([]) * 2.6592)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        for b in self.transformer.resblocks:
            nn.init.normal_(b.attn.in_proj_weight, std=transformer_width ** -0.5)

    @property
    def dtype(self):
        return self.visual.conv1.weight.dtype

    def encode_image(self, image):
        return self.visual(image.type(self.dtype))

    def encode_text(self, text):
        x = self.token_embedding(text).type(self.dtype) + self.positional_embedding.type(self.dtype)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x).type(self.dtype)
        return x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ self.text_projection


SHAPES = {  # build_model() on the released checkpoints
    "vit-b32": ("ViT-B/32", dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
                                 vision_patch_size=32)),
    "rn50": ("RN50", dict(embed_dim=1024, image_resolution=224, vision_layers=(3, 4, 6, 3), vision_width=64,
                          vision_patch_size=None)),
}


def rate(fn, budget):
    """Calls per second: two warm-up calls, then at least `budget` seconds (>= 3 calls)."""
    fn(), fn()
    torch.cuda.synchronize()
    calls, t0 = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - t0 < budget:
        fn()
        calls += 1
    torch.cuda.synchronize()
    return calls / (time.perf_counter() - t0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--models", default="vit-b32,rn50")
    ap.add_argument("--batches", default="1,32,256")
    ap.add_argument("--modes", default="fp32,tf32,fp16")
    ap.add_argument("--text-batch", type=int, default=256)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_torch_gpu: PyTorch has no CUDA device; nothing to measure")
        return 2
    batches = [int(b) for b in args.batches.split(",")]
    dev = torch.device("cuda")
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    print("PyTorch %s, CUDA %s, cuDNN %s, %s" % (torch.__version__, torch.version.cuda,
                                                 torch.backends.cudnn.version(), torch.cuda.get_device_name(0)))
    pixels = torch.randn(max(batches), 3, 224, 224)  # pageable host memory, like zeroclip's input
    tokens = torch.zeros(args.text_batch, 77, dtype=torch.long)
    gen = torch.Generator().manual_seed(1)
    for i in range(args.text_batch):
        n = int(torch.randint(6, 21, (1,), generator=gen))
        tokens[i, 0] = 49406
        tokens[i, 1:n - 1] = torch.randint(256, 49256, (n - 2,), generator=gen)
        tokens[i, n - 1] = 49407
    rows = []
    for key in args.models.split(","):
        label, shape = SHAPES[key]
        for mode in args.modes.split(","):
            tf32 = mode == "tf32"
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
            model = CLIP(**shape).eval().to(dev)
            dtype = torch.float16 if mode == "fp16" else torch.float32
            if mode == "fp16":
                model = model.half()
            tok_dev = tokens.to(dev)
            row = [label, mode]
            with torch.inference_mode():
                for b in batches:
                    host = pixels[:b].contiguous()
                    dev_in = host.to(dev, dtype)
                    e2e = rate(lambda: model.encode_image(host.to(dev, dtype)).float().cpu(), args.seconds)
                    on_dev = rate(lambda: model.encode_image(dev_in), args.seconds)
                    row += [b * e2e, b * on_dev]
                row.append(args.text_batch * rate(lambda: model.encode_text(tokens.to(dev)).float().cpu(),
                                                  args.seconds))
                del tok_dev
            rows.append(row)
            del model
            torch.cuda.empty_cache()
    print("\nPyTorch reference (official CLIP architecture, random weights), images/s end to end (on device)")
    header = "%-9s %-5s" % ("model", "mode") + "".join(" %21s" % ("img/s@%d" % b) for b in batches)
    print(header + " %15s" % ("prompts/s@%d" % args.text_batch))
    for r in rows:
        cells = "".join(" %10.1f (%8.1f)" % (r[2 + 2 * i], r[3 + 2 * i]) for i in range(len(batches)))
        print("%-9s %-5s%s %15.1f" % (r[0], r[1], cells, r[-1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
