//! `type: postgres`: a Postgres table.
//!
//! ```yaml
//! destinations:
//!   app_db:
//!     type: postgres
//!     url: ${DEST_PG_URL}   # postgres://user:pw@host:5432/db?sslmode=verify-full&sslrootcert=/ca.pem
//! syncs:
//!   - destination: {connection: app_db, object: crm.contacts}   # `table` or `schema.table`
//! ```
//!
//! The sync's `object` names the table (required; names are used exactly as written, case
//! included); `primary_identifier.to` and every mapping's `to` are its columns. Every behavior
//! is supported; upsert, create and mirror need a unique constraint (or primary key) on the
//! identifier column, which `sluicegate validate --check` verifies.

use super::super::yaml::Pos;
use super::super::{join, redact_url, secret_from_env, Diag, Obj, Secret, SyncConfig};

/// Most records per request (rows per statement).
pub const MAX_BATCH: usize = 10_000;

pub const KEYS: &[&str] = &["type", "url", "batch_size", "timeout", "retry", "rate_limit", "max_concurrency"];

#[derive(Debug, Clone)]
pub struct PostgresDestinationConfig {
    /// `postgres://user:password@host:port/db`, from the environment.
    pub url: Secret,
}

pub(in crate::config) fn load(d: &mut Diag, o: &mut Obj, path: &str) -> Option<PostgresDestinationConfig> {
    let url = o.req(d, "url", "the connection URL, as `${DEST_PG_URL}`").and_then(|n| {
        let s = secret_from_env(d, n, &join(path, "url"))?;
        let scheme = s.expose().split_once("://").map(|(sc, _)| sc.to_ascii_lowercase());
        if matches!(scheme.as_deref(), Some("postgres" | "postgresql")) {
            Some(s)
        } else {
            d.err(n.pos, &join(path, "url"), format!(
                "`{}` is not a postgres:// URL; write postgres://user:password@host:5432/database (with `?sslmode=require` or `verify-full` for TLS)",
                redact_url(s.expose())
            ));
            None
        }
    });
    Some(PostgresDestinationConfig { url: url? })
}

/// `table` or `schema.table` as (schema, table), or why not.
pub fn split_object(object: &str) -> Result<(Option<&str>, &str), String> {
    let parts: Vec<&str> = object.split('.').collect();
    match parts.as_slice() {
        [t] if !t.trim().is_empty() => Ok((None, t)),
        [s, t] if !s.trim().is_empty() && !t.trim().is_empty() => Ok((Some(s), t)),
        _ => Err(format!("`{object}` is not a table name: write `table` or `schema.table`")),
    }
}

pub(in crate::config) fn validate_sync(d: &mut Diag, _c: &PostgresDestinationConfig, sync: &SyncConfig, object_pos: Pos, dest_path: &str) {
    match sync.object.as_deref() {
        None => d.err(object_pos, &join(dest_path, "object"), "a postgres destination needs `object`: the table to write, as `table` or `schema.table`"),
        Some(o) => {
            if let Err(e) = split_object(o) {
                d.err(object_pos, &join(dest_path, "object"), e);
            }
        }
    }
}
