#!/usr/bin/env bash
# Builds every libFuzzer target (tests/fuzz/fuzz_*.cpp) with clang and replays, without mutation,
# its committed seed corpus (corpus/<target>/) and every past crasher (crashers/<target>/): the
# regression test of the parsers against hostile input (seconds once built). See README.md here.
#
# usage: build_and_replay.sh [BUILD_DIR]      (default: build/fuzz)
# env:   CLANG_CXX     the clang++ to use (default: clang++, then clang++-14)
#        FUZZ_JOBS     parallel compiles (default: 2)
#        FUZZ_TARGETS  space-separated subset of targets, e.g. "npy image"
#        CI            when "true" (or 1), missing clang or fuzzer runtime FAILS instead of skipping
# exit:  0 all replayed cleanly, 1 a build or replay failed, 77 skipped (no clang / no runtime)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build/fuzz}
jobs=${FUZZ_JOBS:-2}
mkdir -p "$build"
build=$(cd "$build" && pwd)

unavailable() {
    echo "fuzz replay: $1" >&2
    case "${CI:-}" in
        true | TRUE | True | 1) echo "fuzz replay: CI is set, so this is a failure (install clang-14 libclang-rt-14-dev; scripts/setup.sh does)" >&2; exit 1 ;;
    esac
    echo "fuzz replay: skipped" >&2
    exit 77
}

cxx=${CLANG_CXX:-}
if [[ -z $cxx ]]; then
    for c in clang++ clang++-14; do
        if command -v "$c" >/dev/null 2>&1; then cxx=$c; break; fi
    done
fi
[[ -n $cxx ]] || unavailable "no clang++ found"
"$cxx" --version 2>/dev/null | grep -qi clang || unavailable "$cxx is not clang"

flags=(-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -std=c++17 -O1 -gline-tables-only
       -I"$root/include" -I/usr/include/eigen3 "-DZEROCLIP_SOURCE_DIR=\"$root\"")

# The fuzzer runtime (libclang-rt-*-dev on Debian) is a separate package from clang itself.
probe=$build/.runtime_probe
if [[ ! -x $probe ]]; then
    printf '#include <cstdint>\n#include <cstddef>\nextern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n' > "$probe.cpp"
    "$cxx" -fsanitize=fuzzer,address,undefined "$probe.cpp" -o "$probe" 2> "$probe.log" ||
        unavailable "$cxx cannot link -fsanitize=fuzzer,address,undefined (fuzzer runtime missing?): $(head -c 300 "$probe.log")"
fi

targets=()
if [[ -n ${FUZZ_TARGETS:-} ]]; then
    read -r -a targets <<< "$FUZZ_TARGETS"
else
    for src in "$here"/fuzz_*.cpp; do
        name=$(basename "$src" .cpp)
        targets+=("${name#fuzz_}")
    done
fi

# Rebuild a target only when its source, fuzz_common.hpp or any library header is newer.
stale=()
for t in "${targets[@]}"; do
    bin=$build/fuzz_$t
    [[ -f $here/fuzz_$t.cpp ]] || { echo "fuzz replay: no target fuzz_$t.cpp" >&2; exit 1; }
    if [[ ! -x $bin || $here/fuzz_$t.cpp -nt $bin || $here/fuzz_common.hpp -nt $bin ]] ||
       [[ -n $(find "$root/include" -newer "$bin" -type f -print -quit) ]]; then
        stale+=("$t")
    fi
done
if ((${#stale[@]})); then
    echo "fuzz replay: building ${stale[*]} with $cxx" >&2
    export cxx build here
    printf '%s\n' "${stale[@]}" | xargs -P "$jobs" -I{} bash -c '
        "$cxx" "$@" "$here/fuzz_{}.cpp" -o "$build/fuzz_{}.tmp" -lz -pthread &&
            mv "$build/fuzz_{}.tmp" "$build/fuzz_{}" ||
            { echo "fuzz replay: build of fuzz_{} failed" >&2; exit 255; }' _ "${flags[@]}" ||
        exit 1
fi

status=0
for t in "${targets[@]}"; do
    inputs=()
    for d in "$here/corpus/$t" "$here/crashers/$t"; do
        [[ -d $d ]] && for f in "$d"/*; do [[ -f $f ]] && inputs+=("$f"); done
    done
    if ((${#inputs[@]} == 0)); then
        echo "fuzz replay: $t has no corpus" >&2
        status=1
        continue
    fi
    log=$build/replay_$t.log
    # Files as arguments: each input runs once, no mutation.
    if (cd "$build" && "$build/fuzz_$t" -rss_limit_mb=2048 -timeout=10 "${inputs[@]}") > "$log" 2>&1; then
        echo "fuzz replay: $t ok (${#inputs[@]} inputs)"
    else
        echo "fuzz replay: $t FAILED; the input was: $(grep '^Running: ' "$log" | tail -1 | cut -c10-)" >&2
        grep -E 'ERROR|SUMMARY|invariant|what\(\)|terminate' "$log" | head -5 >&2 || true
        status=1
    fi
done
exit $status
