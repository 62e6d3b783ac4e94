"""In-task deferral: a run held back by the destination's rate limit yields (queued again, its
lease released, what was acknowledged committed), and the deferrable SyncOperator defers until
it may resume, then continues the same run.

The destination is the webhook emulator answering a share of requests 429 with
`Retry-After: 1`: with `yield_when_throttled=1` every such answer makes the run yield. Batches
of 1000 rows keep the number of yields (and of deferrals) small: 10 batches for the 10,000
quickstart rows, every 4th request throttled. One dag.test() uses the HubSpot emulator with a
rate window of 2 requests per 3 s instead: the run yields before HubSpot has to refuse anything.
"""

from __future__ import annotations

import json
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import sluicegate

from _support import QUICKSTART_ROWS, EmulatorProcess, Project, UrlProcess

airflow = pytest.importorskip("airflow", reason="apache-airflow is not installed")

from sluicegate.airflow._compat import AirflowException  # noqa: E402
from sluicegate.airflow.operators.sluicegate import SyncOperator  # noqa: E402

pytestmark = [pytest.mark.airflow, pytest.mark.core]

BATCH = 1000
MAX_IN_FLIGHT = 4  # the webhook destination's default concurrency
THROTTLE_SHARE = 0.25  # every 4th request answered 429, Retry-After: 1

DAG_ID = "sluicegate_test_defer_in_task"
DAG = textwrap.dedent(
    f'''
    """One in-task deferrable SyncOperator that yields to the rate limit after 1 s of wait."""
    try:
        from airflow.sdk import DAG
    except ImportError:  # Airflow 2.x
        from airflow import DAG

    from sluicegate.airflow.operators.sluicegate import SyncOperator

    with DAG(dag_id="{DAG_ID}", schedule=None) as dag:
        SyncOperator(
            task_id="sync",
            sync_name="hubspot_contacts",
            deferrable=True,
            yield_when_throttled=1,
            poll_interval=1,
            timeout=600,
        )
    '''
)


def throttled_project(project: Project, emulator: EmulatorProcess) -> Project:
    text = project.yml.read_text()
    assert "batch_size: 100\n" in text, text
    project.yml.write_text(text.replace("batch_size: 100\n", f"batch_size: {BATCH}\n"))
    emulator.set_faults(THROTTLE_SHARE, 429, "slow down")
    return project


def check_delivery(emulator: EmulatorProcess, yields: int) -> None:
    """Every row reached the destination; rows sent twice only from batches in flight."""
    got = emulator.received(records=False)
    stats = got["stats"]
    assert stats["stored"] == QUICKSTART_ROWS, stats
    assert stats["batches_failed"] >= 1, f"the emulator never throttled: {stats}"
    assert stats["duplicates"] <= yields * MAX_IN_FLIGHT * BATCH, stats


# ------------------------------------------------------------------ the engine


def test_engine_run_yields_when_throttled_and_resumes(
    project: Project, emulator: EmulatorProcess
) -> None:
    throttled_project(project, emulator)
    engine = sluicegate.Engine(project.yml)
    run_id = engine.trigger("hubspot_contacts")
    yields = 0
    while True:
        before = datetime.now(timezone.utc)
        run = engine.run(run_id, yield_when_throttled=1)
        if run["status"] != "queued":
            break
        yields += 1
        assert yields < 50, "the run keeps yielding"
        resume_at = run["resume_at"]
        assert resume_at.tzinfo is not None and resume_at >= before, resume_at
        # Queued again with its lease released: anyone may claim it, nothing holds it.
        assert engine.get_run(run_id)["status"] == "queued"
        assert (run["records_updated"] or 0) < QUICKSTART_ROWS, run
        time.sleep(max(0.0, (resume_at - datetime.now(timezone.utc)).total_seconds()))
    assert "resume_at" not in run
    assert run["status"] == "completed", run
    assert yields >= 1, "the run never yielded"
    # The counts cover every attempt.
    assert run["records_updated"] == QUICKSTART_ROWS, run
    assert run["records_failed"] == 0, run
    assert sum(run["planned"].values()) == QUICKSTART_ROWS, run
    assert sum(run["succeeded"].values()) == QUICKSTART_ROWS, run
    check_delivery(emulator, yields)
    # The acknowledged state is complete: the next run sends nothing.
    emulator.clear_faults()
    requests = emulator.stats()["requests"]
    again = engine.sync("hubspot_contacts")
    assert again["status"] == "completed" and again["records_updated"] == 0, again
    assert emulator.stats()["requests"] == requests


def test_engine_run_without_the_option_waits_instead(
    project: Project, emulator: EmulatorProcess
) -> None:
    throttled_project(project, emulator)
    engine = sluicegate.Engine(project.yml)
    run = engine.sync("hubspot_contacts")
    assert run["status"] == "completed" and "resume_at" not in run, run
    assert run["records_updated"] == QUICKSTART_ROWS


def test_full_resync_never_yields(project: Project, emulator: EmulatorProcess) -> None:
    throttled_project(project, emulator)
    engine = sluicegate.Engine(project.yml)
    run = engine.run(engine.trigger(1, full_sync=True), yield_when_throttled=1)
    assert run["status"] == "completed", run
    assert run["records_updated"] == QUICKSTART_ROWS


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "3"])
def test_yield_when_throttled_must_be_positive(project: Project, bad: Any) -> None:
    engine = sluicegate.Engine(project.yml)
    run_id = engine.trigger(1)
    with pytest.raises((ValueError, TypeError)):
        engine.run(run_id, yield_when_throttled=bad)
    assert engine.get_run(run_id)["status"] == "queued", "a refused option claims nothing"


# ------------------------------------------------------------------ the operator


@pytest.fixture
def airflow_project(project: Project, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLUICEGATE_DEFAULT",
        json.dumps({"conn_type": "sluicegate", "extra": {"project": str(project.yml)}}),
    )
    return project


class TaskInstance:
    dag_id, task_id, run_id, try_number = "dag", "sync", "manual__1", 1

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        json.dumps(value)
        self.xcom[key] = value


def test_operator_defers_with_the_resume_trigger(
    airflow_project: Project, emulator: EmulatorProcess
) -> None:
    """Without Airflow's machinery: execute() raises TaskDeferred with SyncResumeTrigger; the
    trigger fires at resume time; execute_resume continues the run."""
    import asyncio

    from sluicegate.airflow.triggers.sluicegate import SyncResumeTrigger

    try:
        from airflow.sdk.exceptions import TaskDeferred
    except ImportError:  # Airflow 2.x
        from airflow.exceptions import TaskDeferred

    throttled_project(airflow_project, emulator)
    ti = TaskInstance()
    op = SyncOperator(task_id="sync", sync_id=1, deferrable=True, yield_when_throttled=1)
    step: Any = lambda: op.execute({"ti": ti})  # noqa: E731
    deferrals = 0
    while True:
        try:
            result = step()
            break
        except TaskDeferred as deferred:
            deferrals += 1
            assert deferrals < 50
            trigger = deferred.trigger
            assert isinstance(trigger, SyncResumeTrigger)
            path, kwargs = trigger.serialize()
            assert path == "sluicegate.airflow.triggers.sluicegate.SyncResumeTrigger"
            assert kwargs["sync_run_id"] == ti.xcom["sync_run_id"]
            run_id = ti.xcom["sync_run_id"]
            assert sluicegate.Engine(airflow_project.yml).get_run(run_id)["status"] == "queued"

            async def fire(t: SyncResumeTrigger) -> Any:
                async for event in t.run():
                    return event.payload

            payload = asyncio.run(fire(SyncResumeTrigger(**kwargs)))
            assert payload["status"] == "resume" and payload["sync_run_id"] == run_id, payload
            assert payload["started"] <= time.time()
            assert time.time() >= kwargs["moment"]
            method = getattr(op, deferred.method_name)
            step = lambda m=method, p=payload: m({"ti": ti}, event=p)  # noqa: E731
    assert deferrals >= 1
    assert result == ti.xcom["sync_run_id"]
    assert ti.xcom["counts"]["records_updated"] == QUICKSTART_ROWS
    check_delivery(emulator, deferrals)


def test_resume_past_the_timeout_cancels_the_queued_run(
    airflow_project: Project, emulator: EmulatorProcess
) -> None:
    engine = sluicegate.Engine(airflow_project.yml)
    run_id = engine.trigger(1)
    op = SyncOperator(task_id="sync", sync_id=1, deferrable=True, timeout=5)
    with pytest.raises(AirflowException, match="did not finish within timeout=5s"):
        op.execute_resume(
            {"ti": TaskInstance()},
            event={"status": "resume", "sync_run_id": run_id, "started": time.time() - 6},
        )
    run = engine.get_run(run_id)
    assert run["status"] == "failed" and run["canceled"] is True, run
    assert emulator.stats()["requests"] == 0


def test_killing_the_deferred_task_cancels_the_queued_run(airflow_project: Project) -> None:
    import asyncio

    from sluicegate.airflow.triggers.sluicegate import SyncResumeTrigger

    engine = sluicegate.Engine(airflow_project.yml)
    run_id = engine.trigger(1)
    trigger = SyncResumeTrigger(sync_run_id=run_id, moment=time.time() + 3600)
    asyncio.run(trigger.on_kill())
    run = engine.get_run(run_id)
    assert run["status"] == "failed" and run["canceled"] is True, run


# ------------------------------------------------------------------ dag.test()


@pytest.fixture
def dag_folder(airflow_db: Path) -> Path:
    (airflow_db / "defer_in_task_dag.py").write_text(DAG)
    return airflow_db


@pytest.mark.slow
def test_dag_test_defers_in_task_and_completes(
    dag_folder: Path,
    airflow_project: Project,
    emulator: EmulatorProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from test_airflow_dag import catch_failures, load_dag, state

    throttled_project(airflow_project, emulator)
    deferrals: list[int] = []
    resumes: list[int] = []
    original_defer = SyncOperator.defer
    original_resume = SyncOperator.execute_resume

    def counting_defer(self: SyncOperator, **kwargs: Any) -> Any:
        run_id = kwargs["trigger"].sync_run_id
        deferrals.append(run_id)
        # The run is queued again (lease released) whenever the task defers.
        run = sluicegate.Engine(airflow_project.yml).get_run(run_id)
        assert run["status"] == "queued", run
        return original_defer(self, **kwargs)

    def counting_resume(self: SyncOperator, context: Any, event: Any = None) -> Any:
        resumes.append(event["sync_run_id"])
        return original_resume(self, context, event)

    monkeypatch.setattr(SyncOperator, "defer", counting_defer)
    monkeypatch.setattr(SyncOperator, "execute_resume", counting_resume)

    dag = load_dag(dag_folder, DAG_ID)
    caught = catch_failures(dag)
    dag_run = dag.test()
    assert state(dag_run) == "success", caught
    assert deferrals, "the task never deferred"
    assert len(resumes) == len(deferrals), (deferrals, resumes)
    run_id = deferrals[0]
    assert set(deferrals) == {run_id}, "every deferral was of the same run"

    ti = next(t for t in dag_run.get_task_instances() if t.task_id == "sync")
    assert ti.xcom_pull(task_ids="sync", key="sync_run_id") == run_id
    counts = ti.xcom_pull(task_ids="sync", key="counts")
    assert counts["records_updated"] == QUICKSTART_ROWS, counts
    assert counts["records_failed"] == 0, counts
    run = sluicegate.Engine(airflow_project.yml).get_run(run_id)
    assert run["status"] == "completed", run
    check_delivery(emulator, len(deferrals))

    # A second DAG run: the acknowledged state is complete, nothing is sent.
    emulator.clear_faults()
    requests = emulator.stats()["requests"]
    deferrals.clear()
    dag_run = dag.test()
    assert state(dag_run) == "success", caught
    assert emulator.stats()["requests"] == requests
    assert deferrals == []
    ti = next(t for t in dag_run.get_task_instances() if t.task_id == "sync")
    assert ti.xcom_pull(task_ids="sync", key="counts")["records_updated"] == 0



HUBSPOT_TOKEN = "pat-na1-defer-test"
HUBSPOT_ROWS = 250  # three batches of at most 100 (HubSpot's limit)


@pytest.fixture
def hubspot_project(
    cli: str, project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """The quickstart warehouse cut to 250 rows, synced to a HubSpot emulator that admits 2
    requests per 3 s; `sluicegate_default` points at that project."""
    import sqlite3

    emu = UrlProcess(
        cli,
        ["emulate", "hubspot", "--port", "0", "--token", HUBSPOT_TOKEN, "--rate-limit", "2",
         "--interval-ms", "3000", "--property", "lead_score"],
        tmp_path / "hubspot.log",
    )  # fmt: skip
    try:
        home = tmp_path / "hubspot_project"
        home.mkdir()
        warehouse = home / "warehouse.db"
        warehouse.write_bytes(project.warehouse.read_bytes())
        with sqlite3.connect(warehouse) as db:
            db.execute(f"DELETE FROM pub_hubspot_contacts WHERE rowid > {HUBSPOT_ROWS}")
        yml = home / "sluicegate.yml"
        yml.write_text(
            "sources:\n"
            "  warehouse:\n"
            "    url: sqlite://warehouse.db\n"
            "destinations:\n"
            "  crm:\n"
            "    type: hubspot\n"
            "    access_token: ${SG_TEST_HUBSPOT_TOKEN}\n"
            f"    base_url: {emu.url}\n"
            "    rate_limit: {requests: 1000, per: 1s}\n"
            "syncs:\n"
            "  - id: 1\n"
            "    name: hubspot_contacts\n"
            "    source: {connection: warehouse, table: pub_hubspot_contacts}\n"
            "    destination: {connection: crm, object: contacts}\n"
            "    primary_identifier: {from: email, to: email}\n"
            "    mappings:\n"
            "      - {from: first_name, to: firstname}\n"
            "      - {from: lead_score, to: lead_score}\n"
        )
        monkeypatch.setenv("SG_TEST_HUBSPOT_TOKEN", HUBSPOT_TOKEN)
        monkeypatch.setenv(
            "AIRFLOW_CONN_SLUICEGATE_DEFAULT",
            json.dumps({"conn_type": "sluicegate", "extra": {"project": str(yml)}}),
        )
        yield yml, emu
    finally:
        emu.stop()


@pytest.mark.slow
def test_dag_test_defers_on_a_spent_hubspot_rate_window(
    dag_folder: Path, hubspot_project: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_airflow_dag import catch_failures, load_dag, state

    yml, emu = hubspot_project
    deferrals: list[int] = []
    original_defer = SyncOperator.defer

    def counting_defer(self: SyncOperator, **kwargs: Any) -> Any:
        deferrals.append(kwargs["trigger"].sync_run_id)
        return original_defer(self, **kwargs)

    monkeypatch.setattr(SyncOperator, "defer", counting_defer)
    dag = load_dag(dag_folder, DAG_ID)
    caught = catch_failures(dag)
    dag_run = dag.test()
    assert state(dag_run) == "success", caught
    assert deferrals, "the task never deferred"
    ti = next(t for t in dag_run.get_task_instances() if t.task_id == "sync")
    counts = ti.xcom_pull(task_ids="sync", key="counts")
    assert counts["records_updated"] == HUBSPOT_ROWS, counts
    stats = emu.get_json("/_emulator/stats")
    assert stats["contacts"] == HUBSPOT_ROWS, stats
    assert stats["records_created"] == HUBSPOT_ROWS, f"every contact sent once: {stats}"
    assert stats["rate_limited"] == 0, f"the run yielded before HubSpot refused: {stats}"
    run = sluicegate.Engine(yml).get_run(deferrals[0])
    assert run["status"] == "completed" and run["records_updated"] == HUBSPOT_ROWS, run
