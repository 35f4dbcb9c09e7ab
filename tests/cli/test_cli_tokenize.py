"""`zeroclip tokenize` against the official ids of the public tokenizer cases."""
import json
import os
import subprocess
import unittest

from cli_util import CLI, FIXTURES, needs_cli


@needs_cli
class TokenizeTest(unittest.TestCase):
    def setUp(self):
        with open(os.path.join(FIXTURES, "tokenizer/public.jsonl"), encoding="utf-8") as f:
            self.cases = [json.loads(line) for line in f]

    def tokenize(self, texts, *flags):
        proc = subprocess.run([CLI, "tokenize", *flags, "--stdin"], input="\n".join(texts) + "\n",
                              capture_output=True, text=True, encoding="utf-8", timeout=120)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        return json.loads(proc.stdout)

    def test_public_cases_through_stdin(self):
        single_line = [c for c in self.cases if "\n" not in c["text"] and "\r" not in c["text"]]
        for flags in ((), ("--model", os.path.join(FIXTURES, "models/tiny-vit/hf"))):
            got = self.tokenize([c["text"] for c in single_line], *flags)
            self.assertEqual(len(got), len(single_line))
            for ids, case in zip(got, single_line):
                self.assertEqual(ids, case["ids"], case["text"])

    def test_no_truncate_fails_on_long_text(self):
        proc = subprocess.run([CLI, "tokenize", "--no-truncate", "word " * 100], capture_output=True, text=True)
        self.assertEqual(proc.returncode, 1)
        proc = subprocess.run([CLI, "tokenize", "--bpe", "x.gz", "--model", "m", "a"], capture_output=True, text=True)
        self.assertEqual(proc.returncode, 2)


if __name__ == "__main__":
    unittest.main()
