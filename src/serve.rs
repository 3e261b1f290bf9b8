//! The `stunmap serve` runtime: STUN Binding reflector on UDP and TCP, on one port or a range,
//! optionally with an alternate IP and port for RFC 5780 tests. The protocol decisions are
//! `probes::reflector::respond` and the per-source limit `probes::reflector::limit`; this
//! module only owns sockets and threads.
//!
//! UDP: `--threads` OS threads, each with its own `SO_REUSEPORT` socket for every address
//! (the kernel spreads senders over them by a hash of address and port) and a tight loop of
//! `recvmmsg` → answer → `sendmmsg` (engine::mmsg), blocking in `epoll_wait` only when every
//! socket is drained. A CHANGE-REQUEST answer leaves from the same thread's socket of the
//! alternate address, so every thread reaches every address. Shutdown wakes each thread
//! through an eventfd and joins it. Off Linux (no `SO_REUSEPORT` spreading, no `recvmmsg`):
//! one socket per address, each read by a thread of its own with plain `recv_from`/`send_to`
//! (`--threads` does not apply), which sees a shutdown within [`STOP_POLL`].
//!
//! TCP: tokio tasks, one per connection, under a global cap (`--max-tcp`) and a per-source cap
//! (`--max-tcp-per-source`), with three deadlines: between messages (`--tcp-idle`, measured
//! from the last whole message, so bytes trickled in do not extend it), for one message from
//! its first byte (`--tcp-message-timeout`), and for writing an answer
//! (`--tcp-write-timeout`: a client that never reads is cut). An accept error never stops a
//! listener: descriptor exhaustion (EMFILE and friends) backs off up to a second, anything
//! else concerns one connection and is skipped.

use std::collections::HashMap;
use std::hash::RandomState;
use std::io;
use std::net::{IpAddr, SocketAddr};
#[cfg(target_os = "linux")]
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result};
use engine::clock::Clock;
#[cfg(target_os = "linux")]
use engine::epoll::{Poller, Waker};
#[cfg(target_os = "linux")]
use engine::mmsg::{MMSG_BATCH, RecvBatch, SendBatch};
use probes::reflector::limit::{SourceKey, SourceLimiter, SourceRate};
use probes::reflector::{Action, Origin, ServerAddrs, respond};
use probes::stun::stream::StunStream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Bytes per receive slot: a STUN request over UDP fits one path MTU (RFC 8489 §6.1); a
/// larger datagram is cut by the kernel and dropped.
const RECV_SLOT: usize = 2048;

/// What to serve.
#[derive(Clone, Debug)]
pub(crate) struct ServeConfig {
    /// Primary listen IPs with their port ranges.
    pub(crate) listen: Vec<(IpAddr, (u16, u16))>,
    /// RFC 5780 alternate IP (per family it applies to the primary IP of the same family).
    pub(crate) alt_ip: Option<IpAddr>,
    /// RFC 5780 alternate port.
    pub(crate) alt_port: Option<u16>,
    /// Also serve STUN over TCP.
    pub(crate) tcp: bool,
    /// SOFTWARE attribute text.
    pub(crate) software: Option<String>,
    /// UDP worker threads.
    pub(crate) threads: usize,
    /// Answers per source (UDP).
    pub(crate) per_source: SourceRate,
    /// STUN over TCP limits.
    pub(crate) tcp_limits: TcpLimits,
}

/// Bounds of STUN over TCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TcpLimits {
    /// Connections at once (bounds file descriptors).
    pub(crate) max: usize,
    /// Connections at once from one source (an IPv4 address or an IPv6 /64).
    pub(crate) per_source: usize,
    /// Time allowed between whole messages (and before the first).
    pub(crate) idle: Duration,
    /// Time allowed for one message from its first byte.
    pub(crate) message: Duration,
    /// Time allowed for writing one answer.
    pub(crate) write: Duration,
}

impl TcpLimits {
    /// `stunmap serve`'s defaults (its `--help` and docs/serve.md say the same).
    pub(crate) const DEFAULT: TcpLimits = TcpLimits {
        max: 512,
        per_source: 32,
        idle: Duration::from_secs(10),
        message: Duration::from_secs(5),
        write: Duration::from_secs(5),
    };
}

/// Counters served as statistics.
#[derive(Debug, Default)]
pub(crate) struct ServeStats {
    pub(crate) udp_requests: AtomicU64,
    pub(crate) udp_dropped: AtomicU64,
    /// Requests not answered because their source was over its limit.
    pub(crate) udp_limited: AtomicU64,
    /// Answers the kernel refused or had no buffer room for.
    pub(crate) udp_unsent: AtomicU64,
    pub(crate) tcp_connections: AtomicU64,
    pub(crate) tcp_requests: AtomicU64,
    /// Connections closed at once because their source had its share.
    pub(crate) tcp_refused: AtomicU64,
    /// Connections cut at a deadline (idle, message, write).
    pub(crate) tcp_timeouts: AtomicU64,
    /// Failed accepts (descriptor exhaustion and per-connection errors).
    pub(crate) tcp_accept_errors: AtomicU64,
}

impl ServeStats {
    /// The counters in one line.
    pub(crate) fn summary(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "{} UDP requests answered, {} dropped, {} over the per-source limit, {} answers unsent; \
             {} TCP connections ({} refused over the per-source cap, {} cut at a deadline, \
             {} accept errors), {} TCP requests",
            get(&self.udp_requests),
            get(&self.udp_dropped),
            get(&self.udp_limited),
            get(&self.udp_unsent),
            get(&self.tcp_connections),
            get(&self.tcp_refused),
            get(&self.tcp_timeouts),
            get(&self.tcp_accept_errors),
            get(&self.tcp_requests)
        )
    }
}

/// The sockets a config needs: `(ip, port)` for UDP (and TCP) listeners.
pub(crate) fn socket_addrs(cfg: &ServeConfig) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for (ip, (a, b)) in &cfg.listen {
        let alt_ip = cfg.alt_ip.filter(|alt| alt.is_ipv4() == ip.is_ipv4());
        let ips: Vec<IpAddr> = std::iter::once(*ip).chain(alt_ip).collect();
        for ip in ips {
            for port in (*a..=*b).chain(cfg.alt_port) {
                let s = SocketAddr::new(ip, port);
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
    }
    out
}

/// Descriptors a config holds at most: UDP sockets per thread, each thread's epoll and
/// eventfd (and the waker's duplicate), TCP listeners and connections, and
/// `engine::fd::RESERVED_FDS` for everything else.
pub(crate) fn fds_needed(cfg: &ServeConfig, addrs: usize) -> u64 {
    let threads = cfg.threads.max(1) as u64;
    let udp = addrs as u64 * threads + 3 * threads;
    let tcp = if cfg.tcp {
        addrs as u64 + cfg.tcp_limits.max as u64
    } else {
        0
    };
    udp + tcp + engine::fd::RESERVED_FDS
}

/// Bind everything, then serve until the future is dropped. `ready` receives the bound
/// addresses once all sockets are up.
pub(crate) async fn serve(
    cfg: ServeConfig,
    stats: Arc<ServeStats>,
    ready: impl FnOnce(&[SocketAddr]),
) -> Result<()> {
    let addrs = socket_addrs(&cfg);
    let threads = cfg.threads.max(1);
    let needed = fds_needed(&cfg, addrs.len());
    let limit = engine::fd::raise_nofile();
    if needed > limit {
        return Err(crate::exit::usage(format!(
            "{} addresses on {threads} threads plus {} TCP connections need ~{needed} file \
             descriptors but RLIMIT_NOFILE is {limit}: serve fewer ports, lower --threads or \
             --max-tcp, or listen on one port and redirect the range to it with nftables (see \
             `stunmap serve --help`)",
            addrs.len(),
            if cfg.tcp { cfg.tcp_limits.max } else { 0 }
        )));
    }
    // groups[address][thread]
    let mut groups = Vec::with_capacity(addrs.len());
    for a in &addrs {
        #[cfg(target_os = "linux")]
        let g = engine::udp::bind_reuseport_group(*a, threads);
        #[cfg(not(target_os = "linux"))]
        let g = bind_udp(*a).map(|s| vec![s]);
        groups.push(g.with_context(|| format!("cannot bind UDP {a}"))?);
    }
    let plan: Arc<[SocketPlan]> = addrs
        .iter()
        .map(|a| SocketPlan::new(&cfg, &addrs, *a))
        .collect();
    let software: Option<Arc<str>> = cfg.software.as_deref().map(Arc::from);
    let shared = Arc::new(UdpShared {
        software: software.clone(),
        limiter: SourceLimiter::new(
            SourceLimiter::<RandomState>::DEFAULT_SOURCES,
            cfg.per_source,
            RandomState::new(),
            engine::clock::Monotonic.now(),
        ),
        stats: stats.clone(),
    });
    let mut per_thread: Vec<Vec<std::net::UdpSocket>> = (0..threads).map(|_| Vec::new()).collect();
    for g in groups {
        for (t, s) in g.into_iter().enumerate() {
            if let Some(list) = per_thread.get_mut(t) {
                list.push(s);
            }
        }
    }
    let (workers, mut failed) = UdpWorkers::spawn(per_thread, plan, shared)?;
    let mut tasks = tokio::task::JoinSet::new();
    if cfg.tcp {
        let permits = Arc::new(Semaphore::new(cfg.tcp_limits.max.max(1)));
        let tcp = Arc::new(TcpShared {
            software,
            stats: stats.clone(),
            limits: cfg.tcp_limits,
            sources: Mutex::new(HashMap::new()),
        });
        for a in &addrs {
            let listener = bind_tcp(*a).with_context(|| format!("cannot listen on TCP {a}"))?;
            tasks.spawn(tcp_accept(listener, *a, permits.clone(), tcp.clone()));
        }
    }
    ready(&addrs);
    let tcp_done = async {
        while tasks.join_next().await.is_some() {}
        std::future::pending::<()>().await;
    };
    tokio::select! {
        e = failed.recv() => {
            drop(workers);
            match e {
                Some(e) => Err(anyhow::Error::new(e).context("a UDP worker thread failed")),
                None => Ok(()),
            }
        }
        () = tcp_done => Ok(()),
    }
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    TcpListener::from_std(sock.into())
}

/// The RFC 5780 view from socket `here`: the alternate IP/port are whichever of the pair
/// `here` is not.
fn server_addrs(cfg: &ServeConfig, here: SocketAddr) -> ServerAddrs {
    let primary_ip_of_family = cfg
        .listen
        .iter()
        .map(|(ip, _)| *ip)
        .find(|ip| ip.is_ipv4() == here.is_ipv4())
        .unwrap_or(here.ip());
    let alt_ip = cfg
        .alt_ip
        .filter(|a| a.is_ipv4() == here.is_ipv4())
        .map(|alt| {
            if here.ip() == alt {
                primary_ip_of_family
            } else {
                alt
            }
        });
    let in_range = cfg
        .listen
        .iter()
        .find(|(ip, _)| ip.is_ipv4() == here.is_ipv4())
        .map(|(_, r)| *r);
    let alt_port = cfg.alt_port.and_then(|alt| {
        if here.port() == alt {
            // The alternate of the alternate port is the first primary port.
            in_range.map(|(a, _)| a)
        } else {
            Some(alt)
        }
    });
    ServerAddrs {
        primary_ip: here.ip(),
        primary_port: here.port(),
        alt_ip,
        alt_port,
    }
}

/// One listening address as every worker thread sees it: its RFC 5780 view and, for each
/// origin a CHANGE-REQUEST may name, the index of the socket the answer leaves from.
#[derive(Debug)]
struct SocketPlan {
    server: ServerAddrs,
    /// Indexed by `alt_ip << 1 | alt_port`.
    reply: [Option<usize>; 4],
}

impl SocketPlan {
    fn new(cfg: &ServeConfig, addrs: &[SocketAddr], here: SocketAddr) -> Self {
        let server = server_addrs(cfg, here);
        let mut reply = [None; 4];
        for (i, slot) in reply.iter_mut().enumerate() {
            let origin = Origin {
                alt_ip: i & 2 != 0,
                alt_port: i & 1 != 0,
            };
            *slot = server
                .addr(origin)
                .and_then(|a| addrs.iter().position(|x| *x == a));
        }
        Self { server, reply }
    }

    fn reply_socket(&self, origin: Origin) -> Option<usize> {
        let i = usize::from(origin.alt_ip) << 1 | usize::from(origin.alt_port);
        self.reply.get(i).copied().flatten()
    }
}

/// What every UDP worker shares.
#[derive(Debug)]
struct UdpShared {
    software: Option<Arc<str>>,
    limiter: SourceLimiter<RandomState>,
    stats: Arc<ServeStats>,
}

/// One batch's counts, added to the shared counters once per batch.
#[derive(Debug, Default)]
struct BatchCounts {
    answered: u64,
    dropped: u64,
    limited: u64,
    unsent: u64,
}

impl BatchCounts {
    fn flush(&mut self, stats: &ServeStats) {
        for (n, c) in [
            (self.answered, &stats.udp_requests),
            (self.dropped, &stats.udp_dropped),
            (self.limited, &stats.udp_limited),
            (self.unsent, &stats.udp_unsent),
        ] {
            if n > 0 {
                c.fetch_add(n, Ordering::Relaxed);
            }
        }
        *self = BatchCounts::default();
    }
}

/// The answer to one datagram `data` from `client` to the socket of `p`, written into
/// `out`: the origin it leaves from and its destination, or `None` (counted as dropped or
/// limited) when there is none to send. `now` is read only for an answer.
fn answer(
    p: &SocketPlan,
    shared: &UdpShared,
    client: SocketAddr,
    data: &[u8],
    now: impl FnOnce() -> std::time::Instant,
    out: &mut Vec<u8>,
    counts: &mut BatchCounts,
) -> Option<(Origin, SocketAddr)> {
    out.clear();
    match respond(data, client, &p.server, shared.software.as_deref(), out) {
        Action::Reply { from, to } => {
            // Over the limit: no answer at all (never a smaller one).
            if !shared.limiter.allow(client.ip(), now()) {
                counts.limited += 1;
                return None;
            }
            Some((from, to))
        }
        Action::Drop(_) => {
            counts.dropped += 1;
            None
        }
    }
}

/// The UDP worker threads; dropping this stops and joins them.
#[cfg(target_os = "linux")]
#[derive(Debug)]
struct UdpWorkers {
    wakers: Vec<Waker>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

#[cfg(target_os = "linux")]
impl UdpWorkers {
    /// Start one thread per socket list. The receiver yields the first thread error.
    fn spawn(
        per_thread: Vec<Vec<std::net::UdpSocket>>,
        plan: Arc<[SocketPlan]>,
        shared: Arc<UdpShared>,
    ) -> io::Result<(Self, tokio::sync::mpsc::Receiver<io::Error>)> {
        let (tx, rx) = tokio::sync::mpsc::channel(per_thread.len().max(1));
        let mut workers = UdpWorkers {
            wakers: Vec::new(),
            threads: Vec::new(),
        };
        for (t, socks) in per_thread.into_iter().enumerate() {
            let poller = Poller::new()?;
            for (i, s) in socks.iter().enumerate() {
                poller.add(s.as_raw_fd(), i as u64)?;
            }
            workers.wakers.push(poller.waker()?);
            let (plan, shared, tx) = (plan.clone(), shared.clone(), tx.clone());
            let handle = std::thread::Builder::new()
                .name(format!("stunmap-udp-{t}"))
                .spawn(move || {
                    if let Err(e) = udp_worker(&socks, &plan, &shared, &poller) {
                        let _ = tx.blocking_send(e);
                    }
                })?;
            workers.threads.push(handle);
        }
        Ok((workers, rx))
    }
}

#[cfg(target_os = "linux")]
impl Drop for UdpWorkers {
    fn drop(&mut self) {
        for w in &self.wakers {
            w.wake();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One worker thread: drain each readable socket batch by batch, answer, send, repeat.
#[cfg(target_os = "linux")]
fn udp_worker(
    socks: &[std::net::UdpSocket],
    plan: &[SocketPlan],
    shared: &UdpShared,
    poller: &Poller,
) -> io::Result<()> {
    let clock = engine::clock::Monotonic;
    let mut rx = RecvBatch::new(RECV_SLOT);
    let mut tx: Vec<SendBatch> = socks.iter().map(|_| SendBatch::new()).collect();
    let mut out = Vec::with_capacity(256);
    let mut ready = Vec::new();
    let mut counts = BatchCounts::default();
    loop {
        ready.clear();
        if poller.wait(&mut ready, None)? {
            return Ok(());
        }
        for &token in &ready {
            let here = token as usize;
            let (Some(sock), Some(p)) = (socks.get(here), plan.get(here)) else {
                continue;
            };
            loop {
                // Errors here concern single datagrams (e.g. an ICMP error queued for the
                // socket): the next call goes on.
                let n = rx.recv(sock.as_raw_fd(), libc::MSG_DONTWAIT).unwrap_or(0);
                if n == 0 {
                    break;
                }
                let now = clock.now();
                for j in 0..n {
                    let Some((client, data)) = rx.get(j) else {
                        counts.dropped += 1;
                        continue;
                    };
                    let Some((from, to)) =
                        answer(p, shared, client, data, || now, &mut out, &mut counts)
                    else {
                        continue;
                    };
                    let k = p.reply_socket(from).unwrap_or(here);
                    if let Some(b) = tx.get_mut(k) {
                        let start = b.buffer().len();
                        b.buffer().extend_from_slice(&out);
                        b.commit(start, to);
                        counts.answered += 1;
                    }
                }
                for (b, s) in tx.iter_mut().zip(socks) {
                    if !b.is_empty() {
                        let f = b.flush(s.as_raw_fd());
                        counts.unsent += f.dropped as u64;
                        counts.answered -= (f.dropped as u64).min(counts.answered);
                    }
                }
                counts.flush(&shared.stats);
                if n < MMSG_BATCH {
                    break;
                }
            }
        }
    }
}

/// Off Linux: the longest a UDP thread blocks in `recv_from` before it looks for a shutdown.
#[cfg(not(target_os = "linux"))]
const STOP_POLL: Duration = Duration::from_millis(100);

/// Off Linux: one UDP socket on `addr` (IPv6 sockets v6-only), buffers raised like Linux's.
#[cfg(not(target_os = "linux"))]
fn bind_udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    let _ = sock.set_recv_buffer_size(4 << 20);
    let _ = sock.set_send_buffer_size(4 << 20);
    sock.bind(&addr.into())?;
    let sock: std::net::UdpSocket = sock.into();
    sock.set_read_timeout(Some(STOP_POLL))?;
    Ok(sock)
}

/// The UDP worker threads off Linux, one per socket; dropping this stops and joins them.
#[cfg(not(target_os = "linux"))]
#[derive(Debug)]
struct UdpWorkers {
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

#[cfg(not(target_os = "linux"))]
impl UdpWorkers {
    /// Start one thread per socket (each list holds every address a thread may answer
    /// from). The receiver yields the first thread error.
    fn spawn(
        per_thread: Vec<Vec<std::net::UdpSocket>>,
        plan: Arc<[SocketPlan]>,
        shared: Arc<UdpShared>,
    ) -> io::Result<(Self, tokio::sync::mpsc::Receiver<io::Error>)> {
        let (tx, rx) = tokio::sync::mpsc::channel(per_thread.len().max(1));
        let mut workers = UdpWorkers {
            stop: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            threads: Vec::new(),
        };
        for socks in per_thread {
            let socks: Arc<[std::net::UdpSocket]> = socks.into();
            for here in 0..socks.len() {
                let (socks, plan, shared, tx) =
                    (socks.clone(), plan.clone(), shared.clone(), tx.clone());
                let stop = workers.stop.clone();
                let handle = std::thread::Builder::new()
                    .name(format!("stunmap-udp-{here}"))
                    .spawn(move || {
                        if let Err(e) = udp_worker(&socks, here, &plan, &shared, &stop) {
                            let _ = tx.blocking_send(e);
                        }
                    })?;
                workers.threads.push(handle);
            }
        }
        Ok((workers, rx))
    }
}

#[cfg(not(target_os = "linux"))]
impl Drop for UdpWorkers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One worker thread off Linux: receive on `socks[here]`, answer (from the socket the
/// CHANGE-REQUEST names), repeat until `stop`.
#[cfg(not(target_os = "linux"))]
fn udp_worker(
    socks: &[std::net::UdpSocket],
    here: usize,
    plan: &[SocketPlan],
    shared: &UdpShared,
    stop: &std::sync::atomic::AtomicBool,
) -> io::Result<()> {
    let clock = engine::clock::Monotonic;
    let (Some(sock), Some(p)) = (socks.get(here), plan.get(here)) else {
        return Ok(());
    };
    let mut buf = vec![0u8; RECV_SLOT];
    let mut out = Vec::with_capacity(256);
    let mut counts = BatchCounts::default();
    while !stop.load(Ordering::Relaxed) {
        let (n, client) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            // The read timeout: look at `stop` again.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            // Other errors concern single datagrams (one larger than the slot, an ICMP error
            // reported for an earlier answer): the next call goes on, after a millisecond so
            // that a socket that keeps failing cannot spin the thread.
            Err(_) => {
                std::thread::sleep(std::time::Duration::from_millis(1));
                continue;
            }
        };
        let Some(data) = buf.get(..n) else {
            counts.dropped += 1;
            continue;
        };
        let now = || clock.now();
        if let Some((from, to)) = answer(p, shared, client, data, now, &mut out, &mut counts) {
            let k = p.reply_socket(from).unwrap_or(here);
            match socks.get(k).map(|s| s.send_to(&out, to)) {
                Some(Ok(_)) => counts.answered += 1,
                _ => counts.unsent += 1,
            }
        }
        counts.flush(&shared.stats);
    }
    Ok(())
}

/// What TCP connections share.
#[derive(Debug)]
struct TcpShared {
    software: Option<Arc<str>>,
    stats: Arc<ServeStats>,
    limits: TcpLimits,
    /// Connections held per source (entries only while a connection is open, so at most
    /// `limits.max` of them).
    sources: Mutex<HashMap<SourceKey, usize>>,
}

/// One connection's share of its source's cap, given back on drop.
struct SourceSlot {
    shared: Arc<TcpShared>,
    key: SourceKey,
}

impl SourceSlot {
    fn take(shared: &Arc<TcpShared>, ip: IpAddr) -> Option<Self> {
        let key = SourceKey::of(ip);
        let mut map = shared
            .sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(key).or_insert(0);
        if *n >= shared.limits.per_source {
            return None;
        }
        *n += 1;
        Some(Self {
            shared: shared.clone(),
            key,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut map = self
            .shared
            .sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// Accept errors that mean the process (or system) is out of a resource: wait before the
/// next accept instead of spinning. Everything else concerns one connection.
fn out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// The back-off after a resource error: 10 ms, doubling up to 1 s.
fn next_backoff(previous: Duration) -> Duration {
    (previous * 2).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

async fn tcp_accept(
    listener: TcpListener,
    here: SocketAddr,
    permits: Arc<Semaphore>,
    shared: Arc<TcpShared>,
) -> io::Result<()> {
    let mut backoff = Duration::ZERO;
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return Ok(());
        };
        let (stream, client) = match listener.accept().await {
            Ok(x) => {
                backoff = Duration::ZERO;
                x
            }
            Err(e) => {
                shared
                    .stats
                    .tcp_accept_errors
                    .fetch_add(1, Ordering::Relaxed);
                if out_of_resources(&e) {
                    backoff = next_backoff(backoff);
                    tokio::time::sleep(backoff).await;
                }
                continue;
            }
        };
        let Some(slot) = SourceSlot::take(&shared, client.ip()) else {
            shared.stats.tcp_refused.fetch_add(1, Ordering::Relaxed);
            // A reset rather than an orderly close: nothing is owed to a source over its cap.
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            continue;
        };
        shared.stats.tcp_connections.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            let end = tcp_conn(stream, client, here, &shared).await;
            if end.is_deadline() {
                shared.stats.tcp_timeouts.fetch_add(1, Ordering::Relaxed);
            }
            drop(slot);
        });
    }
}

/// Why a STUN/TCP connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnEnd {
    /// The client closed it (or the connection failed).
    Closed,
    /// No whole message within `--tcp-idle` of the last one.
    Idle,
    /// A message not complete within `--tcp-message-timeout` of its first byte.
    MessageDeadline,
    /// An answer not written within `--tcp-write-timeout`.
    WriteDeadline,
    /// Bytes at a message boundary that are not STUN.
    NotStun,
}

impl ConnEnd {
    fn is_deadline(self) -> bool {
        matches!(
            self,
            ConnEnd::Idle | ConnEnd::MessageDeadline | ConnEnd::WriteDeadline
        )
    }
}

/// Serve one connection until it closes, breaks a deadline or sends something not STUN.
async fn tcp_conn<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    client: SocketAddr,
    here: SocketAddr,
    shared: &TcpShared,
) -> ConnEnd {
    use tokio::time::{Instant, timeout, timeout_at};
    // Over TCP a reply can only come back on the same connection: no alternate address, so a
    // CHANGE-REQUEST gets no answer (RFC 5780 §6.1 concerns UDP).
    let server = ServerAddrs {
        primary_ip: here.ip(),
        primary_port: here.port(),
        alt_ip: None,
        alt_port: None,
    };
    let limits = shared.limits;
    let mut framer = StunStream::new();
    let mut buf = [0u8; 4096];
    let mut out = Vec::new();
    // The last whole message (or the accept), and the first byte of the message under way.
    let mut last = Instant::now();
    let mut started: Option<Instant> = None;
    loop {
        let deadline = match started {
            None => last + limits.idle,
            Some(t) => t + limits.message,
        };
        let n = match timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) if started.is_some() => return ConnEnd::MessageDeadline,
            Err(_) => return ConnEnd::Idle,
            Ok(Ok(0)) | Ok(Err(_)) => return ConnEnd::Closed,
            Ok(Ok(n)) => n,
        };
        if started.is_none() {
            started = Some(Instant::now());
        }
        framer.push(buf.get(..n).unwrap_or(&[]));
        let mut whole = false;
        loop {
            let msg = match framer.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(_) => return ConnEnd::NotStun,
            };
            whole = true;
            out.clear();
            if let Action::Reply { .. } =
                respond(&msg, client, &server, shared.software.as_deref(), &mut out)
            {
                shared.stats.tcp_requests.fetch_add(1, Ordering::Relaxed);
                match timeout(limits.write, stream.write_all(&out)).await {
                    Err(_) => return ConnEnd::WriteDeadline,
                    Ok(Err(_)) => return ConnEnd::Closed,
                    Ok(Ok(())) => {}
                }
            }
        }
        if whole {
            last = Instant::now();
            // Bytes left over begin the next message now.
            started = (framer.buffered() > 0).then_some(last);
        }
    }
}

#[cfg(test)]
mod tests;
