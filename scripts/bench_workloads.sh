#!/usr/bin/env bash
# The workloads benchmark of issue 15 (BENCHMARKS.md, "Workloads (issue 15)"); never run by the
# test suite. On the bundled toy model:
#   1. images/s of one `zeroclip classify` process, and of examples/dask/zeroclip_dask.py with 1 and
#      2 local workers, on IMAGES symbolic links to the example images (160x160 PNG);
#   2. the fixed cost of one CLI call (process start, model load, label prompts: paid once per
#      shard) and the Dask runner's cost per shard on top of the CLI's work;
#   3. peak RSS of one classify run (--format jsonl --output) against the number of files, on
#      symbolic links to one 8x8 PNG, so that the count and not the pixels is what varies: the
#      links given as their folder, and as a --files-from list of the same paths (read lazily).
#
#   bash scripts/bench_workloads.sh [BUILD]     (BUILD: the build folder, default build)
# Environment: IMAGES (default 3000), SHARD (files per Dask shard, default 500),
# RSS_COUNTS (default "2000 20000 200000"; empty: no RSS runs), RSS_ONLY (1: only part 3),
# WORK (scratch folder, default a new temporary one).
set -euo pipefail
cd "$(dirname "$0")/.."
ZEROCLIP=$(realpath "${1:-build}/examples/zeroclip")
IMAGES=${IMAGES:-3000}
SHARD=${SHARD:-500}
RSS_COUNTS=${RSS_COUNTS-"2000 20000 200000"}
WORK=${WORK:-$(mktemp -d /tmp/zeroclip-workloads.XXXXXX)}
PY=/usr/bin/python3
MODEL=$PWD/examples/models/zeroclip-toy-vit.safetensors
LABELS=$PWD/examples/labels.txt
CLASSIFY=(classify --model "$MODEL" --labels-file "$LABELS")
[ -x "$ZEROCLIP" ] || { echo "bench_workloads.sh: build the CLI first ($ZEROCLIP missing)" >&2; exit 2; }
mkdir -p "$WORK"

# link_farm FOLDER COUNT TARGET...: COUNT symbolic links img-NNNNNNN.png cycling over the targets.
link_farm() {
    "$PY" - "$@" <<'EOF'
import os, sys
folder, count, targets = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
os.makedirs(folder, exist_ok=True)
for i in range(count):
    p = os.path.join(folder, f"img-{i:07d}.png")
    if not os.path.lexists(p):
        os.symlink(targets[i % len(targets)], p)
EOF
}
# seconds COMMAND...: wall-clock seconds of the command (its output discarded).
seconds() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >"$WORK/last.out" 2>"$WORK/last.err"
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l | xargs printf '%.2f'
}
rate() { echo "$1 / $2" | bc -l | xargs printf '%.1f'; }

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start; $(date -u '+%F %H:%M') UTC"
echo
if [ "${RSS_ONLY:-}" != 1 ]; then

link_farm "$WORK/photos" "$IMAGES" "$PWD"/examples/images/*.png
rm -f "$WORK/one.jsonl"
t_one=$(seconds "$ZEROCLIP" "${CLASSIFY[@]}" --format jsonl --output "$WORK/one.jsonl" "$WORK/photos")
t_fixed=$(seconds "$ZEROCLIP" "${CLASSIFY[@]}" --format jsonl "$PWD/examples/images/black_cross.png")
shards=$(( (IMAGES + SHARD - 1) / SHARD ))
declare -A t_dask t_tasks
for workers in 1 2; do
    rm -rf "$WORK/dask-$workers"
    t_dask[$workers]=$(seconds "$PY" examples/dask/zeroclip_dask.py --zeroclip "$ZEROCLIP" --out "$WORK/dask-$workers" \
        --local-workers "$workers" --shard-size "$SHARD" --merge "$WORK/photos" -- "${CLASSIFY[@]}")
    cmp -s "$WORK/one.jsonl" "$WORK/dask-$workers/merged.jsonl" || { echo "dask-$workers differs from one process" >&2; exit 1; }
    # The runner's own count: from the first task submitted to the last result (no cluster start).
    t_tasks[$workers]=$("$PY" -c "import json,sys; print('%.2f' % json.load(open(sys.argv[1]))['seconds'])" \
        "$WORK/dask-$workers/manifest.json")
done
echo "| run ($IMAGES files, 160x160 PNG, toy model) | seconds | images/s |"
echo "| --- | --- | --- |"
echo "| one process | $t_one | $(rate "$IMAGES" "$t_one") |"
for workers in 1 2; do
    echo "| Dask, $workers local worker(s), $shards shards of $SHARD: whole command | ${t_dask[$workers]} | $(rate "$IMAGES" "${t_dask[$workers]}") |"
    echo "| Dask, $workers local worker(s): tasks only (no cluster start) | ${t_tasks[$workers]} | $(rate "$IMAGES" "${t_tasks[$workers]}") |"
done
echo
echo "fixed cost of one CLI call (start, model load, 16 label prompts, 1 image): ${t_fixed} s"
per_shard=$(echo "(${t_tasks[1]} - $t_one) / $shards" | bc -l | xargs printf '%.2f')
echo "Dask cost per shard on one worker, over the single process: ${per_shard} s (= (tasks - one process) / shards)"
echo
fi

echo "| files (links to one 8x8 PNG) | folder: seconds | folder: peak RSS (MiB) | --files-from: seconds | --files-from: peak RSS (MiB) |"
echo "| --- | --- | --- | --- | --- |"
"$PY" -c "
import os, struct, zlib, sys
w = h = 8
rows = b''.join(b'\0' + bytes((x * 37 + y * 11) % 256 for x in range(w * 3)) for y in range(h))
chunk = lambda k, d: struct.pack('>I', len(d)) + k + d + struct.pack('>I', zlib.crc32(k + d))
open(sys.argv[1], 'wb').write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0))
                             + chunk(b'IDAT', zlib.compress(rows)) + chunk(b'IEND', b''))" "$WORK/tiny.png"
for n in $RSS_COUNTS; do
    link_farm "$WORK/rss-$n" "$n" "$WORK/tiny.png"
    find "$WORK/rss-$n" -name '*.png' | LC_ALL=C sort >"$WORK/rss-$n.txt"
    row="| $n |"
    for input in "$WORK/rss-$n" "--files-from $WORK/rss-$n.txt"; do
        rm -f "$WORK/rss.jsonl"
        # $input unquoted: the list form is two words (no spaces in WORK's paths)
        /usr/bin/time -f "%e %M" -o "$WORK/rss.time" "$ZEROCLIP" "${CLASSIFY[@]}" --format jsonl --batch 64 \
            --output "$WORK/rss.jsonl" $input 2>"$WORK/rss.err"
        read -r secs kib <"$WORK/rss.time"
        row="$row $secs | $(echo "$kib / 1024" | bc -l | xargs printf '%.1f') |"
    done
    echo "$row"
done
echo
echo "scratch folder: $WORK (remove it when done)"
