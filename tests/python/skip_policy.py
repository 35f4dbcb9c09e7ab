"""When a Python test may skip: outside CI a missing fixture, tool or dependency skips the tests
that need it (and the run says so at the end); in CI (environment CI=true) it fails them
instead, so that a deleted fixture or a broken setup cannot pass as "OK".

A dependency the CI setup does not install on purpose (torch: scripts/setup.sh installs it only
with ZEROCLIP_WITH_TORCH=1) is declared with ``required_in_ci`` false, and is then reported as
an optional skip rather than failing.
"""

import os
import sys
import unittest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SKIPPED = []  # (module, test class name, reason) of every class skipped in this run


def require(condition, reason, required_in_ci=True):
    """Class decorator: run the tests when ``condition`` holds; otherwise skip them (recorded
    for the end-of-run summary), or, in CI and when ``required_in_ci``, make them fail."""
    def decorate(cls):
        if condition:
            return cls
        if IN_CI and required_in_ci:
            def setUpClass(klass):
                raise AssertionError("CI=true and %s: a missing requirement fails in CI instead of skipping" % reason)
            cls.setUpClass = classmethod(setUpClass)
            return cls
        SKIPPED.append((cls.__module__, cls.__name__, reason))
        return unittest.skip(reason)(cls)
    return decorate


def report_skips(module_name):
    """Print the classes this module skipped (call from tearDownModule): unittest's own summary
    only counts skipped tests; this says which ones and why, at the end of the run."""
    mine = [(c, r) for m, c, r in SKIPPED if m == module_name]
    if mine:
        sys.stderr.write("\n%s: %d test class(es) SKIPPED%s:\n" % (module_name, len(mine), " (optional in CI)" if IN_CI else ""))
        for cls, reason in mine:
            sys.stderr.write("  %s: %s\n" % (cls, reason))
