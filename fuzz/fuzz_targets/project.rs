//! The project-file reader and validator on arbitrary text.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluicegate::fuzzing::project(data));
