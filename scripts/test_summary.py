#!/usr/bin/python3
"""The closing count of scripts/test.sh: how many tests ran, failed and were skipped, from ctest's
JUnit files, down to the cases inside the ctest entries that hold many (the CUDA doctest binary,
the unittest suites). The last line is `N passed, N failed, N skipped`.

A skipped case is one that printed the skip mark of tests/test_util.hpp (doctest), one unittest
reports skipped, or a ctest entry not run. Skips saying "no CUDA device" are the GPU cases, the
only skips allowed under CI=true: any other makes the exit status 1.

    test_summary.py JUNIT.xml... [--note-skip REASON]...
Exit status: 0 nothing failed (and, in CI, nothing skipped but GPU cases); 1 otherwise.
"""
import argparse
import os
import re
import sys
import xml.etree.ElementTree as ET

SKIP_MARK = "zeroclip-test-skipped: "
GPU_SKIP = "no CUDA device"
DOCTEST_SUMMARY = re.compile(r"\[doctest\] test cases:\s*(\d+)\s*\|\s*(\d+) passed\s*\|\s*(\d+) failed")
UNITTEST_RAN = re.compile(r"^Ran (\d+) tests? in", re.M)
UNITTEST_RESULT = re.compile(r"^(OK|FAILED)(?: \((.*)\))?\s*$", re.M)
UNITTEST_SKIP = re.compile(r"\.\.\. skipped '(.*)'$", re.M)


def skip_reasons(output):
    return [line.split(SKIP_MARK, 1)[1].strip() for line in output.splitlines() if SKIP_MARK in line]


def count_entry(case):
    """(passed, failed, skipped reasons, detail or None) of one ctest entry."""
    name = case.get("name")
    status = case.get("status")
    out_node = case.find("system-out")
    output = out_node.text if out_node is not None and out_node.text else ""
    ctest_failed = status == "fail"

    ran = UNITTEST_RAN.search(output)
    result = UNITTEST_RESULT.findall(output)
    if ran and result:  # a unittest suite
        total = int(ran.group(1))
        fields = dict(kv.split("=") for kv in (result[-1][1] or "").split(", ") if "=" in kv)
        failed = int(fields.get("failures", 0)) + int(fields.get("errors", 0))
        skipped = int(fields.get("skipped", 0))
        reasons = UNITTEST_SKIP.findall(output)
        reasons += ["(unittest skip)"] * (skipped - len(reasons))
        failed = max(failed, 1) if ctest_failed else failed
        return total - failed - skipped, failed, reasons[:skipped], "%s (unittest): %d tests" % (name, total)

    summary = DOCTEST_SUMMARY.findall(output)
    if summary and status != "notrun":  # a doctest binary: one case (discovered) or all of its cases
        total, _, failed = (int(x) for x in summary[-1])
        reasons = skip_reasons(output) or ([] if total else ["ctest entry %s ran no test case" % name])
        failed = max(failed, 1) if ctest_failed else failed
        detail = "%s (doctest): %d cases" % (name, total) if total > 1 else None
        return max(0, total - failed - len(reasons)), failed, reasons, detail

    if status == "notrun":
        return 0, 0, skip_reasons(output) or ["ctest entry %s not run" % name], None
    if ctest_failed:
        return 0, 1, [], None
    return 1, 0, [], None


def main(argv):
    p = argparse.ArgumentParser()
    p.add_argument("junit", nargs="+")
    p.add_argument("--note-skip", action="append", default=[], help="a skip outside ctest (e.g. a build left out)")
    args = p.parse_args(argv)
    in_ci = os.environ.get("CI", "") in ("true", "1")

    passed = failed = 0
    skips, details, missing = list(args.note_skip), [], []
    entries = 0
    for path in args.junit:
        if not os.path.exists(path):
            missing.append(path)
            continue
        for case in ET.parse(path).getroot().iter("testcase"):
            entries += 1
            p_, f_, s_, detail = count_entry(case)
            passed, failed = passed + p_, failed + f_
            skips += s_
            if detail:
                details.append("  %s: %d passed, %d failed, %d skipped" % (detail, p_, f_, len(s_)))
    if missing:
        failed += 1
        print("test summary: no results in %s (ctest did not finish)" % ", ".join(missing))

    gpu = [s for s in skips if GPU_SKIP in s]
    other = [s for s in skips if GPU_SKIP not in s]
    print("test summary: %d ctest entries; inside the entries that hold many cases:" % entries)
    for line in details:
        print(line)
    if gpu:
        print("skipped, no GPU: %d CUDA cases" % len(gpu))
    for reason in sorted(set(other)):
        print("skipped: %s%s" % (reason, " (x%d)" % other.count(reason) if other.count(reason) > 1 else ""))
    status = 0 if failed == 0 else 1
    if in_ci and other:
        print("CI=true: %d skips other than the GPU cases fail the run (a missing fixture, tool or build)"
              % len(other))
        status = 1
    print("%d passed, %d failed, %d skipped" % (passed, failed, len(skips)))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
