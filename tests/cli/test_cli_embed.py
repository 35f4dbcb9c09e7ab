"""The `zeroclip` binary end to end: info and embed against the float64 reference fixtures."""
import json
import os
import tempfile
import unittest

import numpy as np

from cli_util import FIXTURES, needs_cli, run

TINY_VIT = os.path.join(FIXTURES, "models/tiny-vit")


@needs_cli
class EmbedTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.ref = np.load(os.path.join(TINY_VIT, "reference.npz"))
        pixels = np.load(os.path.join(FIXTURES, "images/pixel_values_64.npz"))["pixel_values"]
        self.pixels = os.path.join(self.tmp.name, "pixels.npy")
        self.tokens = os.path.join(self.tmp.name, "tokens.npy")
        np.save(self.pixels, pixels.astype(np.float32))
        np.save(self.tokens, self.ref["text_tokens"].astype(np.int64))

    def tearDown(self):
        self.tmp.cleanup()

    def test_embed_npy_matches_reference(self):
        out_img = os.path.join(self.tmp.name, "img.npy")
        out_txt = os.path.join(self.tmp.name, "txt.npy")
        run("embed", "--model", os.path.join(TINY_VIT, "hf"), "--pixels", self.pixels, "--tokens", self.tokens,
            "--out", out_img, "--text-out", out_txt)
        for path, key in ((out_img, "image_embeds_f64"), (out_txt, "text_embeds_f64")):
            got, want = np.load(path), self.ref[key]
            self.assertEqual(got.dtype, np.float32)
            self.assertEqual(got.shape, want.shape)
            self.assertLessEqual(np.abs(got - want).max(), 2e-5 * max(1.0, np.abs(want).max()))

    def test_embed_json_has_logits(self):
        proc = run("embed", "--model", os.path.join(TINY_VIT, "hf"), "--pixels", self.pixels,
                   "--tokens", self.tokens)
        j = json.loads(proc.stdout)
        logits = np.array(j["logits_per_image"])
        self.assertLessEqual(np.abs(logits - self.ref["logits_per_image_f64"]).max(), 1e-4)
        # Raw embeddings (as encode_image / encode_text) against the reference: the README's limit.
        for key in ("image_embeds", "text_embeds"):
            got, want = np.array(j[key]), self.ref[key + "_f64"]
            self.assertEqual(got.shape, want.shape, key)
            self.assertLessEqual(np.abs(got - want).max(), 2e-5 * max(1.0, np.abs(want).max()), key)

    def test_embed_json_normalize(self):
        proc = run("embed", "--model", os.path.join(TINY_VIT, "hf"), "--pixels", self.pixels,
                   "--tokens", self.tokens, "--normalize")
        j = json.loads(proc.stdout)
        for key in ("image_embeds", "text_embeds"):
            got, want = np.array(j[key]), self.ref[key + "_norm_f64"]
            self.assertEqual(got.shape, want.shape, key)
            self.assertLessEqual(np.abs(got - want).max(), 5e-6, key)

    def test_info(self):
        j = json.loads(run("info", "--model", os.path.join(TINY_VIT, "hf"), "--json").stdout)
        self.assertEqual(j["architecture"], "ViT")
        self.assertEqual(j["vision"]["heads"], 2)
        self.assertEqual(j["dtype"], "F16")
        self.assertIn("patch 16", run("info", "--model", os.path.join(TINY_VIT, "hf")).stdout)

    def test_usage_errors_exit_2(self):
        self.assertEqual(run("embed", "--model", "x", check=False).returncode, 2)
        self.assertEqual(run("embed", "--bogus", check=False).returncode, 2)
        self.assertEqual(run("no-such-command", check=False).returncode, 2)
        self.assertEqual(run(check=False).returncode, 2)

    def test_bad_model_exits_1_naming_the_file(self):
        proc = run("info", "--model", os.path.join(self.tmp.name, "missing.safetensors"), check=False)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("missing.safetensors", proc.stderr)

    def test_wrong_pixel_shape_is_an_error(self):
        bad = os.path.join(self.tmp.name, "bad.npy")
        np.save(bad, np.zeros((1, 3, 32, 32), np.float32))
        proc = run("embed", "--model", os.path.join(TINY_VIT, "hf"), "--pixels", bad, check=False)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("expected [N,3,64,64]", proc.stderr)


if __name__ == "__main__":
    unittest.main()
