//! Judging a binding-lifetime test ([`LifetimeMeasurements`]): bounds on how long the NAT keeps
//! an idle mapping and the keepalive that keeps it.

use std::fmt;
use std::time::Duration;

use super::{LifetimeMeasurements, Trial, TrialOutcome};

/// Why the binding lifetime is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LifetimeUnknown {
    /// The Binding that opens the zero-idle control mapping got no answer.
    NoMapping,
    /// The zero-idle control got no answer through its mapping: the server does not support
    /// RESPONSE-PORT (RFC 5780 §7.5), ignores it, or rejects it.
    ResponsePortUnsupported,
    /// Nothing conclusive (no trial ran to the end).
    Inconclusive,
}

/// How long the NAT keeps an idle UDP mapping, from [`LifetimeMeasurements`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum BindingLifetimeResult {
    /// The mapping survived `survives_at_least` of idleness and was gone after
    /// `expires_within`.
    Bounded {
        /// Lower bound, seconds in JSON.
        #[serde(with = "crate::serde_util::secs")]
        survives_at_least: Duration,
        /// Upper bound, seconds in JSON.
        #[serde(with = "crate::serde_util::secs")]
        expires_within: Duration,
        /// A keepalive interval that keeps the mapping: 2/3 of the lower bound.
        #[serde(with = "crate::serde_util::secs")]
        recommended_keepalive: Duration,
    },
    /// The mapping survived the longest idle time tried.
    AtLeast {
        /// The longest idle time survived, seconds in JSON.
        #[serde(with = "crate::serde_util::secs")]
        survives_at_least: Duration,
        /// 2/3 of it.
        #[serde(with = "crate::serde_util::secs")]
        recommended_keepalive: Duration,
    },
    /// Not measurable with this server or path.
    Unknown {
        /// Why.
        reason: LifetimeUnknown,
    },
}

/// The keepalive recommended for a mapping that lives at least `lower`: 2/3 of it (a margin
/// for timer slop and a lost keepalive), whole seconds from 3 s up, 100 ms steps below.
pub fn recommended_keepalive(lower: Duration) -> Duration {
    let ms = lower.as_millis().saturating_mul(2) / 3;
    let ms = u64::try_from(ms).unwrap_or(u64::MAX);
    if ms >= 3000 {
        Duration::from_secs(ms / 1000)
    } else {
        Duration::from_millis(ms / 100 * 100)
    }
}

/// Judge a lifetime test. The first idle time that expired gives the upper bound (its measured
/// idle time plus the round trip that opened the mapping, the most the mapping can have been
/// idle when the trigger's answer reached the NAT); the longest shorter idle time that was
/// answered gives the lower bound. See `probes::nat::lifetime` for the method.
pub fn binding_lifetime(m: &LifetimeMeasurements) -> BindingLifetimeResult {
    let unknown = |reason| BindingLifetimeResult::Unknown { reason };
    let Some(control) = m.trials.first() else {
        return unknown(LifetimeUnknown::Inconclusive);
    };
    match control.outcome {
        TrialOutcome::Alive => {}
        TrialOutcome::NotOpened => return unknown(LifetimeUnknown::NoMapping),
        TrialOutcome::Expired | TrialOutcome::Error => {
            return unknown(LifetimeUnknown::ResponsePortUnsupported);
        }
        TrialOutcome::Skipped => return unknown(LifetimeUnknown::Inconclusive),
    }
    let idle = |t: &Trial| t.idle.unwrap_or(t.planned_idle);
    let expired = m
        .trials
        .iter()
        .filter(|t| t.outcome == TrialOutcome::Expired)
        .min_by_key(|t| t.planned_idle);
    // An error response that reached us came through the idle mapping: it was alive.
    let alive = m
        .trials
        .iter()
        .filter(|t| matches!(t.outcome, TrialOutcome::Alive | TrialOutcome::Error))
        .filter(|t| expired.is_none_or(|e| t.planned_idle < e.planned_idle))
        .map(idle)
        .max()
        .unwrap_or_default();
    match expired {
        Some(e) => BindingLifetimeResult::Bounded {
            survives_at_least: alive,
            expires_within: idle(e) + e.rtt.unwrap_or_default(),
            recommended_keepalive: recommended_keepalive(alive),
        },
        None => BindingLifetimeResult::AtLeast {
            survives_at_least: alive,
            recommended_keepalive: recommended_keepalive(alive),
        },
    }
}

/// The usual WireGuard persistent keepalive (NetBird's default), for the lifetime warning.
pub const WIREGUARD_KEEPALIVE: Duration = Duration::from_secs(25);

/// A duration in seconds as people read it: whole seconds from 10 s, one decimal below.
pub(crate) fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 10.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

impl fmt::Display for LifetimeUnknown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LifetimeUnknown::NoMapping => "the server did not answer",
            LifetimeUnknown::ResponsePortUnsupported => {
                "the server does not honour RESPONSE-PORT (RFC 5780 §7.5)"
            }
            LifetimeUnknown::Inconclusive => "no trial finished",
        })
    }
}

impl fmt::Display for BindingLifetimeResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindingLifetimeResult::Bounded {
                survives_at_least,
                expires_within,
                recommended_keepalive,
            } => write!(
                f,
                "idle mappings survive ≥ {} and expire ≤ {}: keepalive below {}",
                secs(*survives_at_least),
                secs(*expires_within),
                secs(*recommended_keepalive)
            ),
            BindingLifetimeResult::AtLeast {
                survives_at_least,
                recommended_keepalive,
            } => write!(
                f,
                "idle mappings survive ≥ {} (the longest idle time tried): keepalive below {} is safe",
                secs(*survives_at_least),
                secs(*recommended_keepalive)
            ),
            BindingLifetimeResult::Unknown { reason } => write!(f, "unknown: {reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::fixtures::*;

    #[test]
    fn lifetime_bounds_come_from_the_first_expiry() {
        use TrialOutcome::*;
        let m = lifetime(vec![
            trial(0, Alive),
            trial(10, Alive),
            trial(20, Alive),
            trial(30, Expired),
            trial(40, Skipped),
        ]);
        assert_eq!(
            binding_lifetime(&m),
            BindingLifetimeResult::Bounded {
                survives_at_least: Duration::from_secs(20),
                expires_within: Duration::from_millis(30_500),
                recommended_keepalive: Duration::from_secs(13),
            }
        );
        // An answer after the first expiry (a non-monotonic NAT or a lost trigger) does not
        // raise the lower bound past the upper one.
        let odd = lifetime(vec![trial(0, Alive), trial(10, Expired), trial(20, Alive)]);
        let BindingLifetimeResult::Bounded {
            survives_at_least, ..
        } = binding_lifetime(&odd)
        else {
            panic!()
        };
        assert_eq!(survives_at_least, Duration::ZERO);
        // Control failures.
        for (outcome, reason) in [
            (NotOpened, LifetimeUnknown::NoMapping),
            (Expired, LifetimeUnknown::ResponsePortUnsupported),
            (Error, LifetimeUnknown::ResponsePortUnsupported),
        ] {
            assert_eq!(
                binding_lifetime(&lifetime(vec![trial(0, outcome), trial(10, Skipped)])),
                BindingLifetimeResult::Unknown { reason }
            );
        }
        assert_eq!(
            BindingLifetimeResult::Unknown {
                reason: LifetimeUnknown::NoMapping
            }
            .to_string(),
            "unknown: the server did not answer"
        );
        assert_eq!(
            recommended_keepalive(Duration::from_millis(2900)),
            Duration::from_millis(1900)
        );
    }
}
