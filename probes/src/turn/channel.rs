//! The TURN data plane: ChannelData messages (RFC 8656 §12.4), Send and Data indications
//! (RFC 8656 §11), and the framing of STUN messages and ChannelData on a byte stream
//! (RFC 8656 §12.5, RFC 6062 §2: over TCP and TLS each ChannelData message is padded to a
//! multiple of four bytes, and the length field does not count the padding).

use std::net::SocketAddr;

use crate::stun::attr;
use crate::stun::stream::{FrameError, StunStream};
use crate::stun::view::StunView;
use crate::stun::{Class, MessageType, MessageWriter, Method, TransactionId};

/// The first channel number a client may bind, RFC 8656 §12.
pub const CHANNEL_MIN: u16 = 0x4000;
/// The last channel number a client may bind, RFC 8656 §12.
pub const CHANNEL_MAX: u16 = 0x4FFF;

/// A ChannelData message, RFC 8656 §12.4: 2-byte channel number, 2-byte length, data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelData<'a> {
    /// The channel number (0x4000–0x4FFF).
    pub channel: u16,
    /// The application data.
    pub data: &'a [u8],
}

impl<'a> ChannelData<'a> {
    /// Parse a ChannelData message. The first two bits must be 01 (RFC 8656 §12: channel
    /// numbers 0x4000–0x4FFF; the rest of the 0x4000–0x7FFF range is reserved and rejected),
    /// the length must fit, and at most 3 bytes of padding may follow (RFC 8656 §12.5: padding
    /// is mandatory on streams and allowed over UDP).
    pub fn parse(buf: &'a [u8]) -> Option<Self> {
        let (&[c0, c1, l0, l1], rest) = buf.split_first_chunk::<4>()?;
        let channel = u16::from_be_bytes([c0, c1]);
        if !(CHANNEL_MIN..=CHANNEL_MAX).contains(&channel) {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        let data = rest.get(..len)?;
        if rest.len() - len > 3 {
            return None;
        }
        Some(Self { channel, data })
    }

    /// Append the message to `buf`; `pad` adds zero bytes up to a multiple of four (required on
    /// TCP/TLS, RFC 8656 §12.5). Data longer than 65535 bytes is cut.
    pub fn encode(channel: u16, data: &[u8], pad: bool, buf: &mut Vec<u8>) {
        let data = data.get(..usize::from(u16::MAX)).unwrap_or(data);
        buf.extend_from_slice(&channel.to_be_bytes());
        buf.extend_from_slice(&(data.len() as u16).to_be_bytes());
        buf.extend_from_slice(data);
        if pad {
            buf.resize(buf.len() + (4 - data.len() % 4) % 4, 0);
        }
    }
}

/// Append a Send indication, RFC 8656 §11.2: XOR-PEER-ADDRESS and DATA (indications are not
/// authenticated, RFC 8656 §11.1), with FINGERPRINT.
pub fn encode_send_indication(
    tid: &TransactionId,
    peer: &SocketAddr,
    data: &[u8],
    buf: &mut Vec<u8>,
) {
    let mut w = MessageWriter::new(buf, MessageType::new(Class::Indication, Method::SEND), tid);
    w.xor_address(attr::XOR_PEER_ADDRESS, peer);
    w.attr(attr::DATA, data);
    w.fingerprint();
    w.finish();
}

/// A Data indication, RFC 8656 §11.4: the peer it came from and the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataIndication<'a> {
    /// XOR-PEER-ADDRESS.
    pub peer: SocketAddr,
    /// DATA.
    pub data: &'a [u8],
}

impl<'a> DataIndication<'a> {
    /// Read a Data indication from a parsed message; `None` if it is something else or lacks
    /// either attribute (RFC 8656 §11.6: such an indication is discarded).
    pub fn from_view(view: &StunView<'a>) -> Option<Self> {
        let ty = view.message_type();
        if ty.class != Class::Indication || ty.method != Method::DATA {
            return None;
        }
        let tid = view.transaction_id();
        let mut peer = None;
        let mut data = None;
        for (kind, value) in view.attributes() {
            match kind {
                attr::XOR_PEER_ADDRESS if peer.is_none() => {
                    peer = attr::decode_xor_address(value, &tid).ok();
                }
                attr::DATA if data.is_none() => data = Some(value),
                _ => {}
            }
        }
        Some(Self {
            peer: peer?,
            data: data?,
        })
    }
}

/// What a stream carried, one message at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete STUN message.
    Stun(Vec<u8>),
    /// A ChannelData message, without its stream padding.
    ChannelData(Vec<u8>),
}

impl Frame {
    /// The frame's bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Frame::Stun(b) | Frame::ChannelData(b) => b,
        }
    }
}

/// Splits a TURN byte stream (TCP or TLS) into STUN messages and ChannelData messages by their
/// first two bits (RFC 8656 §12): 00 is STUN (length from the header, RFC 8489 §6.2.2, read by
/// the [`StunStream`] underneath), 01 is ChannelData (length field plus padding to four bytes,
/// RFC 8656 §12.5). Memory is bounded by one message plus one read.
#[derive(Debug, Default)]
pub struct StreamFramer {
    stream: StunStream,
}

impl StreamFramer {
    /// An empty framer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes held that do not form a whole frame yet.
    pub fn buffered(&self) -> usize {
        self.stream.buffered()
    }

    /// Append bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.stream.push(bytes);
    }

    /// The next complete frame, if buffered.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let Some(&[first]) = self.stream.head::<1>() else {
            return Ok(None);
        };
        match first >> 6 {
            0 => Ok(self.stream.next_message()?.map(Frame::Stun)),
            1 => {
                let Some(&[_, _, l0, l1]) = self.stream.head::<4>() else {
                    return Ok(None);
                };
                let len = 4 + usize::from(u16::from_be_bytes([l0, l1]));
                let padded = (len + 3) & !3;
                Ok(self.stream.take(padded, len).map(Frame::ChannelData))
            }
            _ => Err(FrameError::UnknownFrame { byte: first }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_data_round_trip_with_and_without_padding() {
        for pad in [false, true] {
            for n in 0..9 {
                let data: Vec<u8> = (0..n).collect();
                let mut buf = Vec::new();
                ChannelData::encode(0x4001, &data, pad, &mut buf);
                if pad {
                    assert_eq!(buf.len() % 4, 0);
                } else {
                    assert_eq!(buf.len(), 4 + data.len());
                }
                let cd = ChannelData::parse(&buf).unwrap();
                assert_eq!(cd.channel, 0x4001);
                assert_eq!(cd.data, &data[..]);
            }
        }
    }

    #[test]
    fn channel_data_rejects_bad_numbers_and_lengths() {
        assert_eq!(ChannelData::parse(&[0x40, 0, 0]), None);
        assert_eq!(ChannelData::parse(&[0x3F, 0xFF, 0, 0]), None);
        assert_eq!(ChannelData::parse(&[0x50, 0x00, 0, 0]), None);
        assert_eq!(ChannelData::parse(&[0x40, 0x00, 0, 2, 1]), None);
        assert_eq!(ChannelData::parse(&[0x40, 0x00, 0, 1, 1, 0, 0, 0, 0]), None);
        assert!(ChannelData::parse(&[0x40, 0x00, 0, 1, 1, 0, 0, 0]).is_some());
    }

    #[test]
    fn send_indication_reads_back_as_data_indication_fields() {
        let peer: SocketAddr = "198.51.100.1:5000".parse().unwrap();
        let tid = TransactionId([4; 12]);
        let mut buf = Vec::new();
        encode_send_indication(&tid, &peer, b"hello", &mut buf);
        // Rewrite the method to DATA to read it back with the Data indication parser.
        let ty = MessageType::new(Class::Indication, Method::DATA)
            .to_u16()
            .to_be_bytes();
        buf[..2].copy_from_slice(&ty);
        let v = StunView::parse(&buf).unwrap();
        let d = DataIndication::from_view(&v).unwrap();
        assert_eq!(d.peer, peer);
        assert_eq!(d.data, b"hello");
    }

    #[test]
    fn framer_splits_mixed_stream_at_every_cut() {
        let mut stun = Vec::new();
        let mut w = MessageWriter::new(
            &mut stun,
            MessageType::BINDING_REQUEST,
            &TransactionId([1; 12]),
        );
        w.software("abc");
        w.finish();
        let mut cd = Vec::new();
        ChannelData::encode(0x4000, b"hello", true, &mut cd);
        let mut wire = stun.clone();
        wire.extend(&cd);
        wire.extend(&stun);
        for cut in 0..=wire.len() {
            let mut f = StreamFramer::new();
            let mut out = Vec::new();
            for part in [&wire[..cut], &wire[cut..]] {
                f.push(part);
                while let Some(fr) = f.next_frame().unwrap() {
                    out.push(fr);
                }
            }
            assert_eq!(
                out,
                vec![
                    Frame::Stun(stun.clone()),
                    Frame::ChannelData(cd[..9].to_vec()),
                    Frame::Stun(stun.clone())
                ],
                "cut {cut}"
            );
            assert_eq!(f.buffered(), 0);
        }
    }

    #[test]
    fn framer_rejects_garbage() {
        let mut f = StreamFramer::new();
        f.push(&[0x80, 1, 2, 3]);
        assert_eq!(f.next_frame(), Err(FrameError::UnknownFrame { byte: 0x80 }));
        let mut f = StreamFramer::new();
        f.push(b"\x00\x01\x00\x00GET / HTTP/1.1\r\n");
        assert!(matches!(
            f.next_frame(),
            Err(FrameError::NotStun {
                reason: crate::stun::view::ParseError::BadCookie { .. }
            })
        ));
    }
}
