//! The state store: runs, row state (identifier → fingerprint) and the rows a run did not
//! deliver. SQLite by default; the [`Store`] trait is the seam for other backends.
//!
//! A row's fingerprint is written in two steps: before its batch is sent, as [`IN_DOUBT`]
//! (which matches no payload, so a run that dies mid-request leaves the row to be sent again);
//! then, once the destination acknowledged it, as its real fingerprint. A refused add loses its
//! entry. State thus never claims a delivery the destination did not acknowledge.

mod common;
mod migrations;
mod postgres;
mod sqlite;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::BoxStream;

use serde::Serialize;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::error::{Error, Result};

/// Census run statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Queued,
    Working,
    Completed,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Working => "working",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Result<RunStatus> {
        Ok(match s {
            "queued" => RunStatus::Queued,
            "working" => RunStatus::Working,
            "completed" => RunStatus::Completed,
            "failed" => RunStatus::Failed,
            other => return Err(Error::store(format!("unknown run status {other:?} in the state store"))),
        })
    }
    pub fn is_terminal(self) -> bool {
        matches!(self, RunStatus::Completed | RunStatus::Failed)
    }
}

/// Adds / changes / removes, as planned or as they turned out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OpCounts {
    pub adds: i64,
    pub changes: i64,
    pub removes: i64,
}

impl OpCounts {
    pub fn total(&self) -> i64 {
        self.adds + self.changes + self.removes
    }
}

/// The counts of a run. The Census counts are `None` until the run reached that stage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunCounts {
    pub source_record_count: Option<i64>,
    pub source_record_updates: Option<i64>,
    pub source_record_deletes: Option<i64>,
    pub records_invalid: Option<i64>,
    pub records_processed: Option<i64>,
    pub records_updated: Option<i64>,
    pub records_failed: Option<i64>,
    pub planned: OpCounts,
    pub succeeded: OpCounts,
    pub failed: OpCounts,
}

#[derive(Debug, Clone, Serialize)]
pub struct TriggerReason {
    pub ui_tag: String,
    pub ui_detail: String,
}

/// A run as stored, with Census field names when serialized.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: i64,
    pub sync_id: i64,
    pub sync_name: String,
    pub status: RunStatus,
    pub created_at: String,
    pub updated_at: String,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub scheduled_execution_time: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub error_detail: Option<String>,
    pub canceled: bool,
    pub full_sync: bool,
    pub sync_trigger_reason: TriggerReason,
    pub current_step: Option<String>,
    #[serde(flatten)]
    pub counts: RunCounts,
    /// Census's newer name for `records_invalid`.
    pub source_record_invalids: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    Invalid,
    Rejected,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Invalid => "invalid",
            RecordKind::Rejected => "rejected",
        }
    }
}

/// A row the run did not deliver, and why.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecordOutcome {
    pub identifier: Option<String>,
    pub kind: RecordKind,
    pub operation: String,
    pub reason: String,
    /// The mapped payload as JSON text, when there is one.
    pub payload: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunEnd {
    pub status: RunStatus,
    pub canceled: bool,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub error_detail: Option<String>,
    pub counts: RunCounts,
}

/// 128-bit fingerprint of a delivered payload.
pub type Fingerprint = u128;

/// The fingerprint of a row whose delivery is in doubt: written before a batch is sent, and
/// replaced by the real one only when the destination acknowledges it. A run killed (or
/// failed) mid-batch thus leaves state that matches no payload, so the next run sends the row
/// again, whatever its value is by then.
pub const IN_DOUBT: Fingerprint = 0;

/// One row of a sync's state: its sort key, identifier and fingerprint (the acknowledged
/// payload's, or [`IN_DOUBT`] while a delivery awaits its answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEntry {
    pub key: Vec<u8>,
    pub identifier: String,
    pub fingerprint: Fingerprint,
}

/// A change to a sync's state: an in-doubt mark written before a batch is sent, or what the
/// destination's answer acknowledged (a real fingerprint, a delete done, a refused add's mark
/// removed).
#[derive(Debug, Clone)]
pub enum StateChange {
    Put(StateEntry),
    Remove(Vec<u8>),
}

/// The answer to a claim.
#[derive(Debug)]
pub enum Claim {
    /// The run is ours and `working`.
    Claimed(RunRecord),
    /// Another run of the same sync is working; try again later.
    Busy { working_run: i64 },
    /// The run is no longer queued (finished, canceled, or claimed by someone else).
    NotQueued(RunRecord),
}

/// What a heartbeat learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beat {
    /// False when the run is no longer working under this executor (its lease was taken).
    pub still_owner: bool,
    pub cancel_requested: bool,
}

/// Which rows of a run to list (`GET /sync_runs/{id}/records`): every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct RecordFilter {
    pub kind: Option<RecordKind>,
    pub identifier: Option<String>,
    pub operation: Option<String>,
}

/// A row a run did not deliver, as stored, with the time it was recorded.
#[derive(Debug, Clone, Serialize)]
pub struct StoredRecord {
    #[serde(flatten)]
    pub outcome: RunRecordOutcome,
    pub recorded_at: String,
}

/// Runs of one sync in one status, with the row counts they add up to (for metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunTotals {
    pub sync_id: i64,
    pub status: String,
    pub canceled: bool,
    pub runs: i64,
    pub records_updated: i64,
    pub records_failed: i64,
    pub records_invalid: i64,
}

/// Whether the process behind an executor id is alive: `Some(false)` only when it is certain
/// (same host, process gone); `None` when unknown (another host: the lease decides).
pub type Liveness<'a> = &'a (dyn Fn(&str) -> Option<bool> + Send + Sync);

#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// Insert a queued run and return its id.
    async fn create_run(&self, sync_id: i64, sync_name: &str, full_sync: bool, reason: &TriggerReason) -> Result<i64>;
    /// Insert a run already `working` for `executor` under a lease of `lease`, in one statement,
    /// unless another run of the same sync is working (`None`: nothing inserted). For runs
    /// executed by the process that triggers them: no death between creating and claiming can
    /// leave such a run queued with no one to execute it.
    async fn create_claimed_run(
        &self,
        sync_id: i64,
        sync_name: &str,
        full_sync: bool,
        reason: &TriggerReason,
        executor: &str,
        lease: Duration,
    ) -> Result<Option<RunRecord>>;
    /// Move a queued run to `working` for `executor`, holding a lease of `lease`, unless another
    /// run of the same sync is working.
    async fn claim_run(&self, run_id: i64, executor: &str, lease: Duration) -> Result<Claim>;
    /// Extend the lease of a working run and read its cancel flag.
    async fn heartbeat(&self, run_id: i64, executor: &str, lease: Duration) -> Result<Beat>;
    /// Fail working runs whose executor is gone (`alive` says so) or whose lease expired.
    /// Returns how many runs were failed.
    async fn reap_lost_runs(&self, alive: Liveness<'_>) -> Result<u64>;
    /// Cancel a run: a queued run ends at once; a working run is flagged and its executor stops
    /// after the batch in flight. Returns the run as it is now.
    async fn request_cancel(&self, run_id: i64) -> Result<RunRecord>;
    async fn get_run(&self, run_id: i64) -> Result<RunRecord>;
    async fn list_runs(&self, sync_id: Option<i64>, limit: i64) -> Result<Vec<RunRecord>>;
    /// Record progress of a working run (a run no longer working is left alone).
    async fn update_progress(&self, run_id: i64, step: &str, counts: &RunCounts) -> Result<()>;
    /// This sync's state, in `key` order (byte-wise): what the destination acknowledged, and
    /// the rows whose delivery is in doubt ([`IN_DOUBT`]).
    fn state_stream(&self, sync_id: i64) -> BoxStream<'_, Result<StateEntry>>;
    /// In one transaction: apply state changes (the in-doubt marks written before a batch is
    /// sent, then what the destination's answer acknowledged), record rows not delivered, and
    /// save the run's counts. Only while the run is `working` under `executor`: otherwise
    /// nothing is written and the error says that this executor lost its lease. Returns whether
    /// the run has been asked to cancel.
    async fn commit_batch(
        &self,
        run_id: i64,
        executor: &str,
        sync_id: i64,
        changes: &[StateChange],
        outcomes: &[RunRecordOutcome],
        counts: &RunCounts,
    ) -> Result<bool>;
    async fn finish_run(&self, run_id: i64, end: &RunEnd) -> Result<RunRecord>;
    async fn run_records(&self, run_id: i64, limit: i64) -> Result<Vec<RunRecordOutcome>>;

    // --- For `sluicegate serve`: its own queue of runs, pages, totals. ---

    /// Insert a queued run for the `serve` workers (an API or schedule trigger) and return its id;
    /// `None` when a run of this sync for the same `scheduled_execution_time` exists already
    /// (a schedule's slot is triggered once, whatever the number of replicas).
    async fn create_served_run(
        &self,
        sync_id: i64,
        sync_name: &str,
        full_sync: bool,
        reason: &TriggerReason,
        scheduled_execution_time: Option<&str>,
    ) -> Result<Option<i64>>;
    /// Claim the oldest queued served run among `sync_ids` whose sync has no working run and no
    /// older queued served run, moving it to `working` for `executor` under a lease. Among any
    /// number of concurrent callers (replicas sharing a Postgres store), each run goes to
    /// exactly one; `None` when there is nothing to claim now.
    async fn claim_next_served(&self, executor: &str, lease: Duration, sync_ids: &[i64]) -> Result<Option<RunRecord>>;
    /// Give a working run back to the queue (a worker shutting down after the batch in flight):
    /// the next claim resumes it from what the destination acknowledged. False when the run was
    /// no longer working under `executor`.
    async fn release_run(&self, run_id: i64, executor: &str) -> Result<bool>;
    /// How many runs there are (of one sync, or all).
    async fn count_runs(&self, sync_id: Option<i64>) -> Result<i64>;
    /// One page of runs (of one sync, or all) by creation order.
    async fn page_runs(&self, sync_id: Option<i64>, offset: i64, limit: i64, ascending: bool) -> Result<Vec<RunRecord>>;
    /// The latest run of every sync that has one.
    async fn last_runs(&self) -> Result<Vec<RunRecord>>;
    /// One page of the rows a run did not deliver, in the order they were recorded.
    async fn page_records(&self, run_id: i64, filter: &RecordFilter, offset: i64, limit: i64) -> Result<Vec<StoredRecord>>;
    async fn count_records(&self, run_id: i64, filter: &RecordFilter) -> Result<i64>;
    /// Runs and row counts by sync, status and cancellation.
    async fn run_totals(&self) -> Result<Vec<RunTotals>>;
}

/// Why a working run counts as lost, if it does: its executor's process is gone (same host), or
/// its lease expired before `now`.
/// The error of a write refused because the run is no longer this executor's.
pub(crate) fn lease_lost(run_id: i64) -> Error {
    Error::new(
        crate::error::ErrorKind::RunState,
        format!("this executor lost its lease on run {run_id}; another executor took over; nothing more is written"),
    )
}

pub(crate) fn lost_reason(executor: &str, lease: Option<&str>, now: &str, alive: Liveness<'_>) -> Option<String> {
    let why = if alive(executor) == Some(false) {
        format!("executor lost: process {executor} ended without finishing the run")
    } else if let Some(l) = lease.filter(|l| *l < now) {
        format!("executor lost: {executor} stopped renewing its lease (expired {l})")
    } else {
        return None;
    };
    Some(format!("{why}; the next run resumes from what the destination acknowledged"))
}

/// The default state store URL for a project file: `sluicegate_state.db` beside it.
pub fn default_state_url(project_dir: &Path) -> String {
    format!("sqlite://{}", project_dir.join("sluicegate_state.db").display())
}

/// Open (and migrate) the store a URL names: `postgres://user:pw@host:5432/db`, `sqlite:///abs/path.db`,
/// `sqlite://rel.db` (relative to `base_dir`), or a plain file path.
pub async fn open(url: &str, base_dir: &Path) -> Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PgStore::open(url).await?));
    }
    let file = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    let file = file.split('?').next().unwrap_or(file);
    if file.is_empty() || file.contains("://") {
        return Err(Error::store(format!(
            "unsupported state store URL {:?}; use `sqlite:///abs/path/state.db` or `postgres://user@host:5432/db`",
            crate::config::redact_url(url)
        )));
    }
    let path = Path::new(file);
    let path = if path.is_absolute() { path.to_path_buf() } else { base_dir.join(path) };
    Ok(Arc::new(SqliteStore::open(&path).await?))
}

/// Timestamps are stored in one fixed-width format so that text order is time order.
const TS_FORMAT: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// A time as RFC 3339 UTC with milliseconds (fixed width).
pub fn timestamp(t: time::OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC).format(TS_FORMAT).unwrap_or_default()
}

/// Now, as [`timestamp`].
pub fn now() -> String {
    timestamp(time::OffsetDateTime::now_utc())
}

/// Now plus `d`, as [`timestamp`].
pub fn now_plus(d: Duration) -> String {
    timestamp(time::OffsetDateTime::now_utc() + d)
}
