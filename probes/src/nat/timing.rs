//! How long the NAT tests wait: an RTT estimate, the one schedule every test follows, the whole
//! run's budget and the pacing of its datagrams. Pure: instants in, instants out.
//!
//! # The rule
//!
//! RFC 8489 §6.2.1 lets a client base its RTO on RTT estimates of the path instead of the
//! 500 ms default; this module does so, with RFC 6298 §2's estimator:
//! - The first unambiguous sample R gives SRTT = R and RTTVAR = R/2; each later one updates
//!   RTTVAR ← ¾·RTTVAR + ¼·|SRTT − R| and then SRTT ← ⅞·SRTT + ⅛·R.
//!   RTO = SRTT + max(G, 4·RTTVAR) with G = 1 ms. Karn's rule (RFC 6298 §3): an answer to a
//!   retransmitted request could answer any of its transmissions and is not a sample.
//! - The RTO is kept within [`Timing::floor`] (100 ms by default) and [`Timing::ceiling`], the
//!   initial RTO (`--rto`, 500 ms by default): a measured path only ever shortens the waits.
//!   The floor keeps a reply that Wi-Fi power saving or a busy CPU delays well past the
//!   first samples from reading as silence.
//! - Samples come from any answer of the family's run (all tests ask the same server host).
//!   Until UDP has answered anything, a round trip measured over TCP to the same host (a
//!   connect to the server; [`Schedule::tcp_sample`]) stands in for it; with neither, the
//!   initial RTO applies (the blind schedule).
//! - Every test transmits at most [`Timing::transmissions`] times (5), each transmission one
//!   RTO after the previous one (the RTO as it is at that moment), and gives up
//!   [`Timing::final_wait`] RTOs (1) after its last transmission. A test that stays silent
//!   therefore ends about 5 RTOs after it started: 0.5 s on a measured path below 30 ms RTT,
//!   2.5 s on the blind schedule.
//! - Nothing waits past the start plus [`Timing::budget`]: at the budget every test ends,
//!   and a test that had not made all its transmissions is marked as cut.
//! - The datagrams of one run leave at most [`Pace::per_second`] per second after a burst of
//!   [`Pace::burst`]; the adaptive rule changes when a test transmits, never how many tests
//!   run or how many transmissions each makes.
//!
//! With random loss p in each direction, a test whose server does answer stays silent only if
//! every transmission or its answer is lost: (1 − (1 − p)²)ⁿ for n transmissions. At p = 10 %
//! and n = 5 that is 0.19⁵ ≈ 2.5·10⁻⁴ per test (docs/nat.md has the per-mode sums).

use std::time::{Duration, Instant};

/// RFC 6298 §2's clock granularity G.
const GRANULARITY: Duration = Duration::from_millis(1);

/// The default lower bound of a measured RTO.
pub const DEFAULT_FLOOR: Duration = Duration::from_millis(100);
/// The default initial RTO (RFC 8489 §6.2.1), also the ceiling of a measured one.
pub const DEFAULT_INITIAL_RTO: Duration = Duration::from_millis(500);
/// The default number of transmissions of every test.
pub const DEFAULT_TRANSMISSIONS: u8 = 5;
/// The default whole-run budget: the blind schedule (5 × 500 ms) fits, with room.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(3);

/// How fast the datagrams of one run may leave: a token bucket of `burst` tokens refilled at
/// `per_second`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Pace {
    /// Sustained datagrams per second (at least 1).
    pub per_second: u32,
    /// Datagrams that may leave back to back (at least 1).
    pub burst: u32,
}

impl Pace {
    /// The engine's polite default (250/s, bursts of 32).
    pub const DEFAULT: Pace = Pace {
        per_second: 250,
        burst: 32,
    };

    /// `per_second` with a burst of at most 32 (never more than one second's worth).
    pub fn per_second(per_second: u32) -> Pace {
        let per_second = per_second.max(1);
        Pace {
            per_second,
            burst: per_second.clamp(1, 32),
        }
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(1) / self.per_second.max(1)
    }
}

/// The timing of a NAT run. See the module docs for the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Timing {
    /// The RTO before anything was measured; also the ceiling of a measured RTO.
    #[serde(rename = "initial_rto_seconds", with = "crate::serde_util::secs")]
    pub initial_rto: Duration,
    /// The lower bound of a measured RTO (lowered to the initial RTO if that is smaller).
    #[serde(rename = "floor_seconds", with = "crate::serde_util::secs")]
    pub floor: Duration,
    /// Transmissions of every test (at least 1).
    pub transmissions: u8,
    /// RTOs waited after the last transmission (at least 1).
    pub final_wait: u8,
    /// Nothing waits longer than this after the run starts.
    #[serde(rename = "budget_seconds", with = "crate::serde_util::secs")]
    pub budget: Duration,
    /// How fast datagrams may leave.
    pub pace: Pace,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            initial_rto: DEFAULT_INITIAL_RTO,
            floor: DEFAULT_FLOOR,
            transmissions: DEFAULT_TRANSMISSIONS,
            final_wait: 1,
            budget: DEFAULT_BUDGET,
            pace: Pace::DEFAULT,
        }
    }
}

impl Timing {
    /// The default timing with another initial RTO.
    pub fn with_initial_rto(initial_rto: Duration) -> Timing {
        Timing {
            initial_rto,
            ..Timing::default()
        }
    }

    /// The ceiling of a measured RTO: the initial one.
    pub fn ceiling(&self) -> Duration {
        self.initial_rto
    }

    /// The effective floor: [`Timing::floor`], or the initial RTO if that is lower.
    pub fn effective_floor(&self) -> Duration {
        self.floor.min(self.initial_rto)
    }

    /// How long a silent test lasts at a constant `rto`: its transmissions one RTO apart,
    /// then the final wait.
    pub fn silence(&self, rto: Duration) -> Duration {
        let gaps = u32::from(self.transmissions.max(1) - 1) + u32::from(self.final_wait.max(1));
        rto.saturating_mul(gaps)
    }

    /// The shortest budget that makes sense: one initial RTO (the wait for a single answer
    /// before anything is known about the path).
    pub fn min_budget(&self) -> Duration {
        self.initial_rto
    }
}

/// RFC 6298 §2's smoothed RTT and its variation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    samples: u32,
}

impl RttEstimator {
    /// Add an unambiguous sample.
    pub fn sample(&mut self, r: Duration) {
        self.samples = self.samples.saturating_add(1);
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(r);
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + r) / 8);
            }
        }
    }

    /// SRTT, once there is a sample.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// RTTVAR.
    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }

    /// How many samples it has taken.
    pub fn samples(&self) -> u32 {
        self.samples
    }

    /// RFC 6298 §2.3's RTO (SRTT + max(G, 4·RTTVAR)), unclamped; `None` without a sample.
    pub fn rto(&self) -> Option<Duration> {
        let srtt = self.srtt?;
        Some(srtt.saturating_add(GRANULARITY.max(self.rttvar.saturating_mul(4))))
    }
}

/// Where the RTT behind the current RTO came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RttSource {
    /// Answers to the run's own UDP requests.
    Udp,
    /// A TCP round trip to the same host (UDP had not answered).
    Tcp,
    /// Nothing measured: the initial RTO.
    None,
}

impl std::fmt::Display for RttSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RttSource::Udp => "UDP answers",
            RttSource::Tcp => "a TCP round trip to the server",
            RttSource::None => "nothing measured (the initial RTO)",
        })
    }
}

/// A token bucket on injected time, kept as the time its next token is earned (GCRA): a
/// datagram may leave when `now` is no earlier than `next` minus the burst allowance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pacer {
    pace: Pace,
    /// When the bucket would be empty again if no tokens were left over.
    next: Option<Instant>,
}

impl Pacer {
    fn tolerance(&self) -> Duration {
        self.pace.interval() * self.pace.burst.max(1).saturating_sub(1)
    }

    fn ready_at(&self, now: Instant) -> Instant {
        match self.next {
            None => now,
            Some(next) => next
                .checked_sub(self.tolerance())
                .map_or(now, |t| t.max(now)),
        }
    }

    fn may_send(&self, now: Instant) -> bool {
        self.ready_at(now) <= now
    }

    fn sent(&mut self, now: Instant) {
        let base = self.next.map_or(now, |n| n.max(now));
        self.next = Some(base + self.pace.interval());
    }
}

/// The running state of a run's timing: the estimates, the start, the pacer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    timing: Timing,
    udp: RttEstimator,
    tcp: RttEstimator,
    start: Option<Instant>,
    pacer: Pacer,
}

impl Schedule {
    /// A schedule that starts at the first [`Schedule::start`].
    pub fn new(timing: Timing) -> Schedule {
        Schedule {
            timing,
            udp: RttEstimator::default(),
            tcp: RttEstimator::default(),
            start: None,
            pacer: Pacer {
                pace: timing.pace,
                next: None,
            },
        }
    }

    /// The configuration.
    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    /// Start the clock of the budget (only the first call counts).
    pub fn start(&mut self, now: Instant) {
        self.start.get_or_insert(now);
    }

    /// When the run started.
    pub fn started(&self) -> Option<Instant> {
        self.start
    }

    /// When every wait ends at the latest.
    pub fn deadline(&self) -> Option<Instant> {
        self.start?.checked_add(self.timing.budget)
    }

    /// Whether the budget is used up at `now`.
    pub fn past_deadline(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|d| now >= d)
    }

    /// An unambiguous round trip of one of the run's UDP requests.
    pub fn udp_sample(&mut self, rtt: Duration) {
        self.udp.sample(rtt);
    }

    /// A round trip to the same host over TCP; used only while UDP has given no sample.
    pub fn tcp_sample(&mut self, rtt: Duration) {
        self.tcp.sample(rtt);
    }

    /// Where the current RTO comes from.
    pub fn source(&self) -> RttSource {
        if self.udp.srtt().is_some() {
            RttSource::Udp
        } else if self.tcp.srtt().is_some() {
            RttSource::Tcp
        } else {
            RttSource::None
        }
    }

    /// The estimator behind the current RTO, if any.
    pub fn estimate(&self) -> Option<&RttEstimator> {
        match self.source() {
            RttSource::Udp => Some(&self.udp),
            RttSource::Tcp => Some(&self.tcp),
            RttSource::None => None,
        }
    }

    /// The RTO now: the estimate's, within [floor, ceiling], else the initial one.
    pub fn rto(&self) -> Duration {
        let t = &self.timing;
        match self.estimate().and_then(RttEstimator::rto) {
            Some(rto) => rto.clamp(t.effective_floor(), t.ceiling()),
            None => t.initial_rto,
        }
    }

    /// Whether a datagram may leave at `now`.
    pub fn may_send(&self, now: Instant) -> bool {
        self.pacer.may_send(now)
    }

    /// When the next datagram may leave (`now` if it may now).
    pub fn send_ready_at(&self, now: Instant) -> Instant {
        self.pacer.ready_at(now)
    }

    /// A datagram left at `now`.
    pub fn sent(&mut self, now: Instant) {
        self.pacer.sent(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::sim::t0;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn rfc6298_estimator() {
        let mut e = RttEstimator::default();
        assert_eq!(e.rto(), None);
        e.sample(ms(100));
        // SRTT 100, RTTVAR 50: RTO = 100 + 4·50.
        assert_eq!((e.srtt(), e.rttvar()), (Some(ms(100)), ms(50)));
        assert_eq!(e.rto(), Some(ms(300)));
        e.sample(ms(60));
        // RTTVAR = ¾·50 + ¼·40 = 47.5; SRTT = ⅞·100 + ⅛·60 = 95.
        assert_eq!(e.srtt(), Some(ms(95)));
        assert_eq!(e.rttvar(), Duration::from_micros(47_500));
        assert_eq!(e.rto(), Some(ms(95) + Duration::from_micros(190_000)));
        assert_eq!(e.samples(), 2);
        // A path with no variation still gets G.
        let mut flat = RttEstimator::default();
        flat.sample(Duration::ZERO);
        assert_eq!(flat.rto(), Some(GRANULARITY));
    }

    #[test]
    fn the_rto_stays_between_floor_and_ceiling() {
        let mut s = Schedule::new(Timing::default());
        assert_eq!(s.source(), RttSource::None);
        assert_eq!(s.rto(), ms(500), "blind: the initial RTO");
        s.tcp_sample(Duration::from_micros(300));
        assert_eq!(s.source(), RttSource::Tcp);
        assert_eq!(s.rto(), ms(100), "a sub-millisecond path: the floor");
        s.udp_sample(ms(80));
        assert_eq!(s.source(), RttSource::Udp, "UDP wins over TCP");
        assert_eq!(s.rto(), ms(240));
        s.udp_sample(ms(900));
        assert_eq!(s.rto(), ms(500), "a slow path: the ceiling (the blind RTO)");
        // A lower --rto lowers the floor with it.
        let low = Timing::with_initial_rto(ms(40));
        assert_eq!(low.effective_floor(), ms(40));
        let mut s = Schedule::new(low);
        s.udp_sample(Duration::from_micros(200));
        assert_eq!(s.rto(), ms(40));
    }

    #[test]
    fn a_silent_test_lasts_five_rtos() {
        let t = Timing::default();
        assert_eq!(t.silence(ms(100)), ms(500));
        assert_eq!(t.silence(t.initial_rto), ms(2500));
        assert!(t.silence(t.initial_rto) < t.budget);
        assert_eq!(t.min_budget(), ms(500));
    }

    #[test]
    fn the_budget_runs_from_the_first_start() {
        let t0 = t0();
        let mut s = Schedule::new(Timing::default());
        assert_eq!(s.deadline(), None);
        s.start(t0);
        s.start(t0 + ms(5));
        assert_eq!(s.started(), Some(t0));
        assert_eq!(s.deadline(), Some(t0 + ms(3000)));
        assert!(!s.past_deadline(t0 + ms(2999)));
        assert!(s.past_deadline(t0 + ms(3000)));
    }

    #[test]
    fn pacing_allows_a_burst_then_the_rate() {
        let t0 = t0();
        let mut s = Schedule::new(Timing {
            pace: Pace {
                per_second: 10,
                burst: 3,
            },
            ..Timing::default()
        });
        let mut sent = Vec::new();
        let mut now = t0;
        while sent.len() < 6 {
            if s.may_send(now) {
                s.sent(now);
                sent.push((now - t0).as_millis());
            } else {
                now = s.send_ready_at(now);
            }
        }
        // Three at once, then one every 100 ms.
        assert_eq!(sent, vec![0, 0, 0, 100, 200, 300]);
        // After an idle second the burst is back.
        let later = t0 + ms(2000);
        assert!(s.may_send(later));
        assert_eq!(Pace::per_second(0), Pace::per_second(1));
        assert_eq!(Pace::per_second(1000).burst, 32);
        assert_eq!(Pace::per_second(5).burst, 5);
    }
}
