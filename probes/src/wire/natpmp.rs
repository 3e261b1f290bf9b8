//! NAT-PMP (RFC 6886): the external address request and its response, and the UDP mapping
//! request and response (§3.3) of the short-lived mapping stunmap creates, verifies and
//! deletes at once (`probes::path::mapping`).
//!
//! Every parser takes untrusted bytes from the LAN and returns an error rather than panicking.

use std::net::Ipv4Addr;

use super::{Layer, WireError};

/// The gateway's NAT-PMP port (shared with PCP), RFC 6886 §3.1 and RFC 6887 §19.1.
pub const PORT: u16 = 5351;

/// The external address request, RFC 6886 §3.2: version 0, opcode 0.
pub const EXTERNAL_REQUEST: [u8; 2] = [0, 0];

/// A NAT-PMP external address response, RFC 6886 §3.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NatPmpExternal {
    /// Result code, RFC 6886 §3.5 (0 = success).
    pub result: u16,
    /// Seconds since the gateway's port-mapping table was (re)initialised.
    pub epoch: u32,
    /// The gateway's external IPv4 address; `None` unless the result is success.
    pub external: Option<Ipv4Addr>,
}

/// Read an external address response. A non-zero result code may come with only the first 8
/// bytes (the rest is undefined, RFC 6886 §3.5).
pub fn parse_external(b: &[u8]) -> Result<NatPmpExternal, WireError> {
    let (result, epoch, rest) = response_header(b, 128)?;
    let external = match (result, rest) {
        (0, [a, b, c, d, ..]) => Some(Ipv4Addr::new(*a, *b, *c, *d)),
        (0, _) => {
            return Err(truncated(b));
        }
        _ => None,
    };
    Ok(NatPmpExternal {
        result,
        epoch,
        external,
    })
}

/// The 8 bytes every response starts with (RFC 6886 §3.5): version 0, `opcode` (128 plus the
/// request's), the result code and the epoch. Returns those two and the bytes after them.
fn response_header(b: &[u8], opcode: u8) -> Result<(u16, u32, &[u8]), WireError> {
    let (&[version, op, r0, r1, e0, e1, e2, e3], rest) =
        b.split_first_chunk::<8>().ok_or_else(|| truncated(b))?;
    if version != 0 {
        return Err(WireError::Version {
            layer: Layer::NatPmp,
            version,
        });
    }
    if op != opcode {
        return Err(WireError::Unexpected {
            layer: Layer::NatPmp,
            field: "opcode",
            value: u32::from(op),
        });
    }
    let result = u16::from_be_bytes([r0, r1]);
    let epoch = u32::from_be_bytes([e0, e1, e2, e3]);
    Ok((result, epoch, rest))
}

/// `b` ends before the response does.
fn truncated(b: &[u8]) -> WireError {
    WireError::Truncated {
        layer: Layer::NatPmp,
        len: b.len(),
    }
}

/// What a NAT-PMP result code means, RFC 6886 §3.5.
pub fn result_text(code: u16) -> &'static str {
    match code {
        0 => "success",
        1 => "unsupported version",
        2 => "not authorized/refused",
        3 => "network failure",
        4 => "out of resources",
        5 => "unsupported opcode",
        _ => "unknown result code",
    }
}

/// The UDP mapping opcode, RFC 6886 §3.3 (2 is TCP).
pub const MAP_UDP: u8 = 1;

/// A mapping request, RFC 6886 §3.3: map UDP `internal_port` (suggesting `external_port`, 0
/// for any) for `lifetime` seconds. Lifetime 0 with external port 0 deletes the mapping
/// (§3.4).
pub fn map_request(internal_port: u16, external_port: u16, lifetime: u32) -> [u8; 12] {
    let mut b = [0u8; 12];
    let [version, op, _, _, ip0, ip1, ep0, ep1, l0, l1, l2, l3] = &mut b;
    *version = 0;
    *op = MAP_UDP;
    [*ip0, *ip1] = internal_port.to_be_bytes();
    [*ep0, *ep1] = external_port.to_be_bytes();
    [*l0, *l1, *l2, *l3] = lifetime.to_be_bytes();
    b
}

/// A mapping response, RFC 6886 §3.3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NatPmpMapping {
    /// Result code (0 = success).
    pub result: u16,
    /// Seconds since the gateway's table was (re)initialised.
    pub epoch: u32,
    /// The internal port mapped.
    pub internal_port: u16,
    /// The external port the gateway chose.
    pub external_port: u16,
    /// The lifetime granted, seconds.
    pub lifetime: u32,
}

/// Read a UDP mapping response (opcode 129). An error may come with only the first 8 bytes.
pub fn parse_map(b: &[u8]) -> Result<NatPmpMapping, WireError> {
    let (result, epoch, rest) = response_header(b, 128 + MAP_UDP)?;
    let (internal_port, external_port, lifetime) = match rest {
        [i0, i1, x0, x1, l0, l1, l2, l3, ..] => (
            u16::from_be_bytes([*i0, *i1]),
            u16::from_be_bytes([*x0, *x1]),
            u32::from_be_bytes([*l0, *l1, *l2, *l3]),
        ),
        _ if result != 0 => (0, 0, 0),
        _ => {
            return Err(truncated(b));
        }
    };
    Ok(NatPmpMapping {
        result,
        epoch,
        internal_port,
        external_port,
        lifetime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_address_response() {
        assert_eq!(EXTERNAL_REQUEST, [0, 0]);
        let ok = [0, 128, 0, 0, 0, 0, 1, 0, 198, 18, 0, 1];
        let r = parse_external(&ok).unwrap();
        assert_eq!(r.result, 0);
        assert_eq!(r.epoch, 256);
        assert_eq!(r.external, Some(Ipv4Addr::new(198, 18, 0, 1)));
        // An error may be 8 bytes long.
        let refused = parse_external(&[0, 128, 0, 2, 0, 0, 0, 9]).unwrap();
        assert_eq!((refused.result, refused.external), (2, None));
        assert_eq!(result_text(2), "not authorized/refused");
        assert_eq!(
            parse_external(&[0, 128, 0, 0, 0, 0, 0, 1]),
            Err(WireError::Truncated {
                layer: Layer::NatPmp,
                len: 8
            })
        );
        assert_eq!(
            parse_external(&[0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]),
            Err(WireError::Unexpected {
                layer: Layer::NatPmp,
                field: "opcode",
                value: 0
            })
        );
        assert_eq!(
            parse_external(&[2, 128, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]),
            Err(WireError::Version {
                layer: Layer::NatPmp,
                version: 2
            })
        );
        for cut in 0..ok.len() {
            assert!(parse_external(&ok[..cut]).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn mapping_request_and_response() {
        assert_eq!(
            map_request(51820, 51820, 30),
            [0, 1, 0, 0, 0xca, 0x6c, 0xca, 0x6c, 0, 0, 0, 30]
        );
        // Deletion: lifetime 0, external port 0.
        assert_eq!(&map_request(4000, 0, 0)[6..], &[0, 0, 0, 0, 0, 0]);
        let ok = [
            0, 129, 0, 0, 0, 0, 0, 9, 0x0f, 0xa0, 0x0f, 0xa1, 0, 0, 0, 30,
        ];
        let m = parse_map(&ok).unwrap();
        assert_eq!(
            (
                m.result,
                m.epoch,
                m.internal_port,
                m.external_port,
                m.lifetime
            ),
            (0, 9, 4000, 4001, 30)
        );
        let refused = parse_map(&[0, 129, 0, 3, 0, 0, 0, 1]).unwrap();
        assert_eq!((refused.result, refused.external_port), (3, 0));
        assert!(parse_map(&[0, 128, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4]).is_err());
        for cut in 0..ok.len() {
            assert!(parse_map(&ok[..cut]).is_err(), "cut {cut}");
        }
    }
}
