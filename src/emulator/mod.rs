//! Local emulators of destination APIs, for tests, demos and benchmarks.

pub mod webhook;
pub mod hubspot;
pub mod iterable;
pub mod salesforce;

/// For `sluicegate emulate …`: print the base URL as the first line of standard output (what
/// scripts read), a line on standard error saying what to do with it, then wait for Ctrl-C or
/// SIGTERM.
pub async fn announce_and_wait(url: &str, banner: &str) {
    use std::io::Write;
    println!("{url}");
    let _ = std::io::stdout().flush();
    eprintln!("{banner}; Ctrl-C stops");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = crate::cli::terminate() => {}
    }
}
