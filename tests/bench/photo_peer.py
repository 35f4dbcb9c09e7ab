#!/usr/bin/env python3
"""The Python side of the photo-folder benchmark (scripts/bench_photos.sh): what a user of the
official `clip` package writes instead of `zeroclip classify`, and Pillow's decoding alone.

    /usr/bin/python3 tests/bench/photo_peer.py classify --model M.safetensors --labels-file L DIR
        [--batch 16] [--threads 2]
        zero-shot top-5 of every JPEG in DIR (sorted) as CSV on stdout, the columns of
        `zeroclip classify --format csv`: clip's preprocessing (Pillow) + PyTorch fp32
    /usr/bin/python3 tests/bench/photo_peer.py decode DIR [--size 224]
        one pass over the JPEGs of DIR: Pillow decoding exact (Image.open + load) and draft
        (draft("RGB", (size, size)) + load), and clip's resize + crop of each; one JSON line in the
        layout of `bench_image --photos` (ms per megapixel, [wall, CPU])

The preprocessing is clip's `_transform` (clip/clip.py): Resize(n_px, BICUBIC), CenterCrop(n_px),
convert("RGB"), ToTensor, Normalize. torchvision is not installed here (Debian's
python3-torchvision pulls in ffmpeg's libraries), so its Pillow steps are written out below as
torchvision 0.14 does them: the long side int(n * long / short), Pillow's resize, the crop offset
int(round((size - n) / 2)); ToTensor and Normalize in float32. The model is tests/bench/torch_clip.py
(the official architecture), the tokenizer scripts/reference_tokenizer.py (a port of clip.tokenize).
"""

import argparse
import json
import os
import sys
import time

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
MEAN = (0.48145466, 0.4578275, 0.40821073)  # clip/clip.py _transform
STD = (0.26862954, 0.26130258, 0.27577711)


def jpegs(folder):
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith((".jpg", ".jpeg")))


def crop(img, n):
    """torchvision Resize(n, BICUBIC) + CenterCrop(n) on a PIL image, then convert("RGB")."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(n * long / short)
    img = img.resize((n, new_long) if w <= h else (new_long, n), Image.BICUBIC)
    w, h = img.size
    top, left = int(round((h - n) / 2.0)), int(round((w - n) / 2.0))
    return img.crop((left, top, left + n, top + n)).convert("RGB")


def classify(args):
    import numpy as np
    import torch
    sys.path.insert(0, HERE)
    sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))
    import torch_clip
    from reference_tokenizer import DEFAULT_BPE, Reference

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    model, cfg = torch_clip.load(args.model)
    n = cfg["vision"]["image_size"]
    labels = [l.strip() for l in open(args.labels_file, encoding="utf-8") if l.strip() and not l.startswith("#")]
    tok = Reference(DEFAULT_BPE)
    tokens = torch.tensor([tok.tokenize("A photo of a %s." % l) for l in labels])
    mean = np.array(MEAN, np.float32)[:, None, None]
    std = np.array(STD, np.float32)[:, None, None]

    def preprocess(path):  # ToTensor + Normalize, in float32 as torchvision
        x = np.asarray(crop(Image.open(path), n), np.uint8).transpose(2, 0, 1).astype(np.float32) / np.float32(255)
        return torch.from_numpy((x - mean) / std)

    files = jpegs(args.folder)
    out = ["path,rank,label,prob,cosine,error"]
    with torch.inference_mode():
        text = model.encode_text(tokens)
        text = text / text.norm(dim=-1, keepdim=True)
        scale = model.logit_scale.exp()
        for b in range(0, len(files), args.batch):
            batch = files[b:b + args.batch]
            image = model.encode_image(torch.stack([preprocess(p) for p in batch]))
            image = image / image.norm(dim=-1, keepdim=True)
            cos = image @ text.t()
            probs = (scale * cos).softmax(dim=-1)
            top = probs.topk(min(5, len(labels)), dim=-1)
            for i, path in enumerate(batch):
                for r, (p, j) in enumerate(zip(top.values[i].tolist(), top.indices[i].tolist())):
                    out.append("%s,%d,%s,%g,%g," % (path, r + 1, labels[j], p, cos[i, j].item()))
    print("\n".join(out))


def decode(args):
    totals = dict.fromkeys(("decode_exact", "resize_exact", "decode_draft", "resize_draft"))
    totals = {k: [0.0, 0.0] for k in totals}
    mp = 0.0
    files = jpegs(args.folder)

    def timed(key, f):
        t, c = time.perf_counter(), time.process_time()
        r = f()
        totals[key][0] += 1000 * (time.perf_counter() - t)
        totals[key][1] += 1000 * (time.process_time() - c)
        return r

    def load(path, draft):
        im = Image.open(path)
        if draft:
            im.draft("RGB", (args.size, args.size))
        im.load()
        return im

    for path in files:
        a = timed("decode_exact", lambda: load(path, False))
        timed("resize_exact", lambda: crop(a, args.size))
        b = timed("decode_draft", lambda: load(path, True))
        timed("resize_draft", lambda: crop(b, args.size))
        mp += a.size[0] * a.size[1] / 1e6
    for kind in ("exact", "draft"):
        totals["total_" + kind] = [x + y for x, y in zip(totals["decode_" + kind], totals["resize_" + kind])]
    out = {"photos": len(files), "mean_mp": mp / len(files), "jpeg": "Pillow " + Image.__version__}
    out.update({k: [v[0] / mp, v[1] / mp] for k, v in totals.items()})
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("classify")
    c.add_argument("folder")
    c.add_argument("--model", required=True)
    c.add_argument("--labels-file", required=True)
    c.add_argument("--batch", type=int, default=16)
    c.add_argument("--threads", type=int, default=2)
    d = sub.add_parser("decode")
    d.add_argument("folder")
    d.add_argument("--size", type=int, default=224)
    args = p.parse_args()
    classify(args) if args.cmd == "classify" else decode(args)


if __name__ == "__main__":
    main()
