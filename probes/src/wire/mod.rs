//! Packet codecs, smoltcp style: untrusted bytes pass a checked constructor (or `parse`) into
//! a typed representation, after which nothing can panic; a representation emits into a
//! buffer whose exact size it knows. One error type, [`WireError`], for every codec here.
//!
//! - [`ip`]: IPv4 (RFC 791), TCP (RFC 9293) and ICMP destination unreachable (RFC 792) for
//!   the raw SYN sweep, on `pnet_packet`'s packet views.
//! - [`dns`]: DNS queries and responses (RFC 1035) on `hickory-proto`'s message codec.
//! - [`http`]: HTTP/1.1 response heads (RFC 9112 §4).
//! - [`x509`]: the subject and issuer names of a certificate (RFC 5280 §4.1).
//! - [`natpmp`], [`pcp`]: NAT-PMP (RFC 6886) and PCP (RFC 6887) messages.
//! - [`netlink`]: Linux rtnetlink route lookups and link/address/route dumps.
//! - [`upnp`]: SSDP search and answers and the IGD device description (UPnP Device
//!   Architecture 1.1), with the `http://` URLs they carry.
//!
//! Policy — what an answer means for a path (verdicts, assessments, findings) — lives with
//! the probes that use these codecs, not here.

pub mod dns;
pub mod http;
pub mod ip;
pub mod natpmp;
pub mod netlink;
pub mod pcp;
pub mod upnp;
pub mod x509;

use std::fmt;

/// The format a [`WireError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Layer {
    /// IPv4, RFC 791.
    Ipv4,
    /// TCP, RFC 9293.
    Tcp,
    /// ICMP, RFC 792.
    Icmp,
    /// DNS, RFC 1035.
    Dns,
    /// HTTP/1.1, RFC 9112.
    Http,
    /// X.509 DER, RFC 5280.
    X509,
    /// NAT-PMP, RFC 6886.
    NatPmp,
    /// PCP, RFC 6887.
    Pcp,
    /// SSDP and the IGD description, UPnP Device Architecture 1.1.
    Upnp,
    /// Linux rtnetlink (routes, links, addresses).
    Netlink,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Ipv4 => "IPv4",
            Layer::Tcp => "TCP",
            Layer::Icmp => "ICMP",
            Layer::Dns => "DNS",
            Layer::Http => "HTTP",
            Layer::X509 => "X.509",
            Layer::NatPmp => "NAT-PMP",
            Layer::Pcp => "PCP",
            Layer::Upnp => "UPnP",
            Layer::Netlink => "netlink",
        })
    }
}

/// Why bytes could not be read (or a value not written) by one of the codecs of this module.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Shorter than the format needs.
    #[error("{layer}: too short ({len} bytes)")]
    Truncated {
        /// The format.
        layer: Layer,
        /// Bytes there were.
        len: usize,
    },
    /// A version this codec does not read.
    #[error("{layer}: version {version}")]
    Version {
        /// The format.
        layer: Layer,
        /// The version found.
        version: u8,
    },
    /// Another message than the one this codec reads: an ICMP type, an IP protocol, an
    /// opcode, a request where a response belongs, an HTTP status.
    #[error("{layer}: unexpected {field} {value}")]
    Unexpected {
        /// The format.
        layer: Layer,
        /// Which field.
        field: &'static str,
        /// Its value.
        value: u32,
    },
    /// A length field that does not fit the bytes or the format's rules.
    #[error("{layer}: bad length {len}")]
    Length {
        /// The format.
        layer: Layer,
        /// The length found (or the message's, when the rule is about it).
        len: usize,
    },
    /// A field whose content the format does not allow.
    #[error("{layer}: malformed {what}")]
    Malformed {
        /// The format.
        layer: Layer,
        /// What was wrong.
        what: &'static str,
    },
    /// A DER element (X.509) that could not be read at this offset.
    #[error("X.509: DER malformed at byte {offset}")]
    Der {
        /// Where the walk failed.
        offset: usize,
    },
    /// No end within the limit (an HTTP head that never finishes).
    #[error("{layer}: longer than {limit} bytes")]
    TooLong {
        /// The format.
        layer: Layer,
        /// The limit.
        limit: usize,
    },
    /// A DNS name that cannot be encoded (empty label, label over 63 bytes, name over 253).
    #[error("not a DNS name: {name:?}")]
    BadName {
        /// The name.
        name: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Peer-controlled bytes never panic a parser of this module.
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            let _ = dns::parse_response(&bytes);
            let _ = x509::names(&bytes);
            let _ = http::parse_head(&bytes);
            let _ = ip::TcpSegmentRepr::parse(&bytes);
            let _ = ip::IcmpUnreachableRepr::parse(&bytes);
            let _ = ip::QuotedTcp::parse(&bytes);
            let _ = ip::tcp_checksum_ok(&bytes);
            let _ = natpmp::parse_external(&bytes);
            let _ = pcp::parse_response(&bytes);
            let _ = upnp::parse_ssdp_answer(&bytes);
            let _ = upnp::http_body(&bytes);
            let _ = upnp::igd_services(&bytes);
            let _ = upnp::parse_http_url(&String::from_utf8_lossy(&bytes));
        }

        /// A DER walk refuses or accepts headers that announce huge lengths, never panics.
        #[test]
        fn der_lengths(tag in any::<u8>(), len in any::<u32>(), tail in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut b = vec![0x30, 0x84];
            b.extend_from_slice(&len.to_be_bytes());
            b.push(tag);
            b.extend_from_slice(&tail);
            let _ = x509::names(&b);
        }

        /// Any SYN emitted parses back to itself with a valid checksum.
        #[test]
        fn syn_round_trip(src in any::<u32>(), dst in any::<u32>(), sport in any::<u16>(), dport in any::<u16>(), seq in any::<u32>()) {
            let syn = ip::TcpSegmentRepr::syn(src.into(), dst.into(), sport, dport, seq);
            let b = syn.to_bytes();
            prop_assert!(ip::tcp_checksum_ok(&b));
            prop_assert_eq!(ip::TcpSegmentRepr::parse(&b), Ok(syn));
        }
    }
}
