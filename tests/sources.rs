//! Sources against real servers: every value type round-trips from PostgreSQL, MariaDB/MySQL
//! and SQLite through a sync to the webhook emulator and arrives as exact JSON; keys come in
//! byte order whatever the column's collation; failures name the sync, the source and the
//! column.
//!
//! The servers come from `scripts/services.sh`, which exports `SLUICEGATE_TEST_PG_URL` and
//! `SLUICEGATE_TEST_MYSQL_URL` (scripts/test.sh starts them). Without a URL a test prints a skip
//! note, unless `SLUICEGATE_REQUIRE_ALL=1`, where it fails.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;
use sluicegate::config::{Relation, Secret, SourceConfig, SourceKind};
use sluicegate::source::Source;
use sluicegate::store::{RunRecord, RunStatus};

use common::{emulator, open, run, write_project};

fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            let how = "source scripts/services.sh and run `services_start pg|mysql DIR` (scripts/test.sh does)";
            if std::env::var("SLUICEGATE_REQUIRE_ALL").is_ok_and(|v| !v.is_empty() && v != "0") {
                panic!("{var} is not set and SLUICEGATE_REQUIRE_ALL=1: {how}");
            }
            eprintln!("SKIPPED: {var} is not set; {how}");
            None
        }
    }
}

fn pg_url() -> Option<String> {
    service_url("SLUICEGATE_TEST_PG_URL")
}

fn mysql_url() -> Option<String> {
    service_url("SLUICEGATE_TEST_MYSQL_URL")
}

/// A name no other test (or earlier run against the same server) uses.
fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}_{}_{}_{:x}", std::process::id(), N.fetch_add(1, Ordering::Relaxed), nanos % 0xfffff)
}

/// A URL with the password replaced (or added), to test credentials and redaction.
fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (userinfo, host) = rest.split_once('@').unwrap();
    let user = userinfo.split(':').next().unwrap();
    format!("{scheme}://{user}:{password}@{host}")
}

/// A URL pointing at a local port nobody listens on.
fn unreachable(url: &str) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (scheme, rest) = url.split_once("://").unwrap();
    let (_, path) = rest.split_once('/').unwrap();
    format!("{scheme}://sluicegate:s3cret-pw@127.0.0.1:{port}/{path}")
}

/// A project: sources by name and URL (plus any extra source keys), the emulator as the
/// destination, and the given syncs.
fn project(sources: &[(&str, &str)], webhook: &str, syncs: &str) -> String {
    let mut text = String::from("sources:\n");
    for (name, url) in sources {
        text.push_str(&format!("  {name}:\n    url: \"{url}\"\n"));
    }
    text.push_str(&format!(
        "destinations:\n  hook:\n    type: webhook\n    url: {webhook}/records\n    batch_size: 100\n    retry: {{max_attempts: 2, initial_backoff: 10ms}}\nsyncs:\n{syncs}"
    ));
    text
}

/// One sync: `relation` is the YAML of the source's relation key (`table: t`, `query: …`).
fn sync(id: i64, source: &str, relation: &str, key: &str, fields: &[&str]) -> String {
    let mut s = format!(
        "  - id: {id}\n    name: sync{id}\n    source: {{connection: {source}, {relation}}}\n    destination: {{connection: hook, object: records}}\n    primary_identifier: {{from: {key}, to: {key}}}\n    mappings:\n"
    );
    for f in fields {
        s.push_str(&format!("      - {{from: {f}, to: {f}}}\n"));
    }
    s
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("bad expected JSON ({e}): {text}"))
}

/// Compare what the emulator holds with the expected records, field by field, so a failure
/// says which record and field differ.
fn assert_records(got: &BTreeMap<String, Value>, want: &[(&str, &str)]) {
    for (key, text) in want {
        let want = json(text);
        let have = got.get(*key).unwrap_or_else(|| panic!("no record {key:?} arrived; got {:?}", got.keys()));
        for (field, w) in want.as_object().unwrap() {
            let h = have.get(field).unwrap_or_else(|| panic!("record {key:?} has no field {field:?}: {have}"));
            assert_eq!(h, w, "record {key:?}, field {field:?}: got {h}, want {w}");
            // Numbers must keep their exact text (e.g. the digits and scale of a decimal).
            assert_eq!(h.to_string(), w.to_string(), "record {key:?}, field {field:?}");
        }
        assert_eq!(have.as_object().unwrap().len(), want.as_object().unwrap().len(), "record {key:?}: {have}");
    }
    assert_eq!(got.len(), want.len(), "records: {:?}", got.keys());
}

fn completed(r: &RunRecord) {
    assert_eq!(r.status, RunStatus::Completed, "run failed: {:?}", r.error_message);
}

fn failed(r: &RunRecord) -> String {
    assert_eq!(r.status, RunStatus::Failed, "the run should have failed: {r:?}");
    r.error_message.clone().expect("a failed run has an error message")
}

fn assert_mentions(msg: &str, parts: &[&str]) {
    eprintln!("error message: {msg}");
    for p in parts {
        assert!(msg.contains(p), "error message lacks {p:?}:\n{msg}");
    }
    assert!(!msg.contains("s3cret-pw"), "the password leaked into: {msg}");
}

// ------------------------------------------------------------------------------------------
// Values

const PG_FIELDS: &[&str] = &[
    "i2", "i4", "i8", "big", "dec", "f4", "f8", "flag", "t", "vc", "ch", "d", "ts", "tstz", "tm", "j", "jb", "arr",
    "tarr", "u", "m", "em", "b", "ip", "nan",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_values_arrive_exactly() {
    let Some(url) = pg_url() else { return };
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let s = unique("sg_values");
    let ddl = format!(
        r#"
        CREATE SCHEMA {s};
        CREATE TYPE {s}.mood AS ENUM ('happy', 'sad');
        CREATE DOMAIN {s}.email AS text;
        CREATE TABLE {s}.everything (
            id text PRIMARY KEY, i2 smallint, i4 integer, i8 bigint, big numeric, dec numeric(10,2),
            f4 real, f8 double precision, flag boolean, t text, vc varchar(20), ch char(5), d date,
            ts timestamp, tstz timestamptz, tm time, j json, jb jsonb, arr integer[], tarr text[],
            u uuid, m {s}.mood, em {s}.email, b bytea, ip inet, nan numeric);
        INSERT INTO {s}.everything VALUES
          ('Alpha', -32768, 2147483647, 9223372036854775807, 12345678901234567890.123456789, 1.50,
           0.1, 2.5, true, 'Grüße, 世界 👋', '', 'ab', '2026-01-31', '2026-01-31 12:00:00',
           '2026-01-31 13:00:00.25+01', '12:34:56.5', '{{"a": [1, 2.50, "x"], "b": null}}',
           '{{"n": 12345678901234567890.5, "s": "é"}}', '{{{{1,NULL}},{{3,4}}}}', '{{"a b","",NULL}}',
           'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', 'sad', 'x@example.com', '\x00ff6869', '192.168.0.1/24', 'NaN'),
          ('alpha', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
          ('Zulu', 0, -1, -9223372036854775808, -0.000100, 0, 'NaN', '-Infinity', false, 'line1
line2	"quoted" \back', ' ', 'x', 'infinity', '1999-12-31 23:59:59.999999', '0044-03-15 12:00:00+00 BC',
           '00:00:00', '"just a string"', '[]', '{{}}', '{{}}', '00000000-0000-0000-0000-000000000000', 'happy', '',
           '', '::1', 'Infinity'),
          ('émile', 1, 1, 1, 100, 99999999.99, -1.5e-7, 1e300, true, 'ü', 'Ñ', 'ñandú', '2000-02-29',
           '2026-06-30 23:59:59.000001', '2026-06-30 23:59:59.000001-02', '23:59:59.999999', 'null',
           '{{"nested": {{"deep": [true, false, null]}}}}', '{{-5}}', '{{"ü"}}', NULL, NULL, NULL,
           '\x', '10.0.0.0/8', '-0.0');
        "#
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(ddl)).execute(&admin).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let emu = emulator().await;
    let syncs = sync(1, "warehouse", &format!("table: {s}.everything"), "id", PG_FIELDS);
    let engine = open(&write_project(dir.path(), &project(&[("warehouse", &url)], &emu.url, &syncs))).await;
    let r = run(&engine, 1, false).await;
    completed(&r);
    assert_eq!(r.counts.records_updated, Some(4));
    assert_records(
        &emu.store(),
        &[
            (
                "Alpha",
                r#"{"id": "Alpha", "i2": -32768, "i4": 2147483647, "i8": 9223372036854775807,
                    "big": 12345678901234567890.123456789, "dec": 1.50, "f4": 0.1, "f8": 2.5, "flag": true,
                    "t": "Grüße, 世界 👋", "vc": "", "ch": "ab   ", "d": "2026-01-31", "ts": "2026-01-31T12:00:00Z",
                    "tstz": "2026-01-31T12:00:00.25Z", "tm": "12:34:56.5", "j": {"a": [1, 2.50, "x"], "b": null},
                    "jb": {"n": 12345678901234567890.5, "s": "é"}, "arr": [[1, null], [3, 4]], "tarr": ["a b", "", null],
                    "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "m": "sad", "em": "x@example.com", "b": "AP9oaQ==",
                    "ip": "192.168.0.1/24", "nan": "NaN"}"#,
            ),
            (
                "alpha",
                r#"{"id": "alpha", "i2": null, "i4": null, "i8": null, "big": null, "dec": null, "f4": null, "f8": null,
                    "flag": null, "t": null, "vc": null, "ch": null, "d": null, "ts": null, "tstz": null, "tm": null,
                    "j": null, "jb": null, "arr": null, "tarr": null, "u": null, "m": null, "em": null, "b": null,
                    "ip": null, "nan": null}"#,
            ),
            (
                "Zulu",
                r#"{"id": "Zulu", "i2": 0, "i4": -1, "i8": -9223372036854775808, "big": -0.000100, "dec": 0.00,
                    "f4": "NaN", "f8": "-Infinity", "flag": false, "t": "line1\nline2\t\"quoted\" \\back", "vc": " ",
                    "ch": "x    ", "d": "infinity", "ts": "1999-12-31T23:59:59.999999Z", "tstz": "-0043-03-15T12:00:00Z",
                    "tm": "00:00:00", "j": "just a string", "jb": [], "arr": [], "tarr": [],
                    "u": "00000000-0000-0000-0000-000000000000", "m": "happy", "em": "", "b": "", "ip": "::1/128",
                    "nan": "Infinity"}"#,
            ),
            (
                "émile",
                r#"{"id": "émile", "i2": 1, "i4": 1, "i8": 1, "big": 100, "dec": 99999999.99, "f4": -1.5e-7, "f8": 1e+300,
                    "flag": true, "t": "ü", "vc": "Ñ", "ch": "ñandú", "d": "2000-02-29", "ts": "2026-06-30T23:59:59.000001Z",
                    "tstz": "2026-07-01T01:59:59.000001Z", "tm": "23:59:59.999999", "j": null,
                    "jb": {"nested": {"deep": [true, false, null]}}, "arr": [-5], "tarr": ["ü"], "u": null, "m": null,
                    "em": null, "b": "", "ip": "10.0.0.0/8", "nan": 0.0}"#,
            ),
        ],
    );
    // Rows came in byte order of their keys (the emulator keeps arrival order).
    let order: Vec<String> = emu.records().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(order, ["Alpha", "Zulu", "alpha", "émile"]);

    let r2 = run(&engine, 1, false).await;
    completed(&r2);
    assert_eq!(r2.counts.records_processed, Some(0), "nothing changed, nothing sent");
    emu.stop().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {s} CASCADE"))).execute(&admin).await.unwrap();
}

const MYSQL_FIELDS: &[&str] = &[
    "ti", "si", "mi", "i", "bi", "ubi", "big", "dc", "fl", "db", "flag", "t", "vc", "ch", "d", "dt", "ts", "tm", "j",
    "e", "st", "b", "bl", "yr", "bt", "tb",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_values_arrive_exactly() {
    let Some(url) = mysql_url() else { return };
    let admin = sqlx::MySqlPool::connect(&url).await.unwrap();
    let t = unique("everything");
    let ddl = format!(
        r#"
        CREATE TABLE {t} (
            id VARCHAR(20) NOT NULL, ti TINYINT, si SMALLINT, mi MEDIUMINT, i INT, bi BIGINT,
            ubi BIGINT UNSIGNED, big DECIMAL(38,9), dc DECIMAL(10,2), fl FLOAT, db DOUBLE, flag BOOL,
            t TEXT, vc VARCHAR(20), ch CHAR(5), d DATE, dt DATETIME(6), ts TIMESTAMP(6) NULL, tm TIME(6),
            j JSON, e ENUM('happy','sad'), st SET('a','b','c'), b VARBINARY(10), bl BLOB, yr YEAR, bt BIT(8),
            tb VARCHAR(20) COLLATE utf8mb4_bin);
        SET time_zone = '+01:00';
        INSERT INTO {t} VALUES
          ('Alpha', -128, -32768, -8388608, 2147483647, 9223372036854775807, 18446744073709551615,
           12345678901234567890.123456789, 1.50, 0.1, 2.5, TRUE, 'Grüße, 世界 👋', '', 'ab', '2026-01-31',
           '2026-01-31 12:00:00', '2026-01-31 13:00:00.25', '12:34:56.5', '{{"a": [1, 2.50, "x"], "b": null}}',
           'sad', 'a,c', X'00ff6869', X'', 2026, b'101', 'Bin Text'),
          ('alpha', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
          ('Zulu', 0, 0, 0, -1, -9223372036854775808, 0, -0.000100000, 0, -1.5, 1e300, FALSE, 'line1
line2	"quoted" \\back', ' ', 'x', '1000-01-01', '9999-12-31 23:59:59.999999', '1999-12-31 23:59:59.999999',
           '-838:59:59', '"just a string"', 'happy', '', X'', X'00', 1901, b'0', ''),
          ('émile', 1, 1, 1, 1, 1, 1, 100, 99999999.99, 3.25, -2.5e-7, TRUE, 'ü', 'Ñ', 'ñandú', '2000-02-29',
           '2026-06-30 23:59:59.000001', '2026-06-30 23:59:59.000001', '00:00:00', '[]', NULL, NULL, NULL, NULL,
           NULL, NULL, 'ü');
        "#
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(ddl)).execute(&admin).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let emu = emulator().await;
    let mut syncs = sync(1, "warehouse", &format!("table: {t}"), "id", MYSQL_FIELDS);
    // Through a query, MariaDB's JSON (LONGTEXT + check) cannot be told from text: it arrives as
    // the JSON text (MySQL's JSON is a type of its own, and arrives nested either way).
    syncs += &sync(2, "warehouse", &format!("query: \"SELECT id, j, ubi FROM {t} WHERE id = 'Alpha'\""), "id", &["j", "ubi"]);
    let engine = open(&write_project(dir.path(), &project(&[("warehouse", &url)], &emu.url, &syncs))).await;
    let r = run(&engine, 1, false).await;
    completed(&r);
    assert_eq!(r.counts.records_updated, Some(4));
    assert_records(
        &emu.store(),
        &[
            (
                "Alpha",
                r#"{"id": "Alpha", "ti": -128, "si": -32768, "mi": -8388608, "i": 2147483647, "bi": 9223372036854775807,
                    "ubi": 18446744073709551615, "big": 12345678901234567890.123456789, "dc": 1.50, "fl": 0.1, "db": 2.5,
                    "flag": true, "t": "Grüße, 世界 👋", "vc": "", "ch": "ab", "d": "2026-01-31", "dt": "2026-01-31T12:00:00Z",
                    "ts": "2026-01-31T12:00:00.25Z", "tm": "12:34:56.5", "j": {"a": [1, 2.50, "x"], "b": null},
                    "e": "sad", "st": "a,c", "b": "AP9oaQ==", "bl": "", "yr": 2026, "bt": 5, "tb": "Bin Text"}"#,
            ),
            (
                "alpha",
                r#"{"id": "alpha", "ti": null, "si": null, "mi": null, "i": null, "bi": null, "ubi": null, "big": null,
                    "dc": null, "fl": null, "db": null, "flag": null, "t": null, "vc": null, "ch": null, "d": null,
                    "dt": null, "ts": null, "tm": null, "j": null, "e": null, "st": null, "b": null, "bl": null,
                    "yr": null, "bt": null, "tb": null}"#,
            ),
            (
                "Zulu",
                r#"{"id": "Zulu", "ti": 0, "si": 0, "mi": 0, "i": -1, "bi": -9223372036854775808, "ubi": 0,
                    "big": -0.000100000, "dc": 0.00, "fl": -1.5, "db": 1e+300, "flag": false,
                    "t": "line1\nline2\t\"quoted\" \\back", "vc": " ", "ch": "x", "d": "1000-01-01",
                    "dt": "9999-12-31T23:59:59.999999Z", "ts": "1999-12-31T22:59:59.999999Z", "tm": "-838:59:59",
                    "j": "just a string", "e": "happy", "st": "", "b": "", "bl": "AA==", "yr": 1901, "bt": 0, "tb": ""}"#,
            ),
            (
                "émile",
                r#"{"id": "émile", "ti": 1, "si": 1, "mi": 1, "i": 1, "bi": 1, "ubi": 1, "big": 100.000000000,
                    "dc": 99999999.99, "fl": 3.25, "db": -2.5e-7, "flag": true, "t": "ü", "vc": "Ñ", "ch": "ñandú",
                    "d": "2000-02-29", "dt": "2026-06-30T23:59:59.000001Z", "ts": "2026-06-30T22:59:59.000001Z",
                    "tm": "00:00:00", "j": [], "e": null, "st": null, "b": null, "bl": null, "yr": null, "bt": null,
                    "tb": "ü"}"#,
            ),
        ],
    );
    let order: Vec<String> = emu.records().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(order, ["Alpha", "Zulu", "alpha", "émile"], "keys in byte order despite the _ci collation");
    let r2 = run(&engine, 1, false).await;
    completed(&r2);
    assert_eq!(r2.counts.records_processed, Some(0));
    completed(&run(&engine, 2, false).await);
    let version: String = sqlx::query_scalar("SELECT VERSION()").fetch_one(&admin).await.unwrap();
    let want = if version.contains("MariaDB") {
        r#"{"id": "Alpha", "j": "{\"a\": [1, 2.50, \"x\"], \"b\": null}", "ubi": 18446744073709551615}"#
    } else {
        r#"{"id": "Alpha", "j": {"a": [1, 2.50, "x"], "b": null}, "ubi": 18446744073709551615}"#
    };
    assert_eq!(emu.store()["Alpha"], json(want));
    emu.stop().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE {t}"))).execute(&admin).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_values_arrive_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("warehouse.db");
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&db).create_if_missing(true))
        .await
        .unwrap();
    sqlx::raw_sql(
        r#"
        -- SQLite keeps a DECIMAL column's numbers as REAL (15-17 digits): what it stores is sent.
        CREATE TABLE everything (id TEXT PRIMARY KEY, i INTEGER, big DECIMAL(38, 9), r REAL, flag BOOLEAN,
                                 t TEXT, d DATE, ts DATETIME, j JSON, b BLOB);
        INSERT INTO everything VALUES
          ('Alpha', 9223372036854775807, 1234567.891, 0.1, 1, 'Grüße, 世界 👋',
           '2026-01-31', '2026-01-31 12:00:00', '{"a": [1, 2.50, "x"], "b": null}', x'00ff6869'),
          ('alpha', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
          ('Zulu', -9223372036854775808, '12345678901234567890.123456789', 1e300, 0, '', '2000-02-29', '2026-01-31T14:00:00.25+02:00',
           'not json', x''),
          ('émile', 0, 1.5, -2.5e-7, 1, 'ü', NULL, 'sometime', '[]', NULL);
        "#,
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let emu = emulator().await;
    let syncs = sync(1, "warehouse", "table: everything", "id", &["i", "big", "r", "flag", "t", "d", "ts", "j", "b"]);
    let engine = open(&write_project(dir.path(), &project(&[("warehouse", "sqlite://warehouse.db")], &emu.url, &syncs))).await;
    let r = run(&engine, 1, false).await;
    completed(&r);
    assert_records(
        &emu.store(),
        &[
            (
                "Alpha",
                r#"{"id": "Alpha", "i": 9223372036854775807, "big": 1234567.891, "r": 0.1, "flag": true,
                    "t": "Grüße, 世界 👋", "d": "2026-01-31", "ts": "2026-01-31T12:00:00Z", "j": {"a": [1, 2.50, "x"], "b": null},
                    "b": "AP9oaQ=="}"#,
            ),
            (
                "alpha",
                r#"{"id": "alpha", "i": null, "big": null, "r": null, "flag": null, "t": null, "d": null, "ts": null,
                    "j": null, "b": null}"#,
            ),
            (
                "Zulu",
                r#"{"id": "Zulu", "i": -9223372036854775808, "big": 1.2345678901234567e+19, "r": 1e+300, "flag": false, "t": "",
                    "d": "2000-02-29", "ts": "2026-01-31T12:00:00.25Z", "j": "not json", "b": ""}"#,
            ),
            (
                "émile",
                r#"{"id": "émile", "i": 0, "big": 1.5, "r": -2.5e-7, "flag": true, "t": "ü", "d": null, "ts": "sometime",
                    "j": [], "b": null}"#,
            ),
        ],
    );
    emu.stop().await;
}

// ------------------------------------------------------------------------------------------
// Key order

/// Keys that a locale collation orders differently from bytes (case, accents, digits, spaces).
const TRICKY_KEYS: &[&str] =
    &["a", "A", "B", "b", "ä", "Ä", "Z", "z", "10", "9", "a b", "ab", "a-b", "a_b", "é", "e", "E", "ß", "ss", "ñ", "n", "Ωmega", "日本"];

async fn order_run_twice(url: &str, relation: &str) {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator().await;
    let syncs = sync(1, "warehouse", relation, "k", &["v"]);
    let engine = open(&write_project(dir.path(), &project(&[("warehouse", url)], &emu.url, &syncs))).await;
    let r = run(&engine, 1, false).await;
    completed(&r);
    assert_eq!(r.counts.records_updated, Some(TRICKY_KEYS.len() as i64));
    let arrived: Vec<String> = emu.records().iter().map(|r| r["k"].as_str().unwrap().to_string()).collect();
    let mut bytewise: Vec<String> = TRICKY_KEYS.iter().map(|k| k.to_string()).collect();
    bytewise.sort();
    assert_eq!(arrived, bytewise, "keys must arrive in byte order");
    let r2 = run(&engine, 1, false).await;
    completed(&r2);
    assert_eq!(r2.counts.records_processed, Some(0), "a second run sends nothing");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keys_in_byte_order_under_a_locale_collation() {
    let Some(url) = pg_url() else { return };
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let t = unique("sg_order");
    let icu: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu')")
        .fetch_one(&admin)
        .await
        .unwrap();
    let collation = if icu { "\"und-x-icu\"" } else { "\"C.utf8\"" };
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE TABLE {t} (k text COLLATE {collation} PRIMARY KEY, v int)")))
        .execute(&admin)
        .await
        .unwrap();
    for (i, k) in TRICKY_KEYS.iter().enumerate() {
        sqlx::query(sqlx::AssertSqlSafe(format!("INSERT INTO {t} VALUES ($1, $2)"))).bind(k).bind(i as i32).execute(&admin).await.unwrap();
    }
    // The collation really orders differently from bytes.
    let natural: Vec<String> =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT k FROM {t} ORDER BY k"))).fetch_all(&admin).await.unwrap();
    let mut bytewise = natural.clone();
    bytewise.sort();
    if icu {
        assert_ne!(natural, bytewise);
    }
    order_run_twice(&url, &format!("table: {t}")).await;
    // The same through a query (ordered by the engine, not by the query).
    order_run_twice(&url, &format!("query: \"SELECT k, v FROM {t} ORDER BY k\"")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_keys_in_byte_order_under_a_case_insensitive_collation() {
    let Some(url) = mysql_url() else { return };
    let admin = sqlx::MySqlPool::connect(&url).await.unwrap();
    let t = unique("sg_order");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {t} (k VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL, v INT, KEY (k))"
    )))
    .execute(&admin)
    .await
    .unwrap();
    for (i, k) in TRICKY_KEYS.iter().enumerate() {
        sqlx::query(sqlx::AssertSqlSafe(format!("INSERT INTO {t} VALUES (?, ?)"))).bind(k).bind(i as i32).execute(&admin).await.unwrap();
    }
    let natural: Vec<String> =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT k FROM {t} ORDER BY k"))).fetch_all(&admin).await.unwrap();
    let mut bytewise = natural.clone();
    bytewise.sort();
    assert_ne!(natural, bytewise, "the collation orders differently from bytes");
    order_run_twice(&url, &format!("table: {t}")).await;
    // Trailing spaces are not padding: `a` and `a ` are two keys, in byte order.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE TABLE {t}_pad (k VARCHAR(5) NOT NULL, v INT); INSERT INTO {t}_pad VALUES ('a ', 1), ('a', 2), ('a\t', 3)")))
        .execute(&admin)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator().await;
    let syncs = sync(1, "warehouse", &format!("table: {t}_pad"), "k", &["v"]);
    let engine = open(&write_project(dir.path(), &project(&[("warehouse", &url)], &emu.url, &syncs))).await;
    let r = run(&engine, 1, false).await;
    completed(&r);
    let arrived: Vec<String> = emu.records().iter().map(|r| r["k"].as_str().unwrap().to_string()).collect();
    assert_eq!(arrived, ["a", "a\t", "a "]);
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_integer_keys_sort_numerically() {
    let Some(url) = mysql_url() else { return };
    let admin = sqlx::MySqlPool::connect(&url).await.unwrap();
    let t = unique("sg_intkey");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {t} (id BIGINT PRIMARY KEY, email VARCHAR(40)); INSERT INTO {t} VALUES (10, 'ten'), (9, 'nine'), (-3, 'minus three'), (100, 'hundred')"
    )))
    .execute(&admin)
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator().await;
    let syncs = sync(1, "warehouse", &format!("table: {t}"), "id", &["email"]);
    let engine = open(&write_project(dir.path(), &project(&[("warehouse", &url)], &emu.url, &syncs))).await;
    let r = run(&engine, 1, false).await;
    completed(&r);
    let ids: Vec<i64> = emu.records().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [-3, 9, 10, 100]);
    completed(&run(&engine, 1, false).await);
    emu.stop().await;
}

// ------------------------------------------------------------------------------------------
// Errors

/// Syncs 1..=6 of the error tests: a missing table, a mapped column the table lacks, a query
/// naming a missing column, a query that fails while rows are read, an unsupported column
/// type, and a query with a syntax error. Sources `down` (nothing listens) and `badpw` (wrong
/// credentials) are synced by 7 and 8.
fn error_syncs(table: &str, unsupported_col: &str) -> String {
    let mut s = String::new();
    s += &sync(1, "warehouse", "table: no_such_table", "id", &["email"]);
    s += &sync(2, "warehouse", &format!("table: {table}"), "id", &["email", "no_such_column"]);
    s += &sync(3, "warehouse", &format!("query: \"SELECT id, email, missing_col FROM {table}\""), "id", &["email"]);
    s += &sync(4, "warehouse", &format!("query: \"SELECT id, (SELECT id FROM {table}) AS email FROM {table}\""), "id", &["email"]);
    s += &sync(5, "warehouse", &format!("table: {table}"), "id", &["email", unsupported_col]);
    s += &sync(6, "warehouse", "query: \"SELEC id FROM nowhere\"", "id", &["email"]);
    s += &sync(7, "down", &format!("table: {table}"), "id", &["email"]);
    s += &sync(8, "badpw", &format!("table: {table}"), "id", &["email"]);
    s
}

async fn check_errors(url: &str, bad_credentials: &str, table: &str, unsupported: (&str, &str), label: &str) {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator().await;
    let down = unreachable(url);
    let text = project(&[("warehouse", url), ("down", &down), ("badpw", bad_credentials)], &emu.url, &error_syncs(table, unsupported.0));
    let engine = open(&write_project(dir.path(), &text)).await;
    let src = format!("source `warehouse` ({label})");

    let m = failed(&run(&engine, 1, false).await);
    assert_mentions(&m, &["sync 1 (sync1)", &src, "cannot read table \"no_such_table\"", "check the table's name"]);

    let m = failed(&run(&engine, 2, false).await);
    assert_mentions(&m, &["sync 2 (sync2)", "source `warehouse`", "`no_such_column`", "is not in the source"]);

    let m = failed(&run(&engine, 3, false).await);
    assert_mentions(&m, &["sync 3 (sync3)", &src, "cannot read the query", "missing_col", "check the column names"]);

    let m = failed(&run(&engine, 4, false).await);
    assert_mentions(&m, &["sync 4 (sync4)", &src, "reading the query failed"]);
    assert!(m.to_lowercase().contains("more than one row") || m.contains("more than 1 row"), "{m}");

    let m = failed(&run(&engine, 5, false).await);
    assert_mentions(&m, &["sync 5 (sync5)", &src, &format!("column `{}` has type {}", unsupported.0, unsupported.1)]);
    // `validate` finds it too, without reading a row.
    let s5 = engine.project().syncs.iter().find(|s| s.id == 5).unwrap();
    let e = engine.check_sync(s5).await.err().expect("validate reports the unsupported column").full_message();
    assert_mentions(&e, &["sync 5 (sync5)", &src, &format!("column `{}` has type {}", unsupported.0, unsupported.1)]);
    if unsupported.1 == "INTERVAL" {
        assert_mentions(&e, &["extract(epoch FROM span)"]);
    }

    let m = failed(&run(&engine, 6, false).await);
    assert_mentions(&m, &["sync 6 (sync6)", &src, "cannot read the query", "syntax", "check the query's SQL"]);

    let m = failed(&run(&engine, 7, false).await);
    assert_mentions(&m, &["sync 7 (sync7)", &format!("source `down` ({label})"), "cannot connect to", "cannot reach the server"]);

    let m = failed(&run(&engine, 8, false).await);
    assert_mentions(&m, &["sync 8 (sync8)", &format!("source `badpw` ({label})"), "refused the credentials"]);
    assert_eq!(emu.stats().requests, 0, "nothing was sent");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_errors_name_the_sync_source_and_column() {
    let Some(url) = pg_url() else { return };
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let t = unique("sg_errors");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {t} (id int PRIMARY KEY, email text, span interval); INSERT INTO {t} VALUES (1, 'a@x', '1 day'), (2, 'b@x', '2 hours')"
    )))
    .execute(&admin)
    .await
    .unwrap();
    // The test server trusts every local user, so a wrong password passes: a user that does not
    // exist is refused the same way (SQLSTATE 28000).
    let bad = with_password(&url.replacen("postgres@", "nobody_here@", 1), "s3cret-pw");
    check_errors(&url, &bad, &t, ("span", "INTERVAL"), "Postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_errors_name_the_sync_source_and_column() {
    let Some(url) = mysql_url() else { return };
    let admin = sqlx::MySqlPool::connect(&url).await.unwrap();
    let t = unique("sg_errors");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {t} (id INT PRIMARY KEY, email TEXT, spot POINT); INSERT INTO {t} VALUES (1, 'a@x', POINT(1, 2)), (2, 'b@x', POINT(3, 4))"
    )))
    .execute(&admin)
    .await
    .unwrap();
    check_errors(&url, &with_password(&url, "s3cret-pw"), &t, ("spot", "GEOMETRY"), "MySQL").await;
}

// ------------------------------------------------------------------------------------------
// The source on its own (no config): connection errors carry no password.

fn source_config(name: &str, url: &str) -> SourceConfig {
    SourceConfig {
        name: name.into(),
        url: Secret::new(url),
        kind: SourceKind::Postgres,
        dbt_manifest: "target/manifest.json".into(),
        pos: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_errors_are_quick_and_redacted() {
    let Some(url) = pg_url() else { return };
    let started = std::time::Instant::now();
    let e = match Source::connect(&source_config("lake", &unreachable(&url))).await {
        Ok(_) => panic!("connected to a closed port"),
        Err(e) => e.full_message(),
    };
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "a refused connection is reported at once, not retried");
    assert_mentions(&e, &["source `lake` (Postgres)", "cannot connect to postgres://127.0.0.1:", "cannot reach the server"]);
    // A relation that is not there, read directly.
    let src = Source::connect(&source_config("lake", &url)).await.unwrap();
    let e = src.columns(&Relation::Table("nowhere.nothing".into())).await.unwrap_err().full_message();
    assert_mentions(&e, &["source `lake` (Postgres)", "cannot read table \"nowhere.nothing\"", "does not exist"]);
}

// ------------------------------------------------------------------------------------------
// Measurement (not run by default): a 1M-row scan through the source vs COPY.
//
//   cargo test --release --test sources -- --ignored --nocapture postgres_scan_speed

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn postgres_scan_speed() {
    use futures_util::TryStreamExt;
    use sqlx::postgres::PgPoolCopyExt;

    let Some(url) = pg_url() else { return };
    let rows: i64 = std::env::var("SG_BENCH_ROWS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let t = format!("sg_bench_{rows}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {t} AS
           SELECT i::int8 AS id, 'user' || i || '@example.com' AS email, 'User ' || i AS name,
                  (ARRAY['free', 'pro', 'team'])[1 + i % 3] AS plan, ((i % 100000) / 100.0)::numeric(12, 2) AS score,
                  timestamptz '2026-01-31 12:00:00+00' - i * interval '1 minute' AS created_at,
                  timestamptz '2026-01-31 12:00:00+00' - i * interval '1.5 second' AS updated_at,
                  (i % 1000) / 7.0::float8 AS ratio, i % 7 = 0 AS vip,
                  jsonb_build_object('k', i, 'tags', jsonb_build_array('a', 'b')) AS meta
           FROM generate_series(1, {rows}) AS i;
         DO $$ BEGIN ALTER TABLE {t} ADD PRIMARY KEY (id); EXCEPTION WHEN others THEN NULL; END $$;"
    )))
    .execute(&admin)
    .await
    .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("VACUUM ANALYZE {t}"))).execute(&admin).await.unwrap();
    let cols = ["id", "email", "name", "plan", "score", "created_at", "updated_at", "ratio", "vip", "meta"];
    let select = format!("SELECT {} FROM {t} ORDER BY id", cols.join(", "));

    async fn best<F, Fut>(label: &str, rows: i64, mut f: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = i64>,
    {
        let mut times = Vec::new();
        for _ in 0..3 {
            let t0 = std::time::Instant::now();
            let n = f().await;
            times.push(t0.elapsed().as_secs_f64());
            assert!(n > 0, "{label}: nothing read");
        }
        let b = times.iter().cloned().fold(f64::INFINITY, f64::min);
        println!("{label:<58} best {b:6.2} s  {:5.2} M rows/s   (runs: {times:.2?})", rows as f64 / b / 1e6);
    }

    best("COPY (SELECT … ORDER BY id) TO STDOUT, text, raw bytes", rows, || async {
        let mut s = admin.copy_out_raw(&format!("COPY ({select}) TO STDOUT")).await.unwrap();
        let mut n = 0i64;
        while let Some(b) = s.try_next().await.unwrap() {
            n += b.iter().filter(|c| **c == b'\n').count() as i64;
        }
        n
    })
    .await;
    best("COPY (SELECT … ORDER BY id) TO STDOUT (FORMAT binary), raw", rows, || async {
        let mut s = admin.copy_out_raw(&format!("COPY ({select}) TO STDOUT (FORMAT binary)")).await.unwrap();
        let mut n = 0i64;
        while let Some(b) = s.try_next().await.unwrap() {
            n += b.len() as i64;
        }
        n
    })
    .await;
    best("json_build_array(…)::text + serde_json (the old path)", rows, || async {
        let sql = format!("SELECT json_build_array({})::text FROM {t} ORDER BY id", cols.join(", "));
        let mut s = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql)).fetch(&admin);
        let mut n = 0i64;
        while let Some(text) = s.try_next().await.unwrap() {
            let v: Value = serde_json::from_str(&text).unwrap();
            n += v.as_array().map(|a| a.len() as i64 / 10).unwrap_or(0);
        }
        n
    })
    .await;
    best("sqlx binary rows, raw bytes only (no decoding)", rows, || async {
        use sqlx::{Row, ValueRef};
        let mut s = sqlx::query(sqlx::AssertSqlSafe(select.clone())).fetch(&admin);
        let mut n = 0i64;
        while let Some(row) = s.try_next().await.unwrap() {
            for i in 0..cols.len() {
                let v = row.try_get_raw(i).unwrap();
                if !v.is_null() {
                    n += 1;
                }
            }
        }
        n / cols.len() as i64
    })
    .await;
    let src = Source::connect(&source_config("bench", &url)).await.unwrap();
    best("Source::scan: binary rows decoded to JSON (the new path)", rows, || async {
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let names: Vec<String> = cols.iter().map(|c| c.to_string()).collect();
        let (src, rel) = (src.clone(), Relation::Table(t.clone()));
        let task = tokio::spawn(async move { src.scan(&rel, &names, Some("\"id\""), tx).await });
        let mut n = 0i64;
        while let Some(chunk) = rx.recv().await {
            n += chunk.unwrap().len() as i64;
        }
        task.await.unwrap();
        n
    })
    .await;
}

// ------------------------------------------------------------------------------------------
// The no-change path: PostgreSQL rows are fingerprinted as binary tuples and decoded only
// when sent. Changes of any kind must still be found, and only they.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_finds_exactly_the_changed_rows_from_binary_tuples() {
    let Some(url) = pg_url() else { return };
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let t = unique("sg_raw");
    let exec = |sql: String| {
        let admin = admin.clone();
        async move { sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&admin).await.unwrap() }
    };
    exec(format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, email text, score numeric(8,2), attrs jsonb, note text);
         INSERT INTO {t} SELECT g, 'u' || g || '@x.io', g * 1.5, jsonb_build_object('n', g, 'tags', jsonb_build_array('a', g)),
                CASE WHEN g % 2 = 0 THEN NULL ELSE 'odd' END FROM generate_series(1, 300) g;"
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator().await;
    let fields = ["email", "score", "attrs", "note"];
    let mut syncs = sync(1, "warehouse", &format!("table: {t}"), "id", &fields);
    syncs.push_str("    behavior: mirror\n");
    let path = write_project(dir.path(), &project(&[("warehouse", &url)], &emu.url, &syncs));
    let engine = open(&path).await;
    let r = run(&engine, 1, false).await;
    completed(&r);
    assert_eq!(r.counts.records_updated, Some(300));
    let r = run(&engine, 1, false).await;
    completed(&r);
    assert_eq!(r.counts.records_processed, Some(0), "nothing changed, nothing sent");

    // Silent updates (no timestamp column): inside a jsonb value, NULL to a value, a value to
    // NULL, a numeric's scale-preserving change; a delete and an insert.
    exec(format!(
        "UPDATE {t} SET attrs = jsonb_set(attrs, '{{tags,0}}', '\"b\"') WHERE id = 10;
         UPDATE {t} SET note = '' WHERE id = 20;
         UPDATE {t} SET note = NULL WHERE id = 21;
         UPDATE {t} SET score = 46.51 WHERE id = 31;
         UPDATE {t} SET email = email WHERE id = 40;
         DELETE FROM {t} WHERE id = 50;
         INSERT INTO {t} VALUES (1000, 'new@x.io', 1.00, '{{}}', NULL);"
    ))
    .await;
    let r = run(&engine, 1, false).await;
    completed(&r);
    let p = &r.counts.planned;
    assert_eq!((p.adds, p.changes, p.removes), (1, 4, 1), "exactly the changed rows: {p:?}");
    let store = emu.store();
    assert_eq!(store["10"]["attrs"], json(r#"{"n": 10, "tags": ["b", 10]}"#));
    assert_eq!(store["20"]["note"], json(r#""""#), "NULL to empty string is a change");
    assert_eq!(store["21"]["note"], Value::Null);
    assert_eq!(store["31"]["score"].to_string(), "46.51");
    assert!(!store.contains_key("50"), "the deleted row was removed at the destination");
    assert_eq!(store["1000"]["email"], "new@x.io");
    assert_eq!(store.len(), 300);
    let r = run(&engine, 1, false).await;
    completed(&r);
    assert_eq!(r.counts.records_processed, Some(0));

    // Changing the mappings resends exactly the rows whose payload changed: all of them.
    let mut syncs = sync(1, "warehouse", &format!("table: {t}"), "id", &fields);
    syncs.push_str("      - {constant: crm, to: origin}\n    behavior: mirror\n");
    let engine = open(&write_project(dir.path(), &project(&[("warehouse", &url)], &emu.url, &syncs))).await;
    let r = run(&engine, 1, false).await;
    completed(&r);
    assert_eq!(r.counts.planned.changes, 300);
    assert_eq!(emu.store()["7"]["origin"], "crm");

    // Duplicate identifiers in a query are invalid rows, both of them, never sent.
    let dup = format!("query: \"SELECT * FROM {t} UNION ALL SELECT * FROM {t} WHERE id = 3\"");
    let mut syncs = sync(2, "warehouse", &dup, "id", &fields);
    syncs.push_str("    behavior: upsert\n");
    let engine = open(&write_project(dir.path(), &project(&[("warehouse", &url)], &emu.url, &syncs))).await;
    let r = run(&engine, 2, false).await;
    completed(&r);
    assert_eq!((r.counts.records_invalid, r.counts.records_updated), (Some(2), Some(299)));
    let rejected = engine.run_records(r.id, 10).await.unwrap();
    assert!(rejected.iter().all(|o| o.identifier.as_deref() == Some("3") && o.reason.contains("duplicate")), "{rejected:?}");
    emu.stop().await;
}
