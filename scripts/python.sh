#!/usr/bin/env bash
# Runs Debian's Python (the one with python3-numpy), whatever `python3` comes first on PATH.
for candidate in /usr/bin/python3 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import numpy' 2>/dev/null; then
        exec "$candidate" "$@"
    fi
done
echo "zeroclip: no Python 3 with numpy found; run scripts/setup.sh (installs python3-numpy)" >&2
exit 1
