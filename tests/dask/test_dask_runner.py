"""examples/dask/zeroclip_dask.py on a 2-worker LocalCluster: the same results as one process, still
when a worker process is killed mid-run, a rerun that skips done shards, and an output folder that is
not this run's refused. Needs Debian's python3-distributed: skipped without it, except in CI."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cli"))
from cli_util import CLI, IN_CI, SOURCE, needs_cli, run  # noqa: E402
import test_cli_stream as stream  # noqa: E402  (a module: its tests are not collected here)

RUNNER = os.path.join(SOURCE, "examples", "dask", "zeroclip_dask.py")
CLASSIFY = ["classify", "--model", stream.MODEL, "--labels-file", stream.LABELS, "--batch", "4"]

try:
    import distributed  # noqa: F401
    MISSING = None
except ImportError:
    MISSING = "python3-distributed is not installed (scripts/setup.sh installs it)"


def runner(out, *args, **kwargs):
    return subprocess.Popen([sys.executable, RUNNER, "--zeroclip", CLI, "--out", out, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def worker_pids(parent):
    """The Dask worker processes a LocalCluster spawned from `parent` (multiprocessing's spawn_main)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"spawn_main" in cmdline:
            pids.append(int(pid))
    return pids


@needs_cli
@unittest.skipIf(MISSING and not IN_CI, MISSING)
class DaskRunnerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if MISSING:
            raise AssertionError(MISSING + " (CI=true: a missing prerequisite fails the run)")
        cls.tmpdir = tempfile.TemporaryDirectory(prefix="zeroclip_dask_")
        cls.tmp = cls.tmpdir.name
        tiny = os.path.join(cls.tmp, "tiny.png")
        stream.write_png(tiny, 8, 8)
        examples = sorted(os.path.join(SOURCE, "examples", "images", n)
                          for n in os.listdir(os.path.join(SOURCE, "examples", "images")))
        cls.photos = os.path.join(cls.tmp, "photos")
        stream.link_farm(cls.photos, 480, [tiny] + examples)
        cls.single = run(*CLASSIFY, "--format", "jsonl", cls.photos).stdout

    @classmethod
    def tearDownClass(cls):
        cls.tmpdir.cleanup()

    def check_result(self, out, proc_err):
        with open(os.path.join(out, "merged.jsonl")) as f:
            self.assertEqual(f.read(), self.single, proc_err)
        with open(os.path.join(out, "manifest.json")) as f:
            manifest = json.load(f)
        self.assertEqual(manifest["files"], 480)
        self.assertEqual(sum(s["records"] for s in manifest["shards"]), 480)
        self.assertEqual([s["files"] for s in manifest["shards"]], [40] * 12)
        self.assertEqual(manifest["failures"], [])

    def test_two_workers_give_the_single_process_result_and_a_rerun_skips(self):
        out = os.path.join(self.tmp, "out")
        proc = runner(out, "--local-workers", "2", "--shard-size", "40", "--merge", self.photos, "--", *CLASSIFY)
        err = proc.communicate(timeout=300)[1]
        self.assertEqual(proc.returncode, 0, err)
        self.check_result(out, err)
        proc = runner(out, "--local-workers", "1", "--shard-size", "40", "--merge", self.photos, "--", *CLASSIFY)
        err = proc.communicate(timeout=300)[1]
        self.assertEqual(proc.returncode, 0, err)
        self.assertEqual(err.count("(already done)"), 12, err)
        self.check_result(out, err)
        # Another job's folder (other shard size, or a stranger's file) is refused before any work.
        proc = runner(out, "--local-workers", "1", "--shard-size", "50", self.photos, "--", *CLASSIFY)
        err = proc.communicate(timeout=60)[1]
        self.assertEqual(proc.returncode, 2, err)
        self.assertIn("lists other files", err)
        with open(os.path.join(out, "notes.txt"), "w") as f:
            f.write("mine\n")
        proc = runner(out, "--local-workers", "1", "--shard-size", "40", self.photos, "--", *CLASSIFY)
        err = proc.communicate(timeout=60)[1]
        self.assertEqual(proc.returncode, 2, err)
        self.assertIn("notes.txt", err)

    def test_a_killed_worker_changes_nothing(self):
        out = os.path.join(self.tmp, "out-killed")
        proc = runner(out, "--local-workers", "2", "--shard-size", "40", "--merge", self.photos, "--", *CLASSIFY)
        # Wait for the first finished shard (progress, not time), then kill a worker process outright.
        killed = None
        while proc.poll() is None and killed is None:
            done = [n for n in os.listdir(out) if n.endswith(".jsonl")] if os.path.isdir(out) else []
            workers = worker_pids(proc.pid)
            if done and workers:
                self.assertLess(len(done), 12, "every shard finished before a worker could be killed")
                killed = workers[0]
                os.kill(killed, signal.SIGKILL)
            os.sched_yield()
        err = proc.communicate(timeout=300)[1]
        self.assertIsNotNone(killed, err)
        self.assertEqual(proc.returncode, 0, err)
        self.check_result(out, err)
        self.assertEqual([n for n in os.listdir(out) if n.endswith(".partial")], [])


if __name__ == "__main__":
    unittest.main()
