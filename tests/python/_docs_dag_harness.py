"""Checks Airflow code from the docs, for tests/python/test_docs_commands.py, in one interpreter
per page (importing Airflow costs seconds):

    python _docs_dag_harness.py TASKS.json

TASKS.json is a list of tasks; the answer, on stdout, is one result per task, as JSON:

* `{"kind": "snippet", "path": ..., "where": ...}`: run the Python snippet inside a DAG. The
  snippets show operators on their own, chained after `dbt_build` (the task that builds the
  table): that task is an `EmptyOperator` here. Constructing the operators checks their imports
  and arguments; nothing is executed. Result: `null`.
* `{"kind": "connection", "conn_id": ..., "var": ..., "value": ...}`: set the environment variable
  `var` to the connection JSON `value` and resolve it with the sluicegate hook, as a task would.
  Result: the mode and the project and state store (in-task) or the API base (remote, Census).

A failing task gives `{"error": "<traceback>"}` and the others still run.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.x
    from airflow import DAG  # type: ignore[no-redef,attr-defined]
try:
    from airflow.providers.standard.operators.empty import EmptyOperator
except ImportError:  # Airflow 2.x
    from airflow.operators.empty import EmptyOperator  # type: ignore[no-redef]


def snippet(n: int, path: str, where: str) -> None:
    code = compile(Path(path).read_text(), where, "exec")
    with DAG(dag_id=f"docs_snippet_{n}", schedule=None, start_date=datetime(2026, 1, 1)):
        namespace = {"__name__": "docs_snippet", "dbt_build": EmptyOperator(task_id="dbt_build")}
        exec(code, namespace)


def connection(conn_id: str, var: str, value: str) -> dict[str, Any]:
    from sluicegate.airflow.hooks.sluicegate import SluicegateHook

    os.environ[var] = value
    try:
        hook = SluicegateHook(sluicegate_conn_id=conn_id)
        mode = hook.get_mode()
        if mode == "embedded":
            s = hook.get_settings()
            return {"mode": mode, "project": s.project, "state": s.state}
        return {"mode": mode, "base": hook.get_client().base}
    finally:
        del os.environ[var]


def main() -> None:
    tasks = json.loads(Path(sys.argv[1]).read_text())
    results: list[Any] = []
    for n, task in enumerate(tasks):
        try:
            if task["kind"] == "snippet":
                snippet(n, task["path"], task["where"])
                results.append(None)
            else:
                results.append(connection(task["conn_id"], task["var"], task["value"]))
        except Exception:
            results.append({"error": traceback.format_exc()})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
