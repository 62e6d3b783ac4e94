//! An emulator of the Salesforce APIs a sync uses (`sluicegate emulate salesforce`), in memory.
//!
//! - `POST /services/oauth2/token` (form body): `grant_type=refresh_token` (client id, secret
//!   and refresh token must match the configured ones) or `client_credentials` → `{access_token,
//!   instance_url (this server), id, token_type, issued_at, signature}`; refusals are `400
//!   {"error": "invalid_grant" | "invalid_client_id" | "invalid_client", "error_description"}`.
//! - Every data call (`/services/data/vNN.N/…`) needs `Authorization: Bearer <token>`; an unknown
//!   or expired token → `401 [{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]`
//!   (fault `expire_tokens_after: N`: each token dies after N data calls). Each call counts
//!   against the daily allocation (`daily_limit`, default 100,000) and every answer carries
//!   `Sforce-Limit-Info: api-usage=N/M`; once spent → `403 [{"errorCode":"REQUEST_LIMIT_EXCEEDED",
//!   "message":"TotalRequests Limit exceeded."}]`.
//! - sObject Collections: `PATCH composite/sobjects/{object}/{externalIdField}` (upsert),
//!   `POST composite/sobjects` (create), `PATCH composite/sobjects` (update by `Id`),
//!   `DELETE composite/sobjects?ids=…`. More than 200 records → `400 EXCEEDED_ID_LIMIT`; an
//!   unknown field → `400 INVALID_FIELD` ("No such column …"); otherwise `200` with one result
//!   per record in order: `{id, success, created, errors: [{statusCode, message, fields}]}`.
//!   Record errors: `REQUIRED_FIELD_MISSING`, `INVALID_EMAIL_ADDRESS`,
//!   `INVALID_TYPE_ON_FIELD_IN_RECORD`, `FIELD_CUSTOM_VALIDATION_EXCEPTION` (validation rules:
//!   `OBJECT.FIELD=REGEX`), `DUPLICATE_EXTERNAL_ID` (the same external id twice in one request,
//!   or an external id matching several records), `DUPLICATE_VALUE` (unique fields),
//!   `INVALID_CROSS_REFERENCE_KEY` / `ENTITY_IS_DELETED` (unknown Ids), and the fault
//!   `UNABLE_TO_LOCK_ROW` (`lock_rate`, spread evenly over records).
//! - `GET query?q=SELECT f, … FROM Object [WHERE field IN ('a', …) | WHERE field = 'a'] [LIMIT n]`,
//!   2,000 records per page with `nextRecordsUrl`.
//! - Bulk API 2.0: `POST jobs/ingest`, `PUT jobs/ingest/{id}/batches` (CSV, `201`), `PATCH
//!   jobs/ingest/{id}` (`UploadComplete` processes the rows; `Aborted`), `GET jobs/ingest/{id}`
//!   (`InProgress` for `bulk_polls` answers, then `JobComplete`, or `Failed` with `errorMessage`
//!   for a header naming unknown fields or text that is not CSV), `GET
//!   …/successfulResults/` (`sf__Id,sf__Created,…`), `…/failedResults/` (`sf__Id,sf__Error,…`)
//!   and `…/unprocessedrecords/`, in reverse order (callers must match by a column). `#N/A`
//!   clears a field; an empty cell leaves it unchanged.
//! - `GET sobjects/{object}/describe`, `GET limits`.
//! - Faults (`PUT /_emulator/faults`): `fail_rate` / `fail_next` (503 `SERVER_UNAVAILABLE`, or
//!   `fail_status`), `latency_ms`, `lock_rate`, `expire_tokens_after`, `concurrent_limit_next`
//!   (403 "ConcurrentPerOrgLongTxn Limit exceeded.", a throttling storm: Salesforce's REST API
//!   never answers 429), `request_limit_next` (403 "TotalRequests Limit exceeded."),
//!   `stall_every` / `stall_seconds` (every Nth data call hangs that long, then 503),
//!   `echo_token_next` / `echo_token_status` (an error body quoting the bearer token).
//! - Read-back: `GET /_emulator/records/{object}`, `GET /_emulator/stats`; `POST
//!   /_emulator/reset` forgets records, jobs, counters and the day's usage.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use axum::{Json, Router};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::sync::oneshot;

use crate::destination::salesforce::csv;
use crate::error::{Error, Result};

// ---------------------------------------------------------------------------------------------
// Configuration

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldKind {
    Id,
    String,
    Email,
    Double,
    Boolean,
}

#[derive(Debug, Clone)]
pub struct FieldDef {
    pub name: String,
    pub kind: FieldKind,
    pub external_id: bool,
    pub id_lookup: bool,
    pub required: bool,
    pub unique: bool,
}

impl FieldDef {
    fn new(name: &str, kind: FieldKind) -> Self {
        FieldDef { name: name.into(), kind, external_id: false, id_lookup: false, required: false, unique: false }
    }
    fn ext(mut self) -> Self {
        self.external_id = true;
        self.unique = true;
        self
    }
    fn lookup(mut self) -> Self {
        self.id_lookup = true;
        self
    }
    fn required(mut self) -> Self {
        self.required = true;
        self
    }
    fn indexed(&self) -> bool {
        self.external_id || self.id_lookup || self.unique
    }
}

#[derive(Debug, Clone)]
pub struct ObjectDef {
    pub name: String,
    /// The 3-character key prefix of its record Ids (`003` for Contact).
    pub prefix: String,
    pub fields: Vec<FieldDef>,
}

impl ObjectDef {
    fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// `Name=Field*,Other!,Amount#,Flag?,Mail@`: `*` External ID (unique), `!` required,
    /// `#` number, `?` boolean, `@` email, `~` idLookup. `Id` is always there.
    pub fn parse(spec: &str, prefix: &str) -> Result<ObjectDef> {
        let (name, fields) = spec
            .split_once('=')
            .ok_or_else(|| Error::other(format!("object spec {spec:?} must look like Name=Field*,Other!,Amount#")))?;
        let mut def = ObjectDef { name: name.trim().into(), prefix: prefix.into(), fields: vec![FieldDef::new("Id", FieldKind::Id).lookup()] };
        for f in fields.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            let base = f.trim_end_matches(['*', '!', '#', '?', '@', '~']);
            let flags = &f[base.len()..];
            let mut fd = FieldDef::new(base, FieldKind::String);
            for c in flags.chars() {
                match c {
                    '*' => fd = fd.ext(),
                    '!' => fd = fd.required(),
                    '#' => fd.kind = FieldKind::Double,
                    '?' => fd.kind = FieldKind::Boolean,
                    '@' => fd.kind = FieldKind::Email,
                    _ => fd = fd.lookup(),
                }
            }
            def.fields.push(fd);
        }
        Ok(def)
    }
}

/// Contact, Lead and Account, each with `External_Id__c` (External ID, unique), `Score__c`
/// (number) and `VIP__c` (boolean) beside their usual fields.
pub fn default_objects() -> Vec<ObjectDef> {
    use FieldKind::*;
    let common = |extra: Vec<FieldDef>| {
        let mut v = vec![FieldDef::new("Id", Id).lookup(), FieldDef::new("External_Id__c", String).ext()];
        v.extend(extra);
        v.extend([FieldDef::new("Score__c", Double), FieldDef::new("VIP__c", Boolean), FieldDef::new("Description", String)]);
        v
    };
    vec![
        ObjectDef {
            name: "Contact".into(),
            prefix: "003".into(),
            fields: common(vec![
                FieldDef::new("Email", Email).lookup(),
                FieldDef::new("FirstName", String),
                FieldDef::new("LastName", String).required(),
                FieldDef::new("Phone", String),
                FieldDef::new("Title", String),
            ]),
        },
        ObjectDef {
            name: "Lead".into(),
            prefix: "00Q".into(),
            fields: common(vec![
                FieldDef::new("Email", Email).lookup(),
                FieldDef::new("FirstName", String),
                FieldDef::new("LastName", String).required(),
                FieldDef::new("Company", String).required(),
                FieldDef::new("Status", String),
            ]),
        },
        ObjectDef {
            name: "Account".into(),
            prefix: "001".into(),
            fields: common(vec![FieldDef::new("Name", String).required(), FieldDef::new("Industry", String), FieldDef::new("Website", String)]),
        },
    ]
}

/// A validation rule: records of `object` (any object when `None`) whose `field` text matches
/// `pattern` fail with `FIELD_CUSTOM_VALIDATION_EXCEPTION` and `message`.
#[derive(Debug, Clone)]
pub struct ValidationRule {
    pub object: Option<String>,
    pub field: String,
    pub pattern: Regex,
    pub message: String,
}

impl ValidationRule {
    /// `[OBJECT.]FIELD=REGEX`.
    pub fn parse(spec: &str) -> Result<ValidationRule> {
        let (target, pattern) = spec
            .split_once('=')
            .ok_or_else(|| Error::other(format!("validation rule {spec:?} must look like [OBJECT.]FIELD=REGEX, e.g. Contact.Score__c=^-")))?;
        let (object, field) = match target.split_once('.') {
            Some((o, f)) => (Some(o.to_string()), f.to_string()),
            None => (None, target.to_string()),
        };
        let pattern = Regex::new(pattern).map_err(|e| Error::other(format!("validation rule {spec:?}: bad regex")).with_source(e))?;
        Ok(ValidationRule { message: format!("{field} does not pass validation rule /{pattern}/"), object, field, pattern })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Faults {
    /// Share of data calls answered `fail_status` (spread evenly).
    #[serde(default)]
    pub fail_rate: f64,
    /// The next N data calls fail (a burst).
    #[serde(default)]
    pub fail_next: u64,
    #[serde(default = "default_fail_status")]
    pub fail_status: u16,
    #[serde(default)]
    pub latency_ms: u64,
    /// Share of records answered `UNABLE_TO_LOCK_ROW` (spread evenly), not applied.
    #[serde(default)]
    pub lock_rate: f64,
    /// Each access token is refused after this many data calls (`INVALID_SESSION_ID`).
    #[serde(default)]
    pub expire_tokens_after: Option<u64>,
    /// The next N data calls are refused with "ConcurrentPerOrgLongTxn Limit exceeded.".
    #[serde(default)]
    pub concurrent_limit_next: u64,
    /// The next N data calls are refused with `403 REQUEST_LIMIT_EXCEEDED` "TotalRequests Limit
    /// exceeded." (Salesforce's throttle answer: its REST API never answers 429).
    #[serde(default)]
    pub request_limit_next: u64,
    /// Every Nth data call (counting from the first) hangs for `stall_seconds` before it is
    /// answered (0: never).
    #[serde(default)]
    pub stall_every: u64,
    #[serde(default)]
    pub stall_seconds: f64,
    /// The next N data calls are answered `echo_token_status` with an error body that quotes
    /// the caller's bearer token (a leaky proxy or service), to test that no token is shown.
    #[serde(default)]
    pub echo_token_next: u64,
    #[serde(default = "default_echo_status")]
    pub echo_token_status: u16,
}

fn default_echo_status() -> u16 {
    400
}

fn default_fail_status() -> u16 {
    503
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            fail_rate: 0.0,
            fail_next: 0,
            fail_status: 503,
            latency_ms: 0,
            lock_rate: 0.0,
            expire_tokens_after: None,
            concurrent_limit_next: 0,
            request_limit_next: 0,
            stall_every: 0,
            stall_seconds: 0.0,
            echo_token_next: 0,
            echo_token_status: 400,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SalesforceEmulatorConfig {
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
    /// Whether `grant_type=client_credentials` is enabled for the connected app.
    pub client_credentials: bool,
    /// Data calls allowed per day (`Sforce-Limit-Info`).
    pub daily_limit: u64,
    pub objects: Vec<ObjectDef>,
    pub rules: Vec<ValidationRule>,
    pub faults: Faults,
    /// `GET jobs/ingest/{id}` answers `InProgress` this many times before `JobComplete`.
    pub bulk_polls: u32,
}

impl Default for SalesforceEmulatorConfig {
    fn default() -> Self {
        SalesforceEmulatorConfig {
            client_id: "test-client-id".into(),
            client_secret: "test-client-secret".into(),
            refresh_token: "test-refresh-token".into(),
            client_credentials: true,
            daily_limit: 100_000,
            objects: default_objects(),
            rules: Vec::new(),
            faults: Faults::default(),
            bulk_polls: 1,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    /// Data calls answered (errors included, 401s excluded).
    pub requests: u64,
    pub token_requests: u64,
    pub tokens_issued: u64,
    pub token_refusals: u64,
    /// Data calls refused with `INVALID_SESSION_ID`.
    pub sessions_refused: u64,
    pub collection_requests: u64,
    pub queries: u64,
    pub records_received: u64,
    pub records_created: u64,
    pub records_updated: u64,
    pub records_deleted: u64,
    pub records_failed: u64,
    pub lock_errors: u64,
    pub server_errors: u64,
    pub limit_exceeded: u64,
    /// Data calls held back by the `stall_every` fault.
    pub stalls: u64,
    pub bulk_jobs: u64,
    pub bulk_jobs_completed: u64,
    /// Jobs a client set to `Aborted`.
    pub bulk_jobs_aborted: u64,
    /// Data calls counted against the daily allocation.
    pub api_usage: u64,
    /// Records currently stored, all objects.
    pub stored: u64,
}

// ---------------------------------------------------------------------------------------------
// State

#[derive(Default)]
struct Table {
    records: BTreeMap<String, Map<String, Value>>,
    /// (lower-cased field, lower-cased value) → Ids, for External ID, idLookup and unique fields.
    index: HashMap<(String, String), Vec<String>>,
}

struct Job {
    id: String,
    object: String,
    operation: String,
    external_id: Option<String>,
    line_ending: String,
    state: String,
    data: String,
    polls_left: u32,
    error_message: Option<String>,
    processed: u64,
    failed: u64,
    /// Result rows: (sf__Id, sf__Created or sf__Error, original cells).
    successes: Vec<(String, String, Vec<String>)>,
    failures: Vec<(String, String, Vec<String>)>,
    header: Vec<String>,
    created: String,
}

struct Inner {
    base_url: String,
    cfg: SalesforceEmulatorConfig,
    stats: Stats,
    tables: HashMap<String, Table>,
    deleted: std::collections::HashSet<String>,
    /// Token → data calls made with it.
    tokens: HashMap<String, u64>,
    next_id: u64,
    jobs: BTreeMap<String, Job>,
    cursors: HashMap<String, Vec<Value>>,
    record_counter: u64,
    /// Data calls received, for `stall_every` (401s and stalled calls included).
    calls: u64,
    /// When each data call that passed authentication arrived, in order.
    arrivals: Vec<std::time::Instant>,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether event number `n` (from 0) is hit at `rate`: hits spread evenly.
fn hits(n: u64, rate: f64) -> bool {
    if rate <= 0.0 {
        return false;
    }
    if rate >= 1.0 {
        return true;
    }
    ((n + 1) as f64 * rate).floor() > (n as f64 * rate).floor()
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A REST error answer: `[{"message", "errorCode"}]`.
fn rest_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!([{"message": message, "errorCode": code}]))).into_response()
}

#[derive(Debug, Clone)]
struct RecError {
    code: &'static str,
    message: String,
    fields: Vec<String>,
}

impl RecError {
    fn new(code: &'static str, message: impl Into<String>, fields: &[&str]) -> Self {
        RecError { code, message: message.into(), fields: fields.iter().map(|s| s.to_string()).collect() }
    }
    fn json(&self) -> Value {
        json!({"statusCode": self.code, "message": self.message, "fields": self.fields})
    }
    /// Bulk's `sf__Error`: `CODE:message:fields --`.
    fn bulk(&self) -> String {
        format!("{}:{}:{} --", self.code, self.message, self.fields.join(","))
    }
}

/// How a record is written.
#[derive(Clone, Copy)]
enum Mode<'a> {
    Upsert(&'a str),
    Insert,
    Update,
}

impl Inner {
    fn object(&self, name: &str) -> Option<ObjectDef> {
        self.cfg.objects.iter().find(|o| o.name.eq_ignore_ascii_case(name)).cloned()
    }

    fn new_id(&mut self, def: &ObjectDef) -> String {
        self.next_id += 1;
        let mut n = self.next_id;
        let alphabet = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut digits = Vec::new();
        for _ in 0..9 {
            digits.push(alphabet[(n % 62) as usize] as char);
            n /= 62;
        }
        digits.reverse();
        format!("{}000{}AAA", def.prefix, digits.into_iter().collect::<String>())
    }

    fn find_ids(&self, def: &ObjectDef, field: &str, value: &str) -> Vec<String> {
        let Some(table) = self.tables.get(&def.name) else { return Vec::new() };
        if field.eq_ignore_ascii_case("id") {
            return if table.records.contains_key(value) { vec![value.to_string()] } else { Vec::new() };
        }
        if def.field(field).is_some_and(FieldDef::indexed) {
            return table.index.get(&(field.to_lowercase(), value.to_lowercase())).cloned().unwrap_or_default();
        }
        table
            .records
            .iter()
            .filter(|(_, r)| r.iter().any(|(k, v)| k.eq_ignore_ascii_case(field) && text_of(v).eq_ignore_ascii_case(value)))
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn store(&mut self, def: &ObjectDef, id: &str, rec: Map<String, Value>) {
        let table = self.tables.entry(def.name.clone()).or_default();
        if let Some(old) = table.records.get(id) {
            for f in def.fields.iter().filter(|f| f.indexed() && f.kind != FieldKind::Id) {
                if let Some(v) = old.get(&f.name).filter(|v| !v.is_null()) {
                    let key = (f.name.to_lowercase(), text_of(v).to_lowercase());
                    if let Some(ids) = table.index.get_mut(&key) {
                        ids.retain(|x| x != id);
                        if ids.is_empty() {
                            table.index.remove(&key);
                        }
                    }
                }
            }
        }
        for f in def.fields.iter().filter(|f| f.indexed() && f.kind != FieldKind::Id) {
            if let Some(v) = rec.get(&f.name).filter(|v| !v.is_null()) {
                table.index.entry((f.name.to_lowercase(), text_of(v).to_lowercase())).or_default().push(id.to_string());
            }
        }
        table.records.insert(id.to_string(), rec);
    }

    fn remove(&mut self, id: &str) -> bool {
        let Some(def) = self.cfg.objects.iter().find(|o| id.starts_with(&o.prefix)).cloned() else { return false };
        let Some(table) = self.tables.get_mut(&def.name) else { return false };
        let Some(old) = table.records.remove(id) else { return false };
        for f in def.fields.iter().filter(|f| f.indexed() && f.kind != FieldKind::Id) {
            if let Some(v) = old.get(&f.name).filter(|v| !v.is_null()) {
                let key = (f.name.to_lowercase(), text_of(v).to_lowercase());
                if let Some(ids) = table.index.get_mut(&key) {
                    ids.retain(|x| x != id);
                    if ids.is_empty() {
                        table.index.remove(&key);
                    }
                }
            }
        }
        self.deleted.insert(id.to_string());
        true
    }

    /// The injected lock fault for the next record.
    fn lock_fault(&mut self) -> Option<RecError> {
        let n = self.record_counter;
        self.record_counter += 1;
        if hits(n, self.cfg.faults.lock_rate) {
            self.stats.lock_errors += 1;
            return Some(RecError::new("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record or 1 records", &[]));
        }
        None
    }

    /// A value converted to the field's type; `Err` the record error.
    fn convert(def: &ObjectDef, f: &FieldDef, v: Value) -> std::result::Result<Value, RecError> {
        if v.is_null() {
            return Ok(v);
        }
        match f.kind {
            FieldKind::Double => match &v {
                Value::Number(_) => Ok(v),
                Value::String(s) => serde_json::from_str::<serde_json::Number>(s.trim()).map(Value::Number).map_err(|_| {
                    RecError::new("INVALID_TYPE_ON_FIELD_IN_RECORD", format!("{}: value not of required type: {s}", f.name), &[&f.name])
                }),
                other => Err(RecError::new("INVALID_TYPE_ON_FIELD_IN_RECORD", format!("{}: value not of required type: {other}", f.name), &[&f.name])),
            },
            FieldKind::Boolean => match &v {
                Value::Bool(_) => Ok(v),
                Value::String(s) if s.eq_ignore_ascii_case("true") || s == "1" => Ok(Value::Bool(true)),
                Value::String(s) if s.eq_ignore_ascii_case("false") || s == "0" => Ok(Value::Bool(false)),
                Value::Number(n) if n.to_string() == "1" || n.to_string() == "0" => Ok(Value::Bool(n.to_string() == "1")),
                other => Err(RecError::new("INVALID_TYPE_ON_FIELD_IN_RECORD", format!("{}: value not of required type: {}", f.name, text_of(other)), &[&f.name])),
            },
            FieldKind::Email => {
                let s = text_of(&v);
                let at = s.find('@');
                let ok = at.is_some_and(|i| i > 0 && s[i + 1..].contains('.') && !s[i + 1..].starts_with('.') && !s.ends_with('.'))
                    && !s.contains(char::is_whitespace)
                    && s.matches('@').count() == 1;
                if ok { Ok(Value::String(s)) } else { Err(RecError::new("INVALID_EMAIL_ADDRESS", format!("{}: invalid email address: {s}", f.name), &[&f.name])) }
            }
            FieldKind::String | FieldKind::Id => {
                let _ = def;
                Ok(Value::String(text_of(&v)))
            }
        }
    }

    /// Write one record; `(Id, created)` or the record's error. Field names were checked.
    fn write(&mut self, def: &ObjectDef, mode: Mode<'_>, rec: Map<String, Value>) -> std::result::Result<(String, bool), RecError> {
        self.stats.records_received += 1;
        let result = self.write_inner(def, mode, rec);
        match &result {
            Ok((_, true)) => self.stats.records_created += 1,
            Ok((_, false)) => self.stats.records_updated += 1,
            Err(_) => self.stats.records_failed += 1,
        }
        result
    }

    fn write_inner(&mut self, def: &ObjectDef, mode: Mode<'_>, rec: Map<String, Value>) -> std::result::Result<(String, bool), RecError> {
        if let Some(e) = self.lock_fault() {
            return Err(e);
        }
        let given_id = rec.iter().find(|(k, _)| k.eq_ignore_ascii_case("id")).map(|(_, v)| text_of(v)).filter(|s| !s.is_empty());
        let existing: Option<String> = match mode {
            Mode::Insert => {
                if given_id.is_some() {
                    return Err(RecError::new("INVALID_FIELD", "cannot specify Id in an insert call", &["Id"]));
                }
                None
            }
            Mode::Update => {
                let Some(id) = given_id else {
                    return Err(RecError::new("MISSING_ARGUMENT", "Id not specified in an update call", &["Id"]));
                };
                if self.tables.get(&def.name).is_some_and(|t| t.records.contains_key(&id)) {
                    Some(id)
                } else if self.deleted.contains(&id) {
                    return Err(RecError::new("ENTITY_IS_DELETED", "entity is deleted", &[]));
                } else {
                    return Err(RecError::new("INVALID_CROSS_REFERENCE_KEY", format!("invalid cross reference id: {id}"), &["Id"]));
                }
            }
            Mode::Upsert(field) => {
                let value = rec.iter().find(|(k, _)| k.eq_ignore_ascii_case(field)).map(|(_, v)| text_of(v)).unwrap_or_default();
                if value.is_empty() {
                    return Err(RecError::new("MISSING_ARGUMENT", format!("{field} not specified"), &[field]));
                }
                let ids = self.find_ids(def, field, &value);
                match ids.len() {
                    0 => None,
                    1 => Some(ids[0].clone()),
                    n => {
                        return Err(RecError::new(
                            "DUPLICATE_EXTERNAL_ID",
                            format!("{field}: more than one record found for external id field: {n} records have {value}"),
                            &[field],
                        ));
                    }
                }
            }
        };
        let mut merged = match &existing {
            Some(id) => self.tables[&def.name].records[id].clone(),
            None => Map::new(),
        };
        for (k, v) in rec {
            if k == "attributes" || k.eq_ignore_ascii_case("id") {
                continue;
            }
            let Some(f) = def.field(&k) else { continue };
            let v = Self::convert(def, f, v)?;
            merged.insert(f.name.clone(), v);
        }
        let missing: Vec<&str> = def.fields.iter().filter(|f| f.required && merged.get(&f.name).is_none_or(Value::is_null)).map(|f| f.name.as_str()).collect();
        if !missing.is_empty() {
            return Err(RecError::new("REQUIRED_FIELD_MISSING", format!("Required fields are missing: [{}]", missing.join(", ")), &missing));
        }
        for f in def.fields.iter().filter(|f| f.unique && f.kind != FieldKind::Id) {
            if let Some(v) = merged.get(&f.name).filter(|v| !v.is_null()) {
                let others: Vec<String> = self.find_ids(def, &f.name, &text_of(v)).into_iter().filter(|x| Some(x) != existing.as_ref()).collect();
                if let Some(other) = others.first() {
                    return Err(RecError::new("DUPLICATE_VALUE", format!("duplicate value found: {} duplicates value on record with id: {other}", f.name), &[&f.name]));
                }
            }
        }
        for rule in &self.cfg.rules {
            if rule.object.as_ref().is_some_and(|o| !o.eq_ignore_ascii_case(&def.name)) {
                continue;
            }
            if let Some((name, v)) = merged.iter().find(|(k, _)| k.eq_ignore_ascii_case(&rule.field)) {
                if !v.is_null() && rule.pattern.is_match(&text_of(v)) {
                    return Err(RecError { code: "FIELD_CUSTOM_VALIDATION_EXCEPTION", message: rule.message.clone(), fields: vec![name.clone()] });
                }
            }
        }
        let created = existing.is_none();
        let id = match existing {
            Some(id) => id,
            None => self.new_id(def),
        };
        merged.insert("Id".into(), Value::String(id.clone()));
        self.store(def, &id, merged);
        Ok((id, created))
    }

    /// Field names the object does not have (first one), for request-level `INVALID_FIELD`.
    fn unknown_field<'k>(def: &ObjectDef, keys: impl Iterator<Item = &'k String>) -> Option<String> {
        keys.filter(|k| *k != "attributes").find(|k| def.field(k).is_none()).cloned()
    }
}

// ---------------------------------------------------------------------------------------------
// OAuth

fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_form(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (form_decode(k), form_decode(v)),
            None => (form_decode(p), String::new()),
        })
        .collect()
}

async fn token(State(s): State<Shared>, body: Bytes) -> Response {
    let form = parse_form(&String::from_utf8_lossy(&body));
    let mut inner = lock(&s);
    inner.stats.token_requests += 1;
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let refuse = |inner: &mut Inner, error: &str, desc: &str| {
        inner.stats.token_refusals += 1;
        (StatusCode::BAD_REQUEST, Json(json!({"error": error, "error_description": desc}))).into_response()
    };
    let grant = get("grant_type").to_string();
    if grant != "refresh_token" && grant != "client_credentials" {
        return refuse(&mut inner, "unsupported_grant_type", "grant type not supported");
    }
    if get("client_id") != inner.cfg.client_id {
        return refuse(&mut inner, "invalid_client_id", "client identifier invalid");
    }
    if get("client_secret") != inner.cfg.client_secret {
        return refuse(&mut inner, "invalid_client", "invalid client credentials");
    }
    if grant == "refresh_token" && get("refresh_token") != inner.cfg.refresh_token {
        return refuse(&mut inner, "invalid_grant", "expired access/refresh token");
    }
    if grant == "client_credentials" && !inner.cfg.client_credentials {
        return refuse(&mut inner, "invalid_grant", "no client credentials user enabled");
    }
    inner.stats.tokens_issued += 1;
    let n = inner.stats.tokens_issued;
    let access = format!("00DEMU000000001!AQ{:016x}{n}", xxhash_rust::xxh3::xxh3_64(format!("{n}{:?}", std::time::SystemTime::now()).as_bytes()));
    inner.tokens.insert(access.clone(), 0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    Json(json!({
        "access_token": access,
        "instance_url": inner.base_url,
        "id": format!("{}/id/00DEMU000000001AAA/005EMU000000001AAA", inner.base_url),
        "token_type": "Bearer",
        "issued_at": now.to_string(),
        "signature": "ZW11bGF0b3I=",
        "scope": "api refresh_token"
    }))
    .into_response()
}

// ---------------------------------------------------------------------------------------------
// Data API

fn with_usage(mut resp: Response, inner: &Inner) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("api-usage={}/{}", inner.stats.api_usage, inner.cfg.daily_limit)) {
        resp.headers_mut().insert("sforce-limit-info", v);
    }
    resp
}

async fn data(State(s): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let (latency, stall) = {
        let mut inner = lock(&s);
        inner.calls += 1;
        let f = inner.cfg.faults.clone();
        let stall = (f.stall_every > 0 && inner.calls.is_multiple_of(f.stall_every) && f.stall_seconds > 0.0).then_some(f.stall_seconds);
        if stall.is_some() {
            inner.stats.stalls += 1;
        }
        (f.latency_ms, stall)
    };
    if let Some(secs) = stall {
        // Answered late, not at all: a caller with a shorter timeout has given up by then.
        tokio::time::sleep(std::time::Duration::from_secs_f64(secs.min(3600.0))).await;
        return with_usage(rest_error(StatusCode::SERVICE_UNAVAILABLE, "SERVER_UNAVAILABLE", "the emulator stalled this request on purpose"), &lock(&s));
    }
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    let mut inner = lock(&s);
    // Authentication.
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("").to_string();
    let expire = inner.cfg.faults.expire_tokens_after;
    let valid = match inner.tokens.get_mut(&token) {
        Some(uses) if expire.is_none_or(|n| *uses < n) => {
            *uses += 1;
            true
        }
        Some(_) => {
            inner.tokens.remove(&token);
            false
        }
        None => false,
    };
    if !valid {
        inner.stats.sessions_refused += 1;
        return rest_error(StatusCode::UNAUTHORIZED, "INVALID_SESSION_ID", "Session expired or invalid");
    }
    inner.stats.requests += 1;
    inner.arrivals.push(std::time::Instant::now());
    // The daily allocation.
    if inner.stats.api_usage >= inner.cfg.daily_limit {
        inner.stats.limit_exceeded += 1;
        let r = rest_error(StatusCode::FORBIDDEN, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.");
        return with_usage(r, &inner);
    }
    inner.stats.api_usage += 1;
    // Faults.
    if inner.cfg.faults.echo_token_next > 0 {
        inner.cfg.faults.echo_token_next -= 1;
        let status = StatusCode::from_u16(inner.cfg.faults.echo_token_status).unwrap_or(StatusCode::BAD_REQUEST);
        let r = rest_error(status, "INVALID_INPUT", &format!("the emulator echoes the request's credentials on purpose: Authorization: Bearer {token}"));
        return with_usage(r, &inner);
    }
    if inner.cfg.faults.request_limit_next > 0 {
        inner.cfg.faults.request_limit_next -= 1;
        inner.stats.limit_exceeded += 1;
        let r = rest_error(StatusCode::FORBIDDEN, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.");
        return with_usage(r, &inner);
    }
    if inner.cfg.faults.concurrent_limit_next > 0 {
        inner.cfg.faults.concurrent_limit_next -= 1;
        inner.stats.limit_exceeded += 1;
        let r = rest_error(StatusCode::FORBIDDEN, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded.");
        return with_usage(r, &inner);
    }
    let n = inner.stats.requests - 1;
    if inner.cfg.faults.fail_next > 0 || hits(n, inner.cfg.faults.fail_rate) {
        inner.cfg.faults.fail_next = inner.cfg.faults.fail_next.saturating_sub(1);
        inner.stats.server_errors += 1;
        let status = StatusCode::from_u16(inner.cfg.faults.fail_status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let r = rest_error(status, "SERVER_UNAVAILABLE", "Server temporarily unavailable; the emulator fails this request on purpose");
        return with_usage(r, &inner);
    }
    let path = uri.path().trim_start_matches("/services/data/");
    let segs: Vec<&str> = path.split('/').collect();
    let query = uri.query().unwrap_or("");
    let r = route(&mut inner, &method, &segs[1..], query, &body);
    with_usage(r, &inner)
}

fn json_body(body: &[u8]) -> std::result::Result<Value, Response> {
    serde_json::from_slice(body).map_err(|e| rest_error(StatusCode::BAD_REQUEST, "JSON_PARSER_ERROR", &format!("The request body is not valid JSON: {e}")))
}

fn route(inner: &mut Inner, method: &Method, segs: &[&str], query: &str, body: &[u8]) -> Response {
    let segs: Vec<&str> = segs.iter().copied().filter(|s| !s.is_empty()).collect();
    match (method.clone(), segs.as_slice()) {
        (Method::GET, ["sobjects", object, "describe"]) => describe(inner, object),
        (Method::GET, ["limits"]) => Json(json!({"DailyApiRequests": {"Max": inner.cfg.daily_limit, "Remaining": inner.cfg.daily_limit.saturating_sub(inner.stats.api_usage)}})).into_response(),
        (Method::PATCH, ["composite", "sobjects", object, field]) => collections(inner, Some((object, field)), Mode::Upsert(field), body),
        (Method::POST, ["composite", "sobjects"]) => collections(inner, None, Mode::Insert, body),
        (Method::PATCH, ["composite", "sobjects"]) => collections(inner, None, Mode::Update, body),
        (Method::DELETE, ["composite", "sobjects"]) => delete_ids(inner, query),
        (Method::GET, ["query"]) => soql(inner, query),
        (Method::GET, ["query", cursor]) => next_page(inner, cursor),
        (Method::POST, ["jobs", "ingest"]) => create_job(inner, body),
        (Method::GET, ["jobs", "ingest"]) => {
            let records: Vec<Value> = inner.jobs.values().map(job_info).collect();
            Json(json!({"done": true, "records": records, "nextRecordsUrl": null})).into_response()
        }
        (Method::GET, ["jobs", "ingest", id]) => match inner.jobs.get_mut(*id) {
            Some(job) => {
                if job.state == "InProgress" {
                    if job.polls_left == 0 {
                        job.state = "JobComplete".into();
                    } else {
                        job.polls_left -= 1;
                    }
                }
                Json(job_info(job)).into_response()
            }
            None => not_found(),
        },
        (Method::PATCH, ["jobs", "ingest", id]) => patch_job(inner, id, body),
        (Method::DELETE, ["jobs", "ingest", id]) => match inner.jobs.remove(*id) {
            Some(_) => StatusCode::NO_CONTENT.into_response(),
            None => not_found(),
        },
        (Method::PUT, ["jobs", "ingest", id, "batches"]) => match inner.jobs.get_mut(*id) {
            Some(job) if job.state == "Open" => {
                job.data.push_str(&String::from_utf8_lossy(body));
                StatusCode::CREATED.into_response()
            }
            Some(job) => rest_error(StatusCode::CONFLICT, "INVALIDJOBSTATE", &format!("Job is in {} state; data can only be uploaded to an Open job", job.state)),
            None => not_found(),
        },
        (Method::GET, ["jobs", "ingest", id, which]) => job_results(inner, id, which),
        _ => not_found(),
    }
}

fn not_found() -> Response {
    rest_error(StatusCode::NOT_FOUND, "NOT_FOUND", "The requested resource does not exist")
}

fn describe(inner: &mut Inner, object: &str) -> Response {
    let Some(def) = inner.object(object) else { return not_found() };
    let fields: Vec<Value> = def
        .fields
        .iter()
        .map(|f| {
            let is_id = f.kind == FieldKind::Id;
            json!({
                "name": f.name, "label": f.name, "type": f.kind,
                "externalId": f.external_id, "idLookup": f.id_lookup, "unique": f.unique,
                "nillable": !f.required && !is_id, "createable": !is_id, "updateable": !is_id, "filterable": true,
            })
        })
        .collect();
    Json(json!({"name": def.name, "label": def.name, "keyPrefix": def.prefix, "createable": true, "updateable": true, "deletable": true, "queryable": true, "fields": fields}))
        .into_response()
}

fn collections(inner: &mut Inner, upsert: Option<(&str, &str)>, mode: Mode<'_>, body: &[u8]) -> Response {
    inner.stats.collection_requests += 1;
    let v = match json_body(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let all_or_none = v.get("allOrNone").and_then(Value::as_bool).unwrap_or(false);
    let Some(records) = v.get("records").and_then(Value::as_array) else {
        return rest_error(StatusCode::BAD_REQUEST, "JSON_PARSER_ERROR", "The request body needs `records`: a list of sObjects");
    };
    if records.len() > 200 {
        return rest_error(StatusCode::BAD_REQUEST, "EXCEEDED_ID_LIMIT", "record limit exceeded. Limit is 200");
    }
    let fixed = match upsert {
        Some((object, field)) => {
            let Some(def) = inner.object(object) else { return not_found() };
            match def.field(field) {
                Some(f) if f.external_id || f.id_lookup => {}
                Some(_) => return rest_error(StatusCode::BAD_REQUEST, "INVALID_FIELD", &format!("Field {field} is not an External ID or indexed field for {}", def.name)),
                None => return rest_error(StatusCode::NOT_FOUND, "NOT_FOUND", &format!("Provided external ID field does not exist or is not accessible: {field}")),
            }
            Some(def)
        }
        None => None,
    };
    // Each record's object; request-level errors first (as Salesforce parses before writing).
    let mut defs = Vec::with_capacity(records.len());
    for r in records {
        let Some(obj) = r.as_object() else {
            return rest_error(StatusCode::BAD_REQUEST, "JSON_PARSER_ERROR", "each record must be a JSON object");
        };
        let Some(ty) = obj.get("attributes").and_then(|a| a.get("type")).and_then(Value::as_str) else {
            return rest_error(StatusCode::BAD_REQUEST, "INVALID_TYPE", "Must send a concrete entity type.");
        };
        let def = match (&fixed, inner.object(ty)) {
            (Some(f), _) if !f.name.eq_ignore_ascii_case(ty) => {
                return rest_error(StatusCode::BAD_REQUEST, "INVALID_TYPE", &format!("sObject type '{ty}' does not match the URI's {}", f.name));
            }
            (_, Some(d)) => d,
            (_, None) => return rest_error(StatusCode::BAD_REQUEST, "INVALID_TYPE", &format!("sObject type '{ty}' is not supported.")),
        };
        if let Some(bad) = Inner::unknown_field(&def, obj.keys()) {
            return rest_error(StatusCode::BAD_REQUEST, "INVALID_FIELD", &format!("No such column '{bad}' on sobject of type {}", def.name));
        }
        defs.push(def);
    }
    // The same external id twice in one upsert request: each of them fails.
    let mut seen: HashMap<String, usize> = HashMap::new();
    if let Mode::Upsert(field) = mode {
        for r in records {
            if let Some((_, v)) = r.as_object().and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(field))) {
                *seen.entry(text_of(v).to_lowercase()).or_default() += 1;
            }
        }
    }
    let mut results = Vec::with_capacity(records.len());
    for (r, def) in records.iter().zip(&defs) {
        let rec = r.as_object().cloned().unwrap_or_default();
        let dup = match mode {
            Mode::Upsert(field) => rec.iter().find(|(k, _)| k.eq_ignore_ascii_case(field)).map(|(_, v)| text_of(v)).filter(|v| seen.get(&v.to_lowercase()).copied().unwrap_or(0) > 1),
            _ => None,
        };
        let res = match dup {
            Some(v) => {
                inner.stats.records_received += 1;
                inner.stats.records_failed += 1;
                Err(RecError::new("DUPLICATE_EXTERNAL_ID", format!("Duplicate external id specified: {v}"), &[]))
            }
            None if all_or_none && results.iter().any(|x: &Value| x["success"] == false) => {
                Err(RecError::new("ALL_OR_NONE_OPERATION_ROLLED_BACK", "Record rolled back because not all records were valid and the request was using AllOrNone header", &[]))
            }
            None => inner.write(def, mode, rec),
        };
        results.push(match res {
            Ok((id, created)) => match mode {
                Mode::Upsert(_) => json!({"id": id, "success": true, "errors": [], "created": created}),
                _ => json!({"id": id, "success": true, "errors": []}),
            },
            Err(e) => json!({"success": false, "errors": [e.json()]}),
        });
    }
    Json(Value::Array(results)).into_response()
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|p| p.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| form_decode(v)))
}

fn delete_ids(inner: &mut Inner, query: &str) -> Response {
    inner.stats.collection_requests += 1;
    let ids: Vec<String> = query_param(query, "ids").unwrap_or_default().split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
    if ids.is_empty() {
        return rest_error(StatusCode::BAD_REQUEST, "MISSING_ARGUMENT", "ids must be specified");
    }
    if ids.len() > 200 {
        return rest_error(StatusCode::BAD_REQUEST, "EXCEEDED_ID_LIMIT", "record limit exceeded. Limit is 200");
    }
    let mut results = Vec::new();
    for id in ids {
        inner.stats.records_received += 1;
        if let Some(e) = inner.lock_fault() {
            inner.stats.records_failed += 1;
            results.push(json!({"id": id, "success": false, "errors": [e.json()]}));
        } else if inner.remove(&id) {
            inner.stats.records_deleted += 1;
            results.push(json!({"id": id, "success": true, "errors": []}));
        } else {
            inner.stats.records_failed += 1;
            let e = if inner.deleted.contains(&id) {
                RecError::new("ENTITY_IS_DELETED", "entity is deleted", &[])
            } else {
                RecError::new("INVALID_CROSS_REFERENCE_KEY", format!("invalid cross reference id: {id}"), &[])
            };
            results.push(json!({"id": id, "success": false, "errors": [e.json()]}));
        }
    }
    Json(Value::Array(results)).into_response()
}

// ---------------------------------------------------------------------------------------------
// SOQL (the subset a sync needs)

struct Soql {
    fields: Vec<String>,
    object: String,
    filter: Option<(String, Vec<String>)>,
    limit: Option<usize>,
}

/// `SELECT a, b FROM Obj [WHERE f IN ('x', 'y') | WHERE f = 'x'] [LIMIT n]`.
fn parse_soql(q: &str) -> std::result::Result<Soql, String> {
    let re = Regex::new(r"(?is)^\s*SELECT\s+(.+?)\s+FROM\s+(\w+)(?:\s+WHERE\s+(\w+)\s*(?:IN\s*\((.*)\)|=\s*(.+?)))?(?:\s+LIMIT\s+(\d+))?\s*$").unwrap();
    let c = re.captures(q).ok_or_else(|| "the emulator understands SELECT fields FROM Object [WHERE field IN (...) | WHERE field = value] [LIMIT n]".to_string())?;
    let fields = c[1].split(',').map(|f| f.trim().to_string()).collect();
    let list = c.get(4).or(c.get(5)).map(|m| m.as_str());
    let filter = match (c.get(3), list) {
        (Some(f), Some(list)) => Some((f.as_str().to_string(), parse_literals(list)?)),
        _ => None,
    };
    Ok(Soql { fields, object: c[2].to_string(), filter, limit: c.get(6).and_then(|m| m.as_str().parse().ok()) })
}

fn parse_literals(list: &str) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = list.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        match chars.next() {
            None => break,
            Some('\'') => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('\\') => match chars.next() {
                            Some('n') => s.push('\n'),
                            Some('r') => s.push('\r'),
                            Some('t') => s.push('\t'),
                            Some(c) => s.push(c),
                            None => return Err("unterminated escape".into()),
                        },
                        Some('\'') => break,
                        Some(c) => s.push(c),
                        None => return Err("unterminated string literal".into()),
                    }
                }
                out.push(s);
            }
            Some(c) => {
                let mut s = String::from(c);
                while chars.peek().is_some_and(|c| *c != ',' && !c.is_whitespace()) {
                    s.push(chars.next().unwrap());
                }
                out.push(s);
            }
        }
    }
    Ok(out)
}

const QUERY_PAGE: usize = 2000;

fn soql(inner: &mut Inner, query: &str) -> Response {
    inner.stats.queries += 1;
    let q = query_param(query, "q").unwrap_or_default();
    let parsed = match parse_soql(&q) {
        Ok(p) => p,
        Err(e) => return rest_error(StatusCode::BAD_REQUEST, "MALFORMED_QUERY", &e),
    };
    let Some(def) = inner.object(&parsed.object) else {
        return rest_error(StatusCode::BAD_REQUEST, "INVALID_TYPE", &format!("sObject type '{}' is not supported.", parsed.object));
    };
    for f in parsed.fields.iter().chain(parsed.filter.iter().map(|(f, _)| f)) {
        if def.field(f).is_none() {
            return rest_error(StatusCode::BAD_REQUEST, "INVALID_FIELD", &format!("No such column '{f}' on entity '{}'", def.name));
        }
    }
    let ids: Vec<String> = match &parsed.filter {
        Some((field, values)) => {
            let mut ids = Vec::new();
            for v in values {
                for id in inner.find_ids(&def, field, v) {
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
            }
            ids
        }
        None => inner.tables.get(&def.name).map(|t| t.records.keys().cloned().collect()).unwrap_or_default(),
    };
    let ids: Vec<String> = ids.into_iter().take(parsed.limit.unwrap_or(usize::MAX)).collect();
    let table = inner.tables.get(&def.name);
    let records: Vec<Value> = ids
        .iter()
        .filter_map(|id| table.and_then(|t| t.records.get(id)))
        .map(|r| {
            let mut out = Map::new();
            let id = r.get("Id").map(text_of).unwrap_or_default();
            out.insert("attributes".into(), json!({"type": def.name, "url": format!("/services/data/v62.0/sobjects/{}/{id}", def.name)}));
            for f in &parsed.fields {
                let name = def.field(f).map(|d| d.name.clone()).unwrap_or_else(|| f.clone());
                out.insert(name.clone(), r.get(&name).cloned().unwrap_or(Value::Null));
            }
            Value::Object(out)
        })
        .collect();
    page(inner, records)
}

fn page(inner: &mut Inner, mut records: Vec<Value>) -> Response {
    let total = records.len();
    if records.len() <= QUERY_PAGE {
        return Json(json!({"totalSize": total, "done": true, "records": records})).into_response();
    }
    let rest = records.split_off(QUERY_PAGE);
    inner.next_id += 1;
    let cursor = format!("01gEMU{:09}-{}", inner.next_id, QUERY_PAGE);
    inner.cursors.insert(cursor.clone(), rest);
    Json(json!({"totalSize": total, "done": false, "nextRecordsUrl": format!("/services/data/v62.0/query/{cursor}"), "records": records})).into_response()
}

fn next_page(inner: &mut Inner, cursor: &str) -> Response {
    match inner.cursors.remove(cursor) {
        Some(records) => page(inner, records),
        None => rest_error(StatusCode::BAD_REQUEST, "INVALID_QUERY_LOCATOR", "invalid query locator"),
    }
}

// ---------------------------------------------------------------------------------------------
// Bulk API 2.0

fn job_info(job: &Job) -> Value {
    let mut v = json!({
        "id": job.id, "operation": job.operation, "object": job.object, "createdById": "005EMU000000001AAA",
        "createdDate": job.created, "systemModstamp": job.created, "state": job.state,
        "concurrencyMode": "Parallel", "contentType": "CSV", "apiVersion": 62.0, "jobType": "V2Ingest",
        "contentUrl": format!("services/data/v62.0/jobs/ingest/{}/batches", job.id),
        "lineEnding": job.line_ending, "columnDelimiter": "COMMA",
        "numberRecordsProcessed": job.processed, "numberRecordsFailed": job.failed, "retries": 0,
        "totalProcessingTime": 0, "apiActiveProcessingTime": 0, "apexProcessingTime": 0,
    });
    if let Some(e) = &job.external_id {
        v["externalIdFieldName"] = json!(e);
    }
    if let Some(e) = &job.error_message {
        v["errorMessage"] = json!(e);
    }
    v
}

fn create_job(inner: &mut Inner, body: &[u8]) -> Response {
    let v = match json_body(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let Some(def) = s("object").and_then(|o| inner.object(&o)) else {
        return rest_error(StatusCode::BAD_REQUEST, "INVALIDJOB", &format!("Unable to find object: {}", s("object").unwrap_or_default()));
    };
    let operation = s("operation").unwrap_or_default();
    if !matches!(operation.as_str(), "insert" | "update" | "upsert" | "delete" | "hardDelete") {
        return rest_error(StatusCode::BAD_REQUEST, "INVALIDJOB", &format!("Invalid operation: {operation}"));
    }
    let external_id = s("externalIdFieldName");
    if operation == "upsert" {
        match external_id.as_deref().and_then(|f| def.field(f)) {
            Some(f) if f.external_id || f.id_lookup => {}
            _ => return rest_error(StatusCode::BAD_REQUEST, "INVALIDJOB", &format!("External ID field {} is not valid for {}", external_id.unwrap_or_default(), def.name)),
        }
    }
    if s("contentType").is_some_and(|c| c != "CSV") {
        return rest_error(StatusCode::BAD_REQUEST, "INVALIDJOB", "contentType must be CSV");
    }
    if s("columnDelimiter").is_some_and(|c| c != "COMMA") {
        return rest_error(StatusCode::BAD_REQUEST, "INVALIDJOB", "the emulator supports columnDelimiter COMMA only");
    }
    let line_ending = s("lineEnding").unwrap_or_else(|| "LF".into());
    inner.next_id += 1;
    let id = format!("750EMU{:09}AAA", inner.next_id);
    inner.stats.bulk_jobs += 1;
    let job = Job {
        id: id.clone(),
        object: def.name.clone(),
        operation,
        external_id,
        line_ending,
        state: "Open".into(),
        data: String::new(),
        polls_left: inner.cfg.bulk_polls,
        error_message: None,
        processed: 0,
        failed: 0,
        successes: Vec::new(),
        failures: Vec::new(),
        header: Vec::new(),
        created: "2026-01-01T00:00:00.000+0000".into(),
    };
    let info = job_info(&job);
    inner.jobs.insert(id, job);
    Json(info).into_response()
}

fn patch_job(inner: &mut Inner, id: &str, body: &[u8]) -> Response {
    let v = match json_body(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let want = v.get("state").and_then(Value::as_str).unwrap_or("").to_string();
    let Some(state) = inner.jobs.get(id).map(|j| j.state.clone()) else { return not_found() };
    match (state.as_str(), want.as_str()) {
        ("Open", "UploadComplete") => process_job(inner, id),
        ("Open" | "UploadComplete" | "InProgress", "Aborted") => {
            if let Some(j) = inner.jobs.get_mut(id) {
                j.state = "Aborted".into();
            }
            inner.stats.bulk_jobs_aborted += 1;
        }
        _ => {
            return rest_error(StatusCode::BAD_REQUEST, "INVALIDJOBSTATE", &format!("cannot change the job from {state} to {want}"));
        }
    }
    Json(job_info(&inner.jobs[id])).into_response()
}

fn process_job(inner: &mut Inner, id: &str) {
    let mut job = inner.jobs.remove(id).expect("the caller checked the job");
    let def = inner.object(&job.object).expect("checked at creation");
    let fail = |job: &mut Job, msg: String| {
        job.state = "Failed".into();
        job.error_message = Some(msg);
    };
    match csv::parse(&job.data) {
        Err(e) => fail(&mut job, format!("InvalidBatch : Failed to parse CSV: {e}")),
        Ok(rows) if rows.is_empty() => fail(&mut job, "InvalidBatch : Empty CSV data".into()),
        Ok(mut rows) => {
            let header = rows.remove(0);
            let unknown = header.iter().find(|h| def.field(h).is_none());
            let key_missing = match job.operation.as_str() {
                "upsert" => job.external_id.as_ref().filter(|e| !header.iter().any(|h| h.eq_ignore_ascii_case(e))).cloned(),
                "update" | "delete" | "hardDelete" => (!header.iter().any(|h| h.eq_ignore_ascii_case("id"))).then(|| "Id".to_string()),
                _ => None,
            };
            if let Some(u) = unknown {
                fail(&mut job, format!("InvalidBatch : Field name not found : {u}"));
            } else if let Some(k) = key_missing {
                let msg = format!("InvalidBatch : The {k} field is required in the header for {}", job.operation);
                fail(&mut job, msg);
            } else if let Some(i) = rows.iter().position(|r| r.len() != header.len()) {
                let msg = format!("InvalidBatch : Wrong number of columns in row {}: {} instead of {}", i + 2, rows[i].len(), header.len());
                fail(&mut job, msg);
            } else {
                let mut dup: HashMap<String, usize> = HashMap::new();
                if let Some(e) = job.external_id.as_ref().filter(|_| job.operation == "upsert") {
                    let col = header.iter().position(|h| h.eq_ignore_ascii_case(e)).unwrap();
                    for r in &rows {
                        *dup.entry(r[col].to_lowercase()).or_default() += 1;
                    }
                }
                for cells in rows {
                    let mut rec = Map::new();
                    for (h, c) in header.iter().zip(&cells) {
                        match c.as_str() {
                            "" => {}
                            "#N/A" => {
                                rec.insert(h.clone(), Value::Null);
                            }
                            _ => {
                                rec.insert(h.clone(), Value::String(c.clone()));
                            }
                        }
                    }
                    job.processed += 1;
                    let ext = job.external_id.clone();
                    let res = match job.operation.as_str() {
                        "delete" | "hardDelete" => {
                            inner.stats.records_received += 1;
                            let rid = rec.iter().find(|(k, _)| k.eq_ignore_ascii_case("id")).map(|(_, v)| text_of(v)).unwrap_or_default();
                            match inner.lock_fault() {
                                Some(e) => Err(e),
                                None if inner.remove(&rid) => {
                                    inner.stats.records_deleted += 1;
                                    Ok((rid, false))
                                }
                                None if inner.deleted.contains(&rid) => Err(RecError::new("ENTITY_IS_DELETED", "entity is deleted", &[])),
                                None => Err(RecError::new("INVALID_CROSS_REFERENCE_KEY", format!("invalid cross reference id: {rid}"), &[])),
                            }
                        }
                        "upsert" => {
                            let field = ext.as_deref().unwrap_or("");
                            let key = rec.iter().find(|(k, _)| k.eq_ignore_ascii_case(field)).map(|(_, v)| text_of(v).to_lowercase()).unwrap_or_default();
                            if dup.get(&key).copied().unwrap_or(0) > 1 {
                                inner.stats.records_received += 1;
                                inner.stats.records_failed += 1;
                                Err(RecError::new("DUPLICATE_EXTERNAL_ID", format!("Duplicate external id specified: {key}"), &[]))
                            } else {
                                inner.write(&def, Mode::Upsert(field), rec)
                            }
                        }
                        "update" => inner.write(&def, Mode::Update, rec),
                        _ => inner.write(&def, Mode::Insert, rec),
                    };
                    match res {
                        Ok((rid, created)) => job.successes.push((rid, created.to_string(), cells)),
                        Err(e) => {
                            if matches!(job.operation.as_str(), "delete" | "hardDelete") {
                                inner.stats.records_failed += 1;
                            }
                            job.failed += 1;
                            job.failures.push((String::new(), e.bulk(), cells));
                        }
                    }
                }
                job.header = header;
                job.state = "InProgress".into();
                if job.polls_left == 0 {
                    job.state = "JobComplete".into();
                }
                inner.stats.bulk_jobs_completed += 1;
            }
        }
    }
    job.data.clear();
    inner.jobs.insert(id.to_string(), job);
}

fn job_results(inner: &mut Inner, id: &str, which: &str) -> Response {
    let Some(job) = inner.jobs.get(id) else { return not_found() };
    if !matches!(job.state.as_str(), "JobComplete" | "Failed" | "Aborted") {
        return rest_error(StatusCode::CONFLICT, "INVALIDJOBSTATE", &format!("Job {id} is {}; results are available once it is complete", job.state));
    }
    // Every field quoted, as Salesforce writes results; rows in reverse order.
    let quoted = |out: &mut String, fields: &[&str]| {
        let line: Vec<String> = fields.iter().map(|f| format!("\"{}\"", f.replace('"', "\"\""))).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    };
    let mut out = String::new();
    let head: Vec<&str> = job.header.iter().map(String::as_str).collect();
    match which {
        "successfulResults" => {
            let mut h = vec!["sf__Id", "sf__Created"];
            h.extend(&head);
            quoted(&mut out, &h);
            for (rid, created, cells) in job.successes.iter().rev() {
                let mut row = vec![rid.as_str(), created.as_str()];
                row.extend(cells.iter().map(String::as_str));
                quoted(&mut out, &row);
            }
        }
        "failedResults" => {
            let mut h = vec!["sf__Id", "sf__Error"];
            h.extend(&head);
            quoted(&mut out, &h);
            for (rid, err, cells) in job.failures.iter().rev() {
                let mut row = vec![rid.as_str(), err.as_str()];
                row.extend(cells.iter().map(String::as_str));
                quoted(&mut out, &row);
            }
        }
        "unprocessedrecords" => {
            quoted(&mut out, &head);
        }
        _ => return not_found(),
    }
    ([(axum::http::header::CONTENT_TYPE, "text/csv")], out).into_response()
}

// ---------------------------------------------------------------------------------------------
// Read-back and control

async fn records_of(State(s): State<Shared>, Path(object): Path<String>) -> Response {
    let inner = lock(&s);
    let Some(def) = inner.object(&object) else { return not_found() };
    let records: Vec<&Map<String, Value>> = inner.tables.get(&def.name).map(|t| t.records.values().collect()).unwrap_or_default();
    Json(json!({"object": def.name, "count": records.len(), "records": records})).into_response()
}

async fn stats(State(s): State<Shared>) -> Json<Value> {
    let inner = lock(&s);
    Json(json!({"stats": snapshot(&inner), "faults": inner.cfg.faults, "daily_limit": inner.cfg.daily_limit}))
}

fn snapshot(inner: &Inner) -> Stats {
    Stats { stored: inner.tables.values().map(|t| t.records.len() as u64).sum(), ..inner.stats.clone() }
}

fn clear(inner: &mut Inner) {
    inner.stats = Stats::default();
    inner.tables.clear();
    inner.deleted.clear();
    inner.jobs.clear();
    inner.cursors.clear();
    inner.record_counter = 0;
    inner.calls = 0;
    inner.arrivals.clear();
}

async fn reset(State(s): State<Shared>) -> StatusCode {
    clear(&mut lock(&s));
    StatusCode::NO_CONTENT
}

async fn put_faults(State(s): State<Shared>, Json(f): Json<Faults>) -> Json<Value> {
    let mut inner = lock(&s);
    inner.cfg.faults = f;
    Json(json!({"faults": inner.cfg.faults}))
}

pub struct SalesforceEmulator {
    pub url: String,
    pub addr: SocketAddr,
    shared: Shared,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl SalesforceEmulator {
    /// Start serving on `addr` (port 0 picks a free port) in the current tokio runtime.
    pub async fn start(addr: SocketAddr, cfg: SalesforceEmulatorConfig) -> Result<SalesforceEmulator> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::other(format!("the salesforce emulator cannot listen on {addr}")).with_source(e))?;
        let addr = listener.local_addr().map_err(|e| Error::other("cannot read the emulator address").with_source(e))?;
        let url = format!("http://{addr}");
        let shared: Shared = Arc::new(Mutex::new(Inner {
            base_url: url.clone(),
            cfg,
            stats: Stats::default(),
            tables: HashMap::new(),
            deleted: Default::default(),
            tokens: HashMap::new(),
            next_id: 0,
            jobs: BTreeMap::new(),
            cursors: HashMap::new(),
            record_counter: 0,
            calls: 0,
            arrivals: Vec::new(),
        }));
        let app = Router::new()
            .route("/services/oauth2/token", post(token))
            .route("/services/data/{*rest}", any(data))
            .route("/_emulator/records/{object}", get(records_of))
            .route("/_emulator/stats", get(stats))
            .route("/_emulator/reset", post(reset))
            .route("/_emulator/faults", put(put_faults))
            .layer(DefaultBodyLimit::max(160 * 1024 * 1024))
            .with_state(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(SalesforceEmulator { url, addr, shared, shutdown: Some(tx), task: Some(task) })
    }

    pub fn stats(&self) -> Stats {
        snapshot(&lock(&self.shared))
    }

    /// The stored records of `object`, in creation order (each with its `Id`).
    pub fn records(&self, object: &str) -> Vec<Map<String, Value>> {
        let inner = lock(&self.shared);
        let name = inner.object(object).map(|d| d.name).unwrap_or_else(|| object.to_string());
        inner.tables.get(&name).map(|t| t.records.values().cloned().collect()).unwrap_or_default()
    }

    /// The stored record of `object` whose `field` has `value` (case-insensitive), if one.
    pub fn record_by(&self, object: &str, field: &str, value: &str) -> Option<Map<String, Value>> {
        self.records(object).into_iter().find(|r| r.iter().any(|(k, v)| k.eq_ignore_ascii_case(field) && text_of(v).eq_ignore_ascii_case(value)))
    }

    /// Store a record as if someone created it in Salesforce (checks skipped); its Id.
    pub fn insert(&self, object: &str, fields: Map<String, Value>) -> String {
        let mut inner = lock(&self.shared);
        let def = inner.object(object).expect("a configured object");
        let id = inner.new_id(&def);
        let mut rec = fields;
        rec.insert("Id".into(), Value::String(id.clone()));
        inner.store(&def, &id, rec);
        id
    }

    pub fn faults(&self) -> Faults {
        lock(&self.shared).cfg.faults.clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        lock(&self.shared).cfg.faults = faults;
    }

    pub fn set_rules(&self, rules: Vec<ValidationRule>) {
        lock(&self.shared).cfg.rules = rules;
    }

    /// Set the day's usage so far, as if other integrations had spent it.
    pub fn set_api_usage(&self, used: u64) {
        lock(&self.shared).stats.api_usage = used;
    }

    /// When each authenticated data call arrived, in order.
    pub fn arrivals(&self) -> Vec<std::time::Instant> {
        lock(&self.shared).arrivals.clone()
    }

    /// Change the daily allocation (usage so far is kept).
    pub fn set_daily_limit(&self, limit: u64) {
        lock(&self.shared).cfg.daily_limit = limit;
    }

    /// Forget records, jobs, counters and the day's usage (issued tokens stay valid).
    pub fn reset(&self) {
        clear(&mut lock(&self.shared));
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CLI

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Port; 0 picks a free one. The URL is printed as the first line of output.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// The connected app's consumer key the token endpoint accepts.
    #[arg(long, default_value = "test-client-id")]
    pub client_id: String,
    /// The consumer secret the token endpoint accepts.
    #[arg(long, default_value = "test-client-secret")]
    pub client_secret: String,
    /// The refresh token the token endpoint accepts.
    #[arg(long, default_value = "test-refresh-token")]
    pub refresh_token: String,
    /// Refuse the client-credentials flow.
    #[arg(long)]
    pub no_client_credentials: bool,
    /// Data calls allowed per day (Sforce-Limit-Info; then 403 REQUEST_LIMIT_EXCEEDED).
    #[arg(long, default_value_t = 100_000)]
    pub daily_limit: u64,
    /// Each access token is refused (401 INVALID_SESSION_ID) after this many data calls.
    #[arg(long)]
    pub expire_tokens_after: Option<u64>,
    /// Share of data calls answered 503 SERVER_UNAVAILABLE (0 to 1, spread evenly).
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Share of records answered UNABLE_TO_LOCK_ROW (0 to 1, spread evenly).
    #[arg(long, default_value_t = 0.0)]
    pub lock_rate: f64,
    /// The status --fail-rate answers with (503 SERVER_UNAVAILABLE by default).
    #[arg(long, default_value_t = 503)]
    pub fail_status: u16,
    /// Milliseconds to wait before answering each data call.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Every Nth data call hangs for --stall-seconds before it is answered (0: never).
    #[arg(long, default_value_t = 0)]
    pub stall_every: u64,
    /// How long a stalled data call hangs, in seconds.
    #[arg(long, default_value_t = 30.0)]
    pub stall_seconds: f64,
    /// A throttling storm: the next N data calls are refused with 403 REQUEST_LIMIT_EXCEEDED
    /// "ConcurrentPerOrgLongTxn Limit exceeded." (Salesforce's slow-down answer; it never answers 429).
    #[arg(long, default_value_t = 0)]
    pub storm_next: u64,
    /// The next N data calls are refused with 403 REQUEST_LIMIT_EXCEEDED "TotalRequests Limit
    /// exceeded." (the daily allocation, whatever the usage says).
    #[arg(long, default_value_t = 0)]
    pub request_limit_next: u64,
    /// The next N data calls are answered 400 with an error body quoting the caller's bearer token.
    #[arg(long, default_value_t = 0)]
    pub echo_token_next: u64,
    /// Validation rule `[OBJECT.]FIELD=REGEX`: matching records fail with
    /// FIELD_CUSTOM_VALIDATION_EXCEPTION (repeatable).
    #[arg(long = "rule")]
    pub rules: Vec<String>,
    /// An extra sObject `Name=Field*,Other!,Amount#,Flag?,Mail@` (`*` External ID, `!` required,
    /// `#` number, `?` boolean, `@` email; repeatable). Contact, Lead and Account always exist.
    #[arg(long = "object")]
    pub objects: Vec<String>,
    /// Answers `InProgress` to this many polls of a Bulk API job before `JobComplete`.
    #[arg(long, default_value_t = 1)]
    pub bulk_polls: u32,
}

pub async fn run_cli(args: &Args) -> Result<i32> {
    for (name, v) in [("--fail-rate", args.fail_rate), ("--lock-rate", args.lock_rate)] {
        if !(0.0..=1.0).contains(&v) {
            return Err(Error::other(format!("{name} must be between 0 and 1")));
        }
    }
    if !(args.stall_seconds.is_finite() && args.stall_seconds >= 0.0) {
        return Err(Error::other("--stall-seconds must be a number of seconds, 0 or more"));
    }
    if StatusCode::from_u16(args.fail_status).is_err() {
        return Err(Error::other("--fail-status must be an HTTP status code (100 to 999)"));
    }
    let mut objects = default_objects();
    for (i, spec) in args.objects.iter().enumerate() {
        objects.push(ObjectDef::parse(spec, &format!("a{:02}", i % 100))?);
    }
    let rules = args.rules.iter().map(|r| ValidationRule::parse(r)).collect::<Result<Vec<_>>>()?;
    let cfg = SalesforceEmulatorConfig {
        client_id: args.client_id.clone(),
        client_secret: args.client_secret.clone(),
        refresh_token: args.refresh_token.clone(),
        client_credentials: !args.no_client_credentials,
        daily_limit: args.daily_limit,
        objects,
        rules,
        faults: Faults {
            fail_rate: args.fail_rate,
            lock_rate: args.lock_rate,
            fail_status: args.fail_status,
            latency_ms: args.latency_ms,
            expire_tokens_after: args.expire_tokens_after,
            stall_every: args.stall_every,
            stall_seconds: args.stall_seconds,
            concurrent_limit_next: args.storm_next,
            request_limit_next: args.request_limit_next,
            echo_token_next: args.echo_token_next,
            ..Default::default()
        },
        bulk_polls: args.bulk_polls,
    };
    let emu = SalesforceEmulator::start(SocketAddr::new(args.host, args.port), cfg).await?;
    let banner = format!(
        "salesforce emulator listening on {url}: set login_url to it; GET {url}/_emulator/records/Contact and {url}/_emulator/stats",
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
    fn soql_subset() {
        let q = parse_soql("SELECT Id, External_Id__c FROM Contact WHERE External_Id__c IN ('a@x.io','O\\'Brien', 'c')").unwrap();
        assert_eq!(q.object, "Contact");
        assert_eq!(q.fields, ["Id", "External_Id__c"]);
        assert_eq!(q.filter.unwrap().1, ["a@x.io", "O'Brien", "c"]);
        let q = parse_soql("select Id from Lead where Email = 'a@b.c' limit 5").unwrap();
        assert_eq!((q.filter.unwrap().1, q.limit), (vec!["a@b.c".to_string()], Some(5)));
        assert!(parse_soql("DELETE FROM Contact").is_err());
    }

    #[test]
    fn forms_and_specs() {
        let f = parse_form("grant_type=refresh_token&refresh_token=a%2Bb%3D&client_id=x+y");
        assert_eq!(f["refresh_token"], "a+b=");
        assert_eq!(f["client_id"], "x y");
        let d = ObjectDef::parse("Thing__c=Ext__c*,Name!,Amount__c#,Active__c?", "a00").unwrap();
        assert!(d.field("ext__c").unwrap().external_id);
        assert!(d.field("Name").unwrap().required);
        assert_eq!(d.field("Amount__c").unwrap().kind, FieldKind::Double);
        assert!(d.field("Id").is_some());
    }
}
