//! `nft list ruleset` text (a NetBird bundle's `nftables.txt`) on arbitrary bytes; what parses is
//! evaluated for the packets `stunmap host` asks about.
#![no_main]

use libfuzzer_sys::fuzz_target;
use probes::PortRange;
use probes::hostfw::{Cidr, Inputs, Options, diagnose, nft_text};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(rs) = nft_text::parse(&text) else {
        return;
    };
    let Some(subnet) = Cidr::parse("100.64.0.0/10") else {
        return;
    };
    let o = Options {
        interface: "wt0".into(),
        subnet,
        service_port: 8080,
        wg_range: PortRange {
            start: 49152,
            end: 65535,
        },
        wg_port: 51820,
        uplink: None,
        flat_network: true,
    };
    let r = diagnose(
        &Inputs {
            nft: Some(rs),
            ..Inputs::default()
        },
        &o,
    );
    assert!(!r.findings.is_empty());
});
