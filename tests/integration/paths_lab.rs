//! The path checks end to end, on real kernel networking in namespaces (support::paths_lab):
//! a route into a tunnel (a tun device named wt0) avoided by leaving by the LAN interface; a
//! proven port mapping on miniupnpd, deleted afterwards (also on SIGINT); double NAT behind a
//! carrier NAT; the path MTU of a narrow link with ICMP passed and dropped; WireGuard-sized
//! datagrams through a TURN relay on a clean path and past a rule that drops big datagrams; a
//! captive portal that redirects port 80. And the bad-input side: flags that name what the host does not
//! have are one-line usage errors.

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{bin, json, validate};
use crate::paths_lab_or_skip;
use crate::support::paths_lab::{CLIENT, HOME_LAN, Ns, OUTER, PUBLIC_1, PathsLab, Upstream};

/// `stunmap check --stun SERVER --json` in the client, nothing resolved, no NetBird.
fn check(lab: &PathsLab, server: &str, extra: &[&str]) -> (Value, Output) {
    let mut cmd = vec![
        "timeout",
        "40",
        bin(),
        "check",
        "--stun",
        server,
        "--no-netbird",
        "--dns-server",
        "127.0.0.1:9",
        "--timeout",
        "1500",
        "--json",
    ];
    cmd.extend_from_slice(extra);
    let out = lab.exec_in(Ns::Client, &cmd).expect("run stunmap check");
    let v = json(&out);
    validate("check-v1.json", &v);
    (v, out)
}

fn paths(v: &Value) -> &Value {
    &v["paths"]
}

fn stun_row(v: &Value) -> &Value {
    v["services"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["probe"] == "stun")
        .unwrap_or_else(|| panic!("no stun row: {v:#}"))
}

#[test]
fn a_route_into_the_tunnel_is_avoided_and_reported() {
    let mut lab = paths_lab_or_skip!(Upstream::Direct);
    let server = lab.start_reflector(bin()).expect("reflector");
    lab.tunnel_to(PUBLIC_1).expect("wt0");
    let start = Instant::now();
    let (v, _) = check(&lab, &server, &["--no-portmap", "--no-pmtu"]);
    assert!(start.elapsed() < Duration::from_secs(20));
    let r = &paths(&v)["routes"][0];
    assert_eq!(r["route_interface"], "wt0", "{r:#}");
    assert_eq!(r["tunnel"]["sign"], "name", "{r:#}");
    assert_eq!(r["egress"]["decision"], "avoided-tunnel", "{r:#}");
    assert_eq!(r["egress"]["via"], "lan0", "{r:#}");
    assert_eq!(r["egress"]["source"], CLIENT, "{r:#}");
    let b = &paths(&v)["binding"][0];
    assert_eq!(
        (b["interface"].as_str(), b["automatic"].as_bool()),
        (Some("lan0"), Some(true))
    );
    // wt0 swallows what is routed into it: an answer proves the probe left by lan0.
    let row = stun_row(&v);
    assert_eq!(row["state"], "ok", "{row:#}");
    assert!(row["detail"].as_str().unwrap().contains(OUTER), "{row:#}");
    let reasons = v["verdict"]["reasons"].to_string();
    assert!(
        reasons.contains("goes into the VPN tunnel wt0"),
        "{reasons}"
    );

    // Following the routing table, the probes vanish into the tunnel, and the report says the
    // results describe the tunnel.
    let (v, _) = check(
        &lab,
        &server,
        &["--no-portmap", "--no-pmtu", "--via-tunnel"],
    );
    let r = &paths(&v)["routes"][0];
    assert_eq!(r["egress"]["decision"], "through-tunnel", "{r:#}");
    assert_eq!(stun_row(&v)["state"], "blocked");
    let f = &paths(&v)["findings"][0];
    assert_eq!(
        (f["kind"].as_str(), f["severity"].as_str()),
        (Some("tunnel"), Some("high"))
    );
    assert!(
        v["verdict"]["headline"]
            .as_str()
            .unwrap()
            .contains("VPN tunnel"),
        "{:#}",
        v["verdict"]
    );

    // --interface decides, and the human report names it.
    let out = lab
        .exec_in(
            Ns::Client,
            &[
                "timeout",
                "40",
                bin(),
                "check",
                "--stun",
                &server,
                "--no-netbird",
                "--dns-server",
                "127.0.0.1:9",
                "--no-portmap",
                "--no-pmtu",
                "--interface",
                "lan0",
            ],
        )
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sent from interface lan0 as asked"), "{text}");
    assert!(text.contains("answered; public address"), "{text}");
}

#[test]
fn a_proven_mapping_is_created_verified_and_deleted() {
    let mut lab = paths_lab_or_skip!(Upstream::Direct);
    if let Err(why) = lab.start_miniupnpd() {
        crate::support::lab::report_skip(module_path!(), &why);
        return;
    }
    let server = lab.start_reflector(bin()).expect("reflector");
    let (v, out) = check(&lab, &server, &["--no-pmtu"]);
    let g = &paths(&v)["gateway"];
    assert_eq!(g["gateway"], HOME_LAN, "{g:#}");
    let m = &g["mapping"];
    assert_eq!(
        m["result"]["result"],
        "created",
        "{m:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(m["verification"]["result"], "reached", "{m:#}");
    assert_eq!(m["verification"]["from"], "11.0.0.11:3479", "{m:#}");
    assert_eq!(m["deletion"]["result"], "confirmed", "{m:#}");
    assert_eq!(g["double_nat"]["verdict"], "single", "{g:#}");
    // The gateway's table holds nothing of ours afterwards.
    assert!(
        lab.upnp_redirects().is_empty(),
        "{:?}",
        lab.upnp_redirects()
    );
    let reasons = v["verdict"]["reasons"].to_string();
    assert!(
        reasons.contains("mapping on 192.168.1.1 works"),
        "{reasons}"
    );
}

#[test]
fn behind_a_carrier_nat_the_gateway_says_so_and_port_mapping_does_not_help() {
    let mut lab = paths_lab_or_skip!(Upstream::Carrier {
        home_wan: "100.64.1.2",
        carrier_in: "100.64.1.1",
    });
    if let Err(why) = lab.start_miniupnpd() {
        crate::support::lab::report_skip(module_path!(), &why);
        return;
    }
    let server = lab.start_reflector(bin()).expect("reflector");
    let (v, _) = check(&lab, &server, &["--no-pmtu"]);
    let g = &paths(&v)["gateway"];
    let d = &g["double_nat"];
    assert_eq!(d["verdict"], "double", "{g:#}");
    assert_eq!(d["public"], OUTER, "{g:#}");
    // miniupnpd will not name a reserved external address: NAT-PMP says network failure.
    assert_eq!(g["external"]["nat_pmp_no_public"], true, "{g:#}");
    assert_ne!(g["mapping"]["verification"]["result"], "reached", "{g:#}");
    assert!(
        lab.upnp_redirects().is_empty(),
        "{:?}",
        lab.upnp_redirects()
    );
    let f: Vec<&Value> = paths(&v)["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "double-nat")
        .collect();
    assert_eq!(f.len(), 1, "{:#}", paths(&v)["findings"]);
    assert!(
        f[0]["summary"].as_str().unwrap().starts_with("double NAT"),
        "{:#}",
        f[0]
    );
    assert!(
        f[0]["fix"]["title"].as_str().unwrap().contains("public"),
        "{:#}",
        f[0]
    );
}

#[test]
fn a_mapping_beyond_which_a_nat_drops_is_unproven_and_deleted_also_on_sigint() {
    // The home router looks public (11.0.1.2) but sits behind another NAT: miniupnpd maps,
    // the carrier NAT drops the unsolicited answer.
    let mut lab = paths_lab_or_skip!(Upstream::Carrier {
        home_wan: "11.0.1.2",
        carrier_in: "11.0.1.1",
    });
    if let Err(why) = lab.start_miniupnpd() {
        crate::support::lab::report_skip(module_path!(), &why);
        return;
    }
    let server = lab.start_reflector(bin()).expect("reflector");
    let (v, _) = check(&lab, &server, &["--no-pmtu"]);
    let g = &paths(&v)["gateway"];
    assert_eq!(g["mapping"]["result"]["result"], "created", "{g:#}");
    assert_eq!(
        g["mapping"]["verification"]["result"], "not-reached",
        "{g:#}"
    );
    assert_eq!(g["mapping"]["deletion"]["result"], "confirmed", "{g:#}");
    assert_eq!(g["double_nat"]["verdict"], "double", "{g:#}");
    assert_eq!(g["double_nat"]["kind"], "mismatch", "{g:#}");
    assert!(lab.upnp_redirects().is_empty());

    // SIGINT while the mapping exists (the proof waits for an answer that never comes): the
    // mapping is deleted before the process exits 130.
    let mut child = lab
        .command(
            Ns::Client,
            &[
                bin(),
                "check",
                "--stun",
                &server,
                "--no-netbird",
                "--dns-server",
                "127.0.0.1:9",
                "--no-pmtu",
                "--rto",
                "500",
                "--json",
            ],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while lab.upnp_redirects().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no mapping appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(
        lab.upnp_redirects().is_empty(),
        "{:?}",
        lab.upnp_redirects()
    );
}

#[test]
fn a_narrow_link_with_icmp_is_measured_and_without_icmp_is_a_black_hole() {
    let mut lab = paths_lab_or_skip!(Upstream::Direct);
    let server = lab.start_reflector(bin()).expect("reflector");
    lab.narrow_wan(1400).unwrap();
    let (v, _) = check(&lab, &server, &["--no-portmap", "--rto", "150"]);
    let m = &paths(&v)["path_mtu"][0];
    assert_eq!(m["failure"], "icmp", "{m:#}");
    assert_eq!(m["icmp_mtu"], 1400, "{m:#}");
    let lp = m["largest_passed"].as_u64().unwrap();
    assert!((1392..=1400).contains(&lp), "{m:#}");
    assert_eq!(m["wireguard_fits"], true, "{m:#}");

    // Narrower than WireGuard's packets, and the router's ICMP dropped: a black hole, the
    // verdict degraded with the MTU fix.
    lab.narrow_wan(1300).unwrap();
    lab.drop_frag_needed().unwrap();
    let start = Instant::now();
    let (v, _) = check(&lab, &server, &["--no-portmap", "--rto", "150"]);
    assert!(start.elapsed() < Duration::from_secs(20));
    let m = &paths(&v)["path_mtu"][0];
    assert_eq!(m["failure"], "black-hole", "{m:#}");
    let lp = m["largest_passed"].as_u64().unwrap();
    assert!((1292..=1300).contains(&lp), "{m:#}");
    assert_eq!(m["wireguard_fits"], false, "{m:#}");
    assert_eq!(v["verdict"]["status"], "degraded", "{:#}", v["verdict"]);
    let fixes = v["fixes"].to_string();
    assert!(fixes.contains("netbird up --mtu"), "{fixes}");
    assert!(fixes.contains("TCPMSS"), "{fixes}");
}

#[test]
fn a_captive_portal_goes_first() {
    let mut lab = paths_lab_or_skip!(Upstream::Direct);
    let server = lab.start_reflector(bin()).expect("reflector");
    // The management host answers plain HTTP with the expected redirect to HTTPS.
    lab.http_server(
        Ns::Public,
        PUBLIC_1,
        80,
        "HTTP/1.1 301 Moved Permanently\r\nLocation: https://11.0.0.10/\r\nContent-Length: 0\r\n\r\n",
    )
    .unwrap();
    let mgmt = format!("{PUBLIC_1}:443");
    let (v, _) = check(
        &lab,
        &server,
        &["--no-portmap", "--no-pmtu", "--management", &mgmt],
    );
    let c = &paths(&v)["captive_portal"];
    assert_eq!(c["portal"]["verdict"], "not-seen", "{c:#}");

    // Now the home router holds the LAN: port 80 goes to its own portal page.
    lab.http_server(
        Ns::Home,
        HOME_LAN,
        8080,
        "HTTP/1.1 302 Found\r\nLocation: http://portal.guest-wifi.example/login?from=lan\r\nContent-Length: 0\r\n\r\n",
    )
    .unwrap();
    lab.ipt(
        Ns::Home,
        &format!("-t nat -A PREROUTING -i lan1 -p tcp --dport 80 -j DNAT --to-destination {HOME_LAN}:8080"),
    )
    .unwrap();
    let (v, out) = check(
        &lab,
        &server,
        &["--no-portmap", "--no-pmtu", "--management", &mgmt],
    );
    let c = &paths(&v)["captive_portal"];
    assert_eq!(c["portal"]["verdict"], "detected", "{c:#}");
    assert_eq!(c["portal"]["sign"], "redirect-elsewhere", "{c:#}");
    let verdict = &v["verdict"];
    assert_eq!(verdict["status"], "blocked", "{verdict:#}");
    assert!(
        verdict["headline"]
            .as_str()
            .unwrap()
            .starts_with("Blocked: captive portal"),
        "{verdict:#}"
    );
    assert!(
        verdict["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("captive portal"),
        "{verdict:#}"
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        v["fixes"][0]["title"]
            .as_str()
            .unwrap()
            .contains("captive portal"),
        "{:#}",
        v["fixes"]
    );
}

#[test]
fn bind_flags_that_the_host_cannot_honour_are_one_line_usage_errors() {
    let cases: [&[&str]; 5] = [
        &[
            "check",
            "--stun",
            "127.0.0.1:3478",
            "--no-netbird",
            "--interface",
            "nosuchif0",
        ],
        &[
            "check",
            "--stun",
            "127.0.0.1:3478",
            "--no-netbird",
            "--bind",
            "192.0.2.77",
        ],
        &["stun", "127.0.0.1:3478", "--interface", "nosuchif0"],
        &["nat", "127.0.0.1:3478", "--bind", "192.0.2.77"],
        &["sweep", "127.0.0.1", "--interface", "bad/name"],
    ];
    for args in cases {
        let out = crate::common::stunmap(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            matches!(out.status.code(), Some(64) | Some(2)),
            "{args:?}: {:?} {err}",
            out.status
        );
        assert!(err.trim().lines().count() <= 3, "{args:?}: {err}");
        assert!(
            err.contains("no such interface")
                || err.contains("no such address")
                || err.contains("not an interface name"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    // A port in use, held here.
    let held = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let out = crate::common::stunmap(&["stun", "127.0.0.1:3478", "--source-port", &port]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is in use"), "{err}");
}

#[test]
fn source_port_is_the_port_the_server_sees() {
    let port = crate::common::free_port("127.0.0.1");
    let alt = crate::common::free_port("127.0.0.1");
    let _g = crate::common::serve(&["--listen", &format!("127.0.0.1:{port}")]);
    let out = crate::common::stunmap(&[
        "stun",
        &format!("127.0.0.1:{port}"),
        "--count",
        "1",
        "--source-port",
        &alt.to_string(),
        "--json",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("127.0.0.1:{alt}")), "{text}");
}

/// coturn on the home router's LAN address, port 3480 (user `test`, password `secret`): the
/// client reaches it without a NAT between, so the relay can answer this host's peer socket.
fn start_coturn_on_the_lan(lab: &mut PathsLab) -> String {
    let dir = lab.dir().to_string_lossy().into_owned();
    let args = [
        "turnserver".to_string(),
        "-n".into(),
        format!("--listening-ip={HOME_LAN}"),
        "--listening-port=3480".into(),
        "--no-dtls".into(),
        "--no-tls".into(),
        "--no-tcp".into(),
        "--no-cli".into(),
        "--fingerprint".into(),
        "--realm=lab".into(),
        "--lt-cred-mech".into(),
        "--user=test:secret".into(),
        "--min-port=49152".into(),
        "--max-port=65000".into(),
        format!("--userdb={dir}/turndb"),
        format!("--pidfile={dir}/turnserver.pid"),
        format!("--log-file={dir}/turnserver.log"),
        "--simple-log".into(),
        "--no-stdout-log".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    lab.spawn_in(Ns::Home, &args).expect("start coturn");
    let addr = format!("{HOME_LAN}:3480");
    lab.wait_listener(Ns::Home, "-uln", &addr)
        .expect("coturn listens");
    addr
}

#[test]
fn wireguard_sized_datagrams_through_the_turn_relay_pass_and_are_caught_when_dropped() {
    if !crate::common::have("turnserver") {
        crate::support::lab::report_skip(module_path!(), "coturn (turnserver) not installed");
        return;
    }
    let mut lab = paths_lab_or_skip!(Upstream::Direct);
    let server = lab.start_reflector(bin()).expect("reflector");
    let turn = start_coturn_on_the_lan(&mut lab);
    let run = |lab: &PathsLab| {
        let mut cmd = lab.command(
            Ns::Client,
            &[
                "timeout",
                "40",
                bin(),
                "check",
                "--stun",
                &server,
                "--turn",
                &turn,
                "--user",
                "test",
                "--no-netbird",
                "--no-portmap",
                "--no-portal",
                "--dns-server",
                "127.0.0.1:9",
                "--timeout",
                "1500",
                "--relay-count",
                "5",
                "--json",
            ],
        );
        let out = cmd
            .env("STUNMAP_TURN_PASSWORD", "secret")
            .output()
            .expect("run stunmap check");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("secret"),
            "the password in the output"
        );
        let v = json(&out);
        validate("check-v1.json", &v);
        v
    };

    // A clean path: every full-size datagram comes back.
    let v = run(&lab);
    let r = &paths(&v)["relay_path"];
    assert_eq!(r["server"], turn.as_str(), "{r:#}");
    assert_eq!(r["payload"], 1312, "{r:#}");
    assert_eq!(
        (r["sent"].as_u64(), r["received"].as_u64()),
        (Some(5), Some(5)),
        "{r:#}"
    );
    assert!(r["error"].is_null(), "{r:#}");
    assert!(
        !v["verdict"]["reasons"]
            .to_string()
            .contains("lost on the relay path"),
        "{:#}",
        v["verdict"]
    );

    // The relay's host drops UDP datagrams of 1300 bytes and more: the relay RTT's small
    // packets still pass, the full-size ones are all lost, and the verdict says so.
    lab.ipt(
        Ns::Home,
        "-I INPUT -p udp -m length --length 1300:65535 -j DROP",
    )
    .expect("length rule");
    let v = run(&lab);
    let rtt = &v["relay_rtt"][0];
    assert!(rtt["received"].as_u64().unwrap() > 0, "{rtt:#}");
    let r = &paths(&v)["relay_path"];
    assert_eq!(
        (r["sent"].as_u64(), r["received"].as_u64()),
        (Some(5), Some(0)),
        "{r:#}"
    );
    let f = paths(&v)["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["summary"].as_str().unwrap().contains("relay path"))
        .unwrap_or_else(|| panic!("no relay-path finding: {:#}", paths(&v)));
    assert_eq!(
        (f["kind"].as_str(), f["severity"].as_str()),
        (Some("path-mtu"), Some("medium")),
        "{f:#}"
    );
    assert_ne!(v["verdict"]["status"], "ok", "{:#}", v["verdict"]);
    assert!(
        v["verdict"]["reasons"]
            .to_string()
            .contains("lost on the relay path"),
        "{:#}",
        v["verdict"]
    );
}
