#!/usr/bin/python3
"""The `fixtures.intact` ctest: every file of the shared fixtures is present and unchanged (the
checksums of SHA256SUMS, and the prompt files added after it), so that a deleted or damaged
fixture fails the run even where no test reads that file, and never turns into a skipped test.

    check_fixtures.py FIXTURES_DIR
Exit status: 0 intact; 1 a file is missing or differs (each is named).
"""
import hashlib
import json
import os
import sys

# Files the fixtures carry beyond SHA256SUMS: present and valid JSON.
UNLISTED = ["prompts/imagenet.json", "prompts/datasets.json"]


def problems(root):
    sums = os.path.join(root, "SHA256SUMS")
    if not os.path.isfile(sums):
        yield "%s not found (ZEROCLIP_FIXTURES or -DZEROCLIP_FIXTURES_DIR names the fixtures folder)" % sums
        return
    with open(sums) as f:
        entries = [line.split(None, 1) for line in f if line.strip()]
    if not entries:
        yield "%s lists no files" % sums
    for digest, name in entries:
        path = os.path.join(root, name.strip().lstrip("*"))
        if not os.path.isfile(path):
            yield "missing: %s" % path
            continue
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != digest:
            yield "differs from SHA256SUMS: %s" % path
    for name in UNLISTED:
        path = os.path.join(root, name)
        try:
            with open(path, encoding="utf-8") as f:
                json.load(f)
        except (OSError, ValueError) as e:
            yield "unreadable: %s (%s)" % (path, e)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    found = list(problems(sys.argv[1]))
    for p in found:
        print("fixtures: " + p, file=sys.stderr)
    if found:
        sys.exit(1)
    print("fixtures: all files present and unchanged in %s" % sys.argv[1])
