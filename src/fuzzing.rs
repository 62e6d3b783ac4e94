//! Thin entry points for the fuzz targets under `fuzz/` (cargo-fuzz). Not a stable API.
//!
//! Each entry takes the fuzzer's bytes and drives one untrusted-input parser of sluicegate the
//! way production does. A panic (or an abort: overflow, out-of-memory) is the bug being looked
//! for; errors are the expected answer to bad input and are ignored.
//!
//! | entry | input | code under test |
//! |---|---|---|
//! | [`project`] | a project file | YAML reader, project loader and validator (every destination type) |
//! | [`convert`] | a JSON value and a field type | `engine::convert` (mapping type conversions) |
//! | [`copy_stream`] | column types and a binary COPY stream | Postgres COPY parser, tuple splitting, binary decoders |
//! | [`pg_value`] | a type and one value's binary form | Postgres binary decoders (scalars and arrays) |
//! | [`source_value`] | a type and one value | MySQL binary-protocol decoders, SQLite text values (timestamps, JSON) |
//! | [`DestinationHarness`] | canned HTTP answers | every HTTP destination's response parsing and error classification, `check()` included |
//! | [`ApiHarness`] | an HTTP request | the `serve` API: auth, routes, query strings, bodies, run pages |

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::config::{FieldType, Project, Secret};
use crate::destination::{BuildContext, Operation, OutRecord};

/// Parse and validate a project file. Every `${VAR}` resolves to a value.
pub fn project(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let env = |name: &str| (name != "UNSET").then(|| format!("value-of-{name}"));
    if let Ok(p) = Project::from_str_with_env(&text, Path::new("/nonexistent/fuzz/sluicegate.yml"), &env) {
        // Debug output of a loaded project must work (and is where secrets must not show).
        let _ = format!("{p:?}");
    }
}

/// `data[0]` picks the field type, the rest is JSON (or, if not JSON, a string).
pub fn convert(data: &[u8]) {
    let Some((&t, rest)) = data.split_first() else { return };
    let t = [FieldType::String, FieldType::Integer, FieldType::Number, FieldType::Boolean, FieldType::Datetime, FieldType::Json][usize::from(t) % 6];
    let v = serde_json::from_slice::<Value>(rest).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(rest).into_owned()));
    let _ = crate::engine::convert(v, t);
}

/// A binary COPY stream: see `source::postgres::fuzz_copy` for the layout.
pub fn copy_stream(data: &[u8]) -> usize {
    crate::source::fuzz_copy(data)
}

/// `data[0]` picks the type (high bit: an array of it), the rest is the value's binary form.
pub fn pg_value(data: &[u8]) -> Option<Value> {
    let (&tag, rest) = data.split_first()?;
    crate::source::fuzz_value(tag, rest)
}

/// `data[0]` high bit clear: a MySQL binary-protocol value, `data[0]` picks the decoder; set:
/// a SQLite text value, `data[0] & 0x7f` picks the declared type (bool, timestamp, JSON, other).
/// The rest is the value.
pub fn source_value(data: &[u8]) -> Option<Value> {
    let (&tag, rest) = data.split_first()?;
    if tag & 0x80 == 0 {
        return crate::source::fuzz_mysql_value(tag, rest);
    }
    let text = String::from_utf8_lossy(rest).into_owned();
    let v = crate::source::fuzz_sqlite_text(tag & 0x7f, text.clone());
    // A SQLite value is the text as stored, or (timestamps, JSON) a rendering of it: a JSON
    // column's value is an object or array only when the text parses to one.
    match &v {
        Value::String(_) => {}
        Value::Object(_) | Value::Array(_) => assert_eq!(serde_json::from_str::<Value>(&text).ok().as_ref(), Some(&v), "JSON text {text:?}"),
        other => panic!("SQLite text {text:?} became {other:?}"),
    }
    Some(v)
}

// ---- Destinations ----

/// One canned HTTP answer of the fake destination server.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Header names the destinations read, picked by index in [`encode_answers`].
pub const HEADER_NAMES: &[&str] = &[
    "content-type",
    "retry-after",
    "x-hubspot-ratelimit-max",
    "x-hubspot-ratelimit-remaining",
    "x-hubspot-ratelimit-interval-milliseconds",
    "x-hubspot-ratelimit-daily",
    "x-hubspot-ratelimit-daily-remaining",
    "sforce-limit-info",
    "location",
];

/// The syncs of [`DestinationHarness`], picked by `data[0] % SYNCS.len()`.
pub const SYNCS: &[&str] = &[
    "webhook upsert",
    "hubspot contacts upsert",
    "hubspot contacts update",
    "hubspot contacts mirror",
    "iterable users upsert",
    "iterable users mirror",
    "iterable events append",
    "salesforce upsert",
    "salesforce update (lookup)",
    "salesforce mirror",
    "salesforce bulk upsert",
    "salesforce create",
];

/// Bytes for [`DestinationHarness::run`]: which sync (`SYNCS` index), the operation (0..5),
/// how many records (1..=3), then the answers in order.
pub fn encode_answers(sync: u8, op: u8, records: u8, answers: &[Canned]) -> Vec<u8> {
    let mut out = vec![sync, op, records];
    for a in answers {
        out.extend_from_slice(&a.status.to_be_bytes());
        out.push(a.headers.len() as u8);
        for (name, value) in &a.headers {
            out.push(HEADER_NAMES.iter().position(|h| h.eq_ignore_ascii_case(name)).unwrap_or(0) as u8);
            out.push(value.len().min(255) as u8);
            out.extend_from_slice(&value.as_bytes()[..value.len().min(255)]);
        }
        out.extend_from_slice(&(a.body.len().min(65535) as u16).to_be_bytes());
        out.extend_from_slice(&a.body[..a.body.len().min(65535)]);
    }
    out
}

fn decode_answers(mut b: &[u8]) -> Vec<Canned> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (h, t) = b.split_at(n);
        *b = t;
        Some(h)
    }
    let mut out = Vec::new();
    while let Some(s) = take(&mut b, 2) {
        let status = 100 + u16::from_be_bytes([s[0], s[1]]) % 500;
        let Some(n) = take(&mut b, 1) else { break };
        let mut headers = Vec::new();
        for _ in 0..n[0] % 4 {
            let (Some(i), Some(l)) = (take(&mut b, 1), take(&mut b, 1)) else { break };
            let Some(v) = take(&mut b, usize::from(l[0])) else { break };
            headers.push((HEADER_NAMES[usize::from(i[0]) % HEADER_NAMES.len()].to_string(), String::from_utf8_lossy(v).into_owned()));
        }
        let body = match take(&mut b, 2) {
            Some(l) => {
                let n = usize::from(u16::from_be_bytes([l[0], l[1]]));
                let n = n.min(b.len());
                take(&mut b, n).unwrap_or_default().to_vec()
            }
            None => Vec::new(),
        };
        out.push(Canned { status, headers, body });
    }
    out
}

type Queue = Arc<Mutex<VecDeque<Canned>>>;

/// A fake server answering every request (any method, any path) with the next canned answer
/// (404 once they are used up), and destinations of every HTTP type pointed at it.
pub struct DestinationHarness {
    rt: tokio::runtime::Runtime,
    queue: Queue,
    project: Project,
    client: reqwest::Client,
}

/// A Salesforce token answer, given to the OAuth endpoint unless the input asks to fuzz it.
const SF_TOKEN: &str = r#"{"access_token":"00Dfuzz!token","instance_url":"INSTANCE","token_type":"Bearer","issued_at":"1700000000000"}"#;

impl DestinationHarness {
    pub fn new() -> DestinationHarness {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
        let queue: Queue = Arc::default();
        let addr = rt.block_on(serve_canned(queue.clone()));
        let base = format!("http://{addr}");
        let text = destinations_project(&base);
        let env = |name: &str| Some(format!("fuzz-{name}"));
        let project = Project::from_str_with_env(&text, Path::new("/nonexistent/fuzz/sluicegate.yml"), &env).expect("the fuzz project is valid");
        let client = rt.block_on(async { crate::engine::http_client() }).expect("an HTTP client");
        DestinationHarness { rt, queue, project, client }
    }

    /// Send one batch through the sync `data[0]` picks, answered by the canned answers that follow.
    /// `data[1]`: the operation (low 7 bits); its high bit set: the destination's `check()` runs
    /// first, answered by the first canned answers, and the batch gets the rest.
    pub fn run(&self, data: &[u8]) {
        if data.len() < 3 {
            return;
        }
        let sync = &self.project.syncs[usize::from(data[0]) % self.project.syncs.len()];
        let op = [Operation::Upsert, Operation::Update, Operation::Create, Operation::Delete, Operation::Append][usize::from(data[1] & 0x7f) % 5];
        let check = data[1] & 0x80 != 0;
        let n = usize::from(data[2] % 3) + 1;
        let answers = decode_answers(&data[3..]);
        *self.queue.lock().unwrap_or_else(|p| p.into_inner()) = answers.into();
        let payloads: Vec<(String, Map<String, Value>)> = (0..n)
            .map(|i| {
                let email = format!("user{i}@example.com");
                let mut m = Map::new();
                m.insert(sync.primary_identifier.to.clone(), Value::String(email.clone()));
                for f in &sync.mappings {
                    m.insert(f.to.clone(), if f.to.contains("core") { Value::from(i) } else { Value::String(format!("v{i}")) });
                }
                if let Some(k) = &sync.unique_key {
                    m.insert(k.to.clone(), Value::from(i));
                }
                (email, m)
            })
            .collect();
        let records: Vec<OutRecord<'_>> = payloads.iter().map(|(id, m)| OutRecord { identifier: id, payload: m }).collect();
        let config = &self.project.destinations[&sync.destination];
        self.rt.block_on(async {
            let Ok(dest) = crate::destination::build(&BuildContext { config, sync, client: self.client.clone() }).await else { return };
            if check {
                if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(10), dest.check()).await {
                    // A check error never shows the destination's secrets, even when an answer echoes them.
                    for secret in crate::destination::secret_values(config) {
                        assert!(!e.contains(&secret), "check() error shows a secret: {e}");
                    }
                }
            }
            for r in &records {
                let _ = dest.record_size(op, r);
            }
            let _ = dest.limits();
            let _ = tokio::time::timeout(Duration::from_secs(10), dest.send(op, &records)).await;
        });
    }
}

impl Default for DestinationHarness {
    fn default() -> Self {
        Self::new()
    }
}

async fn serve_canned(queue: Queue) -> SocketAddr {
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("a local port");
    let addr = listener.local_addr().expect("the local address");
    let instance = format!("http://{addr}");
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let queue = queue.clone();
        let instance = instance.clone();
        async move {
            let token_call = req.uri().path().contains("oauth2/token");
            let next = {
                let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
                // The first byte of a token answer's body set to '!' asks for it to be fuzzed.
                if token_call && !q.front().is_some_and(|a| a.body.first() == Some(&b'!')) {
                    None
                } else {
                    q.pop_front()
                }
            };
            let Some(a) = next else {
                if token_call {
                    return ([("content-type", "application/json")], SF_TOKEN.replace("INSTANCE", &instance)).into_response();
                }
                return (axum::http::StatusCode::NOT_FOUND, r#"[{"message":"fuzz: no more answers","errorCode":"NOT_FOUND"}]"#).into_response();
            };
            let mut body = a.body;
            if token_call && body.first() == Some(&b'!') {
                body.remove(0);
            }
            let mut r = (axum::http::StatusCode::from_u16(a.status).unwrap_or(axum::http::StatusCode::OK), body).into_response();
            for (k, v) in a.headers {
                if let (Ok(k), Ok(v)) = (axum::http::HeaderName::from_bytes(k.as_bytes()), axum::http::HeaderValue::from_str(&v)) {
                    r.headers_mut().insert(k, v);
                }
            }
            r
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

fn destinations_project(base: &str) -> String {
    let sync = |id: usize, name: &str, dest: &str, object: &str, to: &str, behavior: &str, extra: &str| {
        format!(
            "  - id: {id}\n    name: {name}\n    source: {{connection: warehouse, table: contacts}}\n    destination: {{connection: {dest}, object: {object}}}\n    \
             primary_identifier: {{from: email, to: {to}}}\n    behavior: {behavior}\n    mappings:\n      - {{from: name, to: {name_to}}}\n      - {{from: score, to: {score_to}}}\n{extra}",
            name_to = if dest.starts_with("sf") { "LastName" } else { "firstname" },
            score_to = if dest.starts_with("sf") { "Score__c" } else { "score" },
        )
    };
    let syncs = [
        sync(1, "webhook", "hook", "contacts", "email", "upsert", ""),
        sync(2, "hs_upsert", "hs", "contacts", "email", "upsert", ""),
        sync(3, "hs_update", "hs", "contacts", "email", "update", ""),
        sync(4, "hs_mirror", "hs", "contacts", "email", "mirror", ""),
        sync(5, "it_upsert", "it", "users", "email", "upsert", ""),
        sync(6, "it_mirror", "it", "users", "email", "mirror", ""),
        sync(7, "it_events", "it", "events", "email", "append", "      - {constant: signup, to: eventName}\n    unique_key: id\n"),
        sync(8, "sf_upsert", "sf", "Contact", "External_Id__c", "upsert", ""),
        sync(9, "sf_update", "sf", "Contact", "Email", "update", ""),
        sync(10, "sf_mirror", "sf", "Contact", "External_Id__c", "mirror", ""),
        sync(11, "sf_bulk", "sfbulk", "Contact", "External_Id__c", "upsert", ""),
        sync(12, "sf_create", "sf", "Contact", "External_Id__c", "create", ""),
    ];
    format!(
        "sources:\n  warehouse:\n    url: sqlite://warehouse.db\ndestinations:\n  \
         hook: {{type: webhook, url: '{base}/hook', timeout: 2s}}\n  \
         hs: {{type: hubspot, access_token: '${{HS_TOKEN}}', base_url: '{base}', timeout: 2s}}\n  \
         it: {{type: iterable, api_key: '${{IT_KEY}}', base_url: '{base}', timeout: 2s}}\n  \
         sf: {{type: salesforce, login_url: '{base}', client_id: '${{SF_ID}}', client_secret: '${{SF_SECRET}}', refresh_token: '${{SF_REFRESH}}', timeout: 2s}}\n  \
         sfbulk: {{type: salesforce, api: bulk, login_url: '{base}', client_id: '${{SF_ID}}', client_secret: '${{SF_SECRET}}', refresh_token: '${{SF_REFRESH}}', timeout: 2s}}\n\
         syncs:\n{}",
        syncs.concat()
    )
}

// ---- API ----

/// A `sluicegate serve` (one worker) over a 20-row SQLite warehouse and a webhook emulator,
/// with a few runs already made, and a client sending it the fuzzer's requests.
pub struct ApiHarness {
    rt: tokio::runtime::Runtime,
    pub url: String,
    pub token: String,
    client: reqwest::Client,
    _dir: TempDir,
}

/// A temporary directory removed on drop (no `tempfile` in the library's dependencies).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub const API_METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];

impl ApiHarness {
    pub fn new() -> ApiHarness {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
        // The harness lives in a static, never dropped: directories of earlier fuzzing processes
        // that are gone are removed here instead.
        if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("sluicegate-fuzz-api-") {
                    if !Path::new(&format!("/proc/{pid}")).exists() {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let dir = std::env::temp_dir().join(format!("sluicegate-fuzz-api-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let token = "secret-token:fuzz-0123456789abcdef".to_string();
        let (url, client) = rt.block_on(async {
            let emu = crate::emulator::webhook::WebhookEmulator::start(SocketAddr::from(([127, 0, 0, 1], 0)), Default::default())
                .await
                .expect("the webhook emulator");
            let wh = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", dir.join("warehouse.db").display())).await.expect("the warehouse");
            sqlx::raw_sql(
                "CREATE TABLE contacts (id INTEGER PRIMARY KEY, email TEXT, name TEXT, score INTEGER);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20)
                 INSERT INTO contacts SELECT i, 'user' || i || '@example.com', '<b>User</b> ' || i, i FROM n;
                 UPDATE contacts SET email = NULL WHERE id = 3;",
            )
            .execute(&wh)
            .await
            .expect("the warehouse table");
            wh.close().await;
            let project = dir.join("sluicegate.yml");
            std::fs::write(
                &project,
                format!(
                    "sources:\n  warehouse:\n    url: sqlite://warehouse.db\ndestinations:\n  hook: {{type: webhook, url: '{}/hook'}}\nsyncs:\n  \
                     - {{id: 1, name: contacts, source: {{connection: warehouse, table: contacts}}, destination: {{connection: hook, object: contacts}}, \
                     primary_identifier: {{from: email, to: email}}, mappings: [{{from: name, to: name}}, {{from: score, to: score}}]}}\n",
                    emu.url
                ),
            )
            .expect("the project file");
            let mut opts = crate::serve::ServeOptions::new(&project, SocketAddr::from(([127, 0, 0, 1], 0)), vec![Secret::new(token.clone())]);
            opts.workers = 1;
            opts.poll = Duration::from_millis(50);
            let server = crate::serve::Server::start(opts).await.expect("the server");
            let url = server.url.clone();
            // Kept running for the life of the process.
            std::mem::forget(server);
            std::mem::forget(emu);
            (url, crate::engine::http_client().expect("an HTTP client"))
        });
        ApiHarness { rt, url, token, client, _dir: TempDir(dir) }
    }

    /// `data[0]`: method; `data[1]`: authorization (0 right token, 1 none, 2 wrong, 3 Basic
    /// with the token, else the raw bytes that follow); then `path?query` up to the first NUL,
    /// the rest is the body. Answers `(status, body)`; `None` when the input is no valid request.
    pub fn run(&self, data: &[u8]) -> Option<(u16, Vec<u8>)> {
        if data.len() < 2 {
            return None;
        }
        let method = reqwest::Method::from_bytes(API_METHODS[usize::from(data[0]) % API_METHODS.len()].as_bytes()).ok()?;
        let rest = &data[2..];
        let (target, body) = match rest.iter().position(|b| *b == 0) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        let target = String::from_utf8_lossy(target);
        let target = if target.starts_with('/') { target.into_owned() } else { format!("/{target}") };
        let url = reqwest::Url::parse(&format!("{}{}", self.url, target)).ok()?;
        let mut req = self.client.request(method, url).timeout(Duration::from_secs(10)).body(body.to_vec());
        req = match data[1] % 8 {
            0 => req.bearer_auth(&self.token),
            1 => req,
            2 => req.bearer_auth("secret-token:wrong"),
            3 => req.basic_auth("bearer", Some(&self.token)),
            _ => match reqwest::header::HeaderValue::from_bytes(body) {
                Ok(v) => req.header(reqwest::header::AUTHORIZATION, v),
                Err(_) => req,
            },
        };
        if !body.is_empty() {
            req = req.header(reqwest::header::CONTENT_TYPE, "application/json");
        }
        self.rt.block_on(async {
            let resp = req.send().await.ok()?;
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await.ok()?;
            Some((status, bytes.to_vec()))
        })
    }
}

impl Default for ApiHarness {
    fn default() -> Self {
        Self::new()
    }
}
