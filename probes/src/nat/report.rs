//! What the classifier says: a [`NatReport`] per family, with the [`Note`]s that limit or
//! explain it, and the whole [`Classification`].

use std::fmt;
use std::net::SocketAddr;

use super::behaviour::{Filtering, Mapping, NatType};
use super::lifetime::BindingLifetimeResult;
use super::verdict::Verdict;
use crate::Family;

/// Whether UDP gets out in this family.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum UdpStatus {
    /// Every server port tried answered (or at least no port was seen blocked).
    Open,
    /// Some ports answered and other ports of the same server IP did not: an egress filter.
    PortsRestricted {
        /// Destination ports that answered.
        open: Vec<u16>,
        /// Ports that did not, although the same IP answered on another port.
        blocked: Vec<u16>,
    },
    /// Nothing answered.
    Blocked,
    /// Nothing was sent.
    NotTested,
}

/// Whether there is a NAT at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NatPresence {
    /// The mapped address is one of the host's own.
    Absent,
    /// The mapped address is not the host's.
    Present,
    /// No mapped address, or the local address is not known.
    Unknown,
}

/// How the mapping was determined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MappingMethod {
    /// RFC 5780 §4.3 tests against a server with OTHER-ADDRESS.
    Rfc5780,
    /// Comparing several plain servers (see [`multi`](super::multi)).
    MultiServer,
    /// Not determined.
    None,
}

/// Which CHANGE-REQUEST test a note is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeTest {
    /// Change IP and port (RFC 5780 §4.4 test II).
    IpAndPort,
    /// Change port (RFC 5780 §4.4 test III).
    Port,
}

/// Why a conclusion was limited, or something worth knowing. Each has a sentence (`Display`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "note")]
pub enum Note {
    /// The server gave no OTHER-ADDRESS (not an RFC 5780 server).
    NoOtherAddress,
    /// OTHER-ADDRESS is on the primary's IP.
    OtherAddressSameIp {
        /// Primary address.
        primary: SocketAddr,
        /// Advertised other address.
        other: SocketAddr,
    },
    /// OTHER-ADDRESS is on the primary's port.
    OtherAddressSamePort {
        /// Advertised other address.
        other: SocketAddr,
    },
    /// The other address did not answer, so timeouts of changed replies prove nothing.
    OtherAddressSilent {
        /// Advertised other address.
        other: SocketAddr,
    },
    /// A reply to CHANGE-REQUEST did not come from (or claim) the changed address.
    ChangedReplyUntrusted {
        /// Which test.
        test: ChangeTest,
        /// Where it should have come from.
        expected: SocketAddr,
        /// Where it came from.
        source: Option<SocketAddr>,
        /// What RESPONSE-ORIGIN said.
        response_origin: Option<SocketAddr>,
    },
    /// The server answered CHANGE-REQUEST with an error.
    ChangeRequestRejected {
        /// Which test.
        test: ChangeTest,
        /// The error code (420 = attribute not understood).
        code: u16,
    },
    /// A changed reply had no RESPONSE-ORIGIN: judged by its source address only.
    NoResponseOrigin {
        /// Which test.
        test: ChangeTest,
    },
    /// Only port dependence could be tested: EIM and ADM look alike.
    EimOrAdm,
    /// The multi-server comparison used only one server IP.
    OneServerIp,
    /// The mapping comes from comparing several plain servers.
    MappingFromMultiServer {
        /// How many answered.
        answered: usize,
    },
    /// The RFC 5780 and multi-server mappings disagree (the RFC 5780 one is reported).
    MappingConflict {
        /// From RFC 5780.
        rfc5780: Mapping,
        /// From the multi-server comparison.
        multi: Mapping,
    },
    /// Filtering needs an RFC 5780 server; none answered.
    FilteringNeedsRfc5780,
    /// UDP to this destination did not get an answer, although its IP answered on another port.
    PortBlocked {
        /// The destination.
        destination: SocketAddr,
    },
    /// MAPPED-ADDRESS and XOR-MAPPED-ADDRESS differ: an ALG rewrote the plain one.
    Alg {
        /// MAPPED-ADDRESS.
        mapped: SocketAddr,
        /// XOR-MAPPED-ADDRESS.
        xor_mapped: SocketAddr,
    },
    /// The mapped IP is the host's own, but the port was changed (a port-rewriting firewall).
    PortRewrittenWithoutNat {
        /// Local address.
        local: SocketAddr,
        /// Mapped address.
        mapped: SocketAddr,
    },
    /// There is no NAT; the filtering measured is a firewall's.
    NoNat,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::NoOtherAddress => f.write_str(
                "the server sent no OTHER-ADDRESS (no RFC 5780 support): filtering cannot be tested with it",
            ),
            Note::OtherAddressSameIp { primary, other } => write!(
                f,
                "OTHER-ADDRESS {other} is on the primary's IP ({primary}): the server cannot change IP, so filtering is unknown"
            ),
            Note::OtherAddressSamePort { other } => write!(
                f,
                "OTHER-ADDRESS {other} uses the primary port: the server cannot change port, so filtering is unknown"
            ),
            Note::OtherAddressSilent { other } => write!(
                f,
                "the other address {other} never answered, so missing CHANGE-REQUEST replies prove nothing"
            ),
            Note::ChangedReplyUntrusted {
                test,
                expected,
                source,
                response_origin,
            } => write!(
                f,
                "the {} reply should come from {expected} but came from {} (RESPONSE-ORIGIN {}): not trusted, filtering unknown",
                test.label(),
                opt(source),
                opt(response_origin)
            ),
            Note::ChangeRequestRejected { test, code } => write!(
                f,
                "the server refused the {} request with error {code}",
                test.label()
            ),
            Note::NoResponseOrigin { test } => write!(
                f,
                "the {} reply had no RESPONSE-ORIGIN; judged by its source address",
                test.label()
            ),
            Note::EimOrAdm => f.write_str(
                "only one server IP was usable: endpoint-independent and address-dependent mapping look the same",
            ),
            Note::OneServerIp => f.write_str(
                "all servers compared share one IP: endpoint-independent and address-dependent mapping look the same",
            ),
            Note::MappingFromMultiServer { answered } => write!(
                f,
                "mapping judged by comparing the addresses {answered} servers saw (no RFC 5780 server)"
            ),
            Note::MappingConflict { rfc5780, multi } => write!(
                f,
                "RFC 5780 tests say {} but the multi-server comparison says {}; reporting the former",
                rfc5780.short(),
                multi.short()
            ),
            Note::FilteringNeedsRfc5780 => f.write_str(
                "filtering cannot be measured without an RFC 5780 server (OTHER-ADDRESS, CHANGE-REQUEST)",
            ),
            Note::PortBlocked { destination } => write!(
                f,
                "no answer from {destination} although that IP answered on another port: outbound UDP to port {} looks blocked",
                destination.port()
            ),
            Note::Alg { mapped, xor_mapped } => write!(
                f,
                "MAPPED-ADDRESS {mapped} differs from XOR-MAPPED-ADDRESS {xor_mapped}: an ALG on the path rewrites addresses"
            ),
            Note::PortRewrittenWithoutNat { local, mapped } => write!(
                f,
                "the mapped IP is this host's but the port changed ({local} → {mapped})"
            ),
            Note::NoNat => f.write_str(
                "no NAT: the mapped address is this host's own; any filtering measured is a firewall's",
            ),
        }
    }
}

impl fmt::Display for UdpStatus {
    /// `UDP open`, `UDP only to ports 3478 (not to 3479)`, `UDP blocked`, `UDP not tested`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UdpStatus::Open => f.write_str("UDP open"),
            UdpStatus::PortsRestricted { open, blocked } => write!(
                f,
                "UDP only to port{} {} (not to {})",
                if open.len() == 1 { "" } else { "s" },
                ports(open),
                ports(blocked)
            ),
            UdpStatus::Blocked => f.write_str("UDP blocked"),
            UdpStatus::NotTested => f.write_str("UDP not tested"),
        }
    }
}

fn ports(p: &[u16]) -> String {
    p.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
}

impl fmt::Display for NatPresence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NatPresence::Absent => "no NAT",
            NatPresence::Present => "NAT present",
            NatPresence::Unknown => "NAT presence unknown",
        })
    }
}

impl fmt::Display for MappingMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MappingMethod::Rfc5780 => "RFC 5780 tests",
            MappingMethod::MultiServer => "compared across servers",
            MappingMethod::None => "not determined",
        })
    }
}

impl fmt::Display for ChangeTest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl ChangeTest {
    fn label(self) -> &'static str {
        match self {
            ChangeTest::IpAndPort => "change-IP-and-port",
            ChangeTest::Port => "change-port",
        }
    }
}

fn opt(a: &Option<SocketAddr>) -> String {
    a.map_or_else(|| "none".to_owned(), |a| a.to_string())
}

/// What one family's measurements say about the NAT.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NatReport {
    /// IPv4 or IPv6.
    pub family: Family,
    /// Whether UDP gets out.
    pub udp: UdpStatus,
    /// Whether there is a NAT.
    pub nat: NatPresence,
    /// The server-reflexive address (XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS) of mapping test I.
    pub public_address: Option<SocketAddr>,
    /// Mapping behaviour; `None` without NAT or without UDP.
    pub mapping: Option<Mapping>,
    /// How the mapping was determined.
    pub mapping_method: MappingMethod,
    /// NAT filtering behaviour; `None` without NAT or without UDP.
    pub filtering: Option<Filtering>,
    /// Without NAT: what a firewall lets in, measured the same way (EIF = nothing filters).
    pub firewall_filtering: Option<Filtering>,
    /// Whether the NAT hairpins (RFC 4787 §6); `None` if not tested or no NAT.
    pub hairpinning: Option<bool>,
    /// Whether the mapped port equals the local port (RFC 4787 §4.1 "port preservation").
    pub port_preservation: Option<bool>,
    /// An ALG rewrote MAPPED-ADDRESS.
    pub alg_detected: bool,
    /// The server's SOFTWARE.
    pub server_software: Option<String>,
    /// The type used for the pair table.
    pub nat_type: NatType,
    /// Limits and observations.
    /// How long an idle mapping lives (RFC 5780 §4.6), when the lifetime test ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binding_lifetime: Option<BindingLifetimeResult>,
    pub notes: Vec<Note>,
}

/// The classifier's whole answer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Classification {
    /// IPv4 report, if tested.
    pub ipv4: Option<NatReport>,
    /// IPv6 report, if tested.
    pub ipv6: Option<NatReport>,
    /// The verdict over both.
    pub verdict: Verdict,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::fixtures::{O, a};

    #[test]
    fn statuses_and_methods_read_as_words() {
        assert_eq!(NatPresence::Present.to_string(), "NAT present");
        assert_eq!(NatPresence::Absent.to_string(), "no NAT");
        assert_eq!(NatPresence::Unknown.to_string(), "NAT presence unknown");
        assert_eq!(MappingMethod::Rfc5780.to_string(), "RFC 5780 tests");
        assert_eq!(
            MappingMethod::MultiServer.to_string(),
            "compared across servers"
        );
        assert_eq!(MappingMethod::None.to_string(), "not determined");
        assert_eq!(ChangeTest::Port.to_string(), "change-port");
        assert_eq!(UdpStatus::Open.to_string(), "UDP open");
        let restricted = UdpStatus::PortsRestricted {
            open: vec![3478],
            blocked: vec![3479, 5555],
        };
        assert_eq!(
            restricted.to_string(),
            "UDP only to port 3478 (not to 3479, 5555)"
        );
        assert_eq!(UdpStatus::NotTested.to_string(), "UDP not tested");
    }

    #[test]
    fn every_note_has_a_sentence() {
        let notes = [
            Note::NoOtherAddress,
            Note::EimOrAdm,
            Note::NoNat,
            Note::PortBlocked { destination: a(O) },
        ];
        for n in notes {
            assert!(n.to_string().len() > 20);
        }
    }
}
