//! `stunmap audit` against a real coturn on loopback: the default peer policy (loopback
//! refused, private ranges granted), `--allow-loopback-peers` (loopback granted: critical), and
//! a hardened deny list (nothing granted) are told apart; no allocation is left behind and the
//! password appears in no output.

use crate::common::{TurnAuth, coturn_lab_with, have, json, stunmap_env};

const PW: &[(&str, &str)] = &[("STUNMAP_TURN_PASSWORD", "secret")];

fn audit(port: u16) -> (std::process::Output, serde_json::Value) {
    let uri = format!("turn:127.0.0.1:{port}");
    let out = stunmap_env(
        &[
            "audit",
            &uri,
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
    (out, j)
}

fn outcome<'a>(j: &'a serde_json::Value, list: &str, peer: &str) -> &'a serde_json::Value {
    j["audit"][list]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer"] == peer)
        .unwrap_or_else(|| panic!("{peer} not in {list}: {j}"))
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
    lab.assert_no_allocations_left();
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
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = json(&out);
    assert_eq!(j["audit"]["unauthenticated"]["kind"], "challenge");
    assert_eq!(j["audit"]["allocate"], serde_json::Value::Null);
    assert!(
        j["audit"]["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["outcome"]["kind"] == "not-tried")
    );
    assert_eq!(lab.allocations_made(), 0);
}
