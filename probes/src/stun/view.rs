//! Zero-copy STUN parser for the hot path.
//!
//! [`StunView::parse`] is the checked constructor: it validates the header (RFC 8489 §6.3: top
//! two bits zero, magic cookie, length a multiple of four and equal to the datagram's) and walks
//! the attributes once with bounds checks, remembering where the attributes stunmap reads start.
//! After that every accessor is O(1) and cannot panic.

use std::net::SocketAddr;

use super::attr::{self, ErrorCode};
use super::{FINGERPRINT_XOR, HEADER_LEN, MAGIC_COOKIE, MessageType, TransactionId};

/// Why bytes from a peer are not well-formed STUN: the message (header, attribute walk) or an
/// attribute value a reader was asked for (address, ERROR-CODE). The one error of the STUN codec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Fewer than 20 bytes, RFC 8489 §5.
    #[error("datagram of {len} bytes is shorter than a STUN header")]
    TooShort {
        /// The datagram's length.
        len: usize,
    },
    /// The first two bits are not zero, RFC 8489 §5 (likely RTP, DTLS, ChannelData …).
    #[error("first two bits are not zero")]
    NotStun,
    /// The magic cookie is not 0x2112A442, RFC 8489 §5.
    #[error("bad magic cookie {cookie:#010x}")]
    BadCookie {
        /// What the cookie field held.
        cookie: u32,
    },
    /// The length field is not a multiple of 4, RFC 8489 §5.
    #[error("message length {length} is not a multiple of 4")]
    UnalignedLength {
        /// The header's length field.
        length: u16,
    },
    /// The length field does not match the datagram, RFC 8489 §6.3.
    #[error("message length {declared} does not match the {actual} bytes after the header")]
    LengthMismatch {
        /// The header's length field.
        declared: u16,
        /// Bytes actually present after the header.
        actual: usize,
    },
    /// An attribute's declared length runs past the end of the message, RFC 8489 §14.
    #[error("attribute {kind:#06x} at offset {offset} overruns the message")]
    AttributeOverrun {
        /// The attribute type.
        kind: u16,
        /// Offset of the attribute header in the message.
        offset: usize,
    },
    /// An address attribute's value is not 8 (IPv4) or 20 (IPv6) bytes as its family demands,
    /// RFC 8489 §14.1.
    #[error("address attribute of {len} bytes does not fit family {family:#04x}")]
    AddressLength {
        /// The family byte.
        family: u8,
        /// The value's length.
        len: usize,
    },
    /// An address attribute's family byte is neither 0x01 nor 0x02, RFC 8489 §14.1.
    #[error("unknown address family {family:#04x}")]
    UnknownFamily {
        /// The family byte.
        family: u8,
    },
    /// ERROR-CODE shorter than its 4-byte fixed part, RFC 8489 §14.8.
    #[error("ERROR-CODE shorter than 4 bytes")]
    ErrorCodeTooShort,
    /// ERROR-CODE class outside 3–6 or number above 99, RFC 8489 §14.8.
    #[error("ERROR-CODE class {class} number {number} out of range")]
    ErrorCodeOutOfRange {
        /// The class digit.
        class: u8,
        /// The number.
        number: u8,
    },
}

/// The outcome of checking FINGERPRINT, RFC 8489 §14.7.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fingerprint {
    /// The message carries no FINGERPRINT.
    Absent,
    /// Present, last, and the CRC matches.
    Valid,
    /// Present but the CRC does not match, the value is not 4 bytes, or it is not the last
    /// attribute.
    Invalid,
}

/// Offsets (into the message) of attribute values the view remembers; 0 means absent.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    start: u32,
    len: u16,
}

/// The attributes remembered by the walk, first occurrence of each (RFC 8489 §14).
const TRACKED: [u16; 13] = [
    attr::XOR_MAPPED_ADDRESS,
    attr::MAPPED_ADDRESS,
    attr::OTHER_ADDRESS,
    attr::RESPONSE_ORIGIN,
    attr::ERROR_CODE,
    attr::SOFTWARE,
    attr::FINGERPRINT,
    attr::MESSAGE_INTEGRITY,
    attr::MESSAGE_INTEGRITY_SHA256,
    attr::REALM,
    attr::NONCE,
    attr::XOR_RELAYED_ADDRESS,
    attr::LIFETIME,
];

fn tracked_index(kind: u16) -> Option<usize> {
    TRACKED.iter().position(|k| *k == kind)
}

/// A validated, borrowed view over one STUN message.
#[derive(Clone, Copy, Debug)]
pub struct StunView<'a> {
    buf: &'a [u8],
    slots: [Slot; TRACKED.len()],
    /// First comprehension-required attribute we do not understand, if any.
    unknown_required: Option<u16>,
    /// Whether FINGERPRINT was followed by other attributes (it must be last, RFC 8489 §14.7).
    fingerprint_not_last: bool,
    attribute_count: u16,
}

/// Check only the fixed header of a datagram, RFC 8489 §6.3: length, top bits, cookie, length
/// field. This is the part the differential test compares with `stun_codec`.
pub fn check_header(buf: &[u8]) -> Result<(MessageType, TransactionId), ParseError> {
    let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
        return Err(ParseError::TooShort { len: buf.len() });
    };
    let len = declared_length(header)?;
    let actual = buf.len() - HEADER_LEN;
    if usize::from(len) != actual {
        return Err(ParseError::LengthMismatch {
            declared: len,
            actual,
        });
    }
    let [t0, t1, _, _, _, _, _, _, tid @ ..] = *header;
    Ok((
        MessageType::from_u16(u16::from_be_bytes([t0, t1])),
        TransactionId(tid),
    ))
}

/// The checks of a 20-byte header that do not need the rest of the message (top bits 00,
/// magic cookie, length a multiple of 4; RFC 8489 §6.3), and the length it declares. A stream
/// reader (RFC 8489 §6.2.2) uses it to know how much more to read.
pub(crate) fn declared_length(header: &[u8; HEADER_LEN]) -> Result<u16, ParseError> {
    let [t0, _, l0, l1, c0, c1, c2, c3, ..] = *header;
    if t0 & 0xC0 != 0 {
        return Err(ParseError::NotStun);
    }
    let cookie = u32::from_be_bytes([c0, c1, c2, c3]);
    if cookie != MAGIC_COOKIE {
        return Err(ParseError::BadCookie { cookie });
    }
    let len = u16::from_be_bytes([l0, l1]);
    if len % 4 != 0 {
        return Err(ParseError::UnalignedLength { length: len });
    }
    Ok(len)
}

impl<'a> StunView<'a> {
    /// Validate `buf` as one complete STUN message and index its attributes.
    pub fn parse(buf: &'a [u8]) -> Result<Self, ParseError> {
        check_header(buf)?;
        let mut view = StunView {
            buf,
            slots: [Slot::default(); TRACKED.len()],
            unknown_required: None,
            fingerprint_not_last: false,
            attribute_count: 0,
        };
        // After MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT count; after
        // MESSAGE-INTEGRITY-SHA256 only FINGERPRINT (RFC 8489 §14.5, §14.6).
        let mut integrity_seen = false;
        let mut sha256_seen = false;
        let mut fingerprint_seen = false;
        let mut offset = HEADER_LEN;
        while offset < buf.len() {
            let Some(&[k0, k1, n0, n1]) = buf.get(offset..).and_then(|b| b.first_chunk::<4>())
            else {
                return Err(ParseError::AttributeOverrun { kind: 0, offset });
            };
            let kind = u16::from_be_bytes([k0, k1]);
            let len = usize::from(u16::from_be_bytes([n0, n1]));
            let start = offset + 4;
            let padded = (len + 3) & !3;
            if start + padded > buf.len() {
                return Err(ParseError::AttributeOverrun { kind, offset });
            }
            view.attribute_count = view.attribute_count.saturating_add(1);
            if fingerprint_seen {
                view.fingerprint_not_last = true;
            }
            let counts = match kind {
                attr::FINGERPRINT => true,
                attr::MESSAGE_INTEGRITY_SHA256 => !sha256_seen,
                _ => !integrity_seen && !sha256_seen,
            };
            if counts {
                if let Some(i) = tracked_index(kind) {
                    if let Some(slot) = view.slots.get_mut(i)
                        && slot.start == 0
                    {
                        // Lossless: `start` < buf.len() <= 20 + 65535 and `len` came from
                        // a u16.
                        *slot = Slot {
                            start: start as u32,
                            len: len as u16,
                        };
                    }
                } else if attr::is_comprehension_required(kind)
                    && view.unknown_required.is_none()
                    && !attr::KNOWN_REQUIRED.contains(&kind)
                {
                    view.unknown_required = Some(kind);
                }
            }
            match kind {
                attr::MESSAGE_INTEGRITY => integrity_seen = true,
                attr::MESSAGE_INTEGRITY_SHA256 => sha256_seen = true,
                attr::FINGERPRINT => fingerprint_seen = true,
                _ => {}
            }
            offset = start + padded;
        }
        Ok(view)
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// Class and method.
    pub fn message_type(&self) -> MessageType {
        let t = u16::from_be_bytes([self.byte(0), self.byte(1)]);
        MessageType::from_u16(t)
    }

    /// The transaction id.
    pub fn transaction_id(&self) -> TransactionId {
        TransactionId::peek(self.buf).unwrap_or(TransactionId([0; 12]))
    }

    /// Number of attributes in the message.
    pub fn attribute_count(&self) -> u16 {
        self.attribute_count
    }

    /// The first comprehension-required attribute type this parser does not understand
    /// (RFC 8489 §14: in a response it is reported, not fatal).
    pub fn unknown_comprehension_required(&self) -> Option<u16> {
        self.unknown_required
    }

    fn byte(&self, i: usize) -> u8 {
        self.buf.get(i).copied().unwrap_or(0)
    }

    fn value(&self, kind: u16) -> Option<&'a [u8]> {
        let slot = self.slots.get(tracked_index(kind)?)?;
        if slot.start == 0 {
            return None;
        }
        let start = slot.start as usize;
        self.buf.get(start..start + usize::from(slot.len))
    }

    /// Raw value of a tracked attribute (see the list in this module); `None` when absent or
    /// not tracked. For any attribute use [`StunView::attributes`].
    pub fn raw(&self, kind: u16) -> Option<&'a [u8]> {
        self.value(kind)
    }

    /// Iterate over every attribute as `(type, value)`, in order. The walk was validated by
    /// [`StunView::parse`], so the iterator yields every attribute.
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes {
            rest: self.buf.get(HEADER_LEN..).unwrap_or(&[]),
        }
    }

    /// XOR-MAPPED-ADDRESS, RFC 8489 §14.2.
    pub fn xor_mapped_address(&self) -> Option<Result<SocketAddr, ParseError>> {
        let tid = self.transaction_id();
        self.value(attr::XOR_MAPPED_ADDRESS)
            .map(|v| attr::decode_xor_address(v, &tid))
    }

    /// XOR-RELAYED-ADDRESS, RFC 8656 §18.5.
    pub fn xor_relayed_address(&self) -> Option<Result<SocketAddr, ParseError>> {
        let tid = self.transaction_id();
        self.value(attr::XOR_RELAYED_ADDRESS)
            .map(|v| attr::decode_xor_address(v, &tid))
    }

    /// MAPPED-ADDRESS, RFC 8489 §14.1.
    pub fn mapped_address(&self) -> Option<Result<SocketAddr, ParseError>> {
        self.value(attr::MAPPED_ADDRESS).map(attr::decode_address)
    }

    /// OTHER-ADDRESS, RFC 5780 §7.4.
    pub fn other_address(&self) -> Option<Result<SocketAddr, ParseError>> {
        self.value(attr::OTHER_ADDRESS).map(attr::decode_address)
    }

    /// RESPONSE-ORIGIN, RFC 5780 §7.3.
    pub fn response_origin(&self) -> Option<Result<SocketAddr, ParseError>> {
        self.value(attr::RESPONSE_ORIGIN).map(attr::decode_address)
    }

    /// RESPONSE-PORT, RFC 5780 §7.5: `Some(None)` when present but not four bytes long.
    pub fn response_port(&self) -> Option<Option<u16>> {
        self.attributes()
            .find(|(k, _)| *k == attr::RESPONSE_PORT)
            .map(|(_, v)| attr::decode_response_port(v))
    }

    /// ERROR-CODE, RFC 8489 §14.8.
    pub fn error_code(&self) -> Option<Result<ErrorCode<'a>, ParseError>> {
        self.value(attr::ERROR_CODE).map(attr::decode_error_code)
    }

    /// SOFTWARE, RFC 8489 §14.14 (bytes as sent; UTF-8 is not checked here).
    pub fn software(&self) -> Option<&'a [u8]> {
        self.value(attr::SOFTWARE)
    }

    /// REALM, RFC 8489 §14.9.
    pub fn realm(&self) -> Option<&'a [u8]> {
        self.value(attr::REALM)
    }

    /// NONCE, RFC 8489 §14.10.
    pub fn nonce(&self) -> Option<&'a [u8]> {
        self.value(attr::NONCE)
    }

    /// LIFETIME in seconds, RFC 8656 §18.2.
    pub fn lifetime(&self) -> Option<u32> {
        let v: [u8; 4] = self.value(attr::LIFETIME)?.try_into().ok()?;
        Some(u32::from_be_bytes(v))
    }

    /// Whether MESSAGE-INTEGRITY is present, RFC 8489 §14.5.
    pub fn has_message_integrity(&self) -> bool {
        self.value(attr::MESSAGE_INTEGRITY).is_some()
    }

    /// Check FINGERPRINT, RFC 8489 §14.7: CRC-32 of the message up to the attribute, XOR
    /// 0x5354554E, and the attribute must be the last one.
    pub fn fingerprint(&self) -> Fingerprint {
        let Some(slot) = tracked_index(attr::FINGERPRINT).and_then(|i| self.slots.get(i)) else {
            return Fingerprint::Absent;
        };
        if slot.start == 0 {
            return Fingerprint::Absent;
        }
        let start = slot.start as usize;
        if slot.len != 4 || self.fingerprint_not_last || start + 4 != self.buf.len() {
            return Fingerprint::Invalid;
        }
        let (Some(covered), Some(value)) =
            (self.buf.get(..start - 4), self.buf.get(start..start + 4))
        else {
            return Fingerprint::Invalid;
        };
        let Ok(sent) = <[u8; 4]>::try_from(value) else {
            return Fingerprint::Invalid;
        };
        if crc32fast::hash(covered) ^ FINGERPRINT_XOR == u32::from_be_bytes(sent) {
            Fingerprint::Valid
        } else {
            Fingerprint::Invalid
        }
    }
}

/// Iterator over `(type, value)` pairs of a validated message.
#[derive(Clone, Debug)]
pub struct Attributes<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Attributes<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (&[k0, k1, n0, n1], tail) = self.rest.split_first_chunk::<4>()?;
        let len = usize::from(u16::from_be_bytes([n0, n1]));
        let padded = (len + 3) & !3;
        let value = tail.get(..len)?;
        self.rest = tail.get(padded..).unwrap_or(&[]);
        Some((u16::from_be_bytes([k0, k1]), value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::{Class, MessageWriter, Method};

    fn response(tid: TransactionId) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut w = MessageWriter::new(&mut buf, MessageType::BINDING_SUCCESS, &tid);
        w.xor_address(
            attr::XOR_MAPPED_ADDRESS,
            &"192.0.2.1:32853".parse().unwrap(),
        );
        w.software("test");
        w.fingerprint();
        buf
    }

    #[test]
    fn header_checks_reject_each_defect() {
        let tid = TransactionId([3; 12]);
        let good = response(tid);
        assert!(StunView::parse(&good).is_ok());
        assert_eq!(
            StunView::parse(&good[..19]).unwrap_err(),
            ParseError::TooShort { len: 19 }
        );
        let mut bad = good.clone();
        bad[0] |= 0x80;
        assert_eq!(StunView::parse(&bad).unwrap_err(), ParseError::NotStun);
        let mut bad = good.clone();
        bad[4] = 0;
        assert!(matches!(
            StunView::parse(&bad).unwrap_err(),
            ParseError::BadCookie { .. }
        ));
        let mut bad = good.clone();
        bad[3] = bad[3].wrapping_add(1);
        assert!(matches!(
            StunView::parse(&bad).unwrap_err(),
            ParseError::UnalignedLength { .. }
        ));
        let mut bad = good.clone();
        bad.extend_from_slice(&[0; 4]);
        assert!(matches!(
            StunView::parse(&bad).unwrap_err(),
            ParseError::LengthMismatch { .. }
        ));
    }

    #[test]
    fn attribute_overrun_is_an_error() {
        let tid = TransactionId([3; 12]);
        let mut buf = Vec::new();
        let mut w = MessageWriter::new(&mut buf, MessageType::BINDING_SUCCESS, &tid);
        w.attr(attr::SOFTWARE, b"abcd");
        w.finish();
        // Claim a longer value than is present.
        buf[23] = 8;
        assert_eq!(
            StunView::parse(&buf).unwrap_err(),
            ParseError::AttributeOverrun {
                kind: attr::SOFTWARE,
                offset: 20
            }
        );
    }

    #[test]
    fn accessors_read_what_the_writer_wrote() {
        let tid = TransactionId([9; 12]);
        let buf = response(tid);
        let v = StunView::parse(&buf).unwrap();
        assert_eq!(
            v.message_type(),
            MessageType::new(Class::SuccessResponse, Method::BINDING)
        );
        assert_eq!(v.transaction_id(), tid);
        assert_eq!(
            v.xor_mapped_address(),
            Some(Ok("192.0.2.1:32853".parse().unwrap()))
        );
        assert_eq!(v.software(), Some(&b"test"[..]));
        assert_eq!(v.fingerprint(), Fingerprint::Valid);
        assert_eq!(v.mapped_address(), None);
        assert_eq!(v.attribute_count(), 3);
        assert_eq!(v.attributes().count(), 3);
    }

    #[test]
    fn corrupted_fingerprint_is_invalid_and_misplaced_is_invalid() {
        let tid = TransactionId([9; 12]);
        let mut buf = response(tid);
        let n = buf.len();
        buf[n - 1] ^= 1;
        assert_eq!(
            StunView::parse(&buf).unwrap().fingerprint(),
            Fingerprint::Invalid
        );

        let mut buf = Vec::new();
        let mut w = MessageWriter::new(&mut buf, MessageType::BINDING_SUCCESS, &tid);
        w.fingerprint();
        w.software("after");
        w.finish();
        assert_eq!(
            StunView::parse(&buf).unwrap().fingerprint(),
            Fingerprint::Invalid
        );
    }

    #[test]
    fn attributes_after_message_integrity_are_ignored() {
        let tid = TransactionId([1; 12]);
        let mut buf = Vec::new();
        let mut w = MessageWriter::new(&mut buf, MessageType::BINDING_SUCCESS, &tid);
        w.attr(attr::MESSAGE_INTEGRITY, &[0; 20]);
        w.software("ignored");
        w.finish();
        let v = StunView::parse(&buf).unwrap();
        assert!(v.has_message_integrity());
        assert_eq!(v.software(), None);
    }

    #[test]
    fn unknown_required_attribute_is_reported_not_fatal() {
        let tid = TransactionId([1; 12]);
        let mut buf = Vec::new();
        let mut w = MessageWriter::new(&mut buf, MessageType::BINDING_SUCCESS, &tid);
        w.attr(0x7F01, b"x");
        w.attr(0xC001, b"optional");
        w.finish();
        let v = StunView::parse(&buf).unwrap();
        assert_eq!(v.unknown_comprehension_required(), Some(0x7F01));
    }

    #[test]
    fn first_occurrence_wins() {
        let tid = TransactionId([1; 12]);
        let mut buf = Vec::new();
        let mut w = MessageWriter::new(&mut buf, MessageType::BINDING_SUCCESS, &tid);
        w.software("first");
        w.software("second");
        w.finish();
        assert_eq!(
            StunView::parse(&buf).unwrap().software(),
            Some(&b"first"[..])
        );
    }

    #[test]
    fn never_panics_on_prefixes_of_a_valid_message() {
        let buf = response(TransactionId([5; 12]));
        for n in 0..=buf.len() {
            let _ = StunView::parse(&buf[..n]).map(|v| (v.fingerprint(), v.xor_mapped_address()));
        }
    }
}
