#!/usr/bin/env bash
# No-change re-sync benchmark (scenario S2 of the performance anchors).
#
# Goal: on the local Postgres with a 5 M-row, 12-column table, a no-change re-sync takes
# <= 1.3x the time of `COPY (SELECT ...) TO STDOUT` of the same table, peak RSS <= 150 MB, and
# sends 0 rows.
#
# Usage:
#   bench/diff_nochange.sh [ROWS]            ROWS defaults to 5000000; 100000 for a quick check
#
# What it does (prints a table; it is a measurement, not a test, but exits 1 when a target
# is missed or a check fails):
#   1. starts a throwaway PostgreSQL 15 (scripts/services.sh) in the work directory;
#   2. creates `customers` (id bigint pk, email text unique, 10 more columns of text, numeric,
#      integer, boolean, timestamptz, date, jsonb) with ROWS rows from generate_series;
#   3. builds sluicegate in release (`cargo build --release`);
#   4. starts `sluicegate emulate webhook --port 0 --discard` (without --discard when this
#      build lacks it: then ROWS above 1,000,000 is refused, as the emulator would keep every
#      record in memory);
#   5. run 1: the initial full delivery (reported, not a target); then BENCH_REPEAT (3)
#      no-change runs, each timed (wall clock) with peak RSS (GNU time), each checked to report
#      0 rows sent, and the emulator checked to have received no request;
#   6. baseline, BENCH_REPEAT times each: `psql -c "COPY (SELECT <same columns> FROM customers)
#      TO STDOUT" > /dev/null` (the reference), psql `\copy (SELECT ...) TO '/dev/null'`, and,
#      server side only (no rows leave the server), `COPY (SELECT ...) TO '/dev/null'` and the
#      same in identifier order (`ORDER BY id`, or `email COLLATE "C"`), as the engine reads;
#   7. prints seconds (median), rows/s, peak RSS, CPU, and the ratio to COPY TO STDOUT.
#
# Environment:
#   BENCH_DIR=DIR          work directory (default: a new temporary one, removed at the end).
#                          A kept DIR is reused: its database and table are kept when the row
#                          count matches, so a second benchmark skips the data generation.
#   BENCH_KEEP=1           keep the work directory and leave Postgres running
#   BENCH_REPEAT=3         timed repetitions per measurement (the median is reported)
#   BENCH_IDENTIFIER=id    the sync's identifier column: id (bigint pk) or email (text, unique)
#   BENCH_BATCH_SIZE=1000  webhook batch size (only the initial run sends)
#   BENCH_PG_OPTS="..."    extra postgres options (default: shared_buffers=1GB, fsync=off,
#                          synchronous_commit=off, full_page_writes=off, max_wal_size=8GB)
#   BENCH_NO_BUILD=1       use target/release/sluicegate as it is
#
# Needs root (or sudo) only to install missing packages: postgresql-15 and `time` (Debian).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/services.sh
source "$ROOT/scripts/services.sh"

ROWS="${1:-5000000}"
case "$ROWS" in
  '' | *[!0-9]*) echo "usage: $0 [ROWS]   (ROWS a whole number, default 5000000)" >&2; exit 2 ;;
esac
REPEAT="${BENCH_REPEAT:-3}"
IDENT="${BENCH_IDENTIFIER:-id}"
BATCH="${BENCH_BATCH_SIZE:-1000}"
PG_OPTS="${BENCH_PG_OPTS:--c shared_buffers=1GB -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_wal_size=8GB}"
case "$IDENT" in id | email) ;; *) echo "BENCH_IDENTIFIER must be id or email" >&2; exit 2 ;; esac

say() { printf '==> %s\n' "$*" >&2; }

if [ -n "${BENCH_DIR:-}" ]; then
  WORK="$BENCH_DIR"
  mkdir -p "$WORK"
  WORK="$(cd "$WORK" && pwd)"
  KEEP=1
else
  WORK="$(mktemp -d /tmp/sluicegate-bench.XXXXXX)"
  KEEP="${BENCH_KEEP:-}"
fi
EMU_PID=""
cleanup() {
  [ -n "$EMU_PID" ] && kill "$EMU_PID" 2>/dev/null && wait "$EMU_PID" 2>/dev/null
  if [ -z "${KEEP:-}" ]; then
    services_stop "$WORK"
    rm -rf "$WORK"
  else
    [ -n "${BENCH_KEEP:-}" ] || services_stop "$WORK"
    echo "work directory kept: $WORK" >&2
  fi
}
trap cleanup EXIT

# GNU time gives the peak RSS of a process and its CPU share.
if ! /usr/bin/time -f '%M' true >/dev/null 2>&1; then
  _services_apt_install time
fi

# ------------------------------------------------------------------------------------------
say "PostgreSQL in $WORK"
# shellcheck disable=SC2086
services_start pg "$WORK" $PG_OPTS
PGURL="$SLUICEGATE_TEST_PG_URL"
export PGCONNECT_TIMEOUT=10
psql_() { psql -X -q -v ON_ERROR_STOP=1 "$PGURL" "$@"; }

COLS="id, email, first_name, last_name, company, country, balance, lead_score, is_customer, created_at, signup_date, attributes"
have="$(psql_ -Atc "SELECT coalesce((SELECT rows FROM bench_meta WHERE name = 'customers'), -1)" 2>/dev/null || echo -1)"
if [ "$have" != "$ROWS" ]; then
  say "generating customers: $ROWS rows x 12 columns"
  t0=$(date +%s.%N)
  psql_ <<SQL
SET client_min_messages = warning;
DROP TABLE IF EXISTS customers;
CREATE TABLE IF NOT EXISTS bench_meta (name text PRIMARY KEY, rows bigint NOT NULL);
DELETE FROM bench_meta WHERE name = 'customers';
CREATE TABLE customers (
  id          bigint PRIMARY KEY,
  email       text NOT NULL,
  first_name  text NOT NULL,
  last_name   text,
  company     text NOT NULL,
  country     text NOT NULL,
  balance     numeric(12,2) NOT NULL,
  lead_score  integer NOT NULL,
  is_customer boolean NOT NULL,
  created_at  timestamptz NOT NULL,
  signup_date date NOT NULL,
  attributes  jsonb NOT NULL
);
INSERT INTO customers
SELECT i,
       'customer' || i || '@example.com',
       (ARRAY['Ada','Grace','Alan','Edsger','Barbara','Donald','Frances','Ken','Margaret','Niklaus'])[1 + i % 10],
       CASE WHEN i % 17 = 0 THEN NULL ELSE 'Lastname' || (i % 9973) END,
       'Company ' || (i % 50021) || ' Ltd',
       (ARRAY['DE','FR','GB','US','CA','BR','IN','JP','AU','NL','SE','ES'])[1 + i % 12],
       round(((i::bigint * 7919) % 10000000) / 100.0, 2),
       ((i::bigint * 31) % 1000)::int,
       i % 3 = 0,
       timestamptz '2020-01-01 00:00:00+00' + (i % 157680000) * interval '1 second',
       date '2015-01-01' + (i % 3650),
       jsonb_build_object('plan', (ARRAY['free','starter','pro','enterprise'])[1 + i % 4], 'seats', i % 250, 'beta', i % 11 = 0)
FROM generate_series(1, $ROWS) AS i;
ALTER TABLE customers ADD CONSTRAINT customers_email_key UNIQUE (email);
VACUUM (ANALYZE) customers;
INSERT INTO bench_meta VALUES ('customers', $ROWS);
SQL
  say "generated in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"
else
  say "customers already has $ROWS rows (reused)"
fi
say "table: $(psql_ -Atc "SELECT pg_size_pretty(pg_table_size('customers')) || ' heap, ' || pg_size_pretty(pg_total_relation_size('customers')) || ' total'")"

# ------------------------------------------------------------------------------------------
BIN="$ROOT/target/release/sluicegate"
if [ -z "${BENCH_NO_BUILD:-}" ]; then
  say "cargo build --release (the first one takes a few minutes)"
  (cd "$ROOT" && cargo build --release --locked --bin sluicegate >&2)
fi
[ -x "$BIN" ] || { echo "missing $BIN (build failed?)" >&2; exit 1; }

DISCARD=()
if "$BIN" emulate webhook --help 2>/dev/null | grep -q -- '--discard'; then
  DISCARD=(--discard)
elif [ "$ROWS" -gt 1000000 ]; then
  echo "this sluicegate build has no \`emulate webhook --discard\`; without it the emulator keeps all $ROWS records in memory. Use ROWS <= 1000000." >&2
  exit 1
else
  say "note: this build has no \`emulate webhook --discard\`; the emulator keeps the records"
fi

# The emulator, in the background; its URL is the first line it prints.
"$BIN" emulate webhook --port 0 "${DISCARD[@]}" >"$WORK/emulator.out" 2>"$WORK/emulator.err" &
EMU_PID=$!
for _ in $(seq 1 100); do
  [ -s "$WORK/emulator.out" ] && break
  sleep 0.1
done
EMU_URL="$(head -n 1 "$WORK/emulator.out")"
case "$EMU_URL" in http://*) ;; *) echo "the emulator did not start: $(cat "$WORK/emulator.err")" >&2; exit 1 ;; esac
EMU_HOSTPORT="${EMU_URL#http://}"
EMU_HOSTPORT="${EMU_HOSTPORT%/}"

# emulator_requests: the number of requests the emulator received so far.
emulator_requests() {
  local host="${EMU_HOSTPORT%:*}" port="${EMU_HOSTPORT##*:}" body
  exec 3<>"/dev/tcp/$host/$port"
  printf 'GET /_emulator/received?records=false HTTP/1.0\r\nHost: %s\r\n\r\n' "$EMU_HOSTPORT" >&3
  body="$(cat <&3)"
  exec 3>&-
  printf '%s' "$body" | tr -d '\r' | grep -o '"requests":[0-9]*' | head -n 1 | cut -d: -f2
}

PROJECT="$WORK/sluicegate.yml"
MAPPINGS=""
for c in $(echo "$COLS" | tr -d ','); do
  [ "$c" = "$IDENT" ] && continue
  MAPPINGS+="      - { from: $c, to: $c }"$'\n'
done
cat >"$PROJECT" <<YML
# Written by bench/diff_nochange.sh.
sources:
  pg:
    url: \${BENCH_PG_URL}
destinations:
  sink:
    type: webhook
    url: \${BENCH_WEBHOOK_URL}/customers
    batch_size: $BATCH
syncs:
  - id: 1
    name: customers
    source: { connection: pg, table: customers }
    destination: { connection: sink, object: customers }
    primary_identifier: { from: $IDENT, to: $IDENT }
    mappings:
${MAPPINGS}    behavior: upsert
YML
export BENCH_PG_URL="$PGURL" BENCH_WEBHOOK_URL="$EMU_URL"
STATE="$WORK/sluicegate_state.db"
rm -f "$STATE" "$STATE-wal" "$STATE-shm"

# ------------------------------------------------------------------------------------------
# measure NAME OUT CMD...: run CMD with stdout to OUT (a file or /dev/null), stderr to
# $WORK/NAME.err; print "wall_seconds peak_rss_kb cpu_percent".
measure() {
  local name="$1" out="$2"
  shift 2
  local t0 t1 rss cpu
  t0=$(date +%s%N)
  if ! /usr/bin/time -f '%M %P' -o "$WORK/$name.time" "$@" >"$out" 2>"$WORK/$name.err"; then
    echo "failed: $* (see $WORK/$name.err)" >&2
    cat "$WORK/$name.err" >&2
    return 1
  fi
  t1=$(date +%s%N)
  read -r rss cpu <"$WORK/$name.time"
  echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}') $rss ${cpu%\%}"
}

# json_int FILE FIELD: a top-level integer field of `run --json` output ("" when null/missing).
json_int() {
  sed -n "s/^  \"$2\": *\(-\{0,1\}[0-9]\{1,\}\).*/\1/p" "$1" | head -n 1
}
json_str() {
  sed -n "s/^  \"$2\": *\"\([^\"]*\)\".*/\1/p" "$1" | head -n 1
}

# median of the first field of lines, with the max of the second and the median of the third.
summarize() {
  sort -n -k1,1 | awk '{t[NR]=$1; if ($2>m) m=$2; c[NR]=$3} END {i=int((NR+1)/2); printf "%s %s %s\n", t[i], m, c[i]}'
}

FAIL=0
LOADAVG="$(cut -d' ' -f1-3 /proc/loadavg)"
SG=("$BIN" --project "$PROJECT" --state "sqlite://$STATE")

say "run 1: initial full delivery of $ROWS rows"
m="$(measure run1 "$WORK/run1.out" "${SG[@]}" run customers --json)" || FAIL=1
read -r R1_S R1_RSS R1_CPU <<<"${m:-0 0 0}"
R1_SENT="$(json_int "$WORK/run1.out" records_processed)"
R1_STATUS="$(json_str "$WORK/run1.out" status)"
if [ "$R1_STATUS" != completed ] || [ "$R1_SENT" != "$ROWS" ]; then
  echo "run 1 ended $R1_STATUS with ${R1_SENT:-?} of $ROWS rows sent:" >&2
  cat "$WORK/run1.out" "$WORK/run1.err" >&2
  FAIL=1
fi
REQ_AFTER_1="$(emulator_requests)"

: >"$WORK/nochange.txt"
for i in $(seq 1 "$REPEAT"); do
  say "run $((i + 1)): no change ($i of $REPEAT)"
  m="$(measure "nochange$i" "$WORK/nochange$i.out" "${SG[@]}" run customers --json)" || FAIL=1
  [ -n "$m" ] && echo "$m" >>"$WORK/nochange.txt"
  sent="$(json_int "$WORK/nochange$i.out" records_processed)"
  st="$(json_str "$WORK/nochange$i.out" status)"
  if [ "$st" != completed ] || [ "$sent" != 0 ]; then
    echo "no-change run $i ended ${st:-?} with ${sent:-?} rows sent (want completed, 0)" >&2
    cat "$WORK/nochange$i.out" "$WORK/nochange$i.err" >&2
    FAIL=1
  fi
done
REQ_AFTER_N="$(emulator_requests)"
if [ "$REQ_AFTER_N" != "$REQ_AFTER_1" ]; then
  echo "the emulator received $((REQ_AFTER_N - REQ_AFTER_1)) requests during the no-change runs (want 0)" >&2
  FAIL=1
fi
read -r NC_S NC_RSS NC_CPU <<<"$(summarize <"$WORK/nochange.txt")"

SELECT="SELECT $COLS FROM customers"
# The engine reads in identifier order (byte order of the key: COLLATE "C" for text), so the
# server's part of a run is at least this ordered scan; server side only.
ORDER_EXPR="$IDENT"
[ "$IDENT" = email ] && ORDER_EXPR='email COLLATE "C"'
ORDERED_SELECT="$SELECT ORDER BY $ORDER_EXPR"
say "baseline: COPY ($SELECT) TO STDOUT, psql \\copy, server-only COPY; $REPEAT times each"
: >"$WORK/copy_stdout.txt"
: >"$WORK/copy_client.txt"
: >"$WORK/copy_server.txt"
: >"$WORK/copy_ordered.txt"
for i in $(seq 1 "$REPEAT"); do
  measure "copy_stdout$i" /dev/null psql -X -q "$PGURL" -c "COPY ($SELECT) TO STDOUT" >>"$WORK/copy_stdout.txt"
  measure "copy_client$i" /dev/null psql -X -q "$PGURL" -c "\\copy ($SELECT) TO '/dev/null'" >>"$WORK/copy_client.txt"
  measure "copy_server$i" /dev/null psql -X -q "$PGURL" -c "COPY ($SELECT) TO '/dev/null'" >>"$WORK/copy_server.txt"
  measure "copy_ordered$i" /dev/null psql -X -q "$PGURL" -c "COPY ($ORDERED_SELECT) TO '/dev/null'" >>"$WORK/copy_ordered.txt"
done
read -r CP_S CP_RSS CP_CPU <<<"$(summarize <"$WORK/copy_stdout.txt")"
read -r CC_S CC_RSS CC_CPU <<<"$(summarize <"$WORK/copy_client.txt")"
read -r CS_S CS_RSS CS_CPU <<<"$(summarize <"$WORK/copy_server.txt")"
read -r CO_S CO_RSS CO_CPU <<<"$(summarize <"$WORK/copy_ordered.txt")"

# ------------------------------------------------------------------------------------------
row() { # label seconds rss_kb cpu
  LABEL="$1" awk -v s="$2" -v m="$3" -v c="$4" -v n="$ROWS" -v ref="$CP_S" '
    function commas(x,   t) { t = sprintf("%d", x); while (t ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]($|,)/, ",&", t); return t }
    BEGIN { printf "%-50s %8.2f %12s %9.1f MB %6s%% %7.2fx\n", ENVIRON["LABEL"], s, (s > 0 ? commas(n / s) : "-"), m / 1024, c, s / ref }'
}
REV="$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && git diff --quiet HEAD -- src 2>/dev/null || echo '+dirty src')"
echo
echo "no-change re-sync: $ROWS rows x 12 columns, identifier $IDENT; median of $REPEAT"
echo "sluicegate: tree $REV; binary $BIN built $(date -r "$BIN" '+%Y-%m-%d %H:%M:%S')"
echo "load average before timing: $LOADAVG; $(nproc) cores (figures are noisy when other work runs)"
printf '%-50s %8s %12s %12s %7s %8s\n' "" "seconds" "rows/s" "peak RSS" "CPU" "vs COPY"
row "COPY (SELECT ...) TO STDOUT | psql >/dev/null" "$CP_S" "$CP_RSS" "$CP_CPU"
row "psql \\copy (SELECT ...) TO '/dev/null'" "$CC_S" "$CC_RSS" "$CC_CPU"
row "server COPY (SELECT ...) TO '/dev/null' *" "$CS_S" "$CS_RSS" "$CS_CPU"
row "server COPY (... ORDER BY $IDENT) TO '/dev/null' *" "$CO_S" "$CO_RSS" "$CO_CPU"
row "sluicegate run 1: initial, ${R1_SENT:-?} rows sent" "$R1_S" "$R1_RSS" "$R1_CPU"
row "sluicegate no-change re-sync, 0 rows sent" "$NC_S" "$NC_RSS" "$NC_CPU"
echo "* server only (no rows leave the server): RSS and CPU are psql's. CPU is the client process's share."

RATIO="$(awk -v a="$NC_S" -v b="$CP_S" 'BEGIN{printf "%.2f", a/b}')"
NC_MB="$(awk -v m="$NC_RSS" 'BEGIN{printf "%.1f", m/1024}')"
CHECKS_OK=$((1 - FAIL))
TIME_OK="$(awk -v r="$RATIO" 'BEGIN{print (r <= 1.3) ? "ok" : "MISSED"}')"
RSS_OK="$(awk -v m="$NC_MB" 'BEGIN{print (m <= 150) ? "ok" : "MISSED"}')"
echo
echo "targets:"
echo "  time <= 1.3x COPY TO STDOUT: ${RATIO}x  $TIME_OK"
echo "  peak RSS <= 150 MB:          ${NC_MB} MB  $RSS_OK"
if [ "$CHECKS_OK" = 1 ]; then
  echo "  0 rows sent:                 every no-change run sent 0 rows, the emulator got 0 requests  ok"
else
  echo "  0 rows sent / runs:          FAILED (see the messages above)"
fi
[ "$TIME_OK" = ok ] && [ "$RSS_OK" = ok ] && [ "$CHECKS_OK" = 1 ]
