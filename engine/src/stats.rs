//! RTT statistics per target.
//!
//! Samples are kept exactly, as whole microseconds (4 bytes each; up to 71 minutes), so
//! percentiles are exact order statistics, not sketches: a run's memory beyond the engine's
//! grows by 4 bytes per answered transaction. Jitter is the mean absolute difference between
//! consecutive samples in send order (the quantity RFC 3550 §6.4.1 smooths with gain 1/16; we
//! report the plain mean over the run, which does not depend on a warm-up).
//! Loss counts transactions that got no answer at all, not individual lost datagrams: a
//! transaction that succeeded after a retransmission is counted under `retransmitted`.

use std::time::Duration;

/// Summary of a set of RTT samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct RttSummary {
    /// Samples used (unambiguous RTTs only, Karn's algorithm).
    pub samples: usize,
    /// Minimum, seconds.
    pub min: f64,
    /// Median (p50), seconds.
    pub median: f64,
    /// 90th percentile, seconds.
    pub p90: f64,
    /// 99th percentile, seconds.
    pub p99: f64,
    /// Maximum, seconds.
    pub max: f64,
    /// Mean, seconds.
    pub mean: f64,
    /// Mean absolute difference of consecutive samples, seconds.
    pub jitter: f64,
}

/// Accumulates transaction outcomes for one target.
#[derive(Clone, Debug, Default)]
pub struct RttStats {
    /// RTTs in microseconds, in send order.
    samples_us: Vec<u32>,
    /// Transactions started.
    pub sent: u64,
    /// Transactions answered (success or error response).
    pub answered: u64,
    /// Answered transactions that needed a retransmission.
    pub retransmitted: u64,
}

impl RttStats {
    /// Record one answered transaction. `ambiguous` RTTs (after a retransmission) are not
    /// sampled.
    pub fn answered(&mut self, rtt: Option<Duration>, ambiguous: bool) {
        self.sent += 1;
        self.answered += 1;
        if ambiguous {
            self.retransmitted += 1;
        } else if let Some(rtt) = rtt {
            self.samples_us
                .push(u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX));
        }
    }

    /// Record one unanswered transaction.
    pub fn lost(&mut self) {
        self.sent += 1;
    }

    /// Fraction of transactions with no answer (0 when none were sent).
    pub fn loss(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        (self.sent - self.answered) as f64 / self.sent as f64
    }

    /// Number of RTT samples kept.
    pub fn sample_count(&self) -> usize {
        self.samples_us.len()
    }

    /// Summary statistics; `None` without samples.
    pub fn summary(&self) -> Option<RttSummary> {
        let samples: Vec<Duration> = self
            .samples_us
            .iter()
            .map(|us| Duration::from_micros(u64::from(*us)))
            .collect();
        summarize(&samples)
    }
}

/// Nearest-rank percentile of sorted samples, `p` in 0..=100.
fn percentile(sorted: &[Duration], p: u32) -> Duration {
    let n = sorted.len();
    if n == 0 {
        return Duration::ZERO;
    }
    // Nearest-rank: ceil(p/100 · n), 1-based.
    let rank = (u64::from(p) * n as u64).div_ceil(100).max(1) as usize;
    sorted.get(rank - 1).copied().unwrap_or(Duration::ZERO)
}

/// Summarize samples given in send order.
pub fn summarize(samples: &[Duration]) -> Option<RttSummary> {
    if samples.is_empty() {
        return None;
    }
    let jitter = if samples.len() > 1 {
        let total: f64 = samples
            .windows(2)
            .map(|w| match w {
                [a, b] => (a.as_secs_f64() - b.as_secs_f64()).abs(),
                _ => 0.0,
            })
            .sum();
        total / (samples.len() - 1) as f64
    } else {
        0.0
    };
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let mean = sorted.iter().map(Duration::as_secs_f64).sum::<f64>() / sorted.len() as f64;
    Some(RttSummary {
        samples: sorted.len(),
        min: percentile(&sorted, 0).as_secs_f64(),
        median: percentile(&sorted, 50).as_secs_f64(),
        p90: percentile(&sorted, 90).as_secs_f64(),
        p99: percentile(&sorted, 99).as_secs_f64(),
        max: sorted.last().copied().unwrap_or_default().as_secs_f64(),
        mean,
        jitter,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|m| Duration::from_millis(*m)).collect()
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let s: Vec<u64> = (1..=100).collect();
        let r = summarize(&ms(&s)).unwrap();
        assert_eq!(r.min, 0.001);
        assert_eq!(r.median, 0.050);
        assert_eq!(r.p90, 0.090);
        assert_eq!(r.p99, 0.099);
        assert_eq!(r.max, 0.100);
        assert!((r.mean - 0.0505).abs() < 1e-9);
    }

    #[test]
    fn jitter_is_mean_absolute_consecutive_difference() {
        let r = summarize(&ms(&[10, 20, 10, 40])).unwrap();
        // |10-20| + |20-10| + |10-40| = 50 over 3 differences.
        assert!((r.jitter - 0.050 / 3.0).abs() < 1e-9);
        assert_eq!(summarize(&ms(&[7])).unwrap().jitter, 0.0);
        assert_eq!(summarize(&[]), None);
    }

    #[test]
    fn loss_and_karn() {
        let mut s = RttStats::default();
        s.answered(Some(Duration::from_millis(5)), false);
        s.answered(Some(Duration::from_millis(900)), true);
        s.lost();
        s.lost();
        assert_eq!(s.sent, 4);
        assert_eq!(s.answered, 2);
        assert_eq!(s.retransmitted, 1);
        assert_eq!(s.sample_count(), 1);
        assert!((s.loss() - 0.5).abs() < 1e-12);
    }
}
