//! STUN message encoder: writes a header and attributes into a caller-provided buffer, keeping
//! the header's length field true after every attribute (RFC 8489 §5, §14).

use std::net::SocketAddr;

use super::attr::{self, ChangeRequest};
use super::{FINGERPRINT_XOR, HEADER_LEN, MAGIC_COOKIE, MessageType, TransactionId};

/// Appends one STUN message to a `Vec<u8>`. Anything already in the vector is left alone, so
/// several messages can be built back to back in one buffer.
#[derive(Debug)]
pub struct MessageWriter<'b> {
    buf: &'b mut Vec<u8>,
    start: usize,
}

impl<'b> MessageWriter<'b> {
    /// Start a message: the 20-byte header with length 0, RFC 8489 §5.
    pub fn new(buf: &'b mut Vec<u8>, ty: MessageType, tid: &TransactionId) -> Self {
        let start = buf.len();
        buf.extend_from_slice(&ty.to_u16().to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(tid.as_bytes());
        Self { buf, start }
    }

    /// Bytes written so far for this message.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether only the header has been written.
    pub fn is_empty(&self) -> bool {
        self.len() == HEADER_LEN
    }

    fn set_length(&mut self) {
        let body = (self.len() - HEADER_LEN).min(usize::from(u16::MAX)) as u16;
        if let Some(field) = self.buf.get_mut(self.start + 2..self.start + 4) {
            field.copy_from_slice(&body.to_be_bytes());
        }
    }

    /// Append an attribute with its padding to a 4-byte boundary (RFC 8489 §14). A value longer
    /// than 65535 bytes is truncated to fit the 16-bit length field.
    pub fn attr(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        let value = value.get(..usize::from(u16::MAX)).unwrap_or(value);
        self.buf.extend_from_slice(&kind.to_be_bytes());
        self.buf
            .extend_from_slice(&(value.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(value);
        let pad = (4 - value.len() % 4) % 4;
        self.buf.resize(self.buf.len() + pad, 0);
        self.set_length();
        self
    }

    fn attr_with(&mut self, kind: u16, len: usize, fill: impl FnOnce(&mut [u8])) -> &mut Self {
        self.buf.extend_from_slice(&kind.to_be_bytes());
        self.buf.extend_from_slice(&(len as u16).to_be_bytes());
        let at = self.buf.len();
        self.buf.resize(at + ((len + 3) & !3), 0);
        if let Some(slot) = self.buf.get_mut(at..at + len) {
            fill(slot);
        }
        self.set_length();
        self
    }

    /// A MAPPED-ADDRESS-style attribute (MAPPED-ADDRESS, OTHER-ADDRESS, RESPONSE-ORIGIN),
    /// RFC 8489 §14.1, RFC 5780 §7.3–7.4.
    pub fn address(&mut self, kind: u16, addr: &SocketAddr) -> &mut Self {
        self.attr_with(kind, attr::address_len(addr), |out| {
            attr::write_address(out, addr)
        })
    }

    /// An XOR-MAPPED-ADDRESS-style attribute (XOR-MAPPED-ADDRESS, XOR-PEER-ADDRESS,
    /// XOR-RELAYED-ADDRESS), RFC 8489 §14.2, RFC 8656 §18.3, §18.5.
    pub fn xor_address(&mut self, kind: u16, addr: &SocketAddr) -> &mut Self {
        let tid = self.transaction_id();
        let x = attr::xor_address(*addr, &tid);
        self.address(kind, &x)
    }

    /// SOFTWARE, RFC 8489 §14.14 (fewer than 128 characters; longer text is cut at a character
    /// boundary).
    pub fn software(&mut self, text: &str) -> &mut Self {
        let cut = text.char_indices().nth(127).map_or(text.len(), |(i, _)| i);
        let text = text.get(..cut).unwrap_or(text);
        self.attr(attr::SOFTWARE, text.as_bytes())
    }

    /// CHANGE-REQUEST, RFC 5780 §7.2.
    pub fn change_request(&mut self, change: ChangeRequest) -> &mut Self {
        self.attr(attr::CHANGE_REQUEST, &change.to_u32().to_be_bytes())
    }

    /// RESPONSE-PORT, RFC 5780 §7.5.
    pub fn response_port(&mut self, port: u16) -> &mut Self {
        self.attr(attr::RESPONSE_PORT, &attr::encode_response_port(port))
    }

    /// A 32-bit attribute such as LIFETIME (RFC 8656 §18.2).
    pub fn u32_attr(&mut self, kind: u16, value: u32) -> &mut Self {
        self.attr(kind, &value.to_be_bytes())
    }

    /// ERROR-CODE, RFC 8489 §14.8. `code` must be 300–699; others are clamped into that range.
    pub fn error_code(&mut self, code: u16, reason: &str) -> &mut Self {
        let code = code.clamp(300, 699);
        let mut value = Vec::with_capacity(4 + reason.len());
        value.extend_from_slice(&[0, 0, (code / 100) as u8, (code % 100) as u8]);
        value.extend_from_slice(reason.as_bytes());
        self.attr(attr::ERROR_CODE, &value)
    }

    /// FINGERPRINT, RFC 8489 §14.7: the length field first counts the FINGERPRINT attribute,
    /// then the CRC-32 of everything before it is XORed with 0x5354554E.
    pub fn fingerprint(&mut self) -> &mut Self {
        let before = self.buf.len();
        self.buf.extend_from_slice(&attr::FINGERPRINT.to_be_bytes());
        self.buf.extend_from_slice(&4u16.to_be_bytes());
        self.buf.extend_from_slice(&[0; 4]);
        self.set_length();
        let crc = self
            .buf
            .get(self.start..before)
            .map_or(0, |covered| crc32fast::hash(covered) ^ FINGERPRINT_XOR);
        if let Some(v) = self.buf.get_mut(before + 4..before + 8) {
            v.copy_from_slice(&crc.to_be_bytes());
        }
        self
    }

    /// Append an attribute of `len` bytes whose value is computed over the message before it,
    /// with the header's length field already counting the new attribute: the rule of
    /// MESSAGE-INTEGRITY (RFC 8489 §14.5) and MESSAGE-INTEGRITY-SHA256 (§14.6). `compute`
    /// returns the value; it is cut or zero-padded to `len`.
    pub fn attr_over_message(
        &mut self,
        kind: u16,
        len: usize,
        compute: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> &mut Self {
        let before = self.buf.len();
        self.attr_with(kind, len, |_| {});
        let value = self
            .buf
            .get(self.start..before)
            .map(compute)
            .unwrap_or_default();
        if let Some(slot) = self.buf.get_mut(before + 4..before + 4 + len) {
            for (o, v) in slot
                .iter_mut()
                .zip(value.iter().chain(std::iter::repeat(&0)))
            {
                *o = *v;
            }
        }
        self
    }

    /// The message's transaction id.
    pub fn transaction_id(&self) -> TransactionId {
        self.buf
            .get(self.start..)
            .and_then(TransactionId::peek)
            .unwrap_or(TransactionId([0; 12]))
    }

    /// The bytes of this message written so far.
    pub fn bytes(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or(&[])
    }

    /// Finish the message and return its length in bytes.
    pub fn finish(self) -> usize {
        self.len()
    }
}

/// The Binding request stunmap sends, RFC 8489 §6.1 and §14: SOFTWARE, optional CHANGE-REQUEST
/// (RFC 5780 §7.2), optional RESPONSE-PORT (RFC 5780 §7.5), FINGERPRINT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindingRequest<'s> {
    /// The transaction id (random, supplied by the caller).
    pub transaction_id: TransactionId,
    /// SOFTWARE text; `None` leaves the attribute out.
    pub software: Option<&'s str>,
    /// CHANGE-REQUEST flags; `None` leaves the attribute out.
    pub change_request: Option<ChangeRequest>,
    /// RESPONSE-PORT; `None` leaves the attribute out. A server that supports it answers to
    /// this port on the request's source IP (the binding-lifetime test, RFC 5780 §4.6).
    pub response_port: Option<u16>,
    /// Whether to append FINGERPRINT.
    pub fingerprint: bool,
}

impl BindingRequest<'_> {
    /// Append the encoded request to `buf`; returns its length.
    pub fn encode(&self, buf: &mut Vec<u8>) -> usize {
        let mut w = MessageWriter::new(buf, MessageType::BINDING_REQUEST, &self.transaction_id);
        if let Some(s) = self.software {
            w.software(s);
        }
        if let Some(c) = self.change_request {
            w.change_request(c);
        }
        if let Some(p) = self.response_port {
            w.response_port(p);
        }
        if self.fingerprint {
            w.fingerprint();
        }
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::view::{Fingerprint, StunView};

    #[test]
    fn binding_request_layout() {
        let req = BindingRequest {
            transaction_id: TransactionId([0xAB; 12]),
            software: Some("stunmap"),
            change_request: Some(ChangeRequest {
                change_ip: true,
                change_port: false,
            }),
            response_port: None,
            fingerprint: true,
        };
        let mut buf = vec![0xEE; 3];
        let n = req.encode(&mut buf);
        assert_eq!(buf.len(), 3 + n);
        let msg = &buf[3..];
        // header 20 + SOFTWARE 4+8 + CHANGE-REQUEST 4+4 + FINGERPRINT 4+4
        assert_eq!(n, 48);
        assert_eq!(&msg[..2], &[0x00, 0x01]);
        assert_eq!(u16::from_be_bytes([msg[2], msg[3]]), 28);
        let v = StunView::parse(msg).unwrap();
        assert_eq!(v.fingerprint(), Fingerprint::Valid);
        let attrs: Vec<_> = v.attributes().map(|(k, _)| k).collect();
        assert_eq!(
            attrs,
            vec![attr::SOFTWARE, attr::CHANGE_REQUEST, attr::FINGERPRINT]
        );
        let (_, cr) = v.attributes().nth(1).unwrap();
        assert_eq!(ChangeRequest::from_value(cr), req.change_request);
    }

    #[test]
    fn response_port_is_a_padded_16_bit_value() {
        let req = BindingRequest {
            transaction_id: TransactionId([1; 12]),
            software: None,
            change_request: None,
            response_port: Some(0xBEEF),
            fingerprint: false,
        };
        let mut buf = Vec::new();
        assert_eq!(req.encode(&mut buf), 28);
        let v = StunView::parse(&buf).unwrap();
        let (kind, value) = v.attributes().next().unwrap();
        assert_eq!(kind, attr::RESPONSE_PORT);
        assert_eq!(value, &[0xBE, 0xEF, 0, 0]);
        assert_eq!(v.response_port(), Some(Some(0xBEEF)));
        assert_eq!(attr::decode_response_port(&[1, 2, 3]), None);
    }

    #[test]
    fn software_is_cut_at_127_characters() {
        let long = "é".repeat(200);
        let mut buf = Vec::new();
        let mut w = MessageWriter::new(
            &mut buf,
            MessageType::BINDING_REQUEST,
            &TransactionId([0; 12]),
        );
        w.software(&long);
        let n = w.finish();
        let v = StunView::parse(&buf[..n]).unwrap();
        assert_eq!(
            std::str::from_utf8(v.software().unwrap())
                .unwrap()
                .chars()
                .count(),
            127
        );
    }

    #[test]
    fn error_code_round_trip() {
        let mut buf = Vec::new();
        let mut w = MessageWriter::new(
            &mut buf,
            MessageType::BINDING_ERROR,
            &TransactionId([0; 12]),
        );
        w.error_code(420, "Unknown Attribute");
        w.finish();
        let v = StunView::parse(&buf).unwrap();
        let e = v.error_code().unwrap().unwrap();
        assert_eq!(e.code, 420);
        assert_eq!(e.reason, b"Unknown Attribute");
    }
}
