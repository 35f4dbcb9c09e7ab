#!/usr/bin/env bash
# The main job: install, build the CLI, and classify the bundled example images with the
# bundled default model. Extra arguments go to `zeroclip classify` (e.g. --format jsonl).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${ZEROCLIP_BUILD_DIR:-$root/build}

bash "$root/scripts/setup.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release ${ZEROCLIP_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j"$(nproc)" --target zeroclip_cli >/dev/null
"$build/examples/zeroclip" classify \
    --model "$root/examples/models/zeroclip-toy-vit.safetensors" \
    --labels-file "$root/examples/labels.txt" \
    --top-k 3 "$@" "$root/examples/images"
