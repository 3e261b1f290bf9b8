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
    #[command(flatten)]
    family: super::common::FamilyArgs,
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
        if matches!(args.host.parse::<IpAddr>(), Ok(IpAddr::V6(_))) || args.family.ipv6 {
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
        family: args.family.choice(),
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

mod render;
use render::{document, metrics};

#[cfg(test)]
mod tests;
