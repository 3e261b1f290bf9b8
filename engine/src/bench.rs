//! The baseline the engine is measured against: a minimal request/response loop over raw
//! `sendmmsg`/`recvmmsg` with a fixed window of transactions in flight, no timers, no
//! per-transaction state, no parsing beyond the STUN header. It is what this machine's kernel
//! and loopback can do; the engine's throughput is reported as a fraction of it.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use probes::stun::TransactionId;
use probes::stun::encode::BindingRequest;
use probes::stun::view::check_header;

/// What the baseline loop measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct RawResult {
    /// Requests sent.
    pub sent: u64,
    /// Responses received (header-valid STUN).
    pub received: u64,
    /// Wall-clock seconds.
    pub elapsed: f64,
}

impl RawResult {
    /// Answered transactions per second.
    pub fn rate(&self) -> f64 {
        per_second(self.received, self.elapsed)
    }
}

/// `count` over `elapsed` seconds; 0 when no time passed.
fn per_second(count: u64, elapsed: f64) -> f64 {
    if elapsed > 0.0 {
        count as f64 / elapsed
    } else {
        0.0
    }
}

const BATCH: usize = 64;

/// Run `total` Binding transactions round-robin over `targets` with `window` in flight.
/// A receive that waits longer than `stall` counts every outstanding request as lost and
/// refills the window (so a lossy run still ends). On Linux the loop batches with
/// `sendmmsg`/`recvmmsg`; elsewhere it sends and receives one datagram per call, which is then
/// the baseline such a system offers.
pub fn raw_loop(
    targets: &[SocketAddr],
    total: u64,
    window: usize,
    stall: Duration,
) -> io::Result<RawResult> {
    let Some(first) = targets.first() else {
        return Ok(RawResult::default());
    };
    let sock = std::net::UdpSocket::bind(crate::udp::wildcard_for(first))?;
    let s2 = socket2::SockRef::from(&sock);
    let _ = s2.set_recv_buffer_size(4 << 20);
    let _ = s2.set_send_buffer_size(4 << 20);
    sock.set_read_timeout(Some(stall))?;
    let addrs: Vec<socket2::SockAddr> = targets.iter().map(|a| (*a).into()).collect();

    let mut inbuf = vec![0u8; BATCH * 2048];
    let mut result = RawResult::default();
    let mut outstanding = 0usize;
    let start = crate::clock::now();
    let mut next = 0u64;
    while next < total || outstanding > 0 {
        // Fill the window, in whole batches once it is primed (a refill of one or two
        // datagrams per call would cost the baseline syscalls the engine does not pay).
        while next < total && (outstanding == 0 || outstanding + BATCH.min(window) <= window) {
            let n = (window - outstanding)
                .min(BATCH)
                .min((total - next) as usize);
            let mut enc = Vec::with_capacity(n * 64);
            let mut bounds = Vec::with_capacity(n);
            for i in 0..n as u64 {
                let mut tid = [0u8; 12];
                tid[..8].copy_from_slice(&(next + i).to_be_bytes());
                let start = enc.len();
                BindingRequest {
                    transaction_id: TransactionId(tid),
                    software: Some("stunmap-bench"),
                    change_request: None,
                    response_port: None,
                    fingerprint: true,
                }
                .encode(&mut enc);
                bounds.push(start..enc.len());
            }
            let items: Vec<(&socket2::SockAddr, &[u8])> = bounds
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    let addr = addrs.get(((next + i as u64) % addrs.len() as u64) as usize)?;
                    Some((addr, enc.get(r.clone())?))
                })
                .collect();
            let r = send_batch(&sock, &items)?;
            next += r as u64;
            result.sent += r as u64;
            outstanding += r;
        }
        // Receive what has come back (blocks up to `stall` for the first one).
        match recv_batch(&sock, &mut inbuf, 2048) {
            // The receive timeout passed with nothing: what is outstanding is lost.
            Ok(lens) if lens.is_empty() => {
                outstanding = 0;
                if next >= total {
                    break;
                }
            }
            Ok(lens) => {
                for (len, d) in lens.iter().zip(inbuf.chunks(2048)) {
                    if d.get(..*len).is_some_and(|d| check_header(d).is_ok()) {
                        result.received += 1;
                        outstanding = outstanding.saturating_sub(1);
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                // Stalled: what is outstanding is lost.
                outstanding = 0;
                if next >= total {
                    break;
                }
            }
            Err(e) => return Err(e),
        }
    }
    result.elapsed = crate::clock::now()
        .saturating_duration_since(start)
        .as_secs_f64();
    Ok(result)
}

/// The reflector the benchmark measures `stunmap serve` against: the least a STUN reflector
/// can do per datagram on this kernel. One blocking `recvmmsg` (`MSG_WAITFORONE`) into fixed
/// slots, a header check, a Binding success with only XOR-MAPPED-ADDRESS (RFC 8489 §14.2)
/// written in place, one `sendmmsg` back; no attribute walk, no FINGERPRINT, no limits, no
/// counters. Bench-only: the CLI never runs it. Serves `sock` until `stop` is set (checked at
/// least every 100 ms) and returns how many answers it sent.
#[cfg(target_os = "linux")]
pub fn raw_reflector(
    sock: &std::net::UdpSocket,
    stop: &std::sync::atomic::AtomicBool,
) -> io::Result<u64> {
    use probes::stun::MessageType;
    use std::os::fd::AsRawFd;
    const SLOT: usize = 2048;
    const OUT: usize = 64;

    sock.set_nonblocking(false)?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let fd = sock.as_raw_fd();
    let mut inbuf = vec![0u8; BATCH * SLOT];
    let mut outbuf = vec![[0u8; OUT]; BATCH];
    // SAFETY (all four): all-zero is a valid value of these C structs.
    let mut names: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
    let mut riov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    let mut rhdr: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    let mut siov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    let mut shdr: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (iov, chunk) in riov.iter_mut().zip(inbuf.chunks_mut(SLOT)) {
        iov.iov_base = chunk.as_mut_ptr().cast();
        iov.iov_len = SLOT;
    }
    let mut answers = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        for ((h, iov), name) in rhdr.iter_mut().zip(riov.iter_mut()).zip(names.iter_mut()) {
            crate::mmsg::aim_recv_header(h, iov, name);
        }
        // SAFETY: the headers point at live iovecs (into `inbuf`) and address slots.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                rhdr.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE as _,
                std::ptr::null_mut(),
            )
        };
        if r <= 0 {
            let e = io::Error::last_os_error();
            if r == 0
                || matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                )
            {
                continue;
            }
            return Err(e);
        }
        let mut k = 0;
        for i in 0..r as usize {
            let (Some(h), Some(name)) = (rhdr.get(i), names.get(i)) else {
                break;
            };
            let len = (h.msg_len as usize).min(SLOT);
            let Some(d) = inbuf.get(i * SLOT..i * SLOT + len) else {
                continue;
            };
            let (Ok((ty, tid)), Some(from)) = (
                check_header(d),
                crate::mmsg::socket_addr(name, h.msg_hdr.msg_namelen),
            ) else {
                continue;
            };
            if ty != MessageType::BINDING_REQUEST {
                continue;
            }
            let Some(out) = outbuf.get_mut(k) else {
                break;
            };
            let n = binding_success(&tid, from, out);
            let (Some(iov), Some(sh)) = (siov.get_mut(k), shdr.get_mut(k)) else {
                break;
            };
            iov.iov_base = out.as_mut_ptr().cast();
            iov.iov_len = n;
            sh.msg_hdr.msg_iov = iov;
            sh.msg_hdr.msg_iovlen = 1;
            sh.msg_hdr.msg_name = h.msg_hdr.msg_name;
            sh.msg_hdr.msg_namelen = h.msg_hdr.msg_namelen;
            k += 1;
        }
        if k > 0 {
            // SAFETY: the first `k` send headers point at live replies and sender addresses.
            let sent = unsafe { libc::sendmmsg(fd, shdr.as_mut_ptr(), k as libc::c_uint, 0) };
            if sent > 0 {
                answers += sent as u64;
            }
        }
    }
    Ok(answers)
}

/// Write into `out` a Binding success response for `tid` whose only attribute is
/// XOR-MAPPED-ADDRESS `from` (RFC 8489 §5, §14.2: the port XORed with the cookie's top half,
/// an IPv4 address with the cookie, an IPv6 one with the cookie and the transaction id), by
/// hand as the baseline does; returns its length (32 or 44 bytes).
#[cfg(target_os = "linux")]
fn binding_success(tid: &TransactionId, from: SocketAddr, out: &mut [u8; 64]) -> usize {
    use probes::stun::{MAGIC_COOKIE, MessageType};
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let mut key = [0u8; 16];
    key[..4].copy_from_slice(&cookie);
    key[4..].copy_from_slice(tid.as_bytes());
    let (family, mut ip, ip_len) = match from {
        SocketAddr::V4(a) => {
            let mut ip = [0u8; 16];
            ip[..4].copy_from_slice(&a.ip().octets());
            (1, ip, 4)
        }
        SocketAddr::V6(a) => (2, a.ip().octets(), 16),
    };
    for (b, k) in ip.iter_mut().zip(key) {
        *b ^= k;
    }
    let attr_len = 4 + ip_len as u16;
    out[..2].copy_from_slice(&MessageType::BINDING_SUCCESS.to_u16().to_be_bytes());
    out[2..4].copy_from_slice(&(4 + attr_len).to_be_bytes());
    out[4..8].copy_from_slice(&cookie);
    out[8..20].copy_from_slice(tid.as_bytes());
    out[20..22].copy_from_slice(&probes::stun::attr::XOR_MAPPED_ADDRESS.to_be_bytes());
    out[22..24].copy_from_slice(&attr_len.to_be_bytes());
    out[24..26].copy_from_slice(&[0, family]);
    out[26..28].copy_from_slice(&(from.port() ^ 0x2112).to_be_bytes());
    for (o, b) in out[28..].iter_mut().zip(ip).take(ip_len) {
        *o = b;
    }
    28 + ip_len
}

/// Send each datagram of `items`; how many the kernel took.
#[cfg(target_os = "linux")]
fn send_batch(
    sock: &std::net::UdpSocket,
    items: &[(&socket2::SockAddr, &[u8])],
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    crate::mmsg::send_many(sock.as_raw_fd(), items, 0)
}

/// Send each datagram of `items`; how many the kernel took.
#[cfg(not(target_os = "linux"))]
fn send_batch(
    sock: &std::net::UdpSocket,
    items: &[(&socket2::SockAddr, &[u8])],
) -> io::Result<usize> {
    let s = socket2::SockRef::from(sock);
    for (addr, data) in items {
        s.send_to(data, addr)?;
    }
    Ok(items.len())
}

/// Receive what has come back into `slot`-byte slots of `buf`, blocking up to the socket's
/// read timeout for the first datagram; each datagram's length.
#[cfg(target_os = "linux")]
fn recv_batch(sock: &std::net::UdpSocket, buf: &mut [u8], slot: usize) -> io::Result<Vec<usize>> {
    use std::os::fd::AsRawFd;
    crate::mmsg::recv_many(sock.as_raw_fd(), buf, slot, libc::MSG_WAITFORONE)
}

/// Receive one datagram into the first `slot` bytes of `buf`, blocking up to the socket's
/// read timeout; its length.
#[cfg(not(target_os = "linux"))]
fn recv_batch(sock: &std::net::UdpSocket, buf: &mut [u8], slot: usize) -> io::Result<Vec<usize>> {
    let first = buf.get_mut(..slot.min(buf.len())).unwrap_or_default();
    loop {
        match sock.recv(first) {
            Ok(n) => return Ok(vec![n]),
            // Windows reports an ICMP error of an earlier send as a reset of this receive.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Resident set size of this process in bytes (Linux `/proc/self/statm`, Windows' working set),
/// `None` where unknown.
#[cfg(unix)]
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// Peak resident set size of this process in bytes (`getrusage`, Windows' peak working set),
/// `None` where unknown.
#[cfg(unix)]
pub fn peak_rss_bytes() -> Option<u64> {
    // SAFETY: all-zero is a valid rusage, and getrusage only writes into it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a live rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return None;
    }
    Some(u64::try_from(u.ru_maxrss).ok()? * 1024)
}

/// The working set (now, peak) of this process (`GetProcessMemoryInfo`).
#[cfg(windows)]
fn working_set() -> Option<(u64, u64)> {
    use windows_sys::Win32::System::ProcessStatus::{
        GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS,
    };
    use windows_sys::Win32::System::Threading::GetCurrentProcess;
    // SAFETY: all-zero is a valid PROCESS_MEMORY_COUNTERS.
    let mut c: PROCESS_MEMORY_COUNTERS = unsafe { std::mem::zeroed() };
    let size = u32::try_from(std::mem::size_of::<PROCESS_MEMORY_COUNTERS>()).ok()?;
    c.cb = size;
    // SAFETY: the pseudo-handle of this process and a valid pointer to a live struct of `size`
    // bytes.
    if unsafe { GetProcessMemoryInfo(GetCurrentProcess(), &mut c, size) } == 0 {
        return None;
    }
    Some((
        u64::try_from(c.WorkingSetSize).ok()?,
        u64::try_from(c.PeakWorkingSetSize).ok()?,
    ))
}

/// Resident set size of this process in bytes (Linux `/proc/self/statm`, Windows' working set),
/// `None` where unknown.
#[cfg(windows)]
pub fn rss_bytes() -> Option<u64> {
    working_set().map(|(now, _)| now)
}

/// Peak resident set size of this process in bytes (`getrusage`, Windows' peak working set),
/// `None` where unknown.
#[cfg(windows)]
pub fn peak_rss_bytes() -> Option<u64> {
    working_set().map(|(_, peak)| peak)
}

/// Resident set size of this process in bytes; not known on this system.
#[cfg(not(any(unix, windows)))]
pub fn rss_bytes() -> Option<u64> {
    None
}

/// Peak resident set size of this process in bytes; not known on this system.
#[cfg(not(any(unix, windows)))]
pub fn peak_rss_bytes() -> Option<u64> {
    None
}

/// How [`blast`] hands datagrams to the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlastPath {
    /// GSO: one send call carries up to the kernel's segment limit of equal-size datagrams.
    Gso,
    /// `sendmmsg`: up to 64 datagrams per call, each with its own header.
    Mmsg,
    /// One `sendmsg` per datagram.
    PerPacket,
}

impl std::fmt::Display for BlastPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BlastPath::Gso => "GSO",
            BlastPath::Mmsg => "sendmmsg",
            BlastPath::PerPacket => "sendmsg",
        })
    }
}

/// What [`blast`] measured.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct BlastResult {
    /// The send path.
    pub path: BlastPath,
    /// Datagrams handed to the kernel.
    pub sent: u64,
    /// Datagrams the receiver read (GRO trains split at their stride).
    pub received: u64,
    /// Seconds from the first send until the receiver stopped seeing datagrams.
    pub elapsed: f64,
}

impl BlastResult {
    /// Received datagrams per second.
    pub fn rate(&self) -> f64 {
        per_second(self.received, self.elapsed)
    }
}

/// Send `count` datagrams of `size` bytes to one loopback socket as fast as `path` allows,
/// and count what a GRO-enabled receiver gets (the relay benchmark's shape: a burst to one
/// destination).
pub async fn blast(count: u64, size: usize, path: BlastPath) -> io::Result<BlastResult> {
    use crate::udp::{RecvBuffers, UdpEndpoint};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    let lo = SocketAddr::from(([127, 0, 0, 1], 0));
    let rx = Arc::new(UdpEndpoint::bind(lo)?);
    let dest = rx.local_addr();
    let tx = UdpEndpoint::bind(lo)?;
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let reader = rx.clone();
    let recv_task = tokio::spawn(async move {
        let mut bufs = RecvBuffers::default();
        let mut last = crate::clock::now();
        loop {
            match tokio::time::timeout(Duration::from_millis(200), reader.readable()).await {
                Err(_) => return last,
                Ok(Err(_)) => return last,
                Ok(Ok(())) => {}
            }
            while let Ok(n) = bufs.recv(&reader) {
                counter.fetch_add(bufs.datagrams(n).count() as u64, Ordering::Relaxed);
                last = crate::clock::now();
            }
        }
    });
    let payload = vec![0x5Au8; size.max(1)];
    let gso = tx.max_gso_segments().clamp(1, 64);
    let train: Vec<u8> = payload
        .iter()
        .copied()
        .cycle()
        .take(payload.len() * gso)
        .collect();
    let start = crate::clock::now();
    let mut sent = 0u64;
    while sent < count {
        let left = (count - sent) as usize;
        let r = match path {
            BlastPath::Gso => {
                let n = left.min(gso);
                let bytes = train.get(..n * payload.len()).unwrap_or(&train);
                tx.try_send(dest, bytes, (n > 1).then_some(payload.len()))
                    .map(|()| n)
            }
            BlastPath::Mmsg => {
                let items: Vec<(SocketAddr, &[u8])> = (0..left.min(crate::udp::SEND_MMSG))
                    .map(|_| (dest, payload.as_slice()))
                    .collect();
                tx.try_send_many(&items)
            }
            BlastPath::PerPacket => tx.try_send(dest, &payload, None).map(|()| 1),
        };
        match r {
            Ok(n) => sent += n as u64,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => tx.writable().await?,
            Err(e) => return Err(e),
        }
        // Let the receiver run now and then on a single-threaded runtime.
        if sent % 4096 < 64 {
            tokio::task::yield_now().await;
        }
    }
    let last = recv_task.await.map_err(io::Error::other)?;
    Ok(BlastResult {
        path,
        sent,
        received: received.load(Ordering::Relaxed),
        elapsed: last.saturating_duration_since(start).as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_per_second_and_zero_without_elapsed_time() {
        let raw = RawResult {
            sent: 12,
            received: 10,
            elapsed: 2.0,
        };
        assert_eq!(raw.rate(), 5.0);
        assert_eq!(RawResult::default().rate(), 0.0);
        let blast = BlastResult {
            path: BlastPath::PerPacket,
            sent: 9,
            received: 9,
            elapsed: 0.0,
        };
        assert_eq!(blast.rate(), 0.0);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_hand_written_answer_is_what_the_message_writer_writes() {
        use probes::stun::{MessageType, MessageWriter, attr};
        let tid = TransactionId([0x5a; 12]);
        for from in ["192.0.2.7:40000", "[2001:db8::1:2]:3478"] {
            let from: SocketAddr = from.parse().unwrap();
            let mut want = Vec::new();
            let mut w = MessageWriter::new(&mut want, MessageType::BINDING_SUCCESS, &tid);
            w.xor_address(attr::XOR_MAPPED_ADDRESS, &from);
            w.finish();
            let mut out = [0u8; 64];
            let n = binding_success(&tid, from, &mut out);
            assert_eq!(&out[..n], &want[..], "{from}");
        }
    }
}
