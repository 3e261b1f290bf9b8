//! One signal path for every command: SIGINT or SIGTERM stops the run at once, the partial
//! report is printed marked interrupted, and the exit status is 130.

use std::io::Read as _;
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{bin, json};

/// Start stunmap with `args`, send `signal` after `after`, and return its output and how long
/// it took to exit after the signal.
fn interrupted(args: &[&str], after: Duration, signal: libc::c_int) -> (Output, Duration) {
    let child = Command::new(bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
    let sent = Instant::now();
    let out = child.wait_with_output().unwrap();
    (out, sent.elapsed())
}

fn assert_interrupted(out: &Output, took: Duration) {
    assert!(took < Duration::from_secs(3), "exit took {took:?}");
    assert_eq!(
        out.status.code(),
        Some(130),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn control_stops_on_sigint_against_a_server_that_never_answers_tls() {
    // Accepts the connection and never sends a byte: the TLS handshake would wait its whole
    // timeout.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        listener.set_nonblocking(false).unwrap();
        for conn in listener.incoming().take(8) {
            match conn {
                Ok(mut c) => {
                    let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
                    let mut b = [0u8; 1];
                    let _ = c.read(&mut b);
                    held.push(c);
                }
                Err(_) => break,
            }
        }
    });
    let target = format!("api.netbird.test:{port}");
    let (out, took) = interrupted(
        &[
            "control",
            "--no-proxy",
            "--resolve",
            "api.netbird.test:127.0.0.1",
            "--management",
            &target,
            "--timeout",
            "30000",
            "--json",
        ],
        Duration::from_millis(600),
        libc::SIGINT,
    );
    assert_interrupted(&out, took);
    let v = json(&out);
    assert_eq!(v["interrupted"], true, "{v:#}");
    assert_eq!(v["exit_code"], 130);
    assert_eq!(v["schema"], "stunmap.control/1");
    crate::common::validate("control-v1.json", &v);
    drop(holder);
}

#[test]
fn bench_stops_on_sigint_with_the_rounds_it_finished() {
    let base = crate::common::free_port_range("127.0.0.1", 20);
    let base = base.to_string();
    let (out, took) = interrupted(
        &[
            "bench",
            "--ports",
            "20",
            "--base-port",
            &base,
            "--count",
            "100000",
            "--rounds",
            "20",
            "--memory",
            "0",
            "--blast",
            "0",
            "--json",
        ],
        Duration::from_millis(800),
        libc::SIGINT,
    );
    assert_interrupted(&out, took);
    let v = json(&out);
    assert_eq!(v["interrupted"], true, "{v:#}");
    assert_eq!(v["schema"], "stunmap.bench/1");
    crate::common::validate("bench-v1.json", &v);
}

#[test]
fn serve_stops_cleanly_on_sigterm_and_sigint_with_its_counters() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let port = crate::common::free_port("127.0.0.1").to_string();
        let listen = format!("127.0.0.1:{port}");
        let (out, took) = interrupted(
            &["serve", "--listen", &listen],
            Duration::from_millis(500),
            signal,
        );
        assert_interrupted(&out, took);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("listening on"), "{err}");
        assert!(
            err.contains("stopped (signal)") && err.contains("UDP requests answered"),
            "{err}"
        );
    }
}

#[test]
fn serve_ends_with_status_0_when_its_duration_is_over() {
    let port = crate::common::free_port("127.0.0.1").to_string();
    let out = crate::common::stunmap(&[
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--duration",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stopped (--duration reached)"), "{err}");
}

/// A TCP listener that accepts and then says nothing (every request waits its whole timeout).
fn silent_tcp() -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let h = std::thread::spawn(move || {
        let mut held = Vec::new();
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until && held.len() < 8 {
            match listener.accept() {
                Ok((c, _)) => held.push(c),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
    });
    (port, h)
}

/// A listener whose accept queue is full and never drained: a new connection's SYN is
/// dropped, so its connect hangs (like a firewall that drops).
fn black_hole() -> (u16, Vec<std::net::TcpStream>, socket2::Socket) {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    s.listen(0).unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    // Fill the queue (backlog 0 holds one); give up after a few.
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(c) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            fillers.push(c);
        }
    }
    (addr.port(), fillers, s)
}

/// The run stops when the signal comes: `limit` after it at most (TURN releases within their
/// drain), exit 130, a partial report marked interrupted that matches `schema`.
fn assert_prompt(args: &[&str], limit: Duration, schema: &str) {
    let (out, took) = interrupted(args, Duration::from_millis(400), libc::SIGINT);
    eprintln!("{args:?}: exit {took:?} after SIGINT");
    assert!(took < limit, "{args:?}: exit took {took:?}");
    assert_interrupted(&out, took);
    let v = json(&out);
    assert_eq!(v["interrupted"], true, "{v:#}");
    assert_eq!(v["exit_code"], 130);
    crate::common::validate(schema, &v);
}

#[test]
fn turn_relay_and_audit_over_a_stream_stop_at_once_while_connecting_or_allocating() {
    // The connect hangs: nothing was sent, so nothing is waited for.
    let (port, _fillers, _hole) = black_hole();
    let uri = format!("turn:127.0.0.1:{port}?transport=tcp");
    assert_prompt(
        &["turn", &uri, "--timeout", "30000", "--json"],
        Duration::from_millis(500),
        "turn-v1.json",
    );
    let tls = format!("turns:127.0.0.1:{port}");
    assert_prompt(
        &["turn", &tls, "--timeout", "30000", "--json"],
        Duration::from_millis(500),
        "turn-v1.json",
    );
    // Connected and the Allocate unanswered: closing the connection ends any allocation the
    // server made on it, so there is nothing to wait for either.
    let (port, h) = silent_tcp();
    let uri = format!("turn:127.0.0.1:{port}?transport=tcp");
    assert_prompt(
        &["turn", &uri, "--timeout", "30000", "--json"],
        Duration::from_millis(500),
        "turn-v1.json",
    );
    assert_prompt(
        &[
            "audit",
            &uri,
            "--timeout",
            "30000",
            "--no-transports",
            "--json",
        ],
        Duration::from_millis(500),
        "audit-v1.json",
    );
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("password");
    std::fs::write(&pw, "not-sent-anywhere\n").unwrap();
    let pw = pw.display().to_string();
    assert_prompt(
        &[
            "relay",
            &uri,
            "--user",
            "u",
            "--password-file",
            &pw,
            "--timeout",
            "30000",
            "--json",
        ],
        Duration::from_millis(500),
        "relay-v1.json",
    );
    drop(h);
}

#[test]
fn stun_over_tcp_stops_at_once_with_transactions_in_flight() {
    let (port, h) = silent_tcp();
    let target = format!("127.0.0.1:{port}");
    assert_prompt(
        &[
            "stun",
            "--tcp",
            &target,
            "--count",
            "3",
            "--timeout",
            "30000",
            "--json",
        ],
        Duration::from_millis(500),
        "stun-v1.json",
    );
    drop(h);
}
