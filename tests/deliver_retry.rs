//! The delivery layer's `Retry-After` handling end to end: the engine runs a sync against the
//! HubSpot emulator, whose 429 storm carries a `Retry-After` header. A short wait is honoured
//! (measured as a lower bound only: this machine is shared and noisy); a wait beyond the
//! delivery layer's limit (`MAX_RETRY_AFTER`, 15 minutes) fails the run at once, saying so.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{open, run, write_project, Warehouse};
use sluicegate::deliver::MAX_RETRY_AFTER;
use sluicegate::emulator::hubspot::{Faults, HubspotEmulator, HubspotEmulatorConfig, RateConfig};
use sluicegate::store::RunStatus;

const TOKEN: &str = "pat-na1-retry-test";

async fn emulator(faults: Faults) -> HubspotEmulator {
    let cfg = HubspotEmulatorConfig {
        token: Some(TOKEN.into()),
        rate: RateConfig { limit: 1000, interval_ms: 1000, daily_limit: 0 },
        properties: vec!["score".into(), "is_vip".into()],
        faults,
        ..Default::default()
    };
    HubspotEmulator::start(SocketAddr::from(([127, 0, 0, 1], 0)), cfg).await.unwrap()
}

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
    max_concurrency: 1
    retry: {{max_attempts: 6, initial_backoff: 10ms, max_backoff: 100ms}}
syncs:
  - id: 1
    name: contacts
    source: {{connection: warehouse, table: contacts}}
    destination: {{connection: crm, object: contacts}}
    primary_identifier: {{from: email, to: email}}
    mappings:
      - {{from: name, to: firstname}}
      - {{from: score, to: score}}
    behavior: upsert
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_is_waited_out_before_the_retry() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 20).await;
    let emu = emulator(Faults { storm_next: 1, storm_retry_after: Some(2), ..Faults::default() }).await;
    let engine = open(&write_project(dir.path(), &project(&emu.url))).await;
    let t0 = Instant::now();
    let r = run(&engine, 1, false).await;
    let took = t0.elapsed();
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!(r.counts.records_updated, Some(20));
    let s = emu.stats();
    assert_eq!((s.requests, s.rate_limited, s.contacts), (2, 1, 20), "one 429, then the retry");
    // The backoff alone is at most 100 ms: only the Retry-After explains 2 s.
    assert!(took >= Duration::from_secs(2), "the retry came after {took:?}, before Retry-After: 2 had passed");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_beyond_the_limit_fails_the_run_at_once() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 20).await;
    assert_eq!(MAX_RETRY_AFTER, Duration::from_secs(900));
    let emu = emulator(Faults { storm_next: 1, storm_retry_after: Some(3600), ..Faults::default() }).await;
    let engine = open(&write_project(dir.path(), &project(&emu.url))).await;
    let t0 = Instant::now();
    let r = run(&engine, 1, false).await;
    let took = t0.elapsed();
    assert_eq!(r.status, RunStatus::Failed);
    let msg = r.error_message.unwrap();
    assert!(msg.contains("You have reached your secondly limit."), "the destination's own words: {msg}");
    assert!(msg.contains("the destination asks to wait 3600s, longer than 900s: run the sync again later"), "{msg}");
    assert!(!msg.contains(TOKEN), "{msg}");
    let s = emu.stats();
    assert_eq!((s.requests, s.contacts), (1, 0), "no retry, nothing written");
    // "At once": nowhere near the hour asked for, nor the 15 minutes allowed.
    assert!(took < Duration::from_secs(120), "{took:?}");
    emu.stop().await;
}
