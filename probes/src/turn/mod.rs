//! TURN client probes, RFC 8656: Allocate (with the long-term credential mechanism of RFC 8489
//! §9.2 or TURN REST ephemeral credentials), CreatePermission, ChannelBind, Send/Data
//! indications and ChannelData, and the release of every allocation with a Refresh of
//! LIFETIME 0 when a probe ends, fails or is cancelled.
//!
//! Like the rest of this crate the code is sans-IO: the machines take `now`, incoming bytes
//! and a seed for transaction ids from the caller, and hand back datagrams (or stream frames)
//! to send. The engine drives them over UDP (`engine::run`) or over one TCP/TLS connection
//! (`engine::stream`).
//!
//! # Why not the `turnclient` crate
//!
//! `turnclient` 0.5 was considered and rejected: it pins `stun_codec` 0.3 while this workspace
//! uses 0.4 (two codecs in one binary, and its types do not interoperate with ours); it speaks
//! UDP only, where stunmap needs TCP and TLS (RFC 6062 framing, RFC 8656 §12.5 padding); it does
//! not verify MESSAGE-INTEGRITY on responses, so a forged success would be believed; and its
//! errors are opaque, where a probe must report the server's ERROR-CODE and reason. It is also
//! built around its own async I/O, which a sans-IO probe cannot use. Building on our own codec
//! (`crate::stun`) costs a few hundred lines and keeps every byte on the wire testable on
//! simulated time.
//!
//! # Modules
//! - [`uri`]: `turn:` / `turns:` URIs, RFC 7065.
//! - [`auth`]: credentials (redacted in `Debug`), long-term keys, MESSAGE-INTEGRITY(-SHA256).
//! - [`channel`]: ChannelData, Send and Data indications, stream framing.
//! - [`session`]: the TURN control session every probe here builds on.
//! - [`allocate`]: the Allocate probe.
//! - [`relay`]: the relay round-trip benchmark probe.
//! - [`audit`]: the relay audit (which internal peers a server would relay to).

pub mod allocate;
pub mod audit;
pub mod auth;
pub mod channel;
pub mod relay;
pub mod session;
pub mod uri;

#[cfg(test)]
mod testkit;

/// What a TURN probe's [`Probe::take_output`](crate::machine::Probe::take_output) hands over: a
/// copy of its `report` once it is `done`, and only the first time (`taken` remembers).
fn take_report<R: Clone>(done: bool, taken: &mut bool, report: &R) -> Option<R> {
    if !done || *taken {
        return None;
    }
    *taken = true;
    Some(report.clone())
}

/// Errors of the TURN area: bad URIs and unusable credentials. What a server answers is not an
/// error here but part of a probe's output.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TurnError {
    /// The URI does not start with `turn:` or `turns:` (RFC 7065 §3.1).
    #[error("unknown URI scheme {scheme:?}: expected turn: or turns: (RFC 7065)")]
    UnknownScheme {
        /// What was found before the first ':'.
        scheme: String,
    },
    /// `turn://host`: RFC 7065 URIs have no authority part.
    #[error("{uri:?}: a TURN URI has no '//' (RFC 7065): write turn:HOST[:PORT]")]
    UnexpectedAuthority {
        /// The URI as given.
        uri: String,
    },
    /// No host.
    #[error("{uri:?}: missing host")]
    MissingHost {
        /// The URI as given.
        uri: String,
    },
    /// An IPv6 literal without its closing bracket, or garbage after it.
    #[error("{uri:?}: bad IPv6 literal")]
    BadIpLiteral {
        /// The URI as given.
        uri: String,
    },
    /// A host name with characters RFC 3986 `reg-name` does not allow.
    #[error("{uri:?}: bad host {host:?}")]
    BadHost {
        /// The URI as given.
        uri: String,
        /// The host part.
        host: String,
    },
    /// The port is not 1–65535.
    #[error("{uri:?}: bad port {port:?}")]
    BadPort {
        /// The URI as given.
        uri: String,
        /// The port text.
        port: String,
    },
    /// A query other than `transport=udp|tcp`.
    #[error("{uri:?}: bad query {query:?}: only ?transport=udp or ?transport=tcp (RFC 7065 §3.1)")]
    BadQuery {
        /// The URI as given.
        uri: String,
        /// The query text.
        query: String,
    },
    /// `turns:…?transport=udp` is TURN over DTLS, which stunmap does not speak.
    #[error("{uri:?}: turns: over UDP (DTLS) is not supported")]
    DtlsUnsupported {
        /// The URI as given.
        uri: String,
    },
    /// The secret of TURN REST credentials is empty.
    #[error("the TURN REST shared secret is empty")]
    EmptySecret,
    /// A user name containing ':' cannot be part of a REST user name `expiry:user`
    /// unambiguously; nor can an empty one.
    #[error("bad user name for TURN REST credentials")]
    BadRestUser,
}
