//! The namespace lab checked against an independent reference before stunmap's own probes are
//! run in it: coturn's `turnutils_natdiscovery` must see each NAT mode as LAB.md says it is.

use crate::lab_or_skip;
use crate::support;

use std::process::Output;
use std::time::Instant;

use crate::support::lab::{CLIENT_IP, Lab, NatMode, Ns, PUBLIC_IP_1};

/// coturn's clients can hang on filtered paths: always under `timeout`.
fn natdiscovery(lab: &Lab) -> String {
    let start = Instant::now();
    let out: Output = lab
        .exec_in(
            Ns::Client,
            &[
                "timeout",
                "40",
                "turnutils_natdiscovery",
                "-m",
                "-f",
                PUBLIC_IP_1,
            ],
        )
        .expect("run turnutils_natdiscovery");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "natdiscovery in {:?} took {:?}:\n{text}",
        lab.mode(),
        start.elapsed()
    );
    text
}

fn reference_lab(mode: NatMode) -> Option<Lab> {
    let mut lab = match Lab::new(mode) {
        Ok(lab) => lab,
        Err(support::lab::LabError::Skip(why)) => {
            support::lab::report_skip(&format!("lab::{mode:?}"), &why);
            return None;
        }
        Err(e) => panic!("{e}"),
    };
    if std::process::Command::new("turnserver")
        .arg("--version")
        .output()
        .is_err()
    {
        support::lab::report_skip(
            &format!("lab::{mode:?}"),
            "coturn (turnserver) not installed",
        );
        return None;
    }
    lab.start_coturn(3478).expect("start coturn");
    Some(lab)
}

/// coturn's verdict lines for `mode`'s lab, each of `expected` present.
fn reference_says(mode: NatMode, expected: [&str; 2]) {
    let Some(lab) = reference_lab(mode) else {
        return;
    };
    let out = natdiscovery(&lab);
    for line in expected {
        assert!(out.contains(line), "{mode:?}: no {line:?} in:\n{out}");
    }
}

const EIM: &str = "NAT with Endpoint Independent Mapping!";
const APDM: &str = "NAT with Address and Port Dependent Mapping!";
const EIF: &str = "NAT with Endpoint Independent Filtering!";
const ADF: &str = "NAT with Address Dependent Filtering!";
const APDF: &str = "NAT with Address and Port Dependent Filtering!";

#[test]
fn masquerade_is_eim_with_apdf() {
    reference_says(NatMode::Masquerade, [EIM, APDF]);
}

#[test]
fn random_fully_is_apdm() {
    reference_says(NatMode::MasqueradeRandomFully, [APDM, APDF]);
}

#[test]
fn nftables_full_cone_is_eim_with_eif() {
    reference_says(NatMode::FullCone, [EIM, EIF]);
}

#[test]
fn restricted_cone_is_eim_with_adf() {
    reference_says(NatMode::RestrictedCone, [EIM, ADF]);
}

#[test]
fn home_router_is_eim_with_apdf() {
    reference_says(NatMode::HomeRouter, [EIM, APDF]);
}

#[test]
fn no_nat_shows_the_client_address() {
    let Some(lab) = reference_lab(NatMode::NoNat) else {
        return;
    };
    let out = natdiscovery(&lab);
    // coturn never says "no NAT" for a wildcard-bound socket (LAB.md): compare ourselves.
    assert!(
        out.contains(&format!("UDP reflexive addr: {CLIENT_IP}:")),
        "{out}"
    );
}

/// A TCP connect to `ip:port` from the client namespace, with bash's /dev/tcp.
fn tcp_connects(lab: &Lab, ip: &str, port: u16) -> bool {
    lab.exec_in(
        Ns::Client,
        &[
            "timeout",
            "3",
            "bash",
            "-c",
            &format!("exec 3<>/dev/tcp/{ip}/{port}"),
        ],
    )
    .map(|o| o.status.success())
    .unwrap_or(false)
}

/// One Binding round trip with coturn's client; false on timeout. The client prints the
/// reflexive address and may then hang waiting for RFC 5780 extras, so only its output counts.
fn stun_answers(lab: &Lab, port: u16) -> bool {
    lab.exec_in(
        Ns::Client,
        &[
            "timeout",
            "5",
            "turnutils_stunclient",
            "-p",
            &port.to_string(),
            PUBLIC_IP_1,
        ],
    )
    .map(|o| String::from_utf8_lossy(&o.stdout).contains("UDP reflexive addr"))
    .unwrap_or(false)
}

#[test]
fn udp_blocked_but_tcp_443_open() {
    let mut lab = lab_or_skip!(NatMode::UdpBlockedTcp443Open);
    // coturn on 443 (UDP and TCP): the TURN/TCP 443 relay path.
    lab.start_coturn(443).expect("start coturn on 443");
    assert!(tcp_connects(&lab, PUBLIC_IP_1, 443), "TCP 443 must pass");
    assert!(!stun_answers(&lab, 443), "UDP must be dropped");
}

#[test]
fn udp_only_to_3478() {
    let mut lab = lab_or_skip!(NatMode::UdpOnly3478);
    lab.start_coturn(3478).expect("start coturn");
    assert!(stun_answers(&lab, 3478), "UDP 3478 must pass");
    assert!(!stun_answers(&lab, 3479), "UDP 3479 must be dropped");
    assert!(
        !tcp_connects(&lab, PUBLIC_IP_1, 3478),
        "TCP must be dropped"
    );
}

#[test]
fn teardown_removes_the_namespaces() {
    let names = {
        let Some(lab) = Lab::new(NatMode::Masquerade)
            .map_err(|e| support::lab::report_skip("lab::teardown", &e.to_string()))
            .ok()
        else {
            return;
        };
        [Ns::Client, Ns::Router, Ns::Public].map(|n| lab.ns_name(n))
    };
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let list = String::from_utf8_lossy(&list.stdout);
    for n in names {
        assert!(!list.contains(&n), "{n} left behind");
    }
}

#[test]
fn teardown_happens_after_a_panic() {
    let names = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let inner = names.clone();
    let r = std::thread::spawn(move || {
        let Ok(lab) = Lab::new(NatMode::FullCone) else {
            return;
        };
        inner
            .lock()
            .unwrap()
            .extend([Ns::Client, Ns::Router, Ns::Public].map(|n| lab.ns_name(n)));
        panic!("deliberate");
    })
    .join();
    let names = names.lock().unwrap().clone();
    if names.is_empty() {
        support::lab::report_skip("lab::teardown_after_panic", "lab unavailable");
        return;
    }
    assert!(r.is_err());
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let list = String::from_utf8_lossy(&list.stdout);
    for n in names {
        assert!(!list.contains(&n), "{n} left behind");
    }
}

/// Labs of every kind live at once in one test process (the harness runs tests in parallel);
/// none may ask for a namespace another already holds. Before one counter named them all, the
/// two-site lab and the paths lab both named their public namespace `smp<pid>x0p`.
#[test]
fn labs_of_every_kind_built_at_once_share_no_namespace() {
    use crate::support::lab2::{Lab2, SiteMode};
    use crate::support::paths_lab::{PathsLab, Upstream};
    let built = (|| -> Result<_, support::lab::LabError> {
        let one = Lab::new(NatMode::NoNat)?;
        let two = Lab2::new(SiteMode::NoNat.into(), SiteMode::NoNat.into())?;
        let three = PathsLab::new(Upstream::Direct)?;
        let four = Lab2::new(SiteMode::NoNat.into(), SiteMode::NoNat.into())?;
        let five = PathsLab::new(Upstream::Direct)?;
        Ok((one, two, three, four, five))
    })();
    let labs = match built {
        Ok(labs) => labs,
        Err(support::lab::LabError::Skip(why)) => {
            support::lab::report_skip(module_path!(), &why);
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let mut names = vec![
        labs.0.ns_name(Ns::Client),
        labs.0.ns_name(Ns::Router),
        labs.0.ns_name(Ns::Public),
    ];
    for two in [&labs.1, &labs.3] {
        names.extend([two.client(0), two.client(1), two.public()]);
    }
    for three in [&labs.2, &labs.4] {
        use crate::support::paths_lab::Ns as P;
        names.extend([P::Client, P::Home, P::Public].map(|n| three.ns(n)));
    }
    let distinct: std::collections::BTreeSet<_> = names.iter().collect();
    assert_eq!(distinct.len(), names.len(), "{names:?}");
}
