//! Fingerprints and sort keys: what the diff between a source and the acknowledged state is
//! made of. The merge itself is in [`crate::engine`].
//!
//! A row's fingerprint is the xxh3-128 of its canonical mapped payload: the JSON object of
//! destination fields with keys in sorted order, so reordering mappings changes nothing while
//! any change of a mapped value or of the mappings themselves changes the fingerprint.

pub mod key;

use serde_json::{Map, Value};

use crate::store::Fingerprint;

pub fn fingerprint(payload: &Map<String, Value>) -> Fingerprint {
    // serde_json's Map is ordered by key, so the serialization is canonical.
    let bytes = serde_json::to_vec(payload).unwrap_or_default();
    xxhash_rust::xxh3::xxh3_128(&bytes)
}

/// The state key of an identifier value; `Err` says why the value cannot identify a row.
pub fn identifier_key(v: &Value) -> Result<String, &'static str> {
    match v {
        Value::Null => Err("null identifier"),
        Value::String(s) if s.is_empty() => Err("empty identifier"),
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Array(_) | Value::Object(_) => Err("identifier is a list or object, not a single value"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn fingerprint_ignores_key_order_but_not_values() {
        let a = obj(json!({"email": "a@x.io", "name": "A"}));
        let mut b = Map::new();
        b.insert("name".into(), json!("A"));
        b.insert("email".into(), json!("a@x.io"));
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&obj(json!({"email": "a@x.io", "name": "B"}))));
        // null and empty string are different values
        assert_ne!(fingerprint(&obj(json!({"x": null}))), fingerprint(&obj(json!({"x": ""}))));
        // 1 and "1" are different values
        assert_ne!(fingerprint(&obj(json!({"x": 1}))), fingerprint(&obj(json!({"x": "1"}))));
    }

}
