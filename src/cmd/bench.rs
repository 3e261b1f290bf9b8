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

use crate::app::{Command, Ctx, OutputArgs, Report, ReportFiles, RunInfo};
use crate::exit::{Outcome, usage};
use crate::report::doc::{Block, Cell, Doc, Section, columns};
use crate::serve::{ServeConfig, ServeStats, serve};

/// Flags of `stunmap bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Ports the in-process reflector listens on (distinct destinations for the engine),
    /// 1 to 20000.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u16).range(1..=20_000))]
    ports: u16,
    /// Transactions per port, 1 to 100000.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    count: u32,
    /// Transactions in flight, 1 to 1000000.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    in_flight: u32,
    /// Rounds of each measurement (the median is reported), 1 to 100.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// First port of the reflector's range on 127.0.0.1.
    #[arg(long, default_value_t = 21000, value_parser = clap::value_parser!(u16).range(1..))]
    base_port: u16,
    /// Also measure memory: hold this many transactions in flight to a silent port and report
    /// the resident memory per transaction (0 to skip; at most 2000000).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(0..=2_000_000))]
    memory: u32,
    /// Datagrams for the one-destination burst comparison (GSO vs sendmmsg vs sendmsg; 0 to
    /// skip; at most 100000000).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(0..=100_000_000))]
    blast: u64,
    /// Datagram size for the burst comparison, 1 to 1400 bytes.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1400))]
    blast_size: u16,
    #[command(flatten)]
    output: OutputArgs,
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

/// The report of `stunmap bench` (schema `stunmap.bench/1`).
#[derive(Debug, Serialize)]
pub(crate) struct BenchReport {
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
    if args.base_port.checked_add(args.ports - 1).is_none() {
        return Err(usage("--base-port + --ports runs past 65535"));
    }
    let output = args.output.clone();
    crate::app::run(Bench(args), &output, &ReportFiles::default(), "rounds")
}

/// A planned benchmark.
struct Bench(Args);

impl Command for Bench {
    type Report = BenchReport;

    async fn execute(self, ctx: Ctx) -> Result<BenchReport> {
        measure(self.0, &ctx).await
    }
}

/// Start the reflector on its own thread and runtime, like a separate server would be.
fn start_reflector(base: u16, last: u16) -> Result<()> {
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let cfg = ServeConfig {
        listen: vec![(lo, (base, last))],
        alt_ip: None,
        alt_port: None,
        tcp: false,
        software: Some("stunmap-bench".into()),
        threads: 1,
        // One source sends everything: the per-source limit must not be what is measured.
        per_source: probes::reflector::limit::SourceRate {
            per_second: 10_000_000,
            burst: 10_000_000,
        },
        tcp_limits: crate::serve::TcpLimits::DEFAULT,
    };
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = match crate::app::runtime::build(crate::app::Flavor::CurrentThread) {
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
    ready_rx.recv().context("reflector thread died")?
}

async fn measure(args: Args, ctx: &Ctx) -> Result<BenchReport> {
    let last = args.base_port.saturating_add(args.ports - 1);
    let in_flight = args.in_flight as usize;
    ctx.plan(u64::from(args.rounds) * 2 + u64::from(args.memory > 0));
    // Memory first, in a fresh process with nothing else running: after the throughput rounds
    // the allocator holds fragmented arenas, and the reflector's thread allocates on its own,
    // so growth measured then would not be the engine's.
    let memory = if args.memory > 0 {
        let m = memory_round(args.memory as usize, &ctx.cancel).await?;
        ctx.advance(1);
        Some(m)
    } else {
        None
    };
    start_reflector(args.base_port, last)?;
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let targets: Vec<SocketAddr> = (args.base_port..=last)
        .map(|p| SocketAddr::new(lo, p))
        .collect();
    let total = u64::from(args.count) * targets.len() as u64;
    let mut raw = Vec::new();
    let mut batched = Vec::new();
    let mut per_packet = Vec::new();
    let mut lost = [0u64; 3];
    for round in 0..args.rounds {
        if ctx.stopped() {
            break;
        }
        ctx.status(format!("round {}/{}", round + 1, args.rounds));
        // The raw loop blocks: it runs on its own thread so a signal is seen at once (the
        // thread is left to finish its bounded run when the benchmark stops).
        let t = targets.clone();
        let raw_run = tokio::task::spawn_blocking(move || {
            engine::bench::raw_loop(&t, total, in_flight, Duration::from_millis(200))
        });
        let r = tokio::select! {
            r = raw_run => r.context("the raw loop's thread")??,
            _ = ctx.cancel.cancelled() => break,
        };
        lost[0] += r.sent - r.received;
        raw.push(r.rate());
        for (path, out, l) in [
            (SendPath::Batched, &mut batched, 1usize),
            (SendPath::PerPacket, &mut per_packet, 2usize),
        ] {
            let (rate, missing) =
                engine_round(&targets, total, in_flight, path, &ctx.cancel).await?;
            if let Some(x) = lost.get_mut(l) {
                *x += missing;
            }
            out.push(rate);
        }
        ctx.advance(2);
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
                if ctx.stopped() {
                    break;
                }
                let r = run_blast(args.blast, usize::from(args.blast_size), path).await?;
                if best.is_none_or(|b| r.rate() > b.rate()) {
                    best = Some(r);
                }
            }
            blast.extend(best);
        }
    }
    Ok(BenchReport {
        ports: args.ports,
        transactions: total,
        in_flight,
        rounds: args.rounds,
        paths,
        memory,
        blast_size: usize::from(args.blast_size),
        blast,
        peak_rss_bytes: engine::bench::peak_rss_bytes(),
    })
}

async fn engine_round(
    targets: &[SocketAddr],
    total: u64,
    in_flight: usize,
    send_path: SendPath,
    cancel: &Cancel,
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
    let report = engine::run(probes, limits, cancel.clone(), |ev| {
        if let Event::Finished { output, .. } = ev
            && !matches!(output.status, probes::binding::BindingStatus::Timeout)
        {
            answered += 1;
        }
    })
    .await?;
    Ok((answered as f64 / report.elapsed.max(1e-9), total - answered))
}

async fn memory_round(n: usize, stop: &Cancel) -> Result<MemoryResult> {
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
        // Admission of every probe takes well under a second per 100k; the deadline only
        // bounds a run that could not admit them all.
        deadline: Some(Duration::from_secs(60)),
        ..Limits::default()
    };
    let stopper = {
        let (stop, handle) = (stop.clone(), handle.clone());
        tokio::spawn(async move {
            stop.cancelled().await;
            handle.cancel();
        })
    };
    let run = engine::run(probes, limits, cancel, |ev| {
        if let Event::Started { probe } = ev
            && probe + 1 == n
        {
            at_peak = engine::bench::rss_bytes().unwrap_or(0);
            handle.cancel();
        }
    })
    .await;
    stopper.abort();
    run?;
    let growth = at_peak.saturating_sub(before);
    Ok(MemoryResult {
        in_flight: n,
        rss_growth_bytes: growth,
        bytes_per_transaction: growth as f64 / n as f64,
        size_of_binding_transaction: std::mem::size_of::<BindingTransaction>(),
    })
}

impl Report for BenchReport {
    const SCHEMA: &'static str = "stunmap.bench/1";

    fn outcome(&self) -> Outcome {
        Outcome::Ok
    }

    fn document(&self, _run: &RunInfo) -> Doc {
        let r = self;
        let mut doc = Doc::new(
            "stunmap bench",
            format!(
                "{} ports x {} transactions = {}, {} in flight, median of {} rounds, loopback",
                r.ports,
                r.transactions / u64::from(r.ports.max(1)),
                r.transactions,
                r.in_flight,
                r.rounds
            ),
        );
        doc.push(
            Section::new("Throughput").block(Block::Table {
                header: columns(["path", "median tx/s", "vs raw", "lost"]),
                rows: r
                    .paths
                    .iter()
                    .map(|p| {
                        vec![
                            Cell::from(p.path),
                            Cell::from(format!("{:.0}", p.median)),
                            Cell::from(format!("{:.0}%", p.vs_raw * 100.0)),
                            Cell::from(p.lost.to_string()),
                        ]
                    })
                    .collect(),
            }),
        );
        if let Some(m) = &r.memory {
            doc.push(Section::new("Memory").block(Block::Text(format!(
                "{} transactions in flight grew RSS by {} KiB = {:.0} bytes each (BindingTransaction itself: {} bytes)",
                m.in_flight,
                m.rss_growth_bytes / 1024,
                m.bytes_per_transaction,
                m.size_of_binding_transaction
            ))));
        }
        doc.push(
            Section::new(format!(
                "One destination, {}-byte datagrams (best of {} rounds)",
                r.blast_size, r.rounds
            ))
            .block(Block::Table {
                header: columns(["send path", "datagrams/s received", "received", "sent"]),
                rows: r
                    .blast
                    .iter()
                    .map(|b| {
                        vec![
                            Cell::from(b.path.to_string()),
                            Cell::from(format!("{:.0}", b.rate())),
                            Cell::from(b.received.to_string()),
                            Cell::from(b.sent.to_string()),
                        ]
                    })
                    .collect(),
            }),
        );
        if let Some(p) = r.peak_rss_bytes {
            doc.push(Section::new("Process").block(Block::Text(format!(
                "peak RSS of this process (client + reflector): {} MiB",
                p >> 20
            ))));
        }
        doc
    }
}
