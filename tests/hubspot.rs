//! The engine against the HubSpot emulator over HTTP: behaviors, partial failures, rate
//! limits, faults, credentials and project-file checks of the `hubspot` destination type.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{open, run, write_project, Warehouse};
use sluicegate::config::{Project, SyncRef};
use sluicegate::emulator::hubspot::{Faults, HubspotEmulator, HubspotEmulatorConfig, RateConfig};
use sluicegate::store::RunStatus;

const TOKEN: &str = "pat-na1-test-token";

/// An emulator that asks for [`TOKEN`], knows the custom properties `score` and `is_vip`, and
/// allows 1000 requests a second (tests that are about rate limits set their own).
async fn emulator(cfg: impl FnOnce(&mut HubspotEmulatorConfig)) -> HubspotEmulator {
    let mut c = HubspotEmulatorConfig {
        token: Some(TOKEN.into()),
        rate: RateConfig { limit: 1000, interval_ms: 1000, daily_limit: 0 },
        properties: vec!["score".into(), "is_vip".into()],
        ..Default::default()
    };
    cfg(&mut c);
    HubspotEmulator::start(SocketAddr::from(([127, 0, 0, 1], 0)), c).await.unwrap()
}

/// A project with one `crm` destination (`dest_extra`: more of its keys) and the syncs given.
fn project(url: &str, dest_extra: &str, syncs: &str) -> String {
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
{dest_extra}syncs:
{syncs}"#
    )
}

fn sync(id: i64, behavior: &str, relation: &str) -> String {
    format!(
        "  - id: {id}\n    name: s{id}\n    source: {{connection: warehouse, {relation}}}\n    destination: {{connection: crm, object: contacts}}\n    \
         primary_identifier: {{from: email, to: email}}\n    mappings:\n      - {{from: name, to: firstname}}\n      - {{from: score, to: score}}\n      \
         - {{from: vip, to: is_vip}}\n    behavior: {behavior}\n"
    )
}

async fn setup(dir: &Path, rows: i64, text: &str) -> (Warehouse, sluicegate::engine::Engine) {
    let wh = Warehouse::create(dir, rows).await;
    let engine = open(&write_project(dir, text)).await;
    (wh, engine)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_adds_then_sends_nothing_then_only_changes() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(|_| {}).await;
    let (wh, engine) = setup(dir.path(), 250, &project(&emu.url, "", &sync(1, "upsert", "table: contacts"))).await;

    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!((r.counts.records_updated, r.counts.records_failed), (Some(250), Some(0)));
    let s = emu.stats();
    assert_eq!((s.requests, s.records_created, s.contacts), (3, 250, 250), "250 rows in batches of 100 (the default)");
    let c = emu.contact("user7@example.com").unwrap();
    assert_eq!(c["firstname"], "User 7");
    assert_eq!(c["score"], "7", "numbers arrive as HubSpot's strings");
    assert_eq!(c["is_vip"], "true");
    assert_eq!(emu.contact("user8@example.com").unwrap()["is_vip"], "false");

    let r = run(&engine, 1, false).await;
    assert_eq!(r.counts.records_processed, Some(0));
    assert_eq!(emu.stats().requests, 3, "no request when nothing changed");

    wh.exec("UPDATE contacts SET score = score + 1000 WHERE id % 50 = 0").await; // 5 changes
    wh.exec("UPDATE contacts SET name = NULL WHERE id = 3").await; // a cleared property
    wh.exec("INSERT INTO contacts VALUES (251, 'new1@example.com', 'New', 1, 0), (252, 'new2@example.com', 'New', 2, 0)").await;
    emu.reset(false);
    let r = run(&engine, 1, false).await;
    assert_eq!((r.counts.planned.adds, r.counts.planned.changes), (2, 6));
    assert_eq!((r.counts.succeeded.adds, r.counts.succeeded.changes), (2, 6));
    let s = emu.stats();
    assert_eq!((s.requests, s.records_created, s.records_updated, s.records_unchanged, s.contacts), (1, 2, 6, 0, 252));
    assert_eq!(emu.contact("user50@example.com").unwrap()["score"], "1050");
    assert!(!emu.contact("user3@example.com").unwrap().contains_key("firstname"), "null clears the property");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_only_rejects_unknown_contacts_with_hubspots_reason() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(|_| {}).await;
    let syncs = sync(1, "upsert", "query: SELECT * FROM contacts WHERE id <= 60") + &sync(2, "update", "table: contacts");
    let (wh, engine) = setup(dir.path(), 100, &project(&emu.url, "", &syncs)).await;
    assert_eq!(run(&engine, 1, false).await.counts.records_updated, Some(60));
    wh.exec("UPDATE contacts SET score = -1").await;
    emu.reset(false);
    let r = run(&engine, 2, false).await;
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!((r.counts.records_processed, r.counts.records_updated, r.counts.records_failed), (Some(100), Some(60), Some(40)));
    let s = emu.stats();
    assert_eq!((s.contacts, s.records_created, s.records_updated, s.record_errors), (60, 0, 60, 40), "nothing created");
    let rejected = engine.run_records(r.id, 100).await.unwrap();
    assert_eq!(rejected.len(), 40);
    let r77 = rejected.iter().find(|o| o.identifier.as_deref() == Some("user77@example.com")).unwrap();
    assert!(r77.reason.contains("HubSpot has no contact with email `user77@example.com`"), "{}", r77.reason);
    assert!(r77.reason.contains("OBJECT_NOT_FOUND: Could not get some CONTACT objects"), "{}", r77.reason);
    assert!(rejected.iter().all(|o| o.operation == "update"));
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_only_rejects_existing_contacts() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(|_| {}).await;
    let syncs = sync(1, "upsert", "query: SELECT * FROM contacts WHERE id % 10 = 0") + &sync(2, "create", "table: contacts");
    let (_wh, engine) = setup(dir.path(), 50, &project(&emu.url, "", &syncs)).await;
    assert_eq!(run(&engine, 1, false).await.counts.records_updated, Some(5));
    let existing = emu.contact("user20@example.com").unwrap()["email"].clone();
    assert_eq!(existing, "user20@example.com");
    let r = run(&engine, 2, false).await;
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!((r.counts.records_updated, r.counts.records_failed), (Some(45), Some(5)));
    assert_eq!(emu.stats().contacts, 50);
    let rejected = engine.run_records(r.id, 10).await.unwrap();
    assert_eq!(rejected.len(), 5);
    assert!(rejected.iter().all(|o| o.reason.contains("CONFLICT") && o.reason.contains("Contact already exists. Existing ID: 10")), "{:?}", rejected[0]);
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_archives_what_left_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(|_| {}).await;
    let (wh, engine) = setup(dir.path(), 120, &project(&emu.url, "", &sync(1, "mirror", "table: contacts"))).await;
    assert_eq!(run(&engine, 1, false).await.counts.records_updated, Some(120));
    // Someone archives user5 in HubSpot; then it leaves the source too: already gone.
    let id5 = emu.contacts().into_iter().find(|c| c.properties["email"] == "user5@example.com").unwrap().id;
    let resp = reqwest::Client::new()
        .post(format!("{}/crm/v3/objects/contacts/batch/archive", emu.url))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(serde_json::json!({"inputs": [{"id": id5}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    wh.exec("DELETE FROM contacts WHERE id > 110 OR id = 5").await;
    emu.reset(false);
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!((r.counts.planned.removes, r.counts.succeeded.removes), (11, 11));
    let s = emu.stats();
    assert_eq!((s.records_archived, s.contacts), (10, 109));
    assert_eq!(s.requests, 2, "one batch/read to find the record IDs, one batch/archive");
    assert!(emu.contact("user111@example.com").is_none() && emu.contact("user110@example.com").is_some());
    assert_eq!(run(&engine, 1, false).await.counts.records_processed, Some(0), "the removals were acknowledged");
    emu.stop().await;
}

async fn partial_failures(whole_batch: bool) {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(|c| c.faults.whole_batch_validation = whole_batch).await;
    let (wh, engine) = setup(dir.path(), 100, &project(&emu.url, "", &sync(1, "upsert", "table: contacts"))).await;
    wh.exec("UPDATE contacts SET email = 'bad.lcom' WHERE id = 7").await;
    wh.exec("UPDATE contacts SET email = 'no spaces@example.com' WHERE id = 80").await;
    // The same contact as user9 to HubSpot (emails match ignoring case), in the same batch.
    wh.exec("UPDATE contacts SET email = 'USER9@example.com' WHERE id = 10").await;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!((r.counts.records_processed, r.counts.records_updated, r.counts.records_failed), (Some(100), Some(97), Some(3)));
    let s = emu.stats();
    assert_eq!(s.contacts, 97, "every other record was delivered");
    let rejected = engine.run_records(r.id, 10).await.unwrap();
    let reason = |id: &str| rejected.iter().find(|o| o.identifier.as_deref() == Some(id)).map(|o| o.reason.clone()).unwrap();
    let bad = reason("bad.lcom");
    assert!(bad.contains("INVALID_EMAIL") && bad.contains("Email address bad.lcom is invalid"), "{bad}");
    assert!(reason("no spaces@example.com").contains("Email address no spaces@example.com is invalid"));
    let dup = reason("user9@example.com");
    assert!(dup.contains("same contact to HubSpot as `USER9@example.com`") && dup.contains("emails match ignoring case"), "{dup}");
    if whole_batch {
        assert_eq!(s.batches_refused, 1, "{s:?}");
        assert_eq!(s.multi_status, 0);
    } else {
        assert_eq!((s.multi_status, s.record_errors, s.batches_refused), (1, 2, 0), "HubSpot named each bad record in a 207");
    }
    // Fixed in the source: only those go again.
    wh.exec("UPDATE contacts SET email = 'user7@example.com' WHERE id = 7").await;
    emu.reset(false);
    let r = run(&engine, 1, false).await;
    // user7 now valid, the invalid one again, and user9 (no longer beside USER9 in a batch).
    assert_eq!((r.counts.records_processed, r.counts.records_updated), (Some(3), Some(2)));
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_failures_reject_only_the_bad_records_from_207s() {
    partial_failures(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_failures_reject_only_the_bad_records_from_whole_batch_400s() {
    partial_failures(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_property_rejects_the_records_with_hubspots_reason() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(|c| c.properties = vec!["score".into()]).await; // no is_vip
    let text = project(&emu.url, "", &sync(1, "update", "table: contacts"));
    let (_wh, engine) = setup(dir.path(), 30, &text).await;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!(r.counts.records_failed, Some(30));
    let rejected = engine.run_records(r.id, 1).await.unwrap();
    assert!(rejected[0].reason.contains("PROPERTY_DOESNT_EXIST: Property \"is_vip\" does not exist"), "{}", rejected[0].reason);
    // validate --check finds it before any run.
    let dest = engine.destination(&engine.project().syncs[0]).await.unwrap();
    let e = dest.check().await.unwrap_err();
    assert!(e.contains("property `is_vip` does not exist on HubSpot contacts"), "{e}");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_slows_the_run_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(|c| c.rate.interval_ms = 200).await;
    let text = project(&emu.url, "    batch_size: 20\n    retry: {max_attempts: 12, initial_backoff: 10ms, max_backoff: 100ms}\n", &sync(1, "upsert", "table: contacts"))
        .replace("    retry: {max_attempts: 6, initial_backoff: 10ms, max_backoff: 100ms}\n", "");
    let (_wh, engine) = setup(dir.path(), 400, &text).await;
    emu.set_faults(Faults { storm_next: 10, ..emu.faults() });
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!(r.counts.records_updated, Some(400));
    let s = emu.stats();
    assert_eq!((s.rate_limited, s.contacts, s.records_created), (10, 400, 400));
    assert_eq!(s.requests, 30, "20 batches and 10 answered 429");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pacing_follows_hubspots_rate_headers() {
    let dir = tempfile::tempdir().unwrap();
    // HubSpot allows 10 requests per second; the project asks for 1000.
    let emu = emulator(|c| c.rate = RateConfig { limit: 10, interval_ms: 1000, daily_limit: 0 }).await;
    let (_wh, engine) = setup(dir.path(), 300, &project(&emu.url, "    batch_size: 10\n", &sync(1, "upsert", "table: contacts"))).await;
    let t0 = Instant::now();
    let r = run(&engine, 1, false).await;
    let took = t0.elapsed();
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!(r.counts.records_updated, Some(300));
    let s = emu.stats();
    assert!(s.rate_limited <= 2, "paced by the headers, not by 429s: {s:?}");
    assert_eq!(s.requests - s.rate_limited, 30);
    // 30 requests at 9 per second take 29/9 s; a run hammering HubSpot would finish in < 1 s.
    assert!(took >= Duration::from_millis(2900), "{took:?}");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_stalls_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(|c| c.faults = Faults { error_next: 3, error_rate: 0.2, error_status: 502, stall_next: 1, ..Faults::default() }).await;
    let (_wh, engine) = setup(dir.path(), 500, &project(&emu.url, "    batch_size: 25\n    timeout: 300ms\n", &sync(1, "upsert", "table: contacts"))).await;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!(r.counts.records_updated, Some(500));
    let s = emu.stats();
    assert_eq!((s.contacts, s.records_created, s.stalled), (500, 500, 1));
    assert!(s.server_errors >= 6, "{s:?}");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_daily_limit_fails_the_run_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(|c| c.rate.daily_limit = 2).await;
    let (_wh, engine) = setup(dir.path(), 500, &project(&emu.url, "", &sync(1, "upsert", "table: contacts"))).await;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Failed);
    let m = r.error_message.unwrap();
    assert!(m.contains("HubSpot's daily API limit for this account is spent") && m.contains("You have reached your daily limit."), "{m}");
    assert!(m.contains("resets at midnight in the account's time zone"), "{m}");
    let s = emu.stats();
    assert_eq!(s.daily_limited, s.rate_limited, "not retried as if it were the 10-second limit");
    assert!(s.daily_limited <= 4, "{s:?}");
    assert_eq!(r.counts.records_updated, Some(s.contacts as i64), "what was delivered is acknowledged");
    assert_eq!(s.contacts, 200);
    // The next day: the rest goes.
    emu.reset(false);
    emu.set_rate(RateConfig { limit: 1000, interval_ms: 1000, daily_limit: 0 });
    let r = run(&engine, 1, false).await;
    assert_eq!((r.status, r.counts.records_updated), (RunStatus::Completed, Some(300)));
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_or_a_missing_scope_fails_the_run_without_showing_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(|_| {}).await;
    let text = project(&emu.url, "", &sync(1, "upsert", "table: contacts")).replace(TOKEN, "pat-na1-WRONG-secret");
    let (_wh, engine) = setup(dir.path(), 20, &text).await;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Failed);
    let m = r.error_message.unwrap();
    assert!(m.contains("HubSpot refused the access token") && m.contains("check that ${SG_TEST_HUBSPOT_TOKEN} holds a current private app token"), "{m}");
    assert!(!m.contains("WRONG-secret"), "{m}");
    assert_eq!(emu.stats().unauthorized, 1, "not retried");
    let e = engine.destination(&engine.project().syncs[0]).await.unwrap().check().await.unwrap_err();
    assert!(e.contains("HTTP 401 INVALID_AUTHENTICATION") && !e.contains("WRONG-secret"), "{e}");
    emu.stop().await;

    // A token with the read scope only.
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(|c| c.scopes = Some(vec!["crm.objects.contacts.read".into()])).await;
    let (_wh, engine) = setup(dir.path(), 20, &project(&emu.url, "", &sync(1, "upsert", "table: contacts"))).await;
    engine.destination(&engine.project().syncs[0]).await.unwrap().check().await.unwrap();
    let r = run(&engine, 1, false).await;
    let m = r.error_message.unwrap();
    assert!(m.contains("lacks a scope this call needs: crm.objects.contacts.write"), "{m}");
    emu.stop().await;
}

fn load(text: &str) -> Result<Project, sluicegate::Error> {
    Project::from_str_with_env(text, Path::new("sluicegate.yml"), &|_| None)
}

#[test]
fn project_errors_name_file_line_and_what_to_do() {
    let ok = project("http://127.0.0.1:9", "", &sync(1, "upsert", "table: contacts"));
    let p = load(&ok).unwrap();
    assert_eq!(p.destinations["crm"].delivery.batch_size, None);

    let e = load(&ok.replace("base_url: http://127.0.0.1:9\n", "base_url: http://127.0.0.1:9\n    batch_size: 101\n")).unwrap_err().to_string();
    assert!(e.contains("sluicegate.yml:10:17: destinations.crm.batch_size: 101 is out of range; use a whole number from 1 to 100"), "{e}");

    let e = load(&ok.replace(&format!("${{SG_TEST_HUBSPOT_TOKEN:-{TOKEN}}}"), "pat-na1-literal")).unwrap_err().to_string();
    assert!(e.contains("sluicegate.yml:8:19: destinations.crm.access_token: write credentials as an environment variable reference"), "{e}");
    assert!(!e.contains("pat-na1-literal"), "{e}");

    let e = load(&ok.replace("object: contacts", "object: contact")).unwrap_err().to_string();
    assert!(e.contains("syncs[0].destination.object: HubSpot destinations write `contacts`; object `contact` is not supported (did you mean `contacts`?)"), "{e}");
    assert!(e.contains("sluicegate.yml:16:"), "{e}");

    let e = load(&ok.replace("behavior: upsert", "behavior: append\n    unique_key: email")).unwrap_err().to_string();
    assert!(e.contains("sluicegate.yml:22:15: syncs[0].behavior: HubSpot contacts are records, not events: behavior `append` is not supported"), "{e}");

    let e = load(&ok.replace("to: email}", "to: hs_object_id}")).unwrap_err().to_string();
    assert!(e.contains("`hs_object_id` (the record ID) identifies existing records only, so it works with behavior `update`"), "{e}");
    load(&ok.replace("to: email}", "to: hs_object_id}").replace("behavior: upsert", "behavior: update")).unwrap();

    let e = load(&ok.replace("to: firstname", "to: First Name")).unwrap_err().to_string();
    assert!(e.contains("syncs[0].mappings[0].to: `First Name` is not a HubSpot property's internal name"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_by_record_id_and_upsert_by_a_unique_property() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(|c| c.unique_properties = vec!["customer_id".into()]).await;
    let wh = Warehouse::create(dir.path(), 40).await;
    wh.exec("ALTER TABLE contacts ADD COLUMN customer_id TEXT").await;
    wh.exec("UPDATE contacts SET customer_id = 'C-' || id").await;
    let by_unique = "  - id: 1\n    name: by_customer\n    source: {connection: warehouse, table: contacts}\n    destination: {connection: crm}\n    \
                     primary_identifier: {from: customer_id, to: customer_id}\n    mappings:\n      - {from: email, to: email}\n      - {from: name, to: firstname}\n";
    let engine = open(&write_project(dir.path(), &project(&emu.url, "", by_unique))).await;
    let r = run(&engine, 1, false).await;
    assert_eq!((r.status, r.counts.records_updated), (RunStatus::Completed, Some(40)), "{:?}", r.error_message);
    assert_eq!(emu.contact("user3@example.com").unwrap()["customer_id"], "C-3");
    engine.destination(&engine.project().syncs[0]).await.unwrap().check().await.unwrap();

    // Record IDs, as a model that read them back from HubSpot would hold them.
    wh.exec("CREATE TABLE hs (hs_id TEXT, name TEXT)").await;
    for c in emu.contacts().iter().filter(|c| c.properties["email"].starts_with("user1")) {
        sqlx::query("INSERT INTO hs VALUES (?, 'Renamed')").bind(&c.id).execute(&wh.pool).await.unwrap();
    }
    sqlx::query("INSERT INTO hs VALUES ('999999', 'Nobody')").execute(&wh.pool).await.unwrap();
    let by_id = "  - id: 2\n    name: by_id\n    source: {connection: warehouse, table: hs}\n    destination: {connection: crm}\n    \
                 primary_identifier: {from: hs_id, to: hs_object_id}\n    mappings:\n      - {from: name, to: firstname}\n    behavior: update\n";
    let engine = open(&write_project(dir.path(), &project(&emu.url, "", &format!("{by_unique}{by_id}")))).await;
    let r = run(&engine, 2, false).await;
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!((r.counts.records_updated, r.counts.records_failed), (Some(11), Some(1)), "user1, user10..user19; one unknown ID");
    assert_eq!(emu.contact("user15@example.com").unwrap()["firstname"], "Renamed");
    assert_eq!(emu.contact("user2@example.com").unwrap()["firstname"], "User 2");
    let _ = SyncRef::Id(2);
    emu.stop().await;
}

/// `sluicegate validate --check` with the token in the environment: exit code and output.
fn validate_check(project: std::path::PathBuf, token: &'static str) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluicegate"))
        .args(["--project", project.to_str().unwrap(), "validate", "--check"])
        .env("SG_TEST_HUBSPOT_TOKEN", token)
        .output()
        .unwrap();
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// `sluicegate validate --check` asks the destination with read-only requests: ok with the
/// right token; a clear failure, naming the sync and never the token, with a wrong one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_check_verifies_the_credentials_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(|_| {}).await;
    let (_wh, _engine) = setup(dir.path(), 5, &project(&emu.url, "", &sync(1, "upsert", "table: contacts"))).await;
    let path = dir.path().join("sluicegate.yml");
    let p = path.clone();
    let (code, text) = tokio::task::spawn_blocking(move || validate_check(p, TOKEN)).await.unwrap();
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("ok    sync 1 (s1): hubspot destination") && text.contains("reachable and authorized"), "{text}");
    let (code, text) = tokio::task::spawn_blocking(move || validate_check(path, "pat-na1-wrong-secret-value")).await.unwrap();
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("FAIL  sync 1 (s1):") && text.contains("401"), "{text}");
    assert!(!text.contains("wrong-secret-value"), "the token leaked: {text}");
    emu.stop().await;
}

#[test]
fn emulator_help_lists_the_fault_flags() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluicegate")).args(["emulate", "hubspot", "--help"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--error-rate", "--error-status", "--latency-ms", "--stall-every", "--stall-seconds", "--storm-next", "--storm-retry-after"] {
        assert!(help.contains(flag), "`emulate hubspot --help` lacks {flag}:\n{help}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_nth_stalled_request_times_out_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    // Every 2nd request hangs 2 s, then 504; the destination gives up after 500 ms and retries.
    let emu = emulator(|c| c.faults = Faults { stall_every: 2, stall_seconds: 2.0, ..Faults::default() }).await;
    let (_wh, engine) = setup(dir.path(), 60, &project(&emu.url, "    batch_size: 20\n    max_concurrency: 1\n    timeout: 500ms\n", &sync(1, "upsert", "table: contacts"))).await;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error_message);
    assert_eq!((r.counts.records_updated, r.counts.records_failed), (Some(60), Some(0)));
    let s = emu.stats();
    assert_eq!(s.contacts, 60);
    assert!(s.stalled >= 2, "{s:?}");
    emu.stop().await;
}
