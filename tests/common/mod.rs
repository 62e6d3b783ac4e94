//! Helpers for the cargo integration tests: a SQLite warehouse, a project file, an emulator.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use sluicegate::emulator::webhook::{WebhookEmulator, WebhookEmulatorConfig};
use sluicegate::engine::{no_progress, Engine, EngineOptions};
use sluicegate::store::{RunRecord, TriggerReason};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::SqlitePool;

pub struct Warehouse {
    pub path: PathBuf,
    pub pool: SqlitePool,
}

impl Warehouse {
    /// A `contacts` table with `n` rows: id, email (`user{i}@example.com`), name, score.
    pub async fn create(dir: &Path, n: i64) -> Warehouse {
        let path = dir.join("warehouse.db");
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(SqliteConnectOptions::new().filename(&path).create_if_missing(true))
            .await
            .unwrap();
        sqlx::raw_sql("CREATE TABLE contacts (id INTEGER PRIMARY KEY, email TEXT, name TEXT, score INTEGER, vip BOOLEAN)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) \
             INSERT INTO contacts SELECT i, 'user' || i || '@example.com', 'User ' || i, i % 100, i % 7 = 0 FROM n",
        )
        .bind(n)
        .execute(&pool)
        .await
        .unwrap();
        Warehouse { path, pool }
    }

    pub async fn exec(&self, sql: &'static str) -> u64 {
        sqlx::query(sql).execute(&self.pool).await.unwrap().rows_affected()
    }
}

pub fn project_yml(webhook_url: &str, extra_sync: &str) -> String {
    format!(
        r#"
sources:
  warehouse:
    url: sqlite://warehouse.db
destinations:
  hook:
    type: webhook
    url: {webhook_url}/contacts
    batch_size: 50
    headers:
      Authorization: Bearer ${{TEST_WEBHOOK_TOKEN:-test-token}}
    retry:
      max_attempts: 3
      initial_backoff: 10ms
      max_backoff: 50ms
syncs:
  - id: 1
    name: contacts
    source:
      connection: warehouse
      table: contacts
    destination:
      connection: hook
      object: contacts
    primary_identifier:
      from: email
      to: email
    mappings:
      - from: name
        to: full_name
      - from: score
        to: score
      - from: vip
        to: is_vip
{extra_sync}
"#
    )
}

pub async fn emulator() -> WebhookEmulator {
    WebhookEmulator::start(SocketAddr::from(([127, 0, 0, 1], 0)), WebhookEmulatorConfig::default()).await.unwrap()
}

pub fn write_project(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("sluicegate.yml");
    std::fs::write(&p, text).unwrap();
    p
}

/// The state store for a test's directory: the default SQLite file, or, when
/// `SLUICEGATE_TEST_STATE_PG` names a Postgres server (an admin URL), a database of its own
/// for this directory, so that the same tests cover both stores.
pub async fn state_for(dir: &Path) -> Option<String> {
    let admin = std::env::var("SLUICEGATE_TEST_STATE_PG").ok().filter(|s| !s.is_empty())?;
    let name = format!("sg_{:016x}", xxhash_rust::xxh3::xxh3_64(dir.to_string_lossy().as_bytes()));
    let pool = sqlx::PgPool::connect(&admin).await.expect("SLUICEGATE_TEST_STATE_PG must be reachable");
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&name)
        .fetch_one(&pool)
        .await
        .unwrap();
    if !exists {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let (base, _) = admin.rsplit_once('/').expect("an admin URL ends with /DATABASE");
    Some(format!("{base}/{name}"))
}

pub async fn open(project: &Path) -> Engine {
    let state = state_for(project.parent().unwrap()).await;
    Engine::open(project, EngineOptions { state, ..Default::default() }).await.unwrap()
}

pub fn reason() -> TriggerReason {
    TriggerReason { ui_tag: "Test".into(), ui_detail: "cargo test".into() }
}

/// Trigger and run sync `sync` to its end.
pub async fn run(engine: &Engine, sync: i64, full_sync: bool) -> RunRecord {
    let id = engine.trigger(&sluicegate::config::SyncRef::Id(sync), full_sync, &reason()).await.unwrap();
    engine.run(id, &no_progress).await.unwrap()
}
