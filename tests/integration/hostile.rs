//! Hostile peers on loopback, every loop bounded: an evil STUN server that answers with wrong
//! transaction ids, from another port, with bad FINGERPRINTs, truncated, oversize, duplicated
//! and reordered; a junk flood at the engine's socket while real transactions run; TCP peers
//! that trickle, announce a length that never arrives, or reset mid-message; and every output
//! format checked for a TURN password.
// The junk flood (sendmmsg, /proc) runs on Linux only; elsewhere its helpers are unused.
#![cfg_attr(not(target_os = "linux"), allow(unused_imports, dead_code))]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::{Cancel, Event, Limits, Rate};
use probes::Retransmit;
use probes::binding::{BindingConfig, BindingStatus, BindingTransaction};
use probes::stun::{Class, MessageType, MessageWriter, Method, TransactionId, attr};

use crate::common::{TurnAuth, coturn_lab_with, have, stunmap, stunmap_env};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn tid(i: u64) -> TransactionId {
    let mut t = [0x5A; 12];
    t[..8].copy_from_slice(&i.to_be_bytes());
    TransactionId(t)
}

fn success(tid: &TransactionId, mapped: SocketAddr) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = MessageWriter::new(
        &mut out,
        MessageType::new(Class::SuccessResponse, Method::BINDING),
        tid,
    );
    w.xor_address(attr::XOR_MAPPED_ADDRESS, &mapped);
    w.fingerprint();
    w.finish();
    out
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn evil_udp_server_replies_are_ignored_counted_and_never_trusted() {
    let evil = UdpSocket::bind("127.0.0.1:0").unwrap();
    let other = UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = evil.local_addr().unwrap();
    evil.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let n = 20u64;
    let fake = |k: u8| -> SocketAddr { SocketAddr::from(([6, 6, 6, k], 666)) };
    let t = std::thread::spawn(move || {
        // Collect every request first, then answer in reverse order (reordering).
        let mut reqs: Vec<(TransactionId, SocketAddr)> = Vec::new();
        let mut buf = [0u8; 2048];
        let start = Instant::now();
        while (reqs.len() as u64) < n && start.elapsed() < Duration::from_secs(5) {
            if let Ok((len, from)) = evil.recv_from(&mut buf) {
                let t = TransactionId::peek(&buf[..len]).unwrap();
                if !reqs.iter().any(|(x, _)| *x == t) {
                    reqs.push((t, from));
                }
            }
        }
        for (t, from) in reqs.iter().rev() {
            let mut wrong = t.0;
            wrong[0] ^= 0xFF;
            evil.send_to(&success(&TransactionId(wrong), fake(1)), from)
                .unwrap();
            other.send_to(&success(t, fake(2)), from).unwrap();
            let mut bad_fp = success(t, fake(3));
            *bad_fp.last_mut().unwrap() ^= 1;
            evil.send_to(&bad_fp, from).unwrap();
            evil.send_to(&success(t, fake(4))[..30], from).unwrap();
            let mut huge = vec![0xFFu8; 65_000];
            huge[8..20].copy_from_slice(&t.0);
            evil.send_to(&huge, from).unwrap();
            let mut as_request = Vec::new();
            MessageWriter::new(
                &mut as_request,
                MessageType::new(Class::Request, Method::BINDING),
                t,
            )
            .finish();
            evil.send_to(&as_request, from).unwrap();
            let real = success(t, *from);
            for _ in 0..3 {
                evil.send_to(&real, from).unwrap();
            }
        }
        reqs.len() as u64
    });
    let config = BindingConfig {
        retransmit: Retransmit {
            rto: Duration::from_secs(3),
            rc: 1,
            rm: 1,
            deadline: Some(Duration::from_secs(5)),
        },
        ..BindingConfig::default()
    };
    let probes = (0..n).map(|i| BindingTransaction::new(tid(i), server, config));
    let limits = Limits {
        rate: None,
        max_in_flight: n as usize,
        ..Limits::default()
    };
    let mut mapped = Vec::new();
    let report = rt()
        .block_on(engine::run(probes, limits, Cancel::never(), |ev| {
            if let Event::Finished { output, .. } = ev {
                match output.status {
                    BindingStatus::Success(r) => mapped.push(r.mapped_address().unwrap()),
                    other => panic!("not a success: {other:?}"),
                }
            }
        }))
        .unwrap();
    assert_eq!(t.join().unwrap(), n);
    assert_eq!(mapped.len() as u64, n);
    for m in &mapped {
        assert_eq!(
            m.ip().to_string(),
            "127.0.0.1",
            "a forged mapping was trusted: {m}"
        );
    }
    let c = report.counters;
    assert_eq!(c.probes_finished, n);
    assert!(c.unexpected_source >= n, "{c:?}");
    assert!(c.bad_fingerprint >= n, "{c:?}");
    assert!(c.malformed >= 2 * n, "truncated and oversize: {c:?}");
    assert!(c.rejected_other >= n, "requests as replies: {c:?}");
    assert!(
        c.unmatched + c.duplicates >= 3 * n,
        "wrong ids and duplicates: {c:?}"
    );
    // Every datagram is accounted for: n real replies, the rest counted as ignored.
    let ignored = c.malformed
        + c.unmatched
        + c.unexpected_source
        + c.bad_fingerprint
        + c.duplicates
        + c.rejected_other;
    assert_eq!(c.datagrams_received, n + ignored, "{c:?}");
}

/// Sends `count` datagrams (random bytes and STUN-looking replies with unknown ids) to
/// `target` from a separate socket, in sendmmsg batches; returns (sent, seconds).
#[cfg(target_os = "linux")]
fn flood(target: SocketAddr, max: Duration, stop: &AtomicBool) -> (u64, f64) {
    use std::os::fd::AsRawFd;
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.connect(target).unwrap();
    const BATCH: usize = 64;
    let mut payloads: Vec<Vec<u8>> = Vec::new();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..BATCH {
        if i % 2 == 0 {
            let len = 20 + (i * 7) % 200;
            payloads.push(
                (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect(),
            );
        } else {
            payloads.push(success(
                &tid(0xDEAD_0000 + i as u64),
                "1.2.3.4:5".parse().unwrap(),
            ));
        }
    }
    let mut iov: Vec<libc::iovec> = payloads
        .iter_mut()
        .map(|p| libc::iovec {
            iov_base: p.as_mut_ptr().cast(),
            iov_len: p.len(),
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iov
        .iter_mut()
        .map(|v| {
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = v;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < max && !stop.load(Ordering::Relaxed) {
        let r = unsafe { libc::sendmmsg(s.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0) };
        if r > 0 {
            sent += r as u64;
        }
    }
    (sent, start.elapsed().as_secs_f64())
}

#[cfg(target_os = "linux")]
#[test]
fn junk_flood_at_the_engine_socket_while_real_transactions_complete() {
    // A real reflector thread: answers Binding requests and reports the engine's address.
    let refl = UdpSocket::bind("127.0.0.1:0").unwrap();
    refl.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let server = refl.local_addr().unwrap();
    let engine_addr: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let reflector = {
        let (engine_addr, done, answered) = (engine_addr.clone(), done.clone(), answered.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !done.load(Ordering::Relaxed) {
                if let Ok((len, from)) = refl.recv_from(&mut buf) {
                    engine_addr.lock().unwrap().get_or_insert(from);
                    let t = TransactionId::peek(&buf[..len]).unwrap();
                    refl.send_to(&success(&t, from), from).unwrap();
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let flooder = {
        let (engine_addr, done) = (engine_addr.clone(), done.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            let target = loop {
                if let Some(a) = *engine_addr.lock().unwrap() {
                    break a;
                }
                assert!(start.elapsed() < Duration::from_secs(5), "no request seen");
                std::thread::sleep(Duration::from_millis(1));
            };
            flood(target, Duration::from_secs(2), &done)
        })
    };
    // 1500 transactions paced at 600/s: they run for ~2.5 s, across the whole flood.
    let n = 1500u64;
    let config = BindingConfig {
        retransmit: Retransmit {
            rto: Duration::from_millis(300),
            ..Retransmit::default()
        },
        ..BindingConfig::default()
    };
    let probes = (0..n).map(|i| BindingTransaction::new(tid(i), server, config));
    let limits = Limits {
        rate: Some(Rate { pps: 600, burst: 8 }),
        max_in_flight: 256,
        deadline: Some(Duration::from_secs(20)),
        ..Limits::default()
    };
    let rss_before = rss_kib();
    let mut ok = 0u64;
    let report = rt()
        .block_on(engine::run(probes, limits, Cancel::never(), |ev| {
            if let Event::Finished { output, .. } = ev
                && let BindingStatus::Success(r) = output.status
            {
                assert_eq!(
                    r.mapped_address().unwrap().port(),
                    engine_addr.lock().unwrap().unwrap().port()
                );
                ok += 1;
            }
        }))
        .unwrap();
    let rss_after = rss_kib();
    done.store(true, Ordering::Relaxed);
    let (sent, secs) = flooder.join().unwrap();
    reflector.join().unwrap();
    let c = report.counters;
    let rate = sent as f64 / secs;
    eprintln!(
        "junk flood: {sent} datagrams in {secs:.2} s ({rate:.0}/s); engine received {}, \
         malformed {}, unmatched {}; {ok}/{n} transactions ok; RSS {rss_before} -> {rss_after} KiB",
        c.datagrams_received, c.malformed, c.unmatched
    );
    assert!(
        rate >= 100_000.0,
        "flood only reached {rate:.0} datagrams/s"
    );
    assert_eq!(ok, n, "real transactions lost under the flood: {c:?}");
    // Every datagram the engine received is either a real reply (at most one per transmission)
    // or counted as junk.
    let junk = c.malformed + c.unmatched;
    let replies = answered.load(Ordering::Relaxed);
    assert!(
        c.datagrams_received <= junk + replies + c.duplicates,
        "uncounted datagrams: {c:?}, {replies} replies"
    );
    assert!(
        junk >= sent / 10,
        "the flood did not reach the engine: {junk} of {sent}"
    );
    assert!(junk <= sent, "{junk} > {sent}");
    assert!(
        rss_after.saturating_sub(rss_before) < 64 * 1024,
        "RSS grew by {} KiB",
        rss_after - rss_before
    );
}

/// A TCP peer that reads the request and then misbehaves with `how`.
fn tcp_peer(how: &'static str) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        let (mut s, from) = l.accept().unwrap();
        let mut req = [0u8; 512];
        let n = s.read(&mut req).unwrap();
        let t = TransactionId::peek(&req[..n]).unwrap();
        let reply = success(&t, from);
        match how {
            // One byte every 300 ms: never finishes inside the 1.5 s deadline.
            "slowloris" => {
                for b in &reply {
                    if s.write_all(&[*b]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
            }
            // A header announcing more than ever comes, then silence.
            "short" => {
                s.write_all(&reply[..24]).unwrap();
                std::thread::sleep(Duration::from_secs(3));
            }
            // Part of the message, then a reset (SO_LINGER 0).
            "reset" => {
                s.write_all(&reply[..10]).unwrap();
                std::thread::sleep(Duration::from_millis(100));
                let sock = socket2::SockRef::from(&s);
                sock.set_linger(Some(Duration::ZERO)).unwrap();
                drop(s);
            }
            _ => unreachable!(),
        }
    });
    (addr, h)
}

#[test]
fn hostile_tcp_peers_are_bounded_by_the_deadline_and_reported() {
    for (how, expect) in [
        ("slowloris", "deadline reached with"),
        ("short", "deadline reached with 24 bytes"),
        ("reset", "read failed"),
    ] {
        let (addr, h) = tcp_peer(how);
        let start = Instant::now();
        let out = stunmap(&[
            "stun",
            "--tcp",
            &addr.to_string(),
            "--count",
            "1",
            "--timeout",
            "1500",
            "--json",
        ]);
        let took = start.elapsed();
        assert!(took < Duration::from_secs(5), "{how}: took {took:?}");
        let j = crate::common::json(&out);
        let t = &j["targets"][0];
        assert_eq!(t["answered"], 0, "{how}: {j}");
        let errs = t["stream_errors"].to_string();
        assert!(errs.contains(expect), "{how}: {errs} in {j}");
        h.join().unwrap();
    }
}

#[test]
fn a_turn_password_appears_in_no_output_format() {
    if !have("turnserver") {
        return;
    }
    let pw = "Zq8-leak-canary-71f3";
    let user = format!("--user=canary:{pw}");
    let lab = coturn_lab_with(TurnAuth::Static, false, true, &[&user]);
    let file = lab.dir.join("pw.txt");
    std::fs::write(&file, format!("{pw}\n")).unwrap();
    let file = file.display().to_string();
    let uri = format!("turn:127.0.0.1:{}", lab.port);
    let tcp = format!("{uri}?transport=tcp");
    let env = [("STUNMAP_TURN_PASSWORD", pw)];
    let wrong = [("STUNMAP_TURN_PASSWORD", "Zq8-wrong-canary-99")];
    type Run<'a> = (Vec<&'a str>, &'a [(&'a str, &'a str)]);
    let runs: Vec<Run> = vec![
        (vec!["turn", &uri, "--user", "canary"], &env),
        (vec!["turn", &uri, "--user", "canary", "--json"], &env),
        (vec!["turn", &tcp, "--user", "canary", "--json"], &env),
        (
            vec!["turn", &uri, "--user", "canary", "--password-file", &file],
            &[],
        ),
        (vec!["turn", &uri, "--user", "canary"], &wrong),
        (vec!["turn", &uri, "--user", "canary", "--json"], &wrong),
        (
            vec!["relay", &uri, "--user", "canary", "--count", "3"],
            &env,
        ),
        (
            vec!["relay", &uri, "--user", "canary", "--count", "3", "--json"],
            &env,
        ),
        (vec!["audit", &uri, "--user", "canary"], &env),
        (vec!["audit", &uri, "--user", "canary", "--json"], &env),
        (vec!["audit", &uri, "--user", "canary", "--json"], &wrong),
        // Usage errors must not echo it either.
        (
            vec![
                "turn",
                &uri,
                "--user",
                "canary",
                "--secret-file",
                "/nonexistent",
            ],
            &env,
        ),
    ];
    for (args, env) in runs {
        let out = stunmap_env(&args, env);
        let all = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(!all.is_empty(), "{args:?}: no output");
        for secret in [pw, "Zq8-wrong-canary-99"] {
            assert!(
                !all.contains(secret),
                "{args:?} leaked the password:\n{all}"
            );
        }
    }
    lab.assert_no_allocations_left();
}

/// What a hostile STUN/TURN server puts in every answer: escape sequences that would retitle
/// and clear a terminal and recolour what follows.
const EVIL: &str = "\x1b]0;pwned\x07\x1b[2J\x1b[31m";

/// A SOFTWARE of `len` bytes that starts with [`EVIL`].
fn evil_software(len: usize) -> Vec<u8> {
    let mut v = EVIL.as_bytes().to_vec();
    v.resize(len, b'A');
    v
}

/// How a [`HostileServer`] answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hostility {
    /// Binding: a success with a true XOR-MAPPED-ADDRESS and the hostile SOFTWARE. Other
    /// requests: 401 with a hostile REALM and reason to an unauthenticated one, 486 with a
    /// hostile reason to one with MESSAGE-INTEGRITY; the hostile SOFTWARE in each.
    Strings,
    /// Binding: a success whose XOR-MAPPED-ADDRESS is five bytes long (undecodable).
    MalformedMapping,
}

fn hostile_answer(how: Hostility, req: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    let v = probes::stun::StunView::parse(req).ok()?;
    let ty = v.message_type();
    if ty.class != Class::Request {
        return None;
    }
    let tid = v.transaction_id();
    let mut out = Vec::new();
    let mut w;
    if ty.method == Method::BINDING {
        w = MessageWriter::new(
            &mut out,
            MessageType::new(Class::SuccessResponse, Method::BINDING),
            &tid,
        );
        match how {
            Hostility::Strings => {
                w.xor_address(attr::XOR_MAPPED_ADDRESS, &from);
                w.attr(attr::SOFTWARE, &evil_software(65_400));
            }
            Hostility::MalformedMapping => {
                w.attr(attr::XOR_MAPPED_ADDRESS, &[0, 1, 0x12, 0x34, 0x56]);
                w.software("malformed mapping");
            }
        }
    } else {
        let signed = v.attributes().any(|(k, _)| k == attr::MESSAGE_INTEGRITY);
        w = MessageWriter::new(
            &mut out,
            MessageType::new(Class::ErrorResponse, ty.method),
            &tid,
        );
        if signed {
            w.error_code(486, &format!("{EVIL}Allocation Quota Reached"));
        } else {
            w.error_code(401, &format!("{EVIL}Unauthorized"));
            w.attr(attr::REALM, format!("{EVIL}realm").as_bytes());
            w.attr(attr::NONCE, b"hostile-nonce-0123");
        }
        // Smaller than a Binding's: the error response must still fit one UDP datagram.
        w.attr(attr::SOFTWARE, &evil_software(65_000));
    }
    w.fingerprint();
    w.finish();
    Some(out)
}

/// A hostile STUN/TURN server on 127.0.0.1, UDP and TCP on one port; stops when dropped (and
/// after 60 s at most).
struct HostileServer {
    port: u16,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl HostileServer {
    fn start(how: Hostility) -> HostileServer {
        let port = crate::common::free_port("127.0.0.1");
        let udp = UdpSocket::bind(("127.0.0.1", port)).unwrap();
        let tcp = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let until = Instant::now() + Duration::from_secs(60);
        let running =
            move |stop: &AtomicBool| !stop.load(Ordering::Relaxed) && Instant::now() < until;
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let s = stop.clone();
        let u = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while running(&s) {
                if let Ok((n, from)) = udp.recv_from(&mut buf)
                    && let Some(a) = hostile_answer(how, &buf[..n], from)
                {
                    let _ = udp.send_to(&a, from);
                }
            }
        });
        tcp.set_nonblocking(true).unwrap();
        let s = stop.clone();
        let t = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while running(&s) {
                match tcp.accept() {
                    Ok((c, from)) => {
                        let s = s.clone();
                        conns.push(std::thread::spawn(move || {
                            serve_stream(how, c, from, &s, until)
                        }));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        HostileServer {
            port,
            stop,
            threads: vec![u, t],
        }
    }
}

/// Answer the STUN messages of one TCP connection (RFC 8489 §6.2.2 framing: the header's
/// length), at most 1 MiB buffered.
fn serve_stream(
    how: Hostility,
    mut c: std::net::TcpStream,
    from: SocketAddr,
    stop: &AtomicBool,
    until: Instant,
) {
    c.set_nonblocking(false).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) && Instant::now() < until && buf.len() < 1 << 20 {
        match c.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                continue;
            }
            Err(_) => return,
        }
        while buf.len() >= 20 {
            let len = 20 + usize::from(u16::from_be_bytes([buf[2], buf[3]]));
            if buf.len() < len {
                break;
            }
            let msg: Vec<u8> = buf.drain(..len).collect();
            if let Some(a) = hostile_answer(how, &msg, from)
                && c.write_all(&a).is_err()
            {
                return;
            }
        }
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// No raw control character, the hostile text visible as escapes, and the output bounded
/// (the 65,400-byte SOFTWARE is cut).
fn assert_defused(what: &str, text: &str, limit: usize) {
    assert!(
        !text.contains('\x1b') && !text.contains('\x07'),
        "{what}: raw control characters reached the output:\n{}",
        text.escape_debug()
    );
    assert!(
        text.contains("\\u{1b}]0;pwned\\u{7}"),
        "{what}: the hostile text is not shown escaped:\n{text}"
    );
    assert!(
        text.len() < limit,
        "{what}: {} bytes: a peer string was not capped",
        text.len()
    );
}

/// Run `args` three ways against the hostile server: the human report, the HTML page
/// (`--html`), and JSON validated against `schema`; returns the exit code (the same each way).
fn defused(args: &[&str], env: &[(&str, &str)], schema: &str) -> i32 {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    let page_arg = page.display().to_string();
    let mut human_args = args.to_vec();
    human_args.extend(["--html", &page_arg]);
    let out = stunmap_env(&human_args, env);
    let code = out.status.code().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.is_empty() || !err.contains('\x1b'), "{args:?}: {err}");
    assert_defused(&format!("{args:?} (terminal)"), &text, 16 * 1024);
    let html = std::fs::read_to_string(&page).unwrap();
    assert_defused(&format!("{args:?} (HTML)"), &html, 48 * 1024);
    assert!(!html.contains("<script"), "{html}");
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let out = stunmap_env(&json_args, env);
    assert_eq!(
        out.status.code().unwrap(),
        code,
        "{args:?}: JSON and text disagree"
    );
    let v = crate::common::json(&out);
    crate::common::validate(schema, &v);
    code
}

#[test]
fn hostile_strings_from_stun_and_turn_servers_never_reach_a_terminal_or_page_raw() {
    let evil = HostileServer::start(Hostility::Strings);
    let udp = format!("127.0.0.1:{}", evil.port);
    let turn = format!("turn:127.0.0.1:{}", evil.port);
    let tcp = format!("{turn}?transport=tcp");
    let pw = [("STUNMAP_TURN_PASSWORD", "hostile-test")];
    let quick = ["--count", "1", "--timeout", "1000"];
    // STUN: the SOFTWARE of a success (UDP and TCP): every target answered.
    let mut a = vec!["stun", udp.as_str()];
    a.extend(quick);
    assert_eq!(defused(&a, &[], "stun-v1.json"), 0);
    a.push("--tcp");
    assert_eq!(defused(&a, &[], "stun-v1.json"), 0);
    // TURN without credentials: the 401's REALM and SOFTWARE (a TURN server is there).
    assert_eq!(defused(&["turn", &turn], &[], "turn-v1.json"), 0);
    // With credentials: a 486 with a hostile reason phrase, over UDP and TCP: refused.
    for uri in [&turn, &tcp] {
        assert_eq!(
            defused(
                &["turn", uri, "--user", "u", "--timeout", "1000"],
                &pw,
                "turn-v1.json"
            ),
            1
        );
    }
    // relay: nothing measured, the refusal in words.
    assert_eq!(
        defused(
            &[
                "relay",
                &turn,
                "--user",
                "u",
                "--count",
                "2",
                "--timeout",
                "1000"
            ],
            &pw,
            "relay-v1.json"
        ),
        2
    );
    // audit: SOFTWARE, REALM, the refused allocation: relaying not tested, not "no findings".
    assert_eq!(
        defused(
            &[
                "audit",
                &turn,
                "--user",
                "u",
                "--timeout",
                "1000",
                "--no-transports"
            ],
            &pw,
            "audit-v1.json"
        ),
        1
    );
    let out = stunmap_env(
        &[
            "audit",
            &turn,
            "--user",
            "u",
            "--timeout",
            "1000",
            "--no-transports",
            "--json",
        ],
        &pw,
    );
    let v = crate::common::json(&out);
    assert_eq!(v["not_tested"]["kind"], "allocation-refused", "{v:#}");
    assert_eq!(v["not_tested"]["code"], 486, "{v:#}");
}

#[test]
fn a_malformed_mapped_address_is_a_malformed_answer_not_an_answer() {
    let evil = HostileServer::start(Hostility::MalformedMapping);
    let target = format!("127.0.0.1:{}", evil.port);
    let out = stunmap(&[
        "stun",
        &target,
        "--count",
        "2",
        "--interval",
        "10",
        "--json",
    ]);
    let v = crate::common::json(&out);
    crate::common::validate("stun-v1.json", &v);
    assert_eq!(out.status.code(), Some(2), "{v:#}");
    let t = &v["targets"][0];
    assert_eq!(t["state"], "malformed", "{t:#}");
    assert_eq!(t["answered"], 0);
    assert_eq!(t["malformed"], 2);
    assert_eq!(t["mapped"].as_array().unwrap().len(), 0, "{t:#}");
    assert!(t["rtt"].is_null());
    assert!(
        t["malformed_reason"]
            .as_str()
            .unwrap()
            .starts_with("XOR-MAPPED-ADDRESS: "),
        "{t:#}"
    );
    let out = stunmap(&["stun", &target, "--count", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("BLOCKED"), "{text}");
    assert!(text.contains("MALFORMED"), "{text}");
}

#[test]
fn targets_the_deadline_stopped_before_are_not_probed_not_silent() {
    // One transaction in flight at a time, each waiting 400 ms on a silent port: by the
    // 0.3 s deadline the first target's first transaction is out and nothing else is.
    let silent: Vec<UdpSocket> = (0..3)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let targets: Vec<String> = silent
        .iter()
        .map(|s| s.local_addr().unwrap().to_string())
        .collect();
    let mut args = vec!["stun"];
    args.extend(targets.iter().map(String::as_str));
    args.extend([
        "--count",
        "2",
        "--max-in-flight",
        "1",
        "--timeout",
        "400",
        "--rto",
        "400",
        "--deadline",
        "0.3",
        "--json",
    ]);
    let start = Instant::now();
    let out = stunmap(&args);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    let v = crate::common::json(&out);
    crate::common::validate("stun-v1.json", &v);
    assert_eq!(v["deadline_reached"], true, "{v:#}");
    assert_eq!(out.status.code(), Some(2), "{v:#}");
    let t = v["targets"].as_array().unwrap();
    // The first target's one transaction left and was still waiting: no conclusion either.
    assert_eq!(t[0]["state"], "not-probed", "{v:#}");
    assert_eq!(t[0]["unfinished"], 1, "{v:#}");
    assert_eq!(t[0]["not_sent"], 1, "{v:#}");
    assert_eq!(t[0]["loss"], 0.0, "{v:#}");
    for later in &t[1..] {
        assert_eq!(later["state"], "not-probed", "{v:#}");
        assert_eq!(later["sent"], 0);
        assert_eq!(later["not_sent"], 2);
        assert_eq!(later["not_probed_reason"], "deadline");
    }
    args.pop();
    let out = stunmap(&args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("INTERRUPTED: the run's deadline was reached")
            && text.contains("NOT PROBED No target probed: the deadline was reached first"),
        "{text}"
    );
    assert!(!text.contains("SILENT"), "{text}");
}
