//! The `stunmap pair` rendezvous protocol from both ends, and the offline `--explain`
//! reader: arbitrary bytes cut into a stream for the frame reader, each frame handed to a
//! server connection (with real `hello`/`join` frames first when the input asks, so the
//! authenticated states are reached) and to a client connection; room table operations;
//! the same bytes as a `stunmap nat --json` report. Never a panic; memory bounded by one frame.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use probes::pair::rendezvous::{
    ClientConn, FrameReader, MAX_FRAME, Nonce, RoomSecret, Rooms, ServerConn, ServerMsg,
};

fuzz_target!(|input: &[u8]| {
    let Some((&mode, data)) = input.split_first() else {
        return;
    };
    let secret = RoomSecret::new(b"fuzzing-secret-0123456789".to_vec()).unwrap();
    let mut server = ServerConn::new(secret.clone(), Nonce([2; 16]));
    let mut client = ClientConn::new(&secret, "room", Nonce([1; 16])).unwrap();
    if mode & 1 == 1 {
        // Reach the joined state on both ends with genuine frames.
        let mut r = FrameReader::new();
        r.push(&client.hello());
        let hello = r.next_frame().unwrap().unwrap();
        server.handle_frame(&hello).unwrap();
        r.push(&server.welcome());
        let welcome = r.next_frame().unwrap().unwrap();
        client.handle_frame(&welcome).unwrap();
        r.push(&client.join().unwrap());
        let join = r.next_frame().unwrap().unwrap();
        server.handle_frame(&join).unwrap();
        r.push(&server.seal(&ServerMsg::Joined { first: true }));
        let joined = r.next_frame().unwrap().unwrap();
        client.handle_frame(&joined).unwrap();
    }
    // The stream, in chunks whose sizes the input picks.
    let mut reader = FrameReader::new();
    let chunk = usize::from(mode >> 2).max(1);
    for piece in data.chunks(chunk) {
        reader.push(piece);
        assert!(reader.buffered() <= 4 + MAX_FRAME + chunk);
        loop {
            match reader.next_frame() {
                Ok(Some(frame)) => {
                    let _ = server.handle_frame(&frame);
                    let _ = client.handle_frame(&frame);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    // Frames as whole bodies too (no length prefix).
    let _ = ServerConn::new(secret.clone(), Nonce([3; 16])).handle_frame(data);
    let _ = ClientConn::new(&secret, "r", Nonce([4; 16]))
        .unwrap()
        .handle_frame(data);
    // The room table under arbitrary joins, leaves and expiries.
    let t0 = Instant::now();
    let mut rooms = Rooms::new(4, Duration::from_secs(10));
    for (i, b) in data.iter().enumerate().take(256) {
        let room = ["a", "b", "c", "d", "e"][usize::from(b % 5)];
        let conn = u64::from(b >> 4);
        let now = t0 + Duration::from_secs(i as u64 / 8);
        match b % 3 {
            0 => {
                let _ = rooms.join(now, room, conn);
            }
            1 => {
                let _ = rooms.leave(room, conn);
            }
            _ => {
                let _ = rooms.expire(now);
            }
        }
        assert!(rooms.len() <= 4);
    }
    let _ = probes::pair::explain::read_report(data);
});
