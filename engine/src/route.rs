//! Route lookups from the kernel (Linux rtnetlink; `probes::wire::netlink` is the codec): the
//! interface, source address and next hop the routing table gives a destination — through
//! the policy rules, as `ip route get` reports it — optionally restricted to one output
//! interface, and the host's interfaces with their addresses and MTUs. Elsewhere only the
//! source address is known (a connected UDP socket's local address).

use std::io;
use std::net::{IpAddr, SocketAddr};

use probes::path::route::{Interface, RouteFacts};

/// The host's interfaces, with their addresses.
pub fn interfaces() -> io::Result<Vec<Interface>> {
    imp::interfaces()
}

/// The route the kernel would use toward `dest` (through interface index `oif` only, when
/// given), with `ifaces` to name its interface.
pub fn lookup(dest: IpAddr, oif: Option<u32>, ifaces: &[Interface]) -> RouteFacts {
    imp::lookup(dest, oif, ifaces)
}

/// The interfaces that carry a default route of `dest`'s family in the main table, best
/// metric first.
pub fn default_route_interfaces(v4: bool) -> io::Result<Vec<u32>> {
    imp::default_route_interfaces(v4)
}

/// Fallback facts when the kernel cannot be asked: the source address only.
fn by_socket(dest: IpAddr) -> RouteFacts {
    match crate::udp::routed_source(&SocketAddr::new(dest, 9)) {
        Ok(src) => RouteFacts {
            dest,
            interface: None,
            source: Some(src),
            gateway: None,
            error: None,
        },
        Err(e) => RouteFacts {
            dest,
            interface: None,
            source: None,
            gateway: None,
            error: Some(e.to_string()),
        },
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::io;
    use std::net::IpAddr;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::sync::atomic::{AtomicU32, Ordering};

    use probes::path::route::{Interface, RouteFacts};
    use probes::wire::netlink::{self, Dump, Message};

    static SEQ: AtomicU32 = AtomicU32::new(1);

    /// A netlink route socket with a receive timeout (the kernel answers at once; the timeout
    /// only guards against a wedged socket).
    fn socket() -> io::Result<OwnedFd> {
        // SAFETY: plain socket(2); the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let tv = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: a valid timeval for SO_RCVTIMEO.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                std::ptr::from_ref(&tv).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        Ok(fd)
    }

    /// Send `req` and collect the answers until DONE (dumps), an error, or — for a single
    /// request — the first answer datagram.
    fn exchange(req: &[u8], dump: bool) -> io::Result<Vec<Message>> {
        let fd = socket()?;
        // SAFETY: a zeroed sockaddr_nl is the kernel's address (pid 0).
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: req is valid for its length; the address is a sockaddr_nl.
        let sent = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                0,
                std::ptr::from_ref(&kernel).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        // A dump of a big routing table takes several datagrams; 256 is far beyond any host.
        for _ in 0..256 {
            // SAFETY: buf is valid for its length.
            let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let msgs = netlink::parse(buf.get(..n as usize).unwrap_or(&[]))
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let mut end = !dump;
            for m in msgs {
                match m {
                    Message::Done => end = true,
                    Message::Error { code } if code != 0 => {
                        return Err(io::Error::from_raw_os_error(-code));
                    }
                    Message::Error { .. } => end = true,
                    other => out.push(other),
                }
            }
            if end {
                return Ok(out);
            }
        }
        Ok(out)
    }

    pub(super) fn interfaces() -> io::Result<Vec<Interface>> {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let links = exchange(&netlink::dump_request(seq, Dump::Links), true)?;
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let addrs = exchange(&netlink::dump_request(seq, Dump::Addresses), true)?;
        let mut out: Vec<Interface> = links
            .into_iter()
            .filter_map(|m| match m {
                Message::Link(l) => Some(Interface {
                    index: l.index,
                    name: l.name.unwrap_or_else(|| format!("if{}", l.index)),
                    link_type: l.link_type,
                    mtu: l.mtu,
                    addresses: Vec::new(),
                }),
                _ => None,
            })
            .collect();
        for m in addrs {
            if let Message::Address(a) = m
                && let Some(ip) = a.address
                && let Some(i) = out.iter_mut().find(|i| i.index == a.index)
            {
                i.addresses.push(ip);
            }
        }
        Ok(out)
    }

    pub(super) fn lookup(dest: IpAddr, oif: Option<u32>, ifaces: &[Interface]) -> RouteFacts {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let mut facts = RouteFacts {
            dest,
            interface: None,
            source: None,
            gateway: None,
            error: None,
        };
        match exchange(&netlink::route_get_request(seq, dest, oif), false) {
            Ok(msgs) => {
                let Some(r) = msgs.into_iter().find_map(|m| match m {
                    Message::Route(r) => Some(r),
                    _ => None,
                }) else {
                    return super::by_socket(dest);
                };
                facts.interface = r
                    .oif
                    .and_then(|i| ifaces.iter().find(|x| x.index == i).cloned());
                facts.source = r.prefsrc;
                facts.gateway = r.gateway;
                if r.kind != netlink::RTN_UNICAST && r.kind != 2 {
                    // Not unicast or local: unreachable, blackhole, prohibit.
                    facts.error = Some(format!("route type {}", r.kind));
                    facts.interface = None;
                }
            }
            Err(e) => facts.error = Some(e.to_string()),
        }
        facts
    }

    pub(super) fn default_route_interfaces(v4: bool) -> io::Result<Vec<u32>> {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let msgs = exchange(&netlink::dump_request(seq, Dump::Routes { v4 }), true)?;
        let mut routes: Vec<(u32, u32)> = msgs
            .into_iter()
            .filter_map(|m| match m {
                Message::Route(r)
                    if r.dst_len == 0
                        && r.table == netlink::RT_TABLE_MAIN
                        && r.kind == netlink::RTN_UNICAST =>
                {
                    Some((r.priority.unwrap_or(0), r.oif?))
                }
                _ => None,
            })
            .collect();
        routes.sort_unstable();
        let mut out: Vec<u32> = Vec::new();
        for (_, oif) in routes {
            if !out.contains(&oif) {
                out.push(oif);
            }
        }
        Ok(out)
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;
    use std::net::IpAddr;

    use probes::path::route::{Interface, RouteFacts};

    pub(super) fn interfaces() -> io::Result<Vec<Interface>> {
        Ok(Vec::new())
    }

    pub(super) fn lookup(dest: IpAddr, _oif: Option<u32>, _ifaces: &[Interface]) -> RouteFacts {
        super::by_socket(dest)
    }

    pub(super) fn default_route_interfaces(_v4: bool) -> io::Result<Vec<u32>> {
        Ok(Vec::new())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_found_and_routed() {
        let ifaces = interfaces().unwrap();
        let lo = ifaces.iter().find(|i| i.name == "lo").expect("lo");
        assert!(
            lo.addresses.contains(&"127.0.0.1".parse().unwrap()),
            "{lo:?}"
        );
        let r = lookup("127.0.0.1".parse().unwrap(), None, &ifaces);
        assert_eq!(
            r.interface.as_ref().map(|i| i.name.as_str()),
            Some("lo"),
            "{r:?}"
        );
        assert_eq!(r.source, Some("127.0.0.1".parse().unwrap()));
    }
}
