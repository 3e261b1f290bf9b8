//! The verbs every probe speaks, so the engine can drive any of them without knowing the
//! protocol: feed input and timeouts with `now`, drain transmits, ask for the next timeout, take
//! the output when done. The engine routes datagrams to a probe by the transaction id the probe
//! declared on its transmits.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::stun::TransactionId;
use crate::stun::view::ParseError;

/// Which of the engine's local sockets a datagram leaves from. `Default` lets the engine pick
/// its shared socket for the destination's address family; a numbered socket is a distinct
/// local port that a probe asked for (NAT mapping tests need several).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LocalSocket {
    /// The shared socket of the destination's family.
    #[default]
    Default,
    /// A probe-private socket, numbered by the probe (0, 1, …).
    Private(u8),
}

/// One datagram a probe wants sent. The bytes were appended to the buffer passed to
/// [`Probe::poll_transmit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub destination: SocketAddr,
    /// From which local socket.
    pub local: LocalSocket,
    /// The transaction id responses will carry; the engine routes them back by it.
    pub transaction_id: TransactionId,
    /// 0 for the first transmission of a transaction, n for the n-th retransmission.
    pub attempt: u8,
}

/// One datagram as it arrived: the local socket it landed on, who sent it, and its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received<'a> {
    /// The local socket: [`LocalSocket::Default`] for the shared socket (where the engine routes
    /// by declared transaction id), the probe's own number for a private one.
    pub socket: LocalSocket,
    /// The sender.
    pub from: SocketAddr,
    /// The datagram's bytes.
    pub data: &'a [u8],
}

/// Why a probe did not take a datagram. The engine counts these; none is fatal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Ignored {
    /// Not a STUN message.
    #[error("not STUN: {0}")]
    Malformed(ParseError),
    /// A STUN message, but not a response to anything outstanding.
    #[error("no outstanding transaction with this id")]
    UnknownTransaction,
    /// A request or indication where a response was expected.
    #[error("not a response")]
    NotAResponse,
    /// A response for another method.
    #[error("response for another method")]
    WrongMethod,
    /// From an address the transaction did not send to (RFC 8489 §6.3.1 for UDP).
    #[error("response from an unexpected source address")]
    UnexpectedSource,
    /// FINGERPRINT present but wrong (RFC 8489 §14.7): never trusted.
    #[error("FINGERPRINT mismatch")]
    BadFingerprint,
    /// The transaction already finished; a duplicate or late reply.
    #[error("duplicate or late response")]
    Late,
    /// MESSAGE-INTEGRITY(-SHA256) wrong, or missing from a success response to an authenticated
    /// request (RFC 8489 §9.2.5): never trusted.
    #[error("MESSAGE-INTEGRITY missing or wrong")]
    BadIntegrity,
    /// Data the probe did not expect on its socket (not STUN, not ChannelData it can use).
    #[error("unexpected data")]
    Unexpected,
}

/// A probe state machine, RFC 8489 §6.2-style: sans-IO, driven from outside.
pub trait Probe {
    /// What the probe concludes.
    type Output;

    /// A datagram arrived from `from` at time `now`.
    fn handle_input(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> Result<(), Ignored>;

    /// The same, told which local socket the datagram arrived on ([`Received::socket`]). Probes
    /// that care where an answer landed (a reply that should have gone elsewhere) override
    /// this; the default ignores the socket.
    fn handle_input_on(&mut self, now: Instant, received: Received<'_>) -> Result<(), Ignored> {
        self.handle_input(now, received.from, received.data)
    }

    /// The time from [`Probe::poll_timeout`] was reached (calling it early is harmless).
    fn handle_timeout(&mut self, now: Instant);

    /// Append the next datagram to send to `buf` and describe it, or `None` when nothing is due.
    #[must_use]
    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit>;

    /// When the probe next needs [`Probe::handle_timeout`]; `None` once done.
    #[must_use]
    fn poll_timeout(&self) -> Option<Instant>;

    /// Whether the probe has finished (its output is ready).
    fn is_done(&self) -> bool;

    /// Take the output once done (later calls return `None`).
    fn take_output(&mut self) -> Option<Self::Output>;

    /// Stop early (Ctrl-C, global deadline). A probe that holds state on a server (a TURN
    /// allocation) starts releasing it and returns `true`: the engine keeps driving it, for a
    /// bounded time, until it is done. The default returns `false`: nothing to clean up, and
    /// the engine drops the probe as abandoned.
    fn cancel(&mut self, _now: Instant) -> bool {
        false
    }

    /// How many probe-private local sockets ([`LocalSocket::Private`] 0..n) this probe sends
    /// from, and toward which destination (so the engine can learn the routed source address).
    /// The engine binds them before the first [`Probe::poll_transmit`].
    fn private_sockets(&self) -> Option<PrivateSockets> {
        None
    }

    /// The engine reports the local address of each socket the probe uses: for a wildcard
    /// bind, the IP is the source address the OS routes toward the probe's destination.
    fn handle_local_addr(&mut self, _socket: LocalSocket, _addr: SocketAddr) {}
}

/// A request for probe-private sockets, see [`Probe::private_sockets`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrivateSockets {
    /// Number of distinct local ports.
    pub count: u8,
    /// A destination the probe will talk to (chooses the address family and source route).
    pub toward: SocketAddr,
}

/// Retransmission policy, RFC 8489 §6.2.1: send at 0, RTO, 3·RTO, 7·RTO … (the interval doubles)
/// up to `rc` transmissions, then wait `rm`·RTO after the last one; `deadline` (if set) caps the
/// whole transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Retransmit {
    /// Initial retransmission timeout (RFC 8489 §6.2.1 recommends ≥ 500 ms on the open
    /// internet; lower values are for known paths such as a lab or a LAN).
    pub rto: Duration,
    /// Maximum transmissions (Rc, default 7).
    pub rc: u8,
    /// Final wait in multiples of RTO (Rm, default 16).
    pub rm: u8,
    /// Overall cap on the transaction, from its first transmission.
    pub deadline: Option<Duration>,
}

impl Default for Retransmit {
    /// RFC 8489 §6.2.1 defaults: RTO 500 ms, Rc 7, Rm 16 (39.5 s in all), no extra cap.
    fn default() -> Self {
        Self {
            rto: Duration::from_millis(500),
            rc: 7,
            rm: 16,
            deadline: None,
        }
    }
}

impl Retransmit {
    /// Offset from the first transmission at which transmission `n` (0-based) is due, or the
    /// final timeout when `n == rc`; `None` past that.
    pub fn offset(&self, n: u8) -> Option<Duration> {
        let rto = self.rto;
        let at = if n < self.rc {
            // 0, RTO, 3RTO, 7RTO … = (2^n - 1)·RTO
            rto.checked_mul((1u32 << n.min(31)).saturating_sub(1))?
        } else if n == self.rc {
            let last = self.rc.checked_sub(1)?;
            self.offset(last)?
                .checked_add(rto.checked_mul(u32::from(self.rm))?)?
        } else {
            return None;
        };
        Some(match self.deadline {
            Some(d) => at.min(d),
            None => at,
        })
    }

    /// When the transaction gives up, from its first transmission.
    pub fn give_up_after(&self) -> Duration {
        self.offset(self.rc).unwrap_or(self.rto)
    }

    /// When a transaction first sent at `first` that has made `sent` transmissions next needs
    /// attention: its next retransmission, or the give-up time once no more is due. A
    /// retransmission that would fall at or past the give-up time is not sent.
    pub fn next_due(&self, first: Instant, sent: u8) -> Option<Instant> {
        let give_up = self.give_up_after();
        match self.offset(sent) {
            Some(at) if sent < self.rc && at < give_up => first.checked_add(at),
            _ => first.checked_add(give_up),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8489_schedule_with_default_values() {
        // RFC 8489 §6.2.1 example: RTO 500 ms → sent at 0, 500, 1500, 3500, 7500, 15500, 31500,
        // failure at 39500 ms.
        let r = Retransmit::default();
        let got: Vec<u64> = (0..=7)
            .map(|n| r.offset(n).unwrap().as_millis() as u64)
            .collect();
        assert_eq!(got, vec![0, 500, 1500, 3500, 7500, 15500, 31500, 39500]);
        assert_eq!(r.offset(8), None);
        assert_eq!(r.give_up_after(), Duration::from_millis(39500));
    }

    #[test]
    fn deadline_caps_the_schedule() {
        let r = Retransmit {
            deadline: Some(Duration::from_millis(2000)),
            ..Retransmit::default()
        };
        assert_eq!(r.offset(2), Some(Duration::from_millis(1500)));
        assert_eq!(r.offset(3), Some(Duration::from_millis(2000)));
        assert_eq!(r.give_up_after(), Duration::from_millis(2000));
    }
}
