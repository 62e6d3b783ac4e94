//! An emulator of HubSpot's CRM v3 contacts API (`sluicegate emulate hubspot`), for tests,
//! demos and benchmarks. Contacts live in memory, keyed by record ID (assigned from 1001 up)
//! with an index by email (lowercased, as HubSpot stores emails) and by each custom property
//! with unique values.
//!
//! Endpoints (all need `Authorization: Bearer <token>` when the emulator is given a token;
//! otherwise 401 `INVALID_AUTHENTICATION`; a token lacking a scope gets 403 `MISSING_SCOPES`):
//! - `POST /crm/v3/objects/contacts/batch/upsert|update|create` — more than 100 inputs: 400
//!   "The maximum number of inputs supported in a batch is 100…"; the same identifier twice
//!   (emails ignoring case): 400 "Duplicate IDs found in batch input: […]" with `context.ids`.
//!   Unknown properties (`PROPERTY_DOESNT_EXIST`), invalid emails (`INVALID_EMAIL`) and
//!   read-only properties (`READ_ONLY_VALUE`) are reported in HubSpot's form, as a JSON list in
//!   the message "Property values were not valid: […]". For create and upsert batches whose
//!   inputs all carry `objectWriteTraceId`, the answer is 207 with the good records written
//!   and each bad one in `errors[].context.objectWriteTraceId`; otherwise (and always for
//!   update, or with `whole_batch_validation`) 400 `VALIDATION_ERROR` and nothing is written.
//!   Upserts answer 200 with `new: true|false` per result; creates 201; creating an existing
//!   email is a `CONFLICT` ("Contact already exists. Existing ID: N": per record in a 207, or
//!   409 for the batch); updating unknown records answers 207 with `OBJECT_NOT_FOUND` and
//!   `context.ids`. A value of `""` clears a property.
//! - `POST /crm/v3/objects/contacts/batch/read` (`idProperty` at the top level): 200, or 207
//!   with `OBJECT_NOT_FOUND` for the unknown ones. `POST …/batch/archive` (record IDs): 204.
//! - `GET /crm/v3/objects/contacts?limit=&after=`: a page of contacts.
//!   `GET /crm/v3/properties/contacts`: the known properties (the standard contact properties
//!   plus the configured custom ones, `hasUniqueValue` for unique ones).
//!
//! Rate limits, as HubSpot: a rolling window of `interval_ms` (default 10 s) admits `limit`
//! requests (default 100), counting admitted requests only; beyond it, 429 with
//! `{"status":"error","message":"You have reached your secondly limit.","errorType":"RATE_LIMIT",
//! "policyName":"TEN_SECONDLY_ROLLING",…}`. An optional daily budget (`daily_limit`, default
//! 250,000; 0 = none) answers 429 with `policyName: DAILY` once spent. Every API answer carries
//! `X-HubSpot-RateLimit-Max`, `-Remaining`, `-Interval-Milliseconds`, and with a daily budget
//! `-Daily`, `-Daily-Remaining`. 429s carry no `Retry-After` (HubSpot documents none).
//!
//! Faults (`PUT /_emulator/faults`, or [`HubspotEmulator::set_faults`]): `error_rate` (a share
//! of admitted requests, spread evenly) and `error_next` (the next N) answered `error_status`
//! (502 by default) without being applied; `latency_ms` before every answer; `stall_next`: the
//! next N requests get no answer until the client gives up; `stall_every` / `stall_seconds`:
//! every Nth request hangs that long, then 504 unapplied; `storm_next`: the next N requests
//! answered 429 `TEN_SECONDLY_ROLLING` (a 429 storm), with `Retry-After: storm_retry_after`
//! when set; `whole_batch_validation`.
//!
//! Read-back: `GET /_emulator/contacts[?archived=true]`, `GET /_emulator/stats` (requests, 429s,
//! errors, records created/updated/archived, and a per-second log of requests and 429s since
//! the last reset), `POST /_emulator/reset[?contacts=true]`, `PUT /_emulator/rate`
//! (`{"limit", "interval_ms", "daily_limit"}`).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::sync::{oneshot, watch};

use crate::error::{Error, Result};

/// Most inputs per batch request.
pub const MAX_INPUTS: usize = 100;
const WRITE_SCOPE: &str = "crm.objects.contacts.write";
const READ_SCOPE: &str = "crm.objects.contacts.read";

/// HubSpot's standard contact properties (a representative set).
pub const STANDARD_PROPERTIES: &[&str] = &[
    "email", "firstname", "lastname", "phone", "mobilephone", "company", "website", "jobtitle", "address", "city", "state", "zip",
    "country", "lifecyclestage", "hs_lead_status", "hubspot_owner_id", "industry", "annualrevenue", "numemployees", "date_of_birth",
    "salutation", "fax", "message", "twitterhandle", "hs_language", "hs_object_id", "createdate", "lastmodifieddate",
];
const READ_ONLY: &[&str] = &["hs_object_id", "createdate", "lastmodifieddate"];

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Port; 0 picks a free one. The URL is printed as the first line of output.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// The access token requests must carry (`Authorization: Bearer …`); any when unset.
    #[arg(long, env = "HUBSPOT_EMULATOR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Requests admitted per rate window.
    #[arg(long, default_value_t = 100)]
    pub rate_limit: u64,
    /// The rolling rate window, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub interval_ms: u64,
    /// Requests admitted per day (0: no daily limit).
    #[arg(long, default_value_t = 250_000)]
    pub daily_limit: u64,
    /// A custom contact property to accept besides the standard ones (repeatable).
    #[arg(long = "property", value_name = "NAME")]
    pub properties: Vec<String>,
    /// A custom contact property with unique values, usable as `idProperty` (repeatable).
    #[arg(long = "unique-property", value_name = "NAME")]
    pub unique_properties: Vec<String>,
    /// Share of admitted requests answered with --error-status (0 to 1, spread evenly).
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    #[arg(long, default_value_t = 502)]
    pub error_status: u16,
    /// Milliseconds to wait before answering each request.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Every Nth request hangs for --stall-seconds, then is answered 504 unapplied (0: never).
    #[arg(long, default_value_t = 0)]
    pub stall_every: u64,
    /// How long a stalled request hangs, in seconds.
    #[arg(long, default_value_t = 30.0)]
    pub stall_seconds: f64,
    /// A 429 storm: the next N requests are answered 429 "You have reached your secondly
    /// limit." (policyName TEN_SECONDLY_ROLLING) with the rate-limit headers.
    #[arg(long, default_value_t = 0)]
    pub storm_next: u64,
    /// Retry-After seconds on the storm's 429s (HubSpot documents none; unset: none).
    #[arg(long)]
    pub storm_retry_after: Option<u64>,
    /// Refuse a batch with an invalid value as a whole (400) even when its inputs carry
    /// objectWriteTraceId.
    #[arg(long)]
    pub whole_batch_validation: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Faults {
    /// Share of admitted requests answered `error_status` (spread evenly).
    #[serde(default)]
    pub error_rate: f64,
    #[serde(default = "default_error_status")]
    pub error_status: u16,
    /// The next N admitted requests are answered `error_status`.
    #[serde(default)]
    pub error_next: u64,
    #[serde(default)]
    pub latency_ms: u64,
    /// The next N requests get no answer (until the client times out).
    #[serde(default)]
    pub stall_next: u64,
    /// The next N requests are answered 429 `TEN_SECONDLY_ROLLING`.
    #[serde(default)]
    pub storm_next: u64,
    /// `Retry-After` (seconds) on the storm's 429s; none by default, as HubSpot documents none.
    #[serde(default)]
    pub storm_retry_after: Option<u64>,
    /// Every Nth request (counting from the first) hangs for `stall_seconds`, then is answered
    /// 504 without being applied (0: never).
    #[serde(default)]
    pub stall_every: u64,
    #[serde(default)]
    pub stall_seconds: f64,
    /// Refuse a batch with an invalid value as a whole, trace IDs or not.
    #[serde(default)]
    pub whole_batch_validation: bool,
}

fn default_error_status() -> u16 {
    502
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct RateConfig {
    /// Requests admitted per rolling window.
    pub limit: u64,
    pub interval_ms: u64,
    /// Requests admitted per day (0: none).
    #[serde(default)]
    pub daily_limit: u64,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig { limit: 100, interval_ms: 10_000, daily_limit: 250_000 }
    }
}

#[derive(Debug, Clone)]
pub struct HubspotEmulatorConfig {
    /// The token requests must carry; any when `None`.
    pub token: Option<String>,
    /// The token's scopes; all when `None`.
    pub scopes: Option<Vec<String>>,
    pub rate: RateConfig,
    /// Custom properties besides the standard ones.
    pub properties: Vec<String>,
    /// Custom properties with unique values (accepted as properties too).
    pub unique_properties: Vec<String>,
    pub faults: Faults,
}

impl Default for HubspotEmulatorConfig {
    fn default() -> Self {
        HubspotEmulatorConfig {
            token: None,
            scopes: None,
            rate: RateConfig::default(),
            properties: Vec::new(),
            unique_properties: Vec::new(),
            faults: Faults { error_status: default_error_status(), ..Faults::default() },
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SecondStat {
    /// Seconds since the emulator started (or was reset).
    pub second: u64,
    /// API requests that arrived in this second, 429s included.
    pub requests: u64,
    pub rate_limited: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    /// API requests (the `_emulator` endpoints are not counted).
    pub requests: u64,
    /// Requests answered 429 (window, storm and daily).
    pub rate_limited: u64,
    /// Of those, 429s of the daily policy.
    pub daily_limited: u64,
    pub server_errors: u64,
    pub stalled: u64,
    pub unauthorized: u64,
    pub forbidden: u64,
    /// Batches refused as a whole (400/409).
    pub batches_refused: u64,
    /// Batch answers with 207.
    pub multi_status: u64,
    pub records_created: u64,
    pub records_updated: u64,
    /// Writes that changed nothing (the same values again).
    pub records_unchanged: u64,
    pub records_archived: u64,
    /// Records named in the errors of 207 answers.
    pub record_errors: u64,
    /// Contacts currently stored (not archived).
    pub contacts: u64,
    pub per_second: Vec<SecondStat>,
}

/// One stored contact.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Contact {
    pub id: String,
    pub properties: BTreeMap<String, String>,
    #[serde(rename = "createdAt")]
    pub created_at: String,
    #[serde(rename = "updatedAt")]
    pub updated_at: String,
    pub archived: bool,
}

struct Inner {
    token: Option<String>,
    scopes: Option<Vec<String>>,
    rate: RateConfig,
    faults: Faults,
    known: BTreeSet<String>,
    unique: BTreeSet<String>,
    contacts: BTreeMap<u64, Contact>,
    by_email: HashMap<String, u64>,
    by_unique: HashMap<(String, String), u64>,
    next_id: u64,
    window: VecDeque<Instant>,
    daily_used: u64,
    admitted: u64,
    started: Instant,
    stats: Stats,
    serial: u64,
    /// API requests received, for `stall_every`.
    received: u64,
    /// `Retry-After` for the answer being built (a storm's 429).
    retry_after: Option<u64>,
}

struct Server {
    inner: Mutex<Inner>,
    stop: watch::Receiver<bool>,
}

type Shared = Arc<Server>;

fn lock(s: &Server) -> std::sync::MutexGuard<'_, Inner> {
    s.inner.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_iso() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Whether admitted request number `n` (from 0) fails at `rate`: failures spread evenly.
fn fails(n: u64, rate: f64) -> bool {
    if rate <= 0.0 {
        return false;
    }
    if rate >= 1.0 {
        return true;
    }
    ((n + 1) as f64 * rate).floor() > (n as f64 * rate).floor()
}

/// An email HubSpot would take: one `@`, a local part, a dotted domain, no spaces.
pub fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else { return false };
    !local.is_empty()
        && !domain.contains('@')
        && !s.chars().any(char::is_whitespace)
        && domain.split('.').count() >= 2
        && domain.split('.').all(|p| !p.is_empty())
        && domain.rsplit('.').next().is_some_and(|tld| tld.len() >= 2)
}

/// A property value as text (values should be strings; numbers and booleans are taken).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => Some(String::new()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn detail(code: &str, name: &str, message: String) -> Value {
    json!({"isValid": false, "message": message, "error": code, "name": name})
}

fn details_message(details: &[Value]) -> String {
    format!("Property values were not valid: {}", Value::Array(details.to_vec()))
}

/// Why one input cannot be written.
enum Problem {
    Invalid(Vec<Value>),
    Conflict(u64),
    NotFound,
}

/// What one valid input will do.
enum Plan {
    Create(BTreeMap<String, String>),
    Update(u64, BTreeMap<String, String>),
}

impl Inner {
    fn correlation_id(&mut self) -> String {
        self.serial += 1;
        let h = xxhash_rust::xxh3::xxh3_128(&[self.serial.to_le_bytes(), (self.started.elapsed().as_nanos() as u64).to_le_bytes()].concat());
        let x = format!("{h:032x}");
        format!("{}-{}-{}-{}-{}", &x[..8], &x[8..12], &x[12..16], &x[16..20], &x[20..])
    }

    fn error(&mut self, status: StatusCode, category: &str, message: impl Into<String>, extra: Option<(&str, Value)>) -> (StatusCode, Value) {
        let mut body = json!({"status": "error", "message": message.into(), "correlationId": self.correlation_id(), "category": category});
        if let Some((k, v)) = extra {
            body[k] = v;
        }
        (status, body)
    }

    fn second(&mut self) -> &mut SecondStat {
        let sec = self.started.elapsed().as_secs();
        let log = &mut self.stats.per_second;
        while log.last().is_none_or(|l| l.second < sec) {
            let next = log.last().map_or(0, |l| l.second + 1);
            log.push(SecondStat { second: next, ..Default::default() });
        }
        log.last_mut().expect("just pushed")
    }

    fn prune(&mut self, now: Instant) {
        let w = Duration::from_millis(self.rate.interval_ms.max(1));
        while self.window.front().is_some_and(|t| now.duration_since(*t) >= w) {
            self.window.pop_front();
        }
    }

    fn rate_headers(&mut self) -> Vec<(&'static str, String)> {
        self.prune(Instant::now());
        let mut h = vec![
            ("x-hubspot-ratelimit-max", self.rate.limit.to_string()),
            ("x-hubspot-ratelimit-remaining", self.rate.limit.saturating_sub(self.window.len() as u64).to_string()),
            ("x-hubspot-ratelimit-interval-milliseconds", self.rate.interval_ms.to_string()),
        ];
        if self.rate.daily_limit > 0 {
            h.push(("x-hubspot-ratelimit-daily", self.rate.daily_limit.to_string()));
            h.push(("x-hubspot-ratelimit-daily-remaining", self.rate.daily_limit.saturating_sub(self.daily_used).to_string()));
        }
        if let Some(secs) = self.retry_after.take() {
            h.push(("retry-after", secs.to_string()));
        }
        h
    }

    fn rate_limited(&mut self, daily: bool) -> (StatusCode, Value) {
        self.stats.rate_limited += 1;
        self.second().rate_limited += 1;
        let (message, policy) = if daily {
            self.stats.daily_limited += 1;
            ("You have reached your daily limit.", "DAILY")
        } else {
            ("You have reached your secondly limit.", "TEN_SECONDLY_ROLLING")
        };
        let body = json!({"status": "error", "message": message, "errorType": "RATE_LIMIT", "correlationId": self.correlation_id(),
            "policyName": policy, "requestId": self.correlation_id()});
        (StatusCode::TOO_MANY_REQUESTS, body)
    }

    /// Authentication, scopes, rate limits and injected failures, in that order; `Err` is the
    /// answer when the request goes no further.
    fn gate(&mut self, headers: &HeaderMap, scope: &str) -> std::result::Result<(), (StatusCode, Value)> {
        self.stats.requests += 1;
        self.second().requests += 1;
        if let Some(token) = &self.token {
            let given = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
            if given != Some(token.as_str()) {
                self.stats.unauthorized += 1;
                return Err(self.error(
                    StatusCode::UNAUTHORIZED,
                    "INVALID_AUTHENTICATION",
                    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                    None,
                ));
            }
        }
        if let Some(scopes) = &self.scopes {
            if !scopes.iter().any(|s| s == scope) {
                self.stats.forbidden += 1;
                let errors = json!([{"message": "One or more of the following scopes are required.", "context": {"requiredGranularScopes": [scope]}}]);
                return Err(self.error(
                    StatusCode::FORBIDDEN,
                    "MISSING_SCOPES",
                    "This app hasn't been granted all required scopes to make this call. Read more about required scopes here: https://developers.hubspot.com/scopes.",
                    Some(("errors", errors)),
                ));
            }
        }
        if self.rate.daily_limit > 0 && self.daily_used >= self.rate.daily_limit {
            return Err(self.rate_limited(true));
        }
        if self.faults.storm_next > 0 {
            self.faults.storm_next -= 1;
            self.retry_after = self.faults.storm_retry_after;
            return Err(self.rate_limited(false));
        }
        let now = Instant::now();
        self.prune(now);
        if self.window.len() as u64 >= self.rate.limit {
            return Err(self.rate_limited(false));
        }
        self.window.push_back(now);
        self.daily_used += 1;
        let n = self.admitted;
        self.admitted += 1;
        let failing = if self.faults.error_next > 0 {
            self.faults.error_next -= 1;
            true
        } else {
            fails(n, self.faults.error_rate)
        };
        if failing {
            self.stats.server_errors += 1;
            let status = StatusCode::from_u16(self.faults.error_status).unwrap_or(StatusCode::BAD_GATEWAY);
            return Err(self.error(status, "INTERNAL_ERROR", format!("The emulator is failing this request on purpose (HTTP {}).", status.as_u16()), None));
        }
        Ok(())
    }

    fn is_unique(&self, prop: &str) -> bool {
        prop == "email" || prop == "hs_object_id" || self.unique.contains(prop)
    }

    /// The record a `(idProperty, id)` pair names, if it exists.
    fn find(&self, id_property: Option<&str>, id: &str) -> Option<u64> {
        match id_property {
            None | Some("hs_object_id") => id.parse::<u64>().ok().filter(|i| self.contacts.get(i).is_some_and(|c| !c.archived)),
            Some("email") => self.by_email.get(&id.to_lowercase()).copied(),
            Some(p) => self.by_unique.get(&(p.to_string(), id.to_string())).copied(),
        }
    }

    /// Property values of an input, checked: `Err` lists what is wrong in HubSpot's form.
    fn check_properties(&self, props: Option<&Value>) -> std::result::Result<BTreeMap<String, String>, Vec<Value>> {
        let mut out = BTreeMap::new();
        let mut bad = Vec::new();
        for (k, v) in props.and_then(Value::as_object).into_iter().flatten() {
            if !self.known.contains(k) {
                bad.push(detail("PROPERTY_DOESNT_EXIST", k, format!("Property \"{k}\" does not exist")));
                continue;
            }
            if READ_ONLY.contains(&k.as_str()) {
                bad.push(detail("READ_ONLY_VALUE", k, format!("\"{k}\" is a read only property; its value cannot be set.")));
                continue;
            }
            let Some(t) = text(v) else {
                bad.push(detail("INVALID_STRING", k, format!("Property \"{k}\" must be a string, found {v}")));
                continue;
            };
            if k == "email" && !t.is_empty() && !valid_email(&t) {
                bad.push(detail("INVALID_EMAIL", k, format!("Email address {t} is invalid")));
                continue;
            }
            out.insert(k.clone(), if k == "email" { t.to_lowercase() } else { t });
        }
        if bad.is_empty() { Ok(out) } else { Err(bad) }
    }

    /// Unique values an input would take from another record.
    fn unique_clash(&self, props: &BTreeMap<String, String>, own: Option<u64>) -> Option<Vec<Value>> {
        let mut bad = Vec::new();
        for (k, v) in props {
            if v.is_empty() {
                continue;
            }
            let holder = if k == "email" { self.by_email.get(v).copied() } else if self.unique.contains(k) { self.by_unique.get(&(k.clone(), v.clone())).copied() } else { None };
            if let Some(h) = holder.filter(|h| Some(*h) != own) {
                bad.push(detail("VALUE_NOT_UNIQUE", k, format!("A contact with the value {v} for the unique property {k} already exists (ID {h})")));
            }
        }
        (!bad.is_empty()).then_some(bad)
    }

    fn index(&mut self, id: u64, props: &BTreeMap<String, String>, add: bool) {
        for (k, v) in props {
            if v.is_empty() {
                continue;
            }
            if k == "email" {
                if add { self.by_email.insert(v.clone(), id) } else { self.by_email.remove(v) };
            } else if self.unique.contains(k) {
                let key = (k.clone(), v.clone());
                if add { self.by_unique.insert(key, id) } else { self.by_unique.remove(&key) };
            }
        }
    }

    /// Apply a plan: `(record id, created)`.
    fn apply(&mut self, plan: Plan) -> (u64, bool) {
        let now = now_iso();
        match plan {
            Plan::Create(props) => {
                let id = self.next_id;
                self.next_id += 1;
                let props: BTreeMap<String, String> = props.into_iter().filter(|(_, v)| !v.is_empty()).collect();
                self.index(id, &props, true);
                self.contacts.insert(id, Contact { id: id.to_string(), properties: props, created_at: now.clone(), updated_at: now, archived: false });
                self.stats.records_created += 1;
                (id, true)
            }
            Plan::Update(id, props) => {
                let old = self.contacts[&id].properties.clone();
                let mut new = old.clone();
                for (k, v) in props {
                    if v.is_empty() {
                        new.remove(&k);
                    } else {
                        new.insert(k, v);
                    }
                }
                if new == old {
                    self.stats.records_unchanged += 1;
                } else {
                    self.stats.records_updated += 1;
                    self.index(id, &old, false);
                    self.index(id, &new, true);
                    let c = self.contacts.get_mut(&id).expect("planned for an existing record");
                    c.properties = new;
                    c.updated_at = now;
                }
                (id, false)
            }
        }
    }

    fn result_of(&self, id: u64, trace: Option<&str>, new: Option<bool>) -> Value {
        let c = &self.contacts[&id];
        let mut props: Map<String, Value> = c.properties.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        props.insert("hs_object_id".into(), Value::String(c.id.clone()));
        props.insert("createdate".into(), Value::String(c.created_at.clone()));
        props.insert("lastmodifieddate".into(), Value::String(c.updated_at.clone()));
        let mut r = json!({"id": c.id, "properties": props, "createdAt": c.created_at, "updatedAt": c.updated_at, "archived": false});
        if let Some(t) = trace {
            r["objectWriteTraceId"] = json!(t);
        }
        if let Some(n) = new {
            r["new"] = json!(n);
        }
        r
    }

    fn batch(&mut self, op: &str, body: &[u8]) -> (StatusCode, Option<Value>) {
        let started = now_iso();
        let v: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                let (s, b) = self.error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", format!("Invalid input JSON on line {}, column {}: {e}", e.line(), e.column()), None);
                self.stats.batches_refused += 1;
                return (s, Some(b));
            }
        };
        let Some(inputs) = v.get("inputs").and_then(Value::as_array).cloned() else {
            self.stats.batches_refused += 1;
            let (s, b) = self.error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "Invalid input JSON: `inputs` is required and must be a list", None);
            return (s, Some(b));
        };
        let refuse = |me: &mut Inner, status: StatusCode, category: &str, message: String, extra: Option<(&str, Value)>| {
            me.stats.batches_refused += 1;
            let (s, b) = me.error(status, category, message, extra);
            (s, Some(b))
        };
        if inputs.len() > MAX_INPUTS {
            return refuse(self, StatusCode::BAD_REQUEST, "VALIDATION_ERROR",
                format!("The maximum number of inputs supported in a batch is {MAX_INPUTS}. Please reduce the number of items and try again"), None);
        }
        // The identifier of each input (not for create), and the batch-wide idProperty of read.
        let top_id_property = v.get("idProperty").and_then(Value::as_str).map(str::to_string);
        let ids: Vec<(Option<String>, String)> = inputs
            .iter()
            .map(|i| {
                let p = if op == "read" { top_id_property.clone() } else { i.get("idProperty").and_then(Value::as_str).map(str::to_string) };
                let id = i.get("id").map(|x| text(x).unwrap_or_default()).unwrap_or_default();
                (p, id)
            })
            .collect();
        if op != "create" {
            if let Some((p, _)) = ids.iter().find(|(p, _)| p.as_deref().is_some_and(|p| !self.is_unique(p))) {
                let p = p.clone().unwrap_or_default();
                return refuse(self, StatusCode::BAD_REQUEST, "VALIDATION_ERROR",
                    format!("Property \"{p}\" is not a unique identifier property for CONTACT; use email, hs_object_id or a property with unique values"), None);
            }
            if op == "upsert" && ids.iter().any(|(p, _)| p.is_none()) {
                return refuse(self, StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "Upsert inputs need an idProperty: email or a property with unique values".into(), None);
            }
            let mut seen = BTreeSet::new();
            let mut dups = Vec::new();
            for (p, id) in &ids {
                let key = if p.as_deref() == Some("email") { id.to_lowercase() } else { id.clone() };
                if !seen.insert(key) && !dups.contains(id) {
                    dups.push(id.clone());
                }
            }
            if !dups.is_empty() {
                return refuse(self, StatusCode::BAD_REQUEST, "VALIDATION_ERROR",
                    format!("Duplicate IDs found in batch input: [{}]. IDs must be unique", dups.join(", ")), Some(("context", json!({"ids": dups}))));
            }
        }
        match op {
            "read" => return self.read(&v, &ids, started),
            "archive" => {
                for (_, id) in &ids {
                    if let Some(n) = id.parse::<u64>().ok().filter(|n| self.contacts.get(n).is_some_and(|c| !c.archived)) {
                        let props = self.contacts[&n].properties.clone();
                        self.index(n, &props, false);
                        let c = self.contacts.get_mut(&n).expect("checked");
                        c.archived = true;
                        c.updated_at = now_iso();
                        self.stats.records_archived += 1;
                    }
                }
                return (StatusCode::NO_CONTENT, None);
            }
            _ => {}
        }
        // Plan every input before writing any.
        let traces: Vec<Option<String>> = inputs.iter().map(|i| i.get("objectWriteTraceId").and_then(Value::as_str).map(str::to_string)).collect();
        let mut plans: Vec<std::result::Result<Plan, Problem>> = Vec::with_capacity(inputs.len());
        for (input, (id_property, id)) in inputs.iter().zip(&ids) {
            let plan = self.check_properties(input.get("properties")).map_err(Problem::Invalid).and_then(|mut props| {
                match op {
                    "create" => {
                        if let Some(existing) = props.get("email").and_then(|e| self.by_email.get(e)) {
                            return Err(Problem::Conflict(*existing));
                        }
                        if let Some(bad) = self.unique_clash(&props, None) {
                            return Err(Problem::Invalid(bad));
                        }
                        Ok(Plan::Create(props))
                    }
                    _ => {
                        let p = id_property.as_deref().unwrap_or("hs_object_id");
                        if p == "email" && !valid_email(id) {
                            return Err(Problem::Invalid(vec![detail("INVALID_EMAIL", "email", format!("Email address {id} is invalid"))]));
                        }
                        match self.find(id_property.as_deref(), id) {
                            Some(existing) => {
                                if let Some(bad) = self.unique_clash(&props, Some(existing)) {
                                    return Err(Problem::Invalid(bad));
                                }
                                Ok(Plan::Update(existing, props))
                            }
                            None if op == "update" => Err(Problem::NotFound),
                            None => {
                                props.insert(p.to_string(), if p == "email" { id.to_lowercase() } else { id.clone() });
                                if let Some(bad) = self.unique_clash(&props, None) {
                                    return Err(Problem::Invalid(bad));
                                }
                                Ok(Plan::Create(props))
                            }
                        }
                    }
                }
            });
            plans.push(plan);
        }
        // Two inputs of one create batch taking the same email: the second conflicts.
        let partial = matches!(op, "create" | "upsert") && traces.iter().all(Option::is_some) && !self.faults.whole_batch_validation;
        let invalid: Vec<Value> = plans.iter().filter_map(|p| match p { Err(Problem::Invalid(d)) => Some(d.clone()), _ => None }).flatten().collect();
        if !invalid.is_empty() && !partial {
            return refuse(self, StatusCode::BAD_REQUEST, "VALIDATION_ERROR", details_message(&invalid), None);
        }
        let conflict = plans.iter().find_map(|p| match p { Err(Problem::Conflict(id)) => Some(*id), _ => None });
        if let (Some(existing), false) = (conflict, partial) {
            return refuse(self, StatusCode::CONFLICT, "CONFLICT", format!("Contact already exists. Existing ID: {existing}"), None);
        }
        let mut results = Vec::new();
        let mut errors = Vec::new();
        let mut not_found = Vec::new();
        for ((plan, trace), (_, id)) in plans.into_iter().zip(&traces).zip(&ids) {
            match plan {
                Ok(Plan::Create(props)) if op == "create" && props.get("email").is_some_and(|e| self.by_email.contains_key(e)) => {
                    let existing = self.by_email[&props["email"]];
                    errors.push(self.record_error("CONFLICT", format!("Contact already exists. Existing ID: {existing}"), trace.as_deref()));
                }
                Ok(plan) => {
                    let (rid, created) = self.apply(plan);
                    results.push(self.result_of(rid, trace.as_deref(), (op == "upsert").then_some(created)));
                }
                Err(Problem::Invalid(d)) => errors.push(self.record_error("VALIDATION_ERROR", details_message(&d), trace.as_deref())),
                Err(Problem::Conflict(existing)) => {
                    errors.push(self.record_error("CONFLICT", format!("Contact already exists. Existing ID: {existing}"), trace.as_deref()))
                }
                Err(Problem::NotFound) => not_found.push(id.clone()),
            }
        }
        if !not_found.is_empty() {
            self.stats.record_errors += not_found.len() as u64;
            errors.push(json!({"status": "error", "category": "OBJECT_NOT_FOUND",
                "message": "Could not get some CONTACT objects, they may be deleted or not exist. Check that ids are valid.",
                "context": {"ids": not_found}}));
        }
        let mut body = json!({"status": "COMPLETE", "results": results, "requestedAt": started, "startedAt": started, "completedAt": now_iso()});
        if errors.is_empty() {
            (if op == "create" { StatusCode::CREATED } else { StatusCode::OK }, Some(body))
        } else {
            self.stats.multi_status += 1;
            body["numErrors"] = json!(errors.len());
            body["errors"] = Value::Array(errors);
            (StatusCode::MULTI_STATUS, Some(body))
        }
    }

    fn record_error(&mut self, category: &str, message: String, trace: Option<&str>) -> Value {
        self.stats.record_errors += 1;
        let mut e = json!({"status": "error", "category": category, "message": message, "context": {}});
        if let Some(t) = trace {
            e["context"]["objectWriteTraceId"] = json!([t]);
        }
        e
    }

    fn read(&mut self, v: &Value, ids: &[(Option<String>, String)], started: String) -> (StatusCode, Option<Value>) {
        let wanted: Vec<String> = v.get("properties").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect();
        let mut results = Vec::new();
        let mut missing = Vec::new();
        for (p, id) in ids {
            match self.find(p.as_deref(), id) {
                Some(n) => {
                    let c = &self.contacts[&n];
                    let mut props: Map<String, Value> =
                        wanted.iter().filter_map(|w| c.properties.get(w).map(|x| (w.clone(), Value::String(x.clone())))).collect();
                    props.insert("hs_object_id".into(), json!(c.id));
                    results.push(json!({"id": c.id, "properties": props, "createdAt": c.created_at, "updatedAt": c.updated_at, "archived": false}));
                }
                None => missing.push(id.clone()),
            }
        }
        let mut body = json!({"status": "COMPLETE", "results": results, "startedAt": started, "completedAt": now_iso()});
        if missing.is_empty() {
            return (StatusCode::OK, Some(body));
        }
        self.stats.multi_status += 1;
        body["numErrors"] = json!(1);
        body["errors"] = json!([{"status": "error", "category": "OBJECT_NOT_FOUND",
            "message": "Could not get some CONTACT objects, they may be deleted or not exist. Check that ids are valid.",
            "context": {"ids": missing}}]);
        (StatusCode::MULTI_STATUS, Some(body))
    }

    fn clear(&mut self, contacts: bool) {
        self.stats = Stats::default();
        self.started = Instant::now();
        self.window.clear();
        self.daily_used = 0;
        self.admitted = 0;
        if contacts {
            self.contacts.clear();
            self.by_email.clear();
            self.by_unique.clear();
        }
    }
}

fn respond(status: StatusCode, body: Option<Value>, headers: Vec<(&'static str, String)>) -> Response {
    let mut resp = match body {
        Some(b) => (status, Json(b)).into_response(),
        None => status.into_response(),
    };
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            resp.headers_mut().insert(HeaderName::from_static(k), v);
        }
    }
    resp
}

/// Latency and stalls, before a request is looked at. `Some`: the answer for a stalled one.
async fn delay(s: &Server) -> Option<Response> {
    let (latency, stall, stall_for) = {
        let mut i = lock(s);
        i.received += 1;
        let stall = i.faults.stall_next > 0;
        if stall {
            i.faults.stall_next -= 1;
            i.stats.stalled += 1;
        }
        let every = i.faults.stall_every;
        let stall_for = (!stall && every > 0 && i.received.is_multiple_of(every) && i.faults.stall_seconds > 0.0).then_some(i.faults.stall_seconds);
        if stall_for.is_some() {
            i.stats.stalled += 1;
        }
        (i.faults.latency_ms, stall, stall_for)
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    if let Some(secs) = stall_for {
        let mut stop = s.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(secs.min(3600.0))) => {}
            _ = stop.wait_for(|v| *v) => {}
        }
        return Some(StatusCode::GATEWAY_TIMEOUT.into_response());
    }
    if stall {
        let mut stop = s.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = stop.wait_for(|v| *v) => {}
        }
        return Some(StatusCode::GATEWAY_TIMEOUT.into_response());
    }
    None
}

async fn batch(State(s): State<Shared>, Path(op): Path<String>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Some(r) = delay(&s).await {
        return r;
    }
    let mut inner = lock(&s);
    if !matches!(op.as_str(), "upsert" | "update" | "create" | "read" | "archive") {
        let h = inner.rate_headers();
        let (st, b) = inner.error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", format!("Unable to infer object type from: batch/{op}"), None);
        return respond(st, Some(b), h);
    }
    let scope = if op == "read" { READ_SCOPE } else { WRITE_SCOPE };
    let (status, body) = match inner.gate(&headers, scope) {
        Err((st, b)) => (st, Some(b)),
        Ok(()) => inner.batch(&op, &body),
    };
    let h = inner.rate_headers();
    respond(status, body, h)
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
    after: Option<String>,
}

async fn list(State(s): State<Shared>, Query(q): Query<ListQuery>, headers: HeaderMap) -> Response {
    if let Some(r) = delay(&s).await {
        return r;
    }
    let mut inner = lock(&s);
    let (status, body) = match inner.gate(&headers, READ_SCOPE) {
        Err((st, b)) => (st, b),
        Ok(()) => {
            let limit = q.limit.unwrap_or(10).clamp(1, 100);
            let after = q.after.as_deref().and_then(|a| a.parse::<u64>().ok()).unwrap_or(0);
            let page: Vec<&Contact> = inner.contacts.range(after + 1..).map(|(_, c)| c).filter(|c| !c.archived).take(limit + 1).collect();
            let more = page.len() > limit;
            let results: Vec<Value> = page
                .iter()
                .take(limit)
                .map(|c| json!({"id": c.id, "properties": {"email": c.properties.get("email"), "hs_object_id": c.id}, "createdAt": c.created_at, "updatedAt": c.updated_at, "archived": false}))
                .collect();
            let mut body = json!({"results": results});
            if more {
                body["paging"] = json!({"next": {"after": page[limit - 1].id}});
            }
            (StatusCode::OK, body)
        }
    };
    let h = inner.rate_headers();
    respond(status, Some(body), h)
}

async fn properties(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(r) = delay(&s).await {
        return r;
    }
    let mut inner = lock(&s);
    let (status, body) = match inner.gate(&headers, READ_SCOPE) {
        Err((st, b)) => (st, b),
        Ok(()) => {
            let results: Vec<Value> = inner
                .known
                .iter()
                .map(|p| {
                    let custom = !STANDARD_PROPERTIES.contains(&p.as_str());
                    json!({"name": p, "label": p, "type": "string", "fieldType": "text", "groupName": "contactinformation", "description": "",
                        "options": [], "hasUniqueValue": p == "email" || inner.unique.contains(p), "hubspotDefined": !custom,
                        "modificationMetadata": {"archivable": custom, "readOnlyDefinition": !custom, "readOnlyValue": READ_ONLY.contains(&p.as_str())}})
                })
                .collect();
            (StatusCode::OK, json!({"results": results}))
        }
    };
    let h = inner.rate_headers();
    respond(status, Some(body), h)
}

#[derive(Deserialize)]
struct ContactsQuery {
    archived: Option<bool>,
}

async fn read_back(State(s): State<Shared>, Query(q): Query<ContactsQuery>) -> Json<Value> {
    let inner = lock(&s);
    let all = q.archived.unwrap_or(false);
    let contacts: Vec<&Contact> = inner.contacts.values().filter(|c| all || !c.archived).collect();
    Json(json!({"contacts": contacts}))
}

async fn stats(State(s): State<Shared>) -> Json<Stats> {
    Json(snapshot(&lock(&s)))
}

fn snapshot(inner: &Inner) -> Stats {
    Stats { contacts: inner.contacts.values().filter(|c| !c.archived).count() as u64, ..inner.stats.clone() }
}

#[derive(Deserialize)]
struct ResetQuery {
    contacts: Option<bool>,
}

async fn reset(State(s): State<Shared>, Query(q): Query<ResetQuery>) -> StatusCode {
    lock(&s).clear(q.contacts.unwrap_or(false));
    StatusCode::NO_CONTENT
}

async fn set_faults(State(s): State<Shared>, Json(f): Json<Faults>) -> Json<Value> {
    let mut inner = lock(&s);
    inner.faults = f;
    Json(json!({"faults": inner.faults}))
}

async fn set_rate(State(s): State<Shared>, Json(r): Json<RateConfig>) -> Json<Value> {
    let mut inner = lock(&s);
    inner.rate = r;
    Json(json!({"rate": inner.rate}))
}

pub struct HubspotEmulator {
    pub url: String,
    pub addr: SocketAddr,
    shared: Shared,
    stop: watch::Sender<bool>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl HubspotEmulator {
    /// Start serving on `addr` (port 0 picks a free port) in the current tokio runtime.
    pub async fn start(addr: SocketAddr, config: HubspotEmulatorConfig) -> Result<HubspotEmulator> {
        let mut known: BTreeSet<String> = STANDARD_PROPERTIES.iter().map(|s| s.to_string()).collect();
        known.extend(config.properties.iter().cloned());
        known.extend(config.unique_properties.iter().cloned());
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared: Shared = Arc::new(Server {
            inner: Mutex::new(Inner {
                token: config.token,
                scopes: config.scopes,
                rate: config.rate,
                faults: config.faults,
                known,
                unique: config.unique_properties.into_iter().collect(),
                contacts: BTreeMap::new(),
                by_email: HashMap::new(),
                by_unique: HashMap::new(),
                next_id: 1001,
                window: VecDeque::new(),
                daily_used: 0,
                admitted: 0,
                started: Instant::now(),
                stats: Stats::default(),
                serial: 0,
                received: 0,
                retry_after: None,
            }),
            stop: stop_rx,
        });
        let app = Router::new()
            .route("/crm/v3/objects/contacts/batch/{op}", post(batch))
            .route("/crm/v3/objects/contacts", get(list))
            .route("/crm/v3/properties/contacts", get(properties))
            .route("/_emulator/contacts", get(read_back))
            .route("/_emulator/stats", get(stats))
            .route("/_emulator/reset", post(reset))
            .route("/_emulator/faults", put(set_faults))
            .route("/_emulator/rate", put(set_rate))
            .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::other(format!("the hubspot emulator cannot listen on {addr}")).with_source(e))?;
        let addr = listener.local_addr().map_err(|e| Error::other("cannot read the emulator address").with_source(e))?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(HubspotEmulator { url: format!("http://{addr}"), addr, shared, stop: stop_tx, shutdown: Some(tx), task: Some(task) })
    }

    pub fn stats(&self) -> Stats {
        snapshot(&lock(&self.shared))
    }

    /// Stored contacts that are not archived, by record ID.
    pub fn contacts(&self) -> Vec<Contact> {
        lock(&self.shared).contacts.values().filter(|c| !c.archived).cloned().collect()
    }

    /// The properties of the contact with this email (ignoring case), if it exists.
    pub fn contact(&self, email: &str) -> Option<BTreeMap<String, String>> {
        let inner = lock(&self.shared);
        inner.by_email.get(&email.to_lowercase()).map(|id| inner.contacts[id].properties.clone())
    }

    pub fn faults(&self) -> Faults {
        lock(&self.shared).faults.clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        lock(&self.shared).faults = faults;
    }

    pub fn set_rate(&self, rate: RateConfig) {
        lock(&self.shared).rate = rate;
    }

    /// Forget the counters, the rate windows and the daily count (and with `contacts`, the
    /// contacts).
    pub fn reset(&self, contacts: bool) {
        lock(&self.shared).clear(contacts);
    }

    /// Stop serving (stalled requests are released) and wait for the server task.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

pub async fn run_cli(args: &Args) -> Result<i32> {
    if !(0.0..=1.0).contains(&args.error_rate) {
        return Err(Error::other("--error-rate must be between 0 and 1"));
    }
    if args.rate_limit == 0 || args.interval_ms == 0 {
        return Err(Error::other("--rate-limit and --interval-ms must be at least 1"));
    }
    if !(args.stall_seconds.is_finite() && args.stall_seconds >= 0.0) {
        return Err(Error::other("--stall-seconds must be a number of seconds, 0 or more"));
    }
    let config = HubspotEmulatorConfig {
        token: args.token.clone().filter(|t| !t.is_empty()),
        scopes: None,
        rate: RateConfig { limit: args.rate_limit, interval_ms: args.interval_ms, daily_limit: args.daily_limit },
        properties: args.properties.clone(),
        unique_properties: args.unique_properties.clone(),
        faults: Faults {
            error_rate: args.error_rate,
            error_status: args.error_status,
            latency_ms: args.latency_ms,
            stall_every: args.stall_every,
            stall_seconds: args.stall_seconds,
            storm_next: args.storm_next,
            storm_retry_after: args.storm_retry_after,
            whole_batch_validation: args.whole_batch_validation,
            ..Faults::default()
        },
    };
    let emu = HubspotEmulator::start(SocketAddr::new(args.host, args.port), config).await?;
    let banner = format!(
        "hubspot emulator listening on {url} ({} requests per {} ms{}): POST {url}/crm/v3/objects/contacts/batch/upsert; GET {url}/_emulator/stats",
        args.rate_limit,
        args.interval_ms,
        if args.token.is_some() { ", token required" } else { ", any token" },
        url = emu.url
    );
    super::announce_and_wait(&emu.url, &banner).await;
    emu.stop().await;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert!(valid_email("a.b+c@example.co.uk"));
        for bad in ["example.lcom", "a@b", "a @b.com", "@b.com", "a@b.c", "a@@b.com", "a@b..com"] {
            assert!(!valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn failures_are_spread_evenly() {
        assert_eq!((0..100).filter(|i| fails(*i, 0.1)).count(), 10);
        assert!(!fails(0, 0.0));
    }
}
