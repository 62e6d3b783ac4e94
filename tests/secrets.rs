//! Secrets never leak: syncs that succeed, fail and get rejected, through the CLI and through
//! `sluicegate serve`, with recognisable secret values in every credential (webhook header
//! token, HubSpot token, Iterable key, Salesforce client secret and refresh token, a source
//! database password, the API token). Everything a user or operator can see is collected —
//! stdout and stderr at the most verbose log level, run records, rejections, error messages,
//! API answers, the run pages, metrics, the state store's bytes, `Debug` of the loaded project —
//! and searched for each secret: zero hits.

mod common;
#[path = "common/serve.rs"]
mod serve_helpers;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use sluicegate::config::Project;
use sluicegate::emulator::hubspot::{HubspotEmulator, HubspotEmulatorConfig};
use sluicegate::emulator::iterable::{IterableEmulator, IterableEmulatorConfig};
use sluicegate::emulator::salesforce::{SalesforceEmulator, SalesforceEmulatorConfig};
use sluicegate::emulator::webhook::{Faults, RejectRule, WebhookEmulator, WebhookEmulatorConfig};

use common::Warehouse;
use serve_helpers::{Api, ServeProcess};

const WEBHOOK_TOKEN: &str = "whk-SECRET-4d9e1b7c0a55";
const HUBSPOT_TOKEN: &str = "pat-na1-SECRET-8c2f19e0";
const ITERABLE_KEY: &str = "itk-SECRET-51ab7d03c6";
const SF_CLIENT_SECRET: &str = "sfcs-SECRET-93d1aa42";
const SF_REFRESH: &str = "sfrt-SECRET-27aa0be9";
const PG_PASSWORD: &str = "pgpw-SECRET-6e0f3b21";
const MYSQL_PASSWORD: &str = "mypw-SECRET-0c1d2e3f";
const API_TOKEN: &str = "secret-token:api-SECRET-c4b2e8f1";

const SECRETS: &[&str] = &[WEBHOOK_TOKEN, HUBSPOT_TOKEN, ITERABLE_KEY, SF_CLIENT_SECRET, SF_REFRESH, PG_PASSWORD, MYSQL_PASSWORD, API_TOKEN];

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("SG_WEBHOOK_TOKEN", WEBHOOK_TOKEN),
        ("SG_HS_TOKEN", HUBSPOT_TOKEN),
        ("SG_IT_KEY", ITERABLE_KEY),
        ("SG_SF_ID", "sf-client-id"),
        ("SG_SF_SECRET", SF_CLIENT_SECRET),
        ("SG_SF_REFRESH", SF_REFRESH),
        ("SG_PG_PASSWORD", PG_PASSWORD),
        ("SG_MY_PASSWORD", MYSQL_PASSWORD),
    ]
}

/// A place where a secret must not appear, and its text.
struct Seen {
    what: String,
    text: String,
}

fn assert_no_secrets(seen: &[Seen]) {
    let mut hits = Vec::new();
    for s in seen {
        for secret in SECRETS {
            // Also the API token without its `secret-token:` prefix.
            let bare = secret.trim_start_matches("secret-token:");
            if s.text.contains(secret) || s.text.contains(bare) {
                let at = s.text.find(bare).unwrap();
                let from = s.text[..at].char_indices().rev().nth(80).map(|(i, _)| i).unwrap_or(0);
                hits.push(format!("{} holds {secret:?}: …{}…", s.what, &s.text[from..(at + bare.len()).min(s.text.len())]));
            }
        }
    }
    assert!(hits.is_empty(), "{} secret leak(s):\n{}", hits.len(), hits.join("\n"));
}

#[allow(clippy::too_many_arguments)]
fn project(hook: &str, hook_echo: &str, hs: &str, it: &str, sf: &str) -> String {
    format!(
        r#"sources:
  warehouse:
    url: sqlite://warehouse.db
  pgdown:
    url: postgres://sluice:${{SG_PG_PASSWORD}}@127.0.0.1:1/warehouse
  mydown:
    url: mysql://sluice:${{SG_MY_PASSWORD}}@127.0.0.1:1/warehouse
destinations:
  hook:
    type: webhook
    url: {hook}/contacts
    batch_size: 10
    headers:
      Authorization: Bearer ${{SG_WEBHOOK_TOKEN}}
      X-Api-Key: ${{SG_WEBHOOK_TOKEN}}
    retry: {{max_attempts: 2, initial_backoff: 10ms, max_backoff: 20ms}}
  echo:
    type: webhook
    url: {hook_echo}/contacts
    headers:
      Authorization: Bearer ${{SG_WEBHOOK_TOKEN}}
    retry: {{max_attempts: 2, initial_backoff: 10ms, max_backoff: 20ms}}
  hs:
    type: hubspot
    access_token: ${{SG_HS_TOKEN}}
    base_url: {hs}
    retry: {{max_attempts: 2, initial_backoff: 10ms, max_backoff: 20ms}}
  it:
    type: iterable
    api_key: ${{SG_IT_KEY}}
    base_url: {it}
    retry: {{max_attempts: 2, initial_backoff: 10ms, max_backoff: 20ms}}
  sf:
    type: salesforce
    login_url: {sf}
    client_id: ${{SG_SF_ID}}
    client_secret: ${{SG_SF_SECRET}}
    refresh_token: ${{SG_SF_REFRESH}}
    retry: {{max_attempts: 2, initial_backoff: 10ms, max_backoff: 20ms}}
syncs:
  - {{id: 1, name: good, source: {{connection: warehouse, table: contacts}}, destination: {{connection: hook, object: contacts}},
     primary_identifier: {{from: email, to: email}}, mappings: [{{from: name, to: full_name}}]}}
  - {{id: 2, name: echoed, source: {{connection: warehouse, table: contacts}}, destination: {{connection: echo, object: contacts}},
     primary_identifier: {{from: email, to: email}}, mappings: [{{from: name, to: full_name}}]}}
  - {{id: 3, name: pg_down, source: {{connection: pgdown, table: contacts}}, destination: {{connection: hook, object: contacts}},
     primary_identifier: {{from: email, to: email}}, mappings: [{{from: name, to: full_name}}]}}
  - {{id: 4, name: my_down, source: {{connection: mydown, table: contacts}}, destination: {{connection: hook, object: contacts}},
     primary_identifier: {{from: email, to: email}}, mappings: [{{from: name, to: full_name}}]}}
  - {{id: 5, name: hubspot, source: {{connection: warehouse, table: contacts}}, destination: {{connection: hs, object: contacts}},
     primary_identifier: {{from: email, to: email}}, mappings: [{{from: name, to: firstname}}]}}
  - {{id: 6, name: iterable, source: {{connection: warehouse, table: contacts}}, destination: {{connection: it, object: users}},
     primary_identifier: {{from: email, to: email}}, mappings: [{{from: name, to: firstName}}]}}
  - {{id: 7, name: salesforce, source: {{connection: warehouse, table: contacts}}, destination: {{connection: sf, object: Contact}},
     primary_identifier: {{from: email, to: Email}}, mappings: [{{from: name, to: LastName}}], behavior: update}}
"#
    )
}

fn cli(dir: &Path, args: &[&str]) -> Seen {
    let out = Command::new(env!("CARGO_BIN_EXE_sluicegate"))
        .current_dir(dir)
        .args(["--project", "sluicegate.yml"])
        .args(args)
        .envs(env())
        .env("SLUICEGATE_LOG", "trace")
        .env("NO_COLOR", "1")
        .env_remove("SLUICEGATE_STATE")
        .output()
        .unwrap();
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Seen { what: format!("`sluicegate {}` output", args.join(" ")), text }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_logs_errors_records_pages_or_store() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 40).await;
    wh.exec("UPDATE contacts SET email = NULL WHERE id = 40").await;
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    let hook = WebhookEmulator::start(local, WebhookEmulatorConfig::default()).await.unwrap();
    hook.set_reject_rules(vec![RejectRule::parse("email=^user1[0-9]@").unwrap()]);
    // An endpoint that echoes the credentials it was sent in its error body (debug echo
    // servers and some gateways do): the message must still reach the user without them.
    let echo = WebhookEmulator::start(local, WebhookEmulatorConfig::default()).await.unwrap();
    echo.set_faults(Faults {
        fail_rate: 1.0,
        fail_status: 401,
        fail_message: format!("invalid credentials: Authorization: Bearer {WEBHOOK_TOKEN}"),
        ..Default::default()
    });
    // Destinations that refuse the credentials they are given.
    let hs = HubspotEmulator::start(local, HubspotEmulatorConfig { token: Some("pat-na1-the-right-one".into()), ..Default::default() }).await.unwrap();
    let it = IterableEmulator::start(local, IterableEmulatorConfig { api_key: "the-right-key".into(), ..Default::default() }).await.unwrap();
    let sf = SalesforceEmulator::start(local, SalesforceEmulatorConfig { client_secret: "the-right-secret".into(), ..Default::default() }).await.unwrap();
    let text = project(&hook.url, &echo.url, &hs.url, &it.url, &sf.url);
    let p = common::write_project(dir.path(), &text);

    let mut seen = Vec::new();
    // `Debug` of the loaded project and of each destination's config.
    let lookup = |name: &str| env().into_iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
    let loaded = Project::from_str_with_env(&text, &p, &lookup).unwrap();
    assert!(matches!(&loaded.destinations["hs"].kind, sluicegate::config::DestinationKind::Hubspot(c) if c.access_token.expose() == HUBSPOT_TOKEN));
    seen.push(Seen { what: "Debug of the project".into(), text: format!("{loaded:?} {loaded:#?}") });
    for (name, d) in &loaded.destinations {
        seen.push(Seen { what: format!("Debug of destination {name}"), text: format!("{d:?}") });
    }
    for (name, s) in &loaded.sources {
        seen.push(Seen { what: format!("Debug of source {name}"), text: format!("{s:?}") });
    }

    let dir_path = dir.path().to_path_buf();
    let outputs = tokio::task::spawn_blocking(move || {
        let d = dir_path.as_path();
        let mut v = vec![cli(d, &["validate"]), cli(d, &["validate", "--check"])];
        for sync in ["good", "echoed", "pg_down", "my_down", "hubspot", "iterable", "salesforce"] {
            v.push(cli(d, &["run", sync, "--json"]));
            v.push(cli(d, &["plan", sync]));
        }
        v.push(cli(d, &["runs"]));
        for run in 1..=7 {
            v.push(cli(d, &["rejections", &run.to_string()]));
        }
        v
    })
    .await
    .unwrap();
    // The runs happened and failed where they should (so their errors were really looked at).
    let run_out = |sync: &str| outputs.iter().find(|s| s.what == format!("`sluicegate run {sync} --json` output")).unwrap().text.clone();
    assert!(run_out("good").contains("\"status\": \"completed\"") || run_out("good").contains("\"status\":\"completed\""), "{}", run_out("good"));
    for failing in ["echoed", "pg_down", "my_down", "hubspot", "iterable", "salesforce"] {
        let o = run_out(failing);
        assert!(o.contains("failed"), "sync {failing} should fail: {o}");
    }
    assert!(run_out("echoed").contains("invalid credentials"), "the endpoint's message is kept: {}", run_out("echoed"));
    assert_eq!(hook.stats().records_rejected, 10, "the rejections were recorded too");
    seen.extend(outputs);

    // The same through `serve`: runs triggered over the API, every answer and page collected.
    let state = dir.path().join("sluicegate_state.db");
    let mut server = ServeProcess::start(&p, state.to_str().unwrap(), &["--workers", "2"], &[&env()[..], &[("SLUICEGATE_API_TOKEN", API_TOKEN), ("SLUICEGATE_LOG", "trace")]].concat());
    let api = Api { auth: Some(format!("Bearer {API_TOKEN}")), ..Api::new(&server.url) };
    wh.exec("UPDATE contacts SET score = score + 1").await;
    let mut answers = Vec::new();
    for sync in 1..=7 {
        let run = api.trigger(&sync.to_string(), "?force_full_sync=true").await;
        let r = api.wait_ended(run).await;
        assert_eq!(r["status"] == "completed", sync == 1, "sync {sync}: {r}");
        for path in [
            format!("/api/v1/sync_runs/{run}"),
            format!("/api/v1/sync_runs/{run}/records?per_page=100"),
            format!("/api/v1/syncs/{sync}"),
            format!("/api/v1/syncs/{sync}/sync_runs"),
            format!("/runs/{run}"),
        ] {
            answers.push((path.clone(), api.get(&path).await));
        }
    }
    for path in ["/api/v1/syncs", "/", "/metrics", "/healthz", "/api/v1/openapi.json"] {
        answers.push((path.to_string(), api.get(path).await));
    }
    for auth in [None, Some("Bearer secret-token:not-it"), Some("Basic YmVhcmVyOm5vcGU=")] {
        answers.push(("refused".into(), api.with_auth(auth).get("/api/v1/syncs").await));
    }
    server.stop();
    for (path, a) in answers {
        seen.push(Seen { what: format!("API answer {path} ({})", a.status), text: format!("{:?} {}", a.headers, a.body) });
    }
    seen.push(Seen { what: "serve's log".into(), text: server.stderr() });

    // The state store's bytes: runs, errors, rejections with payloads.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("sluicegate_state.db") {
            seen.push(Seen { what: format!("state store file {}", path.display()), text: String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned() });
        }
    }
    let all: String = seen.iter().map(|s| s.text.as_str()).collect();
    // The collection is real: it holds the errors, the rejections and the verbose logs.
    assert!(all.contains("user15@example.com") && all.contains("emulator rule"), "rejections were collected");
    assert!(all.contains("TRACE") || all.contains("DEBUG"), "verbose logs were collected");
    assert!(all.contains("127.0.0.1:1"), "the source errors were collected");
    assert_no_secrets(&seen);
    for e in [hook, echo] {
        e.stop().await;
    }
    drop((hs, it, sf));
}
