"""Tests for weights_tools/ (convert.py, info.py, make_random.py and their modules).

Run from the repository root with Debian's interpreter (it has numpy):
    /usr/bin/python3 -m unittest discover -s tests/python -v

Fixtures: $ZEROCLIP_FIXTURES, else <repo>/../shared/fixtures. Tests that need them are skipped
(with a message, repeated at the end of the run) when they are absent, and FAIL when CI=true
(skip_policy.py); the rest build their inputs themselves.
torch is used only by one optional test, skipped when torch is not installed (in CI too, unless
the setup was asked for torch with ZEROCLIP_WITH_TORCH=1).
"""

import collections
import contextlib
import gzip
import io
import json
import math
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import unittest
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.join(REPO, "weights_tools")
FIXTURES = os.environ.get("ZEROCLIP_FIXTURES") or os.path.normpath(os.path.join(REPO, "..", "shared", "fixtures"))
MODELS = os.path.join(FIXTURES, "models")
HAVE_FIXTURES = os.path.exists(os.path.join(MODELS, "tiny-vit", "openai_jit.pt")) and \
    os.path.exists(os.path.join(MODELS, "tiny-rn", "openai_state_dict.pt"))
NO_FIXTURES_MSG = "CLIP fixtures not found at %s (set ZEROCLIP_FIXTURES)" % FIXTURES

try:
    import numpy as np
except ImportError:  # pragma: no cover - the whole suite needs numpy; in CI its absence fails
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        raise
    raise unittest.SkipTest("numpy is not available to %s; run the tests with /usr/bin/python3" % sys.executable)

sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from skip_policy import report_skips, require  # noqa: E402
from weights_tools import clip_arch, convert, info, make_random, safetensors_io, sources, torch_zip  # noqa: E402
from weights_tools._common import ToolError  # noqa: E402

PY = sys.executable
TMP = None


def setUpModule():
    global TMP
    TMP = tempfile.mkdtemp(prefix="zeroclip-wt-test-")


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)
    report_skips(__name__)


def tmp(name):
    return os.path.join(TMP, name)


def run_cli(script, *args):
    """Run a tool in a subprocess exactly as a user would; returns CompletedProcess (text)."""
    return subprocess.run([PY, os.path.join(TOOLS, script)] + [str(a) for a in args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, cwd=REPO)


Result = collections.namedtuple("Result", "returncode stdout stderr")
MAINS = {"convert.py": convert.main, "info.py": info.main, "make_random.py": make_random.main}


def run_tool(script, *args):
    """Run a tool's main() in this process (saves the interpreter start-up per call); same
    exit status and output as run_cli."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = MAINS[script]([str(a) for a in args])
        except SystemExit as e:  # argparse usage errors
            rc = e.code
    return Result(rc, out.getvalue(), err.getvalue())


def load_st(path):
    """(OrderedDict name -> (dtype, shape, raw numpy), metadata)."""
    f = safetensors_io.SafetensorsFile(path)
    out = collections.OrderedDict()
    for k in f.keys():
        out[k] = (f.dtype(k), f.shape(k), f.get(k, raw=True))
    return out, f.metadata


def small_state_dict(cfg, seed=0, dtype=np.float16):
    """An OpenAI-named state dict (numpy) for cfg, via make_random's initialiser."""
    sd = collections.OrderedDict()
    for i, (name, shape) in enumerate(clip_arch.expected_shapes(cfg).items()):
        sd[name] = make_random.random_tensor(name, shape, cfg, seed, i).astype(dtype)
    return sd


def tiny_vit_cfg():
    return make_random.build_config(tiny=True, vision_width=64, vision_layers=1, patch=16, image_size=32,
                                    text_width=64, text_layers=1, embed_dim=16, vocab_size=1000)


def tiny_rn_cfg():
    return make_random.build_config(tiny=True, resnet_layers=[2, 1, 1, 1], vision_width=16, image_size=64,
                                    text_width=64, text_layers=1, embed_dim=16, vocab_size=1000)


# ============================================================================ fixtures

@require(HAVE_FIXTURES, NO_FIXTURES_MSG)
class TestFixtureConversion(unittest.TestCase):
    """tiny-vit from three sources, tiny-rn from its state dict."""

    @classmethod
    def setUpClass(cls):
        cls.out = {}
        for key, rel in (("jit", "tiny-vit/openai_jit.pt"), ("sd", "tiny-vit/openai_state_dict.pt"),
                         ("hf", "tiny-vit/hf"), ("rn", "tiny-rn/openai_state_dict.pt")):
            path = tmp("fx-%s.safetensors" % key)
            run = run_cli if key == "jit" else run_tool  # one real command line, the rest in-process
            r = run("convert.py", os.path.join(MODELS, rel), path)
            if r.returncode != 0:
                raise AssertionError("convert %s failed: %s" % (rel, r.stderr))
            cls.out[key] = path

    def ref(self, model):
        with open(os.path.join(MODELS, model, "reference.json")) as f:
            return json.load(f)

    def test_vit_sources_give_identical_tensors_and_config(self):
        jit, mj = load_st(self.out["jit"])
        for other in ("sd", "hf"):
            t, m = load_st(self.out[other])
            self.assertEqual(list(jit.keys()), list(t.keys()), other)
            for k in jit:
                self.assertEqual(jit[k][:2], t[k][:2], k)
                self.assertTrue(np.array_equal(jit[k][2], t[k][2]), "%s differs (%s)" % (k, other))
            self.assertEqual(mj, m, other)
        # byte-identical files, in fact
        for other in ("sd", "hf"):
            with open(self.out["jit"], "rb") as a, open(self.out[other], "rb") as b:
                self.assertEqual(a.read(), b.read(), other)

    def test_vit_values_equal_the_state_dict(self):
        arch, sd, kind, _ = torch_zip.load_state_dict(os.path.join(MODELS, "tiny-vit", "openai_state_dict.pt"))
        self.assertEqual(kind, "torch_state_dict")
        out, _ = load_st(self.out["jit"])
        self.assertEqual(sorted(out), sorted(sd))
        for k, t in sd.items():
            self.assertEqual(out[k][0], "F16")
            self.assertTrue(np.array_equal(out[k][2].view(np.float16), t.numpy()), k)
        self.assertEqual(out["logit_scale"][1], ())
        arch.close()

    def test_jit_tree_has_the_state_dict_names(self):
        arch, sd, kind, _ = torch_zip.load_state_dict(os.path.join(MODELS, "tiny-vit", "openai_jit.pt"))
        self.assertEqual(kind, "torchscript")
        self.assertIn("visual.transformer.resblocks.0.attn.in_proj_weight", sd)
        self.assertIn("visual.transformer.resblocks.1.mlp.c_proj.bias", sd)
        for k in ("input_resolution", "context_length", "vocab_size"):
            self.assertEqual(sd[k].dtype, "int64")
        self.assertEqual(int(sd["input_resolution"].numpy()), 64)
        out, _ = load_st(self.out["jit"])
        for k in ("input_resolution", "context_length", "vocab_size"):
            self.assertNotIn(k, out)
        arch.close()

    def test_hf_mapping(self):
        hf = safetensors_io.SafetensorsFile(os.path.join(MODELS, "tiny-vit", "hf", "model.safetensors"))
        out, _ = load_st(self.out["hf"])
        f16 = lambda k: out[k][2].view(np.float16)  # noqa: E731
        p = "vision_model.encoder.layers.1.self_attn."
        qkv = np.concatenate([hf.get(p + "%s_proj.weight" % x) for x in "qkv"])
        self.assertTrue(np.array_equal(f16("visual.transformer.resblocks.1.attn.in_proj_weight"), qkv))
        qkvb = np.concatenate([hf.get("text_model.encoder.layers.0.self_attn.%s_proj.bias" % x) for x in "qkv"])
        self.assertTrue(np.array_equal(f16("transformer.resblocks.0.attn.in_proj_bias"), qkvb))
        self.assertTrue(np.array_equal(f16("visual.proj"), hf.get("visual_projection.weight").T))
        self.assertTrue(np.array_equal(f16("text_projection"), hf.get("text_projection.weight").T))
        self.assertTrue(np.array_equal(f16("visual.ln_pre.weight"), hf.get("vision_model.pre_layrnorm.weight")))
        self.assertFalse(any("position_ids" in k for k in out))

    def check_config(self, cfg, ref):
        a = ref["clip_constructor_args"]
        v, t = cfg["vision"], cfg["text"]
        self.assertEqual(cfg["embed_dim"], a["embed_dim"])
        self.assertEqual(v["image_size"], a["image_resolution"])
        self.assertEqual(v["width"], a["vision_width"])
        if a["vision_patch_size"] is None:
            self.assertEqual(v["type"], "resnet")
            self.assertEqual(v["layers"], list(a["vision_layers"]))
            self.assertNotIn("patch_size", v)
        else:
            self.assertEqual(v["type"], "vit")
            self.assertEqual(v["layers"], a["vision_layers"])
            self.assertEqual(v["patch_size"], a["vision_patch_size"])
        self.assertEqual(t["width"], a["transformer_width"])
        self.assertEqual(t["layers"], a["transformer_layers"])
        self.assertEqual(t["heads"], a["transformer_heads"])
        self.assertEqual(t["context_length"], a["context_length"])
        self.assertEqual(t["vocab_size"], a["vocab_size"])
        self.assertEqual(v["heads"], ref["heads"]["vision"])
        self.assertEqual(t["heads"], ref["heads"]["text"])
        self.assertEqual(cfg["hidden_act"], "quick_gelu")
        self.assertEqual(cfg["layer_norm_eps"], 1e-05)
        self.assertEqual(cfg["image_mean"], [0.48145466, 0.4578275, 0.40821073])
        self.assertEqual(cfg["image_std"], [0.26862954, 0.26130258, 0.27577711])

    def test_configs_match_reference(self):
        for key, model in (("jit", "tiny-vit"), ("hf", "tiny-vit"), ("rn", "tiny-rn")):
            _, meta = load_st(self.out[key])
            cfg = json.loads(meta["zeroclip.config"])
            self.check_config(cfg, self.ref(model))
            self.assertEqual(list(cfg.keys()), ["embed_dim", "vision", "text", "hidden_act", "layer_norm_eps",
                                                "image_mean", "image_std"])

    def test_resnet_tensors(self):
        out, meta = load_st(self.out["rn"])
        self.assertFalse(any(k.endswith("num_batches_tracked") for k in out))
        for k in ("visual.bn1.running_var", "visual.layer1.0.downsample.1.running_mean",
                  "visual.attnpool.q_proj.weight", "visual.attnpool.c_proj.bias"):
            self.assertIn(k, out)
        self.assertEqual(out["visual.attnpool.positional_embedding"][1], (5, 512))
        self.assertEqual(out["visual.layer4.0.conv3.weight"][1], (512, 128, 1, 1))
        arch, sd, _, _ = torch_zip.load_state_dict(os.path.join(MODELS, "tiny-rn", "openai_state_dict.pt"))
        for k, (dt, shape, raw) in out.items():
            self.assertTrue(np.array_equal(raw.view(np.float16), sd[k].numpy()), k)
        self.assertEqual(len(out), len(sd) - sum(k.endswith("num_batches_tracked") for k in sd))
        arch.close()

    def test_metadata_and_tokenizer(self):
        _, meta = load_st(self.out["jit"])
        self.assertEqual(sorted(meta), ["format", "zeroclip.bpe_merges", "zeroclip.config",
                                        "zeroclip.format_version"])
        self.assertEqual(meta["format"], "pt")
        self.assertEqual(meta["zeroclip.format_version"], "1")
        merges = meta["zeroclip.bpe_merges"].split("\n")
        self.assertEqual(len(merges), 48894)
        self.assertEqual(merges[0], "i n")
        self.assertFalse(meta["zeroclip.bpe_merges"].startswith("#"))
        gz = os.path.join(FIXTURES, "tokenizer", "bpe_simple_vocab_16e6.txt.gz")
        with gzip.open(gz, "rb") as f:
            lines = f.read().decode("utf-8").split("\n")
        self.assertEqual(merges, lines[1:49152 - 256 - 2 + 1])
        with open(os.path.join(MODELS, "tiny-vit", "hf", "vocab.json"), encoding="utf-8") as f:
            self.assertEqual(clip_arch.standard_vocab(merges), json.load(f))

    def test_header_layout(self):
        path = self.out["rn"]
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            raw = f.read(n)
        self.assertEqual(n % 8, 0)
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=collections.OrderedDict)
        names = [k for k in header if k != "__metadata__"]
        self.assertEqual(list(header)[0], "__metadata__")
        self.assertEqual(names, sorted(names))
        end = 0
        for k in names:
            b, e = header[k]["data_offsets"]
            self.assertEqual(b, end, k)
            end = e
        self.assertEqual(8 + n + end, os.path.getsize(path))

    def test_dtypes_round_trip(self):
        f16, _ = load_st(self.out["sd"])
        for dt in ("f32", "bf16"):
            path = tmp("fx-sd-%s.safetensors" % dt)
            r = run_tool("convert.py", "--dtype", dt, os.path.join(MODELS, "tiny-vit", "openai_state_dict.pt"), path)
            self.assertEqual(r.returncode, 0, r.stderr)
            out, _ = load_st(path)
            self.assertEqual(list(out), list(f16))
            for k, (d, shape, raw) in out.items():
                self.assertEqual(d, dt.upper(), k)
                self.assertEqual(shape, f16[k][1])
                src32 = f16[k][2].view(np.float16).astype(np.float32)
                if dt == "f32":
                    self.assertTrue(np.array_equal(raw.view(np.float32), src32), k)
                else:
                    self.assertTrue(np.array_equal(raw, safetensors_io.f32_to_bf16_bits(src32)), k)
            # a zeroclip file converts back to f16 losslessly (f32 held the f16 values exactly)
            if dt == "f32":
                back = tmp("fx-back-f16.safetensors")
                r = run_tool("convert.py", path, back)
                self.assertEqual(r.returncode, 0, r.stderr)
                with open(back, "rb") as a, open(self.out["sd"], "rb") as b:
                    self.assertEqual(a.read(), b.read())

    def test_info_all_inputs(self):
        cfgs = []
        for p in (os.path.join(MODELS, "tiny-vit", "openai_jit.pt"), os.path.join(MODELS, "tiny-vit", "hf"),
                  os.path.join(MODELS, "tiny-vit", "openai_state_dict.pt"), self.out["jit"]):
            r = run_tool("info.py", "--json", p)
            self.assertEqual(r.returncode, 0, r.stderr)
            d = json.loads(r.stdout)
            self.assertEqual(d["architecture"], "ViT")
            self.assertEqual(d["parameters"], 3770945)
            self.assertEqual(d["dtypes"], {"float16": 62})
            self.assertAlmostEqual(d["logit_scale"], 2.66015625)
            cfgs.append(d["config"])
        self.assertTrue(all(c == cfgs[0] for c in cfgs))
        r = run_tool("info.py", os.path.join(MODELS, "tiny-rn", "openai_state_dict.pt"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("ModifiedResNet", r.stdout)
        self.assertIn("attention-pool heads 8", r.stdout)
        self.assertIn("file size", r.stdout)

    def test_truncated_fixture_refused(self):
        src = os.path.join(MODELS, "tiny-vit", "openai_jit.pt")
        with open(src, "rb") as f:
            data = f.read()
        for cut in (len(data) // 2, len(data) - 100):
            bad = tmp("truncated.pt")
            with open(bad, "wb") as f:
                f.write(data[:cut])
            out = tmp("truncated.safetensors")
            r = run_tool("convert.py", bad, out)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertTrue(r.stderr.startswith("convert.py: error:"), r.stderr)
            self.assertFalse(os.path.exists(out))


# ============================================================================ safety

class Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


def write_pickle_zip(path, payload, top="archive"):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(top + "/data.pkl", payload)
        z.writestr(top + "/version", "3\n")


class TestUnpicklerSafety(unittest.TestCase):

    def setUp(self):
        self.marker = tmp("PWNED-%s" % self._testMethodName)
        if os.path.exists(self.marker):
            os.unlink(self.marker)

    def assert_refused(self, path, global_name, cli=False):
        out = tmp("evil.safetensors")
        r = (run_cli if cli else run_tool)("convert.py", path, out)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertTrue(r.stderr.startswith("convert.py: error:"), r.stderr)
        self.assertIn("refusing to load global '%s'" % global_name, r.stderr)
        self.assertIn("nothing in the file was executed", r.stderr)
        self.assertNotIn("Traceback", r.stderr)
        self.assertFalse(os.path.exists(out))
        self.assertFalse(os.path.exists(self.marker), "the pickle was executed!")
        r = run_tool("info.py", path)
        self.assertEqual(r.returncode, 1)
        self.assertIn(global_name, r.stderr)
        self.assertFalse(os.path.exists(self.marker), "the pickle was executed!")

    def test_os_system_refused(self):
        for proto in (2, 4):
            p = tmp("evil_system_%d.pt" % proto)
            write_pickle_zip(p, pickle.dumps({"a": Evil(os.system, "touch '%s'" % self.marker)}, protocol=proto))
            self.assert_refused(p, "%s.system" % os.system.__module__, cli=(proto == 2))

    def test_builtins_eval_refused(self):
        code = "open(%r, 'w').write('x')" % self.marker
        for proto in (2, 4):
            p = tmp("evil_eval_%d.pt" % proto)
            write_pickle_zip(p, pickle.dumps(collections.OrderedDict(w=Evil(eval, code)), protocol=proto))
            self.assert_refused(p, "builtins.eval")

    def test_unknown_globals_refused_in_process(self):
        cases = [
            (b"\x80\x02csubprocess\nPopen\n.", "subprocess.Popen"),
            (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\n.", "numpy.core.multiarray._reconstruct"),
            (b"\x80\x02ctorch\nload\n.", "torch.load"),
            (b"\x80\x02cbuiltins\nexec\n.", "builtins.exec"),
        ]
        for i, (payload, name) in enumerate(cases):
            p = tmp("evil_%d.pt" % i)
            write_pickle_zip(p, payload)
            with self.assertRaises(torch_zip.UnsafePickleError) as cm:
                torch_zip.TorchArchive(p)
            self.assertIn(name, str(cm.exception))

    def test_bad_persistent_id_and_tampering_refused(self):
        p = tmp("evil_pid.pt")
        # persistent id that is not a ('storage', type, key, location, numel) tuple
        write_pickle_zip(p, b"\x80\x02X\x03\x00\x00\x00abcQ.")
        with self.assertRaises(torch_zip.UnsafePickleError):
            torch_zip.TorchArchive(p)
        # storage key trying to escape the data folder
        payload = (b"\x80\x02(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x06\x00\x00\x00../../"
                   b"X\x03\x00\x00\x00cpuK\x01tQ.")
        write_pickle_zip(p, payload)
        with self.assertRaises(torch_zip.UnsafePickleError):
            torch_zip.TorchArchive(p)
        # BUILD on a shared storage token must not change it
        write_pickle_zip(p, b"\x80\x02ctorch\nHalfStorage\n}X\x04\x00\x00\x00nameX\x01\x00\x00\x00xsb.")
        with self.assertRaises(ToolError):
            torch_zip.TorchArchive(p)
        self.assertEqual(torch_zip.SAFE_GLOBALS[("torch", "HalfStorage")].name, "HalfStorage")

    def test_tensor_past_its_storage_refused(self):
        p = tmp("oob.pt")
        torch_zip.save_state_dict_zip(p, {"x": np.zeros((2, 3), np.float16)})
        with zipfile.ZipFile(p) as z:
            items = {n: z.read(n) for n in z.namelist()}
        pk = items["archive/data.pkl"]
        # claim a [2, 300] view of the 6-element storage
        items["archive/data.pkl"] = pk.replace(b"(K\x02K\x03t(K\x03K\x01t", b"(K\x02M\x2c\x01t(K\x03K\x01t")
        self.assertNotEqual(pk, items["archive/data.pkl"])
        with zipfile.ZipFile(p, "w") as z:
            for n, b in items.items():
                z.writestr(n, b)
        with self.assertRaises(torch_zip.TorchZipError) as cm:
            torch_zip.TorchArchive(p)
        self.assertIn("past its storage", str(cm.exception))

    def test_truncated_and_garbage_inputs_refused(self):
        good = tmp("good.pt")
        cfg = tiny_vit_cfg()
        torch_zip.save_state_dict_zip(good, small_state_dict(cfg))
        with open(good, "rb") as f:
            data = f.read()
        cases = {"truncated_half.pt": data[:len(data) // 2], "truncated_end.pt": data[:-30],
                 "garbage.pt": b"this is not a checkpoint", "legacy.pt": b"\x80\x02\x8a\x0a" + b"\x00" * 40,
                 "empty.pt": b""}
        for name, blob in cases.items():
            p = tmp(name)
            with open(p, "wb") as f:
                f.write(blob)
            r = run_tool("convert.py", p, tmp("x.safetensors"))
            self.assertEqual(r.returncode, 1, name + r.stderr)
            self.assertTrue(r.stderr.startswith("convert.py: error:"), name + r.stderr)
            self.assertNotIn("Traceback", r.stderr, name)
            self.assertFalse(os.path.exists(tmp("x.safetensors")))
        r = run_tool("convert.py", tmp("legacy.pt"), tmp("x.safetensors"))
        self.assertIn("legacy", r.stderr)


# ============================================================================ validation / inputs

class TestValidation(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.vit_cfg = tiny_vit_cfg()
        cls.rn_cfg = tiny_rn_cfg()
        cls.vit_sd = small_state_dict(cls.vit_cfg, 1)
        cls.rn_sd = small_state_dict(cls.rn_cfg, 2)

    def convert_sd(self, sd, name, **kw):
        p = tmp(name + ".pt")
        torch_zip.save_state_dict_zip(p, sd, **kw)
        out = tmp(name + ".safetensors")
        if os.path.exists(out):
            os.unlink(out)
        return run_tool("convert.py", p, out), out

    def test_round_trip_state_dicts(self):
        for sd, cfg, name in ((self.vit_sd, self.vit_cfg, "vit"), (self.rn_sd, self.rn_cfg, "rn")):
            rn = dict(sd)
            if name == "rn":  # BatchNorm counters are int64 and must be dropped
                rn["visual.bn1.num_batches_tracked"] = np.array(7, dtype=np.int64)
            r, out = self.convert_sd(rn, "ok-" + name)
            self.assertEqual(r.returncode, 0, r.stderr)
            t, meta = load_st(out)
            self.assertEqual(json.loads(meta["zeroclip.config"]), json.loads(json.dumps(cfg)))
            self.assertEqual(sorted(t), sorted(sd))
            for k, v in sd.items():
                self.assertTrue(np.array_equal(t[k][2].view(np.float16), v), k)
            self.assertEqual(len(meta["zeroclip.bpe_merges"].split("\n")), 1000 - 514)

    def test_wrapped_and_prefixed_state_dicts(self):
        ref, _ = self.convert_sd(self.vit_sd, "plain")
        self.assertEqual(ref.returncode, 0, ref.stderr)
        with open(tmp("plain.safetensors"), "rb") as f:
            want = f.read()
        for key in ("state_dict", "model"):
            pref = collections.OrderedDict(("module." + k, v) for k, v in self.vit_sd.items())
            r, out = self.convert_sd(pref, "wrapped-" + key, wrap_key=key)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(out, "rb") as f:
                self.assertEqual(f.read(), want, key)

    def test_bf16_and_f32_inputs(self):
        sd = collections.OrderedDict((k, v.astype(np.float32)) for k, v in self.vit_sd.items())
        r, out = self.convert_sd(sd, "in-mixed", bf16={"visual.proj", "token_embedding.weight"})
        self.assertEqual(r.returncode, 0, r.stderr)
        t, _ = load_st(out)
        via_bf16 = safetensors_io.bf16_bits_to_f32(safetensors_io.f32_to_bf16_bits(sd["visual.proj"]))
        self.assertTrue(np.array_equal(t["visual.proj"][2].view(np.float16), via_bf16.astype(np.float16)))
        self.assertFalse(np.array_equal(via_bf16, sd["visual.proj"]))  # bf16 really was lossy here
        self.assertTrue(np.array_equal(t["ln_final.weight"][2].view(np.float16), self.vit_sd["ln_final.weight"]))

    def test_missing_tensor_refused(self):
        for name in ("transformer.resblocks.0.mlp.c_fc.bias", "visual.transformer.resblocks.0.ln_1.weight",
                     "logit_scale"):
            sd = collections.OrderedDict((k, v) for k, v in self.vit_sd.items() if k != name)
            r, out = self.convert_sd(sd, "missing")
            self.assertEqual(r.returncode, 1)
            self.assertTrue(r.stderr.startswith("convert.py: error:"), r.stderr)
            self.assertIn("missing tensor '%s'" % name, r.stderr)
            self.assertFalse(os.path.exists(out))
        sd = collections.OrderedDict((k, v) for k, v in self.rn_sd.items() if k != "visual.layer2.0.bn2.running_var")
        r, _ = self.convert_sd(sd, "missing-rn")
        self.assertEqual(r.returncode, 1)
        self.assertIn("missing tensor 'visual.layer2.0.bn2.running_var' with expected shape [32]", r.stderr)

    def test_shape_mismatch_refused(self):
        sd = collections.OrderedDict(self.vit_sd)
        sd["transformer.resblocks.0.mlp.c_fc.weight"] = np.zeros((255, 64), np.float16)
        r, out = self.convert_sd(sd, "shape")
        self.assertEqual(r.returncode, 1)
        self.assertIn("tensor 'transformer.resblocks.0.mlp.c_fc.weight' has shape [255, 64], expected [256, 64]",
                      r.stderr)
        self.assertFalse(os.path.exists(out))
        sd = collections.OrderedDict(self.rn_sd)
        sd["visual.attnpool.k_proj.weight"] = np.zeros((512, 500), np.float16)
        r, _ = self.convert_sd(sd, "shape-rn")
        self.assertEqual(r.returncode, 1)
        self.assertIn("'visual.attnpool.k_proj.weight' has shape [512, 500], expected [512, 512]", r.stderr)

    def test_extra_and_integer_tensors_refused(self):
        sd = collections.OrderedDict(self.vit_sd)
        sd["visual.something_new"] = np.zeros(3, np.float16)
        r, _ = self.convert_sd(sd, "extra")
        self.assertEqual(r.returncode, 1)
        self.assertIn("visual.something_new", r.stderr)
        sd = collections.OrderedDict(self.vit_sd)
        sd["ln_final.bias"] = np.zeros(64, np.int32)
        r, _ = self.convert_sd(sd, "int")
        self.assertEqual(r.returncode, 1)
        self.assertIn("'ln_final.bias' has dtype int32", r.stderr)

    def test_overflow_refused(self):
        sd = collections.OrderedDict((k, v.astype(np.float32)) for k, v in self.vit_sd.items())
        sd["visual.proj"] = sd["visual.proj"].copy()
        sd["visual.proj"][0, 0] = 1e6
        r, _ = self.convert_sd(sd, "overflow")
        self.assertEqual(r.returncode, 1)
        self.assertIn("'visual.proj': value 1e+06 does not fit F16", r.stderr)

    def test_hf_folder_from_scratch(self):
        """Build an HF folder from an OpenAI state dict (forward mapping) and convert it back."""
        cfg = self.vit_cfg
        sd = self.vit_sd
        folder = tmp("hf-made")
        os.makedirs(folder, exist_ok=True)
        hf = collections.OrderedDict()
        rev = {}
        for tower, pre, hpre, layers in (("vision", "visual.transformer.resblocks.", "vision_model.encoder.layers.",
                                          cfg["vision"]["layers"]),
                                         ("text", "transformer.resblocks.", "text_model.encoder.layers.",
                                          cfg["text"]["layers"])):
            for i in range(layers):
                p, h = "%s%d." % (pre, i), "%s%d." % (hpre, i)
                for kind in ("weight", "bias"):
                    for x, part in zip("qkv", np.split(sd[p + "attn.in_proj_%s" % kind], 3)):
                        hf[h + "self_attn.%s_proj.%s" % (x, kind)] = part
                for a, b in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"),
                             ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
                    for kind in ("weight", "bias"):
                        rev[p + a + "." + kind] = h + b + "." + kind
        rev.update({"token_embedding.weight": "text_model.embeddings.token_embedding.weight",
                    "positional_embedding": "text_model.embeddings.position_embedding.weight",
                    "ln_final.weight": "text_model.final_layer_norm.weight",
                    "ln_final.bias": "text_model.final_layer_norm.bias",
                    "visual.class_embedding": "vision_model.embeddings.class_embedding",
                    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
                    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
                    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
                    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
                    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
                    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
                    "logit_scale": "logit_scale"})
        for a, b in rev.items():
            hf[b] = sd[a]
        hf["visual_projection.weight"] = np.ascontiguousarray(sd["visual.proj"].T)
        hf["text_projection.weight"] = np.ascontiguousarray(sd["text_projection"].T)
        hf["text_model.embeddings.position_ids"] = np.arange(77, dtype=np.int64)[None]
        v, t = cfg["vision"], cfg["text"]
        config = {"model_type": "clip", "projection_dim": cfg["embed_dim"],
                  "text_config": {"hidden_size": t["width"], "num_hidden_layers": t["layers"],
                                  "num_attention_heads": t["heads"], "max_position_embeddings": 77,
                                  "vocab_size": t["vocab_size"], "hidden_act": "quick_gelu"},
                  "vision_config": {"hidden_size": v["width"], "num_hidden_layers": v["layers"],
                                    "num_attention_heads": v["heads"], "patch_size": v["patch_size"],
                                    "image_size": v["image_size"], "hidden_act": "quick_gelu"}}
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(config, f)
        merges = clip_arch.load_openai_merges(sources.DEFAULT_BPE, 1000 - 514)
        with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
        # pytorch_model.bin flavour (torch zip) first, then model.safetensors
        torch_zip.save_state_dict_zip(os.path.join(folder, "pytorch_model.bin"), hf)
        r = run_tool("convert.py", folder, tmp("hf-made-bin.safetensors"))
        self.assertEqual(r.returncode, 0, r.stderr)
        os.unlink(os.path.join(folder, "pytorch_model.bin"))
        safetensors_io.save(os.path.join(folder, "model.safetensors"), hf, {"format": "pt"})
        r = run_tool("convert.py", folder, tmp("hf-made.safetensors"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("no vocab.json", r.stderr)
        r2, direct = self.convert_sd(sd, "hf-made-direct")
        self.assertEqual(r2.returncode, 0, r2.stderr)
        for p in ("hf-made-bin.safetensors", "hf-made.safetensors"):
            with open(tmp(p), "rb") as a, open(direct, "rb") as b:
                self.assertEqual(a.read(), b.read(), p)
        # a non-standard vocab.json is stored as zeroclip.bpe_vocab
        vocab = clip_arch.standard_vocab(merges)
        vocab["<|startoftext|>"], vocab["<|endoftext|>"] = vocab["<|endoftext|>"], vocab["<|startoftext|>"]
        with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump(vocab, f, ensure_ascii=False)
        r = run_tool("convert.py", folder, tmp("hf-vocab.safetensors"))
        self.assertEqual(r.returncode, 0, r.stderr)
        _, meta = load_st(tmp("hf-vocab.safetensors"))
        self.assertEqual(json.loads(meta["zeroclip.bpe_vocab"]), vocab)
        # an unknown HF tensor is refused by name
        hf["vision_model.extra.weight"] = np.zeros(2, np.float16)
        safetensors_io.save(os.path.join(folder, "model.safetensors"), hf, {"format": "pt"})
        r = run_tool("convert.py", folder, tmp("hf-bad.safetensors"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("vision_model.extra.weight", r.stderr)

    def test_usage_errors(self):
        r = run_cli("convert.py")
        self.assertEqual(r.returncode, 2)
        self.assertIn("usage:", r.stderr)
        r = run_tool("convert.py", "a", "b", "--dtype", "f8")
        self.assertEqual(r.returncode, 2)
        r = run_cli("convert.py", tmp("does-not-exist.pt"), tmp("y.safetensors"))
        self.assertEqual(r.returncode, 1)
        self.assertTrue(r.stderr.startswith("convert.py: error:"), r.stderr)
        self.assertIn("no such file", r.stderr)
        r = run_tool("make_random.py", "--arch", "ViT-H/14", tmp("z.safetensors"))
        self.assertEqual(r.returncode, 2)
        r = run_tool("make_random.py", "--arch", "RN50")
        self.assertEqual(r.returncode, 2)
        r = run_tool("info.py")
        self.assertEqual(r.returncode, 2)

    def test_missing_numpy_message(self):
        for script in ("convert.py", "info.py", "make_random.py"):
            code = ("import sys, runpy; sys.modules['numpy'] = None; sys.argv = [%r, 'a', 'b']; "
                    "runpy.run_path(%r, run_name='__main__')" % (script, os.path.join(TOOLS, script)))
            r = subprocess.run([PY, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               universal_newlines=True, cwd=REPO)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("%s: error: numpy is required" % script, r.stderr)
            self.assertIn("/usr/bin/python3", r.stderr)
            self.assertIn("python3-numpy", r.stderr)


# ============================================================================ make_random

OFFICIAL_PARAMS = {  # parameter counts of the released models (BatchNorm running stats excluded)
    "RN50": 102007137, "RN101": 119688033, "RN50x4": 178300601, "RN50x16": 290979217, "RN50x64": 623258305,
    "ViT-B/32": 151277313, "ViT-B/16": 149620737, "ViT-L/14": 427616513, "ViT-L/14@336px": 427944193,
}


class TestMakeRandom(unittest.TestCase):

    def test_official_shapes_and_inference_round_trip(self):
        for arch, n in OFFICIAL_PARAMS.items():
            cfg = make_random.build_config(arch)
            shapes = clip_arch.expected_shapes(cfg)
            params = sum(int(math.prod(s)) for k, s in shapes.items()
                         if not k.endswith((".running_mean", ".running_var")))
            self.assertEqual(params, n, arch)
            # build_model-style inference from the shapes gives the same config back
            self.assertEqual(clip_arch.infer_config(shapes), cfg, arch)
            self.assertEqual(clip_arch.official_name(cfg), arch)

    def test_rn50_dry_run(self):
        r = run_tool("make_random.py", "--arch", "RN50", "--dry-run")
        self.assertEqual(r.returncode, 0, r.stderr)
        d = json.loads(r.stdout)
        t = {k: tuple(v) for k, v in d["tensors"].items()}
        self.assertEqual(d["config"]["vision"], {"type": "resnet", "width": 64, "layers": [3, 4, 6, 3],
                                                 "heads": 32, "image_size": 224})
        self.assertEqual(d["config"]["embed_dim"], 1024)
        self.assertEqual(d["config"]["text"], {"width": 512, "layers": 12, "heads": 8, "context_length": 77,
                                               "vocab_size": 49408})
        expect = {"visual.conv1.weight": (32, 3, 3, 3), "visual.conv3.weight": (64, 32, 3, 3),
                  "visual.layer1.0.downsample.0.weight": (256, 64, 1, 1),
                  "visual.layer2.0.downsample.0.weight": (512, 256, 1, 1),
                  "visual.layer4.2.conv3.weight": (2048, 512, 1, 1),
                  "visual.attnpool.positional_embedding": (50, 2048),
                  "visual.attnpool.c_proj.weight": (1024, 2048),
                  "text_projection": (512, 1024), "token_embedding.weight": (49408, 512), "logit_scale": ()}
        for k, s in expect.items():
            self.assertEqual(t[k], s, k)
        self.assertNotIn("visual.layer1.1.downsample.0.weight", t)
        self.assertNotIn("visual.layer4.3.conv1.weight", t)

    def test_vit_b32_real_write_and_info(self):
        out = tmp("b32.safetensors")
        r = run_cli("make_random.py", "--arch", "ViT-B/32", "--seed", "3", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        try:
            r = run_tool("info.py", "--json", out)
            self.assertEqual(r.returncode, 0, r.stderr)
            d = json.loads(r.stdout)
            self.assertEqual(d["official_model"], "ViT-B/32")
            self.assertEqual(d["parameters"], 151277313)
            self.assertEqual(d["dtypes"], {"float16": 302})
            self.assertEqual(d["config"]["vision"], {"type": "vit", "width": 768, "layers": 12, "heads": 12,
                                                     "patch_size": 32, "image_size": 224})
            self.assertEqual(d["bpe_merges"], 48894)
            f = safetensors_io.SafetensorsFile(out)
            self.assertEqual(f.shape("visual.positional_embedding"), (50, 768))
            self.assertEqual(f.shape("visual.conv1.weight"), (768, 3, 32, 32))
            self.assertEqual(f.shape("visual.proj"), (768, 512))
            for k in ("visual.transformer.resblocks.11.mlp.c_fc.weight", "token_embedding.weight", "visual.proj"):
                x = f.get(k).astype(np.float32)
                self.assertTrue(np.isfinite(x).all())
                self.assertGreater(x.std(), 0)
            ln = f.get("visual.ln_post.weight").astype(np.float32)
            self.assertTrue(0.7 < ln.mean() < 1.3)
        finally:
            os.unlink(out)

    def test_tiny_custom_shapes_dtypes_and_seed(self):
        args = ["--tiny", "--vision-width", "192", "--vision-layers", "3", "--patch", "8", "--image-size", "48",
                "--text-width", "128", "--text-layers", "1", "--embed-dim", "24"]
        a, b, c = tmp("t-a.safetensors"), tmp("t-b.safetensors"), tmp("t-c.safetensors")
        for path, seed in ((a, "1"), (b, "1"), (c, "2")):
            r = run_tool("make_random.py", *(args + ["--seed", seed, path]))
            self.assertEqual(r.returncode, 0, r.stderr)
        with open(a, "rb") as fa, open(b, "rb") as fb, open(c, "rb") as fc:
            da, db, dc = fa.read(), fb.read(), fc.read()
        self.assertEqual(da, db)
        self.assertNotEqual(da, dc)
        d = info.describe(a)
        self.assertEqual(d["config"]["vision"], {"type": "vit", "width": 192, "layers": 3, "heads": 3,
                                                 "patch_size": 8, "image_size": 48})
        self.assertEqual(d["config"]["text"]["heads"], 2)
        self.assertEqual(d["config"]["embed_dim"], 24)
        f16, _ = load_st(a)
        for dt in ("f32", "bf16"):
            p = tmp("t-%s.safetensors" % dt)
            r = run_tool("make_random.py", *(args + ["--seed", "1", "--dtype", dt, p]))
            self.assertEqual(r.returncode, 0, r.stderr)
            t, _ = load_st(p)
            self.assertEqual(list(t), list(f16))
            self.assertTrue(all(v[0] == dt.upper() for v in t.values()))
            x = t["visual.transformer.resblocks.2.attn.in_proj_weight"][2]
            x = x.view(np.float32) if dt == "f32" else safetensors_io.bf16_bits_to_f32(x)
            y = f16["visual.transformer.resblocks.2.attn.in_proj_weight"][2].view(np.float16).astype(np.float32)
            self.assertLess(float(np.max(np.abs(x - y))), 0.01)
            r = run_tool("info.py", p)
            self.assertEqual(r.returncode, 0, r.stderr)

    def test_tiny_resnet_and_info(self):
        p = tmp("t-rn.safetensors")
        r = run_tool("make_random.py", "--tiny", "--resnet-layers", "2,1,1,1", "--vision-width", "32", p)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run_tool("info.py", "--json", p)
        self.assertEqual(r.returncode, 0, r.stderr)
        d = json.loads(r.stdout)
        self.assertEqual(d["config"]["vision"], {"type": "resnet", "width": 32, "layers": [2, 1, 1, 1],
                                                 "heads": 16, "image_size": 64})
        f = safetensors_io.SafetensorsFile(p)
        rv = f.get("visual.layer1.1.bn2.running_var").astype(np.float32)
        self.assertTrue((rv > 0).all())
        self.assertIn("visual.layer1.1.conv1.weight", f)
        self.assertNotIn("visual.layer1.1.downsample.0.weight", f)

    def test_bad_overrides(self):
        r = run_tool("make_random.py", "--tiny", "--vision-width", "32", "--dry-run")
        self.assertEqual(r.returncode, 1)
        self.assertIn("0 heads", r.stderr)
        r = run_tool("make_random.py", "--tiny", "--resnet-layers", "1,1,1,1", "--patch", "8", "--dry-run")
        self.assertEqual(r.returncode, 1)
        r = run_tool("make_random.py", "--tiny", "--image-size", "40", "--dry-run")
        self.assertEqual(r.returncode, 1)
        self.assertIn("not a multiple of patch size", r.stderr)


# ============================================================================ optional: torch

try:
    import importlib.util
    HAVE_TORCH = importlib.util.find_spec("torch") is not None  # imported only by the test itself
except (ImportError, ValueError):
    HAVE_TORCH = False


@require(HAVE_TORCH, "torch not installed: skipping the torch.load cross-check",
         required_in_ci=os.environ.get("ZEROCLIP_WITH_TORCH") == "1")
class TestAgainstTorch(unittest.TestCase):

    def test_reader_matches_torch_load(self):
        import torch
        base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
        sd = collections.OrderedDict([
            ("transposed", base.t()), ("slice", base[1:3, 2:5]), ("bf16", base.to(torch.bfloat16) / 7),
            ("half0d", torch.tensor(3.5, dtype=torch.float16)),
            ("param", torch.nn.Parameter(torch.ones(2, 3, dtype=torch.float64))),
            ("ints", torch.tensor([1, 2], dtype=torch.int64)), ("empty", torch.zeros(0, 3))])
        p = tmp("torch-saved.pt")
        torch.save({"epoch": 3, "state_dict": collections.OrderedDict(("module." + k, v) for k, v in sd.items())}, p)
        arch, got, kind, desc = torch_zip.load_state_dict(p)
        self.assertIn("'module.' prefix stripped", desc)
        for k, v in sd.items():
            want = v.detach().float().numpy() if v.dtype == torch.bfloat16 else v.detach().numpy()
            self.assertTrue(np.array_equal(got[k].numpy(), want), k)
        arch.close()
        # our writer produces files torch.load reads
        q = tmp("ours.pt")
        arrs = {"a": np.arange(6, dtype=np.float16).reshape(2, 3), "b": np.float32(2.5) * np.ones(()),
                "c": np.arange(70000, dtype=np.int64)}
        torch_zip.save_state_dict_zip(q, arrs)
        back = torch.load(q)
        for k, v in arrs.items():
            self.assertTrue(np.array_equal(back[k].numpy(), v), k)
        if HAVE_FIXTURES:
            for rel in ("tiny-vit/openai_state_dict.pt", "tiny-rn/openai_state_dict.pt"):
                ref = torch.load(os.path.join(MODELS, rel), map_location="cpu")
                arch, got, _, _ = torch_zip.load_state_dict(os.path.join(MODELS, rel))
                self.assertEqual(list(ref), list(got))
                for k, v in ref.items():
                    self.assertTrue(np.array_equal(got[k].numpy(), v.numpy()), k)
                arch.close()


if __name__ == "__main__":
    unittest.main()
