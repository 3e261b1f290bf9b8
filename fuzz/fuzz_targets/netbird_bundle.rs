//! The debug-bundle zip reader on arbitrary bytes (`stunmap explain BUNDLE`): truncated and
//! hostile archives, zip bombs, traversal names. Whatever it accepts respects the caps, and the
//! files it returns go through the status, log, iptables-save and nft-text readers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use probes::Family;
use probes::hostfw::{iptables_save, nft_text};
use probes::netbird::{bundle, log, status};

fuzz_target!(|data: &[u8]| {
    let Ok(b) = bundle::from_zip(data) else {
        return;
    };
    let total: usize = b.files.values().map(Vec::len).sum();
    assert!(total <= bundle::MAX_TOTAL);
    for (name, bytes) in &b.files {
        assert!(bytes.len() <= bundle::cap_of(name).unwrap_or(0));
    }
    assert!(b.listing.len() <= bundle::MAX_ENTRIES);
    if let Some(s) = b.file("status.txt") {
        let _ = status::parse(s);
    }
    if let Some(t) = b.text("client.log") {
        let _ = log::read(&t);
    }
    if let Some(t) = b.text("iptables.txt") {
        if let Some(sec) = bundle::iptables_save_section(&t) {
            let _ = iptables_save::parse(sec, Family::Ipv4);
        }
    }
    if let Some(t) = b.text("nftables.txt") {
        let _ = nft_text::parse(&t);
    }
    if let Some(t) = b.text("config.txt") {
        let _ = bundle::config_interface_and_port(&t);
    }
});
