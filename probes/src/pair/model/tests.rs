//! Unit tests of [`super`].

use super::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn cand(kind: CandidateKind, a: &str) -> WireCandidate {
    WireCandidate {
        kind,
        address: sa(a),
        priority: 1,
        foundation: "1".into(),
    }
}

fn report(role: Role, cands: Vec<WireCandidate>) -> SideReport {
    SideReport {
        nat: Some(NatType::PORT_RESTRICTED_CONE),
        candidates: cands,
        ..SideReport::empty(role)
    }
}

#[test]
fn candidate_validation_rejects_what_ice_cannot_use() {
    assert!(
        cand(CandidateKind::Host, "198.18.0.1:5000")
            .validate()
            .is_ok()
    );
    for bad in [
        "0.0.0.0:5000",
        "224.0.0.1:5000",
        "198.18.0.1:0",
        "255.255.255.255:9",
    ] {
        assert!(cand(CandidateKind::Host, bad).validate().is_err(), "{bad}");
    }
    let mut c = cand(CandidateKind::Host, "198.18.0.1:5000");
    c.foundation = "x".repeat(33);
    assert!(c.validate().is_err());
    c.foundation = "a b".into();
    assert!(c.validate().is_err());
    assert!(
        cand(CandidateKind::Prflx, "198.18.0.1:5000")
            .validate()
            .is_err()
    );
}

#[test]
fn offer_validation_caps_candidates_and_checks_credentials() {
    let good = Offer {
        ufrag: "abcd".into(),
        pwd: "a".repeat(22),
        candidates: vec![cand(CandidateKind::Host, "198.18.0.1:1")],
    };
    assert!(good.validate().is_ok());
    let mut o = good.clone();
    o.candidates = vec![cand(CandidateKind::Host, "198.18.0.1:1"); MAX_CANDIDATES + 1];
    assert!(matches!(o.validate(), Err(Invalid::TooMany { .. })));
    let mut o = good.clone();
    o.pwd = "short".into();
    assert!(o.validate().is_err());
    let mut o = good;
    o.ufrag = "ab:c".into();
    assert!(o.validate().is_err());
}

#[test]
fn rtt_stats_nearest_rank() {
    let s: Vec<Duration> = (1..=10).map(Duration::from_millis).collect();
    let r = RttStats::from_samples(20, &s);
    assert_eq!(r.received, 10);
    assert!((r.loss - 0.5).abs() < 1e-9);
    assert_eq!(r.p50_ms, Some(5.0));
    assert_eq!(r.p90_ms, Some(9.0));
    assert_eq!(r.p99_ms, Some(10.0));
    assert_eq!(r.min_ms, Some(1.0));
    let empty = RttStats::from_samples(0, &[]);
    assert_eq!(empty.loss, 0.0);
    assert_eq!(empty.p50_ms, None);
    let mut bad = r;
    bad.loss = f64::NAN;
    assert!(bad.validate().is_err());
}

#[test]
fn merge_is_the_same_from_both_sides() {
    let mut a = report(
        Role::Controlling,
        vec![
            cand(CandidateKind::Host, "100.64.1.2:4000"),
            cand(CandidateKind::Srflx, "198.18.0.1:4000"),
        ],
    );
    let mut b = report(
        Role::Controlled,
        vec![
            cand(CandidateKind::Host, "100.64.2.2:5000"),
            cand(CandidateKind::Srflx, "198.18.0.2:5000"),
        ],
    );
    a.nominated = Some(Nominated {
        source: sa("100.64.1.2:4000"),
        destination: sa("198.18.0.2:5000"),
    });
    b.nominated = Some(Nominated {
        source: sa("100.64.2.2:5000"),
        destination: sa("198.18.0.1:4000"),
    });
    a.connect_ms = Some(120.0);
    let ra = PairResult::merge(&a, Some(&b), &[]);
    let rb = PairResult::merge(&b, Some(&a), &[]);
    assert_eq!(ra, rb);
    assert_eq!(ra.outcome, Outcome::Direct);
    let s = ra.selected.unwrap();
    assert_eq!(s.a.kind, CandidateKind::Srflx);
    assert_eq!(s.b.kind, CandidateKind::Srflx);
    assert_eq!(ra.connect_seconds, Some(0.12));
    assert_eq!(ra.prediction.model, Some(PairOutcome::Direct));
    assert_eq!(ra.prediction.agrees, Some(true));
}

#[test]
fn relay_and_prflx_ends_are_named_and_failures_explained() {
    let mut a = report(
        Role::Controlling,
        vec![
            cand(CandidateKind::Host, "100.64.1.2:4000"),
            cand(CandidateKind::Srflx, "198.18.0.1:4000"),
            cand(CandidateKind::Relay, "198.18.0.10:49200"),
        ],
    );
    let mut b = report(
        Role::Controlled,
        vec![
            cand(CandidateKind::Host, "100.64.2.2:5000"),
            cand(CandidateKind::Srflx, "198.18.0.2:6000"),
        ],
    );
    b.nat = Some(NatType::SYMMETRIC);
    a.nominated = Some(Nominated {
        source: sa("198.18.0.10:49200"),
        destination: sa("198.18.0.2:6001"),
    });
    a.checks = vec![
        CheckFlow {
            local: sa("100.64.1.2:4000"),
            remote: sa("198.18.0.2:6000"),
            requests_sent: 7,
            responses_received: 0,
            requests_received: 0,
        },
        CheckFlow {
            local: sa("100.64.1.2:4000"),
            remote: sa("198.18.0.2:6002"),
            requests_sent: 0,
            responses_received: 0,
            requests_received: 3,
        },
        CheckFlow {
            local: sa("100.64.1.2:4000"),
            remote: sa("100.64.2.2:5000"),
            requests_sent: 7,
            responses_received: 0,
            requests_received: 0,
        },
    ];
    let r = PairResult::merge(&a, Some(&b), &[]);
    assert_eq!(r.outcome, Outcome::Relayed);
    let s = r.selected.unwrap();
    assert_eq!(s.a.kind, CandidateKind::Relay);
    assert_eq!(s.b.kind, CandidateKind::Prflx);
    assert_eq!(r.failed_checks.len(), 2, "{:#?}", r.failed_checks);
    assert_eq!(
        r.failed_checks[0].reason,
        FailReason::SymmetricMapping {
            seen_port: 6002,
            offered_port: 6000
        }
    );
    assert_eq!(r.failed_checks[1].reason, FailReason::PrivateAddress);
    assert_eq!(r.prediction.model, Some(PairOutcome::Relayed));
    assert_eq!(r.prediction.agrees, Some(true));
}

#[test]
fn silence_is_explained_by_the_peer_class_when_counters_cannot() {
    assert_eq!(
        from_class(Some(NatType::SYMMETRIC), CandidateKind::Srflx),
        FailReason::PeerMapsPerDestination
    );
    assert_eq!(
        from_class(Some(NatType::SYMMETRIC), CandidateKind::Relay),
        FailReason::FilteredByPeer {
            filtering: Filtering::AddressAndPortDependent
        }
    );
    assert_eq!(
        from_class(Some(NatType::UdpBlocked), CandidateKind::Host),
        FailReason::PeerUdpBlocked
    );
    assert_eq!(
        from_class(Some(NatType::OPEN), CandidateKind::Host),
        FailReason::NoAnswer
    );
    assert_eq!(from_class(None, CandidateKind::Srflx), FailReason::NoAnswer);
    for r in [
        FailReason::PeerMapsPerDestination,
        FailReason::FilteredByPeer {
            filtering: Filtering::AddressDependent,
        },
    ] {
        assert!(r.to_string().starts_with("no answer"));
    }
}

#[test]
fn a_missing_peer_report_still_gives_a_result() {
    let a = report(
        Role::Controlled,
        vec![cand(CandidateKind::Host, "100.64.1.2:4000")],
    );
    let r = PairResult::merge(&a, None, &[cand(CandidateKind::Host, "100.64.2.2:1")]);
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(!r.a.reported);
    assert!(r.b.reported);
    assert_eq!(r.a.candidates.len(), 1);
    assert_eq!(r.prediction.agrees, None);
}

#[test]
fn side_report_validation() {
    let mut r = report(Role::Controlling, vec![]);
    assert!(r.validate().is_ok());
    r.checks = vec![
        CheckFlow {
            local: sa("1.2.3.4:1"),
            remote: sa("1.2.3.4:2"),
            requests_sent: 0,
            responses_received: 0,
            requests_received: 0,
        };
        MAX_CHECKS + 1
    ];
    assert!(r.validate().is_err());
    let mut r = report(Role::Controlling, vec![]);
    r.turn = Some(TurnSummary {
        server: sa("1.2.3.4:3478"),
        relayed: None,
        error: Some("x".repeat(MAX_TEXT + 1)),
        released: Some(true),
    });
    assert!(r.validate().is_err());
}
