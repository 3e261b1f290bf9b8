//! `stunmap stun` against `stunmap serve` on loopback: UDP and TCP, IPv4 and IPv6, RFC 5780
//! alternate address, silence, bad usage.

use crate::common::{free_port, json, serve, stunmap};

#[test]
fn udp_v4_and_v6_report_mapped_address_rtt_and_server_details() {
    let port = free_port("127.0.0.1");
    let alt = free_port("127.0.0.1");
    let _s = serve(&[
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--listen",
        &format!("[::1]:{port}"),
        "--alt-address",
        "127.0.0.2",
        "--alt-port",
        &alt.to_string(),
        "--software",
        "lab reflector",
    ]);
    let out = stunmap(&[
        "stun",
        &format!("127.0.0.1:{port}"),
        &format!("[::1]:{port}"),
        "--count",
        "4",
        "--interval",
        "10",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    crate::common::validate("stun-v1.json", &v);
    assert_eq!(v["schema"], "stunmap.stun/1");
    assert_eq!(v["interrupted"], false);
    let targets = v["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2);
    for (t, ip) in targets.iter().zip(["127.0.0.1", "::1"]) {
        assert_eq!(t["answered"], 4, "{t}");
        assert_eq!(t["loss"], 0.0);
        let mapped: std::net::SocketAddr = t["mapped"][0].as_str().unwrap().parse().unwrap();
        assert_eq!(mapped.ip().to_string(), ip);
        assert_ne!(mapped.port(), 0);
        assert_eq!(
            t["mapped"].as_array().unwrap().len(),
            1,
            "one socket, one mapping"
        );
        assert_eq!(t["software"], "lab reflector");
        let rtt = &t["rtt"];
        assert_eq!(rtt["samples"], 4);
        let (min, med, max) = (
            rtt["min"].as_f64().unwrap(),
            rtt["median"].as_f64().unwrap(),
            rtt["max"].as_f64().unwrap(),
        );
        assert!(0.0 < min && min <= med && med <= max && max < 1.0, "{rtt}");
        assert_eq!(
            t["response_origin"],
            format!("{}", t["target"].as_str().unwrap())
        );
    }
    // IPv4 has an alternate address and port, so OTHER-ADDRESS is sent; IPv6 has no
    // alternate IP, so none.
    assert_eq!(targets[0]["other_address"], format!("127.0.0.2:{alt}"));
    assert!(targets[1]["other_address"].is_null());
}

#[test]
fn tcp_binding_against_serve() {
    let port = free_port("127.0.0.1");
    let _s = serve(&["--listen", &format!("127.0.0.1:{port}")]);
    let out = stunmap(&[
        "stun",
        "--tcp",
        &format!("127.0.0.1:{port}"),
        "--count",
        "2",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    crate::common::validate("stun-v1.json", &v);
    let t = &v["targets"][0];
    assert_eq!(t["transport"], "tcp");
    assert_eq!(t["state"], "answered");
    assert_eq!(t["answered"], 2);
    assert!(t["connect"].as_str().unwrap().starts_with("connected"));
}

#[test]
fn silent_port_exits_2_and_counts_loss() {
    // Nothing listens on this port (reserved right now, then released).
    let port = free_port("127.0.0.1");
    let out = stunmap(&[
        "stun",
        &format!("127.0.0.1:{port}"),
        "--count",
        "2",
        "--timeout",
        "300",
        "--rto",
        "100",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let v = json(&out);
    crate::common::validate("stun-v1.json", &v);
    let t = &v["targets"][0];
    assert_eq!(t["state"], "silent");
    assert_eq!(t["sent"], 2);
    assert_eq!(t["answered"], 0);
    assert_eq!(t["loss"], 1.0);
    assert!(t["rtt"].is_null());
}

#[test]
fn some_targets_silent_is_degraded_exit_1() {
    let port = free_port("127.0.0.1");
    let silent = free_port("127.0.0.1");
    let _s = serve(&["--listen", &format!("127.0.0.1:{port}"), "--no-tcp"]);
    let out = stunmap(&[
        "stun",
        &format!("127.0.0.1:{port}"),
        &format!("127.0.0.1:{silent}"),
        "--count",
        "1",
        "--timeout",
        "300",
    ]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn bad_usage_exits_64_with_one_line() {
    for args in [
        vec!["stun", "127.0.0.1:0"],
        vec!["stun", "127.0.0.1:9-3"],
        vec!["stun", "[::1"],
        vec!["stun", "127.0.0.1", "--count", "0"],
        vec!["stun", "127.0.0.1", "--rate", "abc"],
        // Every numeric flag has a range.
        vec!["stun", "127.0.0.1", "--max-in-flight", "0"],
        vec!["stun", "127.0.0.1", "--rto", "18446744073709551615"],
        vec!["stun", "127.0.0.1", "--count", "4294967295"],
        vec!["stun", "127.0.0.1", "--rate", "0"],
        vec!["stun", "127.0.0.1", "--burst", "0"],
        vec!["stun", "127.0.0.1", "--timeout", "0"],
        vec!["stun", "127.0.0.1", "--interval", "99999999999"],
        vec!["stun", "127.0.0.1", "--deadline", "0"],
        vec!["stun", "127.0.0.1", "--deadline", "1e300"],
        vec!["stun", "127.0.0.1", "--deadline", "NaN"],
        vec!["stun"],
        vec!["serve", "--listen", "nonsense"],
        vec![
            "serve",
            "--listen",
            "0.0.0.0:3478",
            "--alt-address",
            "127.0.0.2",
        ],
        vec!["no-such-command"],
        vec!["sweep", "127.0.0.1", "--tcp-ports", "70000"],
        vec!["sweep", "127.0.0.1", "--rate", "0"],
        // Raw SYNs are IPv4 only (as root the privilege check passes and the family fails).
        vec![
            "sweep",
            "::1",
            "--raw",
            "--udp-ports",
            "none",
            "--tcp-ports",
            "9",
        ],
    ] {
        let out = stunmap(&args);
        assert_eq!(
            out.status.code(),
            Some(64),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stderr.is_empty());
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn port_range_target_probes_every_port() {
    let base = crate::common::free_port_range("127.0.0.1", 20);
    let _s = serve(&[
        "--listen",
        &format!("127.0.0.1:{base}-{}", base + 19),
        "--no-tcp",
    ]);
    let out = stunmap(&[
        "stun",
        &format!("127.0.0.1:{base}-{}", base + 19),
        "--count",
        "3",
        "--interval",
        "0",
        "--rate",
        "100000",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    let targets = v["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 20);
    assert!(targets.iter().all(|t| t["answered"] == 3));
    assert_eq!(v["engine"]["unmatched"], 0);
    assert_eq!(v["engine"]["datagrams_sent"], 60);
}

#[cfg(unix)]
#[test]
fn sigint_stops_the_run_promptly_and_the_json_says_interrupted() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let port = free_port("127.0.0.1");
    let child = Command::new(crate::common::bin())
        .args([
            "stun",
            &format!("127.0.0.1:{port}"),
            "--count",
            "1000",
            "--interval",
            "10",
            "--timeout",
            "5000",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: sending a signal to our own child process.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let sent_at = Instant::now();
    let out = child.wait_with_output().unwrap();
    let took = sent_at.elapsed();
    assert!(took < Duration::from_secs(3), "exit took {took:?}");
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    crate::common::validate("stun-v1.json", &v);
    assert_eq!(v["interrupted"], true);
    let sent = v["targets"][0]["sent"].as_u64().unwrap();
    assert!(sent > 0 && sent < 1000, "partial results: {sent}");
}
