"""`zeroclip classify`, `score`, `search` and `embed` on files: the built binary against the
official float64 references (tiny-vit, tiny-rn) and its error handling."""
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np

from cli_util import FIXTURES, IMAGES, SOURCE, needs_cli, run


def reference(model):
    with open(os.path.join(FIXTURES, "models", model, "reference.json")) as f:
        prompts = [p["text"] for p in json.load(f)["prompts"]]
    return prompts, np.load(os.path.join(FIXTURES, "models", model, "reference.npz"))


def image_names():
    return [str(n) for n in np.load(os.path.join(IMAGES, "pixel_values_64.npz"))["names"]]


@needs_cli
class ClassifyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="zeroclip_cli_")
        cls.folder = os.path.join(cls.tmp, "images")
        os.mkdir(cls.folder)
        for name in image_names():
            shutil.copy(os.path.join(IMAGES, name), cls.folder)
        # tiny-rn exists only as an OpenAI state dict: convert it with weights_tools.
        cls.tiny_rn = os.path.join(cls.tmp, "tiny-rn.safetensors")
        subprocess.run([sys.executable, os.path.join(SOURCE, "weights_tools/convert.py"), "-q",
                        os.path.join(FIXTURES, "models/tiny-rn/openai_state_dict.pt"), cls.tiny_rn], check=True)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def labels_file(self, prompts):
        path = os.path.join(self.tmp, "labels.txt")
        with open(path, "w") as f:
            f.write("\n".join(prompts) + "\n")
        return path

    def check_against_reference(self, model_name, model_path):
        prompts, ref = reference(model_name)
        proc = run("classify", "--model", model_path, "--labels-file", self.labels_file(prompts), "--template", "{}",
                   "--top-k", str(len(prompts)), "--format", "jsonl", "--batch", "3", self.folder)
        rows = [json.loads(line) for line in proc.stdout.splitlines()]
        names = image_names()
        self.assertEqual([os.path.basename(r["path"]) for r in rows], sorted(names))
        scale = float(ref["logit_scale_exp_f64"])
        for row in rows:
            i = names.index(os.path.basename(row["path"]))
            probs = {t["label"]: t["prob"] for t in row["top"]}
            cosines = {t["label"]: t["cosine"] for t in row["top"]}
            want = ref["probs_f64"][i]
            self.assertEqual(row["top"][0]["label"], prompts[int(np.argmax(want))], row["path"])
            # PNGs decode exactly as Pillow; stb's JPEG decoder differs from libjpeg by a few levels.
            jpeg = row["path"].endswith(".jpg")
            for j, p in enumerate(prompts):
                self.assertAlmostEqual(probs[p], want[j], delta=2e-3 if jpeg else 1e-5, msg=row["path"])
                self.assertAlmostEqual(cosines[p] * scale, ref["logits_per_image_f64"][i][j],
                                       delta=5e-2 if jpeg else 1e-4, msg=row["path"])

    def test_tiny_vit_matches_reference(self):
        self.check_against_reference("tiny-vit", os.path.join(FIXTURES, "models/tiny-vit/hf"))

    def test_tiny_rn_matches_reference(self):
        self.check_against_reference("tiny-rn", self.tiny_rn)

    def test_csv_and_json_formats(self):
        prompts, ref = reference("tiny-vit")
        common = ["classify", "--model", os.path.join(FIXTURES, "models/tiny-vit/hf"), "--labels-file",
                  self.labels_file(prompts), "--template", "{}", "--top-k", "2"]
        rows = list(csv.DictReader(io.StringIO(run(*common, "--format", "csv", self.folder).stdout)))
        self.assertEqual(len(rows), 2 * len(image_names()))
        self.assertEqual(set(rows[0]), {"path", "rank", "label", "prob", "cosine", "error"})
        as_json = json.loads(run(*common, "--format", "json", self.folder).stdout)
        self.assertEqual(len(as_json), len(image_names()))
        first_csv = {r["path"]: r["label"] for r in rows if r["rank"] == "1"}
        for item in as_json:
            self.assertEqual(first_csv[item["path"]], item["top"][0]["label"])
        table = run(*common, self.folder).stdout
        self.assertIn("chelsea.png", table)

    def test_corrupt_image_and_text_file(self):
        folder = os.path.join(self.tmp, "mixed")
        os.makedirs(os.path.join(folder, "sub"), exist_ok=True)
        shutil.copy(os.path.join(IMAGES, "chelsea.png"), folder)
        shutil.copy(os.path.join(IMAGES, "camera.png"), os.path.join(folder, "sub"))
        with open(os.path.join(folder, "broken.jpg"), "wb") as f:
            f.write(b"\xff\xd8\xff\xe0 definitely not a jpeg")
        with open(os.path.join(folder, "notes.txt"), "w") as f:
            f.write("not an image\n")
        model = os.path.join(FIXTURES, "models/tiny-vit/hf")
        proc = run("classify", "--model", model, "--labels", "cat,dog", "--format", "jsonl", folder, check=False)
        self.assertEqual(proc.returncode, 1)
        rows = [json.loads(line) for line in proc.stdout.splitlines()]
        self.assertEqual([os.path.basename(r["path"]) for r in rows], ["broken.jpg", "chelsea.png"])
        self.assertIn("error", rows[0])
        self.assertIn("broken.jpg", rows[0]["error"])
        self.assertEqual(len(rows[1]["top"]), 2)
        self.assertIn("broken.jpg", proc.stderr)
        recursive = run("classify", "--model", model, "--labels", "cat,dog", "--format", "jsonl", "--recursive",
                        folder, check=False)
        self.assertEqual(len(recursive.stdout.splitlines()), 3)

    def test_usage_errors_exit_2(self):
        model = os.path.join(FIXTURES, "models/tiny-vit/hf")
        for args in (["--labels", "cat"],                                    # no model
                     ["--model", model, self.folder],                        # no labels
                     ["--model", model, "--labels", "cat", "--labels-file", "x", self.folder],
                     ["--model", model, "--labels", "cat,,dog", self.folder],
                     ["--model", model, "--labels", "cat", "--top-k", "0", self.folder],
                     ["--model", model, "--labels", "cat", "--format", "xml", self.folder],
                     ["--model", model, "--labels", "cat", "--template", "no slot", self.folder],
                     ["--model", model, "--labels", "cat", "--device", "tpu", self.folder],
                     ["--model", model, "--labels", "cat", "--bogus", self.folder],
                     ["--model", model, "--labels", "cat"],                   # no images
                     ["--model", model, "--labels", "cat", "/no/such/folder"]):
            proc = run("classify", *args, check=False)
            self.assertEqual(proc.returncode, 2, f"{args}: {proc.stderr}")
            self.assertIn("usage: zeroclip classify", proc.stderr)
        self.assertIn("examples:", run("classify", "--help").stdout)

    def test_embed_then_search(self):
        out = os.path.join(self.tmp, "index.npy")
        model = os.path.join(FIXTURES, "models/tiny-vit/hf")
        run("embed", "--model", model, self.folder, "--out", out)
        index = np.load(out)
        names = open(os.path.join(self.tmp, "index.names.txt")).read().splitlines()
        self.assertEqual(index.shape, (len(image_names()), 32))
        self.assertTrue(np.allclose(np.linalg.norm(index, axis=1), 1, atol=1e-5))
        # Rows equal the reference embeddings, normalised (PNG rows exactly, to float precision).
        _, ref = reference("tiny-vit")
        for row, name in zip(index, names):
            i = image_names().index(os.path.basename(name))
            want = ref["image_embeds_norm_f64"][i]
            self.assertLess(np.abs(row - want).max(), 5e-2 if name.endswith(".jpg") else 5e-6, name)
        text_out = os.path.join(self.tmp, "q.npy")
        run("embed", "--model", model, "--text", "a photo of a cat.", "--out", text_out)
        self.assertLess(np.abs(np.load(text_out)[0] - ref["text_embeds_norm_f64"][0]).max(), 5e-6)
        ranked = run("search", "--model", model, "--index", out, "--text", "a photo of a cat.", "--top-k", "3").stdout
        lines = ranked.splitlines()
        self.assertEqual(len(lines), 3)
        cos = index @ ref["text_embeds_norm_f64"][0]
        best = names[int(np.argmax(cos))]
        self.assertTrue(lines[0].endswith(best), ranked)

    def test_score(self):
        tsv = os.path.join(self.tmp, "pairs.tsv")
        prompts, ref = reference("tiny-vit")
        names = image_names()
        with open(tsv, "w") as f:
            for i in (0, 1, 2):
                f.write(f"images/{names[i]}\t{prompts[i]}\n")
        j = json.loads(run("score", "--model", os.path.join(FIXTURES, "models/tiny-vit/hf"), "--pairs", tsv,
                           "--format", "json").stdout)
        # The loss from the reference embeddings, computed here independently with numpy.
        img = ref["image_embeds_norm_f64"][:3]
        txt = ref["text_embeds_norm_f64"][:3]
        s = img @ txt.T * float(ref["logit_scale_exp_f64"])
        log_softmax = lambda m: m - np.log(np.exp(m - m.max(1, keepdims=True)).sum(1, keepdims=True)) - m.max(1, keepdims=True)
        loss = np.mean(0.5 * -np.diag(log_softmax(s)) + 0.5 * -np.diag(log_softmax(s.T)))
        self.assertAlmostEqual(j["loss"], loss, delta=1e-4)
        for k, pair in enumerate(j["pairs"]):
            self.assertAlmostEqual(pair["cosine"], float(img[k] @ txt[k]), delta=1e-5)


if __name__ == "__main__":
    unittest.main()
