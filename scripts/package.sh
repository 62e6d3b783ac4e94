#!/usr/bin/env bash
# Build the release artifacts into dist/ and check them:
#   * one wheel for Linux x86_64 and every CPython from 3.10 (abi3), portable to manylinux_2_17:
#     zig (from the pinned ziglang package) compiles the C parts and links against glibc 2.17, so
#     the wheel needs nothing on the machine but glibc 2.17+; TLS is rustls, no OpenSSL;
#   * the sdist, which builds that extension from source (Rust needed).
# The checks (scripts/package_check.py dist): the wheel's tag and metadata, one extension module,
# its NEEDED libraries and glibc symbol versions (readelf, objdump), no OpenSSL anywhere.
#
#   scripts/package.sh                      build and check
#   scripts/package.sh --test               ... then the packaging test: the wheel installed
#                                           into fresh environments on CPython 3.10-3.13 (from
#                                           pyenv), imported, the quickstart run; Airflow 3 on
#                                           3.12 with dag.test() of dags/example_sync.py; the
#                                           sdist built by pip, installed and run
#   scripts/package.sh --test-only          the packaging test of what is in dist/ already
#
# The sdist build of the test uses the dev profile and $CARGO_TARGET_DIR (default target/), so it
# reuses what the test build compiled; SLUICEGATE_SDIST_PROFILE=release builds it as pip would
# for a user (a full release build, about 10 minutes on 2 cores).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
need_rust
cd "$ROOT"

build=1 test=0
for arg in "$@"; do
  case "$arg" in
    --test) test=1 ;;
    --test-only) build=0 test=1 ;;
    -h|--help) sed -n '2,/^source/{/^source/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "error: unknown argument $arg (see scripts/package.sh --help)" >&2; exit 2 ;;
  esac
done

DIST="$ROOT/dist"
# The build tools (maturin, zig) in their own environment, pinned in requirements/package.txt.
VENV="${SLUICEGATE_VENV_PKG:-$ROOT/.venv-pkg}"
make_venv "$ROOT/requirements/package.txt"
tools_python="$VENV/bin/python"

if [ "$build" = 1 ]; then
  mkdir -p "$DIST"
  rm -f "$DIST"/sluicegate-*.whl "$DIST"/sluicegate-*.tar.gz
  step "building the release wheel (maturin --zig, manylinux_2_17) into dist/"
  started=$SECONDS
  PATH="$VENV/bin:$PATH" "$VENV/bin/maturin" build --release --locked --zig \
    --compatibility manylinux_2_17 --out "$DIST"
  echo "wheel built in $((SECONDS - started)) s"
  step "building the sdist into dist/"
  PATH="$VENV/bin:$PATH" "$VENV/bin/maturin" sdist --out "$DIST"
fi

# The ELF checks read the extension with binutils (readelf, objdump): the Debian package when missing.
if ! command -v readelf >/dev/null 2>&1 || ! command -v objdump >/dev/null 2>&1; then
  source "$ROOT/scripts/services.sh"
  _services_apt_install binutils
fi

step "checking dist/: tags, metadata, shared libraries, glibc symbol versions, no OpenSSL"
"$tools_python" "$ROOT/scripts/package_check.py" dist "$DIST"

if [ "$test" = 1 ]; then
  step "packaging test: the wheel on CPython 3.10-3.13, Airflow 3 dag.test(), the sdist built by pip"
  "$tools_python" "$ROOT/scripts/package_check.py" install "$DIST" \
    --sdist-profile "${SLUICEGATE_SDIST_PROFILE:-dev}" --keep-on-failure
fi
ls -l "$DIST"
