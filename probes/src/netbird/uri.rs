//! The URIs a NetBird client reports: STUN and TURN servers (`stun:`, `stuns:`, RFC 7064 §3.1;
//! `turn:`, `turns:`, RFC 7065 §3.1), relays (`rels://host:port` WebSocket over TLS,
//! `rel://host:port` plain WebSocket) and the management/signal URLs (`https://host:port`, or
//! `host:port` as some versions print them).

use std::fmt;

use serde::Serialize;

use crate::profile::Host;

/// Which service a URI names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// `stun:` (UDP), RFC 7064.
    Stun,
    /// `stuns:` (STUN over TLS), RFC 7064.
    Stuns,
    /// `turn:`, RFC 7065.
    Turn,
    /// `turns:` (TURN over TLS), RFC 7065.
    Turns,
    /// `rels://`: NetBird relay over WebSocket/TLS (QUIC on the same UDP port).
    Rels,
    /// `rel://`: NetBird relay over plain WebSocket.
    Rel,
    /// `https://` (management, signal).
    Https,
    /// `http://` (management, signal without TLS).
    Http,
}

impl Scheme {
    /// Default port: RFC 7064 §3.1 / RFC 7065 §3.2 (3478, 5349); 443 and 80 for the others.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Stun | Scheme::Turn => 3478,
            Scheme::Stuns | Scheme::Turns => 5349,
            Scheme::Rels | Scheme::Https => 443,
            Scheme::Rel | Scheme::Http => 80,
        }
    }
}

/// Transport named by `?transport=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP (TLS for `turns:`).
    Tcp,
}

/// A parsed URI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NbUri {
    /// Scheme.
    pub scheme: Scheme,
    /// Host.
    pub host: Host,
    /// Port, explicit or the scheme's default.
    pub port: u16,
    /// `?transport=`, when given.
    pub transport: Option<Transport>,
}

impl fmt::Display for NbUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}:{}:{}", self.scheme, self.host, self.port)
    }
}

/// Parse one URI. `bare` allows `host:port` without a scheme (then `https`).
pub fn parse(text: &str, bare: bool) -> Result<NbUri, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty URI".into());
    }
    if t.len() > 512 {
        return Err("URI longer than 512 characters".into());
    }
    let lower = t.to_ascii_lowercase();
    let (scheme, rest) = [
        ("stuns:", Scheme::Stuns),
        ("stun:", Scheme::Stun),
        ("turns:", Scheme::Turns),
        ("turn:", Scheme::Turn),
        ("rels://", Scheme::Rels),
        ("rel://", Scheme::Rel),
        ("https://", Scheme::Https),
        ("http://", Scheme::Http),
    ]
    .iter()
    .find(|(p, _)| lower.starts_with(p))
    .map(|(p, s)| (*s, t.get(p.len()..).unwrap_or("")))
    .or_else(|| bare.then_some((Scheme::Https, t)))
    .ok_or_else(|| format!("{t:?}: unknown scheme"))?;
    let (hostport, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest, None),
    };
    // A path after the authority (https://host:443/, rels://host:443/relay) is ignored.
    let hostport = hostport.split('/').next().unwrap_or("");
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (lit, tail) = v6
            .split_once(']')
            .ok_or_else(|| format!("{t:?}: unclosed IPv6 literal"))?;
        let port = match tail.strip_prefix(':') {
            Some(p) => Some(p),
            None if tail.is_empty() => None,
            None => return Err(format!("{t:?}: junk after the IPv6 literal")),
        };
        (lit, port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let host = Host::parse(host).map_err(|e| format!("{t:?}: {e}"))?;
    if matches!(host, Host::Wildcard(_)) {
        return Err(format!("{t:?}: a wildcard is not a server"));
    }
    let port = match port {
        None => scheme.default_port(),
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("{t:?}: {p:?} is not a port")),
        },
    };
    let transport = match query {
        None => None,
        Some(q) => {
            let v = q.split('&').find_map(|kv| {
                kv.to_ascii_lowercase()
                    .strip_prefix("transport=")
                    .map(str::to_owned)
            });
            match v.as_deref() {
                None => None,
                Some("udp") => Some(Transport::Udp),
                Some("tcp") => Some(Transport::Tcp),
                Some(o) => return Err(format!("{t:?}: unknown transport {o:?}")),
            }
        }
    };
    Ok(NbUri {
        scheme,
        host,
        port,
        transport,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn netbird_uris() {
        let u = parse("stun:stun.netbird.io:443", false).unwrap();
        assert_eq!((u.scheme, u.port), (Scheme::Stun, 443));
        assert_eq!(u.host, Host::Name("stun.netbird.io".into()));
        let u = parse("turns:my-awesome-turn.com:443?transport=tcp", false).unwrap();
        assert_eq!(
            (u.scheme, u.port, u.transport),
            (Scheme::Turns, 443, Some(Transport::Tcp))
        );
        let u = parse("turn:turn.netbird.io:80?transport=udp", false).unwrap();
        assert_eq!(u.transport, Some(Transport::Udp));
        let u = parse("rels://streamline-de-fra1-0.relay.netbird.io:443", false).unwrap();
        assert_eq!((u.scheme, u.port), (Scheme::Rels, 443));
        let u = parse("rel://[2001:db8::5]:33080", false).unwrap();
        assert_eq!(u.host, Host::Ip("2001:db8::5".parse().unwrap()));
        assert_eq!(u.port, 33080);
        let u = parse("https://api.netbird.io:443", false).unwrap();
        assert_eq!((u.scheme, u.port), (Scheme::Https, 443));
        let u = parse("my-awesome-management.com:443", true).unwrap();
        assert_eq!(u.host, Host::Name("my-awesome-management.com".into()));
        assert_eq!(parse("stun:stun.example.test", false).unwrap().port, 3478);
        assert!(parse("my-awesome-management.com:443", false).is_err());
        assert!(parse("stun:bad host:1", false).is_err());
        assert!(parse("turn:t.test:0", false).is_err());
        assert!(parse("turn:t.test:1?transport=sctp", false).is_err());
        assert!(parse("rels://[::1", false).is_err());
        assert!(parse("", false).is_err());
    }
}
