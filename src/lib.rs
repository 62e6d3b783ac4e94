//! sluicegate: self-hosted reverse ETL. See DESIGN.md for the rooms of the code.

pub mod cli;
pub mod config;
pub mod deliver;
pub mod destination;
pub mod diff;
pub mod emulator;
pub mod engine;
pub mod error;
pub mod runtime;
pub mod source;
pub mod store;

#[cfg(feature = "python")]
mod python;

pub use error::{Error, ErrorKind, Result};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
