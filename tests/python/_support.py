"""Helpers for the pytest suite: the `sluicegate` CLI, the webhook emulator, quickstart projects.

Everything here drives real parts (the installed console script, the emulator process, SQLite
files); nothing stands in for the engine.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
MODEL = "pub_hubspot_contacts"
QUICKSTART_ROWS = 10_000


def core_available() -> bool:
    """True when the compiled extension is importable (a wheel or `maturin develop` build)."""
    try:
        return find_spec("sluicegate._core") is not None
    except ImportError:
        return False


def find_cli() -> str | None:
    """The `sluicegate` console script of this interpreter's environment, else the one on PATH."""
    here = Path(sys.executable).parent / ("sluicegate.exe" if os.name == "nt" else "sluicegate")
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which("sluicegate")


def run_cli(
    cli: str, *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [cli, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"`sluicegate {' '.join(args)}` exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


# --------------------------------------------------------------------------- emulator


class EmulatorClient:
    """HTTP client for the control endpoints of `sluicegate emulate webhook`."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
        return json.loads(raw) if raw.strip() else None

    def received(self, records: bool = True) -> dict[str, Any]:
        return self._call("GET", "/_emulator/received" + ("" if records else "?records=false"))

    def stats(self) -> dict[str, int]:
        return self.received(records=False)["stats"]

    def reset(self) -> None:
        self._call("POST", "/_emulator/reset", {})

    def set_faults(self, fail_rate: float, fail_status: int = 503, fail_message: str = "") -> None:
        self._call(
            "PUT",
            "/_emulator/faults",
            {"fail_rate": fail_rate, "fail_status": fail_status, "fail_message": fail_message},
        )

    def set_latency(self, latency_ms: int) -> None:
        """Answer every request after `latency_ms` (no failures): makes a run last."""
        self._call("PUT", "/_emulator/faults", {"fail_rate": 0.0, "latency_ms": latency_ms})

    def clear_faults(self) -> None:
        self.set_faults(0.0, 503, "")


class EmulatorProcess(EmulatorClient):
    """`sluicegate emulate webhook --port 0` as a child process.

    Its URL is the first line it prints on stdout.
    """

    def __init__(
        self, cli: str, log_path: Path, startup_timeout: float = 60, *extra_args: str
    ) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [cli, "emulate", "webhook", "--port", "0", *extra_args],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(lines,), daemon=True).start()
        try:
            first = lines.get(timeout=startup_timeout)
        except queue.Empty:
            self.stop()
            raise RuntimeError(
                f"emulator printed no URL within {startup_timeout}s; {self._tail()}"
            ) from None
        if first is None or not re.fullmatch(r"https?://\S+", first.strip()):
            self.stop()
            raise RuntimeError(
                f"emulator's first stdout line is not a URL: {first!r}; {self._tail()}"
            )
        super().__init__(first.strip())

    def _pump(self, lines: queue.Queue[str | None]) -> None:
        # Keep reading so a chatty emulator never blocks on a full pipe.
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            lines.put(line)
        lines.put(None)

    def _tail(self) -> str:
        # The child writes its stderr straight into the file; nothing is buffered on our side.
        return f"exit code {self.proc.poll()}, stderr: {self.log_path.read_text()[-2000:]!r}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


# --------------------------------------------------------------------------- quickstart project


@dataclass(frozen=True)
class Project:
    dir: Path

    @property
    def yml(self) -> Path:
        return self.dir / "sluicegate.yml"

    @property
    def warehouse(self) -> Path:
        return self.dir / "warehouse.db"


def quickstart(cli: str, target: Path) -> Project:
    run_cli(cli, "quickstart", str(target), "--no-demo")
    project = Project(target)
    for path in (project.yml, project.warehouse, target / "dags" / "sluicegate_quickstart.py"):
        assert path.is_file(), f"`sluicegate quickstart` did not write {path}"
    return project


def set_retry(yml: Path, max_attempts: int, initial_backoff: str) -> None:
    """Set `retry: {max_attempts, initial_backoff}` on a quickstart project's webhook destination.

    The destination is found by its `url:` line (the one reading SLUICEGATE_WEBHOOK_URL); the
    retry key is written as its sibling, replacing an existing `retry:` entry (flow or block).
    """
    lines = yml.read_text().splitlines()
    url_at = next((i for i, line in enumerate(lines) if "SLUICEGATE_WEBHOOK_URL" in line), None)
    if url_at is None or not lines[url_at].lstrip().startswith("url:"):
        raise AssertionError(f"no `url: ${{SLUICEGATE_WEBHOOK_URL...}}` line in {yml}")
    indent = len(lines[url_at]) - len(lines[url_at].lstrip())

    def indent_of(line: str) -> int:
        return len(line) - len(line.lstrip())

    # The destination mapping: lines around the url line at the same indentation.
    start = url_at
    while start > 0 and (not lines[start - 1].strip() or indent_of(lines[start - 1]) >= indent):
        start -= 1
    end = url_at + 1
    while end < len(lines) and (not lines[end].strip() or indent_of(lines[end]) >= indent):
        end += 1
    for i in range(start, end):
        if indent_of(lines[i]) == indent and lines[i].lstrip().startswith("retry:"):
            stop = i + 1
            while stop < end and (not lines[stop].strip() or indent_of(lines[stop]) > indent):
                stop += 1
            del lines[i:stop]
            if i < url_at:
                url_at -= stop - i
            break
    retry = (
        f"{' ' * indent}retry: {{max_attempts: {max_attempts}, initial_backoff: {initial_backoff}}}"
    )
    lines.insert(url_at + 1, retry)
    yml.write_text("\n".join(lines) + "\n")


def row_count(warehouse: Path, table: str = MODEL) -> int:
    with sqlite3.connect(warehouse) as db:
        return db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]


_NOT_PAYLOAD = re.compile(
    r"(^|_)(id|key|email|uuid|created|updated|modified|deleted|at)($|_)", re.I
)


def _is_text(declared_type: str) -> bool:
    kind = declared_type.upper()
    return kind == "" or any(word in kind for word in ("CHAR", "TEXT", "CLOB"))


def change_rows(warehouse: Path, n: int, table: str = MODEL) -> list[str]:
    """Edit `n` rows of the model in place, without touching keys; return the edited columns.

    Every text column that does not look like an identifier or a timestamp gets a suffix, so
    whatever subset of them the sync maps, each edited row has a new fingerprint.
    """
    with sqlite3.connect(warehouse) as db:
        info = db.execute(f'PRAGMA table_info("{table}")').fetchall()
        columns = [
            name
            for _cid, name, decl, _notnull, _default, pk in info
            if not pk and _is_text(decl) and not _NOT_PAYLOAD.search(name)
        ]
        if not columns:
            raise AssertionError(f"{table} has no text column to edit: {info}")
        assignments = ", ".join(f"\"{c}\" = coalesce(\"{c}\", '') || ' (edited)'" for c in columns)
        cur = db.execute(
            f'UPDATE "{table}" SET {assignments} '
            f'WHERE rowid IN (SELECT rowid FROM "{table}" ORDER BY rowid LIMIT ?)',
            (n,),
        )
        assert cur.rowcount == n, f"edited {cur.rowcount} rows, wanted {n}"
    return columns


def distinct_records(records: list[Any]) -> int:
    return len({json.dumps(r, sort_keys=True) for r in records})


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


# --------------------------------------------------------------------------- other child processes


class UrlProcess:
    """A `sluicegate` subcommand that prints its base URL as the first stdout line, then serves
    until terminated (`serve`, `emulate hubspot`). stderr goes to `log_path`."""

    def __init__(
        self,
        cli: str,
        args: list[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        startup_timeout: float = 60,
    ) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [cli, *args],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env={**os.environ, **(env or {})},
        )
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(lines,), daemon=True).start()
        try:
            first = lines.get(timeout=startup_timeout)
        except queue.Empty:
            self.stop()
            raise RuntimeError(f"`sluicegate {args[0]}` printed no URL; {self._tail()}") from None
        match = re.search(r"https?://\S+", first or "")
        if match is None:
            self.stop()
            raise RuntimeError(f"`sluicegate {args[0]}` printed {first!r} first; {self._tail()}")
        self.url = match.group(0).rstrip("/")

    def _pump(self, lines: queue.Queue[str | None]) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            lines.put(line)
        lines.put(None)

    def _tail(self) -> str:
        return f"exit code {self.proc.poll()}, stderr: {self.log_path.read_text()[-2000:]!r}"

    def get_json(self, path: str, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        req = urllib.request.Request(self.url + path, headers=headers)
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


SERVE_TOKEN = "secret-token:sluicegate-test-3f9c1a7e"


def start_serve(
    cli: str, project_yml: Path, log_path: Path, env: dict[str, str] | None = None
) -> UrlProcess:
    """`sluicegate serve` on a free port for the project, with token SERVE_TOKEN."""
    return UrlProcess(
        cli,
        ["serve", "--project", str(project_yml), "--listen", "127.0.0.1:0", "--workers", "2",
         "--poll", "200ms"],
        log_path,
        env={"SLUICEGATE_API_TOKEN": SERVE_TOKEN, **(env or {})},
    )  # fmt: skip


# --------------------------------------------------------------------------- dbt


DBT_REQUIREMENTS = REPO / "requirements" / "dbt.txt"


def ensure_dbt_venv() -> Path:
    """A virtual environment with the pinned dbt (requirements/dbt.txt), made or refreshed when
    the pins change: `SLUICEGATE_DBT_VENV`, default `.venv-dbt` in the repository."""
    import hashlib

    venv = Path(os.environ.get("SLUICEGATE_DBT_VENV") or REPO / ".venv-dbt")
    stamp = venv / ".requirements-sha256"
    want = hashlib.sha256(DBT_REQUIREMENTS.read_bytes()).hexdigest()
    if (venv / "bin" / "dbt").exists() and stamp.exists() and stamp.read_text().strip() == want:
        return venv
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", "-r", str(DBT_REQUIREMENTS)],
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise AssertionError(
            f"installing dbt into {venv} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    stamp.write_text(want + "\n")
    return venv


def dbt_env(pg_url: str, schema: str) -> dict[str, str]:
    """The SG_DBT_* variables the test and example dbt profiles read, for `pg_url` and `schema`."""
    import urllib.parse

    url = urllib.parse.urlsplit(pg_url)
    return {
        "SG_DBT_HOST": url.hostname or "127.0.0.1",
        "SG_DBT_PORT": str(url.port or 5432),
        "SG_DBT_USER": urllib.parse.unquote(url.username or "postgres"),
        "SG_DBT_PASSWORD": urllib.parse.unquote(url.password or ""),
        "SG_DBT_DBNAME": url.path.lstrip("/") or "postgres",
        "SG_DBT_SCHEMA": schema,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


def xcom(dag_run: Any, task_id: str, key: str) -> Any:
    """The one XCom `key` of `task_id` in a DAG run made by `dag.test()`, deserialized."""
    from airflow.utils.session import create_session

    import airflow

    if int(airflow.__version__.split(".")[0]) < 3:  # Airflow 2.x
        from airflow.models.xcom import XCom

        with create_session() as session:
            rows = XCom.get_many(
                run_id=dag_run.run_id,
                dag_ids=dag_run.dag_id,
                task_ids=task_id,
                key=key,
                session=session,
            ).all()
            assert len(rows) == 1, f"{len(rows)} XComs {key!r} of {task_id}"
            return rows[0].value  # deserialized when the row is loaded

    from airflow.models.xcom import XComModel

    query = XComModel.get_many(
        run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id, key=key
    )
    with create_session() as session:
        rows = list(session.scalars(query))
        assert len(rows) == 1, f"{len(rows)} XComs {key!r} of {task_id}"
        return XComModel.deserialize_value(rows[0])
