//! `stunmap control`: can NetBird's control plane (management, signal) and relay be used from
//! here — DNS, TCP, TLS (and who intercepts it), ALPN, gRPC, WebSocket, QUIC, HTTP proxies.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use engine::control::{ControlConfig, ControlReport, system_nameservers};
use probes::control::assess::{PathFacts, trust_text};
use probes::control::dns::{DnsVerdict, Lookup};
use probes::control::grpc::GrpcVerdict;
use probes::control::http::{ConnectVerdict, ProxyUrl, WsVerdict};
use probes::control::relay::{QuicOutcome, RelayTransport};
use probes::control::tls::AlpnVerdict;
use probes::control::{EndpointReport, EndpointSpec, ResolveOverride, Role, Timeouts};
use probes::finding::{Severity, Status};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde::Serialize;

use crate::exit::{Outcome, usage};

const AFTER_HELP: &str = "\
Without --management/--signal/--relay, NetBird Cloud's api.netbird.io:443 and
signal.netbird.io:443 are checked. Relay names are handed out by the management service
(`netbird status -d` shows the one in use): pass it with --relay.

Exit status: 0 everything works, 1 degraded (TLS inspection, HTTP/2 stripped but the WebSocket
fallback works, one relay transport down, DNS answers differing from the published list),
2 blocked (an endpoint cannot be used), 64 bad flags. See docs/control.md.";

/// Flags of `stunmap control`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub(crate) struct Args {
    /// Management service (gRPC over TLS), HOST[:PORT]; repeatable.
    #[arg(long, value_name = "HOST[:PORT]")]
    management: Vec<String>,
    /// Signal service (gRPC over TLS), HOST[:PORT]; repeatable.
    #[arg(long, value_name = "HOST[:PORT]")]
    signal: Vec<String>,
    /// Relay (WebSocket over TLS on TCP, QUIC on UDP), HOST[:PORT]; repeatable.
    #[arg(long, value_name = "HOST[:PORT]")]
    relay: Vec<String>,
    /// Use ADDR for NAME instead of DNS (curl's convention: NAME:PORT:ADDR or NAME:ADDR).
    #[arg(long, value_name = "NAME:[PORT:]ADDR")]
    resolve: Vec<String>,
    /// Also trust the root certificates in this PEM file (a self-hosted server's private CA).
    #[arg(long, value_name = "FILE")]
    ca: Vec<PathBuf>,
    /// HTTP proxy for the TCP checks (CONNECT); default: $HTTPS_PROXY, honouring $NO_PROXY.
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,
    /// Ignore $HTTPS_PROXY and $NO_PROXY (an explicit --proxy is still used).
    #[arg(long)]
    no_proxy: bool,
    /// Resolver to ask, ADDR[:PORT] (default: the nameservers of /etc/resolv.conf); repeatable.
    #[arg(long, value_name = "ADDR[:PORT]")]
    dns_server: Vec<String>,
    /// Addresses NAME is published with, to spot rewritten DNS answers (NAME=ADDR,ADDR…).
    #[arg(long, value_name = "NAME=ADDR,…")]
    published: Vec<String>,
    /// Timeout of each step (DNS, connect, TLS, HTTP, QUIC) in milliseconds.
    #[arg(long, value_name = "MS")]
    timeout: Option<u64>,
    /// Machine-readable output (schema stunmap.control/1).
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Output<'a> {
    schema: &'static str,
    #[serde(flatten)]
    report: &'a ControlReport,
}

fn parse_dns_server(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddr>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
}

fn parse_published(s: &str) -> Option<(String, Vec<IpAddr>)> {
    let (name, list) = s.split_once('=')?;
    let addrs = list
        .split(',')
        .map(|a| a.trim().parse().ok())
        .collect::<Option<Vec<IpAddr>>>()?;
    (!name.is_empty() && !addrs.is_empty()).then(|| (name.to_string(), addrs))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .or_else(|| std::env::var(name.to_ascii_lowercase()).ok())
        .filter(|v| !v.trim().is_empty())
}

fn build_config(args: &Args) -> anyhow::Result<ControlConfig> {
    let mut endpoints = Vec::new();
    for (role, list) in [
        (Role::Management, &args.management),
        (Role::Signal, &args.signal),
        (Role::Relay, &args.relay),
    ] {
        for e in list {
            endpoints
                .push(EndpointSpec::parse(role, e).map_err(|e| usage(format!("--{role}: {e}")))?);
        }
    }
    if endpoints.is_empty() {
        endpoints = vec![
            EndpointSpec {
                role: Role::Management,
                name: "api.netbird.io".into(),
                port: 443,
            },
            EndpointSpec {
                role: Role::Signal,
                name: "signal.netbird.io".into(),
                port: 443,
            },
        ];
    }
    let overrides = args
        .resolve
        .iter()
        .map(|r| ResolveOverride::parse(r).map_err(|e| usage(format!("--resolve: {e}"))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let nameservers = if args.dns_server.is_empty() {
        system_nameservers()
    } else {
        args.dns_server
            .iter()
            .map(|s| {
                parse_dns_server(s)
                    .ok_or_else(|| usage(format!("--dns-server: not ADDR[:PORT]: {s:?}")))
            })
            .collect::<anyhow::Result<_>>()?
    };
    let published = args
        .published
        .iter()
        .map(|s| {
            parse_published(s)
                .ok_or_else(|| usage(format!("--published: not NAME=ADDR[,ADDR…]: {s:?}")))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut extra_roots = Vec::new();
    for path in &args.ca {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| usage(format!("--ca {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(usage(format!(
                "--ca {}: no CERTIFICATE in the file",
                path.display()
            )));
        }
        extra_roots.extend(certs);
    }
    let proxy_text = match (&args.proxy, args.no_proxy) {
        (Some(p), _) => Some(p.clone()),
        (None, false) => env("HTTPS_PROXY"),
        (None, true) => None,
    };
    let proxy = proxy_text
        .map(|p| ProxyUrl::parse(&p).map_err(|e| usage(format!("proxy: {e}"))))
        .transpose()?;
    let timeouts = match args.timeout {
        Some(0) => return Err(usage("--timeout must be at least 1 ms")),
        Some(ms) => Timeouts::uniform(Duration::from_millis(ms)),
        None => Timeouts::default(),
    };
    Ok(ControlConfig {
        endpoints,
        overrides,
        nameservers,
        published,
        extra_roots,
        proxy,
        // An explicit --proxy is used for everything.
        no_proxy: if args.proxy.is_some() {
            None
        } else {
            env("NO_PROXY")
        },
        timeouts,
    })
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    let config = build_config(&args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = rt
        .block_on(engine::control::run(config))
        .context("control checks")?;
    if args.json {
        let out = Output {
            schema: "stunmap.control/1",
            report: &report,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(match report.status {
        Status::Ok | Status::Skipped => Outcome::Ok,
        Status::Degraded | Status::Uncertain => Outcome::Degraded,
        Status::Blocked => Outcome::Blocked,
    })
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok",
        Status::Degraded => "DEGRADED",
        Status::Blocked => "BLOCKED",
        Status::Uncertain => "UNCERTAIN",
        Status::Skipped => "skipped",
    }
}

fn lookup_text(l: &Lookup) -> String {
    match l {
        Lookup::Resolved { addresses, time } => format!(
            "{} ({})",
            addresses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
            ms(*time)
        ),
        Lookup::NoRecords { time } => format!("no records ({})", ms(*time)),
        Lookup::Failed { rcode, time } => format!("{rcode:?} ({})", ms(*time)),
        Lookup::Timeout => "timeout".to_string(),
        Lookup::Overridden { addresses } if addresses.is_empty() => "-".to_string(),
        Lookup::Overridden { addresses } => format!(
            "{} (--resolve)",
            addresses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Lookup::Error { message } => format!("error: {message}"),
    }
}

fn dns_text(v: &DnsVerdict) -> String {
    match v {
        DnsVerdict::Ok => "ok".into(),
        DnsVerdict::Overridden => "overridden".into(),
        DnsVerdict::Sinkhole { .. } => "SINKHOLE".into(),
        DnsVerdict::DiffersFromPublished { .. } => "DIFFERS from published list".into(),
        DnsVerdict::NxDomain => "NXDOMAIN".into(),
        DnsVerdict::ServerFailure { rcode } => format!("{rcode:?}").to_uppercase(),
        DnsVerdict::Timeout => "TIMEOUT".into(),
        DnsVerdict::NoAddresses => "NO ADDRESSES".into(),
        DnsVerdict::Error { message } => format!("error: {message}"),
    }
}

fn ws_text(v: &WsVerdict) -> String {
    match v {
        WsVerdict::Upgraded => "101 upgraded".into(),
        WsVerdict::BadAccept => "101 with a wrong accept key".into(),
        WsVerdict::ProxyAuthRequired { .. } => "407 proxy authentication required".into(),
        WsVerdict::Refused { status, reason, .. } => format!("refused {status} {reason}"),
        WsVerdict::NotHttp { detail } => format!("not HTTP ({detail})"),
    }
}

fn path_line(role: Role, p: &PathFacts) -> String {
    let mut parts = Vec::new();
    if let Some(t) = p.connect_time {
        parts.push(format!("tcp {}", ms(t)));
    }
    match &p.proxy_reply {
        Some(ConnectVerdict::Tunnel) => parts.push("CONNECT ok".into()),
        Some(ConnectVerdict::AuthRequired { .. }) => parts.push("CONNECT 407".into()),
        Some(ConnectVerdict::Refused { status, .. }) => parts.push(format!("CONNECT {status}")),
        None => {}
    }
    if let Some(tls) = &p.tls {
        parts.push(format!(
            "{} {} {}",
            tls.version,
            tls.cipher_suite,
            ms(tls.handshake_time)
        ));
    }
    if let Some(t) = &p.trust {
        parts.push(trust_text(t));
    }
    if let (Some(tls), Some(a)) = (&p.tls, &p.alpn) {
        let alpn = tls.alpn.as_deref().unwrap_or("none");
        parts.push(match a {
            AlpnVerdict::Ok => format!("alpn {alpn}"),
            _ => format!("alpn {alpn} (h2 NEEDED)"),
        });
    }
    match &p.grpc {
        Some(GrpcVerdict::Status { code, name, .. }) => {
            parts.push(format!("gRPC status {name} ({code}): gRPC works"))
        }
        Some(GrpcVerdict::NotGrpc { http_status, .. }) => {
            parts.push(format!("gRPC: HTTP {http_status} without gRPC status"))
        }
        Some(GrpcVerdict::Failed { detail }) => parts.push(format!("gRPC failed: {detail}")),
        None => {}
    }
    if let Some(ws) = &p.websocket {
        let label = if role.is_grpc() {
            "WebSocket fallback"
        } else {
            "WebSocket"
        };
        match (&ws.verdict, &ws.failure) {
            (Some(v), _) => parts.push(format!(
                "{label} {} {}{}",
                ws.path,
                ws_text(v),
                ws.time.map(|t| format!(" ({})", ms(t))).unwrap_or_default()
            )),
            (None, Some(f)) => parts.push(format!("{label} {} failed: {}", ws.path, f.reason)),
            (None, None) => {}
        }
    }
    if let Some(f) = &p.failure {
        parts.push(format!(
            "FAILED at {:?}{}: {}",
            f.step,
            if f.timeout { " (timeout)" } else { "" },
            f.reason
        ));
    }
    let at = match (&p.proxy, p.address) {
        (Some(proxy), _) => format!("via {proxy}"),
        (None, Some(a)) => a.to_string(),
        (None, None) => "?".into(),
    };
    format!("  {at:<22} {}\n", parts.join(" · "))
}

fn render_endpoint(e: &EndpointReport, out: &mut String) {
    out.push_str(&format!(
        "{} {}:{}  {}\n",
        e.role,
        e.name,
        e.port,
        status_word(e.status)
    ));
    out.push_str(&format!(
        "  {:<22} {}; A {}; AAAA {}\n",
        "dns",
        dns_text(&e.dns),
        lookup_text(&e.ipv4),
        lookup_text(&e.ipv6)
    ));
    for p in &e.paths {
        out.push_str(&path_line(e.role, p));
    }
    for q in &e.quic {
        let text = match &q.outcome {
            QuicOutcome::Connected { time, datagrams } => format!(
                "connected ALPN nb-quic {}{}",
                ms(*time),
                if *datagrams {
                    ", datagrams"
                } else {
                    ", NO datagrams"
                }
            ),
            QuicOutcome::AlpnRefused => "ALPN nb-quic REFUSED".into(),
            QuicOutcome::Timeout => "TIMEOUT (UDP blocked?)".into(),
            QuicOutcome::Error { message } => format!("error: {message}"),
        };
        out.push_str(&format!(
            "  {:<22} QUIC {text}\n",
            format!("udp {}", q.address)
        ));
    }
    if let Some(race) = &e.race {
        let winner = match race.winner {
            Some(RelayTransport::Quic) => "QUIC",
            Some(RelayTransport::WebSocket) => "WebSocket",
            None => "none (no transport connects)",
        };
        let t = |d: Option<Duration>| d.map(ms).unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "  {:<22} a client would use {winner} (WebSocket {}, QUIC {})\n",
            "relay race",
            t(race.websocket),
            t(race.quic)
        ));
    }
}

fn render(r: &ControlReport) -> String {
    let mut out = String::new();
    if let Some(p) = &r.proxy {
        out.push_str(&format!("proxy: {p} (CONNECT, TCP checks only)\n"));
    }
    for e in &r.endpoints {
        render_endpoint(e, &mut out);
    }
    let problems: Vec<_> = r.endpoints.iter().flat_map(|e| &e.problems).collect();
    if !problems.is_empty() {
        out.push_str("\nproblems:\n");
        for p in problems {
            // The control plane's words for the connectivity severities.
            let sev = match p.severity {
                Severity::Info | Severity::Low => "info",
                Severity::Medium => "degraded",
                Severity::High | Severity::Critical => "blocked",
            };
            let fix = p.fix.as_ref().map_or("", |f| f.title.as_str());
            out.push_str(&format!("  [{sev}] {}\n      fix: {fix}\n", p.summary));
        }
    }
    out.push_str(&format!("\nstatus: {}\n", status_word(r.status)));
    out
}
