//! PostgreSQL (and Redshift): rows are read with an ordinary prepared query and every value is
//! decoded from Postgres's binary format into JSON here (see the module docs of
//! [`crate::source`] for the type table, the measurements behind this choice and Redshift).

use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgTypeInfo, PgTypeKind, PgValueFormat};
use sqlx::{Column, ConnectOptions, Connection, Executor, Row, Statement, TypeInfo, ValueRef};

use super::render;
use super::{ColumnInfo, Phase, Sink, SourceCtx};
use crate::diff::key::KeyOrder;
use crate::error::{Error, Result};

pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Session settings every connection gets: UTC for anything rendered as text on the server
/// (casts, `ORDER BY` expressions, a user's `to_char`), ISO dates.
const SESSION_SQL: &str = "SET TIME ZONE 'UTC'; SET DateStyle = 'ISO, YMD'";

/// Connect once directly (so that a refused connection or bad password is reported at once,
/// with its cause, instead of being retried until a pool timeout), then open the pool.
/// What the server understands, from its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Server {
    /// `expr COLLATE "C"` (PostgreSQL 9.1+). Redshift reports 8.0.2 and has no COLLATE clause:
    /// its default (case-sensitive) collation orders text by its bytes.
    pub collate: bool,
}

pub(super) async fn connect(ctx: &SourceCtx<'_>) -> Result<(PgPool, Server)> {
    let opts = PgConnectOptions::from_str(ctx.url).map_err(|e| ctx.connect_error(e))?.disable_statement_logging();
    let opts = opts.application_name("sluicegate").log_statements(tracing::log::LevelFilter::Debug);
    let mut probe = match tokio::time::timeout(CONNECT_TIMEOUT, opts.connect()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(ctx.connect_error(e)),
        Err(_) => return Err(ctx.connect_timeout(CONNECT_TIMEOUT)),
    };
    probe.execute(SESSION_SQL).await.map_err(|e| ctx.connect_error(e))?;
    let server = Server { collate: probe.server_version_num().is_none_or(|v| v >= 90_100) };
    let _ = probe.close().await;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(CONNECT_TIMEOUT)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute(SESSION_SQL).await?;
                Ok(())
            })
        })
        .connect_lazy_with(opts);
    Ok((pool, server))
}

pub(super) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `ORDER BY` for a key column: the database must return keys in the byte order of the text
/// (or number) this module sends for them. `Err` names the types that cannot key a sync.
pub(super) fn order_by(column: &ColumnInfo, server: Server) -> std::result::Result<(String, KeyOrder), (String, KeyOrder)> {
    let q = quote(&column.name);
    let text = |expr: String| {
        if server.collate { (format!("{expr} COLLATE \"C\""), KeyOrder::Text) } else { (expr, KeyOrder::Text) }
    };
    let ty = column.type_name.to_ascii_uppercase();
    match ty.as_str() {
        "INT2" | "INT4" | "INT8" => Ok((q, KeyOrder::Integer)),
        "TEXT" | "VARCHAR" | "NAME" => Ok(text(q)),
        // bpchar compares without its padding, but is sent padded; `format` keeps the padding.
        "CHAR" if server.collate => Ok(text(format!("format('%s', {q})"))),
        "CHAR" => Ok(text(q)),
        // A uuid's byte order is the order of its lower-case text.
        "UUID" => Ok((q, KeyOrder::Text)),
        // Sent as the same digits `numeric::text` prints; ISO `date::text` is YYYY-MM-DD.
        "NUMERIC" | "DATE" | "BOOL" | "OID" | "TIME" | "\"CHAR\"" => Ok(text(format!("{q}::text"))),
        "TIMESTAMP" | "TIMESTAMPTZ" => Ok(text(format!(
            "(rtrim(rtrim(to_char({q}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US'), '0'), '.') || 'Z')"
        ))),
        "FLOAT4" | "FLOAT8" | "JSON" | "JSONB" | "BYTEA" | "TIMETZ" => Err(text(format!("{q}::text"))),
        t if t.ends_with("[]") => Err(text(format!("{q}::text"))),
        // Enums, domains, citext and other text-like types: ordered by their text, which is
        // what is sent (an enum would otherwise sort by its declaration order).
        _ => Ok(text(format!("{q}::text"))),
    }
}

/// How one column's values are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scalar {
    Bool,
    Int2,
    Int4,
    Int8,
    Oid,
    Float4,
    Float8,
    Numeric,
    Text,
    Json,
    Jsonb,
    Uuid,
    Bytea,
    Date,
    Time,
    TimeTz,
    Timestamp,
    TimestampTz,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decoder {
    Scalar(Scalar),
    Array(Scalar),
}

/// What to do with a column of a given type.
enum Plan {
    Decode(Decoder),
    /// Select `col::text` and send that (network addresses, xml, bit strings).
    CastText,
    Unsupported,
}

mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const XML: u32 = 142;
    pub const CIDR: u32 = 650;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const UNKNOWN: u32 = 705;
    pub const MACADDR8: u32 = 774;
    pub const MACADDR: u32 = 829;
    pub const INET: u32 = 869;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const TIMETZ: u32 = 1266;
    pub const BIT: u32 = 1560;
    pub const VARBIT: u32 = 1562;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

fn scalar(ti: &PgTypeInfo) -> Option<Scalar> {
    match ti.kind() {
        PgTypeKind::Enum(_) => Some(Scalar::Text),
        PgTypeKind::Domain(base) => scalar(base),
        PgTypeKind::Simple => {
            let s = match ti.oid()?.0 {
                oid::BOOL => Scalar::Bool,
                oid::INT2 => Scalar::Int2,
                oid::INT4 => Scalar::Int4,
                oid::INT8 => Scalar::Int8,
                oid::OID => Scalar::Oid,
                oid::FLOAT4 => Scalar::Float4,
                oid::FLOAT8 => Scalar::Float8,
                oid::NUMERIC => Scalar::Numeric,
                oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::CHAR | oid::UNKNOWN => Scalar::Text,
                oid::JSON => Scalar::Json,
                oid::JSONB => Scalar::Jsonb,
                oid::UUID => Scalar::Uuid,
                oid::BYTEA => Scalar::Bytea,
                oid::DATE => Scalar::Date,
                oid::TIME => Scalar::Time,
                oid::TIMETZ => Scalar::TimeTz,
                oid::TIMESTAMP => Scalar::Timestamp,
                oid::TIMESTAMPTZ => Scalar::TimestampTz,
                // The citext extension's binary form is its text.
                _ if ti.name().eq_ignore_ascii_case("citext") => Scalar::Text,
                _ => return None,
            };
            Some(s)
        }
        _ => None,
    }
}

fn plan(ti: &PgTypeInfo) -> Plan {
    if let Some(s) = scalar(ti) {
        return Plan::Decode(Decoder::Scalar(s));
    }
    let base = match ti.kind() {
        PgTypeKind::Domain(base) => base,
        _ => ti,
    };
    if let PgTypeKind::Array(elem) = base.kind() {
        return match scalar(elem) {
            Some(s) => Plan::Decode(Decoder::Array(s)),
            None => Plan::Unsupported,
        };
    }
    match base.oid().map(|o| o.0) {
        Some(oid::INET | oid::CIDR | oid::MACADDR | oid::MACADDR8 | oid::XML | oid::BIT | oid::VARBIT) => Plan::CastText,
        _ => Plan::Unsupported,
    }
}

/// An error for the first of `columns` that [`plan`] cannot send (the statement is prepared,
/// not run).
pub(super) async fn check_sendable(ctx: &SourceCtx<'_>, pool: &PgPool, from: &str, columns: &[String]) -> Result<()> {
    let list: Vec<String> = columns.iter().map(|c| quote(c)).collect();
    let probe = format!("SELECT {} FROM {from}", list.join(", "));
    let stmt = pool
        .prepare(sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(probe)))
        .await
        .map_err(|e| ctx.query_error(Phase::Prepare, e))?;
    for col in stmt.columns() {
        let ti = col.type_info();
        if let Plan::Unsupported = plan(ti) {
            return Err(ctx.unsupported(col.name(), ti.name(), unsupported_hint(ti)));
        }
    }
    Ok(())
}

/// Read `columns` of `from` ordered by `order`, decoding each value.
///
/// PostgreSQL streams the result as `COPY (SELECT …) TO STDOUT (FORMAT binary)`: the same
/// binary values as a query's, without a protocol message and a row object per row (the
/// no-change re-sync of a large table is bound by this read). Redshift has no `COPY TO
/// STDOUT`; it is read with a query.
pub(super) async fn scan(
    ctx: &SourceCtx<'_>,
    pool: &PgPool,
    server: Server,
    from: &str,
    columns: &[String],
    order: &str,
    sink: &mut Sink<'_>,
) -> Result<()> {
    let list: Vec<String> = columns.iter().map(|c| quote(c)).collect();
    let probe = format!("SELECT {} FROM {from}{order}", list.join(", "));
    // One connection for both statements: the first resolves (and caches) the types of the
    // result, which the second then finds on the same connection.
    let mut conn = pool.acquire().await.map_err(|e| ctx.query_error(Phase::Prepare, e))?;
    let stmt = conn
        .prepare(sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(probe.clone())))
        .await
        .map_err(|e| ctx.query_error(Phase::Prepare, e))?;
    let mut decoders = Vec::with_capacity(columns.len());
    let mut select = Vec::with_capacity(columns.len());
    let mut type_names = Vec::with_capacity(columns.len());
    for (col, q) in stmt.columns().iter().zip(list) {
        let ti = col.type_info();
        type_names.push(ti.name().to_string());
        match plan(ti) {
            Plan::Decode(d) => {
                decoders.push(d);
                select.push(q);
            }
            Plan::CastText => {
                decoders.push(Decoder::Scalar(Scalar::Text));
                select.push(format!("{q}::text"));
            }
            Plan::Unsupported => return Err(ctx.unsupported(col.name(), ti.name(), unsupported_hint(ti))),
        }
    }
    drop(stmt);
    let sql = format!("SELECT {} FROM {from}{order}", select.join(", "));
    if server.collate {
        let copy = format!("COPY ({sql}) TO STDOUT (FORMAT binary)");
        let mut stream = conn.copy_out_raw(&copy).await.map_err(|e| ctx.query_error(Phase::Read, e))?;
        let mut parser = CopyParser::new(columns.len());
        let mut fields: Vec<Option<std::ops::Range<usize>>> = Vec::with_capacity(columns.len());
        let codec = Arc::new(RawCodec { decoders, columns: columns.to_vec(), type_names, prefix: ctx.prefix() });
        while let Some(chunk) = stream.try_next().await.map_err(|e| ctx.query_error(Phase::Read, e))? {
            parser.feed(&chunk);
            loop {
                let tuple = parser.next_tuple(&mut fields).map_err(|why| {
                    Error::source_err(format!("{}: reading the COPY stream of {from}: {why}", ctx.prefix()))
                })?;
                let Some(data) = tuple else { break };
                let more = sink.push_raw(&codec, data).await;
                parser.consume();
                if !more {
                    return Ok(());
                }
            }
        }
        return parser.finish().map_err(|why| Error::source_err(format!("{}: reading the COPY stream of {from}: {why}", ctx.prefix())));
    }
    // A named (cached) statement: with an unnamed one, sqlx 0.9 loses it when it must look up
    // a custom type (enum, domain) mid-query ("unnamed prepared statement does not exist").
    let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(&mut *conn);
    let n = columns.len();
    while let Some(row) = rows.try_next().await.map_err(|e| ctx.query_error(Phase::Read, e))? {
        let mut out = Vec::with_capacity(n);
        for (i, d) in decoders.iter().enumerate() {
            let raw = row.try_get_raw(i).map_err(|e| ctx.query_error(Phase::Read, e))?;
            if raw.is_null() {
                out.push(Value::Null);
                continue;
            }
            if raw.format() != PgValueFormat::Binary {
                return Err(ctx.column_error(&columns[i], raw.type_info().name(), "the server sent text where binary was asked for"));
            }
            let bytes = raw.as_bytes().map_err(|e| Error::source_err(e.to_string()))?;
            let v = decode(*d, bytes).map_err(|why| ctx.column_error(&columns[i], raw.type_info().name(), &why))?;
            out.push(v);
        }
        if !sink.push(out).await {
            return Ok(());
        }
    }
    Ok(())
}

/// Decodes the binary tuples of one scan (a field count, then per field a length, -1 for
/// NULL, and the value's binary form), field by field, on demand.
#[derive(Debug)]
pub struct RawCodec {
    decoders: Vec<Decoder>,
    columns: Vec<String>,
    type_names: Vec<String>,
    /// `source `x` (postgres)`, for errors.
    prefix: String,
}

impl RawCodec {
    pub fn width(&self) -> usize {
        self.decoders.len()
    }

    /// Each field's bytes (`None`: NULL) into `out`, which is cleared first. The tuple was
    /// checked when it was read, so this cannot run past its end.
    pub fn split<'t>(&self, tuple: &'t [u8], out: &mut Vec<Option<&'t [u8]>>) {
        out.clear();
        let mut at = 2;
        for _ in 0..self.decoders.len() {
            let len = i32::from_be_bytes([tuple[at], tuple[at + 1], tuple[at + 2], tuple[at + 3]]);
            at += 4;
            if len < 0 {
                out.push(None);
            } else {
                out.push(Some(&tuple[at..at + len as usize]));
                at += len as usize;
            }
        }
    }

    /// Each field's (start, length) in the tuple into `out` (length -1: NULL).
    pub fn offsets(&self, tuple: &[u8], out: &mut Vec<(usize, i32)>) {
        out.clear();
        let mut at = 2;
        for _ in 0..self.decoders.len() {
            let len = i32::from_be_bytes([tuple[at], tuple[at + 1], tuple[at + 2], tuple[at + 3]]);
            at += 4;
            out.push((at, len));
            if len > 0 {
                at += len as usize;
            }
        }
    }

    /// A stable byte naming how column `i` is decoded (its binary format), for fingerprints.
    pub fn format_tag(&self, i: usize) -> u8 {
        let s = |s: Scalar| s as u8;
        match self.decoders[i] {
            Decoder::Scalar(x) => s(x),
            Decoder::Array(x) => 0x80 | s(x),
        }
    }

    /// Column `i` of a tuple's fields as JSON.
    pub fn decode_field(&self, fields: &[Option<&[u8]>], i: usize) -> Result<Value> {
        match fields[i] {
            None => Ok(Value::Null),
            Some(b) => decode(self.decoders[i], b).map_err(|why| {
                Error::source_err(format!("{}: column `{}` ({}): {why}", self.prefix, self.columns[i], self.type_names[i]))
            }),
        }
    }

    /// A whole tuple as JSON values.
    pub fn decode(&self, tuple: &[u8]) -> Result<Vec<Value>> {
        let mut fields = Vec::with_capacity(self.decoders.len());
        self.split(tuple, &mut fields);
        (0..fields.len()).map(|i| self.decode_field(&fields, i)).collect()
    }
}

/// Splits PostgreSQL's binary COPY stream (a signature and header, then per tuple a field count
/// and per field a length, -1 for NULL, and the value's binary form; a count of -1 ends it)
/// into tuples, whatever the chunking of the stream.
struct CopyParser {
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out.
    pos: usize,
    /// End of the tuple last returned by `next_tuple`.
    pending: usize,
    header_done: bool,
    ended: bool,
    columns: usize,
}

const COPY_SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

impl CopyParser {
    fn new(columns: usize) -> Self {
        CopyParser { buf: Vec::with_capacity(1 << 16), pos: 0, pending: 0, header_done: false, ended: false, columns }
    }

    fn feed(&mut self, chunk: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > (1 << 16) {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// Mark the tuple last returned as used.
    fn consume(&mut self) {
        self.pos = self.pending;
    }

    /// The next complete tuple's bytes with each field's range in them (`None`: NULL), or
    /// `None` when more input is needed (or the stream ended).
    fn next_tuple(&mut self, fields: &mut Vec<Option<std::ops::Range<usize>>>) -> std::result::Result<Option<&[u8]>, String> {
        let b = &self.buf[self.pos..];
        let mut at = 0usize;
        if !self.header_done {
            if b.len() < 19 {
                return Ok(None);
            }
            if &b[..11] != COPY_SIGNATURE {
                return Err("not a binary COPY stream (bad signature)".into());
            }
            let ext = u32::from_be_bytes([b[15], b[16], b[17], b[18]]) as usize;
            if b.len() < 19 + ext {
                return Ok(None);
            }
            at = 19 + ext;
            self.header_done = true;
            self.pos += at;
            return self.next_tuple(fields);
        }
        if self.ended {
            return Ok(None);
        }
        if b.len() < 2 {
            return Ok(None);
        }
        let count = i16::from_be_bytes([b[0], b[1]]);
        at += 2;
        if count == -1 {
            self.ended = true;
            self.pos += 2;
            self.pending = self.pos;
            return Ok(None);
        }
        if count as usize != self.columns {
            return Err(format!("a tuple has {count} fields, {} were selected", self.columns));
        }
        fields.clear();
        for _ in 0..count {
            if b.len() < at + 4 {
                return Ok(None);
            }
            let len = i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            at += 4;
            if len < 0 {
                fields.push(None);
                continue;
            }
            let len = len as usize;
            if b.len() < at + len {
                return Ok(None);
            }
            fields.push(Some(at..at + len));
            at += len;
        }
        self.pending = self.pos + at;
        Ok(Some(&self.buf[self.pos..self.pos + at]))
    }

    /// The stream is over: it must have ended with the trailer, with nothing after it.
    fn finish(&self) -> std::result::Result<(), String> {
        if !self.ended {
            return Err("the stream stopped in the middle of a tuple".into());
        }
        Ok(())
    }
}

fn unsupported_hint(ti: &PgTypeInfo) -> &'static str {
    match ti.kind() {
        PgTypeKind::Range(_) => "ranges have no JSON form; select their bounds (`lower({col})`, `upper({col})`) in a query",
        PgTypeKind::Composite(_) => "select the fields of the composite value as columns in a query (`({col}).field`), or `to_jsonb({col})`",
        PgTypeKind::Array(_) => "convert the array in a query, e.g. `{col}::text[]` or `to_jsonb({col})`",
        _ if ti.name().eq_ignore_ascii_case("interval") => {
            "convert it in a query, e.g. `SELECT extract(epoch FROM {col}) AS {col} …` (seconds) or `{col}::text`"
        }
        _ => "convert it in a query, e.g. `SELECT {col}::text AS {col} …`",
    }
}

/// Big-endian readers over a value's bytes, failing (not panicking) on short input.
struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        if self.b.len() < n {
            return Err(format!("value truncated: wanted {n} more bytes, {} left", self.b.len()));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }
    fn i16(&mut self) -> std::result::Result<i16, String> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().unwrap_or_default()))
    }
    fn u16(&mut self) -> std::result::Result<u16, String> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().unwrap_or_default()))
    }
    fn i32(&mut self) -> std::result::Result<i32, String> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }
    fn i64(&mut self) -> std::result::Result<i64, String> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().unwrap_or_default()))
    }
}

fn fixed<const N: usize>(b: &[u8]) -> std::result::Result<[u8; N], String> {
    b.try_into().map_err(|_| format!("expected {N} bytes, got {}", b.len()))
}

fn text(b: &[u8]) -> std::result::Result<Value, String> {
    std::str::from_utf8(b).map(|s| Value::String(s.to_string())).map_err(|e| format!("not UTF-8: {e}"))
}

fn json(b: &[u8]) -> std::result::Result<Value, String> {
    serde_json::from_slice(b).map_err(|e| format!("invalid JSON from the server: {e}"))
}

fn decode(d: Decoder, b: &[u8]) -> std::result::Result<Value, String> {
    match d {
        Decoder::Scalar(s) => decode_scalar(s, b),
        Decoder::Array(s) => decode_array(s, b),
    }
}

fn decode_scalar(s: Scalar, b: &[u8]) -> std::result::Result<Value, String> {
    Ok(match s {
        Scalar::Bool => Value::Bool(fixed::<1>(b)?[0] != 0),
        Scalar::Int2 => Value::from(i16::from_be_bytes(fixed(b)?)),
        Scalar::Int4 => Value::from(i32::from_be_bytes(fixed(b)?)),
        Scalar::Int8 => Value::from(i64::from_be_bytes(fixed(b)?)),
        Scalar::Oid => Value::from(u32::from_be_bytes(fixed(b)?)),
        Scalar::Float4 => render::float32(f32::from_be_bytes(fixed(b)?)),
        Scalar::Float8 => render::float64(f64::from_be_bytes(fixed(b)?)),
        Scalar::Numeric => numeric(b)?,
        Scalar::Text => text(b)?,
        Scalar::Json => json(b)?,
        Scalar::Jsonb => match b.split_first() {
            Some((1, rest)) => json(rest)?,
            Some((v, _)) => return Err(format!("unknown jsonb format version {v}")),
            None => return Err("empty jsonb value".into()),
        },
        Scalar::Uuid => {
            let u = fixed::<16>(b)?;
            let mut s = String::with_capacity(36);
            for (i, byte) in u.iter().enumerate() {
                if matches!(i, 4 | 6 | 8 | 10) {
                    s.push('-');
                }
                let _ = write!(s, "{byte:02x}");
            }
            Value::String(s)
        }
        Scalar::Bytea => render::base64(b),
        Scalar::Date => match i32::from_be_bytes(fixed(b)?) {
            i32::MAX => Value::String("infinity".into()),
            i32::MIN => Value::String("-infinity".into()),
            d => Value::String(render::date(i64::from(d) + render::PG_EPOCH_DAYS)),
        },
        Scalar::Time => Value::String(render::time_of_day(i64::from_be_bytes(fixed(b)?))),
        Scalar::TimeTz => {
            let mut r = Reader { b };
            let micros = r.i64()?;
            // Seconds *west* of UTC, as Postgres stores it.
            let west = r.i32()?;
            let mut s = render::time_of_day(micros);
            let east = -i64::from(west);
            let _ = write!(s, "{}{:02}:{:02}", if east < 0 { '-' } else { '+' }, east.abs() / 3600, east.abs() / 60 % 60);
            Value::String(s)
        }
        Scalar::Timestamp | Scalar::TimestampTz => match i64::from_be_bytes(fixed(b)?) {
            i64::MAX => Value::String("infinity".into()),
            i64::MIN => Value::String("-infinity".into()),
            t => {
                let unix = t
                    .checked_add(render::PG_EPOCH_DAYS * render::MICROS_PER_DAY)
                    .ok_or_else(|| format!("timestamp {t} out of range"))?;
                Value::String(render::timestamp_utc(unix))
            }
        },
    })
}

/// Postgres's binary numeric: digit groups of base 10000 with a weight (the power of 10000 of
/// the first group) and a display scale, rendered exactly as `numeric::text` does.
fn numeric(b: &[u8]) -> std::result::Result<Value, String> {
    let mut r = Reader { b };
    let ndigits = r.i16()?.max(0) as usize;
    let weight = i64::from(r.i16()?);
    let sign = r.u16()?;
    let dscale = usize::from(r.u16()?);
    let mut digits = Vec::with_capacity(ndigits);
    for _ in 0..ndigits {
        digits.push(r.i16()?);
    }
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Ok(Value::String("NaN".into())),
        0xD000 => return Ok(Value::String("Infinity".into())),
        0xF000 => return Ok(Value::String("-Infinity".into())),
        other => return Err(format!("unknown numeric sign {other:#x}")),
    }
    let group = |k: i64| if k >= 0 && (k as usize) < digits.len() { digits[k as usize] } else { 0 };
    let mut s = String::with_capacity(ndigits * 4 + dscale + 3);
    if sign == 0x4000 {
        s.push('-');
    }
    let digits4 = |s: &mut String, g: i16, width: usize| {
        let g = g.clamp(0, 9999) as u16;
        let all = [b'0' + (g / 1000) as u8, b'0' + (g / 100 % 10) as u8, b'0' + (g / 10 % 10) as u8, b'0' + (g % 10) as u8];
        let skip = if width == 4 { 0 } else { all.iter().take(3).take_while(|d| **d == b'0').count() };
        s.push_str(std::str::from_utf8(&all[skip..]).unwrap_or("0"));
    };
    if weight < 0 {
        s.push('0');
    } else {
        for k in 0..=weight {
            // The first group without leading zeros, the others as four digits.
            digits4(&mut s, group(k), if k == 0 { 1 } else { 4 });
        }
    }
    if dscale > 0 {
        s.push('.');
        let start = s.len();
        let mut k = weight + 1;
        while s.len() - start < dscale {
            digits4(&mut s, group(k), 4);
            k += 1;
        }
        s.truncate(start + dscale);
    }
    render::number_from_text(&s).ok_or_else(|| format!("numeric rendered as {s:?}, not a number"))
}

fn decode_array(elem: Scalar, b: &[u8]) -> std::result::Result<Value, String> {
    let mut r = Reader { b };
    let ndim = r.i32()?;
    let _has_nulls = r.i32()?;
    let _elem_oid = r.i32()?;
    if ndim <= 0 {
        return Ok(Value::Array(Vec::new()));
    }
    // Capacities are bounded by the bytes at hand (each dimension takes 8, each element at
    // least 4): a damaged header must not allocate gigabytes.
    let mut dims = Vec::with_capacity((ndim as usize).min(b.len() / 8));
    for _ in 0..ndim {
        let len = r.i32()?;
        let _lower_bound = r.i32()?;
        dims.push(len.max(0) as usize);
    }
    // Every element takes at least its 4-byte length: a header claiming more elements than
    // that is damaged (and would otherwise loop or allocate without bound).
    let total = dims.iter().try_fold(1usize, |acc, d| acc.checked_mul(*d));
    match total {
        Some(0) => return Ok(Value::Array(Vec::new())),
        Some(n) if n <= r.b.len() / 4 => {}
        _ => return Err(format!("array header claims dimensions {dims:?}, more elements than its {} bytes hold", r.b.len())),
    }
    fn level(dims: &[usize], elem: Scalar, r: &mut Reader<'_>) -> std::result::Result<Value, String> {
        let mut out = Vec::with_capacity(dims[0].min(r.b.len() / 4 + 1));
        for _ in 0..dims[0] {
            if dims.len() > 1 {
                out.push(level(&dims[1..], elem, r)?);
            } else {
                let len = r.i32()?;
                if len < 0 {
                    out.push(Value::Null);
                } else {
                    out.push(decode_scalar(elem, r.take(len as usize)?)?);
                }
            }
        }
        Ok(Value::Array(out))
    }
    level(&dims, elem, &mut r)
}

/// Every decoder, for the fuzzing entries.
const ALL: [Scalar; 18] = [
    Scalar::Bool, Scalar::Int2, Scalar::Int4, Scalar::Int8, Scalar::Oid, Scalar::Float4, Scalar::Float8, Scalar::Numeric,
    Scalar::Text, Scalar::Json, Scalar::Jsonb, Scalar::Uuid, Scalar::Bytea, Scalar::Date, Scalar::Time, Scalar::TimeTz,
    Scalar::Timestamp, Scalar::TimestampTz,
];

/// Fuzzing entry (see `crate::fuzzing`): `data[0]` picks the column count (1..=8), the next
/// bytes each column's decoder, `data[1+n]` the chunk size; the rest is fed to the COPY parser
/// in chunks and every tuple it yields is split, offset and decoded. Returns the values decoded.
#[doc(hidden)]
pub(crate) fn fuzz_copy(data: &[u8]) -> usize {
    let Some((&n, rest)) = data.split_first() else { return 0 };
    let n = usize::from(n % 8) + 1;
    if rest.len() < n + 1 {
        return 0;
    }
    let decoders: Vec<Decoder> = rest[..n]
        .iter()
        .map(|b| {
            let s = ALL[usize::from(b & 0x7f) % ALL.len()];
            if b & 0x80 != 0 { Decoder::Array(s) } else { Decoder::Scalar(s) }
        })
        .collect();
    let chunk = usize::from(rest[n]).max(1);
    let stream = &rest[n + 1..];
    let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    let codec = RawCodec { decoders, columns: names.clone(), type_names: names, prefix: "source `fuzz` (postgres)".into() };
    let mut parser = CopyParser::new(n);
    let mut fields = Vec::new();
    let (mut offsets, mut decoded) = (Vec::new(), 0);
    for piece in stream.chunks(chunk) {
        parser.feed(piece);
        loop {
            match parser.next_tuple(&mut fields) {
                Ok(Some(tuple)) => {
                    let mut split = Vec::new();
                    codec.split(tuple, &mut split);
                    codec.offsets(tuple, &mut offsets);
                    for i in 0..codec.width() {
                        let _ = codec.format_tag(i);
                        decoded += usize::from(codec.decode_field(&split, i).is_ok());
                    }
                    parser.consume();
                }
                Ok(None) => break,
                Err(_) => return decoded,
            }
        }
    }
    let _ = parser.finish();
    decoded
}

/// Fuzzing entry: one value's binary form decoded as the type `tag` picks.
#[doc(hidden)]
pub(crate) fn fuzz_value(tag: u8, b: &[u8]) -> Option<Value> {
    let s = ALL[usize::from(tag & 0x7f) % ALL.len()];
    let d = if tag & 0x80 != 0 { Decoder::Array(s) } else { Decoder::Scalar(s) };
    decode(d, b).ok()
}

#[cfg(test)]
mod copy_tests {
    use super::*;

    fn stream(rows: &[Vec<Option<&[u8]>>]) -> Vec<u8> {
        let mut b = COPY_SIGNATURE.to_vec();
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&4u32.to_be_bytes());
        b.extend_from_slice(b"ext!");
        for r in rows {
            b.extend_from_slice(&(r.len() as i16).to_be_bytes());
            for f in r {
                match f {
                    None => b.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(v) => {
                        b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                        b.extend_from_slice(v);
                    }
                }
            }
        }
        b.extend_from_slice(&(-1i16).to_be_bytes());
        b
    }

    fn parse(data: &[u8], chunk: usize) -> std::result::Result<Vec<Vec<Option<Vec<u8>>>>, String> {
        let mut p = CopyParser::new(2);
        let mut fields = Vec::new();
        let mut out = Vec::new();
        for c in data.chunks(chunk) {
            p.feed(c);
            while let Some(t) = p.next_tuple(&mut fields)? {
                out.push(fields.iter().map(|f| f.clone().map(|r| t[r].to_vec())).collect());
                p.consume();
            }
        }
        p.finish()?;
        Ok(out)
    }

    #[test]
    fn tuples_come_out_whole_whatever_the_chunking() {
        let rows: Vec<Vec<Option<&[u8]>>> =
            vec![vec![Some(b"a"), None], vec![Some(b""), Some(b"hello world")], vec![None, Some(&[0, 1, 2, 255])]];
        let data = stream(&rows);
        let want: Vec<Vec<Option<Vec<u8>>>> = rows.iter().map(|r| r.iter().map(|f| f.map(<[u8]>::to_vec)).collect()).collect();
        for chunk in [1, 2, 3, 7, 19, 20, 64, data.len()] {
            assert_eq!(parse(&data, chunk).unwrap(), want, "chunks of {chunk}");
        }
    }

    #[test]
    fn damaged_streams_are_errors_not_panics() {
        let data = stream(&[vec![Some(b"a"), Some(b"b")]]);
        assert!(parse(&data[..data.len() - 2], 5).unwrap_err().contains("stopped"));
        let mut bad = data.clone();
        bad[0] = b'X';
        assert!(parse(&bad, 100).unwrap_err().contains("signature"));
        let three = stream(&[vec![Some(b"a"), Some(b"b"), Some(b"c")]]);
        assert!(parse(&three, 100).unwrap_err().contains("3 fields"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(ndigits: i16, weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> String {
        let mut b = Vec::new();
        b.extend_from_slice(&ndigits.to_be_bytes());
        b.extend_from_slice(&weight.to_be_bytes());
        b.extend_from_slice(&sign.to_be_bytes());
        b.extend_from_slice(&dscale.to_be_bytes());
        for d in digits {
            b.extend_from_slice(&d.to_be_bytes());
        }
        match numeric(&b).unwrap() {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s,
            v => v.to_string(),
        }
    }

    #[test]
    fn numerics_render_like_postgres() {
        // 12345678901234567890.123456789 = 1234 5678 9012 3456 7890 . 1234 5678 9(000)
        assert_eq!(num(8, 4, 0, 9, &[1234, 5678, 9012, 3456, 7890, 1234, 5678, 9000]), "12345678901234567890.123456789");
        assert_eq!(num(0, 0, 0, 2, &[]), "0.00");
        assert_eq!(num(1, -1, 0x4000, 4, &[5]), "-0.0005");
        assert_eq!(num(1, -2, 0, 6, &[1200]), "0.000012");
        assert_eq!(num(1, 1, 0, 0, &[7]), "70000");
        assert_eq!(num(2, 0, 0, 1, &[1, 5000]), "1.5");
        assert_eq!(num(0, 0, 0xC000, 0, &[]), "NaN");
        assert_eq!(num(0, 0, 0xF000, 0, &[]), "-Infinity");
    }

    #[test]
    fn arrays_nest_by_dimension() {
        let mut b = Vec::new();
        for v in [2i32, 1, 23, 2, 1, 2, 1] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        for v in [Some(1i32), None, Some(3), Some(4)] {
            match v {
                Some(v) => {
                    b.extend_from_slice(&4i32.to_be_bytes());
                    b.extend_from_slice(&v.to_be_bytes());
                }
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        assert_eq!(decode_array(Scalar::Int4, &b).unwrap(), serde_json::json!([[1, null], [3, 4]]));
        assert!(decode_array(Scalar::Int4, &b[..b.len() - 2]).is_err());
    }
}

#[cfg(test)]
mod speed {
    use super::*;

    #[test]
    #[ignore]
    fn decoder_speed() {
        let n = 1_000_000;
        let cases: Vec<(&str, Scalar, Vec<u8>)> = vec![
            ("int8", Scalar::Int8, 123456789i64.to_be_bytes().to_vec()),
            ("text", Scalar::Text, b"user123456@example.com".to_vec()),
            ("numeric 1234.56", Scalar::Numeric, {
                let mut b = Vec::new();
                for v in [2i16, 0, 0, 2, 1234, 5600] {
                    b.extend_from_slice(&v.to_be_bytes());
                }
                b
            }),
            ("timestamptz", Scalar::TimestampTz, 823_000_000_123_456i64.to_be_bytes().to_vec()),
            ("float8", Scalar::Float8, 0.142857f64.to_be_bytes().to_vec()),
            ("bool", Scalar::Bool, vec![1]),
            ("jsonb", Scalar::Jsonb, b"\x01{\"k\": 123456, \"tags\": [\"a\", \"b\"]}".to_vec()),
        ];
        for (label, s, bytes) in cases {
            let t0 = std::time::Instant::now();
            let mut keep = 0usize;
            for _ in 0..n {
                let v = decode_scalar(s, std::hint::black_box(&bytes)).unwrap();
                keep += matches!(v, Value::Null) as usize;
            }
            println!("{label:<16} {:6.1} ns/value {keep}", t0.elapsed().as_nanos() as f64 / n as f64);
        }
    }
}
