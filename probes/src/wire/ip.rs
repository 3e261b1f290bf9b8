//! IPv4, TCP and ICMP as the raw SYN sweep writes and reads them, on `pnet_packet`'s views.
//!
//! - [`TcpSegmentRepr`]: an IPv4 packet (RFC 791 §3.1) carrying a TCP header without options
//!   (RFC 9293 §3.1): parsed from what a raw socket delivers (a SYN-ACK or RST, options
//!   skipped), emitted as the 40-byte SYN the sweep sends on a header-included socket.
//! - [`IcmpUnreachableRepr`]: an ICMP destination unreachable (RFC 792) with the datagram it
//!   quotes (the original IPv4 header and the first 8 bytes of its payload, which hold the
//!   TCP ports and sequence number).
//!
//! [`Ipv4View::new_checked`] is the one place untrusted bytes are checked: version 4, a
//! header length of at least 5 words that fits the bytes, and a total length that covers the
//! header. What follows reads only checked ranges. A raw socket may deliver fewer bytes than
//! the total length says (a snap length, or an ICMP quote cut after 8 bytes): the payload is
//! what is there, up to the total length.

use std::net::Ipv4Addr;

use pnet_packet::ip::IpNextHeaderProtocol;
use pnet_packet::ipv4::{Ipv4Packet, MutableIpv4Packet};
use pnet_packet::tcp::{MutableTcpPacket, TcpPacket};

use super::{Layer, WireError};

/// The IP protocol number of TCP, RFC 9293 §3.1 (IANA "Assigned Internet Protocol Numbers").
pub const PROTO_TCP: u8 = 6;
/// The IP protocol number of ICMP, RFC 792.
pub const PROTO_ICMP: u8 = 1;
/// ICMP type 3, destination unreachable (RFC 792).
pub const ICMP_DEST_UNREACHABLE: u8 = 3;
/// Destination unreachable code 3, port unreachable (RFC 792).
pub const ICMP_PORT_UNREACHABLE: u8 = 3;
/// The ICMP header before a quoted datagram: type, code, checksum and 4 unused (or
/// next-hop MTU) bytes, RFC 792.
const ICMP_HEADER: usize = 8;
/// The length of an IPv4 header without options, RFC 791 §3.1.
pub const IPV4_HEADER: usize = 20;
/// The length of a TCP header without options, RFC 9293 §3.1.
pub const TCP_HEADER: usize = 20;

/// TCP control bits, RFC 9293 §3.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;

    /// Whether every bit of `bits` is set.
    pub fn has(self, bits: u8) -> bool {
        self.0 & bits == bits
    }

    /// SYN and ACK: the answer of an open port.
    pub fn is_syn_ack(self) -> bool {
        self.has(Self::SYN | Self::ACK)
    }

    /// RST: the answer of a closed port (or of a device that injects it).
    pub fn is_rst(self) -> bool {
        self.has(Self::RST)
    }
}

/// A checked IPv4 packet, RFC 791 §3.1.
#[derive(Debug)]
pub struct Ipv4View<'a> {
    packet: Ipv4Packet<'a>,
    payload: &'a [u8],
}

impl<'a> Ipv4View<'a> {
    /// Check `bytes` as an IPv4 packet: version 4, IHL ≥ 5 and within the bytes, total
    /// length ≥ IHL. The payload is the bytes after the header, up to the total length.
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, WireError> {
        let truncated = WireError::Truncated {
            layer: Layer::Ipv4,
            len: bytes.len(),
        };
        let packet = Ipv4Packet::new(bytes).ok_or(truncated.clone())?;
        if packet.get_version() != 4 {
            return Err(WireError::Version {
                layer: Layer::Ipv4,
                version: packet.get_version(),
            });
        }
        let ihl = usize::from(packet.get_header_length()) * 4;
        if ihl < IPV4_HEADER {
            return Err(WireError::Length {
                layer: Layer::Ipv4,
                len: ihl,
            });
        }
        let total = usize::from(packet.get_total_length());
        if total < ihl {
            return Err(WireError::Length {
                layer: Layer::Ipv4,
                len: total,
            });
        }
        let end = total.min(bytes.len());
        let payload = bytes.get(ihl..end).ok_or(truncated)?;
        Ok(Self { packet, payload })
    }

    /// Source address.
    pub fn src(&self) -> Ipv4Addr {
        self.packet.get_source()
    }

    /// Destination address.
    pub fn dst(&self) -> Ipv4Addr {
        self.packet.get_destination()
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.packet.get_ttl()
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        self.packet.get_identification()
    }

    /// Protocol (RFC 791 §3.1 "Protocol").
    pub fn protocol(&self) -> u8 {
        self.packet.get_next_level_protocol().0
    }

    /// The bytes after the header (as many of the total length as are there).
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    fn expect_protocol(&self, proto: u8) -> Result<(), WireError> {
        if self.protocol() == proto {
            Ok(())
        } else {
            Err(WireError::Unexpected {
                layer: Layer::Ipv4,
                field: "protocol",
                value: u32::from(self.protocol()),
            })
        }
    }
}

/// A TCP segment without options in an IPv4 packet: the SYN the sweep sends, and the fields
/// of the SYN-ACK or RST it reads back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSegmentRepr {
    /// IPv4 source.
    pub src: Ipv4Addr,
    /// IPv4 destination.
    pub dst: Ipv4Addr,
    /// IPv4 time to live.
    pub ttl: u8,
    /// IPv4 identification (0 on emit: the kernel fills it in).
    pub ip_id: u16,
    /// TCP source port.
    pub sport: u16,
    /// TCP destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Control bits.
    pub flags: TcpFlags,
    /// Receive window.
    pub window: u16,
}

impl TcpSegmentRepr {
    /// The bytes [`TcpSegmentRepr::emit`] writes: IPv4 and TCP headers without options.
    pub const LEN: usize = IPV4_HEADER + TCP_HEADER;

    /// The sweep's SYN from `src:sport` to `dst:dport` with sequence number `seq` (TTL 64,
    /// window 1024, no options).
    pub fn syn(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, seq: u32) -> Self {
        Self {
            src,
            dst,
            ttl: 64,
            ip_id: 0,
            sport,
            dport,
            seq,
            ack: 0,
            flags: TcpFlags(TcpFlags::SYN),
            window: 1024,
        }
    }

    /// Read an IPv4 packet carrying TCP (options, if any, skipped).
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let ip = Ipv4View::new_checked(bytes)?;
        ip.expect_protocol(PROTO_TCP)?;
        let payload = ip.payload();
        let tcp = TcpPacket::new(payload).ok_or(WireError::Truncated {
            layer: Layer::Tcp,
            len: payload.len(),
        })?;
        let offset = usize::from(tcp.get_data_offset()) * 4;
        if offset < TCP_HEADER {
            return Err(WireError::Length {
                layer: Layer::Tcp,
                len: offset,
            });
        }
        Ok(Self {
            src: ip.src(),
            dst: ip.dst(),
            ttl: ip.ttl(),
            ip_id: ip.ident(),
            sport: tcp.get_source(),
            dport: tcp.get_destination(),
            seq: tcp.get_sequence(),
            ack: tcp.get_acknowledgement(),
            flags: TcpFlags(tcp.get_flags()),
            window: tcp.get_window(),
        })
    }

    /// Write the packet into `buf`: the IPv4 header with its checksum (a header-included raw
    /// socket recomputes it, and the identification when it is 0) and the TCP header with
    /// its checksum over the IPv4 pseudo-header (RFC 9293 §3.1).
    pub fn emit(&self, buf: &mut [u8; Self::LEN]) {
        buf.fill(0);
        let (ip_bytes, tcp_bytes) = buf.split_at_mut(IPV4_HEADER);
        // INVARIANT: both halves are exactly one header long, the minimum the views need.
        if let Some(mut tcp) = MutableTcpPacket::new(tcp_bytes) {
            tcp.set_source(self.sport);
            tcp.set_destination(self.dport);
            tcp.set_sequence(self.seq);
            tcp.set_acknowledgement(self.ack);
            tcp.set_data_offset(5);
            tcp.set_flags(self.flags.0);
            tcp.set_window(self.window);
            let sum = pnet_packet::tcp::ipv4_checksum(&tcp.to_immutable(), &self.src, &self.dst);
            tcp.set_checksum(sum);
        }
        emit_ipv4_header(
            ip_bytes,
            Self::LEN,
            PROTO_TCP,
            self.ip_id,
            self.ttl,
            self.src,
            self.dst,
        );
    }

    /// [`TcpSegmentRepr::emit`] into a new array.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        self.emit(&mut b);
        b
    }
}

/// Whether the TCP checksum of an IPv4 packet carrying TCP verifies (RFC 9293 §3.1; the
/// segment must be whole).
pub fn tcp_checksum_ok(bytes: &[u8]) -> bool {
    let Ok(ip) = Ipv4View::new_checked(bytes) else {
        return false;
    };
    let Some(tcp) = TcpPacket::new(ip.payload()) else {
        return false;
    };
    pnet_packet::tcp::ipv4_checksum(&tcp, &ip.src(), &ip.dst()) == tcp.get_checksum()
}

/// The part of a TCP segment an ICMP error quotes: the original IPv4 header's addresses and
/// the first 8 bytes of TCP (ports and sequence number), RFC 792.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotedTcp {
    /// The quoted packet's source.
    pub src: Ipv4Addr,
    /// The quoted packet's destination.
    pub dst: Ipv4Addr,
    /// TCP source port.
    pub sport: u16,
    /// TCP destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
}

impl QuotedTcp {
    /// The bytes a quote takes when it carries an IPv4 header without options.
    pub const LEN: usize = IPV4_HEADER + 8;

    /// Read a quoted IPv4 header and the first 8 bytes of its TCP segment.
    pub fn parse(quoted: &[u8]) -> Result<Self, WireError> {
        let ip = Ipv4View::new_checked(quoted)?;
        ip.expect_protocol(PROTO_TCP)?;
        let first = ip
            .payload()
            .first_chunk::<8>()
            .ok_or(WireError::Truncated {
                layer: Layer::Tcp,
                len: ip.payload().len(),
            })?;
        let [s0, s1, d0, d1, q0, q1, q2, q3] = *first;
        Ok(Self {
            src: ip.src(),
            dst: ip.dst(),
            sport: u16::from_be_bytes([s0, s1]),
            dport: u16::from_be_bytes([d0, d1]),
            seq: u32::from_be_bytes([q0, q1, q2, q3]),
        })
    }

    /// The quote of `syn`: its IPv4 header and first 8 TCP bytes, as a router sends it.
    pub fn of(syn: &TcpSegmentRepr) -> [u8; Self::LEN] {
        let whole = syn.to_bytes();
        let mut q = [0u8; Self::LEN];
        for (d, s) in q.iter_mut().zip(whole.iter()) {
            *d = *s;
        }
        q
    }
}

/// An ICMP destination unreachable in an IPv4 packet, with the TCP segment it quotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpUnreachableRepr {
    /// Who sent the error (the target, or a router or firewall on the path).
    pub from: Ipv4Addr,
    /// Where it was sent.
    pub to: Ipv4Addr,
    /// IPv4 time to live.
    pub ttl: u8,
    /// IPv4 identification.
    pub ip_id: u16,
    /// The code: 3 port unreachable, 0/1 network/host unreachable, 13 administratively
    /// prohibited, … (RFC 792, RFC 1812 §5.2.7.1).
    pub code: u8,
    /// The segment it answers.
    pub quoted: QuotedTcp,
}

impl IcmpUnreachableRepr {
    /// The bytes [`IcmpUnreachableRepr::emit`] writes.
    pub const LEN: usize = IPV4_HEADER + ICMP_HEADER + QuotedTcp::LEN;

    /// Read an IPv4 packet carrying an ICMP destination unreachable that quotes TCP.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let ip = Ipv4View::new_checked(bytes)?;
        ip.expect_protocol(PROTO_ICMP)?;
        let icmp = ip.payload();
        let Some((&[ty, code, ..], quoted)) = icmp.split_first_chunk::<ICMP_HEADER>() else {
            return Err(WireError::Truncated {
                layer: Layer::Icmp,
                len: icmp.len(),
            });
        };
        if ty != ICMP_DEST_UNREACHABLE {
            return Err(WireError::Unexpected {
                layer: Layer::Icmp,
                field: "type",
                value: u32::from(ty),
            });
        }
        Ok(Self {
            from: ip.src(),
            to: ip.dst(),
            ttl: ip.ttl(),
            ip_id: ip.ident(),
            code,
            quoted: QuotedTcp::parse(quoted)?,
        })
    }

    /// Write the error quoting `quote` (the [`QuotedTcp::of`] bytes of the segment; the
    /// fields of `self.quoted` are not used), with both checksums.
    pub fn emit(&self, quote: &[u8; QuotedTcp::LEN], buf: &mut [u8; Self::LEN]) {
        buf.fill(0);
        let (ip_bytes, rest) = buf.split_at_mut(IPV4_HEADER);
        let (icmp_header, quoted) = rest.split_at_mut(ICMP_HEADER);
        quoted.copy_from_slice(quote);
        if let [ty, code, ..] = icmp_header {
            *ty = ICMP_DEST_UNREACHABLE;
            *code = self.code;
        }
        let sum = ones_complement(&[&*icmp_header, &*quoted]);
        if let [_, _, c0, c1, ..] = icmp_header {
            [*c0, *c1] = sum.to_be_bytes();
        }
        emit_ipv4_header(
            ip_bytes,
            Self::LEN,
            PROTO_ICMP,
            self.ip_id,
            self.ttl,
            self.from,
            self.to,
        );
    }
}

/// An IPv4 header without options (RFC 791 §3.1) into `ip_bytes` (zeroed, [`IPV4_HEADER`]
/// long), for a packet of `total_len` bytes carrying `protocol`, checksum included.
fn emit_ipv4_header(
    ip_bytes: &mut [u8],
    total_len: usize,
    protocol: u8,
    ident: u16,
    ttl: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
) {
    if let Some(mut ip) = MutableIpv4Packet::new(ip_bytes) {
        ip.set_version(4);
        ip.set_header_length(5);
        ip.set_total_length(total_len as u16);
        ip.set_identification(ident);
        ip.set_ttl(ttl);
        ip.set_next_level_protocol(IpNextHeaderProtocol(protocol));
        ip.set_source(src);
        ip.set_destination(dst);
        let sum = pnet_packet::ipv4::checksum(&ip.to_immutable());
        ip.set_checksum(sum);
    }
}

/// The RFC 1071 checksum over `parts`, each of even length except possibly the last.
fn ones_complement(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for part in parts {
        let mut words = part.chunks_exact(2);
        for w in &mut words {
            if let [a, b] = w {
                sum += u32::from(u16::from_be_bytes([*a, *b]));
            }
        }
        if let [last] = words.remainder() {
            sum += u32::from(u16::from_be_bytes([*last, 0]));
        }
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

    #[test]
    fn syn_round_trips_with_valid_checksums() {
        let syn = TcpSegmentRepr::syn(SRC, DST, 40000, 443, 0x1234_5678);
        let b = syn.to_bytes();
        assert_eq!(b[0], 0x45);
        assert_eq!(&b[2..4], &40u16.to_be_bytes());
        assert_eq!(b[9], PROTO_TCP);
        assert_eq!(b[33], TcpFlags::SYN);
        assert!(tcp_checksum_ok(&b));
        // The IPv4 header sums to all ones.
        assert_eq!(ones_complement(&[&b[..20]]), 0);
        assert_eq!(TcpSegmentRepr::parse(&b), Ok(syn));
        // Any changed byte of the segment breaks the TCP checksum.
        let mut bad = b;
        bad[25] ^= 1;
        assert!(!tcp_checksum_ok(&bad));
    }

    #[test]
    fn answers_parse_with_options_and_snap_lengths() {
        let mut ans = TcpSegmentRepr::syn(DST, SRC, 443, 40000, 99);
        ans.flags = TcpFlags(TcpFlags::SYN | TcpFlags::ACK);
        ans.ack = 0x1234_5679;
        ans.ttl = 57;
        ans.ip_id = 0xBEEF;
        let mut b = ans.to_bytes().to_vec();
        // Four bytes of TCP options (an MSS), header length and total length adjusted.
        b[32] = 6 << 4;
        b.extend_from_slice(&[2, 4, 5, 180]);
        b[2..4].copy_from_slice(&44u16.to_be_bytes());
        let r = TcpSegmentRepr::parse(&b).unwrap();
        assert_eq!(
            (r.sport, r.dport, r.ack, r.ttl, r.ip_id),
            (443, 40000, ans.ack, 57, 0xBEEF)
        );
        assert!(r.flags.is_syn_ack() && !r.flags.is_rst());
        // A total length beyond what the socket delivered: the segment is what is there.
        b[2..4].copy_from_slice(&1500u16.to_be_bytes());
        assert_eq!(TcpSegmentRepr::parse(&b).unwrap().ack, ans.ack);
    }

    #[test]
    fn every_truncation_and_bad_header_is_an_error() {
        let b = TcpSegmentRepr::syn(SRC, DST, 1, 2, 3).to_bytes();
        for cut in 0..b.len() {
            assert!(TcpSegmentRepr::parse(&b[..cut]).is_err(), "cut {cut}");
        }
        let with = |i: usize, v: u8| {
            let mut x = b;
            x[i] = v;
            TcpSegmentRepr::parse(&x)
        };
        assert_eq!(
            with(0, 0x65),
            Err(WireError::Version {
                layer: Layer::Ipv4,
                version: 6
            })
        );
        assert!(matches!(
            with(0, 0x44),
            Err(WireError::Length { len: 16, .. })
        ));
        // IHL 15 words = 60 bytes, more than there are.
        assert!(matches!(with(0, 0x4F), Err(WireError::Length { .. })));
        assert!(matches!(
            with(3, 19),
            Err(WireError::Length { len: 19, .. })
        ));
        assert_eq!(
            with(9, 17),
            Err(WireError::Unexpected {
                layer: Layer::Ipv4,
                field: "protocol",
                value: 17
            })
        );
        // TCP data offset below 5 words.
        assert!(matches!(
            with(32, 0x40),
            Err(WireError::Length {
                layer: Layer::Tcp,
                ..
            })
        ));
    }

    #[test]
    fn icmp_errors_round_trip_and_every_truncation_fails() {
        let syn = TcpSegmentRepr::syn(SRC, DST, 40000, 443, 0xCAFE_F00D);
        let router = Ipv4Addr::new(198, 51, 100, 1);
        let quote = QuotedTcp::of(&syn);
        let repr = IcmpUnreachableRepr {
            from: router,
            to: SRC,
            ttl: 61,
            ip_id: 0x1234,
            code: 13,
            quoted: QuotedTcp {
                src: SRC,
                dst: DST,
                sport: 40000,
                dport: 443,
                seq: 0xCAFE_F00D,
            },
        };
        let mut b = [0u8; IcmpUnreachableRepr::LEN];
        repr.emit(&quote, &mut b);
        assert_eq!(IcmpUnreachableRepr::parse(&b), Ok(repr));
        // The ICMP checksum covers the ICMP message.
        assert_eq!(ones_complement(&[&b[20..]]), 0);
        for cut in 0..b.len() {
            assert!(IcmpUnreachableRepr::parse(&b[..cut]).is_err(), "cut {cut}");
        }
        let mut other = b;
        other[20] = 11; // time exceeded
        assert!(matches!(
            IcmpUnreachableRepr::parse(&other),
            Err(WireError::Unexpected {
                layer: Layer::Icmp,
                field: "type",
                value: 11
            })
        ));
        let mut udp_quote = b;
        udp_quote[28 + 9] = 17;
        assert!(IcmpUnreachableRepr::parse(&udp_quote).is_err());
        // A TCP segment is no ICMP error, and the other way round.
        assert!(IcmpUnreachableRepr::parse(&syn.to_bytes()).is_err());
        assert!(TcpSegmentRepr::parse(&b).is_err());
    }
}
