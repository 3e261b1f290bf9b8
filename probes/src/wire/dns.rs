//! DNS messages (RFC 1035 §4.1) on `hickory-proto`'s message codec: the recursive A/AAAA
//! query stunmap sends and what it reads back (id, RCODE, TC, the addresses of the answer
//! section). Only the codec is used — no resolver, no runtime: the engine sends the query on
//! its own UDP socket, so the RCODE is known (NXDOMAIN and SERVFAIL are different problems,
//! which `getaddrinfo` folds into "not found").

use std::net::IpAddr;

use hickory_proto::ProtoError;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData};
use hickory_proto::serialize::binary::DecodeError;
use serde::Serialize;

use super::{Layer, WireError};

/// The record types stunmap asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RecordType {
    /// IPv4 address, RFC 1035 §3.4.1.
    A,
    /// IPv6 address, RFC 3596 §2.1.
    Aaaa,
}

impl RecordType {
    /// The QTYPE value (RFC 1035 §3.2.2, RFC 3596 §2.1).
    pub fn code(self) -> u16 {
        match self {
            RecordType::A => 1,
            RecordType::Aaaa => 28,
        }
    }

    fn hickory(self) -> hickory_proto::rr::RecordType {
        match self {
            RecordType::A => hickory_proto::rr::RecordType::A,
            RecordType::Aaaa => hickory_proto::rr::RecordType::AAAA,
        }
    }
}

/// The response code, RFC 1035 §4.1.1 (the extended code of RFC 6891 §6.1.3 when the
/// answer carries an OPT record).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rcode {
    /// 0.
    NoError,
    /// 1: the server could not parse the query.
    FormErr,
    /// 2: the resolver failed (often: cannot reach upstream, or DNSSEC validation failed).
    ServFail,
    /// 3: the name does not exist (or a filter says so).
    NxDomain,
    /// 5: the server refuses to answer (policy).
    Refused,
    /// Anything else.
    Other(u8),
}

impl Rcode {
    /// The code of a numeric RCODE.
    pub fn from_code(code: u16) -> Rcode {
        match code {
            0 => Rcode::NoError,
            1 => Rcode::FormErr,
            2 => Rcode::ServFail,
            3 => Rcode::NxDomain,
            5 => Rcode::Refused,
            n => Rcode::Other(u8::try_from(n).unwrap_or(u8::MAX)),
        }
    }
}

impl From<ResponseCode> for Rcode {
    fn from(c: ResponseCode) -> Rcode {
        Rcode::from_code(u16::from(c))
    }
}

/// What a response said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsResponse {
    /// Its id (matched against the query by the caller).
    pub id: u16,
    /// RCODE.
    pub rcode: Rcode,
    /// TC: the answer did not fit in the datagram.
    pub truncated: bool,
    /// Every A and AAAA record of class IN in the answer section (CNAME chains are followed
    /// by the resolver; their targets' records are in the same section).
    pub addresses: Vec<IpAddr>,
}

/// The longest name stunmap encodes, without the trailing dot (RFC 1035 §2.3.4 allows 255
/// bytes on the wire, which is 253 characters of dotted text).
const MAX_NAME: usize = 253;

/// Append a recursive query for `name` (RFC 1035 §4.1.1 header with RD set, one question
/// of class IN, RFC 1035 §4.1.2). Labels are taken as bytes; an empty label, a label over 63
/// bytes or a name over 253 is refused.
pub fn encode_query(
    id: u16,
    name: &str,
    qtype: RecordType,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    let bad = || WireError::BadName {
        name: name.to_string(),
    };
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() || trimmed.len() > MAX_NAME {
        return Err(bad());
    }
    if trimmed.split('.').any(|l| l.is_empty() || l.len() > 63) {
        return Err(bad());
    }
    let qname = Name::from_labels(trimmed.split('.').map(str::as_bytes)).map_err(|_| bad())?;
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    let mut q = Query::query(qname, qtype.hickory());
    q.query_class = DNSClass::IN;
    msg.add_query(q);
    let bytes = msg.to_vec().map_err(|_: ProtoError| bad())?;
    out.extend_from_slice(&bytes);
    Ok(())
}

/// Parse a response: header, questions, and the A/AAAA records of class IN of the answer
/// section. Every record of every section is decoded (hickory's checks: lengths, label
/// rules, compression pointers that point backwards only), so a malformed message is an
/// error, never a panic.
pub fn parse_response(msg: &[u8]) -> Result<DnsResponse, WireError> {
    let m = Message::from_vec(msg).map_err(|e| decode_error(&e, msg.len()))?;
    if m.metadata.message_type != MessageType::Response {
        return Err(WireError::Unexpected {
            layer: Layer::Dns,
            field: "QR bit",
            value: 0,
        });
    }
    let addresses = m
        .answers
        .iter()
        .filter(|r| r.dns_class == DNSClass::IN)
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    Ok(DnsResponse {
        id: m.metadata.id,
        rcode: m.metadata.response_code.into(),
        truncated: m.metadata.truncation,
        addresses,
    })
}

fn decode_error(e: &DecodeError, len: usize) -> WireError {
    let what = match e {
        DecodeError::InsufficientBytes | DecodeError::IncorrectRDataLengthRead { .. } => {
            return WireError::Truncated {
                layer: Layer::Dns,
                len,
            };
        }
        DecodeError::PointerNotPriorToLabel { .. }
        | DecodeError::LabelOverlapsWithOther { .. }
        | DecodeError::UnrecognizedLabelCode(_) => "name compression pointer",
        DecodeError::LabelBytesTooLong(_) | DecodeError::DomainNameTooLong(_) => "name",
        _ => "record",
    };
    WireError::Malformed {
        layer: Layer::Dns,
        what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(id: u16, rcode: u8, records: &[(u16, &[u8])]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&[0x81, 0x80 | rcode]);
        m.extend_from_slice(&[0, 1]);
        m.extend_from_slice(&(records.len() as u16).to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0]);
        m.extend_from_slice(b"\x03api\x07netbird\x02io\x00\x00\x01\x00\x01");
        for (t, data) in records {
            m.extend_from_slice(&[0xC0, 12]);
            m.extend_from_slice(&t.to_be_bytes());
            m.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
            m.extend_from_slice(&(data.len() as u16).to_be_bytes());
            m.extend_from_slice(data);
        }
        m
    }

    #[test]
    fn query_encodes() {
        let mut q = Vec::new();
        encode_query(0xBEEF, "api.netbird.io.", RecordType::Aaaa, &mut q).unwrap();
        assert_eq!(&q[..4], &[0xBE, 0xEF, 1, 0]);
        assert_eq!(&q[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&q[12..], b"\x03api\x07netbird\x02io\x00\x00\x1c\x00\x01");
        assert!(encode_query(1, "a..b", RecordType::A, &mut q).is_err());
        assert!(encode_query(1, &"x".repeat(64), RecordType::A, &mut q).is_err());
        assert!(encode_query(1, "", RecordType::A, &mut q).is_err());
        let long = ["a"; 128].join(".");
        assert!(encode_query(1, &["a"; 127].join("."), RecordType::A, &mut q).is_ok());
        assert!(encode_query(1, &long, RecordType::A, &mut q).is_err());
    }

    /// A query encoded here decodes as a message whose question is the name asked.
    #[test]
    fn query_round_trips_through_the_codec() {
        let mut q = Vec::new();
        encode_query(7, "relay.example", RecordType::A, &mut q).unwrap();
        let m = Message::from_vec(&q).unwrap();
        assert_eq!(m.metadata.id, 7);
        assert!(m.metadata.recursion_desired);
        assert_eq!(m.queries.len(), 1);
        assert_eq!(m.queries[0].name().to_ascii(), "relay.example.");
        // A query is not a response.
        assert!(matches!(
            parse_response(&q),
            Err(WireError::Unexpected {
                field: "QR bit",
                ..
            })
        ));
    }

    #[test]
    fn responses_parse() {
        let m = answer(
            7,
            0,
            &[(1, &[1, 2, 3, 4]), (5, b"\x01x\x00"), (1, &[0, 0, 0, 0])],
        );
        let r = parse_response(&m).unwrap();
        assert_eq!(r.id, 7);
        assert_eq!(r.rcode, Rcode::NoError);
        assert!(!r.truncated);
        assert_eq!(
            r.addresses,
            vec![
                "1.2.3.4".parse::<IpAddr>().unwrap(),
                "0.0.0.0".parse().unwrap()
            ]
        );
        let v6 = answer(
            8,
            0,
            &[(
                28,
                &[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            )],
        );
        assert_eq!(
            parse_response(&v6).unwrap().addresses,
            vec!["2001:db8::1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            parse_response(&answer(7, 3, &[])).unwrap().rcode,
            Rcode::NxDomain
        );
        assert_eq!(
            parse_response(&answer(7, 2, &[])).unwrap().rcode,
            Rcode::ServFail
        );
        assert_eq!(
            parse_response(&answer(7, 4, &[])).unwrap().rcode,
            Rcode::Other(4)
        );
        // Every truncation is an error, never a panic.
        for n in 0..m.len() {
            assert!(parse_response(&m[..n]).is_err(), "cut {n}");
        }
        assert!(matches!(
            parse_response(&m[..m.len() - 1]),
            Err(WireError::Truncated {
                layer: Layer::Dns,
                ..
            })
        ));
        // A forward pointer is refused.
        let mut bad = answer(7, 0, &[(1, &[1, 2, 3, 4])]);
        bad[32] = 0xC0;
        bad[33] = 0xFF;
        assert!(matches!(
            parse_response(&bad),
            Err(WireError::Malformed {
                layer: Layer::Dns,
                ..
            })
        ));
        // An A record of the wrong size is refused, not read.
        assert!(parse_response(&answer(7, 0, &[(1, &[1, 2, 3])])).is_err());
    }
}
