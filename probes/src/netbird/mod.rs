//! NetBird's own view: what a NetBird client was really given and what it reports, read from
//! `netbird status --json`, from the `status.txt` of a `netbird debug bundle` (the text of
//! `netbird status -d`), and from the rest of the bundle (client log, routes, firewall dumps).
//!
//! Everything here is pure: the caller hands in bytes (a file, the CLI's output, a zip read into
//! memory) and gets typed values back. Formats follow NetBird's client source; docs/netbird.md
//! names the version each one was read from. Reading is tolerant: unknown fields are ignored, a
//! field of the wrong type or a missing one leaves a default and a note, and every input is
//! capped in size and count. Public keys are used only to match log lines to peers and are
//! never serialized.
//!
//! # Interface for `stunmap check`
//!
//! (a) status → profile + notes: [`status::parse`] (JSON or detail text, up to
//!     [`status::MAX_STATUS_BYTES`]) gives a [`Status`] and its notes; [`status::to_profile`]
//!     turns it into a [`NetbirdProfile`]: a [`crate::profile::Profile`] built from the
//!     management and signal URLs, the STUN/TURN URIs and the relays (`rels://`, `rel://`) the
//!     client was given, plus its WireGuard port and notes.
//!
//! (b) measured facts + status → per-peer findings: [`peers::explain`] takes
//!     [`Status`]`.peers` (and the status itself for signal/relay state), a [`Measured`] (this
//!     run's NAT mapping/filtering, whether UDP to STUN answered, whether TURN and the relay
//!     worked) and optional [`log::IceHistory`] from a client log, and returns one
//!     [`PeerFinding`] (reason code, one-line detail, fix) per relayed or unconnected peer.
//!
//! (c) per-URI comparison: [`compare::compare`] takes the [`Status`] and the states stunmap
//!     measured per URI ([`compare::MeasuredUri`]) and returns each URI's NetBird flag and
//!     error beside stunmap's result, with disagreements marked.
//!
//! `stunmap explain` also uses [`bundle`] (zip or folder, capped), [`log`] and [`routes`].

pub mod bundle;
pub mod compare;
pub mod log;
pub mod peers;
pub mod routes;
pub mod status;
pub mod uri;

#[cfg(test)]
mod fixture_tests;

pub use compare::{Agreement, MeasuredState, MeasuredUri, UriComparison};
pub use peers::{Measured, PeerFinding, Reason};
pub use status::{CandidateType, ConnectionType, NetbirdProfile, PeerState, Status, StatusFormat};

/// Why NetBird input could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetbirdError {
    /// Larger than the cap for its kind.
    #[error("{what} is {size} bytes; at most {max} are read")]
    TooLarge {
        /// What was being read.
        what: String,
        /// Its size.
        size: u64,
        /// The cap.
        max: u64,
    },
    /// Neither the JSON of `netbird status --json` nor the text of `netbird status -d`.
    #[error("not a NetBird status ({reason})")]
    NotStatus {
        /// What was found instead.
        reason: String,
    },
    /// The archive is not a zip stunmap reads, or breaks one of its caps.
    #[error("bundle: {reason}")]
    Bundle {
        /// What is wrong.
        reason: String,
    },
}
