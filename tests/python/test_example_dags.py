"""`dag.test()` of every DAG in dags/, against real Postgres, real dbt, `sluicegate serve` and the
HubSpot emulator (which stands in for HubSpot).

* `sluicegate_dbt_then_sync`: `dbt build` of `pub_hubspot_contacts` on the test Postgres server
  (dbt from requirements/dbt.txt, in its own virtual environment), then the sync of that model
  to HubSpot contacts inside the task (in-task connection), then the sensor;
* `census_drop_in`: the Census operator and sensor, with a `census` connection pointing at a
  `sluicegate serve` of the same project;
* `sluicegate_deferrable_sync`: the operator deferring to the trigger, on that server;
* `sluicegate_after_hubspot_contacts` and `sluicegate_example_sync` (the latter is exercised in
  depth by test_airflow_dag.py): they run as well.

The sensors' poke interval comes from SLUICEGATE_POKE_INTERVAL (the DAGs' documented setting),
set to 1 s here. dags/ is copied into the test's Airflow DAG folder (dbt writes its target/
there, not in the repository).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _support import REPO, SERVE_TOKEN, UrlProcess, dbt_env, ensure_dbt_venv, start_serve, xcom

airflow = pytest.importorskip("airflow", reason="apache-airflow is not installed")
AIRFLOW_2 = int(airflow.__version__.split(".")[0]) < 3

from airflow.utils.session import create_session  # noqa: E402

pytestmark = [pytest.mark.airflow, pytest.mark.core, pytest.mark.slow]

HUBSPOT_TOKEN = "pat-na1-sluicegate-example-dags"
EMAILS = ["ada@example.com", "grace@example.com", "linus@example.com", "zoë@example.com"]


@pytest.fixture(scope="module")
def pg_url() -> str:
    url = os.environ.get("SLUICEGATE_TEST_PG_URL", "")
    if not url:
        pytest.skip(
            "SLUICEGATE_TEST_PG_URL is not set: source scripts/services.sh and start Postgres "
            "(`services_start pg DIR`; scripts/test.sh does)"
        )
    return url


@pytest.fixture(scope="module")
def dbt() -> Path:
    try:
        return ensure_dbt_venv() / "bin" / "dbt"
    except AssertionError as err:
        pytest.fail(str(err))


@pytest.fixture(scope="module")
def dag_folder(airflow_db: Path) -> Path:
    """dags/ copied into the test Airflow's DAG folder (dbt_project/ with it)."""
    for item in (REPO / "dags").iterdir():
        if item.is_dir():
            shutil.copytree(
                item, airflow_db / item.name, dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("target", "logs", "__pycache__"),
            )  # fmt: skip
        elif item.suffix == ".py":
            shutil.copy(item, airflow_db / item.name)
    return airflow_db


@pytest.fixture(scope="module")
def hubspot(cli: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UrlProcess]:
    log = tmp_path_factory.mktemp("hubspot") / "stderr.log"
    proc = UrlProcess(
        cli,
        ["emulate", "hubspot", "--port", "0", "--token", HUBSPOT_TOKEN, "--property", "lead_score"],
        log,
    )
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def schema(pg_url: str, dbt: Path, dag_folder: Path) -> Iterator[str]:
    """A fresh schema for the module; `pub_hubspot_contacts` built in it once up front, so the
    server-side DAGs find the table whatever order the tests run in."""
    name = f"sg_dags_{uuid.uuid4().hex[:10]}"
    env = {**os.environ, **dbt_env(pg_url, name)}
    project = dag_folder / "dbt_project"
    proc = subprocess.run(
        [str(dbt), "build", "--select", "raw_contacts", "pub_hubspot_contacts",
         "--project-dir", str(project), "--profiles-dir", str(project)],
        cwd=project, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        pytest.fail(f"dbt build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    try:
        yield name
    finally:
        drop = f"import psycopg2; c = psycopg2.connect({pg_url!r}); c.autocommit = True; " \
            f"c.cursor().execute('DROP SCHEMA IF EXISTS {name} CASCADE')"
        subprocess.run([str(dbt.parent / "python"), "-c", drop], timeout=60, check=False)


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch,
    pg_url: str,
    schema: str,
    dbt: Path,
    dag_folder: Path,
    hubspot: UrlProcess,
    tmp_path: Path,
) -> Path:
    """The sluicegate project (Postgres source with dbt's manifest, HubSpot emulator as
    destination), the DAGs' settings, the emulator emptied. Returns the project file."""
    for key, value in dbt_env(pg_url, schema).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SLUICEGATE_DBT", str(dbt))
    monkeypatch.setenv("SLUICEGATE_POKE_INTERVAL", "1")
    monkeypatch.setenv("SG_TEST_HUBSPOT_TOKEN", HUBSPOT_TOKEN)
    manifest = dag_folder / "dbt_project" / "target" / "manifest.json"
    yml = tmp_path / "sluicegate.yml"
    yml.write_text(
        "sources:\n"
        "  warehouse:\n"
        f"    url: {json.dumps(pg_url)}\n"
        f"    dbt_manifest: {json.dumps(str(manifest))}\n"
        "destinations:\n"
        "  crm:\n"
        "    type: hubspot\n"
        "    access_token: ${SG_TEST_HUBSPOT_TOKEN}\n"
        f"    base_url: {hubspot.url}\n"
        "    rate_limit: {requests: 1000, per: 1s}\n"
        "syncs:\n"
        "  - id: 1\n"
        "    name: hubspot_contacts\n"
        "    source: {connection: warehouse, dbt_model: pub_hubspot_contacts}\n"
        "    destination: {connection: crm, object: contacts}\n"
        "    primary_identifier: {from: email, to: email}\n"
        "    mappings:\n"
        "      - {from: first_name, to: firstname}\n"
        "      - {from: lead_score, to: lead_score}\n"
    )
    post = urllib.request.Request(hubspot.url + "/_emulator/reset?contacts=true", method="POST")
    urllib.request.urlopen(post, timeout=30).close()
    return yml


@pytest.fixture
def server(cli: str, env: Path, tmp_path: Path) -> Iterator[UrlProcess]:
    proc = start_serve(cli, env, tmp_path / "serve.log")
    try:
        yield proc
    finally:
        proc.stop()


def set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: Any) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def load(folder: Path, dag_id: str) -> Any:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2.x
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    bag = DagBag(dag_folder=str(folder))
    assert bag.import_errors == {}, bag.import_errors
    return bag.dags[dag_id]


def run(dag: Any, **kwargs: Any) -> dict[str, str]:
    """dag.test(); the task states, the DAG run's state under 'dag'."""
    return states(dag.test(**kwargs))


def states(dag_run: Any) -> dict[str, str]:
    """The task states of a DAG run, and the run's own state under 'dag'."""
    with create_session() as session:
        states = {
            ti.task_id: getattr(ti.state, "value", ti.state)
            for ti in dag_run.get_task_instances(session=session)
        }
    states["dag"] = getattr(dag_run.state, "value", dag_run.state)
    return states


def contacts(hubspot: UrlProcess) -> dict[str, dict[str, Any]]:
    """The emulator's contacts by email, with their properties."""
    body = hubspot.get_json("/_emulator/contacts")
    items = body["contacts"] if isinstance(body, dict) else body
    return {c["properties"]["email"]: c["properties"] for c in items}


def test_every_dag_file_is_covered(dag_folder: Path) -> None:
    """A new DAG in dags/ must get a dag.test() here."""
    covered = {"dbt_then_sync.py", "census_drop_in.py", "deferrable_sync.py", "example_sync.py"}
    assert {p.name for p in (REPO / "dags").glob("*.py")} == covered


def test_dbt_then_sync(
    dag_folder: Path, env: Path, hubspot: UrlProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_conn(monkeypatch, "sluicegate_default", conn_type="sluicegate", extra={"project": str(env)})
    dag = load(dag_folder, "sluicegate_dbt_then_sync")
    assert dag.get_task("wait_for_sync").poke_interval == 1
    outlets = {t: [a.uri for a in dag.get_task(t).outlets] for t in ("dbt_build", "wait_for_sync")}
    assert outlets["wait_for_sync"] == ["hubspot://crm/contacts"]
    assert outlets["dbt_build"][0].endswith(f"/{os.environ['SG_DBT_SCHEMA']}/pub_hubspot_contacts")

    states = run(dag)
    assert states == {
        "dag": "success",
        "dbt_build": "success",
        "sync_hubspot_contacts": "success",
        "wait_for_sync": "success",
    }
    got = contacts(hubspot)
    assert sorted(got) == EMAILS
    assert got["ada@example.com"]["firstname"] == "Ada"
    assert got["ada@example.com"]["lead_score"] == "88.50"  # numeric(10,2) keeps its scale

    # Downstream of the sync's asset: that DAG is scheduled on it, and runs.
    after = load(dag_folder, "sluicegate_after_hubspot_contacts")
    assert run(after) == {"dag": "success", "contacts_are_in_hubspot": "success"}


def test_census_drop_in(
    dag_folder: Path, env: Path, server: UrlProcess, hubspot: UrlProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    set_conn(monkeypatch, "census_default", conn_type="census", host=server.url, password=SERVE_TOKEN)
    dag = load(dag_folder, "census_drop_in")
    assert dag.get_task("census_sensor").poke_interval == 1
    assert run(dag) == {"dag": "success", "census_sync": "success", "census_sensor": "success"}
    assert sorted(contacts(hubspot)) == EMAILS
    runs = server.get_json("/api/v1/syncs/1/sync_runs", SERVE_TOKEN)["data"]
    assert [r["status"] for r in runs] == ["completed"]


def test_deferrable_sync(
    dag_folder: Path, env: Path, server: UrlProcess, hubspot: UrlProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    set_conn(monkeypatch, "sluicegate_remote", conn_type="sluicegate", host=server.url, password=SERVE_TOKEN)
    dag = load(dag_folder, "sluicegate_deferrable_sync")
    task = dag.get_task("sync_hubspot_contacts")
    assert task.deferrable is True and [a.uri for a in task.outlets] == ["hubspot://crm/contacts"]
    dag_run = dag.test()
    assert states(dag_run) == {"dag": "success", "sync_hubspot_contacts": "success"}
    assert sorted(contacts(hubspot)) == EMAILS
    runs = server.get_json("/api/v1/syncs/1/sync_runs", SERVE_TOKEN)["data"]
    assert [r["status"] for r in runs] == ["completed"]
    assert runs[0]["records_updated"] == len(EMAILS)

    # The task's extra link "Sync run" leads to this run's page on the server.
    run_url = f"{server.url}/runs/{runs[0]['id']}"
    assert xcom(dag_run, "sync_hubspot_contacts", "sync_run_url") == run_url
    (link,) = [oe for oe in task.operator_extra_links if oe.name == "Sync run"]
    if AIRFLOW_2:  # the webserver asks the link when the task's page is shown
        with create_session() as session:
            ti = dag_run.get_task_instance("sync_hubspot_contacts", session=session)
            assert link.get_link(task, ti_key=ti.key) == run_url
    else:  # Airflow 3 asks it when the task ends and keeps the answer in XCom for the UI
        assert xcom(dag_run, "sync_hubspot_contacts", link.xcom_key) == run_url
