//! One peer's run of `stunmap pair`: gather, check, measure, report, release.
//!
//! ```text
//! gathering ─▶ offer sent ─▶ checking ─▶ settling ─▶ measuring ─▶ reporting ─▶ releasing ─▶ done
//!  host cand.    (signal)     ICE checks   a better     echo over    (signal,     Refresh
//!  srflx (STUN)               (RFC 8445)   pair than    the selected  wait for     LIFETIME 0
//!  relay (TURN)                            a relay?     pair          the peer's)  (RFC 8656 §8)
//! ```
//!
//! Sockets (probe-private, numbered as in [`crate::machine`]): socket 0 is the ICE socket,
//! the base of the host and server-reflexive candidates (RFC 8445 §5.1.1.2: the STUN Binding
//! that learns the server-reflexive address leaves from the very socket the checks use);
//! socket 1, when a TURN server is given, holds the allocation whose relayed address is the
//! relay candidate (RFC 8445 §5.1.1.2, RFC 8656). Checks from the relay candidate leave as
//! Send indications (RFC 8656 §11.2) after CreatePermission for each peer IP (§9, §10); what
//! the peers send to it arrives as Data indications (§11.4).
//!
//! The ICE agent is `is` (str0m's, as its own crate): the same verbs as every machine here
//! (`handle_timeout(now)`, `poll_transmit`, `handle_packet(now, …)`, `poll_event`), no clock,
//! no sockets. Its pacing is set close to what the NetBird client's pion/ice uses: a first
//! retransmission after 200 ms and 7 transmissions per pair, so a pair that never answers is
//! given up after about five seconds.
//!
//! Every check that leaves and every authenticated answer that arrives is counted per
//! local→remote direction ([`CheckFlow`]), which is how the report tells "no answer" from
//! "one way" and sees peer-reflexive addresses of a symmetric NAT.
//!
//! After nomination, each side sends small echo requests over the selected pair for the
//! measurement time and answers the other's (format below), which gives RTT percentiles and
//! loss from both ends. Echo requests are answered only from addresses the agent has
//! authenticated checks with, so the socket cannot be used to reflect traffic.
//!
//! Randomness comes from the caller (credentials, tie-breaker, transaction-id seed), except
//! the transaction ids of the agent's own checks, which `is` draws itself.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use is::{Candidate, CandidateKind as IceKind, IceAgent, IceAgentEvent, IceCreds, Protocol};

use super::model::{
    CandidateKind, CheckFlow, MAX_CANDIDATES, MAX_CHECKS, Nominated, Offer, Role, RttStats,
    SideReport, TurnSummary, WireCandidate, usable_address,
};
use super::rendezvous::PeerMsg;
use crate::Transport;
use crate::binding::{BindingConfig, BindingStatus, BindingTransaction};
use crate::machine::{Ignored, LocalSocket, PrivateSockets, Probe, Received, Retransmit, Transmit};
use crate::stun::TransactionIdSource;
use crate::stun::view::{StunView, check_header};
use crate::stun::{Class, TransactionId};
use crate::turn::auth::Credentials;
use crate::turn::channel::{DataIndication, Frame, StreamFramer, encode_send_indication};
use crate::turn::session::{Answer, Request, SessionConfig as TurnSessionConfig, TurnSession};

use candidates::{from_wire, to_wire};
use echo::parse_echo;
use relay::seed16;

/// A machine that exchanges signalling messages besides datagrams: the engine carries what
/// [`Signalled::poll_signal`] returns to the peer and feeds what comes back to
/// [`Signalled::handle_signal`].
pub trait Signalled: Probe {
    /// What comes in from the signalling channel.
    type In;
    /// What goes out.
    type Out;
    /// A signalling message arrived.
    fn handle_signal(&mut self, now: Instant, signal: Self::In);
    /// The next message to send, if any.
    fn poll_signal(&mut self) -> Option<Self::Out>;
    /// A TCP server the engine connects to before the first transmit: datagrams with
    /// [`LocalSocket::Default`] are written to that stream (the machine frames them), and what
    /// arrives is handed to [`Probe::handle_input_on`] on [`LocalSocket::Default`] from `server`
    /// in chunks, an empty chunk meaning the connection failed or closed.
    fn stream_to(&self) -> Option<SocketAddr> {
        None
    }
}

/// What the rendezvous tells the session.
#[derive(Clone, Debug, PartialEq)]
pub enum Inbound {
    /// A (validated) message from the peer.
    Peer(PeerMsg),
    /// The peer left the room.
    PeerLeft,
}

/// The ICE socket.
pub const ICE_SOCKET: u8 = 0;
/// The TURN socket.
pub const TURN_SOCKET: u8 = 1;

/// First bytes of an echo datagram: 0xD0 is outside every range RFC 7983 §7 assigns (STUN
/// 0–3, ZRTP 16–19, DTLS 20–63, TURN channels 64–79, RTP 128–191), so it never reads as one.
const ECHO_MAGIC: [u8; 4] = [0xD0, b'S', b'M', b'E'];
const ECHO_REQUEST: u8 = 1;
const ECHO_REPLY: u8 = 2;
/// magic, kind, 3 zero bytes, run token (8), sequence number (4).
const ECHO_LEN: usize = 20;
/// Most echo requests one run keeps track of.
const MAX_ECHOES: usize = 20_000;

/// The TURN server and the credentials for it.
#[derive(Clone, Debug)]
pub struct TurnConfig {
    /// The server.
    pub server: SocketAddr,
    /// UDP (a probe-private socket) or TCP (RFC 8656 §3.1: the engine's stream; the relayed
    /// address still speaks UDP to the peers). TLS is not supported here.
    pub transport: Transport,
    /// Long-term or REST credentials.
    pub credentials: Credentials,
}

/// How a session runs. [`PairConfig::new`] has the defaults.
#[derive(Clone, Debug)]
pub struct PairConfig {
    /// STUN servers for server-reflexive candidates (the ICE socket's family).
    pub stun: Vec<SocketAddr>,
    /// TURN, for a relay candidate.
    pub turn: Option<TurnConfig>,
    /// A destination that picks the ICE socket's source route (and so the host candidate's
    /// IP); the first STUN server is a good choice.
    pub route_toward: SocketAddr,
    /// ICE role (the first peer in the room controls).
    pub role: Role,
    /// ice-ufrag, 4+ ice-chars (random, from the caller).
    pub ufrag: String,
    /// ice-pwd, 22+ ice-chars (random, from the caller).
    pub pwd: String,
    /// ICE-CONTROLLING/ICE-CONTROLLED tie-breaker, RFC 8445 §7.1.3 (random).
    pub tie_breaker: u64,
    /// Seed of the STUN/TURN transaction ids and the echo token (random).
    pub seed: [u8; 16],
    /// Gathering gives up on STUN/TURN answers after this.
    pub gather_timeout: Duration,
    /// How long to wait for the peer's offer after ours.
    pub offer_timeout: Duration,
    /// How long the checks may take before the pair is declared failed.
    pub connect_timeout: Duration,
    /// After a nomination of a relayed pair: how long a direct pair still has to win.
    pub settle: Duration,
    /// RTT/loss measurement time over the selected pair.
    pub duration: Duration,
    /// Time between echo requests.
    pub echo_interval: Duration,
    /// After the last echo request, how long its answer may take.
    pub echo_linger: Duration,
    /// How long to wait for the peer's report after ours.
    pub report_timeout: Duration,
    /// Retransmissions of the gathering Binding and TURN requests.
    pub retransmit: Retransmit,
}

impl PairConfig {
    /// Defaults for `stunmap pair` (docs/pair.md lists them).
    pub fn new(role: Role, route_toward: SocketAddr) -> Self {
        Self {
            stun: Vec::new(),
            turn: None,
            route_toward,
            role,
            ufrag: String::new(),
            pwd: String::new(),
            tie_breaker: 0,
            seed: [0; 16],
            gather_timeout: Duration::from_secs(3),
            offer_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(10),
            settle: Duration::from_secs(2),
            duration: Duration::from_secs(3),
            echo_interval: Duration::from_millis(20),
            echo_linger: Duration::from_millis(500),
            report_timeout: Duration::from_secs(10),
            retransmit: Retransmit {
                rto: Duration::from_millis(200),
                rc: 4,
                rm: 4,
                deadline: None,
            },
        }
    }
}

/// Why a session ended without a usable result from the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Abort {
    /// The peer's offer did not come in time.
    NoOffer,
    /// The peer left the room.
    PeerLeft,
    /// Cancelled (SIGINT/SIGTERM, deadline).
    Interrupted,
}

/// What a session produced.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionOutput {
    /// This side's findings (the NAT fields are the caller's to fill in).
    pub local: SideReport,
    /// The peer's findings, when they came.
    pub peer: Option<SideReport>,
    /// The candidates the peer offered.
    pub peer_offer: Vec<WireCandidate>,
    /// Why the run stopped early, if it did.
    pub abort: Option<Abort>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Gathering,
    AwaitOffer,
    Checking,
    Settling,
    Measuring,
    Reporting,
    Releasing,
    Done,
}

#[derive(Debug)]
struct Gather {
    tx: BindingTransaction,
    done: bool,
}

#[derive(Debug, Default)]
struct Echo {
    next_seq: u32,
    sent: HashMap<u32, Instant>,
    samples: Vec<Duration>,
    next_at: Option<Instant>,
    stop_at: Option<Instant>,
}

#[derive(Debug)]
struct Turn {
    session: TurnSession,
    relayed: Option<SocketAddr>,
    local: Option<SocketAddr>,
    error: Option<String>,
    permissions: VecDeque<SocketAddr>,
    permitted: Vec<IpAddr>,
    released: bool,
    allocating: bool,
    /// Over TCP: the framer of the stream (RFC 8656 §12.5, RFC 6062 §2).
    framer: Option<StreamFramer>,
}

/// One peer's `stunmap pair` run (see the module docs).
#[derive(Debug)]
pub struct PairSession {
    config: PairConfig,
    agent: IceAgent,
    agent_timeout: Option<Instant>,
    ids: TransactionIdSource,
    token: u64,
    phase: Phase,
    phase_until: Option<Instant>,
    started: Option<Instant>,
    host: Option<SocketAddr>,
    gathers: Vec<Gather>,
    turn: Option<Turn>,
    remote_offer: Option<Offer>,
    offer_sent: bool,
    checks_started: Option<Instant>,
    nominated: Option<Nominated>,
    connect_ms: Option<f64>,
    flows: BTreeMap<(SocketAddr, SocketAddr), CheckFlow>,
    echo: Echo,
    outbox: VecDeque<(LocalSocket, SocketAddr, Vec<u8>)>,
    signals: VecDeque<PeerMsg>,
    report_sent: bool,
    peer_report: Option<SideReport>,
    local_report: Option<SideReport>,
    abort: Option<Abort>,
    interrupted: bool,
    output: Option<SessionOutput>,
}

impl PairSession {
    /// A session; `ufrag`, `pwd`, `tie_breaker` and `seed` in `config` must be random.
    pub fn new(config: PairConfig) -> Self {
        let mut agent = IceAgent::new(IceCreds {
            ufrag: config.ufrag.clone(),
            pass: config.pwd.clone(),
        });
        agent.set_controlling(config.role == Role::Controlling);
        agent.set_control_tie_breaker(config.tie_breaker);
        // Pacing close to pion/ice's defaults (200 ms check interval, 7 binding requests).
        agent.set_initial_stun_rto(Duration::from_millis(200));
        agent.set_max_stun_rto(Duration::from_millis(1000));
        agent.set_max_stun_retransmits(7);
        agent.set_max_candidate_pairs(MAX_CANDIDATES * MAX_CANDIDATES);
        let mut ids = TransactionIdSource::new(config.seed);
        let token = {
            let t = ids.next_id().0;
            let mut b = [0u8; 8];
            b.copy_from_slice(&t[..8]);
            u64::from_be_bytes(b)
        };
        let bcfg = BindingConfig {
            retransmit: config.retransmit,
            local: LocalSocket::Private(ICE_SOCKET),
            ..BindingConfig::default()
        };
        let gathers = config
            .stun
            .iter()
            .filter(|s| s.is_ipv4() == config.route_toward.is_ipv4())
            .take(MAX_CANDIDATES / 2)
            .map(|s| Gather {
                tx: BindingTransaction::new(ids.next_id(), *s, bcfg),
                done: false,
            })
            .collect();
        let turn = config.turn.as_ref().map(|t| {
            let tcp = t.transport == Transport::Tcp;
            let (transport, local) = if tcp {
                (Transport::Tcp, LocalSocket::Default)
            } else {
                (Transport::Udp, LocalSocket::Private(TURN_SOCKET))
            };
            let mut sc = TurnSessionConfig::new(t.server, transport, local);
            sc.credentials = Some(t.credentials.clone());
            sc.retransmit = if tcp {
                // One transmission on a reliable stream (RFC 8489 §6.2.2), a shorter wait.
                Retransmit {
                    rto: Duration::from_secs(5),
                    rc: 1,
                    rm: 1,
                    deadline: None,
                }
            } else {
                config.retransmit
            };
            let mut session = TurnSession::new(sc, TransactionIdSource::new(seed16(&mut ids)));
            session.start(Request::Allocate);
            Turn {
                session,
                relayed: None,
                local: None,
                error: None,
                permissions: VecDeque::new(),
                permitted: Vec::new(),
                released: false,
                allocating: true,
                framer: tcp.then(StreamFramer::new),
            }
        });
        Self {
            config,
            agent,
            agent_timeout: None,
            ids,
            token,
            phase: Phase::Gathering,
            phase_until: None,
            started: None,
            host: None,
            gathers,
            turn,
            remote_offer: None,
            offer_sent: false,
            checks_started: None,
            nominated: None,
            connect_ms: None,
            flows: BTreeMap::new(),
            echo: Echo::default(),
            outbox: VecDeque::new(),
            signals: VecDeque::new(),
            report_sent: false,
            peer_report: None,
            local_report: None,
            abort: None,
            interrupted: false,
            output: None,
        }
    }

    /// The nominated pair so far.
    pub fn nominated(&self) -> Option<Nominated> {
        self.nominated
    }

    fn start(&mut self, now: Instant) {
        if self.started.is_some() {
            return;
        }
        self.started = Some(now);
        self.phase_until = Some(now + self.config.gather_timeout);
        self.agent.handle_timeout(now);
        self.drain_agent(now);
        self.advance(now);
    }

    fn gathering_done(&self) -> bool {
        self.gathers.iter().all(|g| g.done) && self.turn.as_ref().is_none_or(|t| !t.allocating)
    }

    fn local_candidates(&self) -> Vec<WireCandidate> {
        self.agent
            .local_candidates()
            .filter_map(|c| to_wire(&c))
            .take(MAX_CANDIDATES)
            .collect()
    }

    fn send_offer(&mut self, now: Instant) {
        if self.offer_sent {
            return;
        }
        self.offer_sent = true;
        let offer = Offer {
            ufrag: self.config.ufrag.clone(),
            pwd: self.config.pwd.clone(),
            candidates: self.local_candidates(),
        };
        self.signals.push_back(PeerMsg::Offer(offer));
        if self.remote_offer.is_some() {
            self.begin_checks(now);
        } else {
            self.phase = Phase::AwaitOffer;
            self.phase_until = Some(now + self.config.offer_timeout);
        }
    }

    fn begin_checks(&mut self, now: Instant) {
        let Some(offer) = self.remote_offer.clone() else {
            return;
        };
        self.agent.set_remote_credentials(IceCreds {
            ufrag: offer.ufrag.clone(),
            pass: offer.pwd.clone(),
        });
        for c in &offer.candidates {
            self.agent.add_remote_candidate(from_wire(c));
        }
        if let Some(t) = self.turn.as_mut()
            && let Some(relayed) = t.relayed
        {
            let mut ips: Vec<IpAddr> = offer
                .candidates
                .iter()
                .map(|c| c.address.ip())
                .filter(|ip| ip.is_ipv4() == relayed.is_ipv4())
                .collect();
            ips.sort();
            ips.dedup();
            for ip in ips {
                t.permissions.push_back(SocketAddr::new(ip, 0));
            }
        }
        self.phase = Phase::Checking;
        self.checks_started = Some(now);
        self.phase_until = Some(now + self.config.connect_timeout);
        self.agent.handle_timeout(now);
        self.drain_agent(now);
        self.next_turn_request();
    }

    fn local_report(&self) -> SideReport {
        let sent = self.echo.next_seq;
        let rtt = (sent > 0).then(|| RttStats::from_samples(sent, &self.echo.samples));
        SideReport {
            role: self.config.role,
            nat: None,
            public_address: None,
            candidates: self.local_candidates(),
            nominated: self.nominated,
            connect_ms: self.connect_ms,
            checks: self.flows.values().cloned().collect(),
            rtt,
            turn: self
                .turn
                .as_ref()
                .zip(self.config.turn.as_ref())
                .map(|(t, c)| TurnSummary {
                    server: c.server,
                    relayed: t.relayed,
                    error: t.error.clone(),
                    released: (t.released || t.relayed.is_none()).then_some(true),
                }),
            interrupted: self.interrupted,
        }
    }

    fn send_report(&mut self, now: Instant) {
        if !self.report_sent {
            self.report_sent = true;
            let r = self.local_report();
            self.signals.push_back(PeerMsg::Report(Box::new(r.clone())));
            self.local_report = Some(r);
        }
        if self.peer_report.is_some() || self.abort.is_some() {
            self.begin_release(now);
        } else {
            self.phase = Phase::Reporting;
            self.phase_until = Some(now + self.config.report_timeout);
        }
    }

    fn finish(&mut self, _now: Instant) {
        self.phase = Phase::Done;
        self.phase_until = None;
        let mut local = self
            .local_report
            .take()
            .unwrap_or_else(|| self.local_report());
        if let (Some(t), Some(tr)) = (self.turn.as_ref(), local.turn.as_mut()) {
            tr.released = Some(t.released || t.relayed.is_none());
        }
        local.interrupted = self.interrupted;
        self.output = Some(SessionOutput {
            local,
            peer: self.peer_report.take(),
            peer_offer: self
                .remote_offer
                .as_ref()
                .map(|o| o.candidates.clone())
                .unwrap_or_default(),
            abort: self.abort,
        });
    }

    fn drain_agent(&mut self, now: Instant) {
        while let Some(t) = self.agent.poll_transmit() {
            let contents: Vec<u8> = t.contents.into();
            if let Ok((ty, _)) = check_header(&contents)
                && ty.class == Class::Request
                && let Some(f) = self.flow(t.source, t.destination)
            {
                f.requests_sent = f.requests_sent.saturating_add(1);
            }
            self.queue_from(t.source, t.destination, contents);
        }
        while let Some(ev) = self.agent.poll_event() {
            if let IceAgentEvent::NominatedSend {
                source,
                destination,
                ..
            } = ev
            {
                self.on_nominated(
                    now,
                    Nominated {
                        source,
                        destination,
                    },
                );
            }
        }
        self.agent_timeout = self.agent.poll_timeout();
    }

    fn on_nominated(&mut self, now: Instant, n: Nominated) {
        self.nominated = Some(n);
        if self.connect_ms.is_none() {
            let since = self
                .checks_started
                .map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
            self.connect_ms = Some(since.as_secs_f64() * 1e3);
        }
        let relayed = self.is_relayed(&n);
        match self.phase {
            Phase::Checking if relayed => {
                self.phase = Phase::Settling;
                self.phase_until = Some(now + self.config.settle);
            }
            Phase::Checking | Phase::Settling if !relayed => self.begin_measuring(now),
            _ => {}
        }
    }

    fn is_relayed(&self, n: &Nominated) -> bool {
        let ours = self.turn.as_ref().and_then(|t| t.relayed) == Some(n.source);
        let theirs = self.remote_offer.as_ref().is_some_and(|o| {
            o.candidates
                .iter()
                .any(|c| c.kind == CandidateKind::Relay && c.address == n.destination)
        });
        ours || theirs
    }

    fn flow(&mut self, local: SocketAddr, remote: SocketAddr) -> Option<&mut CheckFlow> {
        let key = (local, remote);
        if !self.flows.contains_key(&key) && self.flows.len() >= MAX_CHECKS {
            return None;
        }
        Some(self.flows.entry(key).or_insert(CheckFlow {
            local,
            remote,
            requests_sent: 0,
            responses_received: 0,
            requests_received: 0,
        }))
    }

    /// Queue `data` from the local candidate `source` (the host base or the relayed address)
    /// to `destination`.
    fn queue_from(&mut self, source: SocketAddr, destination: SocketAddr, data: Vec<u8>) {
        let relay = self.turn.as_ref().and_then(|t| {
            let c = t.session.config();
            t.relayed.map(|r| (r, c.server, c.local))
        });
        match relay {
            Some((relayed, server, socket)) if relayed == source => {
                let tid = self.ids.next_id();
                let mut buf = Vec::with_capacity(data.len() + 48);
                encode_send_indication(&tid, &destination, &data, &mut buf);
                self.outbox.push_back((socket, server, buf));
            }
            _ => self
                .outbox
                .push_back((LocalSocket::Private(ICE_SOCKET), destination, data)),
        }
    }

    /// A datagram for the agent or the echo, arriving at the local candidate `local` from
    /// `from` (on the ICE socket, or out of a Data indication).
    fn on_peer_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        data: &[u8],
    ) -> Result<(), Ignored> {
        if let Some((kind, token, seq)) = parse_echo(data) {
            return self.on_echo(now, local, from, kind, token, seq);
        }
        let (ty, _) = check_header(data).map_err(Ignored::Malformed)?;
        // Our own parser first (strict, checked), then the agent's.
        StunView::parse(data).map_err(Ignored::Malformed)?;
        let message = is::stun::StunMessage::parse(data).map_err(|_| Ignored::Unexpected)?;
        let packet = is::stun::StunPacket {
            proto: Protocol::Udp,
            source: from,
            destination: local,
            message,
        };
        let accepted = self.agent.handle_packet(now, packet);
        if accepted && let Some(f) = self.flow(local, from) {
            match ty.class {
                Class::Request => f.requests_received = f.requests_received.saturating_add(1),
                Class::SuccessResponse => {
                    f.responses_received = f.responses_received.saturating_add(1)
                }
                _ => {}
            }
        }
        self.drain_agent(now);
        if accepted {
            Ok(())
        } else {
            Err(Ignored::Unexpected)
        }
    }

    /// Move on when the current phase's condition is met.
    fn advance(&mut self, now: Instant) {
        if self.phase == Phase::Gathering && self.gathering_done() {
            self.send_offer(now);
        }
    }

    fn on_phase_deadline(&mut self, now: Instant) {
        match self.phase {
            Phase::Gathering => self.send_offer(now),
            Phase::AwaitOffer => {
                self.abort = Some(Abort::NoOffer);
                self.send_report(now);
            }
            Phase::Checking => self.send_report(now),
            Phase::Settling => self.begin_measuring(now),
            Phase::Measuring => self.send_report(now),
            Phase::Reporting => self.begin_release(now),
            Phase::Releasing | Phase::Done => {}
        }
    }
}

impl Probe for PairSession {
    type Output = SessionOutput;

    fn handle_input(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> Result<(), Ignored> {
        self.handle_input_on(
            now,
            Received {
                socket: LocalSocket::Private(ICE_SOCKET),
                from,
                data,
            },
        )
    }

    fn handle_input_on(&mut self, now: Instant, received: Received<'_>) -> Result<(), Ignored> {
        let Received { socket, from, data } = received;
        if self.phase == Phase::Done {
            return Err(Ignored::Late);
        }
        self.start(now);
        let r = match socket {
            LocalSocket::Default => self.on_turn_stream(now, from, data),
            LocalSocket::Private(TURN_SOCKET) => self.on_turn_datagram(now, from, data),
            LocalSocket::Private(ICE_SOCKET) => {
                let gather = self
                    .gathers
                    .iter_mut()
                    .find(|g| !g.done && g.tx.destination() == from);
                match gather {
                    Some(g)
                        if check_header(data)
                            .is_ok_and(|(_, tid)| tid == g.tx.transaction_id()) =>
                    {
                        let r = g.tx.handle_input(now, from, data);
                        self.collect_gathers(now);
                        r
                    }
                    _ => match self.host {
                        Some(host) => self.on_peer_datagram(now, host, from, data),
                        None => Err(Ignored::Unexpected),
                    },
                }
            }
            _ => Err(Ignored::Unexpected),
        };
        self.agent_timeout = self.agent.poll_timeout();
        r
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Done {
            return;
        }
        self.start(now);
        for g in self.gathers.iter_mut().filter(|g| !g.done) {
            g.tx.handle_timeout(now);
        }
        self.collect_gathers(now);
        let turn_done = self
            .turn
            .as_mut()
            .and_then(|t| t.session.handle_timeout(now));
        if let Some(c) = turn_done {
            self.on_turn_completion(now, c.request, c.answer);
        }
        if self.agent_timeout.is_some_and(|t| now >= t) {
            self.agent.handle_timeout(now);
        }
        self.drain_agent(now);
        self.echo_due(now);
        if self.phase_until.is_some_and(|t| now >= t) {
            self.on_phase_deadline(now);
        }
        // All pairs failed before the connect timeout: no need to wait for it.
        if self.phase == Phase::Checking
            && self.agent.state().is_disconnected()
            && self
                .checks_started
                .is_some_and(|s| now >= s + Duration::from_secs(2))
        {
            self.send_report(now);
        }
        self.advance(now);
        self.agent_timeout = self.agent.poll_timeout();
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        if self.phase == Phase::Done {
            return None;
        }
        self.start(now);
        if let Some((local, destination, data)) = self.outbox.pop_front() {
            let tid = check_header(&data).map_or(TransactionId([0; 12]), |(_, t)| t);
            buf.extend_from_slice(&data);
            return Some(Transmit {
                destination,
                local,
                transaction_id: tid,
                attempt: 0,
            });
        }
        for g in self.gathers.iter_mut().filter(|g| !g.done) {
            if let Some(t) = g.tx.poll_transmit(now, buf) {
                return Some(t);
            }
        }
        if let Some(t) = self.turn.as_mut()
            && let Some(tx) = t.session.poll_transmit(now, buf)
        {
            return Some(tx);
        }
        None
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Done {
            return None;
        }
        let gathers = self
            .gathers
            .iter()
            .filter(|g| !g.done)
            .filter_map(|g| g.tx.poll_timeout());
        let turn = self.turn.as_ref().and_then(|t| t.session.poll_timeout());
        let echo = if self.phase == Phase::Measuring {
            self.echo.next_at
        } else {
            None
        };
        gathers
            .chain(turn)
            .chain(self.agent_timeout)
            .chain(echo)
            .chain(self.phase_until)
            .min()
    }

    fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    fn take_output(&mut self) -> Option<SessionOutput> {
        self.output.take()
    }

    fn cancel(&mut self, now: Instant) -> bool {
        if self.phase == Phase::Done {
            return false;
        }
        self.interrupted = true;
        self.abort = Some(Abort::Interrupted);
        if self.phase != Phase::Releasing {
            self.send_report(now);
        }
        self.phase != Phase::Done
    }

    fn private_sockets(&self) -> Option<PrivateSockets> {
        let udp_turn = self
            .turn
            .as_ref()
            .is_some_and(|t| t.session.config().local == LocalSocket::Private(TURN_SOCKET));
        Some(PrivateSockets {
            count: if udp_turn { 2 } else { 1 },
            toward: self.config.route_toward,
        })
    }

    fn handle_local_addr(&mut self, socket: LocalSocket, addr: SocketAddr) {
        match socket {
            LocalSocket::Private(ICE_SOCKET) if self.host.is_none() => {
                self.host = Some(addr);
                // Over TCP the relay candidate's local interface is the host's.
                if let Some(t) = self.turn.as_mut().filter(|t| t.framer.is_some()) {
                    t.local = Some(addr);
                }
                if let Ok(c) = Candidate::host(addr, "udp") {
                    self.agent.add_local_candidate(c);
                }
            }
            LocalSocket::Private(TURN_SOCKET) => {
                if let Some(t) = self.turn.as_mut() {
                    t.local = Some(addr);
                }
            }
            _ => {}
        }
    }
}

impl PairSession {
    fn collect_gathers(&mut self, now: Instant) {
        let Some(host) = self.host else { return };
        let mut found = Vec::new();
        for g in self.gathers.iter_mut().filter(|g| !g.done) {
            if let Some(out) = g.tx.take_output() {
                g.done = true;
                if let BindingStatus::Success(r) = out.status
                    && let Some(m) = r.mapped_address()
                {
                    found.push(m);
                }
            } else if g.tx.is_done() {
                g.done = true;
            }
        }
        for m in found {
            if usable_address(&m)
                && m.is_ipv4() == host.is_ipv4()
                && let Ok(c) = Candidate::server_reflexive(m, host, "udp")
            {
                self.agent.add_local_candidate(c);
            }
        }
        self.advance(now);
    }
}

impl Signalled for PairSession {
    type In = Inbound;
    type Out = PeerMsg;

    fn handle_signal(&mut self, now: Instant, signal: Inbound) {
        if self.phase == Phase::Done {
            return;
        }
        self.start(now);
        match signal {
            Inbound::Peer(PeerMsg::Offer(o)) => {
                if self.remote_offer.is_some() || o.validate().is_err() {
                    return;
                }
                self.remote_offer = Some(o);
                if self.phase == Phase::AwaitOffer {
                    self.begin_checks(now);
                }
            }
            Inbound::Peer(PeerMsg::Report(r)) => {
                if self.peer_report.is_some() || r.validate().is_err() {
                    return;
                }
                self.peer_report = Some(*r);
                if self.phase == Phase::Reporting {
                    self.begin_release(now);
                }
            }
            Inbound::PeerLeft => {
                if matches!(self.phase, Phase::Releasing) {
                    return;
                }
                // A peer that reported at its end and left is a normal end; one that left
                // without a report, or after an interrupted one, cut the run short.
                if self.peer_report.as_ref().is_none_or(|r| r.interrupted) {
                    self.abort.get_or_insert(Abort::PeerLeft);
                }
                self.send_report(now);
            }
        }
        self.agent_timeout = self.agent.poll_timeout();
    }

    fn poll_signal(&mut self) -> Option<PeerMsg> {
        self.signals.pop_front()
    }

    fn stream_to(&self) -> Option<SocketAddr> {
        self.turn
            .as_ref()
            .filter(|t| t.session.config().local == LocalSocket::Default)
            .map(|t| t.session.config().server)
    }
}

mod candidates;
mod echo;
mod relay;

#[cfg(test)]
mod tests;
