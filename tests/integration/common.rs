//! Process helpers: spawn `stunmap serve` and coturn on loopback, find free ports, run the CLI.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_stunmap")
}

/// Run the CLI to completion (bounded by `timeout` seconds through coreutils `timeout`).
pub(crate) fn stunmap(args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("60")
        .arg(bin())
        .args(args)
        .output()
        .expect("run stunmap")
}

pub(crate) fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A port free for UDP and TCP on `ip` right now (the small race with other processes is
/// acceptable on a test machine).
pub(crate) fn free_port(ip: &str) -> u16 {
    for _ in 0..100 {
        let u = UdpSocket::bind((ip, 0)).unwrap();
        let port = u.local_addr().unwrap().port();
        if TcpListener::bind((ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on {ip}");
}

/// `count` consecutive free ports on `ip`.
pub(crate) fn free_port_range(ip: &str, count: u16) -> u16 {
    'outer: for _ in 0..200 {
        let base = free_port(ip);
        if base.checked_add(count).is_none() {
            continue;
        }
        for p in base..base + count {
            if UdpSocket::bind((ip, p)).is_err() || TcpListener::bind((ip, p)).is_err() {
                continue 'outer;
            }
        }
        return base;
    }
    panic!("no free range of {count} ports");
}

/// A child process killed on drop.
pub(crate) struct Guard(pub(crate) Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `stunmap serve` with `args` and wait for its "listening" line.
pub(crate) fn serve(args: &[&str]) -> Guard {
    let mut child = Command::new(bin())
        .arg("serve")
        .args(args)
        .args(["--duration", "120"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let stderr = child.stderr.take().unwrap();
    let mut line = String::new();
    BufReader::new(stderr).read_line(&mut line).unwrap();
    assert!(line.contains("listening"), "serve did not start: {line}");
    Guard(child)
}

/// Whether a tool is installed. In CI (CI=true) a missing tool fails the test instead of
/// skipping it, so a broken install step cannot turn into silent passes.
pub(crate) fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{tool} is required in CI but not installed");
        }
        eprintln!("SKIPPED: {tool} is not installed");
    }
    found
}

/// A coturn server on loopback, in its own temporary directory.
pub(crate) struct Coturn {
    pub(crate) port: u16,
    _guard: Guard,
    pub(crate) dir: PathBuf,
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Start coturn on 127.0.0.1 with a static user `test:secret` in realm `lab`.
pub(crate) fn coturn(extra: &[&str]) -> Coturn {
    let port = free_port("127.0.0.1");
    let dir = std::env::temp_dir().join(format!("stunmap-coturn-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = |f: &str| dir.join(f).display().to_string();
    let mut cmd = Command::new("turnserver");
    cmd.args([
        "-n",
        "--listening-ip=127.0.0.1",
        &format!("--listening-port={port}"),
        "--no-tls",
        "--no-dtls",
        "--no-cli",
        "--fingerprint",
        "--lt-cred-mech",
        "--user=test:secret",
        "--realm=lab",
        "--min-port=49152",
        "--max-port=49999",
        &format!("--userdb={}", p("turndb")),
        &format!("--pidfile={}", p("pid")),
        &format!("--log-file={}", p("log")),
        "--simple-log",
        "--no-stdout-log",
    ])
    .args(extra)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let guard = Guard(cmd.spawn().expect("spawn turnserver"));
    // Ready when it answers a Binding request.
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let req = binding_request();
    let target: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 1500];
    loop {
        probe.send_to(&req, target).unwrap();
        if probe.recv_from(&mut buf).is_ok() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "coturn did not start"
        );
    }
    Coturn {
        port,
        _guard: guard,
        dir,
    }
}

fn binding_request() -> Vec<u8> {
    let mut b = Vec::new();
    probes::stun::encode::BindingRequest {
        transaction_id: probes::stun::TransactionId([7; 12]),
        software: None,
        change_request: None,
        fingerprint: true,
    }
    .encode(&mut b);
    b
}
