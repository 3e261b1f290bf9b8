//! The values two `stunmap pair` peers exchange, their validation, and the merge of both
//! sides' findings into the one [`PairResult`] both print.
//!
//! Every value here crosses the network (through the rendezvous), so each type that can be
//! received has a `validate` that bounds its sizes and rejects addresses no ICE candidate can
//! have (RFC 8445 §5.1.1: unspecified, multicast, port 0). A peer that sends garbage gets a
//! one-line refusal, never a panic or unbounded memory.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::nat::{Filtering, Mapping, NatType, PairOutcome, pair_outcome};

/// Most candidates one side may offer (a host has a few; TURN adds one per server).
pub const MAX_CANDIDATES: usize = 16;
/// Most check flows one side may report.
pub const MAX_CHECKS: usize = 64;
/// Longest ICE ufrag/pwd accepted, RFC 8839 §5.4 (256 characters).
pub const MAX_ICE_CHARS: usize = 256;
/// Longest foundation, RFC 8839 §5.1 (1–32 ice-chars).
pub const MAX_FOUNDATION: usize = 32;
/// Longest free text (a TURN error, a NAT label) accepted from a peer.
pub const MAX_TEXT: usize = 200;

/// Why a value received from the peer (or the rendezvous) was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Invalid {
    /// Too many elements in a list.
    #[error("too many {what} ({count}, at most {max})")]
    TooMany {
        /// Which list.
        what: &'static str,
        /// How many came.
        count: usize,
        /// The cap.
        max: usize,
    },
    /// A string is empty, too long or holds characters it may not.
    #[error("bad {what}")]
    BadText {
        /// Which field.
        what: &'static str,
    },
    /// An address no candidate can have.
    #[error("bad candidate address {addr}")]
    BadAddress {
        /// The address.
        addr: SocketAddr,
    },
    /// A number out of range (NaN, negative, absurd).
    #[error("bad number in {what}")]
    BadNumber {
        /// Which field.
        what: &'static str,
    },
}

/// ICE candidate types, RFC 8445 §5.1.1 (`typ` in RFC 8839 §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CandidateKind {
    /// An address of the host's own interface.
    Host,
    /// The host's address as a STUN server sees it (its NAT mapping).
    Srflx,
    /// An address learned from a connectivity check (RFC 8445 §7.2.5.3.1): a mapping the
    /// STUN server did not see, as a symmetric NAT makes.
    Prflx,
    /// An address on a TURN server (RFC 8656).
    Relay,
}

impl fmt::Display for CandidateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CandidateKind::Host => "host",
            CandidateKind::Srflx => "srflx",
            CandidateKind::Prflx => "prflx",
            CandidateKind::Relay => "relay",
        })
    }
}

/// A candidate as offered to the peer (the fields of RFC 8839 §5.1 that ICE needs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireCandidate {
    /// Type.
    pub kind: CandidateKind,
    /// Transport address.
    pub address: SocketAddr,
    /// Priority, RFC 8445 §5.1.2.
    pub priority: u32,
    /// Foundation, RFC 8445 §5.1.1.3 (1–32 ice-chars).
    pub foundation: String,
}

/// ice-char, RFC 8839 §5.1: ALPHA / DIGIT / "+" / "/".
fn ice_chars(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// Whether `addr` can be a candidate address: unicast, not unspecified, a real port.
pub fn usable_address(addr: &SocketAddr) -> bool {
    let ip = addr.ip();
    addr.port() != 0
        && !ip.is_unspecified()
        && !ip.is_multicast()
        && !matches!(ip, IpAddr::V4(v4) if v4.is_broadcast())
}

impl WireCandidate {
    /// Check a received candidate.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !usable_address(&self.address) {
            return Err(Invalid::BadAddress { addr: self.address });
        }
        if !ice_chars(&self.foundation, 1, MAX_FOUNDATION) {
            return Err(Invalid::BadText { what: "foundation" });
        }
        if self.kind == CandidateKind::Prflx {
            // Peer-reflexive candidates are learned from checks, never signalled.
            return Err(Invalid::BadText {
                what: "candidate type",
            });
        }
        Ok(())
    }
}

/// What one side tells the other before the checks: its ICE credentials (RFC 8445 §5.3) and
/// candidates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    /// ice-ufrag, RFC 8839 §5.4 (4–256 ice-chars).
    pub ufrag: String,
    /// ice-pwd, RFC 8839 §5.4 (22–256 ice-chars).
    pub pwd: String,
    /// The candidates.
    pub candidates: Vec<WireCandidate>,
}

impl Offer {
    /// Check a received offer.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !ice_chars(&self.ufrag, 4, MAX_ICE_CHARS) {
            return Err(Invalid::BadText { what: "ice-ufrag" });
        }
        if !ice_chars(&self.pwd, 22, MAX_ICE_CHARS) {
            return Err(Invalid::BadText { what: "ice-pwd" });
        }
        if self.candidates.len() > MAX_CANDIDATES {
            return Err(Invalid::TooMany {
                what: "candidates",
                count: self.candidates.len(),
                max: MAX_CANDIDATES,
            });
        }
        self.candidates.iter().try_for_each(WireCandidate::validate)
    }
}

/// The ICE role, RFC 8445 §6.1.1. The first peer in a room controls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Nominates (side "a" of the result).
    Controlling,
    /// Follows (side "b").
    Controlled,
}

/// One local→remote direction of connectivity checks as this side saw it: the local address
/// is the base (host socket) or the relayed address, the remote one the address checks went
/// to or came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckFlow {
    /// Local base or relayed address.
    pub local: SocketAddr,
    /// Remote address.
    pub remote: SocketAddr,
    /// Binding requests sent (retransmissions included).
    pub requests_sent: u32,
    /// Authenticated Binding success responses received.
    pub responses_received: u32,
    /// Authenticated Binding requests received from the remote address.
    pub requests_received: u32,
}

/// RTT and loss over the selected pair.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RttStats {
    /// Echo requests sent.
    pub sent: u32,
    /// Echo answers received.
    pub received: u32,
    /// Fraction lost, 0–1.
    pub loss: f64,
    /// Smallest RTT, milliseconds.
    pub min_ms: Option<f64>,
    /// Median, milliseconds.
    pub p50_ms: Option<f64>,
    /// 90th percentile, milliseconds.
    pub p90_ms: Option<f64>,
    /// 99th percentile, milliseconds.
    pub p99_ms: Option<f64>,
    /// Largest, milliseconds.
    pub max_ms: Option<f64>,
}

impl RttStats {
    /// Statistics of `samples` out of `sent` echo requests (nearest-rank percentiles).
    pub fn from_samples(sent: u32, samples: &[Duration]) -> Self {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| -> Option<f64> {
            if ms.is_empty() {
                return None;
            }
            let n = ms.len();
            // Nearest rank: ceil(p·n), 1-based.
            let r = ((p * n as f64).ceil() as usize).clamp(1, n);
            ms.get(r - 1).copied()
        };
        let received = u32::try_from(samples.len()).unwrap_or(u32::MAX).min(sent);
        let loss = if sent == 0 {
            0.0
        } else {
            f64::from(sent - received) / f64::from(sent)
        };
        Self {
            sent,
            received,
            loss,
            min_ms: ms.first().copied(),
            p50_ms: rank(0.5),
            p90_ms: rank(0.9),
            p99_ms: rank(0.99),
            max_ms: ms.last().copied(),
        }
    }

    fn validate(&self) -> Result<(), Invalid> {
        let ok = |v: f64| v.is_finite() && (0.0..=3_600_000.0).contains(&v);
        let all = [
            self.min_ms,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.max_ms,
        ];
        if !ok(self.loss) || self.loss > 1.0 || all.iter().flatten().any(|v| !ok(*v)) {
            return Err(Invalid::BadNumber { what: "rtt" });
        }
        if self.received > self.sent {
            return Err(Invalid::BadNumber { what: "rtt" });
        }
        Ok(())
    }
}

/// What happened with the TURN server, when one was given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnSummary {
    /// The server.
    pub server: SocketAddr,
    /// The relayed address (the relay candidate), when the allocation succeeded.
    pub relayed: Option<SocketAddr>,
    /// Why there is none.
    pub error: Option<String>,
    /// Whether the allocation was given back (Refresh LIFETIME 0, RFC 8656 §8); `true` when
    /// none was made, `None` in a report sent to the peer before the release (a run reports
    /// first and releases after).
    pub released: Option<bool>,
}

/// The pair this side ended up sending on: the last nomination (RFC 8445 §8.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nominated {
    /// The local base or relayed address.
    pub source: SocketAddr,
    /// The peer's address it sends to.
    pub destination: SocketAddr,
}

/// One side's findings, sent to the other at the end so both print the same result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SideReport {
    /// ICE role.
    pub role: Role,
    /// The NAT class from this side's `nat` probe (`None`: not measured).
    pub nat: Option<NatType>,
    /// The server-reflexive address the `nat` probe saw.
    pub public_address: Option<SocketAddr>,
    /// This side's candidates.
    pub candidates: Vec<WireCandidate>,
    /// The nominated pair, if any.
    pub nominated: Option<Nominated>,
    /// From the start of the checks to the first nomination, milliseconds.
    pub connect_ms: Option<f64>,
    /// Connectivity checks per local→remote direction.
    pub checks: Vec<CheckFlow>,
    /// RTT and loss measured from this side over the nominated pair.
    pub rtt: Option<RttStats>,
    /// TURN, when configured.
    pub turn: Option<TurnSummary>,
    /// This side was interrupted (SIGINT/SIGTERM).
    pub interrupted: bool,
}

impl SideReport {
    /// A report of `role` with nothing measured: no NAT class, candidates, checks, RTT or
    /// TURN, not interrupted.
    pub fn empty(role: Role) -> Self {
        Self {
            role,
            nat: None,
            public_address: None,
            candidates: Vec::new(),
            nominated: None,
            connect_ms: None,
            checks: Vec::new(),
            rtt: None,
            turn: None,
            interrupted: false,
        }
    }

    /// Check a received report.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.candidates.len() > MAX_CANDIDATES {
            return Err(Invalid::TooMany {
                what: "candidates",
                count: self.candidates.len(),
                max: MAX_CANDIDATES,
            });
        }
        if self.checks.len() > MAX_CHECKS {
            return Err(Invalid::TooMany {
                what: "checks",
                count: self.checks.len(),
                max: MAX_CHECKS,
            });
        }
        self.candidates
            .iter()
            .try_for_each(WireCandidate::validate)?;
        if let Some(r) = &self.rtt {
            r.validate()?;
        }
        if let Some(t) = &self.turn
            && t.error.as_ref().is_some_and(|e| e.len() > MAX_TEXT)
        {
            return Err(Invalid::BadText { what: "turn error" });
        }
        if self
            .connect_ms
            .is_some_and(|ms| !ms.is_finite() || !(0.0..=3_600_000.0).contains(&ms))
        {
            return Err(Invalid::BadNumber { what: "connect_ms" });
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The merged result

/// What the live test found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The selected pair has no relay candidate.
    Direct,
    /// The selected pair goes through a TURN relay.
    Relayed,
    /// No pair worked.
    Failed,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Direct => "direct",
            Outcome::Relayed => "relayed",
            Outcome::Failed => "failed",
        })
    }
}

/// Side "a" (the controlling peer, first in the room) or "b".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The controlling peer.
    A,
    /// The controlled peer.
    B,
}

impl Side {
    /// The side of a role.
    pub fn of(role: Role) -> Side {
        match role {
            Role::Controlling => Side::A,
            Role::Controlled => Side::B,
        }
    }

    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::A => "A",
            Side::B => "B",
        })
    }
}

/// One end of a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Whose.
    pub side: Side,
    /// Candidate type, as the other side saw it (an address not offered is peer-reflexive).
    pub kind: CandidateKind,
    /// The address.
    pub address: SocketAddr,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.side, self.kind, self.address)
    }
}

/// The selected pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectedPair {
    /// Side A's end.
    pub a: Endpoint,
    /// Side B's end.
    pub b: Endpoint,
}

/// Why a direction of checks failed, as far as the counters tell.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum FailReason {
    /// Checks went out and nothing ever came back from that address.
    NoAnswer,
    /// The address is a private (RFC 1918, RFC 6598, ULA, link-local) host address of the
    /// peer's own network: not routable from here.
    PrivateAddress,
    /// The peer's checks from that address arrived here, but no answer to this side's did:
    /// this side's filter lets the peer in, the peer's does not let this side in.
    OneWay,
    /// Nothing came back, and the peer's own `nat` probe found a NAT that maps per
    /// destination: its server-reflexive address is only open to the STUN server.
    PeerMapsPerDestination,
    /// Nothing came back, and the peer's `nat` probe found a NAT that filters by address (and
    /// port): it lets in only what it has sent to.
    FilteredByPeer {
        /// The peer's filtering.
        filtering: Filtering,
    },
    /// Nothing came back: the peer's `nat` probe found UDP blocked.
    PeerUdpBlocked,
    /// The peer's checks came from another port of the same IP than the server-reflexive one
    /// it offered: its NAT maps per destination (APDM/ADM, "symmetric"), so the offered
    /// mapping is not where checks to it end up.
    SymmetricMapping {
        /// The port checks came from.
        seen_port: u16,
        /// The server-reflexive port offered.
        offered_port: u16,
    },
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailReason::NoAnswer => {
                f.write_str("no answer (filtered on the way or by the peer's NAT/firewall)")
            }
            FailReason::PrivateAddress => {
                f.write_str("no answer (a private address of the peer's LAN, not routable here)")
            }
            FailReason::PeerMapsPerDestination => f.write_str(
                "no answer: the peer's NAT maps per destination (symmetric), so its server-reflexive address is open only to the STUN server",
            ),
            FailReason::FilteredByPeer { filtering } => write!(
                f,
                "no answer: filtered by the peer's NAT ({}: it lets in only what it has sent to)",
                filtering.short()
            ),
            FailReason::PeerUdpBlocked => f.write_str("no answer: UDP is blocked at the peer"),
            FailReason::OneWay => f.write_str(
                "one way: the peer's checks arrived here, but no answer to ours came back (filtered)",
            ),
            FailReason::SymmetricMapping {
                seen_port,
                offered_port,
            } => write!(
                f,
                "symmetric mapping seen: the peer's checks came from port {seen_port}, not its server-reflexive port {offered_port}"
            ),
        }
    }
}

/// A direction of checks that never got an answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedCheck {
    /// Where the checks left from.
    pub from: Endpoint,
    /// Where they went.
    pub to: Endpoint,
    /// Checks sent.
    pub requests_sent: u32,
    /// Why.
    pub reason: FailReason,
}

/// One side as the result shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SideView {
    /// Whether this side's report arrived (the local side's always does).
    pub reported: bool,
    /// NAT class (the pair table's input).
    pub nat: Option<NatType>,
    /// Public address the `nat` probe saw.
    pub public_address: Option<SocketAddr>,
    /// Candidates.
    pub candidates: Vec<WireCandidate>,
    /// RTT and loss from this side.
    pub rtt: Option<RttStats>,
    /// TURN.
    pub turn: Option<TurnSummary>,
    /// Interrupted.
    pub interrupted: bool,
}

/// The model's prediction for this pair (docs/nat.md) and whether reality agreed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prediction {
    /// `pair_outcome(a, b)`; `None` when a side's class is unknown.
    pub model: Option<PairOutcome>,
    /// Whether the measured outcome agrees: model direct ⇔ measured direct. `None` when the
    /// model is uncertain, a class is missing, or nothing was measured.
    pub agrees: Option<bool>,
    /// The reasoning, one sentence each.
    pub reasons: Vec<String>,
}

/// The result both peers print.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairResult {
    /// Direct, relayed or failed.
    pub outcome: Outcome,
    /// The selected pair.
    pub selected: Option<SelectedPair>,
    /// Time from the start of the checks to the first nomination, seconds (side A's clock,
    /// else B's).
    pub connect_seconds: Option<f64>,
    /// Directions of checks that got no answer.
    pub failed_checks: Vec<FailedCheck>,
    /// Side A.
    pub a: SideView,
    /// Side B.
    pub b: SideView,
    /// The model against the measurement.
    pub prediction: Prediction,
}

/// Whether `ip` is an address of a private network (RFC 1918, RFC 6598 shared space, RFC 4193
/// ULA, link-local, loopback) rather than one a peer elsewhere could route to.
fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => {
            let o = v.octets();
            v.is_private()
                || v.is_loopback()
                || v.is_link_local()
                || (o[0] == 100 && (o[1] & 0xC0) == 64)
        }
        IpAddr::V6(v) => {
            let s = v.segments()[0];
            v.is_loopback() || (s & 0xFE00) == 0xFC00 || (s & 0xFFC0) == 0xFE80
        }
    }
}

/// The type of `addr` among `side`'s candidates (not offered: peer-reflexive).
fn kind_of(addr: SocketAddr, candidates: &[WireCandidate]) -> CandidateKind {
    // A host address can equal the server-reflexive one (no NAT): host wins, as in RFC 8445
    // §5.1.3's redundancy rule.
    candidates
        .iter()
        .filter(|c| c.address == addr)
        .map(|c| c.kind)
        .min()
        .unwrap_or(CandidateKind::Prflx)
}

struct Inputs<'a> {
    report: Option<&'a SideReport>,
    candidates: &'a [WireCandidate],
}

impl PairResult {
    /// Merge both sides' findings. `local` is this side's report; `peer` the other's when it
    /// arrived; `peer_offer` the candidates the peer offered (used when its report is
    /// missing). With both reports the result does not depend on which side merges.
    pub fn merge(
        local: &SideReport,
        peer: Option<&SideReport>,
        peer_offer: &[WireCandidate],
    ) -> PairResult {
        let me = Inputs {
            report: Some(local),
            candidates: &local.candidates,
        };
        let other = Inputs {
            report: peer,
            candidates: peer.map_or(peer_offer, |p| &p.candidates),
        };
        let (a, b) = match local.role {
            Role::Controlling => (me, other),
            Role::Controlled => (other, me),
        };
        let selected = select(&a, &b);
        let outcome = match selected {
            None => Outcome::Failed,
            Some(s) if s.a.kind == CandidateKind::Relay || s.b.kind == CandidateKind::Relay => {
                Outcome::Relayed
            }
            Some(_) => Outcome::Direct,
        };
        let connect_seconds = [a.report, b.report]
            .into_iter()
            .flatten()
            .find_map(|r| r.connect_ms)
            .map(|ms| ms / 1e3);
        let mut failed_checks = Vec::new();
        if outcome != Outcome::Direct {
            failed_checks.extend(failures(Side::A, &a, &b));
            failed_checks.extend(failures(Side::B, &b, &a));
        }
        let view = |i: &Inputs<'_>| SideView {
            reported: i.report.is_some(),
            nat: i.report.and_then(|r| r.nat),
            public_address: i.report.and_then(|r| r.public_address),
            candidates: i.candidates.to_vec(),
            rtt: i.report.and_then(|r| r.rtt.clone()),
            turn: i.report.and_then(|r| r.turn.clone()),
            interrupted: i.report.is_some_and(|r| r.interrupted),
        };
        let (va, vb) = (view(&a), view(&b));
        let prediction = predict(va.nat, vb.nat, outcome);
        PairResult {
            outcome,
            selected,
            connect_seconds,
            failed_checks,
            a: va,
            b: vb,
            prediction,
        }
    }
}

/// The selected pair: side A's nomination (it controls), else B's.
fn select(a: &Inputs<'_>, b: &Inputs<'_>) -> Option<SelectedPair> {
    if let Some(n) = a.report.and_then(|r| r.nominated) {
        let b_end = Endpoint {
            side: Side::B,
            kind: kind_of(n.destination, b.candidates),
            address: n.destination,
        };
        return Some(SelectedPair {
            a: own_end(Side::A, n, a, b),
            b: b_end,
        });
    }
    let n = b.report.and_then(|r| r.nominated)?;
    Some(SelectedPair {
        a: Endpoint {
            side: Side::A,
            kind: kind_of(n.destination, a.candidates),
            address: n.destination,
        },
        b: own_end(Side::B, n, b, a),
    })
}

/// A side's own end of its nominated pair: the address the other side sends to (what a NAT
/// made of this side's base), when the other side reported a nomination; otherwise its own
/// source (relay or host).
fn own_end(side: Side, n: Nominated, me: &Inputs<'_>, other: &Inputs<'_>) -> Endpoint {
    if let Some(o) = other.report.and_then(|r| r.nominated) {
        return Endpoint {
            side,
            kind: kind_of(o.destination, me.candidates),
            address: o.destination,
        };
    }
    let kind = match kind_of(n.source, me.candidates) {
        CandidateKind::Relay => CandidateKind::Relay,
        _ => CandidateKind::Host,
    };
    Endpoint {
        side,
        kind,
        address: n.source,
    }
}

/// The directions of `me`'s checks that got no answer, with the reason the counters give.
fn failures(side: Side, me: &Inputs<'_>, other: &Inputs<'_>) -> Vec<FailedCheck> {
    let Some(report) = me.report else {
        return Vec::new();
    };
    // Addresses the other side's checks came from that it never offered, by IP.
    let unoffered: BTreeSet<SocketAddr> = report
        .checks
        .iter()
        .filter(|f| f.requests_received > 0)
        .map(|f| f.remote)
        .filter(|r| !other.candidates.iter().any(|c| c.address == *r))
        .collect();
    report
        .checks
        .iter()
        .filter(|f| f.requests_sent > 0 && f.responses_received == 0)
        .filter(|f| other.candidates.iter().any(|c| c.address == f.remote))
        .map(|f| {
            let to_kind = kind_of(f.remote, other.candidates);
            let seen = unoffered
                .iter()
                .find(|u| u.ip() == f.remote.ip() && u.port() != f.remote.port());
            let reason = if f.requests_received > 0 {
                FailReason::OneWay
            } else if let (CandidateKind::Srflx, Some(seen)) = (to_kind, seen) {
                FailReason::SymmetricMapping {
                    seen_port: seen.port(),
                    offered_port: f.remote.port(),
                }
            } else if to_kind == CandidateKind::Host
                && is_private(f.remote.ip())
                && !same_subnet(f.local.ip(), f.remote.ip())
            {
                FailReason::PrivateAddress
            } else {
                from_class(other.report.and_then(|r| r.nat), to_kind)
            };
            FailedCheck {
                from: Endpoint {
                    side,
                    kind: match kind_of(f.local, me.candidates) {
                        CandidateKind::Relay => CandidateKind::Relay,
                        _ => CandidateKind::Host,
                    },
                    address: f.local,
                },
                to: Endpoint {
                    side: side.other(),
                    kind: to_kind,
                    address: f.remote,
                },
                requests_sent: f.requests_sent,
                reason,
            }
        })
        .collect()
}

/// The reason for silence that the peer's measured NAT class gives, if any.
fn from_class(nat: Option<NatType>, to: CandidateKind) -> FailReason {
    match nat {
        Some(NatType::UdpBlocked) => FailReason::PeerUdpBlocked,
        Some(NatType::Udp { mapping, .. })
            if to == CandidateKind::Srflx
                && matches!(
                    mapping,
                    Mapping::AddressDependent
                        | Mapping::AddressAndPortDependent
                        | Mapping::VariesByDestination
                ) =>
        {
            FailReason::PeerMapsPerDestination
        }
        Some(NatType::Udp { filtering, .. })
            if matches!(
                filtering,
                Filtering::AddressDependent | Filtering::AddressAndPortDependent
            ) =>
        {
            FailReason::FilteredByPeer { filtering }
        }
        _ => FailReason::NoAnswer,
    }
}

/// A rough same-LAN test: the same /24 (IPv4) or /64 (IPv6).
fn same_subnet(x: IpAddr, y: IpAddr) -> bool {
    match (x, y) {
        (IpAddr::V4(x), IpAddr::V4(y)) => x.octets()[..3] == y.octets()[..3],
        (IpAddr::V6(x), IpAddr::V6(y)) => x.segments()[..4] == y.segments()[..4],
        _ => false,
    }
}

/// What a NAT class means for hole punching, in words (RFC 4787 terms).
pub fn describe(t: NatType) -> String {
    match t {
        NatType::UdpBlocked => "UDP to peers is blocked: only a relay over TCP could help".into(),
        NatType::Udp { mapping, filtering } => {
            let m = match mapping {
                Mapping::EndpointIndependent => {
                    "one mapping for every destination, so peers reach the server-reflexive address"
                }
                Mapping::AddressDependent | Mapping::AddressAndPortDependent => {
                    "a new mapping per destination, so the server-reflexive address is not where checks to peers leave from"
                }
                Mapping::VariesByDestination => "mappings vary by destination",
                Mapping::Unknown => "mapping not measured",
            };
            let f = match filtering {
                Filtering::EndpointIndependent => "anyone may send in through a mapping",
                Filtering::AddressDependent => "only IPs it has sent to may send in",
                Filtering::AddressAndPortDependent => {
                    "only IP:port pairs it has sent to may send in"
                }
                Filtering::Unknown => "filtering not measured",
            };
            format!("{t}: {m}; {f}")
        }
    }
}

/// The model's prediction from both classes, and agreement with `outcome`.
pub fn predict(a: Option<NatType>, b: Option<NatType>, outcome: Outcome) -> Prediction {
    let mut reasons = Vec::new();
    for (side, t) in [(Side::A, a), (Side::B, b)] {
        match t {
            Some(t) => reasons.push(format!("{side} is {}", describe(t))),
            None => reasons.push(format!("{side}'s NAT class is unknown")),
        }
    }
    let (Some(a), Some(b)) = (a, b) else {
        return Prediction {
            model: None,
            agrees: None,
            reasons,
        };
    };
    let model = pair_outcome(a, b);
    reasons.push(match model {
        PairOutcome::Direct => {
            "the pair table (docs/nat.md) predicts direct: at least one direction of checks gets in and its answer back".into()
        }
        PairOutcome::Relayed => {
            "the pair table (docs/nat.md) predicts relayed: in neither direction do the checks get through both NATs".into()
        }
        PairOutcome::Uncertain => {
            "the pair table cannot decide: a class is only partly known".into()
        }
    });
    let agrees = match model {
        PairOutcome::Uncertain => None,
        PairOutcome::Direct => Some(outcome == Outcome::Direct),
        PairOutcome::Relayed => Some(outcome != Outcome::Direct),
    };
    Prediction {
        model: Some(model),
        agrees,
        reasons,
    }
}

#[cfg(test)]
mod tests;
