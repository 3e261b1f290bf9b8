//! The network vocabulary every part of the crate shares: the IP family and the transport.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::stun::attr;

/// IPv4 or IPv6. NAT behaviour, control-plane paths, TURN relay addresses and firewall rules
/// are all judged per family.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// IPv4 (A records; what a TURN server allocates when the Allocate names no family,
    /// RFC 8656 §7.2 step 7).
    Ipv4,
    /// IPv6 (AAAA records).
    Ipv6,
}

impl Family {
    /// Both families, IPv4 first.
    pub const ALL: [Family; 2] = [Family::Ipv4, Family::Ipv6];

    /// The family of an address. An IPv4-mapped IPv6 address is IPv6: that is how it travels
    /// on the wire.
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }

    /// The family of a socket address (see [`Family::of`]).
    pub fn of_socket(addr: &SocketAddr) -> Family {
        Family::of(addr.ip())
    }

    /// The family byte of STUN address attributes (RFC 8489 §14.1: 0x01 IPv4, 0x02 IPv6),
    /// also the value of REQUESTED-ADDRESS-FAMILY (RFC 8656 §18.6).
    pub fn stun_code(self) -> u8 {
        match self {
            Family::Ipv4 => attr::FAMILY_IPV4,
            Family::Ipv6 => attr::FAMILY_IPV6,
        }
    }

    /// Whether `ip` is of this family.
    pub fn contains(self, ip: IpAddr) -> bool {
        Family::of(ip) == self
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Ipv4 => "IPv4",
            Family::Ipv6 => "IPv6",
        })
    }
}

/// How a probe reaches its peer: the transport under the protocol (STUN, TURN, TLS-carried
/// gRPC and WebSocket, the relay's QUIC).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// UDP datagrams.
    Udp,
    /// A TCP byte stream (STUN over TCP, RFC 8489 §6.2.2; TURN over TCP, RFC 8656 §3.1 and
    /// RFC 6062).
    Tcp,
    /// TLS over TCP (`turns:`, RFC 8656 §3.1; the control plane and the relay's WebSocket).
    Tls,
    /// QUIC over UDP (the NetBird relay's second transport). TURN has no QUIC transport.
    Quic,
}

impl Transport {
    /// Whether messages travel on a byte stream (TCP, TLS): one transmission per request
    /// (RFC 8489 §6.2.2) and 4-byte-aligned ChannelData (RFC 8656 §12.5).
    pub fn is_stream(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Tls)
    }

    /// Lower-case name, as in JSON and URIs (`?transport=udp`, RFC 7065 §3.1).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Quic => "quic",
        }
    }

    /// The name people read: "UDP", "TCP", "TLS", "QUIC".
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Quic => "QUIC",
        }
    }
}

impl fmt::Display for Transport {
    /// Lower case (`udp`, `tcp`, `tls`, `quic`), the form flags and JSON use; [`Transport::name`]
    /// is the upper-case one for prose.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An inclusive port range (a single port has `start == end`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    /// First port.
    pub start: u16,
    /// Last port.
    pub end: u16,
}

impl PortRange {
    /// One port.
    pub const fn single(p: u16) -> PortRange {
        PortRange { start: p, end: p }
    }

    /// Parse `P` or `A-B` (1..=65535, A <= B).
    pub fn parse(s: &str) -> Result<PortRange, String> {
        let port = |p: &str| match p.trim().parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("{p:?} is not a port (1-65535)")),
            Ok(n) => Ok(n),
        };
        let r = match s.split_once('-') {
            Some((a, b)) => PortRange {
                start: port(a)?,
                end: port(b)?,
            },
            None => PortRange::single(port(s)?),
        };
        if r.start > r.end {
            return Err(format!("{s:?}: range starts after it ends"));
        }
        Ok(r)
    }

    /// Number of ports.
    pub fn count(&self) -> u32 {
        u32::from(self.end) - u32::from(self.start) + 1
    }

    /// Whether it is one port.
    pub fn is_single(&self) -> bool {
        self.start == self.end
    }

    /// The ports.
    pub fn ports(&self) -> impl Iterator<Item = u16> {
        self.start..=self.end
    }
}

impl fmt::Display for PortRange {
    /// `443` or `443-65535`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

impl serde::Serialize for PortRange {
    /// As its text, `"443"` or `"443-65535"`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_of_addresses_and_its_words() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:9".parse().unwrap();
        assert_eq!(Family::of(v4), Family::Ipv4);
        assert_eq!(Family::of_socket(&mapped), Family::Ipv6);
        assert!(Family::Ipv4.contains(v4));
        assert_eq!(Family::Ipv4.stun_code(), 0x01);
        assert_eq!(Family::Ipv6.stun_code(), 0x02);
        assert_eq!(Family::Ipv4.to_string(), "IPv4");
        assert_eq!(Family::Ipv6.to_string(), "IPv6");
        assert_eq!(serde_json::to_string(&Family::Ipv6).unwrap(), "\"ipv6\"");
        assert_eq!(Family::ALL, [Family::Ipv4, Family::Ipv6]);
    }

    #[test]
    fn transport_words_and_streams() {
        let all = [
            Transport::Udp,
            Transport::Tcp,
            Transport::Tls,
            Transport::Quic,
        ];
        let shown: Vec<String> = all.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["udp", "tcp", "tls", "quic"]);
        let names: Vec<&str> = all.iter().map(|t| t.name()).collect();
        assert_eq!(names, ["UDP", "TCP", "TLS", "QUIC"]);
        let streams: Vec<bool> = all.iter().map(|t| t.is_stream()).collect();
        assert_eq!(streams, [false, true, true, false]);
        for t in all {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
            assert_eq!(serde_json::from_str::<Transport>(&json).unwrap(), t);
        }
    }
}
