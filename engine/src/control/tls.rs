//! TLS over TCP (direct or through an HTTP proxy's CONNECT tunnel), with a verifier that
//! records what the chain is worth instead of refusing it, so the probe can go on and see what
//! an intercepting middlebox does to ALPN and HTTP/2.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use probes::Family;
use probes::control::EndpointSpec;
use probes::control::Timeouts;
use probes::control::assess::{PathFacts, PathFailure, Step};
use probes::control::http::{ConnectVerdict, ProxyUrl, connect_verdict};
use probes::control::tls::{ChainCheck, TlsFacts, alpn_verdict, trust_verdict};
use probes::wire::http::parse_head;
use probes::wire::x509;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::ControlSetupError;

/// The trust anchors: the public (webpki) roots, and the private ones from `--ca`.
#[derive(Debug)]
pub struct Roots {
    public: Arc<WebPkiServerVerifier>,
    private: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl Roots {
    /// Build the verifiers; `extra` are DER certificates of private roots.
    pub fn new(extra: &[CertificateDer<'static>]) -> Result<Roots, ControlSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut public = RootCertStore::empty();
        public.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let build = |store: RootCertStore| {
            WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                .build()
                .map_err(|e| ControlSetupError::Verifier {
                    reason: e.to_string(),
                })
        };
        let private = if extra.is_empty() {
            None
        } else {
            let mut store = RootCertStore::empty();
            for (index, c) in extra.iter().enumerate() {
                store
                    .add(c.clone())
                    .map_err(|e| ControlSetupError::BadRoot {
                        index,
                        reason: e.to_string(),
                    })?;
            }
            Some(build(store)?)
        };
        Ok(Roots {
            public: build(public)?,
            private,
            provider,
        })
    }

    /// A client configuration whose verifier records into a fresh slot, offering `alpn`.
    pub(crate) fn client_config(
        self: &Arc<Self>,
        alpn: &[&[u8]],
        tls13_only: bool,
    ) -> Result<(rustls::ClientConfig, Arc<RecordingVerifier>), rustls::Error> {
        let verifier = Arc::new(RecordingVerifier {
            roots: self.clone(),
            record: Mutex::new(None),
        });
        let builder = rustls::ClientConfig::builder_with_provider(self.provider.clone());
        let builder = if tls13_only {
            builder.with_protocol_versions(&[&rustls::version::TLS13])?
        } else {
            builder.with_safe_default_protocol_versions()?
        };
        let mut config = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok((config, verifier))
    }
}

/// The verdicts of one verification: public roots, private roots.
type Record = (ChainCheck, Option<ChainCheck>);

/// A verifier that checks the chain against both root sets, remembers the result and accepts
/// the connection either way. This is only safe because nothing secret is sent over it: the
/// probe's requests are fixed and public.
#[derive(Debug)]
pub(crate) struct RecordingVerifier {
    roots: Arc<Roots>,
    record: Mutex<Option<Record>>,
}

impl RecordingVerifier {
    pub(crate) fn take(&self) -> Option<Record> {
        self.record.lock().ok().and_then(|mut r| r.take())
    }
}

fn chain_check(r: Result<ServerCertVerified, rustls::Error>) -> ChainCheck {
    match r {
        Ok(_) => ChainCheck::Valid,
        Err(rustls::Error::InvalidCertificate(e)) => match e {
            CertificateError::UnknownIssuer => ChainCheck::UnknownIssuer,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                ChainCheck::NameMismatch
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                ChainCheck::Expired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                ChainCheck::NotYetValid
            }
            other => ChainCheck::Other {
                reason: other.to_string(),
            },
        },
        Err(e) => ChainCheck::Other {
            reason: e.to_string(),
        },
    }
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verify = |v: &WebPkiServerVerifier| {
            chain_check(v.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ))
        };
        let public = verify(&self.roots.public);
        let private = self.roots.private.as_deref().map(verify);
        if let Ok(mut slot) = self.record.lock() {
            *slot = Some((public, private));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.roots.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.roots.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.roots
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Turn the recorded verification and the presented chain into facts.
pub(crate) fn chain_names(certs: &[CertificateDer<'_>]) -> Vec<x509::CertNames> {
    certs
        .iter()
        .map(|c| {
            x509::names(c).unwrap_or_else(|_| x509::CertNames {
                subject: x509::DistinguishedName::default(),
                issuer: x509::DistinguishedName::default(),
                self_issued: false,
            })
        })
        .collect()
}

/// Where a connection goes.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    /// Straight to this address.
    Direct(SocketAddr),
    /// Through this proxy's CONNECT.
    Proxy(ProxyUrl),
}

pub(crate) fn fail(step: Step, timeout: bool, reason: impl Into<String>) -> PathFailure {
    PathFailure {
        step,
        timeout,
        reason: reason.into(),
    }
}

/// `io` given at most `limit`: its value, or `None` with the failure of `step` in `facts`
/// (`silence` is the reason when the time ran out, else the error's words).
async fn within<T>(
    limit: std::time::Duration,
    io: impl std::future::Future<Output = std::io::Result<T>>,
    step: Step,
    silence: &str,
    facts: &mut PathFacts,
) -> Option<T> {
    match tokio::time::timeout(limit, io).await {
        Err(_) => {
            facts.failure = Some(fail(step, true, silence));
            None
        }
        Ok(Err(e)) => {
            facts.failure = Some(fail(step, false, e.to_string()));
            None
        }
        Ok(Ok(v)) => Some(v),
    }
}

/// Connect (directly or through the proxy) and run the TLS handshake offering `alpn`. Fills
/// `facts` as far as it gets; returns the stream when the handshake completed.
pub(crate) async fn open(
    roots: &Arc<Roots>,
    spec: &EndpointSpec,
    target: &Target,
    alpn: &[&[u8]],
    timeouts: &Timeouts,
    facts: &mut PathFacts,
) -> Option<TlsStream<TcpStream>> {
    let (role, name, port) = (spec.role, spec.name.as_str(), spec.port);
    match target {
        Target::Direct(a) => {
            facts.address = Some(*a);
            facts.family = Some(Family::of(a.ip()));
        }
        Target::Proxy(p) => facts.proxy = Some(p.to_string()),
    }
    let tcp = match target {
        Target::Direct(addr) => {
            let start = crate::clock::now();
            let s = within(
                timeouts.connect,
                crate::source::connect_tcp(*addr),
                Step::Tcp,
                "no answer to SYN",
                facts,
            )
            .await?;
            facts.connect_time = Some(crate::clock::now().saturating_duration_since(start));
            s
        }
        Target::Proxy(proxy) => via_proxy(proxy, name, port, timeouts, facts).await?,
    };
    let _ = tcp.set_nodelay(true);
    let server_name = match ServerName::try_from(name.to_string()) {
        Ok(n) => n,
        Err(e) => {
            facts.failure = Some(fail(Step::Tls, false, format!("bad server name: {e}")));
            return None;
        }
    };
    let (config, verifier) = match roots.client_config(alpn, false) {
        Ok(c) => c,
        Err(e) => {
            facts.failure = Some(fail(Step::Tls, false, e.to_string()));
            return None;
        }
    };
    let start = crate::clock::now();
    let handshake = TlsConnector::from(Arc::new(config)).connect(server_name, tcp);
    let stream = within(
        timeouts.tls,
        handshake,
        Step::Tls,
        "handshake did not finish",
        facts,
    )
    .await?;
    let handshake_time = crate::clock::now().saturating_duration_since(start);
    let (_, conn) = stream.get_ref();
    let (public_roots, private_roots) = verifier.take().unwrap_or((
        ChainCheck::Other {
            reason: "no certificate was verified".to_string(),
        },
        None,
    ));
    let tls = TlsFacts {
        handshake_time,
        version: conn
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default(),
        cipher_suite: conn
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default(),
        alpn: conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
        chain: chain_names(conn.peer_certificates().unwrap_or(&[])),
        public_roots,
        private_roots,
    };
    facts.trust = Some(trust_verdict(&tls));
    facts.alpn = Some(alpn_verdict(role, tls.alpn.as_deref()));
    facts.tls = Some(tls);
    Some(stream)
}

/// Connect to the proxy and open a CONNECT tunnel to `name:port`.
async fn via_proxy(
    proxy: &ProxyUrl,
    name: &str,
    port: u16,
    timeouts: &Timeouts,
    facts: &mut PathFacts,
) -> Option<TcpStream> {
    let start = crate::clock::now();
    let connect = async {
        let addrs = tokio::net::lookup_host((proxy.host.as_str(), proxy.port)).await?;
        let mut last = std::io::Error::other("the proxy name has no address");
        for a in addrs {
            match crate::source::connect_tcp(a).await {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(last)
    };
    let mut stream = within(
        timeouts.connect,
        connect,
        Step::ProxyConnect,
        "no answer from the proxy",
        facts,
    )
    .await?;
    facts.connect_time = Some(crate::clock::now().saturating_duration_since(start));
    let request = proxy.connect_request(name, port);
    let exchange = async {
        stream.write_all(request.as_bytes()).await?;
        let mut buf = Vec::with_capacity(1024);
        // Byte by byte up to the blank line: nothing after the head may be consumed, it
        // belongs to the tunnel.
        loop {
            let b = stream.read_u8().await?;
            buf.push(b);
            if buf.ends_with(b"\r\n\r\n") || buf.len() > probes::wire::http::MAX_HEAD {
                return Ok::<_, std::io::Error>(buf);
            }
        }
    };
    let buf = within(
        timeouts.tls,
        exchange,
        Step::ProxyTunnel,
        "no answer to CONNECT",
        facts,
    )
    .await?;
    let head = parse_head(&buf);
    match head {
        Ok(Some(h)) => {
            let verdict = connect_verdict(&h);
            let open = verdict == ConnectVerdict::Tunnel;
            facts.proxy_reply = Some(verdict);
            open.then_some(stream)
        }
        Ok(None) | Err(_) => {
            facts.failure = Some(fail(
                Step::ProxyTunnel,
                false,
                "the proxy's answer is not HTTP",
            ));
            None
        }
    }
}
