//! Control plane and relay on TCP/443 (and the relay's QUIC on UDP/443): the sans-IO half.
//!
//! NetBird's management and signal services speak gRPC over TLS, and its relay speaks
//! WebSocket over TLS or QUIC. On a restricted network these break in ways a port check cannot
//! see: a DNS filter answers with a sinkhole, a TLS-inspecting proxy re-signs the chain, a proxy
//! speaks only HTTP/1.1 and strips HTTP/2. This module holds everything that interprets what the
//! engine observed, without touching a socket or a clock:
//!
//! - [`dns`]: the nameservers of resolv.conf and the DNS verdict (the messages are
//!   [`crate::wire::dns`]);
//! - [`tls`]: the trust verdict (public, private CA, TLS inspection by whom) and the ALPN verdict
//!   (certificate names are read by [`crate::wire::x509`]);
//! - [`http`]: the WebSocket upgrade request and verdict, the CONNECT proxy request and verdict,
//!   proxy URLs (response heads are [`crate::wire::http`]);
//! - [`grpc`]: the one gRPC request and the meaning of its status;
//! - [`relay`]: which relay transport a NetBird client would win with;
//! - [`assess`]: from all those facts to a status per endpoint and the problems with their fixes.

pub mod assess;
pub mod dns;
pub mod grpc;
pub mod http;
pub mod relay;
pub mod tls;

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

// The family is the crate's own; `dns` and `assess` name it through here.
use crate::Family;

pub use assess::{
    EndpointReport, PathFacts, PathFailure, Problem, ProblemKind, QuicFacts, Step, WsFacts, assess,
};

/// The NetBird service an endpoint provides; it decides which checks apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Management service: gRPC over TLS (`api.netbird.io:443`).
    Management,
    /// Signal service: gRPC over TLS (`signal.netbird.io:443`).
    Signal,
    /// Relay: WebSocket over TLS on TCP (path `/relay`) raced against QUIC on UDP.
    Relay,
}

impl Role {
    /// Management and signal are gRPC services: they need HTTP/2 end to end.
    pub fn is_grpc(self) -> bool {
        matches!(self, Role::Management | Role::Signal)
    }

    /// ALPN protocols offered on the TLS handshake over TCP. gRPC services are offered both h2
    /// and http/1.1 so that a path that can only do HTTP/1.1 shows itself by choosing it.
    pub fn tcp_alpn(self) -> &'static [&'static [u8]] {
        match self {
            Role::Management | Role::Signal => &[b"h2", b"http/1.1"],
            Role::Relay => &[b"http/1.1"],
        }
    }

    /// The WebSocket path: the relay's own, or the WebSocket transport NetBird's gRPC clients
    /// fall back to when HTTP/2 does not get through.
    pub fn websocket_path(self) -> &'static str {
        match self {
            Role::Management => "/ws-proxy/management",
            Role::Signal => "/ws-proxy/signal",
            Role::Relay => RELAY_WS_PATH,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Management => "management",
            Role::Signal => "signal",
            Role::Relay => "relay",
        })
    }
}

/// The relay's WebSocket path.
pub const RELAY_WS_PATH: &str = "/relay";
/// The relay's QUIC ALPN protocol id.
pub const RELAY_QUIC_ALPN: &[u8] = b"nb-quic";

/// A name and port to check, with its role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EndpointSpec {
    /// What it is.
    pub role: Role,
    /// DNS name (also the TLS server name) or an IP literal.
    pub name: String,
    /// TCP (and, for the relay, UDP) port.
    pub port: u16,
}

impl EndpointSpec {
    /// Parse `HOST[:PORT]` (port 443 when absent; IPv6 literals in brackets).
    pub fn parse(role: Role, s: &str) -> Result<EndpointSpec, ControlError> {
        let bad = || ControlError::BadEndpoint {
            input: s.to_string(),
        };
        let (host, port) = split_host_port(s).ok_or_else(bad)?;
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| bad())?,
            None => 443,
        };
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok(EndpointSpec {
            role,
            name: host.to_string(),
            port,
        })
    }
}

/// Split `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?))),
        };
    }
    match s.split_once(':') {
        Some((h, p)) if !p.contains(':') => Some((h, Some(p))),
        Some(_) => None,
        None => Some((s, None)),
    }
}

/// A name → address override, as curl's `--resolve NAME:PORT:ADDR` (or `NAME:ADDR`, any port).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResolveOverride {
    /// The name it applies to (case-insensitive).
    pub name: String,
    /// Only for this port, when given.
    pub port: Option<u16>,
    /// The address to use instead of DNS.
    pub address: IpAddr,
}

impl ResolveOverride {
    /// Parse `NAME:PORT:ADDR` or `NAME:ADDR`; an IPv6 address may be bracketed.
    pub fn parse(s: &str) -> Result<ResolveOverride, ControlError> {
        let bad = || ControlError::BadResolve {
            input: s.to_string(),
        };
        let (name, rest) = s.split_once(':').ok_or_else(bad)?;
        if name.is_empty() {
            return Err(bad());
        }
        let addr = |a: &str| -> Option<IpAddr> {
            let a = a
                .strip_prefix('[')
                .and_then(|x| x.strip_suffix(']'))
                .unwrap_or(a);
            a.parse().ok()
        };
        if let Some(address) = addr(rest) {
            return Ok(ResolveOverride {
                name: name.to_ascii_lowercase(),
                port: None,
                address,
            });
        }
        let (port, a) = rest.split_once(':').ok_or_else(bad)?;
        Ok(ResolveOverride {
            name: name.to_ascii_lowercase(),
            port: Some(port.parse().map_err(|_| bad())?),
            address: addr(a).ok_or_else(bad)?,
        })
    }

    /// Whether it applies to `name:port`.
    pub fn applies(&self, name: &str, port: u16) -> bool {
        self.name.eq_ignore_ascii_case(name) && self.port.is_none_or(|p| p == port)
    }
}

/// Per-step timeouts; every network step has one, so an unreachable path finishes in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Timeouts {
    /// One DNS query (both families are asked at once; one retransmission at half of it).
    #[serde(with = "crate::serde_util::secs")]
    pub dns: Duration,
    /// TCP connect (to the server, or to the proxy).
    #[serde(with = "crate::serde_util::secs")]
    pub connect: Duration,
    /// TLS handshake (and the proxy's CONNECT reply).
    #[serde(with = "crate::serde_util::secs")]
    pub tls: Duration,
    /// The HTTP exchange: gRPC request or WebSocket upgrade.
    #[serde(with = "crate::serde_util::secs")]
    pub http: Duration,
    /// QUIC handshake.
    #[serde(with = "crate::serde_util::secs")]
    pub quic: Duration,
}

impl Timeouts {
    /// The same bound for every step.
    pub fn uniform(d: Duration) -> Timeouts {
        Timeouts {
            dns: d,
            connect: d,
            tls: d,
            http: d,
            quic: d,
        }
    }
}

impl Default for Timeouts {
    /// 5 s per step (3 s for DNS): long enough for a slow intercontinental TLS handshake,
    /// short enough that a black-holed path finishes quickly.
    fn default() -> Timeouts {
        Timeouts {
            dns: Duration::from_secs(3),
            ..Timeouts::uniform(Duration::from_secs(5))
        }
    }
}

/// Why control-plane input could not be understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// An endpoint is not `HOST[:PORT]`.
    #[error("not HOST[:PORT]: {input:?}")]
    BadEndpoint {
        /// What was given.
        input: String,
    },
    /// A `--resolve` entry is not `NAME:PORT:ADDR` or `NAME:ADDR`.
    #[error("not NAME:PORT:ADDR or NAME:ADDR: {input:?}")]
    BadResolve {
        /// What was given.
        input: String,
    },
    /// A proxy URL is not `http://[user:pass@]host[:port]`.
    #[error("proxy URL not understood ({reason}): {input:?}")]
    BadProxyUrl {
        /// What was given.
        input: String,
        /// Why it was refused.
        reason: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Peer-controlled bytes never panic a parser.
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            let _ = http::page_title(&bytes);
            let text = String::from_utf8_lossy(&bytes);
            let _ = ResolveOverride::parse(&text);
            let _ = EndpointSpec::parse(Role::Relay, &text);
            let _ = http::ProxyUrl::parse(&text);
        }

    }

    #[test]
    fn endpoints_parse() {
        let e = EndpointSpec::parse(Role::Management, "api.netbird.io").unwrap();
        assert_eq!((e.name.as_str(), e.port), ("api.netbird.io", 443));
        let e = EndpointSpec::parse(Role::Relay, "[::1]:8443").unwrap();
        assert_eq!((e.name.as_str(), e.port), ("::1", 8443));
        assert!(EndpointSpec::parse(Role::Signal, "a:b").is_err());
        assert!(EndpointSpec::parse(Role::Signal, ":443").is_err());
        assert!(EndpointSpec::parse(Role::Signal, "::1").is_err());
    }

    #[test]
    fn resolve_overrides_parse() {
        let r = ResolveOverride::parse("API.netbird.test:443:127.0.0.1").unwrap();
        assert_eq!(r.port, Some(443));
        assert!(r.applies("api.netbird.test", 443));
        assert!(!r.applies("api.netbird.test", 80));
        let r = ResolveOverride::parse("relay.test:[::1]").unwrap();
        assert_eq!(r.port, None);
        assert_eq!(r.address, "::1".parse::<IpAddr>().unwrap());
        let r = ResolveOverride::parse("relay.test:::1").unwrap();
        assert_eq!(r.address, "::1".parse::<IpAddr>().unwrap());
        let r = ResolveOverride::parse("relay.test:443:[::1]").unwrap();
        assert_eq!(r.port, Some(443));
        assert!(ResolveOverride::parse("relay.test").is_err());
        assert!(ResolveOverride::parse("relay.test:x:1.2.3.4").is_err());
    }
}
