//! `stunmap serve` as a public reflector, on loopback: it cannot be turned into an amplifier
//! (per-source answer limit, small answers, no SOFTWARE on wildcard listens), it cannot be
//! held over TCP (deadlines, per-source cap, descriptor exhaustion), its threads give the
//! same answers as the sans-IO reflector, and its numeric flags are bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use probes::reflector::{ServerAddrs, respond};
use probes::stun::attr::ChangeRequest;
use probes::stun::encode::BindingRequest;
use probes::stun::view::StunView;
use probes::stun::{MessageType, MessageWriter, TransactionId};

use crate::common::{bin, free_port, have, stunmap};

/// A `stunmap serve` whose final counters line can be read after it stops.
struct Served {
    child: Child,
    stderr: BufReader<std::process::ChildStderr>,
}

impl Served {
    fn start(args: &[&str]) -> Served {
        let mut child = Command::new(bin())
            .arg("serve")
            .args(args)
            .args(["--duration", "120"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        assert!(line.contains("listening"), "serve did not start: {line}");
        Served { child, stderr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGINT, then the rest of stderr (the counters line).
    fn stop(mut self) -> String {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let mut rest = String::new();
        self.stderr.read_to_string(&mut rest).unwrap();
        let _ = self.child.wait();
        rest
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The number before `what` in the counters line.
fn counter(summary: &str, what: &str) -> u64 {
    let at = summary
        .find(what)
        .unwrap_or_else(|| panic!("no {what:?} in {summary}"));
    summary[..at]
        .split_whitespace()
        .last()
        .and_then(|w| w.trim_start_matches('(').parse().ok())
        .unwrap_or_else(|| panic!("no count before {what:?} in {summary}"))
}

fn header_only(tid: u32) -> Vec<u8> {
    let mut b = Vec::new();
    let mut id = [0u8; 12];
    id[..4].copy_from_slice(&tid.to_be_bytes());
    MessageWriter::new(&mut b, MessageType::BINDING_REQUEST, &TransactionId(id));
    b
}

fn request(tid: u8, change: Option<ChangeRequest>, response_port: Option<u16>) -> Vec<u8> {
    let mut b = Vec::new();
    BindingRequest {
        transaction_id: TransactionId([tid; 12]),
        software: None,
        change_request: change,
        response_port,
        fingerprint: true,
    }
    .encode(&mut b);
    b
}

/// Send `per_socket` header-only requests from each socket, round after round as fast as
/// possible (2 ms between rounds, so that a busy machine with a small default receive buffer
/// drops few of them on the way in), then collect every answer for `drain`. Returns
/// (requests sent, bytes sent, answers, bytes received).
fn flood(socks: &[UdpSocket], to: SocketAddr, per_socket: u32, drain: Duration) -> [u64; 4] {
    let mut sent = [0u64; 2];
    for round in 0..per_socket {
        if round > 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        for (i, s) in socks.iter().enumerate() {
            let req = header_only(round << 16 | i as u32);
            if s.send_to(&req, to).is_ok() {
                sent[0] += 1;
                sent[1] += req.len() as u64;
            }
        }
    }
    let mut got = [0u64; 2];
    let end = Instant::now() + drain;
    let mut buf = [0u8; 2048];
    for s in socks {
        s.set_nonblocking(true).unwrap();
    }
    while Instant::now() < end {
        let mut any = false;
        for s in socks {
            while let Ok((n, _)) = s.recv_from(&mut buf) {
                assert!(StunView::parse(&buf[..n]).is_ok());
                got[0] += 1;
                got[1] += n as u64;
                any = true;
            }
        }
        if !any {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    [sent[0], sent[1], got[0], got[1]]
}

#[test]
fn a_flood_from_many_sources_gets_limited_answers() {
    // 40 source addresses (127.0.0.10-49) × 25 ports each, 10 header-only requests per port:
    // 10,000 requests at a server allowing 10 answers a second per source, 20 at once.
    let port = free_port("127.0.0.1");
    let s = Served::start(&[
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--no-tcp",
        "--software",
        "",
        "--per-source-rate",
        "10",
        "--per-source-burst",
        "20",
    ]);
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let socks: Vec<UdpSocket> = (10..50)
        .flat_map(|host| {
            (0..25).map(move |_| UdpSocket::bind(format!("127.0.0.{host}:0")).unwrap())
        })
        .collect();
    let start = Instant::now();
    let [requests, bytes_in, answers, bytes_out] =
        flood(&socks, to, 10, Duration::from_millis(500));
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(requests, 10_000);
    // Every source got its burst, and none more than its burst plus its rate for the run.
    let most = 40.0 * (20.0 + 10.0 * (secs + 0.5));
    assert!(answers >= 40 * 20, "{answers} answers");
    assert!(
        (answers as f64) <= most,
        "{answers} answers in {secs:.2} s, at most {most}"
    );
    // Plain answers to header-only requests: 32 bytes each (XOR-MAPPED-ADDRESS only).
    assert_eq!(bytes_out, answers * 32);
    // Unlimited, every request would be answered: 32 bytes for 20, a factor of 1.6.
    let factor = bytes_out as f64 / bytes_in as f64;
    assert!(factor < 0.25, "bytes out / bytes in = {factor:.3}");
    let summary = s.stop();
    assert_eq!(
        counter(&summary, "UDP requests answered"),
        answers,
        "{summary}"
    );
    // The rest were refused by the limit (the kernel may have dropped a few on the way in).
    let limited = counter(&summary, "over the per-source limit");
    assert!(answers + limited <= requests, "{summary}");
    assert!(limited >= requests * 8 / 10, "{summary}");
}

#[test]
fn the_default_limit_caps_one_source_and_software_is_off_on_wildcard_listens() {
    let port = free_port("127.0.0.1");
    // A wildcard listen (only loopback traffic reaches it here), default limits.
    let s = Served::start(&["--listen", &format!("0.0.0.0:{port}"), "--no-tcp"]);
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let socks: Vec<UdpSocket> = (0..100)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let start = Instant::now();
    let [requests, _, answers, bytes_out] = flood(&socks, to, 20, Duration::from_millis(300));
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(requests, 2000);
    // One source: the burst of 400 plus 200 a second.
    assert!(answers >= 400, "{answers}");
    assert!(
        (answers as f64) <= 400.0 + 200.0 * (secs + 0.3),
        "{answers} in {secs:.2} s"
    );
    assert_eq!(bytes_out, answers * 32, "no SOFTWARE, no FINGERPRINT");
    drop(s);

    // A specific listen names itself by default; `--software ""` does not.
    for (extra, software) in [
        (None, Some(concat!("stunmap ", env!("CARGO_PKG_VERSION")))),
        (Some(""), None),
    ] {
        let port = free_port("127.0.0.1");
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["--listen", listen.as_str(), "--no-tcp"];
        if let Some(e) = extra {
            args.extend(["--software", e]);
        }
        let _s = Served::start(&args);
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        c.send_to(&header_only(1), listen.as_str()).unwrap();
        let mut buf = [0u8; 256];
        let n = c.recv(&mut buf).unwrap();
        let v = StunView::parse(&buf[..n]).unwrap();
        assert_eq!(v.software(), software.map(str::as_bytes), "{extra:?}");
    }
}

#[test]
fn threads_give_the_answers_of_the_sans_io_reflector() {
    let port = free_port("127.0.0.1");
    let alt = free_port("127.0.0.1");
    let _s = Served::start(&[
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--alt-address",
        "127.0.0.2",
        "--alt-port",
        &alt.to_string(),
        "--threads",
        "4",
        "--no-tcp",
        "--software",
        "lab",
        "--per-source-burst",
        "100000",
    ]);
    let primary: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let server = ServerAddrs {
        primary_ip: primary.ip(),
        primary_port: port,
        alt_ip: Some("127.0.0.2".parse().unwrap()),
        alt_port: Some(alt),
    };
    let change = |ip, port| {
        Some(ChangeRequest {
            change_ip: ip,
            change_port: port,
        })
    };
    let mut checked = 0;
    // 64 client sockets: SO_REUSEPORT spreads them over the four threads.
    for i in 0..64u8 {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let me = c.local_addr().unwrap();
        let cases = [
            request(i, None, None),
            request(i, change(false, true), None),
            request(i, change(true, false), None),
            request(i, change(true, true), None),
            header_only(u32::from(i)),
        ];
        for req in cases {
            let mut want = Vec::new();
            let probes::reflector::Action::Reply { from, to } =
                respond(&req, me, &server, Some("lab"), &mut want)
            else {
                panic!("the reflector answers this");
            };
            assert_eq!(to, me);
            c.send_to(&req, primary).unwrap();
            let mut buf = [0u8; 512];
            let (n, src) = c.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &want[..], "request {i}");
            assert_eq!(Some(src), server.addr(from), "answered from {src}");
            checked += 1;
        }
        // RESPONSE-PORT: the answer goes to another port of the same IP.
        let other = UdpSocket::bind("127.0.0.1:0").unwrap();
        other
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let req = request(i, None, Some(other.local_addr().unwrap().port()));
        c.send_to(&req, primary).unwrap();
        let mut buf = [0u8; 512];
        let (n, src) = other.recv_from(&mut buf).unwrap();
        let mut want = Vec::new();
        respond(&req, me, &server, Some("lab"), &mut want);
        assert_eq!((&buf[..n], src), (&want[..], primary));
    }
    assert_eq!(checked, 64 * 5);
}

/// A TCP STUN client that answers a Binding request within `within`.
fn tcp_answers(to: &str, within: Duration) -> bool {
    let Ok(mut s) = TcpStream::connect(to) else {
        return false;
    };
    s.set_read_timeout(Some(within)).unwrap();
    if s.write_all(&request(9, None, None)).is_err() {
        return false;
    }
    let mut buf = [0u8; 256];
    matches!(s.read(&mut buf), Ok(n) if n > 20 && StunView::parse(&buf[..n]).is_ok())
}

/// Whether the server has closed `s` (a read returns end of stream or an error) within
/// `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + within;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
        if Instant::now() > end {
            return false;
        }
    }
}

fn connect_from(src: &str, to: &str) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&format!("{src}:0").parse::<SocketAddr>().unwrap().into())
        .unwrap();
    sock.connect(&to.parse::<SocketAddr>().unwrap().into())
        .unwrap();
    sock.into()
}

#[test]
fn tcp_slow_readers_and_tricklers_are_cut_and_do_not_lock_others_out() {
    let port = free_port("127.0.0.1");
    let to = format!("127.0.0.1:{port}");
    let s = Served::start(&[
        "--listen",
        &to,
        "--max-tcp",
        "4",
        "--max-tcp-per-source",
        "2",
        "--tcp-message-timeout",
        "1",
        "--tcp-write-timeout",
        "1",
        "--tcp-idle",
        "2",
    ]);
    // Two tricklers from 127.0.0.2: a byte every 300 ms, forever (the header alone would take
    // 6 s). A third from the same source is over its cap.
    let mut tricklers: Vec<TcpStream> = (0..2).map(|_| connect_from("127.0.0.2", &to)).collect();
    for t in &mut tricklers {
        t.write_all(&[0x00]).unwrap();
    }
    let mut third = connect_from("127.0.0.2", &to);
    assert!(
        closed_within(&mut third, Duration::from_secs(2)),
        "a third connection from one source is refused"
    );
    // Two slow readers from 127.0.0.3: pipeline requests, never read (small receive buffer).
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let sock =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            sock.set_recv_buffer_size(4096).unwrap();
            sock.bind(&"127.0.0.3:0".parse::<SocketAddr>().unwrap().into())
                .unwrap();
            sock.connect(&to.parse::<SocketAddr>().unwrap().into())
                .unwrap();
            let mut s: TcpStream = sock.into();
            s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
            std::thread::spawn(move || {
                let batch: Vec<u8> = (0..1000)
                    .flat_map(|i| request(i as u8, None, None))
                    .collect();
                let start = Instant::now();
                // Until the server gives up on us (or 20 MB, far more than the buffers hold).
                for _ in 0..700 {
                    if s.write_all(&batch).is_err() {
                        return Some(start.elapsed());
                    }
                }
                None
            })
        })
        .collect();
    // Every slot is taken now (4 of 4); trickling keeps going.
    let trickle = std::thread::spawn(move || {
        let start = Instant::now();
        let mut cut = vec![None; tricklers.len()];
        for _ in 0..30 {
            std::thread::sleep(Duration::from_millis(300));
            for (t, c) in tricklers.iter_mut().zip(cut.iter_mut()) {
                if c.is_none()
                    && (t.write_all(&[0x01]).is_err() || closed_within(t, Duration::from_millis(1)))
                {
                    *c = Some(start.elapsed());
                }
            }
            if cut.iter().all(Option::is_some) {
                break;
            }
        }
        cut
    });
    // A normal client is answered once the deadlines have freed slots (1 s + slack).
    let t0 = Instant::now();
    let mut answered = false;
    while t0.elapsed() < Duration::from_secs(5) {
        if tcp_answers(&to, Duration::from_secs(3)) {
            answered = true;
            break;
        }
    }
    assert!(answered, "a normal client was locked out");
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    for c in trickle.join().unwrap() {
        let c = c.expect("a trickler was never cut");
        assert!(c < Duration::from_secs(4), "trickler cut after {c:?}");
    }
    for w in writers {
        let cut = w.join().unwrap().expect("a slow reader was never cut");
        assert!(
            cut < Duration::from_secs(6),
            "slow reader cut after {cut:?}"
        );
    }
    let summary = s.stop();
    assert!(
        counter(&summary, "refused over the per-source cap") >= 1,
        "{summary}"
    );
    assert!(counter(&summary, "cut at a deadline") >= 4, "{summary}");
}

#[test]
fn descriptor_exhaustion_stops_tcp_briefly_and_never_udp() {
    if !have("prlimit") {
        return;
    }
    let port = free_port("127.0.0.1");
    let to = format!("127.0.0.1:{port}");
    let s = Served::start(&["--listen", &to, "--threads", "1", "--max-tcp", "16"]);
    assert!(tcp_answers(&to, Duration::from_secs(2)));
    let pid = s.pid().to_string();
    // A limit at the lowest free descriptor number: no new descriptor can be had (the kernel
    // hands out the lowest free number), so every accept fails with EMFILE.
    // (Read once the connection of the check above is closed on the server's side too.)
    let open = || -> std::collections::BTreeSet<u32> {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .collect()
    };
    let mut fds = open();
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(50));
        let now = open();
        if now == fds {
            break;
        }
        fds = now;
    }
    let lowest_free = (0..).find(|n| !fds.contains(n)).unwrap();
    let limit = |n: u32| {
        let st = Command::new("prlimit")
            // The soft limit only (raising a hard limit takes CAP_SYS_RESOURCE).
            .args(["--pid", &pid, &format!("--nofile={n}:")])
            .status()
            .unwrap();
        assert!(st.success());
    };
    limit(lowest_free);
    // TCP: connects (the kernel completes the handshake) but nothing is accepted.
    let mut waiting: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(&to).unwrap()).collect();
    for w in &mut waiting {
        w.write_all(&request(5, None, None)).unwrap();
        w.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
    }
    let mut buf = [0u8; 256];
    assert!(
        waiting[0].read(&mut buf).is_err(),
        "nothing can be accepted"
    );
    // UDP needs no descriptor per client: still answered, at once.
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    for i in 0..10 {
        c.send_to(&header_only(i), &to).unwrap();
        assert!(c.recv(&mut buf).is_ok(), "UDP answer {i}");
    }
    // Descriptors again: the waiting connections are accepted within the back-off (≤ 1 s).
    limit(4096);
    for w in &mut waiting {
        w.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let n = w
            .read(&mut buf)
            .expect("answered after the limit was raised");
        assert!(StunView::parse(&buf[..n]).is_ok());
    }
    assert!(tcp_answers(&to, Duration::from_secs(2)));
    let summary = s.stop();
    assert!(counter(&summary, "accept errors") >= 1, "{summary}");
}

#[test]
fn numeric_flags_are_bounded_with_a_one_line_reason() {
    for bad in [
        &["--max-tcp", "99999999999999"][..],
        &["--max-tcp", "0"],
        &["--max-tcp-per-source", "0"],
        &["--threads", "0"],
        &["--threads", "100000"],
        &["--per-source-rate", "0"],
        &["--per-source-burst", "99999999999"],
        &["--tcp-idle", "0"],
        &["--tcp-message-timeout", "100000"],
        &["--tcp-write-timeout", "0"],
        &["--duration", "0"],
        &["--duration", "18446744073709551615"],
    ] {
        let mut args = vec!["serve", "--listen", "127.0.0.1:3478"];
        args.extend_from_slice(bad);
        let out = stunmap(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{bad:?}: {err}");
        assert!(!err.contains("panicked"), "{bad:?}: {err}");
        assert!(out.stdout.is_empty());
    }
    // RFC 5780 needs specific addresses: its answers name the address they leave from.
    for alt in [["--alt-port", "3479"], ["--alt-address", "127.0.0.2"]] {
        let mut args = vec!["serve", "--listen", "0.0.0.0:3478"];
        args.extend(alt);
        let out = stunmap(&args);
        assert_eq!(out.status.code(), Some(64), "{alt:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

#[test]
fn serve_stops_its_threads_promptly() {
    let port = free_port("127.0.0.1");
    let s = Served::start(&["--listen", &format!("127.0.0.1:{port}"), "--threads", "8"]);
    let t = Instant::now();
    let summary = s.stop();
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert!(summary.contains("stopped (signal)"), "{summary}");
}
