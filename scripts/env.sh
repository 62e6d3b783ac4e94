# Shared setup for scripts/*.sh: pick a Python, make the virtual environment, install the
# pinned Python dependencies. Sourced, not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SLUICEGATE_VENV:-$ROOT/.venv}"
# The second environment of scripts/test.sh, with Airflow 2.11.
VENV_AF2="${SLUICEGATE_VENV_AF2:-$ROOT/.venv-af2}"

step() { printf '\n==> %s\n' "$*"; }

need_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo is not on PATH; install Rust (https://rustup.rs) and try again" >&2
    exit 1
  fi
}

pick_python() {
  for candidate in "${SLUICEGATE_PYTHON:-}" python3.11 python3.12 python3.13 python3.10 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] < (3, 14) else 1)' 2>/dev/null; then
      command -v "$candidate"
      return
    fi
  done
  echo "error: no CPython 3.10-3.13 found; set SLUICEGATE_PYTHON" >&2
  exit 1
}

# make_venv REQUIREMENTS...: a virtual environment at $VENV with those requirement files installed.
make_venv() {
  local py
  py="$(pick_python)"
  if [ ! -x "$VENV/bin/python" ]; then
    step "creating virtual environment $VENV with $("$py" --version)"
    "$py" -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  local args=()
  for req in "$@"; do args+=(-r "$req"); done
  if [ "${#args[@]}" -gt 0 ]; then
    step "installing Python dependencies: $*"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${args[@]}"
  fi
}
