//! The request rules of `stunmap serve --metrics`, the probe server in the manner of
//! Prometheus' blackbox_exporter, without I/O: which endpoint a request asks for, what its
//! query and headers say and whether each is in range ([`request`]), which `target`
//! addresses a requester may point a check at ([`allow`]), whether the requester is
//! authorised ([`auth`]), and whether a module's TURN credentials may go to the address a
//! check will reach ([`credentials`]).
//!
//! The HTTP framing itself is hyper's (RFC 9112); the binary hands the parsed method, path,
//! query and header values in and acts on the typed result. Every field a requester controls
//! has a range: an out-of-range value is a [`request::RequestError`] with its HTTP status,
//! never a panic.

pub mod allow;
pub mod auth;
pub mod credentials;
pub mod request;

pub use allow::{AllowList, Decision, DenyReason};
pub use auth::{Auth, AuthError};
pub use credentials::{CredentialUse, published_turn_addresses};
pub use request::{Endpoint, ProbeQuery, Request, RequestError};
