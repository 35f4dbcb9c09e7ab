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
import math
import os
import zipfile

import numpy as np

from . import clip_arch, safetensors_io, torch_zip
from ._common import ToolError, UsageError, open_input, read_input

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


def sniff_format(path):
    """What the file's first bytes say it is: 'torch_zip' (zip magic PK), 'safetensors' (an
    8-byte little-endian header length, then '{'), 'legacy_torch' (pickle protocol 2-5 opcode
    0x80 first), or None. Only a regular file is opened (never blocks on a FIFO)."""
    with open_input(path, "checkpoint") as f:
        head = f.read(16)
        if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
            return "torch_zip"
        if len(head) > 8 and head[8:9] == b"{":
            return "safetensors"
        if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
            return "legacy_torch"
        if zipfile.is_zipfile(f):  # a zip with something in front of it
            return "torch_zip"
    return None


def _open_weights_file(path):
    """(kind, opened object) for one weights file: a TorchArchive or a SafetensorsFile; a
    clear error for anything else."""
    kind = sniff_format(path)
    if kind == "torch_zip":
        return kind, torch_zip.TorchArchive(path)
    if kind == "safetensors":
        return kind, safetensors_io.SafetensorsFile(path)
    if kind == "legacy_torch":
        raise ToolError("%s: looks like a legacy (pre-1.6, non-zip) PyTorch file (it starts with a pickle); that "
                        "serialization is not supported: re-save it with torch.save(obj, path) from PyTorch >= 1.6"
                        % path)
    size = os.path.getsize(path)
    raise ToolError("%s: not a recognised checkpoint (%s; expected a PyTorch .pt/.bin zip, a safetensors file "
                    "or a Hugging Face CLIP folder)" % (path, "an empty file" if size == 0 else
                                                        "%d bytes, unknown signature" % size))


def _looks_hf(names):
    return any(n.startswith(("text_model.", "vision_model.")) for n in names)


def _parse_triplet(text, what):
    try:
        vals = [float(x) for x in text.split(",")]
    except ValueError:
        vals = []
    if len(vals) != 3 or not all(math.isfinite(v) for v in vals):
        raise UsageError("%s must be three comma-separated finite numbers (got %r)" % (what, text))
    if what == "--image-std" and min(vals) <= 0:
        raise UsageError("--image-std must be positive (got %r)" % text)
    return vals


def open_source(path, hidden_act=None, image_mean=None, image_std=None, bpe=None, want_tokenizer=True):
    """Open ``path`` and derive config and tokenizer. Raises ToolError with a clear message."""
    try:
        os.stat(path)
    except OSError as e:  # no such file, a symlink loop, a name too long, no permission ...
        raise ToolError("%s: %s" % (path, (e.strerror or str(e)).lower()))
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "config.json")):
            src = _open_hf_folder(path)
        else:
            raise ToolError("%s: a directory input must be a Hugging Face CLIP folder with config.json" % path)
    else:
        kind, opened = _open_weights_file(path)
        src = _open_torch(path, opened) if kind == "torch_zip" else _open_safetensors(path, opened)
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


def _open_torch(path, arch):
    try:
        sd, desc = torch_zip.extract_state_dict(arch.obj, path)
    except BaseException:
        arch.close()
        raise
    kind = "torchscript" if arch.is_torchscript else "torch_state_dict"
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


def _open_safetensors(path, f):
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
            index = _read_json(p)
            wm = index.get("weight_map") if isinstance(index, dict) else None
            if not isinstance(wm, dict) or not all(isinstance(v, str) for v in wm.values()):
                raise ToolError("%s: cannot read the shard index: weight_map must map names to file names" % p)
            shards = sorted(set(wm.values()))
            for s in shards:
                if os.path.basename(s) != s or s in ("", ".", ".."):
                    raise ToolError("%s: shard name %r is not a plain file name" % (p, s))
            return [os.path.join(folder, s) for s in shards]
    raise ToolError("%s: Hugging Face folder without model.safetensors or pytorch_model.bin" % folder)


def _read_json(path):
    data = read_input(path, "JSON file")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ToolError("%s: not valid UTF-8 (byte %d)" % (path, e.start))
    except (ValueError, RecursionError) as e:
        raise ToolError("%s: cannot read JSON: %s" % (path, e))


def _open_hf_folder(folder, weights=None):
    src = Source(folder, "hf")
    src.description = "Hugging Face CLIP folder"
    src.hf_config = _read_json(os.path.join(folder, "config.json"))
    files = weights or _hf_weight_files(folder)
    src.files = list(files)
    hf = collections.OrderedDict()
    for p in files:
        kind, opened = _open_weights_file(p)
        if kind == "torch_zip":
            src.closers.append(opened.close)
            sd, _ = torch_zip.extract_state_dict(opened.obj, p)
            items = sd.items()
        else:
            items = ((n, STTensor(opened, n)) for n in opened.keys())
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
    where = os.path.join(src.path, "config.json")
    t, v, proj = clip_arch.hf_config_sections(src.hf_config)
    if not isinstance(t, dict) or not isinstance(v, dict):
        raise ToolError("%s: text_config and vision_config must be JSON objects" % where)
    acts = {t.get("hidden_act", "quick_gelu"), v.get("hidden_act", "quick_gelu")}
    if not all(isinstance(a, str) for a in acts):
        raise ToolError("%s: hidden_act must be a string" % where)
    if hidden_act is None and len(acts) != 1:
        raise ToolError("%s: text and vision towers use different hidden_act (%s); the format has one "
                        "(override with --hidden-act)" % (where, ", ".join(sorted(acts))))
    epss = {clip_arch.check_real(t.get("layer_norm_eps", 1e-5), "text_config.layer_norm_eps", where),
            clip_arch.check_real(v.get("layer_norm_eps", 1e-5), "vision_config.layer_norm_eps", where)}
    if len(epss) != 1:
        raise ToolError("%s: text and vision towers use different layer_norm_eps (%s)" % (where, sorted(epss)))
    shapes = {k: x.shape for k, x in src.tensors.items()}
    inferred = clip_arch.infer_config(shapes)  # OpenAI's view of the same tensors
    # Missing keys take transformers' CLIPTextConfig / CLIPVisionConfig defaults, as
    # CLIPModel.from_pretrained would.
    def hf_int(sec, name, key, default, hi=clip_arch.MAX_WIDTH):
        return clip_arch.check_int(sec.get(key, default), "%s.%s" % (name, key), where, hi=hi)

    vision = dict(type="vit", width=hf_int(v, "vision_config", "hidden_size", 768),
                  layers=hf_int(v, "vision_config", "num_hidden_layers", 12, clip_arch.MAX_LAYERS),
                  heads=hf_int(v, "vision_config", "num_attention_heads", 12),
                  patch_size=hf_int(v, "vision_config", "patch_size", 32, clip_arch.MAX_IMAGE_SIZE),
                  image_size=hf_int(v, "vision_config", "image_size", 224, clip_arch.MAX_IMAGE_SIZE))
    text = dict(width=hf_int(t, "text_config", "hidden_size", 512),
                layers=hf_int(t, "text_config", "num_hidden_layers", 12, clip_arch.MAX_LAYERS),
                heads=hf_int(t, "text_config", "num_attention_heads", 8),
                context_length=hf_int(t, "text_config", "max_position_embeddings", 77, clip_arch.MAX_CONTEXT_LENGTH),
                vocab_size=hf_int(t, "text_config", "vocab_size", 49408, clip_arch.MAX_VOCAB_SIZE))
    embed = clip_arch.check_int(proj if proj is not None else inferred["embed_dim"], "projection_dim", where)
    for tower, hf_sec, inf_sec in (("vision", vision, inferred["vision"]), ("text", text, inferred["text"])):
        if hf_sec["heads"] != inf_sec["heads"]:
            src.notes.append("%s heads: %d from config.json (OpenAI's width//64 rule would give %d)"
                             % (tower, hf_sec["heads"], inf_sec["heads"]))
    mean, std = clip_arch.OPENAI_IMAGE_MEAN, clip_arch.OPENAI_IMAGE_STD
    pp = os.path.join(src.path, "preprocessor_config.json")
    if os.path.exists(pp):
        pc = _read_json(pp)
        if not isinstance(pc, dict):
            raise ToolError("%s: not a JSON object" % pp)
        mean = pc.get("image_mean", mean)
        std = pc.get("image_std", std)
        where = "%s / %s" % (where, os.path.basename(pp))
    cfg = clip_arch.make_config(embed, vision, text, hidden_act or acts.pop(), epss.pop(),
                                image_mean or mean, image_std or std, where=where)
    return cfg


def _finish(src, hidden_act, image_mean, image_std, bpe, want_tokenizer):
    if "logit_scale" in src.tensors and tuple(src.tensors["logit_scale"].shape) == (1,):
        src.tensors["logit_scale"] = Reshaped(src.tensors["logit_scale"], ())
        src.notes.append("logit_scale stored with shape [1]; written as a 0-d tensor")
    shapes = collections.OrderedDict((k, t.shape) for k, t in src.tensors.items())
    if src.kind == "zeroclip":
        where = "%s: zeroclip.config" % src.path
        try:
            cfg = json.loads(src.metadata["zeroclip.config"], object_pairs_hook=collections.OrderedDict)
        except (ValueError, RecursionError) as e:
            raise ToolError("%s is not valid JSON: %s" % (where, e))
        if not isinstance(cfg, dict):
            raise ToolError("%s is not a JSON object" % where)
        missing = [k for k in ("embed_dim", "vision", "text", "hidden_act", "layer_norm_eps", "image_mean", "image_std")
                   if k not in cfg]
        if missing:
            raise ToolError("%s: missing key %s" % (where, missing[0]))
        cfg = clip_arch.make_config(cfg["embed_dim"], cfg["vision"], cfg["text"], hidden_act or cfg["hidden_act"],
                                    cfg["layer_norm_eps"], image_mean or cfg["image_mean"],
                                    image_std or cfg["image_std"], where=where)
    elif src.kind == "hf":
        cfg = _hf_config(src, hidden_act, image_mean, image_std)
    else:
        try:
            cfg = clip_arch.infer_config(shapes, hidden_act or clip_arch.DEFAULT_HIDDEN_ACT,
                                         clip_arch.DEFAULT_LAYER_NORM_EPS, image_mean, image_std)
        except clip_arch.ArchError as e:
            raise ToolError("%s: %s" % (src.path, e)) if not str(e).startswith(src.path) else e
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
        try:
            src.tokenizer = clip_arch.tokenizer_metadata(merges, vocab, vocab_size)
        except clip_arch.ArchError as e:
            raise ToolError("%s: %s" % (src.path, e))
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
