#!/usr/bin/env python3
"""Write a zeroclip .safetensors file with random weights of an official CLIP shape (or of a
custom small shape), for tests and benchmarks.

Usage:
    /usr/bin/python3 weights_tools/make_random.py --arch ViT-B/32 [--seed 0] [--dtype f16] OUT.safetensors
    /usr/bin/python3 weights_tools/make_random.py --tiny --vision-width 192 --vision-layers 3 --patch 8 \
        --image-size 48 --text-width 128 --text-layers 1 --embed-dim 24 OUT.safetensors
    /usr/bin/python3 weights_tools/make_random.py --tiny --resnet-layers 2,1,1,1 --vision-width 32 OUT.safetensors
    /usr/bin/python3 weights_tools/make_random.py --arch RN50 --dry-run      # config + shapes as JSON

Architectures: ViT-B/32 ViT-B/16 ViT-L/14 ViT-L/14@336px RN50 RN101 RN50x4 RN50x16 RN50x64
(constructor arguments of the released OpenAI models, as clip/model.py's build_model infers them).
Heads follow build_model (width//64; ResNet attention pool width*32//64) unless overridden.

Values are scaled like CLIP.initialize_parameters (std ~ width**-0.5, projections
(2*layers)**-0.5 smaller, He-normal ResNet convolutions, small residual-branch BatchNorm gain),
with non-trivial LayerNorm/BatchNorm weights (near 1) and biases, positive BN running_var, and
logit_scale = ln(1/0.07), so activations stay finite at any depth. Every tensor gets its own
generator numpy.random.default_rng([seed, index]), so files are reproducible.
Exit status: 0 ok, 1 error, 2 usage error.
"""

import argparse
import collections
import json
import math
import os
import sys

PROG = "make_random.py"

if __name__ == "__main__":  # run as a script: check numpy before importing the package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from weights_tools._common import require_numpy
    require_numpy(PROG)

import numpy as np  # noqa: E402

from weights_tools import clip_arch, safetensors_io, sources  # noqa: E402
from weights_tools._common import ToolError, check_output, human_bytes, run_main  # noqa: E402

# Base shape for --tiny (a ViT unless --resnet-layers is given).
TINY_VIT = dict(embed_dim=16, image_size=32, vision_layers=1, vision_width=64, patch_size=16,
                text_width=64, text_layers=1)
TINY_RESNET = dict(embed_dim=16, image_size=64, vision_layers=[1, 1, 1, 1], vision_width=16, patch_size=None,
                   text_width=64, text_layers=1)
ST_DTYPES = {"f32": "F32", "f16": "F16", "bf16": "BF16"}


def build_config(arch=None, tiny=False, embed_dim=None, image_size=None, vision_width=None, vision_layers=None,
                 resnet_layers=None, patch=None, vision_heads=None, text_width=None, text_layers=None,
                 text_heads=None, context_length=None, vocab_size=None, hidden_act="quick_gelu"):
    """zeroclip config for an official architecture name (or the tiny base) plus overrides."""
    if arch is not None:
        if arch not in clip_arch.OFFICIAL:
            raise ToolError("unknown --arch %r (choose from %s)" % (arch, ", ".join(clip_arch.OFFICIAL)))
        base = dict(clip_arch.OFFICIAL[arch])
    elif tiny:
        base = dict(TINY_RESNET if resnet_layers is not None else TINY_VIT)
    else:
        raise ToolError("give --arch NAME or --tiny")
    if resnet_layers is not None and (vision_layers is not None or patch is not None):
        raise ToolError("--resnet-layers cannot be combined with --vision-layers / --patch (ViT options)")
    if resnet_layers is not None:
        base["vision_layers"] = list(resnet_layers)
        base["patch_size"] = None
    elif (vision_layers is not None or patch is not None) and base["patch_size"] is None:
        raise ToolError("--vision-layers / --patch describe a ViT, but the base architecture is a ResNet "
                        "(use --resnet-layers a,b,c,d)")
    is_vit = base["patch_size"] is not None
    if vision_layers is not None:
        base["vision_layers"] = vision_layers
    if patch is not None:
        base["patch_size"] = patch
    for key, val in (("embed_dim", embed_dim), ("image_size", image_size), ("vision_width", vision_width),
                     ("text_width", text_width), ("text_layers", text_layers)):
        if val is not None:
            base[key] = val
    vw, tw = base["vision_width"], base["text_width"]
    if is_vit:
        vh = vision_heads if vision_heads is not None else clip_arch.openai_heads(vw)
        if vh < 1:
            raise ToolError("vision width %d gives 0 heads under build_model's width//64 rule; "
                            "use a width >= 64 or --vision-heads" % vw)
        vision = dict(type="vit", width=vw, layers=base["vision_layers"], heads=vh,
                      patch_size=base["patch_size"], image_size=base["image_size"])
    else:
        vh = vision_heads if vision_heads is not None else clip_arch.resnet_heads(vw)
        vision = dict(type="resnet", width=vw, layers=base["vision_layers"], heads=vh,
                      image_size=base["image_size"])
    th = text_heads if text_heads is not None else clip_arch.openai_heads(tw)
    if th < 1:
        raise ToolError("text width %d gives 0 heads under build_model's width//64 rule; "
                        "use a width >= 64 or --text-heads" % tw)
    text = dict(width=tw, layers=base["text_layers"], heads=th,
                context_length=context_length or clip_arch.OFFICIAL_CONTEXT_LENGTH,
                vocab_size=vocab_size or clip_arch.OFFICIAL_VOCAB_SIZE)
    return clip_arch.make_config(base["embed_dim"], vision, text, hidden_act)


def _init_spec(name, shape, cfg):
    """(kind, a, b): 'normal' -> b + a*N(0,1); 'uniform' -> U(a, b); 'const' -> a."""
    v, t = cfg["vision"], cfg["text"]
    if name == "logit_scale":
        return ("const", math.log(1 / 0.07), 0.0)
    if name == "token_embedding.weight":
        return ("normal", 0.02, 0.0)
    if name == "positional_embedding":
        return ("normal", 0.01, 0.0)
    if name == "text_projection":
        return ("normal", t["width"] ** -0.5, 0.0)
    if ".ln_" in name or name.startswith("ln_") or name.startswith("visual.ln_"):
        return ("normal", 0.05, 1.0) if name.endswith(".weight") else ("normal", 0.02, 0.0)
    if ".resblocks." in name:
        w = v["width"] if name.startswith("visual.") else t["width"]
        layers = v["layers"] if name.startswith("visual.") else t["layers"]
        proj_std = w ** -0.5 * (2 * layers) ** -0.5
        if name.endswith("attn.in_proj_weight"):
            return ("normal", w ** -0.5, 0.0)
        if name.endswith("attn.out_proj.weight") or name.endswith("mlp.c_proj.weight"):
            return ("normal", proj_std, 0.0)
        if name.endswith("mlp.c_fc.weight"):
            return ("normal", (2 * w) ** -0.5, 0.0)
        return ("normal", 0.02, 0.0)  # biases
    if v["type"] == "vit":
        w = v["width"]
        if name == "visual.conv1.weight":
            return ("normal", (3 * v["patch_size"] ** 2) ** -0.5, 0.0)
        if name in ("visual.class_embedding", "visual.positional_embedding", "visual.proj"):
            return ("normal", w ** -0.5, 0.0)
    else:
        d = v["width"] * 32
        if name.startswith("visual.attnpool."):
            if name.endswith(".bias"):
                return ("normal", 0.02, 0.0)
            return ("normal", d ** -0.5, 0.0)
        if len(shape) == 4:  # convolutions: He normal
            fan_in = shape[1] * shape[2] * shape[3]
            return ("normal", math.sqrt(2.0 / fan_in), 0.0)
        if name.endswith(".running_var"):
            return ("uniform", 0.5, 1.5)
        if name.endswith(".running_mean"):
            return ("normal", 0.1, 0.0)
        if name.endswith(".weight"):
            # the last BN of each bottleneck starts small (OpenAI zero-initialises it) so that
            # deep stacks of residual blocks keep their activations in range
            if ".bn3." in name and ".layer" in name:
                return ("normal", 0.02, 0.2)
            return ("normal", 0.1, 1.0)
        if name.endswith(".bias"):
            return ("normal", 0.05, 0.0)
    raise ToolError("no initialisation rule for tensor '%s'" % name)


def random_tensor(name, shape, cfg, seed, index):
    kind, a, b = _init_spec(name, shape, cfg)
    if kind == "const":
        return np.full(shape, a, dtype=np.float32)
    rng = np.random.default_rng([seed, index])
    if kind == "uniform":
        return rng.uniform(a, b, size=shape).astype(np.float32)
    x = rng.standard_normal(size=shape, dtype=np.float32)
    x *= np.float32(a)
    if b:
        x += np.float32(b)
    return x


def _to_dtype(x, st):
    if st == "F32":
        return x
    if st == "F16":
        return x.astype(np.float16)
    return safetensors_io.f32_to_bf16_bits(x)


def write_random(path, cfg, seed=0, dtype="f16", bpe=None):
    st = ST_DTYPES[dtype]
    vocab = cfg["text"]["vocab_size"]
    merges = clip_arch.load_openai_merges(bpe or sources.DEFAULT_BPE, clip_arch.merges_for_vocab(vocab))
    tok = clip_arch.tokenizer_metadata(merges, None, vocab)
    meta = sources.format_metadata(cfg, tok)
    entries = []
    for i, (name, shape) in enumerate(clip_arch.expected_shapes(cfg).items()):
        entries.append((name, st, shape,
                        (lambda name=name, shape=shape, i=i: _to_dtype(random_tensor(name, shape, cfg, seed, i), st))))
    safetensors_io.write(path, entries, meta)


def _int_list(text):
    try:
        vals = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("expected 4 comma-separated integers, e.g. 3,4,6,3")
    if len(vals) != 4 or min(vals) < 1:
        raise argparse.ArgumentTypeError("expected 4 comma-separated positive integers, e.g. 3,4,6,3")
    return vals


def _pos_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a positive integer, got %r" % text)
    if v < 1:
        raise argparse.ArgumentTypeError("expected a positive integer, got %r" % text)
    return v


def main(argv=None):
    ap = argparse.ArgumentParser(prog=PROG, description="Write a zeroclip .safetensors file with random weights of "
                                                        "an official CLIP architecture or a custom small one.")
    ap.add_argument("output", nargs="?", help="output .safetensors (not needed with --dry-run)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--arch", choices=list(clip_arch.OFFICIAL), help="official OpenAI architecture")
    g.add_argument("--tiny", action="store_true",
                   help="start from a tiny model (ViT width 64, 1 layer, patch 16, 32 px, text width 64, 1 layer, "
                        "embed 16; ResNet width 16, 64 px with --resnet-layers) and apply the overrides")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--dtype", choices=sorted(ST_DTYPES), default="f16", help="storage type (default f16)")
    ap.add_argument("--embed-dim", type=_pos_int)
    ap.add_argument("--image-size", type=_pos_int)
    ap.add_argument("--vision-width", type=_pos_int, help="ViT width, or ResNet stem width (64 for RN50)")
    ap.add_argument("--vision-layers", type=_pos_int, help="ViT layers")
    ap.add_argument("--resnet-layers", type=_int_list, metavar="A,B,C,D", help="ResNet blocks per stage")
    ap.add_argument("--patch", type=_pos_int, help="ViT patch size")
    ap.add_argument("--vision-heads", type=_pos_int, help="override build_model's head rule")
    ap.add_argument("--text-width", type=_pos_int)
    ap.add_argument("--text-layers", type=_pos_int)
    ap.add_argument("--text-heads", type=_pos_int, help="override build_model's width//64 rule")
    ap.add_argument("--context-length", type=_pos_int)
    ap.add_argument("--vocab-size", type=_pos_int,
                    help="token embedding rows (default 49408); the tokenizer keeps the first vocab-514 merges")
    ap.add_argument("--hidden-act", choices=("quick_gelu", "gelu"), default="quick_gelu")
    ap.add_argument("--bpe", metavar="PATH", help="BPE merges file (default %s)" % os.path.relpath(sources.DEFAULT_BPE))
    ap.add_argument("--dry-run", action="store_true", help="print the config and tensor shapes as JSON; write nothing")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)
    if not args.arch and not args.tiny:
        ap.error("give --arch NAME or --tiny")
    if not args.dry_run and not args.output:
        ap.error("OUTPUT is required (or use --dry-run)")
    return run_main(PROG, lambda: _run(args))


def _run(args):
    """The tool's work once the command line parsed; returns the exit status."""
    if not args.dry_run:
        check_output(args.output, [args.bpe or sources.DEFAULT_BPE])
    cfg = build_config(args.arch, args.tiny, args.embed_dim, args.image_size, args.vision_width,
                       args.vision_layers, args.resnet_layers, args.patch, args.vision_heads, args.text_width,
                       args.text_layers, args.text_heads, args.context_length, args.vocab_size, args.hidden_act)
    shapes = clip_arch.expected_shapes(cfg)
    if args.dry_run:
        out = collections.OrderedDict([("config", cfg),
                                       ("parameters", sum(int(math.prod(s)) for s in shapes.values())),
                                       ("tensors", collections.OrderedDict((k, list(s)) for k, s in shapes.items()))])
        json.dump(out, sys.stdout, indent=1)
        sys.stdout.write("\n")
        sys.stdout.flush()
        return 0
    write_random(args.output, cfg, args.seed, args.dtype, args.bpe)
    if not args.quiet:
        print("%s: %s -> %s [%d tensors, %s, %s]" % (PROG, clip_arch.describe_arch(cfg), args.output, len(shapes),
                                                    args.dtype, human_bytes(os.path.getsize(args.output))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
