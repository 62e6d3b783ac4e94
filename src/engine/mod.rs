//! Runs one sync end to end: read the source, map and fingerprint every row, diff against the
//! acknowledged state, deliver new and changed rows in batches, and after each batch commit the
//! fingerprints of exactly the rows the destination accepted (the one invariant: state advances
//! only on acknowledgement). Rejected and invalid rows are recorded with their reason.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};

use crate::config::{did_you_mean, DestinationConfig, DestinationKind, Project, SyncConfig, SyncRef};
use crate::deliver::send_with_retry;
use crate::destination::webhook::Webhook;
use crate::destination::{Destination, Operation, OutRecord, Outcome};
use crate::diff::{Op, Planner};
use crate::error::{Error, ErrorKind, Result};
use crate::source::Source;
use crate::store::{
    self, RecordKind, RunCounts, RunEnd, RunRecord, RunRecordOutcome, RunStatus, Store, TriggerReason,
};

/// Human-readable steps, as Census names them.
pub mod step {
    pub const CHECKING: &str = "Checking source and destination configuration";
    pub const UNLOADING: &str = "Unloading data from warehouse";
    pub const LOADING: &str = "Loading data into destination service";
}

/// How to open an engine.
#[derive(Debug, Default, Clone)]
pub struct EngineOptions {
    /// State store URL; else the project's `state`, else `sluicegate_state.db` beside the project.
    pub state: Option<String>,
    /// Values for `${VARS}` that take precedence over the process environment.
    pub env: HashMap<String, String>,
}

/// Progress of a working run, reported after each step and batch.
#[derive(Debug, Clone)]
pub struct Progress {
    pub run_id: i64,
    pub step: &'static str,
    pub counts: RunCounts,
}

pub type ProgressFn<'a> = &'a (dyn Fn(&Progress) + Send + Sync);

pub fn no_progress(_: &Progress) {}

pub struct Engine {
    project: Project,
    store: Arc<dyn Store>,
    state_url: String,
}

/// One HTTP client per process (connection reuse); built on first use, never at import.
pub fn http_client() -> Result<reqwest::Client> {
    static CLIENT: OnceLock<std::sync::Mutex<Option<(u32, reqwest::Client)>>> = OnceLock::new();
    let cell = CLIENT.get_or_init(|| std::sync::Mutex::new(None));
    let mut guard = cell.lock().unwrap_or_else(|p| p.into_inner());
    let pid = std::process::id();
    if let Some((p, c)) = guard.as_ref() {
        if *p == pid {
            return Ok(c.clone());
        }
    }
    // Ignore the error when a provider is installed already (by us or the host program).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .user_agent(concat!("sluicegate/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .build()
        .map_err(|e| Error::other("cannot build the HTTP client").with_source(e))?;
    if let Some(old) = guard.take() {
        // A client from before a fork holds connections of the parent: never touch it again.
        std::mem::forget(old);
    }
    *guard = Some((pid, client.clone()));
    Ok(client)
}

fn executor_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

fn error_code(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Config => "CONFIG_ERROR",
        ErrorKind::Source => "SOURCE_ERROR",
        ErrorKind::Destination => "DESTINATION_ERROR",
        ErrorKind::Store => "STATE_STORE_ERROR",
        _ => "INTERNAL_ERROR",
    }
}

impl Engine {
    pub async fn open(project_path: impl AsRef<Path>, opts: EngineOptions) -> Result<Engine> {
        let env = |name: &str| opts.env.get(name).cloned().or_else(|| std::env::var(name).ok());
        let project = Project::load_with_env(project_path, &env)?;
        let state_url = opts
            .state
            .clone()
            .or_else(|| project.state.as_ref().map(|s| s.expose().to_string()))
            .unwrap_or_else(|| store::default_state_url(&project.dir));
        let store = store::open(&state_url, &project.dir).await?;
        Ok(Engine { project, store, state_url })
    }

    pub fn project(&self) -> &Project {
        &self.project
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The state store URL in use, with any password removed.
    pub fn state_url(&self) -> String {
        crate::config::redact_url(&self.state_url)
    }

    /// Queue a run of a sync; returns the run id.
    pub async fn trigger(&self, sync: &SyncRef, full_sync: bool, reason: &TriggerReason) -> Result<i64> {
        let s = self.project.sync(sync)?;
        self.store.create_run(s.id, &s.name, full_sync, reason).await
    }

    pub async fn get_run(&self, run_id: i64) -> Result<RunRecord> {
        self.store.get_run(run_id).await
    }

    pub async fn list_runs(&self, sync: Option<&SyncRef>, limit: i64) -> Result<Vec<RunRecord>> {
        let id = match sync {
            Some(r) => Some(self.project.sync(r)?.id),
            None => None,
        };
        self.store.list_runs(id, limit).await
    }

    pub async fn run_records(&self, run_id: i64, limit: i64) -> Result<Vec<RunRecordOutcome>> {
        self.store.get_run(run_id).await?;
        self.store.run_records(run_id, limit).await
    }

    /// Connect to the sync's source and check that every mapped column exists.
    pub async fn check_sync(&self, sync: &SyncConfig) -> Result<(Source, Vec<String>)> {
        let src_cfg = &self.project.sources[&sync.source];
        let source = Source::connect(src_cfg).await.map_err(|e| self.sync_error(sync, e))?;
        let columns = match source.columns(&sync.relation).await {
            Ok(c) => c,
            Err(e) => {
                let msg = self.project.located(sync.relation_pos, &sync.relation_path, e.message());
                return Err(Error::source_err(format!("sync {} ({}): {msg}", sync.id, sync.name)).with_source(e));
            }
        };
        let mut problems = Vec::new();
        for m in sync.all_mappings() {
            if !columns.iter().any(|c| c == &m.from) {
                problems.push(self.project.located(
                    m.from_pos,
                    &m.from_path,
                    format!(
                        "column `{}` is not in the source{}; its columns are: {}",
                        m.from,
                        did_you_mean(&m.from, columns.iter().map(String::as_str)),
                        columns.join(", ")
                    ),
                ));
            }
        }
        if !problems.is_empty() {
            return Err(Error::config(format!(
                "sync {} ({}): {} mapped column{} missing from source `{}`:\n  {}",
                sync.id,
                sync.name,
                problems.len(),
                if problems.len() == 1 { " is" } else { "s are" },
                sync.source,
                problems.join("\n  ")
            )));
        }
        Ok((source, columns))
    }

    fn sync_error(&self, sync: &SyncConfig, e: Error) -> Error {
        let kind = e.kind();
        Error::new(kind, format!("sync {} ({})", sync.id, sync.name)).with_source(e)
    }

    fn destination(&self, sync: &SyncConfig, cfg: &DestinationConfig) -> Result<Box<dyn Destination>> {
        Ok(match &cfg.kind {
            DestinationKind::Webhook(w) => {
                Box::new(Webhook::new(&cfg.name, w, &sync.name, sync.object.as_deref(), http_client()?))
            }
        })
    }

    /// Claim a queued run and execute it in this process. A run that fails is recorded as
    /// `failed` with its error and returned as `Ok`; `Err` means the run could not be executed
    /// or recorded at all.
    pub async fn run(&self, run_id: i64, progress: ProgressFn<'_>) -> Result<RunRecord> {
        let run = self.store.get_run(run_id).await?;
        let sync = match self.project.sync(&SyncRef::Id(run.sync_id)) {
            Ok(s) => s.clone(),
            Err(e) => {
                let end = RunEnd {
                    status: RunStatus::Failed,
                    error_code: Some("CONFIG_ERROR".into()),
                    error_message: Some(e.full_message()),
                    error_detail: None,
                    counts: RunCounts::default(),
                };
                self.store.claim_run(run_id, &executor_id()).await?;
                return self.store.finish_run(run_id, &end).await;
            }
        };
        self.store.claim_run(run_id, &executor_id()).await?;
        let mut counts = RunCounts::default();
        let result = self.execute(&run, &sync, &mut counts, progress).await;
        let end = match result {
            Ok(()) => RunEnd { status: RunStatus::Completed, error_code: None, error_message: None, error_detail: None, counts },
            Err(e) => {
                tracing::error!(run_id, sync_id = sync.id, "run failed: {}", e.full_message());
                RunEnd {
                    status: RunStatus::Failed,
                    error_code: Some(error_code(e.kind()).into()),
                    error_message: Some(e.full_message()),
                    error_detail: None,
                    counts,
                }
            }
        };
        self.store.finish_run(run_id, &end).await
    }

    async fn execute(&self, run: &RunRecord, sync: &SyncConfig, counts: &mut RunCounts, progress: ProgressFn<'_>) -> Result<()> {
        let report = |step: &'static str, counts: &RunCounts| progress(&Progress { run_id: run.id, step, counts: counts.clone() });
        report(step::CHECKING, counts);
        let dest_cfg = &self.project.destinations[&sync.destination];
        let dest = self.destination(sync, dest_cfg)?;
        let (source, _) = self.check_sync(sync).await?;

        self.store.update_progress(run.id, step::UNLOADING, counts).await?;
        report(step::UNLOADING, counts);
        // Select each needed column once; remember where every mapping reads from.
        let mut select: Vec<String> = Vec::new();
        let mut index_of = |col: &str| match select.iter().position(|c| c == col) {
            Some(i) => i,
            None => {
                select.push(col.to_string());
                select.len() - 1
            }
        };
        let id_idx = index_of(&sync.primary_identifier.from);
        let fields: Vec<(String, usize)> = sync.all_mappings().map(|m| (m.to.clone(), index_of(&m.from))).collect();
        let operation = sync.behavior.as_str();
        let mut planner = Planner::new(operation);
        let mut sink = |values: Vec<Value>| -> Result<()> {
            let mut payload = Map::new();
            for (to, i) in &fields {
                payload.insert(to.clone(), values[*i].clone());
            }
            planner.push(&values[id_idx], payload);
            Ok(())
        };
        source.scan(&sync.relation, &select, &mut sink).await.map_err(|e| self.sync_error(sync, e))?;
        let state = self.store.load_state(sync.id).await?;
        let plan = planner.plan(&state, run.full_sync);
        drop(state);

        counts.source_record_count = Some(plan.source_rows);
        counts.source_record_updates = Some(plan.rows.len() as i64);
        counts.source_record_deletes = Some(0);
        counts.records_invalid = Some(plan.invalid.len() as i64);
        counts.records_processed = Some(0);
        counts.records_updated = Some(0);
        counts.records_failed = Some(0);
        counts.planned.adds = plan.adds();
        counts.planned.changes = plan.changes();
        self.store.commit_batch(run.id, sync.id, &[], &plan.invalid, counts).await?;
        self.store.update_progress(run.id, step::LOADING, counts).await?;
        report(step::LOADING, counts);

        let op = Operation::Upsert;
        let batch_size = dest.batch_size().max(1);
        for batch in plan.rows.chunks(batch_size) {
            let records: Vec<OutRecord> = batch.iter().map(|r| OutRecord { identifier: &r.identifier, payload: &r.payload }).collect();
            let outcomes = send_with_retry(dest.as_ref(), &dest_cfg.retry, op, &records).await?;
            let mut acked = Vec::with_capacity(batch.len());
            let mut rejected = Vec::new();
            for (row, outcome) in batch.iter().zip(outcomes) {
                let (ok, failed) = match row.op {
                    Op::Add => (&mut counts.succeeded.adds, &mut counts.failed.adds),
                    Op::Change => (&mut counts.succeeded.changes, &mut counts.failed.changes),
                };
                match outcome {
                    Outcome::Accepted => {
                        *ok += 1;
                        acked.push((row.identifier.clone(), row.fingerprint));
                    }
                    Outcome::Rejected(reason) => {
                        *failed += 1;
                        rejected.push(RunRecordOutcome {
                            identifier: Some(row.identifier.clone()),
                            kind: RecordKind::Rejected,
                            operation: operation.to_string(),
                            reason,
                            payload: Some(Value::Object(row.payload.clone()).to_string()),
                        });
                    }
                }
            }
            counts.records_processed = Some(counts.records_processed.unwrap_or(0) + batch.len() as i64);
            counts.records_updated = Some(counts.succeeded.total());
            counts.records_failed = Some(counts.failed.total());
            self.store.commit_batch(run.id, sync.id, &acked, &rejected, counts).await?;
            report(step::LOADING, counts);
        }
        Ok(())
    }
}
