//! `stunmap check` end to end: on loopback against `stunmap serve` and coturn (profile names
//! pointed there with --resolve), the embedded NetBird Cloud profile inside the namespace lab
//! (every name --resolve'd to lab addresses), and inside a network namespace with nothing but
//! loopback (no route anywhere: a fast, honest Blocked). No public name is resolved: every run
//! either --resolve's every name or has no route, and DNS is pointed at a dead local port.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{TurnAuth, bin, coturn_lab, free_port, have, json, serve};
use crate::lab_or_skip;
use crate::support::lab::{NatMode, Ns, PUBLIC_IP_1, PUBLIC_IP_2};

/// A DNS "server" nothing listens on: a lookup that slips through fails at once, locally.
const DEAD_DNS: &str = "127.0.0.1:9";

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!(
            "stunmap-check-{tag}-{}-{}",
            std::process::id(),
            free_port("127.0.0.1")
        ));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
    fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A profile with a STUN service on `stun` and, when given, a TURN service on `turn` (UDP and
/// TCP on that port, plus a small TCP range for the sample), under lab names.
fn write_profile(path: &Path, stun: u16, turn: Option<u16>) {
    let mut t = format!(
        "version = 1\nname = \"lab\"\ndescription = \"loopback lab\"\n\n\
         [[service]]\nname = \"P2P (STUN)\"\nkind = \"stun\"\nhosts = [\"stun.lab.test\"]\nudp = [{stun}]\n"
    );
    if let Some(p) = turn {
        t.push_str(&format!(
            "\n[[service]]\nname = \"Relay (TURN)\"\nkind = \"turn\"\nhosts = [\"turn.lab.test\"]\nudp = [{p}]\ntcp = [\"{p}\", \"{p}-{}\"]\n",
            p + 40
        ));
    }
    std::fs::write(path, t).unwrap();
}

fn check(args: &[&str], env: &[(&str, &str)]) -> (Output, Duration) {
    let mut cmd = Command::new("timeout");
    cmd.arg("60")
        .arg(bin())
        .arg("check")
        .args(args)
        .env_remove("STUNMAP_TURN_PASSWORD")
        .env_remove("STUNMAP_TURN_SECRET")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let out = cmd.output().expect("run stunmap check");
    (out, start.elapsed())
}

fn service<'a>(v: &'a Value, kind: &str) -> &'a Value {
    v["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} service in {v:#}"))
}

fn rows<'a>(s: &'a Value, probe: &str) -> Vec<&'a Value> {
    s["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["probe"] == probe)
        .collect()
}

fn validate(v: &Value) {
    crate::common::validate("check-v1.json", v);
}

/// The reflector with an RFC 5780 alternate address on loopback; returns (guard, port).
fn reflector() -> (crate::common::Guard, u16) {
    let port = free_port("127.0.0.1");
    let alt = free_port("127.0.0.1");
    let g = serve(&[
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--alt-address",
        "127.0.0.2",
        "--alt-port",
        &alt.to_string(),
    ]);
    (g, port)
}

#[test]
fn lab_profile_fills_every_section_and_matches_the_schema() {
    let (_serve, stun) = reflector();
    let turn = have("turnserver").then(|| coturn_lab(TurnAuth::Static, false));
    let dir = TempDir::new("lab");
    let profile = dir.path("lab.toml");
    write_profile(&profile, stun, turn.as_ref().map(|t| t.port));
    let prom = dir.path("check.prom");
    let html = dir.path("check.html");
    let (out, took) = check(
        &[
            "--profile",
            profile.to_str().unwrap(),
            "--resolve",
            "stun.lab.test:127.0.0.1",
            "--resolve",
            "turn.lab.test:127.0.0.1",
            "--dns-server",
            DEAD_DNS,
            "--user",
            "test",
            "--timeout",
            "1000",
            "--sample",
            "8",
            "--rto",
            "100",
            "--json",
            "--prom",
            prom.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
        ],
        &[("STUNMAP_TURN_PASSWORD", "secret")],
    );
    let v = json(&out);
    validate(&v);
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_eq!(v["schema"], "stunmap.check/1");
    assert_eq!(v["profile"]["name"], "lab");
    // The DNS rows show the --resolve override, not a lookup.
    let stun_service = service(&v, "stun");
    let dns = rows(stun_service, "dns");
    assert!(
        dns[0]["detail"].as_str().unwrap().contains("--resolve"),
        "{dns:?}"
    );
    let stun_rows = rows(stun_service, "stun");
    assert_eq!(stun_rows.len(), 1);
    assert_eq!(stun_rows[0]["state"], "ok", "{:#}", stun_rows[0]);
    assert!(stun_rows[0]["rtt_seconds"].as_f64().unwrap() > 0.0);
    // NAT: loopback has no NAT; the classifier ran.
    assert!(v["nat"]["verdict"]["level"].is_string(), "{:#}", v["nat"]);
    if let Some(lab) = &turn {
        let t = service(&v, "turn");
        let allocs = rows(t, "turn");
        let udp = allocs.iter().find(|r| r["transport"] == "udp").unwrap();
        assert_eq!(udp["state"], "ok", "{udp:#}");
        assert!(
            udp["detail"].as_str().unwrap().contains("allocated"),
            "{udp:#}"
        );
        let tcp = allocs.iter().find(|r| r["transport"] == "tcp").unwrap();
        assert_eq!(tcp["state"], "ok", "{tcp:#}");
        // The sample of the small range: every port answered (open or refused by the host).
        let sample = &v["tcp_samples"][0];
        assert!(!sample["ports"].as_array().unwrap().is_empty());
        assert_eq!(sample["filtered"], 0);
        // With credentials, relay RTT through a real allocation.
        let rtt = &v["relay_rtt"][0];
        assert!(rtt["rtt"]["median"].as_f64().unwrap() > 0.0, "{rtt:#}");
        // And full-size WireGuard packets through the relay, all back on loopback.
        let rp = &v["paths"]["relay_path"];
        assert_eq!(
            (rp["sent"].as_u64(), rp["received"].as_u64()),
            (Some(5), Some(5)),
            "{rp:#}"
        );
        let page = std::fs::read_to_string(&html).unwrap();
        assert!(
            page.contains("5 of 5 datagrams of 1312 bytes"),
            "no relay-path line in the HTML"
        );
        assert_eq!(v["verdict"]["status"], "ok", "{:#}", v["verdict"]);
        assert_eq!(out.status.code(), Some(0));
        lab.assert_no_allocations_left();
    }
    // Prometheus text: our own checks always, promtool where installed (CI).
    let text = std::fs::read_to_string(&prom).unwrap();
    assert!(
        text.contains("stunmap_check_success{profile=\"lab\"}"),
        "{text}"
    );
    assert!(text.contains("stunmap_probe_rtt_seconds{"), "{text}");
    if turn.is_some() {
        assert!(
            text.contains("stunmap_relay_path_loss_ratio{profile=\"lab\",server=\"127.0.0.1:"),
            "{text}"
        );
    }
    if have("promtool") {
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let r = child.wait_with_output().unwrap();
        assert!(
            r.status.success(),
            "promtool: {}{}\n{text}",
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&r.stderr)
        );
    }
    // HTML: rendered by a real browser where installed (CI).
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("id=\"verdict\""));
    if have("chromium") {
        let profile_dir = TempDir::new("chromium");
        let dom = Command::new("timeout")
            .arg("60")
            .arg("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile_dir.0.display()))
            .arg("--dump-dom")
            .arg(format!("file://{}", html.display()))
            .output()
            .unwrap();
        let dom = String::from_utf8_lossy(&dom.stdout);
        let status = v["verdict"]["status"].as_str().unwrap();
        assert!(
            dom.contains(&format!("data-status=\"{status}\"")),
            "verdict missing from the rendered page:\n{dom}"
        );
        assert!(
            dom.contains(&status.to_uppercase()),
            "verdict text missing:\n{dom}"
        );
        assert!(dom.contains("id=\"port-map\""), "port map missing:\n{dom}");
        assert!(
            dom.contains("class=\"udp-port\"") && dom.contains("data-port=\""),
            "no port drawn:\n{dom}"
        );
    }
}

#[test]
fn secrets_appear_in_no_output_format() {
    if !have("turnserver") {
        return;
    }
    const SECRET: &str = "Qx7-unlikely-REST-s3cret-91";
    let turn = coturn_lab(TurnAuth::RestSecret(SECRET), false);
    let (_serve, stun) = reflector();
    let dir = TempDir::new("secret");
    let profile = dir.path("lab.toml");
    write_profile(&profile, stun, Some(turn.port));
    let prom = dir.path("check.prom");
    let html = dir.path("check.html");
    let base = [
        "--profile",
        profile.to_str().unwrap(),
        "--resolve",
        "stun.lab.test:127.0.0.1",
        "--resolve",
        "turn.lab.test:127.0.0.1",
        "--dns-server",
        DEAD_DNS,
        "--user",
        "alice",
        "--timeout",
        "1000",
        "--sample",
        "4",
        "--rto",
        "100",
        "--relay-count",
        "5",
    ];
    let mut texts = Vec::new();
    for extra in [
        &[
            "--prom",
            prom.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
        ][..],
        &["--json"][..],
        &["--ndjson"][..],
    ] {
        let args: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
        let (out, _) = check(&args, &[("STUNMAP_TURN_SECRET", SECRET)]);
        texts.push(String::from_utf8_lossy(&out.stdout).into_owned());
        texts.push(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    texts.push(std::fs::read_to_string(&prom).unwrap());
    texts.push(std::fs::read_to_string(&html).unwrap());
    // The run authenticated (so the secret was really in use) …
    assert!(texts[2].contains("allocated"), "{}", texts[2]);
    // … and the secret is nowhere.
    for t in &texts {
        assert!(!t.contains(SECRET), "secret leaked:\n{t}");
    }
    turn.assert_no_allocations_left();
}

#[test]
fn ndjson_streams_rows_then_the_report() {
    let (_serve, stun) = reflector();
    let dir = TempDir::new("ndjson");
    let profile = dir.path("lab.toml");
    write_profile(&profile, stun, None);
    let (out, _) = check(
        &[
            "--profile",
            profile.to_str().unwrap(),
            "--resolve",
            "stun.lab.test:127.0.0.1",
            "--dns-server",
            DEAD_DNS,
            "--timeout",
            "1000",
            "--rto",
            "100",
            "--ndjson",
        ],
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(events.first().unwrap()["event"], "start");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "check" && e["probe"] == "stun")
    );
    let last = events.last().unwrap();
    assert_eq!(last["event"], "report");
    validate(&last["report"]);
}

#[test]
fn bad_profiles_and_flags_are_usage_errors() {
    let dir = TempDir::new("usage");
    let bad = dir.path("bad.toml");
    std::fs::write(
        &bad,
        "version = 1\nname = \"x\"\n[[service]]\nname = \"s\"\nkind = \"stun\"\nhosts = [\"a.test\"]\nudp = [\"70000\"]\n",
    )
    .unwrap();
    let (out, _) = check(&["--profile", bad.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("service[0].udp[0]"), "{err}");
    let (out, _) = check(&["--resolve", "nonsense"], &[]);
    assert_eq!(out.status.code(), Some(64));
    // A password flag does not exist: secrets never go on the command line.
    let (out, _) = check(&["--password", "x"], &[]);
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn endpoint_list_import_keeps_seed_ports() {
    let dir = TempDir::new("endpoints");
    let list = dir.path("endpoints.json");
    std::fs::write(
        &list,
        r#"[{"Name":"STUN","FQDNs":["stun.lab.test"],"IPv4":"","IPv6":""},
            {"Name":"TURN","FQDNss":["turn.lab.test"],"IPv4":"","IPv6":""}]"#,
    )
    .unwrap();
    // Nothing resolves (dead local resolver, no --resolve): a quick Blocked that still shows the
    // imported names on the seed's ports.
    let (out, took) = check(
        &[
            "--endpoints",
            list.to_str().unwrap(),
            "--dns-server",
            DEAD_DNS,
            "--timeout",
            "1000",
            "--json",
        ],
        &[],
    );
    let v = json(&out);
    validate(&v);
    assert_eq!(out.status.code(), Some(2));
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert_eq!(service(&v, "stun")["hosts"][0], "stun.lab.test");
    assert_eq!(service(&v, "turn")["hosts"][0], "turn.lab.test");
    assert!(
        v["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("kept from")),
        "{:#}",
        v["notes"]
    );
}

/// The embedded profile with no route anywhere: a namespace with only loopback.
#[test]
fn embedded_profile_without_a_route_is_blocked_in_seconds() {
    let uid = Command::new("id").arg("-u").output().ok();
    let root = uid.is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root || Command::new("ip").arg("-V").output().is_err() {
        crate::support::lab::report_skip(module_path!(), "needs root and iproute2");
        return;
    }
    let ns = format!("stunmap-offline-{}", std::process::id());
    let ok = Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .unwrap()
        .success();
    assert!(ok, "ip netns add");
    struct Del(String);
    impl Drop for Del {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _del = Del(ns.clone());
    Command::new("ip")
        .args(["-n", &ns, "link", "set", "lo", "up"])
        .status()
        .unwrap();
    let start = Instant::now();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            "timeout",
            "60",
            bin(),
            "check",
            "--timeout",
            "2000",
        ])
        .output()
        .unwrap();
    let took = start.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(took < Duration::from_secs(15), "took {took:?}:\n{text}");
    assert!(text.starts_with("BLOCKED"), "verdict first:\n{text}");
    assert!(text.contains("cannot resolve api.netbird.io"), "{text}");
    // Every service of the reference page has its table.
    for name in [
        "Management",
        "Signal",
        "P2P (STUN)",
        "Relay (TURN)",
        "Relay",
    ] {
        assert!(
            text.contains(&format!("\n{name}  ")),
            "{name} missing:\n{text}"
        );
    }
}

/// The embedded NetBird Cloud profile against the namespace lab, every name pointed at a lab
/// address with --resolve: STUN on 80/443/3478/5555 (our reflector), TURN on UDP 80 and 443
/// (two coturns), the TCP sample of 443-65535, NAT behind the lab's MASQUERADE.
#[test]
fn embedded_profile_against_the_lab_with_resolve() {
    if !have("turnserver") {
        return;
    }
    let mut lab = lab_or_skip!(NatMode::Masquerade);
    const TURN_IP: &str = "198.18.0.12";
    lab.exec_ok(
        Ns::Public,
        &["ip", "addr", "add", &format!("{TURN_IP}/24"), "dev", "pub0"],
    )
    .expect("third public address");
    let mut listen = Vec::new();
    for p in [80, 443, 3478, 5555] {
        listen.push("--listen".to_string());
        listen.push(format!("{PUBLIC_IP_1}:{p}"));
    }
    let mut cmd: Vec<&str> = vec![bin(), "serve"];
    cmd.extend(listen.iter().map(String::as_str));
    cmd.extend(["--alt-address", PUBLIC_IP_2, "--alt-port", "3479"]);
    lab.spawn_in(Ns::Public, &cmd).expect("serve");
    let d = lab.dir().to_string_lossy().into_owned();
    for port in [80u16, 443] {
        let conf = format!(
            "listening-ip={TURN_IP}\nrelay-ip={TURN_IP}\nlistening-port={port}\n\
             min-port=49152\nmax-port=49400\nlt-cred-mech\nuser=test:secret\nrealm=lab\n\
             fingerprint\nno-tls\nno-dtls\nno-cli\nuserdb={d}/turndb{port}\n\
             pidfile={d}/turn{port}.pid\nlog-file={d}/turn{port}.log\nsimple-log\n"
        );
        let path = lab.dir().join(format!("turn{port}.conf"));
        std::fs::write(&path, conf).unwrap();
        lab.spawn_in(Ns::Public, &["turnserver", "-c", path.to_str().unwrap()])
            .expect("turnserver");
        lab.wait_udp_listener(
            Ns::Public,
            &format!("{TURN_IP}:{port}"),
            Duration::from_secs(5),
        )
        .unwrap();
    }
    lab.wait_udp_listener(
        Ns::Public,
        &format!("{PUBLIC_IP_2}:3479"),
        Duration::from_secs(5),
    )
    .unwrap();
    let resolve = [
        format!("api.netbird.io:{PUBLIC_IP_1}"),
        format!("signal.netbird.io:{PUBLIC_IP_1}"),
        format!("stun.netbird.io:{PUBLIC_IP_1}"),
        format!("turn.netbird.io:{TURN_IP}"),
    ];
    let mut args: Vec<&str> = vec![
        "timeout",
        "60",
        bin(),
        "check",
        "--json",
        "--dns-server",
        DEAD_DNS,
        "--timeout",
        "1500",
        "--sample",
        "16",
        "--rto",
        "100",
        "--rate",
        "1000",
    ];
    for r in &resolve {
        args.push("--resolve");
        args.push(r);
    }
    let start = Instant::now();
    let out = lab.exec_in(Ns::Client, &args).unwrap();
    let took = start.elapsed();
    let v = json(&out);
    validate(&v);
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert_eq!(v["profile"]["name"], "netbird-cloud");
    // Every name came from --resolve.
    for s in v["services"].as_array().unwrap() {
        for r in rows(s, "dns") {
            assert!(r["detail"].as_str().unwrap().contains("--resolve"), "{r:#}");
        }
    }
    let stun: Vec<u64> = rows(service(&v, "stun"), "stun")
        .iter()
        .filter(|r| r["state"] == "ok")
        .map(|r| r["port"].as_u64().unwrap())
        .collect();
    assert_eq!(stun, vec![80, 443, 3478, 5555], "{:#}", service(&v, "stun"));
    let turn = service(&v, "turn");
    for r in rows(turn, "turn")
        .iter()
        .filter(|r| r["transport"] == "udp")
    {
        assert_eq!(r["state"], "ok", "{r:#}");
        assert!(r["detail"].as_str().unwrap().contains("401"), "{r:#}");
    }
    let sample = &v["tcp_samples"][0];
    assert_eq!(sample["range_start"], 443);
    assert_eq!(sample["range_end"], 65535);
    assert_eq!(sample["filtered"], 0, "{sample:#}");
    // Behind MASQUERADE: a NAT with endpoint-independent mapping.
    let ipv4 = &v["nat"]["ipv4"];
    assert_eq!(ipv4["mapping"], "endpoint-independent", "{ipv4:#}");
    // Management and signal on the lab address speak STUN, not TLS: blocked, and the verdict
    // says so first.
    assert_eq!(
        service(&v, "management")["state"],
        "blocked",
        "{:#}",
        service(&v, "management")
    );
    assert_eq!(v["verdict"]["status"], "blocked");
    assert!(
        v["verdict"]["headline"]
            .as_str()
            .unwrap()
            .contains("Management")
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn demo_fills_every_section_and_tears_down() {
    let start = Instant::now();
    let out = Command::new("timeout")
        .args(["60", bin(), "demo", "--json"])
        .env_remove("STUNMAP_TURN_PASSWORD")
        .env_remove("STUNMAP_TURN_SECRET")
        .output()
        .unwrap();
    let v = json(&out);
    validate(&v);
    assert!(start.elapsed() < Duration::from_secs(20));
    assert_eq!(v["profile"]["name"], "demo");
    assert_eq!(rows(service(&v, "stun"), "stun")[0]["state"], "ok");
    assert!(v["nat"]["verdict"].is_object());
    if have("turnserver") {
        assert_eq!(out.status.code(), Some(0), "{:#}", v["verdict"]);
        assert_eq!(service(&v, "turn")["state"], "ok");
        assert!(!v["tcp_samples"][0]["ports"].as_array().unwrap().is_empty());
        assert!(v["relay_rtt"][0]["rtt"]["median"].as_f64().unwrap() > 0.0);
    }
    // The lab is gone: the demo's reflector port no longer answers.
    let port = rows(service(&v, "stun"), "stun")[0]["port"]
        .as_u64()
        .unwrap() as u16;
    assert!(std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok());
}

/// A NetBird status saved from `netbird status --json` (the fixture of a newer client), with
/// its URIs pointed at this lab: the STUN server it says is down answers stunmap, the TURN
/// server it says is up does not.
fn lab_status(dir: &TempDir, stun: u16, dead: u16) -> PathBuf {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/netbird/status-newer-relayed-srflx.json"
    );
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    v["management"]["url"] = format!("https://mgmt.lab.test:{dead}").into();
    v["signal"]["url"] = format!("https://signal.lab.test:{dead}").into();
    v["relays"]["details"] = serde_json::json!([
        {"uri": format!("stun:stun.lab.test:{stun}"), "available": false, "error": "context deadline exceeded"},
        {"uri": format!("turn:turn.lab.test:{dead}?transport=udp"), "available": true, "error": ""}
    ]);
    let path = dir.path("status.json");
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    path
}

#[test]
fn a_netbird_status_gives_the_profile_the_comparison_and_the_peer_reasons() {
    let (_serve, stun) = reflector();
    let dead = free_port("127.0.0.1");
    let dir = TempDir::new("netbird");
    let status = lab_status(&dir, stun, dead);
    let prom = dir.path("check.prom");
    let html = dir.path("check.html");
    let mut args: Vec<String> = vec![
        "--netbird-status".into(),
        status.display().to_string(),
        "--dns-server".into(),
        DEAD_DNS.into(),
        "--timeout".into(),
        "1000".into(),
        "--json".into(),
        "--prom".into(),
        prom.display().to_string(),
        "--html".into(),
        html.display().to_string(),
    ];
    for n in ["mgmt", "signal", "stun", "turn"] {
        args.push("--resolve".into());
        args.push(format!("{n}.lab.test:127.0.0.1"));
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (out, _) = check(&argv, &[]);
    let v = json(&out);
    validate(&v);
    assert!(
        v["profile"]["source"]
            .as_str()
            .unwrap()
            .contains("netbird status from"),
        "{:#}",
        v["profile"]
    );
    let nb = &v["netbird"];
    assert_eq!(nb["source"]["kind"], "file", "{nb:#}");
    assert_eq!(nb["wireguard_port"], 41820);
    let uri = |u: &str| {
        nb["uris"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["uri"] == u)
            .unwrap_or_else(|| panic!("no {u} in {nb:#}"))
            .clone()
    };
    // NetBird says the STUN server is down; stunmap got an answer from it.
    let s = uri(&format!("stun:stun.lab.test:{stun}"));
    assert_eq!(s["measured"], "ok", "{s:#}");
    assert_eq!(s["agreement"], "stunmap_only", "{s:#}");
    // NetBird says the TURN server is up; nothing answers stunmap there.
    let t = uri(&format!("turn:turn.lab.test:{dead}?transport=udp"));
    assert_eq!(t["measured"], "failed", "{t:#}");
    assert_eq!(t["agreement"], "netbird_only", "{t:#}");
    // The relayed peer with srflx on both sides is explained.
    let peers = nb["peers"].as_array().unwrap();
    assert!(
        peers
            .iter()
            .any(|p| p["peer"] == "db-02.netbird.selfhosted"),
        "{nb:#}"
    );
    let text = std::fs::read_to_string(&prom).unwrap();
    assert!(
        text.contains("stunmap_netbird_uri_disagreement{")
            && text.contains("stunmap_netbird_peer_not_direct_info{"),
        "{text}"
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("NetBird peers not connected directly"),
        "{page}"
    );

    // The same for people: the section and its disagreements.
    argv_human(&args);
}

fn argv_human(args: &[String]) {
    let human: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--json")
        .collect();
    let (out, _) = check(&human, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("NetBird: what this client was given"),
        "{text}"
    );
    assert!(text.contains("disagree: only stunmap reaches it"), "{text}");
    assert!(text.contains("db-02.netbird.selfhosted"), "{text}");
}

#[test]
fn a_bad_netbird_status_is_a_usage_error() {
    let dir = TempDir::new("badnb");
    let bad = dir.path("bad.json");
    std::fs::write(&bad, "<html>not a status</html>").unwrap();
    let (out, _) = check(&["--netbird-status", bad.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--netbird-status") && err.lines().count() == 1,
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn the_live_netbird_status_is_read_unless_told_not_to() {
    let (_serve, stun) = reflector();
    let dead = free_port("127.0.0.1");
    let dir = TempDir::new("nblive");
    let status = lab_status(&dir, stun, dead);
    // A `netbird` CLI on the PATH whose daemon answers with that status.
    let bin_dir = dir.path("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let fake = bin_dir.join("netbird");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\n[ \"$1 $2\" = \"status --json\" ] && exec cat '{}'\nexit 1\n",
            status.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut args = vec![
        "--dns-server",
        DEAD_DNS,
        "--timeout",
        "500",
        "--json",
        "--resolve",
        "mgmt.lab.test:127.0.0.1",
        "--resolve",
        "signal.lab.test:127.0.0.1",
        "--resolve",
        "stun.lab.test:127.0.0.1",
        "--resolve",
        "turn.lab.test:127.0.0.1",
    ];
    let (out, _) = check(&args, &[("PATH", &path)]);
    let v = json(&out);
    validate(&v);
    assert_eq!(v["netbird"]["source"]["kind"], "live", "{:#}", v["netbird"]);
    assert!(
        v["profile"]["source"]
            .as_str()
            .unwrap()
            .contains("read live"),
        "{:#}",
        v["profile"]
    );
    // --no-netbird: the embedded profile, no NetBird section.
    args.push("--no-netbird");
    let (out, _) = check(&args, &[("PATH", &path)]);
    let v = json(&out);
    assert!(v["netbird"].is_null(), "{:#}", v["netbird"]);
    assert_eq!(v["profile"]["source"], "embedded");
}
