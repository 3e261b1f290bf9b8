//! STUN over a byte stream (TCP/TLS), RFC 8489 §6.2.2: messages follow each other with no
//! extra framing; each one's length comes from its 20-byte header. [`StunStream`] reassembles
//! them from arbitrary chunks, with a hard cap on buffered bytes. It is also the buffer under
//! the TURN stream framer ([`StreamFramer`](crate::turn::channel::StreamFramer)), which adds
//! ChannelData to the same stream (RFC 8656 §12.5), so both share one error type,
//! [`FrameError`].

use super::HEADER_LEN;
use super::view::{ParseError, declared_length};

/// Why a stream cannot be framed any further (the connection should be closed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The bytes at a message boundary are not a STUN header (top bits, magic cookie, or a
    /// length that is not a multiple of 4; RFC 8489 §6.2.2, §6.3).
    #[error("stream is not STUN: {reason}")]
    NotStun {
        /// What was wrong with the header.
        reason: ParseError,
    },
    /// On a TURN stream, the first two bits at a message boundary were 10 or 11: neither STUN
    /// nor ChannelData (RFC 8656 §12).
    #[error("stream byte {byte:#04x} at a message boundary is neither STUN nor ChannelData")]
    UnknownFrame {
        /// The byte.
        byte: u8,
    },
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
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let Some(header) = self.buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let len = declared_length(header).map_err(|reason| FrameError::NotStun { reason })?;
        let total = HEADER_LEN + usize::from(len);
        Ok(self.take(total, total))
    }

    /// The first `N` buffered bytes, once there are that many.
    pub(crate) fn head<const N: usize>(&self) -> Option<&[u8; N]> {
        self.buf.first_chunk::<N>()
    }

    /// Remove `total` bytes when buffered and return the first `keep` of them (the rest is
    /// padding).
    pub(crate) fn take(&mut self, total: usize, keep: usize) -> Option<Vec<u8>> {
        if self.buf.len() < total {
            return None;
        }
        let rest = self.buf.split_off(total);
        let mut frame = std::mem::replace(&mut self.buf, rest);
        frame.truncate(keep);
        Some(frame)
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
        assert_eq!(
            s.next_message(),
            Err(FrameError::NotStun {
                reason: ParseError::NotStun
            })
        );
        let mut s = StunStream::new();
        s.push(&[
            0, 1, 0, 2, 0x21, 0x12, 0xA4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        assert_eq!(
            s.next_message(),
            Err(FrameError::NotStun {
                reason: ParseError::UnalignedLength { length: 2 }
            })
        );
    }
}
