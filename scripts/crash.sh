#!/usr/bin/env bash
# The crash harness with more kills: `kill -9` `sluicegate run` N times at random points of a
# 100,000-row sync, changing warehouse rows in between, then check that the destination holds
# every row at its final value, that resends stayed within one batch per kill, and that every
# killed run ended "executor lost". The harness is the cargo test `tests/crash.rs` (which
# `cargo test` runs with 20 kills); this script runs it with N.
#
#   scripts/crash.sh [N] [SEED]        N kills (default 100); SEED repeats an earlier sequence
#
# Environment (passed to the test): SLUICEGATE_CRASH_ROWS (default 100000),
# SLUICEGATE_CRASH_KEEP=1 (keep the work directory with every run's output),
# SLUICEGATE_CRASH_EMULATE_LOST=1 (the harness marks killed runs failed itself, for an engine
# that does not yet recover lost executors). CARGO_PROFILE=release runs a release build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

N="${1:-100}"
case "$N" in '' | *[!0-9]*) echo "usage: $0 [N kills] [SEED]" >&2; exit 2 ;; esac
export SLUICEGATE_CRASH_KILLS="$N"
if [ -n "${2:-}" ]; then
  export SLUICEGATE_CRASH_SEED="$2"
fi
profile=()
if [ "${CARGO_PROFILE:-dev}" = release ]; then
  profile=(--release)
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo is not on PATH; install Rust (https://rustup.rs) and try again" >&2
  exit 1
fi
echo "==> crash harness: $N kills (cargo test --test crash)" >&2
exec cargo test --locked "${profile[@]}" --test crash -- --nocapture --test-threads=1
