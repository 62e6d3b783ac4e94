#!/usr/bin/env bash
# Set up from scratch and run every test: the Rust tests (cargo), then the Python and Airflow
# tests (pytest) against the extension built into a virtual environment with a pinned
# Airflow 3 install, then the Airflow tests again in a second environment with Airflow 2.11
# (the package supports Airflow 2.10+ and 3.x). Everything it needs is installed here; nothing
# is assumed but Rust and CPython 3.10-3.13.
#
#   scripts/test.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
need_rust
cd "$ROOT"
# Every test must run here: a missing database, extension or Airflow is a failure, not a skip.
export SLUICEGATE_REQUIRE_ALL=1

# Database servers for the source tests (tests/sources.rs, tests/python/test_dbt.py): PostgreSQL
# 15 and MariaDB in a temporary directory (installed with apt-get when missing), stopped on exit.
source "$ROOT/scripts/services.sh"
SERVICES_DIR="$(mktemp -d "${TMPDIR:-/tmp}/sluicegate-services.XXXXXX")"
trap 'services_stop "$SERVICES_DIR"; rm -rf "$SERVICES_DIR"' EXIT
step "starting PostgreSQL and MariaDB in $SERVICES_DIR"
services_start pg "$SERVICES_DIR"
services_start mysql "$SERVICES_DIR"
export SLUICEGATE_TEST_PG_URL SLUICEGATE_TEST_MYSQL_URL

# Headless Chromium renders the run history page of `sluicegate serve` (tests/serve.rs).
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  step "installing Chromium (Debian package) for the run page test"
  _services_apt_install chromium
fi

step "cargo test"
cargo test --locked

step "cargo test: engine and behavior suites again, with the state store on Postgres"
SLUICEGATE_TEST_STATE_PG="$SLUICEGATE_TEST_PG_URL" cargo test --locked --test engine --test behaviors

# A short fuzz run of every cargo-fuzz target (libFuzzer on the stable toolchain, without a
# sanitizer): the committed corpus replayed, then 20 s of new inputs each, written to a scratch
# directory so the corpus stays as committed. Longer runs: fuzz/README.md.
step "fuzzing: each target for 20 s"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --quiet
(cd "$ROOT/fuzz" && cargo fuzz build --sanitizer none -O)
for t in project convert pg_copy pg_value source_values destinations api; do
  scratch="$(mktemp -d)"
  if ! (cd "$ROOT/fuzz" && cargo fuzz run --sanitizer none -O "$t" "$scratch" "corpus/$t" -- \
      -max_total_time=20 -rss_limit_mb=2048 -timeout=20 >"$scratch.log" 2>&1); then
    tail -n 60 "$scratch.log" >&2
    echo "fuzz target $t found a failure (its input is in fuzz/artifacts/$t/)" >&2
    exit 1
  fi
  echo "fuzz target $t: $(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$scratch.log" | tail -n 1)"
  rm -rf "$scratch" "$scratch.log"
done

make_venv "$ROOT/requirements/airflow3-py311.txt" "$ROOT/requirements/dev.txt"

step "building the extension into $VENV (maturin develop)"
rm -f "$ROOT"/python/sluicegate/_core*.so
VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" "$VENV/bin/maturin" develop --quiet

step "pytest (Airflow 3)"
"$VENV/bin/python" -m pytest tests/python "$@"

# Airflow 2.11: the Airflow layer again (hook, operator, sensor, trigger in every connection
# mode against `sluicegate serve`, dag.test of every DAG in dags/ with dbt and the HubSpot
# emulator, the trigger's clean exits). Left out: the dbt and the plain-interpreter exit tests,
# which do not touch Airflow and ran above.
VENV="$VENV_AF2"
make_venv "$ROOT/requirements/airflow2-py311.txt"
step "installing the extension into $VENV (maturin develop)"
VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" "$VENV/bin/maturin" develop --quiet
step "pytest (Airflow 2.11)"
"$VENV/bin/python" -m pytest tests/python --ignore=tests/python/test_dbt.py --ignore=tests/python/test_dbt_exposures.py \
  --deselect tests/python/test_async_bridge.py::test_fresh_interpreters_exit_cleanly_after_awaiting "$@"

# The release artifacts: the abi3 wheel built with zig for manylinux_2_17 and checked (libraries,
# glibc symbol versions, no OpenSSL), and the sdist; then the wheel installed and run on CPython
# 3.10-3.13, Airflow 3 installed first on 3.12 and dag.test() of dags/example_sync.py, and the
# sdist built by pip (dev profile, reusing what the builds above compiled in target/).
step "packaging: release wheel and sdist, installed and run (scripts/package.sh --test)"
"$ROOT/scripts/package.sh" --test
