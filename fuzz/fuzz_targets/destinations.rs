//! Every HTTP destination (webhook, HubSpot, Iterable, Salesforce collections and bulk) sending
//! one batch to a server that answers with the fuzzer's statuses, headers and bodies.
#![no_main]
use std::sync::LazyLock;

static HARNESS: LazyLock<sluicegate::fuzzing::DestinationHarness> = LazyLock::new(sluicegate::fuzzing::DestinationHarness::new);

libfuzzer_sys::fuzz_target!(|data: &[u8]| HARNESS.run(data));
