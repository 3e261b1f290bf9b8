//! `stunmap nat`: NAT mapping and filtering behaviour (RFC 5780, RFC 4787) against one or
//! more STUN servers, and the P2P-vs-relay verdict that follows.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::Result;
use engine::{Cancel, Event, Limits};
use probes::Retransmit;
use probes::nat::discovery::DiscoveryConfig;
use probes::nat::lifetime::{BindingLifetime, LifetimeConfig, LifetimeMeasurements};
use probes::nat::portmap::{PortMapping, ProtocolStatus, UpnpStatus};
use probes::nat::{
    Classification, FamilyMeasurements, FamilyProbe, Level, Measurements, NatReport, classify,
};
use serde::Serialize;

use crate::exit::{Outcome, usage};
use crate::target::{FamilyChoice, TargetSpec, resolve};

/// Flags of `stunmap nat`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where the probes leave from (--bind, --interface, --source-port).
    #[command(flatten)]
    bind: super::common::BindArgs,
    /// STUN servers: the first of each address family is used for the RFC 5780 tests (it
    /// should send OTHER-ADDRESS); all of them are compared for the mapping (HOST[:PORT],
    /// default port 3478).
    #[arg(required = true, value_name = "SERVER")]
    servers: Vec<String>,
    /// Initial retransmission timeout in milliseconds (each test gives up after 11 RTOs).
    #[arg(long, default_value_t = 500, value_name = "MS")]
    rto: u64,
    /// Skip the hairpinning test.
    #[arg(long)]
    no_hairpin: bool,
    /// Also measure how long the NAT keeps an idle UDP mapping (RFC 5780 §4.6): a long test,
    /// up to --lifetime-max plus a few seconds. Needs a server that honours RESPONSE-PORT
    /// (RFC 5780 §7.5), such as `stunmap serve`.
    #[arg(long)]
    lifetime: bool,
    /// Longest idle time the lifetime test tries, in seconds.
    #[arg(
        long,
        default_value_t = 120,
        value_name = "SECS",
        requires = "lifetime"
    )]
    lifetime_max: u64,
    /// Do not ask the default gateway about NAT-PMP, PCP and UPnP IGD port mapping (asked by
    /// default: one UDP request each to the gateway's port 5351 and one SSDP search on the
    /// LAN, concurrently with the STUN tests, about one second).
    #[arg(long)]
    no_portmap: bool,
    /// Only IPv4.
    #[arg(short = '4', conflicts_with = "ipv6")]
    ipv4: bool,
    /// Only IPv6.
    #[arg(short = '6')]
    ipv6: bool,
    /// Machine-readable output (schema `stunmap.nat/1`).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    schema: &'static str,
    servers: Vec<SocketAddr>,
    interrupted: bool,
    elapsed_seconds: f64,
    #[serde(flatten)]
    classification: Classification,
    measurements: Measurements,
}

pub(crate) fn run(args: Args) -> Result<Outcome> {
    args.bind.install()?;
    if args.rto == 0 {
        return Err(usage("--rto must be at least 1 ms"));
    }
    if args.lifetime && !(1..=3600).contains(&args.lifetime_max) {
        return Err(usage("--lifetime-max must be 1 to 3600 seconds"));
    }
    let specs: Vec<TargetSpec> = args
        .servers
        .iter()
        .map(|t| TargetSpec::parse(t, 3478))
        .collect::<Result<_>>()?;
    if specs.iter().any(|s| s.ports.0 != s.ports.1) {
        return Err(usage("stunmap nat takes single ports, not ranges"));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(args, specs))
}

/// Measure NAT behaviour toward `servers` (already resolved) and classify it. Used by `nat`
/// and, later, by `check`.
pub(crate) async fn measure(
    servers: &[SocketAddr],
    rto: Duration,
    hairpin: bool,
    cancel: Cancel,
) -> Result<(Measurements, bool)> {
    let retransmit = Retransmit {
        rto,
        ..DiscoveryConfig::DEFAULT_RETRANSMIT
    };
    let mut probes = Vec::new();
    // Whether each probe is of the IPv4 family, to put outputs back together.
    let mut kinds = Vec::new();
    let mut ids = crate::ids::source();
    for v4 in [true, false] {
        let fam: Vec<SocketAddr> = servers
            .iter()
            .copied()
            .filter(|s| s.is_ipv4() == v4)
            .collect();
        let Some(both) = FamilyProbe::both(&fam, retransmit, hairpin, &mut ids) else {
            continue;
        };
        for p in both {
            probes.push(p);
            kinds.push(v4);
        }
    }
    let mut v4 = FamilyMeasurements::default();
    let mut v6 = FamilyMeasurements::default();
    let (mut any4, mut any6) = (false, false);
    let limits = Limits {
        deadline: Some(rto * 40),
        ..Limits::default()
    };
    let report = engine::run(probes, limits, cancel, |ev| {
        if let Event::Finished { probe, output } = ev {
            let is_v4 = kinds.get(probe).copied().unwrap_or(true);
            let fam = if is_v4 { &mut v4 } else { &mut v6 };
            if is_v4 {
                any4 = true
            } else {
                any6 = true
            }
            fam.record(output);
        }
    })
    .await?;
    for (fam, v4) in [(&mut v4, true), (&mut v6, false)] {
        fam.local_addresses = local_addresses(fam, servers, v4);
    }
    let m = Measurements {
        ipv4: (any4 || servers.iter().any(SocketAddr::is_ipv4)).then_some(v4),
        ipv6: (any6 || servers.iter().any(SocketAddr::is_ipv6)).then_some(v6),
        ..Measurements::default()
    };
    Ok((m, report.interrupted))
}

/// Measure the binding lifetime (RFC 5780 §4.6) toward the first server of each family, up to
/// `max_idle`; returns (IPv4, IPv6).
pub(crate) async fn measure_lifetime(
    servers: &[SocketAddr],
    max_idle: Duration,
    rto: Duration,
    cancel: Cancel,
) -> Result<(Option<LifetimeMeasurements>, Option<LifetimeMeasurements>)> {
    let retransmit = Retransmit {
        rto,
        ..DiscoveryConfig::DEFAULT_RETRANSMIT
    };
    let firsts: Vec<SocketAddr> = [true, false]
        .into_iter()
        .filter_map(|v4| servers.iter().copied().find(|s| s.is_ipv4() == v4))
        .collect();
    let probes = firsts.iter().map(|s| {
        let cfg = LifetimeConfig {
            retransmit,
            ..LifetimeConfig::new(*s, max_idle)
        };
        BindingLifetime::new(cfg, crate::ids::source())
    });
    let (mut v4, mut v6) = (None, None);
    let limits = Limits {
        // The longest idle time, then one silent schedule for its trigger, with room.
        deadline: Some(max_idle + retransmit.give_up_after() * 2 + Duration::from_secs(2)),
        ..Limits::default()
    };
    engine::run(probes, limits, cancel, |ev| {
        if let Event::Finished { output, .. } = ev {
            if output.server.is_ipv4() {
                v4 = Some(output);
            } else {
                v6 = Some(output);
            }
        }
    })
    .await?;
    Ok((v4, v6))
}

/// The host's source addresses toward the servers (what the OS routes from), used to tell
/// "no NAT" (mapped address is our own) from a NAT.
fn local_addresses(fam: &FamilyMeasurements, servers: &[SocketAddr], v4: bool) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = servers
        .iter()
        .filter(|s| s.is_ipv4() == v4)
        .filter_map(|s| engine::udp::routed_source(s).ok())
        .collect();
    if let Some(d) = &fam.discovery {
        ips.extend(d.local_mapping.map(|a| a.ip()));
    }
    ips.retain(|ip| !ip.is_unspecified());
    ips.sort();
    ips.dedup();
    ips
}

async fn run_async(args: Args, specs: Vec<TargetSpec>) -> Result<Outcome> {
    let family = FamilyChoice::from_flags(args.ipv4, args.ipv6);
    let mut servers = Vec::new();
    for s in &specs {
        for ip in resolve(&s.host, family).await? {
            servers.push(SocketAddr::new(ip, s.ports.0));
        }
    }
    let (handle, cancel) = Cancel::new();
    engine::driver::cancel_on_signals(handle);
    let start = Instant::now();
    let rto = Duration::from_millis(args.rto);
    let lifetime = async {
        if args.lifetime {
            let max = Duration::from_secs(args.lifetime_max);
            measure_lifetime(&servers, max, rto, cancel.clone())
                .await
                .map(Some)
        } else {
            Ok(None)
        }
    };
    let portmap = async {
        if args.no_portmap {
            None
        } else {
            Some(engine::portmap::probe_gateway(None, engine::portmap::DEFAULT_BUDGET).await)
        }
    };
    let (main, lifetime, port_mapping) = tokio::join!(
        measure(&servers, rto, !args.no_hairpin, cancel.clone()),
        lifetime,
        portmap
    );
    let (mut measurements, interrupted) = main?;
    if let Some((v4, v6)) = lifetime? {
        if let Some(f) = measurements.ipv4.as_mut() {
            f.lifetime = v4;
        }
        if let Some(f) = measurements.ipv6.as_mut() {
            f.lifetime = v6;
        }
    }
    measurements.port_mapping = port_mapping;
    let interrupted = interrupted || cancel.is_cancelled();
    let classification = classify(&measurements);
    let report = Report {
        schema: "stunmap.nat/1",
        servers,
        interrupted,
        elapsed_seconds: start.elapsed().as_secs_f64(),
        classification,
        measurements,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_human(&report);
    }
    Ok(if report.interrupted {
        Outcome::Interrupted
    } else {
        level_outcome(report.classification.verdict.level)
    })
}

/// Exit status of a verdict level: 0 direct, 1 degraded (partial or relay only), 2 blocked.
pub(crate) fn level_outcome(level: Level) -> Outcome {
    match level {
        Level::Direct => Outcome::Ok,
        Level::Blocked => Outcome::Blocked,
        _ => Outcome::Degraded,
    }
}

fn print_family(r: &NatReport) {
    println!("{}: {}", r.family, r.nat_type);
    if let Some(a) = r.public_address {
        println!("  public address     {a}");
    }
    println!("  NAT                {:?}", r.nat);
    if let Some(m) = r.mapping {
        println!(
            "  mapping            {} ({:?})",
            m.short(),
            r.mapping_method
        );
    }
    if let Some(f) = r.filtering {
        println!("  filtering          {}", f.short());
    }
    if let Some(f) = r.firewall_filtering {
        println!(
            "  firewall filtering {} (no NAT; a stateful firewall filters)",
            f.short()
        );
    }
    if let Some(h) = r.hairpinning {
        println!("  hairpinning        {}", if h { "yes" } else { "no" });
    }
    if let Some(p) = r.port_preservation {
        println!("  port preservation  {}", if p { "yes" } else { "no" });
    }
    if r.alg_detected {
        println!(
            "  ALG                MAPPED-ADDRESS differs from XOR-MAPPED-ADDRESS: an ALG rewrites STUN"
        );
    }
    if let Some(l) = &r.binding_lifetime {
        println!("  binding lifetime   {l}");
    }
    if let Some(s) = &r.server_software {
        println!("  server             {s}");
    }
    for n in &r.notes {
        println!("  note: {n}");
    }
}

fn print_port_mapping(pm: &PortMapping) {
    println!();
    let Some(gw) = pm.gateway else {
        println!("Port mapping: no IPv4 default gateway");
        return;
    };
    println!("Port mapping on gateway {gw}:");
    for (name, st) in [("NAT-PMP", &pm.nat_pmp), ("PCP", &pm.pcp)] {
        let text = match st {
            ProtocolStatus::Available { external, epoch } => format!(
                "available{} (epoch {epoch} s)",
                external
                    .map(|a| format!(", external address {a}"))
                    .unwrap_or_default()
            ),
            ProtocolStatus::Refused { code, meaning } => format!("refused: {meaning} ({code})"),
            ProtocolStatus::NatPmpOnly => "no (the gateway speaks only NAT-PMP)".into(),
            ProtocolStatus::Unreachable => "no (port 5351 closed)".into(),
            ProtocolStatus::NoAnswer => "no answer".into(),
            ProtocolStatus::Malformed => "unreadable answers".into(),
            ProtocolStatus::NotTested => "not tested".into(),
        };
        println!("  {name:<18} {text}");
    }
    let upnp = match &pm.upnp {
        UpnpStatus::Available {
            location, services, ..
        } => {
            let names: Vec<&str> = services
                .iter()
                .map(|s| {
                    s.service_type
                        .rsplit_once(":service:")
                        .map_or(s.service_type.as_str(), |(_, n)| n)
                })
                .collect();
            format!("available: {} at {location}", names.join(", "))
        }
        UpnpStatus::NoWanService { location } => {
            format!("a device answered ({location}) but offers no WAN connection service")
        }
        UpnpStatus::DescriptionFailed { location, reason } => {
            format!("a device answered but its description failed ({location}: {reason})")
        }
        UpnpStatus::NoAnswer => "no answer to the SSDP search".into(),
        UpnpStatus::NotTested => "not tested".into(),
    };
    println!("  {:<18} {upnp}", "UPnP IGD");
}

fn print_human(report: &Report) {
    let v = &report.classification.verdict;
    if report.interrupted {
        println!("INTERRUPTED: partial results follow");
    }
    println!("{}", v.headline);
    println!();
    for r in [&report.classification.ipv4, &report.classification.ipv6]
        .into_iter()
        .flatten()
    {
        print_family(r);
    }
    if let Some(pm) = &report.measurements.port_mapping {
        print_port_mapping(pm);
    }
    if !v.reasons.is_empty() {
        println!();
        println!("Why:");
        for r in &v.reasons {
            println!("  - {r}");
        }
    }
    if !v.peers.is_empty() {
        println!();
        println!("With a peer behind …");
        for p in &v.peers {
            println!("  {:<44} {:?}", p.label, p.outcome);
        }
    }
    if !v.fixes.is_empty() {
        println!();
        println!("Fixes:");
        for f in &v.fixes {
            println!("  {}", f.title);
            for c in &f.commands {
                println!("      {c}");
            }
            if let Some(c) = &f.caveat {
                println!("    caveat: {c}");
            }
        }
    }
}
