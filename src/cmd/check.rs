//! `stunmap check`: the whole probe on a profile (NetBird Cloud by default) — DNS, control
//! plane and relay, every STUN/TURN UDP port, the TCP sample, NAT behaviour and relay RTT —
//! with the verdict first and reports for people (terminal, HTML) and machines (JSON, NDJSON,
//! Prometheus).

use std::io::{IsTerminal, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use engine::Cancel;
use probes::PortRange;
use probes::control::ResolveOverride;
use probes::control::http::ProxyUrl;
use probes::profile::{Host, Profile, Service, ServiceKind};
use rand::RngCore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use crate::check::model::{CheckReport, Event};
use crate::check::run::{CheckConfig, Sink};
use crate::exit::{Outcome, usage};
use crate::target::TargetSpec;

const AFTER_HELP: &str = "\
Without --profile, --endpoints or ad-hoc targets, the embedded NetBird Cloud profile is
checked (docs/profiles.md). TURN credentials come from the environment
(STUNMAP_TURN_PASSWORD with --user, or STUNMAP_TURN_SECRET) or from --password-file /
--secret-file, never from a flag value; without them TURN is reported as present (401) only
and relay RTT is skipped.

Exit status: 0 a direct P2P path is healthy, 1 degraded (relay only, or some ports blocked),
2 blocked, 64 bad usage, 70 internal error, 130 interrupted.";

/// Flags of `stunmap check`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub(crate) struct Args {
    #[command(flatten)]
    pub(crate) source: SourceArgs,
    #[command(flatten)]
    pub(crate) tuning: TuningArgs,
    #[command(flatten)]
    pub(crate) auth: super::turn::AuthArgs,
    #[command(flatten)]
    pub(crate) output: OutputArgs,
}

/// Where the profile comes from.
#[derive(Debug, Default, clap::Args)]
pub(crate) struct SourceArgs {
    /// A profile in TOML (docs/profiles.md; template: examples/self-hosted.toml).
    #[arg(long, value_name = "FILE", conflicts_with = "endpoints")]
    pub(crate) profile: Option<PathBuf>,
    /// NetBird's published endpoint list (JSON), on the NetBird Cloud profile's ports.
    #[arg(long, value_name = "FILE")]
    pub(crate) endpoints: Option<PathBuf>,
    /// Ad hoc: a management service, HOST[:PORT] (443); repeatable. Ad-hoc targets replace the
    /// profile.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub(crate) management: Vec<String>,
    /// Ad hoc: a signal service, HOST[:PORT] (443); repeatable.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub(crate) signal: Vec<String>,
    /// Ad hoc: a STUN server, HOST[:PORT[-PORT]] (3478); repeatable.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub(crate) stun: Vec<String>,
    /// Ad hoc: a TURN server, HOST[:PORT] (3478, UDP and TCP); repeatable.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub(crate) turn: Vec<String>,
    /// A relay name to check (the one `netbird status -d` shows); added to the profile's relay
    /// service, or ad hoc.
    #[arg(long, value_name = "NAME")]
    pub(crate) relay: Vec<String>,
    /// Use ADDR for NAME instead of DNS (curl's convention: NAME:ADDR or NAME:PORT:ADDR).
    #[arg(long, value_name = "NAME:[PORT:]ADDR")]
    pub(crate) resolve: Vec<String>,
}

/// Timing and scope.
#[derive(Debug, clap::Args)]
pub(crate) struct TuningArgs {
    /// Timeout of each step (DNS, connect, TLS, a STUN/TURN transaction), milliseconds.
    #[arg(long, default_value_t = 3000, value_name = "MS")]
    pub(crate) timeout: u64,
    /// Stop the whole check after this many seconds and report what was measured.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub(crate) deadline: u64,
    /// Ports drawn from each TCP range (TURN 443-65535).
    #[arg(long, default_value_t = probes::sweep::DEFAULT_SAMPLE)]
    pub(crate) sample: usize,
    /// Seed of the TCP sample (printed in the report).
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// SYNs per second of the TCP sample.
    #[arg(long, default_value_t = engine::Rate::POLITE.pps, value_name = "PPS")]
    pub(crate) rate: u32,
    /// NAT tests' initial retransmission timeout, milliseconds.
    #[arg(long, default_value_t = 200, value_name = "MS")]
    pub(crate) rto: u64,
    /// Skip the hairpinning test.
    #[arg(long)]
    pub(crate) no_hairpin: bool,
    /// Packets looped through the relay for the RTT (with credentials).
    #[arg(long, default_value_t = 20)]
    pub(crate) relay_count: u32,
    /// Resolver to ask, ADDR[:PORT] (default: /etc/resolv.conf); repeatable.
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub(crate) dns_server: Vec<String>,
    /// Also trust these root certificates (PEM) for the control plane and relay.
    #[arg(long, value_name = "FILE")]
    pub(crate) ca: Vec<PathBuf>,
    /// HTTP proxy for the control-plane checks (default $HTTPS_PROXY).
    #[arg(long, value_name = "URL")]
    pub(crate) proxy: Option<String>,
    /// Ignore $HTTPS_PROXY and $NO_PROXY.
    #[arg(long)]
    pub(crate) no_proxy: bool,
}

impl Default for TuningArgs {
    fn default() -> Self {
        TuningArgs {
            timeout: 3000,
            deadline: 60,
            sample: probes::sweep::DEFAULT_SAMPLE,
            seed: None,
            rate: engine::Rate::POLITE.pps,
            rto: 200,
            no_hairpin: false,
            relay_count: 20,
            dns_server: Vec::new(),
            ca: Vec::new(),
            proxy: None,
            no_proxy: false,
        }
    }
}

/// Reports.
#[derive(Debug, clap::Args)]
pub(crate) struct OutputArgs {
    /// JSON report on stdout (schema stunmap.check/1, docs/schema/check-v1.json).
    #[arg(long, conflicts_with = "ndjson")]
    pub(crate) json: bool,
    /// One JSON event per line as results arrive, the whole report last.
    #[arg(long)]
    pub(crate) ndjson: bool,
    /// Also write Prometheus text exposition to FILE (node_exporter textfile collector).
    #[arg(long, value_name = "FILE")]
    pub(crate) prom: Option<PathBuf>,
    /// Also write a self-contained HTML report to FILE.
    #[arg(long, value_name = "FILE")]
    pub(crate) html: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    pub(crate) quiet: bool,
}

fn parse_dns_server(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddr>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .or_else(|| std::env::var(name.to_ascii_lowercase()).ok())
        .filter(|v| !v.trim().is_empty())
}

fn host(s: &str, what: &str) -> Result<Host> {
    Host::parse(s).map_err(|e| usage(format!("--{what}: {e}")))
}

fn adhoc_service(kind: ServiceKind, name: &str, spec: &str, default_port: u16) -> Result<Service> {
    let t = TargetSpec::parse(spec, default_port)?;
    let range = PortRange {
        start: t.ports.0,
        end: t.ports.1,
    };
    let mut s = Service {
        name: name.to_string(),
        kind,
        hosts: vec![host(&t.host, kind.as_str())?],
        udp: Vec::new(),
        tcp: Vec::new(),
        tls: Vec::new(),
        ipv4: Vec::new(),
        ipv6: Vec::new(),
    };
    match kind {
        ServiceKind::Stun => s.udp.push(range),
        ServiceKind::Turn => {
            s.udp.push(range);
            s.tcp.push(range);
        }
        _ => {
            if !range.is_single() {
                return Err(usage(format!("--{kind}: one port, not a range")));
            }
            s.tcp.push(range)
        }
    }
    Ok(s)
}

/// The profile the flags describe, and where it came from.
pub(crate) fn load_profile(src: &SourceArgs) -> Result<(Profile, String, Vec<String>)> {
    let adhoc = !src.management.is_empty()
        || !src.signal.is_empty()
        || !src.stun.is_empty()
        || !src.turn.is_empty();
    let mut notes = Vec::new();
    if adhoc {
        if src.profile.is_some() || src.endpoints.is_some() {
            return Err(usage(
                "ad-hoc targets (--management/--signal/--stun/--turn) replace the profile: drop --profile/--endpoints",
            ));
        }
        let mut services = Vec::new();
        for (kind, list, title, port) in [
            (ServiceKind::Management, &src.management, "Management", 443),
            (ServiceKind::Signal, &src.signal, "Signal", 443),
            (ServiceKind::Stun, &src.stun, "P2P (STUN)", 3478),
            (ServiceKind::Turn, &src.turn, "Relay (TURN)", 3478),
        ] {
            for (i, spec) in list.iter().enumerate() {
                let name = if list.len() > 1 {
                    format!("{title} {}", i + 1)
                } else {
                    title.to_string()
                };
                services.push(adhoc_service(kind, &name, spec, port)?);
            }
        }
        if !src.relay.is_empty() {
            let first = src.relay.first().map(String::as_str).unwrap_or_default();
            let mut s = adhoc_service(ServiceKind::Relay, "Relay", first, 443)?;
            s.hosts = src
                .relay
                .iter()
                .map(|r| host(r, "relay"))
                .collect::<Result<_>>()?;
            services.push(s);
        }
        let p = Profile {
            name: "command-line".into(),
            description: None,
            services,
        };
        p.validate().map_err(|e| usage(e.to_string()))?;
        return Ok((p, "command line".into(), notes));
    }
    let seed = probes::profile::netbird_cloud().context("the embedded profile")?;
    if let Some(path) = &src.profile {
        let text = std::fs::read_to_string(path)
            .map_err(|e| usage(format!("--profile {}: {e}", path.display())))?;
        let p = Profile::from_toml(&text)
            .map_err(|e| usage(format!("--profile {}: {e}", path.display())))?;
        return Ok((p, path.display().to_string(), notes));
    }
    if let Some(path) = &src.endpoints {
        let text = std::fs::read_to_string(path)
            .map_err(|e| usage(format!("--endpoints {}: {e}", path.display())))?;
        let (p, n) = probes::profile::netbird::import(&text, &seed)
            .map_err(|e| usage(format!("--endpoints {}: {e}", path.display())))?;
        notes.extend(n);
        return Ok((p, path.display().to_string(), notes));
    }
    Ok((seed, "embedded".into(), notes))
}

/// Build the check's configuration from flags.
pub(crate) fn build_config(
    src: &SourceArgs,
    tuning: &TuningArgs,
    auth: &super::turn::AuthArgs,
) -> Result<(CheckConfig, Vec<String>)> {
    let (profile, source, notes) = load_profile(src)?;
    let adhoc_relays = !src.management.is_empty()
        || !src.signal.is_empty()
        || !src.stun.is_empty()
        || !src.turn.is_empty();
    let overrides = src
        .resolve
        .iter()
        .map(|r| ResolveOverride::parse(r).map_err(|e| usage(format!("--resolve: {e}"))))
        .collect::<Result<Vec<_>>>()?;
    if tuning.timeout == 0 || tuning.deadline == 0 || tuning.rto == 0 || tuning.rate == 0 {
        return Err(usage(
            "--timeout, --deadline, --rto and --rate must be at least 1",
        ));
    }
    let nameservers = if tuning.dns_server.is_empty() {
        engine::control::system_nameservers()
    } else {
        tuning
            .dns_server
            .iter()
            .map(|s| {
                parse_dns_server(s)
                    .ok_or_else(|| usage(format!("--dns-server: not ADDR[:PORT]: {s:?}")))
            })
            .collect::<Result<_>>()?
    };
    let mut extra_roots: Vec<CertificateDer<'static>> = Vec::new();
    for path in &tuning.ca {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| usage(format!("--ca {}: {e}", path.display())))?;
        extra_roots.extend(certs);
    }
    let proxy_text = match (&tuning.proxy, tuning.no_proxy) {
        (Some(p), _) => Some(p.clone()),
        (None, false) => env("HTTPS_PROXY"),
        (None, true) => None,
    };
    let proxy = proxy_text
        .map(|p| ProxyUrl::parse(&p).map_err(|e| usage(format!("proxy: {e}"))))
        .transpose()?;
    let relays = if adhoc_relays {
        Vec::new()
    } else {
        for r in &src.relay {
            host(r, "relay")?;
        }
        src.relay.clone()
    };
    Ok((
        CheckConfig {
            profile,
            source,
            overrides,
            nameservers,
            credentials: auth.credentials()?,
            turn_ca: auth.ca_file.clone(),
            extra_roots,
            proxy,
            no_proxy: if tuning.proxy.is_some() || tuning.no_proxy {
                None
            } else {
                env("NO_PROXY")
            },
            timeout: Duration::from_millis(tuning.timeout),
            sample: tuning.sample,
            seed: tuning.seed.unwrap_or_else(|| rand::rng().next_u64()),
            rate: tuning.rate,
            deadline: Duration::from_secs(tuning.deadline),
            relays,
            rto: Duration::from_millis(tuning.rto),
            hairpin: !tuning.no_hairpin,
            relay_count: tuning.relay_count,
        },
        notes,
    ))
}

pub(crate) fn run(args: Args) -> Result<Outcome> {
    let (cfg, notes) = build_config(&args.source, &args.tuning, &args.auth)?;
    run_and_report(cfg, notes, &args.output)
}

/// Run a check and write every report asked for; the exit status follows the verdict.
pub(crate) fn run_and_report(
    cfg: CheckConfig,
    notes: Vec<String>,
    output: &OutputArgs,
) -> Result<Outcome> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let show_bar =
        !output.quiet && !output.json && !output.ndjson && std::io::stderr().is_terminal();
    let bar = show_bar.then(|| {
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} checks {msg}",
        ) {
            bar.set_style(style);
        }
        bar
    });
    let ndjson = output.ndjson;
    let out_lock = Arc::new(Mutex::new(()));
    let sink: Sink = {
        let bar = bar.clone();
        let out_lock = out_lock.clone();
        Arc::new(move |ev: &Event| {
            if let Some(b) = &bar {
                match ev {
                    Event::Start { planned, .. } => b.set_length(*planned as u64),
                    Event::Check { .. } | Event::TcpPort { .. } => b.inc(1),
                    Event::Phase { phase, .. } => b.set_message(format!("({phase} done)")),
                }
            }
            if ndjson {
                if let Ok(line) = serde_json::to_string(ev) {
                    let _guard = out_lock.lock();
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                }
            }
        })
    };
    let mut report: CheckReport = rt.block_on(async move {
        let (handle, cancel) = Cancel::new();
        engine::driver::cancel_on_signals(handle);
        crate::check::run::run(cfg, cancel, sink).await
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let mut all_notes = notes;
    all_notes.append(&mut report.notes);
    report.notes = all_notes;
    if let Some(path) = &output.prom {
        crate::report::write_atomically(path, &crate::report::prom::render(&report))
            .with_context(|| format!("--prom {}", path.display()))?;
    }
    if let Some(path) = &output.html {
        crate::report::write_atomically(path, &crate::report::html::render(&report))
            .with_context(|| format!("--html {}", path.display()))?;
    }
    if output.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if ndjson {
        let line = serde_json::to_string(&crate::report::ReportEvent {
            event: "report",
            report: &report,
        })?;
        let _guard = out_lock.lock();
        println!("{line}");
    } else {
        print!("{}", crate::report::human::render(&report));
    }
    Ok(outcome(&report))
}

/// The exit status of a report.
pub(crate) fn outcome(r: &CheckReport) -> Outcome {
    match r.verdict.exit_code {
        0 => Outcome::Ok,
        1 => Outcome::Degraded,
        130 => Outcome::Interrupted,
        _ => Outcome::Blocked,
    }
}
