//! The engine end to end against the in-process webhook emulator.

mod common;

use common::{emulator, open, project_yml, run, write_project, Warehouse};
use serde_json::Value;
use sluicegate::emulator::webhook::{Faults, RejectRule};
use sluicegate::store::{RecordKind, RunStatus};

fn emails(records: &[Value]) -> Vec<String> {
    records.iter().map(|r| r["email"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_all_then_nothing_then_only_changes() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 1000).await;
    let emu = emulator().await;
    // One batch in flight at a time, so that arrival order is the order rows were read in.
    let text = project_yml(&emu.url, "").replace("    batch_size: 50\n", "    batch_size: 50\n    max_concurrency: 1\n");
    assert!(text.contains("max_concurrency: 1"));
    let engine = open(&write_project(dir.path(), &text)).await;

    let r1 = run(&engine, 1, false).await;
    assert_eq!(r1.status, RunStatus::Completed, "{:?}", r1.error_message);
    let c = &r1.counts;
    assert_eq!(c.source_record_count, Some(1000));
    assert_eq!(c.source_record_updates, Some(1000));
    assert_eq!((c.records_processed, c.records_updated, c.records_failed, c.records_invalid), (Some(1000), Some(1000), Some(0), Some(0)));
    assert_eq!((c.planned.adds, c.succeeded.adds), (1000, 1000));
    assert_eq!(emu.stats().records_accepted, 1000);
    assert_eq!(emu.stats().requests, 20, "1000 rows in batches of 50");
    let records = emu.records();
    // Rows are read in identifier order, byte-wise (so "user1000@" < "user100@", as '0' < '@').
    let mut sorted: Vec<String> = (1..=1000).map(|i| format!("user{i}@example.com")).collect();
    sorted.sort();
    assert_eq!(emails(&records), sorted);
    assert_eq!(&sorted[..3], ["user1000@example.com", "user100@example.com", "user101@example.com"]);
    let first = records.iter().find(|r| r["email"] == "user1@example.com").unwrap();
    assert_eq!(first["full_name"], "User 1");
    assert_eq!(first["score"], 1);
    assert_eq!(first["is_vip"], false, "an INTEGER in a BOOLEAN column arrives as a boolean");

    let r2 = run(&engine, 1, false).await;
    assert_eq!(r2.status, RunStatus::Completed);
    assert_eq!((r2.counts.source_record_updates, r2.counts.records_processed), (Some(0), Some(0)));
    assert_eq!(emu.stats().requests, 20, "no request when nothing changed");

    // 10 updates (one of them a silent change of a non-key column), 5 new rows.
    wh.exec("UPDATE contacts SET score = score + 1000 WHERE id % 100 = 0").await;
    wh.exec("INSERT INTO contacts SELECT id + 1000, 'new' || id || '@example.com', 'New', 1, 0 FROM contacts WHERE id <= 5").await;
    emu.reset();
    let r3 = run(&engine, 1, false).await;
    assert_eq!(r3.status, RunStatus::Completed);
    assert_eq!((r3.counts.planned.adds, r3.counts.planned.changes), (5, 10));
    assert_eq!((r3.counts.succeeded.adds, r3.counts.succeeded.changes), (5, 10));
    let mut got = emails(&emu.records());
    got.sort();
    let mut want: Vec<String> = (1..=10).map(|i| format!("user{}@example.com", i * 100)).collect();
    want.extend((1..=5).map(|i| format!("new{i}@example.com")));
    want.sort();
    assert_eq!(got, want);

    // A full sync resends every row, each acknowledged again.
    emu.reset();
    let r4 = run(&engine, 1, true).await;
    assert!(r4.full_sync);
    assert_eq!(r4.counts.records_updated, Some(1005));
    assert_eq!(emu.stats().records_accepted, 1005);
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_rows_are_recorded_and_retried_next_run() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 200).await;
    let emu = emulator().await;
    emu.set_reject_rules(vec![RejectRule::parse(r"email=^user1\d@").unwrap()]); // user10..user19
    let engine = open(&write_project(dir.path(), &project_yml(&emu.url, ""))).await;

    let r1 = run(&engine, 1, false).await;
    assert_eq!(r1.status, RunStatus::Completed);
    assert_eq!((r1.counts.records_processed, r1.counts.records_updated, r1.counts.records_failed), (Some(200), Some(190), Some(10)));
    let rejected = engine.run_records(r1.id, 100).await.unwrap();
    assert_eq!(rejected.len(), 10);
    assert!(rejected.iter().all(|r| r.kind == RecordKind::Rejected));
    let r = rejected.iter().find(|r| r.identifier.as_deref() == Some("user15@example.com")).unwrap();
    assert!(r.reason.contains("emulator rule"), "{}", r.reason);
    assert!(r.payload.as_deref().unwrap().contains("\"full_name\":\"User 15\""));

    // Unchanged rows stay unsent; the rejected ones were never acknowledged, so they go again.
    emu.set_reject_rules(vec![]);
    emu.reset();
    let r2 = run(&engine, 1, false).await;
    assert_eq!((r2.counts.records_processed, r2.counts.records_updated), (Some(10), Some(10)));
    let mut got = emails(&emu.records());
    got.sort();
    let mut want: Vec<String> = (10..20).map(|i| format!("user{i}@example.com")).collect();
    want.sort();
    assert_eq!(got, want);

    let r3 = run(&engine, 1, false).await;
    assert_eq!(r3.counts.records_processed, Some(0));
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_and_duplicate_identifiers_are_invalid_and_not_sent() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 50).await;
    wh.exec("UPDATE contacts SET email = NULL WHERE id IN (1, 2)").await;
    wh.exec("UPDATE contacts SET email = 'user3@example.com' WHERE id = 4").await; // 3 and 4 collide
    let emu = emulator().await;
    let engine = open(&write_project(dir.path(), &project_yml(&emu.url, ""))).await;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!(r.counts.source_record_count, Some(50));
    assert_eq!(r.counts.records_invalid, Some(4));
    assert_eq!(r.source_record_invalids, Some(4));
    assert_eq!(r.counts.records_processed, Some(46));
    assert_eq!(emu.stats().records_received, 46);
    assert!(!emails(&emu.records()).contains(&"user3@example.com".to_string()));
    let invalid = engine.run_records(r.id, 100).await.unwrap();
    assert_eq!(invalid.iter().filter(|o| o.kind == RecordKind::Invalid).count(), 4);
    assert_eq!(invalid.iter().filter(|o| o.reason.starts_with("null identifier")).count(), 2);
    assert_eq!(invalid.iter().filter(|o| o.reason.starts_with("duplicate identifier: 2 source rows")).count(), 2);
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_destination_fails_the_run_with_its_message_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 120).await;
    let emu = emulator().await;
    emu.set_faults(Faults { fail_rate: 1.0, fail_status: 503, fail_message: "CRM is down for maintenance".into(), ..Faults::default() });
    let engine = open(&write_project(dir.path(), &project_yml(&emu.url, ""))).await;
    let r1 = run(&engine, 1, false).await;
    assert_eq!(r1.status, RunStatus::Failed);
    assert_eq!(r1.error_code.as_deref(), Some("DESTINATION_ERROR"));
    let msg = r1.error_message.clone().unwrap();
    assert!(msg.contains("CRM is down for maintenance"), "{msg}");
    assert!(msg.contains("HTTP 503"), "{msg}");
    assert!(msg.contains("gave up after 3 attempts"), "{msg}");
    assert!(!msg.contains("test-token"), "no secret in the error: {msg}");
    assert_eq!(emu.stats().requests, 3, "max_attempts = 3");
    assert!(r1.completed_at.is_some());

    // Every other request fails: retries get each batch through.
    emu.set_faults(Faults { fail_rate: 0.5, fail_status: 429, fail_message: "slow down".into(), ..Faults::default() });
    emu.reset();
    let r2 = run(&engine, 1, false).await;
    assert_eq!(r2.status, RunStatus::Completed, "{:?}", r2.error_message);
    assert_eq!(r2.counts.records_updated, Some(120), "nothing was acknowledged by the failed run");
    assert_eq!(emu.stats().records_accepted, 120);
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_keeps_batches_acknowledged_before_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 200).await;
    let emu = emulator().await;
    // Batches of 50: the first two are accepted, then the destination goes down (batches
    // already in flight fail too).
    emu.set_faults(Faults { fail_after: Some(2), fail_status: 502, fail_message: "bad gateway".into(), ..Faults::default() });
    let engine = open(&write_project(dir.path(), &project_yml(&emu.url, ""))).await;
    let r1 = run(&engine, 1, false).await;
    assert_eq!(r1.status, RunStatus::Failed);
    assert_eq!((r1.counts.records_processed, r1.counts.records_updated), (Some(100), Some(100)));
    assert_eq!(emu.stats().records_accepted, 100);
    // Which two batches were accepted depends on which requests arrived first (several are in
    // flight at once).
    let accepted: std::collections::BTreeSet<String> = emails(&emu.records()).into_iter().collect();
    assert_eq!(accepted.len(), 100);

    // The next run sends exactly the rows that were never acknowledged: batches whose delivery
    // failed are in doubt (changes), those never attempted are new (adds).
    emu.set_faults(Faults::default());
    emu.reset();
    let r2 = run(&engine, 1, false).await;
    assert_eq!(r2.status, RunStatus::Completed);
    let p = &r2.counts.planned;
    assert_eq!((p.adds + p.changes, r2.counts.records_updated), (100, Some(100)));
    assert!(p.changes >= 50 && p.changes % 50 == 0, "the failed batches are in doubt: {p:?}");
    // Exactly the 100 rows not acknowledged before are sent now, each once.
    let all: std::collections::BTreeSet<String> = (1..=200).map(|i| format!("user{i}@example.com")).collect();
    let resent = emails(&emu.records());
    let resent_set: std::collections::BTreeSet<String> = resent.iter().cloned().collect();
    assert_eq!(resent.len(), 100, "each once");
    assert_eq!(resent_set, all.difference(&accepted).cloned().collect());
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_is_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 100).await;
    let emu = emulator().await;
    let engine = open(&write_project(dir.path(), &project_yml(&emu.url, ""))).await;
    assert_eq!(run(&engine, 1, false).await.counts.records_updated, Some(100));

    emu.set_faults(Faults { fail_rate: 1.0, fail_status: 401, fail_message: "invalid API key".into(), ..Faults::default() });
    emu.reset();
    wh.exec("UPDATE contacts SET score = -1").await;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(emu.stats().requests, 1, "401 is not retried");
    let msg = r.error_message.unwrap();
    assert!(msg.contains("invalid API key") && msg.contains("check the credentials"), "{msg}");

    emu.set_faults(Faults::default());
    let r = run(&engine, 1, false).await;
    assert_eq!((r.status, r.counts.planned.changes, r.counts.records_updated), (RunStatus::Completed, 100, Some(100)));
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_mappings_resends_rows_whose_payload_changed() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 30).await;
    let emu = emulator().await;
    let project = write_project(dir.path(), &project_yml(&emu.url, ""));
    let engine = open(&project).await;
    assert_eq!(run(&engine, 1, false).await.counts.records_processed, Some(30));
    // Reordering mappings changes no payload.
    let text = project_yml(&emu.url, "").replace(
        "      - from: name\n        to: full_name\n      - from: score\n        to: score\n",
        "      - from: score\n        to: score\n      - from: name\n        to: full_name\n",
    );
    let engine = open(&write_project(dir.path(), &text)).await;
    assert_eq!(run(&engine, 1, false).await.counts.records_processed, Some(0));
    // A new mapped field changes every payload.
    let text = project_yml(&emu.url, "").replace("      - from: vip\n", "      - from: id\n        to: external_id\n      - from: vip\n");
    let engine = open(&write_project(dir.path(), &text)).await;
    let r = run(&engine, 1, false).await;
    assert_eq!((r.counts.planned.changes, r.counts.records_updated), (30, Some(30)));
    let user30 = emu.records().into_iter().rev().find(|r| r["email"] == "user30@example.com").unwrap();
    assert_eq!(user30["external_id"], 30);
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_sources_and_run_lookup_errors() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 40).await;
    let emu = emulator().await;
    let extra = r#"  - id: 2
    name: vips
    source:
      connection: warehouse
      query: "SELECT email, name AS label FROM contacts WHERE vip;"
    destination:
      connection: hook
    primary_identifier: {from: email, to: email}
    mappings:
      - {from: label, to: label}
"#;
    let engine = open(&write_project(dir.path(), &project_yml(&emu.url, extra))).await;
    let r = run(&engine, 2, false).await;
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!(r.counts.records_processed, Some(5), "ids 7, 14, 21, 28, 35");
    assert_eq!(r.sync_name, "vips");

    let e = engine.get_run(9999).await.unwrap_err();
    assert_eq!(e.kind(), sluicegate::ErrorKind::RunNotFound);
    let e = engine.trigger(&sluicegate::config::SyncRef::Name("nope".into()), false, &common::reason()).await.unwrap_err();
    assert_eq!(e.kind(), sluicegate::ErrorKind::SyncNotFound);
    assert!(e.to_string().contains("its syncs are: 1 (contacts), 2 (vips)"), "{e}");
    // A finished run cannot be run again.
    let e = engine.run(r.id, &sluicegate::engine::no_progress).await.unwrap_err();
    assert_eq!(e.kind(), sluicegate::ErrorKind::RunState);
    let runs = engine.list_runs(None, 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_fails_the_run_with_a_located_source_error() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 1).await;
    let emu = emulator().await;
    let text = project_yml(&emu.url, "").replace("table: contacts", "table: pub_contacts");
    let engine = open(&write_project(dir.path(), &text)).await;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(r.error_code.as_deref(), Some("SOURCE_ERROR"));
    let msg = r.error_message.unwrap();
    assert!(msg.contains("sync 1 (contacts)") && msg.contains("syncs[0].source.table") && msg.contains("table \"pub_contacts\""), "{msg}");
    assert!(msg.contains("no such table"), "the cause is kept: {msg}");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_applied_but_not_acknowledged_is_repaired_even_if_the_source_reverts() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 10).await;
    let emu = emulator().await;
    let engine = open(&write_project(dir.path(), &project_yml(&emu.url, ""))).await;
    assert_eq!(run(&engine, 1, false).await.counts.records_updated, Some(10));
    assert_eq!(emu.store()["user3@example.com"]["score"], 3);

    // The destination applies the change but its answer is lost: the run fails, in doubt.
    wh.exec("UPDATE contacts SET score = 999 WHERE id = 3").await;
    emu.set_faults(Faults { fail_rate: 1.0, fail_status: 503, apply_then_fail: true, ..Faults::default() });
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(emu.store()["user3@example.com"]["score"], 999, "the destination holds the unacknowledged value");

    // The source goes back to the acknowledged value. The state must not take the destination
    // to hold it: the row is sent again and the destination is repaired.
    wh.exec("UPDATE contacts SET score = 3 WHERE id = 3").await;
    emu.set_faults(Faults::default());
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!(r.counts.records_updated, Some(1));
    assert_eq!(emu.store()["user3@example.com"]["score"], 3);
    assert_eq!(run(&engine, 1, false).await.counts.records_processed, Some(0));
    emu.stop().await;
}

/// Toggling `sync_nulls` changes the payload only of rows with a null in that field: only they
/// are sent again. `source_url` holds table `people` (email, name, nickname); rows 1 to 3 have
/// no nickname.
async fn sync_nulls_toggle_resends_only_rows_with_nulls(dir: &std::path::Path, source_url: &str) {
    let emu = emulator().await;
    let project = |name_nulls: bool, nick_nulls: bool| {
        format!(
            "sources:\n  w:\n    url: \"{source_url}\"\ndestinations:\n  hook:\n    type: webhook\n    url: {}/people\n    batch_size: 50\n\
             syncs:\n  - id: 1\n    name: people\n    source: {{connection: w, table: people}}\n    destination: {{connection: hook}}\n    \
             primary_identifier: {{from: email, to: email}}\n    mappings:\n      - {{from: name, to: name, sync_nulls: {name_nulls}}}\n      \
             - {{from: nickname, to: nickname, sync_nulls: {nick_nulls}}}\n    behavior: upsert\n",
            emu.url
        )
    };
    let state = common::state_for(dir).await;
    let open = |text: String| {
        let p = write_project(dir, &text);
        let state = state.clone();
        async move { sluicegate::engine::Engine::open(&p, sluicegate::engine::EngineOptions { state, ..Default::default() }).await.unwrap() }
    };
    let r = run(&open(project(true, true)).await, 1, false).await;
    assert_eq!((r.status, r.counts.records_updated), (RunStatus::Completed, Some(20)), "{:?}", r.error_message);
    let r = run(&open(project(true, true)).await, 1, false).await;
    assert_eq!(r.counts.records_processed, Some(0), "nothing changed: {:?}", r.counts);
    // `name` has no null: its payloads are the same either way.
    emu.reset();
    let r = run(&open(project(false, true)).await, 1, false).await;
    assert_eq!((r.status, r.counts.records_processed), (RunStatus::Completed, Some(0)), "{:?} {:?}", r.error_message, r.counts);
    assert_eq!(emu.stats().requests, 0);
    // `nickname` is null in rows 1 to 3: their payloads leave it out now, and only they are sent.
    let r = run(&open(project(false, false)).await, 1, false).await;
    assert_eq!((r.status, r.counts.planned.changes, r.counts.records_updated), (RunStatus::Completed, 3, Some(3)), "{:?}", r.error_message);
    let mut sent = emails(&emu.records());
    sent.sort();
    assert_eq!(sent, ["p1@example.com", "p2@example.com", "p3@example.com"]);
    assert!(emu.records().iter().all(|r| r.get("nickname").is_none()));
    // And back: the same three again, nothing else.
    emu.reset();
    let r = run(&open(project(true, true)).await, 1, false).await;
    assert_eq!((r.counts.planned.changes, r.counts.records_updated), (3, Some(3)));
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_nulls_toggle_resends_only_rows_with_nulls_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 1).await;
    wh.exec("CREATE TABLE people (email TEXT PRIMARY KEY, name TEXT, nickname TEXT)").await;
    wh.exec(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20) \
         INSERT INTO people SELECT 'p' || i || '@example.com', 'Person ' || i, CASE WHEN i > 3 THEN 'n' || i END FROM n",
    )
    .await;
    sync_nulls_toggle_resends_only_rows_with_nulls(dir.path(), "sqlite://warehouse.db").await;
}

/// The same with a Postgres source, whose rows are fingerprinted from their binary form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_nulls_toggle_resends_only_rows_with_nulls_postgres() {
    let Ok(admin) = std::env::var("SLUICEGATE_TEST_PG_URL") else {
        assert!(
            std::env::var("SLUICEGATE_REQUIRE_ALL").map_or(true, |v| v.is_empty() || v == "0"),
            "SLUICEGATE_TEST_PG_URL is not set and SLUICEGATE_REQUIRE_ALL=1"
        );
        eprintln!("SKIPPED: SLUICEGATE_TEST_PG_URL is not set; source scripts/services.sh and run `services_start pg DIR`");
        return;
    };
    let name = format!("sg_nulls_{}_{}", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_000);
    let pool = sqlx::PgPool::connect(&admin).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&pool).await.unwrap();
    pool.close().await;
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let pg = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE people (email text PRIMARY KEY, name text, nickname text);
         INSERT INTO people SELECT 'p' || i || '@example.com', 'Person ' || i, CASE WHEN i > 3 THEN 'n' || i END FROM generate_series(1, 20) i;",
    )
    .execute(&pg)
    .await
    .unwrap();
    pg.close().await;
    let dir = tempfile::tempdir().unwrap();
    sync_nulls_toggle_resends_only_rows_with_nulls(dir.path(), &url).await;
}
