//! `stunmap pair`: a live ICE (RFC 8445) test between two real peers, and the comparison of
//! its outcome with the NAT peer-pair model.
//!
//! Everything here is sans-IO, like the rest of the crate:
//! - [`model`] holds the values the two peers exchange (candidates, offers, each side's
//!   findings), their validation (every one of them comes from the network), and the merge of
//!   both sides' findings into the one result both print;
//! - [`rendezvous`] is the rendezvous protocol: length-prefixed JSON frames, each
//!   authenticated with HMAC-SHA256 under a key derived from the room's shared secret, with
//!   nonces and sequence numbers against replay; the client and server connection machines and
//!   the server's bounded room table;
//! - [`session`] is one peer's run: candidate gathering (host, server-reflexive via STUN,
//!   relayed via TURN), the ICE agent (the `is` crate: str0m's agent, which takes `now` from
//!   its caller like every machine here), nomination, then RTT and loss over the selected pair,
//!   and the TURN release;
//! - [`explain`] predicts a pair offline from two `stunmap nat --json` reports.
//!
//! The engine drives a [`session::PairSession`] with its sockets and clock and carries
//! [`session::Signal`]s to and from the rendezvous connection.

pub mod explain;
pub mod model;
pub mod rendezvous;
pub mod session;
