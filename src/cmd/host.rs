//! `stunmap host`: does this host's own firewall let VPN traffic in?

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use probes::finding::Status;
use probes::hostfw::{
    Cidr, Inputs, Options, Report, diagnose, firewalld, iptables_save, nft_json, ufw, windows,
};
use probes::{Family, PortRange};
use serde::Serialize;

use crate::exit::{Outcome, usage};

const FILES_HELP: &str = "\
Saved files for --from DIR (any subset; capture them on the host being diagnosed, as root):
  nft.json             nft -j list ruleset > nft.json
  iptables-save.txt    iptables-save > iptables-save.txt
  ip6tables-save.txt   ip6tables-save > ip6tables-save.txt
  ufw-status.txt       ufw status verbose > ufw-status.txt
  firewalld-zone.txt   firewall-cmd --get-zone-of-interface=wt0 > firewalld-zone.txt 2>&1
  windows-firewall.json  on Windows, in PowerShell as Administrator:
      Get-NetFirewallRule -PolicyStore ActiveStore | ForEach-Object {
        $i = $_ | Get-NetFirewallInterfaceFilter; $a = $_ | Get-NetFirewallApplicationFilter
        $p = $_ | Get-NetFirewallPortFilter
        [pscustomobject]@{ DisplayName = $_.DisplayName; Enabled = \"$($_.Enabled)\"
          Direction = \"$($_.Direction)\"; Action = \"$($_.Action)\"; Profile = \"$($_.Profile)\"
          InterfaceAlias = @($i.InterfaceAlias); Program = $a.Program
          Protocol = $p.Protocol; LocalPort = @($p.LocalPort) }
      } | ConvertTo-Json -Depth 3 | Out-File -Encoding utf8 windows-firewall.json

Without --from, the Linux tools above are run directly; missing tools are skipped.
Exit status: 0 nothing blocks, 1 a finding blocks traffic, 64 bad flags or unreadable files.
See docs/host.md.";

/// Flags of `stunmap host`.
#[derive(Debug, clap::Args)]
#[command(after_help = FILES_HELP)]
pub(crate) struct Args {
    /// Tunnel interface of the VPN.
    #[arg(long, default_value = "wt0", value_name = "IF")]
    interface: String,
    /// VPN subnet peers come from.
    #[arg(long, default_value = "100.64.0.0/10", value_name = "CIDR")]
    subnet: String,
    /// Read saved outputs from DIR instead of running the tools (file names below).
    #[arg(long, value_name = "DIR")]
    from: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    /// Service port used for the TCP and UDP checks over the tunnel.
    #[arg(long, default_value_t = 8080, value_name = "PORT")]
    port: u16,
    /// WireGuard port range for the flat-network check.
    #[arg(long, default_value = "49152-65535", value_name = "LO-HI")]
    wg_ports: String,
    /// WireGuard's own port, also checked: the `wireguardPort` of `netbird status --json`.
    #[arg(long, visible_alias = "wireguard-port", default_value_t = 51820, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    wg_port: u16,
    /// Physical interface peers reach this host on (default: any interface but the tunnel and lo).
    #[arg(long, value_name = "IF")]
    uplink: Option<String>,
    /// Peers reach this host without NAT (flat network, routed VLAN): treat dropped WireGuard UDP
    /// as blocking, not advisory.
    #[arg(long)]
    flat_network: bool,
}

/// One place a source was (or was not) read from.
#[derive(Debug, Serialize)]
struct SourceInfo {
    name: &'static str,
    origin: String,
    read: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

#[derive(Debug, Serialize)]
struct Output<'a> {
    sources: &'a [SourceInfo],
    #[serde(flatten)]
    report: &'a Report,
}

fn parse_range(s: &str) -> Option<PortRange> {
    let (a, b) = s.split_once(['-', ':']).unwrap_or((s, s));
    let r = PortRange {
        start: a.trim().parse().ok()?,
        end: b.trim().parse().ok()?,
    };
    (r.start <= r.end).then_some(r)
}

fn valid_iface(s: &str) -> bool {
    !s.is_empty() && s.len() < 16 && !s.contains(['/', ' ', '\0'])
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    let subnet = Cidr::parse(&args.subnet).ok_or_else(|| {
        usage(format!(
            "--subnet: not an address prefix: {:?}",
            args.subnet
        ))
    })?;
    let wg_range = parse_range(&args.wg_ports).ok_or_else(|| {
        usage(format!(
            "--wg-ports: expected LO-HI, got {:?}",
            args.wg_ports
        ))
    })?;
    if !valid_iface(&args.interface) {
        return Err(usage(format!(
            "--interface: not an interface name: {:?}",
            args.interface
        )));
    }
    if let Some(u) = &args.uplink
        && !valid_iface(u)
    {
        return Err(usage(format!("--uplink: not an interface name: {u:?}")));
    }
    let (inputs, sources) = match &args.from {
        Some(dir) => read_dir(dir)?,
        None => read_live(&args.interface)?,
    };
    let opts = Options {
        interface: args.interface.clone(),
        subnet,
        service_port: args.port,
        wg_range,
        wg_port: args.wg_port,
        uplink: args.uplink.clone(),
        flat_network: args.flat_network,
    };
    let report = diagnose(&inputs, &opts);
    if args.json {
        let out = Output {
            sources: &sources,
            report: &report,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_human(&report, &sources);
    }
    Ok(if report.blocked {
        Outcome::Degraded
    } else {
        Outcome::Ok
    })
}

/// The files `--from` reads, in the order they are listed.
const FILES: [(&str, &str); 6] = [
    ("nft", "nft.json"),
    ("iptables", "iptables-save.txt"),
    ("ip6tables", "ip6tables-save.txt"),
    ("ufw", "ufw-status.txt"),
    ("firewalld", "firewalld-zone.txt"),
    ("windows", "windows-firewall.json"),
];

fn parse_into(
    inputs: &mut Inputs,
    name: &str,
    bytes: &[u8],
) -> Result<(), probes::hostfw::HostFwError> {
    let text = || String::from_utf8_lossy(bytes).into_owned();
    match name {
        "nft" => inputs.nft = Some(nft_json::parse(&text())?),
        "iptables" => inputs.iptables = Some(iptables_save::parse(&text(), Family::Ipv4)?),
        "ip6tables" => inputs.ip6tables = Some(iptables_save::parse(&text(), Family::Ipv6)?),
        "ufw" => inputs.ufw = Some(ufw::parse(&text())?),
        "firewalld" => inputs.firewalld = Some(firewalld::parse(&text())?),
        _ => inputs.windows = Some(windows::parse(bytes)?),
    }
    Ok(())
}

fn read_dir(dir: &Path) -> anyhow::Result<(Inputs, Vec<SourceInfo>)> {
    if !dir.is_dir() {
        return Err(usage(format!(
            "--from: {} is not a directory",
            dir.display()
        )));
    }
    let mut inputs = Inputs::default();
    let mut sources = Vec::new();
    for (name, file) in FILES {
        let path = dir.join(file);
        let origin = path.display().to_string();
        match std::fs::read(&path) {
            Ok(bytes) => {
                parse_into(&mut inputs, name, &bytes)
                    .map_err(|e| usage(format!("{origin}: {e}")))?;
                sources.push(SourceInfo {
                    name,
                    origin,
                    read: true,
                    note: None,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                sources.push(SourceInfo {
                    name,
                    origin,
                    read: false,
                    note: Some("not present".into()),
                });
            }
            Err(e) => return Err(usage(format!("{origin}: {e}"))),
        }
    }
    if !sources.iter().any(|s| s.read) {
        let names: Vec<&str> = FILES.iter().map(|(_, f)| *f).collect();
        return Err(usage(format!(
            "--from: {} holds none of {}",
            dir.display(),
            names.join(", ")
        )));
    }
    Ok((inputs, sources))
}

/// Run one tool; `Ok(None)` when it is not installed.
fn capture(cmd: &[&str], with_stderr: bool) -> anyhow::Result<Option<Result<Vec<u8>, String>>> {
    let Some((prog, rest)) = cmd.split_first() else {
        return Ok(None);
    };
    match Command::new(prog).args(rest).output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("running {}", cmd.join(" "))),
        Ok(out) => {
            let mut bytes = out.stdout;
            if with_stderr {
                bytes.extend_from_slice(&out.stderr);
                return Ok(Some(Ok(bytes)));
            }
            if out.status.success() {
                Ok(Some(Ok(bytes)))
            } else {
                let err = String::from_utf8_lossy(&out.stderr);
                let first = err.lines().next().unwrap_or("").trim().to_owned();
                Ok(Some(Err(format!("exited with {}: {first}", out.status))))
            }
        }
    }
}

fn read_live(iface: &str) -> anyhow::Result<(Inputs, Vec<SourceInfo>)> {
    let zone_flag = format!("--get-zone-of-interface={iface}");
    let cmds: [(&str, Vec<&str>, bool); 5] = [
        ("nft", vec!["nft", "-j", "list", "ruleset"], false),
        ("iptables", vec!["iptables-save"], false),
        ("ip6tables", vec!["ip6tables-save"], false),
        ("ufw", vec!["ufw", "status", "verbose"], false),
        // firewall-cmd exits non-zero for "no zone" and "not running": both are answers.
        ("firewalld", vec!["firewall-cmd", zone_flag.as_str()], true),
    ];
    let mut inputs = Inputs::default();
    let mut sources = Vec::new();
    for (name, cmd, with_stderr) in cmds {
        let origin = cmd.join(" ");
        let (read, note) = match capture(&cmd, with_stderr)? {
            None => (false, Some("not installed".to_owned())),
            Some(Err(why)) => (false, Some(why)),
            Some(Ok(bytes)) => match parse_into(&mut inputs, name, &bytes) {
                Ok(()) => (true, None),
                Err(e) => return Err(anyhow::anyhow!("output of `{origin}`: {e}")),
            },
        };
        sources.push(SourceInfo {
            name,
            origin,
            read,
            note,
        });
    }
    Ok((inputs, sources))
}

fn label(s: Status) -> &'static str {
    match s {
        Status::Ok => "OK",
        Status::Blocked => "BLOCKED",
        Status::Uncertain => "UNCERTAIN",
        // The diagnosis's degraded: blocked, but it matters only in some setups.
        Status::Degraded => "ADVISORY",
        Status::Skipped => "INFO",
    }
}

fn print_human(report: &Report, sources: &[SourceInfo]) {
    println!(
        "host firewall for {} (VPN subnet {})",
        report.interface, report.subnet
    );
    let read: Vec<&str> = sources
        .iter()
        .filter(|s| s.read)
        .map(|s| s.origin.as_str())
        .collect();
    println!(
        "read: {}",
        if read.is_empty() {
            "nothing".to_owned()
        } else {
            read.join(", ")
        }
    );
    for s in sources.iter().filter(|s| !s.read) {
        println!(
            "not read: {} ({})",
            s.origin,
            s.note.as_deref().unwrap_or("?")
        );
    }
    println!();
    for f in &report.findings {
        let verdict = f.verdict.map(|v| format!(": {v}")).unwrap_or_default();
        println!("{:<9} {}{verdict}", label(f.status), f.subject);
        if let Some(d) = &f.deciding {
            println!("          decided by {d}");
        }
        for u in &f.uncertain_rules {
            println!("          undecided: {u}");
        }
        if let Some(fix) = &f.fix {
            for c in &fix.commands {
                println!("          fix: {c}");
            }
            if let Some(c) = &fix.caveat {
                println!("          note: {c}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(
            parse_range("49152-65535"),
            Some(PortRange {
                start: 49152,
                end: 65535
            })
        );
        assert_eq!(parse_range("51820"), Some(PortRange::single(51820)));
        assert_eq!(parse_range("2:1"), None);
        assert_eq!(parse_range("x"), None);
    }
}
