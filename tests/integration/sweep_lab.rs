//! `stunmap sweep` in the namespace lab: a target that answers STUN on every TCP port (all
//! ports redirected to one `stunmap serve` listener by nftables) behind a router whose
//! forwarding rules accept one range, drop one, reset one and reject one with ICMP. The sweep
//! must report exactly those ranges; then a router that answers every high port itself (a
//! transparent proxy) must be flagged.

use serde_json::Value;

use crate::common::bin;
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

/// Every TCP port of the target lands on the reflector's TCP listener.
const TARGET_REDIRECT: &str = "
table ip redir {
    chain pre {
        type nat hook prerouting priority dstnat; policy accept;
        tcp dport != 3478 redirect to :3478
    }
}
";

fn nft(lab: &Lab, ns: Ns, rules: &str, name: &str) {
    let path = lab.dir().join(name);
    std::fs::write(&path, rules).unwrap();
    lab.exec_ok(ns, &["nft", "-f", path.to_str().unwrap()])
        .expect("load nft rules");
}

fn start_target(lab: &mut Lab) {
    nft(lab, Ns::Public, TARGET_REDIRECT, "redirect.nft");
    let listen = format!("{PUBLIC_IP_1}:3478");
    lab.spawn_in(Ns::Public, &[bin(), "serve", "--listen", &listen])
        .unwrap();
    lab.wait_udp_listener(Ns::Public, &listen, std::time::Duration::from_secs(5))
        .unwrap();
}

fn sweep(lab: &Lab) -> Value {
    let out = lab
        .exec_in(
            Ns::Client,
            &[
                "timeout",
                "60",
                bin(),
                "sweep",
                PUBLIC_IP_1,
                "--udp-ports",
                "3478,3479,5555",
                "--tcp-ports",
                "443-65535",
                "--sample",
                "64",
                "--seed",
                "7",
                "--connect-timeout",
                "800",
                "--udp-timeout",
                "800",
                "--rate",
                "5000",
                "--json",
            ],
        )
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn expected(port: u64) -> &'static str {
    match port {
        443..=1023 => "open",
        1024..=20000 => "filtered",
        20001..=40000 => "refused",
        _ => "unreachable",
    }
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
    let v = sweep(&lab);

    // UDP: answered, rejected with ICMP port unreachable, dropped.
    let udp = v["udp"].as_array().unwrap();
    let kind = |p: u64| udp.iter().find(|u| u["port"] == p).unwrap()["kind"].clone();
    assert_eq!(kind(3478), "answered", "{v:#}");
    assert_eq!(kind(3479), "port-unreachable", "{v:#}");
    assert_eq!(kind(5555), "silent", "{v:#}");

    // Every sampled TCP port has exactly the state its rule gives, and open ones speak STUN.
    let results = v["tcp_results"].as_array().unwrap();
    assert!(results.len() >= 64, "{}", results.len());
    for r in results {
        let port = r["port"].as_u64().unwrap();
        assert_eq!(r["state"], expected(port), "port {port}: {r}");
        if expected(port) == "open" {
            assert_eq!(r["stun"]["kind"], "answered", "port {port}: {r}");
        }
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
    let start = std::time::Instant::now();
    loop {
        let ss = lab.exec_in(Ns::Router, &["ss", "-Htln"]).unwrap();
        if String::from_utf8_lossy(&ss.stdout).contains(":9999") {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "acceptor did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let v = sweep(&lab);
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
    let out = lab
        .exec_in(
            Ns::Client,
            &[
                "timeout",
                "60",
                bin(),
                "sweep",
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
                "--json",
            ],
        )
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
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
}
