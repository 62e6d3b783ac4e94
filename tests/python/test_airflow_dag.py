"""`dag.test()` of the example DAG (Airflow 3 and 2.x), against the emulator: the whole embedded mode.

Runs in this process (dag.test executes tasks in-process) on a private AIRFLOW_HOME with its
own SQLite metadata DB (set up in conftest.py). The DAG files are copied into that home's DAG
folder, because dag.test() only runs DAGs it can find in a DAG bundle.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import sluicegate

from _support import (
    QUICKSTART_ROWS,
    REPO,
    EmulatorProcess,
    Project,
    distinct_records,
    row_count,
    set_retry,
    wait_for,
    xcom,
)

airflow = pytest.importorskip("airflow", reason="apache-airflow is not installed")
AIRFLOW_2 = int(airflow.__version__.split(".")[0]) < 3

from sluicegate.airflow._compat import AirflowException  # noqa: E402

pytestmark = [pytest.mark.airflow, pytest.mark.core, pytest.mark.slow]

EXAMPLE_DAG_ID = "sluicegate_example_sync"
SENSOR_DAG_ID = "sluicegate_test_sensor"
SENSOR_DAG = textwrap.dedent(
    f'''
    """A SyncSensor alone, waiting for the run id given in the DAG run's conf."""
    try:
        from airflow.sdk import DAG
    except ImportError:  # Airflow 2.x
        from airflow import DAG

    from sluicegate.airflow.sensors.sluicegate import SyncSensor

    with DAG(dag_id="{SENSOR_DAG_ID}", schedule=None) as dag:
        SyncSensor(
            task_id="wait_for_run",
            sync_run_id="{{{{ dag_run.conf['sync_run_id'] }}}}",
            poke_interval=1,
            timeout=120,
        )
    '''
)


MODES_DAG_ID = "sluicegate_test_sensor_modes"
MODES_DAG = textwrap.dedent(
    f'''
    """The sensor in each of its modes, waiting for the run id given in the DAG run's conf."""
    try:
        from airflow.sdk import DAG
    except ImportError:  # Airflow 2.x
        from airflow import DAG

    from sluicegate.airflow.sensors.sluicegate import SyncSensor

    with DAG(dag_id="{MODES_DAG_ID}", schedule=None) as dag:
        SyncSensor(
            task_id="deferred",
            sync_run_id="{{{{ dag_run.conf['sync_run_id'] }}}}",
            deferrable=True,
            poke_interval=1,
            timeout=120,
        )
        SyncSensor(
            task_id="rescheduled",
            sync_run_id="{{{{ dag_run.conf['sync_run_id'] }}}}",
            mode="reschedule",
            poke_interval=1,
            timeout=120,
        )
    '''
)


@pytest.fixture(scope="module")
def dag_folder(airflow_db: Path) -> Path:
    shutil.copy(REPO / "dags" / "example_sync.py", airflow_db / "example_sync.py")
    (airflow_db / "sensor_dag.py").write_text(SENSOR_DAG)
    (airflow_db / "sensor_modes_dag.py").write_text(MODES_DAG)
    return airflow_db


@pytest.fixture
def airflow_env(monkeypatch: pytest.MonkeyPatch, project: Project) -> Project:
    """Connection `sluicegate_default` -> the quickstart project; fast sensor pokes."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLUICEGATE_DEFAULT",
        json.dumps({"conn_type": "sluicegate", "extra": {"project": str(project.yml)}}),
    )
    monkeypatch.setenv("SLUICEGATE_POKE_INTERVAL", "1")
    return project


def load_dag(folder: Path, dag_id: str) -> Any:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2.x
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    bag = DagBag(dag_folder=str(folder))
    assert bag.import_errors == {}, bag.import_errors
    return bag.dags[dag_id]


def catch_failures(dag: Any) -> dict[str, BaseException]:
    """Record the exception each failing task raised (failure callbacks run in-process)."""
    caught: dict[str, BaseException] = {}

    def make(task_id: str) -> Callable[[Any], None]:
        def callback(context: Any) -> None:
            caught[task_id] = context["exception"]

        return callback

    for task in dag.tasks:
        task.on_failure_callback = [make(task.task_id)]
    return caught


def state(dag_run: Any) -> str:
    return getattr(dag_run.state, "value", dag_run.state)


def task_states(dag_run: Any) -> dict[str, str]:
    from airflow.utils.session import create_session

    with create_session() as session:
        return {
            ti.task_id: getattr(ti.state, "value", ti.state)
            for ti in dag_run.get_task_instances(session=session)
        }


def test_example_dag_delivers_every_row(
    dag_folder: Path, airflow_env: Project, emulator: EmulatorProcess
) -> None:
    project = airflow_env
    dag = load_dag(dag_folder, EXAMPLE_DAG_ID)
    assert dag.get_task("wait_for_sync").poke_interval == 1

    dag_run = dag.test()
    assert state(dag_run) == "success", task_states(dag_run)
    assert task_states(dag_run) == {"sync_hubspot_contacts": "success", "wait_for_sync": "success"}

    rows = row_count(project.warehouse)
    received = emulator.received()
    assert received["stats"]["records_accepted"] == rows == QUICKSTART_ROWS
    assert distinct_records(received["records"]) == rows

    engine = sluicegate.Engine(project.yml)
    latest = engine.list_runs(1, limit=1)[0]
    run_id = xcom(dag_run, "sync_hubspot_contacts", "sync_run_id")
    assert run_id == latest["id"]
    assert xcom(dag_run, "sync_hubspot_contacts", "return_value") == run_id
    assert latest["status"] == "completed"
    assert f"{EXAMPLE_DAG_ID}.sync_hubspot_contacts" in latest["sync_trigger_reason"]["ui_detail"]
    counts = xcom(dag_run, "sync_hubspot_contacts", "counts")
    assert counts["source_record_count"] == rows
    assert counts["succeeded"] == {"adds": rows, "changes": 0, "removes": 0}
    assert counts["records_failed"] == latest["records_failed"]

    # Again: nothing changed, nothing sent, a new run recorded.
    emulator.reset()
    second = dag.test()
    assert state(second) == "success", task_states(second)
    assert emulator.stats()["records_received"] == 0
    second_run_id = xcom(second, "sync_hubspot_contacts", "sync_run_id")
    assert second_run_id != run_id
    assert engine.get_run(second_run_id)["planned"] == {"adds": 0, "changes": 0, "removes": 0}


def test_failed_run_fails_the_operator_and_the_sensor(
    dag_folder: Path, airflow_env: Project, emulator: EmulatorProcess
) -> None:
    project = airflow_env
    set_retry(project.yml, max_attempts=2, initial_backoff="100ms")
    marker = "CRM is down for maintenance (sluicegate airflow test 51c9)"
    emulator.set_faults(1.0, 503, marker)

    dag = load_dag(dag_folder, EXAMPLE_DAG_ID)
    failures = catch_failures(dag)
    dag_run = dag.test()
    assert state(dag_run) == "failed"
    assert task_states(dag_run) == {
        "sync_hubspot_contacts": "failed",
        "wait_for_sync": "upstream_failed",
    }

    # The run id was pushed before the run, so it is there although the task failed.
    run_id = xcom(dag_run, "sync_hubspot_contacts", "sync_run_id")
    run = sluicegate.Engine(project.yml).get_run(run_id)
    assert run["status"] == "failed"
    assert marker in (run["error_message"] or "")

    error = failures["sync_hubspot_contacts"]
    assert isinstance(error, AirflowException)
    assert f"sync run {run_id} failed" in str(error)
    assert marker in str(error)

    # A sensor waiting on that run fails with the destination's message, promptly.
    sensor_dag = load_dag(dag_folder, SENSOR_DAG_ID)
    sensor_failures = catch_failures(sensor_dag)
    sensor_run = sensor_dag.test(run_conf={"sync_run_id": run_id})
    assert state(sensor_run) == "failed"
    assert task_states(sensor_run) == {"wait_for_run": "failed"}
    sensor_error = sensor_failures["wait_for_run"]
    assert isinstance(sensor_error, AirflowException)
    assert f"sync run {run_id} failed: " in str(sensor_error)
    assert marker in str(sensor_error)


def test_sensor_on_a_completed_run_succeeds(
    dag_folder: Path, airflow_env: Project, emulator: EmulatorProcess
) -> None:
    engine = sluicegate.Engine(airflow_env.yml)
    run = engine.sync(1)
    assert run["status"] == "completed"
    sensor_run = load_dag(dag_folder, SENSOR_DAG_ID).test(run_conf={"sync_run_id": run["id"]})
    assert state(sensor_run) == "success"


def _sensor_states() -> dict[str, str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == MODES_DAG_ID))
        return {ti.task_id: getattr(ti.state, "value", ti.state) for ti in rows}


@pytest.mark.parametrize("task_id", ["deferred", "rescheduled"])
def test_sensor_modes_wait_for_a_working_run(
    dag_folder: Path,
    airflow_env: Project,
    emulator: EmulatorProcess,
    monkeypatch: pytest.MonkeyPatch,
    task_id: str,
) -> None:
    """The run is executed (in a thread here) only once the sensor waits: its trigger is
    running (dag.test() runs triggers inline, in the triggerer's place), or it is up for
    reschedule. The sensor must then see the run complete."""
    import threading

    from sluicegate.airflow.triggers.sluicegate import SyncRunTrigger

    trigger_running = threading.Event()
    real_run = SyncRunTrigger.run

    async def run(self: SyncRunTrigger) -> Any:
        trigger_running.set()
        async for event in real_run(self):
            yield event

    monkeypatch.setattr(SyncRunTrigger, "run", run)

    def waiting() -> bool:
        if task_id == "deferred":
            return trigger_running.is_set()
        return _sensor_states().get(task_id) == "up_for_reschedule"

    engine = sluicegate.Engine(airflow_env.yml)
    run_id = engine.trigger(1)
    outcome: dict[str, Any] = {}

    def run_when_waiting() -> None:
        try:
            wait_for(waiting, 180, f"sensor {task_id} to wait")
            outcome["run"] = engine.run(run_id)
        except BaseException as err:
            outcome["error"] = err
            engine.cancel(run_id)  # ends the sensor's wait instead of leaving it to time out

    dag = load_dag(dag_folder, MODES_DAG_ID).partial_subset(task_id, include_upstream=False)
    failures = catch_failures(dag)
    # Imports and ORM set-up happen here, in this thread: doing them first in the watching
    # thread, while dag.test() imports in this one, deadlocks on the import lock.
    _sensor_states()
    runner = threading.Thread(target=run_when_waiting)
    runner.start()
    try:
        dag_run = dag.test(run_conf={"sync_run_id": run_id})
    finally:
        runner.join()
    assert "error" not in outcome, outcome["error"]
    assert outcome["run"]["status"] == "completed"
    assert state(dag_run) == "success", (task_states(dag_run), failures)
    assert task_states(dag_run) == {task_id: "success"}
    assert trigger_running.is_set() == (task_id == "deferred")
