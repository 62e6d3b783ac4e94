"""The provider metadata Airflow discovers through the `apache_airflow_provider` entry point."""

from __future__ import annotations

import importlib
import json
from importlib import metadata
from pathlib import Path

import pytest

from sluicegate.airflow.get_provider_info import get_provider_info

pytestmark = pytest.mark.airflow


def test_provider_info_is_valid_for_airflow() -> None:
    airflow = pytest.importorskip("airflow", reason="apache-airflow is not installed")
    jsonschema = pytest.importorskip("jsonschema")
    schema_file = Path(airflow.__file__).parent / "provider_info.schema.json"
    schema = json.loads(schema_file.read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    assert info["package-name"] == "sluicegate"
    assert info["versions"] and all(isinstance(v, str) for v in info["versions"])


def test_every_referenced_module_and_hook_imports() -> None:
    pytest.importorskip("airflow", reason="apache-airflow is not installed")
    info = get_provider_info()
    for section in ("hooks", "operators", "sensors"):
        for entry in info[section]:
            for module in entry["python-modules"]:
                importlib.import_module(module)
    types = {}
    for conn in info["connection-types"]:
        module_name, _, class_name = conn["hook-class-name"].rpartition(".")
        hook = getattr(importlib.import_module(module_name), class_name)
        assert hook.conn_type == conn["connection-type"]
        types[hook.conn_type] = hook.default_conn_name
        assert hook.hook_name == conn["hook-name"]
        # The declarative form (Airflow 3.2+) and the hook's own (Airflow 2.x) agree.
        behaviour = hook.get_ui_field_behaviour()
        assert behaviour["hidden_fields"] == conn["ui-field-behaviour"]["hidden-fields"]
        for field, label in conn["ui-field-behaviour"]["relabeling"].items():
            assert behaviour["relabeling"][field] == label
    # Ours, and the Census drop-in's (airflow-provider-census's type, fields and default id).
    assert types == {"sluicegate": "sluicegate_default", "census": "census_default"}
    (sluicegate,) = [c for c in info["connection-types"] if c["connection-type"] == "sluicegate"]
    assert set(sluicegate["conn-fields"]) == {"project", "state"}
    (census,) = [c for c in info["connection-types"] if c["connection-type"] == "census"]
    assert census["ui-field-behaviour"]["relabeling"] == {
        "host": "Activations API Host",
        "password": "Activations API Token",
    }
    assert set(census["ui-field-behaviour"]["hidden-fields"]) == {"login", "port", "schema", "extra"}
    for link in info["extra-links"]:
        module_name, _, class_name = link.rpartition(".")
        assert getattr(importlib.import_module(module_name), class_name)().name == "Sync run"


def _installed() -> bool:
    entry_points = metadata.entry_points(group="apache_airflow_provider")
    return any(ep.value.startswith("sluicegate.") for ep in entry_points)


def test_airflow_discovers_the_provider() -> None:
    """Only meaningful once the package is installed (its entry point registered)."""
    pytest.importorskip("airflow", reason="apache-airflow is not installed")
    if not _installed():
        pytest.skip("sluicegate is not installed, so its entry point is not registered")
    try:  # Airflow 3: hooks are resolved by the Task SDK's own manager
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime as Manager
    except ImportError:
        from airflow.providers_manager import ProvidersManager as Manager  # type: ignore[assignment]

    manager = Manager()
    assert "sluicegate" in manager.providers
    hook_info = manager.hooks["sluicegate"]
    assert hook_info is not None
    assert hook_info.hook_class_name == "sluicegate.airflow.hooks.sluicegate.SluicegateHook"
    assert hook_info.connection_id_attribute_name == "sluicegate_conn_id"


def test_connection_form_reaches_the_ui() -> None:
    pytest.importorskip("airflow", reason="apache-airflow is not installed")
    if not _installed():
        pytest.skip("sluicegate is not installed, so its entry point is not registered")
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    if not hasattr(manager, "iter_connection_type_hook_ui_metadata"):
        pytest.skip("declarative connection forms: exists only on another Airflow line (3.2+)")
    (ui,) = [
        m
        for m in manager.iter_connection_type_hook_ui_metadata()
        if m.connection_type == "sluicegate"
    ]
    assert ui.hook_name == "Sluicegate"
    assert ui.field_behaviour is not None
    assert ui.field_behaviour["relabeling"] == {
        "host": "Server URL (remote mode)",
        "password": "API token, or state store password",
    }
    widgets = {
        info.field_name
        for name, info in manager.connection_form_widgets.items()
        if name.startswith("extra__sluicegate__")
    }
    assert widgets == {"project", "state"}


def test_a_connection_builds_our_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("airflow", reason="apache-airflow is not installed")
    if not _installed():
        pytest.skip("sluicegate is not installed, so its entry point is not registered")
    from sluicegate.airflow.hooks.sluicegate import SluicegateHook

    conn = json.dumps({"conn_type": "sluicegate", "extra": {"project": "/p.yml"}})
    monkeypatch.setenv("AIRFLOW_CONN_SG_PROVIDER_TEST", conn)
    try:
        from airflow.sdk import Connection

        hook = Connection.get("sg_provider_test").get_hook()
    except ImportError:  # Airflow 2.x
        from airflow.models import Connection as ConnectionModel

        hook = ConnectionModel.get_connection_from_secrets("sg_provider_test").get_hook()
    assert isinstance(hook, SluicegateHook)
    assert hook.sluicegate_conn_id == "sg_provider_test"
    assert hook.get_settings().project == "/p.yml"
