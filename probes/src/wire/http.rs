//! HTTP/1.1 response heads, RFC 9112 §4 (status line) and §5 (field lines): what stunmap
//! reads back from a WebSocket upgrade, a proxy's CONNECT and a gateway's description server.
//! The head is read up to the blank line, at most [`MAX_HEAD`] bytes; bytes after it (a body,
//! or the start of a tunnel) are the caller's.

use serde::Serialize;

use super::{Layer, WireError};

/// The longest response head read before giving up.
pub const MAX_HEAD: usize = 16 * 1024;

/// A parsed response head.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResponseHead {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Header fields in order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Bytes the head took, including the blank line.
    #[serde(skip)]
    pub len: usize,
}

impl ResponseHead {
    /// The first value of a header (name in lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parse a response head from the start of `buf`: `Ok(None)` while it is incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<ResponseHead>, WireError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err(WireError::TooLong {
                layer: Layer::Http,
                limit: MAX_HEAD,
            });
        }
        if !buf.is_empty() && !b"HTTP/".starts_with(buf.get(..buf.len().min(5)).unwrap_or(&[])) {
            return Err(WireError::Malformed {
                layer: Layer::Http,
                what: "not an HTTP response",
            });
        }
        return Ok(None);
    };
    let text = String::from_utf8_lossy(buf.get(..end).unwrap_or(&[]));
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(WireError::Malformed {
            layer: Layer::Http,
            what: "not an HTTP/1.x status line",
        });
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..1000).contains(s))
        .ok_or(WireError::Malformed {
            layer: Layer::Http,
            what: "bad status code",
        })?;
    let reason = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(WireError::Malformed {
            layer: Layer::Http,
            what: "header line without a colon",
        })?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(Some(ResponseHead {
        status,
        reason,
        headers,
        len: end + 4,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_and_every_bad_one_is_an_error() {
        assert_eq!(parse_head(b"HTTP/1.1 101 Switch").unwrap(), None);
        assert_eq!(parse_head(b"").unwrap(), None);
        assert!(matches!(
            parse_head(b"SSH-2.0-x\r\n"),
            Err(WireError::Malformed {
                layer: Layer::Http,
                ..
            })
        ));
        let raw = b"HTTP/1.1 403 Forbidden\r\nServer: Squid\r\nX-A: b:c\r\n\r\nbody";
        let h = parse_head(raw).unwrap().unwrap();
        assert_eq!((h.status, h.reason.as_str()), (403, "Forbidden"));
        assert_eq!(h.header("server"), Some("Squid"));
        assert_eq!(h.header("x-a"), Some("b:c"));
        assert_eq!(&raw[h.len..], b"body");
        assert_eq!(
            parse_head(&vec![b'H'; MAX_HEAD + 1]),
            Err(WireError::TooLong {
                layer: Layer::Http,
                limit: MAX_HEAD
            })
        );
        assert!(parse_head(b"HTTP/1.1 abc\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/2 200 OK\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 99 Low\r\n\r\n").is_err());
    }
}
