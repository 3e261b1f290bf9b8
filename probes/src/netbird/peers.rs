//! Why is this peer relayed? One reason per relayed or unconnected peer, from what NetBird
//! reports for it (connection type, ICE candidate types, relay address), what its log says
//! (ICE state changes, candidate types gathered and received: [`super::log`]) and what this run
//! measured of this network ([`Measured`]).
//!
//! The rules follow ICE (RFC 8445): a direct path needs a usable candidate on each side — for
//! peers behind NAT a server-reflexive (srflx) one, learnt from STUN (RFC 8445 §5.1.1.2) — and
//! connectivity checks that get through both NATs' filters (RFC 4787 §5), which in turn needs
//! endpoint-independent mapping on at least the filtering side (see
//! [`crate::nat::pair_outcome`]). The first rule that fits gives the reason.

use serde::{Deserialize, Serialize};

use super::log::{IceHistory, PeerIce};
use super::status::{CandidateType, ConnectionType, PeerLink, PeerState, Status};
use super::uri::{self, Scheme};
use crate::finding::Fix;
use crate::nat::{Mapping, NatType, PairOutcome, pair_outcome};

/// What this run measured of this network. Every field is optional: `None` is "not measured".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measured {
    /// This side's NAT class (mapping and filtering, or UDP blocked), RFC 4787 / RFC 5780.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<NatType>,
    /// Whether a UDP Binding to any STUN server answered (RFC 8489).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stun_udp: Option<bool>,
    /// Whether a TURN allocation worked on any transport (RFC 8656).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_ok: Option<bool>,
    /// Whether the NetBird relay (WebSocket/TLS or QUIC) answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_ok: Option<bool>,
}

/// The reason, as a code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Lazy connection: no traffic has asked for the peer yet.
    Idle,
    /// Signal is down: offers and candidates cannot be exchanged.
    SignalDown,
    /// Not connected, and no relay is reachable either.
    NoPath,
    /// Not connected; nothing says why (the peer may be offline).
    NotConnected,
    /// UDP from this network is blocked.
    UdpBlocked,
    /// No server-reflexive candidate on this side: UDP to STUN is blocked.
    NoLocalSrflx,
    /// This side's NAT maps per destination (address- or port-dependent mapping).
    MappingPerDestination,
    /// The peer offered no server-reflexive candidate.
    PeerNoSrflx,
    /// Both sides have srflx candidates and the checks still failed: the peer's side filters.
    PeerFilters,
    /// ICE worked only through a TURN relay candidate.
    TurnOnly,
    /// ICE found a path and lost it again.
    PathLost,
    /// This side punches; the peer's network is the likely cause.
    LikelyPeerSide,
    /// ICE did not complete and nothing measured says why.
    Unknown,
}

/// The explanation for one peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerFinding {
    /// Peer name (FQDN or NetBird IP).
    pub peer: String,
    /// NetBird IP.
    pub netbird_ip: String,
    /// NetBird's status for it.
    pub status: String,
    /// How NetBird reports it connected (serialized as fields of the finding's own).
    #[serde(flatten)]
    pub link: PeerLink,
    /// From the client log, when one was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ice_log: Option<PeerIce>,
    /// Reason code.
    pub reason: Reason,
    /// One line.
    pub detail: String,
    /// What to change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<Fix>,
}

fn is_reflexive(t: &CandidateType) -> bool {
    matches!(t, CandidateType::Srflx | CandidateType::Prflx)
}

/// The STUN endpoints the client was given, for the fix text (`host:port, …`).
fn stun_targets(st: &Status) -> String {
    let v: Vec<String> = st
        .relays
        .iter()
        .filter_map(|r| uri::parse(&r.uri, false).ok())
        .filter(|u| u.scheme == Scheme::Stun)
        .map(|u| format!("{}:{}", u.host, u.port))
        .take(4)
        .collect();
    if v.is_empty() {
        "the STUN servers (UDP 80, 443, 3478, 5555)".into()
    } else {
        v.join(", ")
    }
}

fn fix_stun(st: &Status) -> Fix {
    Fix {
        title: format!("Allow outbound UDP to {} so ICE learns this side's public address", stun_targets(st)),
        commands: vec![
            "nft add rule inet filter output udp dport { 80, 443, 3478, 5555 } accept".into(),
            "ufw allow out proto udp to any port 3478".into(),
        ],
        caveat: Some("on a perimeter firewall add the same as forward rules; `stunmap check` shows which STUN ports answer".into()),
    }
}

fn fix_udp() -> Fix {
    Fix {
        title: "Allow outbound UDP to any port, so WireGuard and ICE can reach peers directly"
            .into(),
        commands: vec![
            "nft add rule inet filter output meta l4proto udp accept".into(),
            "ufw allow out proto udp to any".into(),
        ],
        caveat: Some("without it every peer stays on the relay".into()),
    }
}

fn fix_mapping() -> Fix {
    Fix {
        title: "Get endpoint-independent mapping on this side's NAT (RFC 4787 REQ-1), or a port forward for the WireGuard port".into(),
        commands: vec![
            "# Linux router: masquerade without --random-fully".into(),
            "iptables -t nat -A POSTROUTING -o <wan> -j MASQUERADE".into(),
            "# or forward UDP <wireguard port> on the router to this host".into(),
        ],
        caveat: Some("CGNATs and managed firewalls often cannot be changed: then the relay is the path".into()),
    }
}

fn fix_signal(st: &Status) -> Fix {
    let host = uri::parse(&st.signal.url, true)
        .map(|u| format!("{}:{}", u.host, u.port))
        .unwrap_or_else(|_| "the signal server".into());
    Fix {
        title: format!("Allow outbound TCP to {host} (gRPC over TLS)"),
        commands: vec![
            "stunmap control <signal host>   # DNS, TLS, ALPN, gRPC step by step".into(),
        ],
        caveat: None,
    }
}

fn fix_relay() -> Fix {
    Fix {
        title: "Allow outbound TCP 443 (and UDP 443 for QUIC) to the relay the status names".into(),
        commands: vec![
            "nft add rule inet filter output tcp dport 443 accept".into(),
            "stunmap control <relay host>   # TLS, WebSocket upgrade and QUIC".into(),
        ],
        caveat: None,
    }
}

fn fix_peer() -> Fix {
    Fix {
        title: "Check the peer's network: run `stunmap check` (or `stunmap pair` with this host) on the peer".into(),
        commands: vec!["stunmap check   # on the peer: its NAT class and which UDP paths are open".into()],
        caveat: None,
    }
}

fn relay_reachable(st: &Status, m: &Measured) -> bool {
    if m.relay_ok == Some(true) || m.turn_ok == Some(true) {
        return true;
    }
    st.relays.iter().any(|r| {
        r.available
            && uri::parse(&r.uri, false).is_ok_and(|u| {
                matches!(
                    u.scheme,
                    Scheme::Rels | Scheme::Rel | Scheme::Turn | Scheme::Turns
                )
            })
    })
}

fn per_destination(nat: Option<NatType>) -> Option<NatType> {
    match nat {
        Some(
            t @ NatType::Udp {
                mapping:
                    Mapping::AddressDependent
                    | Mapping::AddressAndPortDependent
                    | Mapping::VariesByDestination,
                ..
            },
        ) => Some(t),
        _ => None,
    }
}

/// Explain every peer that is relayed or not connected. Direct (P2P) peers get no finding.
pub fn explain(st: &Status, m: &Measured, ice: Option<&IceHistory>) -> Vec<PeerFinding> {
    st.peers
        .iter()
        .filter(|p| !(p.connected() && p.link.connection_type == ConnectionType::P2p))
        .map(|p| {
            let hist = ice.and_then(|h| h.of(&p.key));
            let (reason, detail, fix) = reason_for(st, p, m, hist, ice.is_some());
            PeerFinding {
                peer: p.fqdn.clone(),
                netbird_ip: p.netbird_ip.clone(),
                status: p.status.clone(),
                link: p.link.clone(),
                ice_log: hist.cloned(),
                reason,
                detail,
                fix,
            }
        })
        .collect()
}

fn failed_text(h: Option<&PeerIce>) -> String {
    match h {
        Some(h) if h.checking_to_failed > 0 => {
            format!(" ({}× Checking → Failed in the log)", h.checking_to_failed)
        }
        _ => String::new(),
    }
}

fn reason_for(
    st: &Status,
    p: &PeerState,
    m: &Measured,
    h: Option<&PeerIce>,
    log_read: bool,
) -> (Reason, String, Option<Fix>) {
    let tried_ice = h.is_some_and(|h| h.checking_to_failed > 0 || h.changes > 0);
    if !p.connected() {
        if p.status.eq_ignore_ascii_case("idle") {
            return (
                Reason::Idle,
                "idle: lazy connection, opened when traffic for the peer appears (not a fault)"
                    .into(),
                None,
            );
        }
        if !st.signal.connected {
            let why = st
                .signal
                .error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            return (
                Reason::SignalDown,
                format!(
                    "signal is not connected{why}: the peers cannot exchange offers and candidates"
                ),
                Some(fix_signal(st)),
            );
        }
        if !relay_reachable(st, m) {
            return (
                Reason::NoPath,
                format!(
                    "not connected ({}): no direct path and no relay or TURN server is available",
                    p.status
                ),
                Some(fix_relay()),
            );
        }
        if !tried_ice {
            return (
                Reason::NotConnected,
                format!(
                    "not connected ({}) while signal and a relay work: the peer is probably offline or not answering offers",
                    p.status
                ),
                None,
            );
        }
    }
    let failed = failed_text(h);
    if m.nat == Some(NatType::UdpBlocked) {
        return (
            Reason::UdpBlocked,
            format!(
                "UDP from this network is blocked{failed}: no direct path; only the relay over TCP works"
            ),
            Some(fix_udp()),
        );
    }
    let log_local = h.map(|h| h.local).unwrap_or_default();
    let log_remote = h.map(|h| h.remote).unwrap_or_default();
    let local_srflx = log_local.srflx || log_local.prflx || is_reflexive(&p.link.ice_local);
    let remote_srflx = log_remote.srflx || log_remote.prflx || is_reflexive(&p.link.ice_remote);
    if m.stun_udp == Some(false) || (!log_local.is_empty() && !log_local.srflx) {
        let seen = if log_local.is_empty() {
            String::new()
        } else {
            format!(" (the log shows only {} candidates)", log_local.names())
        };
        return (
            Reason::NoLocalSrflx,
            format!(
                "no srflx candidate on this side{seen}: UDP to the STUN server is blocked{failed}"
            ),
            Some(fix_stun(st)),
        );
    }
    if let Some(t) = per_destination(m.nat) {
        let vs = pair_outcome(t, NatType::PORT_RESTRICTED_CONE);
        let peer_part = if vs == PairOutcome::Relayed {
            "and a peer that filters per address and port (most home routers) cannot answer it: no direct path"
        } else {
            "so only a peer whose NAT does not filter can reach it"
        };
        return (
            Reason::MappingPerDestination,
            format!(
                "this side's NAT maps per destination ({t}): the srflx address the peer learns is not the one its checks would need, {peer_part}{failed}"
            ),
            Some(fix_mapping()),
        );
    }
    if !log_remote.is_empty() && !remote_srflx {
        return (
            Reason::PeerNoSrflx,
            format!(
                "the peer offered no srflx candidate (only {}){failed}: UDP to STUN is blocked on the peer's network",
                log_remote.names()
            ),
            Some(fix_peer()),
        );
    }
    if local_srflx && remote_srflx {
        let here = match m.nat {
            Some(t @ NatType::Udp { .. }) => format!("; this side is {t}"),
            _ => String::new(),
        };
        return (
            Reason::PeerFilters,
            format!(
                "both sides have srflx but the checks failed{failed}{here}: the peer's network filters inbound UDP; run `stunmap pair` or check the peer's network"
            ),
            Some(fix_peer()),
        );
    }
    if p.link.ice_local == CandidateType::Relay
        || p.link.ice_remote == CandidateType::Relay
        || h.is_some_and(|h| h.successful.iter().any(|s| s.contains("relay")))
    {
        return (
            Reason::TurnOnly,
            format!(
                "ICE connected only through a TURN relay candidate ({}/{}): every direct pair failed",
                p.link.ice_local, p.link.ice_remote
            ),
            Some(fix_peer()),
        );
    }
    if let Some(h) = h.filter(|h| h.connected_lost > 0) {
        return (
            Reason::PathLost,
            format!(
                "ICE connected and lost the path {}× : a NAT or firewall on the way drops the mapping (idle timeout or address change)",
                h.connected_lost
            ),
            Some(fix_peer()),
        );
    }
    if let Some(
        t @ NatType::Udp {
            mapping: Mapping::EndpointIndependent,
            ..
        },
    ) = m.nat
    {
        return (
            Reason::LikelyPeerSide,
            format!(
                "ICE did not complete (candidates {}/{}) although this side ({t}) punches with endpoint-independent peers: the peer's NAT maps per destination or its network blocks UDP",
                p.link.ice_local, p.link.ice_remote
            ),
            Some(fix_peer()),
        );
    }
    let hint = if log_read {
        "the log has no ICE lines for it (make the bundle with `netbird debug for 2m`, which logs at trace level)"
    } else {
        "run `stunmap check` here and on the peer, or read a bundle made with `netbird debug for 2m`"
    };
    (
        Reason::Unknown,
        format!(
            "ICE did not complete (candidates {}/{}) and nothing measured says why: {hint}",
            p.link.ice_local, p.link.ice_remote
        ),
        None,
    )
}
