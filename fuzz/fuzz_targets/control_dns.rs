//! DNS responses (peer input: `stunmap control` reads answers from any resolver) on arbitrary
//! bytes, and the query encoder on arbitrary names.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use libfuzzer_sys::fuzz_target;
use probes::control::dns::parse_resolv_conf;
use probes::wire::dns::{self, RecordType};

fuzz_target!(|data: &[u8]| {
    let _ = dns::parse_response(data);
    // The same bytes as a name: the encoder must either refuse it or emit a query that parses
    // back as a (question-only) message.
    if let Ok(name) = std::str::from_utf8(data) {
        let mut q = Vec::new();
        if dns::encode_query(0x1234, name, RecordType::A, &mut q).is_ok() {
            assert!(q.len() >= 12 + 5);
            assert!(q.len() <= 12 + 255 + 4 + 2);
            let _ = dns::parse_response(&q);
        }
    }
    let _ = parse_resolv_conf(&String::from_utf8_lossy(data));
});
