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

use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

use crate::binding::{BindingConfig, BindingOutcome, BindingTransaction};
use crate::machine::{Ignored, LocalSocket, PrivateSockets, Probe, Retransmit, Transmit};
use crate::nat::discovery::DiscoveryConfig;
use crate::stun::TransactionIdSource;
use crate::stun::{StunView, TransactionId};

/// The socket every request leaves from: comparing mappings only means something for one
/// local port.
pub const MULTI_SOCKET: LocalSocket = LocalSocket::Private(0);

/// What the multi-server comparison saw.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MultiMeasurements {
    /// Local address of [`MULTI_SOCKET`], as reported by the engine.
    pub local: Option<SocketAddr>,
    /// One outcome per destination, in the order given.
    pub results: Vec<BindingOutcome>,
}

/// Binding requests to several destinations at once from one socket.
pub struct MultiServer {
    running: Vec<(usize, BindingTransaction)>,
    results: Vec<Option<BindingOutcome>>,
    local: Option<SocketAddr>,
    taken: bool,
}

impl fmt::Debug for MultiServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiServer")
            .field("running", &self.running.len())
            .field("results", &self.results.len())
            .finish_non_exhaustive()
    }
}

impl MultiServer {
    /// Requests to every destination (all sent at once), with transaction ids from `ids`.
    /// `retransmit` defaults sensibly to [`DiscoveryConfig::DEFAULT_RETRANSMIT`].
    pub fn new(
        destinations: &[SocketAddr],
        retransmit: Retransmit,
        mut ids: TransactionIdSource,
    ) -> Self {
        let running = destinations
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let cfg = BindingConfig {
                    retransmit,
                    local: MULTI_SOCKET,
                    ..BindingConfig::default()
                };
                (i, BindingTransaction::new(ids.next_id(), *d, cfg))
            })
            .collect();
        Self {
            running,
            results: vec![None; destinations.len()],
            local: None,
            taken: false,
        }
    }

    /// The same with the discovery's default timing.
    pub fn with_default_timing(destinations: &[SocketAddr], ids: TransactionIdSource) -> Self {
        Self::new(destinations, DiscoveryConfig::DEFAULT_RETRANSMIT, ids)
    }

    /// The engine reports where [`MULTI_SOCKET`] is bound.
    pub fn set_local_addr(&mut self, addr: SocketAddr) {
        self.local = Some(addr);
    }

    fn harvest(&mut self) {
        let results = &mut self.results;
        self.running.retain_mut(|(i, tx)| {
            if !tx.is_done() {
                return true;
            }
            if let (Some(slot), Some(o)) = (results.get_mut(*i), tx.take_output()) {
                *slot = Some(o);
            }
            false
        });
    }

    fn find(&mut self, tid: TransactionId) -> Option<&mut BindingTransaction> {
        self.running
            .iter_mut()
            .map(|(_, tx)| tx)
            .find(|tx| tx.transaction_id() == tid)
    }
}

impl Probe for MultiServer {
    type Output = MultiMeasurements;

    fn handle_input(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> Result<(), Ignored> {
        let tid = StunView::parse(data)
            .map_err(Ignored::Malformed)?
            .transaction_id();
        let tx = self.find(tid).ok_or(Ignored::UnknownTransaction)?;
        let r = tx.handle_input(now, from, data);
        self.harvest();
        r
    }

    fn handle_timeout(&mut self, now: Instant) {
        for (_, tx) in &mut self.running {
            tx.handle_timeout(now);
        }
        self.harvest();
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        self.running
            .iter_mut()
            .find_map(|(_, tx)| tx.poll_transmit(now, buf))
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.running
            .iter()
            .filter_map(|(_, tx)| tx.poll_timeout())
            .min()
    }

    fn is_done(&self) -> bool {
        self.running.is_empty()
    }

    fn take_output(&mut self) -> Option<MultiMeasurements> {
        if !self.is_done() || self.taken {
            return None;
        }
        self.taken = true;
        Some(MultiMeasurements {
            local: self.local,
            results: self.results.drain(..).flatten().collect(),
        })
    }

    fn private_sockets(&self) -> Option<PrivateSockets> {
        let toward = self.running.first().map(|(_, tx)| tx.destination())?;
        Some(PrivateSockets { count: 1, toward })
    }

    fn handle_local_addr(&mut self, socket: LocalSocket, addr: SocketAddr) {
        if socket == MULTI_SOCKET {
            self.set_local_addr(addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Family;
    use crate::machine::Retransmit;
    use crate::nat::sim::{
        Filter, Map, NatSpec, Net, OTHER, PRIMARY, ServerQuirks, World, t0, test_ids,
    };
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
        let q = ServerQuirks {
            no_other: true,
            ..ServerQuirks::default()
        };
        let mut world = World::new(net, q);
        let rt = Retransmit {
            rto: Duration::from_millis(100),
            rc: 3,
            rm: 4,
            deadline: None,
        };
        let mut probe = MultiServer::new(&destinations(), rt, test_ids());
        probe.set_local_addr(world.local(MULTI_SOCKET));
        let (m, took) = world.run(&mut probe, t0());
        assert_eq!(m.results.len(), 4);
        assert!(took < Duration::from_millis(800));
        let fm = FamilyMeasurements {
            lifetime: None,
            discovery: None,
            multi: Some(m),
            local_addresses: vec![world.client_ip()],
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

    #[test]
    fn output_only_once_and_only_when_done() {
        let mut probe = MultiServer::with_default_timing(&destinations(), test_ids());
        assert!(!probe.is_done());
        assert!(probe.take_output().is_none());
        let mut empty = MultiServer::with_default_timing(&[], test_ids());
        assert!(empty.is_done());
        assert!(empty.take_output().is_some());
        assert!(empty.take_output().is_none());
    }
}
