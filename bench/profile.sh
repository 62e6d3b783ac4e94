#!/usr/bin/env bash
# Profile one sluicegate run of a benchmark scenario with perf (system-wide CPU samples, so the
# PostgreSQL backend and the sink show up beside sluicegate), to explain a lost scenario.
#
# Usage (after bench/run.sh, whose PostgreSQL data directory it reuses):
#   bench/profile.sh nochange|updates|full [TABLE]    TABLE defaults to customers
#
#   full      the first sync of TABLE into the near-free sink (S1)
#   nochange  a re-sync after a first sync, nothing changed (S2)
#   updates   a re-sync after 1 % of the rows got an update with an updated_at bump (S3)
#
# Prints the wall time, sluicegate's user/sys CPU, CPU samples per process (who used the
# cores during the run) and sluicegate's hottest functions. perf data: $WORK/perf-<scenario>.data.
# Environment: BENCH_DIR (default bench/.work), BENCH_NO_BUILD as for run.sh; BENCH_STRACE=1 also
# counts sluicegate's system calls (strace -f -c; the wall time then includes strace's overhead,
# the counts do not depend on it) and prints the state file's size.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCEN="${1:-}"
TABLE="${2:-customers}"
case "$SCEN" in full | nochange | updates) ;; *) echo "usage: $0 nochange|updates|full [TABLE]" >&2; exit 2 ;; esac
command -v perf >/dev/null || { echo "perf is needed (Debian: linux-perf)" >&2; exit 2; }
WORK="$(cd "${BENCH_DIR:-$ROOT/bench/.work}" && pwd)"
say() { printf '==> %s\n' "$*" >&2; }

# shellcheck source=scripts/services.sh
source "$ROOT/scripts/services.sh"
services_start pg "$WORK" -c shared_buffers=1GB -c fsync=off -c synchronous_commit=off \
  -c full_page_writes=off -c max_wal_size=8GB
trap 'services_stop "$WORK"; [ -n "${EMU:-}" ] && kill "$EMU" 2>/dev/null; true' EXIT
if [ -z "${BENCH_NO_BUILD:-}" ]; then (cd "$ROOT" && cargo build --release --quiet); fi
BIN="$ROOT/target/release/sluicegate"

P="$WORK/profile-$SCEN"
rm -rf "$P" && mkdir -p "$P"
DISCARD=(--discard)
[ "$SCEN" = updates ] && DISCARD=()
"$BIN" emulate webhook --port 0 "${DISCARD[@]}" >"$P/emulator.out" 2>/dev/null &
EMU=$!
for _ in $(seq 1 100); do [ -s "$P/emulator.out" ] && break; sleep 0.1; done
URL="$(head -n1 "$P/emulator.out")"
MAPS=""
for c in email first_name last_name company country plan balance lead_score is_customer created_at updated_at; do
  MAPS+="      - { from: $c, to: $c }"$'\n'
done
cat >"$P/sluicegate.yml" <<YML
sources:
  pg:
    url: \${BENCH_PG_URL}
destinations:
  sink:
    type: webhook
    url: $URL/customers
    batch_size: 1000
syncs:
  - id: 1
    name: bench
    source: { connection: pg, table: $TABLE }
    destination: { connection: sink, object: customers }
    primary_identifier: { from: id, to: id }
    mappings:
${MAPS}    behavior: mirror
YML
export BENCH_PG_URL="$SLUICEGATE_TEST_PG_URL"
SG=("$BIN" --project "$P/sluicegate.yml" --state "sqlite://$P/state.db" run bench --json)
if [ "$SCEN" != full ]; then
  say "first sync (not profiled)"
  "${SG[@]}" >/dev/null
fi
if [ "$SCEN" = updates ]; then
  say "1 % updates with an updated_at bump"
  psql -X -q "$BENCH_PG_URL" -c "UPDATE $TABLE SET lead_score = lead_score + 1, updated_at = clock_timestamp() WHERE id % 100 = 7"
fi
say "profiled run ($SCEN), load average $(cut -d' ' -f1-3 /proc/loadavg)"
DATA="$WORK/perf-$SCEN.data"
t0=$(date +%s.%N)
WRAP=()
[ -n "${BENCH_STRACE:-}" ] && WRAP=(strace -f -c -o "$P/strace.txt")
perf record -q -a -g -e cpu-clock -F 499 -o "$DATA" -- /usr/bin/time -f '%e s wall, %U s user, %S s sys, %M KB peak RSS' \
  -o "$P/time.txt" "${WRAP[@]}" sh -c 'echo $$ >"$0"; exec "$@"' "$P/pid" "${SG[@]}" >"$P/run.json" 2>"$P/run.err"
t1=$(date +%s.%N)
echo "scenario $SCEN on $TABLE: $(cat "$P/time.txt")"
grep -E '"(status|records_processed)"' "$P/run.json" | tr -d ' \n'; echo
COPY_S=$( { /usr/bin/time -f '%e' psql -X -q "$BENCH_PG_URL" -c "COPY (SELECT * FROM $TABLE) TO STDOUT" >/dev/null; } 2>&1 )
echo "COPY ($TABLE) TO STDOUT for comparison: $COPY_S s"
if [ -n "${BENCH_STRACE:-}" ]; then
  echo
  echo "sluicegate's system calls (strace -f -c; state.db $(du -m "$P/state.db" | cut -f1) MB):"
  head -n 14 "$P/strace.txt"
fi
echo
echo "CPU samples per process during the run (all cores; other work on the machine included):"
perf report -i "$DATA" --no-children --sort comm --stdio -q -g none 2>/dev/null | grep -v '^$' | head -12
echo
echo "CPU samples per thread of the sync process (pid $(cat "$P/pid"); the sink, the same binary, excluded):"
perf report -i "$DATA" --no-children --pid "$(cat "$P/pid")" --sort comm --stdio -q -g none 2>/dev/null | grep -v '^$' | head -8
echo
echo "the sync process's hottest functions (self time, share of all samples):"
perf report -i "$DATA" --no-children --pid "$(cat "$P/pid")" --sort symbol --stdio -q -g none \
  --percent-limit 0.3 2>/dev/null | grep -v '^$' | head -30
echo
echo "the postgres backend's hottest functions:"
perf report -i "$DATA" --no-children --comm postgres --sort symbol --stdio -q -g none --percent-limit 0.5 2>/dev/null |
  grep -v '^$' | head -12
