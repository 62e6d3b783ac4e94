//! `sluicegate serve`: a Census-compatible HTTP API, a worker pool and a scheduler over the
//! state store, in one process.
//!
//! - `/api/v1/…` speaks the Census (Fivetran Activations) Management API for syncs and sync
//!   runs: the `{"status": "success", "data": …}` envelope, the pagination object, the run
//!   object field by field, `{"status": <http code>, "message": …}` errors, and authentication
//!   with `Authorization: Bearer secret-token:…` or HTTP Basic with user `bearer`. So the
//!   unmodified Census Airflow provider and API clients work against it. See [`api`].
//! - `/` and `/runs/{id}`: a server-rendered run history (no JavaScript), same authentication.
//! - `/metrics` (Prometheus text) and `/healthz`, without authentication.
//! - `/api/v1/openapi.json`: the API described as OpenAPI 3.
//!
//! Runs triggered here are queued in the store as *served* runs. Workers (`--workers`, per
//! replica) claim them one at a time, so any number of replicas can share one Postgres store:
//! each run is executed by exactly one worker, a sync never has two working runs, and a replica
//! that dies has its runs failed as "executor lost" when their lease expires (at once when it
//! ran on the same host). Stopping (SIGTERM, Ctrl-C) stops accepting requests, lets each working
//! run finish the batch in flight, commits what the destination acknowledged and puts the run
//! back in the queue, where another replica (or this one, restarted) resumes it.
//!
//! API tokens come from `SLUICEGATE_API_TOKEN` / `SLUICEGATE_API_TOKENS` (comma-separated);
//! they are compared in constant time and never logged or shown.

pub mod api;
mod auth;
mod metrics;
mod page;
pub mod schedule;
mod workers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::config::{Secret, SyncRef};
use crate::engine::{Engine, EngineOptions};
use crate::error::{Error, Result};

pub use auth::Tokens;
pub use schedule::Schedule;

/// How to run a server. `Debug` shows the state URL without user, password or query, and no
/// token.
#[derive(Clone)]
pub struct ServeOptions {
    pub project: PathBuf,
    /// State store URL (else the project's `state`, else the default SQLite file).
    pub state: Option<String>,
    pub listen: SocketAddr,
    /// Runs executed at the same time by this process.
    pub workers: usize,
    /// How often an idle worker looks for queued runs (a trigger on this replica wakes it at once).
    pub poll: Duration,
    /// Lease of a working run (else `SLUICEGATE_LEASE`, else 60 s).
    pub lease: Option<Duration>,
    /// Accepted API tokens (at least one).
    pub tokens: Vec<Secret>,
    pub schedules: Vec<Schedule>,
}

impl ServeOptions {
    pub fn new(project: impl Into<PathBuf>, listen: SocketAddr, tokens: Vec<Secret>) -> ServeOptions {
        ServeOptions {
            project: project.into(),
            state: None,
            listen,
            workers: 4,
            poll: Duration::from_secs(1),
            lease: None,
            tokens,
            schedules: Vec::new(),
        }
    }
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("project", &self.project)
            .field("state", &self.state.as_deref().map(crate::config::redact_url))
            .field("listen", &self.listen)
            .field("workers", &self.workers)
            .field("poll", &self.poll)
            .field("lease", &self.lease)
            .field("tokens", &format_args!("{} token(s) (***)", self.tokens.len()))
            .field("schedules", &self.schedules.iter().map(|s| format!("{:?}={}", s.sync, s.text)).collect::<Vec<_>>())
            .finish()
    }
}

/// What the handlers, workers and scheduler share.
pub(crate) struct Shared {
    pub engine: Engine,
    pub tokens: Tokens,
    pub metrics: metrics::Metrics,
    /// Wakes idle workers when a run is queued here.
    pub wake: Notify,
    pub schedules: Vec<Schedule>,
    pub workers: usize,
}

/// A running server.
pub struct Server {
    pub url: String,
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    http: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
    scheduler: JoinHandle<()>,
}

impl Server {
    /// Open the engine, bind, and start serving, working and scheduling.
    pub async fn start(opts: ServeOptions) -> Result<Server> {
        if opts.tokens.is_empty() {
            return Err(Error::config(
                "no API token: set SLUICEGATE_API_TOKEN (e.g. `secret-token:` followed by a long random string) so that clients can authenticate",
            ));
        }
        if opts.workers == 0 {
            return Err(Error::config("--workers must be at least 1"));
        }
        let engine = Engine::open(&opts.project, EngineOptions { state: opts.state.clone(), lease: opts.lease, ..Default::default() }).await?;
        let mut schedules = opts.schedules.clone();
        for s in &schedules {
            engine.project().sync(&s.sync)?;
        }
        // The project's `schedule:` keys, unless a --schedule flag names the same sync.
        for sync in &engine.project().syncs {
            let overridden = schedules.iter().any(|s| engine.project().sync(&s.sync).is_ok_and(|x| x.id == sync.id));
            if let (Some(text), false) = (&sync.schedule, overridden) {
                let spec = schedule::parse_spec(text).map_err(|why| Error::config(format!("sync {} ({}): schedule: {why}", sync.id, sync.name)))?;
                schedules.push(Schedule { sync: SyncRef::Id(sync.id), spec, text: text.clone() });
            }
        }
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .map_err(|e| Error::other(format!("cannot listen on {}", opts.listen)).with_source(e))?;
        let addr = listener.local_addr().map_err(|e| Error::other("cannot read the bound address").with_source(e))?;
        let shared = Arc::new(Shared {
            engine,
            tokens: Tokens::new(&opts.tokens),
            metrics: metrics::Metrics::default(),
            wake: Notify::new(),
            schedules,
            workers: opts.workers,
        });
        let (stop, stop_rx) = watch::channel(false);
        let app = api::router(shared.clone());
        let http = {
            let mut rx = stop_rx.clone();
            tokio::spawn(async move {
                let shutdown = async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                    tracing::error!("the HTTP server failed: {e}");
                }
            })
        };
        let workers = (0..opts.workers).map(|i| tokio::spawn(workers::work(shared.clone(), i, opts.poll, stop_rx.clone()))).collect();
        let scheduler = tokio::spawn(schedule::run(shared.clone(), stop_rx));
        tracing::info!(
            "serving {} sync(s) of {} on http://{addr} with {} worker(s); state store {}",
            shared.engine.project().syncs.len(),
            shared.engine.project().display_path,
            opts.workers,
            shared.engine.state_url()
        );
        Ok(Server { url: format!("http://{addr}"), addr, stop, http, workers, scheduler })
    }

    /// Graceful stop: no new requests or claims; each working run stops after the batch in
    /// flight and goes back to the queue.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.http.await;
        for w in self.workers {
            let _ = w.await;
        }
        let _ = self.scheduler.await;
    }
}

/// `sluicegate serve` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Address to listen on (port 0 picks a free one; the URL is the first line of output).
    #[arg(long, default_value = "127.0.0.1:8080", env = "SLUICEGATE_LISTEN")]
    pub listen: SocketAddr,
    /// Runs executed at the same time by this replica.
    #[arg(long, default_value_t = 4, env = "SLUICEGATE_WORKERS")]
    pub workers: usize,
    /// How often idle workers look for runs queued by other replicas, e.g. `1s`, `250ms`.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub poll: Duration,
    /// A schedule, repeatable: `SYNC=every:1h`, `SYNC=cron:0 */6 * * *` (UTC, 5 or 6 fields),
    /// `SYNC=continuous` (again as soon as the last run ended, at most every 10s), or
    /// `SYNC=continuous:1m`. SYNC is an id or a name.
    #[arg(long = "schedule", value_name = "SYNC=SPEC", value_parser = Schedule::parse_arg)]
    pub schedules: Vec<Schedule>,
}

fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    crate::config::parse_duration(text).ok_or_else(|| format!("{text:?} is not a duration (e.g. 500ms, 1s, 2m)"))
}

/// API tokens from the environment: `SLUICEGATE_API_TOKEN` and `SLUICEGATE_API_TOKENS`
/// (separated by commas or whitespace).
pub fn tokens_from_env() -> Vec<Secret> {
    let mut out = Vec::new();
    for var in ["SLUICEGATE_API_TOKEN", "SLUICEGATE_API_TOKENS"] {
        if let Ok(v) = std::env::var(var) {
            out.extend(v.split(|c: char| c == ',' || c.is_whitespace()).filter(|t| !t.is_empty()).map(Secret::new));
        }
    }
    out
}

/// Run `sluicegate serve` until SIGTERM or Ctrl-C.
pub async fn run_cli(project: PathBuf, state: Option<String>, args: &Args) -> Result<i32> {
    let mut opts = ServeOptions::new(project, args.listen, tokens_from_env());
    opts.state = state;
    opts.workers = args.workers;
    opts.poll = args.poll;
    opts.schedules = args.schedules.clone();
    let server = Server::start(opts).await?;
    println!("{}", server.url);
    use std::io::Write;
    let _ = std::io::stdout().flush();
    eprintln!("sluicegate serve: API at {}/api/v1, run history at {}/, metrics at {}/metrics; Ctrl-C stops", server.url, server.url, server.url);
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = crate::cli::terminate() => {}
    }
    eprintln!("sluicegate serve: stopping; working runs stop after the batch in flight and go back to the queue");
    server.shutdown().await;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_options_debug_shows_no_password_or_token() {
        let mut o = ServeOptions::new("/p/sluicegate.yml", "127.0.0.1:0".parse().unwrap(), vec![Secret::new("secret-token:tok-A1b2C3"), Secret::new("tok-Z9")]);
        o.state = Some("postgres://sluice:pg-Pa55word@db.internal:5432/state?sslmode=require&password=q-Pa55".into());
        o.schedules = vec![Schedule::parse_arg("contacts=every:1h").unwrap()];
        let d = format!("{o:?} {o:#?}");
        for secret in ["pg-Pa55word", "q-Pa55", "sluice:", "tok-A1b2C3", "tok-Z9", "sslmode"] {
            assert!(!d.contains(secret), "{secret} in {d}");
        }
        assert!(d.contains("db.internal") && d.contains("2 token(s)") && d.contains("every:1h") && d.contains("/p/sluicegate.yml"), "{d}");
    }
}
