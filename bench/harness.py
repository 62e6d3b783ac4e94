"""The side-by-side benchmark driver (run through bench/run.sh, which sets up the venvs, the
release binary and PostgreSQL, then calls this).

For each table size it generates `customers` (12 columns), starts the sinks, and runs the
scenarios of the performance anchors (section 6) for each tool:

  S1  first full sync                     near-free sink (`emulate webhook --discard`)
  S2  no-change re-sync                   same
  S3  1 % updates with an updated_at bump  keyed sink (`emulate webhook`, arrival log read back)
  S4  1 % silent updates + 0.5 % deletes  same
  S5  rate-limited destination            `emulate hubspot`, 100 requests per rolling 10 s
  S6  flaky destination                   keyed sink failing 5 % of requests (503, Retry-After: 1)
                                          and stalling one request per STALL_EVERY_ROWS rows sent
                                          (answer held STALL_SECONDS; the batch is applied)
  S7  kill -9 mid-run, then resume        keyed sink with 20 ms latency per request
  S8  DAG parse cost                      Airflow 3 venv

Every measurement is repeated (--repeat, default 3) and the median reported; peak RSS comes
from GNU time, rows sent / missed from the sink's own counters and logs (never from the tool).
Results go to WORK/results.json; the report (BENCHMARKS.md) and the chart are regenerated from
it (`--report-only` rebuilds them without running anything).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import requests

TOOLS = ("sluicegate", "dlt", "drt", "plain")
SCENARIOS = ("S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8")
COLUMNS = ["id", "email", "first_name", "last_name", "company", "country", "plan", "balance", "lead_score",
           "is_customer", "created_at", "updated_at"]
HUBSPOT_TOKEN = "bench-hubspot-token"
RATE_LIMIT, RATE_WINDOW_S = 100, 10.0
FLAKY_RATE = 0.05
# S6's stalls: one request per this many rows' worth of requests (so a tool sending batches of
# 100 meets as many stalls as one sending batches of 1000), its answer held this long.
STALL_EVERY_ROWS = 75_000
STALL_SECONDS = 30.0
BATCH = {"sluicegate": 1000, "dlt": 1000, "drt": 1000, "plain": 100}
S6_CAP_S = 900
KILL_LATENCY_MS = 20
KILL_AT = 0.4

TITLES = {
    "S1": "first full sync",
    "S2": "no-change re-sync",
    "S3": "1 % updates, updated_at bumped",
    "S4": "1 % silent updates + 0.5 % deletes",
    "S5": "rate-limited destination (HubSpot emulator)",
    "S6": "flaky destination (5 % of requests 503, 30 s stalls)",
    "S7": "kill -9 mid-run, then resume",
    "S8": "DAG parse cost",
}


def log(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# ---------------------------------------------------------------------------------------------
# Processes and measurement


def measure(cmd: list[str], *, env: dict | None = None, cwd: str | None = None, timeout: float = 3600,
            tag: str, work: Path) -> dict:
    """Run cmd under GNU time; wall seconds, peak RSS (MB), exit code, stderr tail."""
    tfile = work / f"{tag}.time"
    efile = work / f"{tag}.err"
    ofile = work / f"{tag}.out"
    full = ["/usr/bin/time", "-f", "%M", "-o", str(tfile)] + cmd
    t0 = time.perf_counter()
    with open(ofile, "w") as out, open(efile, "w") as err:
        p = subprocess.Popen(full, stdout=out, stderr=err, env=env, cwd=cwd, start_new_session=True)
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            rc = "timeout"
    wall = time.perf_counter() - t0
    rss = None
    try:
        rss = int(tfile.read_text().strip().splitlines()[-1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    tail = efile.read_text(errors="replace")[-1500:] if rc != 0 else ""
    return {"wall": wall, "rss_mb": rss, "rc": rc, "err": tail}


class Emulator:
    def __init__(self, binary: str, kind: str, args: list[str], work: Path, env: dict | None = None):
        self.out = work / f"emulator-{kind}-{os.getpid()}-{len(args)}.out"
        e = dict(os.environ, **(env or {}))
        self.proc = subprocess.Popen([binary, "emulate", kind, "--port", "0", *args], stdout=open(self.out, "w"),
                                     stderr=subprocess.DEVNULL, env=e, start_new_session=True)
        for _ in range(200):
            line = self.out.read_text().split("\n")[0].strip()
            if line.startswith("http://"):
                self.url = line.rstrip("/")
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"the {kind} emulator did not start")
        self.http = requests.Session()

    def get(self, path: str) -> dict:
        return self.http.get(self.url + path, timeout=600).json()

    def post(self, path: str) -> None:
        self.http.post(self.url + path, timeout=60).raise_for_status()

    def put(self, path: str, body: dict) -> None:
        self.http.put(self.url + path, json=body, timeout=60).raise_for_status()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ---------------------------------------------------------------------------------------------
# Data


def generate(pg: str, table: str, rows: int) -> None:
    """`table`: rows x 12 columns, deterministic, ~150 bytes per row as COPY text."""
    with psycopg.connect(pg, autocommit=True) as c:
        c.execute("CREATE TABLE IF NOT EXISTS bench_meta (name text PRIMARY KEY, rows bigint NOT NULL, fresh boolean NOT NULL)")
        have = c.execute("SELECT rows, fresh FROM bench_meta WHERE name = %s", (table,)).fetchone()
        if have == (rows, True):
            return
        log(f"generating {table}: {rows:,} rows x 12 columns")
        c.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
        c.execute(f"""
CREATE TABLE {table} (
  id bigint PRIMARY KEY, email text NOT NULL, first_name text NOT NULL, last_name text,
  company text NOT NULL, country text NOT NULL, plan text NOT NULL, balance numeric(12,2) NOT NULL,
  lead_score double precision NOT NULL, is_customer boolean NOT NULL, created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL)""")
        c.execute(f"""
INSERT INTO {table}
SELECT i, 'customer' || i || '@example.com',
       (ARRAY['Ada','Grace','Alan','Edsger','Barbara','Donald','Frances','Ken','Margaret','Niklaus'])[1 + i % 10],
       CASE WHEN i % 17 = 0 THEN NULL ELSE 'Lastname' || (i % 9973) END,
       'Company ' || (i % 50021) || ' Ltd',
       (ARRAY['DE','FR','GB','US','CA','BR','IN','JP','AU','NL','SE','ES'])[1 + i % 12],
       (ARRAY['free','starter','pro','enterprise'])[1 + i % 4],
       round(((i::bigint * 7919) % 10000000) / 100.0, 2),
       ((i::bigint * 31) % 100000) / 100.0,
       i % 3 = 0,
       timestamptz '2020-01-01 00:00:00+00' + (i % 157680000) * interval '1 second',
       timestamptz '2024-01-01 00:00:00+00' + (i % 31536000) * interval '1 second'
FROM generate_series(1, {rows}) AS i""")
        c.execute(f"VACUUM (ANALYZE) {table}")
        c.execute("INSERT INTO bench_meta VALUES (%s, %s, true) ON CONFLICT (name) DO UPDATE SET rows = excluded.rows, fresh = true",
                  (table, rows))


def mark_changed(pg: str, table: str) -> None:
    with psycopg.connect(pg, autocommit=True) as c:
        c.execute("UPDATE bench_meta SET fresh = false WHERE name = %s", (table,))


def count(pg: str, table: str) -> int:
    with psycopg.connect(pg) as c:
        return c.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def copy_floor(pg: str, table: str, repeat: int, work: Path) -> dict:
    """The physical read limit: COPY (SELECT all columns) TO STDOUT through psql, to /dev/null."""
    walls = []
    for i in range(repeat):
        m = measure(["sh", "-c", f'psql -X -q "$PGURL" -c "COPY (SELECT {", ".join(COLUMNS)} FROM {table}) TO STDOUT" >/dev/null'],
                    env=dict(os.environ, PGURL=pg), tag=f"copy-{table}-{i}", work=work)
        walls.append(m["wall"])
    return {"wall": statistics.median(walls), "walls": walls}


# ---------------------------------------------------------------------------------------------
# Tools: each makes a fresh state directory and a command for one run


class Ctx:
    def __init__(self, a):
        self.root = Path(a.root).resolve()
        self.work = Path(a.work).resolve()
        self.bin = a.bin
        self.pg = a.pg
        self.py = sys.executable
        self.drt = str(Path(sys.executable).parent / "drt")
        self.n = 0

    def state_dir(self, tool: str, label: str) -> Path:
        self.n += 1
        d = self.work / "state" / f"{tool}-{label}-{self.n}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        return d


def pg_parts(pg: str) -> dict:
    from urllib.parse import urlparse
    u = urlparse(pg)
    return {"host": u.hostname, "port": u.port or 5432, "user": u.username or "postgres", "db": (u.path or "/postgres")[1:]}


def sluicegate_cmd(ctx: Ctx, d: Path, table: str, url: str, hubspot: bool) -> tuple[list[str], dict]:
    if hubspot:
        dest = f"""  crm:
    type: hubspot
    access_token: ${{BENCH_HUBSPOT_TOKEN}}
    base_url: {url}"""
        sync = """    destination: { connection: crm, object: contacts }
    primary_identifier: { from: email, to: email }
    mappings:
      - { from: first_name, to: firstname }
      - { from: last_name, to: lastname }
      - { from: company, to: company }
      - { from: country, to: country }
    behavior: upsert"""
    else:
        dest = f"""  sink:
    type: webhook
    url: {url}/customers
    batch_size: 1000"""
        maps = "\n".join(f"      - {{ from: {c}, to: {c} }}" for c in COLUMNS if c != "id")
        sync = f"""    destination: {{ connection: sink, object: customers }}
    primary_identifier: {{ from: id, to: id }}
    mappings:
{maps}
    behavior: mirror"""
    (d / "sluicegate.yml").write_text(f"""# Written by bench/harness.py
sources:
  pg:
    url: ${{BENCH_PG_URL}}
destinations:
{dest}
syncs:
  - id: 1
    name: bench
    source: {{ connection: pg, table: {table} }}
{sync}
""")
    env = dict(os.environ, BENCH_PG_URL=ctx.pg, BENCH_HUBSPOT_TOKEN=HUBSPOT_TOKEN)
    return [ctx.bin, "--project", str(d / "sluicegate.yml"), "--state", f"sqlite://{d}/state.db", "run", "bench", "--json"], env


def dlt_cmd(ctx: Ctx, d: Path, table: str, url: str, hubspot: bool) -> tuple[list[str], dict]:
    cmd = [ctx.py, str(ctx.root / "bench/peers/dlt_sync.py"), "--pg", ctx.pg, "--table", table, "--dir", str(d)]
    if hubspot:
        cmd += ["--url", f"{url}/crm/v3/objects/contacts/batch/upsert", "--batch", "100", "--hubspot", HUBSPOT_TOKEN]
    else:
        cmd += ["--url", f"{url}/customers", "--batch", "1000"]
    env = dict(os.environ, RUNTIME__DLTHUB_TELEMETRY="false", DLT_DATA_DIR=str(d / "data"))
    return cmd, env


def plain_cmd(ctx: Ctx, d: Path, table: str, url: str, hubspot: bool) -> tuple[list[str], dict]:
    cmd = [ctx.py, str(ctx.root / "bench/peers/plain_sync.py"), "--pg", ctx.pg, "--table", table,
           "--state", str(d / "state.json"), "--batch", "100"]
    if hubspot:
        cmd += ["--url", f"{url}/crm/v3/objects/contacts/batch/upsert", "--hubspot", HUBSPOT_TOKEN]
    else:
        cmd += ["--url", f"{url}/customers"]
    return cmd, dict(os.environ)


def drt_cmd(ctx: Ctx, d: Path, table: str, url: str, hubspot: bool) -> tuple[list[str], dict]:
    """drt-core: `rest_api` destination in batch mode, incremental on updated_at.

    drt's `incremental_strategy: diff` needs `destination.upsert_key`, which `rest_api` does not
    have, and its HubSpot destination has api.hubapi.com built in; so the REST destination with a
    cursor is what a drt user can point at these endpoints."""
    p = pg_parts(ctx.pg)
    home = d / "home"
    (home / ".drt").mkdir(parents=True, exist_ok=True)
    (home / ".drt" / "profiles.yml").write_text(
        f"bench:\n  type: postgres\n  host: {p['host']}\n  port: {p['port']}\n  dbname: {p['db']}\n  user: {p['user']}\n")
    (d / "drt_project.yml").write_text("name: bench\nversion: '0.1'\nprofile: bench\n")
    (d / "syncs").mkdir(exist_ok=True)
    if hubspot:
        dest = f"""destination:
  type: rest_api
  url: {url}/crm/v3/objects/contacts/batch/upsert
  method: POST
  headers:
    Content-Type: application/json
    Authorization: Bearer {HUBSPOT_TOKEN}
  body_mode: batch
  max_records_per_request: 100
  batch_template: >-
    {{"inputs": [{{% for r in rows %}}{{"idProperty": "email", "id": {{{{ r.email | tojson_safe }}}}, "properties":
    {{"firstname": {{{{ r.first_name | tojson_safe }}}}, "lastname": {{{{ (r.last_name or "") | tojson_safe }}}},
    "company": {{{{ r.company | tojson_safe }}}}, "country": {{{{ r.country | tojson_safe }}}}}}}}{{% if not loop.last %}},{{% endif %}}{{% endfor %}}]}}
"""
        rate = "  batch_size: 100\n  rate_limit:\n    requests_per_second: 10\n"
        model = f"SELECT id, email, first_name, last_name, company, country, updated_at FROM {table}"
    else:
        dest = f"""destination:
  type: rest_api
  url: {url}/customers
  method: POST
  headers:
    Content-Type: application/json
    X-Sluicegate-Key: id
    X-Sluicegate-Operation: upsert
  body_mode: batch
  max_records_per_request: 1000
  batch_template: "{{{{ rows | tojson_safe }}}}"
"""
        # drt paces every destination (default 10 requests/s); for a local sink it is lifted.
        rate = "  batch_size: 1000\n  rate_limit:\n    requests_per_second: 0\n"
        model = f"SELECT * FROM {table}"
    (d / "syncs" / "bench.yml").write_text(f"""name: bench
model: {model}
{dest}sync:
  mode: incremental
  cursor_field: updated_at
{rate}""")
    env = dict(os.environ, HOME=str(home), DO_NOT_TRACK="1", DRT_TELEMETRY="0")
    return [ctx.drt, "run", "--select", "bench"], env


MAKERS = {"sluicegate": sluicegate_cmd, "dlt": dlt_cmd, "drt": drt_cmd, "plain": plain_cmd}


class Tool:
    """One tool with one state: `run()` runs it once against the same table and sink."""

    def __init__(self, ctx: Ctx, name: str, label: str, table: str, url: str, hubspot: bool = False):
        self.ctx, self.name, self.label = ctx, name, label
        self.dir = ctx.state_dir(name, label)
        self.table = table
        self.cmd, self.env = MAKERS[name](ctx, self.dir, table, url, hubspot)
        self.runs = 0

    def retarget(self, url: str, hubspot: bool = False) -> None:
        """Point the same tool state at another sink (the tools keep no state per URL)."""
        self.cmd, self.env = MAKERS[self.name](self.ctx, self.dir, self.table, url, hubspot)

    def run(self, timeout: float = 3600) -> dict:
        self.runs += 1
        return measure(self.cmd, env=self.env, cwd=str(self.dir), timeout=timeout,
                       tag=f"{self.dir.name}-run{self.runs}", work=self.dir)

    def start(self) -> subprocess.Popen:
        self.runs += 1
        tag = f"{self.dir.name}-run{self.runs}"
        return subprocess.Popen(self.cmd, env=self.env, cwd=str(self.dir), stdout=open(self.dir / f"{tag}.out", "w"),
                                stderr=open(self.dir / f"{tag}.err", "w"), start_new_session=True)


# ---------------------------------------------------------------------------------------------
# Scenarios


def rec(result: list, size, scenario: str, tool: str, rep: int, m: dict, **extra) -> None:
    row = {"size": size, "scenario": scenario, "tool": tool, "rep": rep, **m, **extra}
    result.append(row)
    status = "ok" if m.get("rc") == 0 else f"rc={m.get('rc')}"
    log(f"{scenario} {tool} #{rep}: {m.get('wall', 0):.2f} s, RSS {m.get('rss_mb') or 0:.0f} MB, "
        f"sent {extra.get('sent')}, missed {extra.get('missed')} ({status})")
    if m.get("rc") not in (0, None):
        log(f"   stderr: {m.get('err', '')[-600:]}")


def reps_for(a, tool: str, n: int) -> int:
    """BENCH_FEWER=drt@5000000=1[,...]: run S1/S2 of that tool at that size fewer times."""
    for spec in filter(None, os.environ.get("BENCH_FEWER", "").split(",")):
        who, _, k = spec.partition("=")
        t, _, size = who.partition("@")
        if t == tool and int(size) == n:
            return int(k)
    return a.repeat


def s1_s2(ctx, a, res, n, fast: Emulator) -> None:
    for rep in range(1, a.repeat + 1):
        for tool in a.tools:
            if rep > reps_for(a, tool, n):
                log(f"S1/S2 {tool} at {n:,} rows: run {rep} skipped (BENCH_FEWER)")
                continue
            t = Tool(ctx, tool, f"s1-{n}", "customers", fast.url)
            fast.post("/_emulator/reset")
            m = t.run()
            st = fast.get("/_emulator/received?records=false")["stats"]
            rec(res, n, "S1", tool, rep, m, sent=st["records_received"], missed=max(0, n - st["records_accepted"]), expected=n)
            fast.post("/_emulator/reset")
            m = t.run()
            st = fast.get("/_emulator/received?records=false")["stats"]
            rec(res, n, "S2", tool, rep, m, sent=st["records_received"], missed=0, expected=0)
            shutil.rmtree(t.dir / "data", ignore_errors=True)


def s3_s4(ctx, a, res, n, keyed: Emulator, fast: Emulator) -> None:
    tools = {}
    skip = {t for t in os.environ.get("BENCH_S34_SKIP", "").split(",") if t}
    for tool in a.tools:
        if f"{tool}@{n}" in skip:
            log(f"S3/S4 at {n:,} rows: {tool} skipped (BENCH_S34_SKIP)")
            continue
        # The first sync goes to the counting sink: the keyed one would hold every record
        # (5 M records took 22 GB). The timed runs then send their changes to the keyed sink.
        tools[tool] = Tool(ctx, tool, f"chg-{n}", "customers", fast.url)
        log(f"S3/S4: first sync of {tool} (not timed)")
        m = tools[tool].run()
        if m["rc"] != 0:
            log(f"   {tool} failed its first sync: {m['err'][-400:]}")
        tools[tool].retarget(keyed.url)
        keyed.post("/_emulator/reset?store=true")
    mark_changed(ctx.pg, "customers")
    for rep in range(1, a.repeat + 1):
        for scen in ("S3", "S4"):
            with psycopg.connect(ctx.pg, autocommit=True) as c:
                if scen == "S3":
                    ids = {r[0] for r in c.execute(
                        "UPDATE customers SET lead_score = lead_score + 1, updated_at = clock_timestamp() "
                        "WHERE id %% 100 = %s RETURNING id", (rep,))}
                else:
                    ids = {r[0] for r in c.execute(
                        "UPDATE customers SET lead_score = lead_score + 1 WHERE id %% 100 = %s RETURNING id", (50 + rep,))}
                    ids |= {r[0] for r in c.execute("DELETE FROM customers WHERE id %% 200 = %s RETURNING id", (100 + rep,))}
                c.execute("VACUUM ANALYZE customers")
            for tool, t in tools.items():
                keyed.post("/_emulator/reset?store=true")
                m = t.run()
                got = keyed.get("/_emulator/received")
                seen = {int(r["id"]) for r in got["records"] if r.get("id") is not None}
                rec(res, n, scen, tool, rep, m, sent=got["stats"]["records_received"], missed=len(ids - seen),
                    expected=len(ids), extra_rows=len(seen - ids))


def s5(ctx, a, res, hub: Emulator) -> None:
    n = a.rate_rows
    for rep in range(1, a.repeat + 1):
        for tool in a.tools:
            hub.post("/_emulator/reset?contacts=true")
            t = Tool(ctx, tool, "s5", "customers_rate", hub.url, hubspot=True)
            m = t.run(timeout=max(600, 20 * n / 1000))
            st = hub.get("/_emulator/stats")
            rec(res, n, "S5", tool, rep, m, sent=st["contacts"], missed=max(0, n - st["contacts"]), expected=n,
                requests=st["requests"], rate_limited=st["rate_limited"])


def s6(ctx, a, res, keyed: Emulator) -> None:
    n = a.small_rows
    for rep in range(1, a.repeat + 1):
        for tool in a.tools:
            keyed.post("/_emulator/reset?store=true")
            keyed.put("/_emulator/faults", {"fail_rate": FLAKY_RATE, "fail_status": 503,
                                            "stall_every": STALL_EVERY_ROWS // BATCH[tool], "stall_seconds": STALL_SECONDS})
            t = Tool(ctx, tool, "s6", "customers_small", keyed.url)
            # The cap: a tool that waits forever for a stalled answer is killed here and its
            # run reported as failed (rc "timeout").
            m = t.run(timeout=S6_CAP_S)
            st = keyed.get("/_emulator/received?records=false")["stats"]
            keyed.put("/_emulator/faults", {})
            rec(res, n, "S6", tool, rep, m, sent=st["records_accepted"], missed=n - st["stored"], expected=n,
                duplicates=st["records_accepted"] - st["stored"], failed_requests=st["batches_failed"],
                stalled=st.get("stalled"), requests=st["requests"])
        keyed.post("/_emulator/reset?store=true")


def s7(ctx, a, res, keyed: Emulator) -> None:
    n = a.small_rows
    for rep in range(1, a.repeat + 1):
        for tool in a.tools:
            keyed.post("/_emulator/reset?store=true")
            keyed.put("/_emulator/faults", {"latency_ms": KILL_LATENCY_MS})
            t = Tool(ctx, tool, "s7", "customers_small", keyed.url)
            p = t.start()
            t0 = time.perf_counter()
            killed_at = None
            while p.poll() is None and time.perf_counter() - t0 < 1800:
                st = keyed.get("/_emulator/received?records=false")["stats"]
                if st["records_accepted"] >= KILL_AT * n:
                    os.killpg(p.pid, signal.SIGKILL)
                    killed_at = st["records_accepted"]
                    break
                time.sleep(0.005)
            p.wait()
            first = time.perf_counter() - t0
            m = t.run(timeout=1800)
            st = keyed.get("/_emulator/received?records=false")["stats"]
            keyed.put("/_emulator/faults", {})
            rec(res, n, "S7", tool, rep, m, sent=st["records_accepted"], missed=n - st["stored"], expected=n,
                duplicates=st["records_accepted"] - st["stored"], killed_at=killed_at, first_wall=first,
                resent_after_kill=st["records_accepted"] - (killed_at or 0))
        keyed.post("/_emulator/reset?store=true")


def timed_import(pre: str, stmt: str) -> str:
    """Python code that runs `pre`, then prints the seconds `stmt` (the imports) takes."""
    return f"import time\n{pre}\nt = time.perf_counter()\n{stmt}\nprint(time.perf_counter() - t)"


def s8(ctx, a, res) -> None:
    """Parse cost of a DAG file. Two measures, 5+ runs each, median: the wall time of
    `python -c 'import <dag module>'`, and, inside one interpreter, the seconds the tool's own
    imports add (after `import airflow.sdk` for ours: what our operator and sensor cost on top of
    Airflow; from a bare interpreter for the peers: what a DAG file importing them pays)."""
    af = ctx.root / ".venv" / "bin" / "python"
    reps = max(5, a.repeat)
    cases = []
    pp = f"{ctx.root / 'python'}:{ctx.root}:{ctx.root / 'bench'}"
    if af.exists():
        cases += [
            ("airflow", "bare Airflow DAG (bench/dags/bare_dag.py)", [str(af), "-c", "import dags.bare_dag"], pp, False),
            ("sluicegate", "dags/example_sync.py (SyncOperator + SyncSensor)", [str(af), "-c", "import dags.example_sync"], pp, False),
            ("sluicegate-imports", "our operator + sensor modules, after `import airflow.sdk`",
             [str(af), "-c", timed_import("import airflow.sdk", "import sluicegate.airflow.operators.sluicegate, sluicegate.airflow.sensors.sluicegate")], pp, True),
        ]
    else:
        log("S8: no Airflow venv (.venv); only the peers' import costs are measured")
    bp = str(Path(sys.executable))
    cases += [
        ("dlt", "import dlt + sql_database source", [bp, "-c", timed_import("", "import dlt\nfrom dlt.sources.sql_database import sql_table")], "", True),
        ("drt", "import drt's Airflow helper", [bp, "-c", timed_import("", "from drt.integrations.airflow import run_drt_sync")], "", True),
        ("plain", "import psycopg, requests", [bp, "-c", timed_import("", "import psycopg, requests")], "", True),
    ]
    for key, what, cmd, path, inproc in cases:
        env = dict(os.environ, PYTHONPATH=path)
        measure(cmd, env=env, cwd=str(ctx.root), tag=f"s8-{key}-warm", work=ctx.work)  # warm the bytecode cache
        for rep in range(1, reps + 1):
            m = measure(cmd, env=env, cwd=str(ctx.root), tag=f"s8-{key}-{rep}", work=ctx.work)
            imp = None
            if inproc and m["rc"] == 0:
                imp = float((ctx.work / f"s8-{key}-{rep}.out").read_text().split()[-1])
            rec(res, "-", "S8", key, rep, m, what=what, imports=imp, sent=None, missed=None)


# ---------------------------------------------------------------------------------------------
# Report


def med(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def fmt(x, spec=",.0f", none="—"):
    return none if x is None else format(x, spec)


def summarize(data: dict) -> dict:
    """(size, scenario, tool) -> medians."""
    out = {}
    groups: dict = {}
    for r in data["results"]:
        groups.setdefault((str(r["size"]), r["scenario"], r["tool"]), []).append(r)
    for k, rows in groups.items():
        ok = [r for r in rows if r["rc"] == 0]
        s = {"runs": len(rows), "ok": len(ok), "wall": med(rows, "wall"), "rss_mb": med(rows, "rss_mb"),
             "sent": med(rows, "sent"), "missed": med(rows, "missed"), "expected": med(rows, "expected"),
             "errors": [r["err"] for r in rows if r["rc"] != 0][:1]}
        for extra in ("imports", "duplicates", "requests", "rate_limited", "extra_rows", "killed_at", "first_wall", "resent_after_kill",
                      "failed_requests", "stalled"):
            s[extra] = med(rows, extra)
        out[k] = s
    return out


def floor_for(data, size, scen):
    f = data.get("floors", {})
    if scen in ("S1", "S2", "S3", "S4"):
        return f.get(f"copy-{size}")
    if scen in ("S6", "S7"):
        return f.get("copy-small")
    if scen == "S5":
        return f.get("rate")
    return None


def chart(data: dict, summ: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [str(s) for s in data["sizes"]]
    size = sizes[-1]
    scens = ["S1", "S2", "S3", "S4", "S5", "S6", "S7"]
    tools = data["tools"]
    fig, ax = plt.subplots(figsize=(12, 5.5))
    width = 0.8 / (len(tools) + 1)
    colors = {"sluicegate": "#1f77b4", "dlt": "#ff7f0e", "drt": "#2ca02c", "plain": "#9467bd", "floor": "#7f7f7f"}
    for j, tool in enumerate(["floor", *tools]):
        xs, ys, hatches = [], [], []
        for i, sc in enumerate(scens):
            s = None
            sz = size if sc in ("S1", "S2", "S3", "S4") else (str(data["rate_rows"]) if sc == "S5" else str(data["small_rows"]))
            if tool == "floor":
                v = floor_for(data, size, sc)
                v = v and v["wall"]
            else:
                s = summ.get((sz, sc, tool))
                v = s and s["ok"] and s["wall"]
            if v:
                xs.append(i + (j - len(tools) / 2) * width)
                ys.append(v)
                hatches.append("//" if tool != "floor" and s and s["missed"] else "")
        bars = ax.bar(xs, ys, width, label="physical limit" if tool == "floor" else tool, color=colors.get(tool))
        for b, h in zip(bars, hatches):
            b.set_hatch(h)
    ax.set_yscale("log")
    ax.set_xticks(range(len(scens)))
    short = {"S1": "full sync", "S2": "no change", "S3": "1 % bumped", "S4": "silent upd.\n+ deletes",
             "S5": "rate-limited", "S6": "flaky", "S7": "kill -9\n+ resume"}
    ax.set_xticklabels([f"{s}\n{short[s]}" for s in scens], fontsize=9)
    ax.text(0.99, 0.01, "hatched: rows missed", transform=ax.transAxes, ha="right", va="bottom", fontsize=8)
    ax.set_ylabel("wall time, s (log scale, median; lower is better)")
    ax.set_title(f"sluicegate and peers, {int(size):,}-row table (S5: {data['rate_rows']:,} rows, S6/S7: {data['small_rows']:,} rows)")
    ax.legend()
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def verdicts(data: dict, summ: dict) -> list[str]:
    """One line per scenario: the fastest tool among those that ran cleanly and missed nothing,
    and, where sluicegate is not that tool (or missed rows), a plain statement that it lost."""
    lines = []
    keys = sorted({(k[0], k[1]) for k in summ if k[1] != "S8"}, key=lambda k: (k[1], k[0]))
    for sz, sc in keys:
        cells = {t: summ[(sz, sc, t)] for t in data["tools"] if (sz, sc, t) in summ}
        good = {t: c for t, c in cells.items() if c["ok"] == c["runs"] and not c["missed"]}
        bad = [f"{t} missed {fmt(c['missed'])} rows" if c["missed"] else f"{t} failed"
               for t, c in cells.items() if t not in good]
        tail = f" ({'; '.join(bad)})" if bad else ""
        if not good:
            lines.append(f"- {sc} at {int(sz):,} rows: no tool ran cleanly{tail}.")
            continue
        best = min(good, key=lambda t: good[t]["wall"])
        ours = cells.get("sluicegate")
        if best != "sluicegate" and "sluicegate" in good and ours["wall"] <= 1.05 * good[best]["wall"]:
            lines.append(f"- {sc} ({TITLES[sc]}) at {int(sz):,} rows: a tie within 5 % (noise here): sluicegate "
                         f"{ours['wall']:.2f} s, {best} {good[best]['wall']:.2f} s{tail}.")
            continue
        if best == "sluicegate":
            others = [good[t]["wall"] for t in good if t != best]
            margin = f", {min(others) / ours['wall']:.1f}x faster than the next correct tool" if others else ""
            lines.append(f"- {sc} ({TITLES[sc]}) at {int(sz):,} rows: **sluicegate** wins, {ours['wall']:.2f} s{margin}{tail}.")
        else:
            how = (f"sluicegate took {ours['wall']:.2f} s, {ours['wall'] / good[best]['wall']:.2f}x {best}'s "
                   f"{good[best]['wall']:.2f} s") if ours and ours["wall"] else "sluicegate has no result"
            if ours and ours["missed"]:
                how += f" and missed {fmt(ours['missed'])} rows"
            lines.append(f"- {sc} ({TITLES[sc]}) at {int(sz):,} rows: **sluicegate loses** to {best}: {how}{tail}.")
    s8 = {k[2]: v for k, v in summ.items() if k[1] == "S8"}
    if "sluicegate-imports" in s8:
        peers = [(t, s8[t]["imports"]) for t in ("dlt", "drt", "plain") if t in s8 and s8[t].get("imports") is not None]
        lines.append(f"- S8 (DAG parse cost): sluicegate's operator and sensor add {s8['sluicegate-imports']['imports'] * 1000:.0f} ms "
                     "to a DAG file's parse (S8 target: 50 ms; `bench/dag_parse.sh` holds each example DAG to 20 ms); the peers' top-level imports cost "
                     + ", ".join(f"{t} {v * 1000:.0f} ms" for t, v in peers) + ".")
    return lines


def report(data: dict, out: Path, chart_path: Path) -> None:
    summ = summarize(data)
    chart(data, summ, chart_path)
    m = data["machine"]
    L = []
    w = L.append
    w("# Benchmarks: sluicegate side by side with dlt, drt and a plain Python script")
    w("")
    w("Generated by `bench/run.sh` (see [How to rerun](#how-to-rerun)); the tables and the chart "
      f"(`{chart_path.name}`) are rewritten by every run. Last run: {data['started']} to {data['finished']}.")
    w("")
    w(f"![wall time per scenario](docs/{chart_path.name})")
    w("")
    w("## Machine and versions")
    w("")
    w(f"- CPU: {m['cpu']}, {m['cores']} cores; RAM {m['ram_gb']:.0f} GiB; {m['kernel']}. Everything (PostgreSQL, "
      "the tools, the sinks) shares these cores; other work was running on the machine, so read small differences as noise.")
    w(f"- Load average (1/5/15 min): {'; '.join(f'{k}: {v}' for k, v in data['load'].items())}.")
    w(f"- Table sizes run: {', '.join(f'{int(s):,}' for s in data['sizes'])} rows (S1-S4); S5: {data['rate_rows']:,} rows; "
      f"S6/S7: {data['small_rows']:,} rows. Median of {data['repeat']} runs per cell.")
    for k, v in data["versions"].items():
        w(f"- {k}: {v}")
    w("")
    w("## What is measured")
    w("")
    w("- **Table**: `customers`, 12 columns (bigint id, 6 text, numeric, float8, boolean, 2 timestamptz), about 150 bytes "
      "per row as COPY text, generated with `generate_series` (`bench/harness.py`, `generate`).")
    w("- **Sinks**: S1/S2 `sluicegate emulate webhook --discard` (Rust, counts records, keeps none: a near-free sink); "
      "S3/S4/S6/S7 the same emulator keeping each record by key, so the harness reads back which rows arrived, how many "
      "distinct ones and how many twice (the untimed first sync before S3/S4 goes to the counting sink); S5 `sluicegate emulate hubspot` at 100 requests per rolling 10 s (HubSpot's "
      "Free/Starter budget), 100 inputs per batch, 429 without Retry-After as HubSpot answers.")
    w(f"- **S6's faults** (the keyed sink's `fail_rate`, `stall_every`, `stall_seconds`; `sluicegate emulate webhook "
      f"--fail-rate 0.05 --stall-every N --stall-seconds 30`): every 20th request is answered 503 with `Retry-After: 1`, "
      f"and one request per {data.get('stall_every_rows', STALL_EVERY_ROWS):,} rows' worth of requests (N = "
      f"{data.get('stall_every_rows', STALL_EVERY_ROWS):,} / the tool's batch size, so every tool meets the same number "
      f"of stalls) is applied and then gets no answer for {data.get('stall_seconds', STALL_SECONDS):.0f} s (then a normal "
      "200, if the client still waits). A client whose timeout is at most the stall gives up with the batch in doubt; "
      "its resend shows as *rows sent twice*. Deterministic: every tool meets the same faults at the same request numbers. "
      f"A run still going after {S6_CAP_S} s is killed by the harness and reported as failed.")
    w("- **Rows sent / missed** come from the sink, never from the tool. *Missed* = rows that changed (or exist) "
      "and never arrived. *×limit* = the tool's time over the physical limit measured in the same run: "
      "`psql -c 'COPY (SELECT <12 columns> FROM customers) TO STDOUT' > /dev/null` for every scenario that reads the "
      "table, and for S5 the time the emulator's allowed rate needs (rows / 100 per request / 10 requests per s). "
      "*×sluicegate* = the tool's time over sluicegate's.")
    w("- **rows/s** = rows in the table / wall time (the rate at which a run gets through the table, also when it "
      "sends little); for S5, rows delivered / wall time. S7's wall time is the resumed run's.")
    w("- **Peak RSS**: GNU time's maximum resident set of the tool's process (the largest process of its tree).")
    w("- **Peers**, each set up as its documentation advises, all sending the same JSON arrays to the same sink:")
    w("  - *dlt*: `sql_table(backend=\"connectorx\")` (its fastest backend) with `dlt.sources.incremental(\"updated_at\")` "
      "into a `@dlt.destination(batch_size=1000, loader_file_format=\"parquet\")` function that POSTs with "
      "`dlt.sources.helpers.requests` (retries 429/5xx with backoff). `bench/peers/dlt_sync.py`.")
    w("  - *drt* (drt-core): `rest_api` destination, `body_mode: batch` (1000 records per request, 100 for HubSpot), "
      "`mode: incremental` with `cursor_field: updated_at`, default retry; `rate_limit` lifted for the local sink, "
      "10 requests/s for HubSpot (its documented budget). drt's `incremental_strategy: diff` needs `destination.upsert_key`, "
      "which `rest_api` lacks, and its `hubspot` destination has `api.hubapi.com` built in, so neither could be used here.")
    w("  - *plain*: `bench/peers/plain_sync.py`: psycopg server-side cursor, requests with urllib3 `Retry` (429/5xx, "
      "backoff, Retry-After), batches of 100, a high-water mark on `updated_at` saved when the run ends.")
    w("  - *sluicegate*: `run` with a `webhook` destination (batch 1000, `behavior: mirror`) or the `hubspot` destination "
      "with its defaults; state in SQLite.")
    w("")
    for size in [str(s) for s in data["sizes"]] + ["other"]:
        if size == "other":
            w("## S5-S7: rate-limited, flaky, killed")
            scen_rows = [(str(data["rate_rows"]), "S5"), (str(data["small_rows"]), "S6"), (str(data["small_rows"]), "S7")]
        else:
            w(f"## S1-S4 at {int(size):,} rows")
            scen_rows = [(size, s) for s in ("S1", "S2", "S3", "S4")]
        w("")
        w("| scenario | tool | wall s | rows/s | rows sent | rows missed | peak RSS MB | ×limit | ×sluicegate | notes |")
        w("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for sz, sc in scen_rows:
            fl = floor_for(data, size if size != "other" else None, sc) if sc in ("S1", "S2", "S3", "S4") else floor_for(data, None, sc)
            if fl and any(summ.get((sz, sc, t)) for t in data["tools"]):
                label = "COPY TO STDOUT" if sc != "S5" else "allowed rate"
                rps = int(sz) / fl["wall"]
                note = ""
                if sc == "S5":
                    note = (f"{RATE_LIMIT} requests per {RATE_WINDOW_S:.0f} s, 100 rows each, sustained; a client that spends "
                            f"the first window's budget at once can finish in {fl.get('burst_wall', 0):.0f} s")
                w(f"| {sc} {TITLES[sc]} | *limit: {label}* | {fl['wall']:.2f} | {rps:,.0f} | | | | 1.00 | | {note} |")
            ours = summ.get((sz, sc, "sluicegate"))
            for tool in data["tools"]:
                s = summ.get((sz, sc, tool))
                if not s:
                    continue
                notes = []
                if s["ok"] < s["runs"]:
                    notes.append(f"{s['runs'] - s['ok']} of {s['runs']} runs failed: "
                                 + (s["errors"][0].strip().splitlines() or ["?"])[-1][:160].replace("|", "/"))
                if s.get("expected") is not None and sc in ("S2", "S3", "S4"):
                    notes.append(f"{fmt(s['expected'])} rows changed")
                if s.get("extra_rows"):
                    notes.append(f"{fmt(s['extra_rows'])} unchanged rows sent")
                if sc == "S5":
                    notes.append(f"{fmt(s['requests'])} requests, {fmt(s['rate_limited'])} answered 429")
                if sc == "S6":
                    notes.append(f"{fmt(s['requests'])} requests: {fmt(s['failed_requests'])} failed on purpose, "
                                 f"{fmt(s['stalled'])} stalled {data.get('stall_seconds', STALL_SECONDS):.0f} s; "
                                 f"{fmt(s['duplicates'])} rows sent twice")
                if s["runs"] < data["repeat"]:
                    notes.append(f"**{s['runs']} run{'s' if s['runs'] > 1 else ''}, not {data['repeat']}** (cut for time)")
                if sc == "S7":
                    notes.append(f"killed after {fmt(s['killed_at'])} rows had arrived; the resumed run sent "
                                 f"{fmt(s['resent_after_kill'])}; {fmt(s['duplicates'])} rows sent twice; wall = the resumed run")
                rows_for_rate = int(sz) if sc != "S5" else s["sent"]
                rate = (rows_for_rate / s["wall"]) if s["wall"] and rows_for_rate else None
                xl = s["wall"] / fl["wall"] if fl and s["wall"] else None
                xs = s["wall"] / ours["wall"] if ours and ours["wall"] and s["wall"] else None
                w(f"| {sc} | {tool} | {fmt(s['wall'], '.2f')} | {fmt(rate)} | {fmt(s['sent'])} | {fmt(s['missed'])} | "
                  f"{fmt(s['rss_mb'])} | {fmt(xl, '.2f')} | {fmt(xs, '.2f')} | {'; '.join(notes)} |")
        w("")
    # S8
    w("## S8: DAG parse cost")
    w("")
    w("Wall time of `python -c 'import <module>'` (interpreter start included), and the seconds the tool's own "
      "imports take inside one interpreter: for ours after `import airflow.sdk` (what the operator and sensor add to "
      "an Airflow DAG file), for the peers from a bare interpreter (what a DAG file importing them at top level pays "
      "on every parse). Median of the runs, bytecode cache warm.")
    w("")
    w("| case | what | wall s | imports s |")
    w("|---|---|---:|---:|")
    s8 = {k[2]: v for k, v in summ.items() if k[1] == "S8"}
    whats = {r["tool"]: r.get("what") for r in data["results"] if r["scenario"] == "S8"}
    for key in ("airflow", "sluicegate", "sluicegate-imports", "dlt", "drt", "plain"):
        if key in s8:
            w(f"| {key} | {whats.get(key)} | {s8[key]['wall']:.3f} | {fmt(s8[key].get('imports'), '.3f')} |")
    w("")
    w("## Who wins each scenario (computed from the tables above)")
    w("")
    for line in verdicts(data, summ):
        w(line)
    w("")
    notes = Path(__file__).with_name("notes.md")
    if notes.exists():
        w(notes.read_text().strip())
        w("")
    w("## How to rerun")
    w("")
    w("```")
    w("bench/run.sh                     # 1,000,000 rows (about 40 min on 2 cores)")
    w("BENCH_FEWER=drt@5000000=1 bench/run.sh 1000000 5000000   # the run above (about 90 min)")
    w("bench/run.sh 1000000 5000000     # both sizes")
    w("bench/run.sh 100000              # a quick look")
    w("```")
    w("")
    w("It installs `requirements/bench.txt` into `bench/.venv`, makes the Airflow venv for S8, builds the release "
      "binary, starts a throwaway PostgreSQL 15 under `bench/.work`, runs every scenario and rewrites this file and "
      "the chart. Knobs (`BENCH_REPEAT`, `BENCH_TOOLS`, `BENCH_SCENARIOS`, `BENCH_SMALL_ROWS`, `BENCH_RATE_ROWS`, ...) are "
      "listed at the top of `bench/run.sh`. Raw results: `bench/.work/results.json`; each run's stderr is kept "
      "beside its state under `bench/.work/state/`. `bench/harness.py --report-only` rebuilds the report from them.")
    w("")
    out.write_text("\n".join(L))


# ---------------------------------------------------------------------------------------------


def versions(ctx: Ctx) -> dict:
    def sh(cmd, **kw):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw).stdout.strip()
        except Exception:
            return "?"
    from importlib.metadata import version as v
    rev = sh(["git", "-C", str(ctx.root), "rev-parse", "--short", "HEAD"])
    with psycopg.connect(ctx.pg) as c:
        pgv = c.execute("SHOW server_version").fetchone()[0]
    af = ctx.root / ".venv" / "bin" / "python"
    afv = sh([str(af), "-c", "from importlib.metadata import version; print(version('apache-airflow'))"]) if af.exists() else "not installed"
    return {
        "sluicegate": f"{sh([ctx.bin, '--version'])} (tree {rev}, release build)",
        "PostgreSQL": f"{pgv} (shared_buffers=1GB, fsync=off, synchronous_commit=off)",
        "Python": platform.python_version(),
        "peers": f"dlt {v('dlt')}, connectorx {v('connectorx')}, pyarrow {v('pyarrow')}, drt-core {v('drt-core')}, "
                 f"psycopg {v('psycopg')}, requests {v('requests')}, urllib3 {v('urllib3')}",
        "Airflow (S8)": afv,
    }


def machine() -> dict:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    ram = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gb": ram, "kernel": f"Linux {platform.release()}"}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("sizes", nargs="*", type=int, default=[1_000_000])
    ap.add_argument("--root", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--bin")
    ap.add_argument("--pg")
    ap.add_argument("--out", required=True)
    ap.add_argument("--chart", required=True)
    ap.add_argument("--report-only", action="store_true")
    a = ap.parse_args()
    a.repeat = int(os.environ.get("BENCH_REPEAT", "3"))
    a.tools = [t for t in os.environ.get("BENCH_TOOLS", ",".join(TOOLS)).split(",") if t]
    a.scenarios = [s for s in os.environ.get("BENCH_SCENARIOS", ",".join(SCENARIOS)).split(",") if s]
    a.small_rows = int(os.environ.get("BENCH_SMALL_ROWS", "100000"))
    a.rate_rows = int(os.environ.get("BENCH_RATE_ROWS", "30000"))
    work = Path(a.work).resolve()
    a.bin = a.bin and str(Path(a.bin).resolve())
    results_path = work / "results.json"
    if a.report_only:
        data = json.loads(results_path.read_text())
        report(data, Path(a.out), Path(a.chart))
        return 0
    for t in a.tools:
        if t not in TOOLS:
            ap.error(f"unknown tool {t!r}; one of {', '.join(TOOLS)}")

    ctx = Ctx(a)
    shutil.rmtree(work / "state", ignore_errors=True)
    data = {"started": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "sizes": a.sizes, "tools": a.tools,
            "repeat": a.repeat, "stall_seconds": STALL_SECONDS, "stall_every_rows": STALL_EVERY_ROWS,
            "fewer": os.environ.get("BENCH_FEWER", ""), "small_rows": a.small_rows, "rate_rows": a.rate_rows, "machine": machine(),
            "versions": versions(ctx), "load": {"start": loadavg()}, "floors": {}, "results": []}
    if os.environ.get("BENCH_RESUME") and results_path.exists():
        # Add to the last run's results (other scenarios or sizes), keeping what it measured.
        old = json.loads(results_path.read_text())
        data["started"] = old["started"]
        data["sizes"] = sorted(set(old["sizes"]) | set(a.sizes))
        data["tools"] = old["tools"]
        data["load"] = {**old["load"], **{f"resumed {dt.datetime.now():%H:%M}": loadavg()}}
        data["floors"] = old["floors"]
        data["results"] = old["results"]
        data["resumed"] = old.get("resumed", []) + [dt.datetime.now().strftime("%Y-%m-%d %H:%M")]
        for k in ("stall_seconds", "stall_every_rows", "fewer", "repeat"):
            data[k] = old.get(k, data[k])
        data["s34_skip"] = os.environ.get("BENCH_S34_SKIP", "") or old.get("s34_skip", "")
    res = data["results"]

    def save():
        results_path.write_text(json.dumps(data, indent=1, default=str))

    sc = set(a.scenarios)
    fast = Emulator(ctx.bin, "webhook", ["--discard"], work) if sc & {"S1", "S2", "S3", "S4"} else None
    keyed = Emulator(ctx.bin, "webhook", [], work) if sc & {"S3", "S4", "S6", "S7"} else None
    hub = Emulator(ctx.bin, "hubspot", ["--rate-limit", str(RATE_LIMIT), "--interval-ms", str(int(RATE_WINDOW_S * 1000)),
                                        "--daily-limit", "0"], work,
                   env={"HUBSPOT_EMULATOR_TOKEN": HUBSPOT_TOKEN}) if "S5" in sc else None
    try:
        for n in a.sizes:
            if not set(a.scenarios) & {"S1", "S2", "S3", "S4"}:
                break
            generate(ctx.pg, "customers", n)
            log(f"size {n:,}: load average {loadavg()}")
            data["load"][f"{n:,} rows"] = loadavg()
            fl = copy_floor(ctx.pg, "customers", a.repeat, work)
            if f"copy-{n}" in data["floors"]:  # a resumed run: the median of every measurement
                fl["walls"] = data["floors"][f"copy-{n}"]["walls"] + fl["walls"]
                fl["wall"] = statistics.median(fl["walls"])
            data["floors"][f"copy-{n}"] = fl
            log(f"COPY TO STDOUT of {n:,} rows: {data['floors'][f'copy-{n}']['wall']:.2f} s")
            if {"S1", "S2"} & set(a.scenarios):
                s1_s2(ctx, a, res, n, fast)
                save()
            if {"S3", "S4"} & set(a.scenarios):
                s3_s4(ctx, a, res, n, keyed, fast)
                save()
        if "S5" in a.scenarios:
            generate(ctx.pg, "customers_rate", a.rate_rows)
            req = -(-a.rate_rows // 100)
            # The allowed rate: RATE_LIMIT requests per window, sustained. (Spending the first
            # window's budget at once can finish one window earlier: reported beside it.)
            data["floors"]["rate"] = {"wall": req / RATE_LIMIT * RATE_WINDOW_S,
                                      "burst_wall": max(0, -(-req // RATE_LIMIT) - 1) * RATE_WINDOW_S}
            s5(ctx, a, res, hub)
            save()
        if {"S6", "S7"} & set(a.scenarios):
            generate(ctx.pg, "customers_small", a.small_rows)
            data["floors"]["copy-small"] = copy_floor(ctx.pg, "customers_small", a.repeat, work)
            if "S6" in a.scenarios:
                s6(ctx, a, res, keyed)
                save()
            if "S7" in a.scenarios:
                s7(ctx, a, res, keyed)
                save()
        if "S8" in a.scenarios:
            s8(ctx, a, res)
    finally:
        for e in (fast, keyed, hub):
            if e:
                e.stop()
        data["load"]["end"] = loadavg()
        data["finished"] = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
        save()
    report(data, Path(a.out), Path(a.chart))
    log(f"wrote {a.out} and {a.chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
