#!/usr/bin/env bash
# Serve load benchmark: `sluicegate serve` answers 100 concurrent API clients polling runs while
# its workers run syncs, and no run is affected.
#
# Usage:
#   bench/serve_load.sh [CLIENTS] [SECONDS]     defaults: 100 clients, 30 s
#
# What it does (a measurement; exits 1 when a poll fails or a run is affected):
#   1. builds sluicegate and the load client (examples/serve_load.rs) in release
#      (BENCH_NO_BUILD=1 uses target/release as it is; BENCH_PROFILE=debug uses target/debug);
#   2. creates a SQLite warehouse with BENCH_ROWS contacts (default 20000) and a project of
#      BENCH_SYNCS syncs (default 4) of that table to the webhook emulator;
#   3. starts `sluicegate emulate webhook --discard` and `sluicegate serve --workers 4`;
#   4. runs the load client: each sync is triggered (full sync) again as soon as its last run
#      ended, while CLIENTS clients poll `GET /api/v1/sync_runs/{id}` and
#      `GET /api/v1/syncs/{id}/sync_runs` without pause for SECONDS;
#   5. prints requests/s and latency p50/p90/p99/max of the polls, and the runs: each must have
#      completed with every row updated and none failed.
#
# Environment: BENCH_ROWS, BENCH_SYNCS, BENCH_NO_BUILD, BENCH_PROFILE, BENCH_KEEP=1 (keep the
# work directory), BENCH_STATE (a state store URL, e.g. postgres://…; default SQLite).
# Needs: cargo, python3.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLIENTS="${1:-100}"
SECONDS_="${2:-30}"
ROWS="${BENCH_ROWS:-20000}"
SYNCS="${BENCH_SYNCS:-4}"
PROFILE="${BENCH_PROFILE:-release}"
say() { printf '==> %s\n' "$*" >&2; }
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sg-serve-load.XXXXXX")"
EMU_PID="" SERVE_PID=""
cleanup() {
  for pid in "$SERVE_PID" "$EMU_PID"; do
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  done
  if [ -z "${BENCH_KEEP:-}" ]; then rm -rf "$WORK"; else say "kept $WORK"; fi
}
trap cleanup EXIT

if [ -z "${BENCH_NO_BUILD:-}" ]; then
  say "building sluicegate and the load client ($PROFILE)"
  if [ "$PROFILE" = release ]; then
    (cd "$ROOT" && cargo build --release --quiet --bin sluicegate --example serve_load)
  else
    (cd "$ROOT" && cargo build --quiet --bin sluicegate --example serve_load)
  fi
fi
BIN="$ROOT/target/$PROFILE/sluicegate"
LOAD="$ROOT/target/$PROFILE/examples/serve_load"
[ -x "$BIN" ] && [ -x "$LOAD" ] || { echo "no $BIN or $LOAD; build them or unset BENCH_NO_BUILD" >&2; exit 2; }

say "creating $ROWS contacts in $WORK/warehouse.db"
python3 - "$WORK/warehouse.db" "$ROWS" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("CREATE TABLE contacts (id INTEGER PRIMARY KEY, email TEXT, name TEXT, score INTEGER)")
db.executemany("INSERT INTO contacts VALUES (?, ?, ?, ?)",
               ((i, f"user{i}@example.com", f"User {i}", i % 100) for i in range(1, int(sys.argv[2]) + 1)))
db.commit()
PY

say "starting the webhook emulator"
"$BIN" emulate webhook --port 0 --discard >"$WORK/emulator.out" 2>"$WORK/emulator.err" &
EMU_PID=$!
for _ in $(seq 100); do [ -s "$WORK/emulator.out" ] && break; sleep 0.05; done
EMU_URL="$(head -n1 "$WORK/emulator.out")"
[ -n "$EMU_URL" ] || { cat "$WORK/emulator.err" >&2; exit 1; }

{
  printf 'sources:\n  warehouse:\n    url: sqlite://warehouse.db\n'
  printf 'destinations:\n  hook:\n    type: webhook\n    url: %s/contacts\n    batch_size: 500\n' "$EMU_URL"
  printf 'syncs:\n'
  for i in $(seq "$SYNCS"); do
    printf '  - {id: %d, name: contacts_%d, source: {connection: warehouse, table: contacts}, destination: {connection: hook, object: contacts_%d},\n' "$i" "$i" "$i"
    printf '     primary_identifier: {from: email, to: email}, mappings: [{from: name, to: full_name}, {from: score, to: score}]}\n'
  done
} >"$WORK/sluicegate.yml"

TOKEN="secret-token:bench-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
say "starting sluicegate serve (4 workers)"
STATE_ARGS=()
[ -n "${BENCH_STATE:-}" ] && STATE_ARGS=(--state "$BENCH_STATE")
SLUICEGATE_API_TOKEN="$TOKEN" "$BIN" --project "$WORK/sluicegate.yml" "${STATE_ARGS[@]}" serve --listen 127.0.0.1:0 --workers 4 --poll 250ms \
  >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVE_PID=$!
for _ in $(seq 200); do [ -s "$WORK/serve.out" ] && break; sleep 0.05; done
URL="$(head -n1 "$WORK/serve.out")"
[ -n "$URL" ] || { cat "$WORK/serve.err" >&2; exit 1; }

say "$CLIENTS clients polling for ${SECONDS_}s while $SYNCS syncs of $ROWS rows run again and again"
set +e
"$LOAD" "$URL" "$TOKEN" "$CLIENTS" "$SECONDS_" "$ROWS" $(seq "$SYNCS")
rc=$?
set -e
if grep -q "panicked" "$WORK/serve.err"; then
  echo "sluicegate serve panicked:" >&2; grep -A3 panicked "$WORK/serve.err" >&2; rc=1
fi
exit $rc
