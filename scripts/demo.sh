#!/usr/bin/env bash
# `make demo`: phantom cohort -> ingest -> encode -> train -> evaluate -> register -> predict,
# all on embedded defaults (Prefect in-process, MLflow on SQLite under CLINFUSE_HOME).
# `bash scripts/demo.sh --next-steps` prints only the closing lines (what to run next);
# tests/flows/test_printed_path.py runs every command they print.
set -euo pipefail

next_steps() {
  # Pasted from the project root as printed: no activated virtualenv, no shell variable needed.
  local home_arg=""
  if [ "${CLINFUSE_HOME}" != "$PWD/.clinfuse" ]; then home_arg=" CLINFUSE_HOME=${CLINFUSE_HOME}"; fi
  echo "Next, from $PWD (each serves on 127.0.0.1 until Ctrl-C):"
  echo "  make dashboard${home_arg}    # clinician worklist, http://127.0.0.1:8501"
  echo "  make mlflow-ui${home_arg}    # runs, metrics and the registered model, http://127.0.0.1:5000"
  echo "  make prefect-ui${home_arg}   # the flow runs of this demo, http://127.0.0.1:4200"
  echo "  .venv/bin/clinfuse --help    # every command; e.g. .venv/bin/clinfuse doctor"
}

export CLINFUSE_HOME="${CLINFUSE_HOME:-$PWD/.clinfuse}"
if [ "${1:-}" = "--next-steps" ]; then next_steps; exit 0; fi
DEMO_DIR="${1:-demo-cohort}"
DEMO_N="${2:-200}"
BIN=".venv/bin"
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
next_steps
