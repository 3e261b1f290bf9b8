//! Which way the probes go: the interface and source address the routing table gives each
//! destination, whether that interface is a VPN tunnel, and what the probe does about it.
//!
//! On a host where NetBird (or Tailscale, WireGuard, any tunnel) runs, a destination covered
//! by a routed network or an exit node is reached *through the tunnel*: a STUN answer then
//! describes the tunnel's far end, not this network, and a tunnel that swallows the packet
//! looks like a blocked port. The facts come from the kernel (a route lookup per destination,
//! the interfaces and their addresses); this module judges them and decides, per destination,
//! where the probes leave from ([`Egress`]).

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use crate::finding::{Fix, Severity};

/// `ARPHRD_NONE`: a link without a link-layer header (tun devices, WireGuard).
const ARPHRD_NONE: u16 = 0xfffe;

/// An interface, as the judgement needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Interface {
    /// Kernel index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// Link type (`ARPHRD_*`).
    pub link_type: u16,
    /// MTU.
    pub mtu: Option<u32>,
    /// Its addresses.
    pub addresses: Vec<IpAddr>,
}

/// Why an interface counts as a VPN tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "sign")]
pub enum TunnelSign {
    /// It holds the local NetBird client's address.
    NetbirdInterface,
    /// Its name is a tunnel's (`wt0`, `wg*`, `tailscale*`, `tun*`, `utun*`, `zt*`).
    Name {
        /// The pattern it matched.
        pattern: &'static str,
    },
    /// It has no link layer (`ARPHRD_NONE`: tun devices and WireGuard).
    NoLinkLayer,
}

impl fmt::Display for TunnelSign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TunnelSign::NetbirdInterface => f.write_str("the local NetBird client's interface"),
            TunnelSign::Name { pattern } => write!(f, "a VPN tunnel by its name ({pattern})"),
            TunnelSign::NoLinkLayer => {
                f.write_str("a tunnel (no link layer, like tun and WireGuard devices)")
            }
        }
    }
}

/// Name prefixes of tunnel interfaces: NetBird (`wt0`), WireGuard (`wg0`), Tailscale, tun
/// devices (OpenVPN and others), macOS `utun`, ZeroTier.
const TUNNEL_NAMES: [&str; 6] = ["wt", "wg", "tailscale", "tun", "utun", "zt"];

/// Whether `iface` is a VPN tunnel, and by which sign (the NetBird address first).
pub fn tunnel_sign(iface: &Interface, netbird_ip: Option<IpAddr>) -> Option<TunnelSign> {
    if netbird_ip.is_some_and(|ip| iface.addresses.contains(&ip)) {
        return Some(TunnelSign::NetbirdInterface);
    }
    let name = iface.name.as_str();
    for p in TUNNEL_NAMES {
        // "wt0", "wg1", "tun0", "tailscale0": the prefix, then digits (or nothing more for
        // tailscale's own names); "wlan0" or "tunnelbroker" do not match.
        if let Some(rest) = name.strip_prefix(p)
            && (rest.is_empty() || rest.bytes().all(|c| c.is_ascii_digit()))
        {
            return Some(TunnelSign::Name { pattern: p });
        }
    }
    (iface.link_type == ARPHRD_NONE).then_some(TunnelSign::NoLinkLayer)
}

/// What the routing table says for one destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteFacts {
    /// The destination.
    pub dest: IpAddr,
    /// The output interface.
    pub interface: Option<Interface>,
    /// The source address the kernel picks.
    pub source: Option<IpAddr>,
    /// The next hop (none when on-link).
    pub gateway: Option<IpAddr>,
    /// Why there is no route.
    pub error: Option<String>,
}

/// What the user asked for on the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UserBinding {
    /// `--interface`.
    pub interface: Option<String>,
    /// `--bind` (of the destination's family).
    pub address: Option<IpAddr>,
}

impl UserBinding {
    /// Whether anything was given.
    pub fn is_set(&self) -> bool {
        self.interface.is_some() || self.address.is_some()
    }
}

/// Why probes go through a tunnel after all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "reason")]
pub enum ThroughTunnel {
    /// No other interface has a route to the destination.
    NoAlternative,
    /// Binding to the other interface was refused (needs root or `CAP_NET_RAW`).
    NotPermitted {
        /// The interface that would have been used.
        via: String,
        /// The OS's error.
        error: String,
    },
    /// `--via-tunnel`: the user asked to follow the routing table.
    Asked,
}

/// Where the probes to one destination leave from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "decision")]
pub enum Egress {
    /// The routing table's interface is not a tunnel: nothing changed.
    Route,
    /// The route goes into a tunnel: the probes left by the physical interface instead.
    AvoidedTunnel {
        /// The tunnel.
        tunnel: String,
        /// The interface used instead.
        via: String,
        /// Its source address.
        source: Option<IpAddr>,
    },
    /// The probes went into the tunnel.
    ThroughTunnel {
        /// The tunnel.
        tunnel: String,
        /// Why.
        #[serde(flatten)]
        why: ThroughTunnel,
    },
    /// `--bind` / `--interface` decided.
    UserBound {
        /// The binding given.
        #[serde(flatten)]
        binding: UserBinding,
    },
    /// The host has no route to the destination.
    NoRoute {
        /// What the kernel said.
        error: String,
    },
}

/// Decide where the probes to a destination leave from: the user's binding if given; else,
/// when the route goes into a tunnel and `avoid` is on, the alternative route (through a
/// physical interface) if there is one.
pub fn decide(
    route: &RouteFacts,
    alternative: Option<&RouteFacts>,
    netbird_ip: Option<IpAddr>,
    user: &UserBinding,
    avoid: bool,
) -> Egress {
    if user.is_set() {
        return Egress::UserBound {
            binding: user.clone(),
        };
    }
    let Some(iface) = &route.interface else {
        return Egress::NoRoute {
            error: route
                .error
                .clone()
                .unwrap_or_else(|| "no route".to_string()),
        };
    };
    if tunnel_sign(iface, netbird_ip).is_none() {
        return Egress::Route;
    }
    let tunnel = iface.name.clone();
    if !avoid {
        return Egress::ThroughTunnel {
            tunnel,
            why: ThroughTunnel::Asked,
        };
    }
    let physical = alternative.and_then(|a| {
        let i = a.interface.as_ref()?;
        (tunnel_sign(i, netbird_ip).is_none() && i.index != iface.index).then_some((i, a.source))
    });
    match physical {
        Some((i, source)) => Egress::AvoidedTunnel {
            tunnel,
            via: i.name.clone(),
            source,
        },
        None => Egress::ThroughTunnel {
            tunnel,
            why: ThroughTunnel::NoAlternative,
        },
    }
}

/// One destination's path, as reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DestinationPath {
    /// What it is ("STUN", "TURN").
    pub role: String,
    /// The destination.
    pub dest: IpAddr,
    /// The routing table's interface.
    pub route_interface: Option<String>,
    /// The routing table's source address.
    pub route_source: Option<IpAddr>,
    /// The routing table's next hop.
    pub gateway: Option<IpAddr>,
    /// Why that interface is a tunnel.
    pub tunnel: Option<TunnelSign>,
    /// What was done.
    pub egress: Egress,
    /// The MTU of the interface the probes left by.
    pub egress_mtu: Option<u32>,
}

impl DestinationPath {
    /// The judgement of one destination from its route, the alternative and the decision.
    pub fn new(
        role: impl Into<String>,
        route: &RouteFacts,
        alternative: Option<&RouteFacts>,
        netbird_ip: Option<IpAddr>,
        egress: Egress,
    ) -> DestinationPath {
        let tunnel = route
            .interface
            .as_ref()
            .and_then(|i| tunnel_sign(i, netbird_ip));
        let egress_mtu = match &egress {
            Egress::AvoidedTunnel { .. } => alternative
                .and_then(|a| a.interface.as_ref())
                .and_then(|i| i.mtu),
            _ => route.interface.as_ref().and_then(|i| i.mtu),
        };
        DestinationPath {
            role: role.into(),
            dest: route.dest,
            route_interface: route.interface.as_ref().map(|i| i.name.clone()),
            route_source: route.source,
            gateway: route.gateway,
            tunnel,
            egress,
            egress_mtu,
        }
    }

    /// One line for people.
    pub fn sentence(&self) -> String {
        let via = self.route_interface.as_deref().unwrap_or("?");
        match &self.egress {
            Egress::Route => format!(
                "{} {}: out of {via}{}",
                self.role,
                self.dest,
                self.route_source
                    .map(|s| format!(" from {s}"))
                    .unwrap_or_default()
            ),
            Egress::AvoidedTunnel {
                tunnel,
                via,
                source,
            } => format!(
                "{} {}: the route goes into the VPN tunnel {tunnel} ({}); the probes left by {via}{} instead, so the results describe this network, not the tunnel",
                self.role,
                self.dest,
                self.tunnel.map(|t| t.to_string()).unwrap_or_default(),
                source.map(|s| format!(" from {s}")).unwrap_or_default()
            ),
            Egress::ThroughTunnel { tunnel, why } => {
                let because = match why {
                    ThroughTunnel::NoAlternative => {
                        "no other interface has a route to it".to_string()
                    }
                    ThroughTunnel::NotPermitted { via, error } => {
                        format!("leaving by {via} needs root or CAP_NET_RAW ({error})")
                    }
                    ThroughTunnel::Asked => "--via-tunnel".to_string(),
                };
                format!(
                    "{} {}: the probes went INTO the VPN tunnel {tunnel} ({because}): the results describe the path through the tunnel (an exit node or a routed network), not this network",
                    self.role, self.dest
                )
            }
            Egress::UserBound { binding } => {
                let mut parts = Vec::new();
                if let Some(i) = &binding.interface {
                    parts.push(format!("interface {i}"));
                }
                if let Some(a) = binding.address {
                    parts.push(format!("address {a}"));
                }
                format!(
                    "{} {}: sent from {} as asked (the routing table says {via})",
                    self.role,
                    self.dest,
                    parts.join(", ")
                )
            }
            Egress::NoRoute { error } => {
                format!("{} {}: no route ({error})", self.role, self.dest)
            }
        }
    }

    /// Whether the probes to this destination measured a tunnel instead of the network.
    pub fn through_tunnel(&self) -> bool {
        matches!(self.egress, Egress::ThroughTunnel { .. })
    }
}

/// The destinations of `paths`, comma-separated.
fn destinations(paths: &[&DestinationPath]) -> String {
    paths
        .iter()
        .map(|p| p.dest.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the route section concludes: its severity and, when the probes went through a tunnel,
/// the fix.
pub fn finding(paths: &[DestinationPath]) -> Option<(Severity, String, Option<Fix>)> {
    let through: Vec<&DestinationPath> = paths.iter().filter(|p| p.through_tunnel()).collect();
    if let Some(first) = through.first() {
        let tunnel = match &first.egress {
            Egress::ThroughTunnel { tunnel, .. } => tunnel.clone(),
            _ => String::new(),
        };
        let physical = "the physical interface (eth0, wlan0, …)";
        return Some((
            Severity::High,
            format!(
                "probes to {} went through the VPN tunnel {tunnel}: the STUN/TURN results describe the tunnel, not this network",
                destinations(&through)
            ),
            Some(Fix {
                title: format!(
                    "Measure this network, not the tunnel: run stunmap as root (it then leaves by {physical} by itself), or name the interface with --interface NAME; if an exit node or a routed network of the VPN covers the STUN/TURN servers, that is also the path NetBird's own traffic would take unless the client excludes it"
                ),
                commands: vec![
                    format!("ip route get {}", first.dest),
                    "sudo stunmap check --interface eth0".into(),
                ],
                caveat: None,
            }),
        ));
    }
    let avoided: Vec<&DestinationPath> = paths
        .iter()
        .filter(|p| matches!(p.egress, Egress::AvoidedTunnel { .. }))
        .collect();
    if let Some(first) = avoided.first()
        && let Egress::AvoidedTunnel { tunnel, via, .. } = &first.egress
    {
        return Some((
            Severity::Info,
            format!(
                "the route to {} goes into the VPN tunnel {tunnel}; the probes left by {via} instead",
                destinations(&avoided)
            ),
            None,
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(index: u32, name: &str, link_type: u16, addr: &str) -> Interface {
        Interface {
            index,
            name: name.into(),
            link_type,
            mtu: Some(1500),
            addresses: vec![addr.parse().unwrap()],
        }
    }

    fn route(i: Option<Interface>, src: &str) -> RouteFacts {
        RouteFacts {
            dest: "198.18.0.10".parse().unwrap(),
            interface: i,
            source: Some(src.parse().unwrap()),
            gateway: None,
            error: None,
        }
    }

    #[test]
    fn tunnels_are_recognised_by_name_address_and_link_type() {
        let eth = iface(2, "eth0", 1, "192.168.1.2");
        assert_eq!(tunnel_sign(&eth, None), None);
        for name in [
            "wt0",
            "wg1",
            "tailscale0",
            "tun3",
            "utun2",
            "zt0",
            "tailscale",
        ] {
            assert!(
                matches!(
                    tunnel_sign(&iface(3, name, 1, "10.0.0.1"), None),
                    Some(TunnelSign::Name { .. })
                ),
                "{name}"
            );
        }
        for name in ["wlan0", "tunnelbroker", "wtx", "enp3s0"] {
            assert_eq!(
                tunnel_sign(&iface(3, name, 1, "10.0.0.1"), None),
                None,
                "{name}"
            );
        }
        assert_eq!(
            tunnel_sign(&iface(4, "vpn7", ARPHRD_NONE, "10.0.0.1"), None),
            Some(TunnelSign::NoLinkLayer)
        );
        // NetBird renamed its interface: its address still gives it away.
        let nb = iface(5, "corp", 1, "100.90.1.2");
        assert_eq!(
            tunnel_sign(&nb, Some("100.90.1.2".parse().unwrap())),
            Some(TunnelSign::NetbirdInterface)
        );
    }

    #[test]
    fn the_tunnel_is_avoided_when_another_interface_has_a_route() {
        let wt0 = iface(5, "wt0", ARPHRD_NONE, "10.99.0.1");
        let lan = iface(2, "lan0", 1, "100.64.0.2");
        let r = route(Some(wt0.clone()), "10.99.0.1");
        let alt = route(Some(lan), "100.64.0.2");
        let none = UserBinding::default();
        let e = decide(&r, Some(&alt), None, &none, true);
        assert_eq!(
            e,
            Egress::AvoidedTunnel {
                tunnel: "wt0".into(),
                via: "lan0".into(),
                source: Some("100.64.0.2".parse().unwrap())
            }
        );
        let p = DestinationPath::new("STUN", &r, Some(&alt), None, e);
        assert!(
            p.sentence()
                .contains("left by lan0 from 100.64.0.2 instead"),
            "{}",
            p.sentence()
        );
        let (sev, line, fix) = finding(&[p]).unwrap();
        assert_eq!(sev, Severity::Info);
        assert!(line.contains("goes into the VPN tunnel wt0"), "{line}");
        assert!(fix.is_none());
        // No alternative, or the alternative is the tunnel itself: through the tunnel.
        assert!(matches!(
            decide(&r, None, None, &none, true),
            Egress::ThroughTunnel {
                why: ThroughTunnel::NoAlternative,
                ..
            }
        ));
        let same = route(Some(wt0), "10.99.0.1");
        assert!(matches!(
            decide(&r, Some(&same), None, &none, true),
            Egress::ThroughTunnel { .. }
        ));
        assert!(matches!(
            decide(&r, Some(&alt), None, &none, false),
            Egress::ThroughTunnel {
                why: ThroughTunnel::Asked,
                ..
            }
        ));
    }

    #[test]
    fn a_physical_route_and_a_user_binding_are_left_alone() {
        let lan = iface(2, "lan0", 1, "100.64.0.2");
        let r = route(Some(lan), "100.64.0.2");
        assert_eq!(
            decide(&r, None, None, &UserBinding::default(), true),
            Egress::Route
        );
        let user = UserBinding {
            interface: Some("eth1".into()),
            address: None,
        };
        assert!(matches!(
            decide(&r, None, None, &user, true),
            Egress::UserBound { .. }
        ));
        let no = RouteFacts {
            interface: None,
            error: Some("Network is unreachable".into()),
            ..route(None, "100.64.0.2")
        };
        assert!(matches!(
            decide(&no, None, None, &UserBinding::default(), true),
            Egress::NoRoute { .. }
        ));
    }

    #[test]
    fn probes_through_a_tunnel_are_a_high_finding_with_a_fix() {
        let wt0 = iface(5, "wt0", ARPHRD_NONE, "10.99.0.1");
        let r = route(Some(wt0), "10.99.0.1");
        let e = Egress::ThroughTunnel {
            tunnel: "wt0".into(),
            why: ThroughTunnel::NotPermitted {
                via: "eth0".into(),
                error: "Operation not permitted".into(),
            },
        };
        let p = DestinationPath::new("STUN", &r, None, None, e);
        assert!(
            p.sentence().contains("INTO the VPN tunnel wt0"),
            "{}",
            p.sentence()
        );
        let (sev, line, fix) = finding(&[p]).unwrap();
        assert_eq!(sev, Severity::High);
        assert!(line.contains("198.18.0.10"), "{line}");
        assert!(fix.unwrap().commands[0].starts_with("ip route get"));
    }
}
