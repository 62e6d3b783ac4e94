#!/usr/bin/env bash
# The side-by-side benchmark (issue 9): sluicegate against the peers a user would pick instead
# (dlt, drt, a plain psycopg + requests script), scenarios S1-S8 of the performance anchors,
# on one machine. Writes BENCHMARKS.md and docs/bench-results.png.
#
# Usage:
#   bench/run.sh [ROWS...]        default: 1000000 (e.g. `bench/run.sh 1000000 5000000`;
#                                 `bench/run.sh 100000` for a quick look)
#
# What it does:
#   1. makes bench/.venv from requirements/bench.txt (dlt, connectorx, drt-core, psycopg,
#      requests, matplotlib) and, for S8, the Airflow 3 venv .venv (scripts/env.sh);
#   2. builds sluicegate in release (BENCH_NO_BUILD=1 uses target/release/sluicegate as is);
#   3. starts a throwaway PostgreSQL 15 (scripts/services.sh) under the work directory;
#   4. runs bench/harness.py, which generates the `customers` table (12 columns) per size,
#      starts the sinks (`sluicegate emulate webhook`, `sluicegate emulate hubspot`), runs every
#      scenario for every tool BENCH_REPEAT times, and writes the report and the chart.
#
# Environment:
#   BENCH_REPEAT=3             runs per measurement (the median is reported)
#   BENCH_TOOLS=sluicegate,dlt,drt,plain
#   BENCH_SCENARIOS=S1,S2,S3,S4,S5,S6,S7,S8
#   BENCH_SMALL_ROWS=100000    rows for S6 (flaky sink) and S7 (kill -9)
#   BENCH_RATE_ROWS=30000      rows for S5 (rate-limited HubSpot emulator, 100 requests/10 s)
#   BENCH_DIR=DIR              work directory (default bench/.work; kept, Postgres stopped)
#   BENCH_OUT=BENCHMARKS.md    the report (the chart goes to docs/bench-results.png)
#   BENCH_NO_BUILD=1           do not run cargo build --release
#   BENCH_NO_AIRFLOW=1         skip making the Airflow venv (S8 then reports what it can)
#
# Needs: cargo, python3.11, and root or sudo only to apt-get install postgresql-15 / time.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf '==> %s\n' "$*" >&2; }
ROWS=("$@")
[ "${#ROWS[@]}" -gt 0 ] || ROWS=(1000000)
for r in "${ROWS[@]}"; do
  case "$r" in '' | *[!0-9]*) echo "usage: $0 [ROWS...]   (whole numbers)" >&2; exit 2 ;; esac
done

WORK="${BENCH_DIR:-$ROOT/bench/.work}"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"

# shellcheck source=scripts/services.sh
source "$ROOT/scripts/services.sh"
if ! /usr/bin/time -f '%M' true >/dev/null 2>&1; then
  _services_apt_install time
fi

# 1. Python environments.
BVENV="$ROOT/bench/.venv"
if [ ! -x "$BVENV/bin/python" ]; then
  say "creating $BVENV"
  python3.11 -m venv "$BVENV" 2>/dev/null || python3 -m venv "$BVENV"
fi
if ! cmp -s "$ROOT/requirements/bench.txt" "$BVENV/.installed" 2>/dev/null; then
  say "installing requirements/bench.txt into $BVENV"
  "$BVENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/requirements/bench.txt"
  cp "$ROOT/requirements/bench.txt" "$BVENV/.installed"
fi
if [ -z "${BENCH_NO_AIRFLOW:-}" ] && [ ! -x "$ROOT/.venv/bin/airflow" ]; then
  say "making the Airflow 3 venv (.venv) for S8"
  (source "$ROOT/scripts/env.sh" && make_venv "$ROOT/requirements/airflow3-py311.txt" "$ROOT/requirements/dev.txt")
fi

# 2. sluicegate.
if [ -z "${BENCH_NO_BUILD:-}" ]; then
  say "building sluicegate (release)"
  (cd "$ROOT" && cargo build --release --quiet)
fi
BIN="$ROOT/target/release/sluicegate"
[ -x "$BIN" ] || { echo "no $BIN; build it or unset BENCH_NO_BUILD" >&2; exit 2; }

# 3. PostgreSQL (the settings of the performance anchors' machine).
say "PostgreSQL in $WORK"
trap 'services_stop "$WORK"' EXIT
services_start pg "$WORK" -c shared_buffers=1GB -c fsync=off -c synchronous_commit=off \
  -c full_page_writes=off -c max_wal_size=8GB

# 4. The scenarios.
export DO_NOT_TRACK=1 RUNTIME__DLTHUB_TELEMETRY=false
"$BVENV/bin/python" "$ROOT/bench/harness.py" \
  --root "$ROOT" --work "$WORK" --bin "$BIN" --pg "$SLUICEGATE_TEST_PG_URL" \
  --out "${BENCH_OUT:-$ROOT/BENCHMARKS.md}" --chart "$ROOT/docs/bench-results.png" "${ROWS[@]}"
