#!/usr/bin/python3
"""Independent Python reference for zeroclip's tokenizer tests: a port of OpenAI CLIP's
clip/simple_tokenizer.py + clip.tokenize (github.com/openai/CLIP, MIT licence, see
data/LICENSE-openai-clip), with ftfy.fix_text replaced by the identity (ftfy is not installable
here; zeroclip does not run it either).

It uses the `regex` module when importable (Debian: python3-regex), which makes it exact apart
from regex's own Unicode version; otherwise it falls back to `re` with approximations of \\p{L} /
\\p{N} (letters = [^\\W\\d_], numbers = [^\\W_] minus letters), good for ASCII and common scripts.

    /usr/bin/python3 scripts/reference_tokenizer.py [--bpe PATH.gz] [--context-length N]
        [--no-truncate] [--check-public public.jsonl] [--stdin [--hex]] [TEXT ...]

Prints a JSON array with one array of ids per text (the layout of `zeroclip tokenize`).
--stdin reads one text per line (bytes decoded as UTF-8 with errors="replace", like zeroclip);
with --hex each line is the hex of the text's bytes, so any byte string can be passed.
--check-public verifies every case of the fixtures' public.jsonl and exits non-zero on a mismatch.
"""
import argparse
import gzip
import html
import json
import os
import sys

try:
    import regex as rx
    HAVE_REGEX = True
except ImportError:  # approximate with the standard library
    import re as rx
    HAVE_REGEX = False

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from weights_tools.clip_arch import bytes_to_unicode as byte_alphabet  # noqa: E402  (numpy-free)
DEFAULT_BPE = os.path.join(HERE, '..', 'data', 'bpe_simple_vocab_16e6.txt.gz')


if HAVE_REGEX:
    SPLIT = rx.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"
                       r"[^\s\p{L}\p{N}]+", rx.IGNORECASE)
    SPACES = rx.compile(r'\s+')
else:
    SPLIT = rx.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|"
                       r"[^\s\w]+|_+", rx.IGNORECASE)
    SPACES = rx.compile(r'[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+')


def clean(text):
    text = html.unescape(html.unescape(text)).strip()  # ftfy.fix_text: identity here
    text = SPACES.sub(' ', text).strip()
    return text.lower()


class Reference:
    def __init__(self, bpe_path):
        lines = gzip.open(bpe_path).read().decode('utf-8').split('\n')
        merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]
        self.byte_map = byte_alphabet()
        vocab = list(self.byte_map.values())
        vocab += [v + '</w>' for v in vocab]
        vocab += [''.join(m) for m in merges]
        vocab += ['<|startoftext|>', '<|endoftext|>']
        self.ids = {tok: i for i, tok in enumerate(vocab)}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.memo = {'<|startoftext|>': ['<|startoftext|>'], '<|endoftext|>': ['<|endoftext|>']}

    def bpe(self, token):
        if token in self.memo:
            return self.memo[token]
        word = list(token[:-1]) + [token[-1] + '</w>']
        while len(word) > 1:
            pairs = set(zip(word, word[1:]))
            best = min(pairs, key=lambda p: self.ranks.get(p, float('inf')))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):  # merge every occurrence, left to right
                if i + 1 < len(word) and word[i] == best[0] and word[i + 1] == best[1]:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        self.memo[token] = word
        return word

    def pieces(self, text):
        out = []
        for tok in SPLIT.findall(clean(text)):
            out += self.bpe(''.join(self.byte_map[b] for b in tok.encode('utf-8')))
        return out

    def encode(self, text):
        return [self.ids[p] for p in self.pieces(text)]

    def tokenize(self, text, context_length=77, truncate=True):
        sot, eot = self.ids['<|startoftext|>'], self.ids['<|endoftext|>']
        toks = [sot] + self.encode(text) + [eot]
        if len(toks) > context_length:
            if not truncate:
                raise RuntimeError(f'Input {text} is too long for context length {context_length}')
            toks = toks[:context_length]
            toks[-1] = eot
        return toks + [0] * (context_length - len(toks))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('texts', nargs='*')
    ap.add_argument('--bpe', default=DEFAULT_BPE)
    ap.add_argument('--context-length', type=int, default=77)
    ap.add_argument('--no-truncate', action='store_true')
    ap.add_argument('--stdin', action='store_true')
    ap.add_argument('--hex', action='store_true')
    ap.add_argument('--check-public')
    a = ap.parse_args()
    ref = Reference(a.bpe)
    if not HAVE_REGEX:
        print('reference_tokenizer: `regex` missing, using `re` approximations', file=sys.stderr)
    if a.check_public:
        bad = total = 0
        for line in open(a.check_public, encoding='utf-8'):
            case = json.loads(line)
            total += 1
            full = ref.encode(case['text'])
            pieces = ['<|startoftext|>'] + ref.pieces(case['text']) + ['<|endoftext|>']
            if len(pieces) > 77:  # the fixtures list the pieces of the truncated ids
                pieces = pieces[:76] + ['<|endoftext|>']
            ok = (ref.tokenize(case['text']) == case['ids'] and len(full) + 2 == case['n_tokens']
                  and pieces == case['pieces'])
            if not ok:
                bad += 1
                print('MISMATCH', repr(case['text']), file=sys.stderr)
        print(f'{total - bad} passed, {bad} failed')
        return 1 if bad else 0
    texts = list(a.texts)
    if a.stdin:
        lines = sys.stdin.buffer.read().split(b'\n')
        if lines and lines[-1] == b'':
            lines.pop()  # the newline that ends the last line
        for raw in lines:
            texts.append((bytes.fromhex(raw.decode('ascii')) if a.hex else raw).decode('utf-8', 'replace'))
    rows = [ref.tokenize(t, a.context_length, not a.no_truncate) for t in texts]
    print('[' + ',\n '.join(json.dumps(r) for r in rows) + ']')
    return 0


if __name__ == '__main__':
    sys.exit(main())
