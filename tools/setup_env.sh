#!/usr/bin/env bash
# Idempotent environment set-up for Cascade-CLIP.
#
#   bash tools/setup_env.sh            # creates/updates .venv/ in the checkout
#
# Environment variables:
#   CASCADE_CLIP_VENV=/path/to/venv    use (or create) this virtual environment instead of .venv/
#                                      - e.g. one where you already installed a CUDA torch;
#                                      torch is only installed when it is not importable.
#   CASCADE_CLIP_PYTHON=python3.11     interpreter used to create a new venv.
#   CASCADE_CLIP_CACHE=~/.cache/cascade_clip
#                                      where the mmcv-full wheel built against each torch
#                                      version is kept (outside the checkout, so fresh clones
#                                      and CI reuse it).
#   TORCH_SPEC="torch==2.14.1 torchvision==0.29.1"
#                                      what to install when torch is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CASCADE_CLIP_VENV:-$ROOT/.venv}"
PYTHON_BIN="${CASCADE_CLIP_PYTHON:-python3.11}"
CACHE="${CASCADE_CLIP_CACHE:-$HOME/.cache/cascade_clip}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
MMCV_VERSION="1.7.2"
log() { echo "[setup_env] $*" >&2; }

command -v "$PYTHON_BIN" >/dev/null 2>&1 || PYTHON_BIN=python3
if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment $VENV with $($PYTHON_BIN --version 2>&1)"
  "$PYTHON_BIN" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

# The stamp records what a complete install was made from; same inputs => nothing to do.
STAMP="$VENV/.cascade_clip_stamp"
want_stamp="$(cat "$ROOT/requirements/runtime.txt" "$ROOT/requirements/tests.txt" "$ROOT/requirements/web.txt" "$ROOT/setup.py" "$0" | sha1sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_stamp" ] \
   && "$PY" -c "import torch, torchvision, mmcv, mmcv.ops, mmseg, cascade_clip" >/dev/null 2>&1; then
  log "environment $VENV is complete (nothing to do)"
  exit 0
fi

"${PIP[@]}" install -q "pip>=23" "setuptools>=77,<81" wheel

if ! "$PY" -c "import torch, torchvision" >/dev/null 2>&1; then
  log "installing $TORCH_SPEC"
  # shellcheck disable=SC2086
  "${PIP[@]}" install $TORCH_SPEC
fi
TORCH_VER="$("$PY" -c 'import torch; print(torch.__version__)')"
log "torch $TORCH_VER"

if ! "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" >/dev/null 2>&1; then
  # pip's wheel cache is keyed by the sdist only and would reuse a wheel built against
  # another torch (undefined symbols at import), so the wheel is cached per torch version.
  WHEEL_DIR="$CACHE/wheels/torch-$TORCH_VER"
  mkdir -p "$WHEEL_DIR"
  WHEEL="$(ls "$WHEEL_DIR"/mmcv_full-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
  if [ -z "$WHEEL" ]; then
    log "building mmcv-full==$MMCV_VERSION with its C++ ops against torch $TORCH_VER (about 11 minutes on 2 cores, once)"
    "${PIP[@]}" install -q addict packaging Pillow pyyaml "yapf==0.40.1" opencv-python numpy ninja
    tmp="$(mktemp -d "$WHEEL_DIR/build.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    "${PIP[@]}" download -q --no-deps --no-binary :all: -d "$tmp" "mmcv-full==$MMCV_VERSION"
    tar -xzf "$tmp"/mmcv-full-"$MMCV_VERSION".tar.gz -C "$tmp"
    # mmcv 1.7.2 compiles with -std=c++14/17, but torch >= 2.10's headers require C++20
    # ("#error C++20 or later compatible compiler is required to use ATen"): raise the
    # standard in this private copy of the sources (nothing installed is patched).
    if "$PY" -c "import sys, torch; v = tuple(int(x) for x in torch.__version__.split('+')[0].split('.')[:2]); sys.exit(v < (2, 10))"; then
      sed -i 's/-std=c++1[47]/-std=c++20/g; s#/std:c++1[47]#/std:c++20#g' "$tmp/mmcv-full-$MMCV_VERSION/setup.py"
    fi
    (cd "$tmp/mmcv-full-$MMCV_VERSION" && MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-2}" \
        "${PIP[@]}" wheel --no-deps --no-build-isolation --no-cache-dir -w "$tmp/dist" .)
    mv "$tmp"/dist/mmcv_full-*.whl "$WHEEL_DIR"/   # a rename: the cache never holds half a wheel
    rm -rf "$tmp"; trap - EXIT
    WHEEL="$(ls "$WHEEL_DIR"/mmcv_full-"$MMCV_VERSION"-*.whl | head -n1)"
  else
    log "reusing cached $WHEEL"
  fi
  "${PIP[@]}" install -q "$WHEEL"
fi

"${PIP[@]}" install -q -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e "$ROOT"
PYTHONWARNINGS=ignore "$PY" -c "import torch, torchvision, mmcv, mmcv.ops, mmseg, cascade_clip" 2>/dev/null || "$PY" -c "import torch, torchvision, mmcv, mmcv.ops, mmseg, cascade_clip"
echo "$want_stamp" > "$STAMP"
log "ready: $VENV (torch $TORCH_VER, mmcv $MMCV_VERSION, mmseg $("$PY" -c 'import mmseg; print(mmseg.__version__)'))"
