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
    /// A create was refused because the destination already holds a record with this
    /// identifier; the reason is the destination's. The engine acknowledges it when the row's
    /// earlier delivery was in doubt (that delivery created it), and rejects it otherwise.
    Exists(String),
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
///
/// Every message and rejection reason that leaves it has the destination's configured secrets
/// masked ([`Scrubbed`]): a service that echoes a token or key back in an error body cannot put
/// it into run records, rejections, logs or Airflow task errors.
pub async fn build(ctx: &BuildContext<'_>) -> Result<Arc<dyn Destination>> {
    let inner: Arc<dyn Destination> = match &ctx.config.kind {
        DestinationKind::Webhook(c) => Arc::new(webhook::Webhook::new(ctx, c)),
        DestinationKind::Hubspot(c) => hubspot::build(ctx, c).await?,
        DestinationKind::Iterable(c) => iterable::build(ctx, c).await?,
        DestinationKind::Salesforce(c) => salesforce::build(ctx, c).await?,
        DestinationKind::Postgres(c) => postgres::build(ctx, c).await?,
    };
    Ok(Scrubbed::wrap(inner, secret_values(ctx.config)))
}

/// Shortest secret masked: shorter values would mask ordinary words.
const MIN_SECRET_LEN: usize = 4;

/// The secret values a destination is configured with: tokens, keys, header values and, for a
/// connection URL, the whole URL and its password (as written and percent-decoded).
pub fn secret_values(config: &DestinationConfig) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    match &config.kind {
        DestinationKind::Webhook(c) => {
            out.extend(c.headers.iter().map(|(_, v)| v.expose().to_string()));
            out.extend(url_secrets(c.url.expose()));
        }
        DestinationKind::Hubspot(c) => out.push(c.access_token.expose().to_string()),
        DestinationKind::Iterable(c) => out.push(c.api_key.expose().to_string()),
        DestinationKind::Salesforce(c) => {
            out.push(c.client_id.expose().to_string());
            out.push(c.client_secret.expose().to_string());
            out.extend(c.refresh_token.iter().map(|t| t.expose().to_string()));
        }
        DestinationKind::Postgres(c) => {
            out.push(c.url.expose().to_string());
            if let Some(pw) = reqwest::Url::parse(c.url.expose()).ok().and_then(|u| u.password().map(str::to_string)) {
                if let Ok(decoded) = percent_encoding::percent_decode_str(&pw).decode_utf8() {
                    out.push(decoded.into_owned());
                }
                out.push(pw);
            }
        }
    }
    out.retain(|s| s.len() >= MIN_SECRET_LEN);
    // Longest first, so a secret that contains another is masked whole.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// Query parameters whose values are credentials (compared case-insensitively, `-` as `_`).
const SECRET_QUERY_KEYS: &[&str] = &[
    "token", "key", "secret", "signature", "sig", "password", "pass", "pwd", "apikey", "api_key", "access_token", "auth", "client_secret",
];

/// The credentials inside a URL: its userinfo password and the values of query parameters
/// named like credentials (`?token=…`, `api_key`, `sig`, …, also as a suffix: `x_api_key`),
/// each as written and percent-decoded.
fn url_secrets(url: &str) -> Vec<String> {
    let Ok(u) = reqwest::Url::parse(url) else { return Vec::new() };
    let mut raw: Vec<String> = Vec::new();
    if let Some(pw) = u.password() {
        raw.push(pw.to_string());
    }
    for pair in u.query().unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_encoding::percent_decode_str(k).decode_utf8_lossy().to_ascii_lowercase().replace('-', "_");
        let secret = SECRET_QUERY_KEYS.iter().any(|s| key == *s || key.ends_with(&format!("_{s}")));
        if secret && !v.is_empty() {
            raw.push(v.to_string());
        }
    }
    let mut out = Vec::new();
    for v in raw {
        if let Ok(decoded) = percent_encoding::percent_decode_str(&v.replace('+', " ")).decode_utf8()
            && decoded != v
        {
            out.push(decoded.into_owned());
        }
        out.push(v);
    }
    out
}

/// A destination whose messages and rejection reasons have its secrets masked as `***`.
pub struct Scrubbed {
    inner: Arc<dyn Destination>,
    secrets: Vec<String>,
}

impl Scrubbed {
    pub fn wrap(inner: Arc<dyn Destination>, secrets: Vec<String>) -> Arc<dyn Destination> {
        if secrets.is_empty() {
            return inner;
        }
        Arc::new(Scrubbed { inner, secrets })
    }

    fn scrub(&self, text: &mut String) {
        for s in &self.secrets {
            if text.contains(s.as_str()) {
                *text = text.replace(s.as_str(), "***");
            }
        }
    }
}

#[async_trait::async_trait]
impl Destination for Scrubbed {
    fn describe(&self) -> String {
        let mut d = self.inner.describe();
        self.scrub(&mut d);
        d
    }
    fn limits(&self) -> Limits {
        self.inner.limits()
    }
    fn record_size(&self, op: Operation, record: &OutRecord<'_>) -> usize {
        self.inner.record_size(op, record)
    }
    async fn check(&self) -> std::result::Result<(), String> {
        self.inner.check().await.map_err(|mut e| {
            self.scrub(&mut e);
            e
        })
    }
    async fn send(&self, op: Operation, records: &[OutRecord<'_>]) -> std::result::Result<Reply, SendError> {
        match self.inner.send(op, records).await {
            Ok(mut reply) => {
                for o in &mut reply.outcomes {
                    if let Outcome::Rejected(reason) | Outcome::Retry(reason) | Outcome::Exists(reason) = o {
                        self.scrub(reason);
                    }
                }
                Ok(reply)
            }
            Err(mut e) => {
                match &mut e {
                    SendError::RateLimited { message, .. }
                    | SendError::Transient { message, .. }
                    | SendError::Fatal { message }
                    | SendError::BatchRejected { message } => self.scrub(message),
                }
                Err(e)
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Project;

    const TOKEN: &str = "pat-na1-0f3c9e";
    const KEY: &str = "itk-77aa01";
    const HEADER: &str = "Bearer whk-4d9e1b";
    const SF_ID: &str = "sfid-3c1e55";
    const SF_SECRET: &str = "sfcs-93d1aa";
    const SF_REFRESH: &str = "sfrt-27aa0b";
    const PG_PW: &str = "p@ss w0rd/9";

    fn project() -> Project {
        let text = r#"
sources:
  w: { url: "sqlite://w.db" }
destinations:
  hs: { type: hubspot, access_token: "${T}" }
  it: { type: iterable, api_key: "${K}" }
  wh: { type: webhook, url: "http://127.0.0.1:1/in", headers: { Authorization: "${H}" } }
  sf: { type: salesforce, login_url: "https://login.salesforce.com", client_id: "${SI}", client_secret: "${SS}", refresh_token: "${SR}" }
  pg: { type: postgres, url: "${PG}" }
syncs:
  - id: 1
    name: s
    source: { connection: w, table: t }
    destination: { connection: wh, object: contacts }
    primary_identifier: { from: email, to: email }
    mappings: [ { from: a, to: a } ]
"#;
        let pg = format!("postgres://u:{}@127.0.0.1:1/db", "p%40ss%20w0rd%2F9");
        let env = move |name: &str| -> Option<String> {
            Some(match name {
                "T" => TOKEN.into(),
                "K" => KEY.into(),
                "H" => HEADER.into(),
                "SI" => SF_ID.into(),
                "SS" => SF_SECRET.into(),
                "SR" => SF_REFRESH.into(),
                "PG" => pg.clone(),
                _ => return None,
            })
        };
        Project::from_str_with_env(text, std::path::Path::new("/tmp/sluicegate.yml"), &env).unwrap()
    }

    /// A destination that says every secret it was given, in every message it has.
    struct Echo(String);

    #[async_trait::async_trait]
    impl Destination for Echo {
        fn describe(&self) -> String {
            format!("echo {}", self.0)
        }
        fn limits(&self) -> Limits {
            Limits::default()
        }
        async fn check(&self) -> std::result::Result<(), String> {
            Err(format!("401: token {} refused", self.0))
        }
        async fn send(&self, op: Operation, records: &[OutRecord<'_>]) -> std::result::Result<Reply, SendError> {
            match op {
                Operation::Upsert => Ok(Reply::new(
                    records.iter().enumerate().map(|(i, _)| if i % 2 == 0 { Outcome::Rejected(format!("bad {}", self.0)) } else { Outcome::Retry(format!("later {}", self.0)) }).collect(),
                )),
                Operation::Update => Err(SendError::RateLimited { message: format!("slow {}", self.0), retry_after: None, rate: None }),
                Operation::Create => Err(SendError::Transient { message: format!("503 {}", self.0), retry_after: None }),
                Operation::Delete => Err(SendError::Fatal { message: format!("401 {}", self.0) }),
                Operation::Append => Err(SendError::BatchRejected { message: format!("400 {}", self.0) }),
            }
        }
    }

    fn texts(r: std::result::Result<Reply, SendError>) -> Vec<String> {
        match r {
            Ok(reply) => reply
                .outcomes
                .into_iter()
                .map(|o| match o {
                    Outcome::Rejected(s) | Outcome::Retry(s) | Outcome::Exists(s) => s,
                    Outcome::Accepted => String::new(),
                })
                .collect(),
            Err(SendError::RateLimited { message, .. } | SendError::Transient { message, .. } | SendError::Fatal { message } | SendError::BatchRejected { message }) => vec![message],
        }
    }

    #[tokio::test]
    async fn a_webhook_url_password_and_token_parameters_are_secrets() {
        let text = r#"
sources:
  w: { url: "sqlite://w.db" }
destinations:
  wh: { type: webhook, url: "https://bot:pa%24%24word@hooks.example.com/in?token=XYZ123&Api-Key=k3y-99&page=2&x_signature=s1g%2Bv" }
syncs:
  - id: 1
    name: s
    source: { connection: w, table: t }
    destination: { connection: wh, object: contacts }
    primary_identifier: { from: email, to: email }
    mappings: [ { from: a, to: a } ]
"#;
        let p = Project::from_str_with_env(text, std::path::Path::new("/tmp/sluicegate.yml"), &|_: &str| None).unwrap();
        let values = secret_values(&p.destinations["wh"]);
        for s in ["XYZ123", "k3y-99", "pa%24%24word", "pa$$word", "s1g%2Bv", "s1g+v"] {
            assert!(values.iter().any(|v| v == s), "{s} is not among {values:?}");
        }
        assert!(!values.iter().any(|v| v == "2" || v == "bot"), "{values:?}");
        let d = Scrubbed::wrap(Arc::new(Echo("XYZ123".into())), values);
        let payload = Map::new();
        let recs = [OutRecord { identifier: "a", payload: &payload }];
        let err = texts(d.send(Operation::Delete, &recs).await);
        assert_eq!(err, vec!["401 ***".to_string()]);
        assert_eq!(d.check().await.unwrap_err(), "401: token *** refused");
    }

    #[tokio::test]
    async fn every_configured_secret_is_masked_in_every_message_and_reason() {
        let p = project();
        let cases: &[(&str, &[&str])] = &[
            ("hs", &[TOKEN]),
            ("it", &[KEY]),
            ("wh", &[HEADER]),
            ("sf", &[SF_ID, SF_SECRET, SF_REFRESH]),
            ("pg", &[PG_PW, "p%40ss%20w0rd%2F9"]),
        ];
        let payload = Map::new();
        let recs = [OutRecord { identifier: "a", payload: &payload }, OutRecord { identifier: "b", payload: &payload }];
        for (name, secrets) in cases {
            let cfg = &p.destinations[*name];
            let values = secret_values(cfg);
            for s in *secrets {
                assert!(values.iter().any(|v| v == s), "{name}: {s} is not among its secrets");
                let d = Scrubbed::wrap(Arc::new(Echo(format!("<{s}>"))), values.clone());
                let mut seen = vec![d.describe(), d.check().await.unwrap_err()];
                for op in [Operation::Upsert, Operation::Update, Operation::Create, Operation::Delete, Operation::Append] {
                    seen.extend(texts(d.send(op, &recs).await));
                }
                assert_eq!(seen.len(), 8);
                for t in &seen {
                    assert!(!t.contains(s), "{name}: {s} leaked in {t:?}");
                    assert!(t.contains("<***>"), "{name}: the message lost its text: {t:?}");
                }
            }
        }
        // Short values are not secrets worth masking: they would mask ordinary words.
        let d = Scrubbed::wrap(Arc::new(Echo("ok".into())), vec!["secret-value".into()]);
        assert_eq!(d.describe(), "echo ok");
    }
}
