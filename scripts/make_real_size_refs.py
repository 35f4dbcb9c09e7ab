#!/usr/bin/python3
"""float64 reference outputs of CLIP at the real ViT-B/32, ViT-B/16 and RN50 sizes, for
tests/unit/test_real_size.cpp (and the CUDA tests).

The weights are random, made by weights_tools/make_random.py from a fixed seed; they are too large
to commit, so the tests regenerate them (the `weights` command below, cached in the build folder)
and check them against per-tensor digests recorded here. The references come from the official
OpenAI implementation (clip/model.py of github.com/openai/CLIP, the commit the shared fixtures
use), run by PyTorch in float64, on two fixture photos preprocessed by Pillow
(images/preprocessed/NAME_224.npy, normalised in float32 as torchvision does) and three prompts
tokenized by the official tokenizer (tokenizer/public.jsonl). Nothing here uses zeroclip's C++ code.

    # once, to (re)make the committed references (needs Debian's python3-torch and a checkout of
    # openai/CLIP at d05afc436d78f1c48dc0dbf8e5980a9d471f35f6):
    /usr/bin/python3 scripts/make_real_size_refs.py refs --clip-repo /path/to/CLIP \\
        --fixtures ../shared/fixtures
    # by the tests: the weights of one model, made from the recorded seed and checked
    /usr/bin/python3 scripts/make_real_size_refs.py weights --model vit-b32 --out DIR/vit-b32.safetensors
    # what examples/zero_shot_example.cpp must print (tests/data/zero_shot_example.json), from the
    # official code in float64 on tiny-vit (needs python3-torch and python3-regex):
    /usr/bin/python3 scripts/make_real_size_refs.py example --clip-repo /path/to/CLIP

Output of `refs` (tests/data/real_size/): MODEL.npz per model with `text_tokens` int32 [3,77],
`image_embeds_f64` [2,D], `text_embeds_f64` [3,D], `logits_per_image_f64` [2,3], `probs_f64` [2,3], `logit_scale_exp_f64` [1]; and refs.json with the
seed, the images, the prompts, each model's per-tensor digests and the measured error of PyTorch's
own float32 against the float64 reference (the headroom of the tests' limits at these sizes).
Exit status: 0 ok, 1 error (a message says what), 3 the regenerated weights differ from the
recorded digests (make_random.py or numpy changed: rerun `refs`).
"""
import argparse
import hashlib
import importlib.util
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data", "real_size")
MAKE_RANDOM = os.path.join(ROOT, "weights_tools", "make_random.py")
SEED = 2026
MODELS = {"vit-b32": "ViT-B/32", "vit-b16": "ViT-B/16", "rn50": "RN50"}
IMAGES = ["chelsea", "rocket"]
PROMPT_LINES = [0, 3, 103]  # 'a photo of a cat.', 'a photo of a rocket.', 82 tokens cut at 77
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
ST_DTYPES = {"F16": np.float16, "F32": np.float32}


class Failure(Exception):
    pass


# ----------------------------------------------------------------------------- the weights

def read_safetensors(path):
    """{name: (dtype, shape, raw bytes)} of a safetensors file (the format is simple enough to read
    here without zeroclip's or weights_tools' readers)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    return {name: (info["dtype"], info["shape"], data[info["data_offsets"][0]:info["data_offsets"][1]])
            for name, info in header.items() if name != "__metadata__"}


def to_float32(tensors):
    return {name: np.frombuffer(raw, dtype=ST_DTYPES[dtype]).reshape(shape).astype(np.float32)
            for name, (dtype, shape, raw) in tensors.items()}


def digests(tensors):
    """name -> sha256 (first 16 hex digits) of the tensor's dtype, shape and stored bytes: identifies
    the weights whatever the file's metadata or tensor order."""
    return {name: hashlib.sha256(("%s %s " % (dtype, shape)).encode() + raw).hexdigest()[:16]
            for name, (dtype, shape, raw) in sorted(tensors.items())}


def make_weights(model, out):
    """Writes MODEL's random weights to `out` (atomically: a temp file renamed when complete)."""
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".make_random_", suffix=".safetensors", dir=folder)
    os.close(fd)
    try:
        subprocess.run([sys.executable, MAKE_RANDOM, "-q", "--arch", MODELS[model], "--seed", str(SEED), tmp],
                       check=True)
        return tmp
    except BaseException:
        os.unlink(tmp)
        raise


def weights_command(model, out):
    """The tests' set-up: `out` holds MODEL's weights with the recorded digests (made if missing).
    A stamp file beside it (the digests' hash, the file's size and time) spares re-reading it on
    every run."""
    recorded = json.load(open(os.path.join(DATA, "refs.json")))["models"][model]["weight_digests"]
    stamp_path = out + ".verified"

    def stamp():
        st = os.stat(out)
        key = hashlib.sha256(json.dumps(recorded, sort_keys=True).encode()).hexdigest()
        return "%s %d %d\n" % (key, st.st_size, st.st_mtime_ns)

    if os.path.exists(out) and os.path.exists(stamp_path):
        with open(stamp_path) as f:
            if f.read() == stamp():
                return 0
    if os.path.exists(out) and digests(read_safetensors(out)) == recorded:
        with open(stamp_path, "w") as f:
            f.write(stamp())
        return 0
    tmp = make_weights(model, out)
    try:
        got = digests(read_safetensors(tmp))
        if got != recorded:
            differ = sorted(k for k in set(got) | set(recorded) if got.get(k) != recorded.get(k))
            print("make_real_size_refs: the weights weights_tools/make_random.py made for %s (seed %d) differ "
                  "from those tests/data/real_size was computed from (%d tensors, e.g. '%s'): make_random.py or "
                  "numpy changed; rerun `scripts/make_real_size_refs.py refs`" % (model, SEED, len(differ), differ[0]),
                  file=sys.stderr)
            os.unlink(tmp)
            return 3
        os.replace(tmp, out)
        with open(stamp_path, "w") as f:
            f.write(stamp())
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return 0


# ----------------------------------------------------------------------------- the references

def load_official_model_py(clip_repo):
    path = os.path.join(clip_repo, "clip", "model.py")
    if not os.path.exists(path):
        raise Failure("%s not found: --clip-repo must be a checkout of github.com/openai/CLIP" % path)
    spec = importlib.util.spec_from_file_location("openai_clip_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def official_model(clip_model, tensors):
    """clip.model.CLIP built by the official build_model() from the state dict (BatchNorm's
    num_batches_tracked, which zeroclip files do not carry, are added as build_model expects)."""
    import torch
    state = {k: torch.from_numpy(v.copy()) for k, v in tensors.items()}
    for name in list(state):
        if name.endswith(".running_var"):
            state[name[:-len("running_var")] + "num_batches_tracked"] = torch.tensor(0, dtype=torch.int64)
    model = clip_model.build_model(state).float().eval()  # build_model halves the weights: undo (exact)
    for name, value in model.state_dict().items():
        if name in tensors and not np.array_equal(value.numpy().astype(np.float32), tensors[name]):
            raise Failure("build_model changed tensor %s" % name)
    return model


def pixels(fixtures):
    """[N,3,224,224] float32: the fixture crops normalised as torchvision does (ToTensor: u8/255 in
    float32; Normalize: (x - mean) / std in float32)."""
    out = []
    for name in IMAGES:
        u8 = np.load(os.path.join(fixtures, "images", "preprocessed", name + "_224.npy"))
        x = u8.astype(np.float32) / np.float32(255)
        x = (x - MEAN) / STD
        out.append(x.transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(out), dtype=np.float32)


def check_normalisation(fixtures):
    """The normalisation above reproduces the fixtures' pixel_values_64.npz bit for bit (as the
    fixtures README says torchvision's does) from the 64-pixel crops."""
    npz = np.load(os.path.join(fixtures, "images", "pixel_values_64.npz"))
    for i, name in enumerate(npz["names"]):
        u8 = np.load(os.path.join(fixtures, "images", "preprocessed", os.path.splitext(str(name))[0] + "_64.npy"))
        x = ((u8.astype(np.float32) / np.float32(255) - MEAN) / STD).transpose(2, 0, 1)
        if not np.array_equal(x, npz["pixel_values"][i]):
            raise Failure("normalising %s_64.npy does not give pixel_values_64.npz" % name)


def prompts(fixtures):
    lines = open(os.path.join(fixtures, "tokenizer", "public.jsonl"), encoding="utf-8").read().splitlines()
    rows = [json.loads(lines[i]) for i in PROMPT_LINES]
    return [r["text"] for r in rows], np.array([r["ids"] for r in rows], dtype=np.int32)


def run(model, image, tokens):
    import torch
    sys.path.insert(0, ROOT)
    from weights_tools.train_toy import clip_scores
    with torch.no_grad():
        out = clip_scores(model, image, tokens)
        out["probs"] = out["logits_per_image"].softmax(dim=-1)
    scale = out.pop("logit_scale_exp")
    return dict({k: v.numpy() for k, v in out.items()}, logit_scale_exp=np.array([scale.item()]))


def rel(a, b):
    return float(np.max(np.abs(a.astype(np.float64) - b)) / max(1.0, np.max(np.abs(b))))


def refs_command(clip_repo, fixtures):
    import torch
    torch.set_num_threads(os.cpu_count() or 1)
    clip_model = load_official_model_py(clip_repo)

    # float64 needs LayerNorm in float64: the official class computes in float32 whatever its input
    # (for fp16 checkpoints); the fixtures' float64 references keep it in float64 the same way.
    float32_layer_norm = clip_model.LayerNorm.forward

    def layer_norm_in_input_dtype(self, x):
        return torch.nn.LayerNorm.forward(self, x)

    check_normalisation(fixtures)
    px = pixels(fixtures)
    texts, ids = prompts(fixtures)
    summary = {"seed": SEED, "make_random": "weights_tools/make_random.py --arch NAME --seed %d (F16)" % SEED,
               "official_code": "github.com/openai/CLIP clip/model.py, commit d05afc436d78f1c48dc0dbf8e5980a9d471f35f6",
               "torch": torch.__version__, "numpy": np.__version__,
               "images": ["images/preprocessed/%s_224.npy" % n for n in IMAGES], "prompts": texts, "models": {}}
    os.makedirs(DATA, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for model_name in MODELS:
            path = make_weights(model_name, os.path.join(tmp, model_name + ".safetensors"))
            stored = read_safetensors(path)
            os.unlink(path)
            tensors = to_float32(stored)
            model = official_model(clip_model, tensors)
            clip_model.LayerNorm.forward = float32_layer_norm
            f32 = run(model, torch.from_numpy(px), torch.from_numpy(ids.astype(np.int64)))
            clip_model.LayerNorm.forward = layer_norm_in_input_dtype
            model = model.double()
            f64 = run(model, torch.from_numpy(px).double(), torch.from_numpy(ids.astype(np.int64)))
            clip_model.LayerNorm.forward = float32_layer_norm
            arrays = {"text_tokens": ids}
            arrays.update({k + "_f64": v.astype(np.float64) for k, v in f64.items() if not k.endswith("_norm")})
            np.savez(os.path.join(DATA, model_name + ".npz"), **arrays)
            summary["models"][model_name] = {
                "arch": MODELS[model_name],
                "embed_dim": int(f64["image_embeds"].shape[1]),
                "pytorch_float32_error": {
                    "image_embeds_relative": rel(f32["image_embeds"], f64["image_embeds"]),
                    "text_embeds_relative": rel(f32["text_embeds"], f64["text_embeds"]),
                    "logits_abs": float(np.max(np.abs(f32["logits_per_image"] - f64["logits_per_image"]))),
                    "probs_abs": float(np.max(np.abs(f32["probs"] - f64["probs"]))),
                },
                "probs_f64": f64["probs"].tolist(),
                "weight_digests": digests(stored),
            }
            print("%s: float32 vs float64 %s" % (model_name, summary["models"][model_name]["pytorch_float32_error"]))
    with open(os.path.join(DATA, "refs.json"), "w") as f:
        json.dump(summary, f, indent=1, sort_keys=True)
        f.write("\n")
    return 0


def example_command(clip_repo, fixtures):
    """tests/data/zero_shot_example.json: what examples/zero_shot_example.cpp must print for
    tiny-vit on chelsea.png and rocket.jpg (its labels with its template, top 2), from the official
    code in float64 on the fixtures' pixel_values_64.npz and the official tokenizer."""
    import torch
    import types
    clip_model = load_official_model_py(clip_repo)
    clip_model.LayerNorm.forward = lambda self, x: torch.nn.LayerNorm.forward(self, x)
    sys.modules.setdefault("ftfy", types.SimpleNamespace(fix_text=lambda t: t))  # as the fixtures do
    spec = importlib.util.spec_from_file_location("openai_simple_tokenizer",
                                                  os.path.join(clip_repo, "clip", "simple_tokenizer.py"))
    tok_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tok_module)
    tokenizer = tok_module.SimpleTokenizer(os.path.join(fixtures, "tokenizer", "bpe_simple_vocab_16e6.txt.gz"))
    labels, template = ["red circle", "blue square", "green triangle"], "A photo of a {}."
    ids = np.zeros((len(labels), 77), dtype=np.int64)
    for i, label in enumerate(labels):
        t = [49406] + tokenizer.encode(template.format(label)) + [49407]
        ids[i, :len(t)] = t
    state = torch.load(os.path.join(fixtures, "models", "tiny-vit", "openai_state_dict.pt"), map_location="cpu")
    model = clip_model.build_model(state).double().eval()
    npz = np.load(os.path.join(fixtures, "images", "pixel_values_64.npz"))
    names = [str(n) for n in npz["names"]]
    images = ["chelsea.png", "rocket.jpg"]
    px = torch.from_numpy(np.stack([npz["pixel_values"][names.index(n)] for n in images])).double()
    f64 = run(model, px, torch.from_numpy(ids))
    out = {"model": "models/tiny-vit/hf", "labels": labels, "template": template, "top_k": 2,
           "official_code": "github.com/openai/CLIP, commit d05afc436d78f1c48dc0dbf8e5980a9d471f35f6, float64",
           "images": []}
    for i, name in enumerate(images):
        order = np.argsort(-f64["probs"][i])
        out["images"].append({"file": "images/" + name, "probabilities": f64["probs"][i].tolist(),
                              "top": [labels[j] for j in order[:2]]})
    with open(os.path.join(ROOT, "tests", "data", "zero_shot_example.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(json.dumps(out["images"]))
    return 0


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("weights", help="make one model's weights (cached; checked against the digests)")
    w.add_argument("--model", required=True, choices=sorted(MODELS))
    w.add_argument("--out", required=True)
    r = sub.add_parser("refs", help="recompute the committed references (needs PyTorch)")
    r.add_argument("--clip-repo", required=True, help="a checkout of github.com/openai/CLIP")
    r.add_argument("--fixtures", default=os.path.join(ROOT, "..", "shared", "fixtures"))
    e = sub.add_parser("example", help="recompute tests/data/zero_shot_example.json (needs PyTorch)")
    e.add_argument("--clip-repo", required=True, help="a checkout of github.com/openai/CLIP")
    e.add_argument("--fixtures", default=os.path.join(ROOT, "..", "shared", "fixtures"))
    args = p.parse_args(argv)
    try:
        if args.command == "weights":
            return weights_command(args.model, args.out)
        if args.command == "example":
            return example_command(args.clip_repo, args.fixtures)
        return refs_command(args.clip_repo, args.fixtures)
    except (Failure, OSError, subprocess.CalledProcessError) as e:
        print("make_real_size_refs: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
