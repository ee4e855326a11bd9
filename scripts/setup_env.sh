#!/usr/bin/env bash
# Create (or reuse) the project virtual environment in .venv and install dgmn with its extras.
# Usage: scripts/setup_env.sh [extras]   (default extras: pipeline,dev)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-pipeline,dev}"
py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null 2>&1 || py=python3
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $py"
  "$py" -m venv .venv
fi
stamp=".venv/.dgmn-installed-$(cat pyproject.toml | sha1sum | cut -c1-12)-${extras//,/_}"
if [ ! -f "$stamp" ]; then
  echo "[setup] installing dgmn[$extras] (torch 2.14.1 CPU/CUDA build; a few minutes on first run)"
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -m pip install -q -e ".[${extras}]" 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -c "import dgmn, torch, torchvision; print('[setup] torch', torch.__version__, 'torchvision', torchvision.__version__)"
  touch "$stamp"
fi
