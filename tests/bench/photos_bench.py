#!/usr/bin/env python3
"""Driver of the photo-folder benchmark of issue 16 (scripts/bench_photos.sh runs it): whole
processes on a folder of real JPEG photos, interleaved rounds, medians and same-run ratios.

1. Decode alone, one thread: `bench_image --photos` (libjpeg-turbo build, and the stb_image build
   when given) against Pillow (tests/bench/photo_peer.py decode); ms per megapixel.
2. End to end: `zeroclip classify` (exact, --decode draft, and each --precision the CLI offers)
   against the official clip pipeline (photo_peer.py classify: Pillow preprocessing + PyTorch
   fp32), ViT-B/32-shaped random model, batch 16, 2 threads each; images/s of the whole process.
3. What draft decoding changes: crop differences (from bench_image), cosine of draft to exact
   image embeddings (`zeroclip embed`) for the random ViT-B/32 and the toy model, and the toy
   model's top-1 agreement (`zeroclip classify`).

    /usr/bin/python3 tests/bench/photos_bench.py --build build-bench --photos DIR [--rounds 3]
        [--threads 2] [--batch 16] [--stb-build build-bench/stb] [--skip decode,e2e,draft]
        [--json out.json]
"""

import argparse
import csv
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
PY = "/usr/bin/python3"  # Debian's, with python3-torch and python3-pil
OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-pthread"  # Debian's libopenblas0-pthread
ONE = " (1 photo)"
TORCH = "PyTorch + Pillow (clip)"
TOY = os.path.join(ROOT, "examples", "models", "zeroclip-toy-vit.safetensors")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, env=None, out_path=None):
    """Runs cmd as its own process; returns (stdout text, wall s, CPU s, peak RSS MiB) of that process."""
    out_path = out_path or os.path.join(TMP, "out.txt")
    t = time.perf_counter()
    with open(out_path, "w") as out:
        p = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.PIPE)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        err = p.stderr.read().decode(errors="replace")
        p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("photos_bench: %s failed (%d):\n%s" % (" ".join(cmd), os.waitstatus_to_exitcode(status), err[-3000:]))
    with open(out_path) as f:
        text = f.read()
    return text, wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024


def jpegs(folder):
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith((".jpg", ".jpeg")))


def last_json(text):
    return json.loads([l for l in text.splitlines() if l.startswith("{")][-1])


def cpu_line():
    model = flags = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].split()
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    return "%s, %d CPUs; %s" % (model, os.cpu_count(), " ".join(f for f in wanted if f in flags))


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def rounds_of(peers, rounds, measure):
    """Each round runs every peer once, in an order that rotates from round to round."""
    results = {name: [] for name, _ in peers}
    loads = []
    for r in range(rounds):
        loads.append(loadavg())
        for name, cmd in peers[r % len(peers):] + peers[:r % len(peers)]:
            results[name].append(measure(name, cmd))
            log("  round %d %-24s %s" % (r + 1, name, results[name][-1].get("summary", "")))
    return results, loads


def median(xs):
    return statistics.median(xs)


# ----------------------------------------------------------------------------- 1. decode alone

def bench_decode(args, photos):
    peers = [("zeroclip (libjpeg-turbo)", [os.path.join(args.build, "tests", "bench_image"), "--photos", photos])]
    if args.stb_build and os.path.exists(os.path.join(args.stb_build, "tests", "bench_image")):
        peers.append(("zeroclip (stb_image)", [os.path.join(args.stb_build, "tests", "bench_image"), "--photos", photos]))
    peers.append(("Pillow", [PY, os.path.join(HERE, "photo_peer.py"), "decode", photos]))

    def measure(name, cmd):
        r = last_json(run(cmd)[0])
        r["summary"] = "decode exact %.1f ms/MP CPU" % r["decode_exact"][1]
        return r

    res, loads = rounds_of(peers, args.rounds, measure)
    rows = []
    fields = [("decode exact", "decode_exact"), ("decode draft", "decode_draft"), ("resize + crop of the exact image", "resize_exact"),
              ("resize + crop of the draft image", "resize_draft"), ("total exact", "total_exact"), ("total draft", "total_draft")]
    names = [n for n, _ in peers]
    med = {n: {k: [median([r[k][i] for r in res[n]]) for i in (0, 1)] for _, k in fields if k in res[n][0]} for n in names}
    print("\n### Decode alone (one thread; ms per megapixel, medians of %d rounds: CPU time, wall in brackets)\n" % args.rounds)
    print("| step | " + " | ".join(names) + " | zeroclip/Pillow (CPU) |")
    print("| --- |" + " --- |" * (len(names) + 1))
    for label, k in fields:
        cells = ["%.2f (%.2f)" % (med[n][k][1], med[n][k][0]) if k in med[n] else "-" for n in names]
        ratio = med[names[0]][k][1] / med["Pillow"][k][1] if k in med[names[0]] else float("nan")
        print("| %s | %s | %.2f |" % (label, " | ".join(cells), ratio))
        rows.append(dict(step=label, **{n: med[n].get(k) for n in names}))
    first = res[names[0]][0]
    print("\n%d photos, mean %.2f MP; load average at the round starts: %s" % (
        first["photos"], first["mean_mp"], " / ".join("%.1f" % l for l in loads)))
    return dict(rows=rows, loads=loads, raw=res, crop_diff=first, photos=first["photos"], mean_mp=first["mean_mp"])


# ----------------------------------------------------------------------------- 2. end to end

def precisions(zc):
    """The --precision values `zeroclip classify` offers, read from its help (fp32 when none)."""
    text = subprocess.run([zc, "classify", "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
    if "--precision" not in text:
        return ["fp32"]
    return ["fp32"] + [p for p in ("bf16", "int8") if p in text.split("--precision", 1)[1][:400]]


def read_top1(text):
    """{path: (top-1 label, its probability, the probability of the second label or 0)}."""
    rows = list(csv.DictReader(io.StringIO(text)))
    second = {row["path"]: float(row["prob"]) for row in rows if row["rank"] == "2"}
    return {row["path"]: (row["label"], float(row["prob"]), second.get(row["path"], 0.0)) for row in rows if row["rank"] == "1"}


def bench_e2e(args, photos, model, labels, n_photos):
    zc = os.path.join(args.build, "examples", "zeroclip")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OMP_WAIT_POLICY="PASSIVE")
    torch_env = dict(env, OPENBLAS_NUM_THREADS=str(args.threads))
    if os.path.isdir(OPENBLAS):  # PyTorch's default libblas.so.3 (the reference BLAS) is 10-20x slower
        torch_env["LD_LIBRARY_PATH"] = OPENBLAS + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    # A folder of one photo (the smallest file): the same commands there measure the start-up
    # (process, model load, prompts) that a whole-process time includes.
    one = os.path.join(TMP, "one-photo")
    os.makedirs(one, exist_ok=True)
    smallest = min(jpegs(photos), key=os.path.getsize)
    if not os.path.exists(os.path.join(one, os.path.basename(smallest))):
        shutil.copyfile(smallest, os.path.join(one, os.path.basename(smallest)))
    peers = []
    for prec in precisions(zc):
        for decode in ("exact", "draft"):
            cmd = [zc, "classify", "--model", model, "--labels-file", labels, "--batch", str(args.batch),
                   "--threads", str(args.threads), "--format", "csv", "--decode", decode, photos]
            if prec != "fp32":
                cmd[2:2] = ["--precision", prec]
                # A precision this CPU lacks may be refused: left out with its message, not fatal.
                probe = subprocess.run(cmd[:-1] + [one], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                if probe.returncode != 0:
                    log("photos_bench: --precision %s left out: %s" % (prec, probe.stderr.strip()[-300:]))
                    break
            peers.append(("zeroclip %s %s" % (decode, prec), (cmd, env)))
    peers.append((TORCH, ([PY, os.path.join(HERE, "photo_peer.py"), "classify", "--model", model, "--labels-file", labels,
                            "--batch", str(args.batch), "--threads", str(args.threads), photos], torch_env)))
    peers += [(n + ONE, (c[:-1] + [one], e)) for n, (c, e) in peers if "draft" not in n]
    tops = {}

    def measure(name, cmd_env):
        text, wall, cpu, rss = run(cmd_env[0], env=cmd_env[1])
        tops[name] = read_top1(text)
        return dict(wall_s=wall, cpu_s=cpu, rss_mib=rss, summary="%.2f s wall, %.2f s CPU" % (wall, cpu))

    res, loads = rounds_of(peers, args.rounds, measure)
    torch_name = TORCH
    med = {n: {k: median([r[k] for r in res[n]]) for k in ("wall_s", "cpu_s", "rss_mib")} for n, _ in peers}
    print("\n### End to end: classify %d photos, %d labels, batch %d, %d threads (medians of %d rounds)\n" % (
        n_photos, sum(1 for l in open(labels) if l.strip() and not l.startswith("#")), args.batch, args.threads, args.rounds))
    print("| pipeline | images/s | wall s | CPU s | peak RSS MiB | × PyTorch images/s | × PyTorch (CPU time) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    rows = []
    for n, _ in peers:
        if n.endswith(ONE):
            continue
        m, t = med[n], med[torch_name]
        print("| %s | %.2f | %.2f | %.2f | %.0f | %.2f | %.2f |" % (
            n, n_photos / m["wall_s"], m["wall_s"], m["cpu_s"], m["rss_mib"], t["wall_s"] / m["wall_s"], t["cpu_s"] / m["cpu_s"]))
        rows.append(dict(pipeline=n, images_per_s=n_photos / m["wall_s"], ratio_wall=t["wall_s"] / m["wall_s"],
                         ratio_cpu=t["cpu_s"] / m["cpu_s"], **m))
    print("\nload average at the round starts: %s" % " / ".join("%.1f" % l for l in loads))
    print("\nStart-up (a folder of one photo) and the rate of the other %d photos, (n - 1) / (t(n) - t(1)); draft rows"
          " take the start-up of exact:\n" % (n_photos - 1))
    print("| pipeline | start-up wall s | start-up CPU s | images/s after start-up | × PyTorch | × PyTorch (CPU time) |")
    print("| --- | --- | --- | --- | --- | --- |")

    def rate(n):
        first = med[n.replace("draft", "exact") + ONE]
        return [(n_photos - 1) / (med[n][k] - first[k]) for k in ("wall_s", "cpu_s")] + [first]

    for n, _ in peers:
        if n.endswith(ONE):
            continue
        r, t = rate(n), rate(torch_name)
        print("| %s | %.2f | %.2f | %.2f | %.2f | %.2f |" % (n, r[2]["wall_s"], r[2]["cpu_s"], r[0], r[0] / t[0], r[1] / t[1]))
        next(row for row in rows if row["pipeline"] == n).update(after_startup_images_per_s=r[0], after_startup_ratio=r[0] / t[0],
                                                                  after_startup_ratio_cpu=r[1] / t[1])
    # The same photos and labels must give the same answers: zeroclip exact fp32 against PyTorch.
    a, b = tops["zeroclip exact fp32"], tops[torch_name]
    same = sum(1 for p in a if p in b and a[p][0] == b[p][0])
    dprob = max(abs(a[p][1] - b[p][1]) for p in a if p in b)
    print("cross-check, zeroclip exact fp32 against PyTorch: top-1 equal on %d of %d photos, max |top-1 prob difference| %.2g"
          % (same, len(a), dprob))
    crops = same_crops(zc, photos)
    print("crops of the Python pipeline bit-identical to `zeroclip preprocess`: %d of %d photos" % (crops, n_photos))
    return dict(rows=rows, loads=loads, raw=res, cross_check=dict(top1_equal=same, photos=len(a), max_prob_diff=dprob,
                                                                  identical_crops=crops))


def same_crops(zc, photos):
    """How many photos the Python pipeline crops to exactly zeroclip's 8-bit crop."""
    import numpy as np
    from PIL import Image
    sys.path.insert(0, HERE)
    from photo_peer import crop
    npy = os.path.join(TMP, "crop.npy")
    same = 0
    for path in jpegs(photos):
        run([zc, "preprocess", path, "--npy", npy, "--quiet"])
        same += bool(np.array_equal(np.load(npy), np.asarray(crop(Image.open(path), 224))))
    return same


# ----------------------------------------------------------------------------- 3. what draft changes

def bench_draft_effect(args, photos, model, crop_diff):
    import numpy as np
    zc = os.path.join(args.build, "examples", "zeroclip")
    out = {}
    print("\n### What --decode draft changes (against exact, both zeroclip)\n")
    if crop_diff is None:  # the decode benchmark was skipped: one pass of bench_image gives them
        crop_diff = last_json(run([os.path.join(args.build, "tests", "bench_image"), "--photos", photos])[0])
    if "crop_diff_max" in crop_diff:
        print("224-pixel crops: max |difference| %d levels (median over the photos of each one's max: %d), mean %.3f levels"
              " (over every byte of every crop)\n" % (crop_diff["crop_diff_max"], crop_diff["crop_diff_median_photo_max"],
                                                      crop_diff["crop_diff_mean"]))
        out.update({k: v for k, v in crop_diff.items() if k.startswith("crop_diff")})
    print("| model | cosine of draft to exact image embeddings: min | mean |")
    print("| --- | --- | --- |")
    for name, path in (("ViT-B/32-shaped random", model), ("toy ViT (examples/models)", TOY)):
        emb = {}
        for decode in ("exact", "draft"):
            npy = os.path.join(TMP, "embed-%s.npy" % decode)
            run([zc, "embed", "--model", path, "--decode", decode, "--out", npy, photos])
            emb[decode] = np.load(npy).astype(np.float64)
        cos = (emb["exact"] * emb["draft"]).sum(1) / (np.linalg.norm(emb["exact"], axis=1) * np.linalg.norm(emb["draft"], axis=1))
        print("| %s | %.5f | %.5f |" % (name, cos.min(), cos.mean()))
        out[name] = dict(cos_min=float(cos.min()), cos_mean=float(cos.mean()))
    tops = {}
    labels = os.path.join(ROOT, "examples", "labels.txt")
    for decode in ("exact", "draft"):
        text = run([zc, "classify", "--model", TOY, "--labels-file", labels, "--format", "csv", "--top-k", "2",
                    "--decode", decode, photos])[0]
        tops[decode] = read_top1(text)
    ex, dr = tops["exact"], tops["draft"]
    changed = [p for p in ex if dr.get(p, ("",))[0] != ex[p][0]]
    # A changed label where exact's first two labels were nearly tied says little about draft.
    gap = max((ex[p][1] - ex[p][2] for p in changed), default=0.0)
    print("\ntoy model, examples/labels.txt (%d labels): top-1 equal in draft and exact on %d of %d photos;"
          " where it changed, exact's top-1 led the second label by at most %.3f in probability (its median top-1"
          " probability: %.3f)" % (sum(1 for l in open(labels) if l.strip()), len(ex) - len(changed), len(ex), gap,
                                    median([v[1] for v in ex.values()])))
    out.update(toy_top1_equal=len(ex) - len(changed), photos=len(ex), toy_changed_max_gap=gap)
    return out


def main():
    global TMP
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default=os.path.join(ROOT, "build-bench"))
    p.add_argument("--photos", required=True, help="a folder of JPEG photos")
    p.add_argument("--stb-build", default="", help="a build with -DZEROCLIP_USE_LIBJPEG=OFF (its bench_image)")
    p.add_argument("--model", default="", help="default: BUILD/bench-data/vit-b32-f16.safetensors (made if missing)")
    p.add_argument("--labels", default=os.path.join(HERE, "photo_labels.txt"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--skip", default="", help="comma-separated: decode, e2e, draft")
    p.add_argument("--json", default="", help="also write every measurement here")
    args = p.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # tables and the progress on stderr stay in order
    args.build = os.path.abspath(args.build)
    skip = set(x for x in args.skip.split(",") if x)
    TMP = os.path.join(args.build, "photos-bench-tmp")
    os.makedirs(TMP, exist_ok=True)
    photos = os.path.abspath(args.photos)
    model = args.model or os.path.join(args.build, "bench-data", "vit-b32-f16.safetensors")
    if not os.path.exists(model):  # the same file as scripts/bench_cpu.sh's
        os.makedirs(os.path.dirname(model), exist_ok=True)
        subprocess.run([PY, os.path.join(ROOT, "weights_tools", "make_random.py"), "--arch", "ViT-B/32", "--dtype", "f16", model],
                       check=True, stdout=subprocess.DEVNULL)
    n_photos = len(jpegs(photos))

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print("## Photo-folder benchmark, %s\n" % started)
    print("CPU: %s; %s" % (cpu_line(), platform.platform()))
    result = dict(started=started, cpu=cpu_line(), photos=n_photos)
    if "decode" not in skip:
        log("decode alone, %d rounds" % args.rounds)
        result["decode"] = bench_decode(args, photos)
    if "e2e" not in skip:
        log("end to end, %d rounds" % args.rounds)
        result["e2e"] = bench_e2e(args, photos, model, args.labels, n_photos)
    if "draft" not in skip:
        log("what draft changes")
        result["draft"] = bench_draft_effect(args, photos, model, result.get("decode", {}).get("crop_diff"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
