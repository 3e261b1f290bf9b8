//! `stunmap stun`: Binding requests to one or more STUN servers (and port ranges), with the
//! mapped address, the server's RFC 5780 details, RTT statistics and loss per target.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Result;
use engine::stats::{RttStats, RttSummary};
use engine::{Cancel, Event, Limits, Rate, RunReport};
use probes::Retransmit;
use probes::binding::{BindingConfig, BindingOutcome, BindingStatus, BindingTransaction};
use probes::schedule::Delayed;
use serde::Serialize;

use crate::exit::{Outcome, usage};
use crate::progress::Progress;
use crate::target::{FamilyChoice, TargetSpec, resolve};

/// Flags of `stunmap stun`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Servers: HOST, HOST:PORT, HOST:PORT-PORT, [V6]:PORT (default port 3478).
    #[arg(required = true, value_name = "TARGET")]
    targets: Vec<String>,
    /// Use STUN over TCP (RFC 8489 §6.2.2) instead of UDP.
    #[arg(long)]
    tcp: bool,
    /// Binding transactions per target.
    #[arg(long, default_value_t = 5)]
    count: u32,
    /// Milliseconds between transactions to the same target.
    #[arg(long, default_value_t = 100, value_name = "MS")]
    interval: u64,
    /// Milliseconds after which a transaction without an answer counts as lost.
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    timeout: u64,
    /// Initial retransmission timeout, RFC 8489 §6.2.1 (UDP).
    #[arg(long, default_value_t = 500, value_name = "MS")]
    rto: u64,
    /// Packets per second cap over the whole run (retransmissions included).
    #[arg(long, default_value_t = Rate::POLITE.pps, value_name = "PPS")]
    rate: u32,
    /// Packets that may leave back to back.
    #[arg(long, default_value_t = Rate::POLITE.burst)]
    burst: u32,
    /// Transactions in flight at once.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    max_in_flight: usize,
    /// Stop the whole run after this many seconds, reporting what was measured.
    #[arg(long, value_name = "SECS")]
    deadline: Option<f64>,
    /// Only IPv4 addresses.
    #[arg(short = '4', conflicts_with = "ipv6")]
    ipv4: bool,
    /// Only IPv6 addresses.
    #[arg(short = '6')]
    ipv6: bool,
    /// Machine-readable output (schema `stunmap.stun/1`).
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

/// Per-target results.
#[derive(Debug, Serialize)]
struct TargetReport {
    target: SocketAddr,
    transport: &'static str,
    /// Transactions started (including unfinished ones).
    sent: u64,
    answered: u64,
    retransmitted: u64,
    /// Started but stopped before an answer or a timeout (Ctrl-C, --deadline).
    unfinished: u64,
    /// Fraction of finished transactions without an answer.
    loss: f64,
    rtt: Option<RttSummary>,
    /// Distinct reflexive addresses seen (more than one: the mapping changed mid-run).
    mapped: Vec<SocketAddr>,
    /// MAPPED-ADDRESS differing from XOR-MAPPED-ADDRESS: an ALG rewrote the payload.
    alg_suspected: bool,
    other_address: Option<SocketAddr>,
    response_origin: Option<SocketAddr>,
    software: Option<String>,
    /// Error responses by code.
    errors: BTreeMap<u16, String>,
    unknown_attribute: Option<u16>,
    /// TCP only: connect time or how the connection failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    connect: Option<String>,
    /// TCP only: why streams ended without a clean answer (peer closed or reset mid-message,
    /// bytes trickled past the deadline, not STUN), each reason once.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stream_errors: Vec<String>,
    #[serde(skip)]
    stats: RttStats,
}

impl TargetReport {
    fn new(target: SocketAddr, transport: &'static str) -> Self {
        Self {
            target,
            transport,
            sent: 0,
            answered: 0,
            retransmitted: 0,
            unfinished: 0,
            loss: 0.0,
            rtt: None,
            mapped: Vec::new(),
            alg_suspected: false,
            other_address: None,
            response_origin: None,
            software: None,
            errors: BTreeMap::new(),
            unknown_attribute: None,
            connect: None,
            stream_errors: Vec::new(),
            stats: RttStats::default(),
        }
    }

    fn add(&mut self, o: &BindingOutcome) {
        match &o.status {
            BindingStatus::Timeout => self.stats.lost(),
            BindingStatus::Error { code, reason } => {
                self.stats.answered(o.rtt, o.rtt_ambiguous);
                self.errors.entry(*code).or_insert_with(|| reason.clone());
            }
            BindingStatus::Success(r) => {
                self.stats.answered(o.rtt, o.rtt_ambiguous);
                if let Some(m) = r.mapped_address() {
                    if !self.mapped.contains(&m) {
                        self.mapped.push(m);
                    }
                }
                if let (Some(x), Some(m)) = (r.xor_mapped, r.mapped) {
                    self.alg_suspected |= x != m;
                }
                self.other_address = self.other_address.or(r.other_address);
                self.response_origin = self.response_origin.or(r.response_origin);
                if self.software.is_none() {
                    self.software.clone_from(&r.software);
                }
                self.unknown_attribute = self.unknown_attribute.or(r.unknown_attribute);
            }
        }
    }

    fn finish(&mut self) {
        self.sent = self.stats.sent + self.unfinished;
        self.answered = self.stats.answered;
        self.retransmitted = self.stats.retransmitted;
        self.loss = self.stats.loss();
        self.rtt = self.stats.summary();
    }
}

#[derive(Debug, Serialize)]
struct Report {
    schema: &'static str,
    interrupted: bool,
    deadline_reached: bool,
    elapsed_seconds: f64,
    targets: Vec<TargetReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    engine: Option<engine::Counters>,
}

pub(crate) fn run(args: Args) -> Result<Outcome> {
    if args.count == 0 {
        return Err(usage("--count must be at least 1"));
    }
    if args.rate == 0 || args.burst == 0 {
        return Err(usage("--rate and --burst must be at least 1"));
    }
    if args.timeout == 0 || args.rto == 0 {
        return Err(usage("--timeout and --rto must be at least 1 ms"));
    }
    if args.deadline.is_some_and(|d| !(d.is_finite() && d > 0.0)) {
        return Err(usage("--deadline must be a positive number of seconds"));
    }
    let specs: Vec<TargetSpec> = args
        .targets
        .iter()
        .map(|t| TargetSpec::parse(t, 3478))
        .collect::<Result<_>>()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(args, specs))
}

async fn run_async(args: Args, specs: Vec<TargetSpec>) -> Result<Outcome> {
    let family = FamilyChoice::from_flags(args.ipv4, args.ipv6);
    let mut targets: Vec<SocketAddr> = Vec::new();
    for spec in &specs {
        for ip in resolve(&spec.host, family).await? {
            for port in spec.ports.0..=spec.ports.1 {
                targets.push(SocketAddr::new(ip, port));
            }
        }
    }
    let (handle, cancel) = Cancel::new();
    engine::driver::cancel_on_signals(handle);
    let transport = if args.tcp { "tcp" } else { "udp" };
    let mut reports: Vec<TargetReport> = targets
        .iter()
        .map(|t| TargetReport::new(*t, transport))
        .collect();
    let total = targets.len() as u64 * u64::from(args.count);
    let progress = Progress::new(total, args.quiet || args.json);
    let start = Instant::now();

    let run = if args.tcp {
        run_tcp(&args, &targets, &mut reports, &progress, cancel).await
    } else {
        run_udp(&args, &targets, &mut reports, &progress, cancel).await?
    };
    progress.finish();
    for r in &mut reports {
        r.finish();
    }
    let report = Report {
        schema: "stunmap.stun/1",
        interrupted: run.interrupted,
        deadline_reached: run.deadline_reached,
        elapsed_seconds: start.elapsed().as_secs_f64(),
        targets: reports,
        engine: (!args.tcp).then_some(run.counters),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_human(&report);
    }
    let answered = report.targets.iter().filter(|t| t.answered > 0).count();
    Ok(if report.interrupted {
        Outcome::Interrupted
    } else if answered == report.targets.len() {
        Outcome::Ok
    } else if answered == 0 {
        Outcome::Blocked
    } else {
        Outcome::Degraded
    })
}

async fn run_udp(
    args: &Args,
    targets: &[SocketAddr],
    reports: &mut [TargetReport],
    progress: &Progress,
    cancel: Cancel,
) -> Result<RunReport> {
    let config = BindingConfig {
        retransmit: Retransmit {
            rto: Duration::from_millis(args.rto),
            deadline: Some(Duration::from_millis(args.timeout)),
            ..Retransmit::default()
        },
        ..BindingConfig::default()
    };
    let config = std::sync::Arc::new(config);
    let limits = Limits {
        rate: Some(Rate {
            pps: args.rate,
            burst: args.burst,
        }),
        max_in_flight: args.max_in_flight.max(1),
        deadline: args.deadline.map(Duration::from_secs_f64),
        ..Limits::default()
    };
    let start = Instant::now();
    let interval = Duration::from_millis(args.interval);
    let n = targets.len();
    let mut ids = crate::ids::source();
    // Round-major order: every target's first transaction, then every target's second …
    let probes = (0..u64::from(args.count) * n as u64).filter_map(move |i| {
        let round = (i / n as u64) as u32;
        let target = targets.get((i % n as u64) as usize).copied()?;
        let at = start + interval * round;
        Some(Delayed::new(
            at,
            BindingTransaction::with_shared_config(ids.next_id(), target, config.clone()),
        ))
    });
    // Probes that have transmitted and not yet finished: an abandoned one of these was really
    // sent (a paced probe abandoned before its start time was not). Bounded by the in-flight cap.
    let mut on_the_wire = std::collections::HashSet::new();
    let report = engine::run(probes, limits, cancel, |ev| match ev {
        Event::Finished { probe, output } => {
            on_the_wire.remove(&probe);
            if let Some(r) = reports.get_mut(probe % n) {
                r.add(&output);
            }
            progress.inc();
        }
        Event::Abandoned { probe } => {
            if on_the_wire.remove(&probe) {
                if let Some(r) = reports.get_mut(probe % n) {
                    r.unfinished += 1;
                }
            }
            progress.inc();
        }
        Event::Transmitted { probe, attempt: 0 } => {
            on_the_wire.insert(probe);
        }
        Event::Transmitted { .. } => progress.retransmit(),
        Event::Started { .. } => {}
    })
    .await?;
    Ok(report)
}

async fn run_tcp(
    args: &Args,
    targets: &[SocketAddr],
    reports: &mut [TargetReport],
    progress: &Progress,
    cancel: Cancel,
) -> RunReport {
    let mut report = RunReport::default();
    let timeout = Duration::from_millis(args.timeout);
    let interval = Duration::from_millis(args.interval);
    let deadline = args
        .deadline
        .map(|d| Instant::now() + Duration::from_secs_f64(d));
    // One socket per connection: stay inside the descriptor limit.
    let concurrency = engine::fd::tcp_budget(args.max_in_flight.clamp(1, 256));
    let mut ids = crate::ids::source();
    'rounds: for round in 0..args.count {
        if round > 0 {
            tokio::time::sleep(interval).await;
        }
        for (ci, chunk) in targets.chunks(concurrency).enumerate() {
            if cancel.is_cancelled() {
                report.interrupted = true;
                break 'rounds;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                report.deadline_reached = true;
                break 'rounds;
            }
            let mut set = tokio::task::JoinSet::new();
            for (i, t) in chunk.iter().enumerate() {
                let tid = ids.next_id();
                let t = *t;
                set.spawn(async move {
                    let r = engine::tcp::binding_over_tcp(
                        t,
                        tid,
                        BindingConfig::default().software,
                        timeout,
                    )
                    .await;
                    (i, r)
                });
            }
            while let Some(Ok((i, r))) = set.join_next().await {
                let idx = ci * concurrency + i;
                if let Some(rep) = reports.get_mut(idx) {
                    rep.connect = Some(match &r.connect {
                        engine::tcp::ConnectOutcome::Connected { time } => {
                            format!("connected in {}", fmt_secs(time.as_secs_f64()))
                        }
                        other => format!("{other:?}").to_lowercase(),
                    });
                    if let Some(e) = &r.stream_error {
                        if !rep.stream_errors.contains(e) {
                            rep.stream_errors.push(e.clone());
                        }
                    }
                    match &r.binding {
                        Some(b) => rep.add(b),
                        None => rep.stats.lost(),
                    }
                }
                progress.inc();
            }
        }
    }
    report
}

pub(crate) fn fmt_secs(s: f64) -> String {
    if s < 1e-3 {
        format!("{:.0} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

fn print_human(report: &Report) {
    if report.interrupted {
        println!("INTERRUPTED: partial results follow");
    }
    if report.deadline_reached {
        println!("DEADLINE REACHED: partial results follow");
    }
    let many = report.targets.len() > 20;
    let answered = report.targets.iter().filter(|t| t.answered > 0).count();
    for t in &report.targets {
        if many && t.answered == 0 {
            continue;
        }
        let mapped = match t.mapped.as_slice() {
            [] => "-".to_string(),
            [one] => one.to_string(),
            // Every TCP connection has its own source port, hence its own mapping.
            more if t.transport == "tcp" => format!(
                "{} (one per connection)",
                more.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            more => format!(
                "{} (mapping changed during the run)",
                more.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        println!("{} {}  mapped {}", t.transport, t.target, mapped);
        let rtt = match &t.rtt {
            Some(r) => format!(
                "rtt min/median/max {}/{}/{}",
                fmt_secs(r.min),
                fmt_secs(r.median),
                fmt_secs(r.max)
            ),
            None => "rtt -".to_string(),
        };
        println!(
            "  {rtt}  answered {}/{}  loss {:.0}%{}",
            t.answered,
            t.sent,
            t.loss * 100.0,
            if t.retransmitted > 0 {
                format!("  ({} after retransmission)", t.retransmitted)
            } else {
                String::new()
            }
        );
        if t.unfinished > 0 {
            println!(
                "  {} unfinished when the run stopped (not counted as loss)",
                t.unfinished
            );
        }
        if let Some(c) = &t.connect {
            println!("  tcp {c}");
        }
        for e in &t.stream_errors {
            println!("  stream {e}");
        }
        if let Some(s) = &t.software {
            println!("  server software: {s}");
        }
        if let Some(o) = t.other_address {
            println!("  other-address {o} (RFC 5780 NAT tests possible)");
        }
        if t.alg_suspected {
            println!(
                "  warning: MAPPED-ADDRESS differs from XOR-MAPPED-ADDRESS: an ALG rewrites STUN"
            );
        }
        for (code, reason) in &t.errors {
            println!("  error response {code} {reason}");
        }
        if let Some(a) = t.unknown_attribute {
            println!("  note: unknown comprehension-required attribute {a:#06x} in response");
        }
    }
    if many {
        let silent = report.targets.len() - answered;
        println!(
            "{answered} of {} targets answered; {silent} silent (not listed)",
            report.targets.len()
        );
    }
}
