//! Salesforce sObjects, through REST sObject Collections (default) or Bulk API 2.0.
//!
//! **Authentication.** OAuth 2.0 against `{login_url}/services/oauth2/token`: the refresh-token
//! flow when `refresh_token` is set, else the client-credentials flow (the connected app needs
//! a Run As user). The answer's `access_token` and `instance_url` are kept for the run; every
//! data call goes to `{instance_url}/services/data/{api_version}/…`. An answer `401
//! INVALID_SESSION_ID` (expired or revoked session) gets one new token and the request is sent
//! once more; a token endpoint that refuses the grant (`invalid_grant`, `invalid_client`) fails
//! the run with what to fix. No message ever holds a credential or a token.
//!
//! **Writing (`api: collections`).** Up to 200 records per request (default batch 200), with
//! `allOrNone: false`, so that each record succeeds or fails alone:
//! - upsert / mirror: `PATCH composite/sobjects/{object}/{identifier field}`;
//! - create / append: `POST composite/sobjects`;
//! - update: `PATCH composite/sobjects` with each record's `Id`. When the identifier is not `Id`
//!   the Ids are first looked up with a SOQL query (`SELECT Id, {field} FROM {object} WHERE
//!   {field} IN (…)`); a record nobody has is rejected, never created;
//! - delete (mirror's removals): the Ids are looked up the same way, then `DELETE
//!   composite/sobjects?ids=…`; a record already gone counts as deleted.
//!
//! The per-record results (`[{id, success, created, errors: [{statusCode, message, fields}]}]`,
//! in input order) become one outcome per record: `UNABLE_TO_LOCK_ROW` (and other passing
//! conditions) is sent again by the delivery layer; any other error rejects the record with
//! `STATUS_CODE: message`.
//!
//! **Writing (`api: bulk`).** Each batch (default 10,000 records, at most 100,000 and 100 MB of
//! CSV) is one Bulk API 2.0 ingest job: create the job (`upsert` by the identifier field,
//! `insert`, `update` or `delete` by Id), upload the CSV, close it (`UploadComplete`), poll it
//! (every 0.2 s growing to 5 s) until `JobComplete`, then read `successfulResults` and
//! `failedResults` and match them to the records by the identifier column (results come in no
//! particular order); a record found in neither is rejected ("no result"). Nulls are written
//! as `#N/A`, which clears the field; an empty text leaves the field as it is (Bulk API's rule).
//! The delivery `timeout` (default 10 minutes here) bounds the whole job: a job still running
//! then is aborted and retried (upserts, updates, deletes) or fails the run (creates, which a
//! retry could duplicate). A job that `Failed` as a whole fails the run with its message.
//!
//! **Answers as a whole.** `Sforce-Limit-Info: api-usage=N/M` is read on every answer: the
//! org's daily allocation (rolling 24 h, shared by every integration). Once N passes 90 % of M,
//! each reply carries a rate hint that spreads the M − N requests left over 24 h (the rolling
//! window), which the delivery layer applies as a tighter pace, so the run slows down rather
//! than spend the org's last requests; once N reaches M the run fails before sending more; `403 REQUEST_LIMIT_EXCEEDED` "TotalRequests" fails it too (the
//! allocation frees up over the rolling window), while the "ConcurrentPerOrgLongTxn" variant is
//! a slow-down (retried with backoff). 5xx (`SERVER_UNAVAILABLE`), timeouts and a request-wide
//! `UNABLE_TO_LOCK_ROW` are retried. `INVALID_FIELD`, `INVALID_TYPE`, `NOT_FOUND` (a wrong
//! object, field or mapping: no batch could succeed) and 403s (permissions) fail the run; any
//! other 4xx refuses the batch, which the delivery layer splits to isolate the records at fault.
//!
//! **Limits and defaults.** Collections: 200 records per request, 4 requests in flight, 120 s
//! per request, unpaced (Salesforce's limit is the daily allocation, which is org-wide; pace
//! with `rate_limit` to leave room for other integrations). Bulk: one job per batch, 2 jobs in
//! flight. Below 90 % of the org's allocation it is not turned into pacing: spreading a whole
//! daily budget evenly would slow every run to about one request per second.
//!
//! **Secrets.** Every message and rejection reason leaving this destination has the client id
//! and secret, the refresh token and every access token issued in this run (the current one
//! and the ones it replaced) masked as `***`: they are only known here, at run time.

pub mod csv;
mod bulk;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};

use super::{json_size, transport_error, BuildContext, Destination, Limits, Operation, OutRecord, Outcome, RateInfo, Reply, SendError};
use crate::config::destinations::salesforce::SalesforceApi;
use crate::config::{redact_url, Behavior, SalesforceConfig, Secret};
use crate::error::Result;

pub async fn build(ctx: &BuildContext<'_>, cfg: &SalesforceConfig) -> Result<Arc<dyn Destination>> {
    Ok(Arc::new(Salesforce::new(ctx, cfg)))
}

/// An access token and where to use it.
struct Token {
    access: Secret,
    instance_url: String,
    /// Counts the tokens fetched in this run, so that concurrent 401s refresh once.
    generation: u64,
}

/// An HTTP answer from the data API (any status but a second 401).
struct Answer {
    status: StatusCode,
    body: Bytes,
}

pub struct Salesforce {
    name: String,
    object: String,
    /// The field that identifies records (`primary_identifier.to`).
    id_field: String,
    /// The identifier is the record `Id` itself.
    by_record_id: bool,
    /// Mapped fields with their source column (for `check`).
    fields: Vec<(String, String)>,
    behavior: Behavior,
    api: SalesforceApi,
    version: String,
    login_url: String,
    client_id: Secret,
    client_secret: Secret,
    refresh_token: Option<Secret>,
    timeout: Duration,
    client: reqwest::Client,
    token: tokio::sync::Mutex<Option<Arc<Token>>>,
    generations: AtomicU64,
    /// Set once an answer showed the daily allocation spent: the message that fails the run.
    exhausted: Mutex<Option<String>>,
    warned_usage: AtomicBool,
    /// The pace the latest `Sforce-Limit-Info` asks for (past 90 % of the allocation).
    pace: Mutex<Option<RateInfo>>,
    /// Access tokens issued in this run (the current one last), masked in every message.
    issued: Mutex<Vec<Secret>>,
}

/// Share of the daily allocation (numerator, denominator) from which the rest is paced.
const PACE_FROM: (u64, u64) = (9, 10);
/// Salesforce's allocation window (rolling).
const ALLOCATION_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// Access tokens remembered for masking (a run refreshes rarely; this bounds a pathological one).
const MAX_ISSUED: usize = 16;

/// The pace for `used` of `max` daily requests: none below 90 %; past it, the requests left
/// spread over the rolling 24 h window.
fn allocation_pace(used: u64, max: u64) -> Option<RateInfo> {
    if max == 0 || used >= max || used.saturating_mul(PACE_FROM.1) < max.saturating_mul(PACE_FROM.0) {
        return None;
    }
    Some(RateInfo { limit: Some(max - used), remaining: None, window: Some(ALLOCATION_WINDOW) })
}

/// One error of a REST answer: `errorCode` (request errors) or `statusCode` (record errors).
#[derive(Debug, Clone, PartialEq)]
struct SfError {
    code: String,
    message: String,
    fields: Vec<String>,
}

impl SfError {
    fn text(&self) -> String {
        let mut s = format!("{}: {}", self.code, self.message);
        if !self.fields.is_empty() && !self.fields.iter().all(|f| self.message.contains(f.as_str())) {
            s.push_str(&format!(" (fields: {})", self.fields.join(", ")));
        }
        s
    }
}

fn parse_errors(v: &Value) -> Vec<SfError> {
    let list = match v {
        Value::Array(items) => items.as_slice(),
        Value::Object(_) => std::slice::from_ref(v),
        _ => &[],
    };
    list.iter()
        .filter_map(|e| {
            let code = e.get("statusCode").or_else(|| e.get("errorCode")).and_then(Value::as_str)?;
            Some(SfError {
                code: code.to_string(),
                message: e.get("message").and_then(Value::as_str).unwrap_or("").to_string(),
                fields: e.get("fields").and_then(Value::as_array).map(|f| f.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default(),
            })
        })
        .collect()
}

/// A record error Salesforce expects to pass (a lock, a rolled-back neighbour): sent again.
fn is_passing(code: &str, message: &str) -> bool {
    matches!(code, "UNABLE_TO_LOCK_ROW" | "ALL_OR_NONE_OPERATION_ROLLED_BACK" | "REQUEST_RUNNING_TOO_LONG" | "SERVER_UNAVAILABLE")
        || message.contains("UNABLE_TO_LOCK_ROW")
}

/// A record error meaning the record is not there (deletes count it as done).
fn is_gone(code: &str) -> bool {
    matches!(code, "ENTITY_IS_DELETED" | "INVALID_CROSS_REFERENCE_KEY" | "NOT_FOUND")
}

/// One record's outcome from its errors.
fn outcome_of(errors: &[SfError]) -> Outcome {
    if errors.is_empty() {
        return Outcome::Rejected("Salesforce reported a failure without an error".into());
    }
    let text = errors.iter().map(SfError::text).collect::<Vec<_>>().join("; ");
    if errors.iter().all(|e| is_passing(&e.code, &e.message)) { Outcome::Retry(text) } else { Outcome::Rejected(text) }
}

/// Per-record results of an sObject Collections call, in input order.
fn parse_results(body: &[u8], n: usize, delete: bool) -> std::result::Result<Vec<Outcome>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let Some(items) = v.as_array() else {
        return Err("the answer is not a list of results".into());
    };
    Ok((0..n)
        .map(|i| match items.get(i) {
            None => Outcome::Rejected("Salesforce returned no result for this record".into()),
            Some(r) if r.get("success").and_then(Value::as_bool) == Some(true) => Outcome::Accepted,
            Some(r) => {
                let errors = r.get("errors").map(parse_errors).unwrap_or_default();
                if delete && !errors.is_empty() && errors.iter().all(|e| is_gone(&e.code)) { Outcome::Accepted } else { outcome_of(&errors) }
            }
        })
        .collect())
}

/// `api-usage=N/M` from `Sforce-Limit-Info`.
fn api_usage(headers: &HeaderMap) -> Option<(u64, u64)> {
    let text = headers.get("sforce-limit-info")?.to_str().ok()?;
    let part = text.split([';', ',']).map(str::trim).find_map(|p| p.strip_prefix("api-usage="))?;
    let (used, max) = part.split_once('/')?;
    Some((used.trim().parse().ok()?, max.trim().parse().ok()?))
}

/// A value as CSV text / query literal source: text as is, numbers and booleans as written.
pub(crate) fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A SOQL literal for a value of the identifier field.
fn soql_literal(v: Option<&Value>, fallback: &str) -> String {
    match v {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        other => {
            let text = match other {
                Some(v) => value_text(v),
                None => fallback.to_string(),
            };
            let mut s = String::with_capacity(text.len() + 2);
            s.push('\'');
            for c in text.chars() {
                match c {
                    '\\' => s.push_str("\\\\"),
                    '\'' => s.push_str("\\'"),
                    '\n' => s.push_str("\\n"),
                    '\r' => s.push_str("\\r"),
                    '\t' => s.push_str("\\t"),
                    c => s.push(c),
                }
            }
            s.push('\'');
            s
        }
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// How long a query URL may grow before the values are split over several queries (Salesforce
/// refuses URIs over 16,384 bytes).
const MAX_QUERY_URL: usize = 12_000;

impl Salesforce {
    pub fn new(ctx: &BuildContext<'_>, cfg: &SalesforceConfig) -> Self {
        let sync = ctx.sync;
        let id_field = sync.primary_identifier.to.clone();
        let default_timeout = match cfg.api {
            SalesforceApi::Collections => Duration::from_secs(120),
            SalesforceApi::Bulk => Duration::from_secs(600),
        };
        Salesforce {
            name: ctx.config.name.clone(),
            // Validated at load time: a salesforce sync names its object.
            object: sync.object.clone().unwrap_or_default(),
            by_record_id: id_field.eq_ignore_ascii_case("id"),
            id_field,
            fields: sync.mappings.iter().map(|m| (m.to.clone(), m.column().map(str::to_string).unwrap_or_else(|| "a constant".into()))).collect(),
            behavior: sync.behavior,
            api: cfg.api,
            version: cfg.api_version.clone(),
            login_url: cfg.login_url.trim_end_matches('/').to_string(),
            client_id: cfg.client_id.clone(),
            client_secret: cfg.client_secret.clone(),
            refresh_token: cfg.refresh_token.clone(),
            timeout: ctx.config.delivery.timeout.unwrap_or(default_timeout),
            client: ctx.client.clone(),
            token: tokio::sync::Mutex::new(None),
            generations: AtomicU64::new(0),
            exhausted: Mutex::new(None),
            warned_usage: AtomicBool::new(false),
            pace: Mutex::new(None),
            issued: Mutex::new(Vec::new()),
        }
    }

    /// Remove every credential from a text that holds words of a remote answer: the configured
    /// ones, `token` and every access token issued in this run.
    fn scrub(&self, text: String, token: Option<&Token>) -> String {
        let mut secrets: Vec<String> = [Some(&self.client_id), Some(&self.client_secret), self.refresh_token.as_ref(), token.map(|t| &t.access)]
            .into_iter()
            .flatten()
            .map(|s| s.expose().to_string())
            .collect();
        secrets.extend(self.issued.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|s| s.expose().to_string()));
        // Longest first, so that a secret holding another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let mut out = text;
        for s in &secrets {
            if s.len() >= 4 && out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }

    fn scrub_in_place(&self, text: &mut String) {
        *text = self.scrub(std::mem::take(text), None);
    }

    /// The same error with every credential masked.
    fn scrub_error(&self, mut e: SendError) -> SendError {
        match &mut e {
            SendError::RateLimited { message, .. } | SendError::Transient { message, .. } | SendError::Fatal { message } | SendError::BatchRejected { message } => {
                self.scrub_in_place(message)
            }
        }
        e
    }

    // -----------------------------------------------------------------------------------------
    // OAuth

    async fn fetch_token(&self) -> std::result::Result<Token, SendError> {
        let url = format!("{}/services/oauth2/token", self.login_url);
        let mut body = String::new();
        let flow = match &self.refresh_token {
            Some(rt) => {
                body.push_str("grant_type=refresh_token&refresh_token=");
                body.push_str(&form_encode(rt.expose()));
                "refresh-token"
            }
            None => {
                body.push_str("grant_type=client_credentials");
                "client-credentials"
            }
        };
        body.push_str("&client_id=");
        body.push_str(&form_encode(self.client_id.expose()));
        body.push_str("&client_secret=");
        body.push_str(&form_encode(self.client_secret.expose()));
        let resp = self
            .client
            .post(&url)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .timeout(self.timeout.min(Duration::from_secs(60)))
            .body(body)
            .send()
            .await
            .map_err(|e| match transport_error(&e.without_url(), self.timeout) {
                SendError::Transient { message, retry_after } => {
                    SendError::Transient { message: format!("OAuth token request to {}: {message}", redact_url(&url)), retry_after }
                }
                other => other,
            })?;
        let status = resp.status();
        let bytes = resp.bytes().await.unwrap_or_default();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            let access = v.get("access_token").and_then(Value::as_str);
            let instance = v.get("instance_url").and_then(Value::as_str);
            return match (access, instance) {
                (Some(a), Some(i)) if !a.is_empty() && reqwest::Url::parse(i).is_ok() => Ok(Token {
                    access: {
                        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
                        if issued.len() >= MAX_ISSUED {
                            issued.remove(0);
                        }
                        issued.push(Secret::new(a));
                        Secret::new(a)
                    },
                    instance_url: i.trim_end_matches('/').to_string(),
                    generation: self.generations.fetch_add(1, Ordering::Relaxed) + 1,
                }),
                _ => Err(SendError::Fatal {
                    message: format!("the OAuth token endpoint {} answered without `access_token` and `instance_url`; check `login_url`", redact_url(&url)),
                }),
            };
        }
        let error = v.get("error").and_then(Value::as_str).unwrap_or("").to_string();
        let desc = v.get("error_description").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| super::error_text(&bytes));
        let said = self.scrub(format!("HTTP {} {error}: {desc}", status.as_u16()), None);
        let code = status.as_u16();
        if code == 429 || code >= 500 {
            return Err(SendError::Transient { message: format!("OAuth token request to {}: {said}", redact_url(&url)), retry_after: None });
        }
        let what = match (error.as_str(), flow) {
            ("invalid_grant", "refresh-token") => "Salesforce refused the refresh token (revoked, expired, or issued for another connected app or org); authorize the connected app again and update the environment variable behind `refresh_token`".to_string(),
            ("invalid_grant", _) => "Salesforce refused the client-credentials grant; enable the client credentials flow on the connected app and give it a Run As user, or set `refresh_token`".to_string(),
            ("invalid_client_id" | "invalid_client" | "unauthorized_client", _) => "Salesforce refused the connected app's credentials; check the environment variables behind `client_id` and `client_secret` (and that `login_url` is the org's: sandboxes use https://test.salesforce.com)".to_string(),
            _ => format!("the {flow} token request failed; check `login_url` and the connected app's credentials"),
        };
        Err(SendError::Fatal { message: format!("{what} ({said})") })
    }

    /// The current token, fetched on first use.
    async fn token(&self) -> std::result::Result<Arc<Token>, SendError> {
        let mut guard = self.token.lock().await;
        if let Some(t) = guard.as_ref() {
            return Ok(t.clone());
        }
        let t = Arc::new(self.fetch_token().await?);
        *guard = Some(t.clone());
        Ok(t)
    }

    /// A new token in place of `stale` (unless another request replaced it already).
    async fn refresh(&self, stale: &Token) -> std::result::Result<Arc<Token>, SendError> {
        let mut guard = self.token.lock().await;
        if let Some(t) = guard.as_ref() {
            if t.generation != stale.generation {
                return Ok(t.clone());
            }
        }
        tracing::info!(destination = %self.describe(), "Salesforce session expired; fetching a new access token");
        let t = Arc::new(self.fetch_token().await?);
        *guard = Some(t.clone());
        Ok(t)
    }

    // -----------------------------------------------------------------------------------------
    // Data API calls

    /// `{instance_url}/services/data/{version}/{path}` (or a server-relative `/services/…`).
    fn data_url(&self, token: &Token, path: &str) -> String {
        if path.starts_with("/services/") {
            format!("{}{path}", token.instance_url)
        } else {
            format!("{}/services/data/{}/{path}", token.instance_url, self.version)
        }
    }

    /// One data API request, with one token refresh on `401`. Any other answer is returned.
    async fn call(&self, method: Method, path: &str, body: Option<(&'static str, Bytes)>, accept: &'static str) -> std::result::Result<Answer, SendError> {
        if let Some(message) = self.exhausted.lock().unwrap().clone() {
            return Err(SendError::Fatal { message });
        }
        let mut token = self.token().await?;
        let mut refreshed = false;
        loop {
            let url = self.data_url(&token, path);
            let mut req = self
                .client
                .request(method.clone(), &url)
                .header(AUTHORIZATION, format!("Bearer {}", token.access.expose()))
                .header(ACCEPT, accept)
                .timeout(self.timeout);
            if let Some((ct, b)) = &body {
                req = req.header(CONTENT_TYPE, *ct).body(b.clone());
            }
            let resp = req.send().await.map_err(|e| transport_error(&e.without_url(), self.timeout))?;
            let status = resp.status();
            if let Some((used, max)) = api_usage(resp.headers()) {
                self.observe_usage(used, max);
            }
            let body_bytes = resp.bytes().await.map_err(|e| SendError::Transient {
                message: format!("HTTP {status}: reading the answer failed: {}", e.without_url()),
                retry_after: None,
            })?;
            if status == StatusCode::UNAUTHORIZED {
                if !refreshed {
                    refreshed = true;
                    token = self.refresh(&token).await?;
                    continue;
                }
                let said = self.scrub(self.error_summary(status, &body_bytes), Some(&token));
                return Err(SendError::Fatal {
                    message: format!(
                        "Salesforce refused a freshly issued access token ({said}); check that the connected app's user has the API Enabled permission and access to {}",
                        self.object
                    ),
                });
            }
            return Ok(Answer { status, body: body_bytes });
        }
    }

    fn observe_usage(&self, used: u64, max: u64) {
        if max == 0 {
            return;
        }
        let pace = allocation_pace(used, max);
        if pace.is_some() && !self.warned_usage.load(Ordering::Relaxed) {
            tracing::warn!(
                destination = %self.describe(), used, max,
                "over 90% of the org's daily Salesforce API requests are used; pacing the rest over 24 h"
            );
            self.warned_usage.store(true, Ordering::Relaxed);
        }
        *self.pace.lock().unwrap_or_else(|p| p.into_inner()) = pace;
        if used >= max {
            let mut ex = self.exhausted.lock().unwrap();
            if ex.is_none() {
                *ex = Some(format!(
                    "the org's daily API request limit is spent (Sforce-Limit-Info api-usage={used}/{max}); it resets on a rolling 24 h window: run the sync again later, use `api: bulk` to spend fewer requests, or raise the org's allocation"
                ));
            }
        }
    }

    /// `HTTP 400 CODE: message` from an error answer.
    fn error_summary(&self, status: StatusCode, body: &[u8]) -> String {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let errors = parse_errors(&v);
        match errors.first() {
            Some(e) => format!("HTTP {} {}", status.as_u16(), e.text()),
            None => format!("HTTP {}: {}", status.as_u16(), super::error_text(body)),
        }
    }

    /// What an answer that is not a success means for the batch.
    fn classify(&self, status: StatusCode, body: &[u8]) -> SendError {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let errors = parse_errors(&v);
        let code = errors.first().map(|e| e.code.as_str()).unwrap_or("");
        let msg = errors.first().map(|e| e.message.as_str()).unwrap_or("");
        let said = self.scrub(self.error_summary(status, body), None);
        let n = status.as_u16();
        if code == "REQUEST_LIMIT_EXCEEDED" {
            if msg.contains("Concurrent") {
                return SendError::RateLimited {
                    message: format!("{said}: too many long-running requests in the org at once; slowing down"),
                    retry_after: None,
                    rate: None,
                };
            }
            return SendError::Fatal {
                message: format!("{said}: the org's daily API request limit exceeded; resets on a rolling 24 h window: run the sync again later, use `api: bulk` to spend fewer requests, or raise the org's allocation"),
            };
        }
        if is_passing(code, msg) {
            return SendError::Transient { message: said, retry_after: None };
        }
        match n {
            420 | 429 => SendError::RateLimited { message: said, retry_after: None, rate: None },
            500..=599 => SendError::Transient { message: said, retry_after: None },
            403 => SendError::Fatal {
                message: format!("{said}; check the integration user's permissions on {} (and that the org has API access)", self.object),
            },
            404 => SendError::Fatal {
                message: format!("{said}; check `object: {}`, the identifier field `{}` and `api_version: {}`", self.object, self.id_field, self.version),
            },
            _ if matches!(code, "INVALID_FIELD" | "INVALID_TYPE" | "NOT_FOUND" | "INVALID_FIELD_FOR_INSERT_UPDATE" | "API_DISABLED_FOR_ORG" | "FUNCTIONALITY_NOT_ENABLED" | "INVALID_SESSION_ID" | "API_CURRENTLY_DISABLED") => {
                SendError::Fatal { message: format!("{said}; no batch can succeed: check the sync's object and mappings") }
            }
            _ => SendError::BatchRejected { message: said },
        }
    }

    /// A JSON request whose success is a list of per-record results.
    async fn collection_call(&self, method: Method, path: &str, body: Option<Value>, n: usize, delete: bool) -> std::result::Result<Vec<Outcome>, SendError> {
        let body = body.map(|b| ("application/json", Bytes::from(serde_json::to_vec(&b).unwrap_or_default())));
        let ans = self.call(method, path, body, "application/json").await?;
        if !ans.status.is_success() {
            return Err(self.classify(ans.status, &ans.body));
        }
        parse_results(&ans.body, n, delete).map_err(|e| SendError::Transient { message: format!("HTTP {}: {e}", ans.status.as_u16()), retry_after: None })
    }

    fn sobject_records(&self, records: impl Iterator<Item = Map<String, Value>>) -> Value {
        let records: Vec<Value> = records
            .map(|mut payload| {
                payload.insert("attributes".into(), json!({"type": self.object}));
                Value::Object(payload)
            })
            .collect();
        json!({"allOrNone": false, "records": records})
    }

    // -----------------------------------------------------------------------------------------
    // Looking up record Ids by the identifier field

    /// The record Ids per identifier (lower-cased: external ids match regardless of case).
    async fn resolve_ids(&self, records: &[OutRecord<'_>]) -> std::result::Result<HashMap<String, Vec<String>>, SendError> {
        let mut found: HashMap<String, Vec<String>> = HashMap::new();
        let head = format!("SELECT Id, {f} FROM {o} WHERE {f} IN (", f = self.id_field, o = self.object);
        let mut literals: Vec<String> = Vec::new();
        let mut len = head.len();
        let mut queries: Vec<String> = Vec::new();
        for r in records {
            let lit = soql_literal(r.payload.get(&self.id_field), r.identifier);
            let enc = form_encode(&lit).len() + 3;
            if !literals.is_empty() && len + enc > MAX_QUERY_URL {
                queries.push(format!("{head}{})", literals.join(",")));
                literals.clear();
                len = head.len();
            }
            len += enc;
            literals.push(lit);
        }
        if !literals.is_empty() {
            queries.push(format!("{head}{})", literals.join(",")));
        }
        for q in queries {
            let mut path = format!("query?q={}", form_encode(&q));
            loop {
                let ans = self.call(Method::GET, &path, None, "application/json").await?;
                if !ans.status.is_success() {
                    return Err(self.classify(ans.status, &ans.body));
                }
                let v: Value = serde_json::from_slice(&ans.body)
                    .map_err(|e| SendError::Transient { message: format!("the query answer is not JSON: {e}"), retry_after: None })?;
                for rec in v.get("records").and_then(Value::as_array).into_iter().flatten() {
                    let id = rec.get("Id").and_then(Value::as_str);
                    let key = rec.as_object().and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(&self.id_field)).map(|(_, v)| value_text(v)));
                    if let (Some(id), Some(key)) = (id, key) {
                        found.entry(key.to_lowercase()).or_default().push(id.to_string());
                    }
                }
                match v.get("nextRecordsUrl").and_then(Value::as_str) {
                    Some(next) if v.get("done") == Some(&Value::Bool(false)) => path = next.to_string(),
                    _ => break,
                }
            }
        }
        Ok(found)
    }

    /// The Ids of one record, by its identifier.
    fn ids_of<'m>(&self, found: &'m HashMap<String, Vec<String>>, r: &OutRecord<'_>) -> &'m [String] {
        let key = r.payload.get(&self.id_field).map(value_text).unwrap_or_else(|| r.identifier.to_string());
        found.get(&key.to_lowercase()).map(Vec::as_slice).unwrap_or(&[])
    }

    fn not_found(&self, r: &OutRecord<'_>) -> Outcome {
        Outcome::Rejected(format!("no {} has {} = {:?}; an update does not create records", self.object, self.id_field, r.identifier))
    }

    fn ambiguous(&self, r: &OutRecord<'_>, n: usize) -> Outcome {
        Outcome::Rejected(format!("{n} {} records have {} = {:?}; make the field unique (an External ID marked Unique) to update by it", self.object, self.id_field, r.identifier))
    }

    // -----------------------------------------------------------------------------------------
    // sObject Collections

    async fn send_collections(&self, op: Operation, records: &[OutRecord<'_>]) -> std::result::Result<Vec<Outcome>, SendError> {
        match op {
            Operation::Upsert => {
                let body = self.sobject_records(records.iter().map(|r| r.payload.clone()));
                let path = format!("composite/sobjects/{}/{}", self.object, self.id_field);
                self.collection_call(Method::PATCH, &path, Some(body), records.len(), false).await
            }
            Operation::Create | Operation::Append => {
                let body = self.sobject_records(records.iter().map(|r| r.payload.clone()));
                self.collection_call(Method::POST, "composite/sobjects", Some(body), records.len(), false).await
            }
            Operation::Update => {
                let mut out: Vec<Option<Outcome>> = vec![None; records.len()];
                let mut send: Vec<(usize, Map<String, Value>)> = Vec::new();
                if self.by_record_id {
                    send.extend(records.iter().enumerate().map(|(i, r)| (i, r.payload.clone())));
                } else {
                    let found = self.resolve_ids(records).await?;
                    for (i, r) in records.iter().enumerate() {
                        match self.ids_of(&found, r) {
                            [] => out[i] = Some(self.not_found(r)),
                            [id] => {
                                let mut p = r.payload.clone();
                                p.insert("Id".into(), Value::String(id.clone()));
                                send.push((i, p));
                            }
                            many => out[i] = Some(self.ambiguous(r, many.len())),
                        }
                    }
                }
                if !send.is_empty() {
                    let idx: Vec<usize> = send.iter().map(|(i, _)| *i).collect();
                    let body = self.sobject_records(send.into_iter().map(|(_, p)| p));
                    let got = self.collection_call(Method::PATCH, "composite/sobjects", Some(body), idx.len(), false).await?;
                    for (i, o) in idx.into_iter().zip(got) {
                        out[i] = Some(o);
                    }
                }
                Ok(out.into_iter().map(|o| o.unwrap_or_else(|| Outcome::Rejected("no result".into()))).collect())
            }
            Operation::Delete => {
                // Each record's Ids (none: already gone; several: all of them go).
                let per_record: Vec<Vec<String>> = if self.by_record_id {
                    records.iter().map(|r| vec![r.identifier.to_string()]).collect()
                } else {
                    let found = self.resolve_ids(records).await?;
                    records.iter().map(|r| self.ids_of(&found, r).to_vec()).collect()
                };
                let all: Vec<(usize, &String)> = per_record.iter().enumerate().flat_map(|(i, ids)| ids.iter().map(move |id| (i, id))).collect();
                let mut out: Vec<Outcome> = vec![Outcome::Accepted; records.len()];
                for chunk in all.chunks(crate::config::destinations::salesforce::COLLECTIONS_MAX) {
                    let ids: Vec<String> = chunk.iter().map(|(_, id)| form_encode(id)).collect();
                    let path = format!("composite/sobjects?ids={}&allOrNone=false", ids.join(","));
                    let got = self.collection_call(Method::DELETE, &path, None, ids.len(), true).await?;
                    for ((i, _), o) in chunk.iter().zip(got) {
                        if o != Outcome::Accepted && matches!(out[*i], Outcome::Accepted) {
                            out[*i] = o;
                        }
                    }
                }
                Ok(out)
            }
        }
    }

    /// The Bulk CSV columns for these records: the identifier first, then every field in the
    /// order first seen.
    fn csv_columns(&self, records: &[OutRecord<'_>]) -> Vec<String> {
        let mut cols: Vec<String> = vec![self.id_field.clone()];
        for r in records {
            for k in r.payload.keys() {
                if !cols.iter().any(|c| c == k) {
                    cols.push(k.clone());
                }
            }
        }
        cols
    }
}

#[async_trait::async_trait]
impl Destination for Salesforce {
    fn describe(&self) -> String {
        format!(
            "salesforce destination `{}` ({} via {}, {})",
            self.name,
            self.object,
            match self.api {
                SalesforceApi::Collections => "sObject Collections",
                SalesforceApi::Bulk => "Bulk API 2.0",
            },
            redact_url(&self.login_url)
        )
    }

    fn limits(&self) -> Limits {
        match self.api {
            SalesforceApi::Collections => Limits {
                max_records: crate::config::destinations::salesforce::COLLECTIONS_MAX,
                max_bytes: None,
                overhead_bytes: 40,
                default_batch: crate::config::destinations::salesforce::COLLECTIONS_MAX,
                default_rate: None,
                default_concurrency: 4,
                default_timeout: Duration::from_secs(120),
            },
            SalesforceApi::Bulk => {
                let header: usize = self.id_field.len() + 4 + self.fields.iter().map(|(f, _)| f.len() + 1).sum::<usize>();
                Limits {
                    max_records: crate::config::destinations::salesforce::MAX_BATCH,
                    max_bytes: Some(bulk::MAX_UPLOAD_BYTES),
                    overhead_bytes: header,
                    default_batch: 10_000,
                    default_rate: None,
                    default_concurrency: 2,
                    default_timeout: Duration::from_secs(600),
                }
            }
        }
    }

    fn record_size(&self, op: Operation, record: &OutRecord<'_>) -> usize {
        match self.api {
            SalesforceApi::Collections => json_size(record.payload) + 30 + self.object.len(),
            SalesforceApi::Bulk if op == Operation::Delete => 19,
            SalesforceApi::Bulk => {
                // One CSV line, plus an Id column for updates by lookup.
                let fields: usize = record.payload.values().map(|v| csv::field_len(&bulk::cell(v)) + 1).sum();
                fields + if op == Operation::Update { 19 } else { 0 }
            }
        }
    }

    async fn check(&self) -> std::result::Result<(), String> {
        self.check_inner().await.map_err(|e| self.scrub(e, None))
    }

    async fn send(&self, op: Operation, records: &[OutRecord<'_>]) -> std::result::Result<Reply, SendError> {
        if records.is_empty() {
            return Ok(Reply::new(Vec::new()));
        }
        let outcomes = match self.api {
            SalesforceApi::Collections => self.send_collections(op, records).await,
            SalesforceApi::Bulk => self.send_bulk(op, records).await,
        };
        let rate = self.pace.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match outcomes {
            Ok(mut outcomes) => {
                for o in &mut outcomes {
                    if let Outcome::Rejected(reason) | Outcome::Retry(reason) = o {
                        self.scrub_in_place(reason);
                    }
                }
                Ok(Reply { outcomes, rate })
            }
            Err(SendError::RateLimited { message, retry_after, rate: None }) => {
                Err(self.scrub_error(SendError::RateLimited { message, retry_after, rate }))
            }
            Err(e) => Err(self.scrub_error(e)),
        }
    }
}

impl Salesforce {
    async fn check_inner(&self) -> std::result::Result<(), String> {
        let fail = |e: SendError| match e {
            SendError::Fatal { message } | SendError::BatchRejected { message } | SendError::Transient { message, .. } | SendError::RateLimited { message, .. } => {
                format!("{}: {message}", self.describe())
            }
        };
        let ans = self.call(Method::GET, &format!("sobjects/{}/describe", self.object), None, "application/json").await.map_err(fail)?;
        if ans.status == StatusCode::NOT_FOUND {
            return Err(format!(
                "{}: the org has no sObject `{}` (or the integration user cannot see it); check `object` (API names are like `Contact` or `My_Object__c`)",
                self.describe(),
                self.object
            ));
        }
        if !ans.status.is_success() {
            return Err(fail(self.classify(ans.status, &ans.body)));
        }
        let v: Value = serde_json::from_slice(&ans.body).map_err(|e| format!("{}: the describe answer is not JSON: {e}", self.describe()))?;
        let fields: Vec<&Value> = v.get("fields").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default();
        let find = |name: &str| fields.iter().find(|f| f.get("name").and_then(Value::as_str).is_some_and(|n| n.eq_ignore_ascii_case(name))).copied();
        let flag = |f: &Value, k: &str| f.get(k).and_then(Value::as_bool).unwrap_or(false);
        let mut problems = Vec::new();
        match find(&self.id_field) {
            None => problems.push(format!("the identifier field `{}` does not exist on {}", self.id_field, self.object)),
            Some(f) => {
                if matches!(self.behavior, Behavior::Upsert | Behavior::Mirror | Behavior::Update) && !self.by_record_id && !flag(f, "externalId") && !flag(f, "idLookup") {
                    problems.push(format!(
                        "the identifier field `{}` of {} is neither an External ID nor an idLookup field, so Salesforce cannot {} by it; mark it External ID (and Unique) in Setup",
                        self.id_field,
                        self.object,
                        if self.behavior == Behavior::Update { "look records up" } else { "upsert" }
                    ));
                }
            }
        }
        let need = match self.behavior {
            Behavior::Create | Behavior::Append => ("createable", "created"),
            Behavior::Update => ("updateable", "updated"),
            Behavior::Upsert | Behavior::Mirror => ("updateable", "written"),
        };
        for (field, column) in &self.fields {
            match find(field) {
                None => problems.push(format!("field `{field}` (mapped from {column}) does not exist on {}", self.object)),
                Some(f) if f.get(need.0).is_some() && !flag(f, need.0) => {
                    problems.push(format!("field `{field}` (mapped from {column}) of {} cannot be {}", self.object, need.1))
                }
                Some(_) => {}
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(format!("{}: {}", self.describe(), problems.join("; "))) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_results_in_order() {
        let body = br#"[{"id":"003A","success":true,"errors":[],"created":true},
            {"success":false,"errors":[{"statusCode":"FIELD_CUSTOM_VALIDATION_EXCEPTION","message":"Score must be positive","fields":["Score__c"]}]},
            {"success":false,"errors":[{"statusCode":"UNABLE_TO_LOCK_ROW","message":"unable to obtain exclusive access to this record","fields":[]}]}]"#;
        let out = parse_results(body, 4, false).unwrap();
        assert_eq!(out[0], Outcome::Accepted);
        assert_eq!(out[1], Outcome::Rejected("FIELD_CUSTOM_VALIDATION_EXCEPTION: Score must be positive (fields: Score__c)".into()));
        assert!(matches!(&out[2], Outcome::Retry(r) if r.starts_with("UNABLE_TO_LOCK_ROW")));
        assert!(matches!(&out[3], Outcome::Rejected(r) if r.contains("no result")));
        let gone = br#"[{"id":"003A","success":false,"errors":[{"statusCode":"ENTITY_IS_DELETED","message":"entity is deleted","fields":[]}]}]"#;
        assert_eq!(parse_results(gone, 1, true).unwrap(), vec![Outcome::Accepted]);
    }

    #[test]
    fn limit_info_and_literals() {
        let mut h = HeaderMap::new();
        h.insert("sforce-limit-info", "api-usage=25/5000; per-app-api-usage=17/250(appName=x)".parse().unwrap());
        assert_eq!(api_usage(&h), Some((25, 5000)));
        assert_eq!(soql_literal(Some(&json!("O'Brien\\x")), ""), r"'O\'Brien\\x'");
        assert_eq!(soql_literal(Some(&json!(42)), ""), "42");
        assert_eq!(form_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn the_allocation_is_paced_past_ninety_percent_only() {
        assert_eq!(allocation_pace(25, 5000), None);
        assert_eq!(allocation_pace(4499, 5000), None);
        assert_eq!(allocation_pace(4500, 5000), Some(RateInfo { limit: Some(500), remaining: None, window: Some(Duration::from_secs(86_400)) }));
        assert_eq!(allocation_pace(4999, 5000).and_then(|r| r.limit), Some(1));
        assert_eq!(allocation_pace(5000, 5000), None, "spent: the run fails instead");
        assert_eq!(allocation_pace(3, 0), None);
        assert_eq!(allocation_pace(u64::MAX - 1, u64::MAX).and_then(|r| r.limit), Some(1), "no overflow");
    }
}
