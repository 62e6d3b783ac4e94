//! Batching planned rows, sending batches concurrently through the shared delivery layer, and
//! committing exactly what each batch's answer acknowledged.
//!
//! Every batch is written to the state as *in doubt* before it leaves, so that a run killed
//! while a request is in flight leaves state that matches no payload and the next run sends
//! those rows again. Batches are sent as tasks, up to the deliverer's concurrency; answers are
//! committed in the order they arrive (batches hold disjoint keys, so order does not matter).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tokio::task::JoinSet;

use super::{step, Kind, Planned, Progress, ProgressFn, RunControl};
use crate::deliver::Deliverer;
use crate::destination::{Operation, OutRecord, Outcome};
use crate::error::{Error, ErrorKind, Result};
use crate::store::{self, RecordKind, RunCounts, RunRecordOutcome, StateChange, StateEntry, Store};

type Sent = (Operation, Vec<Planned>, Result<Vec<Outcome>>);

/// Batches planned rows per operation, sends them, and commits what was acknowledged.
pub(super) struct Delivery<'a> {
    pub(super) store: &'a dyn Store,
    pub(super) run_id: i64,
    /// Who executes the run: the store writes only while the run is still this executor's.
    pub(super) executor: &'a str,
    pub(super) sync_id: i64,
    pub(super) deliverer: Arc<Deliverer>,
    pub(super) operation: Operation,
    pub(super) pending: Vec<Planned>,
    pub(super) pending_bytes: usize,
    pub(super) removes: Vec<Planned>,
    pub(super) removes_bytes: usize,
    pub(super) invalid: Vec<RunRecordOutcome>,
    pub(super) counts: &'a mut RunCounts,
    pub(super) ctl: &'a RunControl,
    pub(super) progress: ProgressFn<'a>,
    pub(super) last_progress: Instant,
    pub(super) in_flight: JoinSet<Sent>,
}

impl<'a> Delivery<'a> {
    pub(super) fn new(
        store: &'a dyn Store,
        run_id: i64,
        executor: &'a str,
        sync_id: i64,
        deliverer: Arc<Deliverer>,
        operation: Operation,
        counts: &'a mut RunCounts,
        ctl: &'a RunControl,
        progress: ProgressFn<'a>,
    ) -> Self {
        Delivery {
            store,
            run_id,
            executor,
            sync_id,
            deliverer,
            operation,
            pending: Vec::new(),
            pending_bytes: 0,
            removes: Vec::new(),
            removes_bytes: 0,
            invalid: Vec::new(),
            counts,
            ctl,
            progress,
            last_progress: Instant::now(),
            in_flight: JoinSet::new(),
        }
    }

    fn refresh_planned(&mut self) {
        let c = &mut *self.counts;
        c.source_record_updates = Some(c.planned.adds + c.planned.changes);
        c.source_record_deletes = Some(c.planned.removes);
        c.records_invalid.get_or_insert(0);
        c.records_processed.get_or_insert(0);
        c.records_updated.get_or_insert(0);
        c.records_failed.get_or_insert(0);
    }

    pub(super) async fn push(&mut self, p: Planned) -> Result<()> {
        match p.kind {
            Kind::Add => self.counts.planned.adds += 1,
            Kind::Change => self.counts.planned.changes += 1,
            Kind::Remove => self.counts.planned.removes += 1,
        }
        self.refresh_planned();
        let op = if p.kind == Kind::Remove { Operation::Delete } else { self.operation };
        let size = match self.deliverer.max_batch_bytes() {
            Some(_) => self
                .deliverer
                .destination()
                .record_size(op, &OutRecord { identifier: &p.identifier, payload: &p.record }),
            None => 0,
        };
        if let Some(max) = self.deliverer.max_batch_bytes() {
            if size > max {
                // No request can carry it: reject it alone, with what to do.
                let reason = format!(
                    "the record is {size} bytes, more than the {max} bytes {} accepts in one request; shorten its fields",
                    self.deliverer.destination().describe()
                );
                return self.reject_unsendable(op, p, reason).await;
            }
            let (bytes, list) =
                if op == Operation::Delete { (self.removes_bytes, &self.removes) } else { (self.pending_bytes, &self.pending) };
            if !list.is_empty() && bytes + size > max {
                self.flush(op).await?;
            }
        }
        if op == Operation::Delete {
            self.removes.push(p);
            self.removes_bytes += size;
            if self.removes.len() >= self.deliverer.batch_size() {
                self.flush(op).await?;
            }
        } else {
            self.pending.push(p);
            self.pending_bytes += size;
            if self.pending.len() >= self.deliverer.batch_size() {
                self.flush(op).await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self, op: Operation) -> Result<()> {
        let batch = if op == Operation::Delete {
            self.removes_bytes = 0;
            std::mem::take(&mut self.removes)
        } else {
            self.pending_bytes = 0;
            std::mem::take(&mut self.pending)
        };
        if batch.is_empty() { Ok(()) } else { self.dispatch(op, batch).await }
    }

    /// Send what is left, wait for every answer, commit.
    pub(super) async fn finish(&mut self) -> Result<()> {
        self.refresh_planned();
        self.flush(self.operation).await?;
        self.flush(Operation::Delete).await?;
        self.settle(0).await?;
        let invalid = std::mem::take(&mut self.invalid);
        self.commit(&[], invalid).await
    }

    /// After an error: wait for the batches still in flight and commit what they achieved, so
    /// that nothing the destination acknowledged is forgotten.
    pub(super) async fn drain(&mut self) {
        while let Some(joined) = self.in_flight.join_next().await {
            if let Ok(sent) = joined {
                if let Err(e) = self.record(sent).await {
                    tracing::warn!(run_id = self.run_id, "while stopping: {}", e.full_message());
                }
            }
        }
        let invalid = std::mem::take(&mut self.invalid);
        if let Err(e) = self.commit(&[], invalid).await {
            tracing::warn!(run_id = self.run_id, "while stopping: {}", e.full_message());
        }
    }

    pub(super) async fn commit(&mut self, changes: &[StateChange], outcomes: Vec<RunRecordOutcome>) -> Result<()> {
        let cancel = match self.store.commit_batch(self.run_id, self.executor, self.sync_id, changes, &outcomes, self.counts).await {
            Ok(c) => c,
            Err(e) => {
                if e.kind() == ErrorKind::RunState {
                    // Another executor took the run over: stop here, and leave its record alone.
                    self.ctl.lost.store(true, Ordering::Relaxed);
                }
                return Err(e);
            }
        };
        if cancel {
            self.ctl.cancel.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn reject_unsendable(&mut self, op: Operation, row: Planned, reason: String) -> Result<()> {
        let c = &mut *self.counts;
        match row.kind {
            Kind::Add => c.failed.adds += 1,
            Kind::Change => c.failed.changes += 1,
            Kind::Remove => c.failed.removes += 1,
        }
        c.records_processed = Some(c.records_processed.unwrap_or(0) + 1);
        c.records_failed = Some(c.failed.total());
        self.invalid.push(RunRecordOutcome {
            identifier: Some(row.identifier),
            kind: RecordKind::Rejected,
            operation: op.as_str().into(),
            reason,
            payload: Some(Value::Object(row.record).to_string()),
        });
        Ok(())
    }

    /// Wait until at most `room` batches are in flight, committing each answer.
    async fn settle(&mut self, room: usize) -> Result<()> {
        while self.in_flight.len() > room {
            let Some(joined) = self.in_flight.join_next().await else { break };
            let sent = joined.map_err(|e| Error::destination(format!("a delivery task ended abnormally: {e}")))?;
            self.record(sent).await?;
        }
        Ok(())
    }

    async fn dispatch(&mut self, op: Operation, batch: Vec<Planned>) -> Result<()> {
        self.ctl.check()?;
        // Commit whatever has come back meanwhile, and keep no more batches in flight than
        // the destination may take.
        while let Some(joined) = self.in_flight.try_join_next() {
            let sent = joined.map_err(|e| Error::destination(format!("a delivery task ended abnormally: {e}")))?;
            self.record(sent).await?;
        }
        self.settle(self.deliverer.concurrency().min(self.deliverer.max_concurrency()).max(1) - 1).await?;
        self.ctl.check()?;
        // Write-ahead: until the destination answers, these rows' delivery is in doubt. If this
        // process dies mid-request, the next run finds them in doubt and sends them again.
        let in_doubt: Vec<StateChange> = batch
            .iter()
            .map(|r| StateChange::Put(StateEntry { key: r.key.clone(), identifier: r.identifier.clone(), fingerprint: store::IN_DOUBT }))
            .collect();
        self.commit(&in_doubt, Vec::new()).await?;
        drop(in_doubt);
        let deliverer = self.deliverer.clone();
        self.in_flight.spawn(async move {
            let records: Vec<OutRecord> = batch.iter().map(|r| OutRecord { identifier: &r.identifier, payload: &r.record }).collect();
            let result = deliverer.deliver(op, &records).await;
            drop(records);
            (op, batch, result)
        });
        Ok(())
    }

    /// Commit one batch's answer.
    async fn record(&mut self, (op, batch, result): Sent) -> Result<()> {
        let outcomes = result?;
        let mut changes = Vec::with_capacity(batch.len());
        let mut rejected = Vec::new();
        for (row, outcome) in batch.into_iter().zip(outcomes) {
            let c = &mut *self.counts;
            let (ok, failed) = match row.kind {
                Kind::Add => (&mut c.succeeded.adds, &mut c.failed.adds),
                Kind::Change => (&mut c.succeeded.changes, &mut c.failed.changes),
                Kind::Remove => (&mut c.succeeded.removes, &mut c.failed.removes),
            };
            let reason = match outcome {
                Outcome::Accepted => None,
                // The create found the record there: when this row's earlier delivery was in
                // doubt, that delivery created it, so this is its acknowledgement.
                Outcome::Exists(_) if row.in_doubt && row.kind == Kind::Add => None,
                Outcome::Rejected(reason) | Outcome::Retry(reason) | Outcome::Exists(reason) => Some(reason),
            };
            match reason {
                None => {
                    *ok += 1;
                    changes.push(match row.kind {
                        Kind::Remove => StateChange::Remove(row.key),
                        _ => StateChange::Put(StateEntry { key: row.key, identifier: row.identifier, fingerprint: row.fingerprint }),
                    });
                }
                Some(reason) => {
                    *failed += 1;
                    // A refused add was never delivered: forget its in-doubt mark, so that a
                    // mirror sync never deletes a record it did not create.
                    if row.kind == Kind::Add {
                        changes.push(StateChange::Remove(row.key));
                    }
                    rejected.push(RunRecordOutcome {
                        identifier: Some(row.identifier),
                        kind: RecordKind::Rejected,
                        operation: op.as_str().into(),
                        reason,
                        payload: Some(Value::Object(row.record).to_string()),
                    });
                }
            }
            c.records_processed = Some(c.records_processed.unwrap_or(0) + 1);
        }
        self.counts.records_updated = Some(self.counts.succeeded.total());
        self.counts.records_failed = Some(self.counts.failed.total());
        rejected.append(&mut self.invalid);
        self.commit(&changes, rejected).await?;
        self.last_progress = Instant::now();
        (self.progress)(&Progress { run_id: self.run_id, step: step::LOADING, counts: self.counts.clone() });
        self.ctl.check()
    }
}
