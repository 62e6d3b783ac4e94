"""Build ``pub_hubspot_contacts`` with dbt, sync it to HubSpot contacts, confirm the run.

``dbt_build`` runs ``dbt build`` of the model (and its seed) on Postgres; ``sync_hubspot_contacts``
triggers the sluicegate sync ``hubspot_contacts``, which reads the table dbt built (found through
dbt's ``target/manifest.json``), diffs it against what HubSpot already acknowledged and sends the
difference; ``wait_for_sync`` confirms the run. Where the sync runs depends on the connection:
inside the task (in-task mode) or on a ``sluicegate serve`` / Fivetran Activations (remote mode).

The tasks declare Airflow assets (datasets on Airflow 2): ``dbt_build`` updates the table,
``wait_for_sync`` updates the HubSpot contacts object, so a DAG scheduled on
``HUBSPOT_CONTACTS`` runs after each completed sync: ``sluicegate_after_hubspot_contacts`` below
is one.

Configuration, all outside this file:

* Airflow connection ``sluicegate_default`` (type ``sluicegate``): in-task, extra
  ``{"project": "/path/to/sluicegate.yml"}``; remote, host ``http://sluicegate:8080`` and the API
  token as password. The project's sync ``hubspot_contacts`` reads ``dbt_model:
  pub_hubspot_contacts``.
* ``SLUICEGATE_DBT``: the dbt executable (default ``dbt``); ``SLUICEGATE_DBT_PROJECT_DIR``: the dbt
  project (default: ``dbt_project`` next to this file), also its profiles directory.
* ``SG_DBT_HOST``, ``SG_DBT_PORT``, ``SG_DBT_DBNAME``, ``SG_DBT_SCHEMA`` (and ``SG_DBT_USER``,
  ``SG_DBT_PASSWORD``): the Postgres the example profile builds into; they also name the table's
  asset.
* ``SLUICEGATE_POKE_INTERVAL``: seconds between the sensor's checks (default 30).

Parsing this file does no work: it reads environment variables and builds tasks.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

try:
    from airflow.sdk import DAG, Asset
except ImportError:  # Airflow 2.x: assets are called datasets
    from airflow import DAG  # type: ignore[no-redef,attr-defined]
    from airflow.datasets import Dataset as Asset  # type: ignore[no-redef,assignment]
try:
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.providers.standard.operators.empty import EmptyOperator
except ImportError:  # Airflow 2.x without the standard provider
    from airflow.operators.bash import BashOperator  # type: ignore[no-redef]
    from airflow.operators.empty import EmptyOperator  # type: ignore[no-redef]

from sluicegate.airflow.operators.sluicegate import SyncOperator
from sluicegate.airflow.sensors.sluicegate import SyncSensor

POKE_INTERVAL = float(os.environ.get("SLUICEGATE_POKE_INTERVAL", "30"))
DBT = os.environ.get("SLUICEGATE_DBT", "dbt")
DBT_PROJECT_DIR = os.environ.get(
    "SLUICEGATE_DBT_PROJECT_DIR", str(Path(__file__).resolve().parent / "dbt_project")
)

#: The table dbt builds (OpenLineage's naming: postgres://host:port/database/schema/table).
PUB_HUBSPOT_CONTACTS = Asset(
    "postgres://{host}:{port}/{db}/{schema}/pub_hubspot_contacts".format(
        host=os.environ.get("SG_DBT_HOST", "localhost"),
        port=os.environ.get("SG_DBT_PORT", "5432"),
        db=os.environ.get("SG_DBT_DBNAME", "analytics"),
        schema=os.environ.get("SG_DBT_SCHEMA", "public"),
    )
)
#: The destination object the sync writes.
HUBSPOT_CONTACTS = Asset("hubspot://crm/contacts")

with DAG(
    dag_id="sluicegate_dbt_then_sync",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["sluicegate", "dbt", "example"],
    doc_md=__doc__,
) as dag:
    dbt_build = BashOperator(
        task_id="dbt_build",
        bash_command=(
            '"$SLUICEGATE_DBT" build --select raw_contacts pub_hubspot_contacts '
            '--project-dir "$DBT_PROJECT_DIR" --profiles-dir "$DBT_PROJECT_DIR"'
        ),
        env={
            "SLUICEGATE_DBT": DBT,
            "DBT_PROJECT_DIR": DBT_PROJECT_DIR,
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        },
        append_env=True,
        outlets=[PUB_HUBSPOT_CONTACTS],
    )
    sync_hubspot_contacts = SyncOperator(
        task_id="sync_hubspot_contacts",
        sync_name="hubspot_contacts",
        sluicegate_conn_id="sluicegate_default",
        poll_interval=POKE_INTERVAL,
    )
    wait_for_sync = SyncSensor(
        task_id="wait_for_sync",
        sync_run_id="{{ ti.xcom_pull(task_ids='sync_hubspot_contacts') }}",
        sluicegate_conn_id="sluicegate_default",
        poke_interval=POKE_INTERVAL,
        outlets=[HUBSPOT_CONTACTS],
    )

    dbt_build >> sync_hubspot_contacts >> wait_for_sync


with DAG(
    dag_id="sluicegate_after_hubspot_contacts",
    schedule=[HUBSPOT_CONTACTS],
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["sluicegate", "example"],
    doc_md="Runs after every completed sync of HubSpot contacts (scheduled on its asset).",
) as after_sync:
    EmptyOperator(task_id="contacts_are_in_hubspot")
