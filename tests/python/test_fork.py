"""An Engine used before os.fork() keeps working in the child (Airflow forks its task processes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from _support import EmulatorProcess, Project

pytestmark = [
    pytest.mark.core,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
]

SCENARIO = Path(__file__).with_name("_fork_scenario.py")
CHILD_TIMEOUT = 120  # a hang in the child fails the test instead of blocking it


def test_engine_survives_fork(project: Project, emulator: EmulatorProcess) -> None:
    changed = 25
    proc = subprocess.run(
        [
            sys.executable,
            str(SCENARIO),
            str(project.yml),
            str(project.warehouse),
            emulator.url,
            str(changed),
            str(CHILD_TIMEOUT),
        ],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT + 120,
        env=os.environ.copy(),  # carries SLUICEGATE_WEBHOOK_URL set by the project fixture
        check=False,
    )
    assert proc.returncode == 0, (
        f"fork scenario exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    assert proc.stdout.strip().endswith("ok")
