//! The relay's two transports and which one a NetBird client ends up on.
//!
//! A NetBird relay client dials WebSocket-over-TLS (TCP) and QUIC (UDP, ALPN `nb-quic`) at once
//! and keeps the first that connects, closing the other. So the winner is the transport whose
//! handshake finishes first; if one is blocked the other wins by default.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// One of the NetBird relay client's two transports. Not a [`crate::Transport`]: WebSocket is a
/// protocol over TLS on TCP, and the question here is which protocol stack a client keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RelayTransport {
    /// WebSocket over TLS on TCP.
    WebSocket,
    /// QUIC on UDP.
    Quic,
}

impl fmt::Display for RelayTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RelayTransport::WebSocket => "WebSocket",
            RelayTransport::Quic => "QUIC",
        })
    }
}

/// How the QUIC handshake went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum QuicOutcome {
    /// Handshake complete with ALPN `nb-quic`.
    Connected {
        /// Handshake time.
        #[serde(with = "crate::serde_util::secs")]
        time: Duration,
        /// The server accepts QUIC datagrams (RFC 9221), which the relay needs.
        datagrams: bool,
    },
    /// The server refused the ALPN (TLS alert no_application_protocol): it speaks QUIC, but is
    /// not a NetBird relay, or not this version of one.
    AlpnRefused,
    /// No answer in time: UDP/443 dropped on the path.
    Timeout,
    /// Another failure, in quinn's words.
    Error {
        /// What happened.
        message: String,
    },
}

/// The race's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RaceResult {
    /// The winner, if anything connected.
    pub winner: Option<RelayTransport>,
    /// WebSocket handshake time (TCP + TLS + upgrade), if it worked.
    #[serde(with = "crate::serde_util::opt_secs")]
    pub websocket: Option<Duration>,
    /// QUIC handshake time, if it worked.
    #[serde(with = "crate::serde_util::opt_secs")]
    pub quic: Option<Duration>,
}

/// Decide the race from the best handshake time of each transport.
pub fn race(websocket: Option<Duration>, quic: Option<Duration>) -> RaceResult {
    let winner = match (websocket, quic) {
        (Some(w), Some(q)) if q <= w => Some(RelayTransport::Quic),
        (Some(_), _) => Some(RelayTransport::WebSocket),
        (None, Some(_)) => Some(RelayTransport::Quic),
        (None, None) => None,
    };
    RaceResult {
        winner,
        websocket,
        quic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn winner() {
        let ms = Duration::from_millis;
        assert_eq!(
            race(Some(ms(30)), Some(ms(10))).winner,
            Some(RelayTransport::Quic)
        );
        assert_eq!(
            race(Some(ms(3)), Some(ms(10))).winner,
            Some(RelayTransport::WebSocket)
        );
        assert_eq!(race(None, Some(ms(10))).winner, Some(RelayTransport::Quic));
        assert_eq!(
            race(Some(ms(1)), None).winner,
            Some(RelayTransport::WebSocket)
        );
        assert_eq!(race(None, None).winner, None);
        assert_eq!(RelayTransport::WebSocket.to_string(), "WebSocket");
        assert_eq!(RelayTransport::Quic.to_string(), "QUIC");
    }
}
