//! Measurements for the classifier's unit tests: an RFC 5780 server at [`P`] with its other
//! address at [`O`], a host at [`LOCAL`] mapped to [`PUBLIC`].

use std::net::SocketAddr;
use std::time::Duration;

use crate::Family;
pub(crate) use crate::binding::{BindingOutcome, BindingResponse, BindingStatus};
pub(crate) use crate::nat::discovery::{DiscoveryMeasurements, HairpinResult};
pub(crate) use crate::nat::lifetime::{LifetimeMeasurements, Trial, TrialOutcome};
pub(crate) use crate::nat::measurements::{FamilyMeasurements, Measurements, RelayPaths};
pub(crate) use crate::nat::multi::MultiMeasurements;
pub(crate) use crate::nat::portmap::PortMapping;
pub(crate) use crate::nat::report::{Classification, NatReport};
pub(crate) use crate::nat::rules::{classify, classify_family};
use crate::stun::TransactionId;

pub(crate) const P: &str = "192.0.2.10:3478";
pub(crate) const O: &str = "192.0.2.11:3479";
pub(crate) const LOCAL: &str = "10.0.0.2:40001";
pub(crate) const PUBLIC: &str = "198.51.100.1:40001";

pub(crate) fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub(crate) fn outcome(dest: &str, status: BindingStatus, source: Option<&str>) -> BindingOutcome {
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

pub(crate) fn resp(mapped: &str, other: Option<&str>, origin: Option<&str>) -> BindingResponse {
    BindingResponse {
        xor_mapped: Some(a(mapped)),
        mapped: Some(a(mapped)),
        other_address: other.map(a),
        response_origin: origin.map(a),
        software: Some("test".into()),
        fingerprint: true,
        unknown_attribute: None,
        malformed_address: None,
    }
}

/// A reply from `from` (also its RESPONSE-ORIGIN) mapping to `mapped`.
pub(crate) fn ok(dest: &str, from: &str, mapped: &str) -> Option<BindingOutcome> {
    Some(outcome(
        dest,
        BindingStatus::Success(resp(mapped, Some(O), Some(from))),
        Some(from),
    ))
}

pub(crate) fn silent(dest: &str) -> Option<BindingOutcome> {
    Some(outcome(dest, BindingStatus::Timeout, None))
}

/// RFC 5780 measurements of an EIM NAT with the given filtering replies.
pub(crate) fn eim(
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
        timing: None,
    }
}

pub(crate) fn report(m: &FamilyMeasurements) -> NatReport {
    classify_family(Family::Ipv4, m)
}

pub(crate) fn v4(m: FamilyMeasurements, relay: RelayPaths) -> Classification {
    classify(&Measurements {
        port_mapping: None,
        ipv4: Some(m),
        ipv6: None,
        relay,
    })
}

pub(crate) fn multi(results: &[(&str, Option<&str>)]) -> FamilyMeasurements {
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
        timing: None,
    }
}

pub(crate) fn blocked() -> FamilyMeasurements {
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
        timing: None,
    }
}

pub(crate) fn trial(planned: u64, outcome: TrialOutcome) -> Trial {
    Trial {
        planned_idle: Duration::from_secs(planned),
        idle: Some(Duration::from_secs(planned)),
        mapped: Some(a(PUBLIC)),
        rtt: Some(Duration::from_millis(500)),
        outcome,
    }
}

pub(crate) fn lifetime(trials: Vec<Trial>) -> LifetimeMeasurements {
    LifetimeMeasurements {
        server: a(P),
        max_idle: Duration::from_secs(120),
        trials,
    }
}

pub(crate) fn symmetric() -> FamilyMeasurements {
    // APDM: mapping II differs from I and III from II.
    let mut fm = eim(silent(P), silent(P));
    if let Some(d) = fm.discovery.as_mut() {
        d.mapping_ii = ok("192.0.2.11:3478", "192.0.2.11:3478", "198.51.100.1:40002");
        d.mapping_iii = ok(O, O, "198.51.100.1:40003");
    }
    fm
}

pub(crate) fn with_portmap(fm: FamilyMeasurements, pm: PortMapping) -> Classification {
    classify(&Measurements {
        ipv4: Some(fm),
        ipv6: None,
        relay: RelayPaths::default(),
        port_mapping: Some(pm),
    })
}
