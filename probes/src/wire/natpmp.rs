//! NAT-PMP (RFC 6886): the external address request and its response, the only exchange
//! stunmap makes (it creates no mapping).
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
    let (&[version, opcode, r0, r1, e0, e1, e2, e3], rest) = split8(b)?;
    if version != 0 {
        return Err(WireError::Version {
            layer: Layer::NatPmp,
            version,
        });
    }
    if opcode != 128 {
        return Err(WireError::Unexpected {
            layer: Layer::NatPmp,
            field: "opcode",
            value: u32::from(opcode),
        });
    }
    let result = u16::from_be_bytes([r0, r1]);
    let epoch = u32::from_be_bytes([e0, e1, e2, e3]);
    let external = match (result, rest) {
        (0, [a, b, c, d, ..]) => Some(Ipv4Addr::new(*a, *b, *c, *d)),
        (0, _) => {
            return Err(WireError::Truncated {
                layer: Layer::NatPmp,
                len: b.len(),
            });
        }
        _ => None,
    };
    Ok(NatPmpExternal {
        result,
        epoch,
        external,
    })
}

fn split8(b: &[u8]) -> Result<(&[u8; 8], &[u8]), WireError> {
    b.split_first_chunk::<8>().ok_or(WireError::Truncated {
        layer: Layer::NatPmp,
        len: b.len(),
    })
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
}
