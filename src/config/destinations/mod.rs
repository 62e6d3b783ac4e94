//! Settings of each destination type. Every type accepts the shared delivery keys
//! ([`super::keys::DELIVERY`]) besides its own; its module lists both in `KEYS`, checks its own
//! keys in `load`, and checks each sync that uses it in `validate_sync` (objects it knows,
//! behaviors it supports, identifier fields).

pub mod hubspot;
pub mod iterable;
pub mod postgres;
pub mod salesforce;
pub mod webhook;

use super::yaml::Pos;
use super::{Diag, DestinationConfig, DestinationKind, Obj, SyncConfig};

/// The keys a destination of type `ty` accepts, or `None` for an unknown type.
pub(super) fn keys_of(ty: &str) -> Option<&'static [&'static str]> {
    Some(match ty {
        "webhook" => webhook::KEYS,
        "hubspot" => hubspot::KEYS,
        "iterable" => iterable::KEYS,
        "salesforce" => salesforce::KEYS,
        "postgres" => postgres::KEYS,
        _ => return None,
    })
}

/// Most records per request a destination of type `ty` takes (its API's limit).
pub(super) fn max_batch_of(ty: &str) -> usize {
    match ty {
        "webhook" => webhook::MAX_BATCH,
        "hubspot" => hubspot::MAX_BATCH,
        "iterable" => iterable::MAX_BATCH,
        "salesforce" => salesforce::MAX_BATCH,
        "postgres" => postgres::MAX_BATCH,
        _ => 1,
    }
}

pub(super) fn load(d: &mut Diag, o: &mut Obj, path: &str, ty: &str) -> Option<DestinationKind> {
    match ty {
        "webhook" => webhook::load(d, o, path).map(DestinationKind::Webhook),
        "hubspot" => hubspot::load(d, o, path).map(DestinationKind::Hubspot),
        "iterable" => iterable::load(d, o, path).map(DestinationKind::Iterable),
        "salesforce" => salesforce::load(d, o, path).map(DestinationKind::Salesforce),
        "postgres" => postgres::load(d, o, path).map(DestinationKind::Postgres),
        _ => None,
    }
}

/// Checks a sync against its destination's type; `object_pos` is where `destination.object`
/// (or `destination`) was written, `dest_path` its key path. False when an error was reported.
pub(super) fn validate_sync(d: &mut Diag, dest: &DestinationConfig, sync: &SyncConfig, object_pos: Pos, dest_path: &str) -> bool {
    let before = d.errors.len();
    match &dest.kind {
        DestinationKind::Webhook(c) => webhook::validate_sync(d, c, sync, object_pos, dest_path),
        DestinationKind::Hubspot(c) => hubspot::validate_sync(d, c, sync, object_pos, dest_path),
        DestinationKind::Iterable(c) => iterable::validate_sync(d, c, sync, object_pos, dest_path),
        DestinationKind::Salesforce(c) => salesforce::validate_sync(d, c, sync, object_pos, dest_path),
        DestinationKind::Postgres(c) => postgres::validate_sync(d, c, sync, object_pos, dest_path),
    }
    d.errors.len() == before
}

#[cfg(test)]
mod tests {
    use super::super::keys;

    #[test]
    fn every_type_accepts_the_delivery_keys() {
        for ty in keys::DESTINATION_TYPES {
            let ks = super::keys_of(ty).unwrap();
            assert!(ks.contains(&"type"), "{ty}");
            for k in keys::DELIVERY {
                assert!(ks.contains(k), "{ty} lacks {k}");
            }
        }
    }
}
