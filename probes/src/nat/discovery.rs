//! RFC 5780 NAT behaviour discovery: the tests of RFC 5780 §4 against one server that
//! advertises OTHER-ADDRESS (RFC 5780 §7.4), what each sends and where its outcome goes.
//!
//! The tests run inside one family's [`FamilyRun`](super::family::FamilyRun), beside the
//! multi-server comparison, on the run's shared RTT-adaptive schedule
//! ([`timing`](super::timing)). Nothing here draws conclusions: the pure
//! [`rules`](super::rules) turn the measurements into a NAT report, so the trust rules live in
//! one place and are tested without any probe.
//!
//! # Tests and sockets
//!
//! | test | local socket | sent to | RFC |
//! |---|---|---|---|
//! | mapping I | [`MAPPING_SOCKET`] | primary P | RFC 5780 §4.3 (test I) |
//! | mapping II | [`MAPPING_SOCKET`] | OTHER-ADDRESS IP, primary port | RFC 5780 §4.3 (test II) |
//! | mapping III | [`MAPPING_SOCKET`] | OTHER-ADDRESS IP and port | RFC 5780 §4.3 (test III) |
//! | filtering II | [`FILTERING_SOCKET`] | P, CHANGE-REQUEST change IP + port | RFC 5780 §4.4 (test II) |
//! | filtering III | [`FILTERING_SOCKET`] | P, CHANGE-REQUEST change port | RFC 5780 §4.4 (test III) |
//! | hairpinning (opt-in) | [`HAIRPIN_SOCKET`] | the mapped address from mapping I | RFC 5780 §4.5 |
//!
//! # Concurrency
//!
//! RFC 5780 describes the tests one after the other on one socket. They run here as
//! concurrently as their dependencies allow, so a run lasts about one round trip plus one
//! silent schedule:
//! - The filtering tests use their own socket, so the mapping tests' packets to the other
//!   address cannot open the NAT's filter for the replies they wait for (an address-dependent
//!   filter would otherwise pass a change-IP reply and look endpoint-independent). Both
//!   filtering requests go to P only, so they do not disturb each other; they start at once,
//!   alongside mapping test I. The filtering test I of RFC 5780 §4.4 (the plain Binding that
//!   establishes the mapping) is implied: each CHANGE-REQUEST request creates the mapping.
//! - Mapping tests II and III need OTHER-ADDRESS, and hairpinning needs the mapped address, so
//!   they start when mapping test I succeeds; they then run together. Test III is sent even when
//!   test II already shows an endpoint-independent mapping: it costs one request and shows
//!   whether UDP to the alternate port gets out at all.
//!
//! # Hairpinning (RFC 5780 §4.5, RFC 4787 §6), off by default
//!
//! The hairpin test sends an ordinary Binding request, with its own transaction id, from
//! [`HAIRPIN_SOCKET`] to the mapped address of [`MAPPING_SOCKET`]. If the NAT hairpins, the
//! request arrives at the client's own mapping socket, which the run recognises as a Binding
//! *request* carrying the hairpin transaction id. Nobody answers it, so absence is detected by
//! the transaction's timeout.
//!
//! It is opt-in ([`DiscoveryConfig::hairpinning`] is false by default): a packet from the
//! firewall's own public address to itself is what a LAND attack looks like, and some
//! firewalls (Palo Alto's among them) answer it by dropping the host's live NAT sessions.
//! Tailscale's netcheck removed its hairpin probe for that reason.
//!
//! # Local addresses
//!
//! Port preservation and "no NAT" compare the mapped address with the local one, which only
//! the engine knows: it reports each private socket's bound address (`handle_local_addr`; a
//! wildcard IP is fine, the classifier also takes the host's interface addresses).

use std::net::SocketAddr;

use super::transaction::Request;
use crate::binding::{BindingConfig, BindingOutcome, BindingStatus, SourceCheck};
use crate::machine::LocalSocket;
use crate::stun::attr::ChangeRequest;

/// Socket of the mapping tests (and of the mapped address the hairpin test aims at).
pub const MAPPING_SOCKET: LocalSocket = LocalSocket::Private(0);
/// Socket the hairpin request leaves from.
pub const HAIRPIN_SOCKET: LocalSocket = LocalSocket::Private(1);
/// Socket of the filtering tests: a fresh mapping that has only ever sent to the primary address.
pub const FILTERING_SOCKET: LocalSocket = LocalSocket::Private(2);

/// Which RFC 5780 tests run, against which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// The server's primary address (it must support RFC 5780 for the full result).
    pub server: SocketAddr,
    /// Run the filtering tests (RFC 5780 §4.4).
    pub filtering: bool,
    /// Run the hairpinning test (RFC 5780 §4.5); off by default (see the module docs).
    pub hairpinning: bool,
    /// SOFTWARE sent in requests.
    pub software: Option<&'static str>,
}

impl DiscoveryConfig {
    /// Every test but hairpinning.
    pub fn new(server: SocketAddr) -> Self {
        Self {
            server,
            filtering: true,
            hairpinning: false,
            software: BindingConfig::default().software,
        }
    }
}

/// Whether the hairpinned request came back (RFC 5780 §4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "result")]
pub enum HairpinResult {
    /// The request arrived back; `source` is the address it came from (the NAT's mapping of
    /// the hairpin socket, or its private address for NATs that do not translate the source,
    /// which RFC 4787 §6 REQ-9b forbids).
    Received {
        /// Source address of the hairpinned request.
        source: SocketAddr,
    },
    /// It never arrived within the retransmission schedule.
    NotReceived,
}

/// Everything the discovery saw. `None` for a test means it was not run (disabled, or a test
/// it depends on failed).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DiscoveryMeasurements {
    /// The primary address.
    pub server: Option<SocketAddr>,
    /// Local address of [`MAPPING_SOCKET`], as reported by the engine.
    pub local_mapping: Option<SocketAddr>,
    /// Local address of [`HAIRPIN_SOCKET`].
    pub local_hairpin: Option<SocketAddr>,
    /// Local address of [`FILTERING_SOCKET`].
    pub local_filtering: Option<SocketAddr>,
    /// Mapping test I: to the primary address.
    pub mapping_i: Option<BindingOutcome>,
    /// Mapping test II: to OTHER-ADDRESS's IP with the primary port.
    pub mapping_ii: Option<BindingOutcome>,
    /// Mapping test III: to OTHER-ADDRESS.
    pub mapping_iii: Option<BindingOutcome>,
    /// Filtering test II: CHANGE-REQUEST change IP and port.
    pub filtering_ii: Option<BindingOutcome>,
    /// Filtering test III: CHANGE-REQUEST change port.
    pub filtering_iii: Option<BindingOutcome>,
    /// Hairpinning.
    pub hairpin: Option<HairpinResult>,
}

impl DiscoveryMeasurements {
    /// The success response of mapping test I, if any.
    pub fn primary_response(&self) -> Option<&crate::binding::BindingResponse> {
        success(self.mapping_i.as_ref())
    }

    /// Record where a private socket is bound.
    pub(crate) fn set_local_addr(&mut self, socket: LocalSocket, addr: SocketAddr) {
        match socket {
            MAPPING_SOCKET => self.local_mapping = Some(addr),
            HAIRPIN_SOCKET => self.local_hairpin = Some(addr),
            FILTERING_SOCKET => self.local_filtering = Some(addr),
            _ => {}
        }
    }

    /// Where a test's Binding outcome is kept (the hairpin result is not a Binding outcome).
    pub(crate) fn slot(&mut self, test: Test) -> Option<&mut Option<BindingOutcome>> {
        match test {
            Test::MappingI => Some(&mut self.mapping_i),
            Test::MappingII => Some(&mut self.mapping_ii),
            Test::MappingIII => Some(&mut self.mapping_iii),
            Test::FilteringII => Some(&mut self.filtering_ii),
            Test::FilteringIII => Some(&mut self.filtering_iii),
            Test::Hairpin => None,
        }
    }
}

/// The success response inside an outcome.
pub(crate) fn success(o: Option<&BindingOutcome>) -> Option<&crate::binding::BindingResponse> {
    match o.map(|o| &o.status) {
        Some(BindingStatus::Success(r)) => Some(r),
        _ => None,
    }
}

/// One RFC 5780 test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Test {
    MappingI,
    MappingII,
    MappingIII,
    FilteringII,
    FilteringIII,
    Hairpin,
}

impl Test {
    /// The tests that start at once.
    pub(crate) fn first(config: &DiscoveryConfig) -> Vec<Test> {
        let mut v = vec![Test::MappingI];
        if config.filtering {
            v.extend([Test::FilteringII, Test::FilteringIII]);
        }
        v
    }

    /// What the test sends to `destination`.
    pub(crate) fn request(
        self,
        destination: SocketAddr,
        software: Option<&'static str>,
    ) -> Request {
        let (local, change_request, source_check) = match self {
            Test::MappingI | Test::MappingII | Test::MappingIII => {
                (MAPPING_SOCKET, None, SourceCheck::Destination)
            }
            // RFC 5780 §4.4: the reply legitimately comes from another address.
            Test::FilteringII => (
                FILTERING_SOCKET,
                Some(ChangeRequest {
                    change_ip: true,
                    change_port: true,
                }),
                SourceCheck::Any,
            ),
            Test::FilteringIII => (
                FILTERING_SOCKET,
                Some(ChangeRequest {
                    change_ip: false,
                    change_port: true,
                }),
                SourceCheck::Any,
            ),
            Test::Hairpin => (HAIRPIN_SOCKET, None, SourceCheck::Destination),
        };
        Request {
            destination,
            local,
            change_request,
            source_check,
            software,
        }
    }

    /// The tests mapping test I's success unlocks, with their destinations: II and III toward
    /// OTHER-ADDRESS (same family only), and hairpinning toward the mapped address.
    pub(crate) fn unlocked(
        config: &DiscoveryConfig,
        r: &crate::binding::BindingResponse,
    ) -> Vec<(Test, SocketAddr)> {
        let primary = config.server;
        let mut v = Vec::new();
        if let Some(other) = r.other_address
            && other.is_ipv4() == primary.is_ipv4()
        {
            v.push((Test::MappingII, SocketAddr::new(other.ip(), primary.port())));
            v.push((Test::MappingIII, other));
        }
        if config.hairpinning
            && let Some(mapped) = r.mapped_address()
        {
            v.push((Test::Hairpin, mapped));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Family;
    use crate::machine::{Ignored, Probe};
    use crate::nat::family::{FamilyConfig, FamilyRun};
    use crate::nat::sim::{Filter, Map, NatSpec, Net, PRIMARY, ServerQuirks, World, t0, test_ids};
    use crate::nat::timing::Timing;
    use crate::nat::{
        FamilyMeasurements, Filtering, Mapping, NatPresence, NatReport, Note, UdpStatus,
        classify_family,
    };
    use crate::stun::TransactionId;

    /// The RFC 5780 tests alone (the comparison asks only the primary), on a 100 ms blind
    /// RTO, so the 20 ms paths of the simulation sit at the floor.
    fn fast() -> FamilyConfig {
        FamilyConfig {
            timing: Timing::with_initial_rto(Duration::from_millis(100)),
            ..FamilyConfig::new(vec![PRIMARY.parse().unwrap()])
        }
    }

    fn run_with(
        net: Net,
        quirks: ServerQuirks,
        config: FamilyConfig,
    ) -> (DiscoveryMeasurements, NatReport, Duration) {
        let mut world = World::new(net, quirks);
        let mut probe = FamilyRun::new(config, test_ids()).unwrap();
        for n in 0..4 {
            let s = LocalSocket::Private(n);
            probe.handle_local_addr(s, world.local(s));
        }
        let (out, took) = world.run(&mut probe, t0());
        let m = out.discovery.clone();
        let mut fm = FamilyMeasurements {
            local_addresses: vec![world.client_ip()],
            ..FamilyMeasurements::default()
        };
        fm.record(out);
        (m, classify_family(Family::Ipv4, &fm), took)
    }

    fn run(net: Net) -> NatReport {
        run_with(net, ServerQuirks::default(), fast()).1
    }

    fn nat(map: Map, filter: Filter) -> Net {
        Net::Nat(NatSpec::new(map, filter))
    }

    #[test]
    fn linux_masquerade_is_eim_apdf_with_port_preservation() {
        let (m, r, took) = run_with(nat(Map::Eim, Filter::Apdf), ServerQuirks::default(), fast());
        assert_eq!(r.nat, NatPresence::Present);
        assert_eq!(r.mapping, Some(Mapping::EndpointIndependent));
        assert_eq!(r.filtering, Some(Filtering::AddressAndPortDependent));
        assert_eq!(r.port_preservation, Some(true));
        assert_eq!(r.hairpinning, None, "hairpinning is opt-in");
        assert_eq!(r.udp, UdpStatus::Open);
        assert!(!r.alg_detected);
        assert_eq!(r.server_software.as_deref(), Some("sim 5780"));
        assert_eq!(
            r.public_address,
            Some("198.51.100.1:40001".parse().unwrap())
        );
        // Everything the server said is kept.
        let r1 = m.primary_response().unwrap();
        assert_eq!(r1.other_address, Some("192.0.2.11:3479".parse().unwrap()));
        assert_eq!(r1.response_origin, Some(PRIMARY.parse().unwrap()));
        assert!(m.mapping_ii.is_some() && m.mapping_iii.is_some());
        assert!(m.hairpin.is_none());
        // Concurrent: one silent schedule (5 × 100 ms) from the start, not several.
        assert_eq!(took, Duration::from_millis(500));
    }

    #[test]
    fn random_fully_is_apdm() {
        let mut spec = NatSpec::new(Map::Apdm, Filter::Apdf);
        spec.preserve_ports = false;
        let r = run(Net::Nat(spec));
        assert_eq!(r.mapping, Some(Mapping::AddressAndPortDependent));
        assert_eq!(r.filtering, Some(Filtering::AddressAndPortDependent));
        assert_eq!(r.port_preservation, Some(false));
    }

    #[test]
    fn full_cone_is_eim_eif() {
        let r = run(nat(Map::Eim, Filter::Eif));
        assert_eq!(r.mapping, Some(Mapping::EndpointIndependent));
        assert_eq!(r.filtering, Some(Filtering::EndpointIndependent));
    }

    #[test]
    fn restricted_cone_is_adf() {
        let r = run(nat(Map::Eim, Filter::Adf));
        assert_eq!(r.filtering, Some(Filtering::AddressDependent));
    }

    #[test]
    fn address_dependent_mapping() {
        let r = run(nat(Map::Adm, Filter::Apdf));
        assert_eq!(r.mapping, Some(Mapping::AddressDependent));
    }

    #[test]
    fn hairpinning_nat_is_recognised_when_asked() {
        let mut spec = NatSpec::new(Map::Eim, Filter::Apdf);
        spec.hairpin = true;
        let cfg = FamilyConfig {
            hairpinning: true,
            ..fast()
        };
        let (m, r, _) = run_with(Net::Nat(spec), ServerQuirks::default(), cfg.clone());
        assert_eq!(r.hairpinning, Some(true));
        assert!(matches!(m.hairpin, Some(HairpinResult::Received { .. })));
        let (m, r, _) = run_with(nat(Map::Eim, Filter::Apdf), ServerQuirks::default(), cfg);
        assert_eq!(r.hairpinning, Some(false));
        assert_eq!(m.hairpin, Some(HairpinResult::NotReceived));
    }

    #[test]
    fn no_nat_is_reported_as_such_not_as_a_filtering_class() {
        let r = run(Net::NoNat);
        assert_eq!(r.nat, NatPresence::Absent);
        assert_eq!(r.mapping, None);
        assert_eq!(r.filtering, None);
        assert_eq!(r.firewall_filtering, Some(Filtering::EndpointIndependent));
        assert!(r.notes.contains(&Note::NoNat));
    }

    #[test]
    fn udp_blocked() {
        let (m, r, _) = run_with(Net::UdpBlocked, ServerQuirks::default(), fast());
        assert_eq!(r.udp, UdpStatus::Blocked);
        assert!(m.mapping_ii.is_none(), "test II needs test I");
        assert!(m.hairpin.is_none());
    }

    #[test]
    fn udp_only_to_3478_is_port_restricted() {
        let r = run(Net::UdpOnlyTo(3478));
        assert_eq!(
            r.udp,
            UdpStatus::PortsRestricted {
                open: vec![3478],
                blocked: vec![3479]
            }
        );
        // Test III never got out, so the other address is unverified: no filtering claim.
        assert_eq!(r.filtering, Some(Filtering::Unknown));
    }

    #[test]
    fn other_address_on_the_primary_ip_makes_filtering_unknown() {
        let q = ServerQuirks {
            other_same_ip: true,
            ..ServerQuirks::default()
        };
        // Even behind a full-cone NAT, where every reply would get in.
        let (_, r, _) = run_with(nat(Map::Eim, Filter::Eif), q, fast());
        assert_eq!(r.filtering, Some(Filtering::Unknown));
        assert!(
            r.notes
                .iter()
                .any(|n| matches!(n, Note::OtherAddressSameIp { .. }))
        );
        assert_eq!(r.mapping, Some(Mapping::Unknown), "EIM and ADM look alike");
    }

    #[test]
    fn server_ignoring_change_request_is_not_trusted() {
        let q = ServerQuirks {
            ignore_change: true,
            ..ServerQuirks::default()
        };
        // Replies come from the primary address, which the APDF filter lets in.
        let (_, r, _) = run_with(nat(Map::Eim, Filter::Apdf), q, fast());
        assert_eq!(r.filtering, Some(Filtering::Unknown));
        assert!(
            r.notes
                .iter()
                .any(|n| matches!(n, Note::ChangedReplyUntrusted { .. }))
        );
    }

    #[test]
    fn wrong_response_origin_is_not_trusted() {
        let q = ServerQuirks {
            wrong_origin: true,
            ..ServerQuirks::default()
        };
        let (_, r, _) = run_with(nat(Map::Eim, Filter::Eif), q, fast());
        assert_eq!(r.filtering, Some(Filtering::Unknown));
    }

    #[test]
    fn plain_server_gives_no_filtering() {
        let q = ServerQuirks {
            no_other: true,
            ..ServerQuirks::default()
        };
        let (m, r, _) = run_with(nat(Map::Eim, Filter::Eif), q, fast());
        assert!(m.mapping_ii.is_none());
        assert_eq!(r.filtering, Some(Filtering::Unknown));
        assert_eq!(r.mapping, Some(Mapping::Unknown));
        assert!(r.notes.contains(&Note::NoOtherAddress));
    }

    #[test]
    fn alg_is_flagged() {
        let mut spec = NatSpec::new(Map::Eim, Filter::Apdf);
        spec.alg = true;
        let r = run(Net::Nat(spec));
        assert!(r.alg_detected);
    }

    #[test]
    fn tests_can_be_switched_off() {
        let cfg = FamilyConfig {
            filtering: false,
            hairpinning: false,
            ..fast()
        };
        let (m, r, _) = run_with(nat(Map::Eim, Filter::Apdf), ServerQuirks::default(), cfg);
        assert!(m.filtering_ii.is_none() && m.hairpin.is_none());
        assert_eq!(r.mapping, Some(Mapping::EndpointIndependent));
        assert_eq!(r.filtering, Some(Filtering::Unknown));
    }

    #[test]
    fn unknown_and_late_datagrams_are_ignored() {
        let mut probe = FamilyRun::new(fast(), test_ids()).unwrap();
        let t = t0();
        let mut buf = Vec::new();
        assert!(probe.poll_transmit(t, &mut buf).is_some());
        assert!(matches!(
            probe.handle_input(t, PRIMARY.parse().unwrap(), b"junk"),
            Err(Ignored::Malformed(_))
        ));
        let mut other = Vec::new();
        crate::stun::encode::BindingRequest {
            transaction_id: TransactionId([9; 12]),
            software: None,
            change_request: None,
            response_port: None,
            fingerprint: false,
        }
        .encode(&mut other);
        assert_eq!(
            probe.handle_input(t, PRIMARY.parse().unwrap(), &other),
            Err(Ignored::UnknownTransaction)
        );
        assert!(probe.take_output().is_none());
    }
}
