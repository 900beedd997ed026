#!/usr/bin/env bash
# Set up lmforge in ./.venv and run the pipeline on the embedded sample corpus.
#   bash infra/bootstrap.sh              install, then `lmforge run`
#   bash infra/bootstrap.sh --install-only
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first, pinned: on CPU-only machines this is the CPU wheel; an unpinned torch would pull
# a multi-GB CUDA build. Everything else comes from pyproject.toml.
.venv/bin/python -m pip install --quiet "torch==${LMFORGE_TORCH_VERSION:-2.13.0}"
.venv/bin/python -m pip install --quiet -e ".[dev]"
echo "lmforge installed in $(pwd)/.venv"

if [ "${1:-}" != "--install-only" ]; then
  .venv/bin/lmforge run "$@"
fi
