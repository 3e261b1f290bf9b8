//! Unit tests of the audit over TCP/TLS: the full audit on one connection, and the
//! [`AuditConfig::ipv6_only`] probe a caller runs on a second one.

use super::candidates::IPV6_CHANNEL_CANDIDATES;
use super::lab::*;
use super::probe::{AuditConfig, AuditProbe};
use super::report::{PeerOutcome, Unauthenticated};
use crate::finding::Severity;
use crate::machine::{LocalSocket, Probe};
use crate::stun::{Method, TransactionIdSource};
use crate::turn::session::{Release, SessionConfig};
use crate::turn::testkit::{FakeServer, creds, server, t0};
use crate::{Family, Transport};

#[test]
fn over_tcp_the_ipv6_candidates_are_untestable_and_no_second_socket_is_asked_for() {
    let mut session = SessionConfig::new(server(), Transport::Tcp, LocalSocket::Default);
    session.credentials = Some(creds());
    let mut p = AuditProbe::new(
        AuditConfig::new(session),
        TransactionIdSource::new([17; 16]),
    );
    assert_eq!(p.private_sockets(), None);
    let mut fake = FakeServer::new();
    let sent = drive(&mut p, |_, b| fake.answer(b), never);
    let r = p.take_output().unwrap();
    assert!(sent.iter().all(|(l, _)| *l == LocalSocket::Default));
    assert_eq!(r.allocate_ipv6, None);
    assert_eq!(r.release, Release::Released);
    assert!(matches!(
        &result(&r.permissions, "::ffff:127.0.0.1", Family::Ipv6).outcome,
        PeerOutcome::Untestable { reason } if reason.contains("second connection")
    ));
}

#[test]
fn ipv6_only_over_tcp_allocates_ipv6_asks_the_ipv6_candidates_and_releases() {
    let mut p = ipv6_only_over_tcp();
    assert_eq!(p.private_sockets(), None);
    let mut lab = Lab::new(coturn_default, Ipv6Relay::Grant);
    let sent = drive(&mut p, on_one_connection(&mut lab), never);
    let r = p.take_output().unwrap();
    let m = all_methods(&sent);
    // No Binding, no unauthenticated or default-family Allocate: the 401 round and the
    // signed Allocate both ask for IPv6 (RFC 8656 §18.6).
    assert_eq!(m[..2], [Method::ALLOCATE, Method::ALLOCATE]);
    assert!(!m.contains(&Method::BINDING));
    assert_eq!(lab.allocates, vec![(V6, true), (V6, true)]);
    assert_eq!(count(&m, Method::CREATE_PERMISSION), ipv6_candidates() + 1);
    assert_eq!(
        count(&m, Method::CHANNEL_BIND),
        IPV6_CHANNEL_CANDIDATES.len()
    );
    assert_eq!(m.last(), Some(&Method::REFRESH));
    assert!(!m.contains(&Method::SEND));
    assert_eq!(r.unauthenticated, Unauthenticated::NotTried);
    assert!(!r.binding_answered);
    assert_eq!((r.allocate.clone(), r.relayed), (None, None));
    assert_eq!(r.release, Release::NotNeeded);
    assert_eq!(r.allocate_ipv6, Some(PeerOutcome::Granted));
    assert_eq!(r.relayed_ipv6, Some(v6_relayed()));
    assert_eq!(r.release_ipv6, Release::Released);
    assert!(r.release_is_clean());
    assert!(!lab.v6.allocated);
    assert_eq!(
        result(&r.permissions, "::ffff:127.0.0.1", Family::Ipv6).outcome,
        PeerOutcome::Granted
    );
    assert_eq!(
        result(&r.channel_binds, "::ffff:127.0.0.1", Family::Ipv6).outcome,
        PeerOutcome::Granted
    );
    assert!(matches!(
        result(&r.permissions, "::1", Family::Ipv6).outcome,
        PeerOutcome::Refused { code: 403, .. }
    ));
    assert!(matches!(
        result(&r.permissions, &v6_relayed().ip().to_string(), Family::Ipv6).outcome,
        PeerOutcome::Granted
    ));
    // The first allocation's part is left alone.
    assert!(
        r.permissions
            .iter()
            .chain(&r.channel_binds)
            .filter(|p| p.relay_family == Family::Ipv4)
            .all(|p| p.outcome == PeerOutcome::NotTried)
    );
    assert_eq!(r.worst(), Some(Severity::Critical));
}

#[test]
fn ipv6_only_over_tcp_a_440_leaves_the_candidates_untestable() {
    let mut p = ipv6_only_over_tcp();
    let mut lab = Lab::new(coturn_default, Ipv6Relay::Refuse(440));
    let sent = drive(&mut p, on_one_connection(&mut lab), never);
    let r = p.take_output().unwrap();
    assert_eq!(all_methods(&sent), vec![Method::ALLOCATE, Method::ALLOCATE]);
    assert!(matches!(
        r.allocate_ipv6,
        Some(PeerOutcome::Refused { code: 440, .. })
    ));
    assert_eq!(r.release_ipv6, Release::NotNeeded);
    let v6 = ipv6_requests(&r);
    assert_eq!(v6.len(), ipv6_candidates() + IPV6_CHANNEL_CANDIDATES.len());
    for p in v6 {
        assert!(
            matches!(&p.outcome, PeerOutcome::Untestable { reason }
                if reason.contains("server has no IPv6 relay address")),
            "{p:?}"
        );
    }
    assert!(!r.any_granted());
}

#[test]
fn ipv6_only_over_tcp_cancel_among_the_permissions_still_releases() {
    let mut p = ipv6_only_over_tcp();
    let mut lab = Lab::new(coturn_default, Ipv6Relay::Grant);
    let mut perms = 0;
    let sent = drive(&mut p, on_one_connection(&mut lab), |_, v| {
        if v.message_type().method == Method::CREATE_PERMISSION {
            perms += 1;
        }
        perms == 3
    });
    let r = p.take_output().unwrap();
    assert!(r.cancelled);
    let m = all_methods(&sent);
    assert_eq!(count(&m, Method::CREATE_PERMISSION), 3);
    assert_eq!(count(&m, Method::CHANNEL_BIND), 0);
    assert_eq!(m.last(), Some(&Method::REFRESH));
    assert_eq!(r.release_ipv6, Release::Released);
    assert!(!lab.v6.allocated, "the IPv6 allocation was left behind");
}

/// Over a stream an Allocate in flight is not waited for: the runner closes the connection,
/// and the server deletes whatever it allocated on it (`waits_for_allocate_on_cancel`).
#[test]
fn ipv6_only_over_tcp_cancel_during_the_allocate_leaves_it_to_the_closed_connection() {
    let mut p = ipv6_only_over_tcp();
    let mut lab = Lab::new(coturn_default, Ipv6Relay::Grant);
    let sent = drive(&mut p, on_one_connection(&mut lab), |_, v| {
        v.message_type().method == Method::ALLOCATE && v.has_message_integrity()
    });
    let r = p.take_output().unwrap();
    assert!(r.cancelled);
    assert_eq!(all_methods(&sent), vec![Method::ALLOCATE, Method::ALLOCATE]);
    assert_eq!(r.release_ipv6, Release::NotNeeded);
    assert!(r.findings.iter().all(|f| f.category.is_none()), "{r:?}");
}

#[test]
fn ipv6_only_without_credentials_sends_nothing() {
    let session = SessionConfig::new(server(), Transport::Tcp, LocalSocket::Default);
    let config = AuditConfig {
        session,
        ipv6_only: true,
    };
    let mut p = AuditProbe::new(config, TransactionIdSource::new([20; 16]));
    assert!(p.is_done());
    assert_eq!(p.poll_transmit(t0(), &mut Vec::new()), None);
    let r = p.take_output().unwrap();
    assert_eq!(r.allocate_ipv6, None);
    assert!(r.release_is_clean());
}
