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
use engine::stats::{RttSummary, summarize};
use engine::stream::Security;
use probes::Transport;
use probes::finding::Status;
use probes::turn::allocate::AllocateStatus;
use probes::turn::relay::{DataMode, HEADER, RelayConfig, RelayProbe, RelayReport};
use probes::turn::uri::{TURN_PORT, TURNS_PORT, TurnUri};
use serde::Serialize;

use super::turn::{AuthArgs, MAX_TIMEOUT_MS, connection_fields, mark, parse_uri, server_addr};
use crate::app::{Command, Ctx, OutputArgs, Report, ReportFiles, RunInfo};
use crate::exec::turn::{Connection, no_result, session_config};
use crate::exit::{Outcome, usage};
use crate::report::doc::{Bar, Block, Doc, Section, Tone, secs};
use crate::report::prom::{Writer, borrowed, flag, run_facts};
use crate::report::relay::{
    JITTER, MAX, MEDIAN, MIN, P90, P99, loss_family, loss_ratio, rtt_families,
};
use crate::report::words;

/// Longest run allowed: permissions last 300 s (RFC 8656 §9) and the loop does not refresh
/// them.
const MAX_RUN: Duration = Duration::from_secs(240);

/// Flags of `stunmap relay`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exit status: 0 every transport measured and released; 1 some transports measured, or an
allocation not confirmed released; 2 none measured; 64 bad flags; 130 interrupted.")]
pub(crate) struct Args {
    /// The server: turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT] (RFC 7065).
    #[arg(value_name = "URI")]
    uri: String,
    #[command(flatten)]
    auth: AuthArgs,
    /// Packets looped through the relay per transport (1 to 100000).
    #[arg(long, default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    count: u32,
    /// Packets per second (1 to 10000).
    #[arg(long, default_value_t = 50, value_name = "PPS",
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    rate: u32,
    /// Payload bytes per packet (16 to 1200).
    #[arg(long, default_value_t = 100, value_name = "BYTES",
          value_parser = clap::value_parser!(u16).range(HEADER as i64..=1200))]
    size: u16,
    /// Transports to compare, e.g. udp,tcp,tls (default: the URI's). TCP and UDP use the
    /// URI's host and port; TLS uses --tls-port.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    transports: Vec<TransportArg>,
    /// TLS port for --transports …,tls (default: the URI's port for turns:, else 5349).
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    tls_port: Option<u16>,
    /// Send through a channel (ChannelData) or with Send/Data indications.
    #[arg(long, value_enum, default_value_t = ModeArg::Channel)]
    mode: ModeArg,
    /// Binding requests for the direct RTT (same server, same transport; 0 to 100).
    #[arg(long, default_value_t = 5, value_name = "N",
          value_parser = clap::value_parser!(u8).range(0..=100))]
    direct: u8,
    /// Milliseconds to wait after the last packet before counting the missing ones lost
    /// (0 to 60000).
    #[arg(long, default_value_t = 1000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    linger: u64,
    /// Milliseconds a control request may take before it counts as lost (1 to 60000).
    #[arg(long, default_value_t = 3000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_MS))]
    timeout: u64,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    files: ReportFiles,
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

/// One transport of the plan.
#[derive(Debug)]
struct Leg {
    uri: TurnUri,
    security: Security,
}

/// A planned relay benchmark.
#[derive(Debug)]
struct Relay {
    /// The URI given (its UDP form is where the peer socket learns its address).
    base: TurnUri,
    legs: Vec<Leg>,
    credentials: probes::turn::auth::Credentials,
    count: u32,
    rate: u32,
    size: usize,
    mode: DataMode,
    direct: u8,
    linger: Duration,
    timeout: Duration,
}

/// The plan (pure: flags and files, no network).
fn plan(args: &Args) -> Result<Relay> {
    let base = parse_uri(&args.uri)?;
    let length = Duration::from_secs_f64(f64::from(args.count) / f64::from(args.rate));
    if length > MAX_RUN {
        return Err(usage(format!(
            "--count/--rate would run {:.0} s per transport; keep it under {} s (permissions expire after 300 s)",
            length.as_secs_f64(),
            MAX_RUN.as_secs()
        )));
    }
    let Some(credentials) = args.auth.credentials()? else {
        return Err(usage(
            "relay needs credentials: --user with a password or a REST secret",
        ));
    };
    let mut transports: Vec<Transport> = Vec::new();
    for t in &args.transports {
        let t = match t {
            TransportArg::Udp => Transport::Udp,
            TransportArg::Tcp => Transport::Tcp,
            TransportArg::Tls => Transport::Tls,
        };
        if !transports.contains(&t) {
            transports.push(t);
        }
    }
    if transports.is_empty() {
        transports.push(base.transport);
    }
    let legs = transports
        .into_iter()
        .map(|t| {
            let mut u = base.clone();
            u.transport = t;
            u.secure = t == Transport::Tls;
            if t == Transport::Tls && !base.secure {
                u.port = args.tls_port.unwrap_or(TURNS_PORT);
            } else if t != Transport::Tls && base.secure {
                u.port = TURN_PORT;
            }
            let security = args.auth.security(&u)?;
            Ok(Leg { uri: u, security })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Relay {
        base,
        legs,
        credentials,
        count: args.count,
        rate: args.rate,
        size: usize::from(args.size),
        mode: match args.mode {
            ModeArg::Channel => DataMode::Channel,
            ModeArg::Indication => DataMode::Indication,
        },
        direct: args.direct,
        linger: Duration::from_millis(args.linger),
        timeout: Duration::from_millis(args.timeout),
    })
}

pub(crate) fn run(args: Args) -> Result<Outcome> {
    let relay = plan(&args)?;
    crate::app::run(relay, &args.output, &args.files, "transports")
}

/// One transport's benchmark.
#[derive(Debug, Serialize)]
struct TransportRun {
    uri: String,
    transport: Transport,
    /// ok (measured, released), degraded (measured, release not confirmed; or nothing came
    /// back), blocked (no allocation), skipped (not probed: the run stopped first).
    status: Status,
    server: Option<SocketAddr>,
    #[serde(flatten)]
    connection: Connection,
    /// Why nothing was measured, when nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    not_measured: Option<String>,
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

impl TransportRun {
    fn new(uri: &TurnUri) -> Self {
        TransportRun {
            uri: uri.to_string(),
            transport: uri.transport,
            status: Status::Skipped,
            server: None,
            connection: Connection::default(),
            not_measured: None,
            relay_rtt: None,
            direct_rtt: None,
            loss: None,
            overhead_median: None,
            result: None,
        }
    }

    /// Fill in the statistics and the status from the result.
    fn conclude(&mut self) {
        if let Some(res) = &self.result {
            self.relay_rtt = summarize(&res.samples());
            self.direct_rtt = summarize(&res.direct);
            self.loss = loss_ratio(res.sent, res.received);
            if let (Some(r), Some(d)) = (&self.relay_rtt, &self.direct_rtt) {
                self.overhead_median = Some(r.median - d.median);
            }
        }
        let released = self.result.as_ref().is_none_or(|r| r.release.is_clean());
        self.status = match (&self.result, self.relay_rtt.is_some()) {
            (_, true) if released => Status::Ok,
            (_, true) => Status::Degraded,
            (Some(r), false) if r.status == AllocateStatus::Cancelled && released => {
                Status::Skipped
            }
            (Some(r), false) if r.status == AllocateStatus::Allocated => Status::Degraded,
            _ => Status::Blocked,
        };
        if self.relay_rtt.is_none() && self.not_measured.is_none() {
            self.not_measured = Some(match &self.result {
                Some(r) => match &r.status {
                    AllocateStatus::Allocated if r.sent == 0 => {
                        "allocated, but no packet was sent through the relay".into()
                    }
                    AllocateStatus::Allocated => "no packet came back through the relay".into(),
                    AllocateStatus::Cancelled => "stopped before the allocation".into(),
                    other => format!("allocation {other}"),
                },
                None => self
                    .connection
                    .stream_error
                    .clone()
                    .unwrap_or_else(|| "no result".into()),
            });
        }
    }
}

/// The report of `stunmap relay` (schema `stunmap.relay/1`).
#[derive(Debug, Serialize)]
pub(crate) struct RelayBench {
    count: u32,
    rate: u32,
    size: usize,
    mode: DataMode,
    runs: Vec<TransportRun>,
}

impl Command for Relay {
    type Report = RelayBench;

    async fn execute(self, ctx: Ctx) -> Result<RelayBench> {
        ctx.plan(self.legs.len() as u64);
        // The peer socket learns its address from the server's UDP port.
        let udp_uri = {
            let mut u = self.base.clone();
            if self.base.secure {
                u.port = TURN_PORT;
            }
            u
        };
        let peer_probe = server_addr(&udp_uri).await.ok();
        let mut runs = Vec::new();
        for leg in self.legs {
            let mut run = TransportRun::new(&leg.uri);
            if ctx.stopped() {
                run.not_measured = Some("not probed: the run stopped before this transport".into());
                runs.push(run);
                continue;
            }
            ctx.status(format!("{}", leg.uri.transport));
            let server = match server_addr(&leg.uri).await {
                Ok(s) => s,
                Err(e) => {
                    run.status = Status::Blocked;
                    run.not_measured = Some(e.to_string());
                    runs.push(run);
                    continue;
                }
            };
            run.server = Some(server);
            let transport = leg.uri.transport;
            let config = RelayConfig {
                session: session_config(
                    server,
                    transport,
                    Some(self.credentials.clone()),
                    self.timeout,
                ),
                peer_socket: if transport.is_stream() { 0 } else { 1 },
                peer_probe: peer_probe.map(|p| SocketAddr::new(server.ip(), p.port())),
                count: self.count,
                interval: Duration::from_secs_f64(1.0 / f64::from(self.rate)),
                size: self.size,
                mode: self.mode,
                direct: self.direct,
                linger: self.linger,
            };
            // The probe paces itself at --rate.
            let r = crate::exec::turn::run(
                RelayProbe::new(config, crate::ids::source()),
                server,
                transport,
                leg.security,
                ctx.cancel.clone(),
            )
            .await?;
            if r.output.is_none() {
                run.not_measured = Some(no_result(&r));
            }
            run.connection = r.connection;
            run.result = r.output;
            run.conclude();
            if ctx.wants_events() {
                ctx.event(&RunEvent {
                    event: "transport",
                    run: &run,
                });
            }
            ctx.advance(1);
            runs.push(run);
        }
        Ok(RelayBench {
            count: self.count,
            rate: self.rate,
            size: self.size,
            mode: self.mode,
            runs,
        })
    }
}

/// The NDJSON event of one finished transport.
#[derive(Serialize)]
struct RunEvent<'a> {
    event: &'static str,
    #[serde(flatten)]
    run: &'a TransportRun,
}

/// A difference of times, which may be negative (a relay path faster than the direct one).
fn signed_secs(v: f64) -> String {
    if v < 0.0 {
        format!("-{}", secs(-v))
    } else {
        secs(v)
    }
}

impl RelayBench {
    fn measured(&self) -> usize {
        self.runs.iter().filter(|r| r.relay_rtt.is_some()).count()
    }

    fn status(&self) -> Status {
        let measured = self.measured();
        let leaked = self
            .runs
            .iter()
            .any(|t| t.result.as_ref().is_some_and(|x| !x.release.is_clean()));
        if measured == 0 {
            Status::Blocked
        } else if measured < self.runs.len() || leaked {
            Status::Degraded
        } else {
            Status::Ok
        }
    }
}

impl Report for RelayBench {
    const SCHEMA: &'static str = "stunmap.relay/1";

    fn outcome(&self) -> Outcome {
        match self.status() {
            Status::Ok => Outcome::Ok,
            Status::Degraded | Status::Uncertain => Outcome::Degraded,
            Status::Blocked | Status::Skipped => Outcome::Blocked,
        }
    }

    fn document(&self, run: &RunInfo) -> Doc {
        let status = self.status();
        let n = self.runs.len();
        let headline = match status {
            Status::Ok => match self.runs.as_slice() {
                [one] => format!(
                    "Relay RTT over {}: median {}",
                    one.transport.name(),
                    one.relay_rtt.map_or_else(|| "-".into(), |s| secs(s.median))
                ),
                _ => format!("Relay RTT measured over all {n} transports"),
            },
            Status::Degraded => format!(
                "Relay RTT measured over {} of {n} transports{}",
                self.measured(),
                if self
                    .runs
                    .iter()
                    .any(|t| { t.result.as_ref().is_some_and(|x| !x.release.is_clean()) })
                {
                    "; an allocation was NOT confirmed released"
                } else {
                    ""
                }
            ),
            _ => "No relay RTT measured".into(),
        };
        let mut doc = Doc::new("stunmap relay", headline);
        doc.mark = Some(mark(status));
        doc.summary.push(format!(
            "{} packets of {} bytes at {}/s per transport ({}), {}, exit {}",
            self.count,
            self.size,
            self.rate,
            match self.mode {
                DataMode::Channel => "ChannelData",
                DataMode::Indication => "Send/Data indications",
            },
            secs(run.elapsed_seconds),
            run.exit_code.code()
        ));
        let fields = self
            .runs
            .iter()
            .map(|t| {
                let line = match &t.relay_rtt {
                    Some(s) => format!(
                        "min {} / median {} / p90 {} / p99 {} / max {}, jitter {}, loss {}; direct {}, overhead {}",
                        secs(s.min),
                        secs(s.median),
                        secs(s.p90),
                        secs(s.p99),
                        secs(s.max),
                        secs(s.jitter),
                        t.loss
                            .map_or_else(|| "-".into(), |l| format!("{:.1}%", l * 100.0)),
                        t.direct_rtt.map_or_else(|| "-".into(), |d| secs(d.median)),
                        t.overhead_median.map_or_else(|| "-".into(), signed_secs),
                    ),
                    None => format!(
                        "{}: {}",
                        mark(t.status).word,
                        t.not_measured.as_deref().unwrap_or("not measured")
                    ),
                };
                (t.transport.as_str().to_string(), line)
            })
            .collect();
        doc.push(Section::new("Relay RTT").block(Block::Fields(fields)));
        doc.push(
            Section::new("Medians").block(Block::Bars(
                self.runs
                    .iter()
                    .filter_map(|t| {
                        t.relay_rtt.map(|s| Bar {
                            label: format!("{} relay", t.transport),
                            seconds: s.median,
                            tone: Tone::of(t.status),
                        })
                    })
                    .chain(self.runs.iter().filter_map(|t| {
                        t.direct_rtt.map(|d| Bar {
                            label: format!("{} direct", t.transport),
                            seconds: d.median,
                            tone: Tone::Neutral,
                        })
                    }))
                    .collect(),
            )),
        );
        for t in &self.runs {
            let mut fields = vec![(
                "server".to_string(),
                t.server.map_or_else(|| "-".into(), |s| s.to_string()),
            )];
            fields.extend(connection_fields(&t.connection));
            if let Some(why) = &t.not_measured {
                fields.push(("not measured".into(), why.clone()));
            }
            if let Some(res) = &t.result {
                fields.push(("allocation".into(), res.status.to_string()));
                if let Some(s) = &res.software {
                    fields.push(("software".into(), s.clone()));
                }
                if let Some(a) = res.relayed {
                    fields.push(("relayed".into(), a.to_string()));
                }
                if let Some(p) = &res.permission {
                    fields.push(("permission".into(), words::turn_step(p)));
                }
                if let Some(c) = &res.channel_bind {
                    fields.push(("channel".into(), words::turn_step(c)));
                }
                fields.push((
                    "packets".into(),
                    format!(
                        "{} sent, {} back, {} corrupted, {} duplicated",
                        res.sent, res.received, res.corrupted, res.duplicates
                    ),
                ));
                fields.push(("release".into(), words::release(&res.release)));
            }
            doc.push(
                Section::new(t.uri.clone())
                    .marked(mark(t.status))
                    .block(Block::Fields(fields)),
            );
        }
        doc
    }

    fn metrics(&self, run: &RunInfo, w: &mut Writer) -> bool {
        run_facts(w, "relay", run);
        let labels: Vec<[(&str, String); 2]> = self
            .runs
            .iter()
            .map(|t| {
                [
                    ("transport", t.transport.as_str().to_string()),
                    (
                        "server",
                        t.server.map_or_else(|| t.uri.clone(), |s| s.to_string()),
                    ),
                ]
            })
            .collect();
        w.family(
            "stunmap_relay_measured",
            "gauge",
            "1 when relay RTT was measured over the transport, else 0.",
        );
        for (t, l) in self.runs.iter().zip(&labels) {
            w.sample(
                "stunmap_relay_measured",
                &borrowed(l),
                flag(t.relay_rtt.is_some()),
            );
        }
        let relays: Vec<_> = self
            .runs
            .iter()
            .zip(&labels)
            .map(|(t, l)| (t.relay_rtt.as_ref(), l.as_slice()))
            .collect();
        rtt_families(w, &[MIN, MEDIAN, P90, P99, MAX, JITTER], &relays);
        let losses: Vec<_> = self
            .runs
            .iter()
            .zip(&labels)
            .map(|(t, l)| (t.loss, l.as_slice()))
            .collect();
        loss_family(w, &losses);
        if self.runs.iter().any(|t| t.direct_rtt.is_some()) {
            w.family(
                "stunmap_relay_direct_rtt_median_seconds",
                "gauge",
                "Median RTT of Binding requests to the TURN server over the same transport.",
            );
            for (t, l) in self.runs.iter().zip(&labels) {
                if let Some(d) = t.direct_rtt {
                    w.sample(
                        "stunmap_relay_direct_rtt_median_seconds",
                        &borrowed(l),
                        d.median,
                    );
                }
            }
        }
        w.family(
            "stunmap_relay_released",
            "gauge",
            "1 when no allocation can be left on the server (released, or none was made).",
        );
        for (t, l) in self.runs.iter().zip(&labels) {
            w.sample(
                "stunmap_relay_released",
                &borrowed(l),
                flag(t.result.as_ref().is_none_or(|r| r.release.is_clean())),
            );
        }
        true
    }
}
