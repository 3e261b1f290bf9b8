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
        match tokio::time::timeout_at(deadline.into(), crate::source::connect_tcp(destination))
            .await
        {
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
        retransmit: one_transmission(remaining),
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

/// The schedule over a reliable transport: one transmission, RFC 8489 §6.2.2, answered
/// `within` (Ti = 39.5 s by default; the deadline is the caller's).
pub(crate) fn one_transmission(within: Duration) -> Retransmit {
    Retransmit {
        rto: within,
        rc: 1,
        rm: 1,
        deadline: Some(within),
    }
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

/// A TCP connect to `destination` and nothing else: how it went and how long it took to know
/// (the connection, if made, is closed at once; nothing is sent on it). A SYN-ACK and a RST
/// both time a round trip to the destination, or to a middlebox that answers for it
/// ([`ConnectOutcome::is_round_trip`]).
pub async fn connect_only(
    destination: SocketAddr,
    timeout: Duration,
) -> (ConnectOutcome, Duration) {
    let start = now();
    let outcome = match tokio::time::timeout(timeout, crate::source::connect_tcp(destination)).await
    {
        Ok(Ok(_stream)) => ConnectOutcome::Connected {
            time: now().saturating_duration_since(start),
        },
        Ok(Err(e)) => ConnectOutcome::from_error(&e),
        Err(_) => ConnectOutcome::Timeout,
    };
    (outcome, now().saturating_duration_since(start))
}

impl ConnectOutcome {
    /// Whether the answer timed a round trip: a SYN-ACK or a RST (an ICMP error may come from
    /// any router on the way, a local refusal from this host).
    pub fn is_round_trip(&self) -> bool {
        matches!(
            self,
            ConnectOutcome::Connected { .. } | ConnectOutcome::Refused
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use probes::binding::BindingStatus;
    use probes::reflector::{ServerAddrs, respond};

    const SERVER: &str = "192.0.2.1:3478";
    const CLIENT: &str = "198.51.100.7:40000";

    fn transaction(timeout: Duration) -> BindingTransaction {
        let config = BindingConfig {
            retransmit: one_transmission(timeout),
            ..BindingConfig::default()
        };
        BindingTransaction::new(TransactionId([7; 12]), SERVER.parse().unwrap(), config)
    }

    /// `exchange` over `client` with one try answered `within`, by a deadline as far off.
    async fn exchange_within(
        client: tokio::io::DuplexStream,
        within: Duration,
    ) -> (BindingOutcome, Option<String>) {
        exchange(client, transaction(within), now() + within).await
    }

    /// The server end of an in-memory stream: reads the request, waits `delay` on the
    /// (paused) clock, then writes `reply(request)` and keeps the stream open.
    fn server(
        mut end: tokio::io::DuplexStream,
        delay: Duration,
        reply: impl FnOnce(&[u8]) -> Vec<u8> + Send + 'static,
    ) -> tokio::task::JoinHandle<tokio::io::DuplexStream> {
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let n = end.read(&mut buf).await.unwrap();
            tokio::time::sleep(delay).await;
            let bytes = reply(&buf[..n]);
            end.write_all(&bytes).await.unwrap();
            end
        })
    }

    fn binding_success(request: &[u8]) -> Vec<u8> {
        let addrs = ServerAddrs {
            primary_ip: "192.0.2.1".parse().unwrap(),
            primary_port: 3478,
            alt_ip: None,
            alt_port: None,
        };
        let mut out = Vec::new();
        respond(request, CLIENT.parse().unwrap(), &addrs, None, &mut out);
        out
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_is_timed_on_the_engine_clock() {
        let (client, end) = tokio::io::duplex(4096);
        let _server = server(end, Duration::from_millis(250), binding_success);
        let t0 = now();
        let (outcome, error) = exchange_within(client, Duration::from_secs(2)).await;
        assert_eq!(error, None);
        assert!(matches!(outcome.status, BindingStatus::Success(_)));
        assert_eq!(outcome.rtt, Some(Duration::from_millis(250)));
        assert_eq!(now() - t0, Duration::from_millis(250));
    }

    #[tokio::test(start_paused = true)]
    async fn silence_and_a_trickled_header_end_exactly_at_the_deadline() {
        let (client, end) = tokio::io::duplex(4096);
        let _server = server(end, Duration::from_secs(60), |_| Vec::new());
        let t0 = now();
        let (outcome, error) = exchange_within(client, Duration::from_secs(2)).await;
        assert_eq!(outcome.status, BindingStatus::Timeout);
        assert_eq!(error, None);
        assert_eq!(now() - t0, Duration::from_secs(2));

        let (client, end) = tokio::io::duplex(4096);
        let _server = server(end, Duration::from_millis(100), |req| {
            binding_success(req)[..10].to_vec()
        });
        let t0 = now();
        let (outcome, error) = exchange_within(client, Duration::from_millis(1500)).await;
        assert_eq!(outcome.status, BindingStatus::Timeout);
        assert_eq!(
            error.as_deref(),
            Some("deadline reached with 10 bytes of an unfinished message")
        );
        assert_eq!(now() - t0, Duration::from_millis(1500));
    }

    #[test]
    fn connect_errors_have_one_reading() {
        let e = |k| io::Error::from(k);
        let raw = io::Error::from_raw_os_error;
        assert_eq!(
            classify_connect_error(&e(io::ErrorKind::ConnectionRefused)),
            ConnectFailure::Refused
        );
        assert_eq!(
            classify_connect_error(&e(io::ErrorKind::TimedOut)),
            ConnectFailure::TimedOut
        );
        assert_eq!(
            classify_connect_error(&raw(libc::EHOSTUNREACH)),
            ConnectFailure::Unreachable
        );
        assert_eq!(
            classify_connect_error(&raw(libc::EACCES)),
            ConnectFailure::Denied
        );
        assert_eq!(
            classify_connect_error(&raw(libc::EMFILE)),
            ConnectFailure::Other
        );
        assert_eq!(
            ConnectOutcome::from_error(&raw(libc::ENETUNREACH)),
            ConnectOutcome::Unreachable
        );
        assert!(matches!(
            ConnectOutcome::from_error(&raw(libc::EPERM)),
            ConnectOutcome::Error { .. }
        ));
    }

    #[tokio::test]
    async fn a_connect_times_a_round_trip_whether_accepted_or_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap();
        let (outcome, took) = connect_only(open, Duration::from_secs(2)).await;
        assert!(matches!(outcome, ConnectOutcome::Connected { time } if time <= took));
        assert!(outcome.is_round_trip());
        // A port nobody listens on: the RST is a round trip too.
        drop(listener);
        let (outcome, _) = connect_only(open, Duration::from_secs(2)).await;
        assert_eq!(outcome, ConnectOutcome::Refused);
        assert!(outcome.is_round_trip());
        assert!(!ConnectOutcome::Timeout.is_round_trip());
        assert!(!ConnectOutcome::Unreachable.is_round_trip());
    }
}
