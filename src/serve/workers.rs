//! The worker pool: each worker claims the next served run, executes it, and looks again;
//! idle, it waits for a trigger on this replica or the poll interval (runs queued by other
//! replicas).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Shared;
use crate::engine::no_progress;
use crate::engine::worker::{SendObserver, Served};

pub(super) async fn work(shared: Arc<Shared>, index: usize, poll: Duration, mut stop: watch::Receiver<bool>) {
    // Spread the workers' polls a little so replicas do not claim in lockstep.
    let jitter = Duration::from_millis((index as u64 * 37) % 100);
    loop {
        if *stop.borrow() {
            return;
        }
        match shared.engine.claim_next_served().await {
            Ok(Some(run)) => {
                let run_id = run.id;
                tracing::info!(run_id, sync_id = run.sync_id, worker = index, executor = shared.engine.executor(), "claimed run");
                shared.metrics.busy(1);
                let observer: Arc<dyn SendObserver> = shared.clone();
                let result = shared.engine.run_claimed(run, &no_progress, Some(stop.clone()), Some(observer)).await;
                shared.metrics.busy(-1);
                match result {
                    Ok(Served::Finished(run)) => {
                        shared.metrics.worker_run("finished");
                        tracing::info!(run_id, status = run.status.as_str(), "run ended");
                    }
                    Ok(Served::Released(_)) => {
                        shared.metrics.worker_run("released");
                    }
                    Err(e) => {
                        shared.metrics.worker_run("error");
                        tracing::error!(run_id, "could not execute or record the run: {}", e.full_message());
                    }
                }
                // Look again at once: more runs may be waiting.
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(worker = index, "cannot claim a run: {}", e.full_message()),
        }
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(poll + jitter) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

impl SendObserver for Shared {
    fn observe(&self, sync_id: i64, destination_type: &str, elapsed: Duration, result: crate::engine::worker::SendResult) {
        self.metrics.observe(sync_id, destination_type, elapsed, result);
    }
}
