"""Remote and Census modes: hook, operator, sensor and trigger against a real `sluicegate serve`.

Each test starts `sluicegate serve` (a child process, its own port and token) over a fresh
quickstart project whose webhook destination is the test emulator; the server's workers execute
the runs the Airflow classes trigger over the Census-compatible API. Census mode is the same
API on another host, so it is tested against the same server through a `census` connection.
A status the server never sends (Census's `skipped`) comes from a one-route HTTP stub.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

pytest.importorskip("airflow", reason="apache-airflow is not installed")

from sluicegate.airflow import _api  # noqa: E402
from sluicegate.airflow._api import ApiError, api_base, is_census_host  # noqa: E402
from sluicegate.airflow._compat import AirflowException  # noqa: E402
from sluicegate.airflow.census import (  # noqa: E402
    CensusHook,
    CensusOperator,
    CensusSensor,
    CensusTrigger,
)
from sluicegate.airflow.hooks.sluicegate import SluicegateHook  # noqa: E402
from sluicegate.airflow.operators.sluicegate import SyncOperator  # noqa: E402
from sluicegate.airflow.sensors.sluicegate import SyncSensor  # noqa: E402
from sluicegate.airflow.triggers.sluicegate import SyncRunTrigger  # noqa: E402

from _support import (  # noqa: E402
    QUICKSTART_ROWS,
    SERVE_TOKEN,
    EmulatorProcess,
    Project,
    UrlProcess,
    start_serve,
    wait_for,
)

pytestmark = pytest.mark.airflow

try:
    from airflow.sdk.exceptions import TaskDeferred
except ImportError:  # Airflow 2.x
    from airflow.exceptions import TaskDeferred  # type: ignore[no-redef]


class TaskInstance:
    """What the operator uses of Airflow's task instance: identity and xcom_push."""

    dag_id, task_id, run_id, try_number = "dag", "sync", "manual__1", 1

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        json.dumps(value)  # XCom values must serialize
        self.xcom[key] = value


def set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: Any) -> None:
    fields.setdefault("conn_type", "sluicegate")
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def first_event(trigger: SyncRunTrigger) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(main())


@pytest.fixture
def server(
    cli: str, project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[UrlProcess]:
    """`sluicegate serve` over the quickstart project; `sluicegate_default` and
    `census_default` point at it."""
    proc = start_serve(cli, project.yml, tmp_path / "serve.log", {"SLUICEGATE_LEASE": "3s"})
    set_conn(monkeypatch, "sluicegate_default", host=proc.url, password=SERVE_TOKEN)
    set_conn(monkeypatch, "census_default", conn_type="census", host=proc.url, password=SERVE_TOKEN)
    try:
        yield proc
    finally:
        proc.stop()


def api_run(server: UrlProcess, run_id: int) -> dict[str, Any]:
    return server.get_json(f"/api/v1/sync_runs/{run_id}", SERVE_TOKEN)["data"]


# ------------------------------------------------------------------ connection modes


def test_api_base_accepts_the_ways_a_host_is_written() -> None:
    assert api_base("app.getcensus.com") == "https://app.getcensus.com/api/v1"
    assert api_base("https://app-eu.getcensus.com/") == "https://app-eu.getcensus.com/api/v1"
    assert api_base("https://app.getcensus.com/api/v1") == "https://app.getcensus.com/api/v1"
    assert api_base("http://sluicegate:8080") == "http://sluicegate:8080/api/v1"
    assert is_census_host("https://app-eu.getcensus.com/api/v1")
    assert not is_census_host("http://census.internal:8080/api/v1")
    with pytest.raises(ValueError, match="Password field"):
        api_base("https://bearer:secret-token:abc@app.getcensus.com")


def test_the_connection_selects_the_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, "sg_embedded", extra={"project": "/p.yml"})
    set_conn(monkeypatch, "sg_remote", host="http://sluicegate.internal:8080", password="t")
    set_conn(monkeypatch, "sg_census", host="https://app.getcensus.com/api/v1", password="t")
    set_conn(monkeypatch, "census_plain", conn_type="census", password="secret-token:w")
    assert SluicegateHook("sg_embedded").get_mode() == "embedded"
    assert SluicegateHook("sg_remote").get_mode() == "remote"
    assert SluicegateHook("sg_census").get_mode() == "census"
    # A census connection without host is Fivetran Activations, as in airflow-provider-census.
    census = CensusHook("census_plain")
    assert census.get_mode() == "census"
    assert census.get_api_base_url() == "https://app.getcensus.com"
    assert census.get_sync_history_url(7, 42) == (
        "https://app.getcensus.com/syncs/7/history?sync_run_id=42"
    )
    remote = SluicegateHook("sg_remote").get_client()
    assert remote.run_url(42) == "http://sluicegate.internal:8080/runs/42"
    with pytest.raises(AirflowException, match="'sg_remote' points at the API .*remote mode"):
        SluicegateHook("sg_remote").get_engine()
    with pytest.raises(AirflowException, match="'sg_embedded' has no host"):
        SluicegateHook("sg_embedded").get_client()
    set_conn(monkeypatch, "sg_no_token", host="http://sluicegate.internal:8080")
    with pytest.raises(AirflowException, match="no API token.*Password field"):
        SluicegateHook("sg_no_token").get_client()


@pytest.mark.core
def test_test_connection_against_the_server(
    server: UrlProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok, message = SluicegateHook().test_connection()
    assert ok, message
    assert message == f"1 sync on the sluicegate server at {server.url}/api/v1"
    # Census mode speaks the same API: only the host differs (here: the same server).
    ok, message = CensusHook().test_connection()
    assert ok and message.startswith("1 sync on the sluicegate server"), message

    wrong = "secret-token:not-the-right-one-5be1"
    set_conn(monkeypatch, "sg_wrong", host=server.url, password=wrong)
    ok, message = SluicegateHook("sg_wrong").test_connection()
    assert not ok
    assert "answered 401: invalid API token" in message and "Password field" in message
    assert wrong not in message and "not-the-right-one" not in message

    set_conn(monkeypatch, "sg_down", host="http://127.0.0.1:9", password=SERVE_TOKEN)
    ok, message = SluicegateHook("sg_down").test_connection()
    assert not ok and "got no answer" in message and SERVE_TOKEN not in message


# ------------------------------------------------------------------ operator


@pytest.mark.core
def test_operator_triggers_on_the_server_and_waits(
    server: UrlProcess, emulator: EmulatorProcess
) -> None:
    ti = TaskInstance()
    op = SyncOperator(task_id="sync", sync_id=1, poll_interval=0.2)
    run_id = op.execute({"ti": ti})
    assert ti.xcom["sync_run_id"] == run_id
    assert ti.xcom["sync_run_url"] == f"{server.url}/runs/{run_id}"
    run = api_run(server, run_id)
    assert run["status"] == "completed"
    assert ti.xcom["counts"]["records_updated"] == run["records_updated"] == QUICKSTART_ROWS
    assert ti.xcom["counts"]["succeeded"]["adds"] == QUICKSTART_ROWS
    assert emulator.stats()["records_accepted"] == QUICKSTART_ROWS
    # The run page the extra link points at is served (with the token).
    req = urllib.request.Request(
        ti.xcom["sync_run_url"], headers={"Authorization": f"Bearer {SERVE_TOKEN}"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200 and f"{run_id}" in resp.read().decode()


@pytest.mark.core
def test_operator_without_wait_returns_at_once_and_the_sensor_waits(
    server: UrlProcess, emulator: EmulatorProcess
) -> None:
    emulator.set_latency(100)  # the run lasts over a second
    ti = TaskInstance()
    started = time.monotonic()
    run_id = SyncOperator(task_id="sync", sync_id=1, wait_for_completion=False).execute({"ti": ti})
    assert time.monotonic() - started < 5
    assert api_run(server, run_id)["status"] in ("queued", "working")
    assert "counts" not in ti.xcom

    sensor = SyncSensor(task_id="wait", sync_run_id=str(run_id), poke_interval=0.2)
    pokes = 0
    while not sensor.poke({}):
        pokes += 1
        assert pokes < 600, "the run did not complete"
        time.sleep(0.2)
    assert pokes > 0
    assert api_run(server, run_id)["status"] == "completed"


@pytest.mark.core
def test_deferrable_operator_hands_the_wait_to_the_trigger(
    server: UrlProcess, emulator: EmulatorProcess
) -> None:
    ti = TaskInstance()
    op = SyncOperator(task_id="sync", sync_id=1, deferrable=True, poll_interval=0.2, timeout=300)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"ti": ti})
    run_id = ti.xcom["sync_run_id"]
    trigger = deferred.value.trigger
    assert isinstance(trigger, SyncRunTrigger)
    assert deferred.value.method_name == "execute_complete"
    assert trigger.sync_run_id == run_id and trigger.poll_interval == 0.2
    assert trigger.end_time is not None and trigger.end_time > time.time() + 200

    event = first_event(trigger)  # polls GET /sync_runs/{id} with httpx.AsyncClient
    assert event["status"] == "completed" and event["run"]["id"] == run_id
    resumed = SyncOperator(task_id="sync", sync_id=1, deferrable=True)  # a fresh instance
    assert resumed.execute_complete({"ti": ti}, event) == run_id
    assert ti.xcom["counts"]["records_updated"] == QUICKSTART_ROWS


@pytest.mark.core
def test_failed_remote_run_fails_operator_sensor_and_trigger(
    server: UrlProcess, emulator: EmulatorProcess, project: Project
) -> None:
    from _support import set_retry

    set_retry(project.yml, max_attempts=2, initial_backoff="100ms")
    marker = "remote mode failure 7d1e"
    emulator.set_faults(1.0, 503, marker)
    ti = TaskInstance()
    with pytest.raises(AirflowException, match=f"sync run [0-9]+ failed: .*{marker}"):
        SyncOperator(task_id="sync", sync_id=1, poll_interval=0.2).execute({"ti": ti})
    run_id = ti.xcom["sync_run_id"]
    with pytest.raises(AirflowException, match=marker):
        SyncSensor(task_id="wait", sync_run_id=run_id).poke({})
    event = first_event(SyncRunTrigger(run_id, poll_interval=0.1))
    assert event["status"] == "failed" and marker in event["run"]["error_message"]


@pytest.mark.core
def test_on_kill_cancels_the_remote_run(server: UrlProcess, emulator: EmulatorProcess) -> None:
    emulator.set_latency(300)  # a full run takes 7 s or more
    ti = TaskInstance()
    op = SyncOperator(task_id="sync", sync_id=1, poll_interval=0.2)
    killed: dict[str, float] = {}

    def kill_when_working() -> None:
        # Airflow calls on_kill from a signal handler while execute() waits; here a thread
        # does, while execute() waits in this (main) thread, as Airflow 2 requires.
        wait_for(lambda: "sync_run_id" in ti.xcom, 30, "the trigger")
        run_id = ti.xcom["sync_run_id"]
        wait_for(lambda: api_run(server, run_id)["status"] == "working", 30, "the run to work")
        killed["at"] = time.monotonic()
        op.on_kill()

    killer = threading.Thread(target=kill_when_working)
    killer.start()
    try:
        with pytest.raises(AirflowException, match=r"sync run [0-9]+ failed: .*cancel"):
            op.execute({"ti": ti})
    finally:
        killer.join(60)
    assert time.monotonic() - killed["at"] < 15
    run = api_run(server, ti.xcom["sync_run_id"])
    assert run["status"] == "failed" and run["canceled"] is True
    assert (run["records_updated"] or 0) < QUICKSTART_ROWS


@pytest.mark.core
def test_timeout_cancels_the_remote_run(server: UrlProcess, emulator: EmulatorProcess) -> None:
    emulator.set_latency(300)
    ti = TaskInstance()
    op = SyncOperator(task_id="sync", sync_id=1, poll_interval=0.2, timeout=1.5)
    with pytest.raises(AirflowException, match=r"did not finish within timeout=1.5s and was canceled"):
        op.execute({"ti": ti})
    run_id = ti.xcom["sync_run_id"]
    wait_for(lambda: api_run(server, run_id)["status"] == "failed", 30, "the run to stop")
    assert api_run(server, run_id)["canceled"] is True


@pytest.mark.core
def test_trigger_reports_a_missing_run(server: UrlProcess) -> None:
    event = first_event(SyncRunTrigger(987654, poll_interval=0.1))
    assert event["status"] == "error" and "sync run 987654 does not exist" in event["message"]
    assert "404" in event["message"]


# ------------------------------------------------------------------ Census drop-in


@pytest.mark.core
def test_census_classes_against_the_server(server: UrlProcess, emulator: EmulatorProcess) -> None:
    hook = CensusHook()
    run_id = hook.trigger_sync(1)
    assert isinstance(run_id, int)
    wait_for(lambda: hook.get_sync_run_info(run_id)["status"] == "completed", 60, "the run")
    assert hook.get_sync_history_url(1, run_id) == f"{server.url}/runs/{run_id}"

    ti = TaskInstance()
    op = CensusOperator(task_id="census_sync", sync_id=1)
    assert op.census_conn_id == "census_default" and op.wait_for_completion is False
    second = op.execute({"ti": ti})
    assert second == ti.xcom["sync_run_id"] != run_id
    sensor = CensusSensor(task_id="census_sensor", sync_run_id=str(second), poke_interval=1)
    assert sensor.poke_interval == 1 and sensor.deferrable is False
    wait_for(lambda: sensor.poke({}), 60, "the sensor")

    trigger = CensusTrigger(sync_run_id=second, poll_interval=0.1)
    assert trigger.poll_interval == 1.0  # as airflow-provider-census: at least a second
    path, kwargs = trigger.serialize()
    assert path == "sluicegate.airflow.triggers.census.CensusTrigger"
    rebuilt = CensusTrigger(**kwargs)
    assert rebuilt.sluicegate_conn_id == "census_default"
    assert first_event(rebuilt)["status"] == "completed"


# ------------------------------------------------------------------ statuses this version does not know


class _Stub(http.server.BaseHTTPRequestHandler):
    """Answers every run read as Census does for a run it skipped."""

    def do_GET(self) -> None:  # noqa: N802
        body = json.dumps(
            {"status": "success", "data": {"id": 5, "sync_id": 1, "status": "skipped"}}
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def skipping_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    stub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{stub.server_address[1]}"
    set_conn(monkeypatch, "sg_skipping", host=url, password="secret-token:x")
    try:
        yield url
    finally:
        stub.shutdown()


def test_unknown_statuses_fail_closed(skipping_api: str) -> None:
    with pytest.raises(AirflowException, match="status 'skipped'"):
        SyncSensor(task_id="w", sync_run_id=5, sluicegate_conn_id="sg_skipping").poke({})
    event = first_event(SyncRunTrigger(5, sluicegate_conn_id="sg_skipping", poll_interval=0.1))
    assert event["status"] == "error" and "'skipped'" in event["message"]
    op = SyncOperator(task_id="s", sync_id=1, sluicegate_conn_id="sg_skipping")
    with pytest.raises(AirflowException, match="status 'skipped'"):
        op._poll_remote(SluicegateHook("sg_skipping").get_client(), 5)


def test_api_errors_name_the_call_and_never_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    token = "secret-token:do-not-print-9a2f"
    set_conn(monkeypatch, "sg_nowhere", host="http://127.0.0.1:9", password=token)
    client = SluicegateHook("sg_nowhere").get_client()
    with pytest.raises(ApiError) as caught:
        client.get_run(3)
    message = str(caught.value)
    assert "GET http://127.0.0.1:9/api/v1/sync_runs/3" in message and "'sg_nowhere'" in message
    assert caught.value.transient and token not in message and token not in repr(client)


# ------------------------------------------------------------------ lineage


@pytest.mark.core
def test_lineage_in_task_from_the_project(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, "sg_in_task", extra={"project": str(project.yml)})
    op = SyncOperator(task_id="s", sync_name="hubspot_contacts", sluicegate_conn_id="sg_in_task")
    assert op.lineage() == (
        [("sqlite://warehouse.db", "pub_hubspot_contacts")],
        [("webhook://crm", "contacts")],
    )
    facets = op.get_openlineage_facets_on_complete(None)
    from airflow.providers.openlineage.extractors import OperatorLineage

    assert isinstance(facets, OperatorLineage)
    assert [(d.namespace, d.name) for d in facets.inputs] == [
        ("sqlite://warehouse.db", "pub_hubspot_contacts")
    ]
    assert [(d.namespace, d.name) for d in facets.outputs] == [("webhook://crm", "contacts")]


@pytest.mark.core
def test_lineage_remote_from_the_api(server: UrlProcess) -> None:
    host = server.url.split("://", 1)[1]
    op = SyncOperator(task_id="s", sync_id=1)
    assert op.lineage() == (
        [(f"sluicegate://{host}/warehouse", "pub_hubspot_contacts")],
        [("webhook://crm", "contacts")],
    )
    facets = op.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in facets.outputs] == [("webhook://crm", "contacts")]


def test_lineage_of_a_postgres_source_drops_credentials() -> None:
    from sluicegate.airflow._lineage import _source_pair

    # What the engine reports is already without user and password (redact_url); the
    # namespace keeps scheme, host and port, the database goes into the name.
    assert _source_pair("postgres://db.internal:5432/analytics", "warehouse", "public.pub") == (
        "postgres://db.internal:5432",
        "analytics.public.pub",
    )
    assert _source_pair(None, "warehouse", "t") == ("sluicegate://warehouse", "t")


# ------------------------------------------------------------------ Fivetran Activations


class _ActivationsStub(http.server.BaseHTTPRequestHandler):
    """Answers `GET /api/v1/syncs` as Fivetran Activations does; remembers what it was sent."""

    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:  # noqa: N802
        self.seen.append((self.path, self.headers.get("Authorization")))
        body = json.dumps(
            {
                "status": "success",
                "data": [{"id": 11, "label": "contacts"}],
                "pagination": {"total_records": 3, "per_page": 1, "page": 1, "last_page": 3,
                               "prev_page": None, "next_page": 2},
            }
        ).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_census_test_connection_against_activations(monkeypatch: pytest.MonkeyPatch) -> None:
    """The `census` connection's test in Fivetran Activations mode: the stub stands in for
    app.getcensus.com (its host is made one of the Activations domains)."""
    stub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ActivationsStub)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    _ActivationsStub.seen.clear()
    monkeypatch.setattr(_api, "_CENSUS_DOMAINS", ("127.0.0.1",))
    url = f"http://127.0.0.1:{stub.server_address[1]}"
    set_conn(monkeypatch, "census_default", conn_type="census", host=url, password="secret-token:wt-1")
    try:
        ok, message = CensusHook().test_connection()
    finally:
        stub.shutdown()
    assert ok, message
    assert message == f"3 syncs on the Fivetran Activations at {url}/api/v1"
    assert _ActivationsStub.seen == [("/api/v1/syncs?page=1&per_page=1", "Bearer secret-token:wt-1")]
