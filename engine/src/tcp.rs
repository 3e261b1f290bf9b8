//! STUN Binding over TCP (RFC 8489 §6.2.2): connect, send the request, read the response
//! framed by its own header. Every step is bounded by one deadline, so a peer that trickles
//! bytes or never finishes a frame costs at most that long.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::clock::now;

use probes::binding::{BindingConfig, BindingOutcome, BindingTransaction};
use probes::stun::TransactionId;
use probes::stun::stream::StunStream;
use probes::{Probe, Retransmit};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// How the TCP connection went.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum ConnectOutcome {
    /// Connected after this long.
    Connected {
        /// Time to complete the handshake.
        #[serde(with = "probes::serde_util::secs")]
        time: Duration,
    },
    /// RST: nothing listens, or something on the path rejects.
    Refused,
    /// No answer before the deadline (dropped by a firewall).
    Timeout,
    /// ICMP unreachable or no route.
    Unreachable,
    /// Another error, with the OS's words.
    Error {
        /// The OS error text.
        message: String,
    },
}

/// A Binding transaction over TCP.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TcpBinding {
    /// The server.
    pub destination: SocketAddr,
    /// The connection.
    pub connect: ConnectOutcome,
    /// The Binding transaction, when connected (timeout when the server answered nothing or
    /// something that is not STUN).
    pub binding: Option<BindingOutcome>,
    /// Why the stream was abandoned, when it was not a clean answer.
    pub stream_error: Option<String>,
}

/// Why a TCP connect failed, read from the OS error: the one reading every TCP path of the
/// engine uses (the connect sweep's port states, the STUN/TURN-over-TCP connect outcomes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectFailure {
    /// A RST answered the SYN (or an ICMP port unreachable did): nothing listens, or something
    /// on the path rejects with a reset.
    Refused,
    /// The kernel gave up retransmitting the SYN: dropped on the path.
    TimedOut,
    /// ICMP host or network unreachable (administratively prohibited included), or no route.
    Unreachable,
    /// This host's own policy refused the connect (EACCES, EPERM: a local firewall rule).
    Denied,
    /// Anything else.
    Other,
}

/// Classify a connect error.
pub fn classify_connect_error(e: &io::Error) -> ConnectFailure {
    match e.kind() {
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset => {
            ConnectFailure::Refused
        }
        io::ErrorKind::TimedOut => ConnectFailure::TimedOut,
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
            ConnectFailure::Unreachable
        }
        io::ErrorKind::PermissionDenied => ConnectFailure::Denied,
        _ => match e.raw_os_error() {
            Some(libc::EHOSTUNREACH | libc::ENETUNREACH) => ConnectFailure::Unreachable,
            Some(libc::EACCES | libc::EPERM) => ConnectFailure::Denied,
            _ => ConnectFailure::Other,
        },
    }
}

impl ConnectOutcome {
    /// The outcome of a connect that failed with `e`: a local refusal and other errors keep
    /// the OS's words.
    pub fn from_error(e: &io::Error) -> ConnectOutcome {
        match classify_connect_error(e) {
            ConnectFailure::Refused => ConnectOutcome::Refused,
            ConnectFailure::TimedOut => ConnectOutcome::Timeout,
            ConnectFailure::Unreachable => ConnectOutcome::Unreachable,
            ConnectFailure::Denied | ConnectFailure::Other => ConnectOutcome::Error {
                message: e.to_string(),
            },
        }
    }
}

/// Run one Binding transaction over a new TCP connection to `destination`, all within
/// `timeout` (connect included).
pub async fn binding_over_tcp(
    destination: SocketAddr,
    tid: TransactionId,
    software: Option<&'static str>,
    timeout: Duration,
) -> TcpBinding {
    let start = now();
    let deadline = start + timeout;
    let mut result = TcpBinding {
        destination,
        connect: ConnectOutcome::Timeout,
        binding: None,
        stream_error: None,
    };
    let stream =
        match tokio::time::timeout_at(deadline.into(), TcpStream::connect(destination)).await {
            Err(_) => return result,
            Ok(Err(e)) => {
                result.connect = ConnectOutcome::from_error(&e);
                return result;
            }
            Ok(Ok(s)) => s,
        };
    result.connect = ConnectOutcome::Connected {
        time: now().saturating_duration_since(start),
    };
    let _ = stream.set_nodelay(true);
    let remaining = deadline.saturating_duration_since(now());
    let config = BindingConfig {
        // Reliable transport: one transmission, RFC 8489 §6.2.2 (Ti = 39.5 s by default; our
        // deadline is the caller's).
        retransmit: Retransmit {
            rto: remaining,
            rc: 1,
            rm: 1,
            deadline: Some(remaining),
        },
        software,
        ..BindingConfig::default()
    };
    let (outcome, err) = exchange(
        stream,
        BindingTransaction::new(tid, destination, config),
        deadline,
    )
    .await;
    result.binding = Some(outcome);
    result.stream_error = err;
    result
}

/// One Binding transaction over an established stream: write the request, read and frame
/// the answer (RFC 8489 §6.2.2), everything by `deadline` on the engine's clock.
pub(crate) async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    mut tx: BindingTransaction,
    deadline: Instant,
) -> (BindingOutcome, Option<String>) {
    let from = tx.destination();
    let mut out = Vec::new();
    let mut error = None;
    if tx.poll_transmit(now(), &mut out).is_some() {
        let write = tokio::time::timeout_at(deadline.into(), stream.write_all(&out)).await;
        if !matches!(write, Ok(Ok(()))) {
            error = Some("could not write the request".to_string());
        }
    }
    let mut framer = StunStream::new();
    let mut buf = [0u8; 2048];
    while error.is_none() && !tx.is_done() {
        let read = tokio::time::timeout_at(deadline.into(), stream.read(&mut buf)).await;
        match read {
            Err(_) => {
                if framer.buffered() > 0 {
                    // A peer that trickles bytes or announces a length it never sends.
                    error = Some(format!(
                        "deadline reached with {} bytes of an unfinished message",
                        framer.buffered()
                    ));
                }
                break;
            }
            Ok(Ok(0)) => {
                error = Some(format!(
                    "connection closed with {} bytes of an unfinished message",
                    framer.buffered()
                ));
            }
            Ok(Ok(n)) => {
                framer.push(buf.get(..n).unwrap_or(&[]));
                loop {
                    match framer.next_message() {
                        Ok(Some(msg)) => {
                            let _ = tx.handle_input(now(), from, &msg);
                        }
                        Ok(None) => break,
                        Err(e) => {
                            error = Some(e.to_string());
                            break;
                        }
                    }
                }
            }
            Ok(Err(e)) => error = Some(format!("read failed: {e}")),
        }
    }
    if !tx.is_done() {
        // Deadline or a broken stream: let the machine time out.
        tx.handle_timeout(deadline.max(now()) + Duration::from_secs(3600));
    }
    let outcome = tx.take_output().unwrap_or_else(|| BindingOutcome {
        transaction_id: tx.transaction_id(),
        destination: from,
        source: None,
        status: probes::binding::BindingStatus::Timeout,
        rtt: None,
        rtt_ambiguous: false,
        transmissions: 1,
    });
    (outcome, error)
}
