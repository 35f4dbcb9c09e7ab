"""The `zeroclip` CLI given hostile input (issue "Hostile input"): failed images never ranked, outputs
that are inputs or folders refused before any work, outputs never half-written, file names and labels
that are not UTF-8 or hold newlines, unreadable folders, symbolic link loops, FIFOs, BOMs, duplicate
and over-long labels, bad temperatures and empty strings. Runs on the bundled toy model."""
import csv
import hashlib
import io
import json
import os
import resource
import shutil
import signal
import tempfile
import unittest

import numpy as np

import cli_util
from cli_util import SOURCE, needs_binary
from cli_util import EXAMPLE_IMAGES as IMAGES
from cli_util import TOY_MODEL as MODEL


def run(*args, check=True, timeout=120, preexec_fn=None):
    """Runs the CLI; stdout is kept as bytes (decoded by the tests, strictly)."""
    return cli_util.run(*args, check=check, timeout=timeout, text=False, preexec_fn=preexec_fn)


def as_unprivileged():
    """preexec_fn for the permission tests: root reads any folder, so as root the CLI runs as
    nobody (uid/gid 65534) and meets the permissions a user would; otherwise nothing changes."""
    if os.geteuid() != 0:
        return None

    def drop():
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    return drop


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def unescape(text):
    """The bytes behind the CLI's escaping (\\\\ \\n \\r \\t \\xHH), written independently of it."""
    out, i, raw = bytearray(), 0, text.encode("utf-8")
    while i < len(raw):
        if raw[i:i + 1] != b"\\":
            out += raw[i:i + 1]
            i += 1
            continue
        c = raw[i + 1:i + 2]
        if c == b"x":
            out.append(int(raw[i + 2:i + 4], 16))
            i += 4
        else:
            out += {b"\\": b"\\", b"n": b"\n", b"r": b"\r", b"t": b"\t"}[c]
            i += 2
    return bytes(out)


@needs_binary
class HostileInputTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="zeroclip_hostile_")
        self.folder = os.path.join(self.tmp, "images")
        os.mkdir(self.folder)
        for name in ("red_square.png", "blue_square.png", "green_circle.png"):
            shutil.copy(os.path.join(IMAGES, name), self.folder)

    def tearDown(self):
        for root, dirs, _ in os.walk(self.tmp):
            for d in dirs:
                try:
                    os.chmod(os.path.join(root, d), 0o755)
                except OSError:
                    pass
        shutil.rmtree(self.tmp, ignore_errors=True)

    def read_names(self, raw=False):
        with open(self.path("E.names.txt"), "rb") as f:
            text = f.read().decode("utf-8")
        return text if raw else text.splitlines()

    def path(self, name):
        return os.path.join(self.tmp, name)

    def assert_usage_error(self, proc, *words):
        self.assertEqual(proc.returncode, 2, proc.err)
        for w in words:
            self.assertIn(w, proc.err)

    # --- item 3: a failed image is never ranked, no NaN reaches a sort or an output ---------------

    def test_failed_image_gets_no_row_and_search_ranks_only_real_rows(self):
        with open(os.path.join(self.folder, "broken.png"), "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n not really")
        out = self.path("E.npy")
        proc = run("embed", "--model", MODEL, self.folder, "--out", out, check=False)
        self.assertEqual(proc.returncode, 1, proc.err)
        self.assertIn("broken.png", proc.err)
        index = np.load(out)
        names = self.read_names()
        self.assertEqual(index.shape[0], 3)
        self.assertEqual(len(names), 3)
        self.assertFalse(any("broken" in n for n in names))
        self.assertTrue(np.all(np.abs(np.linalg.norm(index, axis=1) - 1) < 1e-5))
        lines = run("search", "--model", MODEL, "--index", out, "--text", "a red square").stdout.decode().splitlines()
        scores = [float(line.split()[0]) for line in lines]
        self.assertEqual(len(scores), 3)
        self.assertEqual(scores, sorted(scores, reverse=True))

    def test_search_skips_zero_and_nan_rows_with_a_warning(self):
        out = self.path("E.npy")
        run("embed", "--model", MODEL, self.folder, "--out", out)
        index = np.load(out)
        names = self.read_names()
        # An index as older versions wrote it (a zero row for a failed image), and a corrupt row.
        index = np.vstack([index[:1], np.zeros((1, index.shape[1]), np.float32), index[1:2],
                           np.full((1, index.shape[1]), np.nan, np.float32), index[2:]])
        np.save(out, index.astype(np.float32))
        with open(self.path("E.names.txt"), "w") as f:
            f.write("\n".join([names[0], "zero-row.png", names[1], "nan-row.png", names[2]]) + "\n")
        proc = run("search", "--model", MODEL, "--index", out, "--text", "a red square", "--top-k", "10")
        lines = proc.stdout.decode().splitlines()
        self.assertEqual(len(lines), 3, proc.stdout)
        self.assertNotIn("nan", proc.stdout.decode().lower())
        scores = [float(line.split()[0]) for line in lines]
        self.assertEqual(scores, sorted(scores, reverse=True))
        self.assertIn("zero-row.png", proc.err)
        self.assertIn("nan-row.png", proc.err)
        self.assertIn("skipped", proc.err)

    def test_classify_ranks_only_images_that_decoded(self):
        with open(os.path.join(self.folder, "broken.png"), "wb") as f:
            f.write(b"not an image")
        proc = run("classify", "--model", MODEL, "--labels", "red square,blue square,green circle",
                   "--format", "json", self.folder, check=False)
        self.assertEqual(proc.returncode, 1)
        rows = json.loads(proc.stdout.decode("utf-8"), parse_constant=lambda c: self.fail(f"{c} in JSON"))
        self.assertEqual(len(rows), 4)
        for row in rows:
            for t in row.get("top", []):
                self.assertTrue(np.isfinite(t["prob"]) and np.isfinite(t["cosine"]), row)
        self.assertEqual(sum("error" in r for r in rows), 1)

    # --- item 4: outputs never clobber inputs, never half-written ---------------------------------

    def test_output_that_is_an_input_is_refused_before_any_work(self):
        model = self.path("model.safetensors")
        shutil.copy(MODEL, model)
        image = os.path.join(self.folder, "red_square.png")
        other = os.path.join(self.folder, "blue_square.png")
        pixels = self.path("X.npy")
        tokens = self.path("T.npy")
        np.save(pixels, np.zeros((1, 3, 64, 64), np.float32))
        np.save(tokens, np.array([[49406, 49407]], np.int32))
        link = self.path("hardlink.npy")
        os.link(model, link)
        before = {p: digest(p) for p in (model, image, other, pixels, tokens)}
        for args in (["embed", "--model", model, "--text", "hi", "--out", model],
                     ["embed", "--model", model, "--text", "hi", "--out", link],        # same inode
                     ["embed", "--model", model, "--text", "hi", "--out", self.path("E.npy"), "--names", model],
                     ["embed", "--model", model, image, other, "--out", other],
                     ["embed", "--model", model, "--pixels", pixels, "--out", pixels],
                     ["embed", "--model", model, "--tokens", tokens, "--out", tokens],
                     ["preprocess", image, "--out", image],
                     ["preprocess", image, "--npy", image]):
            proc = run(*args, check=False)
            self.assert_usage_error(proc, "same file as the input")
        for p, d in before.items():
            self.assertEqual(digest(p), d, p)

    def test_two_outputs_that_are_one_file_are_refused(self):
        pixels = self.path("X.npy")
        tokens = self.path("T.npy")
        np.save(pixels, np.zeros((1, 3, 64, 64), np.float32))
        np.save(tokens, np.array([[49406, 49407]], np.int32))
        out = self.path("E.npy")
        self.assert_usage_error(run("embed", "--model", MODEL, "--text", "hi", "--out", out, "--names", out,
                                    check=False), "are the same file")
        self.assert_usage_error(run("embed", "--model", MODEL, "--text", "hi", "--out", out,
                                    "--names", self.path("./E.npy"), check=False), "are the same file")
        self.assert_usage_error(run("embed", "--model", MODEL, "--pixels", pixels, "--tokens", tokens,
                                    "--out", self.path("S.npy"), "--text-out", self.path("S.npy"), check=False),
                                "are the same file")
        self.assert_usage_error(run("preprocess", os.path.join(self.folder, "red_square.png"),
                                    "--out", self.path("c.png"), "--npy", self.path("c.png"), check=False),
                                "are the same file")
        self.assertFalse(os.path.exists(out))
        self.assertFalse(os.path.exists(self.path("S.npy")))

    def test_folder_device_or_missing_folder_as_output(self):
        out = self.path("E.npy")
        run("embed", "--model", MODEL, "--text", "hi", "--out", out)
        before = digest(out), digest(self.path("E.names.txt"))
        self.assert_usage_error(run("embed", "--model", MODEL, "--text", "bye", "--out", out,
                                    "--names", "/nonexistent/n.txt", check=False), "/nonexistent")
        self.assert_usage_error(run("embed", "--model", MODEL, "--text", "bye", "--out", self.folder,
                                    check=False), "folder, device")
        # A device and a FIFO, reached through names in the scratch folder: even a wrong rename
        # would then replace the link, never /dev/null itself.
        device = self.path("device-link")
        os.symlink("/dev/null", device)
        fifo = self.path("fifo.npy")
        os.mkfifo(fifo)
        for target in (device, fifo):
            self.assert_usage_error(run("embed", "--model", MODEL, "--text", "bye", "--out", target,
                                        check=False, timeout=60), "folder, device")
        self.assertTrue(os.path.islink(device))
        self.assert_usage_error(run("preprocess", os.path.join(self.folder, "red_square.png"), "--out",
                                    self.folder, check=False), "folder, device")
        self.assertEqual((digest(out), digest(self.path("E.names.txt"))), before)
        self.assertFalse(os.path.exists(self.path("device-link.names.txt")))

    def test_full_disk_leaves_the_previous_outputs_whole(self):
        out = self.path("E.npy")
        run("embed", "--model", MODEL, "--text", "hi", "--out", out)
        before = digest(out), digest(self.path("E.names.txt"))
        files_before = sorted(os.listdir(self.tmp))

        def small_disk():  # writes past 1000 bytes fail with EFBIG, as on a full disk
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))

        proc = run("embed", "--model", MODEL, self.folder, "--text", "a longer list", "--out", out,
                   check=False, preexec_fn=small_disk)
        self.assertEqual(proc.returncode, 1, proc.err)
        self.assertIn("E.npy", proc.err)
        self.assertIn("unchanged", proc.err)
        self.assertEqual((digest(out), digest(self.path("E.names.txt"))), before)
        self.assertEqual(sorted(os.listdir(self.tmp)), files_before)  # no temporary or partial file
        crop = self.path("crop.png")
        proc = run("preprocess", os.path.join(self.folder, "red_square.png"), "--size", "64", "--out", crop,
                   check=False, preexec_fn=small_disk)
        self.assertEqual(proc.returncode, 1, proc.err)
        self.assertEqual(sorted(os.listdir(self.tmp)), files_before)

    # --- item 5 and 10: names and labels that are not UTF-8 or hold newlines ----------------------

    def hostile_folder(self):
        folder = os.path.join(self.tmp, "hostile")
        os.mkdir(folder)
        names = [b"bad\xff.png", b"two\nlines.png", b"tab\there\r.png", b"back\\slash.png", b"esc\x1b[31m.png"]
        for n in names:
            shutil.copy(os.path.join(IMAGES, "red_square.png"), os.path.join(os.fsencode(folder), n))
        return folder, names

    def test_json_and_jsonl_stay_valid_for_any_name_and_label(self):
        folder, names = self.hostile_folder()
        labels = self.path("labels.txt")
        with open(labels, "wb") as f:
            f.write(b"red square\n\xff\xfe weird\nblue square\n")
        for fmt in ("jsonl", "json"):
            proc = run("classify", "--model", MODEL, "--labels-file", labels, "--format", fmt, folder)
            text = proc.stdout.decode("utf-8")  # strict: must be valid UTF-8
            rows = [json.loads(line) for line in text.splitlines()] if fmt == "jsonl" else json.loads(text)
            self.assertEqual(len(rows), len(names))
            got = set()
            for row in rows:
                exact = bytes.fromhex(row["path_hex"]) if "path_hex" in row else os.fsencode(row["path"])
                got.add(os.path.basename(exact))
                self.assertTrue(os.path.exists(exact))
                weird = [t for t in row["top"] if "label_hex" in t]
                self.assertEqual(len(weird), 1)
                self.assertEqual(bytes.fromhex(weird[0]["label_hex"]), b"\xff\xfe weird")
            self.assertEqual(got, set(names))
        row = next(r for r in rows if "path_hex" in r)
        self.assertIn("\ufffd", row["path"])

    def test_table_and_csv_keep_one_row_per_line(self):
        folder, names = self.hostile_folder()
        common = ["classify", "--model", MODEL, "--labels", "red square,blue square", folder]
        table = run(*common).stdout.decode("utf-8").splitlines()
        self.assertEqual(len(table), 1 + len(names))
        self.assertEqual(sorted(os.path.basename(unescape(line.split("  ")[0])) for line in table[1:]), sorted(names))
        self.assertFalse(any("\x1b" in line for line in table))
        rows = list(csv.DictReader(io.StringIO(run(*common, "--format", "csv").stdout.decode("utf-8"))))
        self.assertEqual(len(rows), 2 * len(names))
        self.assertEqual({os.path.basename(unescape(r["path"])) for r in rows}, set(names))

    def test_names_file_round_trips_newlines_and_bytes(self):
        folder, names = self.hostile_folder()
        out = self.path("E.npy")
        text = "two\nline query\twith tab"
        run("embed", "--model", MODEL, folder, "--text", text, "--out", out)
        lines = self.read_names(raw=True).split("\n")
        self.assertEqual(lines[-1], "")
        lines = lines[:-1]
        self.assertEqual(len(lines), np.load(out).shape[0])
        self.assertEqual(len(lines), len(names) + 1)
        self.assertEqual(unescape(lines[-1]), b"text:" + text.encode())
        self.assertEqual(sorted(os.path.basename(unescape(n)) for n in lines[:-1]), sorted(names))
        ranked = run("search", "--model", MODEL, "--index", out, "--text", "a red square", "--top-k", "100")
        printed = ranked.stdout.decode("utf-8").splitlines()
        self.assertEqual(len(printed), len(lines))
        self.assertEqual(sorted(p.split("  ", 1)[1] for p in printed), sorted(lines))

    # --- item 11: folders, links, FIFOs ----------------------------------------------------------

    def test_unreadable_folder_says_permission_denied(self):
        os.chmod(self.tmp, 0o755)
        locked = os.path.join(self.tmp, "locked")
        os.mkdir(locked)
        shutil.copy(os.path.join(IMAGES, "red_square.png"), locked)
        os.chmod(locked, 0)
        proc = run("classify", "--model", MODEL, "--labels", "a,b", locked, check=False, preexec_fn=as_unprivileged())
        self.assertEqual(proc.returncode, 1, proc.err)
        self.assertIn("locked", proc.err)
        self.assertIn("Permission denied", proc.err)
        self.assertNotIn("no image files found", proc.err)

    def test_recursive_reports_each_unreadable_subfolder(self):
        os.chmod(self.tmp, 0o755)
        sub = os.path.join(self.folder, "private")
        os.mkdir(sub)
        shutil.copy(os.path.join(IMAGES, "red_square.png"), sub)
        os.chmod(sub, 0)
        proc = run("classify", "--model", MODEL, "--labels", "a,b", "--format", "jsonl", "--recursive",
                   self.folder, check=False, preexec_fn=as_unprivileged())
        self.assertEqual(proc.returncode, 1, proc.err)
        rows = [json.loads(line) for line in proc.stdout.decode().splitlines()]
        errors = [r for r in rows if "error" in r]
        self.assertEqual(len(errors), 1)
        self.assertEqual(errors[0]["path"], sub)
        self.assertIn("Permission denied", errors[0]["error"])
        self.assertEqual(len(rows), 4)

    def test_symlink_loop_and_broken_link(self):
        loop = self.path("loop.png")
        os.symlink(loop, loop)
        proc = run("classify", "--model", MODEL, "--labels", "a,b", loop, check=False)
        self.assert_usage_error(proc, "symbolic link loop")
        os.symlink(os.path.join(self.folder, "gone.png"), os.path.join(self.folder, "dangling.png"))
        os.symlink("self.png", os.path.join(self.folder, "self.png"))
        proc = run("classify", "--model", MODEL, "--labels", "a,b", "--format", "jsonl", self.folder, check=False)
        self.assertEqual(proc.returncode, 1, proc.err)
        errors = {os.path.basename(r["path"]): r["error"] for r in map(json.loads, proc.stdout.decode().splitlines())
                  if "error" in r}
        self.assertEqual(set(errors), {"dangling.png", "self.png"})
        self.assertIn("symbolic link loop", errors["self.png"])

    def test_fifo_is_refused_not_waited_on(self):
        fifo = self.path("fifo.png")
        os.mkfifo(fifo)
        self.assert_usage_error(run("classify", "--model", MODEL, "--labels", "a,b", fifo, check=False, timeout=60),
                                "not a regular file")
        self.assert_usage_error(run("embed", "--model", MODEL, fifo, "--out", self.path("E.npy"), check=False,
                                    timeout=60), "not a regular file")
        self.assert_usage_error(run("preprocess", fifo, "--out", self.path("c.png"), check=False, timeout=60),
                                "not a regular file")
        for args in (["search", "--model", MODEL, "--index", fifo, "--names", fifo, "--text", "a cat"],
                     ["embed", "--model", MODEL, "--pixels", fifo]):
            proc = run(*args, check=False, timeout=60)
            self.assertEqual(proc.returncode, 1, proc.err)
            self.assertIn("not a regular file", proc.err)
        labels = self.path("labels-fifo")
        os.mkfifo(labels)
        proc = run("classify", "--model", MODEL, "--labels-file", labels, self.folder, check=False, timeout=60)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("not a regular file", proc.err)

    def test_labels_file_that_is_a_folder_or_device(self):
        for target, words in ((self.folder, "is a directory"), ("/dev/zero", "not a regular file")):
            proc = run("classify", "--model", MODEL, "--labels-file", target, self.folder, check=False, timeout=60)
            self.assertEqual(proc.returncode, 1, proc.err)
            self.assertIn(words, proc.err)
            self.assertNotIn("no entries", proc.err)

    # --- item 11: labels and templates ------------------------------------------------------------

    def classify_json(self, *args):
        proc = run("classify", "--model", MODEL, "--format", "json", "--top-k", "100", *args,
                   os.path.join(self.folder, "red_square.png"))
        return proc, json.loads(proc.stdout.decode("utf-8"))[0]["top"]

    def test_bom_is_dropped_from_the_first_label(self):
        labels = self.path("bom.txt")
        with open(labels, "wb") as f:
            f.write(b"\xef\xbb\xbfred square\nblue square\n")
        _, top = self.classify_json("--labels-file", labels)
        _, plain = self.classify_json("--labels", "red square,blue square")
        self.assertEqual({t["label"] for t in top}, {"red square", "blue square"})
        self.assertEqual({t["label"]: round(t["cosine"], 6) for t in top},
                         {t["label"]: round(t["cosine"], 6) for t in plain})

    def test_duplicate_labels_are_a_usage_error_naming_them(self):
        proc = run("classify", "--model", MODEL, "--labels", "red square,blue square,red square", self.folder,
                   check=False)
        self.assert_usage_error(proc, "red square", "twice")
        labels = self.path("dup.txt")
        with open(labels, "w") as f:
            f.write("Red Square\nblue square\nred   square\n")
        proc = run("classify", "--model", MODEL, "--labels-file", labels, self.folder, check=False)
        self.assert_usage_error(proc, "Red Square", "red   square")

    def test_label_longer_than_the_context_is_a_warning_naming_it(self):
        long_label = "red " * 90 + "square"
        proc, _ = self.classify_json("--labels", f"blue square,{long_label}")
        self.assertIn("warning", proc.err)
        self.assertIn(long_label, proc.err)
        self.assertIn("cut", proc.err)
        proc, _ = self.classify_json("--labels", "blue square,red square")
        self.assertNotIn("warning", proc.err)
        proc = run("embed", "--model", MODEL, "--text", long_label, "--out", self.path("q.npy"))
        self.assertIn(long_label, proc.err)

    def test_every_braces_pair_of_a_template_gets_the_label(self):
        image = os.path.join(self.folder, "red_square.png")
        _, top = self.classify_json("--labels", "red square,blue square", "--template", "a {} or rather a {}")
        cos = {t["label"]: t["cosine"] for t in top}
        out = self.path("check.npy")
        run("embed", "--model", MODEL, image, "--text", "a red square or rather a red square", "--out", out)
        e = np.load(out)
        self.assertAlmostEqual(cos["red square"], float(e[0] @ e[1]), delta=1e-5)

    # --- item 11: numbers, vocabularies, empty strings --------------------------------------------

    def test_score_temperature_must_be_finite_and_positive(self):
        tsv = self.path("pairs.tsv")
        with open(tsv, "w") as f:
            f.write("images/red_square.png\ta red square\nimages/blue_square.png\ta blue square\n")
        for t in ("inf", "nan", "0", "-1", "1e400", "0.5x", ""):
            proc = run("score", "--model", MODEL, "--pairs", tsv, "--temperature", t, check=False)
            self.assert_usage_error(proc, "--temperature")
        for lam in ("nan", "2", "-0.1"):
            self.assert_usage_error(run("score", "--model", MODEL, "--pairs", tsv, "--lambda", lam, check=False),
                                    "--lambda")
        j = json.loads(run("score", "--model", MODEL, "--pairs", tsv, "--temperature", "0.07",
                           "--format", "json").stdout.decode())
        self.assertTrue(np.isfinite(j["loss"]))
        with open(tsv, "wb") as f:  # a BOM before the first image path
            f.write(b"\xef\xbb\xbfimages/red_square.png\ta red square\nimages/blue_square.png\ta blue square\n")
        self.assertEqual(run("score", "--model", MODEL, "--pairs", tsv).returncode, 0)

    def test_tokenize_bpe_refuses_a_labels_file(self):
        proc = run("tokenize", "--bpe", os.path.join(SOURCE, "examples/labels.txt"), "a cat", check=False)
        self.assertEqual(proc.returncode, 1, proc.err)
        self.assertIn("not a BPE merges file", proc.err)
        proc = run("tokenize", "--bpe", os.path.join(SOURCE, "data/bpe_simple_vocab_16e6.txt.gz"), "a cat")
        self.assertEqual(json.loads(proc.stdout)[0][:4], [49406, 320, 2368, 49407])

    def test_empty_strings_are_clear_usage_errors(self):
        blank = self.path("blank.txt")
        with open(blank, "w") as f:
            f.write("\n   \n\n")
        for args, words in ((["classify", "--model", MODEL, "--labels", "", self.folder], "empty"),
                            (["classify", "--model", MODEL, "--labels-file", blank, self.folder], "no entries"),
                            (["classify", "--model", MODEL, "--labels", "a", "--template", "", self.folder], "{}"),
                            (["embed", "--model", MODEL, "--text", "", "--out", self.path("E.npy")], "empty"),
                            (["embed", "--model", MODEL, "--texts-file", blank, "--out", self.path("E.npy")],
                             "no entries"),
                            (["search", "--model", MODEL, "--index", self.path("E.npy"), "--text", " "], "empty")):
            self.assert_usage_error(run(*args, check=False), words)
        self.assertFalse(os.path.exists(self.path("E.npy")))


if __name__ == "__main__":
    unittest.main()
