//! `engine::convert`: any JSON value to any field type.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluicegate::fuzzing::convert(data));
