//! `/metrics` in the Prometheus text format (version 0.0.4).
//!
//! Run and row totals are read from the state store, so every replica reports the same
//! cluster-wide numbers (as gauges). Destination requests (latency histogram, results, 429s)
//! are counted by this process for the runs its workers executed since it started.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use crate::engine::worker::{SendObserver, SendResult};
use crate::store::RunTotals;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Inner {
    /// (destination type, sync id) → latency histogram.
    latency: BTreeMap<(String, i64), Histogram>,
    /// (destination type, sync id, result) → requests.
    results: BTreeMap<(String, i64, &'static str), u64>,
    /// Runs this process finished or released, by outcome.
    worker_runs: BTreeMap<&'static str, u64>,
    busy: i64,
}

#[derive(Default)]
pub struct Metrics(Mutex<Inner>);

impl SendObserver for Metrics {
    fn observe(&self, sync_id: i64, destination_type: &str, elapsed: Duration, result: SendResult) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let secs = elapsed.as_secs_f64();
        let h = m.latency.entry((destination_type.to_string(), sync_id)).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
        *m.results.entry((destination_type.to_string(), sync_id, result.as_str())).or_default() += 1;
    }
}

/// A label value, escaped as the text format wants.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    pub fn busy(&self, delta: i64) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).busy += delta;
    }

    pub fn worker_run(&self, outcome: &'static str) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()).worker_runs.entry(outcome).or_default() += 1;
    }

    /// The whole exposition. `names` maps sync ids to names.
    pub fn render(&self, totals: &[RunTotals], names: &BTreeMap<i64, String>, workers: usize) -> String {
        let mut out = String::new();
        let name = |id: i64| label(names.get(&id).map(String::as_str).unwrap_or(""));
        let _ = writeln!(out, "# HELP sluicegate_runs Runs in the state store by sync and status (cancelled runs have status=\"canceled\").");
        let _ = writeln!(out, "# TYPE sluicegate_runs gauge");
        for t in totals {
            let status = if t.canceled { "canceled" } else { t.status.as_str() };
            let _ = writeln!(out, "sluicegate_runs{{sync_id=\"{}\",sync=\"{}\",status=\"{status}\"}} {}", t.sync_id, name(t.sync_id), t.runs);
        }
        let mut rows: BTreeMap<i64, (i64, i64, i64)> = BTreeMap::new();
        for t in totals {
            let r = rows.entry(t.sync_id).or_default();
            r.0 += t.records_updated;
            r.1 += t.records_failed;
            r.2 += t.records_invalid;
        }
        for (metric, help, pick) in [
            ("sluicegate_records_sent", "Records the destination accepted, over all runs in the state store.", 0),
            ("sluicegate_records_rejected", "Records the destination rejected, over all runs in the state store.", 1),
            ("sluicegate_records_invalid", "Source records skipped as invalid, over all runs in the state store.", 2),
        ] {
            let _ = writeln!(out, "# HELP {metric} {help}");
            let _ = writeln!(out, "# TYPE {metric} gauge");
            for (id, r) in &rows {
                let v = [r.0, r.1, r.2][pick];
                let _ = writeln!(out, "{metric}{{sync_id=\"{id}\",sync=\"{}\"}} {v}", name(*id));
            }
        }
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "# HELP sluicegate_destination_request_duration_seconds Time of each destination request made by this process.");
        let _ = writeln!(out, "# TYPE sluicegate_destination_request_duration_seconds histogram");
        for ((dest, id), h) in &m.latency {
            let labels = format!("destination_type=\"{}\",sync_id=\"{id}\",sync=\"{}\"", label(dest), name(*id));
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(out, "sluicegate_destination_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {}", h.counts[i]);
            }
            let _ = writeln!(out, "sluicegate_destination_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "sluicegate_destination_request_duration_seconds_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(out, "sluicegate_destination_request_duration_seconds_count{{{labels}}} {}", h.count);
        }
        let _ = writeln!(out, "# HELP sluicegate_destination_requests_total Destination requests made by this process, by result.");
        let _ = writeln!(out, "# TYPE sluicegate_destination_requests_total counter");
        for ((dest, id, result), n) in &m.results {
            let _ = writeln!(
                out,
                "sluicegate_destination_requests_total{{destination_type=\"{}\",sync_id=\"{id}\",sync=\"{}\",result=\"{result}\"}} {n}",
                label(dest),
                name(*id)
            );
        }
        let _ = writeln!(out, "# HELP sluicegate_destination_rate_limited_total Destination answers of 429 (rate limited) received by this process.");
        let _ = writeln!(out, "# TYPE sluicegate_destination_rate_limited_total counter");
        let mut limited: BTreeMap<(String, i64), u64> = BTreeMap::new();
        for ((dest, id, result), n) in &m.results {
            let e = limited.entry((dest.clone(), *id)).or_default();
            if *result == SendResult::RateLimited.as_str() {
                *e += n;
            }
        }
        for ((dest, id), n) in &limited {
            let _ = writeln!(
                out,
                "sluicegate_destination_rate_limited_total{{destination_type=\"{}\",sync_id=\"{id}\",sync=\"{}\"}} {n}",
                label(dest),
                name(*id)
            );
        }
        let _ = writeln!(out, "# HELP sluicegate_worker_runs_total Runs this process's workers ended (finished) or gave back to the queue (released).");
        let _ = writeln!(out, "# TYPE sluicegate_worker_runs_total counter");
        for (outcome, n) in &m.worker_runs {
            let _ = writeln!(out, "sluicegate_worker_runs_total{{outcome=\"{outcome}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP sluicegate_workers Workers of this process, and how many are executing a run.");
        let _ = writeln!(out, "# TYPE sluicegate_workers gauge");
        let _ = writeln!(out, "sluicegate_workers{{state=\"total\"}} {workers}");
        let _ = writeln!(out, "sluicegate_workers{{state=\"busy\"}} {}", m.busy);
        out
    }
}
