//! Sources: stream the rows of a table or query as JSON values, one row at a time.
//!
//! SQLite values are decoded by their storage class (INTEGER, REAL, TEXT, BLOB as base64;
//! INTEGER in a BOOLEAN column as true/false). Postgres rows are rendered by the server with
//! `json_build_array`, so numerics keep every digit and timestamps come out in ISO-8601 (the
//! session time zone is UTC).

use std::time::Duration;

use base64::Engine as _;
use futures_util::TryStreamExt;
use serde_json::Value;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{Column, Executor, Row, Statement, TypeInfo, ValueRef};

use crate::config::{redact_url, Relation, SourceConfig, SourceKind};
use crate::error::{Error, Result};

pub enum Source {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Quote an identifier for SQL (`schema.table` → `"schema"."table"`).
pub fn quote_ident(name: &str) -> String {
    name.split('.').map(|part| format!("\"{}\"", part.replace('"', "\"\""))).collect::<Vec<_>>().join(".")
}

fn from_clause(relation: &Relation) -> String {
    match relation {
        Relation::Table(t) => quote_ident(t),
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

    /// The columns the relation has, in order.
    pub async fn columns(&self, relation: &Relation) -> Result<Vec<String>> {
        let sql = format!("SELECT * FROM {} LIMIT 0", from_clause(relation));
        let names = match self {
            Source::Sqlite(pool) => {
                let stmt = pool.prepare(sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(sql))).await.map_err(describe_err(relation))?;
                stmt.columns().iter().map(|c| c.name().to_string()).collect()
            }
            Source::Postgres(pool) => {
                let stmt = pool.prepare(sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(sql))).await.map_err(describe_err(relation))?;
                stmt.columns().iter().map(|c| c.name().to_string()).collect()
            }
        };
        Ok(names)
    }

    /// Stream `columns` of every row of `relation` into `sink`, in order. Returns the row count.
    pub async fn scan(
        &self,
        relation: &Relation,
        columns: &[String],
        sink: &mut (dyn FnMut(Vec<Value>) -> Result<()> + Send),
    ) -> Result<u64> {
        let mut n = 0u64;
        match self {
            Source::Sqlite(pool) => {
                let list: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
                let sql = format!("SELECT {} FROM {}", list.join(", "), from_clause(relation));
                let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(pool);
                while let Some(row) = rows.try_next().await.map_err(read_err(relation))? {
                    sink(sqlite_values(&row, columns)?)?;
                    n += 1;
                }
            }
            Source::Postgres(pool) => {
                let list: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
                let sql = format!("SELECT json_build_array({})::text FROM {}", list.join(", "), from_clause(relation));
                let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(pool);
                while let Some(row) = rows.try_next().await.map_err(read_err(relation))? {
                    let text: String = row.try_get(0).map_err(read_err(relation))?;
                    let values = match serde_json::from_str::<Value>(&text) {
                        Ok(Value::Array(v)) => v,
                        _ => return Err(Error::source_err(format!("row {} of {}: Postgres returned malformed JSON", n + 1, describe(relation)))),
                    };
                    sink(values)?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}

fn describe(relation: &Relation) -> String {
    match relation {
        Relation::Table(t) => format!("table {t:?}"),
        Relation::Query(_) => "the query".to_string(),
    }
}

fn describe_err(relation: &Relation) -> impl FnOnce(sqlx::Error) -> Error + '_ {
    move |e| {
        let hint = match relation {
            Relation::Table(_) => "check that the table exists (has the dbt model been built?) and that the name is right",
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
