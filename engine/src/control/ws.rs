//! The WebSocket opening handshake (RFC 6455 §4.1) on an open stream: send the upgrade, read
//! the reply's head (and the start of an error page), judge it.

use std::time::Duration;

use probes::control::http::{WEBSOCKET_GUID, WsVerdict, base64, upgrade_request, ws_verdict};
use probes::wire::http::{MAX_HEAD, parse_head};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The `Sec-WebSocket-Accept` a server must answer for `key` (RFC 6455 §4.2.2).
pub(crate) fn expected_accept(key: &str) -> String {
    let mut input = Vec::with_capacity(key.len() + WEBSOCKET_GUID.len());
    input.extend_from_slice(key.as_bytes());
    input.extend_from_slice(WEBSOCKET_GUID.as_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    base64(digest.as_ref())
}

/// Ask for an upgrade on `path`; `Err` is the reason the exchange itself failed (the bool
/// tells a timeout).
pub(crate) async fn upgrade<S>(
    stream: &mut S,
    host: &str,
    port: u16,
    path: &str,
    timeout: Duration,
) -> Result<WsVerdict, (bool, String)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let key = base64(&rand::random::<[u8; 16]>());
    let accept = expected_accept(&key);
    let request = upgrade_request(host, port, path, &key);
    let exchange = async {
        stream.write_all(request.as_bytes()).await?;
        let mut buf = Vec::with_capacity(4096);
        let mut chunk = [0u8; 4096];
        loop {
            match parse_head(&buf) {
                Ok(Some(head)) => {
                    // For an error page, read a little of the body for its title.
                    if head.status != 101 && buf.len() < head.len + 512 {
                        let more = tokio::time::timeout(
                            Duration::from_millis(200),
                            stream.read(&mut chunk),
                        )
                        .await;
                        if let Ok(Ok(n)) = more {
                            buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
                        }
                    }
                    let body = buf.get(head.len..).unwrap_or(&[]);
                    return Ok(ws_verdict(&head, &accept, body));
                }
                Ok(None) => {}
                Err(e) => {
                    return Ok(WsVerdict::NotHttp {
                        detail: e.to_string(),
                    });
                }
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed before an HTTP answer",
                ));
            }
            buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
            if buf.len() > MAX_HEAD + 4096 {
                return Ok(WsVerdict::NotHttp {
                    detail: "answer head too long".to_string(),
                });
            }
        }
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => Err((true, "no answer to the upgrade request".to_string())),
        Ok(Err(e)) => Err((false, e.to_string())),
        Ok(Ok(v)) => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc6455_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            super::expected_accept("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
