//! The two batched socket calls the engine uses outside quinn-udp, in one place: `sendmmsg`
//! (datagrams to several destinations, or raw segments) and `recvmmsg` (a batch of packets into
//! fixed-size slots). Linux only; callers keep a fallback elsewhere.

use std::io;
use std::os::fd::RawFd;

/// Send each `(destination, bytes)` as its own datagram with one `sendmmsg` call. Returns how
/// many the kernel took (a prefix of `items`).
pub fn send_many(
    fd: RawFd,
    items: &[(&socket2::SockAddr, &[u8])],
    flags: libc::c_int,
) -> io::Result<usize> {
    if items.is_empty() {
        return Ok(0);
    }
    let mut iovs: Vec<libc::iovec> = items
        .iter()
        .map(|(_, d)| libc::iovec {
            iov_base: d.as_ptr() as *mut libc::c_void,
            iov_len: d.len(),
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = items
        .iter()
        .zip(iovs.iter_mut())
        .map(|((addr, _), iov)| {
            // SAFETY: mmsghdr is a plain C struct for which all-zero is a valid value.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
            h.msg_hdr.msg_namelen = addr.len();
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    // SAFETY: every header points at an address and an iovec that outlive the call (`items`,
    // `iovs`), and the count is the vector's length. (musl declares the flags `unsigned int`,
    // glibc `int`.)
    let r = unsafe {
        libc::sendmmsg(
            fd,
            hdrs.as_mut_ptr(),
            hdrs.len() as libc::c_uint,
            flags as _,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Receive up to `buf.len() / slot` packets with one `recvmmsg` call, packet `i` into
/// `buf[i·slot ..]` (longer packets are cut to `slot`). Returns each packet's length (cut to
/// the slot), empty when nothing was queued with `MSG_DONTWAIT`, or the error.
pub fn recv_many(
    fd: RawFd,
    buf: &mut [u8],
    slot: usize,
    flags: libc::c_int,
) -> io::Result<Vec<usize>> {
    let slot = slot.max(1);
    let mut iovs: Vec<libc::iovec> = buf
        .chunks_mut(slot)
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
    // SAFETY: headers point into `iovs`/`buf`, alive for the call; the count is theirs.
    // (musl declares the flags `unsigned int`, glibc `int`.)
    let r = unsafe {
        libc::recvmmsg(
            fd,
            hdrs.as_mut_ptr(),
            hdrs.len() as libc::c_uint,
            flags as _,
            std::ptr::null_mut(),
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            return Ok(Vec::new());
        }
        return Err(e);
    }
    Ok(hdrs
        .iter()
        .take(r as usize)
        .map(|h| (h.msg_len as usize).min(slot))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn round_trip_over_loopback() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to: socket2::SockAddr = rx.local_addr().unwrap().into();
        let items: Vec<(&socket2::SockAddr, &[u8])> =
            vec![(&to, b"one"), (&to, b"three"), (&to, &[7; 40])];
        assert_eq!(send_many(tx.as_raw_fd(), &items, 0).unwrap(), 3);
        let mut buf = vec![0u8; 8 * 16];
        let mut lens = Vec::new();
        for _ in 0..100 {
            lens.extend(recv_many(rx.as_raw_fd(), &mut buf, 16, libc::MSG_DONTWAIT).unwrap());
            if lens.len() == 3 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // The third is cut to its 16-byte slot.
        assert_eq!(lens, vec![3, 5, 16]);
        assert_eq!(&buf[..3], b"one");
        assert_eq!(&buf[16..21], b"three");
        assert!(send_many(tx.as_raw_fd(), &[], 0).unwrap() == 0);
    }
}
