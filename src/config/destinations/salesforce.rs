//! `type: salesforce`: Salesforce sObjects through the REST API (sObject Collections) or
//! Bulk API 2.0.

use super::super::yaml::Pos;
use super::super::{join, nonempty_string, secret_from_env, Diag, Obj, Secret, SyncConfig};

/// Most records per request (sObject Collections take 200 records).
pub const MAX_BATCH: usize = 200;

pub const KEYS: &[&str] = &[
    "type",
    "login_url",
    "client_id",
    "client_secret",
    "refresh_token",
    "batch_size",
    "timeout",
    "retry",
    "rate_limit",
    "max_concurrency",
];

#[derive(Debug, Clone)]
pub struct SalesforceConfig {
    /// `https://login.salesforce.com` unless pointed at a sandbox, My Domain or an emulator.
    pub login_url: String,
    pub client_id: Secret,
    pub client_secret: Secret,
    /// Present: the refresh-token flow; absent: the client-credentials flow.
    pub refresh_token: Option<Secret>,
}

pub(in crate::config) fn load(d: &mut Diag, o: &mut Obj, path: &str) -> Option<SalesforceConfig> {
    let login_url = o.get("login_url").map(|n| nonempty_string(d, n, &join(path, "login_url"))).unwrap_or_else(|| Some("https://login.salesforce.com".into()));
    let client_id = o.req(d, "client_id", "the connected app's consumer key, as `${SF_CLIENT_ID}`").and_then(|n| secret_from_env(d, n, &join(path, "client_id")));
    let client_secret = o.req(d, "client_secret", "the connected app's consumer secret, as `${SF_CLIENT_SECRET}`").and_then(|n| secret_from_env(d, n, &join(path, "client_secret")));
    let refresh_token = match o.get("refresh_token") {
        None => Some(None),
        Some(n) => secret_from_env(d, n, &join(path, "refresh_token")).map(Some),
    };
    Some(SalesforceConfig { login_url: login_url?, client_id: client_id?, client_secret: client_secret?, refresh_token: refresh_token? })
}

pub(in crate::config) fn validate_sync(_d: &mut Diag, _c: &SalesforceConfig, _sync: &SyncConfig, _object_pos: Pos, _dest_path: &str) {}
