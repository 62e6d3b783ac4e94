//! `sluicegate serve` over HTTP with the fuzzer's method, authorization, path, query string and
//! body. Beyond "no panic": no request is a server error, and nothing behind authentication
//! answers 200 without the token.
#![no_main]
use std::sync::LazyLock;

static HARNESS: LazyLock<sluicegate::fuzzing::ApiHarness> = LazyLock::new(sluicegate::fuzzing::ApiHarness::new);

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((status, body)) = HARNESS.run(data) else { return };
    assert!(status < 500, "HTTP {status} for input {data:?}: {}", String::from_utf8_lossy(&body));
    let text = String::from_utf8_lossy(&body);
    assert!(!text.contains(&HARNESS.token), "the API token came back in an answer: {text}");
    let unauthenticated = matches!(data[1] % 8, 1 | 2);
    let target = String::from_utf8_lossy(data[2..].split(|b| *b == 0).next().unwrap_or_default()).to_string();
    let open = target.contains("metrics") || target.contains("healthz") || target.contains("openapi");
    if unauthenticated && !open && status == 200 {
        panic!("HTTP 200 without a valid token for {target:?}");
    }
});
