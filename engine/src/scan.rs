//! Port sweeps: a TCP connect scan (with a STUN Binding over every open connection, to tell a
//! STUN/TURN listener from a port that merely accepts) and UDP Binding probes on connected
//! sockets, which see ICMP port-unreachable as `ECONNREFUSED` for exactly that port.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use probes::binding::{BindingConfig, BindingOutcome, BindingStatus, BindingTransaction};
use probes::stun::TransactionId;
use probes::sweep::{StunOverTcp, TcpPortResult, TcpState};
use probes::{Probe, Retransmit};
use tokio::net::UdpSocket;
use tokio::task::JoinSet;

use crate::driver::Cancel;
use crate::rate::{Rate, TokenBucket};

/// How a TCP sweep runs.
#[derive(Clone, Copy, Debug)]
pub struct TcpScanConfig {
    /// How long a connect may take before the port counts as filtered. The kernel resends a SYN
    /// after 1 s, so values above 1 s give a dropped first SYN a second chance.
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

/// Classify a connect error: RST (or ICMP port unreachable) is refused; ICMP host/net
/// unreachable or administratively prohibited is unreachable; a timeout is filtered.
pub fn connect_error_state(e: &io::Error) -> TcpState {
    match e.kind() {
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset => TcpState::Refused,
        io::ErrorKind::TimedOut => TcpState::Filtered,
        io::ErrorKind::HostUnreachable
        | io::ErrorKind::NetworkUnreachable
        | io::ErrorKind::PermissionDenied => TcpState::Unreachable,
        _ => match e.raw_os_error() {
            Some(libc::EHOSTUNREACH) | Some(libc::ENETUNREACH) | Some(libc::EACCES) => {
                TcpState::Unreachable
            }
            _ => TcpState::Filtered,
        },
    }
}

/// Connect to every port of `ports` on `ip`, at most `cfg.concurrency` at once and within the
/// descriptor budget, calling `on_result` as each finishes. Returns whether it was cancelled.
///
/// The connects run on a blocking thread that drives non-blocking sockets with `poll(2)`
/// (socket, connect, one shared poll, getsockopt, close: no per-socket event-loop
/// registration), which is what makes a large sweep fast. Open connections are handed back to
/// async tasks for the STUN check through a bounded channel, so descriptors stay bounded.
pub async fn tcp_scan(
    ip: IpAddr,
    ports: &[u16],
    cfg: TcpScanConfig,
    cancel: Cancel,
    mut new_tid: impl FnMut() -> TransactionId,
    mut on_result: impl FnMut(TcpPortResult),
) -> bool {
    // Sockets held at once: `window` connects in flight, one batch in the channel, one being
    // handed out, and up to `window` (plus one batch) STUN checks: 4·window within the budget.
    let budget = crate::fd::tcp_budget(cfg.concurrency.max(1).saturating_mul(4));
    let window = (budget / 4).max(1);
    // One sweeper thread per core (up to 4), each with every n-th port, its share of the window
    // and of the rate: the per-port cost is kernel work (socket, SYN, RST or SYN-ACK, close),
    // so more cores is what makes a large sweep faster.
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 4)
        .min(ports.len().max(1))
        .min(window);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<(u16, Connected)>>(threads);
    let mut sweepers = Vec::with_capacity(threads);
    for t in 0..threads {
        let share: Vec<u16> = ports.iter().copied().skip(t).step_by(threads).collect();
        let sweep_cancel = cancel.clone();
        let tx = tx.clone();
        let rate = cfg.rate.map(|r| Rate {
            pps: (r.pps / threads as u32).max(1),
            burst: (r.burst / threads as u32).max(1),
        });
        let per_thread = (window / threads).max(1);
        sweepers.push(tokio::task::spawn_blocking(move || {
            let mut sink = BatchSink {
                batch: Vec::new(),
                tx,
            };
            connect_many_blocking(
                ip,
                &share,
                cfg.connect_timeout,
                per_thread,
                rate,
                &sweep_cancel,
                &mut sink,
            )
        }));
    }
    drop(tx);
    let mut stun_set: JoinSet<TcpPortResult> = JoinSet::new();
    let mut channel_open = true;
    let mut pending: std::collections::VecDeque<(u16, Connected)> = Default::default();
    while channel_open || !stun_set.is_empty() || !pending.is_empty() {
        // Hand out what has arrived, keeping the STUN checks within the window.
        while stun_set.len() < window {
            let Some((port, c)) = pending.pop_front() else {
                break;
            };
            match c {
                Connected::Open { time, stream } => {
                    let addr = SocketAddr::new(ip, port);
                    match (cfg.stun, tokio::net::TcpStream::from_std(stream)) {
                        (true, Ok(stream)) => {
                            let tid = new_tid();
                            stun_set.spawn(stun_check(addr, stream, time, cfg.stun_timeout, tid));
                        }
                        _ => on_result(TcpPortResult {
                            port,
                            state: TcpState::Open,
                            connect_time: Some(time),
                            stun: StunOverTcp::NotTried,
                        }),
                    }
                }
                Connected::Closed { state, time } => on_result(TcpPortResult {
                    port,
                    state,
                    connect_time: time,
                    stun: StunOverTcp::NotTried,
                }),
            }
        }
        if !channel_open && stun_set.is_empty() && pending.is_empty() {
            break;
        }
        tokio::select! {
            msg = rx.recv(), if channel_open && pending.is_empty() => match msg {
                None => channel_open = false,
                Some(batch) => pending.extend(batch),
            },
            Some(r) = stun_set.join_next(), if !stun_set.is_empty() => {
                if let Ok(r) = r {
                    on_result(r);
                }
            }
        }
    }
    let mut cancelled = cancel.is_cancelled();
    for s in sweepers {
        cancelled |= matches!(s.await, Ok(true));
    }
    cancelled
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

/// Where [`connect_many_blocking`] delivers outcomes.
pub trait ConnectSink {
    /// One port's outcome; `false` stops the sweep.
    fn outcome(&mut self, port: u16, c: Connected) -> bool;
    /// After each round of connects and one poll (and once at the end): a batching sink sends
    /// here. `false` stops the sweep.
    fn turn_done(&mut self) -> bool {
        true
    }
}

impl<F: FnMut(u16, Connected) -> bool> ConnectSink for F {
    fn outcome(&mut self, port: u16, c: Connected) -> bool {
        self(port, c)
    }
}

async fn stun_check(
    addr: SocketAddr,
    stream: tokio::net::TcpStream,
    time: Duration,
    timeout: Duration,
    tid: TransactionId,
) -> TcpPortResult {
    let _ = stream.set_nodelay(true);
    let config = BindingConfig {
        retransmit: Retransmit {
            rto: timeout,
            rc: 1,
            rm: 1,
            deadline: Some(timeout),
        },
        ..BindingConfig::default()
    };
    let deadline = Instant::now() + timeout;
    let (outcome, _) =
        crate::tcp::exchange(stream, BindingTransaction::new(tid, addr, config), deadline).await;
    TcpPortResult {
        port: addr.port(),
        state: TcpState::Open,
        connect_time: Some(time),
        stun: match outcome.status {
            BindingStatus::Success(r) => StunOverTcp::Answered {
                software: r.software,
            },
            BindingStatus::Error { .. } => StunOverTcp::Answered { software: None },
            BindingStatus::Timeout => StunOverTcp::NoStun,
        },
    }
}

/// The outcome of one connect in [`connect_many_blocking`].
#[derive(Debug)]
pub enum Connected {
    /// The handshake completed; the connected (non-blocking) socket.
    Open {
        /// Time to the SYN-ACK.
        time: Duration,
        /// The connection, for a STUN check (closing it is the receiver's business).
        stream: std::net::TcpStream,
    },
    /// Refused, unreachable or filtered.
    Closed {
        /// Which.
        state: TcpState,
        /// Time to the RST or ICMP error (none for a timeout).
        time: Option<Duration>,
    },
}

/// Connect to every port of `ports` on `ip` from the calling (blocking) thread, with at most
/// `window` connects in flight, each given `timeout`; `each(port, outcome)` is called as they
/// finish and returns `false` to stop. Returns whether it was cancelled.
///
/// Sockets are bound to a source port of their own and reused from port to port: after a
/// refusal, a second `connect(2)` on the same socket returns the error and leaves the socket
/// unconnected (and, bound explicitly, still holding its port), so the next port costs one
/// more `connect` instead of `socket`, `getsockopt`, `close` and a search for a free ephemeral
/// port. A timed-out connect is aborted with `connect(AF_UNSPEC)` and its socket reused too;
/// an open connection is handed to the sink and its socket replaced.
#[cfg(unix)]
pub fn connect_many_blocking(
    ip: IpAddr,
    ports: &[u16],
    timeout: Duration,
    window: usize,
    rate: Option<Rate>,
    cancel: &Cancel,
    sink: &mut impl ConnectSink,
) -> bool {
    use std::os::fd::AsRawFd;

    let mut sockets = SocketPool::new(ip, window);
    let mut bucket = rate.map(|r| TokenBucket::new(r, Instant::now()));
    let mut next = ports.iter();
    let mut exhausted = false;
    let mut flight: Vec<InFlight> = Vec::with_capacity(window);
    let mut pollfds: Vec<libc::pollfd> = Vec::with_capacity(window);
    loop {
        if cancel.is_cancelled() {
            return true;
        }
        // Start connects while the window and the rate allow, a bounded number per turn so
        // quick answers free sockets for reuse before new ones are made (a process with
        // threads waits for an RCU grace period each time its descriptor table grows).
        let mut started = 0;
        while !exhausted && flight.len() < window && started < STARTS_PER_TURN {
            started += 1;
            if let Some(b) = bucket.as_mut() {
                if !b.take(Instant::now()) {
                    break;
                }
            }
            let Some(&port) = next.next() else {
                exhausted = true;
                break;
            };
            let addr: socket2::SockAddr = SocketAddr::new(ip, port).into();
            let outcome = match start_connect(&mut sockets, port, &addr) {
                Started::InFlight(f) => {
                    flight.push(f);
                    None
                }
                Started::Done(o) => Some(o),
            };
            if let Some(o) = outcome {
                if !sink.outcome(port, o) {
                    return false;
                }
            }
        }
        if flight.is_empty() {
            if exhausted {
                sink.turn_done();
                return false;
            }
            // Waiting for a token.
            if let Some(b) = bucket.as_mut() {
                let now = Instant::now();
                std::thread::sleep(b.ready_at(now).saturating_duration_since(now));
            }
            continue;
        }
        // One poll over every connect in flight, until the earliest deadline (or the next
        // token, when more can start).
        pollfds.clear();
        pollfds.extend(flight.iter().map(|f| libc::pollfd {
            fd: f.socket.fd.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        }));
        let now = Instant::now();
        let earliest = flight
            .iter()
            .map(|f| f.started + timeout)
            .min()
            .unwrap_or(now);
        let mut wake = earliest;
        if !exhausted && flight.len() < window {
            wake = wake.min(bucket.as_mut().map_or(now, |b| b.ready_at(now)));
        }
        let wait_ms = wake.saturating_duration_since(now).as_millis().min(100) as libc::c_int;
        // SAFETY: `pollfds` is a live array of `len` pollfd structs.
        let n = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, wait_ms) };
        if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return false;
        }
        let now = Instant::now();
        let mut i = 0;
        while i < flight.len() {
            let revents = pollfds.get(i).map_or(0, |p| p.revents);
            let expired = flight.get(i).is_some_and(|f| now >= f.started + timeout);
            if revents == 0 && !expired {
                i += 1;
                continue;
            }
            let outcome = match flight.get(i) {
                Some(f) if revents != 0 => finish_connect(f, SocketAddr::new(ip, f.port)),
                _ => Finished::Pending,
            };
            if matches!(outcome, Finished::Pending) && !expired {
                i += 1;
                continue;
            }
            let f = flight.swap_remove(i);
            // Keep `pollfds` aligned with `flight`.
            pollfds.swap_remove(i);
            let result = match outcome {
                Finished::Open => open(f.socket.fd, f.started),
                Finished::Closed { state, reset } => {
                    let time = Some(f.started.elapsed());
                    sockets.put_back(f.socket, reset);
                    Connected::Closed { state, time }
                }
                // Expired: no answer in time.
                Finished::Pending => {
                    sockets.put_back(f.socket, false);
                    Connected::Closed {
                        state: TcpState::Filtered,
                        time: None,
                    }
                }
            };
            if !sink.outcome(f.port, result) {
                return false;
            }
        }
        if !sink.turn_done() {
            return false;
        }
    }
}

/// Connects started between two polls at most.
#[cfg(unix)]
const STARTS_PER_TURN: usize = 64;

/// A connect in flight.
#[cfg(unix)]
struct InFlight {
    socket: SweepSocket,
    port: u16,
    started: Instant,
}

/// A TCP socket of the sweep and the source port it is bound to (0: not bound, used once).
#[cfg(unix)]
struct SweepSocket {
    fd: std::os::fd::OwnedFd,
    sport: u16,
}

/// Sockets bound to source ports of their own, reused from port to port.
#[cfg(unix)]
struct SocketPool {
    domain: libc::c_int,
    any: IpAddr,
    idle: Vec<SweepSocket>,
    /// Candidate source ports: the ephemeral range, walked from a random point.
    range: (u16, u16),
    cursor: u32,
    /// Set once binding keeps failing (a busy host): plain one-shot sockets from then on.
    binding_failed: bool,
}

#[cfg(unix)]
impl SocketPool {
    fn new(ip: IpAddr, window: usize) -> Self {
        let (domain, any) = if ip.is_ipv4() {
            (libc::AF_INET, IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
        } else {
            (libc::AF_INET6, IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED))
        };
        let range = ephemeral_range();
        Self {
            domain,
            any,
            idle: Vec::with_capacity(window),
            range,
            cursor: rand::random(),
            binding_failed: false,
        }
    }

    /// A socket whose source port is not `port` (so a sweep of this host's own addresses never
    /// connects a socket to itself).
    fn take(&mut self, port: u16) -> io::Result<SweepSocket> {
        if let Some(i) = self.idle.iter().rposition(|s| s.sport != port) {
            return Ok(self.idle.swap_remove(i));
        }
        let fd = new_tcp_socket(self.domain)?;
        if self.binding_failed {
            return Ok(SweepSocket { fd, sport: 0 });
        }
        let (lo, hi) = self.range;
        let span = u32::from(hi - lo) + 1;
        for _ in 0..BIND_ATTEMPTS {
            self.cursor = self.cursor.wrapping_add(1);
            let sport = lo + (self.cursor % span) as u16;
            if sport == port {
                continue;
            }
            let local = socket2::SockAddr::from(SocketAddr::new(self.any, sport));
            if socket2::SockRef::from(&fd).bind(&local).is_ok() {
                return Ok(SweepSocket { fd, sport });
            }
        }
        self.binding_failed = true;
        Ok(SweepSocket { fd, sport: 0 })
    }

    /// Return a socket whose connect ended without a connection. `answered`: the second
    /// `connect` already reset it; otherwise the attempt is aborted first.
    fn put_back(&mut self, s: SweepSocket, answered: bool) {
        if s.sport == 0 {
            return;
        }
        if !answered && !disconnect(&s.fd) {
            return;
        }
        self.idle.push(s);
    }
}

/// Source ports tried per new socket before binding is given up.
#[cfg(unix)]
const BIND_ATTEMPTS: usize = 16;

/// The host's ephemeral port range (net.ipv4.ip_local_port_range, which also applies to
/// IPv6), or Linux's default.
#[cfg(unix)]
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|v| v.parse::<u16>());
            match (it.next(), it.next()) {
                (Some(Ok(lo)), Some(Ok(hi))) if lo > 0 && lo <= hi => Some((lo, hi)),
                _ => None,
            }
        })
        .unwrap_or((32768, 60999))
}

#[cfg(unix)]
fn new_tcp_socket(domain: libc::c_int) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket(2); checked below.
    let raw = unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) })
}

/// `connect(2)`; `Ok(())` when connected, the error otherwise (EINPROGRESS included).
#[cfg(unix)]
fn connect_raw(fd: &std::os::fd::OwnedFd, addr: &socket2::SockAddr) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `addr` is a valid socket address of its stated length.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            addr.as_ptr() as *const libc::sockaddr,
            addr.len(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Abort a connect in progress so the socket can connect again (`connect` with AF_UNSPEC,
/// which Linux implements as a disconnect; an explicitly bound port stays bound).
#[cfg(unix)]
fn disconnect(fd: &std::os::fd::OwnedFd) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero sockaddr with family AF_UNSPEC, of its stated length.
    let mut unspec: libc::sockaddr = unsafe { std::mem::zeroed() };
    unspec.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
    // SAFETY: `unspec` lives for the call.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            &unspec,
            std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
        )
    };
    r == 0
}

#[cfg(unix)]
enum Started {
    InFlight(InFlight),
    Done(Connected),
}

/// Start one connect on a pooled socket.
#[cfg(unix)]
fn start_connect(sockets: &mut SocketPool, port: u16, addr: &socket2::SockAddr) -> Started {
    let started = Instant::now();
    let mut socket = match sockets.take(port) {
        Ok(s) => s,
        // Out of descriptors or similar: report and go on.
        Err(_) => {
            return Started::Done(Connected::Closed {
                state: TcpState::Filtered,
                time: None,
            });
        }
    };
    let mut r = connect_raw(&socket.fd, addr);
    if socket.sport != 0
        && matches!(
            r.as_ref().map_err(io::Error::raw_os_error),
            Err(Some(libc::EADDRNOTAVAIL | libc::EADDRINUSE))
        )
    {
        // This source port is taken toward that port (a TIME_WAIT of an earlier
        // connection, say): let the kernel pick one for this attempt.
        match new_tcp_socket(sockets.domain) {
            Ok(fd) => {
                socket = SweepSocket { fd, sport: 0 };
                r = connect_raw(&socket.fd, addr);
            }
            Err(_) => {
                return Started::Done(Connected::Closed {
                    state: TcpState::Filtered,
                    time: None,
                });
            }
        }
    }
    match r {
        Ok(()) => Started::Done(open(socket.fd, started)),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Started::InFlight(InFlight {
            socket,
            port,
            started,
        }),
        Err(e) => {
            // The attempt never started: the socket is unconnected and reusable.
            let time = Some(started.elapsed());
            sockets.put_back(socket, true);
            Started::Done(Connected::Closed {
                state: connect_error_state(&e),
                time,
            })
        }
    }
}

#[cfg(unix)]
enum Finished {
    Open,
    /// Refused or unreachable; `reset`: the second `connect` already left the socket
    /// unconnected.
    Closed {
        state: TcpState,
        reset: bool,
    },
    /// Poll woke but the handshake is still in progress.
    Pending,
}

/// Read the outcome of a connect that poll reported ready: a second `connect` returns 0 (or
/// EISCONN) when connected, and the pending error otherwise, resetting the socket.
#[cfg(unix)]
fn finish_connect(f: &InFlight, to: SocketAddr) -> Finished {
    let addr: socket2::SockAddr = to.into();
    match connect_raw(&f.socket.fd, &addr) {
        Ok(()) => Finished::Open,
        Err(e) => match e.raw_os_error() {
            Some(libc::EISCONN) => Finished::Open,
            Some(libc::EALREADY | libc::EINPROGRESS) => {
                // Woken by a soft error while the SYN is still being retried.
                match socket2::SockRef::from(&f.socket.fd).take_error() {
                    Ok(Some(e)) => Finished::Closed {
                        state: connect_error_state(&e),
                        reset: false,
                    },
                    _ => Finished::Pending,
                }
            }
            _ => Finished::Closed {
                state: connect_error_state(&e),
                reset: true,
            },
        },
    }
}

#[cfg(unix)]
fn open(fd: std::os::fd::OwnedFd, started: Instant) -> Connected {
    let time = started.elapsed();
    // Close with a reset, not a lingering FIN, when the receiver drops it: a sweep opens many
    // connections (SO_LINGER 0 never blocks).
    let _ = socket2::SockRef::from(&fd).set_linger(Some(Duration::ZERO));
    Connected::Open {
        time,
        stream: std::net::TcpStream::from(fd),
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
    let sock = UdpSocket::bind(crate::udp::wildcard_for(&dest)).await?;
    sock.connect(dest).await?;
    let mut tx = BindingTransaction::new(tid, dest, config);
    let mut out = Vec::with_capacity(128);
    let mut buf = [0u8; 2048];
    loop {
        let now = Instant::now();
        out.clear();
        while tx.poll_transmit(now, &mut out).is_some() {
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
            Err(_) => tx.handle_timeout(Instant::now()),
            Ok(Ok(n)) => {
                let _ = tx.handle_input(Instant::now(), dest, buf.get(..n).unwrap_or(&[]));
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

#[cfg(test)]
mod tests {
    use super::*;

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
                Connected::Closed { state, time } => (state, time),
            };
            assert!(seen.insert(port, (state, time)).is_none(), "{port} twice");
            true
        };
        let cancelled = connect_many_blocking(
            ip,
            &ports,
            Duration::from_secs(2),
            4,
            None,
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

    #[test]
    fn connect_errors_map_to_states() {
        let e = |k| io::Error::from(k);
        assert_eq!(
            connect_error_state(&e(io::ErrorKind::ConnectionRefused)),
            TcpState::Refused
        );
        assert_eq!(
            connect_error_state(&e(io::ErrorKind::TimedOut)),
            TcpState::Filtered
        );
        assert_eq!(
            connect_error_state(&io::Error::from_raw_os_error(libc::EHOSTUNREACH)),
            TcpState::Unreachable
        );
        assert_eq!(
            connect_error_state(&io::Error::from_raw_os_error(libc::ENETUNREACH)),
            TcpState::Unreachable
        );
    }
}
