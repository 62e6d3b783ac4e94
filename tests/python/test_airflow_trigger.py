"""SyncRunTrigger and the deferrable side of SyncSensor, against the real engine and store.

The trigger's events are produced by iterating its `run()` in an event loop here, as the
triggerer does; the sensor's `execute_complete` is then fed those events.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("airflow", reason="apache-airflow is not installed")

import sluicegate  # noqa: E402
from sluicegate.airflow._compat import (  # noqa: E402
    AirflowException,
    AirflowSensorTimeout,
    AirflowSkipException,
)
from sluicegate.airflow.census import CensusSensor  # noqa: E402
from sluicegate.airflow.hooks.sluicegate import SluicegateHook  # noqa: E402
from sluicegate.airflow.sensors.sluicegate import SyncSensor  # noqa: E402
from sluicegate.airflow.triggers.sluicegate import SyncRunTrigger  # noqa: E402

from _support import EmulatorProcess, Project  # noqa: E402

pytestmark = pytest.mark.airflow

try:
    from airflow.sdk.exceptions import TaskDeferred
except ImportError:  # Airflow 2.x
    from airflow.exceptions import TaskDeferred  # type: ignore[no-redef]


def first_event(trigger: SyncRunTrigger) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(main())


@pytest.fixture
def use_project(project: Project, monkeypatch: pytest.MonkeyPatch) -> Project:
    """The default connection points at the quickstart project."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLUICEGATE_DEFAULT",
        json.dumps({"conn_type": "sluicegate", "extra": {"project": str(project.yml)}}),
    )
    return project


# ------------------------------------------------------------------ serialization


def test_serialize_round_trips() -> None:
    trigger = SyncRunTrigger(
        sync_run_id=7, sluicegate_conn_id="sg_other", poll_interval=2.5, end_time=1_900_000_000.5
    )
    path, kwargs = trigger.serialize()
    assert path == "sluicegate.airflow.triggers.sluicegate.SyncRunTrigger"
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    assert cls is SyncRunTrigger
    again = cls(**json.loads(json.dumps(kwargs)))  # what the triggerer stores is plain JSON
    assert again.serialize() == (path, kwargs)
    assert (again.sync_run_id, again.sluicegate_conn_id, again.poll_interval, again.end_time) == (
        7,
        "sg_other",
        2.5,
        1_900_000_000.5,
    )
    # A run id rendered from XCom arrives as text; the trigger keeps an int.
    assert SyncRunTrigger(sync_run_id="12").serialize()[1]["sync_run_id"] == 12  # type: ignore[arg-type]
    assert SyncRunTrigger(sync_run_id=1).serialize()[1]["end_time"] is None


# ------------------------------------------------------------------ events from the real store


@pytest.mark.core
def test_completed_run_fires_one_event_with_counts(
    use_project: Project, emulator: EmulatorProcess
) -> None:
    engine = sluicegate.Engine(use_project.yml)
    run = engine.sync(1)
    payload = first_event(SyncRunTrigger(sync_run_id=run["id"], poll_interval=0.05))
    json.dumps(payload)  # events travel as JSON
    assert payload["status"] == "completed" and payload["sync_run_id"] == run["id"]
    assert payload["run"]["succeeded"] == run["succeeded"]
    assert payload["run"]["records_updated"] == run["records_updated"] == 10_000
    SyncSensor(task_id="w", sync_run_id=run["id"]).execute_complete({}, payload)


@pytest.mark.core
def test_waiting_does_not_block_the_event_loop(use_project: Project) -> None:
    """A queued run: the trigger polls it while the loop ticks; a cancel ends the wait."""
    engine = sluicegate.Engine(use_project.yml)
    run_id = engine.trigger(1)  # nobody executes it: it stays queued until canceled
    trigger = SyncRunTrigger(sync_run_id=run_id, poll_interval=0.05)

    async def main() -> tuple[dict[str, Any], float, int, float]:
        loop = asyncio.get_running_loop()
        lag, ticks, done = 0.0, 0, asyncio.Event()

        async def ticker() -> None:
            nonlocal lag, ticks
            last = time.monotonic()
            while not done.is_set():
                await asyncio.sleep(0.01)
                now = time.monotonic()
                lag, ticks, last = max(lag, now - last - 0.01), ticks + 1, now

        async def cancel_later() -> None:
            await asyncio.sleep(1.0)
            await loop.run_in_executor(None, engine.cancel, run_id)

        started = time.monotonic()
        tasks = [asyncio.create_task(ticker()), asyncio.create_task(cancel_later())]
        async for event in trigger.run():
            payload = event.payload
            break
        waited = time.monotonic() - started
        done.set()
        await asyncio.gather(*tasks)
        return payload, lag, ticks, waited

    payload, lag, ticks, waited = asyncio.run(main())
    assert waited >= 1.0, "the trigger fired before the run ended"
    assert ticks >= 40, f"the loop ticked only {ticks} times in {waited:.1f}s"
    assert lag < 0.25, f"the event loop stalled for {lag:.3f}s while the trigger waited"
    assert payload["status"] == "failed" and payload["run"]["canceled"] is True
    with pytest.raises(AirflowException, match=rf"sync run {run_id} failed: canceled"):
        SyncSensor(task_id="w", sync_run_id=run_id).execute_complete({}, payload)


@pytest.mark.core
def test_end_time_gives_a_timeout_event(use_project: Project) -> None:
    engine = sluicegate.Engine(use_project.yml)
    run_id = engine.trigger(1)
    started = time.monotonic()
    payload = first_event(
        SyncRunTrigger(sync_run_id=run_id, poll_interval=10, end_time=time.time() + 0.5)
    )
    assert time.monotonic() - started < 5, "end_time must cut the poll interval short"
    assert payload["status"] == "timeout"
    assert f"sync run {run_id} was still queued" in payload["message"]
    sensor = SyncSensor(task_id="w", sync_run_id=run_id, timeout=60)
    with pytest.raises(AirflowSensorTimeout, match="still queued"):
        sensor.execute_complete({}, payload)
    soft = SyncSensor(task_id="w2", sync_run_id=run_id, timeout=60, soft_fail=True)
    with pytest.raises(AirflowSkipException):
        soft.execute_complete({}, payload)


@pytest.mark.core
def test_a_run_that_does_not_exist_is_an_error_event(use_project: Project) -> None:
    payload = first_event(SyncRunTrigger(sync_run_id=424242, poll_interval=0.05))
    assert payload["status"] == "error"
    assert "sync run 424242 does not exist" in payload["message"]
    with pytest.raises(AirflowException, match="424242 does not exist"):
        SyncSensor(task_id="w", sync_run_id=424242).execute_complete({}, payload)


def test_a_missing_project_is_an_error_event(monkeypatch: pytest.MonkeyPatch) -> None:
    payload = first_event(SyncRunTrigger(sync_run_id=1, sluicegate_conn_id="sg_nowhere"))
    assert payload["status"] == "error"
    assert "No sluicegate project configured" in payload["message"]


# ------------------------------------------------------------------ fail closed


class _Reads:
    """An engine whose store answers what a newer engine or a broken store could answer; the
    real store cannot hold an unknown status (its schema forbids one)."""

    def __init__(self, answers: Iterator[Any]) -> None:
        self.answers = answers
        self.reads = 0

    async def get_run_async(self, run_id: int) -> dict[str, Any]:
        self.reads += 1
        answer = next(self.answers)
        if isinstance(answer, Exception):
            raise answer
        return {"id": run_id, **answer}


def _with_engine(monkeypatch: pytest.MonkeyPatch, engine: _Reads) -> None:
    async def aget_engine(self: SluicegateHook) -> _Reads:
        return engine

    monkeypatch.setattr(SluicegateHook, "aget_engine", aget_engine)


def test_unknown_status_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    reads = _Reads(iter([{"status": "queued"}, {"status": "working"}, {"status": "paused"}]))
    _with_engine(monkeypatch, reads)
    payload = first_event(SyncRunTrigger(sync_run_id=5, poll_interval=0.01))
    assert reads.reads == 3
    assert payload["status"] == "error"
    assert "status 'paused'" in payload["message"] and "does not know" in payload["message"]
    with pytest.raises(AirflowException, match="status 'paused'"):
        SyncSensor(task_id="w", sync_run_id=5).execute_complete({}, payload)


def test_store_failures_are_retried_then_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    flaky = _Reads(
        iter([OSError("store hiccup"), {"status": "working"}, OSError("down"), OSError("down"),
              OSError("still down")])
    )
    _with_engine(monkeypatch, flaky)
    payload = first_event(SyncRunTrigger(sync_run_id=5, poll_interval=0.01))
    assert flaky.reads == 5, "a failure after a good read starts counting again"
    assert payload["status"] == "error"
    assert "3 attempts in a row" in payload["message"] and "still down" in payload["message"]


def test_sensor_refuses_events_it_does_not_know() -> None:
    sensor = SyncSensor(task_id="w", sync_run_id=5)
    with pytest.raises(AirflowException, match="status 'paused'"):
        sensor.execute_complete({}, {"status": "paused", "sync_run_id": 5})
    with pytest.raises(AirflowException, match="no usable event"):
        sensor.execute_complete({}, None)


# ------------------------------------------------------------------ the sensor's deferral


@pytest.mark.core
def test_deferrable_sensor_hands_a_pending_run_to_the_trigger(use_project: Project) -> None:
    engine = sluicegate.Engine(use_project.yml)
    run_id = engine.trigger(1)
    sensor = SyncSensor(
        task_id="w", sync_run_id=str(run_id), deferrable=True, poke_interval=7, timeout=100
    )
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, SyncRunTrigger)
    assert deferred.value.method_name == "execute_complete"
    assert (trigger.sync_run_id, trigger.poll_interval) == (run_id, 7.0)
    assert trigger.end_time is not None and before + 100 <= trigger.end_time <= time.time() + 100

    # The Census sensor keeps airflow-provider-census's floor of one second between checks.
    census = CensusSensor(
        task_id="c", sync_run_id=str(run_id), census_conn_id="sluicegate_default",
        deferrable=True, poke_interval=0.2,
    )  # fmt: skip
    with pytest.raises(TaskDeferred) as deferred:
        census.execute({})
    assert deferred.value.trigger.poll_interval == 1.0
    engine.cancel(run_id)


@pytest.mark.core
def test_deferrable_sensor_answers_an_ended_run_without_deferring(
    use_project: Project, emulator: EmulatorProcess
) -> None:
    run = sluicegate.Engine(use_project.yml).sync(1)
    SyncSensor(task_id="w", sync_run_id=run["id"], deferrable=True).execute({})


def test_deferrable_defaults_to_airflows_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SyncSensor(task_id="a", sync_run_id=1).deferrable is False
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    assert SyncSensor(task_id="b", sync_run_id=1).deferrable is True
    assert SyncSensor(task_id="c", sync_run_id=1, deferrable=False).deferrable is False


# ------------------------------------------------------------------ rejection limits


@pytest.fixture
def rejecting_emulator(cli: str, tmp_path: Path) -> Iterator[EmulatorProcess]:
    """An emulator that rejects every record whose email contains "7@" (1,000 of 10,000)."""
    emu = EmulatorProcess(cli, tmp_path / "rejecting.log", 60, "--reject-if", "email=7@")
    try:
        yield emu
    finally:
        emu.stop()


@pytest.mark.core
def test_rejection_limits(
    cli: str, tmp_path: Path, rejecting_emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    from _support import quickstart

    monkeypatch.setenv("SLUICEGATE_WEBHOOK_URL", f"{rejecting_emulator.url}/contacts")
    project = quickstart(cli, tmp_path / "qs")
    monkeypatch.setenv("SLUICEGATE_PROJECT", str(project.yml))
    run = sluicegate.Engine(project.yml).sync(1)
    assert run["status"] == "completed" and run["records_failed"] == 1000, run

    def sensor(**limits: Any) -> SyncSensor:
        return SyncSensor(task_id="w", sync_run_id=run["id"], sluicegate_conn_id="none", **limits)

    assert sensor().poke({}) is True
    assert sensor(max_rejected_records=1000, max_rejected_share=0.1).poke({}) is True
    with pytest.raises(AirflowException, match=r"1000 of 10000 rows were not delivered.*"
                       r"max_rejected_records=999"):
        sensor(max_rejected_records=999).poke({})
    with pytest.raises(AirflowException, match=r"share of 10\.00%, above max_rejected_share=5\.00%"):
        sensor(max_rejected_share=0.05).poke({})
    # The same limits on the trigger's event.
    payload = first_event(SyncRunTrigger(sync_run_id=run["id"], sluicegate_conn_id="none"))
    with pytest.raises(AirflowException, match="max_rejected_records=0"):
        sensor(max_rejected_records=0).execute_complete({}, payload)
    sensor(max_rejected_share=0.2).execute_complete({}, payload)


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"max_rejected_records": -1}, "whole number of rows"),
        ({"max_rejected_records": 1.5}, "whole number of rows"),
        ({"max_rejected_share": 5}, "between 0 and 1"),
        ({"max_rejected_share": "1%"}, "must be a number"),
    ],
)
def test_bad_rejection_limits_are_refused(limits: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SyncSensor(task_id="w", sync_run_id=1, **limits)
