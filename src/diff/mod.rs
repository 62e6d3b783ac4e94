//! Fingerprints and sort keys: what the diff between a source and the acknowledged state is
//! made of. The merge itself is in [`crate::engine`].
//!
//! A row's fingerprint is the xxh3-128 of its canonical mapped payload: the destination fields
//! in sorted order, each value encoded with a type tag and lengths ([`encode_value`]), so
//! reordering mappings changes nothing while any change of a mapped value (`1` vs `"1"`, null
//! vs `""`) or of the mappings themselves changes the fingerprint.

pub mod key;

use serde_json::{Map, Value};

use crate::store::Fingerprint;

pub fn fingerprint(payload: &Map<String, Value>) -> Fingerprint {
    let mut buf = Vec::with_capacity(256);
    for (k, v) in payload {
        encode_field(&mut buf, k, v);
    }
    xxhash_rust::xxh3::xxh3_128(&buf)
}

fn encode_len(buf: &mut Vec<u8>, n: usize) {
    buf.extend_from_slice(&(n as u64).to_le_bytes());
}

/// Append a field (name and value) to a fingerprint's input.
pub fn encode_field(buf: &mut Vec<u8>, name: &str, v: &Value) {
    encode_len(buf, name.len());
    buf.extend_from_slice(name.as_bytes());
    encode_value(buf, v);
}

/// Append a value's canonical encoding: a type tag, then lengths and bytes. Numbers are their
/// exact digits, so `1`, `1.0` and `"1"` all differ.
pub fn encode_value(buf: &mut Vec<u8>, v: &Value) {
    use std::io::Write as _;
    match v {
        Value::Null => buf.push(0),
        Value::Bool(b) => buf.extend_from_slice(&[1, u8::from(*b)]),
        Value::Number(n) => {
            buf.push(2);
            let at = buf.len();
            buf.extend_from_slice(&[0; 8]);
            let _ = write!(buf, "{n}");
            let len = (buf.len() - at - 8) as u64;
            buf[at..at + 8].copy_from_slice(&len.to_le_bytes());
        }
        Value::String(s) => {
            buf.push(3);
            encode_len(buf, s.len());
            buf.extend_from_slice(s.as_bytes());
        }
        Value::Array(items) => {
            buf.push(4);
            encode_len(buf, items.len());
            for item in items {
                encode_value(buf, item);
            }
        }
        Value::Object(map) => {
            buf.push(5);
            encode_len(buf, map.len());
            for (k, item) in map {
                encode_field(buf, k, item);
            }
        }
    }
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
