//! Property test of the diff and the acknowledgement invariant: for any sequence of warehouse
//! snapshots, and any pattern of destination behaviour per run — records rejected, batches
//! failing (retried, then failing the run), whole batches refused with a 400 (bisected down to
//! the records at fault), 429s with `Retry-After`, the destination going down mid-run, answers
//! lost after the destination applied the batch, and runs crashing mid-delivery —
//!
//! 1. after every run, the state never claims a row the destination does not hold: each
//!    acknowledged state entry matches (identifier and fingerprint) the record the webhook
//!    emulator holds now under that key (not merely one it accepted at some point);
//! 2. after the faults stop, one clean run makes the destination equal to the last snapshot
//!    (mirror: adds, changes and removes), and a further run sends nothing.
//!
//! The real `Engine` runs against the webhook emulator over HTTP with a SQLite warehouse and
//! state store. Cases: `PROPTEST_CASES` (default 24), kept small to stay well under a minute.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::TryStreamExt;
use proptest::prelude::*;
use serde_json::{json, Value};
use sluicegate::config::SyncRef;
use sluicegate::emulator::webhook::{Faults, RejectRule, WebhookEmulator};
use sluicegate::engine::{no_progress, Engine, EngineOptions, Mapper};
use sluicegate::store::{RunStatus, IN_DOUBT};

/// A snapshot: key (0..KEYS) -> (name variant, score).
type Snapshot = BTreeMap<u8, (u8, i64)>;

const KEYS: u8 = 40;

#[derive(Debug, Clone)]
enum Fault {
    None,
    /// Records whose key is in the set are rejected by the destination.
    Reject(Vec<u8>),
    /// A share of requests fails with a 503 (retried by the delivery layer).
    Flaky(u8),
    /// A share of requests (every `n+1`th) is refused as a whole with a 400: the delivery layer
    /// bisects the batch, and the records alone in a refused request are rejected.
    BatchRejected(u8),
    /// A share of requests (every `n+1`th) is answered 429 with `Retry-After: 1`: waited out,
    /// not counted as a failed attempt.
    RateLimited(u8),
    /// Every request after the first `n` fails with 500: the run fails mid-way.
    DownAfter(u8),
    /// Every request after the first `n` is applied but its answer is a 500.
    LostAnswers(u8),
    /// The run is dropped (a crash of the task) after `ms` milliseconds.
    Crash(u8),
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        2 => Just(Fault::None),
        2 => proptest::collection::vec(0..KEYS, 1..6).prop_map(Fault::Reject),
        1 => (1u8..=3).prop_map(Fault::Flaky),
        2 => (1u8..=3).prop_map(Fault::BatchRejected),
        1 => (3u8..=6).prop_map(Fault::RateLimited),
        2 => (0u8..4).prop_map(Fault::DownAfter),
        2 => (0u8..4).prop_map(Fault::LostAnswers),
        2 => (0u8..40).prop_map(Fault::Crash),
    ]
}

fn snapshot() -> impl Strategy<Value = Snapshot> {
    proptest::collection::btree_map(0..KEYS, (0u8..3, -2i64..3), 0..(KEYS as usize))
}

fn email(k: u8) -> String {
    format!("user{k}@example.com")
}

fn name(k: u8, v: u8) -> String {
    format!("name {k} v{v}")
}

fn project(url: &str) -> String {
    format!(
        "sources:\n  warehouse:\n    url: sqlite://warehouse.db\ndestinations:\n  hook:\n    type: webhook\n    url: {url}/contacts\n    batch_size: 4\n    \
         max_concurrency: 2\n    retry: {{max_attempts: 2, initial_backoff: 1ms, max_backoff: 2ms}}\nsyncs:\n  - id: 1\n    name: contacts\n    behavior: mirror\n    \
         source: {{connection: warehouse, table: contacts}}\n    destination: {{connection: hook, object: contacts}}\n    primary_identifier: {{from: email, to: email}}\n    \
         mappings:\n      - {{from: name, to: full_name}}\n      - {{from: score, to: score}}\n"
    )
}

async fn write_snapshot(pool: &sqlx::SqlitePool, s: &Snapshot) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("DELETE FROM contacts").execute(&mut *tx).await.unwrap();
    for (k, (v, score)) in s {
        sqlx::query("INSERT INTO contacts (email, name, score) VALUES (?, ?, ?)")
            .bind(email(*k))
            .bind(name(*k, *v))
            .bind(*score)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
}

fn expected(s: &Snapshot) -> BTreeMap<String, Value> {
    s.iter().map(|(k, (v, score))| (email(*k), json!({"email": email(*k), "full_name": name(*k, *v), "score": score}))).collect()
}

/// The fingerprint the engine computes for a record the destination holds.
fn fingerprint(mapper: &Mapper, rec: &Value) -> u128 {
    let row = vec![rec["email"].clone(), rec["full_name"].clone(), rec["score"].clone()];
    let m = mapper.map(&row).expect("a record maps");
    mapper.fingerprint(&m, &mut Vec::new())
}

/// Invariant 1: every acknowledged state entry is the record the destination holds now under
/// that key (a row removed or replaced there since must not be claimed).
async fn check_state_claims(engine: &Engine, mapper: &Mapper, emu: &WebhookEmulator, when: &str) -> Result<(), TestCaseError> {
    let held = emu.store();
    let state: Vec<_> = engine.store().state_stream(1).try_collect().await.unwrap();
    for e in state {
        if e.fingerprint == IN_DOUBT {
            continue;
        }
        let Some(rec) = held.get(&e.identifier) else {
            return Err(TestCaseError::fail(format!("{when}: the state claims {} but the destination does not hold it", e.identifier)));
        };
        prop_assert_eq!(
            fingerprint(mapper, rec),
            e.fingerprint,
            "{}: the state claims {} with another value than the destination holds ({})",
            when,
            e.identifier,
            rec
        );
    }
    Ok(())
}

async fn case(snapshots: Vec<(Snapshot, Vec<Fault>)>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let wh = common::Warehouse::create(dir.path(), 0).await;
    let emu = common::emulator().await;
    let p = common::write_project(dir.path(), &project(&emu.url));
    // A short lease: a crashed run is found lost quickly.
    let engine = Engine::open(&p, EngineOptions { lease: Some(Duration::from_millis(300)), ..Default::default() }).await.unwrap();
    let sync = engine.project().sync(&SyncRef::Id(1)).unwrap().clone();
    let cols = ["email", "name", "score"];
    let mapper = Mapper::new(&sync, &|c: &str| cols.iter().position(|x| *x == c).unwrap());

    let mut last = Snapshot::new();
    for (i, (snap, faults)) in snapshots.iter().enumerate() {
        write_snapshot(&wh.pool, snap).await;
        last = snap.clone();
        for (j, f) in faults.iter().enumerate() {
            emu.set_reject_rules(vec![]);
            let mut faults = Faults::default();
            let mut crash = None;
            match f {
                Fault::None => {}
                Fault::Reject(keys) => {
                    let alt = keys.iter().map(|k| format!("user{k}@")).collect::<Vec<_>>().join("|");
                    emu.set_reject_rules(vec![RejectRule::parse(&format!("email=^({alt})")).unwrap()]);
                }
                Fault::Flaky(n) => faults = Faults { fail_rate: 1.0 / f64::from(*n + 1), fail_status: 503, ..Faults::default() },
                Fault::BatchRejected(n) => faults = Faults { fail_rate: 1.0 / f64::from(*n + 1), fail_status: 400, ..Faults::default() },
                Fault::RateLimited(n) => faults = Faults { fail_rate: 1.0 / f64::from(*n + 1), fail_status: 429, ..Faults::default() },
                Fault::DownAfter(n) => faults = Faults { fail_after: Some(u64::from(*n)), fail_status: 500, ..Faults::default() },
                Fault::LostAnswers(n) => faults = Faults { fail_after: Some(u64::from(*n)), fail_status: 500, apply_then_fail: true, ..Faults::default() },
                Fault::Crash(ms) => {
                    faults = Faults { latency_ms: 2, ..Faults::default() };
                    crash = Some(Duration::from_millis(u64::from(*ms)));
                }
            }
            // `fail_after` counts from the emulator's reset.
            emu.reset();
            emu.set_faults(faults);
            let id = engine.trigger(&SyncRef::Id(1), false, &common::reason()).await.unwrap();
            let when = format!("snapshot {i}, run {j} ({f:?})");
            match crash {
                Some(after) => {
                    let _ = tokio::time::timeout(after, engine.run(id, &no_progress)).await;
                }
                None => {
                    let r = engine.run(id, &no_progress).await.unwrap();
                    prop_assert!(r.status.is_terminal(), "{when}: {:?}", r.status);
                    // Rejections (one by one, or by bisecting a refused batch) and 429s end in a
                    // completed run; only failures and outages may fail it.
                    if matches!(f, Fault::None | Fault::Reject(_) | Fault::BatchRejected(_) | Fault::RateLimited(_)) {
                        prop_assert_eq!(r.status, RunStatus::Completed, "{}: {:?}", when, r.error_message);
                    }
                    if matches!(f, Fault::RateLimited(_)) {
                        prop_assert_eq!(r.counts.records_failed.unwrap_or(0), 0, "{}: 429s lose no record", when);
                    }
                }
            }
            check_state_claims(&engine, &mapper, &emu, &when).await?;
        }
    }

    // Faults over: a clean run converges on the last snapshot, another sends nothing.
    emu.set_faults(Faults::default());
    emu.set_reject_rules(vec![]);
    let r = common::run(&engine, 1, false).await;
    prop_assert_eq!(r.status, RunStatus::Completed, "final run: {:?}", r.error_message);
    prop_assert_eq!(r.counts.records_failed, Some(0));
    prop_assert_eq!(emu.store(), expected(&last), "the destination differs from the last snapshot");
    check_state_claims(&engine, &mapper, &emu, "final run").await?;
    let state: Vec<_> = engine.store().state_stream(1).try_collect().await.unwrap();
    prop_assert_eq!(state.len(), last.len());
    let again = common::run(&engine, 1, false).await;
    prop_assert_eq!(again.counts.records_processed, Some(0), "a run after convergence sends nothing");
    emu.stop().await;
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 20, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn destination_converges_and_state_never_overclaims(
        snapshots in proptest::collection::vec((snapshot(), proptest::collection::vec(fault(), 1..4)), 1..4)
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(case(snapshots))?;
    }
}
