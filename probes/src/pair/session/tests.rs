//! Two sessions on simulated time across a simulated two-site network: each peer behind its
//! own NAT (RFC 4787 mapping and filtering), a STUN reflector in the middle, the signalling
//! carried directly. No sockets, no sleeping.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::echo::echo_packet;
use super::*;
use crate::pair::model::{Outcome, PairResult};
use crate::reflector::{Action, ServerAddrs, respond};

const STUN: &str = "198.18.0.10:3478";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Map {
    Eim,
    Apdm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Filter {
    Eif,
    Apdf,
}

#[derive(Clone, Copy, Debug)]
enum Site {
    /// A public address, nothing filtering.
    Open,
    Nat(Map, Filter),
    /// Nothing leaves.
    Blocked,
}

/// One NAT: mappings by (internal, destination-or-any), filters by mapping.
#[derive(Debug)]
struct Nat {
    map: Map,
    filter: Filter,
    public_ip: IpAddr,
    next_port: u16,
    /// (internal, key) → external port; key is the destination under APDM, None under EIM.
    out: HashMap<(SocketAddr, Option<SocketAddr>), u16>,
    /// external port → (internal, destinations sent to).
    back: HashMap<u16, (SocketAddr, HashSet<SocketAddr>)>,
}

impl Nat {
    fn new(map: Map, filter: Filter, public_ip: &str) -> Self {
        Self {
            map,
            filter,
            public_ip: public_ip.parse().unwrap(),
            next_port: 40000,
            out: HashMap::new(),
            back: HashMap::new(),
        }
    }

    fn outbound(&mut self, from: SocketAddr, to: SocketAddr) -> SocketAddr {
        let key = (from, (self.map == Map::Apdm).then_some(to));
        let port = match self.out.get(&key) {
            Some(p) => *p,
            None => {
                self.next_port += 1;
                let p = self.next_port;
                self.out.insert(key, p);
                self.back.insert(p, (from, HashSet::new()));
                p
            }
        };
        if let Some((_, dests)) = self.back.get_mut(&port) {
            dests.insert(to);
        }
        SocketAddr::new(self.public_ip, port)
    }

    fn inbound(&self, from: SocketAddr, to: SocketAddr) -> Option<SocketAddr> {
        let (internal, dests) = self.back.get(&to.port())?;
        match self.filter {
            Filter::Eif => Some(*internal),
            Filter::Apdf => dests.contains(&from).then_some(*internal),
        }
    }
}

struct Peer {
    session: PairSession,
    local: [SocketAddr; 2],
    site: Site,
    nat: Option<Nat>,
}

struct World {
    now: Instant,
    peers: [Peer; 2],
    /// (deliver at, from, to, bytes)
    wire: VecDeque<(Instant, SocketAddr, SocketAddr, Vec<u8>)>,
    latency: Duration,
    /// Percentage of datagrams lost on the wire.
    loss_percent: u64,
    rng: u64,
    sent: usize,
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn config(role: Role, n: u8) -> PairConfig {
    let mut c = PairConfig::new(role, sa(STUN));
    c.stun = vec![sa(STUN)];
    c.ufrag = format!("ufrag{n}");
    c.pwd = format!("passwordforpeer{n}xxxxxxxxx");
    c.tie_breaker = u64::from(n) * 1000 + 1;
    c.seed = [n; 16];
    c.duration = Duration::from_secs(1);
    c
}

impl World {
    fn new(a: Site, b: Site) -> Self {
        let now = t0();
        let mk = |site: Site, role: Role, n: u8| {
            let (ip, public) = match site {
                Site::Open => (format!("203.0.113.{n}"), None),
                Site::Nat(..) | Site::Blocked => {
                    (format!("100.64.{n}.2"), Some(format!("198.18.0.{n}")))
                }
            };
            let mut session = PairSession::new(config(role, n));
            let local = [sa(&format!("{ip}:5000")), sa(&format!("{ip}:5001"))];
            session.handle_local_addr(LocalSocket::Private(ICE_SOCKET), local[0]);
            let nat = match site {
                Site::Nat(m, f) => Some(Nat::new(m, f, public.as_deref().unwrap())),
                _ => None,
            };
            Peer {
                session,
                local,
                site,
                nat,
            }
        };
        Self {
            now,
            peers: [mk(a, Role::Controlling, 1), mk(b, Role::Controlled, 2)],
            wire: VecDeque::new(),
            latency: Duration::from_millis(10),
            loss_percent: 0,
            rng: 0x2545_f491_4f6c_dd1d,
            sent: 0,
        }
    }

    fn send(&mut self, from: SocketAddr, to: SocketAddr, data: Vec<u8>) {
        self.sent += 1;
        // xorshift: a fixed pseudo-random sequence, so the loss is reproducible.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        if self.loss_percent > 0 && self.rng % 100 < self.loss_percent {
            return;
        }
        self.wire
            .push_back((self.now + self.latency, from, to, data));
    }

    /// Everything the peers want to send, through their NATs onto the wire; signals across.
    fn pump(&mut self) {
        let mut buf = Vec::new();
        for i in 0..2 {
            loop {
                buf.clear();
                let now = self.now;
                let Some(t) = self.peers[i].session.poll_transmit(now, &mut buf) else {
                    break;
                };
                let LocalSocket::Private(n) = t.local else {
                    panic!()
                };
                let from = self.peers[i].local[usize::from(n)];
                let peer = &mut self.peers[i];
                let public_from = match (peer.site, peer.nat.as_mut()) {
                    (Site::Blocked, _) => continue,
                    (_, Some(nat)) => nat.outbound(from, t.destination),
                    (_, None) => from,
                };
                self.send(public_from, t.destination, buf.clone());
            }
            while let Some(s) = self.peers[i].session.poll_signal() {
                let now = self.now;
                self.peers[1 - i]
                    .session
                    .handle_signal(now, Inbound::Peer(s));
            }
        }
    }

    fn deliver(&mut self, from: SocketAddr, to: SocketAddr, data: Vec<u8>) {
        let now = self.now;
        if to == sa(STUN) {
            let server = ServerAddrs {
                primary_ip: to.ip(),
                primary_port: to.port(),
                alt_ip: None,
                alt_port: None,
            };
            let mut out = Vec::new();
            if let Action::Reply { to: back, .. } = respond(&data, from, &server, None, &mut out) {
                self.send(to, back, out);
            }
            return;
        }
        for peer in &mut self.peers {
            let internal = match (peer.site, peer.nat.as_ref()) {
                (Site::Blocked, _) => None,
                (_, Some(nat)) if to.ip() == nat.public_ip => nat.inbound(from, to),
                (_, None) if peer.local.contains(&to) => Some(to),
                _ => None,
            };
            if let Some(internal) = internal {
                let n = peer.local.iter().position(|l| *l == internal).unwrap() as u8;
                let _ = peer.session.handle_input_on(
                    now,
                    Received {
                        socket: LocalSocket::Private(n),
                        from,
                        data: &data,
                    },
                );
            }
        }
    }

    fn step(&mut self) {
        self.pump();
        let next_wire = self.wire.front().map(|w| w.0);
        let next_timer = self
            .peers
            .iter()
            .filter_map(|p| p.session.poll_timeout())
            .min();
        let Some(next) = [next_wire, next_timer].into_iter().flatten().min() else {
            return;
        };
        self.now = self.now.max(next);
        while self.wire.front().is_some_and(|w| w.0 <= self.now) {
            let (_, from, to, data) = self.wire.pop_front().unwrap();
            self.deliver(from, to, data);
        }
        let now = self.now;
        for p in &mut self.peers {
            if p.session.poll_timeout().is_some_and(|t| t <= now) {
                p.session.handle_timeout(now);
            }
        }
    }

    fn run(&mut self, limit: Duration) -> (SessionOutput, SessionOutput) {
        let start = self.now;
        while !self.peers.iter().all(|p| p.session.is_done()) {
            assert!(self.now - start < limit, "did not finish within {limit:?}");
            self.step();
        }
        (
            self.peers[0].session.take_output().unwrap(),
            self.peers[1].session.take_output().unwrap(),
        )
    }
}

fn result(a: &SessionOutput, b: &SessionOutput) -> PairResult {
    let ra = PairResult::merge(&a.local, a.peer.as_ref(), &a.peer_offer);
    let rb = PairResult::merge(&b.local, b.peer.as_ref(), &b.peer_offer);
    assert_eq!(ra, rb, "both sides print the same result");
    ra
}

#[test]
fn two_open_hosts_connect_directly_and_measure() {
    let mut w = World::new(Site::Open, Site::Open);
    let (a, b) = w.run(Duration::from_secs(30));
    assert_eq!(a.abort, None);
    let r = result(&a, &b);
    assert_eq!(r.outcome, Outcome::Direct);
    let s = r.selected.unwrap();
    assert_eq!(s.a.kind, CandidateKind::Host);
    assert_eq!(s.b.kind, CandidateKind::Host);
    let rtt = r.a.rtt.as_ref().unwrap();
    assert!(rtt.sent > 10, "{rtt:?}");
    assert_eq!(rtt.received, rtt.sent, "{rtt:?}");
    // 10 ms each way.
    assert!((rtt.p50_ms.unwrap() - 20.0).abs() < 1.0, "{rtt:?}");
    assert!(r.b.rtt.as_ref().unwrap().received > 10);
    assert!(r.connect_seconds.unwrap() < 1.0);
    assert!(r.failed_checks.is_empty());
}

#[test]
fn cone_nats_punch_through_with_server_reflexive_candidates() {
    let nat = Site::Nat(Map::Eim, Filter::Apdf);
    let mut w = World::new(nat, nat);
    let (a, b) = w.run(Duration::from_secs(30));
    let r = result(&a, &b);
    assert_eq!(r.outcome, Outcome::Direct, "{r:#?}");
    let s = r.selected.unwrap();
    assert_eq!(s.a.kind, CandidateKind::Srflx, "{r:#?}");
    assert_eq!(s.b.kind, CandidateKind::Srflx, "{r:#?}");
}

#[test]
fn symmetric_against_full_cone_is_direct_over_a_peer_reflexive_address() {
    let mut w = World::new(
        Site::Nat(Map::Apdm, Filter::Apdf),
        Site::Nat(Map::Eim, Filter::Eif),
    );
    let (a, b) = w.run(Duration::from_secs(30));
    let r = result(&a, &b);
    assert_eq!(r.outcome, Outcome::Direct, "{r:#?}");
    let s = r.selected.unwrap();
    assert_eq!(s.a.kind, CandidateKind::Prflx, "{r:#?}");
}

#[test]
fn two_symmetric_nats_fail_without_a_relay_and_say_why() {
    let sym = Site::Nat(Map::Apdm, Filter::Apdf);
    let mut w = World::new(sym, sym);
    let (a, b) = w.run(Duration::from_secs(60));
    let r = result(&a, &b);
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(r.selected.is_none());
    assert!(!r.failed_checks.is_empty());
    // Without the NAT classes (the command adds them) the counters only know silence.
    use crate::pair::model::FailReason;
    assert!(
        r.failed_checks
            .iter()
            .all(|f| matches!(f.reason, FailReason::NoAnswer | FailReason::PrivateAddress)),
        "{:#?}",
        r.failed_checks
    );
    assert!(
        r.failed_checks
            .iter()
            .any(|f| f.to.kind == CandidateKind::Srflx && f.reason == FailReason::NoAnswer)
    );
    // Gave up well before the connect timeout: every pair failed.
    assert!(a.local.nominated.is_none());
}

#[test]
fn blocked_udp_fails_and_both_still_report() {
    let mut w = World::new(Site::Blocked, Site::Open);
    let (a, b) = w.run(Duration::from_secs(60));
    let r = result(&a, &b);
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(r.a.reported && r.b.reported);
}

#[test]
fn checks_survive_loss() {
    let nat = Site::Nat(Map::Eim, Filter::Apdf);
    let mut w = World::new(nat, nat);
    w.loss_percent = 20;
    let (a, b) = w.run(Duration::from_secs(60));
    let r = result(&a, &b);
    assert_eq!(r.outcome, Outcome::Direct, "{r:#?}");
    let rtt = r.a.rtt.unwrap();
    // 20 % each way: about 36 % of round trips.
    assert!(rtt.loss > 0.15 && rtt.loss < 0.6, "{rtt:?}");
}

#[test]
fn a_peer_that_never_offers_ends_the_run_in_bounded_time() {
    let now = t0();
    let mut cfg = config(Role::Controlling, 1);
    cfg.stun.clear();
    let mut s = PairSession::new(cfg);
    s.handle_local_addr(LocalSocket::Private(ICE_SOCKET), sa("203.0.113.1:5000"));
    let mut t = now;
    let mut buf = Vec::new();
    let mut offers = 0;
    while !s.is_done() {
        while s.poll_transmit(t, &mut buf).is_some() {}
        while let Some(m) = s.poll_signal() {
            if matches!(m, PeerMsg::Offer(_)) {
                offers += 1;
            }
        }
        let next = s.poll_timeout().expect("a timer while running");
        assert!(next - now < Duration::from_secs(60));
        t = next.max(t + Duration::from_millis(1));
        s.handle_timeout(t);
    }
    assert_eq!(offers, 1);
    let out = s.take_output().unwrap();
    assert_eq!(out.abort, Some(Abort::NoOffer));
    assert!(t - now <= Duration::from_secs(16), "{:?}", t - now);
}

#[test]
fn cancellation_reports_interrupted_at_once() {
    let mut w = World::new(Site::Open, Site::Open);
    for _ in 0..5 {
        w.step();
    }
    let now = w.now;
    let cleanup = w.peers[0].session.cancel(now);
    assert!(!cleanup, "nothing to release without TURN");
    assert!(w.peers[0].session.is_done());
    let out = w.peers[0].session.take_output().unwrap();
    assert!(out.local.interrupted);
    assert_eq!(out.abort, Some(Abort::Interrupted));
    // The interrupted report went to the peer.
    let msg = w.peers[0].session.poll_signal();
    assert!(msg.is_some());
}

/// The peer interrupted mid-measurement sends its (interrupted) report and leaves: this side
/// stops early too, and says the peer left, not that the run went to its end.
#[test]
fn a_peer_interrupted_while_measuring_ends_this_side_as_peer_left() {
    let mut w = World::new(Site::Open, Site::Open);
    let start = w.now;
    while w.peers[1].session.phase != Phase::Measuring {
        assert!(w.now - start < Duration::from_secs(30), "never measured");
        w.step();
    }
    let now = w.now;
    w.peers[0].session.cancel(now);
    w.pump();
    w.peers[1].session.handle_signal(now, Inbound::PeerLeft);
    while !w.peers[1].session.is_done() {
        assert!(w.now - start < Duration::from_secs(60), "did not end");
        w.step();
    }
    let b = w.peers[1].session.take_output().unwrap();
    assert_eq!(b.abort, Some(Abort::PeerLeft));
    assert!(!b.local.interrupted);
    assert!(b.peer.as_ref().is_some_and(|p| p.interrupted), "{b:?}");
}

/// A peer that finishes its measurement first, reports and leaves is a normal end.
#[test]
fn a_peer_that_reports_and_leaves_at_the_end_is_no_abort() {
    let mut w = World::new(Site::Open, Site::Open);
    let (a, b) = w.run(Duration::from_secs(30));
    assert_eq!((a.abort, b.abort), (None, None));
    let mut w = World::new(Site::Open, Site::Open);
    let start = w.now;
    while w.peers[1].session.phase != Phase::Measuring {
        assert!(w.now - start < Duration::from_secs(30), "never measured");
        w.step();
    }
    let mut report = w.peers[1].session.local_report();
    report.interrupted = false;
    let now = w.now;
    w.peers[1]
        .session
        .handle_signal(now, Inbound::Peer(PeerMsg::Report(Box::new(report))));
    w.peers[1].session.handle_signal(now, Inbound::PeerLeft);
    while !w.peers[1].session.is_done() {
        assert!(w.now - start < Duration::from_secs(60), "did not end");
        w.step();
    }
    assert_eq!(w.peers[1].session.take_output().unwrap().abort, None);
}

#[test]
fn hostile_datagrams_are_ignored() {
    let mut w = World::new(Site::Open, Site::Open);
    w.step();
    let now = w.now;
    let s = &mut w.peers[0].session;
    let stranger = sa("192.0.2.99:4444");
    let ice = LocalSocket::Private(ICE_SOCKET);
    let junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0; 3],
        vec![0xff; 1500],
        echo_packet(ECHO_REQUEST, 1, 1).to_vec(),
        echo_packet(ECHO_REPLY, 1, 1).to_vec(),
        // A STUN header with a bad length.
        vec![
            0, 1, 0, 4, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
        ],
    ];
    let mut refused = |socket: LocalSocket, data: &[u8]| {
        let from = stranger;
        s.handle_input_on(now, Received { socket, from, data })
            .is_err()
    };
    for j in &junk {
        assert!(refused(ice, j));
        assert!(refused(LocalSocket::Private(TURN_SOCKET), j));
    }
    // A Binding request without credentials: the agent refuses it.
    let mut req = Vec::new();
    crate::stun::encode::BindingRequest {
        transaction_id: TransactionId([7; 12]),
        software: None,
        change_request: None,
        response_port: None,
        fingerprint: true,
    }
    .encode(&mut req);
    assert!(refused(ice, &req));
    // The run still completes.
    let (a, b) = w.run(Duration::from_secs(30));
    assert_eq!(result(&a, &b).outcome, Outcome::Direct);
}

#[test]
fn bad_offers_are_ignored() {
    let mut s = PairSession::new(config(Role::Controlled, 2));
    let now = t0();
    s.handle_local_addr(LocalSocket::Private(ICE_SOCKET), sa("203.0.113.2:5000"));
    s.handle_signal(
        now,
        Inbound::Peer(PeerMsg::Offer(Offer {
            ufrag: "x".into(),
            pwd: "y".into(),
            candidates: vec![],
        })),
    );
    assert!(s.remote_offer.is_none());
    s.handle_signal(now, Inbound::PeerLeft);
    assert!(s.is_done());
    assert_eq!(s.take_output().unwrap().abort, Some(Abort::PeerLeft));
}

/// A start time for simulated clocks (only tests read the real clock, once).
#[allow(clippy::disallowed_methods)]
fn t0() -> Instant {
    Instant::now()
}
