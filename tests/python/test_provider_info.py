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
    for conn in info["connection-types"]:
        module_name, _, class_name = conn["hook-class-name"].rpartition(".")
        hook = getattr(importlib.import_module(module_name), class_name)
        assert hook.conn_type == conn["connection-type"] == "sluicegate"
        assert hook.hook_name == conn["hook-name"]
        # The declarative form (Airflow 3.2+) and the hook's own (Airflow 2.x) agree.
        behaviour = hook.get_ui_field_behaviour()
        assert behaviour["hidden_fields"] == conn["ui-field-behaviour"]["hidden-fields"]
        for field, label in conn["ui-field-behaviour"]["relabeling"].items():
            assert behaviour["relabeling"][field] == label
        assert set(conn["conn-fields"]) == {"project", "state"}


def test_airflow_discovers_the_provider() -> None:
    """Only meaningful once the package is installed (its entry point registered)."""
    pytest.importorskip("airflow", reason="apache-airflow is not installed")
    entry_points = metadata.entry_points(group="apache_airflow_provider")
    if not any(ep.value.startswith("sluicegate.") for ep in entry_points):
        pytest.skip("sluicegate is not installed, so its entry point is not registered")
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "sluicegate" in manager.providers
    hook_info = manager.hooks["sluicegate"]
    assert hook_info is not None
    assert hook_info.hook_class_name == "sluicegate.airflow.hooks.sluicegate.SluicegateHook"
    assert hook_info.connection_id_attribute_name == "sluicegate_conn_id"
