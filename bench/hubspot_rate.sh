#!/usr/bin/env bash
# HubSpot rate benchmark: how close a large sync gets to HubSpot's request budget.
#
# Goal: against the HubSpot emulator set to 100 requests per rolling 10 s (the Free/Starter
# private app budget, and the destination's default), a 50,000-row upsert sync (500 batches of
# 100) reaches >= 95 % of the allowed request rate after the first 10 s, with < 1 % of requests
# answered 429. It takes about 50 s.
#
# Usage:
#   bench/hubspot_rate.sh [ROWS]       ROWS defaults to 50000
#
# What it does (a measurement, not a test; exits 1 when a target is missed or a check fails):
#   1. builds sluicegate in release (`cargo build --release`; BENCH_NO_BUILD=1 skips it);
#   2. creates a SQLite warehouse with ROWS contacts (sqlite3);
#   3. starts `sluicegate emulate hubspot --rate-limit 100 --interval-ms 10000` with a token;
#   4. runs the sync once with the destination's defaults (no rate_limit in the project: the
#      pacing comes from the default budget and the emulator's X-HubSpot-RateLimit headers);
#   5. reads the emulator's stats (per-second log of requests and 429s) and prints: requests,
#      429s, achieved requests/s after the first 10 s (whole seconds, the last partial one left
#      out) against the allowed rate, and their ratio.
#
# Environment:
#   BENCH_LIMIT=100          requests per window at the emulator
#   BENCH_INTERVAL_MS=10000  the window
#   BENCH_NO_BUILD=1         use target/release/sluicegate as it is
#   BENCH_KEEP=1             keep the work directory
#
# Needs: cargo, sqlite3, curl, python3.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROWS="${1:-50000}"
case "$ROWS" in
  '' | *[!0-9]*) echo "usage: $0 [ROWS]   (ROWS a whole number, default 50000)" >&2; exit 2 ;;
esac
LIMIT="${BENCH_LIMIT:-100}"
INTERVAL_MS="${BENCH_INTERVAL_MS:-10000}"
say() { printf '==> %s\n' "$*" >&2; }
for tool in sqlite3 curl python3; do
  command -v "$tool" >/dev/null || { echo "$tool is needed" >&2; exit 2; }
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sg-hubspot-bench.XXXXXX")"
EMU_PID=""
cleanup() {
  if [ -n "$EMU_PID" ]; then kill "$EMU_PID" 2>/dev/null || true; wait "$EMU_PID" 2>/dev/null || true; fi
  if [ -z "${BENCH_KEEP:-}" ]; then rm -rf "$WORK"; else say "kept $WORK"; fi
}
trap cleanup EXIT

if [ -z "${BENCH_NO_BUILD:-}" ]; then
  say "building sluicegate (release)"
  (cd "$ROOT" && cargo build --release --quiet)
fi
BIN="$ROOT/target/release/sluicegate"
[ -x "$BIN" ] || { echo "no $BIN; build it or unset BENCH_NO_BUILD" >&2; exit 2; }

say "creating $ROWS contacts in $WORK/warehouse.db"
sqlite3 "$WORK/warehouse.db" <<SQL
CREATE TABLE contacts (id INTEGER PRIMARY KEY, email TEXT, name TEXT, score INTEGER);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $ROWS)
INSERT INTO contacts SELECT i, 'user' || i || '@example.com', 'User ' || i, i % 100 FROM n;
SQL

TOKEN="bench-$RANDOM$RANDOM"
say "starting the HubSpot emulator ($LIMIT requests per $INTERVAL_MS ms)"
HUBSPOT_EMULATOR_TOKEN="$TOKEN" "$BIN" emulate hubspot --port 0 --rate-limit "$LIMIT" --interval-ms "$INTERVAL_MS" \
  --daily-limit 0 --property score >"$WORK/emulator.out" 2>"$WORK/emulator.err" &
EMU_PID=$!
URL=""
for _ in $(seq 1 100); do
  URL="$(head -n1 "$WORK/emulator.out" 2>/dev/null || true)"
  [ -n "$URL" ] && break
  sleep 0.1
done
[ -n "$URL" ] || { echo "the emulator did not start:" >&2; cat "$WORK/emulator.err" >&2; exit 1; }

cat >"$WORK/sluicegate.yml" <<YML
sources:
  warehouse:
    url: sqlite://warehouse.db
destinations:
  crm:
    type: hubspot
    access_token: \${BENCH_HUBSPOT_TOKEN}
    base_url: $URL
syncs:
  - id: 1
    name: contacts
    source: {connection: warehouse, table: contacts}
    destination: {connection: crm, object: contacts}
    primary_identifier: {from: email, to: email}
    mappings:
      - {from: name, to: firstname}
      - {from: score, to: score}
YML

curl -fsS -X POST "$URL/_emulator/reset" >/dev/null
say "running the sync (about $((ROWS / 100 / (LIMIT * 1000 / INTERVAL_MS) + 1)) s)"
START=$(date +%s.%N)
BENCH_HUBSPOT_TOKEN="$TOKEN" "$BIN" --project "$WORK/sluicegate.yml" run 1 --json >"$WORK/run.json" 2>"$WORK/run.err" || {
  echo "the run failed:" >&2; cat "$WORK/run.err" "$WORK/run.json" >&2; exit 1; }
END=$(date +%s.%N)
curl -fsS "$URL/_emulator/stats" >"$WORK/stats.json"

python3 - "$WORK/stats.json" "$WORK/run.json" "$ROWS" "$LIMIT" "$INTERVAL_MS" "$START" "$END" <<'PY'
import json, sys
stats = json.load(open(sys.argv[1]))
run = json.load(open(sys.argv[2]))
rows, limit, interval_ms = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
wall = float(sys.argv[7]) - float(sys.argv[6])
allowed = limit / (interval_ms / 1000.0)
log = stats["per_second"]
last = max((s["second"] for s in log if s["requests"] > 0), default=0)
# Whole seconds after the first 10 s, the last (partial) second left out.
window = [s for s in log if 10 <= s["second"] < last]
admitted = sum(s["requests"] - s["rate_limited"] for s in window)
achieved = admitted / len(window) if window else float("nan")
requests, limited = stats["requests"], stats["rate_limited"]
ratio = achieved / allowed
share = limited / requests if requests else 0.0
counts = run.get("counts", run)
delivered = counts.get("records_updated")
status = run.get("status")
print(f"rows                        {rows}")
print(f"run                         {status}, {delivered} records delivered, {wall:.1f} s wall clock")
print(f"contacts at the emulator    {stats['contacts']}")
print(f"requests                    {requests}")
print(f"429s                        {limited} ({100 * share:.2f} %)")
print(f"allowed                     {allowed:.2f} requests/s ({limit} per {interval_ms} ms)")
print(f"achieved after 10 s         {achieved:.2f} requests/s over {len(window)} whole seconds")
print(f"ratio                       {100 * ratio:.1f} %  (target >= 95 %)")
ok = True
if status != "completed" or delivered != rows or stats["contacts"] != rows:
    print("FAIL: the run did not deliver every row"); ok = False
if not ratio >= 0.95:
    print("FAIL: below 95 % of the allowed rate"); ok = False
if not share < 0.01:
    print("FAIL: 1 % or more of the requests were answered 429"); ok = False
sys.exit(0 if ok else 1)
PY
