"""Workloads (issue 15): streamed output, --output FILE.partial + rename, --resume after SIGKILL and
SIGINT, --files-from, --shard K/N, the lock against two resumers, and memory that does not grow with
the number of files. On the toy model and thousands of symbolic links to a few small images."""
import fcntl
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import unittest
import zlib
import struct

import numpy as np

from cli_util import CLI, SOURCE, needs_cli, run

MODEL = os.path.join(SOURCE, "examples", "models", "zeroclip-toy-vit.safetensors")
LABELS = os.path.join(SOURCE, "examples", "labels.txt")
EXAMPLES = os.path.join(SOURCE, "examples", "images")


def write_png(path, width, height):
    """A small RGB PNG (decoding it costs next to nothing: the thousands of files stay fast)."""
    rows = b"".join(b"\0" + bytes((x * 37 + y * 11) % 256 for x in range(width * 3)) for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) +
                chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def link_farm(folder, count, targets):
    """`count` symbolic links img-NNNNNN.png in `folder`, cycling over `targets`; their paths, sorted."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(count):
        p = os.path.join(folder, f"img-{i:06d}.png")
        os.symlink(targets[i % len(targets)], p)
        paths.append(p)
    return paths


def fnv1a64(data):
    h = 0xcbf29ce484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def classify(*args, **kwargs):
    return run("classify", "--model", MODEL, "--labels-file", LABELS, *args, **kwargs)


def paths_of_jsonl(text):
    return [json.loads(line)["path"] for line in text.splitlines()]


def wait_for_lines(path, lines, proc):
    """Blocks until `path` holds `lines` whole lines (progress, not time), or the process ended."""
    while proc.poll() is None:
        try:
            with open(path, "rb") as f:
                if f.read().count(b"\n") >= lines:
                    return True
        except FileNotFoundError:
            pass
        os.sched_yield()
    return False


@needs_cli
class StreamTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmpdir = tempfile.TemporaryDirectory(prefix="zeroclip_stream_")
        cls.tmp = cls.tmpdir.name
        examples = sorted(os.path.join(EXAMPLES, n) for n in os.listdir(EXAMPLES))
        cls.files = link_farm(os.path.join(cls.tmp, "photos"), 600, examples)
        cls.reference = classify("--format", "jsonl", "--batch", "8", os.path.join(cls.tmp, "photos")).stdout

    @classmethod
    def tearDownClass(cls):
        cls.tmpdir.cleanup()

    def path(self, name):
        return os.path.join(self.tmp, name)

    def fresh(self, name):
        for suffix in ("", ".partial"):
            if os.path.exists(self.path(name + suffix)):
                os.remove(self.path(name + suffix))
        return self.path(name)

    def test_output_appears_before_the_run_ends(self):
        # The last file does not exist until the first line has been read: a run that printed only at
        # the end would report it missing. Streaming cannot get there first either: the 2,000 lines
        # overflow the pipe, which this test does not read until the file is there.
        folder = self.path("late")
        tiny = self.path("tiny.png")
        write_png(tiny, 8, 8)
        files = link_farm(folder, 2000, [tiny])
        late = os.path.join(folder, "zz-late.png")
        listing = self.path("late.txt")
        with open(listing, "w") as f:
            f.write("\n".join(files + [late]) + "\n")
        proc = subprocess.Popen([CLI, "classify", "--model", MODEL, "--labels-file", LABELS, "--format", "jsonl",
                                 "--batch", "4", "--files-from", listing], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        first = json.loads(proc.stdout.readline())
        self.assertIsNone(proc.poll())
        os.symlink(tiny, late)
        rest, err = proc.communicate(timeout=300)
        self.assertEqual(proc.returncode, 0, err)
        self.assertEqual(first["path"], files[0])
        last = json.loads(rest.splitlines()[-1])
        self.assertEqual(last["path"], late)
        self.assertIn("top", last)

    def test_output_file_is_renamed_when_complete(self):
        out = self.fresh("all.jsonl")
        classify("--format", "jsonl", "--batch", "8", "--output", out, self.path("photos"))
        with open(out) as f:
            self.assertEqual(f.read(), self.reference)
        self.assertFalse(os.path.exists(out + ".partial"))
        for fmt in ("json", "csv", "table"):  # every text format streams to --output the same as to stdout
            target = self.fresh("all." + fmt)
            classify("--format", fmt, "--output", target, EXAMPLES)
            with open(target) as f:
                self.assertEqual(f.read(), classify("--format", fmt, EXAMPLES).stdout, fmt)

    def test_sigkill_then_resume_equals_an_uninterrupted_run(self):
        for fmt in ("jsonl", "csv"):
            want = classify("--format", fmt, "--top-k", "3", self.path("photos")).stdout
            out = self.fresh("killed." + fmt)
            proc = subprocess.Popen([CLI, "classify", "--model", MODEL, "--labels-file", LABELS, "--format", fmt,
                                     "--top-k", "3", "--batch", "4", "--output", out, self.path("photos")],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.assertTrue(wait_for_lines(out + ".partial", 40, proc), "the run ended before it could be killed")
            proc.kill()
            proc.wait()
            self.assertFalse(os.path.exists(out))
            with open(out + ".partial", "ab") as f:  # as if killed in the middle of a record
                f.write(b'{"path":"' if fmt == "jsonl" else b"photos/img,1,red")
            proc = classify("--format", fmt, "--top-k", "3", "--output", out, "--resume", self.path("photos"))
            self.assertIn("resuming", proc.stderr)
            with open(out) as f:
                self.assertEqual(f.read(), want, fmt)
            self.assertFalse(os.path.exists(out + ".partial"))

    def test_sigint_and_sigterm_write_the_batch_and_exit_130(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            out = self.fresh("stopped.jsonl")
            proc = subprocess.Popen([CLI, "classify", "--model", MODEL, "--labels-file", LABELS, "--format", "jsonl",
                                     "--batch", "4", "--output", out, self.path("photos")],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            self.assertTrue(wait_for_lines(out + ".partial", 8, proc))
            proc.send_signal(sig)
            err = proc.communicate(timeout=120)[1]
            self.assertEqual(proc.returncode, 130, err)
            self.assertIn("--resume", err)
            with open(out + ".partial", "rb") as f:
                partial = f.read()
            self.assertTrue(partial.endswith(b"\n"))
            self.assertEqual(partial.count(b"\n") % 4, 0)  # whole batches
            classify("--format", "jsonl", "--output", out, "--resume", self.path("photos"))
            with open(out) as f:
                self.assertEqual(f.read(), self.reference)

    def test_embed_npy_resumes_after_sigkill(self):
        want_npy, want_names = self.fresh("want.npy"), self.path("want.names.txt")
        run("embed", "--model", MODEL, "--text", "a red circle", "--out", want_npy, self.path("photos"))
        out = self.fresh("E.npy")
        names = self.fresh("E.names.txt")
        proc = subprocess.Popen([CLI, "embed", "--model", MODEL, "--batch", "4", "--text", "a red circle",
                                 "--out", out, self.path("photos")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.assertTrue(wait_for_lines(names + ".partial", 40, proc))
        proc.kill()
        proc.wait()
        partial = np.load(out + ".partial")  # a valid .npy while it runs: declared rows, unwritten ones zero
        self.assertEqual(partial.shape, (601, 64))
        with open(names + ".partial", "ab") as f:
            f.write(b"photos/cut-sh")
        run("embed", "--model", MODEL, "--text", "a red circle", "--out", out, "--resume", self.path("photos"))
        np.testing.assert_array_equal(np.load(out), np.load(want_npy))
        with open(names) as a, open(want_names) as b:
            self.assertEqual(a.read(), b.read())

    def test_shards_cover_every_path_once(self):
        shards = [paths_of_jsonl(classify("--format", "jsonl", "--shard", f"{k}/3", self.path("photos")).stdout)
                  for k in range(3)]
        everything = paths_of_jsonl(self.reference)
        self.assertEqual(sorted(sum(shards, [])), sorted(everything))
        self.assertTrue(all(len(s) > 100 for s in shards), [len(s) for s in shards])
        for k, paths in enumerate(shards):  # the documented rule: FNV-1a 64 of the path's bytes, mod N
            self.assertTrue(all(fnv1a64(p.encode()) % 3 == k for p in paths), k)
        # A path's shard depends on its bytes only: listed alone, img-000007.png lands in the same shard.
        one = self.files[7]
        owner = [k for k in range(3) if one in shards[k]]
        with open(self.path("one.txt"), "w") as f:
            f.write(one + "\n")
        for k in range(3):
            got = classify("--format", "jsonl", "--shard", f"{k}/3", "--files-from", self.path("one.txt"))
            self.assertEqual(paths_of_jsonl(got.stdout), [one] if k == owner[0] else [])
        # An empty shard succeeds with an empty output (a job array's task must not fail).
        empty = self.fresh("empty.npy")
        run("embed", "--model", MODEL, "--files-from", self.path("one.txt"), "--shard",
            f"{(owner[0] + 1) % 3}/3", "--out", empty)
        self.assertEqual(np.load(empty).shape, (0, 64))

    def test_files_from_list_and_stdin(self):
        listing = "\n".join(self.files[:5]) + "\n\n  \n" + self.path("missing.png") + "\r\n"
        with open(self.path("list.txt"), "w") as f:
            f.write(listing)
        by_file = classify("--format", "jsonl", "--files-from", self.path("list.txt"), check=False)
        by_stdin = classify("--format", "jsonl", "--files-from", "-", input=listing, check=False)
        for proc in (by_file, by_stdin):
            self.assertEqual(proc.returncode, 1, proc.stderr)  # one failed row, not a failed run
            rows = [json.loads(line) for line in proc.stdout.splitlines()]
            self.assertEqual([r["path"] for r in rows], self.files[:5] + [self.path("missing.png")])
            self.assertIn("error", rows[-1])
            self.assertIn("missing.png", rows[-1]["error"])

    def test_bad_input_fails_before_any_work(self):
        out = self.fresh("bad.jsonl")

        def usage(*args, says):
            proc = classify("--format", "jsonl", *args, check=False)
            self.assertEqual(proc.returncode, 2, proc.stderr)
            self.assertIn(says, proc.stderr)
            self.assertEqual(proc.stdout, "")
        usage("--shard", "3/2", EXAMPLES, says="--shard must be K/N")
        usage("--shard", "a/b", EXAMPLES, says="'a/b'")
        usage("--files-from", self.path("no-such-list.txt"), says="no-such-list.txt")
        usage("--resume", EXAMPLES, says="--resume continues")
        usage("--format", "table", "--output", out, "--resume", EXAMPLES, says="jsonl or csv")
        # An earlier run's .partial is never overwritten, and a second resumer is locked out.
        with open(out + ".partial", "w") as f:
            f.write(self.reference.splitlines(True)[0])
        usage("--output", out, EXAMPLES, says="--resume to continue")
        with open(out + ".partial", "rb") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # as a run resuming it holds it
            usage("--output", out, "--resume", EXAMPLES, says="locked by another zeroclip run")
        with open(out + ".partial") as f:
            self.assertEqual(f.read(), self.reference.splitlines(True)[0])
        os.remove(out + ".partial")

    def classify_peak_rss_mib(self, out, *inputs):
        """Exit code and peak resident set (MiB) of one classify --format jsonl --output run, measured
        in a fresh process of its own; its stderr goes to OUT.stderr (a file: thousands of lines)."""
        probe = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[2:], stderr=open(sys.argv[1], 'wb'))"
                 ".returncode; print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        proc = subprocess.run([sys.executable, "-c", probe, out + ".stderr", CLI, "classify", "--model", MODEL,
                               "--labels-file", LABELS, "--format", "jsonl", "--batch", "64", "--output", out, *inputs],
                              capture_output=True, text=True, timeout=600)
        rc, kib = proc.stdout.split()
        return int(rc), int(kib) / 1024

    def test_peak_memory_does_not_grow_with_the_number_of_files(self):
        tiny = self.path("tiny-rss.png")
        write_png(tiny, 8, 8)
        peak = {}
        for count in (2000, 20000):
            folder = self.path(f"rss-{count}")
            link_farm(folder, count, [tiny])
            out = self.fresh(f"rss-{count}.jsonl")
            rc, peak[count] = self.classify_peak_rss_mib(out, folder)
            with open(out + ".stderr") as f:
                self.assertEqual(rc, 0, f.read())
            with open(out) as f:
                self.assertEqual(sum(1 for _ in f), count)
        self.assertLess(peak[20000] - peak[2000], 20, f"peak RSS MiB by file count: {peak}")

    def test_files_from_is_read_as_it_is_used(self):
        # 200,000 distinct paths, one in ten a real image and the others missing (an error row each,
        # cheap): the list is never held whole, so its 2,000-line head peaks at the same RSS. Held, the
        # 200,000 paths cost ~19 MiB more.
        tiny = self.path("tiny-list.png")
        write_png(tiny, 8, 8)
        missing = self.path("no-such-folder")
        lines = [tiny if i % 10 == 0 else os.path.join(missing, f"missing-{i:07d}.png") for i in range(200000)]
        peak = {}
        for count in (2000, 200000):
            listing = self.path(f"list-{count}.txt")
            with open(listing, "w") as f:
                f.write("\n".join(lines[:count]) + "\n")
            out = self.fresh(f"list-{count}.jsonl")
            rc, peak[count] = self.classify_peak_rss_mib(out, "--files-from", listing)
            self.assertEqual(rc, 1)  # the missing files
            with open(out) as f:
                rows = [json.loads(line) for line in f]
            self.assertEqual(len(rows), count)
            self.assertEqual(sum("error" not in r for r in rows), count // 10)
        self.assertLess(peak[200000] - peak[2000], 5, f"peak RSS MiB by list length: {peak}")

if __name__ == "__main__":
    unittest.main()
