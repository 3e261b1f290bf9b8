//! NAT behaviour: discovery probes and the classifier.
//!
//! The probes gather:
//! - [`discovery`]: RFC 5780 §4 tests against one server with OTHER-ADDRESS, as one probe.
//! - [`multi`]: the fallback for plain STUN servers: compare mapped addresses across servers.
//! - [`lifetime`]: how long the NAT keeps an idle mapping (RFC 5780 §4.6), as one probe, and
//!   the judgement of its trials.
//! - [`portmap`]: whether the gateway maps ports on request (NAT-PMP, PCP, UPnP IGD; the codecs
//!   are in [`crate::wire`]).
//! - [`family`]: the discovery and the comparison of one family as one machine
//!   ([`FamilyRun`]) on one RTT-adaptive schedule;
//! - [`timing`]: that schedule: the RTT estimate (RFC 6298 §2), the waits, the budget and the
//!   pacing.
//!
//! The classifier judges, as pure functions:
//! - [`behaviour`]: the vocabulary, mapping and filtering classes and the [`NatType`];
//! - [`measurements`]: what it takes ([`Measurements`], per family and for the relay paths);
//! - [`rules`]: from one family's measurements to its [`NatReport`] ([`classify_family`]), and
//!   [`classify`] for both families and the verdict;
//! - [`report`]: the [`NatReport`], its [`Note`]s, the whole [`Classification`];
//! - [`pair`]: the peer-pair model ([`pair_outcome`]);
//! - [`verdict`]: direct P2P or relay ([`Verdict`]), with the fixes.
//!
//! Terms follow RFC 4787: mapping behaviour (§4.1) and filtering behaviour (§5), each
//! endpoint-independent, address-dependent or address-and-port-dependent.

pub mod behaviour;
pub mod discovery;
pub mod family;
pub mod lifetime;
pub mod measurements;
pub mod multi;
pub mod pair;
pub mod portmap;
pub mod report;
pub mod rules;
pub mod timing;
mod transaction;
pub mod verdict;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod sim;

pub use behaviour::{Filtering, Mapping, NatType};
pub use discovery::{DiscoveryConfig, DiscoveryMeasurements};
pub use family::{FamilyConfig, FamilyOutput, FamilyRun, RunTiming, TcpRtt};
pub use lifetime::{BindingLifetime, BindingLifetimeResult, LifetimeConfig, LifetimeMeasurements};
pub use measurements::{FamilyMeasurements, Measurements, RelayPaths};
pub use multi::MultiMeasurements;
pub use pair::{PairOutcome, PeerRow, pair_outcome};
pub use report::{
    ChangeTest, Classification, MappingMethod, NatPresence, NatReport, Note, UdpStatus,
};
pub use rules::{classify, classify_family};
pub use timing::{Pace, RttSource, Timing};
pub use verdict::{Level, Verdict};
