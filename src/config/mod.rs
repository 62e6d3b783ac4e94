//! The project file (`sluicegate.yml`): sources, destinations and syncs.
//!
//! Loading collects every problem it finds, each as `file:line:column: key.path: what is wrong;
//! what would be valid`, and reports them together. Strings may use `${ENV_VAR}` and
//! `${ENV_VAR:-default}`; `$${` writes a literal `${`. Secrets (URLs, header values) are held
//! in [`Secret`], whose `Debug` and `Display` never show the value.

mod yaml;
pub mod destinations;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use yaml::Pos;
use yaml::{Node, Value};

use crate::error::{Error, Result};

/// Keys allowed at each level; the docs and the unknown-key errors both come from these lists.
pub mod keys {
    pub const TOP: &[&str] = &["version", "state", "sources", "destinations", "syncs"];
    pub const SOURCE: &[&str] = &["url", "dbt_manifest"];
    /// Delivery settings every destination type accepts (besides `type`).
    pub const DELIVERY: &[&str] = &["batch_size", "timeout", "retry", "rate_limit", "max_concurrency"];
    pub const RATE_LIMIT: &[&str] = &["requests", "per"];
    pub const RETRY: &[&str] = &["max_attempts", "initial_backoff", "max_backoff"];
    pub const SYNC: &[&str] =
        &["id", "name", "source", "destination", "primary_identifier", "mappings", "behavior", "unique_key", "schedule"];
    pub const SYNC_SOURCE: &[&str] = &["connection", "table", "query", "dbt_model"];
    pub const SYNC_DESTINATION: &[&str] = &["connection", "object"];
    pub const IDENTIFIER: &[&str] = &["from", "to"];
    pub const MAPPING: &[&str] = &["from", "constant", "to", "sync_nulls", "type"];
    pub const DESTINATION_TYPES: &[&str] = &["webhook", "hubspot", "iterable", "salesforce", "postgres"];
    pub const BEHAVIORS: &[&str] = &["upsert", "update", "create", "mirror", "append"];
    pub const FIELD_TYPES: &[&str] = &["string", "integer", "number", "boolean", "datetime", "json"];
}

/// The keys a destination of type `ty` accepts (shared delivery keys and `type` included).
pub fn destination_keys(ty: &str) -> Option<&'static [&'static str]> {
    destinations::keys_of(ty)
}

/// A value that must never be printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}
impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}
impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A URL fit for messages: no user info, no query string, no fragment.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let had_query = u.query().is_some();
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            let mut s = u.to_string();
            if had_query {
                s.push_str("?…");
            }
            s
        }
        Err(_) => match url.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://…"),
            None => "…".to_string(),
        },
    }
}

/// Where a source's rows live.
#[derive(Debug, Clone)]
pub enum SourceKind {
    Sqlite { path: PathBuf },
    Postgres,
    /// MySQL 8 or MariaDB (`mysql://` or `mariadb://`).
    MySql,
}

#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub name: String,
    pub url: Secret,
    pub kind: SourceKind,
    /// The dbt project's `target/manifest.json`, for syncs that name a `dbt_model`
    /// (default: `target/manifest.json` beside the project file).
    pub dbt_manifest: PathBuf,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// Attempts per batch, the first one included.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig { max_attempts: 5, initial_backoff: Duration::from_millis(500), max_backoff: Duration::from_secs(30) }
    }
}

/// A request budget: at most `requests` per `per`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub requests: u32,
    pub per: Duration,
}

impl RateLimit {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.per.as_secs_f64().max(1e-3)
    }
}

/// How records reach a destination; every field left unset takes the destination type's
/// default (see each type's module docs).
#[derive(Debug, Clone, Default)]
pub struct DeliveryConfig {
    pub retry: RetryConfig,
    /// Records per request (capped at the type's maximum).
    pub batch_size: Option<usize>,
    /// Time allowed for one request.
    pub timeout: Option<Duration>,
    /// Our own request budget; the destination's rate-limit headers can only tighten it.
    pub rate_limit: Option<RateLimit>,
    /// Most requests in flight at once; adaptive concurrency stays at or below it.
    pub max_concurrency: Option<usize>,
}

pub use destinations::hubspot::HubspotConfig;
pub use destinations::iterable::IterableConfig;
pub use destinations::postgres::PostgresDestinationConfig;
pub use destinations::salesforce::SalesforceConfig;
pub use destinations::webhook::WebhookConfig;

#[derive(Debug, Clone)]
pub enum DestinationKind {
    Webhook(WebhookConfig),
    Hubspot(HubspotConfig),
    Iterable(IterableConfig),
    Salesforce(SalesforceConfig),
    Postgres(PostgresDestinationConfig),
}

#[derive(Debug, Clone)]
pub struct DestinationConfig {
    pub name: String,
    pub kind: DestinationKind,
    pub delivery: DeliveryConfig,
    pub pos: Pos,
}

impl DestinationConfig {
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            DestinationKind::Webhook(_) => "webhook",
            DestinationKind::Hubspot(_) => "hubspot",
            DestinationKind::Iterable(_) => "iterable",
            DestinationKind::Salesforce(_) => "salesforce",
            DestinationKind::Postgres(_) => "postgres",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relation {
    /// A table or view: `name` or `schema.name`.
    Table(String),
    /// A SELECT statement.
    Query(String),
    /// A dbt model by name, resolved to its relation through the source's dbt manifest.
    DbtModel(String),
}

/// What a sync does at the destination (Census's behaviors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// Update records whose identifier matches, create the others.
    Upsert,
    /// Update only: rows the destination does not know are rejected, never created.
    Update,
    /// Create only: rows delivered once are never sent again.
    Create,
    /// Upsert, and delete at the destination what left the source.
    Mirror,
    /// Every new row is an event; rows are never updated or deleted.
    Append,
}

impl Behavior {
    pub fn as_str(self) -> &'static str {
        match self {
            Behavior::Upsert => "upsert",
            Behavior::Update => "update",
            Behavior::Create => "create",
            Behavior::Mirror => "mirror",
            Behavior::Append => "append",
        }
    }
    pub fn parse(s: &str) -> Option<Behavior> {
        Some(match s {
            "upsert" => Behavior::Upsert,
            "update" => Behavior::Update,
            "create" => Behavior::Create,
            "mirror" => Behavior::Mirror,
            "append" => Behavior::Append,
            _ => return None,
        })
    }
}

/// The type a destination field takes; values are converted, or the row is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    String,
    Integer,
    Number,
    Boolean,
    /// ISO-8601 timestamps, normalised to UTC (`2026-01-31T12:00:00Z`).
    Datetime,
    Json,
}

impl FieldType {
    pub fn parse(s: &str) -> Option<FieldType> {
        Some(match s {
            "string" => FieldType::String,
            "integer" => FieldType::Integer,
            "number" => FieldType::Number,
            "boolean" => FieldType::Boolean,
            "datetime" => FieldType::Datetime,
            "json" => FieldType::Json,
            _ => return None,
        })
    }
}

/// Where a destination field's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldSource {
    Column(String),
    Constant(serde_json::Value),
}

/// One destination field, with where it was written.
#[derive(Debug, Clone)]
pub struct FieldMapping {
    /// The source column (empty for constants; see `source`).
    pub from: String,
    pub source: FieldSource,
    pub to: String,
    /// `false`: a null value leaves the field out of the record instead of clearing it.
    pub sync_nulls: bool,
    pub field_type: Option<FieldType>,
    /// Position of the `from` value and its key path, for errors about the column.
    pub from_pos: Pos,
    pub from_path: String,
}

impl FieldMapping {
    /// The source column, when the field comes from one.
    pub fn column(&self) -> Option<&str> {
        match &self.source {
            FieldSource::Column(c) => Some(c),
            FieldSource::Constant(_) => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub id: i64,
    pub name: String,
    pub source: String,
    pub relation: Relation,
    pub relation_pos: Pos,
    pub relation_path: String,
    pub destination: String,
    pub object: Option<String>,
    pub primary_identifier: FieldMapping,
    pub mappings: Vec<FieldMapping>,
    pub behavior: Behavior,
    /// Append syncs: the column that identifies an event, so that it is sent once.
    pub unique_key: Option<FieldMapping>,
    /// When `sluicegate serve` runs it: `every:1h`, `cron:0 */6 * * *` (UTC) or
    /// `continuous[:30s]`. Orchestrators (Airflow) ignore it.
    pub schedule: Option<String>,
    /// Where `behavior` was written (the sync's position when it was not).
    pub behavior_pos: Pos,
    pub pos: Pos,
}

impl SyncConfig {
    /// The identifier mapping first, then the field mappings.
    pub fn all_mappings(&self) -> impl Iterator<Item = &FieldMapping> {
        std::iter::once(&self.primary_identifier).chain(self.mappings.iter())
    }

    /// The source column whose value keys the sync state: the unique key of an append sync,
    /// else the primary identifier.
    pub fn state_key_column(&self) -> &str {
        match &self.unique_key {
            Some(k) => &k.from,
            None => &self.primary_identifier.from,
        }
    }
}

/// A sync named by id or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncRef {
    Id(i64),
    Name(String),
}

impl SyncRef {
    /// `"12"` is an id, anything else a name.
    pub fn parse(text: &str) -> SyncRef {
        match text.trim().parse::<i64>() {
            Ok(id) => SyncRef::Id(id),
            Err(_) => SyncRef::Name(text.trim().to_string()),
        }
    }
}

impl fmt::Display for SyncRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncRef::Id(id) => write!(f, "id {id}"),
            SyncRef::Name(name) => write!(f, "name {name:?}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Project {
    pub path: PathBuf,
    /// The path as written in messages.
    pub display_path: String,
    pub dir: PathBuf,
    pub state: Option<Secret>,
    pub sources: BTreeMap<String, SourceConfig>,
    pub destinations: BTreeMap<String, DestinationConfig>,
    pub syncs: Vec<SyncConfig>,
}

/// Looks up environment variables; tests and the quickstart pass overrides.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Project {
    /// Load and validate a project file, reading `${VARS}` from the process environment.
    pub fn load(path: impl AsRef<Path>) -> Result<Project> {
        Self::load_with_env(path, &process_env)
    }

    pub fn load_with_env(path: impl AsRef<Path>, env: EnvLookup<'_>) -> Result<Project> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(format!(
                "cannot read project file {}: {e}; pass the path of your sluicegate.yml (`--project`, or the `project` extra of the Airflow connection)",
                path.display()
            ))
        })?;
        Self::from_str_with_env(&text, path, env)
    }

    /// Parse project text as if it were read from `path` (used for relative paths and messages).
    pub fn from_str_with_env(text: &str, path: &Path, env: EnvLookup<'_>) -> Result<Project> {
        let display_path = path.display().to_string();
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.to_path_buf())
        };
        let dir = abs.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        let root = match yaml::parse(text) {
            Ok(Some(root)) => root,
            Ok(None) => {
                return Err(Error::config(format!(
                    "{display_path}:1:1: the project file is empty; it needs `sources`, `destinations` and `syncs`"
                )));
            }
            Err(e) => {
                return Err(Error::config(format!(
                    "{display_path}:{}:{}: not valid YAML: {}",
                    e.pos.line, e.pos.col, e.message
                )));
            }
        };
        let mut d = Diag { file: display_path.clone(), errors: Vec::new(), env };
        let project = load_project(&mut d, &root, abs.clone(), display_path.clone(), dir);
        if d.errors.is_empty() {
            if let Some(p) = project {
                return Ok(p);
            }
        }
        let count = d.errors.len();
        let mut msg = format!(
            "{display_path}: {count} problem{} in the project file:",
            if count == 1 { "" } else { "s" }
        );
        for e in &d.errors {
            msg.push_str("\n  ");
            msg.push_str(e);
        }
        Err(Error::config(msg))
    }

    pub fn sync(&self, r: &SyncRef) -> Result<&SyncConfig> {
        let found = match r {
            SyncRef::Id(id) => self.syncs.iter().find(|s| s.id == *id),
            SyncRef::Name(name) => self.syncs.iter().find(|s| &s.name == name),
        };
        found.ok_or_else(|| {
            let known: Vec<String> = self.syncs.iter().map(|s| format!("{} ({})", s.id, s.name)).collect();
            Error::new(
                crate::error::ErrorKind::SyncNotFound,
                format!(
                    "no sync with {r} in {}; its syncs are: {}",
                    self.display_path,
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ),
            )
        })
    }

    /// `file:line:col: path: message`, for errors found after loading (e.g. unknown columns).
    pub fn located(&self, pos: Pos, path: &str, message: impl fmt::Display) -> String {
        format!("{}:{}:{}: {path}: {message}", self.display_path, pos.line, pos.col)
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the tree, collecting problems.

struct Diag<'e> {
    file: String,
    errors: Vec<String>,
    env: EnvLookup<'e>,
}

impl Diag<'_> {
    fn err(&mut self, pos: Pos, path: &str, msg: impl fmt::Display) {
        self.errors.push(format!("{}:{}:{}: {path}: {msg}", self.file, pos.line, pos.col));
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn key_text(node: &Node) -> &str {
    match &node.value {
        Value::Scalar { text, .. } => text,
        _ => "",
    }
}

/// Edit distance, for "did you mean" hints.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// ` (did you mean "x"?)` when a candidate is close, else empty.
pub(crate) fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let lower = word.to_lowercase();
    let best = candidates
        .into_iter()
        .map(|c| (distance(&lower, &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((_, c)) => format!(" (did you mean `{c}`?)"),
        None => String::new(),
    }
}

struct Obj<'n> {
    path: String,
    pos: Pos,
    entries: &'n [(Node, Node)],
    used: Vec<bool>,
    allowed: &'static [&'static str],
}

fn obj<'n>(d: &mut Diag, node: &'n Node, path: &str, allowed: &'static [&'static str]) -> Option<Obj<'n>> {
    match &node.value {
        Value::Map(entries) => {
            let mut seen: HashMap<&str, Pos> = HashMap::new();
            for (k, _) in entries {
                if let Some(first) = seen.insert(key_text(k), k.pos) {
                    d.err(
                        k.pos,
                        &join(path, key_text(k)),
                        format!("duplicate key (first written at line {}); write each key once", first.line),
                    );
                }
            }
            Some(Obj { path: path.to_string(), pos: node.pos, entries, used: vec![false; entries.len()], allowed })
        }
        _ => {
            d.err(
                node.pos,
                if path.is_empty() { "(top level)" } else { path },
                format!("expected a mapping with keys {}, found {}", allowed.join(", "), node.type_name()),
            );
            None
        }
    }
}

impl<'n> Obj<'n> {
    fn get(&mut self, key: &str) -> Option<&'n Node> {
        let i = self.entries.iter().position(|(k, _)| key_text(k) == key)?;
        self.used[i] = true;
        let v = &self.entries[i].1;
        if v.is_null() { None } else { Some(v) }
    }
    fn req(&mut self, d: &mut Diag, key: &str, what: &str) -> Option<&'n Node> {
        let v = self.get(key);
        if v.is_none() {
            d.err(self.pos, &join(&self.path, key), format!("missing required key `{key}` ({what})"));
        }
        v
    }
    fn key_pos(&self, key: &str) -> Pos {
        self.entries.iter().find(|(k, _)| key_text(k) == key).map(|(k, _)| k.pos).unwrap_or(self.pos)
    }
    fn finish(self, d: &mut Diag) {
        for (i, (k, _)) in self.entries.iter().enumerate() {
            let name = key_text(k);
            if !self.used[i] && !self.allowed.contains(&name) {
                d.err(
                    k.pos,
                    &join(&self.path, name),
                    format!(
                        "unknown key `{name}`{}; valid keys here: {}",
                        did_you_mean(name, self.allowed.iter().copied()),
                        self.allowed.join(", ")
                    ),
                );
            }
        }
    }
}

/// Expand `${VAR}` / `${VAR:-default}` / `$${`.
fn interpolate(d: &mut Diag, text: &str, pos: Pos, path: &str) -> Option<String> {
    if !text.contains('$') {
        return Some(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut ok = true;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if after.starts_with("$${") {
            out.push_str("${");
            rest = &after[3..];
        } else if let Some(body) = after.strip_prefix("${") {
            let Some(end) = body.find('}') else {
                d.err(pos, path, "unterminated `${`: write `${NAME}` (or `$${` for a literal `${`)");
                return None;
            };
            let inner = &body[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, def)) => (n, Some(def)),
                None => (inner, None),
            };
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                d.err(pos, path, format!("`${{{inner}}}` is not a valid environment variable reference; names use letters, digits and _"));
                ok = false;
            } else {
                match ((d.env)(name), default) {
                    (Some(v), _) => out.push_str(&v),
                    (None, Some(def)) => out.push_str(def),
                    (None, None) => {
                        d.err(
                            pos,
                            path,
                            format!("environment variable {name} is not set; set it, or write `${{{name}:-default}}`"),
                        );
                        ok = false;
                    }
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    ok.then_some(out)
}

fn string(d: &mut Diag, node: &Node, path: &str) -> Option<String> {
    match &node.value {
        Value::Scalar { text, .. } => interpolate(d, text, node.pos, path),
        _ => {
            d.err(node.pos, path, format!("expected a string, found {}", node.type_name()));
            None
        }
    }
}

fn nonempty_string(d: &mut Diag, node: &Node, path: &str) -> Option<String> {
    let s = string(d, node, path)?;
    if s.trim().is_empty() {
        d.err(node.pos, path, "must not be empty");
        return None;
    }
    Some(s)
}

/// A sync's `schedule:`, as the text `sluicegate serve --schedule` takes: either that text
/// (`every:1h`, `cron:0 */6 * * *`, `continuous`, `continuous:30s`) or a mapping with one key:
/// `{every: 1h}`, `{cron: "0 */6 * * *"}`, `{continuous: true}` or `{continuous: 30s}`.
fn schedule(d: &mut Diag, node: &Node, path: &str) -> Option<String> {
    const KEYS: &[&str] = &["every", "cron", "continuous"];
    let (text, pos) = match &node.value {
        Value::Map(entries) => {
            let mut o = obj(d, node, path, KEYS)?;
            let found: Vec<(&str, &Node)> = KEYS.iter().filter_map(|k| o.get(k).map(|v| (*k, v))).collect();
            o.finish(d);
            let (key, v) = match found[..] {
                [one] => one,
                // Only unknown keys: `finish` said which.
                [] if !entries.is_empty() && entries.iter().all(|(k, _)| !KEYS.contains(&key_text(k))) => return None,
                [] => {
                    d.err(node.pos, path, "empty schedule: write one of `{every: 1h}`, `{cron: \"0 */6 * * *\"}` or `{continuous: true}`");
                    return None;
                }
                _ => {
                    let keys: Vec<&str> = found.iter().map(|(k, _)| *k).collect();
                    d.err(node.pos, path, format!("a schedule has one kind, found {}; keep one of them (a sync has one schedule)", keys.join(" and ")));
                    return None;
                }
            };
            let text = match (key, &v.value) {
                ("continuous", Value::Scalar { text, plain: true }) if text == "true" => "continuous".to_string(),
                ("continuous", Value::Scalar { text, plain: true }) if text == "false" => {
                    d.err(v.pos, &join(path, key), "`continuous: false` schedules nothing; remove `schedule:` to run the sync only when it is triggered");
                    return None;
                }
                _ => format!("{key}:{}", nonempty_string(d, v, &join(path, key))?),
            };
            (text, v.pos)
        }
        Value::Seq(_) => {
            d.err(node.pos, path, "expected a schedule such as `every:1h` or `{every: 1h}`, found a list; a sync has one schedule");
            return None;
        }
        Value::Scalar { .. } => (nonempty_string(d, node, path)?, node.pos),
    };
    match crate::serve::schedule::parse_spec(&text) {
        Ok(_) => Some(text.trim().to_string()),
        Err(why) => {
            d.err(pos, path, why);
            None
        }
    }
}

fn int(d: &mut Diag, node: &Node, path: &str, min: i64, max: i64) -> Option<i64> {
    let parsed = match &node.value {
        Value::Scalar { text, plain: true } => text.replace('_', "").parse::<i64>().ok(),
        _ => None,
    };
    match parsed {
        Some(v) if (min..=max).contains(&v) => Some(v),
        Some(v) => {
            d.err(node.pos, path, format!("{v} is out of range; use a whole number from {min} to {max}"));
            None
        }
        None => {
            d.err(node.pos, path, format!("expected a whole number from {min} to {max}, found {}", node.type_name()));
            None
        }
    }
}

/// `250ms`, `2s`, `5m`, `1h`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&t[..i], t[i..].trim()),
        None => (t, "s"),
    };
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    // Anything over a year is a typo, and past about 584 billion years it would not fit.
    (secs.is_finite() && (0.0..=366.0 * 86_400.0).contains(&secs)).then(|| Duration::from_secs_f64(secs))
}

fn duration(d: &mut Diag, node: &Node, path: &str) -> Option<Duration> {
    let s = string(d, node, path)?;
    let v = parse_duration(&s);
    if v.is_none() {
        d.err(node.pos, path, format!("`{s}` is not a duration; write e.g. `500ms`, `30s`, `5m` or `1h`"));
    }
    v
}

fn load_project(d: &mut Diag, root: &Node, path: PathBuf, display_path: String, dir: PathBuf) -> Option<Project> {
    let mut top = obj(d, root, "", keys::TOP)?;
    if let Some(v) = top.get("version") {
        int(d, v, "version", 1, 1);
    }
    let state = top.get("state").and_then(|n| nonempty_string(d, n, "state")).map(Secret);
    // Every source and destination name given, also those whose settings had errors: a sync
    // naming one of those gets no second error saying the name is unknown.
    let (mut defined_sources, mut defined_destinations) = (BTreeSet::new(), BTreeSet::new());
    let mut sources = BTreeMap::new();
    if let Some(node) = top.req(d, "sources", "a mapping of source names to `url: …`") {
        if let Some(mut m) = obj(d, node, "sources", &[]) {
            for (k, v) in m.entries {
                let name = key_text(k).to_string();
                defined_sources.insert(name.clone());
                if let Some(s) = load_source(d, v, &format!("sources.{name}"), &name, &dir) {
                    sources.insert(name, s);
                }
            }
            m.used.fill(true);
            m.finish(d);
        }
    }
    let mut destinations = BTreeMap::new();
    if let Some(node) = top.req(d, "destinations", "a mapping of destination names to their settings") {
        if let Some(mut m) = obj(d, node, "destinations", &[]) {
            for (k, v) in m.entries {
                let name = key_text(k).to_string();
                defined_destinations.insert(name.clone());
                if let Some(dest) = load_destination(d, v, &format!("destinations.{name}"), &name) {
                    destinations.insert(name, dest);
                }
            }
            m.used.fill(true);
            m.finish(d);
        }
    }
    let mut syncs: Vec<SyncConfig> = Vec::new();
    if let Some(node) = top.req(d, "syncs", "a list of syncs") {
        match &node.value {
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let p = format!("syncs[{i}]");
                    if let Some(s) = load_sync(d, item, &p, (&sources, &defined_sources), (&destinations, &defined_destinations)) {
                        if let Some(prev) = syncs.iter().find(|o| o.id == s.id) {
                            d.err(s.pos, &format!("{p}.id"), format!(
                                "duplicate sync id {} (also used by sync {:?} at line {}); give every sync its own id",
                                s.id, prev.name, prev.pos.line
                            ));
                        } else if let Some(prev) = syncs.iter().find(|o| o.name == s.name) {
                            d.err(s.pos, &format!("{p}.name"), format!(
                                "duplicate sync name {:?} (also used by sync {} at line {}); names must be unique",
                                s.name, prev.id, prev.pos.line
                            ));
                        } else {
                            syncs.push(s);
                        }
                    }
                }
            }
            _ => d.err(node.pos, "syncs", format!("expected a list of syncs, found {}", node.type_name())),
        }
    }
    top.finish(d);
    Some(Project { path, display_path, dir, state, sources, destinations, syncs })
}

fn load_source(d: &mut Diag, node: &Node, path: &str, name: &str, dir: &Path) -> Option<SourceConfig> {
    let mut o = obj(d, node, path, keys::SOURCE)?;
    let url_node = o.req(d, "url", "e.g. `sqlite://warehouse.db`, `postgres://user:${PGPASSWORD}@host/db` or `mysql://user:${MYSQL_PASSWORD}@host/db`");
    let manifest = o.get("dbt_manifest").and_then(|n| nonempty_string(d, n, &join(path, "dbt_manifest")));
    o.finish(d);
    let url_node = url_node?;
    let dbt_manifest = match manifest {
        Some(m) if Path::new(&m).is_absolute() => PathBuf::from(m),
        Some(m) => dir.join(m),
        None => dir.join("target").join("manifest.json"),
    };
    let url = nonempty_string(d, url_node, &join(path, "url"))?;
    let kind = if let Some(rest) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        let file = rest.split('?').next().unwrap_or("");
        if file.is_empty() {
            d.err(url_node.pos, &join(path, "url"), "a SQLite URL needs a file: `sqlite://warehouse.db` (relative to the project file) or `sqlite:///abs/path.db`");
            return None;
        }
        let p = PathBuf::from(file);
        SourceKind::Sqlite { path: if p.is_absolute() { p } else { dir.join(p) } }
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        SourceKind::Postgres
    } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        SourceKind::MySql
    } else {
        d.err(
            url_node.pos,
            &join(path, "url"),
            format!(
                "unsupported source URL `{}`; use `sqlite://FILE`, `postgres://USER:PASSWORD@HOST:PORT/DB` or `mysql://USER:PASSWORD@HOST:PORT/DB`",
                redact_url(&url)
            ),
        );
        return None;
    };
    Some(SourceConfig { name: name.to_string(), url: Secret(url), kind, dbt_manifest, pos: node.pos })
}

fn load_destination(d: &mut Diag, node: &Node, path: &str, name: &str) -> Option<DestinationConfig> {
    let Value::Map(_) = &node.value else {
        d.err(node.pos, path, format!("expected a mapping with `type` and its settings, found {}", node.type_name()));
        return None;
    };
    let type_node = match &node.value {
        Value::Map(entries) => entries.iter().find(|(k, _)| key_text(k) == "type").map(|(_, v)| v).filter(|v| !v.is_null()),
        _ => None,
    };
    let Some(type_node) = type_node else {
        d.err(node.pos, &join(path, "type"), format!("missing required key `type` (one of: {})", keys::DESTINATION_TYPES.join(", ")));
        return None;
    };
    let ty = string(d, type_node, &join(path, "type"))?;
    let Some(allowed) = destinations::keys_of(&ty) else {
        d.err(
            type_node.pos,
            &join(path, "type"),
            format!(
                "unknown destination type `{ty}`{}; available types: {}",
                did_you_mean(&ty, keys::DESTINATION_TYPES.iter().copied()),
                keys::DESTINATION_TYPES.join(", ")
            ),
        );
        return None;
    };
    let mut o = obj(d, node, path, allowed)?;
    o.get("type");
    let delivery = load_delivery(d, &mut o, path, destinations::max_batch_of(&ty));
    let kind = destinations::load(d, &mut o, path, &ty);
    o.finish(d);
    Some(DestinationConfig { name: name.to_string(), kind: kind?, delivery: delivery?, pos: node.pos })
}

/// The delivery keys every destination type shares.
fn load_delivery(d: &mut Diag, o: &mut Obj, path: &str, max_batch: usize) -> Option<DeliveryConfig> {
    let batch_size = o.get("batch_size").map(|n| int(d, n, &join(path, "batch_size"), 1, max_batch as i64).map(|v| Some(v as usize))).unwrap_or(Some(None));
    let timeout = o.get("timeout").map(|n| duration(d, n, &join(path, "timeout")).map(Some)).unwrap_or(Some(None));
    let retry = o.get("retry").map(|n| load_retry(d, n, &join(path, "retry"))).unwrap_or(Some(RetryConfig::default()));
    let max_concurrency =
        o.get("max_concurrency").map(|n| int(d, n, &join(path, "max_concurrency"), 1, 256).map(|v| Some(v as usize))).unwrap_or(Some(None));
    let rate_limit = match o.get("rate_limit") {
        None => Some(None),
        Some(n) => {
            let rp = join(path, "rate_limit");
            obj(d, n, &rp, keys::RATE_LIMIT).and_then(|mut r| {
                let requests = r.req(d, "requests", "how many requests").and_then(|n| int(d, n, &join(&rp, "requests"), 1, 1_000_000));
                let per = r.get("per").map(|n| duration(d, n, &join(&rp, "per"))).unwrap_or(Some(Duration::from_secs(1)));
                let per = per.and_then(|p| {
                    if p < Duration::from_millis(1) {
                        d.err(r.key_pos("per"), &join(&rp, "per"), "must be at least 1ms");
                        None
                    } else {
                        Some(p)
                    }
                });
                r.finish(d);
                Some(Some(RateLimit { requests: requests? as u32, per: per? }))
            })
        }
    };
    Some(DeliveryConfig { retry: retry?, batch_size: batch_size?, timeout: timeout?, rate_limit: rate_limit?, max_concurrency: max_concurrency? })
}

/// A credential: must be written as `${ENV_VAR}` (or `${ENV_VAR:-default}` for local
/// emulators), never as a literal, so that project files can be committed.
fn secret_from_env(d: &mut Diag, node: &Node, path: &str) -> Option<Secret> {
    if let Value::Scalar { text, .. } = &node.value {
        let t = text.trim();
        let is_ref = t.starts_with("${") && t.ends_with('}') && t[2..t.len() - 1].find(['$', '{', '}']).is_none();
        if !is_ref {
            d.err(node.pos, path, "write credentials as an environment variable reference, e.g. `${HUBSPOT_TOKEN}`, never literally in the project file");
            return None;
        }
    }
    nonempty_string(d, node, path).map(Secret)
}

fn load_retry(d: &mut Diag, node: &Node, path: &str) -> Option<RetryConfig> {
    let mut o = obj(d, node, path, keys::RETRY)?;
    let def = RetryConfig::default();
    let max_attempts = o.get("max_attempts").map(|n| int(d, n, &join(path, "max_attempts"), 1, 100)).unwrap_or(Some(def.max_attempts as i64));
    let initial = o.get("initial_backoff").map(|n| duration(d, n, &join(path, "initial_backoff"))).unwrap_or(Some(def.initial_backoff));
    let max = o.get("max_backoff").map(|n| duration(d, n, &join(path, "max_backoff"))).unwrap_or(Some(def.max_backoff));
    o.finish(d);
    Some(RetryConfig { max_attempts: max_attempts? as u32, initial_backoff: initial?, max_backoff: max? })
}

/// A scalar YAML value as JSON: plain numbers, booleans and null keep their type.
fn constant_value(d: &mut Diag, node: &Node, path: &str) -> Option<serde_json::Value> {
    match &node.value {
        Value::Scalar { text, plain: true } => {
            if node.is_null() {
                Some(serde_json::Value::Null)
            } else if let Ok(i) = text.parse::<i64>() {
                Some(serde_json::Value::from(i))
            } else if let Some(n) = text.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                Some(serde_json::Value::Number(n))
            } else if text == "true" || text == "false" {
                Some(serde_json::Value::Bool(text == "true"))
            } else {
                interpolate(d, text, node.pos, path).map(serde_json::Value::String)
            }
        }
        Value::Scalar { text, plain: false } => interpolate(d, text, node.pos, path).map(serde_json::Value::String),
        _ => {
            d.err(node.pos, path, format!("a constant must be a single value, found {}", node.type_name()));
            None
        }
    }
}

fn boolean(d: &mut Diag, node: &Node, path: &str) -> Option<bool> {
    match &node.value {
        Value::Scalar { text, plain: true } if text == "true" || text == "false" => Some(text == "true"),
        _ => {
            d.err(node.pos, path, format!("expected true or false, found {}", node.type_name()));
            None
        }
    }
}

/// A column mapping (`from`/`to`), or with `allow_constant` also `constant`/`to`.
fn load_mapping(d: &mut Diag, node: &Node, path: &str, allowed: &'static [&'static str], allow_constant: bool) -> Option<FieldMapping> {
    let mut o = obj(d, node, path, allowed)?;
    let from_node = o.get("from");
    let const_node = if allow_constant { o.get("constant") } else { None };
    let has_constant_key = allow_constant && o.entries.iter().any(|(k, _)| key_text(k) == "constant");
    let to_node = o.req(d, "to", "the destination field");
    let sync_nulls = match o.get("sync_nulls") {
        Some(n) => boolean(d, n, &join(path, "sync_nulls")),
        None => Some(true),
    };
    let field_type = match o.get("type") {
        None => Some(None),
        Some(n) => match string(d, n, &join(path, "type")) {
            Some(t) => match FieldType::parse(&t) {
                Some(ft) => Some(Some(ft)),
                None => {
                    d.err(n.pos, &join(path, "type"), format!(
                        "unknown field type `{t}`{}; valid types: {}",
                        did_you_mean(&t, keys::FIELD_TYPES.iter().copied()),
                        keys::FIELD_TYPES.join(", ")
                    ));
                    None
                }
            },
            None => None,
        },
    };
    o.finish(d);
    let (source, from, pos, from_path) = match (from_node, const_node, has_constant_key) {
        (Some(f), None, false) => {
            let col = nonempty_string(d, f, &join(path, "from"))?;
            (FieldSource::Column(col.clone()), col, f.pos, join(path, "from"))
        }
        (None, Some(c), true) => (FieldSource::Constant(constant_value(d, c, &join(path, "constant"))?), String::new(), c.pos, join(path, "constant")),
        (None, None, true) => (FieldSource::Constant(serde_json::Value::Null), String::new(), node.pos, join(path, "constant")),
        (Some(_), _, true) => {
            d.err(node.pos, path, "give either `from` (a source column) or `constant` (a fixed value), not both");
            return None;
        }
        (None, _, false) => {
            let what = if allow_constant { "`from` (a source column) or `constant` (a fixed value)" } else { "`from` (the source column)" };
            d.err(node.pos, &join(path, "from"), format!("missing required key: {what}"));
            return None;
        }
        (Some(_), Some(_), false) => unreachable!("constant is only read when allowed"),
    };
    let to = nonempty_string(d, to_node?, &join(path, "to"));
    Some(FieldMapping { from, source, to: to?, sync_nulls: sync_nulls?, field_type: field_type?, from_pos: pos, from_path })
}

fn load_sync(
    d: &mut Diag,
    node: &Node,
    path: &str,
    (sources, source_names): (&BTreeMap<String, SourceConfig>, &BTreeSet<String>),
    (destinations, destination_names): (&BTreeMap<String, DestinationConfig>, &BTreeSet<String>),
) -> Option<SyncConfig> {
    let mut o = obj(d, node, path, keys::SYNC)?;
    let id = o.req(d, "id", "a whole number that identifies the sync").and_then(|n| int(d, n, &join(path, "id"), 1, i64::MAX));
    let name = o.req(d, "name", "a unique name").and_then(|n| nonempty_string(d, n, &join(path, "name")));

    let mut source = None;
    let mut relation = None;
    let sp = join(path, "source");
    let mut relation_pos = node.pos;
    let mut relation_path = sp.clone();
    if let Some(sn) = o.req(d, "source", "`connection` and `table` or `query`") {
        if let Some(mut so) = obj(d, sn, &sp, keys::SYNC_SOURCE) {
            source = so.req(d, "connection", "the name of an entry under `sources`").and_then(|n| {
                let c = string(d, n, &join(&sp, "connection"))?;
                if sources.contains_key(&c) {
                    Some(c)
                } else if source_names.contains(&c) {
                    None
                } else {
                    let names: Vec<&str> = sources.keys().map(String::as_str).collect();
                    d.err(n.pos, &join(&sp, "connection"), format!(
                        "no source named `{c}`{}; defined sources: {}",
                        did_you_mean(&c, names.iter().copied()),
                        if names.is_empty() { "none".into() } else { names.join(", ") }
                    ));
                    None
                }
            });
            let given: Vec<(&str, &Node)> =
                ["table", "query", "dbt_model"].into_iter().filter_map(|k| so.get(k).map(|n| (k, n))).collect();
            relation = match given.as_slice() {
                [(k, n)] => {
                    relation_pos = n.pos;
                    relation_path = join(&sp, k);
                    nonempty_string(d, n, &relation_path).map(|v| match *k {
                        "table" => Relation::Table(v),
                        "query" => Relation::Query(v),
                        _ => Relation::DbtModel(v),
                    })
                }
                [] => {
                    d.err(sn.pos, &sp, "missing `table` (a table or view name), `query` (a SELECT statement) or `dbt_model` (a dbt model name)");
                    None
                }
                [_, (k, _), ..] => {
                    d.err(so.key_pos(k), &join(&sp, k), "give one of `table`, `query` or `dbt_model`, not several");
                    None
                }
            };
            so.finish(d);
        }
    }

    let dp = join(path, "destination");
    let mut destination = None;
    let mut object = None;
    let mut object_pos = node.pos;
    if let Some(dn) = o.req(d, "destination", "`connection` and optionally `object`") {
        object_pos = dn.pos;
        if let Some(mut dobj) = obj(d, dn, &dp, keys::SYNC_DESTINATION) {
            destination = dobj.req(d, "connection", "the name of an entry under `destinations`").and_then(|n| {
                let c = string(d, n, &join(&dp, "connection"))?;
                if destinations.contains_key(&c) {
                    Some(c)
                } else if destination_names.contains(&c) {
                    None
                } else {
                    let names: Vec<&str> = destinations.keys().map(String::as_str).collect();
                    d.err(n.pos, &join(&dp, "connection"), format!(
                        "no destination named `{c}`{}; defined destinations: {}",
                        did_you_mean(&c, names.iter().copied()),
                        if names.is_empty() { "none".into() } else { names.join(", ") }
                    ));
                    None
                }
            });
            object = dobj.get("object").and_then(|n| {
                object_pos = n.pos;
                nonempty_string(d, n, &join(&dp, "object"))
            });
            dobj.finish(d);
        }
    }

    let ip = join(path, "primary_identifier");
    let primary = o
        .req(d, "primary_identifier", "`from: <source column>` and `to: <destination field>`")
        .and_then(|n| load_mapping(d, n, &ip, keys::IDENTIFIER, false));

    let mut mappings: Vec<FieldMapping> = Vec::new();
    if let Some(mn) = o.get("mappings") {
        let mp = join(path, "mappings");
        match &mn.value {
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let p = format!("{mp}[{i}]");
                    if let Some(m) = load_mapping(d, item, &p, keys::MAPPING, true) {
                        let clash_identifier = primary.as_ref().is_some_and(|pi| pi.to == m.to);
                        if clash_identifier {
                            d.err(item.pos, &join(&p, "to"), format!("`{}` is already the primary identifier's destination field; map another field", m.to));
                        } else if let Some(prev) = mappings.iter().find(|x| x.to == m.to) {
                            d.err(item.pos, &join(&p, "to"), format!(
                                "destination field `{}` is mapped twice (also at line {}); map each field once",
                                m.to, prev.from_pos.line
                            ));
                        } else {
                            mappings.push(m);
                        }
                    }
                }
            }
            _ => d.err(mn.pos, &mp, format!("expected a list of `- from: column` / `to: field` entries, found {}", mn.type_name())),
        }
    }

    let behavior_node = o.get("behavior");
    let behavior = match behavior_node {
        None => Some(Behavior::Upsert),
        Some(n) => match string(d, n, &join(path, "behavior")).as_deref() {
            Some(b) if Behavior::parse(b).is_some() => Behavior::parse(b),
            Some(other) => {
                d.err(n.pos, &join(path, "behavior"), format!(
                    "unknown behavior `{other}`{}; valid behaviors: {}",
                    did_you_mean(other, keys::BEHAVIORS.iter().copied()),
                    keys::BEHAVIORS.join(", ")
                ));
                None
            }
            None => None,
        },
    };
    let unique_key = o.get("unique_key").and_then(|n| {
        let col = nonempty_string(d, n, &join(path, "unique_key"))?;
        Some(FieldMapping {
            from: col.clone(),
            source: FieldSource::Column(col),
            to: String::new(),
            sync_nulls: true,
            field_type: None,
            from_pos: n.pos,
            from_path: join(path, "unique_key"),
        })
    });
    match (behavior, &unique_key) {
        (Some(Behavior::Append), None) => d.err(
            behavior_node.map(|n| n.pos).unwrap_or(node.pos),
            &join(path, "unique_key"),
            "append syncs need `unique_key`: the source column that identifies each event (e.g. event_id), so that no event is sent twice",
        ),
        (Some(b), Some(k)) if b != Behavior::Append => d.err(
            k.from_pos,
            &join(path, "unique_key"),
            format!("`unique_key` applies to append syncs only; a {} sync is keyed by its primary_identifier", b.as_str()),
        ),
        _ => {}
    }
    let schedule = o.get("schedule").and_then(|n| schedule(d, n, &join(path, "schedule")));
    o.finish(d);
    let sync = SyncConfig {
        id: id?,
        name: name?,
        source: source?,
        relation: relation?,
        relation_pos,
        relation_path,
        destination: destination?,
        object,
        primary_identifier: primary?,
        mappings,
        behavior: behavior?,
        unique_key,
        schedule,
        behavior_pos: behavior_node.map_or(node.pos, |n| n.pos),
        pos: node.pos,
    };
    // The destination type's own rules: objects it knows, behaviors it supports, identifiers.
    let ok = destinations::validate_sync(d, &destinations[&sync.destination], &sync, object_pos, &dp);
    ok.then_some(sync)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cr3t".into()),
            _ => None,
        }
    }

    #[test]
    fn interpolation_and_defaults() {
        let mut d = Diag { file: "f".into(), errors: vec![], env: &env };
        let p = Pos::default();
        assert_eq!(interpolate(&mut d, "Bearer ${TOKEN}", p, "x").unwrap(), "Bearer s3cr3t");
        assert_eq!(interpolate(&mut d, "${NOPE:-http://a}", p, "x").unwrap(), "http://a");
        assert_eq!(interpolate(&mut d, "$${LITERAL} $5", p, "x").unwrap(), "${LITERAL} $5");
        assert!(interpolate(&mut d, "${NOPE}", p, "x").is_none());
        assert!(d.errors[0].contains("NOPE is not set"), "{:?}", d.errors);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5m"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("soon"), None);
        // Found by fuzzing: a huge number must be refused, not overflow.
        assert_eq!(parse_duration(&format!("1{}0ms", "2".repeat(200))), None);
        assert_eq!(parse_duration("400d"), None);
        assert_eq!(parse_duration("9000h"), None);
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
        assert_eq!(redact_url("https://u:pw@h.example/x?token=abc"), "https://h.example/x?…");
    }
}
