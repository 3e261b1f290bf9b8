//! Port sweeps: a TCP connect scan (with a STUN Binding over every open connection, to tell a
//! STUN/TURN listener from a port that merely accepts) and UDP Binding probes on connected
//! sockets, which see ICMP port-unreachable as `ECONNREFUSED` for exactly that port.
//!
//! Both take the sweep's one [`SharedPacing`]: the UDP datagrams and the SYNs take their
//! tokens from the same bucket, so `--rate` holds for the sum, resends included, and both
//! wait as long as the measured round trips say. Every port asked for gets exactly one
//! result (a port the sweep stopped before is left for the caller to mark not probed).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use probes::binding::{BindingConfig, BindingOutcome, BindingStatus, BindingTransaction};
use probes::stun::TransactionId;
use probes::sweep::pacing::PacingConfig;
use probes::sweep::{StunOverTcp, TcpPortResult, TcpState, UdpPortResult, UdpState};
use probes::{Probe, Retransmit};

use tokio::task::JoinSet;

use crate::clock::{Clock, now};
use crate::connect::{local_error, out_of_descriptors};
use crate::driver::Cancel;
use crate::rate::Rate;

pub use crate::connect::{
    ConnectPacer, ConnectSink, Connected, MAX_TRIES, SharedPacing, connect_many_blocking,
};

/// A rate cap so high it never holds a connect back (what `rate: None` means).
const UNLIMITED_PPS: u32 = 100_000_000;

/// How a TCP sweep runs.
#[derive(Clone, Copy, Debug)]
pub struct TcpScanConfig {
    /// How long a try waits before any round trip was measured, and the longest it ever
    /// waits; the measured round trips shorten it (see [`probes::sweep::pacing`]).
    pub connect_timeout: Duration,
    /// How long to wait for a STUN answer on an open port.
    pub stun_timeout: Duration,
    /// Connects in flight (capped further by the descriptor budget).
    pub concurrency: usize,
    /// SYN rate cap; `None` is unlimited.
    pub rate: Option<Rate>,
    /// Send a STUN Binding over open connections.
    pub stun: bool,
}

impl Default for TcpScanConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_millis(1500),
            stun_timeout: Duration::from_millis(1000),
            concurrency: 512,
            rate: Some(Rate::POLITE),
            stun: true,
        }
    }
}

/// Connect to every port of `ports` on `ip` at a fixed rate cap (`cfg.rate`), at most
/// `cfg.concurrency` at once and within the descriptor budget, calling `on_result` as each
/// finishes. Returns whether it was cancelled. [`tcp_sweep`] is the same with a pacing the
/// caller shares with other probes.
pub async fn tcp_scan(
    ip: IpAddr,
    ports: &[u16],
    cfg: TcpScanConfig,
    cancel: Cancel,
    new_tid: impl FnMut() -> TransactionId,
    on_result: impl FnMut(TcpPortResult),
) -> bool {
    let pps = cfg.rate.map_or(UNLIMITED_PPS, |r| r.pps);
    let pacing = SharedPacing::new(
        PacingConfig::fixed(pps, cfg.connect_timeout),
        crate::clock::Monotonic.now(),
    );
    let sweep = TcpSweep {
        window: tcp_window(cfg.concurrency),
        stun_timeout: cfg.stun_timeout,
        stun: cfg.stun,
    };
    tcp_sweep(ip, ports, sweep, pacing, cancel, new_tid, on_result).await
}

/// Connects in flight a TCP sweep of `concurrency` may have: a sweep holds up to four
/// sockets per slot of its window (connects, one batch on its way, STUN checks), all within
/// the descriptor budget.
pub fn tcp_window(concurrency: usize) -> usize {
    (crate::fd::tcp_budget(concurrency.max(1).saturating_mul(4)) / 4).max(1)
}

/// How a paced TCP sweep runs.
#[derive(Clone, Copy, Debug)]
pub struct TcpSweep {
    /// Tries in flight at once ([`tcp_window`]).
    pub window: usize,
    /// How long to wait for a STUN answer on an open port.
    pub stun_timeout: Duration,
    /// Send a STUN Binding over open connections.
    pub stun: bool,
}

/// Connect to every port of `ports` on `ip`, paced by `pacing`, at most `cfg.window` tries in
/// flight, calling `on_result` as each port is known. Returns whether it was cancelled; on
/// a cancel it returns at once with every result it has (an open port whose STUN check was
/// still running is reported open, its STUN not tried), and the ports it has no result for
/// are the caller's to mark.
///
/// The connects run on blocking threads that drive non-blocking sockets with `poll(2)`
/// (no per-socket event-loop registration), which is what makes a large sweep fast. Open
/// connections are handed back to async tasks for the STUN check through a bounded channel,
/// so descriptors stay bounded.
pub async fn tcp_sweep(
    ip: IpAddr,
    ports: &[u16],
    cfg: TcpSweep,
    pacing: SharedPacing,
    cancel: Cancel,
    mut new_tid: impl FnMut() -> TransactionId,
    mut on_result: impl FnMut(TcpPortResult),
) -> bool {
    let window = cfg.window.max(1);
    // One sweeper thread per core (up to 4), each with every n-th port and its share of the
    // window; the rate is the shared bucket's. The per-port cost is kernel work (socket, SYN,
    // RST or SYN-ACK, close), so more cores is what makes a large sweep faster.
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 4)
        .min(ports.len().max(1))
        .min(window);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<(u16, Connected)>>(threads);
    for t in 0..threads {
        let share: Vec<u16> = ports.iter().copied().skip(t).step_by(threads).collect();
        let sweep_cancel = cancel.clone();
        let tx = tx.clone();
        let per_thread = (window / threads).max(1);
        let mut pacer = ConnectPacer::new(pacing.clone());
        let source = crate::source::effective();
        // The thread is not waited for: it sees a cancel within one poll (100 ms) and ends,
        // and its channel closes when this side stops reading.
        drop(tokio::task::spawn_blocking(move || {
            crate::source::scope_blocking(source, || {
                let mut sink = BatchSink {
                    batch: Vec::new(),
                    tx,
                };
                connect_many_blocking(
                    ip,
                    &share,
                    per_thread,
                    &mut pacer,
                    &crate::clock::Monotonic,
                    &sweep_cancel,
                    &mut sink,
                )
            })
        }));
    }
    drop(tx);
    let mut stun_set: JoinSet<TcpPortResult> = JoinSet::new();
    // What each STUN check knows already, in case the sweep stops before it ends.
    let mut checking: HashMap<tokio::task::Id, TcpPortResult> = HashMap::new();
    let mut channel_open = true;
    let mut pending: VecDeque<(u16, Connected)> = VecDeque::new();
    loop {
        // Hand out what has arrived, keeping the STUN checks within the window.
        while stun_set.len() < window {
            let Some((port, c)) = pending.pop_front() else {
                break;
            };
            let (result, stream) = connect_result(port, c);
            match (cfg.stun, stream.map(tokio::net::TcpStream::from_std)) {
                (true, Some(Ok(stream))) => {
                    let addr = SocketAddr::new(ip, port);
                    let tid = new_tid();
                    let h = stun_set.spawn(stun_check(
                        addr,
                        stream,
                        result.clone(),
                        cfg.stun_timeout,
                        tid,
                    ));
                    checking.insert(h.id(), result);
                }
                _ => on_result(result),
            }
        }
        if !channel_open && stun_set.is_empty() && pending.is_empty() {
            return cancel.is_cancelled();
        }
        tokio::select! {
            msg = rx.recv(), if channel_open && pending.is_empty() => match msg {
                None => channel_open = false,
                Some(batch) => pending.extend(batch),
            },
            Some(r) = stun_set.join_next_with_id(), if !stun_set.is_empty() => {
                match r {
                    Ok((id, r)) => {
                        checking.remove(&id);
                        on_result(r);
                    }
                    Err(e) => {
                        if let Some(open) = checking.remove(&e.id()) {
                            on_result(open);
                        }
                    }
                }
            }
            _ = cancel.cancelled() => break,
        }
    }
    // Stopped: keep every result that is known.
    stun_set.abort_all();
    for (_, open) in checking.drain() {
        on_result(open);
    }
    for (port, c) in pending.drain(..) {
        on_result(connect_result(port, c).0);
    }
    true
}

/// What the connect to `port` found, before any STUN check, with the connection if it is
/// open.
fn connect_result(port: u16, c: Connected) -> (TcpPortResult, Option<std::net::TcpStream>) {
    match c {
        Connected::Open {
            time,
            tries,
            stream,
        } => (
            TcpPortResult {
                port,
                state: TcpState::Open,
                connect_time: Some(time),
                stun: StunOverTcp::NotTried,
                tries,
                error: None,
            },
            Some(stream),
        ),
        Connected::Closed {
            state,
            time,
            tries,
            error,
        } => (
            TcpPortResult {
                port,
                state,
                connect_time: time,
                stun: StunOverTcp::NotTried,
                tries,
                error,
            },
            None,
        ),
    }
}

/// Collects a poll turn's outcomes and sends them as one message (one wake-up of the async
/// side per turn instead of one per port).
struct BatchSink {
    batch: Vec<(u16, Connected)>,
    tx: tokio::sync::mpsc::Sender<Vec<(u16, Connected)>>,
}

impl ConnectSink for BatchSink {
    fn outcome(&mut self, port: u16, c: Connected) -> bool {
        self.batch.push((port, c));
        true
    }

    fn turn_done(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        self.tx
            .blocking_send(std::mem::take(&mut self.batch))
            .is_ok()
    }
}

async fn stun_check(
    addr: SocketAddr,
    stream: tokio::net::TcpStream,
    open: TcpPortResult,
    timeout: Duration,
    tid: TransactionId,
) -> TcpPortResult {
    let _ = stream.set_nodelay(true);
    let config = BindingConfig {
        retransmit: crate::tcp::one_transmission(timeout),
        ..BindingConfig::default()
    };
    let deadline = now() + timeout;
    let (outcome, _) =
        crate::tcp::exchange(stream, BindingTransaction::new(tid, addr, config), deadline).await;
    TcpPortResult {
        stun: match outcome.status {
            BindingStatus::Success(r) => StunOverTcp::Answered {
                software: r.software,
            },
            BindingStatus::Error { .. } => StunOverTcp::Answered { software: None },
            BindingStatus::Timeout => StunOverTcp::NoStun,
        },
        ..open
    }
}

/// How a UDP port answered.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum UdpPortOutcome {
    /// A STUN response came back.
    Answered {
        /// The transaction.
        binding: Box<BindingOutcome>,
    },
    /// No answer within the retransmission schedule: dropped somewhere, or nothing listens and
    /// ICMP is filtered.
    Silent,
    /// ICMP port unreachable: the host is reachable and nothing listens (or a firewall rejects
    /// with that ICMP type).
    PortUnreachable,
    /// ICMP host/network unreachable or administratively prohibited.
    Unreachable,
}

/// One Binding transaction to `dest` over a connected UDP socket, retransmitting per
/// `config.retransmit`; ICMP errors for that 5-tuple are seen as socket errors.
pub async fn udp_binding_connected(
    dest: SocketAddr,
    tid: TransactionId,
    config: BindingConfig,
) -> io::Result<UdpPortOutcome> {
    let sock = crate::source::tokio_udp_for(&dest)?;
    sock.connect(dest).await?;
    let mut tx = BindingTransaction::new(tid, dest, config);
    let mut out = Vec::with_capacity(128);
    let mut buf = [0u8; 2048];
    loop {
        let t_now = now();
        out.clear();
        while tx.poll_transmit(t_now, &mut out).is_some() {
            match sock.send(&out).await {
                Ok(_) => {}
                Err(e) => {
                    if let Some(o) = icmp_outcome(&e) {
                        return Ok(o);
                    }
                }
            }
            out.clear();
        }
        let Some(wake) = tx.poll_timeout() else { break };
        match tokio::time::timeout_at(wake.into(), sock.recv(&mut buf)).await {
            Err(_) => tx.handle_timeout(now()),
            Ok(Ok(n)) => {
                let _ = tx.handle_input(now(), dest, buf.get(..n).unwrap_or(&[]));
            }
            Ok(Err(e)) => {
                if let Some(o) = icmp_outcome(&e) {
                    return Ok(o);
                }
            }
        }
        if tx.is_done() {
            break;
        }
    }
    Ok(match tx.take_output() {
        Some(b) if !matches!(b.status, BindingStatus::Timeout) => UdpPortOutcome::Answered {
            binding: Box::new(b),
        },
        _ => UdpPortOutcome::Silent,
    })
}

fn icmp_outcome(e: &io::Error) -> Option<UdpPortOutcome> {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => Some(UdpPortOutcome::PortUnreachable),
        // Windows reports ICMP port unreachable on a connected UDP socket as WSAECONNRESET.
        #[cfg(windows)]
        io::ErrorKind::ConnectionReset => Some(UdpPortOutcome::PortUnreachable),
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
            Some(UdpPortOutcome::Unreachable)
        }
        _ if matches!(
            e.raw_os_error(),
            Some(libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EACCES)
        ) =>
        {
            Some(UdpPortOutcome::Unreachable)
        }
        _ => None,
    }
}

/// How the UDP ports of a sweep are probed.
#[derive(Clone, Copy, Debug)]
pub struct UdpSweep {
    /// Binding requests per port at most (each its own transaction).
    pub tries: u8,
    /// The wait of a first try before any round trip was measured: RFC 8489 §6.2.1's initial
    /// RTO (500 ms). Once the sweep has measured the path, tries wait `SRTT + 4·RTTVAR`
    /// (within 100 ms and this), and each next try twice as long as the one before.
    pub initial_wait: Duration,
    /// How long after its first request a port counts as silent at the latest.
    pub max_wait: Duration,
    /// Ports probed at once (each holds one socket).
    pub concurrency: usize,
}

impl Default for UdpSweep {
    fn default() -> Self {
        Self {
            tries: 3,
            initial_wait: Duration::from_millis(500),
            max_wait: Duration::from_secs(2),
            concurrency: 64,
        }
    }
}

/// How often a UDP probe that waits looks at the estimate again (the sweep's first answers
/// may shorten a wait that started before them).
const UDP_RECHECK: Duration = Duration::from_millis(50);

/// The longest wait for a token, so that a cancel is seen.
const UDP_TOKEN_WAIT: Duration = Duration::from_millis(100);

/// With no probe running and no descriptor to be had: the wait between attempts and how
/// long to keep trying before the port is reported with the error.
const UDP_STARVED_RETRY: Duration = Duration::from_millis(20);
const UDP_STARVED_LIMIT: Duration = Duration::from_secs(2);

/// How one UDP probe ended.
#[derive(Debug)]
enum UdpRun {
    Done(UdpPortResult),
    /// No socket (out of descriptors): try the port again later.
    NoSocket(probes::sweep::LocalError),
}

/// Probe every port of `ports` on `ip` with STUN Binding requests, each from its own
/// connected socket (so an ICMP error names its port), at most `cfg.concurrency` sockets at
/// once, every datagram (resends included) paced by `pacing`. `on_result` gets each port as
/// it is known. Returns whether it was cancelled; then it returns at once, and a port that
/// was waiting for its answer is reported not probed with the tries it had.
///
/// A port whose socket cannot be had for want of descriptors waits for another probe to end
/// and gives it back (the concurrency shrinks to what the process can hold); with none
/// running it tries again for up to 2 s, then is reported with the error.
pub async fn udp_sweep(
    ip: IpAddr,
    ports: &[u16],
    cfg: UdpSweep,
    pacing: SharedPacing,
    cancel: Cancel,
    mut new_tid: impl FnMut() -> TransactionId,
    mut on_result: impl FnMut(UdpPortResult),
) -> bool {
    let mut queue: VecDeque<u16> = ports.iter().copied().collect();
    let mut limit = cfg.concurrency.max(1);
    let mut set: JoinSet<(u16, UdpRun)> = JoinSet::new();
    let mut starved_since: Option<Instant> = None;
    loop {
        while set.len() < limit {
            let Some(port) = queue.pop_front() else { break };
            let tids: Vec<TransactionId> = (0..cfg.tries.max(1)).map(|_| new_tid()).collect();
            let dest = SocketAddr::new(ip, port);
            let (pacing, cancel) = (pacing.clone(), cancel.clone());
            set.spawn(async move { (port, udp_port(dest, tids, cfg, pacing, cancel).await) });
        }
        if set.is_empty() {
            return cancel.is_cancelled();
        }
        let joined = tokio::select! {
            r = set.join_next() => r,
            _ = cancel.cancelled() => {
                // The probes see the cancel themselves and report what they have.
                while let Some(r) = set.join_next().await {
                    if let Ok((_, UdpRun::Done(r))) = r {
                        on_result(r);
                    }
                }
                return true;
            }
        };
        let Some(Ok((port, run))) = joined else {
            continue;
        };
        match run {
            UdpRun::Done(r) => {
                starved_since = None;
                on_result(r);
            }
            UdpRun::NoSocket(error) => {
                if !set.is_empty() {
                    // Others hold sockets: wait for them, and run no more at once than
                    // the process could hold just now.
                    limit = set.len().max(1);
                    queue.push_front(port);
                    continue;
                }
                let t = now();
                let since = *starved_since.get_or_insert(t);
                if t.saturating_duration_since(since) >= UDP_STARVED_LIMIT {
                    let mut r = UdpPortResult::bare(port, UdpState::Error, 0);
                    r.error = Some(error);
                    on_result(r);
                    continue;
                }
                queue.push_front(port);
                tokio::select! {
                    _ = tokio::time::sleep(UDP_STARVED_RETRY) => {}
                    _ = cancel.cancelled() => {}
                }
            }
        }
    }
}

/// The result of a port whose socket or send failed with `e`. After a request went out, an
/// error is an ICMP answer the kernel turned into an errno (port unreachable: refused; host
/// or network unreachable); before any did (`sent` false), or for any other error, it is
/// this host's own (no route, a local policy refusing the send, …): the port was not probed.
fn udp_failure(port: u16, tries: u8, e: &io::Error, sent: bool) -> UdpPortResult {
    let state = match e.kind() {
        io::ErrorKind::ConnectionRefused if sent => UdpState::PortUnreachable,
        // Windows reports ICMP port unreachable on a connected UDP socket as WSAECONNRESET.
        #[cfg(windows)]
        io::ErrorKind::ConnectionReset if sent => UdpState::PortUnreachable,
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable if sent => {
            UdpState::Unreachable
        }
        _ => UdpState::Error,
    };
    let mut r = UdpPortResult::bare(port, state, tries);
    if state != UdpState::PortUnreachable {
        r.error = Some(local_error(e));
    }
    r
}

/// One port: up to `cfg.tries` Binding requests, each a fresh transaction.
async fn udp_port(
    dest: SocketAddr,
    tids: Vec<TransactionId>,
    cfg: UdpSweep,
    pacing: SharedPacing,
    cancel: Cancel,
) -> UdpRun {
    let port = dest.port();
    let sock = match crate::source::tokio_udp_for(&dest) {
        Ok(s) => s,
        Err(e) if out_of_descriptors(&e) => return UdpRun::NoSocket(local_error(&e)),
        Err(e) => return UdpRun::Done(udp_failure(port, 0, &e, false)),
    };
    if let Err(e) = sock.connect(dest).await {
        return UdpRun::Done(udp_failure(port, 0, &e, false));
    }
    let single = BindingConfig {
        retransmit: Retransmit {
            rto: cfg.max_wait,
            rc: 1,
            rm: 1,
            deadline: None,
        },
        ..BindingConfig::default()
    };
    let mut txs: Vec<BindingTransaction> = Vec::with_capacity(tids.len());
    let mut out = Vec::with_capacity(128);
    let mut buf = [0u8; 2048];
    let mut first: Option<Instant> = None;
    let stopped = |tries: u8| UdpRun::Done(UdpPortResult::bare(port, UdpState::NotProbed, tries));
    for (k, tid) in tids.into_iter().enumerate() {
        let tries = k as u8;
        // A token for this datagram.
        loop {
            let t = now();
            let (granted, ready) = {
                let mut p = pacing.lock();
                let g = p.take(t, 1) == 1;
                (g, p.ready_at(t))
            };
            if granted {
                break;
            }
            let until = ready.min(t + UDP_TOKEN_WAIT);
            tokio::select! {
                _ = tokio::time::sleep_until(until.into()) => {}
                _ = cancel.cancelled() => return stopped(tries),
            }
        }
        let sent_at = now();
        if first.is_some_and(|f| sent_at >= f + cfg.max_wait) {
            break;
        }
        let first = *first.get_or_insert(sent_at);
        let mut tx = BindingTransaction::new(tid, dest, single);
        out.clear();
        if tx.poll_transmit(sent_at, &mut out).is_none() {
            break;
        }
        if let Err(e) = sock.send(&out).await {
            return UdpRun::Done(udp_failure(port, tries, &e, tries > 0));
        }
        if k > 0 {
            pacing.lock().resent();
        }
        txs.push(tx);
        let tries = tries + 1;
        let factor = 1u32 << k.min(16);
        loop {
            let wait = pacing.lock().timeout_within(cfg.initial_wait) * factor;
            let wake = (sent_at + wait).min(first + cfg.max_wait);
            let t = now();
            if t >= wake {
                break;
            }
            let check = wake.min(t + UDP_RECHECK);
            tokio::select! {
                r = sock.recv(&mut buf) => match r {
                    Ok(n) => {
                        let at = now();
                        let bytes = buf.get(..n).unwrap_or(&[]);
                        // An answer to any of this port's tries counts (a late one too):
                        // each has its own transaction id, so its round trip is its own.
                        for tx in &mut txs {
                            if tx.handle_input(at, dest, bytes).is_ok()
                                && tx.is_done()
                                && let Some(b) = tx.take_output()
                            {
                                return UdpRun::Done(answered(port, tries, &b));
                            }
                        }
                    }
                    Err(e) => return UdpRun::Done(udp_failure(port, tries, &e, true)),
                },
                _ = tokio::time::sleep_until(check.into()) => {}
                _ = cancel.cancelled() => return stopped(tries),
            }
        }
    }
    UdpRun::Done(UdpPortResult::bare(port, UdpState::Silent, txs.len() as u8))
}

fn answered(port: u16, tries: u8, b: &BindingOutcome) -> UdpPortResult {
    let mut r = UdpPortResult::bare(port, UdpState::Answered, tries);
    r.rtt = b.rtt;
    match &b.status {
        BindingStatus::Success(resp) => {
            r.mapped = resp.mapped_address();
            r.software = resp.software.clone();
        }
        BindingStatus::Error { code, .. } => r.error_code = Some(*code),
        BindingStatus::Timeout => r.state = UdpState::Silent,
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use probes::sweep::pacing::PacingConfig;

    /// A small window forces every socket through many ports: after refusals (reset by the
    /// second connect), next to listeners (open: handed out, replaced) and on the host's own
    /// address, where a socket must never be given its own source port.
    #[test]
    fn reused_sockets_tell_open_from_refused_on_loopback() {
        let ip: IpAddr = "127.77.31.9".parse().unwrap();
        let listeners: Vec<std::net::TcpListener> = (0..3)
            .map(|_| std::net::TcpListener::bind(SocketAddr::new(ip, 0)).unwrap())
            .collect();
        let open: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        let base = open[0].saturating_sub(100).max(1024);
        let mut ports: Vec<u16> = (base..base.saturating_add(300)).collect();
        ports.extend(&open);
        ports.sort_unstable();
        ports.dedup();
        let mut seen = std::collections::HashMap::new();
        let mut sink = |port: u16, c: Connected| {
            let (state, time) = match c {
                Connected::Open { time, .. } => (TcpState::Open, Some(time)),
                Connected::Closed { state, time, .. } => (state, time),
            };
            assert!(seen.insert(port, (state, time)).is_none(), "{port} twice");
            true
        };
        let shared = SharedPacing::new(
            PacingConfig::fixed(UNLIMITED_PPS, Duration::from_secs(2)),
            crate::clock::Monotonic.now(),
        );
        let cancelled = connect_many_blocking(
            ip,
            &ports,
            4,
            &mut ConnectPacer::new(shared),
            &crate::clock::Monotonic,
            &Cancel::never(),
            &mut sink,
        );
        assert!(!cancelled);
        assert_eq!(seen.len(), ports.len());
        for (port, (state, time)) in &seen {
            let expect = if open.contains(port) {
                TcpState::Open
            } else {
                TcpState::Refused
            };
            assert_eq!(*state, expect, "port {port}");
            assert!(time.is_some(), "port {port} has no time");
        }
    }

    fn tids() -> impl FnMut() -> TransactionId {
        let mut n = 0u64;
        move || {
            n += 1;
            let mut t = [7u8; 12];
            t[..8].copy_from_slice(&n.to_be_bytes());
            TransactionId(t)
        }
    }

    fn paced(cfg: PacingConfig) -> SharedPacing {
        SharedPacing::new(cfg, now())
    }

    /// A reflector on loopback that answers every Binding request after `delay`.
    async fn reflector(delay: Duration) -> SocketAddr {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                tokio::time::sleep(delay).await;
                let addrs = probes::reflector::ServerAddrs {
                    primary_ip: addr.ip(),
                    primary_port: addr.port(),
                    alt_ip: None,
                    alt_port: None,
                };
                let mut out = Vec::new();
                probes::reflector::respond(&buf[..n], from, &addrs, None, &mut out);
                let _ = sock.send_to(&out, from).await;
            }
        });
        addr
    }

    /// Ports bound on loopback that never answer (and keep what they are sent).
    fn silent_ports(n: usize) -> Vec<std::net::UdpSocket> {
        (0..n)
            .map(|_| {
                let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                s.set_nonblocking(true).unwrap();
                s
            })
            .collect()
    }

    fn ports_of(socks: &[std::net::UdpSocket]) -> Vec<u16> {
        socks
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect()
    }

    /// The UDP probes of `ports` on 127.0.0.1 with the default settings.
    async fn sweep_loopback(
        ports: &[u16],
        pacing: SharedPacing,
        cancel: Cancel,
        on_result: impl FnMut(UdpPortResult),
    ) -> bool {
        udp_sweep(
            "127.0.0.1".parse().unwrap(),
            ports,
            UdpSweep::default(),
            pacing,
            cancel,
            tids(),
            on_result,
        )
        .await
    }

    fn received(socks: &[std::net::UdpSocket]) -> usize {
        let mut buf = [0u8; 256];
        socks
            .iter()
            .map(|s| std::iter::from_fn(|| s.recv(&mut buf).ok()).count())
            .sum()
    }

    /// Answered, refused by ICMP port unreachable, and silent after exactly three tries
    /// whose waits double from RFC 8489's 500 ms initial RTO, capped at the port's 2 s.
    #[tokio::test(start_paused = true)]
    async fn udp_ports_answer_refuse_or_stay_silent_on_schedule() {
        let answering = reflector(Duration::from_millis(30)).await;
        let quiet = silent_ports(1);
        let closed = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap().port()
        };
        let ports = [
            answering.port(),
            closed,
            quiet[0].local_addr().unwrap().port(),
        ];
        let mut got = Vec::new();
        let start = now();
        let cancelled = sweep_loopback(
            &ports,
            paced(PacingConfig::fixed(1000, Duration::from_secs(1))),
            Cancel::never(),
            |r| got.push((r, (now() - start).as_millis())),
        )
        .await;
        assert!(!cancelled);
        got.sort_by_key(|(r, _)| r.port);
        let by = |p: u16| got.iter().find(|(r, _)| r.port == p).unwrap();
        let (a, _) = by(answering.port());
        assert_eq!(
            (a.state, a.tries, a.rtt),
            (UdpState::Answered, 1, Some(Duration::from_millis(30)))
        );
        assert!(a.mapped.is_some());
        assert_eq!(by(closed).0.state, UdpState::PortUnreachable);
        let (q, at) = by(ports[2]);
        assert_eq!((q.state, q.tries), (UdpState::Silent, 3));
        // Sent at 0, 500 and 1500 ms; silent at the 2 s cap.
        assert_eq!(*at, 2000);
        assert_eq!(received(&quiet), 3);
    }

    /// Once the sweep has measured the path, the waits shrink to its estimate (100 ms at
    /// the least), doubling from try to try.
    #[tokio::test(start_paused = true)]
    async fn measured_round_trips_shorten_the_udp_waits() {
        let quiet = silent_ports(1);
        let pacing = paced(PacingConfig::fixed(1000, Duration::from_secs(1)));
        pacing.lock().answered(
            now(),
            1,
            false,
            Some(Duration::from_millis(2)),
            probes::sweep::pacing::Answer::Direct,
        );
        let start = now();
        let mut at = None;
        sweep_loopback(&ports_of(&quiet), pacing.clone(), Cancel::never(), |r| {
            assert_eq!((r.state, r.tries), (UdpState::Silent, 3));
            at = Some((now() - start).as_millis());
        })
        .await;
        // 100 + 200 + 400 ms.
        assert_eq!(at, Some(700));
        assert_eq!(pacing.summary().resends, 2);
    }

    /// `--rate 10` is ten datagrams a second for the UDP probes, resends included, counted
    /// where they arrive.
    #[tokio::test(start_paused = true)]
    async fn the_udp_probes_keep_to_the_rate() {
        let quiet = silent_ports(40);
        let ports = ports_of(&quiet);
        let start = now();
        let mut results = 0;
        sweep_loopback(
            &ports,
            paced(PacingConfig::fixed(10, Duration::from_secs(1))),
            Cancel::never(),
            |r| {
                assert_eq!(r.state, UdpState::Silent);
                results += 1;
            },
        )
        .await;
        let secs = (now() - start).as_secs_f64();
        let sent = received(&quiet);
        assert_eq!(results, 40);
        assert!(sent >= 40, "{sent}");
        // One token at the start, then ten a second.
        assert!(
            sent as f64 <= 1.0 + 10.0 * secs,
            "{sent} datagrams in {secs} s"
        );
    }

    /// A cancel ends the UDP probes at once; ports still waiting are not probed (with the
    /// tries they had), never silent.
    #[tokio::test(start_paused = true)]
    async fn a_cancel_ends_the_udp_probes_at_once_and_invents_no_silence() {
        let quiet = silent_ports(3);
        let ports = ports_of(&quiet);
        let (handle, cancel) = Cancel::new();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            handle.cancel();
        });
        let start = now();
        let mut got = Vec::new();
        let cancelled = sweep_loopback(
            &ports,
            paced(PacingConfig::fixed(1000, Duration::from_secs(1))),
            cancel,
            |r| got.push(r),
        )
        .await;
        assert!(cancelled);
        assert_eq!((now() - start).as_millis(), 300);
        assert_eq!(got.len(), 3);
        assert!(
            got.iter()
                .all(|r| r.state == UdpState::NotProbed && r.tries == 1)
        );
    }
}
