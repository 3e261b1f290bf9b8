//! Raw SYN sweep (IPv4, Linux): SYNs from a raw socket, answers read from the same socket with
//! their IP headers, so the TTL and IP ID of every SYN-ACK and RST can be compared. A reset
//! injected by a middlebox usually arrives with another TTL than the target's own packets.
//!
//! Needs root or CAP_NET_RAW. The kernel answers the target's SYN-ACKs with a RST (no socket of
//! ours owns the source port), which also tears the half-open connection down at the target.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use probes::sweep::{StunOverTcp, TcpPortResult, TcpState};

use crate::driver::Cancel;
use crate::rate::{Rate, TokenBucket};

/// One answer seen on the raw socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RawAnswer {
    /// Target port.
    pub port: u16,
    /// SYN-ACK (open) or RST (refused).
    pub syn_ack: bool,
    /// IP TTL of the answer.
    pub ttl: u8,
    /// IP identification field of the answer.
    pub ip_id: u16,
}

/// What the raw sweep found.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RawReport {
    /// Per-port results (no STUN check in raw mode).
    pub results: Vec<TcpPortResult>,
    /// Every answer with its IP header fields.
    pub answers: Vec<RawAnswer>,
    /// TTLs of SYN-ACKs, distinct, ascending.
    pub syn_ack_ttls: Vec<u8>,
    /// TTLs of RSTs, distinct, ascending.
    pub rst_ttls: Vec<u8>,
    /// Ports whose RST came with a TTL no SYN-ACK had: likely injected on the path.
    pub injected_suspects: Vec<u16>,
    /// Sentences for the report.
    pub notes: Vec<String>,
    /// Stopped by Ctrl-C.
    pub interrupted: bool,
}

/// Whether a raw TCP socket can be opened here.
pub fn check_privileges() -> Result<(), String> {
    raw_socket().map(drop).map_err(|e| {
        if e.raw_os_error() == Some(libc::EPERM) || e.raw_os_error() == Some(libc::EACCES) {
            "needs root or CAP_NET_RAW (run with sudo, or `setcap cap_net_raw+ep` on the binary)"
                .to_string()
        } else {
            format!("cannot open a raw socket: {e}")
        }
    })
}

fn raw_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::IPPROTO_TCP,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // Every TCP segment the host receives is copied to a raw TCP socket: give it room for a
    // whole burst of answers (FORCE is allowed with CAP_NET_ADMIN; the plain option is capped
    // by net.core.rmem_max).
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
const RECV_BATCH: usize = 64;
/// Bytes kept of each packet: IP and TCP headers with options fit.
const RECV_SNAP: usize = 128;

/// Attach a classic BPF program so the kernel passes only IPv4 packets from `from` to TCP
/// port `port` (a raw TCP socket otherwise receives a copy of every TCP segment the host
/// gets, our own loopback SYNs included).
fn attach_filter(fd: std::os::fd::RawFd, from: Ipv4Addr, port: u16) -> io::Result<()> {
    // Offsets are into the IPv4 header; `ldxb 4*([0]&0xf)` loads the header length.
    let prog = [
        libc::sock_filter {
            code: 0x20,
            jt: 0,
            jf: 0,
            k: 12,
        }, // ld [12]: source address
        libc::sock_filter {
            code: 0x15,
            jt: 0,
            jf: 4,
            k: u32::from(from),
        }, // jeq from
        libc::sock_filter {
            code: 0xb1,
            jt: 0,
            jf: 0,
            k: 0,
        }, // ldxb 4*([0]&0xf)
        libc::sock_filter {
            code: 0x48,
            jt: 0,
            jf: 0,
            k: 2,
        }, // ldh [x+2]: TCP destination port
        libc::sock_filter {
            code: 0x15,
            jt: 0,
            jf: 1,
            k: u32::from(port),
        }, // jeq port
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0xFFFF,
        }, // accept
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0,
        }, // drop
    ];
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
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Send SYN segments to `dest` with one `sendmmsg`; returns how many the kernel took.
fn send_syns(
    fd: std::os::fd::RawFd,
    segs: &[[u8; 20]],
    dest: &socket2::SockAddr,
) -> io::Result<usize> {
    let items: Vec<(&socket2::SockAddr, &[u8])> =
        segs.iter().map(|s| (dest, s.as_slice())).collect();
    crate::mmsg::send_many(fd, &items, 0)
}

/// RFC 1071 one's-complement sum over 16-bit words.
fn csum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        if let [a, b] = c {
            sum += u32::from(u16::from_be_bytes([*a, *b]));
        }
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(u16::from_be_bytes([*last, 0]));
    }
    sum
}

fn csum_fold(mut sum: u32) -> u16 {
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

/// A 20-byte TCP SYN (RFC 9293 §3.1) with the checksum over the IPv4 pseudo-header.
fn syn_segment(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, seq: u32) -> [u8; 20] {
    let mut t = [0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[12] = 5 << 4; // data offset: 5 words
    t[13] = 0x02; // SYN
    t[14..16].copy_from_slice(&1024u16.to_be_bytes()); // window
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&src.octets());
    pseudo[4..8].copy_from_slice(&dst.octets());
    pseudo[9] = libc::IPPROTO_TCP as u8;
    pseudo[10..12].copy_from_slice(&20u16.to_be_bytes());
    let sum = csum_fold(csum_add(csum_add(0, &pseudo), &t));
    t[16..18].copy_from_slice(&sum.to_be_bytes());
    t
}

/// A keyed sequence number per port, so answers can be matched without per-port state.
fn seq_for(key: u32, port: u16) -> u32 {
    let mut x = u64::from(key) << 16 | u64::from(port);
    x = (x ^ (x >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x = (x ^ (x >> 33)).wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    (x ^ (x >> 33)) as u32
}

/// Parse an IPv4 packet with a TCP segment as the raw socket delivers it. Returns (source IP,
/// TTL, IP ID, source port, destination port, flags, ack).
fn parse(pkt: &[u8]) -> Option<(Ipv4Addr, u8, u16, u16, u16, u8, u32)> {
    let vihl = *pkt.first()?;
    if vihl >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(vihl & 0x0F) * 4;
    if ihl < 20 || *pkt.get(9)? != libc::IPPROTO_TCP as u8 {
        return None;
    }
    let ip_id = u16::from_be_bytes([*pkt.get(4)?, *pkt.get(5)?]);
    let ttl = *pkt.get(8)?;
    let src = Ipv4Addr::new(*pkt.get(12)?, *pkt.get(13)?, *pkt.get(14)?, *pkt.get(15)?);
    let tcp = pkt.get(ihl..)?;
    let sport = u16::from_be_bytes([*tcp.first()?, *tcp.get(1)?]);
    let dport = u16::from_be_bytes([*tcp.get(2)?, *tcp.get(3)?]);
    let ack = u32::from_be_bytes([*tcp.get(8)?, *tcp.get(9)?, *tcp.get(10)?, *tcp.get(11)?]);
    let flags = *tcp.get(13)?;
    Some((src, ttl, ip_id, sport, dport, flags, ack))
}

/// SYN-sweep `ports` of `ip`. Unanswered ports get one more SYN, then count as filtered after
/// `timeout`.
///
/// The ports are split into one shard per core (up to four), each on a blocking thread with
/// its own raw socket, source port and kernel filter: on a near target almost all of the cost
/// is kernel work done in the sender's context (the SYN out, the target's answer in), so
/// separate senders are what uses more than one core. The rate is split between them.
pub async fn syn_scan(
    ip: IpAddr,
    ports: &[u16],
    timeout: Duration,
    rate: Option<Rate>,
    cancel: Cancel,
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
    // Source ports from the ephemeral range, each held by a bound (unlistening) TCP socket so
    // no other connection of this host uses it meanwhile. None may be a swept port (on
    // loopback a SYN to it would pass the filter): rebind until it is not, holding the
    // rejected ones until then.
    let swept: std::collections::HashSet<u16> = ports.iter().copied().collect();
    let mut holders = Vec::with_capacity(shards);
    let mut rejected = Vec::new();
    while holders.len() < shards {
        let l = std::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(src), 0))?;
        let p = l.local_addr()?.port();
        if !swept.contains(&p) || rejected.len() >= 64 {
            holders.push((l, p));
        } else {
            rejected.push(l);
        }
    }
    drop(rejected);
    let key: u32 = rand::random();
    let mut tasks = Vec::with_capacity(shards);
    for (i, (_, sport)) in holders.iter().enumerate() {
        let shard = Shard {
            src,
            dst,
            sport: *sport,
            ports: ports.iter().copied().skip(i).step_by(shards).collect(),
            timeout: timeout.min(Duration::from_secs(3)),
            rate: rate.map(|r| Rate {
                pps: (r.pps / shards as u32).max(1),
                burst: (r.burst / shards as u32).max(1),
            }),
            key,
        };
        let cancel = cancel.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            run_shard(&shard, &cancel)
        }));
    }
    let mut answers: Answers = HashMap::with_capacity(ports.len());
    let mut report = RawReport::default();
    let mut failure = None;
    for t in tasks {
        match t.await {
            Ok(Ok(done)) => {
                answers.extend(done.answers);
                report.interrupted |= done.interrupted;
            }
            Ok(Err(e)) => failure = Some(e),
            Err(e) => failure = Some(io::Error::other(e.to_string())),
        }
    }
    drop(holders);
    if let Some(e) = failure {
        return Err(e);
    }
    for &port in ports {
        let r = match answers.get(&port) {
            Some((a, t)) => TcpPortResult {
                port,
                state: if a.syn_ack {
                    TcpState::Open
                } else {
                    TcpState::Refused
                },
                connect_time: *t,
                stun: StunOverTcp::NotTried,
            },
            None => TcpPortResult {
                port,
                state: TcpState::Filtered,
                connect_time: None,
                stun: StunOverTcp::NotTried,
            },
        };
        report.results.push(r);
    }
    let mut list: Vec<RawAnswer> = answers.values().map(|(a, _)| *a).collect();
    list.sort_by_key(|a| a.port);
    analyse(&mut report, list);
    Ok(report)
}

/// Shards (sending threads) of one raw sweep at most.
const MAX_SHARDS: usize = 4;

/// Answers by port, with the time from the (last) SYN to the answer: `None` when the answer
/// came after a resent SYN and could belong to either (Karn's rule, RFC 6298 §3).
type Answers = HashMap<u16, (RawAnswer, Option<Duration>)>;

/// One shard of a raw sweep.
struct Shard {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    ports: Vec<u16>,
    timeout: Duration,
    rate: Option<Rate>,
    key: u32,
}

struct ShardDone {
    answers: Answers,
    interrupted: bool,
}

/// Send a shard's SYNs in batches as the rate allows, reading answers in between; after the
/// last SYN wait for the rest until `timeout`, then resend to the silent ports once.
fn run_shard(shard: &Shard, cancel: &Cancel) -> io::Result<ShardDone> {
    let fd = raw_socket()?;
    let raw = fd.as_raw_fd();
    attach_filter(raw, shard.dst, shard.sport)?;
    let dest = socket2::SockAddr::from(SocketAddr::new(IpAddr::V4(shard.dst), 0));
    let mut bucket = shard.rate.map(|r| TokenBucket::new(r, Instant::now()));
    let mut done = ShardDone {
        answers: HashMap::with_capacity(shard.ports.len()),
        interrupted: false,
    };
    let mut sent_at: HashMap<u16, Instant> = HashMap::with_capacity(shard.ports.len());
    let mut rbuf = vec![0u8; RECV_SNAP * RECV_BATCH];
    let mut segs: Vec<[u8; 20]> = Vec::with_capacity(SEND_BATCH);
    for round in 0..2u8 {
        let todo: Vec<u16> = shard
            .ports
            .iter()
            .copied()
            .filter(|p| !done.answers.contains_key(p))
            .collect();
        let mut next = todo.iter().peekable();
        let mut last_send = Instant::now();
        loop {
            if cancel.is_cancelled() {
                done.interrupted = true;
                return Ok(done);
            }
            // Send what the rate allows, a batch at a time so answers are read in between.
            segs.clear();
            while let Some(&&port) = next.peek() {
                if segs.len() == SEND_BATCH {
                    break;
                }
                if let Some(b) = bucket.as_mut() {
                    if !b.take(Instant::now()) {
                        break;
                    }
                }
                let seq = seq_for(shard.key, port);
                segs.push(syn_segment(shard.src, shard.dst, shard.sport, port, seq));
                next.next();
            }
            let mut sent = 0;
            while sent < segs.len() {
                match send_syns(raw, segs.get(sent..).unwrap_or(&[]), &dest) {
                    Ok(n) => {
                        let now = Instant::now();
                        for seg in segs.iter().skip(sent).take(n.max(1)) {
                            sent_at.insert(u16::from_be_bytes([seg[2], seg[3]]), now);
                        }
                        sent += n.max(1);
                    }
                    // The queue is full: wait until the socket drains.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        wait_ready(raw, libc::POLLOUT, 10);
                    }
                    Err(e) => return Err(e),
                }
            }
            if !segs.is_empty() {
                last_send = Instant::now();
            }
            read_answers(raw, &mut rbuf, shard, round, &sent_at, &mut done.answers)?;
            let all_sent = next.peek().is_none();
            let waited = last_send.elapsed() >= shard.timeout;
            // Shard ports are distinct and only shard ports are recorded.
            let all_answered = done.answers.len() >= shard.ports.len();
            if all_sent && (all_answered || waited) {
                break;
            }
            // Wait for an answer, the next token or the timeout (at most 100 ms, so a
            // cancel is seen); a wait under a millisecond is a poll that returns at once.
            let now = Instant::now();
            let wake = match (all_sent, bucket.as_mut()) {
                (false, Some(b)) => b.ready_at(now),
                (false, None) => now,
                (true, _) => last_send + shard.timeout,
            };
            let ms = wake.saturating_duration_since(now).as_millis().min(100) as libc::c_int;
            wait_ready(raw, libc::POLLIN, ms);
        }
    }
    Ok(done)
}

/// `poll(2)` one descriptor for `events`, at most `ms` milliseconds.
fn wait_ready(fd: std::os::fd::RawFd, events: libc::c_short, ms: libc::c_int) {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one live pollfd for the call. A failure (EINTR) just ends the wait early.
    unsafe { libc::poll(&mut p, 1, ms) };
}

/// Read every answer queued (the kernel filter passes only packets from the target to the
/// shard's source port) and record those that acknowledge one of our SYNs.
fn read_answers(
    fd: std::os::fd::RawFd,
    rbuf: &mut [u8],
    shard: &Shard,
    round: u8,
    sent_at: &HashMap<u16, Instant>,
    answers: &mut Answers,
) -> io::Result<()> {
    loop {
        let lens = crate::mmsg::recv_many(fd, rbuf, RECV_SNAP, libc::MSG_DONTWAIT)?;
        if lens.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        for (len, pkt) in lens.iter().zip(rbuf.chunks(RECV_SNAP)) {
            let Some((from, ttl, ip_id, tport, to, flags, ack)) =
                parse(pkt.get(..*len).unwrap_or(&[]))
            else {
                continue;
            };
            // Only answers to our SYNs: from the target, to our port, ACKing our sequence.
            if from != shard.dst || to != shard.sport || flags & 0x10 == 0 {
                continue;
            }
            if ack != seq_for(shard.key, tport).wrapping_add(1) {
                continue;
            }
            let syn_ack = flags & 0x12 == 0x12;
            let rst = flags & 0x04 != 0;
            if (syn_ack || rst) && !answers.contains_key(&tport) {
                let rtt = match round {
                    0 => sent_at
                        .get(&tport)
                        .map(|t| now.saturating_duration_since(*t)),
                    _ => None,
                };
                let answer = RawAnswer {
                    port: tport,
                    syn_ack,
                    ttl,
                    ip_id,
                };
                answers.insert(tport, (answer, rtt));
            }
        }
    }
}

/// Compare the IP headers of SYN-ACKs and RSTs: the target's own packets share one initial TTL
/// and arrive after the same number of hops; a RST with a TTL no SYN-ACK shows came from
/// elsewhere.
fn analyse(report: &mut RawReport, answers: Vec<RawAnswer>) {
    let mut syn: Vec<u8> = answers
        .iter()
        .filter(|a| a.syn_ack)
        .map(|a| a.ttl)
        .collect();
    let mut rst: Vec<u8> = answers
        .iter()
        .filter(|a| !a.syn_ack)
        .map(|a| a.ttl)
        .collect();
    syn.sort_unstable();
    syn.dedup();
    rst.sort_unstable();
    rst.dedup();
    if !syn.is_empty() {
        report.injected_suspects = answers
            .iter()
            .filter(|a| !a.syn_ack && !syn.contains(&a.ttl))
            .map(|a| a.port)
            .collect();
    }
    if !report.injected_suspects.is_empty() {
        report.notes.push(format!(
            "{} resets arrived with TTL {:?} while the target's SYN-ACKs have TTL {:?}: resets are \
             likely injected by a device on the path, not sent by the target",
            report.injected_suspects.len(),
            rst,
            syn
        ));
    } else if rst.len() > 1 {
        report.notes.push(format!(
            "resets arrived with several TTLs {rst:?}: more than one device answers for the target"
        ));
    }
    report.syn_ack_ttls = syn;
    report.rst_ttls = rst;
    report.answers = answers;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syn_checksum_verifies() {
        let src = Ipv4Addr::new(192, 0, 2, 1);
        let dst = Ipv4Addr::new(198, 51, 100, 7);
        let seg = syn_segment(src, dst, 40000, 443, 0x1234_5678);
        let mut pseudo = [0u8; 12];
        pseudo[0..4].copy_from_slice(&src.octets());
        pseudo[4..8].copy_from_slice(&dst.octets());
        pseudo[9] = 6;
        pseudo[10..12].copy_from_slice(&20u16.to_be_bytes());
        // Summing everything including the checksum gives all ones.
        assert_eq!(csum_fold(csum_add(csum_add(0, &pseudo), &seg)), 0);
        assert_eq!(seg[13], 0x02);
    }

    #[test]
    fn parse_rejects_short_and_non_tcp() {
        assert!(parse(&[]).is_none());
        assert!(parse(&[0x45; 19]).is_none());
        let mut p = [0u8; 40];
        p[0] = 0x45;
        p[9] = 17;
        assert!(parse(&p).is_none());
        p[9] = 6;
        p[8] = 63;
        p[20..22].copy_from_slice(&443u16.to_be_bytes());
        p[33] = 0x12;
        let (_, ttl, _, sport, _, flags, _) = parse(&p).unwrap();
        assert_eq!((ttl, sport, flags), (63, 443, 0x12));
    }

    #[test]
    fn reset_with_foreign_ttl_is_flagged() {
        let mut r = RawReport::default();
        analyse(
            &mut r,
            vec![
                RawAnswer {
                    port: 443,
                    syn_ack: true,
                    ttl: 60,
                    ip_id: 0,
                },
                RawAnswer {
                    port: 444,
                    syn_ack: false,
                    ttl: 60,
                    ip_id: 0,
                },
                RawAnswer {
                    port: 8000,
                    syn_ack: false,
                    ttl: 63,
                    ip_id: 0,
                },
            ],
        );
        assert_eq!(r.injected_suspects, vec![8000]);
        assert_eq!(r.syn_ack_ttls, vec![60]);
        assert_eq!(r.rst_ttls, vec![60, 63]);
        assert!(r.notes[0].contains("injected"));
    }
}
