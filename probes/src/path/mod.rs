//! The path facts that decide whether a WireGuard peer ends up direct, relayed or broken, and
//! that port and NAT tests alone do not show:
//!
//! - [`route`]: which interface and source address the probes leave by, and whether that is a
//!   VPN tunnel (then the probe leaves by the physical interface instead, and says so);
//! - [`double_nat`]: a NAT beyond the gateway (carrier-grade NAT, a router behind a router);
//! - [`mapping`]: a port mapping on the gateway that is proven to let unsolicited traffic in
//!   (created, verified from outside, always deleted);
//! - [`pmtu`]: the largest datagram that passes with DF set, PMTU black holes, and whether
//!   WireGuard's outer packets fit;
//! - [`captive`]: a captive portal, which holds every other connection until someone logs in.
//!
//! Each module is pure (facts in, typed judgement out); the engine gathers the facts. [`apply`]
//! folds the findings into `stunmap check`'s verdict: a portal goes first, since everything
//! else follows from it.

pub mod captive;
pub mod double_nat;
pub mod mapping;
pub mod pmtu;
pub mod route;

use serde::Serialize;

use crate::check::CheckVerdict;
use crate::finding::{Finding, Severity, Status};
use crate::nat::Level;

/// What a path finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathKind {
    /// A captive portal holds the network.
    CaptivePortal,
    /// The probes' route goes into a VPN tunnel.
    Tunnel,
    /// The path MTU (and PMTU black holes).
    PathMtu,
    /// A NAT beyond the gateway.
    DoubleNat,
    /// A port mapping on the gateway, proven or not.
    PortMapping,
}

/// A finding about the path.
pub type PathFinding = Finding<PathKind>;

/// Fold the path findings into a check's verdict: each adds its reason (the most severe
/// first) and its fix; a captive portal takes the headline and blocks, since nothing else
/// works until someone logs in; probes through a tunnel and WireGuard packets that do not fit
/// the path are said in the headline; a proven port mapping lifts the level to direct (the
/// NetBird client creates such mappings itself).
pub fn apply(v: &mut CheckVerdict, findings: &[PathFinding]) {
    // A path MTU that is fine is no reason for anything: it stays in its section.
    let mut ordered: Vec<&PathFinding> = findings
        .iter()
        .filter(|f| !(f.kind == PathKind::PathMtu && f.severity == Severity::Info))
        .collect();
    ordered.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let mut reasons: Vec<String> = ordered.iter().map(|f| f.summary.clone()).collect();
    reasons.append(&mut v.reasons);
    v.reasons = reasons;
    let mut fixes: Vec<_> = ordered.iter().filter_map(|f| f.fix.clone()).collect();
    fixes.append(&mut v.fixes);
    let mut seen = std::collections::HashSet::new();
    fixes.retain(|x| seen.insert(x.title.clone()));
    v.fixes = fixes;

    for f in findings {
        match f.kind {
            PathKind::Tunnel if f.severity >= Severity::High => {
                v.headline
                    .push_str(" (measured through a VPN tunnel: see the route findings)");
            }
            PathKind::PathMtu if f.severity >= Severity::Medium => {
                if v.status == Status::Ok {
                    v.status = Status::Degraded;
                }
                // Once, also when the STUN path and the relay path both say so.
                const TOO_BIG: &str = ", but WireGuard's packets do not fit the path MTU";
                if v.status != Status::Blocked && !v.headline.contains(TOO_BIG) {
                    v.headline.push_str(TOO_BIG);
                }
            }
            PathKind::PortMapping
                if f.severity == Severity::Info
                    && f.summary.contains(" works:")
                    && matches!(
                        v.level,
                        Level::DirectWithEim | Level::DirectWithPermissivePeers | Level::Unknown
                    ) =>
            {
                v.level = Level::Direct;
            }
            _ => {}
        }
    }
    if let Some(portal) = findings.iter().find(|f| f.kind == PathKind::CaptivePortal) {
        v.status = Status::Blocked;
        v.level = Level::Blocked;
        v.headline = format!(
            "Blocked: {} — log in to the network first; until then the rest of this report shows the portal, not the network",
            portal.summary
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Fix;

    fn verdict() -> CheckVerdict {
        CheckVerdict {
            status: Status::Ok,
            level: Level::DirectWithEim,
            headline: "Direct P2P likely".into(),
            reasons: vec!["NAT: endpoint-independent".into()],
            fixes: vec![],
        }
    }

    #[test]
    fn a_portal_goes_first_and_blocks() {
        let mut v = verdict();
        apply(
            &mut v,
            &[
                Finding::new(PathKind::PathMtu, Severity::Info, "MTU fine"),
                Finding::new(
                    PathKind::CaptivePortal,
                    Severity::Critical,
                    "captive portal: plain HTTP is redirected to another domain (portal.example)",
                )
                .with_fix(Fix::new("Log in")),
            ],
        );
        assert_eq!((v.status, v.level), (Status::Blocked, Level::Blocked));
        assert!(
            v.headline.starts_with("Blocked: captive portal"),
            "{}",
            v.headline
        );
        assert!(
            v.reasons[0].starts_with("captive portal"),
            "{:?}",
            v.reasons
        );
        assert_eq!(v.fixes[0].title, "Log in");
    }

    #[test]
    fn an_mtu_that_wireguard_does_not_fit_degrades_and_a_proven_mapping_lifts_the_level() {
        let mut v = verdict();
        apply(
            &mut v,
            &[
                Finding::new(PathKind::PathMtu, Severity::High, "black hole"),
                Finding::new(PathKind::PathMtu, Severity::Info, "MTU fine"),
                Finding::new(
                    PathKind::PortMapping,
                    Severity::Info,
                    "a PCP mapping on 192.168.1.1 works: unsolicited traffic …",
                ),
            ],
        );
        assert_eq!(v.status, Status::Degraded);
        assert_eq!(v.level, Level::Direct);
        assert!(v.headline.contains("do not fit"), "{}", v.headline);
        assert_eq!(v.reasons.last().unwrap(), "NAT: endpoint-independent");
        assert!(!v.reasons.iter().any(|r| r == "MTU fine"));
    }

    #[test]
    fn the_stun_path_and_the_relay_path_too_small_say_it_once_in_the_headline() {
        let mut v = verdict();
        apply(
            &mut v,
            &[
                Finding::new(PathKind::PathMtu, Severity::High, "black hole"),
                Finding::new(PathKind::PathMtu, Severity::Medium, "relay path too small"),
            ],
        );
        assert_eq!(v.status, Status::Degraded);
        assert_eq!(
            v.headline.matches("do not fit").count(),
            1,
            "{}",
            v.headline
        );
        assert_eq!(&v.reasons[..2], ["black hole", "relay path too small"]);
    }
}
