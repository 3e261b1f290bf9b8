//! The relay round-trip benchmark: timestamped packets looped through a real TURN allocation.
//!
//! One allocation plus the probe's own UDP socket as the peer (RFC 8656 §2 topology with the
//! peer on this host):
//!
//! ```text
//! control socket ──ChannelData/Send──▶ server ──UDP from relayed addr──▶ peer socket
//! control socket ◀─ChannelData/Data─── server ◀─UDP to relayed addr──── peer socket (echo)
//! ```
//!
//! Each packet therefore crosses the relay twice, like a packet and its answer between two
//! peers of which one is relayed. Before the loop, a few Binding requests over the control
//! transport measure the direct RTT to the same server, so the relay's own cost is the
//! difference. The peer address the server sees is learned by a Binding request from the peer
//! socket (it differs from the local address behind a NAT); without an answer the local
//! address is used.
//!
//! Every payload carries a magic, a per-run id and a sequence number, and is filled with a
//! pattern derived from the sequence number: what comes back is compared byte for byte, so
//! corruption, duplicates and strays are counted, not mistaken for samples. The allocation is
//! released with Refresh LIFETIME 0 at the end, on error and on cancellation.
//!
//! Permissions last 300 s and channel bindings 600 s (RFC 8656 §9, §12); the loop does not
//! refresh them, so callers keep a run shorter than that.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::allocate::AllocateStatus;
use super::channel::{CHANNEL_MIN, ChannelData, DataIndication, encode_send_indication};
use super::session::{
    Answer, Completion, Release, Request, SessionConfig, StepOutcome, TurnSession,
    private_sockets_for,
};
use crate::Transport;
use crate::binding::{BindingConfig, BindingStatus, BindingTransaction};
use crate::machine::{Ignored, LocalSocket, PrivateSockets, Probe, Retransmit, Transmit};
use crate::stun::view::StunView;
use crate::stun::{TransactionId, TransactionIdSource};

/// Magic at the start of every benchmark payload.
const MAGIC: &[u8; 4] = b"SMRT";
/// Bytes of magic, run id and sequence number.
pub const HEADER: usize = 16;
/// The channel the benchmark binds.
const CHANNEL: u16 = CHANNEL_MIN;

/// How data goes through the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataMode {
    /// ChannelBind, then ChannelData (RFC 8656 §12): 4 bytes of overhead.
    Channel,
    /// CreatePermission, then Send/Data indications (RFC 8656 §11): 36+ bytes of overhead.
    Indication,
}

/// How the benchmark runs.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// The control session (its `local` is the control socket).
    pub session: SessionConfig,
    /// The probe-private UDP socket used as the peer.
    pub peer_socket: u8,
    /// Where the peer socket sends its Binding request to learn its address as the server
    /// sees it (the server's UDP port); `None` uses the local address.
    pub peer_probe: Option<SocketAddr>,
    /// Packets to loop.
    pub count: u32,
    /// Time between packets.
    pub interval: Duration,
    /// Payload bytes (at least [`HEADER`]).
    pub size: usize,
    /// Channel or indications.
    pub mode: DataMode,
    /// Binding requests over the control transport for the direct RTT.
    pub direct: u8,
    /// Wait after the last packet before counting the missing ones lost.
    pub linger: Duration,
}

/// What the benchmark measured.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RelayReport {
    /// The server.
    pub server: SocketAddr,
    /// The transport to the server.
    pub transport: Transport,
    /// Channel or indications.
    pub mode: DataMode,
    /// How Allocate ended.
    pub status: AllocateStatus,
    /// SOFTWARE.
    pub software: Option<String>,
    /// XOR-RELAYED-ADDRESS.
    pub relayed: Option<SocketAddr>,
    /// XOR-MAPPED-ADDRESS of the control socket.
    pub mapped: Option<SocketAddr>,
    /// The peer address permitted and bound.
    pub peer: Option<SocketAddr>,
    /// CreatePermission.
    pub permission: Option<StepOutcome>,
    /// ChannelBind (channel mode).
    pub channel_bind: Option<StepOutcome>,
    /// Direct RTT samples (Binding over the control transport), in order.
    #[serde(skip)]
    pub direct: Vec<Duration>,
    /// Direct Binding requests without an answer.
    pub direct_lost: u32,
    /// Packets sent into the relay.
    pub sent: u32,
    /// Packets that came back intact (first copy).
    pub received: u32,
    /// Packets that came back with different bytes.
    pub corrupted: u32,
    /// Extra copies.
    pub duplicates: u32,
    /// Relay RTT per packet in send order (`None`: lost).
    #[serde(skip)]
    pub rtts: Vec<Option<Duration>>,
    /// Whether the allocation was released.
    pub release: Release,
    /// Cancelled (Ctrl-C, deadline).
    pub cancelled: bool,
}

impl RelayReport {
    /// Relay RTT samples of the packets that came back, in send order.
    pub fn samples(&self) -> Vec<Duration> {
        self.rtts.iter().flatten().copied().collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Direct,
    Allocating,
    Permission,
    ChannelBind,
    Loop,
    Releasing,
    Done,
}

/// The relay benchmark probe, see the module docs.
#[derive(Debug)]
pub struct RelayProbe {
    config: RelayConfig,
    session: TurnSession,
    peer_binding: Option<BindingTransaction>,
    peer_local: Option<SocketAddr>,
    run_id: [u8; 8],
    data_tid: TransactionId,
    phase: Phase,
    direct_left: u8,
    sent_at: Vec<Option<Instant>>,
    next_send: Option<Instant>,
    loop_end: Option<Instant>,
    echoes: VecDeque<(SocketAddr, Vec<u8>)>,
    report: RelayReport,
    output_taken: bool,
}

impl RelayProbe {
    /// A benchmark; `ids` supplies transaction ids and the run id.
    pub fn new(mut config: RelayConfig, mut ids: TransactionIdSource) -> Self {
        config.size = config.size.max(HEADER);
        let run = ids.next_id();
        let mut run_id = [0u8; 8];
        for (o, b) in run_id.iter_mut().zip(run.as_bytes()) {
            *o = *b;
        }
        let data_tid = ids.next_id();
        let peer_binding = config.peer_probe.map(|to| {
            BindingTransaction::new(
                ids.next_id(),
                to,
                BindingConfig {
                    retransmit: Retransmit {
                        rto: Duration::from_millis(200),
                        rc: 3,
                        rm: 2,
                        deadline: Some(Duration::from_secs(1)),
                    },
                    local: LocalSocket::Private(config.peer_socket),
                    ..BindingConfig::default()
                },
            )
        });
        let report = RelayReport {
            server: config.session.server,
            transport: config.session.transport,
            mode: config.mode,
            status: AllocateStatus::Timeout,
            software: None,
            relayed: None,
            mapped: None,
            peer: None,
            permission: None,
            channel_bind: None,
            direct: Vec::new(),
            direct_lost: 0,
            sent: 0,
            received: 0,
            corrupted: 0,
            duplicates: 0,
            rtts: vec![None; config.count as usize],
            release: Release::NotNeeded,
            cancelled: false,
        };
        let mut session = TurnSession::new(config.session.clone(), ids);
        let (phase, direct_left) = if config.direct > 0 {
            session.start(Request::Binding);
            (Phase::Direct, config.direct - 1)
        } else {
            session.start(Request::Allocate);
            (Phase::Allocating, 0)
        };
        Self {
            sent_at: vec![None; config.count as usize],
            config,
            session,
            peer_binding,
            peer_local: None,
            run_id,
            data_tid,
            phase,
            direct_left,
            next_send: None,
            loop_end: None,
            echoes: VecDeque::new(),
            report,
            output_taken: false,
        }
    }

    /// The payload of packet `seq`.
    fn payload(&self, seq: u32) -> Vec<u8> {
        let mut p = Vec::with_capacity(self.config.size);
        p.extend_from_slice(MAGIC);
        p.extend_from_slice(&self.run_id);
        p.extend_from_slice(&seq.to_be_bytes());
        let seed = seq.to_be_bytes()[3];
        p.extend((0..self.config.size - HEADER).map(|i| seed.wrapping_add(i as u8)));
        p
    }

    fn seq_of(&self, data: &[u8]) -> Option<u32> {
        let (head, _) = data.split_first_chunk::<HEADER>()?;
        let (magic, rest) = head.split_first_chunk::<4>()?;
        let (run, seq) = rest.split_first_chunk::<8>()?;
        if magic != MAGIC || *run != self.run_id {
            return None;
        }
        Some(u32::from_be_bytes(*seq.first_chunk::<4>()?))
    }

    fn peer(&self) -> Option<SocketAddr> {
        self.report.peer.or(self.peer_local)
    }

    fn peer_binding_pending(&self) -> bool {
        self.peer_binding.as_ref().is_some_and(|b| !b.is_done())
    }

    fn settle_peer_binding(&mut self) {
        if let Some(b) = self.peer_binding.as_mut()
            && let Some(out) = b.take_output()
            && let BindingStatus::Success(r) = out.status
            && let Some(m) = r.mapped_address()
        {
            self.report.peer = Some(m);
        }
    }

    fn release(&mut self) {
        self.session.start(Request::Refresh { lifetime: 0 });
        self.phase = Phase::Releasing;
        self.next_send = None;
        self.loop_end = None;
    }

    /// After Allocate, once the peer address is settled: permission (and channel).
    fn advance_to_permission(&mut self) {
        if self.phase != Phase::Allocating || !self.session.is_idle() || self.peer_binding_pending()
        {
            return;
        }
        if self.report.status != AllocateStatus::Allocated {
            return;
        }
        self.settle_peer_binding();
        self.report.peer = self.peer();
        match self.report.peer {
            Some(peer) => {
                self.session.start(Request::CreatePermission { peer });
                self.phase = Phase::Permission;
            }
            None => self.release(),
        }
    }

    fn start_loop(&mut self, now: Instant) {
        self.phase = Phase::Loop;
        if self.config.count == 0 {
            self.loop_end = Some(now);
        } else {
            self.next_send = Some(now);
        }
    }

    fn on_completion(&mut self, now: Instant, c: Completion) {
        match self.phase {
            Phase::Direct => {
                match (&c.answer, c.rtt) {
                    (Answer::Success(_), Some(rtt)) if !c.rtt_ambiguous => {
                        self.report.direct.push(rtt)
                    }
                    (Answer::Success(_) | Answer::Error { .. }, _) => {}
                    (Answer::Timeout, _) => {
                        self.report.direct_lost = self.report.direct_lost.saturating_add(1)
                    }
                }
                if self.report.cancelled {
                    self.phase = Phase::Done;
                } else if self.direct_left > 0 {
                    self.direct_left -= 1;
                    self.session.start(Request::Binding);
                } else {
                    self.session.start(Request::Allocate);
                    self.phase = Phase::Allocating;
                }
            }
            Phase::Allocating => match &c.answer {
                Answer::Success(s) => {
                    self.report.status = AllocateStatus::Allocated;
                    self.report.relayed = s.relayed;
                    self.report.mapped = s.mapped;
                    if self.report.cancelled || s.relayed.is_none() {
                        self.release();
                    } else {
                        self.advance_to_permission();
                    }
                }
                Answer::Error { code, reason, .. } => {
                    self.report.status = AllocateStatus::Rejected {
                        code: *code,
                        reason: reason.clone(),
                    };
                    self.phase = Phase::Done;
                }
                Answer::Timeout => {
                    self.report.status = AllocateStatus::Timeout;
                    self.phase = Phase::Done;
                }
            },
            Phase::Permission => {
                self.report.permission = Some(StepOutcome::from_completion(&c));
                match (&c.answer, self.config.mode, self.report.peer) {
                    (Answer::Success(_), DataMode::Channel, Some(peer)) => {
                        self.session.start(Request::ChannelBind {
                            channel: CHANNEL,
                            peer,
                        });
                        self.phase = Phase::ChannelBind;
                    }
                    (Answer::Success(_), DataMode::Indication, _) => self.start_loop(now),
                    _ => self.release(),
                }
            }
            Phase::ChannelBind => {
                self.report.channel_bind = Some(StepOutcome::from_completion(&c));
                if matches!(c.answer, Answer::Success(_)) {
                    self.start_loop(now);
                } else {
                    self.release();
                }
            }
            Phase::Loop => {}
            Phase::Releasing => {
                self.report.release = Release::from_completion(&c);
                self.phase = Phase::Done;
            }
            Phase::Done => {}
        }
        self.report.software = self.session.software().map(str::to_string);
        if self.phase == Phase::Done
            && self.report.status == AllocateStatus::Allocated
            && self.report.release == Release::NotNeeded
        {
            self.report.release = Release::Timeout;
        }
    }

    fn returned(&mut self, now: Instant, data: &[u8]) -> Result<(), Ignored> {
        let seq = self.seq_of(data).ok_or(Ignored::Unexpected)?;
        let i = seq as usize;
        let Some(sent) = self.sent_at.get(i).copied().flatten() else {
            return Err(Ignored::Unexpected);
        };
        if data != self.payload(seq).as_slice() {
            self.report.corrupted = self.report.corrupted.saturating_add(1);
            return Ok(());
        }
        match self.report.rtts.get_mut(i) {
            Some(slot @ None) => {
                *slot = Some(now.saturating_duration_since(sent));
                self.report.received = self.report.received.saturating_add(1);
            }
            Some(Some(_)) => self.report.duplicates = self.report.duplicates.saturating_add(1),
            None => return Err(Ignored::Unexpected),
        }
        Ok(())
    }

    fn on_server_data(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
    ) -> Result<(), Ignored> {
        if data.first().is_some_and(|b| b >> 6 == 1) {
            let cd = ChannelData::parse(data).ok_or(Ignored::Unexpected)?;
            if cd.channel != CHANNEL {
                return Err(Ignored::Unexpected);
            }
            return self.returned(now, cd.data);
        }
        let view = StunView::parse(data).map_err(Ignored::Malformed)?;
        if let Some(b) = self.peer_binding.as_mut()
            && view.transaction_id() == b.transaction_id()
        {
            b.handle_input(now, from, data)?;
            self.advance_to_permission();
            return Ok(());
        }
        if let Some(d) = DataIndication::from_view(&view) {
            if Some(d.peer) != self.report.peer {
                return Err(Ignored::UnexpectedSource);
            }
            return self.returned(now, d.data);
        }
        if let Some(c) = self.session.handle_response(now, from, &view)? {
            self.on_completion(now, c);
        }
        Ok(())
    }
}

impl Probe for RelayProbe {
    type Output = RelayReport;

    fn handle_input(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> Result<(), Ignored> {
        if self.phase == Phase::Done {
            return Err(Ignored::Late);
        }
        if Some(from) == self.report.relayed {
            // At the peer socket, from the relay: echo it back unchanged (only our own packets).
            if self.phase != Phase::Loop || self.seq_of(data).is_none() {
                return Err(Ignored::Unexpected);
            }
            self.echoes.push_back((from, data.to_vec()));
            return Ok(());
        }
        if from == self.config.session.server || Some(from) == self.config.peer_probe {
            return self.on_server_data(now, from, data);
        }
        Err(Ignored::UnexpectedSource)
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let Some(c) = self.session.handle_timeout(now) {
            self.on_completion(now, c);
        }
        if let Some(b) = self.peer_binding.as_mut()
            && b.poll_timeout().is_some_and(|t| now >= t)
        {
            b.handle_timeout(now);
            self.advance_to_permission();
        }
        if self.phase == Phase::Loop && self.loop_end.is_some_and(|t| now >= t) {
            self.release();
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        if self.phase == Phase::Done {
            return None;
        }
        if let Some((to, data)) = self.echoes.pop_front() {
            buf.extend_from_slice(&data);
            return Some(Transmit {
                destination: to,
                local: LocalSocket::Private(self.config.peer_socket),
                transaction_id: self.data_tid,
                attempt: 0,
            });
        }
        if let Some(t) = self.session.poll_transmit(now, buf) {
            return Some(t);
        }
        if let Some(t) = self
            .peer_binding
            .as_mut()
            .and_then(|b| b.poll_transmit(now, buf))
        {
            return Some(t);
        }
        if self.phase != Phase::Loop || self.next_send.is_none_or(|t| now < t) {
            return None;
        }
        let seq = self.report.sent;
        let peer = self.report.peer?;
        let payload = self.payload(seq);
        match self.config.mode {
            DataMode::Channel => ChannelData::encode(
                CHANNEL,
                &payload,
                self.config.session.transport.is_stream(),
                buf,
            ),
            DataMode::Indication => encode_send_indication(&self.data_tid, &peer, &payload, buf),
        }
        if let Some(s) = self.sent_at.get_mut(seq as usize) {
            *s = Some(now);
        }
        self.report.sent = seq.saturating_add(1);
        if self.report.sent >= self.config.count {
            self.next_send = None;
            self.loop_end = now.checked_add(self.config.linger);
        } else {
            // Pace from the schedule, not from `now`, so a late wake-up does not stretch the run.
            self.next_send = self
                .next_send
                .and_then(|t| t.checked_add(self.config.interval))
                .map(|t| t.max(now));
        }
        Some(Transmit {
            destination: self.config.session.server,
            local: self.config.session.local,
            transaction_id: self.data_tid,
            attempt: 0,
        })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Done {
            return None;
        }
        [
            self.session.poll_timeout(),
            self.peer_binding.as_ref().and_then(|b| b.poll_timeout()),
            self.next_send,
            self.loop_end,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    fn take_output(&mut self) -> Option<RelayReport> {
        super::take_report(
            self.phase == Phase::Done,
            &mut self.output_taken,
            &self.report,
        )
    }

    fn cancel(&mut self, _now: Instant) -> bool {
        self.report.cancelled = true;
        match self.phase {
            Phase::Direct => {
                self.session.abandon();
                self.report.status = AllocateStatus::Cancelled;
                self.phase = Phase::Done;
                false
            }
            Phase::Allocating
                if !self.session.is_idle()
                    && !self.session.config().waits_for_allocate_on_cancel() =>
            {
                // Over a stream: the closed connection takes any allocation with it.
                self.session.abandon();
                self.report.status = AllocateStatus::Cancelled;
                self.phase = Phase::Done;
                false
            }
            Phase::Allocating => {
                if self.session.is_idle() {
                    // Allocated, waiting for the peer address: release now.
                    if self.report.status == AllocateStatus::Allocated {
                        self.release();
                        return true;
                    }
                    self.phase = Phase::Done;
                    return false;
                }
                true
            }
            Phase::Permission | Phase::ChannelBind | Phase::Loop => {
                self.release();
                true
            }
            Phase::Releasing => true,
            Phase::Done => false,
        }
    }

    fn private_sockets(&self) -> Option<PrivateSockets> {
        let control = private_sockets_for(&self.config.session).map_or(0, |p| p.count);
        Some(PrivateSockets {
            count: control.max(self.config.peer_socket.saturating_add(1)),
            toward: self.config.session.server,
        })
    }

    fn handle_local_addr(&mut self, socket: LocalSocket, addr: SocketAddr) {
        if socket == LocalSocket::Private(self.config.peer_socket) {
            self.peer_local = Some(addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::turn::channel::ChannelData;
    use crate::turn::testkit::{FakeServer, creds, server, t0};

    fn config(mode: DataMode, count: u32) -> RelayConfig {
        let mut session = SessionConfig::new(server(), Transport::Udp, LocalSocket::Private(0));
        session.credentials = Some(creds());
        session.retransmit = Retransmit {
            rto: Duration::from_millis(100),
            rc: 3,
            rm: 4,
            deadline: None,
        };
        RelayConfig {
            session,
            peer_socket: 1,
            peer_probe: Some(server()),
            count,
            interval: Duration::from_millis(10),
            size: 100,
            mode,
            direct: 3,
            linger: Duration::from_millis(200),
        }
    }

    /// Drive the probe against the fake server, which also plays the relay: ChannelData or a
    /// Send indication from the control socket reaches the peer socket 7 ms later; the echo
    /// comes back as ChannelData (or a Data indication) 7 ms after that. Packets whose sequence
    /// number `drop` picks vanish.
    fn run(
        mode: DataMode,
        count: u32,
        drop: impl Fn(u32) -> bool,
        cancel_at_ms: Option<u64>,
    ) -> (RelayReport, FakeServer) {
        let mut srv = FakeServer::new();
        let peer_addr: SocketAddr = "192.0.2.77:4000".parse().unwrap();
        let mut p = RelayProbe::new(config(mode, count), TransactionIdSource::new([3; 16]));
        assert_eq!(p.private_sockets().unwrap().count, 2);
        p.handle_local_addr(LocalSocket::Private(1), peer_addr);
        let t0 = t0();
        let mut now = t0;
        // (deliver at, from, bytes)
        let mut inflight: Vec<(Instant, SocketAddr, Vec<u8>)> = Vec::new();
        let delay = Duration::from_millis(7);
        let mut seq_seen = 0u32;
        for _ in 0..100_000 {
            if p.is_done() {
                break;
            }
            if cancel_at_ms.is_some_and(|ms| now == t0 + Duration::from_millis(ms)) {
                p.cancel(now);
            }
            inflight.sort_by_key(|(t, _, _)| *t);
            while inflight.first().is_some_and(|(t, _, _)| *t <= now) {
                let (_, from, data) = inflight.remove(0);
                let _ = p.handle_input(now, from, &data);
            }
            let mut buf = Vec::new();
            while let Some(t) = p.poll_transmit(now, &mut buf) {
                let bytes = std::mem::take(&mut buf);
                match (t.local, t.destination) {
                    (LocalSocket::Private(1), d) if d == srv.relayed => {
                        // Echo from the peer socket into the relay, back to the client.
                        let mut back = Vec::new();
                        if mode == DataMode::Channel {
                            ChannelData::encode(CHANNEL, &bytes, false, &mut back);
                        } else {
                            let mut w = crate::stun::MessageWriter::new(
                                &mut back,
                                crate::stun::MessageType::new(
                                    crate::stun::Class::Indication,
                                    crate::stun::Method::DATA,
                                ),
                                &TransactionId([5; 12]),
                            );
                            w.xor_address(crate::stun::attr::XOR_PEER_ADDRESS, &srv.mapped);
                            w.attr(crate::stun::attr::DATA, &bytes);
                            w.finish();
                        }
                        inflight.push((now + delay, server(), back));
                    }
                    (_, d) if d == server() => {
                        let cd = ChannelData::parse(&bytes);
                        let ind = StunView::parse(&bytes)
                            .ok()
                            .filter(|v| v.message_type().class == crate::stun::Class::Indication);
                        let data = cd.map(|c| c.data.to_vec()).or_else(|| {
                            ind.and_then(|v| {
                                v.attributes()
                                    .find(|(k, _)| *k == crate::stun::attr::DATA)
                                    .map(|(_, d)| d.to_vec())
                            })
                        });
                        if let Some(data) = data {
                            let seq = seq_seen;
                            seq_seen += 1;
                            if !drop(seq) {
                                inflight.push((now + delay, srv.relayed, data));
                            }
                        } else if let Some(resp) = srv.answer(&bytes) {
                            inflight.push((now + Duration::from_millis(2), server(), resp));
                        }
                    }
                    other => panic!("unexpected transmit {other:?}"),
                }
            }
            now += Duration::from_millis(1);
            if p.poll_timeout().is_some_and(|t| t <= now) {
                p.handle_timeout(now);
            }
        }
        (p.take_output().unwrap(), srv)
    }

    #[test]
    fn loops_packets_through_the_channel_and_releases() {
        let (r, srv) = run(DataMode::Channel, 20, |s| s == 5 || s == 6, None);
        assert_eq!(r.status, AllocateStatus::Allocated);
        assert_eq!(r.direct.len(), 3);
        assert!(r.direct.iter().all(|d| *d == Duration::from_millis(2)));
        // The peer address is what the server reported to the peer socket's Binding.
        assert_eq!(r.peer, Some(srv.mapped));
        assert!(matches!(r.permission, Some(StepOutcome::Ok { .. })));
        assert!(matches!(r.channel_bind, Some(StepOutcome::Ok { .. })));
        assert_eq!(r.sent, 20);
        assert_eq!(r.received, 18);
        assert_eq!(r.corrupted, 0);
        assert_eq!(r.rtts[5], None);
        assert_eq!(r.rtts[6], None);
        // Two 7 ms legs, with the 1 ms step of the simulation in between at most.
        for s in r.samples() {
            assert!(
                s >= Duration::from_millis(14) && s <= Duration::from_millis(16),
                "{s:?}"
            );
        }
        assert_eq!(r.release, Release::Released);
        assert!(!srv.allocated);
    }

    #[test]
    fn indications_work_too() {
        let (r, srv) = run(DataMode::Indication, 5, |_| false, None);
        assert_eq!(r.received, 5);
        assert!(r.channel_bind.is_none());
        assert_eq!(r.release, Release::Released);
        assert!(!srv.allocated);
    }

    #[test]
    fn cancel_mid_loop_releases() {
        let (r, srv) = run(DataMode::Channel, 1000, |_| false, Some(200));
        assert!(r.cancelled);
        assert!(r.sent > 0 && r.sent < 1000, "{}", r.sent);
        assert_eq!(r.release, Release::Released);
        assert!(!srv.allocated);
    }

    #[test]
    fn payloads_are_checked() {
        let p = RelayProbe::new(
            config(DataMode::Channel, 3),
            TransactionIdSource::new([3; 16]),
        );
        let good = p.payload(2);
        assert_eq!(good.len(), 100);
        assert_eq!(p.seq_of(&good), Some(2));
        let other = RelayProbe::new(
            config(DataMode::Channel, 3),
            TransactionIdSource::new([4; 16]),
        );
        assert_eq!(p.seq_of(&other.payload(2)), None, "another run's packet");
        assert_eq!(p.seq_of(&good[..10]), None);
    }
}
