"""What the CLI tests share: where the binary, the sources and the fixtures are (ctest sets
ZEROCLIP_CLI, ZEROCLIP_SOURCE_DIR and ZEROCLIP_FIXTURES), running the binary, and the rule for a
missing binary or fixtures folder: skipped (and counted) on a developer's machine, a failure in CI
(CI=true), where nothing may pass by not running."""
import os
import subprocess
import unittest

CLI = os.environ.get("ZEROCLIP_CLI", "")
SOURCE = os.environ.get("ZEROCLIP_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
FIXTURES = os.environ.get("ZEROCLIP_FIXTURES", os.path.join(SOURCE, "..", "shared", "fixtures"))
IMAGES = os.path.join(FIXTURES, "images")
# The toy model and photos shipped in examples/ (the tests that need no fixtures use them).
TOY_MODEL = os.path.join(SOURCE, "examples/models/zeroclip-toy-vit.safetensors")
EXAMPLE_IMAGES = os.path.join(SOURCE, "examples/images")
IN_CI = os.environ.get("CI", "") in ("true", "1")


def run(*args, check=True, timeout=300, text=True, ok=(0,), **kwargs):
    """Runs `zeroclip ARGS` (text=False: stdout and stderr stay bytes; `err` is stderr decoded);
    with check, an exit status not in `ok` is a test failure showing stderr."""
    proc = subprocess.run([CLI, *args], capture_output=True, text=text, timeout=timeout, **kwargs)
    proc.err = proc.stderr if text else proc.stderr.decode("utf-8", "replace")
    if check and proc.returncode not in ok:
        raise AssertionError(f"zeroclip {' '.join(map(str, args))} exited {proc.returncode}: {proc.err}")
    return proc


def missing_prerequisite(fixtures=True):
    """Why the CLI tests cannot run here, or None."""
    if not CLI or not os.path.exists(CLI):
        return "ZEROCLIP_CLI is not set to the built binary (%r)" % CLI
    if fixtures and not os.path.isdir(FIXTURES):
        return "fixtures folder %s not found (set ZEROCLIP_FIXTURES)" % FIXTURES
    return None


def needs_binary(cls):
    """needs_cli for tests that use only examples/ (no fixtures)."""
    return needs_cli(cls, fixtures=False)


def needs_cli(cls, fixtures=True):
    """Class decorator for tests that run the binary on the fixtures: without them the class is
    skipped, except in CI, where every test of it fails with the reason."""
    problem = missing_prerequisite(fixtures)
    if problem is None:
        return cls
    if not IN_CI:
        return unittest.skip(problem)(cls)

    def fail(_cls):
        raise AssertionError(problem + " (CI=true: a missing prerequisite fails the run instead of skipping)")
    cls.setUpClass = classmethod(fail)
    return cls
