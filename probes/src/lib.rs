//! Sans-IO core of stunmap: STUN/TURN wire codecs, probe state machines, NAT behaviour logic,
//! the classifier and target profiles.
//!
//! Nothing in this crate performs I/O, reads a clock or draws randomness: the caller passes
//! `now`, incoming datagrams and random transaction ids in, and drains transmits, timeouts and
//! results out. That keeps every state machine deterministic and testable on simulated time.

pub mod binding;
pub mod check;
pub mod control;
pub mod finding;
pub mod hostfw;
pub mod machine;
pub mod nat;
pub mod net;
pub mod netbird;
pub mod pair;
pub mod path;
pub mod probe_server;
pub mod profile;
pub mod raw_sweep;
pub mod reflector;
pub mod schedule;
pub mod stun;
pub mod sweep;
pub mod turn;
pub mod wire;

pub mod serde_util;

pub use machine::{Ignored, LocalSocket, PrivateSockets, Probe, Received, Retransmit, Transmit};
pub use net::{Family, PortRange, Transport};
