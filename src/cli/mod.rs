//! The `sluicegate` command. Thin: parses arguments, calls the engine, prints results.

mod exposures;
mod quickstart;

use std::ffi::OsString;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use crate::config::{Project, SyncRef};
use crate::emulator::webhook::{Faults, RejectRule, WebhookEmulator, WebhookEmulatorConfig};
use crate::engine::{Engine, EngineOptions, Progress};
use crate::error::{Error, ErrorKind, Result};
use crate::store::{RunRecord, RunStatus, TriggerReason};

#[derive(Parser, Debug)]
#[command(name = "sluicegate", version, about = "Self-hosted reverse ETL: sync warehouse tables to the tools where work happens")]
struct Cli {
    /// Project file.
    #[arg(long, short, global = true, env = "SLUICEGATE_PROJECT", default_value = "sluicegate.yml")]
    project: PathBuf,
    /// State store URL (default: the project's `state`, else sluicegate_state.db beside the project file).
    #[arg(long, global = true, env = "SLUICEGATE_STATE", hide_env_values = true)]
    state: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check the project file; connect to each sync's source and check its columns (and, with
    /// `--check`, each destination).
    Validate {
        /// Only check the file, do not connect to sources.
        #[arg(long)]
        offline: bool,
        /// Also check that each destination is reachable and the credentials authorized (read-only requests).
        #[arg(long, conflicts_with = "offline")]
        check: bool,
    },
    /// Run a sync now, in this process, and print its counts.
    Run {
        /// Sync id or name.
        sync: String,
        /// Resend every row, changed or not.
        #[arg(long)]
        full_sync: bool,
        /// Print the run as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Dry run: what a run would send now (counts and sample records), touching neither the
    /// destination nor the state.
    Plan {
        /// Sync id or name.
        sync: String,
        #[arg(long)]
        full_sync: bool,
        /// Sample records per kind.
        #[arg(long, default_value_t = 3)]
        samples: usize,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a run: a queued run ends at once, a working one after the batch in flight.
    Cancel { run_id: i64 },
    /// List recent runs.
    Runs {
        /// Only runs of this sync (id or name).
        #[arg(long)]
        sync: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// The rows of a run that were not delivered (invalid or rejected), with reasons.
    Rejections {
        run_id: i64,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// dbt integration.
    Dbt {
        #[command(subcommand)]
        which: DbtCommand,
    },
    /// Run a local emulator of a destination API.
    Emulate {
        #[command(subcommand)]
        which: Emulator,
    },
    /// Serve the Census-compatible API, a worker pool, schedules, a run history page and
    /// metrics. API tokens come from SLUICEGATE_API_TOKEN (or SLUICEGATE_API_TOKENS).
    Serve(crate::serve::Args),
    /// Write a demo project into DIR and run it against the webhook emulator.
    Quickstart {
        dir: PathBuf,
        /// Only write the files; do not run the demo.
        #[arg(long)]
        no_demo: bool,
        /// Overwrite an existing demo project (and its state) in DIR.
        #[arg(long)]
        force: bool,
        /// Rows in the demo table.
        #[arg(long, default_value_t = 10_000)]
        rows: u32,
    },
}

#[derive(Subcommand, Debug)]
enum DbtCommand {
    /// Write a dbt exposures file: one exposure per destination, depending on the dbt models
    /// its syncs read (`dbt build --select +exposure:sluicegate_<destination>`).
    Exposures {
        /// Where to write it (e.g. models/sluicegate_exposures.yml); `-` prints it.
        #[arg(long, short, default_value = "-")]
        output: PathBuf,
        /// The exposures' owner (dbt requires a name or an email).
        #[arg(long, default_value = "Data team")]
        owner_name: String,
        #[arg(long)]
        owner_email: Option<String>,
        /// high, medium or low.
        #[arg(long, default_value = "high", value_parser = ["high", "medium", "low"])]
        maturity: String,
    },
}

#[derive(Subcommand, Debug)]
enum Emulator {
    /// A generic JSON webhook: accepts POSTed arrays of records.
    Webhook {
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        /// Port; 0 picks a free one. The URL is printed as the first line of output.
        #[arg(long, default_value_t = 8787)]
        port: u16,
        /// Share of requests to fail (0 to 1, spread evenly).
        #[arg(long, default_value_t = 0.0)]
        fail_rate: f64,
        /// HTTP status of failed requests.
        #[arg(long, default_value_t = 503)]
        fail_status: u16,
        /// Message in the body of failed requests.
        #[arg(long)]
        fail_message: Option<String>,
        /// Milliseconds to wait before answering each request.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Count records without keeping them (for benchmarks with millions of rows).
        #[arg(long)]
        discard: bool,
        /// Fail every request after the first N.
        #[arg(long, value_name = "N")]
        fail_after: Option<u64>,
        /// Reject records whose FIELD matches REGEX (repeatable), e.g. `email=@invalid\.`.
        #[arg(long = "reject-if", value_name = "FIELD=REGEX")]
        reject_if: Vec<String>,
        /// Stall every Nth request (the Nth, 2Nth, ...; retries count): the batch is taken in and
        /// applied, but the answer is held --stall-seconds, then sent normally if the client still
        /// waits. A client with a shorter timeout sees no answer, with the batch in doubt (a
        /// resend arrives twice). Never combined with a --fail-rate failure on the same request.
        #[arg(long, value_name = "N")]
        stall_every: Option<u64>,
        /// How long a stalled request's answer is held.
        #[arg(long, value_name = "S", default_value_t = 30.0)]
        stall_seconds: f64,
    },
    /// HubSpot's CRM v3 contacts API (batch upsert/update/create/archive, 207s, rate limits).
    Hubspot(crate::emulator::hubspot::Args),
    /// Iterable's users/bulkUpdate and events/trackBulk.
    Iterable(crate::emulator::iterable::Args),
    /// Salesforce OAuth, sObject Collections and Bulk API 2.0 ingest jobs.
    Salesforce(crate::emulator::salesforce::Args),
}

/// Run the CLI with `args` (the first is the program name). Returns the exit code.
pub fn main_with_args(args: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    init_logging();
    let rt = match crate::runtime::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {}", e.full_message());
            return 1;
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", e.full_message());
            1
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICEGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}

fn cli_trigger() -> TriggerReason {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown user".into());
    TriggerReason { ui_tag: "Manual".into(), ui_detail: format!("Triggered from the sluicegate CLI by {user}") }
}

async fn open_engine(cli: &Cli) -> Result<Engine> {
    Engine::open(&cli.project, EngineOptions { state: cli.state.clone(), ..Default::default() }).await
}

async fn dispatch(cli: Cli) -> Result<i32> {
    match &cli.command {
        Command::Validate { offline, check } => validate(&cli, *offline, *check).await,
        Command::Run { sync, full_sync, json } => {
            let engine = open_engine(&cli).await?;
            let run = run_sync(&engine, &SyncRef::parse(sync), *full_sync, cli_trigger()).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&run).unwrap_or_default());
            } else {
                print_run(&run);
            }
            Ok(if run.status == RunStatus::Completed { 0 } else { 1 })
        }
        Command::Plan { sync, full_sync, samples, json } => {
            let engine = open_engine(&cli).await?;
            let report = engine.plan(&SyncRef::parse(sync), *full_sync, *samples).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
            } else {
                print_plan(&report);
            }
            Ok(0)
        }
        Command::Cancel { run_id } => {
            let engine = open_engine(&cli).await?;
            let run = engine.cancel(*run_id).await?;
            match run.status {
                RunStatus::Working => println!("run {run_id}: cancel requested; it stops after the batch in flight"),
                _ => println!("run {run_id}: {}{}", run.status.as_str(), if run.canceled { " (canceled)" } else { "" }),
            }
            Ok(0)
        }
        Command::Runs { sync, limit, json } => {
            let engine = open_engine(&cli).await?;
            let runs = engine.list_runs(sync.as_deref().map(SyncRef::parse).as_ref(), *limit).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&runs).unwrap_or_default());
            } else {
                print_runs(&runs);
            }
            Ok(0)
        }
        Command::Rejections { run_id, limit } => {
            let engine = open_engine(&cli).await?;
            let records = engine.run_records(*run_id, *limit).await?;
            if records.is_empty() {
                println!("run {run_id}: every row was delivered or unchanged");
            }
            for r in records {
                println!("{:<8} {:<30} {}", r.kind.as_str(), r.identifier.as_deref().unwrap_or("(none)"), r.reason);
            }
            Ok(0)
        }
        Command::Emulate { which: Emulator::Hubspot(args) } => crate::emulator::hubspot::run_cli(args).await,
        Command::Emulate { which: Emulator::Iterable(args) } => crate::emulator::iterable::run_cli(args).await,
        Command::Emulate { which: Emulator::Salesforce(args) } => crate::emulator::salesforce::run_cli(args).await,
        Command::Emulate { which: Emulator::Webhook { host, port, fail_rate, fail_status, fail_message, latency_ms, discard, fail_after, reject_if, stall_every, stall_seconds } } => {
            let mut reject = Vec::new();
            for spec in reject_if {
                reject.push(RejectRule::parse(spec)?);
            }
            if !(0.0..=1.0).contains(fail_rate) {
                return Err(Error::other("--fail-rate must be between 0 and 1"));
            }
            if !(0.0..=86_400.0).contains(stall_seconds) {
                return Err(Error::other("--stall-seconds must be between 0 and 86400 (a day)"));
            }
            let mut faults = Faults {
                fail_rate: *fail_rate,
                fail_status: *fail_status,
                fail_after: *fail_after,
                latency_ms: *latency_ms,
                stall_every: *stall_every,
                stall_seconds: *stall_seconds,
                ..Default::default()
            };
            if let Some(m) = fail_message {
                faults.fail_message = m.clone();
            }
            let emu = WebhookEmulator::start(SocketAddr::new(*host, *port), WebhookEmulatorConfig { faults, reject, discard: *discard }).await?;
            let banner = format!("webhook emulator listening on {url}: POST batches to any path; GET {url}/_emulator/received", url = emu.url);
            crate::emulator::announce_and_wait(&emu.url, &banner).await;
            emu.stop().await;
            Ok(0)
        }
        Command::Serve(args) => crate::serve::run_cli(cli.project.clone(), cli.state.clone(), args).await,
        Command::Dbt { which: DbtCommand::Exposures { output, owner_name, owner_email, maturity } } => {
            let project = Project::load(&cli.project)?;
            let opts = exposures::Options { owner_name: owner_name.clone(), owner_email: owner_email.clone(), maturity: maturity.clone() };
            let (yaml, skipped) = exposures::render(&project, &opts);
            for s in &skipped {
                eprintln!("not exposed: {s}");
            }
            if output.as_os_str() == "-" {
                print!("{yaml}");
            } else {
                std::fs::write(output, &yaml)
                    .map_err(|e| Error::other(format!("cannot write {}", output.display())).with_source(e))?;
                eprintln!("wrote {}", output.display());
            }
            Ok(0)
        }
        Command::Quickstart { dir, no_demo, force, rows } => quickstart::run(dir, !*no_demo, *force, *rows).await,
    }
}

/// Resolves when the process receives SIGTERM (never elsewhere).
#[cfg(unix)]
pub(crate) async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending::<()>().await,
    }
}

#[cfg(not(unix))]
pub(crate) async fn terminate() {
    std::future::pending::<()>().await
}

async fn validate(cli: &Cli, offline: bool, check_destinations: bool) -> Result<i32> {
    let project = Project::load(&cli.project)?;
    println!(
        "{}: {} source(s), {} destination(s), {} sync(s)",
        project.display_path,
        project.sources.len(),
        project.destinations.len(),
        project.syncs.len()
    );
    if offline {
        return Ok(0);
    }
    let engine = open_engine(cli).await?;
    let mut failed = 0;
    for sync in &engine.project().syncs {
        match engine.check_sync(sync).await {
            Ok((_, _, columns)) => println!(
                "ok    sync {} ({}): source `{}` ({} columns) -> destination `{}` ({})",
                sync.id,
                sync.name,
                sync.source,
                columns.len(),
                sync.destination,
                engine.project().destinations[&sync.destination].type_name()
            ),
            Err(e) => {
                failed += 1;
                println!("FAIL  {}", e.full_message());
            }
        }
        if check_destinations {
            let checked = match engine.destination(sync).await {
                Ok(dest) => dest.check().await.map(|()| dest.describe()),
                Err(e) => Err(e.full_message()),
            };
            match checked {
                Ok(what) => println!("ok    sync {} ({}): {what} is reachable and authorized", sync.id, sync.name),
                Err(why) => {
                    failed += 1;
                    println!("FAIL  sync {} ({}): {why}", sync.id, sync.name);
                }
            }
        }
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

/// Trigger and run a sync in this process, with a progress line on a terminal.
pub async fn run_sync(engine: &Engine, sync: &SyncRef, full_sync: bool, reason: TriggerReason) -> Result<RunRecord> {
    let tty = std::io::stderr().is_terminal();
    let last = Mutex::new(Instant::now() - Duration::from_secs(1));
    let progress = move |p: &Progress| {
        if !tty {
            return;
        }
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() < Duration::from_millis(200) {
            return;
        }
        *last = Instant::now();
        let c = &p.counts;
        eprint!(
            "\r\x1b[2Krun {}: {} — {} of {} rows sent, {} rejected",
            p.run_id,
            p.step,
            c.records_processed.unwrap_or(0),
            c.planned.total(),
            c.records_failed.unwrap_or(0)
        );
    };
    // Created already claimed: a kill at any point leaves no run queued forever.
    let run = engine.trigger_and_run(sync, full_sync, &reason, &progress).await?;
    if tty {
        eprint!("\r\x1b[2K");
    }
    Ok(run)
}

fn opt(v: Option<i64>) -> String {
    v.map(|n| n.to_string()).unwrap_or_else(|| "-".into())
}

pub(crate) fn print_run(run: &RunRecord) {
    let c = &run.counts;
    println!("run {} of sync {} ({}): {}", run.id, run.sync_id, run.sync_name, run.status.as_str());
    println!(
        "  source rows {}  changed {}  invalid {}  sent {}  accepted {}  rejected {}",
        opt(c.source_record_count),
        opt(c.source_record_updates),
        opt(c.records_invalid),
        opt(c.records_processed),
        opt(c.records_updated),
        opt(c.records_failed)
    );
    if let Some(e) = &run.error_message {
        println!("  error: {e}");
    }
    if c.records_failed.unwrap_or(0) + c.records_invalid.unwrap_or(0) > 0 {
        println!("  see the rows not delivered: sluicegate rejections {}", run.id);
    }
}

fn print_plan(p: &crate::engine::PlanReport) {
    println!(
        "plan for sync {} ({}, {}{}): {} source rows",
        p.sync_id,
        p.sync_name,
        p.behavior,
        if p.full_sync { ", full sync" } else { "" },
        p.source_rows
    );
    println!("  add {}  change {}  remove {}  invalid {}  unchanged {}", p.adds, p.changes, p.removes, p.invalid, p.unchanged);
    let show = |label: &str, items: &[serde_json::Value]| {
        for item in items {
            println!("  {label:<7} {item}");
        }
    };
    show("add", &p.samples.adds);
    show("change", &p.samples.changes);
    show("remove", &p.samples.removes);
    for o in &p.samples.invalid {
        println!("  invalid {}: {}", o.identifier.as_deref().unwrap_or("(no identifier)"), o.reason);
    }
}

fn print_runs(runs: &[RunRecord]) {
    println!("{:>6} {:>5} {:<20} {:<10} {:<24} {:>8} {:>8} {:>8} {:>8}  error", "run", "sync", "name", "status", "created", "rows", "sent", "failed", "invalid");
    for r in runs {
        let c = &r.counts;
        let err = r.error_message.as_deref().unwrap_or("");
        let err: String = err.chars().take(60).collect();
        println!(
            "{:>6} {:>5} {:<20} {:<10} {:<24} {:>8} {:>8} {:>8} {:>8}  {}",
            r.id,
            r.sync_id,
            r.sync_name.chars().take(20).collect::<String>(),
            r.status.as_str(),
            r.created_at,
            opt(c.source_record_count),
            opt(c.records_processed),
            opt(c.records_failed),
            opt(c.records_invalid),
            err
        );
    }
}

pub(crate) fn other(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Other, msg)
}
