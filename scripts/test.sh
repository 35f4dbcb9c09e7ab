#!/usr/bin/env bash
# The test command: install what is missing, configure, build (tests, CLI, benchmarks) and run
# every test with ctest. Extra arguments go to ctest (e.g. -R tokenizer).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${ZEROCLIP_BUILD_DIR:-$root/build}

# chromium (116 MB download, 372 MB installed, ~1 min): tests/cli/test_cli_html.py renders the HTML report in it.
bash "$root/scripts/setup.sh" chromium
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release ${ZEROCLIP_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j"$(nproc)"
cd "$build"
ctest --output-on-failure -j"$(nproc)" "$@"
