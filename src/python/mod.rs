//! `sluicegate._core`: the only pyo3 code. Every call that does I/O releases the GIL
//! (`Python::detach`) and runs on the per-process runtime; every Rust error arrives as an
//! exception of one hierarchy rooted at `SluicegateError`, with the cause chain in its message
//! and in its `causes` attribute. Nothing happens at import time.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use serde_json::Value;

use crate::config::SyncRef;
use crate::engine::worker::{RunOptions, RunOutcome};
use crate::engine::{no_progress, Engine, EngineOptions};
use crate::error::{Error, ErrorKind};
use crate::store::TriggerReason;

mod aio;

pyo3::create_exception!(sluicegate._core, SluicegateError, PyException, "Base class of every sluicegate error.");
pyo3::create_exception!(sluicegate._core, ConfigError, SluicegateError, "The project file or a sync's configuration is wrong.");
pyo3::create_exception!(sluicegate._core, SourceError, SluicegateError, "Reading the source failed.");
pyo3::create_exception!(sluicegate._core, DestinationError, SluicegateError, "The destination failed or refused the delivery.");
pyo3::create_exception!(sluicegate._core, StoreError, SluicegateError, "The state store failed.");
pyo3::create_exception!(sluicegate._core, RunNotFoundError, SluicegateError, "No run with that id.");
pyo3::create_exception!(sluicegate._core, SyncNotFoundError, SluicegateError, "No sync with that id or name.");
pyo3::create_exception!(sluicegate._core, RunStateError, SluicegateError, "The run cannot be executed in its current state.");

fn to_pyerr(py: Python<'_>, e: Error) -> PyErr {
    let msg = e.full_message();
    let err = match e.kind() {
        ErrorKind::Config => ConfigError::new_err(msg),
        ErrorKind::Source => SourceError::new_err(msg),
        ErrorKind::Destination => DestinationError::new_err(msg),
        ErrorKind::Store => StoreError::new_err(msg),
        ErrorKind::RunNotFound => RunNotFoundError::new_err(msg),
        ErrorKind::SyncNotFound => SyncNotFoundError::new_err(msg),
        ErrorKind::RunState => RunStateError::new_err(msg),
        ErrorKind::Canceled | ErrorKind::Other => SluicegateError::new_err(msg),
    };
    let _ = err.value(py).setattr("causes", e.chain());
    let _ = err.value(py).setattr("kind", e.kind().as_str());
    err
}

/// JSON → Python objects (ints stay exact, however large).
fn to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                let text = n.to_string();
                let is_int = text.bytes().all(|c| c.is_ascii_digit() || c == b'-');
                let builtins = py.import("builtins")?;
                if is_int { builtins.getattr("int")?.call1((text,))? } else { builtins.getattr("float")?.call1((text,))? }
            }
        }
        Value::String(s) => s.into_pyobject(py)?.into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (k, item) in map {
                dict.set_item(k, to_py(py, item)?)?;
            }
            dict.into_any()
        }
    })
}

fn sync_ref(obj: &Bound<'_, PyAny>) -> PyResult<SyncRef> {
    if let Ok(id) = obj.extract::<i64>() {
        return Ok(SyncRef::Id(id));
    }
    if let Ok(name) = obj.extract::<String>() {
        return Ok(SyncRef::parse(&name));
    }
    Err(pyo3::exceptions::PyTypeError::new_err("sync must be a sync id (int) or name (str)"))
}

/// The engine over one project file and state store. Safe to use after `os.fork()`: a child
/// process opens its own connections and runtime on first use.
#[pyclass(name = "Engine", module = "sluicegate._core", frozen)]
struct PyEngine {
    project: PathBuf,
    state: Option<String>,
    inner: Mutex<Option<(u32, Arc<Engine>)>>,
}

impl PyEngine {
    /// The engine of this process, opened on first use (and again in a forked child).
    fn engine(&self) -> crate::Result<Arc<Engine>> {
        let pid = std::process::id();
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((owner, engine)) = guard.as_ref() {
            if *owner == pid {
                return Ok(engine.clone());
            }
        }
        let rt = crate::runtime::runtime()?;
        let opts = EngineOptions { state: self.state.clone(), ..Default::default() };
        let engine = Arc::new(rt.block_on(Engine::open(&self.project, opts))?);
        if let Some(old) = guard.take() {
            // Opened by the parent before a fork: its pools belong to threads this process does
            // not have. Leak it rather than run its destructors here.
            std::mem::forget(old);
        }
        *guard = Some((pid, engine.clone()));
        Ok(engine)
    }

    /// Run `f` with the GIL released, on this process's runtime.
    fn call<T: Send>(
        &self,
        py: Python<'_>,
        f: impl for<'e> FnOnce(&'e Engine) -> std::pin::Pin<Box<dyn std::future::Future<Output = crate::Result<T>> + Send + 'e>> + Send,
    ) -> PyResult<T> {
        py.detach(|| {
            let engine = self.engine()?;
            let rt = crate::runtime::runtime()?;
            rt.block_on(f(&engine))
        })
        .map_err(|e| to_pyerr(py, e))
    }
}

fn json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The outcome of an async engine call, converted to Python (or raised) when the awaitable
/// completes, on the event loop's side of the bridge.
struct Answer(crate::Result<Value>);

impl<'py> IntoPyObject<'py> for Answer {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self.0 {
            Ok(value) => to_py(py, &value),
            Err(e) => Err(to_pyerr(py, e)),
        }
    }
}

#[pymethods]
impl PyEngine {
    #[new]
    #[pyo3(signature = (project, state = None))]
    fn new(py: Python<'_>, project: PathBuf, state: Option<String>) -> PyResult<Self> {
        let engine = PyEngine { project, state, inner: Mutex::new(None) };
        py.detach(|| engine.engine().map(|_| ())).map_err(|e| to_pyerr(py, e))?;
        Ok(engine)
    }

    /// Queue a run of a sync (by id or name); returns the run id.
    #[pyo3(signature = (sync, full_sync = false, reason = None))]
    fn trigger(&self, py: Python<'_>, sync: &Bound<'_, PyAny>, full_sync: bool, reason: Option<String>) -> PyResult<i64> {
        let sync = sync_ref(sync)?;
        let reason = TriggerReason {
            ui_tag: "API".into(),
            ui_detail: reason.unwrap_or_else(|| "Triggered from Python".into()),
        };
        self.call(py, move |e| Box::pin(async move { e.trigger(&sync, full_sync, &reason).await }))
    }

    /// Execute a queued run in this process; returns the finished run. With
    /// `yield_when_throttled` (seconds), a run the destination's rate limit would hold back at
    /// least that long is given back to the queue after the batches in flight: it is returned
    /// `queued`, with `resume_after` (seconds) saying when to run it again.
    #[pyo3(signature = (run_id, yield_when_throttled = None))]
    fn run<'py>(&self, py: Python<'py>, run_id: i64, yield_when_throttled: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        let yield_when_throttled = match yield_when_throttled {
            None => None,
            Some(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => Some(std::time::Duration::from_secs_f64(s)),
            Some(s) => {
                return Err(to_pyerr(
                    py,
                    Error::config(format!("yield_when_throttled must be a number of seconds above 0 and at most 86400, got {s}")),
                ))
            }
        };
        let opts = RunOptions { yield_when_throttled };
        let outcome = self.call(py, move |e| Box::pin(async move { e.run_with(run_id, &no_progress, &opts).await }))?;
        let value = match outcome {
            RunOutcome::Finished(run) => json(&run),
            RunOutcome::Yielded { run, resume_after } => {
                let mut v = json(&run);
                if let Value::Object(map) = &mut v {
                    map.insert("resume_after".into(), Value::from(resume_after.as_secs_f64()));
                }
                v
            }
        };
        to_py(py, &value)
    }

    /// Trigger a run and execute it in this process (the run is created already claimed, so a
    /// process killed at any point leaves no queued run behind); returns the finished run.
    #[pyo3(signature = (sync, full_sync = false, reason = None))]
    fn sync<'py>(&self, py: Python<'py>, sync: &Bound<'_, PyAny>, full_sync: bool, reason: Option<String>) -> PyResult<Bound<'py, PyAny>> {
        let sync = sync_ref(sync)?;
        let reason = TriggerReason {
            ui_tag: "API".into(),
            ui_detail: reason.unwrap_or_else(|| "Triggered from Python".into()),
        };
        let run = self.call(py, move |e| Box::pin(async move { e.trigger_and_run(&sync, full_sync, &reason, &no_progress).await }))?;
        to_py(py, &json(&run))
    }

    fn get_run<'py>(&self, py: Python<'py>, run_id: i64) -> PyResult<Bound<'py, PyAny>> {
        let run = self.call(py, move |e| Box::pin(async move { e.get_run(run_id).await }))?;
        to_py(py, &json(&run))
    }

    /// `get_run` as an awaitable for asyncio code (the Airflow trigger): the store is read on
    /// the engine's runtime while the event loop keeps running.
    fn get_run_async<'py>(&self, py: Python<'py>, run_id: i64) -> PyResult<Bound<'py, PyAny>> {
        let engine = py.detach(|| self.engine()).map_err(|e| to_pyerr(py, e))?;
        aio::future_into_py(py, async move { Ok(Answer(engine.get_run(run_id).await.map(|run| json(&run)))) })
    }

    #[pyo3(signature = (sync = None, limit = 20))]
    fn list_runs<'py>(&self, py: Python<'py>, sync: Option<&Bound<'_, PyAny>>, limit: i64) -> PyResult<Bound<'py, PyAny>> {
        let sync = sync.map(sync_ref).transpose()?;
        let runs = self.call(py, move |e| Box::pin(async move { e.list_runs(sync.as_ref(), limit).await }))?;
        to_py(py, &json(&runs))
    }

    /// Cancel a run: a queued run ends at once, a working run after the batch in flight.
    /// Returns the run as it is now.
    fn cancel<'py>(&self, py: Python<'py>, run_id: i64) -> PyResult<Bound<'py, PyAny>> {
        let run = self.call(py, move |e| Box::pin(async move { e.cancel(run_id).await }))?;
        to_py(py, &json(&run))
    }

    /// Dry run: counts and sample records of what a run would send now.
    #[pyo3(signature = (sync, full_sync = false, samples = 3))]
    fn plan<'py>(&self, py: Python<'py>, sync: &Bound<'_, PyAny>, full_sync: bool, samples: usize) -> PyResult<Bound<'py, PyAny>> {
        let sync = sync_ref(sync)?;
        let report = self.call(py, move |e| Box::pin(async move { e.plan(&sync, full_sync, samples).await }))?;
        to_py(py, &json(&report))
    }

    /// Rows of a run that were not delivered: invalid or rejected, with the reason.
    #[pyo3(signature = (run_id, limit = 1000))]
    fn rejections<'py>(&self, py: Python<'py>, run_id: i64, limit: i64) -> PyResult<Bound<'py, PyAny>> {
        let rows = self.call(py, move |e| Box::pin(async move { e.run_records(run_id, limit).await }))?;
        to_py(py, &json(&rows))
    }

    /// The project's syncs.
    fn syncs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let engine = py.detach(|| self.engine()).map_err(|e| to_pyerr(py, e))?;
        let list: Vec<Value> = engine
            .project()
            .syncs
            .iter()
            .map(|s| {
                let project = engine.project();
                // What lineage needs (the Airflow operator's OpenLineage facets): the source's
                // URL without credentials or query, the relation read, the destination's type.
                let source_object = match &s.relation {
                    crate::config::Relation::Table(t) => serde_json::json!({"type": "table", "name": t}),
                    crate::config::Relation::Query(_) => serde_json::json!({"type": "query", "name": null}),
                    crate::config::Relation::DbtModel(m) => serde_json::json!({"type": "dbt_model", "name": m}),
                };
                serde_json::json!({
                    "id": s.id,
                    "name": s.name,
                    "source": s.source,
                    "destination": s.destination,
                    "object": s.object,
                    "behavior": s.behavior.as_str(),
                    "source_url": project.sources.get(&s.source).map(|c| crate::config::redact_url(c.url.expose())),
                    "source_object": source_object,
                    "destination_type": project.destinations.get(&s.destination).map(|d| d.type_name()),
                })
            })
            .collect();
        to_py(py, &Value::Array(list))
    }

    #[getter]
    fn project_path(&self) -> String {
        self.project.display().to_string()
    }
}

/// Run the `sluicegate` command line with `argv` (argv[0] is the program name).
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<String>) -> i32 {
    py.detach(|| crate::cli::main_with_args(argv.into_iter().map(OsString::from).collect()))
}

/// Whether this process has started the engine's runtime (import must not).
#[pyfunction]
fn runtime_started() -> bool {
    crate::runtime::started()
}

#[pymodule]
#[pyo3(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", crate::VERSION)?;
    m.add_class::<PyEngine>()?;
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    m.add_function(wrap_pyfunction!(runtime_started, m)?)?;
    m.add("SluicegateError", py.get_type::<SluicegateError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("SourceError", py.get_type::<SourceError>())?;
    m.add("DestinationError", py.get_type::<DestinationError>())?;
    m.add("StoreError", py.get_type::<StoreError>())?;
    m.add("RunNotFoundError", py.get_type::<RunNotFoundError>())?;
    m.add("SyncNotFoundError", py.get_type::<SyncNotFoundError>())?;
    m.add("RunStateError", py.get_type::<RunStateError>())?;
    Ok(())
}
