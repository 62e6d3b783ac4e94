//! `type: hubspot`: HubSpot CRM v3 objects (contacts).

use super::super::yaml::Pos;
use super::super::{join, nonempty_string, secret_from_env, Diag, Obj, Secret, SyncConfig};

/// Most records per request (the CRM v3 batch endpoints take 100 inputs).
pub const MAX_BATCH: usize = 100;

pub const KEYS: &[&str] = &["type", "access_token", "base_url", "batch_size", "timeout", "retry", "rate_limit", "max_concurrency"];

#[derive(Debug, Clone)]
pub struct HubspotConfig {
    /// A private app's access token.
    pub access_token: Secret,
    /// `https://api.hubapi.com` unless pointed at an emulator.
    pub base_url: String,
}

pub(in crate::config) fn load(d: &mut Diag, o: &mut Obj, path: &str) -> Option<HubspotConfig> {
    let token = o.req(d, "access_token", "the private app token, as `${HUBSPOT_TOKEN}`").and_then(|n| secret_from_env(d, n, &join(path, "access_token")));
    let base_url = o.get("base_url").map(|n| nonempty_string(d, n, &join(path, "base_url"))).unwrap_or_else(|| Some("https://api.hubapi.com".into()));
    Some(HubspotConfig { access_token: token?, base_url: base_url? })
}

pub(in crate::config) fn validate_sync(_d: &mut Diag, _c: &HubspotConfig, _sync: &SyncConfig, _object_pos: Pos, _dest_path: &str) {}
