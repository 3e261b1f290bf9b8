//! `stunmap relay`: relay latency through real TURN allocations, per transport.
//!
//! For each transport asked for (UDP, TCP, TLS), one allocation is made, a permission and a
//! channel are set for the probe's own UDP socket as the peer, and N timestamped packets are
//! looped through the relay (see `probes::turn::relay`). Each run also measures the direct
//! RTT to the same server over the same transport with a few Binding requests, so the relay's
//! overhead is visible. Every allocation is released at the end, on error and on Ctrl-C.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use engine::Cancel;
use engine::stats::{RttSummary, summarize};
use engine::stream::{StreamOptions, run_stream};
use engine::tcp::ConnectOutcome;
use probes::Transport;
use probes::turn::allocate::AllocateStatus;
use probes::turn::relay::{DataMode, HEADER, RelayConfig, RelayProbe, RelayReport};
use probes::turn::session::Release;
use probes::turn::uri::{TURNS_PORT, TurnUri};
use serde::Serialize;

use super::turn::{AuthArgs, parse_uri, server_addr, session_config};
use crate::exit::{Outcome, usage};

/// Longest run allowed: permissions last 300 s (RFC 8656 §9) and the loop does not refresh
/// them.
const MAX_RUN: Duration = Duration::from_secs(240);

/// Flags of `stunmap relay`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The server: turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT] (RFC 7065).
    #[arg(value_name = "URI")]
    uri: String,
    #[command(flatten)]
    auth: AuthArgs,
    /// Packets looped through the relay per transport.
    #[arg(long, default_value_t = 100)]
    count: u32,
    /// Packets per second.
    #[arg(long, default_value_t = 50, value_name = "PPS")]
    rate: u32,
    /// Payload bytes per packet (at least 16).
    #[arg(long, default_value_t = 100, value_name = "BYTES")]
    size: usize,
    /// Transports to compare, e.g. udp,tcp,tls (default: the URI's). TCP and UDP use the
    /// URI's host and port; TLS uses --tls-port.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    transports: Vec<TransportArg>,
    /// TLS port for --transports …,tls (default: the URI's port for turns:, else 5349).
    #[arg(long, value_name = "PORT")]
    tls_port: Option<u16>,
    /// Send through a channel (ChannelData) or with Send/Data indications.
    #[arg(long, value_enum, default_value_t = ModeArg::Channel)]
    mode: ModeArg,
    /// Binding requests for the direct RTT (same server, same transport).
    #[arg(long, default_value_t = 5, value_name = "N")]
    direct: u8,
    /// Milliseconds to wait after the last packet before counting the missing ones lost.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    linger: u64,
    /// Milliseconds a control request may take before it counts as lost.
    #[arg(long, default_value_t = 3000, value_name = "MS")]
    timeout: u64,
    /// Machine-readable output (schema `stunmap.relay/1`).
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum TransportArg {
    Udp,
    Tcp,
    Tls,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ModeArg {
    Channel,
    Indication,
}

#[derive(Debug, Serialize)]
struct TransportRun {
    uri: String,
    transport: Transport,
    server: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connect: Option<ConnectOutcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_error: Option<String>,
    /// Relay RTT through the allocation (seconds).
    relay_rtt: Option<RttSummary>,
    /// Direct RTT to the server over the same transport (seconds).
    direct_rtt: Option<RttSummary>,
    /// Fraction of looped packets that did not come back.
    loss: Option<f64>,
    /// Relay median minus direct median, seconds.
    overhead_median: Option<f64>,
    result: Option<RelayReport>,
}

#[derive(Debug, Serialize)]
struct Report {
    schema: &'static str,
    interrupted: bool,
    count: u32,
    rate: u32,
    size: usize,
    runs: Vec<TransportRun>,
}

pub(crate) fn run(args: Args) -> Result<Outcome> {
    let base = parse_uri(&args.uri)?;
    if args.count == 0 || args.rate == 0 {
        return Err(usage("--count and --rate must be at least 1"));
    }
    if args.size < HEADER || args.size > 1200 {
        return Err(usage(format!("--size must be {HEADER}..=1200 bytes")));
    }
    let length = Duration::from_secs_f64(f64::from(args.count) / f64::from(args.rate));
    if length > MAX_RUN {
        return Err(usage(format!(
            "--count/--rate would run {:.0} s per transport; keep it under {} s (permissions expire after 300 s)",
            length.as_secs_f64(),
            MAX_RUN.as_secs()
        )));
    }
    let credentials = args.auth.credentials()?;
    let Some(credentials) = credentials else {
        return Err(usage(
            "relay needs credentials: --user with a password or a REST secret",
        ));
    };
    let transports: Vec<Transport> = if args.transports.is_empty() {
        vec![base.transport]
    } else {
        let mut v = Vec::new();
        for t in &args.transports {
            let t = match t {
                TransportArg::Udp => Transport::Udp,
                TransportArg::Tcp => Transport::Tcp,
                TransportArg::Tls => Transport::Tls,
            };
            if !v.contains(&t) {
                v.push(t);
            }
        }
        v
    };
    let uris: Vec<TurnUri> = transports
        .iter()
        .map(|t| {
            let mut u = base.clone();
            u.transport = *t;
            u.secure = *t == Transport::Tls;
            if *t == Transport::Tls && !base.secure {
                u.port = args.tls_port.unwrap_or(TURNS_PORT);
            } else if *t != Transport::Tls && base.secure {
                u.port = probes::turn::uri::TURN_PORT;
            }
            u
        })
        .collect();
    let securities = uris
        .iter()
        .map(|u| args.auth.security(u))
        .collect::<Result<Vec<_>>>()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (handle, cancel) = Cancel::new();
        engine::driver::cancel_on_signals(handle);
        // The peer socket learns its address from the server's UDP port.
        let udp_uri = {
            let mut u = base.clone();
            if base.secure {
                u.port = probes::turn::uri::TURN_PORT;
            }
            u
        };
        let peer_probe = server_addr(&udp_uri).await.ok();
        let mut report = Report {
            schema: "stunmap.relay/1",
            interrupted: false,
            count: args.count,
            rate: args.rate,
            size: args.size,
            runs: Vec::new(),
        };
        for (uri, security) in uris.iter().zip(securities) {
            if cancel.is_cancelled() {
                report.interrupted = true;
                break;
            }
            let mut run = TransportRun {
                uri: uri.to_string(),
                transport: uri.transport,
                server: None,
                connect: None,
                tls: None,
                stream_error: None,
                relay_rtt: None,
                direct_rtt: None,
                loss: None,
                overhead_median: None,
                result: None,
            };
            let server = match server_addr(uri).await {
                Ok(s) => s,
                Err(e) => {
                    run.stream_error = Some(e.to_string());
                    report.runs.push(run);
                    continue;
                }
            };
            run.server = Some(server);
            let session = session_config(
                server,
                uri.transport,
                Some(credentials.clone()),
                Duration::from_millis(args.timeout),
            );
            let config = RelayConfig {
                session,
                peer_socket: if uri.transport.is_stream() { 0 } else { 1 },
                peer_probe: peer_probe.map(|p| SocketAddr::new(server.ip(), p.port())),
                count: args.count,
                interval: Duration::from_secs_f64(1.0 / f64::from(args.rate)),
                size: args.size,
                mode: match args.mode {
                    ModeArg::Channel => DataMode::Channel,
                    ModeArg::Indication => DataMode::Indication,
                },
                direct: args.direct,
                linger: Duration::from_millis(args.linger),
            };
            let probe = RelayProbe::new(config, crate::ids::source());
            if uri.transport.is_stream() {
                let r = run_stream(
                    probe,
                    server,
                    security,
                    StreamOptions::default(),
                    cancel.clone(),
                )
                .await;
                report.interrupted |= r.interrupted;
                run.connect = Some(r.connect);
                run.tls = r.tls;
                run.stream_error = r.error;
                run.result = r.output;
            } else {
                // The probe paces itself at --rate.
                let (out, r) = engine::run_one(probe, None, cancel.clone()).await?;
                report.interrupted |= r.interrupted;
                run.result = out;
            }
            if let Some(res) = &run.result {
                run.relay_rtt = summarize(&res.samples());
                run.direct_rtt = summarize(&res.direct);
                if res.sent > 0 {
                    run.loss = Some(
                        f64::from(res.sent - res.received.min(res.sent)) / f64::from(res.sent),
                    );
                }
                if let (Some(r), Some(d)) = (&run.relay_rtt, &run.direct_rtt) {
                    run.overhead_median = Some(r.median - d.median);
                }
            }
            report.runs.push(run);
        }
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print_human(&report);
        }
        Ok(outcome(&report))
    })
}

fn outcome(r: &Report) -> Outcome {
    if r.interrupted {
        return Outcome::Interrupted;
    }
    let leaked = r
        .runs
        .iter()
        .any(|t| t.result.as_ref().is_some_and(|x| !x.release.is_clean()));
    let good = r.runs.iter().filter(|t| t.relay_rtt.is_some()).count();
    if good == 0 {
        Outcome::Blocked
    } else if good < r.runs.len() || leaked {
        Outcome::Degraded
    } else {
        Outcome::Ok
    }
}

fn ms(v: f64) -> String {
    format!("{:.3}", v * 1e3)
}

fn print_human(r: &Report) {
    println!(
        "relay RTT, {} packets of {} bytes at {}/s per transport (ms)",
        r.count, r.size, r.rate
    );
    println!(
        "{:<5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>9} {:>9}",
        "", "min", "median", "p90", "p99", "max", "jitter", "loss", "direct", "overhead"
    );
    for t in &r.runs {
        let direct = t.direct_rtt.map_or("-".into(), |d| ms(d.median));
        let overhead = t.overhead_median.map_or("-".into(), ms);
        let loss = t.loss.map_or("-".into(), |l| format!("{:.1}%", l * 100.0));
        match &t.relay_rtt {
            Some(s) => println!(
                "{:<5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>9} {:>9}",
                t.transport.as_str(),
                ms(s.min),
                ms(s.median),
                ms(s.p90),
                ms(s.p99),
                ms(s.max),
                ms(s.jitter),
                loss,
                direct,
                overhead
            ),
            None => {
                let why = match (&t.result, &t.stream_error) {
                    (_, Some(e)) => e.clone(),
                    (Some(res), None) => match &res.status {
                        AllocateStatus::Rejected { code, reason } => {
                            format!("allocation rejected: {code} {reason}")
                        }
                        AllocateStatus::Allocated => "no packet came back".into(),
                        s => format!("{s:?}"),
                    },
                    (None, None) => "no answer".into(),
                };
                println!("{:<5} {why}", t.transport.as_str());
            }
        }
        if let Some(res) = &t.result {
            if res.corrupted > 0 || res.duplicates > 0 {
                println!(
                    "      {} corrupted, {} duplicated",
                    res.corrupted, res.duplicates
                );
            }
            if !matches!(
                res.release,
                Release::Released | Release::AlreadyGone | Release::NotNeeded
            ) {
                println!("      allocation NOT released: {:?}", res.release);
            }
        }
    }
    if r.interrupted {
        println!("interrupted: partial results");
    }
}
