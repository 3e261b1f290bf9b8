//! The NetBird published endpoint list in JSON (`stunmap check --endpoints FILE`) on
//! arbitrary bytes, imported over the embedded NetBird Cloud profile.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(seed) = probes::profile::netbird_cloud() else {
        return;
    };
    let text = String::from_utf8_lossy(data);
    if let Ok((profile, _notes)) = probes::profile::netbird::import(&text, &seed) {
        let _ = profile.validate();
    }
});
