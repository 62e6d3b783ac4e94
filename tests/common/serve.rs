//! Helpers for the `sluicegate serve` tests: a project with two syncs over the test warehouse,
//! an HTTP client that speaks to the API, and `sluicegate serve` subprocesses.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const TOKEN: &str = "secret-token:test-4f1c9a7be2d54c0f";
pub const WEBHOOK_TOKEN: &str = "webhook-credential-81d2";

/// Sync 1 `contacts` (upsert of `contacts` by email) and sync 2 `events` (append of `events`
/// by event_id), both to the webhook emulator, batches of `batch`.
pub fn project(webhook_url: &str, batch: usize) -> String {
    format!(
        r#"
sources:
  warehouse:
    url: sqlite://warehouse.db
destinations:
  hook:
    type: webhook
    url: {webhook_url}/contacts
    batch_size: {batch}
    headers:
      Authorization: Bearer ${{SERVE_TEST_WEBHOOK_TOKEN:-{WEBHOOK_TOKEN}}}
    retry:
      max_attempts: 6
      initial_backoff: 10ms
      max_backoff: 50ms
syncs:
  - id: 1
    name: contacts
    source:
      connection: warehouse
      table: contacts
    destination:
      connection: hook
      object: contacts
    primary_identifier:
      from: email
      to: email
    mappings:
      - from: name
        to: full_name
      - from: score
        to: score
  - id: 2
    name: events
    behavior: append
    source:
      connection: warehouse
      table: events
    destination:
      connection: hook
      object: events
    primary_identifier:
      from: email
      to: email
    unique_key: event_id
    mappings:
      - from: name
        to: event
"#
    )
}

/// `n` syncs (ids 1..=n) of the `contacts` table, each to its own path of the emulator.
pub fn many_syncs_project(webhook_url: &str, n: i64, batch: usize) -> String {
    let mut out = format!(
        "sources:\n  warehouse:\n    url: sqlite://warehouse.db\ndestinations:\n  hook:\n    type: webhook\n    url: {webhook_url}/contacts\n    batch_size: {batch}\n    retry:\n      max_attempts: 6\n      initial_backoff: 10ms\n      max_backoff: 50ms\nsyncs:\n"
    );
    for i in 1..=n {
        out.push_str(&format!(
            "  - id: {i}\n    name: contacts_{i}\n    source:\n      connection: warehouse\n      table: contacts\n    destination:\n      connection: hook\n      object: contacts\n    primary_identifier:\n      from: email\n      to: email\n    mappings:\n      - from: name\n        to: full_name\n      - from: score\n        to: score\n"
        ));
    }
    out
}

/// An API answer: status and JSON body (or `Value::String` of a non-JSON body).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
    /// The `Authorization` header sent, if any.
    pub auth: Option<String>,
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api { base: base.trim_end_matches('/').to_string(), client: sluicegate::engine::http_client().unwrap(), auth: Some(format!("Bearer {TOKEN}")) }
    }

    pub fn with_auth(&self, auth: Option<&str>) -> Api {
        Api { base: self.base.clone(), client: self.client.clone(), auth: auth.map(str::to_string) }
    }

    pub async fn request(&self, method: &str, path: &str, body: Option<(&str, &str)>) -> Answer {
        let url = format!("{}{}", self.base, path);
        let mut req = self.client.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), &url);
        if let Some(a) = &self.auth {
            req = req.header("authorization", a);
        }
        if let Some((content_type, text)) = body {
            req = req.header("content-type", content_type).body(text.to_string());
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer { status, body, headers }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.request("GET", path, None).await
    }

    pub async fn post(&self, path: &str) -> Answer {
        self.request("POST", path, None).await
    }

    /// `GET /api/v1{path}`, asserting 200 and `"status": "success"`; returns `data`.
    pub async fn data(&self, path: &str) -> Value {
        let a = self.get(&format!("/api/v1{path}")).await;
        assert_eq!(a.status, 200, "GET {path}: {}", a.body);
        assert_eq!(a.body["status"], "success", "GET {path}: {}", a.body);
        a.body["data"].clone()
    }

    /// Trigger a sync; returns the run id.
    pub async fn trigger(&self, sync: &str, query: &str) -> i64 {
        let a = self.post(&format!("/api/v1/syncs/{sync}/trigger{query}")).await;
        assert_eq!(a.status, 200, "trigger {sync}: {}", a.body);
        assert_eq!(a.body["status"], "success");
        a.body["data"]["sync_run_id"].as_i64().unwrap_or_else(|| panic!("sync_run_id is not an integer: {}", a.body))
    }

    /// Poll a run until `done` says so.
    pub async fn wait_run(&self, run_id: i64, what: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let run = self.data(&format!("/sync_runs/{run_id}")).await;
            if done(&run) {
                return run;
            }
            assert!(start.elapsed() < timeout, "run {run_id} not {what} after {timeout:?}: {run}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_ended(&self, run_id: i64) -> Value {
        self.wait_run(run_id, "ended", Duration::from_secs(60), |r| r["status"] == "completed" || r["status"] == "failed").await
    }
}

/// Add an `events` table (for the append sync) to the test warehouse.
pub async fn add_events(wh: &crate::common::Warehouse, n: i64) {
    wh.exec("CREATE TABLE events (event_id TEXT, email TEXT, name TEXT)").await;
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) \
         INSERT INTO events SELECT 'e' || i, 'user' || i || '@example.com', 'event ' || i FROM n",
    )
    .bind(n)
    .execute(&wh.pool)
    .await
    .unwrap();
}

/// A `sluicegate serve` subprocess; stderr is collected for inspection.
pub struct ServeProcess {
    pub child: Child,
    pub url: String,
    pub stderr: Arc<Mutex<String>>,
}

impl ServeProcess {
    pub fn start(project: &Path, state: &str, extra: &[&str], env: &[(&str, &str)]) -> ServeProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluicegate"));
        cmd.arg("--project")
            .arg(project)
            .arg("--state")
            .arg(state)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("SLUICEGATE_API_TOKEN", TOKEN)
            .env("SLUICEGATE_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("SLUICEGATE_PROJECT")
            .env_remove("SLUICEGATE_STATE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("cannot start sluicegate serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let mut err = child.stderr.take().unwrap();
            let sink = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match err.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n])),
                    }
                }
            });
        }
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut url = String::new();
        out.read_line(&mut url).unwrap();
        let url = url.trim().to_string();
        assert!(url.starts_with("http://"), "sluicegate serve did not print its URL first; stderr:\n{}", stderr.lock().unwrap());
        ServeProcess { child, url, stderr }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGTERM, then wait for the exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        self.child.wait().unwrap()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Postgres test server's URL, or `None` with a skip note (a failure under
/// `SLUICEGATE_REQUIRE_ALL=1`).
pub fn pg_url() -> Option<String> {
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

/// A fresh database on the Postgres test server; returns its URL.
pub async fn fresh_pg_database(admin: &str, prefix: &str) -> String {
    let name = format!("{prefix}_{}_{}", std::process::id(), Instant::now().elapsed().as_nanos() % 1_000_000 + rand_suffix());
    let pool = sqlx::PgPool::connect(admin).await.expect("the Postgres test server must be reachable");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&pool).await.unwrap();
    pool.close().await;
    let (base, _) = admin.rsplit_once('/').expect("an admin URL ends with /DATABASE");
    format!("{base}/{name}")
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_000
}
