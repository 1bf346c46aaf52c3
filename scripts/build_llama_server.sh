#!/usr/bin/env bash
# Build llama.cpp's own `llama-server` (parallel decode slots: -np N) from the llama.cpp sources
# vendored in the installed llama-cpp-python's sdist, so the server and our local backend run the
# same llama.cpp. Only benchmarks/server_slots.py needs it (not `make test`, not `make demo`): the
# binary is not on PyPI, and llama_cpp.server serialises requests (one slot).
# Prints the binary's path; reuses an earlier build. About 10-15 minutes on 2 cores.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
VERSION="$("$PY" -c 'import importlib.metadata as m; print(m.version("llama_cpp_python"))')"
HOME_DIR="${LABELTRIAGE_HOME:-$HOME/.labeltriage}"
OUT="$HOME_DIR/llama-server/$VERSION"
BIN="$OUT/build/bin/llama-server"
if [[ -x "$BIN" ]]; then
    echo "$BIN"
    exit 0
fi
mkdir -p -m 0700 "$HOME_DIR"
mkdir -p "$OUT"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$PY" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$WORK" >&2
tar -xzf "$WORK"/llama_cpp_python-*.tar.gz -C "$WORK"
SRC="$(echo "$WORK"/llama_cpp_python-*/vendor/llama.cpp)"
cmake -S "$SRC" -B "$OUT/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DGGML_NATIVE=ON >&2
cmake --build "$OUT/build" --target llama-server -j "${CMAKE_BUILD_PARALLEL_LEVEL:-2}" >&2
echo "$BIN"
