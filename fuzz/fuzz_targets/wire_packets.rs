//! The raw sweep's packets (peer input: whatever a raw socket receives from the target or a
//! router) and the gateway protocols (peer input: anything on the LAN can answer NAT-PMP, PCP
//! and SSDP) on arbitrary bytes: `probes::wire::{ip, natpmp, pcp, upnp}`.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use libfuzzer_sys::fuzz_target;
use probes::wire::ip::{IcmpUnreachableRepr, QuotedTcp, TcpSegmentRepr};
use probes::wire::{natpmp, pcp, upnp};

fuzz_target!(|data: &[u8]| {
    // A TCP segment that parses re-emits (without options) to bytes that parse to the same
    // fields, with a valid checksum.
    if let Ok(seg) = TcpSegmentRepr::parse(data) {
        let again = TcpSegmentRepr::parse(&seg.to_bytes()).unwrap();
        assert_eq!(again, seg);
        assert!(probes::wire::ip::tcp_checksum_ok(&seg.to_bytes()));
    }
    // An ICMP error that parses re-emits with its quote to the same fields.
    if let Ok(e) = IcmpUnreachableRepr::parse(data) {
        let syn = TcpSegmentRepr::syn(e.quoted.src, e.quoted.dst, e.quoted.sport, e.quoted.dport, e.quoted.seq);
        let mut b = [0u8; IcmpUnreachableRepr::LEN];
        e.emit(&QuotedTcp::of(&syn), &mut b);
        assert_eq!(IcmpUnreachableRepr::parse(&b).unwrap(), e);
    }
    let _ = QuotedTcp::parse(data);
    let _ = natpmp::parse_external(data);
    let _ = pcp::parse_response(data);
    if let Ok(a) = upnp::parse_ssdp_answer(data) {
        let _ = upnp::parse_http_url(a.location);
    }
    let _ = upnp::http_body(data);
    let _ = upnp::igd_services(data);
});
