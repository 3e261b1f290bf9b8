//! `stunmap control`: can NetBird's control plane (management, signal) and relay be used from
//! here — DNS, TCP, TLS (and who intercepts it), ALPN, gRPC, WebSocket, QUIC, HTTP proxies.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use engine::control::{ControlConfig, ControlReport};
use probes::control::relay::RelayTransport;
use probes::control::{EndpointReport, EndpointSpec, Problem, ResolveOverride, Role, Timeouts};
use probes::finding::{Severity, Status};
use serde::Serialize;

use super::common;
use crate::app::{Command, Ctx, Flavor, OutputArgs, Report, ReportFiles, RunInfo};
use crate::exit::{Outcome, usage};
use crate::report::doc::{Block, Cell, Doc, FixItem, Mark, Section, columns, duration};
use crate::report::words;

const AFTER_HELP: &str = "\
Without --management/--signal/--relay, NetBird Cloud's api.netbird.io:443 and
signal.netbird.io:443 are checked. Relay names are handed out by the management service
(`netbird status -d` shows the one in use): pass it with --relay.

Exit status: 0 everything works, 1 degraded (TLS inspection, HTTP/2 stripped but the WebSocket
fallback works, one relay transport down, DNS answers differing from the published list),
2 blocked (an endpoint cannot be used), 64 bad flags. See docs/control.md.";

/// Flags of `stunmap control`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub(crate) struct Args {
    /// Management service (gRPC over TLS), HOST[:PORT]; repeatable.
    #[arg(long, value_name = "HOST[:PORT]")]
    management: Vec<String>,
    /// Signal service (gRPC over TLS), HOST[:PORT]; repeatable.
    #[arg(long, value_name = "HOST[:PORT]")]
    signal: Vec<String>,
    /// Relay (WebSocket over TLS on TCP, QUIC on UDP), HOST[:PORT]; repeatable.
    #[arg(long, value_name = "HOST[:PORT]")]
    relay: Vec<String>,
    /// Use ADDR for NAME instead of DNS (curl's convention: NAME:PORT:ADDR or NAME:ADDR).
    #[arg(long, value_name = "NAME:[PORT:]ADDR")]
    resolve: Vec<String>,
    /// Also trust the root certificates in this PEM file (a self-hosted server's private CA).
    #[arg(long, value_name = "FILE")]
    ca: Vec<PathBuf>,
    /// HTTP proxy for the TCP checks (CONNECT); default: $HTTPS_PROXY, honouring $NO_PROXY.
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,
    /// Ignore $HTTPS_PROXY and $NO_PROXY (an explicit --proxy is still used).
    #[arg(long)]
    no_proxy: bool,
    /// Resolver to ask, ADDR[:PORT] (default: the nameservers of /etc/resolv.conf); repeatable.
    #[arg(long, value_name = "ADDR[:PORT]")]
    dns_server: Vec<String>,
    /// Addresses NAME is published with, to spot rewritten DNS answers (NAME=ADDR,ADDR…).
    #[arg(long, value_name = "NAME=ADDR,…")]
    published: Vec<String>,
    /// Timeout of each step (DNS, connect, TLS, HTTP, QUIC) in milliseconds.
    #[arg(long, value_name = "MS")]
    timeout: Option<u64>,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    files: ReportFiles,
}

/// The longest step timeout accepted.
const MAX_TIMEOUT_MS: u64 = 300_000;

/// The report of `stunmap control` (schema `stunmap.control/1`).
#[derive(Debug, Serialize)]
pub(crate) struct ControlOutput {
    #[serde(flatten)]
    report: ControlReport,
    /// What was not measured, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
}

fn parse_published(s: &str) -> Option<(String, Vec<IpAddr>)> {
    let (name, list) = s.split_once('=')?;
    let addrs = list
        .split(',')
        .map(|a| a.trim().parse().ok())
        .collect::<Option<Vec<IpAddr>>>()?;
    (!name.is_empty() && !addrs.is_empty()).then(|| (name.to_string(), addrs))
}

fn build_config(args: &Args) -> anyhow::Result<ControlConfig> {
    let mut endpoints = Vec::new();
    for (role, list) in [
        (Role::Management, &args.management),
        (Role::Signal, &args.signal),
        (Role::Relay, &args.relay),
    ] {
        for e in list {
            endpoints
                .push(EndpointSpec::parse(role, e).map_err(|e| usage(format!("--{role}: {e}")))?);
        }
    }
    if endpoints.is_empty() {
        endpoints = vec![
            EndpointSpec {
                role: Role::Management,
                name: "api.netbird.io".into(),
                port: 443,
            },
            EndpointSpec {
                role: Role::Signal,
                name: "signal.netbird.io".into(),
                port: 443,
            },
        ];
    }
    let overrides = args
        .resolve
        .iter()
        .map(|r| ResolveOverride::parse(r).map_err(|e| usage(format!("--resolve: {e}"))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let nameservers = common::nameservers(&args.dns_server)?;
    let published = args
        .published
        .iter()
        .map(|s| {
            parse_published(s).ok_or_else(|| {
                usage(format!(
                    "--published: not NAME=ADDR[,ADDR…]: {}",
                    crate::report::doc::quoted(s)
                ))
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let extra_roots = common::load_roots(&args.ca)?;
    let (proxy, no_proxy) = common::proxy(args.proxy.as_deref(), args.no_proxy)?;
    let timeouts = match args.timeout {
        Some(ms) if !(1..=MAX_TIMEOUT_MS).contains(&ms) => {
            return Err(usage(format!("--timeout must be 1 to {MAX_TIMEOUT_MS} ms")));
        }
        Some(ms) => Timeouts::uniform(Duration::from_millis(ms)),
        None => Timeouts::default(),
    };
    Ok(ControlConfig {
        endpoints,
        overrides,
        nameservers,
        published,
        extra_roots,
        proxy,
        no_proxy,
        timeouts,
    })
}

/// A planned control-plane check.
struct Control(ControlConfig);

impl Command for Control {
    type Report = ControlOutput;
    const FLAVOR: Flavor = Flavor::MultiThread;

    async fn execute(self, ctx: Ctx) -> anyhow::Result<ControlOutput> {
        let proxy = self.0.proxy.as_ref().map(ToString::to_string);
        tokio::select! {
            r = engine::control::run(self.0) => Ok(ControlOutput {
                report: r.context("control checks")?,
                notes: Vec::new(),
            }),
            _ = ctx.cancel.cancelled() => Ok(ControlOutput {
                report: ControlReport {
                    endpoints: Vec::new(),
                    proxy,
                    status: Status::Blocked,
                },
                notes: vec!["stopped before the control checks finished: nothing to report".into()],
            }),
        }
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    let config = build_config(&args)?;
    crate::app::run(Control(config), &args.output, &args.files, "endpoints")
}

fn endpoint_section(e: &EndpointReport) -> Section {
    let mut rows: Vec<Vec<Cell>> = vec![vec![
        "dns".into(),
        format!(
            "{}; A {}; AAAA {}",
            words::dns_verdict(&e.dns),
            words::lookup(&e.ipv4),
            words::lookup(&e.ipv6)
        )
        .into(),
    ]];
    for p in &e.paths {
        let at = match (&p.proxy, p.address) {
            (Some(proxy), _) => format!("via {proxy}"),
            (None, Some(a)) => a.to_string(),
            (None, None) => "?".into(),
        };
        rows.push(vec![at.into(), words::path(e.role, p).into()]);
    }
    for q in &e.quic {
        rows.push(vec![
            format!("udp {}", q.address).into(),
            words::quic(&q.outcome).into(),
        ]);
    }
    if let Some(race) = &e.race {
        let winner = match race.winner {
            Some(RelayTransport::Quic) => "QUIC",
            Some(RelayTransport::WebSocket) => "WebSocket",
            None => "none (no transport connects)",
        };
        let t = |d: Option<Duration>| d.map(duration).unwrap_or_else(|| "-".into());
        rows.push(vec![
            "relay race".into(),
            format!(
                "a client would use {winner} (WebSocket {}, QUIC {})",
                t(race.websocket),
                t(race.quic)
            )
            .into(),
        ]);
    }
    Section::new(format!("{} {}:{}", e.role, e.name, e.port))
        .marked(Mark::of(e.status))
        .block(Block::Table {
            header: columns(["path", "result"]),
            rows,
        })
}

impl Report for ControlOutput {
    const SCHEMA: &'static str = "stunmap.control/1";

    fn outcome(&self) -> Outcome {
        match self.report.status {
            Status::Ok | Status::Skipped => Outcome::Ok,
            Status::Degraded | Status::Uncertain => Outcome::Degraded,
            Status::Blocked => Outcome::Blocked,
        }
    }

    fn document(&self, _run: &RunInfo) -> Doc {
        let r = &self.report;
        let names: Vec<String> = r
            .endpoints
            .iter()
            .map(|e| format!("{} {}:{}", e.role, e.name, e.port))
            .collect();
        let headline = match r.status {
            Status::Ok | Status::Skipped => "Control plane reachable".to_string(),
            Status::Degraded | Status::Uncertain => {
                "Control plane reachable, with problems".to_string()
            }
            Status::Blocked => "Control plane blocked".to_string(),
        };
        let mut doc = Doc::new("stunmap control", headline);
        doc.mark = Some(Mark::of(r.status));
        if !names.is_empty() {
            doc.summary.push(names.join(", "));
        }
        if let Some(p) = &r.proxy {
            doc.summary
                .push(format!("proxy {p} (CONNECT, TCP checks only)"));
        }
        for e in &r.endpoints {
            doc.push(endpoint_section(e));
        }
        let problems: Vec<&Problem> = r.endpoints.iter().flat_map(|e| &e.problems).collect();
        doc.push(
            Section::new("Problems").block(Block::Fixes(
                problems
                    .iter()
                    .map(|p| {
                        // The control plane's words for the connectivity severities.
                        let sev = match p.severity {
                            Severity::Info | Severity::Low => "info",
                            Severity::Medium => "degraded",
                            Severity::High | Severity::Critical => "blocked",
                        };
                        FixItem::problem(format!("[{sev}] {}", p.summary), p.fix.as_ref())
                    })
                    .collect(),
            )),
        );
        doc.push(Section::new("Notes").block(Block::List(self.notes.clone())));
        doc
    }
}
