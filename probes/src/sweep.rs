//! Port sweep logic, sans-IO: which ports to try (a reproducible stratified sample of a range
//! that always holds the ports that matter), how to read each outcome, how to compress the
//! results into ranges with the confidence the sample size allows, and how to tell a
//! middlebox that accepts every port from the real server. [`pacing`] decides how fast a
//! sweep sends and how long it waits.
//!
//! Every port asked for ends with exactly one state: what the network answered, or why it
//! could not be asked ([`TcpState::Error`] with the OS error, [`TcpState::NotProbed`] when the
//! sweep stopped first). No state is inferred for a port that was not measured.

pub mod pacing;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Ports always in a TCP sample when they fall in the range: the TURN/STUN and relay ports
/// NetBird uses (443, 3478, 5349, 5555), web ports that egress filters treat specially (80,
/// 8080, 8443), and TURN's alternates (3479, 5350).
pub const PORTS_THAT_MATTER: &[u16] = &[80, 443, 3478, 3479, 5349, 5350, 5555, 8080, 8443];

/// Default number of randomly drawn ports in a sample, on top of [`PORTS_THAT_MATTER`]:
/// 64 gives a 95 % upper bound of 3/64 ≈ 5 % on the fraction of a uniformly-behaving range
/// that differs from what every sampled port showed (the "rule of three").
pub const DEFAULT_SAMPLE: usize = 64;

/// SplitMix64: a small, seedable generator so a sample is reproducible from `--seed`. The seed
/// is the caller's; this crate draws no randomness of its own.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0), by rejection so there is no modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        if n <= 1 {
            return 0;
        }
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let v = self.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }
}

/// A sample of `lo..=hi`: every port of [`PORTS_THAT_MATTER`] inside the range, plus `n` ports
/// drawn one per bucket after splitting the range into `n` equal buckets (stratified, so no
/// stretch of the range goes unsampled), reproducible from `seed`. Sorted, no duplicates. With
/// `n` ≥ the range size the whole range is returned.
pub fn sample_ports(lo: u16, hi: u16, n: usize, seed: u64) -> Vec<u16> {
    let (lo, hi) = (lo.min(hi), lo.max(hi));
    let size = u64::from(hi - lo) + 1;
    if n as u64 >= size {
        return (lo..=hi).collect();
    }
    let mut rng = SplitMix64::new(seed);
    let mut out: Vec<u16> = PORTS_THAT_MATTER
        .iter()
        .copied()
        .filter(|p| (lo..=hi).contains(p))
        .collect();
    let n = n as u64;
    for b in 0..n {
        // Bucket b covers [lo + b·size/n, lo + (b+1)·size/n).
        let start = u64::from(lo) + b * size / n;
        let end = u64::from(lo) + (b + 1) * size / n;
        let width = end.saturating_sub(start).max(1);
        let p = start + rng.below(width);
        if let Ok(p) = u16::try_from(p) {
            out.push(p);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// What a TCP connect found, RFC 9293 terms, or why nothing was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TcpState {
    /// The handshake completed.
    Open,
    /// A RST came back: nothing listens, or a firewall rejects with a reset.
    Refused,
    /// Nothing came back before the timeout, twice: dropped.
    Filtered,
    /// An ICMP unreachable (host, network, or administratively prohibited) answered the SYN.
    Unreachable,
    /// The probe could not be made or read: a local error (the result's `error` names it:
    /// no descriptor, no route, a local policy refusing the connect).
    Error,
    /// Never tried: the sweep stopped first.
    NotProbed,
}

impl TcpState {
    /// Lower-case name for reports.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::Open => "open",
            TcpState::Refused => "refused",
            TcpState::Filtered => "filtered",
            TcpState::Unreachable => "unreachable",
            TcpState::Error => "error",
            TcpState::NotProbed => "not-probed",
        }
    }

    /// Whether the network said something about the port (the state is a measurement, not
    /// a local failure or a port left out).
    pub fn is_measured(self) -> bool {
        !matches!(self, TcpState::Error | TcpState::NotProbed)
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A local failure that kept a probe from being made or read (out of descriptors, refused by
/// this host's policy, no route): the OS error's symbolic name and its text.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LocalError {
    /// `EMFILE`, `EACCES`, `ENETUNREACH` …
    pub errno: String,
    /// The OS's words for it.
    pub message: String,
}

impl fmt::Display for LocalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.errno, self.message)
    }
}

/// What a STUN Binding over an open TCP connection showed (RFC 8489 §6.2.2).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum StunOverTcp {
    /// Not tried (port not open, or STUN checks disabled).
    NotTried,
    /// A STUN response came back: a real STUN/TURN listener.
    Answered {
        /// SOFTWARE, if sent.
        software: Option<String>,
    },
    /// The connection was accepted but no STUN response came (closed, silence, or other bytes).
    NoStun,
}

/// One TCP port's result.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TcpPortResult {
    /// The port.
    pub port: u16,
    /// The connect outcome.
    pub state: TcpState,
    /// Time to the SYN-ACK or RST, when one came.
    #[serde(with = "crate::serde_util::opt_secs")]
    pub connect_time: Option<Duration>,
    /// STUN over the connection, for open ports.
    pub stun: StunOverTcp,
    /// Tries made (SYNs sent for it: 1, or 2 after a timeout; 0 when none could be).
    pub tries: u8,
    /// The local error behind an `error` state, or the OS error an `unreachable` came with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<LocalError>,
}

impl TcpPortResult {
    /// A port the sweep never tried.
    pub fn not_probed(port: u16) -> Self {
        Self {
            port,
            state: TcpState::NotProbed,
            connect_time: None,
            stun: StunOverTcp::NotTried,
            tries: 0,
            error: None,
        }
    }
}

/// How a UDP port answered a STUN Binding request (RFC 8489 §6.2.1), or why it was not asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UdpState {
    /// A STUN response (success or error) came back: a STUN server listens there.
    Answered,
    /// Nothing came back to any try: dropped on the way, or nothing listens and ICMP is
    /// filtered.
    Silent,
    /// ICMP port unreachable: the host is reachable and nothing listens (or a firewall rejects
    /// with that ICMP type).
    PortUnreachable,
    /// ICMP host or network unreachable, or administratively prohibited.
    Unreachable,
    /// The probe could not be made or read: a local error (the result's `error` names it).
    Error,
    /// Never tried: the sweep stopped first (or before an answer or the timeout).
    NotProbed,
}

impl UdpState {
    /// Lower-case name for reports.
    pub fn name(self) -> &'static str {
        match self {
            UdpState::Answered => "answered",
            UdpState::Silent => "silent",
            UdpState::PortUnreachable => "port-unreachable",
            UdpState::Unreachable => "unreachable",
            UdpState::Error => "error",
            UdpState::NotProbed => "not-probed",
        }
    }

    /// Whether the network said something about the port.
    pub fn is_measured(self) -> bool {
        !matches!(self, UdpState::Error | UdpState::NotProbed)
    }
}

impl fmt::Display for UdpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One UDP port's result.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UdpPortResult {
    /// The port.
    pub port: u16,
    /// What came back.
    pub state: UdpState,
    /// Binding requests sent (each try its own transaction, so an answer's round trip is
    /// never ambiguous).
    pub tries: u8,
    /// Round trip of the answered try.
    #[serde(with = "crate::serde_util::opt_secs")]
    pub rtt: Option<Duration>,
    /// The reflexive address the server saw (XOR-MAPPED-ADDRESS, RFC 8489 §14.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mapped: Option<SocketAddr>,
    /// SOFTWARE of the answer (RFC 8489 §14.14), lossy UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub software: Option<String>,
    /// The ERROR-CODE of an error response (RFC 8489 §14.8): still a STUN server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u16>,
    /// The local error behind an `error` state, or the OS error an `unreachable` came with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<LocalError>,
}

impl UdpPortResult {
    /// A port with `state` and nothing else known.
    pub fn bare(port: u16, state: UdpState, tries: u8) -> Self {
        Self {
            port,
            state,
            tries,
            rtt: None,
            mapped: None,
            software: None,
            error_code: None,
            error: None,
        }
    }
}

/// A run of ports that behaved alike.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PortRun {
    /// First port the range stands for.
    pub start: u16,
    /// Last port the range stands for.
    pub end: u16,
    /// The state every sampled port in it showed.
    pub state: TcpState,
    /// Ports actually tried in the range.
    pub tried: usize,
    /// Of which a STUN listener answered.
    pub stun_answered: usize,
}

/// Whether something between us and the target accepts connections the target would not.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Middlebox {
    /// Nothing suggests one.
    NoneSeen,
    /// Most ports accept connections, and among them ports where no STUN answers, while the
    /// target does answer STUN somewhere: a transparent proxy or SYN proxy completes
    /// handshakes on the target's behalf. Port reachability through it says little.
    AcceptsEverything {
        /// Open ports without a STUN answer.
        open_without_stun: usize,
        /// Ports tried.
        tried: usize,
    },
    /// Every tried port is open and none answers STUN: either the target accepts everything
    /// (not a STUN server) or a proxy does; the sweep cannot tell which.
    AllOpenNoStun {
        /// Ports tried.
        tried: usize,
    },
}

/// The sweep's reading of a set of TCP results.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TcpSummary {
    /// Lowest port of the swept range.
    pub range_start: u16,
    /// Highest port of the swept range.
    pub range_end: u16,
    /// Whether every port was tried (no sampling).
    pub full: bool,
    /// Ports tried.
    pub tried: usize,
    /// The range cut where the state changes between consecutive tried ports (a cut falls
    /// halfway between them: its exact place was not measured when sampling).
    pub ranges: Vec<PortRun>,
    /// Count per state.
    pub open: usize,
    /// Count per state.
    pub refused: usize,
    /// Count per state.
    pub filtered: usize,
    /// Count per state.
    pub unreachable: usize,
    /// Ports a local error kept from being probed.
    pub error: usize,
    /// Ports never tried (the sweep stopped first).
    pub not_probed: usize,
    /// Middlebox verdict.
    pub middlebox: Middlebox,
    /// Silent ports among ports rejected with ICMP errors, when there are some.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_rate_limited: Option<IcmpRateLimited>,
    /// One sentence a person reads.
    pub text: String,
}

/// Silent ports that lie between ports rejected with ICMP errors (in port order): routers
/// rate-limit the ICMP errors they send (Linux: a burst of about 6, then one per second per
/// destination), so after the burst a rejected port reads as silent. Those ports are most
/// likely rejected too; either way nothing gets through them. The states stay as measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct IcmpRateLimited {
    /// First ICMP-rejected port of the stretch.
    pub start: u16,
    /// Last ICMP-rejected port of the stretch.
    pub end: u16,
    /// Ports of the stretch answered with an ICMP error.
    pub rejected: usize,
    /// Silent (filtered) ports between them.
    pub silent: usize,
}

/// The silent ports bracketed by ICMP-rejected ones in `rs` (sorted by port), if any.
fn icmp_rate_limited(rs: &[&TcpPortResult]) -> Option<IcmpRateLimited> {
    let measured: Vec<&&TcpPortResult> = rs.iter().filter(|r| r.state.is_measured()).collect();
    let icmp: Vec<usize> = measured
        .iter()
        .enumerate()
        .filter(|(_, r)| r.state == TcpState::Unreachable)
        .map(|(i, _)| i)
        .collect();
    let mut silent = 0;
    let mut span: Option<(usize, usize)> = None;
    for w in icmp.windows(2) {
        let &[a, b] = w else { continue };
        let between = measured.get(a + 1..b).unwrap_or(&[]);
        let quiet = between
            .iter()
            .filter(|r| r.state == TcpState::Filtered)
            .count();
        // Only a gap of silence (nothing else answered in between) reads as lost errors.
        if quiet > 0 && quiet == between.len() {
            silent += quiet;
            span = Some(span.map_or((a, b), |(s, _)| (s, b)));
        }
    }
    let (mut s, mut e) = span?;
    // The burst before the first gap and errors right after the last belong to the stretch.
    let unreachable = |i: usize| {
        measured
            .get(i)
            .is_some_and(|r| r.state == TcpState::Unreachable)
    };
    while s > 0 && unreachable(s - 1) {
        s -= 1;
    }
    while unreachable(e + 1) {
        e += 1;
    }
    let (start, end) = (measured.get(s)?.port, measured.get(e)?.port);
    let rejected = measured
        .get(s..=e)
        .unwrap_or(&[])
        .iter()
        .filter(|r| r.state == TcpState::Unreachable)
        .count();
    Some(IcmpRateLimited {
        start,
        end,
        rejected,
        silent,
    })
}

/// 95 % upper bound on the fraction of a range's ports that differ from what all `k` uniformly
/// sampled ports showed ("rule of three", exact enough for k ≥ 10; 1.0 for k = 0).
pub fn rule_of_three(k: usize) -> f64 {
    if k == 0 {
        1.0
    } else {
        (3.0 / k as f64).min(1.0)
    }
}

/// Compress results (any order) over `lo..=hi` into ranges and a verdict.
pub fn summarize_tcp(lo: u16, hi: u16, results: &[TcpPortResult]) -> TcpSummary {
    let mut rs: Vec<&TcpPortResult> = results.iter().collect();
    rs.sort_by_key(|r| r.port);
    let size = usize::from(hi.saturating_sub(lo)) + 1;
    let full = rs.len() >= size;
    let mut ranges: Vec<PortRun> = Vec::new();
    for r in &rs {
        let stun = usize::from(matches!(r.stun, StunOverTcp::Answered { .. }));
        match ranges.last_mut() {
            Some(last) if last.state == r.state => {
                last.end = r.port;
                last.tried += 1;
                last.stun_answered += stun;
            }
            _ => ranges.push(PortRun {
                start: r.port,
                end: r.port,
                state: r.state,
                tried: 1,
                stun_answered: stun,
            }),
        }
    }
    // Stretch the ranges over the whole swept range: the first starts at `lo`, the last ends at
    // `hi`, and each cut sits halfway between the two tried ports on either side of it.
    let n = ranges.len();
    for i in 0..n {
        let next_start = ranges.get(i + 1).map(|r| r.start);
        if let Some(r) = ranges.get_mut(i) {
            if i == 0 {
                r.start = lo;
            }
            match next_start {
                Some(ns) => r.end = r.end + (ns - r.end) / 2,
                None => r.end = hi,
            }
        }
        if let (Some(prev_end), Some(r)) = (
            i.checked_sub(1).and_then(|j| ranges.get(j)).map(|r| r.end),
            ranges.get_mut(i),
        ) {
            r.start = prev_end.saturating_add(1);
        }
    }
    let count = |s: TcpState| rs.iter().filter(|r| r.state == s).count();
    let (open, refused, filtered, unreachable, error, not_probed) = (
        count(TcpState::Open),
        count(TcpState::Refused),
        count(TcpState::Filtered),
        count(TcpState::Unreachable),
        count(TcpState::Error),
        count(TcpState::NotProbed),
    );
    let middlebox = middlebox(&rs);
    let icmp_rate_limited = icmp_rate_limited(&rs);
    let mut text = ranges
        .iter()
        .map(|r| {
            let span = if r.start == r.end {
                r.start.to_string()
            } else {
                format!("{}–{}", r.start, r.end)
            };
            if full {
                format!("{span} {}", r.state.name())
            } else {
                format!("{span} {} ({} tried)", r.state.name(), r.tried)
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    if !full && !rs.is_empty() {
        let min_k = ranges.iter().map(|r| r.tried).min().unwrap_or(0);
        text.push_str(&format!(
            "; sampled {} of {} ports: with 95 % confidence at most {:.0} % of any range differs \
             from its sampled ports, and cuts are exact only to within the gap between samples",
            rs.len(),
            size,
            rule_of_three(min_k) * 100.0
        ));
    }
    match &middlebox {
        Middlebox::AcceptsEverything { open_without_stun, tried } => text.push_str(&format!(
            "; {open_without_stun} of {tried} ports accept connections without a STUN answer \
             while the target answers STUN elsewhere: a transparent proxy or SYN proxy is in the way"
        )),
        Middlebox::AllOpenNoStun { tried } => text.push_str(&format!(
            "; all {tried} ports accept and none answers STUN: a proxy accepting everything, or \
             not a STUN/TURN server"
        )),
        Middlebox::NoneSeen => {}
    }
    if let Some(l) = &icmp_rate_limited {
        text.push_str(&format!(
            "; {} silent ports lie among {} ports rejected with ICMP errors ({}–{}): routers \
             rate-limit ICMP errors (Linux: a burst of about 6, then 1 per second), so those are \
             most likely rejected too; blocked either way",
            l.silent, l.rejected, l.start, l.end
        ));
    }
    TcpSummary {
        range_start: lo,
        range_end: hi,
        full,
        tried: rs.len(),
        ranges,
        open,
        refused,
        filtered,
        unreachable,
        error,
        not_probed,
        middlebox,
        icmp_rate_limited,
        text,
    }
}

/// The middlebox reading. A STUN server (or a TURN server) answers STUN on the ports it serves;
/// a network that completes handshakes on ports where nothing then speaks STUN, across most of
/// the sample, is answering for the target.
fn middlebox(rs: &[&TcpPortResult]) -> Middlebox {
    let rs: Vec<&&TcpPortResult> = rs.iter().filter(|r| r.state.is_measured()).collect();
    let tried = rs.len();
    if tried < 8 {
        return Middlebox::NoneSeen;
    }
    let open: Vec<_> = rs.iter().filter(|r| r.state == TcpState::Open).collect();
    let stun = open
        .iter()
        .filter(|r| matches!(r.stun, StunOverTcp::Answered { .. }))
        .count();
    let silent_open = open
        .iter()
        .filter(|r| matches!(r.stun, StunOverTcp::NoStun))
        .count();
    // "Most": at least 90 % of tried ports open.
    if open.len() * 10 < tried * 9 {
        return Middlebox::NoneSeen;
    }
    if stun == 0 {
        return Middlebox::AllOpenNoStun { tried };
    }
    if silent_open > 0 {
        return Middlebox::AcceptsEverything {
            open_without_stun: silent_open,
            tried,
        };
    }
    Middlebox::NoneSeen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(port: u16, state: TcpState, stun: bool) -> TcpPortResult {
        TcpPortResult {
            port,
            state,
            connect_time: None,
            stun: match (state, stun) {
                (TcpState::Open, true) => StunOverTcp::Answered { software: None },
                (TcpState::Open, false) => StunOverTcp::NoStun,
                _ => StunOverTcp::NotTried,
            },
            tries: 1,
            error: None,
        }
    }

    #[test]
    fn sample_is_reproducible_stratified_and_holds_the_ports_that_matter() {
        let a = sample_ports(443, 65535, 64, 7);
        assert_eq!(a, sample_ports(443, 65535, 64, 7));
        assert_ne!(a, sample_ports(443, 65535, 64, 8));
        for p in [443, 3478, 3479, 5349, 5350, 5555, 8080, 8443] {
            assert!(a.contains(&p), "{p}");
        }
        assert!(!a.contains(&80), "80 is outside 443–65535");
        // One draw per bucket of 1016 ports: every bucket is hit.
        let size = 65535 - 443 + 1;
        for b in 0..64u32 {
            let start = 443 + b * size / 64;
            let end = 443 + (b + 1) * size / 64;
            assert!(
                a.iter().any(|p| (start..end).contains(&u32::from(*p))),
                "bucket {b}"
            );
        }
        assert!(a.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn small_ranges_are_swept_whole() {
        assert_eq!(
            sample_ports(100, 109, 64, 1),
            (100..=109).collect::<Vec<_>>()
        );
        assert_eq!(sample_ports(7, 7, 1, 1), vec![7]);
    }

    #[test]
    fn generator_below_is_in_range_and_covers_it() {
        let mut g = SplitMix64::new(1);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            let v = g.below(10) as usize;
            seen[v] = true;
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(g.below(1), 0);
        assert_eq!(g.below(0), 0);
    }

    #[test]
    fn full_sweep_compresses_to_exact_ranges() {
        let mut results = Vec::new();
        for p in 1000..=1009 {
            let st = if p < 1004 {
                TcpState::Open
            } else if p < 1007 {
                TcpState::Filtered
            } else {
                TcpState::Refused
            };
            results.push(r(p, st, true));
        }
        let s = summarize_tcp(1000, 1009, &results);
        assert!(s.full);
        let got: Vec<_> = s.ranges.iter().map(|r| (r.start, r.end, r.state)).collect();
        assert_eq!(
            got,
            vec![
                (1000, 1003, TcpState::Open),
                (1004, 1006, TcpState::Filtered),
                (1007, 1009, TcpState::Refused)
            ]
        );
        assert_eq!(
            s.text,
            "1000–1003 open, 1004–1006 filtered, 1007–1009 refused"
        );
        assert_eq!((s.open, s.filtered, s.refused), (4, 3, 3));
    }

    #[test]
    fn sampled_sweep_cuts_between_samples_and_states_confidence() {
        let results = vec![
            r(443, TcpState::Open, true),
            r(600, TcpState::Open, false),
            r(1000, TcpState::Open, false),
            r(2000, TcpState::Filtered, false),
            r(40000, TcpState::Filtered, false),
        ];
        let s = summarize_tcp(443, 65535, &results);
        assert!(!s.full);
        let got: Vec<_> = s
            .ranges
            .iter()
            .map(|r| (r.start, r.end, r.state, r.tried))
            .collect();
        assert_eq!(
            got,
            vec![
                (443, 1500, TcpState::Open, 3),
                (1501, 65535, TcpState::Filtered, 2)
            ]
        );
        assert!(s.text.starts_with(
            "443–1500 open (3 tried), 1501–65535 filtered (2 tried); sampled 5 of 65093"
        ));
        assert!(s.text.contains("at most 100 %"), "{}", s.text);
        assert_eq!(rule_of_three(64), 3.0 / 64.0);
    }

    #[test]
    fn middlebox_that_accepts_everything_is_flagged() {
        let mut results: Vec<_> = (0..20)
            .map(|i| r(2000 + i * 100, TcpState::Open, false))
            .collect();
        results.push(r(3478, TcpState::Open, true));
        let s = summarize_tcp(443, 65535, &results);
        assert_eq!(
            s.middlebox,
            Middlebox::AcceptsEverything {
                open_without_stun: 20,
                tried: 21
            }
        );
        assert!(s.text.contains("transparent proxy"));
        // A real server with a few ports open and the rest refused is not a middlebox.
        let mut results: Vec<_> = (0..20)
            .map(|i| r(2000 + i * 100, TcpState::Refused, false))
            .collect();
        results.push(r(3478, TcpState::Open, true));
        assert_eq!(
            summarize_tcp(443, 65535, &results).middlebox,
            Middlebox::NoneSeen
        );
        // Everything open and no STUN anywhere: cannot tell.
        let results: Vec<_> = (0..20)
            .map(|i| r(2000 + i * 100, TcpState::Open, false))
            .collect();
        assert_eq!(
            summarize_tcp(443, 65535, &results).middlebox,
            Middlebox::AllOpenNoStun { tried: 20 }
        );
    }

    #[test]
    fn silence_between_icmp_rejections_is_read_as_rate_limiting_and_states_stay() {
        use TcpState::{Filtered, Refused, Unreachable};
        // A full sweep behind a router that rejects 100–199 with ICMP: a burst of errors,
        // then silence with an error now and then; 50–99 dropped, 200–209 refused.
        let mut results: Vec<_> = (50..100).map(|p| r(p, Filtered, false)).collect();
        for p in 100..200u16 {
            let st = if p < 106 || p % 40 == 0 {
                Unreachable
            } else {
                Filtered
            };
            results.push(r(p, st, false));
        }
        results.extend((200..210).map(|p| r(p, Refused, false)));
        let s = summarize_tcp(50, 209, &results);
        let l = s.icmp_rate_limited.unwrap();
        // 100–105 and 120, 160: the silence between 105 and 160 (53 ports) counts, the
        // dropped range before and the silence after the last error do not.
        assert_eq!((l.start, l.end, l.rejected), (100, 160, 8));
        assert_eq!(l.silent, 53);
        assert_eq!(s.filtered, 50 + 100 - 8);
        assert!(
            s.text
                .contains("53 silent ports lie among 8 ports rejected"),
            "{}",
            s.text
        );
        // Answers between two errors break the pattern.
        let mixed = vec![
            r(1, Unreachable, false),
            r(2, Refused, false),
            r(3, Filtered, false),
            r(4, Unreachable, false),
        ];
        assert_eq!(summarize_tcp(1, 4, &mixed).icmp_rate_limited, None);
    }

    #[test]
    fn errors_and_ports_left_out_are_counted_apart_and_never_read_as_a_middlebox() {
        let mut results: Vec<_> = (0..20)
            .map(|i| r(2000 + i, TcpState::Open, false))
            .collect();
        results.push(r(3478, TcpState::Open, true));
        results.extend((0..30).map(|i| TcpPortResult::not_probed(4000 + i)));
        let mut e = r(5000, TcpState::Error, false);
        e.error = Some(LocalError {
            errno: "EMFILE".into(),
            message: "Too many open files".into(),
        });
        results.push(e);
        let s = summarize_tcp(2000, 5000, &results);
        assert_eq!((s.open, s.error, s.not_probed), (21, 1, 30));
        assert!(matches!(
            s.middlebox,
            Middlebox::AcceptsEverything { tried: 21, .. }
        ));
        assert!(s.text.contains("not-probed"), "{}", s.text);
        assert_eq!(
            LocalError {
                errno: "EACCES".into(),
                message: "Permission denied".into()
            }
            .to_string(),
            "EACCES (Permission denied)"
        );
    }

    #[test]
    fn empty_results_do_not_panic() {
        let s = summarize_tcp(443, 65535, &[]);
        assert!(s.ranges.is_empty());
        assert_eq!(s.tried, 0);
    }
}
