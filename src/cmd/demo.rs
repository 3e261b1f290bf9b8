//! `stunmap demo`: the whole check against a lab stunmap starts itself on loopback — its own
//! STUN reflector with an RFC 5780 alternate address (127.0.0.1 and 127.0.0.2, two ports) and,
//! where coturn is installed, a TURN server with a generated configuration and credentials —
//! so every section of the report (STUN ports, TURN, the TCP sample, NAT, relay RTT) is filled
//! in. Everything is torn down at the end; the exit status is the check's.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use probes::control::ResolveOverride;
use probes::profile::Profile;
use probes::turn::auth::{Credentials, Password};
use rand::RngCore;

use super::check::TuningArgs;
use crate::app::{OutputArgs, ReportFiles};
use crate::check::Check;
use crate::check::plan::CheckConfig;
use crate::exit::Outcome;

/// Flags of `stunmap demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Do not start coturn even if it is installed.
    #[arg(long)]
    no_turn: bool,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    files: ReportFiles,
}

/// A child process killed on drop.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> Result<u16> {
    for _ in 0..100 {
        let u = UdpSocket::bind("127.0.0.1:0")?;
        let port = u.local_addr()?.port();
        // The neighbour too: coturn also listens on port + 1.
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && port < u16::MAX
            && UdpSocket::bind(("127.0.0.1", port + 1)).is_ok()
            && TcpListener::bind(("127.0.0.1", port + 1)).is_ok()
        {
            return Ok(port);
        }
    }
    bail!("no free port on 127.0.0.1")
}

fn have(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
}

fn start_reflector(port: u16, alt_port: u16) -> Result<Kill> {
    let exe = std::env::current_exe().context("locating the stunmap binary")?;
    let mut child = Command::new(exe)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--alt-address",
            "127.0.0.2",
            "--alt-port",
            &alt_port.to_string(),
        ])
        .args(["--duration", "300"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the reflector")?;
    let mut line = String::new();
    if let Some(err) = child.stderr.take() {
        BufReader::new(err).read_line(&mut line)?;
    }
    let guard = Kill(child);
    if !line.contains("listening") {
        bail!("the reflector did not start: {}", line.trim());
    }
    Ok(guard)
}

/// Answered a STUN Binding request: coturn is up.
fn wait_for_stun(addr: SocketAddr, limit: Duration) -> Result<()> {
    let probe = UdpSocket::bind("127.0.0.1:0")?;
    probe.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut req = Vec::new();
    probes::stun::encode::BindingRequest {
        transaction_id: probes::stun::TransactionId([9; 12]),
        software: None,
        change_request: None,
        response_port: None,
        fingerprint: true,
    }
    .encode(&mut req);
    let start = Instant::now();
    let mut buf = [0u8; 1500];
    while start.elapsed() < limit {
        probe.send_to(&req, addr)?;
        if probe.recv_from(&mut buf).is_ok() {
            return Ok(());
        }
    }
    bail!("coturn did not answer on {addr}")
}

fn start_coturn(dir: &TempDir, port: u16, password: &str) -> Result<Kill> {
    let d = dir.0.display();
    let conf = format!(
        "listening-ip=127.0.0.1\nrelay-ip=127.0.0.1\nlistening-port={port}\n\
         min-port=49152\nmax-port=65000\nlt-cred-mech\nuser=demo:{password}\nrealm=stunmap-demo\n\
         fingerprint\nno-tls\nno-dtls\nno-cli\nallow-loopback-peers\nuserdb={d}/turndb\n\
         pidfile={d}/turnserver.pid\nlog-file={d}/turnserver.log\nsimple-log\nno-stdout-log\n"
    );
    let path = dir.0.join("turnserver.conf");
    std::fs::write(&path, conf)?;
    let child = Command::new("turnserver")
        .arg("-c")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting turnserver")?;
    let guard = Kill(child);
    wait_for_stun(
        SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(10),
    )?;
    Ok(guard)
}

fn demo_profile(stun: u16, turn: Option<u16>) -> Result<Profile> {
    let mut t = format!(
        "version = 1\nname = \"demo\"\ndescription = \"stunmap demo lab on loopback\"\n\n\
         [[service]]\nname = \"P2P (STUN)\"\nkind = \"stun\"\nhosts = [\"stun.demo.stunmap.test\"]\nudp = [{stun}]\n"
    );
    if let Some(p) = turn {
        t.push_str(&format!(
            "\n[[service]]\nname = \"Relay (TURN)\"\nkind = \"turn\"\nhosts = [\"turn.demo.stunmap.test\"]\nudp = [{p}]\ntcp = [\"{p}\", \"{p}-{}\"]\n",
            p.saturating_add(60)
        ));
    }
    Profile::from_toml(&t).context("the demo profile")
}

pub(crate) fn run(args: Args) -> Result<Outcome> {
    let stun = free_port()?;
    let alt = free_port()?;
    let _reflector = start_reflector(stun, alt)?;
    let mut notes = vec![format!(
        "demo lab: stunmap serve on 127.0.0.1:{stun} with alternate 127.0.0.2:{alt}"
    )];
    // mkdtemp: a fresh directory, mode 0700, under a name nobody can guess or prepare.
    let dir = TempDir(
        tempfile::Builder::new()
            .prefix("stunmap-demo-")
            .tempdir()
            .context("cannot create the demo lab's directory")?
            .keep(),
    );
    let mut password_bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut password_bytes);
    let password: String = password_bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut turn = None;
    let mut _coturn = None;
    if args.no_turn {
        notes.push("TURN skipped (--no-turn)".into());
    } else if have("turnserver") {
        let port = free_port()?;
        _coturn = Some(start_coturn(&dir, port, &password)?);
        turn = Some(port);
        notes.push(format!(
            "demo lab: coturn on 127.0.0.1:{port} with a generated user and password"
        ));
    } else {
        notes.push("TURN skipped: coturn (turnserver) is not installed".into());
    }
    notes.push(
        "the demo lab has no management, signal or relay server: `stunmap check` checks the real ones"
            .into(),
    );
    let profile = demo_profile(stun, turn)?;
    let tuning = TuningArgs::default();
    let cfg = CheckConfig {
        profile,
        source: "demo".into(),
        overrides: ["stun", "turn"]
            .iter()
            .map(|n| ResolveOverride {
                name: format!("{n}.demo.stunmap.test"),
                port: None,
                address: [127, 0, 0, 1].into(),
            })
            .collect(),
        // Every name is overridden: no resolver is needed, none is asked.
        nameservers: Vec::new(),
        credentials: turn.map(|_| Credentials::new("demo", Password::new(password.clone()))),
        turn_ca: None,
        extra_roots: Vec::new(),
        proxy: None,
        no_proxy: None,
        timeout: Duration::from_millis(1000),
        sample: 16,
        seed: rand::rng().next_u64(),
        rate: 1000,
        deadline: Duration::from_secs(30),
        relays: Vec::new(),
        rto: Duration::from_millis(100),
        hairpin: tuning.hairpin,
        relay_count: tuning.relay_count,
        notes,
        netbird: None,
        paths: crate::check::plan::PathOptions::default(),
    };
    crate::app::run(Check(cfg), &args.output, &args.files, "checks")
}
