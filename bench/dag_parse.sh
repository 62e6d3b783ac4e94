#!/usr/bin/env bash
# DAG parse time added by sluicegate against bare Airflow (goal <= 20 ms per DAG file); see
# bench/dag_parse.py for the method. Uses the test environment (.venv, made by scripts/test.sh
# or scripts/env.sh's make_venv), or SLUICEGATE_VENV.
#
#   bench/dag_parse.sh [--samples N] [--goal-ms MS] [DAG_FILE ...]
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/env.sh"
if [ ! -x "$VENV/bin/python" ]; then
  echo "error: no virtual environment at $VENV; run scripts/test.sh first (or set SLUICEGATE_VENV)" >&2
  exit 1
fi
cd "$ROOT"
AIRFLOW_HOME="$(mktemp -d "${TMPDIR:-/tmp}/sluicegate-parse.XXXXXX")"
trap 'rm -rf "$AIRFLOW_HOME"' EXIT
export AIRFLOW_HOME AIRFLOW__CORE__LOAD_EXAMPLES=False
"$VENV/bin/python" bench/dag_parse.py "$@"
