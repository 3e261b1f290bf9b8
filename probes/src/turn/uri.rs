//! `turn:` and `turns:` URIs, RFC 7065 §3.1:
//!
//! ```text
//! turnURI   = scheme ":" host [ ":" port ] [ "?transport=" transport ]
//! scheme    = "turn" / "turns"
//! transport = "udp" / "tcp" / transport-ext
//! ```
//!
//! Defaults (RFC 7065 §3.2, RFC 8656 §4): port 3478 for `turn:`, 5349 for `turns:`; transport
//! UDP for `turn:`, TCP (that is, TLS) for `turns:`. `turns:` with `transport=udp` would be DTLS,
//! which is reported as unsupported rather than silently changed.

use std::fmt;
use std::net::IpAddr;

use super::TurnError;
use crate::Transport;

/// The host of a URI.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum UriHost {
    /// An IPv4 address or a bracketed IPv6 literal.
    Ip(IpAddr),
    /// A registered name (resolved by the caller; also the TLS server name).
    Name(String),
}

impl fmt::Display for UriHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UriHost::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            UriHost::Ip(ip) => write!(f, "{ip}"),
            UriHost::Name(n) => f.write_str(n),
        }
    }
}

/// A parsed TURN URI.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TurnUri {
    /// `turns:` (TLS) or not.
    pub secure: bool,
    /// The host.
    pub host: UriHost,
    /// The port (explicit or the scheme's default).
    pub port: u16,
    /// The transport to use: UDP, TCP or TLS (TURN has no QUIC transport, RFC 8656 §3.1).
    pub transport: Transport,
}

/// Default port of `turn:`, RFC 8656 §4.
pub const TURN_PORT: u16 = 3478;
/// Default port of `turns:`, RFC 8656 §4.
pub const TURNS_PORT: u16 = 5349;

impl TurnUri {
    /// Parse a URI (the scheme and `transport` value are case-insensitive, RFC 3986 §3.1).
    pub fn parse(uri: &str) -> Result<Self, TurnError> {
        let text = uri.trim();
        let owned = || text.to_string();
        let Some((scheme, rest)) = text.split_once(':') else {
            return Err(TurnError::UnknownScheme {
                scheme: text.to_string(),
            });
        };
        let secure = match scheme.to_ascii_lowercase().as_str() {
            "turn" => false,
            "turns" => true,
            _ => {
                return Err(TurnError::UnknownScheme {
                    scheme: scheme.to_string(),
                });
            }
        };
        if rest.starts_with("//") {
            return Err(TurnError::UnexpectedAuthority { uri: owned() });
        }
        let (hostport, query) = match rest.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (rest, None),
        };
        let (host, port_text) = if let Some(v6) = hostport.strip_prefix('[') {
            let Some((lit, tail)) = v6.split_once(']') else {
                return Err(TurnError::BadIpLiteral { uri: owned() });
            };
            let ip: std::net::Ipv6Addr = lit
                .parse()
                .map_err(|_| TurnError::BadIpLiteral { uri: owned() })?;
            let port = match tail {
                "" => None,
                t => match t.strip_prefix(':') {
                    Some(p) => Some(p),
                    None => return Err(TurnError::BadIpLiteral { uri: owned() }),
                },
            };
            (UriHost::Ip(IpAddr::V6(ip)), port)
        } else {
            let (h, p) = match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            };
            if h.is_empty() {
                return Err(TurnError::MissingHost { uri: owned() });
            }
            let host = match h.parse::<std::net::Ipv4Addr>() {
                Ok(ip) => UriHost::Ip(IpAddr::V4(ip)),
                Err(_) => {
                    let ok = h
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
                    if !ok {
                        return Err(TurnError::BadHost {
                            uri: owned(),
                            host: h.to_string(),
                        });
                    }
                    UriHost::Name(h.to_ascii_lowercase())
                }
            };
            (host, p)
        };
        let port = match port_text {
            None => {
                if secure {
                    TURNS_PORT
                } else {
                    TURN_PORT
                }
            }
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(TurnError::BadPort {
                        uri: owned(),
                        port: p.to_string(),
                    });
                }
            },
        };
        let transport = match query {
            None => {
                if secure {
                    Transport::Tls
                } else {
                    Transport::Udp
                }
            }
            Some(q) => {
                let bad = || TurnError::BadQuery {
                    uri: owned(),
                    query: q.to_string(),
                };
                let (k, v) = q.split_once('=').ok_or_else(bad)?;
                if !k.eq_ignore_ascii_case("transport") {
                    return Err(bad());
                }
                match (v.to_ascii_lowercase().as_str(), secure) {
                    ("udp", false) => Transport::Udp,
                    ("tcp", false) => Transport::Tcp,
                    ("tcp", true) => Transport::Tls,
                    ("udp", true) => return Err(TurnError::DtlsUnsupported { uri: owned() }),
                    _ => return Err(bad()),
                }
            }
        };
        Ok(Self {
            secure,
            host,
            port,
            transport,
        })
    }
}

impl fmt::Display for TurnUri {
    /// The canonical form, with the port and transport spelled out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.secure { "turns" } else { "turn" };
        // RFC 7065 §3.1 names only udp and tcp (TLS is the `turns:` scheme over tcp).
        let t = if self.transport.is_stream() {
            "tcp"
        } else {
            "udp"
        };
        write!(f, "{scheme}:{}:{}?transport={t}", self.host, self.port)
    }
}

impl std::str::FromStr for TurnUri {
    type Err = TurnError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7065_examples_and_defaults() {
        let u = TurnUri::parse("turn:example.org").unwrap();
        assert_eq!(u.host, UriHost::Name("example.org".into()));
        assert_eq!(
            (u.port, u.transport, u.secure),
            (3478, Transport::Udp, false)
        );
        let u = TurnUri::parse("turns:example.org").unwrap();
        assert_eq!((u.port, u.transport), (5349, Transport::Tls));
        let u = TurnUri::parse("turn:example.org?transport=udp").unwrap();
        assert_eq!(u.transport, Transport::Udp);
        let u = TurnUri::parse("TURN:example.org:443?Transport=TCP").unwrap();
        assert_eq!((u.port, u.transport), (443, Transport::Tcp));
        let u = TurnUri::parse("turns:192.0.2.1:443?transport=tcp").unwrap();
        assert_eq!(u.host, UriHost::Ip("192.0.2.1".parse().unwrap()));
        assert_eq!(u.transport, Transport::Tls);
        let u = TurnUri::parse("turn:[2001:db8::1]:3479").unwrap();
        assert_eq!(u.host, UriHost::Ip("2001:db8::1".parse().unwrap()));
        assert_eq!(u.port, 3479);
        assert_eq!(u.to_string(), "turn:[2001:db8::1]:3479?transport=udp");
        assert_eq!(TurnUri::parse(&u.to_string()).unwrap(), u);
    }

    #[test]
    fn bad_uris_have_typed_errors() {
        let e = |s: &str| TurnUri::parse(s).unwrap_err();
        assert!(matches!(e("stun:x"), TurnError::UnknownScheme { .. }));
        assert!(matches!(e("example.org"), TurnError::UnknownScheme { .. }));
        assert!(matches!(
            e("turn://x:3478"),
            TurnError::UnexpectedAuthority { .. }
        ));
        assert!(matches!(e("turn:"), TurnError::MissingHost { .. }));
        assert!(matches!(e("turn::3478"), TurnError::MissingHost { .. }));
        assert!(matches!(e("turn:[::1"), TurnError::BadIpLiteral { .. }));
        assert!(matches!(e("turn:[::1]x"), TurnError::BadIpLiteral { .. }));
        assert!(matches!(e("turn:[zz]:1"), TurnError::BadIpLiteral { .. }));
        assert!(matches!(e("turn:a b:1"), TurnError::BadHost { .. }));
        assert!(matches!(e("turn:x:0"), TurnError::BadPort { .. }));
        assert!(matches!(e("turn:x:70000"), TurnError::BadPort { .. }));
        assert!(matches!(
            e("turn:x?transport=sctp"),
            TurnError::BadQuery { .. }
        ));
        assert!(matches!(e("turn:x?foo=udp"), TurnError::BadQuery { .. }));
        assert!(matches!(
            e("turns:x?transport=udp"),
            TurnError::DtlsUnsupported { .. }
        ));
        // Messages are readable.
        assert!(e("turn://x").to_string().contains("turn:HOST"));
    }
}
