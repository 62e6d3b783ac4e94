"""DAG parse time added by sluicegate, against bare Airflow.

Goal: parsing a DAG that uses sluicegate's operators costs at most 20 ms more than parsing the
same DAG with Airflow's own operators, on a warm Airflow (the DAG processor has Airflow imported
already; what it pays per DAG file is the file's own imports and task construction).

For each DAG file in dags/ (or the files given), in a fresh interpreter per sample:

1. import Airflow and what a bare DAG file uses (DAG, BashOperator, EmptyOperator, Asset);
2. time the parse of a "bare twin": the same DAG id, tasks and dependencies, every task an
   EmptyOperator (no sluicegate import), after one untimed parse of it (Airflow's own lazy
   imports on first DAG construction are not charged to either side);
3. time the parse of the real DAG file;
4. check that `sluicegate._core` was not imported.

The added cost is (3) - (2): the first parse pays sluicegate's module imports, which Airflow's
DAG processor pays once per process for all files. The median of N samples is printed, with a
second-parse figure (modules cached) alongside. Exits 1 when a median is over the goal.

Usage (from the repository root, in the environment Airflow is installed in):
    python bench/dag_parse.py [--samples 9] [--goal-ms 20] [DAG_FILE ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SAMPLE = textwrap.dedent(
    r"""
    import importlib.util, json, sys, time

    try:
        from airflow.sdk import DAG, Asset
    except ImportError:
        from airflow import DAG
        from airflow.datasets import Dataset as Asset
    try:
        from airflow.providers.standard.operators.bash import BashOperator
        from airflow.providers.standard.operators.empty import EmptyOperator
    except ImportError:
        from airflow.operators.bash import BashOperator
        from airflow.operators.empty import EmptyOperator

    path = sys.argv[1]

    def load(name, file):
        spec = importlib.util.spec_from_file_location(name, file)
        module = importlib.util.module_from_spec(spec)
        started = time.perf_counter()
        spec.loader.exec_module(module)
        return module, (time.perf_counter() - started) * 1000

    # The bare twin: the real DAG's shape with EmptyOperators, written to a temp file.
    import tempfile, os
    real_shape = json.loads(sys.argv[2])
    lines = ["from datetime import datetime",
             "try:\n    from airflow.sdk import DAG\nexcept ImportError:\n    from airflow import DAG",
             "try:\n    from airflow.providers.standard.operators.empty import EmptyOperator\n"
             "except ImportError:\n    from airflow.operators.empty import EmptyOperator"]
    for i, (dag_id, tasks, edges) in enumerate(real_shape):
        lines.append(f"with DAG(dag_id={dag_id!r}, schedule=None, start_date=datetime(2025, 1, 1)) as dag{i}:")
        lines.append(f"    t = {{n: EmptyOperator(task_id=n) for n in {tasks!r}}}")
        for a, b in edges:
            lines.append(f"    t[{a!r}] >> t[{b!r}]")
        if not tasks:
            lines.append("    pass")
    fd, twin = tempfile.mkstemp(suffix=".py")
    os.write(fd, "\n".join(lines).encode()); os.close(fd)

    load("warm_up", twin)  # first DAG construction costs (lazy Airflow imports) paid here
    _, bare = load("bare_twin", twin)
    _, first = load("real_dag", path)
    _, again = load("real_dag_again", path)
    os.unlink(twin)
    print(json.dumps({"bare": bare, "first": first, "again": again,
                      "core": "sluicegate._core" in sys.modules}))
    """
)

SHAPE = textwrap.dedent(
    r"""
    import importlib.util, json, sys
    spec = importlib.util.spec_from_file_location("shape", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        from airflow.sdk import DAG
    except ImportError:
        from airflow import DAG
    shape = []
    for value in vars(module).values():
        if isinstance(value, DAG):
            edges = [(t.task_id, d) for t in value.tasks for d in sorted(t.downstream_task_ids)]
            shape.append((value.dag_id, [t.task_id for t in value.tasks], edges))
    print(json.dumps(shape))
    """
)


def run(code: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    if proc.returncode != 0:
        sys.exit(f"sample failed:\n{proc.stderr[-3000:]}")
    return proc.stdout.strip().splitlines()[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--samples", type=int, default=9)
    parser.add_argument("--goal-ms", type=float, default=20.0)
    args = parser.parse_args()
    files = args.files or sorted((REPO / "dags").glob("*.py"))
    over = False
    print(f"{'DAG file':<22} {'bare twin':>10} {'sluicegate':>11} {'added':>8} {'2nd parse':>10}")
    for path in files:
        shape = run(SHAPE, str(path))
        samples = [json.loads(run(SAMPLE, str(path), shape)) for _ in range(args.samples)]
        if any(s["core"] for s in samples):
            print(f"{path.name}: imports sluicegate._core while parsing", file=sys.stderr)
            over = True
        bare = statistics.median(s["bare"] for s in samples)
        first = statistics.median(s["first"] for s in samples)
        again = statistics.median(s["again"] for s in samples)
        added = first - bare
        over |= added > args.goal_ms
        flag = "" if added <= args.goal_ms else f"  > goal {args.goal_ms:g} ms"
        print(f"{path.name:<22} {bare:>8.1f}ms {first:>9.1f}ms {added:>6.1f}ms {again:>8.1f}ms{flag}")
    print(f"(medians of {args.samples} fresh interpreters; goal: added <= {args.goal_ms:g} ms)")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
