//! Sync behaviors, mapping options, one working run per sync, cancellation, lost executors and
//! dry runs, against the webhook emulator's CRM-like keyed store.

mod common;

use std::time::Duration;

use common::{emulator, reason, run, write_project, Warehouse};
use serde_json::{json, Value};
use sluicegate::config::SyncRef;
use sluicegate::emulator::webhook::Faults;
use sluicegate::engine::{no_progress, Engine, EngineOptions};
use sluicegate::store::{Claim, RecordKind, RunStatus};
use sluicegate::ErrorKind;

/// A cancel from the process executing the run stops it at once: with a 10-minute lease the
/// heartbeat would read the request from the store only after 200 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_in_the_executing_process_does_not_wait_for_the_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 2000).await;
    let emu = emulator().await;
    emu.set_faults(Faults { latency_ms: 30, ..Faults::default() });
    let text = project(&emu.url, &sync(1, "upsert", "table: contacts", ""));
    let engine = std::sync::Arc::new(open_with(dir.path(), &text, Some(Duration::from_secs(600))).await);
    let id = engine.trigger(&SyncRef::Id(1), false, &reason()).await.unwrap();
    let task = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.run(id, &no_progress).await })
    };
    while emu.stats().requests < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let asked = std::time::Instant::now();
    engine.cancel(id).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(60), task).await.expect("the run stopped long before the heartbeat").unwrap().unwrap();
    assert!(r.canceled && r.status == RunStatus::Failed, "{r:?}");
    assert!(asked.elapsed() < Duration::from_secs(60));
    let delivered = r.counts.records_updated.unwrap();
    assert!(delivered < 2000, "{delivered}");
    assert_eq!(emu.stats().stored as i64, delivered, "state reflects exactly what was delivered");
    emu.stop().await;
}

fn project(url: &str, syncs: &str) -> String {
    format!(
        r#"
sources:
  warehouse:
    url: sqlite://warehouse.db
destinations:
  hook:
    type: webhook
    url: {url}/crm
    batch_size: 20
    retry: {{max_attempts: 2, initial_backoff: 10ms}}
syncs:
{syncs}"#
    )
}

fn sync(id: i64, behavior: &str, relation: &str, extra: &str) -> String {
    format!(
        "  - id: {id}\n    name: s{id}\n    source: {{connection: warehouse, {relation}}}\n    destination: {{connection: hook}}\n    \
         primary_identifier: {{from: email, to: email}}\n    mappings:\n      - {{from: name, to: name}}\n      - {{from: score, to: score}}\n    \
         behavior: {behavior}\n{extra}"
    )
}

async fn open_with(dir: &std::path::Path, text: &str, lease: Option<Duration>) -> Engine {
    let p = write_project(dir, text);
    let state = common::state_for(dir).await;
    Engine::open(&p, EngineOptions { lease, state, ..Default::default() }).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_only_rejects_unknown_records_instead_of_creating_them() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 100).await;
    let emu = emulator().await;
    let syncs = sync(1, "upsert", "query: SELECT * FROM contacts WHERE id <= 60", "") + &sync(2, "update", "table: contacts", "");
    let engine = open_with(dir.path(), &project(&emu.url, &syncs), None).await;
    assert_eq!(run(&engine, 1, false).await.counts.records_updated, Some(60));
    let r = run(&engine, 2, false).await;
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!((r.counts.records_processed, r.counts.records_updated, r.counts.records_failed), (Some(100), Some(60), Some(40)));
    assert_eq!(emu.stats().stored, 60, "nothing was created");
    let rejected = engine.run_records(r.id, 100).await.unwrap();
    assert_eq!(rejected.len(), 40);
    assert!(rejected.iter().all(|o| o.operation == "update" && o.reason.contains("an update cannot create it")), "{:?}", rejected[0]);
    // Rejected rows are retried by the next run; accepted ones are not resent.
    let r = run(&engine, 2, false).await;
    assert_eq!((r.counts.records_processed, r.counts.records_failed), (Some(40), Some(40)));
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_only_never_resends_delivered_rows() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 50).await;
    let emu = emulator().await;
    let engine = open_with(dir.path(), &project(&emu.url, &sync(1, "create", "table: contacts", "")), None).await;
    assert_eq!(run(&engine, 1, false).await.counts.records_updated, Some(50));
    wh.exec("UPDATE contacts SET score = 999 WHERE id <= 10").await;
    wh.exec("INSERT INTO contacts VALUES (51, 'user51@example.com', 'User 51', 1, 0)").await;
    emu.reset();
    let r = run(&engine, 1, false).await;
    assert_eq!((r.counts.planned.adds, r.counts.planned.changes, r.counts.records_processed), (1, 0, Some(1)));
    assert_eq!(emails(&emu.records()), ["user51@example.com"]);
    assert_eq!(emu.store()["user1@example.com"]["score"], 1, "the changed row was not sent");
    let e = engine.trigger(&SyncRef::Id(1), true, &reason()).await.unwrap_err();
    assert!(e.to_string().contains("no full sync"), "{e}");
    emu.stop().await;
}

fn emails(records: &[Value]) -> Vec<String> {
    records.iter().map(|r| r["email"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_deletes_what_left_the_source_and_keeps_invalid_rows() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 100).await;
    let emu = emulator().await;
    let engine = open_with(dir.path(), &project(&emu.url, &sync(1, "mirror", "table: contacts", "")), None).await;
    assert_eq!(run(&engine, 1, false).await.counts.records_updated, Some(100));
    assert_eq!(emu.stats().stored, 100);

    wh.exec("DELETE FROM contacts WHERE id > 90").await; // 10 rows leave the source
    wh.exec("UPDATE contacts SET score = -5 WHERE id <= 5").await; // 5 change
    // user4's row takes user3's identifier: user3 is now duplicated (invalid, must stay at the
    // destination), user4 left the source (deleted).
    wh.exec("UPDATE contacts SET email = 'user3@example.com' WHERE id = 4").await;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!(r.counts.records_invalid, Some(2));
    assert_eq!((r.counts.planned.changes, r.counts.planned.removes), (3, 11), "1, 2, 5 changed; 4 and 91..100 left");
    assert_eq!((r.counts.succeeded.removes, r.counts.source_record_deletes), (11, Some(11)));
    let store = emu.store();
    assert_eq!(store.len(), 89);
    assert!(store.contains_key("user3@example.com"), "an invalid row is not deleted");
    assert!(!store.contains_key("user4@example.com") && !store.contains_key("user95@example.com"));
    assert_eq!(store["user5@example.com"]["score"], -5);
    let r = run(&engine, 1, false).await;
    assert_eq!((r.counts.records_processed, r.counts.planned.removes), (Some(0), 0), "deletes were acknowledged");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_sends_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 1).await;
    wh.exec("CREATE TABLE events (event_id TEXT, email TEXT, name TEXT, score INTEGER)").await;
    wh.exec("INSERT INTO events VALUES ('e1', 'a@x.io', 'signup', 1), ('e2', 'a@x.io', 'login', 2), ('e3', 'b@x.io', 'signup', 3), ('e4', 'c@x.io', 'x', 1), ('e4', 'c@x.io', 'y', 2), ('e5', NULL, 'z', 1)").await;
    let emu = emulator().await;
    let s = sync(1, "append", "table: events", "    unique_key: event_id\n");
    let engine = open_with(dir.path(), &project(&emu.url, &s), None).await;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!((r.counts.records_updated, r.counts.records_invalid), (Some(3), Some(3)), "e4 twice, e5 without identifier");
    let invalid = engine.run_records(r.id, 10).await.unwrap();
    assert_eq!(invalid.iter().filter(|o| o.reason.starts_with("duplicate unique key")).count(), 2);
    assert!(invalid.iter().any(|o| o.reason.starts_with("null identifier in column email")));
    // Two events for the same person are two events.
    assert_eq!(emu.records().iter().filter(|r| r["email"] == "a@x.io").count(), 2);

    wh.exec("UPDATE events SET score = 100 WHERE event_id = 'e1'").await; // never resent
    wh.exec("INSERT INTO events VALUES ('e6', 'a@x.io', 'purchase', 9)").await;
    emu.reset();
    let r = run(&engine, 1, false).await;
    assert_eq!(r.counts.records_updated, Some(1));
    assert_eq!(emu.records(), vec![json!({"email": "a@x.io", "name": "purchase", "score": 9})]);
    let e = engine.trigger(&SyncRef::Id(1), true, &reason()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constants_null_handling_and_field_types() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 4).await;
    wh.exec("ALTER TABLE contacts ADD COLUMN signup TEXT").await;
    wh.exec("UPDATE contacts SET signup = '2026-03-01 10:00:00' WHERE id = 1").await;
    wh.exec("UPDATE contacts SET signup = 'last tuesday' WHERE id = 2").await;
    wh.exec("UPDATE contacts SET name = NULL WHERE id = 3").await;
    let emu = emulator().await;
    let s = "  - id: 1\n    name: typed\n    source: {connection: warehouse, table: contacts}\n    destination: {connection: hook}\n    \
             primary_identifier: {from: email, to: email}\n    mappings:\n      - {from: name, to: name, sync_nulls: false}\n      \
             - {from: score, to: score, type: string}\n      - {from: signup, to: signup_at, type: datetime}\n      \
             - {constant: warehouse, to: lead_source}\n      - {constant: 3, to: tier}\n";
    let engine = open_with(dir.path(), &project(&emu.url, s), None).await;
    let r = run(&engine, 1, false).await;
    assert_eq!((r.counts.records_updated, r.counts.records_invalid), (Some(3), Some(1)));
    let store = emu.store();
    assert_eq!(
        store["user1@example.com"],
        json!({"email": "user1@example.com", "name": "User 1", "score": "1", "signup_at": "2026-03-01T10:00:00Z", "lead_source": "warehouse", "tier": 3})
    );
    assert!(!store["user3@example.com"].as_object().unwrap().contains_key("name"), "a null with sync_nulls: false is left out");
    assert_eq!(store["user4@example.com"]["signup_at"], Value::Null, "nulls are sent by default");
    let invalid = engine.run_records(r.id, 10).await.unwrap();
    assert_eq!(invalid.len(), 1);
    assert_eq!(invalid[0].kind, RecordKind::Invalid);
    assert_eq!(invalid[0].identifier.as_deref(), Some("user2@example.com"));
    assert!(invalid[0].reason.contains("field signup_at (column signup): \"last tuesday\" is not an ISO-8601"), "{}", invalid[0].reason);
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_waits_for_the_working_one() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 200).await;
    let emu = emulator().await;
    emu.set_faults(Faults { latency_ms: 20, ..Faults::default() });
    let text = project(&emu.url, &sync(1, "upsert", "table: contacts", ""));
    let a = open_with(dir.path(), &text, None).await;
    let b = open_with(dir.path(), &text, None).await; // a second executor sharing the store
    let r1 = a.trigger(&SyncRef::Id(1), false, &reason()).await.unwrap();
    let r2 = b.trigger(&SyncRef::Id(1), false, &reason()).await.unwrap();
    let (x, y) = tokio::join!(a.run(r1, &no_progress), b.run(r2, &no_progress));
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!((x.status, y.status), (RunStatus::Completed, RunStatus::Completed));
    let (first, second) = if x.started_at < y.started_at { (&x, &y) } else { (&y, &x) };
    assert!(second.started_at.as_deref().unwrap() >= first.completed_at.as_deref().unwrap(), "runs overlapped: {first:?} {second:?}");
    assert_eq!(first.counts.records_updated, Some(200));
    assert_eq!(second.counts.records_processed, Some(0), "the second run diffs against the first's acknowledged state");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_within_a_batch_and_the_next_run_sends_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 400).await;
    let emu = emulator().await;
    emu.set_faults(Faults { latency_ms: 30, ..Faults::default() });
    let text = project(&emu.url, &sync(1, "upsert", "table: contacts", ""));
    let engine = std::sync::Arc::new(open_with(dir.path(), &text, None).await);
    let other = open_with(dir.path(), &text, None).await;
    let id = engine.trigger(&SyncRef::Id(1), false, &reason()).await.unwrap();
    let task = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.run(id, &no_progress).await })
    };
    while emu.stats().requests < 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let asked = other.cancel(id).await.unwrap();
    assert_eq!(asked.status, RunStatus::Working);
    let requests_at_cancel = emu.stats().requests;
    let r = task.await.unwrap().unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    assert!(r.canceled);
    assert_eq!(r.error_code.as_deref(), Some("CANCELED"));
    // No batch starts after the cancel is seen; those in flight (at most max_concurrency, 4 by
    // default, and one more dispatched before the next commit saw the cancel) finish.
    assert!(emu.stats().requests <= requests_at_cancel + 5, "stopped within the batches in flight");
    let delivered = r.counts.records_updated.unwrap();
    assert!(delivered > 0 && delivered < 400, "{delivered}");
    assert_eq!(emu.stats().stored as i64, delivered, "state reflects exactly what was delivered");
    emu.set_faults(Faults::default());
    let r = run(&engine, 1, false).await;
    assert_eq!(r.counts.records_updated, Some(400 - delivered));
    assert_eq!(emu.stats().duplicates, 0);
    // A finished run cannot be canceled; a queued one ends at once.
    assert_eq!(engine.cancel(r.id).await.unwrap_err().kind(), ErrorKind::RunState);
    let q = engine.trigger(&SyncRef::Id(1), false, &reason()).await.unwrap();
    let c = engine.cancel(q).await.unwrap();
    assert!(c.status == RunStatus::Failed && c.canceled);
    assert!(engine.run(q, &no_progress).await.unwrap().canceled);
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_of_lost_executors_fail_and_the_next_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 30).await;
    let emu = emulator().await;
    let text = project(&emu.url, &sync(1, "upsert", "table: contacts", ""));
    let engine = open_with(dir.path(), &text, Some(Duration::from_secs(3600))).await;
    let store = engine.store().clone();

    // An executor on another host stops heartbeating: its lease expires.
    let id = engine.trigger(&SyncRef::Id(1), false, &reason()).await.unwrap();
    assert!(matches!(store.claim_run(id, "elsewhere:42:7", Duration::from_millis(300)).await.unwrap(), Claim::Claimed(_)));
    assert_eq!(engine.get_run(id).await.unwrap().status, RunStatus::Working);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let lost = engine.get_run(id).await.unwrap();
    assert_eq!(lost.status, RunStatus::Failed);
    assert_eq!(lost.error_code.as_deref(), Some("EXECUTOR_LOST"));
    assert!(lost.error_message.as_deref().unwrap().contains("executor lost: elsewhere:42:7 stopped renewing its lease"), "{lost:?}");

    // A process on this host that is gone: failed at once, whatever its lease.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    child.wait().unwrap();
    let id = engine.trigger(&SyncRef::Id(1), false, &reason()).await.unwrap();
    let dead = format!("{host}:{pid}:12345");
    assert!(matches!(store.claim_run(id, &dead, Duration::from_secs(3600)).await.unwrap(), Claim::Claimed(_)));
    let next = engine.trigger(&SyncRef::Id(1), false, &reason()).await.unwrap();
    let r = engine.run(next, &no_progress).await.unwrap();
    assert_eq!(r.status, RunStatus::Completed, "not blocked by the dead run");
    assert_eq!(r.counts.records_updated, Some(30));
    let lost = engine.get_run(id).await.unwrap();
    assert!(lost.error_message.unwrap().contains(&format!("process {dead} ended")));
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_touches_neither_destination_nor_state() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 40).await;
    let emu = emulator().await;
    let engine = open_with(dir.path(), &project(&emu.url, &sync(1, "mirror", "table: contacts", "")), None).await;
    let p = engine.plan(&SyncRef::Id(1), false, 2).await.unwrap();
    assert_eq!((p.source_rows, p.adds, p.changes, p.removes, p.invalid), (40, 40, 0, 0, 0));
    assert_eq!(p.samples.adds.len(), 2);
    assert_eq!(emu.stats().requests, 0);
    run(&engine, 1, false).await;
    wh.exec("DELETE FROM contacts WHERE id <= 3").await;
    wh.exec("UPDATE contacts SET score = 0 WHERE id = 10").await;
    wh.exec("UPDATE contacts SET email = NULL WHERE id = 11").await;
    let before = emu.stats().requests;
    let p = engine.plan(&SyncRef::Id(1), false, 5).await.unwrap();
    assert_eq!((p.adds, p.changes, p.removes, p.invalid, p.unchanged), (0, 1, 4, 1, 35));
    assert_eq!(p.samples.removes.len(), 4);
    assert_eq!(p.samples.changes[0]["email"], "user10@example.com");
    assert_eq!(emu.stats().requests, before);
    let p2 = engine.plan(&SyncRef::Id(1), true, 0).await.unwrap();
    assert_eq!(p2.changes, 36, "a full sync resends every valid row");
    let r = run(&engine, 1, false).await;
    assert_eq!((r.counts.planned.changes, r.counts.planned.removes), (1, 4), "the plan changed no state");
    emu.stop().await;
}

/// A create whose answer was lost after the destination applied it: the next run finds the
/// rows in doubt, the destination answers "already exists", and that is their acknowledgement
/// (before, it was a rejection every run, forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_rows_whose_answer_was_lost_are_acknowledged_by_already_exists() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 30).await;
    let emu = emulator().await;
    let engine = open_with(dir.path(), &project(&emu.url, &sync(1, "create", "table: contacts", "")), None).await;
    // Every request is applied, then answered 503: the run fails with its batches in doubt.
    emu.set_faults(Faults { fail_rate: 1.0, apply_then_fail: true, ..Faults::default() });
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Failed, "{r:?}");
    let applied = emu.stats().stored;
    assert!(applied > 0, "the destination applied the first batch");
    emu.set_faults(Faults::default());
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!((r.counts.records_updated, r.counts.records_failed), (Some(30), Some(0)));
    assert!(engine.run_records(r.id, 100).await.unwrap().is_empty());
    assert_eq!(emu.stats().stored, 30);
    let mut sent = emails(&emu.records());
    sent.sort();
    sent.dedup();
    assert_eq!(sent.len(), 30, "each row created once");
    assert_eq!(emu.records().len(), 30, "each row created once");
    // Acknowledged: nothing is sent again.
    let r = run(&engine, 1, false).await;
    assert_eq!((r.counts.records_processed, r.counts.records_failed), (Some(0), Some(0)));
    emu.stop().await;
}

/// A create that finds a record it never sent (not in doubt) is still a rejection, with the
/// destination's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_of_a_record_created_elsewhere_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 10).await;
    let emu = emulator().await;
    let syncs = sync(1, "upsert", "query: SELECT * FROM contacts WHERE id <= 3", "") + &sync(2, "create", "table: contacts", "");
    let engine = open_with(dir.path(), &project(&emu.url, &syncs), None).await;
    assert_eq!(run(&engine, 1, false).await.counts.records_updated, Some(3));
    let r = run(&engine, 2, false).await;
    assert_eq!((r.counts.records_updated, r.counts.records_failed), (Some(7), Some(3)));
    let rejected = engine.run_records(r.id, 100).await.unwrap();
    assert!(rejected.iter().all(|o| o.reason.contains("already exists")), "{rejected:?}");
    // And again on the next run: a rejection never becomes an acknowledgement.
    let r = run(&engine, 2, false).await;
    assert_eq!((r.counts.records_updated, r.counts.records_failed), (Some(0), Some(3)));
    emu.stop().await;
}

/// A row rejected on its add was never delivered: when it leaves the source, a mirror sync
/// sends no delete for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_never_deletes_a_row_it_never_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 30).await;
    let emu = emulator().await;
    emu.set_reject_rules(vec![sluicegate::emulator::webhook::RejectRule::parse("name=^User 7$").unwrap()]);
    let engine = open_with(dir.path(), &project(&emu.url, &sync(1, "mirror", "table: contacts", "")), None).await;
    let r = run(&engine, 1, false).await;
    assert_eq!((r.counts.records_updated, r.counts.records_failed), (Some(29), Some(1)));
    wh.exec("DELETE FROM contacts WHERE id = 7").await;
    emu.reset();
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!((r.counts.planned.removes, r.counts.records_processed), (0, Some(0)));
    assert_eq!(emu.stats().requests, 0, "no delete for a record never created");
    emu.stop().await;
}

/// An executor whose run was taken over (failed as lost by another executor) writes nothing
/// more: the answers it still receives are not recorded, so the next run sends those rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_that_lost_its_lease_writes_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 30).await;
    let emu = emulator().await;
    // Every answer is held 1 s: the run's batches are in flight when it is taken over.
    emu.set_faults(Faults { stall_every: Some(1), stall_seconds: 1.0, ..Faults::default() });
    let text = project(&emu.url, &sync(1, "upsert", "table: contacts", ""));
    // A 10-minute lease: the heartbeat does not notice the takeover during this test.
    let engine = std::sync::Arc::new(open_with(dir.path(), &text, Some(Duration::from_secs(600))).await);
    let store = engine.store().clone();
    let id = engine.trigger(&SyncRef::Id(1), false, &reason()).await.unwrap();
    let task = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.run(id, &no_progress).await })
    };
    while emu.stats().requests < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Another executor finds this one gone and fails its run.
    assert_eq!(store.reap_lost_runs(&|_| Some(false)).await.unwrap(), 1);
    let taken = store.get_run(id).await.unwrap();
    assert_eq!(taken.status, RunStatus::Failed);
    let r = tokio::time::timeout(Duration::from_secs(60), task).await.unwrap().unwrap().unwrap();
    assert_eq!((r.status, r.error_code.as_deref()), (RunStatus::Failed, Some("EXECUTOR_LOST")), "{r:?}");
    assert_eq!((r.counts.clone(), r.error_message.clone()), (taken.counts, taken.error_message), "the stale executor wrote nothing");
    let e = store.commit_batch(id, "stale:1:1", 1, &[], &[], &sluicegate::store::RunCounts::default()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RunState);
    assert!(e.to_string().contains(&format!("this executor lost its lease on run {id}; another executor took over; nothing more is written")), "{e}");
    // Nothing it heard back was recorded: the next run sends every row.
    emu.set_faults(Faults::default());
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!((r.counts.planned.total(), r.counts.records_updated), (30, Some(30)));
    emu.stop().await;
}

/// A run executed where it is triggered (`sluicegate run`) is created already claimed: there is
/// no moment at which a kill leaves it queued with no one to execute it. While another run of
/// the sync works, it waits without creating a run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_executed_where_triggered_are_never_left_queued() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 30).await;
    let emu = emulator().await;
    let text = project(&emu.url, &(sync(1, "upsert", "table: contacts", "") + &sync(2, "create", "table: contacts", "")));
    let engine = std::sync::Arc::new(open_with(dir.path(), &text, None).await);
    let store = engine.store().clone();
    // Another executor (another host) holds the sync.
    let held = engine.trigger(&SyncRef::Id(1), false, &reason()).await.unwrap();
    assert!(matches!(store.claim_run(held, "elsewhere:42:7", Duration::from_secs(3600)).await.unwrap(), Claim::Claimed(_)));
    let task = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.trigger_and_run(&SyncRef::Id(1), false, &reason(), &no_progress).await })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!task.is_finished(), "waits for the working run");
    let runs = store.list_runs(Some(1), 10).await.unwrap();
    assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), [held], "no run is created while waiting");
    let end = sluicegate::store::RunEnd {
        status: RunStatus::Completed,
        canceled: false,
        error_code: None,
        error_message: None,
        error_detail: None,
        counts: Default::default(),
    };
    store.finish_run(held, &end).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(60), task).await.unwrap().unwrap().unwrap();
    assert_eq!((r.status, r.counts.records_updated), (RunStatus::Completed, Some(30)), "{:?}", r.error_message);
    assert!(r.started_at.is_some() && r.id != held);
    assert!(store.list_runs(Some(1), 10).await.unwrap().iter().all(|r| r.status != RunStatus::Queued));
    // The same refusal as a trigger's.
    let e = engine.trigger_and_run(&SyncRef::Id(2), true, &reason(), &no_progress).await.unwrap_err();
    assert!(e.to_string().contains("it sends each row once, so it has no full sync"), "{e}");
    assert!(store.list_runs(Some(2), 10).await.unwrap().is_empty());
    emu.stop().await;
}
