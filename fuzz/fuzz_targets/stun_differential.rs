//! Fast path against `stun_codec`: header verdicts, class/method/transaction id and every
//! value both decoders extract must agree, as `probes::stun::full::cross_check` spells out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use probes::stun::full;

fuzz_target!(|data: &[u8]| {
    if let Err(d) = full::cross_check(data) {
        panic!("{d}");
    }
});
