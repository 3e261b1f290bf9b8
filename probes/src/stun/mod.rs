//! STUN wire format (RFC 8489), with the RFC 5780 and RFC 8656 attributes stunmap uses.
//!
//! Two decoders live here and are cross-checked against each other:
//! - [`view::StunView`], a zero-copy, bounds-checked view over a datagram for the hot path;
//! - `full` (cargo feature `full-decode`), a complete decode through `stun_codec`, used by
//!   the differential tests, the codec benchmark and the fuzz targets; the binary never
//!   builds it.
//!
//! [`encode::MessageWriter`] emits messages into a caller-provided buffer.

pub mod attr;
pub mod encode;
#[cfg(feature = "full-decode")]
pub mod full;
pub mod stream;
pub mod view;

use std::fmt;

use sha2::{Digest, Sha256};

pub use encode::MessageWriter;
pub use view::StunView;

/// The fixed magic cookie, RFC 8489 §5.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Size of the STUN header, RFC 8489 §5.
pub const HEADER_LEN: usize = 20;
/// XOR applied to the CRC-32 in FINGERPRINT, RFC 8489 §14.7.
pub const FINGERPRINT_XOR: u32 = 0x5354_554E;

/// The 96-bit transaction id, RFC 8489 §5. Chosen uniformly at random by the client (the caller
/// injects the randomness; this crate never draws it).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionId(pub [u8; 12]);

impl TransactionId {
    /// The id's bytes in wire order.
    pub fn as_bytes(&self) -> &[u8; 12] {
        &self.0
    }

    /// Read the transaction id from the header of a datagram without validating anything else.
    /// Used by demultiplexers before a full parse.
    pub fn peek(datagram: &[u8]) -> Option<Self> {
        let bytes: [u8; 12] = datagram.get(8..20)?.try_into().ok()?;
        Some(Self(bytes))
    }
}

impl fmt::Debug for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TransactionId(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// Where a probe's transaction ids come from: SHA-256 of a caller-supplied random seed and a
/// counter, cut to 96 bits. The caller draws the seed (this crate has no randomness), so ids
/// are unpredictable to anyone without it, as RFC 8489 §5 asks, and deterministic in tests. One
/// source serves a probe that needs many ids; [`TransactionIdSource::fork`] gives a part of a
/// probe a stream of its own.
#[derive(Clone)]
pub struct TransactionIdSource {
    seed: [u8; 16],
    counter: u64,
}

impl fmt::Debug for TransactionIdSource {
    /// The seed is left out: it would predict every id.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransactionIdSource")
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl TransactionIdSource {
    /// A source seeded with 128 random bits.
    pub fn new(seed: [u8; 16]) -> Self {
        Self { seed, counter: 0 }
    }

    /// The next id.
    pub fn next_id(&mut self) -> TransactionId {
        let mut h = Sha256::new();
        h.update(self.seed);
        h.update(self.counter.to_be_bytes());
        self.counter = self.counter.wrapping_add(1);
        let digest = h.finalize();
        let mut id = [0u8; 12];
        for (o, b) in id.iter_mut().zip(digest.iter()) {
            *o = *b;
        }
        TransactionId(id)
    }

    /// A second, independent source seeded from this one's next two ids.
    pub fn fork(&mut self) -> TransactionIdSource {
        let a = self.next_id().0;
        let b = self.next_id().0;
        let mut seed = [0u8; 16];
        for (s, x) in seed.iter_mut().zip(a.iter().chain(b.iter())) {
            *s = *x;
        }
        TransactionIdSource::new(seed)
    }
}

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Message class, RFC 8489 §5 (bits C1 and C0 of the message type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// 0b00
    Request,
    /// 0b01
    Indication,
    /// 0b10
    SuccessResponse,
    /// 0b11
    ErrorResponse,
}

impl Class {
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0,
            Class::Indication => 1,
            Class::SuccessResponse => 2,
            Class::ErrorResponse => 3,
        }
    }

    fn from_bits(bits: u16) -> Self {
        match bits & 3 {
            0 => Class::Request,
            1 => Class::Indication,
            2 => Class::SuccessResponse,
            _ => Class::ErrorResponse,
        }
    }
}

/// A 12-bit STUN method, RFC 8489 §5 and §18.2; TURN methods from RFC 8656 §17.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Method(pub u16);

impl Method {
    /// Binding, RFC 8489 §18.2.
    pub const BINDING: Method = Method(0x001);
    /// Allocate, RFC 8656 §17.
    pub const ALLOCATE: Method = Method(0x003);
    /// Refresh, RFC 8656 §17.
    pub const REFRESH: Method = Method(0x004);
    /// Send (indication only), RFC 8656 §17.
    pub const SEND: Method = Method(0x006);
    /// Data (indication only), RFC 8656 §17.
    pub const DATA: Method = Method(0x007);
    /// CreatePermission, RFC 8656 §17.
    pub const CREATE_PERMISSION: Method = Method(0x008);
    /// ChannelBind, RFC 8656 §17.
    pub const CHANNEL_BIND: Method = Method(0x009);
}

/// The 14-bit message type: class and method interleaved as RFC 8489 §5 Figure 3 draws it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MessageType {
    /// Request, indication, success or error.
    pub class: Class,
    /// The method (12 bits).
    pub method: Method,
}

impl MessageType {
    /// A Binding request.
    pub const BINDING_REQUEST: MessageType = MessageType::new(Class::Request, Method::BINDING);
    /// A Binding success response.
    pub const BINDING_SUCCESS: MessageType =
        MessageType::new(Class::SuccessResponse, Method::BINDING);
    /// A Binding error response.
    pub const BINDING_ERROR: MessageType = MessageType::new(Class::ErrorResponse, Method::BINDING);

    /// Combine a class and method.
    pub const fn new(class: Class, method: Method) -> Self {
        Self { class, method }
    }

    /// The 16-bit wire value (the top two bits are zero), RFC 8489 §5.
    pub fn to_u16(self) -> u16 {
        let m = self.method.0 & 0x0FFF;
        let c = self.class.bits();
        (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 1) << 4) | ((c & 2) << 7)
    }

    /// Split a 16-bit wire value; the top two bits are ignored (the header check rejects them).
    pub fn from_u16(t: u16) -> Self {
        let method = (t & 0x000F) | ((t & 0x00E0) >> 1) | ((t & 0x3E00) >> 2);
        let class = ((t >> 4) & 1) | ((t >> 7) & 2);
        Self {
            class: Class::from_bits(class),
            method: Method(method),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_ids_are_deterministic_distinct_and_fork_apart() {
        let mut a = TransactionIdSource::new([1; 16]);
        let mut b = TransactionIdSource::new([1; 16]);
        let x = a.next_id();
        assert_eq!(x, b.next_id());
        assert_ne!(x, a.next_id());
        assert_ne!(TransactionIdSource::new([2; 16]).next_id(), x);
        let mut fork = a.fork();
        let (f, n) = (fork.next_id(), a.next_id());
        assert_ne!(f, n);
        assert!(!format!("{a:?}").contains("seed"), "the seed is not shown");
    }

    #[test]
    fn message_type_round_trips_for_every_value() {
        for t in 0u16..0x4000 {
            assert_eq!(MessageType::from_u16(t).to_u16(), t, "type {t:#06x}");
        }
    }

    #[test]
    fn well_known_types_have_rfc_values() {
        assert_eq!(MessageType::BINDING_REQUEST.to_u16(), 0x0001);
        assert_eq!(MessageType::BINDING_SUCCESS.to_u16(), 0x0101);
        assert_eq!(MessageType::BINDING_ERROR.to_u16(), 0x0111);
        assert_eq!(
            MessageType::new(Class::Request, Method::ALLOCATE).to_u16(),
            0x0003
        );
        assert_eq!(
            MessageType::new(Class::Indication, Method::DATA).to_u16(),
            0x0017
        );
    }

    #[test]
    fn peek_needs_a_full_header() {
        assert_eq!(TransactionId::peek(&[0; 19]), None);
        let mut d = [0u8; 20];
        d[8..20].copy_from_slice(&[7; 12]);
        assert_eq!(TransactionId::peek(&d), Some(TransactionId([7; 12])));
    }
}
