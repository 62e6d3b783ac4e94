//! Iterable users and custom events.
//!
//! Every request carries the project's server-side key in the `Api-Key` header; the base URL
//! is `https://api.iterable.com` (US) or `https://api.eu.iterable.com` (EU data center).
//!
//! **Users** (`object: users`, behaviors `upsert` and `mirror`): one
//! `POST /api/users/bulkUpdate` per batch, `{"users": [{"email" | "userId", "dataFields",
//! "preferUserId", "mergeNestedObjects"}], "createNewFields"}`. The mapped fields other than
//! the identifier are the user's `dataFields`; Iterable overwrites the top-level fields it is
//! sent and keeps the others. Users keyed by `userId` are sent with `preferUserId: true`, so
//! that an unknown userId creates the user in email-based projects too (an upsert).
//! Mirror deletes have no bulk endpoint: each user is deleted with
//! `DELETE /api/users/{email}` or `DELETE /api/users/byUserId/{userId}` (100 requests/s per
//! project), paced here at 80 per second and 8 at a time within a batch; a user Iterable does
//! not know (404, `NotFound`, `UnknownEmailError`, `UnknownUserIdError`) is already gone.
//!
//! **Events** (`object: events`, behavior `append`): one `POST /api/events/trackBulk` per
//! batch, `{"events": [{"email" | "userId", "eventName", "id", "createdAt", "dataFields"}]}`.
//! `eventName` is the field mapped `to: eventName` (a column, or a `constant`); `createdAt` the
//! field mapped `to: createdAt` (unix seconds, or an ISO-8601 datetime converted to them);
//! `campaignId` and `templateId` are sent at the top level when mapped; every other mapped
//! field is a data field. The sync's `unique_key` is the event `id` (at most 512 bytes), so a
//! resent event replaces itself instead of counting twice.
//!
//! Limits and defaults: at most 1,000 records and 4,000,000 bytes per request (Iterable's cap
//! is 4 MB; record sizes are measured on the exact JSON sent); 1,000 records per batch by
//! default; paced at 5 requests/s for users/bulkUpdate and 10/s for events/trackBulk (the
//! per-project limits in Iterable's API reference; Iterable sends no rate-limit headers);
//! 4 requests in flight at most; 30 s per request.
//!
//! Answers:
//! - 200 with `successCount`/`failCount`: the users or events named in `failedUpdates`
//!   (`invalidEmails`, `invalidUserIds`, `conflictEmails`, `forgottenEmails`,
//!   `invalidDataEmails`, `notFoundUserIds`, …, and the deprecated top-level
//!   `invalidEmails`/`invalidUserIds`) are rejected with the reason their list stands for;
//!   emails are matched ignoring case and surrounding spaces. Events whose name is in
//!   `disallowedEventNames` are rejected. When `failCount` counts failures the lists do not
//!   name, the batch is split (the delivery layer bisects it) until each failure is alone.
//!   Fields listed in `filteredOutFields` were dropped by the project's settings: logged.
//! - 400, 409 and other 4xx with Iterable's envelope `{"msg", "code", "params"}`
//!   (`BadJsonBody`, `BadParams`, `RequestFieldsTypesMismatched`, …) and 413 (body too large):
//!   the batch is refused as a whole and bisected down to the records at fault.
//! - 401 (`BadApiKey`) and 403: the run fails (wrong, disabled or client-side key); 404: the
//!   run fails (wrong `base_url`).
//! - 429 (`RateLimitExceeded`): retried after `Retry-After` if sent, else with backoff.
//! - 5xx, timeouts and connection errors: retried.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::{error_text, retry_after, transport_error, BuildContext, Destination, Limits, Operation, OutRecord, Outcome, Reply, SendError};
use crate::config::{redact_url, IterableConfig, RateLimit};
use crate::error::{Error, Result};

/// Iterable's body cap is "4MB"; stay under both readings of it.
pub const MAX_BODY_BYTES: usize = 4_000_000;
/// Most records per request (what Iterable's own clients send).
pub const MAX_RECORDS: usize = 1000;
/// Bytes of a request body besides its records: `{"users":[…],"createNewFields":false}`.
const OVERHEAD_BYTES: usize = 48;
/// Longest event id Iterable accepts.
const MAX_EVENT_ID_BYTES: usize = 512;
/// Per-user deletes: Iterable allows 100 requests/s per project; we keep to 80.
const DELETE_INTERVAL: Duration = Duration::from_micros(12_500);
const DELETE_CONCURRENCY: usize = 8;

/// Data fields Iterable takes at the top level of an event instead of in `dataFields`.
const EVENT_TOP_LEVEL: &[&str] = &["eventName", "createdAt", "campaignId", "templateId"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Object {
    Users,
    Events,
}

pub struct Iterable {
    name: String,
    base_url: String,
    api_key: HeaderValue,
    object: Object,
    /// `email` or `userId`.
    id_field: String,
    merge_nested_objects: bool,
    create_new_fields: Option<bool>,
    timeout: Duration,
    client: reqwest::Client,
    /// When the next per-user delete may start.
    next_delete: Mutex<Instant>,
    warned_filtered: AtomicBool,
}

pub async fn build(ctx: &BuildContext<'_>, cfg: &IterableConfig) -> Result<Arc<dyn Destination>> {
    let mut api_key = HeaderValue::from_str(cfg.api_key.expose()).map_err(|_| {
        Error::config(format!("destination `{}`: the api_key holds characters an HTTP header cannot carry (a newline?)", ctx.config.name))
    })?;
    api_key.set_sensitive(true);
    let object = match ctx.sync.object.as_deref() {
        None | Some("users") => Object::Users,
        Some("events") => Object::Events,
        Some(other) => return Err(Error::config(format!("destination `{}`: Iterable has no object `{other}`; use users or events", ctx.config.name))),
    };
    Ok(Arc::new(Iterable {
        name: ctx.config.name.clone(),
        base_url: cfg.base_url.trim_end_matches('/').to_string(),
        api_key,
        object,
        id_field: ctx.sync.primary_identifier.to.clone(),
        merge_nested_objects: cfg.merge_nested_objects,
        create_new_fields: cfg.create_new_fields,
        timeout: ctx.config.delivery.timeout.unwrap_or(Limits::default().default_timeout),
        client: ctx.client.clone(),
        next_delete: Mutex::new(Instant::now()),
        warned_filtered: AtomicBool::new(false),
    }))
}

// ---------------------------------------------------------------------------------------------
// Request bodies, serialized straight from the records (also to measure them exactly).

/// A record's fields minus some, as a JSON object.
struct Fields<'a> {
    payload: &'a Map<String, Value>,
    skip: &'a [&'a str],
    also_skip: &'a str,
}

impl Serialize for Fields<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for (k, v) in self.payload {
            if k != self.also_skip && !self.skip.contains(&k.as_str()) {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

#[derive(Serialize)]
struct UserOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(rename = "userId", skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    #[serde(rename = "dataFields")]
    data_fields: Fields<'a>,
    #[serde(rename = "preferUserId", skip_serializing_if = "Option::is_none")]
    prefer_user_id: Option<bool>,
    #[serde(rename = "mergeNestedObjects")]
    merge_nested_objects: bool,
}

#[derive(Serialize)]
struct EventOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(rename = "userId", skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    #[serde(rename = "eventName")]
    event_name: &'a str,
    id: &'a str,
    #[serde(rename = "createdAt", skip_serializing_if = "Option::is_none")]
    created_at: Option<i64>,
    #[serde(rename = "campaignId", skip_serializing_if = "Option::is_none")]
    campaign_id: Option<i64>,
    #[serde(rename = "templateId", skip_serializing_if = "Option::is_none")]
    template_id: Option<i64>,
    #[serde(rename = "dataFields")]
    data_fields: Fields<'a>,
    #[serde(rename = "createNewFields", skip_serializing_if = "Option::is_none")]
    create_new_fields: Option<bool>,
}

#[derive(Serialize)]
struct UsersBody<'a> {
    users: &'a [UserOut<'a>],
    #[serde(rename = "createNewFields", skip_serializing_if = "Option::is_none")]
    create_new_fields: Option<bool>,
}

#[derive(Serialize)]
struct EventsBody<'a> {
    events: &'a [EventOut<'a>],
}

fn text(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// An integer from a number or integer text.
fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().filter(|f| f.is_finite() && f.abs() < 9.0e15).map(|f| f.floor() as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `createdAt` as unix seconds: an integer, or an ISO-8601 datetime (UTC when no offset).
fn unix_seconds(v: &Value) -> std::result::Result<Option<i64>, String> {
    if v.is_null() {
        return Ok(None);
    }
    if let Some(n) = int_of(v) {
        return Ok(Some(n));
    }
    let s = text(v).map(str::trim).unwrap_or_default();
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(Some(t.unix_timestamp()));
    }
    let t = s.replace('T', " ");
    let t = t.trim_end_matches('Z');
    let full = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let frac = format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]");
    if let Ok(p) = time::PrimitiveDateTime::parse(t, full).or_else(|_| time::PrimitiveDateTime::parse(t, frac)) {
        return Ok(Some(p.assume_utc().unix_timestamp()));
    }
    if let Ok(d) = time::Date::parse(t, format_description!("[year]-[month]-[day]")) {
        return Ok(Some(d.midnight().assume_utc().unix_timestamp()));
    }
    Err(format!("createdAt {v} is neither unix seconds nor an ISO-8601 datetime (2026-01-31T12:00:00Z)"))
}

// ---------------------------------------------------------------------------------------------
// Answers

/// Iterable's error envelope `{"msg", "code", "params"}`, as one line.
fn envelope_text(status: reqwest::StatusCode, body: &[u8], with_params: bool) -> (String, Option<String>) {
    let v: Option<Value> = serde_json::from_slice(body).ok();
    let code = v.as_ref().and_then(|v| v.get("code")).and_then(Value::as_str).map(str::to_string);
    let msg = v.as_ref().and_then(|v| v.get("msg")).and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| error_text(body));
    let mut out = format!("HTTP {}", status.as_u16());
    if let Some(c) = &code {
        out.push(' ');
        out.push_str(c);
    }
    out.push_str(": ");
    out.push_str(msg.trim());
    if with_params {
        if let Some(p) = v.as_ref().and_then(|v| v.get("params")).filter(|p| p.as_object().is_some_and(|o| !o.is_empty())) {
            let p = p.to_string();
            let p: String = if p.chars().count() > 400 { p.chars().take(400).chain("…".chars()).collect() } else { p };
            out.push_str(&format!(" (params: {p})"));
        }
    }
    (out, code)
}

/// What a list in `failedUpdates` (or the deprecated top-level lists) means for a record.
fn failure_reason(list: &str) -> String {
    let what = match list {
        "invalidEmails" => "Iterable considers this email address malformed",
        "invalidUserIds" => "Iterable considers this userId malformed (empty, too long, non-ASCII or non-printable characters, or a trailing space)",
        "conflictEmails" => "another Iterable user already has this email (identity conflict)",
        "conflictUserIds" => "another Iterable user already has this userId (identity conflict)",
        "forgottenEmails" | "forgottenUserIds" => "this user was forgotten in Iterable (GDPR): Iterable refuses data about them",
        "invalidDataEmails" | "invalidDataUserIds" => "Iterable refused this record's data fields (invalid data other than its email or userId)",
        "notFoundEmails" => "Iterable has no user with this email",
        "notFoundUserIds" => "Iterable has no user with this userId",
        _ => "Iterable did not apply this record",
    };
    format!("{what} (failedUpdates.{list})")
}

/// Per-record outcomes from a 200 answer of users/bulkUpdate or events/trackBulk; `Err` when
/// Iterable counted failures it did not attribute (the batch is then split to find them).
fn outcomes_of(answer: &Value, ids: &[Option<String>], event_names: Option<&[Option<&str>]>) -> std::result::Result<Vec<Outcome>, String> {
    let norm = |s: &str| s.trim().to_lowercase();
    let mut by_id: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, id) in ids.iter().enumerate() {
        if let Some(id) = id {
            by_id.entry(norm(id)).or_default().push(i);
        }
    }
    let mut out: Vec<Option<Outcome>> = vec![None; ids.len()];
    let mark = |list: &str, values: &Value, out: &mut Vec<Option<Outcome>>| {
        for v in values.as_array().into_iter().flatten().filter_map(Value::as_str) {
            for &i in by_id.get(&norm(v)).into_iter().flatten() {
                if out[i].is_none() {
                    out[i] = Some(Outcome::Rejected(failure_reason(list)));
                }
            }
        }
    };
    if let Some(failed) = answer.get("failedUpdates").and_then(Value::as_object) {
        for (list, values) in failed {
            mark(list, values, &mut out);
        }
    }
    for list in ["invalidEmails", "invalidUserIds"] {
        if let Some(values) = answer.get(list) {
            mark(list, values, &mut out);
        }
    }
    if let (Some(names), Some(disallowed)) = (event_names, answer.get("disallowedEventNames").and_then(Value::as_array)) {
        let disallowed: Vec<&str> = disallowed.iter().filter_map(Value::as_str).collect();
        for (i, n) in names.iter().enumerate() {
            if let Some(n) = n.filter(|n| disallowed.contains(n)) {
                if out[i].is_none() {
                    out[i] = Some(Outcome::Rejected(format!("the Iterable project does not allow events named {n:?} (disallowedEventNames)")));
                }
            }
        }
    }
    let named = out.iter().filter(|o| o.is_some()).count() as u64;
    let fail_count = answer.get("failCount").and_then(Value::as_u64).unwrap_or(0);
    if fail_count > named {
        if ids.len() == 1 {
            return Ok(vec![Outcome::Rejected(format!(
                "Iterable counted this record as failed (failCount {fail_count}) without naming it in failedUpdates"
            ))]);
        }
        return Err(format!("Iterable reported {fail_count} failed records but named only {named} of them; splitting the batch to find the others"));
    }
    Ok(out.into_iter().map(|o| o.unwrap_or(Outcome::Accepted)).collect())
}

impl Iterable {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.client.request(method, url).header(HeaderName::from_static("api-key"), self.api_key.clone()).timeout(self.timeout)
    }

    /// A non-2xx answer as the error it is.
    fn classify(&self, endpoint: &str, status: reqwest::StatusCode, headers: &reqwest::header::HeaderMap, body: &[u8]) -> SendError {
        let code = status.as_u16();
        let (message, iterable_code) = envelope_text(status, body, !matches!(code, 401 | 403));
        let retry_after = retry_after(headers);
        match code {
            429 => SendError::RateLimited { message: format!("{endpoint}: {message}"), retry_after, rate: None },
            401 => SendError::Fatal {
                message: format!(
                    "Iterable refused the API key ({message}); check the `api_key` of destination `{}`: it must be an enabled server-side key of the project, for the data center of {}",
                    self.name,
                    redact_url(&self.base_url)
                ),
            },
            403 => SendError::Fatal {
                message: format!("the API key of destination `{}` may not call {endpoint} ({message}); use a server-side (standard) key", self.name),
            },
            404 | 405 => SendError::Fatal {
                message: format!("{endpoint}: {message}; check the `base_url` of destination `{}` ({})", self.name, redact_url(&self.base_url)),
            },
            413 => SendError::BatchRejected { message: format!("{endpoint}: {message}: the request body is over Iterable's 4 MB limit") },
            408 | 500..=599 => SendError::Transient { message: format!("{endpoint}: {message}"), retry_after },
            _ if iterable_code.as_deref() == Some("RateLimitExceeded") => {
                SendError::RateLimited { message: format!("{endpoint}: {message}"), retry_after, rate: None }
            }
            _ => SendError::BatchRejected { message: format!("{endpoint}: {message}") },
        }
    }

    /// POST a JSON body; the parsed 200 answer.
    async fn post(&self, path: &str, body: Vec<u8>) -> std::result::Result<Value, SendError> {
        let resp = self
            .request(reqwest::Method::POST, &self.url(path))
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| transport_error(&e, self.timeout))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.map_err(|e| SendError::Transient {
            message: format!("{path}: HTTP {status}: reading the answer failed: {}", e.without_url()),
            retry_after: None,
        })?;
        if !status.is_success() {
            return Err(self.classify(path, status, &headers, &bytes));
        }
        serde_json::from_slice::<Value>(&bytes).ok().filter(Value::is_object).ok_or_else(|| SendError::Transient {
            message: format!("{path}: HTTP {status} with an answer that is not Iterable's JSON: {}", error_text(&bytes)),
            retry_after: None,
        })
    }

    fn warn_filtered(&self, answer: &Value) {
        let fields: Vec<&str> = answer.get("filteredOutFields").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        if !fields.is_empty() && !self.warned_filtered.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                destination = %self.describe(),
                "Iterable dropped the fields {} (the project does not add unknown fields): add them in Iterable or set `create_new_fields: true`",
                fields.join(", ")
            );
        }
    }

    fn user<'a>(&'a self, r: &'a OutRecord<'a>) -> UserOut<'a> {
        let by_email = self.id_field == "email";
        UserOut {
            email: by_email.then_some(r.identifier),
            user_id: (!by_email).then_some(r.identifier),
            data_fields: Fields { payload: r.payload, skip: &[], also_skip: &self.id_field },
            prefer_user_id: (!by_email).then_some(true),
            merge_nested_objects: self.merge_nested_objects,
        }
    }

    /// The user's identifier of an event record (its payload's `email` or `userId`).
    fn event_user<'a>(&self, r: &'a OutRecord<'a>) -> Option<std::borrow::Cow<'a, str>> {
        match r.payload.get(&self.id_field)? {
            Value::String(s) if !s.is_empty() => Some(std::borrow::Cow::Borrowed(s)),
            Value::Number(n) => Some(std::borrow::Cow::Owned(n.to_string())),
            _ => None,
        }
    }

    fn event<'a>(&'a self, r: &'a OutRecord<'a>, user: &'a str) -> std::result::Result<EventOut<'a>, String> {
        let by_email = self.id_field == "email";
        let event_name = match r.payload.get("eventName") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.as_str(),
            Some(Value::Null) | None => return Err("the event has no name: its eventName field is null".into()),
            Some(other) => return Err(format!("eventName must be text, not {other}")),
        };
        if r.identifier.len() > MAX_EVENT_ID_BYTES {
            return Err(format!("the event id (unique key) is {} bytes; Iterable takes at most {MAX_EVENT_ID_BYTES}", r.identifier.len()));
        }
        let created_at = match r.payload.get("createdAt") {
            None => None,
            Some(v) => unix_seconds(v)?,
        };
        let top_int = |k: &str| -> std::result::Result<Option<i64>, String> {
            match r.payload.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => int_of(v).map(Some).ok_or_else(|| format!("{k} must be an integer, not {v}")),
            }
        };
        Ok(EventOut {
            email: by_email.then_some(user),
            user_id: (!by_email).then_some(user),
            event_name,
            id: r.identifier,
            created_at,
            campaign_id: top_int("campaignId")?,
            template_id: top_int("templateId")?,
            data_fields: Fields { payload: r.payload, skip: EVENT_TOP_LEVEL, also_skip: &self.id_field },
            create_new_fields: self.create_new_fields,
        })
    }

    async fn send_users(&self, records: &[OutRecord<'_>]) -> std::result::Result<Reply, SendError> {
        let users: Vec<UserOut> = records.iter().map(|r| self.user(r)).collect();
        let body = serde_json::to_vec(&UsersBody { users: &users, create_new_fields: self.create_new_fields })
            .map_err(|e| SendError::Fatal { message: format!("cannot encode the batch as JSON: {e}") })?;
        let answer = self.post("/api/users/bulkUpdate", body).await?;
        self.warn_filtered(&answer);
        let ids: Vec<Option<String>> = records.iter().map(|r| Some(r.identifier.to_string())).collect();
        outcomes_of(&answer, &ids, None).map(Reply::new).map_err(|message| SendError::BatchRejected { message })
    }

    async fn send_events(&self, records: &[OutRecord<'_>]) -> std::result::Result<Reply, SendError> {
        let users: Vec<Option<std::borrow::Cow<str>>> = records.iter().map(|r| self.event_user(r)).collect();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; records.len()];
        let mut events = Vec::with_capacity(records.len());
        let mut sent = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            let Some(user) = users[i].as_deref() else {
                outcomes[i] = Some(Outcome::Rejected(format!("the event has no {} to tie it to an Iterable user", self.id_field)));
                continue;
            };
            match self.event(r, user) {
                Ok(e) => {
                    events.push(e);
                    sent.push(i);
                }
                Err(reason) => outcomes[i] = Some(Outcome::Rejected(reason)),
            }
        }
        if !events.is_empty() {
            let body = serde_json::to_vec(&EventsBody { events: &events })
                .map_err(|e| SendError::Fatal { message: format!("cannot encode the batch as JSON: {e}") })?;
            let answer = self.post("/api/events/trackBulk", body).await?;
            self.warn_filtered(&answer);
            let ids: Vec<Option<String>> = sent.iter().map(|&i| users[i].as_deref().map(str::to_string)).collect();
            let names: Vec<Option<&str>> = events.iter().map(|e| Some(e.event_name)).collect();
            let got = outcomes_of(&answer, &ids, Some(&names)).map_err(|message| SendError::BatchRejected { message })?;
            for (&i, o) in sent.iter().zip(got) {
                outcomes[i] = Some(o);
            }
        }
        Ok(Reply::new(outcomes.into_iter().map(|o| o.unwrap_or(Outcome::Accepted)).collect()))
    }

    /// Wait for this delete's turn (Iterable's per-project limit on single-user deletes).
    async fn delete_turn(&self) {
        let at = {
            let mut next = self.next_delete.lock().unwrap_or_else(|p| p.into_inner());
            let at = (*next).max(Instant::now());
            *next = at + DELETE_INTERVAL;
            at
        };
        tokio::time::sleep_until(at).await;
    }

    async fn delete_one(&self, identifier: &str) -> std::result::Result<Outcome, SendError> {
        let mut url = reqwest::Url::parse(&self.base_url).map_err(|_| SendError::Fatal {
            message: format!("the base_url of destination `{}` is not a URL", self.name),
        })?;
        {
            let mut segs = url.path_segments_mut().map_err(|_| SendError::Fatal {
                message: format!("the base_url of destination `{}` cannot take a path", self.name),
            })?;
            segs.pop_if_empty().push("api").push("users");
            if self.id_field == "userId" {
                segs.push("byUserId");
            }
            segs.push(identifier);
        }
        self.delete_turn().await;
        let endpoint = if self.id_field == "userId" { "DELETE /api/users/byUserId/{userId}" } else { "DELETE /api/users/{email}" };
        let resp = match self.request(reqwest::Method::DELETE, url.as_str()).send().await {
            Ok(r) => r,
            Err(e) => {
                return Ok(Outcome::Retry(match transport_error(&e, self.timeout) {
                    SendError::Transient { message, .. } => format!("{endpoint}: {message}"),
                    _ => format!("{endpoint}: request failed"),
                }))
            }
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap_or_default();
        if status.is_success() {
            return Ok(Outcome::Accepted);
        }
        let code = serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| v.get("code").and_then(Value::as_str).map(str::to_string));
        if status.as_u16() == 404 || matches!(code.as_deref(), Some("NotFound" | "UnknownEmailError" | "UnknownUserIdError")) {
            // Already gone.
            return Ok(Outcome::Accepted);
        }
        match self.classify(endpoint, status, &headers, &bytes) {
            e @ SendError::Fatal { .. } => Err(e),
            SendError::RateLimited { message, .. } | SendError::Transient { message, .. } => Ok(Outcome::Retry(message)),
            SendError::BatchRejected { message } => Ok(Outcome::Rejected(message)),
        }
    }

    async fn delete_at(&self, i: usize, identifier: String) -> (usize, std::result::Result<Outcome, SendError>) {
        (i, self.delete_one(&identifier).await)
    }

    async fn send_deletes(&self, records: &[OutRecord<'_>]) -> std::result::Result<Reply, SendError> {
        let ids: Vec<(usize, String)> = records.iter().map(|r| r.identifier.to_string()).enumerate().collect();
        let results: Vec<(usize, std::result::Result<Outcome, SendError>)> = futures_util::stream::iter(ids)
            .map(|(i, id)| self.delete_at(i, id))
            .buffer_unordered(DELETE_CONCURRENCY)
            .collect()
            .await;
        let mut outcomes = vec![Outcome::Accepted; records.len()];
        for (i, r) in results {
            outcomes[i] = r?;
        }
        // Nothing got through: let the delivery layer back off for the whole batch.
        if outcomes.iter().all(|o| matches!(o, Outcome::Retry(_))) {
            if let Some(Outcome::Retry(message)) = outcomes.first() {
                let message = message.clone();
                return Err(if message.contains("429") {
                    SendError::RateLimited { message, retry_after: None, rate: None }
                } else {
                    SendError::Transient { message, retry_after: None }
                });
            }
        }
        Ok(Reply::new(outcomes))
    }
}

#[async_trait::async_trait]
impl Destination for Iterable {
    fn describe(&self) -> String {
        let object = if self.object == Object::Users { "users" } else { "events" };
        format!("iterable destination `{}` ({object} at {})", self.name, redact_url(&self.base_url))
    }

    fn limits(&self) -> Limits {
        Limits {
            max_records: MAX_RECORDS,
            max_bytes: Some(MAX_BODY_BYTES),
            overhead_bytes: OVERHEAD_BYTES,
            default_batch: MAX_RECORDS,
            default_rate: Some(RateLimit {
                requests: if self.object == Object::Users { 5 } else { 10 },
                per: Duration::from_secs(1),
            }),
            default_concurrency: 4,
            default_timeout: Duration::from_secs(30),
        }
    }

    fn record_size(&self, op: Operation, record: &OutRecord<'_>) -> usize {
        match (op, self.object) {
            // A delete is a request of its own, with no body.
            (Operation::Delete, _) => 1,
            (_, Object::Users) => super::json_size(&self.user(record)) + 1,
            (_, Object::Events) => match self.event_user(record) {
                Some(user) => self.event(record, &user).map(|e| super::json_size(&e)).unwrap_or(0) + 1,
                None => 1,
            },
        }
    }

    async fn check(&self) -> std::result::Result<(), String> {
        let url = self.url("/api/channels");
        let resp = self.request(reqwest::Method::GET, &url).send().await.map_err(|e| {
            format!("{}: {}", self.describe(), match transport_error(&e, self.timeout) {
                SendError::Transient { message, .. } => message,
                _ => "request failed".into(),
            })
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap_or_default();
        Err(format!("{}: {}", self.describe(), match self.classify("GET /api/channels", status, &headers, &bytes) {
            SendError::Fatal { message }
            | SendError::Transient { message, .. }
            | SendError::RateLimited { message, .. }
            | SendError::BatchRejected { message } => message,
        }))
    }

    async fn send(&self, op: Operation, records: &[OutRecord<'_>]) -> std::result::Result<Reply, SendError> {
        match (op, self.object) {
            (Operation::Delete, Object::Users) => self.send_deletes(records).await,
            (Operation::Upsert, Object::Users) => self.send_users(records).await,
            (Operation::Append, Object::Events) => self.send_events(records).await,
            (op, _) => Err(SendError::Fatal {
                message: format!("{} cannot {} records (the project check should have refused this sync)", self.describe(), op.as_str()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn failed_updates_are_matched_ignoring_case() {
        let answer = json!({"successCount": 2, "failCount": 2, "invalidEmails": ["bad"],
            "failedUpdates": {"invalidEmails": ["bad"], "forgottenEmails": ["Gone@X.io"], "conflictEmails": []}});
        let ids = ["ok@x.io", "bad", "gone@x.io", "fine@x.io"].map(|s| Some(s.to_string()));
        let out = outcomes_of(&answer, &ids, None).unwrap();
        assert_eq!(out[0], Outcome::Accepted);
        assert!(matches!(&out[1], Outcome::Rejected(r) if r.contains("malformed") && r.contains("failedUpdates.invalidEmails")));
        assert!(matches!(&out[2], Outcome::Rejected(r) if r.contains("forgotten")));
        assert_eq!(out[3], Outcome::Accepted);
    }

    #[test]
    fn unattributed_failures_split_the_batch() {
        let answer = json!({"successCount": 1, "failCount": 1});
        let two = [Some("a".to_string()), Some("b".to_string())];
        assert!(outcomes_of(&answer, &two, None).is_err());
        let one = [Some("a".to_string())];
        assert!(matches!(&outcomes_of(&answer, &one, None).unwrap()[0], Outcome::Rejected(_)));
    }

    #[test]
    fn created_at_forms() {
        assert_eq!(unix_seconds(&json!(1700000000)).unwrap(), Some(1700000000));
        assert_eq!(unix_seconds(&json!("2026-01-31T12:00:00Z")).unwrap(), Some(1769860800));
        assert_eq!(unix_seconds(&json!("2026-01-31 12:00:00")).unwrap(), Some(1769860800));
        assert_eq!(unix_seconds(&json!("2026-01-31")).unwrap(), Some(1769817600));
        assert!(unix_seconds(&json!("yesterday")).is_err());
    }

    #[test]
    fn envelope_messages_keep_code_and_params() {
        let body = br#"{"msg":"[/api/users/bulkUpdate] Invalid JSON body","code":"BadJsonBody","params":{"obj.users[1].preferUserId":"Boolean value expected"}}"#;
        let (m, code) = envelope_text(reqwest::StatusCode::BAD_REQUEST, body, true);
        assert_eq!(code.as_deref(), Some("BadJsonBody"));
        assert!(m.starts_with("HTTP 400 BadJsonBody: [/api/users/bulkUpdate] Invalid JSON body (params: "), "{m}");
    }
}
