//! Unit tests of [`super`].

use super::super::model::{CandidateKind, WireCandidate};
use super::*;

fn secret() -> RoomSecret {
    RoomSecret::new(b"0123456789abcdef".to_vec()).unwrap()
}

fn body(frame: &[u8]) -> Vec<u8> {
    let mut r = FrameReader::new();
    r.push(frame);
    r.next_frame().unwrap().unwrap()
}

fn offer() -> PeerMsg {
    PeerMsg::Offer(Offer {
        ufrag: "abcd".into(),
        pwd: "p".repeat(22),
        candidates: vec![WireCandidate {
            kind: CandidateKind::Host,
            address: "198.18.0.1:5000".parse().unwrap(),
            priority: 7,
            foundation: "1".into(),
        }],
    })
}

/// Client and server through the handshake; returns both.
fn handshake(room: &str) -> (ClientConn, ServerConn) {
    let mut c = ClientConn::new(&secret(), room, Nonce([1; 16])).unwrap();
    let mut s = ServerConn::new(secret(), Nonce([2; 16]));
    assert_eq!(s.handle_frame(&body(&c.hello())), Ok(ServerEvent::Hello));
    assert_eq!(
        c.handle_frame(&body(&s.welcome())),
        Ok(ClientEvent::Welcome)
    );
    let j = c.join().unwrap();
    assert_eq!(
        s.handle_frame(&body(&j)),
        Ok(ServerEvent::Join { room: room.into() })
    );
    let f = s.seal(&ServerMsg::Joined { first: true });
    assert_eq!(
        c.handle_frame(&body(&f)),
        Ok(ClientEvent::Joined { first: true })
    );
    (c, s)
}

#[test]
fn a_whole_exchange() {
    let (mut c, mut s) = handshake("room-1");
    let f = c.signal(offer()).unwrap();
    assert_eq!(s.handle_frame(&body(&f)), Ok(ServerEvent::Signal(offer())));
    let f = s.seal(&ServerMsg::Signal { body: offer() });
    assert_eq!(c.handle_frame(&body(&f)), Ok(ClientEvent::Peer(offer())));
    let f = s.seal(&ServerMsg::PeerLeft);
    assert_eq!(c.handle_frame(&body(&f)), Ok(ClientEvent::PeerLeft));
    assert_eq!(s.handle_frame(&body(&c.bye())), Ok(ServerEvent::Bye));
}

#[test]
fn a_wrong_secret_is_refused_by_the_server_and_detected_by_the_client() {
    let other = RoomSecret::new(b"another-secret-16".to_vec()).unwrap();
    let mut c = ClientConn::new(&other, "r", Nonce([1; 16])).unwrap();
    let mut s = ServerConn::new(secret(), Nonce([2; 16]));
    assert_eq!(s.handle_frame(&body(&c.hello())), Err(Refusal::WrongSecret));
    let refusal = s.seal(&ServerMsg::Refused {
        reason: Refusal::WrongSecret,
    });
    assert_eq!(
        c.handle_frame(&body(&refusal)),
        Err(RendezvousError::Refused(Refusal::WrongSecret))
    );
    // A server that does not check and answers anyway: the client cannot verify it.
    let mut c = ClientConn::new(&other, "r", Nonce([1; 16])).unwrap();
    let _ = c.hello();
    let mut lax = ServerConn::new(secret(), Nonce([2; 16]));
    lax.key = Some(
        secret()
            .room_key("r")
            .session(&Nonce([1; 16]), &Nonce([2; 16])),
    );
    assert_eq!(
        c.handle_frame(&body(&lax.welcome())),
        Err(RendezvousError::WrongSecret)
    );
}

#[test]
fn replayed_and_reordered_frames_are_rejected() {
    let (mut c, mut s) = handshake("r");
    let f = c.signal(offer()).unwrap();
    assert!(s.handle_frame(&body(&f)).is_ok());
    // The same frame again.
    assert_eq!(s.handle_frame(&body(&f)), Err(Refusal::BadMessage));

    // A frame recorded on one connection is useless on another (another server nonce).
    let (mut c1, _) = handshake("r");
    let recorded = c1.signal(offer()).unwrap();
    let mut c2 = ClientConn::new(&secret(), "r", Nonce([1; 16])).unwrap();
    let mut s2 = ServerConn::new(secret(), Nonce([9; 16]));
    s2.handle_frame(&body(&c2.hello())).unwrap();
    assert_eq!(s2.handle_frame(&body(&recorded)), Err(Refusal::WrongSecret));

    // Server frames out of order.
    let (mut c, mut s) = handshake("r");
    let f1 = s.seal(&ServerMsg::PeerJoined);
    let f2 = s.seal(&ServerMsg::PeerLeft);
    assert!(c.handle_frame(&body(&f2)).is_err());
    let _ = f1;
    // A frame sent to the server reflected back to the client does not verify.
    let (mut c, _s) = handshake("r");
    let f = c.signal(offer()).unwrap();
    assert!(c.handle_frame(&body(&f)).is_err());
}

#[test]
fn a_replayed_hello_seats_no_one() {
    let mut c = ClientConn::new(&secret(), "r", Nonce([1; 16])).unwrap();
    let hello = c.hello();
    let mut s = ServerConn::new(secret(), Nonce([3; 16]));
    assert_eq!(s.handle_frame(&body(&hello)), Ok(ServerEvent::Hello));
    // The attacker cannot produce `join` without the session key: the original client's
    // join (made for another server nonce) does not verify.
    let mut s_orig = ServerConn::new(secret(), Nonce([2; 16]));
    s_orig.handle_frame(&body(&hello)).unwrap();
    c.handle_frame(&body(&s_orig.welcome())).unwrap();
    let join = c.join().unwrap();
    assert_eq!(s.handle_frame(&body(&join)), Err(Refusal::WrongSecret));
}

#[test]
fn bad_rooms_versions_and_garbage() {
    assert_eq!(
        ClientConn::new(&secret(), "", Nonce([0; 16])).unwrap_err(),
        RendezvousError::BadRoomName
    );
    assert!(ClientConn::new(&secret(), "a b", Nonce([0; 16])).is_err());
    assert!(ClientConn::new(&secret(), &"x".repeat(65), Nonce([0; 16])).is_err());
    assert_eq!(
        RoomSecret::new(b"short".to_vec()).unwrap_err(),
        RendezvousError::ShortSecret
    );
    let mut s = ServerConn::new(secret(), Nonce([2; 16]));
    assert_eq!(
        s.handle_frame(b"not json at all, not at all!!!!!!!!!"),
        Err(Refusal::BadMessage)
    );
    let mut s = ServerConn::new(secret(), Nonce([2; 16]));
    let key = secret().room_key("r");
    let f = seal(
        &key,
        TO_SERVER,
        0,
        &ClientMsg::Hello {
            version: 2,
            room: "r".into(),
            nonce: Nonce([1; 16]),
        },
    );
    assert_eq!(s.handle_frame(&body(&f)), Err(Refusal::Version));
    // Join before hello.
    let mut s = ServerConn::new(secret(), Nonce([2; 16]));
    let f = seal(&key, TO_SERVER, 0, &ClientMsg::Join);
    assert_eq!(s.handle_frame(&body(&f)), Err(Refusal::BadMessage));
    // The client: garbage and a server message before the handshake.
    let mut c = ClientConn::new(&secret(), "r", Nonce([1; 16])).unwrap();
    let _ = c.hello();
    assert!(matches!(
        c.handle_frame(&[0u8; 40]),
        Err(RendezvousError::NotRendezvous(_))
    ));
}

#[test]
fn a_bad_peer_message_is_refused() {
    let (mut c, mut s) = handshake("r");
    let mut bad = Offer {
        ufrag: "abcd".into(),
        pwd: "p".repeat(22),
        candidates: vec![],
    };
    bad.candidates = vec![
        WireCandidate {
            kind: CandidateKind::Host,
            address: "0.0.0.0:1".parse().unwrap(),
            priority: 1,
            foundation: "1".into(),
        };
        1
    ];
    let f = c.signal(PeerMsg::Offer(bad.clone())).unwrap();
    assert_eq!(s.handle_frame(&body(&f)), Err(Refusal::BadMessage));
    // And the client refuses it too, should a server forward it.
    let f = s.seal(&ServerMsg::Signal {
        body: PeerMsg::Offer(bad),
    });
    // (The server is closed now, but its key still signs.)
    assert!(matches!(
        c.handle_frame(&body(&f)),
        Err(RendezvousError::BadPeerMessage(_))
    ));
}

#[test]
fn too_many_messages_end_the_connection() {
    let (mut c, mut s) = handshake("r");
    let mut last = Ok(ServerEvent::Bye);
    for _ in 0..MAX_MESSAGES {
        let f = c.signal(offer()).unwrap();
        last = s.handle_frame(&body(&f));
    }
    assert_eq!(last, Err(Refusal::TooManyMessages));
}

#[test]
fn frame_reader_bounds() {
    let mut r = FrameReader::new();
    r.push(b"HTTP/1.1 200 OK\r\n");
    assert!(matches!(r.next_frame(), Err(FrameError::TooLarge { .. })));
    let mut r = FrameReader::new();
    r.push(&[0, 0, 0, 3, 1, 2, 3]);
    assert!(matches!(r.next_frame(), Err(FrameError::TooShort { .. })));
    // Byte by byte, two frames.
    let (mut c, _) = handshake("r");
    let mut stream = c.signal(offer()).unwrap();
    stream.extend(c.signal(offer()).unwrap());
    let mut r = FrameReader::new();
    let mut frames = 0;
    for b in &stream {
        assert!(r.wanted() >= 1);
        r.push(std::slice::from_ref(b));
        while let Some(_f) = r.next_frame().unwrap() {
            frames += 1;
        }
    }
    assert_eq!(frames, 2);
    assert_eq!(r.buffered(), 0);
}

#[allow(clippy::disallowed_methods)]
fn t0() -> Instant {
    Instant::now()
}

#[test]
fn rooms_are_bounded_and_expire() {
    let t0 = t0();
    let mut rooms = Rooms::new(2, Duration::from_secs(10));
    assert_eq!(
        rooms.join(t0, "a", 1),
        Ok(Seat {
            first: true,
            peer: None
        })
    );
    assert_eq!(
        rooms.join(t0, "a", 2),
        Ok(Seat {
            first: false,
            peer: Some(1)
        })
    );
    assert_eq!(rooms.join(t0, "a", 3), Err(Refusal::RoomFull));
    assert!(rooms.join(t0, "b", 4).is_ok());
    assert_eq!(rooms.join(t0, "c", 5), Err(Refusal::TooManyRooms));
    assert_eq!(rooms.peer("a", 1), Some(2));
    assert_eq!(rooms.room_of(2), Some("a"));
    assert_eq!(rooms.room_of(9), None);
    assert_eq!(rooms.leave("a", 2), Some(1));
    assert_eq!(rooms.leave("a", 1), None);
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms.next_expiry(), Some(t0 + Duration::from_secs(10)));
    let gone = rooms.expire(t0 + Duration::from_secs(10));
    assert_eq!(gone, vec![4]);
    assert!(rooms.is_empty());
}

#[test]
fn secrets_do_not_show_in_debug() {
    let s = secret();
    assert!(!format!("{s:?}").contains("0123"));
    let (c, srv) = handshake("r");
    assert!(!format!("{c:?}{srv:?}").contains("0123"));
}
