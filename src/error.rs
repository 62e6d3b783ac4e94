//! The crate's one error type: a kind (which maps to a Python exception class), a message that
//! says what went wrong and what to do, and an optional cause chain.

use std::fmt;

/// What part of the system an error comes from. Each kind is one Python exception class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The project file is wrong (unknown key, missing key, bad value, unknown column, …).
    Config,
    /// Reading the source failed (unreachable server, missing table, failing query, bad value).
    Source,
    /// The destination refused or failed the delivery as a whole.
    Destination,
    /// The state store failed (cannot open, migrate, read or write).
    Store,
    /// No run with that id exists in the state store.
    RunNotFound,
    /// No sync with that id or name exists in the project.
    SyncNotFound,
    /// A run cannot be executed in its current state (already running, finished, …).
    RunState,
    /// The run was canceled on request.
    Canceled,
    /// Anything else: I/O of the CLI, the emulator, internal invariants.
    Other,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Source => "source",
            ErrorKind::Destination => "destination",
            ErrorKind::Store => "store",
            ErrorKind::RunNotFound => "run_not_found",
            ErrorKind::SyncNotFound => "sync_not_found",
            ErrorKind::RunState => "run_state",
            ErrorKind::Canceled => "canceled",
            ErrorKind::Other => "other",
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error of every fallible operation in sluicegate.
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<BoxError>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), source: None }
    }
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
    pub fn source_err(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Source, message)
    }
    pub fn destination(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Destination, message)
    }
    pub fn store(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Store, message)
    }
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Other, message)
    }
    /// Attach the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }
    /// The same error, its message prefixed with where it happened (`sync 1 (contacts): …`).
    pub fn prefixed(mut self, prefix: impl fmt::Display) -> Self {
        self.message = format!("{prefix}: {}", self.message);
        self
    }
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The message followed by every cause, outermost first.
    pub fn chain(&self) -> Vec<String> {
        let mut out = vec![self.message.clone()];
        let mut cur: Option<&(dyn std::error::Error + 'static)> =
            self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static));
        while let Some(e) = cur {
            let text = e.to_string();
            if out.last().map(|l| l != &text).unwrap_or(true) {
                out.push(text);
            }
            cur = e.source();
        }
        out
    }
    /// One line (or block) with the whole cause chain: `message: cause: cause`.
    pub fn full_message(&self) -> String {
        self.chain().join(": ")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.kind.as_str(), self.full_message())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Add context to a foreign error.
pub trait Context<T> {
    fn context(self, kind: ErrorKind, message: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Into<BoxError>> Context<T> for std::result::Result<T, E> {
    fn context(self, kind: ErrorKind, message: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::new(kind, message()).with_source(e))
    }
}
