"""The example DAG and the quickstart DAG template parse cleanly in Airflow's own DagBag."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from _support import REPO

pytestmark = pytest.mark.airflow

TEMPLATE = REPO / "python" / "sluicegate" / "_quickstart_dag.py.txt"


def _dagbag(folder: Path):
    pytest.importorskip("airflow", reason="apache-airflow is not installed")
    try:
        from airflow.dag_processing.dagbag import DagBag  # Airflow 3.1+
    except ImportError:
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    bag = DagBag(dag_folder=str(folder))
    assert bag.import_errors == {}, bag.import_errors
    return bag


def _check_sync_dag(dag, dag_id: str, poke_interval: float) -> None:
    from sluicegate.airflow.operators.sluicegate import SyncOperator
    from sluicegate.airflow.sensors.sluicegate import SyncSensor

    assert dag.dag_id == dag_id
    assert type(dag.timetable).__name__ == "NullTimetable"  # schedule=None
    sync = dag.get_task("sync_hubspot_contacts")
    wait = dag.get_task("wait_for_sync")
    assert isinstance(sync, SyncOperator) and isinstance(wait, SyncSensor)
    assert sync.sync_id == 1
    assert sync.sluicegate_conn_id == wait.sluicegate_conn_id == "sluicegate_default"
    assert wait.sync_run_id == "{{ ti.xcom_pull(task_ids='sync_hubspot_contacts') }}"
    assert wait.poke_interval == poke_interval
    assert wait.upstream_task_ids == {"sync_hubspot_contacts"}


def test_example_dag(tmp_path: Path) -> None:
    bag = _dagbag(REPO / "dags")
    _check_sync_dag(bag.dags["sluicegate_example_sync"], "sluicegate_example_sync", 30)


def test_example_dag_poke_interval_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICEGATE_POKE_INTERVAL", "1")
    bag = _dagbag(REPO / "dags")
    _check_sync_dag(bag.dags["sluicegate_example_sync"], "sluicegate_example_sync", 1)


def test_quickstart_template_is_a_valid_dag(tmp_path: Path) -> None:
    text = TEMPLATE.read_text()
    # The placeholder `sluicegate quickstart` substitutes appears only in the docstring.
    assert "__SLUICEGATE_DIR__" in text
    code = text.split('"""', 2)[2]
    assert "__SLUICEGATE_DIR__" not in code
    (tmp_path / "sluicegate_quickstart.py").write_text(
        text.replace("__SLUICEGATE_DIR__", str(tmp_path))
    )
    bag = _dagbag(tmp_path)
    _check_sync_dag(bag.dags["sluicegate_quickstart"], "sluicegate_quickstart", 30)


@pytest.mark.core
def test_quickstart_writes_the_template(cli: str, tmp_path: Path) -> None:
    from _support import quickstart

    project = quickstart(cli, tmp_path / "qs")
    written = (project.dir / "dags" / "sluicegate_quickstart.py").read_text()
    assert "__SLUICEGATE_DIR__" not in written
    assert str(project.dir.resolve()) in written or str(project.dir) in written
    # Below the docstring, the written DAG is the template verbatim.
    assert written.split('"""', 2)[2] == TEMPLATE.read_text().split('"""', 2)[2]
    dags = tmp_path / "dags_only"
    shutil.copytree(project.dir / "dags", dags)
    bag = _dagbag(dags)
    _check_sync_dag(bag.dags["sluicegate_quickstart"], "sluicegate_quickstart", 30)
