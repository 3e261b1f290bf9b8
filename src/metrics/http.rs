//! The HTTP side of the probe server, on hyper (HTTP/1.1, RFC 9112): the accept loop, the
//! limits, the answers.
//!
//! - At most `--metrics-max-connections` connections at once: a slot is taken before
//!   `accept`, so extra clients wait in the kernel's backlog and cost no descriptor.
//! - A failed `accept` (EMFILE, ENFILE, ENOBUFS, a connection reset before it was taken)
//!   never ends the server: it backs off (10 ms doubling to 1 s), counts it and logs it at
//!   most once a minute.
//! - hyper's limits per connection: the request head within [`HEAD_TIMEOUT`] (idle
//!   keep-alive connections too), at most [`MAX_HEAD`] bytes and [`MAX_HEADERS`] headers
//!   (431 beyond); a client that stops reading the answer for [`WRITE_TIMEOUT`] is dropped.
//!   A connection's error ends that connection only; it is counted and logged at most once a
//!   minute.
//! - On the serve stop, accepting ends, running checks are interrupted (their partial
//!   results still answer), and open connections get [`SHUTDOWN_GRACE`] to finish.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use engine::Cancel;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use probes::probe_server::{Endpoint, Request, RequestError};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::counters::Held;
use super::log::Throttle;
use super::{MetricsServer, probe};
use crate::report::prom::{Format, Writer};

/// Time a client has to send a request head, from the connection's start or the previous
/// answer.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest request head, bytes (hyper's smallest read buffer).
pub(crate) const MAX_HEAD: usize = 8192;
/// Most headers in a request.
pub(crate) const MAX_HEADERS: usize = 32;
/// Longest a client may leave an answer unread.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections get to finish when the server stops (less than the signal
/// path's grace, after which the process exits).
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The body every answer carries.
pub(crate) type Body = Full<Bytes>;

/// Accept and serve until `stop` fires; then finish gracefully.
pub(crate) async fn serve(listener: TcpListener, server: Arc<MetricsServer>, stop: Cancel) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(server.policy.limits.connections));
    let accept_log = Throttle::new("accepting a metrics connection");
    let conn_log = Arc::new(Throttle::new("a metrics connection"));
    let mut backoff = Duration::ZERO;
    loop {
        let permit = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => {
                backoff = Duration::ZERO;
                stream
            }
            Err(e) => {
                server
                    .counters
                    .accept_errors
                    .fetch_add(1, Ordering::Relaxed);
                backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                accept_log.log(&format!("{e}; retrying in {} ms", backoff.as_millis()));
                drop(permit);
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => continue,
                }
            }
        };
        server.counters.connections.fetch_add(1, Ordering::Relaxed);
        let open = Held::new(&server, |c| &c.connections_open);
        let s = server.clone();
        let service = service_fn(move |req| {
            let s = s.clone();
            async move { Ok::<_, Infallible>(answer(req, s).await) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEAD_TIMEOUT)
            .max_buf_size(MAX_HEAD)
            .max_headers(MAX_HEADERS)
            .serve_connection(TokioIo::new(WriteDeadline::new(stream)), service);
        let conn = graceful.watch(conn);
        let (s, log) = (server.clone(), conn_log.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let _open = open;
            if let Err(e) = conn.await {
                s.counters.connection_errors.fetch_add(1, Ordering::Relaxed);
                log.log(&e.to_string());
            }
        });
    }
    drop(listener);
    server.stopping.interrupt();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
}

/// Answer one request.
async fn answer(req: http::Request<Incoming>, server: Arc<MetricsServer>) -> Response<Body> {
    let (parts, _body) = req.into_parts();
    let headers: Vec<(&str, &[u8])> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_bytes()))
        .collect();
    let parsed = Request::parse(
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query(),
        &headers,
        &server.policy.auth,
    );
    let response = match parsed {
        Err(e) => refusal(&e, &server),
        Ok(r) => {
            let format = if r.openmetrics {
                Format::OpenMetrics
            } else {
                Format::Text
            };
            match r.endpoint {
                Endpoint::Index => text(StatusCode::OK, server.index()),
                Endpoint::Metrics => {
                    let mut w = Writer::default();
                    server.self_metrics(&mut w);
                    exposition(w, format)
                }
                Endpoint::Probe(q) => probe::run(&server, q, r.scrape_timeout, format).await,
            }
        }
    };
    server.counters.response(response.status().as_u16());
    response
}

/// A one-line plain-text answer.
pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut body: String = body.into();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Metrics in `format`.
pub(crate) fn exposition(w: Writer, format: Format) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(w.encode(format))));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    r
}

fn refusal(e: &RequestError, server: &MetricsServer) -> Response<Body> {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = text(status, e.to_string());
    match e {
        RequestError::Unauthorized(_) => {
            for c in server.policy.auth.challenges() {
                r.headers_mut()
                    .append(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
            }
        }
        RequestError::Method => {
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET"));
        }
        _ => {}
    }
    r
}

/// A stream whose writes fail with `TimedOut` once they have been stalled (the client not
/// reading) for [`WRITE_TIMEOUT`].
struct WriteDeadline<T> {
    inner: T,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> WriteDeadline<T> {
    fn new(inner: T) -> Self {
        WriteDeadline {
            inner,
            stalled: None,
        }
    }

    /// Track a write poll's result: clear the timer on progress, arm it on a stall, fail
    /// once it runs out.
    fn track<R>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if r.is_ready() {
            self.stalled = None;
            return r;
        }
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_TIMEOUT)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading the answer",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.track(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.track(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.track(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.track(cx, r)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn a_stalled_writer_times_out() {
        // A duplex pipe of 16 bytes that nobody reads.
        let (a, _b) = tokio::io::duplex(16);
        let mut w = WriteDeadline::new(a);
        w.write_all(&[0; 16]).await.unwrap();
        let start = tokio::time::Instant::now();
        let e = w.write_all(&[0; 16]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), WRITE_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reading_client_keeps_the_writer_going() {
        let (a, mut b) = tokio::io::duplex(16);
        let mut w = WriteDeadline::new(a);
        let reader = tokio::spawn(async move {
            let mut sink = Vec::new();
            let mut buf = [0u8; 8];
            loop {
                tokio::time::sleep(WRITE_TIMEOUT / 2).await;
                match tokio::io::AsyncReadExt::read(&mut b, &mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink.extend_from_slice(&buf[..n]),
                }
            }
            sink.len()
        });
        w.write_all(&[1; 64]).await.unwrap();
        drop(w);
        assert_eq!(reader.await.unwrap(), 64);
    }
}
