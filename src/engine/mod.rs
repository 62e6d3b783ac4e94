//! Runs one sync end to end. The source is read ordered by the state key and merged, row by
//! row, with the acknowledged state (also key-ordered), so memory stays bounded whatever the
//! table size. New and changed rows (and, for mirror syncs, rows that left the source) are
//! delivered in batches; each batch's rows are marked in doubt in the state before it is sent,
//! and after its answer the state of exactly the rows the destination accepted is committed
//! (the one invariant: state advances only on acknowledgement). Rejected and invalid rows are
//! recorded with their reason.
//!
//! A run is claimed under a lease that a heartbeat renews; a run whose executor is gone is
//! failed as "executor lost" by whoever looks next. Exactly one run per sync works at a time:
//! a second run waits for the first. Cancellation stops a run after the batch in flight.

mod delivery;
mod map;
pub mod worker;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

pub use map::{convert, Mapper};

use crate::config::{did_you_mean, Behavior, Project, Relation, SyncConfig, SyncRef};
use crate::deliver::Deliverer;
use crate::destination::{BuildContext, Destination, Operation};
use delivery::Delivery;
use crate::diff::key::{self, KeyOrder};
use crate::error::{Error, ErrorKind, Result};
use crate::source::{Chunk, ColumnInfo, RawCodec, Rows, Source};
use crate::store::{
    self, Claim, RecordKind, RunCounts, RunRecord, RunRecordOutcome, StateEntry, Store,
    TriggerReason,
};

/// Human-readable steps, as Census names them.
pub mod step {
    pub const CHECKING: &str = "Checking source and destination configuration";
    pub const UNLOADING: &str = "Unloading data from warehouse";
    pub const LOADING: &str = "Loading data into destination service";
    pub const WAITING: &str = "Waiting for the previous run of this sync";
}

/// How long a run's lease lasts without a heartbeat, unless `SLUICEGATE_LEASE` says otherwise.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// How often a waiting run checks whether it may start.
const CLAIM_POLL: Duration = Duration::from_millis(250);
/// How often a working run records its progress in the store while reading.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// Invalid rows are written to the store in groups of this many.
const INVALID_FLUSH: usize = 1000;

/// How to open an engine.
#[derive(Default, Clone)]
pub struct EngineOptions {
    /// State store URL; else the project's `state`, else `sluicegate_state.db` beside the project.
    pub state: Option<String>,
    /// Values for `${VARS}` that take precedence over the process environment.
    pub env: HashMap<String, String>,
    /// Lease of a working run; else `SLUICEGATE_LEASE` (e.g. `30s`), else 60 s.
    pub lease: Option<Duration>,
}

/// Never shows a secret: the state URL without its user, password and query, and the names
/// of the `env` values only.
impl std::fmt::Debug for EngineOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env: std::collections::BTreeMap<&str, &str> = self.env.keys().map(|k| (k.as_str(), "<redacted>")).collect();
        f.debug_struct("EngineOptions")
            .field("state", &self.state.as_deref().map(crate::config::redact_url))
            .field("env", &env)
            .field("lease", &self.lease)
            .finish()
    }
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

/// What a dry run found: counts and a few sample records of each kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PlanReport {
    pub sync_id: i64,
    pub sync_name: String,
    pub behavior: String,
    pub full_sync: bool,
    pub source_rows: i64,
    pub unchanged: i64,
    pub adds: i64,
    pub changes: i64,
    pub removes: i64,
    pub invalid: i64,
    pub samples: PlanSamples,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PlanSamples {
    pub adds: Vec<Value>,
    pub changes: Vec<Value>,
    pub removes: Vec<Value>,
    pub invalid: Vec<RunRecordOutcome>,
}

pub struct Engine {
    project: Project,
    store: Arc<dyn Store>,
    state_url: String,
    lease: Duration,
    executor: String,
    /// The runs this engine is executing now: a cancel from this process stops them at once,
    /// without waiting for the heartbeat to read the request from the store.
    working: std::sync::Mutex<HashMap<i64, Arc<RunControl>>>,
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
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| Error::other("cannot build the HTTP client").with_source(e))?;
    if let Some(old) = guard.take() {
        // A client from before a fork holds connections of the parent: never touch it again.
        std::mem::forget(old);
    }
    *guard = Some((pid, client.clone()));
    Ok(client)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The start time of a process (clock ticks since boot), to tell a pid from its reuse.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3; starttime is 22.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// `host:pid:start`: who executes a run.
pub fn executor_id() -> String {
    let pid = std::process::id();
    format!("{}:{pid}:{}", hostname(), process_start(pid).unwrap_or(0))
}

/// Whether the executor behind an id is alive: certain only for processes on this host.
pub fn executor_alive(executor: &str) -> Option<bool> {
    let mut parts = executor.rsplitn(3, ':');
    let start: u64 = parts.next()?.parse().ok()?;
    let pid: u32 = parts.next()?.parse().ok()?;
    let host = parts.next()?;
    if host != hostname() || start == 0 || !Path::new("/proc/self/stat").exists() {
        return None;
    }
    Some(process_start(pid) == Some(start))
}

fn error_code(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Config => "CONFIG_ERROR",
        ErrorKind::Source => "SOURCE_ERROR",
        ErrorKind::Destination => "DESTINATION_ERROR",
        ErrorKind::Store => "STATE_STORE_ERROR",
        ErrorKind::Canceled => "CANCELED",
        _ => "INTERNAL_ERROR",
    }
}

/// Flags the heartbeat raises for the run it watches.
#[derive(Default)]
struct RunControl {
    cancel: AtomicBool,
    lost: AtomicBool,
    /// Set when the run should yield once throttled (see `worker::RunOptions`).
    throttle_yield: Option<Arc<crate::deliver::ThrottleYield>>,
}

impl RunControl {
    fn check(&self) -> Result<()> {
        if self.lost.load(Ordering::Relaxed) {
            return Err(Error::new(ErrorKind::RunState, "this executor lost the run's lease; another executor failed it"));
        }
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Error::new(ErrorKind::Canceled, "canceled by request"));
        }
        Ok(())
    }
}

impl Engine {
    pub async fn open(project_path: impl AsRef<Path>, opts: EngineOptions) -> Result<Engine> {
        let env = |name: &str| opts.env.get(name).cloned().or_else(|| std::env::var(name).ok());
        let project = Project::load_with_env(project_path, &env)?;
        let lease = match opts.lease {
            Some(l) => l,
            None => match env("SLUICEGATE_LEASE") {
                Some(text) => crate::config::parse_duration(&text)
                    .filter(|d| *d >= Duration::from_secs(1))
                    .ok_or_else(|| Error::config(format!("SLUICEGATE_LEASE={text:?} is not a duration of at least 1s (e.g. 30s)")))?,
                None => DEFAULT_LEASE,
            },
        };
        let state_url = opts
            .state
            .clone()
            .or_else(|| project.state.as_ref().map(|s| s.expose().to_string()))
            .unwrap_or_else(|| store::default_state_url(&project.dir));
        let store = store::open(&state_url, &project.dir).await?;
        Ok(Engine { project, store, state_url, lease, executor: executor_id(), working: Default::default() })
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

    /// The sync a trigger names, if it may run (`full_sync` is refused for syncs that send each
    /// row once).
    fn triggerable(&self, sync: &SyncRef, full_sync: bool) -> Result<&SyncConfig> {
        let s = self.project.sync(sync)?;
        if full_sync && matches!(s.behavior, Behavior::Append | Behavior::Create) {
            return Err(Error::config(format!(
                "sync {} ({}) is a {} sync: it sends each row once, so it has no full sync; trigger it without full_sync",
                s.id,
                s.name,
                s.behavior.as_str()
            )));
        }
        Ok(s)
    }

    /// Queue a run of a sync; returns the run id.
    pub async fn trigger(&self, sync: &SyncRef, full_sync: bool, reason: &TriggerReason) -> Result<i64> {
        let s = self.triggerable(sync, full_sync)?;
        self.store.create_run(s.id, &s.name, full_sync, reason).await
    }

    /// Trigger a run and execute it in this process (`sluicegate run`). The run is created
    /// already claimed, in one store transaction: a process killed at any point leaves no
    /// queued run behind that no one would execute. While another run of the sync works, this
    /// waits (no run is created until it can start).
    pub async fn trigger_and_run(&self, sync: &SyncRef, full_sync: bool, reason: &TriggerReason, progress: ProgressFn<'_>) -> Result<RunRecord> {
        let s = self.triggerable(sync, full_sync)?;
        let mut reported = false;
        let run = loop {
            self.reap().await?;
            if let Some(run) = self.store.create_claimed_run(s.id, &s.name, full_sync, reason, &self.executor, self.lease).await? {
                break run;
            }
            if !reported {
                reported = true;
                tracing::info!(sync_id = s.id, "waiting for the working run of this sync to end");
            }
            tokio::time::sleep(CLAIM_POLL).await;
        };
        match self.run_claimed(run, progress, None, None).await? {
            worker::Served::Finished(r) | worker::Served::Released(r) => Ok(r),
        }
    }

    async fn reap(&self) -> Result<u64> {
        self.store.reap_lost_runs(&executor_alive).await
    }

    /// A run as stored (runs whose executor is gone are failed first).
    pub async fn get_run(&self, run_id: i64) -> Result<RunRecord> {
        self.reap().await?;
        self.store.get_run(run_id).await
    }

    pub async fn list_runs(&self, sync: Option<&SyncRef>, limit: i64) -> Result<Vec<RunRecord>> {
        let id = match sync {
            Some(r) => Some(self.project.sync(r)?.id),
            None => None,
        };
        self.reap().await?;
        self.store.list_runs(id, limit).await
    }

    pub async fn run_records(&self, run_id: i64, limit: i64) -> Result<Vec<RunRecordOutcome>> {
        self.store.get_run(run_id).await?;
        self.store.run_records(run_id, limit).await
    }

    /// Cancel a run: a queued run ends at once, a working one after the batch in flight.
    pub async fn cancel(&self, run_id: i64) -> Result<RunRecord> {
        self.reap().await?;
        let run = self.store.request_cancel(run_id).await?;
        if let Some(ctl) = self.working.lock().unwrap_or_else(|e| e.into_inner()).get(&run_id) {
            ctl.cancel.store(true, Ordering::Relaxed);
        }
        Ok(run)
    }

    /// Connect to the sync's source, resolve its relation (a dbt model to the table dbt built),
    /// and check that every mapped column exists.
    pub async fn check_sync(&self, sync: &SyncConfig) -> Result<(Source, Relation, Vec<ColumnInfo>)> {
        let src_cfg = &self.project.sources[&sync.source];
        let sync_label = format!("sync {} ({})", sync.id, sync.name);
        let located = |e: Error| {
            let at = format!("{}:{}:{}: {}", self.project.display_path, sync.relation_pos.line, sync.relation_pos.col, sync.relation_path);
            e.prefixed(at).prefixed(&sync_label)
        };
        let relation = crate::source::resolve(&sync.relation, src_cfg).map_err(located)?;
        let source = Source::connect(src_cfg).await.map_err(|e| self.sync_error(sync, e))?;
        let columns = match source.columns(&relation).await {
            Ok(c) => c,
            Err(e) => {
                let e = match &sync.relation {
                    Relation::DbtModel(m) => e.prefixed(format!("dbt model `{m}` is not readable in the warehouse: has it been built (`dbt run` / `dbt build`)?")),
                    _ => e,
                };
                return Err(located(e));
            }
        };
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        let mut problems = Vec::new();
        for m in sync.all_mappings().chain(sync.unique_key.iter()) {
            let Some(col) = m.column() else { continue };
            if !names.contains(&col) {
                problems.push(self.project.located(
                    m.from_pos,
                    &m.from_path,
                    format!(
                        "column `{col}` is not in the source{}; its columns are: {}",
                        did_you_mean(col, names.iter().copied()),
                        names.join(", ")
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
        // Every column the sync reads can be sent, and its key column can key it: found here,
        // before a row is read (and by `validate`).
        let mut read: Vec<String> = vec![sync.state_key_column().to_string(), sync.primary_identifier.from.clone()];
        read.extend(sync.mappings.iter().filter_map(|m| m.column()).map(str::to_string));
        let sendable = source.check_sendable(&relation, &read).await;
        sendable.map_err(|e| self.sync_error(sync, e))?;
        if let Some(key_col) = columns.iter().find(|c| c.name == sync.state_key_column()) {
            source.key_order(key_col).map_err(|e| self.sync_error(sync, e))?;
        }
        Ok((source, relation, columns))
    }

    fn sync_error(&self, sync: &SyncConfig, e: Error) -> Error {
        e.prefixed(format!("sync {} ({})", sync.id, sync.name))
    }

    /// The destination a sync delivers to.
    pub async fn destination(&self, sync: &SyncConfig) -> Result<Arc<dyn Destination>> {
        let config = self.project.destinations.get(&sync.destination).ok_or_else(|| {
            Error::config(format!("sync {} ({}): no destination named `{}`", sync.id, sync.name, sync.destination))
        })?;
        crate::destination::build(&BuildContext { config, sync, client: http_client()? }).await
    }

    /// Wait until the run may start (no other run of its sync working), then claim it.
    /// `Ok(Err(run))`: the run ended while waiting (canceled).
    async fn claim(&self, run_id: i64, progress: ProgressFn<'_>) -> Result<std::result::Result<RunRecord, RunRecord>> {
        let mut reported = false;
        loop {
            self.reap().await?;
            match self.store.claim_run(run_id, &self.executor, self.lease).await? {
                Claim::Claimed(run) => return Ok(Ok(run)),
                Claim::NotQueued(run) if run.canceled => return Ok(Err(run)),
                Claim::NotQueued(run) => {
                    return Err(Error::new(
                        ErrorKind::RunState,
                        format!("run {run_id} is {}, not queued; trigger a new run", run.status.as_str()),
                    ));
                }
                Claim::Busy { working_run } => {
                    if !reported {
                        reported = true;
                        tracing::info!(run_id, working_run, "waiting for the working run of this sync to end");
                        progress(&Progress { run_id, step: step::WAITING, counts: RunCounts::default() });
                    }
                    tokio::time::sleep(CLAIM_POLL).await;
                }
            }
        }
    }

    /// Execute a queued run in this process: wait for any working run of the same sync, claim
    /// it, run it, record how it ended. A run that fails is recorded as `failed` with its error
    /// and returned as `Ok`; `Err` means the run could not be executed or recorded at all.
    pub async fn run(&self, run_id: i64, progress: ProgressFn<'_>) -> Result<RunRecord> {
        let run = match self.claim(run_id, progress).await? {
            Ok(run) => run,
            Err(ended) => return Ok(ended),
        };
        match self.run_claimed(run, progress, None, None).await? {
            worker::Served::Finished(r) | worker::Served::Released(r) => Ok(r),
        }
    }

    async fn execute(
        &self,
        run: &RunRecord,
        sync: &SyncConfig,
        counts: &mut RunCounts,
        progress: ProgressFn<'_>,
        ctl: &RunControl,
        observer: Option<Arc<dyn worker::SendObserver>>,
    ) -> Result<()> {
        progress(&Progress { run_id: run.id, step: step::CHECKING, counts: counts.clone() });
        let dest_cfg = &self.project.destinations[&sync.destination];
        let mut dest = self.destination(sync).await.map_err(|e| self.sync_error(sync, e))?;
        if let Some(observer) = observer {
            dest = worker::observed(dest, observer, sync.id, dest_cfg.type_name());
        }
        let deliverer = Arc::new(Deliverer::new(dest, &dest_cfg.delivery).yield_when_throttled(ctl.throttle_yield.clone()));
        let mut out = Output::Deliver(Delivery::new(
            self.store.as_ref(),
            run.id,
            &self.executor,
            sync.id,
            deliverer.clone(),
            main_operation(sync.behavior),
            counts,
            ctl,
            progress,
        ));
        let mut result = self.diff(sync, run.full_sync, &mut out, Some(ctl)).await;
        if let Output::Deliver(d) = &mut out {
            if result.is_ok() {
                result = d.finish().await;
            }
            if result.is_err() {
                d.drain().await;
            }
        }
        let st = &deliverer.stats;
        tracing::info!(
            run_id = run.id,
            requests = st.requests.load(Ordering::Relaxed),
            rate_limited = st.rate_limited.load(Ordering::Relaxed),
            transient = st.transient.load(Ordering::Relaxed),
            bisections = st.bisections.load(Ordering::Relaxed),
            "delivery finished"
        );
        result
    }

    /// A dry run: what a run would send now, touching neither the destination nor the state.
    pub async fn plan(&self, sync: &SyncRef, full_sync: bool, samples: usize) -> Result<PlanReport> {
        let sync = self.project.sync(sync)?;
        let mut report = PlanReport {
            sync_id: sync.id,
            sync_name: sync.name.clone(),
            behavior: sync.behavior.as_str().into(),
            full_sync,
            ..Default::default()
        };
        let mut out = Output::Plan { report: &mut report, samples };
        self.diff(sync, full_sync, &mut out, None).await?;
        Ok(report)
    }

    /// Read the source in key order, merge it with the acknowledged state, and hand every
    /// planned, unchanged and invalid row to `out`.
    async fn diff(&self, sync: &SyncConfig, full_sync: bool, out: &mut Output<'_, '_>, ctl: Option<&RunControl>) -> Result<()> {
        let (source, relation, columns) = self.check_sync(sync).await?;
        out.step(step::UNLOADING).await?;

        // Select each needed column once: the state key first.
        let mut select: Vec<String> = Vec::new();
        let mut index_of = |col: &str| match select.iter().position(|c| c == col) {
            Some(i) => i,
            None => {
                select.push(col.to_string());
                select.len() - 1
            }
        };
        let key_idx = index_of(sync.state_key_column());
        let id_idx = index_of(&sync.primary_identifier.from);
        for m in sync.mappings.iter() {
            if let Some(c) = m.column() {
                index_of(c);
            }
        }
        let index: HashMap<String, usize> = select.iter().enumerate().map(|(i, c)| (c.clone(), i)).collect();
        let mapper = Mapper::new(sync, &|c: &str| index[c]);
        let key_col = columns.iter().find(|c| c.name == sync.state_key_column()).cloned().ok_or_else(|| {
            Error::config(format!("sync {}: key column {} not found", sync.id, sync.state_key_column()))
        })?;
        let (order_sql, key_order) = source.key_order(&key_col).map_err(|e| self.sync_error(sync, e))?;

        let (tx, mut rx) = mpsc::channel::<Chunk>(4);
        let scan = {
            let (source, select) = (source.clone(), select.clone());
            tokio::spawn(async move { source.scan(&relation, &select, Some(&order_sql), tx).await })
        };
        let result: Result<()> = async {
            let mut state = self.store.state_stream(sync.id);
            let mut next_state: Option<StateEntry> = state.next().await.transpose()?;
            let mut merge = Merge {
                sync,
                mapper: &mapper,
                full_sync,
                key_order,
                key_idx,
                id_idx,
                buf: Vec::with_capacity(512),
                fields: Vec::new(),
                group: Vec::new(),
                group_key: None,
            };
            while let Some(chunk) = rx.recv().await {
                let rows = chunk.map_err(|e| self.sync_error(sync, e))?;
                if let Some(ctl) = ctl {
                    ctl.check()?;
                }
                match rows {
                    Rows::Values(rows) => {
                        for row in rows {
                            let key = key::encode(&row[key_idx], key_order);
                            merge.push(SrcRow::Values(row), key, &mut state, &mut next_state, out).await?;
                        }
                    }
                    Rows::Raw(raw) => {
                        let mut fields = Vec::with_capacity(raw.codec.width());
                        for tuple in raw.tuples() {
                            raw.codec.split(tuple, &mut fields);
                            let key_value = raw.codec.decode_field(&fields, key_idx).map_err(|e| self.sync_error(sync, e))?;
                            let key = key::encode(&key_value, key_order);
                            let row = SrcRow::Raw(raw.codec.clone(), tuple.to_vec());
                            merge.push(row, key, &mut state, &mut next_state, out).await?;
                        }
                    }
                }
                out.maybe_report().await?;
            }
            merge.flush_group(&mut state, &mut next_state, out).await?;
            // What is left of the state has left the source.
            while let Some(entry) = next_state.take() {
                merge.state_only(entry, out).await?;
                next_state = state.next().await.transpose()?;
            }
            Ok(())
        }
        .await;
        drop(rx);
        let _ = scan.await;
        result
    }
}

fn main_operation(b: Behavior) -> Operation {
    match b {
        Behavior::Upsert | Behavior::Mirror => Operation::Upsert,
        Behavior::Update => Operation::Update,
        Behavior::Create => Operation::Create,
        Behavior::Append => Operation::Append,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Add,
    Change,
    Remove,
}

/// A row to deliver.
struct Planned {
    key: Vec<u8>,
    identifier: String,
    record: Map<String, Value>,
    fingerprint: store::Fingerprint,
    kind: Kind,
    /// The state held this row as in doubt when it was planned: an earlier delivery was sent
    /// and never answered, so the destination may hold it already.
    in_doubt: bool,
}

/// The merge of key-ordered source rows with key-ordered state.
struct Merge<'a> {
    sync: &'a SyncConfig,
    mapper: &'a Mapper,
    full_sync: bool,
    key_order: KeyOrder,
    key_idx: usize,
    id_idx: usize,
    buf: Vec<u8>,
    /// Scratch space for a raw tuple's field offsets.
    fields: Vec<(usize, i32)>,
    /// Source rows sharing the current key (more than one: duplicates).
    group: Vec<SrcRow>,
    group_key: Option<(Vec<u8>, String)>,
}

/// A source row: decoded values, or a binary tuple decoded only if it is sent (or invalid).
enum SrcRow {
    Values(Vec<Value>),
    Raw(Arc<RawCodec>, Vec<u8>),
}

impl SrcRow {
    fn into_values(self) -> Result<Vec<Value>> {
        match self {
            SrcRow::Values(v) => Ok(v),
            SrcRow::Raw(codec, tuple) => codec.decode(&tuple),
        }
    }
}

impl Merge<'_> {
    /// Take the next source row (rows arrive in key order): a new key decides the group before.
    async fn push(
        &mut self,
        row: SrcRow,
        key: std::result::Result<(Vec<u8>, String), &'static str>,
        state: &mut futures_util::stream::BoxStream<'_, Result<StateEntry>>,
        next_state: &mut Option<StateEntry>,
        out: &mut Output<'_, '_>,
    ) -> Result<()> {
        out.source_row();
        let key = match key {
            Ok(k) => k,
            Err(why) => {
                let row = row.into_values()?;
                return out.invalid(self.invalid(None, &row, format!("{why} in column {}", self.sync.state_key_column()))).await;
            }
        };
        if self.group_key.as_ref().is_some_and(|g| g.0 == key.0) {
            self.group.push(row);
            return Ok(());
        }
        if let Some((prev, prev_id)) = &self.group_key {
            if key.0 < *prev {
                return Err(Error::source_err(format!(
                    "sync {} ({}): the source returned {:?} after {:?}, out of key order; the engine needs rows ordered byte-wise by {} (is a custom collation in effect?)",
                    self.sync.id, self.sync.name, key.1, prev_id, self.sync.state_key_column()
                )));
            }
        }
        self.flush_group(state, next_state, out).await?;
        self.group_key = Some(key);
        self.group.push(row);
        Ok(())
    }

    fn invalid(&self, identifier: Option<String>, row: &[Value], reason: String) -> RunRecordOutcome {
        let payload = match self.mapper.map(row) {
            Ok(m) => Value::Object(self.mapper.record(m)).to_string(),
            Err(_) => Value::Array(row.to_vec()).to_string(),
        };
        RunRecordOutcome {
            identifier,
            kind: RecordKind::Invalid,
            operation: main_operation(self.sync.behavior).as_str().into(),
            reason,
            payload: Some(payload),
        }
    }

    /// Decide the current group against the state, consuming state entries up to its key.
    async fn flush_group(
        &mut self,
        state: &mut futures_util::stream::BoxStream<'_, Result<StateEntry>>,
        next_state: &mut Option<StateEntry>,
        out: &mut Output<'_, '_>,
    ) -> Result<()> {
        let Some((key, identifier)) = self.group_key.take() else { return Ok(()) };
        let rows = std::mem::take(&mut self.group);
        let mut matched = None;
        while let Some(entry) = next_state.take() {
            if entry.key < key {
                self.state_only(entry, out).await?;
                *next_state = state.next().await.transpose()?;
            } else {
                if entry.key == key {
                    matched = Some(entry);
                    *next_state = state.next().await.transpose()?;
                } else {
                    *next_state = Some(entry);
                }
                break;
            }
        }
        if rows.len() > 1 {
            let n = rows.len();
            for row in rows {
                let row = row.into_values()?;
                let reason = format!(
                    "duplicate {}: {n} source rows share it; make it unique in the model",
                    if self.sync.unique_key.is_some() { "unique key" } else { "identifier" }
                );
                out.invalid(self.invalid(Some(identifier.clone()), &row, reason)).await?;
            }
            return Ok(());
        }
        let Some(row) = rows.into_iter().next() else { return Ok(()) };
        // A binary tuple is fingerprinted as it is; it is decoded only when it is sent.
        let raw_fingerprint = match &row {
            SrcRow::Raw(codec, tuple) => {
                codec.offsets(tuple, &mut self.fields);
                let fp = self.mapper.fingerprint_raw(codec, tuple, &self.fields, &mut self.buf);
                let null_id = self.id_idx != self.key_idx && self.fields[self.id_idx].1 < 0;
                Some((fp, null_id))
            }
            SrcRow::Values(_) => None,
        };
        if let (Some((fp, false)), Some(e)) = (raw_fingerprint, &matched) {
            let unchanged = match self.sync.behavior {
                Behavior::Create | Behavior::Append => e.fingerprint != store::IN_DOUBT,
                _ => e.fingerprint == fp && !self.full_sync,
            };
            if unchanged {
                return out.unchanged();
            }
        }
        let mut row = row.into_values()?;
        if self.id_idx != self.key_idx && row[self.id_idx].is_null() {
            let reason = format!("null identifier in column {}", self.sync.primary_identifier.from);
            return out.invalid(self.invalid(Some(identifier), &row, reason)).await;
        }
        let mapped = match self.mapper.map_owned(&mut row) {
            Ok(m) => m,
            Err(why) => return out.invalid(self.invalid(Some(identifier), &row, why)).await,
        };
        let fingerprint = match raw_fingerprint {
            Some((fp, _)) => fp,
            None => self.mapper.fingerprint(&mapped, &mut self.buf),
        };
        let in_doubt = matched.as_ref().is_some_and(|e| e.fingerprint == store::IN_DOUBT);
        let kind = match (self.sync.behavior, matched) {
            (_, None) => Kind::Add,
            // A row sent once is never sent again, unless that sending is in doubt.
            (Behavior::Create | Behavior::Append, Some(e)) if e.fingerprint == store::IN_DOUBT => Kind::Add,
            (Behavior::Create | Behavior::Append, Some(_)) => return out.unchanged(),
            (_, Some(e)) if e.fingerprint == fingerprint && !self.full_sync => return out.unchanged(),
            (_, Some(_)) => Kind::Change,
        };
        let _ = self.key_order;
        out.planned(Planned { key, identifier, record: self.mapper.record(mapped), fingerprint, kind, in_doubt }).await
    }

    /// A state entry with no source row: mirror syncs delete it at the destination.
    async fn state_only(&mut self, entry: StateEntry, out: &mut Output<'_, '_>) -> Result<()> {
        if self.sync.behavior != Behavior::Mirror {
            return Ok(());
        }
        let mut record = Map::new();
        record.insert(self.sync.primary_identifier.to.clone(), key::identifier_value(&entry.key, &entry.identifier));
        let in_doubt = entry.fingerprint == store::IN_DOUBT;
        out.planned(Planned { key: entry.key, identifier: entry.identifier, record, fingerprint: 0, kind: Kind::Remove, in_doubt }).await
    }
}

/// Where the merge's decisions go: to the destination, or into a dry-run report.
enum Output<'a, 'r> {
    Deliver(Delivery<'a>),
    Plan { report: &'r mut PlanReport, samples: usize },
}

impl Output<'_, '_> {
    async fn step(&mut self, step: &'static str) -> Result<()> {
        if let Output::Deliver(d) = self {
            d.counts.source_record_count = Some(0);
            d.store.update_progress(d.run_id, step, d.counts).await?;
            (d.progress)(&Progress { run_id: d.run_id, step, counts: d.counts.clone() });
        }
        Ok(())
    }

    fn source_row(&mut self) {
        match self {
            Output::Deliver(d) => d.counts.source_record_count = Some(d.counts.source_record_count.unwrap_or(0) + 1),
            Output::Plan { report, .. } => report.source_rows += 1,
        }
    }

    fn unchanged(&mut self) -> Result<()> {
        if let Output::Plan { report, .. } = self {
            report.unchanged += 1;
        }
        Ok(())
    }

    async fn invalid(&mut self, o: RunRecordOutcome) -> Result<()> {
        match self {
            Output::Deliver(d) => {
                d.counts.records_invalid = Some(d.counts.records_invalid.unwrap_or(0) + 1);
                d.invalid.push(o);
                if d.invalid.len() >= INVALID_FLUSH {
                    let invalid = std::mem::take(&mut d.invalid);
                    d.commit(&[], invalid).await?;
                }
                Ok(())
            }
            Output::Plan { report, samples } => {
                report.invalid += 1;
                if report.samples.invalid.len() < *samples {
                    report.samples.invalid.push(o);
                }
                Ok(())
            }
        }
    }

    async fn planned(&mut self, p: Planned) -> Result<()> {
        match self {
            Output::Deliver(d) => d.push(p).await,
            Output::Plan { report, samples } => {
                let (n, list) = match p.kind {
                    Kind::Add => (&mut report.adds, &mut report.samples.adds),
                    Kind::Change => (&mut report.changes, &mut report.samples.changes),
                    Kind::Remove => (&mut report.removes, &mut report.samples.removes),
                };
                *n += 1;
                if list.len() < *samples {
                    list.push(Value::Object(p.record));
                }
                Ok(())
            }
        }
    }

    /// While reading a large unchanged table, record progress now and then.
    async fn maybe_report(&mut self) -> Result<()> {
        if let Output::Deliver(d) = self {
            if d.last_progress.elapsed() >= PROGRESS_EVERY {
                d.last_progress = Instant::now();
                d.store.update_progress(d.run_id, step::UNLOADING, d.counts).await?;
                (d.progress)(&Progress { run_id: d.run_id, step: step::UNLOADING, counts: d.counts.clone() });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_options_debug_shows_no_secret() {
        let opts = EngineOptions {
            state: Some("postgres://sg:pw-s3cret@db.internal:5432/state?sslpassword=q-s3cret".into()),
            env: HashMap::from([("HUBSPOT_TOKEN".to_string(), "pat-na1-s3cret".to_string())]),
            lease: Some(Duration::from_secs(30)),
        };
        let text = format!("{opts:?}");
        assert!(!text.contains("s3cret") && !text.contains("sg:"), "{text}");
        assert!(text.contains("db.internal:5432/state") && text.contains("HUBSPOT_TOKEN") && text.contains("<redacted>") && text.contains("30s"), "{text}");
        let text = format!("{:#?}", EngineOptions::default());
        assert!(text.contains("state: None"), "{text}");
    }
}
