//! dbt models by name: a sync that names `dbt_model: pub_hubspot_contacts` reads the relation
//! dbt built for it, found in the dbt project's `target/manifest.json` (written by `dbt parse`,
//! `dbt compile`, `dbt run` and `dbt build`).

use std::path::Path;

use serde_json::Value;

use crate::config::did_you_mean;
use crate::error::{Error, Result};

/// The SQL relation (`"db"."schema"."alias"`) dbt builds for `model`.
pub fn resolve(manifest: &Path, model: &str) -> Result<String> {
    resolve_quoted(manifest, model, false)
}

/// Like [`resolve`]; `backticks` quotes a relation built from its parts as MySQL does
/// (`` `schema`.`alias` ``). The manifest's own `relation_name` is already quoted by the adapter.
pub fn resolve_quoted(manifest: &Path, model: &str, backticks: bool) -> Result<String> {
    let text = std::fs::read_to_string(manifest).map_err(|e| {
        Error::config(format!(
            "cannot read the dbt manifest {} to find model `{model}`: {e}; run `dbt parse` (or build) in the dbt project, or set `dbt_manifest` on the source",
            manifest.display()
        ))
    })?;
    let doc: Value = serde_json::from_str(&text)
        .map_err(|e| Error::config(format!("the dbt manifest {} is not valid JSON: {e}", manifest.display())))?;
    let nodes = doc.get("nodes").and_then(Value::as_object).ok_or_else(|| {
        Error::config(format!("{} has no `nodes`: is it a dbt manifest.json?", manifest.display()))
    })?;
    let models: Vec<&Value> =
        nodes.values().filter(|n| n.get("resource_type").and_then(Value::as_str) == Some("model")).collect();
    let name_of = |n: &Value| n.get("name").and_then(Value::as_str).unwrap_or("").to_string();
    let matches: Vec<&&Value> = models
        .iter()
        .filter(|n| name_of(n) == model || n.get("unique_id").and_then(Value::as_str) == Some(model))
        .collect();
    let node = match matches.as_slice() {
        [one] => **one,
        [] => {
            let names: Vec<String> = models.iter().map(|n| name_of(n)).collect();
            let mut listed: Vec<&str> = names.iter().map(String::as_str).collect();
            listed.sort_unstable();
            listed.truncate(20);
            return Err(Error::config(format!(
                "dbt model `{model}` is not in {}{}; its models include: {}",
                manifest.display(),
                did_you_mean(model, names.iter().map(String::as_str)),
                if listed.is_empty() { "none".to_string() } else { listed.join(", ") }
            )));
        }
        several => {
            let ids: Vec<&str> = several.iter().filter_map(|n| n.get("unique_id").and_then(Value::as_str)).collect();
            return Err(Error::config(format!(
                "dbt model name `{model}` is ambiguous in {}: use one of {}",
                manifest.display(),
                ids.join(", ")
            )));
        }
    };
    if let Some(rel) = node.get("relation_name").and_then(Value::as_str).filter(|r| !r.is_empty()) {
        return Ok(rel.to_string());
    }
    // Older manifests: build it from database, schema and alias.
    let part = |k: &str| node.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let quote = |s: &str| {
        if backticks { format!("`{}`", s.replace('`', "``")) } else { format!("\"{}\"", s.replace('"', "\"\"")) }
    };
    let name = part("alias").or_else(|| part("name")).unwrap_or(model);
    let mut parts: Vec<String> = Vec::new();
    // MySQL has no databases above schemas: dbt-mysql leaves `database` empty or equal to the schema.
    if let Some(db) = part("database").filter(|_| !backticks) {
        parts.push(quote(db));
    }
    if let Some(schema) = part("schema") {
        parts.push(quote(schema));
    }
    parts.push(quote(name));
    Ok(parts.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(dir: &Path, body: &str) -> std::path::PathBuf {
        let p = dir.join("manifest.json");
        std::fs::write(&p, body).unwrap();
        p
    }

    #[test]
    fn resolves_models_and_explains_misses() {
        let dir = tempfile::tempdir().unwrap();
        let p = manifest(
            dir.path(),
            r#"{"nodes": {
                "model.shop.pub_hubspot_contacts": {"resource_type": "model", "name": "pub_hubspot_contacts", "unique_id": "model.shop.pub_hubspot_contacts", "relation_name": "\"analytics\".\"marts\".\"pub_hubspot_contacts\""},
                "model.shop.stg_users": {"resource_type": "model", "name": "stg_users", "unique_id": "model.shop.stg_users", "database": "analytics", "schema": "staging", "alias": "users"},
                "test.shop.not_null": {"resource_type": "test", "name": "not_null"}
            }}"#,
        );
        assert_eq!(resolve(&p, "pub_hubspot_contacts").unwrap(), "\"analytics\".\"marts\".\"pub_hubspot_contacts\"");
        assert_eq!(resolve(&p, "stg_users").unwrap(), "\"analytics\".\"staging\".\"users\"");
        let e = resolve(&p, "pub_hubspot_contact").unwrap_err().to_string();
        assert!(e.contains("dbt model `pub_hubspot_contact` is not in") && e.contains("did you mean `pub_hubspot_contacts`"), "{e}");
        // MySQL quotes with backticks and has no database above the schema.
        assert_eq!(resolve_quoted(&p, "stg_users", true).unwrap(), "`staging`.`users`");
        let e = resolve(&dir.path().join("missing.json"), "x").unwrap_err().to_string();
        assert!(e.contains("run `dbt parse`"), "{e}");
    }
}
