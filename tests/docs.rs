//! The documentation matches the code:
//! - every key the project loader accepts is documented in docs/configuration.md, in the right
//!   table, and nothing there is a key the loader refuses;
//! - a documented default is what the loader uses when the key is left out, and a key documented
//!   as required is refused when missing;
//! - the limits table of docs/destinations.md is what each destination reports (and its maximum
//!   batch size is enforced at load);
//! - the environment variables table lists exactly the variables the code reads, with the
//!   defaults of the options and of the engine; docs/serve.md's flag table matches `serve --help`;
//! - the project file examples load.
//!
//! The commands in the docs are run by tests/python/test_docs_commands.py; the quoted error
//! messages are checked by tests/python/test_docs_errors.py.

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
    let env = test_env;
    let mut checked = 0;
    for file in ["README.md", "docs/configuration.md", "docs/destinations.md", "docs/getting-started.md"] {
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

// ------------------------------------------------------------------------------------------
// Defaults and required keys: what the reference says a missing key means is what the loader
// does.

/// The rows of the table that follows `<!-- keys: NAME -->`: (key, default cell).
fn rows(doc: &str, name: &str) -> Vec<(String, String)> {
    let marker = format!("<!-- keys: {name} -->");
    let start = doc.find(&marker).unwrap_or_else(|| panic!("docs/configuration.md has no table marked {marker}"));
    table_after(&doc[start + marker.len()..])
        .into_iter()
        .filter(|cells| cells.len() >= 2 && cells[0].starts_with('`'))
        .map(|cells| (cells[0].trim_matches('`').to_string(), cells[1].clone()))
        .collect()
}

/// The body rows (cells trimmed) of the first Markdown table in `text`.
fn table_after(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('|') {
            in_table = true;
            let cells: Vec<String> = line.trim_matches('|').split('|').map(|c| c.trim().to_string()).collect();
            if cells.iter().all(|c| c.chars().all(|ch| ch == '-' || ch == ':')) {
                continue;
            }
            out.push(cells);
        } else if in_table {
            break;
        }
    }
    out.remove(0); // the header
    out
}

/// The default cell's value when it is a literal: the cell starts with a code span.
fn literal_default(cell: &str) -> Option<String> {
    let rest = cell.strip_prefix('`')?;
    Some(rest[..rest.find('`')?].to_string())
}

/// One line of a template project: the `table.key` it writes (`table.@` is where other keys of
/// that table go), its indentation, its text, and whether it starts a sequence item.
struct Line {
    tag: String,
    indent: usize,
    text: String,
    item: bool,
}

fn line(tag: &str, indent: usize, text: &str) -> Line {
    Line { tag: tag.into(), indent, text: text.into(), item: false }
}

fn item(tag: &str, indent: usize, text: &str) -> Line {
    Line { tag: tag.into(), indent, text: text.into(), item: true }
}

/// A small valid project whose one destination has type `ty`; every key line is tagged with
/// the reference table it belongs to.
fn template(ty: &str) -> Vec<Line> {
    let (own, object, id_to, field): (Vec<Line>, &str, &str, &str) = match ty {
        "webhook" => (vec![line("webhook.url", 4, "url: http://127.0.0.1:9/hook")], "contacts", "email", "firstname"),
        "hubspot" => (vec![line("hubspot.access_token", 4, "access_token: ${HUBSPOT_TOKEN}")], "contacts", "email", "firstname"),
        "iterable" => (vec![line("iterable.api_key", 4, "api_key: ${ITERABLE_API_KEY}")], "users", "email", "firstName"),
        "salesforce" => (
            vec![
                line("salesforce.client_id", 4, "client_id: ${SF_CLIENT_ID}"),
                line("salesforce.client_secret", 4, "client_secret: ${SF_CLIENT_SECRET}"),
            ],
            "Lead",
            "External_Id__c",
            "FirstName",
        ),
        "postgres" => (vec![line("postgres.url", 4, "url: ${DEST_PG_URL}")], "public.contacts", "email", "first_name"),
        other => panic!("no template for type {other}"),
    };
    let mut l = vec![
        line("top.@", 0, ""),
        line("top.sources", 0, "sources:"),
        line("", 2, "warehouse:"),
        line("source.url", 4, "url: sqlite://warehouse.db"),
        line("source.@", 4, ""),
        line("top.destinations", 0, "destinations:"),
        line("", 2, "d:"),
        line("delivery.type", 4, &format!("type: {ty}")),
    ];
    l.extend(own);
    l.extend([
        line(&format!("{ty}.@"), 4, ""),
        line("delivery.@", 4, ""),
        line("delivery.retry", 4, "retry:"),
        line("retry.@", 6, ""),
        line("delivery.rate_limit", 4, "rate_limit:"),
        line("rate_limit.requests", 6, "requests: 10"),
        line("rate_limit.per", 6, "per: 2s"),
        line("rate_limit.@", 6, ""),
        line("top.syncs", 0, "syncs:"),
        item("sync.id", 4, "id: 1"),
        line("sync.name", 4, "name: s"),
        line("sync.source", 4, "source:"),
        line("sync_source.connection", 6, "connection: warehouse"),
        line("sync_source.table", 6, "table: contacts"),
        line("sync_source.@", 6, ""),
        line("sync.destination", 4, "destination:"),
        line("sync_destination.connection", 6, "connection: d"),
        line("sync_destination.object", 6, &format!("object: {object}")),
        line("sync_destination.@", 6, ""),
        line("sync.primary_identifier", 4, "primary_identifier:"),
        line("identifier.from", 6, "from: email"),
        line("identifier.to", 6, &format!("to: {id_to}")),
        line("identifier.@", 6, ""),
        line("sync.mappings", 4, "mappings:"),
        item("mapping.from", 8, "from: first_name"),
        line("mapping.to", 8, &format!("to: {field}")),
        line("mapping.@", 8, ""),
        line("sync.@", 4, ""),
    ]);
    l
}

/// The template as text, without the key `remove` (and the lines nested under it), with
/// `insert` written where keys of `table` go.
fn render(lines: &[Line], table: &str, remove: Option<&str>, insert: Option<&str>) -> String {
    let mut out = String::new();
    let mut skip_deeper_than: Option<usize> = None;
    let mut pending_item = false;
    for l in lines {
        if let Some(depth) = skip_deeper_than {
            if l.indent > depth {
                pending_item |= l.item;
                continue;
            }
            skip_deeper_than = None;
        }
        if remove.is_some_and(|k| l.tag == format!("{table}.{k}")) {
            skip_deeper_than = Some(l.indent);
            pending_item |= l.item;
            continue;
        }
        let text = if l.tag == format!("{table}.@") {
            match insert {
                Some(t) => t.to_string(),
                None => continue,
            }
        } else if l.tag.ends_with(".@") {
            continue;
        } else {
            l.text.clone()
        };
        let item = l.item || std::mem::take(&mut pending_item);
        let indent = if item { format!("{}- ", " ".repeat(l.indent - 2)) } else { " ".repeat(l.indent) };
        out.push_str(&format!("{indent}{text}\n"));
    }
    out
}

/// Values for the `${VARS}` of the examples: URLs where a URL is expected.
fn test_env(name: &str) -> Option<String> {
    Some(match name {
        "WAREHOUSE_URL" => "sqlite://warehouse.db".to_string(),
        n if n.contains("PG_URL") => "postgres://u:p@127.0.0.1:5432/db".to_string(),
        n if n.ends_with("URL") => "http://127.0.0.1:9/hook".to_string(),
        n => format!("value-of-{n}"),
    })
}

fn load(text: &str, dir: &std::path::Path) -> Result<sluicegate::config::Project, String> {
    sluicegate::config::Project::from_str_with_env(text, &dir.join("sluicegate.yml"), &test_env).map_err(|e| e.full_message())
}

/// `Debug` of a loaded project without source positions, for comparing two loads.
fn shape(p: &sluicegate::config::Project) -> String {
    let text = format!("{p:?}");
    regex::Regex::new(r"Pos \{[^}]*\}").unwrap().replace_all(&text, "Pos").into_owned()
}

#[test]
fn documented_defaults_and_required_keys_are_the_loaders() {
    let doc = doc();
    let dir = std::env::temp_dir();
    let mut tables: Vec<(String, String)> = ["top", "source", "delivery", "retry", "rate_limit", "sync", "sync_source", "sync_destination", "identifier", "mapping"]
        .iter()
        .map(|t| (t.to_string(), "hubspot".to_string()))
        .collect();
    tables.extend(keys::DESTINATION_TYPES.iter().map(|t| (t.to_string(), t.to_string())));
    let (mut literal, mut required) = (0, 0);
    for (table, ty) in &tables {
        let lines = template(ty);
        load(&render(&lines, table, None, None), &dir).unwrap_or_else(|e| panic!("the template for `{table}` does not load: {e}"));
        for (key, cell) in rows(&doc, table) {
            let place = format!("docs/configuration.md, table `{table}`, key `{key}`");
            if cell == "required" {
                let text = render(&lines, table, Some(&key), None);
                match load(&text, &dir) {
                    Ok(_) => panic!("{place}: documented as required, but a project without it loads:\n{text}"),
                    Err(e) => {
                        let named = regex::Regex::new(&format!(r"\b{key}\b")).unwrap();
                        assert!(named.is_match(&e), "{place}: the error for a missing required key does not name it: {e}")
                    }
                }
                required += 1;
            } else if let Some(value) = literal_default(&cell) {
                if table == "top" && key == "state" {
                    // The state store's default is applied when the engine opens it.
                    let url = sluicegate::store::default_state_url(&dir);
                    assert!(url.ends_with(&format!("/{value}")) && cell.contains("beside this file"), "{place}: documented `{cell}`, the default is {url}");
                    literal += 1;
                    continue;
                }
                let omitted = load(&render(&lines, table, Some(&key), None), &dir).unwrap_or_else(|e| panic!("{place}: without the key: {e}"));
                let explicit_text = render(&lines, table, Some(&key), Some(&format!("{key}: {value}")));
                let explicit = load(&explicit_text, &dir).unwrap_or_else(|e| panic!("{place}: with `{key}: {value}`: {e}\n{explicit_text}"));
                assert_eq!(shape(&omitted), shape(&explicit), "{place}: documented default `{value}`, but leaving the key out differs from writing it");
                literal += 1;
            }
        }
    }
    assert!(literal >= 12 && required >= 15, "only {literal} literal defaults and {required} required keys checked");
}

// ------------------------------------------------------------------------------------------
// The limits table of docs/destinations.md is what each destination reports.

fn limits_table() -> Vec<Vec<String>> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/destinations.md")).unwrap();
    let start = doc.find("<!-- limits -->").expect("docs/destinations.md has no table marked <!-- limits -->");
    table_after(&doc[start..])
}

/// A project with one sync to a destination of `ty`, with `variant` (`object: events`,
/// `api: bulk`) applied, and `extra` lines in the destination.
fn limits_project(ty: &str, variant: &str, extra: &str) -> String {
    let (dest, object, id_to, more_sync) = match (ty, variant) {
        ("webhook", "") => ("url: http://127.0.0.1:9/hook", "contacts", "email", ""),
        ("hubspot", "") => ("access_token: ${HUBSPOT_TOKEN}", "contacts", "email", ""),
        ("iterable", "object: users") => ("api_key: ${ITERABLE_API_KEY}", "users", "email", ""),
        ("iterable", "object: events") => (
            "api_key: ${ITERABLE_API_KEY}",
            "events",
            "email",
            "    behavior: append\n    unique_key: event_id\n    mappings:\n      - { constant: signup, to: eventName }\n",
        ),
        ("salesforce", "api: collections") => ("client_id: ${SF_ID}\n    client_secret: ${SF_SECRET}\n    api: collections", "Lead", "External_Id__c", ""),
        ("salesforce", "api: bulk") => ("client_id: ${SF_ID}\n    client_secret: ${SF_SECRET}\n    api: bulk", "Lead", "External_Id__c", ""),
        ("postgres", "") => ("url: ${DEST_PG_URL}", "public.contacts", "email", ""),
        other => panic!("docs/destinations.md limits table: no project for {other:?}"),
    };
    format!(
        "sources:\n  warehouse:\n    url: sqlite://warehouse.db\ndestinations:\n  d:\n    type: {ty}\n    {dest}\n{extra}syncs:\n  - id: 1\n    name: s\n    source: {{ connection: warehouse, table: contacts }}\n    destination: {{ connection: d, object: {object} }}\n    primary_identifier: {{ from: email, to: {id_to} }}\n{more_sync}"
    )
}

fn number(text: &str) -> usize {
    text.trim().replace(',', "").parse().unwrap_or_else(|_| panic!("not a number: {text:?}"))
}

fn seconds(text: &str) -> std::time::Duration {
    let n = text.trim().strip_suffix(" s").unwrap_or_else(|| panic!("not `N s`: {text:?}"));
    std::time::Duration::from_secs(number(n) as u64)
}

#[tokio::test]
async fn destination_limits_are_documented() {
    let dir = std::env::temp_dir();
    let rows = limits_table();
    let mut types_seen = BTreeSet::new();
    for cells in &rows {
        let [dest, records, body, pace, timeout, concurrency] = &cells[..] else {
            panic!("docs/destinations.md limits table: row with {} cells: {cells:?}", cells.len())
        };
        let mut spans = dest.split('`').skip(1).step_by(2);
        let ty = spans.next().unwrap_or_else(|| panic!("no type in {dest:?}"));
        let variant = spans.next().unwrap_or("");
        types_seen.insert(ty.to_string());
        let place = format!("docs/destinations.md limits table, row {dest}");
        let project = load(&limits_project(ty, variant, ""), &dir).unwrap_or_else(|e| panic!("{place}: {e}"));
        let ctx = sluicegate::destination::BuildContext {
            config: &project.destinations["d"],
            sync: &project.syncs[0],
            client: sluicegate::engine::http_client().unwrap(),
        };
        let limits = sluicegate::destination::build(&ctx).await.unwrap_or_else(|e| panic!("{place}: {e}")).limits();

        let (default, max) = records.split_once(" (").unwrap_or_else(|| panic!("{place}: records cell {records:?} is not `N (MAX)`"));
        let max = number(max.trim_end_matches(')'));
        assert_eq!((number(default), max), (limits.default_batch, limits.max_records), "{place}: records per request");
        let bytes = (body != "none").then(|| number(body.strip_suffix(" MB").unwrap_or_else(|| panic!("{place}: body {body:?}"))) * 1_000_000);
        assert_eq!(bytes, limits.max_bytes, "{place}: body limit");
        let rate = if pace.starts_with("unpaced") {
            None
        } else {
            let (n, per) = pace.split_once(" requests / ").unwrap_or_else(|| panic!("{place}: pace {pace:?}"));
            Some((number(n) as u32, seconds(per)))
        };
        assert_eq!(rate, limits.default_rate.map(|r| (r.requests, r.per)), "{place}: pace");
        assert_eq!(seconds(timeout), limits.default_timeout, "{place}: timeout");
        assert_eq!(number(concurrency), limits.default_concurrency, "{place}: concurrency");

        // The maximum is enforced when the file is loaded.
        for (size, ok) in [(max, true), (max + 1, false)] {
            let text = limits_project(ty, variant, &format!("    batch_size: {size}\n"));
            assert_eq!(load(&text, &dir).is_ok(), ok, "{place}: batch_size {size} should {}load", if ok { "" } else { "not " });
        }
    }
    let all: BTreeSet<String> = keys::DESTINATION_TYPES.iter().map(|s| s.to_string()).collect();
    assert_eq!(types_seen, all, "docs/destinations.md limits table: every destination type has a row");
}

// ------------------------------------------------------------------------------------------
// Environment variables and command-line options.

/// `sluicegate ARGS --help`, run without any SLUICEGATE_ variable set (clap shows their values).
fn help(args: &[&str]) -> String {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sluicegate"));
    cmd.args(args).arg("--help");
    for (k, _) in std::env::vars() {
        if k.starts_with("SLUICEGATE_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "sluicegate {args:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The help text of option `--name`: its line (clap does not wrap when stdout is not a terminal).
fn option_help<'a>(help: &'a str, name: &str) -> Option<&'a str> {
    help.lines().find(|l| l.trim_start().split([' ', ',']).any(|w| w == name))
}

fn bracket<'a>(text: &'a str, what: &str) -> Option<&'a str> {
    let start = text.find(&format!("[{what}: "))? + what.len() + 3;
    Some(&text[start..start + text[start..].find(']')?])
}

#[test]
fn environment_variables_are_documented_with_their_defaults() {
    let doc = doc();
    let start = doc.find("<!-- env -->").expect("docs/configuration.md has no table marked <!-- env -->");
    let rows: Vec<(String, String)> = table_after(&doc[start..]).into_iter().map(|c| (c[0].trim_matches('`').to_string(), c[1].clone())).collect();
    let documented: BTreeSet<String> = rows.iter().map(|(k, _)| k.clone()).collect();

    // What the code reads. Left out, with the page that documents them instead: the variables
    // the quickstart's own project file and DAG read (they are explained in the files it writes).
    let not_here = ["SLUICEGATE_WEBHOOK_URL", "SLUICEGATE_WEBHOOK_TOKEN", "SLUICEGATE_POKE_INTERVAL"];
    let re = regex::Regex::new(r"(?:^|[^A-Z_])(SLUICEGATE_[A-Z0-9_]*[A-Z0-9])").unwrap();
    let mut read = BTreeSet::new();
    for dir in ["src", "python"] {
        for file in files(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)) {
            if file.extension().is_some_and(|e| e == "rs" || e == "py") {
                for m in re.captures_iter(&std::fs::read_to_string(&file).unwrap()) {
                    if !not_here.contains(&&m[1]) {
                        read.insert(m[1].to_string());
                    }
                }
            }
        }
    }
    assert_eq!(documented, read, "docs/configuration.md, environment variables: the table and the code differ");

    let (top, serve) = (help(&[]), help(&["serve"]));
    let mut checked = 0;
    for (name, cell) in &rows {
        if name == "SLUICEGATE_LEASE" {
            let d = literal_default(cell).and_then(|v| sluicegate::config::parse_duration(&v));
            assert_eq!(d, Some(sluicegate::engine::DEFAULT_LEASE), "docs/configuration.md: SLUICEGATE_LEASE default `{cell}`");
            checked += 1;
        }
        let bound = [&top, &serve].into_iter().flat_map(|h| h.lines()).find(|l| bracket(l, "env").is_some_and(|e| e.trim_end_matches('=') == name));
        if let (Some(line), Some(value)) = (bound, literal_default(cell)) {
            assert_eq!(bracket(line, "default"), Some(value.as_str()), "docs/configuration.md: {name} default; the option says: {line}");
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} defaults checked");
}

fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { out.extend(files(&path)) } else { out.push(path) }
    }
    out
}

#[test]
fn serve_options_are_documented_with_their_defaults() {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/serve.md")).unwrap();
    let start = page.find("| flag | env | default | meaning |").expect("docs/serve.md has no flag table");
    let help = help(&["serve"]);
    let rows = table_after(&page[start..]);
    for cells in &rows {
        let flag = cells[0].trim_matches('`').split(' ').next().unwrap().to_string();
        let line = option_help(&help, &flag).unwrap_or_else(|| panic!("docs/serve.md documents {flag}, which `sluicegate serve --help` does not list"));
        let env = literal_default(&cells[1]);
        assert_eq!(env.as_deref(), bracket(line, "env").map(|e| e.trim_end_matches('=')), "docs/serve.md: {flag} env");
        if let Some(default) = literal_default(&cells[2]) {
            assert_eq!(Some(default.as_str()), bracket(line, "default"), "docs/serve.md: {flag} default");
        }
    }
    assert!(rows.len() >= 5, "docs/serve.md flag table has {} rows", rows.len());
}

#[test]
fn serve_metrics_are_documented() {
    let root = env!("CARGO_MANIFEST_DIR");
    let page = std::fs::read_to_string(format!("{root}/docs/serve.md")).unwrap();
    let code = std::fs::read_to_string(format!("{root}/src/serve/metrics.rs")).unwrap();
    let names = |text: &str, re: &str| -> BTreeSet<String> {
        regex::Regex::new(re).unwrap().captures_iter(text).map(|c| c[1].trim_end_matches("_bucket").trim_end_matches("_count").trim_end_matches("_sum").to_string()).collect()
    };
    let exported = names(&code, r#""(sluicegate_[a-z_]+)"#);
    let documented = names(&page, r"`(sluicegate_[a-z_]+)");
    assert!(exported.len() >= 8, "found only {exported:?} in src/serve/metrics.rs");
    assert_eq!(documented, exported, "docs/serve.md's metrics and the ones /metrics exports differ");
}
