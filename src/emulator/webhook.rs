//! An emulator of a generic JSON webhook endpoint (`sluicegate emulate webhook`).
//!
//! - `POST <any path>` with a JSON array of records: answers `200 {"results": [{"index": i,
//!   "status": "accepted" | "rejected", "reason": …}]}`. A record is rejected when one of the
//!   `--reject-if FIELD=REGEX` rules matches the text of its field. Accepted records are logged
//!   in arrival order.
//! - When the request names its key field (`X-Sluicegate-Key: email`), the emulator also keeps
//!   the current record per key and applies `X-Sluicegate-Operation` as a CRM would: `upsert`
//!   creates or replaces; `update` rejects unknown keys; `create` refuses existing keys (status
//!   `exists`, which the webhook destination reads as "already exists"); `delete`
//!   removes (unknown keys are accepted: already gone); `append` only logs. An upsert or create
//!   whose record equals the stored one is counted in `duplicates`.
//! - Fault injection: a share of requests (`fail_rate`, spread evenly: with 0.25 exactly every
//!   4th request) is answered with `fail_status` and `{"message": fail_message}`; 429 and 503
//!   answers carry `Retry-After: 1`.
//! - Stalls (`stall_every: N`, `stall_seconds: S`): every Nth request (the Nth, 2Nth, ...,
//!   counted from the emulator's start or last reset, retries included) is taken in and applied
//!   as usual, but its answer is held for S seconds, then sent (200 with the results) if the
//!   client is still waiting. This is the stall a client cannot tell from a dead destination: it
//!   sees nothing until S has passed. A client whose timeout is shorter than S gives up with the
//!   batch in doubt; since the destination did apply it, a resend shows up as that batch arriving
//!   twice (counted in `duplicates` for keyed requests), and a client that drops the batch loses
//!   nothing here but must have reported it as failed. A stalled request is never also failed by
//!   `fail_rate`. Deterministic, so every tool meets the same stalls at the same request numbers.
//! - `GET /_emulator/received[?records=false][&store=true]`: `{"stats": {...}, "records": [...],
//!   "store": {key: record}}`.
//! - `POST /_emulator/reset[?store=true]`: forget the arrival log and stats (and the keyed store).
//! - `PUT /_emulator/faults` with `{"fail_rate", "fail_status", "fail_message", "fail_after"}`:
//!   change faults (`fail_after: N` fails every request after the first N; `latency_ms` delays
//!   every answer; `stall_every`, `stall_seconds`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Faults {
    #[serde(default)]
    pub fail_rate: f64,
    #[serde(default = "default_fail_status")]
    pub fail_status: u16,
    #[serde(default = "default_fail_message")]
    pub fail_message: String,
    /// When set, every request after the first `fail_after` ones fails (a destination that
    /// goes down mid-run).
    #[serde(default)]
    pub fail_after: Option<u64>,
    /// Milliseconds to wait before answering each request (a slow destination).
    #[serde(default)]
    pub latency_ms: u64,
    /// Failing requests are processed first, then answered with the failure: the answer is
    /// lost, not the batch (as when a response times out after the destination applied it).
    #[serde(default)]
    pub apply_then_fail: bool,
    /// Stall every Nth request (the Nth, 2Nth, ...): apply it, then hold the answer
    /// `stall_seconds`. `None` or 0: no stalls.
    #[serde(default)]
    pub stall_every: Option<u64>,
    /// How long a stalled request waits for its answer.
    #[serde(default = "default_stall_seconds")]
    pub stall_seconds: f64,
}

fn default_stall_seconds() -> f64 {
    30.0
}

fn default_fail_status() -> u16 {
    503
}
fn default_fail_message() -> String {
    "the webhook emulator is failing this request on purpose".into()
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            fail_rate: 0.0,
            fail_status: default_fail_status(),
            fail_message: default_fail_message(),
            fail_after: None,
            latency_ms: 0,
            apply_then_fail: false,
            stall_every: None,
            stall_seconds: default_stall_seconds(),
        }
    }
}

/// `FIELD=REGEX`: reject records whose FIELD's text matches REGEX.
#[derive(Debug, Clone)]
pub struct RejectRule {
    pub field: String,
    pub pattern: Regex,
}

impl RejectRule {
    pub fn parse(spec: &str) -> Result<RejectRule> {
        let (field, pattern) = spec
            .split_once('=')
            .ok_or_else(|| Error::other(format!("reject rule {spec:?} must look like FIELD=REGEX, e.g. email=@invalid\\.")))?;
        let pattern = Regex::new(pattern).map_err(|e| Error::other(format!("reject rule {spec:?}: bad regex")).with_source(e))?;
        Ok(RejectRule { field: field.to_string(), pattern })
    }
}

#[derive(Debug, Clone, Default)]
pub struct WebhookEmulatorConfig {
    pub faults: Faults,
    pub reject: Vec<RejectRule>,
    /// Count records but keep none (benchmarks with millions of rows).
    pub discard: bool,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    pub requests: u64,
    pub batches_accepted: u64,
    pub batches_failed: u64,
    pub records_received: u64,
    pub records_accepted: u64,
    pub records_rejected: u64,
    /// Upserts or creates that carried exactly the record already stored under their key.
    pub duplicates: u64,
    pub deletes: u64,
    /// Requests whose answer was held by the stall fault.
    pub stalled: u64,
    /// Records currently stored by key.
    pub stored: u64,
}

#[derive(Default)]
struct Inner {
    stats: Stats,
    records: Vec<Value>,
    store: std::collections::BTreeMap<String, Value>,
    faults: Faults,
    reject: Vec<RejectRule>,
    discard: bool,
}

type Shared = Arc<Mutex<Inner>>;

pub struct WebhookEmulator {
    pub url: String,
    pub addr: SocketAddr,
    shared: Shared,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether request number `n` (from 0) fails at `rate`: failures spread evenly.
fn fails(n: u64, rate: f64) -> bool {
    if rate <= 0.0 {
        return false;
    }
    if rate >= 1.0 {
        return true;
    }
    ((n + 1) as f64 * rate).floor() > (n as f64 * rate).floor()
}

/// Whether request number `n` (from 0) stalls: every `every`th one.
fn stalls(n: u64, every: Option<u64>) -> bool {
    matches!(every, Some(e) if e > 0 && (n + 1).is_multiple_of(e))
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn header<'h>(headers: &'h axum::http::HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Apply one record to the keyed store; `Err` is the rejection reason.
/// Apply one record to the keyed store; on refusal, the result's status (`rejected`, or
/// `exists` for a create whose key is taken) and its reason.
fn apply(inner: &mut Inner, op: &str, key_field: &str, rec: &Value) -> std::result::Result<(), (&'static str, String)> {
    let rejected = |reason: String| ("rejected", reason);
    let key = match rec.get(key_field) {
        Some(Value::Null) | None => return Err(rejected(format!("missing key field {key_field:?}"))),
        Some(v) => text_of(v),
    };
    match op {
        "update" => match inner.store.get_mut(&key) {
            Some(stored) => {
                *stored = rec.clone();
                Ok(())
            }
            None => Err(rejected(format!("no record with {key_field} {key:?} exists; an update cannot create it"))),
        },
        "create" => {
            if let Some(stored) = inner.store.get(&key) {
                if stored == rec {
                    inner.stats.duplicates += 1;
                }
                return Err(("exists", format!("a record with {key_field} {key:?} already exists")));
            }
            inner.store.insert(key, rec.clone());
            Ok(())
        }
        "delete" => {
            if inner.store.remove(&key).is_some() {
                inner.stats.deletes += 1;
            }
            Ok(())
        }
        "append" => Ok(()),
        _ => {
            if inner.store.get(&key) == Some(rec) {
                inner.stats.duplicates += 1;
            }
            inner.store.insert(key, rec.clone());
            Ok(())
        }
    }
}

async fn receive(State(s): State<Shared>, headers: axum::http::HeaderMap, body: axum::body::Bytes) -> Response {
    let latency = lock(&s).faults.latency_ms;
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    let (resp, stall) = handle(&s, &headers, &body);
    if let Some(d) = stall {
        tokio::time::sleep(d).await;
    }
    resp
}

/// Take in one batch; the answer, and how long to hold it (a stall).
fn handle(s: &Shared, headers: &axum::http::HeaderMap, body: &[u8]) -> (Response, Option<std::time::Duration>) {
    let op = header(headers, "x-sluicegate-operation").unwrap_or("upsert").to_string();
    let key_field = header(headers, "x-sluicegate-key").map(str::to_string);
    let mut inner = lock(s);
    let n = inner.stats.requests;
    inner.stats.requests += 1;
    let stall = stalls(n, inner.faults.stall_every).then(|| {
        inner.stats.stalled += 1;
        let secs = inner.faults.stall_seconds;
        std::time::Duration::from_secs_f64(if secs.is_finite() { secs.clamp(0.0, 86_400.0) } else { 0.0 })
    });
    let failing = stall.is_none() && (fails(n, inner.faults.fail_rate) || inner.faults.fail_after.is_some_and(|after| n >= after));
    if failing && !inner.faults.apply_then_fail {
        return (failure(&mut inner), None);
    }
    let records = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) => items,
        _ => {
            inner.stats.batches_failed += 1;
            let resp = (StatusCode::BAD_REQUEST, Json(json!({"status": 400, "message": "the body must be a JSON array of records"})))
                .into_response();
            return (resp, stall);
        }
    };
    if !failing {
        inner.stats.batches_accepted += 1;
    }
    let mut results = Vec::with_capacity(records.len());
    for (i, rec) in records.into_iter().enumerate() {
        inner.stats.records_received += 1;
        let hit = inner.reject.iter().find_map(|r| {
            let v = rec.get(&r.field)?;
            r.pattern.is_match(&text_of(v)).then(|| ("rejected", format!("{} {:?} is not accepted (emulator rule /{}/)", r.field, text_of(v), r.pattern)))
        });
        let hit = match (hit, &key_field) {
            (None, Some(_)) if inner.discard => None,
            (None, Some(k)) => apply(&mut inner, &op, k, &rec).err(),
            (hit, _) => hit,
        };
        match hit {
            Some((status, reason)) => {
                inner.stats.records_rejected += 1;
                results.push(json!({"index": i, "status": status, "reason": reason}));
            }
            None => {
                inner.stats.records_accepted += 1;
                if !inner.discard {
                    inner.records.push(rec);
                }
                results.push(json!({"index": i, "status": "accepted"}));
            }
        }
    }
    if failing {
        return (failure(&mut inner), None);
    }
    (Json(json!({"results": results})).into_response(), stall)
}

/// The configured failure answer.
fn failure(inner: &mut Inner) -> Response {
    inner.stats.batches_failed += 1;
    let status = StatusCode::from_u16(inner.faults.fail_status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut resp = (status, Json(json!({"status": status.as_u16(), "message": inner.faults.fail_message}))).into_response();
    if matches!(status.as_u16(), 429 | 503) {
        resp.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
    }
    resp
}

#[derive(Deserialize)]
struct ReceivedQuery {
    records: Option<bool>,
    store: Option<bool>,
}

async fn received(State(s): State<Shared>, Query(q): Query<ReceivedQuery>) -> Json<Value> {
    let mut inner = lock(&s);
    inner.stats.stored = inner.store.len() as u64;
    let mut out = json!({"stats": inner.stats});
    if q.records.unwrap_or(true) {
        out["records"] = json!(inner.records);
    }
    if q.store.unwrap_or(false) {
        out["store"] = json!(inner.store);
    }
    Json(out)
}

/// Forget the arrival log and the counters; the keyed store is kept unless `all`.
fn clear(inner: &mut Inner, all: bool) {
    inner.stats = Stats::default();
    inner.records.clear();
    if all {
        inner.store.clear();
    }
}

async fn reset(State(s): State<Shared>, Query(q): Query<ResetQuery>) -> StatusCode {
    clear(&mut lock(&s), q.store.unwrap_or(false));
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct ResetQuery {
    store: Option<bool>,
}

async fn set_faults(State(s): State<Shared>, Json(f): Json<Faults>) -> Json<Value> {
    let mut inner = lock(&s);
    inner.faults = f;
    Json(json!({"faults": inner.faults}))
}

impl WebhookEmulator {
    /// Start serving on `addr` (port 0 picks a free port) in the current tokio runtime.
    pub async fn start(addr: SocketAddr, config: WebhookEmulatorConfig) -> Result<WebhookEmulator> {
        let shared: Shared = Arc::new(Mutex::new(Inner { faults: config.faults, reject: config.reject, discard: config.discard, ..Default::default() }));
        let app = Router::new()
            .route("/_emulator/received", get(received))
            .route("/_emulator/reset", post(reset))
            .route("/_emulator/faults", put(set_faults))
            .route("/", post(receive))
            .route("/{*path}", post(receive))
            .layer(DefaultBodyLimit::max(256 * 1024 * 1024))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::other(format!("the webhook emulator cannot listen on {addr}")).with_source(e))?;
        let addr = listener.local_addr().map_err(|e| Error::other("cannot read the emulator address").with_source(e))?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(WebhookEmulator { url: format!("http://{addr}"), addr, shared, shutdown: Some(tx), task: Some(task) })
    }

    pub fn stats(&self) -> Stats {
        let inner = lock(&self.shared);
        Stats { stored: inner.store.len() as u64, ..inner.stats.clone() }
    }

    /// The current record per key (requests that named `X-Sluicegate-Key`).
    pub fn store(&self) -> std::collections::BTreeMap<String, Value> {
        lock(&self.shared).store.clone()
    }

    /// Accepted records, in arrival order.
    pub fn records(&self) -> Vec<Value> {
        lock(&self.shared).records.clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        lock(&self.shared).faults = faults;
    }

    pub fn set_reject_rules(&self, rules: Vec<RejectRule>) {
        lock(&self.shared).reject = rules;
    }

    /// Forget the arrival log and counters (the keyed store stays, as a CRM's data would).
    pub fn reset(&self) {
        clear(&mut lock(&self.shared), false);
    }

    /// Stop serving and wait for the server task.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Serve until the task ends (the CLI runs this until Ctrl-C).
    pub async fn wait(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn stalls_hit_every_nth_request() {
        let hit: Vec<u64> = (0..10).filter(|n| stalls(*n, Some(4))).collect();
        assert_eq!(hit, vec![3, 7]);
        assert!(!(0..10).any(|n| stalls(n, None) || stalls(n, Some(0))));
    }

    /// Every 3rd request is held `stall_seconds` (and answered 200 after it, applied), the
    /// others are answered at once; a stalled request is not also failed by `fail_rate`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stalled_requests_are_held_then_answered() {
        let stall = Duration::from_millis(700);
        // fail_rate 1/3 would fail exactly requests 3 and 6 (the stalled ones) without the stall.
        let faults = Faults { stall_every: Some(3), stall_seconds: stall.as_secs_f64(), fail_rate: 1.0 / 3.0, ..Faults::default() };
        let emu = WebhookEmulator::start(SocketAddr::from(([127, 0, 0, 1], 0)), WebhookEmulatorConfig { faults, ..Default::default() })
            .await
            .unwrap();
        let http = crate::engine::http_client().unwrap();
        let mut took = Vec::new();
        for i in 0..6 {
            let t = Instant::now();
            let r = http
                .post(format!("{}/x", emu.url))
                .header("x-sluicegate-key", "id")
                .header("content-type", "application/json")
                .body(json!([{"id": i}, {"id": i + 100}]).to_string())
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            took.push((t.elapsed(), status, body));
        }
        for (i, (elapsed, status, body)) in took.iter().enumerate() {
            if i % 3 == 2 {
                assert!(*elapsed >= stall, "request {} should stall {stall:?}, answered in {elapsed:?}", i + 1);
                assert_eq!(*status, 200, "a stalled request is answered normally after the stall: {body}");
                assert_eq!(body["results"][1]["status"], "accepted", "{body}");
            } else {
                assert!(*elapsed < stall / 2, "request {} should not stall, took {elapsed:?}", i + 1);
            }
        }
        let st = emu.stats();
        assert_eq!((st.requests, st.stalled, st.stored), (6, 2, 12), "{st:?}");
        // A client that gives up before the stall ends: the batch was applied all the same.
        emu.reset();
        emu.set_faults(Faults { stall_every: Some(1), stall_seconds: 2.0, ..Faults::default() });
        let t = Instant::now();
        let r = http.post(format!("{}/x", emu.url)).header("x-sluicegate-key", "id").body(r#"[{"id": 1}]"#).timeout(Duration::from_millis(300)).send().await;
        assert!(r.is_err_and(|e| e.is_timeout()), "the client should time out");
        assert!(t.elapsed() < Duration::from_secs(1));
        let st = emu.stats();
        assert_eq!((st.requests, st.stalled, st.records_accepted), (1, 1, 1), "{st:?}");
        emu.stop().await;
    }

    #[test]
    fn failures_are_spread_evenly() {
        let n = (0..100).filter(|i| fails(*i, 0.25)).count();
        assert_eq!(n, 25);
        assert!(!fails(0, 0.0));
        assert!((0..10).all(|i| fails(i, 1.0)));
        let first_four: Vec<bool> = (0..4).map(|i| fails(i, 0.25)).collect();
        assert_eq!(first_four.iter().filter(|b| **b).count(), 1);
    }
}
