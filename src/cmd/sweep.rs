//! `stunmap sweep`: which UDP ports of a STUN/TURN server answer, and which part of a TCP port
//! range gets through (sampled or full), with a real STUN listener told apart from a middlebox
//! that accepts every port.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::Result;
use engine::scan::{TcpScanConfig, UdpPortOutcome, tcp_scan, udp_binding_connected};
use engine::{Cancel, Rate};
use probes::Retransmit;
use probes::binding::BindingConfig;
use probes::sweep::{
    DEFAULT_SAMPLE, TcpPortResult, TcpState, TcpSummary, sample_ports, summarize_tcp,
};
use rand::RngCore;
use serde::Serialize;

use crate::exit::{Outcome, usage};
use crate::progress::Progress;
use crate::target::{FamilyChoice, parse_ports, resolve};

/// Flags of `stunmap sweep`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where the probes leave from (--bind, --interface, --source-port).
    #[command(flatten)]
    bind: super::common::BindArgs,
    /// The server: a name or an IP address.
    host: String,
    /// UDP ports to probe with STUN Binding requests ("none" to skip).
    #[arg(long, default_value = "80,443,3478,5555", value_name = "LIST")]
    udp_ports: String,
    /// TCP port range to sweep ("none" to skip).
    #[arg(long, default_value = "443-65535", value_name = "RANGE")]
    tcp_ports: String,
    /// Random ports drawn from the TCP range (one per equal bucket), on top of the ports that
    /// matter (80, 443, 3478, 3479, 5349, 5350, 5555, 8080, 8443).
    #[arg(long, default_value_t = DEFAULT_SAMPLE, conflicts_with = "full")]
    sample: usize,
    /// Try every port of the TCP range.
    #[arg(long)]
    full: bool,
    /// Seed of the sample (printed in the report, so a sweep can be repeated exactly).
    #[arg(long)]
    seed: Option<u64>,
    /// Milliseconds before an unanswered TCP connect counts as filtered.
    #[arg(long, default_value_t = 1500, value_name = "MS")]
    connect_timeout: u64,
    /// Milliseconds before a UDP port without an answer counts as silent.
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    udp_timeout: u64,
    /// SYNs and datagrams per second.
    #[arg(long, default_value_t = Rate::POLITE.pps, value_name = "PPS")]
    rate: u32,
    /// Connects in flight at once (also capped by the file-descriptor limit).
    #[arg(long, default_value_t = 512)]
    concurrency: usize,
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
    /// Machine-readable output (schema `stunmap.sweep/1`).
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Serialize)]
struct UdpPort {
    port: u16,
    #[serde(flatten)]
    outcome: UdpPortOutcome,
}

#[derive(Debug, Serialize)]
struct Report {
    schema: &'static str,
    target: IpAddr,
    interrupted: bool,
    elapsed_seconds: f64,
    udp: Vec<UdpPort>,
    seed: u64,
    tcp: Option<TcpSummary>,
    tcp_results: Vec<TcpPortResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<engine::syn::RawReport>,
}

fn parse_port_list(s: &str) -> Result<Vec<u16>> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for part in s.split(',') {
        let (a, b) = parse_ports(part)?;
        out.extend(a..=b);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

pub(crate) fn run(args: Args) -> Result<Outcome> {
    args.bind.install()?;
    let udp_ports = parse_port_list(&args.udp_ports)?;
    let tcp_range = if args.tcp_ports.eq_ignore_ascii_case("none") {
        None
    } else {
        Some(parse_ports(&args.tcp_ports)?)
    };
    if args.rate == 0 || args.concurrency == 0 {
        return Err(usage("--rate and --concurrency must be at least 1"));
    }
    if args.connect_timeout == 0 || args.udp_timeout == 0 {
        return Err(usage("timeouts must be at least 1 ms"));
    }
    if args.raw {
        engine::syn::check_privileges().map_err(|e| usage(format!("--raw: {e}")))?;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(args, udp_ports, tcp_range))
}

async fn run_async(
    args: Args,
    udp_ports: Vec<u16>,
    tcp_range: Option<(u16, u16)>,
) -> Result<Outcome> {
    let family = FamilyChoice::from_flags(args.ipv4, args.ipv6);
    let ips = resolve(&args.host, family).await?;
    // Raw SYNs are IPv4 only: take the first IPv4 address there.
    let ip = if args.raw {
        ips.iter().copied().find(IpAddr::is_ipv4).ok_or_else(|| {
            usage(format!(
                "--raw supports IPv4 targets only, and {} has no IPv4 address",
                args.host
            ))
        })?
    } else {
        let Some(ip) = ips.first().copied() else {
            anyhow::bail!("{} has no address", args.host);
        };
        ip
    };
    let (handle, cancel) = Cancel::new();
    engine::driver::cancel_on_signals(handle);
    let start = Instant::now();
    let seed = args.seed.unwrap_or_else(|| rand::rng().next_u64());

    // UDP: every listed port at once (a handful), each on its own connected socket.
    let udp_cfg = BindingConfig {
        retransmit: Retransmit {
            rto: Duration::from_millis(500),
            deadline: Some(Duration::from_millis(args.udp_timeout)),
            ..Retransmit::default()
        },
        ..BindingConfig::default()
    };
    let mut udp_set = tokio::task::JoinSet::new();
    for port in &udp_ports {
        let dest = SocketAddr::new(ip, *port);
        let tid = crate::ids::one();
        udp_set
            .spawn(async move { (dest.port(), udp_binding_connected(dest, tid, udp_cfg).await) });
    }

    // TCP: the sample (or the whole range).
    let ports: Vec<u16> = match tcp_range {
        None => Vec::new(),
        Some((lo, hi)) if args.full => (lo..=hi).collect(),
        Some((lo, hi)) => sample_ports(lo, hi, args.sample, seed),
    };
    let progress = Progress::new(ports.len() as u64, args.quiet || args.json);
    let mut results = Vec::with_capacity(ports.len());
    let mut raw = None;
    let interrupted = if args.raw {
        let r = engine::syn::syn_scan(
            ip,
            &ports,
            Duration::from_millis(args.connect_timeout),
            Some(Rate {
                pps: args.rate,
                burst: Rate::POLITE.burst.max(args.rate / 10),
            }),
            cancel.clone(),
            |sent| progress.set(sent),
        )
        .await?;
        results = r.results.clone();
        let interrupted = r.interrupted;
        raw = Some(r);
        interrupted
    } else {
        let cfg = TcpScanConfig {
            connect_timeout: Duration::from_millis(args.connect_timeout),
            stun_timeout: Duration::from_millis(1000),
            concurrency: args.concurrency,
            rate: Some(Rate {
                pps: args.rate,
                burst: Rate::POLITE.burst.max(args.rate / 10),
            }),
            stun: !args.no_stun,
        };
        let mut ids = crate::ids::source();
        tcp_scan(
            ip,
            &ports,
            cfg,
            cancel.clone(),
            move || ids.next_id(),
            |r| {
                progress.inc();
                results.push(r);
            },
        )
        .await
    };
    progress.finish();
    let mut udp = Vec::new();
    while let Some(r) = udp_set.join_next().await {
        if let Ok((port, Ok(outcome))) = r {
            udp.push(UdpPort { port, outcome });
        }
    }
    udp.sort_by_key(|u| u.port);
    results.sort_by_key(|r| r.port);
    let tcp = tcp_range.map(|(lo, hi)| summarize_tcp(lo, hi, &results));
    let report = Report {
        schema: "stunmap.sweep/1",
        target: ip,
        interrupted,
        elapsed_seconds: start.elapsed().as_secs_f64(),
        udp,
        seed,
        tcp,
        tcp_results: results,
        raw,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_human(&report, args.full);
    }
    Ok(outcome(&report))
}

fn outcome(r: &Report) -> Outcome {
    if r.interrupted {
        return Outcome::Interrupted;
    }
    let udp_ok = r
        .udp
        .iter()
        .filter(|u| matches!(u.outcome, UdpPortOutcome::Answered { .. }))
        .count();
    let tcp_open = r
        .tcp_results
        .iter()
        .filter(|t| t.state == TcpState::Open)
        .count();
    let tried = r.udp.len() + r.tcp_results.len();
    let ok = udp_ok + tcp_open;
    if ok == tried {
        Outcome::Ok
    } else if ok == 0 {
        Outcome::Blocked
    } else {
        Outcome::Degraded
    }
}

fn print_human(r: &Report, full: bool) {
    if r.interrupted {
        println!("INTERRUPTED: partial results follow");
    }
    println!("sweep {}", r.target);
    if !r.udp.is_empty() {
        let parts: Vec<String> = r
            .udp
            .iter()
            .map(|u| {
                let what = match &u.outcome {
                    UdpPortOutcome::Answered { binding } => match binding.rtt {
                        Some(rtt) => {
                            format!("answered ({})", super::stun::fmt_secs(rtt.as_secs_f64()))
                        }
                        None => "answered".to_string(),
                    },
                    UdpPortOutcome::Silent => "silent".to_string(),
                    UdpPortOutcome::PortUnreachable => "ICMP port unreachable".to_string(),
                    UdpPortOutcome::Unreachable => "ICMP unreachable".to_string(),
                };
                format!("{} {what}", u.port)
            })
            .collect();
        println!("UDP  {}", parts.join(", "));
    }
    if let Some(t) = &r.tcp {
        let how = if full {
            "every port".to_string()
        } else {
            format!("sample, seed {}", r.seed)
        };
        println!("TCP  {}–{} ({how}): {}", t.range_start, t.range_end, t.text);
        let stun: Vec<String> = r
            .tcp_results
            .iter()
            .filter(|p| matches!(p.stun, probes::sweep::StunOverTcp::Answered { .. }))
            .map(|p| p.port.to_string())
            .collect();
        if !stun.is_empty() {
            println!("     STUN answered over TCP on {}", stun.join(", "));
        }
    }
    if let Some(raw) = &r.raw {
        for line in &raw.notes {
            println!("     {line}");
        }
    }
    println!("     ({:.2} s)", r.elapsed_seconds);
}
