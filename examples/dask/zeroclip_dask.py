#!/usr/bin/env python3
"""Runs `zeroclip classify` or `zeroclip embed` over many files on a Dask distributed cluster.

The inputs are listed here (folders as the CLI lists them), cut into shards of --shard-size files in
list order, and each shard is one Dask task that runs the CLI on a worker with --files-from
OUT/shard-NNNNN.files, writing OUT/shard-NNNNN.jsonl (classify) or shard-NNNNN.npy + .names.txt
(embed) through the CLI's own FILE.partial -> rename rule. So:
  - a shard whose output exists is skipped: rerunning the same command resumes the job;
  - a task whose worker dies is rescheduled by Dask (and retried --retries times if it fails); the
    new attempt resumes the dead one's .partial (--resume), after waiting for its lock;
  - OUT/manifest.json lists each shard's files, records, errors and time;
  - --merge concatenates the shards, in order, into OUT/merged.jsonl (or merged.npy + names): the
    same bytes one process would write for the same list.
Workers must see the same paths as this process (a shared filesystem) and the zeroclip binary.

  python3 examples/dask/zeroclip_dask.py --out OUT --local-workers 2 photos/ -- \\
      classify --model M --labels-file labels.txt
  python3 examples/dask/zeroclip_dask.py --out OUT --scheduler tcp://head:8786 --files-from list.txt \\
      --merge -- embed --model M

Exit status: 0 done, 1 some image failed or a shard failed for good, 2 usage (before any work).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

IMAGE_EXTENSIONS = {b".jpg", b".jpeg", b".png", b".bmp", b".gif", b".tga", b".pnm", b".ppm", b".pgm", b".pbm"}
SHARD_NAME = re.compile(r"^shard-(\d{5,})\.(files|jsonl|npy|names\.txt)(\.partial)?$")
OWN_NAMES = {"manifest.json", "merged.jsonl", "merged.npy", "merged.names.txt"}


class UsageError(Exception):
    pass


def list_folder(folder, recursive, found):
    """The image files of `folder` as the CLI lists them (links to folders not followed)."""
    try:
        entries = list(os.scandir(folder))
    except OSError as e:
        raise UsageError(f"{os.fsdecode(folder)}: cannot list folder ({e.strerror})")
    for e in entries:
        if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS:
            found.append(e.path)
        elif recursive and e.is_dir(follow_symlinks=False):
            list_folder(e.path, True, found)


def list_inputs(paths, files_from, recursive):
    """Files in the CLI's order: each path (a folder: its image files sorted by bytes), then the list."""
    files = []
    for p in paths:
        b = os.fsencode(p)
        if os.path.isdir(b):
            found = []
            list_folder(b, recursive, found)
            files += sorted(found)
        elif os.path.exists(b):
            files.append(b)
        else:
            raise UsageError(f"no such file or folder: {p}")
    if files_from:
        try:
            with open(files_from, "rb") if files_from != "-" else sys.stdin.buffer as f:
                for line in f.read().split(b"\n"):
                    line = line[:-1] if line.endswith(b"\r") else line
                    if line.strip(b" \t"):
                        files.append(line)
        except OSError as e:
            raise UsageError(f"--files-from {files_from}: cannot read ({e.strerror})")
    return files


def outputs_of(mode, out, shard):
    base = os.path.join(out, f"shard-{shard:05d}")
    return [base + ".jsonl"] if mode == "classify" else [base + ".npy", base + ".names.txt"]


def check_out_folder(out, shard_lists):
    """Usage error when OUT holds files that are not this run's shards (another job's, or the list changed)."""
    for name in sorted(os.listdir(out)):
        m = SHARD_NAME.match(name)
        if name.startswith(".") or name in OWN_NAMES:
            continue
        if not m:
            raise UsageError(f"{out} holds {name}, which is not a shard of this runner: use an empty folder")
        shard = int(m.group(1))
        if shard >= len(shard_lists):
            raise UsageError(f"{out}/{name}: shard {shard} of another run (this one has {len(shard_lists)} shards)")
        if m.group(2) == "files" and not m.group(3):
            with open(os.path.join(out, name), "rb") as f:
                if f.read() != shard_lists[shard]:
                    raise UsageError(f"{out}/{name} lists other files than this run's shard {shard}: the inputs or "
                                     f"--shard-size changed; use another folder")


def count_records(mode, outputs, list_path):
    """(records, failed files) of a finished shard output (embed: a failed image has no row)."""
    if mode == "embed":
        with open(outputs[1], "rb") as f, open(list_path, "rb") as files:
            records = f.read().count(b"\n")
            return records, files.read().count(b"\n") - records
    records = errors = 0
    with open(outputs[0], "rb") as f:
        for line in f:
            records += 1
            errors += b'"error":' in line and "error" in json.loads(line)
    return records, errors


def run_shard(zeroclip, cli_args, mode, list_path, outputs, shard, threads):
    """One task, on a worker: the CLI over one shard's list, resuming any .partial a dead attempt left."""
    import fcntl
    import signal
    started = time.time()
    if all(os.path.exists(p) for p in outputs):
        records, errors = count_records(mode, outputs, list_path)
        return {"shard": shard, "records": records, "errors": errors, "seconds": 0.0, "skipped": True}
    partial = outputs[0] + ".partial"
    if os.path.exists(partial):  # an attempt on a dead worker may still be finishing its batch: wait for its lock
        with open(partial, "rb") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
        if all(os.path.exists(p) for p in outputs):
            return run_shard(zeroclip, cli_args, mode, list_path, outputs, shard, threads)
    flags = ["--files-from", list_path, "--resume"]
    flags += ["--format", "jsonl", "--output", outputs[0]] if mode == "classify" else \
        ["--out", outputs[0], "--names", outputs[1]]

    def die_with_worker():  # the CLI stops (writing its batch) when the worker process dies
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    # Dask sets OMP_NUM_THREADS=1 in its workers (one thread per task); the CLI is the whole task.
    env = dict(os.environ, OMP_NUM_THREADS=str(threads or os.cpu_count() or 1))
    proc = subprocess.run([zeroclip, mode, *cli_args, *flags], capture_output=True, preexec_fn=die_with_worker,
                          env=env)
    if proc.returncode not in (0, 1) or not all(os.path.exists(p) for p in outputs):
        raise RuntimeError(f"shard {shard}: zeroclip exited {proc.returncode}: "
                           f"{proc.stderr.decode(errors='replace')[-2000:]}")
    records, errors = count_records(mode, outputs, list_path)
    return {"shard": shard, "records": records, "errors": errors, "seconds": time.time() - started, "skipped": False}


def write_atomically(path, write):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def merge(mode, out, shards):
    """The shards' outputs, in shard order, as one output (what one process writes for the whole list)."""
    if mode == "classify":
        def write(f):
            for s in range(shards):
                with open(outputs_of(mode, out, s)[0], "rb") as src:
                    shutil.copyfileobj(src, f)
        write_atomically(os.path.join(out, "merged.jsonl"), write)
        return
    import numpy as np
    parts = [np.load(outputs_of(mode, out, s)[0], mmap_mode="r") for s in range(shards)]
    write_atomically(os.path.join(out, "merged.npy"), lambda f: np.save(f, np.concatenate(parts, axis=0)))

    def names(f):
        for s in range(shards):
            with open(outputs_of(mode, out, s)[1], "rb") as src:
                shutil.copyfileobj(src, f)
    write_atomically(os.path.join(out, "merged.names.txt"), names)


def parse_args(argv):
    if "--" not in argv:
        raise UsageError("give the zeroclip command after --, e.g. -- classify --model M --labels-file L")
    cut = argv.index("--")
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder for the shards, manifest and merged output")
    p.add_argument("--zeroclip", default=os.environ.get("ZEROCLIP", "zeroclip"), help="the CLI binary")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", help="address of a running Dask scheduler (tcp://host:8786)")
    where.add_argument("--local-workers", type=int, default=None, help="start a LocalCluster of N processes")
    p.add_argument("--threads-per-worker", type=int, default=1)
    p.add_argument("--cli-threads", type=int, default=None,
                   help="compute threads of each CLI run (default: the worker machine's cores, divided by "
                        "--local-workers for a local cluster)")
    p.add_argument("--shard-size", type=int, default=2000, help="files per shard (default 2000)")
    p.add_argument("--retries", type=int, default=3, help="retries of a failed task (default 3)")
    p.add_argument("--files-from", help="a list of paths, one a line ('-': stdin)")
    p.add_argument("--recursive", action="store_true")
    p.add_argument("--merge", action="store_true", help="concatenate the shards into OUT/merged.*")
    p.add_argument("paths", nargs="*")
    a = p.parse_args(argv[:cut])
    a.cli = argv[cut + 1:]
    if not a.cli or a.cli[0] not in ("classify", "embed"):
        raise UsageError("the command after -- must be classify or embed")
    for flag in ("--output", "--out", "--names", "--files-from", "--shard", "--resume", "--format"):
        if any(x == flag or x.startswith(flag + "=") for x in a.cli[1:]):
            raise UsageError(f"{flag} is set by the runner for each shard: leave it out of the command after --")
    if a.shard_size < 1 or (a.local_workers is not None and a.local_workers < 1):
        raise UsageError("--shard-size and --local-workers must be at least 1")
    if not a.paths and not a.files_from:
        raise UsageError("give image folders / files or --files-from")
    return a


def main(argv):
    try:
        a = parse_args(argv)
        files = list_inputs(a.paths, a.files_from, a.recursive)
        if not files:
            raise UsageError("no image files found")
        os.makedirs(a.out, exist_ok=True)
        out = os.path.abspath(a.out)
        lists = [b"".join(f + b"\n" for f in files[i:i + a.shard_size]) for i in range(0, len(files), a.shard_size)]
        check_out_folder(out, lists)
        zeroclip = shutil.which(a.zeroclip) or a.zeroclip
        if not os.access(zeroclip, os.X_OK):
            raise UsageError(f"--zeroclip {a.zeroclip}: not an executable")
    except UsageError as e:
        print(f"zeroclip_dask: {e}", file=sys.stderr)
        return 2
    mode, cli_args = a.cli[0], a.cli[1:]
    threads = a.cli_threads or (max(1, (os.cpu_count() or 1) // a.local_workers) if a.local_workers else None)
    for s, text in enumerate(lists):
        path = os.path.join(out, f"shard-{s:05d}.files")
        if not os.path.exists(path):
            write_atomically(path, lambda f: f.write(text))
    from distributed import Client, LocalCluster, as_completed
    cluster = LocalCluster(n_workers=a.local_workers, threads_per_worker=a.threads_per_worker, processes=True) \
        if a.scheduler is None else None
    client = Client(a.scheduler or cluster)
    started = time.time()
    futures = [client.submit(run_shard, zeroclip, cli_args, mode, os.path.join(out, f"shard-{s:05d}.files"),
                             outputs_of(mode, out, s), s, threads, key=f"zeroclip-shard-{s:05d}-{started}", retries=a.retries,
                             pure=False) for s in range(len(lists))]
    results, failures = {}, []
    for future in as_completed(futures):
        try:
            r = future.result()
            results[r["shard"]] = r
            print(f"shard {r['shard']:05d}: {r['records']} records" + (" (already done)" if r["skipped"] else
                  f" in {r['seconds']:.1f}s"), file=sys.stderr)
        except Exception as e:  # a shard that failed every retry: the others still finish
            failures.append(str(e))
            print(f"zeroclip_dask: {e}", file=sys.stderr)
    elapsed = time.time() - started
    client.close()
    if cluster is not None:
        cluster.close()
    manifest = {"command": a.cli, "files": len(files), "shard_size": a.shard_size, "seconds": elapsed,
                "shards": [{"shard": s, "list": f"shard-{s:05d}.files", "files": lists[s].count(b"\n"),
                            "outputs": [os.path.basename(p) for p in outputs_of(mode, out, s)],
                            **{k: v for k, v in results.get(s, {"failed": True}).items() if k != "shard"}}
                           for s in range(len(lists))],
                "failures": failures}
    write_atomically(os.path.join(out, "manifest.json"), lambda f: f.write(json.dumps(manifest, indent=1).encode()))
    errors = sum(r["errors"] for r in results.values())
    print(f"{len(files)} files in {len(lists)} shards, {elapsed:.1f}s ({len(files) / max(elapsed, 1e-9):.1f} files/s); "
          f"{errors} failed images, {len(failures)} failed shards", file=sys.stderr)
    if failures:
        return 1
    if a.merge:
        merge(mode, out, len(lists))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
