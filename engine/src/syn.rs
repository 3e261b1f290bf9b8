//! Raw SYN sweep (IPv4, Linux): SYNs from a raw socket, answers read from raw sockets with
//! their IP headers, so the TTL and IP ID of every SYN-ACK and RST can be compared. This
//! module owns the sockets, filters and threads; the packets are [`probes::wire::ip`], and
//! which answers are ours and what their TTLs say is [`probes::raw_sweep`].
//!
//! Needs root or CAP_NET_RAW. The kernel answers the target's SYN-ACKs with a RST (no socket of
//! ours owns the source port), which also tears the half-open connection down at the target.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use probes::raw_sweep::{SynSweep, judge_resets};
use probes::sweep::pacing::Answer;
use probes::sweep::{StunOverTcp, TcpPortResult, TcpState};
use probes::wire::ip::{ICMP_DEST_UNREACHABLE, IcmpUnreachableRepr, TcpSegmentRepr};

pub use probes::raw_sweep::{RawAnswer, RawReport};

use crate::clock::{Clock, Monotonic};
use crate::connect::{ConnectPacer, SharedPacing};
use crate::driver::Cancel;

/// Whether a raw TCP socket can be opened here.
pub fn check_privileges() -> Result<(), String> {
    raw_socket(libc::IPPROTO_TCP).map(drop).map_err(|e| {
        if e.raw_os_error() == Some(libc::EPERM) || e.raw_os_error() == Some(libc::EACCES) {
            "needs root or CAP_NET_RAW (run with sudo, or `setcap cap_net_raw+ep` on the binary)"
                .to_string()
        } else {
            format!("cannot open a raw socket: {e}")
        }
    })
}

/// A raw IPv4 socket: `IPPROTO_TCP` receives a copy of every TCP segment the host gets (and
/// is given a large buffer for a burst of answers); `IPPROTO_RAW` is send-only and takes
/// packets with their IP header (IP_HDRINCL is implied).
fn raw_socket(protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            protocol,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if protocol == libc::IPPROTO_RAW {
        return Ok(fd);
    }
    // FORCE is allowed with CAP_NET_ADMIN; the plain option is capped by net.core.rmem_max.
    let size: libc::c_int = 32 << 20;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: a valid int option value of the right length.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                &size as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            break;
        }
    }
    Ok(fd)
}

/// SYNs handed to one `sendmmsg`.
const SEND_BATCH: usize = 256;
/// Packets read per `recvmmsg`.
const RECV_BATCH: usize = 256;
/// Bytes kept of each packet: IP and TCP headers with options fit.
const RECV_SNAP: usize = 128;

/// One classic BPF instruction.
const fn bpf(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

// The classic BPF opcodes the filters use (linux/filter.h).
const LD_W_ABS: u16 = 0x20; // ld [k]
const LDH_IND: u16 = 0x48; // ldh [x+k]
const LDB_IND: u16 = 0x50; // ldb [x+k]
const LDXB_MSH: u16 = 0xb1; // ldxb 4*([k]&0xf): the IPv4 header length
const JEQ_K: u16 = 0x15; // jeq #k, jt, jf
const RET_K: u16 = 0x06; // ret #k: bytes to keep, 0 drops
const ACCEPT: libc::sock_filter = bpf(RET_K, 0, 0, 0xFFFF);
const DROP: libc::sock_filter = bpf(RET_K, 0, 0, 0);

/// Attach a classic BPF program to a raw ICMP socket so the kernel passes only destination
/// unreachable messages (which quote the datagram they answer) and not every ping and
/// error the host receives.
fn attach_icmp_filter(fd: std::os::fd::RawFd) -> io::Result<()> {
    let prog = [
        bpf(LDXB_MSH, 0, 0, 0),
        bpf(LDB_IND, 0, 0, 0), // ICMP type
        bpf(JEQ_K, 0, 1, u32::from(ICMP_DEST_UNREACHABLE)),
        ACCEPT,
        DROP,
    ];
    set_filter(fd, &prog)
}

/// Attach a classic BPF program so the kernel passes only IPv4 packets from `from` to TCP
/// port `port` (a raw TCP socket otherwise receives a copy of every TCP segment the host
/// gets, our own loopback SYNs included).
fn attach_filter(fd: std::os::fd::RawFd, from: Ipv4Addr, port: u16) -> io::Result<()> {
    let prog = [
        bpf(LD_W_ABS, 0, 0, 12), // source address
        bpf(JEQ_K, 0, 4, u32::from(from)),
        bpf(LDXB_MSH, 0, 0, 0),
        bpf(LDH_IND, 0, 0, 2), // TCP destination port
        bpf(JEQ_K, 0, 1, u32::from(port)),
        ACCEPT,
        DROP,
    ];
    set_filter(fd, &prog)
}

/// Attach a classic BPF program (SO_ATTACH_FILTER), then discard what the socket queued
/// unfiltered between its creation and the attach (a raw socket receives from the moment it
/// exists).
fn set_filter(fd: std::os::fd::RawFd, prog: &[libc::sock_filter]) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut _,
    };
    // SAFETY: `fprog` points at `prog`, both live for the call; the kernel copies the program.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            &fprog as *const libc::sock_fprog as *const libc::c_void,
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // Bounded: what arrives now has passed the filter, and a flood must not hold us here.
    let mut scratch = [0u8; RECV_SNAP];
    for _ in 0..STALE_DRAIN_MAX {
        // SAFETY: `scratch` is a live buffer of the stated length.
        let n = unsafe {
            libc::recv(
                fd,
                scratch.as_mut_ptr() as *mut libc::c_void,
                scratch.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            break;
        }
    }
    Ok(())
}

/// Packets discarded at most after a filter is attached.
const STALE_DRAIN_MAX: usize = 1 << 16;

/// Send IPv4 packets to `dest` with one `sendmmsg`; returns how many the kernel took.
fn send_packets(
    fd: std::os::fd::RawFd,
    pkts: &[[u8; TcpSegmentRepr::LEN]],
    dest: &socket2::SockAddr,
) -> io::Result<usize> {
    let items: Vec<(&socket2::SockAddr, &[u8])> =
        pkts.iter().map(|p| (dest, p.as_slice())).collect();
    crate::mmsg::send_many(fd, &items, 0)
}

/// SYN-sweep `ports` of `ip`, paced by `pacing` (its rate, and its timeout for the wait
/// after the latest SYN). Unanswered ports get one more SYN, then count as filtered after the
/// timeout; on a cancel the unanswered ones are not probed.
///
/// The ports are split into one shard per core (up to four), each sent from a blocking thread
/// through a send-only raw socket of its own: on a near target almost all of the cost is
/// kernel work done in the sender's context (the SYN out, the target's answer in), so separate
/// senders are what uses more than one core. All shards share one source port and one
/// receiving socket, so the kernel copies each arriving segment to one filter, not to one per
/// shard; whichever shard reads an answer records it (and tells the pacing). The shards take
/// their tokens from the one bucket.
pub async fn syn_scan(
    ip: IpAddr,
    ports: &[u16],
    pacing: SharedPacing,
    cancel: Cancel,
    mut progress: impl FnMut(u64),
) -> io::Result<RawReport> {
    let IpAddr::V4(dst) = ip else {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "--raw supports IPv4 targets only",
        ));
    };
    let IpAddr::V4(src) = crate::udp::routed_source(&SocketAddr::new(ip, 9))? else {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no IPv4 source address",
        ));
    };
    let shards = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, MAX_SHARDS)
        .min(ports.len().max(1));
    // A source port from the ephemeral range, held by a bound (not listening) TCP socket so no
    // other connection of this host uses it meanwhile. It must not be a swept port (on
    // loopback a SYN to it would pass the filter): rebind until it is not, holding the
    // rejected ones until then.
    let mut rejected = Vec::new();
    let (holder, sport) = loop {
        let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        l.bind(&SocketAddr::new(IpAddr::V4(src), 0).into())?;
        let p = l
            .local_addr()?
            .as_socket()
            .map_or(0, |a: SocketAddr| a.port());
        if !ports.contains(&p) || rejected.len() >= 64 {
            break (l, p);
        }
        rejected.push(l);
    };
    drop(rejected);
    let recv = raw_socket(libc::IPPROTO_TCP)?;
    attach_filter(recv.as_raw_fd(), dst, sport)?;
    let icmp = raw_socket(libc::IPPROTO_ICMP)?;
    attach_icmp_filter(icmp.as_raw_fd())?;
    let mut owner = vec![0u8; usize::from(u16::MAX) + 1];
    for (i, &p) in ports.iter().enumerate() {
        if let Some(o) = owner.get_mut(usize::from(p)) {
            *o = (i % shards) as u8;
        }
    }
    let lists: Vec<Vec<u16>> = (0..shards)
        .map(|i| ports.iter().copied().skip(i).step_by(shards).collect())
        .collect();
    let shared = std::sync::Arc::new(Shared {
        cursors: lists.iter().map(|_| AtomicUsize::new(0)).collect(),
        lists,
        last_send: AtomicU32::new(0),
        recv,
        icmp,
        icmp_sources: std::sync::Mutex::new(std::collections::BTreeSet::new()),
        sweep: SynSweep {
            src,
            target: dst,
            sport,
            key: rand::random(),
        },
        owner,
        epoch: Monotonic.now(),
        answers: std::sync::Mutex::new(vec![0; PORTS]),
        answered: (0..shards)
            .map(|_| std::sync::atomic::AtomicUsize::new(0))
            .collect(),
        first_sent: std::sync::atomic::AtomicU64::new(0),
        sends: (0..PORTS).map(|_| AtomicU64::new(0)).collect(),
    });
    let mut tasks = Vec::with_capacity(shards);
    for i in 0..shards {
        let shard = Shard {
            index: i,
            pacing: pacing.clone(),
        };
        let cancel = cancel.clone();
        let shared = shared.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            run_shard(&shard, &shared, &cancel, &Monotonic)
        }));
    }
    // Report the ports whose first SYN went out, every PROGRESS_EVERY, until the shards end.
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    let mut outcomes = Vec::with_capacity(tasks.len());
    for mut task in tasks {
        outcomes.push(loop {
            tokio::select! {
                outcome = &mut task => break outcome,
                _ = tick.tick() => progress(shared.first_sent.load(Ordering::Relaxed)),
            }
        });
    }
    progress(shared.first_sent.load(Ordering::Relaxed));
    let mut report = RawReport::default();
    let mut failure = None;
    for t in outcomes {
        match t {
            Ok(Ok(interrupted)) => report.interrupted |= interrupted,
            Ok(Err(e)) => failure = Some(e),
            Err(e) => failure = Some(io::Error::other(e.to_string())),
        }
    }
    report.interrupted |= cancel.is_cancelled();
    drop(holder);
    if let Some(e) = failure {
        return Err(e);
    }
    let answers = std::mem::take(&mut *shared.lock_answers());
    let mut list: Vec<RawAnswer> = Vec::new();
    for &port in ports {
        let answer = answers
            .get(usize::from(port))
            .and_then(|&slot| unpack_answer(port, slot));
        if let Some((a, _)) = answer {
            list.push(a);
        }
        let sends = shared.sends_of(port);
        let tries = u8::from(sends >> 32 != 0) + u8::from(sends & 0xFFFF_FFFF != 0);
        let r = match answer {
            Some((a, at)) => TcpPortResult {
                port,
                state: a.state(),
                connect_time: rtt(sends, at),
                stun: StunOverTcp::NotTried,
                tries,
                error: None,
            },
            // Stopped before its answer or its timeout: not measured.
            None if report.interrupted => TcpPortResult {
                tries,
                ..TcpPortResult::not_probed(port)
            },
            None => TcpPortResult {
                port,
                state: TcpState::Filtered,
                connect_time: None,
                stun: StunOverTcp::NotTried,
                tries,
                error: None,
            },
        };
        report.results.push(r);
    }
    list.sort_by_key(|a| a.port);
    let judgement = judge_resets(&list);
    report.syn_ack_ttls = judgement.syn_ack_ttls;
    report.rst_ttls = judgement.rst_ttls;
    report.injected_suspects = judgement.injected_suspects;
    report
        .notes
        .extend(judgement.finding.map(|f| f.to_string()));
    report.answers = list;
    report.icmp_sources = shared
        .icmp_sources
        .lock()
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default();
    let by_icmp = report.answers.iter().filter(|a| a.icmp.is_some()).count();
    let others: Vec<String> = report
        .icmp_sources
        .iter()
        .filter(|&&a| a != dst)
        .map(Ipv4Addr::to_string)
        .collect();
    if !others.is_empty() {
        report.notes.push(format!(
            "{by_icmp} SYNs were answered with ICMP destination unreachable by {} (not the \
             target): a router or firewall on the path rejects those ports",
            others.join(", ")
        ));
    }
    Ok(report)
}

/// How often a raw sweep reports progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Shards (sending threads) of one raw sweep at most.
const MAX_SHARDS: usize = 4;

/// The longest single wait of a shard, so that a cancel is seen.
const MAX_WAIT: Duration = Duration::from_millis(100);

/// How long a shard sleeps at a time, once its SYNs are sent, before it looks at the
/// answers the other shards recorded.
const SHARED_WAIT: Duration = Duration::from_micros(200);

/// What the shards of one sweep share.
struct Shared {
    /// Each shard's own ports (every n-th of the sweep), and how far their first round has
    /// been claimed: a shard that is through its own list takes batches from the others'.
    lists: Vec<Vec<u16>>,
    cursors: Vec<AtomicUsize>,
    /// Stamp of the latest SYN of any shard.
    last_send: AtomicU32,
    /// The receiving raw TCP socket, filtered to segments from the target to `sport`.
    recv: OwnedFd,
    /// The receiving raw ICMP socket, filtered to destination unreachable.
    icmp: OwnedFd,
    /// Who sent the ICMP errors that answered our SYNs.
    icmp_sources: std::sync::Mutex<std::collections::BTreeSet<Ipv4Addr>>,
    /// Our address and port, the target, the sequence number key.
    sweep: SynSweep,
    /// The shard of each port (indexed by port number).
    owner: Vec<u8>,
    /// The time base of the packed microsecond stamps.
    epoch: Instant,
    /// The first answer per port, packed ([`pack_answer`]), indexed by port number.
    answers: std::sync::Mutex<Vec<u64>>,
    /// Answers recorded per shard.
    answered: Vec<std::sync::atomic::AtomicUsize>,
    /// Ports whose first SYN went out, over all shards (for progress).
    first_sent: std::sync::atomic::AtomicU64,
    /// Packed sends ([`pack_sends`]) indexed by port number: whichever shard reads an answer
    /// can time it.
    sends: Vec<AtomicU64>,
}

impl Shared {
    fn lock_answers(&self) -> std::sync::MutexGuard<'_, Vec<u64>> {
        // A shard that panicked leaves the table as it was: still usable.
        self.answers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn sends_of(&self, port: u16) -> u64 {
        self.sends
            .get(usize::from(port))
            .map_or(0, |s| s.load(Ordering::Relaxed))
    }

    fn answered(&self, shard: usize) -> usize {
        self.answered
            .get(shard)
            .map_or(0, |a| a.load(Ordering::Relaxed))
    }

    /// The next batch of first-round ports for shard `me`: from its own list while any is
    /// left, then from whichever list has the most left. Empty when every list is claimed.
    fn claim(&self, me: usize) -> &[u16] {
        let take = |i: usize| -> Option<&[u16]> {
            let list = self.lists.get(i)?;
            let start = self
                .cursors
                .get(i)?
                .fetch_add(SEND_BATCH, Ordering::Relaxed);
            list.get(start..(start + SEND_BATCH).min(list.len()))
                .filter(|b| !b.is_empty())
        };
        if let Some(b) = take(me) {
            return b;
        }
        let mut others: Vec<(usize, usize)> = (0..self.lists.len())
            .filter(|&i| i != me)
            .map(|i| {
                let len = self.lists.get(i).map_or(0, Vec::len);
                let claimed = self
                    .cursors
                    .get(i)
                    .map_or(len, |c| c.load(Ordering::Relaxed));
                (len.saturating_sub(claimed), i)
            })
            .collect();
        others.sort_unstable_by(|a, b| b.cmp(a));
        others
            .into_iter()
            .filter(|&(left, _)| left > 0)
            .find_map(|(_, i)| take(i))
            .unwrap_or(&[])
    }

    /// The instant of a stamp ([`Shared::stamp`]); the epoch for "never".
    fn instant_of(&self, stamp: u32) -> Instant {
        self.epoch + Duration::from_micros(u64::from(stamp.saturating_sub(1)))
    }

    /// Microseconds since `epoch`, plus one so that zero means "never".
    fn stamp(&self, at: Instant) -> u32 {
        let us = at.saturating_duration_since(self.epoch).as_micros();
        u32::try_from(us).unwrap_or(u32::MAX - 1).saturating_add(1)
    }
}

/// Entries of a table indexed by port number. Tables are zero-filled allocations, so only
/// the pages of swept ports are ever touched.
const PORTS: usize = 1 << 16;

/// One answer in 64 bits: present (bit 63), SYN-ACK (bit 62), ICMP (bit 61, its code in bits
/// 56–59: destination-unreachable codes are 0–15), TTL (bits 48–55), IP ID (bits 32–47) and
/// the stamp it was read at (bits 0–31).
fn pack_answer(a: &RawAnswer, stamp: u32) -> u64 {
    let icmp = a
        .icmp
        .map_or(0, |code| 1 << 61 | u64::from(code & 0x0F) << 56);
    1 << 63
        | u64::from(a.syn_ack) << 62
        | icmp
        | u64::from(a.ttl) << 48
        | u64::from(a.ip_id) << 32
        | u64::from(stamp)
}

fn unpack_answer(port: u16, slot: u64) -> Option<(RawAnswer, u32)> {
    if slot >> 63 == 0 {
        return None;
    }
    let answer = RawAnswer {
        port,
        syn_ack: slot >> 62 & 1 == 1,
        icmp: (slot >> 61 & 1 == 1).then_some((slot >> 56 & 0x0F) as u8),
        ttl: (slot >> 48) as u8,
        ip_id: (slot >> 32) as u16,
    };
    Some((answer, slot as u32))
}

/// A port's sends in 64 bits: the stamp of the first SYN (high half) and of the resent one
/// (low half, zero if none).
fn pack_sends(first: u32, resent: u32) -> u64 {
    u64::from(first) << 32 | u64::from(resent)
}

/// Time from the SYN to an answer read at stamp `at`; `None` when the answer came after the
/// SYN was resent and could belong to either (Karn's rule, RFC 6298 §3).
fn rtt(sends: u64, at: u32) -> Option<Duration> {
    let first = (sends >> 32) as u32;
    let resent = sends as u32;
    if first == 0 || (resent != 0 && at >= resent) {
        return None;
    }
    Some(Duration::from_micros(u64::from(at.saturating_sub(first))))
}

/// A shard's timing apart from its sockets: its view of the sweep's pacing (tokens from the
/// shared bucket, the current timeout for the wait after the latest SYN, the answers and
/// silences it reports) and how long one wait may block. Pure: every call is given `now`.
#[derive(Debug)]
pub struct ShardPacer {
    view: ConnectPacer,
}

impl ShardPacer {
    /// A view of `shared`.
    pub fn new(shared: SharedPacing) -> Self {
        Self {
            view: ConnectPacer::new(shared),
        }
    }

    /// How many of `want` SYNs may leave at `now` (their tokens are taken); reports the
    /// answers and silences noted since the last call.
    pub fn grant(&mut self, now: Instant, want: usize) -> usize {
        self.view.grant(now, want)
    }

    /// Whether the answers to SYNs whose latest left at `last_send` have had their time
    /// (the timeout as of the last [`ShardPacer::grant`]): the round ends (and the silent
    /// ports are resent, after the first round).
    pub fn waited(&self, last_send: Instant, now: Instant) -> bool {
        now.saturating_duration_since(last_send) >= self.view.timeout()
    }

    /// How long to wait at `now`: for the next token while SYNs are left to send; once all
    /// are sent, [`SHARED_WAIT`] at a time (another shard may read the answers this one waits
    /// for) up to the end of the round; never more than [`MAX_WAIT`].
    pub fn wait(&mut self, now: Instant, all_sent: bool, last_send: Instant) -> Duration {
        let wake = if all_sent {
            (last_send + self.view.timeout()).min(now + SHARED_WAIT)
        } else {
            now + self.view.token_wait(now)
        };
        wake.saturating_duration_since(now).min(MAX_WAIT)
    }

    /// A SYN of `port` was answered at `now`.
    pub fn answered(
        &mut self,
        now: Instant,
        port: u16,
        resent: bool,
        rtt: Option<Duration>,
        how: Answer,
    ) {
        self.view.answered(now, port, resent, rtt, how);
    }

    /// A port had no answer to its SYN by the end of a round.
    pub fn silent(&mut self, now: Instant, port: u16) {
        self.view.silent(now, port);
    }

    /// A port is sent its SYN again.
    pub fn resent(&mut self) {
        self.view.resent();
    }

    /// Report what was noted.
    pub fn sync(&mut self) {
        self.view.sync();
    }
}

/// One shard of a raw sweep: its index (its list in [`Shared::lists`]) and the sweep's
/// pacing.
struct Shard {
    index: usize,
    pacing: SharedPacing,
}

/// Send a shard's SYNs in batches as the rate allows, reading answers in between; after the
/// last SYN wait for the rest until the timeout, then resend to the silent ports once.
/// Returns whether it was cancelled.
fn run_shard(
    shard: &Shard,
    shared: &Shared,
    cancel: &Cancel,
    clock: &impl Clock,
) -> io::Result<bool> {
    let send = raw_socket(libc::IPPROTO_RAW)?;
    let recv = shared.recv.as_raw_fd();
    let dest = socket2::SockAddr::from(SocketAddr::new(IpAddr::V4(shared.sweep.target), 0));
    let mut pacer = ShardPacer::new(shard.pacing.clone());
    let mut rbuf = vec![0u8; RECV_SNAP * RECV_BATCH];
    let mut pkts: Vec<[u8; TcpSegmentRepr::LEN]> = Vec::with_capacity(SEND_BATCH);
    let own = shared.lists.get(shard.index).map_or(&[][..], Vec::as_slice);
    for round in 0..2u8 {
        // Round 0 claims batches (its own list first, then the others'); round 1 resends
        // its own unanswered ports, each noted silent first.
        let mut batch: Vec<u16> = if round == 0 {
            Vec::new()
        } else {
            let answers = shared.lock_answers();
            let silent: Vec<u16> = own
                .iter()
                .copied()
                .filter(|&p| answers.get(usize::from(p)).is_none_or(|&a| a >> 63 == 0))
                .collect();
            drop(answers);
            let now = clock.now();
            for &p in &silent {
                pacer.silent(now, p);
                pacer.resent();
            }
            silent
        };
        let mut at = 0;
        let mut last_send = clock.now();
        loop {
            if cancel.is_cancelled() {
                pacer.sync();
                return Ok(true);
            }
            if round == 0 && batch.is_empty() {
                batch.extend_from_slice(shared.claim(shard.index));
            }
            // Send what the rate allows, a batch at a time so answers are read in between.
            pkts.clear();
            let left = batch.len().saturating_sub(at).min(SEND_BATCH);
            let granted = pacer.grant(clock.now(), left);
            for &port in batch.get(at..at + granted).unwrap_or(&[]) {
                pkts.push(shared.sweep.syn(port).to_bytes());
            }
            at += pkts.len();
            let mut sent = 0;
            while sent < pkts.len() {
                match send_packets(send.as_raw_fd(), pkts.get(sent..).unwrap_or(&[]), &dest) {
                    Ok(n) => {
                        let now = shared.stamp(clock.now());
                        for pkt in pkts.iter().skip(sent).take(n.max(1)) {
                            let port = u16::from_be_bytes([pkt[22], pkt[23]]);
                            if let Some(slot) = shared.sends.get(usize::from(port)) {
                                let packed = match round {
                                    0 => pack_sends(now, 0),
                                    _ => {
                                        slot.load(Ordering::Relaxed) & !0xFFFF_FFFF | u64::from(now)
                                    }
                                };
                                slot.store(packed, Ordering::Relaxed);
                            }
                        }
                        if round == 0 {
                            shared
                                .first_sent
                                .fetch_add(n.max(1) as u64, Ordering::Relaxed);
                        }
                        shared.last_send.fetch_max(now, Ordering::Relaxed);
                        sent += n.max(1);
                    }
                    // The queue is full: wait until the socket drains.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        wait_ready(
                            &[send.as_raw_fd()],
                            libc::POLLOUT,
                            Duration::from_millis(10),
                        );
                    }
                    Err(e) => return Err(e),
                }
            }
            if !pkts.is_empty() {
                last_send = clock.now();
            }
            read_answers(&mut rbuf, shared, clock, &mut pacer)?;
            if round == 0 && at == batch.len() {
                batch.clear();
                batch.extend_from_slice(shared.claim(shard.index));
                at = 0;
            }
            let all_sent = at == batch.len();
            // Wait out the timeout after the latest SYN of any shard (another may have sent
            // some of this shard's ports after this one's last).
            let latest = shared.instant_of(shared.last_send.load(Ordering::Relaxed));
            let last_send = last_send.max(latest);
            let waited = pacer.waited(last_send, clock.now());
            // Only swept ports are counted, each once, for the shard whose list holds it.
            let all_answered = shared.answered(shard.index) >= own.len();
            if all_sent && (all_answered || waited) {
                break;
            }
            // Wait for an answer, the next token or the timeout. Another shard may read the
            // answers this one waits for (the socket is shared, and a poll woken by an
            // arrival that another reader took sleeps on), so once everything is sent the
            // wait is SHARED_WAIT at a time, and the answered count is checked in between.
            let wait = pacer.wait(clock.now(), all_sent, last_send);
            wait_ready(&[recv, shared.icmp.as_raw_fd()], libc::POLLIN, wait);
        }
    }
    // The ports still silent after the resend.
    let answers = shared.lock_answers();
    let now = clock.now();
    for &p in own {
        if answers.get(usize::from(p)).is_none_or(|&a| a >> 63 == 0) {
            pacer.silent(now, p);
        }
    }
    drop(answers);
    pacer.sync();
    Ok(false)
}

/// `ppoll(2)` descriptors for `events`, at most `wait` (with microsecond resolution: the
/// waits between shards are shorter than poll's millisecond).
fn wait_ready(fds: &[std::os::fd::RawFd], events: libc::c_short, wait: Duration) {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events,
            revents: 0,
        })
        .collect();
    let ts = libc::timespec {
        // `as _`: musl deprecates naming `time_t` (it is changing width); waits are short.
        tv_sec: wait.as_secs() as _,
        tv_nsec: libc::c_long::from(wait.subsec_nanos() as i32),
    };
    // SAFETY: `p` holds `len` live pollfds and `ts` lives for the call, no signal mask. A
    // failure (EINTR) just ends the wait early.
    unsafe {
        libc::ppoll(
            p.as_mut_ptr(),
            p.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
}

/// Read every answer queued on the shared sockets (the kernel filters pass only segments from
/// the target to our source port, and ICMP destination unreachable) and record those that
/// answer one of our SYNs.
fn read_answers(
    rbuf: &mut [u8],
    shared: &Shared,
    clock: &impl Clock,
    pacer: &mut ShardPacer,
) -> io::Result<()> {
    let mut got: Vec<(RawAnswer, u32)> = Vec::new();
    let mut icmp_from: Vec<Ipv4Addr> = Vec::new();
    for (fd, is_icmp) in [
        (shared.recv.as_raw_fd(), false),
        (shared.icmp.as_raw_fd(), true),
    ] {
        loop {
            let lens = crate::mmsg::recv_many(fd, rbuf, RECV_SNAP, libc::MSG_DONTWAIT)?;
            if lens.is_empty() {
                break;
            }
            let now = shared.stamp(clock.now());
            for (len, pkt) in lens.iter().zip(rbuf.chunks(RECV_SNAP)) {
                let pkt = pkt.get(..*len).unwrap_or(&[]);
                let answer = if is_icmp {
                    IcmpUnreachableRepr::parse(pkt).ok().and_then(|e| {
                        let a = shared.sweep.match_icmp(&e)?;
                        icmp_from.push(e.from);
                        Some(a)
                    })
                } else {
                    TcpSegmentRepr::parse(pkt)
                        .ok()
                        .and_then(|seg| shared.sweep.match_tcp(&seg))
                };
                if let Some(answer) = answer {
                    got.push((answer, now));
                }
            }
        }
    }
    if !icmp_from.is_empty()
        && let Ok(mut sources) = shared.icmp_sources.lock()
    {
        sources.extend(icmp_from);
    }
    if got.is_empty() {
        return Ok(());
    }
    let mut answers = shared.lock_answers();
    let now = clock.now();
    for (answer, at) in got {
        let port = usize::from(answer.port);
        if let Some(slot) = answers.get_mut(port).filter(|s| **s >> 63 == 0) {
            *slot = pack_answer(&answer, at);
            let owner = shared.owner.get(port).copied().unwrap_or(0);
            if let Some(count) = shared.answered.get(usize::from(owner)) {
                count.fetch_add(1, Ordering::Relaxed);
            }
            // The first answer of a port tells the pacing: its round trip when it answers
            // the first SYN alone (Karn), loss when it came only after the resend.
            let sends = shared.sends_of(answer.port);
            let resent = sends & 0xFFFF_FFFF != 0 && at >= sends as u32;
            let how = if answer.icmp.is_some() {
                Answer::Icmp
            } else {
                Answer::Direct
            };
            pacer.answered(now, answer.port, resent, rtt(sends, at), how);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shard's decisions on virtual time: SYNs paced by the shared bucket, the round
    /// ending exactly one timeout after the latest SYN of any shard (the timeout the measured
    /// round trips set), waits in SHARED_WAIT steps once everything is sent.
    #[test]
    fn shard_timing_on_virtual_time() {
        use probes::sweep::pacing::PacingConfig;
        let clock = crate::clock::ManualClock::new(Monotonic.now());
        let t0 = clock.now();
        let ms = Duration::from_millis;
        let shared = SharedPacing::new(PacingConfig::fixed(100, ms(1500)), t0);
        let mut p = ShardPacer::new(shared.clone());
        // A bucket of 50 ms at 100/s: 5 at once, then one per 10 ms.
        assert_eq!(p.grant(clock.now(), 256), 5);
        assert_eq!(p.grant(clock.now(), 256), 0);
        assert_eq!(p.wait(clock.now(), false, t0), ms(10));
        clock.advance(ms(10));
        assert_eq!(p.grant(clock.now(), 256), 1);
        let last = clock.now();
        // Everything sent: short waits, so answers another shard records are seen.
        assert_eq!(p.wait(clock.now(), true, last), SHARED_WAIT);
        clock.set(last + ms(1499));
        assert!(!p.waited(last, clock.now()));
        assert_eq!(p.wait(clock.now(), true, last), ms(1).min(SHARED_WAIT));
        clock.set(last + ms(1500));
        assert!(p.waited(last, clock.now()));
        assert_eq!(p.wait(clock.now(), true, last), Duration::ZERO);
        // A later SYN of another shard moves the end of the round.
        assert!(!p.waited(last + ms(100), clock.now()));
        // An answer in 3 ms (reported with the next grant) brings the wait down to 100 ms.
        p.answered(clock.now(), 80, false, Some(ms(3)), Answer::Direct);
        p.grant(clock.now(), 0);
        assert!(p.waited(last, last + ms(100)));
        assert!(!p.waited(last, last + ms(99)));
        // A port that answered only the resend halves the rate.
        p.answered(clock.now(), 81, true, None, Answer::Direct);
        p.sync();
        assert_eq!(shared.summary().loss_backoffs, 1);
        assert_eq!(shared.summary().final_pps, 50);
        // A slow rate never makes a wait longer than the cap, so a cancel is seen.
        let mut slow = ShardPacer::new(SharedPacing::new(PacingConfig::fixed(1, ms(1500)), t0));
        assert_eq!(slow.grant(t0, 10), 1);
        assert_eq!(slow.wait(t0, false, t0), MAX_WAIT);
    }

    /// The kernel filter on a real raw socket (needs root or CAP_NET_RAW; skipped without):
    /// a RST to another port of ours is dropped, a RST to the filtered port passes.
    #[test]
    fn tcp_filter_passes_only_segments_to_our_port() {
        let Ok(recv) = raw_socket(libc::IPPROTO_TCP) else {
            return;
        };
        let lo = Ipv4Addr::LOCALHOST;
        let holder = std::net::TcpListener::bind((lo, 0)).unwrap();
        let port = holder.local_addr().unwrap().port();
        drop(holder);
        attach_filter(recv.as_raw_fd(), lo, port).unwrap();
        let closed = std::net::TcpListener::bind((lo, 0)).unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        // A connect from an ephemeral port draws a RST that the filter must drop.
        assert!(std::net::TcpStream::connect((lo, closed_port)).is_err());
        let mut buf = vec![0u8; RECV_SNAP * RECV_BATCH];
        let got = crate::mmsg::recv_many(recv.as_raw_fd(), &mut buf, RECV_SNAP, libc::MSG_DONTWAIT)
            .unwrap();
        assert!(got.is_empty(), "{} segments passed", got.len());
        // A SYN from the filtered port draws a RST that passes.
        let send = raw_socket(libc::IPPROTO_RAW).unwrap();
        let syn = TcpSegmentRepr::syn(lo, lo, port, closed_port, 77).to_bytes();
        let dest = socket2::SockAddr::from(SocketAddr::new(IpAddr::V4(lo), 0));
        assert_eq!(send_packets(send.as_raw_fd(), &[syn], &dest).unwrap(), 1);
        wait_ready(&[recv.as_raw_fd()], libc::POLLIN, Duration::from_secs(1));
        let got = crate::mmsg::recv_many(recv.as_raw_fd(), &mut buf, RECV_SNAP, libc::MSG_DONTWAIT)
            .unwrap();
        let answers: Vec<_> = got
            .iter()
            .zip(buf.chunks(RECV_SNAP))
            .filter_map(|(len, pkt)| TcpSegmentRepr::parse(&pkt[..*len]).ok())
            .collect();
        assert_eq!(answers.len(), 1, "{answers:?}");
        let a = answers[0];
        assert_eq!((a.src, a.sport, a.dport), (lo, closed_port, port));
        assert!(a.flags.is_rst());
        assert_eq!(a.ack, 78);
    }

    #[test]
    fn packed_answers_and_sends_round_trip() {
        for a in [
            RawAnswer {
                port: 1,
                syn_ack: true,
                icmp: None,
                ttl: 255,
                ip_id: 0xFFFF,
            },
            RawAnswer {
                port: 65535,
                syn_ack: false,
                icmp: Some(probes::wire::ip::ICMP_PORT_UNREACHABLE),
                ttl: 1,
                ip_id: 0,
            },
            RawAnswer {
                port: 80,
                syn_ack: false,
                icmp: Some(15),
                ttl: 64,
                ip_id: 7,
            },
        ] {
            let slot = pack_answer(&a, 123_456);
            assert_eq!(unpack_answer(a.port, slot), Some((a, 123_456)));
        }
        assert_eq!(unpack_answer(9, 0), None);
        // Karn: an answer after the resend has no RTT; before it, it is timed from the first.
        let sends = pack_sends(1_000, 5_000);
        assert_eq!(rtt(sends, 1_250), Some(Duration::from_micros(250)));
        assert_eq!(rtt(sends, 5_000), None);
        assert_eq!(
            rtt(pack_sends(1_000, 0), 9_000),
            Some(Duration::from_micros(8_000))
        );
        assert_eq!(rtt(0, 9_000), None);
    }
}
