//! The `stun_codec`-backed full decoder on arbitrary bytes: it must return, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use probes::stun::full::{self, FullError};

fuzz_target!(|data: &[u8]| {
    match full::decode(data) {
        Ok(m) => {
            let _ = m.unknown_comprehension_required();
            assert!(data.len() >= 20);
        }
        Err(FullError::Attributes { .. } | FullError::Header { .. } | FullError::TooLong { .. }) => {}
        Err(_) => {}
    }
});
