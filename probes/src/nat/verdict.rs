//! The P2P-vs-relay verdict over both families, with the fixes in the reference page's terms.

use std::fmt;

use super::behaviour::NatType;
use super::lifetime::{BindingLifetimeResult, WIREGUARD_KEEPALIVE, secs};
use super::measurements::{Measurements, RelayPaths};
use super::pair::{PairOutcome, PeerRow, pair_outcome};
use super::report::{NatPresence, NatReport, UdpStatus};
use crate::finding::Fix;

/// How good the path prospects are, best first.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// Direct with every peer that has UDP (this side is EIM and filters EIF/ADF, or is open).
    Direct,
    /// Direct with peers on endpoint-independent NATs; relay with symmetric ones.
    DirectWithEim,
    /// Direct only with open or full/restricted-cone peers.
    DirectWithPermissivePeers,
    /// UDP works but the NAT behaviour could not be pinned down.
    Unknown,
    /// No direct path: only a relay.
    RelayOnly,
    /// Not even the relay.
    Blocked,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Direct => "direct P2P",
            Level::DirectWithEim => "direct with peers on endpoint-independent NATs",
            Level::DirectWithPermissivePeers => "direct only with open or cone-NAT peers",
            Level::Unknown => "unknown",
            Level::RelayOnly => "relay only",
            Level::Blocked => "blocked",
        })
    }
}

/// The P2P-vs-relay verdict.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Verdict {
    /// How good.
    pub level: Level,
    /// One line, shown first.
    pub headline: String,
    /// The measurements that led there.
    pub reasons: Vec<String>,
    /// What to change.
    pub fixes: Vec<Fix>,
    /// This host against each representative peer type (best family).
    pub peers: Vec<PeerRow>,
}

/// Ports of the NetBird STUN service (reference page "P2P (STUN) service").
const STUN_UDP_PORTS: &str = "{ 80, 443, 3478, 5555 }";

/// Level of one family with UDP, from the pair table against the representative peers.
fn udp_level(t: NatType) -> Level {
    match (
        pair_outcome(t, NatType::SYMMETRIC),
        pair_outcome(t, NatType::PORT_RESTRICTED_CONE),
        pair_outcome(t, NatType::OPEN),
    ) {
        (PairOutcome::Direct, _, _) => Level::Direct,
        (_, PairOutcome::Direct, _) => Level::DirectWithEim,
        (_, PairOutcome::Relayed, PairOutcome::Direct) => Level::DirectWithPermissivePeers,
        (_, _, PairOutcome::Relayed) => Level::RelayOnly,
        _ => Level::Unknown,
    }
}

fn server_ip(m: &Measurements) -> String {
    [m.ipv4.as_ref(), m.ipv6.as_ref()]
        .into_iter()
        .flatten()
        .find_map(|f| f.discovery.as_ref().and_then(|d| d.server))
        .map_or_else(|| "<stun ip>".to_owned(), |s| s.ip().to_string())
}

fn relay_sentence(relay: &RelayPaths) -> String {
    let mut works = Vec::new();
    if relay.turn_udp == Some(true) {
        works.push("TURN/UDP");
    }
    if relay.turn_tcp == Some(true) {
        works.push("TURN/TCP 443");
    }
    if relay.turn_tls == Some(true) {
        works.push("TURN/TLS");
    }
    if relay.relay_tcp443 == Some(true) {
        works.push("relay TCP/443");
    }
    if works.is_empty() {
        "relay path not tested".to_owned()
    } else {
        format!("relay path {} works", works.join(", "))
    }
}

fn fix_stun_turn_egress(stun: &str) -> Fix {
    Fix {
        title: "Allow outbound STUN (UDP 80, 443, 3478, 5555) and TURN (UDP 80, 443; TCP 443-65535) to the NetBird endpoints".into(),
        commands: vec![
            format!("nft add rule inet filter output ip daddr {stun} udp dport {STUN_UDP_PORTS} accept"),
            "nft add rule inet filter output ip daddr <turn ip> udp dport { 80, 443 } accept".into(),
            "nft add rule inet filter output ip daddr <turn ip> tcp dport 443-65535 accept".into(),
            format!("ufw allow out to {stun} port 3478 proto udp"),
            "ufw allow out to <turn ip> port 443 proto tcp".into(),
        ],
        caveat: Some("on a perimeter firewall, add the same as forward rules; resolve the endpoint names yourself (the STUN/TURN lists are dynamic and geo-distributed)".into()),
    }
}

fn fix_peer_udp() -> Fix {
    Fix {
        title: "Allow outbound UDP to any port, so WireGuard can reach peers directly".into(),
        commands: vec![
            "nft add rule inet filter output meta l4proto udp accept".into(),
            "ufw allow out proto udp to any".into(),
        ],
        caveat: Some("peers listen on arbitrary ports; without this every peer is relayed".into()),
    }
}

fn fix_relay() -> Fix {
    Fix {
        title:
            "Allow outbound TCP 443 to the relay and TURN endpoints (the fallback when UDP fails)"
                .into(),
        commands: vec![
            "nft add rule inet filter output ip daddr <relay ip> tcp dport 443 accept".into(),
            "ufw allow out to <relay ip> port 443 proto tcp".into(),
        ],
        caveat: None,
    }
}

fn fix_flat_network() -> Fix {
    Fix {
        title: "No NAT and a filtering firewall: allow inbound UDP for WireGuard P2P (flat networks)".into(),
        commands: vec![
            "ufw allow in proto udp to any port 49152:65535".into(),
            "nft add rule inet filter input udp dport 49152-65535 accept".into(),
        ],
        caveat: Some("this opens the ephemeral UDP range to every sender (Linux cannot scope it to the NetBird process); consider NetBird's relay fallback instead".into()),
    }
}

fn fix_eim() -> Fix {
    Fix {
        title: "Get endpoint-independent mapping on the NAT (RFC 4787 REQ-1), or rely on the relay".into(),
        commands: vec![
            "# Linux router: masquerade without --random-fully".into(),
            "iptables -t nat -A POSTROUTING -o <wan> -j MASQUERADE".into(),
        ],
        caveat: Some("CGNATs and managed firewalls often cannot be changed: keep the relay (TURN/TCP 443) reachable".into()),
    }
}

/// The verdict over the families' reports.
pub(crate) fn verdict(
    reports: &[Option<&NatReport>],
    m: &Measurements,
    relay: &RelayPaths,
) -> Verdict {
    let mut reasons = Vec::new();
    let mut fixes = Vec::new();
    let stun = server_ip(m);

    let tested: Vec<&NatReport> = reports
        .iter()
        .flatten()
        .copied()
        .filter(|r| r.udp != UdpStatus::NotTested)
        .collect();
    for r in reports.iter().flatten() {
        let fam = r.family;
        match r.binding_lifetime {
            Some(
                l @ BindingLifetimeResult::Bounded {
                    survives_at_least,
                    expires_within,
                    ..
                },
            ) => {
                reasons.push(format!("{fam}: {l}"));
                if survives_at_least < WIREGUARD_KEEPALIVE {
                    reasons.push(format!(
                        "{fam}: the NAT drops idle UDP mappings after {}–{}, sooner than the usual {} WireGuard keepalive: direct connections will break when idle unless the keepalive is shorter",
                        secs(survives_at_least),
                        secs(expires_within),
                        secs(WIREGUARD_KEEPALIVE)
                    ));
                }
            }
            Some(l) => reasons.push(format!("{fam}: {l}")),
            None => {}
        }
    }
    for r in &tested {
        let fam = r.family;
        match &r.udp {
            UdpStatus::Blocked => reasons.push(format!("{fam}: no STUN server answered over UDP")),
            UdpStatus::PortsRestricted { open, blocked } => reasons.push(format!(
                "{fam}: UDP answered on ports {open:?} but not on {blocked:?}: an egress filter allows only some ports"
            )),
            UdpStatus::Open | UdpStatus::NotTested => {
                let what = match r.nat {
                    NatPresence::Absent => "no NAT".to_owned(),
                    NatPresence::Present | NatPresence::Unknown => {
                        format!("NAT {}", r.nat_type.short())
                    }
                };
                reasons.push(format!(
                    "{fam}: UDP works, {what}{}",
                    r.public_address
                        .map(|a| format!(", public address {a}"))
                        .unwrap_or_default()
                ));
            }
        }
        for n in &r.notes {
            reasons.push(format!("{fam}: {n}"));
        }
    }

    // The best family wins: ICE gathers candidates in both.
    let best = tested
        .iter()
        .filter(|r| r.nat_type != NatType::UdpBlocked)
        .map(|r| (udp_level(r.nat_type), *r))
        .min_by_key(|(l, _)| *l);

    let relay_ok = relay.any_works();
    let (level, headline, peer_type) = match best {
        Some((level, r)) => {
            let headline = match level {
                Level::Direct => "Direct P2P likely".to_owned(),
                Level::DirectWithEim => {
                    "Direct only with peers on endpoint-independent NATs".to_owned()
                }
                Level::DirectWithPermissivePeers => {
                    "Mostly relayed: direct only with peers on open or full/restricted-cone NATs"
                        .to_owned()
                }
                Level::Unknown => {
                    "UDP works, NAT behaviour not pinned down: direct P2P possible, not proven"
                        .to_owned()
                }
                Level::RelayOnly | Level::Blocked => "Relay only".to_owned(),
            };
            match level {
                Level::DirectWithEim | Level::Unknown if r.nat == NatPresence::Absent => {
                    fixes.push(fix_flat_network());
                }
                Level::DirectWithPermissivePeers => fixes.push(fix_eim()),
                _ => {}
            }
            if level != Level::Direct {
                match relay_ok {
                    Some(false) => reasons.push(
                        "the relay is unreachable: peers that need it will not connect".into(),
                    ),
                    Some(true) => reasons.push(format!("fallback: {}", relay_sentence(relay))),
                    None => {}
                }
                if relay_ok == Some(false) {
                    fixes.push(fix_relay());
                }
            }
            (level, headline, r.nat_type)
        }
        None if tested.is_empty() => (
            Level::Unknown,
            "Nothing measured".to_owned(),
            NatType::UdpBlocked,
        ),
        None => {
            let restricted: Vec<u16> = tested
                .iter()
                .filter_map(|r| match &r.udp {
                    UdpStatus::PortsRestricted { open, .. } => Some(open.clone()),
                    _ => None,
                })
                .flatten()
                .collect();
            let why = if restricted.is_empty() {
                "UDP blocked".to_owned()
            } else {
                let ports: Vec<String> = restricted.iter().map(u16::to_string).collect();
                format!("outbound UDP only to port {}", ports.join(", "))
            };
            fixes.push(fix_stun_turn_egress(&stun));
            fixes.push(fix_peer_udp());
            match relay_ok {
                Some(false) => {
                    fixes.push(fix_relay());
                    (
                        Level::Blocked,
                        "Blocked: no path to the relay".to_owned(),
                        NatType::UdpBlocked,
                    )
                }
                _ => {
                    if relay_ok.is_none() && !relay.tcp_works() {
                        reasons.push("relay reachability was not measured".into());
                    }
                    (
                        Level::RelayOnly,
                        format!("Relay only ({why}) — {}", relay_sentence(relay)),
                        NatType::UdpBlocked,
                    )
                }
            }
        }
    };

    let mut headline = headline;
    if let Some(pm) = m.port_mapping.as_ref().filter(|p| p.available()) {
        let external = pm
            .external_address()
            .map(|a| format!(", external address {a}"))
            .unwrap_or_default();
        reasons.push(format!(
            "the gateway{} offers port mapping ({}{external})",
            pm.gateway.map(|g| format!(" {g}")).unwrap_or_default(),
            pm.protocols().join(", ")
        ));
        if pm.gateway_has_no_public_address() {
            reasons.push(
                "but NAT-PMP reports a network failure: the gateway has no public address itself (double NAT?), so its mappings do not make this host reachable".into(),
            );
        } else if matches!(
            level,
            Level::DirectWithEim | Level::DirectWithPermissivePeers
        ) {
            headline.push_str(
                " (the gateway offers port mapping: a client that requests a mapping is reachable directly, even from symmetric NATs)",
            );
            reasons.push(
                "a port mapped through NAT-PMP, PCP or UPnP is endpoint-independent and unfiltered, so peers behind symmetric NATs can reach it; the table below assumes no mapping is requested".into(),
            );
        }
    } else if let Some(pm) = &m.port_mapping
        && pm.gateway.is_some()
    {
        reasons.push("the gateway offers no port mapping (NAT-PMP, PCP, UPnP IGD)".into());
    }

    let peers = NatType::TABLE
        .iter()
        .map(|(t, label)| PeerRow {
            peer: *t,
            label: (*label).to_owned(),
            outcome: pair_outcome(peer_type, *t),
        })
        .collect();
    Verdict {
        level,
        headline,
        reasons,
        fixes,
        peers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::fixtures::*;

    #[test]
    fn udp_blocked_relay_over_tcp_works() {
        let c = v4(
            blocked(),
            RelayPaths {
                turn_udp: Some(false),
                turn_tcp: Some(true),
                ..RelayPaths::default()
            },
        );
        assert_eq!(c.ipv4.as_ref().unwrap().udp, UdpStatus::Blocked);
        assert_eq!(c.verdict.level, Level::RelayOnly);
        assert_eq!(
            c.verdict.headline,
            "Relay only (UDP blocked) — relay path TURN/TCP 443 works"
        );
        assert!(c.verdict.fixes.iter().any(|f| f.commands.iter().any(|c| c
            == "nft add rule inet filter output ip daddr 192.0.2.10 udp dport { 80, 443, 3478, 5555 } accept")));
        assert!(
            c.verdict
                .peers
                .iter()
                .all(|p| p.outcome == PairOutcome::Relayed)
        );
    }

    #[test]
    fn udp_blocked_and_relay_unreachable_is_blocked() {
        let c = v4(
            blocked(),
            RelayPaths {
                turn_udp: Some(false),
                turn_tcp: Some(false),
                turn_tls: Some(false),
                relay_tcp443: Some(false),
            },
        );
        assert_eq!(c.verdict.level, Level::Blocked);
        assert_eq!(c.verdict.headline, "Blocked: no path to the relay");
        assert!(c.verdict.fixes.iter().any(|f| f.title.contains("TCP 443")));
    }

    #[test]
    fn udp_blocked_relay_untested() {
        let c = v4(blocked(), RelayPaths::default());
        assert_eq!(c.verdict.level, Level::RelayOnly);
        assert!(c.verdict.headline.contains("relay path not tested"));
    }

    #[test]
    fn udp_only_to_one_port_means_relay() {
        let mut m = eim(silent(P), silent(P));
        m.discovery.as_mut().unwrap().mapping_iii = silent(O);
        m.discovery.as_mut().unwrap().mapping_ii = ok("192.0.2.11:3478", "192.0.2.11:3478", PUBLIC);
        let mut m2 = m.clone();
        m2.multi = multi(&[("192.0.2.11:5555", None)]).multi;
        let c = v4(
            m,
            RelayPaths {
                turn_udp: Some(true),
                ..RelayPaths::default()
            },
        );
        assert_eq!(
            c.ipv4.as_ref().unwrap().udp,
            UdpStatus::PortsRestricted {
                open: vec![3478],
                blocked: vec![3479]
            }
        );
        assert_eq!(c.verdict.level, Level::RelayOnly);
        assert_eq!(
            c.verdict.headline,
            "Relay only (outbound UDP only to port 3478) — relay path TURN/UDP works"
        );
        let r2 = report(&m2);
        assert_eq!(
            r2.udp,
            UdpStatus::PortsRestricted {
                open: vec![3478],
                blocked: vec![3479, 5555]
            }
        );
    }

    #[test]
    fn verdict_levels_by_nat_type() {
        let c = v4(eim(ok(P, O, PUBLIC), silent(P)), RelayPaths::default());
        assert_eq!(c.verdict.level, Level::Direct);
        assert_eq!(c.verdict.headline, "Direct P2P likely");

        let c = v4(eim(silent(P), silent(P)), RelayPaths::default());
        assert_eq!(c.verdict.level, Level::DirectWithEim);
        assert_eq!(
            c.verdict.headline,
            "Direct only with peers on endpoint-independent NATs"
        );
        assert_eq!(
            c.verdict
                .peers
                .iter()
                .map(|p| p.outcome)
                .collect::<Vec<_>>(),
            [
                PairOutcome::Direct,
                PairOutcome::Direct,
                PairOutcome::Direct,
                PairOutcome::Relayed,
                PairOutcome::Relayed,
                PairOutcome::Relayed
            ]
        );

        let mut m = eim(silent(P), silent(P));
        let d = m.discovery.as_mut().unwrap();
        d.mapping_ii = ok("192.0.2.11:3478", "192.0.2.11:3478", "198.51.100.1:2");
        d.mapping_iii = ok(O, O, "198.51.100.1:3");
        let c = v4(
            m,
            RelayPaths {
                relay_tcp443: Some(false),
                turn_udp: Some(false),
                turn_tcp: Some(false),
                turn_tls: Some(false),
            },
        );
        assert_eq!(c.verdict.level, Level::DirectWithPermissivePeers);
        assert!(
            c.verdict
                .fixes
                .iter()
                .any(|f| f.title.contains("RFC 4787 REQ-1"))
        );
        assert!(
            c.verdict
                .reasons
                .iter()
                .any(|r| r.contains("relay is unreachable"))
        );
    }

    #[test]
    fn verdict_unknown_behaviour() {
        let c = v4(
            multi(&[("192.0.2.1:3478", Some(PUBLIC))]),
            RelayPaths::default(),
        );
        assert_eq!(c.verdict.level, Level::Unknown);
    }

    #[test]
    fn flat_network_fix_for_a_filtering_host_without_nat() {
        let mut m = eim(silent(P), silent(P));
        let d = m.discovery.as_mut().unwrap();
        d.mapping_i = ok(P, P, LOCAL);
        let c = v4(m, RelayPaths::default());
        let fix = c
            .verdict
            .fixes
            .iter()
            .find(|f| f.title.contains("flat networks"))
            .unwrap();
        assert!(
            fix.commands
                .contains(&"ufw allow in proto udp to any port 49152:65535".to_owned())
        );
        assert!(fix.caveat.as_deref().unwrap().contains("relay fallback"));
        assert!(c.verdict.reasons.iter().any(|r| r.contains("no NAT")));
    }

    #[test]
    fn best_family_wins() {
        let c = classify(&Measurements {
            port_mapping: None,
            ipv4: Some(blocked()),
            ipv6: Some(eim(ok(P, O, PUBLIC), silent(P))),
            relay: RelayPaths::default(),
        });
        assert_eq!(c.ipv4.unwrap().udp, UdpStatus::Blocked);
        assert_eq!(c.verdict.level, Level::Direct);
        assert!(
            c.verdict
                .reasons
                .iter()
                .any(|r| r.starts_with("IPv4: no STUN"))
        );
    }

    #[test]
    fn levels_read_as_words() {
        assert_eq!(Level::Direct.to_string(), "direct P2P");
        assert_eq!(Level::RelayOnly.to_string(), "relay only");
        assert_eq!(
            Level::DirectWithEim.to_string(),
            "direct with peers on endpoint-independent NATs"
        );
    }

    #[test]
    fn nothing_measured() {
        let c = classify(&Measurements::default());
        assert_eq!(c.verdict.level, Level::Unknown);
        assert_eq!(c.verdict.headline, "Nothing measured");
    }

    #[test]
    fn results_are_serializable() {
        fn ser<T: serde::Serialize>() {}
        ser::<Classification>();
        ser::<Measurements>();
        fn de<T: serde::de::DeserializeOwned>() {}
        de::<NatType>();
        de::<Fix>();
        de::<PeerRow>();
    }

    #[test]
    fn short_lifetime_warns_about_the_wireguard_keepalive() {
        use TrialOutcome::*;
        let mut fm = eim(ok(P, O, PUBLIC), silent(P));
        fm.lifetime = Some(lifetime(vec![
            trial(0, Alive),
            trial(15, Alive),
            trial(20, Expired),
        ]));
        let c = v4(fm, RelayPaths::default());
        let r = c.ipv4.as_ref().unwrap();
        assert!(matches!(
            r.binding_lifetime,
            Some(BindingLifetimeResult::Bounded { .. })
        ));
        let reasons = c.verdict.reasons.join("\n");
        assert!(
            reasons.contains("survive ≥ 15 s and expire ≤ 20 s"),
            "{reasons}"
        );
        assert!(reasons.contains("WireGuard keepalive"), "{reasons}");

        let mut fm = eim(ok(P, O, PUBLIC), silent(P));
        fm.lifetime = Some(lifetime(vec![trial(0, Alive), trial(120, Alive)]));
        let c = v4(fm, RelayPaths::default());
        let reasons = c.verdict.reasons.join("\n");
        assert!(reasons.contains("survive ≥ 120 s"), "{reasons}");
        assert!(!reasons.contains("WireGuard keepalive"), "{reasons}");
    }

    #[test]
    fn port_mapping_upgrades_the_symmetric_wording() {
        use crate::nat::portmap::ProtocolStatus;
        let gw = Some(std::net::Ipv4Addr::new(192, 168, 1, 1));
        let pm = PortMapping {
            gateway: gw,
            nat_pmp: ProtocolStatus::Available {
                external: Some("198.51.100.1".parse().unwrap()),
                epoch: 5,
            },
            ..PortMapping::default()
        };
        let c = with_portmap(symmetric(), pm.clone());
        assert_eq!(c.verdict.level, Level::DirectWithPermissivePeers);
        assert!(
            c.verdict.headline.contains("port mapping"),
            "{}",
            c.verdict.headline
        );
        let reasons = c.verdict.reasons.join("\n");
        assert!(
            reasons.contains("offers port mapping (NAT-PMP, external address 198.51.100.1)"),
            "{reasons}"
        );
        assert!(reasons.contains("symmetric NATs can reach it"), "{reasons}");

        // A gateway without a public address of its own: said, and no upgrade.
        let double = PortMapping {
            nat_pmp: ProtocolStatus::Refused {
                code: 3,
                meaning: "network failure",
            },
            pcp: ProtocolStatus::Available {
                external: None,
                epoch: 1,
            },
            ..pm
        };
        let c = with_portmap(symmetric(), double);
        assert!(!c.verdict.headline.contains("port mapping"));
        assert!(c.verdict.reasons.join("\n").contains("network failure"));

        // Nothing offered.
        let none = PortMapping {
            gateway: gw,
            nat_pmp: ProtocolStatus::Unreachable,
            pcp: ProtocolStatus::Unreachable,
            ..PortMapping::default()
        };
        let c = with_portmap(symmetric(), none);
        assert!(c.verdict.reasons.join("\n").contains("no port mapping"));
    }
}
