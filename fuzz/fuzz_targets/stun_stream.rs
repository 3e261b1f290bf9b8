//! STUN-over-TCP reassembly (`StunStream`, RFC 8489 §6.2.2) with arbitrary chunking: the same
//! bytes fed in any chunks must give the same messages and the same error as fed at once; every
//! message has a valid header and its declared length; buffering stays bounded by one message.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use libfuzzer_sys::fuzz_target;
use probes::stun::stream::{FrameError, StunStream};
use probes::stun::view;

fn reassemble(data: &[u8], sizes: &[u8]) -> (Vec<Vec<u8>>, Option<FrameError>, usize) {
    let mut s = StunStream::new();
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    let mut max_buffered = 0;
    loop {
        loop {
            match s.next_message() {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => return (out, Some(e), max_buffered),
            }
        }
        if rest.is_empty() {
            return (out, None, max_buffered);
        }
        let n = if sizes.is_empty() {
            rest.len()
        } else {
            usize::from(sizes[i % sizes.len()]).max(1).min(rest.len())
        };
        i += 1;
        s.push(&rest[..n]);
        rest = &rest[n..];
        max_buffered = max_buffered.max(s.buffered());
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&k, rest)) = input.split_first() else {
        return;
    };
    let k = usize::from(k % 16).min(rest.len());
    let (sizes, data) = rest.split_at(k);
    let whole = reassemble(data, &[]);
    let chunked = reassemble(data, sizes);
    assert_eq!(whole.0, chunked.0, "chunking changed the messages");
    assert_eq!(whole.1, chunked.1, "chunking changed the error");
    assert!(chunked.2 <= 20 + 65_535 + 255);
    let mut consumed = 0;
    for m in &whole.0 {
        assert!(view::check_header(m).is_ok(), "a reassembled message fails the header check");
        assert_eq!(m.len(), 20 + usize::from(u16::from_be_bytes([m[2], m[3]])));
        assert_eq!(&data[consumed..consumed + m.len()], &m[..]);
        consumed += m.len();
    }
});
