//! `type: iterable`: Iterable users and events.

use super::super::yaml::Pos;
use super::super::{join, nonempty_string, secret_from_env, Diag, Obj, Secret, SyncConfig};

/// Most records per request (placeholder, set by the Iterable module).
pub const MAX_BATCH: usize = 1000;

pub const KEYS: &[&str] = &["type", "api_key", "base_url", "batch_size", "timeout", "retry", "rate_limit", "max_concurrency"];

#[derive(Debug, Clone)]
pub struct IterableConfig {
    pub api_key: Secret,
    /// `https://api.iterable.com` (or the EU data center) unless pointed at an emulator.
    pub base_url: String,
}

pub(in crate::config) fn load(d: &mut Diag, o: &mut Obj, path: &str) -> Option<IterableConfig> {
    let key = o.req(d, "api_key", "a server-side API key, as `${ITERABLE_API_KEY}`").and_then(|n| secret_from_env(d, n, &join(path, "api_key")));
    let base_url = o.get("base_url").map(|n| nonempty_string(d, n, &join(path, "base_url"))).unwrap_or_else(|| Some("https://api.iterable.com".into()));
    Some(IterableConfig { api_key: key?, base_url: base_url? })
}

pub(in crate::config) fn validate_sync(_d: &mut Diag, _c: &IterableConfig, _sync: &SyncConfig, _object_pos: Pos, _dest_path: &str) {}
