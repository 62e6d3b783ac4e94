//! The salesforce destination: the engine against the Salesforce emulator over HTTP.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::{run, write_project, Warehouse};
use serde_json::{json, Map, Value};
use sluicegate::config::{Project, SyncRef};
use sluicegate::emulator::salesforce::{Faults, SalesforceEmulator, SalesforceEmulatorConfig, ValidationRule};
use sluicegate::engine::Engine;
use sluicegate::store::RunStatus;
use sluicegate::ErrorKind;

const SECRET: &str = "test-client-secret";
const REFRESH: &str = "test-refresh-token";
const CLIENT: &str = "test-client-id";

async fn emulator(cfg: SalesforceEmulatorConfig) -> SalesforceEmulator {
    SalesforceEmulator::start(SocketAddr::from(([127, 0, 0, 1], 0)), cfg).await.unwrap()
}

/// A project with one salesforce destination `crm` (`dest_extra`: more of its keys, each line
/// indented 4) and `syncs`.
fn project(login_url: &str, dest_extra: &str, syncs: &str) -> String {
    format!(
        r#"sources:
  warehouse:
    url: sqlite://warehouse.db
destinations:
  crm:
    type: salesforce
    login_url: {login_url}
    client_id: ${{SF_TEST_CLIENT_ID:-{CLIENT}}}
    client_secret: ${{SF_TEST_CLIENT_SECRET:-{SECRET}}}
    refresh_token: ${{SF_TEST_REFRESH_TOKEN:-{REFRESH}}}
    retry: {{max_attempts: 4, initial_backoff: 10ms, max_backoff: 50ms}}
{dest_extra}syncs:
{syncs}"#
    )
}

/// Sync `id` of `contacts` into Contact by External_Id__c.
fn sync(id: i64, behavior: &str, relation: &str) -> String {
    format!(
        "  - id: {id}\n    name: s{id}\n    source: {{connection: warehouse, {relation}}}\n    destination: {{connection: crm, object: Contact}}\n    \
         primary_identifier: {{from: email, to: External_Id__c}}\n    mappings:\n      - {{from: email, to: Email}}\n      - {{from: name, to: LastName}}\n      \
         - {{from: score, to: Score__c}}\n      - {{from: vip, to: VIP__c}}\n    behavior: {behavior}\n"
    )
}

async fn open(dir: &Path, text: &str) -> Engine {
    common::open(&write_project(dir, text)).await
}

fn by_ext(emu: &SalesforceEmulator, ext: &str) -> Map<String, Value> {
    emu.record_by("Contact", "External_Id__c", ext).unwrap_or_else(|| panic!("no Contact with External_Id__c {ext}"))
}

fn assert_no_secret(text: &str) {
    for s in [SECRET, REFRESH, CLIENT, "wrong-refresh-token-4711", "wrong-secret-0815", "00DEMU"] {
        assert!(!text.contains(s), "a secret leaked into: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_by_external_id_adds_nothing_then_changes() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 250).await;
    let emu = emulator(Default::default()).await;
    let engine = open(dir.path(), &project(&emu.url, "", &sync(1, "upsert", "table: contacts"))).await;

    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!((r.counts.records_updated, r.counts.records_failed), (Some(250), Some(0)));
    let s = emu.stats();
    assert_eq!((s.stored, s.records_created, s.collection_requests), (250, 250, 2), "200 + 50 records");
    assert_eq!(s.tokens_issued, 1, "one token for the run");
    let c = by_ext(&emu, "user7@example.com");
    assert_eq!((c["LastName"].as_str(), c["Email"].as_str()), (Some("User 7"), Some("user7@example.com")));
    assert_eq!(c["Score__c"], json!(7));
    assert_eq!(c["VIP__c"], json!(true));
    assert!(c["Id"].as_str().unwrap().starts_with("003"));

    // Nothing changed: no data calls.
    let before = emu.stats().requests;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.counts.records_processed, Some(0));
    assert_eq!(emu.stats().requests, before);

    // Changes update the same records; a new row is created.
    wh.exec("UPDATE contacts SET score = 555, name = 'Renamed' WHERE id <= 5").await;
    wh.exec("INSERT INTO contacts VALUES (251, 'user251@example.com', 'User 251', 1, 0)").await;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!((r.counts.planned.adds, r.counts.planned.changes, r.counts.records_updated), (1, 5, Some(6)));
    let s = emu.stats();
    assert_eq!((s.stored, s.records_created, s.records_updated), (251, 251, 5));
    assert_eq!(by_ext(&emu, "user2@example.com")["LastName"], "Renamed");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_update_the_existing_records_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 40).await;
    let emu = emulator(Default::default()).await;
    let engine = open(dir.path(), &project(&emu.url, "", &sync(1, "upsert", "table: contacts"))).await;
    assert_eq!(run(&engine, 1, false).await.counts.records_updated, Some(40));
    let id3 = by_ext(&emu, "user3@example.com")["Id"].clone();
    wh.exec("UPDATE contacts SET score = -1 WHERE id = 3").await;
    let r = run(&engine, 1, false).await;
    assert_eq!((r.counts.planned.changes, r.counts.records_updated), (1, Some(1)));
    let s = emu.stats();
    assert_eq!((s.stored, s.records_created, s.records_updated), (40, 40, 1));
    let c = by_ext(&emu, "user3@example.com");
    assert_eq!((c["Id"].clone(), c["Score__c"].clone()), (id3, json!(-1)));
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_only_looks_records_up_and_never_creates() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 50).await;
    let emu = emulator(Default::default()).await;
    let mut ids = Vec::new();
    for i in 1..=30 {
        let mut f = Map::new();
        f.insert("External_Id__c".into(), json!(format!("USER{i}@example.com"))); // case differs: still matches
        f.insert("LastName".into(), json!("Old"));
        ids.push(emu.insert("Contact", f));
    }
    // A table keyed by Salesforce record Id, for an update by Id.
    wh.exec("CREATE TABLE sf (sf_id TEXT, title TEXT)").await;
    sqlx::query("INSERT INTO sf VALUES (?, 'CEO'), (?, 'CTO'), ('003000000000zzzAAA', 'Nobody')")
        .bind(&ids[0])
        .bind(&ids[1])
        .execute(&wh.pool)
        .await
        .unwrap();
    let by_id = "  - id: 2\n    name: by_id\n    source: {connection: warehouse, table: sf}\n    destination: {connection: crm, object: Contact}\n    \
                 primary_identifier: {from: sf_id, to: Id}\n    mappings:\n      - {from: title, to: Title}\n    behavior: update\n";
    let engine = open(dir.path(), &project(&emu.url, "", &(sync(1, "update", "table: contacts") + by_id))).await;

    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!((r.counts.records_updated, r.counts.records_failed), (Some(30), Some(20)));
    let s = emu.stats();
    assert_eq!((s.stored, s.records_created, s.records_updated), (30, 0, 30));
    assert!(s.queries >= 1);
    let failed = engine.run_records(r.id, 100).await.unwrap();
    assert_eq!(failed.len(), 20);
    assert!(failed.iter().all(|f| f.reason.contains("an update does not create records")), "{:?}", failed[0]);
    let c = by_ext(&emu, "user5@example.com");
    assert_eq!((c["LastName"].as_str(), c["Score__c"].clone()), (Some("User 5"), json!(5)));

    let r = run(&engine, 2, false).await;
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!((r.counts.records_updated, r.counts.records_failed), (Some(2), Some(1)));
    let failed = engine.run_records(r.id, 10).await.unwrap();
    assert!(failed[0].reason.starts_with("INVALID_CROSS_REFERENCE_KEY: "), "{}", failed[0].reason);
    assert_eq!(emu.records("Contact")[0]["Title"], "CEO");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_only_creates_once() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 40).await;
    let emu = emulator(Default::default()).await;
    let engine = open(dir.path(), &project(&emu.url, "", &sync(1, "create", "table: contacts"))).await;
    let r = run(&engine, 1, false).await;
    assert_eq!((r.status, r.counts.records_updated), (RunStatus::Completed, Some(40)), "{:?}", r.error_message);
    wh.exec("UPDATE contacts SET score = 999 WHERE id <= 10").await;
    wh.exec("INSERT INTO contacts VALUES (41, 'user41@example.com', 'User 41', 1, 0)").await;
    let r = run(&engine, 1, false).await;
    assert_eq!((r.counts.planned.adds, r.counts.planned.changes, r.counts.records_updated), (1, 0, Some(1)));
    let s = emu.stats();
    assert_eq!((s.stored, s.records_created, s.records_updated), (41, 41, 0));
    assert_eq!(by_ext(&emu, "user1@example.com")["Score__c"], json!(1), "a change is never sent by a create sync");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_deletes_what_left_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 120).await;
    let emu = emulator(Default::default()).await;
    let engine = open(dir.path(), &project(&emu.url, "", &sync(1, "mirror", "table: contacts"))).await;
    assert_eq!(run(&engine, 1, false).await.counts.records_updated, Some(120));
    wh.exec("DELETE FROM contacts WHERE id > 100").await;
    wh.exec("UPDATE contacts SET score = 77 WHERE id = 1").await;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!((r.counts.planned.changes, r.counts.planned.removes, r.counts.succeeded.removes), (1, 20, 20));
    let s = emu.stats();
    assert_eq!((s.stored, s.records_deleted), (100, 20));
    assert!(emu.record_by("Contact", "External_Id__c", "user101@example.com").is_none());
    assert_eq!(by_ext(&emu, "user1@example.com")["Score__c"], json!(77));
    let r = run(&engine, 1, false).await;
    assert_eq!((r.counts.records_processed, r.counts.planned.removes), (Some(0), 0), "deletes were acknowledged");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_errors_are_rejected_with_salesforce_codes() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 100).await;
    wh.exec("UPDATE contacts SET email = 'not-an-email-' || id WHERE id IN (5, 6)").await;
    wh.exec("UPDATE contacts SET name = NULL WHERE id = 7").await;
    let emu = emulator(SalesforceEmulatorConfig {
        rules: vec![ValidationRule::parse("Contact.Score__c=^(13|42)$").unwrap()],
        ..Default::default()
    })
    .await;
    let engine = open(dir.path(), &project(&emu.url, "", &sync(1, "upsert", "table: contacts"))).await;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!((r.counts.records_updated, r.counts.records_failed), (Some(95), Some(5)));
    let s = emu.stats();
    assert_eq!((s.stored, s.records_failed), (95, 5), "counts match the emulator's");
    let mut reasons: Vec<(String, String)> =
        engine.run_records(r.id, 10).await.unwrap().into_iter().map(|o| (o.identifier.unwrap(), o.reason)).collect();
    reasons.sort();
    let find = |id: &str| reasons.iter().find(|(i, _)| i == id).map(|(_, r)| r.clone()).unwrap();
    assert!(find("user13@example.com").starts_with("FIELD_CUSTOM_VALIDATION_EXCEPTION: Score__c does not pass"), "{reasons:?}");
    assert!(find("user42@example.com").starts_with("FIELD_CUSTOM_VALIDATION_EXCEPTION: "));
    assert!(find("not-an-email-5").starts_with("INVALID_EMAIL_ADDRESS: Email: invalid email address: not-an-email-5"));
    assert!(find("user7@example.com").starts_with("REQUIRED_FIELD_MISSING: Required fields are missing: [LastName]"));
    // Rejected rows are sent again by the next run, once fixed.
    emu.set_rules(Vec::new());
    wh.exec("UPDATE contacts SET name = 'Seven' WHERE id = 7").await;
    let r = run(&engine, 1, false).await;
    assert_eq!((r.counts.records_processed, r.counts.records_updated, r.counts.records_failed), (Some(5), Some(3), Some(2)));
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_errors_server_errors_and_concurrency_limits_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 400).await;
    let emu = emulator(SalesforceEmulatorConfig {
        // The first batch meets all three whole-request failures: within its 4 attempts.
        faults: Faults { lock_rate: 0.05, fail_next: 2, concurrent_limit_next: 1, ..Default::default() },
        ..Default::default()
    })
    .await;
    let engine = open(dir.path(), &project(&emu.url, "", &sync(1, "upsert", "table: contacts"))).await;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!((r.counts.records_updated, r.counts.records_failed), (Some(400), Some(0)));
    let s = emu.stats();
    assert_eq!(s.stored, 400);
    assert!(s.lock_errors >= 20, "{s:?}");
    assert_eq!((s.server_errors, s.limit_exceeded), (2, 1));
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_refreshed_and_the_run_completes() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 1000).await;
    let emu = emulator(SalesforceEmulatorConfig { faults: Faults { expire_tokens_after: Some(2), ..Default::default() }, ..Default::default() }).await;
    let engine = open(dir.path(), &project(&emu.url, "    max_concurrency: 1\n", &sync(1, "upsert", "table: contacts"))).await;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!(r.counts.records_updated, Some(1000));
    let s = emu.stats();
    assert_eq!(s.stored, 1000);
    assert!(s.tokens_issued >= 3 && s.sessions_refused >= 2, "{s:?}");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_fail_the_run_without_showing_them() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 10).await;
    let emu = emulator(Default::default()).await;
    let text = project(&emu.url, "", &sync(1, "upsert", "table: contacts"))
        .replace(&format!(":-{REFRESH}}}"), ":-wrong-refresh-token-4711}");
    let engine = open(dir.path(), &text).await;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Failed);
    let msg = r.error_message.clone().unwrap();
    assert!(msg.contains("refused the refresh token") && msg.contains("invalid_grant") && msg.contains("refresh_token"), "{msg}");
    assert_no_secret(&msg);
    assert_no_secret(&r.error_detail.clone().unwrap_or_default());
    assert_eq!((emu.stats().stored, emu.stats().token_refusals), (0, 1), "one token request, no retries");
    let s1 = engine.project().sync(&SyncRef::Id(1)).unwrap().clone();
    let e = engine.destination(&s1).await.unwrap().check().await.unwrap_err();
    assert!(e.contains("refused the refresh token"), "{e}");
    assert_no_secret(&e);

    // A wrong client secret, in the client-credentials flow.
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 10).await;
    let text = project(&emu.url, "", &sync(1, "upsert", "table: contacts"))
        .replace(&format!(":-{SECRET}}}"), ":-wrong-secret-0815}")
        .replace(&format!("    refresh_token: ${{SF_TEST_REFRESH_TOKEN:-{REFRESH}}}\n"), "");
    let engine = open(dir.path(), &text).await;
    let r = run(&engine, 1, false).await;
    let msg = r.error_message.clone().unwrap();
    assert!(msg.contains("refused the connected app's credentials") && msg.contains("client_secret"), "{msg}");
    assert_no_secret(&msg);
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_daily_allocation_fails_the_run_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 1000).await;
    let emu = emulator(SalesforceEmulatorConfig { daily_limit: 3, ..Default::default() }).await;
    let engine = open(dir.path(), &project(&emu.url, "    max_concurrency: 1\n", &sync(1, "upsert", "table: contacts"))).await;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Failed);
    let msg = r.error_message.unwrap();
    assert!(msg.contains("daily API request limit") && msg.contains("api-usage=3/3") && msg.contains("rolling 24 h"), "{msg}");
    assert_eq!((r.counts.records_updated, emu.stats().stored), (Some(600), 600), "what was sent is acknowledged");
    assert_eq!(emu.stats().limit_exceeded, 0, "no request was made past the limit");
    // The next run finds the allocation spent: Salesforce answers 403 REQUEST_LIMIT_EXCEEDED.
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Failed);
    let msg = r.error_message.unwrap();
    assert!(msg.contains("REQUEST_LIMIT_EXCEEDED") && msg.contains("daily API request limit exceeded; resets on a rolling 24 h window"), "{msg}");
    assert_eq!(emu.stats().limit_exceeded, 1);
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_api_end_to_end_with_failures_matched_by_external_id() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 1000).await;
    let emu = emulator(SalesforceEmulatorConfig {
        rules: vec![ValidationRule::parse("Contact.Score__c=^(13|42)$").unwrap()],
        bulk_polls: 2,
        ..Default::default()
    })
    .await;
    let engine = open(dir.path(), &project(&emu.url, "    api: bulk\n    batch_size: 300\n", &sync(1, "mirror", "table: contacts"))).await;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!((r.counts.records_updated, r.counts.records_failed), (Some(980), Some(20)));
    let s = emu.stats();
    assert_eq!((s.stored, s.bulk_jobs, s.collection_requests), (980, 4, 0));
    let failed = engine.run_records(r.id, 100).await.unwrap();
    assert_eq!(failed.len(), 20);
    assert!(failed.iter().all(|f| f.reason.starts_with("FIELD_CUSTOM_VALIDATION_EXCEPTION: Score__c does not pass")), "{:?}", failed[0]);
    let f13 = failed.iter().find(|f| f.identifier.as_deref() == Some("user13@example.com"));
    assert!(f13.is_some(), "failures are matched to their records by external id");

    // Changes (a null clears a field, a null required field fails), deletes, one fix.
    emu.set_rules(Vec::new());
    wh.exec("UPDATE contacts SET score = NULL WHERE id = 1").await;
    wh.exec("UPDATE contacts SET name = 'Quoted, \"name\"' WHERE id = 2").await;
    wh.exec("UPDATE contacts SET name = NULL WHERE id = 3").await;
    wh.exec("DELETE FROM contacts WHERE id > 990").await;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    // The 20 refused adds are retried as adds (the rule is gone; a refused add leaves no state
    // behind), then 3 changes and 10 removes.
    assert_eq!(
        (r.counts.planned.adds, r.counts.succeeded.adds, r.counts.planned.changes, r.counts.planned.removes, r.counts.succeeded.removes),
        (20, 20, 3, 10, 10)
    );
    assert_eq!(r.counts.records_failed, Some(1));
    let failed = engine.run_records(r.id, 10).await.unwrap();
    assert_eq!(failed[0].identifier.as_deref(), Some("user3@example.com"));
    assert!(failed[0].reason.starts_with("REQUIRED_FIELD_MISSING: "), "{}", failed[0].reason);
    assert_eq!(by_ext(&emu, "user1@example.com")["Score__c"], Value::Null, "#N/A cleared the field");
    assert_eq!(by_ext(&emu, "user2@example.com")["LastName"], "Quoted, \"name\"");
    assert_eq!(by_ext(&emu, "user3@example.com")["LastName"], "User 3", "the failed change left the record alone");
    assert_eq!(emu.stats().stored, 990);
    assert!(emu.record_by("Contact", "External_Id__c", "user995@example.com").is_none());
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_verifies_the_object_and_the_mapped_fields() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 1).await;
    let emu = emulator(Default::default()).await;
    let extra = "  - id: 2\n    name: bad_field\n    source: {connection: warehouse, table: contacts}\n    destination: {connection: crm, object: Contact}\n    \
                 primary_identifier: {from: email, to: External_Id__c}\n    mappings:\n      - {from: name, to: Nickname__c}\n\
                 \x20 - id: 3\n    name: not_external\n    source: {connection: warehouse, table: contacts}\n    destination: {connection: crm, object: Contact}\n    \
                 primary_identifier: {from: email, to: LastName}\n\
                 \x20 - id: 4\n    name: no_object\n    source: {connection: warehouse, table: contacts}\n    destination: {connection: crm, object: Opportunity__c}\n    \
                 primary_identifier: {from: email, to: External_Id__c}\n";
    let engine = open(dir.path(), &project(&emu.url, "", &(sync(1, "upsert", "table: contacts") + extra))).await;
    let check = |id: i64| {
        let engine = &engine;
        async move {
            let sync = engine.project().sync(&SyncRef::Id(id)).unwrap().clone();
            engine.destination(&sync).await.unwrap().check().await
        }
    };
    check(1).await.unwrap();
    let e = check(2).await.unwrap_err();
    assert!(e.contains("field `Nickname__c` (mapped from name) does not exist on Contact"), "{e}");
    let e = check(3).await.unwrap_err();
    assert!(e.contains("`LastName` of Contact is neither an External ID nor an idLookup field"), "{e}");
    let e = check(4).await.unwrap_err();
    assert!(e.contains("no sObject `Opportunity__c`"), "{e}");
    assert_eq!(emu.stats().stored, 0, "checks change nothing");
    emu.stop().await;
}

fn load(text: &str) -> Result<Project, sluicegate::Error> {
    Project::from_str_with_env(text, Path::new("sluicegate.yml"), &|_: &str| None)
}

fn load_err(text: &str) -> String {
    let e = load(text).expect_err("the project should not load");
    assert_eq!(e.kind(), ErrorKind::Config);
    e.to_string()
}

#[test]
fn config_errors_name_file_line_and_key() {
    let base = project("http://127.0.0.1:9", "", &sync(1, "upsert", "table: contacts"));
    load(&base).unwrap();
    let line_of = |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;

    // Collections requests take 200 records; bulk takes more.
    let text = project("http://127.0.0.1:9", "    batch_size: 500\n", &sync(1, "upsert", "table: contacts"));
    let e = load_err(&text);
    let line = line_of(&text, "batch_size: 500");
    assert!(e.contains(&format!("sluicegate.yml:{line}:17: destinations.crm.batch_size: 500 is more than the 200 records")), "{e}");
    assert!(e.contains("`api: bulk`"), "{e}");
    load(&project("http://127.0.0.1:9", "    api: bulk\n    batch_size: 50000\n", &sync(1, "upsert", "table: contacts"))).unwrap();
    let e = load_err(&project("http://127.0.0.1:9", "    api: bulk\n    batch_size: 500000\n", &sync(1, "upsert", "table: contacts")));
    assert!(e.contains("destinations.crm.batch_size: 500000 is out of range"), "{e}");

    let text = base.replace("object: Contact", "object: My Object");
    assert!(load_err(&text).contains("syncs[0].destination.object: `My Object` is not an sObject API name"));
    let text = base.replace("destination: {connection: crm, object: Contact}", "destination: {connection: crm}");
    let e = load_err(&text);
    assert!(e.contains(&format!("sluicegate.yml:{}:", line_of(&text, "destination: {connection: crm}"))) && e.contains("a salesforce sync needs `object`"), "{e}");
    let e = load_err(&base.replace("to: External_Id__c", "to: Id"));
    assert!(e.contains("syncs[0].primary_identifier.to: a upsert sync identifies records by an External ID field"), "{e}");
    let e = load_err(&base.replace("to: External_Id__c", "to: Id").replace("behavior: upsert", "behavior: create"));
    assert!(e.contains("cannot set `Id`: Salesforce assigns record Ids"), "{e}");
    load(&base.replace("to: External_Id__c", "to: Id").replace("behavior: upsert", "behavior: update")).unwrap();
    let e = load_err(&base.replace("to: Score__c", "to: Account__r.Ext__c"));
    assert!(e.contains("syncs[0].mappings[2].to: `Account__r.Ext__c` is not a Salesforce field API name"), "{e}");

    let text = project("http://127.0.0.1:9", "    api: rest\n    api_version: v30.0\n", &sync(1, "upsert", "table: contacts"));
    let e = load_err(&text);
    assert!(e.contains(&format!("sluicegate.yml:{}:10: destinations.crm.api: unknown API `rest`", line_of(&text, "api: rest"))), "{e}");
    assert!(e.contains("destinations.crm.api_version: v30.0 is too old"), "{e}");
    let e = load_err(&project("http://127.0.0.1:9", "    api_version: latest\n", &sync(1, "upsert", "table: contacts")));
    assert!(e.contains("`latest` is not an API version"), "{e}");

    // Credentials only as environment references, never echoed.
    let text = base.replace(&format!("${{SF_TEST_CLIENT_SECRET:-{SECRET}}}"), "literal-secret-value");
    let e = load_err(&text);
    assert!(e.contains(&format!("sluicegate.yml:{}:20: destinations.crm.client_secret: write credentials as an environment variable reference", line_of(&text, "literal-secret-value"))), "{e}");
    assert!(!e.contains("literal-secret-value"), "{e}");
    let e = load_err(&base.replace("login_url: http://127.0.0.1:9", "login_url: login.salesforce.com"));
    assert!(e.contains("destinations.crm.login_url: not an http(s) URL"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulator_answers_like_salesforce() {
    let emu = emulator(Default::default()).await;
    let http = sluicegate::engine::http_client().unwrap();
    let tok: Value = serde_json::from_slice(
        &http
            .post(format!("{}/services/oauth2/token", emu.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("grant_type=refresh_token&client_id={CLIENT}&client_secret={SECRET}&refresh_token={REFRESH}"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(tok["instance_url"], json!(emu.url));
    let auth = format!("Bearer {}", tok["access_token"].as_str().unwrap());
    let records: Vec<Value> = (0..201).map(|i| json!({"attributes": {"type": "Contact"}, "External_Id__c": format!("e{i}"), "LastName": "X"})).collect();
    let url = format!("{}/services/data/v62.0/composite/sobjects/Contact/External_Id__c", emu.url);
    let resp = http.patch(&url).header("authorization", &auth).body(json!({"allOrNone": false, "records": records}).to_string()).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["sforce-limit-info"], "api-usage=1/100000");
    let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body[0]["errorCode"], "EXCEEDED_ID_LIMIT");
    // Duplicates of an external id within one request fail each; the others succeed.
    let body = json!({"allOrNone": false, "records": [
        {"attributes": {"type": "Contact"}, "External_Id__c": "a", "LastName": "A"},
        {"attributes": {"type": "Contact"}, "External_Id__c": "d", "LastName": "D1"},
        {"attributes": {"type": "Contact"}, "External_Id__c": "D", "LastName": "D2"}]});
    let resp = http.patch(&url).header("authorization", &auth).body(body.to_string()).send().await.unwrap();
    let got: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!((got[0]["success"].clone(), got[0]["created"].clone()), (json!(true), json!(true)));
    assert_eq!(got[1]["errors"][0]["statusCode"], "DUPLICATE_EXTERNAL_ID");
    assert_eq!(got[2]["errors"][0]["statusCode"], "DUPLICATE_EXTERNAL_ID");
    // Unknown fields refuse the request.
    let body = json!({"allOrNone": false, "records": [{"attributes": {"type": "Contact"}, "External_Id__c": "z", "Nope__c": 1}]});
    let resp = http.patch(&url).header("authorization", &auth).body(body.to_string()).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    // A bad token.
    let resp = http.get(format!("{}/services/data/v62.0/limits", emu.url)).header("authorization", "Bearer nope").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body, json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]));
    // Read-back over HTTP.
    let back: Value = serde_json::from_slice(&http.get(format!("{}/_emulator/records/Contact", emu.url)).send().await.unwrap().bytes().await.unwrap()).unwrap();
    assert_eq!(back["count"], 1);
    emu.stop().await;
}

/// The reasons a run recorded for its rejected records.
async fn reasons(engine: &Engine, run: i64) -> Vec<String> {
    engine.run_records(run, 100).await.unwrap().into_iter().map(|o| o.reason).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_ninety_percent_of_the_daily_allocation_the_run_is_paced() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 5).await;
    // 100,000 requests left of 2,000,000 (95 % used): spread over 24 h, one per 0.864 s.
    let emu = emulator(SalesforceEmulatorConfig { daily_limit: 2_000_000, ..Default::default() }).await;
    emu.set_api_usage(1_900_000);
    let engine = open(dir.path(), &project(&emu.url, "    batch_size: 1\n    max_concurrency: 1\n", &sync(1, "upsert", "table: contacts"))).await;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!(r.counts.records_updated, Some(5));
    let at = emu.arrivals();
    assert_eq!(at.len(), 5, "one request per record");
    // The first answer brings the hint; the second request was already let through, each
    // later one waits its interval: a lower bound only, which a slow machine cannot break.
    let span = at[4] - at[1];
    let interval = 86_400.0 / 99_999.0;
    assert!(span.as_secs_f64() >= 3.0 * interval * 0.98, "requests 2 to 5 took {span:?}, not paced at {interval:.3} s");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_times_out_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 3).await;
    // Every 2nd data call hangs 3 s; the destination gives up after 1 s and retries.
    let emu = emulator(SalesforceEmulatorConfig { faults: Faults { stall_every: 2, stall_seconds: 3.0, ..Default::default() }, ..Default::default() }).await;
    let engine = open(dir.path(), &project(&emu.url, "    batch_size: 1\n    max_concurrency: 1\n    timeout: 1s\n", &sync(1, "upsert", "table: contacts"))).await;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!((r.counts.records_updated, r.counts.records_failed), (Some(3), Some(0)));
    let s = emu.stats();
    assert_eq!(s.stored, 3);
    assert!(s.stalls >= 2, "{s:?}");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_storm_is_ridden_out_and_a_spent_allocation_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 20).await;
    // Six "ConcurrentPerOrgLongTxn" refusals in a row: more than the 4 attempts a batch has,
    // so the run completes only if throttling is waited out rather than counted as failures.
    let emu = emulator(SalesforceEmulatorConfig { faults: Faults { concurrent_limit_next: 6, ..Default::default() }, ..Default::default() }).await;
    let engine = open(dir.path(), &project(&emu.url, "    max_concurrency: 1\n", &sync(1, "upsert", "table: contacts"))).await;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!(r.counts.records_updated, Some(20));
    assert_eq!((emu.stats().limit_exceeded, emu.stats().stored), (6, 20));

    // "TotalRequests Limit exceeded.": the daily allocation; retrying cannot help.
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 20).await;
    emu.set_faults(Faults { request_limit_next: 3, ..Default::default() });
    let engine = open(dir.path(), &project(&emu.url, "    max_concurrency: 1\n", &sync(1, "upsert", "table: contacts"))).await;
    let before = emu.stats().requests;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Failed);
    let msg = r.error_message.unwrap();
    assert!(msg.contains("REQUEST_LIMIT_EXCEEDED") && msg.contains("daily API request limit exceeded"), "{msg}");
    assert_eq!(emu.stats().requests - before, 1, "failed at the first refusal, no retries");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_credentials_flow_completes_a_run() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 30).await;
    // The emulator refuses any refresh token: only the client-credentials grant can work.
    let emu = emulator(SalesforceEmulatorConfig { refresh_token: "no-refresh-token-is-valid".into(), ..Default::default() }).await;
    let text = project(&emu.url, "", &sync(1, "upsert", "table: contacts")).replace(&format!("    refresh_token: ${{SF_TEST_REFRESH_TOKEN:-{REFRESH}}}\n"), "");
    assert!(!text.contains("refresh_token"));
    let engine = open(dir.path(), &text).await;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!(r.counts.records_updated, Some(30));
    let s = emu.stats();
    assert_eq!((s.stored, s.tokens_issued, s.token_refusals), (30, 1, 0));
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_invalid_session_right_after_a_refresh_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 10).await;
    // Every token is refused at its first use: the refreshed one too.
    let emu = emulator(SalesforceEmulatorConfig { faults: Faults { expire_tokens_after: Some(0), ..Default::default() }, ..Default::default() }).await;
    let engine = open(dir.path(), &project(&emu.url, "    max_concurrency: 1\n", &sync(1, "upsert", "table: contacts"))).await;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Failed);
    let msg = r.error_message.clone().unwrap();
    assert!(msg.contains("refused a freshly issued access token") && msg.contains("INVALID_SESSION_ID") && msg.contains("API Enabled"), "{msg}");
    assert_no_secret(&msg);
    assert_no_secret(&r.error_detail.unwrap_or_default());
    let s = emu.stats();
    assert_eq!((s.tokens_issued, s.sessions_refused, s.stored), (2, 2, 0), "one refresh, then the run stops");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_bulk_job_fails_the_run_with_salesforces_reason() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 10).await;
    let emu = emulator(Default::default()).await;
    // A mapped field Contact does not have: the job's CSV header names it, the job fails.
    let s = sync(1, "upsert", "table: contacts").replace("to: VIP__c", "to: Nickname__c");
    let engine = open(dir.path(), &project(&emu.url, "    api: bulk\n", &s)).await;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Failed);
    let msg = r.error_message.unwrap();
    assert!(msg.contains("Bulk API job") && msg.contains("failed: InvalidBatch : Field name not found : Nickname__c") && msg.contains("mappings"), "{msg}");
    assert_no_secret(&msg);
    assert_eq!((emu.stats().bulk_jobs, emu.stats().stored), (1, 0), "no retry of a failed job");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_job_past_the_timeout_is_aborted() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 10).await;
    let emu = emulator(SalesforceEmulatorConfig { bulk_polls: 1_000_000, ..Default::default() }).await;
    let text = project(&emu.url, "    api: bulk\n    timeout: 1s\n", &sync(1, "upsert", "table: contacts")).replace("max_attempts: 4", "max_attempts: 2");
    let engine = open(dir.path(), &text).await;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Failed);
    let msg = r.error_message.unwrap();
    assert!(msg.contains("did not finish within 1s") && msg.contains("it was aborted"), "{msg}");
    let s = emu.stats();
    // (Rows a job applied before its abort stay applied, in Salesforce as in the emulator.)
    assert_eq!((s.bulk_jobs, s.bulk_jobs_aborted), (2, 2), "each attempt's job was aborted");
    emu.stop().await;
}

/// Everything logged in this test binary (all levels of sluicegate's own logs).
static LOGS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct LogSink;

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("sluicegate=trace"))
        .with_ansi(false)
        .with_writer(|| LogSink)
        .try_init();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_token_echoed_by_salesforce_is_never_shown() {
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 3).await;
    // Every answer is a 400 quoting the bearer token: the batch is split down to single
    // records, each rejected with Salesforce's text.
    let emu = emulator(SalesforceEmulatorConfig { faults: Faults { echo_token_next: 1000, ..Default::default() }, ..Default::default() }).await;
    let engine = open(dir.path(), &project(&emu.url, "", &sync(1, "upsert", "table: contacts"))).await;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!(r.counts.records_failed, Some(3));
    let got = reasons(&engine, r.id).await;
    assert_eq!(got.len(), 3);
    for reason in &got {
        assert!(reason.contains("INVALID_INPUT") && reason.contains("Bearer ***"), "{reason}");
        assert_no_secret(reason);
    }

    // The same echo in a 503 the delivery layer gives up on: the run's error.
    emu.set_faults(Faults { echo_token_next: 1000, echo_token_status: 503, ..Default::default() });
    let r = run(&engine, 1, true).await;
    assert_eq!(r.status, RunStatus::Failed);
    let msg = r.error_message.clone().unwrap();
    assert!(msg.contains("Bearer ***") && msg.contains("gave up after 4 attempts"), "{msg}");
    assert_no_secret(&msg);
    assert_no_secret(&r.error_detail.unwrap_or_default());
    // The retries were logged with Salesforce's words, and no token.
    let logs = String::from_utf8_lossy(&LOGS.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    assert!(logs.contains("Bearer ***") && logs.contains("retrying"), "the retries were not logged: {logs}");
    assert_no_secret(&logs);
    emu.stop().await;
}

#[test]
fn emulator_help_lists_the_fault_flags() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluicegate")).args(["emulate", "salesforce", "--help"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--fail-rate", "--fail-status", "--latency-ms", "--stall-every", "--stall-seconds", "--storm-next", "--request-limit-next", "--echo-token-next"] {
        assert!(help.contains(flag), "`emulate salesforce --help` lacks {flag}:\n{help}");
    }
}
