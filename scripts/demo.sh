#!/usr/bin/env bash
# `make demo`: phantom cohort -> ingest -> encode -> train -> evaluate -> register -> predict,
# all on embedded defaults (Prefect in-process, MLflow on SQLite under CLINFUSE_HOME).
set -euo pipefail
DEMO_DIR="${1:-demo-cohort}"
DEMO_N="${2:-200}"
BIN=".venv/bin"
export CLINFUSE_HOME="${CLINFUSE_HOME:-$PWD/.clinfuse}"
start=$(date +%s)

echo "==> 1/2 phantom cohort of ${DEMO_N} patients in ${DEMO_DIR}"
if [ ! -f "${DEMO_DIR}/cohort.csv" ]; then
  "$BIN/clinfuse" phantom --patients "$DEMO_N" --out "$DEMO_DIR" --seed 7 --missing-rate 0.2 --mechanism mcar
else
  echo "    (already there; delete ${DEMO_DIR} to regenerate)"
fi

echo "==> 2/2 pipeline: ingest, encode, train, evaluate, register, predict (Prefect flows, in-process)"
"$BIN/clinfuse" pipeline --source "$DEMO_DIR" --cohort "$DEMO_DIR/cohort.csv" --answers "$DEMO_DIR/answers.parquet"

echo
echo "demo finished in $(( $(date +%s) - start )) s; data under ${CLINFUSE_HOME}"
