//! The raw sweep's packets (peer input: whatever a raw socket receives from the target or a
//! router), the gateway protocols (peer input: anything on the LAN can answer NAT-PMP, PCP,
//! SSDP and SOAP) and the kernel's rtnetlink answers on arbitrary bytes:
//! `probes::wire::{ip, natpmp, pcp, upnp, netlink}`.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use libfuzzer_sys::fuzz_target;
use probes::wire::ip::{IcmpUnreachableRepr, QuotedTcp, TcpSegmentRepr};
use probes::wire::{natpmp, netlink, pcp, upnp};

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
    let _ = natpmp::parse_map(data);
    let _ = pcp::parse_map(data);
    let _ = upnp::parse_soap_reply(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let base = upnp::parse_http_url("http://192.168.1.1:5000/rootDesc.xml").unwrap();
        if let Ok(u) = upnp::control_url(&base, text) {
            // A control URL that parses never carries a line break into a request.
            let req = upnp::soap_request(
                &u,
                "urn:schemas-upnp-org:service:WANIPConnection:1",
                &upnp::SoapAction::GetExternalIpAddress,
            )
            .unwrap();
            let head = req.split(|b| *b == b'\n').next().unwrap();
            assert!(!head[..head.len().saturating_sub(1)].contains(&b'\r'));
        }
    }
    let _ = netlink::parse(data);
});
