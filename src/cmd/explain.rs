//! `stunmap explain BUNDLE`: read a `netbird debug bundle` (zip or unpacked folder) offline and
//! explain each relayed or unconnected peer, the routes into the tunnel and the host firewall.
//! Nothing is uploaded or extracted; public keys and secrets in the bundle are never printed.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use probes::hostfw::{self, Cidr, Options};
use probes::netbird::bundle::{self, Bundle};
use probes::netbird::log::{self as nblog, IceHistory};
use probes::netbird::peers::{self, Measured, PeerFinding, Reason};
use probes::netbird::routes::{self, RouteFinding};
use probes::netbird::status::{self, Status};
use probes::{Family, PortRange};
use serde::Serialize;

use crate::app::{Command, Ctx, OutputArgs, Report, ReportFiles, RunInfo};
use crate::exit::{Outcome, usage};
use crate::report::doc::{Block, Cell, Doc, FixItem, Mark, Section, Tone, columns};
use crate::report::prom::{Writer, flag, run_facts};

const HELP: &str = "\
Reads: status.txt (or status.json), client.log, routes.txt, iptables.txt (its iptables-save part),
nftables.txt, config.txt (WgIface, WgPort). Everything else is listed, not read. Make the bundle with
`netbird debug for 2m --system-info` for the ICE state changes (logged at debug level) and the
firewall and routes.
Exit status: 0 nothing wrong found, 1 findings, 64 bad usage or an unreadable bundle.
See docs/netbird.md.";

/// Flags of `stunmap explain`.
#[derive(Debug, clap::Args)]
#[command(after_help = HELP)]
pub(crate) struct Args {
    /// The bundle: the zip `netbird debug bundle` printed, or the folder it was unpacked to.
    #[arg(value_name = "BUNDLE")]
    bundle: PathBuf,
    /// VPN subnet peers come from (host-firewall checks).
    #[arg(long, default_value = "100.64.0.0/10", value_name = "CIDR")]
    subnet: String,
    /// Peers reach this host without NAT: dropped WireGuard UDP is blocking, not advisory.
    #[arg(long)]
    flat_network: bool,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    files: ReportFiles,
}

/// The report of `stunmap explain` (schema `stunmap.explain/1`).
#[derive(Debug, Serialize)]
pub(crate) struct ExplainReport {
    bundle: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    netbird_version: Option<String>,
    interface: String,
    wireguard_port: u16,
    wireguard_port_source: &'static str,
    files: Vec<bundle::Entry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
    peers: Vec<PeerFinding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ice_log: Option<LogSummary>,
    routes: Vec<RouteFinding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_firewall: Option<hostfw::Report>,
    notes: Vec<String>,
    problems: bool,
}

#[derive(Debug, Serialize)]
struct LogSummary {
    lines: u64,
    state_lines: u64,
    peers: usize,
}

/// Read a folder's wanted files: top level only, no symlinks, each within its cap.
fn read_folder(dir: &Path) -> anyhow::Result<Bundle> {
    let mut files = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| usage(format!("{}: {e}", dir.display())))?;
    for (n, entry) in rd.enumerate() {
        if n >= bundle::MAX_ENTRIES {
            return Err(usage(format!(
                "{}: more than {} entries",
                dir.display(),
                bundle::MAX_ENTRIES
            )));
        }
        let entry = entry.map_err(|e| usage(format!("{}: {e}", dir.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let meta = entry
            .path()
            .symlink_metadata()
            .map_err(|e| usage(format!("{name}: {e}")))?;
        if !meta.is_file() {
            continue;
        }
        let bytes = match bundle::cap_of(&name) {
            Some(cap) if meta.len() <= cap as u64 => {
                let mut buf = Vec::new();
                std::fs::File::open(entry.path())
                    .and_then(|f| f.take(cap as u64 + 1).read_to_end(&mut buf))
                    .map_err(|e| usage(format!("{name}: {e}")))?;
                Some(buf)
            }
            // Over its cap (noted by `from_files`) or not a file stunmap reads.
            Some(_) | None => None,
        };
        files.push((name, meta.len(), bytes));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Bundle::from_files(files).map_err(|e| usage(format!("{}: {e}", dir.display())))
}

fn read_zip(path: &Path) -> anyhow::Result<Bundle> {
    let meta = std::fs::metadata(path).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    if meta.len() > bundle::MAX_ARCHIVE as u64 {
        return Err(usage(format!(
            "{}: {} bytes; at most {} are read",
            path.display(),
            meta.len(),
            bundle::MAX_ARCHIVE
        )));
    }
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(bundle::MAX_ARCHIVE as u64 + 1).read_to_end(&mut buf))
        .map_err(|e| usage(format!("{}: {e}", path.display())))?;
    bundle::from_zip(&buf).map_err(|e| usage(format!("{}: {e}", path.display())))
}

/// Everything the report needs, from a bundle already read (pure).
fn analyse(b: &Bundle, subnet: Cidr, flat_network: bool, label: String) -> ExplainReport {
    let mut notes = b.notes.clone();
    let status = b
        .file("status.json")
        .or_else(|| b.file("status.txt"))
        .and_then(|bytes| match status::parse(bytes) {
            Ok((st, n)) => {
                notes.extend(n.into_iter().map(|n| format!("status: {n}")));
                Some(st)
            }
            Err(e) => {
                notes.push(format!("status: {e}"));
                None
            }
        });
    if status.is_none() && b.file("status.txt").is_none() && b.file("status.json").is_none() {
        notes.push("no status.txt: peers cannot be explained".into());
    }
    let (cfg_iface, cfg_port) = b
        .text("config.txt")
        .map(|c| bundle::config_interface_and_port(&c))
        .unwrap_or((None, None));
    let interface = cfg_iface.unwrap_or_else(|| "wt0".into());
    let (wireguard_port, wireguard_port_source) =
        match (status.as_ref().and_then(|s| s.wireguard_port), cfg_port) {
            (Some(p), _) => (p, "status"),
            (None, Some(p)) => (p, "config.txt"),
            (None, None) => (51820, "default"),
        };
    let ice: Option<IceHistory> = b.text("client.log").map(|t| nblog::read(&t));
    if let Some(h) = &ice {
        if h.state_lines == 0 {
            notes.push(
                "client.log has no ICE state changes (they are logged at debug level: make the bundle with `netbird debug for 2m`)"
                    .into(),
            );
        }
    } else {
        notes.push("no client.log".into());
    }
    let peers = status
        .as_ref()
        .map(|st| peers::explain(st, &Measured::default(), ice.as_ref()))
        .unwrap_or_default();
    let parsed_routes = b.text("routes.txt").map(|t| routes::parse(&t));
    match &parsed_routes {
        None => notes.push("no routes.txt (the bundle was made without --system-info)".into()),
        Some(r) if !r.with_interfaces => notes.push(
            "routes.txt lists prefixes without interfaces (older NetBird): routes into the tunnel cannot be told".into(),
        ),
        Some(_) => {}
    }
    let route_findings = routes::findings(parsed_routes.as_ref(), status.as_ref(), &interface);
    let mut inputs = hostfw::Inputs::default();
    if let Some(t) = b.text("iptables.txt") {
        match bundle::iptables_save_section(&t) {
            Some(sec) => match hostfw::iptables_save::parse(sec, Family::Ipv4) {
                Ok(d) => inputs.iptables = Some(d),
                Err(e) => notes.push(format!("iptables.txt: {e}")),
            },
            None => notes.push(
                "iptables.txt has no iptables-save part (older NetBird prints only `iptables -v -n -L`, which is not evaluated)".into(),
            ),
        }
    }
    if let Some(t) = b.text("nftables.txt") {
        // With iptables' nf_tables backend the same tables are in the iptables-save part too;
        // `combined_ruleset` keeps iptables' exact view of those and nft's of the others.
        match hostfw::nft_text::parse(&t) {
            Ok(rs) => inputs.nft = Some(rs),
            Err(e) => notes.push(format!("nftables.txt: {e}")),
        }
    }
    let host_firewall = (inputs.iptables.is_some() || inputs.nft.is_some()).then(|| {
        hostfw::diagnose(
            &inputs,
            &Options {
                interface: interface.clone(),
                subnet,
                service_port: 8080,
                wg_range: PortRange {
                    start: 49152,
                    end: 65535,
                },
                wg_port: wireguard_port,
                uplink: None,
                flat_network,
            },
        )
    });
    let problems = peers.iter().any(|p| p.reason != Reason::Idle)
        || route_findings.iter().any(|r| r.concern)
        || host_firewall.as_ref().is_some_and(|h| h.blocked);
    ExplainReport {
        bundle: label,
        netbird_version: status.as_ref().and_then(|s| s.daemon_version.clone()),
        interface,
        wireguard_port,
        wireguard_port_source,
        files: b.listing.clone(),
        ice_log: ice.as_ref().map(|h| LogSummary {
            lines: h.lines,
            state_lines: h.state_lines,
            peers: h.peers.len(),
        }),
        status,
        peers,
        routes: route_findings,
        host_firewall,
        notes,
        problems,
    }
}

/// A planned explanation: which bundle, how to judge its firewall.
#[derive(Debug)]
struct Explain {
    bundle: PathBuf,
    subnet: Cidr,
    flat_network: bool,
}

/// The plan (pure).
fn plan(args: &Args) -> anyhow::Result<Explain> {
    let subnet = super::common::parse_subnet(&args.subnet)?;
    Ok(Explain {
        bundle: args.bundle.clone(),
        subnet,
        flat_network: args.flat_network,
    })
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    let explain = plan(&args)?;
    crate::app::run(explain, &args.output, &args.files, "files")
}

impl Command for Explain {
    type Report = ExplainReport;

    /// Reads the bundle (size-capped, nothing extracted); an unreadable or foreign bundle is a
    /// usage error.
    async fn execute(self, _ctx: Ctx) -> anyhow::Result<ExplainReport> {
        let path = &self.bundle;
        let b = if path.is_dir() {
            read_folder(path)?
        } else if path.is_file() {
            read_zip(path)?
        } else {
            return Err(usage(format!("{}: no such file or folder", path.display())));
        };
        Ok(analyse(
            &b,
            self.subnet,
            self.flat_network,
            path.display().to_string(),
        ))
    }
}

fn connected(c: bool) -> &'static str {
    if c { "connected" } else { "disconnected" }
}

impl ExplainReport {
    fn headline(&self) -> String {
        if !self.problems {
            return "Nothing wrong found in the bundle".into();
        }
        let mut parts = Vec::new();
        let peers = self
            .peers
            .iter()
            .filter(|p| p.reason != Reason::Idle)
            .count();
        if peers > 0 {
            parts.push(format!(
                "{peers} peer{} not connected directly",
                if peers == 1 { "" } else { "s" }
            ));
        }
        let routes = self.routes.iter().filter(|r| r.concern).count();
        if routes > 0 {
            parts.push(format!(
                "{routes} route conflict{}",
                if routes == 1 { "" } else { "s" }
            ));
        }
        if self.host_firewall.as_ref().is_some_and(|h| h.blocked) {
            parts.push("the host firewall blocks tunnel traffic".into());
        }
        format!("Findings: {}", parts.join(", "))
    }
}

impl Report for ExplainReport {
    const SCHEMA: &'static str = "stunmap.explain/1";

    fn outcome(&self) -> Outcome {
        if self.problems {
            Outcome::Degraded
        } else {
            Outcome::Ok
        }
    }

    fn document(&self, run: &RunInfo) -> Doc {
        let mut doc = Doc::new("stunmap explain", self.headline());
        doc.mark = Some(if self.problems {
            Mark::new("findings", Tone::Warn)
        } else {
            Mark::new("ok", Tone::Good)
        });
        doc.summary.push(format!(
            "NetBird debug bundle {}{}, exit {}",
            self.bundle,
            self.netbird_version
                .as_deref()
                .map(|v| format!(" (NetBird {v})"))
                .unwrap_or_default(),
            run.exit_code.code()
        ));
        doc.summary.push(format!(
            "interface {}, WireGuard port {} (from {})",
            self.interface, self.wireguard_port, self.wireguard_port_source
        ));
        doc.summary.push(crate::report::doc::read_line(
            self.files
                .iter()
                .filter(|f| f.read)
                .map(|f| f.name.as_str()),
        ));
        if let Some(st) = &self.status {
            let mut fields = vec![
                (
                    "management".to_string(),
                    connected(st.management.connected).to_string(),
                ),
                (
                    "signal".to_string(),
                    connected(st.signal.connected).to_string(),
                ),
            ];
            for x in &st.relays {
                let state = if x.available {
                    "available".to_owned()
                } else if x.checking {
                    "checking".to_owned()
                } else {
                    format!(
                        "unavailable{}",
                        x.error
                            .as_deref()
                            .map(|e| format!(" ({e})"))
                            .unwrap_or_default()
                    )
                };
                fields.push((x.uri.clone(), state));
            }
            doc.push(Section::new("NetBird's view").block(Block::Fields(fields)));
        }
        for s in crate::report::netbird::sections(&self.peers) {
            doc.push(s);
        }
        doc.push(
            Section::new("Routes").block(Block::Table {
                header: columns(["state", "detail"]),
                rows: self
                    .routes
                    .iter()
                    .map(|f| {
                        vec![
                            Cell::from(if f.concern {
                                Mark::new("conflict", Tone::Bad)
                            } else {
                                Mark::new("info", Tone::Neutral)
                            }),
                            Cell::from(f.detail.clone()),
                        ]
                    })
                    .collect(),
            }),
        );
        if let Some(h) = &self.host_firewall {
            let mut sec = Section::new("Host firewall (iptables.txt, nftables.txt)");
            sec.push(Block::Table {
                header: columns(["state", "check", "decided by"]),
                rows: h
                    .findings
                    .iter()
                    .map(|f| {
                        vec![
                            Cell::from(super::host::status_mark(f.status)),
                            Cell::from(f.subject.clone()),
                            Cell::from(f.deciding.clone().unwrap_or_default()),
                        ]
                    })
                    .collect(),
            });
            sec.push(Block::Fixes(
                h.findings
                    .iter()
                    .filter_map(|f| f.fix.as_ref().map(|x| FixItem::about(&f.subject, x)))
                    .collect(),
            ));
            doc.push(sec);
        }
        doc.push(Section::new("Notes").block(Block::List(self.notes.clone())));
        doc
    }

    fn metrics(&self, run: &RunInfo, w: &mut Writer) -> bool {
        run_facts(w, "explain", run);
        crate::report::netbird::metrics(w, &self.peers, &[]);
        w.gauge(
            "stunmap_explain_route_conflicts",
            "Routes in the bundle that can break connectivity (overlaps with the tunnel).",
            &[],
            self.routes.iter().filter(|r| r.concern).count() as f64,
        );
        if let Some(h) = &self.host_firewall {
            w.gauge(
                "stunmap_explain_host_firewall_blocked",
                "1 when the bundle's host firewall blocks tunnel traffic.",
                &[],
                flag(h.blocked),
            );
        }
        true
    }
}
