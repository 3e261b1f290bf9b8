//! Sans-IO core of stunmap: STUN/TURN wire codecs, probe state machines, NAT behaviour logic,
//! the classifier and target profiles.
//!
//! Nothing in this crate performs I/O, reads a clock or draws randomness: the caller passes
//! `now`, incoming datagrams and random transaction ids in, and drains transmits, timeouts and
//! results out. That keeps every state machine deterministic and testable on simulated time.

pub mod binding;
pub mod machine;
pub mod nat;
pub mod stun;

mod serde_util;

pub use machine::{Ignored, LocalSocket, Probe, Retransmit, Transmit};
