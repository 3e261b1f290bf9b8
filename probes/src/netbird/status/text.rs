//! The detail text of `netbird status -d` (a debug bundle's `status.txt`): one block per peer
//! after `Peers detail:`, then `Management:`, `Signal:`, `Relays:`, `Wireguard port:` …; of
//! several snapshots (`netbird debug for` writes two), the last.

use super::*;

/// Header `netbird debug for` writes before each snapshot.
const SNAPSHOT_HEADER: &str = "----- Netbird";

pub(super) fn parse_text(text: &str) -> Result<(Status, Vec<String>), NetbirdError> {
    let mut notes = Vec::new();
    // The last snapshot is the most recent.
    let snapshots = text.matches(SNAPSHOT_HEADER).count();
    let body = match text.rfind(SNAPSHOT_HEADER) {
        Some(i) => {
            notes.push(format!(
                "status.txt holds {snapshots} snapshots (netbird debug for); the last is read"
            ));
            let rest = text.get(i..).unwrap_or("");
            rest.split_once('\n').map_or("", |(_, b)| b)
        }
        None => text,
    };
    let has = |k: &str| body.lines().any(|l| l.starts_with(k));
    if !(has("Management:") || has("Peers detail:") || has("Signal:")) {
        return Err(NetbirdError::NotStatus {
            reason: "neither JSON nor the text of `netbird status -d` (no Management:, Signal: or Peers detail: line)".into(),
        });
    }
    let mut st = Status {
        format: StatusFormat::DetailText,
        daemon_version: None,
        cli_version: None,
        daemon_status: None,
        management: ServerState::default(),
        signal: ServerState::default(),
        relays: Vec::new(),
        netbird_ip: None,
        wireguard_port: None,
        kernel_interface: None,
        networks: Vec::new(),
        peers: Vec::new(),
    };
    #[derive(PartialEq)]
    enum Section {
        Top,
        Peers,
        Events,
        Relays,
        Other,
    }
    let mut section = Section::Top;
    let mut peer: Option<PeerState> = None;
    let mut dropped = 0usize;
    let mut seen_mgmt = false;
    let mut seen_wg = false;
    for line in body.lines().take(1_000_000) {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let t = line.trim();
        if indent == 0 && !t.is_empty() {
            if let Some(p) = peer.take() {
                push_peer(&mut st.peers, p, &mut dropped);
            }
            let (key, val) = t.split_once(':').map_or((t, ""), |(k, v)| (k, v.trim()));
            section = Section::Other;
            match key {
                "Peers detail" => section = Section::Peers,
                "Events" => section = Section::Events,
                "Relays" => section = Section::Relays,
                "Daemon version" => st.daemon_version = opt(val),
                "CLI version" => st.cli_version = opt(val),
                "Daemon status" => st.daemon_status = opt(val),
                "Management" => {
                    seen_mgmt = true;
                    st.management = text_server(val);
                }
                "Signal" => st.signal = text_server(val),
                "NetBird IP" => st.netbird_ip = opt(val).filter(|v| v != "N/A"),
                "Interface type" => {
                    st.kernel_interface = match val {
                        "Kernel" => Some(true),
                        "Userspace" => Some(false),
                        _ => None,
                    }
                }
                "Wireguard port" => {
                    seen_wg = true;
                    st.wireguard_port = val.parse().ok().filter(|p| *p > 0);
                }
                "Networks" | "Routes" => {
                    st.networks = list(val);
                }
                _ => {}
            }
            continue;
        }
        match section {
            Section::Peers => {
                if indent == 1 && t.ends_with(':') {
                    if let Some(p) = peer.take() {
                        push_peer(&mut st.peers, p, &mut dropped);
                    }
                    let name = t.trim_end_matches(':');
                    peer = Some(PeerState {
                        fqdn: cut(name),
                        netbird_ip: String::new(),
                        status: String::new(),
                        link: PeerLink {
                            connection_type: ConnectionType::None,
                            ice_local: CandidateType::None,
                            ice_remote: CandidateType::None,
                            endpoint_local: None,
                            endpoint_remote: None,
                            relay_address: None,
                        },
                        networks: Vec::new(),
                        key: PeerKey::default(),
                    });
                } else if let Some(p) = peer.as_mut() {
                    text_peer_line(p, t);
                }
            }
            Section::Relays => {
                if let Some(r) = text_relay(t)
                    && st.relays.len() < MAX_URIS
                {
                    st.relays.push(r);
                }
            }
            Section::Top | Section::Events | Section::Other => {}
        }
    }
    if let Some(p) = peer.take() {
        push_peer(&mut st.peers, p, &mut dropped);
    }
    if dropped > 0 {
        notes.push(format!(
            "{} peers; the first {MAX_PEERS} are read",
            dropped + MAX_PEERS
        ));
    }
    if !seen_mgmt {
        notes.push("Management: missing".into());
    }
    if !seen_wg {
        notes.push("Wireguard port: missing (older NetBird versions do not print it)".into());
    }
    if st.relays.is_empty() {
        notes.push("Relays: no STUN/TURN/relay URI listed".into());
    }
    Ok((st, notes))
}

fn push_peer(peers: &mut Vec<PeerState>, mut p: PeerState, dropped: &mut usize) {
    if p.fqdn.is_empty() {
        p.fqdn.clone_from(&p.netbird_ip);
    }
    if peers.len() < MAX_PEERS {
        peers.push(p);
    } else {
        *dropped += 1;
    }
}

fn list(v: &str) -> Vec<String> {
    if v == "-" {
        return Vec::new();
    }
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .take(MAX_URIS * 16)
        .map(cut)
        .collect()
}

/// `Connected to URL`, `Connected`, `Disconnected, reason: …`, `Disconnected`.
fn text_server(v: &str) -> ServerState {
    if let Some(url) = v.strip_prefix("Connected to ") {
        return ServerState {
            url: cut(url.trim()),
            connected: true,
            error: None,
        };
    }
    if v.starts_with("Connected") {
        return ServerState {
            url: String::new(),
            connected: true,
            error: None,
        };
    }
    ServerState {
        url: String::new(),
        connected: false,
        error: v.split_once("reason:").and_then(|(_, r)| opt(r)),
    }
}

/// `[URI] is Available`, `[URI] is Available via quic`, `[URI] is Checking...`,
/// `[URI] is Unavailable, reason: …`.
fn text_relay(t: &str) -> Option<RelayState> {
    let rest = t.strip_prefix('[')?;
    let (uri, tail) = rest.split_once("] is ")?;
    let (available, checking, error, transport) = if let Some(v) = tail.strip_prefix("Available") {
        (
            true,
            false,
            None,
            v.trim().strip_prefix("via ").and_then(opt),
        )
    } else if tail.starts_with("Checking") {
        (false, true, None, None)
    } else {
        (
            false,
            false,
            tail.split_once("reason:").and_then(|(_, r)| opt(r)),
            None,
        )
    };
    Some(RelayState {
        uri: cut(uri),
        available,
        checking,
        error,
        transport,
    })
}

fn text_peer_line(p: &mut PeerState, t: &str) {
    let Some((key, val)) = t.split_once(':') else {
        return;
    };
    let val = val.trim();
    let slash = |v: &str| -> (String, String) {
        match v.split_once('/') {
            Some((a, b)) => (a.trim().to_owned(), b.trim().to_owned()),
            None => (v.to_owned(), String::new()),
        }
    };
    match key.trim() {
        "NetBird IP" => p.netbird_ip = cut(val),
        "Public key" => p.key = PeerKey::new(val),
        "Status" => p.status = cut(val),
        "Connection type" => p.link.connection_type = ConnectionType::parse(val),
        "ICE candidate (Local/Remote)" => {
            let (l, r) = slash(val);
            p.link.ice_local = CandidateType::parse(&l);
            p.link.ice_remote = CandidateType::parse(&r);
        }
        "ICE candidate endpoints (Local/Remote)" => {
            let (l, r) = slash(val);
            p.link.endpoint_local = opt(&l);
            p.link.endpoint_remote = opt(&r);
        }
        "Relay server address" => p.link.relay_address = opt(val),
        "Networks" | "Routes" => p.networks = list(val),
        _ => {}
    }
}
