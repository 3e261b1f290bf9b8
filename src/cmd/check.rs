//! `stunmap check`: the whole probe on a profile (NetBird Cloud by default) — DNS, control
//! plane and relay, every STUN/TURN UDP port, the TCP sample, NAT behaviour and relay RTT —
//! with the verdict first and reports for people (terminal, HTML) and machines (JSON, NDJSON,
//! Prometheus).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use probes::PortRange;
use probes::control::ResolveOverride;
use probes::profile::{Host, Profile, Service, ServiceKind};
use rand::RngCore;

use crate::app::{OutputArgs, ReportFiles};
use crate::check::Check;
use crate::check::model::NetbirdSource;
use crate::check::plan::{CheckConfig, NetbirdInput, PathOptions, PortalUrl};
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
    pub(crate) bind: super::common::BindArgs,
    #[command(flatten)]
    pub(crate) path: PathArgs,
    #[command(flatten)]
    pub(crate) output: OutputArgs,
    #[command(flatten)]
    pub(crate) files: ReportFiles,
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
    /// Check what the local NetBird client was given, from `netbird status --json` saved in
    /// FILE (or `-` for standard input): its management, signal, STUN/TURN and relay URIs and
    /// its peers. Without this flag the live `netbird status --json` is read when the `netbird`
    /// CLI is on the PATH.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["profile", "endpoints"])]
    pub(crate) netbird_status: Option<PathBuf>,
    /// Do not read the local NetBird client's status.
    #[arg(long, conflicts_with = "netbird_status")]
    pub(crate) no_netbird: bool,
}

/// Timing and scope.
#[derive(Debug, clap::Args)]
pub(crate) struct TuningArgs {
    /// Timeout of each step (DNS, connect, TLS, a STUN/TURN transaction), 1 to 120000
    /// milliseconds.
    #[arg(long, default_value_t = 3000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=120_000))]
    pub(crate) timeout: u64,
    /// Stop the whole check after this many seconds (1 to 3600) and report what was measured.
    #[arg(long, default_value_t = 60, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) deadline: u64,
    /// Ports drawn from each TCP range (TURN 443-65535), 1 to 65535.
    #[arg(long, default_value_t = probes::sweep::DEFAULT_SAMPLE,
          value_parser = sample_size)]
    pub(crate) sample: usize,
    /// Seed of the TCP sample (printed in the report).
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// SYNs per second of the TCP sample, 1 to 1000000.
    #[arg(long, default_value_t = engine::Rate::POLITE.pps, value_name = "PPS",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(crate) rate: u32,
    /// NAT tests' initial retransmission timeout, 1 to 10000 milliseconds.
    #[arg(long, default_value_t = 200, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub(crate) rto: u64,
    /// Also test hairpinning (RFC 5780 §4.5). Off by default: the test sends a packet from
    /// the NAT's public address to itself, which some firewalls (Palo Alto's among them) take
    /// for a LAND attack and answer by dropping the host's live NAT sessions.
    #[arg(long)]
    pub(crate) hairpin: bool,
    /// Packets looped through the relay for the RTT (with credentials), 1 to 10000.
    #[arg(long, default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
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
            hairpin: false,
            relay_count: 20,
            dns_server: Vec::new(),
            ca: Vec::new(),
            proxy: None,
            no_proxy: false,
        }
    }
}

/// The path checks (docs/paths.md).
#[derive(Debug, Default, clap::Args)]
pub(crate) struct PathArgs {
    /// Follow the routing table even when it sends the probes into a VPN tunnel (by default
    /// they leave by the physical interface, which needs root or CAP_NET_RAW).
    #[arg(long)]
    pub(crate) via_tunnel: bool,
    /// Stay silent toward the gateway: no NAT-PMP, PCP or UPnP IGD discovery and no test
    /// mapping.
    #[arg(long)]
    pub(crate) no_portmap: bool,
    /// Lifetime of the test port mapping, 5 to 600 seconds (it is deleted at once anyway).
    #[arg(long, default_value_t = 30, value_name = "SECS",
          value_parser = clap::value_parser!(u32).range(5..=600))]
    pub(crate) mapping_lifetime: u32,
    /// Skip the path MTU search, the TCP MSS and the WireGuard-sized datagrams through the relay.
    #[arg(long)]
    pub(crate) no_pmtu: bool,
    /// Skip the captive-portal request.
    #[arg(long)]
    pub(crate) no_portal: bool,
    /// Request this http:// URL for the captive-portal check instead of the management host's
    /// port 80.
    #[arg(long, value_name = "URL", conflicts_with = "no_portal")]
    pub(crate) portal_url: Option<String>,
}

impl PathArgs {
    /// The path options, the binding checked against the host (a one-line usage error).
    pub(crate) fn options(&self, bind: &super::common::BindArgs) -> Result<PathOptions> {
        let portal_url = self
            .portal_url
            .as_deref()
            .map(|u| PortalUrl::parse(u).map_err(|e| usage(format!("--portal-url {e}"))))
            .transpose()?;
        Ok(PathOptions {
            bind: bind.checked()?,
            avoid_tunnel: !self.via_tunnel,
            portmap: !self.no_portmap,
            mapping_lifetime: self.mapping_lifetime,
            pmtu: !self.no_pmtu,
            portal: !self.no_portal,
            portal_url,
        })
    }
}

/// `--sample`: 1 to 65535 ports.
fn sample_size(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n),
        _ => Err(format!(
            "{} is not a number of ports from 1 to 65535",
            crate::report::doc::quoted(s)
        )),
    }
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

/// A profile, where it came from, notes, and the NetBird status it was built from.
type Loaded = (Profile, String, Vec<String>, Option<NetbirdInput>);

/// The profile the flags describe, and where it came from.
pub(crate) fn load_profile(src: &SourceArgs) -> Result<Loaded> {
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
        return Ok((p, "command line".into(), notes, None));
    }
    let seed = probes::profile::netbird_cloud().context("the embedded profile")?;
    if let Some(path) = &src.profile {
        let text = super::common::read_text("--profile", path, super::common::MAX_FILE)?;
        let p = Profile::from_toml(&text)
            .map_err(|e| usage(format!("--profile {}: {e}", path.display())))?;
        return Ok((p, path.display().to_string(), notes, None));
    }
    if let Some(path) = &src.endpoints {
        let text = super::common::read_text("--endpoints", path, super::common::MAX_FILE)?;
        let (p, n) = probes::profile::netbird::import(&text, &seed)
            .map_err(|e| usage(format!("--endpoints {}: {e}", path.display())))?;
        notes.extend(n);
        return Ok((p, path.display().to_string(), notes, None));
    }
    let status = match &src.netbird_status {
        Some(path) => Some(netbird_file(path)?),
        None if src.no_netbird => None,
        None => match crate::netbird_live::read_live_status() {
            crate::netbird_live::Live::Read {
                binary,
                status,
                notes: n,
            } => Some(NetbirdInput {
                status: *status,
                source: NetbirdSource::Live {
                    binary: binary.display().to_string(),
                },
                notes: n,
            }),
            crate::netbird_live::Live::NotInstalled => None,
            crate::netbird_live::Live::Failed(why) => {
                notes.push(format!(
                    "the local NetBird client's status could not be read ({why}); the embedded profile is checked"
                ));
                None
            }
        },
    };
    let Some(input) = status else {
        return Ok((seed, "embedded".into(), notes, None));
    };
    let nb = probes::netbird::status::to_profile(&input.status, &seed)
        .map_err(|e| usage(format!("NetBird status: {e}")))?;
    notes.extend(nb.notes.iter().cloned());
    let source = input.source.to_string();
    Ok((nb.profile, source, notes, Some(input)))
}

/// A saved `netbird status --json` (or `-` for standard input), capped in size.
fn netbird_file(path: &std::path::Path) -> Result<NetbirdInput> {
    let cap = probes::netbird::status::MAX_STATUS_BYTES as u64;
    let (bytes, source) = if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(std::io::stdin().lock(), cap + 1),
            &mut buf,
        )
        .map_err(|e| usage(format!("--netbird-status -: {e}")))?;
        (buf, NetbirdSource::Stdin)
    } else {
        (
            super::common::read_file("--netbird-status", path, cap)?,
            NetbirdSource::File {
                path: path.display().to_string(),
            },
        )
    };
    let (status, notes) = probes::netbird::status::parse(&bytes)
        .map_err(|e| usage(format!("--netbird-status {}: {e}", path.display())))?;
    Ok(NetbirdInput {
        status,
        source,
        notes,
    })
}

/// Build the check's configuration from flags.
pub(crate) fn build_config(
    src: &SourceArgs,
    tuning: &TuningArgs,
    auth: &super::turn::AuthArgs,
) -> Result<CheckConfig> {
    let (profile, source, notes, netbird) = load_profile(src)?;
    let adhoc_relays = !src.management.is_empty()
        || !src.signal.is_empty()
        || !src.stun.is_empty()
        || !src.turn.is_empty();
    let overrides = src
        .resolve
        .iter()
        .map(|r| ResolveOverride::parse(r).map_err(|e| usage(format!("--resolve: {e}"))))
        .collect::<Result<Vec<_>>>()?;
    let nameservers = super::common::nameservers(&tuning.dns_server)?;
    let extra_roots = super::common::load_roots(&tuning.ca)?;
    let (proxy, no_proxy) = super::common::proxy(tuning.proxy.as_deref(), tuning.no_proxy)?;
    let relays = if adhoc_relays {
        Vec::new()
    } else {
        for r in &src.relay {
            host(r, "relay")?;
        }
        src.relay.clone()
    };
    Ok(CheckConfig {
        profile,
        source,
        overrides,
        nameservers,
        credentials: auth.credentials()?,
        turn_ca: auth.ca_file.clone(),
        extra_roots,
        proxy,
        no_proxy,
        timeout: Duration::from_millis(tuning.timeout),
        sample: tuning.sample,
        seed: tuning.seed.unwrap_or_else(|| rand::rng().next_u64()),
        rate: tuning.rate,
        deadline: Duration::from_secs(tuning.deadline),
        relays,
        rto: Duration::from_millis(tuning.rto),
        hairpin: tuning.hairpin,
        relay_count: tuning.relay_count,
        notes,
        netbird,
        paths: PathOptions::default(),
    })
}

pub(crate) fn run(args: Args) -> Result<Outcome> {
    let mut cfg = build_config(&args.source, &args.tuning, &args.auth)?;
    cfg.paths = args.path.options(&args.bind)?;
    crate::app::run(Check(cfg), &args.output, &args.files, "checks")
}
