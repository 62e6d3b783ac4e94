//! Destinations turn a batch of mapped records into requests and the answers into one outcome
//! per record. Retrying, backoff and pacing live in [`crate::deliver`], shared by all of them.

pub mod webhook;

use std::time::Duration;

use serde_json::{Map, Value};

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
    pub identifier: &'a str,
    pub payload: &'a Map<String, Value>,
}

/// The destination's verdict on one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Rejected(String),
}

/// Why a whole batch was not delivered.
#[derive(Debug, Clone)]
pub enum SendError {
    /// Worth retrying (rate limit, 5xx, timeout, connection reset); `retry_after` when the
    /// destination said how long to wait.
    Transient { message: String, retry_after: Option<Duration> },
    /// Retrying cannot help (bad credentials, wrong URL): the run fails.
    Fatal { message: String },
    /// The destination refused the batch as a whole for its content: every record is rejected.
    BatchRejected { message: String },
}

#[async_trait::async_trait]
pub trait Destination: Send + Sync {
    /// `webhook destination "crm" (http://host/path)`, for messages; never shows secrets.
    fn describe(&self) -> String;
    /// Records per request.
    fn batch_size(&self) -> usize;
    /// Send one batch; on success, one outcome per record, in order.
    async fn send(&self, op: Operation, records: &[OutRecord<'_>]) -> Result<Vec<Outcome>, SendError>;
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
