"""No credential reaches Airflow: with the webhook's API key set in the environment and a
destination that echoes it back in its error (as some endpoints do), the failed task's
exception, every XCom of the task, the run record and everything logged while the DAG ran are
free of it; a successful run's XComs too."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

import sluicegate

from _support import EmulatorProcess, Project, set_retry
from test_airflow_dag import EXAMPLE_DAG_ID, airflow_env, catch_failures, dag_folder, load_dag, state, xcom  # noqa: F401

pytestmark = pytest.mark.airflow

SECRET = "sg-xcom-secret-7d1e4b"


def _all_xcoms(dag_run: Any, task_id: str) -> list[Any]:
    return [xcom(dag_run, task_id, key) for key in ("sync_run_id", "counts", "return_value")]


def test_a_secret_echoed_by_the_destination_reaches_no_xcom_log_or_error(
    dag_folder: Path,  # noqa: F811
    airflow_env: Project,  # noqa: F811
    emulator: EmulatorProcess,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SLUICEGATE_WEBHOOK_TOKEN", SECRET)
    caplog.set_level(logging.DEBUG)
    project = airflow_env

    # A successful run first: its XComs hold no secret.
    dag = load_dag(dag_folder, EXAMPLE_DAG_ID)
    ok = dag.test()
    assert state(ok) == "success"
    assert SECRET not in repr(_all_xcoms(ok, "sync_hubspot_contacts"))

    # The destination fails every request and echoes the key in its message.
    set_retry(project.yml, max_attempts=2, initial_backoff="50ms")
    emulator.set_faults(1.0, 400, f"bad request; you sent X-Api-Key: {SECRET}")
    dag = load_dag(dag_folder, EXAMPLE_DAG_ID)
    failures = catch_failures(dag)
    engine = sluicegate.Engine(project.yml)
    dag_run = _run_full(dag)
    xcoms = _all_xcoms(dag_run, "sync_hubspot_contacts")
    run = engine.get_run(xcoms[0])
    out, err = capfd.readouterr()
    seen = {
        "xcom": repr(xcoms),
        "exception": str(failures.get("sync_hubspot_contacts", "")),
        "run record": repr(run),
        "rejections": repr(engine.rejections(xcoms[0])),
        "logs": caplog.text,
        "stdout": out,
        "stderr": err,
    }
    assert run["status"] in ("completed", "failed")
    assert "***" in seen["run record"] + seen["rejections"], "the echoed key was masked, not dropped silently"
    leaks = [where for where, text in seen.items() if SECRET in text]
    assert leaks == [], f"the secret appeared in: {leaks}"


def _run_full(dag: Any) -> Any:
    """The example DAG again, with every row resent (a full resync), so that requests are made."""
    task = dag.get_task("sync_hubspot_contacts")
    task.full_resync = True
    return dag.test()
