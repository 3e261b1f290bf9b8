//! TURN data-plane framing on arbitrary bytes: `ChannelData::parse` (with an encode round trip
//! of what it accepts), Data indications, and `StreamFramer` fed the same bytes in arbitrary
//! chunks, which must frame exactly as when fed at once, with bounded buffering.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use libfuzzer_sys::fuzz_target;
use probes::stun::view::StunView;
use probes::stun::stream::FrameError;
use probes::turn::channel::{ChannelData, DataIndication, Frame, StreamFramer};

/// Frames of `data` cut into chunks whose sizes come from `sizes` (cycled; 0 means 1).
fn frame(data: &[u8], sizes: &[u8]) -> (Vec<Frame>, Option<FrameError>, usize) {
    let mut f = StreamFramer::new();
    let mut frames = Vec::new();
    let mut max_buffered = 0;
    let mut rest = data;
    let mut i = 0;
    loop {
        loop {
            match f.next_frame() {
                Ok(Some(fr)) => frames.push(fr),
                Ok(None) => break,
                Err(e) => return (frames, Some(e), max_buffered),
            }
        }
        if rest.is_empty() {
            return (frames, None, max_buffered);
        }
        let n = if sizes.is_empty() {
            rest.len()
        } else {
            usize::from(sizes[i % sizes.len()]).max(1).min(rest.len())
        };
        i += 1;
        f.push(&rest[..n]);
        rest = &rest[n..];
        max_buffered = max_buffered.max(f.buffered());
    }
}

fuzz_target!(|input: &[u8]| {
    // First byte: how many of the following bytes are chunk sizes.
    let Some((&k, rest)) = input.split_first() else {
        return;
    };
    let k = usize::from(k % 16).min(rest.len());
    let (sizes, data) = rest.split_at(k);

    if let Some(cd) = ChannelData::parse(data) {
        assert!((0x4000..=0x4FFF).contains(&cd.channel));
        let mut out = Vec::new();
        ChannelData::encode(cd.channel, cd.data, false, &mut out);
        assert_eq!(&out[..], &data[..out.len()]);
        assert!(data.len() - out.len() <= 3);
        let mut padded = Vec::new();
        ChannelData::encode(cd.channel, cd.data, true, &mut padded);
        assert_eq!(padded.len() % 4, 0);
        assert_eq!(ChannelData::parse(&padded), Some(cd));
    }
    if let Ok(v) = StunView::parse(data) {
        let _ = DataIndication::from_view(&v);
    }

    let whole = frame(data, &[]);
    let chunked = frame(data, sizes);
    assert_eq!(whole.0, chunked.0, "chunking changed the frames");
    assert_eq!(whole.1, chunked.1, "chunking changed the error");
    // One frame (at most 4 + 65535 + 3 or 20 + 65532 bytes) plus one chunk.
    assert!(chunked.2 <= 65_552 + 255);
    for fr in &whole.0 {
        match fr {
            Frame::ChannelData(b) => {
                // Framed by its first two bits (01) and its length field; channel numbers
                // 0x5000-0x7FFF are reserved (RFC 8656 §12) and framed anyway to keep the stream
                // in step, but the parser refuses them.
                assert_eq!(b[0] >> 6, 1);
                assert_eq!(b.len(), 4 + usize::from(u16::from_be_bytes([b[2], b[3]])));
                assert_eq!(ChannelData::parse(b).is_some(), b[0] < 0x50);
            }
            Frame::Stun(b) => assert_eq!(b[0] >> 6, 0),
        }
    }
});
