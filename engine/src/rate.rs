//! Token-bucket packet rate limiter with injected time.
//!
//! `pps` tokens accrue per second up to `burst`; every datagram sent costs one. The engine asks
//! [`TokenBucket::take`] before each transmission and sleeps until [`TokenBucket::ready_at`]
//! when the bucket is empty. Time is passed in, so the schedule is tested without sleeping.

use std::time::{Duration, Instant};

/// A rate in packets per second with a burst allowance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Rate {
    /// Sustained packets per second (≥ 1).
    pub pps: u32,
    /// Packets that may go back to back after an idle period (≥ 1).
    pub burst: u32,
}

impl Rate {
    /// The engine's default: 250 packets/s with bursts of 32. At ~60 bytes per Binding request
    /// that is about 15 kB/s: low enough for a production egress and an IDS, high enough to
    /// sweep the NetBird profile's UDP ports in well under a second.
    pub const POLITE: Rate = Rate {
        pps: 250,
        burst: 32,
    };
}

/// The bucket.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: Rate,
    /// Tokens in units of 1/pps seconds' worth of nanoseconds, kept as f64 for simplicity.
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(rate: Rate, now: Instant) -> Self {
        let rate = Rate {
            pps: rate.pps.max(1),
            burst: rate.burst.max(1),
        };
        Self {
            rate,
            tokens: f64::from(rate.burst),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + dt * f64::from(self.rate.pps)).min(f64::from(self.rate.burst));
    }

    /// Take one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When the next token will be available (now if one is).
    pub fn ready_at(&mut self, now: Instant) -> Instant {
        self.refill(now);
        if self.tokens >= 1.0 {
            return now;
        }
        let wait = (1.0 - self.tokens) / f64::from(self.rate.pps);
        now + Duration::from_secs_f64(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)]
    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn burst_then_sustained_rate() {
        let t0 = t0();
        let mut b = TokenBucket::new(Rate { pps: 100, burst: 5 }, t0);
        let burst = (0..10).filter(|_| b.take(t0)).count();
        assert_eq!(burst, 5);
        assert_eq!(b.ready_at(t0), t0 + Duration::from_millis(10));
        // Over one simulated second in 1 ms steps, about 100 more tokens.
        let mut sent = 0;
        for ms in 1..=1000 {
            if b.take(t0 + Duration::from_millis(ms)) {
                sent += 1;
            }
        }
        assert!((99..=101).contains(&sent), "sent {sent}");
    }

    #[test]
    fn idle_time_does_not_exceed_burst() {
        let t0 = t0();
        let mut b = TokenBucket::new(
            Rate {
                pps: 1000,
                burst: 3,
            },
            t0,
        );
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| b.take(later)).count(), 3);
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let t0 = t0();
        let mut b = TokenBucket::new(Rate { pps: 10, burst: 1 }, t0 + Duration::from_secs(1));
        assert!(b.take(t0 + Duration::from_secs(1)));
        assert!(!b.take(t0));
    }
}
