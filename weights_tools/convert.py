#!/usr/bin/env python3
"""Convert an OpenAI CLIP checkpoint into zeroclip's single-file safetensors format.

Usage (run with Debian's interpreter, which has numpy):
    /usr/bin/python3 weights_tools/convert.py INPUT OUTPUT.safetensors [--dtype f32|f16|bf16]

INPUT: an OpenAI TorchScript archive (ViT-B-32.pt as released), a torch.save state dict
(.pt/.bin, possibly wrapped under 'state_dict'/'model', open_clip checkpoints included), a
Hugging Face CLIP folder (config.json + model.safetensors / pytorch_model.bin), a safetensors
state dict with OpenAI names, or a zeroclip file (to change its dtype).
Nothing in the input is executed: pickles are read by a restricted unpickler (see README.md).

Exit status: 0 success, 1 conversion error (message on stderr), 2 usage error.
"""

import argparse
import os
import sys

PROG = "convert.py"

if __name__ == "__main__":  # run as a script: check numpy before importing the package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from weights_tools._common import require_numpy
    require_numpy(PROG)

import numpy as np  # noqa: E402

from weights_tools import clip_arch, safetensors_io, sources  # noqa: E402
from weights_tools._common import ToolError, check_output, human_bytes, run_main  # noqa: E402

DTYPES = {"f32": "F32", "f16": "F16", "bf16": "BF16"}


def cast_tensor(name, arr, st_dtype):
    """float array -> array to write for st_dtype (uint16 bit patterns for BF16). Refuses
    non-floating data and values that do not fit the target type."""
    arr = np.asarray(arr)
    if arr.dtype.kind != "f":
        raise ToolError("tensor '%s' has dtype %s; a floating-point tensor is required" % (name, arr.dtype))
    if st_dtype == "F32":
        out = arr.astype(np.float32)
        check = out
    elif st_dtype == "F16":
        with np.errstate(over="ignore"):
            out = arr.astype(np.float16)
        check = out
    else:
        with np.errstate(over="ignore"):
            f32 = arr.astype(np.float32)
        out = safetensors_io.f32_to_bf16_bits(f32)
        check = safetensors_io.bf16_bits_to_f32(out)
    bad = ~np.isfinite(check)
    if bad.any():
        src_bad = ~np.isfinite(arr)
        if (bad & ~src_bad).any():
            mx = float(np.max(np.abs(arr[bad & ~src_bad])))
            raise ToolError("tensor '%s': value %g does not fit %s" % (name, mx, st_dtype))
        raise ToolError("tensor '%s' contains NaN or infinite values" % name)
    return out


def input_files(input_path, bpe=None):
    """The files a conversion reads (every file of a Hugging Face folder), for check_output."""
    files = [input_path, bpe or sources.DEFAULT_BPE]
    if os.path.isdir(input_path):
        files += [os.path.join(input_path, n) for n in os.listdir(input_path)]
    return files


def convert(input_path, output_path, dtype="f16", bpe=None, hidden_act=None, image_mean=None, image_std=None,
            log=None):
    """Convert; returns the Source (with .config). Raises UsageError for an output that cannot
    be written safely (before reading anything), ToolError on any other problem."""
    st_dtype = DTYPES[dtype]
    check_output(output_path, input_files(input_path, bpe))
    src = sources.open_source(input_path, hidden_act=hidden_act, image_mean=image_mean, image_std=image_std, bpe=bpe)
    try:
        want = clip_arch.expected_shapes(src.config)
        for name in want:
            t = src.tensors[name]
            if t.dtype not in sources.FLOAT_NAMES:
                raise ToolError("%s: tensor '%s' has dtype %s; a floating-point tensor is required"
                                % (input_path, name, t.dtype))
        entries = []
        for name, shape in want.items():
            t = src.tensors[name]
            entries.append((name, st_dtype, shape,
                            (lambda t=t, name=name: cast_tensor(name, t.numpy(), st_dtype))))
        meta = sources.format_metadata(src.config, src.tokenizer)
        safetensors_io.write(output_path, entries, meta)
    finally:
        src.close()
    if log:
        for n in src.notes:
            log("note: %s" % n)
    return src


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog=PROG,
        description="Convert an OpenAI CLIP checkpoint (TorchScript .pt, torch state dict, open_clip "
                    "checkpoint, Hugging Face CLIP folder) to zeroclip's single-file safetensors format.")
    ap.add_argument("input", help="checkpoint file or Hugging Face folder")
    ap.add_argument("output", help="output .safetensors file")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="f16",
                    help="storage type of all floating tensors (default f16)")
    ap.add_argument("--bpe", metavar="PATH",
                    help="BPE merges file (default: %s; Hugging Face folders use their merges.txt)"
                    % os.path.relpath(sources.DEFAULT_BPE))
    ap.add_argument("--hidden-act", choices=("quick_gelu", "gelu"),
                    help="MLP activation to record (default: quick_gelu for OpenAI checkpoints, config.json's "
                         "for Hugging Face; LAION-trained open_clip models use gelu)")
    ap.add_argument("--image-mean", metavar="R,G,B", help="override the normalisation mean")
    ap.add_argument("--image-std", metavar="R,G,B", help="override the normalisation std")
    ap.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    args = ap.parse_args(argv)

    def log(msg):
        if not args.quiet:
            sys.stderr.write("%s: %s\n" % (PROG, msg))

    def body():
        mean = sources.parse_triplet(args.image_mean, "--image-mean") if args.image_mean else None
        std = sources.parse_triplet(args.image_std, "--image-std") if args.image_std else None
        src = convert(args.input, args.output, args.dtype, args.bpe, args.hidden_act, mean, std, log)
        if not args.quiet:
            report(src)
        return 0

    def report(src):
        cfg = src.config
        name = clip_arch.official_name(cfg)
        print("%s: %s%s from %s (%s) -> %s [%d tensors, %s, %s]" % (
            PROG, clip_arch.describe_arch(cfg), " = %s" % name if name else "", args.input, src.description,
            args.output, len(clip_arch.expected_shapes(cfg)), args.dtype,
            human_bytes(os.path.getsize(args.output))))

    return run_main(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
