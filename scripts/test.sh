#!/usr/bin/env bash
# Set up from scratch and run every test: the Rust tests (cargo), then the Python and Airflow
# tests (pytest) against the extension built into a virtual environment with a pinned
# Airflow 3 install. Everything it needs is installed here; nothing is assumed but Rust and
# CPython 3.10-3.13.
#
#   scripts/test.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
need_rust
cd "$ROOT"

step "cargo test"
cargo test --locked

make_venv "$ROOT/requirements/airflow3-py311.txt" "$ROOT/requirements/dev.txt"

step "building the extension into $VENV (maturin develop)"
rm -f "$ROOT"/python/sluicegate/_core*.so
VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" "$VENV/bin/maturin" develop --quiet

step "pytest"
# Every test must run here: a missing extension or Airflow is a failure, not a skip.
export SLUICEGATE_REQUIRE_ALL=1
"$VENV/bin/python" -m pytest tests/python "$@"
