//! `type: postgres`: a Postgres table.

use super::super::yaml::Pos;
use super::super::{join, secret_from_env, Diag, Obj, Secret, SyncConfig};

/// Most records per request (rows per INSERT statement).
pub const MAX_BATCH: usize = 10_000;

pub const KEYS: &[&str] = &["type", "url", "batch_size", "timeout", "retry", "rate_limit", "max_concurrency"];

#[derive(Debug, Clone)]
pub struct PostgresDestinationConfig {
    /// `postgres://user:password@host:port/db`, from the environment.
    pub url: Secret,
}

pub(in crate::config) fn load(d: &mut Diag, o: &mut Obj, path: &str) -> Option<PostgresDestinationConfig> {
    let url = o.req(d, "url", "the connection URL, as `${DEST_PG_URL}`").and_then(|n| secret_from_env(d, n, &join(path, "url")));
    Some(PostgresDestinationConfig { url: url? })
}

pub(in crate::config) fn validate_sync(_d: &mut Diag, _c: &PostgresDestinationConfig, _sync: &SyncConfig, _object_pos: Pos, _dest_path: &str) {}
