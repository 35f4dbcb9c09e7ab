"""OpenAI CLIP architecture knowledge: config inference, expected tensor shapes, HF name mapping,
official model sizes and the BPE tokenizer data. numpy-free (works on shapes only).

Config inference follows ``build_model()`` in openai/CLIP clip/model.py:
  * ViT when ``visual.proj`` exists, else ModifiedResNet;
  * ViT: width = conv1 out channels, patch = conv1 kernel, layers = number of
    ``visual.transformer.resblocks.N``, grid = round(sqrt(pos_embed rows - 1)),
    image size = patch * grid, heads = width // 64;
  * ResNet: layers = number of distinct blocks in ``visual.layer1..4``, width =
    ``visual.layer1.0.conv1.weight`` out channels, image size = 32 * round(sqrt(attnpool pos rows - 1)),
    attention-pool heads = width * 32 // 64;
  * embed = text_projection cols, context = positional_embedding rows, vocab = token_embedding
    rows, text width = ln_final size, text heads = width // 64, text layers = number of
    ``transformer.resblocks.N``.
"""

import collections
import gzip
import json
import math
import re
import zlib

from ._common import MAX_TEXT_INPUT, ToolError, open_input, read_input

OPENAI_IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_IMAGE_STD = [0.26862954, 0.26130258, 0.27577711]
DEFAULT_HIDDEN_ACT = "quick_gelu"
DEFAULT_LAYER_NORM_EPS = 1e-05
FORMAT_VERSION = "1"

# Buffers present in checkpoints that the format does not store.
SKIPPED_SUFFIXES = (".num_batches_tracked", ".position_ids",
                    ".attn_mask")  # (a plain attribute, never in state dicts; ignored should a TorchScript tree hold it)
SKIPPED_NAMES = ("input_resolution", "context_length", "vocab_size", "position_ids")

# Official OpenAI models: CLIP(embed_dim, image_resolution, vision_layers, vision_width,
# vision_patch_size, context_length, vocab_size, transformer_width, transformer_heads,
# transformer_layers) as build_model() infers them from the released checkpoints.
OFFICIAL = collections.OrderedDict([
    ("RN50", dict(embed_dim=1024, image_size=224, vision_layers=[3, 4, 6, 3], vision_width=64, patch_size=None,
                  text_width=512, text_layers=12)),
    ("RN101", dict(embed_dim=512, image_size=224, vision_layers=[3, 4, 23, 3], vision_width=64, patch_size=None,
                   text_width=512, text_layers=12)),
    ("RN50x4", dict(embed_dim=640, image_size=288, vision_layers=[4, 6, 10, 6], vision_width=80, patch_size=None,
                    text_width=640, text_layers=12)),
    ("RN50x16", dict(embed_dim=768, image_size=384, vision_layers=[6, 8, 18, 8], vision_width=96, patch_size=None,
                     text_width=768, text_layers=12)),
    ("RN50x64", dict(embed_dim=1024, image_size=448, vision_layers=[3, 15, 36, 10], vision_width=128,
                     patch_size=None, text_width=1024, text_layers=12)),
    ("ViT-B/32", dict(embed_dim=512, image_size=224, vision_layers=12, vision_width=768, patch_size=32,
                      text_width=512, text_layers=12)),
    ("ViT-B/16", dict(embed_dim=512, image_size=224, vision_layers=12, vision_width=768, patch_size=16,
                      text_width=512, text_layers=12)),
    ("ViT-L/14", dict(embed_dim=768, image_size=224, vision_layers=24, vision_width=1024, patch_size=14,
                      text_width=768, text_layers=12)),
    ("ViT-L/14@336px", dict(embed_dim=768, image_size=336, vision_layers=24, vision_width=1024, patch_size=14,
                            text_width=768, text_layers=12)),
])
OFFICIAL_CONTEXT_LENGTH = 77
OFFICIAL_VOCAB_SIZE = 49408


class ArchError(ToolError):
    pass


# ----------------------------------------------------------------------------- config

# Bounds of every config value (the C++ loader applies the same ones). They are far above any
# released CLIP model and stop hostile files from making the tools build millions of tensor
# names or absurd shapes before anything else is checked.
MAX_LAYERS = 1024
MAX_WIDTH = 65536
MAX_IMAGE_SIZE = 16384
MAX_CONTEXT_LENGTH = 65536
MAX_VOCAB_SIZE = 1 << 20


def _shown(x):
    try:
        return json.dumps(x)[:60]
    except (TypeError, ValueError):
        return repr(x)[:60]


def check_int(x, key, where="config", lo=1, hi=MAX_WIDTH):
    """``x`` itself, when it is a JSON integer (not 3.9, not true, not "3") in [lo, hi]."""
    if not isinstance(x, int) or isinstance(x, bool):
        raise ArchError("%s: %s must be an integer (got %s)" % (where, key, _shown(x)))
    if not lo <= x <= hi:
        raise ArchError("%s: %s = %d is out of range [%d, %d]" % (where, key, x, lo, hi))
    return x


def check_real(x, key, where="config", positive=False, below=None):
    """``x`` as a float, when it is a finite JSON number (not a bool or string)."""
    if not isinstance(x, (int, float)) or isinstance(x, bool) or not math.isfinite(x):
        raise ArchError("%s: %s must be a finite number (got %s)" % (where, key, _shown(x)))
    if positive and not x > 0:
        raise ArchError("%s: %s must be positive (got %s)" % (where, key, _shown(x)))
    if below is not None and not x < below:
        raise ArchError("%s: %s must be below %g (got %s)" % (where, key, below, _shown(x)))
    return float(x)


def _check_triplet(x, key, where, positive):
    if not isinstance(x, (list, tuple)) or len(x) != 3:
        raise ArchError("%s: %s must be a list of 3 numbers (got %s)" % (where, key, _shown(x)))
    return [check_real(v, "%s[%d]" % (key, i), where, positive=positive) for i, v in enumerate(x)]


def make_config(embed_dim, vision, text, hidden_act=DEFAULT_HIDDEN_ACT, layer_norm_eps=DEFAULT_LAYER_NORM_EPS,
                image_mean=None, image_std=None, where="config"):
    """The ``zeroclip.config`` object, keys in the order of docs/FORMAT.md. Every value is
    checked for type and range first (never coerced: 3.9 or true is an error naming the key)."""
    if not isinstance(vision, dict) or not isinstance(text, dict):
        raise ArchError("%s: vision and text must be JSON objects" % where)

    def field(section, sec, key):
        if key not in sec:
            raise ArchError("%s: %s.%s is missing" % (where, section, key))
        return sec[key]

    def vint(key, hi=MAX_WIDTH):
        return check_int(field("vision", vision, key), "vision." + key, where, hi=hi)

    def tint(key, hi=MAX_WIDTH):
        return check_int(field("text", text, key), "text." + key, where, hi=hi)

    vtype = field("vision", vision, "type")
    if vtype == "vit":
        image_size = vint("image_size", MAX_IMAGE_SIZE)
        v = collections.OrderedDict([("type", "vit"), ("width", vint("width")),
                                     ("layers", vint("layers", MAX_LAYERS)), ("heads", vint("heads")),
                                     ("patch_size", vint("patch_size", image_size)),
                                     ("image_size", image_size)])
    elif vtype == "resnet":
        layers = field("vision", vision, "layers")
        if not isinstance(layers, (list, tuple)) or len(layers) != 4:
            raise ArchError("%s: vision.layers of a ResNet must be a list of 4 integers (got %s)"
                            % (where, _shown(layers)))
        v = collections.OrderedDict([("type", "resnet"), ("width", vint("width")),
                                     ("layers", [check_int(x, "vision.layers[%d]" % i, where, hi=MAX_LAYERS)
                                                 for i, x in enumerate(layers)]),
                                     ("heads", vint("heads")), ("image_size", vint("image_size", MAX_IMAGE_SIZE))])
    else:
        raise ArchError("%s: unknown vision type %s (expected \"vit\" or \"resnet\")" % (where, _shown(vtype)))
    t = collections.OrderedDict([("width", tint("width")), ("layers", tint("layers", MAX_LAYERS)),
                                 ("heads", tint("heads")), ("context_length", tint("context_length", MAX_CONTEXT_LENGTH)),
                                 ("vocab_size", tint("vocab_size", MAX_VOCAB_SIZE))])
    if hidden_act not in ("quick_gelu", "gelu"):
        raise ArchError("%s: hidden_act must be \"quick_gelu\" or \"gelu\" (got %s)" % (where, _shown(hidden_act)))
    cfg = collections.OrderedDict([
        ("embed_dim", check_int(embed_dim, "embed_dim", where)), ("vision", v), ("text", t),
        ("hidden_act", hidden_act),
        ("layer_norm_eps", check_real(layer_norm_eps, "layer_norm_eps", where, positive=True, below=1.0)),
        ("image_mean", _check_triplet(OPENAI_IMAGE_MEAN if image_mean is None else image_mean, "image_mean", where,
                                      False)),
        ("image_std", _check_triplet(OPENAI_IMAGE_STD if image_std is None else image_std, "image_std", where, True)),
    ])
    check_config(cfg, where)
    return cfg


def check_config(cfg, where="config"):
    """Consistency checks that make the architecture well defined (types and ranges were checked
    by make_config)."""
    v, t = cfg["vision"], cfg["text"]
    if t["width"] % t["heads"]:
        raise ArchError("%s: text width %d is not divisible by its %d heads" % (where, t["width"], t["heads"]))
    if v["type"] == "vit":
        if v["image_size"] % v["patch_size"]:
            raise ArchError("%s: image size %d is not a multiple of patch size %d"
                            % (where, v["image_size"], v["patch_size"]))
        if v["width"] % v["heads"]:
            raise ArchError("%s: vision width %d is not divisible by its %d heads" % (where, v["width"], v["heads"]))
    else:
        if v["width"] % 2:
            raise ArchError("%s: ResNet width must be even (got %d)" % (where, v["width"]))
        if v["image_size"] % 32:
            raise ArchError("%s: ResNet image size must be a multiple of 32 (got %d)" % (where, v["image_size"]))
        if (v["width"] * 32) % v["heads"]:
            raise ArchError("%s: attention-pool width %d is not divisible by its %d heads"
                            % (where, v["width"] * 32, v["heads"]))


def openai_heads(width):
    """build_model's rule for transformer heads (ViT and text): width // 64."""
    return width // 64


def resnet_heads(width):
    """build_model's rule for the ResNet attention pool: width * 32 // 64."""
    return width * 32 // 64


def _block_count(names, prefix):
    """Number of distinct N in names starting with prefix + 'N.'."""
    idx = set()
    for k in names:
        if k.startswith(prefix):
            head = k[len(prefix):].split(".", 1)[0]
            idx.add(head)
    return len(idx)


def infer_config(shapes, hidden_act=DEFAULT_HIDDEN_ACT, layer_norm_eps=DEFAULT_LAYER_NORM_EPS,
                 image_mean=None, image_std=None):
    """Config from {openai_name: shape}, exactly as OpenAI's build_model() infers it."""

    def shape(name, ndim):
        if name not in shapes:
            raise ArchError("missing tensor '%s' (needed to infer the architecture)" % name)
        s = tuple(shapes[name])
        if len(s) != ndim:
            raise ArchError("tensor '%s' has shape %s, expected %d dimensions" % (name, list(s), ndim))
        return s

    if "visual.proj" in shapes:
        conv = shape("visual.conv1.weight", 4)
        width = conv[0]
        patch = conv[-1]
        layers = _block_count(shapes, "visual.transformer.resblocks.")
        npos = shape("visual.positional_embedding", 2)[0]
        grid = int(round(math.sqrt(max(npos - 1, 0))))
        if grid * grid + 1 != npos:
            raise ArchError("visual.positional_embedding has %d rows, not grid*grid+1" % npos)
        heads = openai_heads(width)
        if heads < 1:
            raise ArchError("vision width %d < 64 gives 0 heads under build_model's width//64 rule" % width)
        vision = dict(type="vit", width=width, layers=layers, heads=heads, patch_size=patch,
                      image_size=patch * grid)
    else:
        if "visual.layer1.0.conv1.weight" not in shapes and not any(k.startswith("visual.") for k in shapes):
            raise ArchError("no vision tower: neither 'visual.proj' (ViT) nor 'visual.layer1.*' (ResNet) tensors found")
        layers = [_block_count(shapes, "visual.layer%d." % b) for b in (1, 2, 3, 4)]
        width = shape("visual.layer1.0.conv1.weight", 4)[0]
        npos = shape("visual.attnpool.positional_embedding", 2)[0]
        out = int(round(math.sqrt(max(npos - 1, 0))))
        if out * out + 1 != npos:
            raise ArchError("visual.attnpool.positional_embedding has %d rows, not n*n+1" % npos)
        vision = dict(type="resnet", width=width, layers=layers, heads=resnet_heads(width), image_size=out * 32)
    embed_dim = shape("text_projection", 2)[1]
    tw = shape("ln_final.weight", 1)[0]
    theads = openai_heads(tw)
    if theads < 1:
        raise ArchError("text width %d < 64 gives 0 heads under build_model's width//64 rule" % tw)
    text = dict(width=tw, layers=_block_count(shapes, "transformer.resblocks."), heads=theads,
                context_length=shape("positional_embedding", 2)[0],
                vocab_size=shape("token_embedding.weight", 2)[0])
    return make_config(embed_dim, vision, text, hidden_act, layer_norm_eps, image_mean, image_std,
                       where="architecture inferred from the tensor shapes")


# ----------------------------------------------------------------------------- expected tensors

def _transformer_shapes(out, prefix, width, layers):
    for i in range(layers):
        p = "%s%d." % (prefix, i)
        out[p + "attn.in_proj_weight"] = (3 * width, width)
        out[p + "attn.in_proj_bias"] = (3 * width,)
        out[p + "attn.out_proj.weight"] = (width, width)
        out[p + "attn.out_proj.bias"] = (width,)
        out[p + "ln_1.weight"] = (width,)
        out[p + "ln_1.bias"] = (width,)
        out[p + "mlp.c_fc.weight"] = (4 * width, width)
        out[p + "mlp.c_fc.bias"] = (4 * width,)
        out[p + "mlp.c_proj.weight"] = (width, 4 * width)
        out[p + "mlp.c_proj.bias"] = (width,)
        out[p + "ln_2.weight"] = (width,)
        out[p + "ln_2.bias"] = (width,)


def _bn(out, prefix, c):
    for s in ("weight", "bias", "running_mean", "running_var"):
        out["%s.%s" % (prefix, s)] = (c,)


def expected_shapes(cfg):
    """OrderedDict {openai_name: shape} of every tensor the format stores for this config."""
    out = collections.OrderedDict()
    v, t, e = cfg["vision"], cfg["text"], cfg["embed_dim"]
    if v["type"] == "vit":
        w, p = v["width"], v["patch_size"]
        grid = v["image_size"] // p
        out["visual.class_embedding"] = (w,)
        out["visual.positional_embedding"] = (grid * grid + 1, w)
        out["visual.proj"] = (w, e)
        out["visual.conv1.weight"] = (w, 3, p, p)
        out["visual.ln_pre.weight"] = (w,)
        out["visual.ln_pre.bias"] = (w,)
        _transformer_shapes(out, "visual.transformer.resblocks.", w, v["layers"])
        out["visual.ln_post.weight"] = (w,)
        out["visual.ln_post.bias"] = (w,)
    else:
        w = v["width"]
        out["visual.conv1.weight"] = (w // 2, 3, 3, 3)
        _bn(out, "visual.bn1", w // 2)
        out["visual.conv2.weight"] = (w // 2, w // 2, 3, 3)
        _bn(out, "visual.bn2", w // 2)
        out["visual.conv3.weight"] = (w, w // 2, 3, 3)
        _bn(out, "visual.bn3", w)
        inplanes = w
        for li, blocks in enumerate(v["layers"]):
            planes = w * (2 ** li)
            stride = 1 if li == 0 else 2
            for b in range(blocks):
                p = "visual.layer%d.%d." % (li + 1, b)
                out[p + "conv1.weight"] = (planes, inplanes, 1, 1)
                _bn(out, p + "bn1", planes)
                out[p + "conv2.weight"] = (planes, planes, 3, 3)
                _bn(out, p + "bn2", planes)
                out[p + "conv3.weight"] = (planes * 4, planes, 1, 1)
                _bn(out, p + "bn3", planes * 4)
                if b == 0 and (stride > 1 or inplanes != planes * 4):
                    out[p + "downsample.0.weight"] = (planes * 4, inplanes, 1, 1)
                    _bn(out, p + "downsample.1", planes * 4)
                inplanes = planes * 4
        d = w * 32
        side = v["image_size"] // 32
        out["visual.attnpool.positional_embedding"] = (side * side + 1, d)
        for n in ("k_proj", "q_proj", "v_proj"):
            out["visual.attnpool.%s.weight" % n] = (d, d)
            out["visual.attnpool.%s.bias" % n] = (d,)
        out["visual.attnpool.c_proj.weight"] = (e, d)
        out["visual.attnpool.c_proj.bias"] = (e,)
    tw = t["width"]
    out["token_embedding.weight"] = (t["vocab_size"], tw)
    out["positional_embedding"] = (t["context_length"], tw)
    _transformer_shapes(out, "transformer.resblocks.", tw, t["layers"])
    out["ln_final.weight"] = (tw,)
    out["ln_final.bias"] = (tw,)
    out["text_projection"] = (tw, e)
    out["logit_scale"] = ()
    return out


def is_skipped(name):
    """Buffers that checkpoints carry but the format never stores."""
    return name in SKIPPED_NAMES or name.endswith(SKIPPED_SUFFIXES)


def validate_shapes(shapes, cfg, source="input"):
    """Raise ArchError naming the first problem: missing tensor, wrong shape, unexpected tensor."""
    want = expected_shapes(cfg)
    missing = [k for k in want if k not in shapes]
    if missing:
        more = " (and %d more)" % (len(missing) - 1) if len(missing) > 1 else ""
        raise ArchError("%s: missing tensor '%s' with expected shape %s%s" % (
            source, missing[0], list(want[missing[0]]), more))
    for k, s in want.items():
        got = tuple(shapes[k])
        if got != tuple(s):
            raise ArchError("%s: tensor '%s' has shape %s, expected %s" % (source, k, list(got), list(s)))
    extra = [k for k in shapes if k not in want and not is_skipped(k)]
    if extra:
        raise ArchError("%s: unexpected tensor(s) not part of the inferred %s architecture: %s%s" % (
            source, describe_arch(cfg), ", ".join(extra[:5]), " ..." if len(extra) > 5 else ""))
    return want


def describe_arch(cfg):
    v = cfg["vision"]
    if v["type"] == "vit":
        return "ViT (width %d, %d layers, patch %d, %d px)" % (v["width"], v["layers"], v["patch_size"], v["image_size"])
    return "ModifiedResNet (width %d, layers %s, %d px)" % (v["width"], "/".join(map(str, v["layers"])),
                                                            v["image_size"])


def official_name(cfg):
    """Name of the official OpenAI model with exactly this config, or None."""
    v, t = cfg["vision"], cfg["text"]
    for name, o in OFFICIAL.items():
        vit = o["patch_size"] is not None
        if (v["type"] == "vit") != vit:
            continue
        if (cfg["embed_dim"], v["image_size"], v["width"], t["width"], t["layers"], t["context_length"],
                t["vocab_size"]) != (o["embed_dim"], o["image_size"], o["vision_width"], o["text_width"],
                                     o["text_layers"], OFFICIAL_CONTEXT_LENGTH, OFFICIAL_VOCAB_SIZE):
            continue
        if vit and (v["layers"], v["patch_size"]) == (o["vision_layers"], o["patch_size"]):
            return name
        if not vit and list(v["layers"]) == list(o["vision_layers"]):
            return name
    return None


# ----------------------------------------------------------------------------- Hugging Face

def hf_to_openai_plan(hf_names):
    """Map HF CLIPModel tensor names to OpenAI names.

    Returns (plan, dropped, unknown) where plan is an OrderedDict openai_name -> (op, [hf names])
    with op one of 'copy', 'transpose', 'concat' (q, k, v along dim 0). Inverse of transformers'
    convert_clip_original_pytorch_to_hf.py.
    """
    names = set(hf_names)
    plan = collections.OrderedDict()
    used = set()
    dropped = []

    def take(op, oa, *srcs):
        plan[oa] = (op, list(srcs))
        used.update(srcs)

    simple = [
        ("text_model.embeddings.token_embedding.weight", "token_embedding.weight"),
        ("text_model.embeddings.position_embedding.weight", "positional_embedding"),
        ("text_model.final_layer_norm.weight", "ln_final.weight"),
        ("text_model.final_layer_norm.bias", "ln_final.bias"),
        ("vision_model.embeddings.class_embedding", "visual.class_embedding"),
        ("vision_model.embeddings.patch_embedding.weight", "visual.conv1.weight"),
        ("vision_model.embeddings.position_embedding.weight", "visual.positional_embedding"),
        ("vision_model.pre_layrnorm.weight", "visual.ln_pre.weight"),
        ("vision_model.pre_layrnorm.bias", "visual.ln_pre.bias"),
        ("vision_model.post_layernorm.weight", "visual.ln_post.weight"),
        ("vision_model.post_layernorm.bias", "visual.ln_post.bias"),
        ("logit_scale", "logit_scale"),
    ]
    for hf, oa in simple:
        if hf in names:
            take("copy", oa, hf)
    for hf, oa in (("visual_projection.weight", "visual.proj"), ("text_projection.weight", "text_projection")):
        if hf in names:
            take("transpose", oa, hf)

    layer_re = re.compile(r"^(text_model|vision_model)\.encoder\.layers\.(\d+)\.(.+)$")
    layers = set()
    for n in names:
        m = layer_re.match(n)
        if m:
            layers.add((m.group(1), int(m.group(2))))
    sub = [("self_attn.out_proj.weight", "attn.out_proj.weight"), ("self_attn.out_proj.bias", "attn.out_proj.bias"),
           ("layer_norm1.weight", "ln_1.weight"), ("layer_norm1.bias", "ln_1.bias"),
           ("layer_norm2.weight", "ln_2.weight"), ("layer_norm2.bias", "ln_2.bias"),
           ("mlp.fc1.weight", "mlp.c_fc.weight"), ("mlp.fc1.bias", "mlp.c_fc.bias"),
           ("mlp.fc2.weight", "mlp.c_proj.weight"), ("mlp.fc2.bias", "mlp.c_proj.bias")]
    for tower, i in sorted(layers):
        hp = "%s.encoder.layers.%d." % (tower, i)
        op = ("visual.transformer.resblocks.%d." if tower == "vision_model" else "transformer.resblocks.%d.") % i
        for kind in ("weight", "bias"):
            qkv = [hp + "self_attn.%s_proj.%s" % (x, kind) for x in "qkv"]
            present = [q for q in qkv if q in names]
            if len(present) == 3:
                take("concat", op + "attn.in_proj_%s" % kind, *qkv)
            elif present:
                missing = [q for q in qkv if q not in names][0]
                raise ArchError("Hugging Face checkpoint: missing tensor '%s' (needed with %s)" % (missing, present[0]))
        for hs, os_ in sub:
            if hp + hs in names:
                take("copy", op + os_, hp + hs)
    for n in sorted(names - used):
        if n.endswith("position_ids"):
            dropped.append(n)
    unknown = sorted(names - used - set(dropped))
    return plan, dropped, unknown


def hf_config_sections(config):
    """(text_config, vision_config, projection_dim) from a CLIPConfig dict."""
    if not isinstance(config, dict):
        raise ArchError("config.json is not a JSON object")
    t = config.get("text_config") or config.get("text_config_dict") or {}
    v = config.get("vision_config") or config.get("vision_config_dict") or {}
    mt = config.get("model_type")
    if mt not in (None, "clip"):
        raise ArchError("config.json: model_type %r is not a Hugging Face CLIP model ('clip')" % mt)
    if not t or not v:
        raise ArchError("config.json has no text_config / vision_config: not a CLIPModel config")
    return t, v, config.get("projection_dim")


# ----------------------------------------------------------------------------- tokenizer data

def bytes_to_unicode():
    """GPT-2/CLIP byte -> printable unicode character table, in CLIP's vocabulary order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return collections.OrderedDict((b, chr(c)) for b, c in zip(bs, cs))


def standard_vocab(merges):
    """CLIP's vocabulary derived from the merges: {token: id}."""
    base = list(bytes_to_unicode().values())
    tokens = base + [t + "</w>" for t in base]
    tokens += ["".join(m.split(" ")) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}


def merges_for_vocab(vocab_size):
    """Number of merges a standard CLIP vocabulary of this size holds (OpenAI: 49408 -> 48894)."""
    return vocab_size - 2 * 256 - 2


def load_openai_merges(path, count):
    """First ``count`` merges of a BPE merges file: OpenAI's bpe_simple_vocab_16e6.txt(.gz) or a
    Hugging Face merges.txt (a first line containing '#version' is skipped). For OpenAI's file
    and count = 48894 this is clip/simple_tokenizer.py's merges[1:49152-256-2+1]."""
    if count < 0:
        raise ArchError("a CLIP vocabulary needs at least 514 tokens (256 bytes, 256 bytes+</w>, 2 specials); "
                        "the model has %d" % (count + 514))
    text = _read_text(path, "BPE merges file")
    lines = text.split("\n", count + 1)  # only what is needed (the file has 262k lines)
    if lines and "#version" in lines[0]:
        lines = lines[1:]
    merges = [ln.rstrip("\r") for ln in lines[:count]]
    if len(merges) < count or (merges and merges[-1] == ""):
        have = len([m for m in merges if m.strip()])
        raise ArchError("BPE file %s has only %d merges, the model's vocabulary of %d tokens needs %d"
                        % (path, have, count + 514, count))
    _check_merges(merges, path)
    return merges


def load_hf_merges(path):
    """merges.txt of a Hugging Face CLIP tokenizer, without its '#version' line."""
    lines = _read_text(path, "merges file").split("\n")
    if lines and lines[0].startswith("#version"):
        lines = lines[1:]
    while lines and lines[-1].strip() == "":
        lines.pop()
    lines = [ln.rstrip("\r") for ln in lines]
    _check_merges(lines, path)
    return lines


def _read_text(path, what):
    """A UTF-8 text file (gzip-compressed when named .gz), at most MAX_TEXT_INPUT bytes once
    inflated: the real BPE file is 1.3 MB, so a bigger one is refused, not inflated whole."""
    if path.endswith(".gz"):
        try:
            with open_input(path, what) as raw, gzip.GzipFile(fileobj=raw) as f:
                data = f.read(MAX_TEXT_INPUT + 1)
        except (OSError, EOFError, zlib.error) as e:
            raise ArchError("%s: cannot read the %s: %s" % (path, what, e))
        if len(data) > MAX_TEXT_INPUT:
            raise ArchError("%s: the %s inflates to more than %d bytes" % (path, what, MAX_TEXT_INPUT))
    else:
        data = read_input(path, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ArchError("%s: the %s is not valid UTF-8 (byte %d)" % (path, what, e.start))


def _check_merges(merges, path):
    for i, m in enumerate(merges):
        parts = m.split(" ")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise ArchError("BPE merges file %s: line %d is not an 'a b' pair: %r" % (path, i + 1, m[:60]))


def merges_text(merges):
    """The ``zeroclip.bpe_merges`` value: one 'a b' pair a line, rank order, no header."""
    return "\n".join(merges)


def tokenizer_metadata(merges, vocab=None, vocab_size=None):
    """{'zeroclip.bpe_merges': ..., ['zeroclip.bpe_vocab': ...]} with consistency checks."""
    std = standard_vocab(merges)
    meta = {"zeroclip.bpe_merges": merges_text(merges)}
    use = std
    if vocab is not None and vocab != std:
        if not isinstance(vocab, dict) or not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                                                  and v >= 0 for k, v in vocab.items()):
            raise ArchError("vocab.json must map token strings to non-negative integer ids")
        meta["zeroclip.bpe_vocab"] = json.dumps(vocab, ensure_ascii=False, separators=(",", ":"))
        use = vocab
    if vocab_size is not None:
        top = max(use.values()) if use else -1
        if top >= vocab_size:
            raise ArchError("the tokenizer has token id %d but the model's token embedding has only %d rows"
                            % (top, vocab_size))
        if vocab is None and len(use) != vocab_size:
            raise ArchError("the tokenizer defines %d tokens but the model's token embedding has %d rows"
                            % (len(use), vocab_size))
    return meta
