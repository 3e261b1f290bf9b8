//! ICE history per peer from a NetBird client log (`client.log` of a debug bundle).
//!
//! NetBird's text log lines are `TIME LEVEL [k: v, …] source.go:N: message` (its
//! `formatter/txt`); peer-scoped lines carry a `peer: <public key>` field. The lines read:
//!
//! - `ICE ConnectionState has changed to <State>` (pion's states: New, Checking, Connected,
//!   Completed, Failed, Disconnected, Closed) — logged at debug level, so present only when the
//!   bundle was made with `netbird debug for` or the log level raised;
//! - `discovered local candidate <net> <type> <addr> …` (this side's gathered candidates);
//! - `OnRemoteCandidate from peer <key> -> <net> <type> <addr> …` (the peer's candidates);
//! - `successful ICE path …: [<net> <type> …] <-> [<net> <type> …]` (newer versions).
//!
//! Memory is bounded: at most [`MAX_PEERS`] peers, lines longer than [`MAX_LINE`] are skipped.

use std::collections::BTreeMap;

use serde::Serialize;

use super::status::{CandidateType, PeerKey};

/// Most peers tracked.
pub const MAX_PEERS: usize = 10_000;
/// Longest line looked at.
pub const MAX_LINE: usize = 8192;

/// ICE connection state, RFC 8445 §6.1.3 terms as pion names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IceState {
    /// New.
    New,
    /// Checks running.
    Checking,
    /// A pair works.
    Connected,
    /// Checks finished.
    Completed,
    /// No pair works.
    Failed,
    /// Was connected, lost.
    Disconnected,
    /// Agent closed.
    Closed,
}

impl IceState {
    fn parse(s: &str) -> Option<IceState> {
        Some(match s.trim().trim_end_matches(['.', ',']) {
            "New" => IceState::New,
            "Checking" => IceState::Checking,
            "Connected" => IceState::Connected,
            "Completed" => IceState::Completed,
            "Failed" => IceState::Failed,
            "Disconnected" => IceState::Disconnected,
            "Closed" => IceState::Closed,
            _ => return None,
        })
    }
}

/// Candidate types seen, as a small set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CandidateSet {
    /// host seen.
    pub host: bool,
    /// srflx seen.
    pub srflx: bool,
    /// prflx seen.
    pub prflx: bool,
    /// relay seen.
    pub relay: bool,
}

impl CandidateSet {
    fn add(&mut self, t: &CandidateType) {
        match t {
            CandidateType::Host => self.host = true,
            CandidateType::Srflx => self.srflx = true,
            CandidateType::Prflx => self.prflx = true,
            CandidateType::Relay => self.relay = true,
            CandidateType::None | CandidateType::Other(_) => {}
        }
    }

    /// Whether nothing was seen.
    pub fn is_empty(&self) -> bool {
        !(self.host || self.srflx || self.prflx || self.relay)
    }

    /// `host, srflx` …
    pub fn names(&self) -> String {
        let v: Vec<&str> = [
            (self.host, "host"),
            (self.srflx, "srflx"),
            (self.prflx, "prflx"),
            (self.relay, "relay"),
        ]
        .iter()
        .filter(|(b, _)| *b)
        .map(|(_, n)| *n)
        .collect();
        if v.is_empty() {
            "none".into()
        } else {
            v.join(", ")
        }
    }
}

/// One peer's ICE history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PeerIce {
    /// Public key (not serialized).
    #[serde(skip)]
    pub key: PeerKey,
    /// State changes logged.
    pub changes: u32,
    /// Checking → Failed transitions (ICE tried and no pair worked).
    pub checking_to_failed: u32,
    /// Checking → Connected transitions.
    pub checking_to_connected: u32,
    /// Connected → Disconnected/Failed (a working path was lost).
    pub connected_lost: u32,
    /// Last state logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<IceState>,
    /// This side's gathered candidate types.
    pub local: CandidateSet,
    /// The peer's candidate types received.
    pub remote: CandidateSet,
    /// Types of successful pairs, `local/remote`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub successful: Vec<String>,
}

/// ICE history of every peer in a log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IceHistory {
    /// Per peer, by key (keys never serialized: the list is).
    #[serde(skip)]
    pub peers: BTreeMap<String, PeerIce>,
    /// Lines read.
    pub lines: u64,
    /// ICE state-change lines found (0: the log is at info level or older than these lines).
    pub state_lines: u64,
    /// Lines skipped for length.
    pub long_lines: u64,
    /// Peers beyond [`MAX_PEERS`] ignored.
    pub peers_dropped: u64,
}

impl IceHistory {
    /// The history of the peer with this key.
    pub fn of(&self, key: &PeerKey) -> Option<&PeerIce> {
        if key.as_str().is_empty() {
            return None;
        }
        self.peers.get(key.as_str())
    }
}

/// The value of the `peer` field of a line's `[k: v, …]` block.
fn peer_field(line: &str) -> Option<&str> {
    let open = line.find(" [")?;
    let rest = line.get(open + 2..)?;
    let close = rest.find("] ")?;
    let fields = rest.get(..close)?;
    fields.split(", ").find_map(|kv| {
        kv.strip_prefix("peer: ")
            .map(str::trim)
            .filter(|k| !k.is_empty())
    })
}

/// The candidate type in pion's `Candidate.String()`: `<network> <type> <address> …`.
fn candidate_type(desc: &str) -> CandidateType {
    let mut w = desc.split_whitespace();
    let first = w.next().unwrap_or("");
    // Older pion versions start with the type.
    match CandidateType::parse(first) {
        CandidateType::Other(_) | CandidateType::None => {
            CandidateType::parse(w.next().unwrap_or(""))
        }
        t => t,
    }
}

/// Read a log. `prev` state per peer is tracked to count transitions.
pub fn read(text: &str) -> IceHistory {
    let mut h = IceHistory::default();
    for line in text.lines() {
        h.lines += 1;
        if line.len() > MAX_LINE {
            h.long_lines += 1;
            continue;
        }
        let Some(key) = peer_field(line) else {
            continue;
        };
        let interesting = line.contains("ICE ConnectionState has changed to ")
            || line.contains("discovered local candidate ")
            || line.contains("OnRemoteCandidate from peer ")
            || line.contains("successful ICE path ");
        if !interesting {
            continue;
        }
        if !h.peers.contains_key(key) && h.peers.len() >= MAX_PEERS {
            h.peers_dropped += 1;
            continue;
        }
        let p = h.peers.entry(key.to_owned()).or_insert_with(|| PeerIce {
            key: PeerKey::new(key),
            ..PeerIce::default()
        });
        if let Some((_, s)) = line.split_once("ICE ConnectionState has changed to ") {
            let Some(state) = IceState::parse(s) else {
                continue;
            };
            h.state_lines += 1;
            p.changes = p.changes.saturating_add(1);
            match (p.last, state) {
                (Some(IceState::Checking), IceState::Failed) => {
                    p.checking_to_failed = p.checking_to_failed.saturating_add(1);
                }
                (Some(IceState::Checking), IceState::Connected) => {
                    p.checking_to_connected = p.checking_to_connected.saturating_add(1);
                }
                (
                    Some(IceState::Connected | IceState::Completed),
                    IceState::Disconnected | IceState::Failed,
                ) => p.connected_lost = p.connected_lost.saturating_add(1),
                _ => {}
            }
            p.last = Some(state);
        } else if let Some((_, c)) = line.split_once("discovered local candidate ") {
            p.local.add(&candidate_type(c));
        } else if let Some((_, rest)) = line.split_once("OnRemoteCandidate from peer ") {
            if let Some((_, c)) = rest.split_once(" -> ") {
                p.remote.add(&candidate_type(c));
            }
        } else if let Some((_, rest)) = line.split_once("successful ICE path ") {
            // `ID: [udp4 srflx a:p] <-> [udp4 host b:p] rtt=…`
            let mut types = rest
                .split('[')
                .skip(1)
                .map(|part| candidate_type(part.split(']').next().unwrap_or("")));
            if let (Some(l), Some(r)) = (types.next(), types.next()) {
                let pair = format!("{l}/{r}");
                if p.successful.len() < 16 && !p.successful.contains(&pair) {
                    p.successful.push(pair);
                }
            }
        }
    }
    h
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn transitions_and_candidates() {
        let k = "Q2FuZGlkYXRlS2V5Rm9yVGVzdHNPbmx5QUFBQUFBQUE=";
        let log = format!(
            "2025-04-27T13:10:50Z DEBG [peer: {k}] client/internal/peer/worker_ice.go:210: discovered local candidate udp4 host 192.168.1.20:51820 (resolved: 192.168.1.20:51820)\n\
             2025-04-27T13:10:50Z DEBG [peer: {k}] client/internal/peer/worker_ice.go:210: discovered local candidate udp4 srflx 203.0.113.7:40001 related 0.0.0.0:51820\n\
             2025-04-27T13:10:50Z DEBG [peer: {k}] client/internal/peer/worker_ice.go:160: OnRemoteCandidate from peer {k} -> udp4 srflx 198.51.100.9:3478 related 0.0.0.0:0\n\
             2025-04-27T13:10:51Z DEBG [peer: {k}] client/internal/peer/worker_ice.go:513: ICE ConnectionState has changed to Checking\n\
             2025-04-27T13:11:21Z DEBG [peer: {k}] client/internal/peer/worker_ice.go:513: ICE ConnectionState has changed to Failed\n\
             2025-04-27T13:11:21Z DEBG [peer: {k}] client/internal/peer/worker_ice.go:513: ICE ConnectionState has changed to Closed\n\
             2025-04-27T13:11:40Z DEBG [peer: {k}] client/internal/peer/worker_ice.go:513: ICE ConnectionState has changed to Checking\n\
             2025-04-27T13:12:10Z DEBG [peer: {k}] client/internal/peer/worker_ice.go:513: ICE ConnectionState has changed to Failed\n\
             2025-04-27T13:12:10Z INFO client/internal/engine.go:1: unrelated\n"
        );
        let h = read(&log);
        let p = h.of(&PeerKey::new(k)).unwrap();
        assert_eq!(p.checking_to_failed, 2);
        assert_eq!(p.changes, 5);
        assert_eq!(p.last, Some(IceState::Failed));
        assert!(p.local.host && p.local.srflx && !p.local.relay);
        assert!(p.remote.srflx && !p.remote.host);
        assert_eq!(h.state_lines, 5);
        let json = serde_json::to_string(&p).unwrap();
        assert!(!json.contains(k), "{json}");
    }

    #[test]
    fn long_and_foreign_lines_are_ignored() {
        let long = "x".repeat(MAX_LINE + 1);
        let h = read(&format!(
            "{long}\nnot a log line\n[peer: ] ICE ConnectionState has changed to Failed\n"
        ));
        assert_eq!(h.long_lines, 1);
        assert!(h.peers.is_empty());
    }
}
