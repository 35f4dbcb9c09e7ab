#!/usr/bin/python3
"""Pillow's crops of JPEGs decoded exactly and with draft(), for tests/unit/test_image_jpeg.cpp.

For each JPEG and size n: Image.open(path); [im.draft(mode, (n, n))]; then OpenAI's
Resize(n, BICUBIC) + CenterCrop(n) + convert('RGB') (scripts/make_image_refs.py's reference_crop).
Writes tests/data/jpeg_draft_refs.npz: '<key>_<exact|draft>_<n>' uint8 [n, n, 3] crops and
'<key>_draft_<n>_size' the drafted image size. Needs python3-pil (Pillow 9.4 made the committed set).

    /usr/bin/python3 scripts/make_jpeg_draft_refs.py [FIXTURES_DIR]
"""
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_image_refs import reference_crop  # noqa: E402

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "images")
fixtures = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "..", "..", "shared", "fixtures")
cases = [(os.path.join(fixtures, "images", "rocket.jpg"), "rocket", (64, 32, 7))]
cases += [(os.path.join(here, f"{k}.jpg"), k, (16, 7)) for k in ("seed_444", "seed_grey", "seed_progressive")]
out = {}
for path, key, sizes in cases:
    for n in sizes:
        im = Image.open(path)
        im.draft(im.mode, (n, n))
        out[f"{key}_draft_{n}"] = reference_crop(im, n, False, False)
        out[f"{key}_draft_{n}_size"] = np.array(im.size, dtype=np.int32)
        out[f"{key}_exact_{n}"] = reference_crop(Image.open(path), n, False, False)
np.savez_compressed(os.path.join(here, "..", "jpeg_draft_refs.npz"), **out)
