#!/usr/bin/env bash
# The test command: install what is missing, configure, build (tests, CLI, benchmarks) and run
# every test with ctest; then build the CUDA tests (-DZEROCLIP_USE_CUDA=ON, in $build-cuda: they
# compile without a GPU) and run them, their GPU cases skipping where no device is present. Ends
# with what ran and what was skipped (scripts/test_summary.py), last line `N passed, N failed,
# N skipped`; with CI=true any skip but the GPU cases fails the run. Extra arguments go to ctest
# (e.g. -R tokenizer) and leave the CUDA step out.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${ZEROCLIP_BUILD_DIR:-$root/build}
cuda_build=$build-cuda
cuda_root=${CUDAToolkit_ROOT:-/usr/local/cuda}
jobs=$(nproc)

# chromium (116 MB download, 372 MB installed, ~1 min): tests/cli/test_cli_html.py renders the HTML report in it.
bash "$root/scripts/setup.sh" chromium
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release ${ZEROCLIP_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j"$jobs"

results=()
notes=()
if (($# == 0)); then
    if [[ -f $cuda_root/include/nvrtc.h && -f $cuda_root/include/cublas_v2.h ]]; then
        cmake -S "$root" -B "$cuda_build" -DCMAKE_BUILD_TYPE=Release -DZEROCLIP_USE_CUDA=ON \
            -DCUDAToolkit_ROOT="$cuda_root" -DZEROCLIP_BUILD_EXAMPLES=OFF ${ZEROCLIP_CMAKE_ARGS:-} >/dev/null
        cmake --build "$cuda_build" -j"$jobs" --target zeroclip_cuda_tests zeroclip_cuda_stub_check
    else
        notes+=(--note-skip "CUDA tests not built: no CUDA toolkit in $cuda_root (set CUDAToolkit_ROOT)")
    fi
fi

# ctest's JUnit files keep every test's output, for the count of the cases inside each entry.
status=0
rm -f "$build/ctest-results.xml" "$cuda_build/ctest-results.xml"
(cd "$build" && ctest --output-on-failure -j"$jobs" --output-junit "$build/ctest-results.xml" \
    --test-output-size-passed 10000000 "$@") || status=1
results+=("$build/ctest-results.xml")
if (($# == 0)) && [[ -d $cuda_build && ${#notes[@]} -eq 0 ]]; then
    (cd "$cuda_build" && ctest --output-on-failure -R '^cuda\.' --output-junit "$cuda_build/ctest-results.xml" \
        --test-output-size-passed 10000000) || status=1
    results+=("$cuda_build/ctest-results.xml")
fi
"$root/scripts/python.sh" "$root/scripts/test_summary.py" "${results[@]}" ${notes[@]+"${notes[@]}"} || status=1
exit $status
