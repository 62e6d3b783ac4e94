//! Project-file errors: each names file:line:column and the key, and says what would be valid.

mod common;

use std::path::Path;

use sluicegate::config::Project;
use sluicegate::ErrorKind;

fn load(text: &str) -> Result<Project, sluicegate::Error> {
    let env = |name: &str| (name == "SET_VAR").then(|| "value".to_string());
    Project::from_str_with_env(text, Path::new("sluicegate.yml"), &env)
}

fn err(text: &str) -> String {
    let e = load(text).expect_err("the project should not load");
    assert_eq!(e.kind(), ErrorKind::Config);
    e.to_string()
}

const VALID: &str = r#"sources:
  warehouse:
    url: sqlite://warehouse.db
destinations:
  hook:
    type: webhook
    url: http://127.0.0.1:9/x
syncs:
  - id: 1
    name: contacts
    source:
      connection: warehouse
      table: contacts
    destination:
      connection: hook
    primary_identifier:
      from: email
      to: email
    mappings:
      - from: name
        to: full_name
"#;

#[test]
fn valid_project_loads_with_defaults() {
    let p = load(VALID).unwrap();
    assert_eq!(p.syncs.len(), 1);
    let s = &p.syncs[0];
    assert_eq!((s.id, s.name.as_str(), s.behavior.as_str()), (1, "contacts", "upsert"));
    let d = &p.destinations["hook"];
    assert_eq!(d.delivery.retry.max_attempts, 5);
    assert_eq!(d.delivery.batch_size, None);
    assert!(matches!(&d.kind, sluicegate::config::DestinationKind::Webhook(_)));
}

#[test]
fn unknown_key_names_location_and_suggests() {
    let text = VALID.replace("    mappings:", "    mapings:");
    let e = err(&text);
    assert!(e.contains("sluicegate.yml:19:5: syncs[0].mapings: unknown key `mapings` (did you mean `mappings`?)"), "{e}");
    assert!(e.contains("valid keys here: id, name, source, destination, primary_identifier, mappings, behavior"), "{e}");
}

#[test]
fn missing_key_names_the_mapping() {
    let text = VALID.replace("    primary_identifier:\n      from: email\n      to: email\n", "");
    let e = err(&text);
    assert!(e.contains("sluicegate.yml:9:5: syncs[0].primary_identifier: missing required key `primary_identifier`"), "{e}");
}

#[test]
fn wrong_type_says_what_was_found() {
    let e = err(&VALID.replace("id: 1", "id: one"));
    assert!(e.contains("sluicegate.yml:9:9: syncs[0].id: expected a whole number from 1 to"), "{e}");
    assert!(e.contains("found a string"), "{e}");
    let e = err(&VALID.replace("url: http://127.0.0.1:9/x", "url: http://127.0.0.1:9/x\n    batch_size: 50000"));
    assert!(e.contains("destinations.hook.batch_size: 50000 is out of range; use a whole number from 1 to 10000"), "{e}");
    let e = err(&VALID.replace("    mappings:\n", "    mappings: name\n").replace("      - from: name\n        to: full_name\n", ""));
    assert!(e.contains("syncs[0].mappings: expected a list"), "{e}");
}

#[test]
fn duplicate_sync_ids_and_names() {
    let second = "  - id: 1\n    name: other\n    source: {connection: warehouse, table: t}\n    destination: {connection: hook}\n    primary_identifier: {from: a, to: b}\n";
    let e = err(&format!("{VALID}{second}"));
    assert!(e.contains("sluicegate.yml:22:5: syncs[1].id: duplicate sync id 1 (also used by sync \"contacts\" at line 9)"), "{e}");
    let e = err(&format!("{VALID}{}", second.replace("id: 1", "id: 2").replace("name: other", "name: contacts")));
    assert!(e.contains("syncs[1].name: duplicate sync name \"contacts\""), "{e}");
}

#[test]
fn unknown_references_and_values() {
    let e = err(&VALID.replace("connection: warehouse", "connection: warehose"));
    assert!(e.contains("syncs[0].source.connection: no source named `warehose` (did you mean `warehouse`?); defined sources: warehouse"), "{e}");
    let e = err(&VALID.replace("type: webhook", "type: hubspoot"));
    assert!(
        e.contains("sluicegate.yml:6:11: destinations.hook.type: unknown destination type `hubspoot` (did you mean `hubspot`?); available types: webhook, hubspot, iterable, salesforce, postgres"),
        "{e}"
    );
    let e = err(&VALID.replace("type: webhook", "type: smoke-signal"));
    assert!(e.contains("destinations.hook.type: unknown destination type `smoke-signal`; available types: webhook,"), "{e}");
    let e = err(&VALID.replace("    mappings:", "    behavior: mirorr\n    mappings:"));
    assert!(e.contains("syncs[0].behavior: unknown behavior `mirorr`"), "{e}");
}

#[test]
fn several_problems_are_reported_together() {
    let text = VALID.replace("id: 1", "id: -3").replace("table: contacts", "table: contacts\n      colour: red");
    let e = err(&text);
    assert!(e.starts_with("sluicegate.yml: 2 problems in the project file:"), "{e}");
    assert!(e.contains("syncs[0].id: -3 is out of range"), "{e}");
    assert!(e.contains("syncs[0].source.colour: unknown key `colour`"), "{e}");
}

#[test]
fn env_vars_interpolate_and_missing_ones_are_errors() {
    let p = load(&VALID.replace("http://127.0.0.1:9/x", "http://127.0.0.1:9/${SET_VAR}")).unwrap();
    let sluicegate::config::DestinationKind::Webhook(w) = &p.destinations["hook"].kind else { panic!("not a webhook") };
    assert_eq!(w.url.expose(), "http://127.0.0.1:9/value");
    let e = err(&VALID.replace("http://127.0.0.1:9/x", "http://127.0.0.1:9/${UNSET_VAR_FOR_TEST}"));
    assert!(e.contains("sluicegate.yml:7:10: destinations.hook.url: environment variable UNSET_VAR_FOR_TEST is not set"), "{e}");
    // The syncs of that destination get no second, misleading error about an unknown name.
    assert!(e.contains("1 problem"), "one problem, the variable: {e}");
    assert!(!e.contains("no destination named"), "{e}");
    // An unknown name is still an error, also when a source has that name.
    let e = err(&VALID.replace("connection: hook", "connection: warehouse"));
    assert!(e.contains("no destination named `warehouse`"), "{e}");
}

#[test]
fn secrets_do_not_appear_in_debug_output() {
    let text = VALID.replace("url: http://127.0.0.1:9/x", "url: http://127.0.0.1:9/x\n    headers:\n      Authorization: Bearer ${SET_VAR}");
    let p = load(&text).unwrap();
    let debug = format!("{p:?}");
    assert!(!debug.contains("Bearer value"), "{debug}");
    assert!(debug.contains("Secret(***)"));
}

#[test]
fn yaml_syntax_errors_have_a_location() {
    let e = err("sources:\n  a: [1, 2\nsyncs: []\n");
    assert!(e.starts_with("sluicegate.yml:"), "{e}");
    assert!(e.contains("not valid YAML"), "{e}");
    let e = err("");
    assert!(e.contains("the project file is empty"), "{e}");
    let e = err(&VALID.replace("      table: contacts\n", "      table: contacts\n      table: other\n"));
    assert!(e.contains("syncs[0].source.table: duplicate key (first written at line 13)"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_to_a_missing_column_names_the_column_and_location() {
    let dir = tempfile::tempdir().unwrap();
    common::Warehouse::create(dir.path(), 3).await;
    let text = common::project_yml("http://127.0.0.1:9", "").replace("from: score", "from: scroe");
    let project = common::write_project(dir.path(), &text);
    let engine = common::open(&project).await;
    let sync = &engine.project().syncs[0];
    let e = engine.check_sync(sync).await.err().expect("a missing column is an error");
    assert_eq!(e.kind(), ErrorKind::Config);
    let msg = e.full_message();
    assert!(msg.contains("syncs[0].mappings[1].from: column `scroe` is not in the source (did you mean `score`?)"), "{msg}");
    assert!(msg.contains(&format!("{}:", project.display())), "names the file: {msg}");
    assert!(msg.contains("its columns are: id, email, name, score, vip"), "{msg}");
}
