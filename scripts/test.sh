#!/usr/bin/env bash
# The README's test command: set up the environment, lint, run the whole test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k ops).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh pipeline,dev
export DVC_NO_ANALYTICS=1 MLFLOW_ENABLE_TELEMETRY=false RAY_USAGE_STATS_ENABLED=0 PYTHONHASHSEED=0
.venv/bin/ruff check .
set +e
# Two worker processes (pytest-xdist; DGMN_TEST_WORKERS=0 runs in this one): most tests wait on
# subprocesses, Ray and servers, so two share the 2-core CI machine well. Tests that start a
# multi-node loopback Ray cluster, or share one smoke training, carry an xdist_group and run on
# one worker (--dist loadgroup).
.venv/bin/python -m pytest -n "${DGMN_TEST_WORKERS:-2}" --dist loadgroup "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing on purpose" >&2
  exit 1
fi
exit "$rc"
