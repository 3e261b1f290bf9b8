//! Port mapping protocols a gateway may offer: NAT-PMP (RFC 6886), PCP (RFC 6887) and UPnP
//! Internet Gateway Device (SSDP discovery, then the device description). A client that asks
//! the gateway for a mapping gets a port that is endpoint-independent and unfiltered, which
//! makes an otherwise hard NAT traversable. This module holds what the answers mean (the
//! result types); the codecs are [`crate::wire::natpmp`], [`crate::wire::pcp`] and
//! [`crate::wire::upnp`], and `engine::portmap` does the I/O.
//!
//! Only requests without side effects are made: NAT-PMP's external address request (opcode
//! 0), PCP's ANNOUNCE (opcode 0), an SSDP M-SEARCH and an HTTP GET of the description. No
//! mapping is created on the gateway.

use std::net::{IpAddr, Ipv4Addr};

use crate::wire::natpmp::{self, NatPmpExternal};
use crate::wire::pcp::{self, PcpReply};
use crate::wire::upnp::IgdService;

// ---------------------------------------------------------------------------------------------
// The default gateway

/// The IPv4 default gateway from the text of Linux's `/proc/net/route`: the first line with
/// destination and mask 0 and the RTF_GATEWAY flag. Addresses there are the kernel's `u32`
/// printed in hex in host byte order, so the bytes in memory order are the address.
pub fn default_gateway_from_proc_route(text: &str) -> Option<Ipv4Addr> {
    const RTF_UP: u32 = 0x1;
    const RTF_GATEWAY: u32 = 0x2;
    text.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let hex = |i: usize| f.get(i).and_then(|v| u32::from_str_radix(v, 16).ok());
        let (dest, gw, flags, mask) = (hex(1)?, hex(2)?, hex(3)?, hex(7)?);
        let default =
            dest == 0 && mask == 0 && flags & (RTF_UP | RTF_GATEWAY) == RTF_UP | RTF_GATEWAY;
        (default && gw != 0).then(|| Ipv4Addr::from(gw.to_ne_bytes()))
    })
}

// ---------------------------------------------------------------------------------------------
// Results

/// What one of NAT-PMP or PCP said.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum ProtocolStatus {
    /// Not tried (no IPv4 gateway, or switched off).
    #[default]
    NotTested,
    /// The gateway answered with success.
    Available {
        /// The external address it reported (NAT-PMP; PCP's ANNOUNCE carries none).
        external: Option<IpAddr>,
        /// The server's epoch (seconds since its mapping state was reset).
        epoch: u32,
    },
    /// The gateway answered with an error.
    Refused {
        /// The result code.
        code: u16,
        /// What it means.
        meaning: &'static str,
    },
    /// A NAT-PMP-only gateway answered the PCP request (PCP unsupported, NAT-PMP is).
    NatPmpOnly,
    /// ICMP port unreachable: nothing listens on the port.
    Unreachable,
    /// No answer in time.
    NoAnswer,
    /// Answers that could not be read.
    Malformed,
}

impl ProtocolStatus {
    /// Whether the gateway offers the protocol.
    pub fn available(&self) -> bool {
        matches!(self, ProtocolStatus::Available { .. })
    }
}

/// What UPnP IGD discovery found.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum UpnpStatus {
    /// Not tried.
    #[default]
    NotTested,
    /// An Internet Gateway Device with a WAN connection service.
    Available {
        /// Its description URL.
        location: String,
        /// SERVER header of the SSDP answer.
        server: Option<String>,
        /// WANIPConnection / WANPPPConnection services.
        services: Vec<IgdService>,
    },
    /// The device answered but its description has no WAN connection service.
    NoWanService {
        /// Its description URL.
        location: String,
    },
    /// The description could not be fetched or read.
    DescriptionFailed {
        /// Its description URL.
        location: String,
        /// Why.
        reason: String,
    },
    /// No gateway answered the SSDP search.
    NoAnswer,
}

impl UpnpStatus {
    /// Whether an IGD with a WAN connection service was found.
    pub fn available(&self) -> bool {
        matches!(self, UpnpStatus::Available { .. })
    }
}

impl std::fmt::Display for ProtocolStatus {
    /// "available, external address 203.0.113.1 (epoch 42 s)", "refused: … (3)", "no answer" …
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtocolStatus::Available { external, epoch } => {
                f.write_str("available")?;
                if let Some(a) = external {
                    write!(f, ", external address {a}")?;
                }
                write!(f, " (epoch {epoch} s)")
            }
            ProtocolStatus::Refused { code, meaning } => write!(f, "refused: {meaning} ({code})"),
            ProtocolStatus::NatPmpOnly => f.write_str("no (the gateway speaks only NAT-PMP)"),
            ProtocolStatus::Unreachable => f.write_str("no (port 5351 closed)"),
            ProtocolStatus::NoAnswer => f.write_str("no answer"),
            ProtocolStatus::Malformed => f.write_str("unreadable answers"),
            ProtocolStatus::NotTested => f.write_str("not tested"),
        }
    }
}

impl std::fmt::Display for UpnpStatus {
    /// "available: WANIPConnection:1 at http://…", "no answer to the SSDP search" …
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpnpStatus::Available {
                location, services, ..
            } => {
                let names: Vec<&str> = services
                    .iter()
                    .map(|s| {
                        s.service_type
                            .rsplit_once(":service:")
                            .map_or(s.service_type.as_str(), |(_, n)| n)
                    })
                    .collect();
                write!(f, "available: {} at {location}", names.join(", "))
            }
            UpnpStatus::NoWanService { location } => write!(
                f,
                "a device answered ({location}) but offers no WAN connection service"
            ),
            UpnpStatus::DescriptionFailed { location, reason } => write!(
                f,
                "a device answered but its description failed ({location}: {reason})"
            ),
            UpnpStatus::NoAnswer => f.write_str("no answer to the SSDP search"),
            UpnpStatus::NotTested => f.write_str("not tested"),
        }
    }
}

/// Port mapping on the default gateway: what each protocol said.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PortMapping {
    /// The IPv4 default gateway asked; `None` when there is none.
    pub gateway: Option<Ipv4Addr>,
    /// NAT-PMP, RFC 6886.
    pub nat_pmp: ProtocolStatus,
    /// PCP, RFC 6887.
    pub pcp: ProtocolStatus,
    /// UPnP IGD.
    pub upnp: UpnpStatus,
    /// SSDP answers ignored because they came from, or pointed to, a host other than the
    /// gateway.
    pub ignored_answers: u32,
}

impl PortMapping {
    /// Whether any protocol offers port mapping.
    pub fn available(&self) -> bool {
        self.nat_pmp.available() || self.pcp.available() || self.upnp.available()
    }

    /// Whether the gateway said it cannot map to a public address: NAT-PMP's "network
    /// failure" (RFC 6886 §3.5), which miniupnpd, for one, sends when its own external address
    /// is private or reserved (double NAT). Mappings from such a gateway do not reach peers.
    pub fn gateway_has_no_public_address(&self) -> bool {
        matches!(self.nat_pmp, ProtocolStatus::Refused { code: 3, .. })
    }

    /// Available and not known to be useless (see
    /// [`PortMapping::gateway_has_no_public_address`]).
    pub fn usable(&self) -> bool {
        self.available() && !self.gateway_has_no_public_address()
    }

    /// The protocols available, by name.
    pub fn protocols(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.nat_pmp.available() {
            v.push("NAT-PMP");
        }
        if self.pcp.available() {
            v.push("PCP");
        }
        if self.upnp.available() {
            v.push("UPnP IGD");
        }
        v
    }

    /// The external address NAT-PMP reported.
    pub fn external_address(&self) -> Option<IpAddr> {
        match self.nat_pmp {
            ProtocolStatus::Available { external, .. } => external,
            _ => None,
        }
    }

    /// The status of NAT-PMP from its external address response.
    pub fn nat_pmp_status(r: &NatPmpExternal) -> ProtocolStatus {
        if r.result == 0 {
            ProtocolStatus::Available {
                external: r.external.map(IpAddr::V4),
                epoch: r.epoch,
            }
        } else {
            ProtocolStatus::Refused {
                code: r.result,
                meaning: natpmp::result_text(r.result),
            }
        }
    }

    /// The status of PCP from its answer to ANNOUNCE.
    pub fn pcp_status(r: &PcpReply) -> ProtocolStatus {
        match *r {
            PcpReply::Pcp {
                result: 0, epoch, ..
            } => ProtocolStatus::Available {
                external: None,
                epoch,
            },
            PcpReply::Pcp { result, .. } => ProtocolStatus::Refused {
                code: u16::from(result),
                meaning: pcp::result_text(result),
            },
            PcpReply::NatPmpOnly { .. } => ProtocolStatus::NatPmpOnly,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natpmp_status() {
        let ok = natpmp::parse_external(&[0, 128, 0, 0, 0, 0, 1, 0, 198, 18, 0, 1]).unwrap();
        assert_eq!(
            PortMapping::nat_pmp_status(&ok),
            ProtocolStatus::Available {
                external: Some("198.18.0.1".parse().unwrap()),
                epoch: 256
            }
        );
        let refused = natpmp::parse_external(&[0, 128, 0, 2, 0, 0, 0, 9]).unwrap();
        assert_eq!(
            PortMapping::nat_pmp_status(&refused),
            ProtocolStatus::Refused {
                code: 2,
                meaning: "not authorized/refused"
            }
        );
    }

    #[test]
    fn pcp_status() {
        let mut r = [0u8; 24];
        r[0] = 2;
        r[1] = 0x80;
        r[8..12].copy_from_slice(&77u32.to_be_bytes());
        let p = pcp::parse_response(&r).unwrap();
        assert!(PortMapping::pcp_status(&p).available());
        r[3] = 2;
        assert_eq!(
            PortMapping::pcp_status(&pcp::parse_response(&r).unwrap()),
            ProtocolStatus::Refused {
                code: 2,
                meaning: "NOT_AUTHORIZED"
            }
        );
        let n = pcp::parse_response(&[0, 128, 0, 1, 0, 0, 0, 5]).unwrap();
        assert_eq!(PortMapping::pcp_status(&n), ProtocolStatus::NatPmpOnly);
    }

    #[test]
    fn gateway_from_proc_net_route() {
        let gw = u32::from_ne_bytes([100, 64, 0, 1]);
        let net = u32::from_ne_bytes([100, 64, 0, 0]);
        let mask = u32::from_ne_bytes([255, 255, 255, 0]);
        let text = format!(
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
             lan0\t{net:08X}\t00000000\t0001\t0\t0\t0\t{mask:08X}\t0\t0\t0\n\
             lan0\t00000000\t{gw:08X}\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        );
        assert_eq!(
            default_gateway_from_proc_route(&text),
            Some(Ipv4Addr::new(100, 64, 0, 1))
        );
        // No default route, a route that is down, junk.
        let header = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n";
        let down = format!("{header}eth0\t00000000\t{gw:08X}\t0002\t0\t0\t0\t00000000\n");
        assert_eq!(default_gateway_from_proc_route(&down), None);
        assert_eq!(default_gateway_from_proc_route(header), None);
        assert_eq!(default_gateway_from_proc_route("x\ny z\n"), None);
    }

    #[test]
    fn summary() {
        let mut p = PortMapping::default();
        assert!(!p.available());
        p.upnp = UpnpStatus::Available {
            location: "http://100.64.0.1:5000/rootDesc.xml".into(),
            server: None,
            services: Vec::new(),
        };
        p.nat_pmp = ProtocolStatus::Available {
            external: Some("198.18.0.1".parse().unwrap()),
            epoch: 1,
        };
        assert!(p.available());
        assert_eq!(p.protocols(), vec!["NAT-PMP", "UPnP IGD"]);
        assert_eq!(p.external_address(), Some("198.18.0.1".parse().unwrap()));
    }
}
