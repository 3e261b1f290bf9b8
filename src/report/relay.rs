//! The relay round-trip metrics that `stunmap relay` and `stunmap check` both write: one
//! gauge family per statistic of the RTTs measured through TURN allocations.

use engine::stats::RttSummary;

use crate::report::prom::{Writer, borrowed};

/// A family: its name, its help and the statistic it takes from a measurement.
pub(crate) type RttFamily = (&'static str, &'static str, fn(&RttSummary) -> f64);

pub(crate) const MIN: RttFamily = (
    "stunmap_relay_rtt_min_seconds",
    "Minimum round-trip time through a TURN allocation.",
    |s| s.min,
);
pub(crate) const MEDIAN: RttFamily = (
    "stunmap_relay_rtt_median_seconds",
    "Median round-trip time through a TURN allocation (relay RTT).",
    |s| s.median,
);
pub(crate) const P90: RttFamily = (
    "stunmap_relay_rtt_p90_seconds",
    "90th percentile round-trip time through a TURN allocation.",
    |s| s.p90,
);
pub(crate) const P99: RttFamily = (
    "stunmap_relay_rtt_p99_seconds",
    "99th percentile round-trip time through a TURN allocation.",
    |s| s.p99,
);
pub(crate) const MAX: RttFamily = (
    "stunmap_relay_rtt_max_seconds",
    "Maximum round-trip time through a TURN allocation.",
    |s| s.max,
);
pub(crate) const JITTER: RttFamily = (
    "stunmap_relay_jitter_seconds",
    "Mean difference of consecutive round-trip times through a TURN allocation.",
    |s| s.jitter,
);

/// One relay's series: what was measured through it, if anything, and its labels.
pub(crate) type RelaySeries<'a> = (Option<&'a RttSummary>, &'a [(&'static str, String)]);

/// Each of `families` with a sample per measured relay; none at all when no relay was
/// measured.
pub(crate) fn rtt_families(w: &mut Writer, families: &[RttFamily], relays: &[RelaySeries<'_>]) {
    if relays.iter().all(|(rtt, _)| rtt.is_none()) {
        return;
    }
    for (name, help, pick) in families {
        w.family(name, "gauge", help);
        for (rtt, labels) in relays {
            if let Some(s) = rtt {
                w.sample(name, &borrowed(labels), pick(s));
            }
        }
    }
}
