//! Faults around a run, each ending in a clear run error and a correct next run (the
//! destination then holds exactly the warehouse rows, and the state never claimed a row the
//! destination had not accepted):
//!
//! - destination connection resets, stalls (no answer) and slow answers past the timeout, mid-run
//!   (a TCP front before the webhook emulator switches mode while the run is delivering);
//! - the SQLite state store locked by another process past its busy timeout, mid-run;
//! - the SQLite state store's disk full (a small tmpfs when this process may mount one, else a
//!   file-size limit, `ulimit -f`, on the `sluicegate run` subprocess; `SLUICEGATE_TEST_NO_MOUNT=1`
//!   forces the latter);
//! - lease clock jumps: a working run's lease moved into the past (the clock jumped forward) is
//!   taken over by another executor and the run stops; a dead executor's lease far in the
//!   future (the clock jumped back) does not block the next run;
//! - Postgres: the source's backend terminated (`pg_terminate_backend`) in the middle of the
//!   COPY scan; the Postgres state store stopped while a run is delivering and kept down until
//!   the run fails naming the store; a Postgres state store unreachable from the start.
//!
//! The Postgres tests need `SLUICEGATE_TEST_PG_URL` (scripts/services.sh); without it they
//! print a skip note, unless `SLUICEGATE_REQUIRE_ALL=1`, where they fail.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use serde_json::Value;
use sluicegate::config::SyncRef;
use sluicegate::emulator::webhook::{Faults, WebhookEmulator};
use sluicegate::engine::{no_progress, Engine, EngineOptions};
use sluicegate::store::{RunRecord, RunStatus, IN_DOUBT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common::{emulator, Warehouse};

fn project(url: &str, source_url: &str, batch: usize, timeout: &str) -> String {
    format!(
        "sources:\n  warehouse:\n    url: {source_url}\ndestinations:\n  hook:\n    type: webhook\n    url: {url}/contacts\n    batch_size: {batch}\n    \
         timeout: {timeout}\n    max_concurrency: 2\n    retry: {{max_attempts: 2, initial_backoff: 10ms, max_backoff: 20ms}}\nsyncs:\n  - id: 1\n    name: contacts\n    \
         behavior: mirror\n    source: {{connection: warehouse, table: contacts}}\n    destination: {{connection: hook, object: contacts}}\n    \
         primary_identifier: {{from: email, to: email}}\n    mappings:\n      - {{from: name, to: full_name}}\n      - {{from: score, to: score}}\n"
    )
}

fn sqlite_project(url: &str, batch: usize, timeout: &str) -> String {
    project(url, "sqlite://warehouse.db", batch, timeout)
}

async fn open(p: &Path, state: Option<String>, lease: Duration) -> Engine {
    Engine::open(p, EngineOptions { state, lease: Some(lease), ..Default::default() }).await.unwrap()
}

async fn trigger(engine: &Engine) -> i64 {
    engine.trigger(&SyncRef::Id(1), false, &common::reason()).await.unwrap()
}

/// The SQLite warehouse's contacts as the destination should hold them.
async fn expected_sqlite(wh: &Warehouse) -> BTreeMap<String, Value> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as("SELECT email, name, score FROM contacts").fetch_all(&wh.pool).await.unwrap();
    rows.into_iter().map(|(e, n, s)| (e.clone(), serde_json::json!({"email": e, "full_name": n, "score": s}))).collect()
}

/// Every acknowledged state entry names a record the destination holds; returns the count.
async fn assert_state_within_destination(engine: &Engine, emu: &WebhookEmulator) -> usize {
    let store = emu.store();
    let state: Vec<_> = engine.store().state_stream(1).try_collect().await.unwrap();
    for e in &state {
        if e.fingerprint != IN_DOUBT {
            assert!(store.contains_key(&e.identifier), "the state claims {} which the destination does not hold", e.identifier);
        }
    }
    state.len()
}

/// The next run, without the fault, completes and the destination equals `expected`; one more
/// run sends nothing.
async fn assert_next_run_converges(engine: &Engine, emu: &WebhookEmulator, expected: &BTreeMap<String, Value>) -> RunRecord {
    let r = engine.run(trigger(engine).await, &no_progress).await.unwrap();
    assert_eq!(r.status, RunStatus::Completed, "the run after the fault: {:?}", r.error_message);
    assert_eq!(r.counts.records_failed, Some(0));
    let got = emu.store();
    assert_eq!(got.len(), expected.len(), "destination rows after the fault");
    assert!(got == *expected, "the destination differs from the warehouse after the fault");
    assert_eq!(assert_state_within_destination(engine, emu).await, expected.len());
    let again = engine.run(trigger(engine).await, &no_progress).await.unwrap();
    assert_eq!(again.counts.records_processed, Some(0), "nothing left to send");
    r
}

// ---- destination: resets, stalls, timeouts ----

const FORWARD: u8 = 0;
const RESET: u8 = 1;
const STALL: u8 = 2;

/// A TCP front for the emulator: forwards, or (switched while connections are open) resets
/// every connection with a RST, or stops answering while holding the connection open.
struct Front {
    url: String,
    mode: Arc<AtomicU8>,
}

async fn front(upstream: SocketAddr) -> Front {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mode = Arc::new(AtomicU8::new(FORWARD));
    let m = mode.clone();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else { return };
            tokio::spawn(relay(client, upstream, m.clone()));
        }
    });
    Front { url, mode }
}

async fn relay(mut client: TcpStream, upstream: SocketAddr, mode: Arc<AtomicU8>) {
    let Ok(mut up) = TcpStream::connect(upstream).await else { return };
    let (mut from_client, mut from_up) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        tokio::select! {
            n = client.read(&mut from_client) => {
                let n = match n { Ok(0) | Err(_) => return, Ok(n) => n };
                match mode.load(Ordering::SeqCst) {
                    FORWARD => if up.write_all(&from_client[..n]).await.is_err() { return },
                    RESET => {
                        #[allow(deprecated)]
                        let _ = client.set_linger(Some(Duration::ZERO));
                        return;
                    }
                    // Stall: hold the connection open, take whatever comes, answer nothing.
                    _ => loop {
                        if !matches!(client.read(&mut from_client).await, Ok(n) if n > 0) {
                            return;
                        }
                    },
                }
            }
            n = up.read(&mut from_up) => {
                let n = match n { Ok(0) | Err(_) => return, Ok(n) => n };
                if mode.load(Ordering::SeqCst) == FORWARD && client.write_all(&from_up[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn destination_fault(mode: u8, what: &str, expect: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 600).await;
    let emu = emulator().await;
    emu.set_faults(Faults { latency_ms: 15, ..Faults::default() });
    let front = front(emu.addr).await;
    let p = common::write_project(dir.path(), &sqlite_project(&front.url, 10, "400ms"));
    let engine = open(&p, common::state_for(dir.path()).await, Duration::from_secs(5)).await;
    let run = trigger(&engine).await;
    front.mode.store(FORWARD, Ordering::SeqCst);
    let m = front.mode.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(250)).await;
        m.store(mode, Ordering::SeqCst);
    });
    let started = Instant::now();
    let r = engine.run(run, &no_progress).await.unwrap();
    assert_eq!(r.status, RunStatus::Failed, "{what}: the run should fail");
    let msg = r.error_message.clone().unwrap_or_default();
    assert!(expect.iter().any(|e| msg.to_lowercase().contains(e)), "{what}: unclear error: {msg}");
    assert!(msg.contains("webhook destination `hook`") || msg.contains("hook"), "{what}: the error names the destination: {msg}");
    assert!(started.elapsed() < Duration::from_secs(30), "{what}: the run took {:?}", started.elapsed());
    let delivered = r.counts.records_updated.unwrap_or(0);
    assert!(delivered > 0 && delivered < 600, "{what}: the fault hit mid-run ({delivered} delivered)");
    assert_state_within_destination(&engine, &emu).await;

    front.mode.store(FORWARD, Ordering::SeqCst);
    emu.set_faults(Faults::default());
    let next = assert_next_run_converges(&engine, &emu, &expected_sqlite(&wh).await).await;
    assert!(next.counts.records_processed.unwrap() <= 600 - delivered + 20, "the next run sends about the remainder");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_connection_resets_mid_run() {
    destination_fault(RESET, "connection reset", &["reset by peer", "connection closed"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_stalls_mid_run() {
    destination_fault(STALL, "stall", &["no answer within 400ms"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_answers_past_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 2000).await;
    let emu = emulator().await;
    emu.set_faults(Faults { latency_ms: 10, ..Faults::default() });
    let p = common::write_project(dir.path(), &sqlite_project(&emu.url, 10, "200ms"));
    let engine = open(&p, common::state_for(dir.path()).await, Duration::from_secs(5)).await;
    // The destination turns slow mid-run: answers come after the timeout (the batch is
    // applied, its acknowledgement lost).
    let slow = {
        let run = trigger(&engine).await;
        let e = &engine;
        let emu2 = &emu;
        let slow_after = async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            emu2.set_faults(Faults { latency_ms: 400, ..Faults::default() });
        };
        let (r, _) = tokio::join!(e.run(run, &no_progress), slow_after);
        r.unwrap()
    };
    assert_eq!(slow.status, RunStatus::Failed);
    let msg = slow.error_message.clone().unwrap();
    assert!(msg.contains("timed out"), "{msg}");
    assert_state_within_destination(&engine, &emu).await;
    emu.set_faults(Faults::default());
    assert_next_run_converges(&engine, &emu, &expected_sqlite(&wh).await).await;
    emu.stop().await;
}

// ---- SQLite state store: locked, disk full ----

/// A Python process holding an exclusive lock on a SQLite file for `secs` seconds; returns once
/// the lock is held.
fn lock_sqlite(path: &Path, secs: f64) -> std::process::Child {
    let script = format!(
        "import sqlite3, sys, time\nc = sqlite3.connect({:?}, timeout=60, isolation_level=None)\nc.execute('BEGIN EXCLUSIVE')\nprint('locked', flush=True)\ntime.sleep({secs})\nc.execute('ROLLBACK')\n",
        path.to_str().unwrap()
    );
    let mut child = Command::new("python3").args(["-c", &script]).stdout(Stdio::piped()).spawn().expect("python3 is needed to lock the SQLite store");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "locked");
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_state_store_locked_by_another_process_mid_run() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 3000).await;
    let emu = emulator().await;
    emu.set_faults(Faults { latency_ms: 20, ..Faults::default() });
    let p = common::write_project(dir.path(), &sqlite_project(&emu.url, 10, "5s"));
    let state = dir.path().join("state.db");
    let url = format!("sqlite://{}", state.display());
    let engine = open(&p, Some(url.clone()), Duration::from_secs(1)).await;
    let run = trigger(&engine).await;
    // Another process takes the store's write lock while the run delivers, and holds it past
    // the store's 30 s busy timeout.
    let state2 = state.clone();
    let locker = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        tokio::task::spawn_blocking(move || lock_sqlite(&state2, 33.0)).await.unwrap()
    });
    let r = engine.run(run, &no_progress).await;
    let mut locker = locker.await.unwrap();
    let msg = match &r {
        Ok(rec) => {
            assert_eq!(rec.status, RunStatus::Failed, "the run cannot commit while the store is locked");
            rec.error_message.clone().unwrap_or_default()
        }
        Err(e) => e.full_message(),
    };
    assert!(msg.contains("locked") && msg.contains("state store"), "a clear error naming the locked state store: {msg}");
    let _ = locker.wait();
    // The lock is gone: the next run (after the lost run's lease ran out) completes.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    emu.set_faults(Faults::default());
    assert_next_run_converges(&engine, &emu, &expected_sqlite(&wh).await).await;
    let runs = engine.list_runs(None, 10).await.unwrap();
    let first = runs.iter().find(|x| x.id == run).unwrap();
    assert_eq!(first.status, RunStatus::Failed, "the interrupted run ended failed: {first:?}");
    emu.stop().await;
}

/// A small filesystem for the state store: a tmpfs when this process may mount one.
struct SmallFs {
    dir: PathBuf,
    mounted: bool,
}

impl SmallFs {
    fn new(parent: &Path) -> SmallFs {
        let dir = parent.join("small");
        std::fs::create_dir_all(&dir).unwrap();
        // SLUICEGATE_TEST_NO_MOUNT=1 tries the `ulimit -f` way even where a mount would work.
        let mounted = std::env::var_os("SLUICEGATE_TEST_NO_MOUNT").is_none()
            && Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(&dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        SmallFs { dir, mounted }
    }
    fn grow(&self) {
        if self.mounted {
            assert!(Command::new("mount").args(["-o", "remount,size=64m"]).arg(&self.dir).status().unwrap().success());
        }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.dir).status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_state_store_disk_full() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 20_000).await;
    wh.exec("UPDATE contacts SET name = name || ' ' || hex(randomblob(24))").await;
    // Everything in the warehouse file itself (no WAL left to checkpoint): under `ulimit -f`
    // only the state store should need to grow.
    // (An index for the source's ORDER BY: a sort would spill to a temporary file, which the
    // file-size limit would cut too.)
    wh.exec("CREATE INDEX contacts_email ON contacts (email)").await;
    wh.exec("PRAGMA wal_checkpoint(TRUNCATE)").await;
    let emu = emulator().await;
    let p = common::write_project(dir.path(), &sqlite_project(&emu.url, 500, "10s"));
    let fs = SmallFs::new(dir.path());
    let state = fs.dir.join("state.db");
    let limit = !fs.mounted;
    let out = tokio::task::spawn_blocking({
        let (p, state) = (p.clone(), state.clone());
        move || disk_cli(&p, &state, limit)
    })
    .await
    .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "the run cannot succeed with a full disk: {text}");
    let lower = text.to_lowercase();
    assert!(lower.contains("state store"), "the error names the state store: {text}");
    assert!(lower.contains("full") || lower.contains("disk") || lower.contains("i/o") || lower.contains("too large"), "the error says why: {text}");
    assert!(!lower.contains("panicked"), "{text}");
    eprintln!("disk full ({}): {}", if fs.mounted { "tmpfs of 256 KiB" } else { "ulimit -f" }, text.lines().find(|l| l.contains("state store")).unwrap_or(""));
    fs.grow();
    let out = tokio::task::spawn_blocking({
        let (p, state) = (p.clone(), state.clone());
        move || disk_cli(&p, &state, false)
    })
    .await
    .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the next run, with room again: {text}");
    assert!(text.contains("completed"), "{text}");
    let expected = expected_sqlite(&wh).await;
    assert!(emu.store() == expected, "the destination equals the warehouse after the disk-full run");
    let engine = open(&p, Some(format!("sqlite://{}", state.display())), Duration::from_secs(5)).await;
    assert_eq!(assert_state_within_destination(&engine, &emu).await, 20_000);
    let again = engine.run(trigger(&engine).await, &no_progress).await.unwrap();
    assert_eq!(again.counts.records_processed, Some(0));
    drop(engine);
    emu.stop().await;
}

/// `sluicegate run contacts` with the state store at `state`; `ulimit`: under a 256 KiB
/// file-size limit, with SIGXFSZ ignored so that writes past it fail (EFBIG) as on a full disk
/// instead of killing the process.
fn disk_cli(project: &Path, state: &Path, ulimit: bool) -> std::process::Output {
    let cmd = format!(
        "{}exec {} --project {} --state sqlite://{} run contacts --json",
        if ulimit { "trap '' XFSZ; ulimit -f 512; " } else { "" },
        env!("CARGO_BIN_EXE_sluicegate"),
        project.display(),
        state.display()
    );
    Command::new("bash").args(["-c", &cmd]).env("NO_COLOR", "1").output().unwrap()
}

// ---- leases and clock jumps ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_moved_into_the_past_hands_the_run_over_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 3000).await;
    let emu = emulator().await;
    emu.set_faults(Faults { latency_ms: 20, ..Faults::default() });
    let p = common::write_project(dir.path(), &sqlite_project(&emu.url, 10, "5s"));
    let state = format!("sqlite://{}", dir.path().join("state.db").display());
    // Heartbeats every 300 ms: the run learns of the takeover within that.
    let a = open(&p, Some(state.clone()), Duration::from_millis(900)).await;
    let b = open(&p, Some(state.clone()), Duration::from_millis(900)).await;
    let run = trigger(&a).await;
    let jump = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        // The clock jumped forward: the working run's lease now lies in the past, and another
        // executor finds it lost.
        let pool = sqlx::SqlitePool::connect(&state).await.unwrap();
        let past = sluicegate::store::timestamp(time::OffsetDateTime::UNIX_EPOCH);
        for _ in 0..50 {
            sqlx::query("UPDATE sync_runs SET lease_expires_at = ? WHERE status = 'working'").bind(&past).execute(&pool).await.unwrap();
            if b.reap_lost().await.unwrap() > 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    };
    let (r, reaped) = tokio::join!(a.run(run, &no_progress), jump);
    assert!(reaped, "the run with a past lease was taken over");
    let r = r.unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(r.error_code.as_deref(), Some("EXECUTOR_LOST"), "{r:?}");
    assert!(r.error_message.as_deref().unwrap_or("").contains("lease"), "{:?}", r.error_message);
    let delivered = emu.store().len();
    assert!(delivered < 3000, "the run stopped after the takeover ({delivered} delivered)");
    assert_state_within_destination(&a, &emu).await;
    emu.set_faults(Faults::default());
    assert_next_run_converges(&b, &emu, &expected_sqlite(&wh).await).await;
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_executor_with_a_lease_far_in_the_future_does_not_block() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 50).await;
    let emu = emulator().await;
    let p = common::write_project(dir.path(), &sqlite_project(&emu.url, 10, "5s"));
    let state = format!("sqlite://{}", dir.path().join("state.db").display());
    let engine = open(&p, Some(state.clone()), Duration::from_secs(5)).await;
    let first = common::run(&engine, 1, false).await;
    assert_eq!(first.status, RunStatus::Completed);
    // The clock jumped back: a run of an executor on this host whose process is gone holds a
    // lease until 2100.
    let host = sluicegate::engine::executor_id().rsplitn(3, ':').nth(2).unwrap().to_string();
    let pool = sqlx::SqlitePool::connect(&state).await.unwrap();
    let stuck = trigger(&engine).await;
    let future = sluicegate::store::timestamp(time::OffsetDateTime::UNIX_EPOCH + Duration::from_secs(130 * 365 * 86_400));
    sqlx::query("UPDATE sync_runs SET status = 'working', executor = ?, lease_expires_at = ?, started_at = created_at WHERE id = ?")
        .bind(format!("{host}:4194000:12345"))
        .bind(&future)
        .bind(stuck)
        .execute(&pool)
        .await
        .unwrap();
    wh.exec("UPDATE contacts SET score = score + 7 WHERE id <= 5").await;
    let started = Instant::now();
    let r = assert_next_run_converges(&engine, &emu, &expected_sqlite(&wh).await).await;
    assert!(started.elapsed() < Duration::from_secs(10), "not blocked by the far lease");
    assert_eq!(r.counts.records_processed, Some(5));
    let s = engine.get_run(stuck).await.unwrap();
    assert_eq!((s.status, s.error_code.as_deref()), (RunStatus::Failed, Some("EXECUTOR_LOST")), "{s:?}");
    emu.stop().await;
}

// ---- Postgres ----

fn pg_url() -> Option<String> {
    match std::env::var("SLUICEGATE_TEST_PG_URL") {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            let how = "source scripts/services.sh and run `services_start pg DIR` (scripts/test.sh does)";
            if std::env::var("SLUICEGATE_REQUIRE_ALL").is_ok_and(|v| !v.is_empty() && v != "0") {
                panic!("SLUICEGATE_TEST_PG_URL is not set and SLUICEGATE_REQUIRE_ALL=1: {how}");
            }
            eprintln!("SKIPPED: SLUICEGATE_TEST_PG_URL is not set; {how}");
            None
        }
    }
}

async fn fresh_database(admin: &str, prefix: &str) -> String {
    let name = format!("{prefix}_{}_{}", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_000);
    let pool = sqlx::PgPool::connect(admin).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&pool).await.unwrap();
    pool.close().await;
    format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_source_backend_terminated_mid_scan() {
    let Some(admin) = pg_url() else { return };
    let url = fresh_database(&admin, "sg_faults_src").await;
    let pg = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE contacts (email text PRIMARY KEY, name text, score int);
         INSERT INTO contacts SELECT 'user' || i || '@example.com', 'User ' || i || ' ' || md5(i::text), i % 100 FROM generate_series(1, 60000) i;",
    )
    .execute(&pg)
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator().await;
    emu.set_faults(Faults { latency_ms: 10, ..Faults::default() });
    let p = common::write_project(dir.path(), &project(&emu.url, &url, 200, "10s"));
    let engine = open(&p, None, Duration::from_secs(5)).await;
    let run = trigger(&engine).await;
    let kill = async {
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(25)).await;
            let killed: Vec<bool> = sqlx::query_scalar(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'COPY%' AND pid <> pg_backend_pid()",
            )
            .fetch_all(&pg)
            .await
            .unwrap();
            if killed.contains(&true) {
                return true;
            }
        }
        false
    };
    let (r, killed) = tokio::join!(engine.run(run, &no_progress), kill);
    assert!(killed, "the COPY scan was seen and its backend terminated");
    let r = r.unwrap();
    assert_eq!(r.status, RunStatus::Failed, "a scan cut off is a failed run, not a short one");
    let msg = r.error_message.clone().unwrap_or_default();
    assert!(msg.contains("source `warehouse`"), "the error names the source: {msg}");
    assert!(msg.to_lowercase().contains("terminat") || msg.contains("connection") || msg.contains("closed"), "and says what happened: {msg}");
    assert_eq!(r.error_code.as_deref(), Some("SOURCE_ERROR"));
    let removes = r.counts.planned.removes;
    assert_eq!(removes, 0, "a scan cut short must not plan removes for the rows it did not read");
    assert_state_within_destination(&engine, &emu).await;

    emu.set_faults(Faults::default());
    let rows: Vec<(String, String, i32)> = sqlx::query_as("SELECT email, name, score FROM contacts").fetch_all(&pg).await.unwrap();
    let expected: BTreeMap<String, Value> =
        rows.into_iter().map(|(e, n, s)| (e.clone(), serde_json::json!({"email": e, "full_name": n, "score": s}))).collect();
    assert_next_run_converges(&engine, &emu, &expected).await;
    pg.close().await;
    emu.stop().await;
}

/// A private PostgreSQL server (scripts/services.sh) in `dir`: started, stopped, restarted.
struct PrivatePg {
    dir: PathBuf,
}

impl PrivatePg {
    /// Start; `port`: on this port (a restart keeps its address, as a real server's would).
    fn start(&self, port: Option<&str>) -> String {
        let script = format!(
            "source {}/scripts/services.sh >/dev/null && services_start pg {} {} >&2 && echo \"$SLUICEGATE_TEST_PG_URL\"",
            env!("CARGO_MANIFEST_DIR"),
            self.dir.display(),
            port.map(|p| format!("-c port={p}")).unwrap_or_default()
        );
        let out = Command::new("bash").args(["-c", &script]).output().unwrap();
        assert!(out.status.success(), "cannot start a private PostgreSQL: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
    fn stop(&self) {
        let script = format!("source {}/scripts/services.sh >/dev/null && services_stop {}", env!("CARGO_MANIFEST_DIR"), self.dir.display());
        let _ = Command::new("bash").args(["-c", &script]).output();
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The Postgres state store stops while a run is provably still delivering (400 rows, 20 per
/// batch at 2 at a time, 200 ms per answer: about 2 s of delivery left when the store stops)
/// and stays down until the run gives up: the run fails with an error naming the state store.
/// After the restart on the same port, the next run converges and never over-claims.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_state_store_stopped_mid_run() {
    if pg_url().is_none() {
        return;
    }
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let pgdir = tempfile::tempdir().unwrap();
    let server = PrivatePg { dir: pgdir.path().to_path_buf() };
    let admin = tokio::task::spawn_blocking({
        let d = server.dir.clone();
        move || PrivatePg { dir: d }.start_keep(None)
    })
    .await
    .unwrap();
    let port = admin.rsplit_once(':').unwrap().1.split('/').next().unwrap().to_string();
    let state = fresh_database(&admin, "sg_faults_state").await;
    const ROWS: u64 = 400;
    let wh = Warehouse::create(dir.path(), ROWS as i64).await;
    let emu = emulator().await;
    emu.set_faults(Faults { latency_ms: 200, ..Faults::default() });
    let p = common::write_project(dir.path(), &sqlite_project(&emu.url, 20, "5s"));
    let engine = open(&p, Some(state.clone()), Duration::from_secs(1)).await;
    let run = trigger(&engine).await;
    let ended = std::sync::atomic::AtomicBool::new(false);
    let working = async {
        let r = engine.run(run, &no_progress).await;
        ended.store(true, Ordering::SeqCst);
        r
    };
    let outage = async {
        // Once the run is delivering (two batches acknowledged), stop the store.
        let start = Instant::now();
        while emu.stats().records_accepted < 40 {
            assert!(start.elapsed() < Duration::from_secs(60), "the run never started delivering");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!ended.load(Ordering::SeqCst), "the run ended before the outage");
        let d = server.dir.clone();
        tokio::task::spawn_blocking(move || PrivatePg { dir: d }.stop_keep()).await.unwrap();
        let accepted_at_stop = emu.stats().records_accepted;
        assert!(!ended.load(Ordering::SeqCst), "the run was still working when the store stopped");
        assert!(accepted_at_stop < ROWS, "the destination had not received every row when the store stopped ({accepted_at_stop})");
        // Down until the run gives up (the pool waits up to 30 s for a connection per call).
        let down = Instant::now();
        while !ended.load(Ordering::SeqCst) {
            assert!(down.elapsed() < Duration::from_secs(180), "the run neither failed nor ended with the store down");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let d = server.dir.clone();
        tokio::task::spawn_blocking(move || PrivatePg { dir: d }.start_keep(Some(&port))).await.unwrap();
        accepted_at_stop
    };
    let (r, accepted_at_stop) = tokio::join!(working, outage);
    eprintln!("run ended after {:?}; {accepted_at_stop} rows accepted when the store stopped", t0.elapsed());
    let msg = match &r {
        Ok(rec) => {
            assert_eq!(rec.status, RunStatus::Failed, "a run whose store stopped for good cannot complete: {rec:?}");
            rec.error_message.clone().unwrap_or_default()
        }
        Err(e) => e.full_message(),
    };
    assert!(msg.contains("state store"), "the error names the state store: {msg}");
    assert!(!msg.contains("source `") && !msg.contains("destination `"), "and blames nothing else: {msg}");
    let engine2 = open(&p, Some(state.clone()), Duration::from_secs(1)).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Never over-claimed: what the state holds, the destination holds.
    assert_state_within_destination(&engine2, &emu).await;
    emu.set_faults(Faults::default());
    assert_next_run_converges(&engine2, &emu, &expected_sqlite(&wh).await).await;
    let first = engine2.get_run(run).await.unwrap();
    assert_eq!(first.status, RunStatus::Failed, "the interrupted run ended failed: {first:?}");
    drop(engine);
    emu.stop().await;
}

/// A Postgres state store that is unreachable from the start: a clear error that names the state
/// store (its URL without the password) and says what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_state_store_unreachable_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 5).await;
    let p = common::write_project(dir.path(), &sqlite_project("http://127.0.0.1:9", 10, "5s"));
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgres://sluicegate:pw-not-shown-7731@127.0.0.1:{port}/state");
    let t = Instant::now();
    let e = Engine::open(&p, EngineOptions { state: Some(url), ..Default::default() }).await.err().expect("no engine without its state store");
    let msg = e.full_message();
    eprintln!("after {:?}: {msg}", t.elapsed());
    assert!(msg.contains("state store"), "names the state store: {msg}");
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "and where it was looked for: {msg}");
    assert!(!msg.contains("pw-not-shown-7731"), "without the password: {msg}");
    assert!(msg.contains("cannot connect to the state store"), "says what failed: {msg}");
    assert!(msg.contains("check that the Postgres server runs") && msg.contains("SLUICEGATE_STATE"), "and what to do: {msg}");
    assert!(msg.to_lowercase().contains("refused"), "with the connection's own error: {msg}");
    assert!(t.elapsed() < Duration::from_secs(25), "at once, not after the pool's 30 s timeout: {:?}", t.elapsed());
}

impl PrivatePg {
    /// `start` without stopping on drop (the owner stops it).
    fn start_keep(self, port: Option<&str>) -> String {
        let url = self.start(port);
        std::mem::forget(self);
        url
    }
    fn stop_keep(self) {
        self.stop();
        std::mem::forget(self);
    }
}
