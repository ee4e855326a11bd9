#!/usr/bin/env bash
# The README's first command: set up the environment and run the whole DVC pipeline
# (fetch → preprocess → train → evaluate → tune → report) on the embedded synthetic default.
# Extra arguments go to `dvc repro` (e.g. scripts/run_pipeline.sh train@table1-dgmn_da).
# Another profile: DGMN_PROFILE=smoke scripts/run_pipeline.sh  (runs `dvc exp run -S profile=…`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh pipeline,dev
export PATH="$PWD/.venv/bin:$PATH" DVC_NO_ANALYTICS=1 RAY_USAGE_STATS_ENABLED=0 \
       MLFLOW_ENABLE_TELEMETRY=false
if [ ! -d .dvc ]; then
  echo "error: .dvc/ is missing; run this from a git clone of the project" >&2
  exit 2
fi
start=$(date +%s)
if [ -n "${DGMN_PROFILE:-}" ]; then
  dvc exp run -S "profile=${DGMN_PROFILE}" "$@"
else
  dvc repro "$@"
fi
echo "[pipeline] finished in $(( $(date +%s) - start )) s; reports in reports/, MLflow store in mlflow.db"
echo "[pipeline] browse the runs: .venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db"
