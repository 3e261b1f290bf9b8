//! `BindingTransaction` driven by arbitrary input: datagrams (random bytes, or STUN-looking
//! ones carrying the transaction's own id) from the right or a wrong source, timeouts at
//! arbitrary times, cancellation. It must never panic, never transmit after finishing, and
//! produce exactly one output once done.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use probes::binding::{BindingConfig, BindingTransaction, SourceCheck};
use probes::stun::TransactionId;
use probes::{Probe, Retransmit};

fuzz_target!(|input: &[u8]| {
    let server: SocketAddr = "192.0.2.1:3478".parse().unwrap();
    let other: SocketAddr = "192.0.2.2:3478".parse().unwrap();
    let tid = TransactionId([0xA5; 12]);
    let mut config = BindingConfig::default();
    if input.first().is_some_and(|b| b & 1 == 1) {
        config.source_check = SourceCheck::Any;
        config.retransmit = Retransmit {
            deadline: Some(Duration::from_millis(700)),
            ..Retransmit::default()
        };
    }
    let mut p = BindingTransaction::new(tid, server, config);
    drive(&mut p, tid, server, other, input);
});

/// Shared op interpreter (same shape as the TURN machine target).
fn drive<P: Probe>(p: &mut P, tid: TransactionId, server: SocketAddr, other: SocketAddr, input: &[u8]) {
    let t0 = Instant::now();
    let mut now = t0;
    let mut ops = input;
    let mut outputs = 0;
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
                    // Make it look like a reply to us: cookie and our transaction id.
                    d[0] &= 0x3F;
                    d[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
                    d[8..20].copy_from_slice(&tid.0);
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
                while let Some(_t) = p.poll_transmit(now, &mut buf) {
                    assert!(!p.is_done() || n == 0, "transmits after finishing");
                    n += 1;
                    assert!(n < 64, "poll_transmit does not stop");
                }
                if let Some(t) = p.poll_timeout() {
                    assert!(t + Duration::from_secs(3600) > now);
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
        if p.is_done() {
            assert!(p.poll_timeout().is_none() || outputs == 1);
        }
    }
}
