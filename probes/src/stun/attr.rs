//! Attribute type codes and the value codecs shared by the fast path and the encoder.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::view::ParseError;
use super::{MAGIC_COOKIE, TransactionId};

/// MAPPED-ADDRESS, RFC 8489 §14.1.
pub const MAPPED_ADDRESS: u16 = 0x0001;
/// CHANGE-REQUEST, RFC 5780 §7.2.
pub const CHANGE_REQUEST: u16 = 0x0003;
/// USERNAME, RFC 8489 §14.3.
pub const USERNAME: u16 = 0x0006;
/// MESSAGE-INTEGRITY, RFC 8489 §14.5.
pub const MESSAGE_INTEGRITY: u16 = 0x0008;
/// ERROR-CODE, RFC 8489 §14.8.
pub const ERROR_CODE: u16 = 0x0009;
/// UNKNOWN-ATTRIBUTES, RFC 8489 §14.9.
pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
/// CHANNEL-NUMBER, RFC 8656 §18.1.
pub const CHANNEL_NUMBER: u16 = 0x000C;
/// LIFETIME, RFC 8656 §18.2.
pub const LIFETIME: u16 = 0x000D;
/// XOR-PEER-ADDRESS, RFC 8656 §18.3.
pub const XOR_PEER_ADDRESS: u16 = 0x0012;
/// DATA, RFC 8656 §18.4.
pub const DATA: u16 = 0x0013;
/// REALM, RFC 8489 §14.9.
pub const REALM: u16 = 0x0014;
/// NONCE, RFC 8489 §14.10.
pub const NONCE: u16 = 0x0015;
/// XOR-RELAYED-ADDRESS, RFC 8656 §18.5.
pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
/// REQUESTED-ADDRESS-FAMILY, RFC 8656 §18.6.
pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
/// EVEN-PORT, RFC 8656 §18.7.
pub const EVEN_PORT: u16 = 0x0018;
/// REQUESTED-TRANSPORT, RFC 8656 §18.8.
pub const REQUESTED_TRANSPORT: u16 = 0x0019;
/// DONT-FRAGMENT, RFC 8656 §18.9.
pub const DONT_FRAGMENT: u16 = 0x001A;
/// MESSAGE-INTEGRITY-SHA256, RFC 8489 §14.6.
pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
/// PASSWORD-ALGORITHM, RFC 8489 §14.12.
pub const PASSWORD_ALGORITHM: u16 = 0x001D;
/// USERHASH, RFC 8489 §14.4.
pub const USERHASH: u16 = 0x001E;
/// XOR-MAPPED-ADDRESS, RFC 8489 §14.2.
pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
/// RESERVATION-TOKEN, RFC 8656 §18.10.
pub const RESERVATION_TOKEN: u16 = 0x0022;
/// PADDING, RFC 5780 §7.6.
pub const PADDING: u16 = 0x0026;
/// RESPONSE-PORT, RFC 5780 §7.5.
pub const RESPONSE_PORT: u16 = 0x0027;
/// ADDITIONAL-ADDRESS-FAMILY, RFC 8656 §18.11.
pub const ADDITIONAL_ADDRESS_FAMILY: u16 = 0x8000;
/// ADDRESS-ERROR-CODE, RFC 8656 §18.12.
pub const ADDRESS_ERROR_CODE: u16 = 0x8001;
/// PASSWORD-ALGORITHMS, RFC 8489 §14.11.
pub const PASSWORD_ALGORITHMS: u16 = 0x8002;
/// ALTERNATE-DOMAIN, RFC 8489 §14.16.
pub const ALTERNATE_DOMAIN: u16 = 0x8003;
/// ICMP, RFC 8656 §18.13.
pub const ICMP: u16 = 0x8004;
/// SOFTWARE, RFC 8489 §14.14.
pub const SOFTWARE: u16 = 0x8022;
/// ALTERNATE-SERVER, RFC 8489 §14.15.
pub const ALTERNATE_SERVER: u16 = 0x8023;
/// FINGERPRINT, RFC 8489 §14.7.
pub const FINGERPRINT: u16 = 0x8028;
/// RESPONSE-ORIGIN, RFC 5780 §7.3.
pub const RESPONSE_ORIGIN: u16 = 0x802B;
/// OTHER-ADDRESS, RFC 5780 §7.4.
pub const OTHER_ADDRESS: u16 = 0x802C;

/// Comprehension-required attributes this crate understands (RFC 8489 §14: types 0x0000–0x7FFF
/// must be understood or the message is reported as carrying unknown attributes). The obsolete
/// RFC 3489 address attributes (0x0002, 0x0004, 0x0005) are accepted too: old servers send them.
pub const KNOWN_REQUIRED: &[u16] = &[
    MAPPED_ADDRESS,
    0x0002,
    CHANGE_REQUEST,
    0x0004,
    0x0005,
    USERNAME,
    MESSAGE_INTEGRITY,
    ERROR_CODE,
    UNKNOWN_ATTRIBUTES,
    CHANNEL_NUMBER,
    LIFETIME,
    XOR_PEER_ADDRESS,
    DATA,
    REALM,
    NONCE,
    XOR_RELAYED_ADDRESS,
    REQUESTED_ADDRESS_FAMILY,
    EVEN_PORT,
    REQUESTED_TRANSPORT,
    DONT_FRAGMENT,
    MESSAGE_INTEGRITY_SHA256,
    PASSWORD_ALGORITHM,
    USERHASH,
    XOR_MAPPED_ADDRESS,
    RESERVATION_TOKEN,
    PADDING,
    RESPONSE_PORT,
];

/// True for a type in the comprehension-required range (0x0000–0x7FFF), RFC 8489 §14.
pub fn is_comprehension_required(kind: u16) -> bool {
    kind < 0x8000
}

/// Address family codes, RFC 8489 §14.1.
pub const FAMILY_IPV4: u8 = 0x01;
/// Address family codes, RFC 8489 §14.1.
pub const FAMILY_IPV6: u8 = 0x02;

/// Decode a MAPPED-ADDRESS-style value (RFC 8489 §14.1): reserved byte, family, port, address.
pub fn decode_address(value: &[u8]) -> Result<SocketAddr, ParseError> {
    let family = value.get(1).copied().unwrap_or(0);
    match (family, value) {
        (FAMILY_IPV4, [_, _, p0, p1, a, b, c, d]) => Ok(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(*a, *b, *c, *d)),
            u16::from_be_bytes([*p0, *p1]),
        )),
        (FAMILY_IPV6, [_, _, p0, p1, rest @ ..]) if rest.len() == 16 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(rest);
            Ok(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(octets)),
                u16::from_be_bytes([*p0, *p1]),
            ))
        }
        (FAMILY_IPV4 | FAMILY_IPV6, _) => Err(ParseError::AddressLength {
            family,
            len: value.len(),
        }),
        _ => Err(ParseError::UnknownFamily { family }),
    }
}

/// Decode an XOR-MAPPED-ADDRESS-style value (RFC 8489 §14.2): the port is XORed with the top 16
/// bits of the magic cookie, an IPv4 address with the cookie, an IPv6 address with the cookie
/// followed by the transaction id.
pub fn decode_xor_address(value: &[u8], tid: &TransactionId) -> Result<SocketAddr, ParseError> {
    let plain = decode_address(value)?;
    Ok(xor_address(plain, tid))
}

/// Apply (or undo: the operation is its own inverse) the XOR of RFC 8489 §14.2.
pub fn xor_address(addr: SocketAddr, tid: &TransactionId) -> SocketAddr {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
    match addr.ip() {
        IpAddr::V4(ip) => {
            let x = u32::from(ip) ^ MAGIC_COOKIE;
            SocketAddr::new(IpAddr::V4(Ipv4Addr::from(x)), port)
        }
        IpAddr::V6(ip) => {
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&cookie);
            key[4..].copy_from_slice(tid.as_bytes());
            let mut o = ip.octets();
            for (b, k) in o.iter_mut().zip(key) {
                *b ^= k;
            }
            SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), port)
        }
    }
}

/// Encoded length of an address value for `addr`'s family (RFC 8489 §14.1).
pub fn address_len(addr: &SocketAddr) -> usize {
    if addr.is_ipv4() { 8 } else { 20 }
}

/// Write a MAPPED-ADDRESS-style value (RFC 8489 §14.1) into `out`, which must be exactly
/// [`address_len`] bytes (the writer sizes it so).
pub(crate) fn write_address(out: &mut [u8], addr: &SocketAddr) {
    let mut v = [0u8; 20];
    let port = addr.port().to_be_bytes();
    v[2] = port[0];
    v[3] = port[1];
    match addr.ip() {
        IpAddr::V4(ip) => {
            v[1] = FAMILY_IPV4;
            v[4..8].copy_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            v[1] = FAMILY_IPV6;
            v[4..20].copy_from_slice(&ip.octets());
        }
    }
    for (o, b) in out.iter_mut().zip(v) {
        *o = b;
    }
}

/// Flags of CHANGE-REQUEST, RFC 5780 §7.2.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct ChangeRequest {
    /// "change IP" flag (0x4).
    pub change_ip: bool,
    /// "change port" flag (0x2).
    pub change_port: bool,
}

impl ChangeRequest {
    /// The 32-bit value.
    pub fn to_u32(self) -> u32 {
        (u32::from(self.change_ip) << 2) | (u32::from(self.change_port) << 1)
    }

    /// Read the flags; other bits are ignored as RFC 5780 §7.2 requires.
    pub fn from_value(value: &[u8]) -> Option<Self> {
        let v = u32::from_be_bytes(value.try_into().ok()?);
        Some(Self {
            change_ip: v & 4 != 0,
            change_port: v & 2 != 0,
        })
    }
}

/// RESPONSE-PORT, RFC 5780 §7.5: the port a Binding response is to be sent to (on the
/// request's source IP). The value is the port in the first two bytes and two bytes of padding.
pub fn encode_response_port(port: u16) -> [u8; 4] {
    let [hi, lo] = port.to_be_bytes();
    [hi, lo, 0, 0]
}

/// Read a RESPONSE-PORT value (RFC 5780 §7.5): `None` unless it is exactly four bytes. The
/// padding bytes are ignored.
pub fn decode_response_port(value: &[u8]) -> Option<u16> {
    match value {
        [hi, lo, _, _] => Some(u16::from_be_bytes([*hi, *lo])),
        _ => None,
    }
}

/// An ERROR-CODE value, RFC 8489 §14.8: class × 100 + number, with a UTF-8 reason phrase.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ErrorCode<'a> {
    /// 300–699.
    pub code: u16,
    /// The reason phrase as sent (lossy UTF-8 is the caller's choice).
    pub reason: &'a [u8],
}

/// Decode an ERROR-CODE value, RFC 8489 §14.8.
pub fn decode_error_code(value: &[u8]) -> Result<ErrorCode<'_>, ParseError> {
    let [_, _, class, number, reason @ ..] = value else {
        return Err(ParseError::ErrorCodeTooShort);
    };
    let class = class & 0x07;
    if !(3..=6).contains(&class) || *number > 99 {
        return Err(ParseError::ErrorCodeOutOfRange {
            class,
            number: *number,
        });
    }
    Ok(ErrorCode {
        code: u16::from(class) * 100 + u16::from(*number),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xor_is_an_involution_for_both_families() {
        let tid = TransactionId([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        for a in [
            "192.0.2.1:32853",
            "[2001:db8:1234:5678:11:2233:4455:6677]:32853",
        ] {
            let a: SocketAddr = a.parse().unwrap();
            assert_ne!(xor_address(a, &tid), a);
            assert_eq!(xor_address(xor_address(a, &tid), &tid), a);
        }
    }

    #[test]
    fn address_rejects_wrong_lengths_and_families() {
        assert_eq!(
            decode_address(&[0, 1, 0, 1, 1, 2, 3]),
            Err(ParseError::AddressLength { family: 1, len: 7 })
        );
        assert_eq!(
            decode_address(&[0, 2, 0, 1, 1, 2, 3, 4]),
            Err(ParseError::AddressLength { family: 2, len: 8 })
        );
        assert_eq!(
            decode_address(&[0, 3, 0, 1, 1, 2, 3, 4]),
            Err(ParseError::UnknownFamily { family: 3 })
        );
        assert_eq!(
            decode_address(&[]),
            Err(ParseError::UnknownFamily { family: 0 })
        );
        let a = decode_address(&[0, 1, 0x12, 0x34, 10, 0, 0, 1]).unwrap();
        assert_eq!(a, "10.0.0.1:4660".parse().unwrap());
    }

    #[test]
    fn write_then_decode_address() {
        for a in ["198.51.100.7:3478", "[2001:db8::1]:443"] {
            let a: SocketAddr = a.parse().unwrap();
            let mut buf = vec![0u8; address_len(&a)];
            write_address(&mut buf, &a);
            assert_eq!(decode_address(&buf).unwrap(), a);
        }
    }

    #[test]
    fn error_code_bounds() {
        assert_eq!(
            decode_error_code(&[0, 0, 4, 1, b'x']).unwrap(),
            ErrorCode {
                code: 401,
                reason: b"x"
            }
        );
        assert_eq!(
            decode_error_code(&[0, 0, 4]),
            Err(ParseError::ErrorCodeTooShort)
        );
        assert_eq!(
            decode_error_code(&[0, 0, 2, 0]),
            Err(ParseError::ErrorCodeOutOfRange {
                class: 2,
                number: 0
            })
        );
        assert_eq!(
            decode_error_code(&[0, 0, 4, 100]),
            Err(ParseError::ErrorCodeOutOfRange {
                class: 4,
                number: 100
            })
        );
    }

    #[test]
    fn change_request_flags() {
        let c = ChangeRequest {
            change_ip: true,
            change_port: true,
        };
        assert_eq!(c.to_u32(), 6);
        assert_eq!(ChangeRequest::from_value(&6u32.to_be_bytes()), Some(c));
        assert_eq!(ChangeRequest::from_value(&[0, 0, 6]), None);
    }
}
