//! `stunmap sweep` against real peers: in the namespace lab (a target that answers STUN on
//! every TCP port through an nftables redirect, behind a router whose forwarding rules accept,
//! drop, reset and reject ranges) and on loopback (descriptor limits, the rate at a receiver,
//! signals, bad flags and targets). Every port asked for must come back with a state, and
//! every JSON line must match docs/schema/sweep-v1.json.

use std::net::UdpSocket;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{bin, free_port_range, serve, validate};
use crate::lab_or_skip;
use crate::support::lab::{Lab, NatMode, Ns, PUBLIC_IP_1, ROUTER_LAN_IP};

/// The router's forwarding policy for client → public traffic.
const ROUTER_RULES: &str = "
table inet sweeplab {
    chain forward {
        type filter hook forward priority filter; policy accept;
        ct state established,related accept
        tcp dport 443-1023 accept
        tcp dport 1024-20000 drop
        tcp dport 20001-40000 reject with tcp reset
        tcp dport 40001-65535 reject with icmp type admin-prohibited
        udp dport 3479 reject
        udp dport 5555 drop
    }
}
";

/// The benchmark's router (BENCHMARKS.md, "a mixed range"): TCP and UDP 443–1023 pass (to a
/// STUN listener behind a redirect), TCP 2000–2999 are reset, everything else is dropped.
const MIXED_RULES: &str = "
table inet mixed {
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname \"wan0\" accept
        tcp dport 443-1023 accept
        udp dport 443-1023 accept
        tcp dport 2000-2999 reject with tcp reset
    }
}
";

/// Every TCP port of the target lands on the reflector's TCP listener.
const TARGET_REDIRECT: &str = "
table ip redir {
    chain pre {
        type nat hook prerouting priority dstnat; policy accept;
        tcp dport != 3478 redirect to :3478
    }
}
";

/// Every TCP and UDP port of the target lands on the reflector.
const TARGET_REDIRECT_ALL: &str = "
table ip redir {
    chain pre {
        type nat hook prerouting priority dstnat; policy accept;
        tcp dport != 3478 redirect to :3478
        udp dport != 3478 redirect to :3478
    }
}
";

fn nft(lab: &Lab, ns: Ns, rules: &str, name: &str) {
    let path = lab.dir().join(name);
    std::fs::write(&path, rules).unwrap();
    lab.exec_ok(ns, &["nft", "-f", path.to_str().unwrap()])
        .expect("load nft rules");
}

fn start_target_with(lab: &mut Lab, redirect: &str) {
    nft(lab, Ns::Public, redirect, "redirect.nft");
    let listen = format!("{PUBLIC_IP_1}:3478");
    lab.spawn_in(
        Ns::Public,
        &[
            bin(),
            "serve",
            "--listen",
            &listen,
            "--max-tcp",
            "4096",
            "--max-tcp-per-source",
            "4096",
        ],
    )
    .unwrap();
    lab.wait_udp_listener(Ns::Public, &listen, Duration::from_secs(5))
        .unwrap();
}

fn start_target(lab: &mut Lab) {
    start_target_with(lab, TARGET_REDIRECT);
}

fn parse(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Run `stunmap sweep ARGS --json` in the client namespace; the report, validated.
fn sweep_in(lab: &Lab, args: &[&str]) -> (Option<i32>, Value) {
    let mut cmd = vec!["timeout", "60", bin(), "sweep"];
    cmd.extend_from_slice(args);
    cmd.push("--json");
    let out = lab.exec_in(Ns::Client, &cmd).unwrap();
    let v = parse(&out);
    validate("sweep-v1.json", &v);
    (out.status.code(), v)
}

/// Run `stunmap sweep ARGS --json` here (loopback only), under `sh -c` when `ulimit` is
/// given; the exit status, the report (validated) and the wall time.
fn sweep_here(args: &[&str], ulimit: Option<u32>) -> (Option<i32>, Value, Duration) {
    let mut line = format!("exec timeout 60 {} sweep", bin());
    for a in args {
        line.push(' ');
        line.push_str(a);
    }
    line.push_str(" --json");
    if let Some(n) = ulimit {
        line = format!("ulimit -n {n} && {line}");
    }
    let start = Instant::now();
    let out = Command::new("sh").args(["-c", &line]).output().unwrap();
    let took = start.elapsed();
    let v = parse(&out);
    validate("sweep-v1.json", &v);
    (out.status.code(), v, took)
}

fn expected(port: u64) -> &'static str {
    match port {
        443..=1023 => "open",
        1024..=20000 => "filtered",
        20001..=40000 => "refused",
        _ => "unreachable",
    }
}

fn states(v: &Value, key: &str) -> Vec<(u64, String)> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["port"].as_u64().unwrap(),
                r["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn sweep_reports_exactly_the_router_ranges() {
    let mut lab = lab_or_skip!(NatMode::NoNat);
    nft(&lab, Ns::Router, ROUTER_RULES, "router.nft");
    // Linux rate-limits ICMP errors per destination (a burst of about 6, then 1/s), so behind a
    // real router most ICMP-rejected ports look filtered. Lift the limit in the lab's router
    // so the ICMP range can be checked port by port.
    lab.exec_ok(Ns::Router, &["sysctl", "-qw", "net.ipv4.icmp_ratelimit=0"])
        .unwrap();
    start_target(&mut lab);
    let (code, v) = sweep_in(
        &lab,
        &[
            PUBLIC_IP_1,
            "--udp-ports",
            "3478,3479,5555",
            "--tcp-ports",
            "443-65535",
            "--sample",
            "64",
            "--seed",
            "7",
            "--rate",
            "5000",
        ],
    );
    assert_eq!(code, Some(1), "{v:#}");

    // UDP: answered, rejected with ICMP port unreachable, dropped.
    let udp = states(&v, "udp");
    assert_eq!(
        udp,
        [
            (3478, "answered".to_string()),
            (3479, "port-unreachable".to_string()),
            (5555, "silent".to_string())
        ],
        "{v:#}"
    );
    assert_eq!(v["udp"][2]["tries"], 3);

    // Every sampled TCP port has exactly the state its rule gives, and open ones speak STUN.
    let results = v["tcp_results"].as_array().unwrap();
    assert!(results.len() >= 64, "{}", results.len());
    for r in results {
        let port = r["port"].as_u64().unwrap();
        assert_eq!(r["state"], expected(port), "port {port}: {r}");
        if expected(port) == "open" {
            assert_eq!(r["stun"]["kind"], "answered", "port {port}: {r}");
        }
        // A dropped port had its second try.
        let tries = if expected(port) == "filtered" { 2 } else { 1 };
        assert_eq!(r["tries"], tries, "port {port}: {r}");
    }
    // The summary has four ranges in rule order, each cut within the gap between samples.
    let ranges = v["tcp"]["ranges"].as_array().unwrap();
    let states: Vec<&str> = ranges
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["open", "filtered", "refused", "unreachable"],
        "{v:#}"
    );
    assert_eq!(ranges[0]["start"], 443);
    assert_eq!(ranges[3]["end"], 65535);
    for (r, rule_end) in ranges.iter().zip([1023u64, 20000, 40000]) {
        let end = r["end"].as_u64().unwrap();
        let gap = 65093 / 64 + 1;
        assert!(
            end.abs_diff(rule_end) <= gap,
            "cut at {end}, rule at {rule_end}"
        );
    }
    assert_eq!(v["tcp"]["middlebox"]["kind"], "none-seen");
    // The timeout came down from the measured round trips.
    assert_eq!(v["pacing"]["timeout"], 0.1, "{:#}", v["pacing"]);
}

/// The benchmark's mixed range with the defaults (no --rate): exact states for every port,
/// the polite start earned up to the ceiling, tries timed out at the measured minimum.
#[test]
fn a_full_sweep_through_a_mixed_router_with_the_defaults_is_exact() {
    let mut lab = lab_or_skip!(NatMode::NoNat);
    nft(&lab, Ns::Router, MIXED_RULES, "mixed.nft");
    start_target_with(&mut lab, TARGET_REDIRECT_ALL);
    let start = Instant::now();
    let (code, v) = sweep_in(&lab, &[PUBLIC_IP_1, "--tcp-ports", "443-4000", "--full"]);
    let took = start.elapsed();
    assert_eq!(code, Some(1), "{v:#}");
    let udp = states(&v, "udp");
    assert_eq!(
        udp.iter()
            .map(|(p, s)| (*p, s.as_str()))
            .collect::<Vec<_>>(),
        [
            (80, "silent"),
            (443, "answered"),
            (3478, "silent"),
            (5555, "silent")
        ],
        "{v:#}"
    );
    let tcp = states(&v, "tcp_results");
    assert_eq!(tcp.len(), 3558);
    for (port, state) in &tcp {
        let want = match port {
            443..=1023 => "open",
            2000..=2999 => "refused",
            _ => "filtered",
        };
        assert_eq!(state, want, "port {port}");
    }
    assert_eq!(
        v["tcp"]["text"],
        "443–1023 open, 1024–1999 filtered, 2000–2999 refused, 3000–4000 filtered"
    );
    let stun = v["tcp_results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["stun"]["kind"] == "answered")
        .count();
    assert_eq!(stun, 581);
    let pacing = &v["pacing"];
    assert_eq!(pacing["start_pps"], 250, "{pacing:#}");
    assert_eq!(pacing["ceiling_pps"], 4000, "{pacing:#}");
    assert_eq!(pacing["peak_pps"], 4000, "{pacing:#}");
    assert_eq!(pacing["timeout"], 0.1, "{pacing:#}");
    // Every dropped TCP port was tried twice; the silent UDP ports three times.
    assert_eq!(pacing["resends"], 1977 + 3 * 2, "{pacing:#}");
    // nmap -sT with its defaults takes 5.4 s on this range (BENCHMARKS.md, case (c)); the
    // defaults must not be slower (they take under 2 s, a debug build on a loaded machine
    // included).
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

/// A router that rejects with ICMP and rate-limits its errors (the Linux default): the burst
/// comes back unreachable, the rest silent; the sweep backs off and says what it concludes.
#[test]
fn rate_limited_icmp_errors_are_read_as_such_and_back_off() {
    let mut lab = lab_or_skip!(NatMode::NoNat);
    nft(&lab, Ns::Router, ROUTER_RULES, "router.nft");
    start_target(&mut lab);
    let (_, v) = sweep_in(
        &lab,
        &[
            PUBLIC_IP_1,
            "--udp-ports",
            "none",
            "--tcp-ports",
            "40001-41000",
            "--full",
            "--rate",
            "2000",
        ],
    );
    let t = &v["tcp"];
    let unreachable = t["unreachable"].as_u64().unwrap();
    let filtered = t["filtered"].as_u64().unwrap();
    assert_eq!(unreachable + filtered, 1000, "{t:#}");
    assert!((6..500).contains(&unreachable), "{t:#}");
    let limited = &t["icmp_rate_limited"];
    assert!(limited["silent"].as_u64().unwrap() > 100, "{t:#}");
    assert!(limited["rejected"].as_u64().unwrap() >= 6, "{t:#}");
    assert!(
        t["text"]
            .as_str()
            .unwrap()
            .contains("rate-limit ICMP errors"),
        "{t:#}"
    );
    let pacing = &v["pacing"];
    assert!(pacing["icmp_backoffs"].as_u64().unwrap() >= 1, "{pacing:#}");
    assert!(pacing["final_pps"].as_u64().unwrap() < 2000, "{pacing:#}");
}

#[test]
fn transparent_proxy_that_accepts_every_port_is_flagged() {
    let mut lab = lab_or_skip!(NatMode::NoNat);
    start_target(&mut lab);
    // The router answers every high port itself: a listener that accepts and never speaks.
    let proxy = "
table ip mbox {
    chain pre {
        type nat hook prerouting priority dstnat; policy accept;
        iifname \"lan0\" tcp dport 1024-65535 redirect to :9999
    }
}
";
    // The lab's router names its client-side interface; find it rather than assume.
    let links = lab.exec_in(Ns::Router, &["ip", "-o", "link"]).unwrap();
    let links = String::from_utf8_lossy(&links.stdout).to_string();
    let lan = links
        .lines()
        .filter_map(|l| {
            l.split(':')
                .nth(1)
                .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        })
        .find(|n| n != "lo" && n != "wan0")
        .expect("router LAN interface");
    nft(&lab, Ns::Router, &proxy.replace("lan0", &lan), "proxy.nft");
    let acceptor = "import socket\n\
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
s.bind(('0.0.0.0', 9999)); s.listen(1024)\n\
held=[]\n\
while True:\n    c,_=s.accept(); held.append(c)\n";
    lab.spawn_in(Ns::Router, &["python3", "-c", acceptor])
        .unwrap();
    let start = Instant::now();
    loop {
        let ss = lab.exec_in(Ns::Router, &["ss", "-Htln"]).unwrap();
        if String::from_utf8_lossy(&ss.stdout).contains(":9999") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "acceptor did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, v) = sweep_in(
        &lab,
        &[
            PUBLIC_IP_1,
            "--udp-ports",
            "3478",
            "--sample",
            "64",
            "--seed",
            "7",
            "--rate",
            "5000",
        ],
    );
    let mb = &v["tcp"]["middlebox"];
    assert_eq!(mb["kind"], "accepts-everything", "{v:#}");
    assert!(
        v["tcp"]["text"]
            .as_str()
            .unwrap()
            .contains("transparent proxy")
    );
    // Low ports still reach the real STUN server.
    let r443 = v["tcp_results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["port"] == 443)
        .unwrap();
    assert_eq!(r443["stun"]["kind"], "answered");
}

#[test]
fn raw_sweep_flags_resets_injected_by_the_router() {
    let mut lab = lab_or_skip!(NatMode::NoNat);
    nft(&lab, Ns::Router, ROUTER_RULES, "router.nft");
    lab.exec_ok(Ns::Router, &["sysctl", "-qw", "net.ipv4.icmp_ratelimit=0"])
        .unwrap();
    start_target(&mut lab);
    let (_, v) = sweep_in(
        &lab,
        &[
            PUBLIC_IP_1,
            "--raw",
            "--udp-ports",
            "none",
            "--tcp-ports",
            "443-65535",
            "--sample",
            "64",
            "--seed",
            "7",
            "--connect-timeout",
            "800",
            "--rate",
            "5000",
        ],
    );
    assert_eq!(v["mode"], "raw");
    // SYN-ACKs come from the target, one hop behind the router (TTL 63); the router's own
    // resets start at 64.
    assert_eq!(v["raw"]["syn_ack_ttls"], serde_json::json!([63]), "{v:#}");
    assert_eq!(v["raw"]["rst_ttls"], serde_json::json!([64]), "{v:#}");
    let suspects: Vec<u64> = v["raw"]["injected_suspects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    assert!(!suspects.is_empty());
    assert!(
        suspects.iter().all(|p| (20001..=40000).contains(p)),
        "{suspects:?}"
    );
    // The ICMP errors come from the router (its address on the client's side), read on the
    // raw ICMP socket and matched to the SYN they quote.
    assert_eq!(
        v["raw"]["icmp_sources"],
        serde_json::json!([ROUTER_LAN_IP]),
        "{v:#}"
    );
    let mut unreachable = 0;
    for r in v["tcp_results"].as_array().unwrap() {
        let port = r["port"].as_u64().unwrap();
        assert_eq!(r["state"], expected(port), "port {port}");
        unreachable += usize::from(r["state"] == "unreachable");
    }
    assert!(unreachable > 0, "{v:#}");
    // The answers set the timeout for the wait after the last SYN.
    assert_eq!(v["pacing"]["timeout"], 0.1, "{:#}", v["pacing"]);
}

/// Under `ulimit -n 64`, 201 UDP ports (one with a STUN server): every port comes back with
/// what it did, the answer is kept, and the run is degraded, not "nothing answered".
#[test]
fn under_a_descriptor_limit_of_64_every_udp_port_has_a_state_and_the_answer_is_kept() {
    let base = free_port_range("127.0.0.1", 201);
    let answering = base + 100;
    let _server = serve(&["--listen", &format!("127.0.0.1:{answering}"), "--no-tcp"]);
    let range = format!("{base}-{}", base + 200);
    let (code, v, _) = sweep_here(
        &["127.0.0.1", "--udp-ports", &range, "--tcp-ports", "none"],
        Some(64),
    );
    let udp = states(&v, "udp");
    assert_eq!(udp.len(), 201, "{v:#}");
    for (port, state) in &udp {
        let want = if *port == u64::from(answering) {
            "answered"
        } else {
            "port-unreachable"
        };
        assert_eq!(state, want, "port {port}: {v:#}");
    }
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(v["errors"], serde_json::json!([]));
}

/// The same limit on a TCP sweep: one socket's window, every port answered.
#[test]
fn under_a_descriptor_limit_of_64_a_tcp_sweep_reports_every_port() {
    let base = free_port_range("127.0.0.1", 300);
    let listener = std::net::TcpListener::bind(("127.0.0.1", base + 150)).unwrap();
    let range = format!("{base}-{}", base + 299);
    let (code, v, _) = sweep_here(
        &[
            "127.0.0.1",
            "--udp-ports",
            "none",
            "--tcp-ports",
            &range,
            "--full",
            "--rate",
            "100000",
            "--no-stun",
        ],
        Some(64),
    );
    let tcp = states(&v, "tcp_results");
    assert_eq!(tcp.len(), 300);
    for (port, state) in &tcp {
        let want = if *port == u64::from(base + 150) {
            "open"
        } else {
            "refused"
        };
        assert_eq!(state, want, "port {port}");
    }
    assert_eq!(code, Some(1));
    drop(listener);
}

/// So few descriptors that the sweep's own sockets cannot be had: the limit is walked down
/// to where the process cannot start at all. Every run that starts reports every port, a
/// port without a socket as `error` with EMFILE; a run that probed nothing says so and exits
/// 2, never 0; a process that cannot even start says why in one line.
#[test]
fn with_no_descriptor_to_spare_every_port_is_an_error_with_emfile() {
    let base = free_port_range("127.0.0.1", 20);
    let udp = format!("{base}-{}", base + 9);
    let tcp = format!("{}-{}", base + 10, base + 19);
    let mut emfile_runs = 0;
    for limit in 8..=14 {
        let line = format!(
            "ulimit -n {limit} && exec timeout 60 {} sweep 127.0.0.1 --udp-ports {udp} \
             --tcp-ports {tcp} --full --json",
            bin()
        );
        let out = Command::new("sh").args(["-c", &line]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if out.stdout.is_empty() {
            // The runtime itself could not be set up.
            assert_eq!(out.status.code(), Some(70), "limit {limit}: {err}");
            assert_eq!(err.lines().count(), 1, "limit {limit}: {err}");
            assert!(err.contains("Too many open files"), "limit {limit}: {err}");
            continue;
        }
        let v = parse(&out);
        validate("sweep-v1.json", &v);
        let ports: Vec<&Value> = v["udp"]
            .as_array()
            .unwrap()
            .iter()
            .chain(v["tcp_results"].as_array().unwrap())
            .collect();
        assert_eq!(ports.len(), 20, "limit {limit}: {v:#}");
        let mut errors = 0;
        for r in &ports {
            match r["state"].as_str().unwrap() {
                "port-unreachable" | "refused" => {}
                "error" => {
                    assert_eq!(r["error"]["errno"], "EMFILE", "limit {limit}: {r}");
                    errors += 1;
                }
                other => panic!("limit {limit}: state {other}: {r}"),
            }
        }
        assert_ne!(out.status.code(), Some(0), "limit {limit}: {v:#}");
        if errors > 0 {
            emfile_runs += 1;
            assert_eq!(
                v["errors"][0]["errno"], "EMFILE",
                "limit {limit}: {:#}",
                v["errors"]
            );
            assert_eq!(v["errors"][0]["ports"], errors, "limit {limit}");
        }
        if errors == 20 {
            assert_eq!(out.status.code(), Some(2), "limit {limit}");
            let why = v["not_probed"].as_str().unwrap();
            assert!(why.starts_with("EMFILE"), "limit {limit}: {why}");
        }
    }
    assert!(
        emfile_runs > 0,
        "no limit from 8 to 14 left the sweep short of descriptors"
    );
}

/// A local policy (this host's OUTPUT chain drops a datagram: EPERM; a `prohibit` route:
/// EACCES) and a missing route (ENETUNREACH) are states with their errno, counted; a run
/// where nothing could be probed says why and does not exit 0.
#[test]
fn local_errors_are_states_with_their_errno_and_nothing_probed_is_not_success() {
    let mut lab = lab_or_skip!(NatMode::NoNat);
    start_target_with(&mut lab, TARGET_REDIRECT_ALL);
    let local = "
table inet localpolicy {
    chain out {
        type filter hook output priority filter; policy accept;
        udp dport 5555 drop
        tcp dport 7000 drop
    }
}
";
    nft(&lab, Ns::Client, local, "local.nft");
    let (code, v) = sweep_in(
        &lab,
        &[
            PUBLIC_IP_1,
            "--udp-ports",
            "3478,5555",
            "--tcp-ports",
            "6999-7001",
            "--full",
        ],
    );
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(v["udp"][0]["state"], "answered");
    assert_eq!(v["udp"][1]["state"], "error", "{v:#}");
    assert_eq!(v["udp"][1]["error"]["errno"], "EPERM", "{v:#}");
    assert_eq!(v["udp"][1]["tries"], 0, "{v:#}");
    // TCP retries a SYN its own host dropped (connect(2) does not fail): to the sweep that
    // port is dropped, like one a router drops.
    let tcp = states(&v, "tcp_results");
    assert_eq!(
        tcp.iter()
            .map(|(p, s)| (*p, s.as_str()))
            .collect::<Vec<_>>(),
        [(6999, "open"), (7000, "filtered"), (7001, "open")],
        "{v:#}"
    );
    assert_eq!(
        v["errors"],
        serde_json::json!([{"errno": "EPERM", "message": "Operation not permitted", "ports": 1}])
    );

    // A route that prohibits the target, then no route at all: nothing can be sent, every
    // port is an error with its errno, the run says why and exits 2.
    let target = format!("{PUBLIC_IP_1}/32");
    lab.exec_ok(Ns::Client, &["ip", "route", "add", "prohibit", &target])
        .unwrap();
    for errno in ["EACCES", "ENETUNREACH"] {
        if errno == "ENETUNREACH" {
            lab.exec_ok(Ns::Client, &["ip", "route", "del", "prohibit", &target])
                .unwrap();
            lab.exec_ok(Ns::Client, &["ip", "route", "del", "default"])
                .unwrap();
        }
        let (code, v) = sweep_in(
            &lab,
            &[
                PUBLIC_IP_1,
                "--udp-ports",
                "3478",
                "--tcp-ports",
                "443-445",
                "--full",
            ],
        );
        assert_eq!(code, Some(2), "{v:#}");
        let not_probed = v["not_probed"].as_str().unwrap();
        assert!(
            not_probed.starts_with(errno) && not_probed.ends_with("on 4 ports"),
            "{not_probed}"
        );
        assert!(
            v["udp"]
                .as_array()
                .unwrap()
                .iter()
                .chain(v["tcp_results"].as_array().unwrap())
                .all(|r| r["state"] == "error" && r["error"]["errno"] == errno),
            "{v:#}"
        );
    }
    // People read the same.
    let out = lab
        .exec_in(
            Ns::Client,
            &[
                bin(),
                "sweep",
                PUBLIC_IP_1,
                "--udp-ports",
                "3478",
                "--tcp-ports",
                "none",
            ],
        )
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("BLOCKED   Not probed: ENETUNREACH"),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(2));
}

/// A broadcast, multicast or unspecified target is not a host: refused before anything is
/// sent, exit 64, one line.
#[test]
fn targets_that_are_not_a_host_are_refused() {
    for target in ["255.255.255.255", "224.0.0.251", "0.0.0.0", "ff02::1", "::"] {
        let out = crate::common::stunmap(&["sweep", target, "--json"]);
        assert_eq!(out.status.code(), Some(64), "{target}");
        assert!(out.stdout.is_empty(), "{target}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("not a") || err.contains("broadcast"), "{err}");
    }
}

/// Every numeric flag has a range; outside it, exit 64.
#[test]
fn numeric_flags_out_of_range_exit_64() {
    for bad in [
        ["--rate", "0"],
        ["--rate", "100000001"],
        ["--concurrency", "0"],
        ["--connect-timeout", "0"],
        ["--connect-timeout", "600000"],
        ["--udp-timeout", "0"],
        ["--sample", "0"],
        ["--tcp-ports", "5-1"],
        ["--udp-ports", "0"],
    ] {
        let out = crate::common::stunmap(&["sweep", "127.0.0.1", bad[0], bad[1]]);
        assert_eq!(out.status.code(), Some(64), "{bad:?}");
    }
}

/// `--rate 10`, counted where the datagrams arrive: 20 silent UDP ports (each probed up to
/// three times) get no more than the rate allows over the run.
#[test]
fn the_udp_probes_keep_to_the_rate_at_the_receiver() {
    let base = free_port_range("127.0.0.1", 20);
    let socks: Vec<UdpSocket> = (base..base + 20)
        .map(|p| {
            let s = UdpSocket::bind(("127.0.0.1", p)).unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let range = format!("{base}-{}", base + 19);
    let (_, v, took) = sweep_here(
        &[
            "127.0.0.1",
            "--udp-ports",
            &range,
            "--tcp-ports",
            "none",
            "--rate",
            "10",
            "--udp-timeout",
            "1500",
        ],
        None,
    );
    let mut buf = [0u8; 512];
    let received: usize = socks
        .iter()
        .map(|s| std::iter::from_fn(|| s.recv(&mut buf).ok()).count())
        .sum();
    let states = states(&v, "udp");
    assert_eq!(states.len(), 20);
    assert!(states.iter().all(|(_, s)| s == "silent"), "{v:#}");
    let tries: u64 = v["udp"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["tries"].as_u64().unwrap())
        .sum();
    assert_eq!(tries as usize, received, "the report counts what was sent");
    assert!(received >= 20, "{received}");
    // One token at the start, then ten a second (the process's own run is shorter than
    // what this test measures around it).
    let most = 1.0 + 10.0 * took.as_secs_f64();
    assert!(
        received as f64 <= most,
        "{received} datagrams in {took:?} at --rate 10"
    );
}

/// `--ndjson` streams one event per port as it is known (every port, each once) and the
/// report last; `--prom` and `--html` files are written from the same report.
#[test]
fn ndjson_events_prometheus_and_html_come_from_the_same_run() {
    let base = free_port_range("127.0.0.1", 40);
    let _server = serve(&["--listen", &format!("127.0.0.1:{}", base + 5)]);
    let dir = tempfile::tempdir().unwrap();
    let prom = dir.path().join("sweep.prom");
    let html = dir.path().join("sweep.html");
    let udp = format!("{},{}", base + 5, base + 6);
    let tcp = format!("{}-{}", base, base + 39);
    let out = crate::common::stunmap(&[
        "sweep",
        "127.0.0.1",
        "--udp-ports",
        &udp,
        "--tcp-ports",
        &tcp,
        "--full",
        "--ndjson",
        "--prom",
        prom.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/docs/schema/sweep-v1.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    // The events' schema: the report schema's $defs with the event as the root.
    let mut events_schema = serde_json::json!({ "$defs": schema["$defs"].clone() });
    events_schema["oneOf"] = schema["$defs"]["event"]["oneOf"].clone();
    let events = jsonschema::validator_for(&events_schema).unwrap();
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (last, rest) = lines.split_last().unwrap();
    assert_eq!(last["event"], "report");
    validate("sweep-v1.json", &last["report"]);
    assert_eq!(rest[0]["event"], "start");
    let mut tcp_seen = Vec::new();
    let mut udp_seen = Vec::new();
    for e in rest {
        let errors: Vec<String> = events.iter_errors(e).map(|x| x.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}\n{e:#}");
        match e["event"].as_str().unwrap() {
            "tcp-port" => tcp_seen.push(e["port"].as_u64().unwrap()),
            "udp-port" => udp_seen.push((e["port"].as_u64().unwrap(), e["state"].clone())),
            _ => {}
        }
    }
    tcp_seen.sort_unstable();
    assert_eq!(
        tcp_seen,
        (u64::from(base)..u64::from(base) + 40).collect::<Vec<_>>()
    );
    udp_seen.sort_by_key(|u| u.0);
    assert_eq!(udp_seen[0].1, "answered");
    assert_eq!(udp_seen[1].1, "port-unreachable");

    let text = std::fs::read_to_string(&prom).unwrap();
    assert!(
        text.contains(&format!(
            "stunmap_sweep_tcp_ports{{target=\"127.0.0.1\",range=\"{tcp}\",state=\"open\"}} 1"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "stunmap_sweep_udp_answered{{target=\"127.0.0.1\",port=\"{}\"}} 1",
            base + 5
        )),
        "{text}"
    );
    assert!(text.contains("stunmap_sweep_udp_rtt_seconds{"), "{text}");
    assert!(text.contains("stunmap_sweep_tcp_rtt_seconds{"), "{text}");
    if crate::common::have("promtool") {
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
        let check = child.wait_with_output().unwrap();
        assert!(
            check.status.success(),
            "{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
    }
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains(r#"id="port-map""#), "no port map");
    assert!(
        page.contains(r#"data-ports="42""#),
        "two UDP boxes, forty TCP ticks"
    );
    assert!(page.contains(r#"class="udp-port" data-port=""#));
}

/// Start stunmap `args` in `ns` (or here), SIGINT it after `after`: its output and how long
/// it took to exit after the signal.
fn interrupt(lab: Option<&Lab>, args: &[&str], after: Duration) -> (Output, Duration) {
    let mut cmd = match lab {
        Some(lab) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &lab.ns_name(Ns::Client), bin()]);
            c
        }
        None => Command::new(bin()),
    };
    // `ip netns exec` execs the program: the child's pid is stunmap's.
    let child = cmd
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    // SAFETY: sending a signal to our own child process.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let sent = Instant::now();
    let out = child.wait_with_output().unwrap();
    (out, sent.elapsed())
}

fn assert_stopped(out: &Output, took: Duration, phase: &str) -> Value {
    // About 0.2 s (the sweeps look at the cancel every 100 ms at the latest); the bound
    // leaves room for a loaded machine.
    assert!(
        took < Duration::from_millis(600),
        "{phase}: exit took {took:?}"
    );
    assert_eq!(
        out.status.code(),
        Some(130),
        "{phase}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = parse(out);
    validate("sweep-v1.json", &v);
    assert_eq!(v["interrupted"], true, "{phase}");
    assert_eq!(v["exit_code"], 130, "{phase}");
    v
}

/// SIGINT in each phase (UDP probes, connects, raw SYNs): the run stops within a fraction
/// of a second, prints what it has marked interrupted, exits 130; ports it did not finish
/// are not probed, never silent or filtered.
#[test]
fn sigint_stops_every_phase_at_once_with_a_partial_report() {
    // UDP: silent ports with a long give-up time.
    let base = free_port_range("127.0.0.1", 30);
    let _socks: Vec<UdpSocket> = (base..base + 30)
        .map(|p| UdpSocket::bind(("127.0.0.1", p)).unwrap())
        .collect();
    let range = format!("{base}-{}", base + 29);
    let (out, took) = interrupt(
        None,
        &[
            "sweep",
            "127.0.0.1",
            "--udp-ports",
            &range,
            "--tcp-ports",
            "none",
            "--udp-timeout",
            "30000",
            "--json",
        ],
        Duration::from_millis(700),
    );
    let v = assert_stopped(&out, took, "udp");
    let udp = v["udp"].as_array().unwrap();
    assert_eq!(udp.len(), 30);
    assert!(
        udp.iter()
            .all(|u| u["state"] == "not-probed" && u["tries"].as_u64().unwrap() >= 1),
        "{v:#}"
    );

    let mut lab = lab_or_skip!(NatMode::NoNat);
    nft(&lab, Ns::Router, ROUTER_RULES, "router.nft");
    start_target(&mut lab);
    for (phase, extra) in [("connect", None), ("raw", Some("--raw"))] {
        let mut args = vec![
            "sweep",
            PUBLIC_IP_1,
            "--udp-ports",
            "none",
            "--tcp-ports",
            "1024-3000",
            "--full",
            "--connect-timeout",
            "60000",
        ];
        args.extend(extra);
        // A range of about 2,000 ports: the time measured includes writing the report, and
        // a report of tens of thousands of ports takes a quarter of a second to serialize
        // in a debug build.
        let mut json = args.clone();
        json.push("--json");
        let (out, took) = interrupt(Some(&lab), &json, Duration::from_millis(700));
        let v = assert_stopped(&out, took, phase);
        let tcp = v["tcp_results"].as_array().unwrap();
        assert_eq!(tcp.len(), 1977, "{phase}");
        assert!(
            tcp.iter().all(|t| t["state"] == "not-probed"),
            "{phase}: a port without its answer or timeout must not be filtered"
        );
        // People see the mark.
        let (out, took) = interrupt(Some(&lab), &args, Duration::from_millis(700));
        assert!(took < Duration::from_millis(600), "{phase}: {took:?}");
        assert_eq!(out.status.code(), Some(130));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with("INTERRUPTED: stopped by a signal"),
            "{text}"
        );
    }
}
