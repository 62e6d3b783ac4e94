"""A sync run by a sluicegate server, waited for without holding a worker slot.

``sync_hubspot_contacts`` triggers the sync on the server the connection ``sluicegate_remote``
points at (host ``http://sluicegate:8080``, password: the server's API token), then defers: the
wait moves to Airflow's triggerer, which polls the run over HTTP, and the task resumes when the
run ends (a long, rate-limited sync costs no worker slot meanwhile). Past ``timeout`` the run
is canceled and the task fails. The task updates the ``HUBSPOT_CONTACTS`` asset.

``SLUICEGATE_POKE_INTERVAL`` (default 30): seconds between the triggerer's reads of the run.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

try:
    from airflow.sdk import DAG, Asset
except ImportError:  # Airflow 2.x: assets are called datasets
    from airflow import DAG  # type: ignore[no-redef,attr-defined]
    from airflow.datasets import Dataset as Asset  # type: ignore[no-redef,assignment]

from sluicegate.airflow.operators.sluicegate import SyncOperator

HUBSPOT_CONTACTS = Asset("hubspot://crm/contacts")

with DAG(
    dag_id="sluicegate_deferrable_sync",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["sluicegate", "example"],
    doc_md=__doc__,
) as dag:
    SyncOperator(
        task_id="sync_hubspot_contacts",
        sync_name="hubspot_contacts",
        sluicegate_conn_id="sluicegate_remote",
        deferrable=True,
        poll_interval=float(os.environ.get("SLUICEGATE_POKE_INTERVAL", "30")),
        timeout=timedelta(hours=6),
        outlets=[HUBSPOT_CONTACTS],
    )
