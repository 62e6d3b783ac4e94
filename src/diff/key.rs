//! Sort keys: identifiers encoded so that byte-wise order is the order in which the source
//! returns them. The state store keeps rows in this order, so the diff is one streaming merge.
//!
//! Integers are tag `0x01` + the big-endian value with the sign bit flipped (numeric order);
//! text is tag `0x02` + its UTF-8 bytes (byte-wise, i.e. `COLLATE "C"`). Integers sort before
//! text, as SQLite orders mixed columns.

use serde_json::Value;

/// How the source orders the key column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrder {
    /// Integers numerically (text values, where a column mixes them, after all integers).
    Integer,
    /// Byte-wise on the text form of every value.
    Text,
}

pub const TAG_INT: u8 = 0x01;
pub const TAG_TEXT: u8 = 0x02;

fn text_key(s: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(s.len() + 1);
    k.push(TAG_TEXT);
    k.extend_from_slice(s.as_bytes());
    k
}

fn int_key(n: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(TAG_INT);
    k.extend_from_slice(&((n as u64) ^ (1 << 63)).to_be_bytes());
    k
}

/// `(sort key, identifier text)` of a key value, or why it cannot key a row.
pub fn encode(v: &Value, order: KeyOrder) -> Result<(Vec<u8>, String), &'static str> {
    match v {
        Value::Null => Err("null identifier"),
        Value::String(s) if s.is_empty() => Err("empty identifier"),
        Value::String(s) => Ok((text_key(s), s.clone())),
        Value::Array(_) | Value::Object(_) => Err("identifier is a list or object, not a single value"),
        Value::Bool(b) => match order {
            KeyOrder::Integer => Ok((int_key(i64::from(*b)), i64::from(*b).to_string())),
            KeyOrder::Text => Ok((text_key(if *b { "true" } else { "false" }), b.to_string())),
        },
        Value::Number(n) => {
            let text = n.to_string();
            match order {
                KeyOrder::Text => Ok((text_key(&text), text)),
                KeyOrder::Integer => {
                    if let Some(i) = n.as_i64() {
                        Ok((int_key(i), i.to_string()))
                    } else if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15) {
                        Ok((int_key(f as i64), (f as i64).to_string()))
                    } else {
                        Err("identifier is not a whole number in the 64-bit range")
                    }
                }
            }
        }
    }
}

/// The identifier as the destination knows it, from a stored key: integers as numbers.
pub fn identifier_value(key: &[u8], identifier: &str) -> Value {
    if key.first() == Some(&TAG_INT) {
        if let Ok(n) = identifier.parse::<i64>() {
            return Value::from(n);
        }
    }
    Value::String(identifier.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integer_keys_sort_numerically_and_before_text() {
        let mut vals = vec![json!(10), json!(-3), json!(9), json!("10"), json!("9"), json!(i64::MIN), json!(i64::MAX), json!("a")];
        let keys: Vec<Vec<u8>> = vals.iter().map(|v| encode(v, KeyOrder::Integer).unwrap().0).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        vals.sort_by_key(|v| encode(v, KeyOrder::Integer).unwrap().0);
        assert_eq!(vals, vec![json!(i64::MIN), json!(-3), json!(9), json!(10), json!(i64::MAX), json!("10"), json!("9"), json!("a")]);
        assert_eq!(identifier_value(&encode(&json!(42), KeyOrder::Integer).unwrap().0, "42"), json!(42));
    }

    #[test]
    fn text_keys_sort_bytewise() {
        let mut vals = vec!["b", "B", "a", "ä", "aa", "10", "9"];
        vals.sort_by_key(|v| encode(&json!(v), KeyOrder::Text).unwrap().0);
        assert_eq!(vals, vec!["10", "9", "B", "a", "aa", "b", "ä"]);
        // Under Text order, numbers are keyed by their text.
        assert_eq!(encode(&json!(7), KeyOrder::Text).unwrap(), (vec![TAG_TEXT, b'7'], "7".to_string()));
        assert!(encode(&json!(null), KeyOrder::Text).is_err());
        assert!(encode(&json!(1.5), KeyOrder::Integer).is_err());
    }
}
