//! HTTP/1.1 as far as stunmap speaks it: the WebSocket upgrade request (RFC 6455 §4.1) and its
//! verdict, the proxy CONNECT request (RFC 9110 §9.3.6) and its verdict, and proxy URLs with
//! `NO_PROXY`. Response heads are read by [`crate::wire::http`].

use serde::Serialize;

use super::ControlError;
use crate::wire::http::ResponseHead;

/// Standard base64 (RFC 4648 §4), with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sym = |i: u32| char::from(ALPHABET.get((i & 63) as usize).copied().unwrap_or(b'='));
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = |k: usize| u32::from(chunk.get(k).copied().unwrap_or(0));
        let n = b(0) << 16 | b(1) << 8 | b(2);
        out.push(sym(n >> 18));
        out.push(sym(n >> 12));
        out.push(if chunk.len() > 1 { sym(n >> 6) } else { '=' });
        out.push(if chunk.len() > 2 { sym(n) } else { '=' });
    }
    out
}

/// The GUID appended to the key before hashing, RFC 6455 §1.3.
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The WebSocket opening handshake request (RFC 6455 §4.1); `key` is the base64 of 16 random
/// bytes.
pub fn upgrade_request(host: &str, port: u16, path: &str, key: &str) -> String {
    let authority = authority(host, port);
    format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nUser-Agent: stunmap\r\n\r\n"
    )
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// What came back for the WebSocket upgrade.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "verdict")]
pub enum WsVerdict {
    /// 101 Switching Protocols with the right `Sec-WebSocket-Accept`.
    Upgraded,
    /// 101, but the accept value is wrong or missing: a middlebox answered on the server's
    /// behalf.
    BadAccept,
    /// 407: a proxy wants credentials.
    ProxyAuthRequired {
        /// The `Proxy-Authenticate` challenge.
        challenge: Option<String>,
    },
    /// Any other status: a block page, 403, 404 (wrong path), 426, 502 …
    Refused {
        /// Status code.
        status: u16,
        /// Reason phrase.
        reason: String,
        /// `Server` header (names the proxy, often).
        server: Option<String>,
        /// The `<title>` of an HTML error page, when the body showed one.
        page_title: Option<String>,
    },
    /// Not HTTP at all.
    NotHttp {
        /// Why the reply was not understood.
        detail: String,
    },
}

/// Judge an upgrade reply. `body` is whatever followed the head in the bytes read.
pub fn ws_verdict(head: &ResponseHead, expected_accept: &str, body: &[u8]) -> WsVerdict {
    match head.status {
        101 => {
            let upgrade_ok = head
                .header("upgrade")
                .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
            if upgrade_ok && head.header("sec-websocket-accept") == Some(expected_accept) {
                WsVerdict::Upgraded
            } else {
                WsVerdict::BadAccept
            }
        }
        407 => WsVerdict::ProxyAuthRequired {
            challenge: head.header("proxy-authenticate").map(str::to_string),
        },
        status => WsVerdict::Refused {
            status,
            reason: head.reason.clone(),
            server: head.header("server").map(str::to_string),
            page_title: page_title(body),
        },
    }
}

/// The `<title>` of an HTML page, trimmed, if the bytes contain one.
pub fn page_title(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let lower = text.to_ascii_lowercase();
    let start = lower.find("<title")?;
    let open_end = start + lower.get(start..)?.find('>')? + 1;
    let close = open_end + lower.get(open_end..)?.find("</title")?;
    let title = text.get(open_end..close)?.trim();
    (!title.is_empty()).then(|| title.chars().take(120).collect())
}

/// An HTTP proxy, from `--proxy` or `HTTPS_PROXY`.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct ProxyUrl {
    /// Host name or address.
    pub host: String,
    /// Port (default 80 for `http://`, 3128 when no scheme is given).
    pub port: u16,
    /// `user:password`, used for `Proxy-Authorization: Basic`.
    #[serde(skip)]
    pub credentials: Option<String>,
}

impl std::fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        f.debug_struct("ProxyUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("credentials", &self.credentials.as_ref().map(|_| "…"))
            .finish()
    }
}

impl std::fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}", authority(&self.host, self.port))
    }
}

impl ProxyUrl {
    /// Parse `http://[user:pass@]host[:port][/]` (or the same without a scheme). `https://`
    /// proxies (TLS to the proxy) are not supported.
    pub fn parse(s: &str) -> Result<ProxyUrl, ControlError> {
        let bad = |reason| ControlError::BadProxyUrl {
            input: s.to_string(),
            reason,
        };
        let (rest, default_port) = match s.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => (rest, 80),
            Some(_) => return Err(bad("only http:// proxies are supported")),
            None => (s, 3128),
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return Err(bad("a proxy URL has no path"));
        }
        let (credentials, hostport) = match rest.rsplit_once('@') {
            Some((c, h)) => (Some(c.to_string()), h),
            None => (None, rest),
        };
        let (host, port) = super::split_host_port(hostport).ok_or(bad("bad host:port"))?;
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad("bad port"))?,
            None => default_port,
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(ProxyUrl {
            host: host.to_string(),
            port,
            credentials,
        })
    }

    /// The CONNECT request for `host:port` (RFC 9110 §9.3.6).
    pub fn connect_request(&self, host: &str, port: u16) -> String {
        let target = authority(host, port);
        let auth = self
            .credentials
            .as_ref()
            .map(|c| format!("Proxy-Authorization: Basic {}\r\n", base64(c.as_bytes())))
            .unwrap_or_default();
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}User-Agent: stunmap\r\n\r\n")
    }
}

/// Whether `NO_PROXY` exempts `host`: entries are names (a leading dot or `*.` optional, suffix
/// match on a label boundary), IP literals, or `*` for everything.
pub fn no_proxy_matches(no_proxy: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    no_proxy
        .split([',', ' '])
        .map(|e| e.trim().trim_start_matches("*.").trim_start_matches('.'))
        .filter(|e| !e.is_empty())
        .any(|e| {
            let e = e.to_ascii_lowercase();
            e == "*" || host == e || host.ends_with(&format!(".{e}"))
        })
}

/// What the proxy said to CONNECT.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "verdict")]
pub enum ConnectVerdict {
    /// 2xx: the tunnel is open.
    Tunnel,
    /// 407: credentials needed (or wrong).
    AuthRequired {
        /// The `Proxy-Authenticate` challenge.
        challenge: Option<String>,
    },
    /// Anything else: the proxy refuses this destination or cannot reach it.
    Refused {
        /// Status code.
        status: u16,
        /// Reason phrase.
        reason: String,
    },
}

/// Judge a CONNECT reply.
pub fn connect_verdict(head: &ResponseHead) -> ConnectVerdict {
    match head.status {
        200..=299 => ConnectVerdict::Tunnel,
        407 => ConnectVerdict::AuthRequired {
            challenge: head.header("proxy-authenticate").map(str::to_string),
        },
        status => ConnectVerdict::Refused {
            status,
            reason: head.reason.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::http::{MAX_HEAD, parse_head};

    #[test]
    fn heads() {
        assert_eq!(parse_head(b"HTTP/1.1 101 Switch").unwrap(), None);
        assert!(parse_head(b"SSH-2.0-x\r\n").is_err());
        let raw = b"HTTP/1.1 403 Forbidden\r\nServer: Squid\r\nX-A: b:c\r\n\r\n<html><title> Access denied </title>";
        let h = parse_head(raw).unwrap().unwrap();
        assert_eq!(h.status, 403);
        assert_eq!(h.header("x-a"), Some("b:c"));
        let body = &raw[h.len..];
        assert_eq!(
            ws_verdict(&h, "x", body),
            WsVerdict::Refused {
                status: 403,
                reason: "Forbidden".into(),
                server: Some("Squid".into()),
                page_title: Some("Access denied".into())
            }
        );
        assert!(parse_head(&vec![b'H'; MAX_HEAD + 1]).is_err());
        assert!(parse_head(b"HTTP/1.1 abc\r\n\r\n").is_err());
    }

    #[test]
    fn websocket_accept() {
        let ok = parse_head(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: abc=\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(ws_verdict(&ok, "abc=", b""), WsVerdict::Upgraded);
        assert_eq!(ws_verdict(&ok, "xyz=", b""), WsVerdict::BadAccept);
        // RFC 6455 §1.3's example key, with its SHA-1 taken elsewhere: only base64 is ours.
        assert_eq!(base64(b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
    }

    #[test]
    fn proxies() {
        let p = ProxyUrl::parse("http://u:p@proxy.lan:8080/").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("proxy.lan", 8080));
        assert!(
            p.connect_request("api.netbird.io", 443)
                .contains("Basic dTpw\r\n")
        );
        assert!(!format!("{p:?}").contains("u:p"));
        assert_eq!(ProxyUrl::parse("127.0.0.1").unwrap().port, 3128);
        assert!(ProxyUrl::parse("socks5://x").is_err());
        assert!(no_proxy_matches("localhost,.netbird.io", "api.netbird.io"));
        assert!(!no_proxy_matches("bird.io", "api.netbird.io"));
        assert!(no_proxy_matches("*", "x"));
        let h = parse_head(b"HTTP/1.1 407 Auth\r\nProxy-Authenticate: Basic realm=\"x\"\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(matches!(
            connect_verdict(&h),
            ConnectVerdict::AuthRequired { .. }
        ));
    }
}
