//! The path checks' machines on arbitrary input (peer input: the STUN server's answers, the
//! gateway's NAT-PMP/PCP/SOAP answers, the HTTP answer a portal sends): the PMTU search and the
//! port-mapping proof never panic, always end once time runs out, and the mapping proof never
//! ends with a mapping it did not try to delete.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use probes::path::captive::{self, HttpAnswer, HttpOutcome};
use probes::path::mapping::{Deletion, MapProtocol, MapResult, MappingConfig, MappingProbe, Step};
use probes::path::pmtu::{PmtuConfig, PmtuSearch, TooBig};
use probes::stun::TransactionIdSource;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let chunks: Vec<&[u8]> = rest.split(|b| *b == 0xfe).collect();
    let mut now = Instant::now();

    // PMTU: feed the chunks as answers, errors or timeouts.
    let cfg = PmtuConfig::new("198.18.0.10:3478".parse().unwrap(), Duration::from_millis(100));
    let mut s = PmtuSearch::new(cfg, TransactionIdSource::new([sel; 16]));
    let mut buf = Vec::new();
    for c in &chunks {
        buf.clear();
        let _ = s.poll_transmit(now, &mut buf);
        match c.first().copied().unwrap_or(0) % 4 {
            0 => {
                let _ = s.handle_response(c, c.get(1).map(|f| u16::from(*f) * 8));
            }
            1 => s.handle_error(TooBig::Icmp { mtu: u16::from_be_bytes([c.get(1).copied().unwrap_or(5), 0]), from: None }),
            2 => s.handle_error(TooBig::Local { mtu: None }),
            _ => {
                now += Duration::from_millis(150);
                s.handle_timeout(now);
            }
        }
    }
    for _ in 0..400 {
        if s.is_done() {
            break;
        }
        buf.clear();
        let _ = s.poll_transmit(now, &mut buf);
        now += Duration::from_millis(150);
        s.handle_timeout(now);
    }
    assert!(s.is_done(), "the search ends when nothing answers");

    // The mapping proof, with every protocol.
    let protocol = match sel % 3 {
        0 => MapProtocol::Pcp,
        1 => MapProtocol::NatPmp,
        _ => MapProtocol::Upnp {
            control: probes::wire::upnp::parse_http_url("http://192.168.1.1:5000/ctl").unwrap(),
            service_type: "urn:schemas-upnp-org:service:WANIPConnection:1".into(),
        },
    };
    let mcfg = MappingConfig {
        protocol,
        gateway: "192.168.1.1".parse().unwrap(),
        internal: "192.168.1.2:40000".parse().unwrap(),
        lifetime: 30,
        stun: "11.0.0.10:3478".parse().unwrap(),
        gateway_external: None,
        rto: Duration::from_millis(100),
        attempts: 3,
        nonce: [sel; 12],
    };
    let mut m = MappingProbe::new(mcfg, TransactionIdSource::new([sel ^ 0x55; 16]));
    let mut deletes = 0u32;
    for (i, c) in chunks.iter().enumerate() {
        match m.poll(now) {
            Some(Step::Soap { .. }) => m.handle_soap(Ok(c.to_vec())),
            Some(_) | None => {}
        }
        match c.first().copied().unwrap_or(0) % 4 {
            0 => {
                let _ = m.handle_gateway(c);
            }
            1 => {
                let _ = m.handle_stun("11.0.0.11:3479".parse().unwrap(), c);
            }
            2 if i % 7 == 3 => m.cancel(),
            _ => {
                now += Duration::from_millis(500);
                m.handle_timeout(now);
            }
        }
    }
    for _ in 0..200 {
        if m.is_done() {
            break;
        }
        match m.poll(now) {
            Some(Step::Soap { .. }) => m.handle_soap(Err("no answer".into())),
            Some(Step::Gateway(_)) => deletes += 1,
            _ => {}
        }
        now += Duration::from_millis(500);
        m.handle_timeout(now);
    }
    assert!(m.is_done(), "the proof ends when nothing answers");
    let p = m.proof();
    if matches!(p.result, MapResult::Created { .. }) {
        assert_ne!(p.deletion, Deletion::NotNeeded, "a created mapping is always deleted");
    }
    let _ = deletes;

    // The portal judgement on an arbitrary answer.
    let text = String::from_utf8_lossy(rest);
    let a = HttpAnswer::new(u16::from(sel) + 200, Some(&text), None, rest);
    let _ = captive::judge("api.netbird.io", &HttpOutcome::Answered(a)).to_string();
});
