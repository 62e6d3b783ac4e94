//! An emulator of Iterable's user and event API (`sluicegate emulate iterable`), after the
//! shapes in Iterable's published API reference. State is kept in memory.
//!
//! Every `/api/…` request needs the `Api-Key` header to equal the configured key, else
//! `401 {"msg": "Invalid API key", "code": "BadApiKey", "params": {"ip", "endpoint"}}` (the
//! code Iterable documents for a bad or disabled key). Bodies over `max_body_bytes` (4 MB,
//! 4,194,304 bytes, by default) get `413 {"code": "BatchTooLarge"}`.
//!
//! - `POST /api/users/bulkUpdate` `{"users": [{"email" | "userId", "dataFields",
//!   "preferUserId", "mergeNestedObjects"}], "createNewFields"}`: `200 {"successCount",
//!   "failCount", "invalidEmails", "invalidUserIds", "filteredOutFields", "createdFields",
//!   "noOpEmails", "noOpUserIds", "failedUpdates": {…}}`. A user with a malformed email (not
//!   `local@domain.tld`, no spaces) lands in `invalidEmails`; a malformed userId (empty, over
//!   512 bytes, non-ASCII or non-printable, trailing space) in `invalidUserIds`; a forgotten
//!   user (see `/api/users/forget`) in `forgottenEmails`/`forgottenUserIds`. Top-level data
//!   fields are overwritten, others kept (nested objects merged with `mergeNestedObjects`).
//!   Users are keyed by email ignoring case, and by userId; an unknown userId creates the user
//!   (a hybrid project). A data field keeps the type it was first given, as Iterable enforces:
//!   a value of another type fails the whole request with `400 RequestFieldsTypesMismatched`
//!   and `params.validationErrors`. Structural errors (a `users` that is not a list, a user
//!   with both or neither of email and userId, a non-boolean `preferUserId`, `dataFields` not an
//!   object) answer `400 BadJsonBody` with `params` naming `obj.users[i].field`.
//!   `createNewFields: false` drops unknown fields (listed in `filteredOutFields`).
//! - `POST /api/events/trackBulk` `{"events": [{"email" | "userId", "eventName", "id",
//!   "createdAt", "dataFields", …}]}`: `200 {"successCount", "failCount", "createdFields",
//!   "filteredOutFields", "disallowedEventNames", "invalidEmails", "invalidUserIds",
//!   "failedUpdates": {…}}`. An event whose `id` is already stored replaces it (counted in
//!   `events_replaced`). An event for an unknown email creates the user; for an unknown userId
//!   it fails (`notFoundUserIds`). Event names in the configured disallowed list fail.
//!   A missing `eventName` or a non-integer `createdAt` answers `400 BadJsonBody`.
//! - `DELETE /api/users/{email}`, `DELETE /api/users/byUserId/{userId}`: `200 {"code":
//!   "Success"}`; an unknown user answers `404 {"code": "NotFound"}`.
//! - `POST /api/users/forget` `{"email" | "userId"}`: deletes the user and refuses later data.
//! - `GET /api/users/getByEmail?email=`, `GET /api/users/byUserId/{userId}`: `{"user": {…}}` or
//!   `{}`. `GET /api/channels`: the project's channels (a read-only call that checks the key).
//! - Rate limits per endpoint and per second (defaults: bulkUpdate 5, trackBulk 10, user
//!   deletes 100, others unlimited; 0 = unlimited): over it, `429 {"msg": "Exceeded rate limit
//!   for endpoint: …", "code": "RateLimitExceeded", "params": {}}` (no Retry-After, like Iterable).
//! - Faults (`PUT /_emulator/faults`): `fail_rate` of write requests (spread evenly) answered
//!   `fail_status` with `{"msg", "code": "GenericError"}`; `rate_limit_next: N` answers the next
//!   N write requests 429; `latency_ms` delays every answer; `stall_ms` holds `stall_rate` of
//!   write requests that long before answering (a hung server, for timeouts); `stall_every` /
//!   `stall_seconds` hold every Nth write request that long.
//! - Read-back: `GET /_emulator/users`, `GET /_emulator/events`, `GET /_emulator/stats`,
//!   `POST /_emulator/reset` (everything: users, events, field types, counters).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::error::{Error, Result};

/// Iterable's documented body cap ("4MB").
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Faults {
    /// Share of write requests (bulkUpdate, trackBulk, deletes) answered with `fail_status`.
    #[serde(default)]
    pub fail_rate: f64,
    #[serde(default = "default_fail_status")]
    pub fail_status: u16,
    /// The next N write requests are answered 429 RateLimitExceeded.
    #[serde(default)]
    pub rate_limit_next: u64,
    /// Milliseconds before every answer.
    #[serde(default)]
    pub latency_ms: u64,
    /// Share of write requests held `stall_ms` before being answered.
    #[serde(default)]
    pub stall_rate: f64,
    #[serde(default)]
    pub stall_ms: u64,
    /// Every Nth write request (counting from the first) is held `stall_seconds` before it is
    /// handled (0: never).
    #[serde(default)]
    pub stall_every: u64,
    #[serde(default)]
    pub stall_seconds: f64,
}

fn default_fail_status() -> u16 {
    503
}

impl Default for Faults {
    fn default() -> Self {
        Faults { fail_rate: 0.0, fail_status: 503, rate_limit_next: 0, latency_ms: 0, stall_rate: 0.0, stall_ms: 0, stall_every: 0, stall_seconds: 0.0 }
    }
}

/// Requests per second allowed per endpoint (0: unlimited).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RateLimits {
    pub bulk_update: u32,
    pub track_bulk: u32,
    pub delete: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits { bulk_update: 5, track_bulk: 10, delete: 100 }
    }
}

#[derive(Debug, Clone)]
pub struct IterableEmulatorConfig {
    pub api_key: String,
    pub max_body_bytes: usize,
    pub rate_limits: RateLimits,
    pub faults: Faults,
    pub disallowed_event_names: Vec<String>,
}

impl Default for IterableEmulatorConfig {
    fn default() -> Self {
        IterableEmulatorConfig {
            api_key: "emulator-api-key".into(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            rate_limits: RateLimits::default(),
            faults: Faults::default(),
            disallowed_event_names: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    pub requests: u64,
    pub bulk_update_requests: u64,
    pub track_bulk_requests: u64,
    pub delete_requests: u64,
    pub unauthorized: u64,
    pub rate_limited: u64,
    pub too_large: u64,
    pub bad_requests: u64,
    pub faults: u64,
    /// Write requests held by `stall_every`.
    pub stalled: u64,
    pub users_succeeded: u64,
    pub users_failed: u64,
    pub events_succeeded: u64,
    pub events_failed: u64,
    /// Events whose id was already stored (replaced, not added).
    pub events_replaced: u64,
    pub deletes: u64,
    /// Largest request body received, in bytes.
    pub max_body_seen: u64,
    /// Users and events stored now.
    pub users: u64,
    pub events: u64,
}

#[derive(Default)]
struct Inner {
    stats: Stats,
    /// Users in creation order; the indexes point into it (`None`: deleted).
    users: Vec<Option<Value>>,
    by_email: HashMap<String, usize>,
    by_user_id: HashMap<String, usize>,
    forgotten: HashSet<String>,
    events: Vec<Value>,
    event_ids: HashMap<String, usize>,
    /// Field path → type, as Iterable fixes a field's type when it first sees it.
    field_types: HashMap<String, &'static str>,
    /// Endpoint → (window start, requests in it).
    windows: HashMap<&'static str, (Instant, u32)>,
    writes: u64,
    /// Write requests received, for `stall_every`.
    received: u64,
    config: Option<IterableEmulatorConfig>,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn envelope(status: StatusCode, code: &str, msg: impl Into<String>, params: Value) -> Response {
    (status, Json(json!({"msg": msg.into(), "code": code, "params": params}))).into_response()
}

/// Whether request number `n` (from 0) is hit at `rate`: spread evenly.
fn hits(n: u64, rate: f64) -> bool {
    if rate <= 0.0 {
        return false;
    }
    if rate >= 1.0 {
        return true;
    }
    ((n + 1) as f64 * rate).floor() > (n as f64 * rate).floor()
}

pub fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else { return false };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

pub fn valid_user_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 512 && !s.ends_with(' ') && s.chars().all(|c| c.is_ascii() && !c.is_ascii_control())
}

fn type_of(v: &Value) -> Option<&'static str> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "long",
        Value::Number(_) => "double",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    })
}

/// Types a stored field of type `have` accepts.
fn compatible(have: &str, incoming: &str) -> bool {
    have == incoming || (have == "double" && incoming == "long")
}

impl Inner {
    fn cfg(&self) -> &IterableEmulatorConfig {
        self.config.as_ref().expect("configured at start")
    }

    /// The common gate of every `/api` request: key, body size, rate limit, faults.
    /// `Err` is the answer to give.
    fn gate(&mut self, endpoint: &'static str, headers: &HeaderMap, body_len: usize, write: bool) -> std::result::Result<(), Response> {
        self.stats.requests += 1;
        self.stats.max_body_seen = self.stats.max_body_seen.max(body_len as u64);
        let key = headers.get("api-key").and_then(|v| v.to_str().ok());
        if key != Some(self.cfg().api_key.as_str()) {
            self.stats.unauthorized += 1;
            return Err(envelope(StatusCode::UNAUTHORIZED, "BadApiKey", "Invalid API key", json!({"ip": "127.0.0.1", "endpoint": endpoint})));
        }
        if body_len > self.cfg().max_body_bytes {
            self.stats.too_large += 1;
            return Err(envelope(
                StatusCode::PAYLOAD_TOO_LARGE,
                "BatchTooLarge",
                format!("[{endpoint}] Request body of {body_len} bytes is over the {} bytes limit", self.cfg().max_body_bytes),
                Value::Null,
            ));
        }
        if !write {
            return Ok(());
        }
        let limit = match endpoint {
            "/api/users/bulkUpdate" => self.cfg().rate_limits.bulk_update,
            "/api/events/trackBulk" => self.cfg().rate_limits.track_bulk,
            _ => self.cfg().rate_limits.delete,
        };
        let rate_limited = |s: &mut Self| {
            s.stats.rate_limited += 1;
            Err(envelope(
                StatusCode::TOO_MANY_REQUESTS,
                "RateLimitExceeded",
                format!("Exceeded rate limit for endpoint: {endpoint}, project: 1 "),
                json!({}),
            ))
        };
        if self.cfg().faults.rate_limit_next > 0 {
            if let Some(c) = self.config.as_mut() {
                c.faults.rate_limit_next -= 1;
            }
            return rate_limited(self);
        }
        if limit > 0 {
            let now = Instant::now();
            let w = self.windows.entry(endpoint).or_insert((now, 0));
            if now.duration_since(w.0) >= Duration::from_secs(1) {
                *w = (now, 0);
            }
            if w.1 >= limit {
                return rate_limited(self);
            }
            w.1 += 1;
        }
        let n = self.writes;
        self.writes += 1;
        if hits(n, self.cfg().faults.fail_rate) {
            self.stats.faults += 1;
            let status = StatusCode::from_u16(self.cfg().faults.fail_status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return Err(envelope(status, "GenericError", "The Iterable emulator is failing this request on purpose", Value::Null));
        }
        Ok(())
    }

    fn user_index(&self, email: Option<&str>, user_id: Option<&str>) -> Option<usize> {
        match (email, user_id) {
            (Some(e), _) => self.by_email.get(&e.to_lowercase()).copied(),
            (None, Some(u)) => self.by_user_id.get(u).copied(),
            _ => None,
        }
    }

    /// Type errors of `fields` against the project's field types (none: all compatible).
    fn type_errors(&self, category: &str, prefix: &str, fields: &Map<String, Value>, errors: &mut Map<String, Value>) {
        for (k, v) in fields {
            let Some(t) = type_of(v) else { continue };
            let path = format!("{prefix}{k}");
            if let Some(have) = self.field_types.get(&path) {
                if !compatible(have, t) {
                    errors.insert(
                        format!("emulator:::{path}"),
                        json!({"incomingTypes": [t], "expectedType": have, "category": category, "offendingValue": v, "_type": "UnexpectedType"}),
                    );
                }
            }
        }
    }

    /// Record the types of new fields; `allow_new: false` drops unknown ones (returned).
    fn learn_fields(&mut self, prefix: &str, fields: &mut Map<String, Value>, allow_new: bool, created: &mut Vec<String>, filtered: &mut Vec<String>) {
        let keys: Vec<String> = fields.keys().cloned().collect();
        for k in keys {
            let path = format!("{prefix}{k}");
            if self.field_types.contains_key(&path) {
                continue;
            }
            if !allow_new {
                fields.remove(&k);
                if !filtered.contains(&k) {
                    filtered.push(k);
                }
                continue;
            }
            if let Some(t) = fields.get(&k).and_then(type_of) {
                self.field_types.insert(path, t);
                if !created.contains(&k) {
                    created.push(k);
                }
            }
        }
    }
}

fn bad_json(endpoint: &str, params: Value) -> Response {
    envelope(StatusCode::BAD_REQUEST, "BadJsonBody", format!("[{endpoint}] Invalid JSON body"), params)
}

async fn pause(s: &Shared) {
    let (latency, stall, stall_for) = {
        let mut inner = lock(s);
        inner.received += 1;
        let f = inner.cfg().faults.clone();
        let stall = (hits(inner.writes, f.stall_rate) && f.stall_ms > 0).then_some(f.stall_ms);
        let stall_for = (f.stall_every > 0 && inner.received.is_multiple_of(f.stall_every) && f.stall_seconds > 0.0).then_some(f.stall_seconds);
        if stall_for.is_some() {
            inner.stats.stalled += 1;
        }
        (f.latency_ms, stall, stall_for)
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    if let Some(ms) = stall {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(secs) = stall_for {
        tokio::time::sleep(Duration::from_secs_f64(secs.min(3600.0))).await;
    }
}

/// The identifier fields of a user or event object, checked for shape.
fn identity<'v>(endpoint: &str, list: &str, i: usize, obj: &'v Map<String, Value>) -> std::result::Result<(Option<&'v str>, Option<&'v str>), Response> {
    let get = |k: &str| -> std::result::Result<Option<&'v str>, Response> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(bad_json(endpoint, json!({format!("obj.{list}[{i}].{k}"): "String value expected"}))),
        }
    };
    let (email, user_id) = (get("email")?, get("userId")?);
    if email.is_none() && user_id.is_none() {
        return Err(envelope(
            StatusCode::BAD_REQUEST,
            "BadParams",
            format!("[{endpoint}] {list}[{i}]: an email or a userId is required"),
            json!({format!("obj.{list}[{i}]"): "email or userId required"}),
        ));
    }
    Ok((email, user_id))
}

async fn bulk_update(State(s): State<Shared>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    const EP: &str = "/api/users/bulkUpdate";
    pause(&s).await;
    let mut inner = lock(&s);
    if let Err(r) = inner.gate(EP, &headers, body.len(), true) {
        return r;
    }
    inner.stats.bulk_update_requests += 1;
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            inner.stats.bad_requests += 1;
            return bad_json(EP, json!({"obj": e.to_string()}));
        }
    };
    let Some(users) = req.get("users").and_then(Value::as_array) else {
        inner.stats.bad_requests += 1;
        return bad_json(EP, json!({"obj.users": "Array value expected"}));
    };
    let allow_new = req.get("createNewFields").and_then(Value::as_bool).unwrap_or(true);
    // Check the whole request first: structural errors and type mismatches refuse all of it.
    let mut parsed = Vec::with_capacity(users.len());
    let mut type_errors = Map::new();
    for (i, u) in users.iter().enumerate() {
        let Some(obj) = u.as_object() else {
            inner.stats.bad_requests += 1;
            return bad_json(EP, json!({format!("obj.users[{i}]"): "Object value expected"}));
        };
        let (email, user_id) = match identity(EP, "users", i, obj) {
            Ok(x) => x,
            Err(r) => {
                inner.stats.bad_requests += 1;
                return r;
            }
        };
        for k in ["preferUserId", "mergeNestedObjects"] {
            if obj.get(k).is_some_and(|v| !v.is_boolean() && !v.is_null()) {
                inner.stats.bad_requests += 1;
                return bad_json(EP, json!({format!("obj.users[{i}].{k}"): "Boolean value expected"}));
            }
        }
        let fields = match obj.get("dataFields") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => {
                inner.stats.bad_requests += 1;
                return bad_json(EP, json!({format!("obj.users[{i}].dataFields"): "Object value expected"}));
            }
        };
        inner.type_errors("user", "", &fields, &mut type_errors);
        let merge = obj.get("mergeNestedObjects").and_then(Value::as_bool).unwrap_or(false);
        parsed.push((email.map(str::to_string), user_id.map(str::to_string), fields, merge));
    }
    if !type_errors.is_empty() {
        inner.stats.bad_requests += 1;
        return envelope(
            StatusCode::BAD_REQUEST,
            "RequestFieldsTypesMismatched",
            "Project 1: The request does not have the same data types as the existing fields of the project",
            json!({"validationErrors": type_errors}),
        );
    }
    let mut failed: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for k in [
        "conflictEmails",
        "conflictUserIds",
        "forgottenEmails",
        "forgottenUserIds",
        "invalidDataEmails",
        "invalidDataUserIds",
        "invalidEmails",
        "invalidUserIds",
        "notFoundEmails",
        "notFoundUserIds",
    ] {
        failed.insert(k, Vec::new());
    }
    let (mut created, mut filtered) = (Vec::new(), Vec::new());
    let mut success = 0u64;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for (email, user_id, mut fields, merge) in parsed {
        if let Some(e) = &email {
            if !valid_email(e) {
                failed.get_mut("invalidEmails").unwrap().push(e.clone());
                continue;
            }
            if inner.forgotten.contains(&format!("email:{}", e.to_lowercase())) {
                failed.get_mut("forgottenEmails").unwrap().push(e.clone());
                continue;
            }
        } else if let Some(u) = &user_id {
            if !valid_user_id(u) {
                failed.get_mut("invalidUserIds").unwrap().push(u.clone());
                continue;
            }
            if inner.forgotten.contains(&format!("userId:{u}")) {
                failed.get_mut("forgottenUserIds").unwrap().push(u.clone());
                continue;
            }
        }
        inner.learn_fields("", &mut fields, allow_new, &mut created, &mut filtered);
        match inner.user_index(email.as_deref(), user_id.as_deref()) {
            Some(ix) => {
                let user = inner.users[ix].as_mut().expect("indexed users exist");
                let data = user["dataFields"].as_object_mut().expect("users have dataFields");
                for (k, v) in fields {
                    match (data.get_mut(&k), v) {
                        (Some(Value::Object(have)), Value::Object(new)) if merge => have.extend(new),
                        (_, v) => {
                            data.insert(k, v);
                        }
                    }
                }
                user["profileUpdatedAt"] = json!(now);
            }
            None => {
                let ix = inner.users.len();
                let mut user = json!({"dataFields": fields, "signupDate": now, "profileUpdatedAt": now});
                if let Some(e) = &email {
                    user["email"] = json!(e);
                    inner.by_email.insert(e.to_lowercase(), ix);
                }
                if let Some(u) = &user_id {
                    user["userId"] = json!(u);
                    inner.by_user_id.insert(u.clone(), ix);
                }
                inner.users.push(Some(user));
            }
        }
        success += 1;
    }
    let fail_count: u64 = failed.values().map(|v| v.len() as u64).sum();
    inner.stats.users_succeeded += success;
    inner.stats.users_failed += fail_count;
    Json(json!({
        "successCount": success,
        "failCount": fail_count,
        "invalidEmails": failed["invalidEmails"],
        "invalidUserIds": failed["invalidUserIds"],
        "noOpEmails": [],
        "noOpUserIds": [],
        "filteredOutFields": filtered,
        "createdFields": created,
        "failedUpdates": failed,
    }))
    .into_response()
}

async fn track_bulk(State(s): State<Shared>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    const EP: &str = "/api/events/trackBulk";
    pause(&s).await;
    let mut inner = lock(&s);
    if let Err(r) = inner.gate(EP, &headers, body.len(), true) {
        return r;
    }
    inner.stats.track_bulk_requests += 1;
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            inner.stats.bad_requests += 1;
            return bad_json(EP, json!({"obj": e.to_string()}));
        }
    };
    let Some(events) = req.get("events").and_then(Value::as_array) else {
        inner.stats.bad_requests += 1;
        return bad_json(EP, json!({"obj.events": "Array value expected"}));
    };
    let mut parsed = Vec::with_capacity(events.len());
    let mut type_errors = Map::new();
    for (i, e) in events.iter().enumerate() {
        let Some(obj) = e.as_object() else {
            inner.stats.bad_requests += 1;
            return bad_json(EP, json!({format!("obj.events[{i}]"): "Object value expected"}));
        };
        let (email, user_id) = match identity(EP, "events", i, obj) {
            Ok(x) => x,
            Err(r) => {
                inner.stats.bad_requests += 1;
                return r;
            }
        };
        let Some(name) = obj.get("eventName").and_then(Value::as_str) else {
            inner.stats.bad_requests += 1;
            return bad_json(EP, json!({format!("obj.events[{i}].eventName"): "Missing required field"}));
        };
        if obj.get("createdAt").is_some_and(|v| !v.is_null() && !v.is_i64()) {
            inner.stats.bad_requests += 1;
            return bad_json(EP, json!({format!("obj.events[{i}].createdAt"): "Number value expected"}));
        }
        if obj.get("id").is_some_and(|v| v.as_str().is_none_or(|id| id.len() > 512)) {
            inner.stats.bad_requests += 1;
            return bad_json(EP, json!({format!("obj.events[{i}].id"): "String of at most 512 bytes expected"}));
        }
        let fields = match obj.get("dataFields") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => {
                inner.stats.bad_requests += 1;
                return bad_json(EP, json!({format!("obj.events[{i}].dataFields"): "Object value expected"}));
            }
        };
        inner.type_errors("event", &format!("event:{name}:"), &fields, &mut type_errors);
        let allow_new = obj.get("createNewFields").and_then(Value::as_bool).unwrap_or(true);
        parsed.push((email.map(str::to_string), user_id.map(str::to_string), name.to_string(), fields, allow_new, obj.clone()));
    }
    if !type_errors.is_empty() {
        inner.stats.bad_requests += 1;
        return envelope(
            StatusCode::BAD_REQUEST,
            "RequestFieldsTypesMismatched",
            "Project 1: The request does not have the same data types as the existing fields of the project",
            json!({"validationErrors": type_errors}),
        );
    }
    let mut failed: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for k in ["forgottenEmails", "forgottenUserIds", "invalidEmails", "invalidUserIds", "notFoundEmails", "notFoundUserIds"] {
        failed.insert(k, Vec::new());
    }
    let (mut created, mut filtered, mut disallowed) = (Vec::new(), Vec::new(), Vec::<String>::new());
    let (mut success, mut fail_count) = (0u64, 0u64);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for (email, user_id, name, mut fields, allow_new, mut obj) in parsed {
        let mut fail = |list: &'static str, v: &str, failed: &mut BTreeMap<&str, Vec<String>>| {
            failed.get_mut(list).unwrap().push(v.to_string());
            fail_count += 1;
        };
        if inner.cfg().disallowed_event_names.contains(&name) {
            if !disallowed.contains(&name) {
                disallowed.push(name.clone());
            }
            fail_count += 1;
            continue;
        }
        if let Some(e) = &email {
            if !valid_email(e) {
                fail("invalidEmails", e, &mut failed);
                continue;
            }
            if inner.forgotten.contains(&format!("email:{}", e.to_lowercase())) {
                fail("forgottenEmails", e, &mut failed);
                continue;
            }
            if inner.user_index(Some(e), None).is_none() {
                let ix = inner.users.len();
                inner.users.push(Some(json!({"email": e, "dataFields": {}, "signupDate": now, "profileUpdatedAt": now})));
                inner.by_email.insert(e.to_lowercase(), ix);
            }
        } else if let Some(u) = &user_id {
            if !valid_user_id(u) {
                fail("invalidUserIds", u, &mut failed);
                continue;
            }
            if inner.forgotten.contains(&format!("userId:{u}")) {
                fail("forgottenUserIds", u, &mut failed);
                continue;
            }
            if inner.user_index(None, Some(u)).is_none() {
                fail("notFoundUserIds", u, &mut failed);
                continue;
            }
        }
        inner.learn_fields(&format!("event:{name}:"), &mut fields, allow_new, &mut created, &mut filtered);
        obj.insert("dataFields".into(), Value::Object(fields));
        obj.remove("createNewFields");
        obj.entry("createdAt").or_insert(json!(now));
        match obj.get("id").and_then(Value::as_str).map(str::to_string) {
            Some(id) => match inner.event_ids.get(&id).copied() {
                Some(ix) => {
                    inner.events[ix] = Value::Object(obj);
                    inner.stats.events_replaced += 1;
                }
                None => {
                    let ix = inner.events.len();
                    inner.event_ids.insert(id, ix);
                    inner.events.push(Value::Object(obj));
                }
            },
            None => {
                let id = format!("emulator-{}", inner.events.len());
                obj.insert("id".into(), json!(id));
                let ix = inner.events.len();
                inner.event_ids.insert(id, ix);
                inner.events.push(Value::Object(obj));
            }
        }
        success += 1;
    }
    inner.stats.events_succeeded += success;
    inner.stats.events_failed += fail_count;
    Json(json!({
        "successCount": success,
        "failCount": fail_count,
        "invalidEmails": failed["invalidEmails"],
        "invalidUserIds": failed["invalidUserIds"],
        "filteredOutFields": filtered,
        "createdFields": created,
        "disallowedEventNames": disallowed,
        "failedUpdates": failed,
    }))
    .into_response()
}

fn remove_user(inner: &mut Inner, ix: usize) {
    if let Some(user) = inner.users[ix].take() {
        if let Some(e) = user.get("email").and_then(Value::as_str) {
            inner.by_email.remove(&e.to_lowercase());
        }
        if let Some(u) = user.get("userId").and_then(Value::as_str) {
            inner.by_user_id.remove(u);
        }
        inner.stats.deletes += 1;
    }
}

async fn delete_user(s: Shared, headers: HeaderMap, email: Option<String>, user_id: Option<String>) -> Response {
    let endpoint = if email.is_some() { "/api/users/{email}" } else { "/api/users/byUserId/{userId}" };
    pause(&s).await;
    let mut inner = lock(&s);
    if let Err(r) = inner.gate(endpoint, &headers, 0, true) {
        return r;
    }
    inner.stats.delete_requests += 1;
    let ix = match (&email, &user_id) {
        (Some(e), _) => inner.user_index(Some(e), None),
        (None, Some(u)) => inner.user_index(None, Some(u)),
        _ => None,
    };
    match ix {
        Some(ix) => {
            remove_user(&mut inner, ix);
            envelope(StatusCode::OK, "Success", "User deletion request accepted", Value::Null)
        }
        None => {
            let who = email.map(|e| format!("email {e}")).or(user_id.map(|u| format!("userId {u}"))).unwrap_or_default();
            envelope(StatusCode::NOT_FOUND, "NotFound", format!("No user with {who}"), Value::Null)
        }
    }
}

async fn delete_by_email(State(s): State<Shared>, headers: HeaderMap, Path(email): Path<String>) -> Response {
    delete_user(s, headers, Some(email), None).await
}

async fn delete_by_user_id(State(s): State<Shared>, headers: HeaderMap, Path(user_id): Path<String>) -> Response {
    delete_user(s, headers, None, Some(user_id)).await
}

async fn forget(State(s): State<Shared>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    const EP: &str = "/api/users/forget";
    let mut inner = lock(&s);
    if let Err(r) = inner.gate(EP, &headers, body.len(), false) {
        return r;
    }
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let email = req.get("email").and_then(Value::as_str);
    let user_id = req.get("userId").and_then(Value::as_str);
    if email.is_none() && user_id.is_none() {
        return envelope(StatusCode::BAD_REQUEST, "BadParams", "[/api/users/forget] an email or a userId is required", Value::Null);
    }
    if let Some(ix) = inner.user_index(email, user_id) {
        let user = inner.users[ix].clone().unwrap_or_default();
        if let Some(e) = user.get("email").and_then(Value::as_str) {
            inner.forgotten.insert(format!("email:{}", e.to_lowercase()));
        }
        if let Some(u) = user.get("userId").and_then(Value::as_str) {
            inner.forgotten.insert(format!("userId:{u}"));
        }
        remove_user(&mut inner, ix);
    }
    if let Some(e) = email {
        inner.forgotten.insert(format!("email:{}", e.to_lowercase()));
    }
    if let Some(u) = user_id {
        inner.forgotten.insert(format!("userId:{u}"));
    }
    envelope(StatusCode::OK, "Success", "User forgotten", Value::Null)
}

#[derive(Deserialize)]
struct EmailQuery {
    email: String,
}

async fn get_by_email(State(s): State<Shared>, headers: HeaderMap, Query(q): Query<EmailQuery>) -> Response {
    let mut inner = lock(&s);
    if let Err(r) = inner.gate("/api/users/getByEmail", &headers, 0, false) {
        return r;
    }
    let user = inner.user_index(Some(&q.email), None).and_then(|ix| inner.users[ix].clone());
    Json(user.map(|u| json!({"user": u})).unwrap_or_else(|| json!({}))).into_response()
}

async fn get_by_user_id(State(s): State<Shared>, headers: HeaderMap, Path(user_id): Path<String>) -> Response {
    let mut inner = lock(&s);
    if let Err(r) = inner.gate("/api/users/byUserId", &headers, 0, false) {
        return r;
    }
    let user = inner.user_index(None, Some(&user_id)).and_then(|ix| inner.users[ix].clone());
    Json(user.map(|u| json!({"user": u})).unwrap_or_else(|| json!({}))).into_response()
}

async fn channels(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let mut inner = lock(&s);
    if let Err(r) = inner.gate("/api/channels", &headers, 0, false) {
        return r;
    }
    Json(json!({"channels": [
        {"id": 1, "name": "Marketing Emails", "channelType": "Marketing", "messageMedium": "Email"},
        {"id": 2, "name": "Transactional Emails", "channelType": "Transactional", "messageMedium": "Email"}
    ]}))
    .into_response()
}

fn stats_of(inner: &Inner) -> Stats {
    Stats { users: inner.users.iter().flatten().count() as u64, events: inner.events.len() as u64, ..inner.stats.clone() }
}

async fn read_users(State(s): State<Shared>) -> Json<Value> {
    let inner = lock(&s);
    Json(json!({"users": inner.users.iter().flatten().collect::<Vec<_>>()}))
}

async fn read_events(State(s): State<Shared>) -> Json<Value> {
    Json(json!({"events": lock(&s).events}))
}

async fn read_stats(State(s): State<Shared>) -> Json<Value> {
    Json(json!(stats_of(&lock(&s))))
}

async fn reset(State(s): State<Shared>) -> StatusCode {
    clear(&mut lock(&s));
    StatusCode::NO_CONTENT
}

async fn put_faults(State(s): State<Shared>, Json(f): Json<Faults>) -> Json<Value> {
    let mut inner = lock(&s);
    if let Some(c) = inner.config.as_mut() {
        c.faults = f;
    }
    Json(json!({"faults": inner.cfg().faults}))
}

fn clear(inner: &mut Inner) {
    let config = inner.config.take();
    *inner = Inner { config, ..Default::default() };
}

/// A running emulator.
pub struct IterableEmulator {
    pub url: String,
    pub addr: SocketAddr,
    shared: Shared,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl IterableEmulator {
    /// Start serving on `addr` (port 0 picks a free port) in the current tokio runtime.
    pub async fn start(addr: SocketAddr, config: IterableEmulatorConfig) -> Result<IterableEmulator> {
        let shared: Shared = Arc::new(Mutex::new(Inner { config: Some(config), ..Default::default() }));
        let app = Router::new()
            .route("/api/users/bulkUpdate", post(bulk_update))
            .route("/api/events/trackBulk", post(track_bulk))
            .route("/api/users/forget", post(forget))
            .route("/api/users/getByEmail", get(get_by_email))
            .route("/api/users/byUserId/{user_id}", delete(delete_by_user_id).get(get_by_user_id))
            .route("/api/users/{email}", delete(delete_by_email))
            .route("/api/channels", get(channels))
            .route("/_emulator/users", get(read_users))
            .route("/_emulator/events", get(read_events))
            .route("/_emulator/stats", get(read_stats))
            .route("/_emulator/reset", post(reset))
            .route("/_emulator/faults", put(put_faults))
            // The body cap is checked in the handlers, to answer it as Iterable does.
            .layer(DefaultBodyLimit::max(256 * 1024 * 1024))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::other(format!("the iterable emulator cannot listen on {addr}")).with_source(e))?;
        let addr = listener.local_addr().map_err(|e| Error::other("cannot read the emulator address").with_source(e))?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(IterableEmulator { url: format!("http://{addr}"), addr, shared, shutdown: Some(tx), task: Some(task) })
    }

    pub fn stats(&self) -> Stats {
        stats_of(&lock(&self.shared))
    }

    /// Users stored now, in creation order.
    pub fn users(&self) -> Vec<Value> {
        lock(&self.shared).users.iter().flatten().cloned().collect()
    }

    /// The stored user with this email (any case).
    pub fn user_by_email(&self, email: &str) -> Option<Value> {
        let inner = lock(&self.shared);
        inner.user_index(Some(email), None).and_then(|ix| inner.users[ix].clone())
    }

    /// Events stored now (one per id), in arrival order.
    pub fn events(&self) -> Vec<Value> {
        lock(&self.shared).events.clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        if let Some(c) = lock(&self.shared).config.as_mut() {
            c.faults = faults;
        }
    }

    pub fn set_rate_limits(&self, limits: RateLimits) {
        if let Some(c) = lock(&self.shared).config.as_mut() {
            c.rate_limits = limits;
        }
    }

    /// Forget a user as `POST /api/users/forget` does: later data about them is refused.
    pub fn forget_email(&self, email: &str) {
        let mut inner = lock(&self.shared);
        if let Some(ix) = inner.user_index(Some(email), None) {
            remove_user(&mut inner, ix);
        }
        inner.forgotten.insert(format!("email:{}", email.to_lowercase()));
    }

    /// Forget everything: users, events, field types, counters.
    pub fn reset(&self) {
        clear(&mut lock(&self.shared));
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
}

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Port; 0 picks a free one. The URL is printed as the first line of output.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// The key every request must carry in `Api-Key`.
    #[arg(long, env = "ITERABLE_API_KEY", default_value = "emulator-api-key", hide_env_values = true)]
    pub api_key: String,
    /// users/bulkUpdate requests per second (0: unlimited).
    #[arg(long, default_value_t = 5)]
    pub bulk_update_rate: u32,
    /// events/trackBulk requests per second (0: unlimited).
    #[arg(long, default_value_t = 10)]
    pub track_bulk_rate: u32,
    /// User deletes per second (0: unlimited).
    #[arg(long, default_value_t = 100)]
    pub delete_rate: u32,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Share of write requests answered with --fail-status (0..1, spread evenly).
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    #[arg(long, default_value_t = 503)]
    pub fail_status: u16,
    /// Milliseconds before every answer.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Every Nth write request is held --stall-seconds before it is handled (0: never).
    #[arg(long, default_value_t = 0)]
    pub stall_every: u64,
    /// How long a stalled write request is held, in seconds.
    #[arg(long, default_value_t = 30.0)]
    pub stall_seconds: f64,
    /// A 429 storm: the next N write requests are answered 429 {"code": "RateLimitExceeded"}
    /// (no Retry-After, like Iterable).
    #[arg(long, default_value_t = 0)]
    pub storm_next: u64,
    /// Event names the project refuses (repeatable).
    #[arg(long = "disallow-event")]
    pub disallow_event: Vec<String>,
}

pub async fn run_cli(args: &Args) -> Result<i32> {
    if !(0.0..=1.0).contains(&args.fail_rate) {
        return Err(Error::other("--fail-rate must be between 0 and 1"));
    }
    if !(args.stall_seconds.is_finite() && args.stall_seconds >= 0.0) {
        return Err(Error::other("--stall-seconds must be a number of seconds, 0 or more"));
    }
    let config = IterableEmulatorConfig {
        api_key: args.api_key.clone(),
        max_body_bytes: args.max_body_bytes,
        rate_limits: RateLimits { bulk_update: args.bulk_update_rate, track_bulk: args.track_bulk_rate, delete: args.delete_rate },
        faults: Faults {
            fail_rate: args.fail_rate,
            fail_status: args.fail_status,
            latency_ms: args.latency_ms,
            stall_every: args.stall_every,
            stall_seconds: args.stall_seconds,
            rate_limit_next: args.storm_next,
            ..Default::default()
        },
        disallowed_event_names: args.disallow_event.clone(),
    };
    let emu = IterableEmulator::start(SocketAddr::new(args.host, args.port), config).await?;
    let banner = format!(
        "iterable emulator listening on {url}: set the destination's base_url to it; POST /api/users/bulkUpdate, /api/events/trackBulk; GET {url}/_emulator/stats",
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
    fn emails_and_user_ids() {
        assert!(valid_email("a@b.io") && valid_email("First.Last+tag@sub.example.com"));
        assert!(!valid_email("shrouti") && !valid_email("a@b") && !valid_email("a b@c.io") && !valid_email("@c.io"));
        assert!(valid_user_id("u-1") && !valid_user_id("") && !valid_user_id("u ") && !valid_user_id("ü"));
    }
}
