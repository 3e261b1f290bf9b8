//! `stunmap host`: does this host's own firewall let VPN traffic in, and is third-party security
//! software filtering beside it?
//!
//! Flags → [`HostPlan`] (validated, no I/O) → execution reads the sources (saved files with
//! `--from DIR`; otherwise the tools on Linux, the NetSecurity cmdlets and Security Center on
//! Windows, and the process list) on a blocking thread → [`probes::hostfw::diagnose`] →
//! [`HostReport`].

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use probes::PortRange;
use probes::finding::Status;
use probes::hostfw::agents::Process as ProcInfo;
use probes::hostfw::sources::{self, Collected, Source};
use probes::hostfw::{FindingKind, Options, Report, diagnose};
use serde::Serialize;

use super::common;
use crate::app::{Command, Ctx, OutputArgs, Report as AppReport, ReportFiles, RunInfo};
use crate::exit::{Outcome, usage};
use crate::report::doc::{Block, Cell, Doc, FixItem, Mark, Section, Tone, columns};
use crate::report::prom;

fn after_help() -> String {
    let mut s = String::from(
        "Without --from, stunmap reads this host: on Linux it runs the tools below (missing ones are\n\
         skipped) and reads the process list from /proc; on Windows it runs the PowerShell cmdlets\n\
         below (as Administrator). With --from DIR it reads saved files instead, any subset:\n",
    );
    for src in sources::SAVED {
        s.push_str(&format!("  {:<34} {}\n", src.file(), src.capture()));
    }
    s.push_str(
        "\nExit status: 0 nothing blocks, 1 a finding blocks traffic, 64 bad flags or unreadable\n\
         files, 130 interrupted. See docs/host.md.",
    );
    s
}

/// Flags of `stunmap host`.
#[derive(Debug, clap::Args)]
#[command(after_help = after_help())]
pub(crate) struct Args {
    /// Tunnel interface of the VPN.
    #[arg(long, default_value = "wt0", value_name = "IF")]
    interface: String,
    /// VPN subnet peers come from.
    #[arg(long, default_value = "100.64.0.0/10", value_name = "CIDR")]
    subnet: String,
    /// Read saved outputs from DIR instead of reading this host (file names below).
    #[arg(long, value_name = "DIR")]
    from: Option<PathBuf>,
    /// Service port used for the TCP and UDP checks over the tunnel.
    #[arg(long, default_value_t = 8080, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
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
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    files: ReportFiles,
}

/// Where the sources come from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Origin {
    /// Saved files in a folder.
    Saved(PathBuf),
    /// This Linux host: the tools and `/proc`.
    LiveLinux,
    /// This Windows host: PowerShell.
    LiveWindows,
}

/// A planned host diagnosis.
#[derive(Clone, Debug)]
struct HostPlan {
    opts: Options,
    origin: Origin,
}

fn parse_range(s: &str) -> Option<PortRange> {
    let (a, b) = s.split_once(['-', ':']).unwrap_or((s, s));
    let r = PortRange {
        start: a.trim().parse().ok()?,
        end: b.trim().parse().ok()?,
    };
    (r.start >= 1 && r.start <= r.end).then_some(r)
}

/// An interface name: what Linux accepts (under 16 bytes, no `/`, space or NUL); Windows
/// aliases may be longer ("Ethernet 2") and contain spaces, but stunmap only compares them.
fn valid_iface(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && !s.contains(['/', '\0', '"']) && !s.contains(char::is_control)
}

fn plan(args: &Args) -> anyhow::Result<HostPlan> {
    let subnet = super::common::parse_subnet(&args.subnet)?;
    let wg_range = parse_range(&args.wg_ports).ok_or_else(|| {
        usage(format!(
            "--wg-ports: expected LO-HI within 1-65535, got {}",
            crate::report::doc::quoted(&args.wg_ports)
        ))
    })?;
    if !valid_iface(&args.interface) {
        return Err(usage(format!(
            "--interface: not an interface name: {}",
            crate::report::doc::quoted(&args.interface)
        )));
    }
    if let Some(u) = &args.uplink
        && !valid_iface(u)
    {
        return Err(usage(format!(
            "--uplink: not an interface name: {}",
            crate::report::doc::quoted(u)
        )));
    }
    let origin = match &args.from {
        Some(dir) => Origin::Saved(dir.clone()),
        None if cfg!(windows) => Origin::LiveWindows,
        None => Origin::LiveLinux,
    };
    Ok(HostPlan {
        opts: Options {
            interface: args.interface.clone(),
            subnet,
            service_port: args.port,
            wg_range,
            wg_port: args.wg_port,
            uplink: args.uplink.clone(),
            flat_network: args.flat_network,
        },
        origin,
    })
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    let plan = plan(&args)?;
    crate::app::run(plan, &args.output, &args.files, "sources")
}

/// One place a source was (or was not) read from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
struct SourceInfo {
    name: &'static str,
    origin: String,
    read: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

/// The report of `stunmap host` (schema `stunmap.host/1`).
#[derive(Debug, Serialize)]
pub(crate) struct HostReport {
    /// Every source, read or not, in order.
    sources: Vec<SourceInfo>,
    #[serde(flatten)]
    report: Report,
    /// What could not be judged, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
}

impl Command for HostPlan {
    type Report = HostReport;

    async fn execute(self, ctx: Ctx) -> anyhow::Result<HostReport> {
        ctx.plan(1);
        let opts = self.opts.clone();
        let origin = self.origin.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_tools = Arc::clone(&stop);
        let mut read =
            tokio::task::spawn_blocking(move || collect(&origin, &opts.interface, &stop_tools));
        tokio::select! {
            r = &mut read => {
                let (collected, sources, notes) = r.context("reading the sources")??;
                ctx.advance(1);
                Ok(HostReport {
                    sources,
                    report: diagnose(&collected.finish(), &self.opts),
                    notes,
                })
            }
            _ = ctx.cancel.cancelled() => {
                // The running tools are killed at their next poll; wait for that (briefly) so
                // none outlives the run.
                stop.store(true, Ordering::Relaxed);
                let _ = tokio::time::timeout(STOP_GRACE, read).await;
                Ok(HostReport {
                    sources: Vec::new(),
                    report: diagnose(&Default::default(), &self.opts),
                    notes: vec!["stopped before the sources were read".into()],
                })
            }
        }
    }
}

/// Largest source read (a host with many container rules has a large ruleset).
const MAX_SOURCE: u64 = 64 << 20;
/// How long one tool may run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopped run waits for its tools to be killed.
const STOP_GRACE: Duration = Duration::from_secs(1);

type Collection = (Collected, Vec<SourceInfo>, Vec<String>);

/// Read every source; `stop` kills the tools still running.
fn collect(origin: &Origin, iface: &str, stop: &AtomicBool) -> anyhow::Result<Collection> {
    match origin {
        Origin::Saved(dir) => read_dir(dir),
        Origin::LiveLinux => Ok(read_live_linux(iface, stop)),
        Origin::LiveWindows => Ok(read_live_windows(&powershell_program(), stop)),
    }
}

fn read_dir(dir: &Path) -> anyhow::Result<Collection> {
    if !dir.is_dir() {
        return Err(usage(format!(
            "--from: {} is not a directory",
            dir.display()
        )));
    }
    let mut c = Collected::default();
    let mut infos = Vec::new();
    for src in sources::SAVED {
        let path = dir.join(src.file());
        let origin = path.display().to_string();
        if std::fs::symlink_metadata(&path).is_err() {
            infos.push(SourceInfo {
                name: src.name(),
                origin,
                read: false,
                note: Some("not present".into()),
            });
            continue;
        }
        // A FIFO or device would block the read or never end.
        if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            return Err(usage(format!("--from {origin}: not a regular file")));
        }
        let bytes = common::read_file("--from", &path, MAX_SOURCE)?;
        c.add(src, &bytes)
            .map_err(|e| usage(format!("{origin}: {e}")))?;
        infos.push(SourceInfo {
            name: src.name(),
            origin,
            read: true,
            note: None,
        });
    }
    if !infos.iter().any(|s| s.read) {
        let names: Vec<&str> = sources::SAVED.iter().map(|s| s.file()).collect();
        return Err(usage(format!(
            "--from: {} holds none of {}",
            dir.display(),
            names.join(", ")
        )));
    }
    let missing = c.missing_filters();
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|s| s.file()).collect();
        return Err(usage(format!(
            "--from: {} has {} but not {}: a rule's conditions are in those files",
            dir.display(),
            Source::WindowsRules.file(),
            names.join(", ")
        )));
    }
    Ok((c, infos, Vec::new()))
}

/// What running a tool gave.
#[derive(Debug)]
enum ToolRun {
    /// Not installed.
    Missing,
    /// Ran but gave no answer: why, in one line.
    Failed(String),
    /// Its output.
    Output(Vec<u8>),
}

/// Run `program args` with a deadline, stdout read up to [`MAX_SOURCE`]; killed when `stop` is
/// set. With `with_stderr`, a failing exit is an answer too (firewall-cmd says "no zone" that
/// way) and stderr is appended to the output.
fn run_tool(
    program: &Path,
    args: &[&str],
    with_stderr: bool,
    timeout: Duration,
    stop: &AtomicBool,
) -> ToolRun {
    use crate::tool::NotRan;
    let ran = match crate::tool::run(program, args, MAX_SOURCE + 1, 64 << 10, timeout, stop) {
        Ok(r) => r,
        Err(NotRan::Spawn(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return ToolRun::Missing;
        }
        Err(NotRan::Spawn(e) | NotRan::Wait(e)) => return ToolRun::Failed(e.to_string()),
        Err(NotRan::NoPipes) => return ToolRun::Failed("no output pipes".into()),
        Err(NotRan::Stopped) => return ToolRun::Failed("stopped".into()),
        Err(NotRan::TimedOut) => {
            return ToolRun::Failed(format!("did not finish within {} s", timeout.as_secs()));
        }
        Err(NotRan::Read) => return ToolRun::Failed("reading its output failed".into()),
    };
    let (status, mut bytes, errors) = (ran.status, ran.stdout, ran.stderr);
    if bytes.len() as u64 > MAX_SOURCE {
        return ToolRun::Failed(format!("printed more than {} MiB", MAX_SOURCE >> 20));
    }
    if with_stderr {
        bytes.extend_from_slice(&errors);
        return ToolRun::Output(bytes);
    }
    if status.success() {
        ToolRun::Output(bytes)
    } else {
        ToolRun::Failed(format!(
            "exited with {status}: {}",
            crate::tool::first_line(&errors)
        ))
    }
}

/// The command line of a Linux source.
fn linux_command(src: Source, iface: &str) -> Option<(Vec<String>, bool)> {
    let v = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    Some(match src {
        Source::Nft => (v(&["nft", "-j", "list", "ruleset"]), false),
        Source::Iptables => (v(&["iptables-save"]), false),
        Source::Ip6tables => (v(&["ip6tables-save"]), false),
        Source::Ufw => (v(&["ufw", "status", "verbose"]), false),
        // firewall-cmd exits non-zero for "no zone" and "not running": both are answers.
        Source::Firewalld => (
            vec![
                "firewall-cmd".to_owned(),
                format!("--get-zone-of-interface={iface}"),
            ],
            true,
        ),
        _ => return None,
    })
}

/// One tool to run for a source: the command as the report shows it, the program, its
/// arguments, and whether stderr is part of the answer.
struct Tool {
    source: Source,
    origin: String,
    program: PathBuf,
    args: Vec<String>,
    with_stderr: bool,
}

/// Run every tool of `list` at once and read each answer into `c`; the infos in list order.
/// Returns a note for each answer that could not be read.
fn run_all(
    c: &mut Collected,
    list: Vec<Tool>,
    infos: &mut Vec<SourceInfo>,
    stop: &AtomicBool,
) -> Vec<String> {
    let runs: Vec<(Source, String, ToolRun)> = std::thread::scope(|s| {
        let handles: Vec<_> = list
            .iter()
            .map(|t| {
                s.spawn(move || {
                    let args: Vec<&str> = t.args.iter().map(String::as_str).collect();
                    run_tool(&t.program, &args, t.with_stderr, TOOL_TIMEOUT, stop)
                })
            })
            .collect();
        list.iter()
            .zip(handles)
            .map(|(t, h)| {
                let run = h
                    .join()
                    .unwrap_or_else(|_| ToolRun::Failed("its reader failed".into()));
                (t.source, t.origin.clone(), run)
            })
            .collect()
    });
    let mut unread = Vec::new();
    for (src, origin, run) in runs {
        let (read, note) = match run {
            ToolRun::Missing => (false, Some("not installed".to_owned())),
            ToolRun::Failed(why) => (false, Some(why)),
            ToolRun::Output(bytes) => match c.add(src, &bytes) {
                Ok(()) => (true, None),
                Err(e) => {
                    unread.push(format!(
                        "the output of {} could not be read: {e}",
                        src.name()
                    ));
                    (false, Some(format!("unreadable output: {e}")))
                }
            },
        };
        infos.push(SourceInfo {
            name: src.name(),
            origin,
            read,
            note,
        });
    }
    unread
}

fn read_live_linux(iface: &str, stop: &AtomicBool) -> Collection {
    let mut c = Collected::default();
    let mut infos = Vec::new();
    let list = sources::LINUX
        .iter()
        .filter_map(|&source| {
            let (argv, with_stderr) = linux_command(source, iface)?;
            let (prog, args) = argv.split_first()?;
            Some(Tool {
                source,
                origin: argv.join(" "),
                program: PathBuf::from(prog),
                args: args.to_vec(),
                with_stderr,
            })
        })
        .collect();
    let mut notes = run_all(&mut c, list, &mut infos, stop);
    match scan_processes(Path::new("/proc"), sources::MAX_PROCESSES) {
        Ok(procs) => {
            infos.push(SourceInfo {
                name: Source::Processes.name(),
                origin: "/proc".into(),
                read: true,
                note: Some(format!("{} processes", procs.len())),
            });
            c.set_processes(procs);
        }
        Err(e) => {
            infos.push(SourceInfo {
                name: Source::Processes.name(),
                origin: "/proc".into(),
                read: false,
                note: Some(e.to_string()),
            });
            notes.push(
                "the process list could not be read: endpoint agents were not looked for".into(),
            );
        }
    }
    (c, infos, notes)
}

/// The processes under `proc` (Linux `/proc`): `comm`, the first word of `cmdline` and the
/// `exe` link where readable, at most `limit` processes, each file read up to a few KiB.
fn scan_processes(proc: &Path, limit: usize) -> std::io::Result<Vec<ProcInfo>> {
    let read = |p: PathBuf, cap: u64| -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        std::fs::File::open(p)
            .ok()?
            .take(cap)
            .read_to_end(&mut buf)
            .ok()?;
        Some(buf)
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(proc)? {
        if out.len() >= limit {
            break;
        }
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        // A process that exited in between is simply gone.
        let Some(comm) = read(dir.join("comm"), 64) else {
            continue;
        };
        let argv0 = read(dir.join("cmdline"), 4096).and_then(|b| {
            let first = b.split(|&c| c == 0).next()?;
            (!first.is_empty()).then(|| String::from_utf8_lossy(first).into_owned())
        });
        let exe = std::fs::read_link(dir.join("exe"))
            .ok()
            .map(|p| p.display().to_string());
        out.push(ProcInfo {
            pid,
            comm: String::from_utf8_lossy(&comm).trim_end().to_owned(),
            argv0,
            exe,
        });
    }
    out.sort_by_key(|p| p.pid);
    Ok(out)
}

/// Windows PowerShell: the system's own copy (not whatever `powershell` a PATH finds).
fn powershell_program() -> PathBuf {
    std::env::var_os("SystemRoot")
        .map(|root| {
            Path::new(&root)
                .join("System32")
                .join("WindowsPowerShell")
                .join("v1.0")
                .join("powershell.exe")
        })
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("powershell.exe"))
}

/// The script PowerShell runs for `src`: errors stop it (a failure is a non-zero exit, not
/// half a document), output is UTF-8 without a byte-order mark.
fn powershell_script(src: Source) -> Option<String> {
    Some(format!(
        "$ErrorActionPreference = 'Stop'; [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false; {}",
        src.powershell()?
    ))
}

fn read_live_windows(program: &Path, stop: &AtomicBool) -> Collection {
    let mut c = Collected::default();
    let mut infos = Vec::new();
    let list = sources::WINDOWS
        .iter()
        .filter_map(|&source| {
            let script = powershell_script(source)?;
            let args = [
                "-NoProfile",
                "-NonInteractive",
                "-ExecutionPolicy",
                "Bypass",
                "-Command",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .chain([script])
            .collect();
            Some(Tool {
                source,
                origin: source.powershell()?.to_owned(),
                program: program.to_owned(),
                args,
                with_stderr: false,
            })
        })
        .collect();
    let mut notes = run_all(&mut c, list, &mut infos, stop);
    let missing = c.missing_filters();
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|s| s.name()).collect();
        notes.push(format!(
            "the firewall rules were read but not their {} conditions: the rules were not judged",
            names.join(", ")
        ));
        c.drop_windows_rules();
    }
    if infos
        .iter()
        .any(|s| s.name.starts_with("windows-") && s.name.ends_with("-products") && !s.read)
    {
        notes.push(
            "Windows Security Center could not be read (Windows Server has no root/SecurityCenter2): third-party security software was not looked for".into(),
        );
    }
    (c, infos, notes)
}

/// The mark of a host firewall finding: a degraded one is advisory, a skipped one
/// informational.
pub(crate) fn status_mark(s: Status) -> Mark {
    match s {
        Status::Ok => Mark::new("ok", Tone::Good),
        Status::Skipped => Mark::new("info", Tone::Neutral),
        Status::Uncertain => Mark::new("uncertain", Tone::Warn),
        // The diagnosis's degraded: blocked, but it matters only in some setups.
        Status::Degraded => Mark::new("advisory", Tone::Warn),
        Status::Blocked => Mark::new("blocked", Tone::Bad),
    }
}

impl HostReport {
    fn worst(&self) -> Status {
        self.report
            .findings
            .iter()
            .map(|f| f.status)
            .max()
            .unwrap_or(Status::Skipped)
    }

    fn count(&self, s: Status) -> usize {
        self.report
            .findings
            .iter()
            .filter(|f| f.status == s)
            .count()
    }
}

impl AppReport for HostReport {
    const SCHEMA: &'static str = "stunmap.host/1";

    fn outcome(&self) -> Outcome {
        if self.report.blocked {
            Outcome::Degraded
        } else {
            Outcome::Ok
        }
    }

    fn document(&self, _run: &RunInfo) -> Doc {
        let r = &self.report;
        let blocked = self.count(Status::Blocked);
        let uncertain = self.count(Status::Uncertain);
        let headline = if blocked > 0 {
            format!(
                "{blocked} finding{} block{} new inbound traffic on {} (VPN subnet {})",
                if blocked == 1 { "" } else { "s" },
                if blocked == 1 { "s" } else { "" },
                r.interface,
                r.subnet
            )
        } else if uncertain > 0 {
            format!(
                "nothing blocks in the rules read for {} (VPN subnet {}); {uncertain} finding{} cannot be decided from here",
                r.interface,
                r.subnet,
                if uncertain == 1 { "" } else { "s" }
            )
        } else {
            format!(
                "nothing blocks new inbound traffic on {} (VPN subnet {}) in the rules read",
                r.interface, r.subnet
            )
        };
        let mut doc = Doc::new("stunmap host", headline);
        doc.mark = Some(match self.worst() {
            Status::Blocked => Mark::new("blocked", Tone::Bad),
            Status::Uncertain | Status::Degraded => Mark::new("check", Tone::Warn),
            Status::Ok => Mark::new("ok", Tone::Good),
            Status::Skipped => Mark::new("nothing read", Tone::Neutral),
        });
        doc.summary.push(crate::report::doc::read_line(
            self.sources.iter().filter(|s| s.read).map(|s| s.name),
        ));
        doc.summary.extend(self.notes.iter().cloned());

        let firewall: Vec<_> = r
            .findings
            .iter()
            .filter(|f| f.kind != FindingKind::SecuritySoftware)
            .collect();
        let software: Vec<_> = r
            .findings
            .iter()
            .filter(|f| f.kind == FindingKind::SecuritySoftware)
            .collect();
        let rows = |list: &[&probes::hostfw::FirewallFinding]| -> Vec<Vec<Cell>> {
            list.iter()
                .map(|f| {
                    let verdict = f.verdict.map(|v| format!(": {v}")).unwrap_or_default();
                    let mut detail = Vec::new();
                    if let Some(d) = &f.deciding {
                        detail.push(format!("decided by {d}"));
                    }
                    detail.extend(f.uncertain_rules.iter().map(|u| format!("undecided: {u}")));
                    vec![
                        Cell::Mark(status_mark(f.status)),
                        Cell::from(format!("{}{verdict}", f.subject)),
                        Cell::from(detail.join("; ")),
                    ]
                })
                .collect()
        };
        let header = columns(["status", "finding", "detail"]);
        doc.push(Section::new("Host firewall").block(Block::Table {
            header: header.clone(),
            rows: rows(&firewall),
        }));
        doc.push(Section::new("Security software").block(Block::Table {
            header,
            rows: rows(&software),
        }));
        // Findings with the same fix (TCP and UDP on the tunnel) list it once.
        let mut fixes: Vec<FixItem> = Vec::new();
        for f in r.findings.iter().filter_map(|f| f.fix.as_ref()) {
            if fixes
                .iter()
                .any(|g| g.title == f.title && g.commands == f.commands)
            {
                continue;
            }
            fixes.push(FixItem::from(f));
        }
        doc.push(Section::new("Fixes").block(Block::Fixes(fixes)));
        let mut src = Section::new("Sources");
        src.push(Block::Table {
            header: columns(["source", "read", "from"]),
            rows: self
                .sources
                .iter()
                .map(|s| {
                    vec![
                        Cell::from(s.name),
                        Cell::from(match (&s.read, &s.note) {
                            (true, None) => "yes".to_owned(),
                            (true, Some(n)) => format!("yes ({n})"),
                            (false, n) => format!("no ({})", n.as_deref().unwrap_or("?")),
                        }),
                        Cell::from(s.origin.as_str()),
                    ]
                })
                .collect(),
        });
        doc.push(src);
        doc
    }

    fn metrics(&self, _run: &RunInfo, w: &mut prom::Writer) -> bool {
        w.gauge(
            "stunmap_host_blocked",
            "1 when a host firewall finding blocks new inbound VPN traffic",
            &[("interface", &self.report.interface)],
            prom::flag(self.report.blocked),
        );
        w.family(
            "stunmap_host_findings",
            "gauge",
            "Findings of the host firewall diagnosis by status",
        );
        for s in [
            Status::Ok,
            Status::Skipped,
            Status::Uncertain,
            Status::Degraded,
            Status::Blocked,
        ] {
            w.sample(
                "stunmap_host_findings",
                &[("status", &s.to_string())],
                self.count(s) as f64,
            );
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

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
        assert_eq!(parse_range("0-10"), None);
        assert_eq!(parse_range("x"), None);
    }

    #[test]
    fn interface_names() {
        assert!(valid_iface("wt0"));
        assert!(valid_iface("Ethernet 2"));
        assert!(!valid_iface(""));
        assert!(!valid_iface("a/b"));
        assert!(!valid_iface("a\u{1b}[2J"));
        assert!(!valid_iface(&"x".repeat(65)));
    }

    /// A process started as a known agent (`exec -a` sets its argv[0]) is found in /proc.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_process_named_like_an_agent_is_found() {
        let Ok(mut child) = std::process::Command::new("bash")
            .args(["-c", "exec -a /opt/CrowdStrike/falcond sleep 30"])
            .spawn()
        else {
            // No bash: nothing to start the fake agent with.
            return;
        };
        let pid = child.id();
        let mut found = None;
        for _ in 0..100 {
            let procs = scan_processes(Path::new("/proc"), sources::MAX_PROCESSES)
                .unwrap_or_else(|e| unreachable!("{e}"));
            if let Some(p) = procs.iter().find(|p| p.pid == pid)
                && p.argv0.as_deref() == Some("/opt/CrowdStrike/falcond")
            {
                found = Some(p.clone());
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        let p = found.unwrap_or_else(|| unreachable!("pid {pid} not seen with its argv[0]"));
        let agents = probes::hostfw::agents::detect(&[p], &Default::default());
        assert_eq!(agents.len(), 1);
        assert_eq!(agents[0].product, "CrowdStrike Falcon");
        assert_eq!(agents[0].processes, [format!("falcond (pid {pid})")]);
    }

    /// The Windows live read, end to end, with a stand-in for PowerShell that prints the saved
    /// cmdlet output each script asks for.
    #[cfg(unix)]
    #[test]
    fn the_windows_live_read_runs_each_cmdlet_and_parses_its_json() {
        use std::os::unix::fs::PermissionsExt as _;
        let fixtures = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/probes/tests/fixtures/hostfw/windows-problems"
        );
        let dir = std::env::temp_dir().join(format!("stunmap-host-ps-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| unreachable!("{e}"));
        let fake = dir.join("powershell.exe");
        let mut script = String::from(
            "#!/bin/sh\n[ \"$1 $2 $3 $4 $5\" = \"-NoProfile -NonInteractive -ExecutionPolicy Bypass -Command\" ] || exit 9\ncase \"$6\" in\n",
        );
        for src in sources::WINDOWS {
            let cmdlet = src
                .powershell()
                .and_then(|p| p.split(" |").next())
                .unwrap_or_default();
            script.push_str(&format!(
                "  *\"{cmdlet} \"*) exec cat '{fixtures}/{}' ;;\n",
                src.file()
            ));
        }
        script.push_str("esac\nexit 3\n");
        std::fs::write(&fake, script).unwrap_or_else(|e| unreachable!("{e}"));
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| unreachable!("{e}"));
        let (c, infos, notes) = read_live_windows(&fake, &AtomicBool::new(false));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(infos.iter().all(|s| s.read), "{infos:#?}");
        assert_eq!(infos.len(), sources::WINDOWS.len());
        assert!(
            infos[0]
                .origin
                .starts_with("Get-NetFirewallRule -PolicyStore ActiveStore")
        );
        assert!(notes.is_empty(), "{notes:?}");
        // `stunmap host`'s defaults: wt0, 100.64.0.0/10, 8080, 49152-65535, 51820.
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let args = <Cli as clap::Parser>::try_parse_from(["host"])
            .unwrap_or_else(|e| unreachable!("{e}"))
            .args;
        let opts = plan(&args).unwrap_or_else(|e| unreachable!("{e}")).opts;
        let r = diagnose(&c.finish(), &opts);
        assert!(r.blocked);
        assert!(
            r.findings
                .iter()
                .any(|f| f.kind == FindingKind::SecuritySoftware && f.subject.contains("ESET"))
        );
    }

    /// A tool still running when the run is stopped is killed, not waited for.
    #[cfg(unix)]
    #[test]
    fn a_stopped_run_kills_its_tool() {
        let started = Instant::now();
        let run = run_tool(
            Path::new("sleep"),
            &["30"],
            false,
            TOOL_TIMEOUT,
            &AtomicBool::new(true),
        );
        assert!(
            matches!(&run, ToolRun::Failed(why) if why == "stopped"),
            "{run:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_failing_filter_cmdlet_leaves_the_rules_unjudged() {
        let mut c = Collected::default();
        c.add(
            Source::WindowsRules,
            br#"{"InstanceID":"a","DisplayName":"a","Enabled":1,"Direction":1,"Action":2,"Profile":0}"#,
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(c.missing_filters().len(), 4);
        c.drop_windows_rules();
        assert!(c.finish().windows.is_none());
    }
}
