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

#: Standard connection fields: which to hide, how to label the rest. The host decides the mode:
#: empty, the sync runs in the task (project + state store); ``http(s)://`` a sluicegate server
#: or Fivetran Activations, reached over its API with the password as token.
HIDDEN_FIELDS: list[str] = ["schema", "login", "port"]
RELABELING: dict[str, str] = {
    "host": "Server URL (remote mode)",
    "password": "API token, or state store password",
}
PLACEHOLDERS: dict[str, str] = {
    "host": "empty: run syncs in the task; http://sluicegate:8080 (sluicegate serve) or "
    "https://app.getcensus.com/api/v1 (Fivetran Activations)",
    "password": "remote: secret-token:...; in-task: only for a postgres:// state store",
    "extra": '{"project": "/opt/airflow/include/sluicegate/sluicegate.yml", '
    '"state": "postgres://sluicegate@db:5432/sluicegate"}',
}

#: The ``census`` connection type of ``sluicegate.airflow.census`` (the drop-in for
#: airflow-provider-census): the same fields as that package's.
CENSUS_CONN_TYPE = "census"
CENSUS_DEFAULT_CONN_ID = "census_default"
CENSUS_HOOK_CLASS_NAME = "sluicegate.airflow.hooks.census.CensusHook"
CENSUS_HOOK_NAME = "Fivetran Activations (Census)"
CENSUS_HIDDEN_FIELDS: list[str] = ["login", "port", "schema", "extra"]
CENSUS_RELABELING: dict[str, str] = {
    "host": "Activations API Host",
    "password": "Activations API Token",
}
CENSUS_PLACEHOLDERS: dict[str, str] = {
    "host": "app.getcensus.com (app-eu.getcensus.com for EU workspaces; "
    "http://sluicegate:8080 for a sluicegate server)",
    "password": "secret-token:workspace-token",
}

#: The operator's extra link ("Sync run": the run's page).
EXTRA_LINKS: list[str] = ["sluicegate.airflow.links.SyncRunLink"]


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
                "python-modules": ["sluicegate.airflow.hooks.sluicegate", "sluicegate.airflow.hooks.census"],
            }
        ],
        "operators": [
            {
                "integration-name": "Sluicegate",
                "python-modules": [
                    "sluicegate.airflow.operators.sluicegate",
                    "sluicegate.airflow.census",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": "Sluicegate",
                "python-modules": ["sluicegate.airflow.sensors.sluicegate", "sluicegate.airflow.census"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Sluicegate",
                "python-modules": [
                    "sluicegate.airflow.triggers.sluicegate",
                    "sluicegate.airflow.triggers.census",
                ],
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
            },
            {
                "connection-type": CENSUS_CONN_TYPE,
                "hook-class-name": CENSUS_HOOK_CLASS_NAME,
                "hook-name": CENSUS_HOOK_NAME,
                "ui-field-behaviour": {
                    "hidden-fields": CENSUS_HIDDEN_FIELDS,
                    "relabeling": CENSUS_RELABELING,
                    "placeholders": CENSUS_PLACEHOLDERS,
                },
            },
        ],
        "extra-links": EXTRA_LINKS,
    }
