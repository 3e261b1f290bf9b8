//! The TCP connect sweep on OS threads: non-blocking connects driven by one `poll(2)` (Windows:
//! `WSAPoll`, in [`win`]) per
//! turn, no per-socket event-loop registration, which is what makes a large sweep fast.
//!
//! The loop ([`sweep`]) is written against two small seams so its timing can be tested on
//! virtual time: a [`Clock`] (the real sweep passes [`crate::clock::Monotonic`]) and a
//! [`Connector`] (the real one drives sockets; tests use a simulated network that advances a
//! [`crate::clock::ManualClock`] instead of blocking). Every timing decision — may a connect
//! start, when a try counts as unanswered, how long one poll may block — is made by
//! [`ConnectPacer`], a view of the sweep's one [`SharedPacing`] (the rule is
//! [`probes::sweep::pacing`]: adaptive timeouts from the measured round trips, a rate that
//! grows on answers and halves on loss, under a ceiling).
//!
//! Every port ends in exactly one outcome: answered (open, refused, unreachable), unanswered
//! after [`MAX_TRIES`] tries (filtered), or a local error with its errno (no descriptor, a
//! local policy, no route) — never dropped, never a guessed state.

use std::collections::VecDeque;
use std::io;
use std::net::IpAddr;
#[cfg(unix)]
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use probes::sweep::pacing::{Answer, Pacing, PacingConfig, PacingSummary};
use probes::sweep::{LocalError, TcpState};

use crate::clock::Clock;
use crate::driver::Cancel;

#[cfg(windows)]
mod win;

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

/// The outcome of one port in [`connect_many_blocking`].
#[derive(Debug)]
pub enum Connected {
    /// The handshake completed; the connected (non-blocking) socket.
    Open {
        /// Time to the SYN-ACK.
        time: Duration,
        /// Tries it took.
        tries: u8,
        /// The connection, for a STUN check (closing it is the receiver's business).
        stream: std::net::TcpStream,
    },
    /// Refused, unreachable, filtered, or a local error.
    Closed {
        /// Which.
        state: TcpState,
        /// Time to the RST or ICMP error (none for a timeout or a local error).
        time: Option<Duration>,
        /// Tries made (0: the connect could not even be started).
        tries: u8,
        /// The OS error behind it: always for [`TcpState::Error`], and for an unreachable
        /// port the error the kernel gave.
        error: Option<LocalError>,
    },
}

/// Tries per port: a port that stays silent gets one more SYN after its timeout before it
/// counts as filtered, so one lost SYN (or SYN-ACK) does not hide an open port.
pub const MAX_TRIES: u8 = 2;

/// Connects started between two polls at most.
const STARTS_PER_TURN: usize = 64;

/// The longest single poll or sleep, so that a cancel is seen.
const MAX_POLL_WAIT: Duration = Duration::from_millis(100);

/// With nothing in flight and no descriptor to be had, wait this long between attempts …
const STARVED_RETRY: Duration = Duration::from_millis(20);

/// … for at most this long before the port is reported with the error (descriptors held
/// elsewhere in the process, such as connections being checked for STUN, come back).
const STARVED_LIMIT: Duration = Duration::from_secs(2);

/// The pacing of one sweep, shared by its connect threads, its UDP probes and its raw SYN
/// shards: one rate, one bucket, one round-trip estimate.
#[derive(Clone, Debug)]
pub struct SharedPacing(Arc<Mutex<Pacing>>);

impl SharedPacing {
    /// Pacing under `cfg`, starting at `now`.
    pub fn new(cfg: PacingConfig, now: Instant) -> Self {
        Self(Arc::new(Mutex::new(Pacing::new(cfg, now))))
    }

    /// The pacing itself (a poisoned lock is still usable: every update leaves it whole).
    pub fn lock(&self) -> MutexGuard<'_, Pacing> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What the pacing did so far.
    pub fn summary(&self) -> PacingSummary {
        self.lock().summary()
    }
}

/// Something a try ended with, kept until the pacer next takes the lock.
#[derive(Clone, Copy, Debug)]
enum PortEvent {
    Answered {
        at: Instant,
        port: u16,
        resent: bool,
        rtt: Option<Duration>,
        how: Answer,
    },
    Silent {
        at: Instant,
        port: u16,
    },
    Resent,
}

/// One connect thread's view of the sweep's pacing: tokens are taken and outcomes reported
/// a turn at a time (one lock per turn, not per port), and the timeout is read once a turn.
#[derive(Debug)]
pub struct ConnectPacer {
    shared: SharedPacing,
    timeout: Duration,
    events: Vec<PortEvent>,
}

impl ConnectPacer {
    /// A view of `shared`.
    pub fn new(shared: SharedPacing) -> Self {
        let timeout = shared.lock().timeout();
        Self {
            shared,
            timeout,
            events: Vec::new(),
        }
    }

    /// Report what happened since the last call, read the timeout, and take up to `want`
    /// tokens at `now`: how many connects may start.
    pub fn grant(&mut self, now: Instant, want: usize) -> usize {
        let Self {
            shared,
            timeout,
            events,
        } = self;
        let mut p = shared.lock();
        apply(events, timeout, &mut p);
        if want == 0 { 0 } else { p.take(now, want) }
    }

    /// Report what happened since the last call and read the timeout.
    pub fn sync(&mut self) {
        let Self {
            shared,
            timeout,
            events,
        } = self;
        apply(events, timeout, &mut shared.lock());
    }

    /// The shared pacing.
    pub fn shared(&self) -> &SharedPacing {
        &self.shared
    }
}

/// Hand a view's events to the pacing and read its timeout.
fn apply(events: &mut Vec<PortEvent>, timeout: &mut Duration, p: &mut Pacing) {
    {
        for e in events.drain(..) {
            match e {
                PortEvent::Answered {
                    at,
                    port,
                    resent,
                    rtt,
                    how,
                } => p.answered(at, port, resent, rtt, how),
                PortEvent::Silent { at, port } => p.silent(at, port),
                PortEvent::Resent => p.resent(),
            }
        }
        *timeout = p.timeout();
    }
}

impl ConnectPacer {
    /// The wait of a try, as of the last sync.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether a try that started at `started` has had its time at `now`.
    pub fn expired(&self, started: Instant, now: Instant) -> bool {
        now >= started + self.timeout
    }

    /// A try was answered (reported at the next sync).
    pub fn answered(
        &mut self,
        at: Instant,
        port: u16,
        resent: bool,
        rtt: Option<Duration>,
        how: Answer,
    ) {
        self.events.push(PortEvent::Answered {
            at,
            port,
            resent,
            rtt,
            how,
        });
    }

    /// A try had no answer by its timeout.
    pub fn silent(&mut self, at: Instant, port: u16) {
        self.events.push(PortEvent::Silent { at, port });
    }

    /// A port goes out again.
    pub fn resent(&mut self) {
        self.events.push(PortEvent::Resent);
    }

    /// With nothing in flight and ports left: how long to sleep for the next token (at most
    /// [`MAX_POLL_WAIT`]).
    pub fn token_wait(&mut self, now: Instant) -> Duration {
        let ready = self.shared.lock().ready_at(now);
        ready.saturating_duration_since(now).min(MAX_POLL_WAIT)
    }

    /// How long one poll may block at `now`: until the earliest try in flight (started at
    /// `earliest`) expires or, when another may start (`can_start`), until the next token;
    /// at most [`MAX_POLL_WAIT`].
    pub fn poll_wait(&mut self, now: Instant, earliest: Instant, can_start: bool) -> Duration {
        let mut wake = earliest + self.timeout;
        if can_start {
            wake = wake.min(self.shared.lock().ready_at(now));
        }
        wake.saturating_duration_since(now).min(MAX_POLL_WAIT)
    }
}

/// A try in flight.
#[derive(Debug)]
pub(crate) struct InFlight<C> {
    pub(crate) conn: C,
    pub(crate) port: u16,
    pub(crate) started: Instant,
    /// Which try this is (1 for the first).
    pub(crate) tries: u8,
}

/// How a connect ended, before the sweep stamps its time.
#[derive(Debug)]
pub(crate) enum Decided {
    /// Connected.
    Open(std::net::TcpStream),
    /// The network answered: refused (a RST) or unreachable (an ICMP error), `how` says which
    /// kind of packet; `error` is the OS error it came as.
    Answered {
        state: TcpState,
        how: Answer,
        error: Option<LocalError>,
    },
    /// Nothing came back in time.
    Silent,
    /// Nothing could be sent, or the outcome could not be read: this host's error.
    Local { state: TcpState, error: LocalError },
}

impl Decided {
    /// A connect that [`Finished::Closed`]: answered when the network said `how`, else this
    /// host's `error`, else silence.
    pub(crate) fn closed(state: TcpState, how: Option<Answer>, error: Option<LocalError>) -> Self {
        match (how, error) {
            (Some(how), error) => Decided::Answered { state, how, error },
            (None, Some(error)) => Decided::Local { state, error },
            (None, None) => Decided::Silent,
        }
    }
}

/// What [`Connector::start`] did.
#[derive(Debug)]
pub(crate) enum Started<C> {
    /// In flight.
    InFlight(C),
    /// Decided at once.
    Done(Decided),
    /// No socket could be had (out of descriptors): try again when one is free.
    NoSocket(LocalError),
}

impl<C> Started<C> {
    /// The connect's socket could not be had (`e`): out of descriptors, it waits for one;
    /// any other error is this host's.
    pub(crate) fn without_socket(e: &io::Error) -> Self {
        if out_of_descriptors(e) {
            Started::NoSocket(local_error(e))
        } else {
            Started::Done(Decided::Local {
                state: TcpState::Error,
                error: local_error(e),
            })
        }
    }
}

/// What a connect that [`Connector::wait`] reported ready has become.
#[derive(Debug)]
pub(crate) enum Finished {
    Open,
    /// Refused or unreachable; `reset`: the second `connect` already left the socket
    /// unconnected.
    Closed {
        state: TcpState,
        how: Option<Answer>,
        error: Option<LocalError>,
        // Windows' connector never reuses a socket, so it has no use for this.
        #[cfg_attr(windows, allow(dead_code))]
        reset: bool,
    },
    /// Woken, but the handshake is still in progress.
    Pending,
}

impl Finished {
    /// A connect that failed with `e` after its SYN left (read by [`later_outcome`]).
    pub(crate) fn failed(e: &io::Error, reset: bool) -> Self {
        let (state, how, error) = later_outcome(e);
        Finished::Closed {
            state,
            how,
            error,
            reset,
        }
    }
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
    /// Sleep `d` (nothing in flight, waiting for a token or a descriptor).
    fn sleep(&mut self, d: Duration);
    /// Read the outcome of a connect that `wait` reported ready.
    fn finish(&mut self, f: &InFlight<Self::Conn>) -> Finished;
    /// Conclude a connect that finished (or, with [`Finished::Pending`], expired on its last
    /// try), reusing or handing out its socket.
    fn conclude(&mut self, conn: Self::Conn, how: Finished) -> Decided;
    /// Abandon a try that expired and will be made again (its socket is reused).
    fn abort(&mut self, conn: Self::Conn);
}

/// Connect to every port of `ports` through `net`, at most `window` tries in flight, paced
/// and timed out by `pacer` on `clock`; outcomes go to `sink`. A silent try is made once more
/// (before new ports) up to [`MAX_TRIES`]. Returns whether it was cancelled.
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
    let mut at = 0usize;
    // Ports to try again (after a timeout, or when no socket could be had), with the tries
    // they have had.
    let mut again: VecDeque<(u16, u8)> = VecDeque::new();
    let mut flight: Vec<InFlight<N::Conn>> = Vec::with_capacity(window);
    let mut ready: Vec<bool> = Vec::with_capacity(window);
    let mut starved_since: Option<Instant> = None;
    loop {
        if cancel.is_cancelled() {
            pacer.sync();
            return true;
        }
        // Start connects while the window and the rate allow, a bounded number per turn so
        // quick answers free sockets for reuse before new ones are made (a process with
        // threads waits for an RCU grace period each time its descriptor table grows).
        let left = again.len() + (ports.len() - at);
        let want = (window - flight.len()).min(STARTS_PER_TURN).min(left);
        let granted = pacer.grant(clock.now(), want);
        let mut starved = false;
        // Out of sockets with connects in flight: only their ends can free one.
        let mut no_socket = false;
        for _ in 0..granted {
            let (port, tries) = match again.pop_front() {
                Some(p) => p,
                None => match ports.get(at) {
                    Some(&p) => {
                        at += 1;
                        (p, 0)
                    }
                    None => break,
                },
            };
            let start = clock.now();
            match net.start(port) {
                Started::InFlight(conn) => {
                    starved_since = None;
                    if tries > 0 {
                        pacer.resent();
                    }
                    flight.push(InFlight {
                        conn,
                        port,
                        started: start,
                        tries: tries + 1,
                    });
                }
                Started::Done(d) => {
                    starved_since = None;
                    let now = clock.now();
                    let time = now.saturating_duration_since(start);
                    note(pacer, now, port, tries + 1, &d, time);
                    if !sink.outcome(port, stamped(d, time, tries + 1)) {
                        return false;
                    }
                }
                Started::NoSocket(error) => {
                    // Sockets in flight come back; with none, wait a while for descriptors
                    // held elsewhere, then report the error.
                    let now = clock.now();
                    let since = *starved_since.get_or_insert(now);
                    if !flight.is_empty() || now.saturating_duration_since(since) < STARVED_LIMIT {
                        again.push_front((port, tries));
                        starved = flight.is_empty();
                        no_socket = true;
                        break;
                    }
                    let c = Connected::Closed {
                        state: TcpState::Error,
                        time: None,
                        tries,
                        error: Some(error),
                    };
                    if !sink.outcome(port, c) {
                        return false;
                    }
                }
            }
        }
        let Some(earliest) = flight.iter().map(|f| f.started).min() else {
            if at == ports.len() && again.is_empty() {
                pacer.sync();
                sink.turn_done();
                return false;
            }
            if !sink.turn_done() {
                return false;
            }
            // Waiting for a token, or for a descriptor.
            let wait = if starved {
                STARVED_RETRY
            } else {
                pacer.token_wait(clock.now())
            };
            net.sleep(wait);
            continue;
        };
        // One poll over every connect in flight, until the earliest deadline (or the next
        // token, when more can start).
        let can_start = !no_socket && left > granted && flight.len() < window;
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
            if matches!(how, Finished::Pending) && f.tries < MAX_TRIES {
                // Silent so far: once more, ahead of new ports.
                pacer.silent(now, f.port);
                net.abort(f.conn);
                again.push_back((f.port, f.tries));
                continue;
            }
            let time = now.saturating_duration_since(f.started);
            let port = f.port;
            let d = net.conclude(f.conn, how);
            note(pacer, now, port, f.tries, &d, time);
            if !sink.outcome(port, stamped(d, time, f.tries)) {
                return false;
            }
        }
        if !sink.turn_done() {
            return false;
        }
    }
}

/// The outcome of a decided try, with its time and tries.
fn stamped(d: Decided, time: Duration, tries: u8) -> Connected {
    match d {
        Decided::Open(stream) => Connected::Open {
            time,
            tries,
            stream,
        },
        Decided::Answered { state, error, .. } => Connected::Closed {
            state,
            time: Some(time),
            tries,
            error,
        },
        Decided::Silent => Connected::Closed {
            state: TcpState::Filtered,
            time: None,
            tries,
            error: None,
        },
        Decided::Local { state, error } => Connected::Closed {
            state,
            time: None,
            tries,
            error: Some(error),
        },
    }
}

/// Tell the pacer how a port ended: an answer (with its round trip: every try is its own
/// connect, so the answer belongs to it alone) or silence; local errors say nothing about
/// the path.
fn note(pacer: &mut ConnectPacer, now: Instant, port: u16, tries: u8, d: &Decided, time: Duration) {
    let resent = tries > 1;
    match d {
        Decided::Open(_) => pacer.answered(now, port, resent, Some(time), Answer::Direct),
        Decided::Answered { how, .. } => pacer.answered(now, port, resent, Some(time), *how),
        Decided::Silent => pacer.silent(now, port),
        Decided::Local { .. } => {}
    }
}

mod errors;
pub(crate) use errors::out_of_descriptors;
pub use errors::{errno_name, local_error};

/// Connect to every port of `ports` on `ip` from the calling (blocking) thread, with at most
/// `window` connects in flight, paced and timed out by `pacer`; `sink` gets the outcomes as
/// they finish and returns `false` to stop. Returns whether it was cancelled.
///
/// On Unix sockets are bound to a source port of their own and reused from port to port:
/// after a refusal, a second `connect(2)` on the same socket returns the error and leaves the
/// socket unconnected (and, bound explicitly, still holding its port), so the next port costs
/// one more `connect` instead of `socket`, `getsockopt`, `close` and a search for a free
/// ephemeral port. A timed-out connect is aborted with `connect(AF_UNSPEC)` and its socket
/// reused too; an open connection is handed to the sink and its socket replaced. Windows
/// gives each try a fresh socket (see `win`).
#[cfg(any(unix, windows))]
pub fn connect_many_blocking(
    ip: IpAddr,
    ports: &[u16],
    window: usize,
    pacer: &mut ConnectPacer,
    clock: &impl Clock,
    cancel: &Cancel,
    sink: &mut impl ConnectSink,
) -> bool {
    #[cfg(unix)]
    let mut net = SocketConnector {
        ip,
        sockets: SocketPool::new(ip, window),
        pollfds: Vec::with_capacity(window),
    };
    #[cfg(windows)]
    let mut net = win::WinConnector::new(ip, window);
    sweep(&mut net, clock, ports, window, pacer, cancel, sink)
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
            Finished::Closed {
                state,
                how,
                error,
                reset,
            } => {
                self.sockets.put_back(conn, reset);
                Decided::closed(state, how, error)
            }
            // Expired on its last try: no answer in time.
            Finished::Pending => {
                self.sockets.put_back(conn, false);
                Decided::Silent
            }
        }
    }

    fn abort(&mut self, conn: SweepSocket) {
        self.sockets.put_back(conn, false);
    }
}

/// Start one connect on a pooled socket.
#[cfg(unix)]
fn start_connect(
    sockets: &mut SocketPool,
    port: u16,
    addr: &socket2::SockAddr,
) -> Started<SweepSocket> {
    let mut socket = match sockets.take(port) {
        Ok(s) => s,
        Err(e) => return Started::without_socket(&e),
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
            Err(e) => return Started::without_socket(&e),
        }
    }
    match r {
        Ok(()) => Started::Done(open(socket.fd)),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Started::InFlight(socket),
        Err(e) => {
            // The attempt never started: the socket is unconnected and reusable.
            sockets.put_back(socket, true);
            Started::Done(immediate_outcome(&e))
        }
    }
}

/// What a `connect(2)` that failed at once means. A refusal is the target's RST (on a near
/// host it comes back inside the call). Anything else at once is this host's own answer,
/// with nothing sent: no route (ENETUNREACH, EHOSTUNREACH from an `unreachable` route), a
/// local policy (EACCES, EPERM), or another local error; the port was not probed.
pub(crate) fn immediate_outcome(e: &io::Error) -> Decided {
    use crate::tcp::ConnectFailure;
    match crate::tcp::classify_connect_error(e) {
        ConnectFailure::Refused => Decided::Answered {
            state: TcpState::Refused,
            how: Answer::Direct,
            error: None,
        },
        ConnectFailure::Unreachable
        | ConnectFailure::TimedOut
        | ConnectFailure::Denied
        | ConnectFailure::Other => Decided::Local {
            state: TcpState::Error,
            error: local_error(e),
        },
    }
}

/// What a connect that failed after its SYN left means: a RST (refused), an ICMP error
/// (unreachable; the kernel turns the ICMP code into the errno), the kernel giving up
/// (silent), or a local error.
pub(crate) fn later_outcome(e: &io::Error) -> (TcpState, Option<Answer>, Option<LocalError>) {
    use crate::tcp::ConnectFailure;
    match crate::tcp::classify_connect_error(e) {
        ConnectFailure::Refused => (TcpState::Refused, Some(Answer::Direct), None),
        ConnectFailure::Unreachable => (
            TcpState::Unreachable,
            Some(Answer::Icmp),
            Some(local_error(e)),
        ),
        ConnectFailure::TimedOut => (TcpState::Filtered, None, None),
        ConnectFailure::Denied | ConnectFailure::Other => {
            (TcpState::Error, None, Some(local_error(e)))
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
                    Ok(Some(e)) => Finished::failed(&e, false),
                    _ => Finished::Pending,
                }
            }
            _ => Finished::failed(&e, true),
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
mod tests;
