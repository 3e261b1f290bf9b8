//! The drive loop on paused (virtual) tokio time: retransmission schedule, rate limit and
//! deadlines checked exactly, without sleeping. The destinations are loopback sockets that are
//! bound but never read, so nothing answers and no ICMP comes back.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use engine::{Cancel, Event, Limits, Rate};
use probes::Retransmit;
use probes::binding::{BindingConfig, BindingStatus, BindingTransaction};
use probes::stun::TransactionId;

fn silent() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let a = s.local_addr().unwrap();
    (s, a)
}

fn tid(i: u64) -> TransactionId {
    let mut t = [0u8; 12];
    t[..8].copy_from_slice(&i.to_be_bytes());
    TransactionId(t)
}

fn now() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

#[tokio::test(start_paused = true)]
async fn retransmissions_follow_rfc8489_schedule_exactly() {
    let (_keep, dest) = silent();
    let cfg = BindingConfig {
        retransmit: Retransmit {
            rto: Duration::from_millis(100),
            rc: 4,
            rm: 3,
            deadline: None,
        },
        ..BindingConfig::default()
    };
    let start = now();
    let mut sends: Vec<(u8, Duration)> = Vec::new();
    let mut outcome = None;
    let report = engine::run(
        vec![BindingTransaction::new(tid(1), dest, cfg)],
        Limits {
            rate: None,
            ..Limits::default()
        },
        Cancel::never(),
        |ev| match ev {
            Event::Transmitted { attempt, .. } => sends.push((attempt, now() - start)),
            Event::Finished { output, .. } => outcome = Some((output, now() - start)),
            _ => {}
        },
    )
    .await
    .unwrap();
    let ms: Vec<(u8, u128)> = sends.iter().map(|(a, d)| (*a, d.as_millis())).collect();
    // RTO 100 ms, Rc 4: sent at 0, 100, 300, 700; gives up Rm·RTO = 300 ms later, at 1000.
    assert_eq!(ms, vec![(0, 0), (1, 100), (2, 300), (3, 700)]);
    let (out, at) = outcome.unwrap();
    assert_eq!(out.status, BindingStatus::Timeout);
    assert_eq!(at.as_millis(), 1000);
    assert_eq!(report.counters.retransmissions, 3);
}

#[tokio::test(start_paused = true)]
async fn token_bucket_paces_every_datagram_including_retransmissions() {
    let (_keep, dest) = silent();
    // 20 transactions × 2 transmissions = 40 datagrams at 10/s with a burst of 5. The RTO is
    // long enough for a queued retransmission to get its token before the give-up time
    // (a retransmission whose token comes only at or after it is, rightly, never sent).
    let cfg = BindingConfig {
        retransmit: Retransmit {
            rto: Duration::from_millis(300),
            rc: 2,
            rm: 30,
            deadline: None,
        },
        ..BindingConfig::default()
    };
    let probes: Vec<_> = (0..20)
        .map(|i| BindingTransaction::new(tid(i), dest, cfg))
        .collect();
    let start = now();
    let mut times = Vec::new();
    let report = engine::run(
        probes,
        Limits {
            rate: Some(Rate { pps: 10, burst: 5 }),
            ..Limits::default()
        },
        Cancel::never(),
        |ev| {
            if let Event::Transmitted { .. } = ev {
                times.push(now() - start);
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(report.counters.datagrams_sent, 40);
    // The first 5 go at once; after that one per 100 ms: datagram n (0-based, n ≥ 5) not before
    // (n - 4) × 100 ms.
    for (n, t) in times.iter().enumerate() {
        if n >= 5 {
            let earliest = Duration::from_millis((n as u64 - 4) * 100);
            assert!(
                *t + Duration::from_millis(1) >= earliest,
                "datagram {n} at {t:?}"
            );
        }
    }
    // And no faster than the rate over any window: 40 datagrams need ≥ 3.5 s.
    assert!(
        times.last().unwrap().as_millis() >= 3500,
        "{:?}",
        times.last()
    );
}

#[tokio::test(start_paused = true)]
async fn in_flight_cap_is_never_exceeded() {
    let (_keep, dest) = silent();
    let cfg = BindingConfig {
        retransmit: Retransmit {
            rto: Duration::from_millis(10),
            rc: 1,
            rm: 5,
            deadline: None,
        },
        ..BindingConfig::default()
    };
    let probes: Vec<_> = (0..100)
        .map(|i| BindingTransaction::new(tid(i), dest, cfg))
        .collect();
    let mut live = 0i64;
    let mut peak = 0i64;
    engine::run(
        probes,
        Limits {
            rate: None,
            max_in_flight: 7,
            ..Limits::default()
        },
        Cancel::never(),
        |ev| match ev {
            Event::Started { .. } => {
                live += 1;
                peak = peak.max(live);
            }
            Event::Finished { .. } | Event::Abandoned { .. } => live -= 1,
            _ => {}
        },
    )
    .await
    .unwrap();
    assert_eq!(peak, 7);
    assert_eq!(live, 0);
}

#[tokio::test(start_paused = true)]
async fn global_deadline_abandons_exactly_at_the_deadline() {
    let (_keep, dest) = silent();
    let probes: Vec<_> = (0..5)
        .map(|i| BindingTransaction::new(tid(i), dest, BindingConfig::default()))
        .collect();
    let start = now();
    let mut abandoned_at = Vec::new();
    let report = engine::run(
        probes,
        Limits {
            rate: None,
            deadline: Some(Duration::from_millis(1234)),
            ..Limits::default()
        },
        Cancel::never(),
        |ev| {
            if let Event::Abandoned { .. } = ev {
                abandoned_at.push((now() - start).as_millis());
            }
        },
    )
    .await
    .unwrap();
    assert!(report.deadline_reached);
    assert_eq!(abandoned_at, vec![1234; 5]);
}

#[tokio::test(start_paused = true)]
async fn a_retransmission_whose_token_comes_too_late_is_not_sent() {
    let (_keep, dest) = silent();
    // One token per second; the retransmission is due after 100 ms and the transaction gives up
    // at 200 ms: the second transaction's first send takes the only token in reach.
    let cfg = BindingConfig {
        retransmit: Retransmit {
            rto: Duration::from_millis(100),
            rc: 2,
            rm: 1,
            deadline: None,
        },
        ..BindingConfig::default()
    };
    let probes: Vec<_> = (0..2)
        .map(|i| BindingTransaction::new(tid(i), dest, cfg))
        .collect();
    let mut transmissions = Vec::new();
    engine::run(
        probes,
        Limits {
            rate: Some(Rate { pps: 1, burst: 1 }),
            ..Limits::default()
        },
        Cancel::never(),
        |ev| {
            if let Event::Finished { output, .. } = ev {
                transmissions.push(output.transmissions);
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(transmissions, vec![1, 1]);
}

/// `engine::scan::udp_binding_connected` (the sweep's and the check's UDP probe) runs on the
/// same clock: against a bound socket that never answers, the RFC 8489 schedule ends exactly
/// at its give-up time, having sent exactly Rc datagrams.
#[tokio::test(start_paused = true)]
async fn connected_udp_probe_gives_up_exactly_on_schedule() {
    let (keep, dest) = silent();
    keep.set_nonblocking(true).unwrap();
    let cfg = BindingConfig {
        retransmit: Retransmit {
            rto: Duration::from_millis(100),
            rc: 3,
            rm: 2,
            deadline: None,
        },
        ..BindingConfig::default()
    };
    let start = now();
    let outcome = engine::scan::udp_binding_connected(dest, tid(9), cfg)
        .await
        .unwrap();
    assert_eq!(outcome, engine::scan::UdpPortOutcome::Silent);
    // Sent at 0, 100, 300; gives up Rm·RTO = 200 ms after the last, at 500.
    assert_eq!((now() - start).as_millis(), 500);
    let mut buf = [0u8; 256];
    let sent = std::iter::from_fn(|| keep.recv(&mut buf).ok()).count();
    assert_eq!(sent, 3);
}

/// An answer that a peer holds back 30 ms of virtual time has an RTT of exactly 30 ms.
#[tokio::test(start_paused = true)]
async fn connected_udp_probe_times_the_answer_on_the_engine_clock() {
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dest = peer.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        let (n, from) = peer.recv_from(&mut buf).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        let addrs = probes::reflector::ServerAddrs {
            primary_ip: dest.ip(),
            primary_port: dest.port(),
            alt_ip: None,
            alt_port: None,
        };
        let mut out = Vec::new();
        probes::reflector::respond(&buf[..n], from, &addrs, None, &mut out);
        peer.send_to(&out, from).await.unwrap();
    });
    let outcome = engine::scan::udp_binding_connected(dest, tid(10), BindingConfig::default())
        .await
        .unwrap();
    let engine::scan::UdpPortOutcome::Answered { binding } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(binding.rtt, Some(Duration::from_millis(30)));
}
