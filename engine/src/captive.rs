//! The captive-portal probe's I/O: one plain HTTP/1.1 GET over TCP (our own minimal client:
//! a request, the response head through `probes::wire::http`, the first bytes of the body),
//! all under one timeout. The judgement is `probes::path::captive`.

use std::net::SocketAddr;
use std::time::Duration;

use probes::path::captive::{HttpAnswer, HttpOutcome, MAX_BODY};
use probes::wire::http::{MAX_HEAD, parse_head};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Whether `s` is safe inside a request line or a Host header.
fn safe(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|c| c.is_ascii_graphic() && !matches!(c, b'"' | b'<' | b'>' | b'\\'))
}

/// `GET path` from `addr` with `Host: host`, the connection closed after the answer.
pub async fn http_get(addr: SocketAddr, host: &str, path: &str, timeout: Duration) -> HttpOutcome {
    if !safe(host) || !safe(path) || !path.starts_with('/') {
        return HttpOutcome::NotHttp {
            error: "the host or path cannot go into a request".into(),
        };
    }
    let work = async {
        let mut s =
            crate::source::connect_tcp(addr)
                .await
                .map_err(|e| HttpOutcome::ConnectFailed {
                    error: e.to_string(),
                })?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: stunmap\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| HttpOutcome::ConnectFailed {
                error: e.to_string(),
            })?;
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).await.unwrap_or(0);
            buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
            let head = match parse_head(&buf) {
                Ok(h) => h,
                Err(e) => {
                    return Err(HttpOutcome::NotHttp {
                        error: e.to_string(),
                    });
                }
            };
            if let Some(h) = head {
                let body = buf.get(h.len..).unwrap_or(&[]);
                if n == 0 || body.len() >= MAX_BODY {
                    return Ok(HttpAnswer::new(
                        h.status,
                        h.header("location"),
                        h.header("content-type"),
                        body,
                    ));
                }
            } else if n == 0 || buf.len() > MAX_HEAD {
                return Err(HttpOutcome::NotHttp {
                    error: "the connection closed before a complete HTTP head".into(),
                });
            }
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Err(_) => HttpOutcome::Timeout,
        Ok(Err(o)) => o,
        Ok(Ok(a)) => HttpOutcome::Answered(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn serve_once(answer: &'static [u8]) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = [0u8; 1024];
            let n = s.read(&mut req).await.unwrap();
            assert!(req[..n].starts_with(b"GET / HTTP/1.1\r\nHost: m.example\r\n"));
            s.write_all(answer).await.unwrap();
        });
        addr
    }

    #[tokio::test]
    async fn a_redirect_and_a_page_are_read() {
        let a = serve_once(b"HTTP/1.1 302 Found\r\nLocation: http://portal.example/login\r\nContent-Length: 0\r\n\r\n").await;
        let HttpOutcome::Answered(r) = http_get(a, "m.example", "/", Duration::from_secs(2)).await
        else {
            panic!()
        };
        assert_eq!(
            (r.status, r.location.as_deref()),
            (302, Some("http://portal.example/login"))
        );
        let a = serve_once(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html><title>Hotel</title>",
        )
        .await;
        let HttpOutcome::Answered(r) = http_get(a, "m.example", "/", Duration::from_secs(2)).await
        else {
            panic!()
        };
        assert!(r.html);
        assert_eq!(r.title.as_deref(), Some("Hotel"));
    }

    #[tokio::test]
    async fn junk_a_closed_port_and_bad_names_are_outcomes_not_panics() {
        let a = serve_once(b"SSH-2.0-OpenSSH\r\n").await;
        assert!(matches!(
            http_get(a, "m.example", "/", Duration::from_secs(2)).await,
            HttpOutcome::NotHttp { .. }
        ));
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        assert!(matches!(
            http_get(addr, "m.example", "/", Duration::from_secs(2)).await,
            HttpOutcome::ConnectFailed { .. }
        ));
        assert!(matches!(
            http_get(addr, "m.example\r\nX: y", "/", Duration::from_secs(2)).await,
            HttpOutcome::NotHttp { .. }
        ));
    }
}
