use super::render::{headline, port_list};
use super::*;
use clap::Parser;

#[derive(Debug, clap::Parser)]
struct Cli {
    #[command(flatten)]
    args: Args,
}

fn args(list: &[&str]) -> Result<Args, clap::Error> {
    let mut v = vec!["sweep"];
    v.extend_from_slice(list);
    Cli::try_parse_from(v).map(|c| c.args)
}

fn usage_error(e: &anyhow::Error) -> bool {
    e.downcast_ref::<crate::exit::UsageError>().is_some()
}

#[test]
fn broadcast_multicast_and_unspecified_targets_are_refused_before_anything_is_sent() {
    for host in [
        "255.255.255.255",
        "224.0.0.1",
        "0.0.0.0",
        "0.1.2.3",
        "ff02::1",
        "::",
    ] {
        let e = plan(&args(&[host]).unwrap(), 1).unwrap_err();
        assert!(usage_error(&e), "{host}: {e}");
        assert!(e.to_string().starts_with(host), "{e}");
    }
    assert!(plan(&args(&["127.0.0.1"]).unwrap(), 1).is_ok());
    assert!(plan(&args(&["stun.example.test"]).unwrap(), 1).is_ok());
}

#[test]
fn every_numeric_flag_has_a_range() {
    for bad in [
        ["--rate", "0"],
        ["--rate", "100000001"],
        ["--concurrency", "0"],
        ["--concurrency", "65537"],
        ["--connect-timeout", "0"],
        ["--connect-timeout", "60001"],
        ["--udp-timeout", "0"],
        ["--sample", "0"],
        ["--sample", "65536"],
        ["--seed", "18446744073709551616"],
    ] {
        let e = args(&["127.0.0.1", bad[0], bad[1]]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{bad:?}");
    }
    for bad in [
        ["--tcp-ports", "9-3"],
        ["--tcp-ports", "0"],
        ["--udp-ports", "70000"],
    ] {
        let e = plan(&args(&["127.0.0.1", bad[0], bad[1]]).unwrap(), 1).unwrap_err();
        assert!(usage_error(&e), "{bad:?}: {e}");
    }
    let e = plan(
        &args(&["127.0.0.1", "--udp-ports", "none", "--tcp-ports", "none"]).unwrap(),
        1,
    )
    .unwrap_err();
    assert!(usage_error(&e));
}

#[test]
fn the_plan_is_reproducible_and_paces_by_the_flags() {
    let a = args(&["127.0.0.1", "--seed", "7"]).unwrap();
    let p = plan(&a, 7).unwrap();
    assert_eq!(p.tcp_ports, sample_ports(443, 65535, DEFAULT_SAMPLE, 7));
    assert!(!p.full);
    assert_eq!(p.pacing, PacingConfig::polite(Duration::from_secs(1)));
    let p = plan(
        &args(&[
            "h.test",
            "--tcp-ports",
            "443-4000",
            "--full",
            "--rate",
            "10",
        ])
        .unwrap(),
        1,
    )
    .unwrap();
    assert_eq!(p.tcp_ports.len(), 3558);
    assert!(p.full);
    assert_eq!(p.pacing, PacingConfig::fixed(10, Duration::from_secs(1)));
    assert_eq!(p.udp_ports, vec![80, 443, 3478, 5555]);
}

#[test]
fn port_lists_read_as_ranges() {
    assert_eq!(
        port_list(&[443, 444, 445, 3478, 5349, 5350]),
        "443–445, 3478, 5349–5350"
    );
    assert_eq!(port_list(&[]), "");
    assert_eq!(port_list(&[65534, 65535]), "65534–65535");
}

#[test]
fn nothing_probed_is_never_ok_and_says_why() {
    let p = plan(
        &args(&["127.0.0.1", "--tcp-ports", "none", "--udp-ports", "1-3"]).unwrap(),
        1,
    )
    .unwrap();
    let mut udp: Vec<UdpPortResult> = (1..=3)
        .map(|port| {
            let mut r = UdpPortResult::bare(port, UdpState::Error, 0);
            r.error = Some(probes::sweep::LocalError {
                errno: "EMFILE".into(),
                message: "Too many open files".into(),
            });
            r
        })
        .collect();
    let ctx = crate::app::Ctx::detached(crate::app::Stop::detached(None));
    let r = assemble(
        &p,
        "127.0.0.1".parse().unwrap(),
        udp.clone(),
        Vec::new(),
        None,
        PacingSummary::default(),
        &ctx,
    );
    assert_eq!(r.outcome(), Outcome::Blocked);
    assert_eq!(
        r.not_probed.as_deref(),
        Some("EMFILE (Too many open files) on 3 ports")
    );
    assert!(headline(&r).starts_with("Not probed: EMFILE"));
    // One answered, one left out: degraded, and the left-out port is in the report.
    udp[0] = UdpPortResult::bare(1, UdpState::Answered, 1);
    udp.truncate(1);
    let r = assemble(
        &p,
        "127.0.0.1".parse().unwrap(),
        udp,
        Vec::new(),
        None,
        PacingSummary::default(),
        &ctx,
    );
    assert_eq!(r.udp.len(), 3);
    assert_eq!(r.udp_summary.not_probed, 2);
    assert_eq!(r.outcome(), Outcome::Degraded);
}
