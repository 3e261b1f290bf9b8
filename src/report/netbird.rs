//! The per-peer part ("why relayed?") of every report that has a NetBird status: its
//! document sections, its Prometheus series and an HTML fragment. `stunmap explain` renders
//! it; `stunmap check` renders the same [`PeerFinding`]s when it has a NetBird status (JSON is
//! their serde form). Every string passes [`clean`] (and HTML escaping) on the way out.

use std::fmt::Write as _;

use probes::netbird::peers::{PeerFinding, Reason};

use super::doc::{Block, Mark, Section, Tone, clean};
use super::html::esc;
use super::prom::Writer;

/// The reason code as it appears in labels and tables.
pub(crate) fn reason_label(r: Reason) -> &'static str {
    match r {
        Reason::Idle => "idle",
        Reason::SignalDown => "signal_down",
        Reason::NoPath => "no_path",
        Reason::NotConnected => "not_connected",
        Reason::UdpBlocked => "udp_blocked",
        Reason::NoLocalSrflx => "no_local_srflx",
        Reason::MappingPerDestination => "mapping_per_destination",
        Reason::PeerNoSrflx => "peer_no_srflx",
        Reason::PeerFilters => "peer_filters",
        Reason::TurnOnly => "turn_only",
        Reason::PathLost => "path_lost",
        Reason::LikelyPeerSide => "likely_peer_side",
        Reason::Unknown => "unknown",
    }
}

fn kind(f: &PeerFinding) -> String {
    use probes::netbird::status::ConnectionType;
    match &f.link.connection_type {
        ConnectionType::P2p => "P2P".into(),
        ConnectionType::Relayed => "Relayed".into(),
        ConnectionType::None => "not connected".into(),
        ConnectionType::Other(o) => o.clone(),
    }
}

/// The peers as document sections: one line when every peer is direct, else one section
/// per peer not connected directly.
pub(crate) fn sections(peers: &[PeerFinding]) -> Vec<Section> {
    if peers.is_empty() {
        return vec![Section::new("Peers").block(Block::Text(
            "every peer NetBird reports is connected directly (P2P)".into(),
        ))];
    }
    peers
        .iter()
        .map(|f| {
            let mut fields: Vec<(String, String)> = vec![(
                "status".into(),
                format!(
                    "{}, {}: ICE {}/{}{}",
                    f.status,
                    kind(f),
                    f.link.ice_local,
                    f.link.ice_remote,
                    f.link.relay_address
                        .as_deref()
                        .map(|r| format!(", relay {r}"))
                        .unwrap_or_default()
                ),
            )];
            if let (Some(l), Some(r)) = (&f.link.endpoint_local, &f.link.endpoint_remote) {
                fields.push(("endpoints".into(), format!("{l} / {r}")));
            }
            if let Some(h) = &f.ice_log {
                fields.push((
                    "log".into(),
                    format!(
                        "{} ICE state changes, {}× Checking → Failed, candidates here {}, from the peer {}",
                        h.changes,
                        h.checking_to_failed,
                        h.local.names(),
                        h.remote.names()
                    ),
                ));
            }
            fields.push(("why".into(), f.detail.clone()));
            if let Some(fix) = &f.fix {
                fields.push(("fix".into(), fix.title.clone()));
                for c in &fix.commands {
                    fields.push((String::new(), c.clone()));
                }
            }
            let tone = match f.reason {
                Reason::Idle => Tone::Neutral,
                _ => Tone::Warn,
            };
            Section::new(format!("Peer {} ({})", f.peer, f.netbird_ip))
                .marked(Mark::new(kind(f).to_lowercase(), tone))
                .block(Block::Fields(fields))
        })
        .collect()
}

fn prom_label(v: &str) -> String {
    clean(v)
}

/// Prometheus series: one `stunmap_netbird_peer_not_direct_info` per peer with its reason, and
/// the count per reason; every series starts with the caller's labels (`head`: check's
/// profile).
pub(crate) fn metrics(w: &mut Writer, peers: &[PeerFinding], head: &[(&str, &str)]) {
    w.family(
        "stunmap_netbird_peer_not_direct_info",
        "gauge",
        "A peer NetBird reports relayed or not connected, with the most likely reason; always 1.",
    );
    for f in peers {
        let (peer, local, remote) = (
            prom_label(&f.peer),
            prom_label(&f.link.ice_local.to_string()),
            prom_label(&f.link.ice_remote.to_string()),
        );
        let mut labels = head.to_vec();
        labels.extend([
            ("peer", peer.as_str()),
            ("reason", reason_label(f.reason)),
            ("ice_local", local.as_str()),
            ("ice_remote", remote.as_str()),
        ]);
        w.sample("stunmap_netbird_peer_not_direct_info", &labels, 1.0);
    }
    w.family(
        "stunmap_netbird_peers_not_direct",
        "gauge",
        "Peers NetBird reports relayed or not connected, by most likely reason.",
    );
    for (l, n) in reason_counts(peers) {
        let mut labels = head.to_vec();
        labels.push(("reason", l));
        w.sample("stunmap_netbird_peers_not_direct", &labels, n as f64);
    }
}

/// How many of `peers` have each reason (by [`reason_label`]), in the order the reasons
/// first appear.
pub(crate) fn reason_counts(peers: &[PeerFinding]) -> Vec<(&'static str, usize)> {
    let mut counts: Vec<(&'static str, usize)> = Vec::new();
    for f in peers {
        let l = reason_label(f.reason);
        match counts.iter_mut().find(|(k, _)| *k == l) {
            Some((_, n)) => *n += 1,
            None => counts.push((l, 1)),
        }
    }
    counts
}

/// An HTML `<section>` with one table row per peer.
#[allow(dead_code)] // `stunmap check --html` renders it once it has a NetBird status
pub(crate) fn html(peers: &[PeerFinding]) -> String {
    let mut o = String::from("<section id=\"netbird-peers\"><h2>Peers not connected directly</h2>");
    if peers.is_empty() {
        o.push_str("<p>Every peer NetBird reports is connected directly (P2P).</p></section>");
        return o;
    }
    o.push_str("<table><tr><th>peer</th><th>status</th><th>ICE local/remote</th><th>relay</th><th>why</th><th>fix</th></tr>");
    for f in peers {
        let _ = write!(
            o,
            "<tr class=\"{}\"><td>{}<br><small>{}</small></td><td>{}, {}</td><td>{}/{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            reason_label(f.reason),
            esc(&f.peer),
            esc(&f.netbird_ip),
            esc(&f.status),
            esc(&kind(f)),
            esc(&f.link.ice_local.to_string()),
            esc(&f.link.ice_remote.to_string()),
            esc(f.link.relay_address.as_deref().unwrap_or("-")),
            esc(&f.detail),
            esc(f.fix.as_ref().map_or("", |x| x.title.as_str())),
        );
    }
    o.push_str("</table></section>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::doc::Doc;
    use probes::netbird::peers::{Measured, explain};
    use probes::netbird::status::parse;

    fn findings() -> Vec<PeerFinding> {
        let (st, _) = parse(include_bytes!(
            "../../tests/fixtures/netbird/status-0.71-relayed-dashdash.json"
        ))
        .unwrap_or_else(|e| unreachable!("{e}"));
        let m = Measured {
            stun_udp: Some(false),
            ..Measured::default()
        };
        explain(&st, &m, None)
    }

    fn text(peers: &[PeerFinding]) -> String {
        let mut d = Doc::new("t", "h");
        for s in sections(peers) {
            d.push(s);
        }
        crate::report::human::render(&d)
    }

    fn prom(peers: &[PeerFinding]) -> String {
        let mut w = Writer::default();
        metrics(&mut w, peers, &[]);
        w.finish()
    }

    #[test]
    fn the_callers_labels_come_first() {
        let mut w = Writer::default();
        metrics(&mut w, &findings(), &[("profile", "p")]);
        let p = w.finish();
        assert!(
            p.contains("stunmap_netbird_peer_not_direct_info{profile=\"p\",peer=\"office-gw.netbird.cloud\",reason=\"no_local_srflx\""),
            "{p}"
        );
        assert!(
            p.contains(
                "stunmap_netbird_peers_not_direct{profile=\"p\",reason=\"no_local_srflx\"} 1"
            ),
            "{p}"
        );
    }

    #[test]
    fn every_format_has_the_peer_and_reason() {
        let f = findings();
        let h = text(&f);
        assert!(
            h.contains("Peer office-gw.netbird.cloud")
                && h.contains("why     no srflx candidate on this side"),
            "{h}"
        );
        let p = prom(&f);
        assert!(p.contains("stunmap_netbird_peer_not_direct_info{peer=\"office-gw.netbird.cloud\",reason=\"no_local_srflx\",ice_local=\"-\",ice_remote=\"-\"} 1"), "{p}");
        assert!(p.contains("stunmap_netbird_peers_not_direct{reason=\"no_local_srflx\"} 1"));
        let x = html(&f);
        assert!(
            x.contains("<tr class=\"no_local_srflx\"><td>office-gw.netbird.cloud"),
            "{x}"
        );
    }

    #[test]
    fn hostile_names_are_escaped() {
        let mut f = findings();
        if let Some(p) = f.first_mut() {
            p.peer = "<script>\"x\"\n\u{1b}]0;t\u{7}".into();
        }
        assert!(
            html(&f).contains("&lt;script&gt;&quot;x&quot;\\u{a}\\u{1b}]0;t\\u{7}"),
            "{}",
            html(&f)
        );
        assert!(
            prom(&f).contains("peer=\"<script>\\\"x\\\"\\\\u{a}"),
            "{}",
            prom(&f)
        );
        let t = text(&f);
        assert!(!t.contains('\u{1b}') && !t.contains('\u{7}'), "{t}");
    }
}
