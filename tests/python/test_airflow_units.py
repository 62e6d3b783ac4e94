"""Hook configuration, argument parsing and messages of the Airflow layer.

Connections are resolved by Airflow itself (from AIRFLOW_CONN_* environment variables), so these
tests go through the real lookup; only `test_connection` needs the compiled engine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("airflow", reason="apache-airflow is not installed")

from sluicegate.airflow._compat import AirflowException
from sluicegate.airflow._util import (
    counts_of,
    failure_message,
    parse_run_id,
    parse_sync_ref,
    summarize,
)
from sluicegate.airflow.hooks.sluicegate import SluicegateHook
from sluicegate.airflow.operators.sluicegate import SyncOperator
from sluicegate.airflow.sensors.sluicegate import SyncSensor
from sluicegate.types import CENSUS_COUNT_FIELDS

from _support import Project

pytestmark = pytest.mark.airflow


def set_connection(
    monkeypatch: pytest.MonkeyPatch, conn_id: str = "sluicegate_default", **fields: object
) -> None:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "sluicegate", **fields})
    )


# ------------------------------------------------------------------ where the project comes from


def test_project_and_state_from_connection_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(
        monkeypatch, extra={"project": "/srv/sg/sluicegate.yml", "state": "sqlite:////srv/sg/s.db"}
    )
    monkeypatch.setenv("SLUICEGATE_PROJECT", "/ignored.yml")
    settings = SluicegateHook().get_settings()
    assert settings.project == "/srv/sg/sluicegate.yml"
    assert settings.state == "sqlite:////srv/sg/s.db"


def test_prefixed_extras_written_by_older_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, "sg_other", extra={"extra__sluicegate__project": "/p.yml"})
    settings = SluicegateHook("sg_other").get_settings()
    assert settings == ("/p.yml", None)


def test_environment_fills_what_the_connection_leaves_out(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, extra={})
    monkeypatch.setenv("SLUICEGATE_PROJECT", "/env/sluicegate.yml")
    monkeypatch.setenv("SLUICEGATE_STATE", "sqlite:////env/state.db")
    assert SluicegateHook().get_settings() == ("/env/sluicegate.yml", "sqlite:////env/state.db")


def test_environment_alone_when_the_connection_is_not_defined(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLUICEGATE_PROJECT", "/env/sluicegate.yml")
    assert SluicegateHook("sluicegate_undefined").get_settings() == ("/env/sluicegate.yml", None)


def test_no_project_anywhere_names_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, "sg_empty", extra={"state": "sqlite:////x.db"})
    with pytest.raises(
        AirflowException,
        match=r"'sg_empty' does not set the extra field 'project'.*SLUICEGATE_PROJECT",
    ):
        SluicegateHook("sg_empty").get_settings()
    with pytest.raises(AirflowException, match=r"'sg_missing' is not defined.*SLUICEGATE_PROJECT"):
        SluicegateHook("sg_missing").get_settings()


def test_password_is_spliced_into_a_postgres_state_url(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(
        monkeypatch,
        extra={
            "project": "/p.yml",
            "state": "postgres://sync%40er@db.internal:5432/sluicegate?sslmode=require",
        },
        password="s3cr:et/@",
    )
    hook = SluicegateHook()
    state = hook.get_settings().state
    assert (
        state == "postgres://sync%40er:s3cr%3Aet%2F%40@db.internal:5432/sluicegate?sslmode=require"
    )


@pytest.mark.parametrize(
    ("state", "problem"),
    [
        (None, "no state store URL"),
        ("sqlite:////x.db", "sqlite:// state store takes no password"),
        ("postgres://u:pw@db/x", "already contains a password"),
        ("postgres://db/x", "needs a user name"),
    ],
)
def test_password_that_cannot_be_used_is_an_error(
    monkeypatch: pytest.MonkeyPatch, state: str | None, problem: str
) -> None:
    extra = {"project": "/p.yml"} | ({"state": state} if state else {})
    set_connection(monkeypatch, extra=extra, password="pw")
    with pytest.raises(AirflowException, match=problem):
        SluicegateHook().get_settings()


def test_connection_form() -> None:
    behaviour = SluicegateHook.get_ui_field_behaviour()
    # The host stays: it selects the mode (empty: in-task; http(s)://: a server or Census).
    assert set(behaviour["hidden_fields"]) == {"schema", "login", "port"}
    assert behaviour["relabeling"]["host"] == "Server URL (remote mode)"
    assert behaviour["relabeling"]["password"] == "API token, or state store password"
    assert "project" in behaviour["placeholders"]["extra"]
    assert "https://app.getcensus.com/api/v1" in behaviour["placeholders"]["host"]
    assert SluicegateHook.default_conn_name == "sluicegate_default"
    assert SluicegateHook.conn_name_attr == "sluicegate_conn_id"


# ------------------------------------------------------------------ arguments and messages


@pytest.mark.parametrize(("value", "expected"), [(7, 7), ("7", 7), (" 12 \n", 12)])
def test_run_id_from_xcom_text(value: object, expected: int) -> None:
    assert parse_run_id(value) == expected


@pytest.mark.parametrize("value", ["None", "", "abc", "-3", "0", 0, True, 1.5, None, "1.0"])
def test_bad_run_ids_are_refused_clearly(value: object) -> None:
    with pytest.raises(ValueError, match="sync_run_id"):
        parse_run_id(value)


def test_no_xcom_explains_itself() -> None:
    with pytest.raises(ValueError, match="upstream task pushed none"):
        parse_run_id("None")


def test_sync_reference() -> None:
    assert parse_sync_ref(3) == 3
    assert parse_sync_ref("3") == 3
    assert parse_sync_ref("hubspot_contacts") == "hubspot_contacts"
    with pytest.raises(ValueError, match="sync_id must be"):
        parse_sync_ref("  ")


def test_failure_message_and_summary() -> None:
    run = {
        "id": 5,
        "sync_id": 1,
        "status": "failed",
        "error_message": "CRM is down",
        "error_detail": "HTTP 503",
        "planned": {"adds": 3, "changes": 1, "removes": 0},
        "succeeded": {"adds": 0, "changes": 0, "removes": 0},
        "failed": {"adds": 3, "changes": 1, "removes": 0},
    }
    assert failure_message(run) == "sync run 5 failed: CRM is down"
    assert failure_message({**run, "error_message": None}) == "sync run 5 failed: HTTP 503"
    assert "canceled" in failure_message({**run, "canceled": True})
    line = summarize(run)
    assert "sync run 5 of sync 1 failed" in line and "planned 3 adds, 1 changes, 0 removes" in line
    counts = counts_of(run)
    assert set(CENSUS_COUNT_FIELDS) <= set(counts) and counts["planned"] == run["planned"]


def test_operator_and_sensor_arguments() -> None:
    op = SyncOperator(task_id="s", sync_id="{{ params.sync }}")
    assert "sync_id" in op.template_fields
    assert op.sluicegate_conn_id == "sluicegate_default" and op.full_sync is False
    sensor = SyncSensor(task_id="w", sync_run_id="{{ ti.xcom_pull(task_ids='s') }}")
    assert "sync_run_id" in sensor.template_fields
    assert sensor.poke_interval == 30
    assert SyncSensor(task_id="w2", sync_run_id=1, poke_interval=2).poke_interval == 2


# ------------------------------------------------------------------ needs the engine


@pytest.mark.core
def test_test_connection_loads_the_project(
    monkeypatch: pytest.MonkeyPatch, project: Project
) -> None:
    set_connection(monkeypatch, extra={"project": str(project.yml)})
    assert SluicegateHook().test_connection() == (True, "1 sync in the project")


@pytest.mark.core
def test_test_connection_reports_a_broken_project(
    monkeypatch: pytest.MonkeyPatch, cli: str, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "sluicegate.yml"
    set_connection(monkeypatch, extra={"project": str(missing)})
    ok, message = SluicegateHook().test_connection()
    assert ok is False
    assert message
