//! `stunmap serve --metrics` cannot be turned against its owner: TURN credentials go only
//! where the module's profile points, `target` is held to an allow-list (loopback denied by
//! default), every header and parameter has a range, authorisation when configured, a
//! descriptor shortage does not end the server, and checks whose clients left are cancelled.
//! Everything on loopback.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use probes::stun::{Class, MessageType, MessageWriter, Method, StunView, attr};

use crate::common::{Guard, bin, free_port};

/// A scratch directory removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!(
            "stunmap-probesrv-{tag}-{}-{}",
            std::process::id(),
            free_port("127.0.0.1")
        ));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `serve --metrics` with its stderr collected.
struct Server {
    guard: Guard,
    port: u16,
    log: Arc<Mutex<String>>,
}

impl Server {
    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn alive(&mut self) -> bool {
        self.guard.0.try_wait().unwrap().is_none()
    }
}

/// Start `serve --metrics 127.0.0.1:PORT` with `args` (through `wrap`, e.g. a shell setting
/// a descriptor limit) and wait for the metrics banner.
fn start_with(args: &[&str], env: &[(&str, &str)], ulimit: Option<u32>) -> Server {
    let port = free_port("127.0.0.1");
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = match ulimit {
        Some(n) => {
            let mut c = Command::new("bash");
            c.arg("-c")
                .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                .arg(bin());
            c
        }
        None => Command::new(bin()),
    };
    cmd.arg("serve")
        .args(["--metrics", &addr, "--duration", "120"])
        .args(args)
        .env_remove("STUNMAP_TURN_PASSWORD")
        .env_remove("STUNMAP_TURN_SECRET")
        .env_remove("STUNMAP_PROBE_TOKEN")
        .env_remove("STUNMAP_PROBE_BASIC_AUTH")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn serve");
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stderr);
            let mut line = String::new();
            let mut told = false;
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                log.lock().unwrap().push_str(&line);
                if !told && line.contains("metrics on http://") {
                    let _ = tx.send(());
                    told = true;
                }
                line.clear();
            }
        });
    }
    let up = rx.recv_timeout(Duration::from_secs(20));
    let guard = Guard(child);
    assert!(up.is_ok(), "serve did not start: {}", log.lock().unwrap());
    Server { guard, port, log }
}

fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
    start_with(args, env, None)
}

/// One HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// Write `request` (a whole request head) and read the answer to the end.
fn exchange(port: u16, request: &str) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    exchange(port, &req)
}

/// The value of a sample `name{labels}` (labels as written, sorted as the server writes
/// them), or `None`.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == series).then(|| v.parse().ok()).flatten()
    })
}

fn metric(port: u16, series: &str) -> f64 {
    let a = get(port, "/metrics", &[]);
    assert_eq!(a.status, 200, "{a:?}");
    sample(&a.body, series).unwrap_or(0.0)
}

/// What a fake TURN server saw in each Allocate request: (USERNAME, MESSAGE-INTEGRITY).
type Seen = Arc<Mutex<Vec<(bool, bool)>>>;

/// A fake TURN server on loopback UDP: every Allocate gets a 401 with REALM and NONCE
/// (RFC 8656 §7.2, RFC 8489 §9.2.4), and what each request carried is recorded.
struct FakeTurn {
    port: u16,
    seen: Seen,
    stop: Arc<AtomicBool>,
}

impl FakeTurn {
    fn start() -> FakeTurn {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let port = sock.local_addr().unwrap().port();
        let seen: Seen = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !st.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(v) = StunView::parse(&buf[..n]) else {
                    continue;
                };
                let ty = v.message_type();
                if ty.method != Method::ALLOCATE || ty.class != Class::Request {
                    continue;
                }
                let kinds: Vec<u16> = v.attributes().map(|(k, _)| k).collect();
                s.lock().unwrap().push((
                    kinds.contains(&attr::USERNAME),
                    kinds.contains(&attr::MESSAGE_INTEGRITY)
                        || kinds.contains(&attr::MESSAGE_INTEGRITY_SHA256),
                ));
                let mut out = Vec::new();
                let mut w = MessageWriter::new(
                    &mut out,
                    MessageType::new(Class::ErrorResponse, Method::ALLOCATE),
                    &v.transaction_id(),
                );
                w.error_code(401, "Unauthorized");
                w.attr(attr::REALM, b"lab.test");
                w.attr(attr::NONCE, b"0123456789abcdef");
                w.fingerprint();
                w.finish();
                let _ = sock.send_to(&out, from);
            }
        });
        FakeTurn { port, seen, stop }
    }

    fn seen(&self) -> Vec<(bool, bool)> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeTurn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn turn_profile(dir: &Dir, name: &str, host: &str, port: u16) -> PathBuf {
    dir.file(
        &format!("{name}.toml"),
        &format!(
            "version = 1\nname = \"{name}\"\n[[service]]\nname = \"Relay (TURN)\"\nkind = \"turn\"\nhosts = [\"{host}\"]\nudp = [{port}]\n"
        ),
    )
}

/// A /probe that points the module's names at `target`: the answer, and what the fake TURN
/// server saw.
fn probe_turn(server: &Server, turn: &FakeTurn, query: &str) -> (Answer, Vec<(bool, bool)>) {
    turn.seen.lock().unwrap().clear();
    let a = get(
        server.port,
        &format!("/probe?{query}"),
        &[("X-Prometheus-Scrape-Timeout-Seconds", "10")],
    );
    assert_eq!(a.status, 200, "{a:?}\n{}", server.log());
    let seen = turn.seen();
    assert!(!seen.is_empty(), "no Allocate arrived: {}", a.body);
    (a, seen)
}

#[test]
fn turn_credentials_go_only_where_the_profile_points() {
    let dir = Dir::new("creds");
    let turn = FakeTurn::start();
    let named = turn_profile(&dir, "lab", "turn.lab.test", turn.port);
    let literal = turn_profile(&dir, "pinned", "127.0.0.1", turn.port);
    let password = "pr0be-s3cret-pw";
    let env = [("STUNMAP_TURN_PASSWORD", password)];
    let common = [
        "--module".to_string(),
        format!("lab={}", named.display()),
        "--module".to_string(),
        format!("pinned={}", literal.display()),
        "--user".to_string(),
        "probe".to_string(),
        "--probe-timeout".to_string(),
        "300".to_string(),
        "--probe-allow".to_string(),
        "127.0.0.0/8".to_string(),
    ];
    let common: Vec<&str> = common.iter().map(String::as_str).collect();

    // A target the profile does not publish: the TURN checks run, unauthenticated.
    let server = start(&common, &env);
    let (a, seen) = probe_turn(&server, &turn, "module=lab&target=127.0.0.1");
    assert!(
        seen.iter().all(|&(user, mi)| !user && !mi),
        "credentials were sent to the requester's target: {seen:?}"
    );
    assert_eq!(
        sample(
            &a.body,
            "stunmap_turn_credentials_withheld{profile=\"lab\"}"
        ),
        Some(1.0),
        "{}",
        a.body
    );
    // The profile's own literal address: credentials go there.
    let (a, seen) = probe_turn(&server, &turn, "module=pinned");
    assert!(
        seen.iter().any(|&(user, mi)| user && mi),
        "the profile's own server got no credentials: {seen:?}"
    );
    assert_eq!(
        sample(
            &a.body,
            "stunmap_turn_credentials_withheld{profile=\"pinned\"}"
        ),
        Some(0.0)
    );
    // A target that is the address the profile publishes: credentials go there too.
    let (_, seen) = probe_turn(&server, &turn, "module=pinned&target=127.0.0.1");
    assert!(seen.iter().any(|&(user, mi)| user && mi), "{seen:?}");
    assert!(!server.log().contains(password));
    drop(server);

    // The operator allows it for the module.
    let mut args = common.clone();
    args.extend(["--probe-credentials-for", "lab"]);
    let server = start(&args, &env);
    let (a, seen) = probe_turn(&server, &turn, "module=lab&target=127.0.0.1");
    assert!(seen.iter().any(|&(user, mi)| user && mi), "{seen:?}");
    assert_eq!(
        sample(
            &a.body,
            "stunmap_turn_credentials_withheld{profile=\"lab\"}"
        ),
        Some(0.0)
    );
    assert!(!a.body.contains(password) && !server.log().contains(password));
    drop(server);

    // A module that is not there is a usage error.
    let out = Command::new(bin())
        .args([
            "serve",
            "--metrics",
            "127.0.0.1:0",
            "--probe-credentials-for",
            "nope",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{out:?}");
}

fn stun_profile(dir: &Dir, name: &str, port: u16) -> PathBuf {
    dir.file(
        &format!("{name}.toml"),
        &format!(
            "version = 1\nname = \"{name}\"\n[[service]]\nname = \"P2P (STUN)\"\nkind = \"stun\"\nhosts = [\"stun.lab.test\"]\nudp = [{port}]\n"
        ),
    )
}

#[test]
fn targets_are_held_to_the_allow_list_and_requests_to_their_ranges() {
    let dir = Dir::new("allow");
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let profile = stun_profile(&dir, "lab", silent.local_addr().unwrap().port());
    let module = format!("lab={}", profile.display());
    let token = "t0ken-for-the-probe-server";
    let token_file = dir.file("token", &format!("{token}\n"));

    // The default: loopback and the rest refused, with a bearer token required.
    let server = start(
        &[
            "--module",
            &module,
            "--probe-token-file",
            token_file.to_str().unwrap(),
        ],
        &[],
    );
    let port = server.port;
    let auth = format!("Bearer {token}");
    let ok = [("Authorization", auth.as_str())];
    let a = get(port, "/metrics", &[]);
    assert_eq!(a.status, 401, "{a:?}");
    assert!(
        a.head
            .to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{a:?}"
    );
    let a = get(port, "/probe?module=lab&target=198.51.100.7", &[]);
    assert_eq!(a.status, 401, "no check without authorisation: {a:?}");
    let a = get(port, "/metrics", &[("Authorization", "Bearer wrong")]);
    assert_eq!(a.status, 401, "{a:?}");
    assert_eq!(get(port, "/metrics", &ok).status, 200);

    let mut refused = vec![
        ("127.0.0.1", "loopback"),
        ("127.9.9.9", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("%5B::1%5D", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "broadcast"),
    ];
    // This host's own addresses, as its interfaces list them.
    let own: Vec<String> = engine::netif::local_addresses()
        .unwrap()
        .iter()
        .filter(|a| match a.address {
            std::net::IpAddr::V4(v) => !v.is_loopback() && !v.is_link_local(),
            std::net::IpAddr::V6(v) => !v.is_loopback() && (v.segments()[0] & 0xffc0) != 0xfe80,
        })
        .map(|a| a.address.to_string())
        .collect();
    for a in &own {
        refused.push((a.as_str(), "own-address"));
    }
    let mut expected: BTreeMap<&str, f64> = BTreeMap::new();
    for (target, reason) in &refused {
        let a = get(port, &format!("/probe?module=lab&target={target}"), &ok);
        assert_eq!(a.status, 403, "{target}: {a:?}");
        assert!(a.body.contains("refused"), "{target}: {a:?}");
        *expected.entry(reason).or_default() += 1.0;
    }
    let m = get(port, "/metrics", &ok).body;
    for (reason, n) in expected {
        assert_eq!(
            sample(
                &m,
                &format!("stunmap_probes_refused_total{{reason=\"{reason}\"}}")
            ),
            Some(n),
            "{reason}: {m}"
        );
    }
    assert_eq!(metric_with(port, &ok, "stunmap_probes_started_total"), 0.0);

    // Every parameter and header has a range; a second copy is refused.
    for (path, headers, status) in [
        ("/probe?module=lab&module=lab", vec![], 400),
        (
            "/probe?module=lab&target=192.0.2.1&target=192.0.2.2",
            vec![],
            400,
        ),
        ("/probe?module=lab&debug=true", vec![], 400),
        ("/probe?module=../../etc", vec![], 400),
        ("/probe?module=nope", vec![], 400),
        ("/probe?target=example.net", vec![], 400),
        ("/metrics?x=1", vec![], 400),
        ("/elsewhere", vec![], 404),
        (
            "/probe?module=lab",
            vec![("X-Prometheus-Scrape-Timeout-Seconds", "1e20")],
            400,
        ),
        (
            "/probe?module=lab",
            vec![("X-Prometheus-Scrape-Timeout-Seconds", "NaN")],
            400,
        ),
        (
            "/probe?module=lab",
            vec![("X-Prometheus-Scrape-Timeout-Seconds", "0")],
            400,
        ),
        (
            "/probe?module=lab",
            vec![("X-Prometheus-Scrape-Timeout-Seconds", "-5")],
            400,
        ),
        (
            "/probe?module=lab",
            vec![
                ("X-Prometheus-Scrape-Timeout-Seconds", "5"),
                ("X-Prometheus-Scrape-Timeout-Seconds", "5"),
            ],
            400,
        ),
    ] {
        let mut h = headers.clone();
        h.push(ok[0]);
        let a = get(port, path, &h);
        assert_eq!(a.status, status, "{path} {headers:?}: {a:?}");
    }
    let a = exchange(
        port,
        &format!(
            "POST /probe HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(a.status, 405, "{a:?}");
    // A head over the limit is hyper's 431, and the server goes on.
    let big = "a".repeat(16 * 1024);
    let a = get(port, "/metrics", &[("X-Big", &big)]);
    assert_eq!(a.status, 431, "{a:?}");
    let mut server = server;
    assert!(server.alive());
    assert_eq!(get(port, "/metrics", &ok).status, 200);
    assert!(!server.log().contains(token), "{}", server.log());
    drop(server);

    // An explicit allow opens loopback (and only what it names); Basic authorisation from
    // the environment.
    let server = start(
        &[
            "--module",
            &module,
            "--probe-allow",
            "127.0.0.0/8",
            "--probe-timeout",
            "200",
        ],
        &[("STUNMAP_PROBE_BASIC_AUTH", "prom:pa55")],
    );
    let basic = [("Authorization", "Basic cHJvbTpwYTU1")];
    let a = get(server.port, "/metrics", &[]);
    assert_eq!(a.status, 401);
    assert!(
        a.head
            .to_ascii_lowercase()
            .contains("www-authenticate: basic"),
        "{a:?}"
    );
    let mut h = basic.to_vec();
    h.push(("X-Prometheus-Scrape-Timeout-Seconds", "2"));
    let a = get(server.port, "/probe?module=lab&target=127.0.0.1", &h);
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.body.contains("probe_success "), "{}", a.body);
    assert!(a.head.contains("text/plain; version=0.0.4"), "{a:?}");
    let a = get(server.port, "/probe?module=lab&target=198.51.100.7", &basic);
    assert_eq!(a.status, 403, "{a:?}");
    assert!(a.body.contains("--probe-allow"), "{a:?}");
}

fn metric_with(port: u16, headers: &[(&str, &str)], series: &str) -> f64 {
    let a = get(port, "/metrics", headers);
    assert_eq!(a.status, 200, "{a:?}");
    sample(&a.body, series).unwrap_or(0.0)
}

fn binding_answered(port: u16) -> bool {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut req = Vec::new();
    probes::stun::encode::BindingRequest {
        transaction_id: probes::stun::TransactionId([9; 12]),
        software: None,
        change_request: None,
        response_port: None,
        fingerprint: true,
    }
    .encode(&mut req);
    s.send_to(&req, ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 512];
    s.recv_from(&mut buf).is_ok()
}

/// Hold `n` idle connections to `port` open.
fn idle_connections(port: u16, n: usize) -> Vec<TcpStream> {
    (0..n)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect()
}

#[test]
fn a_descriptor_shortage_does_not_stop_serve() {
    let stun = free_port("127.0.0.1");
    let listen = format!("127.0.0.1:{stun}");
    // A cap above what the limit allows: accept runs out of descriptors and backs off.
    let mut server = start_with(
        &[
            "--listen",
            &listen,
            "--max-tcp",
            "4",
            "--metrics-max-connections",
            "200",
        ],
        &[],
        Some(100),
    );
    let idle = idle_connections(server.port, 150);
    assert_eq!(idle.len(), 150);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(server.alive(), "serve exited: {}", server.log());
    assert!(
        binding_answered(stun),
        "the reflector went down with the metrics server"
    );
    drop(idle);
    let start = Instant::now();
    let errors = loop {
        let a = get(server.port, "/metrics", &[]);
        if a.status == 200 {
            break sample(&a.body, "stunmap_http_accept_errors_total").unwrap_or(0.0);
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{a:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(errors > 0.0, "the descriptor limit was never reached");
    assert!(
        server.log().contains("Too many open files"),
        "{}",
        server.log()
    );
    // Logged once (a minute's throttle), not once per failure.
    assert_eq!(
        server.log().matches("Too many open files").count(),
        1,
        "{}",
        server.log()
    );
    assert!(server.alive());
    drop(server);

    // The default cap keeps the server within the same limit: no accept fails at all, and
    // it answers once the idle clients go.
    let mut server = start_with(&["--listen", &listen, "--max-tcp", "4"], &[], Some(100));
    let idle = idle_connections(server.port, 150);
    std::thread::sleep(Duration::from_millis(1000));
    assert!(server.alive(), "serve exited: {}", server.log());
    assert!(binding_answered(stun));
    drop(idle);
    assert_eq!(metric(server.port, "stunmap_http_accept_errors_total"), 0.0);
    assert!(server.alive());
}

/// The request head of a /probe.
fn probe_request(query: &str) -> String {
    format!("GET /probe?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
}

/// Wait until `cond` holds on /metrics, at most `limit`.
fn wait_metrics(port: u16, limit: Duration, cond: impl Fn(&str) -> bool) -> (String, Duration) {
    let start = Instant::now();
    loop {
        let body = get(port, "/metrics", &[]).body;
        if cond(&body) {
            return (body, start.elapsed());
        }
        assert!(start.elapsed() < limit, "not reached in {limit:?}:\n{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn abandoned_probes_are_cancelled_and_the_queue_is_bounded() {
    let dir = Dir::new("cancel");
    // A STUN server that never answers: every check runs to its timeouts.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let profile = stun_profile(&dir, "slow", silent.local_addr().unwrap().port());
    let server = start(
        &[
            "--module",
            &format!("slow={}", profile.display()),
            "--probe-allow",
            "127.0.0.0/8",
            "--probe-timeout",
            "10000",
            "--probe-concurrency",
            "4",
            "--probe-queue",
            "16",
        ],
        &[],
    );
    let port = server.port;
    let req = probe_request("module=slow&target=127.0.0.1");
    let clients: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(req.as_bytes()).unwrap();
            s
        })
        .collect();
    let v = |body: &str, series: &str| sample(body, series).unwrap_or(-1.0);
    wait_metrics(port, Duration::from_secs(10), |m| {
        v(m, "stunmap_probes_running") == 4.0 && v(m, "stunmap_probes_queued") == 16.0
    });
    // One more than the queue holds: 503 at once.
    let a = exchange(
        port,
        "GET /probe?module=slow&target=127.0.0.1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(a.status, 503, "{a:?}");
    // Every client leaves.
    drop(clients);
    let (m, took) = wait_metrics(port, Duration::from_secs(5), |m| {
        v(m, "stunmap_probes_running") == 0.0 && v(m, "stunmap_probes_queued") == 0.0
    });
    assert_eq!(v(&m, "stunmap_probes_started_total"), 4.0, "{m}");
    assert_eq!(
        v(&m, "stunmap_probes_cancelled_total{stage=\"running\"}"),
        4.0,
        "{m}"
    );
    assert_eq!(
        v(&m, "stunmap_probes_cancelled_total{stage=\"queued\"}"),
        16.0,
        "{m}"
    );
    assert_eq!(
        v(&m, "stunmap_probes_refused_total{reason=\"queue-full\"}"),
        1.0,
        "{m}"
    );
    assert!(took < Duration::from_secs(3), "cancelled in {took:?}");

    // A stop (SIGTERM) interrupts a running check: its partial result still answers, and
    // serve exits 130 within the grace time.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(probe_request("module=slow&target=127.0.0.1").as_bytes())
        .unwrap();
    wait_metrics(port, Duration::from_secs(5), |m| {
        v(m, "stunmap_probes_running") == 1.0
    });
    let mut server = server;
    let pid = server.guard.0.id().to_string();
    let stopped = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.contains("stunmap_check_interrupted{profile=\"slow\"} 1"),
        "{out}"
    );
    let status = loop {
        if let Some(st) = server.guard.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(6),
            "serve did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130), "{}", server.log());
}
