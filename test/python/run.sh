#!/usr/bin/env bash
# Python tests for images/ against the real packages (torchtune 0.6.1, torchao 0.11.0,
# lm-eval 0.4.9.2, synthetic-data-kit 0.0.5, CPU torch 2.7.1).
#
#   bash test/python/run.sh [pytest args]   run the tests (creates the venv on first use)
#   bash test/python/run.sh --lock          re-resolve requirements.txt (+ the image locks) from *.in
#   bash test/python/run.sh --print-python  create the venv if needed, print its python (the pods tier uses it)
#
# The venv lives outside the repo, keyed by the lock file, the interpreter and uv's version:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/cot-vr-py/<hash>/   (uv's download cache beside it, uv-cache/)
# so a second run, or a run after an unrelated change, installs nothing.
# Configs under test: the rendered stacks (npm run render, one folder per stacks/Pulumi.<stack>.yaml)
# when scripts/render.ts exists, else manifests/ templates with the blog's overrides. A caller may
# set COTVR_RENDER_DIR itself.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/test/python"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/cot-vr-py"
UV_VERSION=0.13.9
EXCLUDE_NEWER=2025-11-30   # lock with contemporaries of the pins (lm-eval 0.4.9.2: 2025-11-26)
PY="${COTVR_PYTHON:-$(command -v python3.11 || command -v python3)}"
export UV_CACHE_DIR="$CACHE/uv-cache" UV_NO_PROGRESS=1 UV_PYTHON_DOWNLOADS=never
mkdir -p "$CACHE"
log() { printf '[test:python] %s\n' "$*" >&2; }

source "$(dirname "${BASH_SOURCE[0]}")/../lib/uv.sh"

if [ "${1:-}" = "--lock" ]; then
    common=(--no-header --exclude-newer "$EXCLUDE_NEWER" --python-platform x86_64-unknown-linux-gnu)
    "$UV" pip compile "$HERE/requirements.in" --python-version 3.11 "${common[@]}" -o "$HERE/requirements.txt"
    # trainer image: python 3.10, the base image's ROCm torch/torchvision stay (not in the lock).
    "$UV" pip compile "$ROOT/images/trainer/requirements.in" --python-version 3.10 "${common[@]}" \
        --no-emit-package torch --no-emit-package torchvision --no-emit-package triton \
        $(for p in cublas-cu12 cuda-cupti-cu12 cuda-nvrtc-cu12 cuda-runtime-cu12 cudnn-cu12 cufft-cu12 cufile-cu12 curand-cu12 cusolver-cu12 cusparse-cu12 cusparselt-cu12 nccl-cu12 nvjitlink-cu12 nvtx-cu12; do echo --no-emit-package nvidia-$p; done) \
        -o "$ROOT/images/trainer/requirements.txt"
    "$UV" pip compile "$ROOT/images/datagen/requirements.in" --python-version 3.11 "${common[@]}" -o "$ROOT/images/datagen/requirements.txt"
    exit 0
fi

KEY=$( { cat "$HERE/requirements.txt"; "$PY" -c 'import sys; print(sys.version)'; echo "uv $UV_VERSION"; } | sha256sum | cut -c1-16)
VENV="$CACHE/$KEY"
(
    flock 9
    if [ ! -f "$VENV/.complete" ]; then
        log "creating $VENV (first run for this lock; the CUDA torch wheels are ~3 GB)"
        start=$(date +%s)
        rm -rf "$VENV"
        "$UV" venv --quiet --python "$PY" "$VENV"
        "$UV" pip sync --quiet --python "$VENV/bin/python" "$HERE/requirements.txt"
        touch "$VENV/.complete"
        log "venv ready in $(( $(date +%s) - start ))s"
        # keep the disk bounded: venvs of older locks go (uv-cache keeps their wheels)
        for old in "$CACHE"/????????????????; do
            if [ "$old" != "$VENV" ] && [ -d "$old" ]; then rm -rf "$old"; log "removed old venv $old"; fi
        done
    fi
) 9>"$CACHE/.lock"

if [ "${1:-}" = "--print-python" ]; then
    echo "$VENV/bin/python"
    exit 0
fi

if [ -z "${COTVR_RENDER_DIR:-}" ] && [ -f "$ROOT/scripts/render.ts" ]; then
    RENDER_TMP=$(mktemp -d)
    trap 'rm -rf "$RENDER_TMP"' EXIT
    [ -d "$ROOT/node_modules" ] || (cd "$ROOT" && npm ci --no-audit --no-fund >&2)
    shopt -s nullglob
    for stack_file in "$ROOT"/stacks/Pulumi.*.yaml; do
        stack=$(basename "$stack_file" .yaml); stack=${stack#Pulumi.}
        log "rendering stack $stack"
        (cd "$ROOT" && npm run --silent render -- --stack "$stack" --out "$RENDER_TMP/$stack" >&2)
    done
    export COTVR_RENDER_DIR="$RENDER_TMP"
fi
if [ -n "${COTVR_RENDER_DIR:-}" ]; then
    log "configs under test: rendered stacks in $COTVR_RENDER_DIR"
else
    log "configs under test: manifests/ templates with the blog's overrides (no scripts/render.ts yet)"
fi

cd "$ROOT"
exec env HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 MPLBACKEND=Agg TOKENIZERS_PARALLELISM=false \
    "$VENV/bin/python" -m pytest "$HERE" -p no:cacheprovider "$@"
