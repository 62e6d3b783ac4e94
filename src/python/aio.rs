//! Awaitables for Python's asyncio (the Airflow trigger) over the engine's own runtime.
//!
//! `pyo3-async-runtimes` turns a Rust future into an `asyncio.Future`. We plug in our own
//! [`EngineRuntime`] instead of its global tokio runtime, so every future runs on the lazy
//! per-process runtime of `crate::runtime` (rebuilt after a fork; never started at import).
//!
//! ## Why interpreter exits used to crash, and the fix
//!
//! The library completes the Python future on a runtime thread: inside `spawn_blocking` it
//! attaches to the interpreter and calls `loop.call_soon_threadsafe(...)`, which writes to the
//! event loop's self-pipe *with the GIL released*. The event loop's thread wakes up, finishes,
//! and the interpreter may begin finalizing before the runtime thread gets the GIL back. On
//! CPython <= 3.13 a thread that asks for the GIL during finalization is ended with
//! `pthread_exit`; that forced unwind runs the pyo3 guard's destructor on a thread state that
//! is not current, and CPython aborts with "Fatal Python error: PyGILState_Release: thread
//! state ... must be current when releasing" (runtime state: finalizing).
//!
//! So no runtime thread may be inside the interpreter once finalization starts. Every callback
//! that touches Python goes through [`EngineRuntime::spawn_blocking`], which passes a gate: it
//! counts the callbacks inside, and an `atexit` hook (run before CPython starts finalizing)
//! closes the gate and waits, with the GIL released, until the callbacks inside have left.
//! A callback arriving after that is dropped without touching Python (its Python references
//! are released by pyo3's deferred reference pool, i.e. never during finalization): the
//! interpreter is going away and nobody can await the result any more.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use once_cell_compat::OnceCell;
use pyo3::prelude::*;
use pyo3_async_runtimes::generic::{ContextExt, JoinError, Runtime};
use pyo3_async_runtimes::TaskLocals;

/// How long the exit hook waits for callbacks already inside the interpreter. They only need
/// the GIL (which the hook releases) to finish, so this is a safety net, never reached.
const EXIT_WAIT: Duration = Duration::from_secs(10);

/// The `pyo3-async-runtimes` runtime: tasks run on `crate::runtime::runtime()`.
pub struct EngineRuntime;

/// Error of a spawned task (a tokio join error).
pub struct TaskJoinError(tokio::task::JoinError);

impl JoinError for TaskJoinError {
    fn is_panic(&self) -> bool {
        self.0.is_panic()
    }
    fn into_panic(self) -> Box<dyn std::any::Any + Send + 'static> {
        self.0.into_panic()
    }
}

/// A spawned task's completion.
pub struct TaskHandle(tokio::task::JoinHandle<()>);

impl Future for TaskHandle {
    type Output = Result<(), TaskJoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|r| r.map_err(TaskJoinError))
    }
}

fn rt() -> &'static tokio::runtime::Runtime {
    // `future_into_py` below starts the runtime before anything is spawned, so this cannot
    // fail here (and `runtime()` only fails when the OS refuses threads).
    crate::runtime::runtime().expect("the engine runtime was started before spawning")
}

impl Runtime for EngineRuntime {
    type JoinError = TaskJoinError;
    type JoinHandle = TaskHandle;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        TaskHandle(rt().spawn(fut))
    }

    /// The library uses this only for callbacks that attach to the interpreter (completing the
    /// asyncio future): they pass the exit gate.
    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        TaskHandle(rt().spawn_blocking(move || {
            if let Some(_inside) = gate::enter() {
                f();
            } else {
                drop(f);
            }
        }))
    }
}

tokio::task_local! {
    static TASK_LOCALS: OnceCell<TaskLocals>;
}

/// A minimal set-once cell (the task-local value), so no extra crate is needed.
mod once_cell_compat {
    pub struct OnceCell<T>(std::sync::OnceLock<T>);

    impl<T> OnceCell<T> {
        pub fn with(value: T) -> Self {
            let cell = std::sync::OnceLock::new();
            let _ = cell.set(value);
            OnceCell(cell)
        }
        pub fn get(&self) -> Option<&T> {
            self.0.get()
        }
    }
}

impl ContextExt for EngineRuntime {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        Box::pin(TASK_LOCALS.scope(OnceCell::with(locals), fut))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        TASK_LOCALS.try_with(|c| c.get().cloned()).unwrap_or_default()
    }
}

/// Wrap `fut` in an `asyncio.Future` of the running event loop. The future runs on the engine
/// runtime; the result is converted to Python (and errors raised) on completion.
pub fn future_into_py<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    py.detach(crate::runtime::runtime)
        .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.full_message()))?;
    register_exit_hook(py)?;
    pyo3_async_runtimes::generic::future_into_py::<EngineRuntime, F, T>(py, fut)
}

/// Register [`close_async_bridge`] with `atexit`, once per interpreter (a forked child inherits
/// both the registration and this flag).
fn register_exit_hook(py: Python<'_>) -> PyResult<()> {
    static REGISTERED: AtomicBool = AtomicBool::new(false);
    if REGISTERED.load(Ordering::Acquire) {
        return Ok(());
    }
    let hook = wrap_pyfunction!(close_async_bridge, py)?;
    py.import("atexit")?.call_method1("register", (hook,))?;
    REGISTERED.store(true, Ordering::Release);
    Ok(())
}

/// Stop completing asyncio futures from runtime threads and wait for the completions in
/// progress: run by `atexit`, before the interpreter starts finalizing. Idempotent.
#[pyfunction]
pub fn close_async_bridge(py: Python<'_>) {
    py.detach(|| gate::close(EXIT_WAIT));
}

/// Counts runtime threads inside the interpreter; closed once at exit. Keyed by process id, so
/// a forked child never waits for its parent's threads.
mod gate {
    use super::*;

    struct State {
        pid: u32,
        closed: bool,
        inside: usize,
    }

    static STATE: Mutex<State> = Mutex::new(State { pid: 0, closed: false, inside: 0 });
    static LEFT: Condvar = Condvar::new();

    fn lock() -> std::sync::MutexGuard<'static, State> {
        let mut state = STATE.lock().unwrap_or_else(|p| p.into_inner());
        let pid = std::process::id();
        if state.pid != pid {
            *state = State { pid, closed: false, inside: 0 };
        }
        state
    }

    /// Proof of being inside; leaving is dropping it.
    pub struct Inside(());

    impl Drop for Inside {
        fn drop(&mut self) {
            let mut state = lock();
            state.inside = state.inside.saturating_sub(1);
            LEFT.notify_all();
        }
    }

    pub fn enter() -> Option<Inside> {
        let mut state = lock();
        if state.closed {
            return None;
        }
        state.inside += 1;
        Some(Inside(()))
    }

    pub fn close(wait: Duration) {
        let deadline = Instant::now() + wait;
        let mut state = lock();
        state.closed = true;
        while state.inside > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = LEFT.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}
