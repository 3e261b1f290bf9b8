//! The engine driven directly: many concurrent transactions on one socket, RFC 5780
//! CHANGE-REQUEST answered from the alternate socket, timeouts and cancellation.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use engine::{Cancel, Event, Limits};
use probes::Retransmit;
use probes::binding::{BindingConfig, BindingStatus, BindingTransaction, SourceCheck};
use probes::stun::TransactionId;
use probes::stun::attr::ChangeRequest;

use crate::common::{free_port, free_port_range, serve};

fn tid(i: u64) -> TransactionId {
    let mut t = [0u8; 12];
    t[..8].copy_from_slice(&i.to_be_bytes());
    t[8..].copy_from_slice(&[0xA5; 4]);
    TransactionId(t)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn thousands_of_transactions_on_one_socket_all_demultiplexed() {
    let base = free_port_range("127.0.0.1", 10);
    let alt = free_port("127.0.0.1");
    // An alternate port makes the answers carry RESPONSE-ORIGIN (RFC 5780), which names the
    // port each one answers from; one client is the only source, so the per-source limit is
    // set out of the way.
    let _s = serve(&[
        "--listen",
        &format!("127.0.0.1:{base}-{}", base + 9),
        "--alt-port",
        &alt.to_string(),
        "--no-tcp",
        "--per-source-rate",
        "10000000",
        "--per-source-burst",
        "10000000",
    ]);
    let n = 5000u64;
    let config = BindingConfig {
        retransmit: Retransmit {
            rto: Duration::from_millis(200),
            ..Retransmit::default()
        },
        ..BindingConfig::default()
    };
    let probes = (0..n).map(|i| {
        let dest: SocketAddr = format!("127.0.0.1:{}", base + (i % 10) as u16)
            .parse()
            .unwrap();
        BindingTransaction::new(tid(i), dest, config)
    });
    let limits = Limits {
        rate: None,
        max_in_flight: 1000,
        ..Limits::default()
    };
    let mut done = vec![false; n as usize];
    let mut ok = 0;
    let report = rt()
        .block_on(engine::run(probes, limits, Cancel::never(), |ev| {
            if let Event::Finished { probe, output } = ev {
                assert!(!done[probe], "probe {probe} finished twice");
                done[probe] = true;
                assert_eq!(output.transaction_id, tid(probe as u64));
                let expected_port = base + (probe as u64 % 10) as u16;
                assert_eq!(output.destination.port(), expected_port);
                if let BindingStatus::Success(r) = &output.status {
                    assert_eq!(r.response_origin.unwrap().port(), expected_port);
                    ok += 1;
                }
            }
        }))
        .unwrap();
    assert!(done.iter().all(|d| *d));
    assert_eq!(report.counters.probes_started, n);
    assert_eq!(report.counters.probes_finished, n);
    assert_eq!(report.counters.unmatched, 0);
    // Loopback can drop under a burst; retransmission must recover every one.
    assert_eq!(ok, n, "{:?}", report.counters);
}

#[test]
fn change_request_is_answered_from_the_alternate_socket() {
    let port = free_port("127.0.0.1");
    let alt = free_port("127.0.0.1");
    let _s = serve(&[
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--alt-address",
        "127.0.0.2",
        "--alt-port",
        &alt.to_string(),
        "--no-tcp",
    ]);
    let dest: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cases = [
        (
            ChangeRequest {
                change_ip: true,
                change_port: true,
            },
            format!("127.0.0.2:{alt}"),
        ),
        (
            ChangeRequest {
                change_ip: false,
                change_port: true,
            },
            format!("127.0.0.1:{alt}"),
        ),
        (
            ChangeRequest {
                change_ip: true,
                change_port: false,
            },
            format!("127.0.0.2:{port}"),
        ),
    ];
    let probes: Vec<_> = cases
        .iter()
        .enumerate()
        .map(|(i, (cr, _))| {
            let cfg = BindingConfig {
                change_request: Some(*cr),
                source_check: SourceCheck::Any,
                retransmit: Retransmit {
                    rto: Duration::from_millis(100),
                    rc: 3,
                    rm: 4,
                    deadline: None,
                },
                ..BindingConfig::default()
            };
            BindingTransaction::new(tid(i as u64), dest, cfg)
        })
        .collect();
    let mut seen = 0;
    rt().block_on(engine::run(
        probes,
        Limits::default(),
        Cancel::never(),
        |ev| {
            if let Event::Finished { probe, output } = ev {
                let want: SocketAddr = cases[probe].1.parse().unwrap();
                assert_eq!(output.source, Some(want), "case {probe}");
                let BindingStatus::Success(r) = output.status else {
                    panic!("case {probe}: {:?}", output.status)
                };
                assert_eq!(r.response_origin, Some(want));
                seen += 1;
            }
        },
    ))
    .unwrap();
    assert_eq!(seen, 3);
}

#[test]
fn silent_destinations_time_out_on_schedule_and_count_retransmissions() {
    let port = free_port("127.0.0.1");
    let dest: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // RTO 50 ms, Rc 3, Rm 2: sends at 0, 50, 150; gives up at 250 ms.
    let cfg = BindingConfig {
        retransmit: Retransmit {
            rto: Duration::from_millis(50),
            rc: 3,
            rm: 2,
            deadline: None,
        },
        ..BindingConfig::default()
    };
    let probes: Vec<_> = (0..20)
        .map(|i| BindingTransaction::new(tid(i), dest, cfg))
        .collect();
    let start = Instant::now();
    let mut timeouts = 0;
    let report = rt()
        .block_on(engine::run(
            probes,
            Limits {
                rate: None,
                ..Limits::default()
            },
            Cancel::never(),
            |ev| {
                if let Event::Finished { output, .. } = ev {
                    assert_eq!(output.status, BindingStatus::Timeout);
                    assert_eq!(output.transmissions, 3);
                    timeouts += 1;
                }
            },
        ))
        .unwrap();
    let took = start.elapsed();
    assert_eq!(timeouts, 20);
    assert_eq!(report.counters.datagrams_sent, 60);
    assert_eq!(report.counters.retransmissions, 40);
    assert!(
        took >= Duration::from_millis(250),
        "gave up early: {took:?}"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[test]
fn cancellation_abandons_in_flight_probes_promptly() {
    let port = free_port("127.0.0.1");
    let dest: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let probes: Vec<_> = (0..100)
        .map(|i| BindingTransaction::new(tid(i), dest, BindingConfig::default()))
        .collect();
    let (handle, cancel) = Cancel::new();
    let start = Instant::now();
    let mut abandoned = 0;
    let report = rt()
        .block_on(async {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                handle.cancel();
            });
            engine::run(
                probes,
                Limits {
                    rate: None,
                    ..Limits::default()
                },
                cancel,
                |ev| {
                    if let Event::Abandoned { .. } = ev {
                        abandoned += 1;
                    }
                },
            )
            .await
        })
        .unwrap();
    assert!(report.interrupted);
    assert_eq!(abandoned, 100);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn global_deadline_stops_the_run() {
    let port = free_port("127.0.0.1");
    let dest: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let probes: Vec<_> = (0..10)
        .map(|i| BindingTransaction::new(tid(i), dest, BindingConfig::default()))
        .collect();
    let limits = Limits {
        rate: None,
        deadline: Some(Duration::from_millis(300)),
        ..Limits::default()
    };
    let start = Instant::now();
    let report = rt()
        .block_on(engine::run(probes, limits, Cancel::never(), |_| {}))
        .unwrap();
    assert!(report.deadline_reached);
    assert!(!report.interrupted);
    assert_eq!(report.counters.probes_abandoned, 10);
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn rate_limit_paces_the_run() {
    let port = free_port("127.0.0.1");
    let _s = serve(&["--listen", &format!("127.0.0.1:{port}"), "--no-tcp"]);
    let dest: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let probes: Vec<_> = (0..60)
        .map(|i| BindingTransaction::new(tid(i), dest, BindingConfig::default()))
        .collect();
    // 100 pps with a burst of 10: 60 packets need at least (60 - 10) / 100 = 0.5 s.
    let limits = Limits {
        rate: Some(engine::Rate {
            pps: 100,
            burst: 10,
        }),
        ..Limits::default()
    };
    let start = Instant::now();
    let report = rt()
        .block_on(engine::run(probes, limits, Cancel::never(), |_| {}))
        .unwrap();
    let took = start.elapsed();
    assert_eq!(report.counters.probes_finished, 60);
    assert!(
        took >= Duration::from_millis(480),
        "too fast for the cap: {took:?}"
    );
    assert!(took < Duration::from_millis(1500), "too slow: {took:?}");
}

/// Replies dropped at random on the path (30 %, by the lab router's nftables `numgen`): every
/// transaction still completes through retransmission, and the counts add up.
#[test]
fn dropped_replies_are_recovered_by_retransmission_and_counted() {
    use crate::support::lab::{NatMode, Ns, PUBLIC_IP_1};
    let mut lab = crate::lab_or_skip!(NatMode::NoNat);
    let rules = "
table inet lossy {
    chain forward {
        type filter hook forward priority filter; policy accept;
        ip saddr 198.18.0.0/24 udp sport 3478 numgen random mod 100 < 30 drop
    }
}
";
    let path = lab.dir().join("lossy.nft");
    std::fs::write(&path, rules).unwrap();
    lab.exec_ok(Ns::Router, &["nft", "-f", path.to_str().unwrap()])
        .unwrap();
    let listen = format!("{PUBLIC_IP_1}:3478");
    lab.spawn_in(
        Ns::Public,
        &[
            crate::common::bin(),
            "serve",
            "--listen",
            &listen,
            "--no-tcp",
        ],
    )
    .unwrap();
    lab.wait_udp_listener(Ns::Public, &listen, Duration::from_secs(5))
        .unwrap();
    let out = lab
        .exec_in(
            Ns::Client,
            &[
                "timeout",
                "60",
                crate::common::bin(),
                "stun",
                &listen,
                "--count",
                "100",
                "--interval",
                "0",
                "--rto",
                "50",
                "--timeout",
                "5000",
                "--rate",
                "10000",
                "--json",
            ],
        )
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = &v["targets"][0];
    let e = &v["engine"];
    let answered = t["answered"].as_u64().unwrap();
    let retransmitted = t["retransmitted"].as_u64().unwrap();
    // Losing all 7 transmissions of one transaction has probability 0.3^7 ≈ 2e-4.
    assert!(answered >= 99, "{v:#}");
    // About 30 of 100 transactions need a retransmission (binomial, sd ≈ 4.6).
    assert!((10..=55).contains(&retransmitted), "{v:#}");
    let sent = e["datagrams_sent"].as_u64().unwrap();
    let retx = e["retransmissions"].as_u64().unwrap();
    assert_eq!(sent, 100 + retx, "{v:#}");
    assert!(retx >= retransmitted, "{v:#}");
    // Karn: RTTs of retransmitted transactions are not sampled.
    assert_eq!(
        t["rtt"]["samples"].as_u64().unwrap(),
        answered - retransmitted,
        "{v:#}"
    );
}
