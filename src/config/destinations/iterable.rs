//! `type: iterable`: Iterable users and events.
//!
//! ```yaml
//! destinations:
//!   iterable:
//!     type: iterable
//!     api_key: ${ITERABLE_API_KEY}          # a server-side key, sent as the Api-Key header
//!     base_url: https://api.eu.iterable.com # EU data center; default https://api.iterable.com
//!     merge_nested_objects: false           # optional
//!     create_new_fields: true               # optional; default: the project's setting
//! ```
//!
//! A sync names `object: users` (the default) or `object: events`, and identifies the Iterable
//! user by `primary_identifier.to: email` or `to: userId`:
//! - `users`: `upsert` (users/bulkUpdate creates or updates) or `mirror` (upsert, plus deleting
//!   the users whose rows left the source). Iterable's bulk API has no update-only or
//!   create-only mode, so `update` and `create` are refused here rather than emulated with a
//!   read per user.
//! - `events`: `append` only (events/trackBulk), with `unique_key` sent as the event `id` so
//!   that Iterable keeps one event per key. A mapping `to: eventName` (from a column, or a
//!   `constant`) is required; `to: createdAt` is optional.

use super::super::yaml::Pos;
use super::super::{boolean, join, nonempty_string, redact_url, secret_from_env, Behavior, Diag, Obj, Secret, SyncConfig};

/// Most records per request. Iterable documents a 4 MB body cap and no count cap for
/// users/bulkUpdate and events/trackBulk; its own clients send at most 1,000 per request.
pub const MAX_BATCH: usize = 1000;

pub const KEYS: &[&str] = &[
    "type",
    "api_key",
    "base_url",
    "merge_nested_objects",
    "create_new_fields",
    "batch_size",
    "timeout",
    "retry",
    "rate_limit",
    "max_concurrency",
];

/// The objects a sync may name.
pub const OBJECTS: &[&str] = &["users", "events"];

#[derive(Debug, Clone)]
pub struct IterableConfig {
    pub api_key: Secret,
    /// `https://api.iterable.com` (or the EU data center) unless pointed at an emulator.
    pub base_url: String,
    /// `mergeNestedObjects` on every user: merge top-level objects instead of replacing them.
    pub merge_nested_objects: bool,
    /// `createNewFields` on every request; `None` leaves it to the project's setting.
    pub create_new_fields: Option<bool>,
}

pub(in crate::config) fn load(d: &mut Diag, o: &mut Obj, path: &str) -> Option<IterableConfig> {
    let key = o.req(d, "api_key", "a server-side API key, as `${ITERABLE_API_KEY}`").and_then(|n| secret_from_env(d, n, &join(path, "api_key")));
    let base_url = match o.get("base_url") {
        None => Some("https://api.iterable.com".to_string()),
        Some(n) => nonempty_string(d, n, &join(path, "base_url")).and_then(|u| {
            if reqwest::Url::parse(&u).map(|p| matches!(p.scheme(), "http" | "https")).unwrap_or(false) {
                Some(u.trim_end_matches('/').to_string())
            } else {
                d.err(n.pos, &join(path, "base_url"), format!(
                    "`{}` is not an http(s) URL; use https://api.iterable.com or, for the EU data center, https://api.eu.iterable.com",
                    redact_url(&u)
                ));
                None
            }
        }),
    };
    let merge = match o.get("merge_nested_objects") {
        None => Some(false),
        Some(n) => boolean(d, n, &join(path, "merge_nested_objects")),
    };
    let create = match o.get("create_new_fields") {
        None => Some(None),
        Some(n) => boolean(d, n, &join(path, "create_new_fields")).map(Some),
    };
    Some(IterableConfig { api_key: key?, base_url: base_url?, merge_nested_objects: merge?, create_new_fields: create? })
}

/// The sync's key path (`syncs[3]`), from its destination's (`syncs[3].destination`).
fn sync_path(dest_path: &str) -> &str {
    dest_path.strip_suffix(".destination").unwrap_or(dest_path)
}

pub(in crate::config) fn validate_sync(d: &mut Diag, _c: &IterableConfig, sync: &SyncConfig, object_pos: Pos, dest_path: &str) {
    let sp = sync_path(dest_path);
    let object = sync.object.as_deref().unwrap_or("users");
    if !OBJECTS.contains(&object) {
        d.err(object_pos, &join(dest_path, "object"), format!(
            "Iterable has no object `{object}` here{}; use `users` (user profiles, the default) or `events` (custom events)",
            super::super::did_you_mean(object, OBJECTS.iter().copied())
        ));
        return;
    }
    let id = &sync.primary_identifier;
    if id.to != "email" && id.to != "userId" {
        let ip = id.from_path.strip_suffix(".from").map(|p| join(p, "to")).unwrap_or_else(|| join(sp, "primary_identifier.to"));
        d.err(id.from_pos, &ip, format!(
            "Iterable identifies users by `email` or `userId`, not `{}`{}; set `to: email` or `to: userId` (as the Iterable project identifies users)",
            id.to,
            super::super::did_you_mean(&id.to, ["email", "userId"])
        ));
    }
    let bp = join(sp, "behavior");
    match (object, sync.behavior) {
        ("users", Behavior::Upsert | Behavior::Mirror) | ("events", Behavior::Append) => {}
        ("users", b @ (Behavior::Update | Behavior::Create)) => d.err(sync.behavior_pos, &bp, format!(
            "Iterable's users/bulkUpdate always creates or updates: it has no {} mode, so behavior `{}` cannot be honoured; use `upsert` (or `mirror` to also delete users that leave the source)",
            if b == Behavior::Update { "update-only" } else { "create-only" },
            b.as_str()
        )),
        ("users", Behavior::Append) => d.err(sync.behavior_pos, &bp, "`append` sends events: set `destination.object: events` (users take `upsert` or `mirror`)"),
        (_, b) => d.err(sync.behavior_pos, &bp, format!(
            "Iterable events are only appended (events/trackBulk): use `behavior: append` with a `unique_key`, not `{}`",
            b.as_str()
        )),
    }
    // Fields Iterable reads from the request instead of from dataFields.
    let reserved: &[&str] = if object == "events" {
        &["email", "userId", "id", "dataFields"]
    } else {
        &["email", "userId", "dataFields", "preferUserId", "mergeNestedObjects"]
    };
    for (i, m) in sync.mappings.iter().enumerate() {
        if reserved.contains(&m.to.as_str()) && m.to != id.to {
            d.err(m.from_pos, &format!("{}.mappings[{i}].to", sp), format!(
                "`{}` is part of Iterable's request, not a data field; the user is identified by `primary_identifier` (`{}`), so map this column to another field name",
                m.to, id.to
            ));
        }
    }
    if object == "events" && !sync.mappings.iter().any(|m| m.to == "eventName") {
        d.err(sync.pos, &join(sp, "mappings"), "Iterable events need a name: add a mapping `to: eventName`, from a column (`from: event_type`) or a fixed value (`constant: signup`)");
    }
}
