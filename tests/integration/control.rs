//! `stunmap control` against local servers on loopback: TLS servers with certificates made at
//! test time (a good chain from a test CA passed with --ca, an "intercepting" chain from another
//! CA), an HTTP/1.1-only server, a minimal HTTP/2 server answering a gRPC status, WebSocket
//! endpoints answering 101 and 403, QUIC endpoints with ALPN nb-quic and another ALPN, a CONNECT
//! proxy, and a DNS responder. No public name is resolved, no public address contacted.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::runtime::Runtime;

use crate::common::{free_port, json, stunmap};

const NAMES: [&str; 4] = [
    "api.netbird.test",
    "signal.netbird.test",
    "relay.netbird.test",
    "ok.netbird.test",
];

/// A certificate chain and its key.
#[derive(Clone)]
struct Leaf {
    chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
}

/// The test PKI: a good CA (written to a PEM file for --ca) and an "inspection" CA that is
/// never passed to stunmap.
struct Pki {
    ca_file: PathBuf,
    good: Leaf,
    evil: Leaf,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_file);
    }
}

fn ca(cn: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, cn);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(issuer: &CertifiedIssuer<'static, KeyPair>) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(NAMES.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "api.netbird.test");
    let cert = params.signed_by(&key, issuer).unwrap();
    Leaf {
        chain: vec![cert.der().clone()],
        key: key.serialize_der(),
    }
}

fn pki() -> Pki {
    let good_ca = ca("stunmap test CA");
    let evil_ca = ca("Evil Inspection CA");
    let ca_file = std::env::temp_dir().join(format!(
        "stunmap-control-ca-{}-{}.pem",
        std::process::id(),
        free_port("127.0.0.1")
    ));
    std::fs::write(&ca_file, good_ca.pem()).unwrap();
    Pki {
        ca_file,
        good: leaf(&good_ca),
        evil: leaf(&evil_ca),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config(leaf: &Leaf, alpn: &[&[u8]], tls13_only: bool) -> rustls::ServerConfig {
    let builder = rustls::ServerConfig::builder_with_provider(provider());
    let builder = if tls13_only {
        builder
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
    } else {
        builder.with_safe_default_protocol_versions().unwrap()
    };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key.clone()));
    let mut config = builder
        .with_no_client_auth()
        .with_single_cert(leaf.chain.clone(), key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// How an HTTP/1.1 request is answered.
#[derive(Clone, Copy)]
enum Ws {
    /// 101 with the right accept key.
    Accept,
    /// This status and an HTML page titled "Blocked by policy".
    Status(u16, &'static str),
}

/// A TLS server on TCP: gRPC over h2 when negotiated, else HTTP/1.1 answered per `ws`.
async fn tls_server(listener: TcpListener, config: rustls::ServerConfig, ws: Ws) {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                grpc(tls).await;
            } else {
                http1(tls, ws).await;
            }
        });
    }
}

/// A minimal gRPC server: every request gets a trailers-only UNIMPLEMENTED.
async fn grpc<S: AsyncRead + AsyncWrite + Unpin>(stream: S) {
    let Ok(mut conn) = h2::server::handshake(stream).await else {
        return;
    };
    while let Some(Ok((_req, mut respond))) = conn.accept().await {
        let response = http::Response::builder()
            .status(200)
            .header("content-type", "application/grpc")
            .header("grpc-status", "12")
            .header("grpc-message", "unknown service grpc.health.v1.Health")
            .body(())
            .unwrap();
        let _ = respond.send_response(response, true);
    }
}

async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> Option<String> {
    let mut buf = Vec::new();
    while !buf.ends_with(b"\r\n\r\n") {
        buf.push(s.read_u8().await.ok()?);
        if buf.len() > 16384 {
            return None;
        }
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn http1<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, ws: Ws) {
    let Some(head) = read_head(&mut s).await else {
        return;
    };
    let reply = match (ws, header(&head, "sec-websocket-key")) {
        (Ws::Accept, Some(key)) => {
            let digest = ring::digest::digest(
                &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
                format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
            );
            let accept = probes::control::http::base64(digest.as_ref());
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {accept}\r\n\r\n"
            )
        }
        (Ws::Status(code, reason), _) => {
            let body = "<html><head><title>Blocked by policy</title></head><body>no</body></html>";
            format!(
                "HTTP/1.1 {code} {reason}\r\nServer: test-gateway\r\nContent-Type: text/html\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
        }
        (Ws::Accept, None) => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string(),
    };
    let _ = s.write_all(reply.as_bytes()).await;
    let _ = s.flush().await;
    // Keep the connection until the client leaves.
    let mut sink = [0u8; 512];
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut sink)).await;
}

/// A QUIC server offering only `alpn`.
fn quic_server(rt: &Runtime, port: u16, leaf: &Leaf, alpn: &[u8]) {
    let _guard = rt.enter();
    let tls = server_config(leaf, &[alpn], true);
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let endpoint =
        quinn::Endpoint::server(config, SocketAddr::from((Ipv4Addr::LOCALHOST, port))).unwrap();
    rt.spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                if let Ok(conn) = incoming.await {
                    conn.closed().await;
                }
            });
        }
    });
}

/// Start a TLS server on a port free for TCP and UDP; returns the port.
fn start_tls(rt: &Runtime, leaf: &Leaf, alpn: &[&[u8]], ws: Ws) -> u16 {
    let port = free_port("127.0.0.1");
    let listener = rt.block_on(TcpListener::bind(("127.0.0.1", port))).unwrap();
    rt.spawn(tls_server(listener, server_config(leaf, alpn, false), ws));
    port
}

/// A CONNECT proxy that sends every tunnel to `backend` and records the authorities asked for;
/// with `credentials`, it answers 407 unless they come as Basic auth.
fn start_proxy(
    rt: &Runtime,
    backend: SocketAddr,
    credentials: Option<&'static str>,
) -> (u16, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = seen.clone();
    rt.spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let Some(head) = read_head(&mut client).await else {
                    return;
                };
                let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
                log.lock().unwrap().push(target);
                if let Some(c) = credentials {
                    let want = format!("Basic {}", probes::control::http::base64(c.as_bytes()));
                    if header(&head, "proxy-authorization") != Some(want.as_str()) {
                        let _ = client
                            .write_all(
                                b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                                  Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n",
                            )
                            .await;
                        return;
                    }
                }
                let Ok(mut upstream) = TcpStream::connect(backend).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                let _ = client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (port, seen)
}

/// A DNS responder: NXDOMAIN, SERVFAIL, a sinkhole, silence, or 127.0.0.1, by name.
fn start_dns(rt: &Runtime) -> u16 {
    let socket = rt.block_on(UdpSocket::bind("127.0.0.1:0")).unwrap();
    let port = socket.local_addr().unwrap().port();
    rt.spawn(async move {
        let mut buf = [0u8; 512];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let q = &buf[..n];
            // The question: labels from byte 12.
            let mut i = 12;
            let mut labels = Vec::new();
            while q[i] != 0 {
                let len = q[i] as usize;
                labels.push(String::from_utf8_lossy(&q[i + 1..i + 1 + len]).into_owned());
                i += 1 + len;
            }
            let question_end = i + 5;
            let qtype = u16::from_be_bytes([q[i + 1], q[i + 2]]);
            let name = labels.join(".");
            let (rcode, answer): (u8, Option<[u8; 4]>) = match name.as_str() {
                "nx.netbird.test" => (3, None),
                "fail.netbird.test" => (2, None),
                "silent.netbird.test" => continue,
                "sink.netbird.test" if qtype == 1 => (0, Some([0, 0, 0, 0])),
                "ok.netbird.test" if qtype == 1 => (0, Some([127, 0, 0, 1])),
                _ => (0, None),
            };
            let mut r = Vec::new();
            r.extend_from_slice(&q[..2]);
            r.extend_from_slice(&[
                0x81,
                0x80 | rcode,
                0,
                1,
                0,
                answer.is_some() as u8,
                0,
                0,
                0,
                0,
            ]);
            r.extend_from_slice(&q[12..question_end]);
            if let Some(a) = answer {
                r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]);
                r.extend_from_slice(&a);
            }
            let _ = socket.send_to(&r, from).await;
        }
    });
    port
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Run `stunmap control --json` with `--resolve` for every test name and the good CA.
fn control(pki: &Pki, args: &[&str]) -> (i32, Value) {
    let ca = pki.ca_file.display().to_string();
    let mut all: Vec<&str> = vec!["control", "--json", "--no-proxy", "--timeout", "2000"];
    all.extend(["--ca", &ca]);
    let resolves: Vec<String> = NAMES[..3]
        .iter()
        .map(|n| format!("--resolve={n}:127.0.0.1"))
        .collect();
    all.extend(resolves.iter().map(String::as_str));
    all.extend(args);
    let out = stunmap(&all);
    let code = out.status.code().unwrap();
    let v = json(&out);
    // Every control report of these tests is held to its schema.
    crate::common::validate("control-v1.json", &v);
    (code, v)
}

fn endpoint(v: &Value) -> &Value {
    &v["endpoints"][0]
}

fn path(v: &Value) -> &Value {
    &endpoint(v)["paths"][0]
}

fn problem_kinds(v: &Value) -> Vec<String> {
    endpoint(v)["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn good_chain_h2_grpc_is_ok() {
    let rt = runtime();
    let pki = pki();
    let port = start_tls(&rt, &pki.good, &[b"h2", b"http/1.1"], Ws::Accept);
    let (code, v) = control(&pki, &["--management", &format!("api.netbird.test:{port}")]);
    let p = path(&v);
    assert_eq!(p["trust"]["verdict"], "private-ca", "{v:#}");
    assert_eq!(p["trust"]["issuer"], "stunmap test CA");
    assert_eq!(p["tls"]["alpn"], "h2");
    assert_eq!(p["tls"]["version"], "TLSv1_3");
    assert!(p["tls"]["handshake_time"].as_f64().unwrap() > 0.0);
    assert!(p["connect_time"].as_f64().unwrap() > 0.0);
    assert_eq!(p["alpn"]["verdict"], "ok");
    assert_eq!(p["grpc"]["verdict"], "status");
    assert_eq!(p["grpc"]["name"], "UNIMPLEMENTED");
    assert_eq!(endpoint(&v)["dns"]["verdict"], "overridden");
    assert_eq!(endpoint(&v)["status"], "ok");
    assert_eq!(code, 0);

    // The human report says the same in one line per check.
    let ca = pki.ca_file.display().to_string();
    let out = stunmap(&[
        "control",
        "--no-proxy",
        "--ca",
        &ca,
        "--resolve",
        "signal.netbird.test:127.0.0.1",
        "--signal",
        &format!("signal.netbird.test:{port}"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("signal signal.netbird.test"), "{text}");
    assert!(
        text.contains("gRPC status UNIMPLEMENTED (12): gRPC works"),
        "{text}"
    );
    assert!(
        text.contains("trusted (private CA: stunmap test CA)"),
        "{text}"
    );
    assert!(text.starts_with("OK "), "{text}");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn intercepting_chain_is_tls_inspection() {
    let rt = runtime();
    let pki = pki();
    let port = start_tls(&rt, &pki.evil, &[b"h2", b"http/1.1"], Ws::Accept);
    let (code, v) = control(&pki, &["--management", &format!("api.netbird.test:{port}")]);
    let p = path(&v);
    assert_eq!(p["trust"]["verdict"], "inspection", "{v:#}");
    assert_eq!(p["trust"]["issuer"], "Evil Inspection CA");
    assert_eq!(p["tls"]["public_roots"]["result"], "unknown-issuer");
    // gRPC itself still passes this proxy: degraded, not blocked.
    assert_eq!(p["grpc"]["verdict"], "status");
    assert_eq!(endpoint(&v)["status"], "degraded");
    assert!(problem_kinds(&v).contains(&"tls-inspection".to_string()));
    let summary = endpoint(&v)["problems"][0]["summary"].as_str().unwrap();
    assert!(
        summary.contains("TLS inspection by Evil Inspection CA"),
        "{summary}"
    );
    assert_eq!(code, 1);

    // Human output: the verdict on the path's line, then the problem and its fix.
    let ca = pki.ca_file.display().to_string();
    let target = format!("api.netbird.test:{port}");
    let out = stunmap(&[
        "control",
        "--no-proxy",
        "--ca",
        &ca,
        "--resolve",
        "api.netbird.test:127.0.0.1",
        "--management",
        &target,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("management api.netbird.test"), "{text}");
    assert!(
        text.contains("· TLS inspection by Evil Inspection CA ·"),
        "{text}"
    );
    assert!(
        text.contains("[degraded]") && text.contains("exempt api.netbird.test"),
        "{text}"
    );
    assert!(text.starts_with("DEGRADED "), "{text}");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn each_family_is_probed_separately() {
    let rt = runtime();
    let pki = pki();
    // The server listens on IPv4 only; the name also resolves to ::1.
    let port = start_tls(&rt, &pki.good, &[b"h2", b"http/1.1"], Ws::Accept);
    let (code, v) = control(
        &pki,
        &[
            "--resolve",
            &format!("signal.netbird.test:{port}:[::1]"),
            "--signal",
            &format!("signal.netbird.test:{port}"),
        ],
    );
    let e = endpoint(&v);
    assert_eq!(e["ipv6"]["addresses"][0], "::1", "{v:#}");
    let paths = e["paths"].as_array().unwrap();
    assert_eq!(paths.len(), 2);
    assert_eq!(paths[0]["family"], "ipv4");
    assert_eq!(paths[0]["grpc"]["name"], "UNIMPLEMENTED");
    assert_eq!(paths[1]["family"], "ipv6");
    assert_eq!(paths[1]["failure"]["step"], "tcp");
    let family = e["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "family")
        .expect("a family problem");
    assert_eq!(family["severity"], "info");
    assert_eq!(e["status"], "ok");
    assert_eq!(code, 0);
}

#[test]
fn http11_only_path_falls_back_to_websocket() {
    let rt = runtime();
    let pki = pki();
    let port = start_tls(&rt, &pki.good, &[b"http/1.1"], Ws::Accept);
    let (code, v) = control(&pki, &["--management", &format!("api.netbird.test:{port}")]);
    let p = path(&v);
    assert_eq!(p["tls"]["alpn"], "http/1.1", "{v:#}");
    assert_eq!(p["alpn"]["verdict"], "http11-only");
    assert!(p["grpc"].is_null());
    assert_eq!(p["websocket"]["path"], "/ws-proxy/management");
    assert_eq!(p["websocket"]["verdict"]["verdict"], "upgraded");
    assert_eq!(endpoint(&v)["status"], "degraded");
    let kinds = problem_kinds(&v);
    assert!(
        kinds.contains(&"web-socket-fallback".to_string()),
        "{kinds:?}"
    );
    assert!(kinds.contains(&"http2".to_string()), "{kinds:?}");
    assert_eq!(code, 1);
}

#[test]
fn no_alpn_and_no_websocket_is_blocked() {
    let rt = runtime();
    let pki = pki();
    let port = start_tls(&rt, &pki.good, &[], Ws::Status(403, "Forbidden"));
    let (code, v) = control(&pki, &["--signal", &format!("signal.netbird.test:{port}")]);
    let p = path(&v);
    assert!(p["tls"]["alpn"].is_null(), "{v:#}");
    assert_eq!(p["alpn"]["verdict"], "no-alpn");
    assert_eq!(p["websocket"]["verdict"]["verdict"], "refused");
    assert_eq!(p["websocket"]["verdict"]["status"], 403);
    assert_eq!(endpoint(&v)["status"], "blocked");
    assert_eq!(code, 2);
}

#[test]
fn relay_websocket_101_and_quic_nb_quic() {
    let rt = runtime();
    let pki = pki();
    let port = start_tls(&rt, &pki.good, &[b"http/1.1"], Ws::Accept);
    quic_server(&rt, port, &pki.good, b"nb-quic");
    let (code, v) = control(&pki, &["--relay", &format!("relay.netbird.test:{port}")]);
    let e = endpoint(&v);
    assert_eq!(path(&v)["websocket"]["path"], "/relay", "{v:#}");
    assert_eq!(path(&v)["websocket"]["verdict"]["verdict"], "upgraded");
    assert_eq!(e["quic"][0]["outcome"]["outcome"], "connected");
    assert_eq!(e["quic"][0]["outcome"]["datagrams"], true);
    let race = &e["race"];
    assert!(race["websocket"].as_f64().unwrap() > 0.0);
    assert!(race["quic"].as_f64().unwrap() > 0.0);
    let faster = if race["quic"].as_f64() <= race["websocket"].as_f64() {
        "quic"
    } else {
        "web-socket"
    };
    assert_eq!(race["winner"], faster);
    assert_eq!(e["status"], "ok");
    assert_eq!(code, 0);
}

#[test]
fn relay_websocket_403_leaves_quic() {
    let rt = runtime();
    let pki = pki();
    let port = start_tls(&rt, &pki.good, &[b"http/1.1"], Ws::Status(403, "Forbidden"));
    quic_server(&rt, port, &pki.good, b"nb-quic");
    let (code, v) = control(&pki, &["--relay", &format!("relay.netbird.test:{port}")]);
    let ws = &path(&v)["websocket"]["verdict"];
    assert_eq!(ws["verdict"], "refused", "{v:#}");
    assert_eq!(ws["status"], 403);
    assert_eq!(ws["server"], "test-gateway");
    assert_eq!(ws["page_title"], "Blocked by policy");
    assert_eq!(endpoint(&v)["race"]["winner"], "quic");
    assert_eq!(endpoint(&v)["status"], "degraded");
    assert_eq!(code, 1);
}

#[test]
fn relay_quic_with_other_alpn_is_refused() {
    let rt = runtime();
    let pki = pki();
    let port = start_tls(&rt, &pki.good, &[b"http/1.1"], Ws::Accept);
    quic_server(&rt, port, &pki.good, b"h3");
    let (code, v) = control(&pki, &["--relay", &format!("relay.netbird.test:{port}")]);
    let e = endpoint(&v);
    assert_eq!(e["quic"][0]["outcome"]["outcome"], "alpn-refused", "{v:#}");
    assert_eq!(e["race"]["winner"], "web-socket");
    assert!(problem_kinds(&v).contains(&"quic".to_string()));
    assert_eq!(e["status"], "degraded");
    assert_eq!(code, 1);
}

#[test]
fn connect_proxy_is_used_and_reported() {
    let rt = runtime();
    let pki = pki();
    let port = start_tls(&rt, &pki.good, &[b"h2", b"http/1.1"], Ws::Accept);
    let backend = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let (proxy_port, seen) = start_proxy(&rt, backend, None);
    let proxy = format!("http://127.0.0.1:{proxy_port}");
    let (code, v) = control(
        &pki,
        &[
            "--proxy",
            &proxy,
            "--management",
            &format!("api.netbird.test:{port}"),
        ],
    );
    assert_eq!(v["proxy"], proxy.as_str(), "{v:#}");
    let p = path(&v);
    assert_eq!(p["proxy"], proxy.as_str());
    assert!(p["address"].is_null());
    assert_eq!(p["proxy_reply"]["verdict"], "tunnel");
    assert_eq!(p["grpc"]["name"], "UNIMPLEMENTED");
    assert_eq!(code, 0);
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        &[format!("api.netbird.test:{port}")]
    );

    // A proxy that wants credentials: 407 without them, a tunnel with them.
    let (auth_port, _) = start_proxy(&rt, backend, Some("alice:secret"));
    let target = format!("api.netbird.test:{port}");
    let (code, v) = control(
        &pki,
        &[
            "--proxy",
            &format!("127.0.0.1:{auth_port}"),
            "--management",
            &target,
        ],
    );
    assert_eq!(path(&v)["proxy_reply"]["verdict"], "auth-required", "{v:#}");
    assert!(problem_kinds(&v).contains(&"proxy".to_string()));
    assert_eq!(code, 2);
    let (code, v) = control(
        &pki,
        &[
            "--proxy",
            &format!("http://alice:secret@127.0.0.1:{auth_port}"),
            "--management",
            &target,
        ],
    );
    assert_eq!(path(&v)["proxy_reply"]["verdict"], "tunnel", "{v:#}");
    assert!(!v.to_string().contains("secret"));
    assert_eq!(code, 0);
}

#[test]
fn dns_failures_sinkholes_and_rewrites() {
    let rt = runtime();
    let pki = pki();
    let port = start_tls(&rt, &pki.good, &[b"h2", b"http/1.1"], Ws::Accept);
    let dns_port = start_dns(&rt);
    let ca = pki.ca_file.display().to_string();
    let ep = |n: &str| format!("{n}.netbird.test:{port}");
    let (nx, fail, sink, silent, ok) = (ep("nx"), ep("fail"), ep("sink"), ep("silent"), ep("ok"));
    let out = stunmap(&[
        "control",
        "--json",
        "--no-proxy",
        "--timeout",
        "1000",
        "--ca",
        &ca,
        "--dns-server",
        &format!("127.0.0.1:{dns_port}"),
        "--management",
        &ok,
        "--management",
        &nx,
        "--management",
        &fail,
        "--management",
        &sink,
        "--signal",
        &silent,
        "--signal",
        &ok,
        "--published",
        "ok.netbird.test=127.0.0.2",
    ]);
    let v = json(&out);
    let e = |i: usize| &v["endpoints"][i];
    // ok.netbird.test resolves through the test resolver to the good server, but 127.0.0.1 is
    // not in the list published for it.
    assert_eq!(e(0)["ipv4"]["outcome"], "resolved", "{v:#}");
    assert_eq!(e(0)["ipv4"]["addresses"][0], "127.0.0.1");
    assert_eq!(e(0)["ipv6"]["outcome"], "no-records");
    assert_eq!(e(0)["dns"]["verdict"], "differs-from-published");
    assert_eq!(e(0)["paths"][0]["grpc"]["name"], "UNIMPLEMENTED");
    assert_eq!(e(0)["status"], "degraded");
    assert_eq!(e(1)["dns"]["verdict"], "nx-domain");
    assert_eq!(e(1)["status"], "blocked");
    assert_eq!(e(2)["dns"]["verdict"], "server-failure");
    assert_eq!(e(2)["dns"]["rcode"], "serv-fail");
    assert_eq!(e(3)["dns"]["verdict"], "sinkhole");
    assert_eq!(e(3)["dns"]["addresses"][0], "0.0.0.0");
    assert!(e(3)["paths"].as_array().unwrap().is_empty());
    assert_eq!(e(4)["dns"]["verdict"], "timeout");
    assert_eq!(e(4)["ipv4"]["outcome"], "timeout");
    assert_eq!(e(5)["dns"]["verdict"], "differs-from-published");
    assert_eq!(v["status"], "blocked");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn unreachable_paths_finish_quickly() {
    let pki = pki();
    let port = free_port("127.0.0.1");
    let start = std::time::Instant::now();
    let (code, v) = control(&pki, &["--relay", &format!("relay.netbird.test:{port}")]);
    assert_eq!(path(&v)["failure"]["step"], "tcp", "{v:#}");
    assert_eq!(endpoint(&v)["status"], "blocked");
    assert_eq!(code, 2);
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn usage_errors_exit_64() {
    for bad in [
        &["control", "--resolve", "nonsense"][..],
        &["control", "--management", "a:b:c"],
        &["control", "--proxy", "socks5://x:1"],
        &["control", "--ca", "/nonexistent/ca.pem"],
    ] {
        let out = stunmap(bad);
        assert_eq!(out.status.code(), Some(64), "{bad:?}");
    }
}
