//! `type: salesforce`: Salesforce sObjects through the REST API (sObject Collections) or
//! Bulk API 2.0.
//!
//! ```yaml
//! destinations:
//!   crm:
//!     type: salesforce
//!     login_url: https://login.salesforce.com   # or https://test.salesforce.com, a My Domain URL
//!     client_id: ${SF_CLIENT_ID}
//!     client_secret: ${SF_CLIENT_SECRET}
//!     refresh_token: ${SF_REFRESH_TOKEN}         # absent: the client-credentials flow
//!     api_version: v62.0
//!     api: collections                           # or bulk
//! ```
//!
//! `api: collections` (the default) sends up to 200 records per request and answers per record
//! at once: right for most syncs, and for anything that runs often with few changes.
//! `api: bulk` sends each batch (default 10,000 records) as one Bulk API 2.0 ingest job: pick it
//! for syncs that move more than a few thousand records per run (Salesforce recommends Bulk
//! above ~2,000 records), as it spends a handful of API requests per 10,000 records instead of
//! 50, at the price of minutes of latency per job.
//!
//! Each sync names its sObject (`destination.object`, e.g. `Contact`, `Lead`, `My_Object__c`)
//! and identifies records by the field its `primary_identifier.to` names:
//! - `upsert` and `mirror`: an External ID field (`External_Id__c`) or, on standard objects, a
//!   field with the idLookup property (e.g. `Email` on Contact and Lead);
//! - `update`: such a field (records are looked up by it and updated by their Id; unknown ones
//!   are rejected) or `Id` itself;
//! - `create` and `append`: any field the records carry (it must not be `Id`: Salesforce assigns
//!   record Ids). `validate --check` verifies the object and every mapped field.

use super::super::yaml::{Pos, Value};
use super::super::{join, nonempty_string, secret_from_env, string, Behavior, Diag, Obj, Secret, SyncConfig};

/// Most records per request in bulk mode (one ingest job per batch); sObject Collections
/// requests take [`COLLECTIONS_MAX`].
pub const MAX_BATCH: usize = 100_000;
/// Most records per sObject Collections request.
pub const COLLECTIONS_MAX: usize = 200;
/// The API version used when the project does not say.
pub const DEFAULT_API_VERSION: &str = "v62.0";
/// The oldest version with sObject Collections upsert.
const MIN_API_VERSION: f64 = 46.0;

pub const KEYS: &[&str] = &[
    "type",
    "login_url",
    "client_id",
    "client_secret",
    "refresh_token",
    "api_version",
    "api",
    "batch_size",
    "timeout",
    "retry",
    "rate_limit",
    "max_concurrency",
];

/// Which Salesforce API carries the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SalesforceApi {
    /// REST sObject Collections: up to 200 records per request, answered per record.
    Collections,
    /// Bulk API 2.0: one ingest job (CSV) per batch.
    Bulk,
}

#[derive(Debug, Clone)]
pub struct SalesforceConfig {
    /// `https://login.salesforce.com` unless pointed at a sandbox, My Domain or an emulator.
    pub login_url: String,
    pub client_id: Secret,
    pub client_secret: Secret,
    /// Present: the refresh-token flow; absent: the client-credentials flow.
    pub refresh_token: Option<Secret>,
    /// `v62.0`.
    pub api_version: String,
    pub api: SalesforceApi,
}

/// `v62.0`, `62.0` or `62` as `v62.0`; `None` when not a version.
fn normalize_version(text: &str) -> Option<(String, f64)> {
    let t = text.trim();
    let t = t.strip_prefix('v').or_else(|| t.strip_prefix('V')).unwrap_or(t);
    let (major, minor) = t.split_once('.').unwrap_or((t, "0"));
    if major.is_empty() || !major.chars().all(|c| c.is_ascii_digit()) || minor.len() != 1 || !minor.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let v: f64 = format!("{major}.{minor}").parse().ok()?;
    Some((format!("v{}.{minor}", major.trim_start_matches('0')), v))
}

/// An API name: letters, digits and underscores, starting with a letter (`My_Field__c`).
pub fn is_api_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(in crate::config) fn load(d: &mut Diag, o: &mut Obj, path: &str) -> Option<SalesforceConfig> {
    let login_url = match o.get("login_url") {
        None => Some("https://login.salesforce.com".to_string()),
        Some(n) => nonempty_string(d, n, &join(path, "login_url")).and_then(|u| {
            match reqwest::Url::parse(u.trim()) {
                Ok(p) if matches!(p.scheme(), "http" | "https") && p.query().is_none() => Some(u.trim().trim_end_matches('/').to_string()),
                _ => {
                    d.err(n.pos, &join(path, "login_url"), "not an http(s) URL; write e.g. `https://login.salesforce.com`, `https://test.salesforce.com` (sandboxes) or your My Domain URL");
                    None
                }
            }
        }),
    };
    let client_id = o.req(d, "client_id", "the connected app's consumer key, as `${SF_CLIENT_ID}`").and_then(|n| secret_from_env(d, n, &join(path, "client_id")));
    let client_secret = o.req(d, "client_secret", "the connected app's consumer secret, as `${SF_CLIENT_SECRET}`").and_then(|n| secret_from_env(d, n, &join(path, "client_secret")));
    let refresh_token = match o.get("refresh_token") {
        None => Some(None),
        Some(n) => secret_from_env(d, n, &join(path, "refresh_token")).map(Some),
    };
    let api_version = match o.get("api_version") {
        None => Some(DEFAULT_API_VERSION.to_string()),
        Some(n) => string(d, n, &join(path, "api_version")).and_then(|t| match normalize_version(&t) {
            Some((v, num)) if num >= MIN_API_VERSION => Some(v),
            Some((v, _)) => {
                d.err(n.pos, &join(path, "api_version"), format!("{v} is too old: sObject Collections upsert needs v{MIN_API_VERSION:.1} or later; use e.g. {DEFAULT_API_VERSION}"));
                None
            }
            None => {
                d.err(n.pos, &join(path, "api_version"), format!("`{t}` is not an API version; write e.g. `{DEFAULT_API_VERSION}`"));
                None
            }
        }),
    };
    let api = match o.get("api") {
        None => Some(SalesforceApi::Collections),
        Some(n) => match string(d, n, &join(path, "api")).as_deref() {
            Some("collections") => Some(SalesforceApi::Collections),
            Some("bulk") => Some(SalesforceApi::Bulk),
            Some(other) => {
                d.err(n.pos, &join(path, "api"), format!("unknown API `{other}`; use `collections` (REST, up to 200 records per request) or `bulk` (Bulk API 2.0 jobs, for large syncs)"));
                None
            }
            None => None,
        },
    };
    // `batch_size` was read (and bounded by bulk's maximum) with the delivery keys; collections
    // requests carry at most 200 records.
    if api == Some(SalesforceApi::Collections) {
        if let Some(n) = o.get("batch_size") {
            if let Value::Scalar { text, plain: true } = &n.value {
                if let Ok(v) = text.replace('_', "").parse::<i64>() {
                    if v > COLLECTIONS_MAX as i64 {
                        d.err(n.pos, &join(path, "batch_size"), format!(
                            "{v} is more than the {COLLECTIONS_MAX} records a Salesforce sObject Collections request takes; use a batch_size of at most {COLLECTIONS_MAX}, or `api: bulk` for large syncs"
                        ));
                    }
                }
            }
        }
    }
    Some(SalesforceConfig {
        login_url: login_url?,
        client_id: client_id?,
        client_secret: client_secret?,
        refresh_token: refresh_token?,
        api_version: api_version?,
        api: api?,
    })
}

/// The `to` key path of a mapping whose `from` (or `constant`) path is `from_path`.
fn to_path(from_path: &str) -> String {
    match from_path.rsplit_once('.') {
        Some((base, _)) => join(base, "to"),
        None => "to".to_string(),
    }
}

pub(in crate::config) fn validate_sync(d: &mut Diag, _c: &SalesforceConfig, sync: &SyncConfig, object_pos: Pos, dest_path: &str) {
    match sync.object.as_deref() {
        None => d.err(object_pos, &join(dest_path, "object"), "a salesforce sync needs `object`: the sObject's API name, e.g. `Contact`, `Lead`, `Account` or `My_Object__c`"),
        Some(o) if !is_api_name(o) => d.err(object_pos, &join(dest_path, "object"), format!(
            "`{o}` is not an sObject API name (letters, digits and underscores, e.g. `Contact` or `My_Object__c`)"
        )),
        Some(_) => {}
    }
    let id = &sync.primary_identifier;
    let id_path = to_path(&id.from_path);
    if !is_api_name(&id.to) {
        d.err(id.from_pos, &id_path, format!("`{}` is not a Salesforce field API name (letters, digits and underscores, e.g. `External_Id__c`)", id.to));
    } else if id.to.eq_ignore_ascii_case("id") {
        match sync.behavior {
            Behavior::Update => {}
            Behavior::Upsert | Behavior::Mirror => d.err(id.from_pos, &id_path, format!(
                "a {} sync identifies records by an External ID field (e.g. `External_Id__c`, or `Email` on Contact and Lead): Salesforce upserts by external id, not by record Id; `Id` works with `behavior: update`",
                sync.behavior.as_str()
            )),
            Behavior::Create | Behavior::Append => d.err(id.from_pos, &id_path, format!(
                "a {} sync cannot set `Id`: Salesforce assigns record Ids; identify records by a field they carry, e.g. an External ID field",
                sync.behavior.as_str()
            )),
        }
    }
    for m in &sync.mappings {
        let p = to_path(&m.from_path);
        if !is_api_name(&m.to) {
            d.err(m.from_pos, &p, format!(
                "`{}` is not a Salesforce field API name (letters, digits and underscores, e.g. `LastName` or `Score__c`); relationship fields are not supported",
                m.to
            ));
        } else if m.to.eq_ignore_ascii_case("id") {
            d.err(m.from_pos, &p, "`Id` is assigned by Salesforce; it can only be the primary identifier of an update sync");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(normalize_version("v62.0").unwrap().0, "v62.0");
        assert_eq!(normalize_version("59").unwrap().0, "v59.0");
        assert_eq!(normalize_version("61.0").unwrap().1, 61.0);
        assert!(normalize_version("v62.00").is_none());
        assert!(normalize_version("latest").is_none());
    }

    #[test]
    fn api_names() {
        assert!(is_api_name("My_Object__c"));
        assert!(is_api_name("Email"));
        assert!(!is_api_name("Account__r.Ext__c"));
        assert!(!is_api_name("_x"));
        assert!(!is_api_name(""));
    }
}
