//! PCP (RFC 6887): the ANNOUNCE request (opcode 0, no side effect on the gateway), the MAP
//! request and response of the short-lived mapping stunmap creates, verifies and deletes at
//! once (§11), and the response header, including the NAT-PMP "unsupported version" answer of a gateway that
//! speaks only NAT-PMP (RFC 6887 §9).
//!
//! Every parser takes untrusted bytes from the LAN and returns an error rather than panicking.

use std::net::IpAddr;

use super::{Layer, WireError};

/// The gateway's PCP port, RFC 6887 §19.1.
pub const PORT: u16 = 5351;

/// PCP's version number, RFC 6887 §7.
pub const VERSION: u8 = 2;
/// The ANNOUNCE opcode, RFC 6887 §14.1.
pub const ANNOUNCE: u8 = 0;

/// An ANNOUNCE request, RFC 6887 §7.1 and §14.1: the 24-byte common header, requested
/// lifetime 0, and the client's address (IPv4 as an IPv4-mapped IPv6 address, §5).
pub fn announce_request(client: IpAddr) -> [u8; 24] {
    let mut b = [0u8; 24];
    let ip = match client {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let [v, op, ..] = &mut b;
    *v = VERSION;
    *op = ANNOUNCE;
    if let Some(slot) = b.get_mut(8..24) {
        slot.copy_from_slice(&ip.octets());
    }
    b
}

/// The MAP opcode, RFC 6887 §11.
pub const MAP: u8 = 1;
/// IANA protocol number of UDP, for MAP's protocol field.
const UDP: u8 = 17;

/// The client's address as PCP carries it (IPv4 as IPv4-mapped IPv6, RFC 6887 §5).
fn mapped(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// A MAP request for UDP, RFC 6887 §11.1: the 24-byte header with `lifetime` and the client's
/// address, then the 36-byte MAP data — the mapping `nonce` (random, kept to refresh or delete
/// the mapping, §11.2), protocol 17, `internal_port`, the suggested external port (0: any)
/// and no suggested external address. Lifetime 0 deletes the mapping (§15).
pub fn map_request(
    client: IpAddr,
    nonce: [u8; 12],
    internal_port: u16,
    external_port: u16,
    lifetime: u32,
) -> [u8; 60] {
    let mut b = [0u8; 60];
    let [v, op, ..] = &mut b;
    *v = VERSION;
    *op = MAP;
    if let Some(slot) = b.get_mut(4..8) {
        slot.copy_from_slice(&lifetime.to_be_bytes());
    }
    if let Some(slot) = b.get_mut(8..24) {
        slot.copy_from_slice(&mapped(client));
    }
    if let Some(slot) = b.get_mut(24..36) {
        slot.copy_from_slice(&nonce);
    }
    if let Some(slot) = b.get_mut(36..37) {
        slot.copy_from_slice(&[UDP]);
    }
    if let Some(slot) = b.get_mut(40..42) {
        slot.copy_from_slice(&internal_port.to_be_bytes());
    }
    if let Some(slot) = b.get_mut(42..44) {
        slot.copy_from_slice(&external_port.to_be_bytes());
    }
    // Suggested external address: the IPv4-mapped unspecified address (no preference).
    let any = mapped(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    if let Some(slot) = b.get_mut(44..60) {
        slot.copy_from_slice(&any);
    }
    b
}

/// A MAP response, RFC 6887 §11.1 and §7.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PcpMapping {
    /// Result code (0 = success), §7.4.
    pub result: u8,
    /// Lifetime granted, seconds.
    pub lifetime: u32,
    /// The server's epoch.
    pub epoch: u32,
    /// The mapping nonce (must be the request's).
    #[serde(skip)]
    pub nonce: [u8; 12],
    /// The internal port.
    pub internal_port: u16,
    /// The external port assigned.
    pub external_port: u16,
    /// The external address assigned.
    pub external: IpAddr,
}

/// Read a MAP response.
pub fn parse_map(b: &[u8]) -> Result<PcpMapping, WireError> {
    let (opcode, result, lifetime, epoch) = match parse_response(b)? {
        PcpReply::Pcp {
            opcode,
            result,
            lifetime,
            epoch,
        } => (opcode, result, lifetime, epoch),
        PcpReply::NatPmpOnly { result } => {
            return Err(WireError::Unexpected {
                layer: Layer::Pcp,
                field: "NAT-PMP result",
                value: u32::from(result),
            });
        }
    };
    if opcode != MAP {
        return Err(WireError::Unexpected {
            layer: Layer::Pcp,
            field: "opcode",
            value: u32::from(opcode),
        });
    }
    let data = b.get(24..60).ok_or(WireError::Truncated {
        layer: Layer::Pcp,
        len: b.len(),
    })?;
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(data.get(..12).unwrap_or(&[0; 12]));
    let port = |at: usize| {
        data.get(at..at + 2)
            .and_then(|p| <[u8; 2]>::try_from(p).ok())
            .map_or(0, u16::from_be_bytes)
    };
    let mut ext = [0u8; 16];
    ext.copy_from_slice(data.get(20..36).unwrap_or(&[0; 16]));
    let v6 = std::net::Ipv6Addr::from(ext);
    let external = match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    };
    Ok(PcpMapping {
        result,
        lifetime,
        epoch,
        nonce,
        internal_port: port(16),
        external_port: port(18),
        external,
    })
}

/// A PCP answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum PcpReply {
    /// A PCP response header, RFC 6887 §7.2.
    Pcp {
        /// The opcode answered (R bit removed).
        opcode: u8,
        /// Result code, RFC 6887 §7.4 (0 = success).
        result: u8,
        /// Lifetime in seconds.
        lifetime: u32,
        /// The server's epoch time.
        epoch: u32,
    },
    /// A NAT-PMP server's "unsupported version" (a version-0 message): it speaks only NAT-PMP
    /// (RFC 6887 §9).
    NatPmpOnly {
        /// Its result code (1 = unsupported version).
        result: u16,
    },
}

/// Read a PCP response (or the NAT-PMP answer to a PCP request).
pub fn parse_response(b: &[u8]) -> Result<PcpReply, WireError> {
    match b.first() {
        None => {
            return Err(WireError::Truncated {
                layer: Layer::Pcp,
                len: 0,
            });
        }
        Some(0) => {
            let [_, opcode, r0, r1, ..] = *b else {
                return Err(WireError::Truncated {
                    layer: Layer::Pcp,
                    len: b.len(),
                });
            };
            if opcode < 128 {
                return Err(WireError::Unexpected {
                    layer: Layer::Pcp,
                    field: "opcode",
                    value: u32::from(opcode),
                });
            }
            return Ok(PcpReply::NatPmpOnly {
                result: u16::from_be_bytes([r0, r1]),
            });
        }
        Some(&VERSION) => {}
        Some(&version) => {
            return Err(WireError::Version {
                layer: Layer::Pcp,
                version,
            });
        }
    }
    if b.len() < 24 {
        return Err(WireError::Truncated {
            layer: Layer::Pcp,
            len: b.len(),
        });
    }
    if !b.len().is_multiple_of(4) || b.len() > 1100 {
        return Err(WireError::Length {
            layer: Layer::Pcp,
            len: b.len(),
        });
    }
    let [_, r_op, _, result, l0, l1, l2, l3, e0, e1, e2, e3, ..] = *b else {
        return Err(WireError::Truncated {
            layer: Layer::Pcp,
            len: b.len(),
        });
    };
    if r_op & 0x80 == 0 {
        // A request (R bit clear), for instance our own reflected back.
        return Err(WireError::Unexpected {
            layer: Layer::Pcp,
            field: "opcode",
            value: u32::from(r_op),
        });
    }
    Ok(PcpReply::Pcp {
        opcode: r_op & 0x7f,
        result,
        lifetime: u32::from_be_bytes([l0, l1, l2, l3]),
        epoch: u32::from_be_bytes([e0, e1, e2, e3]),
    })
}

/// What a PCP result code means, RFC 6887 §7.4.
pub fn result_text(code: u8) -> &'static str {
    match code {
        0 => "SUCCESS",
        1 => "UNSUPP_VERSION",
        2 => "NOT_AUTHORIZED",
        3 => "MALFORMED_REQUEST",
        4 => "UNSUPP_OPCODE",
        5 => "UNSUPP_OPTION",
        6 => "MALFORMED_OPTION",
        7 => "NETWORK_FAILURE",
        8 => "NO_RESOURCES",
        9 => "UNSUPP_PROTOCOL",
        10 => "USER_EX_QUOTA",
        11 => "CANNOT_PROVIDE_EXTERNAL",
        12 => "ADDRESS_MISMATCH",
        13 => "EXCESSIVE_REMOTE_PEERS",
        _ => "unknown result code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announce_layout() {
        let b = announce_request("100.64.0.2".parse().unwrap());
        assert_eq!(b[0], 2);
        assert_eq!(b[1], 0, "R bit clear, opcode ANNOUNCE");
        assert_eq!(&b[4..8], &[0, 0, 0, 0], "lifetime 0");
        assert_eq!(
            &b[8..24],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 100, 64, 0, 2]
        );
    }

    #[test]
    fn responses() {
        let mut r = [0u8; 24];
        r[0] = 2;
        r[1] = 0x80;
        r[8..12].copy_from_slice(&77u32.to_be_bytes());
        assert_eq!(
            parse_response(&r).unwrap(),
            PcpReply::Pcp {
                opcode: 0,
                result: 0,
                lifetime: 0,
                epoch: 77
            }
        );
        r[3] = 2;
        assert!(matches!(
            parse_response(&r).unwrap(),
            PcpReply::Pcp { result: 2, .. }
        ));
        assert_eq!(result_text(2), "NOT_AUTHORIZED");
        // A NAT-PMP-only server's "unsupported version".
        let n = parse_response(&[0, 128, 0, 1, 0, 0, 0, 5]).unwrap();
        assert_eq!(n, PcpReply::NatPmpOnly { result: 1 });
        // Our own request reflected, odd lengths, junk, every truncation.
        let req = announce_request("10.0.0.1".parse().unwrap());
        assert!(matches!(
            parse_response(&req),
            Err(WireError::Unexpected {
                field: "opcode",
                ..
            })
        ));
        for cut in 0..r.len() {
            assert!(
                matches!(parse_response(&r[..cut]), Err(WireError::Truncated { .. })),
                "cut {cut}"
            );
        }
        let mut long = r.to_vec();
        long.push(0);
        assert!(matches!(
            parse_response(&long),
            Err(WireError::Length {
                layer: Layer::Pcp,
                len: 25
            })
        ));
        assert!(parse_response(&[7; 24]).is_err());
        assert!(parse_response(&[0, 5]).is_err());
    }

    #[test]
    fn map_request_and_response() {
        let nonce = [9u8; 12];
        let r = map_request("192.168.1.2".parse().unwrap(), nonce, 4000, 0, 30);
        assert_eq!(&r[..2], &[2, 1]);
        assert_eq!(&r[4..8], &30u32.to_be_bytes());
        assert_eq!(&r[18..24], &[0xff, 0xff, 192, 168, 1, 2]);
        assert_eq!(&r[24..36], &nonce);
        assert_eq!(r[36], 17);
        assert_eq!(&r[40..44], &[0x0f, 0xa0, 0, 0]);
        assert_eq!(&r[54..60], &[0xff, 0xff, 0, 0, 0, 0]);
        // The server's answer: R bit, result 0, lifetime 120, epoch 5, the same nonce,
        // external 11.0.0.1:4000.
        let mut a = r;
        a[1] = 0x81;
        a[3] = 0;
        a[4..8].copy_from_slice(&120u32.to_be_bytes());
        a[8..12].copy_from_slice(&5u32.to_be_bytes());
        a[12..24].fill(0);
        a[42..44].copy_from_slice(&4000u16.to_be_bytes());
        a[54..60].copy_from_slice(&[0xff, 0xff, 11, 0, 0, 1]);
        let m = parse_map(&a).unwrap();
        assert_eq!((m.result, m.lifetime, m.epoch), (0, 120, 5));
        assert_eq!((m.internal_port, m.external_port), (4000, 4000));
        assert_eq!(m.external, "11.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(m.nonce, nonce);
        // The request reflected, an ANNOUNCE answer, truncations.
        assert!(parse_map(&r).is_err());
        let mut ann = [0u8; 24];
        ann[0] = 2;
        ann[1] = 0x80;
        assert!(parse_map(&ann).is_err());
        for cut in 0..a.len() {
            assert!(parse_map(&a[..cut]).is_err(), "cut {cut}");
        }
    }
}
