"""Sync the ``pub_hubspot_contacts`` model to HubSpot, then confirm the run.

``sync_hubspot_contacts`` triggers sync 1 and runs it inside the task: rows are read from the
warehouse, diffed against what the destination already acknowledged, and only the difference
is sent. ``wait_for_sync`` then confirms the run from the state store; on its own, the same
sensor can wait for a run triggered elsewhere (the CLI, another DAG, a sluicegate server).

In a real pipeline the sync runs right after the task that builds the model, e.g.
``dbt_build >> sync_hubspot_contacts >> wait_for_sync``.

Configuration, all outside this file:

* Airflow connection ``sluicegate_default`` (type ``sluicegate``), extra
  ``{"project": "/path/to/sluicegate.yml"}`` and optionally ``"state"`` (state store URL);
  without the connection, the ``SLUICEGATE_PROJECT`` / ``SLUICEGATE_STATE`` env vars are used.
* ``SLUICEGATE_POKE_INTERVAL``: seconds between the sensor's checks (default 30).

Parsing this file does no work: it reads one environment variable and builds two tasks.
"""

from __future__ import annotations

import os
from datetime import datetime

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.x
    from airflow import DAG  # type: ignore[no-redef,attr-defined]

from sluicegate.airflow.operators.sluicegate import SyncOperator
from sluicegate.airflow.sensors.sluicegate import SyncSensor

POKE_INTERVAL = float(os.environ.get("SLUICEGATE_POKE_INTERVAL", "30"))

with DAG(
    dag_id="sluicegate_example_sync",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["sluicegate", "example"],
    doc_md=__doc__,
) as dag:
    sync_hubspot_contacts = SyncOperator(
        task_id="sync_hubspot_contacts",
        sync_id=1,
        sluicegate_conn_id="sluicegate_default",
    )
    wait_for_sync = SyncSensor(
        task_id="wait_for_sync",
        sync_run_id="{{ ti.xcom_pull(task_ids='sync_hubspot_contacts') }}",
        sluicegate_conn_id="sluicegate_default",
        poke_interval=POKE_INTERVAL,
    )

    sync_hubspot_contacts >> wait_for_sync
