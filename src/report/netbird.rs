//! The per-peer section ("why relayed?") in every output format: terminal text, Prometheus
//! series and an HTML fragment. `stunmap explain` prints it; `stunmap check` renders the same
//! [`PeerFinding`]s when it has a NetBird status (JSON is their serde form).

use std::fmt::Write as _;

use probes::netbird::peers::{PeerFinding, Reason};

use crate::cmd::explain::clean;

/// The reason code as it appears in labels and tables.
#[allow(dead_code)] // used by prom/html, which `stunmap check` renders
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
    match &f.connection_type {
        ConnectionType::P2p => "P2P".into(),
        ConnectionType::Relayed => "Relayed".into(),
        ConnectionType::None => "not connected".into(),
        ConnectionType::Other(o) => clean(o),
    }
}

/// The section as terminal text.
pub(crate) fn human(peers: &[PeerFinding]) -> String {
    let mut o = String::new();
    if peers.is_empty() {
        o.push_str("Peers: every peer NetBird reports is connected directly (P2P)\n");
        return o;
    }
    let _ = writeln!(o, "Peers not connected directly ({})", peers.len());
    for f in peers {
        let _ = writeln!(
            o,
            "  {} ({}) {}, {}: ICE {}/{}{}",
            clean(&f.peer),
            clean(&f.netbird_ip),
            clean(&f.status),
            kind(f),
            f.ice_local,
            f.ice_remote,
            f.relay_address
                .as_deref()
                .map(|r| format!(", relay {}", clean(r)))
                .unwrap_or_default()
        );
        if let (Some(l), Some(r)) = (&f.endpoint_local, &f.endpoint_remote) {
            let _ = writeln!(o, "    endpoints {} / {}", clean(l), clean(r));
        }
        if let Some(h) = &f.ice_log {
            let _ = writeln!(
                o,
                "    log: {} ICE state changes, {}× Checking → Failed, candidates here {}, from the peer {}",
                h.changes,
                h.checking_to_failed,
                h.local.names(),
                h.remote.names()
            );
        }
        let _ = writeln!(o, "    why: {}", clean(&f.detail));
        if let Some(fix) = &f.fix {
            let _ = writeln!(o, "    fix: {}", clean(&fix.title));
            for c in &fix.commands {
                let _ = writeln!(o, "         {}", clean(c));
            }
        }
    }
    o
}

/// Print [`human`].
pub(crate) fn print_peers(peers: &[PeerFinding]) {
    print!("{}", human(peers));
}

#[allow(dead_code)]
fn prom_esc(v: &str) -> String {
    let mut o = String::with_capacity(v.len());
    for c in clean(v).chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            c => o.push(c),
        }
    }
    o
}

/// Prometheus series: one `stunmap_netbird_peer_not_direct_info` per peer with its reason, and
/// the count per reason.
#[allow(dead_code)] // `stunmap check --prom` renders it once it has a NetBird status
pub(crate) fn prom(peers: &[PeerFinding]) -> String {
    let mut o = String::new();
    o.push_str("# HELP stunmap_netbird_peer_not_direct_info A peer NetBird reports relayed or not connected, with the most likely reason.\n");
    o.push_str("# TYPE stunmap_netbird_peer_not_direct_info gauge\n");
    for f in peers {
        let _ = writeln!(
            o,
            "stunmap_netbird_peer_not_direct_info{{peer=\"{}\",reason=\"{}\",ice_local=\"{}\",ice_remote=\"{}\"}} 1",
            prom_esc(&f.peer),
            reason_label(f.reason),
            prom_esc(&f.ice_local.to_string()),
            prom_esc(&f.ice_remote.to_string())
        );
    }
    o.push_str("# HELP stunmap_netbird_peers_not_direct Peers NetBird reports relayed or not connected, by reason.\n");
    o.push_str("# TYPE stunmap_netbird_peers_not_direct gauge\n");
    let mut counts: Vec<(&str, u32)> = Vec::new();
    for f in peers {
        let l = reason_label(f.reason);
        match counts.iter_mut().find(|(k, _)| *k == l) {
            Some((_, n)) => *n += 1,
            None => counts.push((l, 1)),
        }
    }
    for (l, n) in counts {
        let _ = writeln!(o, "stunmap_netbird_peers_not_direct{{reason=\"{l}\"}} {n}");
    }
    o
}

#[allow(dead_code)]
fn html_esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in clean(s).chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
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
            html_esc(&f.peer),
            html_esc(&f.netbird_ip),
            html_esc(&f.status),
            html_esc(&kind(f)),
            html_esc(&f.ice_local.to_string()),
            html_esc(&f.ice_remote.to_string()),
            html_esc(f.relay_address.as_deref().unwrap_or("-")),
            html_esc(&f.detail),
            html_esc(f.fix.as_ref().map_or("", |x| x.title.as_str())),
        );
    }
    o.push_str("</table></section>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn every_format_has_the_peer_and_reason() {
        let f = findings();
        let h = human(&f);
        assert!(
            h.contains("office-gw.netbird.cloud")
                && h.contains("why: no srflx candidate on this side"),
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
            p.peer = "<script>\"x\"\n".into();
        }
        assert!(html(&f).contains("&lt;script&gt;&quot;x&quot;?"));
        assert!(prom(&f).contains("peer=\"<script>\\\"x\\\"?\""));
        assert!(!human(&f).contains('\u{1b}'));
    }
}
