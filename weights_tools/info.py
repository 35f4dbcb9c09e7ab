#!/usr/bin/env python3
"""Describe a CLIP checkpoint without converting it.

Usage:
    /usr/bin/python3 weights_tools/info.py INPUT [--json]

INPUT: anything convert.py accepts (OpenAI TorchScript .pt, torch state dict, open_clip
checkpoint, Hugging Face folder, safetensors) or a converted zeroclip .safetensors file.
Only shapes and headers are read (no tensor data), except for logit_scale.
Exit status: 0 ok, 1 unreadable / inconsistent input, 2 usage error.
"""

import argparse
import collections
import json
import math
import os
import sys

PROG = "info.py"

if __name__ == "__main__":  # run as a script: check numpy before importing the package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from weights_tools._common import require_numpy
    require_numpy(PROG)

from weights_tools import clip_arch, sources  # noqa: E402
from weights_tools._common import human_bytes, printable, run_main  # noqa: E402


def describe(path, bpe=None):
    """Dict describing the checkpoint (what --json prints)."""
    src = sources.open_source(path, bpe=bpe, want_tokenizer=False)
    try:
        cfg = src.config
        want = clip_arch.expected_shapes(cfg)
        params = 0
        buffers = 0
        for name, shape in want.items():
            n = int(math.prod(shape))
            if name.endswith((".running_mean", ".running_var")):
                buffers += n
            else:
                params += n
        stored = collections.Counter(src.tensors[n].dtype for n in want)
        try:
            logit_scale = float(src.tensors["logit_scale"].numpy().reshape(()))
        except Exception:  # informative only
            logit_scale = None
        notes = list(src.notes)
        if logit_scale is not None and not math.isfinite(logit_scale):
            notes.append("logit_scale is %s: this model cannot score anything" % logit_scale)
            logit_scale = None  # (JSON has no NaN / infinity)
        info = collections.OrderedDict()
        info["path"] = path
        info["kind"] = src.kind
        info["description"] = src.description
        info["architecture"] = "ViT" if cfg["vision"]["type"] == "vit" else "ModifiedResNet"
        info["official_model"] = clip_arch.official_name(cfg)
        info["config"] = cfg
        info["parameters"] = params
        info["bn_running_stat_elements"] = buffers
        info["tensors"] = len(want)
        info["dtypes"] = dict(sorted(stored.items()))
        info["all_dtypes_in_file"] = dict(sorted(src.source_dtypes.items()))
        info["skipped_buffers"] = len(src.skipped)
        info["logit_scale"] = logit_scale
        info["file_size"] = src.file_size
        info["files"] = src.files
        if src.kind == "zeroclip":
            info["format_version"] = src.metadata.get("zeroclip.format_version")
            info["bpe_merges"] = src.metadata.get("zeroclip.bpe_merges", "").count("\n") + 1 \
                if src.metadata.get("zeroclip.bpe_merges") else 0
            info["custom_bpe_vocab"] = "zeroclip.bpe_vocab" in src.metadata
        info["notes"] = notes
        return info
    finally:
        src.close()


def print_text(info, out=None):
    out = out or sys.stdout
    cfg = info["config"]
    v, t = cfg["vision"], cfg["text"]
    w = out.write
    w("%s\n" % printable(info["path"]))
    w("  input:          %s\n" % info["description"])
    arch = info["architecture"]
    if info["official_model"]:
        arch += " (same shapes as OpenAI %s)" % info["official_model"]
    w("  architecture:   %s\n" % arch)
    if v["type"] == "vit":
        grid = v["image_size"] // v["patch_size"]
        w("  vision:         width %d, layers %d, heads %d, patch %d, image %dx%d (grid %dx%d)\n"
          % (v["width"], v["layers"], v["heads"], v["patch_size"], v["image_size"], v["image_size"], grid, grid))
    else:
        w("  vision:         width %d, layers %s, attention-pool heads %d (dim %d), image %dx%d\n"
          % (v["width"], "/".join(map(str, v["layers"])), v["heads"], v["width"] * 32, v["image_size"],
             v["image_size"]))
    w("  text:           width %d, layers %d, heads %d, context %d, vocab %d\n"
      % (t["width"], t["layers"], t["heads"], t["context_length"], t["vocab_size"]))
    w("  embed dim:      %d\n" % cfg["embed_dim"])
    w("  activation:     %s, layer_norm_eps %g\n" % (cfg["hidden_act"], cfg["layer_norm_eps"]))
    w("  image mean/std: %s / %s\n" % (cfg["image_mean"], cfg["image_std"]))
    extra = ""
    if info["bn_running_stat_elements"]:
        extra = " (+ %s BatchNorm running-stat values)" % format(info["bn_running_stat_elements"], ",")
    w("  parameters:     %s%s in %d tensors\n" % (format(info["parameters"], ","), extra, info["tensors"]))
    w("  dtypes:         %s\n" % ", ".join("%s x%d" % kv for kv in info["dtypes"].items()))
    if info["skipped_buffers"]:
        w("  not converted:  %d buffers (num_batches_tracked / position_ids / int scalars)\n" % info["skipped_buffers"])
    if info["logit_scale"] is not None:
        ls = info["logit_scale"]
        w("  logit_scale:    %.6g (exp = %.6g)\n" % (ls, math.exp(ls) if ls < 700 else math.inf))
    if info["kind"] == "zeroclip":
        w("  format:         zeroclip v%s, %d BPE merges%s\n" % (info["format_version"], info["bpe_merges"],
                                                                ", custom vocab" if info["custom_bpe_vocab"] else ""))
    w("  file size:      %s (%s bytes)\n" % (human_bytes(info["file_size"]), format(info["file_size"], ",")))
    for n in info["notes"]:
        w("  note:           %s\n" % n)


def main(argv=None):
    ap = argparse.ArgumentParser(prog=PROG, description="Print the architecture, sizes, parameter count, dtypes "
                                                        "and file size of a CLIP checkpoint without converting it.")
    ap.add_argument("input", help="checkpoint file, Hugging Face folder or zeroclip .safetensors")
    ap.add_argument("--json", action="store_true", help="machine-readable JSON output")
    args = ap.parse_args(argv)

    def body():
        info = describe(args.input)
        if args.json:  # ensure_ascii: any file name (undecodable bytes as \udcXX escapes) stays valid JSON
            json.dump(info, sys.stdout, indent=1)
            sys.stdout.write("\n")
        else:
            if hasattr(sys.stdout, "reconfigure"):  # a file name with undecodable bytes prints as \xNN
                sys.stdout.reconfigure(errors="backslashreplace")
            print_text(info)
        sys.stdout.flush()
        return 0

    return run_main(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
