//! HubSpot CRM v3 contacts.
//!
//! Requests (all `POST`, JSON, `Authorization: Bearer <private app token>`), one per batch:
//! - upsert: `/crm/v3/objects/contacts/batch/upsert`, each input `{id, idProperty,
//!   objectWriteTraceId, properties}`, matched by the identifier property (`email` or a custom
//!   property with unique values);
//! - update: `/crm/v3/objects/contacts/batch/update`, by the identifier property, or by record
//!   ID when the identifier is `hs_object_id`;
//! - create: `/crm/v3/objects/contacts/batch/create`; a contact HubSpot already holds
//!   (`CONFLICT` "Contact already exists", per record in a 207 or a 409 for one contact) is
//!   answered "already exists" ([`Outcome::Exists`]): the engine acknowledges it when the row's
//!   previous delivery was in doubt, and rejects it otherwise;
//! - delete (mirror syncs): `/batch/read` with `idProperty` to find the record IDs, then
//!   `/batch/archive` with those IDs (two requests; contacts HubSpot does not know are already
//!   gone and count as deleted). With `hs_object_id` as identifier, one archive request.
//!   As the delivery layer paces batches, not requests, the answer to a two-request delete
//!   reports half the rate budget.
//!
//! Every input carries `objectWriteTraceId` = its position in the batch, so that HubSpot
//! answers a batch with some bad records with 207 and names each failure.
//!
//! Values: HubSpot property values are strings. Text is sent as it is, numbers as their
//! decimal text, booleans as `true`/`false`, a list of values as HubSpot's multi-select form
//! (`a;b;c`), an object as JSON text, and null as `""`, which clears the property.
//!
//! Within a batch, records whose identifiers are the same to HubSpot (emails are matched
//! ignoring case) would make it refuse the whole batch: the first is sent, the others are
//! rejected with a reason that says so. (Rows that differ only in the case of their email are
//! two rows to sluicegate but one contact to HubSpot; normalise emails in the model.)
//!
//! Answers:
//! - 200/201, 207: one outcome per record from `results` and `errors` (matched by
//!   `objectWriteTraceId`, by `context.ids`, or by the identifier property's value). A record
//!   with no result is rejected, never acknowledged without a word from HubSpot.
//! - 400 `VALIDATION_ERROR` for the whole batch (`Property values were not valid: [...]`):
//!   the records the error names (by value, e.g. the invalid email, or by property) are
//!   rejected with HubSpot's message and the others are sent again; an error that names no
//!   record makes the delivery layer split the batch to find the culprits.
//! - 429: slow down and retry (`Retry-After` when given, else a tenth of the rate window);
//!   a 429 of the `DAILY` policy fails the run: the account's daily budget is spent until
//!   midnight in the account's time zone.
//! - 401 (token refused), 403 (a scope missing: `crm.objects.contacts.write`, or `.read` for
//!   mirror deletes), 404 (wrong `base_url`): the run fails.
//! - 423 (record locked, wait ≥ 2 s), 477, 5xx, timeouts, connection errors: retried.
//! - Every answer's `X-HubSpot-RateLimit-Max/-Remaining/-Interval-Milliseconds` are passed to
//!   the pacer as the budget left to this run: the window's limit minus what other apps of the
//!   account used in it.
//!
//! Limits and defaults: 100 records per request (HubSpot's maximum, and the default); 100
//! requests per 10 s, the budget of private apps on Free and Starter accounts (Professional
//! and Enterprise apps have 190: raise `rate_limit` to `{requests: 190, per: 10s}`; the
//! API add-on gives 250); 4 requests in flight at most; 30 s per request. HubSpot documents no
//! body size limit for these endpoints.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde_json::{json, Map, Value};

use super::{error_text, retry_after, transport_error, BuildContext, Destination, Limits, Operation, OutRecord, Outcome, RateInfo, Reply, SendError};
use crate::config::destinations::hubspot::{MAX_BATCH, RECORD_ID};
use crate::config::{redact_url, HubspotConfig, RateLimit};
use crate::error::{Error, Result};

const CONTACTS: &str = "/crm/v3/objects/contacts";
const WRITE_SCOPE: &str = "crm.objects.contacts.write";
const READ_SCOPE: &str = "crm.objects.contacts.read";

pub async fn build(ctx: &BuildContext<'_>, cfg: &HubspotConfig) -> Result<Arc<dyn Destination>> {
    Ok(Arc::new(Hubspot::new(ctx, cfg)?))
}

pub struct Hubspot {
    name: String,
    base: String,
    auth: HeaderValue,
    /// How the token was written (`${HUBSPOT_TOKEN}`), for messages.
    token_ref: String,
    ident: Ident,
    /// Every property the sync writes, the identifier's first.
    properties: Vec<String>,
    timeout: Duration,
    client: reqwest::Client,
    /// When this destination's recent requests started, to tell our use of HubSpot's rate
    /// window from other apps'.
    sent: Mutex<VecDeque<Instant>>,
    warned_daily: AtomicBool,
}

/// An HTTP answer, read whole.
struct Answer {
    status: u16,
    body: Vec<u8>,
    retry_after: Option<Duration>,
    rate: Option<RateInfo>,
}

impl Hubspot {
    pub fn new(ctx: &BuildContext<'_>, cfg: &HubspotConfig) -> Result<Self> {
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", cfg.access_token.expose())).map_err(|_| {
            Error::config(format!(
                "destination `{}`: the access token in {} holds characters that cannot go in an HTTP header; copy the private app token again",
                ctx.config.name, cfg.access_token_ref
            ))
        })?;
        auth.set_sensitive(true);
        let id_property = ctx.sync.primary_identifier.to.clone();
        let properties = ctx.sync.all_mappings().map(|m| m.to.clone()).collect();
        Ok(Hubspot {
            name: ctx.config.name.clone(),
            base: cfg.base_url.trim_end_matches('/').to_string(),
            auth,
            token_ref: cfg.access_token_ref.clone(),
            ident: Ident { by_record_id: id_property == RECORD_ID, id_property },
            properties,
            timeout: ctx.config.delivery.timeout.unwrap_or(Limits::default().default_timeout),
            client: ctx.client.clone(),
            sent: Mutex::new(VecDeque::new()),
            warned_daily: AtomicBool::new(false),
        })
    }

    fn token_hint(&self) -> String {
        if self.token_ref.is_empty() { "access_token".to_string() } else { self.token_ref.clone() }
    }

    /// Requests of ours that started within the last `window`.
    fn own_in(&self, window: Duration) -> u64 {
        let sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        sent.iter().rev().take_while(|t| now.duration_since(**t) <= window).count() as u64
    }

    fn note_sent(&self) {
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        while sent.front().is_some_and(|t| now.duration_since(*t) > Duration::from_secs(120)) {
            sent.pop_front();
        }
        sent.push_back(now);
    }

    /// The budget left to this run in HubSpot's rate window, from an answer's headers.
    fn rate_info(&self, h: &HeaderMap) -> Option<RateInfo> {
        let num = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).and_then(|s| s.trim().parse::<u64>().ok());
        let max = num("x-hubspot-ratelimit-max");
        let window = num("x-hubspot-ratelimit-interval-milliseconds").filter(|ms| *ms > 0).map(Duration::from_millis);
        if let (Some(daily), Some(left)) = (num("x-hubspot-ratelimit-daily"), num("x-hubspot-ratelimit-daily-remaining")) {
            if daily > 0 && left * 20 < daily && !self.warned_daily.swap(true, Ordering::Relaxed) {
                tracing::warn!(destination = %self.describe(), daily, remaining = left, "less than 5% of the HubSpot account's daily API budget is left; it resets at midnight in the account's time zone");
            }
        }
        if max.is_none() && window.is_none() {
            return None;
        }
        let mut limit = max;
        if let (Some(max), Some(remaining), Some(window)) = (max, num("x-hubspot-ratelimit-remaining"), window) {
            // `remaining` counts every app of the account. Ours alone would leave the pacer
            // spending the window evenly; what others used in it is taken off our budget.
            let used = max.saturating_sub(remaining);
            let others = used.saturating_sub(self.own_in(window));
            if others > (max / 20).max(2) {
                limit = Some(max.saturating_sub(others).max(1));
            }
        }
        Some(RateInfo { limit, remaining: None, window })
    }

    async fn request(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> std::result::Result<Answer, SendError> {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header(AUTHORIZATION, self.auth.clone())
            .timeout(self.timeout);
        if let Some(b) = body {
            let bytes = serde_json::to_vec(b).map_err(|e| SendError::Fatal { message: format!("cannot encode the request as JSON: {e}") })?;
            req = req.header(CONTENT_TYPE, "application/json").body(bytes);
        }
        self.note_sent();
        let resp = req.send().await.map_err(|e| transport_error(&e, self.timeout))?;
        let status = resp.status().as_u16();
        let retry_after = retry_after(resp.headers());
        let rate = self.rate_info(resp.headers());
        let body = resp.bytes().await.map_err(|e| SendError::Transient {
            message: format!("HTTP {status}: reading HubSpot's answer failed: {}", e.without_url()),
            retry_after,
        })?;
        Ok(Answer { status, body: body.to_vec(), retry_after, rate })
    }

    /// A failed answer that no record can be blamed for, classified. `scope`: the scope the
    /// call needs.
    fn failure(&self, a: &Answer, scope: &str) -> SendError {
        let v: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
        let text = error_text(&a.body);
        let category = v.get("category").and_then(Value::as_str).unwrap_or("");
        let message = if category.is_empty() { format!("HTTP {}: {text}", a.status) } else { format!("HTTP {} {category}: {text}", a.status) };
        match a.status {
            401 => SendError::Fatal {
                message: format!(
                    "HubSpot refused the access token ({message}); check that {} holds a current private app token of this HubSpot account",
                    self.token_hint()
                ),
            },
            403 => {
                let missing = missing_scopes(&v);
                let scopes = if missing.is_empty() { scope.to_string() } else { missing.join(", ") };
                SendError::Fatal {
                    message: format!(
                        "the private app's token lacks a scope this call needs: {scopes} ({message}); add it under the app's Scopes in HubSpot and use the new token in {}",
                        self.token_hint()
                    ),
                }
            }
            404 | 405 => SendError::Fatal {
                message: format!("{message}; check the destination's base_url ({}): HubSpot's API is https://api.hubapi.com", redact_url(&self.base)),
            },
            429 => {
                let policy = v.get("policyName").and_then(Value::as_str).unwrap_or("");
                if policy.eq_ignore_ascii_case("DAILY") || (policy.is_empty() && text.to_lowercase().contains("daily limit")) {
                    SendError::Fatal {
                        message: format!(
                            "HubSpot's daily API limit for this account is spent ({message}); it resets at midnight in the account's time zone: run the sync again after that, or raise the limit with HubSpot's API add-on"
                        ),
                    }
                } else {
                    let window = a.rate.as_ref().and_then(|r| r.window).unwrap_or(Duration::from_secs(10));
                    SendError::RateLimited {
                        message: format!("{message} (policy {})", if policy.is_empty() { "unknown" } else { policy }),
                        retry_after: a.retry_after.or(Some(window / 10)),
                        rate: a.rate.clone(),
                    }
                }
            }
            423 => SendError::Transient {
                message: format!("{message}; HubSpot locks records for 2 s under heavy writes"),
                retry_after: Some(a.retry_after.unwrap_or_default().max(Duration::from_secs(2))),
            },
            408 | 477 | 500..=599 => SendError::Transient { message, retry_after: a.retry_after },
            _ => SendError::BatchRejected { message },
        }
    }

    /// The properties of one input: every mapped field, as HubSpot's strings.
    fn properties_of(&self, r: &OutRecord<'_>) -> Map<String, Value> {
        r.payload
            .iter()
            .filter(|(k, _)| !(self.ident.by_record_id && k.as_str() == RECORD_ID))
            .map(|(k, v)| (k.clone(), Value::String(property_text(v))))
            .collect()
    }

    /// The request body for a write operation over the records at `idx`.
    fn write_body(&self, op: Operation, records: &[OutRecord<'_>], idx: &[usize]) -> Value {
        let inputs: Vec<Value> = idx
            .iter()
            .map(|&i| {
                let r = &records[i];
                let mut input = Map::new();
                match op {
                    Operation::Create => {
                        input.insert("associations".into(), json!([]));
                    }
                    _ => {
                        input.insert("id".into(), Value::String(r.identifier.to_string()));
                        if !self.ident.by_record_id {
                            input.insert("idProperty".into(), Value::String(self.ident.id_property.clone()));
                        }
                    }
                }
                input.insert("objectWriteTraceId".into(), Value::String(i.to_string()));
                input.insert("properties".into(), Value::Object(self.properties_of(r)));
                Value::Object(input)
            })
            .collect();
        json!({ "inputs": inputs })
    }

    /// Upsert, update or create.
    async fn write(&self, op: Operation, records: &[OutRecord<'_>]) -> std::result::Result<Reply, SendError> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; records.len()];
        let idx = self.ident.dedupe(records, &mut outcomes);
        let path = match op {
            Operation::Upsert => "/batch/upsert",
            Operation::Update => "/batch/update",
            _ => "/batch/create",
        };
        let body = self.write_body(op, records, &idx);
        let a = self.request(reqwest::Method::POST, &format!("{CONTACTS}{path}"), Some(&body)).await?;
        let got = match a.status {
            200 | 201 | 207 => self.ident.parse_batch(&a.body, records, &idx),
            // One contact's create refused as existing: "already exists", which the engine
            // acknowledges when its previous delivery was in doubt (it created the contact).
            409 if op == Operation::Create && idx.len() == 1 && is_exists(&serde_json::from_slice(&a.body).unwrap_or(Value::Null)) => {
                vec![Outcome::Exists(describe_error(&serde_json::from_slice(&a.body).unwrap_or(Value::Null)))]
            }
            400 | 409 => match self.ident.attribute_refusal(&a.body, records, &idx) {
                Some(o) => o,
                None => return Err(self.failure(&a, WRITE_SCOPE)),
            },
            _ => return Err(self.failure(&a, WRITE_SCOPE)),
        };
        for (&i, o) in idx.iter().zip(got) {
            // "Already exists" means something only to a create.
            outcomes[i] = Some(match o {
                Outcome::Exists(reason) if op != Operation::Create => Outcome::Rejected(reason),
                o => o,
            });
        }
        Ok(Reply { outcomes: outcomes.into_iter().map(|o| o.expect("every record has an outcome")).collect(), rate: a.rate })
    }

    /// Archive (mirror deletes).
    async fn archive(&self, records: &[OutRecord<'_>]) -> std::result::Result<Reply, SendError> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; records.len()];
        let idx = self.ident.dedupe(records, &mut outcomes);
        // A duplicate of a record being archived is archived with it.
        for o in outcomes.iter_mut().filter(|o| o.is_some()) {
            *o = Some(Outcome::Accepted);
        }
        let mut rate = None;
        let mut requests = 0u64;
        let ids: Vec<String> = if self.ident.by_record_id {
            idx.iter().map(|&i| records[i].identifier.to_string()).collect()
        } else {
            let body = json!({
                "idProperty": self.ident.id_property,
                "inputs": idx.iter().map(|&i| json!({"id": records[i].identifier})).collect::<Vec<_>>(),
                "properties": [self.ident.id_property],
                "propertiesWithHistory": [],
            });
            let a = self.request(reqwest::Method::POST, &format!("{CONTACTS}/batch/read"), Some(&body)).await?;
            if !matches!(a.status, 200 | 207) {
                return Err(self.failure(&a, READ_SCOPE));
            }
            rate = a.rate;
            requests += 1;
            let v: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
            // Contacts not found (OBJECT_NOT_FOUND) are already gone.
            let mut ids: Vec<String> = v
                .get("results")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|r| r.get("id").and_then(Value::as_str).map(str::to_string))
                .collect();
            ids.sort();
            ids.dedup();
            ids
        };
        if !ids.is_empty() {
            let body = json!({ "inputs": ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>() });
            let a = self.request(reqwest::Method::POST, &format!("{CONTACTS}/batch/archive"), Some(&body)).await?;
            if !(200..300).contains(&a.status) {
                return Err(self.failure(&a, WRITE_SCOPE));
            }
            rate = a.rate.or(rate);
            requests += 1;
        }
        // The pacer counts one request per batch; this one took `requests`.
        if let Some(r) = rate.as_mut().filter(|_| requests > 1) {
            r.limit = r.limit.map(|l| (l / requests).max(1));
        }
        for &i in &idx {
            outcomes[i] = Some(Outcome::Accepted);
        }
        Ok(Reply { outcomes: outcomes.into_iter().map(|o| o.unwrap_or(Outcome::Accepted)).collect(), rate })
    }
}

/// How records are matched at HubSpot.
#[derive(Debug, Clone)]
struct Ident {
    /// The property records are matched by.
    id_property: String,
    /// Matching by record ID (`hs_object_id`) rather than by a property.
    by_record_id: bool,
}

impl Ident {
    /// The key HubSpot matches an identifier by: emails ignoring case.
    fn match_key(&self, value: &str) -> String {
        if self.id_property == "email" { value.trim().to_lowercase() } else { value.to_string() }
    }

    /// The records to send (first of each identifier); later duplicates get their rejection.
    fn dedupe(&self, records: &[OutRecord<'_>], outcomes: &mut [Option<Outcome>]) -> Vec<usize> {
        let mut seen: HashMap<String, usize> = HashMap::with_capacity(records.len());
        let mut idx = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            match seen.get(&self.match_key(r.identifier)) {
                Some(&first) => {
                    outcomes[i] = Some(Outcome::Rejected(format!(
                        "{} `{}` is the same contact to HubSpot as `{}` in the same batch ({}); HubSpot refuses a batch naming one contact twice and one contact cannot hold two rows: make the identifier unique in the source (e.g. lower(email))",
                        self.id_property,
                        r.identifier,
                        records[first].identifier,
                        if self.id_property == "email" { "emails match ignoring case" } else { "same value" }
                    )));
                }
                None => {
                    seen.insert(self.match_key(r.identifier), i);
                    idx.push(i);
                }
            }
        }
        idx
    }

    /// Outcomes (for the records at `idx`, in that order) from a 200/201/207 batch answer.
    fn parse_batch(&self, body: &[u8], records: &[OutRecord<'_>], idx: &[usize]) -> Vec<Outcome> {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let n = idx.len();
        // Position in `idx` by trace id (= the record's index) and by identifier.
        let by_trace: HashMap<String, usize> = idx.iter().enumerate().map(|(pos, i)| (i.to_string(), pos)).collect();
        let by_key: HashMap<String, usize> = idx.iter().enumerate().map(|(pos, &i)| (self.match_key(records[i].identifier), pos)).collect();
        let mut errors: Vec<Option<String>> = vec![None; n];
        let mut exists = vec![false; n];
        let mut done = vec![false; n];
        let mut unattributed = Vec::new();
        for e in v.get("errors").and_then(Value::as_array).into_iter().flatten() {
            let reason = describe_error(e);
            let ctx = e.get("context");
            let mut hit = false;
            for t in context_list(ctx, "objectWriteTraceId") {
                if let Some(&pos) = by_trace.get(t) {
                    errors[pos] = Some(reason.clone());
                    exists[pos] = is_exists(e);
                    hit = true;
                }
            }
            for id in context_list(ctx, "ids") {
                if let Some(&pos) = by_key.get(&self.match_key(id)) {
                    let what = if e.get("category").and_then(Value::as_str) == Some("OBJECT_NOT_FOUND") {
                        format!("HubSpot has no contact with {} `{}` ({reason}); an update does not create it", self.id_property, records[idx[pos]].identifier)
                    } else {
                        reason.clone()
                    };
                    errors[pos] = Some(what);
                    exists[pos] = is_exists(e);
                    hit = true;
                }
            }
            if !hit {
                unattributed.push(reason);
            }
        }
        for r in v.get("results").and_then(Value::as_array).into_iter().flatten() {
            let pos = r
                .get("objectWriteTraceId")
                .and_then(Value::as_str)
                .and_then(|t| by_trace.get(t))
                .or_else(|| {
                    r.get("properties")
                        .and_then(|p| p.get(&self.id_property))
                        .and_then(Value::as_str)
                        .and_then(|val| by_key.get(&self.match_key(val)))
                })
                .or_else(|| if self.by_record_id { r.get("id").and_then(Value::as_str).and_then(|id| by_key.get(id)) } else { None });
            if let Some(&pos) = pos {
                done[pos] = true;
            }
        }
        (0..n)
            .map(|pos| match (&errors[pos], done[pos]) {
                (Some(reason), _) if exists[pos] => Outcome::Exists(reason.clone()),
                (Some(reason), _) => Outcome::Rejected(reason.clone()),
                (None, true) => Outcome::Accepted,
                (None, false) if !unattributed.is_empty() => Outcome::Rejected(format!(
                    "HubSpot returned no result for this record; the batch's errors: {}",
                    unattributed.join("; ")
                )),
                (None, false) => Outcome::Rejected(
                    "HubSpot returned neither a result nor an error for this record (it may have been merged into another contact); not acknowledged, so the next run sends it again".into(),
                ),
            })
            .collect()
    }

    /// A batch refused as a whole (400/409): the outcomes when HubSpot's error names the
    /// records at fault (they are rejected, the others sent again), else `None`.
    fn attribute_refusal(&self, body: &[u8], records: &[OutRecord<'_>], idx: &[usize]) -> Option<Vec<Outcome>> {
        let v: Value = serde_json::from_slice(body).ok()?;
        if context_list(v.get("context"), "ids").next().is_some() {
            // Duplicate IDs or the like: let the delivery layer split the batch.
            return None;
        }
        let message = v.get("message").and_then(Value::as_str).unwrap_or("");
        let category = v.get("category").and_then(Value::as_str).unwrap_or("VALIDATION_ERROR");
        let mut details: Vec<(String, String, String)> = Vec::new(); // (property, code, message)
        if let Some(start) = message.find('[') {
            if let Ok(Value::Array(items)) = serde_json::from_str::<Value>(&message[start..]) {
                for d in items {
                    details.push((
                        d.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
                        d.get("error").and_then(Value::as_str).unwrap_or("").to_string(),
                        d.get("message").and_then(Value::as_str).unwrap_or("").to_string(),
                    ));
                }
            }
        }
        for d in v.get("errors").and_then(Value::as_array).into_iter().flatten() {
            let prop = context_list(d.get("context"), "propertyName").next().unwrap_or("").to_string();
            details.push((
                prop,
                d.get("code").and_then(Value::as_str).unwrap_or("").to_string(),
                d.get("message").and_then(Value::as_str).unwrap_or("").to_string(),
            ));
        }
        let mut blame: Vec<Option<String>> = vec![None; idx.len()];
        let mut any = false;
        for (prop, code, text) in &details {
            if prop.is_empty() {
                continue;
            }
            let reason = format!("HubSpot {category}{}: {text} (property {prop})", if code.is_empty() { String::new() } else { format!(" {code}") });
            let whole_property = code == "PROPERTY_DOESNT_EXIST" || code == "READ_ONLY_VALUE";
            for (pos, &i) in idx.iter().enumerate() {
                let r = &records[i];
                let value = if prop == &self.id_property && !r.payload.contains_key(prop) {
                    Some(r.identifier.to_string())
                } else {
                    r.payload.get(prop).map(property_text)
                };
                let Some(value) = value else { continue };
                let named = whole_property || (!value.is_empty() && contains_token(text, &value, prop == "email"));
                if named {
                    any = true;
                    let b = &mut blame[pos];
                    *b = Some(match b.take() {
                        Some(prev) => format!("{prev}; {reason}"),
                        None => reason.clone(),
                    });
                }
            }
        }
        if !any {
            return None;
        }
        Some(
            blame
                .into_iter()
                .map(|b| match b {
                    Some(reason) => Outcome::Rejected(reason),
                    None => Outcome::Retry(format!(
                        "not written: HubSpot refused the whole batch over other records' values ({})",
                        error_text(body)
                    )),
                })
                .collect(),
        )
    }

}

/// A JSON value as HubSpot's property text.
fn property_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) if items.iter().all(|x| !x.is_array() && !x.is_object()) => {
            items.iter().filter(|x| !x.is_null()).map(property_text).collect::<Vec<_>>().join(";")
        }
        other => other.to_string(),
    }
}

/// Strings under `context[key]`.
fn context_list<'a>(ctx: Option<&'a Value>, key: &str) -> impl Iterator<Item = &'a str> {
    ctx.and_then(|c| c.get(key)).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str)
}

/// One of a 207's errors as a reason: category, HubSpot's message (with the property details
/// it embeds unpacked).
/// Whether a HubSpot error says the contact exists already (a create's `CONFLICT`,
/// "Contact already exists. Existing ID: N").
fn is_exists(e: &Value) -> bool {
    e.get("category").and_then(Value::as_str) == Some("CONFLICT")
        && e.get("message").and_then(Value::as_str).is_some_and(|m| m.contains("already exists"))
}

fn describe_error(e: &Value) -> String {
    let category = e.get("category").and_then(Value::as_str).unwrap_or("error");
    let message = e.get("message").and_then(Value::as_str).unwrap_or("(no message)");
    let mut text = message.to_string();
    if let Some(start) = message.find('[') {
        if let Ok(Value::Array(items)) = serde_json::from_str::<Value>(&message[start..]) {
            let parts: Vec<String> = items
                .iter()
                .map(|d| {
                    let m = d.get("message").and_then(Value::as_str).unwrap_or("");
                    let code = d.get("error").and_then(Value::as_str).unwrap_or("");
                    let name = d.get("name").and_then(Value::as_str).unwrap_or("");
                    format!("{m} ({code}{}{name})", if name.is_empty() { "" } else { ", property " })
                })
                .collect();
            if !parts.is_empty() {
                text = parts.join("; ");
            }
        }
    }
    format!("HubSpot {category}: {text}")
}

/// Whether `text` names `value` as a whole word (not as part of a longer value).
fn contains_token(text: &str, value: &str, ignore_case: bool) -> bool {
    let (text, value) = if ignore_case { (text.to_lowercase(), value.to_lowercase()) } else { (text.to_string(), value.to_string()) };
    let word = |c: char| c.is_alphanumeric() || matches!(c, '@' | '.' | '_' | '-' | '+');
    let mut from = 0;
    while let Some(off) = text[from..].find(&value) {
        let start = from + off;
        let end = start + value.len();
        let before = text[..start].chars().next_back();
        let after = text[end..].chars().next();
        // A sentence's full stop after the value still ends it.
        let after_ok = match after {
            None => true,
            Some('.') => text[end + 1..].chars().next().is_none_or(|c| !word(c)),
            Some(c) => !word(c),
        };
        if before.is_none_or(|c| !word(c)) && after_ok {
            return true;
        }
        from = start + value.len().max(1);
    }
    false
}

/// Scopes a 403 says are missing.
fn missing_scopes(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let keys = ["requiredGranularScopes", "requiredScopes", "missingScopes"];
    let mut look = |ctx: Option<&Value>| {
        for k in keys {
            for s in context_list(ctx, k) {
                if !out.iter().any(|o: &String| o == s) {
                    out.push(s.to_string());
                }
            }
        }
    };
    look(v.get("context"));
    for e in v.get("errors").and_then(Value::as_array).into_iter().flatten() {
        look(e.get("context"));
    }
    out
}

#[async_trait::async_trait]
impl Destination for Hubspot {
    fn describe(&self) -> String {
        format!("hubspot destination `{}` ({})", self.name, redact_url(&self.base))
    }

    fn limits(&self) -> Limits {
        Limits {
            max_records: MAX_BATCH,
            max_bytes: None,
            overhead_bytes: 16,
            default_batch: MAX_BATCH,
            default_rate: Some(RateLimit { requests: 100, per: Duration::from_secs(10) }),
            default_concurrency: 4,
            default_timeout: Duration::from_secs(30),
        }
    }

    async fn check(&self) -> std::result::Result<(), String> {
        let fail = |e: SendError| {
            let m = match e {
                SendError::Fatal { message } | SendError::BatchRejected { message } | SendError::Transient { message, .. } | SendError::RateLimited { message, .. } => message,
            };
            format!("{}: {m}", self.describe())
        };
        let a = self.request(reqwest::Method::GET, &format!("{CONTACTS}?limit=1&archived=false"), None).await.map_err(fail)?;
        if a.status != 200 {
            return Err(fail(self.failure(&a, READ_SCOPE)));
        }
        // The properties the sync writes must exist, be writable, and the identifier unique.
        let a = self.request(reqwest::Method::GET, "/crm/v3/properties/contacts", None).await.map_err(fail)?;
        if a.status != 200 {
            tracing::info!(destination = %self.describe(), status = a.status, "cannot read the contact properties; their names are not checked");
            return Ok(());
        }
        let v: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
        let known: HashMap<&str, &Value> = v
            .get("results")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p.get("name")?.as_str()?, p)))
            .collect();
        let mut problems = Vec::new();
        for p in &self.properties {
            match known.get(p.as_str()) {
                None if p == RECORD_ID => {}
                None => problems.push(format!(
                    "property `{p}` does not exist on HubSpot contacts{}; create it or map another",
                    crate::config::did_you_mean(p, known.keys().copied())
                )),
                Some(def) => {
                    let read_only = def.pointer("/modificationMetadata/readOnlyValue").and_then(Value::as_bool).unwrap_or(false);
                    if read_only && p != &self.ident.id_property {
                        problems.push(format!("property `{p}` is read-only in HubSpot; map another"));
                    }
                    let unique = def.get("hasUniqueValue").and_then(Value::as_bool).unwrap_or(false);
                    if p == &self.ident.id_property && !self.ident.by_record_id && p != "email" && !unique {
                        problems.push(format!(
                            "the identifier property `{p}` does not require unique values in HubSpot, so records cannot be matched by it; use `email` or a property created with unique values"
                        ));
                    }
                }
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(format!("{}: {}", self.describe(), problems.join("; "))) }
    }

    async fn send(&self, op: Operation, records: &[OutRecord<'_>]) -> std::result::Result<Reply, SendError> {
        if records.is_empty() {
            return Ok(Reply::new(Vec::new()));
        }
        match op {
            Operation::Upsert | Operation::Update | Operation::Create => self.write(op, records).await,
            Operation::Delete => self.archive(records).await,
            Operation::Append => Err(SendError::Fatal {
                message: "HubSpot contacts take no events (append); the project check should have refused this sync".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_become_hubspot_text() {
        assert_eq!(property_text(&json!("x")), "x");
        assert_eq!(property_text(&json!(null)), "");
        assert_eq!(property_text(&json!(true)), "true");
        assert_eq!(property_text(&json!(12.5)), "12.5");
        assert_eq!(property_text(&json!(["a", "b", null])), "a;b");
        assert_eq!(property_text(&json!({"k": 1})), r#"{"k":1}"#);
    }

    #[test]
    fn tokens_are_whole_values() {
        assert!(contains_token("Email address bad.lcom is invalid", "bad.lcom", true));
        assert!(contains_token("Property value \"X@Y\" is not a valid email", "x@y", true));
        assert!(contains_token("ends with a@b.", "a@b", true));
        assert!(!contains_token("Email address a@x.com is invalid", "a@x.co", true));
        assert!(!contains_token("value 12 is invalid", "1", false));
        assert!(!contains_token("Email address ba@x.com is invalid", "a@x.com", true));
    }

    fn recs(payloads: &[Value]) -> Vec<(String, Map<String, Value>)> {
        payloads.iter().map(|p| (p["email"].as_str().unwrap().to_string(), p.as_object().unwrap().clone())).collect()
    }

    fn out(r: &[(String, Map<String, Value>)]) -> Vec<OutRecord<'_>> {
        r.iter().map(|(id, p)| OutRecord { identifier: id, payload: p }).collect()
    }

    fn by_email() -> Ident {
        Ident { id_property: "email".into(), by_record_id: false }
    }

    #[test]
    fn multi_status_maps_results_and_errors_to_records() {
        let r = recs(&[json!({"email": "a@x.io"}), json!({"email": "b@x.io"}), json!({"email": "C@x.io"}), json!({"email": "d@x.io"})]);
        let records = out(&r);
        let body = json!({"status": "COMPLETE", "numErrors": 2,
            "results": [{"id": "1", "objectWriteTraceId": "0", "properties": {}}, {"id": "3", "properties": {"email": "c@x.io"}}],
            "errors": [
                {"status": "error", "category": "VALIDATION_ERROR", "message": "Property values were not valid: [{\"isValid\":false,\"message\":\"Email address b@x.io is invalid\",\"error\":\"INVALID_EMAIL\",\"name\":\"email\"}]", "context": {"objectWriteTraceId": ["1"]}}
            ]});
        let o = by_email().parse_batch(body.to_string().as_bytes(), &records, &[0, 1, 2, 3]);
        assert_eq!(o[0], Outcome::Accepted);
        assert!(matches!(&o[1], Outcome::Rejected(m) if m.contains("Email address b@x.io is invalid (INVALID_EMAIL, property email)")), "{o:?}");
        assert_eq!(o[2], Outcome::Accepted, "matched by email ignoring case");
        assert!(matches!(&o[3], Outcome::Rejected(m) if m.contains("neither a result nor an error")), "{o:?}");

        let body = json!({"status": "COMPLETE", "results": [],
            "errors": [{"status": "error", "category": "OBJECT_NOT_FOUND", "message": "Could not get some CONTACT objects, they may be deleted or not exist. Check that ids are valid.", "context": {"ids": ["b@x.io"]}}]});
        let o = by_email().parse_batch(body.to_string().as_bytes(), &records, &[1]);
        assert!(matches!(&o[0], Outcome::Rejected(m) if m.contains("has no contact with email `b@x.io`") && m.contains("Could not get some CONTACT objects")), "{o:?}");
    }

    #[test]
    fn whole_batch_refusals_blame_the_named_records() {
        let r = recs(&[json!({"email": "a@x.io", "firstname": "A"}), json!({"email": "bad.lcom", "firstname": "B"}), json!({"email": "c@x.io", "firstname": "C"})]);
        let records = out(&r);
        let body = json!({"status": "error", "category": "VALIDATION_ERROR", "correlationId": "x",
            "message": "Property values were not valid: [{\"isValid\":false,\"message\":\"Email address bad.lcom is invalid\",\"error\":\"INVALID_EMAIL\",\"name\":\"email\"}]"});
        let o = by_email().attribute_refusal(body.to_string().as_bytes(), &records, &[0, 1, 2]).unwrap();
        assert!(matches!(&o[0], Outcome::Retry(_)));
        assert!(matches!(&o[1], Outcome::Rejected(m) if m.contains("INVALID_EMAIL: Email address bad.lcom is invalid (property email)")), "{o:?}");
        assert!(matches!(&o[2], Outcome::Retry(_)));
        // An unknown property is every record's problem.
        let body = json!({"status": "error", "category": "VALIDATION_ERROR",
            "message": "Property values were not valid: [{\"isValid\":false,\"message\":\"Property \\\"firstname\\\" does not exist\",\"error\":\"PROPERTY_DOESNT_EXIST\",\"name\":\"firstname\"}]"});
        let o = by_email().attribute_refusal(body.to_string().as_bytes(), &records, &[0, 1, 2]).unwrap();
        assert!(o.iter().all(|x| matches!(x, Outcome::Rejected(m) if m.contains("PROPERTY_DOESNT_EXIST"))), "{o:?}");
        // Nothing names a record: the delivery layer splits the batch.
        let body = json!({"status": "error", "category": "VALIDATION_ERROR", "message": "Invalid input JSON on line 1"});
        assert!(by_email().attribute_refusal(body.to_string().as_bytes(), &records, &[0, 1, 2]).is_none());
        let body = json!({"status": "error", "category": "VALIDATION_ERROR", "message": "Duplicate IDs found in batch input: [a@x.io]. IDs must be unique", "context": {"ids": ["a@x.io"]}});
        assert!(by_email().attribute_refusal(body.to_string().as_bytes(), &records, &[0, 1, 2]).is_none());
    }

    #[test]
    fn conflicts_on_create_are_already_exists() {
        let r = recs(&[json!({"email": "a@x.io"}), json!({"email": "b@x.io"})]);
        let records = out(&r);
        let body = json!({"status": "COMPLETE", "results": [{"id": "2", "objectWriteTraceId": "1", "properties": {}}],
            "errors": [{"status": "error", "category": "CONFLICT", "message": "Contact already exists. Existing ID: 10", "context": {"objectWriteTraceId": ["0"]}}]});
        let o = by_email().parse_batch(body.to_string().as_bytes(), &records, &[0, 1]);
        assert!(matches!(&o[0], Outcome::Exists(m) if m.contains("CONFLICT: Contact already exists. Existing ID: 10")), "{o:?}");
        assert_eq!(o[1], Outcome::Accepted);
        assert!(!is_exists(&json!({"category": "VALIDATION_ERROR", "message": "Contact already exists"})));
    }

    #[test]
    fn duplicates_ignoring_case_are_rejected_after_the_first() {
        let r = recs(&[json!({"email": "a@x.io"}), json!({"email": "A@X.io"}), json!({"email": "b@x.io"})]);
        let records = out(&r);
        let mut outcomes = vec![None; 3];
        let idx = by_email().dedupe(&records, &mut outcomes);
        assert_eq!(idx, [0, 2]);
        assert!(matches!(&outcomes[1], Some(Outcome::Rejected(m)) if m.contains("emails match ignoring case")), "{outcomes:?}");
    }

    #[test]
    fn missing_scopes_from_a_403() {
        let v = json!({"status":"error","message":"This app hasn't been granted all required scopes to make this call.","category":"MISSING_SCOPES",
            "errors":[{"message":"One or more of the following scopes are required.","context":{"requiredGranularScopes":["crm.objects.contacts.write"]}}]});
        assert_eq!(missing_scopes(&v), ["crm.objects.contacts.write"]);
    }
}
