#!/usr/bin/env bash
# The README's first command: set up the environment and run the whole DVC pipeline
# (fetch → preprocess → train → evaluate → tune → report) on the embedded synthetic default.
# Extra arguments go to `dvc repro` (e.g. scripts/run_pipeline.sh train@table1-dgmn_da).
# Another profile: DGMN_PROFILE=smoke scripts/run_pipeline.sh  (runs `dvc exp run -S profile=…`).
#
# One local Ray instance serves every stage, so each training does not pay for starting and
# stopping Ray: `python -m pipeline.common.ray_local` (the project's one definition of a local
# instance, also used by a stage started on its own) starts it on 127.0.0.1 only, with token
# auth (the token in a 0600 file under its temp dir, never printed), and stops it by PID at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh pipeline,dev
export PATH="$PWD/.venv/bin:$PATH" DVC_NO_ANALYTICS=1 RAY_USAGE_STATS_ENABLED=0 \
       MLFLOW_ENABLE_TELEMETRY=false
if [ ! -d .dvc ]; then
  echo "error: .dvc/ is missing; run this from a git clone of the project" >&2
  exit 2
fi

if [ -z "${RAY_ADDRESS:-}" ]; then
  ray_tmp=$(mktemp -d /tmp/dgmnray.XXXX)   # short: Ray's socket paths have a length limit
  trap 'python -m pipeline.common.ray_local stop "$ray_tmp"' EXIT
  # prints `export RAY_ADDRESS=127.0.0.1:PORT RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=… …`
  ray_env=$(python -m pipeline.common.ray_local start "$ray_tmp" --num-cpus "$(nproc)")
  eval "$ray_env"
  export RAY_TRAIN_HEALTH_CHECK_INTERVAL_S=0.5
  echo "[pipeline] Ray on $RAY_ADDRESS (loopback only, token auth; temp $ray_tmp)"
fi

start=$(date +%s)
if [ -n "${DGMN_PROFILE:-}" ]; then
  # `dvc exp run` commits the experiment to a git ref and needs a git identity; without one
  # configured, name the pipeline for this process only (nothing is written to git config)
  if [ -z "$(git config user.email || true)" ] && [ -z "${GIT_AUTHOR_EMAIL:-}" ]; then
    export GIT_AUTHOR_NAME="dgmn pipeline" GIT_AUTHOR_EMAIL="dgmn-pipeline@localhost" \
           GIT_COMMITTER_NAME="dgmn pipeline" GIT_COMMITTER_EMAIL="dgmn-pipeline@localhost"
  fi
  dvc exp run -S "profile=${DGMN_PROFILE}" "$@"
else
  dvc repro "$@"
fi
echo "[pipeline] finished in $(( $(date +%s) - start )) s; reports in reports/, MLflow store in mlflow.db"
echo "[pipeline] browse the runs: .venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db"
