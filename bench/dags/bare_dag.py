"""The S8 baseline: a bare Airflow 3 DAG of the same shape as dags/example_sync.py (two tasks
from operators defined here on airflow.sdk's BaseOperator), with no provider imported."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, BaseOperator


class NoopOperator(BaseOperator):
    def execute(self, context):  # noqa: ARG002
        return None


with DAG(dag_id="bench_bare", schedule=None, start_date=datetime(2025, 1, 1), catchup=False, tags=["bench"]) as dag:
    NoopOperator(task_id="first") >> NoopOperator(task_id="second")
