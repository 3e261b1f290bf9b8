//! The zero-copy fast path on arbitrary bytes: `StunView::parse`, every accessor, FINGERPRINT,
//! and a round trip of every accepted message through `MessageWriter`.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use libfuzzer_sys::fuzz_target;
use probes::stun::view::{self, ParseError, StunView};
use probes::stun::{MessageWriter, TransactionId};

fuzz_target!(|data: &[u8]| {
    let _ = TransactionId::peek(data);
    let header = view::check_header(data);
    let v = match StunView::parse(data) {
        Ok(v) => v,
        Err(e) => {
            // The walk only fails on attributes; the header verdict must match.
            match e {
                ParseError::AttributeOverrun { .. } => assert!(header.is_ok()),
                other => assert_eq!(header, Err(other)),
            }
            return;
        }
    };
    let (ty, tid) = header.expect("parse accepted a header check_header rejects");
    assert_eq!(v.message_type(), ty);
    assert_eq!(v.transaction_id(), tid);
    assert_eq!(v.as_bytes(), data);

    // Every accessor, for the panic-freedom contract.
    let _ = v.xor_mapped_address();
    let _ = v.xor_relayed_address();
    let _ = v.mapped_address();
    let _ = v.other_address();
    let _ = v.response_origin();
    let _ = v.error_code();
    let _ = v.software();
    let _ = v.realm();
    let _ = v.nonce();
    let _ = v.lifetime();
    let _ = v.has_message_integrity();
    let _ = v.unknown_comprehension_required();
    let _ = v.fingerprint();
    for (kind, _) in v.attributes() {
        let _ = v.raw(kind);
    }
    assert_eq!(usize::from(v.attribute_count()), v.attributes().count());

    // Round trip: re-emitting every attribute reproduces the message up to padding bytes
    // (RFC 8489 §14: padding content is ignored; the writer pads with zeros).
    let mut out = Vec::with_capacity(data.len());
    let mut w = MessageWriter::new(&mut out, ty, &tid);
    for (kind, value) in v.attributes() {
        w.attr(kind, value);
    }
    w.finish();
    assert_eq!(out.len(), data.len());
    let again = StunView::parse(&out).expect("re-encoded message does not parse");
    assert_eq!(again.message_type(), ty);
    assert_eq!(again.transaction_id(), tid);
    assert!(again.attributes().eq(v.attributes()));
});
