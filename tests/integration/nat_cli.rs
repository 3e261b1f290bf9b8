//! `stunmap nat` on loopback against `stunmap serve` with an RFC 5780 alternate address
//! (127.0.0.2): the command contract's outputs (JSON against docs/schema/nat-v1.json, NDJSON,
//! the human report in words, Prometheus and HTML files) and its bad flags (exit 64, one line).

use std::process::Command;

use crate::common::{bin, free_port, have, json, serve, stunmap, validate};
use crate::nat_lab::assert_no_debug_words;

/// A reflector on 127.0.0.1:P with the alternate address 127.0.0.2 and port A; (P, A).
fn reflector() -> (crate::common::Guard, String) {
    let port = free_port("127.0.0.1");
    let alt = free_port("127.0.0.1");
    let s = serve(&[
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--alt-address",
        "127.0.0.2",
        "--alt-port",
        &alt.to_string(),
    ]);
    (s, format!("127.0.0.1:{port}"))
}

#[test]
fn json_report_matches_the_schema_and_says_no_nat() {
    let (_s, server) = reflector();
    let out = stunmap(&["nat", &server, "--json", "--no-portmap"]);
    let v = json(&out);
    validate("nat-v1.json", &v);
    assert_eq!(v["schema"], "stunmap.nat/1");
    assert_eq!(v["interrupted"], false);
    assert_eq!(v["ipv4"]["nat"], "absent", "{v:#}");
    assert_eq!(v["ipv4"]["udp"]["status"], "open", "{v:#}");
    assert_eq!(
        v["ipv4"]["firewall_filtering"], "endpoint-independent",
        "{v:#}"
    );
    assert!(v["measurements"]["port_mapping"].is_null());
    // Every test answered: the verdict is in after one round trip, far inside the budget.
    let t = &v["measurements"]["ipv4"]["timing"];
    assert_eq!(t["rtt_source"], "udp", "{t:#}");
    assert_eq!(t["budget_reached"], false, "{t:#}");
    assert_eq!(t["tests_cut"], 0, "{t:#}");
    assert_eq!(v["timing"]["settings"]["budget_seconds"], 3.0);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn ndjson_has_the_family_then_the_report() {
    let (_s, server) = reflector();
    let out = stunmap(&["nat", &server, "--ndjson", "--no-portmap"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["event"], "family");
    assert_eq!(lines[0]["report"]["family"], "ipv4");
    assert_eq!(lines[1]["event"], "report");
    validate("nat-v1.json", &lines[1]["report"]);
}

#[test]
fn human_report_prom_and_html_files() {
    let (_s, server) = reflector();
    let dir = tempfile::tempdir().unwrap();
    let prom = dir.path().join("nat.prom");
    let html = dir.path().join("nat.html");
    let out = stunmap(&[
        "nat",
        &server,
        "--no-portmap",
        "--prom",
        prom.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("DIRECT P2P"), "{text}");
    assert_no_debug_words(&text);
    for words in [
        "IPv4: ",
        "no NAT",
        "UDP open",
        "firewall filtering",
        "from UDP answers",
    ] {
        assert!(text.contains(words), "{words:?} missing:\n{text}");
    }
    let metrics = std::fs::read_to_string(&prom).unwrap();
    for m in [
        "stunmap_nat_info{family=\"ipv4\",nat=\"absent\",udp=\"open\"",
        "stunmap_nat_verdict{level=\"direct\"} 1",
        "stunmap_nat_verdict{level=\"blocked\"} 0",
        "stunmap_nat_verdict_seconds ",
        "stunmap_nat_rtt_seconds{family=\"ipv4\",source=\"udp\"}",
        "stunmap_nat_rto_seconds{family=\"ipv4\"} 0.1",
        "stunmap_nat_budget_seconds 3",
        "stunmap_nat_exit_code 0",
    ] {
        assert!(metrics.contains(m), "{m} missing:\n{metrics}");
    }
    if have("promtool") {
        let out = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::fs::File::open(&prom).unwrap())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("<html") && page.contains("stunmap nat"),
        "{page}"
    );
    assert!(page.contains("no NAT"));
}

#[test]
fn bad_timing_flags_exit_64_with_one_line() {
    for (args, says) in [
        (&["--budget", "0.2"][..], "--budget"),
        (&["--rate", "0"], "--rate"),
        (&["--budget=-1"], "--budget"),
        (&["--budget", "100000"], "--budget"),
        (&["--rto", "0"], "--rto"),
        (&["--lifetime", "--lifetime-max", "0"], "--lifetime-max"),
    ] {
        let out = Command::new(bin())
            .arg("nat")
            .arg("127.0.0.1:9")
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
        let first = err.lines().next().unwrap_or_default();
        assert!(first.contains(says), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "nothing is probed or printed");
    }
}
