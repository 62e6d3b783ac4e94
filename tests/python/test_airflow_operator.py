"""SyncOperator in embedded mode: arguments, and cancellation of the run it executes.

A slow destination (the emulator answering after a delay) keeps a run working long enough to
kill the task, let its timeout pass, or interrupt it as Airflow's execution_timeout does; each
time the run must end failed with canceled=True well before it would have finished, with the
rest left for the next run. SLUICEGATE_LEASE=3s makes the engine look for cancel requests every
second (a third of the lease) instead of every 20 s.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from typing import Any

import pytest

pytest.importorskip("airflow", reason="apache-airflow is not installed")

import sluicegate  # noqa: E402
from sluicegate.airflow._compat import AirflowException  # noqa: E402
from sluicegate.airflow.operators.sluicegate import SyncOperator  # noqa: E402

from _support import QUICKSTART_ROWS, EmulatorProcess, Project, wait_for  # noqa: E402

pytestmark = pytest.mark.airflow

LATENCY_MS = 300  # 100 batches, at most 4 in flight: a full run takes 7 s or more


class TaskInstance:
    """What SyncOperator uses of Airflow's task instance: identity and xcom_push."""

    dag_id, task_id, run_id, try_number = "dag", "sync", "manual__1", 1

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        json.dumps(value)  # XCom values must serialize
        self.xcom[key] = value


# ------------------------------------------------------------------ arguments


def test_exactly_one_of_sync_id_and_sync_name() -> None:
    with pytest.raises(ValueError, match="exactly one of sync_id"):
        SyncOperator(task_id="a")
    with pytest.raises(ValueError, match="exactly one of sync_id"):
        SyncOperator(task_id="b", sync_id=1, sync_name="hubspot_contacts")
    op = SyncOperator(task_id="c", sync_name="{{ params.sync }}", full_resync="{{ params.full }}")
    assert {"sync_id", "sync_name", "sluicegate_conn_id", "full_resync"} <= set(op.template_fields)


def test_no_wait_is_refused_in_embedded_mode(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether the operator can return at once depends on the connection, known when the task
    runs: with an in-task connection it is refused then, saying why and what to do, before any
    run is queued."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLUICEGATE_DEFAULT",
        json.dumps({"conn_type": "sluicegate", "extra": {"project": str(project.yml)}}),
    )
    engine = sluicegate.Engine(project.yml)
    ti = TaskInstance()
    op = SyncOperator(task_id="b", sync_id=1, wait_for_completion=False)
    with pytest.raises(AirflowException, match="would queue a run that nothing executes") as caught:
        op.execute({"ti": ti})
    assert "'sluicegate_default' has no host" in str(caught.value)
    assert "http(s)://" in str(caught.value)
    assert ti.xcom == {}
    assert engine.list_runs(1) == []


@pytest.mark.core
def test_deferrable_in_embedded_mode_runs_in_the_task_when_nothing_throttles(
    project: Project, emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deferrable=True is no longer refused in-task: the run executes in the task and defers
    only when the rate limit holds it back (tests/python/test_airflow_defer_in_task.py)."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLUICEGATE_DEFAULT",
        json.dumps({"conn_type": "sluicegate", "extra": {"project": str(project.yml)}}),
    )
    ti = TaskInstance()
    op = SyncOperator(task_id="a", sync_id=1, deferrable=True)
    assert op.yield_when_throttled == 30.0
    run_id = op.execute({"ti": ti})
    assert ti.xcom["sync_run_id"] == run_id
    assert ti.xcom["counts"]["records_updated"] == QUICKSTART_ROWS
    assert emulator.stats()["records_accepted"] == QUICKSTART_ROWS


def test_default_deferrable_is_read_but_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SyncOperator(task_id="a", sync_id=1).deferrable is False
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    assert SyncOperator(task_id="b", sync_id=1).deferrable is True


def test_full_sync_is_another_name_for_full_resync() -> None:
    assert SyncOperator(task_id="a", sync_id=1, full_sync=True).full_resync is True
    assert SyncOperator(task_id="b", sync_id=1).full_sync is False
    with pytest.raises(ValueError, match="give only one"):
        SyncOperator(task_id="c", sync_id=1, full_resync=True, full_sync=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout": 0}, "timeout must be a positive"),
        ({"poll_interval": -1}, "poll_interval must be a positive"),
        ({"max_rejected_share": 2}, "between 0 and 1"),
        ({"yield_when_throttled": 0}, "yield_when_throttled must be a positive"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SyncOperator(task_id="a", sync_id=1, **kwargs)


# ------------------------------------------------------------------ running


@pytest.fixture
def airflow_project(project: Project, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLUICEGATE_DEFAULT",
        json.dumps({"conn_type": "sluicegate", "extra": {"project": str(project.yml)}}),
    )
    monkeypatch.setenv("SLUICEGATE_LEASE", "3s")
    return project


@pytest.mark.core
def test_by_name_with_full_resync_rendered_from_a_template(
    airflow_project: Project, emulator: EmulatorProcess
) -> None:
    engine = sluicegate.Engine(airflow_project.yml)
    assert engine.sync(1)["status"] == "completed"
    emulator.reset()
    ti = TaskInstance()
    op = SyncOperator(task_id="s", sync_name="hubspot_contacts", full_resync="True")
    run_id = op.execute({"ti": ti})
    run = engine.get_run(run_id)
    assert run["full_sync"] is True and run["status"] == "completed"
    assert emulator.stats()["records_accepted"] == QUICKSTART_ROWS, "a full resync resends all"
    assert ti.xcom["sync_run_id"] == run_id
    assert ti.xcom["counts"]["records_updated"] == QUICKSTART_ROWS


@pytest.mark.core
def test_unknown_sync_name_fails_clearly(airflow_project: Project) -> None:
    with pytest.raises(sluicegate.SyncNotFoundError, match="hubspot_contactz"):
        SyncOperator(task_id="s", sync_name="hubspot_contactz").execute({"ti": TaskInstance()})


def _slow_run_state(engine: sluicegate.Engine, run_id: int, emulator: EmulatorProcess) -> dict:
    run = engine.get_run(run_id)
    assert run["status"] == "failed" and run["canceled"] is True, run
    delivered = emulator.stats()["records_accepted"]
    assert 0 < delivered < QUICKSTART_ROWS, f"{delivered} records delivered"
    assert run["records_updated"] == delivered, "state advanced for exactly what was accepted"
    return run


def _working(engine: sluicegate.Engine, ti: TaskInstance) -> bool:
    run_id = ti.xcom.get("sync_run_id")
    return run_id is not None and engine.get_run(run_id)["records_updated"] not in (None, 0)


@pytest.mark.core
@pytest.mark.slow
def test_sigterm_on_kill_cancels_the_run(
    airflow_project: Project, emulator: EmulatorProcess
) -> None:
    """Airflow 3's task runner answers SIGTERM by calling on_kill() (Airflow 2 then also
    raises in the task); here the same handler is installed around execute()."""
    emulator.set_latency(LATENCY_MS)
    engine = sluicegate.Engine(airflow_project.yml)
    ti = TaskInstance()
    op = SyncOperator(task_id="s", sync_id=1, poll_interval=0.5)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: op.on_kill())

    def kill_when_working() -> None:
        wait_for(lambda: _working(engine, ti), 60, "the run to deliver its first batch")
        os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=kill_when_working)
    started = time.monotonic()
    killer.start()
    try:
        with pytest.raises(AirflowException, match="failed: canceled by request"):
            op.execute({"ti": ti})
    finally:
        killer.join()
        signal.signal(signal.SIGTERM, previous)
    assert time.monotonic() - started < 30
    _slow_run_state(engine, ti.xcom["sync_run_id"], emulator)
    assert ti.xcom["counts"]["records_updated"] > 0, "counts are pushed for a canceled run too"


@pytest.mark.core
@pytest.mark.slow
def test_timeout_cancels_the_run(airflow_project: Project, emulator: EmulatorProcess) -> None:
    emulator.set_latency(LATENCY_MS)
    engine = sluicegate.Engine(airflow_project.yml)
    ti = TaskInstance()
    op = SyncOperator(task_id="s", sync_id=1, timeout=1.5, poll_interval=10)
    started = time.monotonic()
    with pytest.raises(AirflowException, match=r"did not finish within timeout=1\.5s.*canceled"):
        op.execute({"ti": ti})
    assert time.monotonic() - started < 30
    _slow_run_state(engine, ti.xcom["sync_run_id"], emulator)


class FakeTaskTimeout(BaseException):
    """Stands for AirflowTaskTimeout, which Airflow raises from a SIGALRM handler."""


@pytest.mark.core
@pytest.mark.slow
def test_execution_timeout_interrupt_cancels_the_run(
    airflow_project: Project, emulator: EmulatorProcess
) -> None:
    emulator.set_latency(LATENCY_MS)
    engine = sluicegate.Engine(airflow_project.yml)
    ti = TaskInstance()
    op = SyncOperator(task_id="s", sync_id=1, poll_interval=10)

    def alarm(signum: int, frame: Any) -> None:
        raise FakeTaskTimeout("execution_timeout")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, 1.5)
    try:
        with pytest.raises(FakeTaskTimeout):
            op.execute({"ti": ti})
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    # execute() re-raised only once the run had stopped and recorded the cancel.
    _slow_run_state(engine, ti.xcom["sync_run_id"], emulator)
    op.on_kill()  # Airflow calls it afterwards: nothing left to cancel, no error


@pytest.mark.core
def test_on_kill_without_a_run_does_nothing() -> None:
    SyncOperator(task_id="s", sync_id=1).on_kill()


# ------------------------------------------------------------------ rejection limits

REJECT_STAGE = "customer"


@pytest.fixture
def rejecting_emulator(
    cli: str, airflow_project: Project, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """A second webhook emulator that rejects every contact whose lifecycle stage is
    `customer`; the project's destination points at it."""
    emu = EmulatorProcess(
        cli, tmp_path / "rejecting.log", 60, "--reject-if", f"lifecyclestage=^{REJECT_STAGE}$"
    )
    monkeypatch.setenv("SLUICEGATE_WEBHOOK_URL", f"{emu.url}/contacts")
    try:
        yield emu
    finally:
        emu.stop()


def _stage_rows(project: Project) -> int:
    import sqlite3

    with sqlite3.connect(project.warehouse) as db:
        return db.execute(
            "SELECT count(*) FROM pub_hubspot_contacts WHERE lifecycle_stage = ?", (REJECT_STAGE,)
        ).fetchone()[0]


@pytest.mark.core
def test_max_rejected_records_fails_a_completed_run_beyond_the_limit(
    airflow_project: Project, rejecting_emulator: EmulatorProcess
) -> None:
    rejected = _stage_rows(airflow_project)
    assert 0 < rejected < QUICKSTART_ROWS
    ti = TaskInstance()
    op = SyncOperator(task_id="s", sync_id=1, max_rejected_records=rejected - 1)
    with pytest.raises(AirflowException, match=r"more than max_rejected_records=") as caught:
        op.execute({"ti": ti})
    assert f"{rejected} of {QUICKSTART_ROWS} rows were not delivered" in str(caught.value)
    run = sluicegate.Engine(airflow_project.yml).get_run(ti.xcom["sync_run_id"])
    assert run["status"] == "completed", "the limit fails the task, not the run"
    assert ti.xcom["counts"]["records_failed"] == rejected
    assert ti.xcom["counts"]["records_updated"] == QUICKSTART_ROWS - rejected
    assert rejecting_emulator.stats()["records_rejected"] == rejected

    # At the limit: the next run retries the rejected rows (their state never advanced), they
    # are rejected again, and the task succeeds.
    ti = TaskInstance()
    op = SyncOperator(task_id="s", sync_id=1, max_rejected_records=rejected)
    assert op.execute({"ti": ti}) == ti.xcom["sync_run_id"]
    assert ti.xcom["counts"]["records_failed"] == rejected
    assert ti.xcom["counts"]["records_updated"] == 0


@pytest.mark.core
def test_max_rejected_share_fails_a_completed_run_above_the_share(
    airflow_project: Project, rejecting_emulator: EmulatorProcess
) -> None:
    share = _stage_rows(airflow_project) / QUICKSTART_ROWS
    ti = TaskInstance()
    op = SyncOperator(task_id="s", sync_id=1, max_rejected_share=share - 0.01)
    with pytest.raises(AirflowException, match=r"above max_rejected_share="):
        op.execute({"ti": ti})
    # The same rows again, now every row the run had to deliver: a share of 1.
    ti = TaskInstance()
    assert SyncOperator(task_id="s", sync_id=1, max_rejected_share=1.0).execute({"ti": ti})
    with pytest.raises(AirflowException, match=r"a share of 100\.00%"):
        SyncOperator(task_id="s", sync_id=1, max_rejected_share=0.99).execute({"ti": TaskInstance()})


# ------------------------------------------------------------------ deferrable timeout event


@pytest.mark.core
def test_timeout_event_of_the_deferred_wait_cancels_the_remote_run(
    cli: str, project: Project, emulator: EmulatorProcess, tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """SyncRunTrigger's end_time passed (the operator's timeout): execute_complete gets a
    `timeout` event, cancels the run on the server and fails the task."""
    from sluicegate.airflow.triggers.sluicegate import SyncRunTrigger

    from _support import SERVE_TOKEN, start_serve

    try:
        from airflow.sdk.exceptions import TaskDeferred
    except ImportError:  # Airflow 2.x
        from airflow.exceptions import TaskDeferred  # type: ignore[no-redef]

    server = start_serve(cli, project.yml, tmp_path / "serve.log", {"SLUICEGATE_LEASE": "3s"})
    try:
        monkeypatch.setenv(
            "AIRFLOW_CONN_SLUICEGATE_DEFAULT",
            json.dumps({"conn_type": "sluicegate", "host": server.url, "password": SERVE_TOKEN}),
        )
        emulator.set_latency(LATENCY_MS)  # the run outlasts the 1 s timeout
        ti = TaskInstance()
        op = SyncOperator(task_id="sync", sync_id=1, deferrable=True, poll_interval=0.2, timeout=1)
        with pytest.raises(TaskDeferred) as deferred:
            op.execute({"ti": ti})
        trigger = deferred.value.trigger
        assert isinstance(trigger, SyncRunTrigger)

        async def first_event() -> Any:
            async for event in trigger.run():
                return event.payload

        import asyncio

        event = asyncio.run(first_event())
        assert event["status"] == "timeout", event
        run_id = ti.xcom["sync_run_id"]
        resumed = SyncOperator(task_id="sync", sync_id=1, deferrable=True, timeout=1)
        with pytest.raises(AirflowException, match=r"did not finish within timeout=1"):
            resumed.execute_complete({"ti": ti}, event)

        def run() -> dict[str, Any]:
            return server.get_json(f"/api/v1/sync_runs/{run_id}", SERVE_TOKEN)["data"]

        wait_for(lambda: run()["status"] == "failed", 30, "the canceled run to stop")
        assert run()["canceled"] is True
        assert (run()["records_updated"] or 0) < QUICKSTART_ROWS
    finally:
        server.stop()
