#!/usr/bin/python3
"""Train zeroclip's default toy model: a small OpenAI-architecture CLIP on a synthetic world.

Run (see weights_tools/TRAINING.md for the measured figures):
    OMP_WAIT_POLICY=PASSIVE nice -n 10 /usr/bin/python3 weights_tools/train_toy.py

CPU only, PyTorch 1.13 (Debian python3-torch), numpy. Deterministic for a given --seed and
thread count. Writes:
  examples/models/zeroclip-toy-vit.safetensors (via weights_tools/convert.py, F16)
  examples/labels.txt, examples/images/*.png
  tests/data/toy_eval/images_u8.npy + eval.json (accuracy-test fixture)
and keeps the fp16-rounded state dict at --state-dict (default /tmp/zeroclip-toy-vit.pt).
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # must be set before torch/OpenMP start

import argparse
import gzip
import html
import json
import math
import subprocess
import sys
import time
import unicodedata
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
import toy_world as tw  # noqa: E402
from weights_tools.clip_arch import bytes_to_unicode  # noqa: E402  (the one byte alphabet)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
BPE_PATH = "/work/shared/fixtures/tokenizer/bpe_simple_vocab_16e6.txt.gz"
TEMPLATE = "A photo of a {}."
COLOUR_TEMPLATE = "A photo of a {} object."
SHAPE_TEMPLATE = "A photo of a {}."


# =============================================================================================
# Tokenizer: OpenAI clip/simple_tokenizer.py, with ftfy = identity and the `regex` pattern
# emulated with unicodedata (the `regex` module is not installed here).
def get_pairs(word):
    return set(zip(word[:-1], word[1:]))


# Unicode White_Space (what `regex`'s \s matches)
_WS = set("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | \
    {chr(c) for c in range(0x2000, 0x200B)}


def _is_letter(ch):
    return unicodedata.category(ch).startswith("L")


def _is_number(ch):
    return unicodedata.category(ch).startswith("N")


def _pre_tokenize(text):
    """findall of <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|
    [^\\s\\p{L}\\p{N}]+ (text is already lower-cased)."""
    out, i, n = [], 0, len(text)
    while i < n:
        matched = None
        for lit in ("<|startoftext|>", "<|endoftext|>", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"):
            if text.startswith(lit, i):
                matched = lit
                break
        if matched is None:
            ch = text[i]
            if _is_letter(ch):
                j = i + 1
                while j < n and _is_letter(text[j]):
                    j += 1
                matched = text[i:j]
            elif _is_number(ch):
                matched = ch
            elif ch not in _WS:
                j = i + 1
                while j < n and not (text[j] in _WS or _is_letter(text[j]) or _is_number(text[j])):
                    j += 1
                matched = text[i:j]
        if matched is None:
            i += 1
        else:
            out.append(matched)
            i += len(matched)
    return out


class SimpleTokenizer:
    def __init__(self, bpe_path=BPE_PATH):
        self.byte_encoder = bytes_to_unicode()
        merges = gzip.open(bpe_path).read().decode("utf-8").split("\n")
        merges = merges[1:49152 - 256 - 2 + 1]
        merges = [tuple(m.split()) for m in merges]
        vocab = list(bytes_to_unicode().values())
        vocab = vocab + [v + "</w>" for v in vocab]
        for m in merges:
            vocab.append("".join(m))
        vocab.extend(["<|startoftext|>", "<|endoftext|>"])
        self.encoder = dict(zip(vocab, range(len(vocab))))
        self.bpe_ranks = dict(zip(merges, range(len(merges))))
        self.cache = {"<|startoftext|>": "<|startoftext|>", "<|endoftext|>": "<|endoftext|>"}
        self.sot = self.encoder["<|startoftext|>"]
        self.eot = self.encoder["<|endoftext|>"]

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        pairs = get_pairs(word)
        if not pairs:
            return token + "</w>"
        while True:
            bigram = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word, i = [], 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                    new_word.extend(word[i:j])
                    i = j
                except ValueError:
                    new_word.extend(word[i:])
                    break
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = get_pairs(word)
        word = " ".join(word)
        self.cache[token] = word
        return word

    @staticmethod
    def clean(text):
        text = html.unescape(html.unescape(text)).strip()  # ftfy.fix_text = identity here
        out, prev_ws = [], False  # collapse \s+ (Unicode White_Space) to one space
        for ch in text:
            if ch in _WS:
                if not prev_ws:
                    out.append(" ")
                prev_ws = True
            else:
                out.append(ch)
                prev_ws = False
        return "".join(out).strip().lower()

    def encode(self, text):
        ids = []
        for token in _pre_tokenize(self.clean(text)):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(token).split(" "))
        return ids

    def tokenize(self, texts, context_length=77, truncate=True):
        if isinstance(texts, str):
            texts = [texts]
        result = torch.zeros(len(texts), context_length, dtype=torch.long)
        for i, t in enumerate(texts):
            toks = [self.sot] + self.encode(t) + [self.eot]
            if len(toks) > context_length:
                if not truncate:
                    raise RuntimeError(f"input too long: {t!r}")
                toks = toks[:context_length]
                toks[-1] = self.eot
            result[i, :len(toks)] = torch.tensor(toks)
        return result


def check_tokenizer(tok, path="/work/shared/fixtures/tokenizer/public.jsonl"):
    bad = 0
    n = 0
    with open(path) as f:
        for line in f:
            rec = json.loads(line)
            n += 1
            ids = tok.tokenize(rec["text"])[0].tolist()
            if ids != rec["ids"]:
                bad += 1
                if bad <= 5:
                    print(f"tokenizer mismatch: {rec['text']!r}\n  got  {ids[:20]}\n  want {rec['ids'][:20]}")
    print(f"tokenizer check: {n - bad}/{n} strings match public.jsonl", flush=True)
    return bad == 0


# =============================================================================================
# Model: OpenAI clip/model.py (ViT variant), names and forward unchanged. encode_text accepts
# tokens cropped to any length <= 77 (the causal mask makes the result at the end-of-text token
# identical to the full 77-token forward).
class LayerNorm(nn.LayerNorm):
    def forward(self, x):
        orig_type = x.dtype
        ret = super().forward(x.type(torch.float32))
        return ret.type(orig_type)


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, d_model, n_head, causal=False):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_head)
        self.ln_1 = LayerNorm(d_model)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(d_model, d_model * 4)),
            ("gelu", QuickGELU()),
            ("c_proj", nn.Linear(d_model * 4, d_model)),
        ]))
        self.ln_2 = LayerNorm(d_model)
        self.causal = causal

    def attention(self, x):
        mask = None
        if self.causal:
            n = x.shape[0]
            mask = torch.full((n, n), float("-inf"), dtype=x.dtype).triu_(1)
        return self.attn(x, x, x, need_weights=False, attn_mask=mask)[0]

    def forward(self, x):
        if FAST[0]:
            return self.fast_forward(x)
        x = x + self.attention(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x

    def fast_forward(self, x):
        """The same computation as forward() (same parameters, same math as
        nn.MultiheadAttention), with every linear layer run as a 1x1 convolution: this Debian
        torch links the reference netlib BLAS (~0.3 GFLOP/s) while convolutions go to oneDNN."""
        L, B, C = x.shape
        h = self.attn.num_heads
        d = C // h
        qkv = fast_linear(self.ln_1(x), self.attn.in_proj_weight, self.attn.in_proj_bias)
        q, k, v = qkv.chunk(3, dim=-1)
        q = q.reshape(L, B * h, d).transpose(0, 1) * (d ** -0.5)
        k = k.reshape(L, B * h, d).transpose(0, 1)
        v = v.reshape(L, B * h, d).transpose(0, 1)
        att = grouped_mm(q, k.transpose(1, 2))
        if self.causal:
            att = att + torch.full((L, L), float("-inf"), dtype=x.dtype).triu_(1)
        att = att.softmax(dim=-1)
        o = grouped_mm(att, v).transpose(0, 1).reshape(L, B, C)
        x = x + fast_linear(o, self.attn.out_proj.weight, self.attn.out_proj.bias)
        y = fast_linear(self.ln_2(x), self.mlp.c_fc.weight, self.mlp.c_fc.bias)
        y = y * torch.sigmoid(1.702 * y)
        return x + fast_linear(y, self.mlp.c_proj.weight, self.mlp.c_proj.bias)


FAST = [True]


def grouped_mm(a, b):
    """Batched matmul [G,M,K] @ [G,K,N] as a grouped 1x1 convolution (oneDNN; torch.bmm goes to
    the slow reference BLAS here)."""
    g, m, k = a.shape
    n = b.shape[2]
    y = F.conv1d(a.transpose(1, 2).reshape(1, g * k, m), b.transpose(1, 2).reshape(g * n, k, 1), groups=g)
    return y.reshape(g, n, m).transpose(1, 2)


def fast_linear(x, w, b):
    shp = x.shape
    y = F.conv1d(x.reshape(-1, shp[-1]).t().unsqueeze(0), w.unsqueeze(-1), b)[0].t()
    return y.reshape(*shp[:-1], w.shape[0])


class Transformer(nn.Module):
    def __init__(self, width, layers, heads, causal=False):
        super().__init__()
        self.width, self.layers = width, layers
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads, causal) for _ in range(layers)])

    def forward(self, x):
        return self.resblocks(x)


class VisionTransformer(nn.Module):
    def __init__(self, input_resolution, patch_size, width, layers, heads, output_dim):
        super().__init__()
        self.input_resolution = input_resolution
        self.output_dim = output_dim
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((input_resolution // patch_size) ** 2 + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def forward(self, x):
        x = self.conv1(x)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        x = torch.cat([self.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype), x], dim=1)
        x = x + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x)
        x = x.permute(1, 0, 2)
        x = self.transformer(x)
        x = x.permute(1, 0, 2)
        x = self.ln_post(x[:, 0, :])
        return x @ self.proj


class CLIP(nn.Module):
    def __init__(self, embed_dim, image_resolution, vision_layers, vision_width, vision_patch_size,
                 context_length, vocab_size, transformer_width, transformer_heads, transformer_layers):
        super().__init__()
        self.context_length = context_length
        vision_heads = vision_width // 64  # OpenAI build_model() rule
        self.visual = VisionTransformer(image_resolution, vision_patch_size, vision_width,
                                        vision_layers, vision_heads, embed_dim)
        self.transformer = Transformer(transformer_width, transformer_layers, transformer_heads, causal=True)
        self.vocab_size = vocab_size
        self.token_embedding = nn.Embedding(vocab_size, transformer_width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, transformer_width))
        self.ln_final = LayerNorm(transformer_width)
        self.text_projection = nn.Parameter(torch.empty(transformer_width, embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]) * np.log(1 / 0.07))
        self.initialize_parameters()

    def initialize_parameters(self):
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        for tr in (self.transformer, self.visual.transformer):
            proj_std = (tr.width ** -0.5) * ((2 * tr.layers) ** -0.5)
            attn_std = tr.width ** -0.5
            fc_std = (2 * tr.width) ** -0.5
            for block in tr.resblocks:
                nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
                nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
                nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
                nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=self.transformer.width ** -0.5)

    def encode_image(self, image):
        return self.visual(image)

    def encode_text(self, text):
        eot_pos = text.argmax(dim=-1)
        n = int(eot_pos.max()) + 1  # crop after the last end-of-text token: same result
        text = text[:, :n]
        x = self.token_embedding(text) + self.positional_embedding[:n]
        x = x.permute(1, 0, 2)
        x = self.transformer(x)
        x = x.permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), eot_pos] @ self.text_projection

    def forward(self, image, text):
        logits_per_image = clip_scores(self, image, text)["logits_per_image"]
        return logits_per_image, logits_per_image.t()


def clip_scores(model, image, text):
    """OpenAI's CLIP.forward, keeping its intermediates (any model with encode_image, encode_text
    and logit_scale: this file's CLIP or clip.model.CLIP): the embeddings, their L2-normalised rows,
    exp(logit_scale) and logits_per_image = exp(logit_scale) * cosine."""
    img = model.encode_image(image)
    txt = model.encode_text(text)
    img_n = img / img.norm(dim=1, keepdim=True)
    txt_n = txt / txt.norm(dim=1, keepdim=True)
    scale = model.logit_scale.exp()
    return {"image_embeds": img, "text_embeds": txt, "image_embeds_norm": img_n, "text_embeds_norm": txt_n,
            "logit_scale_exp": scale, "logits_per_image": scale * img_n @ txt_n.t()}


# =============================================================================================
# data
MEAN_T = torch.tensor(CLIP_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
STD_T = torch.tensor(CLIP_STD, dtype=torch.float32).view(1, 3, 1, 1)


def normalise_u8(img_u8):
    """uint8 [B,H,W,3] -> float32 [B,3,H,W], exactly (u8/255 - mean)/std in float32."""
    x = torch.from_numpy(np.ascontiguousarray(img_u8)).permute(0, 3, 1, 2).float() / 255.0
    return (x - MEAN_T) / STD_T


def augment(x01, bbox, g, size):
    """SimCLR-style augmentation on float [B,3,H,W] in [0,1]: random resized crop that keeps the
    whole shape (crop area 35-100%, aspect 3/4-4/3, bilinear), horizontal flip, then with p=0.8
    brightness and contrast jitter (factors 0.6-1.4; no hue/saturation jitter: colour is label)."""
    B = x01.shape[0]
    u = lambda *s: torch.rand(*s, generator=g)
    area = 0.35 + 0.65 * u(B)
    logr = (u(B) * 2 - 1) * math.log(4 / 3)
    ar = torch.exp(logr)
    cw = torch.sqrt(area * ar) * size
    ch = torch.sqrt(area / ar) * size
    bb = torch.from_numpy(bbox).float()
    bw = bb[:, 2] - bb[:, 0] + 2
    bh = bb[:, 3] - bb[:, 1] + 2
    cw = torch.clamp(torch.maximum(cw, bw), max=size)
    ch = torch.clamp(torch.maximum(ch, bh), max=size)
    # crop origin: inside the image and containing the bbox
    lo_x = torch.clamp(bb[:, 2] + 1 - cw, min=0)
    hi_x = torch.clamp(bb[:, 0] - 1, max=size - cw)
    lo_y = torch.clamp(bb[:, 3] + 1 - ch, min=0)
    hi_y = torch.clamp(bb[:, 1] - 1, max=size - ch)
    x0 = lo_x + (hi_x - lo_x).clamp(min=0) * u(B)
    y0 = lo_y + (hi_y - lo_y).clamp(min=0) * u(B)
    flip = (u(B) < 0.5).float() * 2 - 1
    # affine_grid maps output [-1,1] to input [-1,1] (align_corners=False)
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0] = cw / size * flip
    theta[:, 0, 2] = (x0 + cw / 2) / size * 2 - 1
    theta[:, 1, 1] = ch / size
    theta[:, 1, 2] = (y0 + ch / 2) / size * 2 - 1
    grid = F.affine_grid(theta, (B, 3, size, size), align_corners=False)
    x = F.grid_sample(x01, grid, mode="bilinear", padding_mode="border", align_corners=False)
    apply = (u(B) < 0.8).float().view(B, 1, 1, 1)
    bright = 1 + (u(B) * 0.8 - 0.4).view(B, 1, 1, 1) * apply
    contr = 1 + (u(B) * 0.8 - 0.4).view(B, 1, 1, 1) * apply
    x = (x * bright).clamp(0, 1)
    grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).mean(dim=(1, 2)).view(B, 1, 1, 1)
    x = ((x - grey) * contr + grey).clamp(0, 1)
    return (x - MEAN_T) / STD_T


class Pool:
    """A pool of rendered training images (seen combinations only), partly refreshed each step."""

    def __init__(self, rng, size, n, p_extra, chunk=512, extra_random=0.0, groups=0, group_size=4):
        self.rng, self.size = rng, size
        self.p_extra = p_extra
        self.extra_random = extra_random
        self.groups, self.group_size = groups, group_size
        cs, ss = self.sample(n)
        self.img = np.zeros((n, size, size, 3), np.uint8)
        self.bbox = np.zeros((n, 4), np.float32)
        for i in range(0, n, chunk):
            self.img[i:i + chunk], self.bbox[i:i + chunk] = tw.render(rng, cs[i:i + chunk], ss[i:i + chunk], size)
        self.col, self.shp = cs, ss

    def sample(self, n):
        cs, ss = tw.sample_combos(self.rng, n, tw.SEEN)
        extra = self.rng.random(n) < self.p_extra
        cs[extra] = len(tw.COLOURS) + self.rng.integers(0, len(tw.EXTRA_COLOURS), size=int(extra.sum()))
        if self.extra_random:
            # part of the extra-colour images get a fresh random hue instead of cyan/pink/white
            rnd = extra & (self.rng.random(n) < self.extra_random)
            cs[rnd] = tw.RANDOM_COLOUR
        return cs, ss

    def refresh(self, k):
        idx = self.rng.choice(len(self.col), size=k, replace=False)
        cs, ss = self.sample(k)
        self.img[idx], self.bbox[idx] = tw.render(self.rng, cs, ss, self.size)
        self.col[idx], self.shp[idx] = cs, ss

    def batch(self, b):
        """b random pool images; with groups > 0, the first groups*group_size of them are hard-
        negative groups: group_size images of one label colour with different shapes."""
        if not self.groups:
            return self.rng.integers(0, len(self.col), size=b)
        out = []
        key = self.col * len(tw.SHAPES) + self.shp
        for _ in range(self.groups):
            c = int(self.rng.integers(0, len(tw.COLOURS)))
            shapes = [s for s in range(len(tw.SHAPES)) if not tw.is_held_out(c, s)]
            for s in self.rng.permutation(shapes)[:self.group_size]:
                cand = np.flatnonzero(key == c * len(tw.SHAPES) + s)
                if len(cand):
                    out.append(cand[self.rng.integers(0, len(cand))])
        rest = b - len(out)
        return np.concatenate([np.array(out, np.int64), self.rng.integers(0, len(self.col), size=rest)])


class CaptionBank:
    def __init__(self, tok):
        caps = tw.all_captions()
        self.text = [c[0] for c in caps]
        self.col = np.array([c[1] for c in caps])
        self.shp = np.array([c[2] for c in caps])
        self.tokens = tok.tokenize(self.text)
        self.full = {}
        self.colour_only = {}
        self.shape_only = {}
        for i, (t, c, s) in enumerate(caps):
            if c >= 0 and s >= 0:
                self.full.setdefault((c, s), []).append(i)
            elif c >= 0:
                self.colour_only.setdefault(c, []).append(i)
            else:
                self.shape_only.setdefault(s, []).append(i)

    def draw(self, rng, cols, shps, p_colour, p_shape):
        out = np.empty(len(cols), np.int64)
        r = rng.random(len(cols))
        for i, (c, s) in enumerate(zip(cols, shps)):
            if c >= len(tw.COLOURS):  # extra (non-label) colour: shape-only caption
                lst = self.shape_only[s]
            elif r[i] < p_colour:
                lst = self.colour_only[c]
            elif r[i] < p_colour + p_shape:
                lst = self.shape_only[s]
            else:
                lst = self.full[(c, s)]
            out[i] = lst[rng.integers(0, len(lst))]
        return out


def clip_loss(logits_per_image, img_col, img_shp, cap_col, cap_shp, lam):
    """L = 1/N sum_i [lam * l_i(image->text) + (1-lam) * l_i(text->image)]: the CLIP paper's
    symmetric cross-entropy over the NxN similarity matrix (logits already scaled by the learned
    temperature exp(logit_scale) = 1/tau). Targets: a caption is a positive for every image it
    is true of (same colour where it names one, same shape where it names one), uniformly
    weighted; this removes the false negatives of repeated combinations in a batch."""
    pos = ((cap_col[None, :] < 0) | (cap_col[None, :] == img_col[:, None])) & \
          ((cap_shp[None, :] < 0) | (cap_shp[None, :] == img_shp[:, None]))
    pos = pos.float()
    t_i2t = pos / pos.sum(dim=1, keepdim=True)
    t_t2i = pos / pos.sum(dim=0, keepdim=True)
    l_i2t = -(t_i2t * F.log_softmax(logits_per_image, dim=1)).sum(dim=1)
    l_t2i = -(t_t2i * F.log_softmax(logits_per_image, dim=0)).sum(dim=0)
    return (lam * l_i2t + (1 - lam) * l_t2i).mean()


# =============================================================================================
# evaluation
def make_eval_set(seed, per_combo, size):
    rng = np.random.default_rng(seed)
    pairs = [(c, s) for c in range(len(tw.COLOURS)) for s in range(len(tw.SHAPES))] * per_combo
    pairs = np.array(pairs)
    pairs = pairs[rng.permutation(len(pairs))]
    img, _ = tw.render(rng, pairs[:, 0], pairs[:, 1], size)
    return img, pairs[:, 0], pairs[:, 1]


def prompt_sets():
    labels = tw.label_names()
    return (labels,
            [TEMPLATE.format(l) for l in labels],
            [COLOUR_TEMPLATE.format(c) for c in tw.COLOURS],
            [SHAPE_TEMPLATE.format(s) for s in tw.SHAPES])


@torch.no_grad()
def zero_shot(model, tok, img_u8, batch=256):
    model.eval()
    _, full_p, col_p, shp_p = prompt_sets()
    feats = []
    for i in range(0, len(img_u8), batch):
        f = model.encode_image(normalise_u8(img_u8[i:i + batch]))
        feats.append(f / f.norm(dim=1, keepdim=True))
    imf = torch.cat(feats)
    scale = model.logit_scale.exp()
    out = {}
    for name, prompts in (("full", full_p), ("colour", col_p), ("shape", shp_p)):
        tf = model.encode_text(tok.tokenize(prompts))
        tf = tf / tf.norm(dim=1, keepdim=True)
        logits = scale * imf @ tf.t()
        out[name] = logits
    return out


def accuracies(out, cols, shps):
    lab = torch.from_numpy(cols * len(tw.SHAPES) + shps)
    held = torch.from_numpy(np.array([tw.is_held_out(c, s) for c, s in zip(cols, shps)]))
    pred = out["full"].argmax(1)
    ok = pred == lab
    return {
        "seen_top1": ok[~held].float().mean().item(),
        "held_out_top1": ok[held].float().mean().item() if held.any() else float("nan"),
        "colour_only": (out["colour"].argmax(1) == torch.from_numpy(cols)).float().mean().item(),
        "shape_only": (out["shape"].argmax(1) == torch.from_numpy(shps)).float().mean().item(),
    }


def fmt_acc(a):
    return (f"seen {100 * a['seen_top1']:.1f}%  held-out {100 * a['held_out_top1']:.1f}%  "
            f"colour {100 * a['colour_only']:.1f}%  shape {100 * a['shape_only']:.1f}%")


# =============================================================================================
def build(args):
    return CLIP(embed_dim=args.embed_dim, image_resolution=args.image_size, vision_layers=args.vision_layers,
                vision_width=args.vision_width, vision_patch_size=args.patch_size, context_length=77,
                vocab_size=49408, transformer_width=args.text_width,
                transformer_heads=max(1, args.text_width // 64), transformer_layers=args.text_layers)


def param_groups(model, wd):
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if p.ndim < 2 or "embedding" in n or n.endswith("logit_scale") or "ln_" in n:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


def train(args, tok):
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    g = torch.Generator().manual_seed(args.seed + 1)
    model = build(args)
    if args.init:
        model.load_state_dict({k: v.float() for k, v in torch.load(args.init).items()})
        print(f"initialised from {args.init}", flush=True)
    nparams = sum(p.numel() for p in model.parameters())
    print(f"model: {nparams / 1e6:.2f}M params ({model.token_embedding.weight.numel() / 1e6:.2f}M in the token "
          f"embedding)", flush=True)
    opt = torch.optim.AdamW(param_groups(model, args.wd), lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    t0 = time.time()
    pool = Pool(rng, args.image_size, args.pool, args.p_extra, extra_random=args.extra_random,
                groups=args.hard_groups, group_size=args.group_size)
    bank = CaptionBank(tok)
    print(f"pool of {args.pool} images rendered in {time.time() - t0:.1f}s; {len(bank.text)} captions", flush=True)
    val_img, val_c, val_s = make_eval_set(args.seed + 777, 4, args.image_size)
    t0 = time.time()
    ema = None
    for step in range(1, args.steps + 1):
        if step <= args.warmup:
            lr = args.lr * step / args.warmup
        else:
            prog = (step - args.warmup) / max(1, args.steps - args.warmup)
            lr = args.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * prog)))
        for grp in opt.param_groups:
            grp["lr"] = lr
        if args.refresh:
            pool.refresh(args.refresh)
        idx = pool.batch(args.batch)
        cols, shps = pool.col[idx], pool.shp[idx]
        cap = bank.draw(rng, cols, shps, args.p_colour, args.p_shape)
        x01 = torch.from_numpy(pool.img[idx]).permute(0, 3, 1, 2).float() / 255.0
        model.train()
        images = augment(x01, pool.bbox[idx], g, args.image_size)
        logits_per_image, _ = model(images, bank.tokens[cap])
        loss = clip_loss(logits_per_image, torch.from_numpy(cols), torch.from_numpy(shps),
                         torch.from_numpy(bank.col[cap]), torch.from_numpy(bank.shp[cap]), args.lam)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % args.log_every == 0 or step == args.steps:
            el = time.time() - t0
            msg = (f"step {step}/{args.steps}  loss {ema:.3f}  lr {lr:.2e}  T=1/{model.logit_scale.exp().item():.1f}  "
                   f"{el / 60:.1f} min  {step * args.batch / el:.0f} img/s")
            if step % (args.log_every * args.eval_every) == 0 or step == args.steps:
                msg += "  | val " + fmt_acc(accuracies(zero_shot(model, tok, val_img), val_c, val_s))
            print(msg, flush=True)
        if step % 500 == 0:
            torch.save(model.state_dict(), args.state_dict + ".ckpt")
        if args.max_minutes and time.time() - t0 > args.max_minutes * 60:
            print(f"stopping at step {step}: --max-minutes reached", flush=True)
            break
    print(f"training wall time {(time.time() - t0) / 60:.1f} min", flush=True)
    return model


def fp16_round(model):
    """Round every floating tensor to fp16 (as shipped) and return an fp32 model for evaluation."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    return model


def write_outputs(args, model, tok):
    labels, full_p, col_p, shp_p = prompt_sets()
    FAST[0] = False  # reference outputs with the unmodified OpenAI forward (nn.MultiheadAttention)
    os.makedirs(os.path.dirname(args.state_dict) or ".", exist_ok=True)
    sd = OrderedDict((k, v.detach().half().clone()) for k, v in model.state_dict().items())
    torch.save(sd, args.state_dict)
    print(f"state dict (fp16) saved to {args.state_dict}", flush=True)

    # eval fixture
    img, cols, shps = make_eval_set(args.eval_seed, args.eval_per_combo, args.image_size)
    out = zero_shot(model, tok, img)
    acc = accuracies(out, cols, shps)
    print("EVAL (PyTorch fp32, fp16-rounded weights): " + fmt_acc(acc), flush=True)
    fix = os.path.join(ROOT, "tests/data/toy_eval")
    os.makedirs(fix, exist_ok=True)
    np.save(os.path.join(fix, "images_u8.npy"), img)
    probs = out["full"].softmax(1)
    rnd = lambda t: [float(f"{v:.7g}") for v in t.tolist()]
    items = []
    for i in range(len(img)):
        c, s = int(cols[i]), int(shps[i])
        items.append({
            "colour": tw.COLOURS[c], "shape": tw.SHAPES[s], "label": tw.label_index(c, s),
            "held_out": tw.is_held_out(c, s),
            "pred": int(out["full"][i].argmax()), "logits": rnd(out["full"][i]), "probs": rnd(probs[i]),
            "colour_pred": int(out["colour"][i].argmax()), "colour_logits": rnd(out["colour"][i]),
            "shape_pred": int(out["shape"][i].argmax()), "shape_logits": rnd(out["shape"][i]),
        })
    meta = {
        "description": "zeroclip toy CLIP accuracy fixture, written by weights_tools/train_toy.py. images_u8.npy: "
                       "uint8 [N,H,W,3] raw pixels at the model input resolution (no resize/crop needed); "
                       "normalise as float32 (u8/255 - mean)/std. logits = exp(logit_scale) * cosine, from a "
                       "float32 PyTorch forward of the fp16-rounded weights that are shipped.",
        "model": "examples/models/zeroclip-toy-vit.safetensors",
        "image_size": args.image_size, "image_mean": list(CLIP_MEAN), "image_std": list(CLIP_STD),
        "seed": args.eval_seed, "n_images": len(img),
        "labels": labels, "template": TEMPLATE, "prompts": full_p,
        "colours": tw.COLOURS, "colour_template": COLOUR_TEMPLATE, "colour_prompts": col_p,
        "shapes": tw.SHAPES, "shape_template": SHAPE_TEMPLATE, "shape_prompts": shp_p,
        "held_out": [tw.label_names()[tw.label_index(c, s)] for c, s in tw.HELD_OUT],
        "logit_scale_exp": float(model.logit_scale.exp()),
        "pytorch_accuracy": acc,
        "items": items,
    }
    with open(os.path.join(fix, "eval.json"), "w") as f:
        json.dump(meta, f, separators=(",", ":"))
    print(f"fixture written to {fix} ({len(img)} images)", flush=True)

    # labels + example images
    with open(os.path.join(ROOT, "examples/labels.txt"), "w") as f:
        f.write("\n".join(labels) + "\n")
    write_examples(args, model, tok)
    return acc


def write_examples(args, model, tok):
    from PIL import Image
    d = os.path.join(ROOT, "examples/images")
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(args.eval_seed + 1)
    seen = [(c, s) for c, s in tw.SEEN]
    picks = [seen[i] for i in rng.permutation(len(seen))[:12]] + list(tw.HELD_OUT[:4])
    sizes = [160, 192, 224, 256]
    labels, full_p, _, _ = prompt_sets()
    imgs = []
    names = []
    for k, (c, s) in enumerate(picks):
        size = sizes[k % 4]
        im, _ = tw.render(rng, np.array([c]), np.array([s]), size=size)
        name = f"{tw.COLOURS[c]}_{tw.SHAPES[s]}.png"
        if tw.is_held_out(c, s):
            name = "held_out_" + name
        Image.fromarray(im[0]).save(os.path.join(d, name))
        # the official preprocessing: bicubic resize of the short side + centre crop (square here)
        imgs.append(np.asarray(Image.fromarray(im[0]).resize((args.image_size, args.image_size), Image.BICUBIC)))
        names.append((name, tw.label_index(c, s)))
    out = zero_shot(model, tok, np.stack(imgs))
    probs = out["full"].softmax(1)
    ok = 0
    for i, (name, lab) in enumerate(names):
        p = int(probs[i].argmax())
        ok += p == lab
        print(f"  example {name:32s} -> {labels[p]:16s} p={probs[i, p]:.3f}{'' if p == lab else '  (WRONG)'}")
    print(f"examples: {ok}/{len(names)} correct", flush=True)


def convert(args):
    conv = os.path.join(HERE, "convert.py")
    dst = os.path.join(ROOT, "examples/models/zeroclip-toy-vit.safetensors")
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    waited = 0
    while not os.path.exists(conv) and waited < args.wait_convert:
        print("waiting for weights_tools/convert.py ...", flush=True)
        time.sleep(30)
        waited += 30
    if not os.path.exists(conv):
        print(f"weights_tools/convert.py not found: state dict left at {args.state_dict}", flush=True)
        return False
    cmd = ["/usr/bin/python3", conv, args.state_dict, dst, "--dtype", "f16"]
    print("running: " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd)
    if r.returncode == 0 and os.path.exists(dst):
        print(f"wrote {dst} ({os.path.getsize(dst) / 1e6:.2f} MB)", flush=True)
        return True
    print(f"convert.py failed (rc {r.returncode}); state dict left at {args.state_dict}", flush=True)
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--eval-seed", type=int, default=20260707)
    ap.add_argument("--eval-per-combo", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=48)
    ap.add_argument("--patch-size", type=int, default=8)
    ap.add_argument("--vision-width", type=int, default=64)
    ap.add_argument("--vision-layers", type=int, default=3)
    ap.add_argument("--text-width", type=int, default=64)
    ap.add_argument("--text-layers", type=int, default=2)
    ap.add_argument("--embed-dim", type=int, default=64)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=2200)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--lam", type=float, default=0.5, help="weight of image->text term (CLIP: 0.5)")
    ap.add_argument("--p-colour", type=float, default=0.10, help="share of colour-only captions")
    ap.add_argument("--p-shape", type=float, default=0.35, help="share of shape-only captions")
    ap.add_argument("--p-extra", type=float, default=0.15,
                    help="share of training images in a non-label colour (captioned by shape only)")
    ap.add_argument("--extra-random", type=float, default=0.0,
                    help="share of the non-label-colour images drawn in a random hue (far from the palette)")
    ap.add_argument("--hard-groups", type=int, default=0,
                    help="per batch, this many groups of --group-size same-colour images with different "
                         "shapes (hard negatives on shape); the rest of the batch is random")
    ap.add_argument("--group-size", type=int, default=4)
    ap.add_argument("--pool", type=int, default=8000)
    ap.add_argument("--refresh", type=int, default=32, help="pool images re-rendered per step")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--eval-every", type=int, default=8, help="in units of log lines")
    ap.add_argument("--max-minutes", type=float, default=0, help="safety stop (0 = off; breaks reproducibility)")
    ap.add_argument("--init", default="", help="start from this state dict (fine-tuning)")
    ap.add_argument("--state-dict", default="/tmp/zeroclip-toy-vit.pt")
    ap.add_argument("--wait-convert", type=int, default=1200, help="seconds to wait for convert.py")
    ap.add_argument("--no-outputs", action="store_true", help="train and report only")
    ap.add_argument("--check-tokenizer", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tok = SimpleTokenizer()
    if args.check_tokenizer:
        sys.exit(0 if check_tokenizer(tok) else 1)
    print(f"config: {vars(args)}", flush=True)
    model = train(args, tok)
    fp16_round(model)
    if args.no_outputs:
        torch.save(OrderedDict((k, v.detach().half().clone()) for k, v in model.state_dict().items()), args.state_dict)
        img, cols, shps = make_eval_set(args.eval_seed, args.eval_per_combo, args.image_size)
        print("EVAL: " + fmt_acc(accuracies(zero_shot(model, tok, img), cols, shps)), flush=True)
        return
    write_outputs(args, model, tok)
    convert(args)


if __name__ == "__main__":
    main()
