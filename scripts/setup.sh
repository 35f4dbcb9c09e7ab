#!/usr/bin/env bash
# Installs the Debian packages zeroclip's build, tests and tools need, plus any package named as an
# argument (opt-in extras: scripts/test.sh adds chromium for the HTML report's browser test).
# Idempotent: when all are present it only checks (well under a second) and changes nothing.
set -euo pipefail

packages=(cmake g++ make libeigen3-dev libstb-dev nlohmann-json3-dev doctest-dev zlib1g-dev libjpeg62-turbo-dev python3 python3-numpy
          python3-distributed  # examples/dask/ and its test
          clang-14 libclang-rt-14-dev "$@")  # clang + its fuzzer runtime: the fuzz.replay test (tests/fuzz)
# Training the default model and the speed comparisons also need PyTorch (large): opt in.
if [[ "${ZEROCLIP_WITH_TORCH:-0}" == 1 ]]; then packages+=(python3-torch); fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
    exit 0
fi
echo "setup: installing ${missing[*]}" >&2
sudo=""
if [[ $(id -u) != 0 ]]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
