#!/usr/bin/env python3
"""Driver of the CPU benchmark: zeroclip against ONNX Runtime and PyTorch, same shapes, same
thread count, interleaved rounds, one table of medians and ratios (scripts/bench_cpu.sh runs it).

Each round runs every peer once per model, each in its own process (so each peer's peak RSS is
its own), in an order that rotates from round to round; medians are over all calls of all rounds.
Setup (once, skipped when the files exist): random-weight F16 checkpoints of ViT-B/32 and RN50
(weights_tools/make_random.py), their ONNX exports (tests/bench/torch_clip.py), the prompt token
ids (bench_cpu --dump-tokens).

    /usr/bin/python3 tests/bench/run_bench.py --build build-bench [--rounds 5] [--reps 3]
        [--peers zeroclip,ort,torch] [--models vit,rn50] [--json results.json]
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
PY = "/usr/bin/python3"  # Debian's, with python3-torch and python3-onnx
OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-pthread"  # Debian's libopenblas0-pthread

MODELS = {
    "vit": dict(arch="ViT-B/32", file="vit-b32-f16.safetensors", text=True, label="ViT-B/32"),
    "rn50": dict(arch="RN50", file="rn50-f16.safetensors", text=False, label="RN50"),
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def zeroclip_variant(peer):
    """'zeroclip', 'zeroclip-int8', 'zeroclip-bf16', 'zeroclip-int8-avx2' ... -> (precision, forced
    path or None); None for the other peers."""
    parts = peer.split("-")
    if parts[0] != "zeroclip":
        return None
    return (parts[1] if len(parts) > 1 else "fp32", parts[2] if len(parts) > 2 else None)


def peer_env(env, peer):
    """Per-peer additions: PyTorch gets Debian's OpenBLAS for its matrix products (its default,
    the reference BLAS, is 10-20x slower), with the same thread count; a zeroclip variant with a
    path (zeroclip-int8-avx2) gets ZEROCLIP_CPU_PATH, which caps its kernels at that path."""
    e = dict(env)
    v = zeroclip_variant(peer)
    if v and v[1]:
        e["ZEROCLIP_CPU_PATH"] = v[1]
    if peer == "torch":
        if os.path.isdir(OPENBLAS):
            e["LD_LIBRARY_PATH"] = OPENBLAS + (":" + e["LD_LIBRARY_PATH"] if e.get("LD_LIBRARY_PATH") else "")
        e["OPENBLAS_NUM_THREADS"] = e["OMP_NUM_THREADS"]
    return e


def run_json(cmd, env):
    t = time.time()
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise SystemExit("run_bench: %s failed (%d):\n%s" % (" ".join(cmd), p.returncode, p.stderr[-3000:]))
    line = [l for l in p.stdout.splitlines() if l.startswith("{")][-1]
    r = json.loads(line)
    r["_wall_s"] = time.time() - t
    return r


def setup(args, env):
    models_dir = os.path.join(args.build, "bench-data")
    os.makedirs(models_dir, exist_ok=True)
    for key in args.models:
        m = MODELS[key]
        st = os.path.join(models_dir, m["file"])
        if not os.path.exists(st):
            log("setup: %s" % st)
            subprocess.run([PY, os.path.join(ROOT, "weights_tools", "make_random.py"), "--arch", m["arch"],
                            "--dtype", "f16", st], check=True, stdout=subprocess.DEVNULL)
        onnx_dir = os.path.join(models_dir, "onnx-" + key)
        need = ["image.onnx"] + (["text.onnx"] if m["text"] else [])
        if "ort" in args.peers and not all(os.path.exists(os.path.join(onnx_dir, f)) for f in need):
            log("setup: ONNX export of %s -> %s" % (m["label"], onnx_dir))
            cmd = [PY, os.path.join(ROOT, "tests", "bench", "torch_clip.py"), "export", "--model", st, "--out", onnx_dir]
            subprocess.run(cmd + (["--text"] if m["text"] else []), check=True, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tokens = os.path.join(models_dir, "tokens")
    os.makedirs(tokens, exist_ok=True)
    subprocess.run([os.path.join(args.build, "tests", "bench_cpu"), "--dump-tokens", tokens], check=True)
    return models_dir, tokens


def peer_command(peer, key, models_dir, tokens, args, check=None):
    m = MODELS[key]
    st = os.path.join(models_dir, m["file"])
    reps, batches = str(args.reps), args.batches
    if zeroclip_variant(peer):
        cmd = [os.path.join(args.build, "tests", "bench_cpu"), "--model", st, "--batches", batches, "--reps", reps,
               "--precision", zeroclip_variant(peer)[0]]
        if m["text"]:
            cmd.append("--text")
        if check:
            cmd += ["--check", check]
        return cmd
    if peer == "ort":
        onnx_dir = os.path.join(models_dir, "onnx-" + key)
        cmd = ["node", os.path.join(ROOT, "tests", "bench", "ort_bench.js"), "--image",
               os.path.join(onnx_dir, "image.onnx"), "--batches", batches, "--reps", reps, "--threads",
               str(args.threads)]
        if m["text"]:
            cmd += ["--text", os.path.join(onnx_dir, "text.onnx"), "--tokens", tokens]
        if check:
            cmd += ["--check", check]
        return cmd
    if peer == "torch":
        cmd = [PY, os.path.join(ROOT, "tests", "bench", "torch_clip.py"), "bench", "--model", st, "--batches",
               batches, "--reps", reps, "--threads", str(args.threads)]
        if m["text"]:
            cmd += ["--tokens", tokens]
        if check:
            cmd += ["--check", check]
        return cmd
    raise SystemExit("unknown peer " + peer)


def cross_check(args, env, models_dir, tokens):
    """Every peer's embeddings of the same input: the cosine of each to zeroclip's."""
    import numpy as np
    out = {}
    for key in args.models:
        ref = None
        for peer in args.peers:
            path = os.path.join(models_dir, "check-%s-%s.f32" % (key, peer))
            a = argparse.Namespace(**vars(args))
            a.reps, a.batches = 1, "1"
            run_json(peer_command(peer, key, models_dir, tokens, a, check=path), peer_env(env, peer))
            v = np.fromfile(path, dtype=np.float32).astype(np.float64)
            if ref is None:
                ref = v
                continue
            dim = 512 if key == "vit" else 1024
            rows_a, rows_b = ref.reshape(-1, dim), v.reshape(-1, dim)
            cos = (rows_a * rows_b).sum(1) / np.linalg.norm(rows_a, axis=1) / np.linalg.norm(rows_b, axis=1)
            out["%s %s vs %s" % (MODELS[key]["label"], peer, args.peers[0])] = float(cos.min())
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default=os.path.join(ROOT, "build-bench"))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batches", default="1,16")
    p.add_argument("--peers", default="zeroclip,ort,torch")
    p.add_argument("--models", default="vit,rn50")
    p.add_argument("--no-check", action="store_true", help="skip the embedding cross-check")
    p.add_argument("--json", default="", help="also write every measurement here")
    args = p.parse_args()
    args.build = os.path.abspath(args.build)
    args.peers = [x for x in args.peers.split(",") if x]
    args.models = [x for x in args.models.split(",") if x]

    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(args.threads)
    # OpenMP threads that wait by spinning make PyTorch's 2 threads slower than 1 on a shared,
    # loaded machine (10x at batch 1 here). zeroclip and ONNX Runtime do not use OpenMP teams.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.setdefault("ORT_NODE_PATH", os.path.join(args.build, "node", "node_modules", "onnxruntime-node"))
    models_dir, tokens = setup(args, env)

    checks = {} if args.no_check else cross_check(args, env, models_dir, tokens)

    results = {peer: {key: [] for key in args.models} for peer in args.peers}
    loads = []
    for r in range(args.rounds):
        order = args.peers[r % len(args.peers):] + args.peers[:r % len(args.peers)]
        with open("/proc/loadavg") as f:
            loads.append(float(f.read().split()[0]))
        for peer in order:
            for key in args.models:
                res = run_json(peer_command(peer, key, models_dir, tokens, args), peer_env(env, peer))
                results[peer][key].append(res)
                log("round %d %-8s %-4s %5.1fs" % (r + 1, peer, key, res["_wall_s"]))

    # Medians: per image / per prompt for calls, per process for load and RSS.
    def med(peer, key, field, per=1.0):
        vals = []
        for res in results[peer][key]:
            v = res.get(field)
            if v is None:
                return None
            vals += v if isinstance(v, list) else [v]
        return statistics.median(vals) / per

    rows = []
    batches = [int(b) for b in args.batches.split(",") if b]
    for key in args.models:
        label = MODELS[key]["label"]
        for b in batches:
            rows.append(("%s image, batch %d (ms/image)" % (label, b), key, "image_b%d_ms" % b, b))
        if MODELS[key]["text"]:
            n_short = results[args.peers[0]][key][0].get("text_short_n", 1)
            n_long = results[args.peers[0]][key][0].get("text_long_n", 1)
            rows.append(("%s text, short prompts (ms/prompt, batch %d)" % (label, n_short), key, "text_short_ms", n_short))
            rows.append(("%s text, 77-token prompts (ms/prompt, batch %d)" % (label, n_long), key, "text_long_ms", n_long))
        rows.append(("%s load of the F16 file / ORT session creation (ms)" % label, key, "load_ms", 1))
        rows.append(("%s RSS after load (MiB)" % label, key, "rss_after_load_mib", 1))
        rows.append(("%s peak RSS (MiB)" % label, key, "peak_rss_mib", 1))

    # Ratios: every zeroclip variant over every other peer (same run).
    ours = [p for p in args.peers if zeroclip_variant(p)]
    others = [p for p in args.peers if not zeroclip_variant(p)]
    pairs = [(z, o) for o in others for z in ours]
    head = "| measurement | " + " | ".join(args.peers) + " | " + " | ".join("%s/%s" % pr for pr in pairs) + " |"
    lines = [head, "|" + " --- |" * (1 + len(args.peers) + len(pairs))]
    table = []
    for name, key, field, per in rows:
        vals = {peer: med(peer, key, field, per) for peer in args.peers}
        cells = ["%.1f" % vals[p] if vals[p] is not None else "-" for p in args.peers]
        ratios = ["%.2f" % (vals[z] / vals[o]) if vals[z] and vals[o] else "-" for z, o in pairs]
        lines.append("| %s | %s | %s |" % (name, " | ".join(cells), " | ".join(ratios)))
        table.append(dict(name=name, values=vals))
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for l in f:
            if l.startswith("model name"):
                cpu = l.split(":", 1)[1].strip()
                break
    flags = []
    with open("/proc/cpuinfo") as f:
        for l in f:
            if l.startswith("flags"):
                have = set(l.split(":", 1)[1].split())
                flags = [x for x in ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
                                     "amx_int8", "amx_bf16") if x in have]
                break
    print("CPU: %s (flags: %s), %d cores visible; threads per peer: %d; rounds: %d x %d calls; load average at "
          "round starts: %s" % (cpu, " ".join(flags), os.cpu_count(), args.threads, args.rounds, args.reps,
                                ", ".join("%.1f" % x for x in loads)))
    print("env: OMP_NUM_THREADS=%s OMP_WAIT_POLICY=%s; torch: OPENBLAS_NUM_THREADS=%s, BLAS %s" % (
        env.get("OMP_NUM_THREADS"), env.get("OMP_WAIT_POLICY", "(unset)"), env.get("OMP_NUM_THREADS"),
        OPENBLAS if os.path.isdir(OPENBLAS) else "the system's libblas"))
    versions = []
    for peer in args.peers:
        r0 = results[peer][args.models[0]][0]
        path = " (kernels: %s)" % r0["cpu_path"] if r0.get("cpu_path") else ""
        versions.append("%s %s%s" % (peer, r0.get("ort") or r0.get("torch") or "", path))
    print("peers: " + ", ".join(v.strip() for v in versions))
    print()
    print("\n".join(lines))
    if checks:
        print()
        print("cross-check (lowest cosine of any embedding to zeroclip's, same input): " +
              ", ".join("%s %.6f" % (k, v) for k, v in checks.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(results=results, table=table, checks=checks, loadavg=loads, platform=platform.platform()),
                      f, indent=1)


if __name__ == "__main__":
    main()
