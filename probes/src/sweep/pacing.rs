//! How fast a sweep sends and how long it waits for an answer, decided from what the path
//! answers. Pure: every decision is a function of the instants the caller passes in.
//!
//! The rule (docs/sweep.md has it for people):
//!
//! - **Timeout.** Before any answer, a try waits [`PacingConfig::initial_timeout`]. Every
//!   answer that belongs to exactly one try (a SYN-ACK, RST or ICMP error of a connect, or of a
//!   raw SYN sent once) is a round-trip sample for the RFC 6298 §2 estimator (SRTT, RTTVAR); a
//!   try then waits `SRTT + 4·RTTVAR`, never less than [`PacingConfig::min_timeout`] and never
//!   more than the initial timeout. The waits of tries already in flight follow the estimate
//!   as it moves.
//! - **Rate.** The sweep starts at [`PacingConfig::start_pps`]. Each answer to a first try
//!   raises the rate by 1/16 (it doubles every 11 answers) until the first back-off, and by
//!   1/256 after it while the rate is above the threshold that back-off set (it doubles every
//!   178 answers), never above [`PacingConfig::ceiling_pps`]. Silence is not a signal: a
//!   filtering firewall answers nothing by design, so a try that times out neither raises nor
//!   lowers the rate.
//! - **Back-off.** The rate halves (not below a floor, a quarter of the ceiling up to 50/s) on
//!   loss — a port that answered only the resend, so the first try or its answer was lost —
//!   and when ICMP errors look rate-limited: a port goes silent within a second of an ICMP
//!   error for a port near it ([`ICMP_NEIGHBOURHOOD`]), the pattern of a router that stops
//!   sending unreachables after its burst (Linux: about 6, then one per second per
//!   destination). Several back-offs within one timeout of each other count once, as a TCP
//!   sender reduces its window once per round trip.
//! - **Bucket.** Sends take tokens from a bucket that fills at the current rate and holds at
//!   most 50 ms of it (at least one token), so no burst exceeds what the rate allows.
//!
//! Nothing here can raise the rate above the ceiling: growth is clamped to it, and the
//! ceiling is the caller's (`--rate`, or the polite default).

use std::time::{Duration, Instant};

use crate::nat::timing::RttEstimator;

/// The sweep's timing limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PacingConfig {
    /// Sends per second at the start.
    pub start_pps: u32,
    /// Sends per second the rate never exceeds.
    pub ceiling_pps: u32,
    /// How long a try waits before any round trip was measured; also the longest wait.
    #[serde(with = "crate::serde_util::secs")]
    pub initial_timeout: Duration,
    /// The shortest wait, however short the measured round trips.
    #[serde(with = "crate::serde_util::secs")]
    pub min_timeout: Duration,
}

impl PacingConfig {
    /// Where the default sweep starts: 250 sends/s, about 15 kB/s of SYNs.
    pub const POLITE_START_PPS: u32 = 250;
    /// The default ceiling: 4,000 sends/s, about 240 kB/s of SYNs, reached only while the
    /// path answers without loss; `--rate` replaces it.
    pub const POLITE_CEILING_PPS: u32 = 4_000;
    /// The initial (and longest) wait, as nmap's default timing starts (1 s).
    pub const DEFAULT_INITIAL_TIMEOUT: Duration = Duration::from_secs(1);
    /// The shortest wait (nmap's default minimum, 100 ms): round trips on a LAN are far
    /// shorter, and a SYN-ACK or ICMP error delayed by a busy host should still count.
    pub const MIN_TIMEOUT: Duration = Duration::from_millis(100);

    /// The default: starts polite and earns its way up to the polite ceiling.
    pub fn polite(initial_timeout: Duration) -> Self {
        Self {
            start_pps: Self::POLITE_START_PPS,
            ceiling_pps: Self::POLITE_CEILING_PPS,
            initial_timeout,
            min_timeout: Self::MIN_TIMEOUT.min(initial_timeout),
        }
    }

    /// A rate given by the user: it starts there and never exceeds it (back-offs still
    /// apply, and the rate earns its way back).
    pub fn fixed(pps: u32, initial_timeout: Duration) -> Self {
        let pps = pps.max(1);
        Self {
            start_pps: pps,
            ceiling_pps: pps,
            initial_timeout,
            min_timeout: Self::MIN_TIMEOUT.min(initial_timeout),
        }
    }

    /// The lowest rate a back-off goes to: a quarter of the ceiling, at most 50/s, at least 1.
    pub fn floor_pps(&self) -> f64 {
        (f64::from(self.ceiling_pps) / 4.0).clamp(1.0, FLOOR_PPS)
    }
}

/// The highest floor of a back-off, sends per second.
const FLOOR_PPS: f64 = 50.0;

/// Growth per answer before the first back-off (doubles in 11 answers).
const START_GAIN: f64 = 1.0 / 16.0;

/// Growth per answer once a back-off set a threshold and the rate is above it.
const STEADY_GAIN: f64 = 1.0 / 256.0;

/// How much of the rate the bucket may hold: at most this long's worth of sends at once.
const BURST_TIME: f64 = 0.05;

/// The largest bucket, in sends.
const MAX_BURST: f64 = 4096.0;

/// A token this close to whole counts as whole (float rounding must not make a caller that
/// waited until [`Pacing::ready_at`] wait again for nothing).
const TOKEN_EPSILON: f64 = 1e-6;

/// A silent port within this many ports of one that was answered with an ICMP error is
/// read as a lost ICMP error (rate limiting) rather than a dropped port.
pub const ICMP_NEIGHBOURHOOD: u16 = 256;

/// ... when it goes silent within this long of that ICMP error.
pub const ICMP_WINDOW: Duration = Duration::from_secs(1);

/// How a try was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// By the target's TCP (SYN-ACK or RST), or a STUN response.
    Direct,
    /// By an ICMP destination unreachable (from the target or a router on the path).
    Icmp,
}

/// Why the rate was lowered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackOff {
    /// A port answered only the resend.
    Loss,
    /// A port went silent next to ICMP errors: they look rate-limited.
    IcmpLimit,
}

/// What the pacing did over a sweep, for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct PacingSummary {
    /// Sends per second at the start.
    pub start_pps: u32,
    /// The ceiling.
    pub ceiling_pps: u32,
    /// The highest rate reached.
    pub peak_pps: u32,
    /// The rate at the end.
    pub final_pps: u32,
    /// Round-trip samples taken.
    pub rtt_samples: u64,
    /// SRTT at the end, seconds (none without a sample).
    #[serde(with = "crate::serde_util::opt_secs")]
    pub srtt: Option<Duration>,
    /// The wait of a try at the end, seconds.
    #[serde(with = "crate::serde_util::secs")]
    pub timeout: Duration,
    /// Back-offs on loss.
    pub loss_backoffs: u32,
    /// Back-offs on rate-limited ICMP errors.
    pub icmp_backoffs: u32,
    /// Silent ports read as lost ICMP errors (whether or not they caused a back-off).
    pub icmp_limited_silences: u32,
    /// Tries that went out again after a timeout.
    pub resends: u64,
}

/// The pacing of one sweep: the rate, the bucket, the round-trip estimate and the back-offs.
#[derive(Clone, Debug)]
pub struct Pacing {
    cfg: PacingConfig,
    rate: f64,
    /// Set by the first back-off: above it the rate grows at the steady pace.
    threshold: Option<f64>,
    tokens: f64,
    filled_at: Instant,
    rtt: RttEstimator,
    last_backoff: Option<Instant>,
    /// The latest ICMP error: when, and for which port.
    last_icmp: Option<(Instant, u16)>,
    summary: PacingSummary,
}

impl Pacing {
    /// Pacing that starts at `now` with a full bucket.
    pub fn new(cfg: PacingConfig, now: Instant) -> Self {
        let ceiling = cfg.ceiling_pps.max(1);
        let cfg = PacingConfig {
            ceiling_pps: ceiling,
            start_pps: cfg.start_pps.clamp(1, ceiling),
            min_timeout: cfg.min_timeout.min(cfg.initial_timeout),
            ..cfg
        };
        let rate = f64::from(cfg.start_pps);
        let mut p = Self {
            cfg,
            rate,
            threshold: None,
            tokens: 0.0,
            filled_at: now,
            rtt: RttEstimator::default(),
            last_backoff: None,
            last_icmp: None,
            summary: PacingSummary {
                start_pps: cfg.start_pps,
                ceiling_pps: cfg.ceiling_pps,
                peak_pps: cfg.start_pps,
                final_pps: cfg.start_pps,
                timeout: cfg.initial_timeout,
                ..PacingSummary::default()
            },
        };
        p.tokens = p.burst();
        p
    }

    /// The limits it works within.
    pub fn config(&self) -> &PacingConfig {
        &self.cfg
    }

    /// The current rate, sends per second (never above the ceiling).
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// How long a try waits for its answer now.
    pub fn timeout(&self) -> Duration {
        self.rto().map_or(self.cfg.initial_timeout, |rto| {
            rto.clamp(self.cfg.min_timeout, self.cfg.initial_timeout)
        })
    }

    /// The wait of a try whose own first wait is `initial` (a UDP Binding's 500 ms, RFC 8489
    /// §6.2.1): the measured estimate within the minimum and `initial`, or `initial` before
    /// any round trip was measured.
    pub fn timeout_within(&self, initial: Duration) -> Duration {
        let min = self.cfg.min_timeout.min(initial);
        self.rto().map_or(initial, |rto| rto.clamp(min, initial))
    }

    /// The round-trip estimate (its [`RttEstimator::rto`] adds RFC 6298's clock granularity,
    /// which the sweep's timeouts leave out).
    pub fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }

    /// `SRTT + 4·RTTVAR` (RFC 6298 §2.3, with no clock-granularity term: our clock is
    /// finer than any round trip), or `None` before the first sample.
    fn rto(&self) -> Option<Duration> {
        self.rtt.srtt().map(|s| s + self.rtt.rttvar() * 4)
    }

    fn burst(&self) -> f64 {
        (self.rate * BURST_TIME).clamp(1.0, MAX_BURST)
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.filled_at).as_secs_f64();
        self.filled_at = self.filled_at.max(now);
        self.tokens = (self.tokens + dt * self.rate).min(self.burst());
    }

    /// Take up to `want` tokens at `now`; returns how many were granted (each is one send).
    pub fn take(&mut self, now: Instant, want: usize) -> usize {
        self.refill(now);
        let whole = (self.tokens + TOKEN_EPSILON).floor().max(0.0);
        let n = (want as f64).min(whole);
        self.tokens = (self.tokens - n).max(0.0);
        n as usize
    }

    /// When the next token is there (`now` if one is). Rounded up to the nanosecond, so a
    /// caller that waits until then finds the token.
    pub fn ready_at(&mut self, now: Instant) -> Instant {
        self.refill(now);
        if self.tokens + TOKEN_EPSILON >= 1.0 {
            return now;
        }
        let nanos = ((1.0 - self.tokens) / self.rate * 1e9).ceil();
        now + Duration::from_nanos(nanos.clamp(1.0, 1e12) as u64)
    }

    /// A try of `port` (`resent`: not its first) was answered at `now`; `rtt` is its round
    /// trip when it belongs to that one try alone.
    pub fn answered(
        &mut self,
        now: Instant,
        port: u16,
        resent: bool,
        rtt: Option<Duration>,
        how: Answer,
    ) {
        if let Some(rtt) = rtt {
            self.rtt.sample(rtt);
        }
        if how == Answer::Icmp {
            self.last_icmp = Some((now, port));
        }
        if resent {
            self.back_off(now, BackOff::Loss);
        } else {
            self.grow(now);
        }
        self.note();
    }

    /// A try of `port` had no answer by its timeout at `now`.
    pub fn silent(&mut self, now: Instant, port: u16) {
        let near_icmp = self.last_icmp.is_some_and(|(at, p)| {
            now.saturating_duration_since(at) <= ICMP_WINDOW
                && p.abs_diff(port) <= ICMP_NEIGHBOURHOOD
        });
        if near_icmp {
            self.summary.icmp_limited_silences += 1;
            self.back_off(now, BackOff::IcmpLimit);
        }
        self.note();
    }

    /// A try goes out again after a timeout.
    pub fn resent(&mut self) {
        self.summary.resends += 1;
    }

    fn grow(&mut self, now: Instant) {
        self.refill(now);
        let gain = match self.threshold {
            Some(t) if self.rate >= t => STEADY_GAIN,
            _ => START_GAIN,
        };
        self.rate = (self.rate * (1.0 + gain)).min(f64::from(self.cfg.ceiling_pps));
    }

    fn back_off(&mut self, now: Instant, why: BackOff) {
        // One back-off per timeout: losses seen together come from one episode.
        if self
            .last_backoff
            .is_some_and(|t| now.saturating_duration_since(t) < self.timeout())
        {
            return;
        }
        self.refill(now);
        self.last_backoff = Some(now);
        self.rate = (self.rate / 2.0).max(self.cfg.floor_pps());
        self.threshold = Some(self.rate);
        self.tokens = self.tokens.min(self.burst());
        match why {
            BackOff::Loss => self.summary.loss_backoffs += 1,
            BackOff::IcmpLimit => self.summary.icmp_backoffs += 1,
        }
    }

    fn note(&mut self) {
        let pps = self.rate.round() as u32;
        self.summary.peak_pps = self.summary.peak_pps.max(pps);
        self.summary.final_pps = pps;
        self.summary.rtt_samples = u64::from(self.rtt.samples());
        self.summary.srtt = self.rtt.srtt();
        self.summary.timeout = self.timeout();
    }

    /// What it did so far.
    pub fn summary(&self) -> PacingSummary {
        self.summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Any instant will do: the pacing only compares the instants it is given.
    #[allow(clippy::disallowed_methods)]
    fn t0() -> Instant {
        Instant::now()
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn timeouts_start_at_the_initial_wait_and_follow_the_round_trips_within_bounds() {
        let now = t0();
        let mut p = Pacing::new(PacingConfig::polite(MS(1000)), now);
        assert_eq!(p.timeout(), MS(1000));
        // LAN round trips: the minimum.
        for _ in 0..20 {
            p.answered(
                now,
                1,
                false,
                Some(Duration::from_micros(300)),
                Answer::Direct,
            );
        }
        assert_eq!(p.timeout(), MS(100));
        // A slow path: SRTT + 4·RTTVAR, above the minimum.
        let mut slow = Pacing::new(PacingConfig::polite(MS(1000)), now);
        slow.answered(now, 1, false, Some(MS(150)), Answer::Direct);
        assert_eq!(slow.timeout(), MS(450));
        // Never above the initial wait.
        let mut far = Pacing::new(PacingConfig::polite(MS(1000)), now);
        far.answered(now, 1, false, Some(MS(900)), Answer::Direct);
        assert_eq!(far.timeout(), MS(1000));
        // A probe with its own (shorter) first wait follows the same estimate.
        assert_eq!(slow.timeout_within(MS(500)), MS(450));
        assert_eq!(slow.timeout_within(MS(300)), MS(300));
        assert_eq!(p.timeout_within(MS(500)), MS(100));
        assert_eq!(far.timeout_within(MS(50)), MS(50));
        let fresh = Pacing::new(PacingConfig::polite(MS(1000)), now);
        assert_eq!(fresh.timeout_within(MS(500)), MS(500));
        // An initial wait below the minimum is both.
        let tight = Pacing::new(PacingConfig::polite(MS(40)), now);
        assert_eq!(tight.config().min_timeout, MS(40));
    }

    /// Sends the bucket allows from `from` to `to` in 1 ms steps, taking all it grants.
    fn sends(p: &mut Pacing, from: Instant, to: Instant) -> usize {
        let mut n = 0;
        let mut t = from;
        while t <= to {
            n += p.take(t, usize::MAX);
            t += MS(1);
        }
        n
    }

    #[test]
    fn the_bucket_keeps_to_the_rate_with_at_most_50_ms_of_burst() {
        let now = t0();
        let mut p = Pacing::new(PacingConfig::fixed(10, MS(1000)), now);
        // A bucket of one: 10 sends in the first second (the full token, then 9 more).
        assert_eq!(sends(&mut p, now, now + MS(999)), 10);
        assert_eq!(p.ready_at(now + MS(999)), now + MS(1000));
        let mut p = Pacing::new(PacingConfig::fixed(4000, MS(1000)), now);
        assert_eq!(p.take(now, usize::MAX), 200);
        assert_eq!(p.take(now, usize::MAX), 0);
        // Idle time does not pile up more than the burst.
        assert_eq!(p.take(now + Duration::from_secs(60), usize::MAX), 200);
        // Waiting until `ready_at` always finds the token, whatever the rounding.
        let mut odd = Pacing::new(PacingConfig::fixed(3, MS(1000)), now);
        let mut t = now;
        for _ in 0..100 {
            while odd.take(t, 1) == 1 {}
            let next = odd.ready_at(t);
            assert!(next > t);
            t = next;
            assert_eq!(odd.take(t, 1), 1);
        }
        // Exactly the rate over a long run.
        let n = sends(
            &mut p,
            now + Duration::from_secs(61),
            now + Duration::from_secs(71),
        );
        assert!((40_000..=40_200).contains(&n), "{n}");
    }

    #[test]
    fn answers_raise_the_rate_to_the_ceiling_and_silence_leaves_it_alone() {
        let now = t0();
        let mut p = Pacing::new(PacingConfig::polite(MS(1000)), now);
        assert_eq!(p.rate(), 250.0);
        for _ in 0..100 {
            p.silent(now, 9);
        }
        assert_eq!(p.rate(), 250.0);
        // Doubling every 11 answers: 250 · (17/16)^11 ≈ 487.
        for _ in 0..11 {
            p.answered(now, 1, false, None, Answer::Direct);
        }
        assert!((480.0..=500.0).contains(&p.rate()), "{}", p.rate());
        for _ in 0..1000 {
            p.answered(now, 1, false, None, Answer::Direct);
        }
        assert_eq!(p.rate(), 4000.0);
        assert_eq!(p.summary().peak_pps, 4000);
    }

    #[test]
    fn loss_halves_the_rate_once_per_timeout_and_growth_is_slower_after_it() {
        let now = t0();
        let mut p = Pacing::new(PacingConfig::fixed(4000, MS(1000)), now);
        for _ in 0..10 {
            p.answered(now, 1, false, Some(MS(10)), Answer::Direct);
        }
        assert_eq!(p.timeout(), MS(100));
        // A burst of losses at one moment: one back-off.
        for _ in 0..5 {
            p.answered(now, 2, true, None, Answer::Direct);
        }
        assert_eq!(p.rate(), 2000.0);
        assert_eq!(p.summary().loss_backoffs, 1);
        // Another a timeout later halves again.
        p.answered(now + MS(100), 3, true, None, Answer::Direct);
        assert_eq!(p.rate(), 1000.0);
        // Above the threshold, 178 answers double the rate (1/256 each).
        for _ in 0..178 {
            p.answered(now + MS(200), 1, false, None, Answer::Direct);
        }
        assert!((1980.0..=2010.0).contains(&p.rate()), "{}", p.rate());
        // Never below the floor.
        for i in 0..40 {
            p.answered(now + MS(300 + i * 100), 3, true, None, Answer::Direct);
        }
        assert_eq!(p.rate(), 50.0);
    }

    #[test]
    fn silence_next_to_icmp_errors_backs_off_and_far_from_them_does_not() {
        let now = t0();
        let mut p = Pacing::new(PacingConfig::fixed(4000, MS(1000)), now);
        p.answered(now, 40_001, false, Some(MS(1)), Answer::Icmp);
        // Far in port order: a separate (dropped) range.
        p.silent(now + MS(100), 20_000);
        assert_eq!(p.summary().icmp_limited_silences, 0);
        assert!(p.rate() > 4000.0 * 0.99);
        // Near it, within the second: the errors stopped coming.
        p.silent(now + MS(200), 40_007);
        assert_eq!(p.summary().icmp_limited_silences, 1);
        assert_eq!(p.summary().icmp_backoffs, 1);
        assert_eq!(p.rate(), 2000.0);
        // More than a second after the last error: no longer read as rate limiting.
        p.silent(now + MS(1300), 40_008);
        assert_eq!(p.summary().icmp_limited_silences, 1);
    }

    /// No sequence of events lifts the rate above the ceiling, or the bucket above its
    /// burst: a pseudo-random walk over answers, losses, ICMP errors and silences.
    #[test]
    fn no_rule_raises_the_rate_above_the_ceiling() {
        let now = t0();
        for ceiling in [1, 10, 250, 4000, 10_000_000] {
            let mut p = Pacing::new(PacingConfig::fixed(ceiling, MS(1000)), now);
            let mut q = Pacing::new(PacingConfig::polite(MS(800)), now);
            let mut x = 0x2545_f491_4f6c_dd1d_u64;
            let mut t = now;
            let mut granted = 0usize;
            for _ in 0..20_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                t += Duration::from_micros(x % 3_000);
                let port = (x >> 20) as u16;
                for p in [&mut p, &mut q] {
                    match x % 5 {
                        0 => p.silent(t, port),
                        1 => p.answered(t, port, true, None, Answer::Direct),
                        2 => p.answered(t, port, false, Some(MS(x % 50)), Answer::Icmp),
                        _ => p.answered(t, port, false, Some(MS(x % 50)), Answer::Direct),
                    }
                    assert!(p.rate() <= f64::from(p.config().ceiling_pps));
                    assert!(p.rate() >= p.config().floor_pps().min(p.config().start_pps.into()));
                    assert!(p.timeout() <= p.config().initial_timeout);
                    assert!(p.timeout() >= p.config().min_timeout);
                }
                granted += p.take(t, usize::MAX);
            }
            // Over the whole walk, never more than the ceiling allows plus one burst.
            let secs = (t - now).as_secs_f64();
            let most =
                f64::from(ceiling) * secs + (f64::from(ceiling) * BURST_TIME).clamp(1.0, MAX_BURST);
            assert!(granted as f64 <= most + 1.0, "{granted} > {most}");
            assert!(q.rate() <= 4000.0);
        }
    }
}
