//! `stunmap check`'s report for people (its [`Doc`]) and for Prometheus (its metrics).

use probes::netbird::Agreement;

use super::model::{CheckReport, NetbirdSection, ProbeKind, Row, Status, Transport};
use crate::app::{Report, RunInfo};
use crate::exit::Outcome;
use crate::report::doc::{
    Bar, Block, Cell, Doc, FixItem, LaneStyle, Mark, PortLane, PortMark, Section, Tone, columns,
    secs,
};
use crate::report::prom::{Writer, flag};
use crate::report::relay::{MEDIAN, P90, loss_family, loss_ratio, rtt_families};

impl Report for CheckReport {
    const SCHEMA: &'static str = super::model::SCHEMA;

    fn outcome(&self) -> Outcome {
        self.verdict.exit_code
    }

    fn document(&self, run: &RunInfo) -> Doc {
        document(self, run)
    }

    fn metrics(&self, run: &RunInfo, w: &mut Writer) -> bool {
        metrics(w, self, run);
        true
    }
}

/// "stun udp/3478", "dns", "tcp-sample tcp".
fn what(r: &Row) -> String {
    if r.probe == ProbeKind::Dns {
        return "dns".into();
    }
    match r.port {
        Some(p) => format!("{} {}/{p}", r.probe.as_str(), transport(r)),
        None => format!("{} {}", r.probe.as_str(), transport(r)),
    }
}

/// A row's transport as reports name it (`dns` for a lookup).
fn transport(r: &Row) -> &'static str {
    r.transport.map_or("dns", probes::Transport::as_str)
}

/// The host, and the address when it is not the host itself.
fn target(r: &Row) -> String {
    match r.address {
        Some(a) if a.to_string() != r.host => format!("{} {a}", r.host),
        _ => r.host.clone(),
    }
}

fn port_map(r: &CheckReport) -> Block {
    let mut lanes = Vec::new();
    let udp: Vec<PortMark> = r
        .rows()
        .filter(|(_, row)| {
            matches!(row.probe, ProbeKind::Stun | ProbeKind::Turn)
                && row.transport == Some(Transport::Udp)
        })
        .filter_map(|(s, row)| {
            let port = row.port?;
            Some(PortMark {
                port,
                mark: Mark::of(row.state),
                label: format!("{} {port}", row.probe.as_str()),
                title: format!(
                    "{} {} {}:{port} {}: {}",
                    s.name,
                    row.probe.as_str(),
                    row.address.map(|a| a.to_string()).unwrap_or_default(),
                    row.state,
                    row.detail
                ),
            })
        })
        .collect();
    if !udp.is_empty() {
        lanes.push(PortLane {
            label: "UDP ports (STUN/TURN): green answered, red blocked".into(),
            style: LaneStyle::Boxes,
            ports: udp,
        });
    }
    for t in &r.tcp_samples {
        lanes.push(PortLane {
            label: format!(
                "TCP {}-{} to {} ({}): {} sampled ports, green open or refused by the server, red filtered",
                t.range_start,
                t.range_end,
                t.host,
                t.address,
                t.ports.len()
            ),
            style: LaneStyle::Ticks {
                start: t.range_start,
                end: t.range_end,
            },
            ports: t
                .ports
                .iter()
                .map(|p| PortMark {
                    port: p.port,
                    mark: Mark::new(
                        p.state.name(),
                        if p.passes() { Tone::Good } else { Tone::Bad },
                    ),
                    label: p.port.to_string(),
                    title: format!(
                        "TCP {}: {}{}",
                        p.port,
                        p.state.name(),
                        if p.stun { ", STUN answered" } else { "" }
                    ),
                })
                .collect(),
        });
    }
    Block::Ports {
        id: "port-map".into(),
        lanes,
    }
}

fn document(r: &CheckReport, run: &RunInfo) -> Doc {
    let v = &r.verdict;
    let mut doc = Doc::new("stunmap check", v.headline.clone());
    doc.mark = Some(Mark::of(v.status));
    doc.summary.push(format!(
        "profile {} ({}), {:.1} s, exit {}",
        r.profile.name,
        r.profile.source,
        run.elapsed_seconds,
        run.exit_code.code()
    ));
    doc.push(Section::new("Port map").block(port_map(r)));
    for s in &r.services {
        let mut sec = Section::new(s.name.clone()).marked(Mark::of(s.state));
        sec.push(Block::Bars(
            s.checks
                .iter()
                .filter_map(|c| {
                    c.rtt_seconds.map(|x| Bar {
                        label: format!("{} {}", what(c), target(c)),
                        seconds: x,
                        tone: Tone::of(c.state),
                    })
                })
                .collect(),
        ));
        sec.push(Block::Table {
            header: columns(["check", "target", "state", "RTT", "detail"]),
            rows: s
                .checks
                .iter()
                .map(|c| {
                    vec![
                        Cell::from(what(c)),
                        Cell::from(target(c)),
                        Cell::from(Mark::of(c.state)),
                        Cell::from(c.rtt_seconds.map(secs).unwrap_or_default()),
                        Cell::from(c.detail.clone()),
                    ]
                })
                .collect(),
        });
        doc.push(sec);
    }
    for t in &r.tcp_samples {
        doc.push(
            Section::new(format!(
                "TCP sample {} {}-{} ({} ports, seed {}): {} open, {} refused, {} filtered, {} unreachable",
                t.address,
                t.range_start,
                t.range_end,
                t.ports.len(),
                t.seed,
                t.open,
                t.refused,
                t.filtered,
                t.unreachable
            ))
            .block(Block::Text(t.summary.clone())),
        );
    }
    if let Some(n) = &r.nat {
        let mut fields = Vec::new();
        for f in [&n.ipv4, &n.ipv6].into_iter().flatten() {
            let mut line = f.nat_type.to_string();
            if let Some(a) = f.public_address {
                line.push_str(&format!(", public address {a}"));
            }
            if let Some(m) = f.mapping {
                line.push_str(&format!(", mapping {}", m.short()));
            }
            if let Some(fl) = f.filtering {
                line.push_str(&format!(", filtering {}", fl.short()));
            }
            fields.push((f.family.to_string(), line));
        }
        doc.push(
            Section::new("NAT")
                .block(Block::Text(n.verdict.headline.clone()))
                .block(Block::Fields(fields)),
        );
    }
    crate::report::paths::sections(&mut doc, &r.paths);
    if let Some(nb) = &r.netbird {
        netbird_sections(&mut doc, nb);
    }
    let relay: Vec<String> = r
        .relay_rtt
        .iter()
        .map(|x| match &x.rtt {
            Some(s) => format!(
                "{} {} {}: median {}, p90 {}, max {} ({} of {} back){}",
                x.service,
                x.transport.as_str(),
                x.server,
                secs(s.median),
                secs(s.p90),
                secs(s.max),
                x.received,
                x.sent,
                x.direct_median_seconds
                    .map(|d| format!(", direct {}", secs(d)))
                    .unwrap_or_default()
            ),
            None => format!(
                "{} {} {}: {}",
                x.service,
                x.transport.as_str(),
                x.server,
                x.error.as_deref().unwrap_or("no result")
            ),
        })
        .collect();
    doc.push(Section::new("Relay RTT").block(Block::List(relay)));
    doc.push(Section::new("Why").block(Block::List(v.reasons.clone())));
    doc.push(
        Section::new("Fixes").block(Block::Fixes(r.fixes.iter().map(FixItem::from).collect())),
    );
    doc.push(Section::new("Notes").block(Block::List(r.notes.clone())));
    doc
}

fn netbird_sections(doc: &mut Doc, nb: &NetbirdSection) {
    let mut fields = vec![("source".to_string(), nb.source.to_string())];
    if let Some(v) = &nb.daemon_version {
        fields.push(("NetBird".into(), v.clone()));
    }
    if let Some(p) = nb.wireguard_port {
        fields.push(("WireGuard port".into(), format!("UDP {p}")));
    }
    let mut sec = Section::new("NetBird: what this client was given").block(Block::Fields(fields));
    sec.push(Block::Table {
        header: columns(["URI", "NetBird", "stunmap", "agreement"]),
        rows: nb
            .uris
            .iter()
            .map(|u| {
                let netbird = match (&u.netbird_error, u.netbird_ok) {
                    (_, true) => "available".to_string(),
                    (Some(e), false) => format!("unavailable: {e}"),
                    (None, false) => "unavailable".to_string(),
                };
                let measured = match &u.measured_detail {
                    Some(d) => format!("{}: {d}", u.measured),
                    None => u.measured.to_string(),
                };
                let mark = match u.agreement {
                    Agreement::Agree => Mark::new("agree", Tone::Good),
                    Agreement::NetbirdOnly | Agreement::StunmapOnly => {
                        Mark::new("disagree", Tone::Bad)
                    }
                    Agreement::Pending => Mark::new("pending", Tone::Neutral),
                    Agreement::NotMeasured => Mark::new("not measured", Tone::Neutral),
                };
                vec![
                    Cell::from(u.uri.clone()),
                    Cell::from(netbird),
                    Cell::from(measured),
                    Cell::from(mark),
                ]
            })
            .collect(),
    });
    sec.push(Block::List(
        nb.uris
            .iter()
            .filter_map(|u| {
                u.note
                    .as_ref()
                    .map(|n| format!("{}: {}; {n}", u.uri, u.agreement))
            })
            .collect(),
    ));
    sec.push(Block::List(nb.notes.clone()));
    doc.push(sec);
    let mut peers = Section::new(if nb.peers.is_empty() {
        "NetBird peers: every peer is connected directly"
    } else {
        "NetBird peers not connected directly"
    });
    peers.push(Block::Table {
        header: columns([
            "peer",
            "connection",
            "ICE local/remote",
            "most likely reason",
        ]),
        rows: nb
            .peers
            .iter()
            .map(|p| {
                vec![
                    Cell::from(format!("{} ({})", p.peer, p.netbird_ip)),
                    Cell::from(p.link.connection_type.to_string()),
                    Cell::from(format!("{} / {}", p.link.ice_local, p.link.ice_remote)),
                    Cell::from(p.detail.clone()),
                ]
            })
            .collect(),
    });
    peers.push(Block::Fixes(
        nb.peers
            .iter()
            .filter_map(|p| p.fix.as_ref().map(|f| FixItem::about(&p.peer, f)))
            .collect(),
    ));
    doc.push(peers);
}

const STATES: [Status; 4] = [
    Status::Ok,
    Status::Degraded,
    Status::Blocked,
    Status::Skipped,
];

/// The check's metrics.
pub(crate) fn metrics(w: &mut Writer, r: &CheckReport, run: &RunInfo) {
    let profile = r.profile.name.as_str();
    let p = [("profile", profile)];
    w.gauge(
        "stunmap_check_success",
        "1 when the check's verdict is ok (a direct P2P path is healthy), else 0.",
        &p,
        flag(r.verdict.status == Status::Ok),
    );
    w.family(
        "stunmap_check_status",
        "gauge",
        "The check's verdict: one series per status, 1 for the current one.",
    );
    for s in [Status::Ok, Status::Degraded, Status::Blocked] {
        w.sample(
            "stunmap_check_status",
            &[("profile", profile), ("status", s.as_str())],
            flag(r.verdict.status == s),
        );
    }
    w.family(
        "stunmap_check_level",
        "gauge",
        "The path prospect behind the verdict (relay-only: no direct path, only a relay): one series per level, 1 for the current one.",
    );
    for (l, name) in crate::report::nat::LEVELS {
        w.sample(
            "stunmap_check_level",
            &[("profile", profile), ("level", name)],
            flag(r.verdict.level == l),
        );
    }
    w.gauge(
        "stunmap_check_exit_code",
        "Exit code of the check (0 ok, 1 degraded, 2 blocked, 130 interrupted).",
        &p,
        f64::from(run.exit_code.code()),
    );
    w.gauge(
        "stunmap_check_duration_seconds",
        "How long the check ran.",
        &p,
        run.elapsed_seconds,
    );
    w.gauge(
        "stunmap_check_timestamp_seconds",
        "When the check started, seconds since the Unix epoch.",
        &p,
        run.started_unix_seconds,
    );
    w.gauge(
        "stunmap_check_interrupted",
        "1 when the check was stopped early (signal or deadline): partial results.",
        &p,
        flag(run.partial()),
    );
    services(w, r, profile);
    samples(w, r, profile);
    nat(w, r, profile);
    crate::report::paths::metrics(w, &r.paths, profile);
    relay(w, r, profile);
    if let Some(nb) = &r.netbird {
        netbird_metrics(w, nb, profile);
    }
}

fn netbird_metrics(w: &mut Writer, nb: &NetbirdSection, profile: &str) {
    w.family(
        "stunmap_netbird_uri_disagreement",
        "gauge",
        "1 when NetBird's own availability of a URI and stunmap's measurement of it disagree.",
    );
    for u in &nb.uris {
        // The URI is the status file's text: capped and escaped like every peer string.
        let uri = crate::report::doc::clean(&u.uri);
        w.sample(
            "stunmap_netbird_uri_disagreement",
            &[("profile", profile), ("uri", &uri), ("role", u.role)],
            flag(matches!(
                u.agreement,
                Agreement::NetbirdOnly | Agreement::StunmapOnly
            )),
        );
    }
    crate::report::netbird::metrics(w, &nb.peers, &[("profile", profile)]);
}

fn services(w: &mut Writer, r: &CheckReport, profile: &str) {
    w.family(
        "stunmap_service_status",
        "gauge",
        "Status of each service of the profile: one series per state, 1 for the current one.",
    );
    for s in &r.services {
        for st in STATES {
            w.sample(
                "stunmap_service_status",
                &[
                    ("profile", profile),
                    ("service", &s.name),
                    ("kind", s.kind.as_str()),
                    ("state", st.as_str()),
                ],
                flag(s.state == st),
            );
        }
    }
    // Each family's samples must stay together: labels first, then one pass per family.
    let mut rows = Vec::new();
    for (s, row) in r.rows() {
        if row.state == Status::Skipped || row.probe == ProbeKind::TcpSample {
            continue;
        }
        let labels: Vec<(&'static str, String)> = vec![
            ("profile", profile.to_string()),
            ("service", s.name.clone()),
            ("kind", s.kind.as_str().to_string()),
            ("probe", row.probe.as_str().to_string()),
            ("transport", transport(row).to_string()),
            ("host", row.host.clone()),
            (
                "address",
                row.address.map(|a| a.to_string()).unwrap_or_default(),
            ),
            ("port", row.port.map(|p| p.to_string()).unwrap_or_default()),
        ];
        rows.push((labels, row));
    }
    w.family(
        "stunmap_probe_success",
        "gauge",
        "1 when a check of a service on a transport and port worked (ok or degraded), 0 when blocked; skipped checks are absent.",
    );
    for (labels, row) in &rows {
        let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        w.sample(
            "stunmap_probe_success",
            &l,
            flag(matches!(row.state, Status::Ok | Status::Degraded)),
        );
    }
    if rows.iter().any(|(_, row)| row.rtt_seconds.is_some()) {
        w.family(
            "stunmap_probe_rtt_seconds",
            "gauge",
            "Round-trip or handshake time of a check: STUN/TURN transaction, TLS handshake, QUIC handshake, DNS answer.",
        );
    }
    for (labels, row) in &rows {
        if let Some(rtt) = row.rtt_seconds {
            let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            w.sample("stunmap_probe_rtt_seconds", &l, rtt);
        }
    }
}

fn samples(w: &mut Writer, r: &CheckReport, profile: &str) {
    if r.tcp_samples.is_empty() {
        return;
    }
    w.family(
        "stunmap_tcp_sample_ports",
        "gauge",
        "Ports of the TCP sample by what the connect found (open, refused by the server, filtered, unreachable).",
    );
    for t in &r.tcp_samples {
        let range = format!("{}-{}", t.range_start, t.range_end);
        for (state, n) in [
            ("open", t.open),
            ("refused", t.refused),
            ("filtered", t.filtered),
            ("unreachable", t.unreachable),
        ] {
            w.sample(
                "stunmap_tcp_sample_ports",
                &[
                    ("profile", profile),
                    ("service", &t.service),
                    ("host", &t.host),
                    ("range", &range),
                    ("state", state),
                ],
                n as f64,
            );
        }
    }
    w.family(
        "stunmap_tcp_sample_range_ports",
        "gauge",
        "Size of the TCP port range the sample was drawn from.",
    );
    for t in &r.tcp_samples {
        let range = format!("{}-{}", t.range_start, t.range_end);
        w.sample(
            "stunmap_tcp_sample_range_ports",
            &[
                ("profile", profile),
                ("service", &t.service),
                ("host", &t.host),
                ("range", &range),
            ],
            f64::from(t.range_end) - f64::from(t.range_start) + 1.0,
        );
    }
}

fn nat(w: &mut Writer, r: &CheckReport, profile: &str) {
    let Some(n) = &r.nat else { return };
    crate::report::nat::info_family(w);
    for f in [&n.ipv4, &n.ipv6].into_iter().flatten() {
        let family = crate::report::nat::family_label(f.family);
        crate::report::nat::info_sample(w, &[("profile", profile), ("family", family)], f);
    }
}

fn relay(w: &mut Writer, r: &CheckReport, profile: &str) {
    let labels: Vec<[(&'static str, String); 4]> = r
        .relay_rtt
        .iter()
        .map(|x| {
            [
                ("profile", profile.to_string()),
                ("service", x.service.clone()),
                ("transport", x.transport.as_str().to_string()),
                ("server", x.server.to_string()),
            ]
        })
        .collect();
    let relays: Vec<_> = r
        .relay_rtt
        .iter()
        .zip(&labels)
        .map(|(x, l)| (x.rtt.as_ref(), l.as_slice()))
        .collect();
    rtt_families(w, &[MEDIAN, P90], &relays);
    let losses: Vec<_> = r
        .relay_rtt
        .iter()
        .zip(&labels)
        .map(|(x, l)| (loss_ratio(x.sent, x.received), l.as_slice()))
        .collect();
    loss_family(w, &losses);
}

#[cfg(test)]
mod tests {
    use probes::netbird::{MeasuredState, UriComparison};

    use super::*;
    use crate::check::model::NetbirdSource;

    /// A URI from the status file reaches the exposition capped and with its control
    /// characters escaped, like the per-peer series.
    #[test]
    fn a_hostile_uri_label_is_cleaned() {
        let uri = format!("stun:a\u{1b}[2J\u{202e}{}", "x".repeat(2_000));
        let nb = NetbirdSection {
            source: NetbirdSource::Stdin,
            daemon_version: None,
            wireguard_port: None,
            uris: vec![UriComparison {
                uri: uri.clone(),
                role: "stun",
                netbird_ok: true,
                netbird_error: None,
                measured: MeasuredState::Failed,
                measured_detail: None,
                agreement: Agreement::NetbirdOnly,
                note: None,
            }],
            peers: Vec::new(),
            notes: Vec::new(),
        };
        let mut w = Writer::default();
        netbird_metrics(&mut w, &nb, "p");
        let text = w.finish();
        let line = text
            .lines()
            .find(|l| l.starts_with("stunmap_netbird_uri_disagreement{"))
            .expect("the series");
        assert!(line.ends_with(" 1") || line.ends_with(" 1.0"), "{line}");
        assert!(
            !line.contains('\u{1b}') && !line.contains('\u{202e}'),
            "{line}"
        );
        assert!(line.contains(r"\\u{1b}[2J\\u{202e}"), "{line}");
        assert!(line.contains("more characters)"), "{line}");
        assert!(line.len() < 700, "{} bytes", line.len());
        assert!(!text.contains(&uri));
    }
}
