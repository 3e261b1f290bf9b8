//! The path facts (docs/paths.md) as document sections and Prometheus metrics: which way the
//! probes went, the captive portal, the path MTU and MSS, the gateway (double NAT, the proven
//! port mapping). `check` renders them; any report that carries a [`PathsSection`] can.

use probes::finding::Severity;
use probes::path::captive::{HttpOutcome, Portal};
use probes::path::double_nat::NatLayers;
use probes::path::mapping::{Deletion, MapResult, Verification};
use probes::path::pmtu::{Failure, PmtuReport};
use probes::path::route::Egress;

use crate::check::model::PathsSection;
use crate::report::doc::{Block, Doc, Mark, Section, Tone};
use crate::report::prom::{Writer, flag};

fn tone(s: Severity) -> Tone {
    match s {
        Severity::Info => Tone::Good,
        Severity::Low | Severity::Medium => Tone::Warn,
        Severity::High | Severity::Critical => Tone::Bad,
    }
}

fn mark_of(p: &PathsSection, kind: probes::path::PathKind) -> Option<Mark> {
    p.findings
        .iter()
        .filter(|f| f.kind == kind)
        .map(|f| f.severity)
        .max()
        .map(|s| Mark::new(s.as_str(), tone(s)))
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_else(|| "-".into())
}

fn http_line(o: &HttpOutcome) -> String {
    match o {
        HttpOutcome::Answered(a) => {
            let mut s = format!("HTTP {}", a.status);
            if let Some(l) = &a.location {
                s.push_str(&format!(", Location {l}"));
            }
            if let Some(t) = &a.title {
                s.push_str(&format!(", page \"{t}\""));
            } else if a.html {
                s.push_str(", an HTML page");
            }
            s
        }
        HttpOutcome::ConnectFailed { error } => format!("connect failed: {error}"),
        HttpOutcome::Timeout => "no answer in time".into(),
        HttpOutcome::NotHttp { error } => format!("not HTTP: {error}"),
    }
}

fn pmtu_fields(r: &PmtuReport) -> Vec<(String, String)> {
    let failure = match r.failure {
        Failure::None => "none up to the largest size",
        Failure::Icmp => "ICMP names the limit (path MTU discovery works)",
        Failure::LocalInterface => "the local interface",
        Failure::BlackHole => "silent loss: a PMTU black hole",
        Failure::NoAnswer => "no answer at all",
    };
    let mut f = vec![
        (
            "largest with DF".to_string(),
            r.largest_passed
                .map(|x| format!("{x} bytes"))
                .unwrap_or_else(|| "-".into()),
        ),
        (
            "smallest failing".to_string(),
            r.smallest_failed
                .map(|x| format!("{x} bytes"))
                .unwrap_or_else(|| "-".into()),
        ),
        ("larger ones".to_string(), failure.to_string()),
    ];
    if let Some(m) = r.icmp_mtu {
        f.push((
            "ICMP".into(),
            format!("next-hop MTU {m} from {}", opt(r.icmp_from)),
        ));
    }
    if let Some(d) = r.down_fragment {
        f.push((
            "way back".into(),
            format!("answers arrive in fragments of {d} bytes"),
        ));
    }
    if r.server_pads == Some(false) {
        f.push((
            "way back".into(),
            "not measured: the server does not pad its answers".into(),
        ));
    }
    f.push((
        "WireGuard".into(),
        format!(
            "{}-byte packets {}",
            r.wireguard_outer,
            match r.wireguard_fits {
                Some(true) => "fit",
                Some(false) => "do NOT fit",
                None => "unknown",
            }
        ),
    ));
    f
}

/// The path sections of a report.
pub(crate) fn sections(doc: &mut Doc, p: &PathsSection) {
    use probes::path::PathKind as K;
    let mut route = Section::new("Paths: which way the probes went");
    if let Some(m) = mark_of(p, K::Tunnel) {
        route = route.marked(m);
    }
    route.push(Block::List(p.routes.iter().map(|r| r.sentence()).collect()));
    route.push(Block::Fields(
        p.binding
            .iter()
            .map(|b| {
                let mut parts = Vec::new();
                if let Some(i) = &b.interface {
                    parts.push(format!("interface {i}"));
                }
                if let Some(a) = b.address {
                    parts.push(format!("address {a}"));
                }
                if let Some(port) = b.source_port {
                    parts.push(format!("source port {port}"));
                }
                (
                    format!("{} bound", b.family),
                    format!(
                        "{}{}",
                        parts.join(", "),
                        if b.automatic {
                            " (chosen to avoid the tunnel)"
                        } else {
                            ""
                        }
                    ),
                )
            })
            .collect(),
    ));
    doc.push(route);

    if let Some(c) = &p.captive_portal {
        let tone = match c.portal {
            Portal::Detected { .. } => Tone::Bad,
            Portal::NotSeen { .. } => Tone::Good,
            Portal::Unknown { .. } => Tone::Neutral,
        };
        let word = match c.portal {
            Portal::Detected { .. } => "portal",
            Portal::NotSeen { .. } => "none",
            Portal::Unknown { .. } => "unknown",
        };
        doc.push(
            Section::new("Captive portal")
                .marked(Mark::new(word, tone))
                .block(Block::Text(c.portal.to_string()))
                .block(Block::Fields(vec![
                    ("request".into(), format!("GET {} ({})", c.url, c.address)),
                    ("answer".into(), http_line(&c.http)),
                ])),
        );
    }

    if !p.path_mtu.is_empty() || p.tcp_mss.is_some() || p.relay_path.is_some() {
        let mut s = Section::new("Path MTU");
        if let Some(m) = mark_of(p, K::PathMtu) {
            s = s.marked(m);
        }
        for r in &p.path_mtu {
            s.push(Block::Text(probes::path::pmtu::judge(r).1));
            s.push(Block::Fields(pmtu_fields(r)));
        }
        if let Some(m) = &p.tcp_mss {
            let line = match (m.mss, m.implied_mtu, &m.error) {
                (Some(mss), Some(mtu), _) => format!(
                    "TCP to {}: MSS {mss}, so segments of up to {mtu} bytes before TCP options (a middlebox that clamps the MSS shows here as a value below what the path carries)",
                    m.server
                ),
                (_, _, Some(e)) => format!("TCP to {}: no MSS ({e})", m.server),
                _ => format!("TCP to {}: no MSS", m.server),
            };
            s.push(Block::Text(line));
        }
        if let Some(r) = &p.relay_path {
            s.push(Block::Text(match &r.error {
                Some(e) => format!("TURN relay {}: not measured ({e})", r.server),
                None => format!(
                    "TURN relay {}: {} of {} datagrams of {} bytes (a full WireGuard packet) came back through the relay",
                    r.server, r.received, r.sent, r.payload
                ),
            }));
        }
        doc.push(s);
    }

    if let Some(g) = &p.gateway {
        let mut s = Section::new(format!("Gateway {}", g.gateway));
        if let Some(m) = [K::DoubleNat, K::PortMapping]
            .into_iter()
            .filter_map(|k| mark_of(p, k))
            .max_by_key(|m| match m.tone {
                Tone::Bad => 3,
                Tone::Warn => 2,
                Tone::Good => 1,
                Tone::Neutral => 0,
            })
        {
            s = s.marked(m);
        }
        let protocols = g.port_mapping.protocols();
        let mut fields = vec![(
            "port mapping".to_string(),
            if protocols.is_empty() {
                "none offered".to_string()
            } else {
                protocols.join(", ")
            },
        )];
        let e = &g.external;
        let mut ext = Vec::new();
        if let Some(a) = e.nat_pmp {
            ext.push(format!("{a} (NAT-PMP)"));
        }
        if e.nat_pmp_no_public {
            ext.push("none (NAT-PMP: network failure)".into());
        }
        if let Some(a) = e.pcp {
            ext.push(format!("{a} (PCP)"));
        }
        match e.upnp {
            Some(Some(a)) => ext.push(format!("{a} (UPnP IGD)")),
            Some(None) => ext.push("empty (UPnP IGD)".into()),
            None => {}
        }
        fields.push((
            "external address".into(),
            if ext.is_empty() {
                "not reported".into()
            } else {
                ext.join(", ")
            },
        ));
        let layers = match &g.double_nat {
            NatLayers::Single { external } => {
                format!("one NAT (the gateway's {external} is public)")
            }
            NatLayers::Double { kind, public, .. } => {
                format!("double NAT: {kind} (the internet sees {})", opt(*public))
            }
            NatLayers::Unknown { why } => format!("unknown: {why}"),
        };
        fields.push(("NAT layers".into(), layers));
        if let Some(m) = &g.mapping {
            let result = match &m.result {
                MapResult::Created {
                    external_port,
                    external_ip,
                    lifetime,
                } => format!(
                    "created: external {}:{external_port} for {lifetime} s",
                    opt(*external_ip)
                ),
                MapResult::Refused { code, meaning } => format!("refused ({code}: {meaning})"),
                MapResult::NoAnswer => "no answer".into(),
                MapResult::NotRequested { why } => format!("not requested: {why}"),
            };
            fields.push((
                format!("{} mapping", m.protocol),
                format!("{} for {}", result, m.internal),
            ));
            fields.push((
                "proof".into(),
                match &m.verification {
                    Verification::Reached { from } => {
                        format!("unsolicited traffic from {from} arrived")
                    }
                    Verification::NotReached => "unsolicited traffic did NOT arrive".into(),
                    Verification::NotTried { why } => format!("not tried: {why}"),
                },
            ));
            fields.push((
                "deletion".into(),
                match &m.deletion {
                    Deletion::Confirmed => "confirmed".into(),
                    Deletion::Unconfirmed { why } => format!("NOT confirmed: {why}"),
                    Deletion::NotNeeded => "nothing to delete".into(),
                },
            ));
        }
        s.push(Block::Fields(fields));
        doc.push(s);
    }
}

/// The path metrics.
pub(crate) fn metrics(w: &mut Writer, p: &PathsSection, profile: &str) {
    if !p.routes.is_empty() {
        w.family(
            "stunmap_path_through_tunnel",
            "gauge",
            "1 when the probes to a destination went through a VPN tunnel (the results describe the tunnel), else 0.",
        );
        for r in &p.routes {
            let dest = r.dest.to_string();
            let decision = match &r.egress {
                Egress::Route => "route",
                Egress::AvoidedTunnel { .. } => "avoided-tunnel",
                Egress::ThroughTunnel { .. } => "through-tunnel",
                Egress::UserBound { .. } => "user-bound",
                Egress::NoRoute { .. } => "no-route",
            };
            w.sample(
                "stunmap_path_through_tunnel",
                &[
                    ("profile", profile),
                    ("destination", &dest),
                    ("interface", r.route_interface.as_deref().unwrap_or("")),
                    ("decision", decision),
                ],
                flag(r.through_tunnel()),
            );
        }
    }
    if let Some(c) = &p.captive_portal
        && !matches!(c.portal, Portal::Unknown { .. })
    {
        w.gauge(
            "stunmap_captive_portal",
            "1 when a captive portal answered the plain HTTP request, 0 when the host answered itself.",
            &[("profile", profile), ("url", &c.url)],
            flag(c.portal.detected()),
        );
    }
    let measured: Vec<&PmtuReport> = p
        .path_mtu
        .iter()
        .filter(|r| r.largest_passed.is_some())
        .collect();
    if !measured.is_empty() {
        let per_server = |w: &mut Writer, name, help, value: fn(&PmtuReport) -> f64| {
            w.family(name, "gauge", help);
            for r in &measured {
                let server = r.server.to_string();
                w.sample(name, &[("profile", profile), ("server", &server)], value(r));
            }
        };
        per_server(
            w,
            "stunmap_path_mtu_bytes",
            "Largest IP packet that reached the STUN server and back with DF set.",
            |r| f64::from(r.largest_passed.unwrap_or(0)),
        );
        per_server(
            w,
            "stunmap_path_mtu_black_hole",
            "1 when larger datagrams vanished without an ICMP error (a PMTU black hole).",
            |r| flag(r.failure == Failure::BlackHole),
        );
        per_server(
            w,
            "stunmap_path_wireguard_fits",
            "1 when WireGuard's outer packets (1340 bytes IPv4, 1360 IPv6, for NetBird's 1280-byte inner MTU) pass the path.",
            |r| flag(r.wireguard_fits == Some(true)),
        );
    }
    if let Some(m) = &p.tcp_mss
        && let Some(mss) = m.mss
    {
        w.family(
            "stunmap_tcp_mss_bytes",
            "gauge",
            "The MSS of a TCP connection to the TURN server (lower than the path allows: a middlebox clamps it).",
        );
        let server = m.server.to_string();
        w.sample(
            "stunmap_tcp_mss_bytes",
            &[("profile", profile), ("server", &server)],
            f64::from(mss),
        );
    }
    if let Some(r) = &p.relay_path
        && r.sent > 0
    {
        w.family(
            "stunmap_relay_path_loss_ratio",
            "gauge",
            "Fraction of WireGuard-sized datagrams sent through the TURN relay that did not come back.",
        );
        let server = r.server.to_string();
        w.sample(
            "stunmap_relay_path_loss_ratio",
            &[("profile", profile), ("server", &server)],
            f64::from(r.sent.saturating_sub(r.received)) / f64::from(r.sent),
        );
    }
    if let Some(g) = &p.gateway {
        let gw = g.gateway.to_string();
        if !matches!(g.double_nat, NatLayers::Unknown { .. }) {
            w.gauge(
                "stunmap_double_nat",
                "1 when a NAT sits beyond the gateway (carrier-grade NAT, a router behind a router).",
                &[("profile", profile), ("gateway", &gw)],
                flag(g.double_nat.is_double()),
            );
        }
        if let Some(m) = &g.mapping
            && matches!(m.result, MapResult::Created { .. })
        {
            w.gauge(
                "stunmap_port_mapping_proven",
                "1 when a short-lived port mapping on the gateway let unsolicited traffic in.",
                &[
                    ("profile", profile),
                    ("gateway", &gw),
                    ("protocol", m.protocol),
                ],
                flag(matches!(m.verification, Verification::Reached { .. })),
            );
            w.gauge(
                "stunmap_port_mapping_deleted",
                "1 when the gateway confirmed the deletion of the test mapping.",
                &[
                    ("profile", profile),
                    ("gateway", &gw),
                    ("protocol", m.protocol),
                ],
                flag(m.deletion == Deletion::Confirmed),
            );
        }
    }
}
