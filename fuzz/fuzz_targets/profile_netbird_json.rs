//! The NetBird published endpoint list in JSON (`stunmap check --endpoints FILE`) on arbitrary
//! bytes, imported over the embedded NetBird Cloud profile (parsed once).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use probes::profile::Profile;

static SEED: OnceLock<Option<Profile>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some(seed) = SEED.get_or_init(|| probes::profile::netbird_cloud().ok()) else {
        return;
    };
    let text = String::from_utf8_lossy(data);
    if let Ok((profile, _notes)) = probes::profile::netbird::import(&text, seed) {
        let _ = profile.validate();
    }
});
