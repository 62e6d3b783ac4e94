//! Sources: stream the rows of a table or query as JSON values, one row at a time.
//!
//! SQLite values are decoded by their storage class (INTEGER, REAL, TEXT, BLOB as base64;
//! INTEGER in a BOOLEAN column as true/false). Postgres rows are rendered by the server with
//! `json_build_array`, so numerics keep every digit and timestamps come out in ISO-8601 (the
//! session time zone is UTC).

pub mod dbt;

use std::time::Duration;

use tokio::sync::mpsc;

use base64::Engine as _;
use futures_util::TryStreamExt;
use serde_json::Value;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{Column, Executor, Row, Statement, TypeInfo, ValueRef};

use crate::config::{redact_url, Relation, SourceConfig, SourceKind};
use crate::diff::key::KeyOrder;
use crate::error::{Error, Result};

/// Rows travel from the source in chunks of this many.
pub const CHUNK_ROWS: usize = 1024;

/// A chunk of rows, or the error that ended the scan.
pub type Chunk = Result<Vec<Vec<Value>>>;

/// A column of a relation and its type as the database names it.
#[derive(Debug, Clone)]
pub struct ColumnInfo {
    pub name: String,
    pub type_name: String,
}

#[derive(Clone)]
pub enum Source {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Quote an identifier for SQL (`schema.table` → `"schema"."table"`).
pub fn quote_ident(name: &str) -> String {
    name.split('.').map(|part| format!("\"{}\"", part.replace('"', "\"\""))).collect::<Vec<_>>().join(".")
}

/// Resolve a `dbt_model` to the query of the relation dbt built for it; other relations as they are.
pub fn resolve(relation: &Relation, source: &SourceConfig) -> Result<Relation> {
    match relation {
        Relation::DbtModel(model) => Ok(Relation::Query(format!("SELECT * FROM {}", dbt::resolve(&source.dbt_manifest, model)?))),
        other => Ok(other.clone()),
    }
}

fn from_clause(relation: &Relation) -> String {
    match relation {
        Relation::Table(t) => quote_ident(t),
        // Resolved by `resolve` before any SQL is written; quoted as a table name otherwise.
        Relation::DbtModel(m) => quote_ident(m),
        Relation::Query(q) => {
            let q = q.trim().trim_end_matches(';').trim_end();
            format!("({q}) AS sluicegate_src")
        }
    }
}

impl Source {
    pub async fn connect(cfg: &SourceConfig) -> Result<Source> {
        match &cfg.kind {
            SourceKind::Sqlite { path } => {
                if !path.exists() {
                    return Err(Error::source_err(format!(
                        "source `{}`: SQLite file {} does not exist; check `sources.{}.url` (relative paths are relative to the project file)",
                        cfg.name,
                        path.display(),
                        cfg.name
                    )));
                }
                let opts = SqliteConnectOptions::new().filename(path).read_only(true).busy_timeout(Duration::from_secs(30));
                let pool = SqlitePoolOptions::new().max_connections(2).connect_with(opts).await.map_err(|e| {
                    Error::source_err(format!("source `{}`: cannot open SQLite file {}", cfg.name, path.display())).with_source(e)
                })?;
                Ok(Source::Sqlite(pool))
            }
            SourceKind::Postgres => {
                let pool = PgPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(Duration::from_secs(30))
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute("SET TIME ZONE 'UTC'").await?;
                            Ok(())
                        })
                    })
                    .connect(cfg.url.expose())
                    .await
                    .map_err(|e| {
                        Error::source_err(format!("source `{}`: cannot connect to {}", cfg.name, redact_url(cfg.url.expose())))
                            .with_source(e)
                    })?;
                Ok(Source::Postgres(pool))
            }
        }
    }

    /// The columns the relation has, in order, with their types.
    pub async fn columns(&self, relation: &Relation) -> Result<Vec<ColumnInfo>> {
        let sql = format!("SELECT * FROM {} LIMIT 0", from_clause(relation));
        let sql = || sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(sql.clone()));
        let cols = match self {
            Source::Sqlite(pool) => {
                let stmt = pool.prepare(sql()).await.map_err(describe_err(relation))?;
                stmt.columns().iter().map(|c| ColumnInfo { name: c.name().to_string(), type_name: c.type_info().name().to_string() }).collect()
            }
            Source::Postgres(pool) => {
                let stmt = pool.prepare(sql()).await.map_err(describe_err(relation))?;
                stmt.columns().iter().map(|c| ColumnInfo { name: c.name().to_string(), type_name: c.type_info().name().to_string() }).collect()
            }
        };
        Ok(cols)
    }

    /// How to order rows by `column` so that keys come byte-wise sorted (see
    /// [`crate::diff::key`]): the `ORDER BY` expression and the order it yields.
    pub fn order_by(&self, column: &ColumnInfo) -> (String, KeyOrder) {
        let q = quote_ident(&column.name);
        match self {
            // BINARY collation is memcmp; SQLite puts integers before text, as the key tags do.
            Source::Sqlite(_) => (format!("{q} COLLATE BINARY"), KeyOrder::Integer),
            Source::Postgres(_) => match column.type_name.to_ascii_uppercase().as_str() {
                "INT2" | "INT4" | "INT8" => (q, KeyOrder::Integer),
                "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => (format!("{q} COLLATE \"C\""), KeyOrder::Text),
                // A uuid's byte order is the order of its lower-case text.
                "UUID" => (q, KeyOrder::Text),
                _ => (format!("{q}::text COLLATE \"C\""), KeyOrder::Text),
            },
        }
    }

    /// Read `columns` of every row of `relation`, ordered by `order_by` when given, and send
    /// them in chunks to `tx`. Stops early when the receiver is gone.
    pub async fn scan(&self, relation: &Relation, columns: &[String], order_by: Option<&str>, tx: mpsc::Sender<Chunk>) {
        if let Err(e) = self.scan_inner(relation, columns, order_by, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    }

    async fn scan_inner(&self, relation: &Relation, columns: &[String], order_by: Option<&str>, tx: &mpsc::Sender<Chunk>) -> Result<()> {
        let list: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
        let order = order_by.map(|o| format!(" ORDER BY {o}")).unwrap_or_default();
        let mut chunk = Vec::with_capacity(CHUNK_ROWS);
        macro_rules! push {
            ($row:expr) => {{
                chunk.push($row);
                if chunk.len() == CHUNK_ROWS {
                    if tx.send(Ok(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_ROWS)))).await.is_err() {
                        return Ok(());
                    }
                }
            }};
        }
        match self {
            Source::Sqlite(pool) => {
                let sql = format!("SELECT {} FROM {}{order}", list.join(", "), from_clause(relation));
                let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(pool);
                while let Some(row) = rows.try_next().await.map_err(read_err(relation))? {
                    push!(sqlite_values(&row, columns)?);
                }
            }
            Source::Postgres(pool) => {
                let sql = format!("SELECT json_build_array({})::text FROM {}{order}", list.join(", "), from_clause(relation));
                let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(pool);
                while let Some(row) = rows.try_next().await.map_err(read_err(relation))? {
                    let text: &str = row.try_get(0).map_err(read_err(relation))?;
                    let values = match serde_json::from_str::<Value>(text) {
                        Ok(Value::Array(v)) => v,
                        _ => return Err(Error::source_err(format!("{}: Postgres returned a malformed row", describe(relation)))),
                    };
                    push!(values);
                }
            }
        }
        if !chunk.is_empty() {
            let _ = tx.send(Ok(chunk)).await;
        }
        Ok(())
    }
}

fn describe(relation: &Relation) -> String {
    match relation {
        Relation::Table(t) => format!("table {t:?}"),
        Relation::DbtModel(m) => format!("dbt model {m:?}"),
        Relation::Query(_) => "the query".to_string(),
    }
}

fn describe_err(relation: &Relation) -> impl FnOnce(sqlx::Error) -> Error + '_ {
    move |e| {
        let hint = match relation {
            Relation::Table(_) => "check that the table exists (has the dbt model been built?) and that the name is right",
            Relation::DbtModel(_) => "the model is in the dbt manifest but not in the warehouse: has it been built (`dbt run` / `dbt build`)?",
            Relation::Query(_) => "check that the query runs in your warehouse",
        };
        Error::source_err(format!("cannot read {}: {hint}", describe(relation))).with_source(e)
    }
}

fn read_err(relation: &Relation) -> impl Fn(sqlx::Error) -> Error + '_ {
    move |e| Error::source_err(format!("reading {} failed", describe(relation))).with_source(e)
}

fn sqlite_values(row: &SqliteRow, columns: &[String]) -> Result<Vec<Value>> {
    let mut out = Vec::with_capacity(columns.len());
    for (i, name) in columns.iter().enumerate() {
        let raw = row.try_get_raw(i).map_err(|e| Error::source_err(format!("column {name:?}: cannot read")).with_source(e))?;
        if raw.is_null() {
            out.push(Value::Null);
            continue;
        }
        let storage = raw.type_info().name().to_string();
        let declared = row.columns()[i].type_info().name().to_ascii_uppercase();
        let bad = |e: sqlx::Error| Error::source_err(format!("column {name:?}: cannot decode a {storage} value")).with_source(e);
        let v = match storage.as_str() {
            "INTEGER" | "BOOLEAN" | "INT8" => {
                let n: i64 = row.try_get_unchecked(i).map_err(bad)?;
                if declared.contains("BOOL") { Value::Bool(n != 0) } else { Value::from(n) }
            }
            "REAL" => {
                let f: f64 = row.try_get_unchecked(i).map_err(bad)?;
                match serde_json::Number::from_f64(f) {
                    Some(num) => Value::Number(num),
                    None => {
                        return Err(Error::source_err(format!(
                            "column {name:?}: value {f} cannot be represented in JSON; filter or convert it in the model"
                        )));
                    }
                }
            }
            "BLOB" => {
                let b: Vec<u8> = row.try_get_unchecked(i).map_err(bad)?;
                Value::String(base64::engine::general_purpose::STANDARD.encode(b))
            }
            _ => {
                let s: String = row.try_get_unchecked(i).map_err(bad)?;
                Value::String(s)
            }
        };
        out.push(v);
    }
    Ok(out)
}
