//! Bulk API 2.0: one ingest job per batch (see the module docs of [`super`]).

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{csv, is_gone, is_passing, outcome_of, Salesforce, SfError};
use crate::destination::{Destination, Operation, OutRecord, Outcome, SendError};

/// Most bytes of CSV per job upload (Salesforce takes 150 MB base64-encoded, ~100 MB raw).
pub const MAX_UPLOAD_BYTES: usize = 100_000_000;

const FIRST_POLL: Duration = Duration::from_millis(200);
const MAX_POLL: Duration = Duration::from_secs(5);

/// A value as a Bulk CSV cell: null clears the field (`#N/A`).
pub(super) fn cell(v: &Value) -> String {
    match v {
        Value::Null => "#N/A".to_string(),
        other => super::value_text(other),
    }
}

/// One CSV row: the record it belongs to, its key cell and its cells.
struct Row {
    record: usize,
    key: String,
    cells: Vec<String>,
}

type Res<T> = std::result::Result<T, SendError>;

fn message_of(e: &SendError) -> &str {
    match e {
        SendError::Fatal { message } | SendError::BatchRejected { message } | SendError::Transient { message, .. } | SendError::RateLimited { message, .. } => message,
    }
}

/// `CODE:message` (Bulk's `sf__Error`) as an error.
fn parse_sf_error(text: &str) -> SfError {
    let text = text.trim().trim_end_matches("--").trim();
    match text.split_once(':') {
        Some((code, msg)) if !code.is_empty() && code.chars().all(|c| c.is_ascii_uppercase() || c == '_') => {
            SfError { code: code.to_string(), message: msg.trim().to_string(), fields: Vec::new() }
        }
        _ => SfError { code: "ERROR".into(), message: text.to_string(), fields: Vec::new() },
    }
}

impl Salesforce {
    pub(super) async fn send_bulk(&self, op: Operation, records: &[OutRecord<'_>]) -> Res<Vec<Outcome>> {
        let mut out: Vec<Option<Outcome>> = vec![None; records.len()];
        let mut rows: Vec<Row> = Vec::with_capacity(records.len());
        let fields_of = |cols: &[String], r: &OutRecord<'_>| -> Vec<String> { cols.iter().map(|c| r.payload.get(c).map(cell).unwrap_or_default()).collect() };
        let (operation, columns): (&str, Vec<String>) = match op {
            Operation::Upsert | Operation::Create | Operation::Append => {
                let cols = self.csv_columns(records);
                for (i, r) in records.iter().enumerate() {
                    let cells = fields_of(&cols, r);
                    rows.push(Row { record: i, key: cells[0].clone(), cells });
                }
                (if op == Operation::Upsert { "upsert" } else { "insert" }, cols)
            }
            Operation::Update if self.by_record_id => {
                let cols = self.csv_columns(records);
                for (i, r) in records.iter().enumerate() {
                    let cells = fields_of(&cols, r);
                    rows.push(Row { record: i, key: cells[0].clone(), cells });
                }
                ("update", cols)
            }
            Operation::Update => {
                let found = self.resolve_ids(records).await?;
                let fields = self.csv_columns(records);
                for (i, r) in records.iter().enumerate() {
                    match self.ids_of(&found, r) {
                        [] => out[i] = Some(self.not_found(r)),
                        [id] => {
                            let mut cells = vec![id.clone()];
                            cells.extend(fields_of(&fields, r));
                            rows.push(Row { record: i, key: id.clone(), cells });
                        }
                        many => out[i] = Some(self.ambiguous(r, many.len())),
                    }
                }
                let mut cols = vec!["Id".to_string()];
                cols.extend(fields);
                ("update", cols)
            }
            Operation::Delete => {
                if self.by_record_id {
                    for (i, r) in records.iter().enumerate() {
                        rows.push(Row { record: i, key: r.identifier.to_string(), cells: vec![r.identifier.to_string()] });
                    }
                } else {
                    let found = self.resolve_ids(records).await?;
                    for (i, r) in records.iter().enumerate() {
                        let ids = self.ids_of(&found, r);
                        if ids.is_empty() {
                            out[i] = Some(Outcome::Accepted); // already gone
                        }
                        for id in ids {
                            rows.push(Row { record: i, key: id.clone(), cells: vec![id.clone()] });
                        }
                    }
                }
                ("delete", vec!["Id".to_string()])
            }
        };
        if !rows.is_empty() {
            let results = self.run_job(op, operation, &columns, &rows).await?;
            for row in &rows {
                let o = results.get(&row.key).cloned().unwrap_or_else(|| Outcome::Rejected("Salesforce returned no result for this record in the Bulk API job's results".into()));
                let slot = &mut out[row.record];
                // A record with several rows (a delete of duplicates) is done when all are.
                if !matches!(slot, Some(Outcome::Rejected(_)) | Some(Outcome::Retry(_))) {
                    *slot = Some(o);
                }
            }
        }
        Ok(out.into_iter().map(|o| o.unwrap_or_else(|| Outcome::Rejected("no result".into()))).collect())
    }

    /// Create, fill, close and wait for one job; the outcome per key cell.
    async fn run_job(&self, op: Operation, operation: &str, columns: &[String], rows: &[Row]) -> Res<HashMap<String, Outcome>> {
        let mut text = String::new();
        csv::write_row(&mut text, columns.iter().map(String::as_str));
        for r in rows {
            csv::write_row(&mut text, r.cells.iter().map(String::as_str));
        }
        let mut job = json!({"object": self.object, "operation": operation, "contentType": "CSV", "lineEnding": "LF", "columnDelimiter": "COMMA"});
        if operation == "upsert" {
            job["externalIdFieldName"] = json!(self.id_field);
        }
        let ans = self.call(Method::POST, "jobs/ingest", Some(("application/json", Bytes::from(job.to_string()))), "application/json").await?;
        if !ans.status.is_success() {
            return Err(self.classify(ans.status, &ans.body));
        }
        let info: Value = serde_json::from_slice(&ans.body).unwrap_or(Value::Null);
        let Some(id) = info.get("id").and_then(Value::as_str).map(str::to_string) else {
            return Err(SendError::Transient { message: "the Bulk API answered a job creation without a job id".into(), retry_after: None });
        };
        let deadline = Instant::now() + self.timeout;
        let upload = self.call(Method::PUT, &format!("jobs/ingest/{id}/batches"), Some(("text/csv", Bytes::from(text))), "application/json").await;
        let upload = match upload {
            Ok(a) if a.status.is_success() => Ok(()),
            Ok(a) => Err(self.classify(a.status, &a.body)),
            Err(e) => Err(e),
        };
        if let Err(e) = upload {
            self.abort(&id).await;
            return Err(e);
        }
        let close = self
            .call(Method::PATCH, &format!("jobs/ingest/{id}"), Some(("application/json", Bytes::from(r#"{"state":"UploadComplete"}"#))), "application/json")
            .await;
        // From here on the records may be applied: a create sent again could be created twice.
        let unknown = |e: SendError| -> SendError {
            match (op, &e) {
                (Operation::Create | Operation::Append, SendError::Transient { .. } | SendError::RateLimited { .. }) => SendError::Fatal {
                    message: format!(
                        "Bulk API job {id}: {}; its records may have been created: check the job in Setup → Bulk Data Load Jobs before running the sync again (a resend could create duplicates)",
                        message_of(&e)
                    ),
                },
                _ => e,
            }
        };
        match close {
            Ok(a) if a.status.is_success() => {}
            Ok(a) => {
                let e = self.classify(a.status, &a.body);
                self.abort(&id).await;
                return Err(e);
            }
            Err(e) => return Err(unknown(e)),
        }
        let mut interval = FIRST_POLL;
        loop {
            let info = match self.get_json(&format!("jobs/ingest/{id}")).await {
                Ok(v) => Some(v),
                Err(e @ SendError::Fatal { .. }) => return Err(e),
                Err(e) => {
                    tracing::warn!(destination = %self.describe(), job = %id, "polling the Bulk API job failed ({}); polling again", message_of(&e));
                    None
                }
            };
            let state = info.as_ref().and_then(|v| v.get("state")).and_then(Value::as_str).unwrap_or("");
            match state {
                "JobComplete" => break,
                "Failed" => {
                    let why = info.as_ref().and_then(|v| v.get("errorMessage")).and_then(Value::as_str).unwrap_or("no reason given");
                    return Err(SendError::Fatal {
                        message: format!("Bulk API job {id} ({operation} of {}) failed: {}; check the sync's object and mappings", self.object, self.scrub(why.to_string(), None)),
                    });
                }
                "Aborted" => {
                    return Err(unknown(SendError::Transient { message: format!("Bulk API job {id} was aborted (in Setup, or by another client)"), retry_after: None }));
                }
                _ => {}
            }
            if Instant::now() + interval > deadline {
                self.abort(&id).await;
                return Err(unknown(SendError::Transient {
                    message: format!("Bulk API job {id} did not finish within {:?} (state {state}); it was aborted", self.timeout),
                    retry_after: None,
                }));
            }
            tokio::time::sleep(interval).await;
            interval = (interval.mul_f64(1.5)).min(MAX_POLL);
        }
        let mut results = HashMap::new();
        let success = self.get_csv(&format!("jobs/ingest/{id}/successfulResults/"), deadline).await.map_err(unknown)?;
        self.read_results(&success, columns, false, operation == "delete", &mut results);
        let failed = self.get_csv(&format!("jobs/ingest/{id}/failedResults/"), deadline).await.map_err(unknown)?;
        self.read_results(&failed, columns, true, operation == "delete", &mut results);
        Ok(results)
    }

    async fn abort(&self, id: &str) {
        let _ = self.call(Method::PATCH, &format!("jobs/ingest/{id}"), Some(("application/json", Bytes::from(r#"{"state":"Aborted"}"#))), "application/json").await;
    }

    async fn get_json(&self, path: &str) -> Res<Value> {
        let a = self.call(Method::GET, path, None, "application/json").await?;
        if !a.status.is_success() {
            return Err(self.classify(a.status, &a.body));
        }
        serde_json::from_slice(&a.body).map_err(|e| SendError::Transient { message: format!("the Bulk API answer is not JSON: {e}"), retry_after: None })
    }

    /// A results CSV, asking again on passing failures until `deadline`.
    async fn get_csv(&self, path: &str, deadline: Instant) -> Res<Vec<Vec<String>>> {
        let mut interval = FIRST_POLL;
        loop {
            let got = match self.call(Method::GET, path, None, "text/csv").await {
                Ok(a) if a.status.is_success() => {
                    let text = String::from_utf8_lossy(&a.body);
                    return csv::parse(&text).map_err(|e| SendError::Fatal { message: format!("the Bulk API results are not CSV ({e})") });
                }
                Ok(a) => self.classify(a.status, &a.body),
                Err(e) => e,
            };
            if matches!(got, SendError::Fatal { .. } | SendError::BatchRejected { .. }) || Instant::now() + interval > deadline {
                return Err(got);
            }
            tokio::time::sleep(interval).await;
            interval = (interval.mul_f64(1.5)).min(MAX_POLL);
        }
    }

    /// Outcomes by key from a results CSV (`sf__Id, sf__Created | sf__Error, <columns>`).
    fn read_results(&self, rows: &[Vec<String>], columns: &[String], failed: bool, delete: bool, out: &mut HashMap<String, Outcome>) {
        let Some(header) = rows.first() else { return };
        let key_name = &columns[0];
        let key_col = header.iter().position(|h| h == key_name).or_else(|| header.iter().position(|h| h.eq_ignore_ascii_case(key_name)));
        // Deletes and updates by Id: the Id column may only come back as sf__Id.
        let key_col = key_col.or_else(|| (key_name == "Id").then(|| header.iter().position(|h| h == "sf__Id")).flatten());
        let Some(key_col) = key_col else { return };
        let err_col = header.iter().position(|h| h == "sf__Error");
        for row in &rows[1..] {
            let Some(key) = row.get(key_col) else { continue };
            let outcome = if failed {
                let e = parse_sf_error(err_col.and_then(|c| row.get(c)).map(String::as_str).unwrap_or(""));
                if delete && is_gone(&e.code) {
                    Outcome::Accepted
                } else if is_passing(&e.code, &e.message) {
                    Outcome::Retry(e.text())
                } else {
                    outcome_of(std::slice::from_ref(&e))
                }
            } else {
                Outcome::Accepted
            };
            out.insert(key.clone(), outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_errors_and_cells() {
        let e = parse_sf_error("REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --");
        assert_eq!(e.code, "REQUIRED_FIELD_MISSING");
        assert_eq!(e.message, "Required fields are missing: [LastName]:LastName");
        assert_eq!(cell(&Value::Null), "#N/A");
        assert_eq!(cell(&json!(1.5)), "1.5");
        assert_eq!(cell(&json!(true)), "true");
    }
}
