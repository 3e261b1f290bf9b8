//! The TURN machines — `AllocateProbe` (with and without credentials, exercising permission
//! and channel) and the relay `AuditProbe` — driven by arbitrary input: random or STUN-looking
//! datagrams that carry the outstanding transaction id, from the server or elsewhere, timeouts,
//! cancellation. Never a panic; at most one output; nothing sent once done.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use probes::stun::TransactionId;
use probes::stun::TransactionIdSource;
use probes::turn::allocate::{AllocateConfig, AllocateProbe};
use probes::turn::session::SessionConfig;
use probes::turn::audit::{AuditConfig, AuditProbe};
use probes::turn::auth::{Credentials, Password};
use probes::Transport;
use probes::{LocalSocket, Probe};

fuzz_target!(|input: &[u8]| {
    let server: SocketAddr = "192.0.2.1:3478".parse().unwrap();
    let other: SocketAddr = "192.0.2.1:3479".parse().unwrap();
    let Some((&mode, ops)) = input.split_first() else {
        return;
    };
    let transport = if mode & 2 == 0 { Transport::Udp } else { Transport::Tcp };
    let mut session = SessionConfig::new(server, transport, LocalSocket::Private(0));
    if mode & 1 == 1 {
        session.credentials = Some(Credentials::new("user", Password::new("pass")));
    }
    if mode & 4 == 0 {
        let mut p = AllocateProbe::new(
            AllocateConfig {
                session,
                exercise: mode & 8 == 0,
            },
            TransactionIdSource::new([mode; 16]),
        );
        drive(&mut p, server, other, ops);
    } else {
        let config = AuditConfig {
            session,
            ipv6_only: mode & 8 != 0,
        };
        let mut p = AuditProbe::new(config, TransactionIdSource::new([mode; 16]));
        drive(&mut p, server, other, ops);
    }
});

fn drive<P: Probe>(p: &mut P, server: SocketAddr, other: SocketAddr, input: &[u8]) {
    let mut now = Instant::now();
    let mut ops = input;
    let mut outputs = 0;
    let mut last_tid = TransactionId([0; 12]);
    let mut buf = Vec::new();
    while let Some((&op, rest)) = ops.split_first() {
        ops = rest;
        match op % 5 {
            0 => {
                let step = ops.first().copied().unwrap_or(0);
                ops = ops.get(1..).unwrap_or(&[]);
                now += Duration::from_millis(u64::from(step) * 40);
                p.handle_timeout(now);
            }
            1 | 2 => {
                let len = usize::from(ops.first().copied().unwrap_or(0)).min(ops.len().saturating_sub(1));
                let mut d = ops.get(1..1 + len).unwrap_or(&[]).to_vec();
                ops = ops.get(1 + len..).unwrap_or(&[]);
                if op & 0x10 != 0 && d.len() >= 20 {
                    d[0] &= 0x3F;
                    d[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
                    d[8..20].copy_from_slice(&last_tid.0);
                    let body = u16::try_from((d.len() - 20) & !3).unwrap();
                    d.truncate(20 + usize::from(body));
                    d[2..4].copy_from_slice(&body.to_be_bytes());
                }
                let from = if op % 5 == 1 { server } else { other };
                let _ = p.handle_input(now, from, &d);
            }
            3 => {
                buf.clear();
                let mut n = 0;
                while let Some(t) = p.poll_transmit(now, &mut buf) {
                    assert!(!p.is_done(), "transmits after finishing");
                    last_tid = t.transaction_id;
                    n += 1;
                    assert!(n < 64, "poll_transmit does not stop");
                }
            }
            _ => {
                let _ = p.cancel(now);
            }
        }
        if p.take_output().is_some() {
            outputs += 1;
        }
        assert!(outputs <= 1, "more than one output");
    }
}
