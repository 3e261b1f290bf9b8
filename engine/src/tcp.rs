//! STUN Binding over TCP (RFC 8489 §6.2.2): connect, send the request, read the response
//! framed by its own header. Every step is bounded by one deadline, so a peer that trickles
//! bytes or never finishes a frame costs at most that long.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use probes::binding::{BindingConfig, BindingOutcome, BindingTransaction};
use probes::stun::TransactionId;
use probes::stun::stream::StunStream;
use probes::{Probe, Retransmit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// Classify a connect error.
pub fn classify_connect_error(e: &io::Error) -> ConnectOutcome {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => ConnectOutcome::Refused,
        io::ErrorKind::TimedOut => ConnectOutcome::Timeout,
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
            ConnectOutcome::Unreachable
        }
        _ => ConnectOutcome::Error {
            message: e.to_string(),
        },
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
    let start = Instant::now();
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
                result.connect = classify_connect_error(&e);
                return result;
            }
            Ok(Ok(s)) => s,
        };
    result.connect = ConnectOutcome::Connected {
        time: start.elapsed(),
    };
    let _ = stream.set_nodelay(true);
    let remaining = deadline.saturating_duration_since(Instant::now());
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

pub(crate) async fn exchange(
    mut stream: TcpStream,
    mut tx: BindingTransaction,
    deadline: Instant,
) -> (BindingOutcome, Option<String>) {
    let from = tx.destination();
    let mut out = Vec::new();
    let now = Instant::now();
    let mut error = None;
    if tx.poll_transmit(now, &mut out).is_some() {
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
                            let _ = tx.handle_input(Instant::now(), from, &msg);
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
        tx.handle_timeout(deadline.max(Instant::now()) + Duration::from_secs(3600));
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
