//! MySQL 8 and MariaDB: rows are read with a prepared statement (MySQL's binary protocol) and
//! each value is decoded from its raw bytes according to the column's wire type.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use futures_util::TryStreamExt;
use serde_json::Value;
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlRow, MySqlTypeInfo};
use sqlx::{Column, ConnectOptions, Connection, Executor, Row, Statement, Type, TypeInfo, ValueRef};

use super::render;
use super::{ColumnInfo, Phase, Sink, SourceCtx};
use crate::diff::key::KeyOrder;
use crate::error::Result;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

fn options(ctx: &SourceCtx<'_>) -> Result<MySqlConnectOptions> {
    // `mariadb://` is accepted as a synonym.
    let url = match ctx.url.strip_prefix("mariadb://") {
        Some(rest) => format!("mysql://{rest}"),
        None => ctx.url.to_string(),
    };
    let opts = MySqlConnectOptions::from_str(&url).map_err(|e| ctx.connect_error(e))?.disable_statement_logging();
    // Keep the server's SQL semantics for the user's queries (`||` stays OR); TIMESTAMP
    // values arrive in UTC; text arrives as utf8mb4.
    Ok(opts
        .pipes_as_concat(false)
        .timezone(Some("+00:00".to_string()))
        .charset("utf8mb4")
        .log_statements(tracing::log::LevelFilter::Debug))
}

/// Connect once directly (a refused connection or bad password is reported at once, with its
/// cause), then open the pool.
pub(super) async fn connect(ctx: &SourceCtx<'_>) -> Result<MySqlPool> {
    let opts = options(ctx)?;
    let probe = match tokio::time::timeout(CONNECT_TIMEOUT, opts.connect()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(ctx.connect_error(e)),
        Err(_) => return Err(ctx.connect_timeout(CONNECT_TIMEOUT)),
    };
    let _ = probe.close().await;
    Ok(MySqlPoolOptions::new().max_connections(2).acquire_timeout(CONNECT_TIMEOUT).connect_lazy_with(opts))
}

pub(super) fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// The column's type as we name it: sqlx's name, except that text with a binary collation
/// (`utf8mb4_bin`, MariaDB's JSON) is named as text, not as a BLOB.
fn type_name(ti: &MySqlTypeInfo) -> String {
    let name = ti.name();
    if is_text(ti) {
        let text = match name {
            "BINARY" => "CHAR",
            "VARBINARY" => "VARCHAR",
            "TINYBLOB" => "TINYTEXT",
            "BLOB" => "TEXT",
            "MEDIUMBLOB" => "MEDIUMTEXT",
            "LONGBLOB" => "LONGTEXT",
            other => other,
        };
        return text.to_string();
    }
    name.to_string()
}

/// Character data (any collation but `binary`), as opposed to bytes.
fn is_text(ti: &MySqlTypeInfo) -> bool {
    <str as Type<MySql>>::compatible(ti)
}

/// `ORDER BY` for a key column, so keys come in the byte order of what is sent for them.
pub(super) fn order_by(column: &ColumnInfo) -> std::result::Result<(String, KeyOrder), (String, KeyOrder)> {
    let q = quote(&column.name);
    let ty = column.type_name.to_ascii_uppercase();
    let bytes_of = |expr: String| (format!("CAST({expr} AS BINARY)"), KeyOrder::Text);
    let base = ty.trim_end_matches(" UNSIGNED");
    match base {
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "BOOLEAN" | "YEAR" => Ok((q, KeyOrder::Integer)),
        // The UTF-8 bytes of the text: binary order, no PAD SPACE, whatever the column's collation.
        "CHAR" | "VARCHAR" | "TINYTEXT" | "TEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET" => {
            Ok(bytes_of(format!("CONVERT({q} USING utf8mb4)")))
        }
        "DECIMAL" | "DATE" => Ok(bytes_of(format!("CAST({q} AS CHAR)"))),
        "DATETIME" | "TIMESTAMP" => Ok(bytes_of(format!(
            "CONCAT(TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM DATE_FORMAT({q}, '%Y-%m-%dT%H:%i:%s.%f'))), 'Z')"
        ))),
        _ => Err(bytes_of(format!("CAST({q} AS CHAR)"))),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decoder {
    Int { size: usize, unsigned: bool },
    Bool,
    Float,
    Double,
    Decimal,
    Text,
    Json,
    Bytes,
    /// BIT(M): an unsigned number (BIT(1) included: the wire type does not carry M).
    Bit,
    Date,
    DateTime,
    Time,
}

fn decoder(ti: &MySqlTypeInfo, json_text: bool) -> Option<Decoder> {
    let name = ti.name();
    let unsigned = name.ends_with(" UNSIGNED");
    let d = match name.trim_end_matches(" UNSIGNED") {
        "BOOLEAN" => Decoder::Bool,
        "TINYINT" => Decoder::Int { size: 1, unsigned },
        "SMALLINT" | "YEAR" => Decoder::Int { size: 2, unsigned: unsigned || name == "YEAR" },
        "MEDIUMINT" | "INT" => Decoder::Int { size: 4, unsigned },
        "BIGINT" => Decoder::Int { size: 8, unsigned },
        "FLOAT" => Decoder::Float,
        "DOUBLE" => Decoder::Double,
        "DECIMAL" => Decoder::Decimal,
        "JSON" => Decoder::Json,
        "DATE" => Decoder::Date,
        "DATETIME" | "TIMESTAMP" => Decoder::DateTime,
        "TIME" => Decoder::Time,
        "BIT" => Decoder::Bit,
        "CHAR" | "VARCHAR" | "TINYTEXT" | "TEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET" | "BINARY" | "VARBINARY"
        | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" => {
            if !is_text(ti) {
                Decoder::Bytes
            } else if json_text {
                Decoder::Json
            } else {
                Decoder::Text
            }
        }
        _ => return None,
    };
    Some(d)
}

/// MariaDB's JSON is LONGTEXT with a `json_valid(col)` check: find, for the table columns a
/// result reads, which carry that check, so they are sent as nested JSON too.
async fn mariadb_json_columns(pool: &MySqlPool, tables: &HashSet<String>) -> HashSet<(String, String)> {
    let mut found = HashSet::new();
    for table in tables {
        let (schema, name) = match table.split_once('.') {
            Some((s, n)) => (Some(s.to_string()), n.to_string()),
            None => (None, table.clone()),
        };
        let sql = "SELECT CONSTRAINT_NAME, CAST(CHECK_CLAUSE AS CHAR) FROM information_schema.CHECK_CONSTRAINTS \
                   WHERE CONSTRAINT_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?";
        // MySQL's CHECK_CONSTRAINTS has no TABLE_NAME (its JSON is a type of its own): no rows.
        let Ok(rows) = sqlx::query(sql).bind(schema).bind(&name).fetch_all(pool).await else { continue };
        for row in rows {
            let (Ok(constraint), Ok(clause)) = (row.try_get::<String, _>(0), row.try_get::<String, _>(1)) else { continue };
            let want = format!("json_valid({})", quote(&constraint));
            if clause.trim().eq_ignore_ascii_case(&want) {
                found.insert((table.clone(), constraint));
            }
        }
    }
    found
}

/// The columns of `SELECT * FROM from LIMIT 0`, typed.
pub(super) async fn columns(ctx: &SourceCtx<'_>, pool: &MySqlPool, from: &str) -> Result<Vec<ColumnInfo>> {
    let sql = format!("SELECT * FROM {from} LIMIT 0");
    let stmt = pool
        .prepare(sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(sql)))
        .await
        .map_err(|e| ctx.query_error(Phase::Prepare, e))?;
    let json = json_columns(pool, stmt.columns()).await;
    Ok(stmt
        .columns()
        .iter()
        .enumerate()
        .map(|(i, c)| ColumnInfo {
            name: c.name().to_string(),
            type_name: if json.contains(&i) { "JSON".to_string() } else { type_name(c.type_info()) },
        })
        .collect())
}

/// Indexes of result columns that are MariaDB JSON (LONGTEXT with a json_valid check).
async fn json_columns(pool: &MySqlPool, cols: &[sqlx::mysql::MySqlColumn]) -> HashSet<usize> {
    let mut wanted: Vec<(usize, String, String)> = Vec::new();
    for (i, c) in cols.iter().enumerate() {
        let ti = c.type_info();
        // Every TEXT size travels as the BLOB wire type; the JSON check settles it.
        if !(is_text(ti) && (ti.name().ends_with("BLOB") || ti.name().ends_with("TEXT"))) {
            continue;
        }
        if let sqlx::ColumnOrigin::Table(t) = c.origin() {
            wanted.push((i, t.table.to_string(), t.name.to_string()));
        }
    }
    if wanted.is_empty() {
        return HashSet::new();
    }
    let tables: HashSet<String> = wanted.iter().map(|w| w.1.clone()).collect();
    let json = mariadb_json_columns(pool, &tables).await;
    wanted.into_iter().filter(|(_, t, c)| json.contains(&(t.clone(), c.clone()))).map(|w| w.0).collect()
}

/// An error for the first of `columns` whose type has no decoder (the statement is prepared,
/// not run).
pub(super) async fn check_sendable(ctx: &SourceCtx<'_>, pool: &MySqlPool, from: &str, columns: &[String]) -> Result<()> {
    let list: Vec<String> = columns.iter().map(|c| quote(c)).collect();
    let sql = format!("SELECT {} FROM {from}", list.join(", "));
    let stmt = pool.prepare(sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(sql))).await.map_err(|e| ctx.query_error(Phase::Prepare, e))?;
    let json = json_columns(pool, stmt.columns()).await;
    for (i, c) in stmt.columns().iter().enumerate() {
        let ti = c.type_info();
        if decoder(ti, json.contains(&i)).is_none() {
            return Err(ctx.unsupported(c.name(), &type_name(ti), UNSUPPORTED_HINT));
        }
    }
    Ok(())
}

const UNSUPPORTED_HINT: &str = "convert it in a query, e.g. `SELECT ST_AsText({col}) AS {col} …` for spatial values";

pub(super) async fn scan(
    ctx: &SourceCtx<'_>,
    pool: &MySqlPool,
    from: &str,
    columns: &[String],
    order: &str,
    sink: &mut Sink<'_>,
) -> Result<()> {
    let list: Vec<String> = columns.iter().map(|c| quote(c)).collect();
    let sql = format!("SELECT {} FROM {from}{order}", list.join(", "));
    let stmt = pool
        .prepare(sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(sql.clone())))
        .await
        .map_err(|e| ctx.query_error(Phase::Prepare, e))?;
    let json = json_columns(pool, stmt.columns()).await;
    let mut decoders = Vec::with_capacity(columns.len());
    let mut names: HashMap<usize, String> = HashMap::new();
    for (i, c) in stmt.columns().iter().enumerate() {
        let ti = c.type_info();
        names.insert(i, type_name(ti));
        match decoder(ti, json.contains(&i)) {
            Some(d) => decoders.push(d),
            None => {
                return Err(ctx.unsupported(
                    c.name(),
                    &type_name(ti),
                    UNSUPPORTED_HINT,
                ));
            }
        }
    }
    drop(stmt);
    let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(pool);
    while let Some(row) = rows.try_next().await.map_err(|e| ctx.query_error(Phase::Read, e))? {
        let out = values(ctx, &row, columns, &decoders, &names)?;
        if !sink.push(out).await {
            return Ok(());
        }
    }
    Ok(())
}

fn values(ctx: &SourceCtx<'_>, row: &MySqlRow, columns: &[String], decoders: &[Decoder], names: &HashMap<usize, String>) -> Result<Vec<Value>> {
    let mut out = Vec::with_capacity(decoders.len());
    for (i, d) in decoders.iter().enumerate() {
        let raw = row.try_get_raw(i).map_err(|e| ctx.query_error(Phase::Read, e))?;
        if raw.is_null() {
            out.push(Value::Null);
            continue;
        }
        let bytes: &[u8] = row.try_get_unchecked(i).map_err(|e| ctx.query_error(Phase::Read, e))?;
        let v = decode(*d, bytes).map_err(|why| ctx.column_error(&columns[i], &names[&i], &why))?;
        out.push(v);
    }
    Ok(out)
}

fn le(b: &[u8], size: usize) -> std::result::Result<u64, String> {
    if b.len() < size {
        return Err(format!("expected {size} bytes, got {}", b.len()));
    }
    let mut buf = [0u8; 8];
    buf[..size].copy_from_slice(&b[..size]);
    Ok(u64::from_le_bytes(buf))
}

fn utf8(b: &[u8]) -> std::result::Result<&str, String> {
    std::str::from_utf8(b).map_err(|e| format!("not UTF-8: {e}"))
}

fn decode(d: Decoder, b: &[u8]) -> std::result::Result<Value, String> {
    Ok(match d {
        Decoder::Int { size, unsigned } => {
            let raw = le(b, size)?;
            if unsigned {
                Value::from(raw)
            } else {
                // Sign-extend from `size` bytes.
                let shift = 64 - 8 * size as u32;
                Value::from(((raw << shift) as i64) >> shift)
            }
        }
        Decoder::Bool => Value::Bool(le(b, 1)? != 0),
        Decoder::Float => render::float32(f32::from_bits(le(b, 4)? as u32)),
        Decoder::Double => render::float64(f64::from_bits(le(b, 8)?)),
        Decoder::Decimal => {
            let t = utf8(b)?;
            render::number_from_text(t).ok_or_else(|| format!("DECIMAL value {t:?} is not a number"))?
        }
        Decoder::Text => Value::String(utf8(b)?.to_string()),
        Decoder::Json => {
            let t = utf8(b)?;
            serde_json::from_str(t).map_err(|e| format!("invalid JSON ({e})"))?
        }
        Decoder::Bytes => render::base64(b),
        Decoder::Bit => {
            if b.len() > 8 {
                return Err(format!("BIT value of {} bytes", b.len()));
            }
            let n = b.iter().fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
            Value::from(n)
        }
        Decoder::Date => {
            let (y, m, d, ..) = datetime_fields(b)?;
            Value::String(render::date_fields(y, m, d))
        }
        Decoder::DateTime => {
            let (y, mo, d, h, mi, s, us) = datetime_fields(b)?;
            Value::String(render::timestamp_fields(y, mo, d, h, mi, s, us))
        }
        Decoder::Time => {
            // length, then: is_negative, days (u32), hours, minutes, seconds, [microseconds]
            let (len, rest) = b.split_first().ok_or("empty TIME value")?;
            if *len == 0 {
                return Ok(Value::String("00:00:00".into()));
            }
            if rest.len() < 8 {
                return Err(format!("TIME value of {} bytes", rest.len()));
            }
            let negative = rest[0] == 1;
            let days = le(&rest[1..5], 4)?;
            let micros = if rest.len() >= 12 { fraction(le(&rest[8..12], 4)? as u32)? } else { 0 };
            Value::String(render::clock_fields(
                negative,
                days * 24 + u64::from(rest[5]),
                u32::from(rest[6]),
                u32::from(rest[7]),
                micros,
            ))
        }
    })
}

/// A fractional second in microseconds, as the server sent it: at most 999,999.
fn fraction(micros: u32) -> std::result::Result<u32, String> {
    if micros > 999_999 {
        return Err(format!("a fractional second of {micros} microseconds (at most 999999)"));
    }
    Ok(micros)
}

/// Year, month, day, hour, minute, second, microsecond.
type Fields = (i64, u32, u32, u32, u32, u32, u32);

/// Fuzzing entry (see `crate::fuzzing`): one binary-protocol value decoded as the decoder `tag` picks.
#[doc(hidden)]
pub(crate) fn fuzz_decode(tag: u8, b: &[u8]) -> Option<Value> {
    let all = [
        Decoder::Int { size: 1, unsigned: false },
        Decoder::Int { size: 1, unsigned: true },
        Decoder::Int { size: 2, unsigned: false },
        Decoder::Int { size: 2, unsigned: true },
        Decoder::Int { size: 4, unsigned: false },
        Decoder::Int { size: 4, unsigned: true },
        Decoder::Int { size: 8, unsigned: false },
        Decoder::Int { size: 8, unsigned: true },
        Decoder::Bool,
        Decoder::Float,
        Decoder::Double,
        Decoder::Decimal,
        Decoder::Text,
        Decoder::Json,
        Decoder::Bytes,
        Decoder::Bit,
        Decoder::Date,
        Decoder::DateTime,
        Decoder::Time,
    ];
    decode(all[usize::from(tag) % all.len()], b).ok()
}

/// The binary protocol's DATE/DATETIME/TIMESTAMP: a length byte (0, 4, 7 or 11), then year
/// (u16), month, day, hour, minute, second (u8 each) and microseconds (u32).
fn datetime_fields(b: &[u8]) -> std::result::Result<Fields, String> {
    let (len, rest) = b.split_first().ok_or("empty date value")?;
    let len = usize::from(*len);
    if rest.len() < len {
        return Err(format!("date value truncated ({} of {len} bytes)", rest.len()));
    }
    let at = |i: usize| if i < len { u32::from(rest[i]) } else { 0 };
    let year = if len >= 2 { i64::from(u16::from_le_bytes([rest[0], rest[1]])) } else { 0 };
    let micros = if len >= 11 { u32::from_le_bytes([rest[7], rest[8], rest[9], rest[10]]) } else { 0 };
    Ok((year, at(2), at(3), at(4), at(5), at(6), fraction(micros)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_protocol_values() {
        assert_eq!(decode(Decoder::Int { size: 1, unsigned: false }, &[0xff]).unwrap(), Value::from(-1));
        assert_eq!(decode(Decoder::Int { size: 8, unsigned: true }, &u64::MAX.to_le_bytes()).unwrap().to_string(), "18446744073709551615");
        assert_eq!(decode(Decoder::Int { size: 4, unsigned: false }, &(-5i32).to_le_bytes()).unwrap(), Value::from(-5));
        assert_eq!(decode(Decoder::Decimal, b"-0.500").unwrap().to_string(), "-0.500");
        let dt = [11u8, 0xea, 0x07, 1, 31, 12, 0, 0, 0x20, 0xa1, 0x07, 0];
        assert_eq!(decode(Decoder::DateTime, &dt).unwrap(), Value::String("2026-01-31T12:00:00.5Z".into()));
        assert_eq!(decode(Decoder::DateTime, &[4, 0xea, 0x07, 1, 31]).unwrap(), Value::String("2026-01-31T00:00:00Z".into()));
        assert_eq!(decode(Decoder::Date, &[0]).unwrap(), Value::String("0000-00-00".into()));
        let t = [8u8, 1, 1, 0, 0, 0, 2, 3, 4];
        assert_eq!(decode(Decoder::Time, &t).unwrap(), Value::String("-26:03:04".into()));
        assert_eq!(decode(Decoder::Bit, &[0x01, 0x02]).unwrap(), Value::from(258));
    }

    #[test]
    fn fractions_past_a_second_are_errors_not_panics() {
        // Found by the source_values fuzz target: 1,000,000,000 microseconds.
        let dt = [11u8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0xca, 0x9a, 0x3b];
        let err = decode(Decoder::DateTime, &dt).unwrap_err();
        assert!(err.contains("1000000000 microseconds"), "{err}");
        let t = [12u8, 0, 0, 0, 0, 0, 1, 2, 3, 0x40, 0x42, 0x0f, 0x00];
        assert!(decode(Decoder::Time, &t).unwrap_err().contains("1000000 microseconds"));
        let ok = [12u8, 0, 0, 0, 0, 0, 1, 2, 3, 0x3f, 0x42, 0x0f, 0x00];
        assert_eq!(decode(Decoder::Time, &ok).unwrap(), Value::String("01:02:03.999999".into()));
    }
}
