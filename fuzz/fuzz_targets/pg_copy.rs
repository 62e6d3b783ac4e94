//! The Postgres binary COPY stream: parser, tuple splitting and every decoder.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sluicegate::fuzzing::copy_stream(data);
});
