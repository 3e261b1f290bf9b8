//! `stunmap host` against real kernel rules, in network namespaces this test creates and removes.
//!
//! Two namespaces joined by a veth pair whose both ends are named `wt0` (so pings really arrive
//! on `wt0`): the host under test (100.64.0.1) and a peer (100.64.0.2). Rules are installed in the
//! host namespace, `stunmap host --json` runs there, the deciding rule is checked, the fix is
//! applied and the verdict must flip. A ping from the peer checks that the kernel agrees.
//! Needs root, `ip`, `iptables`, `nft` and `ping`; otherwise each test prints why it is skipped.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::process::{Command, Output};

use serde_json::Value;

const HOST_ADDR: &str = "100.64.0.1";

fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"))
}

fn ok(args: &[&str]) {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Why the lab cannot run here, if it cannot.
fn skip_reason() -> Option<String> {
    let uid = run(&["id", "-u"]);
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root (network namespaces need root)".into());
    }
    for tool in ["ip", "iptables", "iptables-save", "nft", "ping"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output();
        if !found.is_ok_and(|o| o.status.success()) {
            return Some(format!("{tool} not installed"));
        }
    }
    None
}

/// A network namespace, deleted on drop (its veth ends go with it).
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        let name = format!("stunmap-hfw-{tag}-{}", std::process::id());
        // A leftover from a crashed run with the same pid would make `add` fail.
        let _ = run(&["ip", "netns", "del", &name]);
        ok(&["ip", "netns", "add", &name]);
        let ns = Netns(name);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    fn cmd<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["ip", "netns", "exec", self.0.as_str()];
        v.extend_from_slice(args);
        v
    }

    fn exec(&self, args: &[&str]) {
        ok(&self.cmd(args));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.0]);
    }
}

/// Host and peer joined by `wt0`—`wt0`.
fn lab(tag: &str) -> (Netns, Netns) {
    let host = Netns::new(&format!("{tag}h"));
    let peer = Netns::new(&format!("{tag}p"));
    ok(&[
        "ip", "-n", &host.0, "link", "add", "wt0", "type", "veth", "peer", "name", "wt0", "netns",
        &peer.0,
    ]);
    host.exec(&["ip", "addr", "add", "100.64.0.1/24", "dev", "wt0"]);
    peer.exec(&["ip", "addr", "add", "100.64.0.2/24", "dev", "wt0"]);
    host.exec(&["ip", "link", "set", "wt0", "up"]);
    peer.exec(&["ip", "link", "set", "wt0", "up"]);
    (host, peer)
}

/// Run `stunmap host --json` in `ns`: (exit code, report).
fn stunmap_host(ns: &Netns) -> (i32, Value) {
    let bin = env!("CARGO_BIN_EXE_stunmap");
    let out = run(&ns.cmd(&[bin, "host", "--json", "--subnet", "100.64.0.0/10"]));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bad JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), v)
}

/// The ping finding (first tunnel finding).
fn ping_finding(report: &Value) -> &Value {
    let f = &report["findings"][0];
    assert_eq!(f["kind"], "tunnel");
    assert!(f["subject"].as_str().unwrap().contains("ping"), "{f}");
    f
}

fn ping_gets_through(peer: &Netns) -> bool {
    run(&peer.cmd(&["ping", "-n", "-c", "1", "-W", "1", HOST_ADDR]))
        .status
        .success()
}

fn sources_read(report: &Value) -> Vec<String> {
    report["sources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["read"] == true)
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn ufw_like_iptables_verdict_matches_kernel_and_flips_with_fix() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED ufw_like_iptables_verdict_matches_kernel_and_flips_with_fix: {why}");
        return;
    }
    let (host, peer) = lab("ipt");
    // UFW's shape: INPUT policy DROP, jump to ufw-before-input, which ends in ufw-user-input.
    for rule in [
        "-N ufw-before-input",
        "-N ufw-user-input",
        "-P INPUT DROP",
        "-A INPUT -j ufw-before-input",
        "-A ufw-before-input -i lo -j ACCEPT",
        "-A ufw-before-input -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-A ufw-before-input -m conntrack --ctstate INVALID -j DROP",
        "-A ufw-before-input -j ufw-user-input",
    ] {
        let mut args = vec!["iptables"];
        args.extend(rule.split(' '));
        host.exec(&args);
    }

    let (code, report) = stunmap_host(&host);
    assert!(
        sources_read(&report).contains(&"iptables".to_owned()),
        "{report}"
    );
    let f = ping_finding(&report);
    assert_eq!(f["verdict"], "drop", "{f}");
    assert_eq!(
        f["deciding"],
        "iptables table filter chain INPUT: policy DROP (no rule matched)"
    );
    assert!(
        f["fix"]["commands"][0]
            .as_str()
            .unwrap()
            .starts_with("sudo ufw allow in on wt0")
    );
    assert_eq!(code, 1);
    assert!(
        !ping_gets_through(&peer),
        "stunmap said drop but the kernel delivered the ping"
    );

    // The rule `ufw allow in on wt0` generates.
    host.exec(&[
        "iptables",
        "-A",
        "ufw-user-input",
        "-i",
        "wt0",
        "-j",
        "ACCEPT",
    ]);
    let (code, report) = stunmap_host(&host);
    let f = ping_finding(&report);
    assert_eq!(f["verdict"], "accept", "{f}");
    let d = f["deciding"].as_str().unwrap();
    assert!(
        d.starts_with("iptables table filter chain ufw-user-input, rule 1"),
        "{d}"
    );
    assert!(d.ends_with("-A ufw-user-input -i wt0 -j ACCEPT"), "{d}");
    assert!(
        report["findings"][1]["verdict"] == "accept"
            && report["findings"][2]["verdict"] == "accept"
    );
    assert_eq!(code, 0, "{report}");
    assert!(
        ping_gets_through(&peer),
        "stunmap said accept but the kernel dropped the ping"
    );
}

#[test]
fn nft_drop_in_second_base_chain_matches_kernel_and_flips_with_fix() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED nft_drop_in_second_base_chain_matches_kernel_and_flips_with_fix: {why}");
        return;
    }
    let (host, peer) = lab("nft");
    let ruleset = "table ip nbtest {\n\
        \tchain nb_input {\n\
        \t\ttype filter hook input priority -1; policy accept;\n\
        \t\tiifname \"wt0\" ip saddr 100.64.0.0/10 accept\n\
        \t}\n\
        }\n\
        table inet hostfw {\n\
        \tchain input {\n\
        \t\ttype filter hook input priority 0; policy drop;\n\
        \t\tct state established,related accept\n\
        \t\tiif \"lo\" accept\n\
        \t}\n\
        }\n";
    let path = std::env::temp_dir().join(format!("stunmap-hfw-{}.nft", std::process::id()));
    std::fs::write(&path, ruleset).unwrap();
    let path_s = path.to_str().unwrap().to_owned();
    let loaded = run(&host.cmd(&["nft", "-f", &path_s]));
    let _ = std::fs::remove_file(&path);
    assert!(
        loaded.status.success(),
        "nft -f: {}",
        String::from_utf8_lossy(&loaded.stderr)
    );

    let (code, report) = stunmap_host(&host);
    assert!(
        sources_read(&report).contains(&"nft".to_owned()),
        "{report}"
    );
    let f = ping_finding(&report);
    assert_eq!(f["verdict"], "drop", "{f}");
    assert_eq!(
        f["deciding"],
        "nft table inet hostfw chain input: policy drop (no rule matched)"
    );
    // The NetBird-style chain accepted first; the drop in the other base chain still wins.
    let chains = f["evaluation"]["chains"].as_array().unwrap();
    assert_eq!(chains[0]["verdict"], "accept");
    assert_eq!(chains[0]["base_chain"], "nb_input");
    assert_eq!(
        f["fix"]["commands"][0],
        "sudo nft insert rule inet hostfw input iifname \"wt0\" accept"
    );
    assert_eq!(code, 1);
    assert!(
        !ping_gets_through(&peer),
        "stunmap said drop but the kernel delivered the ping"
    );

    host.exec(&[
        "nft", "insert", "rule", "inet", "hostfw", "input", "iifname", "\"wt0\"", "accept",
    ]);
    let (code, report) = stunmap_host(&host);
    let f = ping_finding(&report);
    assert_eq!(f["verdict"], "accept", "{f}");
    let d = f["deciding"].as_str().unwrap();
    assert!(
        d.starts_with("nft table inet hostfw chain input, rule 1 (handle "),
        "{d}"
    );
    assert!(d.ends_with(": iifname \"wt0\" accept"), "{d}");
    assert_eq!(code, 0, "{report}");
    assert!(
        ping_gets_through(&peer),
        "stunmap said accept but the kernel dropped the ping"
    );
}

/// `stunmap host --json --flat-network --wireguard-port PORT` in `ns`.
fn stunmap_host_port(ns: &Netns, port: u16) -> Value {
    let bin = env!("CARGO_BIN_EXE_stunmap");
    let port = port.to_string();
    let out = run(&ns.cmd(&[
        bin,
        "host",
        "--json",
        "--flat-network",
        "--wireguard-port",
        &port,
    ]));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bad JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A host with `iptables -P INPUT DROP` and nothing else, as a new user's locked-down server.
fn input_drop_host(tag: &str) -> Netns {
    let ns = Netns::new(tag);
    ns.exec(&["iptables", "-P", "INPUT", "DROP"]);
    ns
}

#[test]
fn every_offered_fix_covers_the_port_it_is_offered_for() {
    if let Some(why) = skip_reason() {
        if std::env::var_os("STUNMAP_LAB_REQUIRED").is_some_and(|v| v != "0") {
            panic!("every_offered_fix_covers_the_port_it_is_offered_for: lab required: {why}");
        }
        eprintln!("SKIPPED every_offered_fix_covers_the_port_it_is_offered_for: {why}");
        return;
    }
    // NetBird's default port (inside the ephemeral range) and one a client may be configured
    // with outside it.
    for port in [51820u16, 41820] {
        let host = input_drop_host(&format!("fx{port}"));
        let report = stunmap_host_port(&host, port);
        drop(host);
        let findings = report["findings"].as_array().unwrap();
        let blocked: Vec<&Value> = findings
            .iter()
            .filter(|f| f["status"] == "blocked")
            .collect();
        // Three tunnel checks and two WireGuard UDP checks (the port and the range).
        assert_eq!(blocked.len(), 5, "{report}");
        assert!(
            blocked.iter().any(|f| f["subject"]
                .as_str()
                .unwrap()
                .contains(&format!("port {port} "))),
            "no finding for the WireGuard port {port}: {report}"
        );
        for (i, f) in blocked.iter().enumerate() {
            let subject = f["subject"].as_str().unwrap();
            let fix = f["fix"]["commands"][0].as_str().unwrap();
            // Paste the fix as offered (without sudo: the test is root) into a fresh host.
            let cmd = fix.strip_prefix("sudo ").unwrap_or(fix);
            assert!(cmd.starts_with("iptables "), "{fix}");
            let host = input_drop_host(&format!("fx{port}{i}"));
            host.exec(&["sh", "-c", cmd]);
            let after = stunmap_host_port(&host, port);
            let same = after["findings"]
                .as_array()
                .unwrap()
                .iter()
                .find(|g| g["subject"] == subject)
                .unwrap_or_else(|| panic!("{subject:?} missing after the fix: {after}"));
            assert_eq!(
                same["status"], "ok",
                "the fix `{fix}` offered for {subject:?} does not cover it: {same}"
            );
        }
    }
}

/// The ruleset text stunmap reads from a NetBird bundle (`nft -a list ruleset`) must give the
/// same verdicts as nft's own JSON of the same kernel ruleset.
#[test]
fn nft_text_and_nft_json_of_one_ruleset_agree() {
    use probes::PortRange;
    use probes::hostfw::{Cidr, Inputs, Options, diagnose, nft_json, nft_text};
    if let Some(why) = skip_reason() {
        if std::env::var_os("STUNMAP_LAB_REQUIRED").is_some_and(|v| v != "0") {
            panic!("nft_text_and_nft_json_of_one_ruleset_agree: lab required: {why}");
        }
        eprintln!("SKIPPED nft_text_and_nft_json_of_one_ruleset_agree: {why}");
        return;
    }
    let host = Netns::new("nfttxt");
    let ruleset = "table inet hostfw {\n\
        \tset allowed { type ipv4_addr; elements = { 192.0.2.1, 192.0.2.2 } }\n\
        \tchain input {\n\
        \t\ttype filter hook input priority filter; policy drop;\n\
        \t\tct state established,related counter accept\n\
        \t\tiif \"lo\" accept\n\
        \t\tudp dport { 51820, 60000-60010 } accept\n\
        \t\ticmp type echo-request limit rate 5/second accept\n\
        \t\tiifname \"wt*\" ip saddr 100.64.0.0/10 jump from_vpn\n\
        \t\tlog prefix \"dropped: \" drop\n\
        \t}\n\
        \tchain from_vpn {\n\
        \t\ttcp dport != 22 accept\n\
        \t\tmeta l4proto udp th dport 8080 accept\n\
        \t}\n\
        }\n\
        table ip netbird {\n\
        \tchain netbird-acl-input-rules {\n\
        \t\ttype filter hook input priority -1; policy accept;\n\
        \t\tiifname \"wt0\" ip saddr 100.64.0.0/10 accept\n\
        \t}\n\
        }\n";
    let path = std::env::temp_dir().join(format!("stunmap-nfttxt-{}.nft", std::process::id()));
    std::fs::write(&path, ruleset).unwrap();
    let loaded = run(&host.cmd(&["nft", "-f", path.to_str().unwrap()]));
    let _ = std::fs::remove_file(&path);
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    let text = String::from_utf8(run(&host.cmd(&["nft", "-a", "list", "ruleset"])).stdout).unwrap();
    let json = String::from_utf8(run(&host.cmd(&["nft", "-j", "list", "ruleset"])).stdout).unwrap();
    let from_text = nft_text::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let from_json = nft_json::parse(&json).unwrap();
    assert_eq!(from_text.chains.len(), from_json.chains.len(), "{text}");
    for port in [51820u16, 41820] {
        let o = Options {
            interface: "wt0".into(),
            subnet: Cidr::parse("100.64.0.0/10").unwrap(),
            service_port: 8080,
            wg_range: PortRange {
                start: 49152,
                end: 65535,
            },
            wg_port: port,
            uplink: None,
            flat_network: true,
        };
        let a = diagnose(
            &Inputs {
                nft: Some(from_text.clone()),
                ..Inputs::default()
            },
            &o,
        );
        let b = diagnose(
            &Inputs {
                nft: Some(from_json.clone()),
                ..Inputs::default()
            },
            &o,
        );
        let va: Vec<_> = a
            .findings
            .iter()
            .map(|f| (f.subject.clone(), f.verdict))
            .collect();
        let vb: Vec<_> = b
            .findings
            .iter()
            .map(|f| (f.subject.clone(), f.verdict))
            .collect();
        assert_eq!(va, vb, "text:\n{text}");
        // Not all the same: the ruleset accepts some and drops others.
        assert!(
            va.iter().any(|(_, v)| format!("{v:?}") == "Some(Accept)"),
            "{va:?}"
        );
        assert!(
            va.iter().any(|(_, v)| format!("{v:?}") != "Some(Accept)"),
            "{va:?}"
        );
    }
}
