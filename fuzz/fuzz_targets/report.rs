//! Any bytes as an agent's metric report on the wire: decoding must succeed or fail cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = wsfleet_proto::v1::MetricReport::decode(data) {
        let _ = wsfleet_metrics::MetricSets::from_report(&report);
    }
});
