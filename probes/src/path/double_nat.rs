//! Double NAT and carrier-grade NAT: is there a NAT beyond the gateway?
//!
//! The gateway says what it thinks its external address is (NAT-PMP's external address
//! response, RFC 6886 §3.2; PCP's MAP answer, RFC 6887 §11.1; UPnP IGD's
//! `GetExternalIPAddress`), and the STUN server says what the internet sees (the mapped
//! address). When they differ, or the gateway's external address is in the shared address
//! space of carriers (100.64.0.0/10, RFC 6598) or a private range (RFC 1918), another NAT sits
//! between the gateway and the internet. Port mappings on the gateway then do not reach
//! peers, and whether P2P works depends on that other NAT — often a carrier's, with
//! endpoint-dependent mapping and short timeouts.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;

use crate::finding::{Fix, Severity};

/// What the gateway said about its external address, per protocol.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GatewayExternal {
    /// The gateway.
    pub gateway: Option<Ipv4Addr>,
    /// NAT-PMP's external address.
    pub nat_pmp: Option<Ipv4Addr>,
    /// NAT-PMP answered "network failure" (RFC 6886 §3.5): the gateway has no usable
    /// external address (miniupnpd says this when its own WAN address is private).
    pub nat_pmp_no_public: bool,
    /// PCP's assigned external address (from a MAP answer).
    pub pcp: Option<IpAddr>,
    /// UPnP's `NewExternalIPAddress`; `Some(None)` when the gateway answered with an empty
    /// value (it has none it would call public).
    pub upnp: Option<Option<Ipv4Addr>>,
}

impl GatewayExternal {
    /// The external address the gateway reported, by the first protocol that named one.
    pub fn address(&self) -> Option<(IpAddr, &'static str)> {
        self.nat_pmp
            .map(|a| (IpAddr::V4(a), "NAT-PMP"))
            .or(self.pcp.map(|a| (a, "PCP")))
            .or(self.upnp.flatten().map(|a| (IpAddr::V4(a), "UPnP IGD")))
    }

    /// Whether the gateway said it has no public address.
    pub fn says_no_public(&self) -> bool {
        self.nat_pmp_no_public || self.upnp == Some(None)
    }
}

/// The kind of address an external address is.
fn private_kind(ip: IpAddr) -> Option<DoubleKind> {
    let v4 = match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => {
            // Unique local addresses (fc00::/7, RFC 4193) are not public either.
            let [first, ..] = v6.segments();
            return (first & 0xfe00 == 0xfc00).then_some(DoubleKind::Private);
        }
    };
    let [a, b, ..] = v4.octets();
    if a == 100 && (64..128).contains(&b) {
        return Some(DoubleKind::CarrierGrade);
    }
    if v4.is_private() || v4.is_link_local() || (a == 192 && b == 0) {
        return Some(DoubleKind::Private);
    }
    None
}

/// How the second NAT shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DoubleKind {
    /// The gateway's external address is in 100.64.0.0/10 (RFC 6598): a carrier-grade NAT.
    CarrierGrade,
    /// The gateway's external address is private (RFC 1918): the router is behind another
    /// router.
    Private,
    /// The gateway's external address is public but not the one the internet sees: a NAT
    /// beyond the gateway (a carrier NAT with public addresses, a second router).
    Mismatch,
    /// The gateway says it has no public address (NAT-PMP network failure, UPnP's empty
    /// external address).
    GatewayHasNoPublic,
}

impl fmt::Display for DoubleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DoubleKind::CarrierGrade => "carrier-grade NAT (RFC 6598 address on the gateway)",
            DoubleKind::Private => "the gateway is behind another router (private address)",
            DoubleKind::Mismatch => "the gateway's external address is not the public one",
            DoubleKind::GatewayHasNoPublic => "the gateway says it has no public address",
        })
    }
}

/// The judgement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "verdict")]
pub enum NatLayers {
    /// One NAT: the gateway's external address is the public address.
    Single {
        /// It.
        external: IpAddr,
    },
    /// A NAT beyond the gateway.
    Double {
        /// How it shows.
        kind: DoubleKind,
        /// What the gateway reported.
        gateway_external: Option<IpAddr>,
        /// By which protocol.
        reported_by: Option<&'static str>,
        /// What the internet sees.
        public: Option<IpAddr>,
    },
    /// Cannot tell: the gateway named no external address, or no public address is known.
    Unknown {
        /// Why.
        why: String,
    },
}

impl NatLayers {
    /// Whether a double NAT was found.
    pub fn is_double(&self) -> bool {
        matches!(self, NatLayers::Double { .. })
    }
}

/// Judge the gateway's view against the public (STUN-mapped) IPv4 address. `nat_present`:
/// whether the NAT tests saw a NAT at all (false: the host has a public address itself).
pub fn judge(gw: &GatewayExternal, public: Option<IpAddr>, nat_present: Option<bool>) -> NatLayers {
    if gw.gateway.is_none() {
        return NatLayers::Unknown {
            why: "no IPv4 gateway to ask".into(),
        };
    }
    if nat_present == Some(false) {
        return NatLayers::Unknown {
            why: "no NAT: this host's own address is public".into(),
        };
    }
    let reported = gw.address();
    if let Some((ext, by)) = reported {
        if let Some(kind) = private_kind(ext) {
            return NatLayers::Double {
                kind,
                gateway_external: Some(ext),
                reported_by: Some(by),
                public,
            };
        }
        return match public {
            Some(p) if p != ext => NatLayers::Double {
                kind: DoubleKind::Mismatch,
                gateway_external: Some(ext),
                reported_by: Some(by),
                public: Some(p),
            },
            Some(_) => NatLayers::Single { external: ext },
            None => NatLayers::Unknown {
                why: format!(
                    "the gateway reports {ext} ({by}), but no STUN server gave the public address to compare"
                ),
            },
        };
    }
    if gw.says_no_public() {
        return NatLayers::Double {
            kind: if public.and_then(private_kind) == Some(DoubleKind::CarrierGrade) {
                DoubleKind::CarrierGrade
            } else {
                DoubleKind::GatewayHasNoPublic
            },
            gateway_external: None,
            reported_by: Some(if gw.nat_pmp_no_public {
                "NAT-PMP"
            } else {
                "UPnP IGD"
            }),
            public,
        };
    }
    if let Some(p) = public
        && private_kind(p) == Some(DoubleKind::CarrierGrade)
    {
        // The STUN server itself sits inside the carrier's network.
        return NatLayers::Double {
            kind: DoubleKind::CarrierGrade,
            gateway_external: None,
            reported_by: None,
            public: Some(p),
        };
    }
    NatLayers::Unknown {
        why: "the gateway did not name its external address (no NAT-PMP, PCP or UPnP IGD answer)"
            .into(),
    }
}

/// The verdict's line, severity and fix.
pub fn finding(n: &NatLayers) -> Option<(Severity, String, Fix)> {
    let NatLayers::Double {
        kind,
        gateway_external,
        reported_by,
        public,
    } = n
    else {
        return None;
    };
    let ext = gateway_external
        .map(|e| {
            format!(
                "{e}{}",
                reported_by.map(|b| format!(" ({b})")).unwrap_or_default()
            )
        })
        .unwrap_or_else(|| "none".into());
    let public = public
        .map(|p| p.to_string())
        .unwrap_or_else(|| "unknown".into());
    let title = match kind {
        DoubleKind::CarrierGrade => "double NAT (carrier-grade NAT)",
        DoubleKind::Private => "double NAT (a router behind another router)",
        DoubleKind::Mismatch | DoubleKind::GatewayHasNoPublic => "double NAT",
    };
    let line = format!(
        "{title}: {kind}; the gateway's external address is {ext}, the internet sees {public}. Port mappings on the gateway (UPnP, NAT-PMP, PCP) do not reach peers, and direct connections depend on the outer NAT's behaviour; where it maps per destination, NetBird relays"
    );
    let fix = match kind {
        DoubleKind::Private => Fix::new(
            "Remove one NAT: put the provider's router (or the first of two routers) in bridge/modem mode, or forward UDP on it to the inner router; else NetBird relays the connections this NAT blocks",
        ),
        _ => Fix::new(
            "Get a public address: ask the carrier for a public IPv4 address (often a tariff option, or \"disable CGNAT\"), or use IPv6 where both peers have it; otherwise NetBird relays the connections the carrier NAT blocks",
        )
        .caveat("4G/5G routers are almost always behind carrier-grade NAT with short UDP timeouts: keep WireGuard's keepalive short (NetBird's default 25 s)"),
    };
    Some((Severity::Medium, line, fix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gw() -> GatewayExternal {
        GatewayExternal {
            gateway: Some("192.168.1.1".parse().unwrap()),
            ..GatewayExternal::default()
        }
    }

    #[test]
    fn carrier_grade_and_private_external_addresses() {
        let mut g = gw();
        g.upnp = Some(Some("100.64.12.7".parse().unwrap()));
        let n = judge(&g, Some("11.0.0.1".parse().unwrap()), Some(true));
        assert!(matches!(
            n,
            NatLayers::Double {
                kind: DoubleKind::CarrierGrade,
                reported_by: Some("UPnP IGD"),
                ..
            }
        ));
        let (sev, line, fix) = finding(&n).unwrap();
        assert_eq!(sev, Severity::Medium);
        assert!(line.starts_with("double NAT (carrier-grade NAT)"), "{line}");
        assert!(fix.title.contains("public IPv4 address"));
        let mut g = gw();
        g.nat_pmp = Some("192.168.0.10".parse().unwrap());
        assert!(matches!(
            judge(&g, None, None),
            NatLayers::Double {
                kind: DoubleKind::Private,
                ..
            }
        ));
    }

    #[test]
    fn a_public_external_address_is_compared_with_the_mapped_one() {
        let mut g = gw();
        g.pcp = Some("11.0.1.2".parse().unwrap());
        let n = judge(&g, Some("11.0.0.1".parse().unwrap()), Some(true));
        assert!(matches!(
            n,
            NatLayers::Double {
                kind: DoubleKind::Mismatch,
                ..
            }
        ));
        let same = judge(&g, Some("11.0.1.2".parse().unwrap()), Some(true));
        assert_eq!(
            same,
            NatLayers::Single {
                external: "11.0.1.2".parse().unwrap()
            }
        );
        assert!(finding(&same).is_none());
        assert!(matches!(
            judge(&g, None, Some(true)),
            NatLayers::Unknown { .. }
        ));
    }

    #[test]
    fn a_gateway_that_says_it_has_no_public_address() {
        let mut g = gw();
        g.nat_pmp_no_public = true;
        assert!(matches!(
            judge(&g, Some("11.0.0.1".parse().unwrap()), Some(true)),
            NatLayers::Double {
                kind: DoubleKind::GatewayHasNoPublic,
                reported_by: Some("NAT-PMP"),
                ..
            }
        ));
        let mut g = gw();
        g.upnp = Some(None);
        assert!(judge(&g, None, Some(true)).is_double());
    }

    #[test]
    fn nothing_to_compare() {
        assert!(matches!(
            judge(&GatewayExternal::default(), None, None),
            NatLayers::Unknown { .. }
        ));
        assert!(matches!(
            judge(&gw(), Some("11.0.0.1".parse().unwrap()), Some(true)),
            NatLayers::Unknown { .. }
        ));
        let mut g = gw();
        g.nat_pmp = Some("100.64.0.5".parse().unwrap());
        assert!(matches!(
            judge(&g, None, Some(false)),
            NatLayers::Unknown { .. }
        ));
        // A STUN-mapped address in the carrier's space.
        assert!(matches!(
            judge(&gw(), Some("100.70.1.1".parse().unwrap()), Some(true)),
            NatLayers::Double {
                kind: DoubleKind::CarrierGrade,
                ..
            }
        ));
        assert_eq!(
            private_kind("fd00::1".parse().unwrap()),
            Some(DoubleKind::Private)
        );
        assert_eq!(private_kind("2001:db8::1".parse().unwrap()), None);
    }
}
