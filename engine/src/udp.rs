//! A non-blocking UDP socket with batched receive (recvmmsg/GRO through `quinn-udp`) and
//! GSO-batched sends where consecutive datagrams go to one destination with one size.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use quinn_udp::{RecvMeta, UdpSocketState};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;

/// Datagrams received per `recvmmsg` call.
pub const RECV_BATCH: usize = quinn_udp::BATCH_SIZE;
/// Bytes per receive buffer: a full GRO train of maximum-size datagrams fits.
const RECV_BUF: usize = 64 * 1024;

/// A bound UDP socket registered with tokio.
#[derive(Debug)]
pub struct UdpEndpoint {
    socket: tokio::net::UdpSocket,
    state: UdpSocketState,
    local: SocketAddr,
}

impl UdpEndpoint {
    /// Bind to `addr` (port 0 for an ephemeral port). IPv6 sockets are v6-only. Socket
    /// buffers are raised (best effort) so a burst of replies is not dropped by the kernel.
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            sock.set_only_v6(true)?;
        }
        sock.set_nonblocking(true)?;
        sock.bind(&addr.into())?;
        Self::from_socket(sock)
    }

    /// A socket of `dest`'s family from the source binding in force ([`crate::source`]): its
    /// address and interface, and its source port when `with_port` (the first socket of a
    /// run). Without a binding, the wildcard address and an ephemeral port.
    pub fn bound_for(dest: &SocketAddr, with_port: bool) -> io::Result<Self> {
        let b = *crate::source::effective().for_dest(dest);
        let sock = crate::source::udp_socket(&b, dest, with_port)
            .map_err(|e| io::Error::other(e.to_string()))?;
        Self::from_socket(sock)
    }

    fn from_socket(sock: Socket) -> io::Result<Self> {
        let _ = sock.set_recv_buffer_size(4 << 20);
        let _ = sock.set_send_buffer_size(4 << 20);
        // An ICMP error must not fail the next receive of a socket many probes share.
        #[cfg(windows)]
        crate::winsock::udp_ignore_connreset(&sock)?;
        let state = UdpSocketState::new((&sock).into())?;
        let std: std::net::UdpSocket = sock.into();
        let local = std.local_addr()?;
        let socket = tokio::net::UdpSocket::from_std(std)?;
        Ok(Self {
            socket,
            state,
            local,
        })
    }

    /// An ephemeral socket of `dest`'s family, bound as the source binding in force says (the
    /// wildcard address when none is).
    pub fn ephemeral_for(dest: &SocketAddr) -> io::Result<Self> {
        Self::bound_for(dest, false)
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Wait until the socket may be readable.
    pub async fn readable(&self) -> io::Result<()> {
        self.socket.readable().await
    }

    /// Wait until the socket may be writable.
    pub async fn writable(&self) -> io::Result<()> {
        self.socket.writable().await
    }

    /// Receive a batch without blocking; `WouldBlock` when nothing is queued.
    pub fn try_recv(
        &self,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> io::Result<usize> {
        self.socket.try_io(Interest::READABLE, || {
            self.state.recv((&self.socket).into(), bufs, meta)
        })
    }

    /// Send one datagram, or a GSO train when `segment_size` is set, without blocking.
    pub fn try_send(
        &self,
        destination: SocketAddr,
        contents: &[u8],
        segment_size: Option<usize>,
    ) -> io::Result<()> {
        let t = quinn_udp::Transmit {
            destination,
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        };
        self.socket.try_io(Interest::WRITABLE, || {
            self.state.try_send((&self.socket).into(), &t)
        })
    }

    /// How many equal-size datagrams one GSO send may carry (1 without GSO).
    pub fn max_gso_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    /// Send one datagram, waiting for buffer space if the kernel queue is full.
    pub async fn send_to(&self, destination: SocketAddr, contents: &[u8]) -> io::Result<()> {
        loop {
            match self.try_send(destination, contents, None) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                other => return other,
            }
        }
    }
}

/// `count` non-blocking UDP sockets bound to the same `addr` with `SO_REUSEPORT`, so the
/// kernel spreads arriving datagrams over them by a hash of the sender's address and port (a
/// server's threads each take one; Linux `socket(7)`). IPv6 sockets are v6-only;
/// buffers are raised like [`UdpEndpoint::bind`]'s. The port is first bound once without
/// `SO_REUSEPORT` and released, so that a port another program holds (even one that set
/// `SO_REUSEPORT` itself) is an error rather than a silently shared listener.
#[cfg(target_os = "linux")]
pub fn bind_reuseport_group(
    addr: SocketAddr,
    count: usize,
) -> io::Result<Vec<std::net::UdpSocket>> {
    let new = || -> io::Result<Socket> {
        let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            sock.set_only_v6(true)?;
        }
        Ok(sock)
    };
    let probe = new()?;
    probe.bind(&addr.into())?;
    drop(probe);
    let member = |at: SocketAddr| -> io::Result<std::net::UdpSocket> {
        let sock = new()?;
        sock.set_reuse_port(true)?;
        sock.set_nonblocking(true)?;
        let _ = sock.set_recv_buffer_size(4 << 20);
        let _ = sock.set_send_buffer_size(4 << 20);
        sock.bind(&at.into())?;
        Ok(sock.into())
    };
    let first = member(addr)?;
    // Port 0: the others join the port the first one got.
    let at = first.local_addr()?;
    let mut group = vec![first];
    for _ in 1..count {
        group.push(member(at)?);
    }
    Ok(group)
}

/// `0.0.0.0:0` or `[::]:0` to match `dest`'s family.
pub fn wildcard_for(dest: &SocketAddr) -> SocketAddr {
    match dest {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    }
}

/// The source address the OS would use toward `dest`: connects a throwaway UDP socket (no
/// datagram is sent) and reads its local address. The source binding in force applies (its
/// address, its interface).
pub fn routed_source(dest: &SocketAddr) -> io::Result<IpAddr> {
    let s = crate::source::std_udp_for(dest, false)?;
    s.connect(dest)?;
    Ok(s.local_addr()?.ip())
}

/// Receive buffers for one socket: [`RECV_BATCH`] buffers of 64 KiB.
#[derive(Debug)]
pub struct RecvBuffers {
    storage: Vec<u8>,
    meta: Vec<RecvMeta>,
}

impl Default for RecvBuffers {
    fn default() -> Self {
        Self {
            storage: vec![0; RECV_BATCH * RECV_BUF],
            meta: vec![RecvMeta::default(); RECV_BATCH],
        }
    }
}

impl RecvBuffers {
    /// Receive one batch from `ep` without blocking; returns how many buffers were filled
    /// (read them with [`RecvBuffers::datagrams`]).
    pub fn recv(&mut self, ep: &UdpEndpoint) -> io::Result<usize> {
        let mut slices: Vec<IoSliceMut<'_>> = self
            .storage
            .chunks_mut(RECV_BUF)
            .map(IoSliceMut::new)
            .collect();
        ep.try_recv(&mut slices, &mut self.meta)
    }

    /// The datagrams of the last `n` filled buffers, GRO trains split at their stride.
    pub fn datagrams(&self, n: usize) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.meta
            .iter()
            .take(n)
            .enumerate()
            .flat_map(move |(i, meta)| {
                let start = i * RECV_BUF;
                let buf = self
                    .storage
                    .get(start..start + meta.len.min(RECV_BUF))
                    .unwrap_or(&[]);
                let stride = if meta.stride == 0 {
                    buf.len().max(1)
                } else {
                    meta.stride
                };
                buf.chunks(stride).map(move |d| (meta.addr, d))
            })
    }
}

/// Hand every datagram `ep` receives to `deliver`, batch by batch, until `deliver` returns
/// false or the socket fails (a failed receive is passed over).
pub(crate) async fn read_all(ep: &UdpEndpoint, mut deliver: impl FnMut(SocketAddr, &[u8]) -> bool) {
    let mut bufs = RecvBuffers::default();
    loop {
        if ep.readable().await.is_err() {
            return;
        }
        let Ok(n) = bufs.recv(ep) else {
            continue;
        };
        for (from, data) in bufs.datagrams(n) {
            if !deliver(from, data) {
                return;
            }
        }
    }
}

/// Hand what already waits in `ep` to `deliver`, in at most `turns` receive calls, without
/// waiting. The loops call it before they fire timers: an answer that arrived before a timer
/// was due then counts first, even when the loop woke late and the socket's reader task has
/// not had a turn yet. A failed receive (nothing waiting) ends it.
pub(crate) fn read_waiting(
    ep: &UdpEndpoint,
    bufs: &mut RecvBuffers,
    turns: usize,
    mut deliver: impl FnMut(SocketAddr, &[u8]),
) {
    for _ in 0..turns {
        let Ok(n) = bufs.recv(ep) else {
            return;
        };
        for (from, data) in bufs.datagrams(n) {
            deliver(from, data);
        }
    }
}

/// Most datagrams handed to one `sendmmsg` call.
pub const SEND_MMSG: usize = 64;

impl UdpEndpoint {
    /// Send several datagrams, each to its own destination, with one `sendmmsg` call (Linux).
    /// Returns how many the kernel took (a prefix of `items`); `WouldBlock` when none.
    /// quinn-udp batches sends only through GSO (one destination, equal sizes), so bursts to
    /// many destinations — a port sweep, a scan of many servers — take this path.
    #[cfg(target_os = "linux")]
    pub fn try_send_many(&self, items: &[(SocketAddr, &[u8])]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let items = items.get(..items.len().min(SEND_MMSG)).unwrap_or(items);
        let addrs: Vec<socket2::SockAddr> = items.iter().map(|(a, _)| (*a).into()).collect();
        let batch: Vec<(&socket2::SockAddr, &[u8])> =
            addrs.iter().zip(items).map(|(a, (_, d))| (a, *d)).collect();
        let fd = self.socket.as_raw_fd();
        self.socket.try_io(Interest::WRITABLE, || {
            crate::mmsg::send_many(fd, &batch, libc::MSG_DONTWAIT)
        })
    }

    /// Fallback where `sendmmsg` does not exist: one send per datagram.
    #[cfg(not(target_os = "linux"))]
    pub fn try_send_many(&self, items: &[(SocketAddr, &[u8])]) -> io::Result<usize> {
        let mut sent = 0;
        for (dest, data) in items {
            match self.try_send(*dest, data, None) {
                Ok(()) => sent += 1,
                Err(e) if sent == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(sent)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_reuseport_group_shares_its_port_with_nobody_else() {
        let group = bind_reuseport_group("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        let port = group[0].local_addr().unwrap().port();
        drop(group);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let group = bind_reuseport_group(addr, 3).unwrap();
        assert_eq!(group.len(), 3);
        assert!(group.iter().all(|s| s.local_addr().unwrap() == addr));
        // A second group on the same port (another server) is refused.
        assert!(bind_reuseport_group(addr, 1).is_err());
        drop(group);
        assert!(bind_reuseport_group(addr, 2).is_ok());
    }
}
