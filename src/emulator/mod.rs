//! Local emulators of destination APIs, for tests, demos and benchmarks.

pub mod webhook;
