//! The host's own interface addresses, read with getifaddrs(3): the probe server refuses to
//! point a check at them.

use std::net::{IpAddr, Ipv4Addr};

/// One address of a local interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterfaceAddress {
    /// The address.
    pub address: IpAddr,
    /// For IPv4 networks of /30 or wider, the directed broadcast address (address | !mask).
    pub broadcast: Option<Ipv4Addr>,
}

/// Every address of every interface, up or not. Not supported (an empty list) off Unix.
pub fn local_addresses() -> std::io::Result<Vec<InterfaceAddress>> {
    #[cfg(unix)]
    {
        unix::read()
    }
    #[cfg(not(unix))]
    {
        Ok(Vec::new())
    }
}

/// An IPv4 address and netmask's directed broadcast (none for /31 and /32, RFC 3021).
#[cfg(any(unix, test))]
fn broadcast(address: Ipv4Addr, mask: Ipv4Addr) -> Option<Ipv4Addr> {
    let (a, m) = (u32::from(address), u32::from(mask));
    (m.count_ones() <= 30 && m.leading_ones() == m.count_ones()).then(|| Ipv4Addr::from(a | !m))
}

#[cfg(unix)]
mod unix {
    use super::*;

    /// The IP address in a `sockaddr`, if it is IPv4 or IPv6.
    ///
    /// # Safety
    /// `sa` is null or points to a live `sockaddr` whose family says which struct it is (as
    /// getifaddrs(3) fills them).
    unsafe fn ip_of(sa: *const libc::sockaddr) -> Option<IpAddr> {
        if sa.is_null() {
            return None;
        }
        // SAFETY: non-null and live per the contract; sa_family is in every sockaddr.
        let family = i32::from(unsafe { (*sa).sa_family });
        match family {
            libc::AF_INET => {
                // SAFETY: the family says this is a sockaddr_in.
                let sin = unsafe { &*sa.cast::<libc::sockaddr_in>() };
                Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says this is a sockaddr_in6.
                let sin6 = unsafe { &*sa.cast::<libc::sockaddr_in6>() };
                Some(IpAddr::V6(std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
            }
            _ => None,
        }
    }

    pub(super) fn read() -> std::io::Result<Vec<InterfaceAddress>> {
        let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
        // SAFETY: a valid out-pointer; on success the list is freed below.
        if unsafe { libc::getifaddrs(&mut head) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut out = Vec::new();
        let mut cur = head;
        while !cur.is_null() {
            // SAFETY: a node of the list getifaddrs returned, not yet freed.
            let ifa = unsafe { &*cur };
            // SAFETY: getifaddrs' addresses are null or live sockaddrs of their family.
            if let Some(address) = unsafe { ip_of(ifa.ifa_addr) } {
                let broadcast = match address {
                    // SAFETY: as above.
                    IpAddr::V4(a) => match unsafe { ip_of(ifa.ifa_netmask) } {
                        Some(IpAddr::V4(mask)) => broadcast(a, mask),
                        _ => None,
                    },
                    IpAddr::V6(_) => None,
                };
                out.push(InterfaceAddress { address, broadcast });
            }
            cur = ifa.ifa_next;
        }
        // SAFETY: the list getifaddrs returned, freed once; no reference into it survives.
        unsafe { libc::freeifaddrs(head) };
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn broadcasts_of_networks() {
        let b = |a: &str, m: &str| broadcast(a.parse().unwrap(), m.parse().unwrap());
        assert_eq!(
            b("192.0.2.10", "255.255.255.0"),
            Some("192.0.2.255".parse().unwrap())
        );
        assert_eq!(
            b("10.1.2.3", "255.0.0.0"),
            Some("10.255.255.255".parse().unwrap())
        );
        assert_eq!(
            b("192.0.2.1", "255.255.255.252"),
            Some("192.0.2.3".parse().unwrap())
        );
        assert_eq!(b("192.0.2.1", "255.255.255.254"), None);
        assert_eq!(b("192.0.2.1", "255.255.255.255"), None);
        // A netmask with holes is no netmask.
        assert_eq!(b("192.0.2.1", "255.0.255.0"), None);
    }

    #[test]
    fn loopback_is_among_the_local_addresses() {
        let all = local_addresses().unwrap();
        if cfg!(target_os = "linux") {
            assert!(
                all.iter()
                    .any(|a| a.address == IpAddr::V4(Ipv4Addr::LOCALHOST)),
                "{all:?}"
            );
        }
    }
}
