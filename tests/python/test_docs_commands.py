"""Every command in README.md and docs/*.md is run, or is on a short allow-list with a check.

What counts as a command: each line (with its continuation lines) of a fenced ```sh, ```bash or
```shell block, and each `$ ` line of a ```console block. Each page is walked top to bottom in a
scratch directory of its own, the way a reader would type it: one shell session, so that `cd`,
`export` and `unset` carry over to the next command (each command runs in `bash -c`; the
working directory and environment it leaves are taken over). The test fails on the first command
that exits non-zero or prints something else than the page shows.

How a command is exercised (see `classify`):

* `sluicegate emulate …` and `sluicegate serve …` serve until stopped, so they are started in the
  background (as "in another terminal"), must print their URL first and answer HTTP
  (`/healthz` for serve, and `GET /api/v1/syncs` with the token when one is exported); they are
  stopped when the page ends.
* Other commands of the programs in `RUNNABLE` run for real, and in a ```console block their
  output must match the lines shown: `…` on a line of its own stands for any number of lines,
  within a line for any text (the doc writes `…` where a value varies from run to run, such as
  a port picked at random); a timestamp matches any timestamp and a run of spaces any run of
  spaces. Everything else, numbers included, must match exactly.
* `export AIRFLOW_CONN_…=` (also in ```json and ```dotenv blocks): Airflow reads the connection
  and the sluicegate hook resolves it to the mode, project, state store or API the JSON names.
* Commands in `ALLOWED` are not run (each says why); a cheap check replaces them.
* Anything else fails the test: a new kind of command in the docs must be taught to this test.

Python blocks: one that follows `<!-- test: file PATH -->` is written to PATH (a later command
uses it). One that imports Airflow or `sluicegate.airflow` runs inside a `DAG` context, with
`dbt_build` (the task the snippets chain after) defined as an `EmptyOperator`, so imports and
operator arguments are checked. One that imports `sluicegate` runs in the page's project. The
checks that need Airflow (snippets, connections) run together in one interpreter at the end of
the page (tests/python/_docs_dag_harness.py), as importing Airflow takes seconds.

What the test substitutes, and why (nothing else is changed):

* ports of `--port N` / `--listen HOST:N` become free ports (here and wherever `:N` appears later
  on the page), so the test never collides with a server on the machine;
* `RUN_ID` becomes a real run id (for `cancel`, a queued run made for it); `DIR` a new directory;
* the value of `--state postgres://…` becomes a fresh database on the test Postgres
  (`SLUICEGATE_TEST_PG_URL`), since the documented host does not exist here;
* README's project file is written out with `base_url:` pointing at a HubSpot emulator started
  by the test (with the token in `HUBSPOT_TOKEN` and a SQLite `warehouse.db` beside it), and the
  pages other than getting-started.md start in a copy of that project.

A page that needs something the machine lacks (Airflow, the test Postgres, the `sqlite3` shell)
skips with the reason; under SLUICEGATE_REQUIRE_ALL (scripts/test.sh) a skip is a failure.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import quote

import pytest

from _support import REPO

pytestmark = pytest.mark.core

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_LANGUAGES = {"sh", "bash", "shell", "console"}
VENV_BIN = Path(sys.executable).parent
HUBSPOT_TOKEN = "pat-na1-docs-test-token"
COMMAND_TIMEOUT = 600


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


# --------------------------------------------------------------------------- reading the pages


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence
    language: str
    text: str
    directive: str | None  # `<!-- test: … -->` on the line before the fence

    @property
    def where(self) -> str:
        return f"{rel(self.page)}:{self.line}"


@dataclass
class Command:
    block: Block
    line: int
    text: str
    expected: list[str] | None = None  # the output a ```console block shows

    @property
    def where(self) -> str:
        return f"{rel(self.block.page)}:{self.line}"


_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
_DIRECTIVE = re.compile(r"^\s*<!--\s*test:\s*(.*?)\s*-->\s*$")


def blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, language = m.group(1), m.group(2), m.group(3).lower()
        prev = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        d = _DIRECTIVE.match(prev)
        body = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        out.append(Block(page, i + 1, language, "\n".join(body), d.group(1) if d else None))
        i = j + 1
    return out


def _complete(text: str) -> bool:
    if text.rstrip().endswith("\\"):
        return False
    try:
        shlex.split(text, comments=True)
    except ValueError:  # an open quote: the command goes on on the next line
        return False
    return True


def commands(block: Block) -> list[Command]:
    lines = block.text.splitlines()
    out: list[Command] = []
    if block.language == "console":
        i = 0
        while i < len(lines):
            if not lines[i].startswith("$ "):
                i += 1
                continue
            start, text = i, lines[i][2:]
            while not _complete(text) and i + 1 < len(lines):
                i += 1
                text += "\n" + lines[i]
            i += 1
            expected = []
            while i < len(lines) and not lines[i].startswith("$ "):
                expected.append(lines[i])
                i += 1
            out.append(Command(block, block.line + 1 + start, text, expected))
        return out
    i = 0
    while i < len(lines):
        if not lines[i].strip() or lines[i].lstrip().startswith("#"):
            i += 1
            continue
        start, text = i, lines[i]
        while not _complete(text) and i + 1 < len(lines):
            i += 1
            text += "\n" + lines[i]
        out.append(Command(block, block.line + 1 + start, text))
        i += 1
    return out


def words(text: str) -> list[str]:
    return shlex.split(text, comments=True)


def program(text: str) -> str:
    """The program a command runs (after `VAR=value` prefixes); `export`, `cd` and the like."""
    for w in words(text):
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w):
            return w
    return ""


def sluicegate_subcommand(text: str) -> str | None:
    ws = words(text)
    if not ws or ws[0] != "sluicegate":
        return None
    i = 1
    while i < len(ws) and ws[i].startswith("-"):
        i += 1 if "=" in ws[i] or ws[i] in ("--version", "-V", "--help", "-h") else 2
    return ws[i] if i < len(ws) else None


# --------------------------------------------------------------------------- allow-list checks


def _cargo_version() -> str:
    m = re.search(r'^version\s*=\s*"([^"]+)"', (REPO / "Cargo.toml").read_text(), re.M)
    assert m, "Cargo.toml has no version"
    return m.group(1)


def _abi_tag() -> str:
    m = re.search(r'"abi3-py3(\d+)"', (REPO / "Cargo.toml").read_text())
    assert m, "Cargo.toml: pyo3 is not built for abi3"
    return f"cp3{m.group(1)}-abi3"


def check_requirement(spec: str, where: str) -> None:
    """A `pip install` argument or a requirements line names this package as it is built."""
    pyproject = (REPO / "pyproject.toml").read_text()
    name_m = re.search(r'^\[project\]\n(?:.*\n)*?name = "([^"]+)"', pyproject, re.M)
    assert name_m, "pyproject.toml: no [project] name"
    name = name_m.group(1)
    extras_m = re.search(
        r"^\[project\.optional-dependencies\]\n((?:[^\[\n].*\n|\n)*)", pyproject, re.M
    )
    extras_known = (
        set(re.findall(r"^(\w[\w-]*)\s*=", extras_m.group(1), re.M)) if extras_m else set()
    )
    version = _cargo_version()
    if spec.endswith(".whl"):
        wheel = Path(spec).name
        m = re.fullmatch(r"(\w+)-([^-]+)-([^-]+-[^-]+)-([\w.]+)\.whl", wheel)
        assert m, f"{where}: {wheel!r} is not a wheel file name"
        assert m.group(1) == name and m.group(2) == version, (
            f"{where}: {wheel} is not {name} {version} (Cargo.toml's version)"
        )
        assert m.group(3) == _abi_tag(), f"{where}: {wheel}: the wheel's tag is {_abi_tag()}"
        assert "manylinux_2_17_x86_64" in m.group(4).split("."), (
            f"{where}: {wheel}: the release wheel is manylinux_2_17_x86_64"
        )
        return
    m = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[([\w,\s]+)\])?(?:==(\S+))?", spec)
    assert m, f"{where}: {spec!r} is not a requirement this test understands"
    assert m.group(1) == name, f"{where}: the package is called {name}, not {m.group(1)}"
    extras = {e.strip() for e in (m.group(2) or "").split(",") if e.strip()}
    assert extras <= extras_known, f"{where}: unknown extra {extras - extras_known} of {name}"
    if m.group(3):
        assert m.group(3) == version, f"{where}: pins {m.group(3)}, the version is {version}"


def check_pip(cmd: Command) -> None:
    ws = words(cmd.text)
    assert ws[:2] == ["pip", "install"], f"{cmd.where}: {cmd.text}"
    specs = [w for w in ws[2:] if not w.startswith("-")]
    assert specs, f"{cmd.where}: pip install of nothing"
    for spec in specs:
        if spec == ".":
            continue
        check_requirement(spec, cmd.where)


def check_script(cmd: Command) -> None:
    """The script exists, is executable, is valid bash, and its usage header shows the
    arguments the page passes (a placeholder like `[ROWS]` as written, a value where the usage
    has a placeholder)."""
    ws = words(cmd.text)
    script = REPO / ws[0]
    assert script.is_file() and os.access(script, os.X_OK), (
        f"{cmd.where}: {ws[0]} is not executable"
    )
    syntax = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert syntax.returncode == 0, f"{cmd.where}: {ws[0]} is not valid bash: {syntax.stderr}"
    args = ws[1:]
    if not args:
        return
    header = "\n".join(
        line for line in script.read_text().splitlines()[:60] if line.startswith("#")
    )
    usage = re.search(rf"{re.escape(ws[0])}((?: \[[^\]]+\])+)", header)
    assert usage, f"{cmd.where}: {ws[0]}'s header has no usage line with its arguments"
    placeholders = re.findall(r"\[[^\]]+\]", usage.group(1))
    assert len(args) <= len(placeholders), (
        f"{cmd.where}: {len(args)} arguments, the usage of {ws[0]} has {placeholders}"
    )
    for arg, slot in zip(args, placeholders, strict=False):
        assert arg == slot or not arg.startswith("["), (
            f"{cmd.where}: argument {arg} where the usage of {ws[0]} has {slot}"
        )


def check_example(cmd: Command) -> None:
    m = re.search(r"--example (\w+)", cmd.text)
    assert m, f"{cmd.where}: {cmd.text}"
    assert (REPO / "examples" / f"{m.group(1)}.rs").is_file(), (
        f"{cmd.where}: there is no cargo example {m.group(1)} (examples/{m.group(1)}.rs)"
    )


def check_nothing(cmd: Command) -> None:
    pass


@dataclass(frozen=True)
class Allowed:
    pattern: str
    why: str
    check: Callable[[Command], None]


ALLOWED = [
    Allowed(r"scripts/test\.sh$", "the whole suite, this test included (about 25 minutes)",
            check_script),
    Allowed(r"scripts/demo\.sh\b", "builds a release wheel first (minutes); the demo it then "
            "runs, `sluicegate quickstart`, is run here from getting-started.md", check_script),
    Allowed(r"(bench/\w+\.sh|scripts/crash\.sh)\b", "benchmarks and the crash harness take "
            "minutes of load and print figures rather than pass or fail", check_script),
    Allowed(r"scripts/package\.sh\b", "a release build (minutes); scripts/test.sh runs it with "
            "--test as its last step", check_script),
    Allowed(r"cargo run --release --example \w+", "a release build (minutes) of a benchmark",
            check_example),
    Allowed(r"pip install\b", "installs into the environment running the tests; the wheel "
            "checks of scripts/test.sh install the package into fresh environments", check_pip),
    Allowed(r"astro\b", "needs the Astro CLI, Docker and an Astronomer account", check_nothing),
]  # fmt: skip

#: Programs whose commands are run for real.
RUNNABLE = {"sluicegate", "cd", "mkdir", "export", "unset", "sqlite3", "airflow"}


def classify(cmd: Command) -> tuple[str, Allowed | None]:
    """("allowed", rule), ("background", None) or ("run", None); fails for anything else."""
    for rule in ALLOWED:
        if re.match(rule.pattern, cmd.text):
            return "allowed", rule
    if sluicegate_subcommand(cmd.text) in ("emulate", "serve"):
        return "background", None
    prog = program(cmd.text)
    if prog in RUNNABLE:
        return "run", None
    raise AssertionError(
        f"{cmd.where}: `{cmd.text}` is neither run by this test nor on its allow-list; run it "
        "(RUNNABLE), or allow it with a reason (ALLOWED) in tests/python/test_docs_commands.py"
    )


# --------------------------------------------------------------------------- output matching


_TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z"


def _line_pattern(expected: str) -> re.Pattern[str]:
    out = []
    for token in re.split(rf"(…|{_TIMESTAMP}|\s+)", expected.strip()):
        if token == "…":
            out.append(".*")
        elif re.fullmatch(_TIMESTAMP, token):
            out.append(_TIMESTAMP)
        elif token and token.isspace():
            out.append(r"\s+")
        else:
            out.append(re.escape(token))
    return re.compile("".join(out))


def output_matches(expected: list[str], actual: list[str]) -> bool:
    exp = [e for e in expected if e.strip()]
    act = [a.rstrip() for a in actual if a.strip()]

    def match(i: int, j: int) -> bool:
        if i == len(exp):
            return j == len(act)
        if exp[i].strip() == "…":
            return any(match(i + 1, k) for k in range(j, len(act) + 1))
        return (
            j < len(act)
            and bool(_line_pattern(exp[i]).fullmatch(act[j].strip()))
            and match(i + 1, j + 1)
        )

    return match(0, 0)


def test_output_matching() -> None:
    shown = ["run 2 of sync 1 (x): completed", "…", "done at 2026-01-31T12:00:00.120Z  ok"]
    assert output_matches(
        shown, ["run 2 of sync 1 (x): completed", "done at 2027-02-01T01:02:03Z ok"]
    )
    assert output_matches(
        shown, ["run 2 of sync 1 (x): completed", "a", "b", "done at 2026-11-21T14:51:23.060Z ok"]
    )
    assert not output_matches(
        shown, ["run 3 of sync 1 (x): completed", "done at 2026-01-31T12:00:00Z ok"]
    )
    assert not output_matches(
        shown, ["run 2 of sync 1 (x): failed", "done at 2026-01-31T12:00:00Z ok"]
    )
    assert not output_matches(["a"], ["a", "b"])
    assert output_matches(["sent … rows"], ["sent 10 of 12 rows"])


# --------------------------------------------------------------------------- background servers


class Background:
    """A command that serves until stopped: its first stdout line is its URL."""

    def __init__(self, text: str, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.text = text
        self.log_path = log
        self._log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["bash", "-c", f"exec {text}"], cwd=cwd, env=env, stdout=subprocess.PIPE,
            stderr=self._log, text=True,
        )  # fmt: skip
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(lines,), daemon=True).start()
        try:
            first = lines.get(timeout=60) or ""
        except queue.Empty:
            first = ""
        m = re.match(r"https?://\S+$", first.strip())
        if m is None:
            self.stop()
            raise AssertionError(
                f"`{text}` printed {first!r} first, not its URL; stderr: {log.read_text()[-2000:]}"
            )
        self.url = m.group(0).rstrip("/")

    def _pump(self, lines: queue.Queue[str | None]) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            lines.put(line)
        lines.put(None)

    def get(self, path: str, token: str | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + path)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- the session


@dataclass
class Session:
    page: Path
    dir: Path
    cwd: Path
    env: dict[str, str]
    pg_url: str | None
    procs: list[Background] = field(default_factory=list)
    ports: dict[str, str] = field(default_factory=dict)
    pg_databases: list[str] = field(default_factory=list)
    file_hook: Callable[[str, str], str] | None = None
    airflow_checks: list[AirflowCheck] = field(default_factory=list)
    counter: int = 0

    def fresh(self, stem: str) -> Path:
        self.counter += 1
        return self.dir / f"{stem}-{self.counter}"

    # ---- substitutions

    def ported(self, text: str) -> str:
        """`text` with the ports the page's servers were moved to."""
        for old, new in self.ports.items():
            text = re.sub(rf"(:|--port\s+){old}\b", rf"\g<1>{new}", text)
        return text

    def substitute(self, cmd: Command, text: str) -> str:
        text = self.ported(text)
        if re.search(r"\bRUN_ID\b", text):
            text = re.sub(r"\bRUN_ID\b", str(self.run_id_for(text)), text)
        if re.search(r"(?<![\w/$])DIR\b", text):
            text = re.sub(r"(?<![\w/$])DIR\b", str(self.fresh("dir")), text)
        state = re.search(r"""--state[ =]["']?(postgres(?:ql)?://[^\s"']+)["']?""", text)
        if state:
            text = text.replace(state.group(1), self.postgres_state(cmd))
        return text

    def postgres_state(self, cmd: Command) -> str:
        assert self.pg_url, f"{cmd.where}: needs SLUICEGATE_TEST_PG_URL (checked up front)"
        name = f"sg_docs_{uuid.uuid4().hex[:10]}"
        psql = subprocess.run(
            ["psql", self.pg_url, "-qc", f"CREATE DATABASE {name}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert psql.returncode == 0, f"cannot create a database for {cmd.where}: {psql.stderr}"
        self.pg_databases.append(name)
        return self.pg_url.rsplit("/", 1)[0] + "/" + name

    def sluicegate_json(self, *args: str) -> object:
        proc = subprocess.run(
            ["sluicegate", *args], cwd=self.cwd, env=self.env, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, f"sluicegate {' '.join(args)}: {proc.stderr}"
        return json.loads(proc.stdout)

    def run_id_for(self, text: str) -> int:
        if sluicegate_subcommand(text) == "cancel":
            # A run that is queued, so that the cancel has something to do.
            code = (
                "import sluicegate; e = sluicegate.Engine('sluicegate.yml'); "
                "print(e.trigger(e.syncs()[0]['id']))"
            )
            proc = subprocess.run(
                ["python", "-c", code], cwd=self.cwd, env=self.env, capture_output=True,
                text=True, timeout=120,
            )  # fmt: skip
            assert proc.returncode == 0, f"cannot queue a run to cancel: {proc.stderr}"
            return int(proc.stdout.strip())
        runs = self.sluicegate_json("runs", "--json", "--limit", "50")
        assert isinstance(runs, list) and runs, "RUN_ID: there is no run yet on this page"
        for run in runs:  # newest first: the latest run with rows not delivered, if any
            if (run.get("records_failed") or 0) + (run.get("records_invalid") or 0) > 0:
                return int(run["id"])
        return int(runs[0]["id"])

    # ---- running

    def run(self, cmd: Command) -> None:
        kind, rule = classify(cmd)
        if kind == "allowed":
            assert rule is not None
            rule.check(cmd)
            return
        text = self.substitute(cmd, cmd.text)
        if kind == "background":
            self.start(cmd, text)
            return
        marker = self.dir / ".after"
        script = f'{text}\n__rc=$?; pwd > "{marker}.cwd"; env -0 > "{marker}.env"; exit $__rc\n'
        proc = subprocess.run(
            ["bash", "-c", script], cwd=self.cwd, env=self.env, capture_output=True, text=True,
            timeout=COMMAND_TIMEOUT,
        )  # fmt: skip
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, (
            f"{cmd.where}: `{text}` exited {proc.returncode}:\n{output[-6000:]}"
        )
        if sluicegate_subcommand(text) == "cancel":  # its RUN_ID is a queued run made for it
            assert "(canceled)" in output, f"{cmd.where}: `{text}` printed {output!r}"
        if cmd.expected is not None and any(e.strip() for e in cmd.expected):
            expected = [self.ported(e) for e in cmd.expected]
            assert output_matches(expected, output.splitlines()), (
                f"{cmd.where}: `{text}` printed:\n{output}\nthe page shows:\n" + "\n".join(expected)
            )
        self.cwd = Path((marker.parent / ".after.cwd").read_text().strip())
        env = {}
        for item in (marker.parent / ".after.env").read_text().split("\0"):
            if "=" in item:
                k, v = item.split("=", 1)
                if k not in ("_", "SHLVL", "OLDPWD"):
                    env[k] = v
        self.env = env
        if program(cmd.text) == "export":
            for w in words(text)[1:]:
                name = w.split("=", 1)[0]
                if name.startswith("AIRFLOW_CONN_"):
                    self.airflow_checks.append(connection_check(name, self.env[name], cmd.where))

    def start(self, cmd: Command, text: str) -> None:
        ws = words(text)
        for i, w in enumerate(ws):
            if w == "--port" and ws[i + 1] != "0":
                port = str(free_port())
                self.ports[ws[i + 1]] = port
                text = re.sub(rf"--port\s+{ws[i + 1]}\b", f"--port {port}", text)
            if w == "--listen" and not ws[i + 1].endswith(":0"):
                old = ws[i + 1].rsplit(":", 1)[1]
                port = str(free_port())
                self.ports[old] = port
                text = text.replace(ws[i + 1], ws[i + 1].rsplit(":", 1)[0] + ":" + port)
        proc = Background(text, self.cwd, self.env, self.fresh("background").with_suffix(".log"))
        self.procs.append(proc)
        if sluicegate_subcommand(text) == "serve":
            status, body = proc.get("/healthz")
            assert status == 200, f"{cmd.where}: /healthz answered {status}: {body[:300]!r}"
            token = self.env.get("SLUICEGATE_API_TOKEN")
            if token:
                status, body = proc.get("/api/v1/syncs", token)
                assert status == 200 and json.loads(body)["status"] == "success", (
                    f"{cmd.where}: GET /api/v1/syncs answered {status}: {body[:300]!r}"
                )
        else:
            status, _ = proc.get("/")
            assert 200 <= status < 500, f"{cmd.where}: {proc.url} answered {status}"

    def python(self, block: Block) -> None:
        path = self.fresh("snippet").with_suffix(".py")
        path.write_text(block.text)
        if re.search(r"^\s*(from|import) (airflow|sluicegate\.airflow)", block.text, re.M):
            task = {"kind": "snippet", "path": str(path), "where": block.where}
            self.airflow_checks.append(AirflowCheck(block.where, task, lambda _: None))
            return
        if not re.search(r"^\s*(from|import) sluicegate", block.text, re.M):
            raise AssertionError(f"{block.where}: a python block this test does not run")
        proc = subprocess.run(
            ["python", str(path)], cwd=self.cwd, env=self.env, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, f"{block.where}: the snippet failed:\n{proc.stderr[-4000:]}"

    def close(self) -> None:
        for p in self.procs:
            p.stop()
        for name in self.pg_databases:
            assert self.pg_url
            subprocess.run(
                ["psql", self.pg_url, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
                capture_output=True, timeout=60,
            )  # fmt: skip


DAG_HARNESS = Path(__file__).with_name("_docs_dag_harness.py")


@dataclass
class AirflowCheck:
    """A check that needs Airflow: run in one interpreter per page (see _docs_dag_harness.py)."""

    where: str
    task: dict[str, str]
    verify: Callable[[object], None]


def connection_check(var: str, value: str, where: str) -> AirflowCheck:
    """Airflow reads the connection, and the hook resolves it to what its JSON says."""
    conn = json.loads(value)

    def verify(got: object) -> None:
        assert isinstance(got, dict), got
        host = (conn.get("host") or "").strip()
        extra = conn.get("extra") or {}
        if not host:
            assert got["mode"] == "embedded", f"{where}: {got}"
            assert got["project"] == extra.get("project"), f"{where}: project {got['project']}"
            state, password = extra.get("state"), conn.get("password")
            if password:
                assert state and got["state"].startswith(state.split("://")[0] + "://"), got
                assert f":{quote(password, safe='')}@" in got["state"], f"{where}: no password"
            else:
                assert got["state"] == state, f"{where}: state {got['state']}"
        else:
            want = "census" if "getcensus.com" in host else "remote"
            assert got["mode"] == want, f"{where}: {host} is {got['mode']} mode, not {want}"
            assert got["base"].endswith("/api/v1") and host.rstrip("/") in got["base"], got

    task = {"kind": "connection", "conn_id": var.removeprefix("AIRFLOW_CONN_").lower(),
            "var": var, "value": value}  # fmt: skip
    return AirflowCheck(where, task, verify)


def run_airflow_checks(checks: list[AirflowCheck], env: dict[str, str], scratch: Path) -> None:
    if not checks:
        return
    tasks = scratch / "airflow-checks.json"
    tasks.write_text(json.dumps([c.task for c in checks]))
    proc = subprocess.run(
        ["python", str(DAG_HARNESS), str(tasks)], env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, f"the Airflow checks did not run:\n{proc.stderr[-4000:]}"
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for check, result in zip(checks, results, strict=True):
        if isinstance(result, dict) and "error" in result:
            raise AssertionError(f"{check.where}: failed with Airflow:\n{result['error']}")
        check.verify(result)


# --------------------------------------------------------------------------- page setups


def readme_project_file() -> str:
    marked = [b for b in blocks(REPO / "README.md") if b.directive == "file sluicegate.yml"]
    assert len(marked) == 1, (
        "README.md: mark its project file example `<!-- test: file sluicegate.yml -->`"
    )
    return marked[0].text


def point_hubspot_at(url: str) -> Callable[[str, str], str]:
    def hook(path: str, text: str) -> str:
        if path != "sluicegate.yml":
            return text
        out, n = re.subn(
            r"^(\s*)type: hubspot\n", rf"\g<0>\g<1>base_url: {url}\n", text, flags=re.M
        )
        assert n == 1, "README's project file has no `type: hubspot` destination"
        return out

    return hook


def readme_warehouse(path: Path) -> None:
    """The table README's project file reads; one row HubSpot rejects, one without an email."""
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE pub_hubspot_contacts (email TEXT, first_name TEXT, lead_score INTEGER)"
    )
    rows = [(f"contact{i}@example.com", f"Name{i}", i % 100) for i in range(1, 51)]
    rows += [("not-an-email", "Bad", 1), (None, "Nobody", 2)]
    con.executemany("INSERT INTO pub_hubspot_contacts VALUES (?, ?, ?)", rows)
    con.commit()
    con.close()


def needs(page: Path) -> list[str]:
    """What the page's commands need that a machine may lack."""
    found = []
    for b in blocks(page):
        if b.language in SHELL_LANGUAGES:
            for c in commands(b):
                kind, _ = classify(c)
                if kind == "allowed":
                    continue
                if program(c.text) == "airflow" and find_spec("airflow") is None:
                    found.append("apache-airflow")
                if program(c.text) == "sqlite3" and shutil.which("sqlite3") is None:
                    found.append("the sqlite3 shell")
                if re.search(r"--state[ =][\"']?postgres", c.text):
                    if not os.environ.get("SLUICEGATE_TEST_PG_URL"):
                        found.append("SLUICEGATE_TEST_PG_URL (scripts/test.sh starts Postgres)")
                    elif shutil.which("psql") is None:
                        found.append("psql")
        airflow_code = (
            (
                b.language == "python"
                and re.search(r"(from|import) (airflow|sluicegate\.airflow)", b.text)
            )
            or b.language == "dotenv"
            or (b.language == "json" and '"conn_type"' in b.text)
        )
        if airflow_code and find_spec("airflow") is None:
            found.append("apache-airflow")
    return sorted(set(found))


@pytest.fixture
def session(request: pytest.FixtureRequest, cli: str, tmp_path: Path) -> Iterator[Session]:
    page: Path = request.param
    missing = needs(page)
    if missing:
        pytest.skip(f"{rel(page)} needs {', '.join(missing)}")
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW_", "SLUICEGATE_", "HUBSPOT_"))
    }  # fmt: skip
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    # Airflow commands and hooks never touch ~/airflow; a page may set its own AIRFLOW_HOME.
    env["AIRFLOW_HOME"] = str(tmp_path / "airflow-home")
    work = tmp_path / "page"
    work.mkdir()
    s = Session(page, tmp_path, work, env, os.environ.get("SLUICEGATE_TEST_PG_URL") or None)
    try:
        if page.name != "getting-started.md":
            # README's project, with a HubSpot emulator as its destination.
            emulator = Background(
                f"{shlex.quote(cli)} emulate hubspot --port 0 --token {HUBSPOT_TOKEN} "
                "--property lead_score",
                work, env, tmp_path / "hubspot.log",
            )  # fmt: skip
            s.procs.append(emulator)
            s.env["HUBSPOT_TOKEN"] = HUBSPOT_TOKEN
            s.file_hook = point_hubspot_at(emulator.url)
            readme_warehouse(work / "warehouse.db")
            if page.name != "README.md":
                (work / "sluicegate.yml").write_text(
                    s.file_hook("sluicegate.yml", readme_project_file())
                )
        yield s
    finally:
        s.close()


def walk(s: Session) -> int:
    """Run the page top to bottom; returns how many commands and blocks it exercised."""
    done = 0
    for b in blocks(s.page):
        directive = b.directive or ""
        if directive.startswith("file "):
            target = s.cwd / directive.removeprefix("file ").strip()
            target.parent.mkdir(parents=True, exist_ok=True)
            text = b.text + "\n"
            if s.file_hook:
                text = s.file_hook(directive.removeprefix("file ").strip(), text)
            target.write_text(text)
            done += 1
        elif directive == "requirements":
            for line in b.text.splitlines():
                if line.strip() and not line.startswith("#"):
                    check_requirement(line.strip(), b.where)
            done += 1
        elif b.language in SHELL_LANGUAGES:
            for c in commands(b):
                s.run(c)
                done += 1
        elif b.language == "python":
            s.python(b)
            done += 1
        elif b.language == "json" and '"conn_type"' in b.text:
            s.airflow_checks.append(
                connection_check("AIRFLOW_CONN_SLUICEGATE_DEFAULT", b.text, b.where)
            )
            done += 1
        elif b.language == "dotenv":
            for line in b.text.splitlines():
                name, _, value = line.partition("=")
                if name.startswith("AIRFLOW_CONN_"):
                    s.airflow_checks.append(connection_check(name, value, b.where))
            done += 1
    run_airflow_checks(s.airflow_checks, s.env, s.dir)
    return done


# --------------------------------------------------------------------------- tests


def test_every_page_is_covered() -> None:
    """Every command is classified (run, background or allowed), every block is handled."""
    total = 0
    for page in PAGES:
        for b in blocks(page):
            if b.language in SHELL_LANGUAGES:
                for c in commands(b):
                    classify(c)
                    total += 1
            elif b.language in ("python", "dotenv"):
                total += 1
            elif b.language not in ("yaml", "json", "text", ""):
                raise AssertionError(f"{b.where}: a ```{b.language} block this test does not read")
    assert total >= 60, f"only {total} commands and blocks found in the docs"


def test_allowed_commands_are_few() -> None:
    allowed = [
        c.where
        for page in PAGES
        for b in blocks(page)
        if b.language in SHELL_LANGUAGES
        for c in commands(b)
        if classify(c)[0] == "allowed"
    ]
    assert len(allowed) <= 15, f"{len(allowed)} commands are not run: {allowed}"


def exercised(page: Path) -> bool:
    return any(
        b.language in SHELL_LANGUAGES | {"python", "dotenv"}
        or b.directive
        or (b.language == "json" and '"conn_type"' in b.text)
        for b in blocks(page)
    )


#: Pages with something to run (the others hold only YAML, JSON or text).
RUN_PAGES = [p for p in PAGES if exercised(p)]


@pytest.mark.slow
@pytest.mark.parametrize("session", RUN_PAGES, ids=[rel(p) for p in RUN_PAGES], indirect=True)
def test_page_commands_work(session: Session) -> None:
    started = time.monotonic()
    done = walk(session)
    assert done, f"{rel(session.page)}: nothing was exercised"
    print(f"{rel(session.page)}: {done} commands and blocks in {time.monotonic() - started:.1f}s")
