//! X.509 certificate names (peer input: whatever certificate a TLS server or an intercepting
//! proxy presents) on arbitrary DER.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = probes::wire::x509::names(data);
});
