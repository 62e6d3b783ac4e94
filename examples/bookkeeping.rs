//! Benchmark: the state store's per-batch bookkeeping, as a run does it for every batch it
//! delivers: before the request, the batch's rows written as *in doubt* (one `commit_batch`);
//! after the destination's answer, their acknowledged fingerprints with the run's counts (a
//! second `commit_batch`, updating the rows the first one wrote). On SQLite and, when
//! `SLUICEGATE_TEST_PG_URL` names a Postgres server, on Postgres.
//!
//!   cargo run --release --example bookkeeping [BATCHES] [ROWS_PER_BATCH]
//!
//! Prints the median and p99 time per batch (both commits). Not a test: machines are shared
//! and noisy.

use std::time::{Duration, Instant};

use sluicegate::store::{self, RunCounts, StateChange, StateEntry, Store, TriggerReason};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn measure(name: &str, store: &dyn Store, batches: usize, rows: usize) {
    let reason = TriggerReason { ui_tag: "Bench".into(), ui_detail: "bookkeeping".into() };
    let run = store.create_run(1, "bench", false, &reason).await.unwrap();
    // The store writes only for the executor that holds the run.
    let executor = "bench:0:0";
    assert!(matches!(store.claim_run(run, executor, Duration::from_secs(3600)).await.unwrap(), store::Claim::Claimed(_)));
    let mut counts = RunCounts::default();
    let mut times = Vec::with_capacity(batches);
    for b in 0..batches {
        let entries = |fingerprint: &dyn Fn(u64) -> u128| -> Vec<StateChange> {
            (0..rows)
                .map(|i| {
                    let n = (b * rows + i) as u64;
                    let identifier = format!("user{n}@example.com");
                    let mut key = vec![2u8];
                    key.extend_from_slice(identifier.as_bytes());
                    StateChange::Put(StateEntry { key, identifier, fingerprint: fingerprint(n) })
                })
                .collect()
        };
        let in_doubt = entries(&|_| store::IN_DOUBT);
        let acknowledged = entries(&|n| u128::from(n) * 0x9E37_79B9 + 1);
        let t = Instant::now();
        store.commit_batch(run, executor, 1, &in_doubt, &[], &counts).await.unwrap();
        counts.succeeded.adds += rows as i64;
        store.commit_batch(run, executor, 1, &acknowledged, &[], &counts).await.unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "{name:<9} {batches} batches of {rows} rows: median {:>7.3} ms, p99 {:>7.3} ms per batch (in-doubt write + acknowledgement)",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let batches = args.first().copied().unwrap_or(1000);
    let rows = args.get(1).copied().unwrap_or(100);
    let dir = tempfile::tempdir().unwrap();
    let sqlite = store::open(&format!("sqlite://{}", dir.path().join("state.db").display()), dir.path()).await.unwrap();
    measure("sqlite", sqlite.as_ref(), batches, rows).await;
    if let Ok(admin) = std::env::var("SLUICEGATE_TEST_PG_URL") {
        let pool = sqlx::PgPool::connect(&admin).await.unwrap();
        sqlx::raw_sql("DROP DATABASE IF EXISTS sluicegate_bench").execute(&pool).await.unwrap();
        sqlx::raw_sql("CREATE DATABASE sluicegate_bench").execute(&pool).await.unwrap();
        let url = format!("{}/sluicegate_bench", admin.rsplit_once('/').unwrap().0);
        let pg = store::open(&url, dir.path()).await.unwrap();
        measure("postgres", pg.as_ref(), batches, rows).await;
    } else {
        println!("postgres  skipped: set SLUICEGATE_TEST_PG_URL (scripts/services.sh starts a server)");
    }
}
