//! Time to verdict in every mode of the lab, against coturn on the two public addresses (RFC
//! 5780) and a plain coturn on TCP/UDP 443: `stunmap nat S1:3478 S2:3479` and `stunmap check
//! --stun S1 --turn S1:3478 --turn S1:443`, each checked against a generous bound and (nat)
//! against the mode's classes. With `STUNMAP_TIMING=N` each runs N times and coturn's
//! `turnutils_natdiscovery -m -f S1` runs too, in the same lab, and every mode prints its row
//! of the "time to verdict" table in BENCHMARKS.md:
//!
//! ```text
//! STUNMAP_TIMING=10 cargo test --release --test integration nat_timing_lab -- --nocapture --test-threads 1
//! ```

use std::time::Instant;

use crate::common::{bin, have};
use crate::nat_lab::{concluded, expected};
use crate::support::lab::{Lab, LabError, NatMode, Ns, PUBLIC_IP_1, PUBLIC_IP_2, report_skip};

/// Generous: the measured times are about half a second (nat) and one second (check).
const NAT_BOUND: f64 = 2.0;
const CHECK_BOUND: f64 = 2.5;

fn repeats() -> Option<usize> {
    std::env::var("STUNMAP_TIMING")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(|n: usize| n.clamp(1, 100))
}

/// Wall time of `cmd` in the client namespace, with its stdout.
fn timed(lab: &Lab, cmd: &[&str]) -> (f64, String) {
    let start = Instant::now();
    let out = lab.exec_in(Ns::Client, cmd).expect("run");
    (
        start.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn median_max(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    let median = v.get(v.len() / 2).copied().unwrap_or(f64::NAN);
    let max = v.last().copied().unwrap_or(f64::NAN);
    format!("{median:.2} s ({max:.2})")
}

fn time_mode(mode: NatMode) {
    if !have("turnserver") {
        return;
    }
    let mut lab = match Lab::new(mode) {
        Ok(lab) => lab,
        Err(LabError::Skip(why)) => return report_skip(&format!("nat_timing_lab {mode:?}"), &why),
        Err(e) => panic!("{e}"),
    };
    lab.start_coturn(3478).expect("coturn");
    lab.start_coturn_plain(443).expect("coturn on 443");
    let s1 = format!("{PUBLIC_IP_1}:3478");
    let s2 = format!("{PUBLIC_IP_2}:3479");
    let turn443 = format!("{PUBLIC_IP_1}:443");
    let turn3478 = format!("{PUBLIC_IP_1}:3478");
    let n = repeats().unwrap_or(1);
    let (mut nat, mut check, mut reference) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let (t, text) = timed(
            &lab,
            &["timeout", "30", bin(), "nat", &s1, &s2, "--json", "-q"],
        );
        let v: serde_json::Value = serde_json::from_str(&text).expect("nat JSON");
        assert_eq!(
            concluded(&v),
            expected(mode),
            "{mode:?} against coturn: {v:#}"
        );
        assert!(t < NAT_BOUND, "{mode:?}: stunmap nat took {t:.2} s");
        nat.push(t);
        let (t, text) = timed(
            &lab,
            &[
                "timeout",
                "30",
                bin(),
                "check",
                "--stun",
                PUBLIC_IP_1,
                "--turn",
                &turn3478,
                "--turn",
                &turn443,
                "--json",
                "-q",
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&text).expect("check JSON");
        assert!(v["verdict"]["status"].is_string(), "{v:#}");
        path_facts_follow_what_answered(mode, &v);
        assert!(t < CHECK_BOUND, "{mode:?}: stunmap check took {t:.2} s");
        check.push(t);
        if repeats().is_some() {
            let (t, _) = timed(
                &lab,
                &[
                    "timeout",
                    "40",
                    "turnutils_natdiscovery",
                    "-m",
                    "-f",
                    PUBLIC_IP_1,
                ],
            );
            reference.push(t);
        }
    }
    if repeats().is_some() {
        eprintln!(
            "| {mode:?} | {} | {} | {} |",
            median_max(nat),
            median_max(check),
            median_max(reference)
        );
    }
}

/// The path MTU search runs only toward a STUN server that answered a small request, and the
/// TCP MSS is read on the first TURN/TCP port that connects: what passes in each mode decides
/// which of the two are measured (a search toward a silent server would only wait out its
/// tries, a verdict later).
fn path_facts_follow_what_answered(mode: NatMode, v: &serde_json::Value) {
    let paths = &v["paths"];
    let pmtu = paths["path_mtu"].as_array().expect("path_mtu");
    let mss = &paths["tcp_mss"];
    let stun = format!("{PUBLIC_IP_1}:3478");
    if mode == NatMode::UdpBlockedTcp443Open {
        assert!(
            pmtu.is_empty(),
            "{mode:?}: searched a silent server: {paths:#}"
        );
        let notes = v["notes"].to_string();
        assert!(
            notes.contains(&format!("path MTU to {stun}: not measured")),
            "{mode:?}: no note for the skipped search: {notes}"
        );
    } else {
        assert_eq!(pmtu.len(), 1, "{mode:?}: {paths:#}");
        assert_eq!(pmtu[0]["server"], stun.as_str(), "{mode:?}");
        assert_eq!(pmtu[0]["largest_passed"], 1500, "{mode:?}: {paths:#}");
    }
    if mode == NatMode::UdpOnly3478 {
        assert!(mss["mss"].is_null(), "{mode:?}: TCP is dropped: {mss:#}");
        assert!(mss["error"].is_string(), "{mode:?}: {mss:#}");
    } else {
        // 1500-byte links, TCP timestamps on: 1500 - 20 - 20 - 12.
        assert_eq!(mss["mss"], 1448, "{mode:?}: {mss:#}");
        if mode == NatMode::UdpBlockedTcp443Open {
            assert_eq!(
                mss["server"],
                format!("{PUBLIC_IP_1}:443").as_str(),
                "{mode:?}"
            );
        }
    }
}

#[test]
fn masquerade() {
    time_mode(NatMode::Masquerade);
}

#[test]
fn random_fully() {
    time_mode(NatMode::MasqueradeRandomFully);
}

#[test]
fn full_cone() {
    time_mode(NatMode::FullCone);
}

#[test]
fn restricted_cone() {
    time_mode(NatMode::RestrictedCone);
}

#[test]
fn home_router() {
    time_mode(NatMode::HomeRouter);
}

#[test]
fn no_nat() {
    time_mode(NatMode::NoNat);
}

#[test]
fn udp_blocked_tcp_443_open() {
    time_mode(NatMode::UdpBlockedTcp443Open);
}

#[test]
fn udp_only_to_3478() {
    time_mode(NatMode::UdpOnly3478);
}
