//! The drive loop: runs any number of sans-IO [`Probe`]s over shared UDP sockets.
//!
//! One task owns everything (no locks on the hot path). Each turn of the loop:
//! 1. receive every queued datagram (batched), route it by STUN transaction id to its probe;
//! 2. fire expired timers (`handle_timeout`);
//! 3. let probes with work transmit, as far as the token bucket allows, then admit new probes
//!    while the in-flight cap and the bucket allow;
//! 4. flush the send batch;
//! 5. sleep until a socket is readable, the next timer, the next token, or cancellation.
//!
//! Invariants: a probe is in the transaction table exactly while it is in flight; every probe
//! admitted ends in exactly one `Finished` or `Abandoned` event; a probe's timer is re-armed
//! only when it is not waiting for a token, so the loop never spins on a past deadline.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use probes::stun::TransactionId;
use probes::stun::view::check_header;
use probes::{Ignored, LocalSocket, Probe, Received};
use tokio::sync::mpsc;

use crate::clock::now as clock_now;
use crate::rate::{Rate, TokenBucket};
use crate::udp::{RecvBuffers, UdpEndpoint};

/// Limits of one run, all of them a network engineer's to set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Limits {
    /// Packet rate cap (every datagram counts, retransmissions included); `None` is unlimited.
    pub rate: Option<Rate>,
    /// Probes in flight at once.
    pub max_in_flight: usize,
    /// Wall-clock cap on the whole run; when reached the run stops as if cancelled.
    pub deadline: Option<Duration>,
    /// After cancellation, how long probes that have cleanup to do (TURN deallocation) may
    /// keep running.
    pub drain: Duration,
    /// How datagrams to many destinations are handed to the kernel.
    pub send_path: SendPath,
}

/// The send system call strategy (measured in BENCHMARKS.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SendPath {
    /// `sendmmsg` for datagrams to different destinations, GSO for runs to one destination.
    #[default]
    Batched,
    /// One `sendmsg` per datagram (quinn-udp), GSO for runs to one destination.
    PerPacket,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            rate: Some(Rate::POLITE),
            max_in_flight: 1024,
            deadline: None,
            drain: Duration::from_secs(2),
            send_path: SendPath::Batched,
        }
    }
}

/// What happened to a probe; `probe` is its index in the input order.
#[derive(Debug)]
pub enum Event<O> {
    /// The probe was admitted and will transmit.
    Started {
        /// Input index.
        probe: usize,
    },
    /// A datagram was sent for the probe (`attempt` > 0 is a retransmission).
    Transmitted {
        /// Input index.
        probe: usize,
        /// 0 first, n-th retransmission.
        attempt: u8,
    },
    /// The probe finished with its output.
    Finished {
        /// Input index.
        probe: usize,
        /// What it concluded.
        output: O,
    },
    /// The probe was dropped unfinished (cancellation, deadline, socket error).
    Abandoned {
        /// Input index.
        probe: usize,
    },
}

/// Counters of one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Probes admitted.
    pub probes_started: u64,
    /// Probes that produced an output.
    pub probes_finished: u64,
    /// Probes dropped unfinished.
    pub probes_abandoned: u64,
    /// Datagrams handed to the kernel.
    pub datagrams_sent: u64,
    /// Of which retransmissions.
    pub retransmissions: u64,
    /// Datagrams received on the engine's sockets.
    pub datagrams_received: u64,
    /// Received but not STUN (bad header): junk, never trusted.
    pub malformed: u64,
    /// STUN, but no probe in flight owns the transaction id.
    pub unmatched: u64,
    /// Rejected by a probe: wrong source address.
    pub unexpected_source: u64,
    /// Rejected by a probe: FINGERPRINT mismatch.
    pub bad_fingerprint: u64,
    /// Rejected by a probe: duplicate or late reply.
    pub duplicates: u64,
    /// Rejected by a probe for another reason (not a response, wrong method …).
    pub rejected_other: u64,
    /// Send calls that failed (other than a full queue).
    pub send_errors: u64,
}

/// How the run ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct RunReport {
    /// Counters.
    pub counters: Counters,
    /// Stopped by cancellation (Ctrl-C).
    pub interrupted: bool,
    /// Stopped by the global deadline.
    pub deadline_reached: bool,
    /// Wall-clock duration of the run, seconds.
    pub elapsed: f64,
}

/// Errors that end a run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// A socket could not be created or bound.
    #[error("cannot bind a UDP socket on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The event loop's socket failed.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
}

impl EngineError {
    /// For `map_err`: a socket could not be bound on `addr`.
    pub(crate) fn bind_on(addr: SocketAddr) -> impl FnOnce(io::Error) -> Self {
        move |source| EngineError::Bind { addr, source }
    }
}

mod cancel;
mod private;
pub use cancel::{Cancel, CancelHandle, cancel_on_signals};
pub(crate) use private::private_socket;
use private::{PRIVATE_QUEUE, PrivateDatagram};

/// Why a run begins to stop.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stopping {
    /// It was cancelled.
    pub(crate) interrupted: bool,
    /// Its deadline passed (and it was not cancelled).
    pub(crate) deadline_reached: bool,
}

/// Whether a run begins to stop at `now`: cancelled, or past `deadline_at`.
pub(crate) fn stopping(
    cancel: &Cancel,
    deadline_at: Option<Instant>,
    now: Instant,
) -> Option<Stopping> {
    let timed_out = deadline_at.is_some_and(|t| now >= t);
    if cancel.is_cancelled() || timed_out {
        let interrupted = cancel.is_cancelled();
        Some(Stopping {
            interrupted,
            deadline_reached: timed_out && !interrupted,
        })
    } else {
        None
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct SlotKey {
    index: u32,
    generation: u32,
}

struct Slot<P> {
    probe: P,
    input_index: usize,
    generation: u32,
    /// The probe's first transaction id inline (most probes have exactly one), the rest in
    /// `more_tids`: no heap allocation per Binding transaction.
    first_tid: Option<TransactionId>,
    more_tids: Vec<TransactionId>,
    timer: Option<Instant>,
    queued: bool,
    cleaning_up: bool,
    /// Probe-private sockets and their reader tasks (a boxed slice: 16 bytes when unused).
    private: Box<[(Arc<UdpEndpoint>, tokio::task::JoinHandle<()>)]>,
}

impl<P> Drop for Slot<P> {
    fn drop(&mut self) {
        for (_, task) in self.private.iter() {
            task.abort();
        }
    }
}

/// A pending outgoing datagram in the send batch.
#[derive(Clone, Copy)]
struct Pending {
    socket: SocketSel,
    destination: SocketAddr,
    start: usize,
    len: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SocketSel {
    V4,
    V6,
    Private(SlotKey, u8),
}

/// Datagrams queued before the batch is flushed (bounds the delay between a probe's `now` and
/// the actual send).
const SEND_BATCH: usize = 64;
/// Receive batches per socket per loop turn before timers and sends get a turn.
const RECV_TURNS: usize = 8;

struct Driver<P: Probe, F> {
    slots: Vec<Option<Slot<P>>>,
    free: Vec<u32>,
    next_generation: u32,
    table: HashMap<TransactionId, SlotKey>,
    timers: BinaryHeap<Reverse<(Instant, SlotKey)>>,
    ready: VecDeque<SlotKey>,
    bucket: Option<TokenBucket>,
    v4: Option<UdpEndpoint>,
    v6: Option<UdpEndpoint>,
    recv_buf: Option<RecvBuffers>,
    send_buf: Vec<u8>,
    pending: Vec<Pending>,
    private_tx: mpsc::Sender<PrivateDatagram>,
    /// The live slots that have private sockets.
    with_private: Vec<SlotKey>,
    counters: Counters,
    in_flight: usize,
    send_path: SendPath,
    /// Whether the source port of the binding in force (IPv4, IPv6) went to a socket already:
    /// only the first socket of each family in a run gets it.
    port_taken: [bool; 2],
    on_event: F,
}

/// Run `probes` to completion (or cancellation / deadline), reporting every event to
/// `on_event` as it happens. Returns the run's counters and how it ended.
pub async fn run<P, I, F>(
    probes: I,
    limits: Limits,
    cancel: Cancel,
    on_event: F,
) -> Result<RunReport, EngineError>
where
    P: Probe,
    I: IntoIterator<Item = P>,
    F: FnMut(Event<P::Output>),
{
    let start = clock_now();
    let (private_tx, mut private_rx) = mpsc::channel(PRIVATE_QUEUE);
    let mut d = Driver {
        slots: Vec::new(),
        free: Vec::new(),
        next_generation: 0,
        table: HashMap::new(),
        timers: BinaryHeap::new(),
        ready: VecDeque::new(),
        bucket: limits.rate.map(|r| TokenBucket::new(r, start)),
        v4: None,
        v6: None,
        recv_buf: Some(RecvBuffers::default()),
        send_buf: Vec::with_capacity(SEND_BATCH * 128),
        pending: Vec::with_capacity(SEND_BATCH),
        private_tx,
        with_private: Vec::new(),
        counters: Counters::default(),
        in_flight: 0,
        send_path: limits.send_path,
        port_taken: [false; 2],
        on_event,
    };
    let mut source = probes.into_iter().enumerate();
    let mut exhausted = false;
    let mut report = RunReport::default();
    let deadline_at = limits.deadline.map(|dl| start + dl);
    let mut drain_until: Option<Instant> = None;

    loop {
        let now = clock_now();
        if drain_until.is_none()
            && let Some(s) = stopping(&cancel, deadline_at, now)
        {
            report.interrupted = s.interrupted;
            report.deadline_reached = s.deadline_reached;
            d.cancel_all(now);
            drain_until = Some(now + limits.drain);
        }
        if drain_until.is_some_and(|t| now >= t) {
            d.abandon_all();
        }

        d.receive_all(now)?;
        while let Ok(p) = private_rx.try_recv() {
            d.deliver_private(now, p);
        }
        d.receive_private(now);
        d.fire_timers(now);
        d.serve_ready(now);
        if drain_until.is_none() {
            while !exhausted
                && d.in_flight < limits.max_in_flight
                && d.ready.is_empty()
                && d.batch_has_room()
            {
                if !d.token_available(now) {
                    break;
                }
                match source.next() {
                    Some((index, probe)) => d.admit(now, index, probe)?,
                    None => exhausted = true,
                }
            }
        }
        d.flush().await?;

        if d.in_flight == 0 && (exhausted || drain_until.is_some()) {
            break;
        }

        // More can be done right away: yield (so other tasks run) and go round again.
        let can_admit = drain_until.is_none()
            && !exhausted
            && d.in_flight < limits.max_in_flight
            && d.ready.is_empty();
        let tokens = d.token_available(clock_now());
        let timers_due = d
            .timers
            .peek()
            .is_some_and(|Reverse((t, _))| *t <= clock_now());
        if timers_due || (tokens && (can_admit || !d.ready.is_empty())) {
            tokio::task::yield_now().await;
            continue;
        }

        let mut wake = d.timers.peek().map(|Reverse((t, _))| *t);
        if (can_admit || !d.ready.is_empty())
            && !tokens
            && let Some(b) = d.bucket.as_mut()
        {
            let t = b.ready_at(clock_now());
            wake = Some(wake.map_or(t, |w| w.min(t)));
        }
        let sleep = crate::clock::sleep_until_first(wake, deadline_at, drain_until);
        let draining = drain_until.is_some();
        tokio::select! {
            r = readable(d.v4.as_ref()) => r?,
            r = readable(d.v6.as_ref()) => r?,
            Some(p) = private_rx.recv() => d.deliver_private(clock_now(), p),
            _ = sleep => {}
            _ = cancel.cancelled(), if !draining => {}
        }
    }
    report.counters = d.counters;
    report.elapsed = clock_now().saturating_duration_since(start).as_secs_f64();
    Ok(report)
}

/// Run a single probe that paces itself (a TURN session, a relay benchmark) with no packet
/// cap, and return its output (`None` if it was abandoned) with the run's report. `deadline`
/// caps the whole run.
pub async fn run_one<P: Probe>(
    probe: P,
    deadline: Option<Duration>,
    cancel: Cancel,
) -> Result<(Option<P::Output>, RunReport), EngineError> {
    let limits = Limits {
        rate: None,
        max_in_flight: 1,
        deadline,
        ..Limits::default()
    };
    let mut out = None;
    let report = run(std::iter::once(probe), limits, cancel, |ev| {
        if let Event::Finished { output, .. } = ev {
            out = Some(output);
        }
    })
    .await?;
    Ok((out, report))
}

async fn readable(ep: Option<&UdpEndpoint>) -> io::Result<()> {
    match ep {
        Some(ep) => ep.readable().await,
        None => std::future::pending().await,
    }
}

impl<P: Probe, F: FnMut(Event<P::Output>)> Driver<P, F> {
    fn slot(&mut self, key: SlotKey) -> Option<&mut Slot<P>> {
        self.slots
            .get_mut(key.index as usize)?
            .as_mut()
            .filter(|s| s.generation == key.generation)
    }

    fn token_available(&mut self, now: Instant) -> bool {
        match self.bucket.as_mut() {
            Some(b) => b.ready_at(now) <= now,
            None => true,
        }
    }

    fn admit(&mut self, now: Instant, input_index: usize, probe: P) -> Result<(), EngineError> {
        self.next_generation = self.next_generation.wrapping_add(1);
        let generation = self.next_generation;
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        let key = SlotKey { index, generation };
        let mut slot = Slot {
            probe,
            input_index,
            generation,
            first_tid: None,
            more_tids: Vec::new(),
            timer: None,
            queued: false,
            cleaning_up: false,
            private: Box::new([]),
        };
        self.open_private(key, &mut slot)?;
        if let Some(s) = self.slots.get_mut(index as usize) {
            *s = Some(slot);
        }
        self.in_flight += 1;
        self.counters.probes_started += 1;
        (self.on_event)(Event::Started { probe: input_index });
        self.service(now, key);
        Ok(())
    }

    /// Let the probe transmit (within the rate limit), then re-arm its timer or finish it.
    fn service(&mut self, now: Instant, key: SlotKey) {
        loop {
            if !self.token_available(now) {
                if let Some(slot) = self.slot(key)
                    && !slot.queued
                {
                    slot.queued = true;
                    self.ready.push_back(key);
                }
                return;
            }
            let Some(slot) = self
                .slots
                .get_mut(key.index as usize)
                .and_then(Option::as_mut)
            else {
                return;
            };
            if slot.generation != key.generation {
                return;
            }
            let start = self.send_buf.len();
            let Some(t) = slot.probe.poll_transmit(now, &mut self.send_buf) else {
                break;
            };
            let tid = t.transaction_id;
            let known = slot.first_tid == Some(tid) || slot.more_tids.contains(&tid);
            if !known {
                if slot.first_tid.is_none() {
                    slot.first_tid = Some(tid);
                } else {
                    slot.more_tids.push(tid);
                }
                self.table.insert(tid, key);
            }
            let socket = match t.local {
                LocalSocket::Default if t.destination.is_ipv4() => SocketSel::V4,
                LocalSocket::Default => SocketSel::V6,
                LocalSocket::Private(n) => SocketSel::Private(key, n),
            };
            let input_index = slot.input_index;
            self.pending.push(Pending {
                socket,
                destination: t.destination,
                start,
                len: self.send_buf.len() - start,
            });
            if let Some(b) = self.bucket.as_mut() {
                b.take(now);
            }
            self.counters.datagrams_sent += 1;
            if t.attempt > 0 {
                self.counters.retransmissions += 1;
            }
            (self.on_event)(Event::Transmitted {
                probe: input_index,
                attempt: t.attempt,
            });
        }
        self.rearm_or_finish(now, key);
    }

    fn rearm_or_finish(&mut self, now: Instant, key: SlotKey) {
        let Some(slot) = self.slot(key) else { return };
        if slot.probe.is_done() {
            self.finish(key);
            return;
        }
        let next = slot.probe.poll_timeout().map(|t| {
            // A probe asking for a time already past would make the loop spin: nudge it.
            if t <= now {
                now + Duration::from_millis(1)
            } else {
                t
            }
        });
        if next != slot.timer {
            slot.timer = next;
            if let Some(t) = next {
                self.timers.push(Reverse((t, key)));
            }
        }
    }

    /// Take the slot of `key` out of the run: its transaction ids, its private sockets' entry
    /// and its place in flight go with it. `None` if it is gone already.
    fn take_slot(&mut self, key: SlotKey) -> Option<Slot<P>> {
        let slot = self
            .slots
            .get_mut(key.index as usize)?
            .take_if(|s| s.generation == key.generation)?;
        for tid in slot.first_tid.iter().chain(&slot.more_tids) {
            self.table.remove(tid);
        }
        if !slot.private.is_empty() {
            self.with_private.retain(|k| *k != key);
        }
        self.free.push(key.index);
        self.in_flight -= 1;
        Some(slot)
    }

    fn finish(&mut self, key: SlotKey) {
        let Some(mut slot) = self.take_slot(key) else {
            return;
        };
        match slot.probe.take_output() {
            Some(output) => {
                self.counters.probes_finished += 1;
                (self.on_event)(Event::Finished {
                    probe: slot.input_index,
                    output,
                });
            }
            None => {
                self.counters.probes_abandoned += 1;
                (self.on_event)(Event::Abandoned {
                    probe: slot.input_index,
                });
            }
        }
    }

    fn abandon(&mut self, key: SlotKey) {
        let Some(slot) = self.take_slot(key) else {
            return;
        };
        self.counters.probes_abandoned += 1;
        (self.on_event)(Event::Abandoned {
            probe: slot.input_index,
        });
    }

    fn live_keys(&self) -> Vec<SlotKey> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.as_ref().map(|s| SlotKey {
                    index: i as u32,
                    generation: s.generation,
                })
            })
            .collect()
    }

    fn cancel_all(&mut self, now: Instant) {
        for key in self.live_keys() {
            let Some(slot) = self.slot(key) else { continue };
            if slot.probe.cancel(now) {
                slot.cleaning_up = true;
                self.service(now, key);
            } else {
                self.abandon(key);
            }
        }
    }

    fn abandon_all(&mut self) {
        for key in self.live_keys() {
            self.abandon(key);
        }
    }

    /// Whether the send batch can take more before it must be flushed (keeps the time between
    /// a probe's `now` and the actual send short, and the batch's memory bounded).
    fn batch_has_room(&self) -> bool {
        self.pending.len() < SEND_BATCH
    }

    fn fire_timers(&mut self, now: Instant) {
        while self.batch_has_room() {
            let Some(Reverse((t, key))) = self.timers.peek().copied() else {
                break;
            };
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(slot) = self.slot(key) else { continue };
            if slot.timer != Some(t) {
                continue; // stale entry
            }
            slot.timer = None;
            slot.probe.handle_timeout(now);
            if !slot.queued {
                self.service(now, key);
            }
        }
    }

    fn serve_ready(&mut self, now: Instant) {
        while self.batch_has_room() && self.token_available(now) {
            let Some(key) = self.ready.pop_front() else {
                break;
            };
            if let Some(slot) = self.slot(key) {
                slot.queued = false;
                self.service(now, key);
            }
        }
    }

    fn dispatch(
        &mut self,
        now: Instant,
        key: SlotKey,
        socket: LocalSocket,
        from: SocketAddr,
        data: &[u8],
    ) {
        let Some(slot) = self.slot(key) else {
            self.counters.unmatched += 1;
            return;
        };
        let result = slot
            .probe
            .handle_input_on(now, Received { socket, from, data });
        let queued = slot.queued;
        let c = &mut self.counters;
        match result {
            Ok(()) => {}
            Err(Ignored::Malformed(_)) => c.malformed += 1,
            Err(Ignored::UnknownTransaction) => c.unmatched += 1,
            Err(Ignored::UnexpectedSource) => c.unexpected_source += 1,
            Err(Ignored::BadFingerprint) => c.bad_fingerprint += 1,
            Err(Ignored::Late) => c.duplicates += 1,
            Err(_) => c.rejected_other += 1,
        }
        if !queued {
            self.service(now, key);
        }
    }

    fn on_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.counters.datagrams_received += 1;
        let tid = match check_header(data) {
            Ok((_, tid)) => tid,
            Err(_) => {
                self.counters.malformed += 1;
                return;
            }
        };
        match self.table.get(&tid).copied() {
            Some(key) => self.dispatch(now, key, LocalSocket::Default, from, data),
            None => self.counters.unmatched += 1,
        }
    }

    fn receive_all(&mut self, now: Instant) -> Result<(), EngineError> {
        let Some(mut rb) = self.recv_buf.take() else {
            return Ok(());
        };
        let mut result = Ok(());
        'families: for v6 in [false, true] {
            for _ in 0..RECV_TURNS {
                let ep = if v6 {
                    self.v6.as_ref()
                } else {
                    self.v4.as_ref()
                };
                let Some(ep) = ep else { break };
                match rb.recv(ep) {
                    Ok(n) => {
                        for (from, d) in rb.datagrams(n) {
                            self.on_datagram(now, from, d);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // An ICMP error queued on the socket can surface as a receive error.
                    Err(e) if is_icmp_error(&e) => continue,
                    Err(e) => {
                        result = Err(e.into());
                        break 'families;
                    }
                }
            }
        }
        self.recv_buf = Some(rb);
        result
    }

    /// Whether the next socket of this family gets the binding's source port (the first one
    /// does).
    fn take_port(&mut self, v4: bool) -> bool {
        let [v4_taken, v6_taken] = &mut self.port_taken;
        let slot = if v4 { v4_taken } else { v6_taken };
        !std::mem::replace(slot, true)
    }

    fn endpoint(&mut self, sel: SocketSel) -> Result<Option<&UdpEndpoint>, EngineError> {
        Ok(match sel {
            SocketSel::V4 => {
                if self.v4.is_none() {
                    let first = self.take_port(true);
                    let any = SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0));
                    self.v4 = Some(
                        UdpEndpoint::bound_for(&any, first).map_err(EngineError::bind_on(any))?,
                    );
                }
                self.v4.as_ref()
            }
            SocketSel::V6 => {
                if self.v6.is_none() {
                    let first = self.take_port(false);
                    let any = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0));
                    self.v6 = Some(
                        UdpEndpoint::bound_for(&any, first).map_err(EngineError::bind_on(any))?,
                    );
                }
                self.v6.as_ref()
            }
            SocketSel::Private(key, n) => self
                .slot(key)
                .and_then(|s| s.private.get(usize::from(n)))
                .map(|(ep, _)| &**ep),
        })
    }

    async fn flush(&mut self) -> Result<(), EngineError> {
        let pending = std::mem::take(&mut self.pending);
        let buf = std::mem::take(&mut self.send_buf);
        let result = self.flush_batch(&pending, &buf).await;
        self.pending = pending;
        self.pending.clear();
        self.send_buf = buf;
        self.send_buf.clear();
        result
    }

    /// Send `pending` (whose bytes are in `buf`): a run of equal-size datagrams to one
    /// destination goes as one GSO send; other datagrams from one socket go through
    /// `sendmmsg` up to 64 at a time (or one `sendmsg` each with [`SendPath::PerPacket`]).
    async fn flush_batch(&mut self, pending: &[Pending], buf: &[u8]) -> Result<(), EngineError> {
        let mut i = 0;
        while let Some(p) = pending.get(i).copied() {
            let gso_max = match self.endpoint(p.socket)? {
                Some(ep) => ep.max_gso_segments(),
                None => {
                    self.counters.send_errors += 1;
                    i += 1;
                    continue;
                }
            };
            // Length of a GSO run starting at i.
            let mut run = 1;
            while run < gso_max {
                match pending.get(i + run) {
                    Some(q)
                        if q.socket == p.socket
                            && q.destination == p.destination
                            && q.len == p.len
                            && q.start == p.start + run * p.len =>
                    {
                        run += 1
                    }
                    _ => break,
                }
            }
            if run > 1 || self.send_path == SendPath::PerPacket {
                let bytes = buf.get(p.start..p.start + run * p.len).unwrap_or(&[]);
                let seg = (run > 1).then_some(p.len);
                self.send_one(p.socket, p.destination, bytes, seg, run)
                    .await?;
                i += run;
                continue;
            }
            // A sendmmsg batch: following datagrams from the same socket that do not start a
            // GSO run of their own.
            let mut items: Vec<(SocketAddr, &[u8])> = Vec::with_capacity(crate::udp::SEND_MMSG);
            let mut j = i;
            while let Some(q) = pending.get(j) {
                if q.socket != p.socket || items.len() == crate::udp::SEND_MMSG {
                    break;
                }
                items.push((
                    q.destination,
                    buf.get(q.start..q.start + q.len).unwrap_or(&[]),
                ));
                j += 1;
            }
            let mut done = 0;
            while done < items.len() {
                let Some(ep) = self.endpoint(p.socket)? else {
                    break;
                };
                match ep.try_send_many(items.get(done..).unwrap_or(&[])) {
                    Ok(0) => break,
                    Ok(n) => done += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => ep.writable().await?,
                    Err(_) => {
                        // The first datagram failed (e.g. EACCES, unreachable): count it and
                        // go on with the rest.
                        self.counters.send_errors += 1;
                        done += 1;
                    }
                }
            }
            i = j;
        }
        Ok(())
    }

    async fn send_one(
        &mut self,
        sel: SocketSel,
        destination: SocketAddr,
        bytes: &[u8],
        segment: Option<usize>,
        datagrams: usize,
    ) -> Result<(), EngineError> {
        let Some(ep) = self.endpoint(sel)? else {
            self.counters.send_errors += datagrams as u64;
            return Ok(());
        };
        loop {
            match ep.try_send(destination, bytes, segment) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ep.writable().await?,
                Err(_) => {
                    self.counters.send_errors += datagrams as u64;
                    return Ok(());
                }
            }
        }
    }
}

fn is_icmp_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
    )
}
