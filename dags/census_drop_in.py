"""A Census (Fivetran Activations) DAG, unchanged but for its import line, running on sluicegate.

Before::

    from airflow_provider_census.operators.census import CensusOperator
    from airflow_provider_census.sensors.census import CensusSensor

After: the import below. The connection ``census_default`` decides who runs the sync: host
``app.getcensus.com`` and a workspace token (Fivetran Activations, as before), or host
``http://sluicegate:8080`` and a ``sluicegate serve`` API token (sluicegate, same API).

``SLUICEGATE_POKE_INTERVAL`` (default 60, the Census sensor's default) sets the sensor's checks.
"""

from __future__ import annotations

import os
from datetime import datetime

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.x
    from airflow import DAG  # type: ignore[no-redef,attr-defined]

from sluicegate.airflow.census import CensusOperator, CensusSensor

with DAG(
    dag_id="census_drop_in",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["census", "sluicegate", "example"],
    doc_md=__doc__,
) as dag:
    sync = CensusOperator(sync_id=1, census_conn_id="census_default", task_id="census_sync")
    sensor = CensusSensor(
        sync_run_id="{{ ti.xcom_pull(task_ids='census_sync') }}",
        census_conn_id="census_default",
        task_id="census_sensor",
        poke_interval=float(os.environ.get("SLUICEGATE_POKE_INTERVAL", "60")),
    )

    sync >> sensor
