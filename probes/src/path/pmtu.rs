//! Path MTU toward a STUN server: the largest datagram that passes with DF set, found with
//! Binding requests grown by a PADDING attribute (RFC 5780 §7.6), and what happens to larger
//! ones — an ICMP "fragmentation needed" / "packet too big" (RFC 1191, RFC 8201: path MTU
//! discovery works), or silence (a PMTU black hole: large packets vanish and nobody says so).
//!
//! WireGuard in NetBird carries inner packets of 1280 bytes by default, so its outer packets
//! are 1340 bytes over IPv4 (20 IP + 8 UDP + 32 WireGuard) and 1360 over IPv6; the report says
//! whether those fit.
//!
//! The search: the largest size first (the common case: it passes and one round trip settles
//! it), then the floor (576 for IPv4, RFC 791; 1280 for IPv6, RFC 8200) to know the server
//! answers at all, then bisection down to 8 bytes. Loss is not a verdict: every size gets up to
//! `attempts` tries before it counts as too big. A size that vanished silently is tried once
//! more without DF: if that answers, the large DF packets were dropped on the way out without
//! an ICMP (a black hole toward the server); a server that pads its responses to the request's
//! size (stunmap serve does) also shows the way back: responses that arrive reassembled from
//! fragments show the path toward us is smaller.
//!
//! Sizes are IP packet sizes (what an MTU limits), multiples of 4.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::finding::{Fix, Severity};
use crate::stun::attr;
use crate::stun::view::StunView;
use crate::stun::{Class, MessageType, MessageWriter, Method, TransactionId, TransactionIdSource};

/// IPv4 header plus UDP header.
const V4_OVERHEAD: u16 = 28;
/// IPv6 header plus UDP header.
const V6_OVERHEAD: u16 = 48;
/// STUN header, the PADDING attribute's header and FINGERPRINT.
const STUN_FIXED: u16 = 20 + 4 + 8;
/// WireGuard's framing: a 16-byte header and a 16-byte tag.
const WIREGUARD_OVERHEAD: u16 = 32;
/// NetBird's default inner MTU.
pub const NETBIRD_INNER_MTU: u16 = 1280;

/// The outer packet size of a full WireGuard packet for `inner` over IPv4 or IPv6.
pub fn wireguard_outer(inner: u16, v4: bool) -> u16 {
    inner + WIREGUARD_OVERHEAD + if v4 { V4_OVERHEAD } else { V6_OVERHEAD }
}

/// How a search is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PmtuConfig {
    /// The STUN server.
    pub server: SocketAddr,
    /// The smallest size tried (576 IPv4, 1280 IPv6).
    pub floor: u16,
    /// The largest size tried (1500: Ethernet).
    pub ceiling: u16,
    /// Stop bisecting when the bounds are this close.
    pub resolution: u16,
    /// Tries per size before it counts as too big.
    pub attempts: u8,
    /// Wait per try.
    pub rto: Duration,
}

impl PmtuConfig {
    /// The defaults for `server`: 576 or 1280 up to 1500, 8 bytes, 3 tries of `rto`.
    pub fn new(server: SocketAddr, rto: Duration) -> PmtuConfig {
        PmtuConfig {
            server,
            floor: if server.is_ipv4() { 576 } else { 1280 },
            ceiling: 1500,
            resolution: 8,
            attempts: 3,
            rto,
        }
    }

    fn overhead(&self) -> u16 {
        if self.server.is_ipv4() {
            V4_OVERHEAD
        } else {
            V6_OVERHEAD
        }
    }

    /// The smallest size a padded request can have.
    fn min_size(&self) -> u16 {
        self.overhead() + STUN_FIXED
    }
}

/// One datagram the search wants sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmtuTransmit {
    /// IP packet size it makes.
    pub size: u16,
    /// Send it with DF (don't fragment; IPv6: no local fragmentation either).
    pub dont_fragment: bool,
}

/// An error the socket reported for a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum TooBig {
    /// ICMP fragmentation needed / packet too big from a router, with the MTU it named.
    Icmp {
        /// The next-hop MTU the router named (0: none).
        mtu: u16,
        /// The router.
        from: Option<IpAddr>,
    },
    /// The send was refused locally (EMSGSIZE: larger than the interface's MTU).
    Local {
        /// The MTU the kernel knows, if it said.
        mtu: Option<u16>,
    },
}

/// What one size did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "result")]
pub enum SizeResult {
    /// An answer came back.
    Passed {
        /// The answer's IP size.
        response: u16,
        /// The largest fragment the answer was reassembled from (none: not fragmented).
        fragment: Option<u16>,
    },
    /// Refused with an error (ICMP or local).
    TooBig {
        /// Which.
        error: TooBig,
    },
    /// Every try went unanswered.
    Silent,
}

/// One size tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SizeTest {
    /// IP packet size.
    pub size: u16,
    /// With DF.
    pub dont_fragment: bool,
    /// Tries made.
    pub tries: u8,
    /// What happened.
    pub result: SizeResult,
}

/// How large datagrams fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Failure {
    /// Nothing failed: the ceiling passed.
    None,
    /// An ICMP error named the limit: path MTU discovery works.
    Icmp,
    /// The local interface is the limit.
    LocalInterface,
    /// Large datagrams vanish without an ICMP error: a PMTU black hole.
    BlackHole,
    /// Not even the floor got an answer: nothing measured.
    NoAnswer,
}

/// The search's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PmtuReport {
    /// The server.
    pub server: SocketAddr,
    /// The largest size that got an answer with DF set.
    pub largest_passed: Option<u16>,
    /// The smallest size that failed with DF set.
    pub smallest_failed: Option<u16>,
    /// How the failures looked.
    pub failure: Failure,
    /// The MTU an ICMP error named, and the router.
    pub icmp_mtu: Option<u16>,
    /// The router that sent it.
    pub icmp_from: Option<IpAddr>,
    /// Without DF the smallest failing size got through (fragmented): the loss is of DF
    /// packets, on the way to the server.
    pub fragments_pass: Option<bool>,
    /// The largest fragment seen in a reassembled answer: the path toward this host is that
    /// small (answers larger than it arrive fragmented).
    pub down_fragment: Option<u16>,
    /// Whether the server's answers were as large as the requests (it pads; the way back was
    /// measured too). `None` when nothing answered.
    pub server_pads: Option<bool>,
    /// WireGuard's outer packet size for NetBird's default inner MTU.
    pub wireguard_outer: u16,
    /// Whether it passes (DF, both ways when the server pads).
    pub wireguard_fits: Option<bool>,
    /// Every size tried, in order.
    pub tests: Vec<SizeTest>,
    /// Stopped before the end.
    pub incomplete: bool,
}

#[derive(Clone, Copy, Debug)]
struct Current {
    size: u16,
    df: bool,
    tries: u8,
    tid: TransactionId,
    due: Option<Instant>,
    sent: bool,
}

/// The search. Drive it: [`PmtuSearch::poll_transmit`] (the bytes to send and how), then feed
/// [`PmtuSearch::handle_response`], [`PmtuSearch::handle_error`] and
/// [`PmtuSearch::handle_timeout`] until [`PmtuSearch::is_done`].
#[derive(Debug)]
pub struct PmtuSearch {
    cfg: PmtuConfig,
    ids: TransactionIdSource,
    /// Largest size known to pass, smallest known to fail (DF).
    lo: Option<u16>,
    hi: Option<u16>,
    current: Option<Current>,
    /// The next size from an ICMP hint.
    hint: Option<u16>,
    /// Whether the no-DF check of the smallest silent size was made.
    checked_fragments: bool,
    report: PmtuReport,
    done: bool,
}

impl PmtuSearch {
    /// A search toward `cfg.server`.
    pub fn new(cfg: PmtuConfig, ids: TransactionIdSource) -> PmtuSearch {
        let v4 = cfg.server.is_ipv4();
        let mut s = PmtuSearch {
            cfg,
            ids,
            lo: None,
            hi: None,
            current: None,
            hint: None,
            checked_fragments: false,
            report: PmtuReport {
                server: cfg.server,
                largest_passed: None,
                smallest_failed: None,
                failure: Failure::None,
                icmp_mtu: None,
                icmp_from: None,
                fragments_pass: None,
                down_fragment: None,
                server_pads: None,
                wireguard_outer: wireguard_outer(NETBIRD_INNER_MTU, v4),
                wireguard_fits: None,
                tests: Vec::new(),
                incomplete: false,
            },
            done: false,
        };
        let first = s.round(cfg.ceiling);
        s.start(first, true);
        s
    }

    /// Round a size down to what a padded request can be (a multiple of 4, at least the
    /// smallest request).
    fn round(&self, size: u16) -> u16 {
        (size - size % 4).max(self.cfg.min_size())
    }

    fn start(&mut self, size: u16, df: bool) {
        self.current = Some(Current {
            size,
            df,
            tries: 0,
            tid: self.ids.next_id(),
            due: None,
            sent: false,
        });
    }

    /// The bytes of the next datagram (appended to `buf`), or `None`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<PmtuTransmit> {
        let overhead = self.cfg.overhead();
        let c = self.current.as_mut()?;
        if c.sent || self.done {
            return None;
        }
        c.sent = true;
        c.tries += 1;
        c.due = Some(now + self.cfg.rto);
        let stun_len = c.size.saturating_sub(overhead);
        let pad = usize::from(stun_len.saturating_sub(STUN_FIXED));
        let mut w = MessageWriter::new(buf, MessageType::BINDING_REQUEST, &c.tid);
        // RFC 5780 §7.6: the value of PADDING does not matter.
        w.attr(attr::PADDING, &vec![0u8; pad]);
        w.fingerprint();
        w.finish();
        Some(PmtuTransmit {
            size: c.size,
            dont_fragment: c.df,
        })
    }

    /// When to call [`PmtuSearch::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.done {
            return None;
        }
        self.current.and_then(|c| c.due)
    }

    /// A datagram from the server: the answer to the current size if its transaction id
    /// matches. `fragment`: the largest fragment it was reassembled from, as the socket
    /// reported it (Linux `IP_RECVFRAGSIZE`).
    pub fn handle_response(&mut self, bytes: &[u8], fragment: Option<u16>) -> bool {
        let Some(c) = self.current else { return false };
        let Ok(view) = StunView::parse(bytes) else {
            return false;
        };
        let ty = view.message_type();
        if view.transaction_id() != c.tid
            || ty.method != Method::BINDING
            || !matches!(ty.class, Class::SuccessResponse | Class::ErrorResponse)
        {
            return false;
        }
        let response = (bytes.len() as u16).saturating_add(self.cfg.overhead());
        let fragment = fragment.filter(|f| *f > 0 && *f < response);
        if c.df {
            let pads = response + 4 >= c.size;
            self.report.server_pads = Some(self.report.server_pads.unwrap_or(true) && pads);
        }
        if let Some(f) = fragment {
            self.report.down_fragment =
                Some(self.report.down_fragment.map_or(f, |d: u16| d.max(f)));
        }
        self.finish(c, SizeResult::Passed { response, fragment });
        true
    }

    /// The socket reported an error for the current size: too big (ICMP or local).
    pub fn handle_error(&mut self, error: TooBig) {
        let Some(c) = self.current else { return };
        if !c.df {
            return;
        }
        match error {
            TooBig::Icmp { mtu, from } => {
                if mtu > 0 {
                    self.report.icmp_mtu = Some(mtu);
                }
                self.report.icmp_from = from.or(self.report.icmp_from);
                if mtu > 0 {
                    self.hint = Some(mtu);
                }
            }
            TooBig::Local { mtu } => {
                if let Some(m) = mtu {
                    self.hint = Some(m);
                }
            }
        }
        self.finish(c, SizeResult::TooBig { error });
    }

    /// Time passed: resend the current size, or count it silent after the last try.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(c) = self.current.as_mut() else {
            return;
        };
        if c.due.is_none_or(|d| now < d) {
            return;
        }
        if c.tries < self.cfg.attempts {
            c.sent = false;
            c.due = None;
            return;
        }
        let c = *c;
        self.finish(c, SizeResult::Silent);
    }

    /// Stop: what was measured is the report, marked incomplete.
    pub fn cancel(&mut self) {
        if !self.done {
            self.report.incomplete = true;
            self.conclude();
        }
    }

    /// Whether the search is over.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The report, once done.
    pub fn report(&self) -> Option<&PmtuReport> {
        self.done.then_some(&self.report)
    }

    fn finish(&mut self, c: Current, result: SizeResult) {
        self.report.tests.push(SizeTest {
            size: c.size,
            dont_fragment: c.df,
            tries: c.tries,
            result,
        });
        self.current = None;
        let passed = matches!(result, SizeResult::Passed { .. });
        if !c.df {
            // The no-DF check of a silent size.
            self.report.fragments_pass = Some(passed);
            self.conclude();
            return;
        }
        if passed {
            self.lo = Some(self.lo.map_or(c.size, |l| l.max(c.size)));
        } else {
            self.hi = Some(self.hi.map_or(c.size, |h| h.min(c.size)));
        }
        self.next();
    }

    fn next(&mut self) {
        let ceiling = self.round(self.cfg.ceiling);
        let floor = self.round(self.cfg.floor);
        match (self.lo, self.hi) {
            (Some(l), _) if l >= ceiling => return self.conclude(),
            (None, Some(h)) if h <= floor => return self.conclude(),
            (None, Some(_)) => {
                // The ceiling failed: an ICMP hint first, else the floor.
                let next = match self.hint.take().map(|m| self.round(m)) {
                    Some(m) if m > floor && Some(m) < self.hi => m,
                    _ => floor,
                };
                return self.start(next, true);
            }
            _ => {}
        }
        let (Some(lo), Some(hi)) = (self.lo, self.hi) else {
            return self.conclude();
        };
        if hi.saturating_sub(lo) <= self.cfg.resolution {
            return self.check_fragments();
        }
        let mid = match self.hint.take().map(|m| self.round(m)) {
            Some(m) if m > lo && m < hi => m,
            _ => self.round(lo + (hi - lo) / 2),
        };
        if mid <= lo || mid >= hi {
            return self.check_fragments();
        }
        self.start(mid, true);
    }

    /// After the search: when the smallest failing size vanished silently, try it once more
    /// without DF.
    fn check_fragments(&mut self) {
        let silent = self.hi.and_then(|h| {
            self.report
                .tests
                .iter()
                .any(|t| t.size == h && t.dont_fragment && t.result == SizeResult::Silent)
                .then_some(h)
        });
        match silent {
            Some(h) if !self.checked_fragments => {
                self.checked_fragments = true;
                self.start(h, false);
            }
            _ => self.conclude(),
        }
    }

    fn conclude(&mut self) {
        self.done = true;
        self.current = None;
        let r = &mut self.report;
        r.largest_passed = self.lo;
        r.smallest_failed = self.hi;
        let df_failures: Vec<&SizeTest> = r
            .tests
            .iter()
            .filter(|t| t.dont_fragment && !matches!(t.result, SizeResult::Passed { .. }))
            .collect();
        r.failure = if self.lo.is_none() && !df_failures.is_empty() {
            Failure::NoAnswer
        } else if df_failures.is_empty() {
            Failure::None
        } else if df_failures.iter().any(|t| {
            matches!(
                t.result,
                SizeResult::TooBig {
                    error: TooBig::Icmp { .. }
                }
            )
        }) {
            Failure::Icmp
        } else if df_failures.iter().all(|t| {
            matches!(
                t.result,
                SizeResult::TooBig {
                    error: TooBig::Local { .. }
                }
            )
        }) {
            Failure::LocalInterface
        } else {
            Failure::BlackHole
        };
        let wg = r.wireguard_outer;
        r.wireguard_fits = match (self.lo, self.hi) {
            (Some(l), _) if l >= wg => Some(r.down_fragment.is_none_or(|f| f >= wg)),
            (_, Some(h)) if h <= wg => Some(false),
            _ => None,
        };
    }
}

/// The verdict on a search, in the reference page's spirit: a severity, one line and a fix.
pub fn judge(r: &PmtuReport) -> (Severity, String, Option<Fix>) {
    let v4 = r.server.is_ipv4();
    let wg = r.wireguard_outer;
    let family = if v4 { "IPv4" } else { "IPv6" };
    let largest = r.largest_passed;
    let mss_clamp = "iptables -t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu";
    let icmp_rule = if v4 {
        "nft add rule inet filter input icmp type destination-unreachable accept   # type 3 code 4, fragmentation needed"
    } else {
        "nft add rule inet filter input icmpv6 type packet-too-big accept"
    };
    let inner_for = |outer: u16| outer.saturating_sub(wg - NETBIRD_INNER_MTU);
    match r.failure {
        Failure::NoAnswer => (
            Severity::Info,
            format!(
                "path MTU to {} not measured: no padded request got an answer (the server ignores PADDING, or UDP to it is blocked)",
                r.server
            ),
            None,
        ),
        Failure::None => (
            Severity::Info,
            format!(
                "{family} datagrams of {} bytes pass to {} with DF set: WireGuard's {wg}-byte packets fit",
                largest.unwrap_or(0),
                r.server
            ),
            None,
        ),
        failure => {
            let pmtu = largest.unwrap_or(0);
            let how = match failure {
                Failure::Icmp => format!(
                    "larger ones are refused with ICMP{} (path MTU discovery works)",
                    r.icmp_mtu
                        .map(|m| format!(" naming MTU {m}"))
                        .unwrap_or_default()
                ),
                Failure::LocalInterface => "the local interface's MTU is the limit".to_string(),
                _ => {
                    let mut s = String::from(
                        "larger ones vanish without any ICMP error: a PMTU black hole",
                    );
                    if r.fragments_pass == Some(true) {
                        s.push_str(
                            " (the same size without DF gets through fragmented: DF packets are dropped silently on the way out)",
                        );
                    }
                    s
                }
            };
            let fits = r.wireguard_fits.unwrap_or(pmtu >= wg);
            let line = format!(
                "path MTU to {} is {pmtu} bytes ({family}): {how}; WireGuard's {wg}-byte packets {}",
                r.server,
                if fits { "fit" } else { "do NOT fit" }
            );
            let severity = match (fits, failure) {
                (false, Failure::BlackHole) => Severity::High,
                (false, _) => Severity::Medium,
                (true, Failure::BlackHole) => Severity::Low,
                (true, _) => Severity::Info,
            };
            let fix = (!fits || failure == Failure::BlackHole).then(|| {
                let inner = inner_for(pmtu);
                let mut f = Fix::new(format!(
                    "Lower the VPN's MTU to fit the path: NetBird's WireGuard MTU {inner} makes its packets {pmtu} bytes; clamp TCP's MSS on the router so TCP through the tunnel never sends more"
                ))
                .command(format!("netbird up --mtu {inner}"))
                .command(mss_clamp);
                if failure == Failure::BlackHole {
                    f = f.command(icmp_rule).caveat(
                        "A black hole is a firewall that drops ICMP \"fragmentation needed\" / \"packet too big\": letting that ICMP type through fixes path MTU discovery for every application",
                    );
                }
                f
            });
            (severity, line, fix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::MessageType;

    const SERVER: &str = "198.18.0.10:3478";

    // The tests' base instant; every later time is derived from it.
    #[allow(clippy::disallowed_methods)]
    fn search() -> (PmtuSearch, Instant) {
        let cfg = PmtuConfig::new(SERVER.parse().unwrap(), Duration::from_millis(200));
        (
            PmtuSearch::new(cfg, TransactionIdSource::new([7; 16])),
            Instant::now(),
        )
    }

    /// A padded answer as long as the request.
    fn answer(req: &[u8], pad_to: Option<usize>) -> Vec<u8> {
        let v = StunView::parse(req).unwrap();
        let mut out = Vec::new();
        let mut w = MessageWriter::new(&mut out, MessageType::BINDING_SUCCESS, &v.transaction_id());
        w.xor_address(
            attr::XOR_MAPPED_ADDRESS,
            &"100.64.0.2:4000".parse().unwrap(),
        );
        let target = pad_to.unwrap_or(req.len());
        let base = w.len() + 4 + 8;
        if target > base {
            w.attr(attr::PADDING, &vec![0; target - base]);
        }
        w.fingerprint();
        w.finish();
        out
    }

    /// Run a search against a simulated path: requests up to `mtu` pass; larger ones get
    /// an ICMP (when `icmp`) or vanish; `down` limits the answers (fragmented above it).
    fn run(mtu: u16, icmp: bool, down: Option<u16>, fragments_pass: bool) -> PmtuReport {
        let (mut s, mut now) = search();
        let mut buf = Vec::new();
        for _ in 0..200 {
            if s.is_done() {
                break;
            }
            buf.clear();
            if let Some(t) = s.poll_transmit(now, &mut buf) {
                assert_eq!(buf.len() as u16 + 28, t.size, "size is the IP size");
                let passes = t.size <= mtu || (!t.dont_fragment && fragments_pass);
                if passes {
                    let a = answer(&buf, None);
                    let frag = down.filter(|d| a.len() as u16 + 28 > *d);
                    assert!(s.handle_response(&a, frag));
                } else if icmp && t.dont_fragment {
                    s.handle_error(TooBig::Icmp {
                        mtu,
                        from: Some("198.18.0.1".parse().unwrap()),
                    });
                }
                continue;
            }
            now = s.poll_timeout().unwrap();
            s.handle_timeout(now);
        }
        s.report().unwrap().clone()
    }

    #[test]
    fn a_clean_path_takes_one_round_trip() {
        let r = run(1500, true, None, false);
        assert_eq!(r.tests.len(), 1);
        assert_eq!((r.largest_passed, r.failure), (Some(1500), Failure::None));
        assert_eq!((r.wireguard_outer, r.wireguard_fits), (1340, Some(true)));
        assert_eq!(r.server_pads, Some(true));
        assert_eq!(judge(&r).0, Severity::Info);
    }

    #[test]
    fn icmp_names_the_mtu_and_the_search_goes_straight_to_it() {
        let r = run(1400, true, None, false);
        assert_eq!(r.largest_passed, Some(1400));
        assert_eq!(r.failure, Failure::Icmp);
        assert_eq!(r.icmp_mtu, Some(1400));
        assert_eq!(r.wireguard_fits, Some(true));
        // 1500 refused, then the hinted 1400 passes, then a few steps up to 1500.
        assert_eq!(r.tests[1].size, 1400);
        assert!(r.tests.len() <= 8, "{:?}", r.tests);
        let (sev, line, fix) = judge(&r);
        assert_eq!(sev, Severity::Info);
        assert!(
            line.contains("path MTU to 198.18.0.10:3478 is 1400"),
            "{line}"
        );
        assert!(fix.is_none());
    }

    #[test]
    fn a_black_hole_below_wireguards_size_is_high_with_the_mtu_fix() {
        let r = run(1300, false, None, true);
        assert_eq!(r.failure, Failure::BlackHole);
        let lp = r.largest_passed.unwrap();
        assert!((1292..=1300).contains(&lp), "{lp}");
        assert!(r.smallest_failed.unwrap() - lp <= 8);
        assert_eq!(r.wireguard_fits, Some(false));
        assert_eq!(r.fragments_pass, Some(true));
        // Every silent size was tried three times.
        assert!(
            r.tests
                .iter()
                .filter(|t| t.result == SizeResult::Silent)
                .all(|t| t.tries == 3)
        );
        let (sev, line, fix) = judge(&r);
        assert_eq!(sev, Severity::High);
        assert!(line.contains("black hole"), "{line}");
        assert!(line.contains("do NOT fit"), "{line}");
        let fix = fix.unwrap();
        assert!(
            fix.commands[0].starts_with("netbird up --mtu "),
            "{:?}",
            fix.commands
        );
        assert!(fix.commands.iter().any(|c| c.contains("TCPMSS")));
        assert!(
            fix.commands
                .iter()
                .any(|c| c.contains("destination-unreachable"))
        );
    }

    #[test]
    fn fragmented_answers_show_the_way_back() {
        let r = run(1500, true, Some(1400), false);
        assert_eq!(r.largest_passed, Some(1500));
        assert_eq!(r.down_fragment, Some(1400));
        assert_eq!(r.wireguard_fits, Some(true));
        let r = run(1500, true, Some(1300), false);
        assert_eq!(r.wireguard_fits, Some(false));
    }

    #[test]
    fn nothing_answers_means_not_measured() {
        let r = run(0, false, None, false);
        assert_eq!(r.failure, Failure::NoAnswer);
        assert_eq!(r.largest_passed, None);
        // The ceiling and the floor, three tries each, nothing more.
        assert_eq!(r.tests.len(), 2);
        assert!(judge(&r).1.contains("not measured"));
    }

    #[test]
    fn foreign_and_stale_datagrams_are_ignored() {
        let (mut s, now) = search();
        let mut buf = Vec::new();
        s.poll_transmit(now, &mut buf).unwrap();
        assert!(!s.handle_response(b"junk", None));
        let mut other = Vec::new();
        let mut w = MessageWriter::new(
            &mut other,
            MessageType::BINDING_SUCCESS,
            &TransactionId([1; 12]),
        );
        w.fingerprint();
        w.finish();
        assert!(!s.handle_response(&other, None));
        // A server that does not pad: the way back is not measured.
        let small = answer(&buf, Some(40));
        assert!(s.handle_response(&small, None));
        assert!(s.is_done());
        assert_eq!(s.report().unwrap().server_pads, Some(false));
    }

    #[test]
    fn cancel_reports_what_was_measured() {
        let (mut s, now) = search();
        let mut buf = Vec::new();
        s.poll_transmit(now, &mut buf).unwrap();
        s.cancel();
        assert!(s.is_done());
        assert!(s.report().unwrap().incomplete);
        assert_eq!(wireguard_outer(1280, false), 1360);
    }
}
