//! RFC 5769 test vectors (§2.1 sample request, §2.2 IPv4 response, §2.3 IPv6 response) through
//! both decoders. The bytes are typed from the RFC's hex dumps, one 32-bit word per line as the
//! RFC prints them. The same bytes are committed as fuzz seeds under `fuzz/corpus_seed/`; the
//! last test keeps the two in sync.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::SocketAddr;

use bytecodec::DecodeExt;
use probes::stun::full::{self, FullAttribute};
use probes::stun::view::{Fingerprint, StunView};
use probes::stun::{Class, MessageType, Method, TransactionId, attr};
use stun_codec::MessageDecoder;
use stun_codec::rfc5389::attributes::MessageIntegrity;

/// The transaction id shared by the three vectors.
const TID: [u8; 12] = [
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
];

/// Short-term credential password of the three vectors (RFC 5769 §2).
const PASSWORD: &str = "VOkJxbRl1RmTxUk/WvJxBt";

/// RFC 5769 §2.1: Binding request with SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME,
/// MESSAGE-INTEGRITY and FINGERPRINT. Its paddings are spaces (0x20), not zeros.
#[rustfmt::skip]
const SAMPLE_REQUEST: [u8; 108] = [
    0x00, 0x01, 0x00, 0x58, // Binding request, length 88
    0x21, 0x12, 0xa4, 0x42, // magic cookie
    0xb7, 0xe7, 0xa7, 0x01, // transaction id
    0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae,
    0x80, 0x22, 0x00, 0x10, // SOFTWARE, 16 bytes: "STUN test client"
    0x53, 0x54, 0x55, 0x4e,
    0x20, 0x74, 0x65, 0x73,
    0x74, 0x20, 0x63, 0x6c,
    0x69, 0x65, 0x6e, 0x74,
    0x00, 0x24, 0x00, 0x04, // PRIORITY (RFC 8445), 4 bytes
    0x6e, 0x00, 0x01, 0xff,
    0x80, 0x29, 0x00, 0x08, // ICE-CONTROLLED (RFC 8445), 8 bytes
    0x93, 0x2f, 0xf9, 0xb1,
    0x51, 0x26, 0x3b, 0x36,
    0x00, 0x06, 0x00, 0x09, // USERNAME, 9 bytes "evtj:h6vY" + 3 bytes padding
    0x65, 0x76, 0x74, 0x6a,
    0x3a, 0x68, 0x36, 0x76,
    0x59, 0x20, 0x20, 0x20,
    0x00, 0x08, 0x00, 0x14, // MESSAGE-INTEGRITY, 20 bytes
    0x9a, 0xea, 0xa7, 0x0c,
    0xbf, 0xd8, 0xcb, 0x56,
    0x78, 0x1e, 0xf2, 0xb5,
    0xb2, 0xd3, 0xf2, 0x49,
    0xc1, 0xb5, 0x71, 0xa2,
    0x80, 0x28, 0x00, 0x04, // FINGERPRINT
    0xe5, 0x7a, 0x3b, 0xcf,
];

/// RFC 5769 §2.2: Binding success response, IPv4 XOR-MAPPED-ADDRESS 192.0.2.1:32853.
#[rustfmt::skip]
const IPV4_RESPONSE: [u8; 80] = [
    0x01, 0x01, 0x00, 0x3c, // Binding success response, length 60
    0x21, 0x12, 0xa4, 0x42, // magic cookie
    0xb7, 0xe7, 0xa7, 0x01, // transaction id
    0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae,
    0x80, 0x22, 0x00, 0x0b, // SOFTWARE, 11 bytes "test vector" + 1 byte padding
    0x74, 0x65, 0x73, 0x74,
    0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20,
    0x00, 0x20, 0x00, 0x08, // XOR-MAPPED-ADDRESS, 8 bytes
    0x00, 0x01, 0xa1, 0x47, // IPv4, X-Port
    0xe1, 0x12, 0xa6, 0x43, // X-Address
    0x00, 0x08, 0x00, 0x14, // MESSAGE-INTEGRITY, 20 bytes
    0x2b, 0x91, 0xf5, 0x99,
    0xfd, 0x9e, 0x90, 0xc3,
    0x8c, 0x74, 0x89, 0xf9,
    0x2a, 0xf9, 0xba, 0x53,
    0xf0, 0x6b, 0xe7, 0xd7,
    0x80, 0x28, 0x00, 0x04, // FINGERPRINT
    0xc0, 0x7d, 0x4c, 0x96,
];

/// RFC 5769 §2.3: Binding success response, IPv6 XOR-MAPPED-ADDRESS
/// [2001:db8:1234:5678:11:2233:4455:6677]:32853.
#[rustfmt::skip]
const IPV6_RESPONSE: [u8; 92] = [
    0x01, 0x01, 0x00, 0x48, // Binding success response, length 72
    0x21, 0x12, 0xa4, 0x42, // magic cookie
    0xb7, 0xe7, 0xa7, 0x01, // transaction id
    0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae,
    0x80, 0x22, 0x00, 0x0b, // SOFTWARE, 11 bytes "test vector" + 1 byte padding
    0x74, 0x65, 0x73, 0x74,
    0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20,
    0x00, 0x20, 0x00, 0x14, // XOR-MAPPED-ADDRESS, 20 bytes
    0x00, 0x02, 0xa1, 0x47, // IPv6, X-Port
    0x01, 0x13, 0xa9, 0xfa, // X-Address (128 bits)
    0xa5, 0xd3, 0xf1, 0x79,
    0xbc, 0x25, 0xf4, 0xb5,
    0xbe, 0xd2, 0xb9, 0xd9,
    0x00, 0x08, 0x00, 0x14, // MESSAGE-INTEGRITY, 20 bytes
    0xa3, 0x82, 0x95, 0x4e,
    0x4b, 0xe6, 0x7b, 0xf1,
    0x17, 0x84, 0xc9, 0x7c,
    0x82, 0x92, 0xc2, 0x75,
    0xbf, 0xe3, 0xed, 0x41,
    0x80, 0x28, 0x00, 0x04, // FINGERPRINT
    0xc8, 0xfb, 0x0b, 0x4c,
];

const MAPPED_V4: &str = "192.0.2.1:32853";
const MAPPED_V6: &str = "[2001:db8:1234:5678:11:2233:4455:6677]:32853";

/// MESSAGE-INTEGRITY (RFC 8489 §14.5) with the vectors' short-term password, checked through
/// stun_codec's own HMAC-SHA1 (we have no HMAC dependency of our own yet).
fn message_integrity_verifies(bytes: &[u8]) -> bool {
    let message = MessageDecoder::<FullAttribute>::new()
        .decode_from_bytes(bytes)
        .unwrap()
        .unwrap();
    message
        .get_attribute::<MessageIntegrity>()
        .unwrap()
        .check_short_term_credential(PASSWORD)
        .is_ok()
}

#[test]
fn sample_request_section_2_1() {
    let v = StunView::parse(&SAMPLE_REQUEST).unwrap();
    assert_eq!(v.message_type(), MessageType::BINDING_REQUEST);
    assert_eq!(v.transaction_id(), TransactionId(TID));
    assert_eq!(v.software(), Some(&b"STUN test client"[..]));
    assert_eq!(v.fingerprint(), Fingerprint::Valid);
    assert!(v.has_message_integrity());
    assert_eq!(v.attribute_count(), 6);
    // PRIORITY is an ICE attribute (RFC 8445 §16.1) neither decoder knows.
    assert_eq!(v.unknown_comprehension_required(), Some(0x0024));
    let username = v
        .attributes()
        .find(|(k, _)| *k == attr::USERNAME)
        .unwrap()
        .1;
    assert_eq!(username, b"evtj:h6vY");

    let m = full::decode(&SAMPLE_REQUEST).unwrap();
    assert_eq!(
        m.message_type,
        MessageType::new(Class::Request, Method::BINDING)
    );
    assert_eq!(m.transaction_id, TransactionId(TID));
    assert_eq!(m.software.as_deref(), Some("STUN test client"));
    assert!(m.has_fingerprint && m.has_message_integrity);
    assert_eq!(m.unknown_attributes, vec![0x0024, 0x8029]);
    assert_eq!(m.xor_mapped_address, None);

    assert!(message_integrity_verifies(&SAMPLE_REQUEST));
    full::cross_check(&SAMPLE_REQUEST).unwrap();
}

#[test]
fn ipv4_response_section_2_2() {
    let expected: SocketAddr = MAPPED_V4.parse().unwrap();
    let v = StunView::parse(&IPV4_RESPONSE).unwrap();
    assert_eq!(v.message_type(), MessageType::BINDING_SUCCESS);
    assert_eq!(v.transaction_id(), TransactionId(TID));
    assert_eq!(v.xor_mapped_address(), Some(Ok(expected)));
    assert_eq!(v.software(), Some(&b"test vector"[..]));
    assert_eq!(v.fingerprint(), Fingerprint::Valid);
    assert_eq!(v.unknown_comprehension_required(), None);

    let m = full::decode(&IPV4_RESPONSE).unwrap();
    assert_eq!(m.message_type, MessageType::BINDING_SUCCESS);
    assert_eq!(m.transaction_id, TransactionId(TID));
    assert_eq!(m.xor_mapped_address, Some(expected));
    assert_eq!(m.software.as_deref(), Some("test vector"));
    assert!(m.has_fingerprint && m.has_message_integrity);
    assert!(m.unknown_attributes.is_empty());

    assert!(message_integrity_verifies(&IPV4_RESPONSE));
    full::cross_check(&IPV4_RESPONSE).unwrap();
}

#[test]
fn ipv6_response_section_2_3() {
    let expected: SocketAddr = MAPPED_V6.parse().unwrap();
    let v = StunView::parse(&IPV6_RESPONSE).unwrap();
    assert_eq!(v.message_type(), MessageType::BINDING_SUCCESS);
    assert_eq!(v.xor_mapped_address(), Some(Ok(expected)));
    assert_eq!(v.software(), Some(&b"test vector"[..]));
    assert_eq!(v.fingerprint(), Fingerprint::Valid);

    let m = full::decode(&IPV6_RESPONSE).unwrap();
    assert_eq!(m.transaction_id, TransactionId(TID));
    assert_eq!(m.xor_mapped_address, Some(expected));
    assert_eq!(m.software.as_deref(), Some("test vector"));
    assert!(m.has_fingerprint && m.has_message_integrity);

    assert!(message_integrity_verifies(&IPV6_RESPONSE));
    full::cross_check(&IPV6_RESPONSE).unwrap();
}

#[test]
fn any_flipped_bit_breaks_the_fingerprint() {
    for vector in [&SAMPLE_REQUEST[..], &IPV4_RESPONSE[..], &IPV6_RESPONSE[..]] {
        for i in 0..vector.len() * 8 {
            let mut b = vector.to_vec();
            b[i / 8] ^= 1 << (i % 8);
            if let Ok(v) = StunView::parse(&b) {
                assert_ne!(v.fingerprint(), Fingerprint::Valid, "bit {i} flipped");
            }
        }
    }
}

#[test]
fn fuzz_seed_files_match_the_vectors() {
    let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus_seed");
    for target in ["stun_fast", "stun_full", "stun_differential"] {
        for (name, bytes) in [
            ("rfc5769-2.1-request.bin", &SAMPLE_REQUEST[..]),
            ("rfc5769-2.2-ipv4-response.bin", &IPV4_RESPONSE[..]),
            ("rfc5769-2.3-ipv6-response.bin", &IPV6_RESPONSE[..]),
        ] {
            let path = seeds.join(target).join(name);
            let on_disk =
                std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(on_disk, bytes, "{}", path.display());
        }
    }
}
