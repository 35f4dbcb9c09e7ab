#!/usr/bin/env bash
# The one-shot GPU check of zeroclip's CUDA backend (issue 9), for a machine with an NVIDIA GPU and
# the CUDA toolkit (12.0+: NVRTC, cuBLAS, cudart), from a fresh copy of the repository:
#   1. checks the GPU, the toolkit and the build dependencies (runs scripts/setup.sh only if
#      configuring fails for want of them; fails clearly if that is impossible);
#   2. configures with -DZEROCLIP_USE_CUDA=ON and builds the CUDA tests and the GPU benchmark;
#   3. runs the CUDA tests (every op against cpu_backend, the tiny fixtures end to end, real shapes);
#   4. runs bench_gpu (ViT-B/32 and RN50, FP32/TF32/FP16/BF16 GEMMs) and the PyTorch reference
#      timing (tests/bench/bench_torch_gpu.py) for the same shapes, and prints both tables last.
# Budget: under 5 minutes on an H100 (each step has its own timeout).
# Environment: ZEROCLIP_GPU_BUILD_DIR (default build-gpu-check), ZEROCLIP_FIXTURES (default
# ../shared/fixtures or ./shared/fixtures), CUDAToolkit_ROOT (when the toolkit is not in
# /usr/local/cuda or on PATH), BENCH_SECONDS (per measurement, default 0.3).
# Exit status: 0 all good; 1 a step failed (the message says which).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${ZEROCLIP_GPU_BUILD_DIR:-$root/build-gpu-check}
seconds=${BENCH_SECONDS:-0.3}
logs=$build/gpu_check_logs
t_start=$(date +%s)

say() { printf '\n== %s (%ss)\n' "$*" "$(($(date +%s) - t_start))" >&2; }
fail() {
    printf '\ngpu_check: FAILED: %s\n' "$*" >&2
    exit 1
}

# ---- 1. machine --------------------------------------------------------------------------------
say "GPU"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader ||
        fail "nvidia-smi cannot talk to the driver (no usable GPU)"
else
    echo "nvidia-smi not found; the tests will tell whether a device is usable" >&2
fi

say "CUDA toolkit"
cuda_root=${CUDAToolkit_ROOT:-}
if [[ -z $cuda_root ]]; then
    if command -v nvcc >/dev/null; then cuda_root=$(cd "$(dirname "$(command -v nvcc)")/.." && pwd)
    elif [[ -d /usr/local/cuda ]]; then cuda_root=/usr/local/cuda
    fi
fi
[[ -n $cuda_root && -f $cuda_root/include/nvrtc.h && -f $cuda_root/include/cublas_v2.h ]] ||
    fail "CUDA toolkit not found (need nvrtc.h and cublas_v2.h; set CUDAToolkit_ROOT)"
echo "toolkit: $cuda_root ($(grep -m1 -o '"version" *: *"[0-9.]*"' "$cuda_root/version.json" 2>/dev/null ||
    "$cuda_root/bin/nvcc" --version 2>/dev/null | tail -1))" >&2

say "build tools"
for tool in cmake c++ make; do
    command -v $tool >/dev/null || tools_missing=1
done
if [[ -n ${tools_missing:-} ]]; then
    [[ -f $root/scripts/setup.sh ]] || fail "cmake, c++ or make missing, and no scripts/setup.sh to install them"
    bash "$root/scripts/setup.sh" || fail "scripts/setup.sh could not install the build tools"
fi

fixtures=${ZEROCLIP_FIXTURES:-}
if [[ -z $fixtures ]]; then
    for candidate in "$root/../shared/fixtures" "$root/shared/fixtures"; do
        if [[ -d $candidate/models ]]; then fixtures=$(cd "$candidate" && pwd); break; fi
    done
fi
if [[ -n $fixtures ]]; then
    export ZEROCLIP_FIXTURES=$fixtures
    echo "fixtures: $fixtures" >&2
else
    echo "WARNING: fixtures not found: the tiny-model end-to-end cases will be skipped (set ZEROCLIP_FIXTURES)" >&2
fi

# ---- 2. build ----------------------------------------------------------------------------------
say "configure ($build)"
if [[ -f $build/CMakeCache.txt ]] && ! grep -qx "CMAKE_HOME_DIRECTORY:INTERNAL=$root" "$build/CMakeCache.txt"; then
    rm -rf "$build"  # a build folder copied from another checkout
fi
mkdir -p "$logs"
cmake_args=(-S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DZEROCLIP_USE_CUDA=ON -DZEROCLIP_BUILD_TESTS=ON
            -DZEROCLIP_BUILD_EXAMPLES=OFF "-DCUDAToolkit_ROOT=$cuda_root")
[[ -n $fixtures ]] && cmake_args+=("-DZEROCLIP_FIXTURES_DIR=$fixtures")
# Libraries (Eigen, nlohmann-json, doctest, zlib) are whatever CMake finds; only when configuring
# fails is scripts/setup.sh (Debian packages) tried, then configuring once more.
if ! timeout 120 cmake "${cmake_args[@]}" >"$logs/configure.log" 2>&1; then
    if [[ -f $root/scripts/setup.sh ]]; then
        echo "configure failed; installing the dependencies with scripts/setup.sh" >&2
        bash "$root/scripts/setup.sh" >&2 || fail "scripts/setup.sh could not install the dependencies"
        timeout 120 cmake "${cmake_args[@]}" >"$logs/configure.log" 2>&1 ||
            { tail -30 "$logs/configure.log" >&2; fail "cmake configure, even after scripts/setup.sh (log: $logs/configure.log)"; }
    else
        tail -30 "$logs/configure.log" >&2
        fail "cmake configure: dependencies missing and no scripts/setup.sh (log: $logs/configure.log)"
    fi
fi

say "build"
timeout 240 cmake --build "$build" -j"$(nproc)" --target zeroclip_cuda_tests zeroclip_cuda_stub_check bench_gpu \
    >"$logs/build.log" 2>&1 || { grep -E 'error|Error' "$logs/build.log" | head -30 >&2; fail "build (log: $logs/build.log)"; }

# ---- 3. tests ----------------------------------------------------------------------------------
say "CUDA tests"
tests_ok=1
timeout 150 "$build/tests/cuda/zeroclip_cuda_tests" 2>&1 | tee "$logs/tests.log" | grep -E 'MESSAGE|ERROR|FATAL|test cases|assertions|Status' >&2
[[ ${PIPESTATUS[0]} == 0 ]] || tests_ok=0
if grep -q "skipped: no CUDA device" "$logs/tests.log"; then
    fail "the tests found no usable CUDA device: $(grep -m1 -o 'skipped: no CUDA device.*' "$logs/tests.log")"
fi
timeout 30 "$build/tests/cuda/zeroclip_cuda_stub_check" >"$logs/stub.log" 2>&1 || tests_ok=0

# ---- 4. benchmarks -----------------------------------------------------------------------------
say "bench_gpu"
timeout 150 "$build/tests/cuda/bench_gpu" --seconds "$seconds" 2>&1 | tee "$logs/bench_gpu.log" >&2
bench_rc=${PIPESTATUS[0]}

say "PyTorch reference"
torch_rc=2
for py in python3 /usr/bin/python3 python; do
    if command -v "$py" >/dev/null && "$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
        timeout 150 "$py" "$root/tests/bench/bench_torch_gpu.py" --seconds "$seconds" 2>&1 | tee "$logs/bench_torch.log" >&2
        torch_rc=${PIPESTATUS[0]}
        break
    fi
done
[[ $torch_rc == 2 ]] && echo "no Python with a CUDA-enabled PyTorch found: reference timing skipped" | tee "$logs/bench_torch.log" >&2

# ---- summary: the tables last ------------------------------------------------------------------
printf '\n==================== zeroclip GPU check (%ss) ====================\n' "$(($(date +%s) - t_start))"
grep -m1 '^device:' "$logs/bench_gpu.log" || true
printf 'CUDA tests: %s   %s\n' "$([[ $tests_ok == 1 ]] && echo PASSED || echo FAILED)" \
    "$(grep -m1 'test cases:' "$logs/tests.log" | sed 's/\[doctest\] //')"
grep -E 'GPU vs (CPU|float64)|worst 1-cos' "$logs/tests.log" | sed 's/^.*MESSAGE: /  /' | head -12
echo
sed -n '/^zeroclip cuda_cublas/,$p' "$logs/bench_gpu.log"
echo
sed -n '/^PyTorch reference/,$p' "$logs/bench_torch.log"
grep -m1 '^PyTorch [0-9]' "$logs/bench_torch.log" || true
[[ $tests_ok == 1 ]] || fail "CUDA tests (log: $logs/tests.log)"
[[ $bench_rc == 0 ]] || fail "bench_gpu exited with $bench_rc (log: $logs/bench_gpu.log)"
[[ $torch_rc == 0 || $torch_rc == 2 ]] || fail "bench_torch_gpu.py exited with $torch_rc (log: $logs/bench_torch.log)"
echo "gpu_check: OK"
