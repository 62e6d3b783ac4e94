//! The tokio runtime used by the CLI and the Python bindings: created on first use, one per
//! process. A runtime does not survive `fork` (its threads stay in the parent), so a child that
//! finds a runtime made by its parent leaks it untouched and builds its own.

use std::sync::Mutex;

use tokio::runtime::Runtime;

static RUNTIME: Mutex<Option<(u32, &'static Runtime)>> = Mutex::new(None);

/// The runtime of the current process.
pub fn runtime() -> crate::Result<&'static Runtime> {
    let pid = std::process::id();
    let mut guard = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((owner, rt)) = *guard {
        if owner == pid {
            return Ok(rt);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sluicegate")
        .enable_all()
        .build()
        .map_err(|e| crate::Error::other("cannot start the tokio runtime").with_source(e))?;
    // Leaked on purpose: a runtime is never dropped, neither at exit nor after a fork.
    let rt: &'static Runtime = Box::leak(Box::new(rt));
    *guard = Some((pid, rt));
    Ok(rt)
}

/// Whether a runtime exists in this process (for tests of the import-time rule).
pub fn started() -> bool {
    let guard = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    matches!(*guard, Some((pid, _)) if pid == std::process::id())
}
