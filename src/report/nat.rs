//! The NAT metrics that `stunmap nat` and `stunmap check` both write: `stunmap_nat_info`, one
//! series per address family tested with its RFC 4787 mapping and filtering as labels, and the
//! verdict levels' label values.

use probes::Family;
use probes::nat::{Level, NatReport};

use crate::report::prom::Writer;

const INFO: &str = "stunmap_nat_info";

/// Every verdict level with its label value (the JSON reports' spelling), for the one series
/// per level of `stunmap_nat_verdict` and `stunmap_check_level`.
pub(crate) const LEVELS: [(Level, &str); 6] = [
    (Level::Direct, "direct"),
    (Level::DirectWithEim, "direct-with-eim"),
    (
        Level::DirectWithPermissivePeers,
        "direct-with-permissive-peers",
    ),
    (Level::Unknown, "unknown"),
    (Level::RelayOnly, "relay-only"),
    (Level::Blocked, "blocked"),
];

/// The `family` label of a metric: "ipv4", "ipv6".
pub(crate) fn family_label(f: Family) -> &'static str {
    match f {
        Family::Ipv4 => "ipv4",
        Family::Ipv6 => "ipv6",
    }
}

/// Declare `stunmap_nat_info`.
pub(crate) fn info_family(w: &mut Writer) {
    w.family(
        INFO,
        "gauge",
        "NAT behaviour per address family (RFC 4787 mapping and filtering), as labels; always 1.",
    );
}

/// The `stunmap_nat_info` series of `f`: the caller's labels (`head`), then the NAT type,
/// mapping and filtering ("unknown" where not measured).
pub(crate) fn info_sample(w: &mut Writer, head: &[(&str, &str)], f: &NatReport) {
    let nat_type = f.nat_type.short();
    let mut labels = head.to_vec();
    labels.extend([
        ("nat_type", nat_type.as_str()),
        ("mapping", f.mapping.map(|m| m.short()).unwrap_or("unknown")),
        (
            "filtering",
            f.filtering.map(|x| x.short()).unwrap_or("unknown"),
        ),
    ]);
    w.sample(INFO, &labels, 1.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_labels_are_the_json_spelling() {
        for (l, name) in LEVELS {
            assert_eq!(serde_json::to_value(l).unwrap(), name);
        }
    }
}
