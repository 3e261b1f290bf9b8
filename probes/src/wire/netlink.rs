//! rtnetlink (Linux, RFC 3549 and the kernel's `rtnetlink(7)` ABI): the requests stunmap makes
//! to learn which way a destination is routed — a route lookup (`RTM_GETROUTE` for one
//! destination, optionally through a given output interface: `ip route get DEST oif DEV`) and
//! dumps of the interfaces (`RTM_GETLINK`), their addresses (`RTM_GETADDR`) and the routing
//! table (`RTM_GETROUTE` with `NLM_F_DUMP`) — and the kernel's answers.
//!
//! Netlink integers are in the host's byte order (the kernel and the reader are the same
//! machine), so this codec reads and writes native-endian fields. Every answer passes the
//! checked reader; lengths that do not fit the buffer are errors, never panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Layer, WireError};

/// `struct nlmsghdr`: 16 bytes.
pub const HEADER_LEN: usize = 16;

/// `NLMSG_ERROR`: an error (or, with code 0, an acknowledgement).
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: the end of a dump.
pub const NLMSG_DONE: u16 = 3;
/// `RTM_NEWLINK`: an interface.
pub const RTM_NEWLINK: u16 = 16;
/// `RTM_GETLINK`.
pub const RTM_GETLINK: u16 = 18;
/// `RTM_NEWADDR`: an interface address.
pub const RTM_NEWADDR: u16 = 20;
/// `RTM_GETADDR`.
pub const RTM_GETADDR: u16 = 22;
/// `RTM_NEWROUTE`: a route.
pub const RTM_NEWROUTE: u16 = 24;
/// `RTM_GETROUTE`.
pub const RTM_GETROUTE: u16 = 26;

/// `NLM_F_REQUEST`.
pub const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
pub const NLM_F_DUMP: u16 = 0x300;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_PREFSRC: u16 = 7;
const RTA_TABLE: u16 = 15;

const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;

/// `RTM_F_LOOKUP_TABLE`: ask the kernel to report the table a lookup used.
const RTM_F_LOOKUP_TABLE: u32 = 0x1000;

/// The main routing table, `RT_TABLE_MAIN`.
pub const RT_TABLE_MAIN: u32 = 254;
/// A unicast route, `RTN_UNICAST`.
pub const RTN_UNICAST: u8 = 1;

/// `ARPHRD_NONE`: a link without a link-layer header (tun devices, WireGuard).
pub const ARPHRD_NONE: u16 = 0xfffe;
/// `ARPHRD_LOOPBACK`.
pub const ARPHRD_LOOPBACK: u16 = 772;
/// `IFF_UP`.
pub const IFF_UP: u32 = 0x1;
/// `IFF_LOOPBACK`.
pub const IFF_LOOPBACK: u32 = 0x8;
/// `IFF_POINTOPOINT`.
pub const IFF_POINTOPOINT: u32 = 0x10;

fn malformed(what: &'static str) -> WireError {
    WireError::Malformed {
        layer: Layer::Netlink,
        what,
    }
}

fn header(buf: &mut Vec<u8>, kind: u16, flags: u16, seq: u32) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    start
}

fn finish(buf: &mut [u8], start: usize) {
    let len = (buf.len() - start) as u32;
    if let Some(slot) = buf.get_mut(start..start + 4) {
        slot.copy_from_slice(&len.to_ne_bytes());
    }
}

fn attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = (4 + value.len()) as u16;
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// `struct rtmsg` for `family` with a destination prefix length.
fn rtmsg(buf: &mut Vec<u8>, family: u8, dst_len: u8, flags: u32) {
    // family, dst_len, src_len, tos, table, protocol, scope, type, flags
    buf.extend_from_slice(&[family, dst_len, 0, 0, 0, 0, 0, 0]);
    buf.extend_from_slice(&flags.to_ne_bytes());
}

/// A route lookup for `dest` (`ip route get DEST [oif IFINDEX]`): the kernel answers with the
/// one route it would use, through the policy rules, with the output interface and preferred
/// source.
pub fn route_get_request(seq: u32, dest: IpAddr, oif: Option<u32>) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64);
    let start = header(&mut buf, RTM_GETROUTE, NLM_F_REQUEST, seq);
    let (family, len) = match dest {
        IpAddr::V4(_) => (AF_INET, 32),
        IpAddr::V6(_) => (AF_INET6, 128),
    };
    rtmsg(&mut buf, family, len, RTM_F_LOOKUP_TABLE);
    attr(&mut buf, RTA_DST, &ip_bytes(&dest));
    if let Some(i) = oif {
        attr(&mut buf, RTA_OIF, &i.to_ne_bytes());
    }
    finish(&mut buf, start);
    buf
}

/// What a dump request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dump {
    /// Every interface.
    Links,
    /// Every interface address (both families).
    Addresses,
    /// Every route of one family (`v4`: IPv4).
    Routes {
        /// IPv4 (else IPv6).
        v4: bool,
    },
}

/// A dump request.
pub fn dump_request(seq: u32, what: Dump) -> Vec<u8> {
    let mut buf = Vec::with_capacity(40);
    let flags = NLM_F_REQUEST | NLM_F_DUMP;
    let start = match what {
        Dump::Links => {
            let s = header(&mut buf, RTM_GETLINK, flags, seq);
            // struct ifinfomsg: family, pad, type, index, flags, change
            buf.extend_from_slice(&[0u8; 16]);
            s
        }
        Dump::Addresses => {
            let s = header(&mut buf, RTM_GETADDR, flags, seq);
            // struct ifaddrmsg: family, prefixlen, flags, scope, index
            buf.extend_from_slice(&[0u8; 8]);
            s
        }
        Dump::Routes { v4 } => {
            let s = header(&mut buf, RTM_GETROUTE, flags, seq);
            rtmsg(&mut buf, if v4 { AF_INET } else { AF_INET6 }, 0, 0);
            s
        }
    };
    finish(&mut buf, start);
    buf
}

/// A route (`RTM_NEWROUTE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteMsg {
    /// IPv4 or IPv6.
    pub v4: bool,
    /// Destination prefix length (0: a default route).
    pub dst_len: u8,
    /// The routing table (`RTA_TABLE`, else the header's byte).
    pub table: u32,
    /// The route type (`RTN_UNICAST` = 1, local, blackhole, unreachable, …).
    pub kind: u8,
    /// Destination prefix.
    pub dst: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// Next hop.
    pub gateway: Option<IpAddr>,
    /// Preferred source address.
    pub prefsrc: Option<IpAddr>,
    /// Metric.
    pub priority: Option<u32>,
}

/// An interface (`RTM_NEWLINK`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkMsg {
    /// Interface index.
    pub index: u32,
    /// Link type (`ARPHRD_*`).
    pub link_type: u16,
    /// Flags (`IFF_*`).
    pub flags: u32,
    /// Name.
    pub name: Option<String>,
    /// MTU.
    pub mtu: Option<u32>,
}

/// An interface address (`RTM_NEWADDR`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrMsg {
    /// Interface index.
    pub index: u32,
    /// Prefix length.
    pub prefix_len: u8,
    /// The address (`IFA_LOCAL`, else `IFA_ADDRESS`).
    pub address: Option<IpAddr>,
}

/// One message of an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A route.
    Route(RouteMsg),
    /// An interface.
    Link(LinkMsg),
    /// An interface address.
    Address(AddrMsg),
    /// `NLMSG_ERROR`: a negative errno (0 is an acknowledgement).
    Error {
        /// The errno, negated as the kernel sends it.
        code: i32,
    },
    /// `NLMSG_DONE`.
    Done,
    /// Anything else (the type).
    Other(u16),
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// `bytes` end before what the message says they hold.
fn truncated(bytes: &[u8]) -> WireError {
    WireError::Truncated {
        layer: Layer::Netlink,
        len: bytes.len(),
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The attributes after a fixed header: `(type, value)` pairs; a length that does not fit is
/// an error.
fn attributes(mut b: &[u8]) -> Result<Vec<(u16, &[u8])>, WireError> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = usize::from(u16_at(b, 0).ok_or_else(|| malformed("attribute"))?);
        let kind = u16_at(b, 2).ok_or_else(|| malformed("attribute"))? & 0x3fff;
        if len < 4 || len > b.len() {
            return Err(WireError::Length {
                layer: Layer::Netlink,
                len,
            });
        }
        out.push((kind, b.get(4..len).unwrap_or(&[])));
        let next = len.next_multiple_of(4).min(b.len());
        b = b.get(next..).unwrap_or(&[]);
    }
    Ok(out)
}

fn ip_of(v: &[u8]) -> Option<IpAddr> {
    match v.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(v).ok()?))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(v).ok()?))),
        _ => None,
    }
}

fn route(body: &[u8]) -> Result<RouteMsg, WireError> {
    let [family, dst_len, _src, _tos, table, _proto, _scope, kind, ..] = *body else {
        return Err(truncated(body));
    };
    let mut r = RouteMsg {
        v4: family == AF_INET,
        dst_len,
        table: u32::from(table),
        kind,
        dst: None,
        oif: None,
        gateway: None,
        prefsrc: None,
        priority: None,
    };
    for (k, v) in attributes(body.get(12..).unwrap_or(&[]))? {
        match k {
            RTA_DST => r.dst = ip_of(v),
            RTA_OIF => r.oif = u32_at(v, 0),
            RTA_GATEWAY => r.gateway = ip_of(v),
            RTA_PREFSRC => r.prefsrc = ip_of(v),
            RTA_PRIORITY => r.priority = u32_at(v, 0),
            RTA_TABLE => r.table = u32_at(v, 0).unwrap_or(r.table),
            _ => {}
        }
    }
    Ok(r)
}

fn link(body: &[u8]) -> Result<LinkMsg, WireError> {
    if body.len() < 16 {
        return Err(truncated(body));
    }
    let mut l = LinkMsg {
        index: u32_at(body, 4).unwrap_or(0),
        link_type: u16_at(body, 2).unwrap_or(0),
        flags: u32_at(body, 8).unwrap_or(0),
        name: None,
        mtu: None,
    };
    for (k, v) in attributes(body.get(16..).unwrap_or(&[]))? {
        match k {
            IFLA_IFNAME => {
                let v = v.split(|c| *c == 0).next().unwrap_or(&[]);
                l.name = Some(String::from_utf8_lossy(v).into_owned());
            }
            IFLA_MTU => l.mtu = u32_at(v, 0),
            _ => {}
        }
    }
    Ok(l)
}

fn address(body: &[u8]) -> Result<AddrMsg, WireError> {
    let [_family, prefix_len, _flags, _scope, ..] = *body else {
        return Err(truncated(body));
    };
    let mut a = AddrMsg {
        index: u32_at(body, 4).ok_or(truncated(body))?,
        prefix_len,
        address: None,
    };
    let mut addr = None;
    let mut local = None;
    for (k, v) in attributes(body.get(8..).unwrap_or(&[]))? {
        match k {
            IFA_ADDRESS => addr = ip_of(v),
            IFA_LOCAL => local = ip_of(v),
            _ => {}
        }
    }
    a.address = local.or(addr);
    Ok(a)
}

/// Read every message in one datagram from the kernel.
pub fn parse(mut buf: &[u8]) -> Result<Vec<Message>, WireError> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let len = u32_at(buf, 0).ok_or(truncated(buf))? as usize;
        if len < HEADER_LEN || len > buf.len() {
            return Err(WireError::Length {
                layer: Layer::Netlink,
                len,
            });
        }
        let kind = u16_at(buf, 4).unwrap_or(0);
        let body = buf.get(HEADER_LEN..len).unwrap_or(&[]);
        out.push(match kind {
            NLMSG_DONE => Message::Done,
            NLMSG_ERROR => Message::Error {
                code: u32_at(body, 0).map(|c| c as i32).ok_or(truncated(body))?,
            },
            RTM_NEWROUTE => Message::Route(route(body)?),
            RTM_NEWLINK => Message::Link(link(body)?),
            RTM_NEWADDR => Message::Address(address(body)?),
            other => Message::Other(other),
        });
        let next = len.next_multiple_of(4).min(buf.len());
        buf = buf.get(next..).unwrap_or(&[]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kernel answer: header, fixed part, attributes.
    fn message(kind: u16, fixed: &[u8], attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut b = Vec::new();
        let start = header(&mut b, kind, 0, 7);
        b.extend_from_slice(fixed);
        for (k, v) in attrs {
            attr(&mut b, *k, v);
        }
        finish(&mut b, start);
        b
    }

    #[test]
    fn route_get_request_layout() {
        let r = route_get_request(9, "198.18.0.10".parse().unwrap(), Some(3));
        // header 16 + rtmsg 12 + RTA_DST 8 + RTA_OIF 8
        assert_eq!(r.len(), 44);
        assert_eq!(u32_at(&r, 0), Some(44));
        assert_eq!(u16_at(&r, 4), Some(RTM_GETROUTE));
        assert_eq!(u16_at(&r, 6), Some(NLM_F_REQUEST));
        assert_eq!(u32_at(&r, 8), Some(9));
        assert_eq!(&r[16..18], &[AF_INET, 32]);
        assert_eq!(u16_at(&r, 28), Some(8));
        assert_eq!(u16_at(&r, 30), Some(RTA_DST));
        assert_eq!(&r[32..36], &[198, 18, 0, 10]);
        assert_eq!(u16_at(&r, 38), Some(RTA_OIF));
        assert_eq!(u32_at(&r, 40), Some(3));
        let v6 = route_get_request(1, "2001:db8::1".parse().unwrap(), None);
        assert_eq!(v6.len(), 16 + 12 + 20);
        assert_eq!(&v6[16..18], &[AF_INET6, 128]);
        let d = dump_request(2, Dump::Links);
        assert_eq!(
            (d.len(), u16_at(&d, 6)),
            (32, Some(NLM_F_REQUEST | NLM_F_DUMP))
        );
    }

    #[test]
    fn answers_parse() {
        let mut rt = vec![AF_INET, 32, 0, 0, 254, 0, 0, RTN_UNICAST];
        rt.extend_from_slice(&0u32.to_ne_bytes());
        let route_msg = message(
            RTM_NEWROUTE,
            &rt,
            &[
                (RTA_TABLE, 254u32.to_ne_bytes().to_vec()),
                (RTA_DST, vec![198, 18, 0, 10]),
                (RTA_OIF, 5u32.to_ne_bytes().to_vec()),
                (RTA_PREFSRC, vec![10, 99, 0, 1]),
                (RTA_GATEWAY, vec![100, 64, 0, 1]),
            ],
        );
        let mut ifi = vec![0u8, 0];
        ifi.extend_from_slice(&ARPHRD_NONE.to_ne_bytes());
        ifi.extend_from_slice(&5u32.to_ne_bytes());
        ifi.extend_from_slice(&(IFF_UP | IFF_POINTOPOINT).to_ne_bytes());
        ifi.extend_from_slice(&0u32.to_ne_bytes());
        let link_msg = message(
            RTM_NEWLINK,
            &ifi,
            &[
                (IFLA_IFNAME, b"wt0\0".to_vec()),
                (IFLA_MTU, 1280u32.to_ne_bytes().to_vec()),
            ],
        );
        let mut ifa = vec![AF_INET, 24, 0, 0];
        ifa.extend_from_slice(&2u32.to_ne_bytes());
        let addr_msg = message(RTM_NEWADDR, &ifa, &[(IFA_LOCAL, vec![100, 64, 0, 2])]);
        let done = message(NLMSG_DONE, &0i32.to_ne_bytes(), &[]);
        let mut all = route_msg.clone();
        all.extend_from_slice(&link_msg);
        all.extend_from_slice(&addr_msg);
        all.extend_from_slice(&done);
        let m = parse(&all).unwrap();
        assert_eq!(m.len(), 4);
        let Message::Route(r) = &m[0] else { panic!() };
        assert_eq!(r.oif, Some(5));
        assert_eq!(r.prefsrc, Some("10.99.0.1".parse().unwrap()));
        assert_eq!(r.gateway, Some("100.64.0.1".parse().unwrap()));
        assert_eq!((r.table, r.dst_len, r.v4), (254, 32, true));
        let Message::Link(l) = &m[1] else { panic!() };
        assert_eq!(l.name.as_deref(), Some("wt0"));
        assert_eq!((l.index, l.mtu, l.link_type), (5, Some(1280), ARPHRD_NONE));
        let Message::Address(a) = &m[2] else { panic!() };
        assert_eq!(
            (a.index, a.address),
            (2, Some("100.64.0.2".parse().unwrap()))
        );
        assert_eq!(m[3], Message::Done);
        let err = message(NLMSG_ERROR, &(-101i32).to_ne_bytes(), &[]);
        assert_eq!(parse(&err).unwrap(), vec![Message::Error { code: -101 }]);
    }

    #[test]
    fn every_cut_and_bad_length_is_an_error_not_a_panic() {
        let mut rt = vec![AF_INET, 32, 0, 0, 254, 0, 0, RTN_UNICAST];
        rt.extend_from_slice(&0u32.to_ne_bytes());
        let msg = message(RTM_NEWROUTE, &rt, &[(RTA_OIF, 5u32.to_ne_bytes().to_vec())]);
        for cut in 1..msg.len() {
            assert!(parse(&msg[..cut]).is_err(), "cut {cut}");
        }
        let mut bad = msg.clone();
        bad[28] = 200; // the attribute claims more bytes than there are
        assert!(parse(&bad).is_err());
        let mut huge = msg;
        huge[0] = 0xff;
        assert!(parse(&huge).is_err());
        assert_eq!(parse(&[]).unwrap(), vec![]);
    }
}
