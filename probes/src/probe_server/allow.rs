//! Which `target` addresses a requester may point a check at.
//!
//! A `/probe?target=IP` makes the probe host send STUN, TURN, TCP and TLS to that address,
//! and the per-port metrics tell what answered: without a rule the probe server is a scan
//! oracle for whatever the probe host can reach, its own loopback services included. The
//! rule is a prefix table, decided like a routing table: **the most specific entry that
//! contains the address decides**, and at equal length an operator's entry beats a built-in
//! one (an operator's deny beats an operator's allow).
//!
//! - Built-in denies: loopback (127.0.0.0/8, ::1), unspecified and "this network" (0.0.0.0/8,
//!   ::), IPv4-compatible IPv6 (::/96, deprecated by RFC 4291 §2.5.5.1), link-local
//!   (169.254.0.0/16, fe80::/10), multicast (224.0.0.0/4, ff00::/8), the limited broadcast
//!   255.255.255.255 and the directed broadcast of every local IPv4 network, and every
//!   address of the probe host itself (each as a /32 or /128; one inside a class above, such
//!   as 127.0.0.1, is left to that class).
//! - Operator allows (`--probe-allow CIDR`): without any, everything outside the built-in
//!   denies is allowed; with some, only addresses inside one of them. `--probe-allow
//!   127.0.0.0/8` allows loopback (same length as the built-in deny); `--probe-allow
//!   0.0.0.0/0` does not (the built-in /8 is more specific).
//! - Operator denies (`--probe-deny CIDR`).
//!
//! IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) reach the IPv4 address they map, so they
//! are decided as that IPv4 address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Why an address is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DenyReason {
    /// 127.0.0.0/8 or ::1: the probe host's own loopback services.
    Loopback,
    /// 0.0.0.0/8 or ::, which reach the probe host itself.
    Unspecified,
    /// Deprecated IPv4-compatible IPv6 (::/96).
    Reserved,
    /// 169.254.0.0/16 or fe80::/10.
    LinkLocal,
    /// 224.0.0.0/4 or ff00::/8.
    Multicast,
    /// 255.255.255.255 or a local network's directed broadcast.
    Broadcast,
    /// An address of the probe host.
    OwnAddress,
    /// Inside an operator's `--probe-deny`.
    Denied,
    /// Outside every `--probe-allow`.
    NotAllowed,
}

impl DenyReason {
    /// A short name (a metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::Loopback => "loopback",
            DenyReason::Unspecified => "unspecified",
            DenyReason::Reserved => "reserved",
            DenyReason::LinkLocal => "link-local",
            DenyReason::Multicast => "multicast",
            DenyReason::Broadcast => "broadcast",
            DenyReason::OwnAddress => "own-address",
            DenyReason::Denied => "denied",
            DenyReason::NotAllowed => "not-allowed",
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DenyReason::Loopback => "a loopback address",
            DenyReason::Unspecified => "an unspecified address",
            DenyReason::Reserved => "an IPv4-compatible IPv6 address",
            DenyReason::LinkLocal => "a link-local address",
            DenyReason::Multicast => "a multicast address",
            DenyReason::Broadcast => "a broadcast address",
            DenyReason::OwnAddress => "an address of this host",
            DenyReason::Denied => "inside --probe-deny",
            DenyReason::NotAllowed => "outside every --probe-allow",
        })
    }
}

/// The verdict on one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The check may run.
    Allowed,
    /// Refused, and why.
    Denied(DenyReason),
}

/// The probe host's own addresses, as read from its interfaces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Local {
    /// Every interface address.
    pub addresses: Vec<IpAddr>,
    /// The directed broadcast address of every IPv4 interface network.
    pub broadcasts: Vec<Ipv4Addr>,
}

/// A CIDR that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not an address or ADDRESS/PREFIX (e.g. 10.0.0.0/8, 2001:db8::/32)")]
pub struct CidrError {
    /// The text, shortened.
    pub value: String,
}

/// Parse `ADDRESS/PREFIX` or a bare address (a /32 or /128); host bits are cleared.
pub fn parse_cidr(s: &str) -> Result<IpNet, CidrError> {
    let s = s.trim();
    let bad = || CidrError {
        value: s.chars().take(64).collect(),
    };
    let net = match s.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => IpNet::from(s.parse::<IpAddr>().map_err(|_| bad())?),
    };
    // An IPv4-mapped network is the IPv4 network it maps.
    if let IpNet::V6(n) = net
        && let Some(v4) = n.addr().to_ipv4_mapped()
        && n.prefix_len() >= 96
    {
        return Ipv4Net::new(v4, n.prefix_len() - 96)
            .map(|n| IpNet::V4(n.trunc()))
            .map_err(|_| bad());
    }
    Ok(net.trunc())
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> IpNet {
    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len))
}

const fn v6(addr: Ipv6Addr, len: u8) -> IpNet {
    IpNet::V6(Ipv6Net::new_assert(addr, len))
}

/// The built-in denies that do not depend on the host.
const BUILT_IN: [(IpNet, DenyReason); 11] = [
    (v4(127, 0, 0, 0, 8), DenyReason::Loopback),
    (v6(Ipv6Addr::LOCALHOST, 128), DenyReason::Loopback),
    (v4(0, 0, 0, 0, 8), DenyReason::Unspecified),
    (v6(Ipv6Addr::UNSPECIFIED, 128), DenyReason::Unspecified),
    (v6(Ipv6Addr::UNSPECIFIED, 96), DenyReason::Reserved),
    (v4(169, 254, 0, 0, 16), DenyReason::LinkLocal),
    (
        v6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
        DenyReason::LinkLocal,
    ),
    (v4(224, 0, 0, 0, 4), DenyReason::Multicast),
    (
        v6(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),
        DenyReason::Multicast,
    ),
    (v4(255, 255, 255, 255, 32), DenyReason::Broadcast),
    // The IPv4-mapped range itself never reaches matching (addresses are canonicalised); it
    // is listed so a mapped network given by hand cannot slip past.
    (
        v6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96),
        DenyReason::Reserved,
    ),
];

/// Which entry kind wins a tie at equal prefix length: higher wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    DefaultAllow,
    BuiltInDeny,
    OperatorAllow,
    OperatorDeny,
}

/// The operator's allow and deny prefixes; the built-in denies are always there.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl AllowList {
    /// A table from `--probe-allow` and `--probe-deny`.
    pub fn new(allow: Vec<IpNet>, deny: Vec<IpNet>) -> AllowList {
        AllowList { allow, deny }
    }

    /// The operator's allows.
    pub fn allowed(&self) -> &[IpNet] {
        &self.allow
    }

    /// Decide on `ip`, with the host's own addresses in `local`.
    pub fn decide(&self, ip: IpAddr, local: &Local) -> Decision {
        let ip = ip.to_canonical();
        let mut best: Option<(u8, Rank, Decision)> = None;
        let mut consider = |net: &IpNet, rank: Rank, d: Decision| {
            if !net.contains(&ip) {
                return;
            }
            let key = (net.prefix_len(), rank);
            if best.is_none_or(|(len, r, _)| key > (len, r)) {
                best = Some((key.0, key.1, d));
            }
        };
        if self.allow.is_empty() {
            consider(&v4(0, 0, 0, 0, 0), Rank::DefaultAllow, Decision::Allowed);
            consider(
                &v6(Ipv6Addr::UNSPECIFIED, 0),
                Rank::DefaultAllow,
                Decision::Allowed,
            );
        }
        for net in &self.allow {
            consider(net, Rank::OperatorAllow, Decision::Allowed);
        }
        for net in &self.deny {
            consider(
                net,
                Rank::OperatorDeny,
                Decision::Denied(DenyReason::Denied),
            );
        }
        for (net, why) in &BUILT_IN {
            consider(net, Rank::BuiltInDeny, Decision::Denied(*why));
        }
        for a in &local.addresses {
            let a = a.to_canonical();
            // An own address inside a built-in class (127.0.0.1 on lo) is that class's: an
            // operator's allow of the class (loopback for a lab) covers it.
            if BUILT_IN.iter().any(|(net, _)| net.contains(&a)) {
                continue;
            }
            consider(
                &IpNet::from(a),
                Rank::BuiltInDeny,
                Decision::Denied(DenyReason::OwnAddress),
            );
        }
        for b in &local.broadcasts {
            consider(
                &IpNet::from(IpAddr::V4(*b)),
                Rank::BuiltInDeny,
                Decision::Denied(DenyReason::Broadcast),
            );
        }
        best.map_or(Decision::Denied(DenyReason::NotAllowed), |(_, _, d)| d)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn host() -> Local {
        Local {
            addresses: vec![
                ip("127.0.0.1"),
                ip("192.0.2.10"),
                ip("2001:db8::10"),
                ip("::1"),
            ],
            broadcasts: vec!["192.0.2.255".parse().unwrap()],
        }
    }

    #[test]
    fn the_default_denies_the_host_and_special_ranges() {
        let t = AllowList::default();
        let l = host();
        for (a, why) in [
            ("127.0.0.1", DenyReason::Loopback),
            ("127.5.6.7", DenyReason::Loopback),
            ("::1", DenyReason::Loopback),
            ("::ffff:127.0.0.1", DenyReason::Loopback),
            ("0.0.0.0", DenyReason::Unspecified),
            ("::", DenyReason::Unspecified),
            ("::7f00:1", DenyReason::Reserved),
            ("169.254.169.254", DenyReason::LinkLocal),
            ("fe80::1", DenyReason::LinkLocal),
            ("224.0.0.1", DenyReason::Multicast),
            ("239.255.255.250", DenyReason::Multicast),
            ("ff02::1", DenyReason::Multicast),
            ("255.255.255.255", DenyReason::Broadcast),
            ("192.0.2.255", DenyReason::Broadcast),
            ("192.0.2.10", DenyReason::OwnAddress),
            ("::ffff:192.0.2.10", DenyReason::OwnAddress),
            ("2001:db8::10", DenyReason::OwnAddress),
        ] {
            assert_eq!(t.decide(ip(a), &l), Decision::Denied(why), "{a}");
        }
        for a in ["192.0.2.11", "198.51.100.7", "2001:db8::11", "10.0.0.1"] {
            assert_eq!(t.decide(ip(a), &l), Decision::Allowed, "{a}");
        }
    }

    #[test]
    fn the_most_specific_entry_decides() {
        let l = host();
        let t = AllowList::new(vec![parse_cidr("127.0.0.0/8").unwrap()], vec![]);
        // Same length as the built-in loopback deny: the operator wins, for the host's own
        // 127.0.0.1 too (left to the loopback class).
        assert_eq!(t.decide(ip("127.0.0.2"), &l), Decision::Allowed);
        assert_eq!(t.decide(ip("::ffff:127.0.0.2"), &l), Decision::Allowed);
        assert_eq!(t.decide(ip("127.0.0.1"), &l), Decision::Allowed);
        // The host's other addresses stay denied unless named exactly.
        let t = AllowList::new(vec![parse_cidr("192.0.2.0/24").unwrap()], vec![]);
        assert_eq!(
            t.decide(ip("192.0.2.10"), &l),
            Decision::Denied(DenyReason::OwnAddress)
        );
        assert_eq!(t.decide(ip("192.0.2.9"), &l), Decision::Allowed);
        let t = AllowList::new(vec![parse_cidr("192.0.2.10").unwrap()], vec![]);
        assert_eq!(t.decide(ip("192.0.2.10"), &l), Decision::Allowed);
        let t = AllowList::new(vec![parse_cidr("127.0.0.0/8").unwrap()], vec![]);
        // Only the allowed prefixes, once some are given.
        assert_eq!(
            t.decide(ip("198.51.100.7"), &l),
            Decision::Denied(DenyReason::NotAllowed)
        );
        let t = AllowList::new(vec![parse_cidr("0.0.0.0/0").unwrap()], vec![]);
        assert_eq!(
            t.decide(ip("127.0.0.2"), &l),
            Decision::Denied(DenyReason::Loopback)
        );
        assert_eq!(
            t.decide(ip("2001:db8::99"), &l),
            Decision::Denied(DenyReason::NotAllowed)
        );
        let t = AllowList::new(
            vec![parse_cidr("10.0.0.0/8").unwrap()],
            vec![
                parse_cidr("10.1.0.0/16").unwrap(),
                parse_cidr("10.2.0.0/16").unwrap(),
            ],
        );
        assert_eq!(t.decide(ip("10.0.0.1"), &l), Decision::Allowed);
        assert_eq!(
            t.decide(ip("10.1.0.1"), &l),
            Decision::Denied(DenyReason::Denied)
        );
        // An operator's deny beats an operator's allow of the same length.
        let t = AllowList::new(
            vec![parse_cidr("10.1.0.0/16").unwrap()],
            vec![parse_cidr("10.1.0.0/16").unwrap()],
        );
        assert_eq!(
            t.decide(ip("10.1.0.1"), &l),
            Decision::Denied(DenyReason::Denied)
        );
    }

    #[test]
    fn cidrs_parse() {
        assert_eq!(parse_cidr("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_cidr("192.0.2.1").unwrap().to_string(), "192.0.2.1/32");
        assert_eq!(
            parse_cidr("2001:db8::1/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert_eq!(
            parse_cidr("::ffff:127.0.0.0/104").unwrap().to_string(),
            "127.0.0.0/8"
        );
        assert_eq!(
            parse_cidr("::ffff:127.0.0.1").unwrap().to_string(),
            "127.0.0.1/32"
        );
        for bad in ["", "10.0.0.0/33", "x", "10.0.0.0/", "::/129"] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
    }
}
