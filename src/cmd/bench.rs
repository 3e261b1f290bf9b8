//! `stunmap bench`: the engine's throughput and memory on this machine, measured against a
//! raw `sendmmsg`/`recvmmsg` loop in the same run, over loopback against an in-process
//! `serve` on a range of ports. Nothing leaves the machine.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use engine::{Cancel, Event, Limits, SendPath};
use probes::Retransmit;
use probes::binding::{BindingConfig, BindingTransaction};
use probes::stun::TransactionId;
use serde::Serialize;

use crate::exit::{Outcome, usage};
use crate::serve::{ServeConfig, ServeStats, serve};

/// Flags of `stunmap bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Ports the in-process reflector listens on (distinct destinations for the engine).
    #[arg(long, default_value_t = 1000)]
    ports: u16,
    /// Transactions per port.
    #[arg(long, default_value_t = 100)]
    count: u32,
    /// Transactions in flight.
    #[arg(long, default_value_t = 1024)]
    in_flight: usize,
    /// Rounds of each measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// First port of the reflector's range on 127.0.0.1.
    #[arg(long, default_value_t = 21000)]
    base_port: u16,
    /// Also measure memory: hold this many transactions in flight to a silent port and report
    /// the resident memory per transaction (0 to skip).
    #[arg(long, default_value_t = 100_000)]
    memory: usize,
    /// Datagrams for the one-destination burst comparison (GSO vs sendmmsg vs sendmsg; 0 to
    /// skip).
    #[arg(long, default_value_t = 1_000_000)]
    blast: u64,
    /// Datagram size for the burst comparison, bytes.
    #[arg(long, default_value_t = 100)]
    blast_size: usize,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct PathResult {
    path: &'static str,
    /// Answered transactions per second, one per round.
    rates: Vec<f64>,
    median: f64,
    vs_raw: f64,
    lost: u64,
}

#[derive(Debug, Serialize)]
struct MemoryResult {
    in_flight: usize,
    rss_growth_bytes: u64,
    bytes_per_transaction: f64,
    size_of_binding_transaction: usize,
}

#[derive(Debug, Serialize)]
struct Report {
    schema: &'static str,
    ports: u16,
    transactions: u64,
    in_flight: usize,
    rounds: u32,
    paths: Vec<PathResult>,
    memory: Option<MemoryResult>,
    blast_size: usize,
    blast: Vec<engine::bench::BlastResult>,
    peak_rss_bytes: Option<u64>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(0.0)
}

pub(crate) fn run(args: Args) -> Result<Outcome> {
    if args.ports == 0 || args.count == 0 || args.in_flight == 0 || args.rounds == 0 {
        return Err(usage(
            "--ports, --count, --in-flight and --rounds must be at least 1",
        ));
    }
    let Some(last) = args.base_port.checked_add(args.ports - 1) else {
        return Err(usage("--base-port + --ports runs past 65535"));
    };
    // Memory first, in a fresh process with nothing else running: after the throughput rounds
    // the allocator holds fragmented arenas, and the reflector's thread allocates on its own,
    // so growth measured then would not be the engine's.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let memory = if args.memory > 0 {
        Some(rt.block_on(memory_round(args.memory))?)
    } else {
        None
    };
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    // The reflector runs on its own thread and runtime, like a separate server would.
    let cfg = ServeConfig {
        listen: vec![(lo, (args.base_port, last))],
        alt_ip: None,
        alt_port: None,
        tcp: false,
        software: Some("stunmap-bench".into()),
        max_tcp: 1,
        tcp_idle: Duration::from_secs(1),
    };
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready_tx.send(Err(anyhow::anyhow!(e)));
                return;
            }
        };
        let tx = ready_tx.clone();
        let r = rt.block_on(serve(cfg, Arc::new(ServeStats::default()), move |_| {
            let _ = tx.send(Ok(()));
        }));
        if let Err(e) = r {
            let _ = ready_tx.send(Err(e));
        }
    });
    ready_rx.recv().context("reflector thread died")??;

    let targets: Vec<SocketAddr> = (args.base_port..=last)
        .map(|p| SocketAddr::new(lo, p))
        .collect();
    let total = u64::from(args.count) * targets.len() as u64;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut raw = Vec::new();
    let mut batched = Vec::new();
    let mut per_packet = Vec::new();
    let mut lost = [0u64; 3];
    for round in 0..args.rounds {
        if !args.json {
            eprintln!("round {}/{}", round + 1, args.rounds);
        }
        let r =
            engine::bench::raw_loop(&targets, total, args.in_flight, Duration::from_millis(200))?;
        lost[0] += r.sent - r.received;
        raw.push(r.rate());
        for (path, out, l) in [
            (SendPath::Batched, &mut batched, 1usize),
            (SendPath::PerPacket, &mut per_packet, 2usize),
        ] {
            let (rate, missing) =
                rt.block_on(engine_round(&targets, total, args.in_flight, path))?;
            if let Some(x) = lost.get_mut(l) {
                *x += missing;
            }
            out.push(rate);
        }
    }
    let raw_median = median(&raw);
    let paths = [
        ("raw sendmmsg/recvmmsg loop", raw, lost[0]),
        ("engine, sendmmsg batches", batched, lost[1]),
        ("engine, one sendmsg per datagram", per_packet, lost[2]),
    ]
    .into_iter()
    .map(|(path, rates, lost)| {
        let m = median(&rates);
        PathResult {
            path,
            median: m,
            vs_raw: if raw_median > 0.0 {
                m / raw_median
            } else {
                0.0
            },
            rates,
            lost,
        }
    })
    .collect();

    let mut blast = Vec::new();
    if args.blast > 0 {
        use engine::bench::{BlastPath, blast as run_blast};
        for path in [BlastPath::Gso, BlastPath::Mmsg, BlastPath::PerPacket] {
            let mut best: Option<engine::bench::BlastResult> = None;
            for _ in 0..args.rounds {
                let r = rt.block_on(run_blast(args.blast, args.blast_size, path))?;
                if best.is_none_or(|b| r.rate() > b.rate()) {
                    best = Some(r);
                }
            }
            blast.extend(best);
        }
    }
    let report = Report {
        schema: "stunmap.bench/1",
        ports: args.ports,
        transactions: total,
        in_flight: args.in_flight,
        rounds: args.rounds,
        paths,
        memory,
        blast_size: args.blast_size,
        blast,
        peak_rss_bytes: engine::bench::peak_rss_bytes(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_human(&report);
    }
    Ok(Outcome::Ok)
}

async fn engine_round(
    targets: &[SocketAddr],
    total: u64,
    in_flight: usize,
    send_path: SendPath,
) -> Result<(f64, u64)> {
    let n = targets.len() as u64;
    let config = BindingConfig {
        retransmit: Retransmit {
            rto: Duration::from_millis(200),
            ..Retransmit::default()
        },
        software: Some("stunmap-bench"),
        ..BindingConfig::default()
    };
    let config = std::sync::Arc::new(config);
    let probes = (0..total).filter_map(move |i| {
        let mut tid = [0u8; 12];
        tid[..8].copy_from_slice(&i.to_be_bytes());
        let dest = targets.get((i % n) as usize).copied()?;
        Some(BindingTransaction::with_shared_config(
            TransactionId(tid),
            dest,
            config.clone(),
        ))
    });
    let limits = Limits {
        rate: None,
        max_in_flight: in_flight,
        send_path,
        ..Limits::default()
    };
    let mut answered = 0u64;
    let report = engine::run(probes, limits, Cancel::never(), |ev| {
        if let Event::Finished { output, .. } = ev {
            if !matches!(output.status, probes::binding::BindingStatus::Timeout) {
                answered += 1;
            }
        }
    })
    .await?;
    Ok((answered as f64 / report.elapsed.max(1e-9), total - answered))
}

async fn memory_round(n: usize) -> Result<MemoryResult> {
    // A port nobody listens on: every transaction stays in flight until cancelled.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
    let config = BindingConfig {
        retransmit: Retransmit {
            rto: Duration::from_secs(30),
            ..Retransmit::default()
        },
        ..BindingConfig::default()
    };
    let shared = std::sync::Arc::new(config);
    let probes = (0..n as u64).map(move |i| {
        let mut tid = [0u8; 12];
        tid[..8].copy_from_slice(&i.to_be_bytes());
        BindingTransaction::with_shared_config(TransactionId(tid), silent, shared.clone())
    });
    let (handle, cancel) = Cancel::new();
    // Warm the engine's sockets and buffers first so they are not counted.
    let _ = engine::run(
        std::iter::once(BindingTransaction::new(
            TransactionId([1; 12]),
            silent,
            config,
        )),
        Limits {
            rate: None,
            deadline: Some(Duration::from_millis(1)),
            ..Limits::default()
        },
        Cancel::never(),
        |_| {},
    )
    .await;
    let before = engine::bench::rss_bytes().unwrap_or(0);
    let mut at_peak = 0;
    let limits = Limits {
        rate: None,
        max_in_flight: n,
        ..Limits::default()
    };
    engine::run(probes, limits, cancel, |ev| {
        if let Event::Started { probe } = ev {
            if probe + 1 == n {
                at_peak = engine::bench::rss_bytes().unwrap_or(0);
                handle.cancel();
            }
        }
    })
    .await?;
    let growth = at_peak.saturating_sub(before);
    Ok(MemoryResult {
        in_flight: n,
        rss_growth_bytes: growth,
        bytes_per_transaction: growth as f64 / n as f64,
        size_of_binding_transaction: std::mem::size_of::<BindingTransaction>(),
    })
}

fn print_human(r: &Report) {
    println!(
        "{} ports x {} transactions = {}, {} in flight, median of {} rounds, loopback",
        r.ports,
        r.transactions / u64::from(r.ports),
        r.transactions,
        r.in_flight,
        r.rounds
    );
    println!(
        "{:<36} {:>14} {:>8} {:>8}",
        "path", "median tx/s", "vs raw", "lost"
    );
    for p in &r.paths {
        println!(
            "{:<36} {:>14.0} {:>7.0}% {:>8}",
            p.path,
            p.median,
            p.vs_raw * 100.0,
            p.lost
        );
    }
    if let Some(m) = &r.memory {
        println!(
            "memory: {} transactions in flight grew RSS by {} KiB = {:.0} bytes each \
             (BindingTransaction itself: {} bytes)",
            m.in_flight,
            m.rss_growth_bytes / 1024,
            m.bytes_per_transaction,
            m.size_of_binding_transaction
        );
    }
    if !r.blast.is_empty() {
        println!(
            "one destination, {}-byte datagrams (best of {} rounds):",
            r.blast_size, r.rounds
        );
        for b in &r.blast {
            println!(
                "  {:<12} {:>12.0} datagrams/s received ({} of {} sent)",
                format!("{:?}", b.path),
                b.rate(),
                b.received,
                b.sent
            );
        }
    }
    if let Some(p) = r.peak_rss_bytes {
        println!(
            "peak RSS of this process (client + reflector): {} MiB",
            p >> 20
        );
    }
}
