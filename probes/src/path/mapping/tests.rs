use super::*;
use crate::stun::attr;

fn cfg(protocol: MapProtocol) -> MappingConfig {
    MappingConfig {
        protocol,
        gateway: "192.168.1.1".parse().unwrap(),
        internal: "192.168.1.2:40000".parse().unwrap(),
        lifetime: 30,
        stun: "11.0.0.10:3478".parse().unwrap(),
        gateway_external: Some("11.0.0.1".parse().unwrap()),
        rto: Duration::from_millis(250),
        attempts: 3,
        nonce: [5; 12],
    }
}

// The tests' base instant; every later time is derived from it.
#[allow(clippy::disallowed_methods)]
fn probe(protocol: MapProtocol) -> (MappingProbe, Instant) {
    (
        MappingProbe::new(cfg(protocol), TransactionIdSource::new([1; 16])),
        Instant::now(),
    )
}

fn stun_answer(req: &[u8], other: Option<&str>) -> Vec<u8> {
    let v = StunView::parse(req).unwrap();
    let mut out = Vec::new();
    let mut w = MessageWriter::new(&mut out, MessageType::BINDING_SUCCESS, &v.transaction_id());
    w.xor_address(attr::XOR_MAPPED_ADDRESS, &"11.0.0.1:40000".parse().unwrap());
    if let Some(o) = other {
        w.address(attr::OTHER_ADDRESS, &o.parse().unwrap());
    }
    w.fingerprint();
    w.finish();
    out
}

fn natpmp_answer(req: &[u8], result: u16) -> Vec<u8> {
    let mut a = vec![0, 129];
    a.extend_from_slice(&result.to_be_bytes());
    a.extend_from_slice(&7u32.to_be_bytes());
    a.extend_from_slice(&req[4..6]); // internal port
    let ext = if req[8..12] == [0, 0, 0, 0] {
        [0, 0]
    } else {
        [req[4], req[5]]
    };
    a.extend_from_slice(&ext);
    a.extend_from_slice(&req[8..12]);
    a
}

fn stun_step(s: &mut MappingProbe, now: Instant) -> Vec<u8> {
    match s.poll(now) {
        Some(Step::Stun { bytes, .. }) => bytes,
        other => panic!("expected STUN, got {other:?}"),
    }
}

fn gateway_step(s: &mut MappingProbe, now: Instant) -> Vec<u8> {
    match s.poll(now) {
        Some(Step::Gateway(b)) => b,
        other => panic!("expected a gateway datagram, got {other:?}"),
    }
}

/// The probe's first Binding, answered by the STUN server with an OTHER-ADDRESS (what the
/// mapping needs before the gateway is asked), and taken.
fn discover(s: &mut MappingProbe, now: Instant) {
    let req = stun_step(s, now);
    assert!(s.handle_stun(
        "11.0.0.10:3478".parse().unwrap(),
        &stun_answer(&req, Some("11.0.0.11:3479"))
    ));
}

#[test]
fn natpmp_mapping_is_created_proven_and_deleted() {
    let (mut s, now) = probe(MapProtocol::NatPmp);
    discover(&mut s, now);
    let map = gateway_step(&mut s, now);
    assert_eq!(map, natpmp::map_request(40000, 40000, 30));
    assert!(s.handle_gateway(&natpmp_answer(&map, 0)));
    // The proof: CHANGE-REQUEST and RESPONSE-PORT 40000.
    let verify = stun_step(&mut s, now);
    let v = StunView::parse(&verify).unwrap();
    assert_eq!(v.response_port(), Some(Some(40000)));
    assert!(v.attributes().any(|(k, _)| k == attr::CHANGE_REQUEST));
    let other: SocketAddr = "11.0.0.11:3479".parse().unwrap();
    assert!(s.handle_stun(other, &stun_answer(&verify, None)));
    let del = gateway_step(&mut s, now);
    assert_eq!(del, natpmp::map_request(40000, 0, 0));
    assert!(s.handle_gateway(&natpmp_answer(&del, 0)));
    assert!(s.is_done());
    let p = s.proof();
    assert_eq!(p.verification, Verification::Reached { from: other });
    assert_eq!(p.deletion, Deletion::Confirmed);
    assert_eq!(p.mapped_before, Some("11.0.0.1:40000".parse().unwrap()));
    let (sev, line, _) = judge(p);
    assert_eq!(sev, Severity::Info);
    assert!(
        line.contains("NAT-PMP mapping on 192.168.1.1 works"),
        "{line}"
    );
}

#[test]
fn an_unreached_mapping_is_deleted_and_blamed_on_what_lies_beyond() {
    let (mut s, mut now) = probe(MapProtocol::NatPmp);
    discover(&mut s, now);
    let map = gateway_step(&mut s, now);
    s.handle_gateway(&natpmp_answer(&map, 0));
    // Three unanswered proofs.
    for _ in 0..3 {
        stun_step(&mut s, now);
        now = s.poll_timeout().unwrap();
        s.handle_timeout(now);
    }
    let del = gateway_step(&mut s, now);
    s.handle_gateway(&natpmp_answer(&del, 0));
    let p = s.proof();
    assert_eq!(p.verification, Verification::NotReached);
    assert_eq!(p.deletion, Deletion::Confirmed);
    let (sev, line, fix) = judge(p);
    assert_eq!(sev, Severity::Medium);
    assert!(line.contains("never arrived"), "{line}");
    assert!(fix.is_some());
}

#[test]
fn a_refusal_leaves_nothing_to_delete_and_silence_is_deleted_anyway() {
    let (mut s, mut now) = probe(MapProtocol::NatPmp);
    discover(&mut s, now);
    let map = gateway_step(&mut s, now);
    s.handle_gateway(&natpmp_answer(&map, 3));
    assert!(s.is_done());
    assert_eq!(s.proof().deletion, Deletion::NotNeeded);
    assert!(matches!(
        s.proof().result,
        MapResult::Refused { code: 3, .. }
    ));

    // A gateway that never answers: the delete is sent anyway, and never confirmed.
    let (mut s, _) = probe(MapProtocol::NatPmp);
    discover(&mut s, now);
    let mut deletes = 0;
    for _ in 0..10 {
        match s.poll(now) {
            Some(Step::Gateway(b)) if b[8..12] == [0, 0, 0, 0] => deletes += 1,
            Some(_) => {}
            None => {}
        }
        let Some(t) = s.poll_timeout() else { break };
        now = t;
        s.handle_timeout(now);
    }
    assert!(s.is_done());
    assert_eq!(deletes, 3);
    assert_eq!(s.proof().result, MapResult::NoAnswer);
    assert!(matches!(s.proof().deletion, Deletion::Unconfirmed { .. }));
    let (sev, line, _) = judge(s.proof());
    assert_eq!(sev, Severity::Medium);
    assert!(line.contains("deletion was not confirmed"), "{line}");
}

#[test]
fn no_mapping_without_an_alternate_address_or_a_stun_answer() {
    let (mut s, mut now) = probe(MapProtocol::Pcp);
    let req = stun_step(&mut s, now);
    s.handle_stun("11.0.0.10:3478".parse().unwrap(), &stun_answer(&req, None));
    assert!(s.is_done());
    assert!(matches!(s.proof().result, MapResult::NotRequested { .. }));
    let (mut s, _) = probe(MapProtocol::Pcp);
    for _ in 0..3 {
        stun_step(&mut s, now);
        now = s.poll_timeout().unwrap();
        s.handle_timeout(now);
    }
    assert!(s.is_done());
    assert!(s.poll(now).is_none());
}

#[test]
fn cancel_during_the_proof_deletes_first() {
    let (mut s, now) = probe(MapProtocol::Pcp);
    discover(&mut s, now);
    let map = gateway_step(&mut s, now);
    // The PCP answer: the request with R set and an external address.
    let mut a = map.clone();
    a[1] |= 0x80;
    a[12..24].fill(0);
    a[54..60].copy_from_slice(&[0xff, 0xff, 11, 0, 0, 1]);
    assert!(s.handle_gateway(&a));
    assert!(matches!(
        s.proof().result,
        MapResult::Created {
            external_ip: Some(_),
            external_port: 40000,
            ..
        }
    ));
    stun_step(&mut s, now);
    s.cancel();
    let del = gateway_step(&mut s, now);
    assert_eq!(&del[4..8], &[0, 0, 0, 0], "lifetime 0 deletes");
    assert_eq!(&del[24..36], &[5; 12], "same nonce");
    let mut d = del.clone();
    d[1] |= 0x80;
    d[12..24].fill(0);
    assert!(s.handle_gateway(&d));
    assert!(s.is_done());
    assert!(s.proof().interrupted);
    assert_eq!(s.proof().deletion, Deletion::Confirmed);
    // A PCP answer with another nonce is not ours.
    let (mut s, now) = probe(MapProtocol::Pcp);
    discover(&mut s, now);
    let mut map = gateway_step(&mut s, now);
    map[1] |= 0x80;
    map[24] ^= 1;
    assert!(!s.handle_gateway(&map));
}

#[test]
fn upnp_goes_through_soap_and_garbage_is_not_a_success() {
    let control = upnp::parse_http_url("http://192.168.1.1:5000/ctl/IPConn").unwrap();
    let proto = MapProtocol::Upnp {
        control,
        service_type: "urn:schemas-upnp-org:service:WANIPConnection:1".into(),
    };
    let (mut s, now) = probe(proto);
    discover(&mut s, now);
    let Some(Step::Soap { request, .. }) = s.poll(now) else {
        panic!()
    };
    assert!(String::from_utf8_lossy(&request).contains("#AddPortMapping"));
    assert!(s.poll(now).is_none(), "one exchange at a time");
    s.handle_soap(Ok(
        b"HTTP/1.1 200 OK\r\n\r\n<u:AddPortMappingResponse/>".to_vec()
    ));
    let verify = stun_step(&mut s, now);
    s.handle_stun(
        "11.0.0.11:3479".parse().unwrap(),
        &stun_answer(&verify, None),
    );
    let Some(Step::Soap { request, .. }) = s.poll(now) else {
        panic!()
    };
    assert!(String::from_utf8_lossy(&request).contains("#DeletePortMapping"));
    s.handle_soap(Ok(b"not http at all".to_vec()));
    assert!(s.is_done());
    assert!(matches!(s.proof().deletion, Deletion::Unconfirmed { .. }));
    assert!(matches!(
        s.proof().verification,
        Verification::Reached { .. }
    ));
}
