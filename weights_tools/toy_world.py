"""Synthetic "toy world" for the zeroclip toy CLIP model.

Images: one coloured shape (6 shapes x 7 colours) at a random size, position and rotation on a
random low-saturation background (flat or gradient, plus noise). Captions: full colour+shape
captions in varied phrasings, colour-only and shape-only captions.

Everything is numpy and vectorised over a batch; rendering is 2x supersampled then box-filtered.
"""
import math

import numpy as np

COLOURS = ["red", "orange", "yellow", "green", "blue", "purple", "black"]
COLOUR_RGB = np.array([
    [215, 30, 35],    # red
    [250, 135, 10],   # orange
    [245, 225, 35],   # yellow
    [35, 165, 50],    # green
    [35, 70, 225],    # blue
    [135, 45, 175],   # purple
    [20, 20, 20],     # black
], dtype=np.float32)
# Extra, non-label colours: used only for images captioned by shape alone (never for held-out
# combinations, which use label colours), so every shape is also seen in colours outside the
# palette. This weakens the colour/shape entanglement that makes held-out combinations lag.
EXTRA_COLOURS = ["cyan", "pink", "white"]
EXTRA_RGB = np.array([[0, 200, 215], [255, 120, 190], [245, 245, 245]], dtype=np.float32)
ALL_RGB = np.concatenate([COLOUR_RGB, EXTRA_RGB])
# Colour index meaning "a fresh random RGB colour, at least RANDOM_MIN_DIST from every label
# colour" (training only, captioned by shape alone): every shape is seen in many hues.
RANDOM_COLOUR = len(ALL_RGB)
RANDOM_MIN_DIST = 90.0
SHAPES = ["circle", "square", "triangle", "star", "cross", "heart"]

# Latin-square style hold-out: colour c never appears with shape c mod 6 in training, so every
# colour and every shape is still seen with 5 (or 6) other partners.
HELD_OUT = sorted({(c, c % len(SHAPES)) for c in range(len(COLOURS))})


def label_names():
    """Class list, colour-major: index = c * len(SHAPES) + s."""
    return [f"{c} {s}" for c in COLOURS for s in SHAPES]


def label_index(c, s):
    return c * len(SHAPES) + s


def is_held_out(c, s):
    return (c, s) in HELD_OUT


SEEN = [(c, s) for c in range(len(COLOURS)) for s in range(len(SHAPES)) if not is_held_out(c, s)]


def _article(word):
    return "an" if word[0] in "aeiou" else "a"


# ---------------------------------------------------------------------------------------------
# captions. Each caption is (text, colour index or -1, shape index or -1).
FULL_TEMPLATES = [
    "a photo of a {c} {s}.", "a photo of a {c} {s}.", "a photo of a {c} {s}.",
    "{a} {c} {s}.", "a picture of {a} {c} {s}", "{c} {s}", "a photo of the {c} {s}.",
    "an image of {a} {c} {s}.", "a {s} that is {c}.", "a {c} {s} on a plain background.",
    "a drawing of {a} {c} {s}.", "this is {a} {c} {s}.", "a photo of {a} {c} {s}.",
    "a {c} coloured {s}.", "the {s} is {c}.",
]
COLOUR_TEMPLATES = [
    "a photo of a {c} object.", "a photo of a {c} object.", "something {c}.", "{a} {c} object.",
    "a photo of something {c}.", "{c}", "a {c} thing.", "the colour {c}.", "a {c} shape.",
]
SHAPE_TEMPLATES = [
    "a photo of a {s}.", "a photo of a {s}.", "{a} {s}.", "a {s} shape.", "{s}",
    "a picture of {a} {s}.", "the shape of a {s}.", "a photo of the {s}.",
]


def all_captions():
    """Every caption the trainer can draw: list of (text, colour, shape)."""
    caps = []
    for c, s in SEEN:
        cn, sn = COLOURS[c], SHAPES[s]
        for t in dict.fromkeys(FULL_TEMPLATES):
            caps.append((t.format(c=cn, s=sn, a=_article(cn)), c, s))
    for c, cn in enumerate(COLOURS):
        for t in dict.fromkeys(COLOUR_TEMPLATES):
            caps.append((t.format(c=cn, a=_article(cn)), c, -1))
    for s, sn in enumerate(SHAPES):
        for t in dict.fromkeys(SHAPE_TEMPLATES):
            caps.append((t.format(s=sn, a=_article(sn)), -1, s))
    return caps


# ---------------------------------------------------------------------------------------------
# rendering
def _shape_masks(kind, x, y, r):
    """x, y: [B,H,W] coordinates relative to the centre in units of the radius (rotated);
    returns bool inside mask. kind: [B] ints."""
    out = np.zeros(x.shape, dtype=bool)
    for k in np.unique(kind):
        sel = kind == k
        xs, ys = x[sel], y[sel]
        if k == 0:    # circle
            m = xs * xs + ys * ys <= 1.0
        elif k == 1:  # square
            m = np.maximum(np.abs(xs), np.abs(ys)) <= 0.82
        elif k == 2:  # equilateral triangle, apex up, centroid at origin
            xs, ys = xs / 1.12, ys / 1.12 - 0.1
            yy = -ys  # image y grows downwards
            m = (yy >= -0.5) & (math.sqrt(3) * xs + yy <= 1.0) & (-math.sqrt(3) * xs + yy <= 1.0)
        elif k == 3:  # five-pointed star (straight edges), one point up
            ang = np.arctan2(xs, -ys)  # 0 = up
            rr = np.sqrt(xs * xs + ys * ys)
            seg = 2 * math.pi / 5
            a = np.mod(ang, seg) - seg / 2  # in [-36, 36] deg, 0 at the inner vertex... shift
            a = np.abs(a)  # 0 = between two points (inner vertex), seg/2 = tip
            inner = 0.42
            # edge from inner vertex (angle 0, radius inner) to tip (angle seg/2, radius 1)
            p0 = np.array([inner, 0.0])
            p1 = np.array([math.cos(seg / 2), math.sin(seg / 2)])
            px, py = rr * np.cos(a), rr * np.sin(a)
            # inside if on the origin side of the line p0-p1
            ex, ey = p1[0] - p0[0], p1[1] - p0[1]
            cross = ex * (py - p0[1]) - ey * (px - p0[0])
            m = cross >= 0
        elif k == 4:  # plus / cross
            w = 0.32
            ax, ay = np.abs(xs), np.abs(ys)
            m = ((ax <= w) & (ay <= 0.9)) | ((ay <= w) & (ax <= 0.9))
        else:         # heart
            hx = xs * 1.15
            hy = -(ys * 1.15) + 0.15
            m = (hx * hx + hy * hy - 1) ** 3 - hx * hx * hy ** 3 <= 0
        out[sel] = m
    return out


def random_far_rgb(rng, n, min_dist=RANDOM_MIN_DIST):
    """n random RGB colours, each at least min_dist (euclidean) from every label colour."""
    out = np.zeros((n, 3), dtype=np.float32)
    todo = np.arange(n)
    while len(todo):
        cand = rng.uniform(0, 255, size=(len(todo), 3)).astype(np.float32)
        d = np.linalg.norm(cand[:, None, :] - COLOUR_RGB[None], axis=2).min(axis=1)
        ok = d >= min_dist
        out[todo[ok]] = cand[ok]
        todo = todo[~ok]
    return out


def render(rng, colours, shapes, size=64, ss=2, scale_range=(0.18, 0.42)):
    """Render a batch. colours/shapes: int arrays [B] (colour RANDOM_COLOUR = a random far-from-
    the-palette colour; draws extra random numbers only when present). Returns (uint8 [B,size,size,3],
    bbox float [B,4] = x0,y0,x1,y1 in pixels of the shape's bounding circle)."""
    B = len(colours)
    n = size * ss
    f32 = np.float32
    radius = (rng.uniform(*scale_range, size=B) * size).astype(f32)
    cx = rng.uniform(radius + 1, size - radius - 1).astype(f32)
    cy = rng.uniform(radius + 1, size - radius - 1).astype(f32)
    rot = rng.uniform(-0.35, 0.35, size=B).astype(f32)  # +-20 degrees
    coords = (np.arange(n, dtype=np.float32) + 0.5) / ss
    X = coords[None, None, :] - cx[:, None, None].astype(np.float32)
    Y = coords[None, :, None] - cy[:, None, None].astype(np.float32)
    cr, sr = np.cos(rot)[:, None, None], np.sin(rot)[:, None, None]
    inv = (1.0 / radius)[:, None, None]
    xr = (cr * X + sr * Y) * inv
    yr = (cr * Y - sr * X) * inv
    mask = _shape_masks(np.asarray(shapes), xr, yr, radius)
    mask = mask.reshape(B, size, ss, size, ss).mean(axis=(2, 4)).astype(np.float32)[..., None]

    # background: low-saturation colour(s), optional gradient, noise; never close to fg colour
    colours = np.asarray(colours)
    base = ALL_RGB[np.minimum(colours, len(ALL_RGB) - 1)].copy()
    fg = base + rng.uniform(-12, 12, size=(B, 3)).astype(np.float32)
    rand = colours == RANDOM_COLOUR
    if rand.any():
        fg[rand] = random_far_rgb(rng, int(rand.sum()))
    bg0 = _backgrounds(rng, fg)
    bg1 = _backgrounds(rng, fg)
    grad = rng.uniform(0, 1, size=B) < 0.5
    gdir = rng.uniform(0, 2 * math.pi, size=B).astype(f32)
    t = (np.cos(gdir)[:, None, None] * (coords[None, None, ::ss] / size - 0.5)
         + np.sin(gdir)[:, None, None] * (coords[None, ::ss, None] / size - 0.5)) + 0.5
    t = np.clip(t, 0, 1) * grad[:, None, None]
    bg = bg0[:, None, None, :] * (1 - t[..., None]) + bg1[:, None, None, :] * t[..., None]
    noise_amp = rng.uniform(0, 10, size=(B, 1, 1, 1)).astype(np.float32)
    bg = bg + rng.standard_normal(size=(B, size, size, 3), dtype=f32) * noise_amp
    # light shading on the shape so it is not perfectly flat
    shade = 1.0 + rng.uniform(-0.08, 0.08, size=(B, 1, 1, 1)).astype(np.float32) * (t[..., None] * 2 - 1)
    fgimg = fg[:, None, None, :] * shade
    img = bg * (1 - mask) + fgimg * mask
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    bbox = np.stack([cx - radius, cy - radius, cx + radius, cy + radius], axis=1)
    return img, bbox


def _backgrounds(rng, fg, min_dist=120.0):
    """Random desaturated background colours at least min_dist (RGB euclidean) from fg."""
    B = fg.shape[0]
    out = np.zeros((B, 3), dtype=np.float32)
    todo = np.arange(B)
    while len(todo):
        raw = rng.uniform(0, 255, size=(len(todo), 3)).astype(np.float32)
        grey = raw.mean(axis=1, keepdims=True)
        sat = rng.uniform(0.0, 0.45, size=(len(todo), 1)).astype(np.float32)
        cand = grey + (raw - grey) * sat
        ok = np.linalg.norm(cand - fg[todo], axis=1) >= min_dist
        out[todo[ok]] = cand[ok]
        todo = todo[~ok]
    return out


def sample_combos(rng, n, pairs):
    pairs = np.asarray(pairs)
    idx = rng.integers(0, len(pairs), size=n)
    return pairs[idx, 0], pairs[idx, 1]
