#!/usr/bin/env bash
# Set up from scratch and run the quickstart demo: build and install sluicegate into a virtual
# environment (pip, as users install it), write a demo project with a 10,000-row SQLite
# warehouse, and sync it to the webhook emulator three times (all rows, none, the 1 % changed).
#
#   scripts/demo.sh [DIR]        (default: ./demo)
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
need_rust
DIR="${1:-$ROOT/demo}"
make_venv "$ROOT/requirements/dev.txt"
step "building and installing sluicegate (release build; the first one takes a few minutes)"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$ROOT"
step "sluicegate quickstart $DIR"
"$VENV/bin/sluicegate" quickstart "$DIR" --force
