//! The relay's QUIC transport: one handshake with ALPN `nb-quic` and datagrams enabled, as a
//! NetBird relay client does it.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use probes::control::RELAY_QUIC_ALPN;
use probes::control::relay::QuicOutcome;

use super::tls::Roots;

/// TLS alert no_application_protocol (RFC 8446 §6; RFC 7301 §3.2), carried in a QUIC
/// CONNECTION_CLOSE as crypto error 0x100 + 120 (RFC 9001 §4.8).
const NO_APPLICATION_PROTOCOL: u8 = 120;

/// One QUIC handshake to `addr` for `name`, within `timeout`.
pub(crate) async fn handshake(
    roots: &Arc<Roots>,
    addr: SocketAddr,
    name: &str,
    timeout: Duration,
) -> QuicOutcome {
    let error = |message: String| QuicOutcome::Error { message };
    let (tls, _verifier) = match roots.client_config(&[RELAY_QUIC_ALPN], true) {
        Ok(c) => c,
        Err(e) => return error(e.to_string()),
    };
    let crypto = match quinn::crypto::rustls::QuicClientConfig::try_from(tls) {
        Ok(c) => c,
        Err(e) => return error(e.to_string()),
    };
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    // Datagrams on (RFC 9221), as the relay client has them.
    transport.datagram_receive_buffer_size(Some(1 << 20));
    config.transport_config(Arc::new(transport));
    let bind: SocketAddr = if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let endpoint = match quinn::Endpoint::client(bind) {
        Ok(e) => e,
        Err(e) => return error(e.to_string()),
    };
    let start = crate::clock::now();
    let connecting = match endpoint.connect_with(config, addr, name) {
        Ok(c) => c,
        Err(e) => return error(e.to_string()),
    };
    let outcome = match tokio::time::timeout(timeout, connecting).await {
        Err(_) => QuicOutcome::Timeout,
        Ok(Ok(conn)) => {
            let time = crate::clock::now().saturating_duration_since(start);
            let datagrams = conn.max_datagram_size().is_some();
            conn.close(0u32.into(), b"stunmap probe done");
            QuicOutcome::Connected { time, datagrams }
        }
        Ok(Err(quinn::ConnectionError::ConnectionClosed(close)))
            if close.error_code == quinn::TransportErrorCode::crypto(NO_APPLICATION_PROTOCOL) =>
        {
            QuicOutcome::AlpnRefused
        }
        Ok(Err(quinn::ConnectionError::TimedOut)) => QuicOutcome::Timeout,
        Ok(Err(e)) => error(e.to_string()),
    };
    // Let the CONNECTION_CLOSE go out, briefly.
    let _ = tokio::time::timeout(Duration::from_millis(100), endpoint.wait_idle()).await;
    outcome
}
