//! A scripted dual-stack TURN server and the drive loop the audit's unit tests share.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::candidates::Category;
use super::candidates::candidates;
use super::probe::{AuditConfig, AuditProbe};
use super::report::{AuditReport, PeerResult};
use crate::machine::{LocalSocket, Probe};
use crate::stun::TransactionIdSource;
use crate::stun::view::StunView;
use crate::stun::{Class, MessageType, MessageWriter, Method, attr};
use crate::turn::session::SessionConfig;
use crate::turn::testkit::{FakeServer, creds, server, t0};
use crate::{Family, Transport};

pub(crate) const V4: LocalSocket = LocalSocket::Private(0);
pub(crate) const V6: LocalSocket = LocalSocket::Private(1);

pub(crate) fn config(with_creds: bool) -> AuditConfig {
    let mut session = SessionConfig::new(server(), Transport::Udp, V4);
    if with_creds {
        session.credentials = Some(creds());
    }
    AuditConfig::new(session)
}

pub(crate) fn v6_relayed() -> SocketAddr {
    "[2001:db8::1]:50000".parse().unwrap()
}

/// Drive `probe` against `answer` (told which local socket the request left from) on
/// simulated time until done, calling `cancel` on the probe when `cancel_when` says so
/// for a request just sent; returns every request sent, with its socket.
pub(crate) fn drive(
    probe: &mut AuditProbe,
    mut answer: impl FnMut(LocalSocket, &[u8]) -> Option<Vec<u8>>,
    mut cancel_when: impl FnMut(LocalSocket, &StunView<'_>) -> bool,
) -> Vec<(LocalSocket, Vec<u8>)> {
    let mut now = t0();
    let mut sent = Vec::new();
    for _ in 0..1000 {
        if probe.is_done() {
            break;
        }
        let mut buf = Vec::new();
        if let Some(t) = probe.poll_transmit(now, &mut buf) {
            assert_eq!(t.destination, server());
            sent.push((t.local, buf.clone()));
            if cancel_when(t.local, &StunView::parse(&buf).unwrap()) {
                assert!(probe.cancel(now) || probe.is_done());
            }
            if let Some(reply) = answer(t.local, &buf) {
                let _ = probe.handle_input(now, server(), &reply);
            }
            continue;
        }
        match probe.poll_timeout() {
            Some(t) => {
                now = t.max(now);
                probe.handle_timeout(now);
            }
            None => break,
        }
        now += Duration::from_millis(1);
    }
    assert!(probe.is_done(), "probe did not finish");
    sent
}

pub(crate) fn never(_: LocalSocket, _: &StunView<'_>) -> bool {
    false
}

/// Cancel once `n` requests have been sent.
pub(crate) fn after(n: usize) -> impl FnMut(LocalSocket, &StunView<'_>) -> bool {
    let mut count = 0;
    move |_, _| {
        count += 1;
        count == n
    }
}

/// What the fake server does with an Allocate that asks for IPv6.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ipv6Relay {
    /// An IPv6 relayed address.
    Grant,
    /// This error code.
    Refuse(u16),
}

/// A scripted dual-stack TURN server: one [`FakeServer`] per client 5-tuple (local socket),
/// 443 for a peer of the other family than the allocation (RFC 8656 §19), 403 for peers
/// `deny` says no to, and an IPv6 allocation as `ipv6` says.
pub(crate) struct Lab {
    pub(crate) v4: FakeServer,
    pub(crate) v6: FakeServer,
    pub(crate) deny: Box<dyn Fn(IpAddr) -> bool>,
    /// (socket, Allocate carried REQUESTED-ADDRESS-FAMILY IPv6) per Allocate.
    pub(crate) allocates: Vec<(LocalSocket, bool)>,
}

impl Lab {
    pub(crate) fn new(deny: impl Fn(IpAddr) -> bool + 'static, ipv6: Ipv6Relay) -> Self {
        let mut v6 = FakeServer::new();
        v6.relayed = v6_relayed();
        if let Ipv6Relay::Refuse(code) = ipv6 {
            v6.fail_allocate = Some(code);
        }
        Self {
            v4: FakeServer::new(),
            v6,
            deny: Box::new(deny),
            allocates: Vec::new(),
        }
    }

    pub(crate) fn answer(&mut self, local: LocalSocket, req: &[u8]) -> Option<Vec<u8>> {
        let v = StunView::parse(req).unwrap();
        let m = v.message_type().method;
        let family = v
            .attributes()
            .find(|(k, _)| *k == attr::REQUESTED_ADDRESS_FAMILY)
            .map(|(_, val)| val.to_vec());
        let fake = match local {
            V4 => &mut self.v4,
            V6 => &mut self.v6,
            other => panic!("request from an unexpected socket {other:?}"),
        };
        if m == Method::ALLOCATE {
            self.allocates
                .push((local, family.as_deref() == Some(&[2, 0, 0, 0][..])));
        }
        if (m == Method::CREATE_PERMISSION || m == Method::CHANNEL_BIND)
            && v.has_message_integrity()
        {
            let raw = v
                .attributes()
                .find(|(k, _)| *k == attr::XOR_PEER_ADDRESS)
                .unwrap()
                .1;
            let peer = attr::decode_xor_address(raw, &v.transaction_id()).unwrap();
            let refusal = if peer.is_ipv6() != fake.relayed.is_ipv6() {
                Some((443, "Peer Address Family Mismatch"))
            } else if (self.deny)(peer.ip()) {
                Some((403, "Forbidden IP"))
            } else {
                None
            };
            if let Some((code, reason)) = refusal {
                let mut out = Vec::new();
                let mut w = MessageWriter::new(
                    &mut out,
                    MessageType::new(Class::ErrorResponse, m),
                    &v.transaction_id(),
                );
                w.error_code(code, reason);
                w.fingerprint();
                return Some(out);
            }
        }
        fake.answer(req)
    }
}

/// coturn 4.6.1's default policy: loopback refused, but not in its IPv4-mapped form.
pub(crate) fn coturn_default(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => v.is_loopback() || v.is_unspecified(),
        IpAddr::V6(v) => v.is_loopback() || v.is_unspecified(),
    }
}

pub(crate) fn methods(sent: &[(LocalSocket, Vec<u8>)], on: LocalSocket) -> Vec<Method> {
    sent.iter()
        .filter(|(l, _)| *l == on)
        .map(|(_, b)| StunView::parse(b).unwrap().message_type().method)
        .collect()
}

pub(crate) fn all_methods(sent: &[(LocalSocket, Vec<u8>)]) -> Vec<Method> {
    sent.iter()
        .map(|(_, b)| StunView::parse(b).unwrap().message_type().method)
        .collect()
}

pub(crate) fn count(m: &[Method], which: Method) -> usize {
    m.iter().filter(|x| **x == which).count()
}

pub(crate) fn ipv6_candidates() -> usize {
    candidates().iter().filter(|c| c.peer.is_ipv6()).count()
}

pub(crate) fn result<'a>(list: &'a [PeerResult], peer: &str, family: Family) -> &'a PeerResult {
    let peer: IpAddr = peer.parse().unwrap();
    list.iter()
        .find(|p| p.candidate.peer.ip() == peer && p.relay_family == family)
        .unwrap_or_else(|| panic!("{peer} toward {family:?} missing"))
}

/// An audit over TCP (one connection, no private socket) with credentials: of the IPv6
/// allocation alone when `ipv6_only`, its transaction ids from `seed`.
fn audit_over_tcp(ipv6_only: bool, seed: u8) -> AuditProbe {
    let mut session = SessionConfig::new(server(), Transport::Tcp, LocalSocket::Default);
    session.credentials = Some(creds());
    let config = AuditConfig { session, ipv6_only };
    AuditProbe::new(config, TransactionIdSource::new([seed; 16]))
}

/// The IPv6 allocation alone, over TCP (one connection, no private socket), with credentials.
pub(crate) fn ipv6_only_over_tcp() -> AuditProbe {
    audit_over_tcp(true, 19)
}

/// The report of an audit over TCP with credentials (transaction ids from `seed`) that one
/// connection to a [`coturn_default`] lab's IPv4 server made, and the lab, for a second.
pub(crate) fn first_connection_over_tcp(seed: u8) -> (AuditReport, Lab) {
    let mut p = audit_over_tcp(false, seed);
    let mut lab = Lab::new(coturn_default, Ipv6Relay::Grant);
    drive(&mut p, |_, b| lab.answer(V4, b), never);
    (p.take_output().unwrap(), lab)
}

/// `lab` answering a probe that has one connection: everything must leave on it, and it
/// plays the lab's IPv6 5-tuple.
pub(crate) fn on_one_connection(
    lab: &mut Lab,
) -> impl FnMut(LocalSocket, &[u8]) -> Option<Vec<u8>> {
    move |l, b| {
        assert_eq!(l, LocalSocket::Default);
        lab.answer(V6, b)
    }
}

/// The requests of a report asked toward its IPv6 allocation (permissions, then channel binds).
pub(crate) fn ipv6_requests(r: &AuditReport) -> Vec<&PeerResult> {
    r.permissions
        .iter()
        .chain(&r.channel_binds)
        .filter(|p| p.relay_family == Family::Ipv6)
        .collect()
}

/// The report's own-relay candidates, with the allocation each was asked toward.
pub(crate) fn own_relays(r: &AuditReport) -> Vec<(SocketAddr, Family)> {
    r.permissions
        .iter()
        .filter(|p| p.candidate.category == Category::OwnRelay)
        .map(|p| (p.candidate.peer, p.relay_family))
        .collect()
}
