//! The TCP connect sweep on OS threads: non-blocking connects driven by one `poll(2)` per
//! turn, no per-socket event-loop registration, which is what makes a large sweep fast.
//!
//! The loop ([`sweep`]) is written against two small seams so its timing can be tested on
//! virtual time: a [`Clock`] (the real sweep passes [`crate::clock::Monotonic`]) and a
//! [`Connector`] (the real one drives sockets; tests use a simulated network that advances a
//! [`crate::clock::ManualClock`] instead of blocking). Every timing decision — may a connect
//! start (window, token bucket), when a connect in flight counts as filtered, how long one
//! poll may block — is made by [`ConnectPacer`], a pure function of the instants it is given.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use probes::sweep::TcpState;

use crate::clock::Clock;
use crate::driver::Cancel;
use crate::rate::{Rate, TokenBucket};

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

/// Connects started between two polls at most.
const STARTS_PER_TURN: usize = 64;

/// The longest single poll, so that a cancel is seen.
const MAX_POLL_WAIT: Duration = Duration::from_millis(100);

/// The connect sweep's timing apart from its sockets: the token bucket (SYN rate), the
/// connect timeout and the waits between polls. Pure: every call is given `now`.
#[derive(Clone, Debug)]
pub struct ConnectPacer {
    bucket: Option<TokenBucket>,
    timeout: Duration,
}

impl ConnectPacer {
    /// A pacer whose bucket is full at `now`; `rate` `None` is unlimited.
    pub fn new(rate: Option<Rate>, timeout: Duration, now: Instant) -> Self {
        Self {
            bucket: rate.map(|r| TokenBucket::new(r, now)),
            timeout,
        }
    }

    /// Whether one more connect may start at `now` (it takes a token if so).
    pub fn try_start(&mut self, now: Instant) -> bool {
        self.bucket.as_mut().is_none_or(|b| b.take(now))
    }

    /// Whether starting needs the time (a rate is set): the unlimited sweep reads no clock
    /// before each connect.
    pub fn is_paced(&self) -> bool {
        self.bucket.is_some()
    }

    /// Whether a connect that started at `started` has had its time at `now`: no answer by
    /// `started + timeout` is filtered.
    pub fn expired(&self, started: Instant, now: Instant) -> bool {
        now >= started + self.timeout
    }

    /// With nothing in flight and ports left: how long to sleep for the next token.
    pub fn token_wait(&mut self, now: Instant) -> Duration {
        self.bucket.as_mut().map_or(Duration::ZERO, |b| {
            b.ready_at(now).saturating_duration_since(now)
        })
    }

    /// How long one poll may block at `now`: until the earliest connect in flight (started
    /// at `earliest`) expires or, when another may start (`can_start`), until the next
    /// token; at most [`MAX_POLL_WAIT`].
    pub fn poll_wait(&mut self, now: Instant, earliest: Instant, can_start: bool) -> Duration {
        let mut wake = earliest + self.timeout;
        if can_start {
            wake = wake.min(self.bucket.as_mut().map_or(now, |b| b.ready_at(now)));
        }
        wake.saturating_duration_since(now).min(MAX_POLL_WAIT)
    }
}

/// A connect in flight.
#[derive(Debug)]
pub(crate) struct InFlight<C> {
    pub(crate) conn: C,
    pub(crate) port: u16,
    pub(crate) started: Instant,
}

/// How a connect ended, before the sweep stamps its time.
#[derive(Debug)]
pub(crate) enum Decided {
    /// Connected.
    Open(std::net::TcpStream),
    /// Not connected; `answered`: a RST or ICMP error said so (it has a time), otherwise
    /// nothing came back in time (or the attempt could not be made).
    Closed { state: TcpState, answered: bool },
}

/// What [`Connector::start`] did.
#[derive(Debug)]
pub(crate) enum Started<C> {
    /// In flight.
    InFlight(C),
    /// Decided at once.
    Done(Decided),
}

/// What a connect that [`Connector::wait`] reported ready has become.
#[derive(Debug)]
pub(crate) enum Finished {
    Open,
    /// Refused or unreachable; `reset`: the second `connect` already left the socket
    /// unconnected.
    Closed {
        state: TcpState,
        reset: bool,
    },
    /// Woken, but the handshake is still in progress.
    Pending,
}

/// The network side of [`sweep`].
pub(crate) trait Connector {
    /// One connect in flight.
    type Conn;
    /// Start a connect to `port`.
    fn start(&mut self, port: u16) -> Started<Self::Conn>;
    /// Block at most `wait` until any of `flight` is ready; `ready[i]` tells whether
    /// `flight[i]` is (cleared and refilled). An error ends the sweep.
    fn wait(
        &mut self,
        flight: &[InFlight<Self::Conn>],
        wait: Duration,
        ready: &mut Vec<bool>,
    ) -> io::Result<()>;
    /// Sleep `d` (nothing in flight, waiting for a token).
    fn sleep(&mut self, d: Duration);
    /// Read the outcome of a connect that `wait` reported ready.
    fn finish(&mut self, f: &InFlight<Self::Conn>) -> Finished;
    /// Conclude a connect that finished (or, with [`Finished::Pending`], expired), reusing
    /// or handing out its socket.
    fn conclude(&mut self, conn: Self::Conn, how: Finished) -> Decided;
}

fn stamped(d: Decided, time: Duration) -> Connected {
    match d {
        Decided::Open(stream) => Connected::Open { time, stream },
        Decided::Closed { state, answered } => Connected::Closed {
            state,
            time: answered.then_some(time),
        },
    }
}

/// Connect to every port of `ports` through `net`, at most `window` in flight, paced and
/// timed out by `pacer` on `clock`; outcomes go to `sink`. Returns whether it was cancelled.
pub(crate) fn sweep<N: Connector>(
    net: &mut N,
    clock: &impl Clock,
    ports: &[u16],
    window: usize,
    pacer: &mut ConnectPacer,
    cancel: &Cancel,
    sink: &mut impl ConnectSink,
) -> bool {
    let window = window.max(1);
    let mut next = ports.iter();
    let mut exhausted = false;
    let mut flight: Vec<InFlight<N::Conn>> = Vec::with_capacity(window);
    let mut ready: Vec<bool> = Vec::with_capacity(window);
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
            if pacer.is_paced() && !pacer.try_start(clock.now()) {
                break;
            }
            let Some(&port) = next.next() else {
                exhausted = true;
                break;
            };
            let at = clock.now();
            match net.start(port) {
                Started::InFlight(conn) => flight.push(InFlight {
                    conn,
                    port,
                    started: at,
                }),
                Started::Done(d) => {
                    let time = clock.now().saturating_duration_since(at);
                    if !sink.outcome(port, stamped(d, time)) {
                        return false;
                    }
                }
            }
        }
        let Some(earliest) = flight.iter().map(|f| f.started).min() else {
            if exhausted {
                sink.turn_done();
                return false;
            }
            // Waiting for a token.
            let wait = pacer.token_wait(clock.now());
            net.sleep(wait);
            continue;
        };
        // One poll over every connect in flight, until the earliest deadline (or the next
        // token, when more can start).
        let can_start = !exhausted && flight.len() < window;
        let wait = pacer.poll_wait(clock.now(), earliest, can_start);
        if net.wait(&flight, wait, &mut ready).is_err() {
            return false;
        }
        let now = clock.now();
        let mut i = 0;
        while let Some(f) = flight.get(i) {
            let is_ready = ready.get(i).copied().unwrap_or(false);
            let expired = pacer.expired(f.started, now);
            if !is_ready && !expired {
                i += 1;
                continue;
            }
            let how = if is_ready {
                net.finish(f)
            } else {
                Finished::Pending
            };
            if matches!(how, Finished::Pending) && !expired {
                i += 1;
                continue;
            }
            let f = flight.swap_remove(i);
            // Keep `ready` aligned with `flight`.
            if i < ready.len() {
                ready.swap_remove(i);
            }
            let time = now.saturating_duration_since(f.started);
            let port = f.port;
            let decided = net.conclude(f.conn, how);
            if !sink.outcome(port, stamped(decided, time)) {
                return false;
            }
        }
        if !sink.turn_done() {
            return false;
        }
    }
}

/// Connect to every port of `ports` on `ip` from the calling (blocking) thread, with at most
/// `window` connects in flight, each given `timeout`; `sink` gets the outcomes as they
/// finish and returns `false` to stop. Returns whether it was cancelled.
///
/// Sockets are bound to a source port of their own and reused from port to port: after a
/// refusal, a second `connect(2)` on the same socket returns the error and leaves the socket
/// unconnected (and, bound explicitly, still holding its port), so the next port costs one
/// more `connect` instead of `socket`, `getsockopt`, `close` and a search for a free ephemeral
/// port. A timed-out connect is aborted with `connect(AF_UNSPEC)` and its socket reused too;
/// an open connection is handed to the sink and its socket replaced.
#[cfg(unix)]
#[allow(clippy::too_many_arguments)]
pub fn connect_many_blocking(
    ip: IpAddr,
    ports: &[u16],
    timeout: Duration,
    window: usize,
    rate: Option<Rate>,
    clock: &impl Clock,
    cancel: &Cancel,
    sink: &mut impl ConnectSink,
) -> bool {
    let mut net = SocketConnector {
        ip,
        sockets: SocketPool::new(ip, window),
        pollfds: Vec::with_capacity(window),
    };
    let mut pacer = ConnectPacer::new(rate, timeout, clock.now());
    sweep(&mut net, clock, ports, window, &mut pacer, cancel, sink)
}

/// The real network: pooled non-blocking sockets and `poll(2)`.
#[cfg(unix)]
struct SocketConnector {
    ip: IpAddr,
    sockets: SocketPool,
    pollfds: Vec<libc::pollfd>,
}

#[cfg(unix)]
impl Connector for SocketConnector {
    type Conn = SweepSocket;

    fn start(&mut self, port: u16) -> Started<SweepSocket> {
        let addr: socket2::SockAddr = SocketAddr::new(self.ip, port).into();
        start_connect(&mut self.sockets, port, &addr)
    }

    fn wait(
        &mut self,
        flight: &[InFlight<SweepSocket>],
        wait: Duration,
        ready: &mut Vec<bool>,
    ) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        self.pollfds.clear();
        self.pollfds.extend(flight.iter().map(|f| libc::pollfd {
            fd: f.conn.fd.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        }));
        let wait_ms = wait.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: `pollfds` is a live array of `len` pollfd structs.
        let n = unsafe {
            libc::poll(
                self.pollfds.as_mut_ptr(),
                self.pollfds.len() as libc::nfds_t,
                wait_ms,
            )
        };
        ready.clear();
        ready.extend(self.pollfds.iter().map(|p| p.revents != 0));
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(())
    }

    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d);
    }

    fn finish(&mut self, f: &InFlight<SweepSocket>) -> Finished {
        finish_connect(&f.conn, SocketAddr::new(self.ip, f.port))
    }

    fn conclude(&mut self, conn: SweepSocket, how: Finished) -> Decided {
        match how {
            Finished::Open => open(conn.fd),
            Finished::Closed { state, reset } => {
                self.sockets.put_back(conn, reset);
                Decided::Closed {
                    state,
                    answered: true,
                }
            }
            // Expired: no answer in time.
            Finished::Pending => {
                self.sockets.put_back(conn, false);
                Decided::Closed {
                    state: TcpState::Filtered,
                    answered: false,
                }
            }
        }
    }
}

/// Start one connect on a pooled socket.
#[cfg(unix)]
fn start_connect(
    sockets: &mut SocketPool,
    port: u16,
    addr: &socket2::SockAddr,
) -> Started<SweepSocket> {
    let failed = Decided::Closed {
        state: TcpState::Filtered,
        answered: false,
    };
    let mut socket = match sockets.take(port) {
        Ok(s) => s,
        // Out of descriptors or similar: report and go on.
        Err(_) => return Started::Done(failed),
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
            Err(_) => return Started::Done(failed),
        }
    }
    match r {
        Ok(()) => Started::Done(open(socket.fd)),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Started::InFlight(socket),
        Err(e) => {
            // The attempt never started: the socket is unconnected and reusable.
            sockets.put_back(socket, true);
            Started::Done(Decided::Closed {
                state: connect_error_state(&e),
                answered: true,
            })
        }
    }
}

/// Read the outcome of a connect that poll reported ready: a second `connect` returns 0 (or
/// EISCONN) when connected, and the pending error otherwise, resetting the socket.
#[cfg(unix)]
fn finish_connect(socket: &SweepSocket, to: SocketAddr) -> Finished {
    let addr: socket2::SockAddr = to.into();
    match connect_raw(&socket.fd, &addr) {
        Ok(()) => Finished::Open,
        Err(e) => match e.raw_os_error() {
            Some(libc::EISCONN) => Finished::Open,
            Some(libc::EALREADY | libc::EINPROGRESS) => {
                // Woken by a soft error while the SYN is still being retried.
                match socket2::SockRef::from(&socket.fd).take_error() {
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
fn open(fd: std::os::fd::OwnedFd) -> Decided {
    // Close with a reset, not a lingering FIN, when the receiver drops it: a sweep opens many
    // connections (SO_LINGER 0 never blocks).
    let _ = socket2::SockRef::from(&fd).set_linger(Some(Duration::ZERO));
    Decided::Open(std::net::TcpStream::from(fd))
}

/// The sweep's port state for a connect that failed with `e` (RST refused; ICMP unreachable,
/// no route or a local refusal unreachable; a timeout or anything else filtered), through
/// [`crate::tcp::classify_connect_error`].
pub(crate) fn connect_error_state(e: &io::Error) -> TcpState {
    use crate::tcp::ConnectFailure;
    match crate::tcp::classify_connect_error(e) {
        ConnectFailure::Refused => TcpState::Refused,
        ConnectFailure::Unreachable | ConnectFailure::Denied => TcpState::Unreachable,
        ConnectFailure::TimedOut | ConnectFailure::Other => TcpState::Filtered,
    }
}

/// A TCP socket of the sweep and the source port it is bound to (0: not bound, used once).
#[cfg(unix)]
pub(crate) struct SweepSocket {
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
    /// The interface of the source binding in force ([`crate::source`]), if any.
    device: Option<crate::source::IfName>,
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
        // The source binding in force: its address replaces the wildcard, its interface is
        // set on every new socket.
        let bind = *crate::source::effective().family(ip.is_ipv4());
        let any = bind
            .ip
            .filter(|b| b.is_ipv4() == ip.is_ipv4())
            .unwrap_or(any);
        Self {
            domain,
            any,
            device: bind.device,
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
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(dev) = self.device {
            socket2::SockRef::from(&fd).bind_device(Some(dev.as_str().as_bytes()))?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::collections::HashMap;

    /// A network on virtual time: a port answers `state` after its delay, or never; `wait`
    /// moves the clock to the first answer due or to the end of the wait, never blocking.
    struct SimNet<'a> {
        clock: &'a ManualClock,
        answers: HashMap<u16, (Duration, TcpState)>,
        t0: Instant,
        /// (port, when it was started).
        starts: Vec<(u16, Duration)>,
        sleeps: Vec<Duration>,
    }

    impl<'a> SimNet<'a> {
        fn new(clock: &'a ManualClock, answers: &[(u16, u64, TcpState)]) -> Self {
            Self {
                clock,
                answers: answers
                    .iter()
                    .map(|&(p, ms, s)| (p, (Duration::from_millis(ms), s)))
                    .collect(),
                t0: clock.now(),
                starts: Vec::new(),
                sleeps: Vec::new(),
            }
        }
    }

    impl Connector for SimNet<'_> {
        /// When the answer is due.
        type Conn = Option<Instant>;

        fn start(&mut self, port: u16) -> Started<Option<Instant>> {
            let now = self.clock.now();
            self.starts.push((port, now - self.t0));
            match self.answers.get(&port) {
                Some(&(d, state)) if d.is_zero() => Started::Done(Decided::Closed {
                    state,
                    answered: true,
                }),
                Some(&(d, _)) => Started::InFlight(Some(now + d)),
                None => Started::InFlight(None),
            }
        }

        fn wait(
            &mut self,
            flight: &[InFlight<Option<Instant>>],
            wait: Duration,
            ready: &mut Vec<bool>,
        ) -> io::Result<()> {
            let limit = self.clock.now() + wait;
            let first = flight
                .iter()
                .filter_map(|f| f.conn)
                .filter(|&t| t <= limit)
                .min();
            self.clock.set(first.unwrap_or(limit));
            let now = self.clock.now();
            ready.clear();
            ready.extend(flight.iter().map(|f| f.conn.is_some_and(|t| t <= now)));
            Ok(())
        }

        fn sleep(&mut self, d: Duration) {
            self.sleeps.push(d);
            self.clock.advance(d);
        }

        fn finish(&mut self, f: &InFlight<Option<Instant>>) -> Finished {
            let state = self
                .answers
                .get(&f.port)
                .map_or(TcpState::Filtered, |a| a.1);
            Finished::Closed { state, reset: true }
        }

        fn conclude(&mut self, _: Option<Instant>, how: Finished) -> Decided {
            match how {
                Finished::Closed { state, .. } => Decided::Closed {
                    state,
                    answered: true,
                },
                Finished::Open | Finished::Pending => Decided::Closed {
                    state: TcpState::Filtered,
                    answered: false,
                },
            }
        }
    }

    /// (port, state, time, when the sink heard of it), times in ms.
    type Heard = Vec<(u16, TcpState, Option<u128>, u128)>;

    fn run(
        answers: &[(u16, u64, TcpState)],
        ports: &[u16],
        window: usize,
        rate: Option<Rate>,
        timeout_ms: u64,
    ) -> (Heard, Vec<(u16, u128)>, bool) {
        let clock = ManualClock::new(Monotonic.now());
        let t0 = clock.now();
        let mut net = SimNet::new(&clock, answers);
        let mut pacer = ConnectPacer::new(rate, Duration::from_millis(timeout_ms), t0);
        let mut heard = Vec::new();
        let mut sink = |port: u16, c: Connected| {
            let (state, time) = match c {
                Connected::Open { time, .. } => (TcpState::Open, Some(time)),
                Connected::Closed { state, time } => (state, time),
            };
            let at = (clock.now() - t0).as_millis();
            heard.push((port, state, time.map(|t| t.as_millis()), at));
            true
        };
        let cancelled = sweep(
            &mut net,
            &clock,
            ports,
            window,
            &mut pacer,
            &Cancel::never(),
            &mut sink,
        );
        let starts = net
            .starts
            .iter()
            .map(|(p, d)| (*p, d.as_millis()))
            .collect();
        (heard, starts, cancelled)
    }

    use crate::clock::Monotonic;

    #[test]
    fn silent_ports_expire_exactly_at_the_timeout_and_free_the_window() {
        let (heard, starts, cancelled) = run(&[], &[1, 2, 3, 4, 5], 2, None, 1000);
        assert!(!cancelled);
        assert_eq!(
            starts,
            vec![(1, 0), (2, 0), (3, 1000), (4, 1000), (5, 2000)]
        );
        let f = TcpState::Filtered;
        assert_eq!(
            heard,
            vec![
                (1, f, None, 1000),
                (2, f, None, 1000),
                (3, f, None, 2000),
                (4, f, None, 2000),
                (5, f, None, 3000)
            ]
        );
    }

    #[test]
    fn the_rate_spaces_connects_and_answers_are_timed_from_their_start() {
        let r = TcpState::Refused;
        let answers: Vec<_> = (1..=4).map(|p| (p, 5, r)).collect();
        let rate = Some(Rate { pps: 10, burst: 1 });
        let (heard, starts, _) = run(&answers, &[1, 2, 3, 4], 16, rate, 1000);
        assert_eq!(starts, vec![(1, 0), (2, 100), (3, 200), (4, 300)]);
        assert_eq!(
            heard,
            vec![
                (1, r, Some(5), 5),
                (2, r, Some(5), 105),
                (3, r, Some(5), 205),
                (4, r, Some(5), 305)
            ]
        );
    }

    #[test]
    fn an_answer_by_the_deadline_counts_and_one_after_it_does_not() {
        let r = TcpState::Refused;
        let answers = [(7, 999, r), (8, 1000, r), (9, 1001, r)];
        let (mut heard, _, _) = run(&answers, &[7, 8, 9], 8, None, 1000);
        heard.sort_unstable();
        assert_eq!(
            heard,
            vec![
                (7, r, Some(999), 999),
                // Ready when the deadline is checked: the answer wins.
                (8, r, Some(1000), 1000),
                (9, TcpState::Filtered, None, 1000)
            ]
        );
    }

    #[test]
    fn immediate_refusals_need_no_poll_and_a_cancel_stops_the_sweep() {
        let r = TcpState::Refused;
        let (heard, _, _) = run(&[(1, 0, r), (2, 0, r)], &[1, 2], 1, None, 1000);
        assert_eq!(heard, vec![(1, r, Some(0), 0), (2, r, Some(0), 0)]);

        let clock = ManualClock::new(Monotonic.now());
        let mut net = SimNet::new(&clock, &[]);
        let mut pacer = ConnectPacer::new(None, Duration::from_secs(1), clock.now());
        let (handle, cancel) = Cancel::new();
        handle.cancel();
        let mut sink = |_: u16, _: Connected| -> bool { panic!("no connect after a cancel") };
        assert!(sweep(
            &mut net,
            &clock,
            &[1, 2],
            4,
            &mut pacer,
            &cancel,
            &mut sink
        ));
        assert!(net.starts.is_empty());
    }

    #[test]
    fn poll_waits_end_at_the_earliest_deadline_or_token_and_never_exceed_the_cap() {
        let t0 = Monotonic.now();
        let ms = Duration::from_millis;
        let mut p = ConnectPacer::new(Some(Rate { pps: 20, burst: 1 }), ms(1500), t0);
        assert!(p.try_start(t0));
        assert!(!p.try_start(t0));
        assert_eq!(p.token_wait(t0), ms(50));
        // The window is full: only the deadline counts (far off: capped).
        assert_eq!(p.poll_wait(t0, t0, false), MAX_POLL_WAIT);
        assert_eq!(p.poll_wait(t0 + ms(1460), t0, false), ms(40));
        assert_eq!(p.poll_wait(t0 + ms(1600), t0, false), Duration::ZERO);
        // More may start: the next token is sooner.
        assert_eq!(p.poll_wait(t0 + ms(20), t0, true), ms(30));
        assert!(!p.expired(t0, t0 + ms(1499)));
        assert!(p.expired(t0, t0 + ms(1500)));
        let mut unpaced = ConnectPacer::new(None, ms(1500), t0);
        assert!(!unpaced.is_paced());
        assert_eq!(unpaced.poll_wait(t0, t0, true), Duration::ZERO);
        assert_eq!(unpaced.token_wait(t0), Duration::ZERO);
    }
}
