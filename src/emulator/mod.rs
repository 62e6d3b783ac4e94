//! Local emulators of destination APIs, for tests, demos and benchmarks.

pub mod webhook;
pub mod hubspot;
pub mod iterable;
pub mod salesforce;
