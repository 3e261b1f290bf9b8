//! Process helpers: spawn `stunmap serve` and coturn on loopback, find free ports, run the CLI.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
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

/// Validate a report against its schema file in docs/schema/ (e.g. "check-v1.json").
pub(crate) fn validate(schema_file: &str, v: &serde_json::Value) {
    let path = format!("{}/docs/schema/{schema_file}", env!("CARGO_MANIFEST_DIR"));
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(v)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{schema_file} violations: {errors:#?}\n{v:#}"
    );
}

/// The lowest port handed out; the highest is just under Linux's default ephemeral range.
const FIRST_TEST_PORT: u16 = 10_000;
const LAST_TEST_PORT: u16 = 32_767;

/// The first of the next `count` candidate ports of this process: a per-process start (the
/// pid) and one counter, so no two calls in this process hand out the same port. `None` when
/// the block would wrap past the last test port (the caller draws again).
fn next_test_ports(count: u16) -> Option<u16> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(u32::MAX);
    let span = u32::from(LAST_TEST_PORT - FIRST_TEST_PORT) + 1;
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(97) % span,
        std::sync::atomic::Ordering::SeqCst,
        std::sync::atomic::Ordering::SeqCst,
    );
    let n = NEXT.fetch_add(u32::from(count), std::sync::atomic::Ordering::SeqCst) % span;
    (n + u32::from(count) <= span).then(|| FIRST_TEST_PORT + n as u16)
}

/// Whether `port` is free for UDP and TCP on every address in `ips`.
fn free_on(ips: &[&str], port: u16) -> bool {
    ips.iter()
        .all(|ip| UdpSocket::bind((*ip, port)).is_ok() && TcpListener::bind((*ip, port)).is_ok())
}

/// A port free for UDP and TCP on `ip` right now, and on 127.0.0.1 and 127.0.0.2 for an IPv4
/// loopback address (an RFC 5780 server binds its ports on both of its addresses). Ports come
/// from below the kernel's ephemeral range, so a socket another test binds to port 0 cannot
/// take one between this check and the server's bind, and each is handed out once per
/// process.
pub(crate) fn free_port(ip: &str) -> u16 {
    let both = ["127.0.0.1", "127.0.0.2"];
    let ips: Vec<&str> = if both.contains(&ip) {
        both.to_vec()
    } else {
        vec![ip]
    };
    free_block(&ips, 1).unwrap_or_else(|| panic!("no free port on {ip}"))
}

/// The first of `count` consecutive ports free on every address in `ips`.
fn free_block(ips: &[&str], count: u16) -> Option<u16> {
    (0..1_000)
        .filter_map(|_| next_test_ports(count))
        .find(|&base| (base..base + count).all(|p| free_on(ips, p)))
}

/// `count` consecutive free ports on `ip` (drawn like [`free_port`]).
pub(crate) fn free_port_range(ip: &str, count: u16) -> u16 {
    free_block(&[ip], count).unwrap_or_else(|| panic!("no free range of {count} ports"))
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
    wait_for_stun(port);
    Coturn {
        port,
        _guard: guard,
        dir,
    }
}

/// Block until a STUN server on 127.0.0.1:`port` answers a Binding request (10 s at most).
fn wait_for_stun(port: u16) {
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
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "coturn did not start"
        );
    }
}

fn binding_request() -> Vec<u8> {
    let mut b = Vec::new();
    probes::stun::encode::BindingRequest {
        transaction_id: probes::stun::TransactionId([7; 12]),
        software: None,
        change_request: None,
        response_port: None,
        fingerprint: true,
    }
    .encode(&mut b);
    b
}

/// Run the CLI with extra environment variables (and without any inherited TURN secrets).
pub(crate) fn stunmap_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.arg("60")
        .arg(bin())
        .args(args)
        .env_remove("STUNMAP_TURN_PASSWORD")
        .env_remove("STUNMAP_TURN_SECRET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run stunmap")
}

/// How a [`TurnLab`] authenticates.
#[derive(Clone, Copy, Debug)]
pub(crate) enum TurnAuth {
    /// lt-cred-mech with the static user `test:secret`, realm `lab`.
    Static,
    /// use-auth-secret (TURN REST) with this shared secret, realm `lab`.
    RestSecret(&'static str),
}

/// A coturn for TURN tests on loopback: UDP and TCP on `port`, TLS on `tls_port` (when
/// openssl is there to make a certificate at test time), loopback peers allowed (the relay
/// tests' peers are on loopback), verbose log to a file so allocations can be audited.
pub(crate) struct TurnLab {
    pub(crate) port: u16,
    pub(crate) tls_port: Option<u16>,
    pub(crate) dir: PathBuf,
    guard: Guard,
}

impl Drop for TurnLab {
    fn drop(&mut self) {
        let _ = self.guard.0.kill();
        let _ = self.guard.0.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Start a [`TurnLab`]. `tls` asks for a TLS listener (needs openssl).
pub(crate) fn coturn_lab(auth: TurnAuth, tls: bool) -> TurnLab {
    coturn_lab_with(auth, tls, true, &[])
}

/// Start a [`TurnLab`] with coturn's default peer policy unless `allow_loopback`, plus `extra`
/// flags (e.g. `--denied-peer-ip=…`).
pub(crate) fn coturn_lab_with(
    auth: TurnAuth,
    tls: bool,
    allow_loopback: bool,
    extra: &[&str],
) -> TurnLab {
    let port = free_port("127.0.0.1");
    let dir = std::env::temp_dir().join(format!("stunmap-turnlab-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = |f: &str| dir.join(f).display().to_string();
    let mut args: Vec<String> = vec![
        "-n".into(),
        "-v".into(),
        "--listening-ip=127.0.0.1".into(),
        format!("--listening-port={port}"),
        "--no-dtls".into(),
        "--no-cli".into(),
        "--fingerprint".into(),
        "--realm=lab".into(),
        "--min-port=49152".into(),
        "--max-port=65000".into(),
        format!("--userdb={}", p("turndb")),
        format!("--pidfile={}", p("pid")),
        format!("--log-file={}", p("log")),
        "--simple-log".into(),
        "--no-stdout-log".into(),
    ];
    if allow_loopback {
        args.push("--allow-loopback-peers".into());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    match auth {
        TurnAuth::Static => {
            args.push("--lt-cred-mech".into());
            args.push("--user=test:secret".into());
        }
        TurnAuth::RestSecret(s) => {
            args.push("--use-auth-secret".into());
            args.push(format!("--static-auth-secret={s}"));
        }
    }
    let tls_port = if tls {
        let tls_port = free_port("127.0.0.1");
        // A self-signed leaf (CA:FALSE) for 127.0.0.1, trusted by the client through --ca-file.
        let ok = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .args(["-keyout", &p("key.pem"), "-out", &p("cert.pem")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run openssl")
            .success();
        assert!(ok, "openssl could not make a certificate");
        args.push(format!("--tls-listening-port={tls_port}"));
        args.push(format!("--cert={}", p("cert.pem")));
        args.push(format!("--pkey={}", p("key.pem")));
        Some(tls_port)
    } else {
        args.push("--no-tls".into());
        None
    };
    let child = Command::new("turnserver")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn turnserver");
    let guard = Guard(child);
    wait_for_stun(port);
    if let Some(tp) = tls_port {
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", tp)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "no TLS listener");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    TurnLab {
        port,
        tls_port,
        dir,
        guard,
    }
}

impl TurnLab {
    pub(crate) fn cert(&self) -> String {
        self.dir.join("cert.pem").display().to_string()
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Sessions (allocations) coturn logged as created, as released by a Refresh with
    /// LIFETIME 0, and as deleted.
    fn sessions(&self) -> (Vec<String>, Vec<String>, Vec<String>) {
        let log = self.log();
        let mut new = Vec::new();
        let mut released = Vec::new();
        let mut deleted = Vec::new();
        for line in log.lines() {
            let Some(rest) = line.split("session ").nth(1) else {
                continue;
            };
            let Some((id, what)) = rest.split_once(": ") else {
                continue;
            };
            if what.starts_with("new,") {
                new.push(id.to_string());
            } else if what.starts_with("refreshed,")
                && what.trim_end().split(", ").any(|f| f == "lifetime=0")
            {
                released.push(id.to_string());
            } else if what.starts_with("delete:") {
                deleted.push(id.to_string());
            }
        }
        (new, released, deleted)
    }

    /// Number of allocations coturn logged as created.
    pub(crate) fn allocations_made(&self) -> usize {
        self.sessions().0.len()
    }

    /// Assert that coturn holds none of our allocations: every allocation it created was
    /// released by our Refresh LIFETIME 0 and then deleted by the server (coturn deletes a
    /// released UDP allocation about a second later; a leaked one would stay for its whole
    /// lifetime).
    pub(crate) fn assert_no_allocations_left(&self) {
        let start = Instant::now();
        loop {
            let (new, released, deleted) = self.sessions();
            let unreleased: Vec<_> = new.iter().filter(|s| !released.contains(s)).collect();
            assert!(
                unreleased.is_empty(),
                "allocations never released with LIFETIME 0: {unreleased:?}\n{}",
                self.log()
            );
            let alive: Vec<_> = new.iter().filter(|s| !deleted.contains(s)).collect();
            if alive.is_empty() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(6),
                "coturn still holds allocations {alive:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
