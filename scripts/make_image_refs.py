#!/usr/bin/python3
"""Reference crops for zeroclip's image preprocessing, made with Pillow.

Writes small test images in every mode and format zeroclip decodes (PNG 1/2/4/8/16-bit grey,
grey+alpha, palette with and without transparency, RGB, RGBA, 16-bit RGB/LA; BMP 1/4/8/16/24/32
bit; GIF with transparency and a frame smaller than the canvas; TGA raw/RLE/right-to-left; PNM
with odd maxvals; JPEG for the decoder check only) and, for each, the uint8 crop that OpenAI's
preprocessing gives (Resize(n, BICUBIC) -> CenterCrop(n) -> convert('RGB')) and the Hugging Face
order (convert first), with round-half-even or floor crop offsets.

Output (in --out): the images, `cases.txt` (one case per line: file size order crop name) and
`refs.npz` (uint8 [n, n, 3] crops keyed by name), read by tests/unit/test_image.cpp.

    /usr/bin/python3 scripts/make_image_refs.py                       # the committed set
    /usr/bin/python3 scripts/make_image_refs.py --out /tmp/refs --count 400 --max-side 900 \
        --check-cli build-img/zeroclip                                # a large random check

Needs Debian's python3-pil and python3-numpy (apt-get install python3-pil). Deterministic for a
given seed and Pillow version; the committed set was made with Pillow 9.4.0, which reproduces
the shared fixtures' crops exactly.
"""
import argparse
import io
import os
import random
import struct
import subprocess
import sys
import zlib

import numpy as np
from PIL import Image


# ---------------------------------------------------------------- reference pipelines
def resized_size(w, h, n):
    short, long_ = (w, h) if w <= h else (h, w)
    new_long = int(n * long_ / short)
    return (n, new_long) if w <= h else (new_long, n)


def crop_offset(excess, floor):
    return excess // 2 if floor else int(round(excess / 2.0))


def reference_crop(im, n, hf_order, floor):
    """torchvision Resize(n) + CenterCrop(n) + convert('RGB') on a PIL image (or HF order)."""
    if hf_order:
        im = im.convert("RGB")
    nw, nh = resized_size(im.size[0], im.size[1], n)
    im = im.resize((nw, nh), Image.BICUBIC)
    left, top = crop_offset(nw - n, floor), crop_offset(nh - n, floor)
    im = im.crop((left, top, left + n, top + n))
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


# ---------------------------------------------------------------- content
def content(rng, w, h, channels, hi=255):
    """Smooth gradients, noise and hard-edged saturated blocks (exercises clipping and ringing)."""
    y, x = np.mgrid[0:h, 0:w]
    out = np.zeros((h, w, channels), dtype=np.float64)
    for c in range(channels):
        fx, fy, ph = rng.uniform(0.01, 0.4), rng.uniform(0.01, 0.4), rng.uniform(0, 6.3)
        out[..., c] = 0.5 + 0.5 * np.sin(fx * x + fy * y + ph)
    out += rng.normal(0, 0.15, out.shape)
    for _ in range(rng.integers(1, 5)):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        out[y0:y0 + rng.integers(1, max(2, h // 2)), x0:x0 + rng.integers(1, max(2, w // 2))] = rng.integers(0, 2)
    return (np.clip(out, 0, 1) * hi).round().astype(np.uint16 if hi > 255 else np.uint8)


def alpha_plane(rng, w, h):
    a = content(rng, w, h, 1)[..., 0]
    a[rng.random((h, w)) < 0.2] = 0
    a[rng.random((h, w)) < 0.2] = 255
    return a


# ---------------------------------------------------------------- hand-written encoders
def png_bytes(w, h, depth, colour, rows, plte=None, trns=None):
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + r for r in rows)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0))
    if plte is not None:
        out += chunk(b"PLTE", plte)
    if trns is not None:
        out += chunk(b"tRNS", trns)
    return out + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def pack_bits(values, depth):
    """Pack one row of small integers MSB first."""
    per = 8 // depth
    out = bytearray()
    for i in range(0, len(values), per):
        b = 0
        for j in range(per):
            v = int(values[i + j]) if i + j < len(values) else 0
            b |= v << (8 - depth * (j + 1))
        out.append(b)
    return bytes(out)


def bmp_bytes(w, h, bits, rows_bytes, palette=None, compression=0, masks=None, header=40):
    """rows_bytes: bottom-up rows, unpadded."""
    stride = (w * bits + 31) // 32 * 4
    data = b"".join(r + b"\x00" * (stride - len(r)) for r in rows_bytes)
    pal = b"" if palette is None else palette
    extra = b""
    if header == 40 and masks is not None:
        extra = struct.pack("<III", *masks[:3])
    info = struct.pack("<IiiHHIIiiII", header, w, h, 1, bits, compression, len(data), 2835, 2835,
                       0 if palette is None else len(palette) // 4, 0)
    if header > 40:
        m = masks if masks is not None else (0, 0, 0, 0)
        info += struct.pack("<IIII", *m) + b"\x00" * (header - 56)
    offset = 14 + len(info) + len(extra) + len(pal)
    return b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset) + info + extra + pal + data


def pnm_bytes(magic, w, h, maxval, samples):
    head = f"{magic}\n# made by make_image_refs.py\n{w} {h}\n{maxval}\n".encode()
    if maxval > 255:
        return head + samples.astype(">u2").tobytes()
    return head + samples.astype(np.uint8).tobytes()


# ---------------------------------------------------------------- the image zoo
def make_images(rng, max_side):
    """Yields (filename, bytes) forever, cycling through 30 kinds of image."""
    def size():
        kind = rng.integers(0, 6)
        if kind == 0:  # extreme aspect ratio
            a, b = int(rng.integers(1, 4)), int(rng.integers(min(20, max_side), max_side + 1))
            return (a, b) if rng.random() < 0.5 else (b, a)
        return int(rng.integers(1, max_side + 1)), int(rng.integers(1, max_side + 1))

    def pil_save(im, fmt, **kw):
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        return buf.getvalue()

    def palette_image(w, h, colours):
        idx = (content(rng, w, h, 1)[..., 0].astype(np.int64) * colours // 256).astype(np.uint8)
        im = Image.fromarray(idx, "L").convert("P")
        pal = rng.integers(0, 256, 3 * 256).astype(np.uint8).tobytes()
        im.putpalette(pal)
        return im, idx, pal

    n = 0
    while True:
        n += 1
        w, h = size()
        kind = n % 30
        if kind == 0:
            yield "rgb.png", pil_save(Image.fromarray(content(rng, w, h, 3), "RGB"), "PNG")
        elif kind == 1:
            px = content(rng, w, h, 3)
            yield "rgba.png", pil_save(Image.fromarray(np.dstack([px, alpha_plane(rng, w, h)]), "RGBA"), "PNG")
        elif kind == 2:
            yield "l.png", pil_save(Image.fromarray(content(rng, w, h, 1)[..., 0], "L"), "PNG")
        elif kind == 3:
            px = content(rng, w, h, 1)[..., 0]
            yield "la.png", pil_save(Image.fromarray(np.dstack([px, alpha_plane(rng, w, h)]), "LA"), "PNG")
        elif kind == 4:
            im, _, _ = palette_image(w, h, int(rng.integers(2, 257)))
            yield "p.png", pil_save(im, "PNG")
        elif kind == 5:
            im, _, _ = palette_image(w, h, 16)
            yield "p_trns.png", pil_save(im, "PNG", transparency=bytes(rng.integers(0, 256, 16).astype(np.uint8)))
        elif kind == 6:
            yield "bilevel.png", pil_save(Image.fromarray(content(rng, w, h, 1)[..., 0]).convert("1"), "PNG")
        elif kind == 7:  # 16-bit grey: mostly in 0..300 so the int32 resampling lands on both clips
            v = content(rng, w, h, 1, hi=300)[..., 0].astype(np.uint16)
            v[rng.random((h, w)) < 0.05] = 65535
            yield "gray16.png", png_bytes(w, h, 16, 0, [r.astype(">u2").tobytes() for r in v])
        elif kind == 8:
            depth = int(rng.choice([2, 4]))
            v = content(rng, w, h, 1)[..., 0] >> (8 - depth)
            yield f"gray{depth}.png", png_bytes(w, h, depth, 0, [pack_bits(r, depth) for r in v])
        elif kind == 9:
            v = content(rng, w, h, 4, hi=65535)
            v[..., 1] = v[..., 0]
            yield "la16.png", png_bytes(w, h, 16, 4, [r[:, [0, 3]].astype(">u2").tobytes() for r in v])
        elif kind == 10:
            v = content(rng, w, h, 3, hi=65535)
            yield "rgb16.png", png_bytes(w, h, 16, 2, [r.astype(">u2").tobytes() for r in v])
        elif kind == 11:
            px = content(rng, w, h, 3)
            t = px[0, 0]
            yield "rgb_trns.png", png_bytes(w, h, 8, 2, [r.tobytes() for r in px], trns=struct.pack(">HHH", *map(int, t)))
        elif kind == 12:
            px = content(rng, w, h, 1)[..., 0]
            yield "l_trns.png", png_bytes(w, h, 8, 0, [r.tobytes() for r in px], trns=struct.pack(">H", int(px[0, 0])))
        elif kind == 13:
            im, _, _ = palette_image(w, h, int(rng.integers(2, 200)))
            yield "p.gif", pil_save(im, "GIF", **({"transparency": 1} if rng.random() < 0.5 else {}))
        elif kind == 14:
            yield "l.gif", pil_save(Image.fromarray(content(rng, w, h, 1)[..., 0], "L"), "GIF")
        elif kind == 15:  # GIF whose first frame covers only part of the canvas
            fw, fh = max(1, w // 2), max(1, h // 2)
            im, _, _ = palette_image(fw, fh, 32)
            kw = {"transparency": 3} if rng.random() < 0.5 else {}
            g = bytearray(pil_save(im, "GIF", **kw))
            struct.pack_into("<HH", g, 6, w, h)
            at = g.index(b"\x2c", 13 + (3 << ((g[10] & 7) + 1)) if g[10] & 0x80 else 13)
            struct.pack_into("<HH", g, at + 1, (w - fw) // 2, (h - fh) // 3)
            yield "partial.gif", bytes(g)
        elif kind == 16:
            yield "rgb.bmp", pil_save(Image.fromarray(content(rng, w, h, 3), "RGB"), "BMP")
        elif kind == 17:  # PIL writes RGBA as 32-bit BI_RGB: Pillow reopens it as RGB
            px = content(rng, w, h, 3)
            yield "rgbx.bmp", pil_save(Image.fromarray(np.dstack([px, alpha_plane(rng, w, h)]), "RGBA"), "BMP")
        elif kind == 18:
            yield "l.bmp", pil_save(Image.fromarray(content(rng, w, h, 1)[..., 0], "L"), "BMP")
        elif kind == 19:
            im, _, _ = palette_image(w, h, 256)
            yield "p.bmp", pil_save(im, "BMP")
        elif kind == 20:
            yield "bilevel.bmp", pil_save(Image.fromarray(content(rng, w, h, 1)[..., 0]).convert("1"), "BMP")
        elif kind == 21:  # 16-bit BMP, 555 (BI_RGB) or 565 (BITFIELDS)
            v = content(rng, w, h, 3)
            if rng.random() < 0.5:
                p = ((v[..., 0] >> 3).astype(np.uint16) << 10) | ((v[..., 1] >> 3).astype(np.uint16) << 5) | (v[..., 2] >> 3)
                yield "rgb555.bmp", bmp_bytes(w, h, 16, [r.astype("<u2").tobytes() for r in p[::-1]])
            else:
                p = ((v[..., 0] >> 3).astype(np.uint16) << 11) | ((v[..., 1] >> 2).astype(np.uint16) << 5) | (v[..., 2] >> 3)
                yield "rgb565.bmp", bmp_bytes(w, h, 16, [r.astype("<u2").tobytes() for r in p[::-1]],
                                              compression=3, masks=(0xF800, 0x7E0, 0x1F))
        elif kind == 22:  # 32-bit BITFIELDS with alpha (V4 header): Pillow opens RGBA
            v = np.dstack([content(rng, w, h, 3), alpha_plane(rng, w, h)])
            bgra = v[..., [2, 1, 0, 3]]
            yield "bgra.bmp", bmp_bytes(w, h, 32, [r.tobytes() for r in bgra[::-1]], compression=3,
                                        masks=(0xFF0000, 0xFF00, 0xFF, 0xFF000000), header=108)
        elif kind == 23:  # 4-bit palette BMP
            idx = content(rng, w, h, 1)[..., 0] >> 4
            pal = bytes(rng.integers(0, 256, 64).astype(np.uint8))
            yield "p4.bmp", bmp_bytes(w, h, 4, [pack_bits(r, 4) for r in idx[::-1]], palette=pal)
        elif kind == 24:
            mode = ["RGB", "RGBA", "L", "LA", "P"][int(rng.integers(0, 5))]
            if mode == "P":
                im, _, _ = palette_image(w, h, 100)
            else:
                ch = len(mode)
                px = content(rng, w, h, ch)
                if mode in ("RGBA", "LA"):
                    px[..., -1] = alpha_plane(rng, w, h)
                im = Image.fromarray(px[..., 0] if ch == 1 else px, mode)
            rle = bool(rng.random() < 0.5)
            yield f"{mode.lower()}{'_rle' if rle else ''}.tga", pil_save(im, "TGA", rle=rle)
        elif kind == 25:  # TGA stored right to left (descriptor bit 4)
            t = bytearray(pil_save(Image.fromarray(content(rng, w, h, 3), "RGB"), "TGA"))
            t[17] |= 0x10
            yield "rgb_rtl.tga", bytes(t)
        elif kind == 26 or kind == 27:
            magic, ch = ("P6", 3) if kind == 26 else ("P5", 1)
            maxval = int(rng.choice([255, 100, 15, 1000, 4095, 65535]))
            if maxval > 255:
                v = content(rng, w, h, ch, hi=maxval).astype(np.int64)
            else:
                v = content(rng, w, h, ch).astype(np.int64) * maxval // 255
            if maxval not in (255, 65535):  # samples above maxval: Pillow clips after rescaling
                v[rng.random(v.shape) < 0.03] = min(maxval + 7, 255 if maxval < 255 else 65535)
            yield f"max{maxval}.{'ppm' if ch == 3 else 'pgm'}", pnm_bytes(magic, w, h, maxval, v)
        elif kind == 28:
            mode = "P" if rng.random() < 0.5 else "I"
            if mode == "P":
                im, _, _ = palette_image(w, h, 7)
                yield "p_bits.png", pil_save(im, "PNG", bits=4)
            else:
                v = content(rng, w, h, 1, hi=1000)[..., 0].astype(np.int32)
                yield "i_pil.png", pil_save(Image.fromarray(v, "I"), "PNG")
        else:
            yield "rgb_big.png", pil_save(Image.fromarray(content(rng, w, h, 3), "RGB"), "PNG")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data", "images"))
    ap.add_argument("--count", type=int, default=60, help="number of images")
    ap.add_argument("--max-side", type=int, default=40, help="largest image side")
    ap.add_argument("--max-n", type=int, default=32, help="largest crop size")
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--check-cli", help="run this zeroclip binary on every case and report differences")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.out, exist_ok=True)
    cases, refs = [], {}
    gen = make_images(rng, args.max_side)
    for i in range(args.count):
        name, data = next(gen)
        fname = f"{i:03d}_{name}"
        with open(os.path.join(args.out, fname), "wb") as f:
            f.write(data)
        try:
            im = Image.open(io.BytesIO(data))
            im.load()
        except Exception as e:  # a crafted file Pillow cannot read is no reference
            print(f"skip {fname}: Pillow cannot read it ({e})", file=sys.stderr)
            os.remove(os.path.join(args.out, fname))
            continue
        for hf, floor in [(False, False), (True, True), (False, True)]:
            n = int(rng.integers(1, args.max_n + 1))
            key = f"c{len(cases):04d}"
            refs[key] = reference_crop(im, n, hf, floor)
            cases.append((fname, n, "hf" if hf else "openai", "floor" if floor else "round", key, im.mode))
    # JPEG seeds for the fuzz test only (stb's and libjpeg's decoders differ by a few levels, so
    # JPEG crops are checked against the shared fixtures with a tolerance instead).
    for name, mode, kw in [("seed_progressive.jpg", "RGB", {"progressive": True, "quality": 80}),
                           ("seed_grey.jpg", "L", {"quality": 90}),
                           ("seed_444.jpg", "RGB", {"quality": 95, "subsampling": 0})]:
        px = content(rng, 37, 23, 3)
        im = Image.fromarray(px if mode == "RGB" else px[..., 0], mode)
        im.save(os.path.join(args.out, name), "JPEG", **kw)
    with open(os.path.join(args.out, "cases.txt"), "w") as f:
        f.write("# file size order crop ref pil_mode  (made by scripts/make_image_refs.py)\n")
        for c in cases:
            f.write(" ".join(map(str, c)) + "\n")
    np.savez_compressed(os.path.join(args.out, "refs.npz"), **refs)
    print(f"{len(cases)} cases from {args.count} images in {args.out}")

    if args.check_cli:
        bad = 0
        for fname, n, order, crop, key, mode in cases:
            cmd = [args.check_cli, "preprocess", os.path.join(args.out, fname), "--size", str(n),
                   "--npy", "/tmp/_zc_check.npy", "--quiet"]
            if order == "hf":
                cmd.append("--hf-order")
            if crop == "floor":
                cmd.append("--floor-crop")
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode:
                bad += 1
                print(f"FAIL {fname} n={n} {order}: {r.stderr.strip()}")
                continue
            got = np.load("/tmp/_zc_check.npy")
            d = np.abs(got.astype(int) - refs[key].astype(int))
            if d.max() > 0:
                bad += 1
                print(f"DIFF {fname} ({mode}) n={n} {order} {crop}: {int((d > 0).sum())} samples, max {d.max()}")
        print(f"{len(cases) - bad}/{len(cases)} cases exact")


if __name__ == "__main__":
    main()
