//! The Postgres table destination against a real server: every behavior, values cast to the
//! column types, a bad value isolated to its row with Postgres's message, and clear errors for a
//! missing table or column, a missing unique constraint, missing privileges and a dead server.
//!
//! The server comes from `scripts/services.sh` (`services_start pg DIR` exports
//! `SLUICEGATE_TEST_PG_URL`, a superuser URL); each test creates a database of its own. Without
//! the URL a test prints a skip note, unless `SLUICEGATE_REQUIRE_ALL=1`, where it fails.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use common::{run, write_project, Warehouse};
use sluicegate::config::SyncRef;
use sluicegate::engine::{Engine, EngineOptions};
use sluicegate::store::{RunRecord, RunStatus};
use sqlx::{PgPool, Row};

fn pg_url() -> Option<String> {
    match std::env::var("SLUICEGATE_TEST_PG_URL") {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            let how = "source scripts/services.sh and run `services_start pg DIR` (scripts/test.sh does)";
            if std::env::var("SLUICEGATE_REQUIRE_ALL").is_ok_and(|v| !v.is_empty() && v != "0") {
                panic!("SLUICEGATE_TEST_PG_URL is not set and SLUICEGATE_REQUIRE_ALL=1: {how}");
            }
            eprintln!("SKIPPED: SLUICEGATE_TEST_PG_URL is not set; {how}");
            None
        }
    }
}

/// A database of this test's own on the scratch server.
struct Db {
    name: String,
    url: String,
    pool: PgPool,
}

async fn fresh_db() -> Option<Db> {
    static N: AtomicU32 = AtomicU32::new(0);
    let admin_url = pg_url()?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let name = format!("sg_dest_{}_{}_{:x}", std::process::id(), N.fetch_add(1, Ordering::Relaxed), nanos % 0xfffff);
    let admin = PgPool::connect(&admin_url).await.expect("SLUICEGATE_TEST_PG_URL must be reachable");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.unwrap();
    admin.close().await;
    let (base, _) = admin_url.rsplit_once('/').expect("the URL ends with /DATABASE");
    let url = format!("{base}/{name}");
    let pool = PgPool::connect(&url).await.unwrap();
    Some(Db { name, url, pool })
}

impl Db {
    async fn exec(&self, sql: &str) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(&self.pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}"))).fetch_one(&self.pool).await.unwrap()
    }

    /// One value as text.
    async fn text(&self, sql: impl Into<String>) -> Option<String> {
        let sql = sql.into();
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone())).fetch_one(&self.pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

/// A project: the SQLite warehouse, destination `pg` at `url`, the given syncs. The URL is
/// given as the default of an unset variable, as a project file must reference credentials.
fn project(url: &str, syncs: &str) -> String {
    format!(
        "sources:\n  warehouse:\n    url: sqlite://warehouse.db\ndestinations:\n  pg:\n    type: postgres\n    url: ${{SG_TEST_UNSET_DEST_PG_URL:-{url}}}\n    \
         batch_size: 50\n    retry: {{max_attempts: 3, initial_backoff: 10ms, max_backoff: 50ms}}\nsyncs:\n{syncs}"
    )
}

fn sync(id: i64, behavior: &str, relation: &str, object: &str, key: (&str, &str), mappings: &[(&str, &str)], extra: &str) -> String {
    let mut s = format!(
        "  - id: {id}\n    name: s{id}\n    source: {{connection: warehouse, {relation}}}\n    destination: {{connection: pg, object: {object}}}\n    \
         primary_identifier: {{from: {}, to: {}}}\n    behavior: {behavior}\n{extra}    mappings:\n",
        key.0, key.1
    );
    for (from, to) in mappings {
        s.push_str(&format!("      - {{from: {from}, to: {to}}}\n"));
    }
    s
}

const CONTACT_FIELDS: &[(&str, &str)] = &[("name", "name"), ("score", "score"), ("vip", "vip")];

async fn open(dir: &Path, text: &str) -> Engine {
    let p = write_project(dir, text);
    let state = common::state_for(dir).await;
    Engine::open(&p, EngineOptions { state, ..Default::default() }).await.unwrap()
}

fn completed(r: &RunRecord) {
    assert_eq!(r.status, RunStatus::Completed, "run failed: {:?}", r.error_message);
}

fn failed(r: &RunRecord) -> String {
    assert_eq!(r.status, RunStatus::Failed, "the run should have failed: {r:?}");
    r.error_message.clone().unwrap()
}

async fn reasons(engine: &Engine, r: &RunRecord) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> =
        engine.run_records(r.id, 1000).await.unwrap().into_iter().map(|o| (o.identifier.unwrap_or_default(), o.reason)).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_update_and_create_behave_as_their_names_say() {
    let Some(db) = fresh_db().await else { return };
    db.exec("CREATE SCHEMA crm; CREATE TABLE crm.contacts (email text PRIMARY KEY, name text NOT NULL, score integer, vip boolean, source text DEFAULT 'db')").await;
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 120).await;
    let syncs = sync(1, "upsert", "query: 'SELECT * FROM contacts WHERE id <= 120'", "crm.contacts", ("email", "email"), CONTACT_FIELDS, "")
        + &sync(2, "update", "table: contacts", "crm.contacts", ("email", "email"), &[("score", "score")], "")
        + &sync(3, "create", "table: contacts", "crm.contacts", ("email", "email"), &[("name", "name")], "");
    let engine = open(dir.path(), &project(&db.url, &syncs)).await;

    let r = run(&engine, 1, false).await;
    completed(&r);
    assert_eq!(r.counts.records_updated, Some(120));
    assert_eq!(db.count("crm.contacts").await, 120);
    let row = sqlx::query("SELECT name, score, vip, source FROM crm.contacts WHERE email = 'user14@example.com'").fetch_one(&db.pool).await.unwrap();
    assert_eq!((row.get::<String, _>(0), row.get::<i32, _>(1), row.get::<bool, _>(2)), ("User 14".into(), 14, true));
    assert_eq!(row.get::<String, _>(3), "db", "an unmapped column keeps its value");

    // Changes update the rows in place.
    wh.exec("UPDATE contacts SET score = 500 + id, name = 'Renamed' WHERE id <= 5").await;
    db.exec("UPDATE crm.contacts SET source = 'crm' WHERE email = 'user1@example.com'").await;
    let r = run(&engine, 1, false).await;
    completed(&r);
    assert_eq!((r.counts.planned.changes, r.counts.records_updated), (5, Some(5)));
    assert_eq!(db.text("SELECT name || ' ' || score || ' ' || source FROM crm.contacts WHERE email = 'user1@example.com'").await.unwrap(), "Renamed 501 crm");
    assert_eq!(db.count("crm.contacts").await, 120);

    // Update-only: rows Postgres does not have are rejected, not created.
    wh.exec("INSERT INTO contacts SELECT id + 1000, 'new' || id || '@example.com', 'New ' || id, 1, 0 FROM contacts WHERE id <= 10").await;
    wh.exec("UPDATE contacts SET score = -1").await;
    let r = run(&engine, 2, false).await;
    completed(&r);
    assert_eq!((r.counts.records_updated, r.counts.records_failed), (Some(120), Some(10)));
    let rej = reasons(&engine, &r).await;
    assert!(rej.iter().all(|(id, why)| id.starts_with("new") && why.contains("no row with email") && why.contains("crm.contacts")), "{rej:?}");
    assert_eq!(db.count("crm.contacts").await, 120);
    assert_eq!(db.text("SELECT count(*)::text FROM crm.contacts WHERE score = -1").await.unwrap(), "120");

    // Create-only: existing rows are rejected and left alone, new ones created.
    let r = run(&engine, 3, false).await;
    completed(&r);
    assert_eq!((r.counts.records_updated, r.counts.records_failed), (Some(10), Some(120)));
    let rej = reasons(&engine, &r).await;
    assert!(rej.iter().all(|(_, why)| why.contains("already exists in table crm.contacts")), "{:?}", rej[0]);
    assert_eq!(db.count("crm.contacts").await, 130);
    assert_eq!(db.text("SELECT name FROM crm.contacts WHERE email = 'user1@example.com'").await.unwrap(), "Renamed");
    assert_eq!(db.text("SELECT name FROM crm.contacts WHERE email = 'new3@example.com'").await.unwrap(), "New 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_deletes_rows_that_left_the_source() {
    let Some(db) = fresh_db().await else { return };
    db.exec("CREATE TABLE members (id bigint PRIMARY KEY, email text, score numeric)").await;
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 100).await;
    let syncs = sync(1, "mirror", "table: contacts", "members", ("id", "id"), &[("email", "email"), ("score", "score")], "");
    let engine = open(dir.path(), &project(&db.url, &syncs)).await;
    completed(&run(&engine, 1, false).await);
    assert_eq!(db.count("members").await, 100);
    wh.exec("DELETE FROM contacts WHERE id > 70").await;
    db.exec("DELETE FROM members WHERE id = 80").await; // already gone: still acknowledged
    let r = run(&engine, 1, false).await;
    completed(&r);
    assert_eq!((r.counts.planned.removes, r.counts.succeeded.removes), (30, 30));
    assert_eq!(db.count("members").await, 70);
    assert_eq!(db.text("SELECT max(id)::text FROM members").await.unwrap(), "70");
    let r = run(&engine, 1, false).await;
    assert_eq!((r.counts.records_processed, r.counts.planned.removes), (Some(0), 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_inserts_events_once() {
    let Some(db) = fresh_db().await else { return };
    db.exec("CREATE TABLE events (event_id text UNIQUE, email text, amount numeric(10,2), seen_at timestamptz DEFAULT now()); CREATE TABLE log (email text, amount numeric)").await;
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 1).await;
    wh.exec("CREATE TABLE ev (event_id TEXT, email TEXT, amount REAL)").await;
    wh.exec("INSERT INTO ev VALUES ('e1', 'a@x.io', 1.5), ('e2', 'a@x.io', 2), ('e3', 'b@x.io', 3.25)").await;
    let fields = [("event_id", "event_id"), ("amount", "amount")];
    let syncs = sync(1, "append", "table: ev", "events", ("email", "email"), &fields, "    unique_key: event_id\n")
        + &sync(2, "append", "table: ev", "events", ("email", "email"), &fields, "    unique_key: event_id\n")
        + &sync(3, "append", "table: ev", "log", ("email", "email"), &[("amount", "amount")], "    unique_key: event_id\n");
    let engine = open(dir.path(), &project(&db.url, &syncs)).await;
    completed(&run(&engine, 1, false).await);
    assert_eq!(db.count("events").await, 3);
    assert_eq!(db.text("SELECT amount::text FROM events WHERE event_id = 'e3'").await.unwrap(), "3.25");
    wh.exec("INSERT INTO ev VALUES ('e4', 'c@x.io', 4)").await;
    let r = run(&engine, 1, false).await;
    assert_eq!(r.counts.records_updated, Some(1));
    // Another sync sending the same events: the unique event_id column keeps one of each.
    let r = run(&engine, 2, false).await;
    completed(&r);
    assert_eq!((r.counts.records_updated, r.counts.records_failed), (Some(4), Some(0)));
    assert_eq!(db.count("events").await, 4);
    // Without a unique column, rows are plainly inserted.
    completed(&run(&engine, 3, false).await);
    assert_eq!(db.count("log").await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_value_rejects_only_its_row_with_postgres_message() {
    let Some(db) = fresh_db().await else { return };
    db.exec("CREATE TABLE contacts (email text PRIMARY KEY, name text NOT NULL, score integer CHECK (score < 1000), vip boolean)").await;
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 200).await;
    wh.exec("UPDATE contacts SET score = 'lots' WHERE id = 37").await; // not an integer
    wh.exec("UPDATE contacts SET name = NULL WHERE id = 150").await; // NOT NULL
    wh.exec("UPDATE contacts SET score = 5000 WHERE id = 151").await; // CHECK
    let syncs = sync(1, "upsert", "table: contacts", "contacts", ("email", "email"), CONTACT_FIELDS, "");
    let engine = open(dir.path(), &project(&db.url, &syncs)).await;
    let r = run(&engine, 1, false).await;
    completed(&r);
    assert_eq!((r.counts.records_updated, r.counts.records_failed), (Some(197), Some(3)));
    assert_eq!(db.count("contacts").await, 197);
    let rej = reasons(&engine, &r).await;
    assert_eq!(rej.iter().map(|(i, _)| i.as_str()).collect::<Vec<_>>(), ["user150@example.com", "user151@example.com", "user37@example.com"]);
    assert!(rej[0].1.contains("null value in column \"name\"") && rej[0].1.contains("SQLSTATE 23502"), "{}", rej[0].1);
    assert!(rej[1].1.contains("check constraint") && rej[1].1.contains("SQLSTATE 23514"), "{}", rej[1].1);
    assert!(rej[2].1.contains("invalid input syntax for type integer: \"lots\"") && rej[2].1.contains("SQLSTATE 22P02"), "{}", rej[2].1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_are_cast_to_the_column_types() {
    let Some(db) = fresh_db().await else { return };
    db.exec(
        "CREATE TYPE mood AS ENUM ('happy', 'sad');
         CREATE TABLE typed (k text PRIMARY KEY, i bigint, n numeric(10,2), b boolean, ts timestamptz, t2 timestamp, d date,
                             j jsonb, js json, tags text[], nums integer[], u uuid, m mood, note text, epoch timestamptz)",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 1).await;
    wh.exec("CREATE TABLE src (k TEXT, i INTEGER, n REAL, b INTEGER, ts TEXT, d TEXT, j TEXT, tags TEXT, nums TEXT, u TEXT, m TEXT, epoch INTEGER)").await;
    wh.exec(
        "INSERT INTO src VALUES ('a', 9007199254740993, 12.5, 1, '2026-01-31T12:00:00Z', '2026-02-28', '{\"plan\": \"pro\", \"seats\": 3}', \
         '[\"x\", \"y,z\", \"q\\\"\"]', '[1, 2, 3]', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'happy', 1769860800), \
         ('b', NULL, NULL, 0, '2026-01-31 12:00:00+02:00', NULL, 'just text', '{a,b}', NULL, NULL, NULL, NULL)",
    )
    .await;
    let fields = [
        ("i", "i"),
        ("n", "n"),
        ("b", "b"),
        ("ts", "ts"),
        ("ts", "t2"),
        ("d", "d"),
        ("j", "j"),
        ("j", "js"),
        ("tags", "tags"),
        ("nums", "nums"),
        ("u", "u"),
        ("m", "m"),
        ("j", "note"),
        ("epoch", "epoch"),
    ];
    let engine = open(dir.path(), &project(&db.url, &sync(1, "upsert", "table: src", "typed", ("k", "k"), &fields, ""))).await;
    let r = run(&engine, 1, false).await;
    completed(&r);
    assert_eq!(r.counts.records_updated, Some(2));
    let row = |col: &str, k: &str| db.text(format!("SELECT {col}::text FROM typed WHERE k = '{k}'"));
    assert_eq!(row("i", "a").await.unwrap(), "9007199254740993");
    assert_eq!(row("n", "a").await.unwrap(), "12.50");
    assert_eq!(row("b", "a").await.unwrap(), "true");
    assert_eq!(row("b", "b").await.unwrap(), "false");
    assert_eq!(row("ts", "a").await.unwrap(), "2026-01-31 12:00:00+00");
    assert_eq!(row("ts", "b").await.unwrap(), "2026-01-31 10:00:00+00");
    assert_eq!(row("t2", "a").await.unwrap(), "2026-01-31 12:00:00");
    assert_eq!(row("d", "a").await.unwrap(), "2026-02-28");
    assert_eq!(row("j->>'seats'", "a").await.unwrap(), "3");
    assert_eq!(row("js->>'plan'", "a").await.unwrap(), "pro");
    assert_eq!(row("j", "b").await.unwrap(), "\"just text\"", "text that is not JSON is stored as a JSON string");
    assert_eq!(row("tags", "a").await.unwrap(), r#"{x,"y,z","q\""}"#);
    assert_eq!(row("tags", "b").await.unwrap(), "{a,b}");
    assert_eq!(row("nums[2]", "a").await.unwrap(), "2");
    assert_eq!(row("u", "a").await.unwrap(), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    assert_eq!(row("m", "a").await.unwrap(), "happy");
    assert_eq!(row("note", "a").await.unwrap(), r#"{"plan": "pro", "seats": 3}"#);
    assert_eq!(row("epoch", "a").await.unwrap(), "2026-01-31 12:00:00+00", "unix seconds into a timestamp");
    assert_eq!(row("i", "b").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_runs_explain_what_is_wrong_with_the_table() {
    let Some(db) = fresh_db().await else { return };
    // Roles belong to the server, not the database: one of this test's own.
    let role = format!("{}_reader", db.name);
    db.exec(&format!(
        "CREATE TABLE ok (email text PRIMARY KEY, name text, score int, vip boolean);
         CREATE TABLE nonunique (email text, name text, score int, vip boolean);
         CREATE TABLE narrow (email text PRIMARY KEY, name text);
         CREATE ROLE {role} LOGIN; GRANT SELECT ON ok TO {role};"
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 5).await;
    let s = |id: i64, behavior: &str, table: &str| sync(id, behavior, "table: contacts", table, ("email", "email"), CONTACT_FIELDS, "");
    let syncs = s(1, "upsert", "ok") + &s(2, "upsert", "nope") + &s(3, "upsert", "nonunique") + &s(4, "upsert", "narrow") + &s(5, "update", "nonunique");
    let engine = open(dir.path(), &project(&db.url, &syncs)).await;
    let check = |id: i64| {
        let engine = &engine;
        async move {
            let sync = engine.project().sync(&SyncRef::Id(id)).unwrap().clone();
            engine.destination(&sync).await.unwrap().check().await
        }
    };
    check(1).await.unwrap();
    check(5).await.unwrap();
    let e = check(2).await.unwrap_err();
    assert!(e.contains("postgres destination `pg`") && e.contains("table nope does not exist"), "{e}");
    let e = check(3).await.unwrap_err();
    assert!(e.contains("column `email` of table public.nonunique has no unique constraint") && e.contains("ADD UNIQUE"), "{e}");
    let e = check(4).await.unwrap_err();
    assert!(e.contains("table public.narrow has no columns `score`, `vip`") && e.contains("its columns are: email, name"), "{e}");
    // The same problems fail a run, with the same words.
    let msg = failed(&run(&engine, 2, false).await);
    assert!(msg.contains("table nope does not exist"), "{msg}");
    let msg = failed(&run(&engine, 4, false).await);
    assert!(msg.contains("has no columns `score`, `vip`"), "{msg}");
    completed(&run(&engine, 1, false).await);

    // A user without write privileges: the check says which, and a run fails at once.
    let reader = db.url.replacen("postgres://postgres@", &format!("postgres://{role}@"), 1);
    assert_ne!(reader, db.url, "the scratch URL names user postgres");
    let engine = open(dir.path(), &project(&reader, &s(1, "upsert", "ok"))).await;
    let sync = engine.project().sync(&SyncRef::Id(1)).unwrap().clone();
    let e = engine.destination(&sync).await.unwrap().check().await.unwrap_err();
    assert!(e.contains("may not insert or update rows of table public.ok") && e.contains("GRANT INSERT, UPDATE ON"), "{e}");
    let msg = failed(&run(&engine, 1, true).await);
    assert!(msg.contains("permission denied") && msg.contains("grant the user"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_fails_the_run_without_showing_the_password() {
    let Some(_) = pg_url() else { return };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgres://sluicegate:s3cret-pw@127.0.0.1:{port}/nowhere");
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 5).await;
    let engine = open(dir.path(), &project(&url, &sync(1, "upsert", "table: contacts", "t", ("email", "email"), CONTACT_FIELDS, ""))).await;
    let r = run(&engine, 1, false).await;
    let msg = failed(&r);
    assert!(msg.contains("connection") && msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(!format!("{r:?}").contains("s3cret-pw"), "{r:?}");
}
