//! The run history pages, rendered on the server (no JavaScript, no build step):
//!
//! - `/`: every sync with its status, schedule and last run; the latest runs of all syncs with
//!   their counts and errors. `?limit=` sets how many runs (default 50, at most 500).
//! - `/runs/{id}`: one run, every field, and the rows it did not deliver (rejected by the
//!   destination or invalid in the source) with reason and payload (`?limit=`, default 200).
//!
//! Everything shown is HTML-escaped. Secrets never reach these pages: the state store URL is
//! shown without credentials, error messages are the engine's (which never hold secrets).

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::api::{last_runs, sync_status};
use super::Shared;
use crate::store::{RecordFilter, RunRecord, RunStatus};

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn n(v: Option<i64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_else(|| "–".into())
}

fn limit(q: Option<String>, default: i64, max: i64) -> i64 {
    q.as_deref()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("limit=")))
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(default)
        .clamp(1, max)
}

const STYLE: &str = "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1f2328;background:#f6f8fa}\
header{background:#0b3d5c;color:#fff;padding:12px 24px}header h1{font-size:18px;margin:0}header p{margin:2px 0 0;opacity:.8;font-size:12px}\
main{padding:16px 24px}h2{font-size:15px;margin:22px 0 8px}table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #d0d7de}\
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #eaeef2;vertical-align:top;white-space:nowrap}td.err{white-space:normal}th{background:#f0f3f6;font-weight:600;font-size:12px}\
td.num{text-align:right;font-variant-numeric:tabular-nums}a{color:#0969da;text-decoration:none}a:hover{text-decoration:underline}\
.st{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}\
.completed,.up{background:#dafbe1;color:#116329}.failed,.failing{background:#ffebe9;color:#a40e26}.working{background:#ddf4ff;color:#0550ae}\
.queued,.ready{background:#eaeef2;color:#57606a}.canceled{background:#fff8c5;color:#7d4e00}\
.err{color:#a40e26;max-width:520px;white-space:pre-wrap;word-break:break-word}code,pre{font:12px ui-monospace,Menlo,Consolas,monospace}\
pre{margin:0;white-space:pre-wrap;word-break:break-all;max-width:560px}dl{display:grid;grid-template-columns:220px 1fr;background:#fff;border:1px solid #d0d7de;padding:8px 12px;margin:0}\
dt{color:#57606a}dd{margin:0}.muted{color:#57606a}";

fn status_badge(r: &RunRecord) -> String {
    let (class, text) = if r.canceled { ("canceled", "canceled") } else { (r.status.as_str(), r.status.as_str()) };
    format!("<span class=\"st {class}\">{text}</span>")
}

fn page(title: &str, shared: &Shared, body: &str) -> Response {
    let project = shared.engine.project();
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{} · sluicegate</title><style>{STYLE}</style></head><body><header><h1><a href=\"/\" style=\"color:#fff\">sluicegate</a> · {}</h1>\
         <p>project {} · state store {} · {} worker(s) in this replica · sluicegate {}</p></header><main>{body}</main></body></html>",
        esc(title),
        esc(title),
        esc(&project.display_path),
        esc(&shared.engine.state_url()),
        shared.workers,
        crate::VERSION,
    );
    Html(html).into_response()
}

fn fail(e: crate::Error) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, Html(format!("<!doctype html><p>error: {}</p>", esc(&e.full_message())))).into_response()
}

pub(super) async fn index(State(shared): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    match render_index(&shared, limit(q, 50, 500)).await {
        Ok(r) => r,
        Err(e) => fail(e),
    }
}

async fn render_index(shared: &Shared, limit: i64) -> crate::Result<Response> {
    shared.engine.reap_lost().await?;
    let project = shared.engine.project();
    let mut b = String::new();
    b.push_str("<h2>Syncs</h2><table><tr><th>id</th><th>name</th><th>behavior</th><th>destination</th><th>schedule</th><th>status</th><th>last run</th><th class=num>source rows</th><th class=num>sent</th><th class=num>rejected</th><th class=num>invalid</th></tr>");
    for s in &project.syncs {
        let (last, ended) = last_runs(shared, s.id).await?;
        let status = sync_status(ended.as_ref());
        let class = match status {
            "Up to Date" => "up",
            "Failing" => "failing",
            _ => "ready",
        };
        let schedule = shared
            .schedules
            .iter()
            .find(|sc| project.sync(&sc.sync).is_ok_and(|x| x.id == s.id))
            .map(|sc| esc(&sc.text))
            .unwrap_or_else(|| "<span class=muted>on trigger</span>".into());
        let dest = project.destinations.get(&s.destination).map(|d| d.type_name()).unwrap_or("?");
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} <span class=muted>({dest}{})</span></td><td>{schedule}</td><td><span class=\"st {class}\">{status}</span></td>",
            s.id,
            esc(&s.name),
            s.behavior.as_str(),
            esc(&s.destination),
            s.object.as_deref().map(|o| format!(", {}", esc(o))).unwrap_or_default(),
        );
        match &last {
            Some(r) => {
                let c = &r.counts;
                let _ = write!(
                    b,
                    "<td><a href=\"/runs/{}\">run {}</a> {} <span class=muted>{}</span></td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td></tr>",
                    r.id,
                    r.id,
                    status_badge(r),
                    esc(&r.created_at),
                    n(c.source_record_count),
                    n(c.records_updated),
                    n(c.records_failed),
                    n(c.records_invalid)
                );
            }
            None => b.push_str("<td class=muted>never run</td><td></td><td></td><td></td><td></td></tr>"),
        }
    }
    b.push_str("</table>");
    let runs = shared.engine.store().page_runs(None, 0, limit, false).await?;
    let _ = write!(b, "<h2>Latest runs</h2><table><tr><th>run</th><th>sync</th><th>status</th><th>trigger</th><th>created</th><th>completed</th><th class=num>source rows</th><th class=num>changed</th><th class=num>sent</th><th class=num>rejected</th><th class=num>invalid</th><th>error</th></tr>");
    if runs.is_empty() {
        b.push_str("<tr><td colspan=12 class=muted>no runs yet: trigger one with POST /api/v1/syncs/{id}/trigger</td></tr>");
    }
    for r in &runs {
        let c = &r.counts;
        let _ = write!(
            b,
            "<tr><td><a href=\"/runs/{}\">{}</a></td><td>{} <span class=muted>({})</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td class=err>{}</td></tr>",
            r.id,
            r.id,
            esc(&r.sync_name),
            r.sync_id,
            status_badge(r),
            esc(&r.sync_trigger_reason.ui_tag),
            esc(&r.created_at),
            esc(r.completed_at.as_deref().unwrap_or("")),
            n(c.source_record_count),
            n(c.source_record_updates),
            n(c.records_updated),
            n(c.records_failed),
            n(c.records_invalid),
            esc(r.error_message.as_deref().unwrap_or("")),
        );
    }
    b.push_str("</table>");
    Ok(page("run history", shared, &b))
}

pub(super) async fn run(State(shared): State<Arc<Shared>>, Path(id): Path<String>, RawQuery(q): RawQuery) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return (StatusCode::NOT_FOUND, Html(format!("<!doctype html><p>no sync run with id {}</p>", esc(&id)))).into_response();
    };
    match render_run(&shared, id, limit(q, 200, 5000)).await {
        Ok(r) => r,
        Err(e) if e.kind() == crate::ErrorKind::RunNotFound => {
            (StatusCode::NOT_FOUND, Html(format!("<!doctype html><p>{}</p>", esc(&e.full_message())))).into_response()
        }
        Err(e) => fail(e),
    }
}

async fn render_run(shared: &Shared, id: i64, limit: i64) -> crate::Result<Response> {
    let r = shared.engine.get_run(id).await?;
    let c = &r.counts;
    let mut b = String::new();
    let _ = write!(b, "<h2>Run {} of sync {} ({}) {}</h2><dl>", r.id, r.sync_id, esc(&r.sync_name), status_badge(&r));
    let mut field = |k: &str, v: String| {
        let _ = write!(b, "<dt>{k}</dt><dd>{v}</dd>");
    };
    field("status", r.status.as_str().into());
    field("trigger", format!("{} — {}", esc(&r.sync_trigger_reason.ui_tag), esc(&r.sync_trigger_reason.ui_detail)));
    field("full sync", r.full_sync.to_string());
    field("created", esc(&r.created_at));
    field("scheduled for", esc(r.scheduled_execution_time.as_deref().unwrap_or("–")));
    field("started", esc(r.started_at.as_deref().unwrap_or("–")));
    field("completed", esc(r.completed_at.as_deref().unwrap_or("–")));
    if r.status == RunStatus::Working || r.status == RunStatus::Queued {
        field("current step", esc(r.current_step.as_deref().unwrap_or("–")));
    }
    field("source rows", n(c.source_record_count));
    field("changed / removed in source", format!("{} / {}", n(c.source_record_updates), n(c.source_record_deletes)));
    field(
        "planned (add / change / remove)",
        format!("{} / {} / {}", c.planned.adds, c.planned.changes, c.planned.removes),
    );
    field("sent to the destination", n(c.records_processed));
    field("accepted", n(c.records_updated));
    field("rejected", n(c.records_failed));
    field("invalid in source", n(c.records_invalid));
    if let Some(code) = &r.error_code {
        field("error code", format!("<code>{}</code>", esc(code)));
    }
    if let Some(m) = &r.error_message {
        field("error", format!("<span class=err>{}</span>", esc(m)));
    }
    if let Some(d) = &r.error_detail {
        field("error detail", format!("<span class=err>{}</span>", esc(d)));
    }
    b.push_str("</dl>");
    let store = shared.engine.store();
    let filter = RecordFilter::default();
    let total = store.count_records(id, &filter).await?;
    let rows = store.page_records(id, &filter, 0, limit).await?;
    let _ = write!(
        b,
        "<h2>Rows not delivered ({total}{})</h2><table><tr><th>status</th><th>identifier</th><th>operation</th><th>reason</th><th>payload</th><th>recorded</th></tr>",
        if (rows.len() as i64) < total { format!(", first {}", rows.len()) } else { String::new() }
    );
    if rows.is_empty() {
        b.push_str("<tr><td colspan=6 class=muted>none: every planned row was delivered (or the run has not sent any yet)</td></tr>");
    }
    for row in &rows {
        let o = &row.outcome;
        let _ = write!(
            b,
            "<tr><td><span class=\"st {}\">{}</span></td><td><code>{}</code></td><td>{}</td><td class=err>{}</td><td><pre>{}</pre></td><td class=muted>{}</td></tr>",
            if o.kind == crate::store::RecordKind::Rejected { "failed" } else { "canceled" },
            o.kind.as_str(),
            esc(o.identifier.as_deref().unwrap_or("(none)")),
            esc(&o.operation),
            esc(&o.reason),
            esc(o.payload.as_deref().unwrap_or("")),
            esc(&row.recorded_at),
        );
    }
    b.push_str("</table><p class=muted>The same rows as JSON: <code>GET /api/v1/sync_runs/");
    let _ = write!(b, "{id}/records</code> · <a href=\"/\">all runs</a></p>");
    Ok(page(&format!("run {id}"), shared, &b))
}
