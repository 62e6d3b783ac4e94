//! A Postgres table (`type: postgres`; the sync's `object` is `table` or `schema.table`; the
//! identifier and every mapping's `to` are its columns, named exactly).
//!
//! Connections: `url` is a `postgres://` URL (`sslmode`, `sslrootcert` and the other libpq
//! parameters sqlx understands are honoured, as for Postgres sources); one pool per
//! destination, opened on first use, with as many connections as `max_concurrency` (default
//! 4); every session runs in UTC with `statement_timeout` set to the destination's `timeout`.
//!
//! The table's columns and their types are read once from the catalog. Each batch is one
//! transaction of one statement per set of fields present (records usually all carry the same
//! fields; a field left out because its value is null and `sync_nulls: false` is not
//! touched). Values travel as one text array per column (`UNNEST($1::text[], …)`) and are cast
//! to each column's type by Postgres, so Postgres's own input rules apply: JSON numbers and
//! booleans as their text; strings as they are (`'2026-01-31T12:00:00Z'` into a
//! `timestamptz`, `'42'` into an `integer`); unix seconds (a JSON number) into a timestamp
//! column become that instant; JSON arrays into an array column become an array literal
//! (`{"a","b"}`), and so does text holding a JSON array (`'["a","b"]'`); objects and arrays
//! into `json`/`jsonb` as JSON, and strings there as JSON strings unless they hold a JSON
//! object or array; objects and arrays into a text column as
//! JSON text; null as NULL.
//!
//! Operations:
//! - upsert: `INSERT … ON CONFLICT (id) DO UPDATE SET <mapped columns>` (needs a unique
//!   constraint or primary key on the identifier column; other columns are left alone).
//! - update: `UPDATE … FROM UNNEST(…) … RETURNING`: identifiers with no row are rejected
//!   ("no row with this identifier").
//! - create: `INSERT … ON CONFLICT (id) DO NOTHING RETURNING id`: an existing identifier is
//!   answered "already exists" ([`Outcome::Exists`]): acknowledged when the row's previous
//!   delivery was in doubt (it created the row), rejected otherwise.
//! - delete (mirror): `DELETE … WHERE id IN (…)`; an identifier with no row is already gone.
//! - append: `INSERT`, with `ON CONFLICT (col) DO NOTHING` when the unique key's column is
//!   mapped and unique-constrained (a resent event is then not stored twice).
//!
//! Errors: a statement refused for a value (SQLSTATE classes 21, 22, 23 and other errors of
//! the data, e.g. a text that is not an integer, a NOT NULL or CHECK violation, a trigger's
//! exception) refuses the batch as a whole: the delivery layer bisects it until the rows at
//! fault are alone and rejected with Postgres's message. Lost connections, timeouts,
//! serialization failures, deadlocks and a server shutting down are retried. Bad credentials,
//! missing privileges, a missing database, table or column, and TLS failures fail the run.
//!
//! Limits and defaults: 1,000 rows per statement by default (at most 10,000), unpaced, 4
//! batches in flight, 30 s per statement.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Executor, Row};

use super::{BuildContext, Destination, Limits, Operation, OutRecord, Outcome, Reply, SendError};
use crate::config::destinations::postgres::split_object;
use crate::config::{redact_url, Behavior, FieldSource, PostgresDestinationConfig};
use crate::error::{Error, Result};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How a column's values are written as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Json,
    Array,
    Timestamp,
    Other,
}

#[derive(Debug, Clone)]
struct Column {
    /// The type as Postgres writes it (`numeric(10,2)`, `timestamp with time zone`, `crm.mood`).
    sql_type: String,
    kind: Kind,
}

/// What the catalog says about the table.
#[derive(Debug)]
struct Meta {
    /// `"schema"."table"`.
    table_sql: String,
    /// `schema.table`, for messages.
    table_name: String,
    columns: HashMap<String, Column>,
    id_unique: bool,
    /// Append syncs: the mapped unique-key column, when it is unique-constrained.
    append_conflict: Option<String>,
}

pub struct PgDestination {
    name: String,
    url_redacted: String,
    object: String,
    schema: Option<String>,
    table: String,
    id_col: String,
    /// The destination columns: the identifier's, then the mappings', in order.
    columns: Vec<String>,
    behavior: Behavior,
    /// Append syncs: the destination column the unique key's source column is mapped to.
    append_key: Option<String>,
    pool: PgPool,
    /// For a direct first connection, whose failure is reported at once (a pool would retry
    /// it until its acquire timeout).
    connect: PgConnectOptions,
    meta: tokio::sync::OnceCell<Meta>,
    timeout: Duration,
    max_concurrency: usize,
}

pub async fn build(ctx: &BuildContext<'_>, cfg: &PostgresDestinationConfig) -> Result<Arc<dyn Destination>> {
    let name = ctx.config.name.clone();
    let url = cfg.url.expose();
    let object = ctx.sync.object.clone().ok_or_else(|| Error::config(format!("destination `{name}`: the sync names no table (`object`)")))?;
    let (schema, table) = split_object(&object).map_err(|e| Error::config(format!("destination `{name}`: {e}")))?;
    let (schema, table) = (schema.map(str::to_string), table.to_string());
    let timeout = ctx.config.delivery.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let max_concurrency = ctx.config.delivery.max_concurrency.unwrap_or(4).max(1);
    let opts = PgConnectOptions::from_str(url)
        .map_err(|e| Error::config(format!("destination `{name}`: the URL {} is not valid: {e}", redact_url(url))))?
        .application_name("sluicegate")
        .disable_statement_logging();
    let session = format!("SET TIME ZONE 'UTC'; SET DateStyle = 'ISO, YMD'; SET statement_timeout = {}", timeout.as_millis().max(1));
    let pool = PgPoolOptions::new()
        .max_connections(max_concurrency as u32)
        .acquire_timeout(timeout)
        .after_connect(move |conn, _| {
            let session = session.clone();
            Box::pin(async move {
                conn.execute(sqlx::AssertSqlSafe(session)).await?;
                Ok(())
            })
        })
        .connect_lazy_with(opts.clone());
    let mut columns = vec![ctx.sync.primary_identifier.to.clone()];
    columns.extend(ctx.sync.mappings.iter().map(|m| m.to.clone()));
    let append_key = ctx.sync.unique_key.as_ref().and_then(|k| {
        ctx.sync.all_mappings().find(|m| m.source == FieldSource::Column(k.from.clone())).map(|m| m.to.clone())
    });
    Ok(Arc::new(PgDestination {
        name,
        url_redacted: redact_url(url),
        object,
        schema,
        table,
        id_col: ctx.sync.primary_identifier.to.clone(),
        columns,
        behavior: ctx.sync.behavior,
        append_key,
        pool,
        connect: opts,
        meta: tokio::sync::OnceCell::new(),
        timeout,
        max_concurrency,
    }))
}

/// Whether column `col` of table `oid` alone carries a (non-partial) unique index, as
/// `ON CONFLICT (col)` needs.
async fn is_unique(conn: &mut sqlx::PgConnection, oid: i64, col: &str) -> std::result::Result<bool, sqlx::Error> {
    sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
         WHERE i.indrelid = $1::oid AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL AND i.indnatts = 1 AND a.attname = $2)",
    )
    .bind(oid)
    .bind(col)
    .fetch_one(conn)
    .await
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn db_code(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// Postgres's message, its detail and SQLSTATE, as one line.
fn db_message(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => {
            let mut m = db.message().to_string();
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                if let Some(d) = pg.detail() {
                    m.push_str(": ");
                    m.push_str(d);
                }
            }
            if let Some(c) = db.code() {
                m.push_str(&format!(" (SQLSTATE {c})"));
            }
            m
        }
        sqlx::Error::Io(io) => format!("connection error: {io}"),
        sqlx::Error::PoolTimedOut => "no connection could be opened in time".into(),
        other => other.to_string(),
    }
}

/// A JSON array as a Postgres array literal (`{"a",NULL,{"b"}}`).
fn array_literal(items: &[Value]) -> String {
    let mut out = String::from("{");
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match v {
            Value::Null => out.push_str("NULL"),
            Value::Array(inner) => out.push_str(&array_literal(inner)),
            other => {
                let text = match other {
                    Value::String(s) => s.clone(),
                    o => o.to_string(),
                };
                out.push('"');
                for c in text.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
        }
    }
    out.push('}');
    out
}

/// A value as the text Postgres casts to the column's type (`None`: NULL).
fn to_text(v: &Value, kind: Kind) -> Option<String> {
    Some(match (v, kind) {
        (Value::Null, _) => return None,
        (Value::String(s), Kind::Json) => {
            let holds_json = matches!(s.trim_start().chars().next(), Some('{' | '['))
                && serde_json::from_str::<Value>(s).is_ok_and(|p| p.is_object() || p.is_array());
            if holds_json { s.clone() } else { Value::String(s.clone()).to_string() }
        }
        // JSON array text (e.g. from a warehouse without arrays) into an array column.
        (Value::String(s), Kind::Array) if s.trim_start().starts_with('[') => match serde_json::from_str::<Value>(s) {
            Ok(Value::Array(items)) => array_literal(&items),
            _ => s.clone(),
        },
        (Value::String(s), _) => s.clone(),
        (Value::Number(n), Kind::Timestamp) => match n.as_i64().and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok()) {
            Some(t) => t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| n.to_string()),
            None => n.to_string(),
        },
        (Value::Array(items), Kind::Array) => array_literal(items),
        (other, _) => other.to_string(),
    })
}

impl PgDestination {
    fn table_display(&self) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{}", self.table),
            None => self.table.clone(),
        }
    }

    fn needs_unique(&self) -> bool {
        matches!(self.behavior, Behavior::Upsert | Behavior::Create | Behavior::Mirror)
    }

    /// A database error as a send error: data problems refuse the batch, passing trouble is
    /// retried, configuration problems fail the run.
    fn classify(&self, e: sqlx::Error) -> SendError {
        let message = db_message(&e);
        let table = self.table_display();
        match &e {
            sqlx::Error::Database(_) => {
                let code = db_code(&e).unwrap_or_default();
                let class = code.get(..2).unwrap_or("");
                match (class, code.as_str()) {
                    (_, "42501") => SendError::Fatal {
                        message: format!("{message}; grant the user of destination `{}` the rights it needs on table {table} (SELECT, INSERT, UPDATE, DELETE as the sync's behavior requires)", self.name),
                    },
                    ("28", _) => SendError::Fatal { message: format!("cannot connect to {}: the server refused the credentials: {message}; check the user and password in the URL", self.url_redacted) },
                    ("3D", _) => SendError::Fatal { message: format!("cannot connect to {}: {message}; check the database name in the URL", self.url_redacted) },
                    (_, "42P01" | "42703" | "42704") => SendError::Fatal {
                        message: format!("{message}; table {table} or its columns changed since the run started: check the table and the sync's mappings"),
                    },
                    ("42" | "0A", _) => SendError::Fatal { message: format!("writing to table {table} failed: {message}") },
                    ("08" | "40" | "53" | "55" | "57" | "58" | "XX", _) => SendError::Transient { message, retry_after: None },
                    _ => SendError::BatchRejected { message },
                }
            }
            sqlx::Error::Tls(_) => SendError::Fatal {
                message: format!("cannot connect to {}: the TLS handshake failed: {message}; check the URL's `sslmode` and `sslrootcert` and the server's certificate", self.url_redacted),
            },
            sqlx::Error::Configuration(_) => SendError::Fatal { message: format!("the URL {} is not valid: {message}", self.url_redacted) },
            _ => SendError::Transient { message: format!("cannot reach {}: {message}", self.url_redacted), retry_after: None },
        }
    }

    async fn meta(&self) -> std::result::Result<&Meta, SendError> {
        self.meta.get_or_try_init(|| self.load_meta()).await
    }

    async fn load_meta(&self) -> std::result::Result<Meta, SendError> {
        let table_sql = match &self.schema {
            Some(s) => format!("{}.{}", quote(s), quote(&self.table)),
            None => quote(&self.table),
        };
        match tokio::time::timeout(self.timeout, self.connect.connect()).await {
            Ok(Ok(probe)) => {
                let _ = sqlx::Connection::close(probe).await;
            }
            Ok(Err(e)) => return Err(self.classify(e)),
            Err(_) => {
                return Err(SendError::Transient { message: format!("cannot connect to {}: no answer within {:?}", self.url_redacted, self.timeout), retry_after: None })
            }
        }
        let mut conn = self.pool.acquire().await.map_err(|e| self.classify(e))?;
        let found = sqlx::query("SELECT c.oid::int8, n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)")
            .bind(&table_sql)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| self.classify(e))?;
        let Some(found) = found else {
            let where_ = if self.schema.is_some() { String::new() } else { " (in the user's search_path; write `schema.table` to name another schema)".into() };
            return Err(SendError::Fatal {
                message: format!("table {} does not exist{where_}; create it, or fix the sync's `object`", self.table_display()),
            });
        };
        let (oid, nsp, rel): (i64, String, String) = (found.get(0), found.get(1), found.get(2));
        let rows = sqlx::query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), COALESCE(bt.typname, t.typname)::text, COALESCE(bt.typcategory, t.typcategory)::text \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype \
             WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        )
        .bind(oid)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| self.classify(e))?;
        let mut columns = HashMap::new();
        let mut order = Vec::new();
        for r in rows {
            let (name, sql_type, base, category): (String, String, String, String) = (r.get(0), r.get(1), r.get(2), r.get(3));
            let kind = if category == "A" {
                Kind::Array
            } else if base == "json" || base == "jsonb" {
                Kind::Json
            } else if base.starts_with("timestamp") {
                Kind::Timestamp
            } else {
                Kind::Other
            };
            order.push(name.clone());
            columns.insert(name, Column { sql_type, kind });
        }
        let table_name = format!("{nsp}.{rel}");
        let missing: Vec<&str> = self.columns.iter().filter(|c| !columns.contains_key(*c)).map(String::as_str).collect();
        if !missing.is_empty() {
            return Err(SendError::Fatal {
                message: format!(
                    "table {table_name} has no column{} {}; its columns are: {}. Fix the sync's `to:` names (they are column names, case included) or add the column{}",
                    if missing.len() == 1 { "" } else { "s" },
                    missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "),
                    order.join(", "),
                    if missing.len() == 1 { "" } else { "s" },
                ),
            });
        }
        let id_unique = is_unique(&mut conn, oid, &self.id_col).await.map_err(|e| self.classify(e))?;
        if self.needs_unique() && !id_unique {
            return Err(SendError::Fatal {
                message: format!(
                    "column `{}` of table {table_name} has no unique constraint or primary key, which a {} sync needs to match rows (ON CONFLICT): add one, e.g. ALTER TABLE {table_sql} ADD UNIQUE ({})",
                    self.id_col,
                    self.behavior.as_str(),
                    quote(&self.id_col)
                ),
            });
        }
        let append_conflict = match &self.append_key {
            Some(k) if self.behavior == Behavior::Append => is_unique(&mut conn, oid, k).await.map_err(|e| self.classify(e))?.then(|| k.clone()),
            _ => None,
        };
        Ok(Meta { table_sql, table_name, columns, id_unique, append_conflict })
    }

    /// `WITH u AS (SELECT * FROM UNNEST($1::text[], …) WITH ORDINALITY AS u(c0, …, n))`.
    fn with_u(cols: &[&str]) -> String {
        let params: Vec<String> = (1..=cols.len()).map(|i| format!("${i}::text[]")).collect();
        let names: Vec<String> = (0..cols.len()).map(|i| format!("c{i}")).collect();
        format!("WITH u AS (SELECT * FROM UNNEST({}) WITH ORDINALITY AS u({}, n))", params.join(", "), names.join(", "))
    }

    /// The statement for one group of records carrying the columns `cols` (the identifier's
    /// first); whether it returns the ordinals of the rows it applied.
    fn statement(&self, meta: &Meta, op: Operation, cols: &[&str]) -> (String, bool) {
        let t = &meta.table_sql;
        let ty = |c: &str| meta.columns[c].sql_type.clone();
        let list: Vec<String> = cols.iter().map(|c| quote(c)).collect();
        let values: Vec<String> = cols.iter().enumerate().map(|(i, c)| format!("u.c{i}::{}", ty(c))).collect();
        let id = quote(&self.id_col);
        let id_ty = ty(&self.id_col);
        let with = Self::with_u(cols);
        let insert = format!("INSERT INTO {t} ({}) SELECT {} FROM u ORDER BY u.n", list.join(", "), values.join(", "));
        match op {
            Operation::Upsert => {
                let sets: Vec<String> = cols[1..].iter().map(|c| format!("{} = EXCLUDED.{}", quote(c), quote(c))).collect();
                let action = if sets.is_empty() { "DO NOTHING".to_string() } else { format!("DO UPDATE SET {}", sets.join(", ")) };
                (format!("{with} {insert} ON CONFLICT ({id}) {action}"), false)
            }
            Operation::Create => (
                format!("{with}, ins AS ({insert} ON CONFLICT ({id}) DO NOTHING RETURNING {id} AS id) SELECT u.n FROM u JOIN ins ON ins.id = u.c0::{id_ty}"),
                true,
            ),
            Operation::Update => {
                let sets: Vec<String> = cols.iter().enumerate().skip(1).map(|(i, c)| format!("{} = u.c{i}::{}", quote(c), ty(c))).collect();
                if sets.is_empty() {
                    (format!("{with} SELECT u.n FROM u JOIN {t} AS t ON t.{id} = u.c0::{id_ty}"), true)
                } else {
                    (format!("{with} UPDATE {t} AS t SET {} FROM u WHERE t.{id} = u.c0::{id_ty} RETURNING u.n", sets.join(", ")), true)
                }
            }
            Operation::Append => match &meta.append_conflict {
                Some(k) => (format!("{with} {insert} ON CONFLICT ({}) DO NOTHING", quote(k)), false),
                None => (format!("{with} {insert}"), false),
            },
            Operation::Delete => (format!("DELETE FROM {t} WHERE {id} IN (SELECT u.c0::{id_ty} FROM UNNEST($1::text[]) AS u(c0))"), false),
        }
    }

    async fn apply(&self, op: Operation, records: &[OutRecord<'_>]) -> std::result::Result<Vec<Outcome>, SendError> {
        let meta = self.meta().await?;
        // Group the records by the columns they carry (the identifier's always).
        let mut groups: BTreeMap<Vec<bool>, Vec<usize>> = BTreeMap::new();
        for (i, r) in records.iter().enumerate() {
            let present: Vec<bool> = if op == Operation::Delete {
                vec![true]
            } else {
                self.columns.iter().enumerate().map(|(k, c)| k == 0 || r.payload.contains_key(c)).collect()
            };
            groups.entry(present).or_default().push(i);
        }
        let mut outcomes = vec![Outcome::Accepted; records.len()];
        let mut tx = self.pool.begin().await.map_err(|e| self.classify(e))?;
        for (present, members) in &groups {
            let cols: Vec<&str> = self.columns.iter().zip(present).filter(|(_, p)| **p).map(|(c, _)| c.as_str()).collect();
            let (sql, returns) = self.statement(meta, op, &cols);
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (k, col) in cols.iter().enumerate() {
                let kind = meta.columns[*col].kind;
                let values: Vec<Option<String>> = members
                    .iter()
                    .map(|&i| {
                        let r = &records[i];
                        match r.payload.get(*col) {
                            Some(v) => to_text(v, kind),
                            None if k == 0 => Some(r.identifier.to_string()),
                            None => None,
                        }
                    })
                    .collect();
                q = q.bind(values);
            }
            if returns {
                let rows = q.fetch_all(&mut *tx).await.map_err(|e| self.classify(e))?;
                let mut applied = vec![false; members.len()];
                for row in rows {
                    let n: i64 = row.try_get(0).map_err(|e| self.classify(e))?;
                    if let Some(a) = applied.get_mut((n - 1) as usize) {
                        *a = true;
                    }
                }
                for (pos, &i) in members.iter().enumerate() {
                    if !applied[pos] {
                        outcomes[i] = if op == Operation::Create {
                            Outcome::Exists(format!("a row with {} {:?} already exists in table {}; a create-only sync does not change it", self.id_col, records[i].identifier, meta.table_name))
                        } else {
                            Outcome::Rejected(format!("no row with {} {:?} in table {}; an update-only sync does not create it", self.id_col, records[i].identifier, meta.table_name))
                        };
                    }
                }
            } else {
                q.execute(&mut *tx).await.map_err(|e| self.classify(e))?;
            }
        }
        tx.commit().await.map_err(|e| self.classify(e))?;
        Ok(outcomes)
    }
}

#[async_trait::async_trait]
impl Destination for PgDestination {
    fn describe(&self) -> String {
        format!("postgres destination `{}` (table {} at {})", self.name, self.object, self.url_redacted)
    }

    fn limits(&self) -> Limits {
        Limits {
            max_records: crate::config::destinations::postgres::MAX_BATCH,
            max_bytes: None,
            overhead_bytes: 0,
            default_batch: 1000,
            default_rate: None,
            default_concurrency: self.max_concurrency.min(4),
            default_timeout: DEFAULT_TIMEOUT,
        }
    }

    async fn check(&self) -> std::result::Result<(), String> {
        let fail = |e: SendError| match e {
            SendError::Fatal { message } | SendError::Transient { message, .. } | SendError::RateLimited { message, .. } | SendError::BatchRejected { message } => {
                format!("{}: {message}", self.describe())
            }
        };
        let meta = self.meta().await.map_err(fail)?;
        let needed: &[&str] = match self.behavior {
            Behavior::Upsert => &["INSERT", "UPDATE"],
            Behavior::Update => &["UPDATE"],
            Behavior::Create | Behavior::Append => &["INSERT"],
            Behavior::Mirror => &["INSERT", "UPDATE", "DELETE"],
        };
        let mut missing = Vec::new();
        for p in needed {
            let ok: bool = sqlx::query_scalar("SELECT has_table_privilege(to_regclass($1), $2)")
                .bind(&meta.table_sql)
                .bind(*p)
                .fetch_one(&self.pool)
                .await
                .map_err(|e| fail(self.classify(e)))?;
            if !ok {
                missing.push(*p);
            }
        }
        if !missing.is_empty() {
            return Err(format!(
                "{}: the user may not {} rows of table {}, which a {} sync does: GRANT {} ON {} TO <user>",
                self.describe(),
                missing.iter().map(|m| m.to_lowercase()).collect::<Vec<_>>().join(" or "),
                meta.table_name,
                self.behavior.as_str(),
                missing.join(", "),
                meta.table_sql
            ));
        }
        if !meta.id_unique && self.behavior == Behavior::Update {
            tracing::info!(destination = %self.describe(), "column `{}` is not unique: an update changes every row with the identifier", self.id_col);
        }
        Ok(())
    }

    async fn send(&self, op: Operation, records: &[OutRecord<'_>]) -> std::result::Result<Reply, SendError> {
        let run = self.apply(op, records);
        // statement_timeout bounds each statement; this bounds a connection that hangs.
        match tokio::time::timeout(self.timeout * 2 + Duration::from_secs(5), run).await {
            Ok(r) => r.map(Reply::new),
            Err(_) => Err(SendError::Transient { message: format!("no answer from {} within {:?}", self.url_redacted, self.timeout * 2), retry_after: None }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_as_postgres_text() {
        assert_eq!(to_text(&json!(null), Kind::Other), None);
        assert_eq!(to_text(&json!("x"), Kind::Other).unwrap(), "x");
        assert_eq!(to_text(&json!(12.50), Kind::Other).unwrap(), "12.5");
        assert_eq!(to_text(&json!(true), Kind::Other).unwrap(), "true");
        assert_eq!(to_text(&json!({"a": 1}), Kind::Json).unwrap(), r#"{"a":1}"#);
        assert_eq!(to_text(&json!("plain"), Kind::Json).unwrap(), r#""plain""#);
        assert_eq!(to_text(&json!("[1, 2]"), Kind::Json).unwrap(), "[1, 2]");
        assert_eq!(to_text(&json!(["a", null, "q\"b\\"]), Kind::Array).unwrap(), r#"{"a",NULL,"q\"b\\"}"#);
        assert_eq!(to_text(&json!([[1, 2], [3, 4]]), Kind::Array).unwrap(), r#"{{"1","2"},{"3","4"}}"#);
        assert_eq!(to_text(&json!("[\"x\", \"y\"]"), Kind::Array).unwrap(), r#"{"x","y"}"#);
        assert_eq!(to_text(&json!("{x,y}"), Kind::Array).unwrap(), "{x,y}");
        assert_eq!(to_text(&json!(1769860800), Kind::Timestamp).unwrap(), "2026-01-31T12:00:00Z");
    }
}
