//! `stunmap stun`: Binding requests to one or more STUN servers (and port ranges), with the
//! mapped address, the server's RFC 5780 details, RTT statistics and loss per target.

use std::collections::BTreeMap;
use std::future::Future;
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
    /// Where the probes leave from (--bind, --interface, --source-port).
    #[command(flatten)]
    bind: super::common::BindArgs,
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
                if let Some(m) = r.mapped_address()
                    && !self.mapped.contains(&m)
                {
                    self.mapped.push(m);
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
    args.bind.install()?;
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
    let start = engine::clock::now();

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
        elapsed_seconds: engine::clock::now()
            .saturating_duration_since(start)
            .as_secs_f64(),
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
    let probes = paced_bindings(
        targets,
        args.count,
        Duration::from_millis(args.interval),
        engine::clock::now(),
        config,
    );
    let n = targets.len();
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
            if on_the_wire.remove(&probe)
                && let Some(r) = reports.get_mut(probe % n)
            {
                r.unfinished += 1;
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

/// The UDP transactions in round-major order (every target's first, then every target's
/// second …), round `r` held back until `start + r·interval` on the engine's clock.
fn paced_bindings(
    targets: &[SocketAddr],
    count: u32,
    interval: Duration,
    start: Instant,
    config: std::sync::Arc<BindingConfig>,
) -> impl Iterator<Item = Delayed<BindingTransaction>> + '_ {
    let n = targets.len().max(1) as u64;
    let mut ids = crate::ids::source();
    (0..u64::from(count) * targets.len() as u64).filter_map(move |i| {
        let round = (i / n) as u32;
        let target = targets.get((i % n) as usize).copied()?;
        let at = start + interval * round;
        Some(Delayed::new(
            at,
            BindingTransaction::with_shared_config(ids.next_id(), target, config.clone()),
        ))
    })
}

async fn run_tcp(
    args: &Args,
    targets: &[SocketAddr],
    reports: &mut [TargetReport],
    progress: &Progress,
    cancel: Cancel,
) -> RunReport {
    let timeout = Duration::from_millis(args.timeout);
    let schedule = TcpSchedule {
        count: args.count,
        interval: Duration::from_millis(args.interval),
        // One socket per connection: stay inside the descriptor limit.
        concurrency: engine::fd::tcp_budget(args.max_in_flight.clamp(1, 256)),
        deadline: args
            .deadline
            .map(|d| engine::clock::now() + Duration::from_secs_f64(d)),
    };
    let mut ids = crate::ids::source();
    let transaction = move |t: SocketAddr| {
        engine::tcp::binding_over_tcp(t, ids.next_id(), BindingConfig::default().software, timeout)
    };
    tcp_rounds(targets, &schedule, &cancel, transaction, |idx, r| {
        if let Some(rep) = reports.get_mut(idx) {
            rep.connect = Some(match &r.connect {
                engine::tcp::ConnectOutcome::Connected { time } => {
                    format!("connected in {}", fmt_secs(time.as_secs_f64()))
                }
                other => format!("{other:?}").to_lowercase(),
            });
            if let Some(e) = &r.stream_error
                && !rep.stream_errors.contains(e)
            {
                rep.stream_errors.push(e.clone());
            }
            match &r.binding {
                Some(b) => rep.add(b),
                None => rep.stats.lost(),
            }
        }
        progress.inc();
    })
    .await
}

/// How `stunmap stun --tcp` spaces its transactions.
#[derive(Clone, Copy, Debug)]
struct TcpSchedule {
    /// Rounds (one transaction per target each).
    count: u32,
    /// Pause between the end of one round and the start of the next.
    interval: Duration,
    /// Connections at once: targets go in chunks of this many, a chunk after the last
    /// transaction of the one before.
    concurrency: usize,
    /// When to stop starting chunks (on the engine's clock).
    deadline: Option<Instant>,
}

/// Run `transaction` once per target per round, as `schedule` spaces them, on the engine's
/// clock; `on_result(target index, result)` as each ends. Stops before a chunk when cancelled
/// or past the deadline, and says so in the report.
async fn tcp_rounds<T, Fut>(
    targets: &[SocketAddr],
    schedule: &TcpSchedule,
    cancel: &Cancel,
    mut transaction: impl FnMut(SocketAddr) -> Fut,
    mut on_result: impl FnMut(usize, T),
) -> RunReport
where
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let mut report = RunReport::default();
    let concurrency = schedule.concurrency.max(1);
    'rounds: for round in 0..schedule.count {
        if round > 0 {
            tokio::select! {
                _ = tokio::time::sleep(schedule.interval) => {}
                _ = cancel.cancelled() => {}
            }
        }
        for (ci, chunk) in targets.chunks(concurrency).enumerate() {
            if cancel.is_cancelled() {
                report.interrupted = true;
                break 'rounds;
            }
            if schedule.deadline.is_some_and(|d| engine::clock::now() >= d) {
                report.deadline_reached = true;
                break 'rounds;
            }
            let mut set = tokio::task::JoinSet::new();
            for (i, t) in chunk.iter().enumerate() {
                let op = transaction(*t);
                set.spawn(async move { (i, op.await) });
            }
            while let Some(Ok((i, r))) = set.join_next().await {
                on_result(ci * concurrency + i, r);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn now() -> Instant {
        engine::clock::now()
    }

    fn targets(n: u16) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([192, 0, 2, 1], 3478 + i)))
            .collect()
    }

    /// Each transaction "takes" a per-target time on the paused clock; what started when.
    async fn rounds(
        schedule: TcpSchedule,
        cancel: Cancel,
        took: &'static [u64],
    ) -> (RunReport, Vec<(u16, u128)>, Vec<usize>, u128) {
        let t0 = now();
        let starts = Arc::new(Mutex::new(Vec::new()));
        let log = starts.clone();
        let transaction = move |t: SocketAddr| {
            let i = usize::from(t.port() - 3478);
            log.lock()
                .unwrap()
                .push((t.port() - 3478, (now() - t0).as_millis()));
            let d = Duration::from_millis(took[i]);
            async move { tokio::time::sleep(d).await }
        };
        let mut done = Vec::new();
        let report = tcp_rounds(
            &targets(took.len() as u16),
            &schedule,
            &cancel,
            transaction,
            |i, ()| done.push(i),
        )
        .await;
        let starts = starts.lock().unwrap().clone();
        (report, starts, done, (now() - t0).as_millis())
    }

    /// Chunks of `concurrency` start when the one before has finished; round two starts
    /// `interval` after round one's last answer.
    #[tokio::test(start_paused = true)]
    async fn tcp_rounds_follow_the_schedule_exactly() {
        let schedule = TcpSchedule {
            count: 2,
            interval: Duration::from_millis(500),
            concurrency: 2,
            deadline: None,
        };
        let (report, starts, done, end) = rounds(schedule, Cancel::never(), &[100, 300, 50]).await;
        assert!(!report.interrupted && !report.deadline_reached);
        assert_eq!(
            starts,
            vec![(0, 0), (1, 0), (2, 300), (0, 850), (1, 850), (2, 1150)]
        );
        assert_eq!(done, vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(end, 1200);
    }

    #[tokio::test(start_paused = true)]
    async fn tcp_rounds_stop_at_the_deadline_and_at_once_on_cancel() {
        let deadline = Some(now() + Duration::from_millis(400));
        let schedule = TcpSchedule {
            count: 2,
            interval: Duration::from_millis(500),
            concurrency: 2,
            deadline,
        };
        let (report, starts, _, end) = rounds(schedule, Cancel::never(), &[100, 300, 50]).await;
        assert!(report.deadline_reached && !report.interrupted);
        assert_eq!(starts, vec![(0, 0), (1, 0), (2, 300)]);
        assert_eq!(end, 850);

        // A cancel during the pause between rounds ends the run when it comes.
        let (handle, cancel) = Cancel::new();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(360)).await;
            handle.cancel();
        });
        let schedule = TcpSchedule {
            deadline: None,
            ..schedule
        };
        let (report, starts, _, end) = rounds(schedule, cancel, &[100, 300, 50]).await;
        assert!(report.interrupted);
        assert_eq!(starts.len(), 3);
        assert_eq!(end, 360);
    }

    /// The UDP rounds are held back on the engine's clock: every target's n-th transaction
    /// leaves exactly n·interval after the start.
    #[tokio::test(start_paused = true)]
    async fn udp_rounds_leave_on_the_interval() {
        let silent: Vec<std::net::UdpSocket> = (0..2)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let dests: Vec<SocketAddr> = silent.iter().map(|s| s.local_addr().unwrap()).collect();
        let config = std::sync::Arc::new(BindingConfig {
            retransmit: Retransmit {
                rto: Duration::from_secs(5),
                rc: 1,
                rm: 1,
                deadline: Some(Duration::from_millis(50)),
            },
            ..BindingConfig::default()
        });
        let t0 = now();
        let probes = paced_bindings(&dests, 3, Duration::from_millis(200), t0, config);
        let limits = Limits {
            rate: None,
            ..Limits::default()
        };
        let mut sent = Vec::new();
        engine::run(probes, limits, Cancel::never(), |ev| {
            if let Event::Transmitted { probe, attempt: 0 } = ev {
                sent.push((probe, (now() - t0).as_millis()));
            }
        })
        .await
        .unwrap();
        sent.sort_unstable();
        assert_eq!(
            sent,
            vec![(0, 0), (1, 0), (2, 200), (3, 200), (4, 400), (5, 400)]
        );
    }
}
