//! `sluicegate serve` against hostile clients, over real HTTP: every protected route refuses a
//! missing or wrong token with 401; oversized bodies are 413; unknown routes and methods answer
//! in the Census error shape; SQL in every string parameter is only data (no error, no change to
//! the store); the run pages escape everything that came from the warehouse or a destination.

mod common;
#[path = "common/serve.rs"]
mod serve_helpers;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use sluicegate::config::Secret;
use sluicegate::emulator::webhook::RejectRule;
use sluicegate::serve::{ServeOptions, Server};

use common::{emulator, write_project, Warehouse};
use serve_helpers::{project, Api, Answer, TOKEN};

fn opts(project: &Path) -> ServeOptions {
    let mut o = ServeOptions::new(project, SocketAddr::from(([127, 0, 0, 1], 0)), vec![Secret::new(TOKEN)]);
    o.workers = 1;
    o.poll = Duration::from_millis(50);
    o
}

/// One HTTP/1.1 POST over a fresh socket: the head (with `extra` header lines), then `body` as
/// given; reads the answer up to its declared length.
async fn raw_post(base: &str, path: &str, extra: &str, body: &[u8]) -> Answer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\n{extra}\r\n");
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(body).await.unwrap();
    sock.flush().await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let answer = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                let len = head.lines().find_map(|l| l.strip_prefix("content-length:")).map(|v| v.trim().parse::<usize>().unwrap());
                if let Some(len) = len {
                    if got.len() >= end + 4 + len {
                        return (head, got[end + 4..end + 4 + len].to_vec());
                    }
                }
            }
            let n = sock.read(&mut buf).await.unwrap();
            assert!(n > 0, "{path}: connection closed before a whole answer: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{path}: no answer in 20 s"));
    let (head, body) = answer;
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let text = String::from_utf8(body).unwrap();
    Answer { status, body: serde_json::from_str(&text).unwrap_or(Value::String(text)), headers: Default::default() }
}

/// The Census error shape: exactly `{"status": <code>, "message": "…"}`.
fn assert_census_error(a: &Answer, status: u16, what: &str) {
    assert_eq!(a.status, status, "{what}: {}", a.body);
    let o = a.body.as_object().unwrap_or_else(|| panic!("{what}: not a JSON object: {}", a.body));
    assert_eq!(o.get("status"), Some(&Value::from(status)), "{what}: {}", a.body);
    assert!(o.get("message").is_some_and(Value::is_string), "{what}: {}", a.body);
    assert_eq!(o.len(), 2, "{what}: only status and message: {}", a.body);
}

const PROTECTED: &[(&str, &str)] = &[
    ("GET", "/api/v1/syncs"),
    ("GET", "/api/v1/syncs/1"),
    ("GET", "/api/v1/syncs/contacts"),
    ("POST", "/api/v1/syncs/1/trigger"),
    ("GET", "/api/v1/syncs/1/sync_runs"),
    ("GET", "/api/v1/sync_runs/1"),
    ("POST", "/api/v1/sync_runs/1/cancel"),
    ("GET", "/api/v1/sync_runs/1/records"),
    ("GET", "/api/v1/sync_runs/1/records_count"),
    ("GET", "/"),
    ("GET", "/runs/1"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protected_route_needs_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let _wh = Warehouse::create(dir.path(), 5).await;
    serve_helpers::add_events(&_wh, 1).await;
    let emu = emulator().await;
    let p = write_project(dir.path(), &project(&emu.url, 50));
    let server = Server::start(opts(&p)).await.unwrap();
    let api = Api::new(&server.url);
    let run = api.trigger("1", "").await;
    api.wait_ended(run).await;
    let before = api.data("/syncs/1/sync_runs").await.as_array().unwrap().len();
    for auth in [None, Some("Bearer secret-token:wrong"), Some("Bearer "), Some("Basic Og=="), Some(&format!("Bearer {TOKEN}x")[..]), Some("Digest x")] {
        for (method, path) in PROTECTED {
            let a = api.with_auth(auth).request(method, path, None).await;
            assert_census_error(&a, 401, &format!("{auth:?} {method} {path}"));
            assert!(!a.body.to_string().contains(TOKEN), "never echo a token");
        }
    }
    // None of the refused triggers or cancels did anything.
    assert_eq!(api.data("/syncs/1/sync_runs").await.as_array().unwrap().len(), before);
    assert_eq!(api.data(&format!("/sync_runs/{run}")).await["canceled"], false);
    server.shutdown().await;
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_unknown_routes_and_methods() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 5).await;
    serve_helpers::add_events(&wh, 1).await;
    let emu = emulator().await;
    let p = write_project(dir.path(), &project(&emu.url, 50));
    let server = Server::start(opts(&p)).await.unwrap();
    let api = Api::new(&server.url);

    // A body over the limit is refused in the API's error shape and queues nothing. Spoken over a
    // raw socket so that the client never has unread bytes in flight when the server closes (a
    // client that keeps writing after the answer may see a reset instead, which is HTTP/1.1).
    // Declared too long: refused on the header alone, before any of the body is sent.
    let max = sluicegate::serve::api::MAX_BODY;
    for declared in [max + 1, 1024 * 1024, usize::MAX / 2] {
        let a = raw_post(&server.url, "/api/v1/syncs/1/trigger", &format!("content-length: {declared}\r\n"), b"").await;
        assert_census_error(&a, 413, &format!("a declared body of {declared} bytes"));
    }
    // No declared length (chunked): cut while it is read, at one byte over the limit.
    let mut chunked = Vec::new();
    let mut left = max + 1;
    while left > 0 {
        let n = left.min(4096);
        chunked.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        chunked.extend(std::iter::repeat_n(b' ', n));
        chunked.extend_from_slice(b"\r\n");
        left -= n;
    }
    let a = raw_post(&server.url, "/api/v1/syncs/1/trigger", "transfer-encoding: chunked\r\n", &chunked).await;
    assert_census_error(&a, 413, "a chunked body one byte over the limit");
    // Just under the limit is read and parsed (and refused as not JSON).
    let a = api.request("POST", "/api/v1/syncs/1/trigger", Some(("application/json", &"y".repeat(max - 10)))).await;
    assert_census_error(&a, 400, "a body that is not JSON");
    assert_eq!(api.data("/syncs/1/sync_runs").await.as_array().unwrap().len(), 0, "no refused trigger queued a run");
    // The server still answers after all that.
    assert_eq!(api.get("/api/v1/syncs/1").await.status, 200);

    for path in ["/api/v1/nope", "/api/v2/syncs", "/api/v1/syncs/1/unknown", "/admin", "/api/v1/sync_runs/1/records/extra", "/runs", "/.env", "/api/v1/syncs/1/trigger/"] {
        let a = api.get(path).await;
        assert_census_error(&a, if path.ends_with("/trigger/") { a.status } else { 404 }, path);
        // Without a token, an unknown route is still a 404 or a 401, never a 200.
        let anon = api.with_auth(None).get(path).await;
        assert!(anon.status == 404 || anon.status == 401, "{path} without a token: {}", anon.status);
    }
    for (method, path) in [("DELETE", "/api/v1/syncs/1"), ("PUT", "/api/v1/sync_runs/1"), ("GET", "/api/v1/syncs/1/trigger"), ("PATCH", "/api/v1/syncs")] {
        let a = api.request(method, path, None).await;
        assert_census_error(&a, 405, &format!("{method} {path}"));
    }
    // Unknown sync and run ids are 404s in the same shape.
    for path in ["/api/v1/syncs/999", "/api/v1/syncs/nosuch/sync_runs", "/api/v1/sync_runs/999", "/api/v1/sync_runs/abc/records"] {
        assert_census_error(&api.get(path).await, 404, path);
    }
    server.shutdown().await;
    emu.stop().await;
}

/// SQL and other hostile text in every path segment and query parameter: the answers are 4xx
/// or 200 with nothing, never a 500, and the store holds exactly what it held before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_in_every_string_parameter_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 30).await;
    serve_helpers::add_events(&wh, 3).await;
    let emu = emulator().await;
    emu.set_reject_rules(vec![RejectRule::parse("email=^user1[0-9]@").unwrap()]);
    let p = write_project(dir.path(), &project(&emu.url, 50));
    let server = Server::start(opts(&p)).await.unwrap();
    let api = Api::new(&server.url);
    let run = api.trigger("1", "").await;
    let ended = api.wait_ended(run).await;
    assert_eq!(ended["records_failed"], 10);

    let snapshot = || async {
        let runs = api.data("/syncs/1/sync_runs?per_page=100").await;
        let records = api.get(&format!("/api/v1/sync_runs/{run}/records?per_page=100")).await.body["data"].clone();
        (runs, records)
    };
    let before = snapshot().await;
    let attacks = [
        "1; DROP TABLE runs; --",
        "1' OR '1'='1",
        "' OR 1=1 --",
        "1 UNION SELECT * FROM sync_state --",
        "\"; DELETE FROM runs; --",
        "1)); DELETE FROM rejections; --",
        "%27%20OR%20%271%27%3D%271",
        "user10@example.com' OR identifier LIKE '%",
        "\u{0}",
        "../../etc/passwd",
        "9223372036854775807",
        "-9223372036854775808",
        "99999999999999999999999",
    ];
    let enc = |s: &str| -> String { s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect() };
    for attack in attacks {
        let e = enc(attack);
        let mut paths = vec![
            format!("/api/v1/syncs/{e}"),
            format!("/api/v1/syncs/{e}/sync_runs"),
            format!("/api/v1/sync_runs/{e}"),
            format!("/api/v1/sync_runs/{e}/records"),
            format!("/api/v1/sync_runs/{e}/records_count"),
            format!("/runs/{e}"),
            format!("/?limit={e}"),
            format!("/runs/{run}?limit={e}"),
        ];
        for param in ["page", "per_page", "order", "status", "operation", "primary_identifier"] {
            paths.push(format!("/api/v1/sync_runs/{run}/records?{param}={e}"));
            paths.push(format!("/api/v1/sync_runs/{run}/records_count?{param}={e}"));
            paths.push(format!("/api/v1/syncs/1/sync_runs?{param}={e}"));
            paths.push(format!("/api/v1/syncs?{param}={e}"));
        }
        for path in &paths {
            let a = api.get(path).await;
            assert!(a.status < 500, "{path}: {} {}", a.status, a.body);
            if a.status == 200 && path.contains("/records") && path.contains("primary_identifier") {
                // An identifier filter is a value compared for equality: no record matches.
                let n = if path.contains("records_count") { a.body["data"][0]["record_count"].as_i64() } else { Some(a.body["data"].as_array().unwrap().len() as i64) };
                assert_eq!(n, Some(0), "{path}: {}", a.body);
            }
        }
        for path in [format!("/api/v1/syncs/{e}/trigger"), format!("/api/v1/sync_runs/{e}/cancel"), format!("/api/v1/syncs/1/trigger?force_full_sync={e}")] {
            let a = api.post(&path).await;
            assert!(matches!(a.status, 400 | 404 | 409), "{path}: {} {}", a.status, a.body);
        }
        let body = serde_json::json!({"force_full_sync": attack}).to_string();
        let a = api.request("POST", "/api/v1/syncs/1/trigger", Some(("application/json", &body))).await;
        assert_eq!(a.status, 400, "{}", a.body);
    }
    // The real identifier filter still works: the attack strings were data, not SQL.
    let one = api.get(&format!("/api/v1/sync_runs/{run}/records?primary_identifier=user15%40example.com")).await;
    assert_eq!(one.body["data"].as_array().unwrap().len(), 1, "{}", one.body);
    assert_eq!(snapshot().await, before, "the store changed");
    server.shutdown().await;
    emu.stop().await;
}

/// Markup and script from the warehouse (names, identifiers) and from the destination
/// (rejection reasons) appear on the run pages only escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_pages_escape_all_data() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(dir.path(), 12).await;
    serve_helpers::add_events(&wh, 1).await;
    wh.exec("UPDATE contacts SET name = '<script>alert(1)</script>\"''&x' WHERE id <= 12").await;
    wh.exec("UPDATE contacts SET email = 'user11@example.com<img src=x onerror=alert(2)>' WHERE id = 11").await;
    wh.exec("INSERT INTO contacts (id, email, name, score) VALUES (99, NULL, '<iframe src=javascript:alert(3)>', 1)").await;
    let emu = emulator().await;
    // Rejected with a reason quoting the field: the destination's text goes on the page too.
    emu.set_reject_rules(vec![RejectRule::parse("email=^user1[01]@").unwrap()]);
    let p = write_project(dir.path(), &project(&emu.url, 50));
    let server = Server::start(opts(&p)).await.unwrap();
    let api = Api::new(&server.url);
    let run = api.trigger("1", "").await;
    let ended = api.wait_ended(run).await;
    assert_eq!((ended["records_failed"].as_i64(), ended["records_invalid"].as_i64()), (Some(2), Some(1)), "{ended}");
    // A failed run with the markup in its error message: the emulator refuses everything.
    emu.set_faults(sluicegate::emulator::webhook::Faults {
        fail_rate: 1.0,
        fail_status: 404,
        fail_message: "<script>alert('err')</script>".into(),
        ..Default::default()
    });
    wh.exec("UPDATE contacts SET score = score + 1").await;
    let failed = api.trigger("1", "").await;
    let f = api.wait_ended(failed).await;
    assert_eq!(f["status"], "failed", "{f}");
    assert!(f["error_message"].as_str().unwrap().contains("<script>alert('err')</script>"), "the API gives the text as is: {f}");

    for path in ["/".to_string(), format!("/runs/{run}"), format!("/runs/{failed}")] {
        let a = api.get(&path).await;
        assert_eq!(a.status, 200);
        assert!(a.headers["content-type"].to_str().unwrap().starts_with("text/html"));
        let html = a.body.as_str().unwrap();
        for raw in ["<script", "<img", "<iframe", "alert('err')"] {
            assert!(!html.contains(raw), "{path}: {raw:?} unescaped on the page");
        }
        // The page has no scripts of its own either.
        assert!(!html.to_ascii_lowercase().contains("<script"), "{path}");
    }
    let page = api.get(&format!("/runs/{run}")).await.body.as_str().unwrap().to_string();
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "the payload is shown, escaped");
    assert!(page.contains("&lt;img src=x onerror=alert(2)&gt;"), "the identifier is shown, escaped");
    assert!(page.contains("&lt;iframe"), "the invalid row is shown, escaped");
    let page = api.get(&format!("/runs/{failed}")).await.body.as_str().unwrap().to_string();
    assert!(page.contains("&lt;script&gt;alert(&#39;err&#39;)&lt;/script&gt;"), "the error message is shown, escaped");
    server.shutdown().await;
    emu.stop().await;
}
