//! The Census-compatible API under `/api/v1`.
//!
//! | method & path | answer |
//! |---|---|
//! | `GET /syncs` | `{"status":"success","data":[sync…],"pagination":{…},"next":url\|null}` |
//! | `GET /syncs/{sync_id}` | `{"status":"success","data":sync}` (id or name) |
//! | `POST /syncs/{sync_id}/trigger` | `{"status":"success","data":{"sync_run_id":n}}`; `force_full_sync` as query parameter or JSON body |
//! | `GET /syncs/{sync_id}/sync_runs` | runs of the sync, paginated, newest first unless `order=asc` |
//! | `GET /sync_runs/{sync_run_id}` | `{"status":"success","data":run}` with every Census run field |
//! | `POST /sync_runs/{sync_run_id}/cancel` | `{"status":"cancelled","data":{}}`; 409 when the run already ended |
//! | `GET /sync_runs/{sync_run_id}/records` | rows not delivered (`status` `rejected` or `invalid`), paginated |
//! | `GET /sync_runs/{sync_run_id}/records_count` | `{"status":"success","data":[{"record_count":n}]}` |
//! | `GET /openapi.json` | this API as OpenAPI 3 (no authentication) |
//!
//! Collections take `page` (default 1; 0 means 1), `per_page` (default 25, at most 100: more
//! gives 100) and `order` (`desc` by default, or `asc`). Errors are `{"status": <http code>,
//! "message": "…"}`: 400 bad parameter or body, 401 no or wrong token, 404 unknown sync, run or
//! path, 405 wrong method, 409 run already ended, 500 state store failure.
//!
//! Records: sluicegate keeps the rows a run did *not* deliver (rejected by the destination, or
//! invalid in the source) with their payload and reason; delivered rows are counted
//! (`records_updated`) but not kept, so `status=succeeded` is refused with a 400 that says so.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, OriginalUri, Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{page, Shared};
use crate::config::{FieldSource, Relation, SyncConfig, SyncRef};
use crate::error::{Error, ErrorKind};
use crate::store::{RecordFilter, RecordKind, RunRecord, RunStatus, StoredRecord, TriggerReason};

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

const MAX_PER_PAGE: i64 = 100;
/// Largest request body taken (a trigger's body is `{"force_full_sync": true}`); more is a 413.
pub const MAX_BODY: usize = 64 * 1024;
const DEFAULT_PER_PAGE: i64 = 25;

/// An error answer: `{"status": <http code>, "message": "…"}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }
    fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(json!({"status": self.status.as_u16(), "message": self.message}))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"sluicegate\", charset=\"UTF-8\""));
        }
        r
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let status = match e.kind() {
            ErrorKind::SyncNotFound | ErrorKind::RunNotFound => StatusCode::NOT_FOUND,
            ErrorKind::RunState => StatusCode::CONFLICT,
            ErrorKind::Config => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("API request failed: {}", e.full_message());
        }
        ApiError::new(status, e.full_message())
    }
}

type ApiResult = Result<Response, ApiError>;

fn success(data: Value) -> Response {
    Json(json!({"status": "success", "data": data})).into_response()
}

/// Every route under `/api/v1`: method and path, spelled as in the OpenAPI document
/// (`openapi.json`). The router is built from this list alone, and tests compare it with the
/// document's paths and methods. Any other method on one of these paths is a 405.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/syncs"),
    ("GET", "/syncs/{sync_id}"),
    ("POST", "/syncs/{sync_id}/trigger"),
    ("GET", "/syncs/{sync_id}/sync_runs"),
    ("GET", "/sync_runs/{sync_run_id}"),
    ("POST", "/sync_runs/{sync_run_id}/cancel"),
    ("GET", "/sync_runs/{sync_run_id}/records"),
    ("GET", "/sync_runs/{sync_run_id}/records_count"),
    ("GET", OPENAPI_PATH),
];

/// The one route of [`ROUTES`] served without authentication.
const OPENAPI_PATH: &str = "/openapi.json";

fn handler(method: &str, path: &str) -> MethodRouter<Arc<Shared>> {
    match (method, path) {
        ("GET", "/syncs") => get(list_syncs),
        ("GET", "/syncs/{sync_id}") => get(get_sync),
        ("POST", "/syncs/{sync_id}/trigger") => post(trigger),
        ("GET", "/syncs/{sync_id}/sync_runs") => get(list_sync_runs),
        ("GET", "/sync_runs/{sync_run_id}") => get(get_run),
        ("POST", "/sync_runs/{sync_run_id}/cancel") => post(cancel),
        ("GET", "/sync_runs/{sync_run_id}/records") => get(records),
        ("GET", "/sync_runs/{sync_run_id}/records_count") => get(records_count),
        ("GET", OPENAPI_PATH) => get(openapi),
        _ => unreachable!("ROUTES lists {method} {path}, which has no handler"),
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let auth = middleware::from_fn_with_state(shared.clone(), require_auth);
    let mut api = Router::new();
    for (method, path) in ROUTES.iter().filter(|(_, p)| *p != OPENAPI_PATH) {
        api = api.route(path, handler(method, path));
    }
    let mut api = api.layer(middleware::from_fn(refuse_declared_oversize)).layer(auth.clone()).layer(DefaultBodyLimit::max(MAX_BODY));
    for (method, path) in ROUTES.iter().filter(|(_, p)| *p == OPENAPI_PATH) {
        api = api.route(path, handler(method, path));
    }
    let api = api
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found);
    let pages = Router::new()
        .route("/", get(page::index))
        .route("/runs/{sync_run_id}", get(page::run))
        .layer(auth)
        .method_not_allowed_fallback(method_not_allowed);
    Router::new()
        .nest("/api/v1", api)
        .merge(pages)
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .with_state(shared)
}

async fn require_auth(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    match shared.tokens.check(req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes())) {
        Ok(()) => next.run(req).await,
        Err(denied) => ApiError::new(StatusCode::UNAUTHORIZED, denied.message()).into_response(),
    }
}

/// A body whose declared `Content-Length` is over [`MAX_BODY`] is refused before any of it is
/// read (bodies without a length are still cut at the limit while they are read).
async fn refuse_declared_oversize(req: Request, next: Next) -> Response {
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > MAX_BODY as u64 => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("request body of {n} bytes is over the limit of {MAX_BODY} bytes")).into_response()
        }
        _ => next.run(req).await,
    }
}

async fn not_found(OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no such endpoint: {}; see /api/v1/openapi.json", uri.path()))
}

async fn method_not_allowed(OriginalUri(uri): OriginalUri, req: Request) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{} is not allowed on {}; see /api/v1/openapi.json", req.method(), uri.path()))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    match shared.engine.store().count_runs(None).await {
        Ok(_) => Json(json!({"status": "ok"})).into_response(),
        Err(e) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("the state store is not answering: {}", e.full_message()))
            .into_response(),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let totals = match shared.engine.store().run_totals().await {
        Ok(t) => t,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let names: BTreeMap<i64, String> = shared.engine.project().syncs.iter().map(|s| (s.id, s.name.clone())).collect();
    let text = shared.metrics.render(&totals, &names, shared.workers);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

// ---- Parameters ----

/// Query parameters (the last value of a repeated one wins).
struct Params(BTreeMap<String, String>);

impl Params {
    fn parse(raw: Option<String>) -> Params {
        let mut m = BTreeMap::new();
        if let Some(q) = raw {
            if let Ok(u) = reqwest::Url::parse(&format!("http://q/?{q}")) {
                for (k, v) in u.query_pairs() {
                    m.insert(k.into_owned(), v.into_owned());
                }
            }
        }
        Params(m)
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }
    fn bool(&self, k: &str) -> Result<Option<bool>, ApiError> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(Some(true)),
                "false" | "0" => Ok(Some(false)),
                _ => Err(ApiError::bad(format!("query parameter {k}={v:?} is not a boolean; use true or false"))),
            },
        }
    }
    fn int(&self, k: &str) -> Result<Option<i64>, ApiError> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| ApiError::bad(format!("query parameter {k}={v:?} is not a whole number"))),
        }
    }
}

struct PageReq {
    page: i64,
    per_page: i64,
    ascending: bool,
}

impl PageReq {
    fn from(p: &Params) -> Result<PageReq, ApiError> {
        let page = p.int("page")?.unwrap_or(1);
        if page < 0 {
            return Err(ApiError::bad(format!("query parameter page={page} is negative; pages start at 1")));
        }
        let per_page = p.int("per_page")?.unwrap_or(DEFAULT_PER_PAGE);
        if per_page < 1 {
            return Err(ApiError::bad(format!("query parameter per_page={per_page} must be at least 1")));
        }
        let ascending = match p.get("order") {
            None | Some("desc") => false,
            Some("asc") => true,
            Some(o) => return Err(ApiError::bad(format!("query parameter order={o:?} must be asc or desc"))),
        };
        Ok(PageReq { page: page.max(1), per_page: per_page.min(MAX_PER_PAGE), ascending })
    }
    fn offset(&self) -> i64 {
        (self.page - 1).saturating_mul(self.per_page)
    }
}

/// The success envelope of a collection: data, Census's pagination object and the deprecated
/// `next` URL.
fn paginated(data: Vec<Value>, total: i64, req: &PageReq, headers: &HeaderMap, uri: &axum::http::Uri) -> Response {
    let last_page = ((total + req.per_page - 1) / req.per_page).max(1);
    let next_page = (req.page < last_page).then(|| req.page + 1);
    let prev_page = (req.page > 1).then(|| (req.page - 1).min(last_page));
    let next = next_page.map(|n| {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
        let scheme = headers.get("x-forwarded-proto").and_then(|h| h.to_str().ok()).unwrap_or("http");
        let order = if req.ascending { "&order=asc" } else { "" };
        format!("{scheme}://{host}{}?page={n}&per_page={}{order}", uri.path(), req.per_page)
    });
    Json(json!({
        "status": "success",
        "data": data,
        "next": next,
        "pagination": {
            "total_records": total,
            "per_page": req.per_page,
            "prev_page": prev_page,
            "page": req.page,
            "next_page": next_page,
            "last_page": last_page,
        },
    }))
    .into_response()
}

fn run_id(text: &str) -> Result<i64, ApiError> {
    text.trim().parse::<i64>().map_err(|_| ApiError::new(StatusCode::NOT_FOUND, format!("no sync run with id {text:?}: run ids are whole numbers")))
}

// ---- JSON shapes ----

/// A run with every field of Census's sync run object, plus sluicegate's own detail.
pub fn run_json(r: &RunRecord) -> Value {
    let c = &r.counts;
    let ops = |o: &crate::store::OpCounts| json!({"adds": o.adds, "changes": o.changes, "removes": o.removes});
    json!({
        "id": r.id,
        "sync_id": r.sync_id,
        "status": r.status.as_str(),
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "completed_at": r.completed_at,
        "scheduled_execution_time": r.scheduled_execution_time,
        "source_record_count": c.source_record_count,
        "source_record_updates": c.source_record_updates,
        "source_record_deletes": c.source_record_deletes,
        "source_record_invalids": c.records_invalid,
        "records_invalid": c.records_invalid,
        "records_processed": c.records_processed,
        "records_updated": c.records_updated,
        "records_failed": c.records_failed,
        "error_code": r.error_code,
        "error_message": r.error_message,
        "error_detail": r.error_detail,
        "canceled": r.canceled,
        "full_sync": r.full_sync,
        "sync_trigger_reason": {"ui_tag": r.sync_trigger_reason.ui_tag, "ui_detail": r.sync_trigger_reason.ui_detail},
        "current_step": r.current_step,
        "started_at": r.started_at,
        "sync_name": r.sync_name,
        "planned": ops(&c.planned),
        "succeeded": ops(&c.succeeded),
        "failed": ops(&c.failed),
    })
}

/// Census's sync status: from the last run that ended.
pub fn sync_status(last_ended: Option<&RunRecord>) -> &'static str {
    match last_ended.map(|r| r.status) {
        None => "Ready",
        Some(RunStatus::Completed) => "Up to Date",
        Some(_) => "Failing",
    }
}

/// The latest run and the latest ended run of a sync.
pub(crate) async fn last_runs(shared: &Shared, sync_id: i64) -> crate::Result<(Option<RunRecord>, Option<RunRecord>)> {
    let recent = shared.engine.store().page_runs(Some(sync_id), 0, 10, false).await?;
    let ended = match recent.iter().find(|r| r.status.is_terminal()) {
        Some(r) => Some(r.clone()),
        None if recent.len() < 10 => None,
        // Ten runs queued or working: look further back for the last one that ended.
        None => {
            let more = shared.engine.store().page_runs(Some(sync_id), 0, 1000, false).await?;
            more.into_iter().find(|r| r.status.is_terminal())
        }
    };
    Ok((recent.into_iter().next(), ended))
}

fn mapping_json(m: &crate::config::FieldMapping, primary: bool) -> Value {
    let from = match &m.source {
        FieldSource::Column(c) => json!({"type": "column", "data": c}),
        FieldSource::Constant(v) => {
            let basic = match v {
                Value::Bool(_) => "boolean",
                Value::Number(_) => "number",
                _ => "text",
            };
            json!({"type": "constant_value", "data": {"value": v, "basic_type": basic}})
        }
    };
    json!({"from": from, "to": m.to, "is_primary_identifier": primary, "sync_null_values": m.sync_nulls})
}

pub(crate) async fn sync_json(shared: &Shared, s: &SyncConfig) -> crate::Result<Value> {
    let (last, ended) = last_runs(shared, s.id).await?;
    let project = shared.engine.project();
    let changed = std::fs::metadata(&project.path)
        .and_then(|m| m.modified())
        .ok()
        .map(|t| crate::store::timestamp(time::OffsetDateTime::from(t)));
    let schedule = shared.schedules.iter().find(|sc| project.sync(&sc.sync).is_ok_and(|x| x.id == s.id));
    let object = match &s.relation {
        Relation::Table(t) => json!({"type": "table", "name": t}),
        Relation::Query(q) => json!({"type": "model", "query": q}),
        Relation::DbtModel(m) => json!({"type": "model", "name": m, "dbt_model": true}),
    };
    let mut mappings = vec![mapping_json(&s.primary_identifier, true)];
    mappings.extend(s.mappings.iter().map(|m| mapping_json(m, false)));
    Ok(json!({
        "id": s.id,
        "label": s.name,
        "status": sync_status(ended.as_ref()),
        "operation": s.behavior.as_str(),
        "paused": false,
        "schedule_frequency": schedule.map(|sc| sc.frequency()).unwrap_or("never"),
        "schedule_day": null,
        "schedule_hour": null,
        "schedule_minute": null,
        "cron_expression": schedule.and_then(|sc| sc.cron_expression()),
        "created_at": changed,
        "updated_at": changed,
        "source_attributes": {"connection_id": s.source, "object": object},
        "destination_attributes": {
            "connection_id": s.destination,
            "object": s.object,
            "type": project.destinations.get(&s.destination).map(|d| d.type_name()),
        },
        "mappings": mappings,
        "last_run_at": last.as_ref().map(|r| r.created_at.clone()),
        "last_run_id": last.as_ref().map(|r| r.id),
        "next_run_at": schedule.and_then(|sc| sc.next_slot(super::schedule::now_ms())).map(super::schedule::slot_timestamp),
    }))
}

fn record_json(run_id: i64, r: &StoredRecord) -> Value {
    let payload = r.outcome.payload.as_deref().map(|p| serde_json::from_str::<Value>(p).unwrap_or_else(|_| Value::String(p.to_string())));
    json!({
        "sync_run_id": run_id,
        "identifier": r.outcome.identifier,
        "record_payload": payload,
        "operation": r.outcome.operation,
        "status": r.outcome.kind.as_str(),
        "status_message": r.outcome.reason,
        "batch_started_at": r.recorded_at,
        "batch_completed_at": r.recorded_at,
    })
}

// ---- Handlers ----

async fn list_syncs(State(shared): State<Arc<Shared>>, headers: HeaderMap, OriginalUri(uri): OriginalUri, RawQuery(q): RawQuery) -> ApiResult {
    let req = PageReq::from(&Params::parse(q))?;
    let mut syncs: Vec<&SyncConfig> = shared.engine.project().syncs.iter().collect();
    syncs.sort_by_key(|s| s.id);
    if !req.ascending {
        syncs.reverse();
    }
    let total = syncs.len() as i64;
    let mut data = Vec::new();
    for s in syncs.into_iter().skip(req.offset().min(total) as usize).take(req.per_page as usize) {
        data.push(sync_json(&shared, s).await?);
    }
    Ok(paginated(data, total, &req, &headers, &uri))
}

async fn get_sync(State(shared): State<Arc<Shared>>, Path(sync_id): Path<String>) -> ApiResult {
    let s = shared.engine.project().sync(&SyncRef::parse(&sync_id))?;
    Ok(success(sync_json(&shared, s).await?))
}

async fn trigger(
    State(shared): State<Arc<Shared>>,
    Path(sync_id): Path<String>,
    RawQuery(q): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    // Too large (413) or unreadable: answered in the API's error shape.
    let body = body.map_err(|r| ApiError::new(r.status(), format!("the request body was refused: {}", r.body_text())))?;
    let params = Params::parse(q);
    let mut full_sync = params.bool("force_full_sync")?.unwrap_or(false);
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::bad("the request body is not UTF-8 text; send no body, or a JSON object such as {\"force_full_sync\": true}"))?;
    if !text.trim().is_empty() {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| ApiError::bad(format!("the request body is not valid JSON ({e}); send no body, or a JSON object such as {{\"force_full_sync\": true}}")))?;
        let Value::Object(o) = v else {
            return Err(ApiError::bad(format!("the request body must be a JSON object such as {{\"force_full_sync\": true}}, not {}", json_type(&v))));
        };
        match o.get("force_full_sync") {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) => full_sync = full_sync || *b,
            Some(other) => {
                return Err(ApiError::bad(format!("force_full_sync in the request body must be true or false, not {}", json_type(other))));
            }
        }
    }
    let sync = SyncRef::parse(&sync_id);
    let reason = TriggerReason { ui_tag: "API".into(), ui_detail: "Triggered through the sluicegate API".into() };
    let run_id = shared
        .engine
        .trigger_served(&sync, full_sync, &reason, None)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "the run could not be queued"))?;
    shared.wake.notify_one();
    tracing::info!(run_id, sync = %sync, full_sync, "run queued through the API");
    Ok(success(json!({"sync_run_id": run_id})))
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

async fn list_sync_runs(
    State(shared): State<Arc<Shared>>,
    Path(sync_id): Path<String>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let req = PageReq::from(&Params::parse(q))?;
    let id = shared.engine.project().sync(&SyncRef::parse(&sync_id))?.id;
    shared.engine.reap_lost().await?;
    let store = shared.engine.store();
    let total = store.count_runs(Some(id)).await?;
    let runs = store.page_runs(Some(id), req.offset(), req.per_page, req.ascending).await?;
    Ok(paginated(runs.iter().map(run_json).collect(), total, &req, &headers, &uri))
}

async fn get_run(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult {
    let run = shared.engine.get_run(run_id(&id)?).await?;
    Ok(success(run_json(&run)))
}

async fn cancel(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult {
    let run = shared.engine.cancel(run_id(&id)?).await?;
    tracing::info!(run_id = run.id, status = run.status.as_str(), "cancel requested through the API");
    Ok(Json(json!({"status": "cancelled", "data": {}})).into_response())
}

fn record_filter(p: &Params) -> Result<RecordFilter, ApiError> {
    let kind = match p.get("status") {
        None => None,
        Some("rejected") => Some(RecordKind::Rejected),
        Some("invalid") => Some(RecordKind::Invalid),
        Some("succeeded") => {
            return Err(ApiError::bad(
                "status=succeeded is not available: sluicegate keeps only the rows a run did not deliver (status=rejected or status=invalid), not the rows it delivered; for those, use the run's counts (GET /api/v1/sync_runs/{id}: records_updated, and succeeded.adds/changes/removes)",
            ));
        }
        Some(other) => return Err(ApiError::bad(format!("query parameter status={other:?} must be rejected or invalid"))),
    };
    let operation = match p.get("operation") {
        None => None,
        Some(op @ ("upsert" | "update" | "create" | "delete" | "append")) => Some(op.to_string()),
        Some(other) => {
            return Err(ApiError::bad(format!("query parameter operation={other:?} must be one of upsert, update, create, delete, append")));
        }
    };
    Ok(RecordFilter { kind, identifier: p.get("primary_identifier").map(str::to_string), operation })
}

async fn records(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let params = Params::parse(q);
    let req = PageReq::from(&params)?;
    let filter = record_filter(&params)?;
    let id = run_id(&id)?;
    let store = shared.engine.store();
    store.get_run(id).await?;
    let total = store.count_records(id, &filter).await?;
    // Records come in the order they were recorded; `order=desc` is not meaningful here.
    let rows = store.page_records(id, &filter, req.offset(), req.per_page).await?;
    let req = PageReq { ascending: false, ..req };
    Ok(paginated(rows.iter().map(|r| record_json(id, r)).collect(), total, &req, &headers, &uri))
}

async fn records_count(State(shared): State<Arc<Shared>>, Path(id): Path<String>, RawQuery(q): RawQuery) -> ApiResult {
    let filter = record_filter(&Params::parse(q))?;
    let id = run_id(&id)?;
    let store = shared.engine.store();
    store.get_run(id).await?;
    let n = store.count_records(id, &filter).await?;
    Ok(success(json!([{"record_count": n}])))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The routes the router is built from are exactly the document's paths and methods.
    #[test]
    fn routes_are_the_openapi_paths_and_methods() {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        let mut documented = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
        let routed: std::collections::BTreeSet<(String, String)> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
        assert_eq!(routed.len(), ROUTES.len(), "a route is listed twice");
        assert_eq!(routed, documented);
        for (m, p) in ROUTES {
            let _ = handler(m, p);
        }
    }

    /// Every operation documents the 405 axum answers for other methods on its path, and the
    /// trigger its 413.
    #[test]
    fn openapi_documents_405_and_413() {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                assert!(op["responses"].get("405").is_some(), "{method} {path} lacks 405");
            }
        }
        assert!(doc["paths"]["/syncs/{sync_id}/trigger"]["post"]["responses"].get("413").is_some());
    }
}
