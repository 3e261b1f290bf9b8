//! The TURN relay audit: does a TURN server let its users reach addresses behind it?
//!
//! A TURN server relays to whatever peer a client names in XOR-PEER-ADDRESS. One that grants
//! permissions toward its own loopback, the private network it sits in or a cloud metadata
//! service is an open door into that network for anyone holding credentials (and NetBird
//! hands TURN credentials to every peer). [`AuditProbe`] asks, and only asks:
//!
//! 1. an unauthenticated Binding and an unauthenticated Allocate: a TURN server should answer
//!    the Allocate with 401 and REALM/NONCE (RFC 8489 §9.2.4); a success means an open relay;
//! 2. with credentials, one Allocate of the server's default family (RFC 8656 §7; IPv4, §7.2
//!    step 7);
//! 3. one CreatePermission (RFC 8656 §10) per candidate peer in [`candidates()`] — loopback,
//!    the unspecified address, private, shared (CGNAT), link-local and cloud-metadata
//!    addresses, multicast, the server's own relayed address, and the IPv6 encodings of IPv4
//!    addresses that bypassed real deny lists (coturn CVE-2020-26262: `0.0.0.0`, `::`, `::1`;
//!    CVE-2026-27624: IPv4-mapped `::ffff:127.0.0.1`, `::ffff:0.0.0.0`) — recording granted,
//!    refused (403 Forbidden, 443 Peer Address Family Mismatch, …) or no answer;
//! 4. ChannelBind (RFC 8656 §12.1) for a few of them, because servers check the two requests
//!    in different code paths;
//! 5. Refresh with LIFETIME 0 (RFC 8656 §8), always, also when cancelled;
//! 6. then a second allocation with REQUESTED-ADDRESS-FAMILY IPv6 (RFC 8656 §7.1, §18.6), one
//!    CreatePermission toward it per IPv6 candidate (and its own relayed address), ChannelBind
//!    for `::ffff:127.0.0.1`, and its release. Toward an IPv4 allocation a server answers IPv6
//!    peers with 443 (RFC 8656 §19), so only this allocation puts the IPv6 forms to the test.
//!    A 440 Address Family not Supported (§7.2 step 7, §7.4) means the server has no IPv6
//!    relay address: those candidates are then reported untestable with that reason. The
//!    second allocation is made when the first was granted and released cleanly, or refused
//!    with 440 (an IPv6-only relay).
//!
//! Every request says which allocation it went to ([`PeerResult::relay_family`]); a grant
//! counts the same toward either.
//!
//! It never sends a Send indication or ChannelData: a permission is a promise of the server,
//! and nothing reaches the candidate addresses. The verdict per category, with its severity and
//! the coturn setting that closes it, is in [`AuditReport::findings`].
//!
//! # The second allocation's 5-tuple
//!
//! RFC 8656 lets a client allocate again on a 5-tuple once its allocation is deleted (a
//! Refresh with LIFETIME 0 deletes it at once, §8.2). coturn 4.6.1 does not: it drops a
//! released allocation about a second later, answers an Allocate on the same 5-tuple before
//! that with 437 Allocation Mismatch (§7.2 step 2), and over TCP then closes the connection.
//! §7.4 tells a client that gets 437 to pick another client transport address, so the IPv6
//! allocation is sent from a second private UDP socket (`LocalSocket::Private(n + 1)` beside
//! the session's `Private(n)`): no waiting on a server's clean-up timer. A 437 there (a stale
//! 5-tuple) is recorded as the IPv6 allocation's answer and not retried.
//!
//! Over TCP and TLS a probe has one connection, and a second 5-tuple means a second
//! connection, which only the caller can open. So the full audit there marks the IPv6
//! candidates untestable, and the caller runs a second probe with [`AuditConfig::ipv6_only`]
//! over a new connection: that probe makes only the IPv6 allocation (RFC 8656 §7.1, §18.6) on
//! its one transport, asks the IPv6 candidates and the ChannelBind toward it exactly as above,
//! and releases it (Refresh LIFETIME 0, §8) also on errors and when cancelled; everything else
//! in its report stays not tried. [`AuditReport::adopt_ipv6`] puts its results in place of the
//! untestable entries and draws the findings again.
//!
//! # Modules
//! - [`candidates`](mod@candidates): the peer addresses asked for, by what they reach and how
//!   they are written.
//! - [`probe`]: the probe, its configuration and its two allocations.
//! - [`report`]: what the server answered and the findings drawn from it.

pub mod candidates;
pub mod probe;
pub mod report;

#[cfg(test)]
mod lab;
#[cfg(test)]
mod stream_tests;

pub use candidates::{Candidate, Category, Encoding, PEER_PORT, candidates};
pub use probe::{AuditConfig, AuditProbe};
pub use report::{
    AuditFinding, AuditKind, AuditReport, NotTested, PeerOutcome, PeerResult, Unauthenticated,
    findings,
};
