//! The routes of a debug bundle (`routes.txt`): a default route or a peer's network routed into
//! the tunnel, and tunnel routes that overlap a network this host reaches directly.
//!
//! Two layouts exist: the table NetBird prints in newer versions (`Routing Table:` then the
//! columns Destination, Gateway, Interface, Idx, Metric, Protocol, Scope, Type, Table, Flags,
//! and on Linux an `IP Rules:` table after it) and the older plain lists (`IPv4 Routes:` /
//! `IPv6 Routes:`, one prefix a line, no interface). Only the first can say which routes go into
//! the tunnel.

use serde::Serialize;

use super::status::Status;
use crate::hostfw::Cidr;

/// Most routes read.
pub const MAX_ROUTES: usize = 100_000;

/// One route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Route {
    /// Destination.
    pub destination: Cidr,
    /// Gateway (`-` for none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Interface.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Routing table (`main`, `netbird`, `7120` …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
}

/// The routes read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Routes {
    /// Routes in file order.
    pub routes: Vec<Route>,
    /// The file names the interface of each route (the newer table layout).
    pub with_interfaces: bool,
}

/// What a route finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteKind {
    /// A default route (0.0.0.0/0, ::/0, or the two halves) goes into the tunnel: an exit node.
    DefaultIntoTunnel,
    /// A peer's network is routed into the tunnel.
    NetworkIntoTunnel,
    /// A tunnel route overlaps a network reached on another interface.
    Overlap,
    /// A peer offers a default route (exit node) in the status.
    ExitNodeOffered,
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteFinding {
    /// Kind.
    pub kind: RouteKind,
    /// The prefix.
    pub prefix: String,
    /// Interface (tunnel routes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Whether it can break connectivity (overlaps); the others are information.
    pub concern: bool,
    /// One line.
    pub detail: String,
}

fn cell(s: &str) -> Option<String> {
    (s != "-" && !s.is_empty()).then(|| s.chars().take(64).collect())
}

/// Parse `routes.txt`.
pub fn parse(text: &str) -> Routes {
    let mut out = Routes::default();
    let mut in_table = false;
    let mut in_list = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("Routing Table") {
            in_table = true;
            in_list = false;
            continue;
        }
        if t.starts_with("IPv4 Routes") || t.starts_with("IPv6 Routes") {
            in_list = true;
            in_table = false;
            continue;
        }
        if t.ends_with(':') && !t.contains(' ') || t.starts_with("IP Rules") {
            in_table = false;
            in_list = false;
            continue;
        }
        if out.routes.len() >= MAX_ROUTES
            || t.is_empty()
            || t.starts_with('=')
            || t.starts_with('-')
        {
            continue;
        }
        let cols: Vec<&str> = t.split_whitespace().collect();
        if in_table {
            let Some(dst) = cols.first() else { continue };
            if *dst == "Destination" {
                continue;
            }
            let Some(destination) = prefix(dst) else {
                continue;
            };
            out.with_interfaces = true;
            out.routes.push(Route {
                destination,
                gateway: cols.get(1).and_then(|s| cell(s)),
                interface: cols.get(2).and_then(|s| cell(s)),
                table: cols.get(8).and_then(|s| cell(s)),
            });
        } else if in_list && let Some(destination) = cols.first().and_then(|d| prefix(d)) {
            out.routes.push(Route {
                destination,
                gateway: None,
                interface: None,
                table: None,
            });
        }
    }
    out
}

fn prefix(s: &str) -> Option<Cidr> {
    if s == "default" {
        return Cidr::parse("0.0.0.0/0");
    }
    Cidr::parse(s)
}

fn is_default(c: &Cidr) -> bool {
    c.prefix_len() <= 1
}

/// Findings from the routes and the status (networks peers route, exit nodes).
pub fn findings(routes: Option<&Routes>, st: Option<&Status>, tunnel: &str) -> Vec<RouteFinding> {
    let mut out = Vec::new();
    let vpn = Cidr::parse("100.64.0.0/10");
    let in_tunnel = |r: &Route| {
        r.interface
            .as_deref()
            .is_some_and(|i| i == tunnel || (tunnel == "wt0" && i.starts_with("wt")))
    };
    if let Some(rs) = routes {
        let mut default_done = false;
        for r in rs.routes.iter().filter(|r| in_tunnel(r)) {
            let iface = r.interface.clone();
            let table = r
                .table
                .as_deref()
                .map(|t| format!(", table {t}"))
                .unwrap_or_default();
            if is_default(&r.destination) {
                if !default_done {
                    default_done = true;
                    out.push(RouteFinding {
                        kind: RouteKind::DefaultIntoTunnel,
                        prefix: r.destination.to_string(),
                        interface: iface,
                        concern: false,
                        detail: format!(
                            "a default route goes into the tunnel ({tunnel}{table}): an exit node carries this host's internet traffic; paths to peers and relays that are not excluded from it go through the exit node too"
                        ),
                    });
                }
                continue;
            }
            if vpn.is_some_and(|v| v.covers(&r.destination)) {
                continue;
            }
            out.push(RouteFinding {
                kind: RouteKind::NetworkIntoTunnel,
                prefix: r.destination.to_string(),
                interface: iface.clone(),
                concern: false,
                detail: format!(
                    "{} is routed into the tunnel ({tunnel}{table}): traffic for it goes to the peer that routes it",
                    r.destination
                ),
            });
            if let Some(o) = rs.routes.iter().find(|o| {
                !in_tunnel(o)
                    && o.interface.is_some()
                    && !is_default(&o.destination)
                    && o.destination.overlaps(&r.destination)
            }) {
                out.push(RouteFinding {
                    kind: RouteKind::Overlap,
                    prefix: r.destination.to_string(),
                    interface: iface,
                    concern: true,
                    detail: format!(
                        "{} routed into the tunnel overlaps {} on {}: the more specific route wins, so either the local hosts or the peer's network are unreachable from here",
                        r.destination,
                        o.destination,
                        o.interface.as_deref().unwrap_or("?")
                    ),
                });
            }
        }
    }
    if let Some(st) = st {
        for p in &st.peers {
            if p.networks
                .iter()
                .filter_map(|n| Cidr::parse(n))
                .any(|c| c.prefix_len() == 0)
            {
                out.push(RouteFinding {
                    kind: RouteKind::ExitNodeOffered,
                    prefix: "0.0.0.0/0".into(),
                    interface: None,
                    concern: false,
                    detail: format!("{} offers a default route (exit node)", p.fqdn),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const TABLE: &str = "Routing Table:\n=============\n\n\
Destination     Gateway      Interface  Idx  Metric  Protocol  Scope     Type     Table    Flags  \n\
--------------  -----------  ---------  ---  ------  --------  --------  -------  -------  -----  \n\
0.0.0.0/0       192.168.1.1  eth0       2    100     dhcp      universe  unicast  main     -      \n\
0.0.0.0/0       -            wt0        5    0       static    link      unicast  netbird  -      \n\
10.10.0.0/24    -            wt0        5    0       static    link      unicast  netbird  -      \n\
192.168.1.0/24  -            eth0       2    100     kernel    link      unicast  main     -      \n\
192.168.1.0/25  -            wt0        5    0       static    link      unicast  netbird  -      \n\
100.64.0.0/10   -            wt0        5    0       kernel    link      unicast  main     -      \n\n\
IP Rules:\n=========\n\nPriority  From  Table  Action  \n--------  ----  -----  ------  \n0         all   local  lookup  \n";

    #[test]
    fn table_layout() {
        let r = parse(TABLE);
        assert!(r.with_interfaces);
        assert_eq!(r.routes.len(), 6);
        let f = findings(Some(&r), None, "wt0");
        let kinds: Vec<RouteKind> = f.iter().map(|f| f.kind).collect();
        assert_eq!(
            kinds,
            vec![
                RouteKind::DefaultIntoTunnel,
                RouteKind::NetworkIntoTunnel,
                RouteKind::NetworkIntoTunnel,
                RouteKind::Overlap
            ]
        );
        assert!(f[3].detail.contains("192.168.1.0/25") && f[3].detail.contains("eth0"));
        assert!(f[3].concern);
    }

    #[test]
    fn old_layout_has_no_interfaces() {
        let r = parse("IPv4 Routes:\n10.0.0.0/8\n0.0.0.0/0\n\nIPv6 Routes:\n::/0\n");
        assert!(!r.with_interfaces);
        assert_eq!(r.routes.len(), 3);
        assert!(findings(Some(&r), None, "wt0").is_empty());
    }
}
