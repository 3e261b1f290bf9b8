//! The classification rules: from one family's measurements to its [`NatReport`].
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

use std::net::{IpAddr, SocketAddr};

use super::behaviour::{Filtering, Mapping, NatType};
use super::discovery::{DiscoveryMeasurements, HairpinResult, success};
use super::lifetime::binding_lifetime;
use super::measurements::{FamilyMeasurements, Measurements};
use super::multi::MultiMeasurements;
use super::report::{
    ChangeTest, Classification, MappingMethod, NatPresence, NatReport, Note, UdpStatus,
};
use super::verdict::verdict;
use crate::Family;
use crate::binding::{BindingOutcome, BindingResponse, BindingStatus};

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
    if let Some(d) = &m.discovery
        && let Some(r) = d.primary_response()
    {
        return Some((r, d.local_mapping));
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
    if let Some(l) = local
        && !l.ip().is_unspecified()
    {
        ips.push(l.ip());
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
        if let (Some(mapped), Some(xor_mapped)) = (r.mapped, r.xor_mapped)
            && mapped != xor_mapped
            && !report.alg_detected
        {
            report.alg_detected = true;
            notes.push(Note::Alg { mapped, xor_mapped });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::fixtures::*;

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
}
