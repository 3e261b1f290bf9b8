//! Never a verdict that no measurement supports: a service the host cannot send to is "not
//! probed" (skipped) with the reason, never "ok", and the run does not exit 0.

use serde_json::Value;

use crate::common::bin;
use crate::lab_or_skip;
use crate::support::lab::{Lab, NatMode, Ns};

fn check_in_client(lab: &Lab, args: &[&str]) -> (Option<i32>, Value, String) {
    let prom = lab.dir().join("check.prom");
    let prom_arg = prom.display().to_string();
    let mut cmd = vec![
        bin(),
        "check",
        "--json",
        "--prom",
        &prom_arg,
        "--dns-server",
        "127.0.0.1:9",
    ];
    cmd.extend_from_slice(args);
    let out = lab.exec_in(Ns::Client, &cmd).unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    crate::common::validate("check-v1.json", &v);
    (
        out.status.code(),
        v,
        std::fs::read_to_string(&prom).unwrap(),
    )
}

#[test]
fn a_stun_name_whose_only_address_has_no_route_is_not_probed() {
    // The lab is IPv4 only: an IPv6 address has no route from the client.
    let lab = lab_or_skip!(NatMode::Masquerade);
    let (code, v, prom) = check_in_client(
        &lab,
        &[
            "--stun",
            "stun.lab.test",
            "--resolve",
            "stun.lab.test:[2001:db8::7]",
        ],
    );
    assert_ne!(code, Some(0), "{v:#}");
    let service = &v["services"][0];
    assert_eq!(service["state"], "skipped", "{service:#}");
    let rows = service["checks"].as_array().unwrap();
    let stun = rows
        .iter()
        .find(|r| r["probe"] == "stun")
        .unwrap_or_else(|| panic!("a STUN row says why nothing was sent: {service:#}"));
    assert_eq!(stun["state"], "skipped");
    assert_eq!(stun["outcome"]["code"], "not-run");
    assert_eq!(stun["outcome"]["reason"], "no-route");
    assert!(
        stun["detail"]
            .as_str()
            .unwrap()
            .contains("no route to stun.lab.test"),
        "{stun:#}"
    );
    assert_ne!(v["verdict"]["status"], "ok");
    assert!(
        prom.contains(r#"service="P2P (STUN)",kind="stun",state="skipped"} 1"#)
            && prom.contains(r#"service="P2P (STUN)",kind="stun",state="ok"} 0"#),
        "{prom}"
    );
}

#[test]
fn turn_without_a_route_is_not_probed_and_the_run_says_so() {
    let lab = lab_or_skip!(NatMode::Masquerade);
    let (code, v, _) = check_in_client(&lab, &["--turn", "[2001:db8::9]:3478"]);
    assert_eq!(code, Some(2), "{v:#}");
    assert_eq!(v["services"][0]["state"], "skipped");
    let headline = v["verdict"]["headline"].as_str().unwrap();
    assert!(headline.starts_with("Not probed"), "{headline}");
}
