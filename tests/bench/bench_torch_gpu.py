#!/usr/bin/env python3
"""PyTorch reference timing for bench_gpu: the official CLIP architecture (a compact but faithful
re-implementation of openai/CLIP clip/model.py: ViT, ModifiedResNet with AttentionPool2d, the text
transformer; the classes of tests/bench/torch_clip.py, the CPU benchmark's PyTorch peer) with random
weights on CUDA, ViT-B/32 and RN50 shapes, encode_image at batch 1, 32 and 256 and encode_text at
batch 256, in fp32 (TF32 off), tf32 and fp16 (model.half(), as clip.load gives on CUDA).

Times are measured like zeroclip's bench_gpu: end to end, host (pageable) float32 tensors in, host
float32 embeddings out. The "on-device" column excludes the transfers (inputs already on the GPU).
Note: PyTorch's encode_text runs all 77 positions; zeroclip stops at the batch's last end-of-text
token, so prompts/s are not the same amount of work.

usage: bench_torch_gpu.py [--seconds S] [--models vit-b32,rn50] [--batches 1,32,256] [--modes fp32,tf32,fp16]
exit status: 0 measured, 2 no PyTorch with CUDA.
"""
import argparse
import os
import sys
import time

try:
    import torch
except ImportError:  # pragma: no cover - depends on the machine
    print("bench_torch_gpu: PyTorch is not installed; nothing to measure")
    sys.exit(2)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_clip import CLIP  # noqa: E402  (the architecture, shared with the CPU benchmark's PyTorch peer)

TEXT = dict(width=512, layers=12, heads=8, context_length=77, vocab_size=49408)
SHAPES = {  # build_model() on the released checkpoints, as zeroclip configs (torch_clip.CLIP's argument)
    "vit-b32": ("ViT-B/32", dict(embed_dim=512, text=TEXT, vision=dict(type="vit", width=768, layers=12, heads=12,
                                                                       patch_size=32, image_size=224))),
    "rn50": ("RN50", dict(embed_dim=1024, text=TEXT, vision=dict(type="resnet", width=64, layers=[3, 4, 6, 3],
                                                                 heads=32, image_size=224))),
}


def random_clip(cfg):
    """torch_clip.CLIP with random weights: PyTorch's default init for the layers, and the
    embeddings and projections that CLIP() leaves at zero drawn at the official scales."""
    model = CLIP(cfg)
    v, width = model.visual, cfg["text"]["width"]
    with torch.no_grad():
        if cfg["vision"]["type"] == "resnet":
            pos = v.attnpool.positional_embedding
            pos.normal_(std=pos.shape[1] ** -0.5)
        else:
            for p in (v.class_embedding, v.positional_embedding, v.proj):
                p.normal_(std=cfg["vision"]["width"] ** -0.5)
        model.positional_embedding.normal_(std=0.01)
        model.text_projection.normal_(std=width ** -0.5)
        model.logit_scale.fill_(2.6592)
        model.token_embedding.weight.normal_(std=0.02)
        for b in model.transformer.resblocks:
            b.attn.in_proj_weight.normal_(std=width ** -0.5)
    return model


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
            model = random_clip(shape).eval().to(dev)
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
