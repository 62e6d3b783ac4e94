"""The S8 baseline: a bare Airflow 3 DAG with one PythonOperator and nothing else imported,
the same shape as dags/example_sync.py without sluicegate."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG


def _noop() -> None:
    return None


with DAG(dag_id="bench_bare", schedule=None, start_date=datetime(2025, 1, 1), catchup=False) as dag:
    PythonOperator(task_id="noop", python_callable=_noop)
