//! sluicegate: self-hosted reverse ETL. See DESIGN.md for the rooms of the code.

pub mod cli;
pub mod config;
pub mod deliver;
pub mod destination;
pub mod diff;
pub mod emulator;
pub mod engine;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod runtime;
pub mod serve;
pub mod source;
pub mod store;

#[cfg(feature = "python")]
mod python;

pub use error::{Error, ErrorKind, Result};

/// Every row is a handful of small allocations made on one task and freed on another; mimalloc
/// does that several times faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
