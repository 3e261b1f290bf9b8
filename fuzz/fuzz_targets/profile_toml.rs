//! Target profiles in TOML (`stunmap check --profile FILE`) on arbitrary bytes: parsing,
//! validation, and every accessor the check uses on a profile that parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(profile) = probes::profile::Profile::from_toml(&text) else {
        return;
    };
    let _ = profile.validate();
    let _ = profile.names();
    for service in &profile.services {
        let _ = service.hosts.iter().map(|h| h.name()).count();
        // Bounded: a range holds at most 65,536 ports.
        for range in service.udp.iter().chain(&service.tcp) {
            assert!(range.ports().count() as u32 == range.count());
        }
    }
});
