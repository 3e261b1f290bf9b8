//! A `stunmap pair` session (the `is` ICE agent inside) driven by arbitrary input: datagrams
//! on the ICE and TURN sockets (or bytes of a TURN stream) from the STUN server, the TURN server, the peer's candidates or
//! strangers (random bytes, or bytes wrapped as STUN/Data indications), signalling messages
//! parsed from JSON (offers, reports, the peer leaving), timeouts and cancellation. Never a
//! panic; it always finishes once time runs far enough; at most one output.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use probes::pair::model::Role;
use probes::pair::rendezvous::PeerMsg;
use probes::pair::session::{Inbound, PairConfig, PairSession, Signalled, TurnConfig};
use probes::turn::auth::{Credentials, Password};
use probes::Transport;
use probes::{LocalSocket, Probe, Received};

fuzz_target!(|input: &[u8]| {
    let stun: SocketAddr = "192.0.2.10:3478".parse().unwrap();
    let turn: SocketAddr = "192.0.2.10:3479".parse().unwrap();
    let peer: SocketAddr = "198.51.100.7:4000".parse().unwrap();
    let Some((&mode, ops)) = input.split_first() else {
        return;
    };
    let role = if mode & 1 == 0 { Role::Controlling } else { Role::Controlled };
    let mut cfg = PairConfig::new(role, stun);
    cfg.stun = vec![stun];
    if mode & 2 == 2 {
        cfg.turn = Some(TurnConfig {
            server: turn,
            transport: if mode & 4 == 0 { Transport::Udp } else { Transport::Tcp },
            credentials: Credentials::new("user", Password::new("pass")),
        });
    }
    cfg.ufrag = "ufragufrag".into();
    cfg.pwd = "passwordpasswordpassword".into();
    cfg.seed = [mode; 16];
    let mut s = PairSession::new(cfg);
    s.handle_local_addr(LocalSocket::Private(0), "203.0.113.2:5000".parse().unwrap());
    s.handle_local_addr(LocalSocket::Private(1), "203.0.113.2:5001".parse().unwrap());
    let mut now = Instant::now();
    let start = now;
    let mut buf = Vec::new();
    let mut rest = ops;
    let mut outputs = 0;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        // A length byte, then that many bytes of payload (for the ops that take one).
        let (len, body) = rest.split_first().map_or((0, rest), |(l, b)| (usize::from(*l), b));
        let (chunk, after) = body.split_at(len.min(body.len()));
        match op % 7 {
            6 => {
                rest = after;
                // Bytes on the TURN stream (empty: it closed).
                let _ = s.handle_input_on(now, Received { socket: LocalSocket::Default, from: turn, data: chunk });
            }
            0 => {
                rest = after;
                let from = [stun, peer, "192.0.2.99:1".parse().unwrap()][usize::from(op / 6 % 3)];
                let _ = s.handle_input_on(now, Received { socket: LocalSocket::Private(0), from, data: chunk });
            }
            1 => {
                rest = after;
                let _ = s.handle_input_on(now, Received { socket: LocalSocket::Private(1), from: turn, data: chunk });
            }
            2 => {
                rest = after;
                if let Ok(m) = serde_json::from_slice::<PeerMsg>(chunk) {
                    s.handle_signal(now, Inbound::Peer(m));
                }
            }
            3 => s.handle_signal(now, Inbound::PeerLeft),
            4 => {
                now += Duration::from_millis(u64::from(op) * 7);
                s.handle_timeout(now);
            }
            _ => {
                let _ = s.cancel(now);
            }
        }
        while s.poll_transmit(now, &mut buf).is_some() {
            buf.clear();
        }
        while s.poll_signal().is_some() {}
        if s.take_output().is_some() {
            outputs += 1;
        }
    }
    // Time alone ends every run.
    for _ in 0..10_000 {
        if s.is_done() {
            break;
        }
        now = s.poll_timeout().unwrap_or(now).max(now + Duration::from_millis(1));
        s.handle_timeout(now);
        while s.poll_transmit(now, &mut buf).is_some() {
            buf.clear();
        }
        while s.poll_signal().is_some() {}
    }
    assert!(s.is_done(), "still running after {:?}", now - start);
    if s.take_output().is_some() {
        outputs += 1;
    }
    assert!(outputs <= 1);
});
