#!/usr/bin/python3
"""The `example.zero_shot` ctest: runs examples/zero_shot_example.cpp on tiny-vit with chelsea.png
and rocket.jpg, and checks its exit status, that it prints exactly the top-2 labels of the official
implementation's float64 outputs (tests/data/zero_shot_example.json, made by
scripts/make_real_size_refs.py example) in order, and their probabilities: 1e-5 for the PNG (the
fixtures README's limit), 1e-3 for the JPEG (stb decodes it a few levels away from libjpeg-turbo).

    check_zero_shot_example.py EXAMPLE_BINARY FIXTURES_DIR
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main(binary, fixtures):
    spec = json.load(open(os.path.join(HERE, "..", "data", "zero_shot_example.json")))
    files = [os.path.join(fixtures, image["file"]) for image in spec["images"]]
    for path in files + [os.path.join(fixtures, spec["model"])]:
        if not os.path.exists(path):
            return "fixture %s not found" % path
    run = subprocess.run([binary, os.path.join(fixtures, spec["model"])] + files, capture_output=True, text=True,
                         timeout=120)
    sys.stdout.write(run.stdout)
    sys.stderr.write(run.stderr)
    if run.returncode != 0:
        return "exit status %d" % run.returncode
    expected = []
    for path, image in zip(files, spec["images"]):
        for label in image["top"]:
            expected.append((path, label, image["probabilities"][spec["labels"].index(label)],
                             1e-3 if path.endswith(".jpg") else 1e-5))
    lines = run.stdout.splitlines()
    if len(lines) != len(expected):
        return "%d lines printed, %d expected" % (len(lines), len(expected))
    for line, (path, label, probability, limit) in zip(lines, expected):
        prefix = "%s: %s " % (path, label)
        if not line.startswith(prefix):
            return "printed %r, expected %r followed by the probability" % (line, prefix)
        try:
            printed = float(line[len(prefix):])
        except ValueError:
            return "no probability in %r" % line
        if not abs(printed - probability) <= limit:
            return "%s: probability %s, reference %.6f (limit %g)" % (prefix.strip(), printed, probability, limit)
    return None


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    problem = main(sys.argv[1], sys.argv[2])
    if problem:
        print("example.zero_shot: FAILED: " + problem, file=sys.stderr)
        sys.exit(1)
    print("example.zero_shot: labels, order and probabilities as the official float64 outputs")
