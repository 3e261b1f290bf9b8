//! `stunmap audit` against a real coturn on loopback: the default peer policy (loopback
//! refused, private ranges granted), `--allow-loopback-peers` (loopback granted: critical), and
//! a hardened deny list (nothing granted) are told apart; no allocation is left behind and the
//! password appears in no output. A coturn relaying on 127.0.0.1 only answers the IPv6
//! allocation with 440; one relaying on 127.0.0.1 and ::1 gets the IPv6 candidates asked toward
//! an IPv6 allocation, where the IPv4-mapped loopback of CVE-2026-27624 is really tested —
//! over UDP from a second socket, over TCP on a second connection.

use crate::common::{TurnAuth, TurnLab, coturn_lab_with, have, json, stunmap_env};

const PW: &[(&str, &str)] = &[("STUNMAP_TURN_PASSWORD", "secret")];

fn audit(port: u16) -> (std::process::Output, serde_json::Value) {
    audit_uri(&format!("turn:127.0.0.1:{port}"))
}

fn audit_uri(uri: &str) -> (std::process::Output, serde_json::Value) {
    let out = stunmap_env(
        &[
            "audit",
            uri,
            "--user",
            "test",
            "--json",
            "--timeout",
            "1000",
        ],
        PW,
    );
    let all =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!all.contains("secret\""), "password leaked:\n{all}");
    let j = json(&out);
    crate::common::validate("audit-v1.json", &j);
    (out, j)
}

fn outcome<'a>(j: &'a serde_json::Value, list: &str, peer: &str) -> &'a serde_json::Value {
    toward(j, list, peer, "ipv4")
}

/// The request toward `peer` on the allocation of `family` ("ipv4", "ipv6").
fn toward<'a>(
    j: &'a serde_json::Value,
    list: &str,
    peer: &str,
    family: &str,
) -> &'a serde_json::Value {
    j["audit"][list]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer"] == peer && p["relay_family"] == family)
        .unwrap_or_else(|| panic!("{peer} toward {family} not in {list}: {j}"))
}

/// The outcome kind and code ("granted", 0; "refused", 403; …) toward `family`.
fn answer(j: &serde_json::Value, list: &str, peer: &str, family: &str) -> (String, u64) {
    let o = &toward(j, list, peer, family)["outcome"];
    (
        o["kind"].as_str().unwrap().to_string(),
        o["code"].as_u64().unwrap_or(0),
    )
}

fn granted() -> (String, u64) {
    ("granted".into(), 0)
}

fn refused(code: u64) -> (String, u64) {
    ("refused".into(), code)
}

/// coturn's version from SOFTWARE ("Coturn-4.6.1 'Gorst'").
fn coturn_version(j: &serde_json::Value) -> (u32, u32, u32) {
    let s = j["audit"]["software"].as_str().unwrap();
    let v: Vec<u32> = s
        .trim_start_matches("Coturn-")
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|n| n.parse().unwrap())
        .collect();
    (v[0], v[1], v[2])
}

/// The peers of the finding of `category`, if there is one.
fn finding_peers(j: &serde_json::Value, category: &str) -> Option<Vec<String>> {
    j["audit"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["category"] == category)
        .map(|f| {
            f["peers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_string())
                .collect()
        })
}

/// A coturn listening and relaying on 127.0.0.1 and ::1.
fn dual_stack(allow_loopback: bool, extra: &[&str]) -> TurnLab {
    // Two listening addresses would turn on RFC 5780 and its second port (port + 1), which
    // another lab of a parallel test may hold: off.
    let mut args = vec![
        "--listening-ip=::1",
        "--relay-ip=127.0.0.1",
        "--relay-ip=::1",
        "--no-rfc5780",
    ];
    args.extend_from_slice(extra);
    coturn_lab_with(TurnAuth::Static, false, allow_loopback, &args)
}

/// Every IPv6 candidate toward the IPv6 allocation, and nothing else.
fn ipv6_requests(j: &serde_json::Value) -> Vec<&serde_json::Value> {
    let a = &j["audit"];
    let v6: Vec<&serde_json::Value> = a["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .chain(a["channel_binds"].as_array().unwrap())
        .filter(|p| p["relay_family"] == "ipv6")
        .collect();
    assert!(
        v6.iter()
            .all(|p| p["peer"].as_str().unwrap().starts_with('[')),
        "{j}"
    );
    v6
}

fn categories(j: &serde_json::Value) -> Vec<(String, String)> {
    j["audit"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["category"].is_string())
        .map(|f| {
            (
                f["category"].as_str().unwrap().to_string(),
                f["severity"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn audit_tells_default_coturn_from_allow_loopback_and_from_a_hardened_one() {
    if !have("turnserver") {
        return;
    }
    // coturn's defaults: loopback refused, everything else relayed.
    let lab = coturn_lab_with(TurnAuth::Static, false, false, &[]);
    let (out, j) = audit(lab.port);
    assert_eq!(out.status.code(), Some(1), "{j}");
    let a = &j["audit"];
    assert!(a["software"].as_str().unwrap().starts_with("Coturn"), "{j}");
    assert_eq!(a["unauthenticated"]["kind"], "challenge");
    assert_eq!(a["binding_answered"], true);
    assert_eq!(
        outcome(&j, "permissions", "127.0.0.1:9")["outcome"]["kind"],
        "refused"
    );
    assert_eq!(
        outcome(&j, "permissions", "127.0.0.1:9")["outcome"]["code"],
        403
    );
    assert_eq!(
        outcome(&j, "permissions", "0.0.0.0:9")["outcome"]["kind"],
        "refused"
    );
    assert_eq!(
        outcome(&j, "permissions", "10.0.0.1:9")["outcome"]["kind"],
        "granted"
    );
    assert_eq!(
        outcome(&j, "channel_binds", "127.0.0.1:9")["outcome"]["kind"],
        "refused"
    );
    let cats = categories(&j);
    assert!(!cats.iter().any(|(c, _)| c == "loopback"), "{cats:?}");
    assert!(
        cats.contains(&("private".into(), "high".into())),
        "{cats:?}"
    );
    assert!(
        cats.contains(&("cloud-metadata".into(), "critical".into())),
        "{cats:?}"
    );
    assert_eq!(a["release"]["kind"], "released");
    let transports: Vec<_> = j["transports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["transport"].clone(), t["answers"].clone()))
        .collect();
    assert_eq!(transports.len(), 2, "{j}");
    assert!(transports.iter().all(|(_, ok)| ok == true), "{j}");
    // Relaying on 127.0.0.1 only: no IPv6 relay address, the IPv6 allocation gets 440 and the
    // IPv6 candidates stay untestable (toward the IPv4 allocation they got 443).
    assert_eq!(a["allocate_ipv6"]["kind"], "refused", "{j}");
    assert_eq!(a["allocate_ipv6"]["code"], 440, "{j}");
    assert_eq!(a["relayed_ipv6"], serde_json::Value::Null);
    assert_eq!(a["release_ipv6"]["kind"], "not-needed");
    assert_eq!(
        answer(&j, "permissions", "[::ffff:127.0.0.1]:9", "ipv4"),
        refused(443)
    );
    let v6 = ipv6_requests(&j);
    assert_eq!(v6.len(), 13, "12 IPv6 candidates and one ChannelBind: {j}");
    for p in v6 {
        assert_eq!(p["outcome"]["kind"], "untestable", "{p}");
        let reason = p["outcome"]["reason"].as_str().unwrap();
        assert!(
            reason.contains("server has no IPv6 relay address"),
            "{reason}"
        );
    }
    lab.assert_no_allocations_left();
    assert_eq!(lab.allocations_made(), 1, "{}", lab.log());
    drop(lab);

    // --allow-loopback-peers: the loopback finding appears, critical.
    let lab = coturn_lab_with(TurnAuth::Static, false, true, &[]);
    let (out, j) = audit(lab.port);
    assert_eq!(out.status.code(), Some(1), "{j}");
    assert_eq!(
        outcome(&j, "permissions", "127.0.0.1:9")["outcome"]["kind"],
        "granted"
    );
    assert_eq!(
        outcome(&j, "channel_binds", "127.0.0.1:9")["outcome"]["kind"],
        "granted"
    );
    let cats = categories(&j);
    assert!(
        cats.contains(&("loopback".into(), "critical".into())),
        "{cats:?}"
    );
    assert_eq!(j["audit"]["findings"][0]["severity"], "critical");
    assert_eq!(j["audit"]["release"]["kind"], "released");
    lab.assert_no_allocations_left();
    drop(lab);

    // A hardened deny list: no peer is granted, only the SOFTWARE note remains.
    let lab = coturn_lab_with(
        TurnAuth::Static,
        false,
        false,
        &[
            "--no-multicast-peers",
            "--denied-peer-ip=0.0.0.0-0.255.255.255",
            "--denied-peer-ip=10.0.0.0-10.255.255.255",
            "--denied-peer-ip=100.64.0.0-100.127.255.255",
            "--denied-peer-ip=169.254.0.0-169.254.255.255",
            "--denied-peer-ip=172.16.0.0-172.31.255.255",
            "--denied-peer-ip=192.168.0.0-192.168.255.255",
        ],
    );
    let (out, j) = audit(lab.port);
    assert_eq!(out.status.code(), Some(0), "{j}");
    assert!(categories(&j).is_empty(), "{j}");
    assert_eq!(j["audit"]["findings"][0]["severity"], "info", "{j}");
    lab.assert_no_allocations_left();
}

#[test]
fn audit_without_credentials_reports_the_401_and_tests_no_peer() {
    if !have("turnserver") {
        return;
    }
    let lab = coturn_lab_with(TurnAuth::Static, false, false, &[]);
    let uri = format!("turn:127.0.0.1:{}", lab.port);
    let out = stunmap_env(&["audit", &uri, "--json", "--no-transports"], &[]);
    // Nothing was tested, so nothing was found: "not tested", with the reason, and exit 1,
    // never a clean 0.
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = json(&out);
    crate::common::validate("audit-v1.json", &j);
    assert_eq!(j["not_tested"]["kind"], "no-credentials", "{j:#}");
    assert_eq!(j["status"], "degraded", "{j:#}");
    assert_eq!(j["audit"]["unauthenticated"]["kind"], "challenge");
    assert_eq!(j["audit"]["allocate"], serde_json::Value::Null);
    assert!(
        j["audit"]["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["outcome"]["kind"] == "not-tried")
    );
    let out = stunmap_env(&["audit", &uri, "--no-transports"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("UNTESTED  Relaying not tested: no credentials"),
        "{text}"
    );
    assert!(!text.contains("findings     none"), "{text}");
    // A wrong password: the allocation is refused, relaying is not tested either.
    let out = stunmap_env(
        &["audit", &uri, "--user", "test", "--json", "--no-transports"],
        &[("STUNMAP_TURN_PASSWORD", "not-the-password")],
    );
    assert_eq!(out.status.code(), Some(1));
    let j = json(&out);
    crate::common::validate("audit-v1.json", &j);
    assert_eq!(j["not_tested"]["kind"], "allocation-refused", "{j:#}");
    assert_eq!(j["not_tested"]["code"], 401, "{j:#}");
    assert_eq!(lab.allocations_made(), 0);
}

#[test]
fn audit_asks_the_ipv6_candidates_toward_an_ipv6_allocation() {
    if !have("turnserver") {
        return;
    }
    // coturn's defaults, relaying on 127.0.0.1 and ::1: loopback refused — except its
    // IPv4-mapped form before 4.9.0 (CVE-2026-27624), which only an IPv6 allocation exposes.
    let lab = dual_stack(false, &[]);
    let (out, j) = audit(lab.port);
    assert_eq!(out.status.code(), Some(1), "{j}");
    let a = &j["audit"];
    assert!(
        a["relayed"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{j}"
    );
    assert_eq!(a["allocate_ipv6"]["kind"], "granted", "{j}");
    assert!(
        a["relayed_ipv6"].as_str().unwrap().starts_with("[::1]:"),
        "{j}"
    );
    let mapped = "[::ffff:127.0.0.1]:9";
    assert_eq!(answer(&j, "permissions", mapped, "ipv4"), refused(443));
    let bypassed = coturn_version(&j) < (4, 9, 0);
    let expect = if bypassed { granted() } else { refused(403) };
    assert_eq!(answer(&j, "permissions", mapped, "ipv6"), expect, "{j}");
    assert_eq!(answer(&j, "channel_binds", mapped, "ipv6"), expect, "{j}");
    assert_eq!(answer(&j, "permissions", "[::1]:9", "ipv6"), refused(403));
    assert_eq!(answer(&j, "permissions", "[::]:9", "ipv6"), refused(403));
    // The IPv6 relayed address is loopback too: refused like ::1.
    let own6 = a["relayed_ipv6"].as_str().unwrap().to_string();
    assert_eq!(answer(&j, "permissions", &own6, "ipv6"), refused(403));
    match finding_peers(&j, "loopback") {
        Some(peers) => {
            assert!(bypassed, "{j}");
            assert!(peers.iter().any(|p| p == "::ffff:127.0.0.1"), "{peers:?}");
            assert!(
                !peers.iter().any(|p| p == "::1" || p == "127.0.0.1"),
                "{peers:?}"
            );
            let f = a["findings"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["category"] == "loopback")
                .unwrap();
            assert_eq!(f["severity"], "critical");
            assert!(
                f["fix"]["title"]
                    .as_str()
                    .unwrap()
                    .contains("CVE-2026-27624"),
                "{f}"
            );
        }
        None => assert!(!bypassed, "{j}"),
    }
    assert_eq!(a["release"]["kind"], "released");
    assert_eq!(a["release_ipv6"]["kind"], "released");
    lab.assert_no_allocations_left();
    assert_eq!(lab.allocations_made(), 2, "{}", lab.log());

    // The human report names both allocations.
    let uri = format!("turn:127.0.0.1:{}", lab.port);
    let out = stunmap_env(&["audit", &uri, "--user", "test", "--no-transports"], PW);
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> String {
        text.lines()
            .find_map(|l| {
                let rest = l.trim_start().strip_prefix(name)?;
                rest.starts_with("  ").then(|| rest.trim().to_string())
            })
            .unwrap_or_default()
    };
    assert!(field("relayed").starts_with("127.0.0.1:"), "{text}");
    assert!(field("relayed v6").starts_with("[::1]:"), "{text}");
    assert!(
        text.contains("CreatePermission toward the IPv6 allocation"),
        "{text}"
    );
    assert!(field("release v6").starts_with("released"), "{text}");
    lab.assert_no_allocations_left();
    assert_eq!(lab.allocations_made(), 4, "{}", lab.log());
    drop(lab);

    // --allow-loopback-peers: ::1 and ::ffff:127.0.0.1 granted toward the IPv6 allocation,
    // critical; the unspecified address stays refused (the CVE-2020-26262 fix).
    let lab = dual_stack(true, &[]);
    let (out, j) = audit(lab.port);
    assert_eq!(out.status.code(), Some(1), "{j}");
    assert_eq!(j["audit"]["allocate_ipv6"]["kind"], "granted", "{j}");
    assert_eq!(answer(&j, "permissions", "[::1]:9", "ipv6"), granted());
    assert_eq!(answer(&j, "permissions", mapped, "ipv6"), granted());
    assert_eq!(answer(&j, "channel_binds", mapped, "ipv6"), granted());
    assert_eq!(answer(&j, "permissions", "[::]:9", "ipv6"), refused(403));
    let peers = finding_peers(&j, "loopback").unwrap();
    for p in ["::1", "::ffff:127.0.0.1", "127.0.0.1"] {
        assert!(peers.iter().any(|x| x == p), "{p} not in {peers:?}");
    }
    assert_eq!(j["audit"]["findings"][0]["severity"], "critical");
    assert_eq!(j["audit"]["release"]["kind"], "released");
    assert_eq!(j["audit"]["release_ipv6"]["kind"], "released");
    lab.assert_no_allocations_left();
    assert_eq!(lab.allocations_made(), 2, "{}", lab.log());
    drop(lab);

    // A deny list that also covers the IPv6 forms (the IPv4-mapped range, ::/96 with ::1 and
    // the IPv4-compatible forms, NAT64, ULA, link-local): nothing is granted toward either
    // allocation.
    let lab = dual_stack(
        false,
        &[
            "--no-multicast-peers",
            "--denied-peer-ip=0.0.0.0-0.255.255.255",
            "--denied-peer-ip=10.0.0.0-10.255.255.255",
            "--denied-peer-ip=100.64.0.0-100.127.255.255",
            "--denied-peer-ip=169.254.0.0-169.254.255.255",
            "--denied-peer-ip=172.16.0.0-172.31.255.255",
            "--denied-peer-ip=192.168.0.0-192.168.255.255",
            "--denied-peer-ip=::ffff:0.0.0.0-::ffff:255.255.255.255",
            "--denied-peer-ip=::-::ffff:ffff",
            "--denied-peer-ip=64:ff9b::-64:ff9b::ffff:ffff",
            "--denied-peer-ip=fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "--denied-peer-ip=fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ],
    );
    let (out, j) = audit(lab.port);
    assert_eq!(out.status.code(), Some(0), "{j}");
    assert_eq!(j["audit"]["allocate_ipv6"]["kind"], "granted", "{j}");
    let v6 = ipv6_requests(&j);
    assert_eq!(
        v6.len(),
        14,
        "12 candidates, the relayed address, one ChannelBind: {j}"
    );
    for p in v6 {
        assert_eq!(p["outcome"]["kind"], "refused", "{p}");
        assert_eq!(p["outcome"]["code"], 403, "{p}");
    }
    assert!(categories(&j).is_empty(), "{j}");
    assert_eq!(j["audit"]["findings"][0]["severity"], "info", "{j}");
    assert_eq!(j["audit"]["release_ipv6"]["kind"], "released");
    lab.assert_no_allocations_left();
    assert_eq!(lab.allocations_made(), 2, "{}", lab.log());
}

#[test]
fn audit_over_tcp_asks_the_ipv6_candidates_on_a_second_connection() {
    if !have("turnserver") {
        return;
    }
    // The same dual-stack coturn as above, audited over TCP: the first allocation on one
    // connection, the IPv6 allocation on a second one, with the same answers as over UDP.
    let lab = dual_stack(false, &[]);
    let uri = format!("turn:127.0.0.1:{}?transport=tcp", lab.port);
    let (out, j) = audit_uri(&uri);
    assert_eq!(out.status.code(), Some(1), "{j}");
    let a = &j["audit"];
    assert_eq!(a["transport"], "tcp", "{j}");
    assert_eq!(j["stream_error"], serde_json::Value::Null, "{j}");
    assert_eq!(a["unauthenticated"]["kind"], "challenge", "{j}");
    assert_eq!(a["allocate"]["kind"], "granted", "{j}");
    assert!(
        a["relayed"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{j}"
    );
    assert_eq!(a["allocate_ipv6"]["kind"], "granted", "{j}");
    assert!(
        a["relayed_ipv6"].as_str().unwrap().starts_with("[::1]:"),
        "{j}"
    );
    // Nothing is left untestable or unasked.
    for p in a["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .chain(a["channel_binds"].as_array().unwrap())
    {
        let kind = p["outcome"]["kind"].as_str().unwrap();
        assert!(kind == "granted" || kind == "refused", "{p}");
    }
    assert_eq!(
        ipv6_requests(&j).len(),
        14,
        "12 candidates, the relayed address, one ChannelBind: {j}"
    );
    let mapped = "[::ffff:127.0.0.1]:9";
    assert_eq!(answer(&j, "permissions", mapped, "ipv4"), refused(443));
    let bypassed = coturn_version(&j) < (4, 9, 0);
    let expect = if bypassed { granted() } else { refused(403) };
    assert_eq!(answer(&j, "permissions", mapped, "ipv6"), expect, "{j}");
    assert_eq!(answer(&j, "channel_binds", mapped, "ipv6"), expect, "{j}");
    assert_eq!(answer(&j, "permissions", "[::1]:9", "ipv6"), refused(403));
    assert_eq!(answer(&j, "permissions", "[::]:9", "ipv6"), refused(403));
    let own6 = a["relayed_ipv6"].as_str().unwrap().to_string();
    assert_eq!(answer(&j, "permissions", &own6, "ipv6"), refused(403));
    assert_eq!(answer(&j, "permissions", "10.0.0.1:9", "ipv4"), granted());
    // The findings are drawn from both allocations.
    match finding_peers(&j, "loopback") {
        Some(peers) => {
            assert!(bypassed, "{j}");
            assert!(peers.iter().any(|p| p == "::ffff:127.0.0.1"), "{peers:?}");
            assert!(
                !peers.iter().any(|p| p == "::1" || p == "127.0.0.1"),
                "{peers:?}"
            );
        }
        None => assert!(!bypassed, "{j}"),
    }
    assert!(finding_peers(&j, "private").is_some(), "{j}");
    assert_eq!(a["release"]["kind"], "released", "{j}");
    assert_eq!(a["release_ipv6"]["kind"], "released", "{j}");
    lab.assert_no_allocations_left();
    assert_eq!(lab.allocations_made(), 2, "{}", lab.log());

    // --allow-loopback-peers over TCP: ::1 granted toward the IPv6 allocation too.
    drop(lab);
    let lab = dual_stack(true, &[]);
    let uri = format!("turn:127.0.0.1:{}?transport=tcp", lab.port);
    let (out, j) = audit_uri(&uri);
    assert_eq!(out.status.code(), Some(1), "{j}");
    assert_eq!(answer(&j, "permissions", "[::1]:9", "ipv6"), granted());
    assert_eq!(answer(&j, "permissions", mapped, "ipv6"), granted());
    assert_eq!(answer(&j, "permissions", "[::]:9", "ipv6"), refused(403));
    let peers = finding_peers(&j, "loopback").unwrap();
    assert!(peers.iter().any(|x| x == "::1"), "{peers:?}");
    assert_eq!(j["audit"]["release_ipv6"]["kind"], "released");
    lab.assert_no_allocations_left();
    assert_eq!(lab.allocations_made(), 2, "{}", lab.log());
    drop(lab);

    // turns: the second connection is a TLS one, with the same trust.
    if !have("openssl") {
        return;
    }
    let lab = coturn_lab_with(
        TurnAuth::Static,
        true,
        false,
        &[
            "--listening-ip=::1",
            "--relay-ip=127.0.0.1",
            "--relay-ip=::1",
            "--no-rfc5780",
        ],
    );
    let uri = format!("turns:127.0.0.1:{}", lab.tls_port.unwrap());
    let cert = lab.cert();
    let out = stunmap_env(
        &[
            "audit",
            &uri,
            "--user",
            "test",
            "--ca-file",
            &cert,
            "--json",
            "--no-transports",
            "--timeout",
            "1000",
        ],
        PW,
    );
    let j = json(&out);
    assert_eq!(out.status.code(), Some(1), "{j}");
    assert_eq!(j["audit"]["transport"], "tls", "{j}");
    assert_eq!(j["audit"]["allocate_ipv6"]["kind"], "granted", "{j}");
    assert_eq!(answer(&j, "permissions", mapped, "ipv6"), expect, "{j}");
    assert_eq!(answer(&j, "permissions", "[::1]:9", "ipv6"), refused(403));
    assert_eq!(j["audit"]["release"]["kind"], "released", "{j}");
    assert_eq!(j["audit"]["release_ipv6"]["kind"], "released", "{j}");
    lab.assert_no_allocations_left();
    assert_eq!(lab.allocations_made(), 2, "{}", lab.log());
}
