//! DNS over UDP, the sans-IO policy: the nameservers of `/etc/resolv.conf`, and the verdict
//! on what came back. The messages themselves (RFC 1035 §4.1) are [`crate::wire::dns`].
//!
//! stunmap asks the resolver itself instead of the system's `getaddrinfo` because the answer's
//! RCODE matters: NXDOMAIN and SERVFAIL are different problems (a filter that denies the name,
//! a resolver that cannot reach upstream), and `getaddrinfo` folds both into "not found".

use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

use super::Family;
use crate::wire::dns::{Rcode, RecordType};

impl RecordType {
    /// The record type of a family.
    pub fn of(family: Family) -> RecordType {
        match family {
            Family::Ipv4 => RecordType::A,
            Family::Ipv6 => RecordType::Aaaa,
        }
    }
}

/// The `nameserver` lines of a resolv.conf (resolv.conf(5)); malformed lines are skipped.
pub fn parse_resolv_conf(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            match (words.next(), words.next()) {
                // A scoped IPv6 address ("fe80::1%eth0") keeps only its address part.
                (Some("nameserver"), Some(a)) => a.split('%').next()?.parse().ok(),
                _ => None,
            }
        })
        .collect()
}

/// How one family's lookup ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum Lookup {
    /// Addresses came back.
    Resolved {
        /// The addresses.
        addresses: Vec<IpAddr>,
        /// Time to the answer.
        #[serde(with = "crate::serde_util::secs")]
        time: Duration,
    },
    /// NOERROR without records of this type (normal for a name without IPv6).
    NoRecords {
        /// Time to the answer.
        #[serde(with = "crate::serde_util::secs")]
        time: Duration,
    },
    /// The server answered with an error code.
    Failed {
        /// The code.
        rcode: Rcode,
        /// Time to the answer.
        #[serde(with = "crate::serde_util::secs")]
        time: Duration,
    },
    /// No answer in time.
    Timeout,
    /// No lookup was made: the address came from `--resolve`.
    Overridden {
        /// The addresses given.
        addresses: Vec<IpAddr>,
    },
    /// The query could not be sent (no nameserver, socket error, bad name).
    Error {
        /// Why.
        message: String,
    },
}

impl Lookup {
    /// The addresses, if any.
    pub fn addresses(&self) -> &[IpAddr] {
        match self {
            Lookup::Resolved { addresses, .. } | Lookup::Overridden { addresses } => addresses,
            _ => &[],
        }
    }
}

/// What the DNS answers mean.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "verdict")]
pub enum DnsVerdict {
    /// Addresses came back, and they match the published list (or there is none to compare to).
    Ok,
    /// Addresses were given with `--resolve`; DNS was not asked.
    Overridden,
    /// The name resolves to the unspecified address (0.0.0.0, ::): a DNS filter's sinkhole.
    Sinkhole {
        /// The sinkhole addresses.
        addresses: Vec<IpAddr>,
    },
    /// Some addresses are not in the service's published list: a DNS filter rewriting the
    /// answer, or a stale list.
    DiffersFromPublished {
        /// The unexpected addresses.
        unexpected: Vec<IpAddr>,
    },
    /// NXDOMAIN for both families.
    NxDomain,
    /// SERVFAIL (or REFUSED, or another error code) and no addresses.
    ServerFailure {
        /// The code seen.
        rcode: Rcode,
    },
    /// No answer for any family.
    Timeout,
    /// Answers, but no A or AAAA records.
    NoAddresses,
    /// The lookup could not be made.
    Error {
        /// Why.
        message: String,
    },
}

impl DnsVerdict {
    /// Whether the endpoint can be reached with what DNS gave.
    pub fn has_usable_addresses(&self) -> bool {
        matches!(
            self,
            DnsVerdict::Ok | DnsVerdict::Overridden | DnsVerdict::DiffersFromPublished { .. }
        )
    }
}

/// Whether an address is what DNS filters answer for a blocked name: the unspecified address
/// (`0.0.0.0`, `::`), the default of Pi-hole, AdGuard and most blocklist resolvers. Loopback
/// answers are not taken as a sinkhole on their own (a lab or a local relay may live there);
/// for a name with a published list they show up as differing from it.
pub fn is_sinkhole(ip: IpAddr) -> bool {
    ip.is_unspecified()
}

/// Judge the two lookups of a name against its published addresses (empty: none known).
pub fn verdict(v4: &Lookup, v6: &Lookup, published: &[IpAddr]) -> DnsVerdict {
    if matches!(v4, Lookup::Overridden { .. }) || matches!(v6, Lookup::Overridden { .. }) {
        return DnsVerdict::Overridden;
    }
    let all: Vec<IpAddr> = v4
        .addresses()
        .iter()
        .chain(v6.addresses())
        .copied()
        .collect();
    if !all.is_empty() {
        let sink: Vec<IpAddr> = all.iter().copied().filter(|a| is_sinkhole(*a)).collect();
        if !sink.is_empty() {
            return DnsVerdict::Sinkhole { addresses: sink };
        }
        if !published.is_empty() {
            let unexpected: Vec<IpAddr> = all
                .iter()
                .copied()
                .filter(|a| !published.contains(a))
                .collect();
            if !unexpected.is_empty() {
                return DnsVerdict::DiffersFromPublished { unexpected };
            }
        }
        return DnsVerdict::Ok;
    }
    let failed = |l: &Lookup| match l {
        Lookup::Failed { rcode, .. } => Some(*rcode),
        _ => None,
    };
    match (failed(v4), failed(v6)) {
        (Some(Rcode::NxDomain), _) | (_, Some(Rcode::NxDomain)) => return DnsVerdict::NxDomain,
        (Some(rcode), _) | (_, Some(rcode)) => return DnsVerdict::ServerFailure { rcode },
        _ => {}
    }
    match (v4, v6) {
        (Lookup::Timeout, Lookup::Timeout) => DnsVerdict::Timeout,
        (Lookup::Error { message }, _) | (_, Lookup::Error { message }) => DnsVerdict::Error {
            message: message.clone(),
        },
        (Lookup::Timeout, _) | (_, Lookup::Timeout) => DnsVerdict::Timeout,
        _ => DnsVerdict::NoAddresses,
    }
}

/// The addresses NetBird Cloud publishes for its management and signal services (from its
/// "Ports & Firewalls" page); other names have none.
pub fn published_addresses(name: &str) -> Vec<IpAddr> {
    const V4: [&str; 7] = [
        "35.186.199.111",
        "85.9.201.14",
        "85.9.206.109",
        "213.163.201.31",
        "213.163.206.27",
        "85.9.196.80",
        "209.151.150.249",
    ];
    const V6: [&str; 7] = [
        "2600:1901:0:adb3::",
        "2a04:3542:1000:910:2465:1fff:fe8a:5597",
        "2a04:3542:1000:910:2465:1fff:fe8a:2f9a",
        "2a04:3543:1000:2310:2465:1fff:fe8a:5f8d",
        "2a04:3543:1000:2310:2465:1fff:fe8a:1308",
        "2605:7380:8000:1000:2465:1fff:fe8a:3b62",
        "2605:7380:8000:1000:2465:1fff:fe8a:4dcd",
    ];
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.eq_ignore_ascii_case("api.netbird.io") || name.eq_ignore_ascii_case("signal.netbird.io")
    {
        V4.iter()
            .chain(V6.iter())
            .filter_map(|a| a.parse().ok())
            .collect()
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf() {
        let t =
            "# x\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\nsearch lan\nnameserver bogus\n";
        assert_eq!(parse_resolv_conf(t).len(), 2);
    }

    #[test]
    fn verdicts() {
        let t = Duration::from_millis(3);
        let res = |a: &[&str]| Lookup::Resolved {
            addresses: a.iter().map(|s| s.parse().unwrap()).collect(),
            time: t,
        };
        let none = Lookup::NoRecords { time: t };
        assert_eq!(verdict(&res(&["1.2.3.4"]), &none, &[]), DnsVerdict::Ok);
        assert!(matches!(
            verdict(&res(&["0.0.0.0"]), &none, &[]),
            DnsVerdict::Sinkhole { .. }
        ));
        let published = published_addresses("api.netbird.io");
        assert_eq!(published.len(), 14);
        assert!(matches!(
            verdict(&res(&["10.9.9.9"]), &none, &published),
            DnsVerdict::DiffersFromPublished { .. }
        ));
        assert_eq!(
            verdict(&res(&["85.9.201.14"]), &none, &published),
            DnsVerdict::Ok
        );
        let nx = Lookup::Failed {
            rcode: Rcode::NxDomain,
            time: t,
        };
        assert_eq!(verdict(&nx, &nx, &[]), DnsVerdict::NxDomain);
        let sf = Lookup::Failed {
            rcode: Rcode::ServFail,
            time: t,
        };
        assert!(matches!(
            verdict(&sf, &Lookup::Timeout, &[]),
            DnsVerdict::ServerFailure {
                rcode: Rcode::ServFail
            }
        ));
        assert_eq!(
            verdict(&Lookup::Timeout, &Lookup::Timeout, &[]),
            DnsVerdict::Timeout
        );
        assert_eq!(verdict(&none, &none, &[]), DnsVerdict::NoAddresses);
    }
}
