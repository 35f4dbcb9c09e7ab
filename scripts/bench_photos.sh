#!/usr/bin/env bash
# The photo-folder benchmark of issue 16: `zeroclip classify` on 40 real JPEG photos against the
# official clip pipeline (Pillow preprocessing + PyTorch fp32), decoding alone against Pillow, and
# what --decode draft changes (tests/bench/photos_bench.py). Never run by the test suite. Results
# and commands: BENCHMARKS.md, "Photo folders (issue 16)".
#
#   bash scripts/bench_photos.sh [--rounds 3] [--threads 2] [--batch 16] [--skip decode,e2e,draft]
#                                [--json out.json]
#
# BUILD (default build-bench) is the build folder. The first run installs what is missing
# (python3-pil, python3-torch, libopenblas0-pthread with apt), downloads the wallpaper packages
# mate-backgrounds and plasma-workspace-wallpapers (apt-get download, about 140 MB) into
# BUILD/photos and keeps each distinct JPEG of at least a megapixel (not the 400x250 previews) in
# BUILD/photos/set; it builds zeroclip and bench_image in BUILD and bench_image without libjpeg-turbo
# in BUILD/stb, and writes the ViT-B/32-shaped random model into BUILD/bench-data.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-bench}
PHOTOS=$BUILD/photos

need=()
for module_package in PIL:python3-pil torch:python3-torch; do
    /usr/bin/python3 -c "import ${module_package%%:*}" 2>/dev/null || need+=("${module_package#*:}")
done
[ -d /usr/lib/x86_64-linux-gnu/openblas-pthread ] || need+=(libopenblas0-pthread)
if [ ${#need[@]} -gt 0 ]; then
    echo "bench_photos.sh: installing ${need[*]}" >&2
    apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
    # OpenBLAS installed becomes the system's libblas; the benchmark gives it to PyTorch alone
    # (LD_LIBRARY_PATH), so the system keeps the reference BLAS it had.
    for lib in blas lapack; do
        update-alternatives --set lib$lib.so.3-x86_64-linux-gnu /usr/lib/x86_64-linux-gnu/$lib/lib$lib.so.3 2>/dev/null || true
    done
fi

if [ ! -d "$PHOTOS/set" ]; then
    mkdir -p "$PHOTOS/debs"
    (cd "$PHOTOS/debs" && { apt-get download mate-backgrounds plasma-workspace-wallpapers 2>/dev/null ||
        { apt-get update -qq && apt-get download mate-backgrounds plasma-workspace-wallpapers; }; })
    for deb in "$PHOTOS"/debs/*.deb; do dpkg -x "$deb" "$PHOTOS/unpacked"; done
    /usr/bin/python3 - "$PHOTOS/unpacked" "$PHOTOS/set.tmp" <<'PY'
# Each distinct JPEG once (the packages hold the same picture under several names and links),
# named after its wallpaper; the screenshot.jpg previews (0.1 MP) are not photos to classify.
import hashlib, os, shutil, sys
src, dst = sys.argv[1:]
os.makedirs(dst, exist_ok=True)
seen = set()
for root, _, files in sorted(os.walk(src)):
    for f in sorted(files):
        p = os.path.join(root, f)
        if not f.lower().endswith((".jpg", ".jpeg")) or os.path.islink(p) or f == "screenshot.jpg":
            continue
        digest = hashlib.sha256(open(p, "rb").read()).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        parts = os.path.relpath(p, src).split(os.sep)  # usr/share/wallpapers/NAME/... or usr/share/backgrounds/mate/KIND/F
        name = parts[3] if parts[2] == "wallpapers" else parts[4]
        shutil.copyfile(p, os.path.join(dst, "%s-%s%s" % (name, "dark-" if "images_dark" in parts else "", f)))
print("bench_photos.sh: %d photos" % len(seen), file=sys.stderr)
PY
    mv "$PHOTOS/set.tmp" "$PHOTOS/set"
fi

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j2 --target zeroclip_cli bench_image >/dev/null
cmake -S . -B "$BUILD/stb" -DCMAKE_BUILD_TYPE=Release -DZEROCLIP_USE_LIBJPEG=OFF >/dev/null
cmake --build "$BUILD/stb" -j2 --target bench_image >/dev/null

exec /usr/bin/python3 tests/bench/photos_bench.py --build "$BUILD" --stb-build "$BUILD/stb" --photos "$PHOTOS/set" "$@"
