//! One MySQL binary-protocol value or one SQLite text value, decoded as a source reads it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sluicegate::fuzzing::source_value(data);
});
