//! SQLite: values by storage class, refined by the column's declared type where SQLite keeps
//! a richer value as text or integer (booleans, timestamps, JSON).
//!
//! SQLite itself stores a number in a `DECIMAL`/`NUMERIC` column as INTEGER or REAL (about 15
//! significant digits); an exact decimal with more digits must live in a TEXT column, and is
//! sent as the string it is.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::TryStreamExt;
use serde_json::Value;
use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{Column, Row, TypeInfo, ValueRef};

use super::render;
use super::{Phase, Sink, SourceCtx};
use crate::config::Relation;
use crate::error::{Error, Result};

pub(super) async fn connect(ctx: &SourceCtx<'_>, path: &std::path::Path) -> Result<SqlitePool> {
    if !path.exists() {
        return Err(Error::source_err(format!(
            "source `{}`: SQLite file {} does not exist; check `sources.{}.url` (relative paths are relative to the project file)",
            ctx.name,
            path.display(),
            ctx.name
        )));
    }
    let opts = SqliteConnectOptions::new().filename(path).read_only(true).busy_timeout(Duration::from_secs(30)).disable_statement_logging();
    SqlitePoolOptions::new().max_connections(2).connect_with(opts).await.map_err(|e| {
        Error::source_err(format!("source `{}`: cannot open SQLite file {}", ctx.name, path.display())).with_source(e)
    })
}

pub(super) async fn scan(ctx: &SourceCtx<'_>, pool: &SqlitePool, sql: String, columns: &[String], sink: &mut Sink<'_>) -> Result<()> {
    let declared = declared_types(pool, ctx.relation).await;
    let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(pool);
    while let Some(row) = rows.try_next().await.map_err(|e| ctx.query_error(Phase::Read, e))? {
        if !sink.push(values(ctx, &row, columns, &declared)?).await {
            return Ok(());
        }
    }
    Ok(())
}

/// The declared type of each column of a table, as written in its `CREATE TABLE` (sqlx only
/// reports the types it knows, so `JSON` would be lost). Empty for queries.
async fn declared_types(pool: &SqlitePool, relation: Option<&Relation>) -> HashMap<String, String> {
    let Some(Relation::Table(name)) = relation else { return HashMap::new() };
    let (schema, table) = match name.split_once('.') {
        Some((s, t)) => (s, t),
        None => ("main", name.as_str()),
    };
    sqlx::query_as::<_, (String, String)>("SELECT name, type FROM pragma_table_info(?1, ?2)")
        .bind(table)
        .bind(schema)
        .fetch_all(pool)
        .await
        .map(|rows| rows.into_iter().collect())
        .unwrap_or_default()
}

/// What the declared type (by SQLite's affinity-style substring rules) says about a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Declared {
    Bool,
    Timestamp,
    Json,
    Other,
}

fn declared(decl: &str) -> Declared {
    let d = decl.to_ascii_uppercase();
    if d.contains("BOOL") {
        Declared::Bool
    } else if d.contains("DATETIME") || d.contains("TIMESTAMP") {
        Declared::Timestamp
    } else if d.contains("JSON") {
        Declared::Json
    } else {
        Declared::Other
    }
}

fn values(ctx: &SourceCtx<'_>, row: &SqliteRow, columns: &[String], declared_types: &HashMap<String, String>) -> Result<Vec<Value>> {
    let mut out = Vec::with_capacity(columns.len());
    for (i, name) in columns.iter().enumerate() {
        let raw = row.try_get_raw(i).map_err(|e| ctx.query_error(Phase::Read, e))?;
        if raw.is_null() {
            out.push(Value::Null);
            continue;
        }
        let storage = raw.type_info().name().to_string();
        let decl_name = match declared_types.get(name) {
            Some(t) => t.clone(),
            None => row.columns()[i].type_info().name().to_string(),
        };
        let decl = declared(&decl_name);
        let bad = |e: sqlx::Error| ctx.column_error(name, &decl_name, &format!("cannot decode a {storage} value: {e}"));
        let v = match storage.as_str() {
            "INTEGER" | "BOOLEAN" | "INT8" => {
                let n: i64 = row.try_get_unchecked(i).map_err(bad)?;
                if decl == Declared::Bool { Value::Bool(n != 0) } else { Value::from(n) }
            }
            "REAL" => render::float64(row.try_get_unchecked(i).map_err(bad)?),
            "BLOB" => {
                let b: Vec<u8> = row.try_get_unchecked(i).map_err(bad)?;
                render::base64(&b)
            }
            _ => {
                let s: String = row.try_get_unchecked(i).map_err(bad)?;
                text_value(decl, s)
            }
        };
        out.push(v);
    }
    Ok(out)
}

/// Text in a column declared as a timestamp or JSON becomes that value when it is one; any
/// other text stays as it is.
fn text_value(decl: Declared, s: String) -> Value {
    match decl {
        Declared::Timestamp => match iso_utc(&s) {
            Some(t) => Value::String(t),
            None => Value::String(s),
        },
        Declared::Json => match serde_json::from_str::<Value>(&s) {
            Ok(v @ (Value::Object(_) | Value::Array(_))) => v,
            _ => Value::String(s),
        },
        _ => Value::String(s),
    }
}

/// SQLite's date-time text (`YYYY-MM-DD HH:MM[:SS[.fff]]`, `T` or space, optional `Z` or
/// `±HH:MM`) as ISO-8601 UTC; `None` when it is anything else.
fn iso_utc(s: &str) -> Option<String> {
    let fmt = time::macros::format_description!(
        version = 2,
        "[year]-[month]-[day][first [T][ ]][hour]:[minute][optional [:[second][optional [.[subsecond]]]]]"
    );
    let t = s.trim();
    let (body, offset_secs) = if let Some(b) = t.strip_suffix('Z').or_else(|| t.strip_suffix('z')) {
        (b, 0i64)
    } else if t.len() > 6 && matches!(t.as_bytes()[t.len() - 6], b'+' | b'-') && t.as_bytes()[t.len() - 3] == b':' {
        let (b, off) = t.split_at(t.len() - 6);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let h: i64 = off[1..3].parse().ok()?;
        let m: i64 = off[4..6].parse().ok()?;
        (b, sign * (h * 3600 + m * 60))
    } else {
        (t, 0)
    };
    let dt = time::PrimitiveDateTime::parse(body, fmt).ok()?;
    let utc = dt.assume_utc().unix_timestamp_nanos() / 1000 - i128::from(offset_secs) * 1_000_000;
    Some(render::timestamp_utc(i64::try_from(utc).ok()?))
}

/// Fuzzing entry (see `crate::fuzzing`): one text value read as the declared type `tag` picks
/// (`iso_utc` through the timestamp case).
#[doc(hidden)]
pub(crate) fn fuzz_text(tag: u8, s: String) -> Value {
    let decl = [Declared::Bool, Declared::Timestamp, Declared::Json, Declared::Other][usize::from(tag) % 4];
    text_value(decl, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_timestamps_become_iso_utc() {
        assert_eq!(iso_utc("2026-01-31 12:00:00").as_deref(), Some("2026-01-31T12:00:00Z"));
        assert_eq!(iso_utc("2026-01-31T12:00:00.250").as_deref(), Some("2026-01-31T12:00:00.25Z"));
        assert_eq!(iso_utc("2026-01-31 14:30+02:00").as_deref(), Some("2026-01-31T12:30:00Z"));
        assert_eq!(iso_utc("2026-01-31T12:00:00Z").as_deref(), Some("2026-01-31T12:00:00Z"));
        assert_eq!(iso_utc("last tuesday"), None);
        assert_eq!(text_value(Declared::Json, r#"{"a":[1,2.50]}"#.into()).to_string(), r#"{"a":[1,2.50]}"#);
        assert_eq!(text_value(Declared::Json, "plain".into()), Value::String("plain".into()));
    }
}
