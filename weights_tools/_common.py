"""Small helpers shared by the weights_tools scripts (no third-party imports here).

Every command-line tool calls ``require_numpy(prog)`` before importing any module that needs
numpy, so that running one with an interpreter that lacks numpy gives a clear message instead
of a traceback.
"""

import os
import sys

NUMPY_HINT = (
    "numpy is required but could not be imported by this interpreter ({exe}).\n"
    "Run the tool with Debian's interpreter, e.g. `/usr/bin/python3 weights_tools/{prog} ...`,\n"
    "or install numpy for it (Debian/Ubuntu: `apt-get install python3-numpy`)."
)


class ToolError(Exception):
    """A user-facing error: bad or unsupported input. The message is printed as is."""


def require_numpy(prog):
    """Exit with status 1 and a helpful message when numpy is missing."""
    try:
        import numpy  # noqa: F401
    except ImportError:
        sys.stderr.write("%s: error: %s\n" % (prog, NUMPY_HINT.format(exe=sys.executable, prog=prog)))
        sys.exit(1)


def human_bytes(n):
    """1234567 -> '1.18 MiB'."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024.0 or unit == "TiB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.2f %s" % (n, unit))
        n /= 1024.0
    return "%d B" % n


def quiet_broken_pipe():
    """Call when writing to stdout raised BrokenPipeError (e.g. `info.py X | head`): silence
    the interpreter's second error at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
