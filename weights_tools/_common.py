"""Small helpers shared by the weights_tools scripts (no third-party imports here).

Every command-line tool starts the same way (see convert.py): when run as a script it puts the
repository root on sys.path and calls ``require_numpy(prog)`` before importing any module that
needs numpy, so that an interpreter without numpy gives a clear message instead of a traceback;
its ``main`` then runs through ``run_main``, which turns every failure into one line on stderr.

Files are read through ``open_input`` / ``read_input`` (regular files only, never blocking on a
FIFO, size-limited) and written through ``atomic_output`` (temporary file in the target's
folder, fsync, rename), after ``check_output`` has refused outputs that would destroy an input.
"""

import contextlib
import errno
import os
import stat
import sys
import tempfile

NUMPY_HINT = (
    "numpy is required but could not be imported by this interpreter ({exe}).\n"
    "Run the tool with Debian's interpreter, e.g. `/usr/bin/python3 weights_tools/{prog} ...`,\n"
    "or install numpy for it (Debian/Ubuntu: `apt-get install python3-numpy`)."
)

# Largest small text/JSON input read whole (config.json, vocab.json, merges, data.pkl): the
# biggest real ones are a few MiB, so this only stops files meant to exhaust memory.
MAX_TEXT_INPUT = 64 * 1024 * 1024


class ToolError(Exception):
    """A user-facing error: bad or unsupported input. The message is printed as is (exit 1)."""


class UsageError(ToolError):
    """A command line that cannot be carried out, found before any work starts (exit 2)."""


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


def printable(path):
    """A file name for display: bytes that are not UTF-8 shown as \\xNN (not as surrogates)."""
    try:
        return os.fsencode(path).decode("utf-8", "backslashreplace")
    except (TypeError, ValueError):
        return str(path)


def _one_line(text):
    return " ".join(str(text).split("\n"))


def run_main(prog, body):
    """Run a tool's ``body()`` (returns the exit status) so that every failure is one line on
    stderr, never a traceback: ToolError 1, UsageError 2, out of memory 1, an OSError naming its
    file 1, Ctrl-C 130. Set ZEROCLIP_DEBUG=1 to see the traceback of an unexpected error."""
    try:
        return body()
    except UsageError as e:
        sys.stderr.write("%s: error: %s\n" % (prog, _one_line(e)))
        return 2
    except ToolError as e:
        sys.stderr.write("%s: error: %s\n" % (prog, _one_line(e)))
        return 1
    except MemoryError:
        sys.stderr.write("%s: error: out of memory\n" % prog)
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("%s: interrupted\n" % prog)
        return 130
    except BrokenPipeError:
        quiet_broken_pipe()
        return 0
    except OSError as e:
        where = "%s: " % e.filename if e.filename else ""
        sys.stderr.write("%s: error: %s%s\n" % (prog, where, e.strerror or e))
        return 1
    except Exception as e:  # a bug or an input no check foresaw: still one line
        if os.environ.get("ZEROCLIP_DEBUG"):
            raise
        sys.stderr.write("%s: error: unexpected %s: %s (set ZEROCLIP_DEBUG=1 for a traceback)\n"
                         % (prog, type(e).__name__, _one_line(e)))
        return 1


# ----------------------------------------------------------------------------- reading

def open_input(path, what="input"):
    """Open a regular file for binary reading. A FIFO, device or socket is refused without
    blocking (opened non-blocking, then checked); errors are ToolErrors naming the file."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise ToolError("%s: cannot open the %s: %s" % (path, what, e.strerror or e))
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ToolError("%s: the %s is a directory, not a file" % (path, what))
        if not stat.S_ISREG(st.st_mode):
            raise ToolError("%s: the %s is not a regular file (a device, FIFO or socket)" % (path, what))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_input(path, what="input", max_bytes=MAX_TEXT_INPUT):
    """The whole content of the regular file ``path``; larger than ``max_bytes`` is refused
    before anything is read."""
    with open_input(path, what) as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            raise ToolError("%s: the %s is %d bytes, more than the limit of %d" % (path, what, size, max_bytes))
        try:
            data = f.read(max_bytes + 1)
        except OSError as e:
            raise ToolError("%s: cannot read the %s: %s" % (path, what, e.strerror or e))
    if len(data) > max_bytes:
        raise ToolError("%s: the %s grew past the limit of %d bytes while being read" % (path, what, max_bytes))
    return data


# ----------------------------------------------------------------------------- writing

def check_output(path, inputs=()):
    """Refuse, before any work, an output that is a directory, a device / FIFO / socket, or the
    same file (device and inode, through links) as one of ``inputs``, or whose folder is
    missing. Raises UsageError."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise UsageError("%s: cannot use as output: %s" % (path, e.strerror or e))
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise UsageError("%s: the output is a directory; give a file name" % path)
        if not stat.S_ISREG(st.st_mode):
            raise UsageError("%s: the output is not a regular file (a device, FIFO or socket); "
                             "refusing to replace it" % path)
        for inp in inputs:
            if inp is None:
                continue
            try:
                ist = os.stat(inp)
            except OSError:
                continue
            if (ist.st_dev, ist.st_ino) == (st.st_dev, st.st_ino):
                raise UsageError("%s: the output is the same file as the input %s; refusing to overwrite it"
                                 % (path, inp))
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError("%s: the output folder %s does not exist" % (path, folder))


@contextlib.contextmanager
def atomic_output(path):
    """Context manager yielding a binary file that becomes ``path`` only when the block ends
    without an exception: written to a temporary file in the same folder, fsynced, renamed over
    the target, folder fsynced. On any failure the old ``path`` is untouched and the temporary
    file removed; an OSError (full disk, file too large, ...) becomes a ToolError naming
    ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path)[:100], suffix=".tmp", dir=folder)
    except OSError as e:
        raise ToolError("%s: cannot create a temporary file in %s: %s" % (path, folder, e.strerror or e))
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, path)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                raise ToolError("%s: cannot write: %s; the previous file, if any, is unchanged"
                                % (path, e.strerror))
            raise ToolError("%s: cannot write: %s" % (path, e.strerror or e))
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable; not possible everywhere, harmless to skip
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
