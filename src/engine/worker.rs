//! Executing runs for the workers of `sluicegate serve`.
//!
//! A served run is queued by the HTTP API or a schedule ([`Engine::trigger_served`]) and claimed
//! by whichever worker of whichever replica asks first ([`Engine::claim_next_served`]: one
//! conditional update, `FOR UPDATE SKIP LOCKED` on Postgres, so every run goes to exactly one
//! worker and a sync never has two working runs). The claimed run then executes as in-task runs
//! do (lease, heartbeat, cancellation after the batch in flight), with two additions:
//!
//! - every destination request is reported to a [`SendObserver`] (latency, 429s) for metrics;
//! - a stop signal (graceful shutdown) ends the run after the batch in flight, commits what the
//!   destination acknowledged, and gives the run back to the queue ([`Store::release_run`]), so
//!   another replica, or this one after a restart, resumes it from the acknowledged state.
//!
//! [`Engine::run`] is a claim followed by `run_claimed` without either addition.
//! [`Engine::run_with`] adds one option for in-task runs (the Airflow operator's deferral):
//! `yield_when_throttled`, which gives the run back to the queue the same way when the
//! destination's rate limit would hold it back for at least that long, and says when to resume.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{error_code, RunControl};
use super::{Engine, ProgressFn};
use crate::config::{Behavior, SyncRef};
use crate::destination::{Destination, Limits, Operation, OutRecord, Reply, SendError};
use crate::error::{Error, ErrorKind, Result};
use crate::store::{Beat, RunCounts, RunEnd, RunRecord, RunStatus, TriggerReason};

/// How one destination request ended, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendResult {
    /// The destination answered with per-record outcomes.
    Answered,
    /// 429 (or the destination's equivalent).
    RateLimited,
    /// 5xx, timeout, connection error.
    Transient,
    /// Refused for good (credentials, URL, quota).
    Fatal,
    /// The batch was refused as a whole for its content.
    BatchRejected,
}

impl SendResult {
    pub fn as_str(self) -> &'static str {
        match self {
            SendResult::Answered => "answered",
            SendResult::RateLimited => "rate_limited",
            SendResult::Transient => "transient",
            SendResult::Fatal => "fatal",
            SendResult::BatchRejected => "batch_rejected",
        }
    }
}

/// Told about every destination request of a served run.
pub trait SendObserver: Send + Sync {
    fn observe(&self, sync_id: i64, destination_type: &str, elapsed: Duration, result: SendResult);
}

/// A destination that reports each request to an observer, unchanged otherwise.
struct Observed {
    inner: Arc<dyn Destination>,
    observer: Arc<dyn SendObserver>,
    sync_id: i64,
    destination_type: String,
}

#[async_trait::async_trait]
impl Destination for Observed {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn limits(&self) -> Limits {
        self.inner.limits()
    }
    fn record_size(&self, op: Operation, record: &OutRecord<'_>) -> usize {
        self.inner.record_size(op, record)
    }
    async fn check(&self) -> std::result::Result<(), String> {
        self.inner.check().await
    }
    async fn send(&self, op: Operation, records: &[OutRecord<'_>]) -> std::result::Result<Reply, SendError> {
        let started = Instant::now();
        let result = self.inner.send(op, records).await;
        let kind = match &result {
            Ok(_) => SendResult::Answered,
            Err(SendError::RateLimited { .. }) => SendResult::RateLimited,
            Err(SendError::Transient { .. }) => SendResult::Transient,
            Err(SendError::Fatal { .. }) => SendResult::Fatal,
            Err(SendError::BatchRejected { .. }) => SendResult::BatchRejected,
        };
        self.observer.observe(self.sync_id, &self.destination_type, started.elapsed(), kind);
        result
    }
}

/// How a served run left its worker.
#[derive(Debug)]
pub enum Served {
    /// It ended (completed, failed or canceled), or another executor failed it.
    Finished(RunRecord),
    /// The worker stopped; the run is queued again.
    Released(RunRecord),
}

/// Options of [`Engine::run_with`].
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// When the destination's rate limit would hold the next request back for at least this
    /// long, stop sending, commit the answers of the batches in flight, and give the run back
    /// to the queue ([`RunOutcome::Yielded`]). Ignored for full syncs (a resumed full sync
    /// would send everything again). `None`: wait as long as it takes.
    pub yield_when_throttled: Option<Duration>,
}

/// How [`Engine::run_with`] left a run.
#[derive(Debug)]
pub enum RunOutcome {
    /// It ended (completed or failed), or it had ended already.
    Finished(RunRecord),
    /// Throttled: it is queued again with what the destination acknowledged committed. Run it
    /// again (`run_with` on the same id) no earlier than `resume_after` from now; the diff
    /// against the acknowledged state sends exactly the rest.
    Yielded { run: RunRecord, resume_after: Duration },
}

impl Engine {
    /// [`Engine::run`] with options. The counts of a run resumed after a yield (or a release)
    /// carry over: what earlier attempts delivered is counted as planned and succeeded, so the
    /// finished run counts the whole sync.
    pub async fn run_with(&self, run_id: i64, progress: ProgressFn<'_>, opts: &RunOptions) -> Result<RunOutcome> {
        let run = match self.claim(run_id, progress).await? {
            Ok(run) => run,
            Err(ended) => return Ok(RunOutcome::Finished(ended)),
        };
        let yield_after = opts.yield_when_throttled.filter(|_| !run.full_sync);
        let (served, yielded) = self.run_claimed_with(run, progress, None, None, yield_after, true).await?;
        Ok(match (served, yielded) {
            (Served::Released(run), Some(resume_after)) => RunOutcome::Yielded { run, resume_after },
            (Served::Finished(run) | Served::Released(run), _) => RunOutcome::Finished(run),
        })
    }

    /// Queue a run for the `serve` workers; returns the run id. `scheduled` is the time a
    /// schedule meant it for (Census's `scheduled_execution_time`); `None` is returned when that
    /// slot was triggered already (by another replica).
    pub async fn trigger_served(
        &self,
        sync: &SyncRef,
        full_sync: bool,
        reason: &TriggerReason,
        scheduled: Option<&str>,
    ) -> Result<Option<i64>> {
        let s = self.project.sync(sync)?;
        if full_sync && matches!(s.behavior, Behavior::Append | Behavior::Create) {
            return Err(Error::config(format!(
                "sync {} ({}) is a {} sync: it sends each row once, so it has no full sync; trigger it without force_full_sync",
                s.id,
                s.name,
                s.behavior.as_str()
            )));
        }
        self.store.create_served_run(s.id, &s.name, full_sync, reason, scheduled).await
    }

    /// Fail runs whose executor is gone, then claim the next served run of this project's
    /// syncs, if any may start now.
    pub async fn claim_next_served(&self) -> Result<Option<RunRecord>> {
        self.reap().await?;
        let ids: Vec<i64> = self.project.syncs.iter().map(|s| s.id).collect();
        self.store.claim_next_served(&self.executor, self.lease, &ids).await
    }

    /// Fail working runs whose executor is gone (lease expired, or process ended on this host).
    pub async fn reap_lost(&self) -> Result<u64> {
        self.reap().await
    }

    /// The identity this engine claims runs under (`host:pid:start`).
    pub fn executor(&self) -> &str {
        &self.executor
    }

    /// Execute a run this engine claimed, and record how it ended. `stop` turning true ends the
    /// run after the batch in flight and requeues it. A run that fails is recorded as `failed`
    /// with its error and returned as `Ok`; `Err` means it could not be executed or recorded.
    pub async fn run_claimed(
        &self,
        run: RunRecord,
        progress: ProgressFn<'_>,
        stop: Option<watch::Receiver<bool>>,
        observer: Option<Arc<dyn SendObserver>>,
    ) -> Result<Served> {
        Ok(self.run_claimed_with(run, progress, stop, observer, None, false).await?.0)
    }

    /// `run_claimed`, plus: `yield_after` releases the run when throttled that long (the second
    /// value is then the wait before resuming); `carry_counts` starts from the counts earlier
    /// attempts of the run delivered.
    async fn run_claimed_with(
        &self,
        run: RunRecord,
        progress: ProgressFn<'_>,
        stop: Option<watch::Receiver<bool>>,
        observer: Option<Arc<dyn SendObserver>>,
        yield_after: Option<Duration>,
        carry_counts: bool,
    ) -> Result<(Served, Option<Duration>)> {
        let run_id = run.id;
        let sync = self.project.sync(&SyncRef::Id(run.sync_id)).cloned();
        let ctl = Arc::new(RunControl {
            throttle_yield: yield_after.map(|d| Arc::new(crate::deliver::ThrottleYield::new(d))),
            ..RunControl::default()
        });
        self.working.lock().unwrap_or_else(|e| e.into_inner()).insert(run_id, ctl.clone());
        // Forget the run when this function returns, however it returns.
        struct Forget<'e>(&'e Engine, i64);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                self.0.working.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.1);
            }
        }
        let _forget = Forget(self, run_id);
        // Aborted on drop too: a run whose future is dropped (a task timeout, a cancelled
        // caller) must stop renewing its lease, or the run would stay `working` for as long as
        // this process lives and block every later run of its sync.
        let heartbeat = {
            let (store, ctl, executor, lease) = (self.store.clone(), ctl.clone(), self.executor.clone(), self.lease);
            AbortOnDrop(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    match store.heartbeat(run_id, &executor, lease).await {
                        Ok(Beat { still_owner, cancel_requested }) => {
                            if !still_owner {
                                ctl.lost.store(true, Ordering::Relaxed);
                                return;
                            }
                            if cancel_requested {
                                ctl.cancel.store(true, Ordering::Relaxed);
                            }
                        }
                        Err(e) => tracing::warn!(run_id, "heartbeat failed: {}", e.full_message()),
                    }
                }
            }))
        };
        // Stopping uses the same path as a lost lease: the run stops at its next check, after
        // the batch in flight is answered and committed.
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopper = stop.map(|mut stop| {
            let (ctl, stopped) = (ctl.clone(), stopped.clone());
            AbortOnDrop(tokio::spawn(async move {
                while !*stop.borrow_and_update() {
                    if stop.changed().await.is_err() {
                        return;
                    }
                }
                stopped.store(true, Ordering::Relaxed);
                ctl.lost.store(true, Ordering::Relaxed);
            }))
        });
        let mut counts = RunCounts::default();
        if carry_counts && run.counts.succeeded.total() > 0 {
            // Rows acknowledged by earlier attempts are no longer in the diff: count them as
            // planned and delivered. Rows rejected then are planned again, and counted as they
            // turn out now.
            let done = run.counts.succeeded;
            counts.planned = done;
            counts.succeeded = done;
            counts.records_processed = Some(done.total());
            counts.records_updated = Some(done.total());
            counts.records_failed = Some(0);
        }
        let result = match &sync {
            Ok(sync) => self.execute(&run, sync, &mut counts, progress, &ctl, observer).await,
            Err(e) => Err(Error::config(e.full_message())),
        };
        drop(heartbeat);
        drop(stopper);
        if result.is_err() && stopped.load(Ordering::Relaxed) {
            if self.store.release_run(run_id, &self.executor).await? {
                tracing::info!(run_id, "worker stopping: run released to the queue after the batch in flight");
                return Ok((Served::Released(self.store.get_run(run_id).await?), None));
            }
            return Ok((Served::Finished(self.store.get_run(run_id).await?), None));
        }
        let yielded = ctl.throttle_yield.as_ref().and_then(|y| y.yielded());
        if let (Err(e), Some(wait)) = (&result, yielded) {
            // A cancel request or a lost lease wins over the yield.
            if !ctl.cancel.load(Ordering::Relaxed) && !ctl.lost.load(Ordering::Relaxed) {
                if self.store.release_run(run_id, &self.executor).await? {
                    tracing::info!(run_id, wait_ms = wait.as_millis() as u64, "throttled: run released to the queue after the batches in flight ({})", e.full_message());
                    return Ok((Served::Released(self.store.get_run(run_id).await?), Some(wait)));
                }
                return Ok((Served::Finished(self.store.get_run(run_id).await?), None));
            }
        }
        let end = match result {
            Ok(()) => RunEnd { status: RunStatus::Completed, canceled: false, error_code: None, error_message: None, error_detail: None, counts },
            Err(e) if ctl.lost.load(Ordering::Relaxed) => {
                // The run is no longer ours: whoever took it over recorded how it ended.
                tracing::warn!(run_id, "run stopped: {}", e.full_message());
                return Ok((Served::Finished(self.store.get_run(run_id).await?), None));
            }
            Err(e) if e.kind() == ErrorKind::Canceled => {
                let msg = format!(
                    "canceled by request after {} of {} planned records were delivered; the next run sends the rest",
                    counts.records_updated.unwrap_or(0),
                    counts.planned.total()
                );
                RunEnd { status: RunStatus::Failed, canceled: true, error_code: Some("CANCELED".into()), error_message: Some(msg), error_detail: None, counts }
            }
            Err(e) => {
                tracing::info!(run_id, sync_id = run.sync_id, "run failed: {}", e.full_message());
                RunEnd {
                    status: RunStatus::Failed,
                    canceled: false,
                    error_code: Some(error_code(e.kind()).into()),
                    error_message: Some(e.full_message()),
                    error_detail: None,
                    counts,
                }
            }
        };
        Ok((Served::Finished(self.store.finish_run(run_id, &end).await?), None))
    }
}

/// `dest` with every request reported to `observer`.
pub(super) fn observed(dest: Arc<dyn Destination>, observer: Arc<dyn SendObserver>, sync_id: i64, destination_type: &str) -> Arc<dyn Destination> {
    Arc::new(Observed { inner: dest, observer, sync_id, destination_type: destination_type.to_string() })
}

/// A task aborted when its handle is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
