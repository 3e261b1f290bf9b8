//! The candidate peers: addresses a TURN server must not relay to, by what they reach
//! ([`Category`]) and how they are written on the wire ([`Encoding`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The port put in XOR-PEER-ADDRESS (permissions ignore it, RFC 8656 §9; ChannelBind binds it).
/// 9 is "discard": nothing is ever sent there anyway.
pub const PEER_PORT: u16 = 9;

/// What a candidate peer address reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// The server's own loopback (127.0.0.0/8, ::1), including the unspecified address, which
    /// the kernel delivers to the local host (coturn CVE-2020-26262).
    Loopback,
    /// Cloud instance metadata (169.254.169.254, fd00:ec2::254): credentials of the host.
    CloudMetadata,
    /// RFC 1918 private IPv4 and RFC 4193 unique-local IPv6: the network behind the server.
    Private,
    /// RFC 6598 shared address space (100.64.0.0/10): carrier NAT, and NetBird's overlay.
    SharedCgnat,
    /// Link-local (169.254.0.0/16, fe80::/10).
    LinkLocal,
    /// Multicast (224.0.0.0/4, ff00::/8).
    Multicast,
    /// The server's own relayed address: relaying to itself (loops, amplification).
    OwnRelay,
}

/// How the candidate's address is written on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// The address in its own family.
    Plain,
    /// The unspecified address of its family (0.0.0.0, ::).
    Unspecified,
    /// An IPv4 address as IPv4-mapped IPv6 (::ffff:a.b.c.d, RFC 4291 §2.5.5.2).
    Ipv4Mapped,
    /// An IPv4 address as deprecated IPv4-compatible IPv6 (::a.b.c.d, RFC 4291 §2.5.5.1).
    Ipv4Compatible,
    /// An IPv4 address behind the NAT64 well-known prefix (64:ff9b::/96, RFC 6052).
    Nat64,
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Category::Loopback => "loopback",
            Category::CloudMetadata => "cloud metadata",
            Category::Private => "private",
            Category::SharedCgnat => "shared (CGNAT)",
            Category::LinkLocal => "link-local",
            Category::Multicast => "multicast",
            Category::OwnRelay => "own relay address",
        })
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Encoding::Plain => "plain",
            Encoding::Unspecified => "unspecified address",
            Encoding::Ipv4Mapped => "IPv4-mapped IPv6",
            Encoding::Ipv4Compatible => "IPv4-compatible IPv6",
            Encoding::Nat64 => "NAT64 prefix",
        })
    }
}

/// One peer address the audit asks for.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Candidate {
    /// The address put in XOR-PEER-ADDRESS.
    pub peer: SocketAddr,
    /// What it reaches if relayed.
    pub category: Category,
    /// How it is encoded.
    pub encoding: Encoding,
    /// A known server bug this form bypassed, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bypass: Option<&'static str>,
}

fn cand(
    ip: IpAddr,
    category: Category,
    encoding: Encoding,
    bypass: Option<&'static str>,
) -> Candidate {
    Candidate {
        peer: SocketAddr::new(ip, PEER_PORT),
        category,
        encoding,
        bypass,
    }
}

const CVE_2020_26262: &str = "CVE-2020-26262";
const CVE_2026_27624: &str = "CVE-2026-27624";

/// The fixed candidate list (the server's relayed address is added once known).
pub fn candidates() -> Vec<Candidate> {
    use Category::*;
    use Encoding::*;
    let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
    let mapped = |a, b, c, d| IpAddr::V6(Ipv4Addr::new(a, b, c, d).to_ipv6_mapped());
    let compat = |a, b, c, d| IpAddr::V6(Ipv4Addr::new(a, b, c, d).to_ipv6_compatible());
    let v6 = |s: [u16; 8]| {
        IpAddr::V6(Ipv6Addr::new(
            s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7],
        ))
    };
    vec![
        cand(v4(127, 0, 0, 1), Loopback, Plain, None),
        cand(v4(127, 1, 2, 3), Loopback, Plain, None),
        cand(v4(0, 0, 0, 0), Loopback, Unspecified, Some(CVE_2020_26262)),
        cand(
            v6([0, 0, 0, 0, 0, 0, 0, 1]),
            Loopback,
            Plain,
            Some(CVE_2020_26262),
        ),
        cand(v6([0; 8]), Loopback, Unspecified, Some(CVE_2020_26262)),
        cand(
            mapped(127, 0, 0, 1),
            Loopback,
            Ipv4Mapped,
            Some(CVE_2026_27624),
        ),
        cand(
            mapped(0, 0, 0, 0),
            Loopback,
            Ipv4Mapped,
            Some(CVE_2026_27624),
        ),
        cand(compat(127, 0, 0, 1), Loopback, Ipv4Compatible, None),
        cand(
            v6([0x64, 0xff9b, 0, 0, 0, 0, 0x7f00, 1]),
            Loopback,
            Nat64,
            None,
        ),
        cand(v4(169, 254, 169, 254), CloudMetadata, Plain, None),
        cand(
            mapped(169, 254, 169, 254),
            CloudMetadata,
            Ipv4Mapped,
            Some(CVE_2026_27624),
        ),
        cand(
            v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254]),
            CloudMetadata,
            Plain,
            None,
        ),
        cand(v4(10, 0, 0, 1), Private, Plain, None),
        cand(v4(172, 16, 0, 1), Private, Plain, None),
        cand(v4(192, 168, 0, 1), Private, Plain, None),
        cand(
            mapped(10, 0, 0, 1),
            Private,
            Ipv4Mapped,
            Some(CVE_2026_27624),
        ),
        cand(v6([0xfd00, 0, 0, 0, 0, 0, 0, 1]), Private, Plain, None),
        cand(v4(100, 64, 0, 1), SharedCgnat, Plain, None),
        cand(v4(169, 254, 0, 1), LinkLocal, Plain, None),
        cand(v6([0xfe80, 0, 0, 0, 0, 0, 0, 1]), LinkLocal, Plain, None),
        cand(v4(224, 0, 0, 1), Multicast, Plain, None),
        cand(v6([0xff02, 0, 0, 0, 0, 0, 0, 1]), Multicast, Plain, None),
    ]
}

/// Candidates also tried with ChannelBind on the first allocation (indices into
/// [`candidates`]): plain loopback, the IPv4-mapped loopback and the metadata address.
pub(crate) const CHANNEL_CANDIDATES: [usize; 3] = [0, 5, 9];

/// Candidates tried with ChannelBind on the IPv6 allocation: the IPv4-mapped loopback.
pub(crate) const IPV6_CHANNEL_CANDIDATES: [usize; 1] = [5];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_and_encodings_read_as_words() {
        assert_eq!(Category::CloudMetadata.to_string(), "cloud metadata");
        assert_eq!(Category::SharedCgnat.to_string(), "shared (CGNAT)");
        assert_eq!(Encoding::Ipv4Mapped.to_string(), "IPv4-mapped IPv6");
        assert_eq!(Encoding::Nat64.to_string(), "NAT64 prefix");
    }

    #[test]
    fn channel_candidates_are_the_ones_documented() {
        let c = candidates();
        let ips: Vec<String> = CHANNEL_CANDIDATES
            .iter()
            .map(|&i| c[i].peer.ip().to_string())
            .collect();
        assert_eq!(ips, ["127.0.0.1", "::ffff:127.0.0.1", "169.254.169.254"]);
        let ips: Vec<String> = IPV6_CHANNEL_CANDIDATES
            .iter()
            .map(|&i| c[i].peer.ip().to_string())
            .collect();
        assert_eq!(ips, ["::ffff:127.0.0.1"]);
    }
}
