//! Crash harness: `kill -9` the `sluicegate run` process at random points and check that
//! nothing is lost.
//!
//! The invariant under test: sync state advances only after the destination acknowledged a
//! batch. So however often a run is killed, the next run sends exactly what the destination
//! does not have yet, and in the end the destination holds every warehouse row at its final
//! value. The only price of a kill is the batch that was in flight: delivered, but killed
//! before its acknowledgement was recorded, so it is sent again (a "duplicate").
//!
//! The harness, all through the real binary (`CARGO_BIN_EXE_sluicegate`) in subprocesses:
//! 1. a SQLite warehouse of `ROWS` rows (`customers`, identifier `email`) and a project with a
//!    webhook destination (`batch_size` 500) pointing at `sluicegate emulate webhook --port 0`;
//! 2. calibration: one unkilled full delivery into a separate state store, to learn how long a
//!    run takes (the emulator is reset afterwards);
//! 3. loop: start `sluicegate run customers`, SIGKILL it after a random delay (seeded RNG,
//!    spread over the calibrated run time), sometimes change warehouse rows in between
//!    (updates, NULLs, new rows), until `SLUICEGATE_CRASH_KILLS` processes (default 20) were
//!    killed while still running;
//! 4. a run to completion, then checks: the emulator's keyed store equals the final warehouse
//!    rows mapped by the project (none missing, none extra, every value final); the run
//!    completed; one more run sends 0 rows; `duplicates <= kills * batch_size * max_concurrency` (the batches in flight); each killed
//!    run that was working ended `failed` with "executor lost"; no run is left `working`.
//!
//! A killed run stays `working` in the state store. The engine marks a run whose executor
//! process is gone on this host as failed ("executor lost") when the next run starts, so the
//! next run is not blocked. An engine without that recovery refuses the next run with "sync 1
//! already has run N working"; the harness then stops with that message. To exercise the rest
//! of the harness against such an engine, `SLUICEGATE_CRASH_EMULATE_LOST=1` makes the harness
//! itself mark `working` runs failed in the state store after each kill (and skips the
//! "executor lost" check, which then proves nothing).
//!
//! Environment: `SLUICEGATE_CRASH_KILLS` (default 20), `SLUICEGATE_CRASH_SEED` (default: from
//! the clock; printed), `SLUICEGATE_CRASH_ROWS` (default 100000), `SLUICEGATE_CRASH_KEEP=1`
//! keeps the work directory (it is always kept when the test fails; the path is printed). `scripts/crash.sh N` runs this test with N kills.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};

const BATCH_SIZE: u64 = 500;
/// Batches the webhook destination may have in flight at once.
const MAX_CONCURRENCY: u64 = 2;
const SYNC: &str = "customers";
/// A run that takes longer than this (no kill) is taken as hung.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

// ------------------------------------------------------------------------------------------
// Small utilities: a seeded RNG, environment knobs, HTTP/1.0 to the emulator.

/// splitmix64: deterministic for a seed, good enough to pick delays and mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")))
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// One HTTP/1.0 request (the emulator answers with a Content-Length body and closes).
fn http(addr: &str, method: &str, path: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("cannot connect to the emulator at {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(s, "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP response");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("an HTTP status");
    (status, raw[split + 4..].to_vec())
}

// ------------------------------------------------------------------------------------------
// The emulator subprocess.

struct Emulator {
    child: Child,
    /// Kept open so that the emulator never writes into a closed pipe.
    _stdout: BufReader<ChildStdout>,
    url: String,
    addr: String,
    /// Counters from before the last log trim.
    carried: Counters,
}

impl Emulator {
    fn start(bin: &Path, log: &Path) -> Emulator {
        let mut child = Command::new(bin)
            .args(["emulate", "webhook", "--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(log).unwrap())
            .spawn()
            .expect("start `sluicegate emulate webhook`");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let url = line.trim().to_string();
        assert!(url.starts_with("http://"), "the emulator printed {line:?} instead of its URL (log: {})", log.display());
        let addr = url.trim_start_matches("http://").trim_end_matches('/').to_string();
        Emulator { child, _stdout: stdout, url, addr, carried: Counters::default() }
    }

    /// `GET /_emulator/received?records=false[&store=true]`.
    fn received(&self, store: bool) -> Value {
        let path = if store { "/_emulator/received?records=false&store=true" } else { "/_emulator/received?records=false" };
        let (status, body) = http(&self.addr, "GET", path);
        assert_eq!(status, 200, "emulator: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).expect("emulator JSON")
    }

    /// The current record per key.
    fn store(&self) -> BTreeMap<String, Value> {
        match self.received(true).get("store") {
            Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            other => panic!("the emulator answered no keyed store (`store`): {other:?}"),
        }
    }

    /// The counters since the emulator started, across log trims.
    fn counters(&self) -> Counters {
        let stats = &self.received(false)["stats"];
        let stat = |name: &str| {
            stats.get(name).and_then(Value::as_u64).unwrap_or_else(|| panic!("emulator stats have no `{name}`: {stats}"))
        };
        let now = Counters {
            requests: stat("requests"),
            accepted: stat("records_accepted"),
            rejected: stat("records_rejected"),
            duplicates: stat("duplicates"),
        };
        self.carried.plus(&now)
    }

    /// The emulator logs every accepted record; forget the log (and its counters, which are
    /// carried over here) once it is large. The keyed store stays.
    fn trim_log(&mut self) {
        let total = self.counters();
        if total.accepted - self.carried.accepted < 300_000 {
            return;
        }
        let (status, body) = http(&self.addr, "POST", "/_emulator/reset");
        assert!(status / 100 == 2, "emulator reset: {status} {}", String::from_utf8_lossy(&body));
        self.carried = total;
        eprintln!("          emulator: arrival log trimmed; totals so far {total:?}");
    }

    /// Forget everything, the keyed store included.
    fn reset_all(&mut self) {
        let (status, body) = http(&self.addr, "POST", "/_emulator/reset?store=true");
        assert!(status / 100 == 2, "emulator reset: {status} {}", String::from_utf8_lossy(&body));
        self.carried = Counters::default();
    }
}

/// Emulator counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counters {
    requests: u64,
    accepted: u64,
    rejected: u64,
    /// Upserts that carried exactly the record already stored: resends.
    duplicates: u64,
}

impl Counters {
    fn plus(&self, o: &Counters) -> Counters {
        Counters {
            requests: self.requests + o.requests,
            accepted: self.accepted + o.accepted,
            rejected: self.rejected + o.rejected,
            duplicates: self.duplicates + o.duplicates,
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------------------------------
// The warehouse and the project.

const COLUMNS: &str = "email, first_name, last_name, plan, score, vip, signed_up";

/// How the project maps a warehouse row: (column, field). The identifier comes first.
const MAPPING: &[(&str, &str)] = &[
    ("email", "email"),
    ("first_name", "firstname"),
    ("last_name", "lastname"),
    ("plan", "plan"),
    ("score", "lead_score"),
    ("vip", "is_vip"),
    ("signed_up", "signed_up_on"),
];

fn project_yml(webhook_url: &str) -> String {
    let mut mappings = String::new();
    for (from, to) in &MAPPING[1..] {
        mappings.push_str(&format!("      - {{ from: {from}, to: {to} }}\n"));
    }
    format!(
        r#"# Written by tests/crash.rs.
sources:
  warehouse:
    url: sqlite://warehouse.db
destinations:
  hook:
    type: webhook
    url: {webhook_url}/customers
    batch_size: {BATCH_SIZE}
    max_concurrency: {MAX_CONCURRENCY}
    headers:
      # The destination names its key field itself; saying it here too is harmless.
      X-Sluicegate-Key: email
    retry:
      max_attempts: 5
      initial_backoff: 10ms
      max_backoff: 100ms
syncs:
  - id: 1
    name: {SYNC}
    source:
      connection: warehouse
      table: customers
    destination:
      connection: hook
      object: customers
    primary_identifier:
      from: email
      to: email
    mappings:
{mappings}    behavior: upsert
"#
    )
}

struct Warehouse {
    rt: tokio::runtime::Runtime,
    pool: SqlitePool,
    next_id: i64,
}

impl Warehouse {
    fn create(path: &Path, rows: i64) -> Warehouse {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let pool = rt.block_on(async {
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(SqliteConnectOptions::new().filename(path).create_if_missing(true))
                .await
                .unwrap();
            sqlx::raw_sql(
                "CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, first_name TEXT NOT NULL, \
                 last_name TEXT, plan TEXT NOT NULL, score INTEGER NOT NULL, vip BOOLEAN NOT NULL, signed_up TEXT NOT NULL)",
            )
            .execute(&pool)
            .await
            .unwrap();
            sqlx::query(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
                 INSERT INTO customers SELECT i, 'customer' || i || '@example.com', 'First' || (i % 997), \
                 CASE WHEN i % 13 = 0 THEN NULL ELSE 'Last' || (i % 1009) END, \
                 CASE i % 4 WHEN 0 THEN 'free' WHEN 1 THEN 'starter' WHEN 2 THEN 'pro' ELSE 'enterprise' END, \
                 i % 1000, i % 7 = 0, date('2020-01-01', '+' || (i % 1500) || ' days') FROM n",
            )
            .bind(rows)
            .execute(&pool)
            .await
            .unwrap();
            pool
        });
        Warehouse { rt, pool, next_id: rows + 1 }
    }

    fn exec(&self, sql: &str, binds: &[i64]) -> u64 {
        self.rt.block_on(async {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
            for b in binds {
                q = q.bind(*b);
            }
            q.execute(&self.pool).await.unwrap_or_else(|e| panic!("{sql}: {e}")).rows_affected()
        })
    }

    /// Change some rows so that later runs have fresh work and final values differ from the
    /// first delivery. `big` changes a third of the rows or more. Returns a description.
    fn mutate(&mut self, rng: &mut Rng, round: u64, big: bool) -> String {
        let kind = if big { 0 } else { rng.range(0, 3) };
        match kind {
            0 => {
                let m = if big { rng.range(1, 3) } else { rng.range(2, 20) } as i64;
                let r = rng.range(0, m as u64 - 1) as i64;
                let n = self.exec(
                    "UPDATE customers SET score = score + ?1, plan = CASE plan WHEN 'free' THEN 'starter' \
                     WHEN 'starter' THEN 'pro' WHEN 'pro' THEN 'enterprise' ELSE 'free' END WHERE id % ?2 = ?3",
                    &[round as i64, m, r],
                );
                format!("updated score and plan of {n} rows")
            }
            1 => {
                let m = rng.range(50, 500) as i64;
                let r = rng.range(0, m as u64 - 1) as i64;
                let n = self.exec(
                    "UPDATE customers SET last_name = CASE WHEN last_name IS NULL THEN 'Restored' || ?1 ELSE NULL END \
                     WHERE id % ?2 = ?3",
                    &[round as i64, m, r],
                );
                format!("toggled last_name NULL on {n} rows")
            }
            2 => {
                let m = rng.range(3, 30) as i64;
                let r = rng.range(0, m as u64 - 1) as i64;
                let n = self.exec("UPDATE customers SET vip = NOT vip WHERE id % ?1 = ?2", &[m, r]);
                format!("flipped vip on {n} rows")
            }
            _ => {
                let count = rng.range(100, 2000) as i64;
                let first = self.next_id;
                self.next_id += count;
                let n = self.exec(
                    "WITH RECURSIVE n(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2) \
                     INSERT INTO customers SELECT i, 'new' || i || '@example.com', 'New' || (i % 31), NULL, 'free', \
                     i % 50, 0, date('2026-01-01', '+' || (i % 300) || ' days') FROM n",
                    &[first, first + count - 1],
                );
                format!("inserted {n} new rows")
            }
        }
    }

    /// Every row as the destination should hold it: key → mapped record.
    fn expected(&self) -> BTreeMap<String, Value> {
        self.rt.block_on(async {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM customers")))
                .fetch_all(&self.pool)
                .await
                .unwrap();
            let mut out = BTreeMap::new();
            for row in rows {
                let email: String = row.get(0);
                let vip: i64 = row.get(5);
                let values = [
                    json!(email),
                    json!(row.get::<String, _>(1)),
                    json!(row.get::<Option<String>, _>(2)),
                    json!(row.get::<String, _>(3)),
                    json!(row.get::<i64, _>(4)),
                    json!(vip != 0),
                    json!(row.get::<String, _>(6)),
                ];
                let mut rec = serde_json::Map::new();
                for ((_, to), v) in MAPPING.iter().zip(values) {
                    rec.insert((*to).to_string(), v);
                }
                out.insert(email, Value::Object(rec));
            }
            out
        })
    }
}

// ------------------------------------------------------------------------------------------
// Runs of the CLI.

struct Cli {
    bin: PathBuf,
    project: PathBuf,
    logs: PathBuf,
    n: u64,
}

/// How one `sluicegate run` process ended.
struct Ended {
    status: ExitStatus,
    elapsed: Duration,
    stdout: String,
    stderr: String,
}

impl Ended {
    fn killed(&self) -> bool {
        self.status.signal() == Some(SIGKILL)
    }
    fn describe(&self) -> String {
        format!("{} after {:.3}s\n--- stdout\n{}\n--- stderr\n{}", self.status, self.elapsed.as_secs_f64(), self.stdout, self.stderr)
    }
    /// The run record printed by `run --json`.
    fn run_json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("`run --json` printed no JSON run ({e}): {}", self.describe()))
    }
}

const SIGKILL: i32 = 9;

impl Cli {
    fn command(&self, extra_state: Option<&Path>) -> Command {
        let mut c = Command::new(&self.bin);
        c.env_remove("SLUICEGATE_STATE").env_remove("SLUICEGATE_PROJECT").env("SLUICEGATE_LOG", "warn");
        c.current_dir(self.project.parent().unwrap()).arg("--project").arg(&self.project);
        if let Some(state) = extra_state {
            c.arg("--state").arg(format!("sqlite://{}", state.display()));
        }
        c
    }

    /// Start `sluicegate run SYNC --json`; kill it with SIGKILL once `kill_after` has passed
    /// (if it is still running then). Waits for the process to end.
    fn run(&mut self, kill_after: Option<Duration>, state: Option<&Path>) -> Ended {
        self.n += 1;
        let out = self.logs.join(format!("run-{:03}.out", self.n));
        let err = self.logs.join(format!("run-{:03}.err", self.n));
        let mut child: Child = self
            .command(state)
            .args(["run", SYNC, "--json"])
            .stdin(Stdio::null())
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap())
            .spawn()
            .expect("start `sluicegate run`");
        let start = Instant::now();
        let deadline = kill_after.unwrap_or(RUN_TIMEOUT);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            let elapsed = start.elapsed();
            if elapsed >= deadline {
                if kill_after.is_none() {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("`sluicegate run` did not end within {RUN_TIMEOUT:?}; logs in {}", self.logs.display());
                }
                child.kill().unwrap(); // SIGKILL
                break child.wait().unwrap();
            }
            std::thread::sleep((deadline - elapsed).min(Duration::from_millis(2)));
        };
        Ended {
            status,
            elapsed: start.elapsed(),
            stdout: std::fs::read_to_string(&out).unwrap_or_default(),
            stderr: std::fs::read_to_string(&err).unwrap_or_default(),
        }
    }

    /// `sluicegate runs --json`: every run, newest first.
    fn runs(&self) -> Vec<Value> {
        let out = self.command(None).args(["runs", "--json", "--limit", "100000"]).output().expect("run `sluicegate runs`");
        assert!(
            out.status.success(),
            "`sluicegate runs --json` failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        match serde_json::from_slice(&out.stdout) {
            Ok(Value::Array(runs)) => runs,
            other => panic!("`sluicegate runs --json` printed no JSON list: {other:?}"),
        }
    }
}

fn id_of(run: &Value) -> i64 {
    run["id"].as_i64().unwrap_or_else(|| panic!("a run without an id: {run}"))
}

fn status_of(run: &Value) -> &str {
    run["status"].as_str().unwrap_or("?")
}

/// Mark every `working` run failed, as an engine that recovers lost executors would
/// (only with `SLUICEGATE_CRASH_EMULATE_LOST=1`; writes the state store directly).
fn emulate_executor_lost(wh: &Warehouse, state: &Path) -> u64 {
    wh.rt.block_on(async {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(SqliteConnectOptions::new().filename(state))
            .await
            .unwrap();
        let n = sqlx::query(
            "UPDATE sync_runs SET status = 'failed', error_message = 'executor lost (marked by the crash harness)', \
             completed_at = updated_at WHERE status = 'working'",
        )
        .execute(&pool)
        .await
        .unwrap()
        .rows_affected();
        pool.close().await;
        n
    })
}

/// The work directory: removed at the end, unless asked to keep it or the test failed (then
/// its path is printed: warehouse, project, state store, every run's output in `logs/`).
struct WorkDir(Option<tempfile::TempDir>, bool);

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Some(tmp) = self.0.take() {
            if self.1 || std::thread::panicking() {
                eprintln!("crash harness: work directory kept: {}", tmp.keep().display());
            }
        }
    }
}

/// What differs between the destination's store and the expected records, briefly.
fn store_diff(want: &BTreeMap<String, Value>, got: &BTreeMap<String, Value>) -> String {
    let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let differ: Vec<&String> = want.iter().filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v)).map(|(k, _)| k).collect();
    let mut s = format!(
        "{} expected, {} stored: {} missing, {} extra, {} with another value",
        want.len(),
        got.len(),
        missing.len(),
        extra.len(),
        differ.len()
    );
    for k in missing.iter().take(3) {
        s.push_str(&format!("\n  missing {k}: want {}", want[*k]));
    }
    for k in extra.iter().take(3) {
        s.push_str(&format!("\n  extra {k}: {}", got[*k]));
    }
    for k in differ.iter().take(5) {
        s.push_str(&format!("\n  differs {k}:\n    want {}\n    got  {}", want[*k], got[*k]));
    }
    s
}

#[test]
fn kill_9_at_random_points_loses_nothing() {
    let kills_wanted = env_u64("SLUICEGATE_CRASH_KILLS").unwrap_or(20);
    let rows = env_u64("SLUICEGATE_CRASH_ROWS").unwrap_or(100_000) as i64;
    let seed = env_u64("SLUICEGATE_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    let emulate_lost = env_flag("SLUICEGATE_CRASH_EMULATE_LOST");
    let mut rng = Rng(seed);
    eprintln!("crash harness: seed {seed} (SLUICEGATE_CRASH_SEED={seed} repeats it), {rows} rows, {kills_wanted} kills");

    let tmp = tempfile::Builder::new().prefix("sluicegate-crash-").tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let _work = WorkDir(Some(tmp), env_flag("SLUICEGATE_CRASH_KEEP"));
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();

    let mut wh = Warehouse::create(&dir.join("warehouse.db"), rows);
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_sluicegate"));
    let mut emu = Emulator::start(&bin, &logs.join("emulator.err"));
    let project = dir.join("sluicegate.yml");
    std::fs::write(&project, project_yml(&emu.url)).unwrap();
    let state = dir.join("sluicegate_state.db");
    let mut cli = Cli { bin, project, logs: logs.clone(), n: 0 };

    // Calibration: how long one unkilled full delivery takes (separate state store).
    let calib = cli.run(None, Some(&dir.join("calibration_state.db")));
    assert!(calib.status.success(), "calibration run failed: {}", calib.describe());
    let full = calib.elapsed;
    let store = emu.store();
    assert_eq!(store.len() as i64, rows, "calibration delivered {} of {rows} rows: {:?}", store.len(), emu.counters());
    emu.reset_all();
    eprintln!("crash harness: an unkilled full run of {rows} rows takes {:.2}s; kills fall in 0..{:.2}s", full.as_secs_f64(), full.as_secs_f64() * 1.1);

    // The kills.
    let mut kills = 0u64;
    let mut attempts = 0u64;
    let mut completed_between = 0u64;
    let mut last_seen = 0i64;
    // Runs created by killed processes: id → status right after the kill.
    let mut killed_runs: BTreeMap<i64, String> = BTreeMap::new();
    let mut delays_of_kills: Vec<f64> = Vec::new();
    // Kills before the run was created, before its first batch was acknowledged, mid-delivery.
    let mut phases = [0u64; 3];
    let max_attempts = kills_wanted * 8 + 20;
    while kills < kills_wanted {
        attempts += 1;
        assert!(
            attempts <= max_attempts,
            "only {kills} of {kills_wanted} processes were still running when killed after {max_attempts} attempts"
        );
        let delay = full.mul_f64(rng.unit() * 1.1);
        let ended = cli.run(Some(delay), None);
        let new_runs: Vec<Value> = cli.runs().into_iter().filter(|r| id_of(r) > last_seen).collect();
        if let Some(max) = new_runs.iter().map(id_of).max() {
            last_seen = max;
        }
        if ended.killed() {
            kills += 1;
            delays_of_kills.push(delay.as_secs_f64());
            assert!(new_runs.len() <= 1, "one process created {} runs: {new_runs:?}", new_runs.len());
            for r in &new_runs {
                killed_runs.insert(id_of(r), status_of(r).to_string());
            }
            // Where the kill fell: before the run existed, before its first batch, or mid-delivery.
            let sent = new_runs.first().map(|r| r["records_processed"].as_i64().unwrap_or(0));
            phases[match sent {
                None => 0,
                Some(0) => 1,
                Some(_) => 2,
            }] += 1;
            let what = match new_runs.first() {
                Some(r) => format!("run {} left {} with {} rows recorded as sent", id_of(r), status_of(r), sent.unwrap_or(0)),
                None => "before its run was created".into(),
            };
            eprintln!("kill {kills:>3}: after {:.3}s, {what}", delay.as_secs_f64());
            if emulate_lost {
                emulate_executor_lost(&wh, &state);
            }
        } else {
            let text = format!("{}{}", ended.stdout, ended.stderr);
            if text.contains("already has run") {
                panic!(
                    "after a kill, the next run was refused: the engine does not yet fail runs whose executor is gone \
                     (\"executor lost\"). Set SLUICEGATE_CRASH_EMULATE_LOST=1 to have the harness do it.\n{}",
                    ended.describe()
                );
            }
            assert!(ended.status.success(), "a run ended on its own but not well: {}", ended.describe());
            let run = ended.run_json();
            assert_eq!(status_of(&run), "completed", "{}", ended.describe());
            completed_between += 1;
        }
        // New work for the next run: always after a run that finished (else most of the next
        // runs would have nothing left to send), sometimes after a kill.
        let finished = !ended.killed();
        if finished || rng.chance(0.3) {
            let what = wh.mutate(&mut rng, attempts, finished);
            eprintln!("          warehouse: {what}");
        }
        emu.trim_log();
    }

    // To completion.
    let last = cli.run(None, None);
    assert!(last.status.success(), "the run after the kills failed: {}", last.describe());
    let last_run = last.run_json();
    assert_eq!(status_of(&last_run), "completed", "{}", last.describe());

    let stats = emu.counters();
    let store = emu.store();
    let want = wh.expected();
    assert!(store == want, "the destination does not hold the final warehouse rows: {}", store_diff(&want, &store));

    // Nothing left to send.
    let requests_before = stats.requests;
    let again = cli.run(None, None);
    assert!(again.status.success(), "the no-change run failed: {}", again.describe());
    let again_run = again.run_json();
    assert_eq!(status_of(&again_run), "completed", "{}", again.describe());
    assert_eq!(again_run["records_processed"].as_i64(), Some(0), "a run after completion sent rows: {}", again.describe());
    assert_eq!(emu.counters().requests, requests_before, "a run after completion made requests");

    // Resends are bounded by the batch in flight at each kill.
    let duplicates = stats.duplicates;
    assert_eq!(stats.rejected, 0, "the emulator rejected records: {stats:?}");
    assert!(
        duplicates <= kills * BATCH_SIZE * MAX_CONCURRENCY,
        "{duplicates} records were resent unchanged; {kills} kills with up to {MAX_CONCURRENCY} batches of {BATCH_SIZE} in flight allow at most {}",
        kills * BATCH_SIZE * MAX_CONCURRENCY
    );

    // What became of the killed runs.
    let runs = cli.runs();
    let by_id: BTreeMap<i64, &Value> = runs.iter().map(|r| (id_of(r), r)).collect();
    let still_working: Vec<i64> = runs.iter().filter(|r| status_of(r) == "working").map(id_of).collect();
    assert!(still_working.is_empty(), "runs left working after the last run completed: {still_working:?}");
    let mut lost = 0;
    let mut finished_before_kill = 0;
    let mut left_queued = BTreeSet::new();
    for (id, at_kill) in &killed_runs {
        let r = by_id.get(id).unwrap_or_else(|| panic!("run {id} disappeared from `runs --json`"));
        match status_of(r) {
            "completed" => finished_before_kill += 1,
            "failed" => {
                let msg = r["error_message"].as_str().unwrap_or("");
                if !emulate_lost {
                    assert!(msg.contains("executor lost"), "killed run {id} failed with {msg:?}, not \"executor lost\": {r}");
                }
                lost += 1;
            }
            "queued" => {
                left_queued.insert(*id);
            }
            other => panic!("killed run {id} (status {at_kill} right after the kill) ended {other}: {r}"),
        }
    }
    let mut d = delays_of_kills.clone();
    d.sort_by(f64::total_cmp);
    let pct = |p: f64| d.get(((d.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0);
    eprintln!(
        "crash harness: seed {seed}: {kills} kills in {attempts} attempts ({completed_between} runs finished before their kill); \
         kill delays min/median/max {:.3}/{:.3}/{:.3}s of a {:.2}s full run; \
         {} before the run existed, {} before its first acknowledged batch, {} mid-delivery",
        pct(0.0),
        pct(0.5),
        pct(1.0),
        full.as_secs_f64(),
        phases[0],
        phases[1],
        phases[2]
    );
    eprintln!(
        "crash harness: destination holds {} records, all final; {} requests, {} accepted, {duplicates} duplicates (bound {}); \
         killed runs: {lost} failed (executor lost), {finished_before_kill} completed before the kill, {} left queued",
        store.len(),
        requests_before,
        stats.accepted,
        kills * BATCH_SIZE * MAX_CONCURRENCY,
        left_queued.len()
    );
    assert!(
        left_queued.is_empty(),
        "runs of killed processes are still queued (killed between trigger and claim; nothing will ever run them): {left_queued:?}"
    );
    drop(emu);
}
