//! One Postgres binary value of any supported type (scalars and arrays).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sluicegate::fuzzing::pg_value(data);
});
