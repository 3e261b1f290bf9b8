//! STUN codec benchmarks: stunmap's zero-copy fast path against `stun_codec`, webrtc-rs `stun`
//! and `stun-types`, on the same bytes, in one run.
//!
//! Groups:
//! - `decode_binding_success`: a 64-byte Binding success response (XOR-MAPPED-ADDRESS,
//!   SOFTWARE, FINGERPRINT; RFC 8489 §14.2, §14.14, §14.7); each decoder extracts the mapped
//!   address, with and without checking FINGERPRINT where the library lets us choose.
//! - `decode_allocate_401`: a TURN Allocate error response (ERROR-CODE 401, REALM, NONCE;
//!   RFC 8656 §7.2, RFC 8489 §9.2); each decoder extracts the code, realm and nonce.
//! - `encode_binding_request`: a Binding request with SOFTWARE and FINGERPRINT.
//!
//! `BENCHMARKS.md` records the numbers and how to reproduce them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::hint::black_box;
use std::net::SocketAddr;

use bytecodec::{DecodeExt, EncodeExt};
use criterion::{Criterion, criterion_group, criterion_main};
use probes::stun::view::Fingerprint;
use probes::stun::{
    Class, MessageType, MessageWriter, Method, StunView, TransactionId, attr,
    encode::BindingRequest, full,
};

const TID: [u8; 12] = [
    0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC,
];
const MAPPED: &str = "198.51.100.7:40000";
const SOFTWARE: &str = "stunmap-bench-srv";
const REALM: &str = "example.org";
const NONCE: &str = "obMatJos2gAAAadl7W7PeDU4hKE72jda";

fn binding_success() -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = MessageWriter::new(&mut buf, MessageType::BINDING_SUCCESS, &TransactionId(TID));
    w.xor_address(attr::XOR_MAPPED_ADDRESS, &MAPPED.parse().unwrap());
    w.software(SOFTWARE);
    w.fingerprint();
    w.finish();
    buf
}

fn allocate_401() -> Vec<u8> {
    let mut buf = Vec::new();
    let ty = MessageType::new(Class::ErrorResponse, Method::ALLOCATE);
    let mut w = MessageWriter::new(&mut buf, ty, &TransactionId(TID));
    w.error_code(401, "Unauthorized");
    w.attr(attr::REALM, REALM.as_bytes());
    w.attr(attr::NONCE, NONCE.as_bytes());
    w.finish();
    buf
}

// --- stunmap fast path -------------------------------------------------------------------

fn fast_mapped(bytes: &[u8], check_fingerprint: bool) -> Option<SocketAddr> {
    let v = StunView::parse(bytes).ok()?;
    if check_fingerprint && v.fingerprint() != Fingerprint::Valid {
        return None;
    }
    v.xor_mapped_address()?.ok()
}

fn fast_401(bytes: &[u8]) -> Option<(u16, usize, usize)> {
    let v = StunView::parse(bytes).ok()?;
    let code = v.error_code()?.ok()?.code;
    Some((code, v.realm()?.len(), v.nonce()?.len()))
}

// --- stun_codec (its own RFC 5389 attribute set) ----------------------------------------

type CodecMessage = stun_codec::Message<stun_codec::rfc5389::Attribute>;

fn codec_decode(bytes: &[u8]) -> Option<CodecMessage> {
    stun_codec::MessageDecoder::<stun_codec::rfc5389::Attribute>::new()
        .decode_from_bytes(bytes)
        .ok()?
        .ok()
}

fn codec_mapped(bytes: &[u8]) -> Option<SocketAddr> {
    // FINGERPRINT is always verified while decoding.
    let m = codec_decode(bytes)?;
    m.get_attribute::<stun_codec::rfc5389::attributes::XorMappedAddress>()
        .map(|a| a.address())
}

fn codec_401(bytes: &[u8]) -> Option<(u16, usize, usize)> {
    use stun_codec::rfc5389::attributes::{ErrorCode, Nonce, Realm};
    let m = codec_decode(bytes)?;
    Some((
        m.get_attribute::<ErrorCode>()?.code(),
        m.get_attribute::<Realm>()?.text().len(),
        m.get_attribute::<Nonce>()?.value().len(),
    ))
}

// --- webrtc-rs `stun` -------------------------------------------------------------------

fn webrtc_mapped(m: &mut stun::message::Message, bytes: &[u8], check: bool) -> Option<SocketAddr> {
    use stun::message::Getter;
    m.unmarshal_binary(bytes).ok()?;
    if check {
        stun::fingerprint::FINGERPRINT.check(m).ok()?;
    }
    let mut a = stun::xoraddr::XorMappedAddress::default();
    a.get_from(m).ok()?;
    Some(SocketAddr::new(a.ip, a.port))
}

fn webrtc_401(m: &mut stun::message::Message, bytes: &[u8]) -> Option<(u16, usize, usize)> {
    use stun::attributes::{ATTR_NONCE, ATTR_REALM};
    use stun::message::Getter;
    use stun::textattrs::TextAttribute;
    m.unmarshal_binary(bytes).ok()?;
    let mut e = stun::error_code::ErrorCodeAttribute::default();
    e.get_from(m).ok()?;
    let realm = TextAttribute::get_from_as(m, ATTR_REALM).ok()?;
    let nonce = TextAttribute::get_from_as(m, ATTR_NONCE).ok()?;
    Some((e.code.0, realm.text.len(), nonce.text.len()))
}

// --- stun-types -------------------------------------------------------------------------

fn stun_types_mapped(bytes: &[u8]) -> Option<SocketAddr> {
    // `Message::from_bytes` always verifies FINGERPRINT when present.
    let m = stun_types::message::Message::from_bytes(bytes).ok()?;
    let a = m
        .attribute::<stun_types::attribute::XorMappedAddress>()
        .ok()?;
    Some(a.addr(m.transaction_id()))
}

fn stun_types_401(bytes: &[u8]) -> Option<(u16, usize, usize)> {
    use stun_types::attribute::{ErrorCode, Nonce, Realm};
    let m = stun_types::message::Message::from_bytes(bytes).ok()?;
    Some((
        m.attribute::<ErrorCode>().ok()?.code(),
        m.attribute::<Realm>().ok()?.realm().len(),
        m.attribute::<Nonce>().ok()?.nonce().len(),
    ))
}

// --- encoders ---------------------------------------------------------------------------

fn fast_encode(buf: &mut Vec<u8>) -> usize {
    buf.clear();
    BindingRequest {
        transaction_id: TransactionId(TID),
        software: Some(SOFTWARE),
        change_request: None,
        response_port: None,
        fingerprint: true,
    }
    .encode(buf)
}

fn codec_encode() -> Vec<u8> {
    use stun_codec::rfc5389::attributes::{Fingerprint, Software};
    let mut m = CodecMessage::new(
        stun_codec::MessageClass::Request,
        stun_codec::rfc5389::methods::BINDING,
        stun_codec::TransactionId::new(TID),
    );
    m.add_attribute(Software::new(SOFTWARE.to_owned()).unwrap());
    let fp = Fingerprint::new(&m).unwrap();
    m.add_attribute(fp);
    stun_codec::MessageEncoder::new()
        .encode_into_bytes(m)
        .unwrap()
}

fn webrtc_encode(m: &mut stun::message::Message) -> usize {
    use stun::message::Setter;
    m.reset();
    m.typ = stun::message::BINDING_REQUEST;
    m.transaction_id = stun::agent::TransactionId(TID);
    m.write_header();
    stun::textattrs::TextAttribute::new(stun::attributes::ATTR_SOFTWARE, SOFTWARE.to_owned())
        .add_to(m)
        .unwrap();
    stun::fingerprint::FINGERPRINT.add_to(m).unwrap();
    m.raw.len()
}

fn stun_types_encode(out: &mut [u8]) -> usize {
    use stun_types::message::{
        BINDING, Message, MessageClass, MessageType as StMessageType, MessageWrite,
        MessageWriteExt, MessageWriteMutSlice, TransactionId as StTid,
    };
    let mut tid = [0u8; 16];
    tid[4..].copy_from_slice(&TID);
    let mut w = Message::builder(
        StMessageType::from_class_method(MessageClass::Request, BINDING),
        StTid::from(u128::from_be_bytes(tid)),
        MessageWriteMutSlice::new(out),
    );
    w.add_attribute(&stun_types::attribute::Software::new(SOFTWARE).unwrap())
        .unwrap();
    w.add_fingerprint().unwrap();
    w.finish()
}

/// Every contestant must decode and encode correctly before it is timed.
fn sanity(success: &[u8], error: &[u8]) {
    let mapped: SocketAddr = MAPPED.parse().unwrap();
    let mut wm = stun::message::Message::new();
    assert_eq!(fast_mapped(success, true), Some(mapped));
    assert_eq!(fast_mapped(success, false), Some(mapped));
    assert_eq!(codec_mapped(success), Some(mapped));
    assert_eq!(
        full::decode(success).unwrap().xor_mapped_address,
        Some(mapped)
    );
    assert_eq!(webrtc_mapped(&mut wm, success, true), Some(mapped));
    assert_eq!(webrtc_mapped(&mut wm, success, false), Some(mapped));
    assert_eq!(stun_types_mapped(success), Some(mapped));
    // A corrupted FINGERPRINT must be caught by every checking decoder.
    let mut bad = success.to_vec();
    *bad.last_mut().unwrap() ^= 1;
    assert_eq!(fast_mapped(&bad, true), None);
    assert_eq!(codec_mapped(&bad), None);
    assert_eq!(webrtc_mapped(&mut wm, &bad, true), None);
    assert_eq!(stun_types_mapped(&bad), None);

    let expected = Some((401, REALM.len(), NONCE.len()));
    assert_eq!(fast_401(error), expected);
    assert_eq!(codec_401(error), expected);
    assert_eq!(webrtc_401(&mut wm, error), expected);
    assert_eq!(stun_types_401(error), expected);

    let mut ours = Vec::new();
    fast_encode(&mut ours);
    assert_eq!(codec_encode(), ours);
    webrtc_encode(&mut wm);
    assert_eq!(wm.raw, ours);
    let mut st = [0u8; 128];
    let n = stun_types_encode(&mut st);
    assert_eq!(&st[..n], &ours[..]);
}

fn benches(c: &mut Criterion) {
    let success = binding_success();
    let error = allocate_401();
    assert_eq!(success.len(), 64);
    sanity(&success, &error);

    let mut g = c.benchmark_group("decode_binding_success");
    g.bench_function("stunmap_fast_fingerprint", |b| {
        b.iter(|| fast_mapped(black_box(&success), true))
    });
    g.bench_function("stunmap_fast", |b| {
        b.iter(|| fast_mapped(black_box(&success), false))
    });
    g.bench_function("stun_codec", |b| {
        b.iter(|| codec_mapped(black_box(&success)))
    });
    g.bench_function("stunmap_full_decode", |b| {
        b.iter(|| full::decode(black_box(&success)))
    });
    let mut wm = stun::message::Message::new();
    g.bench_function("webrtc_stun_fingerprint", |b| {
        b.iter(|| webrtc_mapped(&mut wm, black_box(&success), true))
    });
    g.bench_function("webrtc_stun", |b| {
        b.iter(|| webrtc_mapped(&mut wm, black_box(&success), false))
    });
    g.bench_function("stun_types_fingerprint", |b| {
        b.iter(|| stun_types_mapped(black_box(&success)))
    });
    g.finish();

    let mut g = c.benchmark_group("decode_allocate_401");
    g.bench_function("stunmap_fast", |b| b.iter(|| fast_401(black_box(&error))));
    g.bench_function("stun_codec", |b| b.iter(|| codec_401(black_box(&error))));
    g.bench_function("stunmap_full_decode", |b| {
        b.iter(|| full::decode(black_box(&error)))
    });
    g.bench_function("webrtc_stun", |b| {
        b.iter(|| webrtc_401(&mut wm, black_box(&error)))
    });
    g.bench_function("stun_types", |b| {
        b.iter(|| stun_types_401(black_box(&error)))
    });
    g.finish();

    let mut g = c.benchmark_group("encode_binding_request");
    let mut buf = Vec::with_capacity(128);
    g.bench_function("stunmap", |b| b.iter(|| fast_encode(black_box(&mut buf))));
    g.bench_function("stun_codec", |b| b.iter(codec_encode));
    g.bench_function("webrtc_stun", |b| {
        b.iter(|| webrtc_encode(black_box(&mut wm)))
    });
    let mut out = [0u8; 128];
    g.bench_function("stun_types", |b| {
        b.iter(|| stun_types_encode(black_box(&mut out)))
    });
    g.finish();
}

criterion_group!(codec, benches);
criterion_main!(codec);
