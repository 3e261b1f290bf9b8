//! The path MTU probe's I/O (Linux): a connected UDP socket whose DF behaviour is set per
//! datagram (`IP_MTU_DISCOVER` = `IP_PMTUDISC_PROBE`: DF set and the cached path MTU ignored,
//! so every size is really tried; `IP_PMTUDISC_DONT` for the no-DF check), ICMP errors read
//! from the socket's error queue (`IP_RECVERR`: the router and the MTU it names), and the
//! fragment size of reassembled answers (`IP_RECVFRAGSIZE`). IPv6 uses the `IPV6_*` twins.
//! The search itself is `probes::path::pmtu::PmtuSearch`; also here: the MSS a TCP
//! connection settles on (`TCP_MAXSEG`), which shows a middlebox clamping it.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use probes::path::pmtu::{PmtuConfig, PmtuReport, PmtuSearch};
use probes::stun::TransactionIdSource;

use crate::driver::Cancel;

/// Run a path MTU search toward `cfg.server` until it ends, `limit` passes or `cancel`
/// fires (the report is then marked incomplete).
pub async fn search(
    cfg: PmtuConfig,
    ids: TransactionIdSource,
    limit: Duration,
    cancel: &Cancel,
) -> io::Result<PmtuReport> {
    let mut s = PmtuSearch::new(cfg, ids);
    imp::drive(&mut s, cfg.server, limit, cancel).await?;
    if !s.is_done() {
        s.cancel();
    }
    s.report()
        .cloned()
        .ok_or_else(|| io::Error::other("the search did not finish"))
}

/// The MSS of a TCP connection to `dest` (Linux `TCP_MAXSEG` once connected: the smaller of
/// what both ends announced, after any middlebox rewrote it).
pub async fn tcp_mss(dest: SocketAddr, timeout: Duration) -> io::Result<u32> {
    let s = tokio::time::timeout(timeout, crate::source::connect_tcp(dest))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    let sock = socket2::SockRef::from(&s);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        sock.tcp_mss()
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = sock;
        Err(io::Error::new(io::ErrorKind::Unsupported, "TCP_MAXSEG"))
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::io;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    use probes::path::pmtu::{PmtuSearch, TooBig};
    use tokio::io::Interest;

    use crate::clock::now;
    use crate::driver::Cancel;

    fn set_int(fd: i32, level: i32, name: i32, value: i32) -> io::Result<()> {
        // SAFETY: an int option.
        let r = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                std::ptr::from_ref(&value).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    fn get_int(fd: i32, level: i32, name: i32) -> Option<i32> {
        let mut v: i32 = 0;
        let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
        // SAFETY: an int option.
        let r = unsafe {
            libc::getsockopt(fd, level, name, std::ptr::from_mut(&mut v).cast(), &mut len)
        };
        (r == 0).then_some(v)
    }

    struct Opts {
        level: i32,
        discover: i32,
        probe: i32,
        dont: i32,
        mtu: i32,
    }

    fn opts(v4: bool) -> Opts {
        if v4 {
            Opts {
                level: libc::IPPROTO_IP,
                discover: libc::IP_MTU_DISCOVER,
                probe: libc::IP_PMTUDISC_PROBE,
                dont: libc::IP_PMTUDISC_DONT,
                mtu: libc::IP_MTU,
            }
        } else {
            Opts {
                level: libc::IPPROTO_IPV6,
                discover: libc::IPV6_MTU_DISCOVER,
                probe: libc::IPV6_PMTUDISC_PROBE,
                dont: libc::IPV6_PMTUDISC_DONT,
                mtu: libc::IPV6_MTU,
            }
        }
    }

    /// A `recvmsg` header for one buffer (`iov`) and room for control messages (`control`);
    /// both must outlive the call it is used in.
    fn recv_header(iov: &mut libc::iovec, control: &mut [u64]) -> libc::msghdr {
        // SAFETY: a zeroed msghdr is valid; the pointers set below are the caller's to keep.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(control) as _;
        msg
    }

    /// One datagram read with its control messages: the fragment size of a reassembled one.
    fn recv(fd: i32, buf: &mut [u8], v4: bool) -> io::Result<(usize, Option<u16>)> {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut control = [0u64; 32];
        let mut msg = recv_header(&mut iov, &mut control);
        // SAFETY: msg is fully set up.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let (level, kind) = if v4 {
            (libc::IPPROTO_IP, libc::IP_RECVFRAGSIZE)
        } else {
            (libc::IPPROTO_IPV6, libc::IPV6_RECVFRAGSIZE)
        };
        let mut frag = None;
        // SAFETY: `recvmsg` filled `msg`; a fragment-size message carries an int.
        unsafe {
            each_control_message(&msg, level, kind, |data| {
                let v = std::ptr::read_unaligned(data.cast::<i32>());
                frag = u16::try_from(v).ok();
            });
        }
        Ok((n as usize, frag))
    }

    /// One error from the error queue: an ICMP "too big" with its MTU and router, or a local
    /// EMSGSIZE. `None` when the queue is empty.
    fn recv_error(fd: i32, v4: bool) -> Option<Option<TooBig>> {
        let mut data = [0u8; 2048];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        let mut control = [0u64; 64];
        let mut msg = recv_header(&mut iov, &mut control);
        // SAFETY: msg is fully set up.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
        if n < 0 {
            return None;
        }
        let (level, kind) = if v4 {
            (libc::IPPROTO_IP, libc::IP_RECVERR)
        } else {
            (libc::IPPROTO_IPV6, libc::IPV6_RECVERR)
        };
        let mut out = None;
        // SAFETY: `recvmsg` filled `msg`; the kernel wrote a sock_extended_err followed by the
        // offender's address.
        unsafe {
            each_control_message(&msg, level, kind, |data| {
                let ee_ptr = data.cast::<libc::sock_extended_err>();
                let ee = std::ptr::read_unaligned(ee_ptr);
                if ee.ee_errno == libc::EMSGSIZE as u32 {
                    let mtu = u16::try_from(ee.ee_info).unwrap_or(0);
                    out = Some(match ee.ee_origin {
                        libc::SO_EE_ORIGIN_ICMP | libc::SO_EE_ORIGIN_ICMP6 => {
                            let from = offender(ee_ptr.add(1).cast::<u8>(), v4);
                            TooBig::Icmp { mtu, from }
                        }
                        _ => TooBig::Local {
                            mtu: (mtu > 0).then_some(mtu),
                        },
                    });
                }
            });
        }
        Some(out)
    }

    /// Hand `each` the data of every control message of `level` and `kind` in `msg`, in order.
    ///
    /// # Safety
    /// `msg` is a header `recvmsg` filled: its control buffer and length are the kernel's.
    unsafe fn each_control_message(
        msg: &libc::msghdr,
        level: libc::c_int,
        kind: libc::c_int,
        mut each: impl FnMut(*const u8),
    ) {
        // SAFETY: the caller's promise; walking the messages with the libc macros.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(msg);
            while !c.is_null() {
                if (*c).cmsg_level == level && (*c).cmsg_type == kind {
                    each(libc::CMSG_DATA(c));
                }
                c = libc::CMSG_NXTHDR(msg, c);
            }
        }
    }

    /// The address after a `sock_extended_err` (`SO_EE_OFFENDER`).
    ///
    /// # Safety
    /// `p` points at a sockaddr the kernel wrote after the error.
    unsafe fn offender(p: *const u8, v4: bool) -> Option<IpAddr> {
        // SAFETY: the caller's promise; unaligned reads of plain structs.
        unsafe {
            if v4 {
                let sa = std::ptr::read_unaligned(p.cast::<libc::sockaddr_in>());
                (i32::from(sa.sin_family) == libc::AF_INET)
                    .then(|| IpAddr::V4(Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr))))
            } else {
                let sa = std::ptr::read_unaligned(p.cast::<libc::sockaddr_in6>());
                (i32::from(sa.sin6_family) == libc::AF_INET6)
                    .then(|| IpAddr::V6(Ipv6Addr::from(sa.sin6_addr.s6_addr)))
            }
        }
    }

    pub(super) async fn drive(
        s: &mut PmtuSearch,
        server: SocketAddr,
        limit: Duration,
        cancel: &Cancel,
    ) -> io::Result<()> {
        let v4 = server.is_ipv4();
        let std = crate::source::std_udp_for(&server, false)?;
        std.connect(server)?;
        let fd = std.as_raw_fd();
        let o = opts(v4);
        let (recverr, fragsize) = if v4 {
            (libc::IP_RECVERR, libc::IP_RECVFRAGSIZE)
        } else {
            (libc::IPV6_RECVERR, libc::IPV6_RECVFRAGSIZE)
        };
        set_int(fd, o.level, recverr, 1)?;
        // Older kernels lack IP_RECVFRAGSIZE (Linux 4.10): the way back is then not measured.
        let _ = set_int(fd, o.level, fragsize, 1);
        let sock = tokio::net::UdpSocket::from_std(std)?;
        let end = now() + limit;
        let mut out = Vec::with_capacity(1600);
        let mut buf = vec![0u8; 65536];
        let tick = Duration::from_millis(20);
        while !s.is_done() {
            let t = now();
            if t >= end || cancel.is_cancelled() {
                s.cancel();
                break;
            }
            out.clear();
            if let Some(tx) = s.poll_transmit(t, &mut out) {
                set_int(
                    fd,
                    o.level,
                    o.discover,
                    if tx.dont_fragment { o.probe } else { o.dont },
                )?;
                match sock.send(&out).await {
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                        let mtu = get_int(fd, o.level, o.mtu).and_then(|m| u16::try_from(m).ok());
                        s.handle_error(TooBig::Local { mtu });
                    }
                    // A queued ICMP error surfaces on the next call; the queue is read below.
                    Err(_) => {}
                }
                continue;
            }
            // Errors first: an ICMP "too big" ends the current size at once.
            while let Some(err) = recv_error(fd, v4) {
                if let Some(e) = err {
                    s.handle_error(e);
                }
            }
            if s.is_done() {
                break;
            }
            let wake = s.poll_timeout().unwrap_or(t + tick).min(t + tick).min(end);
            tokio::select! {
                r = sock.readable() => {
                    r?;
                    loop {
                        match sock.try_io(Interest::READABLE, || recv(fd, &mut buf, v4)) {
                            Ok((n, frag)) => {
                                let _ = s.handle_response(buf.get(..n).unwrap_or(&[]), frag);
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            // An error queued by ICMP: read from the queue on the next turn.
                            Err(_) => break,
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {
                    s.handle_timeout(now());
                }
                _ = cancel.cancelled() => {
                    s.cancel();
                }
            }
        }
        Ok(())
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;
    use std::net::SocketAddr;
    use std::time::Duration;

    use probes::path::pmtu::PmtuSearch;

    use crate::driver::Cancel;

    pub(super) async fn drive(
        _s: &mut PmtuSearch,
        _server: SocketAddr,
        _limit: Duration,
        _cancel: &Cancel,
    ) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the path MTU probe needs Linux (IP_MTU_DISCOVER, IP_RECVERR)",
        ))
    }
}
