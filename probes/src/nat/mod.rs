//! NAT behaviour: discovery probes and the classifier.
//!
//! - [`discovery`]: RFC 5780 §4 tests against one server with OTHER-ADDRESS, as one probe.
//! - [`multi`]: the fallback for plain STUN servers: compare mapped addresses across servers.
//! - [`lifetime`]: how long the NAT keeps an idle mapping (RFC 5780 §4.6), as one probe.
//! - [`portmap`]: whether the gateway maps ports on request (NAT-PMP, PCP, UPnP IGD; the codecs
//!   are in [`crate::wire`]).
//! - [`classify`]: a pure function from measurements to a [`NatReport`] per address family, a
//!   [`Verdict`] (direct P2P or relay) and the peer-pair table ([`pair_outcome`]).
//!
//! Terms follow RFC 4787: mapping behaviour (§4.1) and filtering behaviour (§5), each
//! endpoint-independent, address-dependent or address-and-port-dependent.

pub mod classify;
pub mod discovery;
pub mod lifetime;
pub mod multi;
pub mod portmap;

#[cfg(test)]
mod sim;

pub use classify::{
    Classification, Filtering, Mapping, Measurements, NatReport, NatType, PairOutcome, Verdict,
    classify, classify_family, pair_outcome,
};
pub use discovery::{DiscoveryConfig, DiscoveryMeasurements, NatDiscovery};
pub use lifetime::{BindingLifetime, LifetimeConfig, LifetimeMeasurements};
pub use multi::{MultiMeasurements, MultiServer};
