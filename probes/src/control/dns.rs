//! DNS over UDP, the sans-IO part: the query (RFC 1035 §4.1), the response parser, the
//! nameservers of `/etc/resolv.conf`, and the verdict on what came back.
//!
//! stunmap asks the resolver itself instead of the system's `getaddrinfo` because the answer's
//! RCODE matters: NXDOMAIN and SERVFAIL are different problems (a filter that denies the name,
//! a resolver that cannot reach upstream), and `getaddrinfo` folds both into "not found".

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use serde::Serialize;

use super::{ControlError, Family};

/// The record types stunmap asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RecordType {
    /// IPv4 address, RFC 1035 §3.4.1.
    A,
    /// IPv6 address, RFC 3596 §2.1.
    Aaaa,
}

impl RecordType {
    /// The QTYPE value.
    pub fn code(self) -> u16 {
        match self {
            RecordType::A => 1,
            RecordType::Aaaa => 28,
        }
    }

    /// The record type of a family.
    pub fn of(family: Family) -> RecordType {
        match family {
            Family::Ipv4 => RecordType::A,
            Family::Ipv6 => RecordType::Aaaa,
        }
    }
}

/// Append a recursive query for `name` (RFC 1035 §4.1.1 header with RD set, one question of
/// class IN).
pub fn encode_query(
    id: u16,
    name: &str,
    qtype: RecordType,
    out: &mut Vec<u8>,
) -> Result<(), ControlError> {
    let bad = || ControlError::BadName {
        name: name.to_string(),
    };
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() || trimmed.len() > 253 {
        return Err(bad());
    }
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00]); // RD
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QD=1, AN=NS=AR=0
    for label in trimmed.split('.') {
        let len = u8::try_from(label.len()).map_err(|_| bad())?;
        if len == 0 || len > 63 {
            return Err(bad());
        }
        out.push(len);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&qtype.code().to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes()); // IN
    Ok(())
}

/// The response code, RFC 1035 §4.1.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rcode {
    /// 0.
    NoError,
    /// 1: the server could not parse the query.
    FormErr,
    /// 2: the resolver failed (often: cannot reach upstream, or DNSSEC validation failed).
    ServFail,
    /// 3: the name does not exist (or a filter says so).
    NxDomain,
    /// 5: the server refuses to answer (policy).
    Refused,
    /// Anything else.
    Other(u8),
}

impl Rcode {
    fn from_bits(b: u8) -> Rcode {
        match b {
            0 => Rcode::NoError,
            1 => Rcode::FormErr,
            2 => Rcode::ServFail,
            3 => Rcode::NxDomain,
            5 => Rcode::Refused,
            n => Rcode::Other(n),
        }
    }
}

/// What a response said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsResponse {
    /// Its id (matched against the query by the caller).
    pub id: u16,
    /// RCODE.
    pub rcode: Rcode,
    /// TC: the answer did not fit in the datagram.
    pub truncated: bool,
    /// Every A and AAAA record of the answer section (CNAME chains are followed by the
    /// resolver; their targets' records are in the same section).
    pub addresses: Vec<IpAddr>,
}

/// A bounds-checked reader over a DNS message.
struct Reader<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ControlError> {
        let end = self.pos.checked_add(n);
        let s = end
            .and_then(|e| self.msg.get(self.pos..e))
            .ok_or(ControlError::DnsTruncated { offset: self.pos })?;
        self.pos += n;
        Ok(s)
    }

    fn u16(&mut self) -> Result<u16, ControlError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([
            b.first().copied().unwrap_or(0),
            b.get(1).copied().unwrap_or(0),
        ]))
    }

    /// Skip a possibly compressed name (RFC 1035 §4.1.4). Only its length in place matters here;
    /// pointers are checked to point backwards so a loop cannot exist.
    fn skip_name(&mut self) -> Result<(), ControlError> {
        loop {
            let at = self.pos;
            let len = *self
                .take(1)?
                .first()
                .ok_or(ControlError::DnsTruncated { offset: at })?;
            match len {
                0 => return Ok(()),
                l if l & 0xC0 == 0xC0 => {
                    let low = *self
                        .take(1)?
                        .first()
                        .ok_or(ControlError::DnsTruncated { offset: at })?;
                    let target = usize::from(l & 0x3F) << 8 | usize::from(low);
                    if target >= at {
                        return Err(ControlError::DnsBadPointer { offset: at });
                    }
                    return Ok(());
                }
                l if l & 0xC0 != 0 => return Err(ControlError::DnsBadPointer { offset: at }),
                l => {
                    self.take(usize::from(l))?;
                }
            }
        }
    }
}

/// Parse a response: header, questions skipped, A/AAAA answers collected.
pub fn parse_response(msg: &[u8]) -> Result<DnsResponse, ControlError> {
    let mut r = Reader { msg, pos: 0 };
    let id = r.u16()?;
    let flags = r.u16()?;
    if flags & 0x8000 == 0 {
        return Err(ControlError::DnsNotResponse);
    }
    let qd = r.u16()?;
    let an = r.u16()?;
    r.u16()?;
    r.u16()?;
    let rcode = Rcode::from_bits((flags & 0x000F) as u8);
    let truncated = flags & 0x0200 != 0;
    for _ in 0..qd {
        r.skip_name()?;
        r.take(4)?;
    }
    let mut addresses = Vec::new();
    for _ in 0..an {
        r.skip_name()?;
        let rtype = r.u16()?;
        let class = r.u16()?;
        r.take(4)?; // TTL
        let rdlen = r.u16()?;
        let rdata = r.take(usize::from(rdlen))?;
        if class != 1 {
            continue;
        }
        if rtype == RecordType::A.code() {
            if let Ok(b) = <[u8; 4]>::try_from(rdata) {
                addresses.push(IpAddr::V4(Ipv4Addr::from(b)));
            }
        } else if rtype == RecordType::Aaaa.code() {
            if let Ok(b) = <[u8; 16]>::try_from(rdata) {
                addresses.push(IpAddr::V6(Ipv6Addr::from(b)));
            }
        }
    }
    Ok(DnsResponse {
        id,
        rcode,
        truncated,
        addresses,
    })
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

    fn answer(id: u16, rcode: u8, records: &[(u16, &[u8])]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&[0x81, 0x80 | rcode]);
        m.extend_from_slice(&[0, 1]);
        m.extend_from_slice(&(records.len() as u16).to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0]);
        m.extend_from_slice(b"\x03api\x07netbird\x02io\x00\x00\x01\x00\x01");
        for (t, data) in records {
            m.extend_from_slice(&[0xC0, 12]);
            m.extend_from_slice(&t.to_be_bytes());
            m.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
            m.extend_from_slice(&(data.len() as u16).to_be_bytes());
            m.extend_from_slice(data);
        }
        m
    }

    #[test]
    fn query_encodes() {
        let mut q = Vec::new();
        encode_query(0xBEEF, "api.netbird.io.", RecordType::Aaaa, &mut q).unwrap();
        assert_eq!(&q[..4], &[0xBE, 0xEF, 1, 0]);
        assert_eq!(&q[12..], b"\x03api\x07netbird\x02io\x00\x00\x1c\x00\x01");
        assert!(encode_query(1, "a..b", RecordType::A, &mut q).is_err());
        assert!(encode_query(1, &"x".repeat(64), RecordType::A, &mut q).is_err());
    }

    #[test]
    fn responses_parse() {
        let m = answer(
            7,
            0,
            &[(1, &[1, 2, 3, 4]), (5, b"\x01x\x00"), (1, &[0, 0, 0, 0])],
        );
        let r = parse_response(&m).unwrap();
        assert_eq!(r.id, 7);
        assert_eq!(r.rcode, Rcode::NoError);
        assert_eq!(r.addresses.len(), 2);
        assert_eq!(
            parse_response(&answer(7, 3, &[])).unwrap().rcode,
            Rcode::NxDomain
        );
        // Every truncation is an error, never a panic.
        for n in 0..m.len() - 1 {
            let _ = parse_response(&m[..n]);
        }
        assert!(parse_response(&m[..m.len() - 1]).is_err());
        // A forward pointer is refused.
        let mut bad = answer(7, 0, &[(1, &[1, 2, 3, 4])]);
        bad[32] = 0xC0;
        bad[33] = 0xFF;
        assert!(parse_response(&bad).is_err());
    }

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
