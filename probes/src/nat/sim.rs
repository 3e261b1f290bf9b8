//! Test-only network: a client, an optional NAT that maps and filters per RFC 4787, and an RFC
//! 5780 server on two IPs × two ports, stepped on simulated time. Lets the probes be checked
//! against every NAT mode without sockets.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::machine::{LocalSocket, Probe, Received};
use crate::nat::family::TcpRtt;
use crate::pair::session::Signalled;
use crate::stun::attr::{self, ChangeRequest};
use crate::stun::{
    Class, MessageType, MessageWriter, Method, StunView, TransactionId, TransactionIdSource,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Map {
    Eim,
    Adm,
    Apdm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Filter {
    Eif,
    Adf,
    Apdf,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct NatSpec {
    pub(crate) map: Map,
    pub(crate) filter: Filter,
    pub(crate) preserve_ports: bool,
    pub(crate) hairpin: bool,
    /// Rewrite MAPPED-ADDRESS in replies (an ALG that only knows the plain form).
    pub(crate) alg: bool,
    /// How long an idle mapping lives (RFC 4787 §4.3); `None`: forever.
    pub(crate) lifetime: Option<Duration>,
    /// Whether inbound packets refresh a mapping (RFC 4787 §4.3 REQ-6 leaves it open; Linux
    /// conntrack does).
    pub(crate) inbound_refresh: bool,
}

impl NatSpec {
    pub(crate) fn new(map: Map, filter: Filter) -> Self {
        Self {
            map,
            filter,
            preserve_ports: true,
            hairpin: false,
            alg: false,
            lifetime: None,
            inbound_refresh: true,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Net {
    Nat(NatSpec),
    NoNat,
    UdpBlocked,
    /// Linux-style MASQUERADE plus an egress filter that lets UDP out only to this port.
    UdpOnlyTo(u16),
}

/// How the server misbehaves.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ServerQuirks {
    /// Advertise OTHER-ADDRESS on the primary IP.
    pub(crate) other_same_ip: bool,
    /// Ignore CHANGE-REQUEST: always answer from the address the request reached.
    pub(crate) ignore_change: bool,
    /// RESPONSE-ORIGIN always claims the primary address.
    pub(crate) wrong_origin: bool,
    /// No OTHER-ADDRESS at all (a plain RFC 8489 server).
    pub(crate) no_other: bool,
    /// Answer to the request's source even when it carries RESPONSE-PORT.
    pub(crate) ignore_response_port: bool,
    /// Reject RESPONSE-PORT with 420, as an RFC 8489 server without RFC 5780 must.
    pub(crate) reject_response_port: bool,
    /// Lose the first datagram sent from the shared socket (the lifetime test must not take
    /// one lost trigger for an expired mapping).
    pub(crate) drop_first_from_default: bool,
}

pub(crate) const CLIENT_PRIVATE: &str = "10.0.0.2";
pub(crate) const CLIENT_PUBLIC: &str = "203.0.113.7";
pub(crate) const NAT_PUBLIC: &str = "198.51.100.1";
pub(crate) const PRIMARY: &str = "192.0.2.10:3478";
pub(crate) const OTHER: &str = "192.0.2.11:3479";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

struct Binding {
    internal: SocketAddr,
    key: Option<SocketAddr>,
    external_port: u16,
    contacted: Vec<SocketAddr>,
    last_active: Instant,
}

pub(crate) struct World {
    net: Net,
    quirks: ServerQuirks,
    client_ip: IpAddr,
    nat_ip: IpAddr,
    bindings: Vec<Binding>,
    next_port: u16,
    /// (arrival time, source, internal destination, bytes).
    queue: Vec<(Instant, SocketAddr, SocketAddr, Vec<u8>)>,
    /// Transaction ids the probe declared on its transmits: like the engine, the world hands a
    /// datagram that reaches the shared socket to the probe only if it carries one of them
    /// (private sockets deliver everything).
    declared: HashSet<TransactionId>,
    dropped_once: bool,
    pub(crate) sent: usize,
    /// Every datagram the probe sent: when, from which socket, to where.
    pub(crate) log: Vec<(Instant, LocalSocket, SocketAddr)>,
    /// Round-trip time of every path.
    rtt: Duration,
    /// Random loss: percent of datagrams dropped in each direction, and the generator.
    loss: Option<(u64, u64)>,
}

impl World {
    pub(crate) fn new(net: Net, quirks: ServerQuirks) -> Self {
        let client = match net {
            Net::NoNat => CLIENT_PUBLIC,
            _ => CLIENT_PRIVATE,
        };
        Self {
            net,
            quirks,
            client_ip: client.parse().unwrap(),
            nat_ip: NAT_PUBLIC.parse().unwrap(),
            bindings: Vec::new(),
            next_port: 61000,
            queue: Vec::new(),
            declared: HashSet::new(),
            dropped_once: false,
            sent: 0,
            log: Vec::new(),
            rtt: Duration::from_millis(20),
            loss: None,
        }
    }

    /// Every path with this round-trip time.
    pub(crate) fn with_rtt(mut self, rtt: Duration) -> Self {
        self.rtt = rtt;
        self
    }

    /// Drop `percent` % of the datagrams in each direction at random (seeded, so a run is
    /// reproducible), like the lab's `numgen random mod 100 < N drop`.
    pub(crate) fn with_loss(mut self, percent: u64, seed: u64) -> Self {
        self.loss = Some((percent, seed | 1));
        self
    }

    /// Whether the next datagram is lost (xorshift64*).
    pub(crate) fn lose(&mut self) -> bool {
        let Some((percent, state)) = self.loss.as_mut() else {
            return false;
        };
        let mut x = *state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *state = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) % 100 < *percent
    }

    pub(crate) fn client_ip(&self) -> IpAddr {
        self.client_ip
    }

    /// Local port of a private socket.
    pub(crate) fn local(&self, s: LocalSocket) -> SocketAddr {
        let port = match s {
            LocalSocket::Default => 40000,
            LocalSocket::Private(n) => 40001 + u16::from(n),
        };
        SocketAddr::new(self.client_ip, port)
    }

    fn spec(&self) -> Option<NatSpec> {
        match self.net {
            Net::Nat(s) => Some(s),
            Net::UdpOnlyTo(_) => Some(NatSpec::new(Map::Eim, Filter::Apdf)),
            Net::NoNat | Net::UdpBlocked => None,
        }
    }

    /// Forget mappings idle for longer than the NAT's lifetime (RFC 4787 §4.3).
    fn expire(&mut self, now: Instant) {
        if let Some(life) = self.spec().and_then(|s| s.lifetime) {
            self.bindings.retain(|b| now < b.last_active + life);
        }
    }

    /// Outbound translation, RFC 4787 §4.1.
    fn outbound(&mut self, now: Instant, src: SocketAddr, dst: SocketAddr) -> SocketAddr {
        let Some(spec) = self.spec() else { return src };
        self.expire(now);
        let key = match spec.map {
            Map::Eim => None,
            Map::Adm => Some(SocketAddr::new(dst.ip(), 0)),
            Map::Apdm => Some(dst),
        };
        let idx = match self
            .bindings
            .iter()
            .position(|b| b.internal == src && b.key == key)
        {
            Some(i) => i,
            None => {
                let taken = |p: u16| self.bindings.iter().any(|b| b.external_port == p);
                let port = if spec.preserve_ports && !taken(src.port()) {
                    src.port()
                } else {
                    let mut p = self.next_port;
                    while taken(p) {
                        p += 7;
                    }
                    self.next_port = p + 7;
                    p
                };
                self.bindings.push(Binding {
                    internal: src,
                    key,
                    external_port: port,
                    contacted: Vec::new(),
                    last_active: now,
                });
                self.bindings.len() - 1
            }
        };
        let b = &mut self.bindings[idx];
        b.last_active = now;
        if !b.contacted.contains(&dst) {
            b.contacted.push(dst);
        }
        SocketAddr::new(self.nat_ip, b.external_port)
    }

    /// Inbound filtering, RFC 4787 §5: the internal address the packet is delivered to.
    fn inbound(&mut self, now: Instant, src: SocketAddr, dst: SocketAddr) -> Option<SocketAddr> {
        let Some(spec) = self.spec() else {
            return (dst.ip() == self.client_ip).then_some(dst);
        };
        if dst.ip() != self.nat_ip {
            return None;
        }
        self.expire(now);
        let b = self
            .bindings
            .iter_mut()
            .find(|b| b.external_port == dst.port())?;
        let ok = match spec.filter {
            Filter::Eif => true,
            Filter::Adf => b.contacted.iter().any(|c| c.ip() == src.ip()),
            Filter::Apdf => b.contacted.contains(&src),
        };
        if ok && spec.inbound_refresh {
            b.last_active = now;
        }
        ok.then_some(b.internal)
    }

    fn server_addrs(&self) -> [SocketAddr; 4] {
        let (p, o) = (sa(PRIMARY), sa(OTHER));
        [
            p,
            SocketAddr::new(p.ip(), o.port()),
            SocketAddr::new(o.ip(), p.port()),
            o,
        ]
    }

    /// The RFC 5780 server: answers a Binding request that reached `at` from `from`; returns
    /// the reply's source, destination and bytes.
    fn serve(
        &self,
        at: SocketAddr,
        from: SocketAddr,
        req: &[u8],
    ) -> Option<(SocketAddr, SocketAddr, Vec<u8>)> {
        if !self.server_addrs().contains(&at) {
            return None;
        }
        let v = StunView::parse(req).ok()?;
        let ty = v.message_type();
        if ty.class != Class::Request || ty.method != Method::BINDING {
            return None;
        }
        let change = v
            .attributes()
            .find(|(k, _)| *k == attr::CHANGE_REQUEST)
            .and_then(|(_, val)| ChangeRequest::from_value(val))
            .unwrap_or_default();
        let (p, o) = (sa(PRIMARY), sa(OTHER));
        // RFC 5780 §6.1: change IP / change port swap to the other of the two values.
        let alt_ip = if at.ip() == p.ip() { o.ip() } else { p.ip() };
        let alt_port = if at.port() == p.port() {
            o.port()
        } else {
            p.port()
        };
        let src = if self.quirks.ignore_change {
            at
        } else {
            SocketAddr::new(
                if change.change_ip { alt_ip } else { at.ip() },
                if change.change_port {
                    alt_port
                } else {
                    at.port()
                },
            )
        };
        let tid: TransactionId = v.transaction_id();
        let mut out = Vec::new();
        // RFC 5780 §7.5.
        let mut to = from;
        if let Some(port) = v.response_port() {
            if self.quirks.reject_response_port {
                let mut w = MessageWriter::new(&mut out, MessageType::BINDING_ERROR, &tid);
                w.error_code(420, "Unknown Attribute");
                w.fingerprint();
                return Some((at, from, out));
            }
            if !self.quirks.ignore_response_port {
                to = SocketAddr::new(from.ip(), port?);
            }
        }
        let mut w = MessageWriter::new(&mut out, MessageType::BINDING_SUCCESS, &tid);
        w.xor_address(attr::XOR_MAPPED_ADDRESS, &from);
        let plain = match self.spec() {
            Some(s) if s.alg => SocketAddr::new(self.client_ip, from.port()),
            _ => from,
        };
        w.address(attr::MAPPED_ADDRESS, &plain);
        if !self.quirks.no_other {
            let other = if self.quirks.other_same_ip {
                SocketAddr::new(p.ip(), o.port())
            } else {
                o
            };
            w.address(attr::OTHER_ADDRESS, &other);
        }
        let origin = if self.quirks.wrong_origin { p } else { src };
        w.address(attr::RESPONSE_ORIGIN, &origin);
        w.software("sim 5780");
        w.fingerprint();
        Some((src, to, out))
    }

    fn send(&mut self, now: Instant, local: LocalSocket, dst: SocketAddr, data: Vec<u8>) {
        self.sent += 1;
        self.log.push((now, local, dst));
        let src = self.local(local);
        match self.net {
            Net::UdpBlocked => return,
            Net::UdpOnlyTo(p) if dst.port() != p => return,
            _ => {}
        }
        if self.lose() {
            return;
        }
        if self.quirks.drop_first_from_default
            && local == LocalSocket::Default
            && !self.dropped_once
        {
            self.dropped_once = true;
            return;
        }
        let translated = self.outbound(now, src, dst);
        let rtt = self.rtt;
        // Hairpin (RFC 4787 §6): to our own public address.
        if dst.ip() == self.nat_ip || dst.ip() == self.client_ip {
            let hairpins = match self.spec() {
                Some(s) => s.hairpin,
                None => true,
            };
            if let Some(internal) = self.inbound_any(dst).filter(|_| hairpins) {
                self.queue.push((now + rtt / 2, translated, internal, data));
            }
            return;
        }
        let Some((from, to, reply)) = self.serve(dst, translated, &data) else {
            return;
        };
        // The reply crosses the path half an RTT later: the NAT judges it then.
        let arrive = now + rtt / 2;
        if let Some(internal) = self.inbound(arrive, from, to)
            && !self.lose()
        {
            self.queue.push((now + rtt, from, internal, reply));
        }
    }

    fn inbound_any(&self, dst: SocketAddr) -> Option<SocketAddr> {
        match self.spec() {
            Some(_) => self
                .bindings
                .iter()
                .find(|b| b.external_port == dst.port())
                .map(|b| b.internal),
            None => Some(dst),
        }
    }

    /// The socket a datagram that reached `internal` arrives on, if the engine would hand it to
    /// the probe (private sockets: always; the shared one: by declared transaction id).
    fn routed(&self, internal: SocketAddr, data: &[u8]) -> Option<LocalSocket> {
        if internal != self.local(LocalSocket::Default) {
            let n = internal
                .port()
                .checked_sub(40001)
                .and_then(|n| u8::try_from(n).ok())?;
            return Some(LocalSocket::Private(n));
        }
        StunView::parse(data)
            .is_ok_and(|v| self.declared.contains(&v.transaction_id()))
            .then_some(LocalSocket::Default)
    }

    /// Drive `probe` to completion; returns its output and the simulated duration.
    pub(crate) fn run<P: Probe>(&mut self, probe: &mut P, t0: Instant) -> (P::Output, Duration) {
        self.drive(probe, t0, None, |_, _, _| {})
    }

    /// The same, with a TCP round trip of `rtt` measured beside the run and signalled `at`
    /// after the start.
    pub(crate) fn run_hinted<P: Probe + Signalled<In = TcpRtt>>(
        &mut self,
        probe: &mut P,
        t0: Instant,
        at: Duration,
        rtt: Duration,
    ) -> (P::Output, Duration) {
        self.drive(probe, t0, Some((t0 + at, rtt)), |p, now, rtt| {
            p.handle_signal(now, TcpRtt(rtt))
        })
    }

    fn drive<P: Probe>(
        &mut self,
        probe: &mut P,
        t0: Instant,
        mut hint: Option<(Instant, Duration)>,
        mut signal: impl FnMut(&mut P, Instant, Duration),
    ) -> (P::Output, Duration) {
        let mut now = t0;
        let mut buf = Vec::new();
        for _ in 0..1_000_000 {
            if let Some((at, rtt)) = hint
                && now >= at
            {
                signal(probe, now, rtt);
                hint = None;
            }
            loop {
                buf.clear();
                let Some(t) = probe.poll_transmit(now, &mut buf) else {
                    break;
                };
                self.declared.insert(t.transaction_id);
                self.send(now, t.local, t.destination, buf.clone());
            }
            let (due, later): (Vec<_>, Vec<_>) =
                self.queue.drain(..).partition(|(at, _, _, _)| *at <= now);
            self.queue = later;
            for (_, from, internal, data) in due {
                if let Some(socket) = self.routed(internal, &data) {
                    let _ = probe.handle_input_on(
                        now,
                        Received {
                            socket,
                            from,
                            data: &data,
                        },
                    );
                }
            }
            if probe.is_done() {
                let out = probe.take_output().unwrap();
                return (out, now - t0);
            }
            let next = [
                probe.poll_timeout(),
                self.queue.iter().map(|(at, _, _, _)| *at).min(),
                hint.map(|(at, _)| at),
            ]
            .into_iter()
            .flatten()
            .min()
            .expect("probe stalled: no timeout and nothing in flight");
            now = now.max(next);
            probe.handle_timeout(now);
        }
        panic!("simulation did not finish");
    }
}

/// Deterministic transaction ids for tests.
pub(crate) fn test_ids() -> TransactionIdSource {
    TransactionIdSource::new([0x5a; 16])
}

#[allow(clippy::disallowed_methods)]
pub(crate) fn t0() -> Instant {
    Instant::now()
}
