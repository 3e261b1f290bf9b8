//! PCP (RFC 6887): the ANNOUNCE request (opcode 0, no side effect on the gateway) and the
//! response header, including the NAT-PMP "unsupported version" answer of a gateway that
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
}
