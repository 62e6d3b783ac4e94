//! Mapping a source row to a destination record: columns and constants to fields, optional
//! type conversion, "don't sync nulls", and the canonical bytes that are fingerprinted.

use serde_json::{Map, Value};

use crate::config::{FieldSource, FieldType, SyncConfig};
use crate::source::RawCodec;
use crate::store::Fingerprint;

enum From {
    Column(usize),
    Constant(Value),
}

struct Field {
    to: String,
    /// The last field (in this order) reading its column moves the value; others clone it.
    take: bool,
    from: From,
    sync_nulls: bool,
    field_type: Option<FieldType>,
    /// For messages: `column lead_score` or `constant`.
    origin: String,
}

/// A sync's mappings, resolved against the columns it selects, in destination-field order.
pub struct Mapper {
    fields: Vec<Field>,
}

/// A mapped row: field values in destination-field order (a `None` is a field left out).
pub struct Mapped {
    values: Vec<Option<Value>>,
}

impl Mapper {
    /// `column_index` gives the position of a source column in the selected row.
    pub fn new(sync: &SyncConfig, column_index: &dyn Fn(&str) -> usize) -> Mapper {
        let mut fields: Vec<Field> = sync
            .all_mappings()
            .map(|m| {
                let (from, origin) = match &m.source {
                    FieldSource::Column(c) => (From::Column(column_index(c)), format!("column {c}")),
                    FieldSource::Constant(v) => (From::Constant(v.clone()), "constant".to_string()),
                };
                Field { to: m.to.clone(), take: false, from, sync_nulls: m.sync_nulls, field_type: m.field_type, origin }
            })
            .collect();
        // serde_json's Map orders keys as `String` does; the canonical bytes follow that order.
        fields.sort_by(|a, b| a.to.cmp(&b.to));
        let mut seen = std::collections::HashSet::new();
        for f in fields.iter_mut().rev() {
            if let From::Column(i) = f.from {
                f.take = seen.insert(i);
            }
        }
        Mapper { fields }
    }

    /// Map one row, moving its values; `Err` is the reason the row is invalid, and leaves
    /// the row as it was (conversions are checked before anything is moved).
    pub fn map_owned(&self, row: &mut [Value]) -> Result<Mapped, String> {
        let mut converted: Vec<Option<Value>> = Vec::new();
        for (n, f) in self.fields.iter().enumerate() {
            if let (Some(t), From::Column(i)) = (f.field_type, &f.from) {
                if converted.is_empty() {
                    converted.resize(self.fields.len(), None);
                }
                if !row[*i].is_null() {
                    let v = convert(row[*i].clone(), t).map_err(|why| format!("field {} ({}): {why}", f.to, f.origin))?;
                    converted[n] = Some(v);
                }
            }
        }
        let mut values = Vec::with_capacity(self.fields.len());
        for (n, f) in self.fields.iter().enumerate() {
            let v = match (converted.get_mut(n).and_then(Option::take), &f.from) {
                (Some(v), _) => v,
                (None, From::Column(i)) if f.take => std::mem::take(&mut row[*i]),
                (None, From::Column(i)) => row[*i].clone(),
                (None, From::Constant(c)) => match f.field_type {
                    Some(t) if !c.is_null() => convert(c.clone(), t).map_err(|why| format!("field {} (constant): {why}", f.to))?,
                    _ => c.clone(),
                },
            };
            values.push(if v.is_null() && !f.sync_nulls { None } else { Some(v) });
        }
        Ok(Mapped { values })
    }

    /// Map one row; `Err` is the reason the row is invalid.
    pub fn map(&self, row: &[Value]) -> Result<Mapped, String> {
        let mut values = Vec::with_capacity(self.fields.len());
        for f in &self.fields {
            let v = match &f.from {
                From::Column(i) => row[*i].clone(),
                From::Constant(v) => v.clone(),
            };
            let v = match (f.field_type, v) {
                (_, Value::Null) => Value::Null,
                (Some(t), v) => convert(v, t).map_err(|why| format!("field {} ({}): {why}", f.to, f.origin))?,
                (None, v) => v,
            };
            values.push(if v.is_null() && !f.sync_nulls { None } else { Some(v) });
        }
        Ok(Mapped { values })
    }

    /// The fingerprint of a mapped row: the same as [`crate::diff::fingerprint`] of the record
    /// [`Mapper::record`] builds, computed without building it.
    pub fn fingerprint(&self, m: &Mapped, buf: &mut Vec<u8>) -> Fingerprint {
        buf.clear();
        for (f, v) in self.fields.iter().zip(&m.values) {
            if let Some(v) = v {
                crate::diff::encode_field(buf, &f.to, v);
            }
        }
        xxhash_rust::xxh3::xxh3_128(buf)
    }

    /// The fingerprint of a row read as a binary tuple (see [`crate::source::RawRows`]),
    /// computed from the bytes as read, without decoding them. It covers the same things as
    /// [`Mapper::fingerprint`] (each field's name, origin, type conversion and value) but hashes
    /// the source's binary form of each value: equal tuples map to equal payloads, so a row
    /// whose fingerprint matches the state is unchanged. Like [`Mapper::fingerprint`], it
    /// depends on `sync_nulls` only through the payload: a null left out is not hashed at all,
    /// a null sent is, and a value that is not null is hashed the same whatever `sync_nulls`
    /// says (so toggling it resends only rows with nulls). (Rows read from other sources are
    /// fingerprinted from their JSON values; moving a sync to another kind of source resends
    /// its rows once.)
    pub fn fingerprint_raw(&self, codec: &RawCodec, tuple: &[u8], offsets: &[(usize, i32)], buf: &mut Vec<u8>) -> Fingerprint {
        buf.clear();
        buf.extend_from_slice(b"raw1");
        for f in &self.fields {
            let null = match &f.from {
                From::Constant(v) => v.is_null(),
                From::Column(i) => offsets[*i].1 < 0,
            };
            if null && !f.sync_nulls {
                continue; // left out of the payload
            }
            buf.extend_from_slice(&(f.to.len() as u64).to_le_bytes());
            buf.extend_from_slice(f.to.as_bytes());
            buf.push(f.field_type.map_or(0, |t| t as u8 + 1));
            // Formerly `sync_nulls` itself; a constant 1 keeps the fingerprints of syncs that
            // send nulls (the default) as they were.
            buf.push(1);
            match &f.from {
                From::Constant(v) => {
                    buf.push(0xFE);
                    crate::diff::encode_value(buf, v);
                }
                From::Column(i) => {
                    buf.push(codec.format_tag(*i));
                    let (at, len) = offsets[*i];
                    buf.extend_from_slice(&len.to_le_bytes());
                    if len > 0 {
                        buf.extend_from_slice(&tuple[at..at + len as usize]);
                    }
                }
            }
        }
        xxhash_rust::xxh3::xxh3_128(buf)
    }

    /// The record sent to the destination.
    pub fn record(&self, m: Mapped) -> Map<String, Value> {
        let mut out = Map::new();
        for (f, v) in self.fields.iter().zip(m.values) {
            if let Some(v) = v {
                out.insert(f.to.clone(), v);
            }
        }
        out
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Convert a non-null value to a destination field type.
pub fn convert(v: Value, t: FieldType) -> Result<Value, String> {
    match t {
        FieldType::Json => Ok(v),
        FieldType::String => Ok(Value::String(text(&v))),
        FieldType::Integer => match &v {
            Value::Number(n) if n.as_i64().is_some() || n.as_u64().is_some() => Ok(v),
            Value::Number(n) => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Value::from(f as i64)),
                _ => Err(format!("{n} is not a whole number")),
            },
            Value::String(s) => s.trim().parse::<i64>().map(Value::from).map_err(|_| format!("{s:?} is not an integer")),
            Value::Bool(b) => Ok(Value::from(i64::from(*b))),
            other => Err(format!("{} is not an integer", other)),
        },
        FieldType::Number => match &v {
            Value::Number(_) => Ok(v),
            Value::String(s) => match s.trim().parse::<f64>().ok().filter(|f| f.is_finite()) {
                // Keep the digits as written: "12.50" stays exact.
                Some(_) => serde_json::from_str::<Value>(s.trim())
                    .ok()
                    .filter(Value::is_number)
                    .map(Ok)
                    .unwrap_or_else(|| Err(format!("{s:?} is not a number"))),
                None => Err(format!("{s:?} is not a number")),
            },
            other => Err(format!("{} is not a number", other)),
        },
        FieldType::Boolean => match &v {
            Value::Bool(_) => Ok(v),
            Value::Number(n) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => Ok(Value::Bool(n.as_i64() == Some(1))),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "t" | "yes" | "1" => Ok(Value::Bool(true)),
                "false" | "f" | "no" | "0" => Ok(Value::Bool(false)),
                _ => Err(format!("{s:?} is not a boolean")),
            },
            other => Err(format!("{} is not a boolean", other)),
        },
        FieldType::Datetime => match &v {
            Value::String(s) => datetime(s).ok_or_else(|| format!("{s:?} is not an ISO-8601 date or timestamp")),
            other => Err(format!("{} is not an ISO-8601 date or timestamp", other)),
        },
    }
}

/// `2026-01-31T12:00:00+02:00`, `2026-01-31 12:00:00` (taken as UTC) or `2026-01-31` → UTC.
fn datetime(s: &str) -> Option<Value> {
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    let s = s.trim();
    let t = if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        t
    } else if let Ok(t) = time::PrimitiveDateTime::parse(s, format_description!("[year]-[month]-[day] [hour]:[minute]:[second]")) {
        t.assume_utc()
    } else if let Ok(t) =
        time::PrimitiveDateTime::parse(s, format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]"))
    {
        t.assume_utc()
    } else if let Ok(t) = time::PrimitiveDateTime::parse(s, format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]")) {
        t.assume_utc()
    } else if let Ok(d) = time::Date::parse(s, format_description!("[year]-[month]-[day]")) {
        d.midnight().assume_utc()
    } else {
        return None;
    };
    // Out of range in UTC (e.g. 9999-12-31T23:00:00-05:00): not a timestamp we can send.
    let t = t.checked_to_offset(time::UtcOffset::UTC)?;
    let fmt = if t.nanosecond() == 0 {
        t.format(format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z"))
    } else {
        t.format(format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"))
    };
    fmt.ok().map(Value::String)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conversions() {
        assert_eq!(convert(json!("42"), FieldType::Integer).unwrap(), json!(42));
        assert!(convert(json!("4x"), FieldType::Integer).unwrap_err().contains("not an integer"));
        assert_eq!(convert(json!(3.0), FieldType::Integer).unwrap(), json!(3));
        assert_eq!(convert(json!("12.50"), FieldType::Number).unwrap().to_string(), "12.50");
        assert_eq!(convert(json!(1), FieldType::Boolean).unwrap(), json!(true));
        assert_eq!(convert(json!(12), FieldType::String).unwrap(), json!("12"));
        assert_eq!(convert(json!("2026-03-01T10:00:00+02:00"), FieldType::Datetime).unwrap(), json!("2026-03-01T08:00:00Z"));
        assert_eq!(convert(json!("2026-03-01"), FieldType::Datetime).unwrap(), json!("2026-03-01T00:00:00Z"));
        assert!(convert(json!("yesterday"), FieldType::Datetime).is_err());
    }
}

#[cfg(test)]
mod fingerprint_tests {
    use super::*;
    use serde_json::json;
    use crate::config::Project;

    #[test]
    fn mapper_fingerprint_equals_the_fingerprint_of_the_record() {
        let yml = "sources: {w: {url: 'sqlite://w.db'}}\ndestinations: {d: {type: webhook, url: 'http://h/x'}}\nsyncs:\n  - id: 1\n    name: s\n    source: {connection: w, table: t}\n    destination: {connection: d}\n    primary_identifier: {from: id, to: id}\n    mappings:\n      - {from: b, to: zeta}\n      - {from: a, to: alpha, sync_nulls: false}\n      - {constant: 7, to: mid}\n";
        let p = Project::from_str_with_env(yml, std::path::Path::new("p.yml"), &|_| None).unwrap();
        let cols = ["id", "a", "b"];
        let mapper = Mapper::new(&p.syncs[0], &|c| cols.iter().position(|x| *x == c).unwrap());
        let mut buf = Vec::new();
        for row in [
            vec![json!(1), json!("x"), json!({"k": [1, "2", null]})],
            vec![json!(2), Value::Null, json!("é\"\n")],
            vec![json!("3"), json!(1.5), json!(true)],
        ] {
            let mut r = row.clone();
            let m = mapper.map_owned(&mut r).unwrap();
            let fp = mapper.fingerprint(&m, &mut buf);
            let record = mapper.record(m);
            assert_eq!(fp, crate::diff::fingerprint(&record), "{record:?}");
        }
    }
}
