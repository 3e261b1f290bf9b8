//! One gRPC request over HTTP/2 on an open TLS stream: proof that gRPC goes end to end.

use std::time::Duration;

use bytes::Bytes;
use probes::control::grpc::{EMPTY_MESSAGE, GrpcVerdict, HEALTH_CHECK_PATH, verdict};
use tokio::io::{AsyncRead, AsyncWrite};

/// Send one unary gRPC request (`grpc.health.v1.Health/Check`) and read its status, all
/// within `timeout`.
pub(crate) async fn grpc_request<S>(
    stream: S,
    name: &str,
    port: u16,
    timeout: Duration,
) -> GrpcVerdict
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match tokio::time::timeout(timeout, exchange(stream, name, port)).await {
        Err(_) => GrpcVerdict::Failed {
            detail: "no gRPC answer in time".to_string(),
        },
        Ok(Err(e)) => GrpcVerdict::Failed {
            detail: e.to_string(),
        },
        Ok(Ok(v)) => v,
    }
}

async fn exchange<S>(stream: S, name: &str, port: u16) -> Result<GrpcVerdict, h2::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (client, connection) = h2::client::handshake(stream).await?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let result = async {
        let mut client = client.ready().await?;
        let authority = if name.contains(':') {
            format!("[{name}]:{port}")
        } else {
            format!("{name}:{port}")
        };
        let request = http::Request::builder()
            .method(http::Method::POST)
            .uri(format!("https://{authority}{HEALTH_CHECK_PATH}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("user-agent", "stunmap")
            .body(())
            .map_err(|_| h2::Error::from(h2::Reason::INTERNAL_ERROR))?;
        let (response, mut body) = client.send_request(request, false)?;
        body.send_data(Bytes::from_static(&EMPTY_MESSAGE), true)?;
        let response = response.await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = |h: &http::HeaderMap, k: &str| {
            h.get(k).and_then(|v| v.to_str().ok()).map(str::to_string)
        };
        let content_type = text(&headers, "content-type");
        // Trailers-only responses carry the status in the headers.
        if let Some(s) = text(&headers, "grpc-status") {
            return Ok(verdict(
                status,
                content_type.as_deref(),
                Some(&s),
                text(&headers, "grpc-message").as_deref(),
            ));
        }
        let mut recv = response.into_body();
        // Drain the body (bounded: a health answer is a few bytes; stop after 64 KiB).
        let mut seen = 0usize;
        while let Some(chunk) = recv.data().await {
            let chunk = chunk?;
            seen += chunk.len();
            let _ = recv.flow_control().release_capacity(chunk.len());
            if seen > 64 * 1024 {
                break;
            }
        }
        let trailers = recv.trailers().await?.unwrap_or_default();
        Ok(verdict(
            status,
            content_type.as_deref(),
            text(&trailers, "grpc-status").as_deref(),
            text(&trailers, "grpc-message").as_deref(),
        ))
    }
    .await;
    driver.abort();
    result
}
