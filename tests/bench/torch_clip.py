#!/usr/bin/env python3
"""PyTorch CLIP of the official architecture (openai/CLIP clip/model.py, compacted) loaded from a
zeroclip .safetensors file, for the CPU benchmark (scripts/bench_cpu.sh): the PyTorch peer, and
the source of the ONNX models that the ONNX Runtime peer runs.

    /usr/bin/python3 tests/bench/torch_clip.py export --model M.safetensors --out DIR [--text]
        DIR/image.onnx (pixels float32 [N,3,S,S] -> [N,embed]) and with --text
        DIR/text.onnx (tokens int64 [N,77] -> [N,embed]), batch dynamic, opset 14
    /usr/bin/python3 tests/bench/torch_clip.py bench --model M.safetensors [--batches 1,16] [--reps 5]
        [--tokens DIR] [--threads 2] [--check OUT.f32]
        one JSON object like bench_cpu's: load and call times in ms, peak RSS

Everything in float32 (the official code casts fp16 checkpoints on the CPU to float32 too).
tests/bench/bench_torch_gpu.py imports the model classes from here (random weights on CUDA, also
model.half()); numpy and safetensors_io are imported only by load() and bench(), so the classes
need PyTorch alone.
"""

import argparse
import json
import os
import resource
import sys
import time
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
WEIGHTS_TOOLS = os.path.join(HERE, "..", "..", "weights_tools")


# ----------------------------------------------------------------------------- the model (clip/model.py)

class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride > 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", nn.AvgPool2d(stride)),
                ("0", nn.Conv2d(inplanes, planes * 4, 1, stride=1, bias=False)),
                ("1", nn.BatchNorm2d(planes * 4))]))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class AttentionPool2d(nn.Module):
    def __init__(self, spacial_dim, embed_dim, num_heads, output_dim):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.zeros(spacial_dim ** 2 + 1, embed_dim))
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim)
        self.num_heads = num_heads

    def forward(self, x):
        x = x.flatten(start_dim=2).permute(2, 0, 1)  # NCHW -> (HW)NC
        x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)
        x = x + self.positional_embedding[:, None, :].to(x.dtype)
        x, _ = F.multi_head_attention_forward(
            query=x[:1], key=x, value=x, embed_dim_to_check=x.shape[-1], num_heads=self.num_heads,
            q_proj_weight=self.q_proj.weight, k_proj_weight=self.k_proj.weight, v_proj_weight=self.v_proj.weight,
            in_proj_weight=None, in_proj_bias=torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]),
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0, out_proj_weight=self.c_proj.weight,
            out_proj_bias=self.c_proj.bias, use_separate_proj_weight=True, training=self.training,
            need_weights=False)
        return x.squeeze(0)


class ModifiedResNet(nn.Module):
    def __init__(self, layers, output_dim, heads, input_resolution, width):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        self.relu = nn.ReLU(inplace=True)
        self._inplanes = width
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)
        self.attnpool = AttentionPool2d(input_resolution // 32, width * 32, heads, output_dim)

    def _make_layer(self, planes, blocks, stride=1):
        layers = [Bottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.relu(self.bn3(self.conv3(x)))
        x = self.avgpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.attnpool(x)


class LayerNorm(nn.LayerNorm):
    """fp16 support, as OpenAI's subclass: computes in float32 and casts back. clip.load keeps the
    LayerNorm parameters float32; after model.half() they are float16, so they are cast too (a float32
    input with float16 parameters is an error). All float32: plain LayerNorm."""

    def forward(self, x):
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:
            return super().forward(x)
        return F.layer_norm(x.type(torch.float32), self.normalized_shape, self.weight.type(torch.float32),
                            self.bias.type(torch.float32), self.eps).type(x.dtype)


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, d_model, n_head, act, eps, attn_mask=None):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_head)
        self.ln_1 = LayerNorm(d_model, eps=eps)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(d_model, d_model * 4)),
            ("gelu", QuickGELU() if act == "quick_gelu" else nn.GELU()),
            ("c_proj", nn.Linear(d_model * 4, d_model))]))
        self.ln_2 = LayerNorm(d_model, eps=eps)
        self.attn_mask = attn_mask

    def forward(self, x):
        mask = self.attn_mask
        if mask is not None and (mask.dtype != x.dtype or mask.device != x.device):
            mask = mask.to(dtype=x.dtype, device=x.device)  # fp16 / CUDA, as the official attention()
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width, layers, heads, act, eps, attn_mask=None):
        super().__init__()
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads, act, eps, attn_mask)
                                         for _ in range(layers)])

    def forward(self, x):
        return self.resblocks(x)


class VisionTransformer(nn.Module):
    def __init__(self, input_resolution, patch_size, width, layers, heads, output_dim, act, eps):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros((input_resolution // patch_size) ** 2 + 1, width))
        self.ln_pre = LayerNorm(width, eps=eps)
        self.transformer = Transformer(width, layers, heads, act, eps)
        self.ln_post = LayerNorm(width, eps=eps)
        self.proj = nn.Parameter(torch.zeros(width, output_dim))

    def forward(self, x):
        x = self.conv1(x)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = self.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype,
                                                               device=x.device)
        x = torch.cat([cls, x], dim=1)
        x = self.ln_pre(x + self.positional_embedding.to(x.dtype))
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :]) @ self.proj


class CLIP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        v, t = cfg["vision"], cfg["text"]
        act, eps = cfg.get("hidden_act", "quick_gelu"), cfg.get("layer_norm_eps", 1e-5)
        if v["type"] == "resnet":
            self.visual = ModifiedResNet(v["layers"], cfg["embed_dim"], v["heads"], v["image_size"], v["width"])
        else:
            self.visual = VisionTransformer(v["image_size"], v["patch_size"], v["width"], v["layers"], v["heads"],
                                            cfg["embed_dim"], act, eps)
        ctx = t["context_length"]
        mask = torch.empty(ctx, ctx).fill_(float("-inf")).triu_(1)
        self.transformer = Transformer(t["width"], t["layers"], t["heads"], act, eps, attn_mask=mask)
        self.token_embedding = nn.Embedding(t["vocab_size"], t["width"])
        self.positional_embedding = nn.Parameter(torch.zeros(ctx, t["width"]))
        self.ln_final = LayerNorm(t["width"], eps=eps)
        self.text_projection = nn.Parameter(torch.zeros(t["width"], cfg["embed_dim"]))
        self.logit_scale = nn.Parameter(torch.zeros([]))

    def encode_image(self, image):
        return self.visual(image)

    def encode_text(self, text):
        x = self.token_embedding(text) + self.positional_embedding
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ self.text_projection


def load(path):
    """The CLIP of a zeroclip .safetensors file, float32, eval mode."""
    import numpy as np
    root = os.path.dirname(WEIGHTS_TOOLS)  # weights_tools is a package (relative imports inside)
    if root not in sys.path:
        sys.path.insert(0, root)
    from weights_tools import safetensors_io
    f = safetensors_io.SafetensorsFile(path)
    cfg = json.loads(f.metadata["zeroclip.config"])
    model = CLIP(cfg)
    state = {}
    for name in f.keys():
        a = f.get(name)
        state[name] = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked") and not m.endswith("attn_mask")]
    if missing or unexpected:
        raise SystemExit("torch_clip: %s: missing %s, unexpected %s" % (path, missing[:5], unexpected[:5]))
    return model.eval(), cfg


class _Image(nn.Module):
    def __init__(self, clip):
        super().__init__()
        self.clip = clip

    def forward(self, pixels):
        return self.clip.encode_image(pixels)


class _Text(nn.Module):
    def __init__(self, clip):
        super().__init__()
        self.clip = clip

    def forward(self, tokens):
        return self.clip.encode_text(tokens)


def export(args):
    torch.set_num_threads(int(args.threads))
    model, cfg = load(args.model)
    os.makedirs(args.out, exist_ok=True)
    s = cfg["vision"]["image_size"]
    with torch.no_grad():
        torch.onnx.export(_Image(model), (torch.randn(2, 3, s, s),), os.path.join(args.out, "image.onnx"),
                          input_names=["pixels"], output_names=["embeds"], opset_version=14,
                          dynamic_axes={"pixels": {0: "n"}, "embeds": {0: "n"}}, do_constant_folding=True)
        if args.text:
            ctx = cfg["text"]["context_length"]
            tokens = torch.randint(1, 1000, (2, ctx), dtype=torch.int64)
            tokens[:, 5] = cfg["text"]["vocab_size"] - 1
            torch.onnx.export(_Text(model), (tokens,), os.path.join(args.out, "text.onnx"),
                              input_names=["tokens"], output_names=["embeds"], opset_version=14,
                              dynamic_axes={"tokens": {0: "n"}, "embeds": {0: "n"}}, do_constant_folding=True)


def bench(args):
    import numpy as np
    torch.set_num_threads(int(args.threads))
    torch.set_num_interop_threads(1)
    out = {"peer": "torch", "threads": int(args.threads), "torch": torch.__version__}
    t0 = time.perf_counter()
    model, cfg = load(args.model)
    out["load_ms"] = 1000 * (time.perf_counter() - t0)
    out["rss_after_load_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def timed(f):
        for _ in range(args.warmup):
            f()
        ms = []
        for _ in range(args.reps):
            t = time.perf_counter()
            f()
            ms.append(1000 * (time.perf_counter() - t))
        return ms

    s = cfg["vision"]["image_size"]
    rng = np.random.default_rng(7)
    with torch.inference_mode():
        for b in [int(x) for x in args.batches.split(",") if x]:
            pixels = torch.from_numpy(rng.uniform(-2, 2, (b, 3, s, s)).astype(np.float32))
            out["image_b%d_ms" % b] = timed(lambda: model.encode_image(pixels))
        if args.tokens:
            meta = json.load(open(os.path.join(args.tokens, "tokens.json")))
            for kind in ("short", "long"):
                shape = meta[kind]
                ids = np.fromfile(os.path.join(args.tokens, kind + ".i32"), dtype=np.int32).reshape(shape)
                tokens = torch.from_numpy(ids.astype(np.int64))
                out["text_%s_n" % kind] = shape[0]
                out["text_%s_ms" % kind] = timed(lambda: model.encode_text(tokens))
        if args.check:
            # The cross-check input: pixels[i] = 2·sin(0.001·i) over a batch of 2, and the short prompts.
            pixels = torch.from_numpy((2 * np.sin(0.001 * np.arange(2 * 3 * s * s))).astype(np.float32))
            parts = [model.encode_image(pixels.reshape(2, 3, s, s)).numpy().ravel()]
            if args.tokens:
                shape = meta["short"]
                ids = np.fromfile(os.path.join(args.tokens, "short.i32"), dtype=np.int32).reshape(shape)
                parts.append(model.encode_text(torch.from_numpy(ids.astype(np.int64))).numpy().ravel())
            np.concatenate(parts).astype(np.float32).tofile(args.check)
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("--model", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--text", action="store_true")
    e.add_argument("--threads", default=2)
    b = sub.add_parser("bench")
    b.add_argument("--model", required=True)
    b.add_argument("--batches", default="1,16")
    b.add_argument("--reps", type=int, default=5)
    b.add_argument("--warmup", type=int, default=1)
    b.add_argument("--tokens", default="")
    b.add_argument("--threads", default=2)
    b.add_argument("--check", default="", help="write the embeddings of the cross-check input (float32)")
    args = p.parse_args()
    export(args) if args.cmd == "export" else bench(args)


if __name__ == "__main__":
    main()
