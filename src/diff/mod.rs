//! Fingerprints and the plan of a run: which rows are new, changed, unchanged or invalid.
//!
//! A row's fingerprint is the xxh3-128 of its canonical mapped payload: the JSON object of
//! destination fields with keys in sorted order, so reordering mappings changes nothing while
//! any change of a mapped value or of the mappings themselves changes the fingerprint.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::store::{Fingerprint, RecordKind, RunRecordOutcome};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Change,
}

#[derive(Debug, Clone)]
pub struct PlannedRow {
    pub identifier: String,
    pub payload: Map<String, Value>,
    pub fingerprint: Fingerprint,
    pub op: Op,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub source_rows: i64,
    pub rows: Vec<PlannedRow>,
    pub unchanged: i64,
    pub invalid: Vec<RunRecordOutcome>,
}

impl Plan {
    pub fn adds(&self) -> i64 {
        self.rows.iter().filter(|r| r.op == Op::Add).count() as i64
    }
    pub fn changes(&self) -> i64 {
        self.rows.iter().filter(|r| r.op == Op::Change).count() as i64
    }
}

/// Collects mapped source rows, then plans them against the acknowledged state.
#[derive(Default)]
pub struct Planner {
    rows: Vec<(String, Map<String, Value>)>,
    occurrences: HashMap<String, u32>,
    invalid: Vec<RunRecordOutcome>,
    source_rows: i64,
    operation: String,
}

impl Planner {
    pub fn new(operation: &str) -> Self {
        Planner { operation: operation.to_string(), ..Default::default() }
    }

    /// Add one mapped row whose identifier value is `id`.
    pub fn push(&mut self, id: &Value, payload: Map<String, Value>) {
        self.source_rows += 1;
        match identifier_key(id) {
            Ok(key) => {
                *self.occurrences.entry(key.clone()).or_insert(0) += 1;
                self.rows.push((key, payload));
            }
            Err(why) => self.invalid.push(RunRecordOutcome {
                identifier: None,
                kind: RecordKind::Invalid,
                operation: self.operation.clone(),
                reason: format!("{why}: the row cannot be matched to a destination record"),
                payload: Some(Value::Object(payload).to_string()),
            }),
        }
    }

    /// Rows with a duplicated identifier are all invalid; the rest are diffed against `state`.
    /// With `full_sync`, unchanged rows are sent again.
    pub fn plan(self, state: &HashMap<String, Fingerprint>, full_sync: bool) -> Plan {
        let mut plan = Plan { source_rows: self.source_rows, invalid: self.invalid, ..Default::default() };
        for (key, payload) in self.rows {
            let n = self.occurrences.get(&key).copied().unwrap_or(1);
            if n > 1 {
                plan.invalid.push(RunRecordOutcome {
                    identifier: Some(key),
                    kind: RecordKind::Invalid,
                    operation: self.operation.clone(),
                    reason: format!("duplicate identifier: {n} source rows share it; make the identifier unique in the model"),
                    payload: Some(Value::Object(payload).to_string()),
                });
                continue;
            }
            let fp = fingerprint(&payload);
            let op = match state.get(&key) {
                None => Op::Add,
                Some(old) if *old == fp && !full_sync => {
                    plan.unchanged += 1;
                    continue;
                }
                Some(_) => Op::Change,
            };
            plan.rows.push(PlannedRow { identifier: key, payload, fingerprint: fp, op });
        }
        plan
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

    #[test]
    fn plan_classifies_rows() {
        let mut state = HashMap::new();
        let same = obj(json!({"email": "same@x.io", "n": 1}));
        state.insert("same@x.io".to_string(), fingerprint(&same));
        state.insert("chg@x.io".to_string(), fingerprint(&obj(json!({"email": "chg@x.io", "n": 1}))));

        let mut p = Planner::new("upsert");
        p.push(&json!("same@x.io"), same.clone());
        p.push(&json!("chg@x.io"), obj(json!({"email": "chg@x.io", "n": 2})));
        p.push(&json!("new@x.io"), obj(json!({"email": "new@x.io", "n": 3})));
        p.push(&json!(null), obj(json!({"email": null})));
        p.push(&json!("dup@x.io"), obj(json!({"email": "dup@x.io", "n": 1})));
        p.push(&json!("dup@x.io"), obj(json!({"email": "dup@x.io", "n": 2})));
        let plan = p.plan(&state, false);
        assert_eq!(plan.source_rows, 6);
        assert_eq!(plan.unchanged, 1);
        assert_eq!((plan.adds(), plan.changes()), (1, 1));
        assert_eq!(plan.invalid.len(), 3, "null + both duplicates");
        assert!(plan.invalid.iter().any(|o| o.reason.starts_with("null identifier")));
        assert_eq!(plan.invalid.iter().filter(|o| o.reason.starts_with("duplicate")).count(), 2);
        let new = plan.rows.iter().find(|r| r.identifier == "new@x.io").unwrap();
        assert_eq!(new.op, Op::Add);
        let chg = plan.rows.iter().find(|r| r.identifier == "chg@x.io").unwrap();
        assert_eq!(chg.op, Op::Change);
    }

    #[test]
    fn full_sync_resends_unchanged() {
        let row = obj(json!({"id": 7}));
        let mut state = HashMap::new();
        state.insert("7".to_string(), fingerprint(&row));
        let mut p = Planner::new("upsert");
        p.push(&json!(7), row);
        let plan = p.plan(&state, true);
        assert_eq!(plan.rows.len(), 1);
        assert_eq!(plan.rows[0].op, Op::Change);
    }
}
