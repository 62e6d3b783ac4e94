//! Generic HTTP/JSON webhook.
//!
//! Each batch is one `POST` of a JSON array of records (the mapped fields of each row) to the
//! configured URL, with `Content-Type: application/json`, the configured headers, and
//! `X-Sluicegate-Operation` (`upsert`, `update`, `create`, `delete` or `append`: one operation per
//! batch), `X-Sluicegate-Key` (the record field that identifies a record), `X-Sluicegate-Sync`
//! and, when set, `X-Sluicegate-Object`. A `delete` batch carries records holding only the key.
//!
//! Answers:
//! - 2xx with a body `{"results": [{"index": 0, "status": "accepted"}, {"index": 1, "status":
//!   "rejected", "reason": "…"}]}`: one outcome per record; a record with no result is counted
//!   as rejected (never acknowledged without a word from the endpoint). A `create` refused
//!   because the record is there already should answer `"status": "exists"` (or
//!   `"already_exists"`): when this row's previous delivery was in doubt (a lost answer), that
//!   delivery created it and the row is acknowledged; otherwise it is rejected with the reason.
//! - 2xx with any other body: every record accepted.
//! - 408, 429, 5xx (except 501), timeouts and connection errors: retried (honouring
//!   `Retry-After` in seconds).
//! - 401, 403, 404, 405, 501: the run fails (credentials or URL are wrong).
//! - Other 4xx: every record of the batch rejected with the endpoint's message.
//!
//! Limits: `batch_size` records per request (default 100, at most 10,000); unpaced unless
//! `rate_limit` is set; 4 requests in flight at most by default (`max_concurrency`).

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use serde_json::Value;

use super::{error_text, retry_after, transport_error, BuildContext, Destination, Limits, Operation, OutRecord, Outcome, Reply, SendError};
use crate::config::{redact_url, WebhookConfig};

pub struct Webhook {
    name: String,
    url: String,
    headers: HeaderMap,
    timeout: Duration,
    client: reqwest::Client,
}

impl Webhook {
    pub fn new(ctx: &BuildContext<'_>, cfg: &WebhookConfig) -> Self {
        let (sync_name, object, key_field) = (&ctx.sync.name, ctx.sync.object.as_deref(), &ctx.sync.primary_identifier.to);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Ok(v) = HeaderValue::from_str(key_field) {
            headers.insert(HeaderName::from_static("x-sluicegate-key"), v);
        }
        if let Ok(v) = HeaderValue::from_str(sync_name) {
            headers.insert(HeaderName::from_static("x-sluicegate-sync"), v);
        }
        if let Some(Ok(v)) = object.map(HeaderValue::from_str) {
            headers.insert(HeaderName::from_static("x-sluicegate-object"), v);
        }
        for (k, v) in &cfg.headers {
            // Names and values were validated when the project was loaded.
            if let (Ok(name), Ok(mut value)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v.expose())) {
                value.set_sensitive(true);
                headers.insert(name, value);
            }
        }
        // Header values (credentials) an endpoint echoes back are masked by the wrapper every
        // destination gets (`destination::Scrubbed`).
        Webhook {
            name: ctx.config.name.clone(),
            url: cfg.url.expose().to_string(),
            headers,
            timeout: ctx.config.delivery.timeout.unwrap_or(Limits::default().default_timeout),
            client: ctx.client.clone(),
        }
    }
}

fn parse_results(body: &[u8], n: usize) -> Option<Vec<Outcome>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let results = v.get("results")?.as_array()?;
    let mut out: Vec<Option<Outcome>> = vec![None; n];
    for (pos, r) in results.iter().enumerate() {
        let index = r.get("index").and_then(Value::as_u64).map(|i| i as usize).unwrap_or(pos);
        if index >= n {
            continue;
        }
        let status = r.get("status").and_then(Value::as_str).unwrap_or("");
        let reason = || {
            r.get("reason")
                .or_else(|| r.get("message"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("rejected by the endpoint (status {status:?})"))
        };
        out[index] = Some(match status {
            "accepted" | "ok" | "success" => Outcome::Accepted,
            // A create whose identifier the endpoint holds already.
            "exists" | "already_exists" => Outcome::Exists(reason()),
            _ => Outcome::Rejected(reason()),
        });
    }
    Some(
        out.into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::Rejected("the endpoint returned no result for this record".into())))
            .collect(),
    )
}

#[async_trait::async_trait]
impl Destination for Webhook {
    fn describe(&self) -> String {
        format!("webhook destination `{}` ({})", self.name, redact_url(&self.url))
    }

    fn limits(&self) -> Limits {
        Limits::default()
    }

    async fn check(&self) -> Result<(), String> {
        // A webhook has no read-only endpoint to ask; a connection (any HTTP answer) is the
        // most that can be checked without sending records.
        match self.client.head(&self.url).headers(self.headers.clone()).timeout(self.timeout).send().await {
            Ok(resp) if matches!(resp.status().as_u16(), 401 | 403) => {
                Err(format!("{}: HTTP {}; check the credentials in its headers", self.describe(), resp.status()))
            }
            Ok(_) => Ok(()),
            Err(e) => Err(format!("{}: {}", self.describe(), match transport_error(&e, self.timeout) {
                SendError::Transient { message, .. } => message,
                _ => e.to_string(),
            })),
        }
    }

    async fn send(&self, op: Operation, records: &[OutRecord<'_>]) -> Result<Reply, SendError> {
        let body = serde_json::to_vec(&records.iter().map(|r| r.payload).collect::<Vec<_>>())
            .map_err(|e| SendError::Fatal { message: format!("cannot encode the batch as JSON: {e}") })?;
        let resp = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .header(HeaderName::from_static("x-sluicegate-operation"), op.as_str())
            .timeout(self.timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| transport_error(&e, self.timeout))?;
        let status = resp.status();
        let retry_after = retry_after(resp.headers());
        let bytes = resp.bytes().await.map_err(|e| SendError::Transient {
            message: format!("HTTP {status}: reading the answer failed: {}", e.without_url()),
            retry_after,
        })?;
        let code = status.as_u16();
        if status.is_success() {
            let outcomes = parse_results(&bytes, records.len()).unwrap_or_else(|| vec![Outcome::Accepted; records.len()]);
            return Ok(Reply::new(outcomes));
        }
        let message = format!("HTTP {status}: {}", error_text(&bytes));
        match code {
            429 => Err(SendError::RateLimited { message, retry_after, rate: None }),
            408 => Err(SendError::Transient { message, retry_after }),
            501 => Err(SendError::Fatal { message }),
            500..=599 => Err(SendError::Transient { message, retry_after }),
            401 | 403 => Err(SendError::Fatal {
                message: format!("{message}; check the credentials in the headers of destination `{}`", self.name),
            }),
            404 | 405 => Err(SendError::Fatal { message: format!("{message}; check the destination URL") }),
            _ => Err(SendError::BatchRejected { message }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_by_index_and_missing_ones() {
        let body = br#"{"results":[{"index":1,"status":"rejected","reason":"bad email"},{"index":0,"status":"accepted"}]}"#;
        let out = parse_results(body, 3).unwrap();
        assert_eq!(out[0], Outcome::Accepted);
        assert_eq!(out[1], Outcome::Rejected("bad email".into()));
        assert!(matches!(&out[2], Outcome::Rejected(r) if r.contains("no result")));
        assert!(parse_results(b"OK", 2).is_none());
        let body = br#"{"results":[{"index":0,"status":"exists","reason":"a record with email \"a@x.io\" already exists"}]}"#;
        assert!(matches!(&parse_results(body, 1).unwrap()[0], Outcome::Exists(r) if r.contains("already exists")));
        assert!(parse_results(br#"{"received": 2}"#, 2).is_none());
    }
}
