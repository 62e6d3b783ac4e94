"""Runs a Python snippet from the docs inside a DAG, for tests/python/test_docs_commands.py.

    python _docs_dag_harness.py SNIPPET.py WHERE

The snippets show operators on their own, chained after `dbt_build` (the task that builds the
table): that task is an `EmptyOperator` here. Constructing the operators checks their imports
and arguments; nothing is executed.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.x
    from airflow import DAG  # type: ignore[no-redef,attr-defined]
try:
    from airflow.providers.standard.operators.empty import EmptyOperator
except ImportError:  # Airflow 2.x
    from airflow.operators.empty import EmptyOperator  # type: ignore[no-redef]


def main() -> None:
    path, where = sys.argv[1], sys.argv[2]
    code = compile(Path(path).read_text(), where, "exec")
    with DAG(dag_id="docs_snippet", schedule=None, start_date=datetime(2026, 1, 1)):
        namespace = {"__name__": "docs_snippet", "dbt_build": EmptyOperator(task_id="dbt_build")}
        exec(code, namespace)


if __name__ == "__main__":
    main()
