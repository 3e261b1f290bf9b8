//! `stunmap stun`: Binding requests to one or more STUN servers (and port ranges), with the
//! mapped address, the server's RFC 5780 details, RTT statistics and loss per target.
//!
//! Every transaction ends in one of: a valid answer (a success with a decodable mapped
//! address, or an error response), a malformed answer (a success whose XOR-MAPPED-ADDRESS or
//! MAPPED-ADDRESS cannot be decoded: no mapping is taken from it), no answer (lost), unfinished
//! (sent, then the run stopped) or never sent (the run stopped first). A target none of whose
//! transactions left is "not probed", with the reason, never "silent".

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Result;
use engine::stats::{RttStats, RttSummary};
use engine::{Cancel, Event, Limits, Rate};
use probes::Retransmit;
use probes::binding::{BindingConfig, BindingOutcome, BindingStatus, BindingTransaction};
use probes::schedule::Delayed;
use serde::Serialize;

use crate::app::{Command, Ctx, OutputArgs, Report, ReportFiles, RunInfo};
use crate::exit::{Outcome, usage};
use crate::report::doc::{Block, Cell, Doc, Mark, Section, Tone, columns, secs};
use crate::report::prom::{Writer, flag, run_facts};
use crate::report::words;
use crate::target::{FamilyChoice, TargetSpec, resolve};

/// Targets shown one section each; above this, one table of the targets that answered.
const DETAILED_TARGETS: usize = 20;
/// The longest `--deadline`, seconds.
const MAX_DEADLINE_SECS: f64 = 86_400.0;

/// Flags of `stunmap stun`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exit status: 0 every target answered; 1 some did (or some were not probed: --deadline);
2 none did; 64 bad flags; 130 interrupted.")]
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
    /// Binding transactions per target (1 to 100000).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    count: u32,
    /// Milliseconds between transactions to the same target (0 to 3600000).
    #[arg(long, default_value_t = 100, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    interval: u64,
    /// Milliseconds after which a transaction without an answer counts as lost (1 to 60000).
    #[arg(long, default_value_t = 2000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    timeout: u64,
    /// Initial retransmission timeout, RFC 8489 §6.2.1 (UDP; 1 to 10000 ms).
    #[arg(long, default_value_t = 500, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    rto: u64,
    /// Packets per second cap over the whole run, retransmissions included (1 to 1000000).
    #[arg(long, default_value_t = Rate::POLITE.pps, value_name = "PPS",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    rate: u32,
    /// Packets that may leave back to back (1 to 100000).
    #[arg(long, default_value_t = Rate::POLITE.burst,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    burst: u32,
    /// Transactions in flight at once (1 to 1000000; TCP: at most 256 connections).
    #[arg(long, default_value_t = 1024, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_in_flight: u32,
    /// Stop the whole run after this many seconds (at most 86400), reporting what was
    /// measured; targets not reached by then are reported as not probed.
    #[arg(long, value_name = "SECS")]
    deadline: Option<f64>,
    #[command(flatten)]
    family: super::common::FamilyArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    files: ReportFiles,
}

/// A planned STUN run.
#[derive(Debug)]
struct Stun {
    specs: Vec<TargetSpec>,
    family: FamilyChoice,
    tcp: bool,
    count: u32,
    interval: Duration,
    timeout: Duration,
    rto: Duration,
    rate: Rate,
    max_in_flight: usize,
    deadline: Option<Duration>,
}

/// The plan (pure).
fn plan(args: &Args) -> Result<Stun> {
    let deadline = match args.deadline {
        Some(d) if !(d.is_finite() && d > 0.0 && d <= MAX_DEADLINE_SECS) => {
            return Err(usage(format!(
                "--deadline must be a number of seconds above 0 and at most {MAX_DEADLINE_SECS}"
            )));
        }
        Some(d) => Some(Duration::from_secs_f64(d)),
        None => None,
    };
    let specs = args
        .targets
        .iter()
        .map(|t| TargetSpec::parse(t, 3478))
        .collect::<Result<_>>()?;
    Ok(Stun {
        specs,
        family: args.family.choice(),
        tcp: args.tcp,
        count: args.count,
        interval: Duration::from_millis(args.interval),
        timeout: Duration::from_millis(args.timeout),
        rto: Duration::from_millis(args.rto),
        rate: Rate {
            pps: args.rate,
            burst: args.burst,
        },
        max_in_flight: args.max_in_flight as usize,
        deadline,
    })
}

pub(crate) fn run(args: Args) -> Result<Outcome> {
    let stun = plan(&args)?;
    args.bind.install()?;
    crate::app::run(stun, &args.output, &args.files, "transactions")
}

/// How a target did, from its transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum TargetState {
    /// At least one success with a mapped address.
    Answered,
    /// Only error responses (the server is there and refuses).
    Error,
    /// Only malformed answers (and maybe errors): no mapping can be trusted.
    Malformed,
    /// Transactions ended without an answer.
    Silent,
    /// No transaction concluded: none left, or those that left were still waiting when the
    /// run stopped (see `not_probed_reason`).
    NotProbed,
}

impl TargetState {
    /// Whether a STUN server answered (an error response is an answer).
    fn answered(self) -> bool {
        matches!(self, TargetState::Answered | TargetState::Error)
    }

    fn mark(self) -> Mark {
        match self {
            TargetState::Answered => Mark::new("answered", Tone::Good),
            TargetState::Error => Mark::new("error", Tone::Warn),
            TargetState::Malformed => Mark::new("malformed", Tone::Bad),
            TargetState::Silent => Mark::new("silent", Tone::Bad),
            TargetState::NotProbed => Mark::new("not probed", Tone::Neutral),
        }
    }
}

/// Why transactions were never sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum StopReason {
    /// `--deadline` was reached.
    Deadline,
    /// A signal stopped the run.
    Interrupted,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopReason::Deadline => "the deadline was reached first",
            StopReason::Interrupted => "the run was interrupted first",
        })
    }
}

/// Per-target results.
#[derive(Debug, Serialize)]
struct TargetReport {
    target: SocketAddr,
    transport: &'static str,
    state: TargetState,
    /// Transactions that left (including unfinished ones).
    sent: u64,
    /// Valid answers: successes with a mapped address, and error responses.
    answered: u64,
    /// Successes whose mapped address could not be decoded (not counted as answered).
    malformed: u64,
    retransmitted: u64,
    /// Sent, then stopped before an answer or a timeout (a signal, --deadline).
    unfinished: u64,
    /// Never sent: the run stopped first.
    not_sent: u64,
    /// Why some transactions were never sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    not_probed_reason: Option<StopReason>,
    /// Fraction of finished transactions without a valid answer.
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
    /// Why the first malformed answer was malformed.
    #[serde(skip_serializing_if = "Option::is_none")]
    malformed_reason: Option<String>,
    unknown_attribute: Option<u16>,
    /// TCP only: how the last connection went.
    #[serde(skip_serializing_if = "Option::is_none")]
    connect: Option<String>,
    /// TCP only: why streams ended without a clean answer (peer closed or reset mid-message,
    /// bytes trickled past the deadline, not STUN), each reason once.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stream_errors: Vec<String>,
    #[serde(skip)]
    stats: RttStats,
}

/// What one transaction came to, for the events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum TransactionResult {
    Answered,
    Error,
    Malformed,
    Timeout,
    Unfinished,
}

impl TargetReport {
    fn new(target: SocketAddr, transport: &'static str) -> Self {
        Self {
            target,
            transport,
            state: TargetState::NotProbed,
            sent: 0,
            answered: 0,
            malformed: 0,
            retransmitted: 0,
            unfinished: 0,
            not_sent: 0,
            not_probed_reason: None,
            loss: 0.0,
            rtt: None,
            mapped: Vec::new(),
            alg_suspected: false,
            other_address: None,
            response_origin: None,
            software: None,
            errors: BTreeMap::new(),
            malformed_reason: None,
            unknown_attribute: None,
            connect: None,
            stream_errors: Vec::new(),
            stats: RttStats::default(),
        }
    }

    fn add(&mut self, o: &BindingOutcome) -> TransactionResult {
        match &o.status {
            BindingStatus::Timeout => {
                self.stats.lost();
                TransactionResult::Timeout
            }
            BindingStatus::Error { code, reason } => {
                self.stats.answered(o.rtt, o.rtt_ambiguous);
                self.errors.entry(*code).or_insert_with(|| reason.clone());
                TransactionResult::Error
            }
            BindingStatus::Success(r) => {
                if self.software.is_none() {
                    self.software.clone_from(&r.software);
                }
                let Some(m) = r.mapped_address() else {
                    // No mapping to take: a malformed answer (or a success without any
                    // mapped address at all).
                    self.stats.lost();
                    self.malformed += 1;
                    if self.malformed_reason.is_none() {
                        self.malformed_reason =
                            Some(r.malformed_address.clone().unwrap_or_else(|| {
                                "a success without XOR-MAPPED-ADDRESS or MAPPED-ADDRESS".into()
                            }));
                    }
                    return TransactionResult::Malformed;
                };
                self.stats.answered(o.rtt, o.rtt_ambiguous);
                if !self.mapped.contains(&m) {
                    self.mapped.push(m);
                }
                if let (Some(x), Some(m)) = (r.xor_mapped, r.mapped) {
                    self.alg_suspected |= x != m;
                }
                self.other_address = self.other_address.or(r.other_address);
                self.response_origin = self.response_origin.or(r.response_origin);
                self.unknown_attribute = self.unknown_attribute.or(r.unknown_attribute);
                TransactionResult::Answered
            }
        }
    }

    /// Settle the counts once the run is over; `planned` transactions were meant for it.
    fn finish(&mut self, planned: u64, stopped: Option<StopReason>) {
        self.sent = self.stats.sent + self.unfinished;
        self.answered = self.stats.answered;
        self.retransmitted = self.stats.retransmitted;
        self.loss = self.stats.loss();
        self.rtt = self.stats.summary();
        self.not_sent = planned.saturating_sub(self.sent);
        if self.not_sent > 0 {
            self.not_probed_reason = stopped;
        }
        self.state = if !self.mapped.is_empty() {
            TargetState::Answered
        } else if self.answered > 0 {
            TargetState::Error
        } else if self.malformed > 0 {
            TargetState::Malformed
        } else if self.stats.sent > 0 {
            TargetState::Silent
        } else {
            TargetState::NotProbed
        };
        if self.state == TargetState::NotProbed {
            self.not_probed_reason = stopped;
        }
    }
}

/// The report of `stunmap stun` (schema `stunmap.stun/1`).
#[derive(Debug, Serialize)]
pub(crate) struct StunReport {
    transport: &'static str,
    /// Transactions planned per target.
    count: u32,
    targets: Vec<TargetReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    engine: Option<engine::Counters>,
}

/// One finished (or abandoned) transaction (NDJSON).
#[derive(Serialize)]
struct TransactionEvent {
    event: &'static str,
    target: SocketAddr,
    transport: &'static str,
    result: TransactionResult,
    #[serde(skip_serializing_if = "Option::is_none")]
    rtt_seconds: Option<f64>,
}

impl Command for Stun {
    type Report = StunReport;

    fn deadline(&self) -> Option<Duration> {
        self.deadline
    }

    async fn execute(self, ctx: Ctx) -> Result<StunReport> {
        let mut targets: Vec<SocketAddr> = Vec::new();
        for spec in &self.specs {
            for ip in resolve(&spec.host, self.family).await? {
                for port in spec.ports.0..=spec.ports.1 {
                    targets.push(SocketAddr::new(ip, port));
                }
            }
        }
        let transport = if self.tcp { "tcp" } else { "udp" };
        let mut reports: Vec<TargetReport> = targets
            .iter()
            .map(|t| TargetReport::new(*t, transport))
            .collect();
        ctx.plan(targets.len() as u64 * u64::from(self.count));
        let emit = |t: &TargetReport, result: TransactionResult, rtt: Option<Duration>| {
            ctx.advance(1);
            if ctx.wants_events() {
                ctx.event(&TransactionEvent {
                    event: "transaction",
                    target: t.target,
                    transport,
                    result,
                    rtt_seconds: rtt.map(|d| d.as_secs_f64()),
                });
            }
        };
        let engine = if self.tcp {
            run_tcp(&self, &targets, &mut reports, &ctx.cancel, emit).await;
            None
        } else {
            Some(run_udp(&self, &targets, &mut reports, &ctx.cancel, emit).await?)
        };
        let stopped = if ctx.interrupted() {
            Some(StopReason::Interrupted)
        } else if ctx.deadline_reached() {
            Some(StopReason::Deadline)
        } else {
            None
        };
        for r in &mut reports {
            r.finish(u64::from(self.count), stopped);
        }
        Ok(StunReport {
            transport,
            count: self.count,
            targets: reports,
            engine,
        })
    }
}

async fn run_udp(
    plan: &Stun,
    targets: &[SocketAddr],
    reports: &mut [TargetReport],
    cancel: &Cancel,
    emit: impl Fn(&TargetReport, TransactionResult, Option<Duration>),
) -> Result<engine::Counters> {
    let config = BindingConfig {
        retransmit: Retransmit {
            rto: plan.rto,
            deadline: Some(plan.timeout),
            ..Retransmit::default()
        },
        ..BindingConfig::default()
    };
    let config = std::sync::Arc::new(config);
    let limits = Limits {
        rate: Some(plan.rate),
        max_in_flight: plan.max_in_flight.max(1),
        ..Limits::default()
    };
    let probes = paced_bindings(
        targets,
        plan.count,
        plan.interval,
        engine::clock::now(),
        config,
    );
    let n = targets.len();
    // Probes that have transmitted and not yet finished: an abandoned one of these was really
    // sent (a paced probe abandoned before its start time was not). Bounded by the in-flight cap.
    let mut on_the_wire = std::collections::HashSet::new();
    let report = engine::run(probes, limits, cancel.clone(), |ev| match ev {
        Event::Finished { probe, output } => {
            on_the_wire.remove(&probe);
            if let Some(r) = reports.get_mut(probe % n) {
                let result = r.add(&output);
                emit(r, result, output.rtt);
            }
        }
        Event::Abandoned { probe } => {
            if on_the_wire.remove(&probe)
                && let Some(r) = reports.get_mut(probe % n)
            {
                r.unfinished += 1;
                emit(r, TransactionResult::Unfinished, None);
            }
        }
        Event::Transmitted { probe, attempt: 0 } => {
            on_the_wire.insert(probe);
        }
        Event::Transmitted { .. } | Event::Started { .. } => {}
    })
    .await?;
    Ok(report.counters)
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
        let at = start.checked_add(interval.saturating_mul(round))?;
        Some(Delayed::new(
            at,
            BindingTransaction::with_shared_config(ids.next_id(), target, config.clone()),
        ))
    })
}

async fn run_tcp(
    plan: &Stun,
    targets: &[SocketAddr],
    reports: &mut [TargetReport],
    cancel: &Cancel,
    emit: impl Fn(&TargetReport, TransactionResult, Option<Duration>),
) {
    let timeout = plan.timeout;
    let schedule = TcpSchedule {
        count: plan.count,
        interval: plan.interval,
        // One socket per connection: stay inside the descriptor limit.
        concurrency: engine::fd::tcp_budget(plan.max_in_flight.clamp(1, 256)),
    };
    let mut ids = crate::ids::source();
    let transaction = move |t: SocketAddr| {
        engine::tcp::binding_over_tcp(t, ids.next_id(), BindingConfig::default().software, timeout)
    };
    tcp_rounds(targets, &schedule, cancel, transaction, |idx, r| {
        let Some(rep) = reports.get_mut(idx) else {
            return;
        };
        let Some(r) = r else {
            rep.unfinished += 1;
            emit(rep, TransactionResult::Unfinished, None);
            return;
        };
        rep.connect = Some(words::connect(&r.connect));
        if let Some(e) = &r.stream_error
            && !rep.stream_errors.contains(e)
        {
            rep.stream_errors.push(e.clone());
        }
        let (result, rtt) = match &r.binding {
            Some(b) => (rep.add(b), b.rtt),
            None => {
                rep.stats.lost();
                (TransactionResult::Timeout, None)
            }
        };
        emit(rep, result, rtt);
    })
    .await;
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
}

/// Run `transaction` once per target per round, as `schedule` spaces them, on the engine's
/// clock; `on_result(target index, Some(result))` as each ends. A cancel (signal or the run's
/// deadline) ends the run at once: the transactions in flight are dropped and reported as
/// `on_result(index, None)`, and no more start.
async fn tcp_rounds<T, Fut>(
    targets: &[SocketAddr],
    schedule: &TcpSchedule,
    cancel: &Cancel,
    mut transaction: impl FnMut(SocketAddr) -> Fut,
    mut on_result: impl FnMut(usize, Option<T>),
) where
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let concurrency = schedule.concurrency.max(1);
    for round in 0..schedule.count {
        if round > 0 {
            tokio::select! {
                _ = tokio::time::sleep(schedule.interval) => {}
                _ = cancel.cancelled() => {}
            }
        }
        for (ci, chunk) in targets.chunks(concurrency).enumerate() {
            if cancel.is_cancelled() {
                return;
            }
            let mut set = tokio::task::JoinSet::new();
            let mut pending: Vec<usize> = (0..chunk.len()).collect();
            for (i, t) in chunk.iter().enumerate() {
                let op = transaction(*t);
                set.spawn(async move { (i, op.await) });
            }
            loop {
                tokio::select! {
                    next = set.join_next() => match next {
                        Some(Ok((i, r))) => {
                            pending.retain(|p| *p != i);
                            on_result(ci * concurrency + i, Some(r));
                        }
                        Some(Err(_)) => {}
                        None => break,
                    },
                    _ = cancel.cancelled() => {
                        set.abort_all();
                        break;
                    }
                }
            }
            for i in pending {
                on_result(ci * concurrency + i, None);
            }
        }
    }
}

fn mapped_text(t: &TargetReport) -> String {
    match t.mapped.as_slice() {
        [] => "-".to_string(),
        [one] => one.to_string(),
        more => {
            let list = more
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            // Every TCP connection has its own source port, hence its own mapping.
            if t.transport == "tcp" {
                format!("{list} (one per connection)")
            } else {
                format!("{list} (mapping changed during the run)")
            }
        }
    }
}

fn rtt_text(r: Option<&RttSummary>) -> String {
    r.map_or_else(
        || "-".into(),
        |r| {
            format!(
                "min {} / median {} / max {}",
                secs(r.min),
                secs(r.median),
                secs(r.max)
            )
        },
    )
}

fn target_fields(t: &TargetReport) -> Vec<(String, String)> {
    let mut f: Vec<(String, String)> = Vec::new();
    let mut add = |k: &str, v: String| f.push((k.into(), v));
    if !t.mapped.is_empty() {
        add("mapped", mapped_text(t));
    }
    if t.rtt.is_some() {
        add("rtt", rtt_text(t.rtt.as_ref()));
    }
    let mut answered = format!("{}/{}, loss {:.0}%", t.answered, t.sent, t.loss * 100.0);
    if t.retransmitted > 0 {
        answered.push_str(&format!(" ({} after retransmission)", t.retransmitted));
    }
    add("answered", answered);
    if t.malformed > 0 {
        add(
            "malformed",
            format!(
                "{} answers carried no usable mapping: {}",
                t.malformed,
                t.malformed_reason.as_deref().unwrap_or("-")
            ),
        );
    }
    if t.unfinished > 0 {
        add(
            "unfinished",
            format!(
                "{} when the run stopped (not counted as loss)",
                t.unfinished
            ),
        );
    }
    if t.state == TargetState::NotProbed && t.not_sent == 0 {
        add(
            "not probed",
            t.not_probed_reason
                .map_or_else(|| "the run stopped first".into(), |r| r.to_string()),
        );
    }
    if t.not_sent > 0 {
        add(
            "not sent",
            format!(
                "{}: {}",
                t.not_sent,
                t.not_probed_reason
                    .map_or_else(|| "the run stopped first".into(), |r| r.to_string())
            ),
        );
    }
    if let Some(c) = &t.connect {
        add("tcp", c.clone());
    }
    for e in &t.stream_errors {
        add("stream", e.clone());
    }
    if let Some(s) = &t.software {
        add("software", s.clone());
    }
    if let Some(o) = t.other_address {
        add(
            "other-address",
            format!("{o} (RFC 5780 NAT tests possible)"),
        );
    }
    if t.alg_suspected {
        add(
            "warning",
            "MAPPED-ADDRESS differs from XOR-MAPPED-ADDRESS: an ALG rewrites STUN".into(),
        );
    }
    for (code, reason) in &t.errors {
        add("error response", format!("{code} {reason}"));
    }
    if let Some(a) = t.unknown_attribute {
        add(
            "note",
            format!("unknown comprehension-required attribute {a:#06x} in a response"),
        );
    }
    f
}

impl StunReport {
    fn answered(&self) -> usize {
        self.targets.iter().filter(|t| t.state.answered()).count()
    }

    fn not_probed(&self) -> usize {
        self.targets
            .iter()
            .filter(|t| t.state == TargetState::NotProbed)
            .count()
    }

    /// Whether every target answered every transaction planned for it that left.
    fn complete(&self) -> bool {
        self.targets
            .iter()
            .all(|t| t.state.answered() && t.not_sent == 0)
    }
}

impl Report for StunReport {
    const SCHEMA: &'static str = "stunmap.stun/1";

    fn outcome(&self) -> Outcome {
        let answered = self.answered();
        if answered == 0 {
            Outcome::Blocked
        } else if self.complete() {
            Outcome::Ok
        } else {
            Outcome::Degraded
        }
    }

    fn document(&self, run: &RunInfo) -> Doc {
        let n = self.targets.len();
        let answered = self.answered();
        let not_probed = self.not_probed();
        let mut headline = match (n, answered) {
            (1, _) => {
                let t = self.targets.first();
                let target = t.map(|t| t.target.to_string()).unwrap_or_default();
                match t.map(|t| t.state) {
                    Some(TargetState::Answered) => format!(
                        "{target} answered: mapped {}",
                        t.map(mapped_text).unwrap_or_default()
                    ),
                    Some(TargetState::Error) => format!("{target} answered with errors"),
                    Some(TargetState::Malformed) => {
                        format!("{target} answered, but without a usable mapped address")
                    }
                    Some(TargetState::Silent) => format!("{target} did not answer"),
                    Some(TargetState::NotProbed) | None => format!("{target} not probed"),
                }
            }
            (_, 0) if not_probed == n => {
                let why = self
                    .targets
                    .iter()
                    .find_map(|t| t.not_probed_reason)
                    .map_or_else(|| "the run stopped first".into(), |r| r.to_string());
                format!("No target probed: {why}")
            }
            (_, 0) => "No target answered".to_string(),
            (_, a) if a == n => format!("All {n} targets answered"),
            (_, a) => format!("{a} of {n} targets answered"),
        };
        if not_probed > 0 && n > 1 && not_probed < n {
            headline.push_str(&format!("; {not_probed} not probed"));
        }
        let mut doc = Doc::new("stunmap stun", headline);
        doc.mark = Some(match self.outcome() {
            Outcome::Ok => Mark::new("ok", Tone::Good),
            Outcome::Degraded => Mark::new("degraded", Tone::Warn),
            _ if not_probed == n => TargetState::NotProbed.mark(),
            _ => Mark::new("blocked", Tone::Bad),
        });
        doc.summary.push(format!(
            "{n} target{} over {}, {} transaction{} each, {}, exit {}",
            if n == 1 { "" } else { "s" },
            self.transport.to_uppercase(),
            self.count,
            if self.count == 1 { "" } else { "s" },
            secs(run.elapsed_seconds),
            run.exit_code.code()
        ));
        if n <= DETAILED_TARGETS {
            for t in &self.targets {
                doc.push(
                    Section::new(format!("{} {}", t.transport, t.target))
                        .marked(t.state.mark())
                        .block(Block::Fields(target_fields(t))),
                );
            }
            return doc;
        }
        let listed: Vec<&TargetReport> = self
            .targets
            .iter()
            .filter(|t| !matches!(t.state, TargetState::Silent | TargetState::NotProbed))
            .collect();
        doc.push(
            Section::new("Targets that answered").block(Block::Table {
                header: columns(["target", "state", "mapped", "rtt", "answered", "software"]),
                rows: listed
                    .iter()
                    .map(|t| {
                        vec![
                            Cell::from(format!("{} {}", t.transport, t.target)),
                            Cell::from(t.state.mark()),
                            Cell::from(mapped_text(t)),
                            Cell::from(t.rtt.map_or_else(|| "-".into(), |r| secs(r.median))),
                            Cell::from(format!("{}/{}", t.answered, t.sent)),
                            Cell::from(t.software.clone().unwrap_or_default()),
                        ]
                    })
                    .collect(),
            }),
        );
        let silent = self
            .targets
            .iter()
            .filter(|t| t.state == TargetState::Silent)
            .count();
        let mut rest = vec![format!("{silent} silent (not listed)")];
        if not_probed > 0 {
            let why = self
                .targets
                .iter()
                .find_map(|t| t.not_probed_reason)
                .map_or_else(|| "the run stopped first".into(), |r| r.to_string());
            rest.push(format!("{not_probed} not probed (not listed): {why}"));
        }
        doc.push(Section::new("Not listed").block(Block::List(rest)));
        doc
    }

    fn metrics(&self, run: &RunInfo, w: &mut Writer) -> bool {
        run_facts(w, "stun", run);
        let labels: Vec<[(&'static str, String); 2]> = self
            .targets
            .iter()
            .map(|t| {
                [
                    ("target", t.target.to_string()),
                    ("transport", t.transport.to_string()),
                ]
            })
            .collect();
        fn pair<'a>(l: &'a [(&'static str, String); 2]) -> [(&'static str, &'a str); 2] {
            let [(k0, v0), (k1, v1)] = l;
            [(*k0, v0.as_str()), (*k1, v1.as_str())]
        }
        w.family(
            "stunmap_stun_answered",
            "gauge",
            "1 when the target gave a valid STUN answer (a mapped address or an error response).",
        );
        for (t, l) in self.targets.iter().zip(&labels) {
            w.sample("stunmap_stun_answered", &pair(l), flag(t.state.answered()));
        }
        w.family(
            "stunmap_stun_transactions",
            "gauge",
            "Binding transactions per target by result: answered, lost, malformed, unfinished, not-sent.",
        );
        for (t, l) in self.targets.iter().zip(&labels) {
            let [a, b] = pair(l);
            let lost = t
                .sent
                .saturating_sub(t.answered + t.malformed + t.unfinished);
            for (result, v) in [
                ("answered", t.answered),
                ("lost", lost),
                ("malformed", t.malformed),
                ("unfinished", t.unfinished),
                ("not-sent", t.not_sent),
            ] {
                w.sample(
                    "stunmap_stun_transactions",
                    &[a, b, ("result", result)],
                    v as f64,
                );
            }
        }
        type Pick = fn(&RttSummary) -> f64;
        let families: [(&'static str, &str, Pick); 3] = [
            (
                "stunmap_stun_rtt_min_seconds",
                "Minimum RTT of the target's Binding transactions.",
                |s| s.min,
            ),
            (
                "stunmap_stun_rtt_median_seconds",
                "Median RTT of the target's Binding transactions.",
                |s| s.median,
            ),
            (
                "stunmap_stun_rtt_max_seconds",
                "Maximum RTT of the target's Binding transactions.",
                |s| s.max,
            ),
        ];
        if self.targets.iter().any(|t| t.rtt.is_some()) {
            for (name, help, pick) in families {
                w.family(name, "gauge", help);
                for (t, l) in self.targets.iter().zip(&labels) {
                    if let Some(s) = &t.rtt {
                        w.sample(name, &pair(l), pick(s));
                    }
                }
            }
        }
        w.family(
            "stunmap_stun_loss_ratio",
            "gauge",
            "Fraction of the target's finished transactions without a valid answer.",
        );
        for (t, l) in self.targets.iter().zip(&labels) {
            if t.sent > t.unfinished {
                w.sample("stunmap_stun_loss_ratio", &pair(l), t.loss);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests;
