//! `sluicegate serve` over real HTTP: the Census-compatible API field by field and every error
//! path, authentication, the OpenAPI document against the routes, the run history page (also in
//! headless Chromium, which takes a screenshot), metrics, schedules, graceful
//! shutdown, and replicas sharing one Postgres store (exactly-once claims, no two runs of a
//! sync at once, a killed replica's run failed as "executor lost").
//!
//! The Postgres tests need `SLUICEGATE_TEST_PG_URL` (scripts/services.sh); without it they
//! print a skip note, unless `SLUICEGATE_REQUIRE_ALL=1`, where they fail. The Chromium test
//! needs Debian's `chromium` package, under the same rule.

mod common;
#[path = "common/serve.rs"]
mod serve_helpers;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use sluicegate::config::Secret;
use sluicegate::emulator::webhook::{Faults, RejectRule, WebhookEmulator};
use sluicegate::serve::{Schedule, ServeOptions, Server};

use serve_helpers::{add_events, fresh_pg_database, many_syncs_project, pg_url, project, Api, ServeProcess, TOKEN, WEBHOOK_TOKEN};
use common::{emulator, write_project, Warehouse};

fn opts(project: &Path) -> ServeOptions {
    let mut o = ServeOptions::new(project, SocketAddr::from(([127, 0, 0, 1], 0)), vec![Secret::new(TOKEN)]);
    o.workers = 2;
    o.poll = Duration::from_millis(100);
    o
}

/// A warehouse of 25 contacts (users 10–19 are rejected by the emulator) plus one without an
/// email (invalid), 30 events, and a server over them.
async fn setup(dir: &Path, batch: usize) -> (Warehouse, WebhookEmulator, std::path::PathBuf) {
    let wh = Warehouse::create(dir, 25).await;
    wh.exec("INSERT INTO contacts (id, email, name, score) VALUES (1000, NULL, 'nobody', 1)").await;
    add_events(&wh, 30).await;
    let emu = emulator().await;
    emu.set_reject_rules(vec![RejectRule::parse("email=^user1[0-9]@").unwrap()]);
    let p = write_project(dir, &project(&emu.url, batch));
    (wh, emu, p)
}

fn assert_error(a: &serve_helpers::Answer, status: u16, needle: &str) {
    assert_eq!(a.status, status, "{}", a.body);
    assert_eq!(a.body["status"], Value::from(status), "error bodies carry the HTTP status as a number: {}", a.body);
    let msg = a.body["message"].as_str().unwrap_or_else(|| panic!("no message: {}", a.body));
    assert!(msg.contains(needle), "expected {needle:?} in {msg:?}");
    assert_eq!(a.body.as_object().unwrap().len(), 2, "only status and message: {}", a.body);
}

const RUN_FIELDS: &[(&str, &str)] = &[
    ("id", "int"),
    ("sync_id", "int"),
    ("status", "string"),
    ("source_record_count", "int?"),
    ("source_record_updates", "int?"),
    ("source_record_deletes", "int?"),
    ("source_record_invalids", "int?"),
    ("records_invalid", "int?"),
    ("records_processed", "int?"),
    ("records_updated", "int?"),
    ("records_failed", "int?"),
    ("created_at", "string"),
    ("updated_at", "string"),
    ("completed_at", "string?"),
    ("scheduled_execution_time", "string?"),
    ("error_code", "string?"),
    ("error_message", "string?"),
    ("error_detail", "string?"),
    ("canceled", "bool"),
    ("full_sync", "bool"),
    ("sync_trigger_reason", "object"),
    ("current_step", "string?"),
];

fn assert_run_shape(run: &Value) {
    for (field, ty) in RUN_FIELDS {
        let v = run.get(*field).unwrap_or_else(|| panic!("run lacks {field}: {run}"));
        let ok = match *ty {
            "int" => v.is_i64(),
            "int?" => v.is_i64() || v.is_null(),
            "string" => v.is_string(),
            "string?" => v.is_string() || v.is_null(),
            "bool" => v.is_boolean(),
            "object" => v.is_object(),
            _ => unreachable!(),
        };
        assert!(ok, "run field {field} should be {ty}: {v}");
    }
    assert!(run["sync_trigger_reason"]["ui_tag"].is_string() && run["sync_trigger_reason"]["ui_detail"].is_string());
    let ts = run["created_at"].as_str().unwrap();
    assert!(time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).is_ok(), "ISO-8601 time: {ts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn census_api_syncs_runs_records_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (_wh, emu, p) = setup(dir.path(), 5).await;
    let server = Server::start(opts(&p)).await.unwrap();
    let api = Api::new(&server.url);

    // The Census Airflow provider's connection test: GET /syncs?page=1&per_page=1.
    let a = api.get("/api/v1/syncs?page=1&per_page=1").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["status"], "success");
    assert_eq!(a.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(a.body["data"][0]["id"], 2, "newest (highest id) first by default");
    let pg = &a.body["pagination"];
    assert_eq!((pg["total_records"].as_i64(), pg["per_page"].as_i64(), pg["page"].as_i64()), (Some(2), Some(1), Some(1)));
    assert_eq!((pg["prev_page"].clone(), pg["next_page"].as_i64(), pg["last_page"].as_i64()), (Value::Null, Some(2), Some(2)));
    let next = a.body["next"].as_str().unwrap();
    assert!(next.starts_with(&server.url) && next.ends_with("/api/v1/syncs?page=2&per_page=1"), "{next}");
    let a = api.get("/api/v1/syncs?page=2&per_page=1").await;
    assert_eq!(a.body["data"][0]["id"], 1);
    assert_eq!((a.body["pagination"]["prev_page"].as_i64(), a.body["pagination"]["next_page"].clone()), (Some(1), Value::Null));
    assert_eq!(a.body["next"], Value::Null);
    let a = api.get("/api/v1/syncs?page=0&per_page=1000&order=asc").await;
    assert_eq!(a.body["pagination"]["page"], 1, "page 0 is page 1");
    assert_eq!(a.body["pagination"]["per_page"], 100, "more than the max gives the max");
    assert_eq!(a.body["data"][0]["id"], 1);

    let sync = api.data("/syncs/1").await;
    assert_eq!((sync["label"].as_str(), sync["operation"].as_str(), sync["status"].as_str()), (Some("contacts"), Some("upsert"), Some("Ready")));
    assert_eq!(sync["schedule_frequency"], "never");
    assert_eq!(sync["mappings"][0]["is_primary_identifier"], true);
    assert_eq!(sync["mappings"][0]["from"], serde_json::json!({"type": "column", "data": "email"}));
    assert_eq!(api.data("/syncs/events").await["id"], 2, "a sync by name");

    // Trigger with an empty body, the Census Airflow provider's way.
    let run_id = api.trigger("1", "").await;
    let run = api.wait_ended(run_id).await;
    assert_run_shape(&run);
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["sync_id"], 1);
    assert_eq!(run["sync_trigger_reason"]["ui_tag"], "API");
    assert_eq!(run["full_sync"], false);
    assert_eq!(run["source_record_count"], 26);
    assert_eq!((run["records_processed"].as_i64(), run["records_updated"].as_i64(), run["records_failed"].as_i64()), (Some(25), Some(15), Some(10)));
    assert_eq!((run["records_invalid"].as_i64(), run["source_record_invalids"].as_i64()), (Some(1), Some(1)));
    assert_eq!(run["current_step"], Value::Null, "no step once completed");
    assert!(run["completed_at"].is_string());
    assert_eq!(emu.stats().records_accepted, 15);
    let sync = api.data("/syncs/1").await;
    assert_eq!((sync["status"].as_str(), sync["last_run_id"].as_i64()), (Some("Up to Date"), Some(run_id)));

    // Runs of a sync, newest first; per_page=1 gives the latest (how Census clients look it up).
    let second = api.trigger("1", "?force_full_sync=true").await;
    let run2 = api.wait_ended(second).await;
    assert_eq!((run2["status"].as_str(), run2["full_sync"].as_bool()), (Some("completed"), Some(true)));
    assert_eq!(run2["records_processed"], 25, "a full sync resends every row");
    let a = api.get("/api/v1/syncs/1/sync_runs?per_page=1").await;
    assert_eq!(a.body["data"][0]["id"], second);
    assert_eq!(a.body["pagination"]["total_records"], 2);
    assert_run_shape(&a.body["data"][0]);
    let a = api.get("/api/v1/syncs/contacts/sync_runs?order=asc").await;
    let ids: Vec<i64> = a.body["data"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![run_id, second]);

    // force_full_sync in a JSON body, as the Dagster and Terraform clients send it.
    let a = api.request("POST", "/api/v1/syncs/1/trigger", Some(("application/json;version=2", r#"{"force_full_sync": true}"#))).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let third = a.body["data"]["sync_run_id"].as_i64().unwrap();
    assert_eq!(api.wait_ended(third).await["full_sync"], true);

    // Records: the rows not delivered, with filters, pages and counts.
    let all = api.data(&format!("/sync_runs/{run_id}/records?per_page=100")).await;
    assert_eq!(all.as_array().unwrap().len(), 11);
    let rejected = api.get(&format!("/api/v1/sync_runs/{run_id}/records?status=rejected&per_page=4")).await;
    assert_eq!(rejected.status, 200);
    assert_eq!(rejected.body["pagination"]["total_records"], 10);
    assert_eq!(rejected.body["pagination"]["last_page"], 3);
    let row = &rejected.body["data"][0];
    assert_eq!((row["status"].as_str(), row["operation"].as_str()), (Some("rejected"), Some("upsert")));
    assert!(row["identifier"].as_str().unwrap().starts_with("user1"), "{row}");
    assert_eq!(row["record_payload"]["email"], row["identifier"], "the payload is the JSON object that was sent: {row}");
    assert!(row["status_message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(row["batch_completed_at"].is_string());
    let invalid = api.data(&format!("/sync_runs/{run_id}/records?status=invalid")).await;
    assert_eq!(invalid.as_array().unwrap().len(), 1);
    assert!(invalid[0]["status_message"].as_str().unwrap().contains("email"), "{}", invalid[0]);
    let one = api.data(&format!("/sync_runs/{run_id}/records?primary_identifier=user12@example.com")).await;
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_eq!(api.data(&format!("/sync_runs/{run_id}/records?operation=delete")).await, serde_json::json!([]));
    assert_eq!(api.data(&format!("/sync_runs/{run_id}/records_count")).await, serde_json::json!([{"record_count": 11}]));
    assert_eq!(api.data(&format!("/sync_runs/{run_id}/records_count?status=rejected")).await, serde_json::json!([{"record_count": 10}]));

    // Error paths, each with a Census error body.
    assert_error(&api.get("/api/v1/syncs/99").await, 404, "99");
    assert_error(&api.get("/api/v1/syncs/nosuch").await, 404, "nosuch");
    assert_error(&api.post("/api/v1/syncs/99/trigger").await, 404, "99");
    assert_error(&api.get("/api/v1/syncs/99/sync_runs").await, 404, "99");
    assert_error(&api.get("/api/v1/sync_runs/999999").await, 404, "999999");
    assert_error(&api.get("/api/v1/sync_runs/abc").await, 404, "abc");
    assert_error(&api.post("/api/v1/sync_runs/999999/cancel").await, 404, "999999");
    assert_error(&api.get("/api/v1/sync_runs/999999/records").await, 404, "999999");
    assert_error(&api.get("/api/v1/sync_runs/999999/records_count").await, 404, "999999");
    assert_error(&api.post(&format!("/api/v1/sync_runs/{run_id}/cancel")).await, 409, "already ended");
    assert_error(&api.request("POST", "/api/v1/syncs/1/trigger", Some(("application/json", "{"))).await, 400, "not valid JSON");
    assert_error(&api.request("POST", "/api/v1/syncs/1/trigger", Some(("application/json", "[true]"))).await, 400, "JSON object");
    assert_error(
        &api.request("POST", "/api/v1/syncs/1/trigger", Some(("application/json", r#"{"force_full_sync": "yes"}"#))).await,
        400,
        "true or false",
    );
    assert_error(&api.post("/api/v1/syncs/1/trigger?force_full_sync=maybe").await, 400, "force_full_sync");
    assert_error(&api.post("/api/v1/syncs/events/trigger?force_full_sync=true").await, 400, "no full sync");
    assert_error(&api.get("/api/v1/syncs?page=x").await, 400, "page");
    assert_error(&api.get("/api/v1/syncs?per_page=0").await, 400, "per_page");
    assert_error(&api.get("/api/v1/syncs?order=sideways").await, 400, "order");
    assert_error(&api.get(&format!("/api/v1/sync_runs/{run_id}/records?status=succeeded")).await, 400, "not deliver");
    // The 400 says what is kept and what to use instead (a deviation from Census, documented).
    let a = api.get(&format!("/api/v1/sync_runs/{run_id}/records_count?status=succeeded")).await;
    assert_error(&a, 400, "keeps only the rows a run did not deliver (status=rejected or status=invalid)");
    assert_error(&a, 400, "use the run's counts");
    assert_error(&a, 400, "records_updated");
    assert_error(&api.get(&format!("/api/v1/sync_runs/{run_id}/records?status=lost")).await, 400, "rejected or invalid");
    assert_error(&api.get(&format!("/api/v1/sync_runs/{run_id}/records?operation=merge")).await, 400, "operation");
    assert_error(&api.get("/api/v1/nothing/here").await, 404, "no such endpoint");
    assert_error(&api.get("/api/v1/syncs/1/trigger").await, 405, "GET is not allowed");
    assert_error(&api.request("DELETE", "/api/v1/syncs/1", None).await, 405, "DELETE");
    // Nothing above queued a run.
    assert_eq!(api.get("/api/v1/syncs/1/sync_runs").await.body["pagination"]["total_records"], 3);

    // The append sync runs too, and sends each event once.
    let ev = api.trigger("events", "").await;
    let ev = api.wait_ended(ev).await;
    // The emulator rejects users 10–19 there too.
    assert_eq!((ev["status"].as_str(), ev["records_updated"].as_i64(), ev["records_failed"].as_i64()), (Some("completed"), Some(20), Some(10)), "{ev}");

    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_bearer_basic_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let (_wh, _emu, p) = setup(dir.path(), 50).await;
    let mut o = opts(&p);
    o.tokens.push(Secret::new("secret-token:second-one"));
    let server = Server::start(o).await.unwrap();
    let api = Api::new(&server.url);
    let basic = |user: &str, pw: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}")));
    for (auth, ok) in [
        (Some(format!("Bearer {TOKEN}")), true),
        (Some(format!("bearer {}", TOKEN.trim_start_matches("secret-token:"))), true),
        (Some("Bearer secret-token:second-one".to_string()), true),
        (Some(basic("bearer", TOKEN)), true),
        (Some(basic("bearer", TOKEN.trim_start_matches("secret-token:"))), true),
        (None, false),
        (Some("Bearer secret-token:wrong".into()), false),
        (Some(format!("Bearer {TOKEN}x")), false),
        (Some(basic("admin", TOKEN)), false),
        (Some("Token abc".into()), false),
        (Some("Bearer ".into()), false),
    ] {
        for path in ["/api/v1/syncs", "/api/v1/sync_runs/1", "/"] {
            let a = api.with_auth(auth.as_deref()).get(path).await;
            if ok {
                assert!(a.status == 200 || (path == "/api/v1/sync_runs/1" && a.status == 404), "{auth:?} {path}: {}", a.status);
            } else {
                assert_eq!(a.status, 401, "{auth:?} {path}");
                assert_eq!(a.body["status"], 401);
                let msg = a.body["message"].as_str().unwrap();
                assert!(!msg.contains(TOKEN.trim_start_matches("secret-token:")), "never echo a token: {msg}");
                assert!(a.headers.get("www-authenticate").is_some_and(|h| h.to_str().unwrap().starts_with("Basic")));
            }
        }
        let t = api.with_auth(auth.as_deref()).post("/api/v1/syncs/1/trigger").await;
        assert_eq!(t.status == 200, ok, "{auth:?}: trigger answered {}", t.status);
    }
    // Health, metrics and the API description need no token.
    let anon = api.with_auth(None);
    assert_eq!(anon.get("/healthz").await.status, 200);
    assert_eq!(anon.get("/metrics").await.status, 200);
    assert_eq!(anon.get("/api/v1/openapi.json").await.status, 200);
    server.shutdown().await;

    // No token configured: the server refuses to start and says how to fix it.
    let err = Server::start(ServeOptions { tokens: vec![], ..opts(&p) }).await.err().expect("a server without tokens must not start");
    assert!(err.full_message().contains("SLUICEGATE_API_TOKEN"), "{}", err.full_message());
}

/// Every operation in the OpenAPI document answers with one of its documented statuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_the_routes() {
    let dir = tempfile::tempdir().unwrap();
    let (_wh, _emu, p) = setup(dir.path(), 50).await;
    let server = Server::start(opts(&p)).await.unwrap();
    let api = Api::new(&server.url);
    let done = api.trigger("1", "").await;
    api.wait_ended(done).await;
    let doc = api.with_auth(None).get("/api/v1/openapi.json").await.body;
    assert_eq!(doc["openapi"].as_str().map(|v| v.starts_with("3.")), Some(true));
    let base = doc["servers"][0]["url"].as_str().unwrap().to_string();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 9, "{}", paths.len());
    let mut operations = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            // A fresh queued-or-working run for cancel; the finished one elsewhere.
            let run = if path.ends_with("/cancel") { api.trigger("1", "").await } else { done };
            let url = format!("{base}{}", path.replace("{sync_id}", "1").replace("{sync_run_id}", &run.to_string()));
            let a = api.request(&method.to_uppercase(), &url, None).await;
            let documented: BTreeSet<u16> = op["responses"].as_object().unwrap().keys().map(|k| k.parse().unwrap()).collect();
            assert!(a.status / 100 == 2 || (path.ends_with("/cancel") && a.status == 409), "{method} {url}: {} {}", a.status, a.body);
            assert!(documented.contains(&a.status), "{method} {url} answered {}, not documented ({documented:?})", a.status);
            // The documented error codes are real too: unknown ids give the documented 404.
            if documented.contains(&404) {
                let missing = format!("{base}{}", path.replace("{sync_id}", "424242").replace("{sync_run_id}", "424242"));
                let a = api.request(&method.to_uppercase(), &missing, None).await;
                assert_eq!(a.status, 404, "{method} {missing}");
                assert!(!a.body["message"].as_str().unwrap().contains("no such endpoint"), "{method} {path} is not routed");
            }
        }
    }
    assert!(operations >= 9);
    // The router's routes are the document's: every other method on a documented path is the
    // documented 405 (not a 404), and an undocumented path is a 404.
    for (path, item) in paths {
        let url = format!("{base}{}", path.replace("{sync_id}", "1").replace("{sync_run_id}", &done.to_string()));
        let allowed: BTreeSet<String> = item.as_object().unwrap().keys().map(|m| m.to_uppercase()).collect();
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            if allowed.contains(method) {
                continue;
            }
            let a = api.request(method, &url, Some(("application/json", "{}"))).await;
            assert_error(&a, 405, "is not allowed on");
            for (m, op) in item.as_object().unwrap() {
                assert!(op["responses"].get("405").is_some(), "{m} {path} does not document the 405 for {method}");
            }
        }
    }
    let routed: BTreeSet<(String, String)> =
        sluicegate::serve::api::ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    let documented: BTreeSet<(String, String)> =
        paths.iter().flat_map(|(p, item)| item.as_object().unwrap().keys().map(move |m| (m.to_uppercase(), p.clone()))).collect();
    assert_eq!(routed, documented, "the router's routes and the document's operations");
    // An oversized trigger body answers the documented 413.
    let big = format!("{{\"force_full_sync\": false, \"pad\": \"{}\"}}", "x".repeat(sluicegate::serve::api::MAX_BODY));
    let a = api.request("POST", "/api/v1/syncs/1/trigger", Some(("application/json", &big))).await;
    assert_eq!(a.status, 413, "{}", a.body);
    assert!(paths["/syncs/{sync_id}/trigger"]["post"]["responses"].get("413").is_some());
    // The SyncRun schema has exactly the keys a run answer has.
    let run = api.data(&format!("/sync_runs/{done}")).await;
    let keys: BTreeSet<&String> = run.as_object().unwrap().keys().collect();
    let schema: BTreeSet<&String> = doc["components"]["schemas"]["SyncRun"]["properties"].as_object().unwrap().keys().collect();
    assert_eq!(keys, schema, "run_json keys vs the SyncRun schema");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_queued_and_working_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (_wh, emu, p) = setup(dir.path(), 2).await;
    // Slow answers: a run takes ~13 batches × 150 ms.
    emu.set_faults(Faults { latency_ms: 150, ..Default::default() });
    let server = Server::start(opts(&p)).await.unwrap();
    let api = Api::new(&server.url);
    let first = api.trigger("1", "").await;
    let second = api.trigger("1", "").await;
    api.wait_run(first, "working", Duration::from_secs(10), |r| r["status"] == "working").await;
    // The second waits behind the first (one working run per sync): cancel ends it at once.
    let a = api.post(&format!("/api/v1/sync_runs/{second}/cancel")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, serde_json::json!({"status": "cancelled", "data": {}}));
    let r = api.data(&format!("/sync_runs/{second}")).await;
    assert_eq!((r["status"].as_str(), r["canceled"].as_bool()), (Some("failed"), Some(true)), "{r}");
    // The working one, once it is delivering, stops after the batches in flight.
    api.wait_run(first, "delivering", Duration::from_secs(30), |r| r["records_processed"].as_i64().unwrap_or(0) > 0 || r["status"] != "working").await;
    let a = api.post(&format!("/api/v1/sync_runs/{first}/cancel")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let r = api.wait_ended(first).await;
    assert_eq!((r["status"].as_str(), r["canceled"].as_bool(), r["error_code"].as_str()), (Some("failed"), Some(true), Some("CANCELED")), "{r}");
    assert!(r["records_processed"].as_i64().unwrap() < 25, "stopped early: {r}");
    // Cancel of a run that ended: 409 with the reason.
    assert_error(&api.post(&format!("/api/v1/sync_runs/{first}/cancel")).await, 409, "already ended");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_history_page_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (_wh, emu, p) = setup(dir.path(), 5).await;
    // Every 3rd request answers 429: retried, counted in the metrics.
    emu.set_faults(Faults { fail_rate: 0.34, fail_status: 429, ..Default::default() });
    let server = Server::start(opts(&p)).await.unwrap();
    let api = Api::new(&server.url);
    let run_id = api.trigger("1", "").await;
    let run = api.wait_ended(run_id).await;
    assert_eq!(run["status"], "completed", "{run}");

    let page = api.get("/").await;
    assert_eq!(page.status, 200);
    assert!(page.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = page.body.as_str().unwrap();
    for needle in ["contacts", "events", "Up to Date", "Ready", &format!("/runs/{run_id}"), "Latest runs", "never run"] {
        assert!(html.contains(needle), "index lacks {needle:?}");
    }
    assert!(!html.contains("<script"), "no JavaScript");
    let detail = api.get(&format!("/runs/{run_id}")).await;
    let html = detail.body.as_str().unwrap();
    assert!(html.contains("Rows not delivered (11)"), "run page counts rejected and invalid rows");
    assert!(html.contains("user12@example.com") && html.contains("rejected") && html.contains("invalid"));
    assert!(html.contains("&quot;email&quot;"), "payloads are escaped HTML");
    for page in [api.get("/").await, detail] {
        let text = page.body.as_str().unwrap();
        assert!(!text.contains(TOKEN) && !text.contains(WEBHOOK_TOKEN), "no secrets in pages");
    }
    assert_eq!(api.get("/runs/999999").await.status, 404);

    let m = api.with_auth(None).get("/metrics").await;
    assert!(m.headers["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = m.body.as_str().unwrap();
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in metrics:\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(value("sluicegate_runs{sync_id=\"1\",sync=\"contacts\",status=\"completed\"}"), 1.0);
    assert_eq!(value("sluicegate_records_sent{sync_id=\"1\""), 15.0);
    assert_eq!(value("sluicegate_records_rejected{sync_id=\"1\""), 10.0);
    assert_eq!(value("sluicegate_records_invalid{sync_id=\"1\""), 1.0);
    let requests = value("sluicegate_destination_request_duration_seconds_count{destination_type=\"webhook\",sync_id=\"1\"");
    let limited = value("sluicegate_destination_rate_limited_total{destination_type=\"webhook\",sync_id=\"1\"");
    assert_eq!(requests as u64, emu.stats().requests, "one latency observation per request");
    assert!(limited >= 1.0, "429s are counted:\n{text}");
    assert_eq!(value("sluicegate_worker_runs_total{outcome=\"finished\"}"), 1.0);
    assert!(!text.contains(TOKEN) && !text.contains(WEBHOOK_TOKEN));
    assert_eq!(api.with_auth(None).get("/healthz").await.body, serde_json::json!({"status": "ok"}));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_trigger_each_slot_once_across_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let (_wh, emu, _) = setup(dir.path(), 50).await;
    // A third sync (same table as the first) on a cron schedule with seconds: every second.
    let text = project(&emu.url, 50)
        + "  - id: 3\n    name: contacts_cron\n    source: {connection: warehouse, table: contacts}\n    destination: {connection: hook, object: contacts_cron}\n    primary_identifier: {from: email, to: email}\n";
    let p = write_project(dir.path(), &text);
    let mut o = opts(&p);
    o.schedules = vec![
        Schedule::parse_arg("contacts=every:1s").unwrap(),
        Schedule::parse_arg("2=continuous:1s").unwrap(),
        Schedule::parse_arg("contacts_cron=cron:* * * * * *").unwrap(),
    ];
    // Two replicas over one store, both running the same schedules.
    let a = Server::start(o.clone()).await.unwrap();
    let b = Server::start(o).await.unwrap();
    let api = Api::new(&a.url);
    assert_eq!(api.data("/syncs/1").await["schedule_frequency"], "expression");
    assert_eq!(api.data("/syncs/2").await["schedule_frequency"], "continuous");
    let s3 = api.data("/syncs/3").await;
    assert_eq!((s3["schedule_frequency"].as_str(), s3["cron_expression"].as_str()), (Some("expression"), Some("* * * * * *")), "{s3}");
    tokio::time::sleep(Duration::from_millis(3600)).await;
    a.shutdown().await;
    b.shutdown().await;
    let server = Server::start(opts(&p)).await.unwrap();
    let api = Api::new(&server.url);
    for sync in ["1", "2", "3"] {
        let runs = api.data(&format!("/syncs/{sync}/sync_runs?per_page=100")).await;
        let runs = runs.as_array().unwrap();
        assert!(runs.len() >= 2, "sync {sync}: {} scheduled runs in 3.6 s", runs.len());
        let mut slots = BTreeSet::new();
        for r in runs {
            assert_eq!(r["sync_trigger_reason"]["ui_tag"], "Schedule", "{r}");
            let slot = r["scheduled_execution_time"].as_str().unwrap().to_string();
            assert!(slot.ends_with(".000Z"), "slots fall on whole seconds: {slot}");
            assert!(slots.insert(slot.clone()), "sync {sync}: slot {slot} triggered twice by two replicas");
        }
    }
    server.shutdown().await;
}

/// A sync's `schedule:` key in the project file is run by the server without any flag; a
/// `--schedule` for the same sync replaces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_from_the_project_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_wh, emu, _) = setup(dir.path(), 50).await;
    let text = project(&emu.url, 50).replace("    name: contacts\n", "    name: contacts\n    schedule: every:1s\n");
    assert!(text.contains("schedule: every:1s"));
    let p = write_project(dir.path(), &text);
    let server = Server::start(opts(&p)).await.unwrap();
    let api = Api::new(&server.url);
    assert_eq!(api.data("/syncs/1").await["schedule_frequency"], "expression");
    assert_eq!(api.data("/syncs/2").await["schedule_frequency"], "never");
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let runs = api.data("/syncs/1/sync_runs?per_page=100").await;
    let runs = runs.as_array().unwrap().clone();
    assert!(!runs.is_empty() && runs.iter().all(|r| r["sync_trigger_reason"]["ui_tag"] == "Schedule"), "{runs:?}");
    assert!(api.data("/syncs/2/sync_runs").await.as_array().unwrap().is_empty(), "sync 2 has no schedule");
    server.shutdown().await;
    // A flag for the same sync replaces the key.
    let mut o = opts(&p);
    o.schedules = vec![Schedule::parse_arg("contacts=continuous:1h").unwrap()];
    let server = Server::start(o).await.unwrap();
    assert_eq!(Api::new(&server.url).data("/syncs/1").await["schedule_frequency"], "continuous");
    server.shutdown().await;
    // A schedule that is not one is refused at load, with its line.
    let bad = text.replace("schedule: every:1s", "schedule: every:soon");
    let e = sluicegate::config::Project::from_str_with_env(&bad, Path::new("sluicegate.yml"), &|_| None).unwrap_err().to_string();
    assert!(e.contains("sluicegate.yml:") && e.contains("syncs[0].schedule:") && e.contains("\"soon\" is not a duration"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_requeues_after_the_batch_in_flight_and_another_server_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 60).await;
    add_events(&wh, 1).await;
    let emu = emulator().await;
    emu.set_faults(Faults { latency_ms: 200, ..Default::default() });
    let p = write_project(dir.path(), &project(&emu.url, 5));
    let server = Server::start(opts(&p)).await.unwrap();
    let api = Api::new(&server.url);
    let run_id = api.trigger("1", "").await;
    api.wait_run(run_id, "delivering", Duration::from_secs(20), |r| r["records_updated"].as_i64().unwrap_or(0) > 0).await;
    server.shutdown().await;
    let accepted_before = emu.stats().records_accepted;
    assert!(accepted_before < 60, "stopped before the end ({accepted_before} accepted)");

    // Released to the queue, with what was acknowledged committed.
    let engine = sluicegate::engine::Engine::open(&p, Default::default()).await.unwrap();
    let run = engine.get_run(run_id).await.unwrap();
    assert_eq!(run.status.as_str(), "queued", "{run:?}");
    let state: i64 = {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("sluicegate_state.db").display())).await.unwrap();
        sqlx::query_scalar("SELECT COUNT(*) FROM sync_state WHERE sync_id = 1 AND fingerprint != zeroblob(16)").fetch_one(&pool).await.unwrap()
    };
    assert_eq!(state as u64, accepted_before, "every accepted record (and only those) is in the acknowledged state");

    emu.set_faults(Faults::default());
    let server = Server::start(opts(&p)).await.unwrap();
    let api = Api::new(&server.url);
    let run = api.wait_ended(run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["records_updated"].as_u64().unwrap() + accepted_before, 60, "the resumed run sends exactly the rest: {run}");
    assert_eq!(emu.stats().records_accepted, 60);
    assert_eq!(emu.store().len(), 60);
    server.shutdown().await;
}

/// Two `sluicegate serve` replicas on one Postgres store: 50 triggers across 5 syncs, every run
/// executed exactly once, never two runs of one sync at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_postgres_execute_every_run_exactly_once() {
    let Some(admin) = pg_url() else { return };
    let state = fresh_pg_database(&admin, "sg_serve_replicas").await;
    // The test server trusts local users; a password in the URL is accepted and must never show.
    let state = state.replacen("postgres://postgres@", "postgres://postgres:hunter2-pg-secret@", 1);
    assert!(state.contains("hunter2-pg-secret"), "the test server URL has the expected form: {state}");
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 12).await;
    let emu = emulator().await;
    emu.set_faults(Faults { latency_ms: 15, ..Default::default() });
    let p = write_project(dir.path(), &many_syncs_project(&emu.url, 5, 4));
    let extra = ["--workers", "3", "--poll", "100ms"];
    let a = ServeProcess::start(&p, &state, &extra, &[]);
    let b = ServeProcess::start(&p, &state, &extra, &[]);
    let apis = [Api::new(&a.url), Api::new(&b.url)];
    let mut runs = Vec::new();
    for i in 0..50 {
        let sync = (i % 5) + 1;
        // Full syncs: each run sends all 12 rows, so the emulator counts executions.
        runs.push((sync, apis[i % 2].trigger(&sync.to_string(), "?force_full_sync=true").await));
    }
    let mut by_sync: BTreeMap<usize, Vec<(String, String)>> = BTreeMap::new();
    for (sync, id) in &runs {
        let r = apis[0].wait_ended(*id).await;
        assert_eq!(r["status"], "completed", "{r}");
        assert_eq!(r["records_updated"], 12, "{r}");
        by_sync.entry(*sync).or_default().push((r["started_at"].as_str().unwrap().into(), r["completed_at"].as_str().unwrap().into()));
    }
    assert_eq!(emu.stats().records_accepted, 50 * 12, "each run executed exactly once");
    for (sync, mut spans) in by_sync {
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[0].1 <= w[1].0, "sync {sync}: a run started at {} before the previous ended at {}", w[1].0, w[0].1);
        }
    }
    // Claims, from both replicas' logs: each run once, and both replicas worked.
    let logs = [a.stderr(), b.stderr()];
    let claimed = |log: &str| -> Vec<i64> {
        let plain = strip_ansi(log);
        plain.lines()
            .filter(|l| l.contains("claimed run"))
            .filter_map(|l| l.split("run_id=").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
            .collect::<Vec<i64>>()
    };
    let (ca, cb) = (claimed(&logs[0]), claimed(&logs[1]));
    let mut all: Vec<i64> = ca.iter().chain(cb.iter()).copied().collect();
    all.sort();
    let mut expected: Vec<i64> = runs.iter().map(|r| r.1).collect();
    expected.sort();
    assert_eq!(all, expected, "every run claimed exactly once");
    assert!(!ca.is_empty() && !cb.is_empty(), "both replicas claimed runs ({} and {})", ca.len(), cb.len());
    for log in &logs {
        assert!(!log.contains(TOKEN) && !log.contains(TOKEN.trim_start_matches("secret-token:")), "the API token is never logged");
        assert!(!log.contains("hunter2-pg-secret"), "the state store URL is logged without credentials");
    }
    // SIGTERM: a clean stop.
    let (mut a, mut b) = (a, b);
    for p in [&mut a, &mut b] {
        let status = p.stop();
        assert!(status.success(), "sluicegate serve exited with {status}: {}", p.stderr());
        assert!(p.stderr().contains("stopping"), "{}", p.stderr());
    }
}

/// A replica killed mid-run: its run is failed as "executor lost" (its lease is gone), and the
/// next run on another replica delivers what the killed one did not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_replica_run_fails_as_executor_lost_and_the_next_run_resumes() {
    let Some(admin) = pg_url() else { return };
    let state = fresh_pg_database(&admin, "sg_serve_kill").await;
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 40).await;
    let emu = emulator().await;
    emu.set_faults(Faults { latency_ms: 250, ..Default::default() });
    let p = write_project(dir.path(), &many_syncs_project(&emu.url, 1, 2));
    let lease = [("SLUICEGATE_LEASE", "2s")];
    let mut a = ServeProcess::start(&p, &state, &["--poll", "100ms"], &lease);
    let api_a = Api::new(&a.url);
    let run_id = api_a.trigger("1", "").await;
    api_a.wait_run(run_id, "delivering", Duration::from_secs(20), |r| r["records_updated"].as_i64().unwrap_or(0) > 0).await;
    a.kill();
    let started = Instant::now();
    let b = ServeProcess::start(&p, &state, &["--poll", "100ms"], &lease);
    let api_b = Api::new(&b.url);
    let run = api_b
        .wait_run(run_id, "failed as executor lost", Duration::from_secs(15), |r| r["status"] == "failed")
        .await;
    assert_eq!(run["error_code"], "EXECUTOR_LOST", "{run}");
    assert!(run["error_message"].as_str().unwrap().contains("executor lost"), "{run}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let accepted = emu.stats().records_accepted;
    assert!(accepted < 40, "killed mid-run ({accepted} accepted)");
    emu.set_faults(Faults::default());
    let next = api_b.trigger("1", "").await;
    let next = api_b.wait_ended(next).await;
    assert_eq!(next["status"], "completed", "{next}");
    assert_eq!(emu.store().len(), 40, "every row is at the destination after the next run");
    assert!(next["records_updated"].as_u64().unwrap() <= 40 - accepted + 2 * 2, "the next run sends the rest (plus the in-doubt batches): {next}");
}

/// A run whose executor is on another host (so the same-host pid check cannot apply) and stops
/// renewing its lease: it is failed as "executor lost" only once the lease has expired, and the
/// next run delivers every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_executor_that_stops_renewing_is_lost_only_after_its_lease() {
    let Some(admin) = pg_url() else { return };
    let state = fresh_pg_database(&admin, "sg_serve_foreign").await;
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 20).await;
    let emu = emulator().await;
    let p = write_project(dir.path(), &many_syncs_project(&emu.url, 1, 5));
    let lease = Duration::from_secs(3);
    let engine = sluicegate::engine::Engine::open(&p, sluicegate::engine::EngineOptions { state: Some(state.clone()), lease: Some(lease), ..Default::default() })
        .await
        .unwrap();
    let store = engine.store().clone();
    let reason = sluicegate::store::TriggerReason { ui_tag: "API".into(), ui_detail: "test: claimed by a foreign executor".into() };
    let run_id = store.create_served_run(1, "contacts_1", false, &reason, None).await.unwrap().expect("a queued run");
    // An executor id as an engine on another host writes it (`host:pid:start`, see
    // `engine::executor_id`): liveness is unknown here, only the lease can tell.
    let foreign = "replica-7.other-host.invalid:4242:987654321";
    assert_ne!(foreign, engine.executor());
    assert_eq!(sluicegate::engine::executor_alive(foreign), None, "no pid check for another host");
    let claimed_at = Instant::now();
    let claimed = store.claim_next_served(foreign, lease, &[1]).await.unwrap().expect("the foreign executor claims the run");
    assert_eq!(claimed.id, run_id);
    // The foreign executor never renews. A server over the same store reaps lost runs whenever
    // it reads them and before it claims.
    let mut o = opts(&p);
    o.state = Some(state.clone());
    o.lease = Some(lease);
    let server = Server::start(o).await.unwrap();
    let api = Api::new(&server.url);
    let mut checks = 0;
    while claimed_at.elapsed() + Duration::from_millis(600) < lease {
        let r = api.data(&format!("/sync_runs/{run_id}")).await;
        assert_eq!(r["status"], "working", "failed {:?} after the claim, before its lease of {lease:?} expired: {r}", claimed_at.elapsed());
        checks += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(checks >= 5, "the run was watched while its lease held ({checks} reads)");
    let r = api.wait_run(run_id, "failed as executor lost", Duration::from_secs(20), |r| r["status"] != "working").await;
    let elapsed = claimed_at.elapsed();
    assert!(elapsed >= lease, "failed {elapsed:?} after the claim, before the lease of {lease:?} expired: {r}");
    assert_eq!((r["status"].as_str(), r["error_code"].as_str()), (Some("failed"), Some("EXECUTOR_LOST")), "{r}");
    let msg = r["error_message"].as_str().unwrap();
    assert!(msg.contains("executor lost") && msg.contains(foreign) && msg.contains("stopped renewing its lease"), "{msg}");
    assert_eq!(emu.stats().requests, 0, "the foreign executor sent nothing");
    // The next run resumes from what was acknowledged (nothing): every row, once.
    let next = api.trigger("1", "").await;
    let next = api.wait_ended(next).await;
    assert_eq!((next["status"].as_str(), next["records_updated"].as_i64()), (Some("completed"), Some(20)), "{next}");
    assert_eq!(emu.store().len(), 20);
    assert_eq!(emu.stats().records_accepted, 20);
    server.shutdown().await;
}

/// SIGTERM to a `sluicegate serve` replica mid-run on Postgres: the run goes back to `queued`
/// with no executor and no lease, and another replica completes it with every row delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_replica_requeues_its_run_and_another_replica_completes_it() {
    let Some(admin) = pg_url() else { return };
    let state = fresh_pg_database(&admin, "sg_serve_sigterm").await;
    let dir = tempfile::tempdir().unwrap();
    Warehouse::create(dir.path(), 40).await;
    let emu = emulator().await;
    emu.set_faults(Faults { latency_ms: 250, ..Default::default() });
    let p = write_project(dir.path(), &many_syncs_project(&emu.url, 1, 2));
    let mut a = ServeProcess::start(&p, &state, &["--poll", "100ms"], &[]);
    let api_a = Api::new(&a.url);
    let run_id = api_a.trigger("1", "").await;
    api_a.wait_run(run_id, "delivering", Duration::from_secs(20), |r| r["records_updated"].as_i64().unwrap_or(0) > 0).await;
    let status = a.stop();
    assert!(status.success(), "sluicegate serve exited with {status}: {}", a.stderr());
    assert!(a.stderr().contains("stopping"), "{}", a.stderr());
    let accepted = emu.stats().records_accepted;
    assert!(accepted > 0 && accepted < 40, "stopped mid-run ({accepted} of 40 accepted)");
    // Back in the queue, without executor or lease, so any replica can claim it at once.
    let pool = sqlx::PgPool::connect(&state).await.unwrap();
    let (status, executor, lease): (String, Option<String>, Option<String>) =
        sqlx::query_as("SELECT status, executor, lease_expires_at FROM sluicegate.sync_runs WHERE id = $1").bind(run_id).fetch_one(&pool).await.unwrap();
    pool.close().await;
    assert_eq!((status.as_str(), executor, lease), ("queued", None, None));
    emu.set_faults(Faults::default());
    let b = ServeProcess::start(&p, &state, &["--poll", "100ms"], &[]);
    let api_b = Api::new(&b.url);
    let run = api_b.wait_ended(run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["records_updated"].as_u64().unwrap() + accepted, 40, "the other replica sends exactly the rest: {run}");
    let stats = emu.stats();
    assert_eq!((stats.records_accepted, stats.duplicates), (40, 0), "every row delivered once: {stats:?}");
    assert_eq!(emu.store().len(), 40);
    assert!(strip_ansi(&b.stderr()).contains(&format!("run_id={run_id}")), "the other replica claimed the run: {}", b.stderr());
}

/// `schedule:` in the project file: the string form or a mapping with one key; bad ones are
/// refused with file:line and the path.
#[test]
fn schedule_mapping_form_in_the_project_file() {
    let base = project("http://127.0.0.1:9", 50);
    let with = |schedule: &str| base.replace("    name: contacts\n", &format!("    name: contacts\n    schedule: {schedule}\n"));
    let load = |text: &str| sluicegate::config::Project::from_str_with_env(text, Path::new("sluicegate.yml"), &|_| None);
    for (written, stored) in [
        ("every:1h", "every:1h"),
        ("{every: 1h}", "every:1h"),
        ("{every: 90}", "every:90"),
        ("{cron: \"0 */6 * * *\"}", "cron:0 */6 * * *"),
        ("{cron: \"*/5 * * * * *\"}", "cron:*/5 * * * * *"),
        ("{continuous: true}", "continuous"),
        ("{continuous: 30s}", "continuous:30s"),
        ("\n      every: 15m", "every:15m"),
    ] {
        let p = load(&with(written)).unwrap_or_else(|e| panic!("{written}: {e}"));
        assert_eq!(p.syncs[0].schedule.as_deref(), Some(stored), "{written}");
        Schedule::parse_arg(&format!("contacts={stored}")).unwrap();
    }
    assert_eq!(load(&with("~")).unwrap().syncs[0].schedule, None);
    // The schedule line is line 18 of the file (the project text starts with a newline).
    let line = base.lines().position(|l| l == "    name: contacts").unwrap() + 2;
    for (written, needle) in [
        ("{every: soon}", "\"soon\" is not a duration"),
        ("{cron: \"61 * * * *\"}", "is not a cron expression"),
        ("{continuous: false}", "`continuous: false` schedules nothing"),
        ("{every: 1h, cron: \"0 * * * *\"}", "a schedule has one kind, found every and cron"),
        ("{evry: 1h}", "unknown key `evry` (did you mean `every`?)"),
        ("{}", "empty schedule"),
        ("[every:1h]", "found a list"),
        ("{every: [1h]}", "expected a string"),
    ] {
        let e = load(&with(written)).err().unwrap_or_else(|| panic!("{written} was accepted")).to_string();
        assert!(e.contains(&format!("sluicegate.yml:{line}:")), "{written}: no file:line {line} in {e}");
        assert!(e.contains("syncs[0].schedule"), "{written}: no path in {e}");
        assert!(e.contains(needle), "{written}: expected {needle:?} in {e}");
    }
}

/// The run history page in headless Chromium. The screenshot goes to a temporary directory, or
/// to `SLUICEGATE_SCREENSHOT` when set (how docs/serve-run-page.png is refreshed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_history_page_renders_in_headless_chromium() {
    let Some(chromium) = ["chromium", "chromium-browser"].into_iter().find(|c| {
        std::process::Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success())
    }) else {
        if std::env::var("SLUICEGATE_REQUIRE_ALL").is_ok_and(|v| !v.is_empty() && v != "0") {
            panic!("chromium is not installed and SLUICEGATE_REQUIRE_ALL=1: apt-get install chromium");
        }
        eprintln!("SKIPPED: chromium is not installed (apt-get install chromium)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_wh, emu, p) = setup(dir.path(), 5).await;
    let server = Server::start(opts(&p)).await.unwrap();
    let api = Api::new(&server.url);
    let ok = api.trigger("1", "").await;
    api.wait_ended(ok).await;
    let ev = api.trigger("events", "").await;
    api.wait_ended(ev).await;
    // A failing run, to show an error on the page.
    emu.set_faults(Faults { fail_rate: 1.0, fail_status: 401, fail_message: "invalid credentials for this webhook".into(), ..Default::default() });
    let bad = api.trigger("1", "?force_full_sync=true").await;
    assert_eq!(api.wait_ended(bad).await["status"], "failed");

    let port = server.addr.port();
    let url = format!("http://bearer:{}@127.0.0.1:{port}/", TOKEN);
    let profile = tempfile::tempdir().unwrap();
    let run_chromium = |extra: &[&str], url: &str| -> String {
        tokio::task::block_in_place(|| {
            let out = std::process::Command::new(chromium)
                .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"])
                .args(["--disable-component-update", "--disable-sync", "--hide-scrollbars", "--window-size=1500,900"])
                .arg(format!("--user-data-dir={}", profile.path().display()))
                .args(extra)
                .arg(url)
                .output()
                .expect("chromium runs");
            assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    };
    let dom = run_chromium(&["--dump-dom"], &url);
    for needle in ["Syncs", "Latest runs", "contacts", "events", "Failing", "invalid credentials", &format!("/runs/{ok}")] {
        assert!(dom.contains(needle), "the page Chromium rendered lacks {needle:?}:\n{dom}");
    }
    let detail = run_chromium(&["--dump-dom"], &format!("http://bearer:{}@127.0.0.1:{port}/runs/{ok}", TOKEN));
    assert!(detail.contains("Rows not delivered (11)") && detail.contains("user15@example.com"), "{detail}");
    let shot_dir = tempfile::tempdir().unwrap();
    let shot = match std::env::var_os("SLUICEGATE_SCREENSHOT") {
        Some(p) => std::path::PathBuf::from(p),
        None => shot_dir.path().join("serve-run-page.png"),
    };
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&shot);
    run_chromium(&[&format!("--screenshot={}", shot.display())], &url);
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real screenshot ({} bytes)", png.len());
    server.shutdown().await;
}

/// Log text without terminal colour codes.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
