//! From observed facts to a status per endpoint and a list of problems, each with its fix.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use super::dns::{DnsVerdict, Lookup};
use super::grpc::GrpcVerdict;
use super::http::{ConnectVerdict, WsVerdict};
use super::relay::{QuicOutcome, RaceResult, RelayTransport, race};
use super::tls::{AlpnVerdict, TlsFacts, TrustVerdict};
use super::{Family, Role};
use crate::finding::{Finding, Fix, Severity, Status};

/// The step a connection attempt stopped at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// TCP connect to the proxy.
    ProxyConnect,
    /// The proxy's answer to CONNECT.
    ProxyTunnel,
    /// TCP connect to the server.
    Tcp,
    /// TLS handshake.
    Tls,
    /// The HTTP exchange (gRPC request or WebSocket upgrade).
    Http,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::ProxyConnect => "TCP connect to the proxy",
            Step::ProxyTunnel => "proxy CONNECT",
            Step::Tcp => "TCP connect",
            Step::Tls => "TLS handshake",
            Step::Http => "HTTP exchange",
        })
    }
}

/// Where and why an attempt stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PathFailure {
    /// The step.
    pub step: Step,
    /// It hit its timeout.
    pub timeout: bool,
    /// What happened.
    pub reason: String,
}

/// One WebSocket upgrade attempt (its own connection).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WsFacts {
    /// The path asked for.
    pub path: String,
    /// What came back, when the request was answered.
    pub verdict: Option<WsVerdict>,
    /// Time from the start of the connection to the upgrade reply.
    #[serde(with = "crate::serde_util::opt_secs")]
    pub time: Option<Duration>,
    /// Where it stopped, when it did not get an answer.
    pub failure: Option<PathFailure>,
}

/// Everything seen on one connection to one address (or through the proxy).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PathFacts {
    /// The address connected to (none through a proxy, which resolves the name itself).
    pub address: Option<SocketAddr>,
    /// Its family.
    pub family: Option<Family>,
    /// The proxy used, if any.
    pub proxy: Option<String>,
    /// TCP connect time (to the server, or to the proxy).
    #[serde(with = "crate::serde_util::opt_secs")]
    pub connect_time: Option<Duration>,
    /// The proxy's answer to CONNECT.
    pub proxy_reply: Option<ConnectVerdict>,
    /// The TLS handshake.
    pub tls: Option<TlsFacts>,
    /// Whom the chain is trusted by.
    pub trust: Option<TrustVerdict>,
    /// Whether the ALPN suits the service.
    pub alpn: Option<AlpnVerdict>,
    /// gRPC services: the one gRPC request.
    pub grpc: Option<GrpcVerdict>,
    /// The relay's WebSocket upgrade, or a gRPC service's WebSocket fallback (tried when gRPC
    /// over HTTP/2 did not work).
    pub websocket: Option<WsFacts>,
    /// Where the main exchange stopped.
    pub failure: Option<PathFailure>,
}

/// A QUIC handshake to one address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QuicFacts {
    /// The address.
    pub address: SocketAddr,
    /// What happened.
    pub outcome: QuicOutcome,
}

/// What a problem is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// The name does not resolve, resolves to a sinkhole, or to unexpected addresses.
    Dns,
    /// The HTTP proxy refuses the tunnel or wants credentials.
    Proxy,
    /// TCP does not connect.
    Tcp,
    /// The TLS handshake fails, or the chain is not trusted.
    Tls,
    /// Something re-signs TLS on the path.
    TlsInspection,
    /// HTTP/2 does not get through (ALPN http/1.1 or none).
    Http2,
    /// The gRPC request did not come back with a gRPC status.
    Grpc,
    /// Only the WebSocket fallback carries the gRPC service.
    WebSocketFallback,
    /// The relay's WebSocket upgrade is refused.
    WebSocket,
    /// The relay's QUIC does not connect.
    Quic,
    /// One IP family works, the other does not.
    Family,
}

/// One problem of an endpoint and its fix. Connectivity severities: `Info` (clients work
/// normally), `Medium` (they work worse or through a fallback), `High` (they cannot use the
/// endpoint over that path).
pub type Problem = Finding<ProblemKind>;

/// Everything about one endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EndpointReport {
    /// Its role.
    pub role: Role,
    /// Its name.
    pub name: String,
    /// Its port.
    pub port: u16,
    /// The A lookup.
    pub ipv4: Lookup,
    /// The AAAA lookup.
    pub ipv6: Lookup,
    /// What DNS showed.
    pub dns: DnsVerdict,
    /// The connections over TCP.
    pub paths: Vec<PathFacts>,
    /// Relay only: QUIC handshakes.
    pub quic: Vec<QuicFacts>,
    /// Relay only: which transport a client would use.
    pub race: Option<RaceResult>,
    /// The conclusion.
    pub status: Status,
    /// What is wrong, worst first.
    pub problems: Vec<Problem>,
}

impl EndpointReport {
    /// A report with the DNS results and the facts, to be judged by [`assess`].
    pub fn new(
        role: Role,
        name: String,
        port: u16,
        (ipv4, ipv6, dns): (Lookup, Lookup, DnsVerdict),
        paths: Vec<PathFacts>,
        quic: Vec<QuicFacts>,
    ) -> EndpointReport {
        let mut r = EndpointReport {
            role,
            name,
            port,
            ipv4,
            ipv6,
            dns,
            paths,
            quic,
            race: None,
            status: Status::Ok,
            problems: Vec::new(),
        };
        assess(&mut r);
        r
    }
}

/// What a path is good for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Works {
    No,
    WebSocketFallback,
    Fully,
}

fn where_(p: &PathFacts) -> String {
    match (&p.proxy, p.address) {
        (Some(proxy), _) => format!("via proxy {proxy}"),
        (None, Some(a)) => a.to_string(),
        (None, None) => "?".to_string(),
    }
}

fn trust_ok(p: &PathFacts) -> bool {
    p.trust
        .as_ref()
        .is_some_and(|t| t.is_trusted() || matches!(t, TrustVerdict::Inspection { .. }))
}

fn grpc_works(p: &PathFacts) -> Works {
    if trust_ok(p) && p.grpc.as_ref().is_some_and(GrpcVerdict::proves_grpc) {
        Works::Fully
    } else if ws_upgraded(p) {
        Works::WebSocketFallback
    } else {
        Works::No
    }
}

fn ws_upgraded(p: &PathFacts) -> bool {
    trust_ok(p)
        && p.websocket
            .as_ref()
            .is_some_and(|w| w.verdict == Some(WsVerdict::Upgraded))
}

/// Judge an endpoint: fill in `race`, `status` and `problems`.
pub fn assess(r: &mut EndpointReport) {
    let mut problems = Vec::new();
    dns_problems(r, &mut problems);
    let mut status = if r.role.is_grpc() {
        assess_grpc(r, &mut problems)
    } else {
        assess_relay(r, &mut problems)
    };
    for p in &r.paths {
        path_problems(r, p, &mut problems);
    }
    // Families: one works, the other does not (a client falls back to the working one).
    let works = |p: &PathFacts| {
        if r.role.is_grpc() {
            grpc_works(p) > Works::No
        } else {
            ws_upgraded(p)
        }
    };
    let families: Vec<(Family, bool)> = Family::ALL
        .into_iter()
        .filter(|f| r.paths.iter().any(|p| p.family == Some(*f)))
        .map(|f| (f, r.paths.iter().any(|p| p.family == Some(f) && works(p))))
        .collect();
    if let [(a, true), (b, false)] | [(b, false), (a, true)] = families.as_slice() {
        problems.push(Problem {
            kind: ProblemKind::Family,
            severity: Severity::Info,
            summary: format!("{} works over {a} but not over {b}", r.name),
            fix: Some(Fix::new(format!(
                "clients fall back to {a}; if {b} should work, check the {b} route and firewall \
                 for TCP/{}",
                r.port
            ))),
        });
    }
    problems.sort_by_key(|p| std::cmp::Reverse(p.severity));
    problems.dedup_by(|a, b| a.kind == b.kind && a.summary == b.summary);
    // A blocking problem on one path blocks the endpoint only when no path works, which the
    // per-role assessment decided; a degrading one always degrades.
    if status == Status::Ok && problems.iter().any(|p| p.severity == Severity::Medium) {
        status = Status::Degraded;
    }
    r.status = status;
    r.problems = problems;
}

fn dns_problems(r: &EndpointReport, out: &mut Vec<Problem>) {
    let via_proxy = r.paths.iter().any(|p| p.proxy.is_some());
    let blocked = if via_proxy {
        // The proxy resolves the name itself; local DNS failing matters less.
        Severity::Info
    } else {
        Severity::High
    };
    let name = &r.name;
    let (severity, summary, fix) = match &r.dns {
        DnsVerdict::Ok | DnsVerdict::Overridden => return,
        DnsVerdict::NxDomain => (
            blocked,
            format!("DNS: {name} does not exist (NXDOMAIN)"),
            "a DNS filter denies the name, or it is misspelt: allow it on the DNS filter, or \
             use a resolver that answers it"
                .to_string(),
        ),
        DnsVerdict::ServerFailure { rcode } => (
            blocked,
            format!("DNS: the resolver failed for {name} ({rcode:?})"),
            "the resolver cannot reach upstream or refuses the name: check the resolver, or \
             use another one"
                .to_string(),
        ),
        DnsVerdict::Timeout => (
            blocked,
            format!("DNS: no answer for {name}"),
            "the resolver does not answer (UDP/53 blocked?): check /etc/resolv.conf and the \
             path to the resolver"
                .to_string(),
        ),
        DnsVerdict::NoAddresses => (
            blocked,
            format!("DNS: {name} has no A or AAAA records"),
            "check the name; a self-hosted server needs an A (and ideally AAAA) record".to_string(),
        ),
        DnsVerdict::Sinkhole { addresses } => (
            blocked,
            format!(
                "DNS: {name} resolves to {} (a DNS filter's sinkhole)",
                list(addresses)
            ),
            format!("allow {name} on the DNS filter (Pi-hole, corporate resolver, …)"),
        ),
        DnsVerdict::DiffersFromPublished { unexpected } => (
            Severity::Medium,
            format!(
                "DNS: {name} resolves to {}, not in the published list (a DNS filter rewriting \
                 answers, or a stale list)",
                list(unexpected)
            ),
            "compare with a trusted resolver; if the answer is rewritten, allow the name on the \
             DNS filter"
                .to_string(),
        ),
        DnsVerdict::Error { message } => (
            blocked,
            format!("DNS: lookup of {name} failed: {message}"),
            "check the resolver configuration (/etc/resolv.conf, --dns-server)".to_string(),
        ),
    };
    out.push(Problem {
        kind: ProblemKind::Dns,
        severity,
        summary,
        fix: Some(Fix::new(fix)),
    });
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn assess_grpc(r: &EndpointReport, out: &mut Vec<Problem>) -> Status {
    let best = r.paths.iter().map(grpc_works).max().unwrap_or(Works::No);
    match best {
        Works::Fully => Status::Ok,
        Works::WebSocketFallback => {
            let why = r
                .paths
                .iter()
                .find_map(|p| match &p.alpn {
                    Some(AlpnVerdict::Http11Only) => Some("the path negotiates only HTTP/1.1"),
                    Some(AlpnVerdict::NoAlpn) => Some("the path strips ALPN"),
                    _ => None,
                })
                .unwrap_or("gRPC over HTTP/2 does not get through");
            out.push(Problem {
                kind: ProblemKind::WebSocketFallback,
                severity: Severity::Medium,
                summary: format!(
                    "{}: {why}; NetBird's client falls back to its WebSocket transport ({}), \
                     which works",
                    r.name,
                    r.role.websocket_path()
                ),
                fix: Some(Fix::new(format!(
                    "allow HTTP/2 (ALPN h2) to {}:{} on the proxy or firewall for the native \
                     gRPC transport",
                    r.name, r.port
                ))),
            });
            Status::Degraded
        }
        Works::No => {
            if r.paths.is_empty() && !r.dns.has_usable_addresses() {
                // The DNS problem says why.
            } else {
                out.push(Problem {
                    kind: ProblemKind::Grpc,
                    severity: Severity::High,
                    summary: format!(
                        "{}: {} cannot be reached over gRPC or its WebSocket fallback",
                        r.name, r.role
                    ),
                    fix: Some(Fix::new(
                        "see the problems below for where each path stops".to_string(),
                    )),
                });
            }
            Status::Blocked
        }
    }
}

fn assess_relay(r: &mut EndpointReport, out: &mut Vec<Problem>) -> Status {
    let ws_best = r
        .paths
        .iter()
        .filter(|p| ws_upgraded(p))
        .filter_map(|p| p.websocket.as_ref().and_then(|w| w.time))
        .min();
    let quic_best = r
        .quic
        .iter()
        .filter_map(|q| match q.outcome {
            QuicOutcome::Connected {
                time,
                datagrams: true,
            } => Some(time),
            _ => None,
        })
        .min();
    let result = race(ws_best, quic_best);
    let winner = result.winner;
    r.race = Some(result);
    if quic_best.is_none() && ws_best.is_some() && !r.quic.is_empty() {
        let (summary, fix) = quic_problem(r);
        out.push(Problem {
            kind: ProblemKind::Quic,
            severity: Severity::Medium,
            summary,
            fix: Some(Fix::new(fix)),
        });
    }
    if ws_best.is_none() && quic_best.is_some() && !r.paths.is_empty() {
        out.push(Problem {
            kind: ProblemKind::WebSocket,
            severity: Severity::Medium,
            summary: format!(
                "{}: the relay's WebSocket transport (TLS on TCP/{}, path {}) does not work",
                r.name,
                r.port,
                r.role.websocket_path()
            ),
            fix: Some(Fix::new(
                "see the problems below for where it stops".to_string(),
            )),
        });
    }
    match (winner, ws_best.is_some() && quic_best.is_some()) {
        (Some(_), true) => Status::Ok,
        (Some(RelayTransport::Quic | RelayTransport::WebSocket), false) => Status::Degraded,
        (None, _) => {
            if !r.paths.is_empty() || r.dns.has_usable_addresses() {
                out.push(Problem {
                    kind: ProblemKind::WebSocket,
                    severity: Severity::High,
                    summary: format!(
                        "{}: neither relay transport connects; peers that need this relay \
                         cannot connect",
                        r.name
                    ),
                    fix: Some(Fix::new(format!(
                        "allow TCP/{0} (TLS, WebSocket) and UDP/{0} (QUIC) to {1}",
                        r.port, r.name
                    ))),
                });
            }
            Status::Blocked
        }
    }
}

fn quic_problem(r: &EndpointReport) -> (String, String) {
    let outcome = r
        .quic
        .iter()
        .map(|q| &q.outcome)
        .find(|o| matches!(o, QuicOutcome::AlpnRefused | QuicOutcome::Connected { .. }));
    match outcome {
        Some(QuicOutcome::AlpnRefused) => (
            format!(
                "{}: QUIC on UDP/{} answers but refuses ALPN nb-quic (not a NetBird relay there)",
                r.name, r.port
            ),
            "check that the relay's QUIC listener is the one on this port (no other QUIC \
             service or UDP load balancer in front)"
                .to_string(),
        ),
        Some(_) => (
            format!(
                "{}: QUIC connects but without datagrams, which the relay needs",
                r.name
            ),
            "update the relay server".to_string(),
        ),
        None => (
            format!(
                "{}: QUIC on UDP/{} does not connect; clients use the WebSocket transport",
                r.name, r.port
            ),
            format!(
                "allow UDP/{} to {} for the faster QUIC transport",
                r.port, r.name
            ),
        ),
    }
}

fn path_problems(r: &EndpointReport, p: &PathFacts, out: &mut Vec<Problem>) {
    let at = where_(p);
    let name = &r.name;
    let port = r.port;
    let severity = Severity::High;
    if let Some(f) = &p.failure {
        let (kind, fix) = match f.step {
            Step::ProxyConnect => (
                ProblemKind::Proxy,
                "check the proxy address (--proxy, HTTPS_PROXY)".to_string(),
            ),
            Step::ProxyTunnel => (
                ProblemKind::Proxy,
                "check the proxy's answer below".to_string(),
            ),
            Step::Tcp if f.timeout => (
                ProblemKind::Tcp,
                format!("a firewall drops TCP/{port} to {name}: allow it"),
            ),
            Step::Tcp => (
                ProblemKind::Tcp,
                format!("TCP/{port} to {name} is refused or unroutable: allow it, check routes"),
            ),
            Step::Tls => (
                ProblemKind::Tls,
                "a middlebox or the server breaks the TLS handshake: allow TLS to the name \
                 without interference"
                    .to_string(),
            ),
            Step::Http => (
                ProblemKind::Grpc,
                "the server or a proxy broke the HTTP exchange: check reverse-proxy \
                 configuration"
                    .to_string(),
            ),
        };
        out.push(Problem {
            kind,
            severity,
            summary: format!(
                "{name} {at}: {} failed{}: {}",
                f.step,
                if f.timeout { " (timeout)" } else { "" },
                f.reason
            ),
            fix: Some(Fix::new(fix)),
        });
    }
    match &p.proxy_reply {
        Some(ConnectVerdict::AuthRequired { challenge }) => out.push(Problem {
            kind: ProblemKind::Proxy,
            severity,
            summary: format!(
                "the proxy wants credentials for {name}:{port} (407{})",
                challenge
                    .as_deref()
                    .map(|c| format!(", {c}"))
                    .unwrap_or_default()
            ),
            fix: Some(Fix::new(
                "give them in the proxy URL (http://user:password@proxy:port); NetBird reads \
                  HTTPS_PROXY the same way"
                    .to_string(),
            )),
        }),
        Some(ConnectVerdict::Refused { status, reason }) => out.push(Problem {
            kind: ProblemKind::Proxy,
            severity,
            summary: format!("the proxy refuses CONNECT to {name}:{port} ({status} {reason})"),
            fix: Some(Fix::new(format!(
                "allow CONNECT to {name}:{port} on the proxy"
            ))),
        }),
        _ => {}
    }
    match &p.trust {
        Some(TrustVerdict::Inspection { issuer }) => {
            let h2 = p.alpn == Some(AlpnVerdict::Ok) || !r.role.is_grpc();
            let breaks = if !r.role.is_grpc() {
                "the relay's WebSocket still works if the client trusts that CA".to_string()
            } else if h2 {
                "NetBird's gRPC pins no certificate, so it works if the client trusts that CA \
                 and the proxy keeps passing HTTP/2"
                    .to_string()
            } else {
                "and the inspecting proxy drops HTTP/2, which breaks gRPC (the client falls \
                 back to WebSocket)"
                    .to_string()
            };
            out.push(Problem {
                kind: ProblemKind::TlsInspection,
                severity: Severity::Medium,
                summary: format!("{name} {at}: TLS inspection by {issuer}; {breaks}"),
                fix: Some(Fix::new(format!(
                    "exempt {name} from TLS inspection on the proxy, or install the \"{issuer}\" \
                     root on every client (stunmap accepts it with --ca)"
                ))),
            });
        }
        Some(t) if !t.is_trusted() => out.push(Problem {
            kind: ProblemKind::Tls,
            severity,
            summary: format!("{name} {at}: certificate not trusted: {}", trust_text(t)),
            fix: Some(Fix::new(
                "install a certificate valid for the name from a public CA on the server \
                  (or pass a private root with --ca)"
                    .to_string(),
            )),
        }),
        _ => {}
    }
    if r.role.is_grpc() {
        match &p.alpn {
            Some(AlpnVerdict::Http11Only | AlpnVerdict::NoAlpn) => {
                let what = if p.alpn == Some(AlpnVerdict::NoAlpn) {
                    "negotiates no ALPN"
                } else {
                    "negotiates only http/1.1"
                };
                out.push(Problem {
                    kind: ProblemKind::Http2,
                    severity: if ws_upgraded(p) {
                        Severity::Medium
                    } else {
                        Severity::High
                    },
                    summary: format!("{name} {at}: the path {what}; gRPC needs HTTP/2 (h2)"),
                    fix: Some(Fix::new(
                        "let HTTP/2 through: on a proxy, enable HTTP/2 to the upstream or \
                          exempt the name from inspection"
                            .to_string(),
                    )),
                });
            }
            Some(AlpnVerdict::Ok) => {
                if let Some(GrpcVerdict::NotGrpc {
                    http_status,
                    content_type,
                }) = &p.grpc
                {
                    out.push(Problem {
                        kind: ProblemKind::Grpc,
                        severity,
                        summary: format!(
                            "{name} {at}: HTTP/2 answered {http_status} ({}) without a gRPC status",
                            content_type.as_deref().unwrap_or("no content type")
                        ),
                        fix: Some(Fix::new(
                            "something other than the gRPC service answers: route gRPC paths \
                              to it on the reverse proxy"
                                .to_string(),
                        )),
                    });
                }
            }
            _ => {}
        }
    }
    if let Some(ws) = &p.websocket {
        ws_problems(r, &at, ws, out);
    }
}

fn ws_problems(r: &EndpointReport, at: &str, ws: &WsFacts, out: &mut Vec<Problem>) {
    let name = &r.name;
    let severity = if r.role.is_grpc() {
        Severity::Info
    } else {
        Severity::Medium
    };
    let (summary, fix) = match &ws.verdict {
        None | Some(WsVerdict::Upgraded) => return,
        Some(WsVerdict::ProxyAuthRequired { .. }) => (
            format!(
                "{name} {at}: WebSocket {} got 407 proxy authentication required",
                ws.path
            ),
            "give the proxy credentials (http://user:password@proxy:port)".to_string(),
        ),
        Some(WsVerdict::Refused {
            status,
            reason,
            server,
            page_title,
        }) => (
            format!(
                "{name} {at}: WebSocket {} refused: {status} {reason}{}{}",
                ws.path,
                server
                    .as_deref()
                    .map(|s| format!(", server {s}"))
                    .unwrap_or_default(),
                page_title
                    .as_deref()
                    .map(|t| format!(", page \"{t}\""))
                    .unwrap_or_default()
            ),
            "allow WebSocket upgrades to this name and path on the proxy / reverse proxy"
                .to_string(),
        ),
        Some(WsVerdict::BadAccept) => (
            format!(
                "{name} {at}: WebSocket {} answered 101 with a wrong Sec-WebSocket-Accept",
                ws.path
            ),
            "a middlebox answers on the server's behalf: exempt the name from it".to_string(),
        ),
        Some(WsVerdict::NotHttp { detail }) => (
            format!(
                "{name} {at}: WebSocket {} got a non-HTTP answer: {detail}",
                ws.path
            ),
            "check what listens on this port".to_string(),
        ),
    };
    out.push(Problem {
        kind: ProblemKind::WebSocket,
        severity,
        summary,
        fix: Some(Fix::new(fix)),
    });
}

/// A short description of a trust verdict.
pub fn trust_text(t: &TrustVerdict) -> String {
    match t {
        TrustVerdict::Public { issuer } => format!("trusted (public CA: {issuer})"),
        TrustVerdict::PrivateCa { issuer } => format!("trusted (private CA: {issuer})"),
        TrustVerdict::Inspection { issuer } => format!("TLS inspection by {issuer}"),
        TrustVerdict::SelfSigned { subject } => format!("self-signed ({subject})"),
        TrustVerdict::NameMismatch { subject } => {
            format!("certificate is for another name ({subject})")
        }
        TrustVerdict::Expired => "certificate expired or not yet valid".to_string(),
        TrustVerdict::Invalid { reason } => format!("invalid chain ({reason})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_read_as_words() {
        let words: Vec<String> = [
            Step::ProxyConnect,
            Step::ProxyTunnel,
            Step::Tcp,
            Step::Tls,
            Step::Http,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            words,
            [
                "TCP connect to the proxy",
                "proxy CONNECT",
                "TCP connect",
                "TLS handshake",
                "HTTP exchange"
            ]
        );
    }

    #[test]
    fn a_failed_step_is_named_in_the_problem() {
        let path = PathFacts {
            address: Some("192.0.2.1:443".parse().unwrap()),
            failure: Some(PathFailure {
                step: Step::Tcp,
                timeout: true,
                reason: "no answer".into(),
            }),
            ..PathFacts::default()
        };
        let r = EndpointReport::new(
            Role::Management,
            "api.example".into(),
            443,
            (
                Lookup::Overridden { addresses: vec![] },
                Lookup::Overridden { addresses: vec![] },
                DnsVerdict::Overridden,
            ),
            vec![path],
            vec![],
        );
        let p = r
            .problems
            .iter()
            .find(|p| p.kind == ProblemKind::Tcp)
            .unwrap();
        assert_eq!(
            p.summary,
            "api.example 192.0.2.1:443: TCP connect failed (timeout): no answer"
        );
        assert_eq!(p.severity, Severity::High);
        assert!(p.fix.as_ref().unwrap().title.contains("drops TCP/443"));
        assert_eq!(r.status, Status::Blocked);
    }
}
