//! The relay metrics that `stunmap relay` and `stunmap check` both write: one gauge family
//! per statistic of the RTTs measured through TURN allocations, and the loss.

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

/// The fraction of `sent` packets looped through a relay that did not come back; `None` when
/// none was sent.
pub(crate) fn loss_ratio(sent: u32, received: u32) -> Option<f64> {
    (sent > 0).then(|| f64::from(sent.saturating_sub(received)) / f64::from(sent))
}

/// One relay's loss ([`loss_ratio`]), if it has one, and its labels.
pub(crate) type LossSeries<'a> = (Option<f64>, &'a [(&'static str, String)]);

/// `stunmap_relay_loss_ratio`, a sample per relay with a loss; none at all when no relay has
/// one.
pub(crate) fn loss_family(w: &mut Writer, relays: &[LossSeries<'_>]) {
    if relays.iter().all(|(loss, _)| loss.is_none()) {
        return;
    }
    w.family(
        "stunmap_relay_loss_ratio",
        "gauge",
        "Fraction of packets looped through the relay that did not come back.",
    );
    for (loss, labels) in relays {
        if let Some(l) = loss {
            w.sample("stunmap_relay_loss_ratio", &borrowed(labels), *l);
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_is_of_what_was_sent() {
        assert_eq!(loss_ratio(0, 0), None);
        assert_eq!(loss_ratio(10, 7), Some(0.3));
        // More answers than packets (duplicates) is no loss, not a negative one.
        assert_eq!(loss_ratio(5, 9), Some(0.0));
    }

    #[test]
    fn no_loss_family_without_a_loss() {
        let labels = [("transport", "udp".to_string())];
        let mut w = Writer::default();
        loss_family(&mut w, &[(None, &labels)]);
        assert_eq!(w.finish(), "");
        let mut w = Writer::default();
        loss_family(&mut w, &[(None, &labels), (Some(0.25), &labels)]);
        let text = w.finish();
        assert!(
            text.contains("stunmap_relay_loss_ratio{transport=\"udp\"} 0.25"),
            "{text}"
        );
    }
}
