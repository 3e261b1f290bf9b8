//! The classifier: a pure function from measurements to a NAT report and a P2P-vs-relay verdict.
//!
//! Nothing here sends or waits; the probes ([`discovery`](super::discovery),
//! [`multi`](super::multi)) gather, this module judges. Every rule is a few lines with its
//! source, and every rule has a unit test below.
//!
//! # Trust
//!
//! A server earns trust test by test (RFC 5780 §4 assumes an honest server with two IPs and two
//! ports; real ones are misconfigured):
//! - OTHER-ADDRESS on the primary's IP means the server cannot change IP: mapping can only be
//!   judged for port dependence and filtering is unknown, never endpoint-independent.
//! - A reply to CHANGE-REQUEST counts only if it came from the changed address and its
//!   RESPONSE-ORIGIN (RFC 5780 §7.3), when present, says the same. Otherwise the filtering is
//!   unknown: a server that ignores CHANGE-REQUEST and answers from its primary address would
//!   otherwise make every NAT look endpoint-independent.
//! - A timed-out CHANGE-REQUEST means "filtered" only if the other address was seen to answer
//!   (mapping test III); a dead alternate address would otherwise look like strict filtering.
//! - A mapped address equal to one of the host's own addresses means there is no NAT; the report
//!   says so and gives no NAT filtering class (a host firewall's filtering is reported apart).
//! - MAPPED-ADDRESS differing from XOR-MAPPED-ADDRESS in one response means something on the
//!   path rewrote the plain address: an ALG (the reason RFC 8489 §14.2 introduced the XOR form).
//!
//! # Peer pairs
//!
//! [`pair_outcome`] models ICE (RFC 8445) hole punching between two NATs described by their
//! RFC 4787 mapping (§4.1) and filtering (§5) behaviours; see its docs for the rules.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::Family;
use crate::binding::{BindingOutcome, BindingResponse, BindingStatus};
use crate::nat::discovery::{DiscoveryMeasurements, HairpinResult, success};
use crate::nat::lifetime::{LifetimeMeasurements, Trial, TrialOutcome};
use crate::nat::multi::MultiMeasurements;
use crate::nat::portmap::PortMapping;

/// Mapping behaviour, RFC 4787 §4.1 (RFC 5780 §4.3 measures it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mapping {
    /// The same mapping for every destination (RFC 4787 REQ-1 asks for this).
    EndpointIndependent,
    /// A mapping per destination IP.
    AddressDependent,
    /// A mapping per destination IP and port ("symmetric").
    AddressAndPortDependent,
    /// Differs between destination IPs; the measurements cannot say whether the port matters.
    VariesByDestination,
    /// Not measured or not measurable with the servers at hand.
    Unknown,
}

/// Filtering behaviour, RFC 4787 §5 (RFC 5780 §4.4 measures it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Filtering {
    /// Anyone may send to an existing mapping ("full cone").
    EndpointIndependent,
    /// Only IPs the mapping has sent to ("restricted cone").
    AddressDependent,
    /// Only IP:port pairs the mapping has sent to ("port-restricted cone").
    AddressAndPortDependent,
    /// Not measured, or the server did not earn trust (see the module docs).
    Unknown,
}

impl Mapping {
    /// The RFC 4787 classes this value leaves open.
    fn possible(self) -> &'static [Mapping] {
        use Mapping::*;
        match self {
            EndpointIndependent => &[EndpointIndependent],
            AddressDependent => &[AddressDependent],
            AddressAndPortDependent => &[AddressAndPortDependent],
            VariesByDestination => &[AddressDependent, AddressAndPortDependent],
            Unknown => &[
                EndpointIndependent,
                AddressDependent,
                AddressAndPortDependent,
            ],
        }
    }

    /// Short name as in RFC 4787 (EIM, ADM, APDM).
    pub fn short(self) -> &'static str {
        match self {
            Mapping::EndpointIndependent => "EIM",
            Mapping::AddressDependent => "ADM",
            Mapping::AddressAndPortDependent => "APDM",
            Mapping::VariesByDestination => "ADM/APDM",
            Mapping::Unknown => "mapping unknown",
        }
    }
}

impl Filtering {
    /// The RFC 4787 classes this value leaves open.
    fn possible(self) -> &'static [Filtering] {
        use Filtering::*;
        match self {
            EndpointIndependent => &[EndpointIndependent],
            AddressDependent => &[AddressDependent],
            AddressAndPortDependent => &[AddressAndPortDependent],
            Unknown => &[
                EndpointIndependent,
                AddressDependent,
                AddressAndPortDependent,
            ],
        }
    }

    /// Short name as in RFC 4787 (EIF, ADF, APDF).
    pub fn short(self) -> &'static str {
        match self {
            Filtering::EndpointIndependent => "EIF",
            Filtering::AddressDependent => "ADF",
            Filtering::AddressAndPortDependent => "APDF",
            Filtering::Unknown => "filtering unknown",
        }
    }
}

/// What a host looks like to a peer trying to reach it, the input of [`pair_outcome`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum NatType {
    /// UDP to peers cannot get out: blocked entirely, or allowed only to a few service ports.
    UdpBlocked,
    /// UDP works. A host without NAT is `EndpointIndependent` mapping with its firewall's
    /// filtering (`EndpointIndependent` when nothing filters).
    Udp {
        /// Mapping behaviour.
        mapping: Mapping,
        /// Filtering behaviour.
        filtering: Filtering,
    },
}

impl NatType {
    /// Public address, nothing filtering (or a full-cone NAT: the same to peers).
    pub const OPEN: NatType =
        NatType::udp(Mapping::EndpointIndependent, Filtering::EndpointIndependent);
    /// EIM + ADF, "restricted cone".
    pub const RESTRICTED_CONE: NatType =
        NatType::udp(Mapping::EndpointIndependent, Filtering::AddressDependent);
    /// EIM + APDF, "port-restricted cone": Linux MASQUERADE, most home routers.
    pub const PORT_RESTRICTED_CONE: NatType = NatType::udp(
        Mapping::EndpointIndependent,
        Filtering::AddressAndPortDependent,
    );
    /// ADM + APDF.
    pub const ADDRESS_DEPENDENT: NatType = NatType::udp(
        Mapping::AddressDependent,
        Filtering::AddressAndPortDependent,
    );
    /// APDM + APDF, "symmetric": MASQUERADE --random-fully, many CGNATs and firewalls.
    pub const SYMMETRIC: NatType = NatType::udp(
        Mapping::AddressAndPortDependent,
        Filtering::AddressAndPortDependent,
    );

    /// A UDP-capable type.
    pub const fn udp(mapping: Mapping, filtering: Filtering) -> Self {
        NatType::Udp { mapping, filtering }
    }

    /// The representative peer types of the pair table, with their labels.
    pub const TABLE: [(NatType, &'static str); 6] = [
        (NatType::OPEN, "open / full cone (EIM+EIF)"),
        (NatType::RESTRICTED_CONE, "restricted cone (EIM+ADF)"),
        (
            NatType::PORT_RESTRICTED_CONE,
            "port-restricted cone (EIM+APDF)",
        ),
        (
            NatType::ADDRESS_DEPENDENT,
            "address-dependent mapping (ADM+APDF)",
        ),
        (NatType::SYMMETRIC, "symmetric (APDM+APDF)"),
        (NatType::UdpBlocked, "UDP blocked"),
    ];
}

impl fmt::Display for NatType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NatType::UdpBlocked => f.write_str("UDP blocked"),
            NatType::Udp { mapping, filtering } => {
                write!(f, "{}+{}", mapping.short(), filtering.short())
            }
        }
    }
}

/// Whether two peers get a direct path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PairOutcome {
    /// ICE connectivity checks succeed in at least one direction.
    Direct,
    /// No direction works: the pair goes through the relay.
    Relayed,
    /// Depends on behaviour that was not measured.
    Uncertain,
}

/// Whether `me` and `peer` can punch a direct UDP path, following ICE (RFC 8445) over NATs
/// described by RFC 4787.
///
/// The model: each side knows the other's server-reflexive address (its mapping toward the
/// STUN server, RFC 8445 §5.1.1.2) and both send connectivity checks to it, retransmitting, so
/// each side's outbound checks have opened its own filter by the time the other's arrive
/// (RFC 8445 §7.2.5.4; RFC 4787 §4.1 on why endpoint-independent mapping makes this work). A
/// check from X to Y succeeds when both
/// 1. Y's NAT lets X's check in through the mapping Y's server-reflexive address names:
///    always with EIF; with ADF only if Y is EIM (only then did Y's own checks leave through
///    that mapping); with APDF only if Y is EIM *and* X is EIM (X's check must come from the
///    very address Y sent to);
/// 2. X's NAT lets Y's answer in: with EIF or ADF always (X sent to Y's IP from that mapping;
///    the NAT is assumed to use one external IP, RFC 4787 §4.1 REQ-2 "paired" pooling); with
///    APDF only if Y is EIM (the answer must come from the address X sent to).
///
/// The pair is direct if either direction succeeds; UDP blocked on either side means relay.
/// Unknown behaviour is expanded into every class it could be: the outcome is `Uncertain`
/// when the possibilities disagree. Port prediction (guessing the next APDM port) is not
/// modelled: NetBird's ICE does not rely on it.
pub fn pair_outcome(me: NatType, peer: NatType) -> PairOutcome {
    let (
        NatType::Udp {
            mapping: ma,
            filtering: fa,
        },
        NatType::Udp {
            mapping: mb,
            filtering: fb,
        },
    ) = (me, peer)
    else {
        return PairOutcome::Relayed;
    };
    let (mut direct, mut relayed) = (false, false);
    for &a in ma.possible() {
        for &b in fa.possible() {
            for &c in mb.possible() {
                for &d in fb.possible() {
                    if punches((a, b), (c, d)) {
                        direct = true;
                    } else {
                        relayed = true;
                    }
                }
            }
        }
    }
    match (direct, relayed) {
        (true, false) => PairOutcome::Direct,
        (false, true) => PairOutcome::Relayed,
        _ => PairOutcome::Uncertain,
    }
}

fn punches(x: (Mapping, Filtering), y: (Mapping, Filtering)) -> bool {
    check_succeeds(x, y) || check_succeeds(y, x)
}

/// X sends a check to Y's server-reflexive address and gets the answer (rules 1 and 2 above).
/// Only called with definite classes.
fn check_succeeds(x: (Mapping, Filtering), y: (Mapping, Filtering)) -> bool {
    let x_eim = x.0 == Mapping::EndpointIndependent;
    let y_eim = y.0 == Mapping::EndpointIndependent;
    let check_gets_in = match y.1 {
        Filtering::AddressDependent => y_eim,
        Filtering::AddressAndPortDependent => y_eim && x_eim,
        Filtering::EndpointIndependent | Filtering::Unknown => true,
    };
    let answer_gets_back = match x.1 {
        Filtering::AddressAndPortDependent => y_eim,
        Filtering::EndpointIndependent | Filtering::AddressDependent | Filtering::Unknown => true,
    };
    check_gets_in && answer_gets_back
}

// ---------------------------------------------------------------------------------------------
// Inputs

/// What was measured in one address family.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FamilyMeasurements {
    /// Binding lifetime test (RFC 5780 §4.6), if run (`--lifetime`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<LifetimeMeasurements>,
    /// RFC 5780 discovery against one server, if one was run.
    pub discovery: Option<DiscoveryMeasurements>,
    /// Multi-server comparison, if run.
    pub multi: Option<MultiMeasurements>,
    /// The host's own addresses in this family (to recognise "no NAT" when sockets are bound to
    /// a wildcard address).
    pub local_addresses: Vec<IpAddr>,
}

/// Reachability of the relay paths, measured elsewhere (`stunmap check`); `None` = not tested.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RelayPaths {
    /// TURN over UDP (3478, 80 or 443) allocated.
    pub turn_udp: Option<bool>,
    /// TURN over TCP (443 or the TURN port) allocated.
    pub turn_tcp: Option<bool>,
    /// TURN over TLS allocated.
    pub turn_tls: Option<bool>,
    /// The NetBird relay service on TCP/443 answered.
    pub relay_tcp443: Option<bool>,
}

impl RelayPaths {
    fn any_works(&self) -> Option<bool> {
        let all = [
            self.turn_udp,
            self.turn_tcp,
            self.turn_tls,
            self.relay_tcp443,
        ];
        if all.contains(&Some(true)) {
            Some(true)
        } else if all.iter().all(|v| *v == Some(false)) {
            Some(false)
        } else {
            None
        }
    }

    fn tcp_works(&self) -> bool {
        [self.turn_tcp, self.turn_tls, self.relay_tcp443].contains(&Some(true))
    }
}

/// Everything the classifier takes.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Measurements {
    /// IPv4, if tested.
    pub ipv4: Option<FamilyMeasurements>,
    /// IPv6, if tested.
    pub ipv6: Option<FamilyMeasurements>,
    /// Relay reachability.
    pub relay: RelayPaths,
    /// Port mapping protocols on the default gateway (NAT-PMP, PCP, UPnP IGD), if asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_mapping: Option<PortMapping>,
}

// ---------------------------------------------------------------------------------------------
// Outputs

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

/// How good the path prospects are, best first.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// Direct with every peer that has UDP (this side is EIM and filters EIF/ADF, or is open).
    Direct,
    /// Direct with peers on endpoint-independent NATs; relay with symmetric ones.
    DirectWithEim,
    /// Direct only with open or full/restricted-cone peers.
    DirectWithPermissivePeers,
    /// UDP works but the NAT behaviour could not be pinned down.
    Unknown,
    /// No direct path: only a relay.
    RelayOnly,
    /// Not even the relay.
    Blocked,
}

/// A suggested change, in the reference page's terms.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fix {
    /// What to do.
    pub title: String,
    /// Example commands (nftables, UFW).
    pub commands: Vec<String>,
    /// What it costs.
    pub caveat: Option<String>,
}

/// A row of the peer-pair table.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PeerRow {
    /// The peer's type.
    pub peer: NatType,
    /// Its usual name.
    pub label: String,
    /// Direct or relayed.
    pub outcome: PairOutcome,
}

/// The P2P-vs-relay verdict.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Verdict {
    /// How good.
    pub level: Level,
    /// One line, shown first.
    pub headline: String,
    /// The measurements that led there.
    pub reasons: Vec<String>,
    /// What to change.
    pub fixes: Vec<Fix>,
    /// This host against each representative peer type (best family).
    pub peers: Vec<PeerRow>,
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

// ---------------------------------------------------------------------------------------------
// Per-family classification

/// All outbound tests whose timeout says something about egress (not the CHANGE-REQUEST ones,
/// whose silence is expected behind a filtering NAT).
fn egress_tests(m: &FamilyMeasurements) -> Vec<&BindingOutcome> {
    let mut v: Vec<&BindingOutcome> = Vec::new();
    if let Some(d) = &m.discovery {
        v.extend(
            [&d.mapping_i, &d.mapping_ii, &d.mapping_iii]
                .into_iter()
                .flatten(),
        );
    }
    if let Some(mm) = &m.multi {
        v.extend(mm.results.iter());
    }
    v
}

fn answered(o: &BindingOutcome) -> bool {
    !matches!(o.status, BindingStatus::Timeout)
}

fn udp_status(m: &FamilyMeasurements, notes: &mut Vec<Note>) -> UdpStatus {
    let tests = egress_tests(m);
    let change_answered = m.discovery.as_ref().is_some_and(|d| {
        [&d.filtering_ii, &d.filtering_iii]
            .into_iter()
            .flatten()
            .any(answered)
    });
    if tests.is_empty() && !change_answered {
        return UdpStatus::NotTested;
    }
    if !tests.iter().any(|o| answered(o)) && !change_answered {
        return UdpStatus::Blocked;
    }
    let mut open: Vec<u16> = Vec::new();
    let mut blocked: Vec<u16> = Vec::new();
    for o in &tests {
        if answered(o) {
            push_unique(&mut open, o.destination.port());
        }
    }
    for o in &tests {
        let d = o.destination;
        if answered(o) || open.contains(&d.port()) {
            continue;
        }
        let same_ip_answered = tests.iter().any(|t| {
            answered(t) && t.destination.ip() == d.ip() && t.destination.port() != d.port()
        });
        if same_ip_answered {
            push_unique(&mut blocked, d.port());
            notes.push(Note::PortBlocked { destination: d });
        }
    }
    if blocked.is_empty() {
        UdpStatus::Open
    } else {
        open.sort_unstable();
        blocked.sort_unstable();
        UdpStatus::PortsRestricted { open, blocked }
    }
}

fn push_unique(v: &mut Vec<u16>, p: u16) {
    if !v.contains(&p) {
        v.push(p);
    }
}

/// Every success response, for ALG detection.
fn all_responses(m: &FamilyMeasurements) -> Vec<&BindingResponse> {
    let mut v = Vec::new();
    if let Some(d) = &m.discovery {
        for o in [
            &d.mapping_i,
            &d.mapping_ii,
            &d.mapping_iii,
            &d.filtering_ii,
            &d.filtering_iii,
        ] {
            v.extend(success(o.as_ref()));
        }
    }
    if let Some(mm) = &m.multi {
        v.extend(mm.results.iter().filter_map(|o| success(Some(o))));
    }
    v
}

/// The reference response: mapping test I, else the first multi-server answer; with the local
/// address of the socket it was sent from.
fn reference(m: &FamilyMeasurements) -> Option<(&BindingResponse, Option<SocketAddr>)> {
    if let Some(d) = &m.discovery {
        if let Some(r) = d.primary_response() {
            return Some((r, d.local_mapping));
        }
    }
    let mm = m.multi.as_ref()?;
    mm.results
        .iter()
        .find_map(|o| success(Some(o)))
        .map(|r| (r, mm.local))
}

fn nat_presence(
    m: &FamilyMeasurements,
    mapped: SocketAddr,
    local: Option<SocketAddr>,
    notes: &mut Vec<Note>,
) -> NatPresence {
    let mut ips: Vec<IpAddr> = m.local_addresses.clone();
    if let Some(l) = local {
        if !l.ip().is_unspecified() {
            ips.push(l.ip());
        }
    }
    if ips.is_empty() {
        return NatPresence::Unknown;
    }
    if !ips.contains(&mapped.ip()) {
        return NatPresence::Present;
    }
    match local {
        Some(l) if l.port() != mapped.port() => {
            notes.push(Note::PortRewrittenWithoutNat { local: l, mapped });
            NatPresence::Present
        }
        _ => NatPresence::Absent,
    }
}

fn mapped_of(o: &Option<BindingOutcome>) -> Option<SocketAddr> {
    success(o.as_ref()).and_then(BindingResponse::mapped_address)
}

/// RFC 5780 §4.3: compare test I with tests II and III.
fn mapping_rfc5780(d: &DiscoveryMeasurements, notes: &mut Vec<Note>) -> Mapping {
    let (Some(server), Some(r1)) = (d.server, d.primary_response()) else {
        return Mapping::Unknown;
    };
    let (Some(m1), Some(other)) = (r1.mapped_address(), r1.other_address) else {
        return Mapping::Unknown;
    };
    if other.ip() == server.ip() {
        // Test II would repeat test I; test III still varies the port (RFC 4787 §4.1: a
        // different mapping for another port of the same IP is port dependence).
        return match mapped_of(&d.mapping_iii) {
            Some(m3) if m3 != m1 => Mapping::AddressAndPortDependent,
            Some(_) => {
                notes.push(Note::EimOrAdm);
                Mapping::Unknown
            }
            None => Mapping::Unknown,
        };
    }
    let Some(m2) = mapped_of(&d.mapping_ii) else {
        return Mapping::Unknown;
    };
    if m2 == m1 {
        return Mapping::EndpointIndependent;
    }
    match mapped_of(&d.mapping_iii) {
        Some(m3) if m3 == m2 => Mapping::AddressDependent,
        Some(_) => Mapping::AddressAndPortDependent,
        None => Mapping::VariesByDestination,
    }
}

/// RFC 4787 §4.1 from several plain servers, all asked from one local socket.
fn mapping_multi(mm: &MultiMeasurements, notes: &mut Vec<Note>) -> Mapping {
    let seen: Vec<(SocketAddr, SocketAddr)> = mm
        .results
        .iter()
        .filter_map(|o| Some((o.destination, mapped_of(&Some(o.clone()))?)))
        .collect();
    if seen.len() < 2 {
        return Mapping::Unknown;
    }
    notes.push(Note::MappingFromMultiServer {
        answered: seen.len(),
    });
    type Seen = (SocketAddr, SocketAddr);
    let pairs: Vec<(&Seen, &Seen)> = seen
        .iter()
        .enumerate()
        .flat_map(|(i, a)| seen.iter().skip(i + 1).map(move |b| (a, b)))
        .collect();
    let any = |same_ip: bool, same_mapping: bool| {
        pairs
            .iter()
            .any(|(a, b)| (a.0.ip() == b.0.ip()) == same_ip && (a.1 == b.1) == same_mapping)
    };
    if any(true, false) {
        return Mapping::AddressAndPortDependent;
    }
    if any(false, false) {
        if any(true, true) {
            Mapping::AddressDependent
        } else {
            Mapping::VariesByDestination
        }
    } else if any(false, true) {
        Mapping::EndpointIndependent
    } else {
        notes.push(Note::OneServerIp);
        Mapping::Unknown
    }
}

enum Judged {
    Passed,
    TimedOut,
    Distrusted,
    NotRun,
}

fn judge_changed(
    o: &Option<BindingOutcome>,
    test: ChangeTest,
    expected: SocketAddr,
    notes: &mut Vec<Note>,
) -> Judged {
    let Some(o) = o else { return Judged::NotRun };
    match &o.status {
        BindingStatus::Timeout => Judged::TimedOut,
        BindingStatus::Error { code, .. } => {
            notes.push(Note::ChangeRequestRejected { test, code: *code });
            Judged::Distrusted
        }
        BindingStatus::Success(r) => {
            let origin_ok = r.response_origin.is_none_or(|ro| ro == expected);
            if o.source != Some(expected) || !origin_ok {
                notes.push(Note::ChangedReplyUntrusted {
                    test,
                    expected,
                    source: o.source,
                    response_origin: r.response_origin,
                });
                return Judged::Distrusted;
            }
            if r.response_origin.is_none() {
                notes.push(Note::NoResponseOrigin { test });
            }
            Judged::Passed
        }
    }
}

/// RFC 5780 §4.4, with the trust rules of the module docs.
fn filtering_rfc5780(d: Option<&DiscoveryMeasurements>, notes: &mut Vec<Note>) -> Filtering {
    let Some(d) = d else {
        notes.push(Note::FilteringNeedsRfc5780);
        return Filtering::Unknown;
    };
    let (Some(primary), Some(r1)) = (d.server, d.primary_response()) else {
        notes.push(Note::FilteringNeedsRfc5780);
        return Filtering::Unknown;
    };
    let Some(other) = r1.other_address else {
        notes.push(Note::NoOtherAddress);
        return Filtering::Unknown;
    };
    if other.ip() == primary.ip() {
        notes.push(Note::OtherAddressSameIp { primary, other });
        return Filtering::Unknown;
    }
    if other.port() == primary.port() {
        notes.push(Note::OtherAddressSamePort { other });
        return Filtering::Unknown;
    }
    let other_alive = mapped_of(&d.mapping_iii).is_some();
    match judge_changed(&d.filtering_ii, ChangeTest::IpAndPort, other, notes) {
        Judged::Passed => return Filtering::EndpointIndependent,
        Judged::Distrusted | Judged::NotRun => return Filtering::Unknown,
        Judged::TimedOut if !other_alive => {
            notes.push(Note::OtherAddressSilent { other });
            return Filtering::Unknown;
        }
        Judged::TimedOut => {}
    }
    let port_changed = SocketAddr::new(primary.ip(), other.port());
    match judge_changed(&d.filtering_iii, ChangeTest::Port, port_changed, notes) {
        Judged::Passed => Filtering::AddressDependent,
        Judged::TimedOut => Filtering::AddressAndPortDependent,
        Judged::Distrusted | Judged::NotRun => Filtering::Unknown,
    }
}

/// Classify one family's measurements.
pub fn classify_family(family: Family, m: &FamilyMeasurements) -> NatReport {
    let mut notes = Vec::new();
    let udp = udp_status(m, &mut notes);
    let mut report = NatReport {
        family,
        udp: udp.clone(),
        nat: NatPresence::Unknown,
        public_address: None,
        mapping: None,
        mapping_method: MappingMethod::None,
        filtering: None,
        firewall_filtering: None,
        hairpinning: None,
        port_preservation: None,
        alg_detected: false,
        server_software: None,
        nat_type: NatType::UdpBlocked,
        binding_lifetime: m.lifetime.as_ref().map(binding_lifetime),
        notes: Vec::new(),
    };
    if matches!(udp, UdpStatus::Blocked | UdpStatus::NotTested) {
        report.notes = notes;
        return report;
    }

    for r in all_responses(m) {
        if let (Some(mapped), Some(xor_mapped)) = (r.mapped, r.xor_mapped) {
            if mapped != xor_mapped && !report.alg_detected {
                report.alg_detected = true;
                notes.push(Note::Alg { mapped, xor_mapped });
            }
        }
    }

    let reference = reference(m);
    report.server_software = reference.and_then(|(r, _)| r.software.clone());
    report.public_address = reference.and_then(|(r, _)| r.mapped_address());
    if let (Some((_, local)), Some(mapped)) = (reference, report.public_address) {
        report.nat = nat_presence(m, mapped, local, &mut notes);
        if report.nat != NatPresence::Absent {
            report.port_preservation = local.map(|l| l.port() == mapped.port());
        }
    }

    // Mapping: RFC 5780 first, the multi-server comparison as fallback or cross-check.
    let mut mapping = Mapping::Unknown;
    if let Some(d) = &m.discovery {
        mapping = mapping_rfc5780(d, &mut notes);
        if mapping != Mapping::Unknown {
            report.mapping_method = MappingMethod::Rfc5780;
        }
    }
    if let Some(mm) = &m.multi {
        let mut multi_notes = Vec::new();
        let multi = mapping_multi(mm, &mut multi_notes);
        if mapping == Mapping::Unknown && multi != Mapping::Unknown {
            mapping = multi;
            report.mapping_method = MappingMethod::MultiServer;
            notes.append(&mut multi_notes);
        } else if mapping == Mapping::Unknown {
            notes.append(&mut multi_notes);
        } else if multi != Mapping::Unknown
            && !mapping
                .possible()
                .iter()
                .any(|p| multi.possible().contains(p))
        {
            notes.push(Note::MappingConflict {
                rfc5780: mapping,
                multi,
            });
        }
    }

    let filtering = filtering_rfc5780(m.discovery.as_ref(), &mut notes);
    let restricted = matches!(udp, UdpStatus::PortsRestricted { .. });

    if report.nat == NatPresence::Absent {
        notes.push(Note::NoNat);
        report.firewall_filtering = Some(filtering);
        report.nat_type = if restricted {
            NatType::UdpBlocked
        } else {
            NatType::udp(Mapping::EndpointIndependent, filtering)
        };
    } else {
        report.mapping = Some(mapping);
        report.filtering = Some(filtering);
        report.hairpinning = m
            .discovery
            .as_ref()
            .and_then(|d| d.hairpin)
            .map(|h| matches!(h, HairpinResult::Received { .. }));
        report.nat_type = if restricted {
            NatType::UdpBlocked
        } else {
            NatType::udp(mapping, filtering)
        };
    }
    report.notes = notes;
    report
}

// ---------------------------------------------------------------------------------------------
// Binding lifetime

/// Why the binding lifetime is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LifetimeUnknown {
    /// The Binding that opens the zero-idle control mapping got no answer.
    NoMapping,
    /// The zero-idle control got no answer through its mapping: the server does not support
    /// RESPONSE-PORT (RFC 5780 §7.5), ignores it, or rejects it.
    ResponsePortUnsupported,
    /// Nothing conclusive (no trial ran to the end).
    Inconclusive,
}

/// How long the NAT keeps an idle UDP mapping, from [`LifetimeMeasurements`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum BindingLifetimeResult {
    /// The mapping survived `survives_at_least` of idleness and was gone after
    /// `expires_within`.
    Bounded {
        /// Lower bound, seconds in JSON.
        #[serde(with = "crate::serde_util::secs")]
        survives_at_least: Duration,
        /// Upper bound, seconds in JSON.
        #[serde(with = "crate::serde_util::secs")]
        expires_within: Duration,
        /// A keepalive interval that keeps the mapping: 2/3 of the lower bound.
        #[serde(with = "crate::serde_util::secs")]
        recommended_keepalive: Duration,
    },
    /// The mapping survived the longest idle time tried.
    AtLeast {
        /// The longest idle time survived, seconds in JSON.
        #[serde(with = "crate::serde_util::secs")]
        survives_at_least: Duration,
        /// 2/3 of it.
        #[serde(with = "crate::serde_util::secs")]
        recommended_keepalive: Duration,
    },
    /// Not measurable with this server or path.
    Unknown {
        /// Why.
        reason: LifetimeUnknown,
    },
}

/// The keepalive recommended for a mapping that lives at least `lower`: 2/3 of it (a margin
/// for timer slop and a lost keepalive), whole seconds from 3 s up, 100 ms steps below.
pub fn recommended_keepalive(lower: Duration) -> Duration {
    let ms = lower.as_millis().saturating_mul(2) / 3;
    let ms = u64::try_from(ms).unwrap_or(u64::MAX);
    if ms >= 3000 {
        Duration::from_secs(ms / 1000)
    } else {
        Duration::from_millis(ms / 100 * 100)
    }
}

/// Judge a lifetime test. The first idle time that expired gives the upper bound (its measured
/// idle time plus the round trip that opened the mapping, the most the mapping can have been
/// idle when the trigger's answer reached the NAT); the longest shorter idle time that was
/// answered gives the lower bound. See `probes::nat::lifetime` for the method.
pub fn binding_lifetime(m: &LifetimeMeasurements) -> BindingLifetimeResult {
    let unknown = |reason| BindingLifetimeResult::Unknown { reason };
    let Some(control) = m.trials.first() else {
        return unknown(LifetimeUnknown::Inconclusive);
    };
    match control.outcome {
        TrialOutcome::Alive => {}
        TrialOutcome::NotOpened => return unknown(LifetimeUnknown::NoMapping),
        TrialOutcome::Expired | TrialOutcome::Error => {
            return unknown(LifetimeUnknown::ResponsePortUnsupported);
        }
        TrialOutcome::Skipped => return unknown(LifetimeUnknown::Inconclusive),
    }
    let idle = |t: &Trial| t.idle.unwrap_or(t.planned_idle);
    let expired = m
        .trials
        .iter()
        .filter(|t| t.outcome == TrialOutcome::Expired)
        .min_by_key(|t| t.planned_idle);
    // An error response that reached us came through the idle mapping: it was alive.
    let alive = m
        .trials
        .iter()
        .filter(|t| matches!(t.outcome, TrialOutcome::Alive | TrialOutcome::Error))
        .filter(|t| expired.is_none_or(|e| t.planned_idle < e.planned_idle))
        .map(idle)
        .max()
        .unwrap_or_default();
    match expired {
        Some(e) => BindingLifetimeResult::Bounded {
            survives_at_least: alive,
            expires_within: idle(e) + e.rtt.unwrap_or_default(),
            recommended_keepalive: recommended_keepalive(alive),
        },
        None => BindingLifetimeResult::AtLeast {
            survives_at_least: alive,
            recommended_keepalive: recommended_keepalive(alive),
        },
    }
}

/// The usual WireGuard persistent keepalive (NetBird's default), for the lifetime warning.
pub const WIREGUARD_KEEPALIVE: Duration = Duration::from_secs(25);

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 10.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

impl fmt::Display for BindingLifetimeResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindingLifetimeResult::Bounded {
                survives_at_least,
                expires_within,
                recommended_keepalive,
            } => write!(
                f,
                "idle mappings survive ≥ {} and expire ≤ {}: keepalive below {}",
                secs(*survives_at_least),
                secs(*expires_within),
                secs(*recommended_keepalive)
            ),
            BindingLifetimeResult::AtLeast {
                survives_at_least,
                recommended_keepalive,
            } => write!(
                f,
                "idle mappings survive ≥ {} (the longest idle time tried): keepalive below {} is safe",
                secs(*survives_at_least),
                secs(*recommended_keepalive)
            ),
            BindingLifetimeResult::Unknown { reason } => f.write_str(match reason {
                LifetimeUnknown::NoMapping => "unknown: the server did not answer",
                LifetimeUnknown::ResponsePortUnsupported => {
                    "unknown: the server does not honour RESPONSE-PORT (RFC 5780 §7.5)"
                }
                LifetimeUnknown::Inconclusive => "unknown: no trial finished",
            }),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The verdict

/// Ports of the NetBird STUN service (reference page "P2P (STUN) service").
const STUN_UDP_PORTS: &str = "{ 80, 443, 3478, 5555 }";

/// Classify everything: per-family reports and the verdict.
pub fn classify(m: &Measurements) -> Classification {
    let ipv4 = m.ipv4.as_ref().map(|f| classify_family(Family::Ipv4, f));
    let ipv6 = m.ipv6.as_ref().map(|f| classify_family(Family::Ipv6, f));
    let verdict = verdict(&[ipv4.as_ref(), ipv6.as_ref()], m, &m.relay);
    Classification {
        ipv4,
        ipv6,
        verdict,
    }
}

/// Level of one family with UDP, from the pair table against the representative peers.
fn udp_level(t: NatType) -> Level {
    match (
        pair_outcome(t, NatType::SYMMETRIC),
        pair_outcome(t, NatType::PORT_RESTRICTED_CONE),
        pair_outcome(t, NatType::OPEN),
    ) {
        (PairOutcome::Direct, _, _) => Level::Direct,
        (_, PairOutcome::Direct, _) => Level::DirectWithEim,
        (_, PairOutcome::Relayed, PairOutcome::Direct) => Level::DirectWithPermissivePeers,
        (_, _, PairOutcome::Relayed) => Level::RelayOnly,
        _ => Level::Unknown,
    }
}

fn server_ip(m: &Measurements) -> String {
    [m.ipv4.as_ref(), m.ipv6.as_ref()]
        .into_iter()
        .flatten()
        .find_map(|f| f.discovery.as_ref().and_then(|d| d.server))
        .map_or_else(|| "<stun ip>".to_owned(), |s| s.ip().to_string())
}

fn relay_sentence(relay: &RelayPaths) -> String {
    let mut works = Vec::new();
    if relay.turn_udp == Some(true) {
        works.push("TURN/UDP");
    }
    if relay.turn_tcp == Some(true) {
        works.push("TURN/TCP 443");
    }
    if relay.turn_tls == Some(true) {
        works.push("TURN/TLS");
    }
    if relay.relay_tcp443 == Some(true) {
        works.push("relay TCP/443");
    }
    if works.is_empty() {
        "relay path not tested".to_owned()
    } else {
        format!("relay path {} works", works.join(", "))
    }
}

fn fix_stun_turn_egress(stun: &str) -> Fix {
    Fix {
        title: "Allow outbound STUN (UDP 80, 443, 3478, 5555) and TURN (UDP 80, 443; TCP 443-65535) to the NetBird endpoints".into(),
        commands: vec![
            format!("nft add rule inet filter output ip daddr {stun} udp dport {STUN_UDP_PORTS} accept"),
            "nft add rule inet filter output ip daddr <turn ip> udp dport { 80, 443 } accept".into(),
            "nft add rule inet filter output ip daddr <turn ip> tcp dport 443-65535 accept".into(),
            format!("ufw allow out to {stun} port 3478 proto udp"),
            "ufw allow out to <turn ip> port 443 proto tcp".into(),
        ],
        caveat: Some("on a perimeter firewall, add the same as forward rules; resolve the endpoint names yourself (the STUN/TURN lists are dynamic and geo-distributed)".into()),
    }
}

fn fix_peer_udp() -> Fix {
    Fix {
        title: "Allow outbound UDP to any port, so WireGuard can reach peers directly".into(),
        commands: vec![
            "nft add rule inet filter output meta l4proto udp accept".into(),
            "ufw allow out proto udp to any".into(),
        ],
        caveat: Some("peers listen on arbitrary ports; without this every peer is relayed".into()),
    }
}

fn fix_relay() -> Fix {
    Fix {
        title:
            "Allow outbound TCP 443 to the relay and TURN endpoints (the fallback when UDP fails)"
                .into(),
        commands: vec![
            "nft add rule inet filter output ip daddr <relay ip> tcp dport 443 accept".into(),
            "ufw allow out to <relay ip> port 443 proto tcp".into(),
        ],
        caveat: None,
    }
}

fn fix_flat_network() -> Fix {
    Fix {
        title: "No NAT and a filtering firewall: allow inbound UDP for WireGuard P2P (flat networks)".into(),
        commands: vec![
            "ufw allow in proto udp to any port 49152:65535".into(),
            "nft add rule inet filter input udp dport 49152-65535 accept".into(),
        ],
        caveat: Some("this opens the ephemeral UDP range to every sender (Linux cannot scope it to the NetBird process); consider NetBird's relay fallback instead".into()),
    }
}

fn fix_eim() -> Fix {
    Fix {
        title: "Get endpoint-independent mapping on the NAT (RFC 4787 REQ-1), or rely on the relay".into(),
        commands: vec![
            "# Linux router: masquerade without --random-fully".into(),
            "iptables -t nat -A POSTROUTING -o <wan> -j MASQUERADE".into(),
        ],
        caveat: Some("CGNATs and managed firewalls often cannot be changed: keep the relay (TURN/TCP 443) reachable".into()),
    }
}

fn verdict(reports: &[Option<&NatReport>], m: &Measurements, relay: &RelayPaths) -> Verdict {
    let mut reasons = Vec::new();
    let mut fixes = Vec::new();
    let stun = server_ip(m);

    let tested: Vec<&NatReport> = reports
        .iter()
        .flatten()
        .copied()
        .filter(|r| r.udp != UdpStatus::NotTested)
        .collect();
    for r in reports.iter().flatten() {
        let fam = r.family;
        match r.binding_lifetime {
            Some(
                l @ BindingLifetimeResult::Bounded {
                    survives_at_least,
                    expires_within,
                    ..
                },
            ) => {
                reasons.push(format!("{fam}: {l}"));
                if survives_at_least < WIREGUARD_KEEPALIVE {
                    reasons.push(format!(
                        "{fam}: the NAT drops idle UDP mappings after {}–{}, sooner than the usual {} WireGuard keepalive: direct connections will break when idle unless the keepalive is shorter",
                        secs(survives_at_least),
                        secs(expires_within),
                        secs(WIREGUARD_KEEPALIVE)
                    ));
                }
            }
            Some(l) => reasons.push(format!("{fam}: {l}")),
            None => {}
        }
    }
    for r in &tested {
        let fam = r.family;
        match &r.udp {
            UdpStatus::Blocked => reasons.push(format!("{fam}: no STUN server answered over UDP")),
            UdpStatus::PortsRestricted { open, blocked } => reasons.push(format!(
                "{fam}: UDP answered on ports {open:?} but not on {blocked:?}: an egress filter allows only some ports"
            )),
            UdpStatus::Open | UdpStatus::NotTested => {
                let what = match r.nat {
                    NatPresence::Absent => "no NAT".to_owned(),
                    NatPresence::Present | NatPresence::Unknown => {
                        format!("NAT {}", r.nat_type)
                    }
                };
                reasons.push(format!(
                    "{fam}: UDP works, {what}{}",
                    r.public_address
                        .map(|a| format!(", public address {a}"))
                        .unwrap_or_default()
                ));
            }
        }
        for n in &r.notes {
            reasons.push(format!("{fam}: {n}"));
        }
    }

    // The best family wins: ICE gathers candidates in both.
    let best = tested
        .iter()
        .filter(|r| r.nat_type != NatType::UdpBlocked)
        .map(|r| (udp_level(r.nat_type), *r))
        .min_by_key(|(l, _)| *l);

    let relay_ok = relay.any_works();
    let (level, headline, peer_type) = match best {
        Some((level, r)) => {
            let headline = match level {
                Level::Direct => "Direct P2P likely".to_owned(),
                Level::DirectWithEim => {
                    "Direct only with peers on endpoint-independent NATs".to_owned()
                }
                Level::DirectWithPermissivePeers => {
                    "Mostly relayed: direct only with peers on open or full/restricted-cone NATs"
                        .to_owned()
                }
                Level::Unknown => {
                    "UDP works, NAT behaviour not pinned down: direct P2P possible, not proven"
                        .to_owned()
                }
                Level::RelayOnly | Level::Blocked => "Relay only".to_owned(),
            };
            match level {
                Level::DirectWithEim | Level::Unknown if r.nat == NatPresence::Absent => {
                    fixes.push(fix_flat_network());
                }
                Level::DirectWithPermissivePeers => fixes.push(fix_eim()),
                _ => {}
            }
            if level != Level::Direct {
                match relay_ok {
                    Some(false) => reasons.push(
                        "the relay is unreachable: peers that need it will not connect".into(),
                    ),
                    Some(true) => reasons.push(format!("fallback: {}", relay_sentence(relay))),
                    None => {}
                }
                if relay_ok == Some(false) {
                    fixes.push(fix_relay());
                }
            }
            (level, headline, r.nat_type)
        }
        None if tested.is_empty() => (
            Level::Unknown,
            "Nothing measured".to_owned(),
            NatType::UdpBlocked,
        ),
        None => {
            let restricted: Vec<u16> = tested
                .iter()
                .filter_map(|r| match &r.udp {
                    UdpStatus::PortsRestricted { open, .. } => Some(open.clone()),
                    _ => None,
                })
                .flatten()
                .collect();
            let why = if restricted.is_empty() {
                "UDP blocked".to_owned()
            } else {
                let ports: Vec<String> = restricted.iter().map(u16::to_string).collect();
                format!("outbound UDP only to port {}", ports.join(", "))
            };
            fixes.push(fix_stun_turn_egress(&stun));
            fixes.push(fix_peer_udp());
            match relay_ok {
                Some(false) => {
                    fixes.push(fix_relay());
                    (
                        Level::Blocked,
                        "Blocked: no path to the relay".to_owned(),
                        NatType::UdpBlocked,
                    )
                }
                _ => {
                    if relay_ok.is_none() && !relay.tcp_works() {
                        reasons.push("relay reachability was not measured".into());
                    }
                    (
                        Level::RelayOnly,
                        format!("Relay only ({why}) — {}", relay_sentence(relay)),
                        NatType::UdpBlocked,
                    )
                }
            }
        }
    };

    let mut headline = headline;
    if let Some(pm) = m.port_mapping.as_ref().filter(|p| p.available()) {
        let external = pm
            .external_address()
            .map(|a| format!(", external address {a}"))
            .unwrap_or_default();
        reasons.push(format!(
            "the gateway{} offers port mapping ({}{external})",
            pm.gateway.map(|g| format!(" {g}")).unwrap_or_default(),
            pm.protocols().join(", ")
        ));
        if pm.gateway_has_no_public_address() {
            reasons.push(
                "but NAT-PMP reports a network failure: the gateway has no public address itself (double NAT?), so its mappings do not make this host reachable".into(),
            );
        } else if matches!(
            level,
            Level::DirectWithEim | Level::DirectWithPermissivePeers
        ) {
            headline.push_str(
                " (the gateway offers port mapping: a client that requests a mapping is reachable directly, even from symmetric NATs)",
            );
            reasons.push(
                "a port mapped through NAT-PMP, PCP or UPnP is endpoint-independent and unfiltered, so peers behind symmetric NATs can reach it; the table below assumes no mapping is requested".into(),
            );
        }
    } else if let Some(pm) = &m.port_mapping {
        if pm.gateway.is_some() {
            reasons.push("the gateway offers no port mapping (NAT-PMP, PCP, UPnP IGD)".into());
        }
    }

    let peers = NatType::TABLE
        .iter()
        .map(|(t, label)| PeerRow {
            peer: *t,
            label: (*label).to_owned(),
            outcome: pair_outcome(peer_type, *t),
        })
        .collect();
    Verdict {
        level,
        headline,
        reasons,
        fixes,
        peers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::BindingOutcome;
    use crate::stun::TransactionId;

    const P: &str = "192.0.2.10:3478";
    const O: &str = "192.0.2.11:3479";
    const LOCAL: &str = "10.0.0.2:40001";
    const PUBLIC: &str = "198.51.100.1:40001";

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn outcome(dest: &str, status: BindingStatus, source: Option<&str>) -> BindingOutcome {
        BindingOutcome {
            transaction_id: TransactionId([1; 12]),
            destination: a(dest),
            source: source.map(a),
            status,
            rtt: None,
            rtt_ambiguous: false,
            transmissions: 1,
        }
    }

    fn resp(mapped: &str, other: Option<&str>, origin: Option<&str>) -> BindingResponse {
        BindingResponse {
            xor_mapped: Some(a(mapped)),
            mapped: Some(a(mapped)),
            other_address: other.map(a),
            response_origin: origin.map(a),
            software: Some("test".into()),
            fingerprint: true,
            unknown_attribute: None,
        }
    }

    /// A reply from `from` (also its RESPONSE-ORIGIN) mapping to `mapped`.
    fn ok(dest: &str, from: &str, mapped: &str) -> Option<BindingOutcome> {
        Some(outcome(
            dest,
            BindingStatus::Success(resp(mapped, Some(O), Some(from))),
            Some(from),
        ))
    }

    fn silent(dest: &str) -> Option<BindingOutcome> {
        Some(outcome(dest, BindingStatus::Timeout, None))
    }

    /// RFC 5780 measurements of an EIM NAT with the given filtering replies.
    fn eim(
        filt_ii: Option<BindingOutcome>,
        filt_iii: Option<BindingOutcome>,
    ) -> FamilyMeasurements {
        FamilyMeasurements {
            lifetime: None,
            discovery: Some(DiscoveryMeasurements {
                server: Some(a(P)),
                local_mapping: Some(a(LOCAL)),
                mapping_i: ok(P, P, PUBLIC),
                mapping_ii: ok("192.0.2.11:3478", "192.0.2.11:3478", PUBLIC),
                mapping_iii: ok(O, O, PUBLIC),
                filtering_ii: filt_ii,
                filtering_iii: filt_iii,
                hairpin: Some(HairpinResult::NotReceived),
                ..DiscoveryMeasurements::default()
            }),
            multi: None,
            local_addresses: vec![a(LOCAL).ip()],
        }
    }

    fn report(m: &FamilyMeasurements) -> NatReport {
        classify_family(Family::Ipv4, m)
    }

    fn v4(m: FamilyMeasurements, relay: RelayPaths) -> Classification {
        classify(&Measurements {
            port_mapping: None,
            ipv4: Some(m),
            ipv6: None,
            relay,
        })
    }

    // --- Pair table: every row, RFC 4787 + RFC 8445 rules (see pair_outcome) ---

    #[test]
    fn pair_table_every_row() {
        use PairOutcome::{Direct as D, Relayed as R};
        let t = [
            NatType::OPEN,
            NatType::RESTRICTED_CONE,
            NatType::PORT_RESTRICTED_CONE,
            NatType::ADDRESS_DEPENDENT,
            NatType::SYMMETRIC,
            NatType::UdpBlocked,
        ];
        // rows: me; columns: peer (same order as `t`)
        let expected = [
            [D, D, D, D, D, R], // open / full cone: everyone with UDP reaches it
            [D, D, D, D, D, R], // restricted cone: lets a symmetric peer's new port in
            [D, D, D, R, R, R], // port-restricted: only with EIM peers
            [D, D, R, R, R, R], // ADM: needs an EIM peer that filters by address at most
            [D, D, R, R, R, R], // symmetric: same
            [R, R, R, R, R, R], // UDP blocked: always relay
        ];
        for (i, me) in t.iter().enumerate() {
            for (j, peer) in t.iter().enumerate() {
                assert_eq!(
                    pair_outcome(*me, *peer),
                    expected[i][j],
                    "me {me}, peer {peer}"
                );
                assert_eq!(
                    pair_outcome(*me, *peer),
                    pair_outcome(*peer, *me),
                    "symmetric"
                );
            }
        }
        assert_eq!(NatType::TABLE.map(|(t, _)| t), t);
    }

    #[test]
    fn pair_with_unknowns_is_uncertain_only_when_it_matters() {
        let eim_unknown = NatType::udp(Mapping::EndpointIndependent, Filtering::Unknown);
        // Against an EIM peer every filtering works.
        assert_eq!(
            pair_outcome(eim_unknown, NatType::PORT_RESTRICTED_CONE),
            PairOutcome::Direct
        );
        // Against a symmetric peer it depends on the filtering.
        assert_eq!(
            pair_outcome(eim_unknown, NatType::SYMMETRIC),
            PairOutcome::Uncertain
        );
        let varies = NatType::udp(
            Mapping::VariesByDestination,
            Filtering::AddressAndPortDependent,
        );
        assert_eq!(
            pair_outcome(varies, NatType::SYMMETRIC),
            PairOutcome::Relayed
        );
        let unknown = NatType::udp(Mapping::Unknown, Filtering::Unknown);
        assert_eq!(pair_outcome(unknown, NatType::OPEN), PairOutcome::Direct);
        assert_eq!(
            pair_outcome(unknown, NatType::SYMMETRIC),
            PairOutcome::Uncertain
        );
    }

    #[test]
    fn apdm_with_permissive_filtering_still_punches_to_an_address_filtering_peer() {
        // Rule 1 with EIF on one side, rule 2 with ADF on the other: the model is not a lookup
        // table of the common cases.
        let a = NatType::udp(
            Mapping::AddressAndPortDependent,
            Filtering::EndpointIndependent,
        );
        let b = NatType::udp(
            Mapping::AddressAndPortDependent,
            Filtering::AddressDependent,
        );
        assert_eq!(pair_outcome(a, b), PairOutcome::Direct);
    }

    // --- Filtering and its trust rules ---

    #[test]
    fn filtering_classes_from_rfc5780_replies() {
        let eif = report(&eim(ok(P, O, PUBLIC), silent(P)));
        assert_eq!(eif.filtering, Some(Filtering::EndpointIndependent));
        assert_eq!(eif.mapping, Some(Mapping::EndpointIndependent));
        assert_eq!(eif.mapping_method, MappingMethod::Rfc5780);

        let adf = report(&eim(silent(P), ok(P, "192.0.2.10:3479", PUBLIC)));
        assert_eq!(adf.filtering, Some(Filtering::AddressDependent));

        let apdf = report(&eim(silent(P), silent(P)));
        assert_eq!(apdf.filtering, Some(Filtering::AddressAndPortDependent));
        assert_eq!(apdf.nat_type, NatType::PORT_RESTRICTED_CONE);
        assert_eq!(apdf.hairpinning, Some(false));
        assert_eq!(apdf.port_preservation, Some(true));
    }

    #[test]
    fn trust_changed_reply_from_the_primary_is_not_eif() {
        // The server ignored CHANGE-REQUEST and answered from P: proves nothing.
        let r = report(&eim(ok(P, P, PUBLIC), silent(P)));
        assert_eq!(r.filtering, Some(Filtering::Unknown));
        assert!(matches!(
            r.notes.as_slice(),
            [Note::ChangedReplyUntrusted {
                test: ChangeTest::IpAndPort,
                ..
            }]
        ));
    }

    #[test]
    fn trust_response_origin_must_name_the_changed_address() {
        // Right source, but RESPONSE-ORIGIN says the primary.
        let lying = Some(outcome(
            P,
            BindingStatus::Success(resp(PUBLIC, Some(O), Some(P))),
            Some(O),
        ));
        let r = report(&eim(lying, silent(P)));
        assert_eq!(r.filtering, Some(Filtering::Unknown));
        // Change-port reply claiming the wrong origin.
        let lying3 = Some(outcome(
            P,
            BindingStatus::Success(resp(PUBLIC, Some(O), Some(O))),
            Some("192.0.2.10:3479"),
        ));
        let r = report(&eim(silent(P), lying3));
        assert_eq!(r.filtering, Some(Filtering::Unknown));
    }

    #[test]
    fn trust_missing_response_origin_is_judged_by_source_with_a_note() {
        let bare = Some(outcome(
            P,
            BindingStatus::Success(resp(PUBLIC, Some(O), None)),
            Some(O),
        ));
        let r = report(&eim(bare, silent(P)));
        assert_eq!(r.filtering, Some(Filtering::EndpointIndependent));
        assert!(r.notes.contains(&Note::NoResponseOrigin {
            test: ChangeTest::IpAndPort
        }));
    }

    #[test]
    fn trust_other_address_on_the_same_ip() {
        let mut m = eim(ok(P, "192.0.2.10:3479", PUBLIC), silent(P));
        let d = m.discovery.as_mut().unwrap();
        d.mapping_i = Some(outcome(
            P,
            BindingStatus::Success(resp(PUBLIC, Some("192.0.2.10:3479"), Some(P))),
            Some(P),
        ));
        d.mapping_ii = ok(P, P, PUBLIC);
        d.mapping_iii = ok("192.0.2.10:3479", "192.0.2.10:3479", PUBLIC);
        let r = report(&m);
        assert_eq!(r.filtering, Some(Filtering::Unknown));
        assert_eq!(r.mapping, Some(Mapping::Unknown));
        assert!(r.notes.contains(&Note::EimOrAdm));
        // A different mapping for another port of the same IP is still port dependence.
        m.discovery.as_mut().unwrap().mapping_iii =
            ok("192.0.2.10:3479", "192.0.2.10:3479", "198.51.100.1:5000");
        assert_eq!(report(&m).mapping, Some(Mapping::AddressAndPortDependent));
    }

    #[test]
    fn trust_silence_proves_nothing_when_the_other_address_is_dead() {
        let mut m = eim(silent(P), silent(P));
        let d = m.discovery.as_mut().unwrap();
        d.mapping_iii = silent(O);
        let r = report(&m);
        assert_eq!(r.filtering, Some(Filtering::Unknown));
        assert!(r.notes.contains(&Note::OtherAddressSilent { other: a(O) }));
    }

    #[test]
    fn trust_change_request_error_is_unknown() {
        let err = Some(outcome(
            P,
            BindingStatus::Error {
                code: 420,
                reason: "Unknown Attribute".into(),
            },
            Some(P),
        ));
        let r = report(&eim(err, silent(P)));
        assert_eq!(r.filtering, Some(Filtering::Unknown));
        assert!(r.notes.contains(&Note::ChangeRequestRejected {
            test: ChangeTest::IpAndPort,
            code: 420
        }));
    }

    // --- Mapping ---

    #[test]
    fn mapping_classes_from_rfc5780() {
        let mut m = eim(silent(P), silent(P));
        let d = m.discovery.as_mut().unwrap();
        d.mapping_ii = ok("192.0.2.11:3478", "192.0.2.11:3478", "198.51.100.1:2");
        d.mapping_iii = ok(O, O, "198.51.100.1:2");
        assert_eq!(report(&m).mapping, Some(Mapping::AddressDependent));
        m.discovery.as_mut().unwrap().mapping_iii = ok(O, O, "198.51.100.1:3");
        assert_eq!(report(&m).mapping, Some(Mapping::AddressAndPortDependent));
        m.discovery.as_mut().unwrap().mapping_iii = silent(O);
        assert_eq!(report(&m).mapping, Some(Mapping::VariesByDestination));
    }

    fn multi(results: &[(&str, Option<&str>)]) -> FamilyMeasurements {
        FamilyMeasurements {
            lifetime: None,
            discovery: None,
            multi: Some(MultiMeasurements {
                local: Some(a(LOCAL)),
                results: results
                    .iter()
                    .map(|(d, m)| match m {
                        Some(m) => outcome(d, BindingStatus::Success(resp(m, None, None)), Some(d)),
                        None => outcome(d, BindingStatus::Timeout, None),
                    })
                    .collect(),
            }),
            local_addresses: vec![],
        }
    }

    #[test]
    fn mapping_from_several_plain_servers() {
        let (x, y) = ("198.51.100.1:1", "198.51.100.1:2");
        let r = report(&multi(&[
            ("192.0.2.1:3478", Some(x)),
            ("192.0.2.2:3478", Some(x)),
        ]));
        assert_eq!(r.mapping, Some(Mapping::EndpointIndependent));
        assert_eq!(r.mapping_method, MappingMethod::MultiServer);
        assert_eq!(r.filtering, Some(Filtering::Unknown));
        assert!(r.notes.contains(&Note::FilteringNeedsRfc5780));

        let r = report(&multi(&[
            ("192.0.2.1:3478", Some(x)),
            ("192.0.2.1:19302", Some(y)),
        ]));
        assert_eq!(r.mapping, Some(Mapping::AddressAndPortDependent));

        let r = report(&multi(&[
            ("192.0.2.1:3478", Some(x)),
            ("192.0.2.1:19302", Some(x)),
            ("192.0.2.2:3478", Some(y)),
        ]));
        assert_eq!(r.mapping, Some(Mapping::AddressDependent));

        let r = report(&multi(&[
            ("192.0.2.1:3478", Some(x)),
            ("192.0.2.2:3478", Some(y)),
        ]));
        assert_eq!(r.mapping, Some(Mapping::VariesByDestination));

        let r = report(&multi(&[
            ("192.0.2.1:3478", Some(x)),
            ("192.0.2.1:19302", Some(x)),
        ]));
        assert_eq!(r.mapping, Some(Mapping::Unknown));
        assert!(r.notes.contains(&Note::OneServerIp));

        let r = report(&multi(&[
            ("192.0.2.1:3478", Some(x)),
            ("192.0.2.2:3478", None),
        ]));
        assert_eq!(
            r.mapping,
            Some(Mapping::Unknown),
            "one answer is not a comparison"
        );
    }

    #[test]
    fn conflicting_methods_are_noted() {
        let mut m = eim(silent(P), silent(P));
        m.multi = multi(&[
            ("192.0.2.1:3478", Some("198.51.100.1:1")),
            ("192.0.2.1:19302", Some("198.51.100.1:2")),
        ])
        .multi;
        let r = report(&m);
        assert_eq!(r.mapping, Some(Mapping::EndpointIndependent));
        assert!(
            r.notes
                .iter()
                .any(|n| matches!(n, Note::MappingConflict { .. }))
        );
    }

    // --- No NAT, ALG, UDP ---

    #[test]
    fn no_nat_is_not_a_filtering_class() {
        let mut m = eim(silent(P), silent(P));
        let d = m.discovery.as_mut().unwrap();
        d.mapping_i = ok(P, P, LOCAL);
        d.mapping_ii = ok("192.0.2.11:3478", "192.0.2.11:3478", LOCAL);
        d.mapping_iii = ok(O, O, LOCAL);
        let r = report(&m);
        assert_eq!(r.nat, NatPresence::Absent);
        assert_eq!((r.mapping, r.filtering), (None, None));
        assert_eq!(
            r.firewall_filtering,
            Some(Filtering::AddressAndPortDependent)
        );
        assert_eq!(r.hairpinning, None);
        assert_eq!(r.port_preservation, None);
        assert_eq!(r.nat_type, NatType::PORT_RESTRICTED_CONE);
        // Wildcard-bound socket: recognised through the host's address list.
        let d = m.discovery.as_mut().unwrap();
        d.local_mapping = Some(a("0.0.0.0:40001"));
        assert_eq!(report(&m).nat, NatPresence::Absent);
        m.local_addresses.clear();
        assert_eq!(report(&m).nat, NatPresence::Unknown);
    }

    #[test]
    fn port_rewrite_on_own_ip_counts_as_nat() {
        let mut m = eim(silent(P), silent(P));
        m.discovery.as_mut().unwrap().mapping_i = ok(P, P, "10.0.0.2:9999");
        let r = report(&m);
        assert_eq!(r.nat, NatPresence::Present);
        assert_eq!(r.port_preservation, Some(false));
    }

    #[test]
    fn alg_rewriting_mapped_address_is_flagged() {
        let mut m = eim(silent(P), silent(P));
        let mut r1 = resp(PUBLIC, Some(O), Some(P));
        r1.mapped = Some(a(LOCAL));
        m.discovery.as_mut().unwrap().mapping_i =
            Some(outcome(P, BindingStatus::Success(r1), Some(P)));
        let r = report(&m);
        assert!(r.alg_detected);
        assert!(r.notes.iter().any(|n| matches!(n, Note::Alg { .. })));
        // The XOR form is the one believed.
        assert_eq!(r.public_address, Some(a(PUBLIC)));
    }

    fn blocked() -> FamilyMeasurements {
        FamilyMeasurements {
            lifetime: None,
            discovery: Some(DiscoveryMeasurements {
                server: Some(a(P)),
                mapping_i: silent(P),
                filtering_ii: silent(P),
                filtering_iii: silent(P),
                ..DiscoveryMeasurements::default()
            }),
            multi: None,
            local_addresses: vec![],
        }
    }

    #[test]
    fn udp_blocked_relay_over_tcp_works() {
        let c = v4(
            blocked(),
            RelayPaths {
                turn_udp: Some(false),
                turn_tcp: Some(true),
                ..RelayPaths::default()
            },
        );
        assert_eq!(c.ipv4.as_ref().unwrap().udp, UdpStatus::Blocked);
        assert_eq!(c.verdict.level, Level::RelayOnly);
        assert_eq!(
            c.verdict.headline,
            "Relay only (UDP blocked) — relay path TURN/TCP 443 works"
        );
        assert!(c.verdict.fixes.iter().any(|f| f.commands.iter().any(|c| c
            == "nft add rule inet filter output ip daddr 192.0.2.10 udp dport { 80, 443, 3478, 5555 } accept")));
        assert!(
            c.verdict
                .peers
                .iter()
                .all(|p| p.outcome == PairOutcome::Relayed)
        );
    }

    #[test]
    fn udp_blocked_and_relay_unreachable_is_blocked() {
        let c = v4(
            blocked(),
            RelayPaths {
                turn_udp: Some(false),
                turn_tcp: Some(false),
                turn_tls: Some(false),
                relay_tcp443: Some(false),
            },
        );
        assert_eq!(c.verdict.level, Level::Blocked);
        assert_eq!(c.verdict.headline, "Blocked: no path to the relay");
        assert!(c.verdict.fixes.iter().any(|f| f.title.contains("TCP 443")));
    }

    #[test]
    fn udp_blocked_relay_untested() {
        let c = v4(blocked(), RelayPaths::default());
        assert_eq!(c.verdict.level, Level::RelayOnly);
        assert!(c.verdict.headline.contains("relay path not tested"));
    }

    #[test]
    fn udp_only_to_one_port_means_relay() {
        let mut m = eim(silent(P), silent(P));
        m.discovery.as_mut().unwrap().mapping_iii = silent(O);
        m.discovery.as_mut().unwrap().mapping_ii = ok("192.0.2.11:3478", "192.0.2.11:3478", PUBLIC);
        let mut m2 = m.clone();
        m2.multi = multi(&[("192.0.2.11:5555", None)]).multi;
        let c = v4(
            m,
            RelayPaths {
                turn_udp: Some(true),
                ..RelayPaths::default()
            },
        );
        assert_eq!(
            c.ipv4.as_ref().unwrap().udp,
            UdpStatus::PortsRestricted {
                open: vec![3478],
                blocked: vec![3479]
            }
        );
        assert_eq!(c.verdict.level, Level::RelayOnly);
        assert_eq!(
            c.verdict.headline,
            "Relay only (outbound UDP only to port 3478) — relay path TURN/UDP works"
        );
        let r2 = report(&m2);
        assert_eq!(
            r2.udp,
            UdpStatus::PortsRestricted {
                open: vec![3478],
                blocked: vec![3479, 5555]
            }
        );
    }

    // --- Verdict levels ---

    #[test]
    fn verdict_levels_by_nat_type() {
        let c = v4(eim(ok(P, O, PUBLIC), silent(P)), RelayPaths::default());
        assert_eq!(c.verdict.level, Level::Direct);
        assert_eq!(c.verdict.headline, "Direct P2P likely");

        let c = v4(eim(silent(P), silent(P)), RelayPaths::default());
        assert_eq!(c.verdict.level, Level::DirectWithEim);
        assert_eq!(
            c.verdict.headline,
            "Direct only with peers on endpoint-independent NATs"
        );
        assert_eq!(
            c.verdict
                .peers
                .iter()
                .map(|p| p.outcome)
                .collect::<Vec<_>>(),
            [
                PairOutcome::Direct,
                PairOutcome::Direct,
                PairOutcome::Direct,
                PairOutcome::Relayed,
                PairOutcome::Relayed,
                PairOutcome::Relayed
            ]
        );

        let mut m = eim(silent(P), silent(P));
        let d = m.discovery.as_mut().unwrap();
        d.mapping_ii = ok("192.0.2.11:3478", "192.0.2.11:3478", "198.51.100.1:2");
        d.mapping_iii = ok(O, O, "198.51.100.1:3");
        let c = v4(
            m,
            RelayPaths {
                relay_tcp443: Some(false),
                turn_udp: Some(false),
                turn_tcp: Some(false),
                turn_tls: Some(false),
            },
        );
        assert_eq!(c.verdict.level, Level::DirectWithPermissivePeers);
        assert!(
            c.verdict
                .fixes
                .iter()
                .any(|f| f.title.contains("RFC 4787 REQ-1"))
        );
        assert!(
            c.verdict
                .reasons
                .iter()
                .any(|r| r.contains("relay is unreachable"))
        );
    }

    #[test]
    fn verdict_unknown_behaviour() {
        let c = v4(
            multi(&[("192.0.2.1:3478", Some(PUBLIC))]),
            RelayPaths::default(),
        );
        assert_eq!(c.verdict.level, Level::Unknown);
    }

    #[test]
    fn flat_network_fix_for_a_filtering_host_without_nat() {
        let mut m = eim(silent(P), silent(P));
        let d = m.discovery.as_mut().unwrap();
        d.mapping_i = ok(P, P, LOCAL);
        let c = v4(m, RelayPaths::default());
        let fix = c
            .verdict
            .fixes
            .iter()
            .find(|f| f.title.contains("flat networks"))
            .unwrap();
        assert!(
            fix.commands
                .contains(&"ufw allow in proto udp to any port 49152:65535".to_owned())
        );
        assert!(fix.caveat.as_deref().unwrap().contains("relay fallback"));
        assert!(c.verdict.reasons.iter().any(|r| r.contains("no NAT")));
    }

    #[test]
    fn best_family_wins() {
        let c = classify(&Measurements {
            port_mapping: None,
            ipv4: Some(blocked()),
            ipv6: Some(eim(ok(P, O, PUBLIC), silent(P))),
            relay: RelayPaths::default(),
        });
        assert_eq!(c.ipv4.unwrap().udp, UdpStatus::Blocked);
        assert_eq!(c.verdict.level, Level::Direct);
        assert!(
            c.verdict
                .reasons
                .iter()
                .any(|r| r.starts_with("IPv4: no STUN"))
        );
    }

    #[test]
    fn nothing_measured() {
        let c = classify(&Measurements::default());
        assert_eq!(c.verdict.level, Level::Unknown);
        assert_eq!(c.verdict.headline, "Nothing measured");
    }

    #[test]
    fn results_are_serializable() {
        fn ser<T: serde::Serialize>() {}
        ser::<Classification>();
        ser::<Measurements>();
        fn de<T: serde::de::DeserializeOwned>() {}
        de::<NatType>();
        de::<Fix>();
        de::<PeerRow>();
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

    // --- Binding lifetime and port mapping ---

    fn trial(planned: u64, outcome: TrialOutcome) -> Trial {
        Trial {
            planned_idle: Duration::from_secs(planned),
            idle: Some(Duration::from_secs(planned)),
            mapped: Some(a(PUBLIC)),
            rtt: Some(Duration::from_millis(500)),
            outcome,
        }
    }

    fn lifetime(trials: Vec<Trial>) -> LifetimeMeasurements {
        LifetimeMeasurements {
            server: a(P),
            max_idle: Duration::from_secs(120),
            trials,
        }
    }

    #[test]
    fn lifetime_bounds_come_from_the_first_expiry() {
        use TrialOutcome::*;
        let m = lifetime(vec![
            trial(0, Alive),
            trial(10, Alive),
            trial(20, Alive),
            trial(30, Expired),
            trial(40, Skipped),
        ]);
        assert_eq!(
            binding_lifetime(&m),
            BindingLifetimeResult::Bounded {
                survives_at_least: Duration::from_secs(20),
                expires_within: Duration::from_millis(30_500),
                recommended_keepalive: Duration::from_secs(13),
            }
        );
        // An answer after the first expiry (a non-monotonic NAT or a lost trigger) does not
        // raise the lower bound past the upper one.
        let odd = lifetime(vec![trial(0, Alive), trial(10, Expired), trial(20, Alive)]);
        let BindingLifetimeResult::Bounded {
            survives_at_least, ..
        } = binding_lifetime(&odd)
        else {
            panic!()
        };
        assert_eq!(survives_at_least, Duration::ZERO);
        // Control failures.
        for (outcome, reason) in [
            (NotOpened, LifetimeUnknown::NoMapping),
            (Expired, LifetimeUnknown::ResponsePortUnsupported),
            (Error, LifetimeUnknown::ResponsePortUnsupported),
        ] {
            assert_eq!(
                binding_lifetime(&lifetime(vec![trial(0, outcome), trial(10, Skipped)])),
                BindingLifetimeResult::Unknown { reason }
            );
        }
        assert_eq!(
            recommended_keepalive(Duration::from_millis(2900)),
            Duration::from_millis(1900)
        );
    }

    #[test]
    fn short_lifetime_warns_about_the_wireguard_keepalive() {
        use TrialOutcome::*;
        let mut fm = eim(ok(P, O, PUBLIC), silent(P));
        fm.lifetime = Some(lifetime(vec![
            trial(0, Alive),
            trial(15, Alive),
            trial(20, Expired),
        ]));
        let c = v4(fm, RelayPaths::default());
        let r = c.ipv4.as_ref().unwrap();
        assert!(matches!(
            r.binding_lifetime,
            Some(BindingLifetimeResult::Bounded { .. })
        ));
        let reasons = c.verdict.reasons.join("\n");
        assert!(
            reasons.contains("survive ≥ 15 s and expire ≤ 20 s"),
            "{reasons}"
        );
        assert!(reasons.contains("WireGuard keepalive"), "{reasons}");

        let mut fm = eim(ok(P, O, PUBLIC), silent(P));
        fm.lifetime = Some(lifetime(vec![trial(0, Alive), trial(120, Alive)]));
        let c = v4(fm, RelayPaths::default());
        let reasons = c.verdict.reasons.join("\n");
        assert!(reasons.contains("survive ≥ 120 s"), "{reasons}");
        assert!(!reasons.contains("WireGuard keepalive"), "{reasons}");
    }

    fn symmetric() -> FamilyMeasurements {
        // APDM: mapping II differs from I and III from II.
        let mut fm = eim(silent(P), silent(P));
        if let Some(d) = fm.discovery.as_mut() {
            d.mapping_ii = ok("192.0.2.11:3478", "192.0.2.11:3478", "198.51.100.1:40002");
            d.mapping_iii = ok(O, O, "198.51.100.1:40003");
        }
        fm
    }

    fn with_portmap(fm: FamilyMeasurements, pm: PortMapping) -> Classification {
        classify(&Measurements {
            ipv4: Some(fm),
            ipv6: None,
            relay: RelayPaths::default(),
            port_mapping: Some(pm),
        })
    }

    #[test]
    fn port_mapping_upgrades_the_symmetric_wording() {
        use crate::nat::portmap::ProtocolStatus;
        let gw = Some(std::net::Ipv4Addr::new(192, 168, 1, 1));
        let pm = PortMapping {
            gateway: gw,
            nat_pmp: ProtocolStatus::Available {
                external: Some("198.51.100.1".parse().unwrap()),
                epoch: 5,
            },
            ..PortMapping::default()
        };
        let c = with_portmap(symmetric(), pm.clone());
        assert_eq!(c.verdict.level, Level::DirectWithPermissivePeers);
        assert!(
            c.verdict.headline.contains("port mapping"),
            "{}",
            c.verdict.headline
        );
        let reasons = c.verdict.reasons.join("\n");
        assert!(
            reasons.contains("offers port mapping (NAT-PMP, external address 198.51.100.1)"),
            "{reasons}"
        );
        assert!(reasons.contains("symmetric NATs can reach it"), "{reasons}");

        // A gateway without a public address of its own: said, and no upgrade.
        let double = PortMapping {
            nat_pmp: ProtocolStatus::Refused {
                code: 3,
                meaning: "network failure",
            },
            pcp: ProtocolStatus::Available {
                external: None,
                epoch: 1,
            },
            ..pm
        };
        let c = with_portmap(symmetric(), double);
        assert!(!c.verdict.headline.contains("port mapping"));
        assert!(c.verdict.reasons.join("\n").contains("network failure"));

        // Nothing offered.
        let none = PortMapping {
            gateway: gw,
            nat_pmp: ProtocolStatus::Unreachable,
            pcp: ProtocolStatus::Unreachable,
            ..PortMapping::default()
        };
        let c = with_portmap(symmetric(), none);
        assert!(c.verdict.reasons.join("\n").contains("no port mapping"));
    }
}
