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

use crate::exit::{Outcome, usage};

/// Schema id of the JSON report (docs/schema/explain-v1.json).
pub(crate) const SCHEMA: &str = "stunmap.explain/1";

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
    /// Machine-readable output (schema stunmap.explain/1).
    #[arg(long)]
    json: bool,
    /// VPN subnet peers come from (host-firewall checks).
    #[arg(long, default_value = "100.64.0.0/10", value_name = "CIDR")]
    subnet: String,
    /// Peers reach this host without NAT: dropped WireGuard UDP is blocking, not advisory.
    #[arg(long)]
    flat_network: bool,
}

/// The report.
#[derive(Debug, Serialize)]
struct Report {
    schema: &'static str,
    stunmap_version: &'static str,
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
fn analyse(b: &Bundle, subnet: Cidr, flat_network: bool, label: String) -> Report {
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
    Report {
        schema: SCHEMA,
        stunmap_version: env!("CARGO_PKG_VERSION"),
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

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    let subnet = Cidr::parse(&args.subnet).ok_or_else(|| {
        usage(format!(
            "--subnet: not an address prefix: {:?}",
            args.subnet
        ))
    })?;
    let path = &args.bundle;
    let b = if path.is_dir() {
        read_folder(path)?
    } else if path.is_file() {
        read_zip(path)?
    } else {
        return Err(usage(format!("{}: no such file or folder", path.display())));
    };
    let report = analyse(&b, subnet, args.flat_network, path.display().to_string());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_human(&report);
    }
    Ok(if report.problems {
        Outcome::Degraded
    } else {
        Outcome::Ok
    })
}

/// A peer- or bundle-controlled string made safe for a terminal: control characters replaced,
/// length capped.
pub(crate) fn clean(s: &str) -> String {
    let mut o: String = s
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(300)
        .collect();
    if s.chars().count() > 300 {
        o.push('…');
    }
    o
}

fn print_human(r: &Report) {
    println!("NetBird debug bundle {}", clean(&r.bundle));
    if let Some(v) = &r.netbird_version {
        println!("  NetBird {}", clean(v));
    }
    println!(
        "  interface {}, WireGuard port {} (from {})",
        clean(&r.interface),
        r.wireguard_port,
        r.wireguard_port_source
    );
    let read: Vec<String> = r
        .files
        .iter()
        .filter(|f| f.read)
        .map(|f| clean(&f.name))
        .collect();
    println!(
        "  read: {}",
        if read.is_empty() {
            "nothing".into()
        } else {
            read.join(", ")
        }
    );
    if let Some(st) = &r.status {
        let rel: Vec<String> = st
            .relays
            .iter()
            .map(|x| {
                let state = if x.available {
                    "available".to_owned()
                } else if x.checking {
                    "checking".to_owned()
                } else {
                    format!(
                        "unavailable{}",
                        x.error
                            .as_deref()
                            .map(|e| format!(" ({})", clean(e)))
                            .unwrap_or_default()
                    )
                };
                format!("    {} {state}", clean(&x.uri))
            })
            .collect();
        println!(
            "  management {}, signal {}",
            if st.management.connected {
                "connected"
            } else {
                "disconnected"
            },
            if st.signal.connected {
                "connected"
            } else {
                "disconnected"
            }
        );
        if !rel.is_empty() {
            println!(
                "  STUN/TURN/relays as NetBird sees them:\n{}",
                rel.join("\n")
            );
        }
    }
    println!();
    crate::report::netbird::print_peers(&r.peers);
    if !r.routes.is_empty() {
        println!("\nRoutes");
        for f in &r.routes {
            let label = if f.concern { "CONFLICT" } else { "INFO" };
            println!("  {label:<9} {}", clean(&f.detail));
        }
    }
    if let Some(h) = &r.host_firewall {
        println!("\nHost firewall (iptables.txt, nftables.txt)");
        for f in &h.findings {
            let label = match f.status {
                probes::finding::Status::Ok => "OK",
                probes::finding::Status::Blocked => "BLOCKED",
                probes::finding::Status::Uncertain => "UNCERTAIN",
                probes::finding::Status::Degraded => "ADVISORY",
                probes::finding::Status::Skipped => "INFO",
            };
            println!("  {label:<9} {}", clean(&f.subject));
            if let Some(d) = &f.deciding {
                println!("            decided by {}", clean(d));
            }
            if let Some(fix) = &f.fix {
                for c in &fix.commands {
                    println!("            fix: {}", clean(c));
                }
            }
        }
    }
    if !r.notes.is_empty() {
        println!("\nNotes");
        for n in &r.notes {
            println!("  {}", clean(n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_strips_control_characters() {
        assert_eq!(clean("a\u{1b}[31mb\n"), "a?[31mb?");
        assert_eq!(clean(&"x".repeat(400)).chars().count(), 301);
    }
}
