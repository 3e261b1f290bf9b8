//! The two batched socket calls the engine uses outside quinn-udp, in one place: `sendmmsg`
//! (datagrams to several destinations, or raw segments) and `recvmmsg` (a batch of packets into
//! fixed-size slots). Linux only; callers keep a fallback elsewhere.
//!
//! [`RecvBatch`] and [`SendBatch`] are the reusable forms a request/response server loops on:
//! one `recvmmsg` fills up to [`MMSG_BATCH`] slots with each sender's address, the answers are
//! appended to one buffer, and one `sendmmsg` sends them all, each to its own destination. No
//! allocation happens per datagram or per call once they are made.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::ops::Range;
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

/// Datagrams per `recvmmsg`/`sendmmsg` call of [`RecvBatch`] and [`SendBatch`].
pub const MMSG_BATCH: usize = 64;

/// Point the `recvmmsg` header `h` at its one iovec and its address slot `name`.
pub(crate) fn aim_recv_header(
    h: &mut libc::mmsghdr,
    iov: &mut libc::iovec,
    name: &mut libc::sockaddr_storage,
) {
    h.msg_hdr.msg_iov = iov;
    h.msg_hdr.msg_iovlen = 1;
    h.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
    h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
}

/// The socket address in a `sockaddr_storage` the kernel filled, if it is IPv4 or IPv6.
pub(crate) fn socket_addr(
    storage: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    let len = len as usize;
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the kernel wrote a sockaddr_in (family AF_INET, length checked) into the
            // storage, which is aligned for every sockaddr type.
            let a =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, a sockaddr_in6.
            let a = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Receive slots for `recvmmsg`, reused call after call: [`MMSG_BATCH`] datagrams of up to
/// `slot` bytes each, with their senders.
pub struct RecvBatch {
    buf: Box<[u8]>,
    slot: usize,
    names: Box<[libc::sockaddr_storage]>,
    /// Per filled slot: length, address length, and whether the kernel cut the datagram.
    meta: Box<[(usize, libc::socklen_t, bool)]>,
    filled: usize,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("slot", &self.slot)
            .field("filled", &self.filled)
            .finish_non_exhaustive()
    }
}

impl RecvBatch {
    /// Slots of `slot` bytes (at least 1). A longer datagram is cut by the kernel and
    /// reported as cut ([`RecvBatch::get`] skips it).
    pub fn new(slot: usize) -> Self {
        let slot = slot.max(1);
        Self {
            buf: vec![0; slot * MMSG_BATCH].into_boxed_slice(),
            slot,
            // SAFETY: all-zero is a valid sockaddr_storage.
            names: vec![unsafe { std::mem::zeroed::<libc::sockaddr_storage>() }; MMSG_BATCH]
                .into_boxed_slice(),
            meta: vec![(0, 0, false); MMSG_BATCH].into_boxed_slice(),
            filled: 0,
        }
    }

    /// One `recvmmsg` call on `fd` with `flags` (e.g. `MSG_DONTWAIT`). Returns how many slots
    /// were filled: 0 when nothing was queued (`WouldBlock` is not an error here).
    pub fn recv(&mut self, fd: RawFd, flags: libc::c_int) -> io::Result<usize> {
        self.filled = 0;
        // SAFETY: all-zero is a valid iovec and mmsghdr.
        let mut iovs: [libc::iovec; MMSG_BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; MMSG_BATCH] = unsafe { std::mem::zeroed() };
        for (((iov, h), chunk), name) in iovs
            .iter_mut()
            .zip(hdrs.iter_mut())
            .zip(self.buf.chunks_mut(self.slot))
            .zip(self.names.iter_mut())
        {
            iov.iov_base = chunk.as_mut_ptr().cast();
            iov.iov_len = chunk.len();
            aim_recv_header(h, iov, name);
        }
        // SAFETY: every header points at its own iovec (into `buf`) and address slot (into
        // `names`), all alive and unaliased for the call; the count is the arrays' length.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                MMSG_BATCH as libc::c_uint,
                flags as _,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            };
        }
        let n = (r as usize).min(MMSG_BATCH);
        for (m, h) in self.meta.iter_mut().zip(hdrs.iter()).take(n) {
            *m = (
                (h.msg_len as usize).min(self.slot),
                h.msg_hdr.msg_namelen,
                h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            );
        }
        self.filled = n;
        Ok(n)
    }

    /// Datagram `i` of the last call: its sender and bytes. `None` past the filled slots, for
    /// a datagram the kernel cut to the slot, or a sender that is not an IP address.
    pub fn get(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        if i >= self.filled {
            return None;
        }
        let (len, namelen, cut) = *self.meta.get(i)?;
        if cut {
            return None;
        }
        let from = socket_addr(self.names.get(i)?, namelen)?;
        let start = i * self.slot;
        Some((from, self.buf.get(start..start + len)?))
    }
}

/// What [`SendBatch::flush`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Datagrams the kernel took.
    pub sent: usize,
    /// Datagrams dropped: refused by the kernel (a destination it cannot send to) or left
    /// when the socket's send buffer was full.
    pub dropped: usize,
}

/// Datagrams queued for one socket, each to its own destination, sent with `sendmmsg`.
#[derive(Debug, Default)]
pub struct SendBatch {
    data: Vec<u8>,
    items: Vec<(socket2::SockAddr, Range<usize>)>,
}

impl SendBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// The buffer datagrams are appended to: append one, then [`SendBatch::commit`] it with
    /// the length the buffer had before.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.data
    }

    /// Queue the bytes appended since the buffer held `start` bytes as one datagram to `to`
    /// (nothing when none were appended).
    pub fn commit(&mut self, start: usize, to: SocketAddr) {
        let end = self.data.len();
        if start < end {
            self.items.push((to.into(), start..end));
        }
    }

    /// Datagrams queued.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Send everything queued on `fd` without blocking, [`MMSG_BATCH`] per call, and empty
    /// the batch. A datagram the kernel refuses is dropped and the rest still sent; when the
    /// send buffer is full the rest is dropped (a datagram service loses it like the network
    /// would).
    pub fn flush(&mut self, fd: RawFd) -> Flushed {
        let mut done = Flushed::default();
        let mut next = 0;
        while next < self.items.len() {
            let chunk = self
                .items
                .get(next..self.items.len().min(next + MMSG_BATCH))
                .unwrap_or(&[]);
            // SAFETY: all-zero is a valid iovec and mmsghdr.
            let mut iovs: [libc::iovec; MMSG_BATCH] = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            let mut hdrs: [libc::mmsghdr; MMSG_BATCH] = unsafe { std::mem::zeroed() };
            let mut n = 0;
            for ((iov, h), (to, range)) in iovs.iter_mut().zip(hdrs.iter_mut()).zip(chunk) {
                let Some(bytes) = self.data.get(range.clone()) else {
                    continue;
                };
                iov.iov_base = bytes.as_ptr() as *mut libc::c_void;
                iov.iov_len = bytes.len();
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_name = to.as_ptr() as *mut libc::c_void;
                h.msg_hdr.msg_namelen = to.len();
                n += 1;
            }
            if n == 0 {
                break;
            }
            // SAFETY: the first `n` headers point at iovecs into `data` and at addresses in
            // `items`, alive and unchanged for the call.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT as _,
                )
            };
            if r > 0 {
                done.sent += r as usize;
                next += r as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => break,
                // The first datagram of the call was refused: skip it.
                _ => {
                    done.dropped += 1;
                    next += 1;
                }
            }
        }
        done.dropped += self.items.len().saturating_sub(next);
        self.items.clear();
        self.data.clear();
        done
    }
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

    #[test]
    fn batches_carry_senders_and_destinations() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_nonblocking(true).unwrap();
        let clients: Vec<_> = (0..3)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let to = server.local_addr().unwrap();
        for (i, c) in clients.iter().enumerate() {
            c.send_to(&[i as u8; 5], to).unwrap();
        }
        c_send_big(&clients[0], to);
        let mut rx = RecvBatch::new(16);
        let mut got = Vec::new();
        for _ in 0..100 {
            let n = rx.recv(server.as_raw_fd(), libc::MSG_DONTWAIT).unwrap();
            got.extend((0..n).map(|i| rx.get(i).map(|(a, d)| (a, d.to_vec()))));
            if got.len() == 4 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(got.len(), 4);
        for (i, c) in clients.iter().enumerate() {
            assert_eq!(got[i], Some((c.local_addr().unwrap(), vec![i as u8; 5])));
        }
        assert_eq!(got[3], None, "a datagram cut to its slot is skipped");
        assert!(rx.get(4).is_none());
        // Nothing queued: 0, not an error.
        assert_eq!(rx.recv(server.as_raw_fd(), libc::MSG_DONTWAIT).unwrap(), 0);

        // Answer each sender from the batch, plus one datagram the kernel refuses.
        let mut tx = SendBatch::new();
        for (i, c) in clients.iter().enumerate() {
            let start = tx.buffer().len();
            tx.buffer().extend_from_slice(&[0xA0 + i as u8; 3]);
            tx.commit(start, c.local_addr().unwrap());
            if i == 0 {
                let start = tx.buffer().len();
                tx.buffer().push(1);
                // An IPv6 destination on an IPv4 socket: EAFNOSUPPORT.
                tx.commit(start, "[::1]:9".parse().unwrap());
            }
        }
        let start = tx.buffer().len();
        tx.commit(start, to);
        assert_eq!(tx.len(), 4, "an empty datagram is not queued");
        let f = tx.flush(server.as_raw_fd());
        assert_eq!(
            f,
            Flushed {
                sent: 3,
                dropped: 1
            }
        );
        assert!(tx.is_empty());
        for (i, c) in clients.iter().enumerate() {
            let mut b = [0u8; 8];
            c.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            let (n, from) = c.recv_from(&mut b).unwrap();
            assert_eq!((&b[..n], from), (&[0xA0 + i as u8; 3][..], to));
        }
    }

    fn c_send_big(c: &std::net::UdpSocket, to: std::net::SocketAddr) {
        c.send_to(&[9; 40], to).unwrap();
    }
}
