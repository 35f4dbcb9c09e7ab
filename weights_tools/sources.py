"""Open any supported CLIP checkpoint as {openai_name: lazy tensor} plus what is needed to write
the zeroclip format (config, tokenizer). Used by convert.py and info.py.

Supported inputs:
  * OpenAI TorchScript archive (.pt as released)                      kind 'torchscript'
  * torch.save zip of a state dict, or of a dict wrapping one under
    'state_dict' / 'model' (open_clip / training checkpoints)          kind 'torch_state_dict'
  * Hugging Face CLIP folder: config.json + model.safetensors or
    pytorch_model.bin (sharded *.index.json too), vocab.json, merges.txt kind 'hf'
  * a safetensors file with OpenAI names (e.g. open_clip's)           kind 'safetensors'
  * a zeroclip file written by convert.py / make_random.py            kind 'zeroclip'
"""

import collections
import json
import os
import zipfile

import numpy as np

try:
    from . import clip_arch
    from . import safetensors_io
    from . import torch_zip
    from ._common import ToolError
except ImportError:
    import clip_arch
    import safetensors_io
    import torch_zip
    from _common import ToolError

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_BPE = os.path.normpath(os.path.join(HERE, "..", "data", "bpe_simple_vocab_16e6.txt.gz"))

ST_TO_NAME = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
              "I32": "int32", "I16": "int16", "I8": "int8", "U64": "uint64", "U32": "uint32", "U16": "uint16",
              "U8": "uint8", "BOOL": "bool"}
FLOAT_NAMES = ("float64", "float32", "float16", "bfloat16")


# ----------------------------------------------------------------------------- lazy tensors

class STTensor:
    def __init__(self, f, name):
        self.f, self.name = f, name
        self.shape = tuple(f.shape(name))
        self.dtype = ST_TO_NAME[f.dtype(name)]

    def numpy(self):
        return self.f.get(self.name)


class Transposed:
    def __init__(self, t):
        if len(t.shape) != 2:
            raise ToolError("cannot transpose a tensor of shape %s (expected 2-D)" % list(t.shape))
        self.t = t
        self.shape = (t.shape[1], t.shape[0])
        self.dtype = t.dtype

    def numpy(self):
        return np.ascontiguousarray(self.t.numpy().T)


class Concat:
    def __init__(self, parts, names):
        shapes = [p.shape for p in parts]
        if any(len(s) < 1 or s[1:] != shapes[0][1:] for s in shapes) or len({p.dtype for p in parts}) != 1:
            raise ToolError("cannot concatenate %s: shapes %s / dtypes %s differ"
                            % (", ".join(names), [list(s) for s in shapes], [p.dtype for p in parts]))
        self.parts = parts
        self.shape = (sum(s[0] for s in shapes),) + tuple(shapes[0][1:])
        self.dtype = parts[0].dtype

    def numpy(self):
        return np.concatenate([p.numpy() for p in self.parts], axis=0)


class Reshaped:
    def __init__(self, t, shape):
        self.t, self.shape, self.dtype = t, tuple(shape), t.dtype

    def numpy(self):
        return self.t.numpy().reshape(self.shape)


# ----------------------------------------------------------------------------- the source object

class Source:
    """A checkpoint opened for reading.

    tensors: OrderedDict openai_name -> lazy tensor (.shape, .dtype name, .numpy())
    skipped: names present in the checkpoint that the format never stores
    config:  the zeroclip config (OrderedDict)
    tokenizer: dict of zeroclip.bpe_* metadata, or None when not resolved
    """

    def __init__(self, path, kind):
        self.path = path
        self.kind = kind
        self.description = kind
        self.tensors = collections.OrderedDict()
        self.skipped = []
        self.config = None
        self.tokenizer = None
        self.notes = []
        self.files = []  # files that hold the weights
        self.closers = []
        self.source_dtypes = collections.Counter()

    @property
    def file_size(self):
        return sum(os.path.getsize(f) for f in self.files)

    def close(self):
        for c in self.closers:
            c()


def _is_safetensors(path):
    try:
        safetensors_io.SafetensorsFile(path)
        return True
    except ToolError:
        return False


def _looks_hf(names):
    return any(n.startswith(("text_model.", "vision_model.")) for n in names)


def _parse_triplet(text, what):
    try:
        vals = [float(x) for x in text.split(",")]
    except ValueError:
        vals = []
    if len(vals) != 3:
        raise ToolError("%s must be three comma-separated numbers (got %r)" % (what, text))
    return vals


def open_source(path, hidden_act=None, image_mean=None, image_std=None, bpe=None, want_tokenizer=True):
    """Open ``path`` and derive config and tokenizer. Raises ToolError with a clear message."""
    if not os.path.exists(path):
        raise ToolError("%s: no such file or directory" % path)
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "config.json")):
            src = _open_hf_folder(path)
        else:
            raise ToolError("%s: a directory input must be a Hugging Face CLIP folder with config.json" % path)
    elif zipfile.is_zipfile(path):
        src = _open_torch(path)
    elif _is_safetensors(path):
        src = _open_safetensors(path)
    else:
        # Let the torch reader produce its specific message (legacy format, truncated zip, ...).
        try:
            torch_zip.TorchArchive(path)
        except ToolError as e:
            if "legacy" in str(e) or "zip" in str(e):
                raise
        raise ToolError("%s: not a recognised checkpoint (expected a PyTorch .pt/.bin zip, a safetensors file "
                        "or a Hugging Face CLIP folder)" % path)
    try:
        _finish(src, hidden_act, image_mean, image_std, bpe, want_tokenizer)
    except BaseException:
        src.close()
        raise
    return src


def _add_tensors(src, named):
    """Fill src.tensors from {name: lazy tensor}, separating skipped buffers."""
    for name, t in named.items():
        src.source_dtypes[t.dtype] += 1
        if clip_arch.is_skipped(name):
            src.skipped.append(name)
        else:
            src.tensors[name] = t


def _open_torch(path):
    arch, sd, kind, desc = torch_zip.load_state_dict(path)
    names = list(sd.keys())
    if _looks_hf(names):
        folder = os.path.dirname(os.path.abspath(path))
        if os.path.exists(os.path.join(folder, "config.json")):
            arch.close()
            return _open_hf_folder(folder, weights=[path])
        raise ToolError("%s: holds Hugging Face CLIP tensor names; convert its folder (with config.json) instead" % path)
    src = Source(path, kind)
    src.description = desc
    src.files = [path]
    src.closers.append(arch.close)
    _add_tensors(src, sd)
    return src


def _open_safetensors(path):
    f = safetensors_io.SafetensorsFile(path)
    names = f.keys()
    if "zeroclip.config" in f.metadata:
        src = Source(path, "zeroclip")
        src.description = "zeroclip file (format version %s)" % f.metadata.get("zeroclip.format_version", "?")
        src.metadata = f.metadata
    elif _looks_hf(names):
        folder = os.path.dirname(os.path.abspath(path))
        if os.path.exists(os.path.join(folder, "config.json")):
            return _open_hf_folder(folder, weights=[path])
        raise ToolError("%s: holds Hugging Face CLIP tensor names; convert its folder (with config.json) instead" % path)
    else:
        src = Source(path, "safetensors")
        src.description = "safetensors state dict"
    src.files = [path]
    _add_tensors(src, collections.OrderedDict((n, STTensor(f, n)) for n in names))
    return src


def _hf_weight_files(folder):
    for name in ("model.safetensors", "pytorch_model.bin"):
        p = os.path.join(folder, name)
        if os.path.exists(p):
            return [p]
    for name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        p = os.path.join(folder, name)
        if os.path.exists(p):
            try:
                with open(p, encoding="utf-8") as f:
                    wm = json.load(f)["weight_map"]
                shards = sorted(set(wm.values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                raise ToolError("%s: cannot read the shard index: %s" % (p, e))
            for s in shards:
                if os.path.basename(s) != s:
                    raise ToolError("%s: shard name %r is not a plain file name" % (p, s))
            return [os.path.join(folder, s) for s in shards]
    raise ToolError("%s: Hugging Face folder without model.safetensors or pytorch_model.bin" % folder)


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ToolError("%s: cannot read JSON: %s" % (path, e))


def _open_hf_folder(folder, weights=None):
    src = Source(folder, "hf")
    src.description = "Hugging Face CLIP folder"
    src.hf_config = _read_json(os.path.join(folder, "config.json"))
    files = weights or _hf_weight_files(folder)
    src.files = list(files)
    hf = collections.OrderedDict()
    for p in files:
        if zipfile.is_zipfile(p):
            arch, sd, _, _ = torch_zip.load_state_dict(p)
            src.closers.append(arch.close)
            items = sd.items()
        else:
            f = safetensors_io.SafetensorsFile(p)
            items = ((n, STTensor(f, n)) for n in f.keys())
        for n, t in items:
            if n in hf:
                raise ToolError("%s: tensor '%s' appears in more than one weight file" % (folder, n))
            hf[n] = t
    for t in hf.values():
        src.source_dtypes[t.dtype] += 1
    plan, dropped, unknown = clip_arch.hf_to_openai_plan(hf.keys())
    if unknown:
        raise ToolError("%s: unexpected Hugging Face tensor(s) with no OpenAI CLIP counterpart: %s%s"
                        % (folder, ", ".join(unknown[:5]), " ..." if len(unknown) > 5 else ""))
    src.skipped = dropped
    for oa, (op, names) in plan.items():
        parts = [hf[n] for n in names]
        if op == "copy":
            src.tensors[oa] = parts[0]
        elif op == "transpose":
            src.tensors[oa] = Transposed(parts[0])
        else:
            src.tensors[oa] = Concat(parts, names)
    return src


# ----------------------------------------------------------------------------- config + tokenizer

def _hf_config(src, hidden_act, image_mean, image_std):
    t, v, proj = clip_arch.hf_config_sections(src.hf_config)
    acts = {t.get("hidden_act", "quick_gelu"), v.get("hidden_act", "quick_gelu")}
    if hidden_act is None and len(acts) != 1:
        raise ToolError("config.json: text and vision towers use different hidden_act (%s); the format has one "
                        "(override with --hidden-act)" % ", ".join(sorted(acts)))
    epss = {float(t.get("layer_norm_eps", 1e-5)), float(v.get("layer_norm_eps", 1e-5))}
    if len(epss) != 1:
        raise ToolError("config.json: text and vision towers use different layer_norm_eps (%s)" % sorted(epss))
    shapes = {k: x.shape for k, x in src.tensors.items()}
    inferred = clip_arch.infer_config(shapes)  # OpenAI's view of the same tensors
    # Missing keys take transformers' CLIPTextConfig / CLIPVisionConfig defaults, as
    # CLIPModel.from_pretrained would.
    try:
        vision = dict(type="vit", width=int(v.get("hidden_size", 768)), layers=int(v.get("num_hidden_layers", 12)),
                      heads=int(v.get("num_attention_heads", 12)), patch_size=int(v.get("patch_size", 32)),
                      image_size=int(v.get("image_size", 224)))
        text = dict(width=int(t.get("hidden_size", 512)), layers=int(t.get("num_hidden_layers", 12)),
                    heads=int(t.get("num_attention_heads", 8)),
                    context_length=int(t.get("max_position_embeddings", 77)),
                    vocab_size=int(t.get("vocab_size", 49408)))
        embed = int(proj if proj is not None else inferred["embed_dim"])
    except (TypeError, ValueError) as e:
        raise ToolError("config.json: bad field: %s" % e)
    for tower, hf_sec, inf_sec in (("vision", vision, inferred["vision"]), ("text", text, inferred["text"])):
        if hf_sec["heads"] != inf_sec["heads"]:
            src.notes.append("%s heads: %d from config.json (OpenAI's width//64 rule would give %d)"
                             % (tower, hf_sec["heads"], inf_sec["heads"]))
    mean, std = clip_arch.OPENAI_IMAGE_MEAN, clip_arch.OPENAI_IMAGE_STD
    pp = os.path.join(src.path, "preprocessor_config.json")
    if os.path.exists(pp):
        pc = _read_json(pp)
        mean = pc.get("image_mean", mean)
        std = pc.get("image_std", std)
    cfg = clip_arch.make_config(embed, vision, text, hidden_act or acts.pop(), epss.pop(),
                                image_mean or mean, image_std or std)
    return cfg


def _finish(src, hidden_act, image_mean, image_std, bpe, want_tokenizer):
    if "logit_scale" in src.tensors and tuple(src.tensors["logit_scale"].shape) == (1,):
        src.tensors["logit_scale"] = Reshaped(src.tensors["logit_scale"], ())
        src.notes.append("logit_scale stored with shape [1]; written as a 0-d tensor")
    shapes = collections.OrderedDict((k, t.shape) for k, t in src.tensors.items())
    if src.kind == "zeroclip":
        try:
            cfg = json.loads(src.metadata["zeroclip.config"], object_pairs_hook=collections.OrderedDict)
            cfg = clip_arch.make_config(cfg["embed_dim"], cfg["vision"], cfg["text"], hidden_act or cfg["hidden_act"],
                                        cfg["layer_norm_eps"], image_mean or cfg["image_mean"],
                                        image_std or cfg["image_std"])
        except (ValueError, KeyError, TypeError) as e:
            raise ToolError("%s: bad zeroclip.config metadata: %s" % (src.path, e))
    elif src.kind == "hf":
        cfg = _hf_config(src, hidden_act, image_mean, image_std)
    else:
        cfg = clip_arch.infer_config(shapes, hidden_act or clip_arch.DEFAULT_HIDDEN_ACT,
                                     clip_arch.DEFAULT_LAYER_NORM_EPS, image_mean, image_std)
    clip_arch.validate_shapes(shapes, cfg, src.path)
    src.config = cfg
    if not want_tokenizer:
        return
    vocab_size = cfg["text"]["vocab_size"]
    if src.kind == "zeroclip" and bpe is None:
        src.tokenizer = {k: v for k, v in src.metadata.items() if k in ("zeroclip.bpe_merges", "zeroclip.bpe_vocab")}
        if "zeroclip.bpe_merges" not in src.tokenizer:
            raise ToolError("%s: zeroclip file without zeroclip.bpe_merges metadata" % src.path)
        return
    if src.kind == "hf" and bpe is None and os.path.exists(os.path.join(src.path, "merges.txt")):
        merges = clip_arch.load_hf_merges(os.path.join(src.path, "merges.txt"))
        vocab = None
        vp = os.path.join(src.path, "vocab.json")
        if os.path.exists(vp):
            vocab = _read_json(vp)
        else:
            src.notes.append("no vocab.json: using the vocabulary derived from merges.txt")
        src.tokenizer = clip_arch.tokenizer_metadata(merges, vocab, vocab_size)
        return
    path = bpe or DEFAULT_BPE
    if not os.path.exists(path):
        raise ToolError("BPE merges file %s not found (give one with --bpe PATH; OpenAI's "
                        "bpe_simple_vocab_16e6.txt.gz)" % path)
    if src.kind == "hf" and bpe is None:
        src.notes.append("no merges.txt in the folder: using %s" % path)
    merges = clip_arch.load_openai_merges(path, clip_arch.merges_for_vocab(vocab_size))
    src.tokenizer = clip_arch.tokenizer_metadata(merges, None, vocab_size)


def format_metadata(cfg, tokenizer):
    """The complete ``__metadata__`` of a zeroclip file (docs/FORMAT.md)."""
    meta = collections.OrderedDict()
    meta["format"] = "pt"
    meta["zeroclip.format_version"] = clip_arch.FORMAT_VERSION
    meta["zeroclip.config"] = json.dumps(cfg)
    meta["zeroclip.bpe_merges"] = tokenizer["zeroclip.bpe_merges"]
    if "zeroclip.bpe_vocab" in tokenizer:
        meta["zeroclip.bpe_vocab"] = tokenizer["zeroclip.bpe_vocab"]
    return meta


def parse_triplet(text, what):
    return _parse_triplet(text, what)
