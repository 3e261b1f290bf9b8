//! Complete STUN decoding through `stun_codec`, the slow and thorough counterpart of
//! [`super::view::StunView`].
//!
//! [`decode`] runs `stun_codec`'s message decoder with an attribute set covering RFC 8489
//! (RFC 5389 codepoints), RFC 5780 (NAT behaviour discovery) and RFC 8656 / RFC 5766 (TURN), and
//! returns a typed summary, [`FullMessage`].
//!
//! # What `stun_codec` 0.4 checks, and what it does not
//!
//! Read from its source (`message.rs`, `attribute.rs`, `rfc5389/attributes.rs`, `net.rs`) and
//! pinned by the tests at the bottom of this file:
//!
//! - **Header** (RFC 8489 §5, §6.3): rejects a datagram shorter than 20 bytes, a non-zero top two
//!   bits, a wrong magic cookie, and any disagreement between the length field and the datagram
//!   (trailing bytes: not all input consumed). These come back as [`FullError::Header`], with one
//!   wrinkle: a datagram *shorter* than its length field is a header error only when fewer bytes
//!   are present than are missing (`bytecodec`'s `Length` compares the remaining input with the
//!   shortfall instead of the full declared length); a smaller shortfall lets the attribute walk
//!   start and the message comes back broken ([`FullError::Attributes`]). Never accepted.
//! - It does **not** check that the length field is a multiple of four. An unaligned length that
//!   matches the datagram passes the header and then fails inside the attribute walk, because
//!   every attribute is followed by its padding: [`FullError::Attributes`], never success.
//! - **Attributes** (RFC 8489 §14): a value running past the message, wrong value sizes (an IPv4
//!   address must be exactly 8 bytes, FINGERPRINT exactly 4, …), an unknown address family,
//!   invalid UTF-8 in text attributes, SOFTWARE / REALM / NONCE of 128 characters or more,
//!   ERROR-CODE classes outside 3–5 and numbers above 99 all make the *whole* message broken
//!   (`stun_codec` returns `Ok(Err(BrokenMessage))`): [`FullError::Attributes`].
//! - ERROR-CODE: `stun_codec` accepts classes 3, 4 and 5 only, although RFC 8489 §14.8 allows
//!   300–699. A 6xx error response (e.g. 600 Global Failure) is reported as broken. The fast path
//!   accepts it.
//! - **FINGERPRINT** (RFC 8489 §14.7) *is* verified, but not over the received bytes: the
//!   decoder re-encodes the attributes that precede FINGERPRINT from their decoded values and
//!   hashes that. Anything the re-encoding normalises (the reserved first byte of an address
//!   attribute, the 21 reserved bits of ERROR-CODE, unused CHANGE-REQUEST bits) changes the CRC,
//!   so a correctly fingerprinted but non-canonical message is reported broken. Padding bytes and
//!   unknown attributes are kept verbatim and do not cause this. It does not check that
//!   FINGERPRINT is the last attribute.
//! - Its message *encoder* shifts method bits M4–M6 left by 5 and M7–M11 by 9 where RFC 8489 §5
//!   (Figure 3) needs 1 and 2 (the decoder is right). Because the FINGERPRINT check re-encodes
//!   the header, every fingerprinted message whose method is above 0x00F is reported broken.
//!   All RFC 8489 / RFC 8656 methods (Binding 0x001 … ChannelBind 0x009) are below that.
//! - MESSAGE-INTEGRITY is not verified while decoding (no key); its covered bytes are
//!   recomputed the same re-encoding way.
//! - Attributes after MESSAGE-INTEGRITY are decoded and returned like any other, whereas
//!   RFC 8489 §14.5 says they must be ignored (the fast path ignores them).
//! - Unknown attributes, comprehension-required or not, are kept as raw values; deciding what to
//!   do with unknown comprehension-required ones (RFC 8489 §14) is left to the caller. We list
//!   their types in [`FullMessage::unknown_attributes`].
//! - Duplicates: the first occurrence of each attribute is the one returned here.
//! - In builds with overflow checks (debug, fuzzing), `stun_codec`'s FINGERPRINT length
//!   arithmetic underflows and panics when more than 65 515 bytes of attributes precede a
//!   FINGERPRINT. [`decode`] refuses messages long enough to reach that code
//!   ([`FullError::TooLong`]); no UDP datagram is that large.

use std::fmt;
use std::net::SocketAddr;

use bytecodec::{DecodeExt, EncodeExt};
use stun_codec::rfc5389::attributes::{
    AlternateServer, ErrorCode, Fingerprint, MappedAddress, MessageIntegrity, Nonce, Realm,
    Software, UnknownAttributes, Username, XorMappedAddress, XorMappedAddress2,
};
use stun_codec::rfc5766::attributes::{
    ChannelNumber, Data, DontFragment, EvenPort, Lifetime, RequestedTransport, ReservationToken,
    XorPeerAddress, XorRelayAddress,
};
use stun_codec::rfc5780::attributes::{ChangeRequest, OtherAddress, ResponseOrigin, ResponsePort};
use stun_codec::rfc8656::attributes::{AdditionalAddressFamily, RequestedAddressFamily};
use stun_codec::{Message, MessageClass, MessageDecoder, MessageEncoder};

use super::view::{self, ParseError, StunView};
use super::{Class, HEADER_LEN, MessageType, Method, TransactionId, attr};

stun_codec::define_attribute_enums!(
    FullAttribute,
    FullAttributeDecoder,
    FullAttributeEncoder,
    [
        // RFC 8489 §14 (codepoints registered by RFC 5389 §18.2).
        MappedAddress,
        Username,
        MessageIntegrity,
        ErrorCode,
        UnknownAttributes,
        Realm,
        Nonce,
        XorMappedAddress,
        XorMappedAddress2,
        Software,
        AlternateServer,
        Fingerprint,
        // RFC 5780 §7.
        ChangeRequest,
        ResponseOrigin,
        ResponsePort,
        OtherAddress,
        // RFC 8656 §18 (RFC 5766 §14 codepoints).
        ChannelNumber,
        Lifetime,
        XorPeerAddress,
        Data,
        XorRelayAddress,
        EvenPort,
        RequestedTransport,
        DontFragment,
        ReservationToken,
        // RFC 8656 §18.6 and §18.11.
        RequestedAddressFamily,
        AdditionalAddressFamily
    ]
);

/// Longest message [`decode`] hands to `stun_codec`: 20-byte header plus 65 520 bytes of
/// attributes. Beyond this, `stun_codec`'s FINGERPRINT check can underflow (see the module docs).
/// RFC 8489 §5 allows up to 65 535 bytes of attributes, but a UDP payload is at most 65 507 bytes
/// (IPv4) so this only matters for jumbograms or stream transports.
pub const MAX_FULL_DECODE_LEN: usize = HEADER_LEN + 65_520;

/// Which class of `bytecodec` failure ended decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecodeFailure {
    /// Malformed input: bad top bits, cookie, trailing bytes, bad attribute value.
    InvalidInput,
    /// The input ended before the structure did (truncated header, value or padding).
    UnexpectedEos,
    /// A structure was left unfinished.
    IncompleteDecoding,
    /// Anything else `bytecodec` reports (decoder state errors).
    Other,
}

impl DecodeFailure {
    fn of(error: &bytecodec::Error) -> Self {
        match error.kind() {
            bytecodec::ErrorKind::InvalidInput => Self::InvalidInput,
            bytecodec::ErrorKind::UnexpectedEos => Self::UnexpectedEos,
            bytecodec::ErrorKind::IncompleteDecoding => Self::IncompleteDecoding,
            _ => Self::Other,
        }
    }
}

/// Why [`decode`] refused a datagram.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FullError {
    /// The fixed header or the framing was rejected (RFC 8489 §5, §6.3): shorter than 20 bytes,
    /// top two bits set, bad magic cookie, or a length field that disagrees with the datagram.
    #[error("STUN header rejected ({failure:?}): {detail}")]
    Header {
        /// The kind of failure.
        failure: DecodeFailure,
        /// `stun_codec`'s own account, for logs.
        detail: String,
    },
    /// The header is a valid STUN header but the attribute section is not decodable
    /// (RFC 8489 §14): overrun, wrong value size, unaligned length, bad UTF-8, FINGERPRINT
    /// mismatch, … (`stun_codec`'s `BrokenMessage`).
    #[error("STUN {message_type:?} {transaction_id}: attributes rejected ({failure:?}): {detail}")]
    Attributes {
        /// Class and method from the header.
        message_type: MessageType,
        /// Transaction id from the header.
        transaction_id: TransactionId,
        /// The kind of failure.
        failure: DecodeFailure,
        /// `stun_codec`'s own account, for logs.
        detail: String,
    },
    /// Longer than [`MAX_FULL_DECODE_LEN`]; not given to `stun_codec` (see the module docs).
    #[error("STUN message of {len} bytes is too long for the full decoder")]
    TooLong {
        /// The datagram's length.
        len: usize,
    },
}

/// ERROR-CODE as decoded by `stun_codec`, RFC 8489 §14.8.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FullErrorCode {
    /// Class × 100 + number (300–599 with `stun_codec`, see the module docs).
    pub code: u16,
    /// The UTF-8 reason phrase.
    pub reason: String,
}

/// What [`decode`] extracted from a well-formed message. Every field holds the first occurrence
/// of its attribute, wherever it appears in the message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FullMessage {
    /// Class and method, RFC 8489 §5.
    pub message_type: MessageType,
    /// Transaction id, RFC 8489 §5.
    pub transaction_id: TransactionId,
    /// XOR-MAPPED-ADDRESS, RFC 8489 §14.2 (already un-XORed).
    pub xor_mapped_address: Option<SocketAddr>,
    /// MAPPED-ADDRESS, RFC 8489 §14.1.
    pub mapped_address: Option<SocketAddr>,
    /// OTHER-ADDRESS, RFC 5780 §7.4.
    pub other_address: Option<SocketAddr>,
    /// RESPONSE-ORIGIN, RFC 5780 §7.3.
    pub response_origin: Option<SocketAddr>,
    /// XOR-RELAYED-ADDRESS, RFC 8656 §18.5 (already un-XORed).
    pub xor_relayed_address: Option<SocketAddr>,
    /// XOR-PEER-ADDRESS, RFC 8656 §18.3 (already un-XORed).
    pub xor_peer_address: Option<SocketAddr>,
    /// ALTERNATE-SERVER, RFC 8489 §14.15.
    pub alternate_server: Option<SocketAddr>,
    /// ERROR-CODE, RFC 8489 §14.8.
    pub error_code: Option<FullErrorCode>,
    /// SOFTWARE, RFC 8489 §14.14.
    pub software: Option<String>,
    /// REALM, RFC 8489 §14.9.
    pub realm: Option<String>,
    /// NONCE, RFC 8489 §14.10.
    pub nonce: Option<String>,
    /// LIFETIME in seconds, RFC 8656 §18.2.
    pub lifetime: Option<u32>,
    /// Whether MESSAGE-INTEGRITY is present, RFC 8489 §14.5 (not verified here).
    pub has_message_integrity: bool,
    /// Whether FINGERPRINT is present, RFC 8489 §14.7. When it is, `stun_codec` has verified it
    /// (over its re-encoding of the message, see the module docs).
    pub has_fingerprint: bool,
    /// Types of the attributes outside the set above, in message order (duplicates kept).
    pub unknown_attributes: Vec<u16>,
}

impl FullMessage {
    /// The first unknown comprehension-required attribute (type below 0x8000, RFC 8489 §14).
    pub fn unknown_comprehension_required(&self) -> Option<u16> {
        self.unknown_attributes
            .iter()
            .copied()
            .find(|k| *k < 0x8000)
    }
}

fn class_of(class: MessageClass) -> Class {
    match class {
        MessageClass::Request => Class::Request,
        MessageClass::Indication => Class::Indication,
        MessageClass::SuccessResponse => Class::SuccessResponse,
        MessageClass::ErrorResponse => Class::ErrorResponse,
    }
}

fn header_of(
    class: MessageClass,
    method: stun_codec::Method,
    tid: stun_codec::TransactionId,
) -> (MessageType, TransactionId) {
    (
        MessageType::new(class_of(class), Method(method.as_u16())),
        TransactionId(*tid.as_bytes()),
    )
}

/// Decode one complete STUN message (RFC 8489 §5, §14) with `stun_codec`.
///
/// `bytes` must be exactly one message: trailing bytes are a [`FullError::Header`] error.
pub fn decode(bytes: &[u8]) -> Result<FullMessage, FullError> {
    decode_message(bytes).map(|m| summarize(&m))
}

/// Run `stun_codec`'s decoder and sort its failures into header and attribute errors.
fn decode_message(bytes: &[u8]) -> Result<Message<FullAttribute>, FullError> {
    if bytes.len() > MAX_FULL_DECODE_LEN {
        return Err(FullError::TooLong { len: bytes.len() });
    }
    let mut decoder = MessageDecoder::<FullAttribute>::new();
    let decoded = decoder
        .decode_from_bytes(bytes)
        .map_err(|e| FullError::Header {
            failure: DecodeFailure::of(&e),
            detail: e.to_string(),
        })?;
    decoded.map_err(|broken| {
        let (message_type, transaction_id) =
            header_of(broken.class(), broken.method(), broken.transaction_id());
        FullError::Attributes {
            message_type,
            transaction_id,
            failure: DecodeFailure::of(broken.error()),
            detail: broken.error().to_string(),
        }
    })
}

fn summarize(message: &Message<FullAttribute>) -> FullMessage {
    let (message_type, transaction_id) =
        header_of(message.class(), message.method(), message.transaction_id());
    FullMessage {
        message_type,
        transaction_id,
        xor_mapped_address: message
            .get_attribute::<XorMappedAddress>()
            .map(|a| a.address()),
        mapped_address: message
            .get_attribute::<MappedAddress>()
            .map(|a| a.address()),
        other_address: message.get_attribute::<OtherAddress>().map(|a| a.address()),
        response_origin: message
            .get_attribute::<ResponseOrigin>()
            .map(|a| a.address()),
        xor_relayed_address: message
            .get_attribute::<XorRelayAddress>()
            .map(|a| a.address()),
        xor_peer_address: message
            .get_attribute::<XorPeerAddress>()
            .map(|a| a.address()),
        alternate_server: message
            .get_attribute::<AlternateServer>()
            .map(|a| a.address()),
        error_code: message.get_attribute::<ErrorCode>().map(|e| FullErrorCode {
            code: e.code(),
            reason: e.reason_phrase().to_owned(),
        }),
        software: message
            .get_attribute::<Software>()
            .map(|s| s.description().to_owned()),
        realm: message
            .get_attribute::<Realm>()
            .map(|r| r.text().to_owned()),
        nonce: message
            .get_attribute::<Nonce>()
            .map(|n| n.value().to_owned()),
        // The decoder read the value from a u32, so the conversion cannot saturate.
        lifetime: message
            .get_attribute::<Lifetime>()
            .map(|l| u32::try_from(l.lifetime().as_secs()).unwrap_or(u32::MAX)),
        has_message_integrity: message.get_attribute::<MessageIntegrity>().is_some(),
        has_fingerprint: message.get_attribute::<Fingerprint>().is_some(),
        unknown_attributes: message
            .unknown_attributes()
            .map(|a| stun_codec::Attribute::get_type(a).as_u16())
            .collect(),
    }
}

/// A point on which [`cross_check`] found the fast path and `stun_codec` in conflict.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("decoders disagree on {what}: fast path says {fast}, stun_codec says {full}")]
pub struct Disagreement {
    /// What was compared.
    pub what: &'static str,
    /// The fast path's answer, rendered for the report.
    pub fast: String,
    /// `stun_codec`'s answer, rendered for the report.
    pub full: String,
}

/// How a datagram fared in both decoders when [`cross_check`] found them consistent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Agreement {
    /// Both rejected the header (RFC 8489 §6.3).
    HeaderRejected,
    /// Both accepted the header. `fast_walk_ok` / `full_ok`: whether the fast path's attribute
    /// walk and `stun_codec`'s full decode succeeded.
    HeaderAccepted {
        /// [`StunView::parse`] succeeded.
        fast_walk_ok: bool,
        /// [`decode`] succeeded.
        full_ok: bool,
    },
    /// The fast path accepted or rejected it; too long for [`decode`], so nothing was compared.
    TooLongForFull,
}

fn disagree(what: &'static str, fast: impl fmt::Debug, full: impl fmt::Debug) -> Disagreement {
    Disagreement {
        what,
        fast: format!("{fast:?}"),
        full: format!("{full:?}"),
    }
}

/// Which header verdict `stun_codec` must reach, given the fast path's.
#[derive(Debug, PartialEq, Eq)]
enum ExpectedHeader {
    /// `stun_codec` rejects the header ([`FullError::Header`]).
    Rejected,
    /// `stun_codec` passes the header and reports broken attributes ([`FullError::Attributes`]).
    Broken,
    /// `stun_codec` passes the header (the attributes may or may not decode).
    Accepted,
}

/// Map the fast path's header verdict onto `stun_codec`'s for a datagram of `len` bytes.
/// Everything here follows from `stun_codec`'s code (see the module docs), so any other outcome
/// is a disagreement.
fn expected_header(
    fast: &Result<(MessageType, TransactionId), ParseError>,
    len: usize,
) -> ExpectedHeader {
    let declared = match *fast {
        Ok(_) => return ExpectedHeader::Accepted,
        // The fast path checks alignment before comparing the length with the datagram;
        // stun_codec never checks alignment, so both cases reduce to a length comparison.
        Err(ParseError::UnalignedLength { length: declared })
        | Err(ParseError::LengthMismatch { declared, .. }) => usize::from(declared),
        Err(_) => return ExpectedHeader::Rejected,
    };
    let actual = len.saturating_sub(HEADER_LEN);
    if actual > declared {
        // Trailing bytes: `decode_from_bytes` insists on consuming the whole input.
        ExpectedHeader::Rejected
    } else if actual < declared && actual < declared - actual {
        // bytecodec's `Length` notices the early end only when the input still present is
        // smaller than the shortfall.
        ExpectedHeader::Rejected
    } else {
        // Equal (only reachable with an unaligned length: the last attribute's padding cannot
        // fit) or a small shortfall (the attribute walk runs dry): never a successful decode.
        ExpectedHeader::Broken
    }
}

/// Per attribute type, whether the fast path reads its first occurrence: [`StunView`] ignores
/// everything after MESSAGE-INTEGRITY except MESSAGE-INTEGRITY-SHA256 and FINGERPRINT, and
/// everything after MESSAGE-INTEGRITY-SHA256 except FINGERPRINT (RFC 8489 §14.5, §14.6);
/// `stun_codec` reads them all.
fn first_occurrence_visible_to_fast_path(view: &StunView<'_>, kind: u16) -> Option<bool> {
    let mut integrity = false;
    let mut sha256 = false;
    for (k, _) in view.attributes() {
        if k == kind {
            return Some(match k {
                attr::FINGERPRINT => true,
                attr::MESSAGE_INTEGRITY_SHA256 => !sha256,
                _ => !integrity && !sha256,
            });
        }
        match k {
            attr::MESSAGE_INTEGRITY => integrity = true,
            attr::MESSAGE_INTEGRITY_SHA256 => sha256 = true,
            _ => {}
        }
    }
    None
}

/// Compare one optional field: equal when both decoders report it; when only `stun_codec` does,
/// the fast path must have been told to ignore it; the fast path never reports a value (or a
/// malformed value) that `stun_codec`, having decoded every attribute, did not.
fn compare_field<F: fmt::Debug, G: fmt::Debug>(
    what: &'static str,
    view: &StunView<'_>,
    kind: u16,
    fast: Option<F>,
    full: Option<G>,
    same: impl FnOnce(&F, &G) -> bool,
) -> Result<(), Disagreement> {
    match (&fast, &full) {
        (Some(f), Some(g)) if same(f, g) => Ok(()),
        (None, None) => Ok(()),
        (None, Some(_)) if first_occurrence_visible_to_fast_path(view, kind) == Some(false) => {
            Ok(())
        }
        _ => Err(disagree(what, fast, full)),
    }
}

/// Run both decoders on `bytes` and check every property they must share. Used by the
/// differential property tests and the `stun_differential` fuzz target.
///
/// Checked:
/// - the header verdict (RFC 8489 §5, §6.3), mapped through [`expected_header`];
/// - a fast-path attribute overrun (RFC 8489 §14) is a broken message for `stun_codec`, and a
///   full decode implies a successful fast-path walk;
/// - class, method and transaction id whenever both read a header;
/// - when both decode: every address (XOR-MAPPED-ADDRESS, MAPPED-ADDRESS, OTHER-ADDRESS,
///   RESPONSE-ORIGIN, XOR-RELAYED-ADDRESS), ERROR-CODE, SOFTWARE, REALM, NONCE, LIFETIME and the
///   presence of MESSAGE-INTEGRITY, modulo the attributes the fast path must ignore after
///   MESSAGE-INTEGRITY; the first unknown comprehension-required type the fast path reports is
///   unknown to `stun_codec` too; and a FINGERPRINT `stun_codec` accepted is valid for the fast
///   path whenever it is the last attribute and `stun_codec`'s re-encoding reproduces the
///   datagram byte for byte (otherwise `stun_codec` has hashed different bytes, see the module
///   docs).
///
/// Not checked, because the decoders legitimately differ: a message the fast path walks but
/// `stun_codec` calls broken (wrong value sizes, unknown address families, bad UTF-8, 6xx
/// errors and over-long texts are reported by the fast path's accessors, or not checked by it
/// at all).
pub fn cross_check(bytes: &[u8]) -> Result<Agreement, Disagreement> {
    let header = view::check_header(bytes);
    let walk = StunView::parse(bytes);
    let full = match decode_message(bytes) {
        Err(FullError::TooLong { .. }) => return Ok(Agreement::TooLongForFull),
        other => other,
    };
    let expected = expected_header(&header, bytes.len());
    let verdict = match (&expected, &full) {
        (ExpectedHeader::Rejected, Err(FullError::Header { .. })) => {
            return Ok(Agreement::HeaderRejected);
        }
        (ExpectedHeader::Broken, Err(FullError::Attributes { .. })) => Agreement::HeaderAccepted {
            fast_walk_ok: false,
            full_ok: false,
        },
        (ExpectedHeader::Accepted, Err(FullError::Attributes { .. }) | Ok(_)) => {
            Agreement::HeaderAccepted {
                fast_walk_ok: walk.is_ok(),
                full_ok: full.is_ok(),
            }
        }
        _ => return Err(disagree("header verdict", header, &full)),
    };
    let full_header = match &full {
        Ok(m) => Some(header_of(m.class(), m.method(), m.transaction_id())),
        Err(FullError::Attributes {
            message_type,
            transaction_id,
            ..
        }) => Some((*message_type, *transaction_id)),
        Err(_) => None,
    };
    if let (Ok(fast), Some(full_header)) = (&header, full_header)
        && *fast != full_header
    {
        return Err(disagree(
            "class, method and transaction id",
            fast,
            full_header,
        ));
    }
    match (&walk, &full) {
        (Err(ParseError::AttributeOverrun { .. }), Ok(_)) => {
            return Err(disagree("attribute walk", walk, "decoded"));
        }
        (Err(e), Ok(_)) => return Err(disagree("attribute walk", e, "decoded")),
        (Ok(view), Ok(message)) => compare_decoded(view, message)?,
        _ => {}
    }
    Ok(verdict)
}

fn compare_decoded(
    view: &StunView<'_>,
    message: &Message<FullAttribute>,
) -> Result<(), Disagreement> {
    let m = summarize(message);
    let addr = |a: &Result<SocketAddr, ParseError>, b: &SocketAddr| a.as_ref() == Ok(b);
    compare_field(
        "XOR-MAPPED-ADDRESS",
        view,
        attr::XOR_MAPPED_ADDRESS,
        view.xor_mapped_address(),
        m.xor_mapped_address,
        addr,
    )?;
    compare_field(
        "MAPPED-ADDRESS",
        view,
        attr::MAPPED_ADDRESS,
        view.mapped_address(),
        m.mapped_address,
        addr,
    )?;
    compare_field(
        "OTHER-ADDRESS",
        view,
        attr::OTHER_ADDRESS,
        view.other_address(),
        m.other_address,
        addr,
    )?;
    compare_field(
        "RESPONSE-ORIGIN",
        view,
        attr::RESPONSE_ORIGIN,
        view.response_origin(),
        m.response_origin,
        addr,
    )?;
    compare_field(
        "XOR-RELAYED-ADDRESS",
        view,
        attr::XOR_RELAYED_ADDRESS,
        view.xor_relayed_address(),
        m.xor_relayed_address,
        addr,
    )?;
    compare_field(
        "ERROR-CODE",
        view,
        attr::ERROR_CODE,
        view.error_code(),
        m.error_code.clone(),
        |a, b| {
            a.as_ref()
                .is_ok_and(|a| a.code == b.code && a.reason == b.reason.as_bytes())
        },
    )?;
    let text = |a: &&[u8], b: &String| *a == b.as_bytes();
    compare_field(
        "SOFTWARE",
        view,
        attr::SOFTWARE,
        view.software(),
        m.software.clone(),
        text,
    )?;
    compare_field(
        "REALM",
        view,
        attr::REALM,
        view.realm(),
        m.realm.clone(),
        text,
    )?;
    compare_field(
        "NONCE",
        view,
        attr::NONCE,
        view.nonce(),
        m.nonce.clone(),
        text,
    )?;
    compare_field(
        "LIFETIME",
        view,
        attr::LIFETIME,
        view.lifetime(),
        m.lifetime,
        |a, b| a == b,
    )?;
    compare_field(
        "MESSAGE-INTEGRITY presence",
        view,
        attr::MESSAGE_INTEGRITY,
        view.has_message_integrity().then_some(()),
        m.has_message_integrity.then_some(()),
        |_, _| true,
    )?;
    if let Some(kind) = view.unknown_comprehension_required()
        && !m.unknown_attributes.contains(&kind)
    {
        return Err(disagree(
            "unknown comprehension-required attribute",
            kind,
            &m.unknown_attributes,
        ));
    }
    if m.has_fingerprint && view.fingerprint() != view::Fingerprint::Valid {
        let fingerprints = view
            .attributes()
            .filter(|(k, _)| *k == attr::FINGERPRINT)
            .count();
        let last_is_fingerprint =
            view.attributes().last().map(|(k, _)| k) == Some(attr::FINGERPRINT);
        let reencoded = MessageEncoder::<FullAttribute>::new().encode_into_bytes(message.clone());
        let canonical = reencoded.as_deref().is_ok_and(|r| r == view.as_bytes());
        if fingerprints == 1 && last_is_fingerprint && canonical {
            return Err(disagree("FINGERPRINT", view.fingerprint(), "verified"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::attr;
    use crate::stun::encode::MessageWriter;

    fn tid() -> TransactionId {
        TransactionId([0x5A; 12])
    }

    fn build(ty: MessageType, f: impl FnOnce(&mut MessageWriter<'_>)) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut w = MessageWriter::new(&mut buf, ty, &tid());
        f(&mut w);
        w.finish();
        buf
    }

    #[test]
    fn decodes_every_summary_field() {
        let xma: SocketAddr = "192.0.2.1:32853".parse().unwrap();
        let other: SocketAddr = "[2001:db8::2]:3479".parse().unwrap();
        let origin: SocketAddr = "198.51.100.1:3478".parse().unwrap();
        let relayed: SocketAddr = "[2001:db8::7]:50000".parse().unwrap();
        let mapped: SocketAddr = "203.0.113.9:1".parse().unwrap();
        let buf = build(
            MessageType::new(Class::ErrorResponse, Method::ALLOCATE),
            |w| {
                w.xor_address(attr::XOR_MAPPED_ADDRESS, &xma);
                w.address(attr::MAPPED_ADDRESS, &mapped);
                w.address(attr::OTHER_ADDRESS, &other);
                w.address(attr::RESPONSE_ORIGIN, &origin);
                w.xor_address(attr::XOR_RELAYED_ADDRESS, &relayed);
                w.error_code(401, "Unauthorized");
                w.attr(attr::REALM, b"example.org");
                w.attr(attr::NONCE, b"abcdef");
                w.u32_attr(attr::LIFETIME, 600);
                w.software("stunmap test");
                w.attr(0x7F00, b"req");
                w.attr(0xC0DE, b"opt");
                w.fingerprint();
            },
        );
        let m = decode(&buf).unwrap();
        assert_eq!(
            m.message_type,
            MessageType::new(Class::ErrorResponse, Method::ALLOCATE)
        );
        assert_eq!(m.transaction_id, tid());
        assert_eq!(m.xor_mapped_address, Some(xma));
        assert_eq!(m.mapped_address, Some(mapped));
        assert_eq!(m.other_address, Some(other));
        assert_eq!(m.response_origin, Some(origin));
        assert_eq!(m.xor_relayed_address, Some(relayed));
        assert_eq!(
            m.error_code,
            Some(FullErrorCode {
                code: 401,
                reason: "Unauthorized".into()
            })
        );
        assert_eq!(m.realm.as_deref(), Some("example.org"));
        assert_eq!(m.nonce.as_deref(), Some("abcdef"));
        assert_eq!(m.lifetime, Some(600));
        assert_eq!(m.software.as_deref(), Some("stunmap test"));
        assert!(m.has_fingerprint);
        assert!(!m.has_message_integrity);
        assert_eq!(m.unknown_attributes, vec![0x7F00, 0xC0DE]);
        assert_eq!(m.unknown_comprehension_required(), Some(0x7F00));
    }

    #[test]
    fn header_defects_are_header_errors() {
        let good = build(MessageType::BINDING_REQUEST, |w| {
            w.software("x");
        });
        assert!(decode(&good).is_ok());
        let header_err = |b: &[u8]| matches!(decode(b), Err(FullError::Header { .. }));
        assert!(header_err(&good[..19]));
        assert!(header_err(&[]));
        let mut bad = good.clone();
        bad[0] |= 0x40;
        assert!(header_err(&bad));
        let mut bad = good.clone();
        bad[7] ^= 1;
        assert!(header_err(&bad));
        // Trailing bytes after the declared length.
        let mut bad = good.clone();
        bad.extend_from_slice(&[0; 4]);
        assert!(header_err(&bad));
        // Declared length (8) longer than the datagram: with none of the attributes present
        // it is a header error ...
        assert!(header_err(&good[..20]));
    }

    #[test]
    fn short_datagram_is_a_header_or_an_attribute_error_depending_on_the_shortfall() {
        // bytecodec's `Length` only reports an early end of input when fewer bytes remain than
        // are still missing (2 × present < declared); otherwise the attribute decoder runs out
        // of input and the message comes back broken. Either way it is never accepted.
        let good = build(MessageType::BINDING_REQUEST, |w| {
            w.software("x");
        });
        assert!(matches!(
            decode(&good[..good.len() - 4]),
            Err(FullError::Attributes {
                failure: DecodeFailure::IncompleteDecoding,
                ..
            })
        ));
        assert!(matches!(
            decode(&good[..20]),
            Err(FullError::Header {
                failure: DecodeFailure::UnexpectedEos,
                ..
            })
        ));
    }

    #[test]
    fn unaligned_length_passes_the_header_but_breaks_the_attributes() {
        let mut buf = build(MessageType::BINDING_REQUEST, |w| {
            w.attr(attr::SOFTWARE, b"abc");
        });
        // Drop the padding byte and declare the unpadded length (7).
        buf.pop();
        buf[3] = 7;
        assert!(matches!(
            decode(&buf),
            Err(FullError::Attributes {
                failure: DecodeFailure::UnexpectedEos,
                ..
            })
        ));
    }

    #[test]
    fn attribute_defects_are_attribute_errors_with_the_header() {
        let mut buf = build(MessageType::BINDING_SUCCESS, |w| {
            w.xor_address(attr::XOR_MAPPED_ADDRESS, &"192.0.2.1:9".parse().unwrap());
        });
        buf[25] = 3; // unknown address family
        match decode(&buf) {
            Err(FullError::Attributes {
                message_type,
                transaction_id,
                ..
            }) => {
                assert_eq!(message_type, MessageType::BINDING_SUCCESS);
                assert_eq!(transaction_id, tid());
            }
            other => panic!("expected an attribute error, got {other:?}"),
        }
    }

    #[test]
    fn fingerprint_is_verified() {
        let mut buf = build(MessageType::BINDING_REQUEST, |w| {
            w.software("fp");
            w.fingerprint();
        });
        assert!(decode(&buf).unwrap().has_fingerprint);
        let n = buf.len();
        buf[n - 1] ^= 0x01;
        assert!(matches!(decode(&buf), Err(FullError::Attributes { .. })));
    }

    #[test]
    fn fingerprint_check_is_over_a_re_encoding_not_the_wire() {
        // A correct FINGERPRINT over an address whose reserved first byte is non-zero
        // (RFC 8489 §14.1 says it is ignored): the fast path accepts it, stun_codec re-encodes
        // the byte as zero and reports a CRC mismatch.
        let mut buf = Vec::new();
        let mut w = MessageWriter::new(&mut buf, MessageType::BINDING_SUCCESS, &tid());
        w.attr(attr::MAPPED_ADDRESS, &[0xFF, 1, 0, 80, 192, 0, 2, 1]);
        w.fingerprint();
        w.finish();
        let view = crate::stun::StunView::parse(&buf).unwrap();
        assert_eq!(view.fingerprint(), crate::stun::view::Fingerprint::Valid);
        assert!(matches!(decode(&buf), Err(FullError::Attributes { .. })));
    }

    #[test]
    fn fingerprinted_methods_above_0x00f_are_rejected_by_stun_codec() {
        for (method, accepted) in [(0x001, true), (0x00F, true), (0x010, false), (0x0FF, false)] {
            let buf = build(MessageType::new(Class::Request, Method(method)), |w| {
                w.fingerprint();
            });
            let view = crate::stun::StunView::parse(&buf).unwrap();
            assert_eq!(view.fingerprint(), crate::stun::view::Fingerprint::Valid);
            assert_eq!(decode(&buf).is_ok(), accepted, "method {method:#05x}");
        }
    }

    #[test]
    fn class_six_error_codes_are_rejected_by_stun_codec() {
        let buf = build(MessageType::BINDING_ERROR, |w| {
            w.error_code(600, "Global Failure");
        });
        assert_eq!(
            crate::stun::StunView::parse(&buf)
                .unwrap()
                .error_code()
                .unwrap()
                .unwrap()
                .code,
            600
        );
        assert!(matches!(decode(&buf), Err(FullError::Attributes { .. })));
    }

    #[test]
    fn attributes_after_message_integrity_are_still_returned() {
        let buf = build(MessageType::BINDING_SUCCESS, |w| {
            w.attr(attr::MESSAGE_INTEGRITY, &[0; 20]);
            w.software("late");
        });
        let m = decode(&buf).unwrap();
        assert!(m.has_message_integrity);
        assert_eq!(m.software.as_deref(), Some("late"));
    }

    fn overlong(attr_bytes: usize) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut w = MessageWriter::new(&mut buf, MessageType::BINDING_REQUEST, &tid());
        // Two opaque attributes then FINGERPRINT: `attr_bytes` bytes of attributes in all.
        let first = ((attr_bytes - 16) / 2) & !3;
        w.attr(0xC001, &vec![0; first]);
        w.attr(0xC002, &vec![0; attr_bytes - 16 - first]);
        w.fingerprint();
        assert_eq!(w.finish(), HEADER_LEN + attr_bytes);
        buf
    }

    #[test]
    fn overlong_messages_are_refused_before_stun_codec() {
        let longest = overlong(MAX_FULL_DECODE_LEN - HEADER_LEN);
        assert!(decode(&longest).unwrap().has_fingerprint);
        let too_long = overlong(MAX_FULL_DECODE_LEN - HEADER_LEN + 4);
        assert_eq!(
            decode(&too_long),
            Err(FullError::TooLong {
                len: MAX_FULL_DECODE_LEN + 4
            })
        );
    }

    /// Pins the `stun_codec` arithmetic underflow that [`MAX_FULL_DECODE_LEN`] guards against.
    #[cfg(debug_assertions)]
    #[test]
    fn stun_codec_panics_past_the_limit_with_overflow_checks() {
        let too_long = overlong(MAX_FULL_DECODE_LEN - HEADER_LEN + 4);
        let outcome = std::panic::catch_unwind(|| {
            MessageDecoder::<FullAttribute>::new()
                .decode_from_bytes(&too_long)
                .map(|_| ())
        });
        assert!(
            outcome.is_err(),
            "stun_codec no longer panics; the length guard can go"
        );
    }
}
