//! The Iterable destination against the Iterable emulator, through the real engine over HTTP:
//! users upserted and mirrored, events appended once, Iterable's partial failures mapped to the
//! records they name, the 4 MB body cap, rate limits, outages, a bad key, project errors.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::{run, write_project, Warehouse};
use serde_json::{json, Value};
use sluicegate::config::{Project, SyncRef};
use sluicegate::emulator::iterable::{Faults, IterableEmulator, IterableEmulatorConfig, RateLimits};
use sluicegate::engine::{Engine, EngineOptions};
use sluicegate::store::{RunRecord, RunStatus};

const KEY: &str = "emulator-api-key";

async fn emulator(limits: RateLimits) -> IterableEmulator {
    let cfg = IterableEmulatorConfig { rate_limits: limits, disallowed_event_names: vec!["forbidden_event".into()], ..Default::default() };
    IterableEmulator::start(SocketAddr::from(([127, 0, 0, 1], 0)), cfg).await.unwrap()
}

/// No rate limits at the emulator (tests that are not about them run fast).
fn unlimited() -> RateLimits {
    RateLimits { bulk_update: 0, track_bulk: 0, delete: 0 }
}

/// A project with one Iterable destination `it`; `dest_extra` adds keys to it (indented 4).
fn project(url: &str, dest_extra: &str, syncs: &str) -> String {
    format!(
        r#"sources:
  warehouse:
    url: sqlite://warehouse.db
destinations:
  it:
    type: iterable
    api_key: ${{ITERABLE_TEST_KEY:-{KEY}}}
    base_url: {url}
    retry: {{max_attempts: 6, initial_backoff: 10ms, max_backoff: 50ms}}
{dest_extra}syncs:
{syncs}"#
    )
}

/// A sync of `contacts` users keyed by email.
fn users_sync(id: i64, behavior: &str, relation: &str) -> String {
    format!(
        "  - id: {id}\n    name: users{id}\n    source: {{connection: warehouse, {relation}}}\n    destination: {{connection: it, object: users}}\n    \
         primary_identifier: {{from: email, to: email}}\n    mappings:\n      - {{from: name, to: name}}\n      - {{from: score, to: score}}\n      - {{from: vip, to: vip, type: boolean}}\n    \
         behavior: {behavior}\n"
    )
}

async fn open(dir: &Path, text: &str) -> Engine {
    let p = write_project(dir, text);
    let state = common::state_for(dir).await;
    Engine::open(&p, EngineOptions { state, ..Default::default() }).await.unwrap()
}

fn completed(r: &RunRecord) {
    assert_eq!(r.status, RunStatus::Completed, "run failed: {:?}", r.error_message);
}

fn fast(extra: &str) -> String {
    format!("    rate_limit: {{requests: 1000, per: 1s}}\n{extra}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_sends_adds_nothing_then_changes() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 250).await;
    let emu = emulator(unlimited()).await;
    let engine = open(dir.path(), &project(&emu.url, &fast(""), &users_sync(1, "upsert", "table: contacts"))).await;
    let r = run(&engine, 1, false).await;
    completed(&r);
    assert_eq!((r.counts.records_updated, r.counts.records_failed), (Some(250), Some(0)));
    let s = emu.stats();
    assert_eq!((s.users, s.bulk_update_requests), (250, 1), "one request of up to 1,000 users by default");
    let u = emu.user_by_email("user7@example.com").unwrap();
    assert_eq!(u["email"], "user7@example.com");
    assert_eq!(u["dataFields"], json!({"name": "User 7", "score": 7, "vip": true}), "the identifier is not a data field");

    let r = run(&engine, 1, false).await;
    completed(&r);
    assert_eq!(r.counts.records_processed, Some(0));
    assert_eq!(emu.stats().bulk_update_requests, 1, "nothing changed, nothing sent");

    wh.exec("UPDATE contacts SET score = 1000 + id WHERE id <= 10").await;
    let r = run(&engine, 1, false).await;
    completed(&r);
    assert_eq!((r.counts.planned.changes, r.counts.records_updated), (10, Some(10)));
    assert_eq!(emu.user_by_email("user3@example.com").unwrap()["dataFields"]["score"], 1003);
    assert_eq!(emu.user_by_email("user11@example.com").unwrap()["dataFields"]["score"], 11);
    assert_eq!(emu.stats().users, 250);
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_pacing_stays_within_iterables_limit() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 200).await;
    // The emulator enforces Iterable's 5 requests/s on bulkUpdate; no project rate_limit.
    let emu = emulator(RateLimits::default()).await;
    let engine = open(dir.path(), &project(&emu.url, "    batch_size: 20\n", &users_sync(1, "upsert", "table: contacts"))).await;
    let started = std::time::Instant::now();
    let r = run(&engine, 1, false).await;
    completed(&r);
    let s = emu.stats();
    assert_eq!((s.users, s.bulk_update_requests, s.rate_limited), (200, 10, 0), "paced under the limit: {s:?}");
    assert!(started.elapsed().as_secs_f64() >= 2.0, "10 requests at under 5/s take over 2 s");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iterables_failed_users_are_rejected_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 40).await;
    wh.exec("UPDATE contacts SET email = 'not-an-email-' || id WHERE id IN (3, 9)").await;
    // Iterable names failures by email only; case and spaces must not hide them.
    wh.exec("UPDATE contacts SET email = 'Spaced Out@Example.com' WHERE id = 12").await;
    let emu = emulator(unlimited()).await;
    emu.forget_email("USER20@example.com");
    let engine = open(dir.path(), &project(&emu.url, &fast(""), &users_sync(1, "upsert", "table: contacts"))).await;
    let r = run(&engine, 1, false).await;
    completed(&r);
    assert_eq!((r.counts.records_updated, r.counts.records_failed), (Some(36), Some(4)));
    assert_eq!(emu.stats().bulk_update_requests, 1, "per-user failures need no second request");
    let mut rejected: Vec<(String, String)> =
        engine.run_records(r.id, 10).await.unwrap().into_iter().map(|o| (o.identifier.unwrap_or_default(), o.reason)).collect();
    rejected.sort();
    let ids: Vec<&str> = rejected.iter().map(|(i, _)| i.as_str()).collect();
    assert_eq!(ids, ["Spaced Out@Example.com", "not-an-email-3", "not-an-email-9", "user20@example.com"]);
    assert!(rejected[1].1.contains("malformed") && rejected[1].1.contains("failedUpdates.invalidEmails"), "{rejected:?}");
    assert!(rejected[0].1.contains("malformed"), "{rejected:?}");
    assert!(rejected[3].1.contains("forgotten") && rejected[3].1.contains("failedUpdates.forgottenEmails"), "{rejected:?}");
    assert_eq!(emu.stats().users, 36);
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_mismatch_refusing_the_batch_is_isolated_to_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 30).await;
    let emu = emulator(unlimited()).await;
    let engine = open(dir.path(), &project(&emu.url, &fast(""), &users_sync(1, "upsert", "table: contacts"))).await;
    completed(&run(&engine, 1, false).await);
    // `score` is a number in Iterable now; one row turns it into text (SQLite allows it).
    wh.exec("UPDATE contacts SET score = score + 100 WHERE id <= 10").await;
    wh.exec("UPDATE contacts SET score = 'high' WHERE id = 5").await;
    let r = run(&engine, 1, false).await;
    completed(&r);
    assert_eq!((r.counts.records_updated, r.counts.records_failed), (Some(9), Some(1)));
    let rejected = engine.run_records(r.id, 10).await.unwrap();
    assert_eq!(rejected[0].identifier.as_deref(), Some("user5@example.com"));
    assert!(rejected[0].reason.contains("HTTP 400 RequestFieldsTypesMismatched"), "{}", rejected[0].reason);
    assert!(rejected[0].reason.contains("validationErrors"), "Iterable's params are kept: {}", rejected[0].reason);
    assert_eq!(emu.user_by_email("user6@example.com").unwrap()["dataFields"]["score"], 106);
    assert_eq!(emu.user_by_email("user5@example.com").unwrap()["dataFields"]["score"], 5);
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_cut_by_bytes_and_an_oversized_record_is_rejected_alone() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 30).await;
    // 30 users of ~300 KB each: 9 MB, more than two 4 MB requests.
    wh.exec("UPDATE contacts SET name = replace(hex(zeroblob(150000)), '0', 'n')").await;
    // One user alone is over 4 MB: no request can carry it.
    wh.exec("UPDATE contacts SET name = replace(hex(zeroblob(2100000)), '0', 'N') WHERE id = 17").await;
    let emu = emulator(unlimited()).await;
    let engine = open(dir.path(), &project(&emu.url, &fast(""), &users_sync(1, "upsert", "table: contacts"))).await;
    let r = run(&engine, 1, false).await;
    completed(&r);
    assert_eq!((r.counts.records_updated, r.counts.records_failed), (Some(29), Some(1)));
    let s = emu.stats();
    assert_eq!(s.too_large, 0, "no request went over the cap: {s:?}");
    assert!(s.bulk_update_requests >= 3, "{s:?}");
    assert!(s.max_body_seen <= 4_000_000 && s.max_body_seen > 3_000_000, "requests are filled up to the cap: {s:?}");
    let rejected = engine.run_records(r.id, 10).await.unwrap();
    assert_eq!(rejected[0].identifier.as_deref(), Some("user17@example.com"));
    assert!(rejected[0].reason.contains("bytes") && rejected[0].reason.contains("iterable destination `it`"), "{}", rejected[0].reason);
    assert_eq!(s.users, 29);
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_and_a_5xx_burst_are_ridden_out() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 200).await;
    let emu = emulator(unlimited()).await;
    emu.set_faults(Faults { rate_limit_next: 4, ..Default::default() });
    let engine = open(dir.path(), &project(&emu.url, &fast("    batch_size: 25\n"), &users_sync(1, "upsert", "table: contacts"))).await;
    let r = run(&engine, 1, false).await;
    completed(&r);
    assert_eq!(r.counts.records_updated, Some(200));
    let s = emu.stats();
    assert_eq!((s.rate_limited, s.users, s.bulk_update_requests), (4, 200, 8), "{s:?}");

    // Half the requests fail with 503: every batch still arrives.
    emu.reset();
    emu.set_faults(Faults { fail_rate: 0.5, fail_status: 503, ..Default::default() });
    let r = run(&engine, 1, true).await;
    completed(&r);
    assert_eq!(r.counts.records_updated, Some(200));
    let s = emu.stats();
    assert!(s.faults >= 4, "{s:?}");
    assert_eq!((s.users, s.users_succeeded), (200, 200), "{s:?}");

    // An outage that does not end fails the run, saying what Iterable answered.
    emu.set_faults(Faults { fail_rate: 1.0, fail_status: 502, ..Default::default() });
    let r = run(&engine, 1, true).await;
    assert_eq!(r.status, RunStatus::Failed);
    let msg = r.error_message.unwrap();
    assert!(msg.contains("HTTP 502 GenericError") && msg.contains("gave up after 6 attempts"), "{msg}");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_api_key_fails_clearly_without_showing_it() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 10).await;
    let emu = emulator(unlimited()).await;
    let text = project(&emu.url, "", &users_sync(1, "upsert", "table: contacts")).replace("ITERABLE_TEST_KEY:-emulator-api-key", "ITERABLE_TEST_WRONG_KEY:-s3cret-wrong-key");
    let engine = open(dir.path(), &text).await;
    let sync = engine.project().sync(&SyncRef::Id(1)).unwrap().clone();
    let dest = engine.destination(&sync).await.unwrap();
    let why = dest.check().await.unwrap_err();
    assert!(why.contains("HTTP 401 BadApiKey") && why.contains("check the `api_key` of destination `it`"), "{why}");
    assert!(!why.contains("s3cret"), "{why}");

    let r = run(&engine, 1, false).await;
    assert_eq!(r.status, RunStatus::Failed);
    let msg = r.error_message.clone().unwrap();
    assert!(msg.contains("Iterable refused the API key") && msg.contains("BadApiKey"), "{msg}");
    assert!(!format!("{r:?}").contains("s3cret"), "{r:?}");
    assert_eq!(emu.stats().unauthorized, 2, "the check, then one refused request: a refused key is not retried");

    // The right key passes the check.
    let engine = open(dir.path(), &project(&emu.url, "", &users_sync(1, "upsert", "table: contacts"))).await;
    let dest = engine.destination(&sync).await.unwrap();
    dest.check().await.unwrap();
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_by_user_id_deletes_users_that_left_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 60).await;
    let emu = emulator(RateLimits { bulk_update: 0, track_bulk: 0, delete: 100 }).await;
    let sync = "  - id: 1\n    name: members\n    source: {connection: warehouse, table: contacts}\n    destination: {connection: it}\n    \
                primary_identifier: {from: id, to: userId}\n    mappings:\n      - {from: email, to: contactEmail}\n      - {from: score, to: score}\n    behavior: mirror\n";
    let engine = open(dir.path(), &project(&emu.url, &fast(""), sync)).await;
    completed(&run(&engine, 1, false).await);
    assert_eq!(emu.stats().users, 60);
    assert!(emu.users().iter().all(|u| u.get("email").is_none() && u["userId"].is_string()));

    wh.exec("DELETE FROM contacts WHERE id > 30").await;
    // One of them is already gone from Iterable: deleting it again is not an error.
    let resp = reqwest::Client::new().delete(format!("{}/api/users/byUserId/45", emu.url)).header("Api-Key", KEY).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let r = run(&engine, 1, false).await;
    completed(&r);
    assert_eq!((r.counts.planned.removes, r.counts.succeeded.removes), (30, 30));
    let s = emu.stats();
    assert_eq!((s.users, s.delete_requests, s.rate_limited), (30, 31, 0), "{s:?}");
    let r = run(&engine, 1, false).await;
    assert_eq!((r.counts.records_processed, r.counts.planned.removes), (Some(0), 0));
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_appended_once_with_their_unique_key_as_id() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 1).await;
    wh.exec("CREATE TABLE events (event_id TEXT, email TEXT, kind TEXT, amount REAL, at TEXT)").await;
    wh.exec(
        "INSERT INTO events VALUES ('e1', 'a@x.io', 'signup', 0, '2026-01-31T12:00:00Z'), ('e2', 'a@x.io', 'purchase', 9.5, '2026-02-01 08:30:00'), \
         ('e3', 'b@x.io', 'purchase', 20, NULL), ('e4', 'bad-email', 'signup', 0, NULL), ('e5', 'c@x.io', NULL, 1, NULL), \
         ('e6', 'c@x.io', 'forbidden_event', 1, NULL), ('e7', 'c@x.io', 'late', 1, 'next tuesday')",
    )
    .await;
    let emu = emulator(unlimited()).await;
    let sync = |id: i64| {
        format!(
            "  - id: {id}\n    name: events{id}\n    source: {{connection: warehouse, table: events}}\n    destination: {{connection: it, object: events}}\n    \
             primary_identifier: {{from: email, to: email}}\n    mappings:\n      - {{from: kind, to: eventName}}\n      - {{from: amount, to: amount}}\n      - {{from: at, to: createdAt}}\n      - {{constant: warehouse, to: origin}}\n    \
             behavior: append\n    unique_key: event_id\n"
        )
    };
    let engine = open(dir.path(), &project(&emu.url, &fast(""), &(sync(1) + &sync(2)))).await;
    let r = run(&engine, 1, false).await;
    completed(&r);
    assert_eq!((r.counts.records_updated, r.counts.records_failed), (Some(3), Some(4)));
    let mut rejected: Vec<(String, String)> =
        engine.run_records(r.id, 10).await.unwrap().into_iter().map(|o| (o.identifier.unwrap_or_default(), o.reason)).collect();
    rejected.sort();
    assert!(rejected[0].0 == "e4" && rejected[0].1.contains("malformed"), "{rejected:?}");
    assert!(rejected[1].0 == "e5" && rejected[1].1.contains("no name"), "{rejected:?}");
    assert!(rejected[2].0 == "e6" && rejected[2].1.contains("does not allow events named \"forbidden_event\""), "{rejected:?}");
    assert!(rejected[3].0 == "e7" && rejected[3].1.contains("createdAt"), "{rejected:?}");
    let events = emu.events();
    assert_eq!(events.len(), 3);
    let e1 = events.iter().find(|e| e["id"] == "e1").unwrap();
    assert_eq!(e1["eventName"], "signup");
    assert_eq!(e1["email"], "a@x.io");
    assert_eq!(e1["createdAt"], 1769860800);
    assert_eq!(e1["dataFields"], json!({"amount": 0.0, "origin": "warehouse"}));
    let e2 = events.iter().find(|e| e["id"] == "e2").unwrap();
    assert_eq!(e2["createdAt"], 1769934600);
    assert_eq!(emu.stats().track_bulk_requests, 1);

    // Only the rejected events are tried again; a second sync sending the same events
    // replaces them at Iterable instead of counting them twice.
    let r = run(&engine, 1, false).await;
    completed(&r);
    assert_eq!((r.counts.records_processed, r.counts.records_failed), (Some(4), Some(4)));
    assert_eq!(emu.stats().events, 3);
    let r = run(&engine, 2, false).await;
    completed(&r);
    let s = emu.stats();
    assert_eq!((s.events, s.events_replaced), (3, 3), "Iterable keeps one event per id: {s:?}");
    emu.stop().await;
}

fn load(text: &str) -> Result<Project, sluicegate::Error> {
    let env = |name: &str| (name == "ITERABLE_API_KEY").then(|| "k".to_string());
    Project::from_str_with_env(text, Path::new("sluicegate.yml"), &env)
}

fn config_text(object: &str, behavior: &str, to: &str, mappings: &str) -> String {
    format!(
        "sources:\n  warehouse:\n    url: sqlite://warehouse.db\ndestinations:\n  it:\n    type: iterable\n    api_key: ${{ITERABLE_API_KEY}}\nsyncs:\n  - id: 1\n    name: s\n    \
         source: {{connection: warehouse, table: contacts}}\n    destination:\n      connection: it\n      object: {object}\n    primary_identifier:\n      from: email\n      to: {to}\n    \
         mappings:\n{mappings}    behavior: {behavior}\n    {}\n",
        if behavior == "append" { "unique_key: id" } else { "" }
    )
}

#[test]
fn project_errors_name_the_line_and_what_to_do() {
    let m = "      - {from: name, to: name}\n";
    load(&config_text("users", "upsert", "email", m)).unwrap();
    load(&config_text("users", "mirror", "userId", m)).unwrap();
    load(&config_text("events", "append", "email", "      - {constant: signup, to: eventName}\n")).unwrap();

    let e = load(&config_text("contacts", "upsert", "email", m)).unwrap_err().to_string();
    assert!(e.contains("sluicegate.yml:14:") && e.contains("Iterable has no object `contacts`") && e.contains("`users`"), "{e}");
    let e = load(&config_text("users", "update", "email", m)).unwrap_err().to_string();
    assert!(e.contains("sluicegate.yml:20:15:") && e.contains("syncs[0].behavior") && e.contains("no update-only mode"), "{e}");
    let e = load(&config_text("users", "create", "email", m)).unwrap_err().to_string();
    assert!(e.contains("no create-only mode") && e.contains("use `upsert`"), "{e}");
    let e = load(&config_text("users", "upsert", "external_id", m)).unwrap_err().to_string();
    assert!(e.contains("sluicegate.yml:16:") && e.contains("primary_identifier.to") && e.contains("`email` or `userId`"), "{e}");
    let e = load(&config_text("events", "append", "email", m)).unwrap_err().to_string();
    assert!(e.contains("add a mapping `to: eventName`"), "{e}");
    let e = load(&config_text("events", "upsert", "email", m)).unwrap_err().to_string();
    assert!(e.contains("only appended"), "{e}");
    let e = load(&config_text("users", "upsert", "email", "      - {from: uid, to: userId}\n")).unwrap_err().to_string();
    assert!(e.contains("sluicegate.yml:19:") && e.contains("not a data field"), "{e}");
    let e = load(&config_text("users", "upsert", "email", m).replace("api_key: ${ITERABLE_API_KEY}", "api_key: literal-key"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("environment variable reference") && !e.contains("literal-key"), "{e}");
    let e = load(&config_text("users", "upsert", "email", m).replace("    type: iterable\n", "    type: iterable\n    base_url: api.iterable.com\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("base_url") && e.contains("https://api.eu.iterable.com"), "{e}");
}

async fn body(r: reqwest::Response) -> Value {
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

#[tokio::test]
async fn emulator_answers_with_iterables_shapes() {
    let emu = emulator(unlimited()).await;
    let c = reqwest::Client::new();
    let post = |path: &str, body: Value| c.post(format!("{}{path}", emu.url)).header("Api-Key", KEY).header("content-type", "application/json").body(serde_json::to_vec(&body).unwrap()).send();
    let r = post("/api/users/bulkUpdate", json!({"users": [{"email": "a@x.io", "dataFields": {"n": 1}}, {"email": "nope"}]})).await.unwrap();
    assert_eq!(r.status(), 200);
    let v = body(r).await;
    assert_eq!((v["successCount"].as_u64(), v["failCount"].as_u64()), (Some(1), Some(1)));
    assert_eq!(v["failedUpdates"]["invalidEmails"], json!(["nope"]));
    assert_eq!(v["invalidEmails"], json!(["nope"]));
    let r = post("/api/users/bulkUpdate", json!({"users": [{"email": "a@x.io", "preferUserId": "yes"}]})).await.unwrap();
    assert_eq!(r.status(), 400);
    let v = body(r).await;
    assert_eq!(v["code"], "BadJsonBody");
    assert_eq!(v["params"]["obj.users[0].preferUserId"], "Boolean value expected");
    let r = c.get(format!("{}/api/channels", emu.url)).header("Api-Key", "wrong").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(body(r).await["code"], "BadApiKey");
    let big = "x".repeat(4 * 1024 * 1024);
    let r = post("/api/users/bulkUpdate", json!({"users": [{"email": "a@x.io", "dataFields": {"big": big}}]})).await.unwrap();
    assert_eq!(r.status(), 413);
    let r = c.delete(format!("{}/api/users/nobody@x.io", emu.url)).header("Api-Key", KEY).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = c.delete(format!("{}/api/users/A@X.io", emu.url)).header("Api-Key", KEY).send().await.unwrap();
    assert_eq!(r.status(), 200, "emails match ignoring case");
    let r = c.get(format!("{}/_emulator/stats", emu.url)).send().await.unwrap();
    assert_eq!(body(r).await["deletes"], 1);
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_user_ids_are_rejected_alone_with_iterables_reason() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 10).await;
    // Iterable refuses a userId with non-ASCII characters or a trailing space, per user, in an
    // HTTP 200 answer (`invalidUserIds`, `failedUpdates.invalidUserIds`).
    wh.exec("UPDATE contacts SET name = 'Usér 5' WHERE id = 5").await;
    wh.exec("UPDATE contacts SET name = 'User 6 ' WHERE id = 6").await;
    let emu = emulator(unlimited()).await;
    let sync = "  - id: 1\n    name: members\n    source: {connection: warehouse, table: contacts}\n    destination: {connection: it, object: users}\n    \
                primary_identifier: {from: name, to: userId}\n    mappings:\n      - {from: email, to: contactEmail}\n      - {from: score, to: score}\n    behavior: upsert\n";
    let engine = open(dir.path(), &project(&emu.url, &fast(""), sync)).await;
    let r = run(&engine, 1, false).await;
    completed(&r);
    assert_eq!((r.counts.records_updated, r.counts.records_failed), (Some(8), Some(2)));
    let s = emu.stats();
    assert_eq!((s.users, s.bulk_update_requests), (8, 1), "one request: the answer named the two at fault");
    assert!(emu.users().iter().all(|u| u["userId"] != "Usér 5" && u["userId"] != "User 6 "));
    let mut failed: Vec<(String, String)> =
        engine.run_records(r.id, 10).await.unwrap().into_iter().map(|o| (o.identifier.unwrap(), o.reason)).collect();
    failed.sort();
    assert_eq!(failed.iter().map(|(i, _)| i.as_str()).collect::<Vec<_>>(), ["User 6 ", "Usér 5"]);
    for (id, reason) in &failed {
        assert!(reason.contains("userId malformed") && reason.ends_with("(failedUpdates.invalidUserIds)"), "{id}: {reason}");
    }
    emu.stop().await;
}

#[test]
fn emulator_help_lists_the_fault_flags() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluicegate")).args(["emulate", "iterable", "--help"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--fail-rate", "--fail-status", "--latency-ms", "--stall-every", "--stall-seconds", "--storm-next"] {
        assert!(help.contains(flag), "`emulate iterable --help` lacks {flag}:\n{help}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_nth_stalled_request_times_out_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 60).await;
    let emu = emulator(unlimited()).await;
    // Every 2nd bulkUpdate hangs 2 s; the destination gives up after 500 ms and sends it again.
    emu.set_faults(Faults { stall_every: 2, stall_seconds: 2.0, ..Default::default() });
    let engine = open(dir.path(), &project(&emu.url, &fast("    batch_size: 20\n    max_concurrency: 1\n    timeout: 500ms\n"), &users_sync(1, "upsert", "table: contacts"))).await;
    let r = run(&engine, 1, false).await;
    completed(&r);
    assert_eq!((r.counts.records_updated, r.counts.records_failed), (Some(60), Some(0)));
    let s = emu.stats();
    assert_eq!(s.users, 60);
    assert!(s.stalled >= 2, "{s:?}");
    emu.stop().await;
}
