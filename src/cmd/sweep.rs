//! `stunmap sweep`: which UDP ports of a STUN/TURN server answer, and which part of a TCP port
//! range gets through (sampled or full), with a real STUN listener told apart from a middlebox
//! that accepts every port.
//!
//! Flags → [`plan`] (pure: ports, the sample, the pacing limits; a broadcast, multicast or
//! unspecified target is refused here) → [`Sweep::execute`] (the UDP probes and the TCP sweep
//! at once, on one pacing) → [`SweepReport`]. Every port asked for is in the report with a
//! state; a port the run could not probe says why (`error` with its errno, `not-probed`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use anyhow::Result;
use engine::scan::{SharedPacing, TcpSweep, UdpSweep, tcp_sweep, tcp_window, udp_sweep};
use probes::sweep::pacing::{PacingConfig, PacingSummary};
use probes::sweep::{
    DEFAULT_SAMPLE, StunOverTcp, TcpPortResult, TcpState, TcpSummary, UdpPortResult, UdpState,
    sample_ports, summarize_tcp,
};
use rand::RngCore;
use serde::Serialize;

use crate::app::{Command, Ctx, Flavor, OutputArgs, Report, ReportFiles, RunInfo};
use crate::exit::{Outcome, usage};
use crate::report::doc::{
    Block, Cell, Doc, LaneStyle, Mark, PortLane, PortMark, Section, Tone, duration,
};
use crate::report::prom::Writer;
use crate::target::{FamilyChoice, parse_ports, resolve};

const AFTER_HELP: &str = "\
Pacing: without --rate the sweep starts at 250 sends/s and grows while the path answers, up
to 4000/s, halving on loss and on rate-limited ICMP errors; --rate N starts at N and never
exceeds it. Timeouts follow the measured round trips (100 ms at least, --connect-timeout at
most). See docs/sweep.md.

Exit status: 0 every port got through (UDP answered, TCP open), 1 some did, 2 none did or
nothing could be probed, 64 bad flags or a target that is not a host (broadcast, multicast,
unspecified), 130 interrupted (partial results, marked).";

/// Flags of `stunmap sweep`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub(crate) struct Args {
    /// Where the probes leave from (--bind, --interface, --source-port).
    #[command(flatten)]
    bind: super::common::BindArgs,
    /// The server: a name or an IP address (a host: not broadcast, multicast or unspecified).
    host: String,
    /// UDP ports to probe with STUN Binding requests ("none" to skip).
    #[arg(long, default_value = "80,443,3478,5555", value_name = "LIST")]
    udp_ports: String,
    /// TCP port range to sweep ("none" to skip).
    #[arg(long, default_value = "443-65535", value_name = "RANGE")]
    tcp_ports: String,
    /// Random ports drawn from the TCP range (one per equal bucket), on top of the ports that
    /// matter (80, 443, 3478, 3479, 5349, 5350, 5555, 8080, 8443); 1 to 65535.
    #[arg(long, default_value_t = DEFAULT_SAMPLE as u64, conflicts_with = "full",
          value_parser = clap::value_parser!(u64).range(1..=65_535))]
    sample: u64,
    /// Try every port of the TCP range.
    #[arg(long)]
    full: bool,
    /// Seed of the sample (printed in the report, so a sweep can be repeated exactly); any
    /// 64-bit value.
    #[arg(long)]
    seed: Option<u64>,
    /// Milliseconds a TCP try waits before any round trip is measured, and the longest it
    /// ever waits (measured round trips shorten it, to 100 ms at least); 1 to 60000.
    #[arg(long, default_value_t = 1000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    connect_timeout: u64,
    /// Milliseconds after its first request that a UDP port without an answer counts as
    /// silent, at the latest; 1 to 60000.
    #[arg(long, default_value_t = 2000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    udp_timeout: u64,
    /// SYNs and datagrams per second, resends included: the sweep starts there and never
    /// exceeds it (default: start at 250/s, grow to at most 4000/s); 1 to 100000000.
    #[arg(long, value_name = "PPS",
          value_parser = clap::value_parser!(u32).range(1..=100_000_000))]
    rate: Option<u32>,
    /// Tries in flight at once (also capped by the file-descriptor limit); 1 to 65536.
    #[arg(long, default_value_t = 512,
          value_parser = clap::value_parser!(u64).range(1..=65_536))]
    concurrency: u64,
    /// Do not send STUN over open TCP connections.
    #[arg(long)]
    no_stun: bool,
    /// Send SYNs from a raw socket instead of connecting (needs root or CAP_NET_RAW), and
    /// compare TTL and IP ID of the answers to flag resets injected on the path.
    #[arg(long)]
    raw: bool,
    /// Only IPv4.
    #[arg(short = '4', conflicts_with = "ipv6")]
    ipv4: bool,
    /// Only IPv6.
    #[arg(short = '6')]
    ipv6: bool,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    files: ReportFiles,
}

/// How the TCP ports are tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Mode {
    /// Full connects (and STUN over the open ones).
    Connect,
    /// Raw SYNs, answers read with their IP headers.
    Raw,
}

/// A planned sweep: validated values only.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    host: String,
    family: FamilyChoice,
    mode: Mode,
    udp_ports: Vec<u16>,
    tcp_range: Option<(u16, u16)>,
    tcp_ports: Vec<u16>,
    full: bool,
    seed: u64,
    pacing: PacingConfig,
    concurrency: usize,
    udp_timeout: Duration,
    stun: bool,
}

fn parse_port_list(s: &str) -> Result<Vec<u16>> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for part in s.split(',') {
        let (a, b) = parse_ports(part).map_err(|e| usage(format!("--udp-ports: {e}")))?;
        out.extend(a..=b);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Why `ip` is not a host a sweep can be about, if it is not.
pub(crate) fn not_a_host(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) if v4.is_broadcast() => {
            Some("is the limited broadcast address: a sweep of it is not a sweep of a host")
        }
        IpAddr::V4(v4) if v4.is_multicast() => {
            Some("is a multicast group, not a host: a sweep needs one host's answers")
        }
        IpAddr::V4(v4) if v4.is_unspecified() || v4.octets()[0] == 0 => {
            Some("is in 0.0.0.0/8 (\"this network\", RFC 1122), not a host")
        }
        IpAddr::V6(v6) if v6.is_multicast() => {
            Some("is a multicast group, not a host: a sweep needs one host's answers")
        }
        IpAddr::V6(v6) if v6.is_unspecified() => Some("is the unspecified address, not a host"),
        _ => None,
    }
}

/// The plan of a sweep: pure (the seed is drawn by the caller).
pub(crate) fn plan(args: &Args, seed: u64) -> Result<Plan> {
    let udp_ports = parse_port_list(&args.udp_ports)?;
    let tcp_range = if args.tcp_ports.eq_ignore_ascii_case("none") {
        None
    } else {
        Some(parse_ports(&args.tcp_ports).map_err(|e| usage(format!("--tcp-ports: {e}")))?)
    };
    if let Ok(ip) = args.host.parse::<IpAddr>()
        && let Some(why) = not_a_host(ip)
    {
        return Err(usage(format!("{ip} {why}")));
    }
    if args.raw {
        if matches!(args.host.parse::<IpAddr>(), Ok(IpAddr::V6(_))) || args.ipv6 {
            return Err(usage("--raw supports IPv4 targets only"));
        }
        if !udp_ports.is_empty() && tcp_range.is_none() {
            return Err(usage("--raw sweeps TCP: give --tcp-ports"));
        }
    }
    if udp_ports.is_empty() && tcp_range.is_none() {
        return Err(usage(
            "nothing to sweep: --udp-ports and --tcp-ports are both none",
        ));
    }
    let sample = usize::try_from(args.sample).unwrap_or(DEFAULT_SAMPLE);
    let tcp_ports = match tcp_range {
        None => Vec::new(),
        Some((lo, hi)) if args.full => (lo..=hi).collect(),
        Some((lo, hi)) => sample_ports(lo, hi, sample, seed),
    };
    let timeout = Duration::from_millis(args.connect_timeout);
    let pacing = match args.rate {
        Some(pps) => PacingConfig::fixed(pps, timeout),
        None => PacingConfig::polite(timeout),
    };
    Ok(Plan {
        host: args.host.clone(),
        family: FamilyChoice::from_flags(args.ipv4, args.ipv6),
        mode: if args.raw { Mode::Raw } else { Mode::Connect },
        udp_ports,
        tcp_range,
        full: tcp_range.is_some_and(|(lo, hi)| tcp_ports.len() == usize::from(hi - lo) + 1),
        tcp_ports,
        seed,
        pacing,
        concurrency: usize::try_from(args.concurrency).unwrap_or(512),
        udp_timeout: Duration::from_millis(args.udp_timeout),
        stun: !args.no_stun,
    })
}

pub(crate) fn run(args: Args) -> Result<Outcome> {
    let seed = args.seed.unwrap_or_else(|| rand::rng().next_u64());
    let plan = plan(&args, seed)?;
    args.bind.install()?;
    if plan.mode == Mode::Raw {
        engine::syn::check_privileges().map_err(|e| usage(format!("--raw: {e}")))?;
    }
    crate::app::run(Sweep(plan), &args.output, &args.files, "ports")
}

/// A planned sweep, ready to run.
pub(crate) struct Sweep(pub(crate) Plan);

/// How many ports were in a state, for an OS error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct ErrorCount {
    /// `EMFILE`, `EACCES` …
    errno: String,
    /// The OS's words.
    message: String,
    /// Ports it kept from being probed (UDP and TCP).
    ports: usize,
}

/// Counts of the UDP ports by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct UdpSummary {
    answered: usize,
    silent: usize,
    port_unreachable: usize,
    unreachable: usize,
    error: usize,
    not_probed: usize,
}

/// The report of `stunmap sweep` (schema `stunmap.sweep/1`).
#[derive(Debug, Serialize)]
pub(crate) struct SweepReport {
    /// The target as given.
    host: String,
    /// The address swept.
    target: IpAddr,
    /// How the TCP ports were tried.
    mode: Mode,
    /// Seed of the TCP sample.
    seed: u64,
    /// Whether every port of the TCP range was tried.
    full: bool,
    /// One entry per UDP port asked for, in port order.
    udp: Vec<UdpPortResult>,
    /// The UDP ports by state.
    udp_summary: UdpSummary,
    /// The TCP range's reading (none without --tcp-ports).
    tcp: Option<TcpSummary>,
    /// One entry per TCP port tried, in port order.
    tcp_results: Vec<TcpPortResult>,
    /// The raw sweep's header analysis (with --raw).
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<engine::syn::RawReport>,
    /// What the pacing did.
    pacing: PacingSummary,
    /// The local errors that kept ports from being probed, by errno.
    errors: Vec<ErrorCount>,
    /// Why nothing could be probed, when nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    not_probed: Option<String>,
}

/// What `--ndjson` streams before the report.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
enum Event<'a> {
    /// The sweep starts.
    Start {
        schema: &'static str,
        target: IpAddr,
        mode: Mode,
        udp_ports: usize,
        tcp_ports: usize,
        pacing: &'a PacingConfig,
    },
    /// A UDP port is known.
    UdpPort {
        #[serde(flatten)]
        port: &'a UdpPortResult,
    },
    /// A TCP port is known.
    TcpPort {
        #[serde(flatten)]
        port: &'a TcpPortResult,
    },
}

const SCHEMA: &str = "stunmap.sweep/1";

impl Command for Sweep {
    type Report = SweepReport;
    // The connects and SYNs run on their own threads; the async side (UDP probes, STUN
    // checks, results) gets a worker per core so its round trips are not timed behind them.
    const FLAVOR: Flavor = Flavor::MultiThread;

    async fn execute(self, ctx: Ctx) -> Result<SweepReport> {
        let p = self.0;
        let ips = resolve(&p.host, p.family).await?;
        let ip = if p.mode == Mode::Raw {
            ips.iter().copied().find(IpAddr::is_ipv4).ok_or_else(|| {
                usage(format!(
                    "--raw supports IPv4 targets only, and {} has no IPv4 address",
                    p.host
                ))
            })?
        } else {
            ips.first()
                .copied()
                .ok_or_else(|| anyhow::anyhow!("{} has no address", p.host))?
        };
        if let Some(why) = not_a_host(ip) {
            return Err(usage(format!("{} ({ip}) {why}", p.host)));
        }
        ctx.plan((p.udp_ports.len() + p.tcp_ports.len()) as u64);
        ctx.event(&Event::Start {
            schema: SCHEMA,
            target: ip,
            mode: p.mode,
            udp_ports: p.udp_ports.len(),
            tcp_ports: p.tcp_ports.len(),
            pacing: &p.pacing,
        });
        let pacing = SharedPacing::new(p.pacing, engine::clock::now());
        let window = tcp_window(p.concurrency);
        // UDP sockets: what the descriptor limit leaves after the TCP sweep's share.
        let free = engine::fd::free_descriptors();
        let udp_concurrency = usize::try_from(free)
            .unwrap_or(usize::MAX)
            .saturating_sub(window.saturating_mul(4) + 16)
            .clamp(1, 64);
        let udp_cfg = UdpSweep {
            max_wait: p.udp_timeout,
            concurrency: udp_concurrency,
            ..UdpSweep::default()
        };
        let mut udp_results: Vec<UdpPortResult> = Vec::with_capacity(p.udp_ports.len());
        let mut tcp_results: Vec<TcpPortResult> = Vec::with_capacity(p.tcp_ports.len());
        let mut raw = None;
        let udp = udp_sweep(
            ip,
            &p.udp_ports,
            udp_cfg,
            pacing.clone(),
            ctx.cancel.clone(),
            crate::ids::one,
            |r| {
                ctx.advance(1);
                ctx.event(&Event::UdpPort { port: &r });
                udp_results.push(r);
            },
        );
        match p.mode {
            Mode::Connect => {
                let cfg = TcpSweep {
                    window,
                    stun_timeout: Duration::from_millis(1000),
                    stun: p.stun,
                };
                let mut ids = crate::ids::source();
                let tcp = tcp_sweep(
                    ip,
                    &p.tcp_ports,
                    cfg,
                    pacing.clone(),
                    ctx.cancel.clone(),
                    move || ids.next_id(),
                    |r| {
                        ctx.advance(1);
                        ctx.event(&Event::TcpPort { port: &r });
                        tcp_results.push(r);
                    },
                );
                tokio::join!(udp, tcp);
            }
            Mode::Raw => {
                let mut sent = 0u64;
                let tcp = async {
                    if p.tcp_ports.is_empty() {
                        return Ok(None);
                    }
                    engine::syn::syn_scan(
                        ip,
                        &p.tcp_ports,
                        pacing.clone(),
                        ctx.cancel.clone(),
                        |n| {
                            ctx.advance(n.saturating_sub(sent));
                            sent = sent.max(n);
                        },
                    )
                    .await
                    .map(Some)
                };
                let (_, r) = tokio::join!(udp, tcp);
                if let Some(mut r) = r? {
                    let results = std::mem::take(&mut r.results);
                    for t in &results {
                        ctx.event(&Event::TcpPort { port: t });
                    }
                    tcp_results = results;
                    raw = Some(r);
                }
            }
        }
        Ok(assemble(
            &p,
            ip,
            udp_results,
            tcp_results,
            raw,
            pacing.summary(),
            &ctx,
        ))
    }
}

/// The report from what came back: every port asked for is in it, those without a result
/// marked not probed (the run was stopped first).
fn assemble(
    p: &Plan,
    ip: IpAddr,
    mut udp: Vec<UdpPortResult>,
    mut tcp: Vec<TcpPortResult>,
    raw: Option<engine::syn::RawReport>,
    pacing: PacingSummary,
    ctx: &Ctx,
) -> SweepReport {
    udp.sort_by_key(|u| u.port);
    udp.dedup_by_key(|u| u.port);
    for &port in &p.udp_ports {
        if udp.binary_search_by_key(&port, |u| u.port).is_err() {
            let r = UdpPortResult::bare(port, UdpState::NotProbed, 0);
            ctx.event(&Event::UdpPort { port: &r });
            udp.push(r);
        }
    }
    udp.sort_by_key(|u| u.port);
    tcp.sort_by_key(|t| t.port);
    tcp.dedup_by_key(|t| t.port);
    for &port in &p.tcp_ports {
        if tcp.binary_search_by_key(&port, |t| t.port).is_err() {
            let r = TcpPortResult::not_probed(port);
            ctx.event(&Event::TcpPort { port: &r });
            tcp.push(r);
        }
    }
    tcp.sort_by_key(|t| t.port);
    let mut s = UdpSummary::default();
    for u in &udp {
        *match u.state {
            UdpState::Answered => &mut s.answered,
            UdpState::Silent => &mut s.silent,
            UdpState::PortUnreachable => &mut s.port_unreachable,
            UdpState::Unreachable => &mut s.unreachable,
            UdpState::Error => &mut s.error,
            UdpState::NotProbed => &mut s.not_probed,
        } += 1;
    }
    let mut errors: BTreeMap<(String, String), usize> = BTreeMap::new();
    let local = udp
        .iter()
        .filter(|u| u.state == UdpState::Error)
        .filter_map(|u| u.error.as_ref())
        .chain(
            tcp.iter()
                .filter(|t| t.state == TcpState::Error)
                .filter_map(|t| t.error.as_ref()),
        );
    for e in local {
        *errors
            .entry((e.errno.clone(), e.message.clone()))
            .or_default() += 1;
    }
    let errors: Vec<ErrorCount> = errors
        .into_iter()
        .map(|((errno, message), ports)| ErrorCount {
            errno,
            message,
            ports,
        })
        .collect();
    let measured = udp.iter().filter(|u| u.state.is_measured()).count()
        + tcp.iter().filter(|t| t.state.is_measured()).count();
    let not_probed = (measured == 0).then(|| {
        if errors.is_empty() {
            "the run stopped before any port was probed".to_string()
        } else {
            errors
                .iter()
                .map(|e| format!("{} ({}) on {} ports", e.errno, e.message, e.ports))
                .collect::<Vec<_>>()
                .join("; ")
        }
    });
    let summary = p.tcp_range.map(|(lo, hi)| summarize_tcp(lo, hi, &tcp));
    SweepReport {
        host: p.host.clone(),
        target: ip,
        mode: p.mode,
        seed: p.seed,
        full: p.full,
        udp,
        udp_summary: s,
        tcp: summary,
        tcp_results: tcp,
        raw,
        pacing,
        errors,
        not_probed,
    }
}

impl SweepReport {
    fn udp_passed(&self) -> usize {
        self.udp_summary.answered
    }

    fn tcp_open(&self) -> usize {
        self.tcp.as_ref().map_or(0, |t| t.open)
    }

    fn asked(&self) -> usize {
        self.udp.len() + self.tcp_results.len()
    }
}

impl Report for SweepReport {
    const SCHEMA: &'static str = SCHEMA;

    fn outcome(&self) -> Outcome {
        let passed = self.udp_passed() + self.tcp_open();
        if self.not_probed.is_some() || passed == 0 {
            Outcome::Blocked
        } else if passed == self.asked() {
            Outcome::Ok
        } else {
            Outcome::Degraded
        }
    }

    fn document(&self, run: &RunInfo) -> Doc {
        document(self, run)
    }

    fn metrics(&self, run: &RunInfo, w: &mut Writer) -> bool {
        metrics(self, run, w);
        true
    }
}

fn outcome_mark(o: Outcome) -> Mark {
    match o {
        Outcome::Ok => Mark::new("ok", Tone::Good),
        Outcome::Degraded => Mark::new("degraded", Tone::Warn),
        Outcome::Interrupted => Mark::new("interrupted", Tone::Neutral),
        _ => Mark::new("blocked", Tone::Bad),
    }
}

fn udp_mark(s: UdpState) -> Mark {
    let tone = match s {
        UdpState::Answered => Tone::Good,
        UdpState::Silent | UdpState::PortUnreachable | UdpState::Unreachable => Tone::Bad,
        UdpState::Error => Tone::Warn,
        UdpState::NotProbed => Tone::Neutral,
    };
    Mark::new(s.name(), tone)
}

fn tcp_mark(s: TcpState) -> Mark {
    let tone = match s {
        TcpState::Open => Tone::Good,
        // The target's own RST: the path lets the port through.
        TcpState::Refused => Tone::Warn,
        TcpState::Filtered | TcpState::Unreachable => Tone::Bad,
        TcpState::Error => Tone::Warn,
        TcpState::NotProbed => Tone::Neutral,
    };
    Mark::new(s.name(), tone)
}

/// What a UDP port's row says besides its state.
fn udp_detail(u: &UdpPortResult) -> String {
    let mut parts = Vec::new();
    if let Some(rtt) = u.rtt {
        parts.push(format!("RTT {}", duration(rtt)));
    }
    if let Some(m) = u.mapped {
        parts.push(format!("mapped {m}"));
    }
    if let Some(c) = u.error_code {
        parts.push(format!("STUN error {c}"));
    }
    if let Some(sw) = &u.software {
        parts.push(format!("software \"{sw}\""));
    }
    if let Some(e) = &u.error {
        parts.push(e.to_string());
    }
    match u.state {
        UdpState::Silent => parts.push(format!("{} requests, no answer", u.tries)),
        UdpState::NotProbed => parts.push("stopped before an answer or its timeout".into()),
        _ => {}
    }
    parts.join(", ")
}

/// Ports as ranges: "443–1023, 3478".
fn port_list(ports: &[u16]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while let Some(&start) = ports.get(i) {
        let mut end = start;
        while ports
            .get(i + 1)
            .is_some_and(|&n| Some(n) == end.checked_add(1))
        {
            i += 1;
            end = ports.get(i).copied().unwrap_or(end);
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}–{end}")
        });
        i += 1;
    }
    out.join(", ")
}

fn headline(r: &SweepReport) -> String {
    if let Some(why) = &r.not_probed {
        return format!("Not probed: {why}");
    }
    let mut parts = Vec::new();
    if !r.udp.is_empty() {
        parts.push(format!(
            "UDP {} of {} answered",
            r.udp_summary.answered,
            r.udp.len()
        ));
    }
    if let Some(t) = &r.tcp {
        let mut counts = vec![format!("{} open", t.open)];
        for (n, what) in [
            (t.refused, "refused"),
            (t.filtered, "filtered"),
            (t.unreachable, "unreachable"),
            (t.error, "error"),
            (t.not_probed, "not probed"),
        ] {
            if n > 0 {
                counts.push(format!("{n} {what}"));
            }
        }
        parts.push(format!(
            "TCP {}–{}: {} of {} tried",
            t.range_start,
            t.range_end,
            counts.join(", "),
            t.tried
        ));
    }
    format!("{}: {}", r.target, parts.join("; "))
}

/// Marks for the port map: every port of a small sweep, one mark per stretch of the range
/// for a large one (the worst state in it), so the page stays small.
fn tcp_lane(r: &SweepReport, t: &TcpSummary) -> PortLane {
    const MAX_MARKS: usize = 960;
    let results = &r.tcp_results;
    let marks: Vec<PortMark> = if results.len() <= MAX_MARKS {
        results
            .iter()
            .map(|p| PortMark {
                port: p.port,
                mark: tcp_mark(p.state),
                label: p.port.to_string(),
                title: format!(
                    "TCP {}: {}{}",
                    p.port,
                    p.state,
                    if matches!(p.stun, StunOverTcp::Answered { .. }) {
                        ", STUN answered"
                    } else {
                        ""
                    }
                ),
            })
            .collect()
    } else {
        results
            .chunks(results.len().div_ceil(MAX_MARKS))
            .filter_map(|chunk| {
                let first = chunk.first()?;
                let last = chunk.last()?;
                let worst = chunk
                    .iter()
                    .map(|p| p.state)
                    .max_by_key(|s| severity(*s))
                    .unwrap_or(first.state);
                let mut by: BTreeMap<&'static str, usize> = BTreeMap::new();
                for p in chunk {
                    *by.entry(p.state.name()).or_default() += 1;
                }
                let what: Vec<String> = by.iter().map(|(s, n)| format!("{n} {s}")).collect();
                Some(PortMark {
                    port: first.port,
                    mark: tcp_mark(worst),
                    label: first.port.to_string(),
                    title: format!("TCP {}–{}: {}", first.port, last.port, what.join(", ")),
                })
            })
            .collect()
    };
    PortLane {
        label: format!(
            "TCP {}–{} ({}): green open, amber refused by the target, red filtered or unreachable",
            t.range_start,
            t.range_end,
            if t.full { "every port" } else { "sample" }
        ),
        style: LaneStyle::Ticks {
            start: t.range_start,
            end: t.range_end,
        },
        ports: marks,
    }
}

/// How bad a state is for the port map's stretches.
fn severity(s: TcpState) -> u8 {
    match s {
        TcpState::Open => 0,
        TcpState::Refused => 1,
        TcpState::NotProbed => 2,
        TcpState::Error => 3,
        TcpState::Unreachable => 4,
        TcpState::Filtered => 5,
    }
}

fn document(r: &SweepReport, run: &RunInfo) -> Doc {
    let mut doc = Doc::new("stunmap sweep", headline(r));
    doc.mark = Some(outcome_mark(run.exit_code));
    let what = match (&r.tcp, r.full) {
        (None, _) => "UDP only".to_string(),
        (Some(t), true) => format!("every port of {}–{}", t.range_start, t.range_end),
        (Some(t), false) => format!(
            "a sample of {} ports of {}–{} (seed {})",
            t.tried, t.range_start, t.range_end, r.seed
        ),
    };
    let mode = match r.mode {
        Mode::Connect => "connect",
        Mode::Raw => "raw SYN",
    };
    let host = if r.host == r.target.to_string() {
        r.host.clone()
    } else {
        format!("{} ({})", r.host, r.target)
    };
    doc.summary.push(format!(
        "{host}: {mode} sweep of {what}; {:.2} s, exit {}",
        run.elapsed_seconds,
        run.exit_code.code()
    ));
    let mut lanes = Vec::new();
    if !r.udp.is_empty() {
        lanes.push(PortLane {
            label: "UDP ports (STUN Binding): green answered, red silent or rejected".into(),
            style: LaneStyle::Boxes,
            ports: r
                .udp
                .iter()
                .map(|u| PortMark {
                    port: u.port,
                    mark: udp_mark(u.state),
                    label: format!("udp {}", u.port),
                    title: format!("UDP {}: {} {}", u.port, u.state, udp_detail(u)),
                })
                .collect(),
        });
    }
    if let Some(t) = &r.tcp {
        lanes.push(tcp_lane(r, t));
    }
    doc.push(Section::new("Port map").block(Block::Ports {
        id: "port-map".into(),
        lanes,
    }));
    if !r.udp.is_empty() {
        let rows = r
            .udp
            .iter()
            .map(|u| {
                vec![
                    Cell::from(format!("udp/{}", u.port)),
                    Cell::from(udp_mark(u.state)),
                    Cell::from(udp_detail(u)),
                ]
            })
            .collect();
        doc.push(Section::new("UDP").block(Block::Table {
            header: ["port", "state", "detail"].map(String::from).to_vec(),
            rows,
        }));
    }
    if let Some(t) = &r.tcp {
        let mut s = Section::new(format!("TCP {}–{}", t.range_start, t.range_end));
        s.push(Block::Text(t.text.clone()));
        s.push(Block::Table {
            header: ["ports", "state", "tried", "STUN answered"]
                .map(String::from)
                .to_vec(),
            rows: t
                .ranges
                .iter()
                .map(|run| {
                    vec![
                        Cell::from(if run.start == run.end {
                            run.start.to_string()
                        } else {
                            format!("{}–{}", run.start, run.end)
                        }),
                        Cell::from(tcp_mark(run.state)),
                        Cell::from(run.tried.to_string()),
                        Cell::from(run.stun_answered.to_string()),
                    ]
                })
                .collect(),
        });
        let stun: Vec<u16> = r
            .tcp_results
            .iter()
            .filter(|p| matches!(p.stun, StunOverTcp::Answered { .. }))
            .map(|p| p.port)
            .collect();
        if !stun.is_empty() {
            s.push(Block::Text(format!(
                "STUN answered over TCP on {}",
                port_list(&stun)
            )));
        }
        doc.push(s);
    }
    if let Some(raw) = &r.raw {
        let mut s = Section::new("Raw SYN answers");
        s.push(Block::Fields(vec![
            ("SYN-ACK TTLs".into(), join(&raw.syn_ack_ttls)),
            ("RST TTLs".into(), join(&raw.rst_ttls)),
            ("ICMP from".into(), join(&raw.icmp_sources)),
        ]));
        s.push(Block::List(raw.notes.clone()));
        doc.push(s);
    }
    if !r.errors.is_empty() || r.not_probed.is_some() {
        let mut s = Section::new("Not probed");
        s.push(Block::List(
            r.errors
                .iter()
                .map(|e| format!("{} ({}): {} ports", e.errno, e.message, e.ports))
                .collect(),
        ));
        let left = r.udp_summary.not_probed + r.tcp.as_ref().map_or(0, |t| t.not_probed);
        if left > 0 {
            s.push(Block::Text(format!(
                "{left} ports were not tried: the run stopped first"
            )));
        }
        doc.push(s);
    }
    let pc = &r.pacing;
    doc.push(Section::new("Pacing").block(Block::Fields(vec![
        (
            "rate".into(),
            if pc.start_pps == pc.ceiling_pps && pc.final_pps == pc.ceiling_pps {
                format!("{}/s throughout (--rate)", pc.ceiling_pps)
            } else {
                format!(
                    "{}/s at the start, {}/s at the most (ceiling {}/s), {}/s at the end",
                    pc.start_pps, pc.peak_pps, pc.ceiling_pps, pc.final_pps
                )
            },
        ),
        (
            "timeout".into(),
            format!(
                "{} per try at the end ({} round-trip samples{})",
                duration(pc.timeout),
                pc.rtt_samples,
                pc.srtt
                    .map(|s| format!(", SRTT {}", duration(s)))
                    .unwrap_or_default()
            ),
        ),
        (
            "back-offs".into(),
            format!(
                "{} on loss, {} on rate-limited ICMP; {} resends",
                pc.loss_backoffs, pc.icmp_backoffs, pc.resends
            ),
        ),
    ])));
    doc
}

fn join<T: std::fmt::Display>(v: &[T]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Median and largest of some durations, seconds.
fn spread(mut v: Vec<f64>) -> Option<(f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let median = v.get(v.len() / 2).copied()?;
    let max = v.last().copied()?;
    Some((median, max))
}

fn metrics(r: &SweepReport, run: &RunInfo, w: &mut Writer) {
    let target = r.target.to_string();
    if let Some(t) = &r.tcp {
        let range = format!("{}-{}", t.range_start, t.range_end);
        w.family(
            "stunmap_sweep_tcp_ports",
            "gauge",
            "TCP ports of the swept range by state (open, refused, filtered, unreachable, error, not-probed).",
        );
        for (state, n) in [
            (TcpState::Open, t.open),
            (TcpState::Refused, t.refused),
            (TcpState::Filtered, t.filtered),
            (TcpState::Unreachable, t.unreachable),
            (TcpState::Error, t.error),
            (TcpState::NotProbed, t.not_probed),
        ] {
            w.sample(
                "stunmap_sweep_tcp_ports",
                &[
                    ("target", &target),
                    ("range", &range),
                    ("state", state.name()),
                ],
                n as f64,
            );
        }
        w.family(
            "stunmap_sweep_tcp_range_ports",
            "gauge",
            "Size of the swept TCP range (the sample is drawn from it).",
        );
        w.sample(
            "stunmap_sweep_tcp_range_ports",
            &[("target", &target), ("range", &range)],
            f64::from(t.range_end) - f64::from(t.range_start) + 1.0,
        );
        let times: Vec<f64> = r
            .tcp_results
            .iter()
            .filter_map(|p| p.connect_time.map(|d| d.as_secs_f64()))
            .collect();
        if let Some((median, max)) = spread(times) {
            w.family(
                "stunmap_sweep_tcp_rtt_seconds",
                "gauge",
                "Time from SYN to SYN-ACK, RST or ICMP error over the answered TCP ports.",
            );
            for (stat, v) in [("median", median), ("max", max)] {
                w.sample(
                    "stunmap_sweep_tcp_rtt_seconds",
                    &[("target", &target), ("range", &range), ("stat", stat)],
                    v,
                );
            }
        }
    }
    if !r.udp.is_empty() {
        w.family(
            "stunmap_sweep_udp_ports",
            "gauge",
            "UDP ports by what a STUN Binding request found (answered, silent, port-unreachable, unreachable, error, not-probed).",
        );
        let s = &r.udp_summary;
        for (state, n) in [
            (UdpState::Answered, s.answered),
            (UdpState::Silent, s.silent),
            (UdpState::PortUnreachable, s.port_unreachable),
            (UdpState::Unreachable, s.unreachable),
            (UdpState::Error, s.error),
            (UdpState::NotProbed, s.not_probed),
        ] {
            w.sample(
                "stunmap_sweep_udp_ports",
                &[("target", &target), ("state", state.name())],
                n as f64,
            );
        }
        w.family(
            "stunmap_sweep_udp_answered",
            "gauge",
            "1 when the UDP port answered a STUN Binding request, 0 otherwise.",
        );
        for u in &r.udp {
            let port = u.port.to_string();
            w.sample(
                "stunmap_sweep_udp_answered",
                &[("target", &target), ("port", &port)],
                if u.state == UdpState::Answered {
                    1.0
                } else {
                    0.0
                },
            );
        }
        if r.udp.iter().any(|u| u.rtt.is_some()) {
            w.family(
                "stunmap_sweep_udp_rtt_seconds",
                "gauge",
                "Round-trip time of the STUN Binding transaction that a UDP port answered.",
            );
            for u in &r.udp {
                if let Some(rtt) = u.rtt {
                    let port = u.port.to_string();
                    w.sample(
                        "stunmap_sweep_udp_rtt_seconds",
                        &[("target", &target), ("port", &port)],
                        rtt.as_secs_f64(),
                    );
                }
            }
        }
    }
    w.family(
        "stunmap_sweep_peak_rate_pps",
        "gauge",
        "Highest send rate the sweep's pacing reached, packets per second.",
    );
    w.sample(
        "stunmap_sweep_peak_rate_pps",
        &[("target", &target)],
        f64::from(r.pacing.peak_pps),
    );
    w.family(
        "stunmap_sweep_duration_seconds",
        "gauge",
        "How long the sweep ran.",
    );
    w.sample(
        "stunmap_sweep_duration_seconds",
        &[("target", &target)],
        run.elapsed_seconds,
    );
    w.family(
        "stunmap_sweep_interrupted",
        "gauge",
        "1 when the sweep was stopped early (signal or deadline): partial results.",
    );
    w.sample(
        "stunmap_sweep_interrupted",
        &[("target", &target)],
        if run.partial() { 1.0 } else { 0.0 },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn args(list: &[&str]) -> Result<Args, clap::Error> {
        let mut v = vec!["sweep"];
        v.extend_from_slice(list);
        Cli::try_parse_from(v).map(|c| c.args)
    }

    fn usage_error(e: &anyhow::Error) -> bool {
        e.downcast_ref::<crate::exit::UsageError>().is_some()
    }

    #[test]
    fn broadcast_multicast_and_unspecified_targets_are_refused_before_anything_is_sent() {
        for host in [
            "255.255.255.255",
            "224.0.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "ff02::1",
            "::",
        ] {
            let e = plan(&args(&[host]).unwrap(), 1).unwrap_err();
            assert!(usage_error(&e), "{host}: {e}");
            assert!(e.to_string().starts_with(host), "{e}");
        }
        assert!(plan(&args(&["127.0.0.1"]).unwrap(), 1).is_ok());
        assert!(plan(&args(&["stun.example.test"]).unwrap(), 1).is_ok());
    }

    #[test]
    fn every_numeric_flag_has_a_range() {
        for bad in [
            ["--rate", "0"],
            ["--rate", "100000001"],
            ["--concurrency", "0"],
            ["--concurrency", "65537"],
            ["--connect-timeout", "0"],
            ["--connect-timeout", "60001"],
            ["--udp-timeout", "0"],
            ["--sample", "0"],
            ["--sample", "65536"],
            ["--seed", "18446744073709551616"],
        ] {
            let e = args(&["127.0.0.1", bad[0], bad[1]]).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{bad:?}");
        }
        for bad in [
            ["--tcp-ports", "9-3"],
            ["--tcp-ports", "0"],
            ["--udp-ports", "70000"],
        ] {
            let e = plan(&args(&["127.0.0.1", bad[0], bad[1]]).unwrap(), 1).unwrap_err();
            assert!(usage_error(&e), "{bad:?}: {e}");
        }
        let e = plan(
            &args(&["127.0.0.1", "--udp-ports", "none", "--tcp-ports", "none"]).unwrap(),
            1,
        )
        .unwrap_err();
        assert!(usage_error(&e));
    }

    #[test]
    fn the_plan_is_reproducible_and_paces_by_the_flags() {
        let a = args(&["127.0.0.1", "--seed", "7"]).unwrap();
        let p = plan(&a, 7).unwrap();
        assert_eq!(p.tcp_ports, sample_ports(443, 65535, DEFAULT_SAMPLE, 7));
        assert!(!p.full);
        assert_eq!(p.pacing, PacingConfig::polite(Duration::from_secs(1)));
        let p = plan(
            &args(&[
                "h.test",
                "--tcp-ports",
                "443-4000",
                "--full",
                "--rate",
                "10",
            ])
            .unwrap(),
            1,
        )
        .unwrap();
        assert_eq!(p.tcp_ports.len(), 3558);
        assert!(p.full);
        assert_eq!(p.pacing, PacingConfig::fixed(10, Duration::from_secs(1)));
        assert_eq!(p.udp_ports, vec![80, 443, 3478, 5555]);
    }

    #[test]
    fn port_lists_read_as_ranges() {
        assert_eq!(
            port_list(&[443, 444, 445, 3478, 5349, 5350]),
            "443–445, 3478, 5349–5350"
        );
        assert_eq!(port_list(&[]), "");
        assert_eq!(port_list(&[65534, 65535]), "65534–65535");
    }

    #[test]
    fn nothing_probed_is_never_ok_and_says_why() {
        let p = plan(
            &args(&["127.0.0.1", "--tcp-ports", "none", "--udp-ports", "1-3"]).unwrap(),
            1,
        )
        .unwrap();
        let mut udp: Vec<UdpPortResult> = (1..=3)
            .map(|port| {
                let mut r = UdpPortResult::bare(port, UdpState::Error, 0);
                r.error = Some(probes::sweep::LocalError {
                    errno: "EMFILE".into(),
                    message: "Too many open files".into(),
                });
                r
            })
            .collect();
        let ctx = crate::app::Ctx::detached(crate::app::Stop::detached(None));
        let r = assemble(
            &p,
            "127.0.0.1".parse().unwrap(),
            udp.clone(),
            Vec::new(),
            None,
            PacingSummary::default(),
            &ctx,
        );
        assert_eq!(r.outcome(), Outcome::Blocked);
        assert_eq!(
            r.not_probed.as_deref(),
            Some("EMFILE (Too many open files) on 3 ports")
        );
        assert!(headline(&r).starts_with("Not probed: EMFILE"));
        // One answered, one left out: degraded, and the left-out port is in the report.
        udp[0] = UdpPortResult::bare(1, UdpState::Answered, 1);
        udp.truncate(1);
        let r = assemble(
            &p,
            "127.0.0.1".parse().unwrap(),
            udp,
            Vec::new(),
            None,
            PacingSummary::default(),
            &ctx,
        );
        assert_eq!(r.udp.len(), 3);
        assert_eq!(r.udp_summary.not_probed, 2);
        assert_eq!(r.outcome(), Outcome::Degraded);
    }
}
