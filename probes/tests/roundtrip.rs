//! proptest round trips for every encoder/decoder pair stunmap owns: ChannelData (UDP and
//! padded stream form, through `StreamFramer` too), STUN attributes written by `MessageWriter`
//! and read by `StunView` (XOR-MAPPED-ADDRESS, SOFTWARE, ERROR-CODE, LIFETIME, REALM/NONCE),
//! MESSAGE-INTEGRITY(-SHA256) signing and verification (and its failure on any flipped bit),
//! FINGERPRINT, and DNS query encoding.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::net::{IpAddr, SocketAddr};

use probes::stun::view::{Fingerprint, StunView};
use probes::stun::{Class, MessageType, MessageWriter, Method, TransactionId, attr};
use probes::turn::auth::{Credentials, Integrity, LongTermKey, Password, PasswordAlgorithm};
use probes::turn::channel::{ChannelData, Frame, StreamFramer};
use probes::wire::dns::{RecordType, encode_query};
use proptest::prelude::*;

fn addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::new(IpAddr::from(ip), p)),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::new(IpAddr::from(ip), p)),
    ]
}

proptest! {
    #[test]
    fn channel_data_round_trips(
        channel in 0x4000u16..=0x4FFF,
        data in proptest::collection::vec(any::<u8>(), 0..1500),
        pad: bool,
    ) {
        let mut buf = Vec::new();
        ChannelData::encode(channel, &data, pad, &mut buf);
        if pad {
            prop_assert_eq!(buf.len() % 4, 0);
        }
        let cd = ChannelData::parse(&buf).unwrap();
        prop_assert_eq!(cd.channel, channel);
        prop_assert_eq!(cd.data, &data[..]);
        // On a stream, padded, split anywhere.
        let mut stream = Vec::new();
        ChannelData::encode(channel, &data, true, &mut stream);
        let cut = stream.len() / 2;
        let mut f = StreamFramer::new();
        f.push(&stream[..cut]);
        let first = f.next_frame().unwrap();
        f.push(&stream[cut..]);
        let frame = match first {
            Some(fr) => fr,
            None => f.next_frame().unwrap().unwrap(),
        };
        let Frame::ChannelData(b) = frame else { panic!("not ChannelData") };
        prop_assert_eq!(ChannelData::parse(&b).unwrap().data, &data[..]);
        prop_assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn stun_attributes_round_trip(
        tid: [u8; 12],
        mapped in addr(),
        software in "[ -~]{0,200}",  // cut to 127 characters, RFC 8489 §14.14
        code in 300u16..=699,
        reason in "[ -~]{0,100}",
        lifetime: u32,
        realm in proptest::collection::vec(any::<u8>(), 1..64),
        nonce in proptest::collection::vec(any::<u8>(), 1..64),
    ) {
        let tid = TransactionId(tid);
        let mut buf = Vec::new();
        let mut w = MessageWriter::new(
            &mut buf,
            MessageType::new(Class::ErrorResponse, Method::ALLOCATE),
            &tid,
        );
        w.xor_address(attr::XOR_MAPPED_ADDRESS, &mapped);
        w.software(&software);
        w.error_code(code, &reason);
        w.u32_attr(attr::LIFETIME, lifetime);
        w.attr(attr::REALM, &realm);
        w.attr(attr::NONCE, &nonce);
        w.fingerprint();
        w.finish();
        let v = StunView::parse(&buf).unwrap();
        prop_assert_eq!(v.transaction_id(), tid);
        prop_assert_eq!(v.message_type(), MessageType::new(Class::ErrorResponse, Method::ALLOCATE));
        prop_assert_eq!(v.xor_mapped_address().unwrap().unwrap(), mapped);
        let sent = &software.as_bytes()[..software.len().min(127)];
        prop_assert_eq!(v.software().unwrap(), sent);
        let e = v.error_code().unwrap().unwrap();
        prop_assert_eq!(e.code, code);
        prop_assert_eq!(e.reason, reason.as_bytes());
        prop_assert_eq!(v.lifetime(), Some(lifetime));
        prop_assert_eq!(v.realm().unwrap(), &realm[..]);
        prop_assert_eq!(v.nonce().unwrap(), &nonce[..]);
        prop_assert_eq!(v.fingerprint(), Fingerprint::Valid);
    }

    #[test]
    fn message_integrity_signs_verifies_and_detects_any_flip(
        tid: [u8; 12],
        user in "[a-z]{1,16}",
        password in "[ -~]{1,32}",
        realm in "[a-z.]{1,32}",
        sha256: bool,
        flip in any::<prop::sample::Index>(),
    ) {
        let creds = Credentials::new(user.clone(), Password::new(password));
        let key = LongTermKey::derive(&creds, realm.as_bytes(), PasswordAlgorithm::Md5);
        let tid = TransactionId(tid);
        let mut buf = Vec::new();
        let mut w = MessageWriter::new(
            &mut buf,
            MessageType::new(Class::Request, Method::CREATE_PERMISSION),
            &tid,
        );
        w.attr(attr::USERNAME, user.as_bytes());
        w.attr(attr::REALM, realm.as_bytes());
        if sha256 {
            w.attr_over_message(attr::MESSAGE_INTEGRITY_SHA256, 32, |m| key.hmac_sha256(m));
        } else {
            w.attr_over_message(attr::MESSAGE_INTEGRITY, 20, |m| key.hmac_sha1(m));
        }
        w.fingerprint();
        w.finish();
        prop_assert_eq!(key.verify(&buf), Integrity::Valid);
        let v = StunView::parse(&buf).unwrap();
        prop_assert_eq!(v.has_message_integrity(), !sha256);
        prop_assert_eq!(v.fingerprint(), Fingerprint::Valid);
        // Any flipped bit before FINGERPRINT (the header's type and length aside, which would
        // make it another message) breaks the integrity.
        let covered = buf.len() - 8;
        let i = 4 + flip.index(covered - 4);
        let mut bad = buf.clone();
        bad[i] ^= 0x01;
        prop_assert_ne!(key.verify(&bad), Integrity::Valid);
    }

    #[test]
    fn dns_query_encodes_every_label(
        labels in proptest::collection::vec("[a-z0-9-]{1,20}", 1..6),
        id: u16,
    ) {
        let name = labels.join(".");
        let mut q = Vec::new();
        encode_query(id, &name, RecordType::A, &mut q).unwrap();
        prop_assert_eq!(u16::from_be_bytes([q[0], q[1]]), id);
        // Decode the question name back.
        let mut i = 12;
        let mut back = Vec::new();
        while q[i] != 0 {
            let n = usize::from(q[i]);
            back.push(String::from_utf8(q[i + 1..i + 1 + n].to_vec()).unwrap());
            i += 1 + n;
        }
        prop_assert_eq!(back.join("."), name);
        prop_assert_eq!(&q[i + 1..], &[0, 1, 0, 1][..]);
    }
}
