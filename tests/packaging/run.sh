#!/usr/bin/env bash
# Builds and runs the consumer project against zeroclip, installed (find_package) or as a
# subfolder (add_subdirectory). The consumer is built at -O0: it proves compiling and linking,
# and -O0 keeps the Eigen-heavy compile short. Usage: run.sh find_package|add_subdirectory SOURCE_DIR WORK_DIR MODEL
set -euo pipefail
mode=$1 src=$2 work=$3 model=$4
rm -rf "$work" && mkdir -p "$work"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ $mode == find_package ]]; then
    cmake -S "$src" -B "$work/zeroclip-build" -DZEROCLIP_BUILD_TESTS=OFF -DZEROCLIP_BUILD_EXAMPLES=OFF \
        -DZEROCLIP_INSTALL=ON -DCMAKE_INSTALL_PREFIX="$work/prefix" >/dev/null
    cmake --install "$work/zeroclip-build" >/dev/null
    cmake -S "$here/consumer" -B "$work/consumer-build" -DCMAKE_CXX_FLAGS=-O0 \
        -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
else
    cmake -S "$here/consumer" -B "$work/consumer-build" -DCMAKE_CXX_FLAGS=-O0 \
        -DZEROCLIP_CONSUMER_MODE=add_subdirectory -DZEROCLIP_SOURCE="$src" >/dev/null
fi
cmake --build "$work/consumer-build" -j2 >/dev/null
"$work/consumer-build/consumer" "$model"
