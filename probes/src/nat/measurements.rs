//! What the classifier takes: per-family measurements, the relay paths measured elsewhere and
//! the gateway's port mapping.

use std::net::IpAddr;

use super::discovery::DiscoveryMeasurements;
use super::family::RunTiming;
use super::lifetime::LifetimeMeasurements;
use super::multi::MultiMeasurements;
use super::portmap::PortMapping;

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
    /// How the run's waits went, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timing: Option<RunTiming>,
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
    /// Whether any relay path works: `Some(true)` if one does, `Some(false)` if all were tested
    /// and none does, `None` otherwise.
    pub fn any_works(&self) -> Option<bool> {
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

    /// Whether a relay path over TCP (TURN/TCP, TURN/TLS or the relay on TCP/443) works.
    pub fn tcp_works(&self) -> bool {
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
