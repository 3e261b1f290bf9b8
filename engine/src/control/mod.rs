//! Control plane and relay checks: DNS, TCP, TLS, ALPN, gRPC, WebSocket, QUIC, HTTP proxies.
//!
//! [`run`] checks each endpoint (management, signal, relay): it resolves the name (or takes
//! `--resolve` overrides), then for every address — or once through the HTTP proxy — connects,
//! runs TLS and the role's exchange, all concurrently and each step under its own timeout. The
//! interpretation (trust, inspection, ALPN, gRPC status, upgrade replies, the relay race, the
//! problems and fixes) is `probes::control`'s; this module only gathers the facts.

mod dns;
mod h2;
mod quic;
mod tls;
mod ws;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use probes::Family;
use probes::control::assess::{PathFacts, QuicFacts, Step, WsFacts};
use probes::control::dns::{DnsVerdict, Lookup, is_sinkhole, published_addresses, verdict};
use probes::control::http::{ProxyUrl, WsVerdict, no_proxy_matches};
use probes::control::{EndpointReport, EndpointSpec, ResolveOverride, Role, Timeouts};
use probes::finding::Status;
use rustls::pki_types::CertificateDer;
use serde::Serialize;
use tokio::task::JoinSet;

pub use dns::{lookup, system_nameservers};
pub use tls::Roots;

use tls::{Target, fail, open};

/// Why the checks could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlSetupError {
    /// A `--ca` certificate is not a usable root.
    #[error("root certificate #{index} is not usable: {reason}")]
    BadRoot {
        /// Its position among the roots given.
        index: usize,
        /// rustls' reason.
        reason: String,
    },
    /// The certificate verifier could not be built.
    #[error("cannot build the certificate verifier: {reason}")]
    Verifier {
        /// rustls' reason.
        reason: String,
    },
}

/// What to check and how.
#[derive(Clone, Debug, Default)]
pub struct ControlConfig {
    /// The endpoints.
    pub endpoints: Vec<EndpointSpec>,
    /// Name → address overrides (`--resolve`); an overridden name is not looked up.
    pub overrides: Vec<ResolveOverride>,
    /// Resolvers to ask (empty: none, every lookup fails; see [`system_nameservers`]).
    pub nameservers: Vec<SocketAddr>,
    /// Published address lists to compare DNS answers with, besides NetBird Cloud's own.
    pub published: Vec<(String, Vec<IpAddr>)>,
    /// Private roots (`--ca`), DER.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// HTTP proxy for the TCP checks.
    pub proxy: Option<ProxyUrl>,
    /// `NO_PROXY` list: names reached directly even with a proxy.
    pub no_proxy: Option<String>,
    /// Per-step timeouts.
    pub timeouts: Timeouts,
}

/// The result of a run.
#[derive(Clone, Debug, Serialize)]
pub struct ControlReport {
    /// One report per endpoint, in the order asked.
    pub endpoints: Vec<EndpointReport>,
    /// The proxy used for the TCP checks, if any.
    pub proxy: Option<String>,
    /// The worst endpoint status.
    pub status: Status,
}

/// Run every check of every endpoint.
pub async fn run(config: ControlConfig) -> Result<ControlReport, ControlSetupError> {
    let roots = Arc::new(Roots::new(&config.extra_roots)?);
    let config = Arc::new(config);
    let mut tasks = JoinSet::new();
    for (i, spec) in config.endpoints.iter().enumerate() {
        let (roots, config, spec) = (roots.clone(), config.clone(), spec.clone());
        tasks.spawn(async move { (i, check_endpoint(&roots, &config, spec).await) });
    }
    let mut endpoints: Vec<(usize, EndpointReport)> = Vec::new();
    while let Some(r) = tasks.join_next().await {
        if let Ok(r) = r {
            endpoints.push(r);
        }
    }
    endpoints.sort_by_key(|(i, _)| *i);
    let endpoints: Vec<EndpointReport> = endpoints.into_iter().map(|(_, r)| r).collect();
    let status = endpoints
        .iter()
        .map(|e| e.status)
        .max()
        .unwrap_or(Status::Ok);
    Ok(ControlReport {
        endpoints,
        proxy: config.proxy.as_ref().map(ToString::to_string),
        status,
    })
}

/// The proxy for `name`, honouring `NO_PROXY`.
fn proxy_for<'a>(config: &'a ControlConfig, name: &str) -> Option<&'a ProxyUrl> {
    let proxy = config.proxy.as_ref()?;
    match &config.no_proxy {
        Some(np) if no_proxy_matches(np, name) => None,
        _ => Some(proxy),
    }
}

async fn resolve(config: &ControlConfig, spec: &EndpointSpec) -> (Lookup, Lookup, DnsVerdict) {
    let given: Vec<IpAddr> = match spec.name.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => config
            .overrides
            .iter()
            .filter(|o| o.applies(&spec.name, spec.port))
            .map(|o| o.address)
            .collect(),
    };
    let (v4, v6) = if given.is_empty() {
        dns::lookup(&spec.name, &config.nameservers, config.timeouts.dns).await
    } else {
        let of = |f: Family| Lookup::Overridden {
            addresses: given
                .iter()
                .copied()
                .filter(|a| Family::of(*a) == f)
                .collect(),
        };
        (of(Family::Ipv4), of(Family::Ipv6))
    };
    let mut published = published_addresses(&spec.name);
    for (n, list) in &config.published {
        if n.eq_ignore_ascii_case(&spec.name) {
            published.extend(list);
        }
    }
    let dns = verdict(&v4, &v6, &published);
    (v4, v6, dns)
}

async fn check_endpoint(
    roots: &Arc<Roots>,
    config: &Arc<ControlConfig>,
    spec: EndpointSpec,
) -> EndpointReport {
    let (v4, v6, dns) = resolve(config, &spec).await;
    let overridden = dns == DnsVerdict::Overridden;
    // Never connect to a sinkhole answer (it is this host, or nothing).
    let addresses: Vec<SocketAddr> = v4
        .addresses()
        .iter()
        .chain(v6.addresses())
        .filter(|a| overridden || !is_sinkhole(**a))
        .map(|a| SocketAddr::new(*a, spec.port))
        .collect();
    let targets: Vec<Target> = match proxy_for(config, &spec.name) {
        Some(p) => vec![Target::Proxy(p.clone())],
        None => addresses.iter().copied().map(Target::Direct).collect(),
    };
    let mut path_tasks = JoinSet::new();
    for (i, target) in targets.into_iter().enumerate() {
        let (roots, config, spec) = (roots.clone(), config.clone(), spec.clone());
        path_tasks.spawn(async move { (i, check_path(&roots, &config, &spec, target).await) });
    }
    let mut quic_tasks = JoinSet::new();
    if spec.role == Role::Relay {
        for (i, addr) in addresses.iter().copied().enumerate() {
            let (roots, name, timeout) = (roots.clone(), spec.name.clone(), config.timeouts.quic);
            quic_tasks.spawn(async move {
                let outcome = quic::handshake(&roots, addr, &name, timeout).await;
                (
                    i,
                    QuicFacts {
                        address: addr,
                        outcome,
                    },
                )
            });
        }
    }
    let mut paths = Vec::new();
    while let Some(r) = path_tasks.join_next().await {
        if let Ok(r) = r {
            paths.push(r);
        }
    }
    paths.sort_by_key(|(i, _)| *i);
    let mut quics = Vec::new();
    while let Some(r) = quic_tasks.join_next().await {
        if let Ok(r) = r {
            quics.push(r);
        }
    }
    quics.sort_by_key(|(i, _)| *i);
    EndpointReport::new(
        spec.role,
        spec.name,
        spec.port,
        (v4, v6, dns),
        paths.into_iter().map(|(_, p)| p).collect(),
        quics.into_iter().map(|(_, q)| q).collect(),
    )
}

async fn check_path(
    roots: &Arc<Roots>,
    config: &ControlConfig,
    spec: &EndpointSpec,
    target: Target,
) -> PathFacts {
    let t = &config.timeouts;
    let mut facts = PathFacts::default();
    let start = crate::clock::now();
    let stream = open(roots, spec, &target, spec.role.tcp_alpn(), t, &mut facts).await;
    let Some(mut stream) = stream else {
        return facts;
    };
    if spec.role.is_grpc() {
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        if h2 {
            let verdict = h2::grpc_request(stream, &spec.name, spec.port, t.http).await;
            let proven = verdict.proves_grpc();
            facts.grpc = Some(verdict);
            if proven {
                return facts;
            }
        } else {
            drop(stream);
        }
        // gRPC over HTTP/2 did not work here: try the WebSocket transport NetBird's client
        // falls back to, on a new connection that offers only HTTP/1.1.
        let mut fallback = PathFacts::default();
        let start = crate::clock::now();
        let path = spec.role.websocket_path();
        let ws = match open(roots, spec, &target, &[b"http/1.1"], t, &mut fallback).await {
            Some(mut s) => ws_facts(
                ws::upgrade(&mut s, &spec.name, spec.port, path, t.http).await,
                path,
                start,
            ),
            None => WsFacts {
                path: path.to_string(),
                verdict: None,
                time: None,
                failure: fallback.failure,
            },
        };
        facts.websocket = Some(ws);
    } else {
        let path = spec.role.websocket_path();
        let r = ws::upgrade(&mut stream, &spec.name, spec.port, path, t.http).await;
        facts.websocket = Some(ws_facts(r, path, start));
    }
    facts
}

fn ws_facts(r: Result<WsVerdict, (bool, String)>, path: &str, start: Instant) -> WsFacts {
    match r {
        Ok(v) => WsFacts {
            path: path.to_string(),
            verdict: Some(v),
            time: Some(crate::clock::now().saturating_duration_since(start)),
            failure: None,
        },
        Err((timeout, reason)) => WsFacts {
            path: path.to_string(),
            verdict: None,
            time: None,
            failure: Some(fail(Step::Http, timeout, reason)),
        },
    }
}
