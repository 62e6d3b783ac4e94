//! Destinations turn a batch of mapped records into requests and the answers into one outcome
//! per record. Batching, pacing, concurrency, retries and bisection live in [`crate::deliver`],
//! shared by all of them; a destination states its limits ([`Limits`]), reports what the
//! service said about its rate limits ([`RateInfo`]) and classifies failures ([`SendError`]).

pub mod hubspot;
pub mod iterable;
pub mod postgres;
pub mod salesforce;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::config::{DestinationConfig, DestinationKind, RateLimit, SyncConfig};
use crate::error::Result;

/// What the destination should do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Update the record with this identifier, or create it.
    Upsert,
    /// Update an existing record; an unknown identifier is rejected.
    Update,
    /// Create a record; an existing identifier is rejected.
    Create,
    /// Delete (or archive) the record with this identifier.
    Delete,
    /// Record an event.
    Append,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Upsert => "upsert",
            Operation::Update => "update",
            Operation::Create => "create",
            Operation::Delete => "delete",
            Operation::Append => "append",
        }
    }
}

/// One record to deliver.
#[derive(Debug, Clone)]
pub struct OutRecord<'a> {
    /// The primary identifier's value as text (for append syncs: the unique key's).
    pub identifier: &'a str,
    /// The mapped fields, the identifier field included (`delete`: the identifier field only).
    pub payload: &'a Map<String, Value>,
}

/// The destination's verdict on one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    /// Refused for this record's content; the reason is the destination's.
    Rejected(String),
    /// Not applied this time for a passing reason (a lock, a per-record throttle): the delivery
    /// layer sends it again, and rejects it with this reason once attempts run out.
    Retry(String),
}

/// What a destination said about its rate limit in an answer (any field it did not say is
/// `None`). The delivery layer paces requests to stay within it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateInfo {
    /// Requests allowed per `window`.
    pub limit: Option<u64>,
    /// Requests left in the current window.
    pub remaining: Option<u64>,
    /// The window's length.
    pub window: Option<Duration>,
}

/// An answer to a batch: one outcome per record, in order.
#[derive(Debug, Clone)]
pub struct Reply {
    pub outcomes: Vec<Outcome>,
    pub rate: Option<RateInfo>,
}

impl Reply {
    pub fn new(outcomes: Vec<Outcome>) -> Self {
        Reply { outcomes, rate: None }
    }
}

/// Why a whole batch was not delivered.
#[derive(Debug, Clone)]
pub enum SendError {
    /// Answered 429 (or the service's equivalent): slow down, then retry. `retry_after` when
    /// the destination said how long to wait.
    RateLimited { message: String, retry_after: Option<Duration>, rate: Option<RateInfo> },
    /// Worth retrying (5xx, timeout, connection reset); `retry_after` when the destination said
    /// how long to wait.
    Transient { message: String, retry_after: Option<Duration> },
    /// Retrying cannot help (bad credentials, wrong URL, a daily limit spent): the run fails.
    Fatal { message: String },
    /// The destination refused the batch as a whole for its content. The delivery layer
    /// bisects it to isolate the bad records; a batch of one is rejected with this message.
    BatchRejected { message: String },
}

/// A destination's limits and defaults, stated in its module docs.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most records one request may carry (the API's limit).
    pub max_records: usize,
    /// Most bytes one request body may carry, as measured by [`Destination::record_size`]
    /// plus `overhead_bytes`.
    pub max_bytes: Option<usize>,
    /// Bytes of a request body beyond its records (envelope, field names).
    pub overhead_bytes: usize,
    /// Records per request when the project does not say.
    pub default_batch: usize,
    /// The request budget when the project does not say (`None`: unpaced).
    pub default_rate: Option<RateLimit>,
    /// Requests in flight at once when the project does not say.
    pub default_concurrency: usize,
    /// Time allowed for one request when the project does not say.
    pub default_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_records: 10_000,
            max_bytes: None,
            overhead_bytes: 2,
            default_batch: 100,
            default_rate: None,
            default_concurrency: 4,
            default_timeout: Duration::from_secs(30),
        }
    }
}

#[async_trait::async_trait]
pub trait Destination: Send + Sync {
    /// `webhook destination "crm" (http://host/path)`, for messages; never shows secrets.
    fn describe(&self) -> String;
    fn limits(&self) -> Limits;
    /// The bytes this record adds to a request body (default: its JSON length plus a comma).
    fn record_size(&self, _op: Operation, record: &OutRecord<'_>) -> usize {
        json_size(record.payload) + 1
    }
    /// Verify the destination is reachable and the credentials authorized (`validate --check`),
    /// without changing anything there. `Err` says what is wrong and what to do.
    async fn check(&self) -> std::result::Result<(), String>;
    /// Send one batch (one request, or a few for destinations whose API needs them).
    async fn send(&self, op: Operation, records: &[OutRecord<'_>]) -> std::result::Result<Reply, SendError>;
}

/// What a destination is built from.
pub struct BuildContext<'a> {
    pub config: &'a DestinationConfig,
    pub sync: &'a SyncConfig,
    /// The process's shared HTTP client (one connection pool).
    pub client: reqwest::Client,
}

/// The destination a sync delivers to.
pub async fn build(ctx: &BuildContext<'_>) -> Result<Arc<dyn Destination>> {
    Ok(match &ctx.config.kind {
        DestinationKind::Webhook(c) => Arc::new(webhook::Webhook::new(ctx, c)),
        DestinationKind::Hubspot(c) => hubspot::build(ctx, c).await?,
        DestinationKind::Iterable(c) => iterable::build(ctx, c).await?,
        DestinationKind::Salesforce(c) => salesforce::build(ctx, c).await?,
        DestinationKind::Postgres(c) => postgres::build(ctx, c).await?,
    })
}

/// Length of a value's compact JSON text, without building it.
pub fn json_size<T: serde::Serialize + ?Sized>(v: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// `Retry-After` as seconds (the form APIs use), if present and sane.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        // Capped at a day (a longer wait fails the run all the same) so that it cannot overflow.
        .map(|s| Duration::from_secs_f64(s.min(86_400.0)))
}

/// A transport failure (no HTTP answer) as a retryable error with a useful message.
pub fn transport_error(e: &reqwest::Error, timeout: Duration) -> SendError {
    let kind = if e.is_timeout() {
        format!("no answer within {timeout:?}")
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    // The whole cause chain: hyper's top error ("client error (SendRequest)") says little; the
    // reason ("connection closed before message completed", "Connection reset by peer") is
    // further down.
    let mut cause = String::new();
    let mut next = std::error::Error::source(e);
    while let Some(c) = next {
        let text = c.to_string();
        if !cause.contains(&text) {
            cause.push_str(": ");
            cause.push_str(&text);
        }
        next = c.source();
    }
    SendError::Transient { message: format!("{kind}{cause}"), retry_after: None }
}

/// The most useful text in an error response body: a JSON `message`, `error`, `error.message`,
/// `detail` or `errors[0].message`, else the start of the body.
pub fn error_text(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let candidates = [
            v.get("message"),
            v.get("error").filter(|e| e.is_string()),
            v.get("error").and_then(|e| e.get("message")),
            v.get("detail"),
            v.get("errors").and_then(|e| e.get(0)).and_then(|e| e.get("message")),
        ];
        if let Some(text) = candidates.into_iter().flatten().find_map(Value::as_str) {
            return truncate(text, 500);
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() { "(empty response body)".to_string() } else { truncate(text, 500) }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}…")
    }
}
