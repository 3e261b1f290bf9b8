//! RFC 5780 NAT behaviour discovery as one sans-IO probe.
//!
//! The probe runs the tests of RFC 5780 §4 against one server that advertises OTHER-ADDRESS
//! (RFC 5780 §7.4), and records what every test saw. It draws no conclusions: the pure
//! [`classify`](super::classify) module turns the measurements into a NAT report, so the trust
//! rules live in one place and are tested without any probe.
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
//! | hairpinning | [`HAIRPIN_SOCKET`] | the mapped address from mapping I | RFC 5780 §4.5 |
//!
//! # Concurrency
//!
//! RFC 5780 describes the tests one after the other on one socket. This probe runs them as
//! concurrently as their dependencies allow, to finish in about one round trip plus one
//! timeout:
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
//! # Hairpinning (RFC 5780 §4.5, RFC 4787 §6)
//!
//! The hairpin test sends an ordinary Binding request, with its own transaction id, from
//! [`HAIRPIN_SOCKET`] to the mapped address of [`MAPPING_SOCKET`]. If the NAT hairpins, the
//! request arrives at the client's own mapping socket. The engine routes every datagram whose
//! transaction id the probe declared on a transmit back to the probe, requests included; the
//! probe recognises the hairpinned datagram as a Binding *request* carrying the hairpin
//! transaction id. Nobody answers it, so absence is detected by the transaction's timeout.
//!
//! # Local addresses
//!
//! Port preservation and "no NAT" compare the mapped address with the local one, which only
//! the engine knows: it reports each private socket's bound address with
//! [`NatDiscovery::set_local_addr`] (a wildcard IP is fine; the classifier also takes the
//! host's interface addresses).

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::binding::{
    BindingConfig, BindingOutcome, BindingStatus, BindingTransaction, SourceCheck,
};
use crate::machine::{Ignored, LocalSocket, PrivateSockets, Probe, Retransmit, Transmit};
use crate::stun::attr::ChangeRequest;
use crate::stun::{Class, Method, StunView, TransactionId, TransactionIdSource};

/// Socket of the mapping tests (and of the mapped address the hairpin test aims at).
pub const MAPPING_SOCKET: LocalSocket = LocalSocket::Private(0);
/// Socket the hairpin request leaves from.
pub const HAIRPIN_SOCKET: LocalSocket = LocalSocket::Private(1);
/// Socket of the filtering tests: a fresh mapping that has only ever sent to the primary address.
pub const FILTERING_SOCKET: LocalSocket = LocalSocket::Private(2);

/// How the discovery runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// The server's primary address (it must support RFC 5780 for the full result).
    pub server: SocketAddr,
    /// Retransmission of every request. The default deviates from RFC 8489 §6.2.1 (39.5 s per
    /// transaction) on purpose: a "no reply" is an expected answer here, and waiting 39.5 s for
    /// each filtering test is not useful to a person at a terminal. RTO 500 ms (the RFC value),
    /// 4 transmissions, a final wait of 4·RTO: a silent test ends after 5.5 s.
    pub retransmit: Retransmit,
    /// Run the filtering tests (RFC 5780 §4.4).
    pub filtering: bool,
    /// Run the hairpinning test (RFC 5780 §4.5).
    pub hairpinning: bool,
    /// SOFTWARE sent in requests.
    pub software: Option<&'static str>,
}

impl DiscoveryConfig {
    /// Every test, default timing.
    pub fn new(server: SocketAddr) -> Self {
        Self {
            server,
            retransmit: Self::DEFAULT_RETRANSMIT,
            filtering: true,
            hairpinning: true,
            software: BindingConfig::default().software,
        }
    }

    /// See [`DiscoveryConfig::retransmit`].
    pub const DEFAULT_RETRANSMIT: Retransmit = Retransmit {
        rto: Duration::from_millis(500),
        rc: 4,
        rm: 4,
        deadline: None,
    };
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
}

/// The success response inside an outcome.
pub(crate) fn success(o: Option<&BindingOutcome>) -> Option<&crate::binding::BindingResponse> {
    match o.map(|o| &o.status) {
        Some(BindingStatus::Success(r)) => Some(r),
        _ => None,
    }
}

/// Identifies a test slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Test {
    MappingI,
    MappingII,
    MappingIII,
    FilteringII,
    FilteringIII,
    Hairpin,
}

const TESTS: [Test; 6] = [
    Test::MappingI,
    Test::FilteringII,
    Test::FilteringIII,
    Test::MappingII,
    Test::MappingIII,
    Test::Hairpin,
];

/// The RFC 5780 discovery probe. See the module docs.
pub struct NatDiscovery {
    config: DiscoveryConfig,
    ids: TransactionIdSource,
    measurements: DiscoveryMeasurements,
    /// Running transactions, by test.
    running: Vec<(Test, BindingTransaction)>,
    hairpin_tid: Option<TransactionId>,
    /// The latest `now` seen: a test started by an input is due at once, and
    /// [`Probe::poll_timeout`] says so even if the caller does not poll transmits first.
    last_now: Option<Instant>,
    done: bool,
    output_taken: bool,
}

impl fmt::Debug for NatDiscovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatDiscovery")
            .field("config", &self.config)
            .field("running", &self.running.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl NatDiscovery {
    /// A discovery against `config.server`, drawing transaction ids from `ids`.
    pub fn new(config: DiscoveryConfig, ids: TransactionIdSource) -> Self {
        let mut me = Self {
            config,
            ids,
            measurements: DiscoveryMeasurements {
                server: Some(config.server),
                ..DiscoveryMeasurements::default()
            },
            running: Vec::new(),
            hairpin_tid: None,
            last_now: None,
            done: false,
            output_taken: false,
        };
        me.start(Test::MappingI, config.server);
        if config.filtering {
            me.start(Test::FilteringII, config.server);
            me.start(Test::FilteringIII, config.server);
        }
        me
    }

    /// The engine reports where a private socket is bound (port preservation and "no NAT" need
    /// it). May be called at any time before the output is taken.
    pub fn set_local_addr(&mut self, socket: LocalSocket, addr: SocketAddr) {
        let m = &mut self.measurements;
        match socket {
            MAPPING_SOCKET => m.local_mapping = Some(addr),
            HAIRPIN_SOCKET => m.local_hairpin = Some(addr),
            FILTERING_SOCKET => m.local_filtering = Some(addr),
            _ => {}
        }
    }

    /// The private sockets this probe sends from (the engine opens them before the first poll).
    pub fn sockets(&self) -> Vec<LocalSocket> {
        let mut v = vec![MAPPING_SOCKET];
        if self.config.hairpinning {
            v.push(HAIRPIN_SOCKET);
        }
        if self.config.filtering {
            v.push(FILTERING_SOCKET);
        }
        v
    }

    fn start(&mut self, test: Test, destination: SocketAddr) {
        let (local, change_request, source_check) = match test {
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
        let tid = self.ids.next_id();
        if test == Test::Hairpin {
            self.hairpin_tid = Some(tid);
        }
        let cfg = BindingConfig {
            retransmit: self.config.retransmit,
            software: self.config.software,
            change_request,
            response_port: None,
            source_check,
            local,
        };
        self.running
            .push((test, BindingTransaction::new(tid, destination, cfg)));
    }

    /// Where a test's Binding outcome is kept (the hairpin result is not a Binding outcome).
    fn slot(&mut self, test: Test) -> Option<&mut Option<BindingOutcome>> {
        let m = &mut self.measurements;
        match test {
            Test::MappingI => Some(&mut m.mapping_i),
            Test::MappingII => Some(&mut m.mapping_ii),
            Test::MappingIII => Some(&mut m.mapping_iii),
            Test::FilteringII => Some(&mut m.filtering_ii),
            Test::FilteringIII => Some(&mut m.filtering_iii),
            Test::Hairpin => None,
        }
    }

    /// Move finished transactions into the measurements and start what they unlock.
    fn harvest(&mut self) {
        let mut finished = Vec::new();
        self.running.retain_mut(|(test, tx)| {
            if tx.is_done() {
                finished.push((*test, tx.take_output()));
                false
            } else {
                true
            }
        });
        for (test, outcome) in finished {
            let Some(outcome) = outcome else { continue };
            if test == Test::Hairpin {
                // The hairpin request is never answered; finishing means it never arrived
                // (arrival is recorded in handle_input and cancels the transaction).
                if self.measurements.hairpin.is_none() {
                    self.measurements.hairpin = Some(HairpinResult::NotReceived);
                }
                continue;
            }
            if let Some(slot) = self.slot(test) {
                *slot = Some(outcome);
            }
            if test == Test::MappingI {
                self.after_mapping_i();
            }
        }
        self.done = self.running.is_empty();
    }

    fn after_mapping_i(&mut self) {
        let Some(r) = self.measurements.primary_response().cloned() else {
            return;
        };
        let primary = self.config.server;
        if let Some(other) = r.other_address
            && other.is_ipv4() == primary.is_ipv4()
        {
            self.start(Test::MappingII, SocketAddr::new(other.ip(), primary.port()));
            self.start(Test::MappingIII, other);
        }
        if self.config.hairpinning
            && let Some(mapped) = r.mapped_address()
        {
            self.start(Test::Hairpin, mapped);
        }
    }
}

impl Probe for NatDiscovery {
    type Output = DiscoveryMeasurements;

    fn handle_input(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> Result<(), Ignored> {
        self.last_now = Some(now);
        let view = StunView::parse(data).map_err(Ignored::Malformed)?;
        let tid = view.transaction_id();
        if Some(tid) == self.hairpin_tid {
            let ty = view.message_type();
            if ty.class == Class::Request && ty.method == Method::BINDING {
                if self.measurements.hairpin.is_some() {
                    return Err(Ignored::Late);
                }
                self.measurements.hairpin = Some(HairpinResult::Received { source: from });
                self.running.retain(|(t, _)| *t != Test::Hairpin);
                self.harvest();
                return Ok(());
            }
        }
        let Some((_, tx)) = self
            .running
            .iter_mut()
            .find(|(_, tx)| tx.transaction_id() == tid)
        else {
            return Err(Ignored::UnknownTransaction);
        };
        let r = tx.handle_input(now, from, data);
        self.harvest();
        r
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.last_now = Some(now);
        for (_, tx) in &mut self.running {
            tx.handle_timeout(now);
        }
        self.harvest();
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        // Fixed order so runs are reproducible.
        for test in TESTS {
            for (t, tx) in &mut self.running {
                if *t == test
                    && let Some(out) = tx.poll_transmit(now, buf)
                {
                    return Some(out);
                }
            }
        }
        None
    }

    fn poll_timeout(&self) -> Option<Instant> {
        // A started but unsent transaction has no timeout of its own: it is due now.
        let unsent = self
            .running
            .iter()
            .any(|(_, tx)| !tx.is_done() && tx.poll_timeout().is_none());
        let next = self
            .running
            .iter()
            .filter_map(|(_, tx)| tx.poll_timeout())
            .min();
        match (unsent, self.last_now) {
            (true, Some(now)) => Some(next.map_or(now, |n| n.min(now))),
            _ => next,
        }
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn take_output(&mut self) -> Option<DiscoveryMeasurements> {
        if !self.done || self.output_taken {
            return None;
        }
        self.output_taken = true;
        Some(std::mem::take(&mut self.measurements))
    }
    /// Private(0) mapping, Private(1) hairpin, Private(2) filtering; all three are opened even
    /// when a test is disabled (an idle socket costs nothing and keeps the numbering fixed).
    fn private_sockets(&self) -> Option<PrivateSockets> {
        Some(PrivateSockets {
            count: 3,
            toward: self.config.server,
        })
    }

    fn handle_local_addr(&mut self, socket: LocalSocket, addr: SocketAddr) {
        self.set_local_addr(socket, addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Family;
    use crate::nat::sim::{Filter, Map, NatSpec, Net, PRIMARY, ServerQuirks, World, t0, test_ids};
    use crate::nat::{
        FamilyMeasurements, Filtering, Mapping, NatPresence, NatReport, Note, UdpStatus,
        classify_family,
    };

    fn fast() -> DiscoveryConfig {
        DiscoveryConfig {
            retransmit: Retransmit {
                rto: Duration::from_millis(100),
                rc: 3,
                rm: 4,
                deadline: None,
            },
            ..DiscoveryConfig::new(PRIMARY.parse().unwrap())
        }
    }

    fn run_with(
        net: Net,
        quirks: ServerQuirks,
        config: DiscoveryConfig,
    ) -> (DiscoveryMeasurements, NatReport, Duration) {
        let mut world = World::new(net, quirks);
        let mut probe = NatDiscovery::new(config, test_ids());
        for s in probe.sockets() {
            probe.set_local_addr(s, world.local(s));
        }
        let (m, took) = world.run(&mut probe, t0());
        let fm = FamilyMeasurements {
            lifetime: None,
            discovery: Some(m.clone()),
            multi: None,
            local_addresses: vec![world.client_ip()],
        };
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
        assert_eq!(r.hairpinning, Some(false));
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
        // Concurrent: one silent schedule (700 ms) after test I's round trip, not several.
        assert!(took < Duration::from_millis(800), "took {took:?}");
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
    fn hairpinning_nat_is_recognised() {
        let mut spec = NatSpec::new(Map::Eim, Filter::Apdf);
        spec.hairpin = true;
        let (m, r, _) = run_with(Net::Nat(spec), ServerQuirks::default(), fast());
        assert_eq!(r.hairpinning, Some(true));
        assert!(matches!(m.hairpin, Some(HairpinResult::Received { .. })));
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
        let cfg = DiscoveryConfig {
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
        let mut probe = NatDiscovery::new(fast(), test_ids());
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
