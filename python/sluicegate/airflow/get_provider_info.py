"""Provider metadata for Airflow's ``ProvidersManager``.

Registered through the ``apache_airflow_provider`` entry point in ``pyproject.toml``. Airflow
calls :func:`get_provider_info` while it discovers providers (webserver, scheduler, CLI), so this
module imports neither Airflow nor the compiled engine.

The connection form is described here declaratively (``conn-fields`` and
``ui-field-behaviour``), which is how Airflow 3.2+ builds the form without importing the hook.
Airflow 2.x asks the hook instead (``SluicegateHook.get_ui_field_behaviour``), which returns the
same labels from the constants below.
"""

from __future__ import annotations

from typing import Any

HOOK_CLASS_NAME = "sluicegate.airflow.hooks.sluicegate.SluicegateHook"
CONN_TYPE = "sluicegate"
HOOK_NAME = "Sluicegate"

#: Connection fields stored in the connection's extra JSON.
CONN_FIELDS: dict[str, dict[str, Any]] = {
    "project": {
        "label": "Project file",
        "description": "Path of sluicegate.yml as seen by the Airflow workers. "
        "Falls back to the SLUICEGATE_PROJECT environment variable.",
        "schema": {"type": ["string", "null"]},
    },
    "state": {
        "label": "State store URL",
        "description": "sqlite:////abs/path/state.db or postgres://user@host:5432/db "
        "(put the password in the Password field, not in the URL). Empty: the SLUICEGATE_STATE "
        "environment variable, else sluicegate_state.db next to the project file.",
        "schema": {"type": ["string", "null"]},
    },
}

#: Standard connection fields: which to hide, how to label the rest.
HIDDEN_FIELDS: list[str] = ["host", "schema", "login", "port"]
RELABELING: dict[str, str] = {"password": "State store password"}
PLACEHOLDERS: dict[str, str] = {
    "password": "only for a postgres:// state store",
    "extra": '{"project": "/opt/airflow/include/sluicegate/sluicegate.yml", '
    '"state": "postgres://sluicegate@db:5432/sluicegate"}',
}


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("sluicegate")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def get_provider_info() -> dict[str, Any]:
    """Return the provider description Airflow reads (see ``provider_info.schema.json``)."""
    return {
        "package-name": "sluicegate",
        "name": "Sluicegate",
        "description": "Self-hosted reverse ETL: sync warehouse tables (dbt models) to SaaS tools "
        "from Airflow tasks.",
        "versions": [_version()],
        "integrations": [
            {
                "integration-name": "Sluicegate",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Sluicegate",
                "python-modules": ["sluicegate.airflow.hooks.sluicegate"],
            }
        ],
        "operators": [
            {
                "integration-name": "Sluicegate",
                "python-modules": ["sluicegate.airflow.operators.sluicegate"],
            }
        ],
        "sensors": [
            {
                "integration-name": "Sluicegate",
                "python-modules": ["sluicegate.airflow.sensors.sluicegate"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Sluicegate",
                "python-modules": ["sluicegate.airflow.triggers.sluicegate"],
            }
        ],
        "connection-types": [
            {
                "connection-type": CONN_TYPE,
                "hook-class-name": HOOK_CLASS_NAME,
                "hook-name": HOOK_NAME,
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": {
                    "hidden-fields": HIDDEN_FIELDS,
                    "relabeling": RELABELING,
                    "placeholders": PLACEHOLDERS,
                },
            }
        ],
    }
