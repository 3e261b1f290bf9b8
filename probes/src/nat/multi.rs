//! The fallback when no server offers RFC 5780: Binding requests to several servers and ports,
//! all from one local socket, then compare the mapped addresses (the netcheck method).
//!
//! RFC 4787 §4.1 defines mapping behaviour by whether the NAT reuses a mapping across
//! destinations; several plain RFC 8489 servers are enough to observe that:
//! - the same mapped address from two different server IPs → endpoint-independent mapping;
//! - different mapped addresses from two ports of one IP → address-and-port-dependent;
//! - the same from two ports of one IP but different across IPs → address-dependent.
//!
//! What this cannot reach: filtering behaviour (it needs a server that answers from another
//! address on request, RFC 5780 §4.4), and with only one server IP it cannot tell
//! endpoint-independent from address-dependent mapping. The classifier says so.
//!
//! Every destination also tests whether UDP to that port gets out at all; the classifier uses
//! the timeouts to spot egress firewalls that allow only some ports.
//!
//! The requests run inside the family's [`FamilyRun`](super::family::FamilyRun), beside the
//! RFC 5780 tests and on the same RTT-adaptive schedule.

use std::net::SocketAddr;

use crate::binding::BindingOutcome;
use crate::machine::LocalSocket;

/// The socket every request leaves from: comparing mappings only means something for one
/// local port. (Sockets 0 to 2 are the RFC 5780 tests'.)
pub const MULTI_SOCKET: LocalSocket = LocalSocket::Private(3);

/// What the multi-server comparison saw.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MultiMeasurements {
    /// Local address of [`MULTI_SOCKET`], as reported by the engine.
    pub local: Option<SocketAddr>,
    /// One outcome per destination, in the order given.
    pub results: Vec<BindingOutcome>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Family;
    use crate::machine::Probe;
    use crate::nat::family::{FamilyConfig, FamilyRun};
    use crate::nat::sim::{
        Filter, Map, NatSpec, Net, OTHER, PRIMARY, ServerQuirks, World, t0, test_ids,
    };
    use crate::nat::timing::Timing;
    use crate::nat::{FamilyMeasurements, Mapping, classify_family};
    use std::time::Duration;

    fn destinations() -> Vec<SocketAddr> {
        let (p, o): (SocketAddr, SocketAddr) = (PRIMARY.parse().unwrap(), OTHER.parse().unwrap());
        vec![
            p,
            SocketAddr::new(p.ip(), o.port()),
            SocketAddr::new(o.ip(), p.port()),
            o,
        ]
    }

    fn mapping(net: Net) -> Mapping {
        // A plain server: only the comparison can tell the mapping.
        let q = ServerQuirks {
            no_other: true,
            ..ServerQuirks::default()
        };
        let mut world = World::new(net, q);
        let config = FamilyConfig {
            timing: Timing::with_initial_rto(Duration::from_millis(100)),
            ..FamilyConfig::new(destinations())
        };
        let mut probe = FamilyRun::new(config, test_ids()).unwrap();
        probe.handle_local_addr(MULTI_SOCKET, world.local(MULTI_SOCKET));
        let (out, took) = world.run(&mut probe, t0());
        assert_eq!(out.multi.results.len(), 4);
        assert_eq!(out.multi.local, Some(world.local(MULTI_SOCKET)));
        assert!(took <= Duration::from_millis(500), "{took:?}");
        let fm = FamilyMeasurements {
            multi: Some(out.multi),
            local_addresses: vec![world.client_ip()],
            ..FamilyMeasurements::default()
        };
        classify_family(Family::Ipv4, &fm).mapping.unwrap()
    }

    #[test]
    fn compares_mappings_across_servers() {
        let nat = |m| Net::Nat(NatSpec::new(m, Filter::Apdf));
        assert_eq!(mapping(nat(Map::Eim)), Mapping::EndpointIndependent);
        assert_eq!(mapping(nat(Map::Adm)), Mapping::AddressDependent);
        assert_eq!(mapping(nat(Map::Apdm)), Mapping::AddressAndPortDependent);
    }
}
