"""The Engine against a quickstart project and the webhook emulator: real runs, real HTTP."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import sluicegate

from _support import (
    QUICKSTART_ROWS,
    EmulatorProcess,
    Project,
    distinct_records,
    row_count,
    run_cli,
    set_retry,
)

pytestmark = pytest.mark.core

RUN_FIELDS = {
    "id", "sync_id", "sync_name", "status", "created_at", "updated_at", "started_at",
    "completed_at", "scheduled_execution_time", "error_code", "error_message", "error_detail",
    "canceled", "full_sync", "sync_trigger_reason", "current_step", "source_record_count",
    "source_record_updates", "source_record_deletes", "source_record_invalids",
    "records_invalid", "records_processed", "records_updated", "records_failed",
    "planned", "succeeded", "failed",
}  # fmt: skip
NOTHING = {"adds": 0, "changes": 0, "removes": 0}


@pytest.fixture
def engine(project: Project) -> sluicegate.Engine:
    return sluicegate.Engine(project.yml)


def test_syncs_lists_the_quickstart_sync(engine: sluicegate.Engine) -> None:
    (sync,) = engine.syncs()
    assert sync["id"] == 1
    assert sync["name"] == "hubspot_contacts"
    assert sync["behavior"] == "upsert"
    assert {"source", "destination"} <= sync.keys()


def test_first_run_delivers_every_row_then_nothing(
    engine: sluicegate.Engine, project: Project, emulator: EmulatorProcess
) -> None:
    rows = row_count(project.warehouse)
    assert rows == QUICKSTART_ROWS

    run_id = engine.trigger(1)
    assert isinstance(run_id, int)
    queued = engine.get_run(run_id)
    assert queued["status"] == "queued"
    assert queued["id"] == run_id and queued["sync_id"] == 1
    assert queued.keys() >= RUN_FIELDS

    run = engine.run(run_id)
    assert run["status"] == "completed", run["error_message"]
    assert run.keys() >= RUN_FIELDS
    assert run["id"] == run_id
    assert run["completed_at"]
    assert run["error_message"] is None
    assert run["canceled"] is False and run["full_sync"] is False
    assert run["source_record_count"] == rows
    assert run["planned"] == {"adds": rows, "changes": 0, "removes": 0}
    assert run["succeeded"] == {"adds": rows, "changes": 0, "removes": 0}
    assert run["failed"] == NOTHING
    assert run["records_failed"] == 0

    received = emulator.received()
    assert received["stats"]["records_accepted"] == rows
    assert len(received["records"]) == rows
    assert distinct_records(received["records"]) == rows

    stored = engine.get_run(run_id)
    for field in (
        "status",
        "source_record_count",
        "planned",
        "succeeded",
        "failed",
        "completed_at",
    ):
        assert stored[field] == run[field], field

    # Nothing changed in the warehouse: the second run (by name, this time) sends nothing.
    emulator.reset()
    second = engine.run(engine.trigger("hubspot_contacts"))
    assert second["status"] == "completed", second["error_message"]
    assert second["id"] != run_id
    assert second["source_record_count"] == rows
    assert second["planned"] == NOTHING
    assert second["succeeded"] == NOTHING
    assert emulator.stats()["records_received"] == 0

    runs = engine.list_runs(1)
    assert [r["id"] for r in runs[:2]] == [second["id"], run_id]  # newest first
    assert [r["id"] for r in engine.list_runs("hubspot_contacts", limit=1)] == [second["id"]]
    assert len(engine.list_runs(limit=1)) == 1


def test_full_sync_resends_everything(
    engine: sluicegate.Engine, project: Project, emulator: EmulatorProcess
) -> None:
    assert engine.sync(1)["status"] == "completed"
    emulator.reset()
    run = engine.sync(1, full_sync=True)
    assert run["status"] == "completed", run["error_message"]
    assert run["full_sync"] is True
    assert emulator.stats()["records_accepted"] == QUICKSTART_ROWS


def test_failed_delivery_fails_the_run_and_keeps_state(
    project: Project, emulator: EmulatorProcess
) -> None:
    """Sync state advances only on acknowledgement: after a failed run, everything is resent."""
    set_retry(project.yml, max_attempts=2, initial_backoff="100ms")
    engine = sluicegate.Engine(project.yml)
    marker = "CRM is down (sluicegate test 7f3a)"
    emulator.set_faults(1.0, 503, marker)

    run = engine.sync(1)
    assert run["status"] == "failed"
    assert marker in (run["error_message"] or "")
    assert run["succeeded"] == NOTHING
    assert emulator.stats()["records_accepted"] == 0
    assert engine.get_run(run["id"])["status"] == "failed"

    emulator.clear_faults()
    emulator.reset()
    retry = engine.sync(1)
    assert retry["status"] == "completed", retry["error_message"]
    # The batch whose delivery failed is in doubt (it may have reached the destination), so it
    # is resent as a change; the rest were never sent and are adds.
    batch = 100  # the quickstart webhook's batch_size
    assert retry["succeeded"] == {"adds": QUICKSTART_ROWS - batch, "changes": batch, "removes": 0}
    assert emulator.stats()["records_accepted"] == QUICKSTART_ROWS


def test_unknown_run_and_sync(engine: sluicegate.Engine) -> None:
    with pytest.raises(sluicegate.RunNotFoundError) as err:
        engine.get_run(987_654_321)
    assert isinstance(err.value, sluicegate.SluicegateError)
    assert "987654321" in str(err.value)
    assert err.value.kind == "run_not_found"
    assert err.value.causes and all(isinstance(c, str) for c in err.value.causes)
    with pytest.raises(sluicegate.RunNotFoundError):
        engine.run(987_654_321)
    with pytest.raises(sluicegate.SyncNotFoundError):
        engine.trigger("no_such_sync")
    with pytest.raises(sluicegate.SyncNotFoundError):
        engine.trigger(999)


def test_a_run_executes_once(engine: sluicegate.Engine, emulator: EmulatorProcess) -> None:
    run = engine.sync(1, reason="pytest: test_a_run_executes_once")
    assert run["status"] == "completed", run["error_message"]
    assert run["sync_trigger_reason"]["ui_detail"] == "pytest: test_a_run_executes_once"
    assert run["sync_name"] == "hubspot_contacts"
    assert engine.rejections(run["id"]) == []
    with pytest.raises(sluicegate.RunStateError):
        engine.run(run["id"])
    assert engine.get_run(run["id"])["status"] == "completed"


def test_broken_project_file_is_a_config_error(project: Project, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(project.yml.read_text() + "\nsyncs: [unterminated\n")
    with pytest.raises(sluicegate.ConfigError) as err:
        sluicegate.Engine(broken)
    assert isinstance(err.value, sluicegate.SluicegateError)
    assert "broken.yml" in str(err.value)  # errors say where: file:line:column
    assert err.value.kind == "config"

    with pytest.raises(sluicegate.ConfigError):
        sluicegate.Engine(tmp_path / "missing.yml")


def test_exception_hierarchy() -> None:
    from sluicegate import _core, exceptions

    names = [
        "ConfigError", "SourceError", "DestinationError", "StoreError",
        "RunNotFoundError", "SyncNotFoundError", "RunStateError",
    ]  # fmt: skip
    assert issubclass(_core.SluicegateError, Exception)
    assert _core.SluicegateError.__module__ == "sluicegate._core"
    for name in ["SluicegateError", *names]:
        cls = getattr(_core, name)
        assert getattr(exceptions, name) is cls
        assert getattr(sluicegate, name) is cls
        assert issubclass(cls, _core.SluicegateError)
        assert cls.__module__ == "sluicegate._core", cls
    assert set(exceptions.__all__) == {"SluicegateError", *names}


def test_version() -> None:
    from sluicegate import _core

    assert isinstance(_core.__version__, str) and _core.__version__
    assert sluicegate.__version__ == metadata.version("sluicegate") == _core.__version__
    # The command line reports the same version (it is the same extension).
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "sluicegate", "--version"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.split() == ["sluicegate", sluicegate.__version__], out


def test_default_state_store_is_next_to_the_project(
    engine: sluicegate.Engine, project: Project
) -> None:
    engine.sync(1)
    assert (project.dir / "sluicegate_state.db").is_file()


def test_explicit_state_store(project: Project, emulator: EmulatorProcess, tmp_path: Path) -> None:
    state = tmp_path / "elsewhere" / "state.db"
    state.parent.mkdir()
    engine = sluicegate.Engine(project.yml, f"sqlite://{state}")
    assert engine.sync(1)["status"] == "completed"
    assert state.is_file()
    # A second engine on the same store sees the run; one on the default store does not.
    assert (
        sluicegate.Engine(project.yml, f"sqlite://{state}").list_runs(1)[0]["status"] == "completed"
    )
    assert sluicegate.Engine(project.yml).list_runs(1) == []


def test_cli(cli: str, project: Project, emulator: EmulatorProcess) -> None:
    run_cli(cli, "--project", str(project.yml), "validate")
    run_cli(cli, "--project", str(project.yml), "run", "hubspot_contacts")
    assert emulator.stats()["records_accepted"] == QUICKSTART_ROWS
    listed = run_cli(cli, "--project", str(project.yml), "runs")
    assert "completed" in listed.stdout
    bad = run_cli(cli, "--project", str(project.dir / "missing.yml"), "validate", check=False)
    assert bad.returncode != 0
    usage = subprocess.run(
        [sys.executable, "-m", "sluicegate", "--help"], capture_output=True, text=True, timeout=60
    )
    assert usage.returncode == 0 and "quickstart" in usage.stdout


def test_plan_is_a_dry_run(engine: sluicegate.Engine, emulator: EmulatorProcess) -> None:
    plan = engine.plan("hubspot_contacts", samples=2)
    assert (plan["source_rows"], plan["adds"], plan["changes"], plan["removes"]) == (QUICKSTART_ROWS, QUICKSTART_ROWS, 0, 0)
    assert len(plan["samples"]["adds"]) == 2
    assert {"email", "firstname", "hubspotscore"} <= plan["samples"]["adds"][0].keys()
    assert emulator.stats()["requests"] == 0, "a plan sends nothing"
    run = engine.run(engine.trigger(1))
    assert run["records_updated"] == QUICKSTART_ROWS, "a plan changes no state"
    again = engine.plan(1)
    assert (again["adds"], again["changes"], again["unchanged"]) == (0, 0, QUICKSTART_ROWS)


def test_cancel_a_queued_run(engine: sluicegate.Engine, emulator: EmulatorProcess) -> None:
    run_id = engine.trigger(1)
    canceled = engine.cancel(run_id)
    assert canceled["status"] == "failed" and canceled["canceled"] is True
    assert engine.run(run_id)["canceled"] is True, "running a canceled run does nothing"
    assert emulator.stats()["requests"] == 0
    with pytest.raises(sluicegate.RunStateError, match="nothing to cancel"):
        engine.cancel(run_id)
