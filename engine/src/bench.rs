//! The baseline the engine is measured against: a minimal request/response loop over raw
//! `sendmmsg`/`recvmmsg` with a fixed window of transactions in flight, no timers, no
//! per-transaction state, no parsing beyond the STUN header. It is what this machine's kernel
//! and loopback can do; the engine's throughput is reported as a fraction of it.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

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
        if self.elapsed > 0.0 {
            self.received as f64 / self.elapsed
        } else {
            0.0
        }
    }
}

const BATCH: usize = 64;

/// Run `total` Binding transactions round-robin over `targets` with `window` in flight.
/// A receive that waits longer than `stall` counts every outstanding request as lost and
/// refills the window (so a lossy run still ends).
#[cfg(target_os = "linux")]
pub fn raw_loop(
    targets: &[SocketAddr],
    total: u64,
    window: usize,
    stall: Duration,
) -> io::Result<RawResult> {
    use std::os::fd::AsRawFd;

    let Some(first) = targets.first() else {
        return Ok(RawResult::default());
    };
    let sock = std::net::UdpSocket::bind(crate::udp::wildcard_for(first))?;
    let s2 = socket2::SockRef::from(&sock);
    let _ = s2.set_recv_buffer_size(4 << 20);
    let _ = s2.set_send_buffer_size(4 << 20);
    sock.set_read_timeout(Some(stall))?;
    let fd = sock.as_raw_fd();
    let addrs: Vec<socket2::SockAddr> = targets.iter().map(|a| (*a).into()).collect();

    let mut out = vec![0u8; BATCH * 64];
    let mut lens = [0usize; BATCH];
    let mut inbuf = vec![0u8; BATCH * 2048];
    let mut result = RawResult::default();
    let mut outstanding = 0usize;
    let start = Instant::now();
    let mut next = 0u64;
    while next < total || outstanding > 0 {
        // Fill the window.
        while outstanding < window && next < total {
            let n = (window - outstanding)
                .min(BATCH)
                .min((total - next) as usize);
            let mut enc = Vec::with_capacity(64);
            let mut iovs: Vec<libc::iovec> = Vec::with_capacity(n);
            let mut hdrs: Vec<libc::mmsghdr> = Vec::with_capacity(n);
            for (i, slot) in out.chunks_mut(64).take(n).enumerate() {
                let seq = next + i as u64;
                let mut tid = [0u8; 12];
                tid[..8].copy_from_slice(&seq.to_be_bytes());
                enc.clear();
                BindingRequest {
                    transaction_id: TransactionId(tid),
                    software: Some("stunmap-bench"),
                    change_request: None,
                    response_port: None,
                    fingerprint: true,
                }
                .encode(&mut enc);
                let len = enc.len().min(slot.len());
                if let (Some(dst), Some(src), Some(l)) =
                    (slot.get_mut(..len), enc.get(..len), lens.get_mut(i))
                {
                    dst.copy_from_slice(src);
                    *l = len;
                }
            }
            for (i, slot) in out.chunks_mut(64).take(n).enumerate() {
                iovs.push(libc::iovec {
                    iov_base: slot.as_mut_ptr() as *mut libc::c_void,
                    iov_len: lens.get(i).copied().unwrap_or(0),
                });
            }
            for (i, iov) in iovs.iter_mut().enumerate() {
                let seq = next + i as u64;
                let Some(addr) = addrs.get((seq % addrs.len() as u64) as usize) else {
                    break;
                };
                // SAFETY: all-zero is a valid mmsghdr.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
                h.msg_hdr.msg_namelen = addr.len();
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                hdrs.push(h);
            }
            // SAFETY: headers point into `addrs`, `iovs` and `out`, all alive for the call.
            let r = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), hdrs.len() as libc::c_uint, 0) };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            let r = r as usize;
            next += r as u64;
            result.sent += r as u64;
            outstanding += r;
        }
        // Receive what has come back.
        let mut iovs: Vec<libc::iovec> = inbuf
            .chunks_mut(2048)
            .map(|c| libc::iovec {
                iov_base: c.as_mut_ptr() as *mut libc::c_void,
                iov_len: c.len(),
            })
            .collect();
        let mut hdrs: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .map(|iov| {
                // SAFETY: all-zero is a valid mmsghdr; the source address is not asked for.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        // SAFETY: headers point into `iovs`/`inbuf`, alive for the call.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                hdrs.len() as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) {
                // Stalled: what is outstanding is lost.
                outstanding = 0;
                if next >= total {
                    break;
                }
                continue;
            }
            return Err(e);
        }
        for (h, chunk) in hdrs.iter().zip(inbuf.chunks(2048)).take(r as usize) {
            let len = h.msg_len as usize;
            if chunk.get(..len).is_some_and(|d| check_header(d).is_ok()) {
                result.received += 1;
                outstanding = outstanding.saturating_sub(1);
            }
        }
    }
    result.elapsed = start.elapsed().as_secs_f64();
    Ok(result)
}

/// Resident set size of this process in bytes (Linux `/proc/self/statm`), `None` elsewhere.
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// Peak resident set size of this process in bytes (`getrusage`), `None` where unknown.
pub fn peak_rss_bytes() -> Option<u64> {
    // SAFETY: all-zero is a valid rusage, and getrusage only writes into it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a live rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return None;
    }
    Some(u64::try_from(u.ru_maxrss).ok()? * 1024)
}
