//! The documentation matches the code: every key the project loader accepts is documented in
//! docs/configuration.md, in the right table, and nothing there is a key the loader refuses.

use std::collections::BTreeSet;

use sluicegate::config::{destination_keys, keys};

fn doc() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md")).unwrap()
}

/// The first-column keys of the table that follows `<!-- keys: NAME -->`.
fn documented(doc: &str, name: &str) -> BTreeSet<String> {
    let marker = format!("<!-- keys: {name} -->");
    let start = doc.find(&marker).unwrap_or_else(|| panic!("docs/configuration.md has no table marked {marker}"));
    let mut keys = BTreeSet::new();
    let mut in_table = false;
    for line in doc[start + marker.len()..].lines() {
        let line = line.trim();
        if line.starts_with('|') {
            in_table = true;
            let cell = line.trim_start_matches('|').split('|').next().unwrap_or("").trim();
            if cell.starts_with('`') {
                keys.insert(cell.trim_matches('`').to_string());
            }
        } else if in_table {
            break;
        }
    }
    assert!(!keys.is_empty(), "the table marked {marker} lists no keys");
    keys
}

fn set(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn every_key_is_documented_where_it_belongs() {
    let doc = doc();
    let mut delivery = set(keys::DELIVERY);
    delivery.insert("type".into());
    let tables: Vec<(&str, BTreeSet<String>)> = vec![
        ("top", set(keys::TOP)),
        ("source", set(keys::SOURCE)),
        ("delivery", delivery.clone()),
        ("retry", set(keys::RETRY)),
        ("rate_limit", set(keys::RATE_LIMIT)),
        ("sync", set(keys::SYNC)),
        ("sync_source", set(keys::SYNC_SOURCE)),
        ("sync_destination", set(keys::SYNC_DESTINATION)),
        ("identifier", set(keys::IDENTIFIER)),
        ("mapping", set(keys::MAPPING)),
    ];
    for (name, want) in tables {
        assert_eq!(documented(&doc, name), want, "docs/configuration.md, table `{name}`");
    }
    for ty in keys::DESTINATION_TYPES {
        let own: BTreeSet<String> = set(destination_keys(ty).unwrap()).difference(&delivery).cloned().collect();
        assert_eq!(documented(&doc, ty), own, "docs/configuration.md, table for `type: {ty}`");
        assert!(doc.contains(&format!("### `type: {ty}`")), "no section for type {ty}");
    }
}

#[test]
fn every_value_is_named() {
    let doc = doc();
    for word in keys::BEHAVIORS.iter().chain(keys::FIELD_TYPES).chain(keys::DESTINATION_TYPES) {
        assert!(doc.contains(&format!("`{word}`")), "docs/configuration.md never names `{word}`");
    }
    let dest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/destinations.md")).unwrap();
    for ty in keys::DESTINATION_TYPES {
        assert!(dest.contains(&format!("## `{ty}`")), "docs/destinations.md has no section for `{ty}`");
    }
}

/// Every `yaml` block of the README and of docs/ that is a whole project file (it has
/// `syncs:`), or a `destinations:` fragment, loads without error.
#[test]
fn project_file_examples_load() {
    let root = env!("CARGO_MANIFEST_DIR");
    let env = |name: &str| {
        Some(match name {
            n if n.contains("PG_URL") => "postgres://u:p@127.0.0.1:5432/db".to_string(),
            n if n.ends_with("URL") => "http://127.0.0.1:9/hook".to_string(),
            n => format!("value-of-{n}"),
        })
    };
    let mut checked = 0;
    for file in ["README.md", "docs/configuration.md", "docs/destinations.md"] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        for (i, block) in text.split("```yaml\n").skip(1).enumerate() {
            let block = block.split("```").next().unwrap();
            let project = if block.contains("syncs:") && block.contains("sources:") {
                block.to_string()
            } else if block.starts_with("destinations:") {
                // A fragment: complete it with a source and, unless it has some, a sync.
                let mut p = format!("sources:\n  warehouse:\n    url: sqlite://w.db\n{block}");
                if !block.contains("syncs:") {
                    let (name, _) = block.lines().nth(1).unwrap().trim().split_once(':').unwrap();
                    let object = if block.contains("type: salesforce") { "Lead" } else if block.contains("type: postgres") { "t" } else { "contacts" };
                    let object = if block.contains("type: iterable") { "users" } else { object };
                    p.push_str(&format!(
                        "syncs:\n  - id: 1\n    name: s\n    source: {{connection: warehouse, table: t}}\n    destination: {{connection: {name}, object: {object}}}\n    primary_identifier: {{from: email, to: {}}}\n",
                        if object == "Lead" { "External_Id__c" } else { "email" }
                    ));
                }
                p
            } else {
                continue;
            };
            sluicegate::config::Project::from_str_with_env(&project, std::path::Path::new(file), &env)
                .unwrap_or_else(|e| panic!("{file}, yaml block {}: {e}\n{project}", i + 1));
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} examples checked");
}
