#!/usr/bin/env bash
# The CPU benchmark of issue 8: zeroclip against ONNX Runtime (onnxruntime-node from npm) and
# PyTorch (Debian's python3-torch), same random-weight models (ViT-B/32, RN50; F16 .safetensors),
# same shapes, 2 threads each, interleaved rounds; prints a table of medians and ratios
# (tests/bench/run_bench.py). Never run by the test suite. Results and commands: BENCHMARKS.md.
#
#   bash scripts/bench_cpu.sh [--rounds 5] [--reps 3] [--threads 2] [--models vit,rn50]
#                             [--peers zeroclip,ort,torch] [--json out.json]
#
# zeroclip variants are peers too: zeroclip-int8, zeroclip-bf16 (--precision), and with a path
# suffix, zeroclip-int8-avx2 (ZEROCLIP_CPU_PATH=avx2: the AVX2 kernels on an AVX-512 machine), e.g.
#   bash scripts/bench_cpu.sh --peers zeroclip,zeroclip-int8,zeroclip-bf16,zeroclip-int8-avx2,ort
#
# BUILD (default build-bench) is the build folder; the first run also installs what is missing
# (python3-onnx and libopenblas0-pthread with apt, onnxruntime-node with npm into BUILD/node),
# writes the models, their ONNX exports and the prompt tokens into BUILD/bench-data (minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-bench}

need_apt=()
/usr/bin/python3 -c "import onnx" 2>/dev/null || need_apt+=(python3-onnx)
/usr/bin/python3 -c "import torch" 2>/dev/null || need_apt+=(python3-torch)
[ -d /usr/lib/x86_64-linux-gnu/openblas-pthread ] || need_apt+=(libopenblas0-pthread)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "bench_cpu.sh: installing ${need_apt[*]}" >&2
    apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
    # Installing OpenBLAS makes it the system's libblas; keep the system as it was (the benchmark
    # gives it to PyTorch alone, through LD_LIBRARY_PATH).
    if [[ " ${need_apt[*]} " == *" libopenblas0-pthread "* ]]; then
        update-alternatives --set libblas.so.3-x86_64-linux-gnu /usr/lib/x86_64-linux-gnu/blas/libblas.so.3 2>/dev/null || true
        update-alternatives --set liblapack.so.3-x86_64-linux-gnu /usr/lib/x86_64-linux-gnu/lapack/liblapack.so.3 2>/dev/null || true
    fi
fi
if [ ! -d "$BUILD/node/node_modules/onnxruntime-node" ]; then
    mkdir -p "$BUILD/node"
    (cd "$BUILD/node" && { [ -f package.json ] || npm init -y >/dev/null; } && npm install --ignore-scripts onnxruntime-node >/dev/null)
fi

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j2 --target bench_cpu >/dev/null

exec /usr/bin/python3 tests/bench/run_bench.py --build "$BUILD" "$@"
