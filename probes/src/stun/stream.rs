//! STUN over a byte stream (TCP/TLS), RFC 8489 §6.2.2: messages follow each other with no
//! extra framing; each one's length comes from its 20-byte header. [`StunStream`] reassembles
//! them from arbitrary chunks, with a hard cap on buffered bytes.

use super::view::{ParseError, check_header};
use super::{HEADER_LEN, MAGIC_COOKIE};

/// Why the stream cannot continue (the connection should be closed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The bytes at a message boundary are not a STUN header (top bits, cookie, or length).
    #[error("stream is not STUN: {0}")]
    NotStun(ParseError),
}

/// Reassembles STUN messages from a byte stream.
#[derive(Debug, Default)]
pub struct StunStream {
    buf: Vec<u8>,
}

impl StunStream {
    /// An empty reassembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes held that do not yet form a whole message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Append bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Take the next complete message, if one is buffered. Memory stays bounded: a header is
    /// checked as soon as 20 bytes are there, and no message exceeds 20 + 65532 bytes.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, StreamError> {
        let Some(header) = self.buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let [t0, _, l0, l1, c0, c1, c2, c3, ..] = *header;
        if t0 & 0xC0 != 0 {
            return Err(StreamError::NotStun(ParseError::NotStun));
        }
        let cookie = u32::from_be_bytes([c0, c1, c2, c3]);
        if cookie != MAGIC_COOKIE {
            return Err(StreamError::NotStun(ParseError::BadCookie(cookie)));
        }
        let len = u16::from_be_bytes([l0, l1]);
        if len % 4 != 0 {
            return Err(StreamError::NotStun(ParseError::UnalignedLength(len)));
        }
        let total = HEADER_LEN + usize::from(len);
        if self.buf.len() < total {
            return Ok(None);
        }
        let rest = self.buf.split_off(total);
        let msg = std::mem::replace(&mut self.buf, rest);
        debug_assert!(check_header(&msg).is_ok());
        Ok(Some(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::{MessageType, MessageWriter, TransactionId};

    fn msg(n: u8) -> Vec<u8> {
        let mut b = Vec::new();
        let mut w = MessageWriter::new(
            &mut b,
            MessageType::BINDING_REQUEST,
            &TransactionId([n; 12]),
        );
        w.software("x");
        w.fingerprint();
        b
    }

    #[test]
    fn reassembles_across_every_split() {
        let mut wire = msg(1);
        wire.extend(msg(2));
        for cut in 0..=wire.len() {
            let mut s = StunStream::new();
            let mut out = Vec::new();
            for part in [&wire[..cut], &wire[cut..]] {
                s.push(part);
                while let Some(m) = s.next_message().unwrap() {
                    out.push(m);
                }
            }
            assert_eq!(out, vec![msg(1), msg(2)], "cut at {cut}");
            assert_eq!(s.buffered(), 0);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_wait() {
        let mut s = StunStream::new();
        s.push(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(s.next_message().is_err());
    }
}
