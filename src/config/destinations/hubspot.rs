//! `type: hubspot`: HubSpot CRM v3 objects (contacts).
//!
//! ```yaml
//! destinations:
//!   crm:
//!     type: hubspot
//!     access_token: ${HUBSPOT_TOKEN}      # a private app's token; never written literally
//!     # base_url: https://api.hubapi.com  # the default; tests point it at the emulator
//!     # rate_limit: {requests: 190, per: 10s}   # Professional/Enterprise apps (default 100/10s)
//! ```
//!
//! Syncs write `object: contacts` (the default when `object` is left out). The primary
//! identifier's destination field (`primary_identifier.to`) is the property HubSpot matches
//! records by: `email`, or a custom property with unique values (upsert, update, create,
//! mirror), or `hs_object_id`, the record ID (update only: HubSpot cannot create a record with
//! an ID of our choosing). `append` is refused: contacts are records, not events.

use super::super::yaml::Pos;
use super::super::{did_you_mean, join, nonempty_string, secret_from_env, Behavior, Diag, Obj, Secret, SyncConfig};

/// Most records per request (the CRM v3 batch endpoints take 100 inputs).
pub const MAX_BATCH: usize = 100;

pub const KEYS: &[&str] = &["type", "access_token", "base_url", "batch_size", "timeout", "retry", "rate_limit", "max_concurrency"];

/// The objects this destination writes.
pub const OBJECTS: &[&str] = &["contacts"];

/// The record ID property: usable to update records, not to create them.
pub const RECORD_ID: &str = "hs_object_id";

/// Properties HubSpot computes itself: a mapping may not write them.
pub const READ_ONLY: &[&str] = &["hs_object_id", "createdate", "lastmodifieddate", "hs_createdate", "hs_lastmodifieddate"];

#[derive(Debug, Clone)]
pub struct HubspotConfig {
    /// A private app's access token.
    pub access_token: Secret,
    /// How the token was written (`${HUBSPOT_TOKEN}`), to name the variable in messages.
    pub access_token_ref: String,
    /// `https://api.hubapi.com` unless pointed at an emulator; no trailing slash.
    pub base_url: String,
}

pub(in crate::config) fn load(d: &mut Diag, o: &mut Obj, path: &str) -> Option<HubspotConfig> {
    let token_node = o.req(d, "access_token", "the private app token, as `${HUBSPOT_TOKEN}`");
    let access_token_ref = match token_node.map(|n| &n.value) {
        // `${NAME}` only: a `:-default` part may hold a literal token.
        Some(super::super::yaml::Value::Scalar { text, .. }) => {
            let t = text.trim().trim_start_matches("${").trim_end_matches('}');
            let name = t.split(":-").next().unwrap_or("");
            if name.is_empty() { String::new() } else { format!("${{{name}}}") }
        }
        _ => String::new(),
    };
    let token = token_node.and_then(|n| secret_from_env(d, n, &join(path, "access_token")));
    let base_url = match o.get("base_url") {
        None => Some("https://api.hubapi.com".to_string()),
        Some(n) => nonempty_string(d, n, &join(path, "base_url")).and_then(|u| {
            let ok = reqwest::Url::parse(&u).map(|p| matches!(p.scheme(), "http" | "https") && p.query().is_none()).unwrap_or(false);
            if ok {
                Some(u.trim_end_matches('/').to_string())
            } else {
                d.err(n.pos, &join(path, "base_url"), format!(
                    "`{}` is not an http(s) base URL; write e.g. `https://api.hubapi.com` (the default) or the emulator's URL",
                    super::super::redact_url(&u)
                ));
                None
            }
        }),
    };
    Some(HubspotConfig { access_token: token?, access_token_ref, base_url: base_url? })
}

/// HubSpot internal property names: lowercase letters, digits and underscores, starting with
/// a letter.
pub fn valid_property_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

pub(in crate::config) fn validate_sync(d: &mut Diag, _c: &HubspotConfig, sync: &SyncConfig, object_pos: Pos, dest_path: &str) {
    let sync_path = dest_path.strip_suffix(".destination").unwrap_or(dest_path);
    if let Some(object) = &sync.object {
        if !OBJECTS.contains(&object.as_str()) {
            d.err(object_pos, &join(dest_path, "object"), format!(
                "HubSpot destinations write `contacts`; object `{object}` is not supported{}",
                did_you_mean(object, OBJECTS.iter().copied())
            ));
        }
    }
    if sync.behavior == Behavior::Append {
        d.err(sync.behavior_pos, &join(sync_path, "behavior"), 
            "HubSpot contacts are records, not events: behavior `append` is not supported; use upsert, update, create or mirror");
    }
    let id = &sync.primary_identifier;
    let id_path = join(sync_path, "primary_identifier.to");
    if id.to == "id" || id.to == "vid" {
        d.err(id.from_pos, &id_path, format!("HubSpot has no property `{}`; write `hs_object_id` for the record ID, or `email`", id.to));
    } else if !valid_property_name(&id.to) {
        d.err(id.from_pos, &id_path, format!(
            "`{}` is not a HubSpot property's internal name (lowercase letters, digits and _, e.g. `email`)",
            id.to
        ));
    } else if id.to == RECORD_ID && sync.behavior != Behavior::Update {
        d.err(id.from_pos, &id_path, format!(
            "`hs_object_id` (the record ID) identifies existing records only, so it works with behavior `update`; a {} sync needs `email` or a custom property with unique values",
            sync.behavior.as_str()
        ));
    } else if id.to != RECORD_ID && READ_ONLY.contains(&id.to.as_str()) {
        d.err(id.from_pos, &id_path, format!("`{}` is computed by HubSpot and not unique; identify contacts by `email` or a unique custom property", id.to));
    }
    for (i, m) in sync.mappings.iter().enumerate() {
        let p = format!("{sync_path}.mappings[{i}].to");
        if !valid_property_name(&m.to) {
            d.err(m.from_pos, &p, format!(
                "`{}` is not a HubSpot property's internal name (lowercase letters, digits and _, e.g. `firstname`); find it under Settings > Properties",
                m.to
            ));
        } else if READ_ONLY.contains(&m.to.as_str()) {
            d.err(m.from_pos, &p, format!("`{}` is computed by HubSpot and cannot be written; map another property", m.to));
        }
    }
}
