//! Facts of the probes in words, written once for every report that shows them: the control
//! plane (`stunmap control`, the rows of `stunmap check`), TCP connections and TURN steps
//! (`stun --tcp`, `turn`, `relay`, `audit`).

use probes::control::Role;
use probes::control::assess::{PathFacts, Step, trust_text};
use probes::control::dns::{DnsVerdict, Lookup};
use probes::control::grpc::GrpcVerdict;
use probes::control::http::{ConnectVerdict, WsVerdict};
use probes::control::relay::QuicOutcome;
use probes::control::tls::AlpnVerdict;
use probes::wire::dns::Rcode;

use super::doc::duration;

/// A DNS response code as a resolver's log writes it.
pub(crate) fn rcode(r: Rcode) -> String {
    match r {
        Rcode::NoError => "NOERROR".into(),
        Rcode::FormErr => "FORMERR".into(),
        Rcode::ServFail => "SERVFAIL".into(),
        Rcode::NxDomain => "NXDOMAIN".into(),
        Rcode::Refused => "REFUSED".into(),
        Rcode::Other(n) => format!("RCODE {n}"),
    }
}

/// Addresses separated by spaces ("192.0.2.1 2001:db8::1").
pub(crate) fn addresses(a: &[std::net::IpAddr]) -> String {
    a.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One lookup: the addresses and the time, or how it failed.
pub(crate) fn lookup(l: &Lookup) -> String {
    match l {
        Lookup::Resolved { addresses: a, time } => {
            format!("{} ({})", addresses(a), duration(*time))
        }
        Lookup::NoRecords { time } => format!("no records ({})", duration(*time)),
        Lookup::Failed { rcode: r, time } => format!("{} ({})", rcode(*r), duration(*time)),
        Lookup::Timeout => "timeout".into(),
        Lookup::Overridden { addresses } if addresses.is_empty() => "-".into(),
        Lookup::Overridden { addresses: a } => format!("{} (--resolve)", addresses(a)),
        Lookup::Error { message } => format!("error: {message}"),
    }
}

/// Why a lookup gave no address, in a word or two.
pub(crate) fn lookup_failure(l: &Lookup) -> String {
    match l {
        Lookup::Resolved { .. } => "resolved".into(),
        Lookup::NoRecords { .. } => "no records".into(),
        Lookup::Failed { rcode: r, .. } => rcode(*r),
        Lookup::Timeout => "timeout".into(),
        Lookup::Overridden { .. } => "--resolve".into(),
        Lookup::Error { message } => message.clone(),
    }
}

/// The DNS verdict of an endpoint.
pub(crate) fn dns_verdict(v: &DnsVerdict) -> String {
    match v {
        DnsVerdict::Ok => "ok".into(),
        DnsVerdict::Overridden => "overridden".into(),
        DnsVerdict::Sinkhole { .. } => "SINKHOLE".into(),
        DnsVerdict::DiffersFromPublished { .. } => "DIFFERS from published list".into(),
        DnsVerdict::NxDomain => "NXDOMAIN".into(),
        DnsVerdict::ServerFailure { rcode: r } => rcode(*r),
        DnsVerdict::Timeout => "TIMEOUT".into(),
        DnsVerdict::NoAddresses => "NO ADDRESSES".into(),
        DnsVerdict::Error { message } => format!("error: {message}"),
    }
}

/// A WebSocket upgrade's answer.
pub(crate) fn websocket(v: &WsVerdict) -> String {
    match v {
        WsVerdict::Upgraded => "101 upgraded".into(),
        WsVerdict::BadAccept => "101 with a wrong accept key".into(),
        WsVerdict::ProxyAuthRequired { .. } => "407 proxy authentication required".into(),
        WsVerdict::Refused { status, reason, .. } => format!("refused {status} {reason}"),
        WsVerdict::NotHttp { detail } => format!("not HTTP ({detail})"),
    }
}

/// The step an attempt stopped at.
pub(crate) fn step(s: Step) -> &'static str {
    match s {
        Step::ProxyConnect => "the TCP connect to the proxy",
        Step::ProxyTunnel => "the proxy's CONNECT",
        Step::Tcp => "the TCP connect",
        Step::Tls => "the TLS handshake",
        Step::Http => "the HTTP exchange",
    }
}

/// A QUIC handshake's outcome.
pub(crate) fn quic(o: &QuicOutcome) -> String {
    match o {
        QuicOutcome::Connected { time, datagrams } => format!(
            "QUIC ALPN nb-quic in {}{}",
            duration(*time),
            if *datagrams { "" } else { ", no datagrams" }
        ),
        QuicOutcome::AlpnRefused => "QUIC ALPN nb-quic refused".into(),
        QuicOutcome::Timeout => "no QUIC answer (UDP blocked?)".into(),
        QuicOutcome::Error { message } => format!("QUIC: {message}"),
    }
}

/// One TCP/TLS path of a control-plane endpoint: each step that ran, " · " between them.
pub(crate) fn path(role: Role, p: &PathFacts) -> String {
    let mut parts = Vec::new();
    if let Some(t) = p.connect_time {
        parts.push(format!("tcp {}", duration(t)));
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
            duration(tls.handshake_time)
        ));
    }
    if let Some(t) = &p.trust {
        parts.push(trust_text(t));
    }
    if let (Some(tls), Some(a)) = (&p.tls, &p.alpn) {
        let alpn = tls.alpn.as_deref().unwrap_or("none");
        parts.push(match a {
            AlpnVerdict::Ok => format!("ALPN {alpn}"),
            _ => format!("ALPN {alpn} (h2 needed)"),
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
                websocket(v),
                ws.time
                    .map(|t| format!(" ({})", duration(t)))
                    .unwrap_or_default()
            )),
            (None, Some(f)) => parts.push(format!("{label} {} failed: {}", ws.path, f.reason)),
            (None, None) => {}
        }
    }
    if let Some(f) = &p.failure {
        parts.push(format!(
            "failed at {}{}: {}",
            step(f.step),
            if f.timeout { " (timeout)" } else { "" },
            f.reason
        ));
    }
    if parts.is_empty() {
        "no result".into()
    } else {
        parts.join(" · ")
    }
}

/// How a TCP connection went: "connected in 1.2 ms", "refused", …
pub(crate) fn connect(c: &engine::tcp::ConnectOutcome) -> String {
    use engine::tcp::ConnectOutcome;
    match c {
        ConnectOutcome::Connected { time } => format!("connected in {}", duration(*time)),
        ConnectOutcome::Refused => "connection refused".into(),
        ConnectOutcome::Timeout => "connection timed out".into(),
        ConnectOutcome::Unreachable => "unreachable".into(),
        ConnectOutcome::Error { message } => format!("connection failed: {message}"),
    }
}

/// How a TURN request after Allocate went: "ok (12.3 ms)", "refused: 403 Forbidden", …
pub(crate) fn turn_step(s: &probes::turn::session::StepOutcome) -> String {
    use probes::turn::session::StepOutcome;
    match s {
        StepOutcome::Ok { rtt: Some(rtt) } => format!("ok ({})", duration(*rtt)),
        other => other.to_string(),
    }
}

/// Whether an allocation was given back, for people.
pub(crate) fn release(r: &probes::turn::session::Release) -> String {
    use probes::turn::session::Release;
    match r {
        Release::NotNeeded => "nothing to release".into(),
        Release::Released => "released (Refresh LIFETIME 0)".into(),
        Release::AlreadyGone => "released (the server had already deleted it)".into(),
        Release::Failed { code, reason } => {
            format!("NOT RELEASED: {code} {reason} (it expires with its lifetime)")
        }
        Release::Timeout => {
            "NOT CONFIRMED: no answer to Refresh LIFETIME 0 (it expires with its lifetime)".into()
        }
    }
}
