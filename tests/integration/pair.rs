//! `stunmap pair` and `stunmap serve --rendezvous` on loopback: a direct pair validated
//! against docs/schema/pair-v1.json, the offline `--explain`, and bad input — a rendezvous
//! that is down, slow or speaks something else, a peer that never comes, a wrong secret, a
//! full room, a peer that sends garbage or oversized frames, a flood of connections,
//! interruption (with TURN allocations released).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use probes::pair::model::{CandidateKind, Offer, Role, SideReport, TurnSummary, WireCandidate};
use probes::pair::rendezvous::{
    ClientConn, ClientEvent, FrameReader, Nonce, PeerMsg, RendezvousError, RoomSecret,
};
use serde_json::Value;

use crate::common::{Guard, TurnAuth, bin, coturn_lab, free_port, have};

const SECRET: &str = "loopback-pair-secret-0123456789";

struct Server {
    _guard: Guard,
    rendezvous: String,
    stun: String,
    alt: String,
}

/// `stunmap serve` with an RFC 5780 reflector (127.0.0.1 and 127.0.0.2) and the rendezvous.
fn server(extra: &[&str]) -> Server {
    let (sp, ap, rp) = (
        free_port("127.0.0.1"),
        free_port("127.0.0.2"),
        free_port("127.0.0.1"),
    );
    let rendezvous = format!("127.0.0.1:{rp}");
    let mut child = Command::new(bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{sp}")])
        .args(["--alt-address", "127.0.0.2", "--alt-port", &ap.to_string()])
        .args(["--rendezvous", &rendezvous, "--duration", "120"])
        .args(extra)
        .env("STUNMAP_PAIR_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut reflector, mut rv) = (false, false);
    while !(reflector && rv) {
        let line = lines.next().expect("serve exited").unwrap();
        reflector |= line.contains("listening on");
        rv |= line.contains("rendezvous on");
    }
    Server {
        _guard: Guard(child),
        rendezvous,
        stun: format!("127.0.0.1:{sp}"),
        alt: format!("127.0.0.2:{ap}"),
    }
}

fn pair_cmd(rendezvous: &str, room: &str, extra: &[&str]) -> Command {
    let mut c = Command::new("timeout");
    c.args(["60", bin(), "pair", rendezvous, "--room", room])
        .args(extra)
        .env("STUNMAP_PAIR_SECRET", SECRET)
        .env_remove("STUNMAP_TURN_PASSWORD")
        .stdin(Stdio::null());
    c
}

fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}), status {:?}\nstdout: {}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn validate(v: &Value) {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/schema/pair-v1.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(v)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "schema violations: {errors:#?}\n{v:#}");
}

/// Both sides at once; the second starts `delay` after the first.
fn both(a: Command, b: Command, delay: Duration) -> (Output, Output) {
    let mut a = a;
    let mut b = b;
    let ta = thread::spawn(move || a.output().unwrap());
    thread::sleep(delay);
    let ob = b.output().unwrap();
    (ta.join().unwrap(), ob)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn two_peers_on_loopback_connect_directly_and_print_the_same_result() {
    let s = server(&[]);
    let args = [
        "--stun",
        &s.stun,
        "--stun",
        &s.alt,
        "--duration",
        "1",
        "--rto",
        "100",
        "--json",
    ];
    let start = Instant::now();
    let (oa, ob) = both(
        pair_cmd(&s.rendezvous, "loop", &args),
        pair_cmd(&s.rendezvous, "loop", &args),
        Duration::from_millis(200),
    );
    let (va, vb) = (json_of(&oa), json_of(&ob));
    validate(&va);
    validate(&vb);
    assert_eq!(oa.status.code(), Some(0), "{va:#}\n{}", stderr(&oa));
    assert_eq!(ob.status.code(), Some(0), "{vb:#}");
    assert_eq!(va["outcome"], "direct");
    for k in [
        "outcome",
        "selected",
        "a",
        "b",
        "prediction",
        "failed_checks",
        "connect_seconds",
    ] {
        assert_eq!(va[k], vb[k], "{k} differs");
    }
    assert_ne!(va["this_side"], vb["this_side"]);
    assert_eq!(va["selected"]["a"]["kind"], "host");
    let rtt = &va["a"]["rtt"];
    assert!(rtt["sent"].as_u64().unwrap() >= 20, "{rtt}");
    assert_eq!(rtt["loss"], 0.0, "{rtt}");
    assert!(va["b"]["rtt"]["p50_ms"].as_f64().unwrap() < 50.0);
    // Loopback: no NAT on either side, and the model agrees that is direct.
    assert_eq!(va["prediction"]["model"], "direct", "{va:#}");
    assert_eq!(va["prediction"]["agrees"], true);
    assert!(start.elapsed() < Duration::from_secs(20));
    // The human form of the same run.
    let (ha, hb) = both(
        pair_cmd(
            &s.rendezvous,
            "human",
            &["--stun", &s.stun, "--duration", "1"],
        ),
        pair_cmd(
            &s.rendezvous,
            "human",
            &["--stun", &s.stun, "--duration", "1"],
        ),
        Duration::from_millis(200),
    );
    for h in [&ha, &hb] {
        let text = String::from_utf8_lossy(&h.stdout);
        assert!(text.starts_with("DIRECT    host ↔ host"), "{text}");
        assert!(
            text.contains("Selected pair") && text.contains("(this host)"),
            "{text}"
        );
        assert!(!text.contains(SECRET) && !stderr(h).contains(SECRET));
    }
}

#[test]
fn explain_predicts_from_two_nat_reports() {
    let s = server(&[]);
    let out = Command::new("timeout")
        .args([
            "30",
            bin(),
            "nat",
            &s.stun,
            &s.alt,
            "--rto",
            "100",
            "--no-portmap",
            "--json",
        ])
        .output()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("stunmap-explain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("a.json");
    std::fs::write(&f, &out.stdout).unwrap();
    let f = f.to_string_lossy().into_owned();
    let o = Command::new(bin())
        .args(["pair", "--explain", &f, &f, "--json"])
        .output()
        .unwrap();
    let v = json_of(&o);
    validate(&v);
    assert_eq!(v["mode"], "explain");
    assert_eq!(v["prediction"]["model"], "direct", "{v:#}");
    assert_eq!(v["prediction"]["agrees"], Value::Null);
    assert_eq!(o.status.code(), Some(0));
    let o = Command::new(bin())
        .args(["pair", "--explain", &f, &f])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("DIRECT    the model predicts a direct"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // Not a nat report: a usage error, one line.
    let bad = dir.join("bad.json");
    std::fs::write(&bad, b"{\"schema\":\"stunmap.check/1\"}").unwrap();
    let o = Command::new(bin())
        .args(["pair", "--explain", &f, &bad.to_string_lossy()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_flags_are_usage_errors_and_the_secret_never_shows() {
    let cases: Vec<(Vec<&str>, Option<&str>)> = vec![
        (vec!["127.0.0.1:9", "--room", "r"], None),
        (vec!["127.0.0.1:9", "--room", "r"], Some("short")),
        (vec!["127.0.0.1:9", "--room", "a b"], Some(SECRET)),
        (vec!["127.0.0.1", "--room", "r"], Some(SECRET)),
        (
            vec!["127.0.0.1:9", "--room", "r", "--duration", "0"],
            Some(SECRET),
        ),
        (
            vec!["127.0.0.1:9", "--room", "r", "--wait", "100000"],
            Some(SECRET),
        ),
        (
            vec!["127.0.0.1:9", "--room", "r", "--turn", "turn:127.0.0.1"],
            Some(SECRET),
        ),
        (
            vec![
                "127.0.0.1:9",
                "--room",
                "r",
                "--turn",
                "turns:127.0.0.1",
                "--user",
                "u",
            ],
            Some(SECRET),
        ),
        (vec!["--room", "r"], Some(SECRET)),
        // The secret file is read with a cap.
        (
            vec![
                "127.0.0.1:9",
                "--room",
                "r",
                "--pair-secret-file",
                "/dev/zero",
            ],
            None,
        ),
    ];
    for (args, secret) in cases {
        let mut c = Command::new(bin());
        c.arg("pair").args(&args).env_remove("STUNMAP_PAIR_SECRET");
        c.env("STUNMAP_TURN_PASSWORD", "pw");
        if let Some(s) = secret {
            c.env("STUNMAP_PAIR_SECRET", s);
        }
        let o = c.output().unwrap();
        assert_eq!(o.status.code(), Some(64), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains(SECRET));
    }
    // serve --rendezvous without a secret.
    let o = Command::new(bin())
        .args(["serve", "--rendezvous", "127.0.0.1:0"])
        .env_remove("STUNMAP_PAIR_SECRET")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
}

/// A one-line error with exit 70 within `limit`.
fn assert_fails_fast(mut c: Command, limit: Duration, needle: &str) {
    let start = Instant::now();
    let o = c.output().unwrap();
    let took = start.elapsed();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(70), "{err}");
    assert!(took < limit, "took {took:?}: {err}");
    assert!(err.contains(needle), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(!err.contains(SECRET));
}

#[test]
fn a_rendezvous_that_is_down_slow_or_speaks_something_else() {
    // Down: nothing listens.
    let port = free_port("127.0.0.1");
    assert_fails_fast(
        pair_cmd(&format!("127.0.0.1:{port}"), "r", &[]),
        Duration::from_secs(3),
        "cannot connect to the rendezvous",
    );
    // Slow: accepts, never answers.
    let slow = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = slow.local_addr().unwrap().to_string();
    let hold = thread::spawn(move || {
        let held: Vec<TcpStream> = slow.incoming().take(1).flatten().collect();
        thread::sleep(Duration::from_secs(8));
        drop(held);
    });
    assert_fails_fast(
        pair_cmd(&addr, "r", &[]),
        Duration::from_secs(8),
        "did not answer hello",
    );
    let _ = hold.join();
    // Something else: an HTTP server.
    let http = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = http.local_addr().unwrap().to_string();
    let t = thread::spawn(move || {
        if let Some(Ok(mut s)) = http.incoming().next() {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
            thread::sleep(Duration::from_millis(500));
        }
    });
    assert_fails_fast(
        pair_cmd(&addr, "r", &[]),
        Duration::from_secs(3),
        "does not speak the stunmap pair protocol",
    );
    let _ = t.join();
}

#[test]
fn a_peer_that_never_comes_and_a_wrong_secret() {
    let s = server(&[]);
    assert_fails_fast(
        pair_cmd(&s.rendezvous, "lonely", &["--wait", "1"]),
        Duration::from_secs(4),
        "the peer did not join room lonely within 1 s",
    );
    let mut c = pair_cmd(&s.rendezvous, "r", &[]);
    c.env("STUNMAP_PAIR_SECRET", "another-secret-of-some-length");
    assert_fails_fast(c, Duration::from_secs(3), "wrong secret");
}

/// A hand-driven rendezvous client (the test's own, over blocking TCP).
struct Raw {
    tcp: TcpStream,
    conn: ClientConn,
    reader: FrameReader,
}

impl Raw {
    fn connect(addr: &str, room: &str) -> Raw {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let secret = RoomSecret::new(SECRET.as_bytes().to_vec()).unwrap();
        Raw {
            tcp,
            conn: ClientConn::new(&secret, room, Nonce([5; 16])).unwrap(),
            reader: FrameReader::new(),
        }
    }

    fn next(&mut self) -> Result<ClientEvent, RendezvousError> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(b) = self.reader.next_frame().unwrap() {
                return self.conn.handle_frame(&b);
            }
            let n = self.tcp.read(&mut buf).unwrap();
            assert!(n > 0, "closed");
            self.reader.push(&buf[..n]);
        }
    }

    fn join(addr: &str, room: &str) -> (Raw, bool) {
        let mut r = Raw::connect(addr, room);
        let hello = r.conn.hello();
        r.tcp.write_all(&hello).unwrap();
        assert_eq!(r.next(), Ok(ClientEvent::Welcome));
        let join = r.conn.join().unwrap();
        r.tcp.write_all(&join).unwrap();
        match r.next() {
            Ok(ClientEvent::Joined { first }) => (r, first),
            other => panic!("{other:?}"),
        }
    }

    /// Whether the server closed the connection (after at most one more frame).
    fn closed_soon(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        self.tcp
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        for _ in 0..4 {
            match self.tcp.read(&mut buf) {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            }
        }
        false
    }
}

#[test]
fn a_full_room_is_refused() {
    let s = server(&[]);
    let (_a, first) = Raw::join(&s.rendezvous, "full");
    assert!(first);
    let (_b, first) = Raw::join(&s.rendezvous, "full");
    assert!(!first);
    assert_fails_fast(
        pair_cmd(&s.rendezvous, "full", &[]),
        Duration::from_secs(3),
        "the room is full",
    );
}

/// The live run must end on its own, bounded, with a report, when its peer misbehaves.
fn run_against(
    s: &Server,
    room: &str,
    peer: impl FnOnce(Raw) + Send + 'static,
) -> (Output, Duration) {
    run_against_with(s, room, &["--stun", &s.stun, "--json"], peer)
}

/// [`run_against`] with the live side's flags.
fn run_against_with(
    s: &Server,
    room: &str,
    args: &[&str],
    peer: impl FnOnce(Raw) + Send + 'static,
) -> (Output, Duration) {
    let (mut raw, first) = Raw::join(&s.rendezvous, room);
    assert!(first);
    let t = thread::spawn(move || {
        assert_eq!(raw.next(), Ok(ClientEvent::PeerJoined));
        peer(raw);
    });
    let start = Instant::now();
    let o = pair_cmd(&s.rendezvous, room, args).output().unwrap();
    t.join().unwrap();
    (o, start.elapsed())
}

/// A peer that offers one unreachable candidate and reports a TURN error made of escape
/// sequences (a peer's words reach this side's report).
fn hostile_peer(mut raw: Raw) {
    let offer = Offer {
        ufrag: "abcd".into(),
        pwd: "p".repeat(22),
        candidates: vec![WireCandidate {
            kind: CandidateKind::Host,
            address: "192.0.2.1:9".parse().unwrap(),
            priority: 1,
            foundation: "1".into(),
        }],
    };
    let f = raw.conn.signal(PeerMsg::Offer(offer)).unwrap();
    raw.tcp.write_all(&f).unwrap();
    let report = SideReport {
        turn: Some(TurnSummary {
            server: "192.0.2.1:3478".parse().unwrap(),
            relayed: None,
            error: Some(format!("\u{1b}]0;pwned\u{7}\u{1b}[2J{}", "A".repeat(150))),
            released: Some(true),
        }),
        ..SideReport::empty(Role::Controlling)
    };
    let f = raw.conn.signal(PeerMsg::Report(Box::new(report))).unwrap();
    raw.tcp.write_all(&f).unwrap();
    let _ = raw.closed_soon();
}

#[test]
fn a_hostile_peer_report_reaches_no_terminal_or_page_raw() {
    let s = server(&[]);
    let dir = std::env::temp_dir().join(format!("stunmap-pair-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("pair.html");
    let page_arg = page.display().to_string();
    let (o, took) = run_against_with(
        &s,
        "hostile",
        &["--stun", &s.stun, "--timeout", "2", "--html", &page_arg],
        hostile_peer,
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let html = std::fs::read_to_string(&page).unwrap();
    for (what, t) in [("terminal", &text), ("HTML", &html)] {
        assert!(
            !t.contains('\u{1b}') && !t.contains('\u{7}'),
            "{what}: raw control characters:\n{}",
            t.escape_debug()
        );
        assert!(t.contains("\\u{1b}]0;pwned\\u{7}"), "{what}: {t}");
    }
    assert!(
        text.starts_with("FAILED    no candidate pair connected"),
        "{text}"
    );
    let (o, _) = run_against_with(
        &s,
        "hostile-json",
        &["--stun", &s.stun, "--timeout", "2", "--json"],
        hostile_peer,
    );
    let v = json_of(&o);
    validate(&v);
    crate::common::validate("pair-v1.json", &v);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_peer_that_sends_garbage_candidates_or_oversized_frames() {
    let s = server(&[]);
    // Garbage candidates: the server refuses the sender and closes it; the real peer is told
    // it left and ends at once with a report.
    let (o, took) = run_against(&s, "garbage", |mut raw| {
        let bad = Offer {
            ufrag: "abcd".into(),
            pwd: "p".repeat(22),
            candidates: vec![WireCandidate {
                kind: CandidateKind::Host,
                address: "0.0.0.0:9".parse().unwrap(),
                priority: 1,
                foundation: "<script>".into(),
            }],
        };
        let f = raw.conn.signal(PeerMsg::Offer(bad)).unwrap();
        raw.tcp.write_all(&f).unwrap();
        assert!(raw.closed_soon());
    });
    let v = json_of(&o);
    validate(&v);
    assert_eq!(v["outcome"], "failed");
    assert_eq!(v["abort"], "peer-left", "{v:#}");
    assert_eq!(o.status.code(), Some(2));
    assert!(took < Duration::from_secs(15), "{took:?}");
    // An oversized frame: announced 1 GB.
    let (o, took) = run_against(&s, "huge", |mut raw| {
        raw.tcp.write_all(&0x4000_0000u32.to_be_bytes()).unwrap();
        raw.tcp.write_all(&[b'x'; 4096]).unwrap();
        assert!(raw.closed_soon());
    });
    let v = json_of(&o);
    assert_eq!(v["abort"], "peer-left", "{v:#}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    // Many candidates (over the cap of 16): refused the same way.
    let (o, _) = run_against(&s, "many", |mut raw| {
        let c = WireCandidate {
            kind: CandidateKind::Host,
            address: "192.0.2.1:9".parse().unwrap(),
            priority: 1,
            foundation: "1".into(),
        };
        let offer = Offer {
            ufrag: "abcd".into(),
            pwd: "p".repeat(22),
            candidates: vec![c; 40],
        };
        let f = raw.conn.signal(PeerMsg::Offer(offer)).unwrap();
        raw.tcp.write_all(&f).unwrap();
        assert!(raw.closed_soon());
    });
    assert_eq!(json_of(&o)["abort"], "peer-left");
}

#[test]
fn the_rendezvous_stays_bounded_under_a_flood() {
    let s = server(&["--rendezvous-max-connections", "8"]);
    let start = Instant::now();
    // 64 connections at once, half of them sending junk, the rest silent.
    let mut conns = Vec::new();
    for i in 0..64 {
        let Ok(mut c) = TcpStream::connect(&s.rendezvous) else {
            continue;
        };
        if i % 2 == 0 {
            let _ = c.write_all(
                b"\x00\x00\x00\x30GET / HTTP/1.1\r\n\r\n0123456789012345678901234567890123",
            );
        }
        conns.push(c);
    }
    // Every one is closed by the server within the handshake deadline (5 s) or at once.
    let mut closed = 0;
    for c in &mut conns {
        c.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        let mut buf = [0u8; 256];
        loop {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => {
                    closed += 1;
                    break;
                }
                Ok(_) => {}
            }
        }
    }
    assert_eq!(closed, conns.len());
    assert!(
        start.elapsed() < Duration::from_secs(12),
        "{:?}",
        start.elapsed()
    );
    drop(conns);
    // And it still serves a real pair.
    let args = ["--stun", &s.stun, "--duration", "1", "--json"];
    let (oa, ob) = both(
        pair_cmd(&s.rendezvous, "after", &args),
        pair_cmd(&s.rendezvous, "after", &args),
        Duration::from_millis(200),
    );
    assert_eq!(json_of(&oa)["outcome"], "direct", "{}", stderr(&oa));
    assert_eq!(json_of(&ob)["outcome"], "direct");
}

fn interrupt(child: &Child) {
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn spawn_pair(mut c: Command) -> Child {
    c.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `timeout` forwards the signal to stunmap; spawn stunmap directly instead.
fn direct_cmd(rendezvous: &str, room: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(["pair", rendezvous, "--room", room])
        .args(extra)
        .env("STUNMAP_PAIR_SECRET", SECRET)
        .stdin(Stdio::null());
    c
}

#[test]
fn interrupted_while_waiting_exits_130_with_a_partial_report() {
    let s = server(&[]);
    let child = spawn_pair(direct_cmd(
        &s.rendezvous,
        "wait",
        &["--json", "--wait", "60"],
    ));
    thread::sleep(Duration::from_millis(800));
    let start = Instant::now();
    interrupt(&child);
    let o = child.wait_with_output().unwrap();
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let v = json_of(&o);
    validate(&v);
    assert_eq!(v["interrupted"], true);
    assert_eq!(v["abort"], "interrupted");
}

#[test]
fn interrupted_mid_run_releases_the_turn_allocations() {
    if !have("turnserver") {
        return;
    }
    let turn = coturn_lab(TurnAuth::Static, false);
    let s = server(&[]);
    let uri = format!("turn:127.0.0.1:{}", turn.port);
    let args = [
        "--stun",
        &s.stun,
        "--turn",
        &uri,
        "--user",
        "test",
        "--duration",
        "30",
        "--json",
    ];
    let mut ca = direct_cmd(&s.rendezvous, "turn", &args);
    ca.env("STUNMAP_TURN_PASSWORD", "secret");
    let mut cb = direct_cmd(&s.rendezvous, "turn", &args);
    cb.env("STUNMAP_TURN_PASSWORD", "secret");
    let a = spawn_pair(ca);
    thread::sleep(Duration::from_millis(200));
    let b = spawn_pair(cb);
    // Both allocations made (coturn's log says so), then a moment to connect and measure
    // (loopback connects in milliseconds; a loaded machine may take seconds to get here).
    let waiting = Instant::now();
    while turn.allocations_made() < 2 && waiting.elapsed() < Duration::from_secs(20) {
        thread::sleep(Duration::from_millis(100));
    }
    thread::sleep(Duration::from_secs(2));
    interrupt(&a);
    interrupt(&b);
    let start = Instant::now();
    let (oa, ob) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    for (i, o) in [&oa, &ob].into_iter().enumerate() {
        let v = json_of(o);
        validate(&v);
        // A is interrupted first. B's own SIGINT follows, but on a loaded machine A's goodbye
        // may reach B before it: B then ends on the peer's departure with the outcome of the
        // pair it measured (docs/pair.md). Either way its allocation is released.
        // (B's own SIGINT may still land after that: exit 130 with `peer-left` kept.)
        if i == 1 && v["abort"] == "peer-left" {
            let code = o.status.code();
            assert!(
                matches!(code, Some(0 | 1 | 2 | 130)),
                "{code:?}: {}",
                stderr(o)
            );
        } else {
            assert_eq!(o.status.code(), Some(130), "side {i}: {}", stderr(o));
            assert_eq!(v["interrupted"], true, "{v:#}");
        }
        let me = v["this_side"].as_str().unwrap().to_string();
        let t = &v[me.as_str()]["turn"];
        assert!(t["relayed"].is_string(), "{v:#}");
        assert_eq!(t["released"], true, "{v:#}");
    }
    assert_eq!(turn.allocations_made(), 2);
    turn.assert_no_allocations_left();
}

#[test]
fn the_rendezvous_over_tls() {
    if !have("openssl") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("stunmap-pair-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl could not make a certificate");
    let (cert, key) = (
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    );
    let s = server(&["--cert", &cert, "--key", &key]);
    let args = [
        "--stun",
        &s.stun,
        "--duration",
        "1",
        "--tls",
        "--ca-file",
        &cert,
        "--json",
    ];
    let (oa, ob) = both(
        pair_cmd(&s.rendezvous, "tls", &args),
        pair_cmd(&s.rendezvous, "tls", &args),
        Duration::from_millis(200),
    );
    assert_eq!(json_of(&oa)["outcome"], "direct", "{}", stderr(&oa));
    assert_eq!(json_of(&ob)["outcome"], "direct");
    // Without --ca-file the self-signed certificate is refused; without --tls the server
    // hangs up on the plain hello. Both are one-line errors.
    assert_fails_fast(
        pair_cmd(&s.rendezvous, "tls", &["--tls"]),
        Duration::from_secs(3),
        "TLS with the rendezvous",
    );
    assert_fails_fast(
        pair_cmd(&s.rendezvous, "tls", &[]),
        Duration::from_secs(8),
        "rendezvous",
    );
    let _ = std::fs::remove_dir_all(&dir);
}
