//! `Engine::run_with` and `yield_when_throttled` against the HubSpot emulator: a rate window
//! too small for the run (2 requests per 3 s) makes the pacer hold the next request back 3 s,
//! so a run that may wait at most 1 s yields after each batch: queued again, its lease
//! released, what HubSpot acknowledged committed. Resuming the same run sends exactly the rest,
//! and the finished run counts every attempt. `SLUICEGATE_TEST_STATE_PG` runs it on Postgres.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{open, reason, write_project, Warehouse};
use sluicegate::config::SyncRef;
use sluicegate::emulator::hubspot::{HubspotEmulator, HubspotEmulatorConfig, RateConfig};
use sluicegate::engine::no_progress;
use sluicegate::engine::worker::{RunOptions, RunOutcome};
use sluicegate::store::RunStatus;

const TOKEN: &str = "pat-na1-test-token";
const ROWS: i64 = 250; // three batches of at most 100

fn project(url: &str) -> String {
    format!(
        r#"
sources:
  warehouse:
    url: sqlite://warehouse.db
destinations:
  crm:
    type: hubspot
    access_token: ${{SG_TEST_HUBSPOT_TOKEN:-{TOKEN}}}
    base_url: {url}
    rate_limit: {{requests: 1000, per: 1s}}
    retry: {{max_attempts: 6, initial_backoff: 10ms, max_backoff: 100ms}}
syncs:
  - id: 1
    name: s1
    source: {{connection: warehouse, table: contacts}}
    destination: {{connection: crm, object: contacts}}
    primary_identifier: {{from: email, to: email}}
    mappings:
      - {{from: name, to: firstname}}
      - {{from: score, to: score}}
      - {{from: vip, to: is_vip}}
    behavior: upsert
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_rate_window_yields_the_run_and_resuming_sends_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let emu = HubspotEmulator::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        HubspotEmulatorConfig {
            token: Some(TOKEN.into()),
            rate: RateConfig { limit: 2, interval_ms: 3000, daily_limit: 0 },
            properties: vec!["score".into(), "is_vip".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let _wh = Warehouse::create(dir.path(), ROWS).await;
    let engine = open(&write_project(dir.path(), &project(&emu.url))).await;
    let opts = RunOptions { yield_when_throttled: Some(Duration::from_secs(1)) };

    let run_id = engine.trigger(&SyncRef::Id(1), false, &reason()).await.unwrap();
    let mut yields = 0;
    let run = loop {
        match engine.run_with(run_id, &no_progress, &opts).await.unwrap() {
            RunOutcome::Finished(run) => break run,
            RunOutcome::Yielded { run, resume_after } => {
                yields += 1;
                assert!(yields < 20, "the run keeps yielding");
                assert_eq!(run.status, RunStatus::Queued, "{run:?}");
                assert_eq!(run.id, run_id);
                assert!(resume_after >= Duration::from_secs(1), "{resume_after:?}");
                // Only what HubSpot acknowledged was committed; nothing is left in doubt that
                // HubSpot has (the rows it has are exactly the ones counted).
                let delivered = run.counts.records_updated.unwrap_or(0) as u64;
                assert_eq!(emu.stats().contacts, delivered, "{run:?}");
                assert!(delivered < ROWS as u64);
                tokio::time::sleep(resume_after).await;
            }
        }
    };
    assert!(yields >= 1, "the run never yielded");
    assert_eq!(run.status, RunStatus::Completed, "{:?}", run.error_message);
    assert_eq!(run.id, run_id, "the same run resumed");
    assert_eq!(run.counts.records_updated, Some(ROWS), "{run:?}");
    assert_eq!(run.counts.records_failed, Some(0), "{run:?}");
    assert_eq!(run.counts.planned.total(), ROWS, "{run:?}");
    let s = emu.stats();
    assert_eq!((s.contacts, s.records_created), (ROWS as u64, ROWS as u64), "every row once: {s:?}");
    assert_eq!(s.rate_limited, 0, "the run yielded before HubSpot had to refuse: {s:?}");

    // Complete state: the next run sends nothing.
    let requests = emu.stats().requests;
    let again = engine.trigger(&SyncRef::Id(1), false, &reason()).await.unwrap();
    let RunOutcome::Finished(again) = engine.run_with(again, &no_progress, &opts).await.unwrap() else {
        panic!("a run with nothing to send yielded");
    };
    assert_eq!(again.status, RunStatus::Completed);
    assert_eq!(again.counts.records_updated, Some(0));
    assert_eq!(emu.stats().requests, requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_while_queued_after_a_yield_ends_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let emu = HubspotEmulator::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        HubspotEmulatorConfig {
            token: Some(TOKEN.into()),
            rate: RateConfig { limit: 2, interval_ms: 3000, daily_limit: 0 },
            properties: vec!["score".into(), "is_vip".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let _wh = Warehouse::create(dir.path(), ROWS).await;
    let engine = open(&write_project(dir.path(), &project(&emu.url))).await;
    let opts = RunOptions { yield_when_throttled: Some(Duration::from_secs(1)) };
    let run_id = engine.trigger(&SyncRef::Id(1), false, &reason()).await.unwrap();
    let RunOutcome::Yielded { .. } = engine.run_with(run_id, &no_progress, &opts).await.unwrap() else {
        panic!("the run did not yield");
    };
    let canceled = engine.cancel(run_id).await.unwrap();
    assert_eq!(canceled.status, RunStatus::Failed);
    assert!(canceled.canceled);
    // Running it again is refused as for any canceled run: it ended.
    match engine.run_with(run_id, &no_progress, &opts).await.unwrap() {
        RunOutcome::Finished(r) => assert!(r.canceled && r.status == RunStatus::Failed, "{r:?}"),
        RunOutcome::Yielded { .. } => panic!("a canceled run yielded"),
    }
}
