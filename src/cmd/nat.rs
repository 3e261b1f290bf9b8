//! `stunmap nat`: NAT mapping and filtering behaviour (RFC 5780, RFC 4787) against one or
//! more STUN servers, and the P2P-vs-relay verdict that follows, on the command contract:
//! flags → [`plan`] (pure) → [`Nat::execute`] (the engine, through `crate::exec::nat`) →
//! [`NatOutput`] (schema `stunmap.nat/1`, docs/schema/nat-v1.json).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use probes::Family;
use probes::nat::family::MAX_SERVERS;
use probes::nat::portmap::PortMapping;
use probes::nat::{
    Classification, Level, Measurements, NatReport, Pace, RttSource, RunTiming, Timing, classify,
};
use serde::Serialize;

use crate::app::{Command, Ctx, OutputArgs, Report, ReportFiles, RunInfo};
use crate::exit::{Outcome, usage};
use crate::report::doc::{Block, Cell, Doc, FixItem, Mark, Section, Tone, columns, duration, secs};
use crate::report::nat::family_label;
use crate::report::prom::{Writer, flag};
use crate::target::{FamilyChoice, TargetSpec, resolve};

const AFTER_HELP: &str = "\
Timing: every test waits in multiples of the RTT it measured (RFC 6298 estimator, RTO between
100 ms and --rto), five transmissions each; while UDP has answered nothing, a TCP round trip to
the first server (its STUN port and 443) stands in. The verdict is in by --budget at the latest.
See docs/nat.md.

Exit status: 0 direct P2P with every peer that has UDP, 1 degraded (direct only with some
peers, relay only, or unknown), 2 blocked, 64 bad flags, 130 interrupted.";

/// The least time the gateway gets to answer the port-mapping requests (NAT-PMP and PCP
/// answer within a LAN round trip; miniupnpd answers an SSDP search in about 70 ms).
const PORTMAP_MIN_WAIT: Duration = Duration::from_millis(300);

/// The longest budget accepted, in seconds.
const MAX_BUDGET_SECS: f64 = 600.0;
/// The shortest budget accepted, in seconds (below the measured RTO's floor nothing fits).
const MIN_BUDGET_SECS: f64 = 0.1;

/// Flags of `stunmap nat`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub(crate) struct Args {
    /// Where the probes leave from (--bind, --interface, --source-port).
    #[command(flatten)]
    bind: super::common::BindArgs,
    /// STUN servers: the first of each address family is used for the RFC 5780 tests (it
    /// should send OTHER-ADDRESS); all of them are compared for the mapping (HOST[:PORT],
    /// default port 3478; at most 16 per family).
    #[arg(required = true, value_name = "SERVER")]
    servers: Vec<String>,
    /// Retransmission timeout before any round trip is measured, and the longest wait between
    /// two transmissions after one is, 1 to 10000 milliseconds.
    #[arg(long, default_value_t = 500, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    rto: u64,
    /// Whole-run budget in seconds (0.1 to 600, decimals allowed): the verdict is in by then,
    /// whatever the network does (the lifetime test, when asked, runs past it).
    #[arg(long, default_value = "3", value_name = "SECS", value_parser = budget_secs)]
    budget: Duration,
    /// Datagrams per second at most (bursts of up to 32), 1 to 100000.
    #[arg(long, default_value_t = Pace::DEFAULT.per_second, value_name = "PPS",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    rate: u32,
    /// Also test hairpinning (RFC 5780 §4.5). Off by default: the test sends a packet from the
    /// NAT's public address to itself, which some firewalls (Palo Alto's among them) take for
    /// a LAND attack and answer by dropping the host's live NAT sessions.
    #[arg(long)]
    hairpin: bool,
    /// Also measure how long the NAT keeps an idle UDP mapping (RFC 5780 §4.6): a long test,
    /// up to --lifetime-max plus a few seconds. Needs a server that honours RESPONSE-PORT
    /// (RFC 5780 §7.5), such as `stunmap serve`.
    #[arg(long)]
    lifetime: bool,
    /// Longest idle time the lifetime test tries, 1 to 3600 seconds.
    #[arg(long, default_value_t = 120, value_name = "SECS", requires = "lifetime",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    lifetime_max: u64,
    /// Do not ask the default gateway about NAT-PMP, PCP and UPnP IGD port mapping (asked by
    /// default: one UDP request each to the gateway's port 5351 and one SSDP search on the
    /// LAN, concurrently with the STUN tests and within the budget).
    #[arg(long)]
    no_portmap: bool,
    #[command(flatten)]
    family: super::common::FamilyArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    files: ReportFiles,
}

/// `--budget`: seconds, decimals allowed, within [`MIN_BUDGET_SECS`, `MAX_BUDGET_SECS`].
fn budget_secs(s: &str) -> std::result::Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(v) if (MIN_BUDGET_SECS..=MAX_BUDGET_SECS).contains(&v) => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!(
            "{} is not a number of seconds from {MIN_BUDGET_SECS} to {MAX_BUDGET_SECS}",
            crate::report::doc::quoted(s)
        )),
    }
}

/// A planned NAT run: validated values, nothing resolved or sent yet.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Nat {
    specs: Vec<TargetSpec>,
    family: FamilyChoice,
    timing: Timing,
    hairpin: bool,
    lifetime: Option<Duration>,
    portmap: bool,
}

/// The plan from the flags (pure; a usage error exits 64 before anything is sent).
pub(crate) fn plan(args: &Args) -> Result<Nat> {
    let specs: Vec<TargetSpec> = args
        .servers
        .iter()
        .map(|t| TargetSpec::parse(t, 3478))
        .collect::<Result<_>>()?;
    if specs.iter().any(|s| s.ports.0 != s.ports.1) {
        return Err(usage("stunmap nat takes single ports, not ranges"));
    }
    let timing = Timing {
        initial_rto: Duration::from_millis(args.rto),
        budget: args.budget,
        pace: Pace::per_second(args.rate),
        ..Timing::default()
    };
    if timing.budget < timing.min_budget() {
        return Err(usage(format!(
            "--budget {} is shorter than one retransmission timeout (--rto {} ms): no answer could be waited for",
            secs(timing.budget.as_secs_f64()),
            args.rto
        )));
    }
    Ok(Nat {
        specs,
        family: args.family.choice(),
        timing,
        hairpin: args.hairpin,
        lifetime: args
            .lifetime
            .then(|| Duration::from_secs(args.lifetime_max)),
        portmap: !args.no_portmap,
    })
}

pub(crate) fn run(args: Args) -> Result<Outcome> {
    let nat = plan(&args)?;
    args.bind.install()?;
    crate::app::run(nat, &args.output, &args.files, "families")
}

/// What the run's timing was and how long the verdict took.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct VerdictTiming {
    /// From the start of the run until the NAT verdict was in (the STUN tests of every
    /// family; port mapping and the lifetime test aside), seconds.
    pub(crate) verdict_seconds: f64,
    /// The schedule's settings (docs/nat.md has the rule).
    pub(crate) settings: Timing,
}

/// The report of `stunmap nat` (schema `stunmap.nat/1`).
#[derive(Debug, Serialize)]
pub(crate) struct NatOutput {
    /// The servers asked, resolved.
    pub(crate) servers: Vec<SocketAddr>,
    /// The per-family reports and the verdict.
    #[serde(flatten)]
    pub(crate) classification: Classification,
    /// What was measured.
    pub(crate) measurements: Measurements,
    /// How long it took.
    pub(crate) timing: VerdictTiming,
    /// Whether the hairpinning test ran (`--hairpin`).
    pub(crate) hairpin_tested: bool,
    /// What was left out, and why.
    pub(crate) notes: Vec<String>,
}

/// An NDJSON event: one family's report as soon as the verdict is in.
#[derive(Serialize)]
struct FamilyEvent<'a> {
    event: &'static str,
    report: &'a NatReport,
}

impl Command for Nat {
    type Report = NatOutput;

    fn deadline(&self) -> Option<Duration> {
        // The runs end themselves at the budget; this is only a backstop. The lifetime test
        // runs past the budget by design.
        match self.lifetime {
            Some(_) => None,
            None => Some(self.timing.budget + Duration::from_secs(5)),
        }
    }

    async fn execute(self, ctx: Ctx) -> Result<NatOutput> {
        let mut servers = Vec::new();
        for s in &self.specs {
            for ip in resolve(&s.host, self.family).await? {
                servers.push(SocketAddr::new(ip, s.ports.0));
            }
        }
        let mut notes = Vec::new();
        for (v4, name) in [(true, Family::Ipv4), (false, Family::Ipv6)] {
            let n = servers.iter().filter(|s| s.is_ipv4() == v4).count();
            if n > MAX_SERVERS {
                notes.push(format!(
                    "{name}: only the first {MAX_SERVERS} of {n} server addresses were asked"
                ));
            }
        }
        // The budget runs from the start of the command: name lookups count.
        let mut timing = self.timing;
        timing.budget = timing
            .budget
            .saturating_sub(ctx.elapsed())
            .max(timing.effective_floor());
        ctx.plan(2);
        ctx.status("NAT tests");
        // The gateway's answers are taken as they come while the STUN tests run; once the
        // verdict is in (and the gateway had PORTMAP_MIN_WAIT), its waits end too.
        let (settle_handle, settle) = engine::Cancel::new();
        let stun = async {
            let r =
                crate::exec::nat::measure(&servers, timing, self.hairpin, ctx.cancel.clone()).await;
            let at = ctx.elapsed();
            tokio::time::sleep(PORTMAP_MIN_WAIT.saturating_sub(at)).await;
            settle_handle.cancel();
            (r, at)
        };
        let lifetime = async {
            match self.lifetime {
                Some(max) => crate::exec::nat::measure_lifetime(
                    &servers,
                    max,
                    timing.initial_rto,
                    ctx.cancel.clone(),
                )
                .await
                .map(Some),
                None => Ok(None),
            }
        };
        let portmap = async {
            if !self.portmap {
                return None;
            }
            let budget = engine::portmap::DEFAULT_BUDGET.min(timing.budget);
            tokio::select! {
                pm = engine::portmap::probe_gateway(None, budget, settle) => Some(pm),
                () = ctx.cancel.cancelled() => None,
            }
        };
        let ((main, verdict_at), lifetime, port_mapping) = tokio::join!(stun, lifetime, portmap);
        ctx.advance(2);
        let (mut measurements, _) = main?;
        if let Some((v4, v6)) = lifetime? {
            if let Some(f) = measurements.ipv4.as_mut() {
                f.lifetime = v4;
            }
            if let Some(f) = measurements.ipv6.as_mut() {
                f.lifetime = v6;
            }
        }
        if self.portmap && port_mapping.is_none() {
            notes.push("stopped before the gateway's port mapping answers were in".into());
        }
        measurements.port_mapping = port_mapping;
        let classification = classify(&measurements);
        for r in [&classification.ipv4, &classification.ipv6]
            .into_iter()
            .flatten()
        {
            ctx.event(&FamilyEvent {
                event: "family",
                report: r,
            });
        }
        Ok(NatOutput {
            servers,
            classification,
            measurements,
            timing: VerdictTiming {
                verdict_seconds: verdict_at.as_secs_f64(),
                settings: self.timing,
            },
            hairpin_tested: self.hairpin,
            notes,
        })
    }
}

/// Exit status of a verdict level: 0 direct, 1 degraded (partial or relay only), 2 blocked.
pub(crate) fn level_outcome(level: Level) -> Outcome {
    match level {
        Level::Direct => Outcome::Ok,
        Level::Blocked => Outcome::Blocked,
        _ => Outcome::Degraded,
    }
}

fn level_mark(level: Level) -> Mark {
    let tone = match level {
        Level::Direct => Tone::Good,
        Level::Blocked | Level::RelayOnly => Tone::Bad,
        Level::DirectWithEim | Level::DirectWithPermissivePeers | Level::Unknown => Tone::Warn,
    };
    Mark::new(level.to_string(), tone)
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// "RTT 0.3 ms (UDP answers), RTO 100.0 ms, 15 datagrams, done in 500.0 ms".
fn timing_line(t: &RunTiming) -> String {
    let rtt = match (t.rtt, t.rtt_source) {
        (Some(r), source) => format!("RTT {} from {source}", duration(r)),
        (None, source) => source.to_string(),
    };
    let mut line = format!(
        "{rtt}, RTO {}, {} datagrams, done in {}",
        duration(t.rto),
        t.datagrams,
        duration(t.elapsed)
    );
    if t.budget_reached {
        line.push_str(&format!(
            "; the budget ({}) ended it, {} tests before their last transmission",
            duration(t.budget),
            t.tests_cut
        ));
    }
    line
}

fn family_section(r: &NatReport, timing: Option<&RunTiming>, hairpin_tested: bool) -> Section {
    let mut f: Vec<(String, String)> = Vec::new();
    if let Some(a) = r.public_address {
        f.push(("public address".into(), a.to_string()));
    }
    f.push(("NAT".into(), r.nat.to_string()));
    f.push(("UDP".into(), r.udp.to_string()));
    if let Some(m) = r.mapping {
        f.push(("mapping".into(), format!("{m}, by {}", r.mapping_method)));
    }
    if let Some(x) = r.filtering {
        f.push(("filtering".into(), x.to_string()));
    }
    if let Some(x) = r.firewall_filtering {
        f.push((
            "firewall filtering".into(),
            format!("{x} (no NAT; a stateful firewall filters)"),
        ));
    }
    match r.hairpinning {
        Some(h) => f.push(("hairpinning".into(), yes_no(h).into())),
        None if !hairpin_tested && r.nat != probes::nat::NatPresence::Absent => {
            f.push(("hairpinning".into(), "not tested (--hairpin)".into()))
        }
        None => {}
    }
    if let Some(p) = r.port_preservation {
        f.push(("port preservation".into(), yes_no(p).into()));
    }
    if r.alg_detected {
        f.push((
            "ALG".into(),
            "MAPPED-ADDRESS differs from XOR-MAPPED-ADDRESS: an ALG rewrites STUN".into(),
        ));
    }
    if let Some(l) = &r.binding_lifetime {
        f.push(("binding lifetime".into(), l.to_string()));
    }
    if let Some(s) = &r.server_software {
        f.push(("server".into(), s.clone()));
    }
    if let Some(t) = timing {
        f.push(("timing".into(), timing_line(t)));
    }
    let tone = match r.nat_type {
        probes::nat::NatType::UdpBlocked => Tone::Bad,
        _ => Tone::Neutral,
    };
    Section::new(format!("{}: {}", r.family, r.nat_type))
        .marked(Mark::new(r.udp.to_string(), tone))
        .block(Block::Fields(f))
        .block(Block::List(
            r.notes.iter().map(ToString::to_string).collect(),
        ))
}

fn port_mapping_section(pm: &PortMapping) -> Section {
    let Some(gw) = pm.gateway else {
        return Section::new("Port mapping").block(Block::Text("no IPv4 default gateway".into()));
    };
    let mark = if pm.usable() {
        Mark::new("available", Tone::Good)
    } else {
        Mark::new("none", Tone::Neutral)
    };
    Section::new(format!("Port mapping on gateway {gw}"))
        .marked(mark)
        .block(Block::Fields(vec![
            ("NAT-PMP".into(), pm.nat_pmp.to_string()),
            ("PCP".into(), pm.pcp.to_string()),
            ("UPnP IGD".into(), pm.upnp.to_string()),
        ]))
}

fn family_timing(m: &Measurements, family: Family) -> Option<&RunTiming> {
    let f = match family {
        Family::Ipv4 => m.ipv4.as_ref(),
        Family::Ipv6 => m.ipv6.as_ref(),
    };
    f.and_then(|f| f.timing.as_ref())
}

fn rtt_source_label(s: RttSource) -> &'static str {
    match s {
        RttSource::Udp => "udp",
        RttSource::Tcp => "tcp",
        RttSource::None => "none",
    }
}

impl Report for NatOutput {
    const SCHEMA: &'static str = "stunmap.nat/1";

    fn outcome(&self) -> Outcome {
        level_outcome(self.classification.verdict.level)
    }

    fn document(&self, run: &RunInfo) -> Doc {
        let v = &self.classification.verdict;
        let mut doc = Doc::new("stunmap nat", v.headline.clone());
        doc.mark = Some(level_mark(v.level));
        let servers: Vec<String> = self.servers.iter().map(ToString::to_string).collect();
        doc.summary.push(format!("servers {}", servers.join(", ")));
        doc.summary.push(format!(
            "verdict in {} (budget {}), {} in all, exit {}",
            secs(self.timing.verdict_seconds),
            duration(self.timing.settings.budget),
            secs(run.elapsed_seconds),
            run.exit_code.code()
        ));
        for r in [&self.classification.ipv4, &self.classification.ipv6]
            .into_iter()
            .flatten()
        {
            doc.push(family_section(
                r,
                family_timing(&self.measurements, r.family),
                self.hairpin_tested,
            ));
        }
        if let Some(pm) = &self.measurements.port_mapping {
            doc.push(port_mapping_section(pm));
        }
        doc.push(Section::new("Why").block(Block::List(v.reasons.clone())));
        doc.push(
            Section::new("With a peer behind …").block(Block::Table {
                header: columns(["peer", "path"]),
                rows: v
                    .peers
                    .iter()
                    .map(|p| {
                        let tone = match p.outcome {
                            probes::nat::PairOutcome::Direct => Tone::Good,
                            probes::nat::PairOutcome::Relayed => Tone::Warn,
                            probes::nat::PairOutcome::Uncertain => Tone::Neutral,
                        };
                        vec![
                            Cell::from(p.label.clone()),
                            Cell::from(Mark::new(p.outcome.to_string(), tone)),
                        ]
                    })
                    .collect(),
            }),
        );
        doc.push(
            Section::new("Fixes").block(Block::Fixes(v.fixes.iter().map(FixItem::from).collect())),
        );
        doc.push(Section::new("Notes").block(Block::List(self.notes.clone())));
        doc
    }

    fn metrics(&self, run: &RunInfo, w: &mut Writer) -> bool {
        let c = &self.classification;
        crate::report::nat::info_family(w);
        for f in [&c.ipv4, &c.ipv6].into_iter().flatten() {
            let udp = match f.udp {
                probes::nat::UdpStatus::Open => "open",
                probes::nat::UdpStatus::PortsRestricted { .. } => "ports-restricted",
                probes::nat::UdpStatus::Blocked => "blocked",
                probes::nat::UdpStatus::NotTested => "not-tested",
            };
            let nat = match f.nat {
                probes::nat::NatPresence::Absent => "absent",
                probes::nat::NatPresence::Present => "present",
                probes::nat::NatPresence::Unknown => "unknown",
            };
            crate::report::nat::info_sample(
                w,
                &[
                    ("family", family_label(f.family)),
                    ("nat", nat),
                    ("udp", udp),
                ],
                f,
            );
        }
        w.family(
            "stunmap_nat_verdict",
            "gauge",
            "The P2P-vs-relay verdict: one series per level, 1 for the current one.",
        );
        for (l, name) in crate::report::nat::LEVELS {
            w.sample(
                "stunmap_nat_verdict",
                &[("level", name)],
                flag(c.verdict.level == l),
            );
        }
        w.gauge(
            "stunmap_nat_verdict_seconds",
            "Time from the start of the run until the NAT verdict was in.",
            &[],
            self.timing.verdict_seconds,
        );
        w.gauge(
            "stunmap_nat_budget_seconds",
            "The run's budget: the verdict is in by then.",
            &[],
            self.timing.settings.budget.as_secs_f64(),
        );
        let timings: Vec<(&'static str, &RunTiming)> = [Family::Ipv4, Family::Ipv6]
            .into_iter()
            .filter_map(|f| family_timing(&self.measurements, f).map(|t| (family_label(f), t)))
            .collect();
        w.family(
            "stunmap_nat_rtt_seconds",
            "gauge",
            "Smoothed RTT the family's waits were based on (RFC 6298), by where it came from.",
        );
        for (fam, t) in &timings {
            if let Some(rtt) = t.rtt {
                w.sample(
                    "stunmap_nat_rtt_seconds",
                    &[("family", fam), ("source", rtt_source_label(t.rtt_source))],
                    rtt.as_secs_f64(),
                );
            }
        }
        w.family(
            "stunmap_nat_rto_seconds",
            "gauge",
            "The family's retransmission timeout at the end of its run.",
        );
        w.family(
            "stunmap_nat_family_seconds",
            "gauge",
            "How long the family's tests ran.",
        );
        w.family(
            "stunmap_nat_datagrams",
            "gauge",
            "Datagrams the family's tests sent.",
        );
        w.family(
            "stunmap_nat_budget_reached",
            "gauge",
            "1 when the budget ended the family's tests.",
        );
        for (fam, t) in &timings {
            let l = [("family", *fam)];
            w.sample("stunmap_nat_rto_seconds", &l, t.rto.as_secs_f64());
            w.sample("stunmap_nat_family_seconds", &l, t.elapsed.as_secs_f64());
            w.sample("stunmap_nat_datagrams", &l, f64::from(t.datagrams));
            w.sample("stunmap_nat_budget_reached", &l, flag(t.budget_reached));
        }
        w.gauge(
            "stunmap_nat_duration_seconds",
            "How long the whole run took.",
            &[],
            run.elapsed_seconds,
        );
        w.gauge(
            "stunmap_nat_exit_code",
            "Exit code of the run (0 direct, 1 degraded, 2 blocked, 130 interrupted).",
            &[],
            f64::from(run.exit_code.code()),
        );
        w.gauge(
            "stunmap_nat_interrupted",
            "1 when the run was stopped early (signal or deadline): partial results.",
            &[],
            flag(run.partial()),
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn args(v: &[&str]) -> std::result::Result<Args, clap::Error> {
        let mut all = vec!["nat"];
        all.extend_from_slice(v);
        Cli::try_parse_from(all).map(|c| c.args)
    }

    #[test]
    fn the_plan_takes_the_timing_flags() {
        let p = plan(
            &args(&[
                "192.0.2.1",
                "--budget",
                "1.5",
                "--rto",
                "200",
                "--rate",
                "50",
            ])
            .unwrap(),
        )
        .unwrap();
        assert_eq!(p.timing.budget, Duration::from_millis(1500));
        assert_eq!(p.timing.initial_rto, Duration::from_millis(200));
        assert_eq!(p.timing.pace.per_second, 50);
        assert!(!p.hairpin, "hairpinning is opt-in");
        assert!(
            plan(&args(&["192.0.2.1", "--hairpin"]).unwrap())
                .unwrap()
                .hairpin
        );
        let d = plan(&args(&["192.0.2.1"]).unwrap()).unwrap();
        assert_eq!(d.timing, Timing::default());
    }

    #[test]
    fn bad_timing_is_refused_before_anything_is_sent() {
        for bad in [
            &["192.0.2.1", "--rate", "0"][..],
            &["192.0.2.1", "--budget", "0"],
            &["192.0.2.1", "--budget=-1"],
            &["192.0.2.1", "--budget", "1e9"],
            &["192.0.2.1", "--budget", "NaN"],
            &["192.0.2.1", "--rto", "0"],
            &["192.0.2.1", "--rto", "99999999999"],
        ] {
            assert!(args(bad).is_err(), "{bad:?}");
        }
        // A budget shorter than one initial RTO: nothing could be waited for.
        let e = plan(&args(&["192.0.2.1", "--budget", "0.2"]).unwrap()).unwrap_err();
        assert!(e.to_string().contains("--budget"), "{e}");
        assert!(e.downcast_ref::<crate::exit::UsageError>().is_some());
        let e = plan(&args(&["192.0.2.1:3478-3479"]).unwrap()).unwrap_err();
        assert!(e.to_string().contains("single ports"), "{e}");
    }
}
