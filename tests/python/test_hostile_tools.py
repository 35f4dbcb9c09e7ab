"""Hostile inputs and outputs for weights_tools (issue 13): every one must end in a one-line
error naming the file with a nonzero exit status, never a traceback, a hang, memory exhaustion,
a clobbered input or a half-written output.

Run from the repository root with Debian's interpreter:
    /usr/bin/python3 -m unittest discover -s tests/python -v
The tools run as subprocesses under an address-space limit (so a regression fails here with
"out of memory" instead of exhausting the machine) and a timeout (so a hang fails too).
"""

import errno
import gzip
import json
import os
import resource
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import unittest
import zipfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.join(REPO, "weights_tools")
FIXTURES = os.environ.get("ZEROCLIP_FIXTURES") or os.path.normpath(os.path.join(REPO, "..", "shared", "fixtures"))
HF_FIXTURE = os.path.join(FIXTURES, "models", "tiny-vit", "hf")

sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from skip_policy import report_skips, require  # noqa: E402
from weights_tools import clip_arch, make_random, safetensors_io, torch_zip  # noqa: E402
from weights_tools._common import ToolError  # noqa: E402

MEMORY_LIMIT = 1536 << 20  # address space of each tool run; the tiny models need far less
TMP = None
MODEL = None  # a valid tiny zeroclip file (vocabulary 1000)


def setUpModule():
    global TMP, MODEL
    TMP = tempfile.mkdtemp(prefix="zeroclip-hostile-")
    cfg = make_random.build_config(tiny=True, vision_width=64, vision_layers=1, patch=16, image_size=32,
                                   text_width=64, text_layers=1, embed_dim=16, vocab_size=1000)
    MODEL = tmp("model.safetensors")
    make_random.write_random(MODEL, cfg, seed=3)


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)
    report_skips(__name__)


def tmp(name):
    return os.path.join(TMP, name)


def run(script, *args, fsize=None, timeout=60):
    """Run a tool as a user would, with at most MEMORY_LIMIT of address space (and a file size
    limit when given); returns CompletedProcess with text stdout / stderr."""
    def limits():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    env.pop("ZEROCLIP_DEBUG", None)
    return subprocess.run([sys.executable, os.path.join(TOOLS, script)] + [os.fsdecode(a) for a in args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, cwd=REPO,
                          env=env, preexec_fn=limits, timeout=timeout)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def with_config(name, mutate):
    """A copy of MODEL whose zeroclip.config went through ``mutate(cfg)``."""
    f = safetensors_io.SafetensorsFile(MODEL)
    meta = dict(f.metadata)
    cfg = json.loads(meta["zeroclip.config"])
    mutate(cfg)
    meta["zeroclip.config"] = json.dumps(cfg)
    out = tmp(name)
    safetensors_io.write(out, [(k, f.dtype(k), f.shape(k), f.get(k, raw=True)) for k in f.keys()], meta)
    return out


def raw_safetensors(name, header, data):
    """A safetensors file with exactly this header (a dict, or raw bytes) and data section."""
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    return write(tmp(name), struct.pack("<Q", len(h)) + h + data)


class ToolCase(unittest.TestCase):

    def assertFails(self, r, tool, *fragments, code=1):
        """Exit status ``code``, one line on stderr starting '<tool>: error:', no traceback,
        and every fragment in the message."""
        self.assertEqual(r.returncode, code, r.stderr)
        self.assertNotIn("Traceback", r.stderr)
        self.assertNotIn("out of memory", r.stderr)
        lines = r.stderr.strip().split("\n")
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertTrue(lines[0].startswith(tool + ": error: "), r.stderr)
        for frag in fragments:
            self.assertIn(frag, lines[0])


# ============================================================================ config values

class TestConfigValues(ToolCase):
    """Item 6 and 9: config values validated for type and range before anything is built."""

    CASES = [
        ("layers-2p32", lambda c: c["vision"].update(layers=2 ** 32 + 3), "vision.layers = 4294967299 is out of range"),
        ("layers-1e6", lambda c: c["vision"].update(layers=10 ** 6), "vision.layers = 1000000 is out of range"),
        ("layers-float", lambda c: c["vision"].update(layers=3.9), "vision.layers must be an integer (got 3.9)"),
        ("heads-bool", lambda c: c["text"].update(heads=True), "text.heads must be an integer (got true)"),
        ("width-string", lambda c: c["text"].update(width="64"), 'text.width must be an integer (got "64")'),
        ("width-huge", lambda c: c["vision"].update(width=10 ** 10), "vision.width = 10000000000 is out of range"),
        ("vocab-zero", lambda c: c["text"].update(vocab_size=0), "text.vocab_size = 0 is out of range"),
        ("eps-negative", lambda c: c.update(layer_norm_eps=-1e-5), "layer_norm_eps must be positive"),
        ("eps-string", lambda c: c.update(layer_norm_eps="x"), "layer_norm_eps must be a finite number"),
        ("std-two", lambda c: c.update(image_std=[0.2, 0.3]), "image_std must be a list of 3 numbers"),
        ("mean-nan", lambda c: c.update(image_mean=[0.1, float("nan"), 0.2]), "image_mean[1] must be a finite number"),
        ("std-zero", lambda c: c.update(image_std=[0.2, 0.0, 0.2]), "image_std[1] must be positive"),
        ("vision-string", lambda c: c.update(vision="vit"), "vision and text must be JSON objects"),
        ("act-number", lambda c: c.update(hidden_act=1), "hidden_act must be"),
        ("no-embed", lambda c: c.pop("embed_dim"), "missing key embed_dim"),
    ]

    def test_info_and_convert_refuse_bad_values_naming_file_and_key(self):
        for name, mutate, message in self.CASES:
            with self.subTest(name):
                path = with_config(name + ".safetensors", mutate)
                r = run("info.py", path)
                self.assertFails(r, "info.py", path, "zeroclip.config", message)
        # convert reads the same config through the same check
        path = tmp("layers-2p32.safetensors")
        r = run("convert.py", path, tmp("out-layers.safetensors"))
        self.assertFails(r, "convert.py", "vision.layers = 4294967299 is out of range")
        self.assertFalse(os.path.exists(tmp("out-layers.safetensors")))

    def test_bounds_are_inclusive_and_official_models_pass(self):
        for arch in clip_arch.OFFICIAL:
            make_random.build_config(arch=arch)
        cfg = make_random.build_config(tiny=True, vision_layers=clip_arch.MAX_LAYERS)
        self.assertEqual(cfg["vision"]["layers"], 1024)
        with self.assertRaisesRegex(ToolError, r"vision.layers = 1025 is out of range \[1, 1024\]"):
            make_random.build_config(tiny=True, vision_layers=clip_arch.MAX_LAYERS + 1)


@require(os.path.isdir(HF_FIXTURE), "Hugging Face fixture folder not found at %s (set ZEROCLIP_FIXTURES)" % HF_FIXTURE)
class TestHuggingFaceConfig(ToolCase):

    def folder(self, name, edit_config=None, edit_pre=None):
        d = tmp(name)
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(HF_FIXTURE, d)
        for fname, edit in (("config.json", edit_config), ("preprocessor_config.json", edit_pre)):
            if edit:
                with open(os.path.join(d, fname)) as f:
                    c = json.load(f)
                edit(c)
                with open(os.path.join(d, fname), "w") as f:
                    json.dump(c, f)
        return d

    def test_bad_values_refused_naming_config_and_key(self):
        cases = [
            ("hidden-1e10", lambda c: c["vision_config"].update(hidden_size=1e10),
             "vision_config.hidden_size must be an integer (got 10000000000.0)"),
            ("hidden-int-huge", lambda c: c["vision_config"].update(hidden_size=10 ** 10),
             "vision_config.hidden_size = 10000000000 is out of range"),
            ("layers-float", lambda c: c["text_config"].update(num_hidden_layers=3.9),
             "text_config.num_hidden_layers must be an integer (got 3.9)"),
            ("heads-bool", lambda c: c["text_config"].update(num_attention_heads=True),
             "text_config.num_attention_heads must be an integer (got true)"),
            ("eps-string", lambda c: c["text_config"].update(layer_norm_eps="abc"),
             "text_config.layer_norm_eps must be a finite number"),
            ("sections", lambda c: c.update(text_config=5), "must be JSON objects"),
        ]
        for name, edit, message in cases:
            with self.subTest(name):
                d = self.folder("hf-" + name, edit_config=edit)
                self.assertFails(run("info.py", d), "info.py", "config.json", message)
        d = self.folder("hf-std", edit_pre=lambda c: c.update(image_std=[0.5, 0.5]))
        self.assertFails(run("convert.py", d, tmp("hf-std.safetensors")), "convert.py",
                         "preprocessor_config.json", "image_std must be a list of 3 numbers")

    def test_negative_token_id_refused(self):
        d = self.folder("hf-vocab")
        with open(os.path.join(d, "vocab.json")) as f:
            vocab = json.load(f)
        vocab[next(iter(vocab))] = -1
        with open(os.path.join(d, "vocab.json"), "w") as f:
            json.dump(vocab, f)
        self.assertFails(run("convert.py", d, tmp("hf-vocab.safetensors")), "convert.py", d,
                         "non-negative integer ids")

    def test_output_into_the_input_folder_is_refused(self):
        d = self.folder("hf-out")
        before = read(os.path.join(d, "model.safetensors"))
        for target in ("model.safetensors", "config.json"):
            r = run("convert.py", d, os.path.join(d, target))
            self.assertFails(r, "convert.py", "same file as the input", code=2)
        self.assertEqual(read(os.path.join(d, "model.safetensors")), before)


# ============================================================================ archives

def zip_with(name, members):
    """A zip whose members are (name, bytes, compress_type)."""
    path = tmp(name)
    with zipfile.ZipFile(path, "w") as z:
        for member, data, how in members:
            z.writestr(zipfile.ZipInfo(member), data, compress_type=how)
    return path


class TestTorchArchives(ToolCase):
    """Item 6: zip bombs refused before inflating; damaged zips reported as such."""

    def test_pickle_bomb_refused_before_inflating(self):
        # 80 MiB of pickle that deflates to ~80 KiB: over the data.pkl limit
        big = b"\x80\x02" + b"0" * (80 << 20) + b"."
        p = zip_with("bomb-pkl.pt", [("archive/data.pkl", big, zipfile.ZIP_DEFLATED)])
        self.assertLess(os.path.getsize(p), 1 << 20)
        del big
        self.assertFails(run("convert.py", p, tmp("o.safetensors")), "convert.py", p, "data.pkl",
                         "more than the limit")
        # 20 MiB (under the limit) at a ratio over 1000: refused as a bomb
        p = zip_with("bomb-ratio.pt", [("archive/data.pkl", b"\x80\x02" + b"0" * (20 << 20) + b".",
                                        zipfile.ZIP_DEFLATED)])
        self.assertFails(run("info.py", p), "info.py", p, "decompression bomb")

    def test_storage_bomb_refused_before_inflating(self):
        sd = {"w": np.zeros((4, 1 << 20), dtype=np.float32)}  # 16 MiB of zeros
        plain = tmp("plain-big.pt")
        torch_zip.save_state_dict_zip(plain, sd)
        with zipfile.ZipFile(plain) as src:
            members = [(n, src.read(n), zipfile.ZIP_DEFLATED if n.endswith("/data/0") else zipfile.ZIP_STORED)
                       for n in src.namelist()]
        p = zip_with("bomb-storage.pt", members)
        arch = torch_zip.TorchArchive(p)
        try:
            with self.assertRaisesRegex(ToolError, "archive/data/0 inflates .* decompression bomb"):
                arch.storage_array(arch._refs["0"])
        finally:
            arch.close()

    def test_damaged_zips(self):
        sd = make_random.random_tensor("token_embedding.weight", (8, 4), {"vision": {}, "text": {}}, 0, 0)
        good = tmp("good.pt")
        torch_zip.save_state_dict_zip(good, {"token_embedding.weight": sd})
        data = read(good)
        for name, blob in (("cut-end.pt", data[:-40]), ("cut-half.pt", data[:len(data) // 2])):
            p = write(tmp(name), blob)
            self.assertFails(run("convert.py", p, tmp("o.safetensors")), "convert.py", p,
                             "looks like a PyTorch zip checkpoint, but the zip is damaged or truncated")
        # a member whose declared compressed size is more than the whole file
        with zipfile.ZipFile(good) as z:
            info = z.getinfo("archive/data.pkl")
        blob = bytearray(data)
        cd = blob.rfind(b"PK\x01\x02", 0, len(blob))
        while cd >= 0:  # central directory entries: patch data.pkl's compressed size
            nlen = struct.unpack_from("<H", blob, cd + 28)[0]
            if bytes(blob[cd + 46:cd + 46 + nlen]) == info.filename.encode():
                struct.pack_into("<I", blob, cd + 20, 1 << 30)
                struct.pack_into("<I", blob, cd + 24, 1 << 30)
                break
            cd = blob.rfind(b"PK\x01\x02", 0, cd)
        p = write(tmp("lying-size.pt"), bytes(blob))
        r = run("convert.py", p, tmp("o.safetensors"))
        self.assertFails(r, "convert.py", p)
        self.assertIn("data.pkl", r.stderr)

    def test_broadcast_tensor_larger_than_storage_refused(self):
        p = tmp("one.pt")
        torch_zip.save_state_dict_zip(p, {"a": np.ones((1,), dtype=np.float32)})
        arch = torch_zip.TorchArchive(p)
        try:
            ref = arch._refs["0"]
            huge = torch_zip.LazyTensor(ref, 0, (10 ** 6, 10 ** 6), (0, 0))  # 10^12 views of one float
            with self.assertRaisesRegex(ToolError, "broadcast"):
                huge.numpy()
            # a size whose product wraps to 0 in int64 must not pass as an empty tensor
            wrapped = torch_zip._rebuild_tensor_v2(ref, 0, (2 ** 32, 2 ** 32), (0, 0))
            self.assertEqual(wrapped.numel, 2 ** 64)
            with self.assertRaisesRegex(ToolError, "broadcast"):
                wrapped.numpy()
        finally:
            arch.close()


# ============================================================================ safetensors + format detection

class TestSafetensorsInputs(ToolCase):
    """Item 11: offsets must tile the data section; formats are told apart by signature."""

    def entry(self, begin, end, shape=(4,)):
        return {"dtype": "F32", "shape": list(shape), "data_offsets": [begin, end]}

    def test_overlap_gap_and_tail_refused(self):
        cases = [
            ("overlap", {"a": self.entry(0, 16), "b": self.entry(8, 24)}, 24,
             "tensors 'a' (ending at byte 16) and 'b' (starting at byte 8) overlap"),
            ("same", {"a": self.entry(0, 16), "b": self.entry(0, 16)}, 16, "overlap"),
            ("gap", {"a": self.entry(0, 16), "b": self.entry(20, 36)}, 36, "4 unused bytes"),
            ("tail", {"a": self.entry(0, 16)}, 20, "4 bytes after the last tensor"),
            ("float-shape", {"a": {"dtype": "F32", "shape": [4.0], "data_offsets": [0, 16]}}, 16,
             "expected a list of non-negative integers"),
            ("bool-offset", {"a": {"dtype": "F32", "shape": [1], "data_offsets": [False, 4]}}, 4,
             "expected [begin, end] integers"),
            ("wrapping-shape", {"a": self.entry(0, 16, (2 ** 62, 2 ** 2))}, 16, "bad data_offsets"),
        ]
        for name, header, size, message in cases:
            with self.subTest(name):
                p = raw_safetensors(name + ".safetensors", header, b"\0" * size)
                self.assertFails(run("convert.py", p, tmp("o.safetensors")), "convert.py", p, message)
                self.assertFalse(os.path.exists(tmp("o.safetensors")))
        p = raw_safetensors("dup.safetensors", b'{"a":%s,"a":%s}' % (json.dumps(self.entry(0, 16)).encode(),
                                                                   json.dumps(self.entry(16, 32)).encode()), b"\0" * 32)
        self.assertFails(run("info.py", p), "info.py", "key 'a' appears twice")

    def test_exact_tiling_with_empty_tensors_accepted(self):
        header = {"e": {"dtype": "F16", "shape": [0, 3], "data_offsets": [16, 16]},
                  "a": self.entry(0, 16), "b": self.entry(16, 32)}
        f = safetensors_io.SafetensorsFile(raw_safetensors("tiled.safetensors", header, b"\0" * 32))
        self.assertEqual(sorted(f.keys()), ["a", "b", "e"])

    def test_malformed_safetensors_is_not_called_legacy_pytorch(self):
        # a header length of 128 makes the first byte 0x80, the pickle protocol opcode
        p = raw_safetensors("hdr128.safetensors", b"{" + b"x" * 127, b"")
        self.assertEqual(read(p)[0], 0x80)
        r = run("convert.py", p, tmp("o.safetensors"))
        self.assertFails(r, "convert.py", p, "invalid safetensors JSON header")
        self.assertNotIn("legacy", r.stderr)
        p = write(tmp("hugelen.safetensors"), struct.pack("<Q", 2 ** 63) + b"{}")
        self.assertFails(run("info.py", p), "info.py", p, "header length 9223372036854775808 is larger than the rest")

    def test_signatures(self):
        legacy = write(tmp("legacy.pt"), b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02}q\x00.")
        self.assertFails(run("convert.py", legacy, tmp("o.safetensors")), "convert.py", legacy,
                         "looks like a legacy (pre-1.6, non-zip) PyTorch file")
        junk = write(tmp("junk.bin"), b"GIF89a" + b"\0" * 100)
        self.assertFails(run("info.py", junk), "info.py", junk, "not a recognised checkpoint (106 bytes")
        empty = write(tmp("empty.pt"), b"")
        self.assertFails(run("info.py", empty), "info.py", empty, "an empty file")

    def test_special_files_as_input_do_not_block(self):
        fifo = tmp("in.fifo")
        os.mkfifo(fifo)
        r = run("convert.py", fifo, tmp("o.safetensors"), timeout=30)
        self.assertFails(r, "convert.py", fifo, "not a regular file")
        self.assertFails(run("info.py", "/dev/zero", timeout=30), "info.py", "/dev/zero", "not a regular file")
        r = run("make_random.py", "--tiny", "--bpe", fifo, tmp("o.safetensors"), timeout=30)
        self.assertFails(r, "make_random.py", fifo, "not a regular file")

    def test_symlink_loop_is_not_called_missing(self):
        loop = tmp("loop.pt")
        os.symlink(loop, loop)
        self.assertFails(run("info.py", loop), "info.py", loop, "too many levels of symbolic links")

    def test_gzip_bomb_as_bpe_refused(self):
        p = tmp("bomb.txt.gz")
        with gzip.open(p, "wb", compresslevel=1) as f:
            chunk = b"a b\n" * (1 << 20)
            for _ in range(17):  # 68 MiB once inflated
                f.write(chunk)
        self.assertFails(run("make_random.py", "--tiny", "--bpe", p, tmp("o.safetensors")), "make_random.py", p,
                         "inflates to more than")

    def test_nan_weights_refused(self):
        f = safetensors_io.SafetensorsFile(MODEL)
        entries = []
        for k in f.keys():
            a = f.get(k, raw=True)
            if k == "visual.proj":
                a = a.copy()
                a.view(np.float16)[0, 0] = np.nan
            entries.append((k, f.dtype(k), f.shape(k), a))
        p = tmp("nan.safetensors")
        safetensors_io.write(p, entries, f.metadata)
        self.assertFails(run("convert.py", p, tmp("o.safetensors"), "--dtype", "f32"), "convert.py",
                         "'visual.proj' contains NaN")

    def test_non_utf8_file_name_and_huge_logit_scale(self):
        f = safetensors_io.SafetensorsFile(MODEL)
        entries = [(k, f.dtype(k), f.shape(k),
                    np.array(1000, dtype=np.float16) if k == "logit_scale" else f.get(k, raw=True))
                   for k in f.keys()]
        p = os.path.join(os.fsencode(TMP), b"bad\xffname.safetensors")
        safetensors_io.write(os.fsdecode(p), entries, f.metadata)
        r = run("info.py", p)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("bad\\xffname.safetensors", r.stdout)
        self.assertIn("exp = inf", r.stdout)
        r = run("info.py", p, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(os.fsencode(json.loads(r.stdout)["path"]), p)
        # a NaN logit_scale: a note, and --json stays valid JSON (no bare NaN)
        entries = [(k, d, s, np.array(np.nan, dtype=np.float16) if k == "logit_scale" else a)
                   for k, d, s, a in entries]
        q = tmp("nan-scale.safetensors")
        safetensors_io.write(q, entries, f.metadata)
        r = run("info.py", q, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout, parse_constant=lambda c: self.fail("invalid JSON constant " + c))
        self.assertIsNone(out["logit_scale"])
        self.assertIn("logit_scale is nan", " ".join(out["notes"]))


# ============================================================================ outputs

class TestOutputs(ToolCase):
    """Item 4: outputs never clobber inputs, never half-written; special outputs refused."""

    def input_copy(self, name):
        p = tmp(name)
        shutil.copyfile(MODEL, p)
        return p

    def test_output_that_is_an_input_is_a_usage_error(self):
        src = self.input_copy("in-same.safetensors")
        before = read(src)
        hard = tmp("hard-link.safetensors")
        os.link(src, hard)
        sym = tmp("sym-link.safetensors")
        os.symlink(src, sym)
        for out in (src, hard, sym, os.path.join(TMP, ".", "in-same.safetensors")):
            with self.subTest(out):
                r = run("convert.py", src, out, "--dtype", "f32")
                self.assertFails(r, "convert.py", "same file as the input", code=2)
                self.assertEqual(read(src), before)
        bpe = write(tmp("merges.txt"), b"a b\n")
        r = run("make_random.py", "--tiny", "--bpe", bpe, bpe)
        self.assertFails(r, "make_random.py", "same file as the input", code=2)
        self.assertEqual(read(bpe), b"a b\n")

    def test_bad_normalisation_options_are_usage_errors(self):
        src = self.input_copy("in-norm.safetensors")
        for opt, value in (("--image-mean", "0.5,nan,0.5"), ("--image-std", "0.2,0,0.2"), ("--image-std", "1,2")):
            with self.subTest(value):
                r = run("convert.py", src, tmp("norm.safetensors"), opt, value)
                self.assertFails(r, "convert.py", opt, code=2)

    def test_special_outputs_are_usage_errors(self):
        # Never /dev/null itself: code that regressed would replace it (as root) for the whole
        # machine. A FIFO, and as root a null device node made here, stand for it.
        src = self.input_copy("in-special.safetensors")
        fifo = tmp("out.fifo")
        os.mkfifo(fifo)
        specials = [fifo]
        if os.geteuid() == 0:
            node = tmp("null-device")
            os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
            specials.append(node)
        cases = [(TMP, "is a directory"), (tmp("no/such/dir/o.safetensors"), "output folder")]
        cases += [(p, "not a regular file") for p in specials]
        for out, message in cases:
            with self.subTest(out):
                self.assertFails(run("convert.py", src, out, timeout=30), "convert.py", out, message, code=2)
                self.assertFails(run("make_random.py", "--tiny", out, timeout=30), "make_random.py", message, code=2)
        for p in specials:
            self.assertFalse(stat.S_ISREG(os.stat(p).st_mode), p)

    def test_file_too_large_keeps_old_output_and_leaves_nothing(self):
        src = self.input_copy("in-big.safetensors")
        out = write(tmp("keep.safetensors"), b"previous content")
        before = sorted(os.listdir(TMP))
        for tool, args in (("convert.py", (src, out, "--dtype", "f32")), ("make_random.py", ("--tiny", out))):
            with self.subTest(tool):
                r = run(tool, *args, fsize=64 << 10)
                self.assertFails(r, tool, out, "File too large", "previous file, if any, is unchanged")
                self.assertEqual(read(out), b"previous content")
                self.assertEqual(sorted(os.listdir(TMP)), before)

    def test_disk_full_keeps_old_output_and_leaves_nothing(self):
        out = write(tmp("full.safetensors"), b"old")
        before = sorted(os.listdir(TMP))

        def no_space():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        entries = [("a", "F32", (2,), np.zeros(2, np.float32)), ("b", "F32", (2,), no_space)]
        with self.assertRaisesRegex(ToolError, "full.safetensors: cannot write: No space left on device"):
            safetensors_io.write(out, entries)
        self.assertEqual(read(out), b"old")
        self.assertEqual(sorted(os.listdir(TMP)), before)

    def test_success_replaces_atomically_with_normal_permissions(self):
        out = write(tmp("replace.safetensors"), b"old")
        os.chmod(out, 0o600)
        r = run("make_random.py", "--tiny", "--vocab-size", "1000", "-q", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(safetensors_io.SafetensorsFile(out).metadata["zeroclip.format_version"], "1")
        umask = os.umask(0)
        os.umask(umask)
        self.assertEqual(os.stat(out).st_mode & 0o777, 0o666 & ~umask)
        self.assertFalse([n for n in os.listdir(TMP) if n.endswith(".tmp")])


if __name__ == "__main__":
    unittest.main()
